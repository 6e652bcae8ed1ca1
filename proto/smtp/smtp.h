/* SPDX-License-Identifier: MIT
 *
 * smtp.h — the server side of SMTP as pure codecs over bytes (no sockets):
 * the command line reader, the command parser, the DATA decoder (dot-
 * unstuffing, the end-of-data sequence, bare CR/LF policy, limits), BDAT
 * arguments and the SASL PLAIN/LOGIN encodings.  RFC 5321, RFC 1870 (SIZE),
 * RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8), RFC 3461 (DSN), RFC 3030
 * (CHUNKING), RFC 4954 (AUTH), RFC 4616 (PLAIN).  GLib only.
 *
 * Hostile input (TESTING.md, "SMTP"): memory is bounded by the named limits
 * below whatever the peer sends; a NUL in a command is an error; only
 * <CR><LF>.<CR><LF> ends DATA — "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r",
 * "\r\n.\r\r\n" never do (SMTP smuggling, CVE-2023-51764..6); CR, LF and
 * NUL never come out of an ESMTP parameter value (xtext is decoded and
 * checked by proto/mail).
 */
#pragma once

#include <glib.h>

#include "proto/mail/mail-address.h"
#include "proto/mail/mail-param.h"

G_BEGIN_DECLS

#define SMTP_ERROR (smtp_error_quark ())
GQuark smtp_error_quark (void);

/* Each error names the reply the server gives (the session maps them). */
typedef enum
{
  SMTP_ERROR_LINE_TOO_LONG, /* 500 5.5.2 Error: line too long */
  SMTP_ERROR_BARE_NEWLINE,  /* 521 5.5.2 Error: bare <LF> received (and close) */
  SMTP_ERROR_NUL,           /* 500 5.5.2 Error: NUL in command */
  SMTP_ERROR_UNKNOWN,       /* 502 5.5.2 Error: command not recognized */
  SMTP_ERROR_SYNTAX,        /* 501 5.5.4 Syntax error in parameters or arguments */
  SMTP_ERROR_BAD_SENDER,    /* 501 5.1.7 Bad sender address syntax */
  SMTP_ERROR_BAD_RCPT,      /* 501 5.1.3 Bad recipient address syntax */
  SMTP_ERROR_BAD_PARAM,     /* 555 5.5.4 Unsupported or malformed MAIL/RCPT parameter */
  SMTP_ERROR_8BIT,          /* 553 5.6.7 8-bit address without SMTPUTF8 */
  SMTP_ERROR_BAD_BASE64,    /* 501 5.5.2 Cannot decode response (AUTH) */
} SmtpError;

/* ---- limits ---------------------------------------------------------------- */

/* RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with CRLF. */
#define SMTP_MAX_COMMAND_LINE 512
/* MAIL and RCPT grow with the extensions we announce (RFC 1870 +26, RFC 3461
 * +100 ENVID/RET on MAIL and +500 ORCPT/NOTIFY on RCPT, RFC 6531 UTF-8). */
#define SMTP_MAX_MAIL_LINE 1024
#define SMTP_MAX_RCPT_LINE 1024
/* An AUTH line carries a base64 initial response (RFC 4954 §4: 12288). */
#define SMTP_MAX_AUTH_LINE 12288
/* What the line reader buffers at most for one line, whatever the verb. */
#define SMTP_MAX_LINE (SMTP_MAX_AUTH_LINE + 2)
/* RFC 4954 / RFC 4616 fields (authzid, authcid, password). */
#define SMTP_MAX_SASL_FIELD 255
/* RFC 3030: BDAT sizes are decimal; we refuse more digits than this. */
#define SMTP_MAX_BDAT_DIGITS 19
/* RFC 1870 §3: size-value = 1*20DIGIT (a larger value saturates). */
#define SMTP_MAX_SIZE_DIGITS 20
/* RFC 3461 §4.4: an ENVID is at most 100 characters (as sent, xtext). */
#define SMTP_MAX_ENVID 100
/* RFC 4422 §3.1: a SASL mechanism name is 1 to 20 characters. */
#define SMTP_MAX_SASL_MECHANISM 20

/* ---- the command line reader ---------------------------------------------- */

/* Reads lines ending in CRLF from a byte stream, with a state (so a line
 * longer than the limit is discarded up to its end with bounded memory, and
 * the next line is read normally).  It never copies: the line points into
 * the caller's buffer. */
typedef enum
{
  SMTP_LINE_NEED_MORE, /* no whole line yet; *consumed bytes may be dropped */
  SMTP_LINE_OK,        /* a line (without its CRLF) */
  SMTP_LINE_TOO_LONG,  /* a line over the limit ended (its bytes are consumed) */
  SMTP_LINE_BARE_LF,   /* a line ended by LF without CR (returned as a line too) */
} SmtpLineStatus;

typedef struct
{
  gboolean discarding; /* inside an over-long line */
} SmtpLineReader;

void smtp_line_reader_init (SmtpLineReader *reader);
/* Look at buf[0..len): on SMTP_LINE_OK / SMTP_LINE_BARE_LF *line and
 * *line_len give the line without its terminator; *consumed is how many
 * bytes of buf are done with (the line and its terminator; or, while
 * discarding an over-long line, everything seen).  With NEED_MORE and
 * *consumed == 0 the caller keeps the bytes and reads more, but never more
 * than `max` + 2 bytes in total: past that the reader starts discarding by
 * itself.  A bare CR inside a line is part of the line (the parser refuses
 * it). */
SmtpLineStatus smtp_line_reader_next (SmtpLineReader *reader, const guint8 *buf, gsize len,
                                      gsize max, gsize *consumed, const char **line,
                                      gsize *line_len);

/* ---- commands -------------------------------------------------------------- */

typedef enum
{
  SMTP_CMD_HELO,
  SMTP_CMD_EHLO,
  SMTP_CMD_MAIL,
  SMTP_CMD_RCPT,
  SMTP_CMD_DATA,
  SMTP_CMD_BDAT,
  SMTP_CMD_RSET,
  SMTP_CMD_NOOP,
  SMTP_CMD_QUIT,
  SMTP_CMD_VRFY,
  SMTP_CMD_EXPN,
  SMTP_CMD_HELP,
  SMTP_CMD_STARTTLS,
  SMTP_CMD_AUTH,
} SmtpVerb;

const char *smtp_verb_name (SmtpVerb verb); /* "MAIL" */

/* DSN (RFC 3461) */
typedef enum
{
  SMTP_NOTIFY_DEFAULT = 0, /* no NOTIFY given: failure and delay */
  SMTP_NOTIFY_NEVER = 1 << 0,
  SMTP_NOTIFY_SUCCESS = 1 << 1,
  SMTP_NOTIFY_FAILURE = 1 << 2,
  SMTP_NOTIFY_DELAY = 1 << 3,
} SmtpNotify;

typedef enum
{
  SMTP_RET_DEFAULT = 0,
  SMTP_RET_FULL,
  SMTP_RET_HDRS,
} SmtpRet;

typedef enum
{
  SMTP_BODY_DEFAULT = 0, /* 7BIT */
  SMTP_BODY_7BIT,
  SMTP_BODY_8BITMIME,
  SMTP_BODY_BINARYMIME,
} SmtpBody;

typedef enum
{
  SMTP_PARSE_NONE = 0,
  /* EHLO was given: ESMTP parameters are allowed on MAIL/RCPT */
  SMTP_PARSE_ESMTP = 1 << 0,
  /* accept what Postfix accepts from real clients: "MAIL FROM: <a@b>"
   * (space after the colon), an address without angle brackets */
  SMTP_PARSE_LENIENT = 1 << 1,
} SmtpParseFlags;

typedef struct
{
  SmtpVerb verb;
  char *arg; /* the rest of the line after the verb and one space, trailing
              * blanks removed, or "" */

  /* MAIL / RCPT */
  MailPath *path;     /* the path; <> on MAIL is a null path */
  MailParams *params; /* every parameter as given (keywords upper-cased);
                       * an empty set when none, never NULL on MAIL/RCPT */
  /* MAIL: the known parameters, checked */
  guint64 size;      /* SIZE=, 0 when absent */
  SmtpBody body;     /* BODY= */
  gboolean smtputf8; /* SMTPUTF8 */
  SmtpRet ret;       /* RET= */
  char *envid;       /* ENVID= decoded from xtext, or NULL */
  char *auth;        /* AUTH= (RFC 4954 §5) decoded, or NULL */
  /* RCPT: the known parameters, checked */
  guint notify; /* SmtpNotify bits (NEVER alone, or a combination of the others) */
  char *orcpt;  /* ORCPT= decoded: "rfc822;addr" (addr-type;addr), or NULL */

  /* BDAT */
  guint64 chunk_size;
  gboolean last;

  /* AUTH */
  char *mechanism;        /* upper-cased */
  char *initial_response; /* as given (base64 or "="), or NULL */
} SmtpCommand;

/* Parse one command line (without CRLF).  Unknown ESMTP parameters are kept
 * in params and not refused here (the session refuses the ones it did not
 * announce with 555); known ones are checked (SIZE digits, BODY values,
 * RET/NOTIFY/ORCPT/ENVID syntax, duplicates).  Per-verb line limits
 * (SMTP_MAX_COMMAND_LINE, _MAIL_LINE, _RCPT_LINE, _AUTH_LINE) give
 * SMTP_ERROR_LINE_TOO_LONG.  MAIL paths accept <> and RCPT accepts
 * <postmaster>; 8-bit bytes in a path need SMTPUTF8 on MAIL (the session
 * passes MAIL's SMTPUTF8 on with `utf8`). */
SmtpCommand *smtp_command_parse (const char *line, gsize len, SmtpParseFlags flags, gboolean utf8,
                                 GError **error);
void smtp_command_free (SmtpCommand *cmd);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmtpCommand, smtp_command_free)

/* ---- DATA ------------------------------------------------------------------ */

typedef enum
{
  SMTP_BARE_REJECT,    /* Postfix smtpd_forbid_bare_newline = yes: 521 and close */
  SMTP_BARE_NORMALIZE, /* bare LF or CR becomes CRLF in the stored message */
} SmtpBarePolicy;

typedef enum
{
  SMTP_DATA_MORE,         /* all of the input consumed, the end not seen yet */
  SMTP_DATA_END,          /* <CRLF>.<CRLF> seen; *consumed stops right after it */
  SMTP_DATA_BARE_NEWLINE, /* SMTP_BARE_REJECT and a bare CR or LF was seen: stop */
} SmtpDataStatus;

typedef struct
{
  /* limits, set by the caller before the first feed (0 = none) */
  guint64 max_size;        /* message octets after unstuffing, CRLF counted */
  guint64 max_header_size; /* the header section (up to the empty line) */
  gsize max_line;          /* octets of one line without CRLF */
  SmtpBarePolicy bare;

  /* results so far */
  guint64 size;            /* octets of the message (all of it, also past max_size) */
  gboolean too_big;        /* size went over max_size: output stopped there */
  gboolean header_too_big; /* the header section went over max_header_size */
  gboolean line_too_long;  /* a line over max_line */
  gboolean has_8bit;       /* a byte >= 0x80 */
  gboolean has_nul;        /* a NUL (stored verbatim) */

  /* private state */
  guint state;
  gboolean in_header;
  guint64 header_size;
  gsize line_len;
} SmtpDataDecoder;

/* Starts at the beginning of a line (right after 354).  It clears the whole
 * struct, limits and policy included: set them after init. */
void smtp_data_decoder_init (SmtpDataDecoder *dec);
/* Decode buf[0..len): the message octets (dot-unstuffed, CRLF line ends;
 * the final CRLF before the dot belongs to the message, the dot line does
 * not) are appended to `out` — at most max_size of them in all; beyond
 * that they are counted but dropped (a GByteArray holds at most G_MAXUINT
 * octets: set max_size).  *consumed is how much of buf was read: all of it
 * for MORE, up to the end sequence for END (bytes after it are the next
 * commands, pipelined), just past the offending bare CR or LF for
 * BARE_NEWLINE (so the counts do not depend on how the input was split).
 * Once END or BARE_NEWLINE was returned, further feeds return the same
 * status and consume nothing.  A dot after a bare newline
 * (NORMALIZE) is not at a line start for SMTP framing: it is kept, and
 * never ends the message. */
SmtpDataStatus smtp_data_decoder_feed (SmtpDataDecoder *dec, const guint8 *buf, gsize len,
                                       GByteArray *out, gsize *consumed);

/* BDAT (RFC 3030) carries raw octets: the decoder only counts and checks
 * limits (and line lengths/8-bit like DATA) without unstuffing or an end
 * sequence; the chunk ends by its size.  Bare CR/LF inside BDAT are not
 * an SMTP framing issue and are stored as given, except with
 * SMTP_BARE_NORMALIZE which rewrites them to CRLF. */
void smtp_data_decoder_feed_chunk (SmtpDataDecoder *dec, const guint8 *buf, gsize len,
                                   GByteArray *out);
/* After the LAST chunk: a CR that ended the last chunk cannot be told from a
 * CRLF split across chunks until now; this completes it (NORMALIZE stores
 * its LF).  A decoder is fed either DATA or chunks, never both. */
void smtp_data_decoder_finish_chunks (SmtpDataDecoder *dec, GByteArray *out);

/* ---- SASL (RFC 4954, RFC 4616) -------------------------------------------- */

/* Decode a PLAIN response (base64 of authzid NUL authcid NUL password).
 * Fields are bounded by SMTP_MAX_SASL_FIELD; a NUL inside the password or
 * a missing field is SMTP_ERROR_SYNTAX; bad base64 SMTP_ERROR_BAD_BASE64.
 * authzid is "" when none. */
gboolean smtp_sasl_plain_decode (const char *b64, char **authzid, char **authcid, char **password,
                                 GError **error);
/* One LOGIN step: the base64 of a user name or password (no NUL, bounded). */
char *smtp_sasl_base64_field (const char *b64, GError **error);

G_END_DECLS
