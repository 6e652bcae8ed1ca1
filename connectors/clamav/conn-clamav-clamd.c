/* SPDX-License-Identifier: MIT
 *
 * conn-clamav-clamd.c — the `clamav` connector with mode = clamd: the
 * message goes to a running clamd through its INSTREAM command (clamd(8),
 * "zINSTREAM"), on a new connection per call, all GIO async on the
 * caller's thread-default context.
 *
 * Wire form: "zINSTREAM\0", then chunks of at most CONN_CLAMAV_CHUNK bytes,
 * each behind its length as 4 bytes in network order, then a zero length.
 * clamd answers one NUL-terminated line: "stream: OK", "stream: NAME FOUND"
 * or "MESSAGE ERROR".  When the stream is longer than its StreamMaxLength
 * clamd answers "INSTREAM size limit exceeded. ERROR" and closes, possibly
 * while we still write: a failed write is therefore followed by a read, and
 * only when no reply comes is the write error the call's error.
 *
 * Contract: a reply longer than CONN_CLAMAV_MAX_REPLY, an unknown reply, a
 * FOUND with an unprintable name, any other ERROR, a refused connection or
 * a connection closed without reply is an error (→ on_error).  The size
 * limit is a scan with limits_exceeded and the name
 * "Heuristics.Limits.Exceeded.StreamMaxLength", as clamd names its other
 * limit hits.  The call's timeout is the wrapper's: it cancels us.
 */
#include <string.h>

#include <gio/gunixsocketaddress.h>

#include "connectors/clamav/conn-clamav-private.h"

#define CLAMD_COMMAND "zINSTREAM" /* sent with its NUL */
#define CLAMD_LIMIT_NAME "Heuristics.Limits.Exceeded.StreamMaxLength"

/* ---- the reply ------------------------------------------------------------ */

static gboolean
has_suffix (const char *s, gsize len, const char *suffix, gsize *head)
{
  gsize n = strlen (suffix);

  if (len < n || memcmp (s + len - n, suffix, n) != 0)
    return FALSE;
  *head = len - n;
  return TRUE;
}

/* The reply for an error message: printable, without control bytes. */
static char *
printable (const char *s, gsize len)
{
  GString *out = g_string_sized_new (len);

  for (gsize i = 0; i < len; i++)
    g_string_append_c (out, g_ascii_isprint (s[i]) ? s[i] : '?');
  return g_string_free (out, FALSE);
}

ConnClamavScan *
conn_clamav_clamd_parse_reply (const char *reply, gsize len, GError **error)
{
  const char *p = reply;
  gsize head;

  while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
    len--;
  if (len >= 8 && memcmp (p, "stream: ", 8) == 0)
    {
      p += 8;
      len -= 8;
    }
  if (len == 2 && memcmp (p, "OK", 2) == 0)
    return g_new0 (ConnClamavScan, 1);
  if (has_suffix (p, len, " FOUND", &head))
    return conn_clamav_scan_new_found (p, head, error);
  if (has_suffix (p, len, " ERROR", &head))
    {
      g_autofree char *msg = printable (p, head);

      if (strstr (msg, "size limit exceeded") != NULL)
        return conn_clamav_scan_new_found (CLAMD_LIMIT_NAME, strlen (CLAMD_LIMIT_NAME), error);
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_CLAMD, "clamd: %s", msg);
      return NULL;
    }
  {
    g_autofree char *msg = printable (p, len);

    g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_CLAMD, "clamd: unknown reply '%s'",
                 msg);
  }
  return NULL;
}

/* ---- the exchange --------------------------------------------------------- */

typedef struct
{
  ConnClamavSettings *settings;
  GBytes *data;
  GSocketConnection *conn;
  GOutputVector *vectors; /* command, (length, chunk)..., end */
  gsize n_vectors;
  guint32 *lengths; /* network order, one per chunk + the final zero */
  GError *write_error;
  char reply[CONN_CLAMAV_MAX_REPLY];
  gsize reply_len;
} Exchange;

static void
exchange_free (gpointer data)
{
  Exchange *x = data;

  conn_clamav_settings_unref (x->settings);
  g_bytes_unref (x->data);
  g_clear_object (&x->conn);
  g_free (x->vectors);
  g_free (x->lengths);
  g_clear_error (&x->write_error);
  g_free (x);
}

static void read_more (GTask *task);

static void
finish_with_reply (GTask *task, Exchange *x, gsize len)
{
  GError *error = NULL;
  ConnClamavScan *r = conn_clamav_clamd_parse_reply (x->reply, len, &error);

  if (r == NULL)
    {
      g_prefix_error (&error, "clamav %s: %s: ", x->settings->name, x->settings->address);
      g_task_return_error (task, error);
    }
  else
    g_task_return_pointer (task, r, (GDestroyNotify)conn_clamav_scan_free);
}

static void
fail (GTask *task, Exchange *x, GError *error)
{
  g_prefix_error (&error, "clamav %s: %s: ", x->settings->name, x->settings->address);
  g_task_return_error (task, error);
}

static void
read_done (GObject *source, GAsyncResult *res, gpointer data)
{
  g_autoptr (GTask) task = data;
  Exchange *x = g_task_get_task_data (task);
  GError *error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &error);
  const char *nul;

  if (n < 0)
    {
      /* the write error tells more (refused stream) than the reset read */
      if (x->write_error != NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_clear_error (&error);
          error = g_steal_pointer (&x->write_error);
        }
      fail (task, x, error);
      return;
    }
  if (n == 0)
    {
      if (x->reply_len > 0) /* a reply without its NUL: take it */
        finish_with_reply (task, x, x->reply_len);
      else if (x->write_error != NULL)
        fail (task, x, g_steal_pointer (&x->write_error));
      else
        fail (task, x,
              g_error_new (CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_CLAMD,
                           "connection closed without a reply"));
      return;
    }
  nul = memchr (x->reply + x->reply_len, '\0', (gsize)n);
  x->reply_len += (gsize)n;
  if (nul != NULL)
    {
      finish_with_reply (task, x, (gsize)(nul - x->reply));
      return;
    }
  if (x->reply_len >= sizeof x->reply)
    {
      fail (task, x,
            g_error_new (CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_CLAMD, "reply longer than %d bytes",
                         CONN_CLAMAV_MAX_REPLY));
      return;
    }
  read_more (g_steal_pointer (&task));
}

/* Takes over the task reference. */
static void
read_more (GTask *task)
{
  Exchange *x = g_task_get_task_data (task);
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (x->conn));

  g_input_stream_read_async (in, x->reply + x->reply_len, sizeof x->reply - x->reply_len,
                             G_PRIORITY_DEFAULT, g_task_get_cancellable (task), read_done, task);
}

static void
written (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;
  Exchange *x = g_task_get_task_data (task);
  GError *error = NULL;

  if (!g_output_stream_writev_all_finish (G_OUTPUT_STREAM (source), res, NULL, &error))
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          fail (task, x, error);
          g_object_unref (task);
          return;
        }
      /* clamd may have refused the stream and said why: read it */
      x->write_error = error;
    }
  read_more (task);
}

static void
build_vectors (Exchange *x)
{
  gsize len = 0;
  const guint8 *p = g_bytes_get_data (x->data, &len);
  gsize chunks = (len + CONN_CLAMAV_CHUNK - 1) / CONN_CLAMAV_CHUNK;
  gsize v = 0;

  x->lengths = g_new0 (guint32, chunks + 1);
  x->n_vectors = 1 + 2 * chunks + 1;
  x->vectors = g_new0 (GOutputVector, x->n_vectors);
  x->vectors[v].buffer = CLAMD_COMMAND;
  x->vectors[v++].size = sizeof CLAMD_COMMAND; /* with its NUL */
  for (gsize i = 0; i < chunks; i++)
    {
      gsize n = MIN (CONN_CLAMAV_CHUNK, len - i * CONN_CLAMAV_CHUNK);

      x->lengths[i] = GUINT32_TO_BE ((guint32)n);
      x->vectors[v].buffer = &x->lengths[i];
      x->vectors[v++].size = 4;
      x->vectors[v].buffer = p + i * CONN_CLAMAV_CHUNK;
      x->vectors[v++].size = n;
    }
  x->lengths[chunks] = 0; /* end of stream */
  x->vectors[v].buffer = &x->lengths[chunks];
  x->vectors[v++].size = 4;
  g_assert (v == x->n_vectors);
}

static void
connected (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;
  Exchange *x = g_task_get_task_data (task);
  GError *error = NULL;

  x->conn = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), res, &error);
  if (x->conn == NULL)
    {
      fail (task, x, error);
      g_object_unref (task);
      return;
    }
  build_vectors (x);
  g_output_stream_writev_all_async (g_io_stream_get_output_stream (G_IO_STREAM (x->conn)),
                                    x->vectors, x->n_vectors, G_PRIORITY_DEFAULT,
                                    g_task_get_cancellable (task), written, task);
}

void
conn_clamav_clamd_scan_async (const ConnClamavSettings *settings, GBytes *data,
                              GCancellable *cancellable, GAsyncReadyCallback callback,
                              gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Exchange *x = g_new0 (Exchange, 1);
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnectable) where = NULL;

  g_task_set_source_tag (task, conn_clamav_clamd_scan_async);
  x->settings = conn_clamav_settings_ref ((ConnClamavSettings *)settings);
  x->data = g_bytes_ref (data);
  g_task_set_task_data (task, x, exchange_free);
  if (settings->path != NULL)
    where = G_SOCKET_CONNECTABLE (g_unix_socket_address_new (settings->path));
  else
    where = g_network_address_new (settings->host, settings->port);
  g_socket_client_connect_async (client, where, cancellable, connected, task);
}

ConnClamavScan *
conn_clamav_clamd_scan_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
