/* SPDX-License-Identifier: MIT
 *
 * smtp-line.c — the SMTP command line reader (RFC 5321 §2.3.8, §4.5.3.1.4).
 *
 * Contract (see smtp.h): smtp_line_reader_next() finds one line in the
 * caller's buffer without copying it.  Memory stays bounded whatever the
 * peer sends: once `max` + 2 bytes have arrived without a LF, the line is
 * too long and the reader switches to discarding — it consumes everything
 * up to and including the next LF and then reports SMTP_LINE_TOO_LONG once,
 * so the session answers 500 and the following command (often a NOOP sent
 * to resynchronise) is read normally.  A LF without CR is reported as
 * SMTP_LINE_BARE_LF; the session decides (Postfix's
 * smtpd_forbid_bare_newline).  Bytes other than LF are never interpreted
 * here: a CR inside a line or a NUL is the command parser's business.
 */
#include <string.h>

#include "smtp.h"

void
smtp_line_reader_init (SmtpLineReader *reader)
{
  g_return_if_fail (reader != NULL);

  reader->discarding = FALSE;
}

SmtpLineStatus
smtp_line_reader_next (SmtpLineReader *reader, const guint8 *buf, gsize len, gsize max,
                       gsize *consumed, const char **line, gsize *line_len)
{
  const guint8 *lf;
  gsize bound;
  gsize end;
  gsize content;

  g_return_val_if_fail (reader != NULL, SMTP_LINE_NEED_MORE);
  g_return_val_if_fail (buf != NULL || len == 0, SMTP_LINE_NEED_MORE);
  g_return_val_if_fail (consumed != NULL, SMTP_LINE_NEED_MORE);

  *consumed = 0;
  if (line != NULL)
    *line = NULL;
  if (line_len != NULL)
    *line_len = 0;

  if (!reader->discarding)
    {
      /* A LF further than max + 1 bytes in means more than max octets
       * before the terminator, so there is no need to look beyond. */
      bound = max > G_MAXSIZE - 2 ? G_MAXSIZE : max + 2;
      lf = memchr (buf, '\n', MIN (len, bound));
      if (lf != NULL)
        {
          end = (gsize)(lf - buf);
          content = end > 0 && buf[end - 1] == '\r' ? end - 1 : end;
          *consumed = end + 1;
          if (content > max)
            return SMTP_LINE_TOO_LONG;
          if (line != NULL)
            *line = (const char *)buf;
          if (line_len != NULL)
            *line_len = content;
          return content == end ? SMTP_LINE_BARE_LF : SMTP_LINE_OK;
        }
      if (len < bound)
        return SMTP_LINE_NEED_MORE;
      /* max + 2 bytes without a LF: whatever comes, the line is too long.
       * Drop it from here on rather than make the caller buffer more. */
      reader->discarding = TRUE;
    }

  lf = memchr (buf, '\n', len);
  if (lf == NULL)
    {
      *consumed = len;
      return SMTP_LINE_NEED_MORE;
    }
  reader->discarding = FALSE;
  *consumed = (gsize)(lf - buf) + 1;
  return SMTP_LINE_TOO_LONG;
}
