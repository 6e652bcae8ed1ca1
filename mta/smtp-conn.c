/* SPDX-License-Identifier: MIT
 *
 * smtp-conn.c — one SMTP connection's I/O on its worker: non-blocking
 * reads into a bounded buffer, buffered replies, TLS layered in when the
 * session asks (mta/tls.h), delayed replies, deadlines and close.  What
 * the bytes mean is smtp-session.c's and smtp-message.c's business.
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

#include <errno.h>
#include <glib/gprintf.h>
#include <string.h>
#include <sys/socket.h>

#include "vps/log.h"

static void want_input (VpsSmtpConn *conn, gboolean on);
static void read_input (VpsSmtpConn *conn);

VpsSmtpConn *
vps_smtp_conn_new (VpsSmtpServer *server, VpsSmtpWorker *worker, VpsSmtpRole role,
                   GSocket *socket, const char *client_ip)
{
  VpsSmtpConn *conn = g_new0 (VpsSmtpConn, 1);

  conn->ref = 1; /* the connection's own, dropped at close */
  conn->server = server;
  conn->worker = worker;
  conn->role = role;
  conn->context = g_main_context_ref (worker->context);
  conn->socket = g_object_ref (socket);
  conn->fd = g_socket_get_fd (socket);
  conn->client_ip = g_strdup (client_ip);
  conn->in = g_byte_array_sized_new (4096);
  conn->out = g_byte_array_sized_new (1024);
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
  g_clear_object (&conn->socket);
  g_clear_object (&conn->cancellable);
  g_byte_array_unref (conn->in);
  g_byte_array_unref (conn->out);
  g_byte_array_unref (conn->chunk);
  g_ptr_array_unref (conn->rcpt_cmds);
  g_clear_pointer (&conn->mail, smtp_command_free);
  g_clear_pointer (&conn->pending, smtp_command_free);
  g_clear_error (&conn->write_error);
  g_clear_pointer (&conn->tls, vps_tls_conn_free);
  g_clear_pointer (&conn->txn, vps_txn_unref);
  g_clear_pointer (&conn->session, vps_session_unref);
  g_clear_pointer (&conn->engine, vps_engine_unref);
  g_clear_pointer (&conn->setup, vps_smtp_setup_unref);
  g_free (conn->auth_mechanism);
  g_free (conn->auth_user);
  g_free (conn->client_ip);
  g_main_context_unref (conn->context);
  g_free (conn);
}

const char *
vps_smtp_conn_id (VpsSmtpConn *conn)
{
  return vps_session_get_id (conn->session);
}

static void
destroy_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

void
vps_smtp_conn_close (VpsSmtpConn *conn)
{
  if (conn->closed)
    return;
  conn->closed = TRUE;
  g_cancellable_cancel (conn->cancellable);
  destroy_source (&conn->read_source);
  destroy_source (&conn->write_source);
  destroy_source (&conn->delay_source);
  vps_smtp_message_abort (conn);
  if (conn->tls != NULL)
    vps_tls_conn_shutdown (conn->tls);
  g_socket_close (conn->socket, NULL);
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

static gboolean on_writable (GSocket *socket, GIOCondition cond, gpointer data);
static void handshake_step (VpsSmtpConn *conn);

static void
wait_writable (VpsSmtpConn *conn, GIOCondition cond)
{
  if (conn->write_source != NULL && conn->write_cond == cond)
    return;
  destroy_source (&conn->write_source);
  conn->write_cond = cond;
  conn->write_source = g_socket_create_source (conn->socket, cond | G_IO_ERR | G_IO_HUP, NULL);
  g_source_set_callback (conn->write_source, G_SOURCE_FUNC (on_writable), conn, NULL);
  g_source_attach (conn->write_source, conn->context);
}

/* Write as much of conn->out as the socket takes.  FALSE when the
 * connection failed (and is closed). */
static gboolean
write_out (VpsSmtpConn *conn)
{
  while (conn->out->len > 0)
    {
      g_autoptr (GError) error = NULL;
      gsize n = 0;

      if (conn->tls != NULL)
        {
          VpsTlsStatus st = vps_tls_conn_write (conn->tls, conn->out->data, conn->out->len, &n,
                                                &error);
          if (st == VPS_TLS_WANT_WRITE || st == VPS_TLS_WANT_READ)
            {
              wait_writable (conn, st == VPS_TLS_WANT_WRITE ? G_IO_OUT : G_IO_IN);
              return TRUE;
            }
          if (st != VPS_TLS_OK)
            {
              vps_notice (vps_smtp_conn_id (conn), "smtp: TLS write: %s",
                          error ? error->message : "closed");
              vps_smtp_conn_close (conn);
              return FALSE;
            }
        }
      else
        {
          gssize w = send (conn->fd, conn->out->data, conn->out->len, MSG_NOSIGNAL);

          if (w < 0)
            {
              if (errno == EAGAIN || errno == EWOULDBLOCK)
                {
                  wait_writable (conn, G_IO_OUT);
                  return TRUE;
                }
              if (errno == EINTR)
                continue;
              vps_notice (vps_smtp_conn_id (conn), "smtp: write: %s", g_strerror (errno));
              vps_smtp_conn_close (conn);
              return FALSE;
            }
          n = (gsize)w;
        }
      g_byte_array_remove_range (conn->out, 0, (guint)n);
    }
  destroy_source (&conn->write_source);
  return TRUE;
}

void
vps_smtp_conn_flush (VpsSmtpConn *conn)
{
  if (conn->closed || conn->phase == PHASE_HANDSHAKE)
    return; /* handshake_step owns the sources */
  if (!write_out (conn))
    return;
  if (conn->out->len == 0 && conn->close_after_flush)
    {
      vps_smtp_conn_close (conn);
      return;
    }
  want_input (conn, !conn->busy && !conn->close_after_flush
                        && conn->out->len < VPS_SMTP_MAX_OUTPUT);
}

static gboolean
on_writable (GSocket *socket, GIOCondition cond, gpointer data)
{
  VpsSmtpConn *conn = data;

  vps_smtp_conn_ref (conn);
  g_clear_pointer (&conn->write_source, g_source_unref);
  if (conn->phase == PHASE_HANDSHAKE)
    handshake_step (conn);
  else
    {
      vps_smtp_conn_flush (conn);
      /* replies drained below the limit: reading may go on */
      if (!conn->closed && !conn->busy && conn->in->len > 0)
        vps_smtp_session_process (conn);
    }
  vps_smtp_conn_unref (conn);
  return G_SOURCE_REMOVE;
}

/* ---- input ---------------------------------------------------------------- */

static gboolean on_readable (GSocket *socket, GIOCondition cond, gpointer data);

static void
want_input (VpsSmtpConn *conn, gboolean on)
{
  if (conn->closed)
    return;
  if (on && conn->read_source == NULL)
    {
      conn->read_source
          = g_socket_create_source (conn->socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
      g_source_set_callback (conn->read_source, G_SOURCE_FUNC (on_readable), conn, NULL);
      g_source_attach (conn->read_source, conn->context);
    }
  else if (!on)
    destroy_source (&conn->read_source);
}

/* One read into conn->in: >0 bytes, 0 nothing now, -1 closed/failed (the
 * connection is closed). */
static gssize
read_some (VpsSmtpConn *conn)
{
  guint old = conn->in->len;
  gsize n = 0;

  g_byte_array_set_size (conn->in, old + VPS_SMTP_READ_CHUNK);
  if (conn->tls != NULL)
    {
      g_autoptr (GError) error = NULL;
      VpsTlsStatus st
          = vps_tls_conn_read (conn->tls, conn->in->data + old, VPS_SMTP_READ_CHUNK, &n, &error);

      g_byte_array_set_size (conn->in, old + (st == VPS_TLS_OK ? (guint)n : 0));
      if (st == VPS_TLS_WANT_READ)
        return 0;
      if (st == VPS_TLS_WANT_WRITE)
        {
          wait_writable (conn, G_IO_OUT);
          return 0;
        }
      if (st == VPS_TLS_OK)
        return (gssize)n;
      if (st == VPS_TLS_FAILED)
        vps_notice (vps_smtp_conn_id (conn), "smtp: TLS read: %s", error->message);
    }
  else
    {
      gssize r;

      do
        r = recv (conn->fd, conn->in->data + old, VPS_SMTP_READ_CHUNK, 0);
      while (r < 0 && errno == EINTR);
      g_byte_array_set_size (conn->in, old + (r > 0 ? (guint)r : 0));
      if (r > 0)
        return r;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
      if (r < 0)
        vps_notice (vps_smtp_conn_id (conn), "smtp: read: %s", g_strerror (errno));
    }
  /* end of stream */
  if (conn->mail_seen || conn->phase == PHASE_DATA || conn->phase == PHASE_BDAT)
    vps_notice (vps_smtp_conn_id (conn), "smtp: connection lost in a transaction");
  vps_smtp_conn_close (conn);
  return -1;
}

/* Read and process until the socket has nothing more, a step goes
 * asynchronous, or the replies back up. */
static void
read_input (VpsSmtpConn *conn)
{
  vps_smtp_conn_ref (conn);
  while (!conn->closed && !conn->busy && !conn->close_after_flush
         && conn->phase != PHASE_HANDSHAKE && conn->out->len < VPS_SMTP_MAX_OUTPUT)
    {
      gssize n = read_some (conn);

      if (n <= 0)
        break;
      vps_smtp_session_process (conn);
    }
  if (!conn->closed)
    vps_smtp_conn_flush (conn);
  vps_smtp_conn_unref (conn);
}

static gboolean
on_readable (GSocket *socket, GIOCondition cond, gpointer data)
{
  VpsSmtpConn *conn = data;

  if (conn->phase == PHASE_HANDSHAKE)
    {
      vps_smtp_conn_ref (conn);
      handshake_step (conn);
      vps_smtp_conn_unref (conn);
      return G_SOURCE_CONTINUE;
    }
  read_input (conn);
  return G_SOURCE_CONTINUE; /* want_input destroys the source when reading stops */
}

void
vps_smtp_conn_begin_async (VpsSmtpConn *conn)
{
  conn->busy = TRUE;
  want_input (conn, FALSE);
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
      conn->close_after_flush = TRUE;
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
      write_out (conn);
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
      conn->close_after_flush = TRUE;
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
  destroy_source (&conn->delay_source);
  conn->delay_source = g_timeout_source_new ((guint)MAX (delay_ms, 0));
  g_source_set_callback (conn->delay_source, on_delay, d, delayed_reply_free);
  g_source_attach (conn->delay_source, conn->context);
}

/* ---- TLS handshake -------------------------------------------------------- */

static void
handshake_step (VpsSmtpConn *conn)
{
  g_autoptr (GError) error = NULL;
  VpsTlsStatus st = vps_tls_conn_handshake (conn->tls, &error);

  switch (st)
    {
    case VPS_TLS_OK:
      destroy_source (&conn->read_source);
      destroy_source (&conn->write_source);
      conn->phase = PHASE_COMMAND;
      vps_smtp_session_tls_ready (conn);
      return;
    case VPS_TLS_WANT_READ:
      destroy_source (&conn->write_source);
      if (conn->read_source == NULL)
        {
          conn->read_source
              = g_socket_create_source (conn->socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
          g_source_set_callback (conn->read_source, G_SOURCE_FUNC (on_readable), conn, NULL);
          g_source_attach (conn->read_source, conn->context);
        }
      return;
    case VPS_TLS_WANT_WRITE:
      destroy_source (&conn->read_source);
      wait_writable (conn, G_IO_OUT);
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
  conn->tls = vps_tls_conn_new (tls, conn->fd);
  conn->phase = PHASE_HANDSHAKE;
  vps_smtp_conn_set_deadline (conn, conn->handshake_timeout);
  handshake_step (conn);
}
