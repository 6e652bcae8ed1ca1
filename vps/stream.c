/* SPDX-License-Identifier: MIT
 *
 * stream.c — the connection I/O every front end shares (see stream.h for
 * the contract): bounded non-blocking reads, buffered writes with a write
 * source on EAGAIN, close after the last reply, idempotent close.
 *
 * Sources hold no reference on the stream: close destroys them, and a
 * dispatch takes a reference for as long as it runs, because the owner's
 * callback may drop the owner's reference, and with it the last one on
 * the stream.  Nothing here logs: the owner knows the session id and what
 * an end means for its protocol.
 */
#include "vps/stream.h"

#include <errno.h>
#include <sys/socket.h>

#include "vps/listen.h"

G_DEFINE_QUARK (vps - stream - error - quark, vps_stream_error)

struct _VpsStream
{
  gint ref; /* atomic */
  GSocket *socket;
  int fd;
  GMainContext *context;
  GByteArray *in;  /* read, not yet consumed by the owner */
  GByteArray *out; /* to send */
  gsize read_chunk;
  GSource *read_source;
  GSource *write_source;
  GIOCondition write_cond; /* G_IO_OUT, or G_IO_IN when a TLS write must read first */
  VpsStreamCallbacks cb;
  gpointer owner;
  const VpsStreamIO *io;
  gpointer io_data;
  gboolean quickack;
  gboolean held;    /* the owner drives the sources (TLS handshake) */
  gboolean closing; /* close once the output is flushed */
  gboolean closed;
};

/* ---- the plain socket ------------------------------------------------------ */

static void
set_errno_error (GError **error, int errsv)
{
  g_set_error_literal (error, G_IO_ERROR, g_io_error_from_errno (errsv), g_strerror (errsv));
}

static VpsStreamStatus
plain_recv (gpointer data, guint8 *buf, gsize len, gsize *n, GError **error)
{
  VpsStream *stream = data;
  gssize r;

  do
    r = recv (stream->fd, buf, len, 0);
  while (r < 0 && errno == EINTR);
  if (r > 0)
    {
      *n = (gsize)r;
      return VPS_STREAM_IO_OK;
    }
  if (r == 0)
    return VPS_STREAM_IO_CLOSED;
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    return VPS_STREAM_IO_WANT_READ;
  set_errno_error (error, errno);
  return VPS_STREAM_IO_FAILED;
}

static VpsStreamStatus
plain_send (gpointer data, const guint8 *buf, gsize len, gsize *n, GError **error)
{
  VpsStream *stream = data;
  gssize w;

  /* MSG_NOSIGNAL: a peer gone mid-reply is an EPIPE for this connection,
   * never a SIGPIPE for the process */
  do
    w = send (stream->fd, buf, len, MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  if (w > 0)
    {
      *n = (gsize)w;
      return VPS_STREAM_IO_OK;
    }
  if (w == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
    return VPS_STREAM_IO_WANT_WRITE;
  set_errno_error (error, errno);
  return VPS_STREAM_IO_FAILED;
}

static const VpsStreamIO plain_io = { plain_recv, plain_send };

/* ---- lifecycle ------------------------------------------------------------- */

VpsStream *
vps_stream_new (GSocket *socket, GMainContext *context, gsize read_chunk,
                const VpsStreamCallbacks *callbacks, gpointer owner)
{
  VpsStream *stream;

  g_return_val_if_fail (G_IS_SOCKET (socket), NULL);
  g_return_val_if_fail (read_chunk > 0 && read_chunk <= VPS_STREAM_MAX_READ_CHUNK, NULL);
  g_return_val_if_fail (callbacks != NULL && callbacks->input != NULL && callbacks->closed != NULL,
                        NULL);

  stream = g_new0 (VpsStream, 1);
  stream->ref = 1;
  stream->socket = g_object_ref (socket);
  stream->fd = g_socket_get_fd (socket);
  stream->context = g_main_context_ref (context);
  stream->in = g_byte_array_sized_new (4096);
  stream->out = g_byte_array_sized_new (1024);
  stream->read_chunk = read_chunk;
  stream->cb = *callbacks;
  stream->owner = owner;
  stream->io = &plain_io;
  stream->io_data = stream;
  return stream;
}

VpsStream *
vps_stream_ref (VpsStream *stream)
{
  g_atomic_int_inc (&stream->ref);
  return stream;
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
vps_stream_unref (VpsStream *stream)
{
  if (stream == NULL || !g_atomic_int_dec_and_test (&stream->ref))
    return;
  /* an owner abandoned with a stopped context may never have closed */
  destroy_source (&stream->read_source);
  destroy_source (&stream->write_source);
  g_object_unref (stream->socket);
  g_byte_array_unref (stream->in);
  g_byte_array_unref (stream->out);
  g_main_context_unref (stream->context);
  g_free (stream);
}

void
vps_stream_set_io (VpsStream *stream, const VpsStreamIO *io, gpointer data)
{
  g_return_if_fail (io == NULL || (io->recv != NULL && io->send != NULL));
  stream->io = io != NULL ? io : &plain_io;
  stream->io_data = io != NULL ? data : stream;
}

void
vps_stream_set_quickack (VpsStream *stream, gboolean on)
{
  stream->quickack = on;
}

GByteArray *
vps_stream_get_input (VpsStream *stream)
{
  return stream->in;
}

GByteArray *
vps_stream_get_output (VpsStream *stream)
{
  return stream->out;
}

GSocket *
vps_stream_get_socket (VpsStream *stream)
{
  return stream->socket;
}

int
vps_stream_get_fd (VpsStream *stream)
{
  return stream->fd;
}

GMainContext *
vps_stream_get_context (VpsStream *stream)
{
  return stream->context;
}

void
vps_stream_close (VpsStream *stream)
{
  if (stream->closed)
    return;
  stream->closed = TRUE;
  destroy_source (&stream->read_source);
  destroy_source (&stream->write_source);
  g_socket_close (stream->socket, NULL);
}

gboolean
vps_stream_is_closed (VpsStream *stream)
{
  return stream->closed;
}

/* The stream ended by itself: tell the owner once, then make sure it is
 * closed whatever the owner did.  The caller must not touch the stream
 * afterwards unless it holds a reference. */
static void
stream_end (VpsStream *stream, const GError *error)
{
  if (stream->closed)
    return;
  vps_stream_ref (stream);
  stream->cb.closed (stream, error, stream->owner);
  vps_stream_close (stream);
  vps_stream_unref (stream);
}

/* ---- sources --------------------------------------------------------------- */

static gboolean on_readable (GSocket *socket, GIOCondition cond, gpointer data);
static gboolean on_writable (GSocket *socket, GIOCondition cond, gpointer data);

static void
arm_read (VpsStream *stream)
{
  if (stream->read_source != NULL)
    return;
  stream->read_source
      = g_socket_create_source (stream->socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback (stream->read_source, G_SOURCE_FUNC (on_readable), stream, NULL);
  g_source_attach (stream->read_source, stream->context);
}

static void
arm_write (VpsStream *stream, GIOCondition cond)
{
  if (stream->write_source != NULL && stream->write_cond == cond)
    return;
  destroy_source (&stream->write_source);
  stream->write_cond = cond;
  stream->write_source = g_socket_create_source (stream->socket, cond | G_IO_ERR | G_IO_HUP, NULL);
  g_source_set_callback (stream->write_source, G_SOURCE_FUNC (on_writable), stream, NULL);
  g_source_attach (stream->write_source, stream->context);
}

static gboolean
on_readable (GSocket *socket, GIOCondition cond, gpointer data)
{
  VpsStream *stream = data;
  gssize n;

  vps_stream_ref (stream);
  if (stream->held)
    {
      stream->cb.ready (stream, G_IO_IN, stream->owner);
      vps_stream_unref (stream);
      return G_SOURCE_CONTINUE;
    }
  n = vps_stream_read (stream);
  if (n > 0 && !stream->closed)
    stream->cb.input (stream, stream->owner);
  vps_stream_unref (stream);
  /* the owner decides whether the source lives on (want_input, close) */
  return n < 0 ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static gboolean
on_writable (GSocket *socket, GIOCondition cond, gpointer data)
{
  VpsStream *stream = data;

  vps_stream_ref (stream);
  /* the source is ours to drop: a write still blocked re-creates it */
  g_clear_pointer (&stream->write_source, g_source_unref);
  if (stream->held)
    stream->cb.ready (stream, G_IO_OUT, stream->owner);
  else if (stream->cb.writable != NULL)
    stream->cb.writable (stream, stream->owner);
  else
    vps_stream_flush (stream);
  vps_stream_unref (stream);
  return G_SOURCE_REMOVE;
}

/* ---- input ----------------------------------------------------------------- */

void
vps_stream_want_input (VpsStream *stream, gboolean on)
{
  /* while held the handshake owns the sources */
  if (stream->closed || stream->held)
    return;
  if (on)
    arm_read (stream);
  else
    destroy_source (&stream->read_source);
}

gssize
vps_stream_read (VpsStream *stream)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) end = NULL;
  guint old = stream->in->len;
  gsize n = 0;
  VpsStreamStatus st;

  if (stream->closed)
    return -1;
  if (stream->held)
    return 0;
  /* bounded: one chunk on top of what the owner left unconsumed */
  g_byte_array_set_size (stream->in, old + (guint)stream->read_chunk);
  st = stream->io->recv (stream->io_data, stream->in->data + old, stream->read_chunk, &n, &error);
  if (st == VPS_STREAM_IO_OK && n == 0)
    st = VPS_STREAM_IO_WANT_READ; /* a layer that moved nothing has nothing now */
  g_byte_array_set_size (stream->in, old + (st == VPS_STREAM_IO_OK ? (guint)n : 0));
  switch (st)
    {
      case VPS_STREAM_IO_OK:
        /* the peer may send steps we do not answer: ACK them now, not after
       * the delayed-ACK timer */
        if (stream->quickack)
          vps_socket_quickack (stream->socket);
        return (gssize)n;
      case VPS_STREAM_IO_WANT_READ:
        return 0;
      case VPS_STREAM_IO_WANT_WRITE:
        /* TLS: the read needs a write first; the write source retries */
        arm_write (stream, G_IO_OUT);
        return 0;
      case VPS_STREAM_IO_CLOSED:
        end = g_error_new_literal (VPS_STREAM_ERROR, VPS_STREAM_ERROR_EOF, "end of stream");
        break;
      case VPS_STREAM_IO_FAILED:
      default:
        end = g_error_new_literal (VPS_STREAM_ERROR,
                                   g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED)
                                       ? VPS_STREAM_ERROR_RESET
                                       : VPS_STREAM_ERROR_READ,
                                   error != NULL ? error->message : "read failed");
        break;
    }
  stream_end (stream, end);
  return -1;
}

/* ---- output ---------------------------------------------------------------- */

void
vps_stream_write (VpsStream *stream, const void *data, gsize len)
{
  g_byte_array_append (stream->out, data, (guint)len);
}

gboolean
vps_stream_flush (VpsStream *stream)
{
  gsize off = 0;

  if (stream->closed)
    return FALSE;
  if (stream->held)
    return TRUE; /* the handshake owns the socket; replies wait for it */
  while (off < stream->out->len)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GError) end = NULL;
      gsize n = 0;
      VpsStreamStatus st = stream->io->send (stream->io_data, stream->out->data + off,
                                             stream->out->len - off, &n, &error);

      if (st == VPS_STREAM_IO_OK && n > 0)
        {
          off += n;
          continue;
        }
      /* a layer that must be called again with the same bytes finds them
       * at the front of the buffer */
      if (off > 0)
        g_byte_array_remove_range (stream->out, 0, (guint)off);
      if (st == VPS_STREAM_IO_OK || st == VPS_STREAM_IO_WANT_WRITE)
        {
          arm_write (stream, G_IO_OUT);
          return TRUE;
        }
      if (st == VPS_STREAM_IO_WANT_READ)
        {
          arm_write (stream, G_IO_IN);
          return TRUE;
        }
      end = g_error_new_literal (VPS_STREAM_ERROR, VPS_STREAM_ERROR_WRITE,
                                 error != NULL ? error->message : "closed");
      stream_end (stream, end);
      return FALSE;
    }
  g_byte_array_set_size (stream->out, 0);
  destroy_source (&stream->write_source);
  if (stream->closing)
    {
      stream_end (stream, NULL);
      return FALSE;
    }
  return TRUE;
}

void
vps_stream_close_after_flush (VpsStream *stream)
{
  stream->closing = TRUE;
}

gboolean
vps_stream_is_closing (VpsStream *stream)
{
  return stream->closing;
}

/* ---- held: the owner drives the socket ------------------------------------ */

void
vps_stream_hold (VpsStream *stream, gboolean hold)
{
  g_return_if_fail (!hold || stream->cb.ready != NULL);
  if (stream->held && !hold)
    {
      destroy_source (&stream->read_source);
      destroy_source (&stream->write_source);
    }
  stream->held = hold;
}

void
vps_stream_wait (VpsStream *stream, GIOCondition cond)
{
  g_return_if_fail (stream->held);
  g_return_if_fail (stream->cb.ready != NULL);
  if (stream->closed)
    return;
  if (cond & G_IO_IN)
    {
      destroy_source (&stream->write_source);
      arm_read (stream);
    }
  else if (cond & G_IO_OUT)
    {
      destroy_source (&stream->read_source);
      arm_write (stream, G_IO_OUT);
    }
  else
    {
      destroy_source (&stream->read_source);
      destroy_source (&stream->write_source);
    }
}
