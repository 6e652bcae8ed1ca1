/* SPDX-License-Identifier: MIT
 *
 * conn-clamav.c — connector type `clamav`: scans the message (from the data
 * stage on) for viruses, with libclamav in-process (conn-clamav-engine.c)
 * or through clamd's INSTREAM command (conn-clamav-clamd.c).
 *
 * Keys of [connector NAME] with type = clamav (besides the common type,
 * timeout, on_error, concurrency):
 *   mode            library (default) or clamd
 *   database        mode = library, required: the signature directory
 *                   (.cvd/.cld/.ndb/.hdb ...; relative to the config file)
 *   reload_interval how often the directory is checked for changes (default
 *                   60s; 0 = never); a change rebuilds the engine aside
 *   threads         scan threads (default: the number of CPUs, at most 64)
 *   max_scan_size, max_file_size, max_recursion, max_files, max_scan_time
 *                   libclamav's limits (defaults 100M, 25M, 16, 10000, 120s)
 *   tmpdir          where libclamav unpacks (default: its own, $TMPDIR)
 *   address         mode = clamd, required: unix:PATH or inet:HOST:PORT
 *   on_infected     the connector's verdict for a virus (default continue:
 *                   rules decide on NAME.infected)
 *   on_limits       its verdict when a limit stopped the scan (default
 *                   continue: rules decide on NAME.limits_exceeded)
 *   quarantine      quarantine name when either verdict is quarantine
 *                   (default: NAME)
 *
 * Results: NAME.infected (bool), NAME.name (what matched, "" when nothing),
 * NAME.limits_exceeded (bool: a limit — size, recursion, files, time,
 * clamd's StreamMaxLength — stopped the scan, so the message is NOT known
 * to be clean; name is then Heuristics.Limits.Exceeded.*), NAME.clean
 * (bool: scanned completely, nothing found).  A limit hit is never
 * infected and never clean.  A missing, empty or broken database, a scan
 * failure, clamd down or answering nonsense, or a call before the message
 * is known is an error: the wrapper gives on_error (default tempfail),
 * never "clean".
 */
#include "connectors/clamav/conn-clamav.h"

#include <string.h>

#include "connectors/clamav/conn-clamav-private.h"
#include "vps/listen.h"
#include "vps/log.h"

#define LIMITS_PREFIX "Heuristics.Limits.Exceeded."

G_DEFINE_QUARK (conn - clamav - error - quark, conn_clamav_error)

typedef struct
{
  ConnClamavSettings *settings;
  ConnClamavLibrary *library; /* mode = library */
} ConnClamav;

/* ---- settings and scans --------------------------------------------------- */

static void
settings_clear (gpointer data)
{
  ConnClamavSettings *s = data;

  g_free (s->name);
  g_free (s->database);
  g_free (s->tmpdir);
  g_free (s->address);
  g_free (s->host);
  g_free (s->path);
  g_free (s->quarantine);
}

ConnClamavSettings *
conn_clamav_settings_ref (ConnClamavSettings *settings)
{
  return g_atomic_rc_box_acquire (settings);
}

void
conn_clamav_settings_unref (ConnClamavSettings *settings)
{
  if (settings != NULL)
    g_atomic_rc_box_release_full (settings, settings_clear);
}

void
conn_clamav_scan_free (ConnClamavScan *scan)
{
  if (scan == NULL)
    return;
  g_free (scan->name);
  g_free (scan);
}

ConnClamavScan *
conn_clamav_scan_new_found (const char *name, gsize len, GError **error)
{
  ConnClamavScan *scan;

  if (name == NULL || len == 0 || len > CONN_CLAMAV_MAX_NAME)
    {
      g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_CLAMD,
                   "a detection name of %zu bytes (1..%d expected)", len, CONN_CLAMAV_MAX_NAME);
      return NULL;
    }
  /* printable ASCII without spaces, as every ClamAV name is: the name may
   * end up in a reply text or a header through the rules */
  for (gsize i = 0; i < len; i++)
    if (name[i] <= 0x20 || name[i] >= 0x7f)
      {
        g_set_error (error, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_CLAMD,
                     "a detection name with byte 0x%02x", (guint)(guchar)name[i]);
        return NULL;
      }
  scan = g_new0 (ConnClamavScan, 1);
  scan->name = g_strndup (name, len);
  if (g_str_has_prefix (scan->name, LIMITS_PREFIX))
    scan->limits_exceeded = TRUE;
  else
    scan->infected = TRUE;
  return scan;
}

/* ---- instances ------------------------------------------------------------ */

static void
conn_clamav_free (gpointer data)
{
  ConnClamav *c = data;

  conn_clamav_library_free (c->library);
  conn_clamav_settings_unref (c->settings);
  g_free (c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnClamav, conn_clamav_free)

static const char *const conn_clamav_keys[] = {
  "mode",          "database",      "reload_interval", "threads",       "max_scan_size",
  "max_file_size", "max_recursion", "max_files",       "max_scan_time", "tmpdir",
  "address",       "on_infected",   "on_limits",       "quarantine",    NULL,
};

/* Keys that mean something in one mode only: refused in the other, so a
 * limit set for the wrong mode is not silently ignored. */
static const char *const library_only_keys[] = {
  "database",      "reload_interval", "threads",       "max_scan_size", "max_file_size",
  "max_recursion", "max_files",       "max_scan_time", "tmpdir",        NULL,
};

static gboolean
read_verdict (VpsConfig *cfg, const char *group, const char *key, RulesVerdict *out, GError **error)
{
  const char *s = vps_config_get_raw (cfg, group, key);

  *out = RULES_VERDICT_CONTINUE;
  if (s != NULL && !rules_verdict_from_name (s, out))
    {
      vps_config_error_at (cfg, group, key, error, "unknown verdict '%s'", s);
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_address (VpsConfig *cfg, const char *group, ConnClamavSettings *s, GError **error)
{
  return vps_connector_read_address (
      cfg, group, "required with mode = clamd: unix:/path or inet:HOST:PORT of clamd", &s->address,
      &s->host, &s->port, &s->path, error);
}

static gboolean
read_library (VpsConfig *cfg, const char *group, ConnClamavSettings *s, GError **error)
{
  const char *database = vps_config_get_raw (cfg, group, "database");
  const char *tmpdir = vps_config_get_raw (cfg, group, "tmpdir");
  guint cpus = g_get_num_processors ();
  gint64 v;

  if (database == NULL || *database == '\0')
    {
      vps_config_error_at (cfg, group, "database", error,
                           "required: the directory of the signature database");
      return FALSE;
    }
  /* a missing directory is not a configuration error: it is the runtime
   * error "no database" (on_error) until the directory appears */
  s->database = vps_config_resolve_path (cfg, database);
  if (tmpdir != NULL && *tmpdir != '\0')
    s->tmpdir = vps_config_resolve_path (cfg, tmpdir);
  if (!vps_config_read_size (cfg, group, "max_scan_size", CONN_CLAMAV_DEFAULT_MAX_SCAN_SIZE,
                             &s->max_scan_size, error)
      || !vps_config_read_size (cfg, group, "max_file_size", CONN_CLAMAV_DEFAULT_MAX_FILE_SIZE,
                                &s->max_file_size, error)
      || !vps_config_read_duration_ms (cfg, group, "max_scan_time",
                                       CONN_CLAMAV_DEFAULT_MAX_SCAN_TIME_MS, &s->max_scan_time_ms,
                                       error)
      || !vps_config_read_duration_ms (cfg, group, "reload_interval",
                                       CONN_CLAMAV_DEFAULT_RELOAD_INTERVAL_MS,
                                       &s->reload_interval_ms, error))
    return FALSE;
  /* libclamav takes these as 64-bit, but refuses 0 as "no limit" poorly */
  if (s->max_scan_size == 0 || s->max_file_size == 0 || s->max_scan_time_ms <= 0
      || s->max_scan_time_ms > G_MAXUINT32)
    {
      vps_config_error_at (cfg, group,
                           s->max_scan_size == 0   ? "max_scan_size"
                           : s->max_file_size == 0 ? "max_file_size"
                                                   : "max_scan_time",
                           error, "must be more than 0 (and a time below 49 days)");
      return FALSE;
    }
  if (!vps_config_read_int (cfg, group, "max_recursion", CONN_CLAMAV_DEFAULT_MAX_RECURSION, 1,
                            CONN_CLAMAV_MAX_RECURSION_LIMIT, &v, error))
    return FALSE;
  s->max_recursion = (guint)v;
  if (!vps_config_read_int (cfg, group, "max_files", CONN_CLAMAV_DEFAULT_MAX_FILES, 1,
                            CONN_CLAMAV_MAX_FILES_LIMIT, &v, error))
    return FALSE;
  s->max_files = (guint)v;
  if (!vps_config_read_int (cfg, group, "threads", MIN (MAX (cpus, 1), CONN_CLAMAV_MAX_THREADS), 1,
                            CONN_CLAMAV_MAX_THREADS, &v, error))
    return FALSE;
  s->threads = (guint)v;
  return TRUE;
}

static gpointer
conn_clamav_create (const char *name, VpsConfig *cfg, const char *group, GError **error)
{
  g_autoptr (ConnClamavSettings) s = g_atomic_rc_box_new0 (ConnClamavSettings);
  g_autoptr (ConnClamav) c = NULL;
  const char *mode = vps_config_get_raw (cfg, group, "mode");
  const char *quarantine = vps_config_get_raw (cfg, group, "quarantine");

  s->name = g_strdup (name);
  if (!vps_config_connector_check_keys (cfg, group, conn_clamav_keys, error))
    return NULL;
  if (mode == NULL || strcmp (mode, "library") == 0)
    s->mode = CONN_CLAMAV_MODE_LIBRARY;
  else if (strcmp (mode, "clamd") == 0)
    s->mode = CONN_CLAMAV_MODE_CLAMD;
  else
    {
      vps_config_error_at (cfg, group, "mode", error, "'%s': library or clamd", mode);
      return NULL;
    }
  if (s->mode == CONN_CLAMAV_MODE_CLAMD)
    {
      for (guint i = 0; library_only_keys[i] != NULL; i++)
        if (vps_config_get_raw (cfg, group, library_only_keys[i]) != NULL)
          {
            vps_config_error_at (cfg, group, library_only_keys[i], error,
                                 "only with mode = library (clamd has its own clamd.conf)");
            return NULL;
          }
      if (!read_address (cfg, group, s, error))
        return NULL;
    }
  else
    {
      if (vps_config_get_raw (cfg, group, "address") != NULL)
        {
          vps_config_error_at (cfg, group, "address", error, "only with mode = clamd");
          return NULL;
        }
      if (!read_library (cfg, group, s, error))
        return NULL;
    }
  if (!read_verdict (cfg, group, "on_infected", &s->on_infected, error)
      || !read_verdict (cfg, group, "on_limits", &s->on_limits, error))
    return NULL;
  s->quarantine = g_strdup (quarantine != NULL && *quarantine != '\0' ? quarantine : name);

  c = g_new0 (ConnClamav, 1);
  c->settings = g_steal_pointer (&s);
  if (c->settings->mode == CONN_CLAMAV_MODE_LIBRARY)
    c->library = conn_clamav_library_new (c->settings);
  return g_steal_pointer (&c);
}

/* ---- calls ---------------------------------------------------------------- */

static VpsConnectorResult *
result_from_scan (const ConnClamavSettings *s, const ConnClamavScan *scan, const char *sid)
{
  RulesVerdict verdict = scan->infected          ? s->on_infected
                         : scan->limits_exceeded ? s->on_limits
                                                 : RULES_VERDICT_CONTINUE;
  VpsConnectorResult *r = vps_connector_result_new (verdict);

  vps_connector_result_set_bool (r, "infected", scan->infected);
  vps_connector_result_set_bool (r, "limits_exceeded", scan->limits_exceeded);
  vps_connector_result_set_bool (r, "clean", !scan->infected && !scan->limits_exceeded);
  vps_connector_result_set_string (r, "name", scan->name != NULL ? scan->name : "");
  if (verdict == RULES_VERDICT_QUARANTINE)
    r->quarantine = g_strdup (s->quarantine);
  if (verdict == RULES_VERDICT_REJECT || verdict == RULES_VERDICT_TEMPFAIL)
    {
      g_autofree char *text = scan->infected ? g_strdup_printf ("Virus found: %s", scan->name)
                                             : g_strdup ("Message could not be scanned completely");
      vps_connector_result_set_reply (r, 0, NULL, text);
    }
  if (scan->infected)
    vps_notice (sid, "clamav %s: infected: %s", s->name, scan->name);
  else if (scan->limits_exceeded)
    vps_notice (sid, "clamav %s: not scanned completely: %s", s->name, scan->name);
  return r;
}

typedef struct
{
  ConnClamavSettings *settings;
  VpsSession *session; /* for the log lines' id */
} Call;

static void
call_free (gpointer data)
{
  Call *call = data;

  conn_clamav_settings_unref (call->settings);
  vps_session_unref (call->session);
  g_free (call);
}

static void
scan_done (GObject *source, GAsyncResult *res, gpointer data)
{
  g_autoptr (GTask) task = data;
  Call *call = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (ConnClamavScan) scan = NULL;

  if (call->settings->mode == CONN_CLAMAV_MODE_CLAMD)
    scan = conn_clamav_clamd_scan_finish (res, &error);
  else
    scan = conn_clamav_library_scan_finish (res, &error);
  if (scan == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (
        task, result_from_scan (call->settings, scan, vps_session_get_id (call->session)),
        (GDestroyNotify)vps_connector_result_unref);
}

static void
conn_clamav_call_async (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                        GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  ConnClamav *c = vps_connector_get_data (connector);
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  VpsMessage *msg = vps_txn_get_message (txn);
  VpsSession *session = vps_txn_get_session (txn);
  Call *call;

  g_task_set_source_tag (task, conn_clamav_call_async);
  if (msg == NULL)
    {
      g_task_return_new_error (task, CONN_CLAMAV_ERROR, CONN_CLAMAV_ERROR_NO_MESSAGE,
                               "clamav %s: called at %s, before the message is known",
                               c->settings->name, rules_stage_name (stage));
      g_object_unref (task);
      return;
    }
  call = g_new0 (Call, 1);
  call->settings = conn_clamav_settings_ref (c->settings);
  call->session = vps_session_ref (session);
  g_task_set_task_data (task, call, call_free);
  if (c->settings->mode == CONN_CLAMAV_MODE_CLAMD)
    conn_clamav_clamd_scan_async (c->settings, vps_message_get_raw (msg), cancellable, scan_done,
                                  task);
  else
    conn_clamav_library_scan_async (c->library, vps_message_get_raw (msg),
                                    vps_session_get_id (session), cancellable, scan_done, task);
}

static VpsConnectorResult *
conn_clamav_call_finish (VpsConnector *connector, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const RulesFieldDecl conn_clamav_fields[] = {
  { "infected", RULES_TYPE_BOOL, FALSE },
  { "name", RULES_TYPE_STRING, FALSE },
  { "limits_exceeded", RULES_TYPE_BOOL, FALSE },
  { "clean", RULES_TYPE_BOOL, FALSE },
};

const VpsConnectorClass conn_clamav_class = {
  .type = "clamav",
  .fields = conn_clamav_fields,
  .n_fields = G_N_ELEMENTS (conn_clamav_fields),
  .any_field = FALSE,
  .config_keys = conn_clamav_keys,
  .create = conn_clamav_create,
  .call_async = conn_clamav_call_async,
  .call_finish = conn_clamav_call_finish,
  .free = conn_clamav_free,
};
