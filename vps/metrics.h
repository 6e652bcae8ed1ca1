/* SPDX-License-Identifier: MIT
 *
 * metrics.h — process-wide counters and the metrics/health endpoint of the
 * vps daemons (docs/operations.md, "Metrics").
 *
 * Counters: every vps_metrics_count_*() / _observe_*() is an atomic add or
 * a short locked update, safe from any thread, callable before any setup.
 * Labels come from fixed tables (stage, verdict, front end, delivery
 * result) or from names in the configuration and rule file (connector,
 * rule); the latter are bounded (VPS_METRICS_MAX_SERIES): past the bound
 * new names are counted under the label value "_other", so a rule file
 * cannot grow the process without limit.
 *
 * The engine keeps its own per-stage and per-connector counters, which
 * start from zero with every engine; a reload hands the retired engine to
 * vps_metrics_engine_retired() so that the exported counters never go
 * backwards (increments a session makes on the old engine after the swap
 * are not seen: documented).
 *
 * Rendering follows the Prometheus text format 0.0.4: "# HELP" and
 * "# TYPE" before each family, label values escaped (\\ \" \n),
 * histograms as _bucket{le=...} (cumulative, "+Inf" last), _sum, _count.
 *
 * The endpoint (metrics-http.c) is a deliberately small HTTP/1.1 server on
 * the daemon's main loop: GET /metrics and GET /health only, one request
 * per connection (Connection: close), a request head of at most
 * VPS_METRICS_MAX_REQUEST bytes, VPS_METRICS_TIMEOUT_MS for the whole
 * exchange, at most VPS_METRICS_MAX_CLIENTS connections at once.
 */
#pragma once

#include <gio/gio.h>
#include "rules/rules.h"
#include "vps/daemon.h"
#include "vps/engine.h"

G_BEGIN_DECLS

#define VPS_METRICS_ERROR (vps_metrics_error_quark ())
GQuark vps_metrics_error_quark (void);

typedef enum
{
  VPS_METRICS_ERROR_REQUEST,   /* not an HTTP/1.x request line */
  VPS_METRICS_ERROR_TOO_LARGE, /* the request head exceeds VPS_METRICS_MAX_REQUEST */
  VPS_METRICS_ERROR_LISTEN,    /* the endpoint could not bind */
} VpsMetricsError;

/* Distinct (name) label sets kept per family fed from config/rule names. */
#define VPS_METRICS_MAX_SERIES 1024
/* Longest connector or rule name used as a label value (longer are cut). */
#define VPS_METRICS_MAX_LABEL 256
/* Request head (request line + headers) accepted by the endpoint. */
#define VPS_METRICS_MAX_REQUEST 8192
/* A scrape (read request, write answer) must finish within this. */
#define VPS_METRICS_TIMEOUT_MS 10000
/* Connections served at once; more are closed at accept. */
#define VPS_METRICS_MAX_CLIENTS 16

/* Upper bounds (seconds) of the connector latency histogram buckets. */
#define VPS_METRICS_N_BUCKETS 12

typedef enum
{
  VPS_METRICS_FRONTEND_SMTP,
  VPS_METRICS_FRONTEND_MILTER,
  VPS_METRICS_FRONTEND_POLICY,
  VPS_METRICS_FRONTEND_GRPC,
  VPS_METRICS_N_FRONTENDS,
} VpsMetricsFrontend;

/* ---- counting (any thread) ------------------------------------------------ */

/* A session (connection) began; vps_daemon_session_begin() calls it. */
void vps_metrics_count_session (void);
/* A transaction (MAIL FROM accepted) began at `frontend`. */
void vps_metrics_count_transaction (VpsMetricsFrontend frontend);
/* A message was accepted for delivery (queued by vsmtpd, or passed back
 * to the MTA at end of data by a milter/policy session). */
void vps_metrics_count_message (VpsMetricsFrontend frontend);
/* A reload was attempted; ok = it took effect. */
void vps_metrics_count_reload (gboolean ok);
/* One recipient's delivery attempt ended in `state`, a name of
 * vps_rcpt_state_name(): "delivered", "deferred", "failed" ... (an unknown
 * name is counted as "other"). */
void vps_metrics_count_delivery (const char *state);
/* Per-rule counters of one stage result: each rule in result->matched is
 * a match; result->rule with a verdict other than continue decided. */
void vps_metrics_count_stage_result (const VpsStageResult *result);
/* One connector call took `seconds`; error = failed or timed out. */
void vps_metrics_observe_connector (const char *name, double seconds, gboolean error);

/* The reload swapped `engine` out: keep its counters (daemon.c). */
void vps_metrics_engine_retired (VpsEngine *engine);

/* Reset every process-wide counter (unit tests only). */
void vps_metrics_reset (void);

/* ---- rendering -------------------------------------------------------------- */

/* Extra families a program adds at each scrape (vsmtpd: queue sizes).
 * Runs on the main loop; writes complete families with HELP and TYPE. */
typedef void (*VpsMetricsCollectFunc) (GString *out, gpointer user_data);

/* The process-wide families plus the engine's (engine may be NULL). */
void vps_metrics_render (GString *out, VpsEngine *engine);

/* Helpers for collectors and tests: one family header, one sample line
 * (labels: NULL-terminated name, value pairs; values are escaped). */
void vps_metrics_write_header (GString *out, const char *name, const char *type, const char *help);
void vps_metrics_write_sample (GString *out, const char *name, const char *const *labels,
                               double value);
/* A label value escaped for the text format (\\, \", \n). */
void vps_metrics_append_escaped (GString *out, const char *value);

/* ---- the endpoint ------------------------------------------------------------ */

typedef enum
{
  VPS_METRICS_PARSE_NEED_MORE, /* no end of head yet, keep reading */
  VPS_METRICS_PARSE_OK,
  VPS_METRICS_PARSE_ERROR,
} VpsMetricsParse;

/* Parse a request head in buf[0..len).  OK: *method and *path (without a
 * query string) are set.  ERROR: *error says why (too large, bad line). */
VpsMetricsParse vps_metrics_parse_request (const char *buf, gsize len, char **method, char **path,
                                           GError **error);

typedef struct _VpsMetricsServer VpsMetricsServer;

/* The answer to (method, path): status code, and the whole response
 * (status line, headers with Content-Length and Connection: close, body). */
GBytes *vps_metrics_server_respond (VpsMetricsServer *server, const char *method, const char *path,
                                    guint *status);

/* The endpoint of `daemon` (NULL: no daemon, the process-wide counters
 * only; tests).  Bind `hostport` ("127.0.0.1:9100", "[::1]:0") on the
 * thread-default main context.  TRUE when it listens. */
VpsMetricsServer *vps_metrics_server_new (VpsDaemon *daemon, const char *program);
void vps_metrics_server_add_collector (VpsMetricsServer *server, VpsMetricsCollectFunc func,
                                       gpointer user_data);
gboolean vps_metrics_server_start (VpsMetricsServer *server, const char *hostport, GError **error);
/* The bound port (after start). */
guint16 vps_metrics_server_get_port (VpsMetricsServer *server);
void vps_metrics_server_free (VpsMetricsServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsMetricsServer, vps_metrics_server_free)

G_END_DECLS
