/* SPDX-License-Identifier: MIT
 *
 * conn-policy.c — connector type `policy`: asks a Postfix policy delegation
 * service (SMTPD_POLICY_README) what Postfix would ask it, and turns the
 * action into a verdict.
 *
 * Keys of [connector NAME] with type = policy (besides the common type,
 * timeout, on_error, concurrency):
 *   address          inet:HOST:PORT, inet:[IPV6]:PORT or unix:PATH (required;
 *                    a relative path is relative to the config file)
 *   max_connections  persistent connections per worker thread (default 8);
 *                    calls beyond wait for one, FIFO
 *   retries          new attempts after a failed connect or a connection lost
 *                    mid-request (default 1); a pooled connection the peer
 *                    had closed is never counted as a failure
 *   idle_timeout     close a connection unused for this long (default 60s;
 *                    0 = keep it until the peer closes it)
 *   quarantine       quarantine name of a HOLD answer (default: NAME)
 *   policy_context   value of the policy_context attribute (default empty)
 *
 * Results: the verdict of the action (conn-policy-map.c), NAME.code and
 * NAME.text of its reply, NAME.action (the action word as sent).  A
 * malformed reply, a refused connection or a timeout is an error, which the
 * wrapper turns into the on_error verdict.
 *
 * Threading (vps/connector.h): one instance serves every worker.  Each
 * worker's main context gets its own pool of connections, found under a
 * mutex; everything after that runs on the calling context without locks.
 */
#include "connectors/policy/conn-policy.h"

#include <string.h>

#include "connectors/policy/conn-policy-private.h"
#include "vps/listen.h"
#include "vps/log.h"

typedef struct
{
  ConnPolicySettings *settings;
  char *quarantine;
  char *policy_context;
  VpsContextMap *pools; /* per worker context: ConnPolicyPool* */
} ConnPolicy;

/* ---- settings ------------------------------------------------------------- */

static void
settings_clear (gpointer data)
{
  ConnPolicySettings *s = data;

  g_free (s->name);
  g_free (s->address);
  g_free (s->host);
  g_free (s->path);
}

ConnPolicySettings *
conn_policy_settings_ref (ConnPolicySettings *settings)
{
  return g_atomic_rc_box_acquire (settings);
}

void
conn_policy_settings_unref (ConnPolicySettings *settings)
{
  if (settings != NULL)
    g_atomic_rc_box_release_full (settings, settings_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnPolicySettings, conn_policy_settings_unref)

/* ---- instances ------------------------------------------------------------ */

/* The pool of one worker context (VpsContextMap's make). */
static gpointer
make_pool (gpointer settings, GMainContext *context)
{
  return conn_policy_pool_new (settings, context);
}

static void
shutdown_pool (gpointer data)
{
  conn_policy_pool_shutdown (data);
}

static void
conn_policy_free (gpointer data)
{
  ConnPolicy *cp = data;

  /* each pool closes its idle connections on its own context */
  vps_context_map_free (cp->pools);
  conn_policy_settings_unref (cp->settings);
  g_free (cp->quarantine);
  g_free (cp->policy_context);
  g_free (cp);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnPolicy, conn_policy_free)

static const char *const conn_policy_keys[] = {
  "address", "max_connections", "retries", "idle_timeout", "quarantine", "policy_context", NULL,
};

static gboolean
read_address (VpsConfig *cfg, const char *group, ConnPolicySettings *s, GError **error)
{
  return vps_connector_read_address (cfg, group,
                                     "required: inet:HOST:PORT or unix:/path of the policy service",
                                     &s->address, &s->host, &s->port, &s->path, error);
}

static gpointer
conn_policy_create (const char *name, VpsConfig *cfg, const char *group, GError **error)
{
  g_autoptr (ConnPolicySettings) s = g_atomic_rc_box_new0 (ConnPolicySettings);
  g_autoptr (ConnPolicy) cp = NULL;
  gint64 v;
  const char *ctx;

  s->name = g_strdup (name);
  if (!vps_config_connector_check_keys (cfg, group, conn_policy_keys, error)
      || !read_address (cfg, group, s, error))
    return NULL;
  if (!vps_config_read_int (cfg, group, "max_connections", CONN_POLICY_DEFAULT_MAX_CONNECTIONS, 1,
                            CONN_POLICY_MAX_MAX_CONNECTIONS, &v, error))
    return NULL;
  s->max_connections = (guint)v;
  if (!vps_config_read_int (cfg, group, "retries", CONN_POLICY_DEFAULT_RETRIES, 0,
                            CONN_POLICY_MAX_RETRIES, &v, error))
    return NULL;
  s->retries = (guint)v;
  if (!vps_config_read_duration_ms (cfg, group, "idle_timeout", CONN_POLICY_DEFAULT_IDLE_TIMEOUT_MS,
                                    &s->idle_timeout_ms, error))
    return NULL;

  cp = g_new0 (ConnPolicy, 1);
  cp->settings = g_steal_pointer (&s);
  cp->pools = vps_context_map_new (make_pool, (GBoxedCopyFunc)conn_policy_pool_ref, shutdown_pool,
                                   cp->settings);
  cp->quarantine = g_strdup (vps_config_get_raw (cfg, group, "quarantine"));
  if (cp->quarantine == NULL)
    cp->quarantine = g_strdup (name);
  if ((ctx = vps_config_get_raw (cfg, group, "policy_context")) != NULL)
    {
      g_autoptr (GString) probe = g_string_new (NULL);
      g_autoptr (GError) local = NULL;

      if (strlen (ctx) > CONN_POLICY_MAX_POLICY_CONTEXT
          || !policy_encode_attr (probe, POLICY_ATTR_POLICY_CONTEXT, ctx, &local))
        {
          vps_config_error_at (cfg, group, "policy_context", error,
                               "not a policy attribute value (at most %d characters, one line)",
                               CONN_POLICY_MAX_POLICY_CONTEXT);
          return NULL;
        }
      cp->policy_context = g_strdup (ctx);
    }
  return g_steal_pointer (&cp);
}

/* The pool of the calling thread's main context, created on first use. */
static ConnPolicyPool *
pool_for_context (ConnPolicy *cp)
{
  return vps_context_map_get (cp->pools);
}

/* ---- calls ---------------------------------------------------------------- */

typedef struct
{
  VpsConnector *connector;
  VpsTxn *txn;
  RulesStage stage;
  ConnPolicyPool *pool;
} Call;

static void
call_free (gpointer data)
{
  Call *call = data;

  vps_connector_unref (call->connector);
  vps_txn_unref (call->txn);
  conn_policy_pool_unref (call->pool);
  g_free (call);
}

static void
exchange_done (GObject *source, GAsyncResult *res, gpointer data)
{
  g_autoptr (GTask) task = data;
  Call *call = g_task_get_task_data (task);
  ConnPolicy *cp = vps_connector_get_data (call->connector);
  GError *error = NULL;
  g_autoptr (PolicyAction) action = conn_policy_pool_exchange_finish (call->pool, res, &error);
  VpsConnectorResult *r;

  if (action == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  r = conn_policy_result_from_action (action, call->txn, call->stage, cp->settings->name,
                                      cp->quarantine, &error);
  if (r == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, r, (GDestroyNotify)vps_connector_result_unref);
}

static void
conn_policy_call_async (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                        GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  ConnPolicy *cp = vps_connector_get_data (connector);
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  g_autoptr (GBytes) request = NULL;
  GError *error = NULL;
  Call *call;

  g_task_set_source_tag (task, conn_policy_call_async);
  request = conn_policy_build_request (txn, stage, cp->policy_context, &error);
  if (request == NULL)
    {
      g_prefix_error (&error, "policy %s: request not sendable: ", cp->settings->name);
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  call = g_new0 (Call, 1);
  call->connector = vps_connector_ref (connector);
  call->txn = vps_txn_ref (txn);
  call->stage = stage;
  call->pool = pool_for_context (cp);
  g_task_set_task_data (task, call, call_free);
  conn_policy_pool_exchange_async (call->pool, request,
                                   vps_session_get_id (vps_txn_get_session (txn)), cancellable,
                                   exchange_done, task);
}

static VpsConnectorResult *
conn_policy_call_finish (VpsConnector *connector, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const RulesFieldDecl conn_policy_fields[] = {
  { "action", RULES_TYPE_STRING, FALSE },
};

const VpsConnectorClass conn_policy_class = {
  .type = "policy",
  .fields = conn_policy_fields,
  .n_fields = G_N_ELEMENTS (conn_policy_fields),
  .any_field = FALSE,
  .config_keys = conn_policy_keys,
  .create = conn_policy_create,
  .call_async = conn_policy_call_async,
  .call_finish = conn_policy_call_finish,
  .free = conn_policy_free,
};
