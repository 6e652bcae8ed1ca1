/* SPDX-License-Identifier: MIT
 *
 * smtp-client.h — a small, synchronous SMTP client for one message
 * (RFC 5321): what `[quarantine] release_to` needs to re-inject a
 * quarantined message into a local MTA.
 *
 * vps_smtp_client_send() blocks the calling thread: run it in a GTask
 * worker thread (or a command-line tool), never on an event loop.  One
 * call is one connection and one transaction:
 *
 *   connect (GSocketClient, connect timeout) → greeting 220
 *   → EHLO (HELO when EHLO gets 5xx) → MAIL FROM:<sender> (null sender
 *   allowed) → RCPT TO per recipient (each reply kept; the transaction goes
 *   on when at least one is accepted) → DATA 354 → the message, CRLF
 *   normalised and dot-stuffed → "." → final reply → QUIT.
 *
 * Every reply is parsed with proto/mail's mail_reply_parse() (multi-line);
 * every read is bounded by the named limits below, and the whole exchange
 * by the overall timeout (each wait uses what is left of it).
 *
 * Not done here, on purpose: no STARTTLS, no AUTH, no PIPELINING, no MX
 * lookup (the host is connected to as given: release_to names a local,
 * trusted MTA), no DSN.  Remote delivery belongs to vsmtpd's delivery
 * agent, which decides between libESMTP and a client on proto/smtp.
 *
 * Message data: CRLF and bare LF end a line, and a bare CR is turned into
 * CRLF as well (RFC 5321 §2.3.8: CR and LF only as a pair; a lone CR is
 * how `\r.\r` smuggling starts).  A line starting with '.' gets one more
 * (§4.5.2); a message that does not end with a line end gets one.
 * Extensions used when the server offers them: SIZE (the size is sent),
 * 8BITMIME (BODY=8BITMIME for a message with 8-bit bytes), SMTPUTF8
 * (required, and sent, when an address holds UTF-8).
 *
 * Errors (VPS_SMTP_CLIENT_ERROR) name the step ("MAIL FROM:<a@b>", "DATA",
 * "end of data", ...) and quote the server's reply as
 * "550 5.7.1 first line / second line".
 */
#pragma once

#include <gio/gio.h>

#include "proto/mail/mail-reply.h"

G_BEGIN_DECLS

#define VPS_SMTP_CLIENT_ERROR (vps_smtp_client_error_quark ())
GQuark vps_smtp_client_error_quark (void);

typedef enum
{
  VPS_SMTP_CLIENT_ERROR_INVALID,  /* bad host:port, address or recipient list (caller's data) */
  VPS_SMTP_CLIENT_ERROR_CONNECT,  /* name lookup or TCP connect failed */
  VPS_SMTP_CLIENT_ERROR_TIMEOUT,  /* the overall (or connect) timeout passed */
  VPS_SMTP_CLIENT_ERROR_IO,       /* read/write failed, or the server closed */
  VPS_SMTP_CLIENT_ERROR_PROTOCOL, /* a reply that does not parse or is over a limit */
  VPS_SMTP_CLIENT_ERROR_TEMPFAIL, /* a 4xx reply (also: every recipient refused, one with 4xx) */
  VPS_SMTP_CLIENT_ERROR_REJECTED, /* a 5xx reply (also: every recipient refused with 5xx) */
  VPS_SMTP_CLIENT_ERROR_CANCELLED,
} VpsSmtpClientError;

/* One reply line as read, CR/LF excluded (longer lines: PROTOCOL error). */
#define VPS_SMTP_CLIENT_MAX_REPLY_LINE MAIL_MAX_REPLY_PARSE_LINE
/* Lines of one reply (an EHLO reply has one per extension). */
#define VPS_SMTP_CLIENT_MAX_REPLY_LINES MAIL_MAX_REPLY_PARSE_LINES
/* Bytes buffered while one reply is incomplete. */
#define VPS_SMTP_CLIENT_MAX_REPLY (64 * 1024)
/* Recipients of one transaction (RFC 5321 §4.5.3.1.8 asks servers for 100). */
#define VPS_SMTP_CLIENT_MAX_RCPTS 1000
/* Name sent with EHLO/HELO. */
#define VPS_SMTP_CLIENT_MAX_HELO 255

#define VPS_SMTP_CLIENT_DEFAULT_PORT 25
#define VPS_SMTP_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS (30 * 1000)
#define VPS_SMTP_CLIENT_DEFAULT_TIMEOUT_MS (120 * 1000)

typedef struct
{
  const char *helo_name;    /* NULL: g_get_host_name () */
  guint connect_timeout_ms; /* 0: the default; never more than timeout_ms */
  guint timeout_ms;         /* the whole exchange; 0: the default */
} VpsSmtpClientOptions;

typedef struct
{
  char *address;     /* as given */
  MailReply *reply;  /* the server's answer to RCPT TO */
  gboolean accepted; /* 2xx */
} VpsSmtpClientRcpt;

typedef struct
{
  GPtrArray *rcpts; /* VpsSmtpClientRcpt*, in the order given */
  guint n_accepted;
  MailReply *reply; /* the reply to the end of data (2xx) */
} VpsSmtpClientResult;

void vps_smtp_client_result_free (VpsSmtpClientResult *result);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsSmtpClientResult, vps_smtp_client_result_free)

/* Send `message` from `sender` ("" = the null sender "<>") to
 * `recipients` (NULL-terminated, at least one; bare addresses, "<...>"
 * accepted) over SMTP to `host_port` ("host:port", "[host]:port",
 * "[IPv6]:port"; without a port VPS_SMTP_CLIENT_DEFAULT_PORT).  `options`
 * may be NULL.  Returns the result when the end of data was answered 2xx
 * (some recipients may have been refused: see result->rcpts), else NULL
 * and an error naming the step and the reply. */
VpsSmtpClientResult *vps_smtp_client_send (const char *host_port, const char *sender,
                                           const char *const *recipients, GBytes *message,
                                           const VpsSmtpClientOptions *options,
                                           GCancellable *cancellable, GError **error);

/* The DATA form of a message: lines ended with CRLF, dot-stuffed, with the
 * final ".\r\n" (what is written after 354).  Exposed for tests. */
GBytes *vps_smtp_client_encode_data (const char *data, gsize len);

/* "550 5.7.1 first line / second line" (for errors and logs). */
char *vps_smtp_client_describe_reply (const MailReply *reply);

G_END_DECLS
