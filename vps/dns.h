/* SPDX-License-Identifier: MIT
 *
 * dns.h — the DNS queries of the rule language: through vps/resolver.h
 * (libresolv) asking `[dns] nameserver` when the configuration sets one,
 * through GResolver otherwise (g_resolver_get_default (): the system
 * resolver, and tests install a fake one).  `[dns] timeout` bounds each
 * query on both paths.
 *
 *   dnsbl:    the name (reversed ip + "." + zone) is listed when any A
 *             answer is in 127.0.0.0/8; NXDOMAIN (or no A record) = not
 *             listed; any other error = not listed and a warning log line.
 *   resolves: TRUE when the name has any A/AAAA address; errors = FALSE
 *             (other errors than "not found" / "no record" logged).
 *
 * Answers are cached in the session (vps_session_dns_cache_*).
 *
 * One VpsResolver per process and per distinct ([dns] nameserver,
 * timeout), shared by every engine and worker (vps_dns_get_resolver):
 * its thread pool bounds the threads blocked in DNS for the whole
 * process, and a reload that keeps the [dns] settings keeps the resolver.
 */
#pragma once

#include <gio/gio.h>
#include "rules/rules.h"
#include "vps/config.h"
#include "vps/resolver.h"
#include "vps/session.h"

G_BEGIN_DECLS

#define VPS_DNS_MAX_NAME 255

/* The cached answer, if any. */
gboolean vps_dns_cached (VpsSession *session, RulesQuery query, const char *name, gboolean *answer);
/* Start a query (answers from the cache immediately when cached); never
 * fails: finish returns the answer.  cfg gives [dns]: with a nameserver
 * the query goes through vps/resolver.h, otherwise (and when cfg is NULL)
 * through GResolver; both bounded by [dns] timeout. */
void vps_dns_query_config_async (VpsConfig *cfg, VpsSession *session, RulesQuery query,
                                 const char *name, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data);
/* The same with cfg NULL: GResolver, default timeout. */
void vps_dns_query_async (VpsSession *session, RulesQuery query, const char *name,
                          GCancellable *cancellable, GAsyncReadyCallback callback,
                          gpointer user_data);
gboolean vps_dns_query_finish (GAsyncResult *result);

/* The process's shared resolver for cfg's [dns] nameserver and timeout
 * (the system's servers when no nameserver is set), for remote delivery
 * and tools; a new reference.  At most VPS_DNS_MAX_RESOLVERS distinct
 * settings are kept (the oldest is dropped; its queries in flight finish). */
#define VPS_DNS_MAX_RESOLVERS 4
VpsResolver *vps_dns_get_resolver (VpsConfig *cfg);

G_END_DECLS
