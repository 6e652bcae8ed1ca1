/* SPDX-License-Identifier: MIT
 *
 * smtp-out-io.c — one outbound SMTP connection's socket: the asynchronous
 * connect (GSocketClient, with our own timeout), non-blocking reads into a
 * bounded buffer cut into replies by mail_reply_parse(), buffered writes
 * that stream the message from the job's GBytes, the STARTTLS handshake
 * (mta/tls-client.h), the phase timer, close.  What the replies mean is
 * smtp-out-session.c's business.
 *
 * Contract (smtp-out-private.h): every callback holds a reference on the
 * connection while it runs and stops touching it once it is closed (the
 * session may complete the job, which may drop the last reference on the
 * VpsSmtpOut).  Input is read whenever the connection is open, idle too:
 * an idle connection that hears anything (a 421 at the server's timeout)
 * or sees the peer close is dropped from the cache at once.  With TLS the
 * socket may show nothing while OpenSSL holds decrypted bytes, so a read
 * loops until OpenSSL wants the socket again.  Plaintext that follows the
 * 220 to STARTTLS is dropped before the handshake (the client side of
 * CVE-2011-0411: a man in the middle must not inject replies).
 */
#include "mta/smtp-out-private.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "vps/log.h"

/* What one read takes from the socket. */
#define READ_CHUNK 16384
/* The most unparsed input kept: one reply at proto/mail's limits (a
 * longer line or reply is refused by mail_reply_parse before this). */
#define SMTP_OUT_MAX_INPUT (MAIL_MAX_REPLY_PARSE_LINE * MAIL_MAX_REPLY_PARSE_LINES + READ_CHUNK)

static void flush (SmtpOutConn *conn);
static void read_input (SmtpOutConn *conn);
static void handshake_step (SmtpOutConn *conn);

static const char *
conn_log_id (SmtpOutConn *conn)
{
  return smtp_out_log_id (conn->job);
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

SmtpOutConn *
smtp_out_conn_new (VpsSmtpOut *out, SmtpOutJob *job)
{
  SmtpOutConn *conn = g_new0 (SmtpOutConn, 1);

  conn->ref = 1; /* the connection's own, dropped at close */
  conn->out = out;
  conn->state = SMTP_OUT_CONNECTING;
  conn->key = g_strdup (job->key);
  conn->remote = g_strdup (job->result->remote);
  conn->address = g_strdup (job->address);
  conn->port = job->port;
  conn->mx_name = g_strdup (job->mx_name);
  conn->policy = job->tls;
  conn->plaintext = job->plaintext;
  conn->fd = -1;
  conn->in = g_byte_array_sized_new (1024);
  conn->out_buf = g_byte_array_sized_new (1024);
  conn->expect = g_array_new (FALSE, FALSE, sizeof (SmtpOutExpect));
  conn->rcpt_lines = g_ptr_array_new_with_free_func (g_free);
  conn->rcpt_ids = g_array_new (FALSE, FALSE, sizeof (guint));
  conn->job = job;
  conn->conns_link.data = conn;
  g_queue_push_tail_link (&out->conns, &conn->conns_link);
  return conn;
}

SmtpOutConn *
smtp_out_conn_ref (SmtpOutConn *conn)
{
  conn->ref++;
  return conn;
}

void
smtp_out_conn_unref (SmtpOutConn *conn)
{
  if (conn == NULL || --conn->ref > 0)
    return;
  g_clear_pointer (&conn->tls, vps_tls_client_conn_free);
  g_clear_object (&conn->socket);
  g_clear_object (&conn->connection);
  g_clear_object (&conn->connect_cancel);
  g_byte_array_unref (conn->in);
  g_byte_array_unref (conn->out_buf);
  g_array_unref (conn->expect);
  g_ptr_array_unref (conn->rcpt_lines);
  g_array_unref (conn->rcpt_ids);
  g_free (conn->greeting);
  g_free (conn->key);
  g_free (conn->remote);
  g_free (conn->address);
  g_free (conn->mx_name);
  g_free (conn);
}

void
smtp_out_conn_close (SmtpOutConn *conn)
{
  if (conn->closed)
    return;
  conn->closed = TRUE;
  conn->state = SMTP_OUT_CLOSED;
  smtp_out_cache_remove (conn);
  g_queue_unlink (&conn->out->conns, &conn->conns_link);
  destroy_source (&conn->read_source);
  destroy_source (&conn->write_source);
  destroy_source (&conn->timer);
  if (conn->connect_cancel != NULL)
    g_cancellable_cancel (conn->connect_cancel);
  if (conn->tls != NULL)
    vps_tls_client_conn_shutdown (conn->tls);
  if (conn->socket != NULL)
    g_socket_close (conn->socket, NULL);
  vps_debug (conn_log_id (conn), "smtp-out: closed connection to %s after %u message(s)",
             conn->remote, conn->n_messages);
  smtp_out_conn_unref (conn); /* the connection's own reference */
}

void
smtp_out_conn_fail (SmtpOutConn *conn, VpsSmtpOutTransport transport, const char *fmt, ...)
{
  g_autofree char *message = NULL;
  va_list ap;

  if (conn->closed)
    return;
  va_start (ap, fmt);
  message = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  smtp_out_conn_ref (conn);
  if (conn->job != NULL)
    vps_info (conn_log_id (conn), "smtp-out: %s", message);
  else
    vps_debug (NULL, "smtp-out: idle connection: %s", message);
  smtp_out_conn_close (conn);
  smtp_out_session_transport_failed (conn, transport, message);
  smtp_out_conn_unref (conn);
}

/* ---- timer -------------------------------------------------------------------- */

static gboolean
on_timer (gpointer data)
{
  SmtpOutConn *conn = data;

  g_clear_pointer (&conn->timer, g_source_unref);
  smtp_out_conn_ref (conn);
  switch (conn->phase)
    {
      case SMTP_OUT_PHASE_CONNECT:
        /* the connect callback reports it */
        conn->connect_timed_out = TRUE;
        g_cancellable_cancel (conn->connect_cancel);
        break;
      case SMTP_OUT_PHASE_IDLE:
        smtp_out_conn_quit (conn);
        break;
      case SMTP_OUT_PHASE_QUIT:
        smtp_out_conn_close (conn);
        break;
      default:
        smtp_out_conn_fail (conn, VPS_SMTP_OUT_TRANSPORT_TIMEOUT,
                            "conversation with %s timed out while %s", conn->remote,
                            smtp_out_phase_doing (conn->phase));
        break;
    }
  smtp_out_conn_unref (conn);
  return G_SOURCE_REMOVE;
}

void
smtp_out_conn_set_timer (SmtpOutConn *conn, guint ms, SmtpOutPhase phase)
{
  if (conn->closed)
    return;
  destroy_source (&conn->timer);
  conn->phase = phase;
  conn->timer = g_timeout_source_new (ms);
  g_source_set_callback (conn->timer, on_timer, conn, NULL);
  g_source_attach (conn->timer, conn->out->context);
}

/* ---- reading ------------------------------------------------------------------ */

static gboolean
on_readable (GSocket *socket, GIOCondition cond, gpointer data)
{
  SmtpOutConn *conn = data;

  smtp_out_conn_ref (conn);
  if (conn->state == SMTP_OUT_HANDSHAKE)
    handshake_step (conn);
  else
    read_input (conn);
  smtp_out_conn_unref (conn);
  return G_SOURCE_CONTINUE; /* read_input replaces or destroys it as needed */
}

static void
wait_readable (SmtpOutConn *conn, GIOCondition cond)
{
  if (conn->closed || (conn->read_source != NULL && conn->read_cond == cond))
    return;
  destroy_source (&conn->read_source);
  conn->read_cond = cond;
  conn->read_source = g_socket_create_source (conn->socket, cond | G_IO_ERR | G_IO_HUP, NULL);
  g_source_set_callback (conn->read_source, G_SOURCE_FUNC (on_readable), conn, NULL);
  g_source_attach (conn->read_source, conn->out->context);
}

/* The peer closed (or reset) the connection. */
static void
input_closed (SmtpOutConn *conn, const char *why)
{
  if (conn->state == SMTP_OUT_IDLE || conn->state == SMTP_OUT_QUIT)
    {
      smtp_out_conn_close (conn);
      return;
    }
  smtp_out_conn_fail (conn, VPS_SMTP_OUT_TRANSPORT_CLOSED, "lost connection with %s while %s%s%s",
                      conn->remote, smtp_out_phase_doing (conn->phase), why != NULL ? ": " : "",
                      why != NULL ? why : "");
}

/* Hand every complete reply in the buffer to the session. */
static void
process_replies (SmtpOutConn *conn)
{
  gsize done = 0;

  while (!conn->closed && done < conn->in->len)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MailReply) reply = NULL;
      gsize consumed = 0;

      reply = mail_reply_parse ((const char *)conn->in->data + done, conn->in->len - done,
                                &consumed, &error);
      if (reply == NULL)
        {
          if (g_error_matches (error, MAIL_ERROR, MAIL_ERROR_INCOMPLETE))
            break;
          smtp_out_conn_fail (conn, VPS_SMTP_OUT_TRANSPORT_PROTOCOL,
                              "malformed reply from %s while %s: %s", conn->remote,
                              smtp_out_phase_doing (conn->phase), error->message);
          return;
        }
      done += consumed;
      smtp_out_session_reply (conn, reply);
    }
  if (!conn->closed && done > 0)
    g_byte_array_remove_range (conn->in, 0, (guint)done);
}

static void
read_input (SmtpOutConn *conn)
{
  guint8 buf[READ_CHUNK];

  while (!conn->closed && conn->state != SMTP_OUT_HANDSHAKE)
    {
      gsize n = 0;

      if (conn->tls != NULL)
        {
          g_autoptr (GError) error = NULL;
          VpsTlsStatus st = vps_tls_client_conn_read (conn->tls, buf, sizeof buf, &n, &error);

          if (st == VPS_TLS_WANT_READ || st == VPS_TLS_WANT_WRITE)
            {
              wait_readable (conn, st == VPS_TLS_WANT_READ ? G_IO_IN : G_IO_OUT);
              return;
            }
          if (st == VPS_TLS_CLOSED)
            {
              input_closed (conn, NULL);
              return;
            }
          if (st == VPS_TLS_FAILED)
            {
              input_closed (conn, error->message);
              return;
            }
        }
      else
        {
          gssize r = recv (conn->fd, buf, sizeof buf, 0);

          if (r < 0 && errno == EINTR)
            continue;
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            {
              wait_readable (conn, G_IO_IN);
              return;
            }
          if (r < 0)
            {
              int saved_errno = errno;
              input_closed (conn, g_strerror (saved_errno));
              return;
            }
          if (r == 0)
            {
              /* replies already read still count: a 421 before the close */
              process_replies (conn);
              if (!conn->closed)
                input_closed (conn, NULL);
              return;
            }
          n = (gsize)r;
        }
      g_byte_array_append (conn->in, buf, (guint)n);
      process_replies (conn);
      if (!conn->closed && conn->in->len > SMTP_OUT_MAX_INPUT)
        {
          smtp_out_conn_fail (conn, VPS_SMTP_OUT_TRANSPORT_PROTOCOL,
                              "reply from %s over %d octets while %s", conn->remote,
                              SMTP_OUT_MAX_INPUT, smtp_out_phase_doing (conn->phase));
          return;
        }
    }
}

/* ---- writing ------------------------------------------------------------------ */

static gboolean
on_writable (GSocket *socket, GIOCondition cond, gpointer data)
{
  SmtpOutConn *conn = data;

  smtp_out_conn_ref (conn);
  destroy_source (&conn->write_source);
  flush (conn);
  smtp_out_conn_unref (conn);
  return G_SOURCE_REMOVE;
}

static void
wait_writable (SmtpOutConn *conn, GIOCondition cond)
{
  if (conn->write_source != NULL && conn->write_cond == cond)
    return;
  destroy_source (&conn->write_source);
  conn->write_cond = cond;
  conn->write_source = g_socket_create_source (conn->socket, cond | G_IO_ERR | G_IO_HUP, NULL);
  g_source_set_callback (conn->write_source, G_SOURCE_FUNC (on_writable), conn, NULL);
  g_source_attach (conn->write_source, conn->out->context);
}

/* More of the message into out_buf: one chunk of the content, dot-stuffed
 * unless it goes by BDAT; the end line after the last one. */
static void
refill_body (SmtpOutConn *conn)
{
  gsize size = 0;
  const guint8 *data = g_bytes_get_data (conn->job->content, &size);
  gsize n = MIN (size - conn->body_off, (gsize)VPS_SMTP_OUT_WRITE_CHUNK);

  if (conn->body_raw)
    g_byte_array_append (conn->out_buf, data + conn->body_off, (guint)n);
  else
    smtp_dot_stuffer_feed (&conn->stuffer, data + conn->body_off, n, conn->out_buf);
  conn->body_off += n;
  if (conn->body_off == size)
    {
      if (!conn->body_raw)
        smtp_dot_stuffer_finish (&conn->stuffer, conn->out_buf);
      conn->body_state = 2;
    }
}

static void
flush (SmtpOutConn *conn)
{
  while (!conn->closed)
    {
      g_autoptr (GError) error = NULL;
      const guint8 *p;
      gsize len, n = 0;

      if (conn->out_off == conn->out_buf->len)
        {
          g_byte_array_set_size (conn->out_buf, 0);
          conn->out_off = 0;
          if (conn->body_state == 1 && conn->job != NULL)
            {
              refill_body (conn);
              continue;
            }
          if (conn->body_state == 2)
            {
              conn->body_state = 0;
              smtp_out_session_body_sent (conn);
            }
          return;
        }
      p = conn->out_buf->data + conn->out_off;
      len = conn->out_buf->len - conn->out_off;
      if (conn->tls != NULL)
        {
          VpsTlsStatus st = vps_tls_client_conn_write (conn->tls, p, len, &n, &error);

          if (st == VPS_TLS_WANT_WRITE || st == VPS_TLS_WANT_READ)
            {
              wait_writable (conn, st == VPS_TLS_WANT_WRITE ? G_IO_OUT : G_IO_IN);
              return;
            }
          if (st != VPS_TLS_OK)
            {
              smtp_out_conn_fail (conn, VPS_SMTP_OUT_TRANSPORT_CLOSED,
                                  "lost connection with %s while %s: %s", conn->remote,
                                  smtp_out_phase_doing (conn->phase),
                                  error != NULL ? error->message : "closed");
              return;
            }
        }
      else
        {
          gssize w = send (conn->fd, p, len, MSG_NOSIGNAL);

          if (w < 0 && errno == EINTR)
            continue;
          if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            {
              wait_writable (conn, G_IO_OUT);
              return;
            }
          if (w < 0)
            {
              int saved_errno = errno;
              smtp_out_conn_fail (conn, VPS_SMTP_OUT_TRANSPORT_CLOSED,
                                  "lost connection with %s while %s: %s", conn->remote,
                                  smtp_out_phase_doing (conn->phase), g_strerror (saved_errno));
              return;
            }
          n = (gsize)w;
        }
      conn->out_off += n;
      /* the message timer runs per block: progress restarts it */
      if (conn->body_state != 0 && n > 0)
        smtp_out_conn_set_timer (conn, conn->out->t.data_block, SMTP_OUT_PHASE_BODY);
    }
}

void
smtp_out_conn_send (SmtpOutConn *conn, const char *data, gsize len)
{
  if (conn->closed || conn->socket == NULL)
    return;
  g_byte_array_append (conn->out_buf, (const guint8 *)data, (guint)len);
  if (conn->write_source == NULL)
    flush (conn);
}

void
smtp_out_conn_send_str (SmtpOutConn *conn, const char *line)
{
  smtp_out_conn_send (conn, line, strlen (line));
}

void
smtp_out_conn_send_body (SmtpOutConn *conn, gboolean raw)
{
  if (conn->closed)
    return;
  conn->body_state = 1;
  conn->body_raw = raw;
  conn->body_off = 0;
  smtp_dot_stuffer_init (&conn->stuffer);
  smtp_out_conn_set_timer (conn, conn->out->t.data_block, SMTP_OUT_PHASE_BODY);
  if (conn->write_source == NULL)
    flush (conn);
}

void
smtp_out_conn_quit (SmtpOutConn *conn)
{
  if (conn->closed)
    return;
  smtp_out_cache_remove (conn);
  conn->state = SMTP_OUT_QUIT;
  smtp_out_conn_set_timer (conn, conn->out->t.quit, SMTP_OUT_PHASE_QUIT);
  smtp_out_conn_send_str (conn, "QUIT\r\n");
}

/* ---- TLS ---------------------------------------------------------------------- */

static void
handshake_step (SmtpOutConn *conn)
{
  g_autoptr (GError) error = NULL;
  VpsTlsStatus st = vps_tls_client_conn_handshake (conn->tls, &error);

  switch (st)
    {
      case VPS_TLS_WANT_READ:
        wait_readable (conn, G_IO_IN);
        return;
      case VPS_TLS_WANT_WRITE:
        wait_readable (conn, G_IO_OUT);
        return;
      case VPS_TLS_OK:
        conn->tls_up = TRUE;
        conn->tls_verified = vps_tls_client_conn_is_verified (conn->tls);
        vps_info (conn_log_id (conn),
                  "smtp-out: %s TLS connection established to %s: %s with "
                  "cipher %s",
                  conn->tls_verified ? "Verified" : "Untrusted", conn->remote,
                  vps_tls_client_conn_get_version (conn->tls),
                  vps_tls_client_conn_get_cipher (conn->tls));
        conn->state = SMTP_OUT_EHLO; /* the session sends EHLO again */
        wait_readable (conn, G_IO_IN);
        smtp_out_session_tls_done (conn);
        return;
      case VPS_TLS_CLOSED:
      case VPS_TLS_FAILED:
      default:
        if (error == NULL)
          g_set_error_literal (&error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_HANDSHAKE,
                               "TLS handshake: failed");
        smtp_out_session_tls_failed (conn, error);
        return;
    }
}

void
smtp_out_conn_start_tls (SmtpOutConn *conn)
{
  if (conn->closed)
    return;
  if (conn->in->len > 0)
    {
      vps_notice (conn_log_id (conn),
                  "smtp-out: %s sent %u octets after its 220 to STARTTLS: discarded", conn->remote,
                  conn->in->len);
      g_byte_array_set_size (conn->in, 0);
    }
  conn->tls = vps_tls_client_conn_new (conn->out->tls, conn->fd, conn->mx_name,
                                       conn->policy == VPS_SMTP_OUT_TLS_VERIFY);
  conn->state = SMTP_OUT_HANDSHAKE;
  smtp_out_conn_set_timer (conn, conn->out->t.starttls, SMTP_OUT_PHASE_TLS);
  handshake_step (conn);
}

/* ---- connect ------------------------------------------------------------------ */

static void
on_connected (GObject *source, GAsyncResult *res, gpointer data)
{
  SmtpOutConn *conn = data;
  g_autoptr (GError) error = NULL;
  GSocketConnection *c = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), res, &error);

  if (conn->closed)
    {
      if (c != NULL)
        {
          g_io_stream_close (G_IO_STREAM (c), NULL, NULL);
          g_object_unref (c);
        }
      smtp_out_conn_unref (conn); /* the connect's reference */
      return;
    }
  g_clear_object (&conn->connect_cancel);
  if (c == NULL)
    {
      smtp_out_conn_fail (conn, VPS_SMTP_OUT_TRANSPORT_CONNECT_FAILED, "connect to %s: %s",
                          conn->remote,
                          conn->connect_timed_out ? "Connection timed out" : error->message);
      smtp_out_conn_unref (conn);
      return;
    }
  conn->connection = c;
  conn->socket = g_object_ref (g_socket_connection_get_socket (c));
  conn->fd = g_socket_get_fd (conn->socket);
  g_socket_set_blocking (conn->socket, FALSE);
  /* commands and replies alternate: do not hold small segments back */
  g_socket_set_option (conn->socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  vps_debug (conn_log_id (conn), "smtp-out: connected to %s", conn->remote);
  wait_readable (conn, G_IO_IN);
  smtp_out_session_connected (conn);
  smtp_out_conn_unref (conn);
}

void
smtp_out_conn_connect (SmtpOutConn *conn)
{
  g_autoptr (GInetAddress) addr = g_inet_address_new_from_string (conn->address);
  g_autoptr (GSocketAddress) sa = NULL;

  /* checked by send_async */
  g_return_if_fail (addr != NULL);
  sa = g_inet_socket_address_new (addr, conn->port);
  conn->connect_cancel = g_cancellable_new ();
  smtp_out_conn_set_timer (conn, conn->out->t.connect, SMTP_OUT_PHASE_CONNECT);
  g_socket_client_connect_async (conn->out->client, G_SOCKET_CONNECTABLE (sa), conn->connect_cancel,
                                 on_connected, smtp_out_conn_ref (conn));
}
