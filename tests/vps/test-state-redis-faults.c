/* SPDX-License-Identifier: MIT
 *
 * test-state-redis-faults.c — the Redis state backend when Redis fails:
 * down at start, killed mid-run and restarted, stopped (SIGSTOP: batches
 * fail at [state] timeout, late replies are never taken for a later
 * batch's), a peer that never answers, password right/wrong/missing,
 * cancellation (redis-test-util.h starts the real redis-server).
 */
#include "redis-test-util.h"

static void
test_down_at_start (Fixture *f, gconstpointer p)
{
  g_autoptr (GString) log = g_string_new (NULL);
  g_auto (GStrv) lines = NULL;
  guint warnings = 0, notices = 0;
  gint64 ms;

  if (f->srv.dir == NULL)
    return;
  /* Nothing listens on the port yet: not an error at creation. */
  vps_log_capture (log);
  /* A long timeout: failing well before it shows the refusal is seen. */
  f->state = state_for (&f->srv, "timeout = 5s\n");
  ms = run_unavailable (f->state, "k", "127.0.0.1");
  g_assert_cmpint (ms, <, 1000);
  /* Within the back-off no new connect: the answer is immediate. */
  for (int i = 0; i < 5; i++)
    g_assert_cmpint (run_unavailable (f->state, "k", "not retried yet"), <, 1000);
  server_start (&f->srv);
  ms = wait_until_works (f->state, 6000);
  g_test_message ("works again %" G_GINT64_FORMAT " ms after the start", ms);
  g_assert_cmpint (run_incr (f->state, "k"), ==, 1);
  vps_log_capture (NULL);
  /* Many failed batches, one warning (at most one a minute); then one
   * notice when it answers again. */
  lines = g_strsplit (log->str, "\n", -1);
  for (gsize i = 0; lines[i] != NULL; i++)
    {
      g_test_message ("log: %s", lines[i]);
      warnings += g_str_has_prefix (lines[i], "warning") && strstr (lines[i], "Redis at") != NULL;
      notices
          += g_str_has_prefix (lines[i], "notice") && strstr (lines[i], "answers again") != NULL;
    }
  g_assert_cmpuint (warnings, ==, 1);
  g_assert_cmpuint (notices, ==, 1);
}

static void
test_killed_and_restarted (Fixture *f, gconstpointer p)
{
  VpsStateOp op = { VPS_STATE_INCR, "k", NULL, 1, 60000 };
  StateWait w;
  gint64 ms;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, "timeout = 5s\n");
  g_assert_cmpint (run_incr (f->state, "k"), ==, 1);
  /* A batch in flight when Redis dies: stop it first so the batch is
   * surely written and unanswered, then kill it. */
  server_signal (&f->srv, SIGSTOP);
  memset (&w, 0, sizeof w);
  vps_state_exec_async (f->state, &op, 1, NULL, state_wait_cb, &w);
  for (int i = 0; i < 10; i++)
    g_main_context_iteration (NULL, FALSE);
  g_usleep (50 * 1000);
  server_kill (&f->srv);
  {
    gint64 start = g_get_monotonic_time ();

    while (w.calls == 0)
      {
        g_main_context_iteration (NULL, FALSE);
        g_usleep (1000);
        g_assert_cmpint (g_get_monotonic_time () - start, <, 2000 * 1000);
      }
    ms = (g_get_monotonic_time () - start) / 1000;
  }
  g_assert_error (w.error, VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE);
  g_test_message ("in flight: failed %" G_GINT64_FORMAT " ms after the kill: %s", ms,
                  w.error->message);
  g_clear_error (&w.error);
  /* The closed connection is seen, long before the timeout. */
  g_assert_cmpint (ms, <, 1000);
  for (int i = 0; i < 5; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (w.calls, ==, 1);
  /* Down: every batch fails at once. */
  for (int i = 0; i < 5; i++)
    g_assert_cmpint (run_unavailable (f->state, "k", NULL), <, 1000);
  server_start (&f->srv);
  ms = wait_until_works (f->state, 8000);
  g_test_message ("works again %" G_GINT64_FORMAT " ms after the restart", ms);
  /* A fresh Redis (no persistence): the counter starts again. */
  g_assert_cmpint (run_incr (f->state, "k"), ==, 1);
}

/* A stopped Redis: batches fail at [state] timeout, and the replies it
 * sends once resumed are never taken for a later batch's. */
static void
test_slow (Fixture *f, gconstpointer p)
{
  VpsStateOp set = { VPS_STATE_SET, "y", NULL, 7, 60000 };
  VpsStateOp incr = { VPS_STATE_INCR, "x", NULL, 1000, 60000 };
  VpsStateOp get[] = { { VPS_STATE_GET, "y" }, { VPS_STATE_GET, "x" } };
  StateWait w;
  gint64 ms;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, "timeout = 300ms\nconnections = 1\n");
  run_ok (f->state, &set, 1, &w);
  server_signal (&f->srv, SIGSTOP);
  ms = state_run_async (f->state, &incr, 1, NULL, &w, 5000);
  g_assert_error (w.error, VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE);
  g_test_message ("stopped: failed after %" G_GINT64_FORMAT " ms: %s", ms, w.error->message);
  g_clear_error (&w.error);
  g_assert_cmpint (ms, >=, 290);
  g_assert_cmpint (ms, <=, 300 + 700);
  /* The next batches too (a new connection is made, which the stopped
   * server's kernel accepts, but nothing answers). */
  for (int i = 0; i < 3; i++)
    {
      ms = run_unavailable (f->state, "z", NULL);
      g_assert_cmpint (ms, <=, 300 + 700);
    }
  server_signal (&f->srv, SIGCONT);
  ms = wait_until_works (f->state, 6000);
  g_test_message ("works again %" G_GINT64_FORMAT " ms after SIGCONT", ms);
  run_ok (f->state, get, 2, &w);
  g_assert_true (w.results[0].found);
  g_assert_cmpint (w.results[0].value, ==, 7);
  /* The stopped INCR ran when Redis resumed (its reply was dropped). */
  g_assert_cmpint (w.results[1].value % 1000, ==, 0);
}

/* A peer that accepts (the kernel does, from the listen backlog) but never
 * answers: the handshake's PING times out at connect_timeout, and a batch
 * with a shorter timeout fails at its own. */
static void
test_connect_timeout (Fixture *f, gconstpointer p)
{
  g_autoptr (GSocket) sock
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (VpsState) quick = NULL;
  gint64 ms;

  if (f->srv.dir == NULL)
    return;
  addr = g_inet_socket_address_new (lo, 0);
  g_assert_true (g_socket_bind (sock, addr, TRUE, NULL));
  g_assert_true (g_socket_listen (sock, NULL));
  bound = g_socket_get_local_address (sock, NULL);
  f->srv.port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  f->state = state_for (&f->srv, "timeout = 5s\nconnect_timeout = 300ms\n");
  ms = run_unavailable (f->state, "k", "no answer to PING/AUTH within 300 ms");
  g_assert_cmpint (ms, >=, 290);
  g_assert_cmpint (ms, <, 1000);
  quick = state_for (&f->srv, "timeout = 100ms\nconnect_timeout = 2s\n");
  ms = run_unavailable (quick, "k", "no connection within 100 ms");
  g_assert_cmpint (ms, >=, 90);
  g_assert_cmpint (ms, <, 700);
}

static void
test_password (Fixture *f, gconstpointer p)
{
  g_autoptr (VpsState) wrong = NULL;
  g_autoptr (VpsState) none = NULL;

  if (f->srv.dir == NULL)
    return;
  f->srv.requirepass = "s3cret";
  server_start (&f->srv);
  f->state = state_for (&f->srv, "password = s3cret\n");
  g_assert_cmpint (run_incr (f->state, "k"), ==, 1);
  /* Long timeouts: the refusal itself ends the batch. */
  wrong = state_for (&f->srv, "password = guess\ntimeout = 5s\n");
  g_assert_cmpint (run_unavailable (wrong, "k", "refused the password"), <, 1000);
  none = state_for (&f->srv, "timeout = 5s\n");
  g_assert_cmpint (run_unavailable (none, "k", "requires a password"), <, 1000);
  g_assert_cmpint (run_incr (f->state, "k"), ==, 2);
}

static void
test_cancel (Fixture *f, gconstpointer p)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  VpsStateOp op = { VPS_STATE_INCR, "k", NULL, 1, 60000 };
  StateWait w;
  gint64 ms, start;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, "timeout = 2s\n");
  g_assert_cmpint (run_incr (f->state, "k"), ==, 1);
  /* Cancelled while Redis cannot answer: the callback comes at once. */
  server_signal (&f->srv, SIGSTOP);
  memset (&w, 0, sizeof w);
  start = g_get_monotonic_time ();
  vps_state_exec_async (f->state, &op, 1, cancellable, state_wait_cb, &w);
  g_usleep (50 * 1000);
  g_cancellable_cancel (cancellable);
  g_assert_cmpuint (w.calls, ==, 0);
  while (w.calls == 0)
    g_main_context_iteration (NULL, TRUE);
  ms = (g_get_monotonic_time () - start) / 1000;
  g_assert_error (w.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&w.error);
  g_assert_cmpint (ms, <, 1000);
  server_signal (&f->srv, SIGCONT);
  /* The cancelled INCR still reaches Redis; its reply goes nowhere and the
   * next batch gets its own. */
  g_assert_cmpint (run_incr (f->state, "k"), ==, 3);
  for (int i = 0; i < 5; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (w.calls, ==, 1);
  /* Cancelled before the call. */
  state_run_async (f->state, &op, 1, cancellable, &w, 1000);
  g_assert_error (w.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&w.error);
  /* Dropping the state with a cancelled batch still on the wire. */
  server_signal (&f->srv, SIGSTOP);
  g_cancellable_reset (cancellable);
  memset (&w, 0, sizeof w);
  vps_state_exec_async (f->state, &op, 1, cancellable, state_wait_cb, &w);
  g_usleep (20 * 1000);
  g_cancellable_cancel (cancellable);
  while (w.calls == 0)
    g_main_context_iteration (NULL, TRUE);
  g_clear_error (&w.error);
  g_clear_pointer (&f->state, vps_state_unref);
  server_signal (&f->srv, SIGCONT);
}

#define ADD(path, func, data)                                                                      \
  g_test_add (path, Fixture, data, fixture_setup, func, fixture_teardown)

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  ADD ("/state/redis/down-at-start", test_down_at_start, NULL);
  ADD ("/state/redis/killed-and-restarted", test_killed_and_restarted, NULL);
  ADD ("/state/redis/slow", test_slow, NULL);
  ADD ("/state/redis/connect-timeout", test_connect_timeout, NULL);
  ADD ("/state/redis/password", test_password, NULL);
  ADD ("/state/redis/cancel", test_cancel, NULL);
  return g_test_run ();
}
