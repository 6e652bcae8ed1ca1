/* SPDX-License-Identifier: MIT
 *
 * test-stream.c — vps/stream over a socketpair: bounded reads, input on and
 * off, end of stream, reset, buffered writes that wait for the socket
 * (EAGAIN), close after flush, a write to a closed peer (EPIPE without
 * SIGPIPE), replaced recv/send, the held mode of a TLS handshake, an owner
 * that frees itself inside a callback, and idempotent close.
 */
#include "vps/stream.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What the callbacks saw. */
typedef struct
{
  GMainContext *context;
  VpsStream *stream;
  int peer; /* the other end of the socketpair */
  guint n_input;
  gsize max_growth; /* largest input growth seen by one input call */
  gsize last_len;
  guint n_closed;
  GError *closed_error; /* a copy of what closed() got */
  gboolean closed_null; /* closed() got NULL (drained close) */
  guint n_writable;
  guint n_ready_in, n_ready_out;
  gboolean consume; /* input() empties the input buffer */
  gboolean unref_on_close;
} Fixture;

static void
on_input (VpsStream *stream, gpointer data)
{
  Fixture *f = data;
  GByteArray *in = vps_stream_get_input (stream);

  f->n_input++;
  f->max_growth = MAX (f->max_growth, in->len - f->last_len);
  if (f->consume)
    g_byte_array_set_size (in, 0);
  f->last_len = in->len;
}

static void
on_closed (VpsStream *stream, const GError *error, gpointer data)
{
  Fixture *f = data;

  f->n_closed++;
  if (error != NULL)
    f->closed_error = g_error_copy (error);
  else
    f->closed_null = TRUE;
  if (f->unref_on_close)
    g_clear_pointer (&f->stream, vps_stream_unref); /* an owner freeing itself */
}

static void
on_writable (VpsStream *stream, gpointer data)
{
  Fixture *f = data;

  f->n_writable++;
  vps_stream_flush (stream);
}

static void
on_ready (VpsStream *stream, GIOCondition cond, gpointer data)
{
  Fixture *f = data;

  if (cond == G_IO_IN)
    f->n_ready_in++;
  else if (cond == G_IO_OUT)
    f->n_ready_out++;
}

static const VpsStreamCallbacks plain_callbacks = {
  .input = on_input,
  .closed = on_closed,
  .ready = on_ready,
};

static const VpsStreamCallbacks writable_callbacks = {
  .input = on_input,
  .closed = on_closed,
  .writable = on_writable,
  .ready = on_ready,
};

static void
fixture_open (Fixture *f, gsize chunk, const VpsStreamCallbacks *cb)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocket) socket = NULL;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), ==, 0);
  socket = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  g_socket_set_blocking (socket, FALSE);
  f->peer = fds[1];
  f->context = g_main_context_new ();
  f->stream = vps_stream_new (socket, f->context, chunk, cb, f);
  g_assert_nonnull (f->stream);
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  fixture_open (f, 4096, &plain_callbacks);
}

static void
fixture_setup_writable (Fixture *f, gconstpointer data)
{
  fixture_open (f, 4096, &writable_callbacks);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->stream, vps_stream_unref);
  if (f->peer >= 0)
    close (f->peer);
  g_clear_error (&f->closed_error);
  while (g_main_context_iteration (f->context, FALSE))
    ;
  g_main_context_unref (f->context);
}

/* Run the context until `done` or 5 s. */
static void
iterate_until (Fixture *f, gboolean (*done) (Fixture *f))
{
  gint64 end = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  while (!done (f) && g_get_monotonic_time () < end)
    g_main_context_iteration (f->context, FALSE);
  g_assert_true (done (f));
}

static void
iterate_idle (Fixture *f)
{
  for (guint i = 0; i < 20; i++)
    g_main_context_iteration (f->context, FALSE);
}

static gboolean
got_closed (Fixture *f)
{
  return f->n_closed > 0;
}

static void
peer_write (Fixture *f, const void *data, gsize len)
{
  g_assert_cmpint (write (f->peer, data, len), ==, (gssize)len);
}

static void
peer_close (Fixture *f)
{
  close (f->peer);
  f->peer = -1;
}

/* ---- input -----------------------------------------------------------------
 */

static void
test_read_bounded (void)
{
  static const gsize chunks[] = { 1, 100, 4096, 64 * 1024 };

  for (gsize i = 0; i < G_N_ELEMENTS (chunks); i++)
    {
      Fixture fx = { 0 }, *f = &fx;
      char data[10000];

      fixture_open (f, chunks[i], &plain_callbacks);
      memset (data, 'x', sizeof data);
      peer_write (f, data, sizeof data);
      vps_stream_want_input (f->stream, TRUE);
      while (vps_stream_get_input (f->stream)->len < sizeof data)
        g_main_context_iteration (f->context, TRUE);
      g_assert_cmpuint (vps_stream_get_input (f->stream)->len, ==, sizeof data);
      g_assert_cmpuint (f->max_growth, <=, chunks[i]);
      g_assert_cmpuint (f->n_input, >=, (sizeof data + chunks[i] - 1) / chunks[i]);
      g_assert_cmpmem (vps_stream_get_input (f->stream)->data, sizeof data, data, sizeof data);
      fixture_teardown (f, NULL);
    }
}

static void
test_read_off (Fixture *f, gconstpointer data)
{
  peer_write (f, "abc", 3);
  iterate_idle (f);
  g_assert_cmpuint (f->n_input, ==, 0); /* input starts off */
  vps_stream_want_input (f->stream, TRUE);
  vps_stream_want_input (f->stream, FALSE);
  iterate_idle (f);
  g_assert_cmpuint (f->n_input, ==, 0);
  vps_stream_want_input (f->stream, TRUE);
  iterate_idle (f);
  g_assert_cmpuint (f->n_input, ==, 1);
  g_assert_cmpmem (vps_stream_get_input (f->stream)->data, 3, "abc", 3);
}

static void
test_read_direct (Fixture *f, gconstpointer data)
{
  g_assert_cmpint (vps_stream_read (f->stream), ==, 0); /* nothing yet */
  peer_write (f, "hello", 5);
  g_assert_cmpint (vps_stream_read (f->stream), ==, 5);
  g_assert_cmpuint (f->n_input, ==, 0); /* read never calls input */
  peer_close (f);
  g_assert_cmpint (vps_stream_read (f->stream), ==, -1);
  g_assert_error (f->closed_error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_EOF);
  g_assert_true (vps_stream_is_closed (f->stream));
}

static void
test_read_eof (Fixture *f, gconstpointer data)
{
  vps_stream_want_input (f->stream, TRUE);
  peer_write (f, "last", 4);
  peer_close (f);
  iterate_until (f, got_closed);
  g_assert_cmpuint (f->n_input, ==, 1);
  g_assert_cmpuint (f->n_closed, ==, 1);
  g_assert_error (f->closed_error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_EOF);
  g_assert_true (vps_stream_is_closed (f->stream));
  iterate_idle (f);
  g_assert_cmpuint (f->n_closed, ==, 1);
}

static void
test_read_reset (Fixture *f, gconstpointer data)
{
  /* a unix socket closed with unread data resets its peer */
  vps_stream_write (f->stream, "unread", 6);
  g_assert_true (vps_stream_flush (f->stream));
  peer_close (f);
  vps_stream_want_input (f->stream, TRUE);
  iterate_until (f, got_closed);
  g_assert_error (f->closed_error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_RESET);
}

/* ---- output ----------------------------------------------------------------
 */

static gboolean
output_empty (Fixture *f)
{
  char buf[65536];

  /* the peer drains whatever arrived */
  while (read (f->peer, buf, sizeof buf) > 0)
    ;
  return vps_stream_get_output (f->stream)->len == 0;
}

static void
test_write_eagain (Fixture *f, gconstpointer data)
{
  const gsize total = 8 * 1024 * 1024; /* far more than a socket buffer */
  g_autoptr (GByteArray) got = g_byte_array_new ();
  g_autofree guint8 *payload = g_malloc (total);
  gint64 end = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  for (gsize i = 0; i < total; i++)
    payload[i] = (guint8)(i * 7 + i / 251);
  vps_stream_write (f->stream, payload, total);
  g_assert_true (vps_stream_flush (f->stream));
  g_assert_cmpuint (vps_stream_get_output (f->stream)->len, >, 0); /* the socket is full */
  while (got->len < total && g_get_monotonic_time () < end)
    {
      guint8 buf[65536];
      gssize n = read (f->peer, buf, sizeof buf);

      if (n > 0)
        g_byte_array_append (got, buf, (guint)n);
      g_main_context_iteration (f->context, FALSE);
    }
  g_assert_cmpuint (got->len, ==, total);
  g_assert_cmpmem (got->data, got->len, payload, total);
  g_assert_cmpuint (vps_stream_get_output (f->stream)->len, ==, 0);
  g_assert_cmpuint (f->n_writable, >, 0); /* the owner's writable() flushed */
  g_assert_cmpuint (f->n_closed, ==, 0);
}

static void
test_close_after_flush (Fixture *f, gconstpointer data)
{
  char buf[16];

  vps_stream_write (f->stream, "bye\r\n", 5);
  vps_stream_close_after_flush (f->stream);
  g_assert_true (vps_stream_is_closing (f->stream));
  g_assert_false (vps_stream_is_closed (f->stream)); /* nothing happens before the flush */
  g_assert_false (vps_stream_flush (f->stream));
  g_assert_cmpuint (f->n_closed, ==, 1);
  g_assert_true (f->closed_null);
  g_assert_true (vps_stream_is_closed (f->stream));
  g_assert_cmpint (read (f->peer, buf, sizeof buf), ==, 5);
  g_assert_cmpmem (buf, 5, "bye\r\n", 5);
  g_assert_cmpint (read (f->peer, buf, sizeof buf), ==, 0);
}

static void
test_close_after_flush_blocked (Fixture *f, gconstpointer data)
{
  g_autofree guint8 *payload = g_malloc0 (4 * 1024 * 1024);

  vps_stream_write (f->stream, payload, 4 * 1024 * 1024);
  vps_stream_close_after_flush (f->stream);
  g_assert_true (vps_stream_flush (f->stream)); /* blocked: not yet */
  g_assert_cmpuint (f->n_closed, ==, 0);
  iterate_until (f, output_empty);
  iterate_until (f, got_closed);
  g_assert_true (f->closed_null);
}

static void
test_write_epipe (Fixture *f, gconstpointer data)
{
  /* MSG_NOSIGNAL: a SIGPIPE would end this test program here */
  peer_close (f);
  vps_stream_write (f->stream, "late", 4);
  g_assert_false (vps_stream_flush (f->stream));
  g_assert_error (f->closed_error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_WRITE);
  g_assert_cmpstr (f->closed_error->message, ==, g_strerror (EPIPE));
  g_assert_true (vps_stream_is_closed (f->stream));
}

/* ---- replaced recv/send ----------------------------------------------------
 */

typedef struct
{
  int fd;
  guint recv_calls, send_calls;
  VpsStreamStatus recv_first; /* returned by the first recv, then real I/O */
  VpsStreamStatus send_first;
  gboolean fail;
} FakeLayer;

static VpsStreamStatus
fake_recv (gpointer data, guint8 *buf, gsize len, gsize *n, GError **error)
{
  FakeLayer *l = data;
  gssize r;

  if (l->recv_calls++ == 0 && l->recv_first != VPS_STREAM_IO_OK)
    return l->recv_first;
  if (l->fail)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "layer: bad record mac");
      return VPS_STREAM_IO_FAILED;
    }
  r = recv (l->fd, buf, len, 0);
  if (r < 0)
    return VPS_STREAM_IO_WANT_READ;
  if (r == 0)
    return VPS_STREAM_IO_CLOSED;
  for (gssize i = 0; i < r; i++)
    buf[i] = (guint8)g_ascii_toupper ((char)buf[i]); /* "decrypt" */
  *n = (gsize)r;
  return VPS_STREAM_IO_OK;
}

static VpsStreamStatus
fake_send (gpointer data, const guint8 *buf, gsize len, gsize *n, GError **error)
{
  FakeLayer *l = data;
  gssize w;

  if (l->send_calls++ == 0 && l->send_first != VPS_STREAM_IO_OK)
    return l->send_first;
  w = send (l->fd, buf, len, MSG_NOSIGNAL);
  if (w <= 0)
    return VPS_STREAM_IO_WANT_WRITE;
  *n = (gsize)w;
  return VPS_STREAM_IO_OK;
}

static const VpsStreamIO fake_io = { fake_recv, fake_send };

static gboolean
got_input (Fixture *f)
{
  return f->n_input > 0;
}

static void
test_io_replaced (Fixture *f, gconstpointer data)
{
  FakeLayer l = { .fd = vps_stream_get_fd (f->stream) };
  char buf[16];

  vps_stream_set_io (f->stream, &fake_io, &l);
  vps_stream_want_input (f->stream, TRUE);
  peer_write (f, "ehlo", 4);
  iterate_until (f, got_input);
  g_assert_cmpmem (vps_stream_get_input (f->stream)->data, 4, "EHLO", 4);
  vps_stream_write (f->stream, "250", 3);
  g_assert_true (vps_stream_flush (f->stream));
  g_assert_cmpuint (l.send_calls, ==, 1);
  g_assert_cmpint (read (f->peer, buf, sizeof buf), ==, 3);
  /* back to the plain socket */
  vps_stream_set_io (f->stream, NULL, NULL);
  peer_write (f, "quit", 4);
  g_assert_cmpint (vps_stream_read (f->stream), ==, 4);
  g_assert_cmpmem (vps_stream_get_input (f->stream)->data + 4, 4, "quit", 4);
}

static gboolean
got_writable (Fixture *f)
{
  return f->n_writable > 0;
}

static void
test_io_read_wants_write (Fixture *f, gconstpointer data)
{
  FakeLayer l = { .fd = vps_stream_get_fd (f->stream), .recv_first = VPS_STREAM_IO_WANT_WRITE };

  /* a TLS read that must write first waits for the socket to be writable */
  vps_stream_set_io (f->stream, &fake_io, &l);
  g_assert_cmpint (vps_stream_read (f->stream), ==, 0);
  iterate_until (f, got_writable);
  g_assert_cmpuint (f->n_closed, ==, 0);
}

static void
test_io_write_wants_read (Fixture *f, gconstpointer data)
{
  FakeLayer l = { .fd = vps_stream_get_fd (f->stream), .send_first = VPS_STREAM_IO_WANT_READ };
  char buf[16];

  /* a TLS write that must read first retries when the socket is readable */
  vps_stream_set_io (f->stream, &fake_io, &l);
  vps_stream_write (f->stream, "250 ok", 6);
  g_assert_true (vps_stream_flush (f->stream));
  g_assert_cmpuint (vps_stream_get_output (f->stream)->len, ==, 6);
  iterate_idle (f);
  g_assert_cmpuint (f->n_writable, ==, 0); /* nothing to read: still waiting */
  peer_write (f, "x", 1);
  iterate_until (f, got_writable);
  g_assert_cmpuint (vps_stream_get_output (f->stream)->len, ==, 0);
  g_assert_cmpint (read (f->peer, buf, sizeof buf), ==, 6);
}

static void
test_io_errors (void)
{
  static const struct
  {
    const char *name;
    gboolean fail;
    VpsStreamError code;
    const char *message;
  } cases[] = {
    { "layer failure", TRUE, VPS_STREAM_ERROR_READ, "layer: bad record mac" },
    { "layer close", FALSE, VPS_STREAM_ERROR_EOF, "end of stream" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Fixture fx = { 0 }, *f = &fx;
      FakeLayer l = { 0 };

      g_test_message ("%s", cases[i].name);
      fixture_open (f, 4096, &plain_callbacks);
      l.fd = vps_stream_get_fd (f->stream);
      l.fail = cases[i].fail;
      vps_stream_set_io (f->stream, &fake_io, &l);
      if (!cases[i].fail)
        peer_close (f);
      g_assert_cmpint (vps_stream_read (f->stream), ==, -1);
      g_assert_error (f->closed_error, VPS_STREAM_ERROR, (gint)cases[i].code);
      g_assert_cmpstr (f->closed_error->message, ==, cases[i].message);
      fixture_teardown (f, NULL);
    }
}

/* ---- held (a TLS handshake drives the socket) ------------------------------
 */

static gboolean
got_ready_in (Fixture *f)
{
  return f->n_ready_in > 0;
}

static gboolean
got_ready_out (Fixture *f)
{
  return f->n_ready_out > 0;
}

static void
test_hold (Fixture *f, gconstpointer data)
{
  char buf[16];

  vps_stream_want_input (f->stream, TRUE);
  vps_stream_hold (f->stream, TRUE);
  /* the stream moves no bytes while held */
  vps_stream_write (f->stream, "220", 3);
  g_assert_true (vps_stream_flush (f->stream));
  g_assert_cmpuint (vps_stream_get_output (f->stream)->len, ==, 3);
  peer_write (f, "hello", 5);
  g_assert_cmpint (vps_stream_read (f->stream), ==, 0);
  /* the read source armed before the hold now calls ready() */
  iterate_until (f, got_ready_in);
  g_assert_cmpuint (f->n_input, ==, 0);
  vps_stream_wait (f->stream, G_IO_OUT);
  iterate_until (f, got_ready_out);
  f->n_ready_in = 0;
  vps_stream_wait (f->stream, G_IO_IN);
  iterate_until (f, got_ready_in);
  vps_stream_wait (f->stream, 0);
  f->n_ready_in = f->n_ready_out = 0;
  iterate_idle (f);
  g_assert_cmpuint (f->n_ready_in + f->n_ready_out, ==, 0);
  /* want_input is the handshake's business while held */
  vps_stream_want_input (f->stream, TRUE);
  iterate_idle (f);
  g_assert_cmpuint (f->n_input + f->n_ready_in, ==, 0);
  /* released: no source is left; the owner re-arms */
  vps_stream_hold (f->stream, FALSE);
  iterate_idle (f);
  g_assert_cmpuint (f->n_input, ==, 0);
  g_assert_true (vps_stream_flush (f->stream));
  g_assert_cmpint (read (f->peer, buf, sizeof buf), ==, 3);
  vps_stream_want_input (f->stream, TRUE);
  iterate_until (f, got_input);
  g_assert_cmpmem (vps_stream_get_input (f->stream)->data, 5, "hello", 5);
}

/* ---- close ------------------------------------------------------------------
 */

static void
test_close_idempotent (Fixture *f, gconstpointer data)
{
  vps_stream_want_input (f->stream, TRUE);
  vps_stream_write (f->stream, "x", 1);
  vps_stream_close (f->stream);
  vps_stream_close (f->stream);
  g_assert_true (vps_stream_is_closed (f->stream));
  g_assert_false (vps_stream_flush (f->stream));
  g_assert_cmpint (vps_stream_read (f->stream), ==, -1);
  /* the socket is closed: the peer's write fails, nothing must wake up */
  g_assert_cmpint (send (f->peer, "abc", 3, MSG_NOSIGNAL), ==, -1);
  iterate_idle (f);
  /* an owner-initiated close calls nothing back */
  g_assert_cmpuint (f->n_closed + f->n_input, ==, 0);
}

static void
test_unref_in_callback (Fixture *f, gconstpointer data)
{
  /* the owner drops its (last) reference in closed(), as a connection that
   * frees itself at close does; the stream must survive its own dispatch */
  f->unref_on_close = TRUE;
  vps_stream_want_input (f->stream, TRUE);
  peer_close (f);
  iterate_until (f, got_closed);
  g_assert_null (f->stream);
  g_assert_error (f->closed_error, VPS_STREAM_ERROR, VPS_STREAM_ERROR_EOF);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  g_test_add_func ("/vps/stream/read/bounded", test_read_bounded);
  g_test_add ("/vps/stream/read/off", Fixture, NULL, fixture_setup, test_read_off,
              fixture_teardown);
  g_test_add ("/vps/stream/read/direct", Fixture, NULL, fixture_setup, test_read_direct,
              fixture_teardown);
  g_test_add ("/vps/stream/read/eof", Fixture, NULL, fixture_setup, test_read_eof,
              fixture_teardown);
  g_test_add ("/vps/stream/read/reset", Fixture, NULL, fixture_setup, test_read_reset,
              fixture_teardown);
  g_test_add ("/vps/stream/write/eagain", Fixture, NULL, fixture_setup_writable, test_write_eagain,
              fixture_teardown);
  g_test_add ("/vps/stream/write/close-after-flush", Fixture, NULL, fixture_setup,
              test_close_after_flush, fixture_teardown);
  g_test_add ("/vps/stream/write/close-after-flush-blocked", Fixture, NULL, fixture_setup,
              test_close_after_flush_blocked, fixture_teardown);
  g_test_add ("/vps/stream/write/epipe", Fixture, NULL, fixture_setup, test_write_epipe,
              fixture_teardown);
  g_test_add ("/vps/stream/io/replaced", Fixture, NULL, fixture_setup, test_io_replaced,
              fixture_teardown);
  g_test_add ("/vps/stream/io/read-wants-write", Fixture, NULL, fixture_setup_writable,
              test_io_read_wants_write, fixture_teardown);
  g_test_add ("/vps/stream/io/write-wants-read", Fixture, NULL, fixture_setup_writable,
              test_io_write_wants_read, fixture_teardown);
  g_test_add_func ("/vps/stream/io/errors", test_io_errors);
  g_test_add ("/vps/stream/hold", Fixture, NULL, fixture_setup, test_hold, fixture_teardown);
  g_test_add ("/vps/stream/close/idempotent", Fixture, NULL, fixture_setup, test_close_idempotent,
              fixture_teardown);
  g_test_add ("/vps/stream/close/unref-in-callback", Fixture, NULL, fixture_setup,
              test_unref_in_callback, fixture_teardown);
  return g_test_run ();
}
