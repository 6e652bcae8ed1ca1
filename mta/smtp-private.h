/* SPDX-License-Identifier: MIT
 *
 * smtp-private.h — what the pieces of vsmtpd's SMTP server share:
 *   smtp-server.c   listeners, connection limits, TLS contexts, passwords
 *   smtp-conn.c     one connection's I/O on its stream (vps/stream.h):
 *                   TLS layering, the deadline timer, delayed replies, close
 *   smtp-session.c  the commands and the engine stages
 *   smtp-message.c  DATA/BDAT content, the end of data and the commit
 *
 * A connection lives on the worker that accepted it.  It reads only while
 * no asynchronous step (an engine stage, a password check, a commit, a
 * delayed reply, the TLS handshake) is in flight: the client waits for our
 * reply anyway, so pipelined input stays in the kernel and our buffers are
 * bounded by SMTP_MAX_LINE plus one read.
 */
#pragma once

#include <gio/gio.h>

#include "mta/auth.h"
#include "mta/delivery.h"
#include "mta/queue.h"
#include "mta/smtp-server.h"
#include "mta/tls.h"
#include "proto/mail/mail-reply.h"
#include "proto/smtp/smtp.h"
#include "vps/daemon.h"
#include "vps/engine.h"
#include "vps/stream.h"

G_BEGIN_DECLS

#define VPS_SMTP_READ_CHUNK (64 * 1024)
/* Replies waiting for a slow reader: past this the session stops reading. */
#define VPS_SMTP_MAX_OUTPUT (256 * 1024)
/* Client addresses tracked for the per-IP limits. */
#define VPS_SMTP_MAX_TRACKED_IPS 100000

typedef enum
{
  VPS_SMTP_ROLE_MX,
  VPS_SMTP_ROLE_SUBMISSION,
  VPS_SMTP_ROLE_SUBMISSIONS,
  VPS_SMTP_N_ROLES
} VpsSmtpRole;

typedef enum
{
  PHASE_CONNECT,   /* the connect stage runs; nothing read yet */
  PHASE_COMMAND,   /* reading command lines */
  PHASE_AUTH,      /* reading a SASL response line */
  PHASE_DATA,      /* reading DATA content */
  PHASE_BDAT,      /* reading a BDAT chunk */
  PHASE_HANDSHAKE, /* TLS handshake */
} VpsSmtpPhase;

typedef enum
{
  AUTH_STEP_NONE,
  AUTH_STEP_PLAIN,      /* waiting for the PLAIN response */
  AUTH_STEP_LOGIN_USER, /* waiting for the user name */
  AUTH_STEP_LOGIN_PASS, /* waiting for the password */
} VpsSmtpAuthStep;

/* What the listeners build from one configuration generation: a reload
 * builds a new one, sessions keep the one they started with (as they keep
 * their engine).  Immutable, reference-counted. */
typedef struct
{
  gint ref;
  guint generation;
  VpsTlsServer *tls[VPS_SMTP_N_ROLES]; /* NULL: no TLS for that role */
  VpsPasswdFile *passwd;               /* NULL: no AUTH */
  char *hostname;
  GPtrArray *exceptions; /* GInetAddressMask*: exempt from the per-IP limits */
} VpsSmtpSetup;

VpsSmtpSetup *vps_smtp_setup_ref (VpsSmtpSetup *setup);
void vps_smtp_setup_unref (VpsSmtpSetup *setup);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsSmtpSetup, vps_smtp_setup_unref)

struct _VpsSmtpServer
{
  VpsDaemon *daemon;
  VpsQueue *queue;
  VpsDelivery *delivery;
  GMutex setup_lock;
  VpsSmtpSetup *setup; /* the newest good one */
  gint n_sessions;

  GMutex ip_lock;
  GHashTable *ips; /* client ip → VpsSmtpIpEntry */

  GMutex workers_lock;
  GHashTable *workers;  /* GMainContext* → VpsSmtpWorker* */
  GPtrArray *listeners; /* VpsListener* (borrowed: the daemon owns them) */
};

typedef struct _VpsSmtpConn VpsSmtpConn;

/* Per worker: its connections, checked once a second by one tick for
 * deadlines and the drain (cheaper than a timer per connection). */
typedef struct _VpsSmtpWorker
{
  GMainContext *context;
  GQueue conns; /* of VpsSmtpConn*, linked through conn->link */
  GSource *tick;
  VpsSmtpServer *server;
} VpsSmtpWorker;

struct _VpsSmtpConn
{
  gint ref;
  VpsSmtpServer *server;
  VpsSmtpSetup *setup; /* TLS, passwords, hostname of this session */
  VpsSmtpRole role;
  VpsEngine *engine;
  VpsConfig *cfg;    /* the engine's */
  VpsStream *stream; /* the socket, its buffers and sources; TLS plugs in its I/O */
  char *client_ip;
  VpsTlsConn *tls;
  VpsSmtpPhase phase;
  gboolean closed;
  gboolean greeted;
  gboolean starttls; /* 220 to STARTTLS queued: handshake once flushed */
  gboolean busy;     /* an asynchronous step is in flight */
  GCancellable *cancellable;

  GByteArray *in;  /* the stream's: read, not yet consumed */
  GByteArray *out; /* the stream's: replies to send */
  gint64 deadline; /* monotonic µs: command, data or handshake deadline; 0 none */
  GList link;      /* in the worker's list of connections (the tick) */
  struct _VpsSmtpWorker *worker;
  GSource *delay_source; /* a delayed reply (tarpit, failed AUTH) */

  SmtpLineReader reader;
  VpsSession *session;
  VpsTxn *txn;

  /* session state */
  gboolean helo_seen;
  gboolean esmtp;
  gboolean pending_esmtp; /* EHLO (not HELO) whose stage runs */
  gboolean auth_ok;       /* the password check's answer */
  gboolean authenticated;
  guint errors;
  guint n_messages;
  VpsSmtpAuthStep auth_step;
  char *auth_mechanism;
  char *auth_user;

  /* transaction state */
  gboolean mail_seen;
  gboolean smtputf8;
  gboolean discard;     /* a discard verdict before data */
  guint rcpt_attempts;  /* RCPT commands in this transaction, refused ones too */
  SmtpCommand *mail;    /* the MAIL command of this transaction */
  GPtrArray *rcpt_cmds; /* SmtpCommand* of the accepted recipients */
  SmtpCommand *pending; /* the MAIL/RCPT whose stage is running */
  VpsQueueWriter *writer;
  SmtpDataDecoder dec;
  GByteArray *chunk; /* decoded content waiting to be written */
  gboolean write_failed;
  GError *write_error;
  gboolean bdat_seen;
  guint64 bdat_left;
  gboolean bdat_last;
  gboolean bdat_discarding; /* a refused BDAT: its chunk is read and dropped */

  /* limits from the config, read at accept */
  guint64 max_message_size;
  guint64 max_header_size;
  guint64 max_line_length;
  guint max_recipients;
  gint64 command_timeout; /* µs */
  gint64 data_timeout;
  gint64 handshake_timeout;
  guint max_errors;
  guint tarpit_after;
  gint64 tarpit_delay; /* ms */
  gint64 auth_failure_delay;
  guint64 min_free;
  SmtpBarePolicy bare;
  gboolean vrfy_disabled;
  gboolean received_header;
  gboolean auth_over_plaintext;
};

/* smtp-conn.c */
VpsSmtpConn *vps_smtp_conn_new (VpsSmtpServer *server, VpsSmtpWorker *worker, VpsSmtpRole role,
                                GSocket *socket, const char *client_ip);
VpsSmtpConn *vps_smtp_conn_ref (VpsSmtpConn *conn);
void vps_smtp_conn_unref (VpsSmtpConn *conn);
const char *vps_smtp_conn_id (VpsSmtpConn *conn);
void vps_smtp_conn_close (VpsSmtpConn *conn);
/* Queue a reply (formatted lines with CRLF). */
void vps_smtp_conn_write (VpsSmtpConn *conn, const char *text, gsize len);
void vps_smtp_conn_printf (VpsSmtpConn *conn, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
void vps_smtp_conn_reply (VpsSmtpConn *conn, const MailReply *reply);
/* Write what is queued now; resume reading when idle. */
void vps_smtp_conn_flush (VpsSmtpConn *conn);
/* An asynchronous step begins / ended: stop / resume processing input. */
void vps_smtp_conn_begin_async (VpsSmtpConn *conn);
void vps_smtp_conn_end_async (VpsSmtpConn *conn);
/* Set the deadline `timeout` µs from now (0: none); checked by the
 * worker's tick once a second. */
void vps_smtp_conn_set_deadline (VpsSmtpConn *conn, gint64 timeout);
/* The tick: deadline passed → vps_smtp_session_timeout; draining and idle
 * between commands → 421 and close. */
void vps_smtp_conn_tick (VpsSmtpConn *conn, gint64 now, gboolean draining);
/* The drain timed out: 421 now, whatever the session is doing, and close
 * (the message in transfer, if any, is dropped: the client retries). */
void vps_smtp_conn_goodbye (VpsSmtpConn *conn);
/* Write `text` after `delay_ms` (tarpit, failed AUTH), busy meanwhile; then
 * close when `close_after`. */
void vps_smtp_conn_reply_later (VpsSmtpConn *conn, char *text, gint64 delay_ms,
                                gboolean close_after);
/* Start the TLS handshake (STARTTLS after its 220 is flushed, or at accept
 * for submissions); vps_smtp_session_tls_ready() follows. */
void vps_smtp_conn_start_tls (VpsSmtpConn *conn);

/* smtp-session.c */
void vps_smtp_session_start (VpsSmtpConn *conn);
/* Process buffered input; returns when it needs more, or is busy. */
void vps_smtp_session_process (VpsSmtpConn *conn);
void vps_smtp_session_tls_ready (VpsSmtpConn *conn);
void vps_smtp_session_timeout (VpsSmtpConn *conn);
/* Count an error: FALSE when max_errors is reached (421 sent, closing). */
gboolean vps_smtp_session_error (VpsSmtpConn *conn, const char *reply_line);
void vps_smtp_session_reset_txn (VpsSmtpConn *conn);
/* Run `stage` (when it has rules) and call `done` with the result (NULL:
 * the stage was skipped, or the session closed meanwhile — check
 * conn->closed). */
typedef void (*VpsSmtpStageDone) (VpsSmtpConn *conn, VpsStageResult *result);
void vps_smtp_session_run_stage (VpsSmtpConn *conn, RulesStage stage, VpsSmtpStageDone done);
/* The reply for a refusing verdict (reject, tempfail, and at data discard /
 * quarantine get 250 elsewhere); NULL when the verdict lets it pass. */
MailReply *vps_smtp_session_verdict_reply (VpsSmtpConn *conn, VpsStageResult *result);

/* The error reply of a rule's verdict / of a parse error, counted. */
void vps_smtp_session_error_reply (VpsSmtpConn *conn, const MailReply *reply);
void vps_smtp_session_parse_error (VpsSmtpConn *conn, const GError *error);

/* smtp-ptr.c: set client.ptr (when the rules read it), then `done`. */
void vps_smtp_ptr_lookup (VpsSmtpConn *conn, void (*done) (VpsSmtpConn *conn));

/* smtp-auth.c */
void vps_smtp_auth_command (VpsSmtpConn *conn, SmtpCommand *cmd);
/* A line read in PHASE_AUTH (a SASL response, or "*"). */
void vps_smtp_auth_response (VpsSmtpConn *conn, const char *line);

/* smtp-message.c */
/* DATA accepted (354 sent) or BDAT started: open the queue file. */
gboolean vps_smtp_message_begin (VpsSmtpConn *conn);
/* Feed content from conn->in (DATA: up to the end sequence; BDAT: up to
 * the chunk size) and consume it; FALSE when nothing could be done (more
 * input needed). */
gboolean vps_smtp_message_feed (VpsSmtpConn *conn);
void vps_smtp_message_abort (VpsSmtpConn *conn);

/* smtp-server.c: per-IP accounting */
void vps_smtp_server_ip_release (VpsSmtpServer *server, const char *ip);

G_END_DECLS
