/* SPDX-License-Identifier: MIT
 *
 * bounce.h — delivery status notifications (DSNs) for vsmtpd: which
 * recipients of a queued message a notification is due for, and the
 * notification itself as bytes.  RFC 3464 (the delivery-status format),
 * RFC 6522 (multipart/report), RFC 3461 (NOTIFY, RET, ENVID, ORCPT),
 * RFC 3463 (status codes), RFC 3834 (Auto-Submitted), RFC 5321 §4.5.5.
 * A pure module: no sockets, no queue writes, no logging, thread-safe.
 *
 * Who gets what (vps_bounce_due):
 *   - never anything when the envelope sender is <> (a bounce of a bounce
 *     would loop; RFC 3461 §6.2, RFC 5321 §4.5.5);
 *   - NOTIFY=NEVER: nothing; no NOTIFY: failure and delay (RFC 3461 §4.1
 *     leaves the choice; Postfix sends both); otherwise the kinds named;
 *   - FAILURE: recipients in state failed; DELAY: recipients in state
 *     deferred (pending ones have not been tried yet); SUCCESS: recipients
 *     delivered, only when NOTIFY=SUCCESS was asked.
 * When to send a delay warning (how long after arrival, how often) is the
 * caller's decision; this module only says for whom.
 *
 * The message (vps_bounce_build): multipart/report;
 * report-type=delivery-status with a unique boundary, and
 *   1. text/plain: what happened, in words, one paragraph per recipient
 *      with the result (the remote server's reply when there is one);
 *   2. message/delivery-status: Reporting-MTA, Original-Envelope-Id (with
 *      ENVID), Arrival-Date, X-Vsmtpd-Queue-ID; per recipient
 *      Original-Recipient (with ORCPT), Final-Recipient, Action (failed |
 *      delayed | delivered), Status, Remote-MTA and "Diagnostic-Code: smtp;"
 *      when the result came from a remote server (else
 *      "Diagnostic-Code: X-vsmtpd;" with the local result), Last-Attempt-
 *      Date, Will-Retry-Until (delays);
 *   3. the original, for FAILURE: message/rfc822 with RET=FULL or no RET
 *      when it is at most the size limit (VPS_BOUNCE_SIZE_LIMIT, Postfix's
 *      bounce_size_limit) and 8-bit clean (no NUL, no bare CR or LF, lines
 *      of at most 998 octets); otherwise — RET=HDRS, too large, binary —
 *      its header section as text/rfc822-headers (cut at a header field
 *      boundary at the size limit).  DELAY and SUCCESS notifications
 *      always carry the headers only: RET asks for the message in
 *      "failed" DSNs (RFC 3461 §4.3), and a warning about a message that
 *      is still being retried does not return it (as Postfix).  Without an
 *      original (NULL) the report has two parts.
 * Header: From: Mail Delivery System <MAILER-DAEMON@REPORTING-MTA>, To:
 * the original sender, Subject per kind ("Undelivered Mail Returned to
 * Sender", "Delayed Mail (still being retried)", "Successful Mail
 * Delivery Report"), Date, Message-ID, Auto-Submitted: auto-replied,
 * MIME-Version, Content-Type.
 *
 * The notification's own envelope: sender <> (so it is never bounced in
 * its turn) and one recipient, env->sender.  The caller queues it; when
 * *needs_8bit comes back TRUE the notification holds 8-bit octets (an
 * original with 8-bit text carried as is inside message/rfc822, or UTF-8
 * addresses) and must be queued with BODY=8BITMIME (and with SMTPUTF8
 * when env->sender is a UTF-8 address).
 *
 * Hostile input: the envelope's strings go into header fields, and a
 * remote server's reply text is whatever that server chose to send.
 * Nothing ever puts a CR, LF, NUL or other control character into the
 * DSN's header fields or its report fields: reply text is cleaned (line
 * ends become a space, other controls and — in the report fields — 8-bit
 * octets become '?') and cut at VPS_BOUNCE_MAX_DIAGNOSTIC octets; ENVID
 * and ORCPT (decoded in the envelope) are xtext-encoded again (RFC 3461
 * §4) when they hold anything outside printable US-ASCII, and so are
 * recipient addresses in the report fields; the sender and the recipient
 * addresses must be valid UTF-8 without control characters and at most
 * VPS_BOUNCE_MAX_ADDRESS octets (VPS_BOUNCE_ERROR_INVALID otherwise:
 * the queue never holds such an envelope).  Every line of the result ends
 * in CRLF and is at most 998 octets (RFC 5322 §2.1.1).
 *
 * Results from remote servers: a recipient's result is stored as
 * "host NAME[ADDR] said: REPLY" (Postfix's wording; make it with
 * vps_bounce_remote_result); any other result is taken as a local one
 * ("550 5.1.1 TEXT").  The Status field is the result's enhanced code
 * when its class fits the action (failed: 5 or 4 — a persistent transient
 * failure that was given up, RFC 3463; delayed: 4; delivered: 2), else
 * the action's class with the result's subject and detail, else 5.0.0 /
 * 4.0.0 / 2.0.0.
 */
#pragma once

#include "mta/queue.h"

G_BEGIN_DECLS

#define VPS_BOUNCE_ERROR (vps_bounce_error_quark ())
GQuark vps_bounce_error_quark (void);

typedef enum
{
  VPS_BOUNCE_ERROR_NULL_SENDER, /* the sender is <>: no notification, ever */
  VPS_BOUNCE_ERROR_NOTHING_DUE, /* no recipient is due for this kind */
  VPS_BOUNCE_ERROR_INVALID,     /* a value that cannot go into the DSN safely */
} VpsBounceError;

typedef enum
{
  VPS_BOUNCE_FAILURE, /* Action: failed */
  VPS_BOUNCE_DELAY,   /* Action: delayed */
  VPS_BOUNCE_SUCCESS, /* Action: delivered */
} VpsBounceKind;

/* Postfix's bounce_size_limit: the largest original returned whole. */
#define VPS_BOUNCE_SIZE_LIMIT 50000
/* Postfix's maximal_queue_lifetime: Will-Retry-Until when none is given. */
#define VPS_BOUNCE_DEFAULT_LIFETIME (5 * G_TIME_SPAN_DAY)
/* Octets of a result (reply text) carried into the report. */
#define VPS_BOUNCE_MAX_DIAGNOSTIC 800
/* An address (sender, recipient) as the envelope holds it: RFC 5321's
 * local part, '@' and domain limits. */
#define VPS_BOUNCE_MAX_ADDRESS 320
/* The reporting MTA's host name (RFC 1035). */
#define VPS_BOUNCE_MAX_HOSTNAME 255

/* "failure", "delay", "success" */
const char *vps_bounce_kind_name (VpsBounceKind kind);

/* Whether rcpt of env gets a notification of this kind (see above). */
gboolean vps_bounce_due (const VpsEnvelope *env, const VpsQueueRcpt *rcpt, VpsBounceKind kind);
/* How many recipients of env are due. */
guint vps_bounce_count_due (const VpsEnvelope *env, VpsBounceKind kind);

typedef struct
{
  const char *reporting_mta; /* our host name ([vsmtpd] hostname); required */
  gint64 now;                /* unix time (µs): Date */
  gint64 retry_until;        /* DELAY: Will-Retry-Until; 0: received + default lifetime */
  gsize size_limit;          /* 0: VPS_BOUNCE_SIZE_LIMIT */
} VpsBounceOptions;

/* The notification of this kind for every recipient of env due for it,
 * with original (the queued message, CRLF line ends; may be NULL).
 * Errors: VPS_BOUNCE_ERROR_NULL_SENDER, _NOTHING_DUE (nothing to send:
 * not a failure of the caller), _INVALID (reporting_mta or an address
 * that cannot be written safely).  *needs_8bit (optional) is set on
 * success. */
GBytes *vps_bounce_build_full (const VpsEnvelope *env, GBytes *original, VpsBounceKind kind,
                               const VpsBounceOptions *options, gboolean *needs_8bit,
                               GError **error);
/* The same with the default size limit and lifetime. */
GBytes *vps_bounce_build (const VpsEnvelope *env, GBytes *original, VpsBounceKind kind,
                          const char *reporting_mta, gint64 now_us, gboolean *needs_8bit,
                          GError **error);

/* A recipient's result for a reply from a remote server, to store in
 * VpsQueueRcpt.result: "host NAME[ADDR] said: REPLY".  name (the MX host
 * name) or addr (its IP address) may be NULL, not both.  The reply is the
 * server's bytes (reply_len -1: NUL-terminated; a NUL inside is allowed
 * with a length): line ends become one space, other control characters
 * and invalid UTF-8 '?', and it is cut at VPS_BOUNCE_MAX_DIAGNOSTIC
 * octets — the result is one line the queue's envelope can hold.  Octets
 * of name and addr outside letters, digits and ".-_:" become '?'. */
char *vps_bounce_remote_result (const char *name, const char *addr, const char *reply,
                                gssize reply_len);

/* Text from outside (a peer's reply, an error message) made safe for one
 * line of a header field, the report or the queue's envelope: runs of
 * CR, LF, HT and SP become one space, other control characters and octets
 * that are not UTF-8 (and, unless utf8, every non-ASCII character) '?',
 * at most max octets, cut at a character boundary. */
char *vps_bounce_clean (const char *s, gsize len, gboolean utf8, gsize max);

G_END_DECLS
