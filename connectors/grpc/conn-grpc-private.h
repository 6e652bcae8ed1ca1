/* SPDX-License-Identifier: MIT
 *
 * conn-grpc-private.h — what the modules of the `grpc` connector share:
 * the remote session state kept per local session (conn-grpc.c) and the
 * mapping between the engine's session/transaction/result types and the
 * vps.v1 messages (conn-grpc-map.c), which tests can drive without a peer.
 */
#pragma once

#include "proto/vps/v1/policy.pb-c.h"
#include "vps/connector.h"

G_BEGIN_DECLS

#define CONN_GRPC_ERROR (conn_grpc_error_quark ())
GQuark conn_grpc_error_quark (void);

typedef enum
{
  CONN_GRPC_ERROR_NOT_SENDABLE, /* the stage's values cannot travel (no message at data) */
  CONN_GRPC_ERROR_BAD_REPLY,    /* the reply does not parse, or carries nonsense */
} ConnGrpcError;

/* Named limits and defaults. */
#define CONN_GRPC_DEFAULT_SESSION_TIMEOUT_MS (300 * 1000) /* as vpsd's [grpc] session_timeout */
#define CONN_GRPC_MAX_REPLY (64 * 1024 * 1024)            /* largest CheckResponse accepted */
#define CONN_GRPC_MAX_REPLY_MODS 10000                    /* modifications taken from one reply */
#define CONN_GRPC_MAX_REPLY_FIELDS 1000                   /* remote connector fields looked at */
#define CONN_GRPC_MAX_FIELD_NAME 128                      /* NAME.field names built from a reply */
#define CONN_GRPC_END_TIMEOUT_US (2 * G_USEC_PER_SEC)     /* EndSession's deadline */
#define CONN_GRPC_CHECK_METHOD "/vps.v1.Policy/Check"
#define CONN_GRPC_END_METHOD "/vps.v1.Policy/EndSession"

/* What the remote side has seen of one local session: its id there, and
 * the stages sent in its current transaction (to know what to catch up). */
typedef struct
{
  char *remote_id;       /* CheckRequest.session_id */
  gboolean connected;    /* connect (or any stage) was sent: the remote session exists */
  gboolean helo_sent;    /* helo was sent */
  gboolean in_txn;       /* mail was sent for the current transaction */
  char *sender;          /* the sender sent at mail */
  RulesStage last_stage; /* the last stage sent in this transaction */
  guint rcpts_sent;      /* rcpt stages sent in this transaction */
  guint mods_seen;       /* modifications of the remote txn already taken */
  char *remote_txn;      /* CheckResponse.transaction_id last seen */
  gint64 last_used;      /* monotonic µs */
  gboolean busy;         /* a call of this session is running */
} ConnGrpcSess;

void conn_grpc_sess_free (ConnGrpcSess *s);

/* One step of a call: a stage sent, perhaps only to catch the remote side
 * up (its verdict is then not ours). */
typedef struct
{
  RulesStage stage;
  gboolean reset;   /* CheckRequest.reset */
  const char *rcpt; /* rcpt catch-up: the recipient (borrowed from the txn) */
  gboolean catch_up;
} ConnGrpcStep;

/* The steps a call of `stage` needs given what `s` has seen, the last one
 * being `stage` itself; updates `s` as if they were all sent.  Returns the
 * number of steps written (at most RULES_N_STAGES + n rcpts, see
 * conn_grpc_plan_max). */
gsize conn_grpc_plan (ConnGrpcSess *s, VpsTxn *txn, RulesStage stage, ConnGrpcStep *steps);
gsize conn_grpc_plan_max (VpsTxn *txn);

/* The CheckRequest of one step, packed.  NULL + CONN_GRPC_ERROR_NOT_SENDABLE
 * when a required value is missing locally. */
GBytes *conn_grpc_build_request (const char *remote_id, VpsTxn *txn, const ConnGrpcStep *step,
                                 GError **error);

/* The connector result of a CheckResponse (packed bytes).  Only the
 * modifications after s->mods_seen are taken (the response carries every
 * modification of the remote transaction); s->mods_seen and s->remote_txn
 * are updated.  NULL + CONN_GRPC_ERROR_BAD_REPLY on nonsense. */
VpsConnectorResult *conn_grpc_result_from_reply (GBytes *reply, ConnGrpcSess *s,
                                                 const char *connector, GError **error);

G_END_DECLS
