/* SPDX-License-Identifier: MIT
 *
 * milter-private.h — the milter session shared by milter-server.c (sockets,
 * timers, lifecycle), milter-session.c (commands → stages → replies) and
 * milter-content.c (headers and body, end of message, modifications).
 *
 * Ownership: a VpsMilterConn is reference-counted; its VpsStream (socket,
 * buffers, read and write sources) holds no reference on it and is closed
 * in conn_close; every engine call holds one until its callback.
 * Everything runs on the worker context that accepted the connection.
 */
#pragma once

#include "vps/engine.h"
#include "vps/milter-server.h"
#include "vps/session.h"
#include "vps/stream.h"

G_BEGIN_DECLS

/* Bytes read from the socket per wakeup. */
#define VPS_MILTER_READ_CHUNK (64 * 1024)
/* Headers kept per message (Postfix refuses far fewer). */
#define VPS_MILTER_MAX_HEADERS 10000
/* Timer granularity for timeouts, progress and drain checks. */
#define VPS_MILTER_TICK_MS 250

/* Where the conversation is; a command that belongs to an earlier phase
 * than the current one is out of order (the connection is closed). */
typedef enum
{
  PHASE_OPTNEG,  /* waiting for OPTNEG */
  PHASE_CONNECT, /* negotiated, waiting for CONNECT (or later steps) */
  PHASE_HELO,    /* connected: HELO, or a message may begin */
  PHASE_MAIL,
  PHASE_RCPT,
  PHASE_DATA,
  PHASE_HEADER,
  PHASE_EOH,
  PHASE_BODY,
} VpsMilterPhase;

struct _VpsMilterServer
{
  VpsDaemon *daemon;
  VpsListener *listener; /* owned by the daemon */
  gint n_sessions;       /* atomic */
};

typedef struct
{
  gint ref; /* atomic: callbacks may hold one */
  VpsMilterServer *server;
  VpsEngine *engine; /* the engine current at accept: reload leaves us alone */
  VpsConfig *cfg;    /* borrowed from engine */
  VpsStream *stream; /* the socket, its buffers and sources */
  GSource *tick_source;
  GByteArray *in;  /* the stream's: received, not yet processed */
  GByteArray *out; /* the stream's: to send (the encoders append here) */
  gboolean closed;

  VpsSession *session;
  VpsTxn *txn;              /* the current message, or the session's first (connect/helo) */
  gboolean txn_has_message; /* MAIL seen (or content began) for txn */
  MilterOptions want;
  MilterOptions negotiated;
  VpsMilterPhase phase;

  /* limits and timeouts from the engine's config (ms / bytes) */
  gint64 connect_timeout, command_timeout, content_timeout, idle_timeout, progress_interval;
  guint64 memory_body_limit, max_message_size, max_header_size;
  gboolean store_quarantine;

  /* timing (monotonic µs) */
  gint64 last_input;
  gint64 busy_since;
  gint64 last_progress;

  /* a stage in flight: input is not processed until it finishes */
  gboolean busy;
  char busy_command; /* the milter command being answered */
  gboolean busy_replies;
  GCancellable *cancellable;

  /* server identity from macros (j, {daemon_addr}, {daemon_port}, {if_addr}) */
  char *server_name;
  char *server_ip;
  guint16 server_port;

  /* content of the current message */
  GPtrArray *headers; /* char* name, value, name, value ... as sent */
  gsize header_bytes;
  GByteArray *body; /* in memory up to memory_body_limit */
  int body_fd;      /* then spooled here (-1 when not) */
  char *body_path;
  guint64 body_size;
  gboolean too_big;
  guint n_messages;
} VpsMilterConn;

VpsMilterConn *vps_milter_conn_ref (VpsMilterConn *conn);
void vps_milter_conn_unref (VpsMilterConn *conn);

/* milter-server.c */
const char *vps_milter_conn_id (VpsMilterConn *conn);
/* Log `why` and close (the MTA applies its default action). */
void vps_milter_conn_fail (VpsMilterConn *conn, const char *why);
void vps_milter_conn_close (VpsMilterConn *conn);
/* Send what is buffered in conn->out (as much as the socket takes now). */
void vps_milter_conn_flush (VpsMilterConn *conn);
/* A stage finished: process the input that waited for it. */
void vps_milter_conn_resume (VpsMilterConn *conn);

/* milter-session.c: handle one decoded packet.  FALSE + error closes. */
gboolean vps_milter_conn_dispatch (VpsMilterConn *conn, MilterCommandPacket *packet,
                                   GError **error);
gboolean vps_milter_conn_expects_reply (VpsMilterConn *conn, MilterCommand cmd);
/* The reply of `command` for a stage result (or an error result). */
void vps_milter_conn_stage_reply (VpsMilterConn *conn, RulesStage stage,
                                  const VpsStageResult *result);
/* Run `stage` on the current txn; the reply to `command` is sent when it
 * finishes if `replies`. */
void vps_milter_conn_run_stage (VpsMilterConn *conn, RulesStage stage, char command,
                                gboolean replies);
/* A fresh VpsTxn for a new message (the previous one is dropped). */
void vps_milter_conn_new_txn (VpsMilterConn *conn);

/* milter-content.c */
gboolean vps_milter_content_header (VpsMilterConn *conn, const char *name, const char *value,
                                    GError **error);
gboolean vps_milter_content_body (VpsMilterConn *conn, GBytes *chunk, GError **error);
/* Forget the content of the current message (ABORT, after EOM, close). */
void vps_milter_content_reset (VpsMilterConn *conn);
/* End of message: build the message, run the data stage, then send the
 * modifications and the verdict. */
void vps_milter_content_eom (VpsMilterConn *conn);
/* At EOM, after the data stage: modifications + verdict into conn->out. */
void vps_milter_content_finish (VpsMilterConn *conn, const VpsStageResult *result);

G_END_DECLS
