/* SPDX-License-Identifier: MIT
 *
 * conn-http.c — connector type `http`: asks a web service about the
 * transaction with one POST per call (libcurl).
 *
 * Keys of [connector NAME] with type = http (besides the common type,
 * timeout, on_error, concurrency):
 *   url             http:// or https:// URL (required)
 *   mode            json (default): POST our JSON document, read our reply
 *                   format; rspamd: POST the message to rspamd's /checkv2
 *                   with its IP/Helo/From/Rcpt/Queue-Id/User headers
 *   send_body       json: include the raw message at data (default yes)
 *   apply_action    rspamd: turn rspamd's action into a verdict and header
 *                   changes (default yes)
 *   max_reply_size  a larger reply is an error (default 1M)
 *   ca_file         PEM CA bundle for https (default: the system store);
 *                   the peer is always verified, name and chain
 *   cert, key       client certificate and key (PEM) for https
 *   quarantine      quarantine name of a quarantine verdict (default NAME)
 * Relative paths are relative to the config file.
 *
 * Results: NAME.status (HTTP status), NAME.json("a.b") (the reply object);
 * mode = rspamd also NAME.score, NAME.required_score, NAME.action,
 * NAME.symbols.  A transport failure, a non-2xx status, a reply that is not
 * a JSON object, too large, or carrying something we refuse to pass on is an
 * error (→ on_error).
 *
 * Threading (vps/connector.h): one instance serves every worker.  Each
 * worker's main context gets its own curl multi loop (conn-http-loop.c),
 * found under a mutex; the call itself runs on the calling context without
 * locks and never blocks it.
 */
#include "connectors/http/conn-http.h"

#include <string.h>

#include "connectors/http/conn-http-private.h"

typedef struct
{
  ConnHttpSettings *settings;
  GMutex lock;
  GHashTable *loops; /* GMainContext* → ConnHttpLoop* (a reference) */
} ConnHttp;

/* ---- settings ------------------------------------------------------------- */

static void
settings_clear (gpointer data)
{
  ConnHttpSettings *s = data;

  g_free (s->name);
  g_free (s->url);
  g_free (s->ca_file);
  g_free (s->cert);
  g_free (s->key);
  g_free (s->quarantine);
  g_free (s->user_agent);
}

ConnHttpSettings *
conn_http_settings_ref (ConnHttpSettings *settings)
{
  return g_atomic_rc_box_acquire (settings);
}

void
conn_http_settings_unref (ConnHttpSettings *settings)
{
  if (settings != NULL)
    g_atomic_rc_box_release_full (settings, settings_clear);
}

/* ---- instances ------------------------------------------------------------ */

static void
shutdown_loop (gpointer data)
{
  conn_http_loop_shutdown (data);
}

static void
conn_http_free (gpointer data)
{
  ConnHttp *h = data;

  g_hash_table_unref (h->loops);
  g_mutex_clear (&h->lock);
  conn_http_settings_unref (h->settings);
  g_free (h);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnHttp, conn_http_free)

static const char *const conn_http_keys[] = {
  "url",     "mode", "send_body", "apply_action", "max_reply_size",
  "ca_file", "cert", "key",       "quarantine",   NULL,
};

static gboolean
read_url (VpsConfig *cfg, const char *group, ConnHttpSettings *s, GError **error)
{
  const char *url = vps_config_get_raw (cfg, group, "url");
  CURLU *u;
  g_autofree char *scheme = NULL;
  CURLUcode rc;

  if (url == NULL || *url == '\0')
    {
      vps_config_error_at (cfg, group, "url", error, "required: the http:// or https:// URL");
      return FALSE;
    }
  if (strlen (url) > CONN_HTTP_MAX_URL)
    {
      vps_config_error_at (cfg, group, "url", error, "longer than %d characters",
                           CONN_HTTP_MAX_URL);
      return FALSE;
    }
  u = curl_url ();
  rc = curl_url_set (u, CURLUPART_URL, url, 0);
  if (rc == CURLUE_OK)
    {
      char *part = NULL;
      rc = curl_url_get (u, CURLUPART_SCHEME, &part, 0);
      scheme = g_strdup (part);
      curl_free (part);
    }
  curl_url_cleanup (u);
  if (rc != CURLUE_OK || scheme == NULL
      || (g_ascii_strcasecmp (scheme, "http") != 0 && g_ascii_strcasecmp (scheme, "https") != 0))
    {
      vps_config_error_at (cfg, group, "url", error, "'%s' is not an http:// or https:// URL", url);
      return FALSE;
    }
  s->url = g_strdup (url);
  return TRUE;
}

/* A readable file, resolved against the config file's directory. */
static gboolean
read_file_key (VpsConfig *cfg, const char *group, const char *key, char **out, GError **error)
{
  const char *v = vps_config_get_raw (cfg, group, key);

  *out = NULL;
  if (v == NULL || *v == '\0')
    return TRUE;
  *out = vps_config_resolve_path (cfg, v);
  if (!g_file_test (*out, G_FILE_TEST_IS_REGULAR))
    {
      vps_config_error_at (cfg, group, key, error, "'%s' is not a readable file", *out);
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_mode (VpsConfig *cfg, const char *group, ConnHttpSettings *s, GError **error)
{
  const char *mode = vps_config_get_raw (cfg, group, "mode");

  if (mode == NULL || strcmp (mode, "json") == 0)
    s->mode = CONN_HTTP_MODE_JSON;
  else if (strcmp (mode, "rspamd") == 0)
    s->mode = CONN_HTTP_MODE_RSPAMD;
  else
    {
      vps_config_error_at (cfg, group, "mode", error, "'%s': json or rspamd", mode);
      return FALSE;
    }
  return TRUE;
}

static gpointer
conn_http_create (const char *name, VpsConfig *cfg, const char *group, GError **error)
{
  static gsize curl_ready = 0;
  g_autoptr (ConnHttpSettings) s = g_atomic_rc_box_new0 (ConnHttpSettings);
  ConnHttp *h;
  const char *q;

  /* curl_global_init is not thread-safe in every build: once, before any
   * worker uses curl (connectors are created at load, before workers) */
  if (g_once_init_enter (&curl_ready))
    g_once_init_leave (&curl_ready, curl_global_init (CURL_GLOBAL_DEFAULT) == CURLE_OK ? 1 : 2);
  if (curl_ready != 1)
    {
      g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_CONFIG,
                   "[connector %s]: libcurl could not be initialised", name);
      return NULL;
    }

  s->name = g_strdup (name);
  s->user_agent = g_strdup ("vps-http-connector/1");
  if (!vps_config_connector_check_keys (cfg, group, conn_http_keys, error)
      || !read_url (cfg, group, s, error) || !read_mode (cfg, group, s, error)
      || !vps_config_read_bool (cfg, group, "send_body", TRUE, &s->send_body, error)
      || !vps_config_read_bool (cfg, group, "apply_action", TRUE, &s->apply_action, error)
      || !vps_config_read_size (cfg, group, "max_reply_size", CONN_HTTP_DEFAULT_MAX_REPLY,
                                &s->max_reply_size, error)
      || !read_file_key (cfg, group, "ca_file", &s->ca_file, error)
      || !read_file_key (cfg, group, "cert", &s->cert, error)
      || !read_file_key (cfg, group, "key", &s->key, error))
    return NULL;
  if (s->max_reply_size == 0 || s->max_reply_size > CONN_HTTP_MAX_MAX_REPLY)
    {
      vps_config_error_at (cfg, group, "max_reply_size", error, "1 .. %d bytes",
                           CONN_HTTP_MAX_MAX_REPLY);
      return NULL;
    }
  if (s->key != NULL && s->cert == NULL)
    {
      vps_config_error_at (cfg, group, "key", error, "a key without a `cert`");
      return NULL;
    }
  q = vps_config_get_raw (cfg, group, "quarantine");
  s->quarantine = g_strdup (q != NULL ? q : name);

  h = g_new0 (ConnHttp, 1);
  g_mutex_init (&h->lock);
  h->loops = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, shutdown_loop);
  h->settings = g_steal_pointer (&s);
  return h;
}

/* The loop of the calling thread's main context, created on first use. */
static ConnHttpLoop *
loop_for_context (ConnHttp *h)
{
  g_autoptr (GMainContext) context = g_main_context_ref_thread_default ();
  ConnHttpLoop *loop;

  g_mutex_lock (&h->lock);
  loop = g_hash_table_lookup (h->loops, context);
  if (loop == NULL)
    {
      /* the loop keeps the context alive: its address is not reused by
       * another context while it is a key here */
      loop = conn_http_loop_new (context);
      g_hash_table_insert (h->loops, context, loop);
    }
  conn_http_loop_ref (loop);
  g_mutex_unlock (&h->lock);
  return loop;
}

/* ---- calls ---------------------------------------------------------------- */

typedef struct
{
  VpsConnector *connector;
  VpsTxn *txn;
  ConnHttpLoop *loop;
} Call;

static void
call_free (gpointer data)
{
  Call *call = data;

  vps_connector_unref (call->connector);
  vps_txn_unref (call->txn);
  conn_http_loop_unref (call->loop);
  g_free (call);
}

static void
post_done (GObject *source, GAsyncResult *res, gpointer data)
{
  g_autoptr (GTask) task = data;
  Call *call = g_task_get_task_data (task);
  ConnHttp *h = vps_connector_get_data (call->connector);
  const ConnHttpSettings *s = h->settings;
  GError *error = NULL;
  glong status = 0;
  g_autoptr (GBytes) body = conn_http_loop_post_finish (call->loop, res, &status, &error);
  g_autoptr (JsonNode) reply = NULL;
  VpsConnectorResult *r = NULL;

  if (body == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  reply = conn_http_parse_reply (body, &error);
  if (reply != NULL && s->mode == CONN_HTTP_MODE_JSON)
    r = conn_http_json_result (reply, status, s, &error);
  else if (reply != NULL)
    {
      VpsMessage *msg = vps_txn_get_message (call->txn);
      r = conn_http_rspamd_result (reply, status, s, msg ? vps_message_get_subject (msg) : NULL,
                                   &error);
    }
  if (r == NULL)
    {
      g_prefix_error (&error, "http %s: ", s->name);
      g_task_return_error (task, error);
      return;
    }
  g_task_return_pointer (task, r, (GDestroyNotify)vps_connector_result_unref);
}

static void
conn_http_call_async (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                      GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  ConnHttp *h = vps_connector_get_data (connector);
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  g_autoptr (GBytes) body = NULL;
  struct curl_slist *headers = NULL;
  Call *call;

  g_task_set_source_tag (task, conn_http_call_async);
  if (h->settings->mode == CONN_HTTP_MODE_JSON)
    {
      body = conn_http_json_request (txn, stage, h->settings->name, h->settings->send_body);
      headers = curl_slist_append (headers, "Content-Type: application/json");
      headers = curl_slist_append (headers, "Accept: application/json");
    }
  else
    {
      VpsMessage *msg = vps_txn_get_message (txn);

      if (msg == NULL)
        {
          g_task_return_new_error (task, CONN_HTTP_ERROR, CONN_HTTP_ERROR_NO_MESSAGE,
                                   "http %s: mode = rspamd needs the message: call it at data",
                                   h->settings->name);
          g_object_unref (task);
          return;
        }
      body = g_bytes_ref (vps_message_get_raw (msg));
      headers = conn_http_rspamd_headers (txn);
    }
  call = g_new0 (Call, 1);
  call->connector = vps_connector_ref (connector);
  call->txn = vps_txn_ref (txn);
  call->loop = loop_for_context (h);
  g_task_set_task_data (task, call, call_free);
  conn_http_loop_post_async (call->loop, h->settings, body, headers,
                             vps_connector_get_timeout_ms (connector), cancellable, post_done,
                             task);
}

static VpsConnectorResult *
conn_http_call_finish (VpsConnector *connector, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const RulesFieldDecl conn_http_fields[] = {
  { "status", RULES_TYPE_INT, FALSE },    { "json", RULES_TYPE_NONE, TRUE },
  { "score", RULES_TYPE_FLOAT, FALSE },   { "required_score", RULES_TYPE_FLOAT, FALSE },
  { "action", RULES_TYPE_STRING, FALSE }, { "symbols", RULES_TYPE_STRV, FALSE },
};

const VpsConnectorClass conn_http_class = {
  .type = "http",
  .fields = conn_http_fields,
  .n_fields = G_N_ELEMENTS (conn_http_fields),
  .any_field = FALSE,
  .config_keys = conn_http_keys,
  .create = conn_http_create,
  .call_async = conn_http_call_async,
  .call_finish = conn_http_call_finish,
  .free = conn_http_free,
};
