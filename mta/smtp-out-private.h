/* SPDX-License-Identifier: MIT
 *
 * smtp-out-private.h — what the three parts of the outbound client share:
 *   smtp-out.c          the object, the jobs (one per message), results,
 *                       the connection cache;
 *   smtp-out-io.c       one connection's socket: connect, non-blocking
 *                       reads and writes, TLS, timers, close;
 *   smtp-out-session.c  the SMTP state machine over replies up to the
 *                       transaction (greeting, EHLO, STARTTLS, AUTH), RSET,
 *                       QUIT, transport failures;
 *   smtp-out-txn.c      one mail transaction (MAIL, RCPT, DATA/BDAT).
 *
 * Ownership: a job (SmtpOutJob) owns its GTask and holds a reference on
 * the VpsSmtpOut; a connection (SmtpOutConn) is reference-counted (its
 * own reference, dropped at close, plus one per callback in flight) and
 * points at the job it carries (conn->job, job->conn: both cleared when
 * the job completes).  An idle connection holds no job and no reference
 * on the VpsSmtpOut: the object's last unref closes it.  Everything runs
 * on out->context.
 */
#pragma once

#include "mta/smtp-out.h"
#include "mta/tls-client.h"
#include "proto/smtp/smtp-out.h"

G_BEGIN_DECLS

typedef struct _SmtpOutConn SmtpOutConn;
typedef struct _SmtpOutJob SmtpOutJob;

/* Resolved timeouts (ms). */
typedef struct
{
  guint connect, greeting, helo, starttls, auth, mail, rcpt, data, data_block, data_done, rset,
      quit, idle;
} SmtpOutTimeouts;

struct _VpsSmtpOut
{
  gint ref;
  GMainContext *context;
  char *helo_name;
  SmtpOutTimeouts t;
  guint max_messages;
  guint max_idle;
  gboolean no_reuse;
  gboolean closing; /* close_idle(): nothing goes idle any more */
  VpsTlsClient *tls;
  GSocketClient *client;
  GQueue cache; /* SmtpOutConn* idle or resetting (reusable), oldest first */
  GQueue conns; /* every open SmtpOutConn (the last unref closes them) */
};

typedef enum
{
  SMTP_OUT_RCPT_PENDING,  /* not decided */
  SMTP_OUT_RCPT_SENT,     /* RCPT written, reply not read */
  SMTP_OUT_RCPT_ACCEPTED, /* 2xx to RCPT, waiting for the end of data */
  SMTP_OUT_RCPT_DONE,     /* result set */
} SmtpOutRcptState;

struct _SmtpOutJob
{
  VpsSmtpOut *out; /* ref */
  GTask *task;
  GSource *cancel_source;
  char *log_id;

  /* target */
  char *address;
  guint16 port;
  char *mx_name;
  VpsSmtpOutTlsPolicy tls;
  char *auth_user;
  char *auth_password; /* wiped at free */
  char *key;           /* cache key */

  /* message */
  char *sender;
  SmtpOutRcpt *rcpts; /* strings owned by rcpt_strings */
  GPtrArray *rcpt_strings;
  guint n_rcpts;
  SmtpRet ret;
  char *envid;
  SmtpBody body;
  gboolean smtputf8;
  GBytes *content;

  /* progress */
  SmtpOutRcptState *state;
  VpsSmtpOutResult *result;
  SmtpOutConn *conn;
  gboolean plaintext;     /* "may" fell back: no STARTTLS on the next connection */
  gboolean retried;       /* a dead cached connection was replaced once */
  gboolean mail_answered; /* MAIL got its reply: no silent retry any more */
  gboolean mail_sent;
  /* the transaction as sent */
  SmtpBody txn_body;
  gboolean txn_smtputf8;
  guint n_accepted;
};

typedef enum
{
  SMTP_OUT_CONNECTING,
  SMTP_OUT_GREETING,
  SMTP_OUT_EHLO,
  SMTP_OUT_HELO,
  SMTP_OUT_STARTTLS,
  SMTP_OUT_HANDSHAKE,
  SMTP_OUT_AUTH,
  SMTP_OUT_TXN,
  SMTP_OUT_RSET,
  SMTP_OUT_IDLE,
  SMTP_OUT_QUIT,
  SMTP_OUT_CLOSED,
} SmtpOutState;

/* What a connection waits for: the short name results carry and the words
 * of a timeout or lost connection ("... while sending RCPT TO"). */
typedef enum
{
  SMTP_OUT_PHASE_CONNECT,
  SMTP_OUT_PHASE_GREETING,
  SMTP_OUT_PHASE_EHLO,
  SMTP_OUT_PHASE_STARTTLS,
  SMTP_OUT_PHASE_TLS,
  SMTP_OUT_PHASE_AUTH,
  SMTP_OUT_PHASE_MAIL,
  SMTP_OUT_PHASE_RCPT,
  SMTP_OUT_PHASE_DATA,
  SMTP_OUT_PHASE_BODY,
  SMTP_OUT_PHASE_DOT,
  SMTP_OUT_PHASE_RSET,
  SMTP_OUT_PHASE_IDLE,
  SMTP_OUT_PHASE_QUIT,
} SmtpOutPhase;

const char *smtp_out_phase_step (SmtpOutPhase phase);  /* "RCPT" */
const char *smtp_out_phase_doing (SmtpOutPhase phase); /* "sending RCPT TO" */

typedef enum
{
  SMTP_OUT_EXPECT_MAIL,
  SMTP_OUT_EXPECT_RCPT,
  SMTP_OUT_EXPECT_DATA,
  SMTP_OUT_EXPECT_BDAT,
  SMTP_OUT_EXPECT_DOT,
  SMTP_OUT_EXPECT_IGNORE, /* "." after a 354 nobody wanted: the reply is dropped */
} SmtpOutExpectKind;

typedef struct
{
  SmtpOutExpectKind kind;
  guint index; /* recipient, for RCPT */
} SmtpOutExpect;

struct _SmtpOutConn
{
  gint ref;
  VpsSmtpOut *out; /* not a ref (see above) */
  SmtpOutState state;
  gboolean closed;

  char *key;
  char *remote; /* "mx[ip]:port" for logs and results */
  char *address;
  guint16 port;
  char *mx_name;
  VpsSmtpOutTlsPolicy policy;
  gboolean plaintext; /* "may" fallback connection: no STARTTLS */

  GSocketConnection *connection;
  GSocket *socket;
  int fd;
  GCancellable *connect_cancel;
  gboolean connect_timed_out;
  VpsTlsClientConn *tls;
  gboolean tls_up; /* the handshake completed */
  gboolean tls_verified;

  GByteArray *in;
  GByteArray *out_buf;
  GSource *read_source;
  GIOCondition read_cond;
  GSource *write_source;
  GIOCondition write_cond;
  GSource *timer;
  SmtpOutPhase phase; /* what the timer is for */

  SmtpEhlo ehlo;
  gboolean esmtp;
  gboolean authenticated;
  char *greeting;
  guint n_messages;
  guint auth_step;
  GArray *expect; /* SmtpOutExpect, in the order replies are due */
  guint expect_head;

  SmtpOutJob *job;
  GList cache_link; /* in out->cache while idle or resetting */
  GList conns_link; /* in out->conns while open */
  gboolean cached;

  /* the transaction */
  GPtrArray *rcpt_lines; /* RCPT commands not written yet (sequential mode) */
  GArray *rcpt_ids;      /* guint: their recipients */
  guint next_rcpt;
  gboolean pipelined;
  gboolean mail_failed;
  gboolean data_sent; /* DATA or BDAT written */

  /* the message on its way */
  guint body_state;  /* 0 none, 1 streaming, 2 all queued, waiting to drain */
  gboolean body_raw; /* BDAT: no dot-stuffing */
  gsize body_off;
  SmtpDotStuffer stuffer;
  gsize out_off; /* written part of out_buf */
};

/* smtp-out.c */
const char *smtp_out_log_id (SmtpOutJob *job);
void smtp_out_job_complete (SmtpOutJob *job);
void smtp_out_job_restart (SmtpOutJob *job, gboolean plaintext);
void smtp_out_rcpt_set (SmtpOutJob *job, guint i, VpsSmtpOutVerdict verdict, guint code,
                        const char *enhanced, const char *text, const char *phase, gboolean local);
void smtp_out_rcpt_set_reply (SmtpOutJob *job, guint i, const MailReply *reply, const char *phase);
/* A connection whose RSET got its 250: hand it the job that claimed it,
 * put it in the cache, or QUIT it (limits, closing). */
void smtp_out_cache_done (SmtpOutConn *conn);
void smtp_out_cache_remove (SmtpOutConn *conn);
void smtp_out_cache_add (SmtpOutConn *conn);

/* smtp-out-io.c */
SmtpOutConn *smtp_out_conn_new (VpsSmtpOut *out, SmtpOutJob *job);
SmtpOutConn *smtp_out_conn_ref (SmtpOutConn *conn);
void smtp_out_conn_unref (SmtpOutConn *conn);
void smtp_out_conn_connect (SmtpOutConn *conn);
void smtp_out_conn_send (SmtpOutConn *conn, const char *data, gsize len);
void smtp_out_conn_send_str (SmtpOutConn *conn, const char *line);
/* Put the job's content on the wire after the commands queued so far. */
void smtp_out_conn_send_body (SmtpOutConn *conn, gboolean raw);
void smtp_out_conn_set_timer (SmtpOutConn *conn, guint ms, SmtpOutPhase phase);
void smtp_out_conn_start_tls (SmtpOutConn *conn);
/* A transport failure: the job (if any) learns it, the connection closes. */
void smtp_out_conn_fail (SmtpOutConn *conn, VpsSmtpOutTransport transport, const char *fmt, ...)
    G_GNUC_PRINTF (3, 4);
void smtp_out_conn_close (SmtpOutConn *conn);
/* QUIT, then close on the reply (or its timeout). */
void smtp_out_conn_quit (SmtpOutConn *conn);

/* smtp-out-session.c: helpers the transaction shares */
gboolean smtp_out_is_2xx (guint code);
SmtpOutJob *smtp_out_detach_job (SmtpOutConn *conn);
void smtp_out_fill_session_info (SmtpOutConn *conn, SmtpOutJob *job);
void smtp_out_decide_rest (SmtpOutJob *job, VpsSmtpOutVerdict verdict, const MailReply *reply,
                           const char *enhanced, const char *text, const char *phase);
void smtp_out_protocol_error (SmtpOutConn *conn, const MailReply *reply);

/* smtp-out-txn.c */
void smtp_out_txn_reply (SmtpOutConn *conn, MailReply *reply);

/* smtp-out-session.c */
void smtp_out_session_connected (SmtpOutConn *conn);
void smtp_out_session_reply (SmtpOutConn *conn, MailReply *reply);
void smtp_out_session_tls_done (SmtpOutConn *conn);
void smtp_out_session_tls_failed (SmtpOutConn *conn, const GError *error);
void smtp_out_session_body_sent (SmtpOutConn *conn);
void smtp_out_session_start_txn (SmtpOutConn *conn);
void smtp_out_session_transport_failed (SmtpOutConn *conn, VpsSmtpOutTransport transport,
                                        const char *message);

G_END_DECLS
