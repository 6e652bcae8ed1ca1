/* SPDX-License-Identifier: MIT
 *
 * test-log.c — the vps log writer: line format, level filter, id, control
 * characters, rate-limited lines, threads, and the real stderr format (in a
 * subprocess).
 */
#include "vps/log.h"

#include <string.h>

typedef struct
{
  GString *sink;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->sink = g_string_new (NULL);
  g_assert_true (vps_log_setup (VPS_LOG_TARGET_STDERR, G_LOG_LEVEL_INFO, "vpsd", &error));
  g_assert_no_error (error);
  vps_log_capture (f->sink);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  vps_log_capture (NULL);
  g_string_free (f->sink, TRUE);
}

static void
test_format (Fixture *f, gconstpointer data)
{
  vps_info ("S1", "hello %d", 5);
  vps_warning (NULL, "no id");
  vps_notice ("Q42", "queued");
  vps_log (G_LOG_LEVEL_INFO, "", "empty id");
  g_assert_cmpstr (f->sink->str, ==,
                   "info id=S1 hello 5\n"
                   "warning no id\n"
                   "notice id=Q42 queued\n"
                   "info empty id\n");
}

static void
test_levels (Fixture *f, gconstpointer data)
{
  static const struct
  {
    const char *level;
    const char *expect;
  } cases[] = {
    { "debug", "debug d\ninfo i\nnotice n\nwarning w\ncritical e\n" },
    { "info", "info i\nnotice n\nwarning w\ncritical e\n" },
    { "notice", "notice n\nwarning w\ncritical e\n" },
    { "warning", "warning w\ncritical e\n" },
    { "error", "critical e\n" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      GLogLevelFlags level;

      g_assert_true (vps_log_level_from_name (cases[i].level, &level));
      g_assert_true (vps_log_setup (VPS_LOG_TARGET_STDERR, level, "vpsd", NULL));
      g_string_truncate (f->sink, 0);
      vps_debug (NULL, "d");
      vps_info (NULL, "i");
      vps_notice (NULL, "n");
      vps_warning (NULL, "w");
      vps_log (G_LOG_LEVEL_CRITICAL, NULL, "e"); /* must not abort (fatal-criticals) */
      g_assert_cmpstr (f->sink->str, ==, cases[i].expect);
      g_assert_cmpint (vps_log_enabled (G_LOG_LEVEL_DEBUG), ==, i == 0);
      g_assert_true (vps_log_enabled (G_LOG_LEVEL_CRITICAL));
    }
  g_string_truncate (f->sink, 0);
  vps_log (G_LOG_LEVEL_ERROR, "S9", "bad"); /* logged, not fatal */
  g_assert_cmpstr (f->sink->str, ==, "error id=S9 bad\n");
}

static void
test_names (void)
{
  GLogLevelFlags level;
  VpsLogTarget target;

  g_assert_true (vps_log_level_from_name ("notice", &level));
  g_assert_cmpint (level, ==, G_LOG_LEVEL_MESSAGE);
  g_assert_false (vps_log_level_from_name ("loud", &level));
  g_assert_false (vps_log_level_from_name ("INFO", &level));
  g_assert_true (vps_log_target_from_name ("syslog", &target));
  g_assert_cmpint (target, ==, VPS_LOG_TARGET_SYSLOG);
  g_assert_true (vps_log_target_from_name ("journal", &target));
  g_assert_cmpint (target, ==, VPS_LOG_TARGET_JOURNAL);
  g_assert_false (vps_log_target_from_name ("file", &target));
}

static void
test_control_chars (Fixture *f, gconstpointer data)
{
  vps_info ("S\n1", "a\r\nQUIT%cb\x1b[31m", 0x7f);
  g_assert_cmpstr (f->sink->str, ==, "info id=S\\x0a1 a\\x0d\\x0aQUIT\\x7fb\\x1b[31m\n");
}

static void
test_long_message (Fixture *f, gconstpointer data)
{
  g_autofree char *big = g_strnfill (VPS_LOG_MAX_MESSAGE * 2, 'x');

  vps_info (NULL, "%s", big);
  g_assert_cmpuint (f->sink->len, ==, strlen ("info ") + VPS_LOG_MAX_MESSAGE + 3 + 1);
  g_assert_true (g_str_has_suffix (f->sink->str, "x...\n"));
}

static void
test_other_domains (Fixture *f, gconstpointer data)
{
  g_log ("Other", G_LOG_LEVEL_MESSAGE, "from %s", "elsewhere");
  g_assert_cmpstr (f->sink->str, ==, "notice from elsewhere\n");
}

static void
test_once (Fixture *f, gconstpointer data)
{
  g_assert_true (vps_log_once ("k1", 60, G_LOG_LEVEL_WARNING, "S1", "first %d", 1));
  g_assert_false (vps_log_once ("k1", 60, G_LOG_LEVEL_WARNING, "S2", "second"));
  g_assert_true (vps_log_once ("k2", 60, G_LOG_LEVEL_WARNING, NULL, "other key"));
  /* interval 0: every call logs */
  g_assert_true (vps_log_once ("k3", 0, G_LOG_LEVEL_WARNING, NULL, "a"));
  g_assert_true (vps_log_once ("k3", 0, G_LOG_LEVEL_WARNING, NULL, "b"));
  /* a disabled level neither logs nor consumes the key */
  g_assert_false (vps_log_once ("k4", 60, G_LOG_LEVEL_DEBUG, NULL, "dropped"));
  g_assert_cmpstr (f->sink->str, ==,
                   "warning id=S1 first 1\nwarning other key\nwarning a\nwarning b\n");
  /* many distinct keys stay bounded and still log */
  for (guint i = 0; i < VPS_LOG_ONCE_MAX_KEYS * 2; i++)
    {
      g_autofree char *key = g_strdup_printf ("many-%u", i);

      g_assert_true (vps_log_once (key, 60, G_LOG_LEVEL_INFO, NULL, "m"));
    }
}

#define N_THREADS 4
#define N_LINES 2000

static gpointer
log_thread (gpointer data)
{
  for (guint i = 0; i < N_LINES; i++)
    vps_info ("T", "thread %u line %u", GPOINTER_TO_UINT (data), i);
  return NULL;
}

static void
test_threads (Fixture *f, gconstpointer data)
{
  GThread *threads[N_THREADS];
  g_auto (GStrv) lines = NULL;

  for (guint i = 0; i < N_THREADS; i++)
    threads[i] = g_thread_new ("log", log_thread, GUINT_TO_POINTER (i));
  for (guint i = 0; i < N_THREADS; i++)
    g_thread_join (threads[i]);
  lines = g_strsplit (f->sink->str, "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, N_THREADS * N_LINES + 1);
  for (guint i = 0; i < N_THREADS * N_LINES; i++)
    g_assert_true (g_str_has_prefix (lines[i], "info id=T thread "));
}

/* The real target: run in a subprocess and match its stderr. */
static void
test_stderr_format (void)
{
  if (g_test_subprocess ())
    {
      g_assert_true (vps_log_setup (VPS_LOG_TARGET_STDERR, G_LOG_LEVEL_INFO, "vpsd", NULL));
      vps_info ("S1", "hello");
      vps_debug ("S1", "hidden");
      vps_warning (NULL, "two\nlines");
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  /* "?" written as STAMP pieces: "??-" would be a trigraph. */
#define D2                                                                                         \
  "?"                                                                                              \
  "?"
#define STAMP D2 D2 "-" D2 "-" D2 "T" D2 ":" D2 ":" D2 "." D2 "?Z"
  g_test_trap_assert_stderr (STAMP " vpsd[*] info id=S1 hello\n" STAMP
                                   " vpsd[*] warning two\\x0alines\n");
  g_test_trap_assert_stderr_unmatched ("*hidden*");
}

static void
test_targets (void)
{
  g_autoptr (GError) error = NULL;
  gboolean have_journal = g_file_test ("/run/systemd/journal/socket", G_FILE_TEST_EXISTS);

  if (g_test_subprocess ())
    {
      /* syslog: openlog() cannot fail; the call must succeed and not write to stderr */
      g_assert_true (vps_log_setup (VPS_LOG_TARGET_SYSLOG, G_LOG_LEVEL_INFO, "vps-test", NULL));
      vps_info ("S1", "to syslog");
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr_unmatched ("*to syslog*");

  /* journal: refused with a clear error when journald is not there */
  if (have_journal)
    g_assert_true (vps_log_setup (VPS_LOG_TARGET_JOURNAL, G_LOG_LEVEL_INFO, "t", &error));
  else
    {
      g_assert_false (vps_log_setup (VPS_LOG_TARGET_JOURNAL, G_LOG_LEVEL_INFO, "t", &error));
      g_assert_error (error, VPS_LOG_ERROR, VPS_LOG_ERROR_UNAVAILABLE);
    }
  g_assert_true (vps_log_setup (VPS_LOG_TARGET_STDERR, G_LOG_LEVEL_INFO, "t", NULL));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/vps/log/capture/format", test_format);
  ADD ("/vps/log/capture/levels", test_levels);
  ADD ("/vps/log/capture/control-chars", test_control_chars);
  ADD ("/vps/log/capture/long-message", test_long_message);
  ADD ("/vps/log/capture/other-domains", test_other_domains);
  ADD ("/vps/log/capture/once", test_once);
  ADD ("/vps/log/capture/threads", test_threads);
#undef ADD
  g_test_add_func ("/vps/log/names", test_names);
  g_test_add_func ("/vps/log/stderr-format", test_stderr_format);
  g_test_add_func ("/vps/log/targets", test_targets);
  return g_test_run ();
}
