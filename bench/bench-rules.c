/* SPDX-License-Identifier: MIT
 *
 * bench-rules — micro-benchmark of rule evaluation through the engine.
 *
 *   bench-rules RULES.vsl MSG.eml [TRANSACTIONS]
 *
 * Runs TRANSACTIONS (default 100000) complete transactions — connect, helo,
 * mail, one rcpt, data (the message parsed with GMime each time, as a real
 * transaction does), postq, delivery — through the engine's asynchronous
 * stage API on one thread, and prints:
 *   - wall and CPU µs per transaction, and the share of message parsing
 *     (measured apart on the same message);
 *   - RSS after 1%, 10%, 50% and 100% of the run, to show that nothing grows
 *     per transaction (the "no allocation growth over 100k").
 * Output lines are "key value" pairs that bench/run.sh turns into a table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "connectors/connectors.h"
#include "vps/engine.h"
#include "vps/log.h"
#include "vps/message.h"
#include "vps/session.h"

static const RulesStage stage_order[] = {
  RULES_STAGE_CONNECT, RULES_STAGE_HELO,  RULES_STAGE_MAIL,     RULES_STAGE_RCPT,
  RULES_STAGE_DATA,    RULES_STAGE_POSTQ, RULES_STAGE_DELIVERY,
};

typedef struct
{
  VpsEngine *engine;
  GBytes *raw;
  GMainLoop *loop;
  guint total;
  guint done;
  guint step;
  VpsSession *session;
  VpsTxn *txn;
  guint64 verdicts[8];
  gint64 rss_marks[4];
} Bench;

static gint64
rss_kb (void)
{
  g_autofree char *text = NULL;
  long pages_total = 0, pages_rss = 0;

  if (!g_file_get_contents ("/proc/self/statm", &text, NULL, NULL))
    return -1;
  if (sscanf (text, "%ld %ld", &pages_total, &pages_rss) != 2)
    return -1;
  return pages_rss * (sysconf (_SC_PAGESIZE) / 1024);
}

static double
cpu_seconds (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
         + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void run_next_stage (Bench *b);

static void
start_txn (Bench *b)
{
  b->session = vps_session_new ();
  vps_session_set_client (b->session, "192.0.2.10", 40000, "mx.sender.example");
  vps_session_set_server (b->session, "127.0.0.1", 25, "mx.example.org");
  b->txn = vps_txn_new (b->session);
  b->step = 0;
}

static void
end_txn (Bench *b)
{
  g_clear_pointer (&b->txn, vps_txn_unref);
  g_clear_pointer (&b->session, vps_session_unref);
  b->done++;
  if (b->done == b->total / 100)
    b->rss_marks[0] = rss_kb ();
  else if (b->done == b->total / 10)
    b->rss_marks[1] = rss_kb ();
  else if (b->done == b->total / 2)
    b->rss_marks[2] = rss_kb ();
}

static void
on_stage_done (GObject *source, GAsyncResult *res, gpointer data)
{
  Bench *b = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) result = NULL;

  result = vps_engine_run_stage_finish (b->engine, res, &error);
  if (result == NULL)
    {
      fprintf (stderr, "bench-rules: stage failed: %s\n", error->message);
      exit (1);
    }
  if (stage_order[b->step] == RULES_STAGE_RCPT && result->verdict != RULES_VERDICT_REJECT
      && result->verdict != RULES_VERDICT_TEMPFAIL)
    vps_txn_accept_rcpt (b->txn);
  b->verdicts[result->verdict]++;
  b->step++;
  run_next_stage (b);
}

static void
run_next_stage (Bench *b)
{
  RulesStage stage;

  if (b->step == G_N_ELEMENTS (stage_order))
    {
      end_txn (b);
      if (b->done == b->total)
        {
          g_main_loop_quit (b->loop);
          return;
        }
      start_txn (b);
    }
  stage = stage_order[b->step];
  switch (stage)
    {
      case RULES_STAGE_HELO:
        vps_session_set_helo (b->session, "mx.sender.example");
        break;
      case RULES_STAGE_MAIL:
        vps_txn_set_sender (b->txn, "alice@sender.example", NULL);
        break;
      case RULES_STAGE_RCPT:
        vps_txn_set_rcpt (b->txn, "bob@example.org", NULL);
        break;
      case RULES_STAGE_DATA:
        {
          g_autoptr (GError) error = NULL;
          g_autoptr (VpsMessage) msg = vps_message_new (b->raw, &error);

          if (msg == NULL)
            {
              fprintf (stderr, "bench-rules: message: %s\n", error->message);
              exit (1);
            }
          vps_txn_set_message (b->txn, msg);
        }
        break;
      case RULES_STAGE_POSTQ:
        vps_txn_set_queue_id (b->txn, "4ABCDEF0");
        break;
      case RULES_STAGE_DELIVERY:
        vps_txn_set_rcpt (b->txn, "bob@example.org", NULL);
        break;
      default:
        break;
    }
  vps_engine_run_stage_async (b->engine, b->session, b->txn, stage, NULL, on_stage_done, b);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = NULL;
  g_autoptr (RulesLoadOptions) options = NULL;
  g_autoptr (RulesProgram) program = NULL;
  g_autofree char *data = NULL;
  gsize len;
  Bench b = { 0 };
  gint64 t0, t1;
  double c0, c1, parse_us;
  guint rules = 0;

  if (argc < 3)
    {
      fprintf (stderr, "usage: bench-rules RULES.vsl MSG.eml [TRANSACTIONS]\n");
      return 2;
    }
  b.total = argc > 3 ? (guint)g_ascii_strtoull (argv[3], NULL, 10) : 100000;
  if (b.total < 100)
    b.total = 100;

  vps_log_setup (VPS_LOG_TARGET_STDERR, G_LOG_LEVEL_WARNING, "bench-rules", NULL);
  vps_connectors_register_all ();
  cfg = vps_config_new_default ();
  options = vps_engine_load_options_new (cfg, &error);
  if (options)
    program = rules_program_load_file (argv[1], options, &error);
  if (program == NULL)
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
  for (int s = 0; s < RULES_N_STAGES; s++)
    rules += rules_program_n_rules (program, s);
  b.engine = vps_engine_new_with_program (cfg, program, &error);
  if (b.engine == NULL)
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
  if (!g_file_get_contents (argv[2], &data, &len, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
  b.raw = g_bytes_new_take (g_steal_pointer (&data), len);

  /* Message parsing alone, to tell it apart from rule evaluation. */
  {
    guint n = MAX (b.total / 20, 100);

    t0 = g_get_monotonic_time ();
    for (guint i = 0; i < n; i++)
      {
        g_autoptr (VpsMessage) msg = vps_message_new (b.raw, NULL);
      }
    parse_us = (double)(g_get_monotonic_time () - t0) / n;
  }

  b.loop = g_main_loop_new (NULL, FALSE);
  start_txn (&b);
  c0 = cpu_seconds ();
  t0 = g_get_monotonic_time ();
  run_next_stage (&b);
  g_main_loop_run (b.loop);
  t1 = g_get_monotonic_time ();
  c1 = cpu_seconds ();
  b.rss_marks[3] = rss_kb ();

  printf ("rules %u\n", rules);
  printf ("message_bytes %zu\n", g_bytes_get_size (b.raw));
  printf ("transactions %u\n", b.total);
  printf ("wall_us_per_txn %.1f\n", (double)(t1 - t0) / b.total);
  printf ("cpu_us_per_txn %.1f\n", (c1 - c0) * 1e6 / b.total);
  printf ("parse_us_per_msg %.1f\n", parse_us);
  printf ("rules_us_per_txn %.1f\n", (double)(t1 - t0) / b.total - parse_us);
  printf ("rss_kb_at_1pct %" G_GINT64_FORMAT "\n", b.rss_marks[0]);
  printf ("rss_kb_at_10pct %" G_GINT64_FORMAT "\n", b.rss_marks[1]);
  printf ("rss_kb_at_50pct %" G_GINT64_FORMAT "\n", b.rss_marks[2]);
  printf ("rss_kb_at_100pct %" G_GINT64_FORMAT "\n", b.rss_marks[3]);
  for (int v = 0; v <= RULES_VERDICT_DISCARD; v++)
    if (b.verdicts[v])
      printf ("verdict_%s %" G_GUINT64_FORMAT "\n", rules_verdict_name (v), b.verdicts[v]);

  g_main_loop_unref (b.loop);
  g_bytes_unref (b.raw);
  vps_engine_unref (b.engine);
  return 0;
}
