/* SPDX-License-Identifier: MIT
 *
 * test-rules-parse.c — every construct of the grammar loads; the checker's
 * options (unchecked quarantines/exports, any_field connectors); error
 * classes on small inline sources (the golden files in errors/ hold the
 * complete list of messages).
 */
#include "rules-test-util.h"

static const char *const valid[] = {
  "",
  "# only a comment",
  NULL, /* case 2: a minimal rule, see test_valid */
  "let a = 1\nlet b = \"s\"\nlet c = 1.2.3.4\nlet d = 10.0.0.0/8\nlet e = /x/i\nlet f = true\n"
  "let g = 5M\nlet h = 30s\nlet i = -a + 2\nlet j = b + a\nlet k = ::1\nlet l = 2001:db8::/32",
  "list a = []\nlist b = [\"x\", 1, 1.2.3.4, 10.0.0.0/8, /re/, ::1]\nlet z = \"z\"\nlist c = [z]",
  "connect { }\nhelo { }\nauth { }\nmail { }\nrcpt { }\ndata { }\npostq { }\ndelivery { }",
  "connect { rule \"a\" => accept }\nconnect { rule \"b\" => accept }",
  "connect { rule \"a\" => continue, accept_all }",
  "mail { rule \"a\" => discard }",
  "mail { rule \"a\" => reject }\nmail { rule \"b\" => reject 550 \"t\" }\n"
  "mail { rule \"c\" => reject 550 5.1.1 \"t\" }",
  "mail { rule \"a\" => tempfail 451 4.7.1 \"later\" }",
  "data { rule \"a\" => quarantine \"virus\" }",
  "data { rule \"a\" => call clamav }\ndata { rule \"b\" => call spf, greylist, accept }",
  "data { rule \"a\" => add_header \"X-A\" \"1\", insert_header \"X-B\" 2, set_header \"X-C\" true,"
  " remove_header \"X-D\" }",
  "mail { rule \"a\" => set_sender \"a@b\", add_rcpt \"c@d\", remove_rcpt \"e@f\" }",
  "data { rule \"a\" => replace_body \"x\" }",
  "mail { rule \"a\" => set x = 1, set in = 2, log var.x + var.in }",
  "mail { rule \"a\" => log \"i\", log debug \"d\", log info \"i\", log notice 1, log warning true "
  "}",
  "data { rule \"a\" => export json \"archive\", export raw \"archive\" }",
  "delivery { rule \"a\" => deliver maildir \"m\" rule \"b\" => deliver mbox \"/x\""
  " rule \"c\" => deliver relay \"[h]:25\" rule \"d\" => deliver mx, log \"after\" }",
  "data { rule \"a\" => quarantine \"virus\", log warning \"virus\", add_header \"X\" \"y\" }",
  "mail { rule \"a\" => reject 550 5.7.1 \"line one\\nline two\" }",
  "rcpt { rule \"a\" when not not true and (false or true) and 1 < 2 => accept }",
  "rcpt { rule \"a\" when rcpt.to not in [\"a\"] and rcpt.to !~ /x/ => accept }",
  "data { rule \"a\" when header(\"X\") != \"\" and headers(\"X\") =~ /y/ and len(headers(\"X\")) "
  "> 1"
  " => accept }",
  "data { rule \"a\" when http.json(\"a.b\") == 3 and http.status == 200 => accept }",
  "data { rule \"a\" when anything.foo and anything.bar(\"z\") == \"\" => accept }",
  "data { rule \"a\" when clamav.error or clamav.code == 550 or clamav.elapsed > 1.5"
  " or clamav.verdict == \"reject\" or clamav.text == \"\" => accept }",
  "data { rule \"a\" when rspamd.symbols =~ /BAYES/ and \"X\" in rspamd.symbols => accept }",
  "connect { rule \"a\" when now() > 0 and now > 0 and macro(\"i\") == \"\" => accept }",
  "delivery { rule \"a\" when rcpt.domain == \"x\" and queue.id != \"\" => accept }",
  "postq { rule \"a\" when delivery.attempts > 3 and subject == \"\" => accept }",
  "mail { rule \"a\" when mail.from.local == \"x\" and mail.param(\"BODY\") == \"8BITMIME\""
  " => accept }",
  "data { rule \"a\" when mime.valid and mime.errors =~ /x/ and mime.depth < 5 and"
  " mime.attachments =~ /\\.exe$/i and mime.content_types =~ /html/ and message.id != \"\""
  " => accept }",
  "helo { rule \"a\" when tls.active and tls.cipher != \"\" and tls.peer_subject == \"\""
  " => accept }",
  "auth { rule \"a\" when auth.user == \"x\" and auth.mechanism == \"PLAIN\" => accept }",
  "connect { rule \"a\" when client.port > 0 and server.port == 25 and session.id != \"\""
  " and server.name == client.ptr => accept }",
};

static void
test_valid (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (valid); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (RulesProgram) p = NULL;
      const char *text = i == 2 ? "connect { rule \"x\" => accept }" : valid[i];
      g_test_message ("case %u: %s", i, text);
      p = rules_program_load_string ("v.vsl", text, &test_options, &error);
      g_assert_no_error (error);
      g_assert_nonnull (p);
    }
}

typedef struct
{
  const char *text;
  RulesError code;
  const char *message;
} BadCase;

static const BadCase bad[] = {
  { "mail { rule \"a\" when true => accept", RULES_ERROR_SYNTAX,
    "b.vsl:1:36: expected 'rule' or '}' in mail block, got end of file" },
  { "list a = 3", RULES_ERROR_SYNTAX, "b.vsl:1:10: expected '[' or 'file' after '=', got '3'" },
  { "list a = [1 2]", RULES_ERROR_SYNTAX, "b.vsl:1:13: expected ',' or ']', got '2'" },
  { "let = 1", RULES_ERROR_SYNTAX, "b.vsl:1:5: expected constant name after 'let', got '='" },
  { "let a 1", RULES_ERROR_SYNTAX, "b.vsl:1:7: expected '=' after constant name, got '1'" },
  { "mail { rule \"a\" => reject 99 \"x\" }", RULES_ERROR_INVALID,
    "b.vsl:1:27: reply code must have three digits" },
  { "mail { rule \"a\" => reject 550 5.7.1 }", RULES_ERROR_SYNTAX,
    "b.vsl:1:37: expected reply text string after reject code, got '}'" },
  { "mail { rule \"a\" => reject 550 5.7.1000 \"x\" }", RULES_ERROR_INVALID,
    "b.vsl:1:20: invalid enhanced status code 5.7.1000" },
  { "mail { rule \"a\" => reject 550 "
    "\"x\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx"
    "\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\\nx\" }",
    RULES_ERROR_INVALID, "b.vsl:1:20: invalid reply text: reply has more than 32 lines" },
  { "mail { rule \"a\" => call }", RULES_ERROR_SYNTAX,
    "b.vsl:1:25: expected connector name after 'call', got '}'" },
  { "mail { rule \"a\" => log }", RULES_ERROR_SYNTAX,
    "b.vsl:1:24: expected an expression, got '}'" },
  { "mail { rule \"a\" => set x 1 }", RULES_ERROR_SYNTAX,
    "b.vsl:1:26: expected '=' after variable name, got '1'" },
  { "let a = 1\nlet a = 2", RULES_ERROR_INVALID,
    "b.vsl:2:1: constant 'a' is already defined at b.vsl:1:1" },
  { "list a = [1]\nlet a = 2", RULES_ERROR_INVALID,
    "b.vsl:2:1: 'a' is already defined as a list at b.vsl:1:1" },
  { "let a = b\nlet b = 1", RULES_ERROR_UNKNOWN,
    "b.vsl:1:9: constant 'b' is used before its definition" },
  { "list a = [b]\nlist b = [a]", RULES_ERROR_INVALID, "b.vsl:1:11: list 'b' contains itself" },
  { "list a = [\"x\", client.ip]", RULES_ERROR_INVALID,
    "b.vsl:1:16: entries of list 'a' must be constants" },
  { "list a = [true]", RULES_ERROR_TYPE,
    "b.vsl:1:11: a list holds strings, numbers, addresses, networks and regexes, got bool" },
  { "connect { rule \"a\" when header == \"\" => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:25: 'header' needs an argument: header(\"...\")" },
  { "connect { rule \"a\" when in_file(client.ptr, \"x\") => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:33: first argument of 'in_file' must be a constant path string" },
  { "connect { rule \"a\" when dnsbl(1) => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:31: argument 1 of 'dnsbl' must be a string, got int" },
  { "connect { rule \"a\" when dnsbl() => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:25: 'dnsbl' takes 1 to 2 arguments, got 0" },
  { "connect { rule \"a\" when len(1) == 1 => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:29: argument of 'len' must be a string or a list, got int" },
  { "connect { rule \"a\" when client.ip + 1 == 2 => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:35: operator '+' needs numbers or strings, got ip and int" },
  { "connect { rule \"a\" when -\"x\" == 1 => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:25: operator '-' needs a number, got string" },
  { "connect { rule \"a\" when \"a\" < 1 => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:29: operator '<' needs two numbers or two strings, got string and int" },
  { "connect { rule \"a\" when client.ip in \"x\" => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:35: 'in' a string needs a string on the left, got ip" },
  { "connect { rule \"a\" when /x/ in \"x\" => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:25: a regex cannot be on the left of 'in'" },
  { "connect { rule \"a\" when true and 1 => accept }", RULES_ERROR_TYPE,
    "b.vsl:1:34: operand of 'and' must be a boolean, got int" },
  { "connect { rule \"a\" => add_header \"X\" /re/ }", RULES_ERROR_TYPE,
    "b.vsl:1:38: action value must be a string, got regex" },
  { "connect { rule \"a\" when clamav.infected.x => accept }", RULES_ERROR_UNKNOWN,
    "b.vsl:1:25: unknown name 'clamav.infected.x' (connector results are NAME.field)" },
  { "connect { rule \"a\" when clamav.name(\"x\") == \"\" => accept }", RULES_ERROR_UNKNOWN,
    "b.vsl:1:25: connector 'clamav' has no field 'name(...)'" },
};

static void
test_bad (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (RulesProgram) p = NULL;
      g_test_message ("case %u: %s", i, bad[i].text);
      p = rules_program_load_string ("b.vsl", bad[i].text, &test_options, &error);
      g_assert_null (p);
      g_assert_error (error, RULES_ERROR, (int)bad[i].code);
      g_assert_cmpstr (error->message, ==, bad[i].message);
    }
}

static void
test_check_options (void)
{
  const char *text = "data { rule \"q\" => quarantine \"anywhere\", export raw \"any\" }";
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesProgram) p = NULL;

  /* NULL quarantine/export lists: not checked. */
  p = rules_program_load_string ("o.vsl", text, &test_options_unchecked, &error);
  g_assert_no_error (error);
  g_clear_pointer (&p, rules_program_unref);
  /* No options at all: connectors are unknown, quarantines unchecked. */
  p = rules_program_load_string ("o.vsl", text, NULL, &error);
  g_assert_no_error (error);
  g_clear_pointer (&p, rules_program_unref);
  p = rules_program_load_string ("o.vsl", "data { rule \"c\" => call clamav }", NULL, &error);
  g_assert_error (error, RULES_ERROR, RULES_ERROR_UNKNOWN);
  g_assert_null (p);
}

static void
test_names (void)
{
  RulesStage st;
  RulesVerdict v;
  RulesIp ip;
  char buf[46];

  for (guint i = 0; i < RULES_N_STAGES; i++)
    {
      g_assert_true (rules_stage_from_name (rules_stage_name ((RulesStage)i), &st));
      g_assert_cmpint (st, ==, i);
    }
  g_assert_false (rules_stage_from_name ("nope", &st));
  for (guint i = RULES_VERDICT_CONTINUE; i <= RULES_VERDICT_DISCARD; i++)
    {
      g_assert_true (rules_verdict_from_name (rules_verdict_name ((RulesVerdict)i), &v));
      g_assert_cmpint (v, ==, i);
    }
  g_assert_false (rules_verdict_from_name ("maybe", &v));
  g_assert_cmpint (rules_verdict_severity (RULES_VERDICT_DISCARD), >,
                   rules_verdict_severity (RULES_VERDICT_REJECT));
  g_assert_cmpint (rules_verdict_severity (RULES_VERDICT_REJECT), >,
                   rules_verdict_severity (RULES_VERDICT_TEMPFAIL));
  g_assert_cmpint (rules_verdict_severity (RULES_VERDICT_TEMPFAIL), >,
                   rules_verdict_severity (RULES_VERDICT_QUARANTINE));
  g_assert_cmpint (rules_verdict_severity (RULES_VERDICT_QUARANTINE), >,
                   rules_verdict_severity (RULES_VERDICT_ACCEPT));
  g_assert_cmpint (rules_verdict_severity (RULES_VERDICT_ACCEPT), ==,
                   rules_verdict_severity (RULES_VERDICT_ACCEPT_ALL));
  g_assert_cmpint (rules_verdict_severity (RULES_VERDICT_ACCEPT), >,
                   rules_verdict_severity (RULES_VERDICT_CONTINUE));
  g_assert_true (rules_ip_parse ("[1.2.3.4]", 9, &ip));
  g_assert_cmpstr (rules_ip_to_string (&ip, buf), ==, "1.2.3.4");
  g_assert_true (rules_ip_parse ("[IPv6:::1]", 10, &ip));
  g_assert_cmpstr (rules_ip_to_string (&ip, buf), ==, "::1");
  g_assert_cmpuint (ip.family, ==, 6);
  g_assert_false (rules_ip_parse ("[IPv6:1.2.3.4]", 14, &ip));
  g_assert_false (rules_ip_parse ("example.com", 11, &ip));
  g_assert_false (rules_ip_parse ("", 0, &ip));
  g_assert_true (rules_ip_parse ("10.0.0.1xyz", 8, &ip));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/parse/valid", test_valid);
  g_test_add_func ("/rules/parse/errors", test_bad);
  g_test_add_func ("/rules/check/options", test_check_options);
  g_test_add_func ("/rules/values/names", test_names);
  return g_test_run ();
}
