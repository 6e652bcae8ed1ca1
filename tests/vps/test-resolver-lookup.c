/* SPDX-License-Identifier: MIT
 *
 * test-resolver-lookup.c — vps/resolver.h over the wire, against a fake
 * name server on loopback (a thread answering UDP queries from a table:
 * addresses, MX sets, null MX, NXDOMAIN, NODATA, SERVFAIL, silence, and
 * hostile answers that libresolv passes on), through an IPv4 and an IPv6
 * server address; the timeout, cancellation, a closed port, more
 * concurrent queries than pool threads, a resolver dropped with a query
 * in flight.  vps/dns.c with a configuration is test-dns-config.c's.
 */
#include <arpa/nameser.h>
#include <string.h>
#include "vps/dns.h"
#include "vps/log.h"
#include "tests/vps/fake-nameserver.h"
#include "vps/resolver.h"

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

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  server4 = server_start ("127.0.0.1");
  g_test_add_func ("/vps/resolver/lookup/addresses", test_addresses);
  g_test_add_func ("/vps/resolver/lookup/mx", test_mx);
  g_test_add_func ("/vps/resolver/lookup/mx-ipv6-server", test_mx_ipv6_server);
  g_test_add_func ("/vps/resolver/lookup/timeout", test_timeout);
  g_test_add_func ("/vps/resolver/lookup/cancel", test_cancel);
  g_test_add_func ("/vps/resolver/lookup/port-closed", test_port_closed);
  g_test_add_func ("/vps/resolver/lookup/concurrent", test_concurrent);
  g_test_add_func ("/vps/resolver/lookup/unref-in-flight", test_unref_in_flight);
  ret = g_test_run ();
  /* released silent queries end in a few ms: let their threads go */
  g_usleep (300 * 1000);
  server_stop (server4);
  return ret;
}
