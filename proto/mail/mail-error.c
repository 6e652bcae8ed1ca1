/* SPDX-License-Identifier: MIT
 *
 * mail-error.c — the MAIL_ERROR quark and the byte checks every proto/mail
 * parser runs before looking at syntax.
 *
 * Contract: mail_check_text() refuses what must never reach a log line, a
 * queue file or a shell (CVE-2020-28026, CVE-2020-7247 taught us where such
 * bytes end up): NUL, CR, LF and every other control character, and 8-bit
 * bytes unless the caller allows UTF-8, in which case they must be valid.
 */
#include <string.h>

#include "mail-private.h"

G_DEFINE_QUARK (mail - error - quark, mail_error)

gboolean
mail_check_text (const char *s, gsize len, gboolean allow_tab, gboolean allow_utf8,
                 const char *what, GError **error)
{
  gboolean has_8bit = FALSE;

  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar)s[i];

      if (c >= 0x80)
        {
          has_8bit = TRUE;
          continue;
        }
      if ((c < 0x20 && !(c == '\t' && allow_tab)) || c == 0x7f)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR,
                       "%s: control character 0x%02x at offset %" G_GSIZE_FORMAT, what, c, i);
          return FALSE;
        }
    }
  if (!has_8bit)
    return TRUE;
  if (!allow_utf8)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_UTF8_NOT_ALLOWED,
                   "%s: 8-bit character without SMTPUTF8", what);
      return FALSE;
    }
  if (!g_utf8_validate_len (s, len, NULL))
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_INVALID_UTF8, "%s: invalid UTF-8", what);
      return FALSE;
    }
  /* Valid UTF-8 may still encode C1 controls (U+0080..U+009F, 0xC2 0x80..0x9F),
   * which terminals and some log viewers interpret. */
  for (gsize i = 0; i + 1 < len; i++)
    {
      if ((guchar)s[i] == 0xc2 && (guchar)s[i + 1] >= 0x80 && (guchar)s[i + 1] <= 0x9f)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR,
                       "%s: control character U+%04X at offset %" G_GSIZE_FORMAT, what,
                       (guint)(guchar)s[i + 1], i);
          return FALSE;
        }
    }
  return TRUE;
}
