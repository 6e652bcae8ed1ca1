/* SPDX-License-Identifier: MIT
 *
 * queue.c — vsmtpd's spool: layout and lock, ids, recovery, and the calls
 * that read and move queued messages.  queue.h has the layout, the
 * contract and the crash rules; queue-commit.c the message writer and the
 * group commit; queue-envelope.c the envelope file.
 *
 * Files are named by path under the spool directory (made absolute at
 * open), never through directory fds kept open: an admin who moves the
 * spool, or a broken directory, fails the next operation instead of
 * writing into a directory nobody looks at.  Every name is built from an
 * id made here or checked with vps_queue_valid_id().
 */
#include "mta/queue-private.h"
#include "vps/log.h"

/* A held spool lock is retried this often, this far apart, at open */
#define QUEUE_LOCK_ATTEMPTS 20
#define QUEUE_LOCK_RETRY_US (10 * 1000)

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - queue - error - quark, vps_queue_error)

#define DIR_MODE 0700

static const char *const area_dirs[] = {
  [VPS_QUEUE_INCOMING] = "incoming",
  [VPS_QUEUE_HOLD] = "hold",
  [VPS_QUEUE_CORRUPT] = "corrupt",
  [VPS_QUEUE_DEAD] = "dead",
};

/* ---- small helpers --------------------------------------------------------- */

gboolean
vps_queue_errno_error (GError **error, int err, const char *what, const char *path)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (err), "%s %s: %s", what, path,
               g_strerror (err));
  return FALSE;
}

char *
vps_queue_path (VpsQueue *q, const char *area, const char *id, const char *ext)
{
  return g_strconcat (q->dir, "/", area, id ? "/" : NULL, id, ext, NULL);
}

int
vps_queue_write_all (int fd, const void *data, gsize len)
{
  const guint8 *p = data;

  while (len > 0)
    {
      ssize_t n = write (fd, p, MIN (len, (gsize)G_MAXSSIZE));

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return errno;
      p += n;
      len -= (gsize)n;
    }
  return 0;
}

/* rename(2) that refuses to replace a file (ids are unique; an existing
 * target means something is wrong and must not be overwritten). */
int
vps_queue_rename_noreplace (const char *from, const char *to)
{
  if (renameat2 (AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS)
    return errno;
  /* a file system without RENAME_NOREPLACE */
  if (access (to, F_OK) == 0)
    return EEXIST;
  return rename (from, to) == 0 ? 0 : errno;
}

gboolean
vps_queue_fsync_dir (const char *path, GError **error)
{
  int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err;

  if (fd < 0)
    return vps_queue_errno_error (error, errno, "open", path);
  err = fsync (fd) == 0 ? 0 : errno;
  close (fd);
  if (err != 0)
    return vps_queue_errno_error (error, err, "fsync", path);
  return TRUE;
}

static gboolean
exists (const char *path)
{
  struct stat st;

  return lstat (path, &st) == 0;
}

/* A file of at most `max` bytes, whole. */
GBytes *
vps_queue_read_bounded (const char *path, gsize max, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  g_autoptr (GByteArray) buf = NULL;
  struct stat st;
  int err = 0;

  if (fd < 0)
    {
      vps_queue_errno_error (error, errno, "open", path);
      return NULL;
    }
  if (fstat (fd, &st) != 0)
    {
      err = errno;
      close (fd);
      vps_queue_errno_error (error, err, "stat", path);
      return NULL;
    }
  if ((guint64)st.st_size > max)
    {
      close (fd);
      g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT, "%s: larger than %zu bytes",
                   path, max);
      return NULL;
    }
  buf = g_byte_array_sized_new ((guint)st.st_size + 1);
  for (;;)
    {
      guint8 chunk[16384];
      ssize_t n = read (fd, chunk, sizeof chunk);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          err = n < 0 ? errno : 0;
          break;
        }
      if (buf->len + (gsize)n > max) /* grew since fstat */
        {
          close (fd);
          g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT, "%s: larger than %zu bytes",
                       path, max);
          return NULL;
        }
      g_byte_array_append (buf, chunk, (guint)n);
    }
  close (fd);
  if (err != 0)
    {
      vps_queue_errno_error (error, err, "read", path);
      return NULL;
    }
  return g_byte_array_free_to_bytes (g_steal_pointer (&buf));
}

gint
vps_queue_compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

/* Directory entries, sorted (ids sort by time). */
GPtrArray *
vps_queue_list_names (const char *path, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GDir) dir = g_dir_open (path, 0, &local_error);
  GPtrArray *names;
  const char *name;

  if (dir == NULL)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_file_error (local_error->code), "%s",
                   local_error->message);
      return NULL;
    }
  names = g_ptr_array_new_with_free_func (g_free);
  while ((name = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, vps_queue_compare_names);
  return names;
}

/* ---- ids --------------------------------------------------------------------- */

/* The last id handed out or seen in the spool (µs since the epoch). */
static gint64 last_id;

static gint64
next_id_value (void)
{
  gint64 now = g_get_real_time ();
  gint64 last = __atomic_load_n (&last_id, __ATOMIC_RELAXED);
  gint64 next;

  do
    next = MAX (now, last + 1);
  while (!__atomic_compare_exchange_n (&last_id, &last, next, TRUE, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED));
  return next;
}

/* Ids found in the spool.  Absurd ones (a hand-made file near 2^63) are
 * ignored so that last + 1 cannot overflow; a collision with such a file
 * is still refused by the commit's RENAME_NOREPLACE. */
void
vps_queue_raise_id_floor (gint64 seen)
{
  gint64 last = __atomic_load_n (&last_id, __ATOMIC_RELAXED);

  if (seen > G_MAXINT64 / 2)
    return;
  while (last < seen
         && !__atomic_compare_exchange_n (&last_id, &last, seen, TRUE, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED))
    ;
}

char *
vps_queue_new_id (void)
{
  return g_strdup_printf ("%016" G_GINT64_MODIFIER "X", (guint64)next_id_value ());
}

gboolean
vps_queue_valid_id (const char *id)
{
  if (id == NULL || strlen (id) != VPS_QUEUE_ID_LEN)
    return FALSE;
  for (const char *p = id; *p; p++)
    if (!g_ascii_isdigit (*p) && !(*p >= 'A' && *p <= 'F'))
      return FALSE;
  return TRUE;
}

static gboolean
check_id (const char *id, GError **error)
{
  if (vps_queue_valid_id (id))
    return TRUE;
  g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID, "not a queue id: \"%s\"",
               id ? id : "(null)");
  return FALSE;
}

/* "ID.eml" / "ID.json" → the id (in `id`, VPS_QUEUE_ID_LEN + 1 bytes). */
gboolean
vps_queue_split_name (const char *name, char *id, gboolean *is_json)
{
  const char *ext = name + MIN (strlen (name), VPS_QUEUE_ID_LEN);

  if (strcmp (ext, ".eml") != 0 && strcmp (ext, ".json") != 0)
    return FALSE;
  memcpy (id, name, VPS_QUEUE_ID_LEN);
  id[VPS_QUEUE_ID_LEN] = '\0';
  if (!vps_queue_valid_id (id))
    return FALSE;
  *is_json = ext[1] == 'j';
  return TRUE;
}

const char *
vps_queue_area_name (VpsQueueArea area)
{
  if ((guint)area >= G_N_ELEMENTS (area_dirs))
    return "unknown";
  return area_dirs[area];
}

const char *const vps_queue_spool_dirs[VPS_QUEUE_N_SPOOL_DIRS]
    = { "tmp", "incoming", "hold", "corrupt", "dead" };

/* ---- the spool ------------------------------------------------------------------ */

static gboolean
make_layout (VpsQueue *q, GError **error)
{
  if (g_mkdir_with_parents (q->dir, DIR_MODE) != 0)
    return vps_queue_errno_error (error, errno, "create", q->dir);
  for (gsize i = 0; i < VPS_QUEUE_N_SPOOL_DIRS; i++)
    {
      g_autofree char *path = vps_queue_path (q, vps_queue_spool_dirs[i], NULL, NULL);

      if (mkdir (path, DIR_MODE) != 0 && errno != EEXIST)
        return vps_queue_errno_error (error, errno, "create", path);
    }
  return TRUE;
}

static gboolean
take_lock (VpsQueue *q, GError **error)
{
  g_autofree char *path = vps_queue_path (q, "lock", NULL, NULL);
  int locked = -1;

  q->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, VPS_QUEUE_FILE_MODE);
  if (q->lock_fd < 0)
    return vps_queue_errno_error (error, errno, "open", path);
  /* `vpsctl queue flush` probes the lock with a shared flock for an
   * instant: a start that falls into that instant tries again for a
   * moment instead of reporting the spool busy. */
  for (int attempt = 0; attempt < QUEUE_LOCK_ATTEMPTS; attempt++)
    {
      locked = flock (q->lock_fd, LOCK_EX | LOCK_NB);
      if (locked == 0 || errno != EWOULDBLOCK)
        break;
      g_usleep (QUEUE_LOCK_RETRY_US);
    }
  if (locked == 0)
    {
      /* the owner's pid, for `vpsctl queue flush` to signal (SIGUSR1);
       * only ever read while the lock is held, so a failed write costs a
       * wake-up, not the start */
      char pid[32];
      int len = g_snprintf (pid, sizeof pid, "%ld\n", (long)getpid ());

      if (ftruncate (q->lock_fd, 0) != 0 || pwrite (q->lock_fd, pid, (size_t)len, 0) != len)
        vps_warning (NULL, "queue: cannot write the pid into %s: %s", path, g_strerror (errno));
      return TRUE;
    }
  if (errno == EWOULDBLOCK)
    g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_LOCKED,
                 "%s: the spool is in use by another process", q->dir);
  else
    vps_queue_errno_error (error, errno, "lock", path);
  return FALSE;
}

VpsQueue *
vps_queue_open (const char *dir, gboolean recover_spool, GError **error)
{
  g_autoptr (VpsQueue) q = g_new0 (VpsQueue, 1);
  struct stat st;

  g_return_val_if_fail (dir != NULL, NULL);
  g_atomic_ref_count_init (&q->ref);
  q->lock_fd = -1;
  q->dir = g_canonicalize_filename (dir, NULL);
  vps_queue_commit_init (q);
  if (!recover_spool)
    {
      if (stat (q->dir, &st) != 0)
        {
          vps_queue_errno_error (error, errno, "spool", q->dir);
          return NULL;
        }
      if (!S_ISDIR (st.st_mode))
        {
          vps_queue_errno_error (error, ENOTDIR, "spool", q->dir);
          return NULL;
        }
      return g_steal_pointer (&q);
    }
  if (!make_layout (q, error) || !take_lock (q, error) || !vps_queue_recover (q, error))
    return NULL;
  return g_steal_pointer (&q);
}

VpsQueue *
vps_queue_ref (VpsQueue *q)
{
  g_atomic_ref_count_inc (&q->ref);
  return q;
}

void
vps_queue_free (VpsQueue *q)
{
  if (q->lock_fd >= 0)
    close (q->lock_fd);
  g_free (q->dir);
  g_free (q);
}

void
vps_queue_unref (VpsQueue *q)
{
  if (q == NULL || !g_atomic_ref_count_dec (&q->ref))
    return;
  /* FALSE: the last writer was freed on the committer thread, which frees
   * the queue itself when it leaves its loop */
  if (vps_queue_commit_stop (q))
    vps_queue_free (q);
}

const char *
vps_queue_get_dir (VpsQueue *q)
{
  return q->dir;
}

guint64
vps_queue_get_dir_syncs (VpsQueue *q)
{
  return __atomic_load_n (&q->dir_syncs, __ATOMIC_RELAXED);
}

gboolean
vps_queue_has_space (VpsQueue *q, guint64 need)
{
  struct statvfs sv;
  guint64 avail;

  if (statvfs (q->dir, &sv) != 0)
    {
      /* cannot tell: let the commit find out (and fail with 451) */
      vps_log_once ("queue-statvfs", 60, G_LOG_LEVEL_WARNING, NULL, "queue: statvfs %s: %s", q->dir,
                    g_strerror (errno));
      return TRUE;
    }
  if (!g_uint64_checked_mul (&avail, (guint64)sv.f_bavail, (guint64)sv.f_frsize))
    return TRUE;
  return avail >= need;
}

/* ---- reading and managing ------------------------------------------------------ */

GPtrArray *
vps_queue_list (VpsQueue *q, VpsQueueArea area, GError **error)
{
  g_autofree char *path = vps_queue_path (q, vps_queue_area_name (area), NULL, NULL);
  g_autoptr (GPtrArray) names = NULL;
  GPtrArray *ids;

  g_return_val_if_fail ((guint)area < G_N_ELEMENTS (area_dirs), NULL);
  names = vps_queue_list_names (path, error);
  if (names == NULL)
    return NULL;
  ids = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < names->len; i++)
    {
      char id[VPS_QUEUE_ID_LEN + 1];
      gboolean is_json;

      /* the envelope is the commit point; corrupt/ shows every id */
      if (!vps_queue_split_name (g_ptr_array_index (names, i), id, &is_json)
          || (!is_json && area != VPS_QUEUE_CORRUPT))
        continue;
      if (ids->len > 0 && strcmp (g_ptr_array_index (ids, ids->len - 1), id) == 0)
        continue; /* ID.eml and ID.json in corrupt/ (sorted: adjacent) */
      g_ptr_array_add (ids, g_strdup (id));
    }
  return ids;
}

static gboolean
not_found (GError **error, const char *id)
{
  g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND, "%s: not in the queue", id);
  return FALSE;
}

gboolean
vps_queue_locate (VpsQueue *q, const char *id, VpsQueueArea *area, GError **error)
{
  static const VpsQueueArea order[] = { VPS_QUEUE_INCOMING, VPS_QUEUE_HOLD };

  if (!check_id (id, error))
    return FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS (order); i++)
    {
      g_autofree char *path = vps_queue_path (q, area_dirs[order[i]], id, ".json");

      if (exists (path))
        {
          if (area != NULL)
            *area = order[i];
          return TRUE;
        }
    }
  return not_found (error, id);
}

/* A file of the message id: incoming/, else hold/ (a move between them
 * makes the first look miss; one more round finds it). */
static char *
find_file (VpsQueue *q, const char *id, const char *ext, GError **error)
{
  for (int round = 0; round < 2; round++)
    {
      VpsQueueArea area;
      g_autofree char *path = NULL;

      if (!vps_queue_locate (q, id, &area, error))
        return NULL;
      path = vps_queue_path (q, area_dirs[area], id, ext);
      if (exists (path))
        return g_steal_pointer (&path);
    }
  not_found (error, id);
  return NULL;
}

GBytes *
vps_queue_load_envelope_data (VpsQueue *q, const char *id, GError **error)
{
  g_autofree char *path = find_file (q, id, ".json", error);
  g_autoptr (GError) local_error = NULL;
  GBytes *data;

  if (path == NULL)
    return NULL;
  data = vps_queue_read_bounded (path, VPS_QUEUE_MAX_ENVELOPE, &local_error);
  if (data == NULL && g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
    not_found (error, id); /* delivered or moved since */
  else if (data == NULL)
    g_propagate_error (error, g_steal_pointer (&local_error));
  return data;
}

VpsEnvelope *
vps_queue_load_envelope (VpsQueue *q, const char *id, GError **error)
{
  g_autoptr (GBytes) data = vps_queue_load_envelope_data (q, id, error);

  return data != NULL ? vps_envelope_from_file_data (id, data, error) : NULL;
}

GBytes *
vps_queue_load_message (VpsQueue *q, const char *id, GError **error)
{
  g_autofree char *path = find_file (q, id, ".eml", error);
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GMappedFile) map = NULL;
  int fd;

  if (path == NULL)
    return NULL;
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      if (errno == ENOENT) /* delivered or moved since */
        not_found (error, id);
      else
        vps_queue_errno_error (error, errno, "open", path);
      return NULL;
    }
  map = g_mapped_file_new_from_fd (fd, FALSE, &local_error);
  close (fd);
  if (map == NULL)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_file_error (local_error->code), "map %s: %s",
                   path, local_error->message);
      return NULL;
    }
  return g_mapped_file_get_bytes (map);
}

/* The envelope first (the commit point), then the message.  No directory
 * fsync: a crash before the file system writes the removal back (seconds)
 * brings the message back to be delivered again — a duplicate, which the
 * contract allows (TESTING.md, "Durability"), never a loss; Postfix does
 * not sync on removal either.  An admin's delete shares that window. */
gboolean
vps_queue_remove (VpsQueue *q, const char *id, GError **error)
{
  g_autofree char *json = NULL;
  g_autofree char *eml = NULL;
  VpsQueueArea area;

  if (!vps_queue_locate (q, id, &area, error))
    return FALSE;
  json = vps_queue_path (q, area_dirs[area], id, ".json");
  eml = vps_queue_path (q, area_dirs[area], id, ".eml");
  if (unlink (json) != 0)
    return errno == ENOENT ? not_found (error, id)
                           : vps_queue_errno_error (error, errno, "remove", json);
  if (unlink (eml) != 0 && errno != ENOENT)
    return vps_queue_errno_error (error, errno, "remove", eml);
  vps_info (id, "queue: %s: removed from %s/", id, area_dirs[area]);
  return TRUE;
}

/* from/ → to/ so that a crash at any point loses nothing (queue.h): link
 * the message, rename the envelope (the commit point), unlink the old
 * message link. */
static gboolean
move_entry (VpsQueue *q, const char *id, VpsQueueArea from, VpsQueueArea to, GError **error)
{
  g_autofree char *from_eml = vps_queue_path (q, area_dirs[from], id, ".eml");
  g_autofree char *from_json = vps_queue_path (q, area_dirs[from], id, ".json");
  g_autofree char *to_eml = vps_queue_path (q, area_dirs[to], id, ".eml");
  g_autofree char *to_json = vps_queue_path (q, area_dirs[to], id, ".json");
  g_autofree char *from_dir = vps_queue_path (q, area_dirs[from], NULL, NULL);
  g_autofree char *to_dir = vps_queue_path (q, area_dirs[to], NULL, NULL);
  int err;

  if (link (from_eml, to_eml) != 0)
    {
      err = errno;
      /* a message link left by a move interrupted before its commit point */
      if (err == EEXIST && !exists (to_json))
        err = unlink (to_eml) == 0 && link (from_eml, to_eml) == 0 ? 0 : errno;
      if (err == ENOENT)
        return not_found (error, id);
      if (err != 0)
        return vps_queue_errno_error (error, err, "link to", to_eml);
    }
  if (!vps_queue_fsync_dir (to_dir, error))
    return FALSE;
  if ((err = vps_queue_rename_noreplace (from_json, to_json)) != 0)
    {
      unlink (to_eml);
      return err == ENOENT ? not_found (error, id)
                           : vps_queue_errno_error (error, err, "rename to", to_json);
    }
  unlink (from_eml);
  vps_info (id, "queue: %s: moved from %s/ to %s/", id, area_dirs[from], area_dirs[to]);
  return vps_queue_fsync_dir (to_dir, error) && vps_queue_fsync_dir (from_dir, error);
}

gboolean
vps_queue_hold (VpsQueue *q, const char *id, GError **error)
{
  VpsQueueArea area;

  if (!vps_queue_locate (q, id, &area, error))
    return FALSE;
  return area == VPS_QUEUE_HOLD || move_entry (q, id, area, VPS_QUEUE_HOLD, error);
}

gboolean
vps_queue_release (VpsQueue *q, const char *id, GError **error)
{
  VpsQueueArea area;

  if (!vps_queue_locate (q, id, &area, error))
    return FALSE;
  return area == VPS_QUEUE_INCOMING || move_entry (q, id, area, VPS_QUEUE_INCOMING, error);
}

gboolean
vps_queue_bury (VpsQueue *q, const char *id, GError **error)
{
  VpsQueueArea area;

  if (!vps_queue_locate (q, id, &area, error))
    return FALSE;
  return move_entry (q, id, area, VPS_QUEUE_DEAD, error);
}
