/* SPDX-License-Identifier: MIT
 *
 * test-dns.c — dnsbl() and resolves() through a fake GResolver installed
 * with g_resolver_set_default: listed (127/8 answer), an answer outside
 * 127/8, NXDOMAIN, a resolver failure (not listed + log line), resolves()
 * true/false, and the per-session cache.
 */
#include <gio/gio.h>
#include "test-engine-util.h"
#include "vps/dns.h"

typedef struct
{
  GResolver parent;
  guint queries;
} FakeResolver;
typedef struct
{
  GResolverClass parent_class;
} FakeResolverClass;

static GType fake_resolver_get_type (void);
G_DEFINE_TYPE (FakeResolver, fake_resolver, G_TYPE_RESOLVER)

static const struct
{
  const char *name;
  const char *answer; /* NULL: error */
  int error;
} zone[] = {
  { "2.0.0.127.zen.test", "127.0.0.2", 0 },
  { "2.2.0.192.zen.test", "10.0.0.1", 0 },
  { "3.2.0.192.zen.test", NULL, G_RESOLVER_ERROR_TEMPORARY_FAILURE },
  { "mx.good.test", "192.0.2.5", 0 },
};

static GList *
answer (FakeResolver *self, const char *name, GError **error)
{
  self->queries++;
  for (guint i = 0; i < G_N_ELEMENTS (zone); i++)
    if (g_ascii_strcasecmp (zone[i].name, name) == 0)
      {
        if (zone[i].answer == NULL)
          {
            g_set_error (error, G_RESOLVER_ERROR, zone[i].error, "temporary failure for %s", name);
            return NULL;
          }
        return g_list_append (NULL, g_inet_address_new_from_string (zone[i].answer));
      }
  g_set_error (error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_NOT_FOUND, "%s: NXDOMAIN", name);
  return NULL;
}

static GList *
fake_lookup (GResolver *r, const char *name, GCancellable *c, GError **error)
{
  return answer ((FakeResolver *)r, name, error);
}

static GList *
fake_lookup_flags (GResolver *r, const char *name, GResolverNameLookupFlags flags, GCancellable *c,
                   GError **error)
{
  return answer ((FakeResolver *)r, name, error);
}

static void
fake_lookup_async (GResolver *r, const char *name, GCancellable *c, GAsyncReadyCallback cb,
                   gpointer data)
{
  GTask *task = g_task_new (r, c, cb, data);
  GError *error = NULL;
  GList *l = answer ((FakeResolver *)r, name, &error);

  if (l != NULL)
    g_task_return_pointer (task, l, (GDestroyNotify)g_resolver_free_addresses);
  else
    g_task_return_error (task, error);
  g_object_unref (task);
}

static void
fake_lookup_flags_async (GResolver *r, const char *name, GResolverNameLookupFlags flags,
                         GCancellable *c, GAsyncReadyCallback cb, gpointer data)
{
  fake_lookup_async (r, name, c, cb, data);
}

static GList *
fake_lookup_finish (GResolver *r, GAsyncResult *res, GError **error)
{
  return g_task_propagate_pointer (G_TASK (res), error);
}

static void
fake_resolver_class_init (FakeResolverClass *klass)
{
  GResolverClass *rc = G_RESOLVER_CLASS (klass);

  rc->lookup_by_name = fake_lookup;
  rc->lookup_by_name_async = fake_lookup_async;
  rc->lookup_by_name_finish = fake_lookup_finish;
  rc->lookup_by_name_with_flags = fake_lookup_flags;
  rc->lookup_by_name_with_flags_async = fake_lookup_flags_async;
  rc->lookup_by_name_with_flags_finish = fake_lookup_finish;
}

static void
fake_resolver_init (FakeResolver *self)
{
}

static FakeResolver *fake;

static void
test_dnsbl (void)
{
  static const struct
  {
    const char *ip;
    RulesVerdict want;
    gboolean logged;
  } cases[] = {
    { "127.0.0.2", RULES_VERDICT_REJECT, FALSE },   /* listed */
    { "192.0.2.1", RULES_VERDICT_CONTINUE, FALSE }, /* NXDOMAIN */
    { "192.0.2.2", RULES_VERDICT_CONTINUE, FALSE }, /* answer outside 127/8 */
    { "192.0.2.3", RULES_VERDICT_CONTINUE, TRUE },  /* resolver error */
  };
  g_autoptr (VpsEngine) e
      = tu_engine (NULL, "connect { rule \"dnsbl\" when dnsbl(\"zen.test\") => reject 554 5.7.1 "
                         "\"Listed\" }");

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (VpsTxn) t = tu_txn (cases[i].ip);
      g_autoptr (GString) log = g_string_new (NULL);
      g_autoptr (VpsStageResult) r = NULL;
      g_autoptr (VpsStageResult) again = NULL;
      guint before;

      vps_log_capture (log);
      r = tu_run (e, t, RULES_STAGE_CONNECT);
      vps_log_capture (NULL);
      g_assert_cmpint (r->verdict, ==, cases[i].want);
      g_assert_cmpint (strstr (log->str, "dns query=") != NULL, ==, cases[i].logged);
      if (cases[i].want == RULES_VERDICT_REJECT)
        g_assert_cmpstr (r->text, ==, "Listed");
      /* the session cache answers the second time */
      before = fake->queries;
      again = tu_run (e, t, RULES_STAGE_CONNECT);
      g_assert_cmpint (again->verdict, ==, cases[i].want);
      g_assert_cmpuint (fake->queries, ==, before);
    }
}

static void
test_resolves (void)
{
  static const struct
  {
    const char *helo;
    RulesVerdict want;
  } cases[] = {
    { "mx.good.test", RULES_VERDICT_CONTINUE },
    { "nowhere.test", RULES_VERDICT_REJECT },
  };
  g_autoptr (VpsEngine) e
      = tu_engine (NULL, "helo { rule \"bad helo\" when not resolves(helo.name) => reject }");

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (VpsTxn) t = tu_txn (NULL);
      g_autoptr (VpsStageResult) r = NULL;

      vps_session_set_helo (vps_txn_get_session (t), cases[i].helo);
      r = tu_run (e, t, RULES_STAGE_HELO);
      g_assert_cmpint (r->verdict, ==, cases[i].want);
    }
}

/* the module alone: too long a name is "not listed" without a query */
static void
done_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  *(int *)data = vps_dns_query_finish (res) ? 1 : 0;
}

static void
test_long_name (void)
{
  g_autoptr (VpsSession) s = vps_session_new ();
  g_autofree char *name = g_strnfill (VPS_DNS_MAX_NAME + 1, 'a');
  int answer = -1;
  guint before = fake->queries;
  gboolean cached = TRUE;

  vps_dns_query_async (s, RULES_QUERY_DNSBL, name, NULL, done_cb, &answer);
  while (answer < 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (answer, ==, 0);
  g_assert_cmpuint (fake->queries, ==, before);
  g_assert_true (vps_dns_cached (s, RULES_QUERY_DNSBL, name, &cached));
  g_assert_false (cached);
}

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  fake = g_object_new (fake_resolver_get_type (), NULL);
  g_resolver_set_default (G_RESOLVER (fake));
  g_test_add_func ("/vps/dns/dnsbl", test_dnsbl);
  g_test_add_func ("/vps/dns/resolves", test_resolves);
  g_test_add_func ("/vps/dns/long-name", test_long_name);
  ret = g_test_run ();
  g_object_unref (fake);
  return ret;
}
