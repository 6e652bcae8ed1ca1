/* SPDX-License-Identifier: MIT
 *
 * conn-policy-pool.c — persistent connections to one policy service, for
 * one main context (contract in conn-policy-private.h).
 *
 * The policy protocol is strictly one request, one reply, and a server
 * keeps the connection for the next request (SMTPD_POLICY_README), so a
 * connection carries one exchange at a time and goes back to the pool
 * afterwards.  Everything is GIO async on the pool's context; nothing here
 * blocks.  Reply bytes are framed and parsed by proto/policy.
 *
 * Ownership: an Exchange (the GTask's data) holds a reference on its pool
 * and owns the connection it uses; an idle connection is owned by the pool.
 * A waiting exchange sits in pool->waiters until a connection or a slot for
 * a new one frees up, or its cancellable fires.
 */
#include "connectors/policy/conn-policy-private.h"

#include <gio/gunixsocketaddress.h>

#include "vps/listen.h"
#include "vps/log.h"

struct _ConnPolicyPool
{
  gint ref; /* atomic */
  ConnPolicySettings *settings;
  GMainContext *context;
  GSocketClient *client;
  GSocketConnectable *connectable;
  GQueue idle;    /* Conn*, most recently used first */
  GQueue waiters; /* Exchange* */
  guint open;
  gboolean closed;
};

typedef struct
{
  ConnPolicyPool *pool;
  GSocketConnection *connection;
  GSource *idle_timer;
  GList link; /* in pool->idle */
  guint8 chunk[CONN_POLICY_READ_CHUNK];
} Conn;

typedef struct
{
  ConnPolicyPool *pool;
  GTask *task; /* borrowed: the task owns us */
  GBytes *request;
  char *sid; /* session id, for log lines */
  Conn *conn;
  gboolean reused;   /* conn came from the idle list */
  guint failures;    /* failures on new connections (against `retries`) */
  GByteArray *reply; /* bytes read so far */
  GSource *cancel_source;
  GList link; /* in pool->waiters */
} Exchange;

static void exchange_acquire (Exchange *ex, gboolean allow_idle);
static void exchange_send (Exchange *ex);

/* ---- connections ---------------------------------------------------------- */

static void
conn_free (Conn *c)
{
  if (c->idle_timer != NULL)
    {
      g_source_destroy (c->idle_timer);
      g_source_unref (c->idle_timer);
    }
  if (c->connection != NULL)
    {
      /* a socket close never blocks; errors closing are of no interest */
      g_io_stream_close (G_IO_STREAM (c->connection), NULL, NULL);
      g_object_unref (c->connection);
    }
  g_free (c);
}

static void wake_waiter_for_slot (ConnPolicyPool *pool);

/* Close a connection that is not in the idle list; its slot frees up. */
static void
conn_close (Conn *c)
{
  ConnPolicyPool *pool = c->pool;

  conn_free (c);
  g_assert (pool->open > 0);
  pool->open--;
  wake_waiter_for_slot (pool);
}

static gboolean
idle_timer_cb (gpointer data)
{
  Conn *c = data;

  g_queue_unlink (&c->pool->idle, &c->link);
  g_clear_pointer (&c->idle_timer, g_source_unref);
  conn_close (c);
  return G_SOURCE_REMOVE;
}

/* An idle connection must have nothing to read: readable means the peer
 * closed it (EOF) or sent bytes nobody asked for; either way it is unusable. */
static gboolean
conn_is_stale (Conn *c)
{
  GSocket *socket = g_socket_connection_get_socket (c->connection);

  return g_socket_condition_check (socket, G_IO_IN | G_IO_HUP | G_IO_ERR) != 0;
}

/* ---- waiting -------------------------------------------------------------- */

static void
exchange_stop_waiting (Exchange *ex)
{
  if (ex->cancel_source != NULL)
    {
      g_source_destroy (ex->cancel_source);
      g_clear_pointer (&ex->cancel_source, g_source_unref);
    }
}

static void
exchange_return_error (Exchange *ex, GError *error)
{
  GTask *task = ex->task;

  g_task_return_error (task, error);
  g_object_unref (task);
}

static gboolean
waiter_cancelled (GCancellable *cancellable, gpointer data)
{
  Exchange *ex = data;

  g_queue_unlink (&ex->pool->waiters, &ex->link);
  exchange_stop_waiting (ex);
  exchange_return_error (ex, g_error_new (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                          "cancelled while waiting for a connection"));
  return G_SOURCE_REMOVE;
}

static void
wait_for_conn (Exchange *ex)
{
  GCancellable *cancellable = g_task_get_cancellable (ex->task);

  g_queue_push_tail_link (&ex->pool->waiters, &ex->link);
  if (cancellable != NULL)
    {
      ex->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (ex->cancel_source, G_SOURCE_FUNC (waiter_cancelled), ex, NULL);
      g_source_attach (ex->cancel_source, ex->pool->context);
    }
}

/* A slot is free (a connection closed): the first waiter may open one. */
static void
wake_waiter_for_slot (ConnPolicyPool *pool)
{
  GList *l;

  if (pool->closed || pool->waiters.length == 0 || pool->open >= pool->settings->max_connections)
    return;
  l = g_queue_pop_head_link (&pool->waiters);
  exchange_stop_waiting (l->data);
  exchange_acquire (l->data, TRUE);
}

/* An exchange is done with c: hand it to the first waiter or keep it idle. */
static void
conn_release (Conn *c)
{
  ConnPolicyPool *pool = c->pool;
  GList *l;

  if (pool->closed)
    {
      conn_close (c);
      return;
    }
  if ((l = g_queue_pop_head_link (&pool->waiters)) != NULL)
    {
      Exchange *ex = l->data;

      exchange_stop_waiting (ex);
      /* straight from one exchange to the next: the peer had no time to
       * close it, and it was just fine */
      ex->conn = c;
      ex->reused = TRUE;
      exchange_acquire (ex, FALSE);
      return;
    }
  c->link.data = c;
  g_queue_push_head_link (&pool->idle, &c->link);
  if (pool->settings->idle_timeout_ms > 0)
    {
      c->idle_timer
          = g_timeout_source_new ((guint)MIN (pool->settings->idle_timeout_ms, G_MAXUINT));
      g_source_set_callback (c->idle_timer, idle_timer_cb, c, NULL);
      g_source_attach (c->idle_timer, pool->context);
    }
}

/* ---- one exchange ----------------------------------------------------------- */

static void exchange_read (Exchange *ex);

static void
exchange_free (gpointer data)
{
  Exchange *ex = data;

  g_assert (ex->conn == NULL);
  g_assert (ex->cancel_source == NULL);
  g_bytes_unref (ex->request);
  g_free (ex->sid);
  g_byte_array_unref (ex->reply);
  conn_policy_pool_unref (ex->pool);
  g_free (ex);
}

/* The connection failed under this exchange: drop it, then send again
 * when that is safe, or fail. */
static void
exchange_io_failed (Exchange *ex, GError *error)
{
  ConnPolicyPool *pool = ex->pool;
  gboolean stale = ex->reused && ex->reply->len == 0;
  Conn *c = g_steal_pointer (&ex->conn);

  if (c != NULL)
    conn_close (c);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || pool->closed)
    {
      exchange_return_error (ex, error);
      return;
    }
  if (stale)
    {
      /* the peer closed a pooled connection just as we used it: not a
       * failure of the service (SMTPD_POLICY_README lets servers close
       * idle connections) */
      vps_debug (ex->sid, "policy %s: pooled connection lost (%s), sending again",
                 pool->settings->name, error->message);
      g_error_free (error);
      exchange_acquire (ex, FALSE);
      return;
    }
  if (ex->failures < pool->settings->retries)
    {
      ex->failures++;
      vps_debug (ex->sid, "policy %s: %s, retry %u of %u", pool->settings->name, error->message,
                 ex->failures, pool->settings->retries);
      g_error_free (error);
      exchange_acquire (ex, FALSE);
      return;
    }
  g_prefix_error (&error, "policy %s (%s): ", pool->settings->name, pool->settings->address);
  exchange_return_error (ex, error);
}

static void
read_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Exchange *ex = data;
  GError *error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &error);
  gsize consumed = 0;
  PolicyAction *action;
  GError *parse_error = NULL;

  if (n < 0)
    {
      exchange_io_failed (ex, error);
      return;
    }
  if (n == 0)
    {
      exchange_io_failed (ex,
                          g_error_new (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                       ex->reply->len == 0 ? "connection closed by the peer"
                                                           : "connection closed inside a reply"));
      return;
    }
  g_byte_array_append (ex->reply, ex->conn->chunk, (guint)n);
  action
      = policy_reply_parse ((const char *)ex->reply->data, ex->reply->len, &consumed, &parse_error);
  if (action == NULL && g_error_matches (parse_error, POLICY_ERROR, POLICY_ERROR_INCOMPLETE))
    {
      g_error_free (parse_error);
      exchange_read (ex);
      return;
    }
  if (action == NULL || consumed != ex->reply->len)
    {
      /* nonsense, or more than one reply: the stream is out of step and
       * nobody can tell what the next bytes answer; never retried */
      Conn *c = g_steal_pointer (&ex->conn);

      conn_close (c);
      if (action == NULL)
        g_prefix_error (&parse_error, "policy %s: malformed reply: ", ex->pool->settings->name);
      else
        {
          policy_action_free (action);
          parse_error = g_error_new (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                                     "policy %s: %u bytes after the reply",
                                     ex->pool->settings->name, ex->reply->len - (guint)consumed);
        }
      exchange_return_error (ex, parse_error);
      return;
    }
  conn_release (g_steal_pointer (&ex->conn));
  {
    GTask *task = ex->task;
    g_task_return_pointer (task, action, (GDestroyNotify)policy_action_free);
    g_object_unref (task);
  }
}

static void
exchange_read (Exchange *ex)
{
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (ex->conn->connection));

  g_input_stream_read_async (in, ex->conn->chunk, sizeof ex->conn->chunk, G_PRIORITY_DEFAULT,
                             g_task_get_cancellable (ex->task), read_cb, ex);
}

static void
write_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Exchange *ex = data;
  GError *error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL, &error))
    {
      exchange_io_failed (ex, error);
      return;
    }
  exchange_read (ex);
}

/* Send the request on ex->conn, then read the reply. */
static void
exchange_send (Exchange *ex)
{
  GOutputStream *out;
  gsize len = 0;
  const void *data;

  out = g_io_stream_get_output_stream (G_IO_STREAM (ex->conn->connection));
  data = g_bytes_get_data (ex->request, &len);
  g_output_stream_write_all_async (out, data, len, G_PRIORITY_DEFAULT,
                                   g_task_get_cancellable (ex->task), write_cb, ex);
}

static void
connected_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Exchange *ex = data;
  ConnPolicyPool *pool = ex->pool;
  GError *error = NULL;
  GSocketConnection *connection
      = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), res, &error);
  Conn *c;

  c = g_new0 (Conn, 1);
  c->pool = pool;
  if (connection == NULL)
    {
      ex->reused = FALSE;
      ex->conn = c; /* an empty one, so that the slot is given back */
      exchange_io_failed (ex, error);
      return;
    }
  c->connection = connection;
  vps_socket_set_nodelay (g_socket_connection_get_socket (connection));
  ex->conn = c;
  ex->reused = FALSE;
  exchange_send (ex);
}

/* Find a connection for ex: the one it already holds (handed over by
 * conn_release), an idle one (when allowed), a new one, or wait. */
static void
exchange_acquire (Exchange *ex, gboolean allow_idle)
{
  ConnPolicyPool *pool = ex->pool;
  GList *l;

  g_byte_array_set_size (ex->reply, 0);
  if (ex->conn != NULL)
    {
      exchange_send (ex);
      return;
    }
  while (allow_idle && (l = g_queue_pop_head_link (&pool->idle)) != NULL)
    {
      Conn *c = l->data;

      if (c->idle_timer != NULL)
        {
          g_source_destroy (c->idle_timer);
          g_clear_pointer (&c->idle_timer, g_source_unref);
        }
      if (conn_is_stale (c))
        {
          conn_close (c);
          continue;
        }
      ex->conn = c;
      ex->reused = TRUE;
      exchange_send (ex);
      return;
    }
  if (pool->open < pool->settings->max_connections)
    {
      pool->open++;
      g_socket_client_connect_async (pool->client, pool->connectable,
                                     g_task_get_cancellable (ex->task), connected_cb, ex);
      return;
    }
  if (!allow_idle && pool->idle.length > 0)
    {
      /* no slot for a new connection: take an idle one after all, as the
       * best remaining chance (its staleness is checked) */
      exchange_acquire (ex, TRUE);
      return;
    }
  wait_for_conn (ex);
}

void
conn_policy_pool_exchange_async (ConnPolicyPool *pool, GBytes *request, const char *sid,
                                 GCancellable *cancellable, GAsyncReadyCallback callback,
                                 gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Exchange *ex = g_new0 (Exchange, 1);

  g_task_set_source_tag (task, conn_policy_pool_exchange_async);
  ex->pool = conn_policy_pool_ref (pool);
  ex->task = task;
  ex->request = g_bytes_ref (request);
  ex->sid = g_strdup (sid);
  ex->reply = g_byte_array_sized_new (128);
  ex->link.data = ex;
  g_task_set_task_data (task, ex, exchange_free);
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }
  if (pool->closed)
    {
      exchange_return_error (ex,
                             g_error_new (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                                          "policy %s: connector shut down", pool->settings->name));
      return;
    }
  exchange_acquire (ex, TRUE);
}

PolicyAction *
conn_policy_pool_exchange_finish (ConnPolicyPool *pool, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- the pool ------------------------------------------------------------- */

ConnPolicyPool *
conn_policy_pool_new (ConnPolicySettings *settings, GMainContext *context)
{
  ConnPolicyPool *pool = g_new0 (ConnPolicyPool, 1);

  pool->ref = 1;
  pool->settings = conn_policy_settings_ref (settings);
  pool->context = g_main_context_ref (context);
  pool->client = g_socket_client_new ();
  /* a policy service is always reached directly; proxy lookups would
   * only cost time (and could route local traffic through a proxy) */
  g_socket_client_set_enable_proxy (pool->client, FALSE);
  if (settings->path != NULL)
    pool->connectable = G_SOCKET_CONNECTABLE (g_unix_socket_address_new (settings->path));
  else
    pool->connectable = g_network_address_new (settings->host, settings->port);
  g_queue_init (&pool->idle);
  g_queue_init (&pool->waiters);
  return pool;
}

ConnPolicyPool *
conn_policy_pool_ref (ConnPolicyPool *pool)
{
  g_atomic_int_inc (&pool->ref);
  return pool;
}

void
conn_policy_pool_unref (ConnPolicyPool *pool)
{
  if (pool == NULL || !g_atomic_int_dec_and_test (&pool->ref))
    return;
  /* exchanges hold references, so none is running or waiting now */
  g_assert (pool->waiters.length == 0);
  while (pool->idle.length > 0)
    {
      Conn *c = g_queue_pop_head (&pool->idle);
      conn_free (c);
    }
  g_object_unref (pool->connectable);
  g_object_unref (pool->client);
  g_main_context_unref (pool->context);
  conn_policy_settings_unref (pool->settings);
  g_free (pool);
}

static gboolean
shutdown_in_context (gpointer data)
{
  ConnPolicyPool *pool = data;
  GList *l;

  pool->closed = TRUE;
  while ((l = g_queue_pop_head_link (&pool->idle)) != NULL)
    conn_close (l->data);
  return G_SOURCE_REMOVE;
}

void
conn_policy_pool_shutdown (ConnPolicyPool *pool)
{
  /* runs at once when this thread owns (or may acquire) the context, else
   * from the worker's loop */
  g_main_context_invoke_full (pool->context, G_PRIORITY_DEFAULT, shutdown_in_context, pool,
                              (GDestroyNotify)conn_policy_pool_unref);
}
