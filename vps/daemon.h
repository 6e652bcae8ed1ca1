/* SPDX-License-Identifier: MIT
 *
 * daemon.h — what every long-running vps program shares: the current
 * configuration and engine, reload and drain.
 *
 * vps_daemon_load() reads the configuration and builds an engine; it refuses
 * (FALSE + error) on any error, so a daemon never starts half-configured.
 * vps_daemon_reload() does the same off to the side and swaps the engine only
 * when everything loaded: a bad new rule file or config is logged and the old
 * engine stays.  Sessions take a reference with vps_daemon_get_engine() when
 * they start and finish on that engine (ARCHITECTURE.md, "Reload").
 *
 * Worker threads: each runs its own GMainContext/GMainLoop; front ends (later
 * issues) attach their listeners to every worker context.  Drain: stop
 * accepting, wait until the sessions counted with vps_daemon_session_begin /
 * _end are gone or the drain timeout passes.
 *
 * Privileges (privs.h, docs/operations.md): started as root, the first load
 * switches the effective uid to [vpsd] user right after reading the config
 * (root without a user is refused unless [vpsd] allow_root or
 * VPS_ALLOW_ROOT=1); inet listeners bind with root raised for the call;
 * vps_daemon_run() drops root for good and only then starts the worker
 * threads, which is when connections begin to be read.  It also tells
 * systemd READY=1 / RELOADING=1 / STOPPING=1 (sd_notify; no-op without
 * NOTIFY_SOCKET) and counts sessions and reloads (metrics.h).
 */
#pragma once

#include <gio/gio.h>
#include "vps/config.h"
#include "vps/engine.h"
#include "vps/listen.h"

G_BEGIN_DECLS

#define VPS_DAEMON_MAX_WORKERS 64

typedef struct _VpsDaemon VpsDaemon;

/* The command line every daemon takes: `PROGRAM -c FILE [--check]`. */
typedef struct
{
  char *config_path; /* -c FILE */
  gboolean check;    /* --check: validate the config and rules, then exit */
} VpsDaemonOptions;

void vps_daemon_options_clear (VpsDaemonOptions *options);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (VpsDaemonOptions, vps_daemon_options_clear)

/* Parse -c FILE, --check and --version for `program` ("vpsd"; `summary`
 * is the --help line).  TRUE: go on with `options`.  FALSE: the program
 * exits with *exit_status — 0 after --version (printed as "PROGRAM
 * VERSION"), 2 on a usage error such as a missing -c (said on stderr as
 * "PROGRAM: ..."); 1 stays the exit status of a bad configuration. */
gboolean vps_daemon_parse_command_line (const char *program, const char *summary,
                                        const char *version, int *argc, char ***argv,
                                        VpsDaemonOptions *options, int *exit_status);

VpsDaemon *vps_daemon_new (const char *program, const char *config_path);
void vps_daemon_free (VpsDaemon *daemon);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsDaemon, vps_daemon_free)

/* How the engine is built from a loaded config (before vps_daemon_load):
 * vsmtpd builds one that sends every stage to a remote vpsd when [vsmtpd]
 * policy says so.  The default is vps_engine_new(). */
typedef VpsEngine *(*VpsDaemonEngineFunc) (VpsConfig *cfg, GError **error);
void vps_daemon_set_engine_func (VpsDaemon *daemon, VpsDaemonEngineFunc func);

/* Told on the main thread when the drain starts (final FALSE: tell idle
 * sessions goodbye now) and when drain_timeout ran out with sessions still
 * open (final TRUE: end them all, the workers stop next).  A front end
 * whose protocol says goodbye (SMTP's 421) sets it. */
typedef void (*VpsDaemonDrainFunc) (gboolean final, gpointer data);
void vps_daemon_set_drain_func (VpsDaemon *daemon, VpsDaemonDrainFunc func, gpointer data);

/* --check: the first load validates [vpsd] user/group but switches nothing
 * and does not refuse root. */
void vps_daemon_set_check (VpsDaemon *daemon, gboolean check);
/* A directory key ([queue] dir) the configured user must be able to write
 * (checked at the first load when switching; [quarantine] dir always is). */
void vps_daemon_add_writable_dir (VpsDaemon *daemon, const char *group, const char *key);
/* Around a bind the daemon does not make itself (gRPC, the metrics
 * endpoint): effective uid 0 for the call when switching, else no-op. */
gboolean vps_daemon_privileged_begin (VpsDaemon *daemon, GError **error);
void vps_daemon_privileged_end (VpsDaemon *daemon);
/* Called by vps_daemon_run() on the main thread after the privilege drop
 * and the worker start, before READY=1 (vsmtpd starts delivery there). */
typedef void (*VpsDaemonReadyFunc) (gpointer data);
void vps_daemon_set_ready_func (VpsDaemon *daemon, VpsDaemonReadyFunc func, gpointer data);

/* First load: config, privileges (see above), log setup, engine. */
gboolean vps_daemon_load (VpsDaemon *daemon, GError **error);
/* SIGHUP: reload config and rules; on error keep the old ones. */
gboolean vps_daemon_reload (VpsDaemon *daemon, GError **error);

/* A new reference on the current engine / config (thread-safe). */
VpsEngine *vps_daemon_get_engine (VpsDaemon *daemon);
VpsConfig *vps_daemon_get_config (VpsDaemon *daemon);
guint vps_daemon_get_generation (VpsDaemon *daemon); /* bumped by each successful reload */

/* Make the worker contexts ([vpsd] workers; 0 = one per core); their
 * threads start in vps_daemon_run(), after the privilege drop. */
void vps_daemon_start_workers (VpsDaemon *daemon);
guint vps_daemon_n_workers (VpsDaemon *daemon);
GMainContext *vps_daemon_worker_context (VpsDaemon *daemon, guint i);

/* Bind `address` and accept on every worker (workers must be started);
 * the daemon keeps the listener and closes it when it starts draining.
 * Returns the listener (borrowed) for its address/port. */
VpsListener *vps_daemon_listen (VpsDaemon *daemon, const char *name, const char *address,
                                VpsAcceptFunc func, gpointer user_data, GError **error);
/* TRUE once SIGTERM/SIGINT (or vps_daemon_stop) began the drain. */
gboolean vps_daemon_is_draining (VpsDaemon *daemon);

void vps_daemon_session_begin (VpsDaemon *daemon);
void vps_daemon_session_end (VpsDaemon *daemon);
guint vps_daemon_active_sessions (VpsDaemon *daemon);

/* Drop root for good (1 if that fails), start the worker threads, tell
 * systemd READY=1, run the main loop on the calling thread until
 * SIGTERM/SIGINT, then drain (up to [vpsd] drain_timeout) and stop the
 * workers.  SIGHUP reloads. */
int vps_daemon_run (VpsDaemon *daemon);
/* Ask the main loop to stop and drain (what SIGTERM does). */
void vps_daemon_stop (VpsDaemon *daemon);

G_END_DECLS
