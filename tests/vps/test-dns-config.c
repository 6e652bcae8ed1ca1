/* SPDX-License-Identifier: MIT
 *
 * test-dns-config.c — vps/dns.c with a configuration, against the fake
 * name server: [dns] nameserver answers dnsbl()/resolves(), [dns] timeout
 * bounds the GResolver path (a fake GResolver that never answers), and the
 * process-wide resolvers are shared per setting.
 */
#include "tests/vps/fake-nameserver.h"
#include "vps/dns.h"
#include "vps/log.h"
#include "vps/resolver.h"

static FakeServer *server4;

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
