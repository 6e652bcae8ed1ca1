/* SPDX-License-Identifier: MIT
 *
 * test-rules-eval.c — the evaluator against a fake host: every operator and
 * coercion, every function (dnsbl/resolves through WAIT and resume), every
 * action and effect, call resume, accept_all, lists of each type,
 * case-insensitive comparisons, missing values, `set` variables.
 */
#include "rules-test-util.h"

#include <string.h>

static FakeHost *
standard_host (void)
{
  FakeHost *h = fake_host_new ();
  static const char *const rcpts[] = { "Alice@Example.com", "bob@example.org", NULL };
  static const char *const recv[] = { "from a by b", "from c by d", NULL };
  RulesValue v;

  fake_set_ip (h, RULES_VAR_CLIENT_IP, "192.0.2.10");
  fake_set_int (h, RULES_VAR_CLIENT_PORT, NULL, 41000);
  fake_set_string (h, RULES_VAR_CLIENT_PTR, NULL, "Mail.Example.NET", TRUE);
  fake_set_ip (h, RULES_VAR_SERVER_IP, "198.51.100.1");
  fake_set_string (h, RULES_VAR_SERVER_NAME, NULL, "mx.example.com", TRUE);
  fake_set_string (h, RULES_VAR_HELO_NAME, NULL, "[198.51.100.1]", TRUE);
  fake_set_bool (h, RULES_VAR_TLS_ACTIVE, NULL, TRUE);
  fake_set_bool (h, RULES_VAR_CLIENT_AUTHENTICATED, NULL, FALSE);
  fake_set_string (h, RULES_VAR_MAIL_FROM, NULL, "Sender@Example.COM", TRUE);
  fake_set_string (h, RULES_VAR_MAIL_FROM_DOMAIN, NULL, "Example.COM", TRUE);
  fake_set_string (h, RULES_VAR_MAIL_PARAM, "SIZE", "12345", FALSE);
  fake_set_string (h, RULES_VAR_RCPT_TO, NULL, "user@sub.example.org", TRUE);
  fake_set_string (h, RULES_VAR_RCPT_DOMAIN, NULL, "sub.example.org", TRUE);
  fake_set_int (h, RULES_VAR_RCPT_COUNT, NULL, 2);
  fake_set_strv (h, RULES_VAR_RCPTS, NULL, rcpts);
  fake_set_string (h, RULES_VAR_HEADER, "Subject", "Hello World", FALSE);
  fake_set_strv (h, RULES_VAR_HEADERS, "Received", recv);
  fake_set_bool (h, RULES_VAR_HAS_HEADER, "Received", TRUE);
  fake_set_string (h, RULES_VAR_SUBJECT, NULL, "Hello World", FALSE);
  fake_set_int (h, RULES_VAR_MESSAGE_SIZE, NULL, 20 * 1024);
  fake_set_string (h, RULES_VAR_BODY, NULL, "buy cheap pills\nnow", FALSE);
  fake_set_bool (h, RULES_VAR_MIME_VALID, NULL, TRUE);
  fake_set_int (h, RULES_VAR_MIME_PARTS, NULL, 3);
  fake_set_string (h, RULES_VAR_MACRO, "{daemon_name}", "postfix", FALSE);
  rules_value_set_float (&v, 7.5);
  fake_set_conn (h, "rspamd", "score", &v);
  rules_value_set_bool (&v, TRUE);
  fake_set_conn (h, "clamav", "infected", &v);
  rules_value_set_string (&v, "Eicar-Test", -1, FALSE);
  fake_set_conn (h, "clamav", "name", &v);
  rules_value_set_string (&v, "42", -1, FALSE);
  fake_set_conn (h, "http", "json:a.b", &v);
  rules_value_set_string (&v, "hello", -1, FALSE);
  fake_set_conn (h, "anything", "x", &v);
  return h;
}

/* Loads `STAGE { rule "t" when COND => reject }` and tells whether it matched. */
static gboolean
eval_cond (FakeHost *h, RulesStage stage, const char *prelude, const char *cond)
{
  g_autofree char *text = g_strdup_printf ("%s\n%s { rule \"t\" when %s => reject }\n",
                                           prelude ? prelude : "", rules_stage_name (stage), cond);
  g_autoptr (RulesProgram) p = load_or_fail (text);
  g_autoptr (RulesState) st = rules_state_new (p);
  RulesStep step = fake_run_stage (p, st, stage, h, TRUE, NULL, NULL);
  return step.verdict == RULES_VERDICT_REJECT;
}

typedef struct
{
  RulesStage stage;
  const char *cond;
  gboolean want;
} CondCase;

static const CondCase cond_cases[] = {
  /* literals and boolean operators */
  { RULES_STAGE_CONNECT, "true", TRUE },
  { RULES_STAGE_CONNECT, "false", FALSE },
  { RULES_STAGE_CONNECT, "not false", TRUE },
  { RULES_STAGE_CONNECT, "true and false", FALSE },
  { RULES_STAGE_CONNECT, "false or true", TRUE },
  { RULES_STAGE_CONNECT, "not true or true and true", TRUE },
  { RULES_STAGE_CONNECT, "not (true or true)", FALSE },
  /* numbers */
  { RULES_STAGE_CONNECT, "1 + 2 == 3", TRUE },
  { RULES_STAGE_CONNECT, "10 - 20 == -10", TRUE },
  { RULES_STAGE_CONNECT, "-(3) < 0", TRUE },
  { RULES_STAGE_CONNECT, "2 <= 2 and 2 >= 2 and 1 < 2 and 3 > 2 and 1 != 2", TRUE },
  { RULES_STAGE_CONNECT, "10K == 10240 and 1M == 1048576 and 1G == 1073741824", TRUE },
  { RULES_STAGE_CONNECT, "30s == 30 and 5m == 300 and 2h == 7200 and 1d == 86400", TRUE },
  { RULES_STAGE_CONNECT, "1.5 + 1 == 2.5", TRUE },
  { RULES_STAGE_CONNECT, "2 == 2.0", TRUE },
  { RULES_STAGE_CONNECT, "client.port > 40000", TRUE },
  /* strings */
  { RULES_STAGE_CONNECT, "\"a\" + \"b\" == \"ab\"", TRUE },
  { RULES_STAGE_CONNECT, "\"n=\" + 5 == \"n=5\"", TRUE },
  { RULES_STAGE_CONNECT, "\"ip \" + client.ip == \"ip 192.0.2.10\"", TRUE },
  { RULES_STAGE_CONNECT, "\"x\" + true == \"xtrue\"", TRUE },
  { RULES_STAGE_CONNECT, "\"abc\" < \"abd\"", TRUE },
  { RULES_STAGE_CONNECT, "\"ABC\" == \"abc\"", FALSE },
  { RULES_STAGE_CONNECT, "client.ptr == \"mail.example.net\"", TRUE },
  { RULES_STAGE_CONNECT, "\"mail.example.net\" == client.ptr", TRUE },
  { RULES_STAGE_CONNECT, "\"example\" in client.ptr", TRUE },
  { RULES_STAGE_CONNECT, "\"EXAMPLE\" in \"an example\"", FALSE },
  { RULES_STAGE_CONNECT, "\"exam\" in \"an example\"", TRUE },
  { RULES_STAGE_CONNECT, "\"zzz\" not in \"an example\"", TRUE },
  /* IPs and networks */
  { RULES_STAGE_CONNECT, "client.ip == 192.0.2.10", TRUE },
  { RULES_STAGE_CONNECT, "client.ip == \"192.0.2.10\"", TRUE },
  { RULES_STAGE_CONNECT, "client.ip == \"not an ip\"", FALSE },
  { RULES_STAGE_CONNECT, "client.ip != 192.0.2.11", TRUE },
  { RULES_STAGE_CONNECT, "client.ip in 192.0.2.0/24", TRUE },
  { RULES_STAGE_CONNECT, "client.ip in 192.0.3.0/24", FALSE },
  { RULES_STAGE_CONNECT, "client.ip in [10.0.0.0/8, 192.0.2.0/25]", TRUE },
  { RULES_STAGE_CONNECT, "client.ip in [::1, 2001:db8::/32]", FALSE },
  { RULES_STAGE_CONNECT, "\"192.0.2.99\" in 192.0.2.0/24", TRUE },
  { RULES_STAGE_HELO, "helo.name == server.ip", TRUE },
  /* regexes */
  { RULES_STAGE_CONNECT, "client.ptr =~ /^mail\\./", FALSE },
  { RULES_STAGE_CONNECT, "client.ptr =~ /^mail\\./i", TRUE },
  { RULES_STAGE_CONNECT, "client.ptr !~ /^mail\\./", TRUE },
  { RULES_STAGE_DATA, "body =~ /^now$/m", TRUE },
  { RULES_STAGE_DATA, "body =~ /^now$/", FALSE },
  { RULES_STAGE_DATA, "headers(\"Received\") =~ /from c/", TRUE },
  { RULES_STAGE_DATA, "headers(\"Received\") =~ /from x/", FALSE },
  /* string vectors */
  { RULES_STAGE_RCPT, "\"alice@example.com\" in rcpts", TRUE },
  { RULES_STAGE_RCPT, "\"carol@example.com\" in rcpts", FALSE },
  { RULES_STAGE_RCPT, "len(rcpts) == 2 and rcpt.count == 2", TRUE },
  { RULES_STAGE_RCPT, "contains(rcpts, \"BOB@example.org\")", TRUE },
  /* mail stage values */
  { RULES_STAGE_MAIL, "mail.from == \"sender@example.com\"", TRUE },
  { RULES_STAGE_MAIL, "mail.param(\"SIZE\") == \"12345\"", TRUE },
  { RULES_STAGE_MAIL, "mail.from.domain == \"example.com\"", TRUE },
  /* data stage values */
  { RULES_STAGE_DATA, "header(\"Subject\") == \"Hello World\"", TRUE },
  { RULES_STAGE_DATA, "has_header(\"Received\") and not has_header(\"X-Nope\")", TRUE },
  { RULES_STAGE_DATA, "message.size >= 20K and message.size < 21K", TRUE },
  { RULES_STAGE_DATA, "mime.valid and mime.parts == 3", TRUE },
  { RULES_STAGE_DATA, "subject =~ /hello/i", TRUE },
  { RULES_STAGE_CONNECT, "macro(\"{daemon_name}\") == \"postfix\"", TRUE },
  /* missing values: "" / 0 / false */
  { RULES_STAGE_CONNECT, "session.id == \"\"", TRUE },
  { RULES_STAGE_CONNECT, "server.port == 0", TRUE },
  { RULES_STAGE_CONNECT, "server.port < 1", TRUE },
  { RULES_STAGE_DATA, "not mime.errors =~ /x/", TRUE },
  { RULES_STAGE_DATA, "len(mime.attachments) == 0", TRUE },
  { RULES_STAGE_DATA, "header(\"X-Missing\") == \"\"", TRUE },
  { RULES_STAGE_HELO, "tls.version + \"!\" == \"!\"", TRUE },
  { RULES_STAGE_AUTH, "not client.authenticated", TRUE },
  { RULES_STAGE_POSTQ, "queue.id == \"\" and delivery.attempts == 0", TRUE },
  /* connector fields */
  { RULES_STAGE_DATA, "rspamd.score >= 5 and rspamd.score < 15", TRUE },
  { RULES_STAGE_DATA, "rspamd.score == 7.5", TRUE },
  { RULES_STAGE_DATA, "clamav.infected and clamav.name == \"Eicar-Test\"", TRUE },
  { RULES_STAGE_DATA, "rspamd.action == \"\" and not rspamd.error", TRUE },
  { RULES_STAGE_DATA, "http.json(\"a.b\") == 42", TRUE },
  { RULES_STAGE_DATA, "http.json(\"a.c\") == \"\"", TRUE },
  { RULES_STAGE_DATA, "anything.x == \"hello\" and anything.y == \"\"", TRUE },
  { RULES_STAGE_DATA, "anything.x", TRUE },
  { RULES_STAGE_DATA, "anything.y", FALSE },
  /* functions */
  { RULES_STAGE_CONNECT, "lower(\"AbC\") == \"abc\" and upper(\"AbC\") == \"ABC\"", TRUE },
  { RULES_STAGE_CONNECT, "len(\"hello\") == 5 and len(\"\") == 0", TRUE },
  { RULES_STAGE_MAIL, "domain(mail.from) == \"EXAMPLE.com\"", TRUE },
  { RULES_STAGE_MAIL, "local(mail.from) == \"sender\"", TRUE },
  { RULES_STAGE_CONNECT, "domain(\"<a@b.c>\") == \"b.c\" and local(\"<a@b.c>\") == \"a\"", TRUE },
  { RULES_STAGE_CONNECT,
    "domain(\"postmaster\") == \"\" and local(\"postmaster\") == \"postmaster\"", TRUE },
  { RULES_STAGE_CONNECT, "starts_with(client.ptr, \"MAIL.\") and ends_with(client.ptr, \".net\")",
    TRUE },
  { RULES_STAGE_CONNECT, "starts_with(\"abc\", \"B\") or ends_with(\"abc\", \"abcd\")", FALSE },
  { RULES_STAGE_CONNECT, "contains(\"hello\", \"ell\") and not contains(\"hello\", \"ELL\")",
    TRUE },
  { RULES_STAGE_CONNECT, "env(\"VPS_RULES_TEST_ENV\") == \"on\"", TRUE },
  { RULES_STAGE_CONNECT, "env(\"VPS_RULES_TEST_UNSET\") == \"\"", TRUE },
  { RULES_STAGE_CONNECT, "now > 1000000000 or now == 0", TRUE },
};

static void
test_conditions (void)
{
  g_autoptr (FakeHost) h = standard_host ();

  g_setenv ("VPS_RULES_TEST_ENV", "on", TRUE);
  g_unsetenv ("VPS_RULES_TEST_UNSET");
  for (guint i = 0; i < G_N_ELEMENTS (cond_cases); i++)
    {
      g_test_message ("case %u: %s", i, cond_cases[i].cond);
      g_assert_cmpint (eval_cond (h, cond_cases[i].stage, NULL, cond_cases[i].cond), ==,
                       cond_cases[i].want);
    }
}

typedef struct
{
  const char *prelude;
  RulesStage stage;
  const char *cond;
  gboolean want;
} ListCase;

static const ListCase list_cases[] = {
  { "list l = [\"A@b.c\", \"x\"]", RULES_STAGE_CONNECT, "\"a@B.C\" in l", TRUE },
  { "list l = [\"A@b.c\", \"x\"]", RULES_STAGE_CONNECT, "\"y\" in l", FALSE },
  { "list l = [\"A@b.c\", \"x\"]", RULES_STAGE_CONNECT, "\"y\" not in l", TRUE },
  { "list l = [10.0.0.0/8, ::1]", RULES_STAGE_CONNECT, "client.ip in l", FALSE },
  { "list l = [10.0.0.0/8, 192.0.2.10]", RULES_STAGE_CONNECT, "client.ip in l", TRUE },
  { "list l = [/^x/, /mail\\.example/i]", RULES_STAGE_CONNECT, "client.ptr in l", TRUE },
  { "list l = [1, 2, 41000]", RULES_STAGE_CONNECT, "client.port in l", TRUE },
  { "list l = [\"alice@example.com\"]", RULES_STAGE_RCPT, "rcpts in l", TRUE },
  { "let x = \"pre\" + \"fix\"", RULES_STAGE_CONNECT, "x == \"prefix\"", TRUE },
  { "let a = 5\nlet b = a + 1", RULES_STAGE_CONNECT, "b == 6 and len(lower(\"XY\")) == 2", TRUE },
  { "let z = env(\"VPS_RULES_TEST_ENV\")", RULES_STAGE_CONNECT, "z == \"on\"", TRUE },
  { "let net = 192.0.2.0/24\nlist l = [net]", RULES_STAGE_CONNECT, "client.ip in l", TRUE },
  { NULL, RULES_STAGE_CONNECT, "client.ptr in [\"x\", client.ptr]", TRUE },
  { NULL, RULES_STAGE_CONNECT, "client.ip in [10.0.0.1, client.ip]", TRUE },
  { NULL, RULES_STAGE_CONNECT, "client.ip in [10.0.0.1, server.ip]", FALSE },
  { NULL, RULES_STAGE_CONNECT, "len([1, 2, 3]) == 3", TRUE },
};

static void
test_lists (void)
{
  g_autoptr (FakeHost) h = standard_host ();

  g_setenv ("VPS_RULES_TEST_ENV", "on", TRUE);
  for (guint i = 0; i < G_N_ELEMENTS (list_cases); i++)
    {
      const ListCase *c = &list_cases[i];
      g_test_message ("case %u: %s / %s", i, c->prelude ? c->prelude : "", c->cond);
      g_assert_cmpint (eval_cond (h, c->stage, c->prelude, c->cond), ==, c->want);
    }
}

static void
test_no_multiplication (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesProgram) p
      = rules_program_load_string ("t.vsl", "let n = 2 * 3", &test_options, &error);
  g_assert_null (p);
  g_assert_error (error, RULES_ERROR, RULES_ERROR_SYNTAX);
  g_assert_cmpstr (error->message, ==, "t.vsl:1:11: unexpected character '*'");
}

/* dnsbl(): WAIT, then the same rule is re-evaluated and answered from the cache. */
static void
test_dnsbl (void)
{
  g_autoptr (FakeHost) h = standard_host ();
  g_autoptr (RulesProgram) p = load_or_fail (
      "connect {\n"
      "  rule \"a\" when dnsbl(\"zen.example.org\") => reject 554 5.7.1 \"Listed\"\n"
      "  rule \"b\" when dnsbl(\"v6.example.org\", ::1) or dnsbl(\"x.example\", \"1.2.3.4\") => "
      "tempfail\n"
      "}\n");
  g_autoptr (RulesState) st = rules_state_new (p);
  g_autoptr (RulesRun) run = rules_run_new (p, st, RULES_STAGE_CONNECT);
  RulesStep step;

  g_assert_cmpint (rules_run_step (run, &fake_vtable, h, &step), ==, RULES_STEP_WAIT);
  g_assert_cmpuint (h->queries->len, ==, 1);
  g_assert_cmpstr (h->queries->pdata[0], ==, "dnsbl 10.2.0.192.zen.example.org");
  fake_answer (h, "10.2.0.192.zen.example.org", FALSE);
  /* rule a is re-evaluated (answered now, not listed), rule b waits for both lookups */
  g_assert_cmpint (rules_run_step (run, &fake_vtable, h, &step), ==, RULES_STEP_WAIT);
  g_assert_cmpuint (h->queries->len, ==, 4);
  g_assert_cmpstr (
      h->queries->pdata[2], ==,
      "dnsbl 1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.v6.example.org");
  g_assert_cmpstr (h->queries->pdata[3], ==, "dnsbl 4.3.2.1.x.example");
  fake_answer (h, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.v6.example.org",
               FALSE);
  fake_answer (h, "4.3.2.1.x.example", TRUE);
  g_assert_cmpint (rules_run_step (run, &fake_vtable, h, &step), ==, RULES_STEP_DONE);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_TEMPFAIL);
  g_assert_cmpstr (step.rule, ==, "b");
  g_assert_cmpuint (h->matched->len, ==, 1);
  /* A finished run keeps answering DONE with the same result. */
  g_assert_cmpint (rules_run_step (run, &fake_vtable, h, &step), ==, RULES_STEP_DONE);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_TEMPFAIL);
}

static void
test_resolves (void)
{
  g_autoptr (FakeHost) h = standard_host ();
  g_autoptr (RulesProgram) p = load_or_fail (
      "connect { rule \"ptr\" when not resolves(client.ptr) => reject 550 5.7.25 \"No PTR\" }\n");
  g_autoptr (RulesState) st = rules_state_new (p);
  guint waits = 0;
  RulesStep step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, FALSE, &waits, NULL);

  g_assert_cmpuint (waits, ==, 1);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_REJECT);
  g_assert_cmpuint (step.code, ==, 550);
  g_assert_cmpstr (step.enhanced, ==, "5.7.25");
  g_assert_cmpstr (step.text, ==, "No PTR");
  g_assert_cmpstr (h->queries->pdata[0], ==, "resolves Mail.Example.NET");
}

/* call: the run stops at the call, then resumes with the next action. */
static void
test_call_resume (void)
{
  g_autoptr (FakeHost) h = fake_host_new ();
  g_autoptr (RulesProgram) p = load_or_fail (
      "data {\n"
      "  rule \"scan\" => add_header \"X-A\" \"1\", call clamav, rspamd, add_header \"X-B\" \"2\"\n"
      "  rule \"virus\" when clamav.infected => quarantine \"virus\", log \"after\"\n"
      "  rule \"later\" => log \"never\"\n"
      "}\n");
  g_autoptr (RulesState) st = rules_state_new (p);
  g_autoptr (RulesRun) run = rules_run_new (p, st, RULES_STAGE_DATA);
  RulesStep step;
  RulesValue v;

  g_assert_cmpint (rules_run_step (run, &fake_vtable, h, &step), ==, RULES_STEP_CALL);
  g_assert_cmpuint (step.n_calls, ==, 2);
  g_assert_cmpstr (step.calls[0], ==, "clamav");
  g_assert_cmpstr (step.calls[1], ==, "rspamd");
  g_assert_null (step.calls[2]);
  g_assert_cmpstr (step.call_rule, ==, "scan");
  g_assert_cmpuint (h->effects->len, ==, 1);
  rules_value_set_bool (&v, TRUE);
  fake_set_conn (h, "clamav", "infected", &v);
  g_assert_cmpint (rules_run_step (run, &fake_vtable, h, &step), ==, RULES_STEP_DONE);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_QUARANTINE);
  g_assert_cmpstr (step.quarantine, ==, "virus");
  g_assert_cmpstr (step.rule, ==, "virus");
  /* The actions after the verdict in the same rule run; later rules do not. */
  g_assert_cmpuint (h->effects->len, ==, 3);
  g_assert_cmpstr (h->effects->pdata[1], ==, "add_header X-B=2");
  g_assert_cmpstr (h->effects->pdata[2], ==, "log =after");
  g_assert_cmpstr (rules_program_calls (p, RULES_STAGE_DATA)[0], ==, "clamav");
  g_assert_cmpstr (rules_program_calls (p, RULES_STAGE_DATA)[1], ==, "rspamd");
  g_assert_null (rules_program_calls (p, RULES_STAGE_DATA)[2]);
  g_assert_null (rules_program_calls (p, RULES_STAGE_CONNECT)[0]);
}

typedef struct
{
  const char *action;
  RulesVerdict verdict;
  guint code;
  const char *enhanced, *text, *quarantine;
} TermCase;

static const TermCase term_cases[] = {
  { "accept", RULES_VERDICT_ACCEPT },
  { "accept_all", RULES_VERDICT_ACCEPT_ALL },
  { "discard", RULES_VERDICT_DISCARD },
  { "reject", RULES_VERDICT_REJECT },
  { "reject 550 \"No\"", RULES_VERDICT_REJECT, 550, NULL, "No" },
  { "reject 554 5.7.1 \"Denied\"", RULES_VERDICT_REJECT, 554, "5.7.1", "Denied" },
  { "tempfail", RULES_VERDICT_TEMPFAIL },
  { "tempfail 451 4.7.1 \"Later\"", RULES_VERDICT_TEMPFAIL, 451, "4.7.1", "Later" },
  { "quarantine \"spam\"", RULES_VERDICT_QUARANTINE, 0, NULL, NULL, "spam" },
  { "continue", RULES_VERDICT_CONTINUE },
};

static void
test_terminal (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (term_cases); i++)
    {
      const TermCase *c = &term_cases[i];
      g_autofree char *text
          = g_strdup_printf ("mail { rule \"r\" => %s\n rule \"after\" => log \"x\" }", c->action);
      g_autoptr (RulesProgram) p = load_or_fail (text);
      g_autoptr (RulesState) st = rules_state_new (p);
      g_autoptr (FakeHost) h = fake_host_new ();
      RulesStep step = fake_run_stage (p, st, RULES_STAGE_MAIL, h, TRUE, NULL, NULL);

      g_test_message ("case %u: %s", i, c->action);
      g_assert_cmpint (step.verdict, ==, c->verdict);
      g_assert_cmpuint (step.code, ==, c->code);
      g_assert_cmpstr (step.enhanced, ==, c->enhanced);
      g_assert_cmpstr (step.text, ==, c->text);
      g_assert_cmpstr (step.quarantine, ==, c->quarantine);
      /* continue is not terminal: the next rule runs */
      g_assert_cmpuint (h->effects->len, ==, c->verdict == RULES_VERDICT_CONTINUE ? 1 : 0);
      g_assert_cmpstr (step.rule, ==, c->verdict == RULES_VERDICT_CONTINUE ? NULL : "r");
    }
}

static void
test_effects (void)
{
  g_autoptr (FakeHost) h = standard_host ();
  g_autoptr (RulesProgram) p = load_or_fail (
      "delivery {\n"
      "  rule \"e\" => add_header \"X-A\" \"a\" + 1, insert_header \"X-B\" client.ip,\n"
      "    set_header \"X-C\" rspamd.score, remove_header \"X-D\", set_sender \"s@x\",\n"
      "    add_rcpt \"r@x\", remove_rcpt rcpt.to, replace_body \"new\", log \"info\",\n"
      "    log debug \"d\", log notice rcpts, log warning clamav.name, export json \"archive\",\n"
      "    export raw \"archive\"\n"
      "  rule \"d1\" => deliver maildir \"/var/mail/%d/%l\"\n"
      "  rule \"d2\" => deliver mbox \"mbox/%l\"\n"
      "}\n");
  g_autoptr (RulesState) st = rules_state_new (p);
  RulesStep step = fake_run_stage (p, st, RULES_STAGE_DELIVERY, h, TRUE, NULL, NULL);
  static const char *const want[] = {
    "add_header X-A=a1",
    "insert_header X-B=192.0.2.10",
    "set_header X-C=7.5",
    "remove_header X-D=",
    "set_sender =s@x",
    "add_rcpt =r@x",
    "remove_rcpt =user@sub.example.org",
    "replace_body =new",
    "log =info",
    "log =d",
    "log =Alice@Example.com, bob@example.org",
    "log =Eicar-Test",
    "export_json archive=",
    "export_raw archive=",
    "deliver_maildir /var/mail/%d/%l=",
  };

  /* The first deliver routes the recipient and ends the stage: d2 never runs. */
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_ACCEPT);
  g_assert_cmpstr (step.rule, ==, "d1");
  g_assert_cmpuint (h->effects->len, ==, G_N_ELEMENTS (want));
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    g_assert_cmpstr (h->effects->pdata[i], ==, want[i]);
  g_assert_cmpuint (h->matched->len, ==, 2);
}

static void
test_deliver_kinds (void)
{
  static const struct
  {
    const char *action;
    const char *effect;
  } cases[] = {
    { "deliver maildir \"/var/mail/%d/%l\"", "deliver_maildir /var/mail/%d/%l=" },
    { "deliver mbox \"mbox/%l\"", "deliver_mbox mbox/%l=" },
    { "deliver relay \"[smtp.example.net]:587\"", "deliver_relay [smtp.example.net]:587=" },
    { "deliver mx", "deliver_mx =" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (FakeHost) h = standard_host ();
      g_autofree char *text = g_strdup_printf (
          "delivery {\n  rule \"d\" => %s\n  rule \"after\" => log \"x\"\n}\n", cases[i].action);
      g_autoptr (RulesProgram) p = load_or_fail (text);
      g_autoptr (RulesState) st = rules_state_new (p);
      RulesStep step = fake_run_stage (p, st, RULES_STAGE_DELIVERY, h, TRUE, NULL, NULL);

      g_assert_cmpint (step.verdict, ==, RULES_VERDICT_ACCEPT);
      g_assert_cmpuint (h->effects->len, ==, 1);
      g_assert_cmpstr (h->effects->pdata[0], ==, cases[i].effect);
    }
}

static void
test_set_variables (void)
{
  g_autoptr (FakeHost) h = standard_host ();
  g_autoptr (RulesProgram) p = load_or_fail (
      "mail {\n"
      "  rule \"s\" => set from = lower(mail.from), set n = 3, set tags = \"a\" + \"b\"\n"
      "}\n"
      "rcpt {\n"
      "  rule \"r\" => set list = rcpts\n"
      "  rule \"t\" when var.from == \"sender@example.com\" and var.n + 1 == 4\n"
      "     and \"bob@example.org\" in var.list => reject 550 \"vars\"\n"
      "}\n");
  g_autoptr (RulesState) st = rules_state_new (p);
  const char *const *names = rules_program_variables (p);
  RulesStep step;
  const RulesValue *v;

  g_assert_cmpstr (names[0], ==, "from");
  g_assert_cmpstr (names[1], ==, "n");
  g_assert_cmpstr (names[2], ==, "tags");
  g_assert_cmpstr (names[3], ==, "list");
  g_assert_null (names[4]);
  g_assert_null (rules_state_get (st, "from"));
  step = fake_run_stage (p, st, RULES_STAGE_MAIL, h, TRUE, NULL, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
  v = rules_state_get (st, "from");
  g_assert_nonnull (v);
  g_assert_cmpint (v->type, ==, RULES_TYPE_STRING);
  g_assert_cmpstr (v->s.ptr, ==, "sender@example.com");
  g_assert_cmpint (rules_state_get (st, "n")->i, ==, 3);
  g_assert_null (rules_state_get (st, "nope"));
  step = fake_run_stage (p, st, RULES_STAGE_RCPT, h, TRUE, NULL, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_REJECT);
  g_assert_cmpint (rules_state_get (st, "list")->strv.n, ==, 2);
  rules_state_reset (st);
  g_assert_null (rules_state_get (st, "from"));
  step = fake_run_stage (p, st, RULES_STAGE_RCPT, h, TRUE, NULL, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
}

static void
test_accept_all_and_reads (void)
{
  g_autoptr (FakeHost) h = standard_host ();
  g_autoptr (RulesProgram) p
      = load_or_fail ("list relay = [192.0.2.0/24]\n"
                      "connect { rule \"trusted\" when client.ip in relay => accept_all }\n"
                      "data { rule \"d\" when header(\"X\") == \"y\" => discard }\n");
  g_autoptr (RulesState) st = rules_state_new (p);
  RulesStep step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, TRUE, NULL, NULL);

  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_ACCEPT_ALL);
  g_assert_cmpstr (step.rule, ==, "trusted");
  g_assert_true (rules_program_reads (p, RULES_VAR_CLIENT_IP));
  g_assert_true (rules_program_reads (p, RULES_VAR_HEADER));
  g_assert_false (rules_program_reads (p, RULES_VAR_BODY));
  g_assert_false (rules_program_reads (p, RULES_VAR_CONNECTOR));
  g_assert_cmpuint (rules_program_n_rules (p, RULES_STAGE_CONNECT), ==, 1);
  g_assert_cmpuint (rules_program_n_rules (p, RULES_STAGE_RCPT), ==, 0);
}

/* A host that hands back a value of the wrong type is read as missing. */
static void
wrong_get (gpointer host, const RulesRef *ref, const char *arg, RulesValue *out)
{
  rules_value_set_string (out, NULL, 0, FALSE);
  if (ref->var == RULES_VAR_CLIENT_PORT)
    rules_value_set_string (out, "not a number", -1, FALSE);
}

static void
test_hostile_host (void)
{
  static const RulesHostVTable vt = { wrong_get, NULL, NULL, NULL };
  g_autoptr (RulesProgram) p = load_or_fail (
      "connect {\n"
      "  rule \"a\" when client.port == 0 and client.ip != 1.2.3.4 and dnsbl(\"z\")\n"
      "      => add_header \"X\" \"y\"\n"
      "  rule \"b\" when client.port == 0 => reject\n"
      "}\n");
  g_autoptr (RulesState) st = rules_state_new (p);
  g_autoptr (RulesRun) run = rules_run_new (p, st, RULES_STAGE_CONNECT);
  RulesStep step;

  g_assert_cmpint (rules_run_step (run, &vt, NULL, &step), ==, RULES_STEP_DONE);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_REJECT);
  g_assert_cmpstr (rules_run_scratch_strdup (run, "abc", 2), ==, "ab");
}

static void
test_explain (void)
{
  g_autoptr (RulesProgram) p
      = load_or_fail ("let limit = 10M\n"
                      "list nets = [10.0.0.0/8, ::1]\n"
                      "data {\n"
                      "  rule \"big\" when message.size > limit and not (header(\"X\") =~ /a/i) => "
                      "reject 552 5.3.4 \"Too big\"\n"
                      "  rule \"tag\" => set t = \"x\", add_header \"X-T\" var.t, call rspamd\n"
                      "}\n");
  g_autofree char *text = rules_program_explain (p);

  g_assert_nonnull (strstr (text, "let limit = 10485760"));
  g_assert_nonnull (strstr (text, "list nets: mixed, 2 entries"));
  g_assert_nonnull (strstr (text, "data: 2 rules"));
  g_assert_nonnull (
      strstr (text, "when ((message.size > 10485760) and (not (header(\"X\") =~ /a/i)))"));
  g_assert_nonnull (strstr (text, "reject 552 5.3.4 \"Too big\""));
  g_assert_nonnull (strstr (text, "call rspamd"));
  g_assert_nonnull (strstr (text, "variables: var.t"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/eval/conditions", test_conditions);
  g_test_add_func ("/rules/eval/lists", test_lists);
  g_test_add_func ("/rules/eval/no-multiplication", test_no_multiplication);
  g_test_add_func ("/rules/eval/dnsbl", test_dnsbl);
  g_test_add_func ("/rules/eval/resolves", test_resolves);
  g_test_add_func ("/rules/eval/call-resume", test_call_resume);
  g_test_add_func ("/rules/eval/terminal", test_terminal);
  g_test_add_func ("/rules/eval/effects", test_effects);
  g_test_add_func ("/rules/eval/deliver-kinds", test_deliver_kinds);
  g_test_add_func ("/rules/eval/set-variables", test_set_variables);
  g_test_add_func ("/rules/eval/accept-all-and-reads", test_accept_all_and_reads);
  g_test_add_func ("/rules/eval/hostile-host", test_hostile_host);
  g_test_add_func ("/rules/eval/explain", test_explain);
  return g_test_run ();
}
