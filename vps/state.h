/* SPDX-License-Identifier: MIT
 *
 * state.h — shared state for rate limits, greylisting and connection
 * counts: a small key/value interface with expiry on every key, and two
 * backends behind it.
 *
 *   memory  (default) one process: a hash table with expiry and LRU
 *           eviction at [state] max_keys; answers synchronously, under a
 *           mutex, in well under a microsecond.
 *   redis   several vpsd instances share one Redis (hiredis, non-blocking,
 *           on one "vps-state" thread with its own GMainContext): a small
 *           pool of connections ([state] connections), every batch of
 *           operations pipelined in one round trip, per-batch timeout
 *           ([state] timeout), reconnect with back-off, optional password
 *           (AUTH; no TLS: Debian 12's hiredis 0.14 has none).  A Redis
 *           that is down or slow fails the batch with
 *           VPS_STATE_ERROR_UNAVAILABLE at the timeout, never later.
 *
 * Operations (VpsStateOp), applied in order, each atomic on its own:
 *   GET        key                   → value (0 and found FALSE when absent)
 *   INCR       key, delta, ttl_ms    → the new value; the key gets ttl_ms
 *                                      when it is created (a later INCR does
 *                                      not extend it: a fixed window);
 *                                      found TRUE when the key existed
 *   SET_NX     key, value, ttl_ms    → found TRUE when the key existed (and
 *                                      was left alone), else set; value =
 *                                      the value now held (the old one when
 *                                      found: a greylist's first-seen time)
 *   SET        key, value, ttl_ms    → set or replace, expiry renewed;
 *                                      value = value, found TRUE when the key
 *                                      existed
 *   WINDOW     key, limit, ttl_ms    → a sliding-window log: one event now
 *                                      is added, events older than ttl_ms
 *                                      dropped, value = events in the window
 *                                      including this one.  At most limit+1
 *                                      events are kept per key (the rest
 *                                      cannot change the answer "above
 *                                      limit"), so memory per key is bounded.
 *   MEMBER_ADD key, member, ttl_ms   → a set whose members expire one by
 *                                      one (a session id per open session);
 *                                      value = live members after adding.
 *                                      Adding again refreshes the expiry.
 *                                      found TRUE when it was a live member.
 *                                      At most VPS_STATE_MAX_MEMBERS are kept
 *                                      (those expiring last).
 *   MEMBER_DEL key, member           → value = live members after removing;
 *                                      found TRUE when it was a live member
 *   MEMBER_COUNT key                 → value = live members
 * found is FALSE for WINDOW and MEMBER_COUNT.  An op on a key that holds
 * another kind (GET of a WINDOW key, INCR of a member set) fails the batch
 * with VPS_STATE_ERROR_INVALID in both backends; so does an INCR that
 * would overflow.
 * Clocks: memory uses the monotonic clock; Redis expires INCR/SET keys
 * itself (PX) and runs WINDOW and MEMBER_* as Lua scripts on the Redis
 * server's clock (TIME), so vpsd hosts sharing one Redis need no common
 * clock.  Redis holds integers as Lua numbers inside scripts: INCR values
 * are exact up to 2^53.
 * Keys are at most VPS_STATE_MAX_KEY octets; callers namespace them
 * ("vps:rate:...", "vps:grey:...", "vps:conc:...") and every key expires:
 * nothing grows without bound in either backend.
 *
 * Threads: a VpsState is shared by every worker thread.  Callbacks of
 * vps_state_exec_async run on the thread-default GMainContext of the caller
 * of vps_state_exec_async.  vps_state_exec_try answers on the calling
 * thread when the backend can (memory), so the rule engine needs no
 * main-loop round trip for the default backend.
 */
#pragma once

#include <gio/gio.h>

#include "vps/config.h"

G_BEGIN_DECLS

#define VPS_STATE_ERROR (vps_state_error_quark ())
GQuark vps_state_error_quark (void);

typedef enum
{
  VPS_STATE_ERROR_CONFIG,      /* [state] values that cannot work */
  VPS_STATE_ERROR_UNAVAILABLE, /* the backend is down, timed out, or the pool is full */
  VPS_STATE_ERROR_PROTOCOL,    /* Redis answered something unexpected */
  VPS_STATE_ERROR_INVALID,     /* an operation the interface refuses (key too long, ...) */
} VpsStateError;

/* Octets of one key (namespace included) and of one member. */
#define VPS_STATE_MAX_KEY 512
#define VPS_STATE_MAX_MEMBER 128
/* Operations in one batch. */
#define VPS_STATE_MAX_OPS 64
/* Events kept per WINDOW key: limits above this are refused at load. */
#define VPS_STATE_MAX_WINDOW 100000
/* Live members kept per MEMBER_* key; past it those expiring first go. */
#define VPS_STATE_MAX_MEMBERS 65536
/* Longest ttl_ms of an operation (one year). */
#define VPS_STATE_MAX_TTL_MS ((gint64)366 * 86400 * 1000)

typedef enum
{
  VPS_STATE_GET,
  VPS_STATE_INCR,
  VPS_STATE_SET_NX,
  VPS_STATE_SET,
  VPS_STATE_WINDOW,
  VPS_STATE_MEMBER_ADD,
  VPS_STATE_MEMBER_DEL,
  VPS_STATE_MEMBER_COUNT,
} VpsStateOpKind;

typedef struct
{
  VpsStateOpKind kind;
  const char *key;    /* copied by the call */
  const char *member; /* MEMBER_*: copied by the call */
  gint64 value;       /* INCR: delta; SET, SET_NX: the value; WINDOW: limit */
  gint64 ttl_ms;      /* INCR, SET, SET_NX, WINDOW, MEMBER_ADD: > 0 */
} VpsStateOp;

typedef struct
{
  gint64 value;
  gboolean found; /* GET: the key exists; SET_NX: it existed (not set) */
} VpsStateResult;

typedef struct _VpsState VpsState;

/* From [state]: backend, max_keys (memory), address ("host:port",
 * "[v6]:port" or "unix:/path"), password, timeout, connect_timeout,
 * connections (no tls: see above).  Redis is connected lazily (a Redis that
 * is down at start is not an error: its batches fail until it is back).  A
 * bad address is VPS_STATE_ERROR_CONFIG "FILE:LINE: [state] address: ...". */
VpsState *vps_state_new (VpsConfig *cfg, GError **error);
VpsState *vps_state_ref (VpsState *state);
void vps_state_unref (VpsState *state);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsState, vps_state_unref)

/* "memory" or "redis". */
const char *vps_state_backend_name (VpsState *state);

/* Answer ops synchronously when the backend can (memory): TRUE with
 * results[0..n-1] filled.  FALSE without error: use the async call.  FALSE
 * with error: the batch itself is invalid (n is 0 or above
 * VPS_STATE_MAX_OPS, a key empty or too long, ttl_ms out of 1..
 * VPS_STATE_MAX_TTL_MS, a WINDOW limit above VPS_STATE_MAX_WINDOW, a
 * member missing or too long, a key of another kind: VPS_STATE_ERROR_INVALID;
 * ops before the failing one have been applied). */
gboolean vps_state_exec_try (VpsState *state, const VpsStateOp *ops, guint n,
                             VpsStateResult *results, GError **error);

typedef void (*VpsStateCallback) (VpsState *state, const VpsStateResult *results, guint n,
                                  const GError *error, gpointer user_data);

/* Run ops as one pipelined batch; callback once, on the caller's
 * thread-default main context, with every result or an error (then no
 * result is valid: a batch fails as a whole).  Cancelling calls back
 * with G_IO_ERROR_CANCELLED (unless the batch finished first).  The callback
 * never runs inside this call (nor inside g_cancellable_cancel()): always
 * from an idle source.  Redis: fails with VPS_STATE_ERROR_UNAVAILABLE
 * within [state] timeout of this call when no answer came. */
void vps_state_exec_async (VpsState *state, const VpsStateOp *ops, guint n,
                           GCancellable *cancellable, VpsStateCallback callback,
                           gpointer user_data);

/* Counters for metrics and tests: batches run, batches failed, keys held
 * (memory), evictions (memory). */
typedef struct
{
  guint64 batches;
  guint64 failures;
  guint64 keys;
  guint64 evictions;
} VpsStateStats;
void vps_state_get_stats (VpsState *state, VpsStateStats *out);

G_END_DECLS
