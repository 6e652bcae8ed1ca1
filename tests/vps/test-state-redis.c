/* SPDX-License-Identifier: MIT
 *
 * test-state-redis.c — the Redis state backend (vps/state-redis.c) against
 * a real redis-server (Debian's redis-server, 7.0; redis-test-util.h).
 *
 * Covers: every operation (the table shared with the memory test), expiry
 * on Redis's clock, two VpsState on one Redis, many batches pipelined, two
 * threads, a unix socket.  Faults: test-state-redis-faults.c.
 */
#include "redis-test-util.h"

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
  ADD ("/state/redis/shared", test_shared, NULL);
  ADD ("/state/redis/pipelined", test_pipelined, NULL);
  ADD ("/state/redis/threads", test_threads, NULL);
  ADD ("/state/redis/unix-socket", test_unix_socket, NULL);
  return g_test_run ();
}
