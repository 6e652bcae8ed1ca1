/* SPDX-License-Identifier: MIT
 *
 * test-local-mbox.c — mbox delivery: the From_ line, mboxrd quoting, the
 * separator, fcntl and dot-locks against another process and within this
 * one, stale dot-locks, concurrent deliveries, truncation after a real
 * failed write, and what is not a regular file.
 */
#include "tests/mta/local-test-util.h"

/* mbox */

#define FROM_LINE_RE                                                                               \
  "From %s (Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ "     \
  "1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] [0-9]{4}\n"

/* `text` from `*pos` starts with a From_ line for `who`; *pos moves past it. */
static void
assert_from_line (const char *text, gsize *pos, const char *who)
{
  g_autofree char *pattern = g_strdup_printf ("^" FROM_LINE_RE, who);
  g_autoptr (GRegex) re = g_regex_new (pattern, 0, 0, NULL);
  g_autoptr (GMatchInfo) m = NULL;
  int end;

  if (!g_regex_match (re, text + *pos, 0, &m))
    g_test_message ("no From_ line for %s at: %.100s", who, text + *pos);
  g_assert_true (g_match_info_matches (m));
  g_assert_true (g_match_info_fetch_pos (m, 0, NULL, &end));
  *pos += (gsize)end;
}

static void
test_mbox_deliver (void)
{
  static const struct
  {
    const char *sender;
    const char *from;
    const char *return_path;
  } cases[] = {
    { "s@x", "s@x", "<s@x>" },
    { "", "MAILER-DAEMON", "<>" },
    { NULL, "MAILER-DAEMON", "<>" },
    /* blanks would split the From_ line; the header keeps them */
    { "\"a b\"@x", "\"a_b\"@x", "<\"a b\"@x>" },
  };
  g_autofree char *path = test_path ("mail", "sub", "u", NULL);
  g_autofree char *lock = g_strconcat (path, ".lock", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  g_autofree char *text = NULL;
  gsize pos = 0;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_true (vps_local_mbox_deliver (path, cases[i].sender, "u@d", msg, &error));
      g_assert_no_error (error);
    }
  g_assert_cmpuint (file_mode (path), ==, 0600);
  g_assert_false (g_file_test (lock, G_FILE_TEST_EXISTS));
  text = slurp (path);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GRegex) quote = g_regex_new ("\"", 0, 0, NULL);
      g_autofree char *body = g_strdup_printf ("Return-Path: %s\nDelivered-To: u@d\n"
                                               "Subject: hi\nFrom: x@y\n\nline1\nbare\rcr\n"
                                               ">From here\nlast\n\n",
                                               cases[i].return_path);

      assert_from_line (text, &pos, cases[i].from);
      g_assert_true (strncmp (text + pos, body, strlen (body)) == 0);
      pos += strlen (body);
    }
  g_assert_cmpuint (pos, ==, strlen (text));
}

/* mboxrd: each /^>*From / line gets one more ">", wherever it is. */
static void
test_mbox_quoting (void)
{
  static const struct
  {
    const char *in;
    const char *out;
  } lines[] = {
    { "From me", ">From me" }, /* the very first line of the message */
    { "Subject: s", "Subject: s" },
    { "", "" },
    { "From the desk", ">From the desk" }, /* the first body line */
    { ">From x", ">>From x" },
    { ">>From y", ">>>From y" },
    { "From: h", "From: h" },
    { " From x", " From x" },
    { "from x", "from x" },
    { "Fromage", "Fromage" },
    { "From", "From" },
    { ">", ">" },
    { ">From", ">From" },
    { "x From y", "x From y" },
    { "From\rx", "From\rx" },
    { "From ", ">From " },
  };
  g_autoptr (GError) error = NULL;
  g_autofree char *path = test_path ("mbox", NULL);
  g_autoptr (GString) in = g_string_new (NULL);
  g_autoptr (GString) want = g_string_new ("Return-Path: <s@x>\nDelivered-To: u@d\n");
  g_autoptr (GBytes) msg = NULL;
  g_autofree char *text = NULL;
  gsize pos = 0;

  for (guint i = 0; i < G_N_ELEMENTS (lines); i++)
    {
      g_string_append_printf (in, "%s\r\n", lines[i].in);
      g_string_append_printf (want, "%s\n", lines[i].out);
    }
  g_string_append (want, "\n");
  msg = g_bytes_new (in->str, in->len);
  g_assert_true (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
  g_assert_no_error (error);
  text = slurp (path);
  assert_from_line (text, &pos, "s@x");
  g_assert_cmpstr (text + pos, ==, want->str);
}

/* A mailbox left without the empty line after its last message gets it
 * before our From_ line. */
static void
test_mbox_separator (void)
{
  static const struct
  {
    const char *old;
    const char *want;
  } cases[] = {
    { "", "" },
    { "From a Thu Nov 28 21:28:00 2024\nX: y\n\nbody",
      "From a Thu Nov 28 21:28:00 2024\nX: y\n\nbody\n\n" },
    { "From a Thu Nov 28 21:28:00 2024\nX: y\n\nbody\n",
      "From a Thu Nov 28 21:28:00 2024\nX: y\n\nbody\n\n" },
    { "From a Thu Nov 28 21:28:00 2024\nX: y\n\nbody\n\n",
      "From a Thu Nov 28 21:28:00 2024\nX: y\n\nbody\n\n" },
    { "\n", "\n\n" },
    { "x", "x\n\n" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *name = g_strdup_printf ("mbox%u", i);
      g_autofree char *path = test_path (name, NULL);
      g_autoptr (GBytes) msg = bytes ("Subject: s\r\n\r\nb\r\n");
      g_autofree char *text = NULL;
      gsize pos = strlen (cases[i].want);

      g_assert_true (g_file_set_contents_full (path, cases[i].old, -1, G_FILE_SET_CONTENTS_NONE,
                                               0600, &error));
      g_assert_true (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
      g_assert_no_error (error);
      text = slurp (path);
      g_assert_true (strncmp (text, cases[i].want, pos) == 0);
      assert_from_line (text, &pos, "s@x");
      g_assert_cmpstr (text + pos, ==,
                       "Return-Path: <s@x>\nDelivered-To: u@d\nSubject: s\n\nb\n\n");
    }
}

/* A child process holding a classic fcntl(2) write lock on `path` (as a
 * mail reader does) for `hold_ms`, or until release_lock() when < 0. */
typedef struct
{
  pid_t pid;
  int release_fd;
} LockHolder;

static LockHolder
hold_lock (const char *path, int hold_ms)
{
  LockHolder h;
  int ready[2], release[2];
  char c;

  g_assert_cmpint (pipe (ready), ==, 0);
  g_assert_cmpint (pipe (release), ==, 0);
  h.pid = fork ();
  g_assert_cmpint (h.pid, >=, 0);
  if (h.pid == 0)
    {
      /* only async-signal-safe calls after fork() */
      struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
      int fd = open (path, O_RDWR | O_CREAT, 0600);

      /* our copy of the write end would keep read() from seeing EOF */
      close (release[1]);
      close (ready[0]);
      if (fd < 0 || fcntl (fd, F_SETLKW, &fl) != 0)
        _exit (1);
      if (write (ready[1], "r", 1) != 1)
        _exit (1);
      if (hold_ms >= 0)
        {
          struct timespec ts = { hold_ms / 1000, (hold_ms % 1000) * 1000000L };

          nanosleep (&ts, NULL);
        }
      else if (read (release[0], &c, 1) < 0)
        _exit (1);
      _exit (0);
    }
  close (ready[1]);
  close (release[0]);
  g_assert_cmpint (read (ready[0], &c, 1), ==, 1);
  close (ready[0]);
  h.release_fd = release[1];
  return h;
}

static void
release_lock (LockHolder *h)
{
  int status;

  close (h->release_fd);
  g_assert_cmpint (waitpid (h->pid, &status, 0), ==, h->pid);
  g_assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

static void
test_mbox_lock_timeout (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = test_path ("mbox", NULL);
  g_autofree char *lock = g_strconcat (path, ".lock", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  LockHolder h = hold_lock (path, -1);
  gint64 start = g_get_monotonic_time ();
  gint64 took;

  vps_local_set_lock_timeout (1);
  g_assert_false (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
  took = g_get_monotonic_time () - start;
  g_assert_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_LOCKED);
  g_assert_false (vps_local_error_is_permanent (error));
  g_assert_cmpint (took, >=, G_USEC_PER_SEC);
  g_assert_cmpint (took, <, 5 * G_USEC_PER_SEC);
  g_assert_cmpint (file_size (path), ==, 0);
  /* our dot-lock is gone with the failure */
  g_assert_false (g_file_test (lock, G_FILE_TEST_EXISTS));
  release_lock (&h);

  g_clear_error (&error);
  g_assert_true (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
  g_assert_no_error (error);
  g_assert_cmpint (file_size (path), >, 0);
  vps_local_set_lock_timeout (VPS_LOCAL_LOCK_TIMEOUT);
}

/* A lock released before the deadline: the delivery waits, then succeeds. */
static void
test_mbox_lock_wait (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = test_path ("mbox", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  LockHolder h = hold_lock (path, 1200);
  gint64 start = g_get_monotonic_time ();

  vps_local_set_lock_timeout (10);
  g_assert_true (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, G_USEC_PER_SEC);
  g_assert_cmpint (file_size (path), >, 0);
  release_lock (&h);
  vps_local_set_lock_timeout (VPS_LOCAL_LOCK_TIMEOUT);
}

/* A lock held elsewhere in this process (another thread, a classic fcntl
 * lock) blocks us: open file description locks conflict even within one
 * process, where classic locks would be silently shared. */
static void
test_mbox_lock_same_process (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = test_path ("mbox", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (fcntl (fd, F_SETLK, &fl), ==, 0);
  vps_local_set_lock_timeout (1);
  g_assert_false (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
  g_assert_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_LOCKED);
  close (fd);
  g_clear_error (&error);
  g_assert_true (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
  g_assert_no_error (error);
  vps_local_set_lock_timeout (VPS_LOCAL_LOCK_TIMEOUT);
}

static void
set_age (const char *path, time_t age)
{
  struct utimbuf t = { .actime = time (NULL) - age, .modtime = time (NULL) - age };

  g_assert_cmpint (utime (path, &t), ==, 0);
}

/* Someone else's fresh dot-lock: wait, give up, and leave it alone. */
static void
test_mbox_dotlock_fresh (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = test_path ("mbox", NULL);
  g_autofree char *lock = g_strconcat (path, ".lock", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);

  g_assert_true (g_file_set_contents (lock, "1\n", -1, NULL));
  set_age (lock, VPS_LOCAL_DOTLOCK_STALE - 60);
  vps_local_set_lock_timeout (1);
  g_assert_false (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
  g_assert_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_LOCKED);
  g_assert_true (g_file_test (lock, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  vps_local_set_lock_timeout (VPS_LOCAL_LOCK_TIMEOUT);
}

static void
test_mbox_dotlock_stale (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = test_path ("mbox", NULL);
  g_autofree char *lock = g_strconcat (path, ".lock", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  g_autoptr (GString) log = g_string_new (NULL);

  g_assert_true (g_file_set_contents (lock, "1\n", -1, NULL));
  set_age (lock, VPS_LOCAL_DOTLOCK_STALE + 60);
  vps_local_set_lock_timeout (1);
  vps_log_capture (log);
  g_assert_true (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
  vps_log_capture (NULL);
  g_assert_no_error (error);
  g_assert_false (g_file_test (lock, G_FILE_TEST_EXISTS));
  g_assert_cmpint (file_size (path), >, 0);
  g_assert_nonnull (strstr (log->str, "stale lock"));
  vps_local_set_lock_timeout (VPS_LOCAL_LOCK_TIMEOUT);
}

/* Threads of one process are serialised too (the dot-lock and open file
 * description locks): every message arrives whole. */
#define MBOX_THREADS 4
#define MBOX_PER_THREAD 50

static gpointer
mbox_thread (gpointer data)
{
  g_autoptr (GBytes) msg = big_message (20000);

  for (guint i = 0; i < MBOX_PER_THREAD; i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_true (vps_local_mbox_deliver (data, "s@x", "u@d", msg, &error));
      g_assert_no_error (error);
    }
  return NULL;
}

static void
test_mbox_threads (void)
{
  g_autofree char *path = test_path ("mbox", NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) parts = NULL;
  GThread *threads[MBOX_THREADS];

  for (guint i = 0; i < MBOX_THREADS; i++)
    threads[i] = g_thread_new ("mbox", mbox_thread, path);
  for (guint i = 0; i < MBOX_THREADS; i++)
    g_thread_join (threads[i]);
  text = slurp (path);
  g_assert_true (g_str_has_prefix (text, "From s@x "));
  parts = g_strsplit (text + 1, "\n\nFrom s@x ", -1);
  g_assert_cmpuint (g_strv_length (parts), ==, MBOX_THREADS * MBOX_PER_THREAD);
  for (guint i = 1; parts[i] != NULL; i++)
    g_assert_nonnull (
        strstr (parts[i], "\nReturn-Path: <s@x>\nDelivered-To: u@d\nSubject: big\n\n"));
}

/* A write that fails in the middle (EFBIG) leaves the mailbox as it was. */
static void
test_mbox_truncate (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *path = test_path ("mbox", NULL);
      g_autofree char *lock = g_strconcat (path, ".lock", NULL);
      g_autoptr (GBytes) msg = bytes (MESSAGE);
      g_autoptr (GBytes) big = big_message (1024 * 1024);
      g_autofree char *before = NULL;
      g_autofree char *after = NULL;
      goffset size;

      g_assert_true (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
      g_assert_no_error (error);
      before = slurp (path);
      size = file_size (path);
      /* room for part of the big message, and for more than one buffer */
      limit_file_size ((rlim_t)size + 200 * 1000);
      g_assert_false (vps_local_mbox_deliver (path, "s@x", "u@d", big, &error));
      g_assert_nonnull (error);
      g_assert_true (error->domain == G_IO_ERROR);
      g_assert_false (vps_local_error_is_permanent (error));
      g_assert_cmpint (file_size (path), ==, size);
      after = slurp (path);
      g_assert_cmpstr (after, ==, before);
      g_assert_false (g_file_test (lock, G_FILE_TEST_EXISTS));
      /* and the next (small) message goes in */
      g_clear_error (&error);
      g_assert_true (vps_local_mbox_deliver (path, "s@x", "u@d", msg, &error));
      g_assert_no_error (error);
      g_assert_cmpint (file_size (path), ==, 2 * size);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* Not a plain file of its own: a symlink, a FIFO, a hard link. */
static void
test_mbox_not_regular (void)
{
  g_autofree char *target = test_path ("target", NULL);
  g_autofree char *link_path = test_path ("symlink", NULL);
  g_autofree char *fifo = test_path ("fifo", NULL);
  g_autofree char *hard = test_path ("hardlink", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  const char *paths[] = { link_path, fifo, hard };

  g_assert_true (g_file_set_contents (target, "", 0, NULL));
  g_assert_cmpint (symlink (target, link_path), ==, 0);
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  g_assert_cmpint (link (target, hard), ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (paths); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *lock = g_strconcat (paths[i], ".lock", NULL);

      g_assert_false (vps_local_mbox_deliver (paths[i], "s@x", "u@d", msg, &error));
      g_assert_nonnull (error);
      g_assert_true (error->domain == G_IO_ERROR);
      g_assert_false (g_file_test (lock, G_FILE_TEST_EXISTS));
    }
  g_assert_cmpint (file_size (target), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  g_test_add_func ("/mta/local/mbox/deliver", test_mbox_deliver);
  g_test_add_func ("/mta/local/mbox/quoting", test_mbox_quoting);
  g_test_add_func ("/mta/local/mbox/separator", test_mbox_separator);
  g_test_add_func ("/mta/local/mbox/lock-timeout", test_mbox_lock_timeout);
  g_test_add_func ("/mta/local/mbox/lock-wait", test_mbox_lock_wait);
  g_test_add_func ("/mta/local/mbox/lock-same-process", test_mbox_lock_same_process);
  g_test_add_func ("/mta/local/mbox/dotlock-fresh", test_mbox_dotlock_fresh);
  g_test_add_func ("/mta/local/mbox/dotlock-stale", test_mbox_dotlock_stale);
  g_test_add_func ("/mta/local/mbox/threads", test_mbox_threads);
  g_test_add_func ("/mta/local/mbox/truncate-on-failure", test_mbox_truncate);
  g_test_add_func ("/mta/local/mbox/not-regular", test_mbox_not_regular);
  return g_test_run ();
}
