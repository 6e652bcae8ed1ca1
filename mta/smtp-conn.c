/* SPDX-License-Identifier: MIT
 *
 * smtp-conn.c — one SMTP connection's I/O on its worker: its stream
 * (vps/stream.h: non-blocking reads into a bounded buffer, buffered
 * replies), TLS layered in when the session asks (mta/tls.h) by replacing
 * the stream's recv/send, delayed replies, deadlines and close.  What the
 * bytes mean is smtp-session.c's and smtp-message.c's business.
 *
 * Contract (smtp-private.h): input is read only while no asynchronous step
 * is in flight and the output is not backed up; every read is handed to
 * vps_smtp_session_process(), which consumes what it can.  With TLS the
 * socket may show nothing while OpenSSL holds decrypted bytes, so after an
 * asynchronous step the connection reads at once instead of waiting for
 * the socket to become readable.  Close is idempotent and releases
 * everything the connection holds (queue file, per-IP count, session).
 */
#include "mta/smtp-private.h"

#include <glib/gprintf.h>
#include <string.h>

#include "vps/log.h"

static void read_input (VpsSmtpConn *conn);
static const VpsStreamCallbacks stream_callbacks;

VpsSmtpConn *
vps_smtp_conn_new (VpsSmtpServer *server, VpsSmtpWorker *worker, VpsSmtpRole role, GSocket *socket,
                   const char *client_ip)
{
  VpsSmtpConn *conn = g_new0 (VpsSmtpConn, 1);

  conn->ref = 1; /* the connection's own, dropped at close */
  conn->server = server;
  conn->worker = worker;
  conn->role = role;
  conn->stream
      = vps_stream_new (socket, worker->context, VPS_SMTP_READ_CHUNK, &stream_callbacks, conn);
  conn->in = vps_stream_get_input (conn->stream);
  conn->out = vps_stream_get_output (conn->stream);
  conn->client_ip = g_strdup (client_ip);
  conn->chunk = g_byte_array_new ();
  conn->rcpt_cmds = g_ptr_array_new_with_free_func ((GDestroyNotify)smtp_command_free);
  conn->session = vps_session_new ();
  conn->cancellable = g_cancellable_new ();
  smtp_line_reader_init (&conn->reader);
  conn->link.data = conn;
  g_queue_push_tail_link (&worker->conns, &conn->link);
  return conn;
}

VpsSmtpConn *
vps_smtp_conn_ref (VpsSmtpConn *conn)
{
  g_atomic_int_inc (&conn->ref);
  return conn;
}

void
vps_smtp_conn_unref (VpsSmtpConn *conn)
{
  if (conn == NULL || !g_atomic_int_dec_and_test (&conn->ref))
    return;
  g_clear_object (&conn->cancellable);
  g_byte_array_unref (conn->chunk);
  g_ptr_array_unref (conn->rcpt_cmds);
  g_clear_pointer (&conn->mail, smtp_command_free);
  g_clear_pointer (&conn->pending, smtp_command_free);
  g_clear_error (&conn->write_error);
  /* the stream first: its I/O may point at the TLS connection */
  g_clear_pointer (&conn->stream, vps_stream_unref);
  g_clear_pointer (&conn->tls, vps_tls_conn_free);
  g_clear_pointer (&conn->txn, vps_txn_unref);
  g_clear_pointer (&conn->session, vps_session_unref);
  g_clear_pointer (&conn->engine, vps_engine_unref);
  g_clear_pointer (&conn->setup, vps_smtp_setup_unref);
  g_free (conn->auth_mechanism);
  g_free (conn->auth_user);
  g_free (conn->client_ip);
  g_free (conn);
}

const char *
vps_smtp_conn_id (VpsSmtpConn *conn)
{
  return vps_session_get_id (conn->session);
}

void
vps_smtp_conn_close (VpsSmtpConn *conn)
{
  if (conn->closed)
    return;
  conn->closed = TRUE;
  g_cancellable_cancel (conn->cancellable);
  if (conn->delay_source != NULL)
    {
      g_source_destroy (conn->delay_source);
      g_clear_pointer (&conn->delay_source, g_source_unref);
    }
  vps_smtp_message_abort (conn);
  if (conn->tls != NULL)
    vps_tls_conn_shutdown (conn->tls);
  vps_stream_close (conn->stream);
  g_queue_unlink (&conn->worker->conns, &conn->link);
  vps_info (vps_smtp_conn_id (conn), "smtp: disconnect from [%s] messages=%u errors=%u",
            conn->client_ip, conn->n_messages, conn->errors);
  vps_smtp_server_ip_release (conn->server, conn->client_ip);
  g_atomic_int_add (&conn->server->n_sessions, -1);
  vps_daemon_session_end (conn->server->daemon);
  vps_smtp_conn_unref (conn); /* the connection's own reference */
}

/* ---- output --------------------------------------------------------------- */

void
vps_smtp_conn_write (VpsSmtpConn *conn, const char *text, gsize len)
{
  g_byte_array_append (conn->out, (const guint8 *)text, (guint)len);
}

void
vps_smtp_conn_printf (VpsSmtpConn *conn, const char *fmt, ...)
{
  g_autofree char *text = NULL;
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = g_vasprintf (&text, fmt, ap);
  va_end (ap);
  if (n > 0)
    vps_smtp_conn_write (conn, text, (gsize)n);
}

void
vps_smtp_conn_reply (VpsSmtpConn *conn, const MailReply *reply)
{
  g_autofree char *text = mail_reply_format (reply);

  vps_smtp_conn_write (conn, text, strlen (text));
}

static void handshake_step (VpsSmtpConn *conn);

void
vps_smtp_conn_flush (VpsSmtpConn *conn)
{
  if (conn->closed || conn->phase == PHASE_HANDSHAKE)
    return; /* handshake_step owns the sources */
  /* a failed write, or the last reply written, ends in on_closed */
  if (!vps_stream_flush (conn->stream))
    return;
  vps_stream_want_input (conn->stream, !conn->busy && !vps_stream_is_closing (conn->stream)
                                           && conn->out->len < VPS_SMTP_MAX_OUTPUT);
}

/* ---- the stream's callbacks ------------------------------------------------ */

/* The socket took output again (not during the handshake: on_ready). */
static void
on_writable (VpsStream *stream, gpointer data)
{
  VpsSmtpConn *conn = data;

  vps_smtp_conn_ref (conn);
  vps_smtp_conn_flush (conn);
  /* replies drained below the limit: reading may go on */
  if (!conn->closed && !conn->busy && conn->in->len > 0)
    vps_smtp_session_process (conn);
  vps_smtp_conn_unref (conn);
}

/* The socket is ready for the TLS handshake (the stream is held). */
static void
on_ready (VpsStream *stream, GIOCondition cond, gpointer data)
{
  VpsSmtpConn *conn = data;

  vps_smtp_conn_ref (conn);
  handshake_step (conn);
  vps_smtp_conn_unref (conn);
}

/* The stream read once: process it, then read on while we may. */
static void
on_input (VpsStream *stream, gpointer data)
{
  VpsSmtpConn *conn = data;

  vps_smtp_conn_ref (conn);
  vps_smtp_session_process (conn);
  read_input (conn);
  vps_smtp_conn_unref (conn);
}

static void
on_closed (VpsStream *stream, const GError *error, gpointer data)
{
  VpsSmtpConn *conn = data;
  const char *layer = conn->tls != NULL ? "TLS " : "";

  if (error == NULL)
    {
      /* the last reply (421, 221, 554 ...) is written */
      vps_smtp_conn_close (conn);
      return;
    }
  if (g_error_matches (error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_WRITE))
    {
      vps_notice (vps_smtp_conn_id (conn), "smtp: %swrite: %s", layer, error->message);
      vps_smtp_conn_close (conn);
      return;
    }
  if (!g_error_matches (error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_EOF))
    vps_notice (vps_smtp_conn_id (conn), "smtp: %sread: %s", layer, error->message);
  /* end of stream */
  if (conn->mail_seen || conn->phase == PHASE_DATA || conn->phase == PHASE_BDAT)
    vps_notice (vps_smtp_conn_id (conn), "smtp: connection lost in a transaction");
  vps_smtp_conn_close (conn);
}

static const VpsStreamCallbacks stream_callbacks = {
  .input = on_input,
  .closed = on_closed,
  .writable = on_writable,
  .ready = on_ready,
};

/* ---- input ---------------------------------------------------------------- */

/* Read and process until the socket has nothing more, a step goes
 * asynchronous, or the replies back up. */
static void
read_input (VpsSmtpConn *conn)
{
  vps_smtp_conn_ref (conn);
  while (!conn->closed && !conn->busy && !vps_stream_is_closing (conn->stream)
         && conn->phase != PHASE_HANDSHAKE && conn->out->len < VPS_SMTP_MAX_OUTPUT)
    {
      gssize n = vps_stream_read (conn->stream);

      if (n <= 0)
        break;
      vps_smtp_session_process (conn);
    }
  if (!conn->closed)
    vps_smtp_conn_flush (conn);
  vps_smtp_conn_unref (conn);
}

void
vps_smtp_conn_begin_async (VpsSmtpConn *conn)
{
  conn->busy = TRUE;
  vps_stream_want_input (conn->stream, FALSE);
}

void
vps_smtp_conn_end_async (VpsSmtpConn *conn)
{
  if (conn->closed)
    return;
  conn->busy = FALSE;
  /* pipelined commands may be buffered already */
  vps_smtp_session_process (conn);
  if (conn->closed)
    return;
  vps_smtp_conn_flush (conn);
  /* TLS may hold decrypted bytes the socket no longer announces */
  if (!conn->closed && !conn->busy && conn->tls != NULL && vps_tls_conn_pending (conn->tls) > 0)
    read_input (conn);
}

/* ---- deadlines and delayed replies --------------------------------------- */

void
vps_smtp_conn_set_deadline (VpsSmtpConn *conn, gint64 timeout)
{
  conn->deadline = timeout > 0 ? g_get_monotonic_time () + timeout : 0;
}

void
vps_smtp_conn_tick (VpsSmtpConn *conn, gint64 now, gboolean draining)
{
  if (conn->closed)
    return;
  if (conn->deadline != 0 && now >= conn->deadline && !conn->busy)
    {
      conn->deadline = 0;
      vps_smtp_session_timeout (conn);
      return;
    }
  /* A drain ends every session waiting for a command with 421 (RFC 5321
   * §3.8): a transaction before DATA is lost anyway when we exit, and the
   * client retries; a message being transferred or committed finishes
   * first (up to [vpsd] drain_timeout) and gets its 250. */
  if (draining && !conn->busy && conn->phase == PHASE_COMMAND)
    {
      g_autoptr (MailReply) r = mail_reply_new_default (MAIL_REPLY_SHUTDOWN);

      vps_smtp_conn_reply (conn, r);
      vps_stream_close_after_flush (conn->stream);
      vps_smtp_conn_flush (conn);
    }
}

void
vps_smtp_conn_goodbye (VpsSmtpConn *conn)
{
  g_autoptr (MailReply) r = NULL;

  if (conn->closed)
    return;
  vps_notice (vps_smtp_conn_id (conn), "smtp: drain timeout, closing the session");
  if (conn->phase != PHASE_HANDSHAKE)
    {
      r = mail_reply_new_default (MAIL_REPLY_SHUTDOWN);
      vps_smtp_conn_reply (conn, r);
      /* best effort: one non-blocking write, then close */
      conn->busy = FALSE;
      vps_stream_flush (conn->stream);
    }
  vps_smtp_conn_close (conn);
}

typedef struct
{
  VpsSmtpConn *conn;
  char *text;
  gboolean close_after;
} DelayedReply;

static void
delayed_reply_free (gpointer data)
{
  DelayedReply *d = data;

  vps_smtp_conn_unref (d->conn);
  g_free (d->text);
  g_free (d);
}

static gboolean
on_delay (gpointer data)
{
  DelayedReply *d = data;
  VpsSmtpConn *conn = d->conn;

  g_clear_pointer (&conn->delay_source, g_source_unref);
  if (conn->closed)
    return G_SOURCE_REMOVE;
  vps_smtp_conn_write (conn, d->text, strlen (d->text));
  if (d->close_after)
    {
      vps_stream_close_after_flush (conn->stream);
      vps_smtp_conn_flush (conn);
      return G_SOURCE_REMOVE;
    }
  vps_smtp_conn_end_async (conn);
  return G_SOURCE_REMOVE;
}

void
vps_smtp_conn_reply_later (VpsSmtpConn *conn, char *text, gint64 delay_ms, gboolean close_after)
{
  DelayedReply *d = g_new0 (DelayedReply, 1);

  d->conn = vps_smtp_conn_ref (conn);
  d->text = text;
  d->close_after = close_after;
  /* replies queued before this one go out now; this one waits */
  vps_smtp_conn_flush (conn);
  vps_smtp_conn_begin_async (conn);
  if (conn->delay_source != NULL)
    {
      g_source_destroy (conn->delay_source);
      g_clear_pointer (&conn->delay_source, g_source_unref);
    }
  conn->delay_source = g_timeout_source_new ((guint)MAX (delay_ms, 0));
  g_source_set_callback (conn->delay_source, on_delay, d, delayed_reply_free);
  g_source_attach (conn->delay_source, vps_stream_get_context (conn->stream));
}

/* ---- TLS ------------------------------------------------------------------ */

static VpsStreamStatus
stream_status (VpsTlsStatus st)
{
  switch (st)
    {
      case VPS_TLS_OK:
        return VPS_STREAM_IO_OK;
      case VPS_TLS_WANT_READ:
        return VPS_STREAM_IO_WANT_READ;
      case VPS_TLS_WANT_WRITE:
        return VPS_STREAM_IO_WANT_WRITE;
      case VPS_TLS_CLOSED:
        return VPS_STREAM_IO_CLOSED;
      case VPS_TLS_FAILED:
      default:
        return VPS_STREAM_IO_FAILED;
    }
}

static VpsStreamStatus
tls_recv (gpointer data, guint8 *buf, gsize len, gsize *n, GError **error)
{
  return stream_status (vps_tls_conn_read (data, buf, len, n, error));
}

static VpsStreamStatus
tls_send (gpointer data, const guint8 *buf, gsize len, gsize *n, GError **error)
{
  return stream_status (vps_tls_conn_write (data, buf, len, n, error));
}

static const VpsStreamIO tls_io = { tls_recv, tls_send };

static void
handshake_step (VpsSmtpConn *conn)
{
  g_autoptr (GError) error = NULL;
  VpsTlsStatus st = vps_tls_conn_handshake (conn->tls, &error);

  switch (st)
    {
      case VPS_TLS_OK:
        /* the stream's sources stop; the session's flush re-arms them */
        vps_stream_hold (conn->stream, FALSE);
        conn->phase = PHASE_COMMAND;
        vps_smtp_session_tls_ready (conn);
        return;
      case VPS_TLS_WANT_READ:
        vps_stream_wait (conn->stream, G_IO_IN);
        return;
      case VPS_TLS_WANT_WRITE:
        vps_stream_wait (conn->stream, G_IO_OUT);
        return;
      case VPS_TLS_CLOSED:
      case VPS_TLS_FAILED:
      default:
        vps_notice (vps_smtp_conn_id (conn), "smtp: %s",
                    error ? error->message : "TLS handshake: connection closed");
        vps_smtp_conn_close (conn);
        return;
    }
}

void
vps_smtp_conn_start_tls (VpsSmtpConn *conn)
{
  VpsTlsServer *tls = conn->setup->tls[conn->role];

  g_return_if_fail (tls != NULL && conn->tls == NULL);
  /* CVE-2011-0411: nothing the client sent in plaintext survives */
  g_byte_array_set_size (conn->in, 0);
  smtp_line_reader_init (&conn->reader);
  conn->tls = vps_tls_conn_new (tls, vps_stream_get_fd (conn->stream));
  /* from now on every byte goes through TLS; the handshake drives the
   * socket until it completes */
  vps_stream_set_io (conn->stream, &tls_io, conn->tls);
  vps_stream_hold (conn->stream, TRUE);
  conn->phase = PHASE_HANDSHAKE;
  vps_smtp_conn_set_deadline (conn, conn->handshake_timeout);
  handshake_step (conn);
}
