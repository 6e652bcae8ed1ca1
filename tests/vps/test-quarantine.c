/* SPDX-License-Identifier: MIT
 *
 * test-quarantine.c — the quarantine store: store/list/show/delete, file
 * modes, id and name validation (no path traversal), and write failures
 * that must leave no partial entry.
 */
#include "vps/quarantine.h"
#include "vps/log.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct
{
  char *dir;
  VpsQuarantine *q;
  GString *log;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->log = g_string_new (NULL);
  vps_log_capture (f->log);
  /* a directory that does not exist yet: open creates it (with parents) */
  f->dir = g_build_filename (g_get_user_data_dir (), "spool", "quarantine", NULL);
  f->q = vps_quarantine_open (f->dir, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->q);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  vps_quarantine_unref (f->q);
  g_free (f->dir);
  vps_log_capture (NULL);
  g_string_free (f->log, TRUE);
}

static guint
file_mode (const char *path)
{
  struct stat st;

  g_assert_cmpint (stat (path, &st), ==, 0);
  return st.st_mode & 07777;
}

static gint
str_ptr_cmp (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

/* Every name in dir/name, sorted (temp files included). */
static char *
dir_listing (const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *n;

  while (d != NULL && (n = g_dir_read_name (d)) != NULL)
    g_ptr_array_add (names, g_strdup (n));
  g_ptr_array_sort (names, str_ptr_cmp);
  g_ptr_array_add (names, NULL);
  return g_strjoinv (" ", (char **)names->pdata);
}

static JsonObject *
flat_meta (const char *subject)
{
  JsonObject *o = json_object_new ();
  JsonArray *a = json_array_new ();

  json_object_set_string_member (o, "sender", "bad@example.org");
  json_array_add_string_element (a, "a@example.net");
  json_array_add_string_element (a, "b@example.net");
  json_object_set_array_member (o, "recipients", a);
  json_object_set_string_member (o, "subject", subject);
  json_object_set_string_member (o, "reason", "virus Eicar");
  json_object_set_string_member (o, "rule", "virus");
  json_object_set_string_member (o, "id", "TXN-1"); /* collides with ours */
  return o;
}

static const char raw_msg[] = "Subject: hi\r\n\r\nbody\0with NUL\r\n";

static void
test_store (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) raw = g_bytes_new_static (raw_msg, sizeof raw_msg - 1);
  g_autoptr (JsonObject) meta = flat_meta ("hello");
  g_autofree char *id = NULL;
  g_autofree char *eml = NULL;
  g_autofree char *json_path = NULL;
  g_autofree char *sub = g_build_filename (f->dir, "virus", NULL);
  g_autofree char *json = NULL;
  g_autofree char *sha = g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, raw);
  g_autoptr (GBytes) back = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (VpsQuarantineEntry) e = NULL;
  JsonObject *o;

  g_assert_cmpuint (file_mode (f->dir), ==, 0700);
  g_assert_true (vps_quarantine_store (f->q, "virus", raw, meta, &id, &error));
  g_assert_no_error (error);
  g_assert_true (vps_quarantine_valid_id (id));
  g_assert_cmpuint (strlen (id), ==, VPS_QUARANTINE_ID_LEN);
  g_assert_cmpuint (file_mode (sub), ==, 0700);

  eml = g_strdup_printf ("%s/%s.eml", sub, id);
  json_path = g_strdup_printf ("%s/%s.json", sub, id);
  g_assert_cmpuint (file_mode (eml), ==, 0600);
  g_assert_cmpuint (file_mode (json_path), ==, 0600);
  {
    g_autofree char *listing = dir_listing (f->dir, "virus");
    g_autofree char *expect = g_strdup_printf ("%s.eml %s.json", id, id);

    g_assert_cmpstr (listing, ==, expect); /* no temp file left */
  }

  /* the raw bytes exactly, NUL included */
  back = vps_quarantine_get_raw (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (back, raw));

  json = vps_quarantine_get_json (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_true (json_parser_load_from_data (parser, json, -1, NULL));
  o = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (o, "id"), ==, id);
  g_assert_cmpstr (json_object_get_string_member (o, "meta_id"), ==, "TXN-1");
  g_assert_cmpstr (json_object_get_string_member (o, "name"), ==, "virus");
  g_assert_cmpint (json_object_get_int_member (o, "size"), ==, sizeof raw_msg - 1);
  g_assert_cmpstr (json_object_get_string_member (o, "sha256"), ==, sha);
  g_assert_true (g_str_has_suffix (json_object_get_string_member (o, "stored"), "Z"));
  g_assert_cmpstr (json_object_get_string_member (o, "subject"), ==, "hello");

  e = vps_quarantine_get_entry (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (e->id, ==, id);
  g_assert_cmpstr (e->name, ==, "virus");
  g_assert_cmpstr (e->sender, ==, "bad@example.org");
  g_assert_cmpuint (g_strv_length (e->recipients), ==, 2);
  g_assert_cmpstr (e->recipients[1], ==, "b@example.net");
  g_assert_cmpstr (e->subject, ==, "hello");
  g_assert_cmpstr (e->reason, ==, "virus Eicar");
  g_assert_cmpstr (e->rule, ==, "virus");
  g_assert_cmpuint (e->size, ==, sizeof raw_msg - 1);
  g_assert_cmpint (ABS (e->time - g_get_real_time () / G_USEC_PER_SEC), <=, 5);
  /* the id's time part is the store time */
  {
    g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (e->time);
    g_autofree char *stamp = g_date_time_format (t, "%Y%m%dT%H%M%SZ-");

    g_assert_true (g_str_has_prefix (id, stamp));
  }
}

/* The shape vps_report_metadata() writes: envelope.from/rcpts, headers.subject. */
static void
test_store_report_meta (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) raw = g_bytes_new_static ("x\r\n", 3);
  g_autoptr (JsonObject) meta = json_object_new ();
  JsonObject *env = json_object_new ();
  JsonObject *headers = json_object_new ();
  JsonArray *rcpts = json_array_new ();
  g_autofree char *id = NULL;
  g_autoptr (VpsQuarantineEntry) e = NULL;

  json_object_set_string_member (env, "from", "s@example.org");
  json_array_add_string_element (rcpts, "r@example.net");
  json_array_add_int_element (rcpts, 5); /* not a string: ignored */
  json_object_set_array_member (env, "rcpts", rcpts);
  json_object_set_object_member (meta, "envelope", env);
  json_object_set_string_member (headers, "subject", "Re: x");
  json_object_set_object_member (meta, "headers", headers);
  json_object_set_null_member (meta, "reason");
  json_object_set_int_member (meta, "time", 12);

  g_assert_true (vps_quarantine_store (f->q, "spam", raw, meta, &id, &error));
  e = vps_quarantine_get_entry (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (e->sender, ==, "s@example.org");
  g_assert_cmpuint (g_strv_length (e->recipients), ==, 1);
  g_assert_cmpstr (e->subject, ==, "Re: x");
  g_assert_null (e->reason);
  g_assert_null (e->rule);
  g_assert_cmpint (e->time, !=, 12); /* ours, not the caller's */

  /* no meta at all */
  g_clear_pointer (&id, g_free);
  g_clear_pointer (&e, vps_quarantine_entry_free);
  g_assert_true (vps_quarantine_store (f->q, "spam", raw, NULL, &id, &error));
  e = vps_quarantine_get_entry (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_null (e->sender);
  g_assert_nonnull (e->recipients);
  g_assert_null (e->recipients[0]);
}

static void
test_list_delete (Fixture *f, gconstpointer data)
{
  static const char *const names[] = { "virus", "spam", "virus", "bulk", "spam", "virus" };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) all = NULL;
  g_autoptr (GPtrArray) virus = NULL;
  g_autoptr (GPtrArray) none = NULL;
  g_autoptr (GBytes) raw = g_bytes_new_static ("m\r\n", 3);
  g_autofree char *deleted = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *subject = g_strdup_printf ("s%zu", i);
      g_autoptr (JsonObject) meta = flat_meta (subject);

      g_assert_true (vps_quarantine_store (f->q, names[i], raw, meta, NULL, &error));
      g_assert_no_error (error);
    }
  /* files that are not entries are ignored */
  {
    g_autofree char *junk = g_build_filename (f->dir, "virus", "README.json", NULL);
    g_autofree char *bad = g_build_filename (f->dir, "Bad Name", NULL);

    g_assert_true (g_file_set_contents (junk, "{}", -1, NULL));
    g_assert_cmpint (g_mkdir (bad, 0700), ==, 0);
  }

  all = vps_quarantine_list (f->q, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (all->len, ==, G_N_ELEMENTS (names));
  for (guint i = 1; i < all->len; i++)
    {
      const VpsQuarantineEntry *a = g_ptr_array_index (all, i - 1);
      const VpsQuarantineEntry *b = g_ptr_array_index (all, i);

      g_assert_cmpstr (a->id, <, b->id);
    }
  virus = vps_quarantine_list (f->q, "virus", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (virus->len, ==, 3);
  for (guint i = 0; i < virus->len; i++)
    g_assert_cmpstr (((VpsQuarantineEntry *)g_ptr_array_index (virus, i))->name, ==, "virus");
  none = vps_quarantine_list (f->q, "nothing-here", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (none->len, ==, 0);
  g_assert_null (vps_quarantine_list (f->q, "../virus", &error));
  g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_NAME);
  g_clear_error (&error);

  /* delete removes both files; the entry is gone for every lookup */
  deleted = g_strdup (((VpsQuarantineEntry *)g_ptr_array_index (virus, 1))->id);
  g_assert_true (vps_quarantine_delete (f->q, deleted, &error));
  g_assert_no_error (error);
  g_assert_null (vps_quarantine_get_raw (f->q, deleted, &error));
  g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_false (vps_quarantine_delete (f->q, deleted, &error));
  g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  {
    g_autofree char *listing = dir_listing (f->dir, "virus");

    g_assert_null (strstr (listing, deleted));
  }
  g_clear_pointer (&virus, g_ptr_array_unref);
  virus = vps_quarantine_list (f->q, "virus", &error);
  g_assert_cmpuint (virus->len, ==, 2);
}

static void
test_bad_ids (Fixture *f, gconstpointer data)
{
  static const char *const ids[] = {
    "../x",
    "../../../../etc/passwd",
    "20261128T214000Z-0123456789ab/../../x",
    "../20261128T214000Z-0123456",
    "",
    "20261128T214000Z-0123456789AB",
    "20261128T214000Z-0123456789a",
    "20261128T214000Z-0123456789abc",
    "2026112xT214000Z-0123456789ab",
    "20261128 214000Z-0123456789ab",
    "20261128T214000Z_0123456789ab",
    "20261128T214000Z-0123456789a\n",
  };
  g_autoptr (GBytes) raw = g_bytes_new_static ("m\r\n", 3);

  /* a file outside the store that a traversal would reach */
  {
    g_autofree char *outside = g_build_filename (f->dir, "..", "x.eml", NULL);

    g_assert_true (g_file_set_contents (outside, "secret", -1, NULL));
  }
  for (gsize i = 0; i < G_N_ELEMENTS (ids); i++)
    {
      g_autoptr (GError) error = NULL;

      g_test_message ("id %s", ids[i]);
      g_assert_false (vps_quarantine_valid_id (ids[i]));
      g_assert_null (vps_quarantine_get_raw (f->q, ids[i], &error));
      g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_null (vps_quarantine_get_json (f->q, ids[i], &error));
      g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_null (vps_quarantine_get_entry (f->q, ids[i], &error));
      g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_ID);
      g_clear_error (&error);
      g_assert_false (vps_quarantine_delete (f->q, ids[i], &error));
      g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_ID);
    }
  {
    g_autoptr (GError) error = NULL;

    g_assert_true (vps_quarantine_store (f->q, "virus", raw, NULL, NULL, &error));
    g_assert_null (vps_quarantine_get_raw (f->q, "20000101T000000Z-000000000000", &error));
    g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_NOT_FOUND);
  }
}

static void
test_bad_names (Fixture *f, gconstpointer data)
{
  static const char *const bad[] = { "", "../x", "a/b", "Virus", "vir us", ".", "..", "x\n" };
  g_autoptr (GBytes) raw = g_bytes_new_static ("m\r\n", 3);
  g_autofree char *long_name = g_strnfill (VPS_QUARANTINE_MAX_NAME + 1, 'a');
  g_autofree char *max_name = g_strnfill (VPS_QUARANTINE_MAX_NAME, 'a');

  for (gsize i = 0; i < G_N_ELEMENTS (bad) + 1; i++)
    {
      const char *name = i < G_N_ELEMENTS (bad) ? bad[i] : long_name;
      g_autoptr (GError) error = NULL;
      g_autofree char *id = NULL;

      g_assert_false (vps_quarantine_store (f->q, name, raw, NULL, &id, &error));
      g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_NAME);
      g_assert_null (id);
    }
  {
    g_autofree char *listing = dir_listing (f->dir, ".");
    g_autoptr (GError) error = NULL;

    g_assert_cmpstr (listing, ==, ""); /* nothing was created */
    g_assert_true (vps_quarantine_store (f->q, max_name, raw, NULL, NULL, &error));
    g_assert_no_error (error);
  }
}

/* RLIMIT_FSIZE makes write(2) fail with EFBIG even for root, so the failure
 * paths run for real: the store must report it and leave nothing behind. */
static void
store_with_fsize_limit (Fixture *f, rlim_t limit, gsize raw_len, gsize subject_len)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *body = g_strnfill (raw_len, 'x');
  g_autofree char *subject = g_strnfill (subject_len, 's');
  g_autoptr (GBytes) raw = g_bytes_new (body, raw_len);
  g_autoptr (JsonObject) meta = flat_meta (subject);
  g_autofree char *id = NULL;
  struct rlimit old, lim;
  void (*old_handler) (int);
  gboolean ok;

  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &old), ==, 0);
  lim = old;
  lim.rlim_cur = limit;
  old_handler = signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &lim), ==, 0);
  ok = vps_quarantine_store (f->q, "virus", raw, meta, &id, &error);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &old), ==, 0);
  signal (SIGXFSZ, old_handler);

  g_assert_false (ok);
  g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, g_strerror (EFBIG)));
  g_assert_null (id);
}

static void
test_write_failure (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) entries = NULL;
  g_autofree char *listing = NULL;

  /* the .eml does not fit */
  store_with_fsize_limit (f, 4096, 64 * 1024, 10);
  listing = dir_listing (f->dir, "virus");
  g_assert_cmpstr (listing, ==, "");
  g_clear_pointer (&listing, g_free);

  /* the .eml fits, the .json does not: the .eml must go too */
  store_with_fsize_limit (f, 4096, 1000, 64 * 1024);
  listing = dir_listing (f->dir, "virus");
  g_assert_cmpstr (listing, ==, "");

  entries = vps_quarantine_list (f->q, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (entries->len, ==, 0);
}

static void
test_read_only_dir (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) raw = g_bytes_new_static ("m\r\n", 3);
  g_autofree char *sub = g_build_filename (f->dir, "virus", NULL);
  g_autofree char *listing = NULL;

  if (geteuid () == 0)
    {
      /* root ignores directory modes; test_write_failure covers this path. */
      g_test_skip ("running as root: a read-only directory is writable");
      return;
    }
  g_assert_cmpint (g_mkdir (sub, 0500), ==, 0);
  g_assert_false (vps_quarantine_store (f->q, "virus", raw, NULL, NULL, &error));
  g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_IO);
  g_chmod (sub, 0700);
  listing = dir_listing (f->dir, "virus");
  g_assert_cmpstr (listing, ==, "");
}

static void
test_corrupt_entry (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) raw = g_bytes_new_static ("m\r\n", 3);
  g_autofree char *id = NULL;
  g_autofree char *path = NULL;
  g_autoptr (GPtrArray) entries = NULL;

  g_assert_true (vps_quarantine_store (f->q, "virus", raw, NULL, &id, &error));
  path = g_strdup_printf ("%s/virus/%s.json", f->dir, id);
  g_assert_true (g_file_set_contents (path, "[1, 2", -1, NULL));
  g_assert_null (vps_quarantine_get_entry (f->q, id, &error));
  g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_CORRUPT);
  g_clear_error (&error);
  entries = vps_quarantine_list (f->q, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (entries->len, ==, 0);
  g_assert_nonnull (strstr (f->log->str, "warning quarantine: skipping "));
  /* still deletable */
  g_assert_true (vps_quarantine_delete (f->q, id, &error));
  g_assert_no_error (error);
}

#define N_THREADS 4
#define N_STORES 25

static gpointer
store_thread (gpointer data)
{
  Fixture *f = data;
  g_autoptr (GBytes) raw = g_bytes_new_static ("m\r\n", 3);

  for (guint i = 0; i < N_STORES; i++)
    if (!vps_quarantine_store (f->q, "virus", raw, NULL, NULL, NULL))
      return GINT_TO_POINTER (1);
  return NULL;
}

static void
test_concurrent (Fixture *f, gconstpointer data)
{
  GThread *threads[N_THREADS];
  g_autoptr (GPtrArray) entries = NULL;
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint i = 0; i < N_THREADS; i++)
    threads[i] = g_thread_new ("store", store_thread, f);
  for (guint i = 0; i < N_THREADS; i++)
    g_assert_null (g_thread_join (threads[i]));
  entries = vps_quarantine_list (f->q, "virus", NULL);
  g_assert_cmpuint (entries->len, ==, N_THREADS * N_STORES);
  for (guint i = 0; i < entries->len; i++)
    g_assert_true (
        g_hash_table_add (seen, ((VpsQuarantineEntry *)g_ptr_array_index (entries, i))->id));
}

static void
test_open_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *file = g_build_filename (g_get_user_data_dir (), "plain", NULL);
  g_autofree char *below = g_build_filename (file, "q", NULL);

  g_assert_cmpint (g_mkdir_with_parents (g_get_user_data_dir (), 0700), ==, 0);
  g_assert_true (g_file_set_contents (file, "x", -1, NULL));
  g_assert_null (vps_quarantine_open (file, &error));
  g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_IO);
  g_clear_error (&error);
  g_assert_null (vps_quarantine_open (below, &error));
  g_assert_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_IO);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/vps/quarantine/store", test_store);
  ADD ("/vps/quarantine/store/report-meta", test_store_report_meta);
  ADD ("/vps/quarantine/list-delete", test_list_delete);
  ADD ("/vps/quarantine/bad-ids", test_bad_ids);
  ADD ("/vps/quarantine/bad-names", test_bad_names);
  ADD ("/vps/quarantine/write-failure", test_write_failure);
  ADD ("/vps/quarantine/read-only-dir", test_read_only_dir);
  ADD ("/vps/quarantine/corrupt-entry", test_corrupt_entry);
  ADD ("/vps/quarantine/concurrent", test_concurrent);
#undef ADD
  g_test_add_func ("/vps/quarantine/open-errors", test_open_errors);
  return g_test_run ();
}
