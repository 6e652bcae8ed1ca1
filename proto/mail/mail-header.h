/* SPDX-License-Identifier: MIT
 *
 * mail-header.h — header fields we add or change (RFC 5322 §2.2, §2.1.1,
 * §3.6).  Pure functions; GLib only.
 *
 * - A name is 1..MAIL_MAX_HEADER_NAME printable US-ASCII characters (33..126)
 *   other than ':' (RFC 5322 ftext).
 * - A value we are asked to add is at most MAIL_MAX_HEADER_VALUE octets,
 *   contains no CR, LF, NUL or other control character (HT allowed), and is
 *   either ASCII or valid UTF-8 (RFC 6532).  Callers that hold a folded value
 *   unfold it first; a CR or LF inside a value is how header injection starts.
 * - Folding turns name + value into "Name: value\r\n" lines of at most
 *   MAIL_HEADER_FOLD_WIDTH octets (excluding CRLF) where whitespace allows:
 *   CRLF is inserted before an existing SP/HT, never inside a word and never
 *   so that a line would hold only whitespace.  Unfolding the result (after
 *   "Name:" and the one SP we add) gives back the value byte for byte.  A word
 *   that cannot fit under MAIL_MAX_HEADER_LINE (998) is
 *   MAIL_ERROR_HEADER_LINE_TOO_LONG: we never split a word.  An empty value
 *   folds to "Name:\r\n".
 * - Unfolding (RFC 5322 §2.2.3) removes every CRLF (or bare LF) that is
 *   followed by SP/HT, and a line end at the very end; other bytes are kept.
 * - Names compare case-insensitively (ASCII).
 */
#pragma once

#include <glib.h>

#include "proto/mail/mail-error.h"

G_BEGIN_DECLS

/* longer names exist nowhere; bounded so a hostile one costs nothing */
#define MAIL_MAX_HEADER_NAME 256
/* fits one milter packet (libmilter's 64 KiB) with its name */
#define MAIL_MAX_HEADER_VALUE 32768
/* RFC 5322 §2.1.1: SHOULD 78, MUST 998, both excluding CRLF */
#define MAIL_HEADER_FOLD_WIDTH 78
#define MAIL_MAX_HEADER_LINE 998

gboolean mail_header_name_check (const char *name, gssize len, GError **error);
gboolean mail_header_value_check (const char *value, gssize len, GError **error);

/* "Name: value\r\n", folded as described; checks name and value first. */
char *mail_header_fold (const char *name, const char *value, GError **error);
/* The same with another width (>= 20, <= MAIL_MAX_HEADER_LINE) and line end
 * (e.g. "\n" for a file in local format). */
char *mail_header_fold_full (const char *name, const char *value, gsize width, const char *eol,
                             GError **error);

/* Unfold a raw value (len -1: NUL-terminated).  Never fails. */
char *mail_header_unfold (const char *raw, gssize len);

gboolean mail_header_name_equal (const char *a, const char *b);
/* A GHashFunc consistent with mail_header_name_equal (). */
guint mail_header_name_hash (gconstpointer name);

G_END_DECLS
