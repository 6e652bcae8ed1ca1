/* SPDX-License-Identifier: MIT
 *
 * policy-private.h — the line checks shared by the request parser, the
 * request builder and the reply parser of proto/policy; not for other
 * directories (tests may include it).
 */
#pragma once

#include <glib.h>

#include "policy.h"

G_BEGIN_DECLS

/* A name: 1..POLICY_MAX_NAME bytes of [a-z0-9_].  len -1 = NUL-terminated.
 * Errors: POLICY_ERROR_EMPTY_NAME, _NAME_CHAR, _NUL, _LINE_TOO_LONG. */
gboolean policy_check_name (const char *name, gssize len, GError **error);

/* One received line, without its LF and with a trailing CR already dropped:
 * NUL anywhere, no '=', an empty or invalid name are errors.  On success
 * the name and value pointers point into line. */
gboolean policy_split_line (const char *line, gsize len, const char **name, gsize *name_len,
                            const char **value, gsize *value_len, GError **error);

/* Append an already validated attribute (the parser's path): only the count
 * and duplicate checks run here.  name/value need not be NUL-terminated. */
gboolean policy_request_add_len (PolicyRequest *req, const char *name, gsize name_len,
                                 const char *value, gsize value_len, guint max_attrs,
                                 GError **error);

G_END_DECLS
