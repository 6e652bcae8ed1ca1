/* SPDX-License-Identifier: MIT
 *
 * resolver.c — A, AAAA and MX queries on glibc's libresolv, each run in a
 * bounded thread pool and completed on the caller's main context (contract
 * in resolver.h).
 *
 * Server selection: res_ninit() on a private struct __res_state reads
 * /etc/resolv.conf; a configured name server then becomes the only one
 * (nscount = 1): an IPv4 server goes in nsaddr_list[0] with its port, an
 * IPv6 one in _u._ext.nsaddrs[0] (malloc'd: res_nclose() frees it) with
 * nsaddr_list[0].sin_family = 0, which is how glibc (2.26+, resolv/
 * res_get_nsaddr.c) tells the two apart.  Retries and the per-try timeout
 * come from the resolver's timeout; a GSource on the caller's context
 * enforces it exactly, because libresolv counts in whole seconds.
 *
 * Answers: res_nquery() gives NXDOMAIN / NODATA / SERVFAIL-or-timeout in
 * h_errno; a successful answer is walked with ns_initparse() (which checks
 * every section count against the data and refuses trailing bytes) and
 * ns_parserr() (which expands owner names with glibc's compression-loop
 * and 255-octet checks).  RDATA lengths are checked by type here.  RFCs:
 * 1035 (format), 2308 (NODATA), 5321 §5.1 (MX ordering), 7505 (null MX).
 */
#include "vps/resolver-private.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK (vps - resolver - error - quark, vps_resolver_error)

/* A query's copy of the resolver's settings: pool threads never touch the
 * VpsResolver, so it can go away while a query is still blocked. */
typedef struct
{
  gboolean custom; /* a configured server instead of /etc/resolv.conf */
  struct sockaddr_storage addr;
  gint64 timeout_ms;
  char text[64]; /* "IP:PORT", "[IPV6]:PORT" or "the system's name servers" */
} Settings;

struct _VpsResolver
{
  gatomicrefcount ref;
  Settings settings;
  char *nameserver; /* NULL for the system's */
  GThreadPool *pool;
};

typedef enum
{
  KIND_ADDRESSES,
  KIND_MX,
} Kind;

typedef struct
{
  Kind kind;
  VpsResolverFamily family;
  char *name;
  Settings settings;
  GTask *task;
  int done; /* atomic: the first completer (worker, timer, cancel) sets it */
  GSource *timer;
  GSource *cancel_source;
} Query;

gboolean
vps_resolver_fail (GError **error, VpsResolverError code, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_propagate_error (error, g_error_new_valist (VPS_RESOLVER_ERROR, code, fmt, ap));
  va_end (ap);
  return FALSE;
}

gpointer
vps_resolver_fail_null (GError **error, VpsResolverError code, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_propagate_error (error, g_error_new_valist (VPS_RESOLVER_ERROR, code, fmt, ap));
  va_end (ap);
  return NULL;
}

gboolean
vps_resolver_error_is_temporary (const GError *error)
{
  return g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_TEMPORARY)
         || g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_MALFORMED);
}

void
vps_resolver_mx_free (VpsResolverMx *mx)
{
  if (mx == NULL)
    return;
  g_free (mx->exchange);
  g_free (mx);
}

/* ---- names and servers ------------------------------------------------------ */

/* A name we may ask for: printable ASCII without spaces or '\' (peer input
 * must not reach ns_name_pton's escape syntax), at most
 * VPS_RESOLVER_MAX_NAME characters, and a valid wire name (labels of at
 * most 63 octets, 255 octets in all). */
static gboolean
check_name (const char *name, GError **error)
{
  guint8 wire[NS_MAXCDNAME];
  gsize len = name ? strlen (name) : 0;

  if (len == 0 || strcmp (name, ".") == 0)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_INVALID_NAME, "empty name");
  if (len > VPS_RESOLVER_MAX_NAME)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_INVALID_NAME,
                              "name of %" G_GSIZE_FORMAT " characters is over %d", len,
                              VPS_RESOLVER_MAX_NAME);
  for (gsize i = 0; i < len; i++)
    if ((guchar)name[i] <= 0x20 || (guchar)name[i] >= 0x7f || name[i] == '\\')
      return vps_resolver_fail (error, VPS_RESOLVER_ERROR_INVALID_NAME, "name contains byte 0x%02x",
                                (guchar)name[i]);
  if (ns_name_pton (name, wire, sizeof wire) < 0)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_INVALID_NAME,
                              "not a DNS name (empty label, a label over 63 octets or a name "
                              "over 255 octets)");
  return TRUE;
}

static gboolean
parse_port (const char *s, guint16 *port)
{
  guint64 v;

  if (s[0] == '\0' || strlen (s) > 5)
    return FALSE;
  for (const char *p = s; *p; p++)
    if (!g_ascii_isdigit (*p))
      return FALSE;
  v = g_ascii_strtoull (s, NULL, 10);
  if (v == 0 || v > 65535)
    return FALSE;
  *port = (guint16)v;
  return TRUE;
}

/* "IP", "IP:PORT", "[IPV6]" or "[IPV6]:PORT" into host and port. */
static gboolean
split_host_port (const char *text, char **host, guint16 *port)
{
  const char *colon;

  *port = NS_DEFAULTPORT;
  if (text[0] == '[')
    {
      const char *end = strchr (text, ']');

      if (end == NULL || (end[1] != '\0' && (end[1] != ':' || !parse_port (end + 2, port))))
        return FALSE;
      *host = g_strndup (text + 1, end - text - 1);
      return TRUE;
    }
  /* a bare IPv6 address is all host: "::1:53" is an address */
  if (g_hostname_is_ip_address (text))
    {
      *host = g_strdup (text);
      return TRUE;
    }
  colon = strrchr (text, ':');
  if (colon == NULL || !parse_port (colon + 1, port))
    return FALSE;
  *host = g_strndup (text, colon - text);
  return TRUE;
}

static gboolean
parse_nameserver (const char *text, Settings *s, GError **error)
{
  g_autofree char *host = NULL;
  g_autoptr (GInetAddress) addr = NULL;
  g_autoptr (GSocketAddress) sa = NULL;
  guint16 port;

  if (split_host_port (text, &host, &port))
    addr = g_inet_address_new_from_string (host);
  if (addr != NULL)
    sa = g_inet_socket_address_new (addr, port);
  if (sa == NULL || !g_socket_address_to_native (sa, &s->addr, sizeof s->addr, NULL))
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_INVALID_NAME,
                              "name server \"%s\": expected IP, IP:PORT or [IPV6]:PORT", text);
  s->custom = TRUE;
  g_snprintf (s->text, sizeof s->text,
              g_inet_address_get_family (addr) == G_SOCKET_FAMILY_IPV6 ? "[%s]:%u" : "%s:%u", host,
              port);
  return TRUE;
}

/* res_ninit() a private state and point it at our server.  `n_queries`
 * share the timeout: libresolv waits retrans seconds per try. */
static gboolean
res_open (struct __res_state *st, const Settings *s, guint n_queries, GError **error)
{
  gint64 secs = s->timeout_ms / MAX (n_queries, 1) / 1000;

  memset (st, 0, sizeof *st);
  if (res_ninit (st) != 0)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_TEMPORARY,
                              "cannot initialise libresolv (res_ninit)");
  if (s->custom)
    {
      /* res_nclose() frees _ext.nsaddrs[] below nscount only: free the
       * copies res_ninit made for the servers we drop */
      for (int i = 1; i < st->nscount && i < MAXNS; i++)
        {
          free (st->_u._ext.nsaddrs[i]);
          st->_u._ext.nsaddrs[i] = NULL;
        }
      if (s->addr.ss_family == AF_INET)
        memcpy (&st->nsaddr_list[0], &s->addr, sizeof (struct sockaddr_in));
      else
        {
          struct sockaddr_in6 *sa6 = st->_u._ext.nsaddrs[0];

          if (sa6 == NULL)
            sa6 = malloc (sizeof *sa6);
          if (sa6 == NULL)
            {
              res_nclose (st);
              return vps_resolver_fail (error, VPS_RESOLVER_ERROR_TEMPORARY, "out of memory");
            }
          memcpy (sa6, &s->addr, sizeof *sa6);
          st->_u._ext.nsaddrs[0] = sa6;
          st->nsaddr_list[0].sin_family = 0;
        }
      st->nscount = 1;
    }
  st->options &= ~RES_ROTATE;
  /* two tries when there is time for them (a lost UDP datagram), at
   * least one second each: the timer of the query has the last word */
  if (secs >= 2)
    {
      st->retry = 2;
      st->retrans = (int)MIN (secs / 2, 3600);
    }
  else
    {
      st->retry = 1;
      st->retrans = 1;
    }
  return TRUE;
}

/* One res_nquery(): the answer in buf and its length in *len, or an error
 * from h_errno (the buffer of a failed query is not read: a stray
 * datagram may be in it). */
static gboolean
query_one (struct __res_state *st, const Query *q, int type, guint8 *buf, int *len, GError **error)
{
  int saved;

  errno = 0;
  *len = res_nquery (st, q->name, ns_c_in, type, buf, VPS_RESOLVER_MAX_PACKET);
  saved = errno;
  if (*len >= 0)
    {
      *len = MIN (*len, VPS_RESOLVER_MAX_PACKET);
      return TRUE;
    }
  switch (st->res_h_errno)
    {
      case HOST_NOT_FOUND:
        return vps_resolver_fail (error, VPS_RESOLVER_ERROR_NXDOMAIN, "no such domain (NXDOMAIN)");
      case NO_DATA:
        return vps_resolver_fail (error, VPS_RESOLVER_ERROR_NODATA, "no %s record",
                                  vps_resolver_type_name (type));
      case TRY_AGAIN:
        /* SERVFAIL and REFUSED end here too: libresolv tries the next
         * server (and the next try) on them, then reports a timeout */
        if (saved == ECONNREFUSED)
          return vps_resolver_fail (error, VPS_RESOLVER_ERROR_TEMPORARY,
                                    "%s refused the query (port unreachable)", q->settings.text);
        return vps_resolver_fail (error, VPS_RESOLVER_ERROR_TEMPORARY,
                                  "no answer from %s (timeout, SERVFAIL or REFUSED)",
                                  q->settings.text);
      default:
        return vps_resolver_fail (error, VPS_RESOLVER_ERROR_TEMPORARY, "query to %s failed: %s",
                                  q->settings.text, hstrerror (st->res_h_errno));
    }
}

/* For combining the A and AAAA outcomes: a failure beats NODATA (we
 * cannot say the name has no address), NODATA beats NXDOMAIN (the name
 * exists). */
static int
error_rank (const GError *e)
{
  if (e == NULL)
    return 0;
  if (g_error_matches (e, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NXDOMAIN))
    return 1;
  if (g_error_matches (e, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NODATA))
    return 2;
  return 3;
}

static GPtrArray *
run_addresses (Query *q, GError **error)
{
  static const VpsResolverFamily both[] = { VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_FAMILY_IPV6 };
  const VpsResolverFamily *families = both;
  guint n_families = 2;
  struct __res_state st;
  g_autofree guint8 *buf = NULL;
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (GError) worst = NULL;

  if (q->family != VPS_RESOLVER_FAMILY_ANY)
    {
      families = &q->family;
      n_families = 1;
    }
  if (!res_open (&st, &q->settings, n_families, error))
    return NULL;
  buf = g_malloc (VPS_RESOLVER_MAX_PACKET);
  for (guint i = 0; i < n_families && !g_atomic_int_get (&q->done); i++)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (GPtrArray) part = NULL;
      int type = families[i] == VPS_RESOLVER_FAMILY_IPV6 ? ns_t_aaaa : ns_t_a;
      int n;

      if (query_one (&st, q, type, buf, &n, &e))
        part = vps_resolver_parse_addresses (buf, n, families[i], &e);
      if (part != NULL)
        g_ptr_array_extend_and_steal (out, g_steal_pointer (&part));
      else if (error_rank (e) > error_rank (worst))
        {
          g_clear_error (&worst);
          worst = g_steal_pointer (&e);
        }
      /* no such name: no need to ask for its other family */
      if (g_error_matches (worst, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NXDOMAIN))
        break;
    }
  res_nclose (&st);
  if (out->len > 0)
    return g_steal_pointer (&out);
  if (worst == NULL)
    worst = g_error_new_literal (VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_CANCELLED, "cancelled");
  g_propagate_error (error, g_steal_pointer (&worst));
  return NULL;
}

static GPtrArray *
run_mx (Query *q, GError **error)
{
  struct __res_state st;
  g_autofree guint8 *buf = NULL;
  GPtrArray *out = NULL;
  int n;

  if (!res_open (&st, &q->settings, 1, error))
    return NULL;
  buf = g_malloc (VPS_RESOLVER_MAX_PACKET);
  if (query_one (&st, q, ns_t_mx, buf, &n, error))
    out = vps_resolver_parse_mx (buf, n, error);
  res_nclose (&st);
  return out;
}

/* ---- queries ---------------------------------------------------------------- */

static void
query_clear (gpointer data)
{
  Query *q = data;

  g_free (q->name);
  g_clear_object (&q->task);
  g_clear_pointer (&q->timer, g_source_unref);
  g_clear_pointer (&q->cancel_source, g_source_unref);
}

static Query *
query_ref (Query *q)
{
  return g_atomic_rc_box_acquire (q);
}

static void
query_unref (gpointer q)
{
  g_atomic_rc_box_release_full (q, query_clear);
}

/* The one completion of a query, from whichever of the worker, the timer
 * and the cancellable gets there first; takes result or error. */
static void
query_complete (Query *q, GPtrArray *result, GError *error)
{
  if (!g_atomic_int_compare_and_exchange (&q->done, 0, 1))
    {
      g_clear_pointer (&result, g_ptr_array_unref);
      g_clear_error (&error);
      return;
    }
  query_ref (q);
  g_source_destroy (q->timer);
  if (q->cancel_source != NULL)
    g_source_destroy (q->cancel_source);
  if (result != NULL)
    g_task_return_pointer (q->task, result, (GDestroyNotify)g_ptr_array_unref);
  else
    g_task_return_error (q->task, error);
  query_unref (q);
}

static void
query_run (gpointer data, gpointer pool_data)
{
  Query *q = data;
  g_autoptr (GError) error = NULL;
  GPtrArray *result;

  /* timed out or cancelled while queued: nobody waits for the answer */
  if (!g_atomic_int_get (&q->done))
    {
      result = q->kind == KIND_MX ? run_mx (q, &error) : run_addresses (q, &error);
      g_prefix_error (&error, "%s %s: ", q->name,
                      q->kind == KIND_MX                      ? "MX"
                      : q->family == VPS_RESOLVER_FAMILY_IPV4 ? "A"
                      : q->family == VPS_RESOLVER_FAMILY_IPV6 ? "AAAA"
                                                              : "A/AAAA");
      query_complete (q, result, g_steal_pointer (&error));
    }
  query_unref (q);
}

static gboolean
query_timed_out (gpointer data)
{
  Query *q = data;

  query_complete (q, NULL,
                  g_error_new (VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_TEMPORARY,
                               "%s: no answer from %s within %" G_GINT64_FORMAT " ms", q->name,
                               q->settings.text, q->settings.timeout_ms));
  return G_SOURCE_REMOVE;
}

static gboolean
query_cancelled (GCancellable *cancellable, gpointer data)
{
  Query *q = data;

  query_complete (q, NULL,
                  g_error_new (VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_CANCELLED,
                               "%s: query cancelled", q->name));
  return G_SOURCE_REMOVE;
}

static void
start_query (VpsResolver *r, Kind kind, const char *name, VpsResolverFamily family,
             GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data,
             gpointer source_tag)
{
  g_autoptr (GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  g_autoptr (GError) error = NULL;
  GMainContext *context;
  Query *q;

  g_task_set_source_tag (task, source_tag);
  /* the answer decides; GTask must not turn a late answer into CANCELLED */
  g_task_set_check_cancellable (task, FALSE);
  if (!check_name (name, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (kind == KIND_ADDRESSES && g_hostname_is_ip_address (name))
    {
      g_autoptr (GInetAddress) a = g_inet_address_new_from_string (name);
      GSocketFamily want = family == VPS_RESOLVER_FAMILY_IPV4   ? G_SOCKET_FAMILY_IPV4
                           : family == VPS_RESOLVER_FAMILY_IPV6 ? G_SOCKET_FAMILY_IPV6
                                                                : G_SOCKET_FAMILY_INVALID;
      GPtrArray *out;

      /* an address literal is its own answer, as getaddrinfo() does */
      if (a != NULL && (want == G_SOCKET_FAMILY_INVALID || g_inet_address_get_family (a) == want))
        {
          out = g_ptr_array_new_with_free_func (g_object_unref);
          g_ptr_array_add (out, g_steal_pointer (&a));
          g_task_return_pointer (task, out, (GDestroyNotify)g_ptr_array_unref);
        }
      else
        g_task_return_new_error (task, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NODATA,
                                 "%s: an address of the other family", name);
      return;
    }

  q = g_atomic_rc_box_new0 (Query);
  q->kind = kind;
  q->family = family;
  q->name = g_strdup (name);
  q->settings = r->settings;
  q->task = g_object_ref (task);
  context = g_task_get_context (task);
  q->timer = g_timeout_source_new ((guint)MIN (r->settings.timeout_ms, G_MAXUINT));
  g_source_set_static_name (q->timer, "vps resolver timeout");
  g_source_set_callback (q->timer, query_timed_out, query_ref (q), query_unref);
  g_source_attach (q->timer, context);
  if (cancellable != NULL)
    {
      q->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_static_name (q->cancel_source, "vps resolver cancel");
      g_source_set_callback (q->cancel_source, G_SOURCE_FUNC (query_cancelled), query_ref (q),
                             query_unref);
      g_source_attach (q->cancel_source, context);
    }
  /* The pool keeps the item even when it cannot start a thread (it runs
   * when one is free), so the reference goes with it either way; the
   * caller hears of the failure now rather than at the timeout. */
  if (!g_thread_pool_push (r->pool, query_ref (q), &error))
    query_complete (q, NULL,
                    g_error_new (VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_TEMPORARY,
                                 "%s: cannot start a resolver thread: %s", name, error->message));
  query_unref (q);
}

static GPtrArray *
finish_query (GAsyncResult *result, gpointer source_tag, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == source_tag, NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- resolver --------------------------------------------------------------- */

VpsResolver *
vps_resolver_new (const char *nameserver, gint64 timeout_ms, GError **error)
{
  g_autoptr (VpsResolver) r = g_new0 (VpsResolver, 1);

  g_atomic_ref_count_init (&r->ref);
  r->settings.timeout_ms = timeout_ms > 0 ? timeout_ms : VPS_RESOLVER_DEFAULT_TIMEOUT_MS;
  g_strlcpy (r->settings.text, "the system's name servers", sizeof r->settings.text);
  /* a non-exclusive pool: threads are GLib's shared ones, at most
   * VPS_RESOLVER_MAX_THREADS of them blocked in our queries at a time */
  r->pool = g_thread_pool_new (query_run, NULL, VPS_RESOLVER_MAX_THREADS, FALSE, NULL);
  if (nameserver != NULL && nameserver[0] != '\0')
    {
      if (!parse_nameserver (nameserver, &r->settings, error))
        return NULL;
      r->nameserver = g_strdup (r->settings.text);
    }
  return g_steal_pointer (&r);
}

VpsResolver *
vps_resolver_ref (VpsResolver *r)
{
  g_return_val_if_fail (r != NULL, NULL);
  g_atomic_ref_count_inc (&r->ref);
  return r;
}

void
vps_resolver_unref (VpsResolver *r)
{
  if (r == NULL || !g_atomic_ref_count_dec (&r->ref))
    return;
  /* queued queries still run (and complete on their contexts); the pool
   * goes away after the last one, without blocking this thread */
  g_thread_pool_free (r->pool, FALSE, FALSE);
  g_free (r->nameserver);
  g_free (r);
}

const char *
vps_resolver_get_nameserver (VpsResolver *r)
{
  g_return_val_if_fail (r != NULL, NULL);
  return r->nameserver;
}

gint64
vps_resolver_get_timeout_ms (VpsResolver *r)
{
  g_return_val_if_fail (r != NULL, 0);
  return r->settings.timeout_ms;
}

void
vps_resolver_lookup_addresses_async (VpsResolver *r, const char *name, VpsResolverFamily family,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data)
{
  g_return_if_fail (r != NULL);
  start_query (r, KIND_ADDRESSES, name, family, cancellable, callback, user_data,
               vps_resolver_lookup_addresses_async);
}

GPtrArray *
vps_resolver_lookup_addresses_finish (VpsResolver *r, GAsyncResult *result, GError **error)
{
  return finish_query (result, vps_resolver_lookup_addresses_async, error);
}

void
vps_resolver_lookup_mx_async (VpsResolver *r, const char *domain, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data)
{
  g_return_if_fail (r != NULL);
  start_query (r, KIND_MX, domain, VPS_RESOLVER_FAMILY_ANY, cancellable, callback, user_data,
               vps_resolver_lookup_mx_async);
}

GPtrArray *
vps_resolver_lookup_mx_finish (VpsResolver *r, GAsyncResult *result, GError **error)
{
  return finish_query (result, vps_resolver_lookup_mx_async, error);
}

static void
sync_done (GObject *source, GAsyncResult *result, gpointer data)
{
  *(GAsyncResult **)data = g_object_ref (result);
}

/* Run one asynchronous lookup to its end on a private main context. */
static GAsyncResult *
run_sync (VpsResolver *r, Kind kind, const char *name, VpsResolverFamily family,
          GCancellable *cancellable)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  GAsyncResult *result = NULL;

  g_main_context_push_thread_default (context);
  if (kind == KIND_MX)
    vps_resolver_lookup_mx_async (r, name, cancellable, sync_done, &result);
  else
    vps_resolver_lookup_addresses_async (r, name, family, cancellable, sync_done, &result);
  while (result == NULL)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  return result;
}

GPtrArray *
vps_resolver_lookup_addresses (VpsResolver *r, const char *name, VpsResolverFamily family,
                               GCancellable *cancellable, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;

  g_return_val_if_fail (r != NULL, NULL);
  result = run_sync (r, KIND_ADDRESSES, name, family, cancellable);
  return vps_resolver_lookup_addresses_finish (r, result, error);
}

GPtrArray *
vps_resolver_lookup_mx (VpsResolver *r, const char *domain, GCancellable *cancellable,
                        GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;

  g_return_val_if_fail (r != NULL, NULL);
  result = run_sync (r, KIND_MX, domain, VPS_RESOLVER_FAMILY_ANY, cancellable);
  return vps_resolver_lookup_mx_finish (r, result, error);
}
