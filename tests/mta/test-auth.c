/* SPDX-License-Identifier: MIT
 *
 * test-auth.c — mta/auth: the password file with hashes made here by
 * libxcrypt (crypt_gensalt + crypt_r, as mkpasswd does) — right and wrong
 * passwords, unknown users, comments and blank lines, one case per bad-line
 * branch with its FILE:LINE message, reloads on change (mtime bumped into
 * the future instead of sleeping), a failed reload keeping the old contents
 * and logging once, checks racing reloads, and the async check completing
 * on the caller's main context.
 */
#include "mta/auth.h"

#include "vps/log.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>
#include <utime.h>

static char *tmp_dir;

/* A crypt(3) hash of `password` with `prefix`'s method ("$y$", "$6$"). */
static char *
make_hash (const char *prefix, const char *password)
{
  g_autofree struct crypt_data *data = g_new0 (struct crypt_data, 1);
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  const char *out;

  g_assert_nonnull (crypt_gensalt_rn (prefix, 0, NULL, 0, setting, sizeof setting));
  out = crypt_r (password, setting, data);
  g_assert_nonnull (out);
  g_assert_cmpint (out[0], !=, '*');
  return g_strdup (out);
}

static char *
write_file (const char *name, const char *text, gssize len)
{
  g_autoptr (GError) error = NULL;
  char *path = g_build_filename (tmp_dir, name, NULL);

  g_file_set_contents (path, text, len, &error);
  g_assert_no_error (error);
  return path;
}

/* Rewrites the file in place (same inode) and moves its mtime `ahead`
 * seconds into the future: an edit the reload check must see without the
 * test sleeping. */
static void
rewrite_in_place (const char *path, const char *text, gint64 ahead)
{
  gsize len = strlen (text);
  struct utimbuf times;
  int fd = g_open (path, O_WRONLY | O_TRUNC | O_CLOEXEC, 0);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, text, len), ==, (gssize)len);
  g_assert_cmpint (close (fd), ==, 0);
  times.actime = times.modtime = (time_t)(g_get_real_time () / G_USEC_PER_SEC + ahead);
  g_assert_cmpint (g_utime (path, &times), ==, 0);
}

/* ---- checks -------------------------------------------------------------- */

static void
test_check (void)
{
  g_autofree char *alice = make_hash ("$y$", "correct horse");
  g_autofree char *bob = make_hash ("$6$", "s3cret:with colon");
  g_autofree char *long_pw = g_strnfill (VPS_AUTH_MAX_PASSWORD + 1, 'p');
  g_autofree char *carol = make_hash ("$6$", long_pw);
  g_autofree char *long_user = g_strnfill (VPS_AUTH_MAX_USER + 1, 'u');
  g_autofree char *text = g_strdup_printf ("# vsmtpd users\n"
                                           "\n"
                                           "   \n"
                                           "  # indented comment\n"
                                           "alice:%s\r\n"
                                           "bob:%s \t\n"
                                           "carol:%s",
                                           alice, bob, carol);
  g_autofree char *path = write_file ("passwd", text, -1);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsPasswdFile) pw = vps_passwd_file_load (path, &error);

  g_assert_no_error (error);
  g_assert_nonnull (pw);
  g_assert_cmpuint (vps_passwd_file_get_n_users (pw), ==, 3);

  g_assert_true (vps_passwd_file_check (pw, "alice", "correct horse"));
  g_assert_false (vps_passwd_file_check (pw, "alice", "correct horsE"));
  g_assert_false (vps_passwd_file_check (pw, "alice", ""));
  g_assert_false (vps_passwd_file_check (pw, "Alice", "correct horse"));
  g_assert_true (vps_passwd_file_check (pw, "bob", "s3cret:with colon"));
  g_assert_false (vps_passwd_file_check (pw, "bob", "correct horse"));
  /* Unknown users, however named, are plain failures. */
  g_assert_false (vps_passwd_file_check (pw, "mallory", "correct horse"));
  g_assert_false (vps_passwd_file_check (pw, "", ""));
  g_assert_false (vps_passwd_file_check (pw, long_user, "x"));
  /* Right, but longer than the limit. */
  g_assert_false (vps_passwd_file_check (pw, "carol", long_pw));
}

static void
test_empty_file (void)
{
  g_autofree char *path = write_file ("passwd", "# nobody yet\n", -1);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsPasswdFile) pw = vps_passwd_file_load (path, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (vps_passwd_file_get_n_users (pw), ==, 0);
  g_assert_false (vps_passwd_file_check (pw, "alice", ""));
}

/* ---- load errors, table-driven -------------------------------------------- */

typedef struct
{
  const char *path;
  const char *text;    /* '@' is replaced by a valid $6$ hash */
  gssize len;          /* -1: up to the NUL */
  const char *message; /* after "FILE:" */
} LoadCase;

static const LoadCase load_cases[] = {
  { "no-colon", "alice\n", -1, "1: expected user:hash" },
  { "empty-user", "# c\n:@\n", -1, "2: empty user name" },
  { "empty-hash", "# c\n\nalice:\n", -1, "3: user \"alice\": empty hash" },
  { "blank-before-user", "# c\n \talice:@\n", -1, "2: blank before the user name" },
  { "control-in-user", "al\x01ice:@\n", -1, "1: control character in user name" },
  { "duplicate", "alice:@\nbob:@\n\nalice:@\n", -1, "4: user \"alice\" already defined on line 1" },
  { "unknown-method", "alice:$zz$abc$def\n", -1,
    "1: user \"alice\": not a hash crypt(3) can use (unknown or disabled method, or malformed)" },
  { "locked", "alice:!@\n", -1,
    "1: user \"alice\": not a hash crypt(3) can use (unknown or disabled method, or malformed)" },
  { "bare-salt", "alice:$6$abcdefgh\n", -1,
    "1: user \"alice\": not a hash crypt(3) can use (unknown or disabled method, or malformed)" },
  { "plaintext", "alice:secret\n", -1,
    "1: user \"alice\": not a hash crypt(3) can use (unknown or disabled method, or malformed)" },
  { "bad-rounds", "bob:@\nalice:$6$rounds=abc$xyz$\n", -1,
    "2: user \"alice\": not a hash crypt(3) can use (unknown or disabled method, or malformed)" },
  { "shadow-fields", "alice:@:19000:0:99999:7:::\n", -1,
    "1: user \"alice\": not a hash crypt(3) can use (unknown or disabled method, or malformed)" },
  { "nul-byte", "alice:$6$ab\0cd\n", 15, "1: NUL byte in line" },
};

static void
test_load_error (gconstpointer data)
{
  const LoadCase *c = data;
  g_autofree char *hash = make_hash ("$6$", "pw");
  g_autoptr (GString) text
      = g_string_new_len (c->text, c->len >= 0 ? c->len : (gssize)strlen (c->text));
  g_autofree char *path = NULL;
  g_autofree char *expected = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsPasswdFile) pw = NULL;

  g_string_replace (text, "@", hash, 0);
  path = write_file ("passwd", text->str, (gssize)text->len);
  expected = g_strdup_printf ("%s:%s", path, c->message);
  pw = vps_passwd_file_load (path, &error);
  g_assert_null (pw);
  g_assert_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE);
  g_assert_cmpstr (error->message, ==, expected);
}

static void
test_load_limits (void)
{
  g_autofree char *hash = make_hash ("$6$", "pw");
  g_autofree char *user = g_strnfill (VPS_AUTH_MAX_USER, 'u');
  g_autofree char *long_comment = g_strnfill (VPS_AUTH_MAX_LINE, '#');
  g_autofree char *ok_text = g_strdup_printf ("%s\n%s:%s\n", long_comment, user, hash);
  g_autofree char *long_user = g_strnfill (VPS_AUTH_MAX_USER + 1, 'u');
  g_autofree char *bad_user = g_strdup_printf ("a:%s\n%s:%s\n", hash, long_user, hash);
  g_autofree char *bad_line = g_strdup_printf ("%s#\n", long_comment);
  g_autofree char *path = NULL;
  g_autofree char *expected = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsPasswdFile) pw = NULL;

  /* At the limits: loads. */
  path = write_file ("passwd", ok_text, -1);
  pw = vps_passwd_file_load (path, &error);
  g_assert_no_error (error);
  g_assert_true (vps_passwd_file_check (pw, user, "pw"));
  g_clear_pointer (&pw, vps_passwd_file_unref);

  /* One over: refused with the line. */
  g_free (write_file ("passwd", bad_user, -1));
  pw = vps_passwd_file_load (path, &error);
  expected = g_strdup_printf ("%s:2: user name longer than 255 octets", path);
  g_assert_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE);
  g_assert_cmpstr (error->message, ==, expected);
  g_clear_error (&error);
  g_clear_pointer (&expected, g_free);

  g_free (write_file ("passwd", bad_line, -1));
  pw = vps_passwd_file_load (path, &error);
  expected = g_strdup_printf ("%s:1: line longer than 1024 octets", path);
  g_assert_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE);
  g_assert_cmpstr (error->message, ==, expected);
}

static void
test_load_not_a_file (void)
{
  g_autofree char *missing = g_build_filename (tmp_dir, "missing", NULL);
  g_autofree char *expected = g_strdup_printf ("%s: No such file or directory", missing);
  g_autofree char *expected_dir = g_strdup_printf ("%s: not a regular file", tmp_dir);
  g_autofree char *big = g_build_filename (tmp_dir, "big", NULL);
  g_autofree char *expected_big
      = g_strdup_printf ("%s: larger than %d bytes", big, VPS_AUTH_MAX_FILE);
  g_autoptr (GError) error = NULL;
  int fd;

  g_assert_null (vps_passwd_file_load (missing, &error));
  g_assert_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE);
  g_assert_cmpstr (error->message, ==, expected);
  g_clear_error (&error);

  g_assert_null (vps_passwd_file_load (tmp_dir, &error));
  g_assert_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE);
  g_assert_cmpstr (error->message, ==, expected_dir);
  g_clear_error (&error);

  /* Sparse: refused by its size before any byte is read. */
  fd = g_open (big, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, (off_t)VPS_AUTH_MAX_FILE + 1), ==, 0);
  close (fd);
  g_assert_null (vps_passwd_file_load (big, &error));
  g_assert_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE);
  g_assert_cmpstr (error->message, ==, expected_big);
}

/* ---- reloads --------------------------------------------------------------- */

typedef struct
{
  char *path;
  char *v1, *v2; /* "alice:HASH(one)\n", "alice:HASH(two)\n", the same size */
  VpsPasswdFile *pw;
  GString *log;
} ReloadFixture;

static void
reload_setup (ReloadFixture *f, gconstpointer data)
{
  g_autofree char *one = make_hash ("$6$", "one");
  g_autofree char *two = make_hash ("$6$", "two");
  g_autoptr (GError) error = NULL;

  f->v1 = g_strdup_printf ("alice:%s\n", one);
  f->v2 = g_strdup_printf ("alice:%s\n", two);
  g_assert_cmpuint (strlen (f->v1), ==, strlen (f->v2));
  f->path = write_file ("passwd", f->v1, -1);
  f->pw = vps_passwd_file_load (f->path, &error);
  g_assert_no_error (error);
  vps_passwd_file_set_recheck_interval (f->pw, 0);
  f->log = g_string_new (NULL);
  vps_log_capture (f->log);
}

static void
reload_teardown (ReloadFixture *f, gconstpointer data)
{
  vps_log_capture (NULL);
  g_string_free (f->log, TRUE);
  vps_passwd_file_unref (f->pw);
  g_free (f->path);
  g_free (f->v1);
  g_free (f->v2);
}

static guint
count_lines (GString *log, const char *needle)
{
  guint n = 0;

  for (const char *p = log->str; (p = strstr (p, needle)) != NULL; p++)
    n++;
  return n;
}

/* Same inode, same size: only the mtime tells. */
static void
test_reload_mtime (ReloadFixture *f, gconstpointer data)
{
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "one"));
  rewrite_in_place (f->path, f->v2, 10);
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "two"));
  g_assert_false (vps_passwd_file_check (f->pw, "alice", "one"));
  g_assert_cmpuint (count_lines (f->log, "reloaded, 1 users"), ==, 1);
}

/* An editor's write-and-rename: a new inode. */
static void
test_reload_rename (ReloadFixture *f, gconstpointer data)
{
  g_autofree char *path = write_file ("passwd", f->v2, -1);

  g_assert_true (vps_passwd_file_check (f->pw, "alice", "two"));
  g_assert_false (vps_passwd_file_check (f->pw, "alice", "one"));
}

/* Within the interval the file is not even looked at. */
static void
test_reload_interval (ReloadFixture *f, gconstpointer data)
{
  vps_passwd_file_set_recheck_interval (f->pw, (gint64)3600 * G_USEC_PER_SEC);
  rewrite_in_place (f->path, f->v2, 10);
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "one"));
  g_assert_false (vps_passwd_file_check (f->pw, "alice", "two"));
  vps_passwd_file_set_recheck_interval (f->pw, 0);
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "two"));
}

/* A broken edit keeps the last good contents, logs once, and the next
 * good edit is taken. */
static void
test_reload_bad_keeps_old (ReloadFixture *f, gconstpointer data)
{
  g_autofree char *bad = g_strdup_printf ("%sbroken line\n", f->v2);

  rewrite_in_place (f->path, bad, 10);
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "one"));
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "one"));
  g_assert_false (vps_passwd_file_check (f->pw, "alice", "two"));
  g_assert_cmpuint (count_lines (f->log, "keeping the previous contents"), ==, 1);
  g_assert_cmpuint (count_lines (f->log, ":2: expected user:hash"), ==, 1);

  rewrite_in_place (f->path, f->v2, 20);
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "two"));
}

static void
test_reload_removed_keeps_old (ReloadFixture *f, gconstpointer data)
{
  g_autofree char *path = NULL;

  g_assert_cmpint (g_unlink (f->path), ==, 0);
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "one"));
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "one"));
  g_assert_cmpuint (count_lines (f->log, "No such file or directory"), ==, 1);

  path = write_file ("passwd", f->v2, -1);
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "two"));
}

/* Threads check while the file flips between two versions with the same
 * password: a check never sees a half-loaded table. */
#define RACE_THREADS 4
#define RACE_CHECKS 12

static gpointer
race_thread (gpointer data)
{
  VpsPasswdFile *pw = data;
  guint ok = 0;

  for (guint i = 0; i < RACE_CHECKS; i++)
    ok += vps_passwd_file_check (pw, "alice", "same") ? 1 : 0;
  return GUINT_TO_POINTER (ok);
}

static void
test_reload_race (ReloadFixture *f, gconstpointer data)
{
  g_autofree char *a = make_hash ("$6$", "same");
  g_autofree char *b = make_hash ("$6$", "same");
  g_autofree char *va = g_strdup_printf ("alice:%s\n", a);
  g_autofree char *vb = g_strdup_printf ("alice:%s\n", b);
  GThread *threads[RACE_THREADS];

  /* Replaced by rename, as editors do: an in-place rewrite can be read
   * half-written (and is then read again at the next change). */
  g_free (write_file ("passwd", va, -1));
  /* While one thread rereads, the others go on with the old contents:
   * "same" must be the password of the old ones too. */
  g_assert_true (vps_passwd_file_check (f->pw, "alice", "same"));
  for (guint i = 0; i < RACE_THREADS; i++)
    threads[i] = g_thread_new ("race", race_thread, f->pw);
  for (guint i = 0; i < 2 * RACE_CHECKS; i++)
    g_free (write_file ("passwd", i % 2 ? va : vb, -1));
  for (guint i = 0; i < RACE_THREADS; i++)
    g_assert_cmpuint (GPOINTER_TO_UINT (g_thread_join (threads[i])), ==, RACE_CHECKS);
  /* The one before the threads, and at least one while they ran. */
  g_assert_cmpuint (count_lines (f->log, "reloaded, 1 users"), >=, 2);
}

/* ---- async ------------------------------------------------------------------ */

typedef struct
{
  VpsPasswdFile *pw;
  GMainContext *context;
  GThread *thread;
  guint pending;
  gboolean results[4];
} AsyncState;

typedef struct
{
  AsyncState *state;
  guint index;
} AsyncCall;

static void
async_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncCall *call = user_data;
  AsyncState *state = call->state;

  /* On the caller's thread and its thread-default context. */
  g_assert_true (g_thread_self () == state->thread);
  g_assert_true (g_main_context_get_thread_default () == state->context);
  g_assert_null (source);
  state->results[call->index] = vps_passwd_file_check_finish (state->pw, result);
  state->pending--;
  g_free (call);
}

static void
test_async (void)
{
  g_autofree char *hash = make_hash ("$y$", "async pw");
  g_autofree char *text = g_strdup_printf ("alice:%s\n", hash);
  g_autofree char *path = write_file ("passwd", text, -1);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsPasswdFile) pw = vps_passwd_file_load (path, &error);
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (GCancellable) cancelled = g_cancellable_new ();
  static const struct
  {
    const char *user, *password;
    gboolean cancel;
  } calls[] = {
    { "alice", "async pw", FALSE },
    { "alice", "wrong", FALSE },
    { "nobody", "async pw", FALSE },
    { "alice", "async pw", TRUE },
  };
  AsyncState state = { pw, context, g_thread_self (), 0, { FALSE } };

  g_assert_no_error (error);
  g_cancellable_cancel (cancelled);
  g_main_context_push_thread_default (context);
  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    {
      AsyncCall *call = g_new0 (AsyncCall, 1);
      char password[64];

      /* The caller's buffer may go away right after the call. */
      g_strlcpy (password, calls[i].password, sizeof password);
      call->state = &state;
      call->index = i;
      state.results[i] = !(i == 0);
      state.pending++;
      vps_passwd_file_check_async (pw, calls[i].user, password, calls[i].cancel ? cancelled : NULL,
                                   async_done, call);
      memset (password, 'X', sizeof password);
    }
  /* The pool holds its own reference. */
  g_clear_pointer (&pw, vps_passwd_file_unref);
  while (state.pending > 0)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);

  g_assert_true (state.results[0]);
  g_assert_false (state.results[1]);
  g_assert_false (state.results[2]);
  g_assert_false (state.results[3]);
}

static void
remove_tmp_dir (void)
{
  g_autoptr (GDir) dir = g_dir_open (tmp_dir, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (tmp_dir, name, NULL);
      g_unlink (path);
    }
  g_rmdir (tmp_dir);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  int ret;

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  tmp_dir = g_dir_make_tmp ("test-auth-XXXXXX", &error);
  g_assert_no_error (error);

  g_test_add_func ("/auth/check/users", test_check);
  g_test_add_func ("/auth/check/empty-file", test_empty_file);
  for (gsize i = 0; i < G_N_ELEMENTS (load_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/auth/load/%s", load_cases[i].path);
      g_test_add_data_func (path, &load_cases[i], test_load_error);
    }
  g_test_add_func ("/auth/load/limits", test_load_limits);
  g_test_add_func ("/auth/load/not-a-usable-file", test_load_not_a_file);
#define ADD(path, fn) g_test_add (path, ReloadFixture, NULL, reload_setup, fn, reload_teardown)
  ADD ("/auth/reload/mtime", test_reload_mtime);
  ADD ("/auth/reload/rename", test_reload_rename);
  ADD ("/auth/reload/interval", test_reload_interval);
  ADD ("/auth/reload/bad-keeps-old", test_reload_bad_keeps_old);
  ADD ("/auth/reload/removed-keeps-old", test_reload_removed_keeps_old);
  ADD ("/auth/reload/race", test_reload_race);
#undef ADD
  g_test_add_func ("/auth/async", test_async);

  ret = g_test_run ();
  remove_tmp_dir ();
  return ret;
}
