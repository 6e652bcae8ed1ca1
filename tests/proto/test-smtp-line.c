/* SPDX-License-Identifier: MIT
 *
 * test-smtp-line.c — the SMTP command line reader (proto/smtp/smtp.h).
 *
 * Single calls check each status and exactly what is consumed; a caller
 * loop (what the session does: keep the unconsumed bytes, append what the
 * socket gives) checks that 1 MB without LF stays bounded and that the
 * next command is read normally, and that every split of a stream gives
 * the same lines as one buffer.
 */
#include <string.h>

#include "proto/smtp/smtp.h"

#define NEED_MORE SMTP_LINE_NEED_MORE
#define OK SMTP_LINE_OK
#define TOO_LONG SMTP_LINE_TOO_LONG
#define BARE_LF SMTP_LINE_BARE_LF

typedef struct
{
  const char *name;
  const char *input;
  gsize max;
  gboolean discarding; /* reader state before the call */
  SmtpLineStatus status;
  gsize consumed;
  const char *line; /* for OK / BARE_LF */
  gboolean discarding_after;
} LineCase;

static const LineCase line_cases[] = {
  { "empty", "", 512, FALSE, NEED_MORE, 0 },
  { "partial", "NOOP", 512, FALSE, NEED_MORE, 0 },
  { "partial-cr", "NOOP\r", 512, FALSE, NEED_MORE, 0 },
  { "crlf", "NOOP\r\n", 512, FALSE, OK, 6, "NOOP" },
  { "empty-line", "\r\n", 512, FALSE, OK, 2, "" },
  { "pipelined", "MAIL FROM:<>\r\nRCPT TO:<a@b>\r\n", 512, FALSE, OK, 14, "MAIL FROM:<>" },
  { "bare-lf", "NOOP\n", 512, FALSE, BARE_LF, 5, "NOOP" },
  { "bare-lf-empty", "\n", 512, FALSE, BARE_LF, 1, "" },
  { "bare-cr-inside", "NO\rOP\r\n", 512, FALSE, OK, 7, "NO\rOP" },
  { "cr-cr-lf", "NOOP\r\r\n", 512, FALSE, OK, 7, "NOOP\r" },
  { "at-limit", "ABCD\r\n", 4, FALSE, OK, 6, "ABCD" },
  { "at-limit-bare-lf", "ABCD\n", 4, FALSE, BARE_LF, 5, "ABCD" },
  { "over-limit", "ABCDE\r\n", 4, FALSE, TOO_LONG, 7 },
  { "over-limit-bare-lf", "ABCDE\n", 4, FALSE, TOO_LONG, 6 },
  { "over-limit-next", "ABCDEFGH\r\nNOOP\r\n", 4, FALSE, TOO_LONG, 10 },
  /* max + 1 bytes could still be "max octets + CR": keep waiting */
  { "max-plus-1-waits", "ABCDE", 4, FALSE, NEED_MORE, 0 },
  { "max-plus-cr-waits", "ABCD\r", 4, FALSE, NEED_MORE, 0 },
  /* max + 2 bytes without LF cannot be a good line: discard by itself */
  { "max-plus-2-discards", "ABCDEF", 4, FALSE, NEED_MORE, 6, NULL, TRUE },
  { "max-plus-2-cr-discards", "ABCD\r\r", 4, FALSE, NEED_MORE, 6, NULL, TRUE },
  { "discarding-more", "xxxxxxxxxxxxxxxxxxxx", 4, TRUE, NEED_MORE, 20, NULL, TRUE },
  { "discarding-ends", "xxx\r\nNOOP\r\n", 4, TRUE, TOO_LONG, 5 },
  { "discarding-ends-bare-lf", "xxx\nNOOP\r\n", 4, TRUE, TOO_LONG, 4 },
  { "discarding-lf-first", "\nNOOP\r\n", 4, TRUE, TOO_LONG, 1 },
  { "max-zero", "\r\n", 0, FALSE, OK, 2, "" },
  { "max-zero-over", "a\r\n", 0, FALSE, TOO_LONG, 3 },
};

static void
test_line_case (gconstpointer data)
{
  const LineCase *c = data;
  SmtpLineReader r;
  gsize consumed = 999;
  const char *line = (const char *)"sentinel";
  gsize line_len = 999;
  gsize len = strlen (c->input);
  SmtpLineStatus st;

  smtp_line_reader_init (&r);
  r.discarding = c->discarding;
  st = smtp_line_reader_next (&r, (const guint8 *)c->input, len, c->max, &consumed, &line,
                              &line_len);
  g_assert_cmpint (st, ==, c->status);
  g_assert_cmpuint (consumed, ==, c->consumed);
  g_assert_cmpint (r.discarding, ==, c->discarding_after);
  if (st == OK || st == BARE_LF)
    {
      g_assert_true (line == c->input);
      g_assert_cmpuint (line_len, ==, strlen (c->line));
      g_assert_cmpmem (line, line_len, c->line, strlen (c->line));
    }
  else
    {
      g_assert_null (line);
      g_assert_cmpuint (line_len, ==, 0);
    }
}

/* What the session does: a buffer of unconsumed bytes; feed pieces of at
 * most `piece` bytes; record each event as text.  *peak gets the largest
 * buffer the caller ever had to hold. */
static char *
run_stream (const char *input, gsize len, gsize max, gsize piece, gsize *peak)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  g_autoptr (GString) events = g_string_new (NULL);
  SmtpLineReader r;
  gsize pos = 0;

  smtp_line_reader_init (&r);
  if (peak != NULL)
    *peak = 0;
  for (;;)
    {
      gsize consumed = 0;
      const char *line = NULL;
      gsize line_len = 0;
      SmtpLineStatus st
          = smtp_line_reader_next (&r, buf->data, buf->len, max, &consumed, &line, &line_len);

      g_assert_cmpuint (consumed, <=, buf->len);
      switch (st)
        {
          case SMTP_LINE_OK:
          case SMTP_LINE_BARE_LF:
            g_string_append_printf (events, "%s:%.*s|", st == SMTP_LINE_OK ? "OK" : "LF",
                                    (int)line_len, line);
            g_assert_cmpuint (consumed, >, 0);
            break;
          case SMTP_LINE_TOO_LONG:
            g_string_append (events, "LONG|");
            g_assert_cmpuint (consumed, >, 0);
            break;
          case SMTP_LINE_NEED_MORE:
            break;
          default:
            g_assert_not_reached ();
        }
      g_byte_array_remove_range (buf, 0, (guint)consumed);
      if (st != SMTP_LINE_NEED_MORE)
        continue;
      if (pos == len)
        break;
      {
        gsize n = MIN (piece, len - pos);

        g_byte_array_append (buf, (const guint8 *)input + pos, (guint)n);
        pos += n;
        if (peak != NULL && buf->len > *peak)
          *peak = buf->len;
      }
    }
  /* what was left over: an unterminated last line */
  g_string_append_printf (events, "rest:%u", buf->len);
  return g_string_free (g_steal_pointer (&events), FALSE);
}

static void
test_line_megabyte (void)
{
  const gsize mb = 1024 * 1024;
  g_autoptr (GString) input = g_string_sized_new (mb + 64);
  g_autofree char *events = NULL;
  gsize peak = 0;

  g_string_append (input, "EHLO client.example\r\n");
  for (gsize i = 0; i < mb; i++)
    g_string_append_c (input, (char)('A' + i % 26));
  g_string_append (input, "\r\nNOOP\r\n");

  events = run_stream (input->str, input->len, SMTP_MAX_LINE, 4096, &peak);
  g_assert_cmpstr (events, ==, "OK:EHLO client.example|LONG|OK:NOOP|rest:0");
  /* never more than one line's worth plus one read */
  g_assert_cmpuint (peak, <=, SMTP_MAX_LINE + 2 + 4096);

  /* the same with a caller reading 64 KiB at a time */
  g_free (events);
  events = run_stream (input->str, input->len, SMTP_MAX_LINE, 65536, &peak);
  g_assert_cmpstr (events, ==, "OK:EHLO client.example|LONG|OK:NOOP|rest:0");
  g_assert_cmpuint (peak, <=, SMTP_MAX_LINE + 2 + 65536);
}

static void
test_line_513 (void)
{
  g_autoptr (GString) input = g_string_new (NULL);
  g_autofree char *events = NULL;

  /* 511 octets + CRLF = 513 > RFC 5321's 512: too long with the command
   * limit (the line content limit is 512 - 2) */
  g_string_append (input, "NOOP ");
  while (input->len < 511)
    g_string_append_c (input, 'x');
  g_string_append (input, "\r\nNOOP\r\n");
  events = run_stream (input->str, input->len, SMTP_MAX_COMMAND_LINE - 2, 100, NULL);
  g_assert_cmpstr (events, ==, "LONG|OK:NOOP|rest:0");

  /* 510 + CRLF is exactly 512: fine */
  g_string_truncate (input, 0);
  g_string_append (input, "NOOP ");
  while (input->len < 510)
    g_string_append_c (input, 'x');
  g_string_append (input, "\r\n");
  g_free (events);
  events = run_stream (input->str, input->len, SMTP_MAX_COMMAND_LINE - 2, 7, NULL);
  g_assert_true (g_str_has_prefix (events, "OK:NOOP xxx"));
  g_assert_true (g_str_has_suffix (events, "x|rest:0"));
}

/* Every split of a stream gives the events of the whole stream. */
static void
test_line_splits (void)
{
  static const struct
  {
    const char *input;
    gsize max;
  } streams[] = {
    { "EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<x@y>\r\nDATA\r\n", 512 },
    { "ABCDEFGHIJ\r\nNOOP\r\nABCDE\nAB\nABCD\r\rX\r\n\r\n\n", 4 },
    { "ABCDE\r\nABCDEF\r\nABCD\r\nlast", 4 },
    { "\r\r\r\r\r\r\n\n\n\r\n", 3 },
  };

  for (gsize s = 0; s < G_N_ELEMENTS (streams); s++)
    {
      const char *in = streams[s].input;
      gsize len = strlen (in);
      g_autofree char *whole = run_stream (in, len, streams[s].max, len, NULL);

      for (gsize piece = 1; piece < len; piece++)
        {
          g_autofree char *split = run_stream (in, len, streams[s].max, piece, NULL);

          g_assert_cmpstr (split, ==, whole);
        }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (line_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/smtp/line/%s", line_cases[i].name);

      g_test_add_data_func (path, &line_cases[i], test_line_case);
    }
  g_test_add_func ("/proto/smtp/line/hostile/megabyte-without-lf", test_line_megabyte);
  g_test_add_func ("/proto/smtp/line/hostile/513-octets", test_line_513);
  g_test_add_func ("/proto/smtp/line/splits", test_line_splits);
  return g_test_run ();
}
