/* SPDX-License-Identifier: MIT
 *
 * state-private.h — what the backends of vps/state.c share with it (and
 * what tests/vps/test-state-*.c may see): the backend vtable, the batch
 * that carries one vps_state_exec_async() call to its single callback, the
 * common op validation, and the constructors and test hooks of each
 * backend.
 */
#pragma once

#include "vps/state.h"

G_BEGIN_DECLS

/* Memory: above this many keys the table is split in independently locked
 * shards (two worker threads rarely contend); below it one shard keeps LRU
 * eviction exact, which small tables (and tests) want. */
#define VPS_STATE_MEMORY_SHARDS 16
#define VPS_STATE_MEMORY_SHARD_MIN_KEYS 16384
/* Memory: expired entries looked at from the LRU end per operation (the
 * amortised sweep). */
#define VPS_STATE_MEMORY_SWEEP 4

/* Redis: largest reply data buffered but not yet parsed (our replies are
 * integers and short strings; a peer sending more is not a Redis). */
#define VPS_STATE_REDIS_MAX_BUFFER (256 * 1024)
/* Redis: batches waiting or in flight on one connection ("the pool is full"). */
#define VPS_STATE_REDIS_MAX_QUEUED 4096
/* Redis: reconnect back-off of one connection, doubled per failed attempt. */
#define VPS_STATE_REDIS_BACKOFF_MIN_MS 1000
#define VPS_STATE_REDIS_BACKOFF_MAX_MS 4000
/* Redis: a down server is logged at most this often. */
#define VPS_STATE_REDIS_LOG_INTERVAL_S 60

typedef struct _VpsStateBatch VpsStateBatch;

/* One exec_async call.  Reference-counted (g_atomic_rc_box): the caller's
 * side, the cancel handler and the backend may each hold it.  Exactly one of
 * vps_state_batch_complete() (backend) and the cancel handler wins `done`;
 * the winner schedules the callback on `ctx` from an idle source, so a
 * callback never runs inside vps_state_exec_async() or g_cancellable_cancel(). */
struct _VpsStateBatch
{
  VpsState *state; /* ref, dropped after the callback ran */
  GMainContext *ctx;
  GCancellable *cancellable;
  gulong cancel_id;
  VpsStateCallback callback;
  gpointer user_data;
  gint done; /* atomic 0 → 1 */
  guint n;
  VpsStateResult *results; /* n */
  GError *error;           /* set by the winner of done */
  gint64 deadline_us;      /* monotonic; Redis: fail past it */
  gpointer backend;        /* state->backend, readable after the callback */
  /* Redis (state thread only after submission): */
  GByteArray *wire; /* the pipelined commands, formatted by the caller */
  guint8 *kinds;    /* VpsStateOpKind of each op (n) */
  guint replies;    /* replies received so far (one per op) */
  GError *reply_error;
};

VpsStateBatch *vps_state_batch_ref (VpsStateBatch *batch);
void vps_state_batch_unref (VpsStateBatch *batch);
/* Finish the batch with results (error NULL) or error (taken).  Does
 * nothing (frees error) when the batch was cancelled already. */
void vps_state_batch_complete (VpsStateBatch *batch, GError *error);
gboolean vps_state_batch_is_done (VpsStateBatch *batch);

/* state-redis-cmd.c: one command (argv) appended to wire in Redis's
 * protocol. */
void vps_state_redis_append (GByteArray *wire, int argc, const char **argv);
/* The commands of batch's ops, pipelined into
 * batch->wire (and batch->kinds); nonce and *seq (atomic) make WINDOW's
 * event members unique across hosts and calls. */
void vps_state_redis_format (VpsStateBatch *batch, const VpsStateOp *ops, guint64 nonce,
                             guint64 *seq);
/* A Redis error reply as our error: keys of another kind and refused
 * arithmetic INVALID, a Redis that cannot serve now (or refuses the
 * password) UNAVAILABLE, anything else PROTOCOL. */
GError *vps_state_redis_error (const char *address, const char *msg);
/* The reply (a hiredis redisReply) to op i of batch into batch->results[i];
 * FALSE with error for an error reply or one of the wrong shape. */
struct redisReply;
gboolean vps_state_redis_take (const char *address, VpsStateBatch *batch, guint i,
                               const struct redisReply *reply, GError **error);

typedef struct
{
  const char *name;
  /* Validated ops; TRUE with results, FALSE without error: go async. */
  gboolean (*exec_try) (gpointer backend, const VpsStateOp *ops, guint n, VpsStateResult *results,
                        GError **error);
  /* Prepare (caller's thread, before submit): e.g. format the wire bytes. */
  void (*prepare) (gpointer backend, VpsStateBatch *batch, const VpsStateOp *ops);
  /* Run a batch; complete it sooner or later, from any thread. */
  void (*submit) (gpointer backend, VpsStateBatch *batch, const VpsStateOp *ops);
  void (*stats) (gpointer backend, VpsStateStats *out);
  void (*free) (gpointer backend);
} VpsStateBackendClass;

struct _VpsState
{
  gatomicrefcount ref;
  const VpsStateBackendClass *klass;
  gpointer backend;
  gint64 timeout_ms;
  guint64 batches;  /* atomic */
  guint64 failures; /* atomic */
};

/* Shape checks common to both backends: VPS_STATE_ERROR_INVALID. */
gboolean vps_state_ops_validate (const VpsStateOp *ops, guint n, GError **error);

/* ---- memory ---- */

typedef gint64 (*VpsStateClock) (gpointer user_data); /* microseconds, monotonic */

gpointer vps_state_memory_new (guint64 max_keys);
extern const VpsStateBackendClass vps_state_memory_class;
/* Tests: replace the monotonic clock (NULL restores it). */
void vps_state_memory_set_clock (VpsState *state, VpsStateClock clock, gpointer user_data);

/* ---- redis ---- */

typedef struct
{
  const char *address;  /* "host:port", "[v6]:port" or "unix:/path" */
  const char *password; /* NULL: no AUTH */
  gint64 timeout_ms;
  gint64 connect_timeout_ms;
  guint connections;
} VpsStateRedisConfig;

/* Parses the address; does not connect (that happens at the first batch). */
gpointer vps_state_redis_new (const VpsStateRedisConfig *config, GError **error);
extern const VpsStateBackendClass vps_state_redis_class;

/* Both: build a VpsState around a backend (takes it). */
VpsState *vps_state_new_with_backend (const VpsStateBackendClass *klass, gpointer backend,
                                      gint64 timeout_ms);

G_END_DECLS
