/* SPDX-License-Identifier: MIT
 *
 * connector.c — connector results, the class registry, and the wrapper
 * around every connector call: concurrency limit (FIFO queue of waiting
 * calls), timeout (the call's cancellable is cancelled and the caller gets
 * on_error at once), the one failure → on_error mapping, counters.
 *
 * Threading: a VpsConnector is shared by all workers.  Its queue and
 * counters are behind a mutex.  Each call completes on the main context it
 * was started from; a call that waited in the queue is started on its own
 * context with g_main_context_invoke, whichever thread freed the slot.
 */
#include "vps/connector.h"

#include "vps/listen.h"

#include "vps/log.h"
#include "vps/metrics.h"

G_DEFINE_QUARK (vps - connector - error - quark, vps_connector_error)

/* ---- results -------------------------------------------------------------- */

static void
field_free (gpointer data)
{
  VpsFieldValue *v = data;

  switch (v->type)
    {
      case VPS_FIELD_STRING:
        g_free (v->s);
        break;
      case VPS_FIELD_STRV:
        g_strfreev (v->strv);
        break;
      case VPS_FIELD_JSON:
        if (v->json != NULL)
          json_node_unref (v->json);
        break;
      case VPS_FIELD_BOOL:
      case VPS_FIELD_INT:
      case VPS_FIELD_FLOAT:
      default:
        break;
    }
  g_free (v);
}

static void
result_clear (VpsConnectorResult *r)
{
  g_free (r->connector);
  g_free (r->enhanced);
  g_free (r->text);
  g_free (r->quarantine);
  g_hash_table_unref (r->fields);
  g_ptr_array_unref (r->modifications);
  g_free (r->error_message);
}

VpsConnectorResult *
vps_connector_result_new (RulesVerdict verdict)
{
  VpsConnectorResult *r = g_atomic_rc_box_new0 (VpsConnectorResult);

  r->verdict = verdict;
  r->fields = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, field_free);
  r->modifications = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_modification_free);
  return r;
}

VpsConnectorResult *
vps_connector_result_ref (VpsConnectorResult *r)
{
  return g_atomic_rc_box_acquire (r);
}

void
vps_connector_result_unref (VpsConnectorResult *r)
{
  if (r != NULL)
    g_atomic_rc_box_release_full (r, (GDestroyNotify)result_clear);
}

void
vps_connector_result_set_reply (VpsConnectorResult *r, guint code, const char *enhanced,
                                const char *text)
{
  r->code = code;
  g_free (r->enhanced);
  r->enhanced = g_strdup (enhanced);
  g_free (r->text);
  r->text = g_strdup (text);
}

static VpsFieldValue *
field_slot (VpsConnectorResult *r, const char *name, VpsFieldType type)
{
  VpsFieldValue *v;

  if (!g_hash_table_contains (r->fields, name)
      && g_hash_table_size (r->fields) >= VPS_CONNECTOR_MAX_FIELDS)
    return NULL;
  v = g_new0 (VpsFieldValue, 1);
  v->type = type;
  g_hash_table_replace (r->fields, g_strdup (name), v);
  return v;
}

void
vps_connector_result_set_bool (VpsConnectorResult *r, const char *name, gboolean b)
{
  VpsFieldValue *v = field_slot (r, name, VPS_FIELD_BOOL);
  if (v != NULL)
    v->b = !!b;
}

void
vps_connector_result_set_int (VpsConnectorResult *r, const char *name, gint64 i)
{
  VpsFieldValue *v = field_slot (r, name, VPS_FIELD_INT);
  if (v != NULL)
    v->i = i;
}

void
vps_connector_result_set_float (VpsConnectorResult *r, const char *name, double f)
{
  VpsFieldValue *v = field_slot (r, name, VPS_FIELD_FLOAT);
  if (v != NULL)
    v->f = f;
}

void
vps_connector_result_set_string (VpsConnectorResult *r, const char *name, const char *s)
{
  VpsFieldValue *v = field_slot (r, name, VPS_FIELD_STRING);
  if (v != NULL)
    v->s = g_strdup (s ? s : "");
}

void
vps_connector_result_set_strv (VpsConnectorResult *r, const char *name, const char *const *strv)
{
  VpsFieldValue *v = field_slot (r, name, VPS_FIELD_STRV);
  if (v != NULL)
    v->strv = strv ? g_strdupv ((char **)strv) : g_new0 (char *, 1);
}

void
vps_connector_result_set_json (VpsConnectorResult *r, const char *name, JsonNode *node)
{
  VpsFieldValue *v = field_slot (r, name, VPS_FIELD_JSON);
  if (v != NULL)
    v->json = node;
  else if (node != NULL)
    json_node_unref (node);
}

const VpsFieldValue *
vps_connector_result_get_field (const VpsConnectorResult *r, const char *name)
{
  return g_hash_table_lookup (r->fields, name);
}

void
vps_connector_result_add_modification (VpsConnectorResult *r, VpsModification *mod)
{
  g_ptr_array_add (r->modifications, mod);
}

/* ---- registry ------------------------------------------------------------- */

static GMutex registry_lock;
static const VpsConnectorClass *registry[VPS_CONNECTOR_MAX_CLASSES];

void
vps_connector_registry_add (const VpsConnectorClass *klass)
{
  g_return_if_fail (klass != NULL && klass->type != NULL);
  g_mutex_lock (&registry_lock);
  for (guint i = 0; i < G_N_ELEMENTS (registry); i++)
    if (registry[i] == NULL || g_strcmp0 (registry[i]->type, klass->type) == 0)
      {
        registry[i] = klass;
        g_mutex_unlock (&registry_lock);
        return;
      }
  g_mutex_unlock (&registry_lock);
  g_critical ("connector registry full (%d classes)", VPS_CONNECTOR_MAX_CLASSES);
}

const VpsConnectorClass *
vps_connector_registry_lookup (const char *type)
{
  const VpsConnectorClass *found = NULL;

  g_mutex_lock (&registry_lock);
  for (guint i = 0; i < G_N_ELEMENTS (registry) && registry[i] != NULL; i++)
    if (g_strcmp0 (registry[i]->type, type) == 0)
      {
        found = registry[i];
        break;
      }
  g_mutex_unlock (&registry_lock);
  return found;
}

/* ---- instances ------------------------------------------------------------ */

typedef struct _Call Call;

struct _VpsConnector
{
  gatomicrefcount ref;
  const VpsConnectorClass *klass;
  gpointer data;
  char *name;
  gint64 timeout_ms;
  RulesVerdict on_error;
  guint concurrency;
  GMutex lock;    /* queue, active, stats */
  GQueue waiting; /* of Call* */
  VpsConnectorStats stats;
};

VpsConnector *
vps_connector_new (VpsConfig *cfg, const VpsConfigConnector *decl, GError **error)
{
  const VpsConnectorClass *klass = vps_connector_registry_lookup (decl->type);
  g_autoptr (GError) local = NULL;
  VpsConnector *c;
  gpointer data;

  if (klass == NULL)
    {
      vps_config_error_at (cfg, decl->group, "type", &local, "unknown connector type '%s'",
                           decl->type);
      g_set_error_literal (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_UNKNOWN_TYPE,
                           local->message);
      return NULL;
    }
  if (!vps_config_connector_check_keys (cfg, decl->group, klass->config_keys, error))
    return NULL;
  data = klass->create (decl->name, cfg, decl->group, error);
  if (data == NULL)
    return NULL;

  c = g_new0 (VpsConnector, 1);
  g_atomic_ref_count_init (&c->ref);
  c->klass = klass;
  c->data = data;
  c->name = g_strdup (decl->name);
  c->timeout_ms = decl->timeout_ms;
  c->on_error = decl->on_error;
  c->concurrency = (guint)MAX (decl->concurrency, 0);
  g_mutex_init (&c->lock);
  g_queue_init (&c->waiting);
  return c;
}

VpsConnector *
vps_connector_ref (VpsConnector *c)
{
  g_atomic_ref_count_inc (&c->ref);
  return c;
}

void
vps_connector_unref (VpsConnector *c)
{
  if (c == NULL || !g_atomic_ref_count_dec (&c->ref))
    return;
  /* every call holds a reference: nothing can be waiting here */
  if (c->klass->free != NULL)
    c->klass->free (c->data);
  g_mutex_clear (&c->lock);
  g_free (c->name);
  g_free (c);
}

const char *
vps_connector_get_name (const VpsConnector *c)
{
  return c->name;
}

const VpsConnectorClass *
vps_connector_get_class (const VpsConnector *c)
{
  return c->klass;
}

gpointer
vps_connector_get_data (const VpsConnector *c)
{
  return c->data;
}

gint64
vps_connector_get_timeout_ms (const VpsConnector *c)
{
  return c->timeout_ms;
}

RulesVerdict
vps_connector_get_on_error (const VpsConnector *c)
{
  return c->on_error;
}

guint
vps_connector_get_concurrency (const VpsConnector *c)
{
  return c->concurrency;
}

void
vps_connector_get_stats (const VpsConnector *c, VpsConnectorStats *out)
{
  g_mutex_lock ((GMutex *)&c->lock);
  *out = c->stats;
  g_mutex_unlock ((GMutex *)&c->lock);
}

void
vps_connector_get_decl (const VpsConnector *c, RulesConnectorDecl *out)
{
  out->name = c->name;
  out->fields = c->klass->fields;
  out->n_fields = c->klass->n_fields;
  out->any_field = c->klass->any_field;
}

VpsConnectorResult *
vps_connector_result_new_error (const VpsConnector *c, const char *session_id, const GError *error)
{
  VpsConnectorResult *r = vps_connector_result_new (c->on_error);

  r->connector = g_strdup (c->name);
  r->error = TRUE;
  r->error_message = g_strdup (error ? error->message : "unknown error");
  vps_warning (session_id, "connector=%s error=\"%s\" on_error=%s", c->name, r->error_message,
               rules_verdict_name (c->on_error));
  return r;
}

/* ---- one call ------------------------------------------------------------- */

struct _Call
{
  VpsConnector *conn;
  VpsTxn *txn;
  RulesStage stage;
  GTask *task;         /* the caller's; NULL once completed */
  GCancellable *inner; /* what the class sees */
  GCancellable *outer;
  gulong outer_handler;
  GSource *timeout;
  GMainContext *context;
  gint64 start_us;
  gboolean queued; /* under conn->lock */
  gboolean started;
};

static void
call_free (Call *call)
{
  if (call->outer_handler != 0)
    g_cancellable_disconnect (call->outer, call->outer_handler);
  g_clear_object (&call->outer);
  g_clear_object (&call->inner);
  g_main_context_unref (call->context);
  vps_txn_unref (call->txn);
  vps_connector_unref (call->conn);
  g_free (call);
}

static void
call_complete (Call *call, VpsConnectorResult *result)
{
  VpsConnector *c = call->conn;
  gint64 ms = (g_get_monotonic_time () - call->start_us) / 1000;

  if (call->timeout != NULL)
    {
      g_source_destroy (call->timeout);
      g_clear_pointer (&call->timeout, g_source_unref);
    }
  g_free (result->connector);
  result->connector = g_strdup (c->name);
  result->elapsed_ms = ms;

  g_mutex_lock (&c->lock);
  c->stats.calls++;
  c->stats.total_ms += (guint64)MAX (ms, 0);
  if (result->error)
    c->stats.errors++;
  g_mutex_unlock (&c->lock);
  vps_metrics_observe_connector (c->name, ms / 1000.0, result->error);

  g_task_return_pointer (call->task, result, (GDestroyNotify)vps_connector_result_unref);
  g_clear_object (&call->task);
}

static void call_start (Call *call);

static gboolean
call_start_cb (gpointer data)
{
  call_start (data);
  return G_SOURCE_REMOVE;
}

/* A slot is free: hand it to the first waiting call, or give it back. */
static void
slot_release (VpsConnector *c)
{
  Call *next;

  g_mutex_lock (&c->lock);
  next = g_queue_pop_head (&c->waiting);
  if (next != NULL)
    {
      next->queued = FALSE;
      c->stats.queued--;
    }
  else
    c->stats.active--;
  g_mutex_unlock (&c->lock);
  if (next != NULL)
    g_main_context_invoke (next->context, call_start_cb, next);
}

static void
class_done (GObject *source, GAsyncResult *res, gpointer data)
{
  Call *call = data;
  VpsConnector *c = call->conn;
  g_autoptr (GError) error = NULL;
  VpsConnectorResult *result = c->klass->call_finish (c, res, &error);

  slot_release (c);
  if (call->task != NULL)
    {
      if (result == NULL)
        {
          if (error == NULL)
            g_set_error_literal (&error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                                 "no result");
          result = vps_connector_result_new_error (
              c, vps_session_get_id (vps_txn_get_session (call->txn)), error);
        }
      call_complete (call, result);
    }
  else if (result != NULL)
    vps_connector_result_unref (result); /* too late: on_error was already given */
  call_free (call);
}

static void
call_start (Call *call)
{
  /* The call may have timed out between leaving the queue and now. */
  if (call->task == NULL)
    {
      slot_release (call->conn);
      call_free (call);
      return;
    }
  call->started = TRUE;
  call->conn->klass->call_async (call->conn, call->txn, call->stage, call->inner, class_done, call);
}

static gboolean
call_timeout_cb (gpointer data)
{
  Call *call = data;
  VpsConnector *c = call->conn;
  gboolean was_queued;
  g_autoptr (GError) error = NULL;

  g_clear_pointer (&call->timeout, g_source_unref);
  g_mutex_lock (&c->lock);
  was_queued = call->queued;
  if (was_queued)
    {
      g_queue_remove (&c->waiting, call);
      call->queued = FALSE;
      c->stats.queued--;
    }
  c->stats.timeouts++;
  g_mutex_unlock (&c->lock);

  g_set_error (&error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_TIMEOUT,
               "timeout after %" G_GINT64_FORMAT " ms%s", c->timeout_ms,
               was_queued ? " waiting for a free slot" : "");
  call_complete (call, vps_connector_result_new_error (
                           c, vps_session_get_id (vps_txn_get_session (call->txn)), error));
  g_cancellable_cancel (call->inner);
  /* A call still running is freed when the class answers (class_done);
   * one that never left the queue (or was handed a slot but not started
   * yet, call_start) is freed there or here. */
  if (was_queued)
    call_free (call);
  return G_SOURCE_REMOVE;
}

static void
outer_cancelled (GCancellable *outer, gpointer data)
{
  g_cancellable_cancel (G_CANCELLABLE (data));
}

void
vps_connector_call_async (VpsConnector *c, VpsTxn *txn, RulesStage stage, GCancellable *cancellable,
                          GAsyncReadyCallback callback, gpointer user_data)
{
  Call *call = g_new0 (Call, 1);
  gboolean start_now;

  call->conn = vps_connector_ref (c);
  call->txn = vps_txn_ref (txn);
  call->stage = stage;
  call->task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (call->task, vps_connector_call_async);
  /* finish never fails: a cancelled call still returns its on_error result */
  g_task_set_check_cancellable (call->task, FALSE);
  call->inner = g_cancellable_new ();
  call->context = g_main_context_ref_thread_default ();
  call->start_us = g_get_monotonic_time ();
  if (cancellable != NULL)
    {
      call->outer = g_object_ref (cancellable);
      call->outer_handler = g_cancellable_connect (cancellable, G_CALLBACK (outer_cancelled),
                                                   g_object_ref (call->inner), g_object_unref);
    }
  /* The timeout covers the wait for a slot too: the SMTP client waits
   * either way. */
  if (c->timeout_ms > 0)
    {
      call->timeout = g_timeout_source_new ((guint)MIN (c->timeout_ms, G_MAXUINT));
      g_source_set_callback (call->timeout, call_timeout_cb, call, NULL);
      g_source_attach (call->timeout, call->context);
    }

  g_mutex_lock (&c->lock);
  start_now = c->concurrency == 0 || c->stats.active < c->concurrency;
  if (start_now)
    c->stats.active++;
  else
    {
      call->queued = TRUE;
      c->stats.queued++;
      g_queue_push_tail (&c->waiting, call);
    }
  g_mutex_unlock (&c->lock);
  if (start_now)
    call_start (call);
}

VpsConnectorResult *
vps_connector_call_finish (VpsConnector *c, GAsyncResult *result)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), NULL);
}

/* ---- per-worker state ----------------------------------------------------- */

struct _VpsContextMap
{
  GMutex lock;
  GHashTable *values; /* GMainContext* → value (the map's reference) */
  VpsContextMapMake make;
  GBoxedCopyFunc ref;
  gpointer user_data;
};

VpsContextMap *
vps_context_map_new (VpsContextMapMake make, GBoxedCopyFunc ref, GDestroyNotify drop,
                     gpointer user_data)
{
  VpsContextMap *map = g_new0 (VpsContextMap, 1);

  g_mutex_init (&map->lock);
  map->values = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, drop);
  map->make = make;
  map->ref = ref;
  map->user_data = user_data;
  return map;
}

gpointer
vps_context_map_get (VpsContextMap *map)
{
  g_autoptr (GMainContext) context = g_main_context_ref_thread_default ();
  gpointer value;

  g_mutex_lock (&map->lock);
  value = g_hash_table_lookup (map->values, context);
  if (value == NULL)
    {
      value = map->make (map->user_data, context);
      g_hash_table_insert (map->values, context, value);
    }
  value = map->ref (value);
  g_mutex_unlock (&map->lock);
  return value;
}

void
vps_context_map_free (VpsContextMap *map)
{
  if (map == NULL)
    return;
  g_hash_table_unref (map->values);
  g_mutex_clear (&map->lock);
  g_free (map);
}

/* ---- configuration helpers ------------------------------------------------ */

gboolean
vps_connector_read_address (VpsConfig *cfg, const char *group, const char *missing, char **address,
                            char **host, guint16 *port, char **path, GError **error)
{
  const char *raw = vps_config_get_raw (cfg, group, "address");
  g_autoptr (GError) local = NULL;
  g_autofree char *unix_path = NULL;

  if (raw == NULL || *raw == '\0')
    {
      vps_config_error_at (cfg, group, "address", error, "%s", missing);
      return FALSE;
    }
  if (!vps_listen_parse_address (raw, host, port, &unix_path, &local))
    {
      vps_config_error_at (cfg, group, "address", error, "%s", local->message);
      return FALSE;
    }
  if (unix_path == NULL && *port == 0)
    {
      g_clear_pointer (host, g_free);
      vps_config_error_at (cfg, group, "address", error, "'%s': port 0 cannot be connected to",
                           raw);
      return FALSE;
    }
  if (unix_path != NULL)
    *path = vps_config_resolve_path (cfg, unix_path);
  *address = g_strdup (raw);
  return TRUE;
}
