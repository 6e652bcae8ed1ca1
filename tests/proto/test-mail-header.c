/* SPDX-License-Identifier: MIT
 *
 * test-mail-header.c — header names, values, folding (proto/mail/mail-header.h).
 *
 * Folding is checked by its properties on every output (line widths,
 * continuation lines start with WSP, no whitespace-only line, no CR/LF
 * except the inserted ones) and by unfolding back to the exact value.
 */
#include <string.h>

#include "proto/mail/mail-header.h"

#define OK (-1)

typedef struct
{
  const char *name;
  const char *input;
  gssize len; /* 0: strlen */
  int error;
} CheckCase;

static const CheckCase name_cases[] = {
  { "simple", "Subject", 0, OK },
  { "x-header", "X-Spam-Status", 0, OK },
  { "one-char", "x", 0, OK },
  { "punct", "X!#$%&'*+-.^_`|~", 0, OK },
  { "empty", "", 0, MAIL_ERROR_HEADER_NAME },
  { "space", "X Spam", 0, MAIL_ERROR_HEADER_NAME },
  { "colon", "X:Spam", 0, MAIL_ERROR_HEADER_NAME },
  { "tab", "X\tSpam", 0, MAIL_ERROR_HEADER_NAME },
  { "crlf-injection", "X\r\nBcc", 0, MAIL_ERROR_HEADER_NAME },
  { "lf", "X\n", 0, MAIL_ERROR_HEADER_NAME },
  { "nul", "X\0Y", 3, MAIL_ERROR_HEADER_NAME },
  { "del", "X\x7f", 0, MAIL_ERROR_HEADER_NAME },
  { "8bit",
    "S\xc3\xbc"
    "bject",
    0, MAIL_ERROR_HEADER_NAME },
};

static const CheckCase value_cases[] = {
  { "simple", "hello world", 0, OK },
  { "empty", "", 0, OK },
  { "tab", "a\tb", 0, OK },
  { "utf8", "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c", 0, OK },
  { "encoded-word", "=?UTF-8?B?aMOpbGxv?=", 0, OK },
  { "cr", "a\rb", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "lf", "a\nb", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "crlf-injection", "x\r\nBcc: victim@example.org", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "folded", "a\r\n b", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "nul", "a\0b", 3, MAIL_ERROR_FORBIDDEN_CHAR },
  { "esc", "a\x1b[2J", 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "c1",
    "a\xc2\x9b"
    "b",
    0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "invalid-utf8", "a\xff", 0, MAIL_ERROR_INVALID_UTF8 },
  { "latin1", "caf\xe9", 0, MAIL_ERROR_INVALID_UTF8 },
};

static void
test_name_case (gconstpointer data)
{
  const CheckCase *c = data;
  g_autoptr (GError) error = NULL;
  gboolean ok = mail_header_name_check (c->input, c->len != 0 ? c->len : -1, &error);

  if (c->error == OK)
    {
      g_assert_no_error (error);
      g_assert_true (ok);
    }
  else
    {
      g_assert_error (error, MAIL_ERROR, c->error);
      g_assert_false (ok);
    }
}

static void
test_value_case (gconstpointer data)
{
  const CheckCase *c = data;
  g_autoptr (GError) error = NULL;
  gboolean ok = mail_header_value_check (c->input, c->len != 0 ? c->len : -1, &error);

  if (c->error == OK)
    {
      g_assert_no_error (error);
      g_assert_true (ok);
    }
  else
    {
      g_assert_error (error, MAIL_ERROR, c->error);
      g_assert_false (ok);
    }
}

static void
test_header_limits (void)
{
  g_autofree char *n256 = g_strnfill (MAIL_MAX_HEADER_NAME, 'N');
  g_autofree char *n257 = g_strnfill (MAIL_MAX_HEADER_NAME + 1, 'N');
  g_autofree char *vmax = g_strnfill (MAIL_MAX_HEADER_VALUE, 'v');
  g_autofree char *vover = g_strnfill (MAIL_MAX_HEADER_VALUE + 1, 'v');
  g_autoptr (GError) error = NULL;

  g_assert_true (mail_header_name_check (n256, -1, &error));
  g_assert_no_error (error);
  g_assert_false (mail_header_name_check (n257, -1, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_NAME_TOO_LONG);
  g_clear_error (&error);
  g_assert_true (mail_header_value_check (vmax, -1, &error));
  g_assert_no_error (error);
  g_assert_false (mail_header_value_check (vover, -1, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_VALUE_TOO_LONG);
}

/* Check the folding properties and return the unfolded value part. */
static char *
check_folded (const char *name, const char *folded, gsize width, const char *eol)
{
  g_auto (GStrv) lines = NULL;
  gsize eol_len = strlen (eol);
  gsize flen = strlen (folded);
  gsize prefix = strlen (name) + 1;
  guint n;
  g_autofree char *body = NULL;

  g_assert_cmpuint (flen, >=, eol_len);
  g_assert_cmpstr (folded + flen - eol_len, ==, eol);
  g_assert_true (g_str_has_prefix (folded, name));
  g_assert_cmpint (folded[prefix - 1], ==, ':');

  body = g_strndup (folded, flen - eol_len);
  lines = g_strsplit (body, eol, -1);
  n = g_strv_length (lines);
  for (guint i = 0; i < n; i++)
    {
      gsize len = strlen (lines[i]);
      gboolean has_word = FALSE;

      /* never a bare CR or LF left inside a line */
      g_assert_null (strchr (lines[i], '\r'));
      g_assert_null (strchr (lines[i], '\n'));
      g_assert_cmpuint (len, <=, MAIL_MAX_HEADER_LINE);
      if (i > 0)
        {
          /* a continuation starts with WSP and is not whitespace only */
          g_assert_true (lines[i][0] == ' ' || lines[i][0] == '\t');
          for (const char *p = lines[i]; *p != '\0'; p++)
            if (*p != ' ' && *p != '\t')
              has_word = TRUE;
          g_assert_true (has_word);
        }
      /* a line over the width holds a single word that could not be split */
      if (len > width)
        {
          const char *p = lines[i];

          if (i == 0)
            p += prefix;
          while (*p == ' ' || *p == '\t')
            p++;
          p += strcspn (p, " \t");
          /* after the word, only the value's trailing whitespace may follow */
          g_assert_cmpuint (strspn (p, " \t"), ==, strlen (p));
          if (*p != '\0')
            g_assert_cmpuint (i, ==, n - 1);
        }
      /* valid UTF-8 on every line: no break inside a character */
      g_assert_true (g_utf8_validate (lines[i], -1, NULL));
    }

  {
    g_autofree char *unfolded = mail_header_unfold (folded + prefix, -1);

    /* "Name:" is followed by the one SP we add (unless the value is empty) */
    if (unfolded[0] == ' ')
      return g_strdup (unfolded + 1);
    g_assert_cmpstr (unfolded, ==, "");
    return g_strdup ("");
  }
}

static char *
make_words (gsize total, gboolean utf8)
{
  static const char *const seps[] = { " ", " ", " ", "  ", "\t" };
  GString *v = g_string_new (NULL);
  guint32 state = 12345;

  while (v->len < total)
    {
      gsize wlen;

      state = state * 1103515245 + 12345;
      wlen = 1 + (state >> 16) % 12;
      if (v->len > 0)
        g_string_append (v, seps[(state >> 8) % G_N_ELEMENTS (seps)]);
      for (gsize i = 0; i < wlen; i++)
        {
          if (utf8 && i % 3 == 0)
            g_string_append (v, "\xc3\xa9");
          else
            g_string_append_c (v, 'a' + (char)((state >> (i % 16)) % 26));
        }
    }
  return g_string_free (v, FALSE);
}

static void
test_fold_2000 (void)
{
  for (int utf8 = 0; utf8 <= 1; utf8++)
    {
      g_autofree char *value = make_words (2000, utf8);
      g_autoptr (GError) error = NULL;
      g_autofree char *folded = mail_header_fold ("X-Long", value, &error);
      g_autofree char *back = NULL;
      guint n_lines = 0;

      g_assert_no_error (error);
      g_assert_cmpuint (strlen (value), >=, 2000);
      back = check_folded ("X-Long", folded, MAIL_HEADER_FOLD_WIDTH, "\r\n");
      g_assert_cmpstr (back, ==, value);
      for (const char *p = folded; (p = strstr (p, "\r\n")) != NULL; p += 2)
        n_lines++;
      /* every line but the last is full enough: greedy folding */
      g_assert_cmpuint (n_lines, >=, strlen (value) / MAIL_HEADER_FOLD_WIDTH);
      g_assert_cmpuint (n_lines, <=, 2 * strlen (value) / MAIL_HEADER_FOLD_WIDTH + 1);
    }
}

static void
test_fold_cases (void)
{
  static const struct
  {
    const char *name, *value;
    const char *expected;
  } cases[] = {
    { "Subject", "hello", "Subject: hello\r\n" },
    { "Subject", "", "Subject:\r\n" },
    { "Subject", "  lead", "Subject:   lead\r\n" },
    { "Subject", "trail   ", "Subject: trail   \r\n" },
    /* trailing whitespace past the width stays: a fold there would leave a
     * whitespace-only line */
    { "X", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa     ",
      "X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa     \r\n" },
    /* 78 fits, 79 folds before the last word */
    { "X", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbb",
      "X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbb\r\n" },
    { "X", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbb",
      "X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n bbbbb\r\n" },
    { "X", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\tbbbbb",
      "X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\tbbbbb\r\n" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *folded = mail_header_fold (cases[i].name, cases[i].value, &error);
      g_autofree char *back = NULL;

      g_assert_no_error (error);
      g_assert_cmpstr (folded, ==, cases[i].expected);
      back = check_folded (cases[i].name, folded, MAIL_HEADER_FOLD_WIDTH, "\r\n");
      g_assert_cmpstr (back, ==, cases[i].value);
    }
}

static void
test_fold_long_words (void)
{
  g_autofree char *w100 = g_strnfill (100, 'w');
  g_autofree char *w995 = g_strnfill (995, 'w');
  g_autofree char *w996 = g_strnfill (996, 'w');
  g_autofree char *w2000 = g_strnfill (2000, 'w');
  g_autofree char *mid = g_strconcat ("short ", w100, " tail", NULL);
  g_autofree char *expected = g_strconcat ("X: short\r\n ", w100, "\r\n tail\r\n", NULL);
  g_autofree char *after = g_strconcat ("word ", w996, NULL);
  g_autofree char *lead = g_strconcat ("  ", w100, NULL);
  g_autofree char *lead_expected = g_strconcat ("X:   ", w100, "\r\n", NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *folded = NULL;
  g_autofree char *back = NULL;

  /* a word longer than the width gets a line of its own, unbroken */
  folded = mail_header_fold ("X", mid, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (folded, ==, expected);
  back = check_folded ("X", folded, MAIL_HEADER_FOLD_WIDTH, "\r\n");
  g_assert_cmpstr (back, ==, mid);
  g_clear_pointer (&folded, g_free);

  /* leading whitespace never becomes a fold before the first word: the first
   * line would end in whitespace and carry nothing */
  folded = mail_header_fold ("X", lead, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (folded, ==, lead_expected);
  g_clear_pointer (&folded, g_free);

  /* "X: " + 995 = 998: the hard limit exactly */
  folded = mail_header_fold ("X", w995, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (folded), ==, MAIL_MAX_HEADER_LINE + 2);
  g_clear_pointer (&folded, g_free);
  folded = mail_header_fold ("X", w996, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_LINE_TOO_LONG);
  g_assert_null (folded);
  g_clear_error (&error);
  /* on a continuation line: " " + 996 fits */
  folded = mail_header_fold ("X", after, &error);
  g_assert_no_error (error);
  g_clear_pointer (&folded, g_free);
  /* 2000 characters without whitespace cannot be folded: refused, not cut */
  folded = mail_header_fold ("X-Long", w2000, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_LINE_TOO_LONG);
  g_assert_null (folded);
}

static void
test_fold_full (void)
{
  g_autofree char *value = make_words (300, FALSE);
  g_autoptr (GError) error = NULL;
  g_autofree char *folded = mail_header_fold_full ("X-Narrow", value, 40, "\n", &error);
  g_autofree char *back = NULL;

  g_assert_no_error (error);
  g_assert_null (strchr (folded, '\r'));
  back = check_folded ("X-Narrow", folded, 40, "\n");
  g_assert_cmpstr (back, ==, value);
}

static void
test_fold_refuses (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *f1 = mail_header_fold ("X Bad", "v", &error);

  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_NAME);
  g_assert_null (f1);
  g_clear_error (&error);
  {
    g_autofree char *f2 = mail_header_fold ("X-Ok", "v\r\nBcc: x@example.org", &error);

    g_assert_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR);
    g_assert_null (f2);
  }
}

static void
test_unfold (void)
{
  static const struct
  {
    const char *in, *out;
  } cases[] = {
    { "a\r\n b", "a b" },
    { "a\r\n\tb", "a\tb" },
    { "a\n b", "a b" },
    { "a\r\nb", "a\r\nb" },
    { "value\r\n", "value" },
    { "value\n", "value" },
    { "a\r\n  b\r\n", "a  b" },
    { "", "" },
    { "\r\n", "" },
    { " lead", " lead" },
    { "x\r\n \r\n y", "x  y" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *out = mail_header_unfold (cases[i].in, -1);

      g_assert_cmpstr (out, ==, cases[i].out);
    }
  {
    g_autofree char *out = mail_header_unfold ("a\r\n bXXX", 5);

    g_assert_cmpstr (out, ==, "a b");
  }
}

static void
test_names (void)
{
  g_autoptr (GHashTable) h
      = g_hash_table_new (mail_header_name_hash, (GEqualFunc)mail_header_name_equal);

  g_assert_true (mail_header_name_equal ("Subject", "SUBJECT"));
  g_assert_true (mail_header_name_equal ("x-spam", "X-Spam"));
  g_assert_false (mail_header_name_equal ("X-A", "X-B"));
  g_assert_false (mail_header_name_equal ("X-A", "X-A2"));
  g_assert_cmpuint (mail_header_name_hash ("Received"), ==, mail_header_name_hash ("RECEIVED"));

  g_hash_table_insert (h, (gpointer) "Subject", (gpointer) "1");
  g_assert_cmpstr (g_hash_table_lookup (h, "subject"), ==, "1");
  g_assert_null (g_hash_table_lookup (h, "Subjects"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (name_cases); i++)
    {
      const CheckCase *c = &name_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/mail/header/name/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_name_case);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (value_cases); i++)
    {
      const CheckCase *c = &value_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/mail/header/value/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_value_case);
    }
  g_test_add_func ("/proto/mail/header/limits", test_header_limits);
  g_test_add_func ("/proto/mail/header/fold/2000", test_fold_2000);
  g_test_add_func ("/proto/mail/header/fold/cases", test_fold_cases);
  g_test_add_func ("/proto/mail/header/fold/long-words", test_fold_long_words);
  g_test_add_func ("/proto/mail/header/fold/full", test_fold_full);
  g_test_add_func ("/proto/mail/header/fold/refuses", test_fold_refuses);
  g_test_add_func ("/proto/mail/header/unfold", test_unfold);
  g_test_add_func ("/proto/mail/header/names", test_names);
  return g_test_run ();
}
