/* SPDX-License-Identifier: MIT
 *
 * test-local.c — local delivery: template expansion and the checks on what
 * a recipient brings (no path escapes the root), maildir (layout, unique
 * names under threads, Maildir++ folders, no leftovers on a write failure);
 * mbox is test-local-mbox.c's.  Python's mailbox module reads what we wrote
 * (both formats), as an independent reader.
 *
 * Write failures are real ones: a child process with a small RLIMIT_FSIZE
 * gets EFBIG in the middle of the message; no test hook in the library.
 */
#include "tests/mta/local-test-util.h"

/* Expansion */

typedef struct
{
  const char *template;
  const char *rcpt;
  const char *want; /* NULL: error `code` */
  int code;
} ExpandCase;

static const ExpandCase expand_cases[] = {
  { "/var/mail/%d/%l", "User+Tag@Example.COM", "/var/mail/example.com/User+Tag" },
  { "/var/mail/%d/%u", "user+tag@d.org", "/var/mail/d.org/user" },
  { "/m/%u", "a+b+c@d", "/m/a" },
  { "/m/%u", "plain@d", "/m/plain" },
  /* a leading "+" is not a delimiter: the user would be empty */
  { "/m/%u", "+tag@d", "/m/+tag" },
  { "/m/100%%/%l", "x@d", "/m/100%/x" },
  { "/m/%%l", "x@d", "/m/%l" },
  /* split at the last "@" (a quoted local part may hold one); the quotes
   * go, the content stays */
  { "/m/%l", "\"a@b\"@d", "/m/a@b" },
  { "/m/%l", "\"a\\\"b\"@d", "/m/a\"b" },
  { "/m/%l/.Junk", "u@d", "/m/u/.Junk" },
  { "/m/%d/%l", "j\xc3\xb6rg@D.example", "/m/d.example/j\xc3\xb6rg" },
  { "/m/x%l.d", "a.b@d", "/m/xa.b.d" },
  /* values not used are not checked */
  { "/var/mail/all", "../../x@d", "/var/mail/all" },
  { "/m/%l", "no-domain", "/m/no-domain" },
  /* template errors */
  { "/m/%x", "u@d", NULL, VPS_LOCAL_ERROR_TEMPLATE },
  { "/m/%L", "u@d", NULL, VPS_LOCAL_ERROR_TEMPLATE },
  { "/m/%", "u@d", NULL, VPS_LOCAL_ERROR_TEMPLATE },
  { "/m/%\x01", "u@d", NULL, VPS_LOCAL_ERROR_TEMPLATE },
  { "m/%l", "u@d", NULL, VPS_LOCAL_ERROR_TEMPLATE },
  { "~/Maildir", "u@d", NULL, VPS_LOCAL_ERROR_TEMPLATE },
  { "", "u@d", NULL, VPS_LOCAL_ERROR_TEMPLATE },
  /* unsafe values */
  { "/m/%l", "../../x@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "a/b@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", ".hidden@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  /* quoting does not hide what the content is */
  { "/m/%l", "\".hidden\"@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "\"../../x\"@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "\"a/b\"@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", ".@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "..@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "\x01@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "a\r\nb@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%l", "a\x7f@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%u", "..+x@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%u", "a/b+x@d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%d/%l", "x@../d", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%d/%l", "x@a/b", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%d/%l", "x@..", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%d/%l", "x@.example", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%d/%l", "no-domain", NULL, VPS_LOCAL_ERROR_UNSAFE },
  { "/m/%d/%l", "x@d\tx", NULL, VPS_LOCAL_ERROR_UNSAFE },
};

static void
test_expand_table (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (expand_cases); i++)
    {
      const ExpandCase *c = &expand_cases[i];
      g_autoptr (GError) error = NULL;
      g_autofree char *got = vps_local_expand (c->template, c->rcpt, &error);

      g_test_message ("case %u: %s for %s", i, c->template, c->rcpt);
      if (c->want != NULL)
        {
          g_assert_no_error (error);
          g_assert_cmpstr (got, ==, c->want);
        }
      else
        {
          g_assert_error (error, VPS_LOCAL_ERROR, c->code);
          g_assert_null (got);
          g_assert_true (vps_local_error_is_permanent (error));
        }
    }
}

static void
test_expand_limits (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) error2 = NULL;
  g_autoptr (GError) error3 = NULL;
  g_autofree char *name = g_strnfill (VPS_LOCAL_MAX_NAME, 'a');
  g_autofree char *long_name = g_strnfill (VPS_LOCAL_MAX_NAME + 1, 'a');
  g_autofree char *rcpt = g_strconcat (name, "@d", NULL);
  g_autofree char *long_rcpt = g_strconcat (long_name, "@d", NULL);
  /* "/" dirs "/u": exactly VPS_LOCAL_MAX_PATH bytes, then one more */
  g_autofree char *dirs = g_strnfill (VPS_LOCAL_MAX_PATH - 3, 'x');
  g_autofree char *max_template = g_strconcat ("/", dirs, "/%l", NULL);
  g_autofree char *long_template = g_strconcat ("/", dirs, "x/%l", NULL);
  g_autofree char *max = vps_local_expand (max_template, "u@d", NULL);
  g_autofree char *ok = vps_local_expand ("/m/%l", rcpt, &error);
  g_autofree char *bad = vps_local_expand ("/m/%l", long_rcpt, &error2);
  g_autofree char *too_long = vps_local_expand (long_template, "u@d", &error3);

  g_assert_no_error (error);
  g_assert_cmpuint (strlen (ok), ==, 3 + VPS_LOCAL_MAX_NAME);
  g_assert_error (error2, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_UNSAFE);
  g_assert_null (bad);
  g_assert_cmpuint (strlen (max), ==, VPS_LOCAL_MAX_PATH);
  g_assert_error (error3, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE);
  g_assert_null (too_long);
}

static void
test_error_permanent (void)
{
  g_autoptr (GError) t = g_error_new_literal (VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE, "t");
  g_autoptr (GError) u = g_error_new_literal (VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_UNSAFE, "u");
  g_autoptr (GError) l = g_error_new_literal (VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_LOCKED, "l");
  g_autoptr (GError) io = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_NO_SPACE, "io");

  g_assert_true (vps_local_error_is_permanent (t));
  g_assert_true (vps_local_error_is_permanent (u));
  g_assert_false (vps_local_error_is_permanent (l));
  g_assert_false (vps_local_error_is_permanent (io));
  g_assert_false (vps_local_error_is_permanent (NULL));
}

/* Maildir */

/* NAME,S=SIZE with NAME = time.M<usec>P<pid>Q<n>.<host>; returns SIZE. */
static guint64
check_maildir_name (const char *base)
{
  g_autofree char *pattern
      = g_strdup_printf ("^[0-9]+\\.M[0-9]+P%dQ[0-9]+\\.[^/:]+,S=([0-9]+)$", (int)getpid ());
  g_autoptr (GRegex) re = g_regex_new (pattern, 0, 0, NULL);
  g_autoptr (GMatchInfo) m = NULL;
  g_autofree char *size = NULL;

  g_assert_true (g_regex_match (re, base, 0, &m));
  size = g_match_info_fetch (m, 1);
  return g_ascii_strtoull (size, NULL, 10);
}

static void
test_maildir_deliver (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *root = test_path ("a", "b", "Maildir", NULL);
  g_autofree char *tmp = g_build_filename (root, "tmp", NULL);
  g_autofree char *newdir = g_build_filename (root, "new", NULL);
  g_autofree char *cur = g_build_filename (root, "cur", NULL);
  g_autofree char *file = NULL;
  g_autofree char *text = NULL;
  g_autofree char *base = NULL;
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  g_autoptr (GPtrArray) names = NULL;

  g_assert_true (vps_local_maildir_deliver (root, "s@x", "u@d", msg, &file, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (file_mode (root), ==, 0700);
  g_assert_cmpuint (file_mode (tmp), ==, 0700);
  g_assert_cmpuint (file_mode (newdir), ==, 0700);
  g_assert_cmpuint (file_mode (cur), ==, 0700);
  g_assert_cmpuint (count_dir (tmp), ==, 0);
  g_assert_cmpuint (count_dir (cur), ==, 0);
  names = list_dir (newdir);
  g_assert_cmpuint (names->len, ==, 1);
  base = g_path_get_basename (file);
  g_assert_cmpstr (names->pdata[0], ==, base);
  g_assert_true (g_str_has_prefix (file, newdir));
  g_assert_cmpuint (file_mode (file), ==, 0600);

  text = slurp (file);
  /* LF line ends, the bare CR kept, a line end added; no mbox quoting */
  g_assert_cmpstr (text, ==,
                   "Return-Path: <s@x>\nDelivered-To: u@d\nSubject: hi\nFrom: x@y\n\n"
                   "line1\nbare\rcr\nFrom here\nlast\n");
  g_assert_cmpuint (check_maildir_name (base), ==, strlen (text));
  g_assert_cmpuint (check_maildir_name (base), ==, (guint64)file_size (file));
}

static void
test_maildir_null_sender (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *root = test_path ("Maildir", NULL);
  g_autoptr (GBytes) msg = bytes ("Subject: x\r\n\r\n");
  g_autoptr (GBytes) empty = g_bytes_new (NULL, 0);
  g_autofree char *f1 = NULL;
  g_autofree char *f2 = NULL;
  g_autofree char *f3 = NULL;
  g_autofree char *t1 = NULL;
  g_autofree char *t2 = NULL;
  g_autofree char *t3 = NULL;

  g_assert_true (vps_local_maildir_deliver (root, "", "u@d", msg, &f1, &error));
  g_assert_true (vps_local_maildir_deliver (root, NULL, "u@d", msg, &f2, &error));
  g_assert_true (vps_local_maildir_deliver (root, "s@x", "u@d", empty, &f3, &error));
  g_assert_no_error (error);
  t1 = slurp (f1);
  t2 = slurp (f2);
  t3 = slurp (f3);
  g_assert_cmpstr (t1, ==, "Return-Path: <>\nDelivered-To: u@d\nSubject: x\n\n");
  g_assert_cmpstr (t2, ==, t1);
  g_assert_cmpstr (t3, ==, "Return-Path: <s@x>\nDelivered-To: u@d\n");
  g_assert_cmpstr (f1, !=, f2);
}

static void
test_maildir_folder (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *parent = test_path ("Maildir", NULL);
  g_autofree char *folder = g_build_filename (parent, ".Junk", NULL);
  g_autofree char *marker = g_build_filename (folder, "maildirfolder", NULL);
  g_autofree char *file = NULL;
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  static const char *const subs[] = { "tmp", "new", "cur" };

  g_assert_true (vps_local_maildir_deliver (folder, "s@x", "u@d", msg, &file, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (subs); i++)
    {
      g_autofree char *p = g_build_filename (parent, subs[i], NULL);
      g_autofree char *f = g_build_filename (folder, subs[i], NULL);

      g_assert_true (g_file_test (p, G_FILE_TEST_IS_DIR));
      g_assert_cmpuint (count_dir (p), ==, 0);
      g_assert_true (g_file_test (f, G_FILE_TEST_IS_DIR));
    }
  g_assert_true (g_file_test (marker, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpint (file_size (marker), ==, 0);
  g_assert_true (g_str_has_prefix (file, folder));

  /* a second delivery finds everything in place */
  g_clear_pointer (&file, g_free);
  g_assert_true (vps_local_maildir_deliver (folder, "s@x", "u@d", msg, &file, &error));
  g_assert_no_error (error);
  {
    g_autofree char *newdir = g_build_filename (folder, "new", NULL);

    g_assert_cmpuint (count_dir (newdir), ==, 2);
  }
}

static void
test_maildir_bad_path (void)
{
  static const struct
  {
    const char *path;
    int code;
  } cases[] = {
    { "relative/Maildir", VPS_LOCAL_ERROR_TEMPLATE },
    { "/", VPS_LOCAL_ERROR_TEMPLATE },
    { "/var/mail/..", VPS_LOCAL_ERROR_TEMPLATE },
    { "/var/mail/.", VPS_LOCAL_ERROR_TEMPLATE },
  };
  g_autoptr (GBytes) msg = bytes (MESSAGE);

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GError) error2 = NULL;

      g_assert_false (vps_local_maildir_deliver (cases[i].path, "s@x", "u@d", msg, NULL, &error));
      g_assert_error (error, VPS_LOCAL_ERROR, cases[i].code);
      g_assert_false (vps_local_mbox_deliver (cases[i].path[0] == '/' ? "mbox" : cases[i].path,
                                              "s@x", "u@d", msg, &error2));
      g_assert_error (error2, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE);
    }
}

/* A sender or recipient with CR/LF would add header lines of its own:
 * refused before anything is created. */
static void
test_envelope_unsafe (void)
{
  static const char *const senders[] = { "a@b\r\nX-Evil: 1", "a\n@b", "\x01@b" };
  g_autofree char *root = test_path ("Maildir", NULL);
  g_autofree char *mbox = test_path ("mail", "u", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);

  for (guint i = 0; i < G_N_ELEMENTS (senders); i++)
    {
      g_autoptr (GError) e1 = NULL;
      g_autoptr (GError) e2 = NULL;
      g_autoptr (GError) e3 = NULL;

      g_assert_false (vps_local_maildir_deliver (root, senders[i], "u@d", msg, NULL, &e1));
      g_assert_error (e1, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_UNSAFE);
      g_assert_false (vps_local_mbox_deliver (mbox, senders[i], "u@d", msg, &e2));
      g_assert_error (e2, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_UNSAFE);
      g_assert_false (vps_local_mbox_deliver (mbox, "s@x", senders[i], msg, &e3));
      g_assert_error (e3, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_UNSAFE);
    }
  g_assert_false (g_file_test (root, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (mbox, G_FILE_TEST_EXISTS));
}

#define UNIQUE_THREADS 4
#define UNIQUE_PER_THREAD 1000

typedef struct
{
  const char *root;
  GMutex lock;
  GHashTable *files;
} UniqueShared;

static gpointer
unique_thread (gpointer data)
{
  UniqueShared *u = data;
  g_autoptr (GBytes) msg = bytes ("Subject: t\r\n\r\nbody\r\n");

  for (guint i = 0; i < UNIQUE_PER_THREAD; i++)
    {
      g_autoptr (GError) error = NULL;
      char *file = NULL;

      g_assert_true (vps_local_maildir_deliver (u->root, "s@x", "u@d", msg, &file, &error));
      g_assert_no_error (error);
      g_mutex_lock (&u->lock);
      g_assert_true (g_hash_table_add (u->files, file));
      g_mutex_unlock (&u->lock);
    }
  return NULL;
}

static void
test_maildir_unique (void)
{
  g_autofree char *root = test_path ("Maildir", NULL);
  g_autofree char *newdir = g_build_filename (root, "new", NULL);
  g_autofree char *tmp = g_build_filename (root, "tmp", NULL);
  UniqueShared u
      = { .root = root, .files = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };
  GThread *threads[UNIQUE_THREADS];

  g_mutex_init (&u.lock);
  for (guint i = 0; i < UNIQUE_THREADS; i++)
    threads[i] = g_thread_new ("deliver", unique_thread, &u);
  for (guint i = 0; i < UNIQUE_THREADS; i++)
    g_thread_join (threads[i]);
  g_assert_cmpuint (g_hash_table_size (u.files), ==, UNIQUE_THREADS * UNIQUE_PER_THREAD);
  g_assert_cmpuint (count_dir (newdir), ==, UNIQUE_THREADS * UNIQUE_PER_THREAD);
  g_assert_cmpuint (count_dir (tmp), ==, 0);
  g_hash_table_destroy (u.files);
  g_mutex_clear (&u.lock);
}

static void
test_maildir_write_failure (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *root = test_path ("Maildir", NULL);
      g_autofree char *newdir = g_build_filename (root, "new", NULL);
      g_autofree char *tmp = g_build_filename (root, "tmp", NULL);
      g_autoptr (GBytes) msg = big_message (1024 * 1024);
      char *file = NULL;

      limit_file_size (300 * 1000);
      g_assert_false (vps_local_maildir_deliver (root, "s@x", "u@d", msg, &file, &error));
      g_assert_nonnull (error);
      g_assert_true (error->domain == G_IO_ERROR);
      g_assert_false (vps_local_error_is_permanent (error));
      g_assert_null (file);
      g_assert_cmpuint (count_dir (newdir), ==, 0);
      g_assert_cmpuint (count_dir (tmp), ==, 0);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* Python's mailbox module as an independent reader of both formats. */
static const char python_check[]
    = "import mailbox, sys\n"
      "mb = mailbox.mbox(sys.argv[1], create=False)\n"
      "msgs = list(mb)\n"
      "assert len(msgs) == 2, len(msgs)\n"
      "for m, s in zip(msgs, ['s@x', 'MAILER-DAEMON']):\n"
      "    assert m.get_from().startswith(s + ' '), m.get_from()\n"
      "    assert m['Delivered-To'] == 'u@d' and m['Subject'] == 'hi', m.items()\n"
      /* Python keeps the separating empty line with the last message */
      "    assert m.get_payload().rstrip('\\n') == 'line1\\nbare\\rcr\\n>From here\\nlast', "
      "repr(m.get_payload())\n"
      "assert msgs[0]['Return-Path'] == '<s@x>' and msgs[1]['Return-Path'] == '<>'\n"
      "md = mailbox.Maildir(sys.argv[2], create=False)\n"
      "assert len(md) == 2 and md.list_folders() == ['Junk'], (len(md), md.list_folders())\n"
      "junk = md.get_folder('Junk')\n"
      "assert len(junk) == 1\n"
      /* get_bytes: its message objects read in universal-newline mode, where
   * the bare CR would read as a line end */
      "for box in (md, junk):\n"
      "    for k, m in box.items():\n"
      "        assert m.get_subdir() == 'new' and m['Return-Path'] == '<s@x>', m.items()\n"
      "        raw = box.get_bytes(k)\n"
      "        assert raw.endswith(b'\\n\\nline1\\nbare\\rcr\\nFrom here\\nlast\\n'), raw\n"
      "print('ok')\n";

static void
test_python_mailbox (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *mbox = test_path ("mbox", NULL);
  g_autofree char *maildir = test_path ("Maildir", NULL);
  g_autofree char *junk = g_build_filename (maildir, ".Junk", NULL);
  g_autoptr (GBytes) msg = bytes (MESSAGE);
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status;
  const char *argv[] = { "/usr/bin/python3", "-c", python_check, mbox, maildir, NULL };

  g_assert_true (vps_local_mbox_deliver (mbox, "s@x", "u@d", msg, &error));
  g_assert_true (vps_local_mbox_deliver (mbox, "", "u@d", msg, &error));
  g_assert_true (vps_local_maildir_deliver (maildir, "s@x", "u@d", msg, NULL, &error));
  g_assert_true (vps_local_maildir_deliver (maildir, "s@x", "u@d", msg, NULL, &error));
  g_assert_true (vps_local_maildir_deliver (junk, "s@x", "u@d", msg, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                               &status, &error));
  g_assert_no_error (error);
  g_test_message ("python: %s%s", out, err);
  g_assert_true (g_spawn_check_wait_status (status, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (out, ==, "ok\n");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  g_test_add_func ("/mta/local/expand/table", test_expand_table);
  g_test_add_func ("/mta/local/expand/limits", test_expand_limits);
  g_test_add_func ("/mta/local/error/permanent", test_error_permanent);
  g_test_add_func ("/mta/local/maildir/deliver", test_maildir_deliver);
  g_test_add_func ("/mta/local/maildir/null-sender", test_maildir_null_sender);
  g_test_add_func ("/mta/local/maildir/folder", test_maildir_folder);
  g_test_add_func ("/mta/local/maildir/bad-path", test_maildir_bad_path);
  g_test_add_func ("/mta/local/maildir/unique-threads", test_maildir_unique);
  g_test_add_func ("/mta/local/maildir/write-failure", test_maildir_write_failure);
  g_test_add_func ("/mta/local/envelope/unsafe", test_envelope_unsafe);
  g_test_add_func ("/mta/local/python-mailbox", test_python_mailbox);
  return g_test_run ();
}
