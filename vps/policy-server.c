/* SPDX-License-Identifier: MIT
 *
 * policy-server.c — the policy listener and the life of one connection:
 * accept, the bytes its stream reads (vps/stream.h: non-blocking reads,
 * buffered writes) fed to the request parser (proto/policy), one timer per
 * connection for the idle and request timeouts and the drain, and close.
 * What a request means is policy-session.c's business.
 *
 * Contract (see policy-server.h): a peer that misbehaves — bytes the codec
 * refuses (a '=' or NUL in a name, an over-long line, too many attributes,
 * a request over POLICY_MAX_REQUEST), a close in the middle of a request, a
 * silence past [policy] timeout — is logged once with the connection's id
 * and its connection closed; nothing else is affected.  Memory per
 * connection is bounded: we read only when everything read before was fed
 * to the parser (which holds at most one partial request), and nothing
 * while a request is being answered (Postfix waits for the answer anyway;
 * several requests in one read are answered one after the other, in order).
 */
#include "vps/policy-private.h"

#include <string.h>

#include "vps/log.h"

G_DEFINE_QUARK (vps - policy - error - quark, vps_policy_error)

/* ---- connection lifecycle ------------------------------------------------- */

VpsPolicyConn *
vps_policy_conn_ref (VpsPolicyConn *conn)
{
  g_atomic_int_inc (&conn->ref);
  return conn;
}

void
vps_policy_conn_unref (VpsPolicyConn *conn)
{
  if (conn == NULL || !g_atomic_int_dec_and_test (&conn->ref))
    return;
  vps_policy_conn_end_session (conn);
  g_clear_object (&conn->cancellable);
  g_clear_pointer (&conn->parser, policy_parser_free);
  g_clear_pointer (&conn->stream, vps_stream_unref);
  g_string_free (conn->out, TRUE);
  g_clear_pointer (&conn->req, policy_request_unref);
  g_clear_pointer (&conn->prev_req, policy_request_unref);
  g_free (conn->prev_reply);
  g_clear_pointer (&conn->final, vps_stage_result_unref);
  g_ptr_array_unref (conn->pend_rule);
  g_clear_pointer (&conn->engine, vps_engine_unref);
  g_free (conn->peer);
  g_free (conn->id);
  g_free (conn);
}

const char *
vps_policy_conn_id (VpsPolicyConn *conn)
{
  return conn->session != NULL ? vps_session_get_id (conn->session) : conn->id;
}

void
vps_policy_conn_close (VpsPolicyConn *conn)
{
  if (conn->closed)
    return;
  conn->closed = TRUE;
  /* a stage in flight is told to stop; its callback finds us closed */
  if (conn->cancellable != NULL)
    g_cancellable_cancel (conn->cancellable);
  if (conn->tick_source != NULL)
    {
      g_source_destroy (conn->tick_source);
      g_clear_pointer (&conn->tick_source, g_source_unref);
    }
  vps_stream_close (conn->stream);
  vps_info (vps_policy_conn_id (conn), "policy: disconnect from %s requests=%u", conn->peer,
            conn->n_requests);
  vps_policy_conn_end_session (conn);
  g_atomic_int_add (&conn->server->n_sessions, -1);
  vps_daemon_session_end (conn->server->daemon);
  /* the reference the accept gave the connection itself */
  vps_policy_conn_unref (conn);
}

void
vps_policy_conn_fail (VpsPolicyConn *conn, const char *why)
{
  if (conn->closed)
    return;
  vps_warning (vps_policy_conn_id (conn), "policy: closing connection from %s: %s", conn->peer,
               why);
  vps_policy_conn_close (conn);
}

/* ---- I/O (vps/stream.h) ---------------------------------------------------- */

void
vps_policy_conn_flush (VpsPolicyConn *conn)
{
  if (conn->closed)
    return;
  if (conn->out->len > 0)
    {
      vps_stream_write (conn->stream, conn->out->str, conn->out->len);
      g_string_truncate (conn->out, 0);
    }
  /* a write that fails ends in on_closed */
  vps_stream_flush (conn->stream);
}

/* Feed what was read to the parser, one request at a time, until a request
 * is in flight, everything is consumed, or the connection closed. */
static void
process_input (VpsPolicyConn *conn)
{
  gsize off = 0;

  while (!conn->closed && !conn->busy && off < conn->in->len)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (PolicyRequest) req = NULL;
      gsize consumed = 0;

      if (!policy_parser_feed (conn->parser, (const char *)conn->in->data + off,
                               conn->in->len - off, &consumed, &req, &error))
        {
          g_autofree char *why = g_strdup_printf ("bad request: %s", error->message);
          vps_policy_conn_fail (conn, why);
          return;
        }
      off += consumed;
      if (req == NULL)
        break;
      conn->n_requests++;
      g_atomic_pointer_add (&conn->server->n_requests, 1);
      vps_policy_conn_request (conn, req);
    }
  if (conn->closed)
    return;
  if (off > 0)
    g_byte_array_remove_range (conn->in, 0, (guint)off);
  vps_policy_conn_flush (conn);
  /* read on only when idle and everything read was fed */
  if (!conn->closed)
    vps_stream_want_input (conn->stream, !conn->busy && conn->in->len == 0);
}

void
vps_policy_conn_resume (VpsPolicyConn *conn)
{
  if (conn->closed)
    return;
  conn->last_input = g_get_monotonic_time ();
  process_input (conn);
}

/* One read arrived (at most VPS_POLICY_READ_CHUNK). */
static void
on_input (VpsStream *stream, gpointer data)
{
  VpsPolicyConn *conn = data;

  conn->last_input = g_get_monotonic_time ();
  vps_policy_conn_ref (conn);
  process_input (conn);
  vps_policy_conn_unref (conn);
}

static void
on_closed (VpsStream *stream, const GError *error, gpointer data)
{
  VpsPolicyConn *conn = data;

  if (g_error_matches (error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_EOF))
    {
      g_autoptr (GError) local = NULL;

      /* Postfix closes between requests (idle or ttl): fine.  A request cut
       * off is not answered; the MTA that sent it is gone anyway. */
      if (!policy_parser_finish (conn->parser, &local))
        {
          g_autofree char *why = g_strdup_printf ("end of stream: %s", local->message);
          vps_policy_conn_fail (conn, why);
        }
      else
        vps_policy_conn_close (conn);
    }
  else if (g_error_matches (error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_RESET)
           && policy_parser_get_pending (conn->parser) == 0 && !conn->busy)
    {
      /* a reset between requests (a client that exits with our last
       * answer unread) ends the connection like a close */
      vps_policy_conn_close (conn);
    }
  else
    {
      g_autofree char *why = g_strdup_printf (
          "%s: %s",
          g_error_matches (error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_WRITE) ? "write" : "read",
          error != NULL ? error->message : "closed");
      vps_policy_conn_fail (conn, why);
    }
}

static const VpsStreamCallbacks stream_callbacks = {
  .input = on_input,
  .closed = on_closed,
};

/* ---- the timer: timeouts and drain --------------------------------------- */

static gboolean
tick (VpsPolicyConn *conn)
{
  gint64 now = g_get_monotonic_time ();

  if (conn->closed)
    return G_SOURCE_REMOVE;
  if (conn->busy)
    {
      /* Answer before Postfix gives up on us (smtpd_policy_service_timeout,
       * 100s): the stage callback answers tempfail once cancelled. */
      if ((now - conn->busy_since) / 1000 > conn->request_timeout
          && !g_cancellable_is_cancelled (conn->cancellable))
        {
          vps_warning (vps_policy_conn_id (conn),
                       "policy: request timeout after %" G_GINT64_FORMAT "ms",
                       conn->request_timeout);
          g_cancellable_cancel (conn->cancellable);
        }
      return G_SOURCE_CONTINUE;
    }
  if ((now - conn->last_input) / 1000 > conn->idle_timeout)
    {
      /* Postfix closes idle connections itself (smtpd_policy_service_max_idle);
       * a partial request this old is an attack or a dead peer. */
      if (policy_parser_get_pending (conn->parser) > 0)
        vps_policy_conn_fail (conn, "timeout in the middle of a request");
      else
        {
          vps_info (vps_policy_conn_id (conn),
                    "policy: closing idle connection after %" G_GINT64_FORMAT "ms",
                    conn->idle_timeout);
          vps_policy_conn_close (conn);
        }
      return G_SOURCE_REMOVE;
    }
  /* Drain: a connection between requests is closed; Postfix opens a new one
   * for its next request (to whoever listens then). */
  if (vps_daemon_is_draining (conn->server->daemon) && conn->in->len == 0 && conn->out->len == 0
      && vps_stream_get_output (conn->stream)->len == 0
      && policy_parser_get_pending (conn->parser) == 0)
    {
      vps_info (vps_policy_conn_id (conn), "policy: closing idle connection (draining)");
      vps_policy_conn_close (conn);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
on_tick (gpointer data)
{
  VpsPolicyConn *conn = data;
  gboolean keep;

  vps_policy_conn_ref (conn);
  keep = tick (conn);
  vps_policy_conn_unref (conn);
  return keep;
}

/* ---- accept ---------------------------------------------------------------- */

static void
conn_load_config (VpsPolicyConn *conn)
{
  VpsConfig *cfg = conn->cfg;
  const char *no_opinion = vps_config_get_string (cfg, "policy", "no_opinion");
  const char *accept = vps_config_get_string (cfg, "policy", "accept_action");

  conn->idle_timeout = vps_config_get_duration_ms (cfg, "policy", "timeout");
  conn->request_timeout = vps_config_get_duration_ms (cfg, "policy", "request_timeout");
  conn->no_opinion_action
      = g_strcmp0 (no_opinion, "accept") == 0 ? POLICY_ACTION_OK : POLICY_ACTION_DUNNO;
  conn->accept_action = g_strcmp0 (accept, "dunno") == 0 ? POLICY_ACTION_DUNNO : POLICY_ACTION_OK;
  conn->want_macros = rules_program_reads (vps_engine_get_program (conn->engine), RULES_VAR_MACRO);
}

static void
on_accept (GSocket *socket, gpointer data)
{
  static gint serial = 0;
  VpsPolicyServer *server = data;
  g_autoptr (GSocket) owned = socket;
  g_autoptr (GMainContext) context = g_main_context_ref_thread_default ();
  g_autoptr (VpsEngine) engine = vps_daemon_get_engine (server->daemon);
  gint64 max = vps_config_get_int (vps_engine_get_config (engine), "policy", "max_sessions");
  VpsPolicyConn *conn;

  if (vps_daemon_is_draining (server->daemon)
      || (max > 0 && g_atomic_int_get (&server->n_sessions) >= max))
    {
      vps_log_once ("policy-max-sessions", 60, G_LOG_LEVEL_WARNING, NULL,
                    "policy: refusing a connection (%s)",
                    vps_daemon_is_draining (server->daemon) ? "draining" : "max_sessions reached");
      g_socket_close (socket, NULL);
      return;
    }

  conn = g_new0 (VpsPolicyConn, 1);
  conn->ref = 1; /* the connection's own, dropped in vps_policy_conn_close */
  conn->server = server;
  conn->engine = g_steal_pointer (&engine);
  conn->cfg = vps_engine_get_config (conn->engine);
  conn->stream = vps_stream_new (socket, context, VPS_POLICY_READ_CHUNK, &stream_callbacks, conn);
  conn->parser = policy_parser_new ();
  conn->in = vps_stream_get_input (conn->stream);
  conn->out = g_string_new (NULL);
  conn->pend_rule = g_ptr_array_new_with_free_func (g_free);
  g_queue_init (&conn->pending);
  conn->id = g_strdup_printf ("P%u", (guint)g_atomic_int_add (&serial, 1) + 1);
  conn->target = -1;
  conn_load_config (conn);
  conn->last_input = g_get_monotonic_time ();

  g_atomic_int_inc (&server->n_sessions);
  vps_daemon_session_begin (server->daemon);
  {
    g_autoptr (GSocketAddress) peer = g_socket_get_remote_address (socket, NULL);

    if (G_IS_INET_SOCKET_ADDRESS (peer))
      {
        g_autofree char *ip = g_inet_address_to_string (
            g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (peer)));
        conn->peer = g_strdup_printf (
            "%s:%u", ip, g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (peer)));
      }
    else
      conn->peer = g_strdup ("unix socket");
    vps_info (conn->id, "policy: connect from %s", conn->peer);
  }

  conn->tick_source = g_timeout_source_new (VPS_POLICY_TICK_MS);
  g_source_set_callback (conn->tick_source, on_tick, conn, NULL);
  g_source_attach (conn->tick_source, vps_stream_get_context (conn->stream));
  vps_stream_want_input (conn->stream, TRUE);
}

/* ---- server ---------------------------------------------------------------- */

VpsPolicyServer *
vps_policy_server_new (VpsDaemon *daemon)
{
  VpsPolicyServer *server = g_new0 (VpsPolicyServer, 1);

  server->daemon = daemon;
  return server;
}

gboolean
vps_policy_server_start (VpsPolicyServer *server, const char *address, GError **error)
{
  g_return_val_if_fail (server->listener == NULL, FALSE);
  server->listener
      = vps_daemon_listen (server->daemon, "policy", address, on_accept, server, error);
  /* the listener itself logs "policy: listening on ADDRESS" */
  return server->listener != NULL;
}

const char *
vps_policy_server_get_address (VpsPolicyServer *server)
{
  return server->listener ? vps_listener_get_address (server->listener) : NULL;
}

guint
vps_policy_server_n_sessions (VpsPolicyServer *server)
{
  return (guint)g_atomic_int_get (&server->n_sessions);
}

guint64
vps_policy_server_n_requests (VpsPolicyServer *server)
{
  return (guint64)g_atomic_pointer_get (&server->n_requests);
}

void
vps_policy_server_free (VpsPolicyServer *server)
{
  /* the listener belongs to the daemon; connections still open when the
   * workers stopped are abandoned with their (stopped) contexts */
  g_free (server);
}
