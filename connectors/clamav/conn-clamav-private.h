/* SPDX-License-Identifier: MIT
 *
 * conn-clamav-private.h — what the modules of the `clamav` connector share:
 * the settings read once from [connector NAME], the outcome of one scan,
 * the in-process engine (conn-clamav-engine.c) and the clamd client
 * (conn-clamav-clamd.c).  Both scanners complete on the caller's
 * thread-default main context and return a ConnClamavScan.
 */
#pragma once

#include <gio/gio.h>

#include "vps/connector.h"

G_BEGIN_DECLS

/* Defaults of the limits: those of Debian's clamd.conf, so the in-process
 * engine and a stock clamd judge a message alike. */
#define CONN_CLAMAV_DEFAULT_MAX_SCAN_SIZE (100 * 1024 * 1024)
#define CONN_CLAMAV_DEFAULT_MAX_FILE_SIZE (25 * 1024 * 1024)
#define CONN_CLAMAV_DEFAULT_MAX_RECURSION 16
#define CONN_CLAMAV_DEFAULT_MAX_FILES 10000
#define CONN_CLAMAV_DEFAULT_MAX_SCAN_TIME_MS (120 * 1000)
#define CONN_CLAMAV_DEFAULT_RELOAD_INTERVAL_MS (60 * 1000)
/* Upper bounds of the keys (libclamav takes 32-bit counts). */
#define CONN_CLAMAV_MAX_RECURSION_LIMIT 64
#define CONN_CLAMAV_MAX_FILES_LIMIT 1000000
#define CONN_CLAMAV_MAX_THREADS 64
/* A virus name longer than this, or with bytes outside printable ASCII, is
 * refused: names flow into rules, log lines and (by rules) headers. */
#define CONN_CLAMAV_MAX_NAME 256
/* clamd: bytes of one INSTREAM chunk, and of a reply ("stream: NAME FOUND"). */
#define CONN_CLAMAV_CHUNK 65536
#define CONN_CLAMAV_MAX_REPLY 1024

#define CONN_CLAMAV_ERROR (conn_clamav_error_quark ())
GQuark conn_clamav_error_quark (void);

typedef enum
{
  CONN_CLAMAV_ERROR_NO_DATABASE, /* no engine: database missing, empty or broken */
  CONN_CLAMAV_ERROR_SCAN,        /* libclamav failed to scan */
  CONN_CLAMAV_ERROR_NO_MESSAGE,  /* called before data: nothing to scan */
  CONN_CLAMAV_ERROR_CLAMD,       /* clamd said ERROR, or answered nonsense */
} ConnClamavError;

typedef enum
{
  CONN_CLAMAV_MODE_LIBRARY,
  CONN_CLAMAV_MODE_CLAMD,
} ConnClamavMode;

/* Read once by create(); immutable after, reference-counted
 * (g_atomic_rc_box): scans queued on the engine's threads keep it alive
 * after the connector is gone. */
typedef struct
{
  char *name; /* the connector's name, for log lines */
  ConnClamavMode mode;
  /* library */
  char *database; /* absolute directory */
  char *tmpdir;   /* or NULL: libclamav's default */
  guint64 max_scan_size, max_file_size;
  guint max_recursion, max_files;
  gint64 max_scan_time_ms;
  gint64 reload_interval_ms; /* 0 = never look at the directory again */
  guint threads;
  /* clamd */
  char *address; /* as configured */
  char *host;    /* inet: */
  guint16 port;
  char *path; /* unix: */
  /* verdicts */
  RulesVerdict on_infected, on_limits;
  char *quarantine;
} ConnClamavSettings;

ConnClamavSettings *conn_clamav_settings_ref (ConnClamavSettings *settings);
void conn_clamav_settings_unref (ConnClamavSettings *settings);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnClamavSettings, conn_clamav_settings_unref)

/* The outcome of one complete scan (errors are GErrors, never a scan). */
typedef struct
{
  gboolean infected;        /* a signature (or a heuristic other than a limit) matched */
  gboolean limits_exceeded; /* a limit stopped the scan: not known to be clean */
  char *name;               /* what matched, or NULL */
} ConnClamavScan;

void conn_clamav_scan_free (ConnClamavScan *scan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnClamavScan, conn_clamav_scan_free)

/* A scan outcome from a detection name ("Eicar-Test-Signature",
 * "Heuristics.Limits.Exceeded.MaxScanSize"); NULL + CONN_CLAMAV_ERROR_CLAMD
 * for a name that is empty, too long or not printable ASCII. */
ConnClamavScan *conn_clamav_scan_new_found (const char *name, gsize len, GError **error);

/* ---- the in-process engine (conn-clamav-engine.c) ----------------------- */

typedef struct _ConnClamavLibrary ConnClamavLibrary;

/* Initialise libclamav (once per process) and load the database.  A
 * database that cannot be loaded is not an error here: it is logged, and
 * every scan fails with CONN_CLAMAV_ERROR_NO_DATABASE until a reload
 * succeeds.  Takes a reference on `settings`. */
ConnClamavLibrary *conn_clamav_library_new (ConnClamavSettings *settings);
/* From any thread; scans queued or running finish first (on their own). */
void conn_clamav_library_free (ConnClamavLibrary *lib);
void conn_clamav_library_scan_async (ConnClamavLibrary *lib, GBytes *data, const char *sid,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
/* Needs no library: the call may end after the connector is gone. */
ConnClamavScan *conn_clamav_library_scan_finish (GAsyncResult *result, GError **error);

/* ---- clamd (conn-clamav-clamd.c) ------------------------------------------ */

/* One INSTREAM exchange on a new connection, all on the caller's context. */
void conn_clamav_clamd_scan_async (const ConnClamavSettings *settings, GBytes *data,
                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                   gpointer user_data);
ConnClamavScan *conn_clamav_clamd_scan_finish (GAsyncResult *result, GError **error);

/* Parse one clamd reply to a z-command (NUL-terminated on the wire; `len`
 * without the NUL): "stream: OK", "stream: NAME FOUND", "... ERROR".  The
 * size-limit ERROR ("INSTREAM size limit exceeded") is a scan with
 * limits_exceeded; any other ERROR or an unknown reply is
 * CONN_CLAMAV_ERROR_CLAMD. */
ConnClamavScan *conn_clamav_clamd_parse_reply (const char *reply, gsize len, GError **error);

G_END_DECLS
