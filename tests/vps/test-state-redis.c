/* SPDX-License-Identifier: MIT
 *
 * test-state-redis.c — the Redis state backend (vps/state-redis.c) against
 * a real redis-server (Debian's redis-server, 7.0) that each test starts on
 * a free port in a temporary directory and kills at the end (and that dies
 * with the test process if an assertion aborts it).
 *
 * Covers: every operation (the table shared with the memory test), expiry
 * on Redis's clock, Redis down at start, killed mid-run and restarted,
 * stopped (SIGSTOP: batches fail at [state] timeout, late replies are never
 * taken for a later batch's), password right/wrong/missing, cancellation,
 * two VpsState on one Redis, many batches pipelined, two threads, a unix
 * socket.
 */
#include <signal.h>
#include <sys/prctl.h>

#include <glib/gstdio.h>

#include "vps/config.h"
#include "vps/log.h"
#include "vps/state-private.h"

#include "state-test-util.h"

typedef struct
{
  char *dir;
  guint port;
  GSubprocess *proc;
  const char *requirepass;
} Server;

typedef struct
{
  Server srv;
  VpsState *state;
} Fixture;

static guint
free_port (void)
{
  g_autoptr (GSocket) sock
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) any = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;

  g_assert_true (g_socket_bind (sock, any, FALSE, NULL));
  bound = g_socket_get_local_address (sock, NULL);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

/* Redis must not outlive a test that aborts. */
static void
die_with_parent (gpointer unused)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

/* Up when it answers PING (+PONG, or -NOAUTH with a password). */
static gboolean
server_answers (guint port)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;
  char buf[64] = { 0 };

  g_socket_client_set_timeout (client, 1);
  conn = g_socket_client_connect_to_host (client, "127.0.0.1", (guint16)port, NULL, NULL);
  if (conn == NULL)
    return FALSE;
  if (!g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (conn)), "PING\r\n", 6,
                                  NULL, NULL, NULL))
    return FALSE;
  return g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (conn)), buf,
                              sizeof buf - 1, NULL, NULL)
         > 0;
}

static void
server_start (Server *s)
{
  g_autoptr (GSubprocessLauncher) launcher
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  gint64 until = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  g_assert_null (s->proc);
  g_ptr_array_add (argv, g_strdup ("redis-server"));
  g_ptr_array_add (argv, g_strdup ("--port"));
  g_ptr_array_add (argv, g_strdup_printf ("%u", s->port));
  g_ptr_array_add (argv, g_strdup ("--bind"));
  g_ptr_array_add (argv, g_strdup ("127.0.0.1"));
  g_ptr_array_add (argv, g_strdup ("--dir"));
  g_ptr_array_add (argv, g_strdup (s->dir));
  g_ptr_array_add (argv, g_strdup ("--save"));
  g_ptr_array_add (argv, g_strdup (""));
  g_ptr_array_add (argv, g_strdup ("--appendonly"));
  g_ptr_array_add (argv, g_strdup ("no"));
  g_ptr_array_add (argv, g_strdup ("--unixsocket"));
  g_ptr_array_add (argv, g_build_filename (s->dir, "redis.sock", NULL));
  g_ptr_array_add (argv, g_strdup ("--logfile"));
  g_ptr_array_add (argv, g_build_filename (s->dir, "redis.log", NULL));
  if (s->requirepass != NULL)
    {
      g_ptr_array_add (argv, g_strdup ("--requirepass"));
      g_ptr_array_add (argv, g_strdup (s->requirepass));
    }
  g_ptr_array_add (argv, NULL);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  s->proc = g_subprocess_launcher_spawnv (launcher, (const char *const *)argv->pdata, &error);
  g_assert_no_error (error);
  while (!server_answers (s->port))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, until);
      g_usleep (20 * 1000);
    }
}

/* The state letter of /proc/PID/stat ('T' when stopped). */
static char
server_proc_state (Server *s)
{
  g_autofree char *path = g_strdup_printf ("/proc/%s/stat", g_subprocess_get_identifier (s->proc));
  g_autofree char *text = NULL;
  const char *paren;

  if (!g_file_get_contents (path, &text, NULL, NULL) || (paren = strrchr (text, ')')) == NULL)
    return '?';
  return paren[1] == ' ' ? paren[2] : '?';
}

/* kill() returns before the target stops: on two cores Redis could still
 * answer a batch sent right after SIGSTOP, so wait until it is stopped. */
static void
server_signal (Server *s, int sig)
{
  gint64 until = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  g_assert_nonnull (s->proc);
  g_subprocess_send_signal (s->proc, sig);
  while ((server_proc_state (s) == 'T') != (sig == SIGSTOP))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, until);
      g_usleep (1000);
    }
}

static void
server_kill (Server *s)
{
  if (s->proc == NULL)
    return;
  g_subprocess_send_signal (s->proc, SIGKILL);
  g_subprocess_wait (s->proc, NULL, NULL);
  g_clear_object (&s->proc);
}

static VpsState *
state_for (Server *s, const char *extra)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = g_strdup_printf ("[state]\nbackend = redis\naddress = 127.0.0.1:%u\n%s",
                                           s->port, extra != NULL ? extra : "");
  g_autoptr (VpsConfig) cfg = vps_config_load_data ("test.conf", text, &error);
  VpsState *state;

  g_assert_no_error (error);
  state = vps_state_new (cfg, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vps_state_backend_name (state), ==, "redis");
  return state;
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  if (!g_file_test ("/usr/bin/redis-server", G_FILE_TEST_IS_EXECUTABLE))
    {
      g_test_skip ("redis-server is not installed");
      return;
    }
  f->srv.dir = g_dir_make_tmp ("vps-state-XXXXXX", &error);
  g_assert_no_error (error);
  f->srv.port = free_port ();
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->state, vps_state_unref);
  server_kill (&f->srv);
  if (f->srv.dir != NULL)
    {
      g_autoptr (GDir) d = g_dir_open (f->srv.dir, 0, NULL);
      const char *name;

      while (d != NULL && (name = g_dir_read_name (d)) != NULL)
        {
          g_autofree char *path = g_build_filename (f->srv.dir, name, NULL);

          g_unlink (path);
        }
      g_rmdir (f->srv.dir);
      g_free (f->srv.dir);
    }
}

/* One batch; expects success within 5 s. */
static void
run_ok (VpsState *state, const VpsStateOp *ops, guint n, StateWait *w)
{
  state_run_async (state, ops, n, NULL, w, 5000);
  g_assert_no_error (w->error);
  g_assert_cmpuint (w->n, ==, n);
}

static gint64
run_incr (VpsState *state, const char *key)
{
  VpsStateOp op = { VPS_STATE_INCR, key, NULL, 1, 60000 };
  StateWait w;

  run_ok (state, &op, 1, &w);
  return w.results[0].value;
}

/* Expects UNAVAILABLE; returns the elapsed ms. */
static gint64
run_unavailable (VpsState *state, const char *key, const char *message)
{
  VpsStateOp op = { VPS_STATE_INCR, key, NULL, 1, 60000 };
  StateWait w;
  gint64 ms = state_run_async (state, &op, 1, NULL, &w, 5000);

  g_assert_error (w.error, VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE);
  g_test_message ("after %" G_GINT64_FORMAT " ms: %s", ms, w.error->message);
  if (message != NULL)
    g_assert_nonnull (strstr (w.error->message, message));
  g_clear_error (&w.error);
  return ms;
}

/* Retries every 100 ms until a batch works; returns the ms it took. */
static gint64
wait_until_works (VpsState *state, gint64 limit_ms)
{
  gint64 start = g_get_monotonic_time ();
  VpsStateOp op = { VPS_STATE_INCR, "vps:test:probe", NULL, 1, 60000 };

  for (;;)
    {
      StateWait w;

      state_run_async (state, &op, 1, NULL, &w, 5000);
      if (w.error == NULL)
        return (g_get_monotonic_time () - start) / 1000;
      g_clear_error (&w.error);
      g_assert_cmpint (g_get_monotonic_time () - start, <, limit_ms * 1000);
      g_usleep (100 * 1000);
    }
}

/* ---- operations ---------------------------------------------------------- */

static void
test_case (Fixture *f, gconstpointer p)
{
  const StateCase *tc = p;
  g_autoptr (GString) key = g_string_new (NULL);
  VpsStateOp ops[VPS_STATE_MAX_OPS];
  GString *keys[VPS_STATE_MAX_OPS];
  StateWait w;
  gsize n = 0;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, NULL);
  /* Step by step, one batch each. */
  for (gsize i = 0; i < tc->n_steps; i++)
    {
      const StateStep *s = &tc->steps[i];
      VpsStateOp op = state_op_of (s, "one:", key);

      state_run_async (f->state, &op, 1, NULL, &w, 5000);
      if (s->err != OK)
        {
          g_assert_error (w.error, VPS_STATE_ERROR, s->err);
          g_test_message ("step %" G_GSIZE_FORMAT ": %s", i, w.error->message);
          g_clear_error (&w.error);
          continue;
        }
      g_assert_no_error (w.error);
      g_assert_cmpint (w.results[0].value, ==, s->want_value);
      g_assert_cmpint (w.results[0].found, ==, s->want_found);
    }
  /* The same steps pipelined in one batch (up to the first error). */
  for (gsize i = 0; i < tc->n_steps && tc->steps[i].err == OK; i++)
    {
      keys[n] = g_string_new (NULL);
      ops[n] = state_op_of (&tc->steps[i], "batch:", keys[n]);
      n++;
    }
  run_ok (f->state, ops, (guint)n, &w);
  for (gsize i = 0; i < n; i++)
    {
      g_assert_cmpint (w.results[i].value, ==, tc->steps[i].want_value);
      g_assert_cmpint (w.results[i].found, ==, tc->steps[i].want_found);
      g_string_free (keys[i], TRUE);
    }
}

static void
test_invalid (Fixture *f, gconstpointer p)
{
  VpsStateOp ops[VPS_STATE_MAX_OPS + 1];
  VpsStateResult r[VPS_STATE_MAX_OPS + 1];
  g_autoptr (GError) error = NULL;
  StateWait w;

  if (f->srv.dir == NULL)
    return;
  /* Refused before Redis is asked: no server needed. */
  f->state = state_for (&f->srv, NULL);
  for (gsize c = 0; c < G_N_ELEMENTS (state_invalid_cases); c++)
    {
      for (guint i = 0; i < G_N_ELEMENTS (ops); i++)
        ops[i] = state_invalid_cases[c].op;
      g_assert_false (vps_state_exec_try (f->state, ops, state_invalid_cases[c].n, r, &error));
      g_assert_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID);
      g_clear_error (&error);
      state_run_async (f->state, ops, state_invalid_cases[c].n, NULL, &w, 1000);
      g_assert_error (w.error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID);
      g_clear_error (&w.error);
    }
  /* A valid batch is never answered synchronously by Redis. */
  ops[0] = (VpsStateOp){ VPS_STATE_GET, "k" };
  g_assert_false (vps_state_exec_try (f->state, ops, 1, r, &error));
  g_assert_no_error (error);
}

/* Expiry on the Redis server's clock, 200 ms ttls. */
static void
test_expiry (Fixture *f, gconstpointer p)
{
  VpsStateOp set[] = {
    { VPS_STATE_SET, "s", NULL, 42, 200 },      { VPS_STATE_INCR, "i", NULL, 5, 200 },
    { VPS_STATE_SET_NX, "n", NULL, 9, 200 },    { VPS_STATE_WINDOW, "w", NULL, 5, 200 },
    { VPS_STATE_MEMBER_ADD, "m", "a", 0, 200 }, { VPS_STATE_MEMBER_ADD, "m", "b", 0, 2000 },
  };
  VpsStateOp get[] = {
    { VPS_STATE_GET, "s" },          { VPS_STATE_GET, "i" },
    { VPS_STATE_GET, "n" },          { VPS_STATE_WINDOW, "w", NULL, 5, 200 },
    { VPS_STATE_MEMBER_COUNT, "m" },
  };
  StateWait w;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, NULL);
  run_ok (f->state, set, G_N_ELEMENTS (set), &w);
  run_ok (f->state, get, G_N_ELEMENTS (get), &w);
  g_assert_cmpint (w.results[0].value, ==, 42);
  g_assert_cmpint (w.results[1].value, ==, 5);
  g_assert_cmpint (w.results[2].value, ==, 9);
  g_assert_cmpint (w.results[3].value, ==, 2);
  g_assert_cmpint (w.results[4].value, ==, 2);
  g_usleep (300 * 1000);
  run_ok (f->state, get, G_N_ELEMENTS (get), &w);
  for (int i = 0; i < 3; i++)
    {
      g_assert_false (w.results[i].found);
      g_assert_cmpint (w.results[i].value, ==, 0);
    }
  g_assert_cmpint (w.results[3].value, ==, 1);
  g_assert_cmpint (w.results[4].value, ==, 1);
}

/* A sliding window on the real clock: limit 2, 500 ms. */
static void
test_window_slides (Fixture *f, gconstpointer p)
{
  VpsStateOp op = { VPS_STATE_WINDOW, "vps:rate:w", NULL, 2, 500 };
  const gint64 want[] = { 1, 2, 3, 3, 3 };
  StateWait w;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (want); i++)
    {
      run_ok (f->state, &op, 1, &w);
      g_assert_cmpint (w.results[0].value, ==, want[i]);
    }
  g_usleep (600 * 1000);
  run_ok (f->state, &op, 1, &w);
  g_assert_cmpint (w.results[0].value, ==, 1);
}

/* ---- faults -------------------------------------------------------------- */

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

/* ---- sharing, pipelining, threads ---------------------------------------- */

static void
test_shared (Fixture *f, gconstpointer p)
{
  g_autoptr (VpsState) other = NULL;
  VpsStateOp win = { VPS_STATE_WINDOW, "w", NULL, 10, 60000 };
  VpsStateOp add = { VPS_STATE_MEMBER_ADD, "m", "a", 0, 60000 };
  StateWait w;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, NULL);
  other = state_for (&f->srv, NULL);
  g_assert_cmpint (run_incr (f->state, "k"), ==, 1);
  g_assert_cmpint (run_incr (other, "k"), ==, 2);
  run_ok (f->state, &win, 1, &w);
  run_ok (other, &win, 1, &w);
  g_assert_cmpint (w.results[0].value, ==, 2);
  run_ok (f->state, &add, 1, &w);
  add.member = "b";
  run_ok (other, &add, 1, &w);
  g_assert_cmpint (w.results[0].value, ==, 2);
}

typedef struct
{
  guint done, failed;
} Tally;

static void
tally_cb (VpsState *state, const VpsStateResult *results, guint n, const GError *error, gpointer p)
{
  Tally *t = p;

  t->done++;
  if (error != NULL && t->failed++ == 0)
    g_test_message ("first failure: %s", error->message);
}

static void
test_pipelined (Fixture *f, gconstpointer p)
{
  VpsStateOp ops[] = {
    { VPS_STATE_INCR, "k", NULL, 1, 60000 },
    { VPS_STATE_WINDOW, "w", NULL, 100, 60000 },
    { VPS_STATE_MEMBER_ADD, "m", "a", 0, 60000 },
  };
  const guint n = 2000;
  Tally t = { 0 };
  gint64 start;
  VpsStateStats stats;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, "timeout = 5s\n");
  /* Connected first: the flood then spreads over the pool. */
  g_assert_cmpint (run_incr (f->state, "k"), ==, 1);
  start = g_get_monotonic_time ();
  for (guint i = 0; i < n; i++)
    vps_state_exec_async (f->state, ops, G_N_ELEMENTS (ops), NULL, tally_cb, &t);
  while (t.done < n)
    g_main_context_iteration (NULL, TRUE);
  g_test_message ("%u batches of 3 ops in flight together: %.1f us per batch", n,
                  (double)(g_get_monotonic_time () - start) / n);
  g_assert_cmpuint (t.failed, ==, 0);
  g_assert_cmpint (run_incr (f->state, "k"), ==, n + 2);
  vps_state_get_stats (f->state, &stats);
  g_assert_cmpuint (stats.batches, ==, n + 2);
  g_assert_cmpuint (stats.failures, ==, 0);
  /* A flood before any connection exists waits for the first one. */
  {
    g_autoptr (VpsState) cold = state_for (&f->srv, "timeout = 5s\n");
    Tally c = { 0 };

    for (guint i = 0; i < n; i++)
      vps_state_exec_async (cold, ops, G_N_ELEMENTS (ops), NULL, tally_cb, &c);
    while (c.done < n)
      g_main_context_iteration (NULL, TRUE);
    g_assert_cmpuint (c.failed, ==, 0);
    g_assert_cmpint (run_incr (cold, "k"), ==, 2 * n + 3);
  }
  /* One at a time: the round trip (caller thread → state thread → Redis
   * → caller's context). */
  start = g_get_monotonic_time ();
  for (guint i = 0; i < 1000; i++)
    {
      VpsStateOp op = { VPS_STATE_INCR, "seq", NULL, 1, 60000 };
      Tally one = { 0 };

      vps_state_exec_async (f->state, &op, 1, NULL, tally_cb, &one);
      while (one.done == 0)
        g_main_context_iteration (NULL, TRUE);
      g_assert_cmpuint (one.failed, ==, 0);
    }
  g_test_message ("sequential: %.1f us per batch round trip",
                  (double)(g_get_monotonic_time () - start) / 1000);
}

static gpointer
thread_main (gpointer p)
{
  VpsState *state = p;
  g_autoptr (GMainContext) ctx = g_main_context_new ();
  Tally t = { 0 };

  g_main_context_push_thread_default (ctx);
  for (guint i = 0; i < 500; i++)
    {
      VpsStateOp op = { VPS_STATE_INCR, "shared", NULL, 1, 60000 };

      vps_state_exec_async (state, &op, 1, NULL, tally_cb, &t);
      if (i % 50 == 0)
        while (t.done <= i)
          g_main_context_iteration (ctx, TRUE);
    }
  while (t.done < 500)
    g_main_context_iteration (ctx, TRUE);
  g_main_context_pop_thread_default (ctx);
  return GUINT_TO_POINTER (t.failed);
}

static void
test_threads (Fixture *f, gconstpointer p)
{
  GThread *t[2];

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  f->state = state_for (&f->srv, "timeout = 5s\n");
  for (int i = 0; i < 2; i++)
    t[i] = g_thread_new ("worker", thread_main, f->state);
  for (int i = 0; i < 2; i++)
    g_assert_cmpuint (GPOINTER_TO_UINT (g_thread_join (t[i])), ==, 0);
  g_assert_cmpint (run_incr (f->state, "shared"), ==, 1001);
}

static void
test_unix_socket (Fixture *f, gconstpointer p)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_autoptr (VpsConfig) cfg = NULL;

  if (f->srv.dir == NULL)
    return;
  server_start (&f->srv);
  text = g_strdup_printf ("[state]\nbackend = redis\naddress = unix:%s/redis.sock\n", f->srv.dir);
  cfg = vps_config_load_data ("test.conf", text, &error);
  g_assert_no_error (error);
  f->state = vps_state_new (cfg, &error);
  g_assert_no_error (error);
  g_assert_cmpint (run_incr (f->state, "k"), ==, 1);
  g_assert_cmpint (run_incr (f->state, "k"), ==, 2);
}

#define ADD(path, func, data)                                                                      \
  g_test_add (path, Fixture, data, fixture_setup, func, fixture_teardown)

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  state_invalid_init ();
  for (gsize i = 0; i < G_N_ELEMENTS (state_cases); i++)
    {
      g_autofree char *path = NULL;

      /* Millisecond edges need the memory backend's fake clock; the real
       * clock versions are test_expiry and test_window_slides. */
      if (state_cases[i].timing)
        continue;
      path = g_strdup_printf ("/state/redis/ops/%s", state_cases[i].name);
      g_test_add (path, Fixture, &state_cases[i], fixture_setup, test_case, fixture_teardown);
    }
  ADD ("/state/redis/invalid", test_invalid, NULL);
  ADD ("/state/redis/expiry", test_expiry, NULL);
  ADD ("/state/redis/window-slides", test_window_slides, NULL);
  ADD ("/state/redis/down-at-start", test_down_at_start, NULL);
  ADD ("/state/redis/killed-and-restarted", test_killed_and_restarted, NULL);
  ADD ("/state/redis/slow", test_slow, NULL);
  ADD ("/state/redis/connect-timeout", test_connect_timeout, NULL);
  ADD ("/state/redis/password", test_password, NULL);
  ADD ("/state/redis/cancel", test_cancel, NULL);
  ADD ("/state/redis/shared", test_shared, NULL);
  ADD ("/state/redis/pipelined", test_pipelined, NULL);
  ADD ("/state/redis/threads", test_threads, NULL);
  ADD ("/state/redis/unix-socket", test_unix_socket, NULL);
  return g_test_run ();
}
