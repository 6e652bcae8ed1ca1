/* SPDX-License-Identifier: MIT
 *
 * test-queue-commit.c — durable writes into the spool (queue-commit.c):
 * commit then reopen, the callback's thread, the writer (buffering, map,
 * replace, abort), group commit under concurrency, and commits that fail
 * half way, on the sync pool or on the committer (a directory where a file
 * must go, incoming/ replaced by a file, an envelope that would not read
 * back) leaving no file behind.  The helpers at the top are test-queue.c's
 * (envelope updates are tested there).
 */
#include "mta/queue-private.h" /* vps_queue_commit_hold */
#include "tests/mta/queue-test-util.h"
#include "vps/log.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- commit, reopen ------------------------------------------------------------ */

static void
test_commit_reopen (Fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) msg = make_message (5 * VPS_QUEUE_WRITE_BUFFER + 17, 1);
  g_autoptr (GBytes) small = make_message (10, 2);
  g_autofree char *id = queue_message (f->q, msg);
  g_autofree char *id2 = queue_message (f->q, small);
  g_autoptr (VpsEnvelope) expect = make_envelope (id);
  g_autoptr (VpsEnvelope) env = NULL;
  g_autoptr (GBytes) back = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *eml = g_strconcat (id, ".eml", NULL);
  g_autofree char *eml_path = path_in (f, "incoming", eml);
  g_autofree char *tmp = NULL;
  g_autofree char *expect_text = NULL;
  g_autofree char *env_text = NULL;
  VpsQueueArea area;

  g_assert_true (vps_queue_valid_id (id));
  g_assert_cmpstr (id, <, id2);
  g_assert_cmpuint (file_mode (eml_path), ==, 0600);
  tmp = listing (f, "tmp");
  g_assert_cmpstr (tmp, ==, "");

  reopen (f);
  ids = vps_queue_list (f->q, VPS_QUEUE_INCOMING, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ids->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (ids, 0), ==, id);
  g_assert_cmpstr (g_ptr_array_index (ids, 1), ==, id2);
  g_assert_true (vps_queue_locate (f->q, id, &area, &error));
  g_assert_cmpint (area, ==, VPS_QUEUE_INCOMING);

  env = vps_queue_load_envelope (f->q, id, &error);
  g_assert_no_error (error);
  expect->size = g_bytes_get_size (msg);
  expect->received = env->received; /* set by the commit */
  g_assert_cmpint (env->received, >, 0);
  g_assert_cmpint (env->received, <=, g_get_real_time ());
  expect_text = vps_envelope_to_data (expect, FALSE, NULL);
  env_text = vps_envelope_to_data (env, FALSE, NULL);
  g_assert_cmpstr (env_text, ==, expect_text);

  back = vps_queue_load_message (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (back, msg));
  {
    g_autoptr (GBytes) raw = vps_queue_load_envelope_data (f->q, id, &error);
    g_autofree char *json = g_strconcat (id, ".json", NULL);
    g_autofree char *json_path = path_in (f, "incoming", json);
    g_autofree char *file = NULL;
    gsize len;

    g_assert_no_error (error);
    g_assert_true (g_file_get_contents (json_path, &file, &len, NULL));
    g_assert_cmpmem (g_bytes_get_data (raw, NULL), g_bytes_get_size (raw), file, len);
    g_assert_cmpuint (file_mode (json_path), ==, 0600);
  }
}

typedef struct
{
  GMainLoop *loop; /* quit when done, if set */
  gboolean finished, ok;
  GError *error;
  GThread *thread;
} AsyncResult;

static void
commit_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncResult *r = user_data;

  g_assert_null (source);
  r->thread = g_thread_self ();
  r->ok = vps_queue_commit_finish (NULL, result, &r->error);
  r->finished = TRUE;
  if (r->loop != NULL)
    g_main_loop_quit (r->loop);
}

/* The callback comes on the caller's main context, in its thread. */
static void
test_commit_async (Fixture *f, gconstpointer data)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (GError) error = NULL;
  VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);
  g_autoptr (VpsEnvelope) env = make_envelope (vps_queue_writer_get_id (w));
  AsyncResult r = { .loop = loop };

  g_assert_true (vps_queue_writer_write (w, "Subject: x\r\n\r\nhi\r\n", 18, &error));
  vps_queue_commit_async (f->q, w, env, commit_done, &r);
  g_main_loop_run (loop);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  g_assert_true (r.thread == g_thread_self ());
  g_assert_true (vps_queue_locate (f->q, env->id, NULL, &error));
  g_assert_cmpuint (env->size, ==, 18);
}

/* ---- the writer ------------------------------------------------------------------ */

static void
test_writer_abort (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);
  g_autoptr (GBytes) msg = make_message (3 * VPS_QUEUE_WRITE_BUFFER, 3);
  g_autofree char *name = g_strconcat (vps_queue_writer_get_id (w), ".eml", NULL);
  g_autofree char *tmp_before = listing (f, "tmp");
  g_autofree char *tmp_after = NULL;
  g_autofree char *incoming = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (tmp_before, ==, name);
  g_assert_true (
      vps_queue_writer_write (w, g_bytes_get_data (msg, NULL), g_bytes_get_size (msg), &error));
  vps_queue_writer_abort (w);
  tmp_after = listing (f, "tmp");
  incoming = listing (f, "incoming");
  g_assert_cmpstr (tmp_after, ==, "");
  g_assert_cmpstr (incoming, ==, "");
}

/* map: the bytes written so far, valid after replace (a new file, not a
 * truncation) and after the commit. */
static void
test_writer_map_replace (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);
  g_autofree char *id = g_strdup (vps_queue_writer_get_id (w));
  g_autoptr (GBytes) first = make_message (2 * VPS_QUEUE_WRITE_BUFFER + 5, 4);
  g_autoptr (GBytes) replaced = make_message (100, 5);
  g_autoptr (GBytes) map1 = NULL;
  g_autoptr (GBytes) map2 = NULL;
  g_autoptr (GBytes) back = NULL;
  g_autoptr (VpsEnvelope) env = make_envelope (id);
  g_autofree char *tmp = NULL;

  g_assert_true (vps_queue_writer_write (w, "abc", 3, &error));
  map1 = vps_queue_writer_map (w, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (map1, NULL), g_bytes_get_size (map1), "abc", 3);
  g_assert_true (
      vps_queue_writer_write (w, g_bytes_get_data (first, NULL), g_bytes_get_size (first), &error));
  map2 = vps_queue_writer_map (w, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (map2), ==, 3 + g_bytes_get_size (first));
  g_assert_cmpmem ((const char *)g_bytes_get_data (map2, NULL) + 3, g_bytes_get_size (first),
                   g_bytes_get_data (first, NULL), g_bytes_get_size (first));

  /* the data stage replaces the content with its own view of it */
  g_assert_true (vps_queue_writer_replace (w, replaced, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (vps_queue_writer_get_size (w), ==, 100);
  g_assert_cmpmem (g_bytes_get_data (map2, NULL), 3, "abc", 3); /* still mapped */
  g_assert_true (vps_queue_writer_write (w, "tail", 4, &error));
  g_assert_true (vps_queue_commit_sync (f->q, w, env, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (env->size, ==, 104);
  tmp = listing (f, "tmp");
  g_assert_cmpstr (tmp, ==, "");

  back = vps_queue_load_message (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (back), ==, 104);
  g_assert_cmpmem (g_bytes_get_data (back, NULL), 100, g_bytes_get_data (replaced, NULL), 100);
  g_assert_cmpmem ((const char *)g_bytes_get_data (back, NULL) + 100, 4, "tail", 4);
  /* the first maps outlive the writer */
  g_assert_cmpmem (g_bytes_get_data (map1, NULL), 3, "abc", 3);
}

/* ---- concurrency, group commit ------------------------------------------------------- */

#define COMMIT_THREADS 8
#define COMMITS_PER_THREAD 25

static gpointer
commit_many (gpointer data)
{
  VpsQueue *q = data;
  GPtrArray *ids = g_ptr_array_new_with_free_func (g_free);

  for (int i = 0; i < COMMITS_PER_THREAD; i++)
    {
      g_autoptr (GBytes) msg = make_message (100 + (gsize)i, (guint)i);

      g_ptr_array_add (ids, queue_message (q, msg));
    }
  return ids;
}

static void
test_concurrent_commits (Fixture *f, gconstpointer data)
{
  GThread *threads[COMMIT_THREADS];
  g_autoptr (GHashTable) all = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GPtrArray) listed = NULL;
  g_autoptr (GError) error = NULL;
  guint64 syncs;

  for (int t = 0; t < COMMIT_THREADS; t++)
    threads[t] = g_thread_new ("commit", commit_many, f->q);
  for (int t = 0; t < COMMIT_THREADS; t++)
    {
      g_autoptr (GPtrArray) ids = g_thread_join (threads[t]);

      for (guint i = 0; i < ids->len; i++)
        g_assert_true (g_hash_table_add (all, g_strdup (g_ptr_array_index (ids, i))));
    }
  /* threads commit while the committer syncs: they share fsyncs */
  syncs = vps_queue_get_dir_syncs (f->q);
  g_test_message ("%d commits, %" G_GUINT64_FORMAT " directory syncs",
                  COMMIT_THREADS * COMMITS_PER_THREAD, syncs);
  g_assert_cmpuint (syncs, >=, 1);
  g_assert_cmpuint (syncs, <, COMMIT_THREADS * COMMITS_PER_THREAD);
  reopen (f);
  listed = vps_queue_list (f->q, VPS_QUEUE_INCOMING, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (listed->len, ==, COMMIT_THREADS * COMMITS_PER_THREAD);
  for (guint i = 0; i < listed->len; i++)
    g_assert_true (g_hash_table_contains (all, g_ptr_array_index (listed, i)));
}

/* With the committer held (vps_queue_commit_hold) since before the first
 * of `n` commits: wait until they are all off the pool, all but the one
 * the committer may have taken already waiting for it, then let it go.
 * Without the hold, how many meet in one batch depends on how fast the
 * test makes them (under ASan, one at a time). */
static void
release_when_handed_over (VpsQueue *q, guint n)
{
  gint64 give_up = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  guint64 before = vps_queue_get_dir_syncs (q);

  while (g_atomic_int_get (&q->syncing) > 0 || g_async_queue_length (q->commits) < (gint)n - 1)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, give_up);
      g_usleep (1000);
    }
  g_assert_cmpuint (vps_queue_get_dir_syncs (q), ==, before); /* held indeed */
  vps_queue_commit_hold (q, FALSE);
}

/* Many commits in flight from one thread: the committer takes what is
 * waiting as one group, one directory fsync for all. */
#define GROUP_COMMITS 64

typedef struct
{
  GMainLoop *loop;
  guint pending, ok;
} Group;

static void
group_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Group *g = user_data;
  g_autoptr (GError) error = NULL;

  if (vps_queue_commit_finish (NULL, result, &error))
    g->ok++;
  g_assert_no_error (error);
  if (--g->pending == 0)
    g_main_loop_quit (g->loop);
}

static void
test_group_commit (Fixture *f, gconstpointer data)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (GPtrArray) envs = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_envelope_free);
  g_autoptr (GPtrArray) listed = NULL;
  Group g = { .loop = loop, .pending = GROUP_COMMITS };
  guint64 before = vps_queue_get_dir_syncs (f->q);
  guint64 syncs;

  vps_queue_commit_hold (f->q, TRUE);
  for (int i = 0; i < GROUP_COMMITS; i++)
    {
      g_autoptr (GError) error = NULL;
      VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);
      VpsEnvelope *env = make_envelope (vps_queue_writer_get_id (w));

      g_assert_true (vps_queue_writer_write (w, "x\r\n", 3, &error));
      g_ptr_array_add (envs, env);
      vps_queue_commit_async (f->q, w, env, group_done, &g);
    }
  release_when_handed_over (f->q, GROUP_COMMITS);
  g_main_loop_run (loop);
  g_assert_cmpuint (g.ok, ==, GROUP_COMMITS);
  syncs = vps_queue_get_dir_syncs (f->q) - before;
  g_test_message ("%d commits, %" G_GUINT64_FORMAT " directory syncs", GROUP_COMMITS, syncs);
  /* one batch; two if the last commit reached the committer just after
   * the count above saw it off the pool */
  g_assert_cmpuint (syncs, >=, 1);
  g_assert_cmpuint (syncs, <=, 2);
  listed = vps_queue_list (f->q, VPS_QUEUE_INCOMING, NULL);
  g_assert_cmpuint (listed->len, ==, GROUP_COMMITS);
}

/* ---- failing commits --------------------------------------------------------------- */

/* Nothing of the id anywhere in tmp/ or incoming/ (except `keep`). */
static void
assert_no_trace (Fixture *f, const char *id, const char *keep)
{
  static const char *const areas[] = { "tmp", "incoming" };

  for (gsize i = 0; i < G_N_ELEMENTS (areas); i++)
    {
      g_autofree char *names = listing (f, areas[i]);

      if (keep != NULL && strcmp (names, keep) == 0)
        continue;
      if (strstr (names, id) != NULL)
        g_error ("%s/ still has files of %s: %s", areas[i], id, names);
    }
}

/* incoming/ID.json is a directory: the envelope's rename fails after the
 * message's (the worst point): the message is taken back out. */
static void
test_commit_fail_after_rename (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);
  g_autofree char *id = g_strdup (vps_queue_writer_get_id (w));
  g_autofree char *json = g_strconcat (id, ".json", NULL);
  g_autofree char *blocker = path_in (f, "incoming", json);
  g_autoptr (VpsEnvelope) env = make_envelope (id);

  g_assert_cmpint (g_mkdir (blocker, 0700), ==, 0);
  g_assert_true (vps_queue_writer_write (w, "hello\r\n", 7, &error));
  g_assert_false (vps_queue_commit_sync (f->q, w, env, &error));
  g_assert_nonnull (error);
  g_assert_true (error->domain == G_IO_ERROR);
  g_test_message ("%s", error->message);
  assert_no_trace (f, id, json);
  {
    g_autofree char *in = listing (f, "incoming");
    g_autofree char *tmp = listing (f, "tmp");

    g_assert_cmpstr (in, ==, json); /* only our directory */
    g_assert_cmpstr (tmp, ==, "");
  }
  g_assert_nonnull (strstr (f->log->str, "commit failed"));
}

/* incoming/ is a file: the message's rename fails. */
static void
test_commit_fail_incoming_file (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);
  g_autofree char *id = g_strdup (vps_queue_writer_get_id (w));
  g_autoptr (VpsEnvelope) env = make_envelope (id);
  g_autofree char *incoming = g_build_filename (f->dir, "incoming", NULL);
  g_autofree char *aside = g_build_filename (f->dir, "incoming.aside", NULL);
  g_autofree char *tmp = NULL;

  g_assert_cmpint (g_rename (incoming, aside), ==, 0);
  g_assert_true (g_file_set_contents (incoming, "not a directory", -1, NULL));
  g_assert_true (vps_queue_writer_write (w, "hello\r\n", 7, &error));
  g_assert_false (vps_queue_commit_sync (f->q, w, env, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY);
  tmp = listing (f, "tmp");
  g_assert_cmpstr (tmp, ==, "");
  g_assert_cmpint (g_unlink (incoming), ==, 0);
  g_assert_cmpint (g_rename (aside, incoming), ==, 0);
  assert_no_trace (f, id, NULL);
}

/* tmp/ID.json cannot be made: the message goes. */
static void
test_commit_fail_tmp (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);
  g_autofree char *id = g_strdup (vps_queue_writer_get_id (w));
  g_autofree char *json = g_strconcat (id, ".json", NULL);
  g_autofree char *blocker = path_in (f, "tmp", json);
  g_autoptr (VpsEnvelope) env = make_envelope (id);

  g_assert_cmpint (g_mkdir (blocker, 0700), ==, 0);
  g_assert_false (vps_queue_commit_sync (f->q, w, env, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS);
  assert_no_trace (f, id, json);
  g_assert_cmpint (g_rmdir (blocker), ==, 0);
  assert_no_trace (f, id, NULL);
}

/* Refused before any file is touched: an envelope that would not read
 * back, an envelope of another id. */
static void
test_commit_refused (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);
  g_autofree char *id = g_strdup (vps_queue_writer_get_id (w));
  g_autoptr (VpsEnvelope) env = make_envelope (id);
  g_autoptr (VpsEnvelope) other = make_envelope ("0006431E2F3A4B5C");
  VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, 0);

  g_free (r->orcpt);
  r->orcpt = g_strdup ("rfc822;a@b\r\nX-Injected: 1"); /* CVE-2020-28026 */
  g_assert_false (vps_queue_commit_sync (f->q, w, env, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
  g_clear_error (&error);
  assert_no_trace (f, id, NULL);

  w = vps_queue_writer_new (f->q, &error);
  g_free (id);
  id = g_strdup (vps_queue_writer_get_id (w));
  g_assert_false (vps_queue_commit_sync (f->q, w, other, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
  assert_no_trace (f, id, NULL);
}

/* In one group, a failing commit does not take the others down. */
static void
test_commit_group_partial (Fixture *f, gconstpointer data)
{
  AsyncResult r[3] = { { 0 } };
  VpsEnvelope *envs[3];
  g_autofree char *blocker = NULL;

  for (int i = 0; i < 3; i++)
    {
      g_autoptr (GError) error = NULL;
      VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);

      envs[i] = make_envelope (vps_queue_writer_get_id (w));
      if (i == 1)
        {
          g_autofree char *json = g_strconcat (envs[i]->id, ".json", NULL);

          blocker = path_in (f, "incoming", json);
          g_assert_cmpint (g_mkdir (blocker, 0700), ==, 0);
        }
      g_assert_true (vps_queue_writer_write (w, "m\r\n", 3, &error));
      vps_queue_commit_async (f->q, w, envs[i], commit_done, &r[i]);
    }
  while (!r[0].finished || !r[1].finished || !r[2].finished)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (r[0].ok && r[2].ok);
  g_assert_false (r[1].ok);
  g_assert_nonnull (r[1].error);
  g_assert_true (vps_queue_locate (f->q, envs[0]->id, NULL, NULL));
  g_assert_true (vps_queue_locate (f->q, envs[2]->id, NULL, NULL));
  g_assert_cmpint (g_rmdir (blocker), ==, 0);
  g_assert_false (vps_queue_locate (f->q, envs[1]->id, NULL, NULL));
  assert_no_trace (f, envs[1]->id, NULL);
  g_clear_error (&r[1].error);
  for (int i = 0; i < 3; i++)
    vps_envelope_free (envs[i]);
}

/* The same when the failure comes in the first stage (on the sync pool:
 * tmp/ID.json cannot be made), among more commits in flight than the pool
 * has threads: the others land in one group, the failed one leaves
 * nothing. */
#define SYNC_PARTIAL_COMMITS 40

static void
test_commit_sync_partial (Fixture *f, gconstpointer data)
{
  AsyncResult r[SYNC_PARTIAL_COMMITS] = { { 0 } };
  VpsEnvelope *envs[SYNC_PARTIAL_COMMITS];
  g_autofree char *blocker = NULL;
  guint64 before = vps_queue_get_dir_syncs (f->q);
  guint finished = 0;

  vps_queue_commit_hold (f->q, TRUE);
  for (int i = 0; i < SYNC_PARTIAL_COMMITS; i++)
    {
      g_autoptr (GError) error = NULL;
      VpsQueueWriter *w = vps_queue_writer_new (f->q, &error);

      envs[i] = make_envelope (vps_queue_writer_get_id (w));
      if (i == SYNC_PARTIAL_COMMITS / 2)
        {
          g_autofree char *json = g_strconcat (envs[i]->id, ".json", NULL);

          blocker = path_in (f, "tmp", json);
          g_assert_cmpint (g_mkdir (blocker, 0700), ==, 0);
        }
      g_assert_true (vps_queue_writer_write (w, "m\r\n", 3, &error));
      vps_queue_commit_async (f->q, w, envs[i], commit_done, &r[i]);
    }
  release_when_handed_over (f->q, SYNC_PARTIAL_COMMITS);
  while (finished < SYNC_PARTIAL_COMMITS)
    {
      g_main_context_iteration (NULL, TRUE);
      finished = 0;
      for (int i = 0; i < SYNC_PARTIAL_COMMITS; i++)
        finished += r[i].finished;
    }
  for (int i = 0; i < SYNC_PARTIAL_COMMITS; i++)
    {
      if (i == SYNC_PARTIAL_COMMITS / 2)
        continue;
      g_assert_no_error (r[i].error);
      g_assert_true (r[i].ok);
      g_assert_true (r[i].thread == g_thread_self ());
      g_assert_true (vps_queue_locate (f->q, envs[i]->id, NULL, NULL));
    }
  g_assert_false (r[SYNC_PARTIAL_COMMITS / 2].ok);
  g_assert_error (r[SYNC_PARTIAL_COMMITS / 2].error, G_IO_ERROR, G_IO_ERROR_EXISTS);
  g_assert_cmpuint (vps_queue_get_dir_syncs (f->q) - before, >=, 1);
  g_assert_cmpuint (vps_queue_get_dir_syncs (f->q) - before, <=, 2);
  g_assert_cmpint (g_rmdir (blocker), ==, 0);
  assert_no_trace (f, envs[SYNC_PARTIAL_COMMITS / 2]->id, NULL);
  {
    g_autofree char *tmp = listing (f, "tmp");

    g_assert_cmpstr (tmp, ==, "");
  }
  g_assert_nonnull (strstr (f->log->str, "commit failed"));
  g_clear_error (&r[SYNC_PARTIAL_COMMITS / 2].error);
  for (int i = 0; i < SYNC_PARTIAL_COMMITS; i++)
    vps_envelope_free (envs[i]);
}

/* The caller drops its queue while commits are in flight: they land, and
 * the queue is freed by whoever holds the last reference (maybe the
 * committer thread). */
static void
test_unref_during_commit (void)
{
  g_autofree char *dir = g_build_filename (g_get_user_data_dir (), "spool2", NULL);
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (GError) error = NULL;
  VpsQueue *q = vps_queue_open (dir, TRUE, &error);
  Group g = { .loop = loop, .pending = 8 };
  VpsEnvelope *envs[8];

  g_assert_no_error (error);
  for (int i = 0; i < 8; i++)
    {
      VpsQueueWriter *w = vps_queue_writer_new (q, &error);

      envs[i] = make_envelope (vps_queue_writer_get_id (w));
      vps_queue_commit_async (q, w, envs[i], group_done, &g);
    }
  vps_queue_unref (q);
  g_main_loop_run (loop);
  g_assert_cmpuint (g.ok, ==, 8);
  /* the lock is free again once the committer has freed the queue (just
   * after the callbacks) */
  for (int tries = 0; (q = vps_queue_open (dir, TRUE, &error)) == NULL && tries < 5000; tries++)
    {
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_LOCKED);
      g_clear_error (&error);
      g_usleep (1000);
    }
  g_assert_no_error (error);
  {
    g_autoptr (GPtrArray) ids = vps_queue_list (q, VPS_QUEUE_INCOMING, NULL);

    g_assert_cmpuint (ids->len, ==, 8);
  }
  vps_queue_unref (q);
  for (int i = 0; i < 8; i++)
    vps_envelope_free (envs[i]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/mta/queue/commit/reopen", test_commit_reopen);
  ADD ("/mta/queue/commit/async", test_commit_async);
  ADD ("/mta/queue/commit/concurrent", test_concurrent_commits);
  ADD ("/mta/queue/commit/group", test_group_commit);
  ADD ("/mta/queue/commit/fail/after-rename", test_commit_fail_after_rename);
  ADD ("/mta/queue/commit/fail/incoming-file", test_commit_fail_incoming_file);
  ADD ("/mta/queue/commit/fail/tmp", test_commit_fail_tmp);
  ADD ("/mta/queue/commit/fail/refused", test_commit_refused);
  ADD ("/mta/queue/commit/fail/group-partial", test_commit_group_partial);
  ADD ("/mta/queue/commit/fail/sync-partial", test_commit_sync_partial);
  ADD ("/mta/queue/writer/abort", test_writer_abort);
  ADD ("/mta/queue/writer/map-replace", test_writer_map_replace);
#undef ADD
  g_test_add_func ("/mta/queue/unref-during-commit", test_unref_during_commit);
  return g_test_run ();
}
