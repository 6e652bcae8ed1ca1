/* SPDX-License-Identifier: MIT
 *
 * resolver.h — asynchronous DNS queries (A, AAAA, MX) through glibc's
 * libresolv, asking one configured name server ([dns] nameserver) or the
 * system's (/etc/resolv.conf).
 *
 * Why not GResolver: it cannot be pointed at a given server and port, and
 * it folds "no such domain" and "no record of this type" into one error,
 * while remote delivery (RFC 5321 §5.1) must tell them apart: no MX record
 * means "deliver to the domain's A/AAAA", no domain means "bounce".
 *
 * Each query runs in a bounded thread pool of the resolver (res_ninit on a
 * private struct __res_state, res_nquery, then ns_initparse/ns_parserr on
 * the answer) and completes on the thread-default main context of the
 * caller of *_async.  The whole query, queueing included, is bounded by the
 * resolver's timeout: when it passes, the query completes with
 * VPS_RESOLVER_ERROR_TEMPORARY even if a pool thread is still waiting on
 * the network (its late answer is dropped).  Cancellation completes the
 * query at once with VPS_RESOLVER_ERROR_CANCELLED.  A query keeps what it
 * needs: the resolver may be unreffed while queries are in flight (they
 * still complete), and the *_finish functions do not touch it.
 *
 * Outcomes (finish returns the records, or one of these errors):
 *   VPS_RESOLVER_ERROR_NXDOMAIN   the name does not exist (RCODE 3)
 *   VPS_RESOLVER_ERROR_NODATA     the name exists, without a record of the
 *                                 type (for MX: fall back to A/AAAA)
 *   VPS_RESOLVER_ERROR_NULL_MX    RFC 7505: one MX record whose exchange
 *                                 is "." — the domain accepts no mail
 *   VPS_RESOLVER_ERROR_TEMPORARY  SERVFAIL, REFUSED, timeout, server
 *                                 unreachable, truncated answer: retry later
 *   VPS_RESOLVER_ERROR_MALFORMED  the answer does not parse (counts larger
 *                                 than the data, bad compression, a name
 *                                 over 255 octets, bad RDATA) or holds no
 *                                 usable MX host; treat as temporary
 *   VPS_RESOLVER_ERROR_INVALID_NAME  the name asked is not a DNS name
 *                                 (empty, over VPS_RESOLVER_MAX_NAME, a
 *                                 label over 63 octets); no query is sent
 *
 * Every count and length in an answer is checked against the data and the
 * named limits below before use; at most VPS_RESOLVER_MAX_ANSWERS records
 * of the answer section are read.  MX results are sorted by preference,
 * ties in random order (RFC 5321 §5.1); an exchange that is not a host name
 * (escaped or non-LDH characters, "." among other MX records) is skipped,
 * a repeated exchange keeps its lowest preference.
 *
 * The parsers are public so that tests (and fuzzers) can feed them bytes.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define VPS_RESOLVER_ERROR (vps_resolver_error_quark ())
GQuark vps_resolver_error_quark (void);

typedef enum
{
  VPS_RESOLVER_ERROR_NXDOMAIN,
  VPS_RESOLVER_ERROR_NODATA,
  VPS_RESOLVER_ERROR_NULL_MX,
  VPS_RESOLVER_ERROR_TEMPORARY,
  VPS_RESOLVER_ERROR_MALFORMED,
  VPS_RESOLVER_ERROR_INVALID_NAME,
  VPS_RESOLVER_ERROR_CANCELLED,
} VpsResolverError;

/* Named limits on what we ask and what we read from the wire. */
#define VPS_RESOLVER_MAX_NAME 255     /* a name in presentation form (RFC 1035 §2.3.4) */
#define VPS_RESOLVER_MAX_PACKET 65535 /* an answer (a TCP answer's 16-bit length) */
#define VPS_RESOLVER_MAX_ANSWERS 64   /* records read from one answer section */
#define VPS_RESOLVER_MAX_THREADS 16   /* queries blocked in libresolv at once, per resolver */
#define VPS_RESOLVER_DEFAULT_TIMEOUT_MS 5000

/* TRUE for the errors after which a caller should retry later
 * (TEMPORARY, MALFORMED). */
gboolean vps_resolver_error_is_temporary (const GError *error);

typedef enum
{
  VPS_RESOLVER_FAMILY_ANY, /* A and AAAA */
  VPS_RESOLVER_FAMILY_IPV4,
  VPS_RESOLVER_FAMILY_IPV6,
} VpsResolverFamily;

typedef struct
{
  guint16 preference;
  char *exchange; /* presentation form, no trailing dot */
} VpsResolverMx;

void vps_resolver_mx_free (VpsResolverMx *mx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsResolverMx, vps_resolver_mx_free)

typedef struct _VpsResolver VpsResolver;

/* nameserver: "IP", "IP:PORT" or "[IPV6]:PORT" (port 53 by default), the
 * only server asked; NULL or "" = the servers of /etc/resolv.conf.
 * timeout_ms: the time allowed for one lookup (<= 0: the default).
 * Fails (VPS_RESOLVER_ERROR_INVALID_NAME) on a nameserver that is not an
 * IP address with an optional port. */
VpsResolver *vps_resolver_new (const char *nameserver, gint64 timeout_ms, GError **error);
VpsResolver *vps_resolver_ref (VpsResolver *resolver);
void vps_resolver_unref (VpsResolver *resolver);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsResolver, vps_resolver_unref)

/* "IP:PORT" / "[IPV6]:PORT" of the configured server, or NULL for the system's. */
const char *vps_resolver_get_nameserver (VpsResolver *resolver);
gint64 vps_resolver_get_timeout_ms (VpsResolver *resolver);

/* Addresses of `name`: A records, then AAAA records (as the family asks).
 * A name that is an IP address literal answers itself without a query.
 * finish: GPtrArray of GInetAddress* (never empty), or an error; when one
 * family has addresses and the other failed, the addresses win. */
void vps_resolver_lookup_addresses_async (VpsResolver *resolver, const char *name,
                                          VpsResolverFamily family, GCancellable *cancellable,
                                          GAsyncReadyCallback callback, gpointer user_data);
GPtrArray *vps_resolver_lookup_addresses_finish (VpsResolver *resolver, GAsyncResult *result,
                                                 GError **error);

/* MX records of `domain`.  finish: GPtrArray of VpsResolverMx* (never
 * empty), sorted by preference with ties shuffled, or an error. */
void vps_resolver_lookup_mx_async (VpsResolver *resolver, const char *domain,
                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                   gpointer user_data);
GPtrArray *vps_resolver_lookup_mx_finish (VpsResolver *resolver, GAsyncResult *result,
                                          GError **error);

/* Synchronous wrappers for tools and tests: run the asynchronous lookup on
 * a private main context of the calling thread.  Never on an event loop
 * thread that has other work to do. */
GPtrArray *vps_resolver_lookup_addresses (VpsResolver *resolver, const char *name,
                                          VpsResolverFamily family, GCancellable *cancellable,
                                          GError **error);
GPtrArray *vps_resolver_lookup_mx (VpsResolver *resolver, const char *domain,
                                   GCancellable *cancellable, GError **error);

/* The answer parsers (no I/O).  `packet` is one DNS response of `len`
 * bytes.  parse_addresses reads A (family IPV4) or AAAA (IPV6) records;
 * parse_mx reads MX records and sorts them as above.  The RCODE and the
 * absence of records map to the errors above. */
GPtrArray *vps_resolver_parse_addresses (const guint8 *packet, gsize len, VpsResolverFamily family,
                                         GError **error);
GPtrArray *vps_resolver_parse_mx (const guint8 *packet, gsize len, GError **error);

G_END_DECLS
