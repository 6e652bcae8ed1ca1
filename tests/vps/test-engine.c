/* SPDX-License-Identifier: MIT
 *
 * test-engine.c — the stage runner: verdicts at every stage, replies and
 * their defaults, rcpt refusing one recipient, accept vs accept_all,
 * modifications from rules, log lines with the session id, counters.
 * Connectors: test-engine-connectors.c.
 */
#include "test-engine-util.h"

#define MSG "From: a@example.net\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"

static const char *const stage_names[] = {
  "connect", "helo", "auth", "mail", "rcpt", "data", "postq", "delivery",
};

/* Fill the txn up to `stage` as a front end would. */
static void
prepare (VpsTxn *t, RulesStage stage)
{
  if (stage >= RULES_STAGE_MAIL)
    vps_txn_set_sender (t, "a@example.net", NULL);
  if (stage >= RULES_STAGE_RCPT)
    vps_txn_set_rcpt (t, "b@example.org", NULL);
  if (stage >= RULES_STAGE_DATA)
    {
      g_autoptr (VpsMessage) m = tu_message (MSG);
      vps_txn_accept_rcpt (t);
      vps_txn_set_message (t, m);
    }
  if (stage >= RULES_STAGE_POSTQ)
    vps_txn_set_queue_id (t, "ABCDEF");
}

/* every verdict a rule can give, at every stage where it is allowed */
static void
test_verdicts (void)
{
  static const struct
  {
    const char *action;
    RulesVerdict verdict;
  } cases[] = {
    { "accept", RULES_VERDICT_ACCEPT },     { "accept_all", RULES_VERDICT_ACCEPT_ALL },
    { "reject", RULES_VERDICT_REJECT },     { "tempfail", RULES_VERDICT_TEMPFAIL },
    { "discard", RULES_VERDICT_DISCARD },   { "quarantine \"virus\"", RULES_VERDICT_QUARANTINE },
    { "continue", RULES_VERDICT_CONTINUE },
  };

  for (guint s = 0; s < RULES_N_STAGES; s++)
    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        g_autofree char *rules = NULL;
        g_autoptr (VpsEngine) e = NULL;
        g_autoptr (VpsTxn) t = tu_txn (NULL);
        g_autoptr (VpsStageResult) r = NULL;

        /* quarantine is not allowed in delivery (RULES.md) */
        if (s == RULES_STAGE_DELIVERY && cases[i].verdict == RULES_VERDICT_QUARANTINE)
          continue;
        rules = g_strdup_printf ("%s { rule \"r\" => %s }", stage_names[s], cases[i].action);
        e = tu_engine (NULL, rules);
        prepare (t, s);
        r = tu_run (e, t, s);
        g_assert_cmpint (r->stage, ==, s);
        g_assert_cmpint (r->verdict, ==, cases[i].verdict);
        g_assert_cmpuint (r->code, >=, 200);
        g_assert_nonnull (r->text);
        if (cases[i].verdict == RULES_VERDICT_CONTINUE)
          g_assert_cmpuint (r->matched->len, ==, 1);
        else
          g_assert_cmpstr (r->rule, ==, "r");
        if (cases[i].verdict == RULES_VERDICT_QUARANTINE)
          {
            g_assert_cmpstr (r->quarantine, ==, "virus");
            g_assert_cmpstr (vps_txn_get_quarantine (t), ==, "virus");
          }
        g_assert_cmpuint (vps_txn_get_stage_results (t)->len, ==, 1);
        g_assert_cmpuint (vps_engine_stats_stage (e, s, cases[i].verdict), ==, 1);
      }
}

/* default replies per stage and verdict, and a rule's own reply */
static void
test_replies (void)
{
  static const struct
  {
    RulesStage stage;
    const char *action;
    guint code;
    const char *enhanced;
    const char *text;
  } cases[] = {
    { RULES_STAGE_CONNECT, "reject", 554, "5.7.1", "Access denied" },
    { RULES_STAGE_MAIL, "reject", 550, "5.7.1", "Sender rejected" },
    { RULES_STAGE_RCPT, "reject", 550, "5.7.1", "Recipient rejected" },
    { RULES_STAGE_DATA, "reject", 550, "5.7.1", "Message rejected" },
    { RULES_STAGE_RCPT, "tempfail", 450, "4.7.1", "Recipient temporarily rejected" },
    { RULES_STAGE_DATA, "tempfail", 451, "4.7.1", "Try again later" },
    { RULES_STAGE_DATA, "accept", 250, "2.0.0", "Ok" },
    { RULES_STAGE_RCPT, "reject 554 5.7.1 \"Relaying denied\"", 554, "5.7.1", "Relaying denied" },
    { RULES_STAGE_DATA, "tempfail 421 \"Later\"", 421, "4.7.1", "Later" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *rules = g_strdup_printf ("%s { rule \"r\" => %s }",
                                                stage_names[cases[i].stage], cases[i].action);
      g_autoptr (VpsEngine) e = tu_engine (NULL, rules);
      g_autoptr (VpsTxn) t = tu_txn (NULL);
      g_autoptr (VpsStageResult) r = NULL;

      prepare (t, cases[i].stage);
      r = tu_run (e, t, cases[i].stage);
      g_assert_cmpuint (r->code, ==, cases[i].code);
      g_assert_cmpstr (r->enhanced, ==, cases[i].enhanced);
      g_assert_cmpstr (r->text, ==, cases[i].text);
    }
}

/* a rcpt reject refuses that recipient only: the next one is accepted */
static void
test_rcpt_reject_one (void)
{
  g_autoptr (VpsEngine) e = tu_engine (
      NULL, "rcpt { rule \"no relay\" when rcpt.domain != \"example.org\" => reject 554 5.7.1 "
            "\"Relaying denied\" }");
  g_autoptr (VpsTxn) t = tu_txn (NULL);
  const char *rcpts[] = { "x@elsewhere.net", "b@EXAMPLE.org" };
  const RulesVerdict want[] = { RULES_VERDICT_REJECT, RULES_VERDICT_CONTINUE };
  gsize n = 0;

  vps_txn_set_sender (t, "a@example.net", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (rcpts); i++)
    {
      g_autoptr (VpsStageResult) r = NULL;
      vps_txn_set_rcpt (t, rcpts[i], NULL);
      r = tu_run (e, t, RULES_STAGE_RCPT);
      g_assert_cmpint (r->verdict, ==, want[i]);
      g_assert_cmpstr (r->rcpt, ==, rcpts[i]);
      if (r->verdict != RULES_VERDICT_REJECT)
        vps_txn_accept_rcpt (t);
    }
  g_assert_cmpstr (vps_txn_get_rcpts (t, &n)[0], ==, "b@EXAMPLE.org");
  g_assert_cmpuint (n, ==, 1);
}

/* accept ends one stage; accept_all skips later policy stages but never
 * delivery; accept_all at connect covers the session, later only the txn */
static void
test_accept_all (void)
{
  const char *rules = "connect { rule \"trusted\" when client.ip in [10.0.0.0/8] => accept_all }\n"
                      "mail { rule \"vip\" when mail.from == \"vip@example.net\" => accept_all\n"
                      "       rule \"ok\" => accept }\n"
                      "data { rule \"no\" => reject }\n"
                      "delivery { rule \"route\" => deliver relay \"[127.0.0.1]:2525\" }\n";
  g_autoptr (VpsEngine) e = tu_engine (NULL, rules);

  /* session-wide */
  {
    g_autoptr (VpsTxn) t = tu_txn ("10.1.2.3");
    g_autoptr (VpsStageResult) c = tu_run (e, t, RULES_STAGE_CONNECT);
    g_autoptr (VpsStageResult) d = NULL;
    g_autoptr (VpsStageResult) dl = NULL;

    g_assert_cmpint (c->verdict, ==, RULES_VERDICT_ACCEPT_ALL);
    g_assert_true (vps_session_get_accept_all (vps_txn_get_session (t)));
    prepare (t, RULES_STAGE_DATA);
    d = tu_run (e, t, RULES_STAGE_DATA);
    g_assert_cmpint (d->verdict, ==, RULES_VERDICT_ACCEPT);
    g_assert_true (d->skipped);
    g_assert_cmpuint (d->matched->len, ==, 0);
    vps_txn_set_rcpt (t, "b@example.org", NULL);
    dl = tu_run (e, t, RULES_STAGE_DELIVERY);
    g_assert_false (dl->skipped);
    g_assert_cmpuint (vps_txn_get_delivers (t)->len, ==, 1);
    /* survives RSET */
    vps_txn_reset (t);
    prepare (t, RULES_STAGE_DATA);
    g_clear_pointer (&d, vps_stage_result_unref);
    d = tu_run (e, t, RULES_STAGE_DATA);
    g_assert_true (d->skipped);
  }
  /* transaction-wide: RSET ends it */
  {
    g_autoptr (VpsTxn) t = tu_txn (NULL);
    g_autoptr (VpsStageResult) m = NULL;
    g_autoptr (VpsStageResult) d = NULL;

    vps_txn_set_sender (t, "vip@example.net", NULL);
    m = tu_run (e, t, RULES_STAGE_MAIL);
    g_assert_cmpint (m->verdict, ==, RULES_VERDICT_ACCEPT_ALL);
    g_assert_false (vps_session_get_accept_all (vps_txn_get_session (t)));
    g_assert_true (vps_txn_get_accept_all (t));
    prepare (t, RULES_STAGE_DATA);
    d = tu_run (e, t, RULES_STAGE_DATA);
    g_assert_cmpint (d->verdict, ==, RULES_VERDICT_ACCEPT);
    g_assert_true (d->skipped);
    vps_txn_reset (t);
    prepare (t, RULES_STAGE_DATA);
    g_clear_pointer (&d, vps_stage_result_unref);
    d = tu_run (e, t, RULES_STAGE_DATA);
    g_assert_cmpint (d->verdict, ==, RULES_VERDICT_REJECT);
  }
  /* plain accept: data still runs its rules */
  {
    g_autoptr (VpsTxn) t = tu_txn (NULL);
    g_autoptr (VpsStageResult) m = NULL;
    g_autoptr (VpsStageResult) d = NULL;

    vps_txn_set_sender (t, "other@example.net", NULL);
    m = tu_run (e, t, RULES_STAGE_MAIL);
    g_assert_cmpint (m->verdict, ==, RULES_VERDICT_ACCEPT);
    prepare (t, RULES_STAGE_DATA);
    d = tu_run (e, t, RULES_STAGE_DATA);
    g_assert_cmpint (d->verdict, ==, RULES_VERDICT_REJECT);
  }
}

/* header and envelope actions become modifications; a CR/LF value is
 * refused, logged and not applied */
static void
test_modifications (void)
{
  const char *rules
      = "data {\n"
        "  rule \"stamp\" => add_header \"X-Scanned\" \"yes\", insert_header \"X-First\" \"1\"\n"
        "  rule \"tag\" => set_header \"Subject\" \"[tag] \" + subject, remove_header \"X-Old\"\n"
        "  rule \"evil\" => add_header \"X-Evil\" \"a\\nBcc: victim@example.com\"\n"
        "  rule \"env\" => set_sender \"new@example.net\", add_rcpt \"c@example.org\", remove_rcpt "
        "\"b@example.org\"\n"
        "  rule \"body\" => replace_body \"replaced\\n\"\n"
        "}\n";
  g_autoptr (VpsEngine) e = tu_engine (NULL, rules);
  g_autoptr (VpsTxn) t = tu_txn (NULL);
  g_autoptr (VpsStageResult) r = NULL;
  g_autoptr (GString) log = g_string_new (NULL);
  GPtrArray *mods;
  static const VpsModOp want[] = {
    VPS_MOD_ADD_HEADER, VPS_MOD_INSERT_HEADER, VPS_MOD_SET_HEADER,  VPS_MOD_REMOVE_HEADER,
    VPS_MOD_SET_SENDER, VPS_MOD_ADD_RCPT,      VPS_MOD_REMOVE_RCPT, VPS_MOD_REPLACE_BODY,
  };

  prepare (t, RULES_STAGE_DATA);
  vps_log_capture (log);
  r = tu_run (e, t, RULES_STAGE_DATA);
  vps_log_capture (NULL);
  mods = vps_txn_get_modifications (t);
  g_assert_cmpuint (mods->len, ==, G_N_ELEMENTS (want));
  for (guint i = 0; i < mods->len; i++)
    g_assert_cmpint (((VpsModification *)g_ptr_array_index (mods, i))->op, ==, want[i]);
  g_assert_cmpstr (((VpsModification *)g_ptr_array_index (mods, 2))->value, ==, "[tag] hi");
  g_assert_nonnull (strstr (log->str, "X-Evil"));
  g_assert_nonnull (strstr (log->str, vps_session_get_id (vps_txn_get_session (t))));

  /* and they apply to the message */
  {
    g_autoptr (GBytes) raw = g_bytes_new_static (MSG "", strlen (MSG));
    g_autoptr (GBytes) out = vps_modify_apply_message (raw, mods, NULL);
    g_autofree char *s = g_strndup (g_bytes_get_data (out, NULL), g_bytes_get_size (out));
    g_assert_cmpstr (s, ==,
                     "X-First: 1\r\nFrom: a@example.net\r\nTo: b@example.org\r\n"
                     "Subject: [tag] hi\r\nX-Scanned: yes\r\n\r\nreplaced\r\n");
  }
}

/* one log line per stage decision, with the session id */
static void
test_log_line (void)
{
  g_autoptr (VpsEngine) e
      = tu_engine (NULL, "rcpt { rule \"no open relay\" => reject 554 5.7.1 \"Relaying denied\" }");
  g_autoptr (VpsTxn) t = tu_txn (NULL);
  g_autoptr (VpsStageResult) r = NULL;
  g_autoptr (GString) log = g_string_new (NULL);
  g_autofree char *want = NULL;

  prepare (t, RULES_STAGE_RCPT);
  vps_log_capture (log);
  r = tu_run (e, t, RULES_STAGE_RCPT);
  vps_log_capture (NULL);
  want = g_strdup_printf ("id=%s stage=rcpt verdict=reject rule=\"no open relay\" code=554 5.7.1",
                          vps_session_get_id (vps_txn_get_session (t)));
  g_assert_nonnull (strstr (log->str, want));
}

/* values from session and txn reach the rules; `set` variables persist
 * across stages and are reset with the transaction */
static void
test_values (void)
{
  const char *rules
      = "connect { rule \"port\" when client.port == 4242 and server.name == \"MX.example.org\" => "
        "set seen = 1 }\n"
        "mail { rule \"param\" when mail.param(\"SIZE\") == \"1000\" and mail.from.domain == "
        "\"EXAMPLE.net\" and var.seen == 1 => reject 550 \"params\" }\n";
  g_autoptr (VpsEngine) e = tu_engine (NULL, rules);
  g_autoptr (VpsTxn) t = tu_txn (NULL);
  const char *params[] = { "SIZE=1000", "BODY=8BITMIME", NULL };
  g_autoptr (VpsStageResult) c = tu_run (e, t, RULES_STAGE_CONNECT);
  g_autoptr (VpsStageResult) m = NULL;

  vps_txn_set_sender (t, "a@example.net", params);
  m = tu_run (e, t, RULES_STAGE_MAIL);
  g_assert_cmpint (m->verdict, ==, RULES_VERDICT_REJECT);
  g_assert_cmpstr (m->text, ==, "params");
  vps_txn_reset (t);
  vps_txn_set_sender (t, "a@example.net", params);
  g_clear_pointer (&m, vps_stage_result_unref);
  m = tu_run (e, t, RULES_STAGE_MAIL);
  g_assert_cmpint (m->verdict, ==, RULES_VERDICT_CONTINUE);
}

/* a cancelled stage fails with CANCELLED */
static void
test_cancelled (void)
{
  g_autoptr (VpsEngine) e = tu_engine (NULL, "connect { rule \"r\" => reject }");
  g_autoptr (VpsTxn) t = tu_txn (NULL);
  g_autoptr (GCancellable) c = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) r = NULL;

  g_cancellable_cancel (c);
  r = vps_engine_run_stage_sync (e, vps_txn_get_session (t), t, RULES_STAGE_CONNECT, c, &error);
  g_assert_null (r);
  g_assert_error (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_CANCELLED);
}

/* config errors: unknown connector type, rules that do not load */
static void
test_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = NULL;
  g_autoptr (VpsEngine) e = NULL;

  vps_connector_registry_add (&conn_test_class);
  cfg = vps_config_load_data ("/x/t.conf", "[connector x]\ntype = nosuch\n", &error);
  g_assert_no_error (error);
  e = vps_engine_new_with_rules_string (cfg, "t.vsl", "", &error);
  g_assert_null (e);
  g_assert_error (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_CONFIG);
  g_assert_nonnull (strstr (error->message, "t.conf:2"));
  g_clear_error (&error);
  g_clear_pointer (&cfg, vps_config_unref);

  cfg = vps_config_load_data ("/x/t.conf", "", &error);
  g_assert_no_error (error);
  e = vps_engine_new_with_rules_string (cfg, "t.vsl", "data { rule \"r\" => call nosuch }", &error);
  g_assert_null (e);
  g_assert_error (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_RULES);
  g_assert_nonnull (strstr (error->message, "t.vsl:1"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/vps/engine/verdicts", test_verdicts);
  g_test_add_func ("/vps/engine/replies", test_replies);
  g_test_add_func ("/vps/engine/rcpt-reject-one", test_rcpt_reject_one);
  g_test_add_func ("/vps/engine/accept-all", test_accept_all);
  g_test_add_func ("/vps/engine/modifications", test_modifications);
  g_test_add_func ("/vps/engine/log-line", test_log_line);
  g_test_add_func ("/vps/engine/values", test_values);
  g_test_add_func ("/vps/engine/cancelled", test_cancelled);
  g_test_add_func ("/vps/engine/errors", test_errors);
  return g_test_run ();
}
