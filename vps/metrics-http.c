/* SPDX-License-Identifier: MIT
 *
 * metrics-http.c — the metrics and health endpoint: a minimal HTTP/1.1
 * server on the daemon's main loop (see metrics.h for the contract).
 *
 * Only what a Prometheus scraper, a load balancer's health check and curl
 * send is understood: one GET per connection, origin-form target, headers
 * read and ignored.  The answer always closes the connection, so there is
 * no keep-alive, chunking or pipelining to get wrong.  Every resource a
 * peer can make us spend is bounded: the request head
 * (VPS_METRICS_MAX_REQUEST, read into a fixed buffer), the time
 * (VPS_METRICS_TIMEOUT_MS for the whole exchange, then the connection is
 * dropped) and the connections (VPS_METRICS_MAX_CLIENTS).
 *
 * It runs on the main loop rather than on a worker: a scrape must answer
 * while the workers are saturated, and it reads the daemon's state through
 * the same thread-safe accessors as everything else.
 */
#include "vps/metrics.h"

#include <string.h>

#include "vps/log.h"

typedef struct
{
  VpsMetricsCollectFunc func;
  gpointer data;
} Collector;

struct _VpsMetricsServer
{
  VpsDaemon *daemon; /* borrowed, may be NULL */
  char *program;
  GSocketService *service;
  guint16 port;
  GList *clients; /* Client*, for free() */
  GArray *collectors;
  gint64 start_time; /* real time, seconds */
};

typedef struct
{
  VpsMetricsServer *server; /* NULL once the server is gone */
  GSocketConnection *conn;
  GCancellable *cancel;
  GSource *timeout;
  gsize len;
  GBytes *response;
  char buf[VPS_METRICS_MAX_REQUEST];
} Client;

/* ---- the request ---------------------------------------------------------------- */

static gboolean
is_token_char (char c)
{
  return g_ascii_isalnum (c) || strchr ("!#$%&'*+-.^_`|~", c) != NULL;
}

VpsMetricsParse
vps_metrics_parse_request (const char *buf, gsize len, char **method, char **path, GError **error)
{
  const char *end = NULL, *eol, *sp1, *sp2, *target_end;
  gsize line_len;

  g_return_val_if_fail (buf != NULL || len == 0, VPS_METRICS_PARSE_ERROR);
  *method = NULL;
  *path = NULL;
  if (memchr (buf, '\0', len) != NULL)
    {
      g_set_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_REQUEST, "NUL in request");
      return VPS_METRICS_PARSE_ERROR;
    }
  /* The head ends at the first empty line; bare LF is tolerated as
   * RFC 9112 section 2.2 allows a recipient to. */
  for (gsize i = 0; i + 1 < len && end == NULL; i++)
    if (buf[i] == '\n'
        && (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')))
      end = buf + i;
  if (end == NULL)
    {
      if (len >= VPS_METRICS_MAX_REQUEST)
        {
          g_set_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_TOO_LARGE,
                       "request head over %d bytes", VPS_METRICS_MAX_REQUEST);
          return VPS_METRICS_PARSE_ERROR;
        }
      return VPS_METRICS_PARSE_NEED_MORE;
    }
  eol = memchr (buf, '\n', len);
  line_len = (gsize)(eol - buf);
  if (line_len > 0 && buf[line_len - 1] == '\r')
    line_len--;
  sp1 = memchr (buf, ' ', line_len);
  sp2 = sp1 ? memchr (sp1 + 1, ' ', line_len - (gsize)(sp1 + 1 - buf)) : NULL;
  if (sp1 == NULL || sp2 == NULL || sp1 == buf || sp2 == sp1 + 1 || sp1[1] != '/')
    goto bad;
  for (const char *p = buf; p < sp1; p++)
    if (!is_token_char (*p))
      goto bad;
  for (const char *p = sp1 + 1; p < sp2; p++)
    if ((guchar)*p <= 0x20 || *p == 0x7f)
      goto bad;
  if ((gsize)(buf + line_len - (sp2 + 1)) != strlen ("HTTP/1.1")
      || (strncmp (sp2 + 1, "HTTP/1.1", 8) != 0 && strncmp (sp2 + 1, "HTTP/1.0", 8) != 0))
    goto bad;
  target_end = memchr (sp1 + 1, '?', (gsize)(sp2 - sp1 - 1));
  if (target_end == NULL)
    target_end = sp2;
  *method = g_strndup (buf, (gsize)(sp1 - buf));
  *path = g_strndup (sp1 + 1, (gsize)(target_end - sp1 - 1));
  return VPS_METRICS_PARSE_OK;

bad:
  g_set_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_REQUEST,
               "not an HTTP/1.x request line (METHOD /path HTTP/1.1)");
  return VPS_METRICS_PARSE_ERROR;
}

/* ---- the answer ----------------------------------------------------------------- */

static GBytes *
build_response (guint status, const char *reason, const char *content_type, const char *extra,
                const char *body)
{
  GString *r = g_string_sized_new (strlen (body) + 160);

  g_string_append_printf (r,
                          "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                          "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n%s",
                          status, reason, content_type, strlen (body), extra ? extra : "", body);
  return g_string_free_to_bytes (r);
}

static void
render_daemon (VpsMetricsServer *server, GString *out)
{
  const char *program[] = { "program", server->program, NULL };

  vps_metrics_write_header (out, "vps_info", "gauge", "The program serving these metrics.");
  vps_metrics_write_sample (out, "vps_info", program, 1);
  vps_metrics_write_header (out, "vps_start_time_seconds", "gauge",
                            "Start time of the process since the Unix epoch.");
  vps_metrics_write_sample (out, "vps_start_time_seconds", NULL, (double)server->start_time);
  if (server->daemon == NULL)
    return;
  vps_metrics_write_header (out, "vps_sessions_active", "gauge", "Sessions open now.");
  vps_metrics_write_sample (out, "vps_sessions_active", NULL,
                            vps_daemon_active_sessions (server->daemon));
  vps_metrics_write_header (out, "vps_config_generation", "gauge",
                            "Configuration generation (1 at start, +1 per successful reload).");
  vps_metrics_write_sample (out, "vps_config_generation", NULL,
                            vps_daemon_get_generation (server->daemon));
  vps_metrics_write_header (out, "vps_draining", "gauge", "1 once SIGTERM began the drain.");
  vps_metrics_write_sample (out, "vps_draining", NULL,
                            vps_daemon_is_draining (server->daemon) ? 1 : 0);
  vps_metrics_write_header (out, "vps_workers", "gauge", "Worker threads (event loops).");
  vps_metrics_write_sample (out, "vps_workers", NULL, vps_daemon_n_workers (server->daemon));
}

GBytes *
vps_metrics_server_respond (VpsMetricsServer *server, const char *method, const char *path,
                            guint *status)
{
  g_return_val_if_fail (server != NULL && method != NULL && path != NULL, NULL);
  if (strcmp (path, "/metrics") != 0 && strcmp (path, "/health") != 0)
    {
      *status = 404;
      return build_response (404, "Not Found", "text/plain; charset=utf-8", NULL,
                             "not found: try /metrics or /health\n");
    }
  if (strcmp (method, "GET") != 0)
    {
      *status = 405;
      return build_response (405, "Method Not Allowed", "text/plain; charset=utf-8",
                             "Allow: GET\r\n", "only GET\n");
    }
  if (strcmp (path, "/health") == 0)
    {
      g_autofree char *body = NULL;
      g_autoptr (VpsEngine) engine = NULL;

      if (server->daemon == NULL)
        {
          *status = 200;
          return build_response (200, "OK", "text/plain; charset=utf-8", NULL, "ok\n");
        }
      /* 503 while draining: a load balancer stops sending before we close */
      engine = vps_daemon_get_engine (server->daemon);
      if (vps_daemon_is_draining (server->daemon) || engine == NULL)
        {
          body = g_strdup_printf ("%s sessions=%u\n", engine ? "draining" : "starting",
                                  vps_daemon_active_sessions (server->daemon));
          *status = 503;
          return build_response (503, "Service Unavailable", "text/plain; charset=utf-8", NULL,
                                 body);
        }
      body = g_strdup_printf ("ok generation=%u sessions=%u\n",
                              vps_daemon_get_generation (server->daemon),
                              vps_daemon_active_sessions (server->daemon));
      *status = 200;
      return build_response (200, "OK", "text/plain; charset=utf-8", NULL, body);
    }
  {
    g_autoptr (GString) out = g_string_sized_new (16384);
    g_autoptr (VpsEngine) engine = server->daemon ? vps_daemon_get_engine (server->daemon) : NULL;
    GBytes *response;

    render_daemon (server, out);
    vps_metrics_render (out, engine);
    for (guint i = 0; i < server->collectors->len; i++)
      {
        const Collector *c = &g_array_index (server->collectors, Collector, i);

        c->func (out, c->data);
      }
    *status = 200;
    response
        = build_response (200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, out->str);
    return response;
  }
}

/* ---- connections ------------------------------------------------------------------ */

static void
client_free (Client *c)
{
  if (c->server != NULL)
    c->server->clients = g_list_remove (c->server->clients, c);
  if (c->timeout != NULL)
    {
      g_source_destroy (c->timeout);
      g_source_unref (c->timeout);
    }
  g_clear_pointer (&c->response, g_bytes_unref);
  /* closing the stream closes the socket: Connection: close */
  if (c->conn != NULL)
    g_io_stream_close (G_IO_STREAM (c->conn), NULL, NULL);
  g_clear_object (&c->conn);
  g_clear_object (&c->cancel);
  g_free (c);
}

static gboolean
on_timeout (gpointer data)
{
  Client *c = data;

  /* the pending read or write fails with CANCELLED and frees c */
  g_cancellable_cancel (c->cancel);
  return G_SOURCE_REMOVE;
}

static void
on_written (GObject *source, GAsyncResult *result, gpointer data)
{
  Client *c = data;

  g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, NULL);
  client_free (c);
}

static void
send_response (Client *c, GBytes *response)
{
  gsize size;
  gconstpointer bytes;

  c->response = response;
  bytes = g_bytes_get_data (response, &size);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (G_IO_STREAM (c->conn)), bytes,
                                   size, G_PRIORITY_DEFAULT, c->cancel, on_written, c);
}

static void read_more (Client *c);

static void
on_read (GObject *source, GAsyncResult *result, gpointer data)
{
  Client *c = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *method = NULL;
  g_autofree char *path = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);
  VpsMetricsParse parsed;
  guint status = 0;

  if (n <= 0 || c->server == NULL)
    {
      /* peer gone, timed out, or read error: nothing to answer */
      client_free (c);
      return;
    }
  c->len += (gsize)n;
  parsed = vps_metrics_parse_request (c->buf, c->len, &method, &path, &error);
  if (parsed == VPS_METRICS_PARSE_NEED_MORE)
    {
      read_more (c);
      return;
    }
  if (parsed == VPS_METRICS_PARSE_ERROR)
    {
      gboolean large = g_error_matches (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_TOO_LARGE);

      vps_log_once ("metrics-bad-request", 60, G_LOG_LEVEL_INFO, NULL, "metrics: %s",
                    error->message);
      send_response (c, build_response (large ? 431 : 400,
                                        large ? "Request Header Fields Too Large" : "Bad Request",
                                        "text/plain; charset=utf-8", NULL, "bad request\n"));
      return;
    }
  send_response (c, vps_metrics_server_respond (c->server, method, path, &status));
}

static void
read_more (Client *c)
{
  g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (c->conn)), c->buf + c->len,
                             sizeof c->buf - c->len, G_PRIORITY_DEFAULT, c->cancel, on_read, c);
}

static gboolean
on_incoming (GSocketService *service, GSocketConnection *conn, GObject *source, gpointer data)
{
  VpsMetricsServer *server = data;
  Client *c;

  if (g_list_length (server->clients) >= VPS_METRICS_MAX_CLIENTS)
    {
      vps_log_once ("metrics-busy", 60, G_LOG_LEVEL_WARNING, NULL,
                    "metrics: more than %d connections, closing new ones", VPS_METRICS_MAX_CLIENTS);
      g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
      return TRUE;
    }
  c = g_new0 (Client, 1);
  c->server = server;
  c->conn = g_object_ref (conn);
  c->cancel = g_cancellable_new ();
  c->timeout = g_timeout_source_new (VPS_METRICS_TIMEOUT_MS);
  g_source_set_callback (c->timeout, on_timeout, c, NULL);
  g_source_attach (c->timeout, g_main_context_get_thread_default ());
  server->clients = g_list_prepend (server->clients, c);
  read_more (c);
  return TRUE;
}

/* ---- the server --------------------------------------------------------------------- */

VpsMetricsServer *
vps_metrics_server_new (VpsDaemon *daemon, const char *program)
{
  VpsMetricsServer *server = g_new0 (VpsMetricsServer, 1);

  server->daemon = daemon;
  server->program = g_strdup (program ? program : g_get_prgname ());
  server->collectors = g_array_new (FALSE, FALSE, sizeof (Collector));
  server->start_time = g_get_real_time () / G_USEC_PER_SEC;
  return server;
}

void
vps_metrics_server_add_collector (VpsMetricsServer *server, VpsMetricsCollectFunc func,
                                  gpointer user_data)
{
  Collector c = { func, user_data };

  g_array_append_val (server->collectors, c);
}

gboolean
vps_metrics_server_start (VpsMetricsServer *server, const char *hostport, GError **error)
{
  g_autoptr (GSocketConnectable) connectable = NULL;
  g_autoptr (GSocketAddressEnumerator) en = NULL;
  g_autoptr (GSocketAddress) address = NULL;
  g_autoptr (GSocketAddress) effective = NULL;
  g_autoptr (GError) local = NULL;

  g_return_val_if_fail (server->service == NULL, FALSE);
  /* A numeric address only: the endpoint must not wait on DNS at start. */
  connectable = g_network_address_parse (hostport, 0, &local);
  if (connectable != NULL)
    {
      en = g_socket_connectable_enumerate (connectable);
      address = g_socket_address_enumerator_next (en, NULL, &local);
    }
  if (address == NULL)
    {
      g_set_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_LISTEN, "metrics: %s: %s", hostport,
                   local ? local->message : "no address");
      return FALSE;
    }
  server->service = g_socket_service_new ();
  /* GSocketListener sets SO_REUSEADDR but not SO_REUSEPORT: a second daemon
   * configured with the same port fails here rather than sharing scrapes. */
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (server->service), address,
                                      G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, &effective,
                                      &local))
    {
      g_set_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_LISTEN, "metrics: %s: %s", hostport,
                   local->message);
      g_clear_object (&server->service);
      return FALSE;
    }
  server->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
  g_signal_connect (server->service, "incoming", G_CALLBACK (on_incoming), server);
  g_socket_service_start (server->service);
  {
    g_autofree char *where = g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (effective));

    vps_notice (NULL, "metrics: listening on %s (GET /metrics, /health)", where);
  }
  return TRUE;
}

guint16
vps_metrics_server_get_port (VpsMetricsServer *server)
{
  return server->port;
}

void
vps_metrics_server_free (VpsMetricsServer *server)
{
  if (server == NULL)
    return;
  if (server->service != NULL)
    {
      g_socket_service_stop (server->service);
      g_socket_listener_close (G_SOCKET_LISTENER (server->service));
      g_signal_handlers_disconnect_by_data (server->service, server);
      g_clear_object (&server->service);
    }
  /* Clients finish on their own (their callbacks see server == NULL). */
  for (GList *l = server->clients; l != NULL; l = l->next)
    {
      Client *c = l->data;

      c->server = NULL;
      g_cancellable_cancel (c->cancel);
    }
  g_list_free (server->clients);
  g_array_unref (server->collectors);
  g_free (server->program);
  g_free (server);
}
