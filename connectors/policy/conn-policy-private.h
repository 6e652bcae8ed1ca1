/* SPDX-License-Identifier: MIT
 *
 * conn-policy-private.h — the parts of the `policy` connector that its
 * modules share: the immutable settings, the per-context connection pool
 * (conn-policy-pool.c) and the stage ⇄ protocol mapping (conn-policy-map.c).
 */
#pragma once

#include <gio/gio.h>

#include "proto/policy/policy.h"
#include "vps/connector.h"

G_BEGIN_DECLS

/* Named limits and defaults of the configuration keys. */
#define CONN_POLICY_DEFAULT_MAX_CONNECTIONS 8
#define CONN_POLICY_MAX_MAX_CONNECTIONS 1024
#define CONN_POLICY_DEFAULT_RETRIES 1
#define CONN_POLICY_MAX_RETRIES 10
#define CONN_POLICY_DEFAULT_IDLE_TIMEOUT_MS (60 * 1000)
#define CONN_POLICY_MAX_POLICY_CONTEXT 256
/* Bytes asked for per read: a reply is one short line. */
#define CONN_POLICY_READ_CHUNK 4096

/* Settings read once from [connector NAME]; shared (read-only) by every
 * pool, reference-counted with g_atomic_rc_box. */
typedef struct
{
  char *name;    /* the connector's name, for log lines */
  char *address; /* as configured, for messages */
  char *host;    /* inet: host and port */
  guint16 port;
  char *path; /* unix: the socket path */
  guint max_connections;
  guint retries;
  gint64 idle_timeout_ms; /* 0 = keep idle connections until the peer closes them */
} ConnPolicySettings;

ConnPolicySettings *conn_policy_settings_ref (ConnPolicySettings *settings);
void conn_policy_settings_unref (ConnPolicySettings *settings);

/* ---- the pool (conn-policy-pool.c) ----------------------------------------
 *
 * One pool per (connector, main context): every operation of a pool runs on
 * its context, so a pool needs no lock; only its reference count is atomic.
 * At most max_connections connections are open; further exchanges wait in
 * FIFO order for one.  An idle connection is closed after idle_timeout, and
 * one the peer closed (or wrote to) while idle is dropped before reuse.  A
 * request that fails on a reused connection before any reply byte arrived
 * is sent again on a new connection without counting as a retry (the peer
 * may close idle connections whenever it likes); other failures are retried
 * `retries` times on new connections.  A malformed reply is never retried:
 * the connection is closed and the exchange fails. */
typedef struct _ConnPolicyPool ConnPolicyPool;

ConnPolicyPool *conn_policy_pool_new (ConnPolicySettings *settings, GMainContext *context);
ConnPolicyPool *conn_policy_pool_ref (ConnPolicyPool *pool);
void conn_policy_pool_unref (ConnPolicyPool *pool);
/* From any thread: close the idle connections (on the pool's context) and
 * close every busy one when its exchange ends.  Takes over one reference. */
void conn_policy_pool_shutdown (ConnPolicyPool *pool);

/* One request (the whole wire form, terminating empty line included) and
 * its reply, parsed.  Must be called on the pool's context. */
void conn_policy_pool_exchange_async (ConnPolicyPool *pool, GBytes *request, const char *sid,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data);
PolicyAction *conn_policy_pool_exchange_finish (ConnPolicyPool *pool, GAsyncResult *result,
                                                GError **error);

/* ---- the mapping (conn-policy-map.c) ------------------------------------ */

/* The protocol_state Postfix would send at `stage` (see conn-policy.c for
 * the stages Postfix has no state for). */
PolicyState conn_policy_stage_state (RulesStage stage);

/* The request Postfix would send for `stage` of txn, in Postfix's order,
 * with `policy_context` (NULL = "").  NULL + error when a value cannot
 * travel in the protocol (an LF or NUL from the client). */
GBytes *conn_policy_build_request (VpsTxn *txn, RulesStage stage, const char *policy_context,
                                   GError **error);

/* The connector result an action means: its verdict, reply, fields
 * `action` (the action word as sent: "OK", "DEFER_IF_PERMIT", "550",
 * a restriction name) and text, and the modifications PREPEND, REDIRECT
 * and BCC map to.  `quarantine` names the quarantine of HOLD.  NULL +
 * error for a modification we refuse (a header Postfix would refuse too). */
VpsConnectorResult *conn_policy_result_from_action (const PolicyAction *action, VpsTxn *txn,
                                                    RulesStage stage, const char *connector,
                                                    const char *quarantine, GError **error);

G_END_DECLS
