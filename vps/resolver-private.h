/* SPDX-License-Identifier: MIT
 *
 * resolver-private.h — what resolver.c (queries on libresolv, the thread
 * pool, timeouts) and resolver-parse.c (reading answers, bounded and
 * distrustful) share.
 */
#pragma once

#include "vps/resolver.h"

G_BEGIN_DECLS

/* Set a VPS_RESOLVER_ERROR; return FALSE / NULL. */
gboolean vps_resolver_fail (GError **error, VpsResolverError code, const char *fmt, ...)
    G_GNUC_PRINTF (3, 4);
gpointer vps_resolver_fail_null (GError **error, VpsResolverError code, const char *fmt, ...)
    G_GNUC_PRINTF (3, 4);
const char *vps_resolver_type_name (int type);

G_END_DECLS
