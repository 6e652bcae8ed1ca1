/* SPDX-License-Identifier: MIT
 *
 * policy-private.h — one policy connection, shared by policy-server.c
 * (socket, timer, lifecycle) and policy-session.c (requests → session,
 * transaction, stages → action).
 *
 * Ownership: a VpsPolicyConn is reference-counted; its VpsStream (socket,
 * buffers, read and write sources) holds no reference on it and is closed
 * in conn_close; every engine call holds one until its callback.  Everything runs on the worker context that
 * accepted the connection.
 */
#pragma once

#include "proto/policy/policy.h"
#include "vps/engine.h"
#include "vps/policy-server.h"
#include "vps/session.h"
#include "vps/stream.h"

G_BEGIN_DECLS

/* Bytes read from the socket per wakeup.  The parser consumes at most one
 * request per call and we read only when everything read was consumed, so
 * one connection never holds more than this plus POLICY_MAX_REQUEST. */
#define VPS_POLICY_READ_CHUNK (16 * 1024)
/* Timer granularity for the idle and request timeouts and the drain. */
#define VPS_POLICY_TICK_MS 500
/* Stages one request can run (catch-up connect, helo, auth, mail + its own). */
#define VPS_POLICY_MAX_PLAN 6
/* PREPEND/BCC waiting for a reply slot in one transaction. */
#define VPS_POLICY_MAX_PENDING 64
/* Longest session key kept (two addresses, two ports). */
#define VPS_POLICY_MAX_KEY 160

struct _VpsPolicyServer
{
  VpsDaemon *daemon;
  VpsListener *listener; /* owned by the daemon */
  gint n_sessions;       /* atomic */
  gsize n_requests;      /* atomic */
};

typedef struct
{
  gint ref; /* atomic: callbacks may hold one */
  VpsPolicyServer *server;
  VpsEngine *engine; /* the engine current at accept: reload leaves us alone */
  VpsConfig *cfg;    /* borrowed from engine */
  VpsStream *stream; /* the socket, its buffers and sources */
  GSource *tick_source;
  PolicyParser *parser;
  GByteArray *in; /* the stream's: read, not yet fed to the parser */
  GString *out;   /* replies being written, handed to the stream at flush */
  gboolean closed;
  char *peer; /* "IP:PORT" or "unix socket", for the log */
  char *id;   /* the log id: the session's id, or "P<n>" before a session */

  /* from the engine's config */
  gint64 idle_timeout, request_timeout; /* ms */
  PolicyActionKind no_opinion_action;   /* continue */
  PolicyActionKind accept_action;       /* accept */
  gboolean want_macros;                 /* the rules read macro(): attributes become macros */

  gint64 last_input; /* monotonic µs */
  gint64 busy_since;

  /* the SMTP session (NULL before the first request) */
  VpsSession *session;
  char *session_key; /* client_address|client_port|server_address|server_port */
  gboolean ran_connect;
  char *ran_helo; /* the HELO name the helo stage ran with, or NULL */

  /* the transaction: txn always exists once there is a session; it is a
   * message transaction once MAIL came or an instance adopted it */
  VpsTxn *txn;
  gboolean txn_is_message;
  char *instance; /* the adopted Postfix instance, or NULL */
  gboolean ran_mail;
  guint mods_seen;      /* modifications of txn already looked at */
  GQueue pending;       /* PolicyAction* (PREPEND/BCC) waiting for a reply slot */
  GPtrArray *pend_rule; /* the rule of each pending action, same order (char*) */
  gboolean bcc_used;    /* Postfix keeps only the last BCC of a transaction */
  gboolean hold_sent;

  /* the request being answered */
  gboolean busy;
  PolicyRequest *req;
  PolicyState state;
  RulesStage plan[VPS_POLICY_MAX_PLAN];
  guint n_plan, plan_i;
  gint target;           /* index in plan of the request's own stage, -1 when none */
  VpsStageResult *final; /* the result that decides the reply, or NULL */
  gboolean failed;       /* a stage failed or timed out: tempfail */
  RulesStage failed_stage;
  GCancellable *cancellable;

  /* the previous request and the verdict part of its reply (repeats) */
  PolicyRequest *prev_req;
  char *prev_reply; /* the action value ("DUNNO", "550 5.7.1 No") */
  PolicyActionKind prev_kind;

  guint n_requests;
} VpsPolicyConn;

VpsPolicyConn *vps_policy_conn_ref (VpsPolicyConn *conn);
void vps_policy_conn_unref (VpsPolicyConn *conn);

/* policy-server.c */
const char *vps_policy_conn_id (VpsPolicyConn *conn);
/* Log `why` and close (Postfix applies smtpd_policy_service_default_action
 * after its retry). */
void vps_policy_conn_fail (VpsPolicyConn *conn, const char *why);
void vps_policy_conn_close (VpsPolicyConn *conn);
void vps_policy_conn_flush (VpsPolicyConn *conn);
/* A request was answered: process the input that waited for it. */
void vps_policy_conn_resume (VpsPolicyConn *conn);

/* policy-session.c */
/* Handle one request (a reference is taken).  Either the reply is queued
 * in conn->out at once, or conn->busy is set and the reply comes when the
 * stages finish (then vps_policy_conn_resume). */
void vps_policy_conn_request (VpsPolicyConn *conn, PolicyRequest *req);
/* Forget the session and transaction (close, or tests). */
void vps_policy_conn_end_session (VpsPolicyConn *conn);

G_END_DECLS
