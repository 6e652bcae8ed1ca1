/* SPDX-License-Identifier: MIT
 *
 * conn-milter.c — connector type `milter`: vpsd plays the MTA to a milter
 * (MILTER.md), sending the session's events as Postfix would and turning
 * the answers into a verdict, a reply and modifications.
 *
 * Keys of [connector NAME] with type = milter (besides the common type,
 * timeout, on_error, concurrency):
 *   address          inet:HOST:PORT, inet:[IPV6]:PORT or unix:PATH (required;
 *                    a relative path is relative to the config file)
 *   connect_timeout  connecting (default 30s, Postfix's milter_connect_timeout)
 *   command_timeout  waiting for the answer to one command (default 30s)
 *   eom_timeout      waiting for the end-of-message answer (default 300s;
 *                    each progress packet restarts it)
 *   idle_timeout     close a session's connection unused this long
 *                    (default 600s; sessions normally end first: QUIT)
 *   backoff          after a failed connect or negotiation, no new
 *                    connection for this long (default 1s, doubling per
 *                    failure up to 60s): calls meanwhile fail at once
 *   quarantine       quarantine name of a QUARANTINE answer (default: NAME)
 *
 * The common `timeout` bounds a whole call (all of a message's packets):
 * give it more than eom_timeout when the milter is slow.
 *
 * Negotiation: version 6 offering every action and protocol bit (what
 * Postfix offers); the answer is checked by proto/milter as Postfix checks
 * it, and the milter's NO_*, NR_*, SKIP, HDR_LEADSPC and symbol lists shape
 * what we send (conn-milter-feed.c).
 *
 * Results: the verdict, the reply (NAME.code, NAME.text), NAME.action (the
 * milter's answer: continue, accept, reject, tempfail, replycode, discard,
 * quarantine, shutdown), NAME.reason (a quarantine's reason) and the
 * modifications of end of message.  A refused connection, a timeout, a
 * malformed or misplaced answer is an error: the wrapper's on_error.
 *
 * Threading (vps/connector.h): one instance serves every worker.  Each
 * worker's main context gets its own pool (found under a mutex); a pool
 * holds one connection per SMTP session, used only on that context.
 */
#include "connectors/milter/conn-milter.h"

#include "connectors/milter/conn-milter-private.h"
#include "vps/listen.h"
#include "vps/log.h"

typedef struct
{
  ConnMilterSettings *settings;
  VpsContextMap *pools; /* per worker context: ConnMilterPool* */
} ConnMilter;

/* ---- settings ------------------------------------------------------------- */

static void
settings_clear (gpointer data)
{
  ConnMilterSettings *s = data;

  g_free (s->name);
  g_free (s->address);
  g_free (s->host);
  g_free (s->path);
  g_free (s->quarantine);
}

ConnMilterSettings *
conn_milter_settings_ref (ConnMilterSettings *settings)
{
  return g_atomic_rc_box_acquire (settings);
}

void
conn_milter_settings_unref (ConnMilterSettings *settings)
{
  if (settings != NULL)
    g_atomic_rc_box_release_full (settings, settings_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnMilterSettings, conn_milter_settings_unref)

/* ---- instances ------------------------------------------------------------ */

/* The pool of one worker context (VpsContextMap's make). */
static gpointer
make_pool (gpointer settings, GMainContext *context)
{
  return conn_milter_pool_new (settings, context);
}

static void
shutdown_pool (gpointer data)
{
  conn_milter_pool_shutdown (data);
}

static void
conn_milter_free (gpointer data)
{
  ConnMilter *cm = data;

  /* each pool says QUIT to its idle connections on its own context */
  vps_context_map_free (cm->pools);
  conn_milter_settings_unref (cm->settings);
  g_free (cm);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnMilter, conn_milter_free)

static const char *const conn_milter_keys[] = {
  "address",      "connect_timeout", "command_timeout", "eom_timeout",
  "idle_timeout", "backoff",         "quarantine",      NULL,
};

static gboolean
read_address (VpsConfig *cfg, const char *group, ConnMilterSettings *s, GError **error)
{
  return vps_connector_read_address (cfg, group,
                                     "required: inet:HOST:PORT or unix:/path of the milter",
                                     &s->address, &s->host, &s->port, &s->path, error);
}

static gboolean
read_durations (VpsConfig *cfg, const char *group, ConnMilterSettings *s, GError **error)
{
  static const struct
  {
    const char *key;
    gint64 def;
    gsize offset;
    gboolean zero_ok;
  } keys[] = {
    { "connect_timeout", CONN_MILTER_DEFAULT_CONNECT_TIMEOUT_MS,
      G_STRUCT_OFFSET (ConnMilterSettings, connect_timeout_ms), FALSE },
    { "command_timeout", CONN_MILTER_DEFAULT_COMMAND_TIMEOUT_MS,
      G_STRUCT_OFFSET (ConnMilterSettings, command_timeout_ms), FALSE },
    { "eom_timeout", CONN_MILTER_DEFAULT_EOM_TIMEOUT_MS,
      G_STRUCT_OFFSET (ConnMilterSettings, eom_timeout_ms), FALSE },
    { "idle_timeout", CONN_MILTER_DEFAULT_IDLE_TIMEOUT_MS,
      G_STRUCT_OFFSET (ConnMilterSettings, idle_timeout_ms), TRUE },
    { "backoff", CONN_MILTER_DEFAULT_BACKOFF_MS, G_STRUCT_OFFSET (ConnMilterSettings, backoff_ms),
      TRUE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      gint64 *out = G_STRUCT_MEMBER_P (s, keys[i].offset);

      if (!vps_config_read_duration_ms (cfg, group, keys[i].key, keys[i].def, out, error))
        return FALSE;
      if (*out <= 0 && !keys[i].zero_ok)
        {
          vps_config_error_at (cfg, group, keys[i].key, error, "must be more than 0");
          return FALSE;
        }
    }
  return TRUE;
}

static gpointer
conn_milter_create (const char *name, VpsConfig *cfg, const char *group, GError **error)
{
  g_autoptr (ConnMilterSettings) s = g_atomic_rc_box_new0 (ConnMilterSettings);
  ConnMilter *cm;
  const char *q;

  s->name = g_strdup (name);
  if (!vps_config_connector_check_keys (cfg, group, conn_milter_keys, error)
      || !read_address (cfg, group, s, error) || !read_durations (cfg, group, s, error))
    return NULL;
  q = vps_config_get_raw (cfg, group, "quarantine");
  s->quarantine = g_strdup (q != NULL && *q ? q : name);
  /* everything version 6 defines, as Postfix offers it: the milter takes
   * what it wants, and every action maps to a modification we carry */
  s->offer.version = MILTER_VERSION;
  s->offer.actions = MILTER_ACTIONS_ALL;
  s->offer.protocol = MILTER_PROTOCOL_ALL;

  cm = g_new0 (ConnMilter, 1);
  cm->settings = g_steal_pointer (&s);
  cm->pools = vps_context_map_new (make_pool, (GBoxedCopyFunc)conn_milter_pool_ref, shutdown_pool,
                                   cm->settings);
  return cm;
}

/* The pool of the calling thread's main context, created on first use. */
static ConnMilterPool *
pool_for_context (ConnMilter *cm)
{
  return vps_context_map_get (cm->pools);
}

/* ---- calls ---------------------------------------------------------------- */

typedef struct
{
  VpsTxn *txn;
  RulesStage stage;
  ConnMilterPool *pool;
  ConnMilterConn *conn; /* busy while we run */
  GPtrArray *steps;     /* ConnMilterStep* */
  guint next;
  gboolean skipping;   /* SKIP: the rest of the body is not sent */
  GByteArray *pending; /* packets that need no answer, sent with the next */
  VpsConnectorResult *result;
} Call;

static void
call_free (gpointer data)
{
  Call *call = data;

  if (call->conn != NULL)
    conn_milter_pool_release (call->pool, call->conn);
  vps_txn_unref (call->txn);
  conn_milter_pool_unref (call->pool);
  g_clear_pointer (&call->steps, g_ptr_array_unref);
  g_byte_array_unref (call->pending);
  g_clear_pointer (&call->result, vps_connector_result_unref);
  g_free (call);
}

/* Give the connection back before the caller hears of us: its next stage
 * may call again from the callback, before the task is finalized. */
static void
call_release (Call *call)
{
  if (call->conn != NULL)
    conn_milter_pool_release (call->pool, g_steal_pointer (&call->conn));
}

static void
call_fail (GTask *task, GError *error)
{
  Call *call = g_task_get_task_data (task);
  const ConnMilterSettings *s = conn_milter_pool_settings (call->pool);

  if (call->conn != NULL)
    call->conn->broken = TRUE; /* out of step: nobody knows what it saw */
  call_release (call);
  if (!g_str_has_prefix (error->message, "milter "))
    g_prefix_error (&error, "milter %s (%s): ", s->name, s->address);
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
call_succeed (GTask *task)
{
  Call *call = g_task_get_task_data (task);

  call_release (call);
  g_task_return_pointer (task, g_steal_pointer (&call->result),
                         (GDestroyNotify)vps_connector_result_unref);
  g_object_unref (task);
}

static void call_run (GTask *task);

static void
flushed_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;
  Call *call = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (GPtrArray) replies = conn_milter_conn_exchange_finish (call->conn, res, &error);

  if (replies == NULL)
    {
      call_fail (task, error);
      return;
    }
  call_succeed (task);
}

static void
answered_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;
  Call *call = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (GPtrArray) replies = conn_milter_conn_exchange_finish (call->conn, res, &error);
  const ConnMilterStep *step = g_ptr_array_index (call->steps, call->next);
  gboolean ends = FALSE, skip = FALSE;

  if (replies == NULL)
    {
      g_prefix_error (&error, "%s: ", milter_command_name ((char)step->command) ?: "?");
      call_fail (task, error);
      return;
    }
  conn_milter_step_sent (call->conn, step, call->txn);
  if (!conn_milter_apply_replies (call->conn, step, replies, call->result, &ends, &skip, &error))
    {
      call_fail (task, error);
      return;
    }
  call->next++;
  if (skip)
    call->skipping = TRUE;
  if (ends)
    {
      call_succeed (task);
      return;
    }
  call_run (task);
}

/* Send the steps in order: those that need no answer are gathered with the
 * next one that does, so one write carries them (fewer small packets). */
static void
call_run (GTask *task)
{
  Call *call = g_task_get_task_data (task);
  const ConnMilterSettings *s = conn_milter_pool_settings (call->pool);
  GCancellable *cancellable = g_task_get_cancellable (task);

  while (call->next < call->steps->len)
    {
      const ConnMilterStep *step = g_ptr_array_index (call->steps, call->next);
      g_autoptr (GByteArray) out = NULL;

      if (call->skipping && step->body)
        {
          call->next++;
          continue;
        }
      g_byte_array_append (call->pending, step->bytes->data, step->bytes->len);
      if (!milter_protocol_expects_reply (&call->conn->options, step->command))
        {
          conn_milter_step_sent (call->conn, step, call->txn);
          call->next++;
          continue;
        }
      out = call->pending;
      call->pending = g_byte_array_new ();
      conn_milter_conn_exchange_async (call->conn, out, TRUE, step->command == MILTER_CMD_EOB,
                                       step->command == MILTER_CMD_EOB ? s->eom_timeout_ms
                                                                       : s->command_timeout_ms,
                                       cancellable, answered_cb, task);
      return;
    }
  if (call->pending->len > 0)
    {
      g_autoptr (GByteArray) out = call->pending;

      call->pending = g_byte_array_new ();
      conn_milter_conn_exchange_async (call->conn, out, FALSE, FALSE, s->command_timeout_ms,
                                       cancellable, flushed_cb, task);
      return;
    }
  call_succeed (task);
}

static void
acquired_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;
  Call *call = g_task_get_task_data (task);
  GError *error = NULL;

  call->conn = conn_milter_pool_acquire_finish (call->pool, res, &error);
  if (call->conn == NULL)
    {
      call_fail (task, error);
      return;
    }
  call->steps = conn_milter_plan (call->conn, call->txn, call->stage, &error);
  if (call->steps == NULL)
    {
      /* nothing was sent: the connection stays in step */
      call_release (call);
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  call_run (task);
}

static void
conn_milter_call_async (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                        GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  ConnMilter *cm = vps_connector_get_data (connector);
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Call *call = g_new0 (Call, 1);

  g_task_set_source_tag (task, conn_milter_call_async);
  call->txn = vps_txn_ref (txn);
  call->stage = stage;
  call->pool = pool_for_context (cm);
  call->pending = g_byte_array_new ();
  call->result = vps_connector_result_new (RULES_VERDICT_CONTINUE);
  g_task_set_task_data (task, call, call_free);
  conn_milter_pool_acquire_async (call->pool, vps_txn_get_session (txn), cancellable, acquired_cb,
                                  task);
}

static VpsConnectorResult *
conn_milter_call_finish (VpsConnector *connector, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const RulesFieldDecl conn_milter_fields[] = {
  { "action", RULES_TYPE_STRING, FALSE },
  { "reason", RULES_TYPE_STRING, FALSE },
};

const VpsConnectorClass conn_milter_class = {
  .type = "milter",
  .fields = conn_milter_fields,
  .n_fields = G_N_ELEMENTS (conn_milter_fields),
  .any_field = FALSE,
  .config_keys = conn_milter_keys,
  .create = conn_milter_create,
  .call_async = conn_milter_call_async,
  .call_finish = conn_milter_call_finish,
  .free = conn_milter_free,
};
