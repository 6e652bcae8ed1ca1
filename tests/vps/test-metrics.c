/* SPDX-License-Identifier: MIT
 *
 * test-metrics.c — vps/metrics.c and vps/metrics-http.c: the request
 * parser (every error branch), the text format 0.0.4 (HELP/TYPE before
 * samples, escaping, histograms), the bounds on named series, counters
 * that survive an engine reload, and the endpoint answering real HTTP
 * over loopback (200, 404, 405, 400, 431, Connection: close).
 */
#include <string.h>

#include "test-engine-util.h"
#include "vps/metrics.h"

/* ---- the request parser ---------------------------------------------------------- */

static void
test_parse_ok (void)
{
  static const struct
  {
    const char *head;
    const char *method, *path;
  } cases[] = {
    { "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/metrics" },
    { "GET /health HTTP/1.0\r\n\r\n", "GET", "/health" },
    { "GET /metrics?name[]=x HTTP/1.1\r\nAccept: */*\r\n\r\n", "GET", "/metrics" },
    { "GET /health HTTP/1.1\n\n", "GET", "/health" }, /* bare LF tolerated */
    { "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "POST", "/metrics" },
    { "GET / HTTP/1.1\r\n\r\n", "GET", "/" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *method = NULL;
      g_autofree char *path = NULL;
      VpsMetricsParse r = vps_metrics_parse_request (cases[i].head, strlen (cases[i].head), &method,
                                                     &path, &error);

      g_test_message ("case %u: %s", i, cases[i].head);
      g_assert_no_error (error);
      g_assert_cmpint (r, ==, VPS_METRICS_PARSE_OK);
      g_assert_cmpstr (method, ==, cases[i].method);
      g_assert_cmpstr (path, ==, cases[i].path);
    }
}

static void
test_parse_need_more (void)
{
  static const char *const heads[] = {
    "",
    "GET",
    "GET /metrics HTTP/1.1\r\n",
    "GET /metrics HTTP/1.1\r\nHost: x\r\n",
    "GET /metrics HTTP/1.1\r\n\r", /* the final LF not there yet */
  };

  for (guint i = 0; i < G_N_ELEMENTS (heads); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *method = NULL;
      g_autofree char *path = NULL;

      g_assert_cmpint (
          vps_metrics_parse_request (heads[i], strlen (heads[i]), &method, &path, &error), ==,
          VPS_METRICS_PARSE_NEED_MORE);
      g_assert_no_error (error);
      g_assert_null (method);
    }
}

static void
test_parse_errors (void)
{
  static const char *const heads[] = {
    "GET\r\n\r\n",                           /* no target, no version */
    "GET /metrics\r\n\r\n",                  /* no version */
    "GET metrics HTTP/1.1\r\n\r\n",          /* not origin-form */
    "GET http://x/metrics HTTP/1.1\r\n\r\n", /* absolute-form not served */
    "GET /metrics HTTP/2.0\r\n\r\n",         /* not HTTP/1.x */
    "GET /metrics HTTP/1.1x\r\n\r\n",        /* trailing junk */
    "GET  /metrics HTTP/1.1\r\n\r\n",        /* two spaces */
    " /metrics HTTP/1.1\r\n\r\n",            /* empty method */
    "G\"T /metrics HTTP/1.1\r\n\r\n",        /* not a token */
    "GET /me\ttrics HTTP/1.1\r\n\r\n",       /* control in target */
    "\r\n\r\n",                              /* empty request line */
  };

  for (guint i = 0; i < G_N_ELEMENTS (heads); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *method = NULL;
      g_autofree char *path = NULL;

      g_test_message ("case %u: %s", i, heads[i]);
      g_assert_cmpint (
          vps_metrics_parse_request (heads[i], strlen (heads[i]), &method, &path, &error), ==,
          VPS_METRICS_PARSE_ERROR);
      g_assert_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_REQUEST);
      g_assert_null (method);
      g_assert_null (path);
    }
}

static void
test_parse_nul (void)
{
  static const char head[] = "GET /met\0rics HTTP/1.1\r\n\r\n";
  g_autoptr (GError) error = NULL;
  g_autofree char *method = NULL;
  g_autofree char *path = NULL;

  g_assert_cmpint (vps_metrics_parse_request (head, sizeof head - 1, &method, &path, &error), ==,
                   VPS_METRICS_PARSE_ERROR);
  g_assert_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_REQUEST);
}

static void
test_parse_too_large (void)
{
  g_autofree char *head = g_malloc (VPS_METRICS_MAX_REQUEST);
  g_autoptr (GError) error = NULL;
  g_autofree char *method = NULL;
  g_autofree char *path = NULL;

  memcpy (head, "GET /metrics HTTP/1.1\r\nX: ", 26);
  memset (head + 26, 'a', VPS_METRICS_MAX_REQUEST - 26);
  /* one byte short of the limit: still waiting */
  g_assert_cmpint (
      vps_metrics_parse_request (head, VPS_METRICS_MAX_REQUEST - 1, &method, &path, &error), ==,
      VPS_METRICS_PARSE_NEED_MORE);
  g_assert_no_error (error);
  g_assert_cmpint (
      vps_metrics_parse_request (head, VPS_METRICS_MAX_REQUEST, &method, &path, &error), ==,
      VPS_METRICS_PARSE_ERROR);
  g_assert_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_TOO_LARGE);
}

/* ---- the text format ---------------------------------------------------------------- */

static gboolean
valid_metric_name (const char *s, gsize n)
{
  if (n == 0 || !(g_ascii_isalpha (s[0]) || s[0] == '_' || s[0] == ':'))
    return FALSE;
  for (gsize i = 1; i < n; i++)
    if (!(g_ascii_isalnum (s[i]) || s[i] == '_' || s[i] == ':'))
      return FALSE;
  return TRUE;
}

/* Check what a scraper checks: every sample belongs to a family declared
 * by HELP and TYPE lines before it, names are valid, label values are
 * quoted with only \\ \" \n escapes, values parse as numbers.  Returns the
 * number of samples. */
static guint
check_exposition (const char *text)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_autoptr (GHashTable) types = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GHashTable) helps = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  guint samples = 0;

  g_assert_true (g_str_has_suffix (text, "\n"));
  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *l = lines[i];
      const char *p;
      g_autofree char *name = NULL;
      const char *family_type;
      char *end = NULL;

      if (*l == '\0')
        continue;
      if (g_str_has_prefix (l, "# HELP "))
        {
          const char *sp = strchr (l + 7, ' ');

          g_assert_nonnull (sp);
          g_assert_true (valid_metric_name (l + 7, sp - (l + 7)));
          g_assert_true (g_hash_table_add (helps, g_strndup (l + 7, sp - (l + 7))));
          continue;
        }
      if (g_str_has_prefix (l, "# TYPE "))
        {
          g_auto (GStrv) f = g_strsplit (l + 7, " ", -1);

          g_assert_cmpuint (g_strv_length (f), ==, 2);
          g_assert_true (g_hash_table_contains (helps, f[0])); /* HELP first */
          g_assert_true (g_strv_contains (
              (const char *const[]){ "counter", "gauge", "histogram", NULL }, f[1]));
          g_assert_false (g_hash_table_contains (types, f[0])); /* once per family */
          g_hash_table_insert (types, g_strdup (f[0]), g_strdup (f[1]));
          continue;
        }
      g_assert_false (l[0] == '#');
      for (p = l; *p && *p != '{' && *p != ' '; p++)
        ;
      g_assert_true (valid_metric_name (l, p - l));
      name = g_strndup (l, p - l);
      family_type = g_hash_table_lookup (types, name);
      if (family_type == NULL)
        {
          /* histogram series: NAME_bucket, NAME_sum, NAME_count */
          static const char *const suffixes[] = { "_bucket", "_sum", "_count" };

          for (guint s = 0; s < G_N_ELEMENTS (suffixes) && family_type == NULL; s++)
            if (g_str_has_suffix (name, suffixes[s]))
              {
                g_autofree char *base = g_strndup (name, strlen (name) - strlen (suffixes[s]));

                family_type = g_hash_table_lookup (types, base);
                if (family_type != NULL)
                  g_assert_cmpstr (family_type, ==, "histogram");
              }
        }
      g_assert_nonnull (family_type);
      if (*p == '{')
        {
          p++;
          while (*p != '}')
            {
              const char *eq = strchr (p, '=');

              g_assert_nonnull (eq);
              g_assert_true (valid_metric_name (p, eq - p));
              g_assert_cmpint (eq[1], ==, '"');
              for (p = eq + 2; *p != '"'; p++)
                {
                  g_assert_cmpint (*p, !=, '\0');
                  if (*p == '\\')
                    {
                      p++;
                      g_assert_true (*p == '\\' || *p == '"' || *p == 'n');
                    }
                }
              p++;
              if (*p == ',')
                p++;
              else
                g_assert_cmpint (*p, ==, '}');
            }
          p++;
        }
      g_assert_cmpint (*p, ==, ' ');
      g_ascii_strtod (p + 1, &end);
      g_assert_true (end != p + 1 && *end == '\0');
      samples++;
    }
  return samples;
}

static char *
render (VpsEngine *engine)
{
  GString *out = g_string_new (NULL);

  vps_metrics_render (out, engine);
  return g_string_free (out, FALSE);
}

/* A sample line's value, or -1 when the line is not there. */
static double
sample (const char *text, const char *series)
{
  g_autofree char *needle = g_strconcat ("\n", series, " ", NULL);
  const char *at = strstr (text, needle);

  if (at == NULL)
    return -1;
  return g_ascii_strtod (at + strlen (needle), NULL);
}

static void
test_render_format (void)
{
  g_autofree char *text = NULL;

  vps_metrics_reset ();
  vps_metrics_count_session ();
  vps_metrics_count_session ();
  vps_metrics_count_transaction (VPS_METRICS_FRONTEND_SMTP);
  vps_metrics_count_message (VPS_METRICS_FRONTEND_MILTER);
  vps_metrics_count_reload (TRUE);
  vps_metrics_count_reload (FALSE);
  vps_metrics_count_reload (FALSE);
  vps_metrics_observe_connector ("spf", 0.002, FALSE);
  text = render (NULL);
  g_assert_cmpuint (check_exposition (text), >, 20);
  g_assert_cmpfloat (sample (text, "vps_sessions_total"), ==, 2);
  g_assert_cmpfloat (sample (text, "vps_transactions_total{frontend=\"smtp\"}"), ==, 1);
  g_assert_cmpfloat (sample (text, "vps_transactions_total{frontend=\"milter\"}"), ==, 0);
  g_assert_cmpfloat (sample (text, "vps_messages_accepted_total{frontend=\"milter\"}"), ==, 1);
  g_assert_cmpfloat (sample (text, "vps_reloads_total{result=\"ok\"}"), ==, 1);
  g_assert_cmpfloat (sample (text, "vps_reloads_total{result=\"failed\"}"), ==, 2);
  /* every stage x verdict is there from the start, at 0 */
  g_assert_cmpfloat (sample (text, "vps_stage_verdicts_total{stage=\"rcpt\",verdict=\"reject\"}"),
                     ==, 0);
}

static void
test_render_escape (void)
{
  g_autoptr (GString) out = g_string_new (NULL);
  const char *labels[] = { "rule", "say \"hi\"\\now\nplease", NULL };

  vps_metrics_write_header (out, "x_total", "counter", "A test.");
  vps_metrics_write_sample (out, "x_total", labels, 3);
  vps_metrics_write_sample (out, "x_total", NULL, 0.25);
  g_assert_cmpstr (out->str, ==,
                   "# HELP x_total A test.\n# TYPE x_total counter\n"
                   "x_total{rule=\"say \\\"hi\\\"\\\\now\\nplease\"} 3\n"
                   "x_total 0.25\n");
  check_exposition (out->str);
}

static void
test_histogram (void)
{
  g_autofree char *text = NULL;

  vps_metrics_reset ();
  vps_metrics_observe_connector ("clamav", 0.0005, FALSE);
  vps_metrics_observe_connector ("clamav", 0.003, FALSE);
  vps_metrics_observe_connector ("clamav", 2.0, TRUE);
  vps_metrics_observe_connector ("clamav", 100.0, TRUE); /* beyond the last bound */
  vps_metrics_observe_connector ("clamav", -1, FALSE);   /* clock step: counted as 0 */
  text = render (NULL);
  check_exposition (text);
#define B(le) "vps_connector_call_duration_seconds_bucket{connector=\"clamav\",le=\"" le "\"}"
  g_assert_cmpfloat (sample (text, B ("0.001")), ==, 2);
  g_assert_cmpfloat (sample (text, B ("0.005")), ==, 3);
  g_assert_cmpfloat (sample (text, B ("1")), ==, 3);
  g_assert_cmpfloat (sample (text, B ("2.5")), ==, 4);
  g_assert_cmpfloat (sample (text, B ("10")), ==, 4);
  g_assert_cmpfloat (sample (text, B ("+Inf")), ==, 5);
#undef B
  g_assert_cmpfloat (
      sample (text, "vps_connector_call_duration_seconds_count{connector=\"clamav\"}"), ==, 5);
  g_assert_cmpfloat_with_epsilon (
      sample (text, "vps_connector_call_duration_seconds_sum{connector=\"clamav\"}"), 102.0035,
      1e-9);
  /* the +Inf bucket is the last of its series */
  g_assert_true (strstr (text, "le=\"+Inf\"}") < strstr (text, "_sum{connector=\"clamav\"}"));
}

static void
test_bounded_series (void)
{
  g_autofree char *text = NULL;
  g_autofree char *long_name = g_strnfill (VPS_METRICS_MAX_LABEL * 4, 'r');
  guint lines = 0;

  vps_metrics_reset ();
  for (guint i = 0; i < VPS_METRICS_MAX_SERIES + 500; i++)
    {
      g_autofree char *name = g_strdup_printf ("conn%u", i);

      vps_metrics_observe_connector (name, 0.01, FALSE);
    }
  vps_metrics_observe_connector (long_name, 0.01, FALSE);
  text = render (NULL);
  for (const char *p = text; (p = strstr (p, "vps_connector_call_duration_seconds_count{")); p++)
    lines++;
  g_assert_cmpuint (lines, ==, VPS_METRICS_MAX_SERIES + 1); /* + "_other" */
  g_assert_cmpfloat (
      sample (text, "vps_connector_call_duration_seconds_count{connector=\"_other\"}"), ==, 501);
  g_assert_null (strstr (text, long_name));
}

static void
test_delivery (void)
{
  g_autofree char *text = NULL;

  vps_metrics_reset ();
  vps_metrics_count_delivery ("delivered");
  vps_metrics_count_delivery ("delivered");
  vps_metrics_count_delivery ("deferred");
  vps_metrics_count_delivery ("failed");
  vps_metrics_count_delivery ("pending"); /* not an outcome: other */
  vps_metrics_count_delivery (NULL);
  text = render (NULL);
  g_assert_cmpfloat (sample (text, "vps_delivery_results_total{result=\"delivered\"}"), ==, 2);
  g_assert_cmpfloat (sample (text, "vps_delivery_results_total{result=\"deferred\"}"), ==, 1);
  g_assert_cmpfloat (sample (text, "vps_delivery_results_total{result=\"failed\"}"), ==, 1);
  g_assert_cmpfloat (sample (text, "vps_delivery_results_total{result=\"other\"}"), ==, 2);
}

/* Engine counters and per-rule counters, and that a reload (the engine
 * retired) does not make the exported totals go backwards. */
static void
test_engine_and_rules (void)
{
  g_autoptr (VpsEngine) e = NULL;
  g_autoptr (VpsEngine) e2 = NULL;
  g_autofree char *text = NULL;
  g_autofree char *after = NULL;

  vps_metrics_reset ();
  e = tu_engine (NULL, "connect {\n"
                       "  rule \"seen\" when client.ip == 192.0.2.1 => continue\n"
                       "  rule \"block \\\"bad\\\"\" when client.ip == 192.0.2.1 => reject\n"
                       "}\n");
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr (VpsTxn) t = tu_txn (NULL);
      g_autoptr (VpsStageResult) r = tu_run (e, t, RULES_STAGE_CONNECT);

      /* engine.c counts every result (vps_metrics_count_stage_result) */
      g_assert_cmpint (r->verdict, ==, RULES_VERDICT_REJECT);
    }
  {
    g_autoptr (VpsTxn) t = tu_txn ("198.51.100.7");
    g_autoptr (VpsStageResult) r = tu_run (e, t, RULES_STAGE_CONNECT);

    /* nothing matched: no rule counted */
    g_assert_cmpint (r->verdict, ==, RULES_VERDICT_CONTINUE);
  }
  text = render (e);
  check_exposition (text);
  g_assert_cmpfloat (
      sample (text, "vps_stage_verdicts_total{stage=\"connect\",verdict=\"reject\"}"), ==, 3);
  g_assert_cmpfloat (
      sample (text, "vps_stage_verdicts_total{stage=\"connect\",verdict=\"continue\"}"), ==, 1);
  g_assert_cmpfloat (sample (text, "vps_rule_matches_total{stage=\"connect\",rule=\"seen\"}"), ==,
                     3);
  g_assert_cmpfloat (sample (text, "vps_rule_verdicts_total{stage=\"connect\",rule=\"block "
                                   "\\\"bad\\\"\",verdict=\"reject\"}"),
                     ==, 3);
  g_assert_cmpfloat (
      sample (text,
              "vps_rule_verdicts_total{stage=\"connect\",rule=\"seen\",verdict=\"continue\"}"),
      ==, -1);

  /* reload: the new engine starts at 0, the total does not */
  vps_metrics_engine_retired (e);
  e2 = tu_engine (NULL, "connect { rule \"r\" => reject }");
  {
    g_autoptr (VpsTxn) t = tu_txn (NULL);
    g_autoptr (VpsStageResult) r = tu_run (e2, t, RULES_STAGE_CONNECT);
  }
  after = render (e2);
  g_assert_cmpfloat (
      sample (after, "vps_stage_verdicts_total{stage=\"connect\",verdict=\"reject\"}"), ==, 4);
}

/* ---- the endpoint over loopback ------------------------------------------------------- */

typedef struct
{
  guint16 port;
  const char *request; /* bytes sent, then the write side is left open */
  GString *response;
  gint done;
} Client;

static gpointer
client_thread (gpointer data)
{
  Client *c = data;
  g_autoptr (GSocketClient) sc = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;
  g_autoptr (GError) error = NULL;
  char buf[4096];
  gssize n;

  conn = g_socket_client_connect_to_host (sc, "127.0.0.1", c->port, NULL, &error);
  g_assert_no_error (error);
  g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (conn)), c->request,
                             strlen (c->request), NULL, NULL, &error);
  g_assert_no_error (error);
  /* read to EOF: the server closes after its answer (Connection: close) */
  while ((n = g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (conn)), buf,
                                   sizeof buf, NULL, &error))
         > 0)
    g_string_append_len (c->response, buf, n);
  /* A server that closes with request bytes unread sends RST after its
   * answer (the 431 case): the answer read before it is what counts. */
  if (c->response->len == 0)
    g_assert_no_error (error);
  g_atomic_int_set (&c->done, 1);
  g_main_context_wakeup (NULL);
  return NULL;
}

static char *
fetch (VpsMetricsServer *server, const char *request)
{
  Client c = { vps_metrics_server_get_port (server), request, g_string_new (NULL), 0 };
  GThread *t = g_thread_new ("client", client_thread, &c);

  while (!g_atomic_int_get (&c.done))
    g_main_context_iteration (NULL, TRUE);
  g_thread_join (t);
  return g_string_free (c.response, FALSE);
}

static void
collect_extra (GString *out, gpointer data)
{
  vps_metrics_write_header (out, "vps_test_extra", "gauge", "A collector's family.");
  vps_metrics_write_sample (out, "vps_test_extra", NULL, GPOINTER_TO_INT (data));
}

static void
test_http (void)
{
  static const struct
  {
    const char *request;
    const char *status_line;
    const char *body_has;
  } cases[] = {
    { "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\n", "vps_test_extra 7\n" },
    { "GET /health HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n", "ok\n" },
    { "GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n", "not found" },
    { "POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed\r\n", "only GET" },
    { "HEAD /health HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed\r\n", "only GET" },
    { "hello\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", "bad request" },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsMetricsServer) server = vps_metrics_server_new (NULL, "test");

  vps_metrics_server_add_collector (server, collect_extra, GINT_TO_POINTER (7));
  g_assert_true (vps_metrics_server_start (server, "127.0.0.1:0", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (vps_metrics_server_get_port (server), >, 0);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *r = fetch (server, cases[i].request);
      const char *body = strstr (r, "\r\n\r\n");
      g_autofree char *length = NULL;

      g_test_message ("case %u: %s", i, cases[i].request);
      g_assert_true (g_str_has_prefix (r, cases[i].status_line));
      g_assert_nonnull (strstr (r, "\r\nConnection: close\r\n"));
      g_assert_nonnull (body);
      body += 4;
      length = g_strdup_printf ("\r\nContent-Length: %zu\r\n", strlen (body));
      g_assert_nonnull (strstr (r, length));
      g_assert_nonnull (strstr (body, cases[i].body_has));
      if (i == 0)
        {
          g_assert_nonnull (strstr (r, "Content-Type: text/plain; version=0.0.4"));
          check_exposition (body);
        }
      if (i == 3 || i == 4)
        g_assert_nonnull (strstr (r, "\r\nAllow: GET\r\n"));
    }
}

static void
test_http_too_large (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsMetricsServer) server = vps_metrics_server_new (NULL, "test");
  g_autoptr (GString) req = g_string_new ("GET /metrics HTTP/1.1\r\n");
  g_autofree char *r = NULL;

  g_assert_true (vps_metrics_server_start (server, "127.0.0.1:0", &error));
  while (req->len < VPS_METRICS_MAX_REQUEST + 100)
    g_string_append (req, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
  g_string_append (req, "\r\n");
  r = fetch (server, req->str);
  g_assert_true (g_str_has_prefix (r, "HTTP/1.1 431 "));
}

static void
test_http_bad_address (void)
{
  static const char *const addresses[] = { "nonsense", "127.0.0.1:99999" };

  for (guint i = 0; i < G_N_ELEMENTS (addresses); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsMetricsServer) server = vps_metrics_server_new (NULL, "test");

      g_assert_false (vps_metrics_server_start (server, addresses[i], &error));
      g_assert_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_LISTEN);
    }
  /* a port already bound by another endpoint: refused, not shared */
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (VpsMetricsServer) a = vps_metrics_server_new (NULL, "a");
    g_autoptr (VpsMetricsServer) b = vps_metrics_server_new (NULL, "b");
    g_autofree char *where = NULL;

    g_assert_true (vps_metrics_server_start (a, "127.0.0.1:0", &error));
    where = g_strdup_printf ("127.0.0.1:%u", vps_metrics_server_get_port (a));
    g_assert_false (vps_metrics_server_start (b, where, &error));
    g_assert_error (error, VPS_METRICS_ERROR, VPS_METRICS_ERROR_LISTEN);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  vps_log_capture (g_string_new (NULL)); /* keep the TAP stream clean */
  g_test_add_func ("/metrics/parse/ok", test_parse_ok);
  g_test_add_func ("/metrics/parse/need-more", test_parse_need_more);
  g_test_add_func ("/metrics/parse/bad-request-line", test_parse_errors);
  g_test_add_func ("/metrics/parse/nul", test_parse_nul);
  g_test_add_func ("/metrics/parse/too-large", test_parse_too_large);
  g_test_add_func ("/metrics/render/format", test_render_format);
  g_test_add_func ("/metrics/render/escape", test_render_escape);
  g_test_add_func ("/metrics/render/histogram", test_histogram);
  g_test_add_func ("/metrics/render/bounded-series", test_bounded_series);
  g_test_add_func ("/metrics/render/delivery", test_delivery);
  g_test_add_func ("/metrics/render/engine-and-rules", test_engine_and_rules);
  g_test_add_func ("/metrics/http/answers", test_http);
  g_test_add_func ("/metrics/http/too-large", test_http_too_large);
  g_test_add_func ("/metrics/http/bad-address", test_http_bad_address);
  return g_test_run ();
}
