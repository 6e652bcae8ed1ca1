/* SPDX-License-Identifier: MIT
 *
 * fuzz-smtp.c — libFuzzer target for proto/smtp (the server side).
 *
 * Input layout: byte 0 selects the options (bit 0-1 the line reader's
 * limit: SMTP_MAX_LINE, 16, 4, 0; bit 2 `utf8` for the parser; bit 3-4 the
 * DATA limits: none, or small max_size/max_header_size/max_line); byte 1
 * is the piece size the stream is cut into (0 counts as 1).  The rest is
 * the payload, read as
 *   - a command stream: the line reader (in pieces, as a session buffers
 *     them), every line to smtp_command_parse with all four flag sets;
 *   - one command line as is (NUL and CR included);
 *   - DATA under both bare newline policies, whole and in pieces;
 *   - BDAT chunks, whole and in pieces;
 *   - a SASL PLAIN response and a LOGIN field.
 * Besides "no crash, no leak, no UB" it checks the invariants callers rely
 * on, and aborts when one breaks:
 *   - the line reader consumes no more than it is given, the session's
 *     buffer stays under limit + 2 + one piece, and the lines do not
 *     depend on how the stream was cut;
 *   - a command is returned exactly when no error is set (SMTP_ERROR);
 *     decoded ENVID/AUTH/ORCPT never hold a control character;
 *   - DATA: the same status, octets, offset and flags however the input
 *     is cut; END only right after "\r\n.\r\n" (or ".\r\n" at the start);
 *     normalised output has no bare CR or LF; output never over max_size;
 *   - BDAT: the same octets however the chunks are cut;
 *   - SASL fields are bounded and NUL-free.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp/smtp.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do                                                                                               \
    {                                                                                              \
      if (!(cond))                                                                                 \
        abort ();                                                                                  \
    }                                                                                              \
  while (0)

static gboolean
has_control (const char *s)
{
  for (; s != NULL && *s != '\0'; s++)
    if ((guchar)*s < 0x20 || (guchar)*s == 0x7f)
      return TRUE;
  return FALSE;
}

static void
fuzz_command (const char *line, gsize len, gboolean utf8)
{
  for (guint flags = 0; flags <= (SMTP_PARSE_ESMTP | SMTP_PARSE_LENIENT); flags++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (SmtpCommand) cmd = smtp_command_parse (line, len, flags, utf8, &error);

      CHECK ((cmd == NULL) == (error != NULL));
      if (cmd == NULL)
        {
          CHECK (error->domain == SMTP_ERROR);
          continue;
        }
      CHECK (cmd->arg != NULL && strchr (cmd->arg, '\r') == NULL);
      CHECK (!has_control (cmd->envid) && !has_control (cmd->auth) && !has_control (cmd->orcpt));
      if (cmd->verb == SMTP_CMD_MAIL || cmd->verb == SMTP_CMD_RCPT)
        {
          CHECK (cmd->path != NULL && cmd->params != NULL);
          CHECK (strpbrk (mail_path_get_address (cmd->path), "\r\n") == NULL);
          if ((flags & SMTP_PARSE_ESMTP) == 0)
            CHECK (mail_params_get_n (cmd->params) == 0);
          if (cmd->notify & SMTP_NOTIFY_NEVER)
            CHECK (cmd->notify == SMTP_NOTIFY_NEVER);
        }
      if (cmd->verb == SMTP_CMD_AUTH)
        CHECK (cmd->mechanism != NULL && strlen (cmd->mechanism) <= SMTP_MAX_SASL_MECHANISM);
      CHECK (len + 2 <= SMTP_MAX_AUTH_LINE);
    }
}

/* The command stream, cut into pieces; returns the events as text. */
static char *
fuzz_lines (const guint8 *p, gsize len, gsize max, gsize piece, gboolean utf8, gboolean parse)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  GString *events = g_string_new (NULL);
  SmtpLineReader r;
  gsize pos = 0;
  gsize bound = max + 2 + piece;

  smtp_line_reader_init (&r);
  for (;;)
    {
      gsize consumed = 0;
      const char *line = NULL;
      gsize line_len = 0;
      SmtpLineStatus st
          = smtp_line_reader_next (&r, buf->data, buf->len, max, &consumed, &line, &line_len);

      CHECK (consumed <= buf->len);
      if (st == SMTP_LINE_OK || st == SMTP_LINE_BARE_LF)
        {
          CHECK (line_len <= max && memchr (line, '\n', line_len) == NULL);
          CHECK (consumed > line_len);
          g_string_append_printf (events, "%d:%" G_GSIZE_FORMAT ":", st, line_len);
          g_string_append_len (events, line, (gssize)line_len);
          if (parse)
            fuzz_command (line, line_len, utf8);
        }
      else if (st == SMTP_LINE_TOO_LONG)
        g_string_append (events, "L");
      else
        CHECK (st == SMTP_LINE_NEED_MORE);
      g_byte_array_remove_range (buf, 0, (guint)consumed);
      if (st != SMTP_LINE_NEED_MORE)
        continue;
      if (pos == len)
        break;
      {
        gsize n = MIN (piece, len - pos);

        g_byte_array_append (buf, p + pos, (guint)n);
        pos += n;
        CHECK (buf->len <= bound);
      }
    }
  g_string_append_printf (events, "|%u", buf->len);
  return g_string_free (events, FALSE);
}

typedef struct
{
  SmtpDataStatus status;
  GByteArray *out;
  gsize consumed;
  SmtpDataDecoder dec;
} DataRun;

static void
data_run (DataRun *r, const guint8 *p, gsize len, SmtpBarePolicy bare, guint limits, gsize piece)
{
  gsize pos = 0;

  smtp_data_decoder_init (&r->dec);
  r->dec.bare = bare;
  if (limits & 1)
    r->dec.max_size = 64;
  if (limits & 2)
    {
      r->dec.max_header_size = 16;
      r->dec.max_line = 8;
    }
  r->out = g_byte_array_new ();
  r->status = SMTP_DATA_MORE;
  r->consumed = 0;
  while (pos < len && r->status == SMTP_DATA_MORE)
    {
      gsize n = MIN (piece, len - pos);
      gsize consumed = 0;

      r->status = smtp_data_decoder_feed (&r->dec, p + pos, n, r->out, &consumed);
      CHECK (consumed <= n);
      CHECK (r->status != SMTP_DATA_MORE || consumed == n);
      r->consumed = pos + consumed;
      pos += n;
    }
}

static void
fuzz_data (const guint8 *p, gsize len, guint limits, gsize piece)
{
  for (int bare = SMTP_BARE_REJECT; bare <= SMTP_BARE_NORMALIZE; bare++)
    {
      DataRun whole = { 0 };
      DataRun cut = { 0 };

      data_run (&whole, p, len, bare, limits, len == 0 ? 1 : len);
      data_run (&cut, p, len, bare, limits, piece);
      CHECK (whole.status == cut.status);
      CHECK (whole.consumed == cut.consumed);
      CHECK (whole.out->len == cut.out->len
             && memcmp (whole.out->data, cut.out->data, whole.out->len) == 0);
      CHECK (whole.dec.size == cut.dec.size && whole.dec.too_big == cut.dec.too_big);
      CHECK (whole.dec.line_too_long == cut.dec.line_too_long);
      CHECK (whole.dec.header_too_big == cut.dec.header_too_big);
      CHECK (whole.dec.has_8bit == cut.dec.has_8bit && whole.dec.has_nul == cut.dec.has_nul);
      CHECK (whole.out->len <= whole.dec.size);
      if (whole.dec.max_size != 0)
        CHECK (whole.out->len <= whole.dec.max_size);
      if (whole.status == SMTP_DATA_END)
        CHECK ((whole.consumed == 3 && memcmp (p, ".\r\n", 3) == 0)
               || (whole.consumed >= 5 && memcmp (p + whole.consumed - 5, "\r\n.\r\n", 5) == 0));
      if (bare == SMTP_BARE_NORMALIZE && whole.dec.max_size == 0)
        for (guint i = 0; i < whole.out->len; i++)
          {
            if (whole.out->data[i] == '\r' && i + 1 < whole.out->len)
              CHECK (whole.out->data[i + 1] == '\n');
            if (whole.out->data[i] == '\n')
              CHECK (i > 0 && whole.out->data[i - 1] == '\r');
          }
      if (bare == SMTP_BARE_NORMALIZE)
        CHECK (whole.status != SMTP_DATA_BARE_NEWLINE);
      g_byte_array_unref (whole.out);
      g_byte_array_unref (cut.out);
    }
}

static GByteArray *
chunk_run (const guint8 *p, gsize len, SmtpBarePolicy bare, gsize piece, SmtpDataDecoder *dec)
{
  GByteArray *out = g_byte_array_new ();

  smtp_data_decoder_init (dec);
  dec->bare = bare;
  for (gsize pos = 0; pos < len; pos += piece)
    smtp_data_decoder_feed_chunk (dec, p + pos, MIN (piece, len - pos), out);
  smtp_data_decoder_finish_chunks (dec, out);
  return out;
}

static void
fuzz_chunks (const guint8 *p, gsize len, gsize piece)
{
  for (int bare = SMTP_BARE_REJECT; bare <= SMTP_BARE_NORMALIZE; bare++)
    {
      SmtpDataDecoder a;
      SmtpDataDecoder b;
      g_autoptr (GByteArray) whole = chunk_run (p, len, bare, len == 0 ? 1 : len, &a);
      g_autoptr (GByteArray) cut = chunk_run (p, len, bare, piece, &b);

      CHECK (whole->len == cut->len && memcmp (whole->data, cut->data, whole->len) == 0);
      CHECK (a.size == b.size && a.size == whole->len);
      CHECK (a.line_too_long == b.line_too_long && a.has_8bit == b.has_8bit);
      if (bare == SMTP_BARE_REJECT)
        CHECK (whole->len == len && memcmp (whole->data, p, len) == 0);
    }
}

static void
fuzz_sasl (const guint8 *p, gsize len)
{
  g_autofree char *s = g_strndup ((const char *)p, len);
  g_autofree char *zid = NULL;
  g_autofree char *cid = NULL;
  g_autofree char *pw = NULL;
  g_autofree char *field = NULL;
  g_autoptr (GError) error = NULL;

  if (smtp_sasl_plain_decode (s, &zid, &cid, &pw, &error))
    {
      CHECK (error == NULL);
      CHECK (strlen (zid) <= SMTP_MAX_SASL_FIELD && strlen (cid) <= SMTP_MAX_SASL_FIELD
             && strlen (pw) <= SMTP_MAX_SASL_FIELD);
      CHECK (cid[0] != '\0' && pw[0] != '\0' && !has_control (cid) && !has_control (zid));
    }
  else
    CHECK (error != NULL && error->domain == SMTP_ERROR && zid == NULL);
  g_clear_error (&error);
  field = smtp_sasl_base64_field (s, &error);
  CHECK ((field == NULL) == (error != NULL));
  if (field != NULL)
    CHECK (strlen (field) <= SMTP_MAX_SASL_FIELD);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const gsize maxes[] = { SMTP_MAX_LINE, 16, 4, 0 };
  static gboolean initialized = FALSE;
  const guint8 *p;
  gsize len;
  gsize max;
  gsize piece;
  gboolean utf8;
  guint limits;

  if (!initialized)
    {
      /* a g_return_if_fail reached from input is a bug too */
      g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
      initialized = TRUE;
    }
  if (size < 2)
    return 0;
  max = maxes[data[0] & 3];
  utf8 = (data[0] & 4) != 0;
  limits = (data[0] >> 3) & 3;
  piece = data[1] == 0 ? 1 : data[1];
  p = data + 2;
  len = size - 2;

  {
    g_autofree char *whole = fuzz_lines (p, len, max, len == 0 ? 1 : len, utf8, TRUE);
    g_autofree char *cut = fuzz_lines (p, len, max, piece, utf8, FALSE);

    CHECK (strcmp (whole, cut) == 0);
  }
  if (len <= SMTP_MAX_LINE)
    fuzz_command ((const char *)p, len, utf8);
  fuzz_data (p, len, limits, piece);
  fuzz_chunks (p, len, piece);
  if (len <= SMTP_MAX_AUTH_LINE)
    fuzz_sasl (p, len);
  return 0;
}
