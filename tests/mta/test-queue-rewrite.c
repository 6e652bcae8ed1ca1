/* SPDX-License-Identifier: MIT
 *
 * test-queue-rewrite.c — vps_queue_rewrite_message (the postq stage's
 * edits): the new message and its envelope (new size, "postq") survive a
 * reopen; a message held or removed meanwhile is left alone; an envelope
 * the reader would refuse is never written; and the crash point between
 * the two renames, which recovery finishes.
 */
#include "mta/queue.h"
#include "tests/mta/queue-test-util.h"

#include <string.h>

static void
test_rewrite (Fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) msg = make_message (300, 3);
  g_autofree char *id = queue_message (f->q, msg);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsEnvelope) env = vps_queue_load_envelope (f->q, id, &error);
  g_autoptr (VpsEnvelope) back = NULL;
  g_autoptr (GBytes) edited = g_bytes_new_static ("X-Postq: yes\r\n\r\nbody\r\n", 23);
  g_autoptr (GBytes) got = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *corrupt_area = NULL;

  g_assert_no_error (error);
  g_assert_false (env->postq);
  env->postq = TRUE;
  g_assert_true (vps_queue_rewrite_message (f->q, env, edited, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (env->size, ==, 23);
  /* a restart runs recovery: the size must match, nothing set aside */
  reopen (f);
  back = vps_queue_load_envelope (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_true (back->postq);
  g_assert_cmpuint (back->size, ==, 23);
  got = vps_queue_load_message (f->q, id, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (got, edited));
  tmp = listing (f, "tmp");
  g_assert_cmpstr (tmp, ==, "");
  corrupt_area = listing (f, "corrupt");
  g_assert_cmpstr (corrupt_area, ==, "");

  /* held meanwhile: left alone, NOT_FOUND */
  g_assert_true (vps_queue_hold (f->q, id, &error));
  g_assert_false (vps_queue_rewrite_message (f->q, back, msg, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_clear_pointer (&got, g_bytes_unref);
  g_assert_true (vps_queue_release (f->q, id, &error));
  got = vps_queue_load_message (f->q, id, &error);
  g_assert_true (g_bytes_equal (got, edited));

  /* removed meanwhile */
  g_assert_true (vps_queue_remove (f->q, id, &error));
  g_assert_false (vps_queue_rewrite_message (f->q, back, msg, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* an envelope the reader would refuse: nothing written, size untouched */
  {
    g_autofree char *id2 = queue_message (f->q, msg);
    g_autoptr (VpsEnvelope) env2 = vps_queue_load_envelope (f->q, id2, &error);
    g_autoptr (GBytes) still = NULL;

    g_free (env2->sender);
    env2->sender = g_strdup ("a@b\r\nDATA");
    g_assert_false (vps_queue_rewrite_message (f->q, env2, edited, &error));
    g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
    g_clear_error (&error);
    g_assert_cmpuint (env2->size, ==, 300);
    still = vps_queue_load_message (f->q, id2, &error);
    g_assert_true (g_bytes_equal (still, msg));
    g_clear_pointer (&tmp, g_free);
    tmp = listing (f, "tmp");
    g_assert_cmpstr (tmp, ==, "");
  }
}

/* A rewrite cut between its two renames: the new message in incoming/,
 * the old envelope beside it, the new one in tmp/ — made by hand, as the
 * crash leaves them.  Recovery finishes the rewrite.  A tmp/ envelope that
 * does not fit the message is not used: the pair goes to corrupt/. */
static void
put (const char *path, const void *data, gsize len)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_set_contents (path, data, (gssize)len, &error));
  g_assert_no_error (error);
}

static void
test_rewrite_crash (Fixture *f, gconstpointer data)
{
  static const char edited[] = "X-Postq: yes\r\n\r\nbody\r\n";
  g_autoptr (GBytes) msg = make_message (300, 3);
  g_autoptr (GError) error = NULL;

  for (int good = 1; good >= 0; good--)
    {
      g_autofree char *id = queue_message (f->q, msg);
      g_autoptr (VpsEnvelope) env = vps_queue_load_envelope (f->q, id, &error);
      g_autofree char *eml = g_strdup_printf ("%s/incoming/%s.eml", f->dir, id);
      g_autofree char *tmp_json = g_strdup_printf ("%s/tmp/%s.json", f->dir, id);
      g_autofree char *json = NULL;
      g_autofree char *tmp = NULL;
      g_autofree char *corrupt_area = NULL;
      g_autoptr (VpsEnvelope) back = NULL;
      g_autoptr (GBytes) got = NULL;
      gsize len;

      g_assert_no_error (error);
      env->postq = TRUE;
      env->size = good ? strlen (edited) : strlen (edited) + 1;
      json = vps_envelope_to_data (env, FALSE, &len);
      put (eml, edited, strlen (edited));
      put (tmp_json, json, len);
      reopen (f);
      tmp = listing (f, "tmp");
      g_assert_cmpstr (tmp, ==, "");
      corrupt_area = listing (f, "corrupt");
      back = vps_queue_load_envelope (f->q, id, &error);
      if (!good)
        {
          g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND);
          g_clear_error (&error);
          g_assert_nonnull (strstr (corrupt_area, id));
          continue;
        }
      g_assert_no_error (error);
      g_assert_true (back->postq);
      g_assert_cmpuint (back->size, ==, strlen (edited));
      got = vps_queue_load_message (f->q, id, &error);
      g_assert_no_error (error);
      g_assert_cmpmem (g_bytes_get_data (got, NULL), g_bytes_get_size (got), edited,
                       strlen (edited));
      g_assert_cmpstr (corrupt_area, ==, "");
      g_assert_nonnull (strstr (f->log->str, "finished an interrupted rewrite"));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  g_test_add ("/mta/queue/rewrite", Fixture, NULL, fixture_setup, test_rewrite, fixture_teardown);
  g_test_add ("/mta/queue/rewrite/crash", Fixture, NULL, fixture_setup, test_rewrite_crash,
              fixture_teardown);
  return g_test_run ();
}
