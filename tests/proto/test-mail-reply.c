/* SPDX-License-Identifier: MIT
 *
 * test-mail-reply.c — SMTP replies (proto/mail/mail-reply.h).
 *
 * Construction: each validation branch asserts its exact MAIL_ERROR code,
 * limits at the boundary (32/33 lines, 512/513-octet lines).  Formatting and
 * parsing round-trip multi-line replies; the parser is fed what real servers
 * send (EHLO lists, bare LF, pipelined replies) and what hostile ones could.
 */
#include <string.h>

#include "proto/mail/mail-reply.h"

#define OK (-1)

typedef struct
{
  const char *name;
  guint code;
  const char *enhanced;
  const char *text;
  int error;
  const char *wire; /* mail_reply_format when OK */
} ReplyCase;

static const ReplyCase reply_cases[] = {
  { "simple", 250, "2.0.0", "Ok", OK, "250 2.0.0 Ok\r\n" },
  { "multi-line", 550, "5.7.1", "first\nlast", OK, "550-5.7.1 first\r\n550 5.7.1 last\r\n" },
  { "three-lines-empty-middle", 550, "5.7.1", "a\n\nb", OK,
    "550-5.7.1 a\r\n550-5.7.1\r\n550 5.7.1 b\r\n" },
  { "no-enhanced", 550, NULL, "no enhanced code", OK, "550 no enhanced code\r\n" },
  { "empty-enhanced-is-none", 550, "", "x", OK, "550 x\r\n" },
  { "code-only", 421, NULL, NULL, OK, "421\r\n" },
  { "code-enhanced-only", 550, "5.7.1", NULL, OK, "550 5.7.1\r\n" },
  { "trailing-lf", 550, "5.7.1", "trailing\n", OK, "550 5.7.1 trailing\r\n" },
  { "tab", 250, "2.1.5", "tab\there", OK, "250 2.1.5 tab\there\r\n" },
  { "3xx", 354, NULL, "End data with <CR><LF>.<CR><LF>", OK,
    "354 End data with <CR><LF>.<CR><LF>\r\n" },
  { "big-subject-detail", 550, "5.999.999", "x", OK, "550 5.999.999 x\r\n" },
  { "zero-subject", 451, "4.0.0", "x", OK, "451 4.0.0 x\r\n" },
  { "percent-kept", 550, "5.7.1", "100% sure", OK, "550 5.7.1 100% sure\r\n" },

  { "code-199", 199, NULL, "x", MAIL_ERROR_REPLY_CODE },
  { "code-600", 600, NULL, "x", MAIL_ERROR_REPLY_CODE },
  { "code-0", 0, NULL, "x", MAIL_ERROR_REPLY_CODE },
  { "code-1000", 1000, NULL, "x", MAIL_ERROR_REPLY_CODE },
  { "code-second-digit", 560, NULL, "x", MAIL_ERROR_REPLY_CODE },
  { "enh-two-parts", 550, "5.7", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-four-parts", 550, "5.7.1.2", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-leading-zero-subject", 550, "5.07.1", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-leading-zero-detail", 550, "5.7.01", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-subject-1000", 550, "5.1000.1", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-class-3", 354, "3.0.0", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-class-6", 550, "6.0.0", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-empty-part", 550, "5..1", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-letter", 550, "x.7.1", "x", MAIL_ERROR_ENHANCED_CODE },
  { "enh-trailing-space", 550, "5.7.1 ", "x", MAIL_ERROR_ENHANCED_CODE },
  { "class-4-for-5xx", 550, "4.7.1", "x", MAIL_ERROR_ENHANCED_CLASS },
  { "class-5-for-2xx", 250, "5.0.0", "x", MAIL_ERROR_ENHANCED_CLASS },
  { "class-for-3xx", 354, "2.0.0", "x", MAIL_ERROR_ENHANCED_CLASS },
  { "text-cr", 550, "5.7.1", "a\rb", MAIL_ERROR_FORBIDDEN_CHAR },
  { "text-crlf-injection", 550, "5.7.1", "a\r\n250 fake", MAIL_ERROR_FORBIDDEN_CHAR },
  { "text-esc", 550, "5.7.1", "a\x1b[31m", MAIL_ERROR_FORBIDDEN_CHAR },
  { "text-8bit", 550, "5.7.1", "refus\xc3\xa9", MAIL_ERROR_UTF8_NOT_ALLOWED },
};

static void
test_reply_case (gconstpointer data)
{
  const ReplyCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (MailReply) r = mail_reply_new (c->code, c->enhanced, c->text, &error);
  g_autoptr (MailReply) back = NULL;
  g_autofree char *wire = NULL;
  gsize consumed = 0;

  if (c->error != OK)
    {
      g_assert_error (error, MAIL_ERROR, c->error);
      g_assert_null (r);
      return;
    }
  g_assert_no_error (error);
  wire = mail_reply_format (r);
  g_assert_cmpstr (wire, ==, c->wire);

  /* round trip through the parser */
  back = mail_reply_parse (wire, strlen (wire), &consumed, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (consumed, ==, strlen (wire));
  g_assert_cmpuint (mail_reply_get_code (back), ==, c->code);
  g_assert_cmpstr (mail_reply_get_enhanced (back), ==, mail_reply_get_enhanced (r));
  g_assert_cmpuint (mail_reply_get_n_lines (back), ==, mail_reply_get_n_lines (r));
  for (guint i = 0; i < mail_reply_get_n_lines (r); i++)
    g_assert_cmpstr (mail_reply_get_line (back, i), ==, mail_reply_get_line (r, i));
}

static void
test_reply_limits (void)
{
  g_autoptr (GString) lines32 = g_string_new (NULL);
  g_autoptr (GString) lines33 = NULL;
  g_autofree char *t500 = g_strnfill (500, 't');
  g_autofree char *t501 = g_strnfill (501, 't');
  g_autofree char *t506 = g_strnfill (506, 't');
  g_autofree char *t507 = g_strnfill (507, 't');
  g_autoptr (GError) error = NULL;
  g_autoptr (MailReply) r = NULL;

  for (int i = 0; i < MAIL_MAX_REPLY_LINES; i++)
    g_string_append_printf (lines32, "%sline %d", i ? "\n" : "", i);
  lines33 = g_string_new (lines32->str);
  g_string_append (lines33, "\none too many");

  r = mail_reply_new (550, "5.7.1", lines32->str, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mail_reply_get_n_lines (r), ==, MAIL_MAX_REPLY_LINES);
  g_clear_pointer (&r, mail_reply_unref);
  r = mail_reply_new (550, "5.7.1", lines33->str, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_TOO_MANY_LINES);
  g_assert_null (r);
  g_clear_error (&error);

  /* "550 5.7.1 " + 500 + CRLF = 512 */
  r = mail_reply_new (550, "5.7.1", t500, &error);
  g_assert_no_error (error);
  {
    g_autofree char *wire = mail_reply_format (r);

    g_assert_cmpuint (strlen (wire), ==, MAIL_MAX_REPLY_LINE);
  }
  g_clear_pointer (&r, mail_reply_unref);
  r = mail_reply_new (550, "5.7.1", t501, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_LINE_TOO_LONG);
  g_clear_error (&error);
  /* "550 " + 506 + CRLF = 512 */
  r = mail_reply_new (550, NULL, t506, &error);
  g_assert_no_error (error);
  g_clear_pointer (&r, mail_reply_unref);
  r = mail_reply_new (550, NULL, t507, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_LINE_TOO_LONG);
  g_clear_error (&error);

  /* the same through the lines API */
  {
    const char *const bad[] = { "ok", "a\nb", NULL };
    const char *const good[] = { "one", "two", NULL };
    g_autofree char *wire = NULL;

    r = mail_reply_new_lines (451, "4.7.1", bad, &error);
    g_assert_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR);
    g_assert_null (r);
    g_clear_error (&error);
    r = mail_reply_new_lines (451, "4.7.1", good, &error);
    g_assert_no_error (error);
    wire = mail_reply_format (r);
    g_assert_cmpstr (wire, ==, "451-4.7.1 one\r\n451 4.7.1 two\r\n");
  }
}

typedef struct
{
  const char *name;
  const char *input;
  gssize len; /* 0: strlen */
  int error;
  guint code;
  const char *enhanced;
  const char *text; /* lines joined with \n */
  gsize consumed;   /* 0: the whole input */
} ParseCase;

static const ParseCase parse_cases[] = {
  { "simple", "250 2.0.0 Ok\r\n", 0, OK, 250, "2.0.0", "Ok" },
  { "ehlo", "250-mx.example Hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 0, OK, 250, NULL,
    "mx.example Hello\nPIPELINING\nSIZE 1000" },
  { "multi-enhanced", "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 last\r\n", 0, OK, 550,
    "5.7.1", "first\nsecond\nlast" },
  { "enhanced-not-repeated", "550-5.1.1 first\r\n550 second\r\n", 0, OK, 550, "5.1.1",
    "first\nsecond" },
  { "enhanced-only", "550 5.7.1\r\n", 0, OK, 550, "5.7.1", "" },
  { "code-only", "250\r\n", 0, OK, 250, NULL, "" },
  { "bare-lf", "220 mx.example ESMTP\n", 0, OK, 220, NULL, "mx.example ESMTP" },
  { "class-mismatch-is-text", "550 4.7.1 mismatch\r\n", 0, OK, 550, NULL, "4.7.1 mismatch" },
  { "3xx-no-enhanced", "354 2.0.0 go ahead\r\n", 0, OK, 354, NULL, "2.0.0 go ahead" },
  { "leading-zero-is-text", "550 5.07.1 x\r\n", 0, OK, 550, NULL, "5.07.1 x" },
  { "pipelined", "250 2.0.0 Ok\r\n250 2.1.5 Ok\r\n", 0, OK, 250, "2.0.0", "Ok", 14 },
  { "utf8-text", "550 5.7.1 refus\xc3\xa9\r\n", 0, OK, 550, "5.7.1", "refus\xc3\xa9" },
  { "tab-text", "250 a\tb\r\n", 0, OK, 250, NULL, "a\tb" },

  { "empty", "", 0, MAIL_ERROR_INCOMPLETE },
  { "no-line-end", "250 Ok", 0, MAIL_ERROR_INCOMPLETE },
  { "continuation-only", "250-first\r\n", 0, MAIL_ERROR_INCOMPLETE },
  { "short-code", "25 Ok\r\n", 0, MAIL_ERROR_REPLY_SYNTAX },
  { "letters", "abc Ok\r\n", 0, MAIL_ERROR_REPLY_SYNTAX },
  { "bad-separator", "250xOk\r\n", 0, MAIL_ERROR_REPLY_SYNTAX },
  { "codes-differ", "250-a\r\n251 b\r\n", 0, MAIL_ERROR_REPLY_SYNTAX },
  { "empty-line", "\r\n", 0, MAIL_ERROR_REPLY_SYNTAX },
  { "code-199", "199 x\r\n", 0, MAIL_ERROR_REPLY_CODE },
  { "code-600", "600 x\r\n", 0, MAIL_ERROR_REPLY_CODE },
  { "lone-cr", "250 a\rb\r\n", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "nul", "250 a\0b\r\n", 9, MAIL_ERROR_FORBIDDEN_CHAR },
  { "esc", "250 \x1b[2J\r\n", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "invalid-utf8", "250 \xff\r\n", 0, MAIL_ERROR_INVALID_UTF8 },
};

static void
test_parse_case (gconstpointer data)
{
  const ParseCase *c = data;
  gsize len = c->len != 0 ? (gsize)c->len : strlen (c->input);
  g_autoptr (GError) error = NULL;
  gsize consumed = 0;
  g_autoptr (MailReply) r = mail_reply_parse (c->input, len, &consumed, &error);
  g_autofree char *text = NULL;

  if (c->error != OK)
    {
      g_assert_error (error, MAIL_ERROR, c->error);
      g_assert_null (r);
      return;
    }
  g_assert_no_error (error);
  g_assert_cmpuint (mail_reply_get_code (r), ==, c->code);
  g_assert_cmpstr (mail_reply_get_enhanced (r), ==, c->enhanced);
  text = mail_reply_get_text (r);
  g_assert_cmpstr (text, ==, c->text);
  g_assert_cmpuint (consumed, ==, c->consumed != 0 ? c->consumed : len);
}

static void
test_parse_limits (void)
{
  g_autoptr (GString) many = g_string_new (NULL);
  g_autoptr (GString) max = g_string_new (NULL);
  g_autofree char *longline = g_strnfill (MAIL_MAX_REPLY_PARSE_LINE, 'x');
  g_autofree char *almost = g_strnfill (MAIL_MAX_REPLY_PARSE_LINE - 1, 'x');
  g_autoptr (GError) error = NULL;
  g_autoptr (MailReply) r = NULL;

  memcpy (longline, "250 ", 4);
  memcpy (almost, "250 ", 4);
  r = mail_reply_parse (longline, strlen (longline), NULL, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_LINE_TOO_LONG);
  g_assert_null (r);
  g_clear_error (&error);
  /* one byte less: still waiting for the line end */
  r = mail_reply_parse (almost, strlen (almost), NULL, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_INCOMPLETE);
  g_clear_error (&error);

  for (int i = 0; i < MAIL_MAX_REPLY_PARSE_LINES - 1; i++)
    g_string_append (max, "250-x\r\n");
  g_string_append (many, max->str);
  g_string_append (max, "250 last\r\n");
  g_string_append (many, "250-x\r\n250 last\r\n");
  r = mail_reply_parse (max->str, max->len, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mail_reply_get_n_lines (r), ==, MAIL_MAX_REPLY_PARSE_LINES);
  g_clear_pointer (&r, mail_reply_unref);
  r = mail_reply_parse (many->str, many->len, NULL, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_TOO_MANY_LINES);
  g_assert_null (r);
}

static void
test_reply_defaults (void)
{
  for (guint i = 0; i < MAIL_REPLY_N_DEFAULTS; i++)
    {
      g_autoptr (MailReply) r = mail_reply_new_default (i);
      g_autoptr (MailReply) checked = NULL;
      g_autoptr (GError) error = NULL;
      const char *enhanced = NULL, *text = NULL;
      guint code = 0;

      mail_reply_default_get (i, &code, &enhanced, &text);
      g_assert_cmpuint (mail_reply_get_code (r), ==, code);
      g_assert_cmpstr (mail_reply_get_enhanced (r), ==, enhanced);
      g_assert_cmpstr (mail_reply_get_line (r, 0), ==, text);
      /* every default passes the validation a rule's reply goes through */
      checked = mail_reply_new (code, enhanced, text, &error);
      g_assert_no_error (error);
    }
  {
    g_autoptr (MailReply) ok = mail_reply_new_default (MAIL_REPLY_OK);
    g_autoptr (MailReply) su = mail_reply_new_default (MAIL_REPLY_SERVICE_UNAVAILABLE);
    g_autoptr (MailReply) dis = mail_reply_new_default (MAIL_REPLY_DISCARD);
    g_autofree char *w1 = mail_reply_format (ok);
    g_autofree char *w2 = mail_reply_format (su);
    g_autofree char *w3 = mail_reply_format (dis);

    g_assert_cmpstr (w1, ==, "250 2.0.0 Ok\r\n");
    g_assert_cmpstr (w2, ==, "451 4.7.1 Service unavailable - try again later\r\n");
    /* a discard looks like success to the client */
    g_assert_cmpstr (w3, ==, w1);
  }
}

static void
test_reply_complete (void)
{
  static const struct
  {
    MailReplyDefault fallback;
    guint code;
    const char *enhanced, *text;
    int error;
    const char *wire;
  } cases[] = {
    { MAIL_REPLY_REJECT, 0, NULL, NULL, OK, "550 5.7.1 Message rejected\r\n" },
    { MAIL_REPLY_REJECT, 550, NULL, "Spam", OK, "550 5.7.1 Spam\r\n" },
    { MAIL_REPLY_REJECT, 554, NULL, "Relaying denied", OK, "554 5.7.1 Relaying denied\r\n" },
    { MAIL_REPLY_REJECT, 450, NULL, NULL, OK, "450 4.7.1 Try again later\r\n" },
    { MAIL_REPLY_REJECT, 250, NULL, "", OK, "250 2.0.0 Ok\r\n" },
    { MAIL_REPLY_REJECT_RCPT, 0, NULL, NULL, OK, "550 5.7.1 Recipient rejected\r\n" },
    { MAIL_REPLY_TEMPFAIL, 0, NULL, "Greylisted", OK, "451 4.7.1 Greylisted\r\n" },
    { MAIL_REPLY_MESSAGE_TOO_BIG, 552, NULL, NULL, OK,
      "552 5.3.4 Message size exceeds fixed limit\r\n" },
    { MAIL_REPLY_REJECT, 0, "5.7.26", "DMARC", OK, "550 5.7.26 DMARC\r\n" },
    { MAIL_REPLY_REJECT, 550, "5.1.1", "No such user", OK, "550 5.1.1 No such user\r\n" },
    { MAIL_REPLY_REJECT, 354, NULL, "go", OK, "354 go\r\n" },
    { MAIL_REPLY_REJECT, 550, "4.7.1", "x", MAIL_ERROR_ENHANCED_CLASS },
    { MAIL_REPLY_REJECT, 0, "4.7.1", NULL, MAIL_ERROR_ENHANCED_CLASS },
    { MAIL_REPLY_REJECT, 700, NULL, NULL, MAIL_ERROR_REPLY_CODE },
    { MAIL_REPLY_REJECT, 550, NULL, "bad\rtext", MAIL_ERROR_FORBIDDEN_CHAR },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MailReply) r = mail_reply_complete (cases[i].fallback, cases[i].code,
                                                     cases[i].enhanced, cases[i].text, &error);
      g_autofree char *wire = NULL;

      if (cases[i].error != OK)
        {
          g_assert_error (error, MAIL_ERROR, cases[i].error);
          g_assert_null (r);
          continue;
        }
      g_assert_no_error (error);
      wire = mail_reply_format (r);
      g_assert_cmpstr (wire, ==, cases[i].wire);
    }
}

static void
test_reply_milter (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MailReply) r = mail_reply_new (550, "5.7.1", "100% spam\nsecond", &error);
  g_autoptr (MailReply) one = mail_reply_new (451, NULL, "50%", &error);
  g_autofree char *m = NULL;
  g_autofree char *m1 = NULL;
  g_autofree char *e1 = mail_reply_escape_percent ("a%b%%");
  g_autofree char *e2 = mail_reply_escape_percent ("");

  g_assert_no_error (error);
  m = mail_reply_format_milter (r);
  g_assert_cmpstr (m, ==, "550-5.7.1 100%% spam\r\n550 5.7.1 second");
  m1 = mail_reply_format_milter (one);
  g_assert_cmpstr (m1, ==, "451 50%%");
  g_assert_cmpstr (e1, ==, "a%%b%%%%");
  g_assert_cmpstr (e2, ==, "");
}

static void
test_reply_checks (void)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (mail_reply_check_code (250, &error));
  g_assert_true (mail_reply_check_code (554, &error));
  g_assert_false (mail_reply_check_code (260, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_CODE);
  g_clear_error (&error);
  /* code 0: syntax only */
  g_assert_true (mail_enhanced_code_check ("4.7.1", 0, &error));
  g_assert_true (mail_enhanced_code_check ("5.7.1", 554, &error));
  g_assert_no_error (error);
  g_assert_false (mail_enhanced_code_check ("4.7.1", 554, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_ENHANCED_CLASS);
  g_clear_error (&error);
  g_assert_false (mail_enhanced_code_check ("", 0, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_ENHANCED_CODE);
}

static void
test_reply_accessors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MailReply) r = mail_reply_new (550, "5.7.1", "a\nb", &error);
  const char *const *lines;
  g_autofree char *text = NULL;

  g_assert_no_error (error);
  lines = mail_reply_get_lines (r);
  g_assert_cmpstr (lines[0], ==, "a");
  g_assert_cmpstr (lines[1], ==, "b");
  g_assert_null (lines[2]);
  text = mail_reply_get_text (r);
  g_assert_cmpstr (text, ==, "a\nb");
  g_assert_true (mail_reply_ref (r) == r);
  mail_reply_unref (r);
  g_assert_cmpuint (mail_reply_get_code (r), ==, 550);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (reply_cases); i++)
    {
      const ReplyCase *c = &reply_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/mail/reply/new/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_reply_case);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (parse_cases); i++)
    {
      const ParseCase *c = &parse_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/mail/reply/parse/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_parse_case);
    }
  g_test_add_func ("/proto/mail/reply/limits", test_reply_limits);
  g_test_add_func ("/proto/mail/reply/parse-limits", test_parse_limits);
  g_test_add_func ("/proto/mail/reply/defaults", test_reply_defaults);
  g_test_add_func ("/proto/mail/reply/complete", test_reply_complete);
  g_test_add_func ("/proto/mail/reply/milter", test_reply_milter);
  g_test_add_func ("/proto/mail/reply/checks", test_reply_checks);
  g_test_add_func ("/proto/mail/reply/accessors", test_reply_accessors);
  return g_test_run ();
}
