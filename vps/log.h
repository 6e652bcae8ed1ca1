/* SPDX-License-Identifier: MIT
 *
 * log.h — structured logging for every vps program.
 *
 * One line per event, carrying the session or queue id when there is one.
 * vps_log_setup() installs a GLib structured-log writer for the configured
 * target (stderr, syslog with facility mail, or the systemd journal) and
 * level; lines below the level are dropped before formatting.  The API is
 * safe from any thread.  Message bodies and credentials are logged only at
 * debug level (callers' duty).
 *
 * stderr format: "2026-11-28T21:40:00.123Z vpsd[1234] info id=S1 message"
 * (UTC, milliseconds).  Control characters in the id and message (CR, LF,
 * NUL ... from peer input) are written as \xNN so one event is one line.
 * Levels: error and critical are "error"/"critical", G_LOG_LEVEL_MESSAGE is
 * "notice".  vps_log() at ERROR or CRITICAL only logs (it never aborts, unlike
 * g_error()/g_critical() under G_DEBUG=fatal-criticals).  Messages of other
 * log domains (GLib, GIO ...) go through the same writer; their debug and
 * info lines follow G_MESSAGES_DEBUG as with GLib's default writer.
 * The writer is installed by the first vps_log_setup(), vps_log_capture() or
 * vps_log() call; a program must not install its own with
 * g_log_set_writer_func().
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VPS_LOG_ERROR (vps_log_error_quark ())
GQuark vps_log_error_quark (void);

typedef enum
{
  VPS_LOG_ERROR_INVALID,     /* a bad level or target */
  VPS_LOG_ERROR_UNAVAILABLE, /* the journal socket is missing */
} VpsLogError;

/* Longest message kept on one line; longer ones are cut and end in "...". */
#define VPS_LOG_MAX_MESSAGE 8192
/* Keys remembered by vps_log_once(); past this, expired keys are dropped. */
#define VPS_LOG_ONCE_MAX_KEYS 1024

typedef enum
{
  VPS_LOG_TARGET_STDERR,
  VPS_LOG_TARGET_SYSLOG,
  VPS_LOG_TARGET_JOURNAL,
} VpsLogTarget;

gboolean vps_log_target_from_name (const char *name, VpsLogTarget *out);
/* "debug" "info" "notice" "warning" "error" → GLib level. */
gboolean vps_log_level_from_name (const char *name, GLogLevelFlags *out);

gboolean vps_log_setup (VpsLogTarget target, GLogLevelFlags level, const char *program,
                        GError **error);
/* Tests: send formatted lines to `sink` instead of the target, as
 * "LEVEL id=ID message\n" (the stderr format without timestamp and
 * program[pid]); NULL restores the target.  The level filter still applies. */
void vps_log_capture (GString *sink);
/* Is `level` enabled? (to skip building expensive debug strings) */
gboolean vps_log_enabled (GLogLevelFlags level);

void vps_log (GLogLevelFlags level, const char *id, const char *fmt, ...) G_GNUC_PRINTF (3, 4);
#define vps_debug(id, ...) vps_log (G_LOG_LEVEL_DEBUG, (id), __VA_ARGS__)
#define vps_info(id, ...) vps_log (G_LOG_LEVEL_INFO, (id), __VA_ARGS__)
#define vps_notice(id, ...) vps_log (G_LOG_LEVEL_MESSAGE, (id), __VA_ARGS__)
#define vps_warning(id, ...) vps_log (G_LOG_LEVEL_WARNING, (id), __VA_ARGS__)

/* Log at most once per `interval_s` for `key` (rate-limited warnings such
 * as "modification not applicable"); returns TRUE if it logged. */
gboolean vps_log_once (const char *key, guint interval_s, GLogLevelFlags level, const char *id,
                       const char *fmt, ...) G_GNUC_PRINTF (5, 6);

G_END_DECLS
