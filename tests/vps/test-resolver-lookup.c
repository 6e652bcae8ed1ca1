/* SPDX-License-Identifier: MIT
 *
 * test-resolver-lookup.c — vps/resolver.h over the wire, against a fake
 * name server on loopback (a thread answering UDP queries from a table:
 * addresses, MX sets, null MX, NXDOMAIN, NODATA, SERVFAIL, silence, and
 * hostile answers that libresolv passes on), through an IPv4 and an IPv6
 * server address; the timeout, cancellation, a closed port, more
 * concurrent queries than pool threads, a resolver dropped with a query
 * in flight.  Then vps/dns.c with a configuration: [dns] nameserver
 * answers dnsbl()/resolves(), [dns] timeout bounds the GResolver path (a
 * fake GResolver that never answers), and the process-wide resolvers are
 * shared per setting.
 */
#include <arpa/nameser.h>
#include <string.h>
#include "vps/dns.h"
#include "vps/log.h"
#include "tests/vps/resolver-test-util.h"
#include "vps/resolver.h"

/* ---- the fake name server ------------------------------------------------- */

typedef struct
{
  GSocket *socket;
  char *address; /* "127.0.0.1:PORT" / "[::1]:PORT" */
  GThread *thread;
  gint stop;
  gint queries;
  /* "silent.test" queries not answered yet, and whether they now get a
   * SERVFAIL: a test that leaves libresolv waiting releases them, so no
   * pool thread is still blocked when the program exits (valgrind would
   * see its libresolv state as lost) */
  GMutex lock;
  GPtrArray *held; /* GBytes: source address + query */
  gboolean released;
} FakeServer;

/* a record owned by the question name (offset 12) */
static void
put_rr (GByteArray *b, guint16 type, const guint8 *rdata, guint16 rdlen)
{
  put16 (b, 0xc000 | NS_HFIXEDSZ);
  put16 (b, type);
  put16 (b, ns_c_in);
  put16 (b, 0);
  put16 (b, 60);
  put16 (b, rdlen);
  g_byte_array_append (b, rdata, rdlen);
}

static void
put_a (GByteArray *b, const char *ip)
{
  g_autoptr (GInetAddress) a = g_inet_address_new_from_string (ip);
  gboolean v6 = g_inet_address_get_family (a) == G_SOCKET_FAMILY_IPV6;

  put_rr (b, v6 ? ns_t_aaaa : ns_t_a, g_inet_address_to_bytes (a), v6 ? 16 : 4);
}

static void
put_mx (GByteArray *b, guint16 pref, const char *exchange)
{
  g_autoptr (GByteArray) rd = g_byte_array_new ();

  put16 (rd, pref);
  put_name (rd, exchange);
  put_rr (b, ns_t_mx, rd->data, rd->len);
}

/* Append the answer records for (name, type) to b, counting them in *an;
 * returns the RCODE, or -1 for silence.  *an_extra inflates ANCOUNT
 * beyond the records (a hostile answer). */
static int
answer (const char *name, int type, GByteArray *b, guint *an, guint *an_extra)
{
  static const struct
  {
    const char *name;
    int type;
    guint16 pref; /* MX */
    const char *data;
  } zone[] = {
    { "a.test", ns_t_a, 0, "192.0.2.1" },
    { "a.test", ns_t_a, 0, "192.0.2.2" },
    { "a.test", ns_t_aaaa, 0, "2001:db8::1" },
    { "v4.test", ns_t_a, 0, "192.0.2.3" },
    { "helo.test", ns_t_a, 0, "192.0.2.3" },
    { "v6.test", ns_t_aaaa, 0, "2001:db8::6" },
    { "2.0.0.127.zen.test", ns_t_a, 0, "127.0.0.2" },
    { "2.2.0.192.zen.test", ns_t_a, 0, "10.0.0.1" },
    { "mx.test", ns_t_mx, 20, "mx2.test" },
    { "mx.test", ns_t_mx, 10, "mx1.test" },
    { "mx.test", ns_t_mx, 10, "mx1b.test" },
    { "null.test", ns_t_mx, 0, "." },
    { "hostile.test", ns_t_mx, 10, "mx1.test" },
  };
  gboolean known = FALSE;

  if (g_str_equal (name, "silent.test"))
    return -1;
  if (g_str_equal (name, "servfail.test") || g_str_equal (name, "3.2.0.192.zen.test"))
    return ns_r_servfail;
  if (g_str_equal (name, "hostile.test"))
    *an_extra = 4;
  if (g_str_equal (name, "loop.test"))
    {
      g_autoptr (GByteArray) rd = g_byte_array_new ();
      /* the exchange is a pointer to itself: after owner 2, fixed 10, pref 2 */
      guint16 at = (guint16)(b->len + 2 + 10 + 2);

      if (type != ns_t_mx)
        return ns_r_noerror;
      put16 (rd, 10);
      put16 (rd, 0xc000 | at);
      put_rr (b, ns_t_mx, rd->data, rd->len);
      (*an)++;
      return ns_r_noerror;
    }
  for (guint i = 0; i < G_N_ELEMENTS (zone); i++)
    {
      if (!g_str_equal (zone[i].name, name))
        continue;
      known = TRUE;
      if (zone[i].type != type)
        continue;
      if (type == ns_t_mx)
        put_mx (b, zone[i].pref, zone[i].data);
      else
        put_a (b, zone[i].data);
      (*an)++;
    }
  return known ? ns_r_noerror : ns_r_nxdomain;
}

/* One query: header, a question of plain labels, QTYPE, QCLASS. */
static GByteArray *
respond (const guint8 *q, gsize len)
{
  GString *name = g_string_new (NULL);
  gsize p = NS_HFIXEDSZ;
  g_autoptr (GByteArray) b = g_byte_array_new ();
  guint an = 0, an_extra = 0;
  int type, rcode;

  if (len < NS_HFIXEDSZ + 5 || q[4] != 0 || q[5] != 1)
    return g_string_free (name, TRUE), NULL;
  while (p < len && q[p] != 0)
    {
      guint l = q[p];

      if (l > 63 || p + 1 + l >= len)
        return g_string_free (name, TRUE), NULL;
      if (name->len > 0)
        g_string_append_c (name, '.');
      g_string_append_len (name, (const char *)q + p + 1, l);
      p += 1 + l;
    }
  if (p + 5 > len)
    return g_string_free (name, TRUE), NULL;
  p++;
  type = (q[p] << 8) | q[p + 1];
  p += 4;
  /* header, then the question copied as asked */
  g_byte_array_append (b, q, 2);
  put16 (b, 0);
  put16 (b, 1);
  put16 (b, 0);
  put16 (b, 0);
  put16 (b, 0);
  g_byte_array_append (b, q + NS_HFIXEDSZ, (guint)(p - NS_HFIXEDSZ));
  {
    g_autofree char *lower = g_ascii_strdown (name->str, -1);

    g_string_free (name, TRUE);
    rcode = answer (lower, type, b, &an, &an_extra);
  }
  if (rcode < 0)
    return NULL;
  b->data[2] = 0x85; /* QR AA RD */
  b->data[3] = 0x80 | (guint8)rcode;
  b->data[6] = (guint8)((an + an_extra) >> 8);
  b->data[7] = (guint8)(an + an_extra);
  return g_steal_pointer (&b);
}

/* the query echoed with QR and SERVFAIL, question included */
static GByteArray *
servfail (const guint8 *q, gsize len)
{
  GByteArray *b = g_byte_array_new ();

  g_byte_array_append (b, q, (guint)len);
  b->data[2] = 0x81;
  b->data[3] = 0x80 | ns_r_servfail;
  return b;
}

typedef struct
{
  GSocketAddress *from;
  GBytes *query;
} Held;

static Held *
held_new (GSocketAddress *from, const guint8 *q, gsize len)
{
  Held *h = g_new0 (Held, 1);

  h->from = g_object_ref (from);
  h->query = g_bytes_new (q, len);
  return h;
}

static void
held_free (gpointer data)
{
  Held *h = data;

  g_object_unref (h->from);
  g_bytes_unref (h->query);
  g_free (h);
}

/* answer the held silent queries with SERVFAIL, and later ones too */
static void
server_release (FakeServer *s)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&s->lock);

  s->released = TRUE;
  for (guint i = 0; i < s->held->len; i++)
    {
      Held *h = s->held->pdata[i];
      gsize len;
      const guint8 *q = g_bytes_get_data (h->query, &len);
      g_autoptr (GByteArray) reply = servfail (q, len);

      g_socket_send_to (s->socket, h->from, (const char *)reply->data, reply->len, NULL, NULL);
    }
  g_ptr_array_set_size (s->held, 0);
}

static void
server_hold (FakeServer *s)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&s->lock);

  s->released = FALSE;
}

static gpointer
server_thread (gpointer data)
{
  FakeServer *s = data;
  guint8 buf[4096];

  while (!g_atomic_int_get (&s->stop))
    {
      g_autoptr (GSocketAddress) from = NULL;
      g_autoptr (GByteArray) reply = NULL;
      gssize n;

      if (!g_socket_condition_timed_wait (s->socket, G_IO_IN, 50000, NULL, NULL))
        continue;
      n = g_socket_receive_from (s->socket, &from, (char *)buf, sizeof buf, NULL, NULL);
      if (n <= 0)
        continue;
      g_atomic_int_inc (&s->queries);
      reply = respond (buf, (gsize)n);
      if (reply == NULL && n >= NS_HFIXEDSZ)
        {
          g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&s->lock);

          if (s->released)
            reply = servfail (buf, (gsize)n);
          else
            g_ptr_array_add (s->held, held_new (from, buf, (gsize)n));
        }
      if (reply != NULL)
        g_socket_send_to (s->socket, from, (const char *)reply->data, reply->len, NULL, NULL);
    }
  return NULL;
}

static FakeServer *
server_start (const char *ip)
{
  FakeServer *s = g_new0 (FakeServer, 1);
  g_autoptr (GInetAddress) a = g_inet_address_new_from_string (ip);
  g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (a, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GError) error = NULL;
  guint16 port;

  s->socket = g_socket_new (g_inet_address_get_family (a), G_SOCKET_TYPE_DATAGRAM,
                            G_SOCKET_PROTOCOL_UDP, &error);
  g_assert_no_error (error);
  g_socket_bind (s->socket, sa, FALSE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (s->socket, &error);
  g_assert_no_error (error);
  port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  s->address = g_inet_address_get_family (a) == G_SOCKET_FAMILY_IPV6
                   ? g_strdup_printf ("[%s]:%u", ip, port)
                   : g_strdup_printf ("%s:%u", ip, port);
  g_mutex_init (&s->lock);
  s->held = g_ptr_array_new_with_free_func (held_free);
  s->thread = g_thread_new ("fake-dns", server_thread, s);
  return s;
}

static void
server_stop (FakeServer *s)
{
  server_release (s);
  g_atomic_int_set (&s->stop, 1);
  g_thread_join (s->thread);
  g_ptr_array_unref (s->held);
  g_mutex_clear (&s->lock);
  g_object_unref (s->socket);
  g_free (s->address);
  g_free (s);
}

static FakeServer *server4;

/* ---- resolver lookups ------------------------------------------------------ */

static char *
addresses_text (GPtrArray *a)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < a->len; i++)
    {
      g_autofree char *t = g_inet_address_to_string (a->pdata[i]);
      g_string_append_printf (s, "%s%s", i ? ", " : "", t);
    }
  return g_string_free (s, FALSE);
}

static const struct
{
  const char *name;
  VpsResolverFamily family;
  int want; /* -1 = ok */
  const char *expect;
  gint queries; /* sent to the server */
} address_cases[] = {
  { "a.test", VPS_RESOLVER_FAMILY_ANY, -1, "192.0.2.1, 192.0.2.2, 2001:db8::1", 2 },
  { "A.Test.", VPS_RESOLVER_FAMILY_IPV4, -1, "192.0.2.1, 192.0.2.2", 1 },
  { "a.test", VPS_RESOLVER_FAMILY_IPV6, -1, "2001:db8::1", 1 },
  { "v4.test", VPS_RESOLVER_FAMILY_ANY, -1, "192.0.2.3", 2 },
  { "v6.test", VPS_RESOLVER_FAMILY_ANY, -1, "2001:db8::6", 2 },
  { "mx.test", VPS_RESOLVER_FAMILY_ANY, VPS_RESOLVER_ERROR_NODATA, NULL, 2 },
  /* NXDOMAIN for A: the AAAA query is not sent */
  { "nx.test", VPS_RESOLVER_FAMILY_ANY, VPS_RESOLVER_ERROR_NXDOMAIN, NULL, 1 },
  { "servfail.test", VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_TEMPORARY, NULL, -1 },
};

static void
test_addresses (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsResolver) r = vps_resolver_new (server4->address, 4000, &error);

  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (address_cases); i++)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (GPtrArray) out = NULL;
      gint before = g_atomic_int_get (&server4->queries);

      g_test_message ("%s", address_cases[i].name);
      out = vps_resolver_lookup_addresses (r, address_cases[i].name, address_cases[i].family, NULL,
                                           &e);
      if (address_cases[i].want < 0)
        {
          g_autofree char *text = NULL;

          g_assert_no_error (e);
          text = addresses_text (out);
          g_assert_cmpstr (text, ==, address_cases[i].expect);
        }
      else
        g_assert_error (e, VPS_RESOLVER_ERROR, address_cases[i].want);
      if (address_cases[i].queries >= 0)
        g_assert_cmpint (g_atomic_int_get (&server4->queries) - before, ==,
                         address_cases[i].queries);
    }
}

static const struct
{
  const char *name;
  int want;
  const char *expect; /* with the tie of 10 as given: either order is fine */
  const char *expect_alt;
} mx_cases[] = {
  { "mx.test", -1, "10 mx1.test, 10 mx1b.test, 20 mx2.test",
    "10 mx1b.test, 10 mx1.test, 20 mx2.test" },
  { "null.test", VPS_RESOLVER_ERROR_NULL_MX },
  { "a.test", VPS_RESOLVER_ERROR_NODATA },
  { "nx.test", VPS_RESOLVER_ERROR_NXDOMAIN },
  { "servfail.test", VPS_RESOLVER_ERROR_TEMPORARY },
  { "hostile.test", VPS_RESOLVER_ERROR_MALFORMED },
  { "loop.test", VPS_RESOLVER_ERROR_MALFORMED },
};

static void
check_mx (const char *server)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsResolver) r = vps_resolver_new (server, 4000, &error);

  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (mx_cases); i++)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (GPtrArray) out = vps_resolver_lookup_mx (r, mx_cases[i].name, NULL, &e);

      g_test_message ("%s via %s", mx_cases[i].name, server);
      if (mx_cases[i].want < 0)
        {
          GString *s = g_string_new (NULL);
          g_autofree char *text = NULL;

          g_assert_no_error (e);
          for (guint j = 0; j < out->len; j++)
            {
              const VpsResolverMx *m = out->pdata[j];
              g_string_append_printf (s, "%s%u %s", j ? ", " : "", m->preference, m->exchange);
            }
          text = g_string_free (s, FALSE);
          if (g_strcmp0 (text, mx_cases[i].expect_alt) != 0)
            g_assert_cmpstr (text, ==, mx_cases[i].expect);
        }
      else
        {
          g_assert_error (e, VPS_RESOLVER_ERROR, mx_cases[i].want);
          g_assert_null (out);
        }
    }
}

static void
test_mx (void)
{
  check_mx (server4->address);
}

/* the server address in _u._ext.nsaddrs (glibc's IPv6 slot) */
static void
test_mx_ipv6_server (void)
{
  g_autoptr (GSocket) probe
      = g_socket_new (G_SOCKET_FAMILY_IPV6, G_SOCKET_TYPE_DATAGRAM, G_SOCKET_PROTOCOL_UDP, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV6);
  g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (lo, 0);
  FakeServer *s6;

  if (probe == NULL || !g_socket_bind (probe, sa, FALSE, NULL))
    {
      g_test_skip ("no IPv6 loopback here");
      return;
    }
  s6 = server_start ("::1");
  check_mx (s6->address);
  g_assert_cmpint (g_atomic_int_get (&s6->queries), >=, (gint)G_N_ELEMENTS (mx_cases));
  server_stop (s6);
}

/* the server never answers: TEMPORARY once the timeout has passed */
static void
test_timeout (void)
{
  g_autoptr (VpsResolver) r = vps_resolver_new (server4->address, 300, NULL);
  g_autoptr (GError) e = NULL;
  g_autoptr (GPtrArray) out = NULL;
  gint64 t0, ms;

  server_hold (server4);
  t0 = g_get_monotonic_time ();
  out = vps_resolver_lookup_mx (r, "silent.test", NULL, &e);
  ms = (g_get_monotonic_time () - t0) / 1000;
  server_release (server4);
  g_assert_error (e, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_TEMPORARY);
  g_assert_nonnull (strstr (e->message, "within 300 ms"));
  g_assert_cmpint (ms, >=, 290);
  g_assert_cmpint (ms, <, 1500);
}

static void
error_done (GObject *source, GAsyncResult *res, gpointer data)
{
  GError **e = data;
  g_autoptr (GPtrArray) out = vps_resolver_lookup_mx_finish (NULL, res, e);

  g_assert_null (out);
}

static gboolean
cancel_later (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_REMOVE;
}

/* cancelled while libresolv waits: completes at once */
static void
test_cancel (void)
{
  g_autoptr (VpsResolver) r = vps_resolver_new (server4->address, 4000, NULL);
  g_autoptr (GCancellable) c = g_cancellable_new ();
  GError *e = NULL;
  gint64 t0 = g_get_monotonic_time ();

  server_hold (server4);
  vps_resolver_lookup_mx_async (r, "silent.test", c, error_done, &e);
  g_timeout_add (100, cancel_later, c);
  while (e == NULL)
    g_main_context_iteration (NULL, TRUE);
  server_release (server4);
  g_assert_error (e, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_CANCELLED);
  g_assert_cmpint ((g_get_monotonic_time () - t0) / 1000, <, 1500);
  g_clear_error (&e);
}

/* nobody listens on the port: refused at once, not at the timeout */
static void
test_port_closed (void)
{
  g_autoptr (GSocket) s
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM, G_SOCKET_PROTOCOL_UDP, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_autofree char *ns = NULL;
  g_autoptr (VpsResolver) r = NULL;
  g_autoptr (GError) e = NULL;
  g_autoptr (GPtrArray) out = NULL;
  gint64 t0;

  g_assert_true (g_socket_bind (s, sa, FALSE, NULL));
  bound = g_socket_get_local_address (s, NULL);
  ns = g_strdup_printf ("127.0.0.1:%u",
                        g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  g_socket_close (s, NULL);
  r = vps_resolver_new (ns, 5000, NULL);
  t0 = g_get_monotonic_time ();
  out = vps_resolver_lookup_addresses (r, "a.test", VPS_RESOLVER_FAMILY_IPV4, NULL, &e);
  g_assert_error (e, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_TEMPORARY);
  g_assert_cmpint ((g_get_monotonic_time () - t0) / 1000, <, 2500);
}

typedef struct
{
  VpsResolver *r;
  guint pending;
  guint ok;
} Many;

static void
many_done (GObject *source, GAsyncResult *res, gpointer data)
{
  Many *m = data;
  g_autoptr (GError) e = NULL;
  g_autoptr (GPtrArray) out = vps_resolver_lookup_mx_finish (m->r, res, &e);

  if (out != NULL && out->len == 3)
    m->ok++;
  m->pending--;
}

/* more queries at once than the pool has threads: all answered */
static void
test_concurrent (void)
{
  Many m = { 0 };
  guint n = VPS_RESOLVER_MAX_THREADS * 3;

  m.r = vps_resolver_new (server4->address, 5000, NULL);
  for (guint i = 0; i < n; i++)
    {
      m.pending++;
      vps_resolver_lookup_mx_async (m.r, "mx.test", NULL, many_done, &m);
    }
  while (m.pending > 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (m.ok, ==, n);
  vps_resolver_unref (m.r);
}

/* the last reference dropped with a query in flight: it still completes */
static void
test_unref_in_flight (void)
{
  VpsResolver *r = vps_resolver_new (server4->address, 200, NULL);
  GError *e = NULL;

  server_hold (server4);
  vps_resolver_lookup_mx_async (r, "silent.test", NULL, error_done, &e);
  vps_resolver_unref (r);
  while (e == NULL)
    g_main_context_iteration (NULL, TRUE);
  server_release (server4);
  g_assert_error (e, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_TEMPORARY);
  g_clear_error (&e);
}

/* ---- vps/dns.c with a configuration ------------------------------------------ */

/* A GResolver that answers "fake.test" and never answers anything else
 * until cancelled. */
typedef struct
{
  GResolver parent;
  gint queries;
} HangResolver;
typedef struct
{
  GResolverClass parent_class;
} HangResolverClass;

static GType hang_resolver_get_type (void);
G_DEFINE_TYPE (HangResolver, hang_resolver, G_TYPE_RESOLVER)

static gboolean
hang_cancelled (GCancellable *c, gpointer data)
{
  g_task_return_new_error (G_TASK (data), G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
  return G_SOURCE_REMOVE;
}

static void
hang_lookup_async (GResolver *r, const char *name, GCancellable *c, GAsyncReadyCallback cb,
                   gpointer data)
{
  GTask *task = g_task_new (r, c, cb, data);
  g_autoptr (GSource) src = NULL;

  g_atomic_int_inc (&((HangResolver *)r)->queries);
  if (g_str_equal (name, "fake.test"))
    {
      GList *l = g_list_append (NULL, g_inet_address_new_from_string ("127.0.0.2"));
      g_task_return_pointer (task, l, (GDestroyNotify)g_resolver_free_addresses);
      g_object_unref (task);
      return;
    }
  g_assert_nonnull (c);
  src = g_cancellable_source_new (c);
  g_source_set_callback (src, G_SOURCE_FUNC (hang_cancelled), task, g_object_unref);
  g_source_attach (src, g_main_context_get_thread_default ());
}

static void
hang_lookup_flags_async (GResolver *r, const char *name, GResolverNameLookupFlags flags,
                         GCancellable *c, GAsyncReadyCallback cb, gpointer data)
{
  hang_lookup_async (r, name, c, cb, data);
}

static GList *
hang_lookup_finish (GResolver *r, GAsyncResult *res, GError **error)
{
  return g_task_propagate_pointer (G_TASK (res), error);
}

static void
hang_resolver_class_init (HangResolverClass *klass)
{
  GResolverClass *rc = G_RESOLVER_CLASS (klass);

  rc->lookup_by_name_async = hang_lookup_async;
  rc->lookup_by_name_finish = hang_lookup_finish;
  rc->lookup_by_name_with_flags_async = hang_lookup_flags_async;
  rc->lookup_by_name_with_flags_finish = hang_lookup_finish;
}

static void
hang_resolver_init (HangResolver *self)
{
}

static HangResolver *hang;

static void
dns_done (GObject *source, GAsyncResult *res, gpointer data)
{
  *(int *)data = vps_dns_query_finish (res) ? 1 : 0;
}

static int
dns_ask (VpsConfig *cfg, VpsSession *s, RulesQuery query, const char *name)
{
  int answer = -1;

  vps_dns_query_config_async (cfg, s, query, name, NULL, dns_done, &answer);
  while (answer < 0)
    g_main_context_iteration (NULL, TRUE);
  return answer;
}

static VpsConfig *
config_with (const char *dns)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = g_strconcat ("[dns]\n", dns, NULL);
  VpsConfig *cfg = vps_config_load_data ("/nonexistent/test.conf", text, &error);

  g_assert_no_error (error);
  return cfg;
}

static const struct
{
  RulesQuery query;
  const char *name;
  int want;
  gboolean logged;
} dns_cases[] = {
  { RULES_QUERY_DNSBL, "2.0.0.127.zen.test", 1, FALSE }, /* listed */
  { RULES_QUERY_DNSBL, "1.2.0.192.zen.test", 0, FALSE }, /* NXDOMAIN */
  { RULES_QUERY_DNSBL, "2.2.0.192.zen.test", 0, FALSE }, /* outside 127/8 */
  { RULES_QUERY_DNSBL, "3.2.0.192.zen.test", 0, TRUE },  /* SERVFAIL: logged */
  { RULES_QUERY_RESOLVES, "helo.test", 1, FALSE },
  { RULES_QUERY_RESOLVES, "v6.test", 1, FALSE },       /* AAAA only */
  { RULES_QUERY_RESOLVES, "nowhere.test", 0, FALSE },  /* NXDOMAIN */
  { RULES_QUERY_RESOLVES, "mx.test", 0, FALSE },       /* NODATA */
  { RULES_QUERY_RESOLVES, "bad name.test", 0, FALSE }, /* never asked */
  { RULES_QUERY_DNSBL, "fake.test", 0, FALSE },        /* not GResolver's answer */
};

/* [dns] nameserver: the fake server answers, GResolver is not asked;
 * the session cache answers the second time */
static void
test_dns_nameserver (void)
{
  g_autofree char *dns = g_strdup_printf ("nameserver = %s\ntimeout = 3s\n", server4->address);
  g_autoptr (VpsConfig) cfg = config_with (dns);
  gint hang_before = g_atomic_int_get (&hang->queries);

  for (guint i = 0; i < G_N_ELEMENTS (dns_cases); i++)
    {
      g_autoptr (VpsSession) s = vps_session_new ();
      g_autoptr (GString) log = g_string_new (NULL);
      gint before;
      int answer;

      g_test_message ("%s", dns_cases[i].name);
      vps_log_capture (log);
      answer = dns_ask (cfg, s, dns_cases[i].query, dns_cases[i].name);
      vps_log_capture (NULL);
      g_assert_cmpint (answer, ==, dns_cases[i].want);
      g_assert_cmpint (strstr (log->str, "dns query=") != NULL, ==, dns_cases[i].logged);
      before = g_atomic_int_get (&server4->queries);
      g_assert_cmpint (dns_ask (cfg, s, dns_cases[i].query, dns_cases[i].name), ==,
                       dns_cases[i].want);
      g_assert_cmpint (g_atomic_int_get (&server4->queries), ==, before);
    }
  g_assert_cmpint (g_atomic_int_get (&hang->queries), ==, hang_before);
}

/* without a nameserver GResolver answers, and [dns] timeout bounds it */
static void
test_dns_gresolver_timeout (void)
{
  g_autoptr (VpsConfig) cfg = config_with ("timeout = 200ms\n");
  g_autoptr (VpsSession) s = vps_session_new ();
  g_autoptr (GString) log = g_string_new (NULL);
  gint before = g_atomic_int_get (&hang->queries);
  gint64 t0, ms;

  g_assert_cmpint (dns_ask (cfg, s, RULES_QUERY_DNSBL, "fake.test"), ==, 1);
  t0 = g_get_monotonic_time ();
  vps_log_capture (log);
  g_assert_cmpint (dns_ask (cfg, s, RULES_QUERY_RESOLVES, "hang.test"), ==, 0);
  vps_log_capture (NULL);
  ms = (g_get_monotonic_time () - t0) / 1000;
  g_assert_cmpint (ms, >=, 190);
  g_assert_cmpint (ms, <, 2000);
  g_assert_nonnull (strstr (log->str, "no answer within 200 ms"));
  g_assert_cmpint (g_atomic_int_get (&hang->queries) - before, ==, 2);
}

/* one resolver per distinct setting, shared */
static void
test_dns_shared (void)
{
  g_autofree char *dns = g_strdup_printf ("nameserver = %s\n", server4->address);
  g_autofree char *dns2 = g_strdup_printf ("nameserver = %s\ntimeout = 2s\n", server4->address);
  g_autoptr (VpsConfig) c1 = config_with (dns);
  g_autoptr (VpsConfig) c1b = config_with (dns);
  g_autoptr (VpsConfig) c2 = config_with (dns2);
  g_autoptr (VpsConfig) sys = config_with ("");
  g_autoptr (VpsResolver) r1 = vps_dns_get_resolver (c1);
  g_autoptr (VpsResolver) r1b = vps_dns_get_resolver (c1b);
  g_autoptr (VpsResolver) r2 = vps_dns_get_resolver (c2);
  g_autoptr (VpsResolver) rs = vps_dns_get_resolver (sys);

  g_assert_true (r1 == r1b);
  g_assert_true (r1 != r2);
  g_assert_cmpint (vps_resolver_get_timeout_ms (r1), ==, 5000);
  g_assert_cmpint (vps_resolver_get_timeout_ms (r2), ==, 2000);
  g_assert_cmpstr (vps_resolver_get_nameserver (r1), ==, server4->address);
  g_assert_null (vps_resolver_get_nameserver (rs));
}

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  server4 = server_start ("127.0.0.1");
  hang = g_object_new (hang_resolver_get_type (), NULL);
  g_resolver_set_default (G_RESOLVER (hang));
  g_test_add_func ("/vps/resolver/lookup/addresses", test_addresses);
  g_test_add_func ("/vps/resolver/lookup/mx", test_mx);
  g_test_add_func ("/vps/resolver/lookup/mx-ipv6-server", test_mx_ipv6_server);
  g_test_add_func ("/vps/resolver/lookup/timeout", test_timeout);
  g_test_add_func ("/vps/resolver/lookup/cancel", test_cancel);
  g_test_add_func ("/vps/resolver/lookup/port-closed", test_port_closed);
  g_test_add_func ("/vps/resolver/lookup/concurrent", test_concurrent);
  g_test_add_func ("/vps/resolver/lookup/unref-in-flight", test_unref_in_flight);
  g_test_add_func ("/vps/dns/config/nameserver", test_dns_nameserver);
  g_test_add_func ("/vps/dns/config/gresolver-timeout", test_dns_gresolver_timeout);
  g_test_add_func ("/vps/dns/config/shared-resolver", test_dns_shared);
  ret = g_test_run ();
  /* released silent queries end in a few ms: let their threads go */
  g_usleep (300 * 1000);
  server_stop (server4);
  g_object_unref (hang);
  return ret;
}
