/* SPDX-License-Identifier: MIT
 *
 * local-test-util.h — what test-local.c and test-local-mbox.c share: paths
 * in the test's own temporary directory, small file helpers, the test
 * message, and a real write failure (RLIMIT_FSIZE) for a subprocess.
 * Header-only (static inline): each test program includes it once.
 */
#pragma once

#include "mta/local.h"
#include "vps/log.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#define MESSAGE "Subject: hi\r\nFrom: x@y\r\n\r\nline1\r\nbare\rcr\r\nFrom here\r\nlast"

/* Every test runs in its own temporary directory (ISOLATE_DIRS). */
static inline char *
test_path (const char *first, ...)
{
  va_list ap;
  g_autoptr (GPtrArray) parts = g_ptr_array_new ();

  /* the variable is set, the directory not made */
  g_assert_cmpint (g_mkdir_with_parents (g_get_user_data_dir (), 0700), ==, 0);
  g_ptr_array_add (parts, (gpointer)g_get_user_data_dir ());
  va_start (ap, first);
  for (const char *s = first; s != NULL; s = va_arg (ap, const char *))
    g_ptr_array_add (parts, (gpointer)s);
  va_end (ap);
  g_ptr_array_add (parts, NULL);
  return g_build_filenamev ((char **)parts->pdata);
}

static inline GBytes *
bytes (const char *s)
{
  return g_bytes_new (s, strlen (s));
}

static inline char *
slurp (const char *path)
{
  g_autoptr (GError) error = NULL;
  char *text = NULL;

  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  g_assert_no_error (error);
  return text;
}

/* The names in `dir`, sorted. */
static inline GPtrArray *
list_dir (const char *dir)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDir) d = g_dir_open (dir, 0, &error);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  g_assert_no_error (error);
  while ((name = g_dir_read_name (d)) != NULL)
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, (GCompareFunc)g_strcmp0);
  return names;
}

static inline guint
count_dir (const char *dir)
{
  g_autoptr (GPtrArray) names = list_dir (dir);

  return names->len;
}

static inline guint
file_mode (const char *path)
{
  struct stat st;

  g_assert_cmpint (stat (path, &st), ==, 0);
  return st.st_mode & 07777;
}

static inline goffset
file_size (const char *path)
{
  struct stat st;

  g_assert_cmpint (stat (path, &st), ==, 0);
  return st.st_size;
}

/* A message of `size` bytes of body lines. */
static inline GBytes *
big_message (gsize size)
{
  GString *s = g_string_new ("Subject: big\r\n\r\n");

  while (s->len < size)
    g_string_append (s,
                     "0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
  return g_string_free_to_bytes (s);
}

/* Files may grow only to `limit` bytes: the next write fails with EFBIG
 * (SIGXFSZ ignored), as on a full disk, but in this process only. */
static inline void
limit_file_size (rlim_t limit)
{
  struct rlimit rl = { .rlim_cur = limit, .rlim_max = limit };

  signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &rl), ==, 0);
}
