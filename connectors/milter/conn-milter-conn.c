/* SPDX-License-Identifier: MIT
 *
 * conn-milter-conn.c — the connections of the `milter` connector: one per
 * SMTP session and (connector, main context), opened and negotiated on the
 * session's first call, reused by its later calls and messages, closed
 * with QUIT when the session ends (contract in conn-milter-private.h).
 *
 * A milter conversation belongs to one SMTP session (libmilter keeps the
 * connect/helo state per connection), so connections are not shared
 * between sessions the way policy connections are.  Everything runs GIO
 * async on the pool's context; a pool needs no lock.  Reply bytes are
 * framed and decoded by proto/milter; TCP_NODELAY is set on every socket:
 * macro packets and NR_* steps get no reply, and without it Nagle would
 * hold our next small write for the milter's delayed ACK (the 40 ms stall
 * of MILTER.md).
 *
 * Ownership: the pool owns its connections (in pool->conns); a call marks
 * one busy while it uses it.  An Exchange (a GTask's data) holds a pool
 * reference and borrows the connection, which cannot go away while busy.
 */
#include "connectors/milter/conn-milter-private.h"

#include <gio/gunixsocketaddress.h>

#include "vps/listen.h"
#include "vps/log.h"

struct _ConnMilterPool
{
  gint ref; /* atomic */
  ConnMilterSettings *settings;
  GMainContext *context;
  GSocketClient *client;
  GSocketConnectable *connectable;
  GHashTable *conns; /* sid → ConnMilterConn* (owned) */
  guint failures;    /* consecutive failed connects / negotiations */
  gint64 retry_at;   /* monotonic µs: no new connection before */
  gboolean closed;
};

/* ---- running on the pool's context --------------------------------------- */

/* Run func on the pool's context: at once when this thread may own it
 * (the worker itself, or a tool whose private context nobody iterates any
 * more), else from that context's loop. */
static void
pool_invoke (ConnMilterPool *pool, GSourceFunc func, gpointer data, GDestroyNotify destroy)
{
  /* destroy may free the pool and with it the last context reference */
  g_autoptr (GMainContext) context = g_main_context_ref (pool->context);

  if (g_main_context_acquire (context))
    {
      func (data);
      if (destroy != NULL)
        destroy (data);
      g_main_context_release (context);
      return;
    }
  g_main_context_invoke_full (context, G_PRIORITY_DEFAULT, func, data, destroy);
}

/* ---- connections ---------------------------------------------------------- */

static void
conn_free (ConnMilterConn *c)
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
  for (guint i = 0; i < MILTER_N_STAGES; i++)
    g_free (c->symlists[i]);
  g_hash_table_unref (c->rcpts_sent);
  g_byte_array_unref (c->in);
  g_free (c->sid);
  g_free (c);
}

/* The milter may keep per-connection resources (a libmilter thread): say
 * QUIT, as an MTA does at the end of the SMTP session.  A 5-byte send on a
 * healthy socket does not block; on a broken one it fails, and then the
 * close says the same. */
static void
conn_quit (ConnMilterConn *c)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  GSocket *socket;

  if (c->connection == NULL || c->broken)
    return;
  socket = g_socket_connection_get_socket (c->connection);
  milter_encode_quit (out);
  g_socket_set_blocking (socket, FALSE);
  (void)g_socket_send (socket, (const char *)out->data, out->len, NULL, NULL);
}

/* Remove c from the pool and close it (QUIT first unless broken). */
static void
conn_close (ConnMilterPool *pool, ConnMilterConn *c)
{
  conn_quit (c);
  /* the table owns c: removing it frees it */
  g_hash_table_remove (pool->conns, c->sid);
}

static gboolean
idle_timer_cb (gpointer data)
{
  ConnMilterConn *c = data;

  g_clear_pointer (&c->idle_timer, g_source_unref);
  vps_debug (c->sid, "milter %s: connection idle for %" G_GINT64_FORMAT " ms, closed",
             c->pool->settings->name, c->pool->settings->idle_timeout_ms);
  conn_close (c->pool, c);
  return G_SOURCE_REMOVE;
}

/* ---- one exchange ----------------------------------------------------------- */

typedef struct
{
  ConnMilterConn *conn;
  GTask *task; /* borrowed: the task owns us */
  GByteArray *out;
  gboolean want_reply;
  gboolean eom;
  gint64 timeout_ms;
  GCancellable *io; /* cancelled at the timeout or when the caller cancels */
  GCancellable *outer;
  gulong outer_handler;
  GSource *timer;
  gboolean timed_out;
  GPtrArray *replies; /* MilterReplyPacket* */
} Exchange;

static void
exchange_free (gpointer data)
{
  Exchange *ex = data;

  if (ex->timer != NULL)
    {
      g_source_destroy (ex->timer);
      g_source_unref (ex->timer);
    }
  if (ex->outer_handler != 0)
    g_cancellable_disconnect (ex->outer, ex->outer_handler);
  g_clear_object (&ex->outer);
  g_object_unref (ex->io);
  g_byte_array_unref (ex->out);
  g_ptr_array_unref (ex->replies);
  g_free (ex);
}

static void
exchange_fail (Exchange *ex, GError *error)
{
  GTask *task = ex->task;

  ex->conn->broken = TRUE;
  if (ex->timed_out)
    {
      g_clear_error (&error);
      error = g_error_new (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_TIMEOUT,
                           "no reply within %" G_GINT64_FORMAT " ms", ex->timeout_ms);
    }
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
exchange_succeed (Exchange *ex)
{
  GTask *task = ex->task;

  g_task_return_pointer (task, g_ptr_array_ref (ex->replies), (GDestroyNotify)g_ptr_array_unref);
  g_object_unref (task);
}

static gboolean
timer_cb (gpointer data)
{
  Exchange *ex = data;

  ex->timed_out = TRUE;
  g_clear_pointer (&ex->timer, g_source_unref);
  g_cancellable_cancel (ex->io);
  return G_SOURCE_REMOVE;
}

static void
timer_restart (Exchange *ex)
{
  if (ex->timer != NULL)
    {
      g_source_destroy (ex->timer);
      g_source_unref (ex->timer);
    }
  ex->timer = g_timeout_source_new ((guint)MIN (ex->timeout_ms, G_MAXUINT));
  g_source_set_callback (ex->timer, timer_cb, ex, NULL);
  g_source_attach (ex->timer, ex->conn->pool->context);
}

static void
outer_cancelled (GCancellable *outer, gpointer data)
{
  /* may run on another thread: only touch the thread-safe cancellable */
  g_cancellable_cancel (G_CANCELLABLE (data));
}

static gboolean
is_modification (guint8 code)
{
  switch (code)
    {
      case MILTER_REPLY_ADDRCPT:
      case MILTER_REPLY_DELRCPT:
      case MILTER_REPLY_ADDRCPT_PAR:
      case MILTER_REPLY_REPLBODY:
      case MILTER_REPLY_CHGFROM:
      case MILTER_REPLY_ADDHEADER:
      case MILTER_REPLY_INSHEADER:
      case MILTER_REPLY_CHGHEADER:
      case MILTER_REPLY_QUARANTINE:
        return TRUE;
      default:
        return FALSE;
    }
}

static void exchange_read (Exchange *ex);

/* Decode what arrived; read more, or finish. */
static void
exchange_decode (Exchange *ex)
{
  ConnMilterConn *c = ex->conn;

  for (;;)
    {
      MilterFrame frame;
      gsize consumed = 0;
      GError *error = NULL;
      MilterReplyPacket *p;

      if (!milter_frame_split (c->in->data, c->in->len, CONN_MILTER_MAX_REPLY, &consumed, &frame,
                               &error))
        {
          if (error != NULL)
            {
              exchange_fail (ex, error);
              return;
            }
          exchange_read (ex);
          return;
        }
      p = milter_reply_decode (&frame, &error);
      g_byte_array_remove_range (c->in, 0, (guint)consumed);
      if (p == NULL)
        {
          exchange_fail (ex, error);
          return;
        }
      g_ptr_array_add (ex->replies, p);
      if (p->code == MILTER_REPLY_PROGRESS)
        {
          timer_restart (ex);
          continue;
        }
      if (ex->eom && is_modification (p->code))
        {
          if (ex->replies->len > CONN_MILTER_MAX_EOM_REPLIES)
            {
              exchange_fail (ex, g_error_new (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                                              "more than %d packets at end of message",
                                              CONN_MILTER_MAX_EOM_REPLIES));
              return;
            }
          continue;
        }
      if (c->in->len > 0)
        {
          /* a second answer to one command: the stream is out of step and
           * nobody can tell what the next bytes answer */
          exchange_fail (ex, g_error_new (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                                          "%u bytes after the reply", c->in->len));
          return;
        }
      exchange_succeed (ex);
      return;
    }
}

static void
read_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Exchange *ex = data;
  GError *error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &error);

  if (n < 0)
    {
      exchange_fail (ex, error);
      return;
    }
  if (n == 0)
    {
      exchange_fail (ex, g_error_new (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                      ex->conn->in->len == 0 ? "connection closed by the milter"
                                                             : "connection closed inside a reply"));
      return;
    }
  /* the milter may send packets we do not answer either: keep our ACKs
   * prompt so its next small write is not held (MILTER.md) */
  vps_socket_quickack (g_socket_connection_get_socket (ex->conn->connection));
  g_byte_array_append (ex->conn->in, ex->conn->chunk, (guint)n);
  exchange_decode (ex);
}

static void
exchange_read (Exchange *ex)
{
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (ex->conn->connection));

  g_input_stream_read_async (in, ex->conn->chunk, sizeof ex->conn->chunk, G_PRIORITY_DEFAULT,
                             ex->io, read_cb, ex);
}

static void
exchange_written (Exchange *ex)
{
  if (!ex->want_reply)
    {
      exchange_succeed (ex);
      return;
    }
  timer_restart (ex);
  exchange_decode (ex);
}

static void
write_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Exchange *ex = data;
  GError *error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL, &error))
    {
      exchange_fail (ex, error);
      return;
    }
  exchange_written (ex);
}

void
conn_milter_conn_exchange_async (ConnMilterConn *conn, GByteArray *out, gboolean want_reply,
                                 gboolean eom, gint64 timeout_ms, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Exchange *ex = g_new0 (Exchange, 1);
  GOutputStream *os;

  g_task_set_source_tag (task, conn_milter_conn_exchange_async);
  ex->conn = conn;
  ex->task = task;
  ex->out = g_byte_array_ref (out);
  ex->want_reply = want_reply;
  ex->eom = eom;
  ex->timeout_ms = timeout_ms;
  ex->io = g_cancellable_new ();
  ex->replies = g_ptr_array_new_with_free_func ((GDestroyNotify)milter_reply_packet_free);
  g_task_set_task_data (task, ex, exchange_free);
  if (cancellable != NULL)
    {
      ex->outer = g_object_ref (cancellable);
      ex->outer_handler = g_cancellable_connect (cancellable, G_CALLBACK (outer_cancelled),
                                                 g_object_ref (ex->io), g_object_unref);
    }
  if (conn->broken || conn->connection == NULL)
    {
      exchange_fail (
          ex, g_error_new (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED, "connection unusable"));
      return;
    }
  if (out->len == 0)
    {
      exchange_written (ex);
      return;
    }
  os = g_io_stream_get_output_stream (G_IO_STREAM (conn->connection));
  timer_restart (ex); /* a milter that stops reading must not hold us either */
  g_output_stream_write_all_async (os, out->data, out->len, G_PRIORITY_DEFAULT, ex->io, write_cb,
                                   ex);
}

GPtrArray *
conn_milter_conn_exchange_finish (ConnMilterConn *conn, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- acquiring a session's connection ------------------------------------- */

typedef struct
{
  ConnMilterPool *pool;
  ConnMilterConn *conn; /* in pool->conns, busy */
  GTask *task;          /* borrowed */
} Acquire;

static void
acquire_free (gpointer data)
{
  Acquire *a = data;

  conn_milter_pool_unref (a->pool);
  g_free (a);
}

/* Connecting or negotiating failed: forget the connection and back off. */
static void
acquire_fail (Acquire *a, GError *error)
{
  ConnMilterPool *pool = a->pool;
  GTask *task = a->task;
  gint64 wait = pool->settings->backoff_ms;

  for (guint i = 1; i < pool->failures + 1 && wait < CONN_MILTER_MAX_BACKOFF_MS; i++)
    wait *= 2;
  wait = MIN (wait, CONN_MILTER_MAX_BACKOFF_MS);
  pool->failures++;
  pool->retry_at = g_get_monotonic_time () + wait * 1000;
  vps_warning (a->conn->sid, "milter %s (%s): %s; no new connection for %" G_GINT64_FORMAT " ms",
               pool->settings->name, pool->settings->address, error->message, wait);
  a->conn->broken = TRUE;
  conn_close (pool, a->conn);
  g_prefix_error (&error, "milter %s (%s): ", pool->settings->name, pool->settings->address);
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
negotiated_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Acquire *a = data;
  ConnMilterConn *c = a->conn;
  GError *error = NULL;
  g_autoptr (GPtrArray) replies = conn_milter_conn_exchange_finish (c, res, &error);
  const MilterReplyPacket *p;
  GTask *task = a->task;

  if (replies == NULL)
    {
      g_prefix_error (&error, "negotiation: ");
      acquire_fail (a, error);
      return;
    }
  p = g_ptr_array_index (replies, replies->len - 1);
  if (p->code != MILTER_REPLY_OPTNEG)
    {
      acquire_fail (a, g_error_new (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                                    "negotiation answered with '%c' (%s)", p->code,
                                    milter_reply_name ((char)p->code) ?: "unknown"));
      return;
    }
  if (!milter_negotiate_check_answer (&a->pool->settings->offer, &p->u.optneg.options, &c->options,
                                      &error))
    {
      g_prefix_error (&error, "negotiation refused: ");
      acquire_fail (a, error);
      return;
    }
  for (guint i = 0; i < MILTER_N_STAGES; i++)
    c->symlists[i] = g_strdup (p->u.optneg.symlists[i]);
  a->pool->failures = 0;
  vps_debug (c->sid, "milter %s: negotiated version %u actions 0x%x protocol 0x%x",
             a->pool->settings->name, c->options.version, c->options.actions, c->options.protocol);
  g_task_return_pointer (task, c, NULL);
  g_object_unref (task);
}

static void
connected_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Acquire *a = data;
  ConnMilterConn *c = a->conn;
  GError *error = NULL;
  g_autoptr (GByteArray) out = g_byte_array_new ();
  GSocket *socket;

  c->connection = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), res, &error);
  if (c->connection == NULL)
    {
      acquire_fail (a, error);
      return;
    }
  socket = g_socket_connection_get_socket (c->connection);
  /* the client's timeout bounds the connect only; replies have their own */
  g_socket_set_timeout (socket, 0);
  vps_socket_set_nodelay (socket);
  milter_encode_optneg (out, &a->pool->settings->offer);
  conn_milter_conn_exchange_async (c, out, TRUE, FALSE, a->pool->settings->command_timeout_ms,
                                   g_task_get_cancellable (a->task), negotiated_cb, a);
}

typedef struct
{
  ConnMilterPool *pool;
  char *sid;
} SessionEnd;

static void
session_end_free (gpointer data)
{
  SessionEnd *e = data;

  conn_milter_pool_unref (e->pool);
  g_free (e->sid);
  g_free (e);
}

static gboolean
session_end_in_context (gpointer data)
{
  SessionEnd *e = data;
  ConnMilterConn *c = g_hash_table_lookup (e->pool->conns, e->sid);

  if (c == NULL)
    return G_SOURCE_REMOVE;
  if (c->busy)
    {
      /* cannot happen (a call holds the session), but never close under
       * a running call: it closes the connection when it ends */
      c->broken = TRUE;
      return G_SOURCE_REMOVE;
    }
  conn_close (e->pool, c);
  return G_SOURCE_REMOVE;
}

/* The session is freed (any thread): QUIT its connection on our context. */
static void
session_ended (gpointer data)
{
  SessionEnd *e = data;

  pool_invoke (e->pool, session_end_in_context, e, session_end_free);
}

void
conn_milter_pool_acquire_async (ConnMilterPool *pool, VpsSession *session,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  const char *sid = vps_session_get_id (session);
  ConnMilterConn *c;
  Acquire *a;
  gint64 now;

  g_task_set_source_tag (task, conn_milter_pool_acquire_async);
  if (pool->closed)
    {
      g_task_return_new_error (task, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                               "milter %s: connector shut down", pool->settings->name);
      g_object_unref (task);
      return;
    }
  if ((c = g_hash_table_lookup (pool->conns, sid)) != NULL)
    {
      if (c->busy)
        {
          g_task_return_new_error (task, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                                   "milter %s: called again while a call of the session runs",
                                   pool->settings->name);
          g_object_unref (task);
          return;
        }
      if (c->idle_timer != NULL)
        {
          g_source_destroy (c->idle_timer);
          g_clear_pointer (&c->idle_timer, g_source_unref);
        }
      c->busy = TRUE;
      g_task_return_pointer (task, c, NULL);
      g_object_unref (task);
      return;
    }
  now = g_get_monotonic_time ();
  if (pool->failures > 0 && now < pool->retry_at)
    {
      /* a dead milter must not hold every call for its connect timeout */
      g_task_return_new_error (task, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                               "milter %s (%s): down, next attempt in %" G_GINT64_FORMAT " ms",
                               pool->settings->name, pool->settings->address,
                               (pool->retry_at - now) / 1000);
      g_object_unref (task);
      return;
    }
  c = g_new0 (ConnMilterConn, 1);
  c->pool = pool;
  c->sid = g_strdup (sid);
  c->busy = TRUE;
  c->rcpts_sent = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  c->in = g_byte_array_new ();
  g_hash_table_insert (pool->conns, c->sid, c);
  {
    SessionEnd *e = g_new0 (SessionEnd, 1);

    e->pool = conn_milter_pool_ref (pool);
    e->sid = g_strdup (sid);
    if (!vps_session_add_end_notify (session, session_ended, e))
      session_end_free (e); /* the idle timeout closes it then */
  }
  a = g_new0 (Acquire, 1);
  a->pool = conn_milter_pool_ref (pool);
  a->conn = c;
  a->task = task;
  g_task_set_task_data (task, a, acquire_free);
  g_socket_client_connect_async (pool->client, pool->connectable, cancellable, connected_cb, a);
}

ConnMilterConn *
conn_milter_pool_acquire_finish (ConnMilterPool *pool, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
conn_milter_pool_release (ConnMilterPool *pool, ConnMilterConn *c)
{
  c->busy = FALSE;
  if (c->broken || pool->closed)
    {
      conn_close (pool, c);
      return;
    }
  if (pool->settings->idle_timeout_ms > 0)
    {
      c->idle_timer
          = g_timeout_source_new ((guint)MIN (pool->settings->idle_timeout_ms, G_MAXUINT));
      g_source_set_callback (c->idle_timer, idle_timer_cb, c, NULL);
      g_source_attach (c->idle_timer, pool->context);
    }
}

/* ---- the pool ------------------------------------------------------------- */

ConnMilterPool *
conn_milter_pool_new (ConnMilterSettings *settings, GMainContext *context)
{
  ConnMilterPool *pool = g_new0 (ConnMilterPool, 1);

  pool->ref = 1;
  pool->settings = conn_milter_settings_ref (settings);
  pool->context = g_main_context_ref (context);
  pool->client = g_socket_client_new ();
  /* a milter is always reached directly */
  g_socket_client_set_enable_proxy (pool->client, FALSE);
  g_socket_client_set_timeout (pool->client,
                               (guint)MAX (1, (settings->connect_timeout_ms + 999) / 1000));
  if (settings->path != NULL)
    pool->connectable = G_SOCKET_CONNECTABLE (g_unix_socket_address_new (settings->path));
  else
    pool->connectable = g_network_address_new (settings->host, settings->port);
  pool->conns = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)conn_free);
  return pool;
}

ConnMilterPool *
conn_milter_pool_ref (ConnMilterPool *pool)
{
  g_atomic_int_inc (&pool->ref);
  return pool;
}

void
conn_milter_pool_unref (ConnMilterPool *pool)
{
  if (pool == NULL || !g_atomic_int_dec_and_test (&pool->ref))
    return;
  /* calls and session hooks hold references: nothing runs any more */
  g_hash_table_unref (pool->conns);
  g_object_unref (pool->connectable);
  g_object_unref (pool->client);
  g_main_context_unref (pool->context);
  conn_milter_settings_unref (pool->settings);
  g_free (pool);
}

const ConnMilterSettings *
conn_milter_pool_settings (ConnMilterPool *pool)
{
  return pool->settings;
}

static gboolean
shutdown_in_context (gpointer data)
{
  ConnMilterPool *pool = data;
  GHashTableIter it;
  gpointer value;

  pool->closed = TRUE;
  g_hash_table_iter_init (&it, pool->conns);
  while (g_hash_table_iter_next (&it, NULL, &value))
    {
      ConnMilterConn *c = value;

      if (c->busy)
        continue; /* closed when its call ends */
      conn_quit (c);
      g_hash_table_iter_remove (&it);
    }
  return G_SOURCE_REMOVE;
}

void
conn_milter_pool_shutdown (ConnMilterPool *pool)
{
  pool_invoke (pool, shutdown_in_context, pool, (GDestroyNotify)conn_milter_pool_unref);
}
