/* SPDX-License-Identifier: MIT
 *
 * metrics.c — the process-wide counters of the vps daemons and their
 * rendering in the Prometheus text format 0.0.4 (see metrics.h).
 *
 * Counters with fixed labels are plain guint64 updated with __atomic
 * builtins: they sit on the hot path of every session.  Series named by
 * the configuration (connectors) or the rule file (rules) live in hash
 * tables under one mutex; both are bounded by VPS_METRICS_MAX_SERIES and
 * overflow into the series "_other", because a rule file of 100k rules
 * must not turn every scrape into megabytes nor the process into a leak.
 *
 * The engine's own counters (engine.h, connector.h) restart with every
 * engine.  Prometheus copes with resets, but an operator reading
 * vps_stage_verdicts_total after a reload should not see it drop: the
 * counters of a retired engine are added to a base kept here.
 */
#include "vps/metrics.h"

#include <string.h>

#define N_VERDICTS (RULES_VERDICT_DISCARD + 1)
#define OTHER "_other"

G_DEFINE_QUARK (vps - metrics - error - quark, vps_metrics_error)

/* Connector latency buckets (seconds): a policy service answers in a
 * millisecond, a virus scan of a large message in seconds. */
static const double bucket_bounds[VPS_METRICS_N_BUCKETS]
    = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10 };

static const char *const frontend_names[VPS_METRICS_N_FRONTENDS]
    = { "smtp", "milter", "policy", "grpc" };

/* vps_rcpt_state_name() values a delivery attempt can end in. */
static const char *const delivery_names[] = { "delivered", "deferred", "failed", "other" };
#define N_DELIVERY G_N_ELEMENTS (delivery_names)

typedef struct
{
  RulesStage stage;
  char *rule;
  guint64 matches;
  guint64 decisions[N_VERDICTS];
} RuleSeries;

typedef struct
{
  char *name;
  guint64 buckets[VPS_METRICS_N_BUCKETS]; /* not cumulative; summed at render */
  guint64 count;
  guint64 errors;
  double sum;
} ConnSeries;

typedef struct
{
  guint64 calls, errors, timeouts, total_ms;
} ConnBase;

static guint64 sessions_total;
static guint64 transactions[VPS_METRICS_N_FRONTENDS];
static guint64 messages[VPS_METRICS_N_FRONTENDS];
static guint64 reloads[2]; /* [0] failed, [1] ok */
static guint64 deliveries[N_DELIVERY];

static GMutex series_lock;
static GHashTable *rule_series; /* "stage\x1frule" → RuleSeries*; under series_lock */
/* The rule names as the engine gives them → their series (borrowed from
 * rule_series), so that counting a match (every stage, every worker) is a
 * lookup without an allocation; at most RULE_INDEX_MAX names each. */
static GHashTable *rule_index[RULES_N_STAGES];
#define RULE_INDEX_MAX (4 * VPS_METRICS_MAX_SERIES)
static GHashTable *conn_series;                        /* name → ConnSeries*; under series_lock */
static GHashTable *conn_base;                          /* name → ConnBase*; under series_lock */
static guint64 stage_base[RULES_N_STAGES][N_VERDICTS]; /* under series_lock */

static void
rule_series_free (gpointer p)
{
  RuleSeries *s = p;

  g_free (s->rule);
  g_free (s);
}

static void
conn_series_free (gpointer p)
{
  ConnSeries *s = p;

  g_free (s->name);
  g_free (s);
}

/* Under series_lock. */
static void
ensure_tables (void)
{
  if (rule_series != NULL)
    return;
  rule_series = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, rule_series_free);
  for (guint i = 0; i < RULES_N_STAGES; i++)
    rule_index[i] = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  conn_series = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, conn_series_free);
  conn_base = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

/* A label value from a name: cut to VPS_METRICS_MAX_LABEL bytes on a
 * UTF-8 boundary (the text format is UTF-8). */
static char *
label_from (const char *name)
{
  const char *end = name;

  if (name == NULL)
    return g_strdup ("");
  if (strlen (name) <= VPS_METRICS_MAX_LABEL)
    return g_utf8_make_valid (name, -1);
  end = g_utf8_find_prev_char (name, name + VPS_METRICS_MAX_LABEL + 1);
  return g_utf8_make_valid (name, end ? end - name : VPS_METRICS_MAX_LABEL);
}

static inline void
add (guint64 *counter, guint64 n)
{
  __atomic_add_fetch (counter, n, __ATOMIC_RELAXED);
}

static inline guint64
get (const guint64 *counter)
{
  return __atomic_load_n (counter, __ATOMIC_RELAXED);
}

void
vps_metrics_count_session (void)
{
  add (&sessions_total, 1);
}

void
vps_metrics_count_transaction (VpsMetricsFrontend frontend)
{
  g_return_if_fail (frontend < VPS_METRICS_N_FRONTENDS);
  add (&transactions[frontend], 1);
}

void
vps_metrics_count_message (VpsMetricsFrontend frontend)
{
  g_return_if_fail (frontend < VPS_METRICS_N_FRONTENDS);
  add (&messages[frontend], 1);
}

void
vps_metrics_count_reload (gboolean ok)
{
  add (&reloads[ok ? 1 : 0], 1);
}

void
vps_metrics_count_delivery (const char *state)
{
  gsize i;

  for (i = 0; i + 1 < N_DELIVERY; i++)
    if (g_strcmp0 (state, delivery_names[i]) == 0)
      break;
  add (&deliveries[i], 1);
}

/* Under series_lock: the series of (stage, rule), or "_other" when full. */
static RuleSeries *
rule_lookup_slow (RulesStage stage, const char *rule)
{
  g_autofree char *label = label_from (rule);
  g_autofree char *key = g_strdup_printf ("%d\x1f%s", (int)stage, label);
  RuleSeries *s = g_hash_table_lookup (rule_series, key);

  if (s != NULL)
    return s;
  if (g_hash_table_size (rule_series) >= VPS_METRICS_MAX_SERIES)
    {
      g_free (key);
      key = g_strdup_printf ("%d\x1f%s", (int)stage, OTHER);
      g_free (label);
      label = g_strdup (OTHER);
      s = g_hash_table_lookup (rule_series, key);
      if (s != NULL)
        return s;
    }
  s = g_new0 (RuleSeries, 1);
  s->stage = stage;
  s->rule = g_steal_pointer (&label);
  g_hash_table_insert (rule_series, g_steal_pointer (&key), s);
  return s;
}

static RuleSeries *
rule_lookup (RulesStage stage, const char *rule)
{
  RuleSeries *s;

  if (rule == NULL)
    return rule_lookup_slow (stage, rule);
  s = g_hash_table_lookup (rule_index[stage], rule);
  if (s != NULL)
    return s;
  s = rule_lookup_slow (stage, rule);
  if (g_hash_table_size (rule_index[stage]) < RULE_INDEX_MAX)
    g_hash_table_insert (rule_index[stage], g_strdup (rule), s);
  return s;
}

void
vps_metrics_count_stage_result (const VpsStageResult *result)
{
  g_return_if_fail (result != NULL);
  if (result->stage >= RULES_N_STAGES || result->verdict >= N_VERDICTS)
    return;
  if ((result->matched == NULL || result->matched->len == 0)
      && (result->rule == NULL || result->verdict == RULES_VERDICT_CONTINUE))
    return;
  g_mutex_lock (&series_lock);
  ensure_tables ();
  for (guint i = 0; result->matched != NULL && i < result->matched->len; i++)
    rule_lookup (result->stage, g_ptr_array_index (result->matched, i))->matches++;
  if (result->rule != NULL && result->verdict != RULES_VERDICT_CONTINUE)
    rule_lookup (result->stage, result->rule)->decisions[result->verdict]++;
  g_mutex_unlock (&series_lock);
}

void
vps_metrics_observe_connector (const char *name, double seconds, gboolean error)
{
  g_autofree char *label = label_from (name);
  ConnSeries *s;

  g_mutex_lock (&series_lock);
  ensure_tables ();
  s = g_hash_table_lookup (conn_series, label);
  if (s == NULL && g_hash_table_size (conn_series) >= VPS_METRICS_MAX_SERIES)
    {
      g_free (label);
      label = g_strdup (OTHER);
      s = g_hash_table_lookup (conn_series, label);
    }
  if (s == NULL)
    {
      s = g_new0 (ConnSeries, 1);
      s->name = g_strdup (label);
      g_hash_table_insert (conn_series, g_steal_pointer (&label), s);
    }
  if (!(seconds >= 0)) /* also NaN */
    seconds = 0;
  for (guint b = 0; b < VPS_METRICS_N_BUCKETS; b++)
    if (seconds <= bucket_bounds[b])
      {
        s->buckets[b]++;
        break;
      }
  s->count++;
  s->sum += seconds;
  if (error)
    s->errors++;
  g_mutex_unlock (&series_lock);
}

void
vps_metrics_engine_retired (VpsEngine *engine)
{
  gsize n_conn;
  guint64 stages[RULES_N_STAGES][N_VERDICTS];
  g_autofree VpsConnectorStats *stats = NULL;

  g_return_if_fail (engine != NULL);
  /* Read the engine before taking series_lock: the connector wrapper may
   * count into this module while holding its own lock. */
  for (int s = 0; s < RULES_N_STAGES; s++)
    for (int v = 0; v < N_VERDICTS; v++)
      stages[s][v] = vps_engine_stats_stage (engine, s, v);
  n_conn = vps_engine_n_connectors (engine);
  stats = g_new0 (VpsConnectorStats, MAX (n_conn, 1));
  for (gsize i = 0; i < n_conn; i++)
    vps_connector_get_stats (vps_engine_get_connector (engine, i), &stats[i]);

  g_mutex_lock (&series_lock);
  ensure_tables ();
  for (int s = 0; s < RULES_N_STAGES; s++)
    for (int v = 0; v < N_VERDICTS; v++)
      stage_base[s][v] += stages[s][v];
  for (gsize i = 0; i < n_conn; i++)
    {
      g_autofree char *label
          = label_from (vps_connector_get_name (vps_engine_get_connector (engine, i)));
      ConnBase *b = g_hash_table_lookup (conn_base, label);

      if (b == NULL && g_hash_table_size (conn_base) >= VPS_METRICS_MAX_SERIES)
        {
          g_free (label);
          label = g_strdup (OTHER);
          b = g_hash_table_lookup (conn_base, label);
        }
      if (b == NULL)
        {
          b = g_new0 (ConnBase, 1);
          g_hash_table_insert (conn_base, g_strdup (label), b);
        }
      b->calls += stats[i].calls;
      b->errors += stats[i].errors;
      b->timeouts += stats[i].timeouts;
      b->total_ms += stats[i].total_ms;
    }
  g_mutex_unlock (&series_lock);
}

void
vps_metrics_reset (void)
{
  g_mutex_lock (&series_lock);
  if (rule_series != NULL)
    {
      for (guint i = 0; i < RULES_N_STAGES; i++)
        g_hash_table_remove_all (rule_index[i]);
      g_hash_table_remove_all (rule_series);
      g_hash_table_remove_all (conn_series);
      g_hash_table_remove_all (conn_base);
    }
  memset (stage_base, 0, sizeof stage_base);
  g_mutex_unlock (&series_lock);
  __atomic_store_n (&sessions_total, 0, __ATOMIC_RELAXED);
  for (guint i = 0; i < VPS_METRICS_N_FRONTENDS; i++)
    {
      __atomic_store_n (&transactions[i], 0, __ATOMIC_RELAXED);
      __atomic_store_n (&messages[i], 0, __ATOMIC_RELAXED);
    }
  for (guint i = 0; i < N_DELIVERY; i++)
    __atomic_store_n (&deliveries[i], 0, __ATOMIC_RELAXED);
  __atomic_store_n (&reloads[0], 0, __ATOMIC_RELAXED);
  __atomic_store_n (&reloads[1], 0, __ATOMIC_RELAXED);
}

/* ---- rendering ---------------------------------------------------------------- */

void
vps_metrics_append_escaped (GString *out, const char *value)
{
  for (const char *p = value; *p; p++)
    {
      if (*p == '\\')
        g_string_append (out, "\\\\");
      else if (*p == '"')
        g_string_append (out, "\\\"");
      else if (*p == '\n')
        g_string_append (out, "\\n");
      else
        g_string_append_c (out, *p);
    }
}

void
vps_metrics_write_header (GString *out, const char *name, const char *type, const char *help)
{
  g_string_append_printf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
append_value (GString *out, double value)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  /* Integral values print as integers; g_ascii_dtostr is locale-proof. */
  if (value == (double)(gint64)value && value < 1e15 && value > -1e15)
    g_string_append_printf (out, "%" G_GINT64_FORMAT, (gint64)value);
  else
    g_string_append (out, g_ascii_dtostr (buf, sizeof buf, value));
}

void
vps_metrics_write_sample (GString *out, const char *name, const char *const *labels, double value)
{
  g_string_append (out, name);
  if (labels != NULL && labels[0] != NULL)
    {
      g_string_append_c (out, '{');
      for (guint i = 0; labels[i] != NULL && labels[i + 1] != NULL; i += 2)
        {
          g_string_append_printf (out, "%s%s=\"", i ? "," : "", labels[i]);
          vps_metrics_append_escaped (out, labels[i + 1]);
          g_string_append_c (out, '"');
        }
      g_string_append_c (out, '}');
    }
  g_string_append_c (out, ' ');
  append_value (out, value);
  g_string_append_c (out, '\n');
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

/* The keys of a table, sorted: stable output for people and tests. */
static GPtrArray *
sorted_keys (GHashTable *table)
{
  GPtrArray *keys = g_ptr_array_new ();
  GHashTableIter it;
  gpointer k;

  g_hash_table_iter_init (&it, table);
  while (g_hash_table_iter_next (&it, &k, NULL))
    g_ptr_array_add (keys, k);
  g_ptr_array_sort (keys, compare_strings);
  return keys;
}

static void
render_process (GString *out)
{
  vps_metrics_write_header (out, "vps_sessions_total", "counter",
                            "Sessions (connections) accepted by every front end.");
  vps_metrics_write_sample (out, "vps_sessions_total", NULL, (double)get (&sessions_total));

  vps_metrics_write_header (out, "vps_transactions_total", "counter",
                            "Transactions (MAIL FROM accepted) per front end.");
  for (guint i = 0; i < VPS_METRICS_N_FRONTENDS; i++)
    {
      const char *labels[] = { "frontend", frontend_names[i], NULL };

      vps_metrics_write_sample (out, "vps_transactions_total", labels,
                                (double)get (&transactions[i]));
    }
  vps_metrics_write_header (out, "vps_messages_accepted_total", "counter",
                            "Messages accepted at end of data (queued, or passed to the MTA).");
  for (guint i = 0; i < VPS_METRICS_N_FRONTENDS; i++)
    {
      const char *labels[] = { "frontend", frontend_names[i], NULL };

      vps_metrics_write_sample (out, "vps_messages_accepted_total", labels,
                                (double)get (&messages[i]));
    }
  vps_metrics_write_header (out, "vps_reloads_total", "counter",
                            "Configuration reloads (SIGHUP, admin call) by result.");
  {
    const char *ok[] = { "result", "ok", NULL };
    const char *failed[] = { "result", "failed", NULL };

    vps_metrics_write_sample (out, "vps_reloads_total", ok, (double)get (&reloads[1]));
    vps_metrics_write_sample (out, "vps_reloads_total", failed, (double)get (&reloads[0]));
  }
  vps_metrics_write_header (out, "vps_delivery_results_total", "counter",
                            "Recipient delivery attempts by result.");
  for (guint i = 0; i < N_DELIVERY; i++)
    {
      const char *labels[] = { "result", delivery_names[i], NULL };

      vps_metrics_write_sample (out, "vps_delivery_results_total", labels,
                                (double)get (&deliveries[i]));
    }
}

/* Under series_lock. */
static void
render_rules (GString *out)
{
  g_autoptr (GPtrArray) keys = sorted_keys (rule_series);

  vps_metrics_write_header (out, "vps_rule_matches_total", "counter",
                            "Times a rule's condition was true.");
  for (guint i = 0; i < keys->len; i++)
    {
      RuleSeries *s = g_hash_table_lookup (rule_series, g_ptr_array_index (keys, i));
      const char *labels[] = { "stage", rules_stage_name (s->stage), "rule", s->rule, NULL };

      if (s->matches > 0)
        vps_metrics_write_sample (out, "vps_rule_matches_total", labels, (double)s->matches);
    }
  vps_metrics_write_header (out, "vps_rule_verdicts_total", "counter",
                            "Stage verdicts decided by a rule.");
  for (guint i = 0; i < keys->len; i++)
    {
      RuleSeries *s = g_hash_table_lookup (rule_series, g_ptr_array_index (keys, i));

      for (int v = 0; v < N_VERDICTS; v++)
        if (s->decisions[v] > 0)
          {
            const char *labels[] = { "stage",   rules_stage_name (s->stage), "rule", s->rule,
                                     "verdict", rules_verdict_name (v),      NULL };

            vps_metrics_write_sample (out, "vps_rule_verdicts_total", labels,
                                      (double)s->decisions[v]);
          }
    }
}

/* Under series_lock. */
static void
render_connector_histograms (GString *out)
{
  g_autoptr (GPtrArray) keys = sorted_keys (conn_series);

  vps_metrics_write_header (out, "vps_connector_call_duration_seconds", "histogram",
                            "Time of connector calls, queueing for a slot included.");
  for (guint i = 0; i < keys->len; i++)
    {
      ConnSeries *s = g_hash_table_lookup (conn_series, g_ptr_array_index (keys, i));
      guint64 cumulative = 0;

      for (guint b = 0; b < VPS_METRICS_N_BUCKETS; b++)
        {
          char le[G_ASCII_DTOSTR_BUF_SIZE];
          const char *labels[] = { "connector", s->name, "le", le, NULL };

          cumulative += s->buckets[b];
          g_ascii_formatd (le, sizeof le, "%g", bucket_bounds[b]);
          vps_metrics_write_sample (out, "vps_connector_call_duration_seconds_bucket", labels,
                                    (double)cumulative);
        }
      {
        const char *inf[] = { "connector", s->name, "le", "+Inf", NULL };
        const char *name[] = { "connector", s->name, NULL };

        vps_metrics_write_sample (out, "vps_connector_call_duration_seconds_bucket", inf,
                                  (double)s->count);
        vps_metrics_write_sample (out, "vps_connector_call_duration_seconds_sum", name, s->sum);
        vps_metrics_write_sample (out, "vps_connector_call_duration_seconds_count", name,
                                  (double)s->count);
      }
    }
}

/* The engine's counters plus the retired engines' (base, a snapshot taken
 * under series_lock; the engine is read without it). */
static void
render_engine (GString *out, VpsEngine *engine, guint64 (*base_stages)[N_VERDICTS],
               GHashTable *base_conn)
{
  gsize n_conn = engine ? vps_engine_n_connectors (engine) : 0;
  g_autoptr (GHashTable) sums = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GHashTable) gauges = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GPtrArray) names = NULL;
  GHashTableIter it;
  gpointer k, v;

  vps_metrics_write_header (out, "vps_stage_verdicts_total", "counter",
                            "Stage results by stage and verdict.");
  for (int s = 0; s < RULES_N_STAGES; s++)
    for (int vd = 0; vd < N_VERDICTS; vd++)
      {
        guint64 n = base_stages[s][vd] + (engine ? vps_engine_stats_stage (engine, s, vd) : 0);
        const char *labels[]
            = { "stage", rules_stage_name (s), "verdict", rules_verdict_name (vd), NULL };

        vps_metrics_write_sample (out, "vps_stage_verdicts_total", labels, (double)n);
      }

  g_hash_table_iter_init (&it, base_conn);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_hash_table_insert (sums, g_strdup (k), g_memdup2 (v, sizeof (ConnBase)));
  for (gsize i = 0; i < n_conn; i++)
    {
      VpsConnector *c = vps_engine_get_connector (engine, i);
      char *label = label_from (vps_connector_get_name (c));
      ConnBase *b = g_hash_table_lookup (sums, label);
      VpsConnectorStats st;
      guint *active = g_new0 (guint, 2);

      vps_connector_get_stats (c, &st);
      if (b == NULL)
        {
          b = g_new0 (ConnBase, 1);
          g_hash_table_insert (sums, g_strdup (label), b);
        }
      b->calls += st.calls;
      b->errors += st.errors;
      b->timeouts += st.timeouts;
      b->total_ms += st.total_ms;
      active[0] = st.active;
      active[1] = st.queued;
      g_hash_table_replace (gauges, label, active);
    }
  names = sorted_keys (sums);
  {
    static const struct
    {
      const char *name, *help;
      gsize offset;
    } families[] = {
      { "vps_connector_calls_total", "Connector calls.", G_STRUCT_OFFSET (ConnBase, calls) },
      { "vps_connector_errors_total",
        "Connector calls that failed or timed out (on_error applied).",
        G_STRUCT_OFFSET (ConnBase, errors) },
      { "vps_connector_timeouts_total", "Connector calls that timed out.",
        G_STRUCT_OFFSET (ConnBase, timeouts) },
    };

    for (gsize f = 0; f < G_N_ELEMENTS (families); f++)
      {
        vps_metrics_write_header (out, families[f].name, "counter", families[f].help);
        for (guint i = 0; i < names->len; i++)
          {
            const char *name = g_ptr_array_index (names, i);
            const ConnBase *b = g_hash_table_lookup (sums, name);
            const char *labels[] = { "connector", name, NULL };

            vps_metrics_write_sample (out, families[f].name, labels,
                                      (double)G_STRUCT_MEMBER (guint64, b, families[f].offset));
          }
      }
    vps_metrics_write_header (out, "vps_connector_call_seconds_total", "counter",
                              "Total time spent in connector calls.");
    for (guint i = 0; i < names->len; i++)
      {
        const char *name = g_ptr_array_index (names, i);
        const ConnBase *b = g_hash_table_lookup (sums, name);
        const char *labels[] = { "connector", name, NULL };

        vps_metrics_write_sample (out, "vps_connector_call_seconds_total", labels,
                                  (double)b->total_ms / 1000.0);
      }
  }
  {
    g_autoptr (GPtrArray) current = sorted_keys (gauges);

    vps_metrics_write_header (out, "vps_connector_active", "gauge", "Connector calls running now.");
    for (guint i = 0; i < current->len; i++)
      {
        const char *name = g_ptr_array_index (current, i);
        const guint *a = g_hash_table_lookup (gauges, name);
        const char *labels[] = { "connector", name, NULL };

        vps_metrics_write_sample (out, "vps_connector_active", labels, a[0]);
      }
    vps_metrics_write_header (out, "vps_connector_queued", "gauge",
                              "Connector calls waiting for a concurrency slot.");
    for (guint i = 0; i < current->len; i++)
      {
        const char *name = g_ptr_array_index (current, i);
        const guint *a = g_hash_table_lookup (gauges, name);
        const char *labels[] = { "connector", name, NULL };

        vps_metrics_write_sample (out, "vps_connector_queued", labels, a[1]);
      }
  }
}

void
vps_metrics_render (GString *out, VpsEngine *engine)
{
  guint64 base_stages[RULES_N_STAGES][N_VERDICTS];
  g_autoptr (GHashTable) base_conn
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  GHashTableIter it;
  gpointer k, v;

  g_return_if_fail (out != NULL);
  render_process (out);
  g_mutex_lock (&series_lock);
  ensure_tables ();
  memcpy (base_stages, stage_base, sizeof base_stages);
  g_hash_table_iter_init (&it, conn_base);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_hash_table_insert (base_conn, g_strdup (k), g_memdup2 (v, sizeof (ConnBase)));
  g_mutex_unlock (&series_lock);

  render_engine (out, engine, base_stages, base_conn);

  g_mutex_lock (&series_lock);
  render_rules (out);
  render_connector_histograms (out);
  g_mutex_unlock (&series_lock);
}
