/* SPDX-License-Identifier: MIT
 *
 * test-message.c — the message model on normal and hostile input: the
 * files in tests/data/mime/ plus big messages generated here (deep
 * nesting, huge header lines, header floods, part floods).
 */
#include "vps/message.h"

#include <string.h>

static VpsMessage *
load (const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "data", "mime", name, NULL);
  VpsMessage *msg = vps_message_new_from_file (path, &error);

  g_assert_no_error (error);
  g_assert_nonnull (msg);
  return msg;
}

static VpsMessage *
parse (const char *text, gsize len)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) raw = g_bytes_new (text, len);
  VpsMessage *msg = vps_message_new (raw, &error);

  g_assert_no_error (error);
  g_assert_nonnull (msg);
  return msg;
}

static gboolean
has_error (VpsMessage *msg, const char *name)
{
  return g_strv_contains (vps_message_mime_errors (msg, NULL), name);
}

static char *
joined (const char *const *v)
{
  return g_strjoinv (" ", (char **)v);
}

static void
test_simple (void)
{
  g_autoptr (VpsMessage) msg = load ("simple.eml");
  g_autofree char *types = NULL;
  const char *const *received;
  gsize n = 99, len = 0;

  g_assert_cmpuint (vps_message_n_headers (msg), ==, 9);
  g_assert_cmpstr (vps_message_header_name (msg, 0), ==, "Return-Path");
  g_assert_cmpstr (vps_message_header_name (msg, 8), ==, "Content-Type");
  g_assert_cmpstr (vps_message_header_raw_value (msg, 1), ==,
                   "from mx.example.org (mx.example.org [192.0.2.1])\r\n"
                   "\tby mail.example.net with ESMTP id 4AbC\r\n"
                   "\tfor <bob@example.net>; Sat, 28 Nov 2026 21:40:00 +0000");
  /* decoded values are unfolded */
  received = vps_message_get_headers (msg, "RECEIVED", &n);
  g_assert_cmpuint (n, ==, 1);
  g_assert_null (strchr (received[0], '\n'));
  g_assert_true (g_str_has_prefix (received[0], "from mx.example.org"));
  g_assert_cmpstr (vps_message_get_header (msg, "from"), ==, "Alice <alice@example.org>");
  g_assert_cmpstr (vps_message_get_header (msg, "content-type"), ==,
                   "text/plain; charset=us-ascii");
  g_assert_true (vps_message_has_header (msg, "Date"));
  g_assert_false (vps_message_has_header (msg, "X-Nope"));
  g_assert_null (vps_message_get_header (msg, "X-Nope"));
  g_assert_null (vps_message_get_headers (msg, "X-Nope", &n)[0]);
  g_assert_cmpuint (n, ==, 0);
  g_assert_cmpstr (vps_message_get_subject (msg), ==, "Lunch");
  g_assert_cmpstr (vps_message_get_message_id (msg), ==, "lunch.123@example.org");
  g_assert_cmpstr (vps_message_get_body_text (msg, &len), ==, "Shall we have lunch?\n");
  g_assert_cmpuint (len, ==, 21);
  g_assert_true (vps_message_mime_valid (msg));
  g_assert_null (vps_message_mime_errors (msg, &n)[0]);
  g_assert_cmpuint (n, ==, 0);
  g_assert_cmpuint (vps_message_mime_parts (msg), ==, 1);
  g_assert_cmpuint (vps_message_mime_depth (msg), ==, 0);
  types = joined (vps_message_content_types (msg, NULL));
  g_assert_cmpstr (types, ==, "text/plain");
  g_assert_null (vps_message_attachments (msg, NULL)[0]);
  {
    g_autofree char *path = g_test_build_filename (G_TEST_DIST, "data", "mime", "simple.eml", NULL);
    g_autofree char *contents = NULL;
    gsize size;

    g_assert_true (g_file_get_contents (path, &contents, &size, NULL));
    g_assert_cmpuint (vps_message_get_size (msg), ==, size);
    g_assert_cmpmem (g_bytes_get_data (vps_message_get_raw (msg), NULL), size, contents, size);
  }
}

static void
test_lf_only (void)
{
  g_autoptr (VpsMessage) msg = load ("lf-only.eml");
  g_autofree char *types = joined (vps_message_content_types (msg, NULL));

  g_assert_true (vps_message_mime_valid (msg));
  g_assert_cmpstr (types, ==, "multipart/alternative text/plain text/html");
  g_assert_cmpuint (vps_message_mime_parts (msg), ==, 2);
  g_assert_cmpuint (vps_message_mime_depth (msg), ==, 1);
  g_assert_cmpstr (vps_message_get_body_text (msg, NULL), ==, "plain text\n<p>html text</p>");
}

static void
test_no_boundary (void)
{
  g_autoptr (VpsMessage) msg = load ("multipart-no-boundary.eml");

  g_assert_false (vps_message_mime_valid (msg));
  g_assert_true (has_error (msg, "multipart-without-boundary"));
  /* the content GMime could not split is still visible to the rules */
  g_assert_nonnull (strstr (vps_message_get_body_text (msg, NULL), "hello"));
}

static void
test_truncated_base64 (void)
{
  g_autoptr (VpsMessage) msg = load ("truncated-base64.eml");
  g_autofree char *att = joined (vps_message_attachments (msg, NULL));
  g_autofree char *types = joined (vps_message_content_types (msg, NULL));

  g_assert_false (vps_message_mime_valid (msg));
  g_assert_true (has_error (msg, "truncated-message"));
  g_assert_cmpstr (att, ==, "data.bin");
  g_assert_cmpstr (types, ==, "multipart/mixed text/plain application/octet-stream");
  g_assert_cmpstr (vps_message_get_body_text (msg, NULL), ==, "Hello, world!\nThis is a test.\n");
}

static void
test_garbage_headers (void)
{
  g_autoptr (VpsMessage) msg = load ("garbage-headers.eml");
  const char *subject = vps_message_get_subject (msg);

  g_assert_false (vps_message_mime_valid (msg));
  g_assert_true (has_error (msg, "unencoded-8bit-header"));
  g_assert_true (has_error (msg, "invalid-header-name"));
  /* everything handed out is valid UTF-8 */
  for (gsize i = 0; i < vps_message_n_headers (msg); i++)
    {
      g_assert_true (g_utf8_validate (vps_message_header_name (msg, i), -1, NULL));
      g_assert_true (g_utf8_validate (vps_message_header_raw_value (msg, i), -1, NULL));
    }
  g_assert_nonnull (subject);
  g_assert_true (g_utf8_validate (subject, -1, NULL));
  g_assert_true (g_str_has_prefix (subject, "caf"));
  g_assert_true (g_utf8_validate (vps_message_get_header (msg, "From"), -1, NULL));
  g_assert_cmpstr (vps_message_get_header (msg, "To"), ==, "b@example.net");
}

static void
test_nul_body (void)
{
  g_autoptr (VpsMessage) msg = load ("nul-body.eml");
  gsize len;
  const char *body = vps_message_get_body_text (msg, &len);

  /* NUL bytes become U+FFFD: the text is a C string for the rules */
  g_assert_cmpuint (strlen (body), ==, len);
  g_assert_cmpstr (body, ==,
                   "before\xef\xbf\xbd"
                   "after\xef\xbf\xbd\xef\xbf\xbd"
                   "end\n");
  /* the raw bytes are kept untouched */
  g_assert_nonnull (memchr (g_bytes_get_data (vps_message_get_raw (msg), NULL), '\0',
                            vps_message_get_size (msg)));
}

static void
test_no_body (void)
{
  g_autoptr (VpsMessage) msg = load ("no-body.eml");
  g_autoptr (VpsMessage) blank = parse ("Subject: blank line, no body\r\n\r\n", 32);
  gsize len = 99;

  g_assert_cmpuint (vps_message_n_headers (msg), ==, 4);
  g_assert_cmpstr (vps_message_get_subject (msg), ==, "headers only");
  g_assert_cmpstr (vps_message_get_message_id (msg), ==, "nobody@example.org");
  g_assert_cmpstr (vps_message_get_body_text (msg, &len), ==, "");
  g_assert_cmpuint (len, ==, 0);
  /* GMime reports headers that end without a blank line as truncated */
  g_assert_true (has_error (msg, "truncated-message"));

  g_assert_true (vps_message_mime_valid (blank));
  g_assert_cmpstr (vps_message_get_subject (blank), ==, "blank line, no body");
  g_assert_cmpstr (vps_message_get_body_text (blank, NULL), ==, "");
}

static void
test_empty (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) raw = g_bytes_new_static ("", 0);
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "data", "mime", "empty.eml", NULL);

  g_assert_null (vps_message_new (raw, &error));
  g_assert_error (error, VPS_MESSAGE_ERROR, VPS_MESSAGE_ERROR_EMPTY);
  g_clear_error (&error);
  g_assert_null (vps_message_new_from_file (path, &error));
  g_assert_error (error, VPS_MESSAGE_ERROR, VPS_MESSAGE_ERROR_EMPTY);
  g_clear_error (&error);
  g_assert_null (vps_message_new_from_file ("/nonexistent/x.eml", &error));
  g_assert_error (error, VPS_MESSAGE_ERROR, VPS_MESSAGE_ERROR_IO);
}

static void
test_nested_rfc822 (void)
{
  g_autoptr (VpsMessage) msg = load ("nested-rfc822.eml");
  g_autofree char *types = joined (vps_message_content_types (msg, NULL));
  g_autofree char *att = joined (vps_message_attachments (msg, NULL));

  g_assert_true (vps_message_mime_valid (msg));
  g_assert_cmpstr (types, ==,
                   "multipart/mixed text/plain message/rfc822 multipart/mixed text/plain "
                   "application/pdf");
  g_assert_cmpstr (att, ==, "report.pdf");
  g_assert_cmpuint (vps_message_mime_parts (msg), ==, 3);
  /* multipart → message/rfc822 → multipart → leaf */
  g_assert_cmpuint (vps_message_mime_depth (msg), ==, 3);
  /* the forwarded message's latin-1 text is decoded too; its headers are not top-level */
  g_assert_cmpstr (vps_message_get_body_text (msg, NULL), ==,
                   "See the forwarded message.\nVoil\xc3\xa0 le rapport.");
  g_assert_cmpstr (vps_message_get_subject (msg), ==, "Fwd: report");
}

static void
test_html_latin1 (void)
{
  g_autoptr (VpsMessage) msg = load ("html-latin1.eml");
  g_autofree char *att = joined (vps_message_attachments (msg, NULL));

  g_assert_cmpstr (vps_message_get_body_text (msg, NULL), ==, "<p>\xc3\x80 bient\xc3\xb4t</p>");
  /* RFC 2231 file name */
  g_assert_cmpstr (att, ==, "r\xc3\xa9sum\xc3\xa9.exe");
}

typedef struct
{
  const char *file;
  const char *subject;
} Rfc2047Case;

static const Rfc2047Case rfc2047_cases[] = {
  { "rfc2047-utf8-q.eml", "Caf\xc3\xa9 na\xc3\xafve ok" },
  { "rfc2047-utf8-b.eml", "\xc3\x87\xc3\xa0 va \xe2\x98\x83" },
  { "rfc2047-latin1-q.eml", "Gr\xc3\xbc\xc3\x9f"
                            "e aus K\xc3\xb6ln" },
  { "rfc2047-latin1-b.eml", "Fr\xc3\xa9"
                            "d\xc3\xa9ric et Zo\xc3\xa9" },
};

static void
test_rfc2047 (gconstpointer data)
{
  const Rfc2047Case *c = data;
  g_autoptr (VpsMessage) msg = load (c->file);

  g_assert_cmpstr (vps_message_get_subject (msg), ==, c->subject);
  g_assert_true (vps_message_mime_valid (msg));
}

/* ---- generated hostile messages ---------------------------------------- */

static GString *
nested_multiparts (guint levels)
{
  GString *s = g_string_new ("From: a@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n");

  for (guint i = 0; i < levels; i++)
    g_string_append_printf (s, "Content-Type: multipart/mixed; boundary=\"b%u\"\r\n\r\n--b%u\r\n",
                            i, i);
  g_string_append (s, "Content-Type: text/plain\r\n\r\ndeep text\r\n");
  for (guint i = levels; i > 0; i--)
    g_string_append_printf (s, "--b%u--\r\n", i - 1);
  return s;
}

static void
test_nested_100 (void)
{
  g_autoptr (GString) s = nested_multiparts (100);
  g_autoptr (VpsMessage) msg = parse (s->str, s->len);
  gsize n;

  g_assert_false (vps_message_mime_valid (msg));
  /* our walk stops at VPS_MESSAGE_MAX_DEPTH whatever GMime allows */
  g_assert_true (has_error (msg, "limit-depth") || has_error (msg, "nested-too-deep"));
  g_assert_cmpuint (vps_message_mime_depth (msg), <=, VPS_MESSAGE_MAX_DEPTH);
  vps_message_content_types (msg, &n);
  g_assert_cmpuint (n, <=, VPS_MESSAGE_MAX_DEPTH + 1);
}

static void
test_nested_10000 (void)
{
  g_autoptr (GString) s = nested_multiparts (10000);
  g_autoptr (VpsMessage) msg = parse (s->str, s->len);

  g_assert_false (vps_message_mime_valid (msg));
  g_assert_cmpuint (vps_message_mime_depth (msg), <=, VPS_MESSAGE_MAX_DEPTH);
}

static void
test_within_limits (void)
{
  g_autoptr (GString) s = nested_multiparts (VPS_MESSAGE_MAX_DEPTH);
  g_autoptr (VpsMessage) msg = parse (s->str, s->len);

  g_assert_false (has_error (msg, "limit-depth"));
  g_assert_cmpuint (vps_message_mime_depth (msg), ==, VPS_MESSAGE_MAX_DEPTH);
  /* the CRLF before a boundary belongs to the boundary (RFC 2046) */
  g_assert_cmpstr (vps_message_get_body_text (msg, NULL), ==, "deep text");
}

static void
test_long_header_line (void)
{
  g_autoptr (GString) s = g_string_new ("From: a@example.org\r\nX-Long: ");
  g_autoptr (VpsMessage) msg = NULL;

  for (guint i = 0; i < 100 * 1024; i++)
    g_string_append_c (s, 'a' + i % 26);
  g_string_append (s, "\r\nSubject: after\r\n\r\nbody\r\n");
  msg = parse (s->str, s->len);
  g_assert_cmpuint (strlen (vps_message_get_header (msg, "X-Long")), ==, 100 * 1024);
  g_assert_cmpstr (vps_message_get_subject (msg), ==, "after");
  g_assert_cmpstr (vps_message_get_body_text (msg, NULL), ==, "body\n");
}

static void
test_header_flood (void)
{
  g_autoptr (GString) s = g_string_new ("From: a@example.org\r\n");
  g_autoptr (VpsMessage) msg = NULL;
  gsize n;

  for (guint i = 0; i < 20000; i++)
    g_string_append_printf (s, "X-Flood: %u\r\n", i);
  g_string_append (s, "Subject: last\r\n\r\nbody\r\n");
  msg = parse (s->str, s->len);
  g_assert_cmpuint (vps_message_n_headers (msg), ==, VPS_MESSAGE_MAX_HEADERS);
  g_assert_true (has_error (msg, "limit-headers"));
  g_assert_false (vps_message_mime_valid (msg));
  vps_message_get_headers (msg, "x-flood", &n);
  g_assert_cmpuint (n, ==, VPS_MESSAGE_MAX_HEADERS - 1);
  /* beyond the limit: not kept */
  g_assert_null (vps_message_get_subject (msg));
}

static void
test_part_flood (void)
{
  g_autoptr (GString) s = g_string_new (
      "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
  g_autoptr (VpsMessage) msg = NULL;

  for (guint i = 0; i < 3000; i++)
    g_string_append_printf (s, "--b\r\nContent-Type: application/x-%u\r\n\r\n.\r\n", i);
  g_string_append (s, "--b--\r\n");
  msg = parse (s->str, s->len);
  g_assert_true (has_error (msg, "limit-parts"));
  g_assert_cmpuint (vps_message_mime_parts (msg), ==, VPS_MESSAGE_MAX_PARTS - 1);
}

static void
test_body_limit (void)
{
  gsize big = VPS_MESSAGE_MAX_BODY_TEXT + 4096;
  g_autoptr (GString) s = g_string_new ("Content-Type: text/plain; charset=utf-8\r\n\r\n");
  g_autoptr (VpsMessage) msg = NULL;
  gsize len;
  const char *body;

  /* two-byte characters, so a cut in the middle of one must be avoided */
  while (s->len < big)
    g_string_append (s, "\xc3\xa9");
  msg = parse (s->str, s->len);
  body = vps_message_get_body_text (msg, &len);
  g_assert_cmpuint (len, <=, VPS_MESSAGE_MAX_BODY_TEXT);
  g_assert_cmpuint (len, >=, VPS_MESSAGE_MAX_BODY_TEXT - 1);
  g_assert_true (g_utf8_validate (body, (gssize)len, NULL));
}

/* Every prefix of a MIME message parses without a crash. */
static void
test_truncations (void)
{
  g_autofree char *path
      = g_test_build_filename (G_TEST_DIST, "data", "mime", "nested-rfc822.eml", NULL);
  g_autofree char *contents = NULL;
  gsize size;

  g_assert_true (g_file_get_contents (path, &contents, &size, NULL));
  for (gsize cut = 1; cut < size; cut++)
    {
      g_autoptr (VpsMessage) msg = parse (contents, cut);

      g_assert_true (g_utf8_validate (vps_message_get_body_text (msg, NULL), -1, NULL));
    }
}

static gpointer
parse_thread (gpointer data)
{
  for (guint i = 0; i < 50; i++)
    {
      g_autoptr (VpsMessage) msg = load ("nested-rfc822.eml");

      if (vps_message_mime_parts (msg) != 3)
        return GINT_TO_POINTER (1);
    }
  return NULL;
}

static void
test_threads (void)
{
  GThread *t[4];

  for (guint i = 0; i < G_N_ELEMENTS (t); i++)
    t[i] = g_thread_new ("parse", parse_thread, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (t); i++)
    g_assert_null (g_thread_join (t[i]));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  g_test_add_func ("/vps/message/simple", test_simple);
  g_test_add_func ("/vps/message/lf-only", test_lf_only);
  g_test_add_func ("/vps/message/hostile/multipart-without-boundary", test_no_boundary);
  g_test_add_func ("/vps/message/hostile/truncated-base64", test_truncated_base64);
  g_test_add_func ("/vps/message/hostile/garbage-headers", test_garbage_headers);
  g_test_add_func ("/vps/message/hostile/nul-body", test_nul_body);
  g_test_add_func ("/vps/message/no-body", test_no_body);
  g_test_add_func ("/vps/message/empty", test_empty);
  g_test_add_func ("/vps/message/nested-rfc822", test_nested_rfc822);
  g_test_add_func ("/vps/message/html-latin1", test_html_latin1);
  for (gsize i = 0; i < G_N_ELEMENTS (rfc2047_cases); i++)
    {
      g_autofree char *p = g_strdup_printf ("/vps/message/rfc2047/%s", rfc2047_cases[i].file);

      g_test_add_data_func (p, &rfc2047_cases[i], test_rfc2047);
    }
  g_test_add_func ("/vps/message/hostile/nested-100", test_nested_100);
  g_test_add_func ("/vps/message/hostile/nested-10000", test_nested_10000);
  g_test_add_func ("/vps/message/nested-at-limit", test_within_limits);
  g_test_add_func ("/vps/message/hostile/header-line-100k", test_long_header_line);
  g_test_add_func ("/vps/message/hostile/header-flood", test_header_flood);
  g_test_add_func ("/vps/message/hostile/part-flood", test_part_flood);
  g_test_add_func ("/vps/message/hostile/body-limit", test_body_limit);
  g_test_add_func ("/vps/message/hostile/truncations", test_truncations);
  g_test_add_func ("/vps/message/threads", test_threads);
  return g_test_run ();
}
