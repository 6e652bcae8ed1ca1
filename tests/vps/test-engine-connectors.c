/* SPDX-License-Identifier: MIT
 *
 * test-engine-connectors.c — `call` from rules through the `test`
 * connector: result fields read by later rules, concurrent connectors merged
 * by severity, timeouts and failures mapped to on_error (and NAME.error),
 * the concurrency limit, connector modifications, per-connector counters.
 */
#include "test-engine-util.h"

#define MSG "From: a@example.net\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"

static VpsTxn *
data_txn (void)
{
  VpsTxn *t = tu_txn (NULL);
  g_autoptr (VpsMessage) m = tu_message (MSG);

  vps_txn_set_sender (t, "a@example.net", NULL);
  vps_txn_add_rcpt (t, "b@example.org", NULL);
  vps_txn_set_message (t, m);
  return t;
}

static void
test_fields (void)
{
  g_autoptr (VpsEngine) e = tu_engine (
      "[connector t]\ntype = test\nfields = score=7.5; spam=true; n=3; tags=[a, b]; name=x\n",
      "data {\n"
      "  rule \"scan\" => call t\n"
      "  rule \"spam\" when t.score > 5 and t.spam and t.n == 3 and \"b\" in t.tags\n"
      "       and t.name == \"x\" and t.verdict == \"continue\" and not t.error\n"
      "       => reject 550 5.7.1 \"Spam\"\n"
      "}\n");
  g_autoptr (VpsTxn) t = data_txn ();
  g_autoptr (VpsStageResult) r = tu_run (e, t, RULES_STAGE_DATA);
  VpsConnectorResult *cr;

  g_assert_cmpint (r->verdict, ==, RULES_VERDICT_REJECT);
  g_assert_cmpstr (r->rule, ==, "spam");
  g_assert_cmpuint (r->results->len, ==, 1);
  cr = vps_txn_get_connector_result (t, "t");
  g_assert_nonnull (cr);
  g_assert_cmpstr (cr->connector, ==, "t");
  g_assert_false (cr->error);
  g_assert_cmpfloat (vps_connector_result_get_field (cr, "score")->f, ==, 7.5);
}

/* two connectors called together: the most severe verdict wins */
static void
test_merge (void)
{
  static const struct
  {
    const char *a, *b;
    RulesVerdict want;
    const char *winner;
  } cases[] = {
    { "discard", "reject", RULES_VERDICT_DISCARD, "a" },
    { "tempfail", "reject", RULES_VERDICT_REJECT, "b" },
    { "tempfail", "quarantine", RULES_VERDICT_TEMPFAIL, "a" },
    { "accept", "quarantine", RULES_VERDICT_QUARANTINE, "b" },
    { "accept", "continue", RULES_VERDICT_ACCEPT, "a" },
    { "continue", "continue", RULES_VERDICT_CONTINUE, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *cfg = g_strdup_printf (
          "[connector a]\ntype = test\nverdict = %s\ndelay = 20ms\ntext = from a\n"
          "quarantine = spam\n"
          "[connector b]\ntype = test\nverdict = %s\ntext = from b\nquarantine = spam\n",
          cases[i].a, cases[i].b);
      g_autoptr (VpsEngine) e
          = tu_engine (cfg, "data { rule \"both\" => call a, b\n rule \"after\" => accept }");
      g_autoptr (VpsTxn) t = data_txn ();
      g_autoptr (VpsStageResult) r = tu_run (e, t, RULES_STAGE_DATA);

      g_assert_cmpuint (r->results->len, ==, 2);
      if (cases[i].winner == NULL)
        {
          /* nobody had an opinion: the rules went on */
          g_assert_cmpstr (r->rule, ==, "after");
          continue;
        }
      g_assert_cmpint (r->verdict, ==, cases[i].want);
      g_assert_nonnull (strstr (r->rule, cases[i].winner));
      g_assert_nonnull (strstr (r->rule, "both"));
      if (cases[i].want != RULES_VERDICT_QUARANTINE)
        g_assert_cmpstr (r->text, ==, cases[i].winner[0] == 'a' ? "from a" : "from b");
      else
        g_assert_cmpstr (vps_txn_get_quarantine (t), ==, "spam");
    }
}

/* a connector slower than its timeout: on_error at the timeout */
static void
test_timeout (void)
{
  g_autoptr (VpsEngine) e = tu_engine (
      "[connector slow]\ntype = test\ndelay = 5s\ntimeout = 200ms\non_error = reject\n",
      "data { rule \"scan\" => call slow }");
  g_autoptr (VpsTxn) t = data_txn ();
  gint64 start = g_get_monotonic_time ();
  g_autoptr (VpsStageResult) r = tu_run (e, t, RULES_STAGE_DATA);
  gint64 ms = (g_get_monotonic_time () - start) / 1000;
  VpsConnectorResult *cr = vps_txn_get_connector_result (t, "slow");
  VpsConnectorStats st;

  g_assert_cmpint (ms, >=, 190);
  g_assert_cmpint (ms, <, 2000);
  g_assert_cmpint (r->verdict, ==, RULES_VERDICT_REJECT);
  g_assert_true (cr->error);
  g_assert_nonnull (strstr (cr->error_message, "timeout"));
  vps_connector_get_stats (vps_engine_lookup_connector (e, "slow"), &st);
  g_assert_cmpuint (st.calls, ==, 1);
  g_assert_cmpuint (st.errors, ==, 1);
  g_assert_cmpuint (st.timeouts, ==, 1);
}

/* a failing connector: on_error, and NAME.error for later rules */
static void
test_failure (void)
{
  static const struct
  {
    const char *on_error;
    RulesVerdict want;
    const char *rule;
  } cases[] = {
    { "continue", RULES_VERDICT_TEMPFAIL, "saw error" },
    { "tempfail", RULES_VERDICT_TEMPFAIL, NULL },
    { "accept", RULES_VERDICT_ACCEPT, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *cfg = g_strdup_printf (
          "[connector broken]\ntype = test\nfail = true\non_error = %s\n", cases[i].on_error);
      g_autoptr (VpsEngine) e = tu_engine (
          cfg, "data { rule \"scan\" => call broken\n"
               " rule \"saw error\" when broken.error => tempfail 451 4.3.0 \"scanner down\" }");
      g_autoptr (VpsTxn) t = data_txn ();
      g_autoptr (GString) log = g_string_new (NULL);
      g_autoptr (VpsStageResult) r = NULL;

      vps_log_capture (log);
      r = tu_run (e, t, RULES_STAGE_DATA);
      vps_log_capture (NULL);
      g_assert_cmpint (r->verdict, ==, cases[i].want);
      if (cases[i].rule != NULL)
        g_assert_cmpstr (r->rule, ==, cases[i].rule);
      else
        g_assert_nonnull (strstr (r->rule, "connector broken"));
      g_assert_true (vps_txn_get_connector_result (t, "broken")->error);
      /* never silence: the failure is logged with the session id */
      g_assert_nonnull (strstr (log->str, "connector=broken error="));
      g_assert_nonnull (strstr (log->str, vps_session_get_id (vps_txn_get_session (t))));
    }
}

typedef struct
{
  guint done;
  gint64 finished_ms[3];
  gint64 start;
} Counter;

static void
concurrent_done (GObject *source, GAsyncResult *res, gpointer data)
{
  Counter *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) r = vps_engine_run_stage_finish (NULL, res, &error);

  g_assert_no_error (error);
  g_assert_cmpint (r->verdict, ==, RULES_VERDICT_CONTINUE);
  c->finished_ms[c->done++] = (g_get_monotonic_time () - c->start) / 1000;
}

/* concurrency = 1: calls beyond it wait in a queue and run one by one */
static void
test_concurrency (void)
{
  g_autoptr (VpsEngine) e
      = tu_engine ("[connector one]\ntype = test\ndelay = 100ms\nconcurrency = 1\ntimeout = 5s\n",
                   "data { rule \"scan\" => call one }");
  VpsConnector *c = vps_engine_lookup_connector (e, "one");
  VpsTxn *txns[3];
  Counter counter = { 0 };
  VpsConnectorStats st;

  counter.start = g_get_monotonic_time ();
  for (guint i = 0; i < 3; i++)
    {
      txns[i] = data_txn ();
      vps_engine_run_stage_async (e, vps_txn_get_session (txns[i]), txns[i], RULES_STAGE_DATA, NULL,
                                  concurrent_done, &counter);
    }
  vps_connector_get_stats (c, &st);
  g_assert_cmpuint (st.active, ==, 1);
  g_assert_cmpuint (st.queued, ==, 2);
  while (counter.done < 3)
    g_main_context_iteration (NULL, TRUE);
  /* one after the other: ~100, ~200, ~300 ms */
  g_assert_cmpint (counter.finished_ms[0], >=, 90);
  g_assert_cmpint (counter.finished_ms[1], >=, 190);
  g_assert_cmpint (counter.finished_ms[2], >=, 290);
  vps_connector_get_stats (c, &st);
  g_assert_cmpuint (st.calls, ==, 3);
  g_assert_cmpuint (st.active, ==, 0);
  g_assert_cmpuint (st.queued, ==, 0);
  g_assert_cmpuint (st.errors, ==, 0);
  /* the `calls` field counts answers of this instance: 1, 2, 3 */
  for (guint i = 0; i < 3; i++)
    {
      VpsConnectorResult *cr = vps_txn_get_connector_result (txns[i], "one");
      g_assert_cmpint (vps_connector_result_get_field (cr, "calls")->i, ==, i + 1);
      vps_txn_unref (txns[i]);
    }
}

/* a connector's modifications join the transaction's */
static void
test_connector_modification (void)
{
  g_autoptr (VpsEngine) e = tu_engine ("[connector t]\ntype = test\nadd_header = X-Test: yes\n",
                                       "data { rule \"scan\" => call t }");
  g_autoptr (VpsTxn) t = data_txn ();
  g_autoptr (VpsStageResult) r = tu_run (e, t, RULES_STAGE_DATA);
  GPtrArray *mods = vps_txn_get_modifications (t);
  VpsModification *m;

  g_assert_cmpuint (mods->len, ==, 1);
  m = g_ptr_array_index (mods, 0);
  g_assert_cmpint (m->op, ==, VPS_MOD_ADD_HEADER);
  g_assert_cmpstr (m->name, ==, "X-Test");
  g_assert_cmpstr (m->value, ==, "yes");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/vps/engine/connector/fields", test_fields);
  g_test_add_func ("/vps/engine/connector/merge", test_merge);
  g_test_add_func ("/vps/engine/connector/timeout", test_timeout);
  g_test_add_func ("/vps/engine/connector/failure", test_failure);
  g_test_add_func ("/vps/engine/connector/concurrency", test_concurrency);
  g_test_add_func ("/vps/engine/connector/modification", test_connector_modification);
  return g_test_run ();
}
