/* SPDX-License-Identifier: MIT
 *
 * conn-milter-private.h — what the modules of the `milter` connector share:
 * the immutable settings, the per-context pool of per-session connections
 * (conn-milter-conn.c) and the MTA side of the conversation: which packets
 * a stage sends and what the milter's answers mean (conn-milter-feed.c).
 */
#pragma once

#include <gio/gio.h>

#include "proto/milter/milter.h"
#include "vps/connector.h"

G_BEGIN_DECLS

/* Named limits and defaults of the configuration keys. */
#define CONN_MILTER_DEFAULT_CONNECT_TIMEOUT_MS (30 * 1000) /* Postfix milter_connect_timeout */
#define CONN_MILTER_DEFAULT_COMMAND_TIMEOUT_MS (30 * 1000) /* milter_command_timeout */
#define CONN_MILTER_DEFAULT_EOM_TIMEOUT_MS (300 * 1000)    /* milter_content_timeout */
#define CONN_MILTER_DEFAULT_IDLE_TIMEOUT_MS (600 * 1000)
#define CONN_MILTER_DEFAULT_BACKOFF_MS 1000
#define CONN_MILTER_MAX_BACKOFF_MS (60 * 1000)
/* Bytes asked for per read: replies are small except REPLBODY chunks. */
#define CONN_MILTER_READ_CHUNK 16384
/* A reply frame we accept: REPLBODY chunks are at most 65535 bytes of data,
 * a reply code at most 32 lines; anything longer is nonsense. */
#define CONN_MILTER_MAX_REPLY (MILTER_MAX_DATA_SIZE + 1)
/* Packets one end of message may answer with (modifications + verdict +
 * progress): bounds a milter that never stops sending. */
#define CONN_MILTER_MAX_EOM_REPLIES 100000
/* A replaced body we collect (REPLBODY chunks concatenated). */
#define CONN_MILTER_MAX_REPLBODY VPS_MODIFY_MAX_BODY

/* Settings read once from [connector NAME]; shared read-only by every pool,
 * reference-counted with g_atomic_rc_box. */
typedef struct
{
  char *name;    /* the connector's name, for log lines */
  char *address; /* as configured, for messages */
  char *host;    /* inet: host and port */
  guint16 port;
  char *path; /* unix: the socket path */
  gint64 connect_timeout_ms;
  gint64 command_timeout_ms;
  gint64 eom_timeout_ms;
  gint64 idle_timeout_ms; /* close a session's connection unused this long */
  gint64 backoff_ms;      /* first wait after a failed connect; doubles */
  char *quarantine;       /* quarantine name of a QUARANTINE answer */
  MilterOptions offer;    /* what we offer at OPTNEG */
} ConnMilterSettings;

ConnMilterSettings *conn_milter_settings_ref (ConnMilterSettings *settings);
void conn_milter_settings_unref (ConnMilterSettings *settings);

/* ---- one connection: the milter's view of one SMTP session --------------- */

typedef struct _ConnMilterPool ConnMilterPool;

typedef struct
{
  ConnMilterPool *pool;
  char *sid; /* the session id: the key in the pool */
  GSocketConnection *connection;
  MilterOptions options;           /* negotiated (effective) */
  char *symlists[MILTER_N_STAGES]; /* the milter's macro lists, or NULL */
  gboolean busy;                   /* a call is running on it */
  gboolean broken;                 /* out of step: close after the call */
  GSource *idle_timer;
  /* what the milter has been sent (the envelope steps are never repeated) */
  gboolean sent_connect;
  gboolean sent_helo;
  gboolean session_done; /* accept/reject at connect or helo: nothing more */
  char txn_id[16];       /* the transaction MAIL was sent for ("" = none) */
  gboolean sent_mail;
  gboolean message_done;  /* the milter decided the message or saw EOM */
  GHashTable *rcpts_sent; /* casefolded addresses sent with RCPT */
  GByteArray *in;         /* reply bytes not yet decoded */
  guint8 chunk[CONN_MILTER_READ_CHUNK];
} ConnMilterConn;

/* One exchange on a connection: write `out` (may be empty), then, when
 * want_reply, read frames until a reply arrives that is not PROGRESS and
 * (at end of message) not a modification.  Every decoded packet of the
 * answer is returned in order (MilterReplyPacket*, the last one the
 * verdict).  timeout_ms bounds the wait for each packet (PROGRESS restarts
 * it).  Any failure leaves the connection broken. */
void conn_milter_conn_exchange_async (ConnMilterConn *conn, GByteArray *out, gboolean want_reply,
                                      gboolean eom, gint64 timeout_ms, GCancellable *cancellable,
                                      GAsyncReadyCallback callback, gpointer user_data);
GPtrArray *conn_milter_conn_exchange_finish (ConnMilterConn *conn, GAsyncResult *result,
                                             GError **error);

/* ---- the pool: one per (connector, main context) ----------------------------
 * Holds the connections by session id (opened on a session's first call,
 * closed with QUIT when the session ends — vps_session_add_end_notify — or
 * after idle_timeout) and the backoff state of the milter: after a failed
 * connect or negotiation no new connection is tried before the backoff
 * expires, so a dead milter costs a call nothing but its on_error verdict. */
ConnMilterPool *conn_milter_pool_new (ConnMilterSettings *settings, GMainContext *context);
ConnMilterPool *conn_milter_pool_ref (ConnMilterPool *pool);
void conn_milter_pool_unref (ConnMilterPool *pool);
/* From any thread: QUIT and close every connection, refuse new calls.
 * Takes over one reference. */
void conn_milter_pool_shutdown (ConnMilterPool *pool);
const ConnMilterSettings *conn_milter_pool_settings (ConnMilterPool *pool);

/* The session's connection, connected and negotiated (a new one the first
 * time; its session's end is hooked).  Fails at once while backing off, or
 * when the session's connection is busy with another call. */
void conn_milter_pool_acquire_async (ConnMilterPool *pool, VpsSession *session,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
ConnMilterConn *conn_milter_pool_acquire_finish (ConnMilterPool *pool, GAsyncResult *result,
                                                 GError **error);
/* The call is done with conn: kept for the session's next call, or closed
 * when broken. */
void conn_milter_pool_release (ConnMilterPool *pool, ConnMilterConn *conn);

/* ---- the conversation (conn-milter-feed.c) ------------------------------- */

/* One packet group of a call: macros (if any) and one command. */
typedef struct
{
  MilterCommand command; /* what goes out (MACRO when negotiated away) */
  MilterCommand for_cmd; /* the step it stands for */
  GByteArray *bytes;
  gboolean catch_up; /* an envelope step sent late: its verdict is only logged */
  gboolean body;     /* a BODY chunk (SKIP skips the rest of these) */
  char *rcpt;        /* RCPT: the casefolded address */
} ConnMilterStep;

void conn_milter_step_free (ConnMilterStep *step);

/* The steps an MTA would send at `stage` of txn to a milter in conn's
 * state: what was not sent yet of connect, helo, mail (after an ABORT when
 * MAIL went out for another transaction), the recipients, and at data the
 * whole message (the txn's message with its modifications so far applied).
 * NULL + error when the message cannot be edited.  Does not change conn. */
GPtrArray *conn_milter_plan (ConnMilterConn *conn, VpsTxn *txn, RulesStage stage, GError **error);

/* conn's state after `step` went out and was answered (or needs no
 * answer). */
void conn_milter_step_sent (ConnMilterConn *conn, const ConnMilterStep *step, VpsTxn *txn);

/* Fold the answer to `step` into result (verdict, reply, modifications).
 * Returns TRUE when the call ends here (a verdict other than continue or
 * accept, or accept itself, which retires the milter for the message or
 * the session); *skip is set on SKIP.  FALSE + error on a reply that has no
 * place there (a modification outside end of message or not negotiated, a
 * modification we refuse). */
gboolean conn_milter_apply_replies (ConnMilterConn *conn, const ConnMilterStep *step,
                                    GPtrArray *replies, VpsConnectorResult *result, gboolean *ends,
                                    gboolean *skip, GError **error);

G_END_DECLS
