/* SPDX-License-Identifier: MIT
 *
 * mail-reply.h — SMTP replies with enhanced status codes (RFC 5321 §4.2,
 * §4.5.3.1.5; RFC 3463; RFC 2034), and the one table of default replies the
 * whole project uses.  Pure functions; GLib only.
 *
 * A MailReply is immutable and reference-counted: a code, an optional
 * enhanced status code "class.subject.detail" and one or more text lines
 * (stored without code or enhanced code).  mail_reply_new() validates:
 *   - code: three digits 200..599, second digit 0..5;
 *   - enhanced: class 2, 4 or 5 equal to the code's first digit, subject and
 *     detail 0..999 written without leading zeros ("5.7.1", not "5.07.1");
 *     a 3xx code takes no enhanced code (RFC 3463 has no class 3);
 *   - text: printable US-ASCII and HT only (RFC 5321 textstring): CR, NUL
 *     and other controls are MAIL_ERROR_FORBIDDEN_CHAR, 8-bit bytes
 *     MAIL_ERROR_UTF8_NOT_ALLOWED; LF splits lines (one trailing LF is
 *     ignored); at most MAIL_MAX_REPLY_LINES lines (the milter limit), each
 *     formatted line at most MAIL_MAX_REPLY_LINE octets including code,
 *     enhanced code and CRLF.  Lines are never wrapped for the caller.
 *
 * mail_reply_parse() reads a reply from a peer (the SMTP client side).  It is
 * tolerant where real servers are sloppy — bare LF line ends, lines up to
 * MAIL_MAX_REPLY_PARSE_LINE, up to MAIL_MAX_REPLY_PARSE_LINES lines, valid
 * UTF-8 in the text — and strict where it matters: every line must carry the
 * same code, controls are refused, memory is bounded.  The enhanced code is
 * taken from the first line when its text starts with one whose class
 * matches the code; it is stripped from every line that repeats it.
 *
 * Completing a partial reply (mail_reply_complete), e.g. a rule's
 * `reject 550 "Spam"` or a connector that only gave a code:
 *   - no code: everything missing comes from the fallback default;
 *   - a code but no enhanced code: the fallback's enhanced code when the
 *     classes agree (so 552 with MAIL_REPLY_MESSAGE_TOO_BIG keeps 5.3.4),
 *     otherwise the policy default of the class, as Postfix does for access
 *     maps: 2.0.0, 4.7.1, 5.7.1; 3xx gets none;
 *   - no text: the fallback's text when the classes agree, otherwise the
 *     class's generic text ("Ok", "Try again later", "Message rejected").
 */
#pragma once

#include <glib.h>

#include "proto/mail/mail-error.h"

G_BEGIN_DECLS

/* RFC 5321 §4.5.3.1.5, including code, separator, enhanced code and CRLF */
#define MAIL_MAX_REPLY_LINE 512
/* libmilter's smfi_setmlreply limit; also plenty for our own server */
#define MAIL_MAX_REPLY_LINES 32
/* what we accept from peers (bounded memory, tolerant of long lines) */
#define MAIL_MAX_REPLY_PARSE_LINE 2048
#define MAIL_MAX_REPLY_PARSE_LINES 128
/* "5.999.999" */
#define MAIL_MAX_ENHANCED_CODE 9

typedef enum
{
  MAIL_REPLY_OK,                   /* 250 2.0.0 Ok */
  MAIL_REPLY_REJECT,               /* 550 5.7.1 Message rejected */
  MAIL_REPLY_REJECT_RCPT,          /* 550 5.7.1 Recipient rejected */
  MAIL_REPLY_REJECT_SENDER,        /* 550 5.7.1 Sender rejected */
  MAIL_REPLY_REJECT_HELO,          /* 550 5.7.1 Helo command rejected */
  MAIL_REPLY_REJECT_CONNECT,       /* 554 5.7.1 Access denied */
  MAIL_REPLY_TEMPFAIL,             /* 451 4.7.1 Try again later */
  MAIL_REPLY_TEMPFAIL_RCPT,        /* 450 4.7.1 Recipient temporarily rejected */
  MAIL_REPLY_TEMPFAIL_SENDER,      /* 450 4.7.1 Sender temporarily rejected */
  MAIL_REPLY_SERVICE_UNAVAILABLE,  /* 451 4.7.1 Service unavailable - try again later */
  MAIL_REPLY_DISCARD,              /* 250 2.0.0 Ok  (a discard must look like success) */
  MAIL_REPLY_QUARANTINE,           /* 250 2.0.0 Ok  (held, but accepted for the client) */
  MAIL_REPLY_SHUTDOWN,             /* 421 4.3.2 Service shutting down */
  MAIL_REPLY_TIMEOUT,              /* 421 4.4.2 Error: timeout exceeded */
  MAIL_REPLY_TOO_MANY_RCPTS,       /* 452 4.5.3 Error: too many recipients */
  MAIL_REPLY_MESSAGE_TOO_BIG,      /* 552 5.3.4 Message size exceeds fixed limit */
  MAIL_REPLY_INSUFFICIENT_STORAGE, /* 452 4.3.1 Insufficient system storage */
  MAIL_REPLY_QUEUE_ERROR,          /* 451 4.3.0 Error: queue file write error */
  MAIL_REPLY_SYNTAX_ERROR,         /* 501 5.5.4 Syntax error in parameters or arguments */
  MAIL_REPLY_BAD_SENDER_SYNTAX,    /* 501 5.1.7 Bad sender address syntax */
  MAIL_REPLY_BAD_RCPT_SYNTAX,      /* 501 5.1.3 Bad recipient address syntax */
  MAIL_REPLY_UNKNOWN_COMMAND,      /* 502 5.5.2 Error: command not recognized */
  MAIL_REPLY_N_DEFAULTS
} MailReplyDefault;

typedef struct _MailReply MailReply;

/* text may be NULL (one empty line); enhanced may be NULL or "" (none). */
MailReply *mail_reply_new (guint code, const char *enhanced, const char *text, GError **error);
/* lines: NULL-terminated, none may contain LF. */
MailReply *mail_reply_new_lines (guint code, const char *enhanced, const char *const *lines,
                                 GError **error);
/* Never fails. */
MailReply *mail_reply_new_default (MailReplyDefault which);
/* Fill in what is missing (code 0 = none, NULL/"" = none) as described above. */
MailReply *mail_reply_complete (MailReplyDefault fallback, guint code, const char *enhanced,
                                const char *text, GError **error);

MailReply *mail_reply_ref (MailReply *reply);
void mail_reply_unref (MailReply *reply);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MailReply, mail_reply_unref)

guint mail_reply_get_code (const MailReply *reply);
/* NULL when there is none */
const char *mail_reply_get_enhanced (const MailReply *reply);
guint mail_reply_get_n_lines (const MailReply *reply);
const char *mail_reply_get_line (const MailReply *reply, guint i);
const char *const *mail_reply_get_lines (const MailReply *reply);
/* Lines joined with "\n" (what a rule or a report shows). */
char *mail_reply_get_text (const MailReply *reply);

/* The wire form: "550-5.7.1 first\r\n550 5.7.1 last\r\n". */
char *mail_reply_format (const MailReply *reply);
/* The milter SMFIR_REPLYCODE form: the same lines without the final CRLF and
 * with every '%' in the text doubled. */
char *mail_reply_format_milter (const MailReply *reply);

/* Parse one complete reply from the start of [data, data+len); *out_consumed
 * gets its length (the next reply of a pipelined answer starts there).
 * MAIL_ERROR_INCOMPLETE means "read more and call again". */
MailReply *mail_reply_parse (const char *data, gsize len, gsize *out_consumed, GError **error);

/* The code alone: 200..599, second digit 0..5. */
gboolean mail_reply_check_code (guint code, GError **error);
/* An enhanced code alone; with code != 0 also its class against the code. */
gboolean mail_enhanced_code_check (const char *enhanced, guint code, GError **error);

/* The parts of a default reply (static strings). */
void mail_reply_default_get (MailReplyDefault which, guint *out_code, const char **out_enhanced,
                             const char **out_text);

/* '%' -> "%%" for milter reply text (libmilter and Postfix treat a single
 * '%' as malformed). */
char *mail_reply_escape_percent (const char *text);

G_END_DECLS
