/* SPDX-License-Identifier: MIT
 *
 * test-smtp-out.c — the SMTP client codec (proto/smtp/smtp-out.h): EHLO
 * replies in (as bytes, framed by mail_reply_parse), extensions out; MAIL
 * and RCPT lines built from what the server offered, with every error
 * branch asserted; AUTH PLAIN/LOGIN against known vectors and against the
 * server-side decoder; dot-stuffing against expected bytes, at every
 * split point, and through the server's DATA decoder (smtp-data.c) back
 * to the message.
 */
#include <string.h>

#include "proto/smtp/smtp-out.h"

#define OK (-1)

static MailReply *
reply (const char *bytes)
{
  g_autoptr (GError) error = NULL;
  gsize consumed = 0;
  MailReply *r = mail_reply_parse (bytes, strlen (bytes), &consumed, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (consumed, ==, strlen (bytes));
  return r;
}

/* ---- EHLO ---------------------------------------------------------------------- */

typedef struct
{
  const char *name;
  const char *bytes;
  int error;
  guint ext;
  guint64 size;
  guint auth;
} EhloCase;

#define ALL_POSTFIX                                                                                \
  (SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_STARTTLS | SMTP_EXT_ENHANCEDSTATUSCODES          \
   | SMTP_EXT_8BITMIME | SMTP_EXT_DSN | SMTP_EXT_SMTPUTF8 | SMTP_EXT_CHUNKING)

static const EhloCase ehlo_cases[] = {
  { "postfix",
    "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
    "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
    "250 CHUNKING\r\n",
    OK, ALL_POSTFIX, 10240000, 0 },
  { "only-domain", "250 mx.example.org Hello\r\n", OK, 0, 0, 0 },
  { "lower-case", "250-mx\r\n250-pipelining\r\n250-size 100\r\n250 auth plain\r\n", OK,
    SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_AUTH, 100, SMTP_AUTH_MECH_PLAIN },
  { "first-line-is-not-a-keyword", "250-PIPELINING here\r\n250 SIZE 5\r\n", OK, SMTP_EXT_SIZE, 5,
    0 },
  { "size-without-number", "250-mx\r\n250 SIZE\r\n", OK, SMTP_EXT_SIZE, 0, 0 },
  { "size-zero", "250-mx\r\n250 SIZE 0\r\n", OK, SMTP_EXT_SIZE, 0, 0 },
  { "size-garbage", "250-mx\r\n250 SIZE 10MB\r\n", OK, SMTP_EXT_SIZE, 0, 0 },
  { "size-saturates", "250-mx\r\n250 SIZE 99999999999999999999999\r\n", OK, SMTP_EXT_SIZE,
    G_MAXUINT64, 0 },
  { "size-max", "250-mx\r\n250 SIZE 18446744073709551615\r\n", OK, SMTP_EXT_SIZE, G_MAXUINT64, 0 },
  { "size-over-max", "250-mx\r\n250 SIZE 18446744073709551616\r\n", OK, SMTP_EXT_SIZE, G_MAXUINT64,
    0 },
  { "auth-mechanisms", "250-mx\r\n250 AUTH CRAM-MD5 LOGIN PLAIN\r\n", OK, SMTP_EXT_AUTH, 0,
    SMTP_AUTH_MECH_PLAIN | SMTP_AUTH_MECH_LOGIN },
  { "auth-equals-form", "250-mx\r\n250 AUTH=LOGIN\r\n", OK, SMTP_EXT_AUTH, 0,
    SMTP_AUTH_MECH_LOGIN },
  { "auth-both-forms", "250-mx\r\n250-AUTH PLAIN\r\n250 AUTH=LOGIN\r\n", OK, SMTP_EXT_AUTH, 0,
    SMTP_AUTH_MECH_PLAIN | SMTP_AUTH_MECH_LOGIN },
  { "auth-unknown-only", "250-mx\r\n250 AUTH CRAM-MD5 XOAUTH2\r\n", OK, SMTP_EXT_AUTH, 0, 0 },
  { "auth-mechanism-prefix", "250-mx\r\n250 AUTH PLAINX LOGINS\r\n", OK, SMTP_EXT_AUTH, 0, 0 },
  { "keyword-prefix-is-not-keyword", "250-mx\r\n250-8BITMIMEX\r\n250 DSNX\r\n", OK, 0, 0, 0 },
  { "keyword-with-junk", "250-mx\r\n250-PIPELINING;\r\n250 DSN\r\n", OK, SMTP_EXT_DSN, 0, 0 },
  { "not-a-keyword", "250-mx\r\n250--PIPELINING\r\n250 \r\n", OK, 0, 0, 0 },
  { "leading-space", "250-mx\r\n250  BINARYMIME\r\n", OK, SMTP_EXT_BINARYMIME, 0, 0 },
  { "unknown-keywords", "250-mx\r\n250-X-EXPS GSSAPI\r\n250-XCLIENT NAME\r\n250 ETRN\r\n", OK, 0, 0,
    0 },
  { "code-550", "550 5.7.1 go away\r\n", SMTP_OUT_ERROR_EHLO },
  { "code-421", "421 4.3.2 shutting down\r\n", SMTP_OUT_ERROR_EHLO },
  { "code-251", "251 odd\r\n", SMTP_OUT_ERROR_EHLO },
};

static void
test_ehlo_case (gconstpointer data)
{
  const EhloCase *c = data;
  g_autoptr (MailReply) r = reply (c->bytes);
  g_autoptr (GError) error = NULL;
  SmtpEhlo ehlo;

  /* garbage in the output must be cleared whatever happens */
  memset (&ehlo, 0xa5, sizeof ehlo);
  if (c->error != OK)
    {
      g_assert_false (smtp_ehlo_parse (r, &ehlo, &error));
      g_assert_error (error, SMTP_OUT_ERROR, c->error);
      g_assert_cmpuint (ehlo.ext, ==, 0);
      return;
    }
  g_assert_true (smtp_ehlo_parse (r, &ehlo, &error));
  g_assert_no_error (error);
  g_assert_cmphex (ehlo.ext, ==, c->ext);
  g_assert_cmpuint (ehlo.size_limit, ==, c->size);
  g_assert_cmphex (ehlo.auth, ==, c->auth);
}

/* ---- MAIL ---------------------------------------------------------------------- */

#define EXT_ALL                                                                                    \
  (SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 | SMTP_EXT_DSN | SMTP_EXT_CHUNKING        \
   | SMTP_EXT_BINARYMIME)

typedef struct
{
  const char *name;
  guint ext;
  SmtpOutMail mail;
  int error;
  const char *line;
} MailCase;

static const MailCase mail_cases[] = {
  { "plain", 0, { "a@b.example" }, OK, "MAIL FROM:<a@b.example>\r\n" },
  { "null-sender", EXT_ALL, { "" }, OK, "MAIL FROM:<>\r\n" },
  { "size-offered", SMTP_EXT_SIZE, { "a@b", 12345 }, OK, "MAIL FROM:<a@b> SIZE=12345\r\n" },
  { "size-not-offered", 0, { "a@b", 12345 }, OK, "MAIL FROM:<a@b>\r\n" },
  { "size-zero-not-sent", SMTP_EXT_SIZE, { "a@b", 0 }, OK, "MAIL FROM:<a@b>\r\n" },
  { "body-7bit-never-sent", EXT_ALL, { "a@b", 0, SMTP_BODY_7BIT }, OK, "MAIL FROM:<a@b>\r\n" },
  { "body-8bitmime",
    SMTP_EXT_8BITMIME,
    { "a@b", 0, SMTP_BODY_8BITMIME },
    OK,
    "MAIL FROM:<a@b> BODY=8BITMIME\r\n" },
  { "body-8bitmime-not-offered",
    SMTP_EXT_SIZE,
    { "a@b", 0, SMTP_BODY_8BITMIME },
    SMTP_OUT_ERROR_NEEDS_8BITMIME },
  { "body-binarymime",
    EXT_ALL,
    { "a@b", 0, SMTP_BODY_BINARYMIME },
    OK,
    "MAIL FROM:<a@b> BODY=BINARYMIME\r\n" },
  { "body-binarymime-without-chunking",
    SMTP_EXT_BINARYMIME,
    { "a@b", 0, SMTP_BODY_BINARYMIME },
    SMTP_OUT_ERROR_NEEDS_BINARYMIME },
  { "body-binarymime-without-binarymime",
    SMTP_EXT_CHUNKING | SMTP_EXT_8BITMIME,
    { "a@b", 0, SMTP_BODY_BINARYMIME },
    SMTP_OUT_ERROR_NEEDS_BINARYMIME },
  { "smtputf8-offered",
    SMTP_EXT_SMTPUTF8,
    { "a@b", 0, 0, TRUE },
    OK,
    "MAIL FROM:<a@b> SMTPUTF8\r\n" },
  /* asked for, not offered, ASCII sender: the caller decides (the header
   * may still need it); the command is sent without the keyword */
  { "smtputf8-not-offered-ascii", 0, { "a@b", 0, 0, TRUE }, OK, "MAIL FROM:<a@b>\r\n" },
  { "utf8-sender",
    SMTP_EXT_SMTPUTF8,
    { "j\xc3\xb6rg@b\xc3\xbc.example", 0, 0, TRUE },
    OK,
    "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc.example> SMTPUTF8\r\n" },
  { "utf8-sender-not-offered",
    SMTP_EXT_8BITMIME,
    { "j\xc3\xb6rg@b", 0, 0, TRUE },
    SMTP_OUT_ERROR_NEEDS_SMTPUTF8 },
  { "utf8-sender-not-asked", SMTP_EXT_SMTPUTF8, { "j\xc3\xb6rg@b" }, SMTP_OUT_ERROR_ADDRESS },
  { "bad-utf8-sender", SMTP_EXT_SMTPUTF8, { "j\xc3rg@b", 0, 0, TRUE }, SMTP_OUT_ERROR_ADDRESS },
  { "cr-in-sender", EXT_ALL, { "a\r@b" }, SMTP_OUT_ERROR_ADDRESS },
  { "crlf-command-in-sender", EXT_ALL, { "a@b>\r\nRCPT TO:<x@y" }, SMTP_OUT_ERROR_ADDRESS },
  { "lf-in-sender", EXT_ALL, { "a\n@b" }, SMTP_OUT_ERROR_ADDRESS },
  { "tab-in-sender", EXT_ALL, { "a\t@b" }, SMTP_OUT_ERROR_ADDRESS },
  { "del-in-sender", EXT_ALL, { "a\x7f@b" }, SMTP_OUT_ERROR_ADDRESS },
  { "dsn-ret-envid",
    SMTP_EXT_DSN,
    { "a@b", 0, 0, FALSE, SMTP_RET_HDRS, "q1 x+y=z" },
    OK,
    "MAIL FROM:<a@b> RET=HDRS ENVID=q1+20x+2By+3Dz\r\n" },
  { "dsn-ret-full",
    SMTP_EXT_DSN,
    { "a@b", 0, 0, FALSE, SMTP_RET_FULL },
    OK,
    "MAIL FROM:<a@b> RET=FULL\r\n" },
  { "dsn-not-offered",
    SMTP_EXT_SIZE,
    { "a@b", 7, 0, FALSE, SMTP_RET_HDRS, "id" },
    OK,
    "MAIL FROM:<a@b> SIZE=7\r\n" },
  { "envid-crlf-is-xtext",
    SMTP_EXT_DSN,
    { "a@b", 0, 0, FALSE, 0, "x\r\nQUIT" },
    OK,
    "MAIL FROM:<a@b> ENVID=x+0D+0AQUIT\r\n" },
  { "envid-empty", SMTP_EXT_DSN, { "a@b", 0, 0, FALSE, 0, "" }, SMTP_OUT_ERROR_PARAM },
  { "envid-101",
    SMTP_EXT_DSN,
    { "a@b", 0, 0, FALSE, 0,
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890" },
    SMTP_OUT_ERROR_PARAM },
  /* 34 '+' are 102 octets as xtext */
  { "envid-grows-over-limit",
    SMTP_EXT_DSN,
    { "a@b", 0, 0, FALSE, 0, "++++++++++++++++++++++++++++++++++" },
    SMTP_OUT_ERROR_PARAM },
  { "everything",
    EXT_ALL,
    { "a@b", 99, SMTP_BODY_8BITMIME, TRUE, SMTP_RET_FULL, "E" },
    OK,
    "MAIL FROM:<a@b> SIZE=99 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=E\r\n" },
};

static void
test_mail_case (gconstpointer data)
{
  const MailCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *line = NULL;
  SmtpEhlo ehlo = { c->ext, 0, 0 };

  line = smtp_out_mail_command (&ehlo, &c->mail, &error);
  if (c->error != OK)
    {
      g_assert_error (error, SMTP_OUT_ERROR, c->error);
      g_assert_null (line);
      return;
    }
  g_assert_no_error (error);
  g_assert_cmpstr (line, ==, c->line);
}

static void
test_mail_limits (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *local = g_strnfill (MAIL_MAX_LOCAL_PART, 'l');
  g_autofree char *longest = NULL;
  g_autofree char *too_long = NULL;
  g_autofree char *line = NULL;
  SmtpEhlo ehlo = { EXT_ALL, 0, 0 };
  SmtpOutMail mail = { 0 };
  gsize dlen;

  /* a path of MAIL_MAX_PATH octets with its brackets passes, one more
   * does not */
  dlen = MAIL_MAX_PATH - 2 - strlen (local) - 1;
  longest = g_strconcat (local, "@", NULL);
  {
    g_autofree char *dom = g_strnfill (dlen, 'd');
    g_autofree char *tmp = g_strconcat (longest, dom, NULL);
    g_free (longest);
    longest = g_steal_pointer (&tmp);
  }
  g_assert_cmpuint (strlen (longest), ==, MAIL_MAX_PATH - 2);
  mail.sender = longest;
  mail.size = G_MAXUINT64;
  mail.envid = "0123456789012345678901234567890123456789012345678901234567890123456789"
               "012345678901234567890123456789";
  mail.ret = SMTP_RET_HDRS;
  mail.body = SMTP_BODY_BINARYMIME;
  line = smtp_out_mail_command (&ehlo, &mail, &error);
  g_assert_no_error (error);
  g_assert_nonnull (line);
  g_assert_cmpuint (strlen (line), <=, SMTP_MAX_MAIL_LINE);
  g_assert_true (g_str_has_suffix (line, "\r\n"));

  too_long = g_strconcat (longest, "x", NULL);
  mail.sender = too_long;
  g_clear_pointer (&line, g_free);
  line = smtp_out_mail_command (&ehlo, &mail, &error);
  g_assert_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_ADDRESS);
  g_assert_null (line);
}

/* ---- RCPT ---------------------------------------------------------------------- */

typedef struct
{
  const char *name;
  guint ext;
  SmtpOutRcpt rcpt;
  gboolean smtputf8;
  int error;
  const char *line;
} RcptCase;

static const RcptCase rcpt_cases[] = {
  { "plain", 0, { "b@c.example" }, FALSE, OK, "RCPT TO:<b@c.example>\r\n" },
  { "postmaster", 0, { "postmaster" }, FALSE, OK, "RCPT TO:<postmaster>\r\n" },
  { "quoted-local", 0, { "\"john doe\"@c" }, FALSE, OK, "RCPT TO:<\"john doe\"@c>\r\n" },
  { "empty", EXT_ALL, { "" }, FALSE, SMTP_OUT_ERROR_ADDRESS },
  { "crlf", EXT_ALL, { "b@c>\r\nDATA" }, FALSE, SMTP_OUT_ERROR_ADDRESS },
  { "nul-control", EXT_ALL, { "b\x01@c" }, FALSE, SMTP_OUT_ERROR_ADDRESS },
  { "notify-one",
    SMTP_EXT_DSN,
    { "b@c", SMTP_NOTIFY_SUCCESS },
    FALSE,
    OK,
    "RCPT TO:<b@c> NOTIFY=SUCCESS\r\n" },
  { "notify-three",
    SMTP_EXT_DSN,
    { "b@c", SMTP_NOTIFY_DELAY | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_SUCCESS },
    FALSE,
    OK,
    "RCPT TO:<b@c> NOTIFY=SUCCESS,FAILURE,DELAY\r\n" },
  { "notify-never",
    SMTP_EXT_DSN,
    { "b@c", SMTP_NOTIFY_NEVER },
    FALSE,
    OK,
    "RCPT TO:<b@c> NOTIFY=NEVER\r\n" },
  { "notify-never-and-more",
    SMTP_EXT_DSN,
    { "b@c", SMTP_NOTIFY_NEVER | SMTP_NOTIFY_DELAY },
    FALSE,
    SMTP_OUT_ERROR_PARAM },
  { "notify-unknown-bit", SMTP_EXT_DSN, { "b@c", 1 << 7 }, FALSE, SMTP_OUT_ERROR_PARAM },
  { "orcpt",
    SMTP_EXT_DSN,
    { "b@c", 0, "rfc822;B+x=y@c" },
    FALSE,
    OK,
    "RCPT TO:<b@c> ORCPT=rfc822;B+2Bx+3Dy@c\r\n" },
  { "orcpt-crlf-is-xtext",
    SMTP_EXT_DSN,
    { "b@c", 0, "rfc822;a\r\nb@c" },
    FALSE,
    OK,
    "RCPT TO:<b@c> ORCPT=rfc822;a+0D+0Ab@c\r\n" },
  { "notify-and-orcpt",
    SMTP_EXT_DSN,
    { "b@c", SMTP_NOTIFY_FAILURE, "rfc822;b@c" },
    FALSE,
    OK,
    "RCPT TO:<b@c> NOTIFY=FAILURE ORCPT=rfc822;b@c\r\n" },
  { "dsn-not-offered",
    SMTP_EXT_SIZE | SMTP_EXT_PIPELINING,
    { "b@c", SMTP_NOTIFY_NEVER | SMTP_NOTIFY_DELAY, "no type" },
    FALSE,
    OK,
    "RCPT TO:<b@c>\r\n" },
  { "orcpt-no-type", SMTP_EXT_DSN, { "b@c", 0, ";b@c" }, FALSE, SMTP_OUT_ERROR_PARAM },
  { "orcpt-no-semicolon", SMTP_EXT_DSN, { "b@c", 0, "b@c" }, FALSE, SMTP_OUT_ERROR_PARAM },
  { "orcpt-no-address", SMTP_EXT_DSN, { "b@c", 0, "rfc822;" }, FALSE, SMTP_OUT_ERROR_PARAM },
  { "orcpt-type-not-atom", SMTP_EXT_DSN, { "b@c", 0, "rfc 822;b@c" }, FALSE, SMTP_OUT_ERROR_PARAM },
  { "utf8", SMTP_EXT_SMTPUTF8, { "\xc3\xa9@c" }, TRUE, OK, "RCPT TO:<\xc3\xa9@c>\r\n" },
  { "utf8-not-offered", SMTP_EXT_8BITMIME, { "\xc3\xa9@c" }, TRUE, SMTP_OUT_ERROR_NEEDS_SMTPUTF8 },
  { "utf8-without-smtputf8-mail",
    SMTP_EXT_SMTPUTF8,
    { "\xc3\xa9@c" },
    FALSE,
    SMTP_OUT_ERROR_ADDRESS },
};

static void
test_rcpt_case (gconstpointer data)
{
  const RcptCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *line = NULL;
  SmtpEhlo ehlo = { c->ext, 0, 0 };

  line = smtp_out_rcpt_command (&ehlo, &c->rcpt, c->smtputf8, &error);
  if (c->error != OK)
    {
      g_assert_error (error, SMTP_OUT_ERROR, c->error);
      g_assert_null (line);
      return;
    }
  g_assert_no_error (error);
  g_assert_cmpstr (line, ==, c->line);
}

static void
test_rcpt_limits (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *addr = g_strnfill (MAIL_MAX_PATH - 2, 'a');
  g_autofree char *orcpt = NULL;
  g_autofree char *big = NULL;
  g_autofree char *line = NULL;
  SmtpEhlo ehlo = { SMTP_EXT_DSN, 0, 0 };
  SmtpOutRcpt rcpt = { addr, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY };

  /* the longest ORCPT value allowed, with the longest address: under the
   * RCPT line limit */
  big = g_strnfill (MAIL_MAX_ESMTP_VALUE - strlen ("rfc822;"), 'o');
  orcpt = g_strconcat ("rfc822;", big, NULL);
  rcpt.orcpt = orcpt;
  line = smtp_out_rcpt_command (&ehlo, &rcpt, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (line), <=, SMTP_MAX_RCPT_LINE);

  /* one more octet of ORCPT is over MAIL_MAX_ESMTP_VALUE */
  g_free (orcpt);
  orcpt = g_strconcat ("rfc822;o", big, NULL);
  rcpt.orcpt = orcpt;
  g_clear_pointer (&line, g_free);
  line = smtp_out_rcpt_command (&ehlo, &rcpt, FALSE, &error);
  g_assert_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_PARAM);
  g_assert_null (line);
}

/* ---- AUTH ---------------------------------------------------------------------- */

static void
test_auth_plain (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *line = smtp_out_auth_plain ("user", "pass word", &error);
  g_autofree char *zid = NULL;
  g_autofree char *cid = NULL;
  g_autofree char *pw = NULL;
  g_autofree char *b64 = NULL;

  g_assert_no_error (error);
  /* base64 ("\0user\0pass word") */
  g_assert_cmpstr (line, ==, "AUTH PLAIN AHVzZXIAcGFzcyB3b3Jk\r\n");

  /* and what our server's decoder reads from it */
  b64 = g_strndup (line + strlen ("AUTH PLAIN "), strlen (line) - strlen ("AUTH PLAIN ") - 2);
  g_assert_true (smtp_sasl_plain_decode (b64, &zid, &cid, &pw, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (zid, ==, "");
  g_assert_cmpstr (cid, ==, "user");
  g_assert_cmpstr (pw, ==, "pass word");
}

static void
test_auth_errors (void)
{
  g_autofree char *max = g_strnfill (SMTP_MAX_SASL_FIELD, 'p');
  g_autofree char *over = g_strnfill (SMTP_MAX_SASL_FIELD + 1, 'p');
  const struct
  {
    const char *user, *password;
    int error;
  } cases[] = {
    { "", "x", SMTP_OUT_ERROR_CREDENTIALS },
    { "u", "", SMTP_OUT_ERROR_CREDENTIALS },
    { over, "x", SMTP_OUT_ERROR_CREDENTIALS },
    { "u", over, SMTP_OUT_ERROR_CREDENTIALS },
    { max, max, OK },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *line = smtp_out_auth_plain (cases[i].user, cases[i].password, &error);

      if (cases[i].error == OK)
        {
          g_assert_no_error (error);
          g_assert_cmpuint (strlen (line), <=, SMTP_MAX_AUTH_LINE);
        }
      else
        {
          g_assert_error (error, SMTP_OUT_ERROR, cases[i].error);
          g_assert_null (line);
        }
    }
}

static void
test_auth_login (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *user = smtp_out_auth_login_step ("user@example.org", &error);
  g_autofree char *field = NULL;
  g_autofree char *over = g_strnfill (SMTP_MAX_SASL_FIELD + 1, 'p');
  g_autofree char *bad = NULL;
  g_autofree char *empty = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (user, ==, "dXNlckBleGFtcGxlLm9yZw==\r\n");
  user[strlen (user) - 2] = '\0';
  field = smtp_sasl_base64_field (user, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (field, ==, "user@example.org");

  empty = smtp_out_auth_login_step ("", &error);
  g_assert_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_CREDENTIALS);
  g_assert_null (empty);
  g_clear_error (&error);
  bad = smtp_out_auth_login_step (over, &error);
  g_assert_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_CREDENTIALS);
  g_assert_null (bad);
}

static void
test_wipe (void)
{
  /* nothing to see from outside but that it frees (valgrind/ASan runs
   * check) and accepts NULL */
  smtp_out_wipe (g_strdup ("secret"));
  smtp_out_wipe (NULL);
}

/* ---- BDAT ---------------------------------------------------------------------- */

static void
test_bdat (void)
{
  g_autofree char *a = smtp_out_bdat_command (0, TRUE);
  g_autofree char *b = smtp_out_bdat_command (G_MAXUINT64, FALSE);

  g_assert_cmpstr (a, ==, "BDAT 0 LAST\r\n");
  g_assert_cmpstr (b, ==, "BDAT 18446744073709551615\r\n");
}

/* ---- 8-bit checks -------------------------------------------------------------- */

static void
test_8bit (void)
{
  static const struct
  {
    const char *data;
    gboolean header_utf8, any_8bit;
  } cases[] = {
    { "", FALSE, FALSE },
    { "Subject: hi\r\n\r\nbody\r\n", FALSE, FALSE },
    { "Subject: h\xc3\xa9\r\n\r\nbody\r\n", TRUE, TRUE },
    { "Subject: hi\r\n\r\nb\xc3\xa9\r\n", FALSE, TRUE },
    { "Subject: hi\n\nb\xc3\xa9\n", FALSE, TRUE },
    { "\r\nSubject: h\xc3\xa9\r\n", FALSE, TRUE },     /* empty header section */
    { "Subject: h\r\n \xc3\xa9\r\n\r\n", TRUE, TRUE }, /* folded */
    { "X: \r\r\n\xc3\xa9: y\r\n\r\n", TRUE, TRUE },    /* CR CR LF is no empty line */
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const guint8 *d = (const guint8 *)cases[i].data;
      gsize n = strlen (cases[i].data);

      g_assert_cmpint (smtp_out_header_is_utf8 (d, n), ==, cases[i].header_utf8);
      g_assert_cmpint (smtp_out_has_8bit (d, n), ==, cases[i].any_8bit);
    }
  g_assert_false (smtp_out_address_is_utf8 ("a@b"));
  g_assert_false (smtp_out_address_is_utf8 (""));
  g_assert_true (smtp_out_address_is_utf8 ("\xc3\xa9@b"));
}

/* ---- dot-stuffing -------------------------------------------------------------- */

typedef struct
{
  const char *name;
  const char *in;
  const char *out;
  const char *message; /* what a receiver stores: out without the end line */
} StuffCase;

static const StuffCase stuff_cases[] = {
  { "empty", "", ".\r\n", "" },
  { "one-line", "a\r\n", "a\r\n.\r\n", "a\r\n" },
  { "no-final-crlf", "a\r\nb", "a\r\nb\r\n.\r\n", "a\r\nb\r\n" },
  { "leading-dot", ".a\r\n", "..a\r\n.\r\n", ".a\r\n" },
  { "dot-line", "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n" },
  { "dots-inside", "a.b\r\n x.\r\n", "a.b\r\n x.\r\n.\r\n", "a.b\r\n x.\r\n" },
  { "two-dots", "..\r\n", "...\r\n.\r\n", "..\r\n" },
  { "dot-only-no-crlf", ".", "..\r\n.\r\n", ".\r\n" },
  { "bare-lf", "a\nb\n", "a\r\nb\r\n.\r\n", "a\r\nb\r\n" },
  { "bare-lf-dot", "a\n.\nb", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n" },
  { "bare-cr-dot", "a\r.\rb", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n" },
  { "smuggle-lf-dot-crlf", "a\n.\r\nMAIL FROM:<x>\r\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n",
    "a\r\n.\r\nMAIL FROM:<x>\r\n" },
  { "smuggle-crlf-dot-lf", "a\r\n.\nb\r\n", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n" },
  { "smuggle-cr-cr-lf", "a\r\n.\r\r\nb", "a\r\n..\r\n\r\nb\r\n.\r\n", "a\r\n.\r\n\r\nb\r\n" },
  { "final-cr", "a\r", "a\r\n.\r\n", "a\r\n" },
  { "lf-cr", "a\n\rb", "a\r\n\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n" },
  { "empty-lines", "\r\n\r\n", "\r\n\r\n.\r\n", "\r\n\r\n" },
  { "nul-and-8bit", "a\0\xff\r\n", "a\0\xff\r\n.\r\n", "a\0\xff\r\n" },
};

/* The test strings may hold a NUL: lengths from sizeof in the table would
 * be clumsy, so a NUL is only ever in the "nul-and-8bit" row and counted
 * by hand. */
static gsize
case_len (const StuffCase *c, const char *s)
{
  if (strcmp (c->name, "nul-and-8bit") == 0)
    return strlen (s) + 1 + strlen (s + strlen (s) + 1);
  return strlen (s);
}

static GByteArray *
stuff_pieces (const guint8 *in, gsize len, gsize piece)
{
  GByteArray *out = g_byte_array_new ();
  SmtpDotStuffer s;

  smtp_dot_stuffer_init (&s);
  for (gsize i = 0; i < len; i += piece)
    smtp_dot_stuffer_feed (&s, in + i, MIN (piece, len - i), out);
  smtp_dot_stuffer_finish (&s, out);
  g_assert_cmpuint (s.in_len, ==, len);
  g_assert_cmpuint (s.out_len, ==, out->len);
  return out;
}

static void
test_stuff_case (gconstpointer data)
{
  const StuffCase *c = data;
  gsize in_len = case_len (c, c->in);
  gsize out_len = case_len (c, c->out);
  gsize msg_len = case_len (c, c->message);

  /* whole, in two pieces at every split point, and byte by byte */
  for (gsize piece = 1; piece <= MAX (in_len, 1); piece++)
    {
      g_autoptr (GByteArray) out = stuff_pieces ((const guint8 *)c->in, in_len, piece);

      g_assert_cmpmem (out->data, out->len, c->out, out_len);
    }
  for (gsize split = 0; split <= in_len; split++)
    {
      g_autoptr (GByteArray) out = g_byte_array_new ();
      SmtpDotStuffer s;

      smtp_dot_stuffer_init (&s);
      smtp_dot_stuffer_feed (&s, (const guint8 *)c->in, split, out);
      smtp_dot_stuffer_feed (&s, (const guint8 *)c->in + split, in_len - split, out);
      smtp_dot_stuffer_finish (&s, out);
      g_assert_cmpmem (out->data, out->len, c->out, out_len);
    }

  /* our server's DATA decoder (strict on bare line ends) reads the message
   * back and sees the end exactly at the end */
  {
    g_autoptr (GByteArray) out = stuff_pieces ((const guint8 *)c->in, in_len, in_len + 1);
    g_autoptr (GByteArray) msg = g_byte_array_new ();
    SmtpDataDecoder dec;
    gsize consumed = 0;

    smtp_data_decoder_init (&dec);
    dec.bare = SMTP_BARE_REJECT;
    g_assert_cmpint (smtp_data_decoder_feed (&dec, out->data, out->len, msg, &consumed), ==,
                     SMTP_DATA_END);
    g_assert_cmpuint (consumed, ==, out->len);
    g_assert_cmpmem (msg->data, msg->len, c->message, msg_len);
  }
}

static void
test_stuff_large (void)
{
  /* a pseudo-random message of CR, LF, '.', and letters survives the trip
   * through the server decoder in uneven pieces */
  static const char alphabet[] = "\r\n..ab";
  g_autoptr (GByteArray) in = g_byte_array_new ();
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GByteArray) msg = g_byte_array_new ();
  g_autoptr (GRand) rand = g_rand_new_with_seed (5321);
  SmtpDotStuffer s;
  SmtpDataDecoder dec;
  gsize consumed = 0;
  gsize i = 0;

  for (gsize n = 0; n < 100000; n++)
    {
      guint8 c = (guint8)alphabet[g_rand_int_range (rand, 0, sizeof alphabet - 1)];
      g_byte_array_append (in, &c, 1);
    }
  smtp_dot_stuffer_init (&s);
  while (i < in->len)
    {
      /* MIN() evaluates its arguments twice: draw the number first */
      gsize piece = (gsize)g_rand_int_range (rand, 1, 700);

      piece = MIN (piece, in->len - i);
      smtp_dot_stuffer_feed (&s, in->data + i, piece, out);
      i += piece;
    }
  smtp_dot_stuffer_finish (&s, out);
  g_assert_cmpuint (s.in_len, ==, in->len);

  smtp_data_decoder_init (&dec);
  dec.bare = SMTP_BARE_REJECT;
  g_assert_cmpint (smtp_data_decoder_feed (&dec, out->data, out->len, msg, &consumed), ==,
                   SMTP_DATA_END);
  g_assert_cmpuint (consumed, ==, out->len);
  /* the message has the same lines, with every line end now CRLF */
  {
    g_autoptr (GByteArray) norm = g_byte_array_new ();
    for (gsize k = 0; k < in->len; k++)
      {
        if (in->data[k] == '\r' && k + 1 < in->len && in->data[k + 1] == '\n')
          continue; /* the LF writes the CRLF */
        if (in->data[k] == '\r' || in->data[k] == '\n')
          g_byte_array_append (norm, (const guint8 *)"\r\n", 2);
        else
          g_byte_array_append (norm, in->data + k, 1);
      }
    if (norm->len < 2 || memcmp (norm->data + norm->len - 2, "\r\n", 2) != 0)
      g_byte_array_append (norm, (const guint8 *)"\r\n", 2);
    g_assert_cmpmem (msg->data, msg->len, norm->data, norm->len);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (ehlo_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/smtp/out/ehlo/%s", ehlo_cases[i].name);
      g_test_add_data_func (path, &ehlo_cases[i], test_ehlo_case);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (mail_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/smtp/out/mail/%s", mail_cases[i].name);
      g_test_add_data_func (path, &mail_cases[i], test_mail_case);
    }
  g_test_add_func ("/proto/smtp/out/mail/limits", test_mail_limits);
  for (gsize i = 0; i < G_N_ELEMENTS (rcpt_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/smtp/out/rcpt/%s", rcpt_cases[i].name);
      g_test_add_data_func (path, &rcpt_cases[i], test_rcpt_case);
    }
  g_test_add_func ("/proto/smtp/out/rcpt/limits", test_rcpt_limits);
  g_test_add_func ("/proto/smtp/out/auth/plain", test_auth_plain);
  g_test_add_func ("/proto/smtp/out/auth/errors", test_auth_errors);
  g_test_add_func ("/proto/smtp/out/auth/login", test_auth_login);
  g_test_add_func ("/proto/smtp/out/auth/wipe", test_wipe);
  g_test_add_func ("/proto/smtp/out/bdat", test_bdat);
  g_test_add_func ("/proto/smtp/out/8bit", test_8bit);
  for (gsize i = 0; i < G_N_ELEMENTS (stuff_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/smtp/out/dot-stuff/%s", stuff_cases[i].name);
      g_test_add_data_func (path, &stuff_cases[i], test_stuff_case);
    }
  g_test_add_func ("/proto/smtp/out/dot-stuff/large-random", test_stuff_large);
  return g_test_run ();
}
