/* SPDX-License-Identifier: MIT
 *
 * bench-state — cost of the rules' shared-state checks (rate()) through the
 * engine, in memory and against a Redis on loopback.
 *
 *   bench-state CHECKS [REDIS_HOST:PORT]
 *
 * For each backend (memory; redis when an address is given) it runs CHECKS
 * connect stages through vps_engine_run_stage_async on one thread, over
 * 1000 client addresses, with
 *   - "base":  a rule that builds the key and compares it (no check),
 *   - "rate":  the same rule with rate("conn:" + client.ip, N, 1m),
 *   - "rate2": two rate() checks in one condition (pipelined in one batch),
 * at 1 stage in flight (memory, and Redis latency) and at 64 in flight
 * (Redis throughput: the checks of different sessions share the pool's
 * pipelines).  Prints "key value" lines (bench/run.sh makes the table):
 *   NAME_us_per_stage, NAME_stages_per_s, NAME_batches_per_stage,
 * and for memory the cost of one check alone (vps_state_exec_try of a
 * WINDOW op, no engine): mem_window_us.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vps/config.h"
#include "vps/engine.h"
#include "vps/log.h"
#include "vps/session.h"
#include "vps/state.h"

#define N_CLIENTS 1000

static const char *const programs[][2] = {
  { "base", "connect { rule \"flood\" when (\"conn:\" + client.ip) == \"x\" => tempfail }" },
  { "rate", "connect { rule \"flood\" when not rate(\"conn:\" + client.ip, 100000, 1m) => "
            "tempfail }" },
  { "rate2", "connect { rule \"flood\" when not rate(\"conn:\" + client.ip, 100000, 1m) or not "
             "rate(\"helo:\" + client.ip, 100000, 1m) => tempfail }" },
};

typedef struct
{
  VpsEngine *engine;
  VpsSession *sessions[N_CLIENTS];
  guint64 total, started, done, limited;
  guint inflight, max_inflight;
} Bench;

static double
cpu_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void start_more (Bench *b);

static void
stage_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Bench *b = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) r = vps_engine_run_stage_finish (b->engine, res, &error);

  if (r == NULL)
    g_error ("stage failed: %s", error->message);
  if (r->verdict != RULES_VERDICT_CONTINUE)
    b->limited++;
  b->done++;
  b->inflight--;
  start_more (b);
}

static void
start_more (Bench *b)
{
  while (b->inflight < b->max_inflight && b->started < b->total)
    {
      VpsSession *s = b->sessions[b->started % N_CLIENTS];
      g_autoptr (VpsTxn) t = vps_txn_new (s);

      b->started++;
      b->inflight++;
      vps_engine_run_stage_async (b->engine, s, t, RULES_STAGE_CONNECT, NULL, stage_cb, b);
    }
}

static void
run_one (const char *backend, const char *state_conf, const char *name, const char *rules,
         guint64 checks, guint inflight)
{
  g_autofree char *conf = g_strdup_printf ("[state]\n%s\n", state_conf);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = vps_config_load_data ("bench.conf", conf, &error);
  g_autoptr (GMainContext) ctx = g_main_context_new ();
  VpsStateStats before = { 0 }, after = { 0 };
  Bench b = { 0 };
  gint64 t0;
  double c0, wall, cpu;

  if (cfg == NULL
      || (b.engine = vps_engine_new_with_rules_string (cfg, name, rules, &error)) == NULL)
    g_error ("%s", error->message);
  for (guint i = 0; i < N_CLIENTS; i++)
    {
      char ip[32];
      g_snprintf (ip, sizeof ip, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
      b.sessions[i] = vps_session_new ();
      vps_session_set_client (b.sessions[i], ip, 25000, NULL);
    }
  g_main_context_push_thread_default (ctx);
  if (vps_engine_get_state (b.engine))
    vps_state_get_stats (vps_engine_get_state (b.engine), &before);
  b.total = checks;
  b.max_inflight = inflight;
  t0 = g_get_monotonic_time ();
  c0 = cpu_s ();
  start_more (&b);
  while (b.done < b.total)
    g_main_context_iteration (ctx, TRUE);
  wall = (g_get_monotonic_time () - t0) / 1e6;
  cpu = cpu_s () - c0;
  if (vps_engine_get_state (b.engine))
    vps_state_get_stats (vps_engine_get_state (b.engine), &after);
  g_main_context_pop_thread_default (ctx);
  printf ("%s_%s_c%u_us_per_stage %.3f\n", backend, name, inflight, wall * 1e6 / checks);
  printf ("%s_%s_c%u_cpu_us_per_stage %.3f\n", backend, name, inflight, cpu * 1e6 / checks);
  printf ("%s_%s_c%u_stages_per_s %.0f\n", backend, name, inflight, checks / wall);
  printf ("%s_%s_c%u_batches_per_stage %.3f\n", backend, name, inflight,
          (double)(after.batches - before.batches) / checks);
  printf ("%s_%s_c%u_failures %" G_GUINT64_FORMAT "\n", backend, name, inflight,
          after.failures - before.failures);
  printf ("%s_%s_c%u_limited %" G_GUINT64_FORMAT "\n", backend, name, inflight, b.limited);
  for (guint i = 0; i < N_CLIENTS; i++)
    vps_session_unref (b.sessions[i]);
  /* sessions and txns drop their references as their tasks finish */
  while (g_main_context_iteration (ctx, FALSE))
    ;
  vps_engine_unref (b.engine);
}

/* One WINDOW op through vps_state_exec_try alone: the backend's own cost. */
static void
window_alone (guint64 n)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg
      = vps_config_load_data ("bench.conf", "[state]\nbackend = memory\n", &error);
  g_autoptr (VpsState) st = cfg ? vps_state_new (cfg, &error) : NULL;
  char keys[N_CLIENTS][32];
  gint64 t0;

  if (st == NULL)
    g_error ("%s", error->message);
  for (guint i = 0; i < N_CLIENTS; i++)
    g_snprintf (keys[i], sizeof keys[i], "vps:rate:conn:10.0.%u.%u", i >> 8, i & 255);
  t0 = g_get_monotonic_time ();
  for (guint64 i = 0; i < n; i++)
    {
      VpsStateOp op = { VPS_STATE_WINDOW, keys[i % N_CLIENTS], NULL, 100000, 60000 };
      VpsStateResult r;
      if (!vps_state_exec_try (st, &op, 1, &r, &error))
        g_error ("exec_try: %s", error ? error->message : "not synchronous");
    }
  printf ("mem_window_us %.3f\n", (g_get_monotonic_time () - t0) / (double)n);
}

int
main (int argc, char **argv)
{
  guint64 checks = argc > 1 ? g_ascii_strtoull (argv[1], NULL, 10) : 200000;
  const char *redis = argc > 2 ? argv[2] : NULL;

  vps_log_capture (g_string_new (NULL)); /* no log lines in the figures */
  window_alone (checks);
  for (guint p = 0; p < G_N_ELEMENTS (programs); p++)
    run_one ("mem", "backend = memory", programs[p][0], programs[p][1], checks, 1);
  if (redis != NULL)
    {
      g_autofree char *conf
          = g_strdup_printf ("backend = redis\naddress = %s\ntimeout = 2s\nconnections = 4", redis);
      for (guint p = 0; p < G_N_ELEMENTS (programs); p++)
        {
          run_one ("redis", conf, programs[p][0], programs[p][1], MIN (checks, 20000), 1);
          run_one ("redis", conf, programs[p][0], programs[p][1], checks, 64);
        }
    }
  return 0;
}
