/* SPDX-License-Identifier: MIT
 *
 * queue-test-util.h — what test-queue.c and test-queue-commit.c share: a
 * fixture with a fresh spool in a temporary directory (log lines captured),
 * paths and listings of its areas, and envelopes and messages to queue.
 * Header-only (static inline): each test program includes it once.
 */
#pragma once

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mta/queue.h"
#include "vps/log.h"

typedef struct
{
  char *dir;
  VpsQueue *q;
  GString *log;
} Fixture;

static inline void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->log = g_string_new (NULL);
  vps_log_capture (f->log);
  /* not there yet: open makes it, parents included */
  f->dir = g_build_filename (g_get_user_data_dir (), "spool", "queue", NULL);
  f->q = vps_queue_open (f->dir, TRUE, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->q);
}

static inline void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->q, vps_queue_unref);
  g_free (f->dir);
  vps_log_capture (NULL);
  g_string_free (f->log, TRUE);
}

/* Close and open again: what a restart does (recovery included). */
static inline void
reopen (Fixture *f)
{
  g_autoptr (GError) error = NULL;

  g_clear_pointer (&f->q, vps_queue_unref);
  f->q = vps_queue_open (f->dir, TRUE, &error);
  g_assert_no_error (error);
}

static inline char *
path_in (Fixture *f, const char *area, const char *name)
{
  return g_build_filename (f->dir, area, name, NULL);
}

static inline gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

/* "a b c": the names in an area, sorted. */
static inline char *
listing (Fixture *f, const char *area)
{
  g_autofree char *path = g_build_filename (f->dir, area, NULL);
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *n;

  while (d != NULL && (n = g_dir_read_name (d)) != NULL)
    g_ptr_array_add (names, g_strdup (n));
  g_ptr_array_sort (names, compare_strings);
  g_ptr_array_add (names, NULL);
  return g_strjoinv (" ", (char **)names->pdata);
}

static inline guint
file_mode (const char *path)
{
  struct stat st;

  g_assert_cmpint (stat (path, &st), ==, 0);
  return st.st_mode & 07777;
}

static inline VpsEnvelope *
make_envelope (const char *id)
{
  VpsEnvelope *env = vps_envelope_new ();

  env->id = g_strdup (id);
  g_free (env->sender);
  env->sender = g_strdup ("alice@example.net");
  env->session_id = g_strdup ("S1");
  env->client_ip = g_strdup ("192.0.2.1");
  vps_envelope_add_rcpt (env, "bob@example.org", NULL, 0);
  vps_envelope_add_rcpt (env, "carol@example.org", "rfc822;carol@example.org", 0);
  return env;
}

/* A message of `len` bytes whose content depends on `seed`. */
static inline GBytes *
make_message (gsize len, guint seed)
{
  guint8 *data = g_malloc (len);

  for (gsize i = 0; i < len; i++)
    data[i] = (guint8)((i * 31 + seed) % 251);
  return g_bytes_new_take (data, len);
}

/* Writes `msg` in uneven pieces (some over the writer's buffer) and
 * commits it; returns the id. */
static inline char *
queue_message (VpsQueue *q, GBytes *msg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsEnvelope) env = NULL;
  VpsQueueWriter *w = vps_queue_writer_new (q, &error);
  char *id;
  gsize len, off = 0, piece = 1;
  const guint8 *data = g_bytes_get_data (msg, &len);

  g_assert_no_error (error);
  id = g_strdup (vps_queue_writer_get_id (w));
  while (off < len)
    {
      gsize n = MIN (piece, len - off);

      g_assert_true (vps_queue_writer_write (w, data + off, n, &error));
      g_assert_no_error (error);
      off += n;
      piece = piece * 7 % (3 * VPS_QUEUE_WRITE_BUFFER) + 1;
    }
  g_assert_cmpuint (vps_queue_writer_get_size (w), ==, len);
  env = make_envelope (id);
  g_assert_true (vps_queue_commit_sync (q, w, env, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (env->size, ==, len);
  return id;
}
