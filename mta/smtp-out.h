/* SPDX-License-Identifier: MIT
 *
 * smtp-out.h — vsmtpd's outbound SMTP client: delivers one message with N
 * recipients to one address (IP:port) the caller picked from its own MX
 * resolution, asynchronously on the caller's GMainContext (GSocketClient,
 * non-blocking sockets, no thread per connection), and keeps connections
 * open for the next message to the same destination.  RFC 5321, 3207
 * (STARTTLS), 4954 (AUTH), 2920 (PIPELINING), 1870 (SIZE), 6152 (8BITMIME),
 * 6531 (SMTPUTF8), 3461 (DSN), 3030 (CHUNKING/BINARYMIME); the wire format
 * is proto/smtp/smtp-out.h's, the replies proto/mail's.
 *
 * The session: connect (connect_timeout), greeting, EHLO (HELO when EHLO
 * gets a 5xx), STARTTLS per policy, EHLO again, AUTH PLAIN or LOGIN when
 * the target has credentials (never without TLS), then MAIL, every RCPT
 * and DATA — written in one go when the server offers PIPELINING — the
 * per-recipient replies, the message (dot-stuffed; BDAT for BINARYMIME)
 * and the final reply.  Then the result goes to the caller at once, RSET
 * is sent and, on its 250, the connection waits idle in a cache keyed by
 * (MX name, address, port, TLS policy, AUTH user) for up to idle_timeout,
 * until it has carried max_messages, or until the cache is full (the
 * oldest idle one is closed): each of those ends with QUIT.  A message for
 * the same destination takes an idle connection (or one still waiting for
 * its RSET reply) instead of connecting.  When a reused connection turns
 * out dead before MAIL is answered (the server timed it out), the message
 * goes over a new connection, once, without the caller noticing.
 *
 * TLS policies (Postfix's smtp_tls_security_level):
 *   none     never STARTTLS;
 *   may      STARTTLS when offered, any certificate; a STARTTLS refused
 *            with 4xx/5xx continues in plaintext on the same connection; a
 *            handshake that fails ends that connection and the message is
 *            sent again over a new plaintext connection to the same
 *            address (Postfix does the same: the failed session is not
 *            usable, the retry is); result->tls_fallback says so;
 *   encrypt  TLS required (not offered, refused or failed: the
 *            recipients are deferred), any certificate;
 *   verify   as encrypt, and the chain must verify against the CA bundle
 *            and the certificate name match target->mx_name (SAN dNSName,
 *            else CN; X509_VERIFY_PARAM_set1_host).
 *
 * Decisions where the message cannot go as it is:
 *   - SMTPUTF8 (RFC 6531 §3.2): the envelope says smtputf8 and the server
 *     does not offer SMTPUTF8: if the sender or the header section has
 *     UTF-8, every recipient fails permanently with 5.6.7; otherwise each
 *     recipient whose address has UTF-8 fails with 5.6.7 and the others
 *     are delivered without SMTPUTF8.
 *   - 8BITMIME: BODY=8BITMIME to a server without 8BITMIME: when the
 *     content has no 8-bit byte after all it is sent as 7-bit; otherwise
 *     every recipient fails permanently with 5.6.3 (RFC 3463 "conversion
 *     required but not supported"): we do not convert to quoted-printable
 *     as Postfix does.
 *   - BINARYMIME without BINARYMIME+CHUNKING: permanent 5.6.3.
 *   - SIZE: a message over the server's announced limit fails permanently
 *     with 5.3.4 before MAIL.
 *
 * Results come per recipient (VpsSmtpOutRcptResult): the server's reply
 * (code, enhanced code, text) and the verdict — DELIVERED (2xx at the end
 * of data), BOUNCE (5xx from the server, or a permanent local decision
 * above), DEFER (4xx, or anything at the transport level) — plus, for the
 * whole attempt, how the transport went (connect failed, TLS failed,
 * timeout, closed mid-session, protocol error) and whether trying the next
 * MX host is worth it (result->try_next: the failure concerns this host,
 * not the message: no connection, a greeting or EHLO/HELO refused, TLS or
 * AUTH failure, a 421, timeout or close before MAIL was answered).  AUTH
 * failures defer (Postfix's smtp_sasl_auth_soft_bounce); a greeting 5xx
 * defers too (the next MX may take it).  A recipient whose final reply
 * never came (closed or timed out after the message was sent) is deferred:
 * a duplicate is possible, a loss is not.
 *
 * Timeouts per phase, in milliseconds (defaults: RFC 5321 §4.5.3.2 and
 * Postfix): connect 30 s, greeting 300 s, EHLO/HELO 300 s, STARTTLS and
 * handshake 300 s, AUTH 300 s, MAIL 300 s, RCPT 300 s, DATA 120 s, each
 * block of the message 180 s without progress, end of data 600 s, RSET
 * 20 s, QUIT 300 s (never waited for by a caller).
 *
 * Memory per connection is bounded: replies by proto/mail's parser limits
 * (MAIL_MAX_REPLY_PARSE_LINE × _LINES), the message is streamed from the
 * caller's GBytes through a buffer of VPS_SMTP_OUT_WRITE_CHUNK octets.
 *
 * Ownership and threads: a VpsSmtpOut belongs to the main context that was
 * thread-default when it was made; every call and every callback happens
 * there.  It is reference-counted; each operation in flight holds a
 * reference.  The target and message given to send_async are copied (the
 * content GBytes is referenced).  The program must ignore SIGPIPE.  Log
 * lines carry message->log_id (the queue id).
 */
#pragma once

#include <gio/gio.h>

#include "proto/mail/mail-reply.h"
#include "proto/smtp/smtp.h"

G_BEGIN_DECLS

#define VPS_SMTP_OUT_ERROR (vps_smtp_out_error_quark ())
GQuark vps_smtp_out_error_quark (void);

typedef enum
{
  VPS_SMTP_OUT_ERROR_CONFIG, /* TLS files, bad values */
  VPS_SMTP_OUT_ERROR_TARGET, /* not an IP address, port 0, no recipients */
} VpsSmtpOutError;

/* Octets of the message put on the wire per step (bounds the buffer). */
#define VPS_SMTP_OUT_WRITE_CHUNK (64 * 1024)
/* Recipients per message (Postfix smtp_destination_recipient_limit is 50
 * by default; RFC 5321 §4.5.3.1.8 asks servers for at least 100). */
#define VPS_SMTP_OUT_MAX_RCPTS 1000

typedef enum
{
  VPS_SMTP_OUT_TLS_NONE,
  VPS_SMTP_OUT_TLS_MAY,
  VPS_SMTP_OUT_TLS_ENCRYPT,
  VPS_SMTP_OUT_TLS_VERIFY,
} VpsSmtpOutTlsPolicy;

/* "none" "may" "encrypt" "verify" */
gboolean vps_smtp_out_tls_policy_from_name (const char *name, VpsSmtpOutTlsPolicy *out);
const char *vps_smtp_out_tls_policy_name (VpsSmtpOutTlsPolicy policy);

typedef struct
{
  const char *helo_name; /* EHLO argument; required */

  /* timeouts in milliseconds; 0 = the default above */
  guint connect_timeout;
  guint greeting_timeout;
  guint helo_timeout;
  guint starttls_timeout;
  guint auth_timeout;
  guint mail_timeout;
  guint rcpt_timeout;
  guint data_timeout;       /* the reply to DATA (354) */
  guint data_block_timeout; /* no write progress while sending the message */
  guint data_done_timeout;  /* the reply after the end of data */
  guint rset_timeout;
  guint quit_timeout;

  /* connection cache */
  guint idle_timeout; /* ms an idle connection is kept; 0 = 5000 (Postfix
                         * smtp_connection_cache_time_limit 2 s; we keep a
                         * little longer for bursts) */
  guint max_messages; /* per connection; 0 = 100 */
  guint max_idle;     /* idle connections kept in all; 0 = 64 */
  gboolean no_reuse;  /* QUIT after every message (no cache) */

  /* TLS (OpenSSL, mta/tls-client.h) */
  const char *tls_ca_file;     /* verify: the CA bundle; NULL = system store */
  const char *tls_ca_path;     /* a hashed CA directory, or NULL */
  const char *tls_cert;        /* client certificate, or NULL */
  const char *tls_key;         /* its key */
  const char *tls_min_version; /* NULL = TLSv1.2 */
  const char *tls_ciphers;     /* NULL = OpenSSL's default */
} VpsSmtpOutConfig;

typedef struct _VpsSmtpOut VpsSmtpOut;

VpsSmtpOut *vps_smtp_out_new (const VpsSmtpOutConfig *config, GError **error);
VpsSmtpOut *vps_smtp_out_ref (VpsSmtpOut *out);
/* The last reference closes every idle connection (QUIT, not waited for). */
void vps_smtp_out_unref (VpsSmtpOut *out);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsSmtpOut, vps_smtp_out_unref)
/* Close idle connections now (QUIT); busy ones finish their message and
 * close instead of waiting idle.  For shutdown. */
void vps_smtp_out_close_idle (VpsSmtpOut *out);
/* Idle connections in the cache (tests, stats). */
guint vps_smtp_out_get_n_idle (VpsSmtpOut *out);

typedef struct
{
  const char *address; /* IP literal, "192.0.2.1" or "2001:db8::1" */
  guint16 port;        /* 0 = 25 */
  const char *mx_name; /* the MX host name (SNI, certificate match, cache
                        * key, logs); NULL = the address */
  VpsSmtpOutTlsPolicy tls;
  const char *auth_user; /* smarthost AUTH (needs TLS), or NULL */
  const char *auth_password;
} VpsSmtpOutTarget;

typedef struct
{
  const char *address; /* without <> */
  guint notify;        /* SmtpNotify bits, 0 = default (none sent) */
  const char *orcpt;   /* "rfc822;addr" decoded, or NULL */
} VpsSmtpOutRcpt;

typedef struct
{
  const char *log_id; /* queue id for log lines, or NULL */
  const char *sender; /* without <>, "" = null path */
  const VpsSmtpOutRcpt *rcpts;
  guint n_rcpts;
  SmtpRet ret;
  const char *envid; /* decoded, or NULL */
  SmtpBody body;
  gboolean smtputf8;
  GBytes *content; /* the message, CRLF line ends as queued */
} VpsSmtpOutMessage;

typedef enum
{
  VPS_SMTP_OUT_DELIVERED, /* the server took responsibility (2xx at end of data) */
  VPS_SMTP_OUT_DEFER,     /* try again later (or at the next MX) */
  VPS_SMTP_OUT_BOUNCE,    /* permanent failure: a DSN to the sender */
} VpsSmtpOutVerdict;

const char *vps_smtp_out_verdict_name (VpsSmtpOutVerdict v); /* "delivered" "defer" "bounce" */

typedef enum
{
  VPS_SMTP_OUT_TRANSPORT_OK,             /* the session ran; replies are the server's */
  VPS_SMTP_OUT_TRANSPORT_CONNECT_FAILED, /* refused, unreachable, connect timeout */
  VPS_SMTP_OUT_TRANSPORT_TLS_FAILED,     /* TLS required and not offered/refused, handshake
                                          * or verification failed */
  VPS_SMTP_OUT_TRANSPORT_TIMEOUT,        /* a phase timed out */
  VPS_SMTP_OUT_TRANSPORT_CLOSED,         /* the server closed (or reset) mid-session */
  VPS_SMTP_OUT_TRANSPORT_PROTOCOL,       /* a reply we cannot read */
} VpsSmtpOutTransport;

const char *vps_smtp_out_transport_name (VpsSmtpOutTransport t); /* "ok" "connect-failed" ... */

typedef struct
{
  VpsSmtpOutVerdict verdict;
  guint code;        /* the server's reply code; 0 when the server gave none
                     * (transport failure or a decision made here) */
  char *enhanced;    /* "5.1.1", or NULL */
  char *text;        /* the reply text (lines joined with "\n"), or what
                     * happened ("lost connection with mx[192.0.2.1]
                     * while sending RCPT TO") */
  const char *phase; /* where it was decided: "connect", "greeting", "EHLO",
                      * "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA",
                      * "end of data", "local" (static) */
  gboolean local;    /* decided here (5.6.7, 5.6.3, 5.3.4, transport), not a
                     * server reply */
} VpsSmtpOutRcptResult;

typedef struct
{
  VpsSmtpOutTransport transport;
  char *error;           /* the transport failure in words, or NULL */
  gboolean try_next;     /* worth trying the next MX host for the deferred */
  char *remote;          /* "mx.example.org[192.0.2.1]:25" */
  char *server_greeting; /* first line of the greeting, or NULL */
  gboolean esmtp;        /* EHLO worked (HELO otherwise) */
  gboolean dsn;          /* the server offered DSN (else "relayed" DSNs are the
                        * caller's, RFC 3461 §5.2.2) */
  gboolean pipelined;    /* MAIL/RCPT/DATA went in one write */
  gboolean reused;       /* over a cached connection */
  gboolean tls;          /* the message went over TLS */
  gboolean tls_fallback; /* "may": TLS failed, sent in plaintext */
  gboolean tls_verified; /* chain and name verified (also under may/encrypt) */
  char *tls_version;     /* "TLSv1.3", or NULL */
  char *tls_cipher;
  guint n_rcpts;
  VpsSmtpOutRcptResult *rcpts; /* n_rcpts, in the message's order */
} VpsSmtpOutResult;

void vps_smtp_out_result_free (VpsSmtpOutResult *result);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsSmtpOutResult, vps_smtp_out_result_free)

/* Deliver one message.  The callback runs on out's main context.  Bad
 * arguments (not an IP address, no recipients, more than
 * VPS_SMTP_OUT_MAX_RCPTS) fail in _finish with VPS_SMTP_OUT_ERROR_TARGET;
 * cancellation with G_IO_ERROR_CANCELLED (a connection inside a session
 * is closed; one the message had claimed while its RSET was on its way
 * stays cached).  A cancellation after the result was returned does not
 * hide it (a message may have been delivered).  Every other outcome is a
 * result. */
void vps_smtp_out_send_async (VpsSmtpOut *out, const VpsSmtpOutTarget *target,
                              const VpsSmtpOutMessage *message, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data);
VpsSmtpOutResult *vps_smtp_out_send_finish (VpsSmtpOut *out, GAsyncResult *result, GError **error);

G_END_DECLS
