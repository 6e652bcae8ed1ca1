/* SPDX-License-Identifier: MIT
 *
 * mail-private.h — helpers shared by the proto/mail modules; not installed,
 * not for other directories (tests may include it).
 */
#pragma once

#include <glib.h>
#include <string.h>

#include "mail-error.h"

G_BEGIN_DECLS

/* Scan [s, s+len) for bytes that must never appear: NUL, CR, LF, the other C0
 * controls (HT only when allow_tab), DEL, and — when the text is UTF-8 — the
 * C1 controls U+0080..U+009F.  8-bit bytes are refused with
 * MAIL_ERROR_UTF8_NOT_ALLOWED unless allow_utf8, and must then be valid UTF-8
 * (MAIL_ERROR_INVALID_UTF8).  what names the thing in the error message. */
gboolean mail_check_text (const char *s, gsize len, gboolean allow_tab, gboolean allow_utf8,
                          const char *what, GError **error);

/* Resolve a (ptr, gssize) pair where len < 0 means NUL-terminated. */
static inline gsize
mail_len (const char *s, gssize len)
{
  return len < 0 ? strlen (s) : (gsize)len;
}

G_END_DECLS
