/* SPDX-License-Identifier: MIT
 *
 * vsmtpd — the vps SMTP server.
 *
 *   vsmtpd -c FILE [--check]
 *
 * Loads the configuration and the rule file ([vpsd] rules), opens and
 * recovers the spool ([queue] dir), builds the TLS contexts and the
 * password file, and refuses to start on any error (exit 1, the error on
 * stderr as FILE:LINE...); --check stops there (exit 0) without touching
 * the spool.  Otherwise it runs in the foreground: the listeners of
 * [vsmtpd] accept on the worker threads, the delivery threads deliver what
 * is queued; SIGHUP reloads config and rules, SIGTERM/SIGINT stop
 * accepting, let transactions finish (up to [vpsd] drain_timeout) and let
 * running deliveries finish; SIGUSR1 rescans the queue at once (`vpsctl
 * queue flush|retry` sends it to the pid in the spool's lock file).
 *
 * Started as root it switches to [vpsd] user — the same keys as vpsd —
 * before it opens the spool, binds its listeners with root raised for the
 * call, and drops root for good before the first connection is read or
 * the first delivery made (daemon.h, privs.h).  [vsmtpd] metrics_listen
 * serves GET /metrics (with the queue's sizes) and GET /health.
 */
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "connectors/connectors.h"
#include "mta/delivery-remote.h"
#include "mta/delivery.h"
#include "mta/queue.h"
#include "mta/remote-policy.h"
#include "mta/smtp-server.h"
#include "vps/daemon.h"
#include "vps/log.h"
#include "vps/metrics.h"

/* SIGUSR1 (main loop): `delivery` is NULL until it exists, as the signal
 * is caught from before the spool's lock (and pid) is taken — its default
 * action would end the daemon. */
static gboolean
on_sigusr1 (gpointer data)
{
  VpsDelivery **delivery = data;

  if (*delivery != NULL)
    {
      vps_info (NULL, "SIGUSR1: scanning the queue");
      vps_delivery_scan_now (*delivery);
    }
  return G_SOURCE_CONTINUE;
}

/* After the privilege drop: deliveries talk to the network too. */
static void
on_ready (gpointer data)
{
  vps_delivery_start (data);
}

/* Metrics: messages per spool area (a directory listing per scrape). */
static void
collect_queue (GString *out, gpointer data)
{
  static const VpsQueueArea areas[]
      = { VPS_QUEUE_INCOMING, VPS_QUEUE_HOLD, VPS_QUEUE_CORRUPT, VPS_QUEUE_DEAD };
  VpsQueue *queue = data;

  vps_metrics_write_header (out, "vps_queue_messages", "gauge", "Messages in each spool area.");
  for (gsize i = 0; i < G_N_ELEMENTS (areas); i++)
    {
      g_autoptr (GPtrArray) ids = vps_queue_list (queue, areas[i], NULL);
      const char *labels[] = { "area", vps_queue_area_name (areas[i]), NULL };

      if (ids != NULL)
        vps_metrics_write_sample (out, "vps_queue_messages", labels, ids->len);
    }
}

int
main (int argc, char **argv)
{
  g_auto (VpsDaemonOptions) options = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsDaemon) daemon = NULL;
  g_autoptr (VpsConfig) cfg = NULL;
  g_autoptr (VpsQueue) queue = NULL;
  g_autoptr (VpsDelivery) delivery = NULL;
  g_autoptr (VpsSmtpServer) server = NULL;
  g_autoptr (VpsMetricsServer) metrics = NULL;
  guint usr1;
  int rc;

  setlocale (LC_ALL, "");
  /* OpenSSL writes with write(2): a client gone mid-reply must be an
   * EPIPE, not the end of the daemon; and a file-size limit must fail one
   * delivery (EFBIG, retried), not kill us */
  signal (SIGPIPE, SIG_IGN);
  signal (SIGXFSZ, SIG_IGN);
  if (!vps_daemon_parse_command_line ("vsmtpd", "- the vps SMTP server", VPS_VERSION, &argc, &argv,
                                      &options, &rc))
    return rc;

  vps_connectors_register_all ();
  daemon = vps_daemon_new ("vsmtpd", options.config_path);
  vps_daemon_set_engine_func (daemon, vps_remote_policy_engine_new);
  vps_daemon_set_check (daemon, options.check);
  vps_daemon_add_writable_dir (daemon, "queue", "dir");
  if (!vps_daemon_load (daemon, &error))
    {
      fprintf (stderr, "vsmtpd: %s\n", error->message);
      return 1;
    }
  cfg = vps_daemon_get_config (daemon);
  if (options.check)
    {
      /* everything the start would build, short of the spool and sockets */
      g_autoptr (VpsSmtpServer) probe = NULL;
      VpsRouteKind kind;
      g_autofree char *target = NULL;

      probe = vps_smtp_server_new (daemon, NULL, NULL);
      if (!vps_delivery_parse_route (cfg, vps_config_get_string (cfg, "delivery", "default"), &kind,
                                     &target, &error)
          || !vps_remote_check_config (cfg, &error) || !vps_smtp_server_prepare (probe, &error))
        {
          fprintf (stderr, "vsmtpd: %s\n", error->message);
          return 1;
        }
      printf ("vsmtpd: %s: OK\n", options.config_path);
      return 0;
    }
  usr1 = g_unix_signal_add (SIGUSR1, on_sigusr1, &delivery);
  queue = vps_queue_open (vps_config_get_path_value (cfg, "queue", "dir"), TRUE, &error);
  if (queue == NULL)
    {
      fprintf (stderr, "vsmtpd: queue: %s\n", error->message);
      return 1;
    }
  /* the map files are read again at each delivery; a bad one refuses the start */
  if (vps_remote_check_config (cfg, &error))
    delivery = vps_delivery_new (daemon, queue, &error);
  if (delivery == NULL)
    {
      fprintf (stderr, "vsmtpd: %s\n", error->message);
      return 1;
    }
  vps_daemon_start_workers (daemon);
  server = vps_smtp_server_new (daemon, queue, delivery);
  if (!vps_smtp_server_start (server, &error))
    {
      vps_log (G_LOG_LEVEL_CRITICAL, NULL, "vsmtpd: %s", error->message);
      fprintf (stderr, "vsmtpd: %s\n", error->message);
      return 1;
    }
  if (vps_config_has_key (cfg, "vsmtpd", "metrics_listen"))
    {
      gboolean ok;

      metrics = vps_metrics_server_new (daemon, "vsmtpd");
      vps_metrics_server_add_collector (metrics, collect_queue, queue);
      ok = vps_daemon_privileged_begin (daemon, &error)
           && vps_metrics_server_start (
               metrics, vps_config_get_string (cfg, "vsmtpd", "metrics_listen"), &error);
      vps_daemon_privileged_end (daemon);
      if (!ok)
        {
          vps_log (G_LOG_LEVEL_CRITICAL, NULL, "%s", error->message);
          fprintf (stderr, "vsmtpd: %s\n", error->message);
          return 1;
        }
    }
  vps_daemon_set_ready_func (daemon, on_ready, delivery);
  rc = vps_daemon_run (daemon);
  g_clear_pointer (&metrics, vps_metrics_server_free);
  g_source_remove (usr1);
  /* the workers are stopped: no session runs any more */
  g_clear_pointer (&server, vps_smtp_server_free);
  g_clear_pointer (&delivery, vps_delivery_free);
  return rc;
}
