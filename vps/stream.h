/* SPDX-License-Identifier: MIT
 *
 * stream.h — one connected, non-blocking socket on one worker context: its
 * input and output buffers, the read and write sources, bounded reads,
 * buffered writes that wait for the socket on EAGAIN, close after the last
 * reply, and close.  The front ends (milter, policy, vsmtpd's SMTP) keep
 * what the bytes mean; the stream keeps how they move.
 *
 * Contract:
 *  - Reading happens only while the owner wants input
 *    (vps_stream_want_input): each wakeup reads at most the owner's chunk
 *    size, appends it to the input buffer and calls `input`; the owner
 *    consumes from the front of vps_stream_get_input() and turns input off
 *    while it is busy, so memory stays bounded by what the owner lets pile
 *    up plus one chunk.
 *  - The owner appends replies to vps_stream_get_output() (or
 *    vps_stream_write) and calls vps_stream_flush(): as much goes out as the
 *    socket takes now; the rest waits for a write source, which flushes again
 *    (or calls `writable` when the owner has more to do then).
 *  - The stream ends by itself when the peer closes, a read or write fails,
 *    or the output drained after vps_stream_close_after_flush(): `closed`
 *    is called once, with a VPS_STREAM_ERROR (or NULL for the drained
 *    close), and the stream is closed when it returns.  The owner runs its
 *    own teardown there, which normally calls vps_stream_close().
 *    vps_stream_close() is idempotent and calls nothing back.
 *  - Reads and writes go through two replaceable functions (VpsStreamIO):
 *    recv(2) and send(2) with MSG_NOSIGNAL by default; vsmtpd sets TLS ones.
 *    A layer that holds decrypted bytes the socket no longer shows is the
 *    owner's business (it reads again with vps_stream_read()).
 *  - While held (vps_stream_hold), the owner drives the socket itself (a TLS
 *    handshake): the stream reads and writes nothing, ignores
 *    vps_stream_want_input(), and the sources armed by vps_stream_wait() call
 *    `ready` instead.
 *  - The stream holds a reference on itself across every callback, so an
 *    owner may drop its own reference (and free itself) inside one; after a
 *    callback the stream touches the owner only if it is still open.
 *    Callbacks never hold a reference on the owner: the owner takes one
 *    where it needs it.  Everything runs on the context given at creation.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define VPS_STREAM_ERROR (vps_stream_error_quark ())
GQuark vps_stream_error_quark (void);

typedef enum
{
  VPS_STREAM_ERROR_EOF,   /* the peer closed the connection (or sent a TLS close_notify) */
  VPS_STREAM_ERROR_RESET, /* a read found the connection reset by the peer */
  VPS_STREAM_ERROR_READ,  /* a read failed (the message is the cause's) */
  VPS_STREAM_ERROR_WRITE, /* a write failed (the message is the cause's) */
} VpsStreamError;

/* The largest read chunk an owner may ask for. */
#define VPS_STREAM_MAX_READ_CHUNK (1024 * 1024)

typedef struct _VpsStream VpsStream;

/* What one read or write of a VpsStreamIO did. */
typedef enum
{
  VPS_STREAM_IO_OK,         /* *n bytes moved (at least one) */
  VPS_STREAM_IO_WANT_READ,  /* nothing now: try again when the socket is readable */
  VPS_STREAM_IO_WANT_WRITE, /* nothing now: try again when the socket is writable */
  VPS_STREAM_IO_CLOSED,     /* the peer closed */
  VPS_STREAM_IO_FAILED,     /* error set */
} VpsStreamStatus;

typedef struct
{
  VpsStreamStatus (*recv) (gpointer data, guint8 *buf, gsize len, gsize *n, GError **error);
  VpsStreamStatus (*send) (gpointer data, const guint8 *buf, gsize len, gsize *n, GError **error);
} VpsStreamIO;

typedef struct
{
  /* Required: bytes were appended to the input buffer. */
  void (*input) (VpsStream *stream, gpointer owner);
  /* Required: the stream ended (see the contract); `error` is borrowed. */
  void (*closed) (VpsStream *stream, const GError *error, gpointer owner);
  /* Optional: the socket took output again; the owner flushes (and may
   * resume its input).  NULL: the stream flushes by itself. */
  void (*writable) (VpsStream *stream, gpointer owner);
  /* Required only with vps_stream_hold(): a source armed by
   * vps_stream_wait() fired (G_IO_IN or G_IO_OUT). */
  void (*ready) (VpsStream *stream, GIOCondition cond, gpointer owner);
} VpsStreamCallbacks;

/* A stream over `socket` (non-blocking, connected; a reference is taken),
 * its sources on `context`, reading `read_chunk` bytes per wakeup.
 * `callbacks` is copied; `owner` is passed back to each.  Input is off
 * until vps_stream_want_input(). */
VpsStream *vps_stream_new (GSocket *socket, GMainContext *context, gsize read_chunk,
                           const VpsStreamCallbacks *callbacks, gpointer owner);
VpsStream *vps_stream_ref (VpsStream *stream);
/* The last reference closes the socket if it is still open. */
void vps_stream_unref (VpsStream *stream);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsStream, vps_stream_unref)

/* Replace recv/send (NULL: back to the plain socket); `data` is passed to
 * both and stays the caller's. */
void vps_stream_set_io (VpsStream *stream, const VpsStreamIO *io, gpointer data);
/* Re-arm TCP_QUICKACK after every read (MILTER.md, "The 40 ms stall"). */
void vps_stream_set_quickack (VpsStream *stream, gboolean on);

/* Bytes read and not yet consumed; the owner removes from the front.  The
 * array stays the same for the stream's life. */
GByteArray *vps_stream_get_input (VpsStream *stream);
/* Bytes to send; the owner appends.  Same array for the stream's life. */
GByteArray *vps_stream_get_output (VpsStream *stream);
GSocket *vps_stream_get_socket (VpsStream *stream);
int vps_stream_get_fd (VpsStream *stream);
GMainContext *vps_stream_get_context (VpsStream *stream);

/* Read (on) or stop reading (off) when the socket becomes readable. */
void vps_stream_want_input (VpsStream *stream, gboolean on);
/* One read of at most the chunk size, now: the number of bytes appended
 * to the input, 0 when nothing is there (or the stream is held), -1 when
 * the stream ended (`closed` was called).  Does not call `input`. */
gssize vps_stream_read (VpsStream *stream);

/* Append to the output (nothing is sent before vps_stream_flush). */
void vps_stream_write (VpsStream *stream, const void *data, gsize len);
/* Send what the socket takes now; the rest waits for the socket.  FALSE
 * when the stream is closed or ended here (`closed` was called). */
gboolean vps_stream_flush (VpsStream *stream);
/* Close once the output is flushed (the next vps_stream_flush that empties
 * it ends the stream with `closed` and a NULL error). */
void vps_stream_close_after_flush (VpsStream *stream);
gboolean vps_stream_is_closing (VpsStream *stream);

/* Stop both sources and close the socket; calls nothing back. */
void vps_stream_close (VpsStream *stream);
gboolean vps_stream_is_closed (VpsStream *stream);

/* Hand the socket to the owner (TRUE) or take it back (FALSE: both sources
 * are stopped, the owner re-arms them with vps_stream_want_input and
 * vps_stream_flush). */
void vps_stream_hold (VpsStream *stream, gboolean hold);
/* While held: wait for `cond` (G_IO_IN or G_IO_OUT, the other source is
 * stopped; 0 stops both); `ready` is called when it comes. */
void vps_stream_wait (VpsStream *stream, GIOCondition cond);

G_END_DECLS
