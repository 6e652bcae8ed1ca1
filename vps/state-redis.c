/* SPDX-License-Identifier: MIT
 *
 * state-redis.c — the Redis state backend: several vpsd instances share
 * counters through one Redis 7.
 *
 * Contract: one "vps-state" thread runs its own GMainContext and a pool of
 * [state] connections non-blocking sockets (GIO) whose bytes hiredis formats
 * (redisFormatCommandArgv) and parses (redisReader).  A batch is formatted on
 * the caller's thread, handed to the state thread, written in one piece and
 * answered in one round trip; batches may queue behind each other on a
 * connection (Redis answers in order).  Every batch fails with
 * VPS_STATE_ERROR_UNAVAILABLE at its deadline ([state] timeout after the
 * call) if no answer came; the connection it was sent on is then closed so
 * its late replies can never be taken for another batch's.  Connections are
 * opened lazily, when a batch needs one; while none works, one probe at a
 * time and at most one per back-off period (1 s doubling to 4 s), so a down
 * Redis costs at most one refused connect a second and batches fail at once.  A down Redis is logged
 * at most once a minute.  Password: AUTH, then PING, before the first batch.
 *
 * The commands and what their replies mean are state-redis-cmd.c's.
 */
#include "vps/state-private.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include <gio/gunixsocketaddress.h>
#include <hiredis/hiredis.h>

#include "vps/log.h"

/* Bytes read from a socket at a time. */
#define READ_CHUNK 16384

typedef enum
{
  CONN_DOWN,
  CONN_CONNECTING, /* TCP connect, then AUTH and PING */
  CONN_READY,
} ConnStatus;

typedef struct _Redis Redis;

typedef struct
{
  Redis *r;
  ConnStatus status;
  guint gen; /* bumped when the connection closes: stale callbacks stop */
  GSocketConnection *conn;
  GSocket *sock;
  GSource *in_source, *out_source, *timer;
  GCancellable *connect_cancel; /* non-NULL while GIO connects */
  gboolean connect_timed_out;
  gint64 connect_started, connect_deadline, next_attempt; /* µs */
  gint64 backoff_ms;
  redisReader *reader;
  GByteArray *out;
  gsize out_off;
  guint handshake; /* AUTH/PING replies expected before batch replies */
  GQueue pending;  /* batches waiting for CONN_READY */
  GQueue inflight; /* batches written, in reply order */
} Conn;

struct _Redis
{
  char *address;
  char *password;
  gint64 timeout_ms, connect_timeout_ms;
  GSocketConnectable *connectable;
  Conn *conns;
  guint n_conns;
  GMainContext *ctx;
  GMainLoop *loop;
  GThread *thread;
  gboolean stopping; /* state thread */
  guint connecting;  /* GIO connects in flight (state thread) */
  char *last_error;  /* state thread */
  gboolean down_logged;
  gint64 retry_at; /* µs: no new probe before (while none is ready) */
  guint64 nonce;
  guint64 seq; /* atomic */
};

static void conn_arm (Conn *c);

/* ---- batches (the commands and replies: state-redis-cmd.c) ---------------- */

static void
redis_prepare (gpointer backend, VpsStateBatch *batch, const VpsStateOp *ops)
{
  Redis *r = backend;

  vps_state_redis_format (batch, ops, r->nonce, &r->seq);
}

/* ---- connections (state thread) ------------------------------------------ */

static void
fail_all (GQueue *q, gint code, const char *msg)
{
  VpsStateBatch *batch;

  while ((batch = g_queue_pop_head (q)) != NULL)
    {
      vps_state_batch_complete (batch, g_error_new_literal (VPS_STATE_ERROR, code, msg));
      vps_state_batch_unref (batch);
    }
}

static void
note_down (Redis *r, const char *msg)
{
  g_autofree char *key = g_strconcat ("vps-state-redis:", r->address, NULL);

  g_free (r->last_error);
  r->last_error = g_strdup (msg);
  if (vps_log_once (key, VPS_STATE_REDIS_LOG_INTERVAL_S, G_LOG_LEVEL_WARNING, NULL,
                    "state: %s; rules that need it get their on_error behaviour", msg))
    r->down_logged = TRUE;
}

/* Close the connection and fail every batch on it with `code`: a batch
 * written there may have its replies still on the way, and they must never
 * be read as another batch's. */
static void
conn_close (Conn *c, gint code, const char *msg)
{
  Redis *r = c->r;
  gboolean was_ready = c->status == CONN_READY;

  c->gen++;
  if (c->in_source != NULL)
    g_source_destroy (c->in_source);
  if (c->out_source != NULL)
    g_source_destroy (c->out_source);
  g_clear_pointer (&c->in_source, g_source_unref);
  g_clear_pointer (&c->out_source, g_source_unref);
  if (c->connect_cancel != NULL)
    g_cancellable_cancel (c->connect_cancel);
  g_clear_object (&c->connect_cancel);
  if (c->conn != NULL)
    g_io_stream_close (G_IO_STREAM (c->conn), NULL, NULL);
  g_clear_object (&c->conn);
  c->sock = NULL;
  g_clear_pointer (&c->reader, redisReaderFree);
  g_clear_pointer (&c->out, g_byte_array_unref);
  c->out_off = 0;
  c->handshake = 0;
  c->status = CONN_DOWN;
  /* A connection that worked may be reopened at once; one that never got
   * ready waits, longer each time, so a down Redis costs nothing. */
  if (was_ready)
    c->backoff_ms = 0;
  else
    c->backoff_ms
        = CLAMP (c->backoff_ms * 2, VPS_STATE_REDIS_BACKOFF_MIN_MS, VPS_STATE_REDIS_BACKOFF_MAX_MS);
  c->next_attempt = c->connect_started + c->backoff_ms * 1000;
  if (!was_ready)
    r->retry_at = c->next_attempt;
  if (msg != NULL && !r->stopping)
    note_down (r, msg);
  fail_all (&c->inflight, code, msg != NULL ? msg : "shutting down");
  fail_all (&c->pending, code, msg != NULL ? msg : "shutting down");
  conn_arm (c);
}

static gboolean on_writable (GSocket *sock, GIOCondition cond, gpointer p);

static void
conn_flush (Conn *c)
{
  while (c->out_off < c->out->len)
    {
      g_autoptr (GError) error = NULL;
      gssize n = g_socket_send (c->sock, (const char *)c->out->data + c->out_off,
                                c->out->len - c->out_off, NULL, &error);

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          if (c->out_source == NULL)
            {
              c->out_source = g_socket_create_source (c->sock, G_IO_OUT, NULL);
              g_source_set_callback (c->out_source, G_SOURCE_FUNC (on_writable), c, NULL);
              g_source_attach (c->out_source, c->r->ctx);
            }
          return;
        }
      if (n < 0)
        {
          g_autofree char *msg
              = g_strdup_printf ("Redis at %s: write failed: %s", c->r->address, error->message);

          conn_close (c, VPS_STATE_ERROR_UNAVAILABLE, msg);
          return;
        }
      c->out_off += (gsize)n;
    }
  g_byte_array_set_size (c->out, 0);
  c->out_off = 0;
  if (c->out_source != NULL)
    {
      g_source_destroy (c->out_source);
      g_clear_pointer (&c->out_source, g_source_unref);
    }
}

static gboolean
on_writable (GSocket *sock, GIOCondition cond, gpointer p)
{
  Conn *c = p;

  /* conn_flush() destroys this source when all is written. */
  conn_flush (c);
  return G_SOURCE_CONTINUE;
}

/* Queue a batch's commands behind what is in flight (Redis answers in order). */
static void
conn_write (Conn *c, VpsStateBatch *batch)
{
  g_byte_array_append (c->out, batch->wire->data, batch->wire->len);
  g_queue_push_tail (&c->inflight, batch);
}

static void
conn_ready (Conn *c)
{
  Redis *r = c->r;
  VpsStateBatch *batch;

  c->status = CONN_READY;
  c->backoff_ms = 0;
  r->retry_at = 0;
  if (r->down_logged)
    {
      vps_notice (NULL, "state: Redis at %s answers again", r->address);
      r->down_logged = FALSE;
    }
  while ((batch = g_queue_pop_head (&c->pending)) != NULL)
    conn_write (c, batch);
  conn_flush (c);
  conn_arm (c);
}

static void
handshake_reply (Conn *c, const redisReply *reply)
{
  if (reply->type == REDIS_REPLY_ERROR)
    {
      g_autoptr (GError) error = vps_state_redis_error (c->r->address, reply->str);

      conn_close (c, VPS_STATE_ERROR_UNAVAILABLE, error->message);
      return;
    }
  if (--c->handshake == 0)
    conn_ready (c);
}

static void
batch_reply (Conn *c, const redisReply *reply)
{
  VpsStateBatch *batch = g_queue_peek_head (&c->inflight);
  GError *error = NULL;

  if (batch == NULL)
    {
      g_autofree char *msg
          = g_strdup_printf ("Redis at %s: a reply nobody asked for", c->r->address);

      conn_close (c, VPS_STATE_ERROR_PROTOCOL, msg);
      return;
    }
  /* Every reply is read, even after an error, to stay in step. */
  if (!vps_state_redis_take (c->r->address, batch, batch->replies, reply, &error)
      && batch->reply_error == NULL)
    batch->reply_error = error;
  else
    g_clear_error (&error);
  if (++batch->replies < batch->n)
    return;
  g_queue_pop_head (&c->inflight);
  vps_state_batch_complete (batch, g_steal_pointer (&batch->reply_error));
  vps_state_batch_unref (batch);
  conn_arm (c);
}

static gboolean
on_readable (GSocket *sock, GIOCondition cond, gpointer p)
{
  Conn *c = p;
  guint gen = c->gen;
  char buf[READ_CHUNK];
  g_autoptr (GError) error = NULL;
  gssize n = g_socket_receive (sock, buf, sizeof buf, NULL, &error);
  void *reply = NULL;

  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  if (n <= 0)
    {
      g_autofree char *msg
          = n == 0
                ? g_strdup_printf ("Redis at %s closed the connection", c->r->address)
                : g_strdup_printf ("Redis at %s: read failed: %s", c->r->address, error->message);

      conn_close (c, VPS_STATE_ERROR_UNAVAILABLE, msg);
      return G_SOURCE_REMOVE;
    }
  redisReaderFeed (c->reader, buf, (size_t)n);
  while (c->gen == gen)
    {
      if (redisReaderGetReply (c->reader, &reply) != REDIS_OK)
        {
          g_autofree char *msg = g_strdup_printf ("Redis at %s: protocol error: %s", c->r->address,
                                                  c->reader->errstr);

          conn_close (c, VPS_STATE_ERROR_PROTOCOL, msg);
          break;
        }
      if (reply == NULL)
        {
          /* Our replies are small: a peer that sends more is no Redis of ours. */
          if (c->reader->len - c->reader->pos > VPS_STATE_REDIS_MAX_BUFFER)
            {
              g_autofree char *msg = g_strdup_printf ("Redis at %s: reply larger than %d bytes",
                                                      c->r->address, VPS_STATE_REDIS_MAX_BUFFER);

              conn_close (c, VPS_STATE_ERROR_PROTOCOL, msg);
            }
          break;
        }
      if (c->handshake > 0)
        handshake_reply (c, reply);
      else
        batch_reply (c, reply);
      freeReplyObject (reply);
    }
  return c->gen == gen ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* One connect attempt: its callback may come after the connection was
 * closed (and gen bumped); then it is stale and only cleans up. */
typedef struct
{
  Conn *c;
  guint gen;
} Attempt;

static void
on_connected (GObject *source, GAsyncResult *res, gpointer p)
{
  g_autofree Attempt *a = p;
  Conn *c = a->c;
  Redis *r = c->r;
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnection) conn
      = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), res, &error);

  r->connecting--;
  if (r->stopping || a->gen != c->gen || c->status != CONN_CONNECTING)
    return;
  g_clear_object (&c->connect_cancel);
  if (conn == NULL)
    {
      g_autofree char *msg
          = c->connect_timed_out
                ? g_strdup_printf ("Redis at %s: no connection within %" G_GINT64_FORMAT " ms",
                                   r->address, r->connect_timeout_ms)
                : g_strdup_printf ("Redis at %s: %s", r->address, error->message);

      conn_close (c, VPS_STATE_ERROR_UNAVAILABLE, msg);
      return;
    }
  c->conn = g_steal_pointer (&conn);
  c->sock = g_socket_connection_get_socket (c->conn);
  g_socket_set_blocking (c->sock, FALSE);
  /* Pipelined batches are small writes that must leave at once. */
  if (g_socket_get_family (c->sock) != G_SOCKET_FAMILY_UNIX)
    g_socket_set_option (c->sock, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  c->reader = redisReaderCreate ();
  c->out = g_byte_array_new ();
  if (r->password != NULL)
    {
      vps_state_redis_append (c->out, 2, (const char *[]){ "AUTH", r->password });
      c->handshake++;
    }
  /* PING proves a live server before any batch waits on it. */
  vps_state_redis_append (c->out, 1, (const char *[]){ "PING" });
  c->handshake++;
  c->in_source = g_socket_create_source (c->sock, G_IO_IN, NULL);
  g_source_set_callback (c->in_source, G_SOURCE_FUNC (on_readable), c, NULL);
  g_source_attach (c->in_source, r->ctx);
  conn_flush (c);
}

static void
conn_connect (Conn *c, gint64 now)
{
  Redis *r = c->r;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  Attempt *a = g_new (Attempt, 1);

  c->status = CONN_CONNECTING;
  c->connect_started = now;
  c->connect_deadline = now + r->connect_timeout_ms * 1000;
  c->connect_timed_out = FALSE;
  c->connect_cancel = g_cancellable_new ();
  /* Redis is reached directly: no proxy lookup on the way. */
  g_socket_client_set_enable_proxy (client, FALSE);
  r->connecting++;
  a->c = c;
  a->gen = c->gen;
  g_socket_client_connect_async (client, r->connectable, c->connect_cancel, on_connected, a);
  conn_arm (c);
}

/* ---- deadlines ------------------------------------------------------------ */

static void
conn_arm (Conn *c)
{
  gint64 t = G_MAXINT64;
  VpsStateBatch *head = g_queue_peek_head (&c->inflight);

  /* Once a connect timed out, its cancelled callback closes it. */
  if (c->status == CONN_CONNECTING && !c->connect_timed_out)
    t = c->connect_deadline;
  if (head != NULL)
    t = MIN (t, head->deadline_us);
  for (GList *l = c->pending.head; l != NULL; l = l->next)
    t = MIN (t, ((VpsStateBatch *)l->data)->deadline_us);
  g_source_set_ready_time (c->timer, t == G_MAXINT64 ? -1 : t);
}

static gboolean
on_timer (gpointer p)
{
  Conn *c = p;
  Redis *r = c->r;
  gint64 now = g_get_monotonic_time ();
  VpsStateBatch *head = g_queue_peek_head (&c->inflight);
  GList *l, *next;

  if (head != NULL && head->deadline_us <= now)
    {
      g_autofree char *msg = g_strdup_printf (
          "Redis at %s: no answer within %" G_GINT64_FORMAT " ms", r->address, r->timeout_ms);

      conn_close (c, VPS_STATE_ERROR_UNAVAILABLE, msg);
      return G_SOURCE_CONTINUE;
    }
  if (c->status == CONN_CONNECTING && c->connect_deadline <= now)
    {
      if (c->conn == NULL)
        {
          /* GIO reports the cancelled connect to on_connected. */
          c->connect_timed_out = TRUE;
          g_cancellable_cancel (c->connect_cancel);
          conn_arm (c);
        }
      else
        {
          g_autofree char *msg = g_strdup_printf (
              "Redis at %s: no answer to PING/AUTH within %" G_GINT64_FORMAT " ms", r->address,
              r->connect_timeout_ms);

          conn_close (c, VPS_STATE_ERROR_UNAVAILABLE, msg);
        }
      return G_SOURCE_CONTINUE;
    }
  for (l = c->pending.head; l != NULL; l = next)
    {
      VpsStateBatch *batch = l->data;

      next = l->next;
      if (batch->deadline_us > now && !vps_state_batch_is_done (batch))
        continue;
      g_queue_delete_link (&c->pending, l);
      vps_state_batch_complete (
          batch, g_error_new (VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE,
                              "Redis at %s: no connection within %" G_GINT64_FORMAT " ms",
                              r->address, r->timeout_ms));
      vps_state_batch_unref (batch);
    }
  conn_arm (c);
  return G_SOURCE_CONTINUE;
}

static gboolean
timer_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  g_source_set_ready_time (source, -1);
  return callback (user_data);
}

static GSourceFuncs timer_funcs = { .dispatch = timer_dispatch };

/* ---- submission (state thread) ---------------------------------------------- */

/* An idle ready connection; else a connection that may be opened now; else
 * the least busy ready or connecting one; NULL when all are down. */
static Conn *
pick (Redis *r, gint64 now, GError **error)
{
  Conn *best = NULL, *opening = NULL;

  for (guint i = 0; i < r->n_conns; i++)
    {
      Conn *c = &r->conns[i];

      if (c->status == CONN_READY && (best == NULL || c->inflight.length < best->inflight.length))
        best = c;
    }
  if (best != NULL && best->inflight.length == 0)
    return best;
  for (guint i = 0; i < r->n_conns; i++)
    {
      Conn *c = &r->conns[i];

      if (c->status == CONN_CONNECTING
          && (opening == NULL || c->pending.length < opening->pending.length))
        opening = c;
    }
  /* While no connection works, one probe at a time and none before the
   * back-off of the last failure: a down Redis sees one connect per
   * period, not one per pooled connection. */
  if (best != NULL || (opening == NULL && now >= r->retry_at))
    for (guint i = 0; i < r->n_conns; i++)
      {
        Conn *c = &r->conns[i];

        if (c->status == CONN_DOWN && now >= c->next_attempt)
          {
            conn_connect (c, now);
            return c;
          }
      }
  if (best != NULL && best->inflight.length < VPS_STATE_REDIS_MAX_QUEUED)
    return best;
  if (opening != NULL && opening->pending.length < VPS_STATE_REDIS_MAX_QUEUED)
    return opening;
  if (best != NULL || opening != NULL)
    g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE,
                 "Redis at %s: every connection has %d batches queued", r->address,
                 VPS_STATE_REDIS_MAX_QUEUED);
  else
    g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE, "%s (not retried yet)",
                 r->last_error != NULL ? r->last_error : "Redis is down");
  return NULL;
}

static gboolean
submit_in_thread (gpointer p)
{
  VpsStateBatch *batch = p;
  Redis *r = batch->backend;
  GError *error = NULL;
  Conn *c;

  if (vps_state_batch_is_done (batch) || r->stopping)
    return G_SOURCE_REMOVE;
  c = pick (r, g_get_monotonic_time (), &error);
  if (c == NULL)
    {
      vps_state_batch_complete (batch, error);
      return G_SOURCE_REMOVE;
    }
  if (c->status == CONN_READY)
    {
      conn_write (c, vps_state_batch_ref (batch));
      conn_flush (c);
    }
  else
    g_queue_push_tail (&c->pending, vps_state_batch_ref (batch));
  /* conn_flush() may have closed the connection and failed the batch. */
  conn_arm (c);
  return G_SOURCE_REMOVE;
}

static void
redis_submit (gpointer backend, VpsStateBatch *batch, const VpsStateOp *ops)
{
  Redis *r = backend;

  g_main_context_invoke_full (r->ctx, G_PRIORITY_DEFAULT, submit_in_thread,
                              vps_state_batch_ref (batch), (GDestroyNotify)vps_state_batch_unref);
}

/* ---- the state thread ----------------------------------------------------- */

static gpointer
state_thread (gpointer p)
{
  Redis *r = p;

  g_main_context_push_thread_default (r->ctx);
  g_main_loop_run (r->loop);
  /* Let cancelled connects report back, so none outlives us. */
  while (r->connecting > 0)
    g_main_context_iteration (r->ctx, TRUE);
  g_main_context_pop_thread_default (r->ctx);
  return NULL;
}

static gboolean
stop_in_thread (gpointer p)
{
  Redis *r = p;

  r->stopping = TRUE;
  for (guint i = 0; i < r->n_conns; i++)
    {
      conn_close (&r->conns[i], VPS_STATE_ERROR_UNAVAILABLE, NULL);
      g_source_destroy (r->conns[i].timer);
    }
  g_main_loop_quit (r->loop);
  return G_SOURCE_REMOVE;
}

gpointer
vps_state_redis_new (const VpsStateRedisConfig *config, GError **error)
{
  g_autoptr (GSocketConnectable) connectable = NULL;
  Redis *r;

  g_return_val_if_fail (config != NULL && config->address != NULL, NULL);
  if (g_str_has_prefix (config->address, "unix:"))
    connectable = G_SOCKET_CONNECTABLE (g_unix_socket_address_new (config->address + 5));
  else
    {
      g_autoptr (GError) local = NULL;

      connectable = g_network_address_parse (config->address, 6379, &local);
      if (connectable == NULL)
        {
          g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_CONFIG, "Redis address %s: %s",
                       config->address, local->message);
          return NULL;
        }
    }
  r = g_new0 (Redis, 1);
  r->address = g_strdup (config->address);
  r->password = config->password != NULL && config->password[0] != '\0'
                    ? g_strdup (config->password)
                    : NULL;
  r->timeout_ms = MAX (config->timeout_ms, 1);
  r->connect_timeout_ms = MAX (config->connect_timeout_ms, 1);
  r->connectable = g_steal_pointer (&connectable);
  r->nonce = ((guint64)g_random_int () << 32) | g_random_int ();
  r->n_conns = CLAMP (config->connections, 1, 64);
  r->conns = g_new0 (Conn, r->n_conns);
  r->ctx = g_main_context_new ();
  r->loop = g_main_loop_new (r->ctx, FALSE);
  for (guint i = 0; i < r->n_conns; i++)
    {
      Conn *c = &r->conns[i];

      c->r = r;
      g_queue_init (&c->pending);
      g_queue_init (&c->inflight);
      c->timer = g_source_new (&timer_funcs, sizeof (GSource));
      g_source_set_static_name (c->timer, "vps-state-deadline");
      g_source_set_callback (c->timer, on_timer, c, NULL);
      g_source_attach (c->timer, r->ctx);
    }
  r->thread = g_thread_new ("vps-state", state_thread, r);
  return r;
}

static void
redis_free (gpointer backend)
{
  Redis *r = backend;

  g_main_context_invoke (r->ctx, stop_in_thread, r);
  g_thread_join (r->thread);
  for (guint i = 0; i < r->n_conns; i++)
    g_source_unref (r->conns[i].timer);
  g_free (r->conns);
  g_main_loop_unref (r->loop);
  g_main_context_unref (r->ctx);
  g_object_unref (r->connectable);
  g_free (r->address);
  g_free (r->password);
  g_free (r->last_error);
  g_free (r);
}

const VpsStateBackendClass vps_state_redis_class = {
  .name = "redis",
  .exec_try = NULL,
  .prepare = redis_prepare,
  .submit = redis_submit,
  .stats = NULL,
  .free = redis_free,
};
