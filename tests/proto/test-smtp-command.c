/* SPDX-License-Identifier: MIT
 *
 * test-smtp-command.c — the SMTP command parser (proto/smtp/smtp.h).
 *
 * One table row per verb rule and per malformed-input branch, each with its
 * exact SmtpError; then the values MAIL/RCPT/BDAT/AUTH carry, the named
 * limits at their edges (line per verb, local part, domain, path, SIZE
 * digits, ENVID), and the hostile inputs of TESTING.md: NUL, CR/LF through
 * xtext (never in the output), "MAIL FROM:<;sleep 5;>".
 */
#include <string.h>

#include "proto/smtp/smtp.h"

#define OK (-1)
#define E SMTP_PARSE_ESMTP
#define L SMTP_PARSE_LENIENT

typedef struct
{
  const char *name;
  const char *line;
  gsize len; /* 0: strlen */
  guint flags;
  gboolean utf8;
  int error; /* OK or an SmtpError */
  SmtpVerb verb;
  const char *arg;
} CmdCase;

static const CmdCase cmd_cases[] = {
  /* verbs, case-insensitive */
  { "helo", "HELO client.example", 0, 0, FALSE, OK, SMTP_CMD_HELO, "client.example" },
  { "helo-lower", "helo client.example", 0, 0, FALSE, OK, SMTP_CMD_HELO, "client.example" },
  { "ehlo-mixed", "EhLo [192.0.2.1]", 0, 0, FALSE, OK, SMTP_CMD_EHLO, "[192.0.2.1]" },
  { "ehlo-trailing-blanks", "EHLO a.example \t ", 0, 0, FALSE, OK, SMTP_CMD_EHLO, "a.example" },
  { "data", "DATA", 0, 0, FALSE, OK, SMTP_CMD_DATA, "" },
  { "data-lower", "data", 0, 0, FALSE, OK, SMTP_CMD_DATA, "" },
  { "data-trailing-space", "DATA ", 0, 0, FALSE, OK, SMTP_CMD_DATA, "" },
  { "rset", "RSET", 0, 0, FALSE, OK, SMTP_CMD_RSET, "" },
  { "quit", "quit", 0, 0, FALSE, OK, SMTP_CMD_QUIT, "" },
  { "starttls", "StartTLS", 0, 0, FALSE, OK, SMTP_CMD_STARTTLS, "" },
  { "noop", "NOOP", 0, 0, FALSE, OK, SMTP_CMD_NOOP, "" },
  { "noop-arg", "NOOP hello there", 0, 0, FALSE, OK, SMTP_CMD_NOOP, "hello there" },
  { "help", "HELP", 0, 0, FALSE, OK, SMTP_CMD_HELP, "" },
  { "help-arg", "HELP MAIL", 0, 0, FALSE, OK, SMTP_CMD_HELP, "MAIL" },
  { "vrfy", "VRFY postmaster", 0, 0, FALSE, OK, SMTP_CMD_VRFY, "postmaster" },
  { "expn", "EXPN staff", 0, 0, FALSE, OK, SMTP_CMD_EXPN, "staff" },
  { "helo-utf8",
    "EHLO b\xc3\xbc"
    "cher.example",
    0, 0, FALSE, OK, SMTP_CMD_EHLO,
    "b\xc3\xbc"
    "cher.example" },

  /* arguments where none or one is required */
  { "helo-no-arg", "HELO", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "ehlo-no-arg", "EHLO", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "ehlo-blank-arg", "EHLO    ", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "data-arg", "DATA now", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "rset-arg", "RSET x", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "quit-arg", "QUIT bye", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "starttls-arg", "STARTTLS x", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "vrfy-no-arg", "VRFY", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "expn-no-arg", "EXPN ", 0, 0, FALSE, SMTP_ERROR_SYNTAX },

  /* bytes no command may hold */
  { "nul", "NOOP\0x", 6, 0, FALSE, SMTP_ERROR_NUL },
  { "nul-first", "\0", 1, 0, FALSE, SMTP_ERROR_NUL },
  { "nul-in-path", "MAIL FROM:<a\0@b.example>", 24, E, FALSE, SMTP_ERROR_NUL },
  { "bare-cr", "NOOP\r", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "cr-in-helo", "HELO a\rb", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "lf-in-helo", "HELO a\nRSET", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "escape", "HELO \x1b[2Jx", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "del", "HELO a\x7f", 0, 0, FALSE, SMTP_ERROR_SYNTAX },

  /* verbs we do not know */
  { "empty", "", 0, 0, FALSE, SMTP_ERROR_UNKNOWN },
  { "unknown", "XYZZY", 0, 0, FALSE, SMTP_ERROR_UNKNOWN },
  { "prefix", "NOO", 0, 0, FALSE, SMTP_ERROR_UNKNOWN },
  { "longer", "NOOPS", 0, 0, FALSE, SMTP_ERROR_UNKNOWN },
  { "leading-space", " NOOP", 0, 0, FALSE, SMTP_ERROR_UNKNOWN },
  { "tab-separator", "NOOP\tx", 0, 0, FALSE, SMTP_ERROR_UNKNOWN },
  { "http", "GET / HTTP/1.0", 0, 0, FALSE, SMTP_ERROR_UNKNOWN },

  /* MAIL */
  { "mail", "MAIL FROM:<a@b.example>", 0, 0, FALSE, OK, SMTP_CMD_MAIL, "FROM:<a@b.example>" },
  { "mail-lower", "mail from:<a@b.example>", 0, 0, FALSE, OK, SMTP_CMD_MAIL },
  { "mail-null", "MAIL FROM:<>", 0, 0, FALSE, OK, SMTP_CMD_MAIL },
  { "mail-null-esmtp", "MAIL FROM:<> SIZE=100", 0, E, FALSE, OK, SMTP_CMD_MAIL },
  { "mail-no-arg", "MAIL", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "mail-to", "MAIL TO:<a@b.example>", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "mail-no-path", "MAIL FROM:", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "mail-blank-path", "MAIL FROM:   ", 0, L, FALSE, SMTP_ERROR_SYNTAX },
  { "mail-space-strict", "MAIL FROM: <a@b.example>", 0, 0, FALSE, SMTP_ERROR_BAD_SENDER },
  { "mail-space-lenient", "MAIL FROM: <a@b.example>", 0, L, FALSE, OK, SMTP_CMD_MAIL },
  { "mail-no-brackets-strict", "MAIL FROM:a@b.example", 0, 0, FALSE, SMTP_ERROR_BAD_SENDER },
  { "mail-no-brackets-lenient", "MAIL FROM:a@b.example", 0, L, FALSE, OK, SMTP_CMD_MAIL },
  { "mail-unterminated", "MAIL FROM:<a@b.example", 0, 0, FALSE, SMTP_ERROR_BAD_SENDER },
  { "mail-junk-after", "MAIL FROM:<a@b.example>x", 0, E, FALSE, SMTP_ERROR_BAD_SENDER },
  { "mail-no-domain", "MAIL FROM:<user>", 0, 0, FALSE, SMTP_ERROR_BAD_SENDER },
  { "mail-postmaster", "MAIL FROM:<postmaster>", 0, 0, FALSE, SMTP_ERROR_BAD_SENDER },
  { "mail-params-without-ehlo", "MAIL FROM:<a@b.example> SIZE=10", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "mail-trailing-blank-without-ehlo", "MAIL FROM:<a@b.example>  ", 0, 0, FALSE, OK,
    SMTP_CMD_MAIL },

  /* RCPT */
  { "rcpt", "RCPT TO:<a@b.example>", 0, 0, FALSE, OK, SMTP_CMD_RCPT, "TO:<a@b.example>" },
  { "rcpt-postmaster", "RCPT TO:<postmaster>", 0, 0, FALSE, OK, SMTP_CMD_RCPT },
  { "rcpt-postmaster-case", "rcpt to:<PostMaster>", 0, 0, FALSE, OK, SMTP_CMD_RCPT },
  { "rcpt-null", "RCPT TO:<>", 0, 0, FALSE, SMTP_ERROR_BAD_RCPT },
  { "rcpt-from", "RCPT FROM:<a@b.example>", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "rcpt-no-path", "RCPT TO:", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "rcpt-bad-domain", "RCPT TO:<a@-b.example>", 0, 0, FALSE, SMTP_ERROR_BAD_RCPT },
  { "rcpt-params-without-ehlo", "RCPT TO:<a@b.example> NOTIFY=NEVER", 0, 0, FALSE,
    SMTP_ERROR_SYNTAX },

  /* MAIL parameters */
  { "size-21-digits", "MAIL FROM:<> SIZE=123456789012345678901", 0, E, FALSE,
    SMTP_ERROR_BAD_PARAM },
  { "size-letters", "MAIL FROM:<> SIZE=12a", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "size-negative", "MAIL FROM:<> SIZE=-1", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "size-no-value", "MAIL FROM:<> SIZE", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "size-empty", "MAIL FROM:<> SIZE=", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "size-twice", "MAIL FROM:<> SIZE=1 size=2", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "body-bad", "MAIL FROM:<> BODY=9BIT", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "body-no-value", "MAIL FROM:<> BODY", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "smtputf8-value", "MAIL FROM:<> SMTPUTF8=yes", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "ret-bad", "MAIL FROM:<> RET=ALL", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "ret-twice", "MAIL FROM:<> RET=FULL RET=HDRS", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "ret-twice-same", "MAIL FROM:<> RET=HDRS ret=HDRS", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "envid-crlf", "MAIL FROM:<> ENVID=a+0D+0AHELO+20x", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "envid-nul", "MAIL FROM:<> ENVID=a+00", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "envid-bad-xtext", "MAIL FROM:<> ENVID=a+G1", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "auth-crlf", "MAIL FROM:<> AUTH=a+0D+0A", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "notify-on-mail", "MAIL FROM:<> NOTIFY=NEVER", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "orcpt-on-mail", "MAIL FROM:<> ORCPT=rfc822;a@b", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "param-bad-keyword", "MAIL FROM:<> SI_ZE=1", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "param-tab", "MAIL FROM:<> SIZE=1\tBODY=7BIT", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "unknown-param-kept", "MAIL FROM:<> X-FOO=bar", 0, E, FALSE, OK, SMTP_CMD_MAIL },

  /* RCPT parameters */
  { "notify-never-success", "RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS", 0, E, FALSE,
    SMTP_ERROR_BAD_PARAM },
  { "notify-delay-never", "RCPT TO:<a@b.example> NOTIFY=DELAY,NEVER", 0, E, FALSE,
    SMTP_ERROR_BAD_PARAM },
  { "notify-bad", "RCPT TO:<a@b.example> NOTIFY=ALWAYS", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "notify-empty-item", "RCPT TO:<a@b.example> NOTIFY=SUCCESS,,DELAY", 0, E, FALSE,
    SMTP_ERROR_BAD_PARAM },
  { "notify-trailing-comma", "RCPT TO:<a@b.example> NOTIFY=SUCCESS,", 0, E, FALSE,
    SMTP_ERROR_BAD_PARAM },
  { "notify-no-value", "RCPT TO:<a@b.example> NOTIFY", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "orcpt-crlf", "RCPT TO:<a@b.example> ORCPT=rfc822;a+0D+0Ab@c", 0, E, FALSE,
    SMTP_ERROR_BAD_PARAM },
  { "orcpt-no-type", "RCPT TO:<a@b.example> ORCPT=;a@b", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "orcpt-no-semicolon", "RCPT TO:<a@b.example> ORCPT=rfc822", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "orcpt-no-address", "RCPT TO:<a@b.example> ORCPT=rfc822;", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "orcpt-bad-type", "RCPT TO:<a@b.example> ORCPT=rfc+822;a@b", 0, E, FALSE,
    SMTP_ERROR_BAD_PARAM },
  { "size-on-rcpt", "RCPT TO:<a@b.example> SIZE=1", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "ret-on-rcpt", "RCPT TO:<a@b.example> RET=FULL", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },

  /* 8-bit addresses (RFC 6531) */
  { "mail-utf8-without", "MAIL FROM:<jos\xc3\xa9@x.example>", 0, E, FALSE, SMTP_ERROR_8BIT },
  { "mail-utf8-with-param", "MAIL FROM:<jos\xc3\xa9@x.example> SMTPUTF8", 0, E, FALSE, OK,
    SMTP_CMD_MAIL },
  { "mail-utf8-session", "MAIL FROM:<jos\xc3\xa9@x.example>", 0, E, TRUE, OK, SMTP_CMD_MAIL },
  { "mail-utf8-invalid", "MAIL FROM:<jos\xff@x.example> SMTPUTF8", 0, E, FALSE,
    SMTP_ERROR_BAD_SENDER },
  { "mail-utf8-smtputf8-no-ehlo", "MAIL FROM:<jos\xc3\xa9@x.example> SMTPUTF8", 0, 0, FALSE,
    SMTP_ERROR_SYNTAX },
  { "rcpt-utf8-without", "RCPT TO:<jos\xc3\xa9@x.example>", 0, E, FALSE, SMTP_ERROR_8BIT },
  { "rcpt-utf8-with", "RCPT TO:<jos\xc3\xa9@x.example>", 0, E, TRUE, OK, SMTP_CMD_RCPT },
  { "rcpt-utf8-domain",
    "RCPT TO:<a@b\xc3\xbc"
    "cher.example>",
    0, E, FALSE, SMTP_ERROR_8BIT },
  { "param-8bit-without", "MAIL FROM:<> X-NAME=\xc3\xa9", 0, E, FALSE, SMTP_ERROR_BAD_PARAM },
  { "param-8bit-with", "MAIL FROM:<> X-NAME=\xc3\xa9 SMTPUTF8", 0, E, FALSE, OK, SMTP_CMD_MAIL },

  /* BDAT (RFC 3030) */
  { "bdat-last", "BDAT 100 LAST", 0, 0, FALSE, OK, SMTP_CMD_BDAT, "100 LAST" },
  { "bdat", "BDAT 100", 0, 0, FALSE, OK, SMTP_CMD_BDAT },
  { "bdat-zero-last", "bdat 0 last", 0, 0, FALSE, OK, SMTP_CMD_BDAT },
  { "bdat-19-digits", "BDAT 9999999999999999999", 0, 0, FALSE, OK, SMTP_CMD_BDAT },
  { "bdat-20-digits", "BDAT 10000000000000000000", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "bdat-no-size", "BDAT", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "bdat-last-only", "BDAT LAST", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "bdat-negative", "BDAT -1", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "bdat-plus", "BDAT +1", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "bdat-hex", "BDAT 0x10", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "bdat-bad-marker", "BDAT 100 FIRST", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "bdat-marker-prefix", "BDAT 100 LASTX", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "bdat-extra", "BDAT 100 LAST x", 0, 0, FALSE, SMTP_ERROR_SYNTAX },

  /* AUTH (RFC 4954) */
  { "auth", "AUTH PLAIN", 0, 0, FALSE, OK, SMTP_CMD_AUTH },
  { "auth-ir", "auth plain AHVzZXIAcGFzcw==", 0, 0, FALSE, OK, SMTP_CMD_AUTH },
  { "auth-empty-ir", "AUTH PLAIN =", 0, 0, FALSE, OK, SMTP_CMD_AUTH },
  { "auth-no-mech", "AUTH", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "auth-bad-mech", "AUTH PL@IN", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "auth-20-char-mech", "AUTH ABCDEFGHIJKLMNOPQRST", 0, 0, FALSE, OK, SMTP_CMD_AUTH },
  { "auth-21-char-mech", "AUTH ABCDEFGHIJKLMNOPQRSTU", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
  { "auth-extra", "AUTH PLAIN abc def", 0, 0, FALSE, SMTP_ERROR_SYNTAX },
};

static void
test_cmd_case (gconstpointer data)
{
  const CmdCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (SmtpCommand) cmd
      = smtp_command_parse (c->line, c->len ? c->len : strlen (c->line), c->flags, c->utf8, &error);

  if (c->error != OK)
    {
      g_assert_error (error, SMTP_ERROR, c->error);
      g_assert_null (cmd);
      return;
    }
  g_assert_no_error (error);
  g_assert_nonnull (cmd);
  g_assert_cmpint (cmd->verb, ==, c->verb);
  if (c->arg != NULL)
    g_assert_cmpstr (cmd->arg, ==, c->arg);
  if (cmd->verb == SMTP_CMD_MAIL || cmd->verb == SMTP_CMD_RCPT)
    {
      g_assert_nonnull (cmd->path);
      g_assert_nonnull (cmd->params);
    }
  else
    {
      g_assert_null (cmd->path);
      g_assert_null (cmd->params);
    }
}

static SmtpCommand *
parse_ok (const char *line, guint flags, gboolean utf8)
{
  g_autoptr (GError) error = NULL;
  SmtpCommand *cmd = smtp_command_parse (line, strlen (line), flags, utf8, &error);

  g_assert_no_error (error);
  g_assert_nonnull (cmd);
  return cmd;
}

static void
test_mail_values (void)
{
  g_autoptr (SmtpCommand) plain = parse_ok ("MAIL FROM:<a@b.example>", 0, FALSE);
  g_autoptr (SmtpCommand) full
      = parse_ok ("MAIL FROM:<Sender@Example.ORG> size=12345 Body=8bitmime SMTPUTF8 RET=hdrs "
                  "ENVID=QQ+2B1+3Dx AUTH=user+40example.org x-foo=Bar XBAR",
                  E, FALSE);
  g_autoptr (SmtpCommand) null
      = parse_ok ("MAIL FROM:<> BODY=BINARYMIME RET=FULL AUTH=<>", E, FALSE);
  g_autoptr (SmtpCommand) big = parse_ok ("MAIL FROM:<> SIZE=99999999999999999999", E, FALSE);
  g_autoptr (SmtpCommand) max = parse_ok ("MAIL FROM:<> SIZE=18446744073709551615", E, FALSE);
  g_autoptr (SmtpCommand) zero = parse_ok ("MAIL FROM:<> SIZE=0 BODY=7bit", E, FALSE);
  g_autoptr (SmtpCommand) lenient = parse_ok ("MAIL FROM: a@b.example SIZE=5", E | L, FALSE);

  g_assert_false (mail_path_is_null (plain->path));
  g_assert_cmpstr (mail_path_get_address (plain->path), ==, "a@b.example");
  g_assert_cmpuint (mail_params_get_n (plain->params), ==, 0);
  g_assert_cmpuint (plain->size, ==, 0);
  g_assert_cmpint (plain->body, ==, SMTP_BODY_DEFAULT);
  g_assert_cmpint (plain->ret, ==, SMTP_RET_DEFAULT);
  g_assert_false (plain->smtputf8);
  g_assert_null (plain->envid);
  g_assert_null (plain->auth);
  g_assert_null (plain->orcpt);
  g_assert_cmpuint (plain->notify, ==, SMTP_NOTIFY_DEFAULT);

  g_assert_cmpstr (mail_path_get_local (full->path), ==, "Sender");
  g_assert_cmpstr (mail_path_get_domain (full->path), ==, "Example.ORG");
  g_assert_cmpuint (full->size, ==, 12345);
  g_assert_cmpint (full->body, ==, SMTP_BODY_8BITMIME);
  g_assert_true (full->smtputf8);
  g_assert_cmpint (full->ret, ==, SMTP_RET_HDRS);
  g_assert_cmpstr (full->envid, ==, "QQ+1=x");
  g_assert_cmpstr (full->auth, ==, "user@example.org");
  /* every parameter kept, keywords upper-cased, values as sent */
  g_assert_cmpuint (mail_params_get_n (full->params), ==, 8);
  g_assert_cmpstr (mail_params_get_keyword (full->params, 0), ==, "SIZE");
  g_assert_cmpstr (mail_params_get_keyword (full->params, 1), ==, "BODY");
  g_assert_cmpstr (mail_params_get_value (full->params, 1), ==, "8bitmime");
  g_assert_cmpstr (mail_params_get_value (full->params, 4), ==, "QQ+2B1+3Dx");
  g_assert_cmpstr (mail_params_get_keyword (full->params, 6), ==, "X-FOO");
  g_assert_cmpstr (mail_params_get_value (full->params, 6), ==, "Bar");
  g_assert_cmpstr (mail_params_get_keyword (full->params, 7), ==, "XBAR");
  g_assert_null (mail_params_get_value (full->params, 7));

  g_assert_true (mail_path_is_null (null->path));
  g_assert_cmpint (null->body, ==, SMTP_BODY_BINARYMIME);
  g_assert_cmpint (null->ret, ==, SMTP_RET_FULL);
  g_assert_cmpstr (null->auth, ==, "<>");

  /* RFC 1870 allows 20 digits; past 64 bits it saturates */
  g_assert_cmpuint (big->size, ==, G_MAXUINT64);
  g_assert_cmpuint (max->size, ==, G_MAXUINT64);
  g_assert_cmpuint (zero->size, ==, 0);
  g_assert_cmpint (zero->body, ==, SMTP_BODY_7BIT);

  g_assert_cmpstr (mail_path_get_address (lenient->path), ==, "a@b.example");
  g_assert_cmpuint (lenient->size, ==, 5);
}

static void
test_rcpt_values (void)
{
  g_autoptr (SmtpCommand) pm = parse_ok ("RCPT TO:<postmaster>", 0, FALSE);
  g_autoptr (SmtpCommand) dsn = parse_ok (
      "RCPT TO:<a@b.example> notify=success,Failure,DELAY ORCPT=rfc822;Joe+2BX+40b.example", E,
      FALSE);
  g_autoptr (SmtpCommand) never = parse_ok ("RCPT TO:<a@b.example> NOTIFY=never", E, FALSE);
  g_autoptr (SmtpCommand) one = parse_ok ("RCPT TO:<a@b.example> NOTIFY=DELAY", E, FALSE);

  g_assert_true (mail_path_is_postmaster (pm->path));
  g_assert_cmpuint (pm->notify, ==, SMTP_NOTIFY_DEFAULT);
  g_assert_null (pm->orcpt);

  g_assert_cmpuint (dsn->notify, ==, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
  g_assert_cmpstr (dsn->orcpt, ==, "rfc822;Joe+X@b.example");
  g_assert_cmpstr (mail_params_get_keyword (dsn->params, 0), ==, "NOTIFY");
  g_assert_cmpuint (never->notify, ==, SMTP_NOTIFY_NEVER);
  g_assert_cmpuint (one->notify, ==, SMTP_NOTIFY_DELAY);
}

static void
test_bdat_auth_values (void)
{
  g_autoptr (SmtpCommand) last = parse_ok ("BDAT 100 LAST", 0, FALSE);
  g_autoptr (SmtpCommand) mid = parse_ok ("bdat 4096", 0, FALSE);
  g_autoptr (SmtpCommand) huge = parse_ok ("BDAT 9999999999999999999 last", 0, FALSE);
  g_autoptr (SmtpCommand) zero = parse_ok ("BDAT 0 LAST", 0, FALSE);
  g_autoptr (SmtpCommand) auth = parse_ok ("AUTH PLAIN", 0, FALSE);
  g_autoptr (SmtpCommand) ir = parse_ok ("auth cram-md5 AHVzZXIAcGFzcw==", 0, FALSE);
  g_autoptr (SmtpCommand) empty = parse_ok ("AUTH LOGIN =", 0, FALSE);

  g_assert_cmpuint (last->chunk_size, ==, 100);
  g_assert_true (last->last);
  g_assert_cmpuint (mid->chunk_size, ==, 4096);
  g_assert_false (mid->last);
  g_assert_cmpuint (huge->chunk_size, ==, G_GUINT64_CONSTANT (9999999999999999999));
  g_assert_true (huge->last);
  g_assert_cmpuint (zero->chunk_size, ==, 0);
  g_assert_true (zero->last);

  g_assert_cmpstr (auth->mechanism, ==, "PLAIN");
  g_assert_null (auth->initial_response);
  g_assert_cmpstr (ir->mechanism, ==, "CRAM-MD5");
  g_assert_cmpstr (ir->initial_response, ==, "AHVzZXIAcGFzcw==");
  g_assert_cmpstr (empty->mechanism, ==, "LOGIN");
  g_assert_cmpstr (empty->initial_response, ==, "=");
}

/* A line of exactly len octets: verb + padding. */
static char *
make_line (const char *verb, gsize len, char fill)
{
  GString *s = g_string_new (verb);

  while (s->len < len)
    g_string_append_c (s, fill);
  g_string_truncate (s, len);
  return g_string_free (s, FALSE);
}

static void
test_line_limits (void)
{
  static const struct
  {
    const char *verb;
    gsize limit; /* with CRLF */
  } limits[] = {
    { "NOOP ", SMTP_MAX_COMMAND_LINE },
    { "HELO ", SMTP_MAX_COMMAND_LINE },
    { "XYZZY ", SMTP_MAX_COMMAND_LINE },
    { "AUTH PLAIN ", SMTP_MAX_AUTH_LINE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (limits); i++)
    {
      g_autofree char *fits = make_line (limits[i].verb, limits[i].limit - 2, 'A');
      g_autofree char *over = make_line (limits[i].verb, limits[i].limit - 1, 'A');
      g_autoptr (GError) error = NULL;
      g_autoptr (SmtpCommand) a = smtp_command_parse (fits, strlen (fits), 0, FALSE, &error);
      g_autoptr (SmtpCommand) b = NULL;

      if (limits[i].verb[0] == 'X')
        g_assert_error (error, SMTP_ERROR, SMTP_ERROR_UNKNOWN);
      else
        g_assert_no_error (error);
      g_clear_error (&error);
      b = smtp_command_parse (over, strlen (over), 0, FALSE, &error);
      g_assert_error (error, SMTP_ERROR, SMTP_ERROR_LINE_TOO_LONG);
      g_assert_null (b);
    }

  /* MAIL and RCPT may be longer than 512 with parameters (and not more
   * than their own limit) */
  {
    g_autoptr (GString) mail = g_string_new ("MAIL FROM:<a@b.example> ENVID=");
    g_autoptr (GError) error = NULL;
    g_autoptr (SmtpCommand) cmd = NULL;

    for (int i = 0; i < 100; i++)
      g_string_append_c (mail, 'e');
    /* two parameters: a value is at most MAIL_MAX_ESMTP_VALUE */
    g_string_append (mail, " X-A=");
    for (int i = 0; i < 400; i++)
      g_string_append_c (mail, 'p');
    g_string_append (mail, " X-B=");
    while (mail->len < SMTP_MAX_MAIL_LINE - 2)
      g_string_append_c (mail, 'p');
    cmd = smtp_command_parse (mail->str, mail->len, E, FALSE, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (strlen (cmd->envid), ==, 100);
    g_string_append_c (mail, 'p');
    g_clear_pointer (&cmd, smtp_command_free);
    cmd = smtp_command_parse (mail->str, mail->len, E, FALSE, &error);
    g_assert_error (error, SMTP_ERROR, SMTP_ERROR_LINE_TOO_LONG);
    g_assert_null (cmd);
  }
  {
    g_autoptr (GString) rcpt = g_string_new ("RCPT TO:<a@b.example> ORCPT=rfc822;");
    g_autoptr (GError) error = NULL;
    g_autoptr (SmtpCommand) cmd = NULL;

    while (rcpt->len < 520)
      g_string_append_c (rcpt, 'o');
    cmd = smtp_command_parse (rcpt->str, rcpt->len, E, FALSE, &error);
    g_assert_no_error (error);
    while (rcpt->len < SMTP_MAX_RCPT_LINE - 1)
      g_string_append_c (rcpt, 'o');
    g_clear_pointer (&cmd, smtp_command_free);
    cmd = smtp_command_parse (rcpt->str, rcpt->len, E, FALSE, &error);
    g_assert_error (error, SMTP_ERROR, SMTP_ERROR_LINE_TOO_LONG);
    g_assert_null (cmd);
  }
}

/* RFC 5321 §4.5.3.1: local part 64, domain 255, path 256. */
static void
test_address_limits (void)
{
  g_autofree char *l64 = g_strnfill (64, 'l');
  g_autofree char *l65 = g_strnfill (65, 'l');
  /* 255 octets of domain: labels of 63 + dots */
  g_autofree char *label = g_strnfill (63, 'd');
  g_autofree char *l61 = g_strnfill (61, 'd');
  g_autofree char *l62 = g_strnfill (62, 'd');
  g_autofree char *d255 = g_strjoin (".", label, label, label, label, NULL);
  g_autofree char *l60 = g_strnfill (60, 'd');
  g_autofree char *d252 = g_strjoin (".", label, label, label, l60, NULL);
  g_autofree char *d256 = g_strconcat ("d.", l62, ".", label, ".", label, ".", label, NULL);
  /* with a 64-octet local part: "<" 64 "@" 189 ">" is 256, with 190 it is 257 */
  g_autofree char *d189 = g_strjoin (".", label, label, l61, NULL);
  g_autofree char *d190 = g_strjoin (".", label, label, l62, NULL);
  struct
  {
    char *line;
    int error;
  } cases[] = {
    { g_strdup_printf ("MAIL FROM:<%s@b.example>", l64), OK },
    { g_strdup_printf ("MAIL FROM:<%s@b.example>", l65), SMTP_ERROR_BAD_SENDER },
    { g_strdup_printf ("RCPT TO:<%s@b.example>", l65), SMTP_ERROR_BAD_RCPT },
    /* "<a@" 252 ">" is the longest path with a one-octet local part */
    { g_strdup_printf ("MAIL FROM:<a@%s>", d252), OK },
    { g_strdup_printf ("MAIL FROM:<a@%s>", d255), SMTP_ERROR_BAD_SENDER },
    { g_strdup_printf ("MAIL FROM:<a@%s>", d256), SMTP_ERROR_BAD_SENDER },
    { g_strdup_printf ("RCPT TO:<a@%s>", d256), SMTP_ERROR_BAD_RCPT },
    /* local 64 + '@' + domain 255 fit their limits, but the path is over 256 */
    { g_strdup_printf ("MAIL FROM:<%s@%s>", l64, d255), SMTP_ERROR_BAD_SENDER },
    { g_strdup_printf ("RCPT TO:<%s@%s>", l64, d255), SMTP_ERROR_BAD_RCPT },
    { g_strdup_printf ("MAIL FROM:<%s@%s>", l64, d189), OK },
    { g_strdup_printf ("RCPT TO:<%s@%s>", l64, d189), OK },
    { g_strdup_printf ("MAIL FROM:<%s@%s>", l64, d190), SMTP_ERROR_BAD_SENDER },
    { g_strdup_printf ("RCPT TO:<%s@%s>", l64, d190), SMTP_ERROR_BAD_RCPT },
  };

  g_assert_cmpuint (strlen (d255), ==, 255);
  g_assert_cmpuint (strlen (d252), ==, 252);
  g_assert_cmpuint (strlen (d256), ==, 256);
  g_assert_cmpuint (strlen (d189), ==, 189);
  g_assert_cmpuint (strlen (d190), ==, 190);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (SmtpCommand) cmd
          = smtp_command_parse (cases[i].line, strlen (cases[i].line), E, FALSE, &error);

      if (cases[i].error == OK)
        {
          g_assert_no_error (error);
          g_assert_nonnull (cmd);
        }
      else
        {
          g_assert_error (error, SMTP_ERROR, cases[i].error);
          g_assert_null (cmd);
        }
      g_free (cases[i].line);
    }
}

static void
test_envid_limit (void)
{
  g_autofree char *e100 = g_strnfill (SMTP_MAX_ENVID, 'e');
  g_autofree char *e101 = g_strnfill (SMTP_MAX_ENVID + 1, 'e');
  g_autofree char *ok_line = g_strdup_printf ("MAIL FROM:<> ENVID=%s", e100);
  g_autofree char *bad_line = g_strdup_printf ("MAIL FROM:<> ENVID=%s", e101);
  g_autoptr (GError) error = NULL;
  g_autoptr (SmtpCommand) ok = smtp_command_parse (ok_line, strlen (ok_line), E, FALSE, &error);
  g_autoptr (SmtpCommand) bad = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (ok->envid, ==, e100);
  bad = smtp_command_parse (bad_line, strlen (bad_line), E, FALSE, &error);
  g_assert_error (error, SMTP_ERROR, SMTP_ERROR_BAD_PARAM);
  g_assert_null (bad);
}

/* TESTING.md: CR/LF/NUL in ESMTP params never come out (CVE-2020-28026);
 * any accepted value is free of control characters. */
static void
test_hostile_params (void)
{
  static const char *const lines[] = {
    "MAIL FROM:<> ENVID=+0D+0A",
    "MAIL FROM:<> ENVID=x+0Dy",
    "MAIL FROM:<> ENVID=x+0ay",
    "MAIL FROM:<> ENVID=+0d+0aRCPT+20TO:<x@y>",
    "MAIL FROM:<> AUTH=+0D+0A",
    "MAIL FROM:<> ENVID=a\r\nRCPT TO:<x@y>",
    "RCPT TO:<a@b.example> ORCPT=rfc822;+0D+0A",
    "RCPT TO:<a@b.example> ORCPT=rfc822;a+0d+0ab",
    "RCPT TO:<a@b.example> ORCPT=rfc822;a+00b",
    "RCPT TO:<a@b.example> ORCPT=rfc822;a+1Bb",
    "RCPT TO:<a@b.example> ORCPT=rfc822;a+C3+A9",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (lines); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (SmtpCommand) cmd
          = smtp_command_parse (lines[i], strlen (lines[i]), E | L, TRUE, &error);

      g_assert_null (cmd);
      g_assert_nonnull (error);
      g_assert_true (error->code == SMTP_ERROR_BAD_PARAM || error->code == SMTP_ERROR_SYNTAX);
    }
}

/* CVE-2020-7247: a local part that means something to a shell is data
 * for us: it parses or fails, never more. */
static void
test_hostile_local_parts (void)
{
  static const char *const lines[] = {
    "MAIL FROM:<;sleep 5;>",
    "MAIL FROM:<;sleep 5;@x.example>",
    "MAIL FROM:<\";sleep 5;\"@x.example>",
    "MAIL FROM:<`id`@x.example>",
    "MAIL FROM:<$(id)@x.example>",
    "RCPT TO:<../../etc/passwd@x.example>",
    "RCPT TO:<a/b@x.example>",
    "RCPT TO:<|/bin/sh@x.example>",
    "MAIL FROM:<\"\\\"\"@x.example>",
    "MAIL FROM:<\"a>b\"@x.example>",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (lines); i++)
    for (guint flags = 0; flags <= (E | L); flags++)
      {
        g_autoptr (GError) error = NULL;
        g_autoptr (SmtpCommand) cmd
            = smtp_command_parse (lines[i], strlen (lines[i]), flags, FALSE, &error);

        if (cmd == NULL)
          {
            g_assert_nonnull (error);
            g_assert_true (error->code == SMTP_ERROR_BAD_SENDER
                           || error->code == SMTP_ERROR_BAD_RCPT);
          }
        else
          {
            g_assert_no_error (error);
            g_assert_null (strpbrk (mail_path_get_address (cmd->path), "\r\n"));
          }
      }

  /* the quoted form is valid and comes out unquoted, as data */
  {
    g_autoptr (SmtpCommand) cmd = parse_ok ("MAIL FROM:<\";sleep 5;\"@x.example>", 0, FALSE);

    g_assert_cmpstr (mail_path_get_local (cmd->path), ==, ";sleep 5;");
  }
}

static void
test_verb_names (void)
{
  static const struct
  {
    SmtpVerb verb;
    const char *name;
  } names[] = {
    { SMTP_CMD_HELO, "HELO" },         { SMTP_CMD_EHLO, "EHLO" }, { SMTP_CMD_MAIL, "MAIL" },
    { SMTP_CMD_RCPT, "RCPT" },         { SMTP_CMD_DATA, "DATA" }, { SMTP_CMD_BDAT, "BDAT" },
    { SMTP_CMD_RSET, "RSET" },         { SMTP_CMD_NOOP, "NOOP" }, { SMTP_CMD_QUIT, "QUIT" },
    { SMTP_CMD_VRFY, "VRFY" },         { SMTP_CMD_EXPN, "EXPN" }, { SMTP_CMD_HELP, "HELP" },
    { SMTP_CMD_STARTTLS, "STARTTLS" }, { SMTP_CMD_AUTH, "AUTH" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_cmpstr (smtp_verb_name (names[i].verb), ==, names[i].name);
}

/* Every prefix of a valid line, and every line with one byte changed,
 * parses or fails with an SmtpError; never anything else. */
static void
test_mutations (void)
{
  static const char *const seeds[] = {
    "MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x+2By AUTH=<>",
    "RCPT TO:<a@b.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b",
    "BDAT 100 LAST",
    "AUTH PLAIN AHVzZXIAcGFzcw==",
  };
  static const char bytes[] = { '\0', '\r', '\n', ' ', '<', '>', '=', '+',    ',',
                                ';',  '"',  '\\', '@', ':', 'A', '0', '\x80', '\xff' };

  for (gsize s = 0; s < G_N_ELEMENTS (seeds); s++)
    {
      gsize len = strlen (seeds[s]);
      g_autofree char *copy = g_strdup (seeds[s]);

      for (gsize n = 0; n <= len; n++)
        for (guint flags = 0; flags <= (E | L); flags++)
          {
            g_autoptr (GError) error = NULL;
            g_autoptr (SmtpCommand) cmd = smtp_command_parse (seeds[s], n, flags, FALSE, &error);

            g_assert_true ((cmd == NULL) == (error != NULL));
            if (error != NULL)
              g_assert_true (error->domain == SMTP_ERROR);
          }
      for (gsize i = 0; i < len; i++)
        for (gsize b = 0; b < G_N_ELEMENTS (bytes); b++)
          {
            g_autoptr (GError) error = NULL;
            g_autoptr (SmtpCommand) cmd = NULL;

            copy[i] = bytes[b];
            cmd = smtp_command_parse (copy, len, E, FALSE, &error);
            g_assert_true ((cmd == NULL) == (error != NULL));
            if (error != NULL)
              g_assert_true (error->domain == SMTP_ERROR);
            else if (cmd->envid != NULL)
              g_assert_null (strpbrk (cmd->envid, "\r\n"));
            copy[i] = seeds[s][i];
          }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (cmd_cases); i++)
    {
      const CmdCase *c = &cmd_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/smtp/command/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_cmd_case);
    }
  g_test_add_func ("/proto/smtp/command/values/mail", test_mail_values);
  g_test_add_func ("/proto/smtp/command/values/rcpt", test_rcpt_values);
  g_test_add_func ("/proto/smtp/command/values/bdat-auth", test_bdat_auth_values);
  g_test_add_func ("/proto/smtp/command/limits/line", test_line_limits);
  g_test_add_func ("/proto/smtp/command/limits/address", test_address_limits);
  g_test_add_func ("/proto/smtp/command/limits/envid", test_envid_limit);
  g_test_add_func ("/proto/smtp/command/hostile/xtext-crlf", test_hostile_params);
  g_test_add_func ("/proto/smtp/command/hostile/local-parts", test_hostile_local_parts);
  g_test_add_func ("/proto/smtp/command/hostile/mutations", test_mutations);
  g_test_add_func ("/proto/smtp/command/verb-names", test_verb_names);
  return g_test_run ();
}
