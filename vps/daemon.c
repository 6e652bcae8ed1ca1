/* SPDX-License-Identifier: MIT
 *
 * daemon.c — configuration and engine holder, reload, workers and drain for
 * the long-running vps programs (see daemon.h for the contract).
 *
 * The engine pointer is swapped under a mutex and handed out as a new
 * reference, so a reload never frees an engine a session still uses.
 * Signals are handled on the main thread's context with g_unix_signal_add,
 * never in an async signal handler.
 *
 * Privileges (privs.h): the switch to [vpsd] user happens inside the first
 * load, between reading the configuration and building the engine; binds
 * of inet listeners raise for the call; vps_daemon_run() drops for good and
 * only then starts the worker threads, so no connection is read as root
 * (the listeners' accept sources wait on contexts nobody iterates yet).
 *
 * systemd (sd_notify, a no-op without NOTIFY_SOCKET): READY=1 once the
 * workers run, RELOADING=1 + MONOTONIC_USEC at SIGHUP and READY=1 after it
 * whatever the outcome, STOPPING=1 at SIGTERM; STATUS= says what happened.
 */
#include "vps/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "vps/log.h"
#include "vps/metrics.h"
#include "vps/privs.h"

typedef struct
{
  GThread *thread;
  GMainContext *context;
  gint stop; /* atomic */
} VpsWorker;

struct _VpsDaemon
{
  char *program;
  char *config_path;

  GMutex lock; /* guards config, engine, generation */
  VpsConfig *config;
  VpsEngine *engine;
  guint generation;
  VpsDaemonEngineFunc engine_func; /* NULL: vps_engine_new */
  VpsDaemonDrainFunc drain_func;
  gpointer drain_data;

  VpsWorker *workers;
  guint n_workers;
  gboolean threads_started;

  gboolean check_only; /* --check: validate the user, switch nothing */
  VpsPrivs *privs;     /* set by the first load */
  GPtrArray *dir_keys; /* "group\nkey" of directories the user must write */
  VpsDaemonReadyFunc ready_func;
  gpointer ready_data;

  GMainLoop *main_loop;
  gint active_sessions; /* atomic */
  gint draining;        /* atomic */
  GPtrArray *listeners; /* VpsListener* */
};

/* ---- the command line ------------------------------------------------------ */

void
vps_daemon_options_clear (VpsDaemonOptions *options)
{
  g_clear_pointer (&options->config_path, g_free);
  options->check = FALSE;
}

gboolean
vps_daemon_parse_command_line (const char *program, const char *summary, const char *version,
                               int *argc, char ***argv, VpsDaemonOptions *options, int *exit_status)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) context = NULL;
  gboolean show_version = FALSE;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &options->config_path, "Configuration file",
      "FILE" },
    { "check", 0, 0, G_OPTION_ARG_NONE, &options->check,
      "Validate configuration and rules, then exit", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &show_version, "Print the version", NULL },
    { NULL },
  };

  g_return_val_if_fail (program != NULL && version != NULL && exit_status != NULL, FALSE);
  context = g_option_context_new (summary);
  g_option_context_add_main_entries (context, entries, NULL);
  /* 2 for the command line, 1 for the configuration: scripts tell a typo in
   * a unit file from a broken vps.conf */
  if (!g_option_context_parse (context, argc, argv, &error))
    {
      fprintf (stderr, "%s: %s\n", program, error->message);
      *exit_status = 2;
      return FALSE;
    }
  if (show_version)
    {
      printf ("%s %s\n", program, version);
      *exit_status = 0;
      return FALSE;
    }
  if (options->config_path == NULL)
    {
      fprintf (stderr, "%s: -c FILE is required\n", program);
      *exit_status = 2;
      return FALSE;
    }
  return TRUE;
}

/* ---- the daemon ------------------------------------------------------------ */

VpsDaemon *
vps_daemon_new (const char *program, const char *config_path)
{
  VpsDaemon *daemon = g_new0 (VpsDaemon, 1);

  daemon->program = g_strdup (program);
  daemon->config_path = g_strdup (config_path);
  g_mutex_init (&daemon->lock);
  daemon->main_loop = g_main_loop_new (NULL, FALSE);
  daemon->listeners = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_listener_free);
  daemon->dir_keys = g_ptr_array_new_with_free_func (g_free);
  /* the quarantine store is written by both daemons */
  g_ptr_array_add (daemon->dir_keys, g_strdup ("quarantine\ndir"));
  return daemon;
}

static gpointer
worker_main (gpointer data)
{
  VpsWorker *worker = data;

  /* A flag rather than g_main_loop_quit(): a quit that lands before the
   * thread enters g_main_loop_run() would be lost and the join would hang.
   * The flag is checked before every iteration and the wakeup fd is sticky. */
  g_main_context_push_thread_default (worker->context);
  while (!g_atomic_int_get (&worker->stop))
    g_main_context_iteration (worker->context, TRUE);
  g_main_context_pop_thread_default (worker->context);
  return NULL;
}

static void
stop_workers (VpsDaemon *daemon)
{
  for (guint i = 0; i < daemon->n_workers; i++)
    {
      VpsWorker *w = &daemon->workers[i];

      g_atomic_int_set (&w->stop, 1);
      g_main_context_wakeup (w->context);
      /* NULL when the daemon stopped before vps_daemon_run() */
      if (w->thread != NULL)
        g_thread_join (w->thread);
      g_main_context_unref (w->context);
    }
  g_clear_pointer (&daemon->workers, g_free);
  daemon->n_workers = 0;
}

static void
close_listeners (VpsDaemon *daemon)
{
  for (guint i = 0; daemon->listeners && i < daemon->listeners->len; i++)
    vps_listener_close (g_ptr_array_index (daemon->listeners, i));
}

void
vps_daemon_free (VpsDaemon *daemon)
{
  if (daemon == NULL)
    return;
  close_listeners (daemon);
  stop_workers (daemon);
  /* Listeners own sockets the (now stopped) workers polled: free after. */
  g_clear_pointer (&daemon->listeners, g_ptr_array_unref);
  g_clear_pointer (&daemon->engine, vps_engine_unref);
  g_clear_pointer (&daemon->config, vps_config_unref);
  g_clear_pointer (&daemon->main_loop, g_main_loop_unref);
  g_clear_pointer (&daemon->privs, vps_privs_free);
  g_clear_pointer (&daemon->dir_keys, g_ptr_array_unref);
  g_mutex_clear (&daemon->lock);
  g_free (daemon->program);
  g_free (daemon->config_path);
  g_free (daemon);
}

static gboolean
setup_log (VpsDaemon *daemon, VpsConfig *cfg, GError **error)
{
  VpsLogTarget target;
  GLogLevelFlags level;
  const char *target_name = vps_config_get_string (cfg, "log", "target");
  const char *level_name = vps_config_get_string (cfg, "log", "level");

  /* The config module validated both values; these checks only guard a
   * schema that grew a value this module does not know. */
  if (!vps_log_target_from_name (target_name, &target))
    target = VPS_LOG_TARGET_STDERR;
  if (!vps_log_level_from_name (level_name, &level))
    level = G_LOG_LEVEL_INFO;
  return vps_log_setup (target, level, daemon->program, error);
}

/* The first load, between config and engine: decide and make the switch to
 * [vpsd] user, and check that it can write the daemon's directories. */
static gboolean
setup_privs (VpsDaemon *daemon, VpsConfig *cfg, GError **error)
{
  const char *user = vps_config_get_string (cfg, "vpsd", "user");
  const char *group = vps_config_get_string (cfg, "vpsd", "group");
  /* --check validates the names only: it runs nothing as root */
  gboolean allow_root = daemon->check_only || vps_config_get_bool (cfg, "vpsd", "allow_root");

  daemon->privs = vps_privs_new (geteuid (), user, group, allow_root, error);
  if (daemon->privs == NULL)
    return FALSE;
  if (!daemon->check_only && user != NULL && geteuid () != 0
      && geteuid () != vps_privs_get_uid (daemon->privs))
    vps_notice (NULL, "not started as root: [vpsd] user %s ignored, running as uid %u", user,
                (guint)geteuid ());
  if (daemon->check_only || !vps_privs_will_switch (daemon->privs))
    return TRUE;
  if (!vps_privs_enter (daemon->privs, error))
    return FALSE;
  /* The config file is read again at each reload, as the user by then
   * (AT_EACCESS: the effective ids; access() would ask the real uid 0). */
  if (faccessat (AT_FDCWD, daemon->config_path, R_OK, AT_EACCESS) != 0)
    {
      g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_DIRECTORY,
                   "%s: not readable by user %s (a reload would fail): %s", daemon->config_path,
                   vps_privs_get_user (daemon->privs), g_strerror (errno));
      return FALSE;
    }
  for (guint i = 0; i < daemon->dir_keys->len; i++)
    {
      g_auto (GStrv) gk = g_strsplit (g_ptr_array_index (daemon->dir_keys, i), "\n", 2);
      const char *dir = vps_config_get_path_value (cfg, gk[0], gk[1]);

      if (dir != NULL && !vps_privs_check_writable (daemon->privs, dir, error))
        return FALSE;
    }
  return TRUE;
}

/* Build config + engine without touching the daemon's current ones (the
 * first load also switches the user in between). */
static gboolean
load_aside (VpsDaemon *daemon, VpsConfig **out_cfg, VpsEngine **out_engine, GError **error)
{
  g_autoptr (VpsConfig) cfg = NULL;
  g_autoptr (VpsEngine) engine = NULL;

  cfg = vps_config_load (daemon->config_path, error);
  if (cfg == NULL)
    return FALSE;
  if (daemon->privs == NULL && !setup_privs (daemon, cfg, error))
    return FALSE;
  engine = daemon->engine_func ? daemon->engine_func (cfg, error) : vps_engine_new (cfg, error);
  if (engine == NULL)
    return FALSE;
  *out_cfg = g_steal_pointer (&cfg);
  *out_engine = g_steal_pointer (&engine);
  return TRUE;
}

static void
log_loaded (VpsDaemon *daemon, const char *what)
{
  RulesProgram *program = vps_engine_get_program (daemon->engine);
  g_autoptr (GString) counts = g_string_new (NULL);

  for (int s = 0; s < RULES_N_STAGES; s++)
    g_string_append_printf (counts, "%s%s=%u", s ? " " : "", rules_stage_name (s),
                            rules_program_n_rules (program, s));
  vps_notice (NULL, "%s config=%s rules=%s generation=%u (%s)", what, daemon->config_path,
              vps_config_get_path_value (daemon->config, "vpsd", "rules"), daemon->generation,
              counts->str);
}

gboolean
vps_daemon_load (VpsDaemon *daemon, GError **error)
{
  VpsConfig *cfg = NULL;
  VpsEngine *engine = NULL;

  g_return_val_if_fail (daemon->engine == NULL, FALSE);
  if (!load_aside (daemon, &cfg, &engine, error))
    return FALSE;
  if (!setup_log (daemon, cfg, error))
    {
      vps_engine_unref (engine);
      vps_config_unref (cfg);
      return FALSE;
    }
  g_mutex_lock (&daemon->lock);
  daemon->config = cfg;
  daemon->engine = engine;
  daemon->generation = 1;
  g_mutex_unlock (&daemon->lock);
  log_loaded (daemon, "loaded");
  return TRUE;
}

gboolean
vps_daemon_reload (VpsDaemon *daemon, GError **error)
{
  VpsConfig *cfg = NULL, *old_cfg;
  VpsEngine *engine = NULL, *old_engine;

  if (!load_aside (daemon, &cfg, &engine, error))
    {
      vps_metrics_count_reload (FALSE);
      return FALSE;
    }
  /* The log target may change with the config; a failure there keeps the
   * old target but does not refuse the new rules. */
  {
    g_autoptr (GError) log_error = NULL;

    if (!setup_log (daemon, cfg, &log_error))
      vps_warning (NULL, "reload: log setup: %s", log_error->message);
  }
  g_mutex_lock (&daemon->lock);
  old_cfg = daemon->config;
  old_engine = daemon->engine;
  daemon->config = cfg;
  daemon->engine = engine;
  daemon->generation++;
  g_mutex_unlock (&daemon->lock);
  /* Sessions in flight hold their own references; the counters it has so
   * far stay in the exported totals. */
  vps_metrics_engine_retired (old_engine);
  vps_metrics_count_reload (TRUE);
  vps_engine_unref (old_engine);
  vps_config_unref (old_cfg);
  log_loaded (daemon, "reloaded");
  return TRUE;
}

VpsEngine *
vps_daemon_get_engine (VpsDaemon *daemon)
{
  VpsEngine *engine;

  g_mutex_lock (&daemon->lock);
  engine = daemon->engine ? vps_engine_ref (daemon->engine) : NULL;
  g_mutex_unlock (&daemon->lock);
  return engine;
}

VpsConfig *
vps_daemon_get_config (VpsDaemon *daemon)
{
  VpsConfig *cfg;

  g_mutex_lock (&daemon->lock);
  cfg = daemon->config ? vps_config_ref (daemon->config) : NULL;
  g_mutex_unlock (&daemon->lock);
  return cfg;
}

guint
vps_daemon_get_generation (VpsDaemon *daemon)
{
  guint generation;

  g_mutex_lock (&daemon->lock);
  generation = daemon->generation;
  g_mutex_unlock (&daemon->lock);
  return generation;
}

void
vps_daemon_start_workers (VpsDaemon *daemon)
{
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (daemon);
  gint64 n = cfg ? vps_config_get_int (cfg, "vpsd", "workers") : 1;

  g_return_if_fail (daemon->workers == NULL);
  if (n <= 0)
    n = g_get_num_processors ();
  n = CLAMP (n, 1, VPS_DAEMON_MAX_WORKERS);
  daemon->workers = g_new0 (VpsWorker, n);
  daemon->n_workers = n;
  for (guint i = 0; i < daemon->n_workers; i++)
    {
      VpsWorker *w = &daemon->workers[i];
      g_autofree char *name = g_strdup_printf ("worker-%u", i);

      /* The thread starts in vps_daemon_run(), after the privilege drop:
       * until then the listeners' sources wait on an idle context. */
      w->context = g_main_context_new ();
    }
}

static void
start_worker_threads (VpsDaemon *daemon)
{
  if (daemon->threads_started)
    return;
  daemon->threads_started = TRUE;
  for (guint i = 0; i < daemon->n_workers; i++)
    {
      VpsWorker *w = &daemon->workers[i];
      g_autofree char *name = g_strdup_printf ("worker-%u", i);

      w->thread = g_thread_new (name, worker_main, w);
    }
  vps_info (NULL, "started %u worker threads", daemon->n_workers);
}

guint
vps_daemon_n_workers (VpsDaemon *daemon)
{
  return daemon->n_workers;
}

GMainContext *
vps_daemon_worker_context (VpsDaemon *daemon, guint i)
{
  g_return_val_if_fail (i < daemon->n_workers, NULL);
  return daemon->workers[i].context;
}

VpsListener *
vps_daemon_listen (VpsDaemon *daemon, const char *name, const char *address, VpsAcceptFunc func,
                   gpointer user_data, GError **error)
{
  GMainContext *contexts[VPS_DAEMON_MAX_WORKERS];
  VpsListener *l;
  /* A port below 1024 needs root; a unix socket is made as the user, so
   * that it belongs to the user and group the MTA is given access to. */
  gboolean raise = g_str_has_prefix (address, "inet:");

  g_return_val_if_fail (daemon->n_workers > 0, NULL);
  for (guint i = 0; i < daemon->n_workers; i++)
    contexts[i] = daemon->workers[i].context;
  if (raise && !vps_daemon_privileged_begin (daemon, error))
    return NULL;
  l = vps_listener_new (name, address, contexts, daemon->n_workers, func, user_data, error);
  if (raise)
    vps_daemon_privileged_end (daemon);
  if (l != NULL)
    g_ptr_array_add (daemon->listeners, l);
  return l;
}

gboolean
vps_daemon_is_draining (VpsDaemon *daemon)
{
  return g_atomic_int_get (&daemon->draining);
}

void
vps_daemon_session_begin (VpsDaemon *daemon)
{
  g_atomic_int_inc (&daemon->active_sessions);
  vps_metrics_count_session ();
}

void
vps_daemon_session_end (VpsDaemon *daemon)
{
  if (g_atomic_int_dec_and_test (&daemon->active_sessions))
    g_main_context_wakeup (NULL);
}

guint
vps_daemon_active_sessions (VpsDaemon *daemon)
{
  return (guint)g_atomic_int_get (&daemon->active_sessions);
}

static gboolean
on_sighup (gpointer data)
{
  VpsDaemon *daemon = data;
  g_autoptr (GError) error = NULL;

  vps_notice (NULL, "SIGHUP: reloading %s", daemon->config_path);
  sd_notifyf (0, "RELOADING=1\nMONOTONIC_USEC=%" G_GINT64_FORMAT "\nSTATUS=reloading %s",
              g_get_monotonic_time (), daemon->config_path);
  if (!vps_daemon_reload (daemon, &error))
    {
      vps_warning (NULL, "reload refused, keeping generation %u: %s",
                   vps_daemon_get_generation (daemon), error->message);
      sd_notifyf (0, "READY=1\nSTATUS=reload refused, running generation %u: %s",
                  vps_daemon_get_generation (daemon), error->message);
    }
  else
    sd_notifyf (0, "READY=1\nSTATUS=running generation %u", vps_daemon_get_generation (daemon));
  return G_SOURCE_CONTINUE;
}

static gboolean
on_sigterm (gpointer data)
{
  VpsDaemon *daemon = data;

  vps_notice (NULL, "stopping: draining %u sessions", vps_daemon_active_sessions (daemon));
  sd_notifyf (0, "STOPPING=1\nSTATUS=draining %u sessions", vps_daemon_active_sessions (daemon));
  vps_daemon_stop (daemon);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_drain_tick (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

void
vps_daemon_stop (VpsDaemon *daemon)
{
  g_atomic_int_set (&daemon->draining, TRUE);
  g_main_loop_quit (daemon->main_loop);
}

int
vps_daemon_run (VpsDaemon *daemon)
{
  guint hup = g_unix_signal_add (SIGHUP, on_sighup, daemon);
  guint term = g_unix_signal_add (SIGTERM, on_sigterm, daemon);
  guint intr = g_unix_signal_add (SIGINT, on_sigterm, daemon);
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (daemon);
  gint64 drain_ms = vps_config_get_duration_ms (cfg, "vpsd", "drain_timeout");
  gint64 deadline;
  g_autoptr (GError) error = NULL;

  /* The last step before any network input is read: root goes for good. */
  if (daemon->privs != NULL && !vps_privs_drop (daemon->privs, &error))
    {
      vps_log (G_LOG_LEVEL_CRITICAL, NULL, "privileges: %s", error->message);
      fprintf (stderr, "%s: %s\n", daemon->program, error->message);
      g_source_remove (hup);
      g_source_remove (term);
      g_source_remove (intr);
      return 1;
    }
  if (daemon->privs != NULL && vps_privs_dropped (daemon->privs))
    vps_notice (NULL, "running as user %s (uid %u, gid %u)", vps_privs_get_user (daemon->privs),
                (guint)getuid (), (guint)getgid ());
  start_worker_threads (daemon);
  if (daemon->ready_func != NULL)
    daemon->ready_func (daemon->ready_data);
  vps_notice (NULL, "ready");
  sd_notifyf (0, "READY=1\nSTATUS=running generation %u\nMAINPID=%d",
              vps_daemon_get_generation (daemon), (int)getpid ());
  g_main_loop_run (daemon->main_loop);

  /* Drain: stop accepting; sessions in flight get until the deadline. */
  close_listeners (daemon);
  if (daemon->drain_func != NULL)
    daemon->drain_func (FALSE, daemon->drain_data);
  deadline = g_get_monotonic_time () + drain_ms * 1000;
  if (vps_daemon_active_sessions (daemon) > 0)
    {
      /* A tick bounds each blocking iteration so the deadline is seen. */
      guint tick = g_timeout_add (100, on_drain_tick, NULL);

      while (vps_daemon_active_sessions (daemon) > 0 && g_get_monotonic_time () < deadline)
        g_main_context_iteration (NULL, TRUE);
      g_source_remove (tick);
    }
  if (vps_daemon_active_sessions (daemon) > 0)
    {
      vps_warning (NULL, "drain timeout: %u sessions still open",
                   vps_daemon_active_sessions (daemon));
      if (daemon->drain_func != NULL)
        daemon->drain_func (TRUE, daemon->drain_data);
    }

  g_source_remove (hup);
  g_source_remove (term);
  g_source_remove (intr);
  stop_workers (daemon);
  vps_notice (NULL, "stopped");
  return 0;
}

void
vps_daemon_set_engine_func (VpsDaemon *daemon, VpsDaemonEngineFunc func)
{
  daemon->engine_func = func;
}

void
vps_daemon_set_drain_func (VpsDaemon *daemon, VpsDaemonDrainFunc func, gpointer data)
{
  daemon->drain_func = func;
  daemon->drain_data = data;
}

void
vps_daemon_set_check (VpsDaemon *daemon, gboolean check)
{
  daemon->check_only = check;
}

void
vps_daemon_add_writable_dir (VpsDaemon *daemon, const char *group, const char *key)
{
  g_ptr_array_add (daemon->dir_keys, g_strdup_printf ("%s\n%s", group, key));
}

gboolean
vps_daemon_privileged_begin (VpsDaemon *daemon, GError **error)
{
  return daemon->privs == NULL || vps_privs_raise (daemon->privs, error);
}

void
vps_daemon_privileged_end (VpsDaemon *daemon)
{
  if (daemon->privs != NULL)
    vps_privs_lower (daemon->privs);
}

void
vps_daemon_set_ready_func (VpsDaemon *daemon, VpsDaemonReadyFunc func, gpointer data)
{
  daemon->ready_func = func;
  daemon->ready_data = data;
}
