/* SPDX-License-Identifier: MIT
 *
 * test-smtp-data.c — the DATA decoder and BDAT chunk counter
 * (proto/smtp/smtp.h).
 *
 * The SMTP smuggling sequences of TESTING.md ("\n.\n", "\n.\r\n",
 * "\r\n.\n", "\r.\r", "\r\n.\r\r\n") never end DATA, under both bare
 * newline policies, wherever they stand; each table row gives the exact
 * stored octets and where decoding stopped.  Every input is also decoded
 * split at every position and one byte at a time, and must give the same
 * status, octets, offset and flags.  Dot-stuffing round-trips on random
 * messages.  Limits (size, header section, line length) and the 8-bit/NUL
 * flags are checked at their edges.
 */
#include <string.h>

#include "proto/smtp/smtp.h"

#define MORE SMTP_DATA_MORE
#define END SMTP_DATA_END
#define BARE SMTP_DATA_BARE_NEWLINE
#define REJECT SMTP_BARE_REJECT
#define NORMALIZE SMTP_BARE_NORMALIZE

typedef struct
{
  SmtpDataStatus status;
  GByteArray *out;
  gsize consumed; /* offset in the whole input where decoding stopped */
  SmtpDataDecoder dec;
} Result;

static void
result_clear (Result *r)
{
  g_clear_pointer (&r->out, g_byte_array_unref);
}

typedef struct
{
  guint64 max_size;
  guint64 max_header_size;
  gsize max_line;
} Limits;

static void
decoder_setup (SmtpDataDecoder *dec, SmtpBarePolicy bare, const Limits *limits)
{
  smtp_data_decoder_init (dec);
  dec->bare = bare;
  if (limits != NULL)
    {
      dec->max_size = limits->max_size;
      dec->max_header_size = limits->max_header_size;
      dec->max_line = limits->max_line;
    }
}

/* Feed input in pieces: split at `split` (0: whole), or one byte at a time
 * when bytewise. */
static void
decode (Result *r, const char *input, gsize len, SmtpBarePolicy bare, const Limits *limits,
        gsize split, gboolean bytewise)
{
  gsize pos = 0;

  decoder_setup (&r->dec, bare, limits);
  r->out = g_byte_array_new ();
  r->status = MORE;
  r->consumed = 0;
  while (pos < len || (pos == 0 && len == 0))
    {
      gsize n = bytewise ? 1 : split != 0 && pos < split ? split : len - pos;
      gsize consumed = 999;

      n = MIN (n, len - pos);
      r->status
          = smtp_data_decoder_feed (&r->dec, (const guint8 *)input + pos, n, r->out, &consumed);
      g_assert_cmpuint (consumed, <=, n);
      if (r->status == MORE)
        g_assert_cmpuint (consumed, ==, n);
      r->consumed = pos + consumed;
      pos += n;
      if (r->status != MORE || len == 0)
        break;
    }
}

static void
assert_same (const Result *a, const Result *b)
{
  g_assert_cmpint (a->status, ==, b->status);
  g_assert_cmpmem (a->out->data, a->out->len, b->out->data, b->out->len);
  g_assert_cmpuint (a->consumed, ==, b->consumed);
  g_assert_cmpuint (a->dec.size, ==, b->dec.size);
  g_assert_cmpint (a->dec.too_big, ==, b->dec.too_big);
  g_assert_cmpint (a->dec.header_too_big, ==, b->dec.header_too_big);
  g_assert_cmpint (a->dec.line_too_long, ==, b->dec.line_too_long);
  g_assert_cmpint (a->dec.has_8bit, ==, b->dec.has_8bit);
  g_assert_cmpint (a->dec.has_nul, ==, b->dec.has_nul);
  g_assert_cmpint (a->dec.in_header, ==, b->dec.in_header);
  g_assert_cmpuint (a->dec.header_size, ==, b->dec.header_size);
}

/* Decode whole, split at every position, and byte by byte: all the same. */
static void
check_splits (const char *input, gsize len, SmtpBarePolicy bare, const Limits *limits,
              Result *whole)
{
  Result bytewise = { 0 };

  decode (whole, input, len, bare, limits, 0, FALSE);
  for (gsize k = 1; k < len; k++)
    {
      Result split = { 0 };

      decode (&split, input, len, bare, limits, k, FALSE);
      assert_same (whole, &split);
      result_clear (&split);
    }
  decode (&bytewise, input, len, bare, limits, 0, TRUE);
  assert_same (whole, &bytewise);
  result_clear (&bytewise);
}

typedef struct
{
  const char *name;
  const char *input;
  gsize len; /* 0: strlen */
  SmtpBarePolicy bare;
  SmtpDataStatus status;
  const char *output;
  gsize output_len; /* 0: strlen */
  gsize consumed;   /* G_MAXSIZE: all of the input */
} DataCase;

#define ALL G_MAXSIZE

static const DataCase data_cases[] = {
  /* the end sequence and dot-stuffing */
  { "empty-message", ".\r\n", 0, REJECT, END, "", 0, ALL },
  { "empty-line-then-end", "\r\n.\r\n", 0, REJECT, END, "\r\n", 0, ALL },
  { "simple", "Subject: a\r\n\r\nbody\r\n.\r\n", 0, REJECT, END, "Subject: a\r\n\r\nbody\r\n", 0,
    ALL },
  { "pipelined", "a\r\n.\r\nQUIT\r\n", 0, REJECT, END, "a\r\n", 0, 6 },
  { "unstuff", "..\r\n...x\r\n.y\r\n. \r\n.\r\n", 0, REJECT, END, ".\r\n..x\r\ny\r\n \r\n", 0,
    ALL },
  { "dots-mid-line", "a.\r\nb.c\r\nd..\r\n.\r\n", 0, REJECT, END, "a.\r\nb.c\r\nd..\r\n", 0, ALL },
  { "no-end-yet", "a\r\nb\r\n", 0, REJECT, MORE, "a\r\nb\r\n", 0, ALL },
  { "dot-line-not-end", "a\r\n..\r\n", 0, REJECT, MORE, "a\r\n.\r\n", 0, ALL },
  { "trailing-cr-held", "a\r", 0, NORMALIZE, MORE, "a", 0, ALL },
  { "trailing-dot-held", "a\r\n.", 0, NORMALIZE, MORE, "a\r\n", 0, ALL },
  { "trailing-dot-cr-held", "a\r\n.\r", 0, NORMALIZE, MORE, "a\r\n", 0, ALL },
  { "nul-verbatim", "a\0b\r\n.\r\n", 8, REJECT, END, "a\0b\r\n", 5, ALL },

  /* SMTP smuggling: never the end, under either policy */
  { "lf-dot-lf-normalize", "x\n.\ny\r\n.\r\n", 0, NORMALIZE, END, "x\r\n.\r\ny\r\n", 0, ALL },
  { "lf-dot-lf-reject", "x\n.\ny\r\n.\r\n", 0, REJECT, BARE, "x", 0, 2 },
  { "lf-dot-crlf-normalize", "x\n.\r\ny\r\n.\r\n", 0, NORMALIZE, END, "x\r\n.\r\ny\r\n", 0, ALL },
  { "lf-dot-crlf-reject", "x\n.\r\ny\r\n.\r\n", 0, REJECT, BARE, "x", 0, 2 },
  { "crlf-dot-lf-normalize", "x\r\n.\ny\r\n.\r\n", 0, NORMALIZE, END, "x\r\n\r\ny\r\n", 0, ALL },
  { "crlf-dot-lf-reject", "x\r\n.\ny\r\n.\r\n", 0, REJECT, BARE, "x\r\n", 0, 5 },
  { "cr-dot-cr-normalize", "x\r.\ry\r\n.\r\n", 0, NORMALIZE, END, "x\r\n.\r\ny\r\n", 0, ALL },
  { "cr-dot-cr-reject", "x\r.\ry\r\n.\r\n", 0, REJECT, BARE, "x", 0, 2 },
  { "crlf-dot-cr-crlf-normalize", "x\r\n.\r\r\ny\r\n.\r\n", 0, NORMALIZE, END, "x\r\n\r\n\r\ny\r\n",
    0, ALL },
  { "crlf-dot-cr-crlf-reject", "x\r\n.\r\r\ny\r\n.\r\n", 0, REJECT, BARE, "x\r\n", 0, 5 },
  /* a dot after a normalised newline stays mid-line: kept, never the end */
  { "lf-lf-dot-crlf-normalize", "a\n\n.\r\n", 0, NORMALIZE, MORE, "a\r\n\r\n.\r\n", 0, ALL },
  { "bare-lf-at-start-normalize", "\n.\r\n", 0, NORMALIZE, MORE, "\r\n.\r\n", 0, ALL },
  { "bare-cr-at-start-reject", "\r\r\n.\r\n", 0, REJECT, BARE, "", 0, 1 },
  { "bare-cr-at-start-normalize", "\r\r\n.\r\n", 0, NORMALIZE, END, "\r\n\r\n", 0, ALL },
  { "dot-cr-x-normalize", ".\rx\r\n.\r\n", 0, NORMALIZE, END, "\r\nx\r\n", 0, ALL },
  { "dot-lf-normalize", ".\n.\r\n", 0, NORMALIZE, MORE, "\r\n.\r\n", 0, ALL },
  { "dot-lf-reject", ".\n.\r\n", 0, REJECT, BARE, "", 0, 2 },
};

static void
test_data_case (gconstpointer data)
{
  const DataCase *c = data;
  gsize len = c->len != 0 ? c->len : strlen (c->input);
  gsize out_len = c->output_len != 0 ? c->output_len : strlen (c->output);
  Result r = { 0 };

  check_splits (c->input, len, c->bare, NULL, &r);
  g_assert_cmpint (r.status, ==, c->status);
  g_assert_cmpmem (r.out->data, r.out->len, c->output, out_len);
  g_assert_cmpuint (r.consumed, ==, c->consumed == ALL ? len : c->consumed);
  g_assert_cmpuint (r.dec.size, ==, out_len);

  /* once finished, the decoder stays finished and takes nothing more */
  if (r.status != MORE)
    {
      gsize consumed = 99;

      g_assert_cmpint (
          smtp_data_decoder_feed (&r.dec, (const guint8 *)"a\r\n.\r\n", 6, r.out, &consumed), ==,
          r.status);
      g_assert_cmpuint (consumed, ==, 0);
      g_assert_cmpuint (r.out->len, ==, out_len);
    }
  result_clear (&r);
}

/* Each smuggling sequence, behind every kind of prefix and before any
 * suffix without a real end, leaves the decoder waiting (NORMALIZE) or
 * stopped on the bare newline (REJECT). */
static void
test_smuggling_matrix (void)
{
  static const char *const seqs[] = { "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r\r\n" };
  /* (not "x\r" or ".": "x\r" "\n.\r\n" and "." "\r\n.\n" hold a real end) */
  static const char *const prefixes[]
      = { "", "x", "x\r\n", "Subject: a\r\n\r\n", ".a", "\r\n\r\n" };
  static const char *const suffixes[] = { "", "y", "y\r\n", "\r", "MAIL FROM:<a@b>\r\n" };

  for (gsize s = 0; s < G_N_ELEMENTS (seqs); s++)
    for (gsize p = 0; p < G_N_ELEMENTS (prefixes); p++)
      for (gsize x = 0; x < G_N_ELEMENTS (suffixes); x++)
        {
          g_autofree char *in = g_strconcat (prefixes[p], seqs[s], suffixes[x], NULL);
          Result norm = { 0 };
          Result rej = { 0 };

          check_splits (in, strlen (in), NORMALIZE, NULL, &norm);
          g_assert_cmpint (norm.status, ==, MORE);
          /* the normalised output holds no bare CR or LF */
          for (guint i = 0; i < norm.out->len; i++)
            {
              if (norm.out->data[i] == '\r' && i + 1 < norm.out->len)
                g_assert_cmpint (norm.out->data[i + 1], ==, '\n');
              if (norm.out->data[i] == '\n')
                g_assert_true (i > 0 && norm.out->data[i - 1] == '\r');
            }
          check_splits (in, strlen (in), REJECT, NULL, &rej);
          g_assert_cmpint (rej.status, ==, BARE);
          result_clear (&norm);
          result_clear (&rej);
        }
}

/* RFC 5321 §4.5.2 done independently: double a leading dot, end with
 * ".\r\n". */
static GString *
stuff (const GString *msg)
{
  GString *s = g_string_new (NULL);
  gboolean line_start = TRUE;

  for (gsize i = 0; i < msg->len; i++)
    {
      if (line_start && msg->str[i] == '.')
        g_string_append_c (s, '.');
      g_string_append_c (s, msg->str[i]);
      line_start = msg->str[i] == '\n';
    }
  g_string_append (s, ".\r\n");
  return s;
}

static void
test_stuffing_round_trip (void)
{
  static const char *const atoms[] = { ".", "..", "a", " ", "\r\n", "\r\n.", "\xe9", "x.y" };

  for (guint n = 0; n < 300; n++)
    {
      g_autoptr (GString) msg = g_string_new (NULL);
      g_autoptr (GString) wire = NULL;
      guint atoms_n = (guint)g_test_rand_int_range (0, 40);

      for (guint i = 0; i < atoms_n; i++)
        g_string_append (msg, atoms[g_test_rand_int_range (0, G_N_ELEMENTS (atoms))]);
      /* a message on the wire ends with CRLF (or is empty) */
      if (msg->len > 0 && !g_str_has_suffix (msg->str, "\r\n"))
        g_string_append (msg, "\r\n");
      wire = stuff (msg);
      g_string_append (wire, "RSET\r\n");

      for (int bare = REJECT; bare <= NORMALIZE; bare++)
        {
          Result r = { 0 };

          check_splits (wire->str, wire->len, bare, NULL, &r);
          g_assert_cmpint (r.status, ==, END);
          g_assert_cmpuint (r.consumed, ==, wire->len - 6);
          g_assert_cmpmem (r.out->data, r.out->len, msg->str, msg->len);
          g_assert_cmpint (r.dec.has_8bit, ==, strchr (msg->str, '\xe9') != NULL);
          result_clear (&r);
        }
    }
}

static void
test_limits (void)
{
  static const struct
  {
    const char *name;
    const char *input;
    Limits limits;
    const char *output;
    guint64 size;
    gboolean too_big;
    gboolean header_too_big;
    gboolean line_too_long;
  } cases[] = {
    { "size-over", "12345\r\n.\r\n", { 4, 0, 0 }, "1234", 7, TRUE },
    { "size-at", "12345\r\n.\r\n", { 7, 0, 0 }, "12345\r\n", 7, FALSE },
    { "size-cut-in-crlf", "12345\r\nab\r\n.\r\n", { 6, 0, 0 }, "12345\r", 11, TRUE },
    { "size-unstuffed", "..\r\n.\r\n", { 3, 0, 0 }, ".\r\n", 3, FALSE },
    { "line-at", "abc\r\n.\r\n", { 0, 0, 3 }, "abc\r\n", 5, FALSE, FALSE, FALSE },
    { "line-over", "abc\r\nabcd\r\n.\r\n", { 0, 0, 3 }, "abc\r\nabcd\r\n", 11, FALSE, FALSE, TRUE },
    { "line-unstuffed-at", "..abc\r\n.\r\n", { 0, 0, 4 }, ".abc\r\n", 6, FALSE, FALSE, FALSE },
    { "header-at",
      "A: b\r\nC: d\r\n\r\nbody that is long\r\n.\r\n",
      { 0, 12, 0 },
      "A: b\r\nC: d\r\n\r\nbody that is long\r\n",
      33,
      FALSE,
      FALSE,
      FALSE },
    { "header-over",
      "A: b\r\nC: d\r\n\r\nbody\r\n.\r\n",
      { 0, 11, 0 },
      "A: b\r\nC: d\r\n\r\nbody\r\n",
      20,
      FALSE,
      TRUE,
      FALSE },
    { "header-no-body",
      "A: b\r\nC: de\r\n.\r\n",
      { 0, 12, 0 },
      "A: b\r\nC: de\r\n",
      13,
      FALSE,
      TRUE,
      FALSE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    for (int bare = REJECT; bare <= NORMALIZE; bare++)
      {
        Result r = { 0 };

        g_test_message ("case %s", cases[i].name);
        check_splits (cases[i].input, strlen (cases[i].input), bare, &cases[i].limits, &r);
        g_assert_cmpint (r.status, ==, END);
        g_assert_cmpmem (r.out->data, r.out->len, cases[i].output, strlen (cases[i].output));
        g_assert_cmpuint (r.dec.size, ==, cases[i].size);
        g_assert_cmpint (r.dec.too_big, ==, cases[i].too_big);
        g_assert_cmpint (r.dec.header_too_big, ==, cases[i].header_too_big);
        g_assert_cmpint (r.dec.line_too_long, ==, cases[i].line_too_long);
        result_clear (&r);
      }
}

static void
test_flags (void)
{
  Result r = { 0 };

  check_splits ("Subject: x\r\n\r\na\0b\xe9\r\n.\r\n", 23, REJECT, NULL, &r);
  g_assert_cmpint (r.status, ==, END);
  g_assert_true (r.dec.has_nul);
  g_assert_true (r.dec.has_8bit);
  g_assert_false (r.dec.in_header);
  g_assert_cmpuint (r.dec.header_size, ==, 12);
  g_assert_cmpmem (r.out->data, r.out->len, "Subject: x\r\n\r\na\0b\xe9\r\n", 20);
  result_clear (&r);

  check_splits ("plain\r\n.\r\n", 10, REJECT, NULL, &r);
  g_assert_false (r.dec.has_nul);
  g_assert_false (r.dec.has_8bit);
  g_assert_true (r.dec.in_header);
  result_clear (&r);
}

/* A big message: all of it decoded, bounded by max_size, still in sync. */
static void
test_large (void)
{
  g_autoptr (GString) msg = g_string_new ("Subject: big\r\n\r\n");
  g_autoptr (GString) wire = NULL;
  SmtpDataDecoder dec;
  g_autoptr (GByteArray) out = g_byte_array_new ();
  gsize pos = 0;
  SmtpDataStatus st = MORE;
  gsize consumed = 0;

  while (msg->len < 4 * 1024 * 1024)
    g_string_append (msg, ".a line of a large message, with a leading dot to unstuff\r\n");
  wire = stuff (msg);
  g_string_append (wire, "QUIT\r\n");

  smtp_data_decoder_init (&dec);
  dec.max_size = 1024 * 1024;
  dec.max_line = 998;
  while (st == MORE && pos < wire->len)
    {
      gsize n = MIN ((gsize)65536, wire->len - pos);

      st = smtp_data_decoder_feed (&dec, (const guint8 *)wire->str + pos, n, out, &consumed);
      pos += consumed;
    }
  g_assert_cmpint (st, ==, END);
  g_assert_cmpuint (pos, ==, wire->len - 6);
  g_assert_cmpuint (dec.size, ==, msg->len);
  g_assert_true (dec.too_big);
  g_assert_false (dec.line_too_long);
  g_assert_cmpuint (out->len, ==, 1024 * 1024);
  g_assert_cmpmem (out->data, out->len, msg->str, out->len);
}

/* ---- BDAT ------------------------------------------------------------------- */

typedef struct
{
  const char *name;
  const char *const chunks[4]; /* NULL-terminated */
  SmtpBarePolicy bare;
  const char *output;
} ChunkCase;

static const ChunkCase chunk_cases[] = {
  { "crlf-across-chunks", { "a\r\nb", "\r", "\nc", NULL }, REJECT, "a\r\nb\r\nc" },
  { "crlf-across-chunks-normalize", { "a\r\nb", "\r", "\nc", NULL }, NORMALIZE, "a\r\nb\r\nc" },
  { "no-unstuffing", { "..\r\n.\r\n", NULL }, REJECT, "..\r\n.\r\n" },
  { "bare-lf-as-given", { "a\nb", NULL }, REJECT, "a\nb" },
  { "bare-lf-normalize", { "a\nb", NULL }, NORMALIZE, "a\r\nb" },
  { "bare-cr-as-given", { "a\rb", NULL }, REJECT, "a\rb" },
  { "bare-cr-normalize", { "a\rb\r\r\n", NULL }, NORMALIZE, "a\r\nb\r\n\r\n" },
  { "cr-then-chunk-as-given", { "a\r", "x", NULL }, REJECT, "a\rx" },
  { "cr-then-chunk-normalize", { "a\r", "x", NULL }, NORMALIZE, "a\r\nx" },
  { "cr-last-as-given", { "a\r", NULL }, REJECT, "a\r" },
  { "cr-last-normalize", { "a\r", NULL }, NORMALIZE, "a\r\n" },
  { "cr-empty-chunk-lf", { "a\r", "", "\nb", NULL }, NORMALIZE, "a\r\nb" },
  { "smuggling-normalize", { "x\n.\ny\r.\rz", NULL }, NORMALIZE, "x\r\n.\r\ny\r\n.\r\nz" },
};

static GByteArray *
run_chunks (const char *const *chunks, SmtpBarePolicy bare, const Limits *limits,
            SmtpDataDecoder *dec)
{
  GByteArray *out = g_byte_array_new ();

  decoder_setup (dec, bare, limits);
  for (gsize i = 0; chunks[i] != NULL; i++)
    smtp_data_decoder_feed_chunk (dec, (const guint8 *)chunks[i], strlen (chunks[i]), out);
  smtp_data_decoder_finish_chunks (dec, out);
  return out;
}

static void
test_chunk_case (gconstpointer data)
{
  const ChunkCase *c = data;
  SmtpDataDecoder dec;
  g_autoptr (GByteArray) out = run_chunks (c->chunks, c->bare, NULL, &dec);
  g_autofree char *joined = g_strjoinv ("", (char **)c->chunks);
  gsize len = strlen (joined);

  g_assert_cmpmem (out->data, out->len, c->output, strlen (c->output));
  g_assert_cmpuint (dec.size, ==, strlen (c->output));

  /* the same octets however the message is cut into chunks */
  for (gsize k = 0; k <= len; k++)
    {
      g_autofree char *a = g_strndup (joined, k);
      const char *const two[] = { a, joined + k, NULL };
      SmtpDataDecoder d2;
      g_autoptr (GByteArray) o2 = run_chunks (two, c->bare, NULL, &d2);

      g_assert_cmpmem (o2->data, o2->len, out->data, out->len);
      g_assert_cmpuint (d2.size, ==, dec.size);
      g_assert_cmpuint (d2.line_len, ==, dec.line_len);
      g_assert_cmpint (d2.in_header, ==, dec.in_header);
    }
}

static void
test_chunk_limits (void)
{
  static const char *const body[] = { "A: b\r\n\r\n", "123456", "789\xe9\r\n", "x\0y", NULL };
  static const Limits small = { 10, 5, 6 };
  SmtpDataDecoder dec;
  g_autoptr (GByteArray) out = NULL;

  decoder_setup (&dec, REJECT, &small);
  out = g_byte_array_new ();
  for (gsize i = 0; body[i] != NULL; i++)
    smtp_data_decoder_feed_chunk (&dec, (const guint8 *)body[i], i == 3 ? 3 : strlen (body[i]),
                                  out);
  smtp_data_decoder_finish_chunks (&dec, out);
  g_assert_cmpuint (dec.size, ==, 8 + 6 + 6 + 3);
  g_assert_true (dec.too_big);
  g_assert_cmpmem (out->data, out->len, "A: b\r\n\r\n12", 10);
  g_assert_true (dec.header_too_big); /* "A: b\r\n" is 6 > 5 */
  g_assert_true (dec.line_too_long);  /* "123456789\xe9" */
  g_assert_true (dec.has_8bit);
  g_assert_true (dec.has_nul);
}

static void
test_perf (void)
{
  g_autoptr (GString) msg = g_string_new (NULL);
  g_autoptr (GString) wire = NULL;
  g_autoptr (GByteArray) out = g_byte_array_sized_new (64 * 1024 * 1024);
  SmtpDataDecoder dec;
  gsize consumed = 0;
  gdouble secs;

  while (msg->len < 64 * 1024 * 1024)
    g_string_append (msg,
                     "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiu\r\n");
  wire = stuff (msg);
  smtp_data_decoder_init (&dec);
  g_test_timer_start ();
  g_assert_cmpint (
      smtp_data_decoder_feed (&dec, (const guint8 *)wire->str, wire->len, out, &consumed), ==, END);
  secs = g_test_timer_elapsed ();
  g_assert_cmpuint (out->len, ==, msg->len);
  g_test_maximized_result (msg->len / secs / 1e6, "DATA decoder %.0f MB/s", msg->len / secs / 1e6);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (data_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/smtp/data/decode/%s", data_cases[i].name);

      g_test_add_data_func (path, &data_cases[i], test_data_case);
    }
  g_test_add_func ("/proto/smtp/data/hostile/smuggling-matrix", test_smuggling_matrix);
  g_test_add_func ("/proto/smtp/data/stuffing-round-trip", test_stuffing_round_trip);
  g_test_add_func ("/proto/smtp/data/limits", test_limits);
  g_test_add_func ("/proto/smtp/data/flags", test_flags);
  g_test_add_func ("/proto/smtp/data/large", test_large);
  for (gsize i = 0; i < G_N_ELEMENTS (chunk_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/smtp/data/bdat/%s", chunk_cases[i].name);

      g_test_add_data_func (path, &chunk_cases[i], test_chunk_case);
    }
  g_test_add_func ("/proto/smtp/data/bdat/limits", test_chunk_limits);
  if (g_test_perf ())
    g_test_add_func ("/proto/smtp/data/perf", test_perf);
  return g_test_run ();
}
