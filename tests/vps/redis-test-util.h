/* SPDX-License-Identifier: MIT
 *
 * redis-test-util.h — what the Redis state tests share: a real
 * redis-server each test starts on a free port in a temporary directory
 * (killed at the end, and with the test process if an assertion aborts
 * it), the fixture holding it and a VpsState on it, and small synchronous
 * helpers over vps_state_exec_async.
 */
#pragma once

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

static inline guint
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
static inline void
die_with_parent (gpointer unused)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

/* Up when it answers PING (+PONG, or -NOAUTH with a password). */
static inline gboolean
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

static inline void
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
static inline char
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
static inline void
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

static inline void
server_kill (Server *s)
{
  if (s->proc == NULL)
    return;
  g_subprocess_send_signal (s->proc, SIGKILL);
  g_subprocess_wait (s->proc, NULL, NULL);
  g_clear_object (&s->proc);
}

static inline VpsState *
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

static inline void
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

static inline void
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
static inline void
run_ok (VpsState *state, const VpsStateOp *ops, guint n, StateWait *w)
{
  state_run_async (state, ops, n, NULL, w, 5000);
  g_assert_no_error (w->error);
  g_assert_cmpuint (w->n, ==, n);
}

static inline gint64
run_incr (VpsState *state, const char *key)
{
  VpsStateOp op = { VPS_STATE_INCR, key, NULL, 1, 60000 };
  StateWait w;

  run_ok (state, &op, 1, &w);
  return w.results[0].value;
}

/* Expects UNAVAILABLE; returns the elapsed ms. */
static inline gint64
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
static inline gint64
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
