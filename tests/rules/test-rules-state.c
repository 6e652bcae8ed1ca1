/* SPDX-License-Identifier: MIT
 *
 * test-rules-state.c — the shared-state checks of vsl: rate(key, N,
 * PERIOD), concurrency(key), greylisted() and the `greylist` action.
 * Loading (stages, argument types and ranges, every error branch), what
 * the host is asked (keys, limits, periods), counting once per evaluation
 * across WAITs, checks of one evaluation asked together (one WAIT), the
 * greylist action's verdict and reply, and the answers without a state
 * host.
 */
#include "rules-test-util.h"

#include <string.h>

/* ---- loading ------------------------------------------------------------- */

static const char *const valid_programs[] = {
  "connect { rule \"flood\" when not rate(\"conn:\" + client.ip, 30, 1m) => tempfail 421 4.7.0 "
  "\"Slow down\" }",
  "connect { rule \"ip key\" when not rate(client.ip, 1, 1s) => tempfail }",
  "let n = 5\nlet p = 2h\nmail { rule \"let args\" when not rate(mail.from, n, p) => tempfail }",
  "data { rule \"any stage\" when rate(\"x\", 100000, 366d) => continue }",
  "delivery { rule \"delivery\" when not rate(rcpt.domain, 10, 1m) => deliver mx }",
  "connect { rule \"conc\" when concurrency(client.ip) > 10 => tempfail }",
  "data { rule \"conc data\" when concurrency(\"x\") > 1 => tempfail }",
  "rcpt { rule \"g\" when greylisted() => tempfail 450 4.2.0 \"later\" }",
  "data { rule \"g\" when greylisted() and not client.authenticated => tempfail }",
  "rcpt { rule \"g\" => greylist }",
  "rcpt { rule \"g\" when not client.authenticated => greylist 451 4.7.1 \"Come back later\", log "
  "\"greylist checked\" }",
  "data { rule \"g\" => greylist }",
  /* a connector called greylist stays callable after a comma */
  "rcpt { rule \"p\" => call spf, greylist }",
};

static void
test_load_valid (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (valid_programs); i++)
    {
      g_autoptr (RulesProgram) p = load_or_fail (valid_programs[i]);
      g_assert_nonnull (p);
    }
}

static void
test_call_greylist_connector (void)
{
  g_autoptr (RulesProgram) p = load_or_fail ("rcpt { rule \"p\" => call spf, greylist }");
  const char *const *calls = rules_program_calls (p, RULES_STAGE_RCPT);

  g_assert_cmpuint (g_strv_length ((char **)calls), ==, 2);
  g_assert_cmpstr (calls[1], ==, "greylist");
  g_assert_false (rules_program_uses_state (p, RULES_STATE_GREYLISTED));
}

static void
test_uses_state (void)
{
  g_autoptr (RulesProgram) none = load_or_fail ("connect { rule \"a\" => accept }");
  g_autoptr (RulesProgram) rate
      = load_or_fail ("connect { rule \"a\" when rate(\"k\", 1, 1s) => accept }");
  g_autoptr (RulesProgram) conc
      = load_or_fail ("connect { rule \"a\" when concurrency(\"k\") > 1 => accept }");
  g_autoptr (RulesProgram) grey = load_or_fail ("rcpt { rule \"a\" => greylist }");
  g_autofree char *explain = rules_program_explain (grey);

  for (guint k = 0; k <= RULES_STATE_GREYLISTED; k++)
    g_assert_false (rules_program_uses_state (none, k));
  g_assert_true (rules_program_uses_state (rate, RULES_STATE_RATE));
  g_assert_false (rules_program_uses_state (rate, RULES_STATE_GREYLISTED));
  g_assert_true (rules_program_uses_state (conc, RULES_STATE_CONCURRENCY));
  g_assert_true (rules_program_uses_state (grey, RULES_STATE_GREYLISTED));
  g_assert_true (rules_program_has_verdict (grey, RULES_VERDICT_TEMPFAIL));
  g_assert_nonnull (strstr (explain, "greylist"));
}

typedef struct
{
  const char *text;
  RulesError code;
  const char *message; /* the whole message after "test.vsl:" */
} ErrorCase;

static const ErrorCase error_cases[] = {
  { "connect { rule \"t\" when greylisted() => reject }", RULES_ERROR_STAGE,
    "1:25: 'greylisted' needs a sender and a recipient: only in rcpt and data, not in connect" },
  { "mail { rule \"t\" when greylisted() => reject }", RULES_ERROR_STAGE,
    "1:22: 'greylisted' needs a sender and a recipient: only in rcpt and data, not in mail" },
  { "postq { rule \"t\" when greylisted() => reject }", RULES_ERROR_STAGE,
    "1:23: 'greylisted' needs a sender and a recipient: only in rcpt and data, not in postq" },
  { "mail { rule \"t\" => greylist }", RULES_ERROR_STAGE,
    "1:20: 'greylist' needs a sender and a recipient: only in rcpt and data, not in mail" },
  { "delivery { rule \"t\" => greylist }", RULES_ERROR_STAGE,
    "1:24: 'greylist' needs a sender and a recipient: only in rcpt and data, not in delivery" },
  { "postq { rule \"t\" when concurrency(\"x\") > 1 => reject }", RULES_ERROR_STAGE,
    "1:23: 'concurrency' counts open SMTP sessions: not available in postq" },
  { "delivery { rule \"t\" when concurrency(\"x\") > 1 => deliver mx }", RULES_ERROR_STAGE,
    "1:26: 'concurrency' counts open SMTP sessions: not available in delivery" },
  { "connect { rule \"t\" when rate(\"k\", 0, 1m) => reject }", RULES_ERROR_INVALID,
    "1:35: the limit of 'rate' must be between 1 and 100000, got 0" },
  { "connect { rule \"t\" when rate(\"k\", 100001, 1m) => reject }", RULES_ERROR_INVALID,
    "1:35: the limit of 'rate' must be between 1 and 100000, got 100001" },
  { "connect { rule \"t\" when rate(\"k\", 10, 0) => reject }", RULES_ERROR_INVALID,
    "1:39: the period of 'rate' (a duration) must be between 1 and 31622400, got 0" },
  { "connect { rule \"t\" when rate(\"k\", 10, 367d) => reject }", RULES_ERROR_INVALID,
    "1:39: the period of 'rate' (a duration) must be between 1 and 31622400, got 31708800" },
  { "connect { rule \"t\" when rate(\"k\", client.port, 1m) => reject }", RULES_ERROR_TYPE,
    "1:35: the limit of 'rate' must be a constant number, got an expression" },
  { "connect { rule \"t\" when rate(\"k\", \"10\", 1m) => reject }", RULES_ERROR_TYPE,
    "1:35: the limit of 'rate' must be a constant number, got string" },
  { "connect { rule \"t\" when rate(\"k\", 10, \"1m\") => reject }", RULES_ERROR_TYPE,
    "1:39: the period of 'rate' (a duration) must be a constant number, got string" },
  { "connect { rule \"t\" when rate(1, 10, 1m) => reject }", RULES_ERROR_TYPE,
    "1:30: the key of 'rate' must be a string, got int" },
  { "connect { rule \"t\" when concurrency(true) > 1 => reject }", RULES_ERROR_TYPE,
    "1:37: the key of 'concurrency' must be a string, got bool" },
  { "connect { rule \"t\" when rate(\"k\", 10) => reject }", RULES_ERROR_TYPE,
    "1:25: 'rate' takes 3 arguments, got 2" },
  { "connect { rule \"t\" when concurrency() > 1 => reject }", RULES_ERROR_TYPE,
    "1:25: 'concurrency' takes 1 argument, got 0" },
  { "rcpt { rule \"t\" when greylisted(\"x\") => reject }", RULES_ERROR_TYPE,
    "1:22: 'greylisted' takes 0 arguments, got 1" },
  { "connect { rule \"t\" when concurrency(\"x\") => reject }", RULES_ERROR_TYPE,
    "1:25: rule condition must be a boolean, got int" },
  { "rcpt { rule \"t\" => greylist 550 5.7.1 \"no\" }", RULES_ERROR_INVALID,
    "1:20: greylist needs a 4xx reply code, got 550" },
  { "rcpt { rule \"t\" => greylist 450 5.7.1 \"no\" }", RULES_ERROR_INVALID,
    "1:20: enhanced status code 5.7.1 does not match reply code 450 (class must be 4)" },
  { "rcpt { rule \"t\" => greylist, accept }", RULES_ERROR_INVALID,
    "1:30: 'accept' after 'greylist' in the same rule: the rule has already decided" },
  { "rcpt { rule \"t\" => tempfail, greylist }", RULES_ERROR_INVALID,
    "1:30: 'greylist' after 'tempfail' in the same rule: the rule has already decided" },
  { "let x = rate(\"k\", 1, 1m)", RULES_ERROR_INVALID, "1:9: let 'x' must be a constant" },
};

static void
test_load_errors (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (error_cases); i++)
    {
      const ErrorCase *ec = &error_cases[i];
      g_autoptr (GError) error = NULL;
      g_autoptr (RulesProgram) p
          = rules_program_load_string ("test.vsl", ec->text, &test_options, &error);
      g_autofree char *want = g_strconcat ("test.vsl:", ec->message, NULL);

      g_test_message ("case %u: %s", i, ec->text);
      g_assert_null (p);
      g_assert_error (error, RULES_ERROR, (gint)ec->code);
      g_assert_cmpstr (error->message, ==, want);
    }
}

/* ---- evaluation ------------------------------------------------------------ */

static FakeHost *
host_new (void)
{
  FakeHost *h = fake_host_new ();
  fake_set_ip (h, RULES_VAR_CLIENT_IP, "192.0.2.10");
  fake_set_string (h, RULES_VAR_MAIL_FROM, NULL, "a@example.com", TRUE);
  fake_set_string (h, RULES_VAR_RCPT_TO, NULL, "b@example.org", TRUE);
  return h;
}

static RulesStep
run (RulesProgram *p, RulesStage stage, FakeHost *h, guint *waits)
{
  g_autoptr (RulesState) st = rules_state_new (p);
  return fake_run_stage (p, st, stage, h, FALSE, waits, NULL);
}

static void
test_rate (gconstpointer data)
{
  gboolean async = GPOINTER_TO_INT (data);
  g_autoptr (FakeHost) h = host_new ();
  g_autoptr (RulesProgram) p
      = load_or_fail ("connect { rule \"flood\" when not rate(\"conn:\" + client.ip, 2, 1m) => "
                      "tempfail 421 4.7.0 \"Slow down\" }");

  h->state_async = async;
  for (guint i = 1; i <= 3; i++)
    {
      guint waits = 0;
      RulesStep step = run (p, RULES_STAGE_CONNECT, h, &waits);

      g_assert_cmpuint (waits, ==, async ? 1 : 0);
      if (i <= 2)
        g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
      else
        {
          g_assert_cmpint (step.verdict, ==, RULES_VERDICT_TEMPFAIL);
          g_assert_cmpuint (step.code, ==, 421);
          g_assert_cmpstr (step.enhanced, ==, "4.7.0");
          g_assert_cmpstr (step.text, ==, "Slow down");
          g_assert_false (step.greylist);
        }
      /* one count per evaluation, whatever the WAITs */
      g_assert_cmpint (fake_state_count (h, "conn:192.0.2.10"), ==, i);
    }
  g_assert_cmpuint (h->state_calls->len, ==, 3);
  g_assert_cmpstr (h->state_calls->pdata[0], ==, "rate conn:192.0.2.10 2 60");
}

/* A DNS wait re-evaluates the condition: the rate already counted must not
 * count again. */
static void
test_rate_counts_once_across_waits (void)
{
  g_autoptr (FakeHost) h = host_new ();
  g_autoptr (RulesProgram) p
      = load_or_fail ("connect { rule \"r\" when not rate(\"k\", 5, 1m) or dnsbl(\"zen.example\") "
                      "=> reject }");
  guint waits = 0;
  RulesStep step = run (p, RULES_STAGE_CONNECT, h, &waits);

  g_assert_cmpuint (waits, ==, 1);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
  g_assert_cmpint (fake_state_count (h, "k"), ==, 1);
}

/* Two checks one evaluation reaches are asked before the one WAIT (the
 * engine sends them as one pipelined batch). */
static void
test_checks_of_one_evaluation_wait_once (void)
{
  g_autoptr (FakeHost) h = host_new ();
  g_autoptr (RulesProgram) p
      = load_or_fail ("connect { rule \"r\" when not rate(\"a\", 5, 1m) or not rate(\"b\", 5, 1m) "
                      "or concurrency(\"c\") > 3 => reject }");
  guint waits = 0;
  RulesStep step;

  h->state_async = TRUE;
  step = run (p, RULES_STAGE_CONNECT, h, &waits);
  g_assert_cmpuint (waits, ==, 1);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
  g_assert_cmpuint (h->state_calls->len, ==, 3);
  g_assert_cmpstr (h->state_calls->pdata[2], ==, "concurrency c");
}

/* Two rate() calls with the same key are two events. */
static void
test_two_sites_count_twice (void)
{
  g_autoptr (FakeHost) h = host_new ();
  g_autoptr (RulesProgram) p
      = load_or_fail ("connect {\n"
                      "  rule \"a\" when not rate(\"k\", 1, 1m) => reject\n"
                      "  rule \"b\" when not rate(\"k\", 1, 1m) => tempfail\n"
                      "}");
  RulesStep step = run (p, RULES_STAGE_CONNECT, h, NULL);

  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_TEMPFAIL);
  g_assert_cmpint (fake_state_count (h, "k"), ==, 2);
}

static void
test_concurrency (void)
{
  g_autoptr (FakeHost) h = host_new ();
  g_autoptr (RulesProgram) p = load_or_fail (
      "connect { rule \"c\" when concurrency(client.ip) > 2 => tempfail 421 4.7.0 \"Too many\" }");

  for (guint i = 1; i <= 3; i++)
    {
      RulesStep step = run (p, RULES_STAGE_CONNECT, h, NULL);
      g_assert_cmpint (step.verdict, ==, i <= 2 ? RULES_VERDICT_CONTINUE : RULES_VERDICT_TEMPFAIL);
    }
  g_assert_cmpstr (h->state_calls->pdata[0], ==, "concurrency 192.0.2.10");
}

typedef struct
{
  const char *rules;
  gboolean defer;
  gboolean async;
  RulesVerdict verdict;
  guint code;
  gboolean greylist;
} GreyCase;

static const GreyCase grey_cases[] = {
  /* the action: the host's reply (code 0) when it defers, else the next rule */
  { "rcpt { rule \"g\" => greylist\n rule \"ok\" => accept }", TRUE, FALSE, RULES_VERDICT_TEMPFAIL,
    0, TRUE },
  { "rcpt { rule \"g\" => greylist\n rule \"ok\" => accept }", TRUE, TRUE, RULES_VERDICT_TEMPFAIL,
    0, TRUE },
  { "rcpt { rule \"g\" => greylist\n rule \"ok\" => accept }", FALSE, FALSE, RULES_VERDICT_ACCEPT,
    0, FALSE },
  { "rcpt { rule \"g\" => greylist\n rule \"ok\" => accept }", FALSE, TRUE, RULES_VERDICT_ACCEPT, 0,
    FALSE },
  { "data { rule \"g\" => greylist 451 4.7.1 \"Later\" }", TRUE, FALSE, RULES_VERDICT_TEMPFAIL, 451,
    TRUE },
  { "data { rule \"g\" => greylist 451 4.7.1 \"Later\" }", FALSE, FALSE, RULES_VERDICT_CONTINUE, 0,
    FALSE },
  /* the function */
  { "rcpt { rule \"g\" when greylisted() => tempfail 450 4.2.0 \"Wait\" }", TRUE, TRUE,
    RULES_VERDICT_TEMPFAIL, 450, FALSE },
  { "rcpt { rule \"g\" when greylisted() => tempfail 450 4.2.0 \"Wait\" }", FALSE, TRUE,
    RULES_VERDICT_CONTINUE, 0, FALSE },
};

static void
test_greylist (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (grey_cases); i++)
    {
      const GreyCase *gc = &grey_cases[i];
      g_autoptr (FakeHost) h = host_new ();
      g_autoptr (RulesProgram) p = load_or_fail (gc->rules);
      RulesStage stage = g_str_has_prefix (gc->rules, "rcpt") ? RULES_STAGE_RCPT : RULES_STAGE_DATA;
      guint waits = 0;
      RulesStep step;

      g_test_message ("case %u: %s defer=%d async=%d", i, gc->rules, gc->defer, gc->async);
      h->grey_defer = gc->defer;
      h->state_async = gc->async;
      step = run (p, stage, h, &waits);
      g_assert_cmpint (step.verdict, ==, gc->verdict);
      g_assert_cmpuint (step.code, ==, gc->code);
      g_assert_cmpint (step.greylist, ==, gc->greylist);
      g_assert_cmpuint (waits, ==, gc->async ? 1 : 0);
      g_assert_cmpuint (h->state_calls->len, ==, 1);
      g_assert_cmpstr (h->state_calls->pdata[0], ==, "greylisted");
    }
}

/* The rest of a rule runs after a deciding greylist (log), and not at all
 * before its condition holds. */
static void
test_greylist_rest_of_rule (void)
{
  g_autoptr (FakeHost) h = host_new ();
  g_autoptr (RulesProgram) p = load_or_fail (
      "rcpt { rule \"g\" when rcpt.to == \"b@example.org\" => greylist, log \"checked\" }");
  RulesStep step;

  h->grey_defer = TRUE;
  step = run (p, RULES_STAGE_RCPT, h, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_TEMPFAIL);
  g_assert_cmpstr (step.rule, ==, "g");
  g_assert_cmpuint (h->effects->len, ==, 1);
  g_assert_cmpstr (h->effects->pdata[0], ==, "log =checked");
}

static const RulesHostVTable stateless_vtable = { NULL };

static void
stateless_get (gpointer host, const RulesRef *ref, const char *arg, RulesValue *out)
{
  fake_vtable.get (host, ref, arg, out);
}

/* Without a state host nothing is limited: rate() true, concurrency() 0,
 * greylisted() false, the greylist action a no-op. */
static void
test_no_state_host (void)
{
  RulesHostVTable vt = stateless_vtable;
  g_autoptr (FakeHost) h = host_new ();
  g_autoptr (RulesProgram) p = load_or_fail (
      "rcpt {\n"
      "  rule \"g\" => greylist\n"
      "  rule \"f\" when greylisted() => reject\n"
      "  rule \"r\" when not rate(\"k\", 1, 1s) => reject\n"
      "  rule \"c\" when concurrency(\"k\") != 0 => reject\n"
      "  rule \"ok\" when rate(\"k\", 1, 1s) and concurrency(\"k\") == 0 => accept\n"
      "}");
  g_autoptr (RulesState) st = rules_state_new (p);
  g_autoptr (RulesRun) r = rules_run_new (p, st, RULES_STAGE_RCPT);
  RulesStep step;

  vt.get = stateless_get;
  g_assert_cmpint (rules_run_step (r, &vt, h, &step), ==, RULES_STEP_DONE);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_ACCEPT);
  g_assert_cmpstr (step.rule, ==, "ok");
}

/* A key the backends could not hold (too long, empty) is not asked: not
 * limited. */
static void
test_unusable_keys (void)
{
  g_autoptr (FakeHost) h = host_new ();
  g_autofree char *long_key = g_strnfill (401, 'k');
  g_autofree char *text
      = g_strdup_printf ("connect {\n"
                         "  rule \"long\" when not rate(\"%s\", 1, 1s) => reject\n"
                         "  rule \"empty\" when not rate(\"\", 1, 1s) => reject\n"
                         "  rule \"fits\" when not rate(\"%s\", 1, 1s) => reject\n"
                         "}",
                         long_key, long_key + 1);
  g_autoptr (RulesProgram) p = load_or_fail (text);
  RulesStep step = run (p, RULES_STAGE_CONNECT, h, NULL);

  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
  g_assert_cmpuint (h->state_calls->len, ==, 1);
  g_assert_cmpint (fake_state_count (h, long_key + 1), ==, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/state/load/valid", test_load_valid);
  g_test_add_func ("/rules/state/load/call-greylist-connector", test_call_greylist_connector);
  g_test_add_func ("/rules/state/load/uses-state", test_uses_state);
  g_test_add_func ("/rules/state/load/errors", test_load_errors);
  g_test_add_data_func ("/rules/state/eval/rate/sync", GINT_TO_POINTER (FALSE), test_rate);
  g_test_add_data_func ("/rules/state/eval/rate/async", GINT_TO_POINTER (TRUE), test_rate);
  g_test_add_func ("/rules/state/eval/rate/once-across-waits", test_rate_counts_once_across_waits);
  g_test_add_func ("/rules/state/eval/one-wait-per-evaluation",
                   test_checks_of_one_evaluation_wait_once);
  g_test_add_func ("/rules/state/eval/rate/two-sites", test_two_sites_count_twice);
  g_test_add_func ("/rules/state/eval/concurrency", test_concurrency);
  g_test_add_func ("/rules/state/eval/greylist", test_greylist);
  g_test_add_func ("/rules/state/eval/greylist/rest-of-rule", test_greylist_rest_of_rule);
  g_test_add_func ("/rules/state/eval/no-state-host", test_no_state_host);
  g_test_add_func ("/rules/state/eval/unusable-keys", test_unusable_keys);
  return g_test_run ();
}
