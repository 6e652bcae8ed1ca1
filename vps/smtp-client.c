/* SPDX-License-Identifier: MIT
 *
 * smtp-client.c — one message over SMTP, synchronously (contract in
 * smtp-client.h; RFC 5321, RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531
 * SMTPUTF8 as far as the MAIL parameters go).
 *
 * The socket is non-blocking and every wait is a
 * g_socket_condition_timed_wait() with what is left of the overall
 * deadline, so a silent or slow server costs at most the timeout and a
 * cancelled GCancellable ends the wait at once.  Replies are read into one
 * buffer bounded by VPS_SMTP_CLIENT_MAX_REPLY and parsed by
 * mail_reply_parse(), which bounds line length and line count.
 *
 * Commands are built only from parsed addresses (mail_path_get_path) and a
 * checked HELO name, so nothing from the quarantine's JSON reaches the
 * wire unchecked (no CR/LF command injection).
 */
#include "vps/smtp-client.h"

#include <string.h>

#include "proto/mail/mail-address.h"

G_DEFINE_QUARK (vps - smtp - client - error - quark, vps_smtp_client_error)

/* How much is read or written per system call. */
#define IO_CHUNK 65536
/* After a failure the QUIT is a courtesy: it may not take longer than this. */
#define QUIT_GRACE_US (2 * G_USEC_PER_SEC)
/* host:port as given in a configuration file */
#define MAX_HOST_PORT 1024

typedef struct
{
  GSocketConnection *conn;
  GSocket *socket;
  GByteArray *in;  /* read, not yet parsed */
  gint64 deadline; /* monotonic µs */
  GCancellable *cancellable;
  /* extensions from the EHLO reply */
  gboolean ext_size, ext_8bitmime, ext_smtputf8;
} Session;

static void
rcpt_free (gpointer data)
{
  VpsSmtpClientRcpt *r = data;

  g_free (r->address);
  g_clear_pointer (&r->reply, mail_reply_unref);
  g_free (r);
}

void
vps_smtp_client_result_free (VpsSmtpClientResult *result)
{
  if (result == NULL)
    return;
  g_clear_pointer (&result->rcpts, g_ptr_array_unref);
  g_clear_pointer (&result->reply, mail_reply_unref);
  g_free (result);
}

char *
vps_smtp_client_describe_reply (const MailReply *reply)
{
  GString *s = g_string_new (NULL);
  const char *enhanced = mail_reply_get_enhanced (reply);

  g_string_append_printf (s, "%u", mail_reply_get_code (reply));
  if (enhanced != NULL)
    g_string_append_printf (s, " %s", enhanced);
  for (guint i = 0; i < mail_reply_get_n_lines (reply); i++)
    {
      const char *line = mail_reply_get_line (reply, i);

      if (i > 0)
        g_string_append (s, " /");
      if (line[0] != '\0')
        g_string_append_printf (s, " %s", line);
    }
  return g_string_free (s, FALSE);
}

GBytes *
vps_smtp_client_encode_data (const char *data, gsize len)
{
  GByteArray *out = g_byte_array_sized_new (len + len / 32 + 8);
  gboolean bol = TRUE; /* at the beginning of a line */

  g_return_val_if_fail (data != NULL || len == 0, NULL);

  for (gsize i = 0; i < len; i++)
    {
      char c = data[i];

      if (bol && c == '.')
        g_byte_array_append (out, (const guint8 *)".", 1);
      /* CRLF, bare LF and bare CR all end a line with CRLF */
      if (c == '\r' || c == '\n')
        {
          if (c == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
          g_byte_array_append (out, (const guint8 *)"\r\n", 2);
          bol = TRUE;
          continue;
        }
      g_byte_array_append (out, (const guint8 *)&c, 1);
      bol = FALSE;
    }
  if (!bol)
    g_byte_array_append (out, (const guint8 *)"\r\n", 2);
  g_byte_array_append (out, (const guint8 *)".\r\n", 3);
  return g_byte_array_free_to_bytes (out);
}

/* ---- I/O ------------------------------------------------------------------ */

/* Wait until the socket is ready for `cond`, within the deadline. */
static gboolean
wait_for (Session *s, GIOCondition cond, const char *step, GError **error)
{
  g_autoptr (GError) local = NULL;
  gint64 left = s->deadline - g_get_monotonic_time ();

  if (left <= 0)
    {
      g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_TIMEOUT, "%s: timed out",
                   step);
      return FALSE;
    }
  if (g_socket_condition_timed_wait (s->socket, cond, left, s->cancellable, &local))
    return TRUE;
  if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_TIMEOUT, "%s: timed out",
                 step);
  else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_CANCELLED, "%s: cancelled",
                 step);
  else
    g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_IO, "%s: %s", step,
                 local->message);
  return FALSE;
}

static gboolean
send_all (Session *s, const char *data, gsize len, const char *step, GError **error)
{
  gsize off = 0;

  while (off < len)
    {
      g_autoptr (GError) local = NULL;
      gssize n;

      if (!wait_for (s, G_IO_OUT, step, error))
        return FALSE;
      n = g_socket_send (s->socket, data + off, MIN (len - off, (gsize)IO_CHUNK), s->cancellable,
                         &local);
      if (n < 0)
        {
          if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            continue;
          g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_IO,
                       "%s: write failed: %s", step, local->message);
          return FALSE;
        }
      off += (gsize)n;
    }
  return TRUE;
}

/* One complete reply: parse what is buffered, read more while it is
 * incomplete.  Bytes after the reply stay buffered. */
static MailReply *
read_reply (Session *s, const char *step, GError **error)
{
  for (;;)
    {
      g_autoptr (GError) local = NULL;
      guint8 buf[4096];
      gssize n;

      if (s->in->len > 0)
        {
          gsize consumed = 0;
          MailReply *r
              = mail_reply_parse ((const char *)s->in->data, s->in->len, &consumed, &local);

          if (r != NULL)
            {
              g_byte_array_remove_range (s->in, 0, (guint)consumed);
              return r;
            }
          if (!g_error_matches (local, MAIL_ERROR, MAIL_ERROR_INCOMPLETE))
            {
              g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_PROTOCOL,
                           "%s: malformed reply: %s", step, local->message);
              return NULL;
            }
          g_clear_error (&local);
          if (s->in->len >= VPS_SMTP_CLIENT_MAX_REPLY)
            {
              g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_PROTOCOL,
                           "%s: reply longer than %d bytes", step, VPS_SMTP_CLIENT_MAX_REPLY);
              return NULL;
            }
        }
      if (!wait_for (s, G_IO_IN, step, error))
        return NULL;
      n = g_socket_receive (s->socket, (char *)buf,
                            MIN (sizeof buf, (gsize)VPS_SMTP_CLIENT_MAX_REPLY - s->in->len),
                            s->cancellable, &local);
      if (n < 0)
        {
          if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            continue;
          g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_IO,
                       "%s: read failed: %s", step, local->message);
          return NULL;
        }
      if (n == 0)
        {
          g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_IO,
                       "%s: the server closed the connection", step);
          return NULL;
        }
      g_byte_array_append (s->in, buf, (guint)n);
    }
}

/* Send "line\r\n" (line has no CR/LF: built here from checked parts) and
 * read the reply. */
static MailReply *
command (Session *s, const char *line, const char *step, GError **error)
{
  g_autofree char *wire = g_strconcat (line, "\r\n", NULL);

  if (!send_all (s, wire, strlen (wire), step, error))
    return NULL;
  return read_reply (s, step, error);
}

/* A reply whose first digit is not `want`: the error for it. */
static void
set_reply_error (const MailReply *reply, const char *step, GError **error)
{
  g_autofree char *text = vps_smtp_client_describe_reply (reply);
  guint klass = mail_reply_get_code (reply) / 100;
  VpsSmtpClientError code = klass == 4   ? VPS_SMTP_CLIENT_ERROR_TEMPFAIL
                            : klass == 5 ? VPS_SMTP_CLIENT_ERROR_REJECTED
                                         : VPS_SMTP_CLIENT_ERROR_PROTOCOL;

  g_set_error (error, VPS_SMTP_CLIENT_ERROR, code, "%s: %s%s", step,
               code == VPS_SMTP_CLIENT_ERROR_PROTOCOL ? "unexpected reply " : "", text);
}

static gboolean
expect (const MailReply *reply, guint klass, const char *step, GError **error)
{
  if (mail_reply_get_code (reply) / 100 == klass)
    return TRUE;
  set_reply_error (reply, step, error);
  return FALSE;
}

/* The courtesy QUIT after a failure the server answered: bounded by
 * QUIT_GRACE_US, its outcome ignored. */
static void
quit_quietly (Session *s)
{
  g_autoptr (MailReply) r = NULL;

  s->deadline = MIN (s->deadline, g_get_monotonic_time () + QUIT_GRACE_US);
  r = command (s, "QUIT", "QUIT", NULL);
}

/* ---- the transaction ------------------------------------------------------ */

static void
read_extensions (Session *s, const MailReply *ehlo)
{
  /* line 0 is the greeting text; each further line one extension */
  for (guint i = 1; i < mail_reply_get_n_lines (ehlo); i++)
    {
      const char *line = mail_reply_get_line (ehlo, i);
      gsize kw = strcspn (line, " ");

      if (kw == 4 && g_ascii_strncasecmp (line, "SIZE", 4) == 0)
        s->ext_size = TRUE;
      else if (kw == 8 && g_ascii_strncasecmp (line, "8BITMIME", 8) == 0)
        s->ext_8bitmime = TRUE;
      else if (kw == 8 && g_ascii_strncasecmp (line, "SMTPUTF8", 8) == 0)
        s->ext_smtputf8 = TRUE;
    }
}

static gboolean
greet (Session *s, const char *helo, GError **error)
{
  g_autoptr (MailReply) r = NULL;
  g_autofree char *ehlo = g_strconcat ("EHLO ", helo, NULL);

  if ((r = read_reply (s, "greeting", error)) == NULL)
    return FALSE;
  if (!expect (r, 2, "greeting", error))
    return FALSE;
  g_clear_pointer (&r, mail_reply_unref);
  if ((r = command (s, ehlo, "EHLO", error)) == NULL)
    return FALSE;
  if (mail_reply_get_code (r) / 100 == 2)
    {
      read_extensions (s, r);
      return TRUE;
    }
  /* an RFC 821 server: 500/502 to EHLO, then HELO without extensions */
  if (mail_reply_get_code (r) / 100 == 5)
    {
      g_autofree char *helo_cmd = g_strconcat ("HELO ", helo, NULL);

      g_clear_pointer (&r, mail_reply_unref);
      if ((r = command (s, helo_cmd, "HELO", error)) == NULL)
        return FALSE;
      return expect (r, 2, "HELO", error);
    }
  set_reply_error (r, "EHLO", error);
  return FALSE;
}

static gboolean
has_8bit (const guint8 *data, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if (data[i] & 0x80)
      return TRUE;
  return FALSE;
}

/* "RCPT TO: no recipient accepted: <a>: 550 ...; <b>: 450 ..." */
static void
set_rcpts_error (GPtrArray *rcpts, GError **error)
{
  g_autoptr (GString) s = g_string_new ("RCPT TO: no recipient accepted:");
  gboolean any_temp = FALSE;

  for (guint i = 0; i < rcpts->len; i++)
    {
      VpsSmtpClientRcpt *r = g_ptr_array_index (rcpts, i);
      g_autofree char *text = vps_smtp_client_describe_reply (r->reply);

      any_temp |= mail_reply_get_code (r->reply) / 100 == 4;
      g_string_append_printf (s, "%s <%s>: %s", i ? ";" : "", r->address, text);
    }
  g_set_error_literal (error, VPS_SMTP_CLIENT_ERROR,
                       any_temp ? VPS_SMTP_CLIENT_ERROR_TEMPFAIL : VPS_SMTP_CLIENT_ERROR_REJECTED,
                       s->str);
}

/* Everything after the greeting: MAIL, RCPT..., DATA, the data, QUIT. */
static VpsSmtpClientResult *
transaction (Session *s, MailPath *sender, GPtrArray *paths, const char *const *recipients,
             GBytes *message, GError **error)
{
  g_autoptr (VpsSmtpClientResult) result = g_new0 (VpsSmtpClientResult, 1);
  g_autoptr (GBytes) data = NULL;
  g_autoptr (GString) mail = g_string_new ("MAIL FROM:");
  g_autoptr (MailReply) r = NULL;
  g_autofree char *mail_step = NULL;
  gsize raw_len = 0;
  const guint8 *raw = g_bytes_get_data (message, &raw_len);
  gboolean utf8 = mail_path_is_utf8 (sender);
  const char *wire;
  gsize wire_len;

  result->rcpts = g_ptr_array_new_with_free_func (rcpt_free);
  for (guint i = 0; i < paths->len; i++)
    utf8 |= mail_path_is_utf8 (g_ptr_array_index (paths, i));
  if (utf8 && !s->ext_smtputf8)
    {
      g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_REJECTED,
                   "MAIL FROM: an address needs SMTPUTF8, which the server does not offer");
      return NULL;
    }

  data = vps_smtp_client_encode_data ((const char *)raw, raw_len);
  wire = g_bytes_get_data (data, &wire_len);
  g_string_append (mail, mail_path_get_path (sender));
  mail_step = g_strdup (mail->str);
  if (s->ext_size)
    g_string_append_printf (mail, " SIZE=%" G_GSIZE_FORMAT, wire_len);
  if (s->ext_8bitmime && has_8bit (raw, raw_len))
    g_string_append (mail, " BODY=8BITMIME");
  if (utf8)
    g_string_append (mail, " SMTPUTF8");
  if ((r = command (s, mail->str, mail_step, error)) == NULL)
    return NULL;
  if (!expect (r, 2, mail_step, error))
    return NULL;

  for (guint i = 0; i < paths->len; i++)
    {
      MailPath *p = g_ptr_array_index (paths, i);
      g_autofree char *cmd = g_strconcat ("RCPT TO:", mail_path_get_path (p), NULL);
      VpsSmtpClientRcpt *rc;
      MailReply *rr = command (s, cmd, cmd, error);

      if (rr == NULL)
        return NULL;
      /* 421: the server is closing the channel; nothing more will work */
      if (mail_reply_get_code (rr) == 421)
        {
          set_reply_error (rr, cmd, error);
          mail_reply_unref (rr);
          return NULL;
        }
      rc = g_new0 (VpsSmtpClientRcpt, 1);
      rc->address = g_strdup (recipients[i]);
      rc->reply = rr;
      rc->accepted = mail_reply_get_code (rr) / 100 == 2;
      result->n_accepted += rc->accepted ? 1 : 0;
      g_ptr_array_add (result->rcpts, rc);
    }
  if (result->n_accepted == 0)
    {
      set_rcpts_error (result->rcpts, error);
      return NULL;
    }

  g_clear_pointer (&r, mail_reply_unref);
  if ((r = command (s, "DATA", "DATA", error)) == NULL)
    return NULL;
  if (!expect (r, 3, "DATA", error))
    return NULL;
  g_clear_pointer (&r, mail_reply_unref);
  if (!send_all (s, wire, wire_len, "message data", error))
    return NULL;
  if ((r = read_reply (s, "end of data", error)) == NULL)
    return NULL;
  if (!expect (r, 2, "end of data", error))
    return NULL;
  result->reply = g_steal_pointer (&r);
  return g_steal_pointer (&result);
}

/* The HELO name: printable ASCII without spaces, bounded. */
static gboolean
valid_helo (const char *name)
{
  gsize n = strlen (name);

  if (n == 0 || n > VPS_SMTP_CLIENT_MAX_HELO)
    return FALSE;
  for (gsize i = 0; i < n; i++)
    if (name[i] <= ' ' || name[i] >= 0x7f)
      return FALSE;
  return TRUE;
}

static gboolean
valid_host_port (const char *hp)
{
  gsize n = strlen (hp);

  if (n == 0 || n > MAX_HOST_PORT)
    return FALSE;
  for (gsize i = 0; i < n; i++)
    if ((guchar)hp[i] <= ' ' || (guchar)hp[i] >= 0x7f)
      return FALSE;
  return TRUE;
}

/* Parse every address before connecting: a bad one costs no connection. */
static gboolean
parse_envelope (const char *sender, const char *const *recipients, MailPath **out_sender,
                GPtrArray **out_paths, GError **error)
{
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func ((GDestroyNotify)mail_path_unref);
  g_autoptr (GError) local = NULL;
  MailParseFlags flags = MAIL_PARSE_LENIENT | MAIL_PARSE_SMTPUTF8;
  MailPath *from;

  if (recipients == NULL || recipients[0] == NULL)
    {
      g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_INVALID, "no recipients");
      return FALSE;
    }
  if (g_strv_length ((char **)recipients) > VPS_SMTP_CLIENT_MAX_RCPTS)
    {
      g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_INVALID,
                   "more than %d recipients", VPS_SMTP_CLIENT_MAX_RCPTS);
      return FALSE;
    }
  from = mail_mailbox_parse (sender, -1, flags | MAIL_PARSE_ALLOW_NULL, &local);
  if (from == NULL)
    {
      g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_INVALID, "sender: %s",
                   local->message);
      return FALSE;
    }
  for (gsize i = 0; recipients[i] != NULL; i++)
    {
      MailPath *p
          = mail_mailbox_parse (recipients[i], -1, flags | MAIL_PARSE_ALLOW_POSTMASTER, &local);

      if (p == NULL)
        {
          g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_INVALID,
                       "recipient %" G_GSIZE_FORMAT ": %s", i + 1, local->message);
          mail_path_unref (from);
          return FALSE;
        }
      g_ptr_array_add (paths, p);
    }
  *out_sender = from;
  *out_paths = g_steal_pointer (&paths);
  return TRUE;
}

static GSocketConnection *
connect_to (const char *host_port, gint64 deadline, guint connect_ms, GCancellable *cancellable,
            GError **error)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GError) local = NULL;
  GSocketConnection *conn;
  gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;
  gint64 ms = MIN ((gint64)connect_ms, left_ms);

  /* GSocketClient counts whole seconds */
  g_socket_client_set_timeout (client, (guint)MAX (1, (ms + 999) / 1000));
  conn = g_socket_client_connect_to_host (client, host_port, VPS_SMTP_CLIENT_DEFAULT_PORT,
                                          cancellable, &local);
  if (conn != NULL)
    return conn;
  if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_TIMEOUT,
                 "connect to %s: timed out", host_port);
  else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_CANCELLED,
                 "connect to %s: cancelled", host_port);
  else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT))
    g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_INVALID, "connect to %s: %s",
                 host_port, local->message);
  else
    g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_CONNECT, "connect to %s: %s",
                 host_port, local->message);
  return NULL;
}

VpsSmtpClientResult *
vps_smtp_client_send (const char *host_port, const char *sender, const char *const *recipients,
                      GBytes *message, const VpsSmtpClientOptions *options,
                      GCancellable *cancellable, GError **error)
{
  static const VpsSmtpClientOptions defaults = { 0 };
  const VpsSmtpClientOptions *o = options ? options : &defaults;
  guint timeout_ms = o->timeout_ms ? o->timeout_ms : VPS_SMTP_CLIENT_DEFAULT_TIMEOUT_MS;
  guint connect_ms
      = o->connect_timeout_ms ? o->connect_timeout_ms : VPS_SMTP_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
  const char *helo = o->helo_name ? o->helo_name : g_get_host_name ();
  g_autoptr (MailPath) from = NULL;
  g_autoptr (GPtrArray) paths = NULL;
  g_autoptr (GByteArray) in = NULL;
  g_autoptr (GError) local = NULL;
  VpsSmtpClientResult *result;
  Session s = { 0 };

  g_return_val_if_fail (host_port != NULL && sender != NULL && message != NULL, NULL);

  if (!valid_host_port (host_port))
    {
      g_autofree char *shown = g_strescape (host_port, NULL);

      g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_INVALID,
                   "not a host:port: '%s'", shown);
      return NULL;
    }
  if (!valid_helo (helo))
    {
      if (o->helo_name != NULL)
        {
          g_set_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_INVALID,
                       "not a HELO name");
          return NULL;
        }
      helo = "localhost"; /* the system's name is unusable: still say something */
    }
  if (!parse_envelope (sender, recipients, &from, &paths, error))
    return NULL;

  s.deadline = g_get_monotonic_time () + (gint64)timeout_ms * 1000;
  s.cancellable = cancellable;
  s.conn = connect_to (host_port, s.deadline, MIN (connect_ms, timeout_ms), cancellable, error);
  if (s.conn == NULL)
    return NULL;
  s.socket = g_socket_connection_get_socket (s.conn);
  g_socket_set_timeout (s.socket, 0); /* our waits carry the deadline */
  g_socket_set_blocking (s.socket, FALSE);
  in = s.in = g_byte_array_new ();

  if (!greet (&s, helo, &local))
    result = NULL;
  else
    result = transaction (&s, from, paths, recipients, message, &local);
  /* after a reply the server is still talking to us; after an I/O or
   * protocol failure it is not worth waiting for */
  if (result != NULL || local->code == VPS_SMTP_CLIENT_ERROR_TEMPFAIL
      || local->code == VPS_SMTP_CLIENT_ERROR_REJECTED)
    quit_quietly (&s);
  g_io_stream_close (G_IO_STREAM (s.conn), NULL, NULL);
  g_object_unref (s.conn);
  if (result == NULL)
    g_propagate_error (error, g_steal_pointer (&local));
  return result;
}
