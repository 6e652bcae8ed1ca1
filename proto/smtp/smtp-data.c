/* SPDX-License-Identifier: MIT
 *
 * smtp-data.c — the DATA decoder (RFC 5321 §4.1.1.4, §4.5.2) and the BDAT
 * chunk counter (RFC 3030).
 *
 * Contract (see smtp.h): the decoder is a state machine fed any split of
 * the stream; the result never depends on where the splits fall.  Only
 * <CR><LF>.<CR><LF> ends DATA (the stream starts as if after a CRLF, so a
 * lone ".\r\n" is an empty message).  A bare CR or LF is never a line end
 * for SMTP framing — that is what SMTP smuggling (CVE-2023-51764..6) abuses:
 * with SMTP_BARE_REJECT the decoder stops at the first one, with
 * SMTP_BARE_NORMALIZE it is stored as CRLF but the next byte is still
 * mid-line, so "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r" and "\r\n.\r\r\n"
 * never end the message and a dot after a bare newline is kept.  A dot
 * starting a line is dropped (dot-stuffing), unless the line is the end.
 *
 * Lines, the header section and the limits are counted on the stored
 * octets (after unstuffing and normalising), so "line too long" means what
 * a reader of the queued file would see.  Output stops at max_size but
 * decoding goes on to the end sequence, so the session can answer 552
 * after the end of data and stay in sync.
 *
 * Speed: in the middle of a line the decoder jumps to the next CR or LF
 * with memchr and appends the longest run the input shares with the output
 * (many whole lines) in one g_byte_array_append; only a dropped dot, a
 * normalised newline or a buffer end breaks a run.
 */
#include <string.h>

#include "smtp.h"

enum
{
  /* DATA */
  ST_LINE_START = 0, /* after a CRLF (or at the start): a dot is special */
  ST_TEXT,           /* inside a line */
  ST_CR,             /* a CR ended the previous buffer; not emitted yet */
  ST_DOT,            /* a dot starting a line; not emitted */
  ST_DOT_CR,         /* ".\r" starting a line; not emitted */
  ST_END,            /* CRLF.CRLF seen */
  ST_BARE,           /* stopped on a bare CR or LF (SMTP_BARE_REJECT) */
  /* BDAT */
  ST_CHUNK_TEXT, /* inside a line */
  ST_CHUNK_CR,   /* a CR ended a chunk; emitted (NORMALIZE adds its LF later) */
};

void
smtp_data_decoder_init (SmtpDataDecoder *dec)
{
  g_return_if_fail (dec != NULL);

  memset (dec, 0, sizeof *dec);
  dec->state = ST_LINE_START;
  dec->in_header = TRUE;
}

/* Whether a byte of [p, p+n) is >= 0x80; eight at a time, since this runs
 * over every octet of every message until the first 8-bit one. */
static gboolean
has_high_bit (const guint8 *p, gsize n)
{
  const guint64 high = G_GUINT64_CONSTANT (0x8080808080808080);
  gsize i = 0;

  for (; i + 8 <= n; i += 8)
    {
      guint64 w;

      memcpy (&w, p + i, sizeof w);
      if (w & high)
        return TRUE;
    }
  for (; i < n; i++)
    if (p[i] >= 0x80)
      return TRUE;
  return FALSE;
}

/* Count message octets of one line's content, [p, p+n), no CR or LF in it. */
static void
account_text (SmtpDataDecoder *dec, const guint8 *p, gsize n)
{
  if (n == 0)
    return;
  dec->line_len += n;
  if (dec->max_line != 0 && dec->line_len > dec->max_line)
    dec->line_too_long = TRUE;
  if (dec->in_header)
    {
      dec->header_size += n;
      if (dec->max_header_size != 0 && dec->header_size > dec->max_header_size)
        dec->header_too_big = TRUE;
    }
  if (!dec->has_8bit && has_high_bit (p, n))
    dec->has_8bit = TRUE;
  if (!dec->has_nul && memchr (p, '\0', n) != NULL)
    dec->has_nul = TRUE;
}

/* A line of the stored message ended (its CRLF stored). */
static void
account_line_end (SmtpDataDecoder *dec)
{
  if (dec->in_header)
    {
      /* the empty line ends the header section and is not part of it */
      if (dec->line_len == 0)
        dec->in_header = FALSE;
      else
        {
          dec->header_size += 2;
          if (dec->max_header_size != 0 && dec->header_size > dec->max_header_size)
            dec->header_too_big = TRUE;
        }
    }
  dec->line_len = 0;
}

/* Store n message octets, up to max_size in all; count them all. */
static void
emit (SmtpDataDecoder *dec, GByteArray *out, const guint8 *p, gsize n)
{
  guint64 room;

  if (n == 0)
    return;
  if (dec->max_size == 0)
    room = G_MAXUINT64;
  else
    room = dec->size < dec->max_size ? dec->max_size - dec->size : 0;
  if (room > 0)
    g_byte_array_append (out, p, (guint)MIN ((guint64)n, room));
  if (n > G_MAXUINT64 - dec->size)
    dec->size = G_MAXUINT64;
  else
    dec->size += n;
  if (dec->max_size != 0 && dec->size > dec->max_size)
    dec->too_big = TRUE;
}

static const guint8 crlf[] = { '\r', '\n' };

/* A bare CR or LF under SMTP_BARE_NORMALIZE: a line end in the output. */
static void
emit_normalized (SmtpDataDecoder *dec, GByteArray *out)
{
  emit (dec, out, crlf, 2);
  account_line_end (dec);
}

/* End of [p, q) of text: the next CR or LF, or q. */
static const guint8 *
find_newline (const guint8 *p, const guint8 *q)
{
  const guint8 *lf = memchr (p, '\n', (gsize)(q - p));
  const guint8 *stop = lf != NULL ? lf : q;
  const guint8 *cr = memchr (p, '\r', (gsize)(stop - p));

  return cr != NULL ? cr : stop;
}

SmtpDataStatus
smtp_data_decoder_feed (SmtpDataDecoder *dec, const guint8 *buf, gsize len, GByteArray *out,
                        gsize *consumed)
{
  gsize i = 0;
  gsize run = 0; /* buf[run, i) is pending output, identical to the input */

  g_return_val_if_fail (dec != NULL, SMTP_DATA_MORE);
  g_return_val_if_fail (buf != NULL || len == 0, SMTP_DATA_MORE);
  g_return_val_if_fail (out != NULL, SMTP_DATA_MORE);

  if (consumed != NULL)
    *consumed = 0;
  if (dec->state == ST_END)
    return SMTP_DATA_END;
  if (dec->state == ST_BARE)
    return SMTP_DATA_BARE_NEWLINE;
  g_return_val_if_fail (dec->state <= ST_DOT_CR, SMTP_DATA_MORE);

/* Flush the pending run and stop; `past` is the offset just past the bare
 * CR or LF (0 when it ended the previous buffer). */
#define STOP_BARE(past)                                                                            \
  do                                                                                               \
    {                                                                                              \
      emit (dec, out, buf + run, i - run);                                                         \
      dec->state = ST_BARE;                                                                        \
      if (consumed != NULL)                                                                        \
        *consumed = (past);                                                                        \
      return SMTP_DATA_BARE_NEWLINE;                                                               \
    }                                                                                              \
  while (0)

  while (i < len)
    {
      switch (dec->state)
        {
          case ST_LINE_START:
            if (buf[i] == '.')
              {
                /* held back: the end, or a stuffing dot to drop */
                emit (dec, out, buf + run, i - run);
                i++;
                run = i;
                dec->state = ST_DOT;
              }
            else
              dec->state = ST_TEXT;
            break;

          case ST_DOT:
            if (buf[i] == '\r')
              {
                i++;
                run = i;
                dec->state = ST_DOT_CR;
              }
            else
              dec->state = ST_TEXT; /* the dot was stuffing: dropped */
            break;

          case ST_DOT_CR:
            if (buf[i] == '\n')
              {
                i++;
                dec->state = ST_END;
                if (consumed != NULL)
                  *consumed = i;
                return SMTP_DATA_END;
              }
            /* ".\r" then something else: a bare CR on a dot-stuffed line */
            if (dec->bare == SMTP_BARE_REJECT)
              STOP_BARE (i); /* the CR before buf[i] (maybe in the previous buffer) */
            emit_normalized (dec, out);
            dec->state = ST_TEXT;
            break;

          case ST_CR:
            if (buf[i] == '\n')
              {
                emit (dec, out, crlf, 2);
                account_line_end (dec);
                i++;
                run = i;
                dec->state = ST_LINE_START;
                break;
              }
            if (dec->bare == SMTP_BARE_REJECT)
              STOP_BARE (0); /* the CR ended the previous buffer */
            emit_normalized (dec, out);
            dec->state = ST_TEXT;
            break;

          case ST_TEXT:
            {
              const guint8 *stop = find_newline (buf + i, buf + len);
              gsize n = (gsize)(stop - (buf + i));

              account_text (dec, buf + i, n);
              i += n;
              if (i == len)
                break;
              if (buf[i] == '\r')
                {
                  if (i + 1 == len)
                    {
                      /* is it CRLF? the next buffer tells */
                      emit (dec, out, buf + run, i - run);
                      i++;
                      run = i;
                      dec->state = ST_CR;
                      break;
                    }
                  if (buf[i + 1] == '\n')
                    {
                      /* CRLF: stays in the run */
                      i += 2;
                      account_line_end (dec);
                      dec->state = ST_LINE_START;
                      break;
                    }
                }
              /* a bare CR or LF */
              if (dec->bare == SMTP_BARE_REJECT)
                STOP_BARE (i + 1);
              emit (dec, out, buf + run, i - run);
              emit_normalized (dec, out);
              i++;
              run = i;
              break;
            }

          default:
            g_return_val_if_reached (SMTP_DATA_MORE);
        }
    }
#undef STOP_BARE

  emit (dec, out, buf + run, i - run);
  if (consumed != NULL)
    *consumed = len;
  return SMTP_DATA_MORE;
}

void
smtp_data_decoder_feed_chunk (SmtpDataDecoder *dec, const guint8 *buf, gsize len, GByteArray *out)
{
  gboolean normalize;
  gsize i = 0;
  gsize run = 0;

  g_return_if_fail (dec != NULL);
  g_return_if_fail (buf != NULL || len == 0);
  g_return_if_fail (out != NULL);

  normalize = dec->bare == SMTP_BARE_NORMALIZE;
  /* A fresh decoder starts a BDAT message; DATA states do not mix in. */
  if (dec->state == ST_LINE_START)
    dec->state = ST_CHUNK_TEXT;
  g_return_if_fail (dec->state == ST_CHUNK_TEXT || dec->state == ST_CHUNK_CR);

  if (dec->state == ST_CHUNK_CR && len > 0)
    {
      /* the previous chunk ended in a CR, already stored */
      dec->state = ST_CHUNK_TEXT;
      if (buf[0] == '\n')
        {
          emit (dec, out, buf, 1);
          account_line_end (dec);
          i = run = 1;
        }
      else if (normalize)
        {
          emit (dec, out, crlf + 1, 1);
          account_line_end (dec);
        }
      else
        account_text (dec, (const guint8 *)"\r", 1);
    }

  while (i < len)
    {
      const guint8 *stop = find_newline (buf + i, buf + len);
      gsize n = (gsize)(stop - (buf + i));

      account_text (dec, buf + i, n);
      i += n;
      if (i == len)
        break;
      if (buf[i] == '\r')
        {
          if (i + 1 == len)
            {
              /* store the CR now; the next chunk says whether it was bare */
              i++;
              dec->state = ST_CHUNK_CR;
              break;
            }
          if (buf[i + 1] == '\n')
            {
              i += 2;
              account_line_end (dec);
              continue;
            }
          if (!normalize)
            {
              /* stored as given: a bare CR is just an octet of the line */
              account_text (dec, buf + i, 1);
              i++;
              continue;
            }
        }
      else if (!normalize)
        {
          /* a bare LF stored as given still ends a line for the counts */
          i++;
          account_line_end (dec);
          continue;
        }
      emit (dec, out, buf + run, i - run);
      emit_normalized (dec, out);
      i++;
      run = i;
    }
  emit (dec, out, buf + run, i - run);
}

void
smtp_data_decoder_finish_chunks (SmtpDataDecoder *dec, GByteArray *out)
{
  g_return_if_fail (dec != NULL);
  g_return_if_fail (out != NULL);

  if (dec->state != ST_CHUNK_CR)
    return;
  /* the last chunk ended in a bare CR */
  dec->state = ST_CHUNK_TEXT;
  if (dec->bare == SMTP_BARE_NORMALIZE)
    {
      emit (dec, out, crlf + 1, 1);
      account_line_end (dec);
    }
  else
    account_text (dec, (const guint8 *)"\r", 1);
}
