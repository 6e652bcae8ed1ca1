/* SPDX-License-Identifier: MIT
 *
 * smtp-out.h — the client side of SMTP as pure codecs over bytes (no
 * sockets): what an EHLO reply offers, the MAIL and RCPT commands with
 * their ESMTP parameters, AUTH PLAIN / LOGIN, BDAT, and the dot-stuffing
 * of a message for DATA.  RFC 5321, RFC 1870 (SIZE), RFC 6152 (8BITMIME),
 * RFC 3030 (CHUNKING, BINARYMIME), RFC 6531 (SMTPUTF8), RFC 3461 (DSN),
 * RFC 4954 (AUTH), RFC 4616 (PLAIN), RFC 2920 (PIPELINING), RFC 2034
 * (ENHANCEDSTATUSCODES).  GLib only.
 *
 * Reply framing is proto/mail's: the caller reads replies with
 * mail_reply_parse() (bounded by MAIL_MAX_REPLY_PARSE_*) and hands a
 * complete EHLO reply to smtp_ehlo_parse().
 *
 * Commands are built only from what the server offered: SIZE= with SIZE,
 * BODY= with 8BITMIME (BINARYMIME also needs CHUNKING), RET/ENVID/NOTIFY/
 * ORCPT with DSN (silently left out otherwise: RFC 3461 §4 lets a client
 * relay to a server without DSN), SMTPUTF8 with SMTPUTF8.  What cannot be
 * sent without an extension the server lacks is an error naming it, so the
 * caller decides (RFC 6531 §3.2: 5.6.7; RFC 6152 §3: 5.6.3).  Nothing that
 * a peer or the queue supplies can put CR, LF, NUL or another control
 * character on the wire: addresses are checked, ENVID and ORCPT values are
 * xtext-encoded (RFC 3461 §4), credentials are base64.
 *
 * Every built command ends in CRLF and is checked against the line limits
 * of proto/smtp/smtp.h (SMTP_MAX_MAIL_LINE, SMTP_MAX_RCPT_LINE,
 * SMTP_MAX_AUTH_LINE), the same our server accepts.
 */
#pragma once

#include <glib.h>

#include "proto/mail/mail-reply.h"
#include "proto/smtp/smtp.h"

G_BEGIN_DECLS

#define SMTP_OUT_ERROR (smtp_out_error_quark ())
GQuark smtp_out_error_quark (void);

typedef enum
{
  SMTP_OUT_ERROR_EHLO,             /* the EHLO reply is not a 250 */
  SMTP_OUT_ERROR_ADDRESS,          /* empty recipient, control char, bad UTF-8, 8-bit without
                                   * SMTPUTF8 requested, longer than MAIL_MAX_PATH */
  SMTP_OUT_ERROR_NEEDS_SMTPUTF8,   /* UTF-8 address, the server has no SMTPUTF8 (5.6.7) */
  SMTP_OUT_ERROR_NEEDS_8BITMIME,   /* BODY=8BITMIME, the server has no 8BITMIME (5.6.3) */
  SMTP_OUT_ERROR_NEEDS_BINARYMIME, /* BODY=BINARYMIME without BINARYMIME+CHUNKING (5.6.3) */
  SMTP_OUT_ERROR_PARAM,            /* ENVID / ORCPT malformed or over its limit */
  SMTP_OUT_ERROR_CREDENTIALS,      /* empty, NUL inside, over SMTP_MAX_SASL_FIELD */
  SMTP_OUT_ERROR_LINE_TOO_LONG,    /* the command would exceed its line limit */
} SmtpOutError;

/* ---- EHLO ------------------------------------------------------------------- */

/* Service extensions the client cares about (RFC 5321 §4.1.1.1 keywords). */
typedef enum
{
  SMTP_EXT_PIPELINING = 1 << 0,
  SMTP_EXT_SIZE = 1 << 1,
  SMTP_EXT_8BITMIME = 1 << 2,
  SMTP_EXT_SMTPUTF8 = 1 << 3,
  SMTP_EXT_DSN = 1 << 4,
  SMTP_EXT_STARTTLS = 1 << 5,
  SMTP_EXT_AUTH = 1 << 6,
  SMTP_EXT_CHUNKING = 1 << 7,
  SMTP_EXT_ENHANCEDSTATUSCODES = 1 << 8,
  SMTP_EXT_BINARYMIME = 1 << 9,
} SmtpExt;

/* SASL mechanisms we can use (others offered are ignored). */
typedef enum
{
  SMTP_AUTH_MECH_PLAIN = 1 << 0,
  SMTP_AUTH_MECH_LOGIN = 1 << 1,
} SmtpAuthMech;

typedef struct
{
  guint ext;          /* SmtpExt bits */
  guint64 size_limit; /* "SIZE n": n; 0 when absent, 0 or not a number
                       * (RFC 1870 §4: no fixed limit); saturates */
  guint auth;         /* SmtpAuthMech bits offered by "AUTH" (or "AUTH=") */
} SmtpEhlo;

/* Read what a 250 EHLO reply offers: lines after the first are
 * "keyword *(SP param)", keywords case-insensitive; unknown keywords and
 * lines that are no keyword are ignored (servers send odd ones); the old
 * "AUTH=PLAIN LOGIN" form counts as AUTH.  Another code is
 * SMTP_OUT_ERROR_EHLO.  `out` is cleared first (a HELO session is a
 * cleared SmtpEhlo). */
gboolean smtp_ehlo_parse (const MailReply *reply, SmtpEhlo *out, GError **error);

/* ---- MAIL / RCPT ------------------------------------------------------------ */

typedef struct
{
  const char *sender; /* without <>, "" for the null path */
  guint64 size;       /* message octets: SIZE= when offered and > 0 */
  SmtpBody body;      /* BODY= (nothing for DEFAULT and 7BIT) */
  gboolean smtputf8;  /* SMTPUTF8 (needed for UTF-8 addresses; sent only when offered) */
  SmtpRet ret;        /* RET= with DSN */
  const char *envid;  /* ENVID= (decoded, xtext-encoded here) with DSN, or NULL */
} SmtpOutMail;

typedef struct
{
  const char *address; /* without <> */
  guint notify;        /* SmtpNotify bits, 0 = none sent */
  const char *orcpt;   /* "addr-type;address" decoded, or NULL */
} SmtpOutRcpt;

/* "MAIL FROM:<sender> [SIZE=n] [BODY=8BITMIME|BINARYMIME] [SMTPUTF8]
 * [RET=FULL|HDRS] [ENVID=xtext]\r\n".  SMTPUTF8 is sent when the mail asks
 * for it and the server offers it; an 8-bit sender needs both. */
char *smtp_out_mail_command (const SmtpEhlo *ehlo, const SmtpOutMail *mail, GError **error);
/* "RCPT TO:<address> [NOTIFY=...] [ORCPT=type;xtext]\r\n".  `smtputf8`:
 * the transaction's MAIL carried SMTPUTF8 (an 8-bit address needs it). */
char *smtp_out_rcpt_command (const SmtpEhlo *ehlo, const SmtpOutRcpt *rcpt, gboolean smtputf8,
                             GError **error);

/* Whether an address (without <>) has 8-bit bytes, i.e. needs SMTPUTF8. */
gboolean smtp_out_address_is_utf8 (const char *address);
/* Whether the header section (up to the first empty line, or all of it)
 * has 8-bit bytes (RFC 6532 headers: they need SMTPUTF8, not 8BITMIME). */
gboolean smtp_out_header_is_utf8 (const guint8 *data, gsize len);
/* Whether any byte is >= 0x80. */
gboolean smtp_out_has_8bit (const guint8 *data, gsize len);

/* ---- AUTH (RFC 4954) -------------------------------------------------------- */

/* "AUTH PLAIN <base64(NUL user NUL password)>\r\n" (no authzid). */
char *smtp_out_auth_plain (const char *user, const char *password, GError **error);
/* One LOGIN step: "<base64(field)>\r\n" (the user name after the first 334,
 * the password after the second).  The command itself is "AUTH LOGIN\r\n". */
char *smtp_out_auth_login_step (const char *field, GError **error);

/* Overwrite and free a string that held a credential. */
void smtp_out_wipe (char *s);

/* ---- BDAT (RFC 3030) -------------------------------------------------------- */

/* "BDAT <size>[ LAST]\r\n"; the chunk's octets follow as they are. */
char *smtp_out_bdat_command (guint64 size, gboolean last);

/* ---- DATA: dot-stuffing (RFC 5321 §4.5.2) ----------------------------------- */

/* Streams a message into its DATA form: every line end (CRLF, and a bare
 * LF or bare CR, normalised to CRLF so no receiver can be fooled by
 * "\n.\n" or "\r.\r" — SMTP smuggling, CVE-2023-51764) is sent as CRLF; a
 * '.' that starts a line is doubled; finish() ends an unterminated last
 * line with CRLF and appends ".\r\n".  The message can arrive in pieces
 * of any size (a CRLF split across two feeds is still one line end). */
typedef struct
{
  guint state;     /* private */
  guint64 in_len;  /* octets fed */
  guint64 out_len; /* octets produced */
} SmtpDotStuffer;

void smtp_dot_stuffer_init (SmtpDotStuffer *s);
void smtp_dot_stuffer_feed (SmtpDotStuffer *s, const guint8 *buf, gsize len, GByteArray *out);
void smtp_dot_stuffer_finish (SmtpDotStuffer *s, GByteArray *out);

G_END_DECLS
