/* SPDX-License-Identifier: MIT
 *
 * vpsd — the policy server.
 *
 *   vpsd -c FILE [--check]
 *
 * Loads the configuration and the rule file, refuses to start on any error
 * (exit 1, the error on stderr as FILE:LINE...), and with --check stops
 * there (exit 0).  Otherwise it runs in the foreground: SIGHUP reloads (a
 * bad new rule file is refused and logged, the old one stays), SIGTERM and
 * SIGINT stop accepting and drain.  The front ends attach to the worker
 * threads: the milter server when [milter] listen is set, the policy
 * server when [policy] listen is set (gRPC: [grpc] listen), the metrics
 * and health endpoint when [metrics] listen is set.
 *
 * Started as root it switches to [vpsd] user (daemon.h, privs.h) and
 * refuses to run as root without one unless [vpsd] allow_root = true.
 */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include "connectors/connectors.h"
#include "vps/daemon.h"
#include "vps/grpc-server.h"
#include "vps/log.h"
#include "vps/metrics.h"
#include "vps/milter-server.h"
#include "vps/policy-server.h"

int
main (int argc, char **argv)
{
  g_auto (VpsDaemonOptions) options = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsDaemon) daemon = NULL;
  g_autoptr (VpsMilterServer) milter = NULL;
  g_autoptr (VpsPolicyServer) policy = NULL;
  g_autoptr (VpsGrpcServer) grpc = NULL;
  g_autoptr (VpsMetricsServer) metrics = NULL;
  g_autoptr (VpsConfig) cfg = NULL;
  int rc;

  setlocale (LC_ALL, "");
  if (!vps_daemon_parse_command_line ("vpsd", "- the vps policy server", VPS_VERSION, &argc, &argv,
                                      &options, &rc))
    return rc;

  vps_connectors_register_all ();
  daemon = vps_daemon_new ("vpsd", options.config_path);
  vps_daemon_set_check (daemon, options.check);
  if (!vps_daemon_load (daemon, &error))
    {
      fprintf (stderr, "vpsd: %s\n", error->message);
      return 1;
    }
  if (options.check)
    {
      printf ("vpsd: %s: OK\n", options.config_path);
      return 0;
    }
  vps_daemon_start_workers (daemon);
  cfg = vps_daemon_get_config (daemon);
  if (vps_config_has_key (cfg, "milter", "listen"))
    {
      milter = vps_milter_server_new (daemon);
      if (!vps_milter_server_start (milter, vps_config_get_string (cfg, "milter", "listen"),
                                    &error))
        {
          vps_log (G_LOG_LEVEL_CRITICAL, NULL, "milter: %s", error->message);
          fprintf (stderr, "vpsd: milter: %s\n", error->message);
          return 1;
        }
    }
  if (vps_config_has_key (cfg, "policy", "listen"))
    {
      policy = vps_policy_server_new (daemon);
      if (!vps_policy_server_start (policy, vps_config_get_string (cfg, "policy", "listen"),
                                    &error))
        {
          vps_log (G_LOG_LEVEL_CRITICAL, NULL, "policy: %s", error->message);
          fprintf (stderr, "vpsd: policy: %s\n", error->message);
          return 1;
        }
    }
  /* the metrics endpoint before gRPC: gRPC core starts threads, and the
   * raise for a bind is process-wide */
  if (vps_config_has_key (cfg, "metrics", "listen"))
    {
      gboolean ok;

      metrics = vps_metrics_server_new (daemon, "vpsd");
      ok = vps_daemon_privileged_begin (daemon, &error)
           && vps_metrics_server_start (metrics, vps_config_get_string (cfg, "metrics", "listen"),
                                        &error);
      vps_daemon_privileged_end (daemon);
      if (!ok)
        {
          vps_log (G_LOG_LEVEL_CRITICAL, NULL, "%s", error->message);
          fprintf (stderr, "vpsd: %s\n", error->message);
          return 1;
        }
    }
  /* gRPC: [grpc] listen and/or admin_listen (vps/grpc-server.h) */
  if (vps_config_has_key (cfg, "grpc", "listen")
      || vps_config_has_key (cfg, "grpc", "admin_listen"))
    {
      gboolean ok;

      grpc = vps_grpc_server_new (daemon);
      /* gRPC binds its own ports: root raised for it (privileged ports) */
      ok = vps_daemon_privileged_begin (daemon, &error) && vps_grpc_server_start (grpc, &error);
      vps_daemon_privileged_end (daemon);
      if (!ok)
        {
          vps_log (G_LOG_LEVEL_CRITICAL, NULL, "grpc: %s", error->message);
          fprintf (stderr, "vpsd: grpc: %s\n", error->message);
          return 1;
        }
    }
  rc = vps_daemon_run (daemon);
  g_clear_pointer (&metrics, vps_metrics_server_free);
  /* the workers are stopped: no connection runs any more */
  g_clear_pointer (&grpc, vps_grpc_server_free);
  g_clear_pointer (&milter, vps_milter_server_free);
  g_clear_pointer (&policy, vps_policy_server_free);
  return rc;
}
