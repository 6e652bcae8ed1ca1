/* SPDX-License-Identifier: MIT
 *
 * test-mail-param.c — ESMTP parameters and xtext (proto/mail/mail-param.h).
 *
 * Every malformed family asserts its exact MAIL_ERROR code; xtext must never
 * decode to CR, LF, NUL or another control character (CVE-2020-28026).
 */
#include <string.h>

#include "proto/mail/mail-address.h"
#include "proto/mail/mail-param.h"

#define OK (-1)

typedef struct
{
  const char *name;
  const char *input;
  gssize len; /* 0: strlen */
  guint flags;
  int error;
  guint n;              /* parameters when OK */
  const char *rendered; /* mail_params_to_string when OK */
} ParamCase;

static const ParamCase param_cases[] = {
  { "classic", "SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=x+2By", 0, 0, OK, 4,
    "SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=x+2By" },
  { "no-value", "SMTPUTF8", 0, 0, OK, 1, "SMTPUTF8" },
  { "empty", "", 0, 0, OK, 0, "" },
  { "blank", "   ", 0, 0, OK, 0, "" },
  { "extra-spaces", "  SIZE=1   BODY=7BIT ", 0, 0, OK, 2, "SIZE=1 BODY=7BIT" },
  { "orcpt", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+40example.org", 0, 0, OK, 2,
    "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+40example.org" },
  { "keyword-digit-hyphen", "X-1=a 9Z=b", 0, 0, OK, 2, "X-1=a 9Z=b" },
  { "utf8-value", "ORCPT=utf-8;jos\xc3\xa9@x.example", 0, MAIL_PARSE_SMTPUTF8, OK, 1,
    "ORCPT=utf-8;jos\xc3\xa9@x.example" },

  { "keyword-empty", "=x", 0, 0, MAIL_ERROR_PARAM_KEYWORD },
  { "keyword-leading-hyphen", "-X=1", 0, 0, MAIL_ERROR_PARAM_KEYWORD },
  { "keyword-underscore", "SI_ZE=1", 0, 0, MAIL_ERROR_PARAM_KEYWORD },
  { "keyword-punct", "SIZE;=1", 0, 0, MAIL_ERROR_PARAM_KEYWORD },
  { "value-empty", "SIZE=", 0, 0, MAIL_ERROR_PARAM_VALUE },
  { "value-equals", "A=b=c", 0, 0, MAIL_ERROR_PARAM_VALUE },
  { "duplicate", "SIZE=1 size=2", 0, 0, MAIL_ERROR_PARAM_DUPLICATE },
  { "duplicate-novalue", "SMTPUTF8 SMTPUTF8", 0, 0, MAIL_ERROR_PARAM_DUPLICATE },
  { "cr", "ENVID=a\rb", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "crlf-injection", "SIZE=1\r\nRCPT TO:<x@y>", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "nul", "SIZE=1\0BODY=7BIT", 16, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "tab", "SIZE=1\tBODY=7BIT", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "utf8-without-flag", "ORCPT=utf-8;jos\xc3\xa9@x.example", 0, 0, MAIL_ERROR_UTF8_NOT_ALLOWED },
  { "invalid-utf8", "ENVID=\xff\xfe", 0, MAIL_PARSE_SMTPUTF8, MAIL_ERROR_INVALID_UTF8 },
};

static void
test_param_case (gconstpointer data)
{
  const ParamCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (MailParams) p
      = mail_params_parse (c->input, c->len != 0 ? c->len : -1, c->flags, &error);
  g_autofree char *s = NULL;

  if (c->error != OK)
    {
      g_assert_error (error, MAIL_ERROR, c->error);
      g_assert_null (p);
      return;
    }
  g_assert_no_error (error);
  g_assert_cmpuint (mail_params_get_n (p), ==, c->n);
  s = mail_params_to_string (p);
  g_assert_cmpstr (s, ==, c->rendered);
}

static void
test_param_lookup (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MailParams) p = mail_params_parse ("Size=1000 SMTPUTF8 ENVID=x+2By", -1, 0, &error);
  g_autoptr (MailParams) copy = NULL;
  const char *value = "sentinel";

  g_assert_no_error (error);
  g_assert_cmpstr (mail_params_get_keyword (p, 0), ==, "Size");
  g_assert_cmpstr (mail_params_get_value (p, 0), ==, "1000");
  g_assert_cmpstr (mail_params_get (p, "SIZE"), ==, "1000");
  g_assert_cmpstr (mail_params_get (p, "size"), ==, "1000");
  g_assert_true (mail_params_lookup (p, "smtputf8", &value));
  g_assert_null (value);
  g_assert_null (mail_params_get_value (p, 1));
  g_assert_false (mail_params_lookup (p, "BODY", &value));
  g_assert_null (mail_params_get (p, "BODY"));
  g_assert_cmpstr (mail_params_get (p, "ENVID"), ==, "x+2By");

  copy = mail_params_copy (p);
  g_assert_cmpuint (mail_params_get_n (copy), ==, 3);
  g_assert_cmpstr (mail_params_get (copy, "envid"), ==, "x+2By");
}

static void
test_param_limits (void)
{
  g_autoptr (GString) many = g_string_new (NULL);
  g_autoptr (GString) max = g_string_new (NULL);
  g_autofree char *kw32 = g_strnfill (MAIL_MAX_ESMTP_KEYWORD, 'K');
  g_autofree char *kw33 = g_strnfill (MAIL_MAX_ESMTP_KEYWORD + 1, 'K');
  g_autofree char *v500 = g_strnfill (MAIL_MAX_ESMTP_VALUE, 'v');
  g_autofree char *v501 = g_strnfill (MAIL_MAX_ESMTP_VALUE + 1, 'v');
  g_autofree char *huge = g_strnfill (MAIL_MAX_ESMTP_PARAMS_LEN + 1, 'A');
  struct
  {
    char *input;
    int error;
  } cases[] = {
    { g_strconcat (kw32, "=1", NULL), OK },
    { g_strconcat (kw33, "=1", NULL), MAIL_ERROR_PARAM_TOO_LONG },
    { g_strconcat ("ENVID=", v500, NULL), OK },
    { g_strconcat ("ENVID=", v501, NULL), MAIL_ERROR_PARAM_TOO_LONG },
    { g_strdup (huge), MAIL_ERROR_PARAM_TOO_LONG },
  };

  for (int i = 0; i < MAIL_MAX_ESMTP_PARAMS; i++)
    g_string_append_printf (max, "P%d=x ", i);
  g_string_append (many, max->str);
  g_string_append (many, "ONEMORE=x");

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MailParams) p = mail_params_parse (cases[i].input, -1, 0, &error);

      if (cases[i].error == OK)
        g_assert_no_error (error);
      else
        {
          g_assert_error (error, MAIL_ERROR, cases[i].error);
          g_assert_null (p);
        }
      g_free (cases[i].input);
    }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (MailParams) p = mail_params_parse (max->str, -1, 0, &error);

    g_assert_no_error (error);
    g_assert_cmpuint (mail_params_get_n (p), ==, MAIL_MAX_ESMTP_PARAMS);
  }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (MailParams) p = mail_params_parse (many->str, -1, 0, &error);

    g_assert_error (error, MAIL_ERROR, MAIL_ERROR_TOO_MANY_PARAMS);
    g_assert_null (p);
  }
}

static void
test_param_argv (void)
{
  static const char *const good[] = { "SIZE=10", "BODY=8BITMIME", NULL };
  static const char *const space[] = { "SIZE=1 BODY=7BIT", NULL };
  static const char *const empty[] = { "", NULL };
  static const char *const crlf[] = { "ENVID=a\r\nb", NULL };
  static const char *const dup[] = { "SIZE=1", "SIZE=2", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (MailParams) p = mail_params_parse_argv (good, 0, &error);
  g_autoptr (MailParams) none = NULL;

  g_assert_no_error (error);
  g_assert_cmpuint (mail_params_get_n (p), ==, 2);
  g_assert_cmpstr (mail_params_get (p, "body"), ==, "8BITMIME");

  none = mail_params_parse_argv (NULL, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mail_params_get_n (none), ==, 0);

  g_assert_null (mail_params_parse_argv (space, 0, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_VALUE);
  g_clear_error (&error);
  g_assert_null (mail_params_parse_argv (empty, 0, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_KEYWORD);
  g_clear_error (&error);
  g_assert_null (mail_params_parse_argv (crlf, 0, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR);
  g_clear_error (&error);
  g_assert_null (mail_params_parse_argv (dup, 0, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_DUPLICATE);
}

typedef struct
{
  const char *name;
  const char *input;
  gssize len;
  int error;
  const char *decoded;
} XtextCase;

static const XtextCase xtext_cases[] = {
  { "plain", "abc", 0, OK, "abc" },
  { "plus", "x+2By", 0, OK, "x+y" },
  { "hex-pair", "+41+42", 0, OK, "AB" },
  { "lower-hex", "+2b+3d", 0, OK, "+=" },
  { "space", "a+20b", 0, OK, "a b" },
  { "empty", "", 0, OK, "" },
  { "crlf", "a+0D+0Ab", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "lf", "+0a", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "nul", "a+00", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "del", "+7F", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "esc", "+1B[2J", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "raw-cr", "a\rb", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "raw-nul", "a\0b", 3, MAIL_ERROR_FORBIDDEN_CHAR },
  { "8bit-decoded", "+C3+A9", 0, MAIL_ERROR_XTEXT },
  { "8bit-raw", "\xc3\xa9", 0, MAIL_ERROR_XTEXT },
  { "short-escape", "+4", 0, MAIL_ERROR_XTEXT },
  { "bare-plus", "a+", 0, MAIL_ERROR_XTEXT },
  { "bad-hex", "+GG", 0, MAIL_ERROR_XTEXT },
  { "raw-equals", "a=b", 0, MAIL_ERROR_XTEXT },
  { "raw-space", "a b", 0, MAIL_ERROR_XTEXT },
};

static void
test_xtext_case (gconstpointer data)
{
  const XtextCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *out = mail_xtext_decode (c->input, c->len != 0 ? c->len : -1, &error);

  if (c->error != OK)
    {
      g_assert_error (error, MAIL_ERROR, c->error);
      g_assert_null (out);
      return;
    }
  g_assert_no_error (error);
  g_assert_cmpstr (out, ==, c->decoded);
}

static void
test_xtext_encode (void)
{
  g_autofree char *e1 = mail_xtext_encode ("a+b=c d", -1);
  g_autofree char *e2 = mail_xtext_encode ("\r\n\0", 3);
  g_autoptr (GString) printable = g_string_new (NULL);
  g_autofree char *enc = NULL;
  g_autofree char *dec = NULL;
  g_autoptr (GError) error = NULL;

  g_assert_cmpstr (e1, ==, "a+2Bb+3Dc+20d");
  g_assert_cmpstr (e2, ==, "+0D+0A+00");
  /* and the decoder refuses what the encoder had to escape */
  g_assert_null (mail_xtext_decode (e2, -1, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR);
  g_clear_error (&error);

  for (int c = 0x20; c < 0x7f; c++)
    g_string_append_c (printable, (char)c);
  enc = mail_xtext_encode (printable->str, -1);
  for (const char *p = enc; *p != '\0'; p++)
    g_assert_true (*p > ' ' && *p < 0x7f && *p != '=');
  dec = mail_xtext_decode (enc, -1, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (dec, ==, printable->str);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (param_cases); i++)
    {
      const ParamCase *c = &param_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/mail/param/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_param_case);
    }
  g_test_add_func ("/proto/mail/param/lookup", test_param_lookup);
  g_test_add_func ("/proto/mail/param/limits", test_param_limits);
  g_test_add_func ("/proto/mail/param/argv", test_param_argv);
  for (gsize i = 0; i < G_N_ELEMENTS (xtext_cases); i++)
    {
      const XtextCase *c = &xtext_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/mail/xtext/decode/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_xtext_case);
    }
  g_test_add_func ("/proto/mail/xtext/encode", test_xtext_encode);
  return g_test_run ();
}
