/* SPDX-License-Identifier: MIT
 *
 * conn-clamav-engine.c — the in-process scanner of the `clamav` connector:
 * one libclamav engine per connector, built from `database` at start and
 * rebuilt when the directory changes, and a bounded pool of threads that
 * run the (blocking) scans.
 *
 * Contract:
 *   - libclamav is initialised once per process (cl_init); its messages go
 *     to our log instead of stderr.
 *   - A compiled engine is read-only and shared by all scans; it is
 *     reference-counted, so a reload builds the new engine aside (on a
 *     thread of its own, scans keep running on the old one), swaps the
 *     pointer under a lock, and the old engine is freed by the last scan
 *     that used it.
 *   - The directory is looked at (cl_statchkdir: a stat of each database
 *     file) at most every reload_interval, from a scan thread.  A reload
 *     that fails keeps the old engine and is logged; while no engine was
 *     ever loaded every scan fails (CONN_CLAMAV_ERROR_NO_DATABASE) — a
 *     missing or broken database is never "clean".  An engine with zero
 *     signatures counts as broken.
 *   - A scan runs on one of `threads` pool threads over the message in
 *     memory (an fmap, no copy) with every parser on, general heuristics
 *     and "exceeds max" alerts, so a limit hit comes back as
 *     Heuristics.Limits.Exceeded.* (ClamAV would otherwise call such a
 *     file clean).  Heuristic precedence stays off: a real signature found
 *     later in the same message still wins over a limit alert.
 *   - Completion is on the caller's thread-default context (GTask).  A
 *     cancelled call is dropped before it starts, and a running scan stops
 *     at its next embedded file (pre-scan callback).
 */
#include <clamav.h>
#include <string.h>

#include "connectors/clamav/conn-clamav-private.h"
#include "vps/log.h"

typedef struct
{
  struct cl_engine *engine; /* compiled */
  guint signatures;
} Engine;

static void
engine_clear (gpointer data)
{
  Engine *e = data;

  if (e->engine != NULL)
    cl_engine_free (e->engine);
}

static Engine *
engine_ref (Engine *e)
{
  return g_atomic_rc_box_acquire (e);
}

static void
engine_unref (Engine *e)
{
  if (e != NULL)
    g_atomic_rc_box_release_full (e, engine_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Engine, engine_unref)

/* What the scan threads and the reload thread share; reference-counted so
 * that either can outlive conn_clamav_library_free(). */
typedef struct
{
  ConnClamavSettings *settings;
  GMutex lock;           /* guards everything below */
  Engine *engine;        /* current, NULL when none could be loaded */
  struct cl_stat dbstat; /* the directory as the current engine saw it */
  gboolean have_stat;    /* dbstat is valid */
  gint64 last_check_us;  /* monotonic */
  gboolean reloading;    /* a reload thread runs */
} Shared;

static void
shared_clear (gpointer data)
{
  Shared *sh = data;

  engine_unref (sh->engine);
  if (sh->have_stat)
    cl_statfree (&sh->dbstat);
  g_mutex_clear (&sh->lock);
  conn_clamav_settings_unref (sh->settings);
}

static Shared *
shared_ref (Shared *sh)
{
  return g_atomic_rc_box_acquire (sh);
}

static void
shared_unref (Shared *sh)
{
  if (sh != NULL)
    g_atomic_rc_box_release_full (sh, shared_clear);
}

struct _ConnClamavLibrary
{
  Shared *shared;
  GThreadPool *pool;
};

/* ---- libclamav, once per process ----------------------------------------- */

static void
clamav_message (enum cl_msg severity, const char *fullmsg, const char *msg, void *context)
{
  GLogLevelFlags level = severity == CL_MSG_ERROR  ? G_LOG_LEVEL_WARNING
                         : severity == CL_MSG_WARN ? G_LOG_LEVEL_INFO
                                                   : G_LOG_LEVEL_DEBUG;
  g_autofree char *line = g_strchomp (g_strdup (msg != NULL ? msg : ""));

  vps_log (level, NULL, "libclamav: %s", line);
}

/* CL_SUCCESS, or cl_init's error: every later load fails with it. */
static cl_error_t
clamav_init (void)
{
  static gsize once = 0;
  static cl_error_t status;

  if (g_once_init_enter (&once))
    {
      cl_set_clcb_msg (clamav_message);
      status = cl_init (CL_INIT_DEFAULT);
      g_once_init_leave (&once, 1);
    }
  return status;
}

/* Per-scan context handed to libclamav's callbacks. */
typedef struct
{
  GCancellable *cancellable;
  char found[CONN_CLAMAV_MAX_NAME + 2]; /* the first name reported, "" when none */
} ScanContext;

/* Called before each embedded file: a cancelled call stops here (its
 * result is thrown away, so "skip" is as good as "stop"). */
static cl_error_t
pre_scan (int fd, const char *type, void *context)
{
  ScanContext *ctx = context;

  if (ctx != NULL && g_cancellable_is_cancelled (ctx->cancellable))
    return CL_BREAK;
  return CL_CLEAN;
}

/* Called for each match.  XXX: libclamav 1.4 returns CL_VIRUS without a
 * name when the message itself is over max_file_size; the callback still
 * sees Heuristics.Limits.Exceeded.MaxFileSize, so the name is kept here. */
static void
virus_found (int fd, const char *virname, void *context)
{
  ScanContext *ctx = context;

  if (ctx != NULL && ctx->found[0] == '\0' && virname != NULL)
    g_strlcpy (ctx->found, virname, sizeof ctx->found);
}

static gboolean
set_num (struct cl_engine *engine, enum cl_engine_field field, long long v, const char *what,
         GError **error)
{
  cl_error_t ret = cl_engine_set_num (engine, field, v);

  if (ret != CL_SUCCESS)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_DATABASE, "%s: %s", what,
                   cl_strerror (ret));
      return FALSE;
    }
  return TRUE;
}

/* A new compiled engine from the settings' directory. */
static Engine *
engine_load (const ConnClamavSettings *s, GError **error)
{
  g_autoptr (Engine) e = g_atomic_rc_box_new0 (Engine);
  unsigned int sigs = 0;
  cl_error_t ret;

  if ((ret = clamav_init ()) != CL_SUCCESS)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_DATABASE, "cl_init: %s",
                   cl_strerror (ret));
      return NULL;
    }
  e->engine = cl_engine_new ();
  if (e->engine == NULL)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_DATABASE,
                   "cannot create an engine");
      return NULL;
    }
  if (!set_num (e->engine, CL_ENGINE_MAX_SCANSIZE, (long long)s->max_scan_size, "max_scan_size",
                error)
      || !set_num (e->engine, CL_ENGINE_MAX_FILESIZE, (long long)s->max_file_size, "max_file_size",
                   error)
      || !set_num (e->engine, CL_ENGINE_MAX_RECURSION, s->max_recursion, "max_recursion", error)
      || !set_num (e->engine, CL_ENGINE_MAX_FILES, s->max_files, "max_files", error)
      || !set_num (e->engine, CL_ENGINE_MAX_SCANTIME, s->max_scan_time_ms, "max_scan_time", error))
    return NULL;
  if (s->tmpdir != NULL && (ret = cl_engine_set_str (e->engine, CL_ENGINE_TMPDIR, s->tmpdir)))
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_DATABASE, "tmpdir: %s",
                   cl_strerror (ret));
      return NULL;
    }
  cl_engine_set_clcb_pre_scan (e->engine, pre_scan);
  cl_engine_set_clcb_virus_found (e->engine, virus_found);
  ret = cl_load (s->database, e->engine, &sigs, CL_DB_STDOPT);
  if (ret != CL_SUCCESS)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_DATABASE,
                   "cannot load the database %s: %s", s->database, cl_strerror (ret));
      return NULL;
    }
  /* an engine without signatures would call everything clean */
  if (sigs == 0)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_DATABASE,
                   "no signatures in the database %s", s->database);
      return NULL;
    }
  if ((ret = cl_engine_compile (e->engine)) != CL_SUCCESS)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_DATABASE,
                   "cannot compile the database %s: %s", s->database, cl_strerror (ret));
      return NULL;
    }
  e->signatures = sigs;
  return g_steal_pointer (&e);
}

/* ---- loading and reloading ----------------------------------------------- */

/* Load the directory and install the engine (or keep the old one). */
static void
reload (Shared *sh, gboolean initial)
{
  const ConnClamavSettings *s = sh->settings;
  struct cl_stat st;
  gboolean have_stat;
  g_autoptr (GError) error = NULL;
  g_autoptr (Engine) fresh = NULL;
  Engine *old = NULL;
  gboolean had_engine;

  /* stat first: a change made while we load is seen at the next check */
  memset (&st, 0, sizeof st);
  have_stat = cl_statinidir (s->database, &st) == CL_SUCCESS;
  fresh = engine_load (s, &error);

  g_mutex_lock (&sh->lock);
  if (sh->have_stat)
    cl_statfree (&sh->dbstat);
  sh->dbstat = st;
  sh->have_stat = have_stat;
  had_engine = sh->engine != NULL;
  if (fresh != NULL)
    {
      old = sh->engine;
      sh->engine = engine_ref (fresh);
    }
  sh->reloading = FALSE;
  g_mutex_unlock (&sh->lock);

  if (fresh != NULL)
    vps_info (NULL, "clamav %s: %s %u signatures from %s", s->name, initial ? "loaded" : "reloaded",
              fresh->signatures, s->database);
  else if (!had_engine)
    vps_warning (NULL, "clamav %s: %s; every scan fails (on_error) until it loads", s->name,
                 error->message);
  else
    vps_warning (NULL, "clamav %s: reload failed, the previous database stays: %s", s->name,
                 error->message);
  /* scans still running on the old engine hold their own reference */
  engine_unref (old);
}

static gpointer
reload_thread (gpointer data)
{
  Shared *sh = data;

  reload (sh, FALSE);
  shared_unref (sh);
  return NULL;
}

/* From a scan thread: at most every reload_interval, look at the directory
 * and start a reload on a thread of its own when it changed (or when no
 * engine could be loaded yet). */
static void
maybe_reload (Shared *sh)
{
  const ConnClamavSettings *s = sh->settings;
  gint64 now = g_get_monotonic_time ();
  gboolean start = FALSE;

  if (s->reload_interval_ms <= 0)
    return;
  g_mutex_lock (&sh->lock);
  if (!sh->reloading && now - sh->last_check_us >= s->reload_interval_ms * 1000)
    {
      sh->last_check_us = now;
      /* cl_statchkdir: 1 when a file was added, removed or changed */
      if (sh->engine == NULL || !sh->have_stat || cl_statchkdir (&sh->dbstat) != 0)
        sh->reloading = start = TRUE;
    }
  g_mutex_unlock (&sh->lock);
  if (start)
    {
      g_autoptr (GError) error = NULL;
      GThread *t = g_thread_try_new ("clamav-reload", reload_thread, shared_ref (sh), &error);

      if (t == NULL)
        {
          vps_warning (NULL, "clamav %s: cannot start a reload: %s", s->name, error->message);
          g_mutex_lock (&sh->lock);
          sh->reloading = FALSE;
          g_mutex_unlock (&sh->lock);
          shared_unref (sh);
        }
      else
        g_thread_unref (t);
    }
}

/* ---- scans ---------------------------------------------------------------- */

typedef struct
{
  GTask *task; /* completes on the caller's context */
  Shared *shared;
  GBytes *data;
  char *sid;
} Job;

static void
job_free (Job *job)
{
  g_object_unref (job->task);
  shared_unref (job->shared);
  g_bytes_unref (job->data);
  g_free (job->sid);
  g_free (job);
}

static ConnClamavScan *
scan (Shared *sh, GBytes *data, GCancellable *cancellable, GError **error)
{
  const ConnClamavSettings *s = sh->settings;
  g_autoptr (Engine) e = NULL;
  struct cl_scan_options opts;
  ScanContext ctx = { cancellable, "" };
  const char *virname = NULL;
  unsigned long scanned = 0;
  gsize len = 0;
  const void *bytes = g_bytes_get_data (data, &len);
  cl_fmap_t *map;
  cl_error_t ret;

  g_mutex_lock (&sh->lock);
  if (sh->engine != NULL)
    e = engine_ref (sh->engine);
  g_mutex_unlock (&sh->lock);
  if (e == NULL)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_DATABASE,
                   "clamav %s: no database loaded from %s", s->name, s->database);
      return NULL;
    }

  memset (&opts, 0, sizeof opts);
  opts.general = CL_SCAN_GENERAL_HEURISTICS;
  opts.parse = ~0U; /* every parser: mail, archives, documents, executables */
  opts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;
  map = cl_fmap_open_memory (bytes != NULL ? bytes : "", len);
  if (map == NULL)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_SCAN, "clamav %s: out of memory",
                   s->name);
      return NULL;
    }
  ret = cl_scanmap_callback (map, NULL, &virname, &scanned, e->engine, &opts, &ctx);
  cl_fmap_close (map);

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  if (ret == CL_VIRUS)
    {
      ConnClamavScan *r;

      /* virname lives in the engine, which we still hold */
      if (virname == NULL || *virname == '\0')
        virname = ctx.found;
      r = conn_clamav_scan_new_found (virname, strlen (virname), error);
      if (r == NULL)
        g_prefix_error (error, "clamav %s: ", s->name);
      return r;
    }
  if (ret == CL_CLEAN)
    return g_new0 (ConnClamavScan, 1);
  g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_SCAN, "clamav %s: scan failed: %s",
               s->name, cl_strerror (ret));
  return NULL;
}

static void
scan_job (gpointer data, gpointer user_data)
{
  Job *job = data;
  GCancellable *cancellable = g_task_get_cancellable (job->task);
  GError *error = NULL;
  ConnClamavScan *r = NULL;
  gint64 t0 = g_get_monotonic_time ();

  if (!g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      maybe_reload (job->shared);
      r = scan (job->shared, job->data, cancellable, &error);
      if (r != NULL)
        vps_debug (job->sid, "clamav %s: %zu bytes in %" G_GINT64_FORMAT " ms: %s",
                   job->shared->settings->name, g_bytes_get_size (job->data),
                   (g_get_monotonic_time () - t0) / 1000, r->name != NULL ? r->name : "clean");
    }
  /* Drop our hold on the engine before the caller hears from us: when the
   * connector is gone this frees it, and that must be over before the
   * caller can go on (and, in vpsctl, exit). */
  g_clear_pointer (&job->shared, shared_unref);
  if (r == NULL)
    g_task_return_error (job->task, error);
  else
    g_task_return_pointer (job->task, r, (GDestroyNotify)conn_clamav_scan_free);
  job_free (job);
}

ConnClamavLibrary *
conn_clamav_library_new (ConnClamavSettings *settings)
{
  ConnClamavLibrary *lib = g_new0 (ConnClamavLibrary, 1);
  Shared *sh = g_atomic_rc_box_new0 (Shared);

  g_mutex_init (&sh->lock);
  sh->settings = conn_clamav_settings_ref (settings);
  sh->last_check_us = g_get_monotonic_time ();
  reload (sh, TRUE);
  lib->shared = sh;
  /* not exclusive: threads are created on demand up to `threads`; a
   * failure to create one later only delays the queue */
  lib->pool = g_thread_pool_new (scan_job, NULL, (gint)settings->threads, FALSE, NULL);
  return lib;
}

void
conn_clamav_library_free (ConnClamavLibrary *lib)
{
  if (lib == NULL)
    return;
  /* queued jobs still run (each holds the shared state); do not wait */
  g_thread_pool_free (lib->pool, FALSE, FALSE);
  shared_unref (lib->shared);
  g_free (lib);
}

void
conn_clamav_library_scan_async (ConnClamavLibrary *lib, GBytes *data, const char *sid,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Job *job = g_new0 (Job, 1);
  g_autoptr (GError) error = NULL;

  g_task_set_source_tag (task, conn_clamav_library_scan_async);
  job->task = task;
  job->shared = shared_ref (lib->shared);
  job->data = g_bytes_ref (data);
  job->sid = g_strdup (sid);
  /* GLib queues the job even when it could not start a new thread: it runs
   * on a thread already there, or the connector's timeout drops the call */
  if (!g_thread_pool_push (lib->pool, job, &error))
    vps_warning (sid, "clamav %s: cannot start a scan thread: %s", lib->shared->settings->name,
                 error->message);
}

ConnClamavScan *
conn_clamav_library_scan_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
