/* SPDX-License-Identifier: MIT
 *
 * conn-http-loop.c — libcurl's multi interface driven by a GMainContext
 * (curl_multi_socket_action with one GSource per socket and one timer),
 * so HTTP calls never block a worker's event loop and need no thread.
 *
 * Why the socket interface and not easy handles in a thread pool: a call
 * costs a few file-descriptor sources instead of a blocked thread, the
 * multi handle's connection cache gives keep-alive reuse for every call of
 * the context, and cancellation is a curl_multi_remove_handle on the same
 * thread.  Name resolution uses curl's threaded resolver, which the multi
 * interface waits for through the same sockets/timer.
 *
 * Contract: one loop per main context (conn-http.c keeps the map).  Every
 * function here runs on that context.  A request completes exactly once:
 * done (curl finished), or cancelled (the GCancellable's source fired
 * first); whichever comes second finds the request already detached.
 * Completions are collected and returned after curl has returned, never
 * from inside a curl callback, so a caller may start a new request from its
 * callback.
 */
#include "connectors/http/conn-http-private.h"

#include <glib-unix.h>
#include <string.h>

struct _ConnHttpLoop
{
  GMainContext *context;
  CURLM *multi;
  GSource *timer;
  GHashTable *sockets; /* fd → GSource*, owned */
};

typedef struct
{
  ConnHttpLoop *loop;
  ConnHttpSettings *settings;
  CURL *easy;
  struct curl_slist *headers;
  GBytes *body;
  GByteArray *reply;
  gboolean too_large;
  gboolean active; /* added to the multi handle */
  GSource *cancel_source;
  GTask *task;
  glong status;
  char errbuf[CURL_ERROR_SIZE];
} Request;

static void
request_free (gpointer data)
{
  Request *req = data;

  if (req->cancel_source != NULL)
    {
      g_source_destroy (req->cancel_source);
      g_source_unref (req->cancel_source);
    }
  if (req->easy != NULL)
    curl_easy_cleanup (req->easy);
  curl_slist_free_all (req->headers);
  g_bytes_unref (req->body);
  g_byte_array_unref (req->reply);
  conn_http_settings_unref (req->settings);
  conn_http_loop_unref (req->loop);
  g_free (req);
}

/* ---- the loop -------------------------------------------------------------- */

static void loop_collect (ConnHttpLoop *loop);

static gboolean
socket_ready (gint fd, GIOCondition cond, gpointer data)
{
  ConnHttpLoop *loop = data;
  int action = 0;
  int running = 0;

  if (cond & (G_IO_IN | G_IO_HUP))
    action |= CURL_CSELECT_IN;
  if (cond & G_IO_OUT)
    action |= CURL_CSELECT_OUT;
  if (cond & G_IO_ERR)
    action |= CURL_CSELECT_ERR;
  curl_multi_socket_action (loop->multi, fd, action, &running);
  loop_collect (loop);
  return G_SOURCE_CONTINUE;
}

static int
socket_cb (CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
  ConnHttpLoop *loop = userp;
  GIOCondition cond = 0;
  GSource *src;

  /* a changed interest is a new source: g_unix_fd_source has no setter */
  g_hash_table_remove (loop->sockets, GINT_TO_POINTER (fd));
  if (what == CURL_POLL_REMOVE)
    return 0;
  if (what & CURL_POLL_IN)
    cond |= G_IO_IN;
  if (what & CURL_POLL_OUT)
    cond |= G_IO_OUT;
  src = g_unix_fd_source_new (fd, cond);
  g_source_set_callback (src, G_SOURCE_FUNC (socket_ready), loop, NULL);
  g_source_attach (src, loop->context);
  g_hash_table_insert (loop->sockets, GINT_TO_POINTER (fd), src);
  return 0;
}

static gboolean
timer_fired (gpointer data)
{
  ConnHttpLoop *loop = data;
  int running = 0;

  /* the source being dispatched is removed by returning REMOVE; curl may
   * install the next timer from inside socket_action */
  g_clear_pointer (&loop->timer, g_source_unref);
  curl_multi_socket_action (loop->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  loop_collect (loop);
  return G_SOURCE_REMOVE;
}

static int
timer_cb (CURLM *multi, long timeout_ms, void *userp)
{
  ConnHttpLoop *loop = userp;

  if (loop->timer != NULL)
    {
      g_source_destroy (loop->timer);
      g_clear_pointer (&loop->timer, g_source_unref);
    }
  if (timeout_ms < 0)
    return 0;
  loop->timer = g_timeout_source_new ((guint)MIN (timeout_ms, (long)G_MAXUINT));
  g_source_set_callback (loop->timer, timer_fired, loop, NULL);
  g_source_attach (loop->timer, loop->context);
  return 0;
}

static void
destroy_source (gpointer data)
{
  g_source_destroy (data);
  g_source_unref (data);
}

ConnHttpLoop *
conn_http_loop_new (GMainContext *context)
{
  ConnHttpLoop *loop = g_atomic_rc_box_new0 (ConnHttpLoop);

  loop->context = g_main_context_ref (context);
  loop->sockets = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, destroy_source);
  loop->multi = curl_multi_init ();
  curl_multi_setopt (loop->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt (loop->multi, CURLMOPT_SOCKETDATA, loop);
  curl_multi_setopt (loop->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt (loop->multi, CURLMOPT_TIMERDATA, loop);
  return loop;
}

ConnHttpLoop *
conn_http_loop_ref (ConnHttpLoop *loop)
{
  return g_atomic_rc_box_acquire (loop);
}

static void
loop_clear (gpointer data)
{
  ConnHttpLoop *loop = data;

  /* cleanup may still call socket_cb for the cached connections */
  if (loop->multi != NULL)
    curl_multi_cleanup (loop->multi);
  g_hash_table_unref (loop->sockets);
  if (loop->timer != NULL)
    {
      g_source_destroy (loop->timer);
      g_source_unref (loop->timer);
    }
  g_main_context_unref (loop->context);
}

void
conn_http_loop_unref (ConnHttpLoop *loop)
{
  if (loop != NULL)
    g_atomic_rc_box_release_full (loop, loop_clear);
}

static gboolean
shutdown_in_context (gpointer data)
{
  ConnHttpLoop *loop = data;

  /* no request is in flight (each holds the connector): only the idle
   * connections of the cache remain, closed here on their own context */
  curl_multi_cleanup (loop->multi);
  loop->multi = NULL;
  g_hash_table_remove_all (loop->sockets);
  return G_SOURCE_REMOVE;
}

void
conn_http_loop_shutdown (ConnHttpLoop *loop)
{
  g_main_context_invoke_full (loop->context, G_PRIORITY_DEFAULT, shutdown_in_context, loop,
                              (GDestroyNotify)conn_http_loop_unref);
}

/* ---- requests -------------------------------------------------------------- */

static size_t
write_cb (char *ptr, size_t size, size_t nmemb, void *userdata)
{
  Request *req = userdata;
  gsize n = size * nmemb;

  /* checked before storing: a huge reply costs at most max_reply_size */
  if (n > req->settings->max_reply_size - MIN (req->reply->len, req->settings->max_reply_size))
    {
      req->too_large = TRUE;
      return 0; /* CURLE_WRITE_ERROR */
    }
  g_byte_array_append (req->reply, (const guint8 *)ptr, (guint)n);
  return n;
}

static void
request_return (Request *req, CURLcode code)
{
  g_autoptr (GTask) task = g_steal_pointer (&req->task);
  const ConnHttpSettings *s = req->settings;

  curl_easy_getinfo (req->easy, CURLINFO_RESPONSE_CODE, &req->status);
  if (req->too_large || code == CURLE_FILESIZE_EXCEEDED)
    g_task_return_new_error (task, CONN_HTTP_ERROR, CONN_HTTP_ERROR_TOO_LARGE,
                             "http %s: reply larger than max_reply_size (%" G_GUINT64_FORMAT
                             " bytes)",
                             s->name, s->max_reply_size);
  else if (code == CURLE_OPERATION_TIMEDOUT)
    g_task_return_new_error (task, CONN_HTTP_ERROR, CONN_HTTP_ERROR_TIMEOUT, "http %s: %s", s->name,
                             req->errbuf[0] ? req->errbuf : curl_easy_strerror (code));
  else if (code != CURLE_OK)
    g_task_return_new_error (task, CONN_HTTP_ERROR, CONN_HTTP_ERROR_TRANSPORT, "http %s: %s",
                             s->name, req->errbuf[0] ? req->errbuf : curl_easy_strerror (code));
  else if (req->status < 200 || req->status > 299)
    g_task_return_new_error (task, CONN_HTTP_ERROR, CONN_HTTP_ERROR_STATUS,
                             "http %s: HTTP status %ld", s->name, req->status);
  else
    g_task_return_pointer (task, g_byte_array_free_to_bytes (g_steal_pointer (&req->reply)),
                           (GDestroyNotify)g_bytes_unref);
}

/* Hand every finished transfer back, after curl has returned. */
static void
loop_collect (ConnHttpLoop *loop)
{
  g_autoptr (GPtrArray) done = g_ptr_array_new ();
  g_autoptr (GArray) codes = g_array_new (FALSE, FALSE, sizeof (CURLcode));
  CURLMsg *msg;
  int left;

  while ((msg = curl_multi_info_read (loop->multi, &left)) != NULL)
    {
      char *priv = NULL;
      Request *req;
      CURLcode code = msg->data.result;
      CURL *easy = msg->easy_handle;

      if (msg->msg != CURLMSG_DONE)
        continue;
      curl_easy_getinfo (easy, CURLINFO_PRIVATE, &priv);
      req = (Request *)priv;
      /* msg is invalid after this */
      curl_multi_remove_handle (loop->multi, easy);
      req->active = FALSE;
      g_ptr_array_add (done, req);
      g_array_append_val (codes, code);
    }
  for (guint i = 0; i < done->len; i++)
    request_return (done->pdata[i], g_array_index (codes, CURLcode, i));
}

static gboolean
request_cancelled (GCancellable *cancellable, gpointer data)
{
  GTask *task = data;
  Request *req = g_task_get_task_data (task);

  if (req->active)
    {
      curl_multi_remove_handle (req->loop->multi, req->easy);
      req->active = FALSE;
    }
  if (req->task != NULL)
    {
      g_autoptr (GTask) own = g_steal_pointer (&req->task);
      g_task_return_new_error (own, G_IO_ERROR, G_IO_ERROR_CANCELLED, "http %s: cancelled",
                               req->settings->name);
    }
  return G_SOURCE_REMOVE;
}

static void
easy_setup (Request *req, gint64 timeout_ms)
{
  const ConnHttpSettings *s = req->settings;
  CURL *e = req->easy;
  gsize len = 0;
  gconstpointer data = g_bytes_get_data (req->body, &len);

  curl_easy_setopt (e, CURLOPT_URL, s->url);
  curl_easy_setopt (e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (e, CURLOPT_PRIVATE, req);
  curl_easy_setopt (e, CURLOPT_ERRORBUFFER, req->errbuf);
  curl_easy_setopt (e, CURLOPT_POST, 1L);
  curl_easy_setopt (e, CURLOPT_POSTFIELDS, data != NULL ? data : "");
  curl_easy_setopt (e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  /* "Expect:" off: curl would wait up to 1 s for a 100 Continue on big bodies */
  req->headers = curl_slist_append (req->headers, "Expect:");
  curl_easy_setopt (e, CURLOPT_HTTPHEADER, req->headers);
  curl_easy_setopt (e, CURLOPT_USERAGENT, s->user_agent);
  curl_easy_setopt (e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt (e, CURLOPT_WRITEDATA, req);
  curl_easy_setopt (e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)s->max_reply_size);
  curl_easy_setopt (e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt (e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt (e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (s->ca_file != NULL)
    curl_easy_setopt (e, CURLOPT_CAINFO, s->ca_file);
  if (s->cert != NULL)
    curl_easy_setopt (e, CURLOPT_SSLCERT, s->cert);
  if (s->key != NULL)
    curl_easy_setopt (e, CURLOPT_SSLKEY, s->key);
  if (timeout_ms > 0)
    {
      curl_easy_setopt (e, CURLOPT_TIMEOUT_MS, (long)MIN (timeout_ms, G_MAXLONG));
      curl_easy_setopt (e, CURLOPT_CONNECTTIMEOUT_MS,
                        (long)MIN (timeout_ms, CONN_HTTP_DEFAULT_CONNECT_MS));
    }
  else
    curl_easy_setopt (e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONN_HTTP_DEFAULT_CONNECT_MS);
}

void
conn_http_loop_post_async (ConnHttpLoop *loop, ConnHttpSettings *settings, GBytes *body,
                           struct curl_slist *headers, gint64 timeout_ms, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Request *req = g_new0 (Request, 1);
  CURLMcode mc;

  g_task_set_source_tag (task, conn_http_loop_post_async);
  req->loop = conn_http_loop_ref (loop);
  req->settings = conn_http_settings_ref (settings);
  req->headers = headers;
  req->body = body != NULL ? g_bytes_ref (body) : g_bytes_new (NULL, 0);
  req->reply = g_byte_array_new ();
  req->easy = curl_easy_init ();
  /* the task owns the request; req->task is the one reference that returns */
  g_task_set_task_data (task, req, request_free);
  req->task = task;
  if (req->easy == NULL)
    {
      g_task_return_new_error (g_steal_pointer (&req->task), CONN_HTTP_ERROR,
                               CONN_HTTP_ERROR_TRANSPORT, "http %s: curl_easy_init failed",
                               settings->name);
      g_object_unref (task);
      return;
    }
  easy_setup (req, timeout_ms);
  if (g_task_return_error_if_cancelled (task))
    {
      req->task = NULL;
      g_object_unref (task);
      return;
    }
  if (cancellable != NULL)
    {
      req->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (req->cancel_source, G_SOURCE_FUNC (request_cancelled), task, NULL);
      g_source_attach (req->cancel_source, loop->context);
    }
  mc = curl_multi_add_handle (loop->multi, req->easy);
  if (mc != CURLM_OK)
    {
      g_task_return_new_error (g_steal_pointer (&req->task), CONN_HTTP_ERROR,
                               CONN_HTTP_ERROR_TRANSPORT, "http %s: %s", settings->name,
                               curl_multi_strerror (mc));
      g_object_unref (task);
      return;
    }
  req->active = TRUE;
  /* req->task's reference is dropped in request_return/request_cancelled */
}

GBytes *
conn_http_loop_post_finish (ConnHttpLoop *loop, GAsyncResult *result, glong *status, GError **error)
{
  Request *req;

  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  req = g_task_get_task_data (G_TASK (result));
  if (status != NULL)
    *status = req->status;
  return g_task_propagate_pointer (G_TASK (result), error);
}
