/* SPDX-License-Identifier: MIT
 *
 * conn-grpc.c — connector type `grpc`: calls vps.v1.Policy/Check
 * (proto/vps/v1/policy.proto) on another vpsd or on any service that
 * implements it, and turns the answer into the connector's result.
 *
 * Keys of [connector NAME] with type = grpc (besides the common type,
 * timeout, on_error, concurrency):
 *   address          HOST:PORT of the service (required)
 *   tls              true: TLS (default false)
 *   tls_ca           PEM bundle the server's certificate must chain to
 *                    (default: the system's roots)
 *   tls_cert, tls_key  a client certificate (mutual TLS), together
 *   tls_server_name  the name the server's certificate must carry when it
 *                    is not the address's host
 *   session_timeout  forget the remote session of a local session idle this
 *                    long and send EndSession for it (default 240s: below
 *                    vpsd's [grpc] session_timeout of 300s)
 *
 * One channel (one HTTP/2 connection) per connector instance, shared by all
 * workers; calls complete on the caller's main context (vps/grpc-core.h).
 * Each call's deadline is the connector timeout; the wrapper's
 * cancellation at the same timeout cancels the call on the wire.
 *
 * Sessions: every local session gets a remote session id of its own
 * ("vps-NONCE-SESSIONID", the nonce random per instance, so two vpsd or a
 * restart never share ids), and the calls of one session keep one remote
 * session and transaction; stages the remote side has not seen are sent
 * first (conn-grpc-map.c).  The remote session is ended (EndSession, fire
 * and forget) when the local session is freed (vps_session_add_end_notify),
 * and also once the local one has been idle for session_timeout (a session
 * kept open by its MTA; the next call then starts a new remote one).  A
 * remote side that lost the session (FAILED_PRECONDITION: it expired, or
 * restarted) gets a new session, caught up, once.
 *
 * Results: the verdict, code and text of the remote stage result; fields
 * enhanced, rule, quarantine, matched (the rules whose `when` held),
 * transaction_id; and per remote connector result C its fields as
 * NAME.C_field and its verdict as NAME.C_verdict (a result without a
 * connector name gives bare NAME.field: what a third-party service uses to
 * answer fields of its own).  The modifications the remote transaction
 * gained since the previous call become ours.
 */
#include "connectors/grpc/conn-grpc.h"

#include <string.h>

#include "connectors/grpc/conn-grpc-private.h"
#include "vps/grpc-core.h"
#include "vps/log.h"

#define CONN_GRPC_MAX_ADDRESS 512
#define CONN_GRPC_MIN_EXPIRY_INTERVAL_US (1 * G_USEC_PER_SEC)
#define CONN_GRPC_MAX_EXPIRY_INTERVAL_US (60 * G_USEC_PER_SEC)

typedef struct
{
  char *name;
  char *address;
  VpsGrpcChannel *channel;
  guint64 nonce;
  gint64 session_timeout_us;

  GMutex lock;          /* guards what follows */
  GHashTable *sessions; /* local session id → ConnGrpcSess* (owned) */
  gint64 next_expiry;
  guint64 generation; /* tells the remote sessions of one local session apart */
} ConnGrpc;

static void
conn_grpc_free (gpointer data)
{
  ConnGrpc *cg = data;

  /* remote sessions still open expire on the remote side */
  g_hash_table_unref (cg->sessions);
  g_mutex_clear (&cg->lock);
  vps_grpc_channel_unref (cg->channel);
  g_free (cg->name);
  g_free (cg->address);
  g_free (cg);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnGrpc, conn_grpc_free)

static const char *const conn_grpc_keys[] = {
  "address", "tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "session_timeout", NULL,
};

/* ---- configuration -------------------------------------------------------- */

static gboolean
valid_address (const char *address)
{
  const char *colon = strrchr (address, ':');
  guint64 port = 0;

  if (colon == NULL || colon == address || strlen (address) > CONN_GRPC_MAX_ADDRESS)
    return FALSE;
  if (!g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &port, NULL))
    return FALSE;
  for (const char *p = address; p < colon; p++)
    if (!g_ascii_isgraph (*p))
      return FALSE;
  return TRUE;
}

/* A path key, resolved against the config file's directory; NULL when unset. */
static char *
path_key (VpsConfig *cfg, const char *group, const char *key)
{
  const char *raw = vps_config_get_raw (cfg, group, key);

  return raw && *raw ? vps_config_resolve_path (cfg, raw) : NULL;
}

static gpointer
conn_grpc_create (const char *name, VpsConfig *cfg, const char *group, GError **error)
{
  g_autoptr (ConnGrpc) cg = NULL;
  const char *address = vps_config_get_raw (cfg, group, "address");
  g_autofree char *ca = NULL, *cert = NULL, *key = NULL;
  const char *server_name;
  gboolean tls = FALSE;
  gint64 timeout_ms;
  VpsGrpcClientTls tls_files = { 0 };
  g_autoptr (GError) local = NULL;

  if (!vps_config_connector_check_keys (cfg, group, conn_grpc_keys, error))
    return NULL;
  if (address == NULL || !valid_address (address))
    {
      vps_config_error_at (cfg, group, "address", error,
                           "required: HOST:PORT of the vps.v1.Policy service");
      return NULL;
    }
  if (!vps_config_read_bool (cfg, group, "tls", FALSE, &tls, error)
      || !vps_config_read_duration_ms (cfg, group, "session_timeout",
                                       CONN_GRPC_DEFAULT_SESSION_TIMEOUT_MS - 60 * 1000,
                                       &timeout_ms, error))
    return NULL;
  if (timeout_ms <= 0)
    {
      vps_config_error_at (cfg, group, "session_timeout", error, "must be more than 0");
      return NULL;
    }
  ca = path_key (cfg, group, "tls_ca");
  cert = path_key (cfg, group, "tls_cert");
  key = path_key (cfg, group, "tls_key");
  server_name = vps_config_get_raw (cfg, group, "tls_server_name");
  if (!tls && (ca || cert || key || server_name))
    {
      vps_config_error_at (cfg, group,
                           ca     ? "tls_ca"
                           : cert ? "tls_cert"
                           : key  ? "tls_key"
                                  : "tls_server_name",
                           error, "needs tls = true");
      return NULL;
    }
  if ((cert == NULL) != (key == NULL))
    {
      vps_config_error_at (cfg, group, cert ? "tls_key" : "tls_cert", error,
                           "tls_cert and tls_key go together");
      return NULL;
    }
  tls_files.ca = ca;
  tls_files.cert = cert;
  tls_files.key = key;
  tls_files.server_name = server_name && *server_name ? server_name : NULL;

  cg = g_new0 (ConnGrpc, 1);
  g_mutex_init (&cg->lock);
  cg->sessions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify)conn_grpc_sess_free);
  cg->name = g_strdup (name);
  cg->address = g_strdup (address);
  cg->nonce = ((guint64)g_random_int () << 32) | g_random_int ();
  cg->session_timeout_us = timeout_ms * 1000;
  cg->channel
      = vps_grpc_channel_new (address, tls ? &tls_files : NULL, CONN_GRPC_MAX_REPLY, &local);
  if (cg->channel == NULL)
    {
      vps_config_error_at (cfg, group, "tls", error, "%s", local->message);
      return NULL;
    }
  return g_steal_pointer (&cg);
}

/* ---- remote sessions ------------------------------------------------------ */

static char *
new_remote_id (ConnGrpc *cg, const char *sid)
{
  /* under the lock */
  return g_strdup_printf ("vps-%016" G_GINT64_MODIFIER "x-%s-%" G_GUINT64_FORMAT, cg->nonce, sid,
                          ++cg->generation);
}

/* Tell the remote side a session is over: best effort, nobody waits (it
 * may be sent from whichever thread ends the session, loop or not). */
static void
send_end (ConnGrpc *cg, const char *remote_id)
{
  Vps__V1__EndSessionRequest req;
  gsize len;
  guint8 *buf;
  g_autoptr (GBytes) bytes = NULL;

  vps__v1__end_session_request__init (&req);
  req.session_id = (char *)remote_id;
  len = vps__v1__end_session_request__get_packed_size (&req);
  buf = g_malloc (MAX (len, 1));
  vps__v1__end_session_request__pack (&req, buf);
  bytes = g_bytes_new_take (buf, len);
  vps_grpc_channel_call_async (cg->channel, CONN_GRPC_END_METHOD, bytes, CONN_GRPC_END_TIMEOUT_US,
                               NULL, NULL, NULL);
}

typedef struct
{
  VpsConnector *connector;
  char *sid;
} EndNotify;

/* The local session is freed (vps_session_add_end_notify): end the remote
 * one.  A call still running holds the session, so none is. */
static void
session_ended (gpointer data)
{
  EndNotify *en = data;
  ConnGrpc *cg = vps_connector_get_data (en->connector);
  g_autofree char *remote = NULL;
  ConnGrpcSess *s;

  g_mutex_lock (&cg->lock);
  s = g_hash_table_lookup (cg->sessions, en->sid);
  if (s != NULL && !s->busy)
    {
      if (s->connected)
        remote = g_steal_pointer (&s->remote_id);
      g_hash_table_remove (cg->sessions, en->sid);
    }
  g_mutex_unlock (&cg->lock);
  if (remote != NULL)
    send_end (cg, remote);
  vps_connector_unref (en->connector);
  g_free (en->sid);
  g_free (en);
}

/* End the remote sessions of local sessions idle for session_timeout. */
static void
expire_sessions (ConnGrpc *cg)
{
  gint64 now = g_get_monotonic_time ();
  g_autoptr (GPtrArray) ended = NULL;
  GHashTableIter it;
  gpointer k, v;

  g_mutex_lock (&cg->lock);
  if (now < cg->next_expiry)
    {
      g_mutex_unlock (&cg->lock);
      return;
    }
  cg->next_expiry = now
                    + CLAMP (cg->session_timeout_us / 4, CONN_GRPC_MIN_EXPIRY_INTERVAL_US,
                             CONN_GRPC_MAX_EXPIRY_INTERVAL_US);
  ended = g_ptr_array_new_with_free_func (g_free);
  g_hash_table_iter_init (&it, cg->sessions);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      ConnGrpcSess *s = v;

      if (!s->busy && now - s->last_used > cg->session_timeout_us)
        {
          if (s->connected)
            g_ptr_array_add (ended, g_steal_pointer (&s->remote_id));
          g_hash_table_iter_remove (&it);
        }
    }
  g_mutex_unlock (&cg->lock);
  for (guint i = 0; i < ended->len; i++)
    send_end (cg, g_ptr_array_index (ended, i));
}

/* Forget what the remote side saw: the next call starts a new remote
 * session (the old one, if any, is ended).  Under the lock; returns the
 * old id to end, or NULL. */
static char *
sess_restart (ConnGrpc *cg, ConnGrpcSess *s, const char *sid)
{
  char *old = s->connected ? g_steal_pointer (&s->remote_id) : NULL;

  g_free (s->remote_id);
  g_free (s->sender);
  g_free (s->remote_txn);
  memset (s, 0, sizeof *s);
  s->remote_id = new_remote_id (cg, sid);
  s->last_used = g_get_monotonic_time ();
  return old;
}

/* ---- calls ---------------------------------------------------------------- */

typedef struct
{
  VpsConnector *connector;
  VpsTxn *txn;
  RulesStage stage;
  char *sid;           /* the local session id */
  char *remote_id;     /* the remote one these requests carry */
  GPtrArray *requests; /* GBytes*, one per step; the last is the stage's */
  guint next;
  gint64 deadline;  /* monotonic µs, G_MAXINT64 = none */
  gboolean retried; /* a new remote session was tried already */
} Call;

static void
call_free (gpointer data)
{
  Call *call = data;

  vps_connector_unref (call->connector);
  vps_txn_unref (call->txn);
  g_ptr_array_unref (call->requests);
  g_free (call->sid);
  g_free (call->remote_id);
  g_free (call);
}

/* Plan the steps and pack their requests; marks the session busy.  FALSE
 * + error when a request cannot be built, or a call for the session runs. */
static gboolean
call_prepare (ConnGrpc *cg, Call *call, gboolean restart, GError **error)
{
  g_autofree ConnGrpcStep *steps = g_new0 (ConnGrpcStep, conn_grpc_plan_max (call->txn));
  g_autofree char *old = NULL;
  ConnGrpcSess *s;
  gsize n;

  g_mutex_lock (&cg->lock);
  s = g_hash_table_lookup (cg->sessions, call->sid);
  if (s == NULL)
    {
      EndNotify *en = g_new0 (EndNotify, 1);

      s = g_new0 (ConnGrpcSess, 1);
      s->remote_id = new_remote_id (cg, call->sid);
      g_hash_table_insert (cg->sessions, g_strdup (call->sid), s);
      en->connector = vps_connector_ref (call->connector);
      en->sid = g_strdup (call->sid);
      if (!vps_session_add_end_notify (vps_txn_get_session (call->txn), session_ended, en))
        {
          /* too many already: the idle expiry ends it */
          vps_connector_unref (en->connector);
          g_free (en->sid);
          g_free (en);
        }
    }
  else if (s->busy && !restart)
    {
      g_mutex_unlock (&cg->lock);
      g_set_error (error, CONN_GRPC_ERROR, CONN_GRPC_ERROR_NOT_SENDABLE,
                   "another call of this session is running");
      return FALSE;
    }
  if (restart)
    old = sess_restart (cg, s, call->sid);
  s->busy = TRUE;
  s->last_used = g_get_monotonic_time ();
  n = conn_grpc_plan (s, call->txn, call->stage, steps);
  g_free (call->remote_id);
  call->remote_id = g_strdup (s->remote_id);
  g_mutex_unlock (&cg->lock);
  if (old != NULL)
    send_end (cg, old);

  g_ptr_array_set_size (call->requests, 0);
  call->next = 0;
  for (gsize i = 0; i < n; i++)
    {
      GBytes *req = conn_grpc_build_request (call->remote_id, call->txn, &steps[i], error);

      if (req == NULL)
        return FALSE;
      g_ptr_array_add (call->requests, req);
    }
  return TRUE;
}

/* The call is over: the session takes the next one.  On failure what the
 * remote side saw is unknown: it gets a new session next time. */
static void
call_release (ConnGrpc *cg, Call *call, gboolean failed)
{
  g_autofree char *old = NULL;
  ConnGrpcSess *s;

  g_mutex_lock (&cg->lock);
  s = g_hash_table_lookup (cg->sessions, call->sid);
  if (s != NULL && g_strcmp0 (s->remote_id, call->remote_id) == 0)
    {
      if (failed)
        old = sess_restart (cg, s, call->sid);
      s->busy = FALSE;
      s->last_used = g_get_monotonic_time ();
    }
  g_mutex_unlock (&cg->lock);
  if (old != NULL)
    send_end (cg, old);
}

static void call_step (GTask *task);

static void
call_fail (GTask *task, GError *error)
{
  Call *call = g_task_get_task_data (task);
  ConnGrpc *cg = vps_connector_get_data (call->connector);

  call_release (cg, call, TRUE);
  g_prefix_error (&error, "grpc %s (%s): ", cg->name, cg->address);
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
step_done (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;
  Call *call = g_task_get_task_data (task);
  ConnGrpc *cg = vps_connector_get_data (call->connector);
  GError *error = NULL;
  g_autoptr (GBytes) reply = vps_grpc_channel_call_finish (cg->channel, res, &error);
  VpsConnectorResult *r;
  ConnGrpcSess *s;

  if (reply == NULL && g_task_return_error_if_cancelled (task))
    {
      g_clear_error (&error);
      call_release (cg, call, TRUE);
      g_object_unref (task);
      return;
    }
  if (reply == NULL)
    {
      /* the remote side does not know the session (it expired there, or
       * the service restarted): once more with a new one, caught up */
      if (!call->retried
          && g_error_matches (error, VPS_GRPC_STATUS_ERROR, VPS_GRPC_STATUS_FAILED_PRECONDITION))
        {
          vps_info (vps_session_get_id (vps_txn_get_session (call->txn)),
                    "connector=%s remote session lost (%s): starting a new one", cg->name,
                    error->message);
          g_clear_error (&error);
          call->retried = TRUE;
          if (call_prepare (cg, call, TRUE, &error))
            call_step (task);
          else
            call_fail (task, error);
          return;
        }
      call_fail (task, error);
      return;
    }
  if (call->next < call->requests->len)
    {
      /* a catch-up stage: its verdict is not ours (our engine decided it) */
      call_step (task);
      return;
    }
  g_mutex_lock (&cg->lock);
  s = g_hash_table_lookup (cg->sessions, call->sid);
  r = s ? conn_grpc_result_from_reply (reply, s, cg->name, &error) : NULL;
  if (s == NULL)
    g_set_error (&error, CONN_GRPC_ERROR, CONN_GRPC_ERROR_BAD_REPLY, "session forgotten");
  g_mutex_unlock (&cg->lock);
  if (r == NULL)
    {
      call_fail (task, error);
      return;
    }
  call_release (cg, call, FALSE);
  g_task_return_pointer (task, r, (GDestroyNotify)vps_connector_result_unref);
  g_object_unref (task);
}

static void
call_step (GTask *task)
{
  Call *call = g_task_get_task_data (task);
  ConnGrpc *cg = vps_connector_get_data (call->connector);
  gint64 left = call->deadline == G_MAXINT64 ? 0 : call->deadline - g_get_monotonic_time ();

  if (call->deadline != G_MAXINT64 && left <= 0)
    {
      call_fail (task,
                 g_error_new (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_TIMEOUT,
                              "timeout before stage %s was sent", rules_stage_name (call->stage)));
      return;
    }
  vps_grpc_channel_call_async (cg->channel, CONN_GRPC_CHECK_METHOD,
                               g_ptr_array_index (call->requests, call->next++), left,
                               g_task_get_cancellable (task), step_done, task);
}

static void
conn_grpc_call_async (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                      GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  ConnGrpc *cg = vps_connector_get_data (connector);
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  gint64 timeout_ms = vps_connector_get_timeout_ms (connector);
  GError *error = NULL;
  Call *call;

  g_task_set_source_tag (task, conn_grpc_call_async);
  expire_sessions (cg);
  call = g_new0 (Call, 1);
  call->connector = vps_connector_ref (connector);
  call->txn = vps_txn_ref (txn);
  call->stage = stage;
  call->sid = g_strdup (vps_session_get_id (vps_txn_get_session (txn)));
  call->requests = g_ptr_array_new_with_free_func ((GDestroyNotify)g_bytes_unref);
  call->deadline = timeout_ms > 0 ? g_get_monotonic_time () + timeout_ms * 1000 : G_MAXINT64;
  g_task_set_task_data (task, call, call_free);
  if (!call_prepare (cg, call, FALSE, &error))
    {
      /* a busy session is not ours to release; one whose request could
       * not be built was advanced as if sent: it starts again */
      if (call->remote_id != NULL)
        call_release (cg, call, TRUE);
      g_prefix_error (&error, "grpc %s: ", cg->name);
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  call_step (task);
}

static VpsConnectorResult *
conn_grpc_call_finish (VpsConnector *connector, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const RulesFieldDecl conn_grpc_fields[] = {
  { "enhanced", RULES_TYPE_STRING, FALSE },       { "rule", RULES_TYPE_STRING, FALSE },
  { "quarantine", RULES_TYPE_STRING, FALSE },     { "matched", RULES_TYPE_STRV, FALSE },
  { "transaction_id", RULES_TYPE_STRING, FALSE },
};

const VpsConnectorClass conn_grpc_class = {
  .type = "grpc",
  .fields = conn_grpc_fields,
  .n_fields = G_N_ELEMENTS (conn_grpc_fields),
  /* the remote side's connector fields are not known before it answers */
  .any_field = TRUE,
  .config_keys = conn_grpc_keys,
  .create = conn_grpc_create,
  .call_async = conn_grpc_call_async,
  .call_finish = conn_grpc_call_finish,
  .free = conn_grpc_free,
};
