/* SPDX-License-Identifier: MIT
 *
 * dns.h — the DNS queries of the rule language, through GResolver
 * (g_resolver_get_default (), so tests install a fake resolver).
 *
 *   dnsbl:    the name (reversed ip + "." + zone) is listed when any A
 *             answer is in 127.0.0.0/8; NXDOMAIN (or no A record) = not
 *             listed; any other error = not listed and a warning log line.
 *   resolves: TRUE when the name has any A/AAAA address; errors = FALSE
 *             (other errors than "not found" logged).
 *
 * Answers are cached in the session (vps_session_dns_cache_*).
 */
#pragma once

#include <gio/gio.h>
#include "rules/rules.h"
#include "vps/session.h"

G_BEGIN_DECLS

#define VPS_DNS_MAX_NAME 255

/* The cached answer, if any. */
gboolean vps_dns_cached (VpsSession *session, RulesQuery query, const char *name, gboolean *answer);
/* Start a query (answers from the cache immediately when cached); never
 * fails: finish returns the answer. */
void vps_dns_query_async (VpsSession *session, RulesQuery query, const char *name,
                          GCancellable *cancellable, GAsyncReadyCallback callback,
                          gpointer user_data);
gboolean vps_dns_query_finish (GAsyncResult *result);

G_END_DECLS
