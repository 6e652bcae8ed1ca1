/* SPDX-License-Identifier: MIT
 *
 * state.c — the shared-state interface of state.h: reads [state], builds
 * the memory or Redis backend, validates every batch the same way for both,
 * and carries an async batch to exactly one callback on the caller's main
 * context (result, error or G_IO_ERROR_CANCELLED, whichever comes first).
 *
 * Contract: vps_state_exec_try() and vps_state_exec_async() refuse a
 * malformed batch with VPS_STATE_ERROR_INVALID before any backend sees it;
 * counters (batches, failures) are atomic; a VpsState may be used from any
 * thread.  Backends live in state-memory.c and state-redis.c.
 */
#include "vps/state-private.h"

#include <string.h>

#include "vps/config-private.h"

G_DEFINE_QUARK (vps - state - error - quark, vps_state_error)

static inline void
counter_inc (guint64 *counter)
{
  __atomic_fetch_add (counter, 1, __ATOMIC_RELAXED);
}

/* ---- validation ---------------------------------------------------------- */

static gboolean
op_needs_ttl (VpsStateOpKind kind)
{
  return kind == VPS_STATE_INCR || kind == VPS_STATE_SET_NX || kind == VPS_STATE_SET
         || kind == VPS_STATE_WINDOW || kind == VPS_STATE_MEMBER_ADD;
}

static gboolean
op_has_member (VpsStateOpKind kind)
{
  return kind == VPS_STATE_MEMBER_ADD || kind == VPS_STATE_MEMBER_DEL;
}

gboolean
vps_state_ops_validate (const VpsStateOp *ops, guint n, GError **error)
{
  if (n == 0 || n > VPS_STATE_MAX_OPS)
    {
      g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
                   "a batch holds 1 to %d operations, not %u", VPS_STATE_MAX_OPS, n);
      return FALSE;
    }
  for (guint i = 0; i < n; i++)
    {
      const VpsStateOp *op = &ops[i];
      gsize len;

      if ((guint)op->kind > VPS_STATE_MEMBER_COUNT)
        {
          g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
                       "operation %u: unknown kind %d", i, (int)op->kind);
          return FALSE;
        }
      len = op->key != NULL ? strnlen (op->key, VPS_STATE_MAX_KEY + 1) : 0;
      if (len == 0 || len > VPS_STATE_MAX_KEY)
        {
          g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
                       "operation %u: a key is 1 to %d octets", i, VPS_STATE_MAX_KEY);
          return FALSE;
        }
      if (op_has_member (op->kind))
        {
          len = op->member != NULL ? strnlen (op->member, VPS_STATE_MAX_MEMBER + 1) : 0;
          if (len == 0 || len > VPS_STATE_MAX_MEMBER)
            {
              g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
                           "operation %u: a member is 1 to %d octets", i, VPS_STATE_MAX_MEMBER);
              return FALSE;
            }
        }
      if (op_needs_ttl (op->kind) && (op->ttl_ms <= 0 || op->ttl_ms > VPS_STATE_MAX_TTL_MS))
        {
          g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
                       "operation %u: ttl_ms must be 1 to %" G_GINT64_FORMAT
                       ", not %" G_GINT64_FORMAT,
                       i, VPS_STATE_MAX_TTL_MS, op->ttl_ms);
          return FALSE;
        }
      if (op->kind == VPS_STATE_WINDOW && (op->value < 0 || op->value > VPS_STATE_MAX_WINDOW))
        {
          g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
                       "operation %u: a window limit is 0 to %d", i, VPS_STATE_MAX_WINDOW);
          return FALSE;
        }
    }
  return TRUE;
}

/* ---- construction -------------------------------------------------------- */

VpsState *
vps_state_new_with_backend (const VpsStateBackendClass *klass, gpointer backend, gint64 timeout_ms)
{
  VpsState *state = g_new0 (VpsState, 1);

  g_atomic_ref_count_init (&state->ref);
  state->klass = klass;
  state->backend = backend;
  state->timeout_ms = timeout_ms;
  return state;
}

/* "FILE:LINE: [state] address: why", as VPS_STATE_ERROR_CONFIG. */
static char *
bad_address (VpsConfig *cfg, const char *why, GError **error)
{
  g_autoptr (GError) local = NULL;

  vps_config_error_at (cfg, "state", "address", &local, "%s", why);
  g_set_error_literal (error, VPS_STATE_ERROR, VPS_STATE_ERROR_CONFIG, local->message);
  return NULL;
}

/* A unix path is resolved like every path of vps.conf; a host:port is
 * checked by GIO's own parser, the one the connection will use. */
static char *
redis_address (VpsConfig *cfg, GError **error)
{
  const char *raw = vps_config_get_string (cfg, "state", "address");
  g_autoptr (GSocketConnectable) addr = NULL;

  if (g_str_has_prefix (raw, "unix:"))
    {
      g_autofree char *path = NULL;
      g_autofree char *why = NULL;

      if (raw[5] == '\0')
        return bad_address (cfg, "empty socket path", error);
      path = vps_config_resolve_path (cfg, raw + 5);
      /* sun_path holds 108 bytes with the terminating NUL. */
      if (strlen (path) > VPS_CONFIG_MAX_UNIX_PATH)
        {
          why = g_strdup_printf ("unix socket path longer than %d bytes", VPS_CONFIG_MAX_UNIX_PATH);
          return bad_address (cfg, why, error);
        }
      return g_strconcat ("unix:", path, NULL);
    }
  /* g_network_address_parse() accepts a missing port (0 here): we want it
   * written, as everywhere else in vps.conf. */
  addr = g_network_address_parse (raw, 0, NULL);
  if (addr == NULL || strrchr (raw, ':') == NULL
      || g_network_address_get_port (G_NETWORK_ADDRESS (addr)) == 0)
    return bad_address (cfg, "expected HOST:PORT, [IPV6]:PORT or unix:/path", error);
  return g_strdup (raw);
}

VpsState *
vps_state_new (VpsConfig *cfg, GError **error)
{
  const char *backend;

  g_return_val_if_fail (cfg != NULL, NULL);
  backend = vps_config_get_string (cfg, "state", "backend");
  if (g_strcmp0 (backend, "redis") == 0)
    {
      g_autofree char *address = redis_address (cfg, error);
      VpsStateRedisConfig rc = { 0 };
      gpointer r;

      if (address == NULL)
        return NULL;
      rc.address = address;
      rc.password = vps_config_get_string (cfg, "state", "password");
      rc.timeout_ms = vps_config_get_duration_ms (cfg, "state", "timeout");
      rc.connect_timeout_ms = vps_config_get_duration_ms (cfg, "state", "connect_timeout");
      rc.connections = (guint)vps_config_get_int (cfg, "state", "connections");
      r = vps_state_redis_new (&rc, error);
      if (r == NULL)
        return NULL;
      return vps_state_new_with_backend (&vps_state_redis_class, r, rc.timeout_ms);
    }
  return vps_state_new_with_backend (
      &vps_state_memory_class,
      vps_state_memory_new ((guint64)vps_config_get_int (cfg, "state", "max_keys")), 0);
}

VpsState *
vps_state_ref (VpsState *state)
{
  g_return_val_if_fail (state != NULL, NULL);
  g_atomic_ref_count_inc (&state->ref);
  return state;
}

void
vps_state_unref (VpsState *state)
{
  if (state == NULL || !g_atomic_ref_count_dec (&state->ref))
    return;
  state->klass->free (state->backend);
  g_free (state);
}

const char *
vps_state_backend_name (VpsState *state)
{
  g_return_val_if_fail (state != NULL, NULL);
  return state->klass->name;
}

/* ---- synchronous path ---------------------------------------------------- */

gboolean
vps_state_exec_try (VpsState *state, const VpsStateOp *ops, guint n, VpsStateResult *results,
                    GError **error)
{
  g_autoptr (GError) local = NULL;

  g_return_val_if_fail (state != NULL && (ops != NULL || n == 0), FALSE);
  g_return_val_if_fail (results != NULL || n == 0, FALSE);
  if (vps_state_ops_validate (ops, n, &local) && state->klass->exec_try != NULL
      && state->klass->exec_try (state->backend, ops, n, results, &local))
    {
      counter_inc (&state->batches);
      return TRUE;
    }
  /* FALSE without error: the async call will count the batch. */
  if (local == NULL)
    return FALSE;
  counter_inc (&state->batches);
  counter_inc (&state->failures);
  g_propagate_error (error, g_steal_pointer (&local));
  return FALSE;
}

/* ---- async batches ------------------------------------------------------- */

static void
batch_free (gpointer p)
{
  VpsStateBatch *batch = p;

  g_clear_pointer (&batch->ctx, g_main_context_unref);
  g_clear_object (&batch->cancellable);
  g_free (batch->results);
  g_clear_error (&batch->error);
  g_clear_error (&batch->reply_error);
  g_clear_pointer (&batch->wire, g_byte_array_unref);
  g_free (batch->kinds);
  /* batch->state was released by deliver(). */
}

VpsStateBatch *
vps_state_batch_ref (VpsStateBatch *batch)
{
  return g_atomic_rc_box_acquire (batch);
}

void
vps_state_batch_unref (VpsStateBatch *batch)
{
  g_atomic_rc_box_release_full (batch, batch_free);
}

gboolean
vps_state_batch_is_done (VpsStateBatch *batch)
{
  return g_atomic_int_get (&batch->done) != 0;
}

/* On the caller's context, once. */
static gboolean
deliver (gpointer p)
{
  VpsStateBatch *batch = p;
  VpsState *state = g_steal_pointer (&batch->state);

  /* Not inside the cancel handler (we run from an idle source), so
   * disconnecting cannot deadlock; it waits for a handler running on
   * another thread, which lost the race anyway. */
  if (batch->cancel_id != 0)
    g_cancellable_disconnect (batch->cancellable, batch->cancel_id);
  batch->cancel_id = 0;
  if (batch->error != NULL)
    batch->callback (state, NULL, 0, batch->error, batch->user_data);
  else
    batch->callback (state, batch->results, batch->n, NULL, batch->user_data);
  vps_state_unref (state);
  return G_SOURCE_REMOVE;
}

static void
schedule (VpsStateBatch *batch)
{
  g_autoptr (GSource) idle = g_idle_source_new ();

  g_source_set_priority (idle, G_PRIORITY_DEFAULT);
  g_source_set_static_name (idle, "vps-state-callback");
  g_source_set_callback (idle, deliver, vps_state_batch_ref (batch),
                         (GDestroyNotify)vps_state_batch_unref);
  g_source_attach (idle, batch->ctx);
}

void
vps_state_batch_complete (VpsStateBatch *batch, GError *error)
{
  VpsState *state = batch->state;

  if (!g_atomic_int_compare_and_exchange (&batch->done, 0, 1))
    {
      g_clear_error (&error);
      return;
    }
  if (error != NULL)
    counter_inc (&state->failures);
  batch->error = error;
  schedule (batch);
}

static void
on_cancelled (GCancellable *cancellable, gpointer p)
{
  VpsStateBatch *batch = p;

  if (!g_atomic_int_compare_and_exchange (&batch->done, 0, 1))
    return;
  batch->error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "operation cancelled");
  schedule (batch);
}

void
vps_state_exec_async (VpsState *state, const VpsStateOp *ops, guint n, GCancellable *cancellable,
                      VpsStateCallback callback, gpointer user_data)
{
  VpsStateBatch *batch;
  GError *error = NULL;

  g_return_if_fail (state != NULL && callback != NULL);
  batch = g_atomic_rc_box_new0 (VpsStateBatch);
  batch->state = vps_state_ref (state);
  batch->backend = state->backend;
  batch->ctx = g_main_context_ref_thread_default ();
  batch->callback = callback;
  batch->user_data = user_data;
  batch->n = n;
  batch->deadline_us = g_get_monotonic_time () + state->timeout_ms * 1000;
  counter_inc (&state->batches);

  if (!vps_state_ops_validate (ops, n, &error))
    {
      vps_state_batch_complete (batch, error);
      vps_state_batch_unref (batch);
      return;
    }
  if (cancellable != NULL && g_cancellable_is_cancelled (cancellable))
    {
      batch->cancellable = g_object_ref (cancellable);
      on_cancelled (cancellable, batch);
      vps_state_batch_unref (batch);
      return;
    }
  batch->results = g_new0 (VpsStateResult, n);
  if (state->klass->prepare != NULL)
    state->klass->prepare (state->backend, batch, ops);
  if (cancellable != NULL)
    {
      batch->cancellable = g_object_ref (cancellable);
      /* The handler holds a batch ref, dropped at disconnect. */
      batch->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (on_cancelled),
                                                vps_state_batch_ref (batch),
                                                (GDestroyNotify)vps_state_batch_unref);
    }
  state->klass->submit (state->backend, batch, ops);
  vps_state_batch_unref (batch);
}

void
vps_state_get_stats (VpsState *state, VpsStateStats *out)
{
  g_return_if_fail (state != NULL && out != NULL);
  memset (out, 0, sizeof *out);
  if (state->klass->stats != NULL)
    state->klass->stats (state->backend, out);
  out->batches = __atomic_load_n (&state->batches, __ATOMIC_RELAXED);
  out->failures = __atomic_load_n (&state->failures, __ATOMIC_RELAXED);
}
