/* SPDX-License-Identifier: MIT
 *
 * test-queue.c — the spool: layout and lock, ids across threads, recovery
 * from the files each kind of crash leaves (made by hand here),
 * hold/release/remove and the crash points of a move, envelope updates,
 * ids that are not ids.  The writer and the commit are in
 * test-queue-commit.c.
 */
#include "mta/queue.h"
#include "tests/mta/queue-test-util.h"
#include "vps/log.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Write a file as a crash (or a hand) left it. */
static void
put_file (Fixture *f, const char *area, const char *name, const char *data, gssize len)
{
  g_autofree char *path = path_in (f, area, name);

  g_assert_true (g_file_set_contents (path, data, len, NULL));
}

/* A whole entry by hand: ID.eml and an ID.json that fits it. */
static void
put_entry (Fixture *f, const char *area, const char *id, const char *msg)
{
  g_autoptr (VpsEnvelope) env = make_envelope (id);
  g_autofree char *eml = g_strconcat (id, ".eml", NULL);
  g_autofree char *json = g_strconcat (id, ".json", NULL);
  g_autofree char *data = NULL;

  env->size = strlen (msg);
  data = vps_envelope_to_data (env, TRUE, NULL);
  put_file (f, area, eml, msg, -1);
  put_file (f, area, json, data, -1);
}

/* ---- layout, lock ------------------------------------------------------------ */

static void
test_layout (Fixture *f, gconstpointer data)
{
  static const char *const dirs[] = { "tmp", "incoming", "hold", "corrupt" };
  g_autofree char *lock = g_build_filename (f->dir, "lock", NULL);

  g_assert_cmpuint (file_mode (f->dir), ==, 0700);
  for (gsize i = 0; i < G_N_ELEMENTS (dirs); i++)
    {
      g_autofree char *p = g_build_filename (f->dir, dirs[i], NULL);

      g_assert_cmpuint (file_mode (p), ==, 0700);
    }
  g_assert_cmpuint (file_mode (lock), ==, 0600);
  g_assert_true (g_path_is_absolute (vps_queue_get_dir (f->q)));
  g_assert_cmpstr (vps_queue_area_name (VPS_QUEUE_INCOMING), ==, "incoming");
  g_assert_cmpstr (vps_queue_area_name (VPS_QUEUE_HOLD), ==, "hold");
  g_assert_cmpstr (vps_queue_area_name (VPS_QUEUE_CORRUPT), ==, "corrupt");
}

static void
test_lock (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsQueue) second = vps_queue_open (f->dir, TRUE, &error);
  g_autoptr (VpsQueue) reader = NULL;

  g_assert_null (second);
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_LOCKED);
  g_clear_error (&error);
  /* vpsctl's open: no lock, no recovery */
  reader = vps_queue_open (f->dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_nonnull (reader);
  /* the lock goes with the owner */
  g_clear_pointer (&f->q, vps_queue_unref);
  f->q = vps_queue_open (f->dir, TRUE, &error);
  g_assert_no_error (error);
}

static void
test_open_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *missing = g_build_filename (g_get_user_data_dir (), "missing", NULL);
  g_autofree char *file = g_build_filename (g_get_user_data_dir (), "plain", NULL);
  g_autofree char *below = g_build_filename (file, "q", NULL);

  g_assert_null (vps_queue_open (missing, FALSE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (g_file_test (missing, G_FILE_TEST_EXISTS)); /* nothing made */

  g_assert_cmpint (g_mkdir_with_parents (g_get_user_data_dir (), 0700), ==, 0);
  g_assert_true (g_file_set_contents (file, "x", -1, NULL));
  g_assert_null (vps_queue_open (file, FALSE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY);
  g_clear_error (&error);
  g_assert_null (vps_queue_open (file, TRUE, &error));
  g_assert_nonnull (error);
  g_assert_true (error->domain == G_IO_ERROR);
  g_clear_error (&error);
  g_assert_null (vps_queue_open (below, TRUE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY);
}

static void
test_has_space (Fixture *f, gconstpointer data)
{
  g_assert_true (vps_queue_has_space (f->q, 0));
  g_assert_true (vps_queue_has_space (f->q, 4096));
  g_assert_false (vps_queue_has_space (f->q, G_MAXUINT64));
}

/* ---- ids ------------------------------------------------------------------------- */

#define ID_THREADS 4
#define IDS_PER_THREAD 10000

static gpointer
make_ids (gpointer data)
{
  char **ids = data;

  for (int i = 0; i < IDS_PER_THREAD; i++)
    ids[i] = vps_queue_new_id ();
  return NULL;
}

static void
test_ids_threads (void)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  char **ids[ID_THREADS];
  GThread *threads[ID_THREADS];
  g_autofree char *before = vps_queue_new_id ();

  for (int t = 0; t < ID_THREADS; t++)
    {
      ids[t] = g_new0 (char *, IDS_PER_THREAD + 1);
      threads[t] = g_thread_new ("ids", make_ids, ids[t]);
    }
  for (int t = 0; t < ID_THREADS; t++)
    g_thread_join (threads[t]);
  for (int t = 0; t < ID_THREADS; t++)
    {
      for (int i = 0; i < IDS_PER_THREAD; i++)
        {
          g_assert_true (vps_queue_valid_id (ids[t][i]));
          g_assert_cmpstr (ids[t][i], >, before);
          if (i > 0)
            g_assert_cmpstr (ids[t][i], >, ids[t][i - 1]);
          g_assert_true (g_hash_table_add (seen, ids[t][i]));
        }
    }
  g_assert_cmpuint (g_hash_table_size (seen), ==, ID_THREADS * IDS_PER_THREAD);
  for (int t = 0; t < ID_THREADS; t++)
    g_strfreev (ids[t]);
}

static void
test_valid_id (void)
{
  static const char *const bad[] = {
    "",
    "0006431E2F3A4B5",
    "0006431E2F3A4B5C0",
    "0006431e2f3a4b5c",
    "../../../etc/pass",
    "0006431E2F3A4B5G",
    "0006431E2F3A4B5/",
    " 006431E2F3A4B5C",
    "0006431E2F3A4B.C",
  };

  g_assert_true (vps_queue_valid_id ("0006431E2F3A4B5C"));
  g_assert_true (vps_queue_valid_id ("FFFFFFFFFFFFFFFF"));
  g_assert_false (vps_queue_valid_id (NULL));
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    g_assert_false (vps_queue_valid_id (bad[i]));
}

/* ---- recovery ---------------------------------------------------------------------- */

/* Ids in the future, so that the floor check below means something. */
#define RID(n) "00070000000000" n

static void
test_recovery (Fixture *f, gconstpointer data)
{
  g_autoptr (GPtrArray) incoming = NULL;
  g_autoptr (GPtrArray) hold = NULL;
  g_autoptr (GPtrArray) corrupt = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *corrupt_files = NULL;
  g_autofree char *next = NULL;
  g_autofree char *other = NULL;
  g_autoptr (VpsEnvelope) env10 = make_envelope (RID ("10"));

  /* killed before the envelope's rename: message alone */
  put_file (f, "incoming", RID ("01") ".eml", "half", -1);
  put_file (f, "hold", RID ("02") ".eml", "half", -1);
  /* killed while writing */
  put_file (f, "tmp", RID ("03") ".eml", "partial", -1);
  put_file (f, "tmp", RID ("03") ".json", "{\"id\":", -1);
  put_file (f, "tmp", RID ("04") ".eml.new", "x", -1);
  put_file (f, "tmp", "stray", "x", -1);
  /* an envelope that does not parse */
  put_file (f, "incoming", RID ("05") ".eml", "message 5", -1);
  put_file (f, "incoming", RID ("05") ".json", "{\"id\":\"" RID ("05") "\",", -1);
  /* an envelope of another id */
  put_entry (f, "incoming", RID ("06"), "message 6");
  {
    g_autofree char *path = path_in (f, "incoming", RID ("06") ".json");
    g_autofree char *text = NULL;
    g_autofree char *moved = NULL;

    g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
    moved = g_strdup_printf ("%s", text);
    memcpy (strstr (moved, RID ("06")), RID ("66"), VPS_QUEUE_ID_LEN);
    g_assert_true (g_file_set_contents (path, moved, -1, NULL));
  }
  /* an envelope without its message */
  other = vps_envelope_to_data (env10, FALSE, NULL);
  put_file (f, "incoming", RID ("07") ".json", other, -1);
  put_entry (f, "hold", RID ("08"), "message 8");
  {
    g_autofree char *eml = path_in (f, "hold", RID ("08") ".eml");

    g_assert_cmpint (unlink (eml), ==, 0);
  }
  /* a message shorter than its envelope says (truncated) */
  put_entry (f, "incoming", RID ("09"), "message 9, whole");
  put_file (f, "incoming", RID ("09") ".eml", "message 9", -1);
  /* good ones stay */
  put_entry (f, "incoming", RID ("0A"), "message A");
  put_entry (f, "hold", RID ("0B"), "message B");
  /* not ours: left alone */
  put_file (f, "incoming", "README", "hands off", -1);

  reopen (f);

  tmp = listing (f, "tmp");
  g_assert_cmpstr (tmp, ==, "");
  incoming = vps_queue_list (f->q, VPS_QUEUE_INCOMING, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (incoming->len, ==, 1);
  g_assert_cmpstr (g_ptr_array_index (incoming, 0), ==, RID ("0A"));
  hold = vps_queue_list (f->q, VPS_QUEUE_HOLD, &error);
  g_assert_cmpuint (hold->len, ==, 1);
  g_assert_cmpstr (g_ptr_array_index (hold, 0), ==, RID ("0B"));
  {
    g_autofree char *in = listing (f, "incoming");
    g_autofree char *h = listing (f, "hold");

    g_assert_cmpstr (in, ==, RID ("0A") ".eml " RID ("0A") ".json README");
    g_assert_cmpstr (h, ==, RID ("0B") ".eml " RID ("0B") ".json");
  }
  corrupt_files = listing (f, "corrupt");
  g_assert_cmpstr (
      corrupt_files, ==,
      RID ("05") ".eml " RID ("05") ".json " RID ("06") ".eml " RID ("06") ".json " RID (
          "07") ".json " RID ("08") ".json " RID ("09") ".eml " RID ("09") ".json");
  corrupt = vps_queue_list (f->q, VPS_QUEUE_CORRUPT, &error);
  g_assert_cmpuint (corrupt->len, ==, 5);
  g_assert_cmpstr (g_ptr_array_index (corrupt, 0), ==, RID ("05"));
  g_assert_cmpstr (g_ptr_array_index (corrupt, 4), ==, RID ("09"));

  /* one log line per file, each with its id */
  g_test_message ("%s", f->log->str);
  {
    static const char *const expect[] = {
      "queue: " RID ("01") ": removed incoming/" RID ("01") ".eml: incomplete commit",
      "queue: " RID ("02") ": removed hold/" RID ("02") ".eml: incomplete commit",
      "queue: " RID ("03") ": removed tmp/" RID ("03") ".eml",
      "queue: " RID ("03") ": removed tmp/" RID ("03") ".json",
      "queue: " RID ("04") ": removed tmp/" RID ("04") ".eml.new",
      "removed tmp/stray",
      "queue: " RID ("05") ": moved to corrupt/: envelope: ",
      "(incoming/" RID ("05") ".eml)",
      "(incoming/" RID ("05") ".json)",
      "queue: " RID ("06") ": moved to corrupt/: envelope of " RID ("66"),
      "queue: " RID ("07") ": moved to corrupt/: envelope without message (incoming/",
      "queue: " RID ("08") ": moved to corrupt/: envelope without message (hold/",
      "queue: " RID ("09") ": moved to corrupt/: message has 9 bytes, envelope says 16",
      "ignoring incoming/README",
    };

    for (gsize i = 0; i < G_N_ELEMENTS (expect); i++)
      if (strstr (f->log->str, expect[i]) == NULL)
        g_error ("log line missing: %s", expect[i]);
    g_assert_nonnull (strstr (f->log->str, "id=" RID ("05")));
  }

  /* ids go on above what the spool holds (a clock set back) */
  next = vps_queue_new_id ();
  g_assert_cmpstr (next, >, RID ("0B"));

  /* and a second recovery has nothing left to do (but to warn again) */
  g_string_truncate (f->log, 0);
  reopen (f);
  g_assert_cmpstr (f->log->str, ==, "warning queue: ignoring incoming/README: not a queue file\n");
}

/* An envelope bigger than the limit (sparse: nothing is really written):
 * not read, moved aside. */
static void
test_recovery_huge_envelope (Fixture *f, gconstpointer data)
{
  g_autofree char *json = path_in (f, "incoming", RID ("20") ".json");
  g_autoptr (GError) error = NULL;
  g_autofree char *corrupt = NULL;
  int fd;

  put_entry (f, "incoming", RID ("20"), "m");
  fd = open (json, O_WRONLY);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, VPS_QUEUE_MAX_ENVELOPE + 1), ==, 0);
  close (fd);
  g_assert_null (vps_queue_load_envelope (f->q, RID ("20"), &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
  reopen (f);
  corrupt = listing (f, "corrupt");
  g_assert_cmpstr (corrupt, ==, RID ("20") ".eml " RID ("20") ".json");
  g_assert_nonnull (strstr (f->log->str, "larger than"));
}

/* ---- hold, release, remove ---------------------------------------------------------- */

static void
test_hold_release_remove (Fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) msg = make_message (1000, 6);
  g_autofree char *id = queue_message (f->q, msg);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) in = NULL;
  g_autoptr (GPtrArray) held = NULL;
  g_autoptr (GBytes) back = NULL;
  g_autoptr (VpsEnvelope) env = NULL;
  g_autofree char *hold_files = NULL;
  g_autofree char *in_files = NULL;
  VpsQueueArea area;

  g_assert_true (vps_queue_hold (f->q, id, &error));
  g_assert_no_error (error);
  g_assert_true (vps_queue_locate (f->q, id, &area, &error));
  g_assert_cmpint (area, ==, VPS_QUEUE_HOLD);
  in = vps_queue_list (f->q, VPS_QUEUE_INCOMING, &error);
  held = vps_queue_list (f->q, VPS_QUEUE_HOLD, &error);
  g_assert_cmpuint (in->len, ==, 0);
  g_assert_cmpuint (held->len, ==, 1);
  in_files = listing (f, "incoming");
  g_assert_cmpstr (in_files, ==, "");
  hold_files = listing (f, "hold");
  {
    g_autofree char *expect = g_strdup_printf ("%s.eml %s.json", id, id);

    g_assert_cmpstr (hold_files, ==, expect);
  }
  /* held messages can be read */
  back = vps_queue_load_message (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (back, msg));
  env = vps_queue_load_envelope (f->q, id, &error);
  g_assert_no_error (error);
  /* holding twice changes nothing; it survives a restart */
  g_assert_true (vps_queue_hold (f->q, id, &error));
  reopen (f);
  g_assert_true (vps_queue_locate (f->q, id, &area, &error));
  g_assert_cmpint (area, ==, VPS_QUEUE_HOLD);

  g_assert_true (vps_queue_release (f->q, id, &error));
  g_assert_no_error (error);
  g_assert_true (vps_queue_locate (f->q, id, &area, &error));
  g_assert_cmpint (area, ==, VPS_QUEUE_INCOMING);
  g_assert_true (vps_queue_release (f->q, id, &error));
  g_assert_no_error (error);

  g_assert_true (vps_queue_remove (f->q, id, &error));
  g_assert_no_error (error);
  g_clear_pointer (&in_files, g_free);
  in_files = listing (f, "incoming");
  g_assert_cmpstr (in_files, ==, "");

  /* gone: every call says so */
  g_assert_false (vps_queue_locate (f->q, id, &area, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (vps_queue_remove (f->q, id, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (vps_queue_hold (f->q, id, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (vps_queue_release (f->q, id, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_null (vps_queue_load_envelope (f->q, id, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_null (vps_queue_load_message (f->q, id, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
}

/* No path is ever built from an id that is not one. */
static void
test_bad_ids (Fixture *f, gconstpointer data)
{
  static const char *const bad[]
      = { "../x", "../../etc/passwd", "", "0006431e2f3a4b5c", "0006431E2F3A4B5C/../../x" };
  g_autofree char *outside = g_build_filename (f->dir, "x.json", NULL);

  /* a file the traversal would reach */
  g_assert_true (g_file_set_contents (outside, "{}", -1, NULL));
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsEnvelope) env = make_envelope (bad[i]);

      g_assert_false (vps_queue_locate (f->q, bad[i], NULL, &error));
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_false (vps_queue_remove (f->q, bad[i], &error));
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_false (vps_queue_hold (f->q, bad[i], &error));
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_false (vps_queue_release (f->q, bad[i], &error));
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_null (vps_queue_load_envelope (f->q, bad[i], &error));
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_null (vps_queue_load_envelope_data (f->q, bad[i], &error));
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_null (vps_queue_load_message (f->q, bad[i], &error));
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_false (vps_queue_update_envelope (f->q, env, &error));
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID);
    }
  g_assert_true (g_file_test (outside, G_FILE_TEST_IS_REGULAR));
}

/* Every crash point of a hold: recovery ends with the message in one
 * place, whole. */
static void
test_hold_crash_points (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  VpsQueueArea area;

  /* 1: hold/ID.eml linked, envelope not moved yet → stays in incoming */
  put_entry (f, "incoming", RID ("30"), "message 30");
  put_file (f, "hold", RID ("30") ".eml", "message 30", -1);
  /* 2: envelope moved, old link not removed yet → now in hold */
  put_entry (f, "hold", RID ("31"), "message 31");
  put_file (f, "incoming", RID ("31") ".eml", "message 31", -1);
  reopen (f);
  g_assert_true (vps_queue_locate (f->q, RID ("30"), &area, &error));
  g_assert_cmpint (area, ==, VPS_QUEUE_INCOMING);
  g_assert_true (vps_queue_locate (f->q, RID ("31"), &area, &error));
  g_assert_cmpint (area, ==, VPS_QUEUE_HOLD);
  {
    g_autofree char *in = listing (f, "incoming");
    g_autofree char *h = listing (f, "hold");
    g_autofree char *c = listing (f, "corrupt");

    g_assert_cmpstr (in, ==, RID ("30") ".eml " RID ("30") ".json");
    g_assert_cmpstr (h, ==, RID ("31") ".eml " RID ("31") ".json");
    g_assert_cmpstr (c, ==, "");
  }
  /* a link left by case 1 does not stop the next hold */
  put_file (f, "hold", RID ("30") ".eml", "message 30", -1);
  g_assert_true (vps_queue_hold (f->q, RID ("30"), &error));
  g_assert_no_error (error);
  g_assert_true (vps_queue_locate (f->q, RID ("30"), &area, &error));
  g_assert_cmpint (area, ==, VPS_QUEUE_HOLD);
}

/* ---- envelope updates ------------------------------------------------------------- */

static void
test_update_envelope (Fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) msg = make_message (50, 7);
  g_autofree char *id = queue_message (f->q, msg);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsEnvelope) env = vps_queue_load_envelope (f->q, id, &error);
  g_autoptr (VpsEnvelope) back = NULL;
  VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, 0);
  g_autofree char *tmp = NULL;
  g_autofree char *in = NULL;

  r->state = VPS_RCPT_DELIVERED;
  r->result = g_strdup ("250 2.0.0 delivered");
  r->updated = g_get_real_time ();
  env->attempts = 1;
  g_assert_true (vps_queue_update_envelope (f->q, env, &error));
  g_assert_no_error (error);
  reopen (f);
  back = vps_queue_load_envelope (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (back->attempts, ==, 1);
  g_assert_cmpint (((VpsQueueRcpt *)g_ptr_array_index (back->rcpts, 0))->state, ==,
                   VPS_RCPT_DELIVERED);
  tmp = listing (f, "tmp");
  g_assert_cmpstr (tmp, ==, "");

  /* while held: updated where it is */
  g_assert_true (vps_queue_hold (f->q, id, &error));
  env->attempts = 2;
  g_assert_true (vps_queue_update_envelope (f->q, env, &error));
  g_clear_pointer (&back, vps_envelope_free);
  back = vps_queue_load_envelope (f->q, id, &error);
  g_assert_cmpuint (back->attempts, ==, 2);

  /* removed meanwhile (vpsctl queue delete): no envelope comes back */
  g_assert_true (vps_queue_remove (f->q, id, &error));
  g_assert_false (vps_queue_update_envelope (f->q, env, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  in = listing (f, "hold");
  g_assert_cmpstr (in, ==, "");
  g_clear_pointer (&tmp, g_free);
  tmp = listing (f, "tmp");
  g_assert_cmpstr (tmp, ==, "");

  /* an envelope that would not read back is not written */
  put_entry (f, "incoming", RID ("40"), "m");
  g_clear_pointer (&env->id, g_free);
  env->id = g_strdup (RID ("40"));
  g_free (env->sender);
  env->sender = g_strdup ("a@b\r\nDATA");
  g_assert_false (vps_queue_update_envelope (f->q, env, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
  g_clear_pointer (&back, vps_envelope_free);
  back = vps_queue_load_envelope (f->q, RID ("40"), NULL);
  g_assert_cmpstr (back->sender, ==, "alice@example.net");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/mta/queue/layout", test_layout);
  ADD ("/mta/queue/lock", test_lock);
  ADD ("/mta/queue/has-space", test_has_space);
  ADD ("/mta/queue/recovery", test_recovery);
  ADD ("/mta/queue/recovery/huge-envelope", test_recovery_huge_envelope);
  ADD ("/mta/queue/hold-release-remove", test_hold_release_remove);
  ADD ("/mta/queue/hold/crash-points", test_hold_crash_points);
  ADD ("/mta/queue/bad-ids", test_bad_ids);
  ADD ("/mta/queue/update-envelope", test_update_envelope);
#undef ADD
  g_test_add_func ("/mta/queue/open-errors", test_open_errors);
  g_test_add_func ("/mta/queue/ids/valid", test_valid_id);
  g_test_add_func ("/mta/queue/ids/threads", test_ids_threads);
  return g_test_run ();
}
