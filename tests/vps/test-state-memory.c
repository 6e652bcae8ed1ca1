/* SPDX-License-Identifier: MIT
 *
 * test-state-memory.c — vps/state.c and the in-memory backend
 * (vps/state-memory.c): every operation against the shared table of
 * sequences on a fake clock, expiry on the real clock, LRU eviction at
 * max_keys (exact and sharded), the amortised sweep, refused batches, the
 * async path and its cancellation, two threads, [state] from vps.conf, and
 * the cost of one operation.
 */
#include "vps/config.h"
#include "vps/state-private.h"

#include "state-test-util.h"

typedef struct
{
  gint64 now_us;
} FakeClock;

static gint64
fake_now (gpointer p)
{
  return ((FakeClock *)p)->now_us;
}

static VpsState *
memory_state (guint64 max_keys)
{
  return vps_state_new_with_backend (&vps_state_memory_class, vps_state_memory_new (max_keys), 0);
}

static void
run_case (gconstpointer p)
{
  const StateCase *tc = p;
  g_autoptr (VpsState) state = memory_state (1000);
  g_autoptr (GString) key = g_string_new (NULL);
  FakeClock clock = { 1000000 };

  vps_state_memory_set_clock (state, fake_now, &clock);
  for (gsize i = 0; i < tc->n_steps; i++)
    {
      const StateStep *s = &tc->steps[i];
      VpsStateOp op;
      VpsStateResult r = { -1, -1 };
      g_autoptr (GError) error = NULL;
      gboolean ok;

      clock.now_us += s->advance_ms * 1000;
      op = state_op_of (s, "", key);
      ok = vps_state_exec_try (state, &op, 1, &r, &error);
      g_test_message ("step %" G_GSIZE_FORMAT ": value %" G_GINT64_FORMAT " found %d", i, r.value,
                      r.found);
      if (s->err != OK)
        {
          g_assert_error (error, VPS_STATE_ERROR, s->err);
          g_assert_false (ok);
          continue;
        }
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpint (r.value, ==, s->want_value);
      g_assert_cmpint (r.found, ==, s->want_found);
    }
}

/* The same sequence as one batch through the async path. */
static void
run_case_async (gconstpointer p)
{
  const StateCase *tc = p;
  g_autoptr (VpsState) state = memory_state (1000);
  VpsStateOp ops[VPS_STATE_MAX_OPS];
  GString *keys[VPS_STATE_MAX_OPS];
  StateWait w;
  gsize n = 0;

  for (gsize i = 0; i < tc->n_steps && tc->steps[i].err == OK && tc->steps[i].advance_ms == 0; i++)
    {
      keys[n] = g_string_new (NULL);
      ops[n] = state_op_of (&tc->steps[i], "", keys[n]);
      n++;
    }
  state_run_async (state, ops, (guint)n, NULL, &w, 5000);
  g_assert_no_error (w.error);
  g_assert_cmpuint (w.n, ==, n);
  for (gsize i = 0; i < n; i++)
    {
      g_assert_cmpint (w.results[i].value, ==, tc->steps[i].want_value);
      g_assert_cmpint (w.results[i].found, ==, tc->steps[i].want_found);
      g_string_free (keys[i], TRUE);
    }
}

static void
test_invalid (gconstpointer p)
{
  const StateInvalidCase *tc = p;
  g_autoptr (VpsState) state = memory_state (1000);
  VpsStateOp ops[VPS_STATE_MAX_OPS + 1];
  VpsStateResult results[VPS_STATE_MAX_OPS + 1];
  g_autoptr (GError) error = NULL;
  VpsStateStats stats;
  StateWait w;

  for (guint i = 0; i < G_N_ELEMENTS (ops); i++)
    ops[i] = tc->op;
  g_assert_false (vps_state_exec_try (state, ops, tc->n, results, &error));
  g_assert_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID);
  g_test_message ("%s", error->message);
  state_run_async (state, ops, tc->n, NULL, &w, 5000);
  g_assert_error (w.error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID);
  g_clear_error (&w.error);
  vps_state_get_stats (state, &stats);
  g_assert_cmpuint (stats.batches, ==, 2);
  g_assert_cmpuint (stats.failures, ==, 2);
  g_assert_cmpuint (stats.keys, ==, 0);
}

static void
test_limits_accepted (void)
{
  g_autoptr (VpsState) state = memory_state (1000);
  char key[VPS_STATE_MAX_KEY + 1], member[VPS_STATE_MAX_MEMBER + 1];
  VpsStateOp ops[VPS_STATE_MAX_OPS];
  VpsStateResult results[VPS_STATE_MAX_OPS];
  g_autoptr (GError) error = NULL;

  memset (key, 'k', VPS_STATE_MAX_KEY);
  key[VPS_STATE_MAX_KEY] = '\0';
  memset (member, 'm', VPS_STATE_MAX_MEMBER);
  member[VPS_STATE_MAX_MEMBER] = '\0';
  for (guint i = 0; i < VPS_STATE_MAX_OPS; i++)
    ops[i] = (VpsStateOp){ VPS_STATE_MEMBER_ADD, key, member, 0, VPS_STATE_MAX_TTL_MS };
  g_assert_true (vps_state_exec_try (state, ops, VPS_STATE_MAX_OPS, results, &error));
  g_assert_no_error (error);
  g_assert_cmpint (results[0].value, ==, 1);
  g_assert_false (results[0].found);
  g_assert_true (results[VPS_STATE_MAX_OPS - 1].found);
  ops[0] = (VpsStateOp){ VPS_STATE_WINDOW, "w", NULL, VPS_STATE_MAX_WINDOW, 1000 };
  g_assert_true (vps_state_exec_try (state, ops, 1, results, &error));
  g_assert_cmpint (results[0].value, ==, 1);
}

/* A full window keeps limit+1 events however many come. */
static void
test_window_bounded (void)
{
  g_autoptr (VpsState) state = memory_state (10);
  VpsStateOp op = { VPS_STATE_WINDOW, "w", NULL, 100, 60000 };
  VpsStateResult r;

  for (int i = 0; i < 10000; i++)
    g_assert_true (vps_state_exec_try (state, &op, 1, &r, NULL));
  g_assert_cmpint (r.value, ==, 101);
  /* A smaller limit on the same key trims to it. */
  op.value = 3;
  g_assert_true (vps_state_exec_try (state, &op, 1, &r, NULL));
  g_assert_cmpint (r.value, ==, 4);
}

static void
test_members_capped (void)
{
  g_autoptr (VpsState) state = memory_state (10);
  VpsStateOp op = { VPS_STATE_MEMBER_ADD, "m", NULL, 0, 60000 };
  VpsStateResult r;
  char name[32];

  for (int i = 0; i < VPS_STATE_MAX_MEMBERS + 10; i++)
    {
      g_snprintf (name, sizeof name, "s%d", i);
      op.member = name;
      g_assert_true (vps_state_exec_try (state, &op, 1, &r, NULL));
    }
  g_assert_cmpint (r.value, ==, VPS_STATE_MAX_MEMBERS);
}

static void
test_expiry_real_clock (void)
{
  g_autoptr (VpsState) state = memory_state (1000);
  VpsStateOp ops[] = {
    { VPS_STATE_SET, "s", NULL, 42, 200 },
    { VPS_STATE_WINDOW, "w", NULL, 5, 200 },
    { VPS_STATE_MEMBER_ADD, "m", "a", 0, 200 },
  };
  VpsStateOp gets[] = {
    { VPS_STATE_GET, "s", NULL, 0, 0 },
    { VPS_STATE_WINDOW, "w", NULL, 5, 200 },
    { VPS_STATE_MEMBER_COUNT, "m", NULL, 0, 0 },
  };
  VpsStateResult r[3];

  g_assert_true (vps_state_exec_try (state, ops, 3, r, NULL));
  g_assert_true (vps_state_exec_try (state, gets, 3, r, NULL));
  g_assert_cmpint (r[0].value, ==, 42);
  g_assert_cmpint (r[1].value, ==, 2);
  g_assert_cmpint (r[2].value, ==, 1);
  g_usleep (300 * 1000);
  g_assert_true (vps_state_exec_try (state, gets, 3, r, NULL));
  g_assert_false (r[0].found);
  g_assert_cmpint (r[0].value, ==, 0);
  g_assert_cmpint (r[1].value, ==, 1);
  g_assert_cmpint (r[2].value, ==, 0);
}

static void
test_eviction_lru (void)
{
  g_autoptr (VpsState) state = memory_state (3);
  VpsStateResult r;
  VpsStateStats stats;
  const char *keys[] = { "a", "b", "c" };

  for (guint i = 0; i < 3; i++)
    {
      VpsStateOp op = { VPS_STATE_SET, keys[i], NULL, i, 60000 };

      g_assert_true (vps_state_exec_try (state, &op, 1, &r, NULL));
    }
  /* a is used again: b is now the least recently used */
  g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_GET, "a" }, 1, &r, NULL));
  g_assert_true (r.found);
  g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_INCR, "d", NULL, 1, 60000 }, 1,
                                     &r, NULL));
  vps_state_get_stats (state, &stats);
  g_assert_cmpuint (stats.keys, ==, 3);
  g_assert_cmpuint (stats.evictions, ==, 1);
  g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_GET, "b" }, 1, &r, NULL));
  g_assert_false (r.found);
  for (guint i = 0; i < 3; i++)
    {
      const char *live = i == 0 ? "a" : i == 1 ? "c" : "d";

      g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_GET, live }, 1, &r, NULL));
      g_assert_true (r.found);
    }
}

/* Past VPS_STATE_MEMORY_SHARD_MIN_KEYS the table is sharded: still never
 * more than max_keys. */
static void
test_eviction_sharded (void)
{
  const guint64 max_keys = 20000;
  g_autoptr (VpsState) state = memory_state (max_keys);
  VpsStateStats stats;
  char key[32];

  for (guint i = 0; i < 5 * max_keys; i++)
    {
      VpsStateResult r;

      g_snprintf (key, sizeof key, "key-%u", i);
      g_assert_true (vps_state_exec_try (
          state, &(VpsStateOp){ VPS_STATE_INCR, key, NULL, 1, 60000 }, 1, &r, NULL));
    }
  vps_state_get_stats (state, &stats);
  g_test_message ("keys %" G_GUINT64_FORMAT " evictions %" G_GUINT64_FORMAT, stats.keys,
                  stats.evictions);
  g_assert_cmpuint (stats.keys, <=, max_keys);
  g_assert_cmpuint (stats.keys, >=, max_keys * 9 / 10);
  g_assert_cmpuint (stats.keys + stats.evictions, ==, 5 * max_keys);
}

/* Expired keys nobody asks for again go within a few operations. */
static void
test_sweep (void)
{
  g_autoptr (VpsState) state = memory_state (1000);
  FakeClock clock = { 1000000 };
  VpsStateStats stats;
  VpsStateResult r;
  char key[32];

  vps_state_memory_set_clock (state, fake_now, &clock);
  for (guint i = 0; i < 100; i++)
    {
      g_snprintf (key, sizeof key, "k%u", i);
      g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_SET, key, NULL, 1, 10 }, 1,
                                         &r, NULL));
    }
  g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_SET, "live", NULL, 1, 60000 },
                                     1, &r, NULL));
  clock.now_us += 20 * 1000;
  for (guint i = 0; i < 100 / VPS_STATE_MEMORY_SWEEP + 2; i++)
    g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_GET, "live" }, 1, &r, NULL));
  vps_state_get_stats (state, &stats);
  g_assert_cmpuint (stats.keys, ==, 1);
  g_assert_cmpuint (stats.evictions, ==, 0);
}

/* ---- async ------------------------------------------------------------- */

static void
test_async_cancelled (void)
{
  g_autoptr (VpsState) state = memory_state (1000);
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  VpsStateOp op = { VPS_STATE_INCR, "k", NULL, 1, 60000 };
  VpsStateResult r;
  StateWait w;

  g_cancellable_cancel (cancellable);
  state_run_async (state, &op, 1, cancellable, &w, 5000);
  g_assert_error (w.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&w.error);
  /* A cancelled batch did not run. */
  g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_GET, "k" }, 1, &r, NULL));
  g_assert_false (r.found);
  /* A live cancellable: the result (memory answers at once), once. */
  g_cancellable_reset (cancellable);
  state_run_async (state, &op, 1, cancellable, &w, 5000);
  g_assert_no_error (w.error);
  g_assert_cmpint (w.results[0].value, ==, 1);
  g_cancellable_cancel (cancellable);
  for (int i = 0; i < 5; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (w.calls, ==, 1);
}

typedef struct
{
  VpsState *state;
  const char *key;
  guint n;
  gboolean async;
} Worker;

static gpointer
worker (gpointer p)
{
  Worker *wk = p;
  g_autoptr (GMainContext) ctx = g_main_context_new ();
  char own[64];

  g_main_context_push_thread_default (ctx);
  g_snprintf (own, sizeof own, "own-%p", (void *)wk);
  for (guint i = 0; i < wk->n; i++)
    {
      VpsStateOp ops[] = {
        { VPS_STATE_INCR, wk->key, NULL, 1, 60000 },
        { VPS_STATE_INCR, own, NULL, 1, 60000 },
        { VPS_STATE_WINDOW, "shared-window", NULL, 10, 60000 },
        { VPS_STATE_MEMBER_ADD, "shared-members", own, 0, 60000 },
      };
      VpsStateResult r[4];

      if (wk->async && i % 100 == 0)
        {
          StateWait w;

          state_run_async (wk->state, ops, 4, NULL, &w, 5000);
          g_assert_no_error (w.error);
          g_assert_cmpint (w.results[1].value, ==, i + 1);
          continue;
        }
      g_assert_true (vps_state_exec_try (wk->state, ops, 4, r, NULL));
      g_assert_cmpint (r[1].value, ==, i + 1);
      g_assert_cmpint (r[2].value, <=, 11);
    }
  g_main_context_pop_thread_default (ctx);
  return NULL;
}

static void
test_two_threads (gconstpointer p)
{
  g_autoptr (VpsState) state = memory_state (GPOINTER_TO_UINT (p));
  Worker wk[2] = { { state, "shared", 100000, TRUE }, { state, "shared", 100000, TRUE } };
  GThread *t[2];
  VpsStateResult r;

  for (int i = 0; i < 2; i++)
    t[i] = g_thread_new ("worker", worker, &wk[i]);
  for (int i = 0; i < 2; i++)
    g_thread_join (t[i]);
  g_assert_true (vps_state_exec_try (state, &(VpsStateOp){ VPS_STATE_GET, "shared" }, 1, &r, NULL));
  g_assert_cmpint (r.value, ==, 200000);
  g_assert_true (vps_state_exec_try (
      state, &(VpsStateOp){ VPS_STATE_MEMBER_COUNT, "shared-members" }, 1, &r, NULL));
  g_assert_cmpint (r.value, ==, 2);
}

/* The sanity bound of the brief: well under 5 µs per simple op (mean over
 * 1e6); the figure is printed. */
static void
test_speed (void)
{
  g_autoptr (VpsState) state = memory_state (1000000);
  const guint n = 1000000;
  char keys[1000][24];
  gint64 start;
  double mean_ns;

  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    g_snprintf (keys[i], sizeof keys[i], "vps:rate:%u", i);
  start = g_get_monotonic_time ();
  for (guint i = 0; i < n; i++)
    {
      VpsStateOp op = { VPS_STATE_INCR, keys[i % G_N_ELEMENTS (keys)], NULL, 1, 60000 };
      VpsStateResult r;

      if (!vps_state_exec_try (state, &op, 1, &r, NULL))
        g_assert_not_reached ();
    }
  mean_ns = (double)(g_get_monotonic_time () - start) * 1000.0 / n;
  g_test_message ("memory INCR: %.0f ns per op (mean of %u)", mean_ns, n);
  g_assert_cmpfloat (mean_ns, <, 5000.0);
}

/* ---- [state] from vps.conf ------------------------------------------------ */

static void
test_config (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) def = vps_config_new_default ();
  g_autoptr (VpsConfig) small
      = vps_config_load_data ("t.conf", "[state]\nbackend = memory\nmax_keys = 2\n", &error);
  g_autoptr (VpsState) a = vps_state_new (def, &error);
  g_autoptr (VpsState) b = NULL;
  VpsStateStats stats;
  VpsStateResult r;

  g_assert_no_error (error);
  g_assert_cmpstr (vps_state_backend_name (a), ==, "memory");
  b = vps_state_new (small, &error);
  g_assert_no_error (error);
  for (int i = 0; i < 5; i++)
    {
      char key[8];

      g_snprintf (key, sizeof key, "k%d", i);
      g_assert_true (
          vps_state_exec_try (b, &(VpsStateOp){ VPS_STATE_SET, key, NULL, 1, 1000 }, 1, &r, NULL));
    }
  vps_state_get_stats (b, &stats);
  g_assert_cmpuint (stats.keys, ==, 2);
  g_assert_cmpuint (stats.evictions, ==, 3);
  g_assert_cmpuint (stats.batches, ==, 5);
}

static const struct
{
  const char *name;
  const char *text;
  gboolean from_state; /* vps_state_new() refuses it, not the config loader */
  gint code;
  const char *message; /* a substring */
} config_cases[] = {
  { "backend", "[state]\nbackend = memcached\n", 0, VPS_CONFIG_ERROR_INVALID, "[state] backend" },
  { "max-keys-zero", "[state]\nmax_keys = 0\n", 0, VPS_CONFIG_ERROR_INVALID, "[state] max_keys" },
  { "timeout", "[state]\ntimeout = soon\n", 0, VPS_CONFIG_ERROR_INVALID, "[state] timeout" },
  { "connections", "[state]\nconnections = 65\n", 0, VPS_CONFIG_ERROR_INVALID,
    "[state] connections" },
  { "tls", "[state]\ntls = true\n", 0, VPS_CONFIG_ERROR_UNKNOWN_KEY, "[state] tls" },
  { "address-no-port", "[state]\nbackend = redis\naddress = redis.example\n", 1,
    VPS_STATE_ERROR_CONFIG, "t.conf:3: [state] address: expected HOST:PORT" },
  { "address-port", "[state]\nbackend = redis\naddress = 127.0.0.1:99999\n", 1,
    VPS_STATE_ERROR_CONFIG, "[state] address" },
  { "address-unix-empty", "[state]\nbackend = redis\naddress = unix:\n", 1, VPS_STATE_ERROR_CONFIG,
    "empty socket path" },
  { "address-unix-long",
    "[state]\nbackend = redis\naddress = unix:/"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaa\n",
    1, VPS_STATE_ERROR_CONFIG, "longer than 107" },
};

static void
test_config_invalid (gconstpointer p)
{
  gsize i = GPOINTER_TO_SIZE (p);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = vps_config_load_data ("t.conf", config_cases[i].text, &error);

  if (!config_cases[i].from_state)
    {
      g_assert_null (cfg);
      g_assert_error (error, VPS_CONFIG_ERROR, config_cases[i].code);
    }
  else
    {
      g_autoptr (VpsState) state = NULL;

      g_assert_no_error (error);
      state = vps_state_new (cfg, &error);
      g_assert_null (state);
      g_assert_error (error, VPS_STATE_ERROR, config_cases[i].code);
    }
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, config_cases[i].message));
}

static void
test_config_redis_ok (void)
{
  const char *texts[] = {
    "[state]\nbackend = redis\n",
    "[state]\nbackend = redis\naddress = [::1]:6380\npassword = s3cret\ntimeout = 50ms\n"
    "connect_timeout = 2s\nconnections = 4\n",
    "[state]\nbackend = redis\naddress = localhost:6379\n",
    "[state]\nbackend = redis\naddress = unix:redis.sock\n",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsConfig) cfg = vps_config_load_data ("t.conf", texts[i], &error);
      g_autoptr (VpsState) state = NULL;

      g_assert_no_error (error);
      state = vps_state_new (cfg, &error);
      g_assert_no_error (error);
      g_assert_cmpstr (vps_state_backend_name (state), ==, "redis");
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  state_invalid_init ();
  for (gsize i = 0; i < G_N_ELEMENTS (state_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/state/memory/ops/%s", state_cases[i].name);
      g_autofree char *apath = g_strdup_printf ("/state/memory/async/%s", state_cases[i].name);

      g_test_add_data_func (path, &state_cases[i], run_case);
      g_test_add_data_func (apath, &state_cases[i], run_case_async);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (state_invalid_cases); i++)
    {
      g_autofree char *path
          = g_strdup_printf ("/state/memory/invalid/%s", state_invalid_cases[i].name);

      g_test_add_data_func (path, &state_invalid_cases[i], test_invalid);
    }
  g_test_add_func ("/state/memory/limits-accepted", test_limits_accepted);
  g_test_add_func ("/state/memory/window-bounded", test_window_bounded);
  g_test_add_func ("/state/memory/members-capped", test_members_capped);
  g_test_add_func ("/state/memory/expiry-real-clock", test_expiry_real_clock);
  g_test_add_func ("/state/memory/eviction/lru", test_eviction_lru);
  g_test_add_func ("/state/memory/eviction/sharded", test_eviction_sharded);
  g_test_add_func ("/state/memory/sweep", test_sweep);
  g_test_add_func ("/state/memory/async/cancelled", test_async_cancelled);
  g_test_add_data_func ("/state/memory/threads/one-shard", GUINT_TO_POINTER (1000),
                        test_two_threads);
  g_test_add_data_func ("/state/memory/threads/sharded", GUINT_TO_POINTER (1000000),
                        test_two_threads);
  g_test_add_func ("/state/memory/speed", test_speed);
  g_test_add_func ("/state/config/memory", test_config);
  g_test_add_func ("/state/config/redis-ok", test_config_redis_ok);
  for (gsize i = 0; i < G_N_ELEMENTS (config_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/state/config/invalid/%s", config_cases[i].name);

      g_test_add_data_func (path, GSIZE_TO_POINTER (i), test_config_invalid);
    }
  return g_test_run ();
}
