/* SPDX-License-Identifier: MIT
 *
 * log.c — the structured-log writer of every vps program (see log.h).
 *
 * One GLogWriterFunc, installed once per process (GLib refuses a second
 * one), reads the current target and level from process-wide state that
 * vps_log_setup() may change at any time (reload).  The level threshold is
 * an atomic so vps_log_enabled() costs no lock; the output path takes one
 * mutex so lines from several threads never interleave and the capture
 * sink of the tests sees whole lines.
 */
#include "vps/log.h"

#include <errno.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - log - error - quark, vps_log_error)

#define VPS_LOG_DOMAIN "vps"
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

typedef struct
{
  gint64 last_us;
  gint64 interval_us;
} OnceEntry;

static GMutex log_lock;
static VpsLogTarget log_target = VPS_LOG_TARGET_STDERR; /* under log_lock */
static char *log_program;                               /* under log_lock */
static char *syslog_ident;                              /* openlog() keeps the pointer */
static GString *log_sink;                               /* under log_lock */
static GHashTable *once_keys;                           /* under log_lock */
static gint log_threshold = 4;                          /* atomic; rank of "info" */

static const struct
{
  const char *name;
  GLogLevelFlags level;
} level_names[] = {
  { "debug", G_LOG_LEVEL_DEBUG },    { "info", G_LOG_LEVEL_INFO },
  { "notice", G_LOG_LEVEL_MESSAGE }, { "warning", G_LOG_LEVEL_WARNING },
  { "error", G_LOG_LEVEL_CRITICAL },
};

/* Lower is more severe; a line is written when rank <= threshold. */
static gint
level_rank (GLogLevelFlags level)
{
  if (level & G_LOG_LEVEL_ERROR)
    return 0;
  if (level & G_LOG_LEVEL_CRITICAL)
    return 1;
  if (level & G_LOG_LEVEL_WARNING)
    return 2;
  if (level & G_LOG_LEVEL_MESSAGE)
    return 3;
  if (level & G_LOG_LEVEL_DEBUG)
    return 5;
  return 4;
}

static const char *
level_word (GLogLevelFlags level)
{
  static const char *const words[] = { "error", "critical", "warning", "notice", "info", "debug" };

  return words[level_rank (level)];
}

static int
level_syslog (GLogLevelFlags level)
{
  static const int prio[] = { LOG_ERR, LOG_CRIT, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };

  return prio[level_rank (level)];
}

gboolean
vps_log_level_from_name (const char *name, GLogLevelFlags *out)
{
  g_return_val_if_fail (name != NULL && out != NULL, FALSE);
  for (gsize i = 0; i < G_N_ELEMENTS (level_names); i++)
    if (strcmp (level_names[i].name, name) == 0)
      {
        *out = level_names[i].level;
        return TRUE;
      }
  return FALSE;
}

gboolean
vps_log_target_from_name (const char *name, VpsLogTarget *out)
{
  static const char *const names[] = { "stderr", "syslog", "journal" };

  g_return_val_if_fail (name != NULL && out != NULL, FALSE);
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    if (strcmp (names[i], name) == 0)
      {
        *out = (VpsLogTarget)i;
        return TRUE;
      }
  return FALSE;
}

gboolean
vps_log_enabled (GLogLevelFlags level)
{
  return level_rank (level) <= g_atomic_int_get (&log_threshold);
}

/* Appends s, writing control bytes as \xNN: peer data must not be able to
 * forge a second log line (CR/LF) or hide text (NUL, ESC).  Cut at
 * VPS_LOG_MAX_MESSAGE bytes. */
static void
append_clean (GString *out, const char *s, gssize len)
{
  gsize n = len < 0 ? strlen (s) : (gsize)len;
  gboolean cut = n > VPS_LOG_MAX_MESSAGE;

  if (cut)
    n = VPS_LOG_MAX_MESSAGE;
  for (gsize i = 0; i < n; i++)
    {
      guchar c = (guchar)s[i];

      if (c < 0x20 || c == 0x7f)
        g_string_append_printf (out, "\\x%02x", c);
      else
        g_string_append_c (out, (char)c);
    }
  if (cut)
    g_string_append (out, "...");
}

static void
write_all (int fd, const char *buf, gsize len)
{
  while (len > 0)
    {
      gssize n = write (fd, buf, len);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return; /* nowhere left to report it */
      buf += n;
      len -= (gsize)n;
    }
}

static void
write_stderr (GLogLevelFlags level, const char *id_and_msg)
{
  g_autoptr (GString) line = g_string_sized_new (128);
  gint64 now = g_get_real_time ();
  time_t secs = (time_t)(now / G_USEC_PER_SEC);
  struct tm tm;
  char stamp[32];

  gmtime_r (&secs, &tm);
  strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  g_string_append_printf (line, "%s.%03dZ %s[%d] %s %s\n", stamp,
                          (int)(now % G_USEC_PER_SEC / 1000),
                          log_program != NULL ? log_program : g_get_prgname (), (int)getpid (),
                          level_word (level), id_and_msg);
  write_all (STDERR_FILENO, line->str, line->len);
}

static GLogWriterOutput
vps_log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  const char *message = NULL, *id = NULL, *domain = NULL;
  gssize message_len = -1, id_len = -1;
  g_autoptr (GString) text = NULL;

  for (gsize i = 0; i < n_fields; i++)
    {
      if (strcmp (fields[i].key, "MESSAGE") == 0)
        message = fields[i].value, message_len = fields[i].length;
      else if (strcmp (fields[i].key, "VPS_ID") == 0)
        id = fields[i].value, id_len = fields[i].length;
      else if (strcmp (fields[i].key, "GLIB_DOMAIN") == 0 && fields[i].length < 0)
        domain = fields[i].value;
    }
  if (!vps_log_enabled (level))
    return G_LOG_WRITER_HANDLED;
  /* Other libraries' chatter follows G_MESSAGES_DEBUG, as GLib's writer does. */
  if ((domain == NULL || strcmp (domain, VPS_LOG_DOMAIN) != 0)
      && g_log_writer_default_would_drop (level, domain))
    return G_LOG_WRITER_HANDLED;

  text = g_string_sized_new (128);
  if (id != NULL && (id_len < 0 ? id[0] != '\0' : id_len > 0))
    {
      g_string_append (text, "id=");
      append_clean (text, id, id_len);
      g_string_append_c (text, ' ');
    }
  if (message != NULL)
    append_clean (text, message, message_len);

  g_mutex_lock (&log_lock);
  if (log_sink != NULL)
    g_string_append_printf (log_sink, "%s %s\n", level_word (level), text->str);
  else if (log_target == VPS_LOG_TARGET_SYSLOG)
    syslog (level_syslog (level), "%s", text->str);
  else if (log_target == VPS_LOG_TARGET_JOURNAL
           && g_log_writer_journald (level, fields, n_fields, user_data) == G_LOG_WRITER_HANDLED)
    ;
  else
    write_stderr (level, text->str);
  g_mutex_unlock (&log_lock);
  return G_LOG_WRITER_HANDLED;
}

static void
ensure_writer (void)
{
  static gsize once = 0;

  if (g_once_init_enter (&once))
    {
      g_log_set_writer_func (vps_log_writer, NULL, NULL);
      g_once_init_leave (&once, 1);
    }
}

gboolean
vps_log_setup (VpsLogTarget target, GLogLevelFlags level, const char *program, GError **error)
{
  g_return_val_if_fail (program != NULL, FALSE);

  if (target > VPS_LOG_TARGET_JOURNAL)
    {
      g_set_error (error, VPS_LOG_ERROR, VPS_LOG_ERROR_INVALID, "unknown log target %d",
                   (int)target);
      return FALSE;
    }
  if (target == VPS_LOG_TARGET_JOURNAL && !g_file_test (JOURNAL_SOCKET, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, VPS_LOG_ERROR, VPS_LOG_ERROR_UNAVAILABLE,
                   "log target journal: %s not found (is systemd-journald running?)",
                   JOURNAL_SOCKET);
      return FALSE;
    }
  ensure_writer ();
  g_mutex_lock (&log_lock);
  if (target == VPS_LOG_TARGET_SYSLOG)
    {
      /* openlog() keeps the ident pointer: close before freeing the old one. */
      closelog ();
      g_free (syslog_ident);
      syslog_ident = g_strdup (program);
      openlog (syslog_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
    }
  g_free (log_program);
  log_program = g_strdup (program);
  log_target = target;
  g_atomic_int_set (&log_threshold, level_rank (level));
  g_mutex_unlock (&log_lock);
  return TRUE;
}

void
vps_log_capture (GString *sink)
{
  ensure_writer ();
  g_mutex_lock (&log_lock);
  log_sink = sink;
  g_mutex_unlock (&log_lock);
}

static void
log_valist (GLogLevelFlags level, const char *id, const char *fmt, va_list ap)
{
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  GLogField fields[4] = {
    { "GLIB_DOMAIN", VPS_LOG_DOMAIN, -1 },
    { "MESSAGE", msg, -1 },
    { "PRIORITY", NULL, -1 },
    { "VPS_ID", id, -1 },
  };
  char prio[2] = { (char)('0' + level_syslog (level)), '\0' };

  fields[2].value = prio;
  ensure_writer ();
  /* GLib aborts on ERROR (and CRITICAL under fatal-criticals) after
   * writing; a vps error line reports a condition and must not kill the
   * daemon, so those go straight to the writer. */
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    vps_log_writer (level, fields, id != NULL ? 4 : 3, NULL);
  else
    g_log_structured_array (level, fields, id != NULL ? 4 : 3);
}

void
vps_log (GLogLevelFlags level, const char *id, const char *fmt, ...)
{
  va_list ap;

  if (!vps_log_enabled (level))
    return;
  va_start (ap, fmt);
  log_valist (level, id, fmt, ap);
  va_end (ap);
}

static gboolean
once_expired (gpointer key, gpointer value, gpointer user_data)
{
  const OnceEntry *e = value;

  return *(const gint64 *)user_data - e->last_us >= e->interval_us;
}

gboolean
vps_log_once (const char *key, guint interval_s, GLogLevelFlags level, const char *id,
              const char *fmt, ...)
{
  gint64 now = g_get_monotonic_time ();
  OnceEntry *e;
  va_list ap;

  g_return_val_if_fail (key != NULL, FALSE);
  if (!vps_log_enabled (level))
    return FALSE;
  g_mutex_lock (&log_lock);
  if (once_keys == NULL)
    once_keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  e = g_hash_table_lookup (once_keys, key);
  if (e != NULL && now - e->last_us < e->interval_us)
    {
      g_mutex_unlock (&log_lock);
      return FALSE;
    }
  if (e == NULL)
    {
      /* Bounded: keys may come from peer data (a connector name, a rule). */
      if (g_hash_table_size (once_keys) >= VPS_LOG_ONCE_MAX_KEYS)
        g_hash_table_foreach_remove (once_keys, once_expired, &now);
      if (g_hash_table_size (once_keys) >= VPS_LOG_ONCE_MAX_KEYS)
        g_hash_table_remove_all (once_keys);
      e = g_new0 (OnceEntry, 1);
      g_hash_table_insert (once_keys, g_strdup (key), e);
    }
  e->last_us = now;
  e->interval_us = (gint64)interval_s * G_USEC_PER_SEC;
  g_mutex_unlock (&log_lock);

  va_start (ap, fmt);
  log_valist (level, id, fmt, ap);
  va_end (ap);
  return TRUE;
}
