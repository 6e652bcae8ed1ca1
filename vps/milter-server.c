/* SPDX-License-Identifier: MIT
 *
 * milter-server.c — the milter listener and the life of one connection:
 * accept, the bytes its stream reads (vps/stream.h: non-blocking reads,
 * buffered writes) split into frames (proto/milter), one timer per
 * connection for timeouts, progress and the drain, and close.  What the
 * packets mean is milter-session.c's business.
 *
 * Contract (see milter-server.h): a peer that misbehaves — a frame the
 * codec refuses, a packet out of order, a silence past its timeout — is
 * logged once with the session id and its connection closed; nothing else
 * is affected.  Nothing here blocks: reads and writes are non-blocking on
 * the worker's context, and while a stage runs the connection reads nothing
 * (the MTA waits for our reply anyway), so input never piles up unbounded.
 *
 * TCP_NODELAY is set by the listener and TCP_QUICKACK is re-armed after
 * every read: the MTA sends packets we do not answer (macros, NR_* steps)
 * and must not wait for our delayed ACK (MILTER.md, "The 40 ms stall").
 */
#include "vps/milter-private.h"

#include <string.h>

#include "vps/log.h"

G_DEFINE_QUARK (vps - milter - error - quark, vps_milter_error)

/* ---- what to ask the MTA for ---------------------------------------------- */

static gboolean
reads_any (RulesProgram *p, const RulesVar *vars, gsize n)
{
  for (gsize i = 0; i < n; i++)
    if (rules_program_reads (p, vars[i]))
      return TRUE;
  return FALSE;
}

static gboolean
has_calls (RulesProgram *p, RulesStage stage)
{
  const char *const *calls = rules_program_calls (p, stage);

  return calls != NULL && calls[0] != NULL;
}

/* One optional step: with rules it is replied; read later, it comes
 * without reply; otherwise it is switched off. */
static guint32
step_bits (gboolean rules, gboolean read, guint32 no_bit, guint32 nr_bit)
{
  if (rules)
    return 0;
  return read ? nr_bit : no_bit;
}

void
vps_milter_want (RulesProgram *p, VpsConfig *cfg, MilterOptions *want)
{
  static const RulesVar conn_vars[]
      = { RULES_VAR_CLIENT_IP, RULES_VAR_CLIENT_PORT, RULES_VAR_CLIENT_PTR,
          RULES_VAR_SERVER_IP, RULES_VAR_SERVER_PORT, RULES_VAR_SERVER_NAME };
  static const RulesVar helo_vars[]
      = { RULES_VAR_HELO_NAME, RULES_VAR_TLS_ACTIVE, RULES_VAR_TLS_VERSION, RULES_VAR_TLS_CIPHER,
          RULES_VAR_TLS_PEER_SUBJECT };
  static const RulesVar mail_vars[]
      = { RULES_VAR_MAIL_FROM,     RULES_VAR_MAIL_FROM_LOCAL,      RULES_VAR_MAIL_FROM_DOMAIN,
          RULES_VAR_MAIL_PARAM,    RULES_VAR_CLIENT_AUTHENTICATED, RULES_VAR_AUTH_USER,
          RULES_VAR_AUTH_MECHANISM };
  static const RulesVar rcpt_vars[]
      = { RULES_VAR_RCPT_TO, RULES_VAR_RCPT_LOCAL, RULES_VAR_RCPT_DOMAIN, RULES_VAR_RCPT_COUNT,
          RULES_VAR_RCPTS };
  static const RulesVar header_vars[] = { RULES_VAR_HEADER, RULES_VAR_HEADERS, RULES_VAR_HAS_HEADER,
                                          RULES_VAR_SUBJECT, RULES_VAR_MESSAGE_ID };
  static const RulesVar body_vars[] = { RULES_VAR_MESSAGE_SIZE,     RULES_VAR_BODY,
                                        RULES_VAR_MIME_VALID,       RULES_VAR_MIME_ERRORS,
                                        RULES_VAR_MIME_PARTS,       RULES_VAR_MIME_DEPTH,
                                        RULES_VAR_MIME_ATTACHMENTS, RULES_VAR_MIME_CONTENT_TYPES };
  gboolean any_calls = FALSE, keeps_copy, edits_headers, macros, headers, body;
  const char *const *quarantines = vps_config_quarantine_names (cfg);
  const char *const *exports = vps_config_export_names (cfg);
  guint32 proto = MILTER_PROTO_HDR_LEADSPC;

  for (RulesStage s = RULES_STAGE_CONNECT; s <= RULES_STAGE_DATA; s++)
    {
      any_calls |= has_calls (p, s);
    }
  /* A connector may send anything it was told (a policy service wants the
   * client address, a chained milter every step): with calls we keep every
   * step; macros ride on the steps, so reading one keeps them too. */
  macros = any_calls || rules_program_reads (p, RULES_VAR_MACRO);
  /* A copy in the quarantine store or an export needs the whole message;
   * only programs that can quarantine or export ask for it. */
  keeps_copy = (rules_program_has_verdict (p, RULES_VERDICT_QUARANTINE)
                && vps_config_get_bool (cfg, "milter", "store_quarantine") && quarantines
                && quarantines[0])
               || ((rules_program_has_effect (p, RULES_EFFECT_EXPORT_JSON)
                    || rules_program_has_effect (p, RULES_EFFECT_EXPORT_RAW))
                   && exports && exports[0]);
  edits_headers = rules_program_has_effect (p, RULES_EFFECT_SET_HEADER)
                  || rules_program_has_effect (p, RULES_EFFECT_REMOVE_HEADER);

  proto |= step_bits (rules_program_n_rules (p, RULES_STAGE_CONNECT) > 0,
                      macros || reads_any (p, conn_vars, G_N_ELEMENTS (conn_vars)),
                      MILTER_PROTO_NOCONNECT, MILTER_PROTO_NR_CONN);
  proto |= step_bits (rules_program_n_rules (p, RULES_STAGE_HELO) > 0,
                      macros || reads_any (p, helo_vars, G_N_ELEMENTS (helo_vars)),
                      MILTER_PROTO_NOHELO, MILTER_PROTO_NR_HELO);
  /* the auth stage runs at MAIL (the MTA passes AUTH as macros of MAIL) */
  proto |= step_bits (rules_program_n_rules (p, RULES_STAGE_MAIL) > 0
                          || rules_program_n_rules (p, RULES_STAGE_AUTH) > 0,
                      macros || keeps_copy || reads_any (p, mail_vars, G_N_ELEMENTS (mail_vars)),
                      MILTER_PROTO_NOMAIL, MILTER_PROTO_NR_MAIL);
  proto |= step_bits (rules_program_n_rules (p, RULES_STAGE_RCPT) > 0,
                      macros || keeps_copy || reads_any (p, rcpt_vars, G_N_ELEMENTS (rcpt_vars)),
                      MILTER_PROTO_NORCPT, MILTER_PROTO_NR_RCPT);
  /* Content: headers whenever rules may edit headers (set/remove need the
   * instance numbers of what the MTA has) or read them; the body when read,
   * handed to a connector or kept as a copy. */
  body = any_calls || keeps_copy || reads_any (p, body_vars, G_N_ELEMENTS (body_vars));
  headers = body || edits_headers || reads_any (p, header_vars, G_N_ELEMENTS (header_vars));
  proto |= headers ? MILTER_PROTO_NR_HDR : MILTER_PROTO_NOHDRS;
  proto |= body ? MILTER_PROTO_NR_BODY : MILTER_PROTO_NOBODY;
  /* End of headers tells us nothing we need; unknown commands neither.
   * DATA is kept and answered on purpose (never NODATA): an unanswered
   * step is what makes the 40 ms stall. */
  proto |= MILTER_PROTO_NOEOH | MILTER_PROTO_NOUNKNOWN;

  want->version = MILTER_VERSION;
  want->protocol = proto;
  /* Actions: what the rules can do; a connector may return any
   * modification, so with calls we ask for all of them. */
  if (any_calls)
    want->actions = MILTER_ACTION_ADDHDRS | MILTER_ACTION_CHGHDRS | MILTER_ACTION_CHGBODY
                    | MILTER_ACTION_ADDRCPT | MILTER_ACTION_ADDRCPT_PAR | MILTER_ACTION_DELRCPT
                    | MILTER_ACTION_CHGFROM | MILTER_ACTION_QUARANTINE;
  else
    {
      want->actions = 0;
      if (rules_program_has_effect (p, RULES_EFFECT_ADD_HEADER)
          || rules_program_has_effect (p, RULES_EFFECT_INSERT_HEADER) || edits_headers)
        want->actions |= MILTER_ACTION_ADDHDRS; /* set_header adds when absent */
      if (edits_headers)
        want->actions |= MILTER_ACTION_CHGHDRS;
      if (rules_program_has_effect (p, RULES_EFFECT_REPLACE_BODY))
        want->actions |= MILTER_ACTION_CHGBODY;
      if (rules_program_has_effect (p, RULES_EFFECT_ADD_RCPT))
        want->actions |= MILTER_ACTION_ADDRCPT | MILTER_ACTION_ADDRCPT_PAR;
      if (rules_program_has_effect (p, RULES_EFFECT_REMOVE_RCPT))
        want->actions |= MILTER_ACTION_DELRCPT;
      if (rules_program_has_effect (p, RULES_EFFECT_SET_SENDER))
        want->actions |= MILTER_ACTION_CHGFROM;
      if (rules_program_has_verdict (p, RULES_VERDICT_QUARANTINE))
        want->actions |= MILTER_ACTION_QUARANTINE;
    }
}

/* ---- connection lifecycle ------------------------------------------------- */

VpsMilterConn *
vps_milter_conn_ref (VpsMilterConn *conn)
{
  g_atomic_int_inc (&conn->ref);
  return conn;
}

void
vps_milter_conn_unref (VpsMilterConn *conn)
{
  if (conn == NULL || !g_atomic_int_dec_and_test (&conn->ref))
    return;
  g_clear_object (&conn->cancellable);
  g_clear_pointer (&conn->stream, vps_stream_unref);
  g_clear_pointer (&conn->txn, vps_txn_unref);
  g_clear_pointer (&conn->session, vps_session_unref);
  g_clear_pointer (&conn->engine, vps_engine_unref);
  g_clear_pointer (&conn->headers, g_ptr_array_unref);
  g_clear_pointer (&conn->body, g_byte_array_unref);
  g_free (conn->body_path);
  g_free (conn->server_name);
  g_free (conn->server_ip);
  g_free (conn);
}

const char *
vps_milter_conn_id (VpsMilterConn *conn)
{
  return vps_session_get_id (conn->session);
}

void
vps_milter_conn_close (VpsMilterConn *conn)
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
  vps_milter_content_reset (conn);
  vps_info (vps_milter_conn_id (conn), "milter: disconnect messages=%u", conn->n_messages);
  g_atomic_int_add (&conn->server->n_sessions, -1);
  vps_daemon_session_end (conn->server->daemon);
  /* the reference the accept gave the connection itself */
  vps_milter_conn_unref (conn);
}

void
vps_milter_conn_fail (VpsMilterConn *conn, const char *why)
{
  if (conn->closed)
    return;
  vps_warning (vps_milter_conn_id (conn), "milter: closing: %s", why);
  vps_milter_conn_close (conn);
}

/* ---- I/O (vps/stream.h) ---------------------------------------------------- */

void
vps_milter_conn_flush (VpsMilterConn *conn)
{
  if (conn->closed)
    return;
  /* a write that fails, or the drained QUIT, ends in on_closed */
  vps_stream_flush (conn->stream);
}

/* Process whole frames from conn->in until a stage is in flight, the
 * buffer holds no whole frame, or the connection closed. */
static void
process_input (VpsMilterConn *conn)
{
  gsize off = 0;

  while (!conn->closed && !conn->busy && !vps_stream_is_closing (conn->stream))
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MilterCommandPacket) packet = NULL;
      MilterFrame frame;
      gsize consumed = 0;

      if (!milter_frame_split (conn->in->data + off, conn->in->len - off, MILTER_MAX_PACKET,
                               &consumed, &frame, &error))
        {
          if (error != NULL)
            {
              g_autofree char *why = g_strdup_printf ("bad frame: %s", error->message);
              vps_milter_conn_fail (conn, why);
              return;
            }
          break;
        }
      off += consumed;
      /* the codec's messages name the packet already */
      packet = milter_command_decode (&frame, &error);
      if (packet == NULL)
        {
          vps_milter_conn_fail (conn, error->message);
          return;
        }
      if (!vps_milter_conn_dispatch (conn, packet, &error))
        {
          g_autofree char *why = g_strdup_printf (
              "%s: %s", milter_command_name ((char)frame.command), error->message);
          vps_milter_conn_fail (conn, why);
          return;
        }
    }
  if (conn->closed)
    return;
  if (off > 0)
    g_byte_array_remove_range (conn->in, 0, (guint)off);
  vps_milter_conn_flush (conn);
  /* read on only when idle: during a stage the MTA waits for us anyway */
  if (!conn->closed)
    vps_stream_want_input (conn->stream, !conn->busy && !vps_stream_is_closing (conn->stream));
}

void
vps_milter_conn_resume (VpsMilterConn *conn)
{
  if (conn->closed)
    return;
  conn->last_input = g_get_monotonic_time ();
  process_input (conn);
}

/* One read arrived (at most VPS_MILTER_READ_CHUNK: a frame is at most
 * MILTER_MAX_PACKET + 4, and milter_frame_split refuses a longer length
 * before it is buffered), TCP_QUICKACK re-armed already. */
static void
on_input (VpsStream *stream, gpointer data)
{
  VpsMilterConn *conn = data;

  conn->last_input = g_get_monotonic_time ();
  vps_milter_conn_ref (conn);
  process_input (conn);
  vps_milter_conn_unref (conn);
}

static void
on_closed (VpsStream *stream, const GError *error, gpointer data)
{
  VpsMilterConn *conn = data;

  if (error == NULL)
    vps_milter_conn_close (conn); /* QUIT answered */
  else if (g_error_matches (error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_EOF))
    {
      /* the MTA went away; a QUIT would have closed us first */
      if (conn->phase >= PHASE_MAIL)
        vps_notice (vps_milter_conn_id (conn), "milter: connection lost in a message");
      vps_milter_conn_close (conn);
    }
  else
    {
      g_autofree char *why = g_strdup_printf (
          "%s: %s",
          g_error_matches (error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_WRITE) ? "write" : "read",
          error->message);
      vps_milter_conn_fail (conn, why);
    }
}

static const VpsStreamCallbacks stream_callbacks = {
  .input = on_input,
  .closed = on_closed,
};

/* ---- the timer: timeouts, progress, drain -------------------------------- */

static gint64
idle_limit_ms (VpsMilterConn *conn)
{
  /* The MTA keeps one milter connection for a whole SMTP session (Postfix
   * does), so between its commands it may wait as long as its client does:
   * only the idle limit applies there, never the stage limits. */
  if (conn->phase == PHASE_OPTNEG)
    return conn->connect_timeout;
  return conn->idle_timeout;
}

static gboolean tick (VpsMilterConn *conn);

static gboolean
on_tick (gpointer data)
{
  VpsMilterConn *conn = data;
  gboolean keep;

  vps_milter_conn_ref (conn);
  keep = tick (conn);
  vps_milter_conn_unref (conn);
  return keep;
}

static gboolean
tick (VpsMilterConn *conn)
{
  gint64 now = g_get_monotonic_time ();

  if (conn->closed)
    return G_SOURCE_REMOVE;
  if (conn->busy)
    {
      /* a stage longer than the MTA would wait: give up on it (the stage's
       * callback answers tempfail when it sees the cancellation) */
      gint64 limit
          = conn->busy_command == MILTER_CMD_EOB ? conn->content_timeout : conn->command_timeout;
      if ((now - conn->busy_since) / 1000 > limit)
        {
          if (!g_cancellable_is_cancelled (conn->cancellable))
            {
              vps_warning (vps_milter_conn_id (conn),
                           "milter: stage timeout after %" G_GINT64_FORMAT "ms", limit);
              g_cancellable_cancel (conn->cancellable);
            }
        }
      else if (conn->busy_replies && (now - conn->last_progress) / 1000 >= conn->progress_interval)
        {
          /* the MTA's timer restarts on every packet it reads from us */
          conn->last_progress = now;
          milter_encode_reply_simple (conn->out, MILTER_REPLY_PROGRESS);
          vps_debug (vps_milter_conn_id (conn), "milter: progress");
          vps_milter_conn_flush (conn);
        }
      return G_SOURCE_CONTINUE;
    }
  if ((now - conn->last_input) / 1000 > idle_limit_ms (conn))
    {
      g_autofree char *why = g_strdup_printf ("timeout: no command for %" G_GINT64_FORMAT "ms",
                                              idle_limit_ms (conn));
      vps_milter_conn_fail (conn, why);
      return G_SOURCE_REMOVE;
    }
  /* Drain: messages in flight finish; a connection between messages (or
   * before its SMTP session began) is closed, and the MTA reconnects to
   * whoever listens next. */
  if (vps_daemon_is_draining (conn->server->daemon) && conn->phase <= PHASE_HELO
      && conn->in->len == 0 && conn->out->len == 0)
    {
      vps_info (vps_milter_conn_id (conn), "milter: closing idle connection (draining)");
      vps_milter_conn_close (conn);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

/* ---- accept ---------------------------------------------------------------- */

static void
conn_load_config (VpsMilterConn *conn)
{
  VpsConfig *cfg = conn->cfg;

  conn->connect_timeout = vps_config_get_duration_ms (cfg, "milter", "connect_timeout");
  conn->command_timeout = vps_config_get_duration_ms (cfg, "milter", "command_timeout");
  conn->content_timeout = vps_config_get_duration_ms (cfg, "milter", "content_timeout");
  conn->idle_timeout = vps_config_get_duration_ms (cfg, "milter", "idle_timeout");
  conn->progress_interval = vps_config_get_duration_ms (cfg, "milter", "progress_interval");
  conn->store_quarantine = vps_config_get_bool (cfg, "milter", "store_quarantine");
  conn->memory_body_limit = vps_config_get_size (cfg, "limits", "memory_body_limit");
  conn->max_message_size = vps_config_get_size (cfg, "limits", "max_message_size");
  conn->max_header_size = vps_config_get_size (cfg, "limits", "max_header_size");
}

static void
on_accept (GSocket *socket, gpointer data)
{
  VpsMilterServer *server = data;
  g_autoptr (GSocket) owned = socket;
  g_autoptr (GMainContext) context = g_main_context_ref_thread_default ();
  gint64 max = 0;
  VpsMilterConn *conn;
  g_autoptr (VpsEngine) engine = vps_daemon_get_engine (server->daemon);

  max = vps_config_get_int (vps_engine_get_config (engine), "milter", "max_sessions");
  if (vps_daemon_is_draining (server->daemon)
      || (max > 0 && g_atomic_int_get (&server->n_sessions) >= max))
    {
      vps_log_once ("milter-max-sessions", 60, G_LOG_LEVEL_WARNING, NULL,
                    "milter: refusing a connection (%s)",
                    vps_daemon_is_draining (server->daemon) ? "draining" : "max_sessions reached");
      g_socket_close (socket, NULL);
      return;
    }

  conn = g_new0 (VpsMilterConn, 1);
  conn->ref = 1; /* the connection's own, dropped in vps_milter_conn_close */
  conn->server = server;
  conn->engine = g_steal_pointer (&engine);
  conn->cfg = vps_engine_get_config (conn->engine);
  conn->stream = vps_stream_new (socket, context, VPS_MILTER_READ_CHUNK, &stream_callbacks, conn);
  /* measured: without it each unanswered step waits for our delayed ACK
   * (MILTER.md, "The 40 ms stall") */
  vps_stream_set_quickack (conn->stream, TRUE);
  conn->in = vps_stream_get_input (conn->stream);
  conn->out = vps_stream_get_output (conn->stream);
  conn->session = vps_session_new ();
  conn->txn = vps_txn_new (conn->session);
  conn->body_fd = -1;
  conn->phase = PHASE_OPTNEG;
  conn_load_config (conn);
  vps_milter_want (vps_engine_get_program (conn->engine), conn->cfg, &conn->want);
  conn->last_input = g_get_monotonic_time ();

  g_atomic_int_inc (&server->n_sessions);
  vps_daemon_session_begin (server->daemon);
  {
    g_autoptr (GSocketAddress) peer = g_socket_get_remote_address (socket, NULL);
    g_autofree char *peer_s = NULL;

    if (G_IS_INET_SOCKET_ADDRESS (peer))
      {
        g_autofree char *ip = g_inet_address_to_string (
            g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (peer)));
        peer_s = g_strdup_printf ("%s:%u", ip,
                                  g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (peer)));
      }
    vps_info (vps_milter_conn_id (conn), "milter: connect from %s",
              peer_s ? peer_s : "unix socket");
  }

  conn->tick_source = g_timeout_source_new (VPS_MILTER_TICK_MS);
  g_source_set_callback (conn->tick_source, on_tick, conn, NULL);
  g_source_attach (conn->tick_source, vps_stream_get_context (conn->stream));
  vps_stream_want_input (conn->stream, TRUE);
}

/* ---- server ---------------------------------------------------------------- */

VpsMilterServer *
vps_milter_server_new (VpsDaemon *daemon)
{
  VpsMilterServer *server = g_new0 (VpsMilterServer, 1);

  server->daemon = daemon;
  return server;
}

gboolean
vps_milter_server_start (VpsMilterServer *server, const char *address, GError **error)
{
  g_return_val_if_fail (server->listener == NULL, FALSE);
  server->listener
      = vps_daemon_listen (server->daemon, "milter", address, on_accept, server, error);
  if (server->listener == NULL)
    return FALSE;
  /* the listener itself logs "milter: listening on ADDRESS" */
  return TRUE;
}

const char *
vps_milter_server_get_address (VpsMilterServer *server)
{
  return server->listener ? vps_listener_get_address (server->listener) : NULL;
}

guint
vps_milter_server_n_sessions (VpsMilterServer *server)
{
  return (guint)g_atomic_int_get (&server->n_sessions);
}

void
vps_milter_server_free (VpsMilterServer *server)
{
  /* the listener belongs to the daemon; connections still open when the
   * workers stopped are abandoned with their (stopped) contexts */
  g_free (server);
}
