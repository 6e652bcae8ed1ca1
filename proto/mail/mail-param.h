/* SPDX-License-Identifier: MIT
 *
 * mail-param.h — ESMTP MAIL/RCPT parameters (RFC 5321 §4.1.2 esmtp-param,
 * RFC 6531 §3.3) and xtext (RFC 3461 §4).  Pure functions; GLib only.
 *
 * mail_params_parse() splits "SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=x+2By"
 * into keyword/value pairs: keyword = ALPHA / DIGIT / '-' (starting with
 * ALPHA or DIGIT), value = printable ASCII except '=' and SP (UTF-8 too with
 * MAIL_PARSE_SMTPUTF8).  Parameters are separated by one or more SP; a
 * keyword without '=' has no value (NULL).  A keyword given twice is refused
 * (it would let "SIZE=1 SIZE=999999999" mean whatever the reader picks).
 * Limits are checked before anything is copied.  Values are kept exactly as
 * sent (still xtext-encoded where the extension says so); decode with
 * mail_xtext_decode(), which refuses to produce CR, LF, NUL, any control
 * character or 8-bit bytes — the lesson of CVE-2020-28026.
 */
#pragma once

#include <glib.h>

#include "proto/mail/mail-error.h"

G_BEGIN_DECLS

#define MAIL_MAX_ESMTP_PARAMS 16
#define MAIL_MAX_ESMTP_KEYWORD 32
/* ORCPT is the longest in use: "rfc822;" + an xtext address (RFC 3461 §4.2) */
#define MAIL_MAX_ESMTP_VALUE 500
/* the whole parameter string, bounded before any work */
#define MAIL_MAX_ESMTP_PARAMS_LEN 2048

typedef struct _MailParams MailParams;

/* flags: MailParseFlags (only MAIL_PARSE_SMTPUTF8 matters).  An empty or
 * all-blank string yields an empty set. */
MailParams *mail_params_parse (const char *s, gssize len, guint flags, GError **error);
/* The milter form: one parameter per string, NULL-terminated. */
MailParams *mail_params_parse_argv (const char *const *argv, guint flags, GError **error);
MailParams *mail_params_new (void);
void mail_params_free (MailParams *params);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MailParams, mail_params_free)
MailParams *mail_params_copy (const MailParams *params);

guint mail_params_get_n (const MailParams *params);
const char *mail_params_get_keyword (const MailParams *params, guint i);
/* NULL when the parameter had no '=' */
const char *mail_params_get_value (const MailParams *params, guint i);
/* Case-insensitive on the keyword.  Returns whether it is present; *out_value
 * (optional) gets its value, NULL for a keyword without value. */
gboolean mail_params_lookup (const MailParams *params, const char *keyword, const char **out_value);
/* Value of keyword or NULL (absent or without value). */
const char *mail_params_get (const MailParams *params, const char *keyword);
/* "KEY=VALUE KEY2" as sent; "" when empty. */
char *mail_params_to_string (const MailParams *params);

/* xtext (RFC 3461 §4): bytes outside '!'..'~', '+' and '=' become "+XX". */
char *mail_xtext_encode (const char *s, gssize len);
/* Decode "+XX" (hex, either case).  Refuses a malformed escape, a raw byte
 * xtext does not allow, and a decoded control character or 8-bit byte. */
char *mail_xtext_decode (const char *s, gssize len, GError **error);

G_END_DECLS
