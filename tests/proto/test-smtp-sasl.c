/* SPDX-License-Identifier: MIT
 *
 * test-smtp-sasl.c — SASL PLAIN and LOGIN encodings (proto/smtp/smtp.h).
 *
 * g_base64_decode() accepts garbage without a word, so each way base64 can
 * be malformed (length, alphabet, padding place, pad bits, whitespace) is a
 * row asserting SMTP_ERROR_BAD_BASE64; each way a PLAIN message can be
 * malformed (missing field, NUL in the password, empty or over-long
 * fields, control characters or bad UTF-8 in identities) asserts
 * SMTP_ERROR_SYNTAX.  Valid responses are built with g_base64_encode so the
 * expected values are plain text.
 */
#include <string.h>

#include "proto/smtp/smtp.h"

#define OK (-1)

typedef struct
{
  const char *name;
  const char *b64;
  int error;
} B64Case;

/* Malformed base64: the same verdict from PLAIN and from a LOGIN field. */
static const B64Case b64_cases[] = {
  { "length-1", "Y", SMTP_ERROR_BAD_BASE64 },
  { "length-3", "YWJ", SMTP_ERROR_BAD_BASE64 },
  { "length-5", "YWJjZ", SMTP_ERROR_BAD_BASE64 },
  { "bad-char", "YW!j", SMTP_ERROR_BAD_BASE64 },
  { "url-alphabet", "YW-_", SMTP_ERROR_BAD_BASE64 },
  { "space-inside", "YW Jj", SMTP_ERROR_BAD_BASE64 },
  { "leading-space", " YWJj", SMTP_ERROR_BAD_BASE64 },
  { "trailing-newline", "YWJj\n", SMTP_ERROR_BAD_BASE64 },
  { "crlf-inside", "YW\r\nJjZA==", SMTP_ERROR_BAD_BASE64 },
  { "pad-in-middle", "YQ==YWJj", SMTP_ERROR_BAD_BASE64 },
  { "pad-then-char", "YW=j", SMTP_ERROR_BAD_BASE64 },
  { "three-pads", "Y===", SMTP_ERROR_BAD_BASE64 },
  { "four-pads", "====", SMTP_ERROR_BAD_BASE64 },
  { "pad-first", "=YWJ", SMTP_ERROR_BAD_BASE64 },
  /* "YR==" and "YWJ=" would decode to "a" and "ab" with stray bits */
  { "nonzero-pad-bits-2", "YR==", SMTP_ERROR_BAD_BASE64 },
  { "nonzero-pad-bits-1", "YWJ=", SMTP_ERROR_BAD_BASE64 },
  { "eight-bit", "YW\xc3\xa9", SMTP_ERROR_BAD_BASE64 },
};

static void
test_b64_case (gconstpointer data)
{
  const B64Case *c = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *zid = NULL;
  g_autofree char *cid = NULL;
  g_autofree char *pw = NULL;
  g_autofree char *field = NULL;

  g_assert_false (smtp_sasl_plain_decode (c->b64, &zid, &cid, &pw, &error));
  g_assert_error (error, SMTP_ERROR, c->error);
  g_assert_null (zid);
  g_assert_null (cid);
  g_assert_null (pw);
  g_clear_error (&error);
  field = smtp_sasl_base64_field (c->b64, &error);
  g_assert_error (error, SMTP_ERROR, c->error);
  g_assert_null (field);
}

typedef struct
{
  const char *name;
  const char *raw; /* decoded PLAIN message */
  gsize raw_len;
  int error;
  const char *authzid;
  const char *authcid;
  const char *password;
} PlainCase;

#define RAW(s) s, sizeof (s) - 1

static const PlainCase plain_cases[] = {
  { "no-authzid", RAW ("\0user\0secret"), OK, "", "user", "secret" },
  { "authzid", RAW ("admin\0user\0secret"), OK, "admin", "user", "secret" },
  { "utf8-user", RAW ("\0jos\xc3\xa9\0p"), OK, "", "jos\xc3\xa9", "p" },
  { "latin1-password", RAW ("\0user\0caf\xe9"), OK, "", "user", "caf\xe9" },
  { "password-with-space", RAW ("\0user\0a b\tc"), OK, "", "user", "a b\tc" },
  { "no-nul", RAW ("usersecret"), SMTP_ERROR_SYNTAX },
  { "one-nul", RAW ("user\0secret"), SMTP_ERROR_SYNTAX },
  { "nul-in-password", RAW ("\0user\0sec\0ret"), SMTP_ERROR_SYNTAX },
  { "trailing-nul", RAW ("\0user\0secret\0"), SMTP_ERROR_SYNTAX },
  { "empty-authcid", RAW ("admin\0\0secret"), SMTP_ERROR_SYNTAX },
  { "empty-password", RAW ("\0user\0"), SMTP_ERROR_SYNTAX },
  { "only-nuls", RAW ("\0\0"), SMTP_ERROR_SYNTAX },
  { "empty", RAW (""), SMTP_ERROR_SYNTAX },
  { "crlf-in-user", RAW ("\0us\r\ner\0secret"), SMTP_ERROR_SYNTAX },
  { "escape-in-authzid", RAW ("\x1b[2J\0user\0secret"), SMTP_ERROR_SYNTAX },
  { "bad-utf8-user", RAW ("\0us\xff\0secret"), SMTP_ERROR_SYNTAX },
};

static void
test_plain_case (gconstpointer data)
{
  const PlainCase *c = data;
  g_autofree char *b64 = g_base64_encode ((const guchar *)c->raw, c->raw_len);
  g_autoptr (GError) error = NULL;
  g_autofree char *zid = NULL;
  g_autofree char *cid = NULL;
  g_autofree char *pw = NULL;
  gboolean ok = smtp_sasl_plain_decode (b64, &zid, &cid, &pw, &error);

  if (c->error != OK)
    {
      g_assert_error (error, SMTP_ERROR, c->error);
      g_assert_false (ok);
      g_assert_null (cid);
      g_assert_null (pw);
      return;
    }
  g_assert_no_error (error);
  g_assert_true (ok);
  g_assert_cmpstr (zid, ==, c->authzid);
  g_assert_cmpstr (cid, ==, c->authcid);
  g_assert_cmpstr (pw, ==, c->password);
}

static void
test_plain_limits (void)
{
  g_autofree char *f255 = g_strnfill (SMTP_MAX_SASL_FIELD, 'f');
  g_autofree char *f256 = g_strnfill (SMTP_MAX_SASL_FIELD + 1, 'f');
  struct
  {
    const char *zid, *cid, *pw;
    int error;
  } cases[] = {
    { f255, f255, f255, OK },
    { f256, "u", "p", SMTP_ERROR_SYNTAX },
    { "", f256, "p", SMTP_ERROR_SYNTAX },
    { "", "u", f256, SMTP_ERROR_SYNTAX },
    /* the decoded size is within 3 fields + 2 NULs, yet one field is over */
    { "", f256, f255, SMTP_ERROR_SYNTAX },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GString) raw = g_string_new (cases[i].zid);
      g_autofree char *b64 = NULL;
      g_autoptr (GError) error = NULL;
      g_autofree char *zid = NULL;
      g_autofree char *cid = NULL;
      g_autofree char *pw = NULL;
      gboolean ok;

      g_string_append_c (raw, '\0');
      g_string_append (raw, cases[i].cid);
      g_string_append_c (raw, '\0');
      g_string_append (raw, cases[i].pw);
      b64 = g_base64_encode ((const guchar *)raw->str, raw->len);
      ok = smtp_sasl_plain_decode (b64, &zid, &cid, &pw, &error);
      if (cases[i].error == OK)
        {
          g_assert_no_error (error);
          g_assert_true (ok);
          g_assert_cmpstr (zid, ==, cases[i].zid);
          g_assert_cmpstr (cid, ==, cases[i].cid);
          g_assert_cmpstr (pw, ==, cases[i].pw);
        }
      else
        {
          g_assert_error (error, SMTP_ERROR, cases[i].error);
          g_assert_false (ok);
        }
    }

  /* far over any PLAIN message: refused before decoding */
  {
    g_autofree char *huge = g_strnfill (SMTP_MAX_AUTH_LINE, 'A');
    g_autoptr (GError) error = NULL;
    g_autofree char *cid = NULL;
    g_autofree char *pw = NULL;

    g_assert_false (smtp_sasl_plain_decode (huge, NULL, &cid, &pw, &error));
    g_assert_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX);
  }
}

static void
test_plain_special (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *cid = NULL;
  g_autofree char *pw = NULL;

  /* "=" is RFC 4954's empty response: no fields */
  g_assert_false (smtp_sasl_plain_decode ("=", NULL, &cid, &pw, &error));
  g_assert_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX);
  g_clear_error (&error);
  g_assert_false (smtp_sasl_plain_decode ("", NULL, &cid, &pw, &error));
  g_assert_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX);
  g_clear_error (&error);

  /* authzid is optional for the caller; RFC 4616's example */
  g_assert_true (
      smtp_sasl_plain_decode ("AHRpbQB0YW5zdGFhbmZ0YW5zdGFhbmY=", NULL, &cid, &pw, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (cid, ==, "tim");
  g_assert_cmpstr (pw, ==, "tanstaanftanstaanf");
}

static void
test_field (void)
{
  static const struct
  {
    const char *b64;
    int error;
    const char *value;
  } cases[] = {
    { "dXNlcm5hbWU=", OK, "username" }, /* RFC 4954-era LOGIN exchange */
    { "VXNlcm5hbWU6", OK, "Username:" },
    { "YWI=", OK, "ab" },
    { "YQ==", OK, "a" },
    { "YWJj", OK, "abc" },
    { "", OK, "" },
    { "=", OK, "" },
    { "AA==", SMTP_ERROR_SYNTAX },  /* a NUL */
    { "YQBi", SMTP_ERROR_SYNTAX },  /* "a\0b" */
    { "*", SMTP_ERROR_BAD_BASE64 }, /* the cancel answer is the session's job */
  };
  g_autofree char *f255 = g_strnfill (SMTP_MAX_SASL_FIELD, 'f');
  g_autofree char *f256 = g_strnfill (SMTP_MAX_SASL_FIELD + 1, 'f');
  g_autofree char *b255 = g_base64_encode ((const guchar *)f255, strlen (f255));
  g_autofree char *b256 = g_base64_encode ((const guchar *)f256, strlen (f256));
  g_autoptr (GError) error = NULL;
  g_autofree char *v255 = NULL;
  g_autofree char *v256 = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) e = NULL;
      g_autofree char *v = smtp_sasl_base64_field (cases[i].b64, &e);

      if (cases[i].error == OK)
        {
          g_assert_no_error (e);
          g_assert_cmpstr (v, ==, cases[i].value);
        }
      else
        {
          g_assert_error (e, SMTP_ERROR, cases[i].error);
          g_assert_null (v);
        }
    }
  v255 = smtp_sasl_base64_field (b255, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (v255, ==, f255);
  v256 = smtp_sasl_base64_field (b256, &error);
  g_assert_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX);
  g_assert_null (v256);
}

/* Our validator accepts exactly what an RFC 4648 encoder produces: every
 * g_base64_encode output decodes back to its input. */
static void
test_field_round_trip (void)
{
  for (guint n = 0; n < 500; n++)
    {
      gsize len = (gsize)g_test_rand_int_range (0, SMTP_MAX_SASL_FIELD + 1);
      g_autofree guchar *raw = g_malloc (len + 1);
      g_autofree char *b64 = NULL;
      g_autofree char *back = NULL;
      g_autoptr (GError) error = NULL;

      for (gsize i = 0; i < len; i++)
        raw[i] = (guchar)g_test_rand_int_range (1, 256);
      b64 = g_base64_encode (raw, len);
      back = smtp_sasl_base64_field (b64, &error);
      g_assert_no_error (error);
      g_assert_cmpmem (back, strlen (back), raw, len);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (b64_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/smtp/sasl/base64/%s", b64_cases[i].name);

      g_test_add_data_func (path, &b64_cases[i], test_b64_case);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (plain_cases); i++)
    {
      const PlainCase *c = &plain_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/smtp/sasl/plain/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_plain_case);
    }
  g_test_add_func ("/proto/smtp/sasl/plain/limits", test_plain_limits);
  g_test_add_func ("/proto/smtp/sasl/plain/special", test_plain_special);
  g_test_add_func ("/proto/smtp/sasl/login/field", test_field);
  g_test_add_func ("/proto/smtp/sasl/login/round-trip", test_field_round_trip);
  return g_test_run ();
}
