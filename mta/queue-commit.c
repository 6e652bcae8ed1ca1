/* SPDX-License-Identifier: MIT
 *
 * queue-commit.c — durable writes into vsmtpd's spool: the message writer,
 * the commit that makes a message queued (before the 250), and the
 * rewrite of an envelope after a delivery attempt.  queue.h has the
 * contract and the crash rules; queue.c the layout and everything else.
 *
 * Threads: a commit's own fsyncs run on a pool (up to SYNC_THREADS side
 * by side), then the committer thread renames a batch of them into
 * incoming/ and fsyncs the directory once (see "commit" below).  Both are
 * started by the first commit and live as long as the queue.  Neither
 * holds a reference (the queue would never die); a writer does, and every
 * writer is freed on the committer, so the last reference may be dropped
 * there: the thread then frees the queue itself when it leaves its loop
 * instead of joining itself.  Pool threads free nothing, so the last
 * reference is never theirs.
 */
#include "mta/queue-private.h"
#include "vps/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h> /* renameat2, RENAME_EXCHANGE */
#include <string.h>
#include <unistd.h>

/* tmp/ID.eml already there (another process on the spool?): next id. */
#define NEW_FILE_ATTEMPTS 5

static char stop_marker;

/* ---- small helpers ---------------------------------------------------------- */

/* Write a new file (O_EXCL) with its content and fsync it. */
static gboolean
write_file_synced (const char *path, const char *data, gsize len, GError **error)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, VPS_QUEUE_FILE_MODE);
  int err;

  if (fd < 0)
    return vps_queue_errno_error (error, errno, "create", path);
  err = vps_queue_write_all (fd, data, len);
  if (err == 0 && fsync (fd) != 0)
    err = errno;
  if (close (fd) != 0 && err == 0)
    err = errno;
  if (err != 0)
    {
      unlink (path);
      return vps_queue_errno_error (error, err, "write", path);
    }
  return TRUE;
}

/* Checked and serialised on the caller's thread before any file is
 * touched: what the strict reader would refuse (CR/LF in an address, say)
 * is never written, so recovery cannot find it later.  (The check applies
 * the reader's rules to the struct; test-envelope proves the two agree.) */
static char *
envelope_data (const VpsEnvelope *env, gsize *len, GError **error)
{
  if (!vps_envelope_check (env, error))
    {
      g_prefix_error (error, "%s: envelope would not read back: ", env->id ? env->id : "?");
      return NULL;
    }
  return vps_envelope_to_data (env, FALSE, len);
}

/* ---- writing one message ------------------------------------------------------- */

VpsQueueWriter *
vps_queue_writer_new (VpsQueue *q, GError **error)
{
  g_return_val_if_fail (q != NULL, NULL);
  for (int attempt = 0; attempt < NEW_FILE_ATTEMPTS; attempt++)
    {
      g_autofree char *id = vps_queue_new_id ();
      g_autofree char *path = vps_queue_path (q, "tmp", id, ".eml");
      int fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, VPS_QUEUE_FILE_MODE);
      VpsQueueWriter *w;

      if (fd < 0 && errno == EEXIST)
        continue;
      if (fd < 0)
        {
          vps_queue_errno_error (error, errno, "create", path);
          return NULL;
        }
      w = g_new0 (VpsQueueWriter, 1);
      w->q = vps_queue_ref (q);
      w->id = g_steal_pointer (&id);
      w->path = g_steal_pointer (&path);
      w->fd = fd;
      w->buf = g_malloc (VPS_QUEUE_WRITE_BUFFER);
      return w;
    }
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "%s/tmp: no free id after %d attempts", q->dir,
               NEW_FILE_ATTEMPTS);
  return NULL;
}

const char *
vps_queue_writer_get_id (VpsQueueWriter *w)
{
  return w->id;
}

guint64
vps_queue_writer_get_size (VpsQueueWriter *w)
{
  return w->size;
}

static gboolean
writer_failed (VpsQueueWriter *w, GError **error)
{
  if (w->error == NULL)
    return FALSE;
  g_propagate_error (error, g_error_copy (w->error));
  return TRUE;
}

static gboolean
writer_flush (VpsQueueWriter *w, GError **error)
{
  int err;

  if (writer_failed (w, error))
    return FALSE;
  err = w->buffered > 0 ? vps_queue_write_all (w->fd, w->buf, w->buffered) : 0;
  w->buffered = 0;
  if (err != 0)
    {
      vps_queue_errno_error (&w->error, err, "write", w->path);
      return !writer_failed (w, error);
    }
  return TRUE;
}

gboolean
vps_queue_writer_write (VpsQueueWriter *w, const void *data, gsize len, GError **error)
{
  g_return_val_if_fail (w != NULL, FALSE);
  if (writer_failed (w, error))
    return FALSE;
  if (w->buffered + len > VPS_QUEUE_WRITE_BUFFER && !writer_flush (w, error))
    return FALSE;
  w->size += len;
  if (len >= VPS_QUEUE_WRITE_BUFFER)
    {
      int err = vps_queue_write_all (w->fd, data, len);

      if (err != 0)
        {
          vps_queue_errno_error (&w->error, err, "write", w->path);
          return !writer_failed (w, error);
        }
      return TRUE;
    }
  memcpy (w->buf + w->buffered, data, len);
  w->buffered += len;
  return TRUE;
}

GBytes *
vps_queue_writer_map (VpsQueueWriter *w, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GMappedFile) map = NULL;

  if (!writer_flush (w, error))
    return NULL;
  /* The mapping keeps the inode: it stays valid when the file is renamed,
   * unlinked or replaced (replace writes a new file, never truncates). */
  map = g_mapped_file_new_from_fd (w->fd, FALSE, &local_error);
  if (map == NULL)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_file_error (local_error->code), "map %s: %s",
                   w->path, local_error->message);
      return NULL;
    }
  return g_mapped_file_get_bytes (map);
}

/* A new file renamed over the old one, never a truncation in place: bytes
 * mapped from the old content (the data stage's view) must stay valid. */
gboolean
vps_queue_writer_replace (VpsQueueWriter *w, GBytes *content, GError **error)
{
  g_autofree char *path = g_strconcat (w->path, ".new", NULL);
  gsize len;
  const void *data = g_bytes_get_data (content, &len);
  int fd, err;

  if (writer_failed (w, error))
    return FALSE;
  fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, VPS_QUEUE_FILE_MODE);
  if (fd < 0)
    return vps_queue_errno_error (error, errno, "create", path);
  err = vps_queue_write_all (fd, data, len);
  if (err == 0 && rename (path, w->path) != 0)
    err = errno;
  if (err != 0)
    {
      close (fd);
      unlink (path);
      return vps_queue_errno_error (error, err, "replace", w->path);
    }
  close (w->fd);
  w->fd = fd;
  w->size = len;
  w->buffered = 0;
  return TRUE;
}

static void
writer_free (VpsQueueWriter *w)
{
  if (w->fd >= 0)
    close (w->fd);
  g_clear_error (&w->error);
  g_free (w->buf);
  g_free (w->path);
  g_free (w->id);
  vps_queue_unref (w->q);
  g_free (w);
}

void
vps_queue_writer_abort (VpsQueueWriter *w)
{
  if (w == NULL)
    return;
  unlink (w->path);
  writer_free (w);
}

/* ---- commit -------------------------------------------------------------------- */

/* A commit goes through two stages.  On the sync pool, the work of one
 * message alone: fsync its tmp/ID.eml, write and fsync tmp/ID.json.  Then
 * on the committer, for a batch of commits so synced: the renames into
 * incoming/, the message before the envelope, and one fsync of incoming/
 * for all of them, before any callback.
 *
 * Why a pool: a file fsync waits for the disk (~0.3-0.5 ms here).  Done
 * one after the other on one thread, as the committer once did, they
 * capped the spool at ~1000 commits/s whatever the number of sessions.
 * Side by side they overlap: several writes in flight at the device, and
 * with a journal (ext4, XFS) the fsyncs that arrive together share one
 * journal commit.  SYNC_THREADS bounds the commits whose fsyncs run at
 * once; more threads than sessions that commit together would sit idle.
 *
 * Batches: the committer takes every commit waiting, and while others are
 * still on the pool it waits for them too, up to as long as its last
 * directory fsync took (GATHER_MAX_USEC at most).  Commits leave the pool
 * one by one; without that wait each would get a directory fsync of its
 * own, and the wait costs a batch no more than that fsync would. */
#define SYNC_THREADS 16
/* A slow disk's hiccup (a directory fsync of 100 ms) must not become
 * everyone's delay. */
#define GATHER_MAX_USEC 1000

typedef struct
{
  VpsQueueWriter *w; /* consumed by the committer */
  char *json;
  gsize json_len;
  GTask *task;
  GError *error;            /* set by the stage that failed */
  gboolean json_written;    /* tmp/ID.json exists */
  gboolean eml_in, json_in; /* renamed into incoming/ */
} Commit;

static void
commit_free (Commit *c)
{
  g_free (c->json);
  g_clear_error (&c->error);
  g_free (c);
}

/* The envelope first: without it the message is not queued. */
static void
commit_undo (VpsQueue *q, Commit *c)
{
  const char *id = c->w->id;
  g_autofree char *json = vps_queue_path (q, c->json_in ? "incoming" : "tmp", id, ".json");
  g_autofree char *eml
      = c->eml_in ? vps_queue_path (q, "incoming", id, ".eml") : g_strdup (c->w->path);

  if (c->json_written)
    unlink (json);
  unlink (eml);
  c->json_written = c->json_in = c->eml_in = FALSE;
}

/* Pool stage: the message's and the envelope's data on disk. */
static gboolean
commit_sync_files (VpsQueue *q, Commit *c, GError **error)
{
  g_autofree char *tmp_json = vps_queue_path (q, "tmp", c->w->id, ".json");

  if (fsync (c->w->fd) != 0)
    return vps_queue_errno_error (error, errno, "fsync", c->w->path);
  if (!write_file_synced (tmp_json, c->json, c->json_len, error))
    return FALSE;
  c->json_written = TRUE;
  return TRUE;
}

static void
sync_func (gpointer data, gpointer user_data)
{
  Commit *c = data;
  VpsQueue *q = c->w->q; /* alive: the writer holds a reference */
  GAsyncQueue *commits = q->commits;

  if (!commit_sync_files (q, c, &c->error))
    commit_undo (q, c);
  /* before the push: the committer never waits for one it already has */
  g_atomic_int_add (&q->syncing, -1);
  /* A failed commit goes to the committer too, which hands every result
   * back: the writers are freed on that thread only (the last reference
   * to the queue may go with one), never on the pool's.  From this push
   * on, c and q are the committer's: neither is touched again here. */
  g_async_queue_push (commits, c);
}

/* Committer stage: the commit point.  The message goes in first, so that
 * the envelope, once in incoming/, always has its message. */
static gboolean
commit_rename (VpsQueue *q, Commit *c, GError **error)
{
  const char *id = c->w->id;
  g_autofree char *tmp_json = vps_queue_path (q, "tmp", id, ".json");
  g_autofree char *in_eml = vps_queue_path (q, "incoming", id, ".eml");
  g_autofree char *in_json = vps_queue_path (q, "incoming", id, ".json");
  int err;

  if ((err = vps_queue_rename_noreplace (c->w->path, in_eml)) != 0)
    return vps_queue_errno_error (error, err, "rename to", in_eml);
  c->eml_in = TRUE;
  if ((err = vps_queue_rename_noreplace (tmp_json, in_json)) != 0)
    return vps_queue_errno_error (error, err, "rename to", in_json);
  c->json_in = TRUE;
  return TRUE;
}

/* Returns how long the directory fsync took (µs; 0 without one). */
static gint64
commit_batch (VpsQueue *q, GPtrArray *batch)
{
  g_autofree char *incoming = vps_queue_path (q, "incoming", NULL, NULL);
  g_autoptr (GError) sync_error = NULL;
  gint64 start = 0;
  guint done = 0;

  for (guint i = 0; i < batch->len; i++)
    {
      Commit *c = g_ptr_array_index (batch, i);

      if (c->error != NULL) /* failed (and undone) on the pool */
        continue;
      if (commit_rename (q, c, &c->error))
        done++;
      else
        commit_undo (q, c);
    }
  /* one fsync of incoming/ makes every rename of the batch durable */
  if (done > 0)
    {
      __atomic_add_fetch (&q->dir_syncs, 1, __ATOMIC_RELAXED);
      start = g_get_monotonic_time ();
      if (!vps_queue_fsync_dir (incoming, &sync_error))
        {
          for (guint i = 0; i < batch->len; i++)
            {
              Commit *c = g_ptr_array_index (batch, i);

              if (c->error != NULL)
                continue;
              commit_undo (q, c);
              c->error = g_error_copy (sync_error);
            }
          vps_queue_fsync_dir (incoming, NULL);
        }
    }
  for (guint i = 0; i < batch->len; i++)
    {
      Commit *c = g_ptr_array_index (batch, i);

      if (c->error != NULL)
        vps_warning (c->w->id, "queue: %s: commit failed: %s", c->w->id, c->error->message);
    }
  return start > 0 ? g_get_monotonic_time () - start : 0;
}

/* Hands the results back; frees the writers (possibly the queue's last
 * reference: nothing here touches q). */
static void
commit_return (GPtrArray *batch)
{
  for (guint i = 0; i < batch->len; i++)
    {
      Commit *c = g_ptr_array_index (batch, i);
      GTask *task = c->task;

      g_clear_pointer (&c->w, writer_free);
      if (c->error != NULL)
        g_task_return_error (task, g_steal_pointer (&c->error));
      else
        g_task_return_boolean (task, TRUE);
      g_object_unref (task);
    }
}

/* After the last reference: no commit is in flight (each holds one), but
 * a pool thread may still be leaving sync_func after its push; the free
 * waits for it before the commit queue goes. */
static void
commit_clear (VpsQueue *q)
{
  if (q->syncers != NULL)
    g_thread_pool_free (q->syncers, FALSE, TRUE);
  g_async_queue_unref (q->commits);
  g_mutex_clear (&q->start_lock);
  g_mutex_clear (&q->batch_lock);
}

/* The next commit for this batch: one waiting, else, while some are still
 * on the pool, the first to come before the deadline. */
static gpointer
next_commit (VpsQueue *q, GAsyncQueue *commits, gint64 deadline)
{
  gpointer item = g_async_queue_try_pop (commits);
  gint64 now;

  while (item == NULL && g_atomic_int_get (&q->syncing) > 0
         && (now = g_get_monotonic_time ()) < deadline)
    item = g_async_queue_timeout_pop (commits, (guint64)(deadline - now));
  return item;
}

static gpointer
committer_main (gpointer data)
{
  VpsQueue *q = data;
  GAsyncQueue *commits = g_async_queue_ref (q->commits);
  gint64 gather = 0; /* µs: the last directory fsync's time */
  gpointer item;

  while ((item = g_async_queue_pop (commits)) != &stop_marker)
    {
      g_autoptr (GPtrArray) batch = g_ptr_array_new ();
      gint64 deadline, took;

      g_mutex_lock (&q->batch_lock); /* held by a test: commits pile up */
      deadline = g_get_monotonic_time () + MIN (gather, GATHER_MAX_USEC);
      /* everything waiting goes in this group; the stop marker cannot be
       * among it (it comes after the last reference, and every commit in
       * the queue or on the pool holds one through its writer) */
      do
        g_ptr_array_add (batch, item);
      while ((item = next_commit (q, commits, deadline)) != NULL);
      took = commit_batch (q, batch);
      gather = took > 0 ? took : gather;
      commit_return (batch);
      g_mutex_unlock (&q->batch_lock); /* q is freed after the loop only */
    }
  if (q->free_on_exit)
    {
      g_thread_unref (q->committer);
      commit_clear (q);
      vps_queue_free (q);
    }
  g_async_queue_unref (commits);
  return NULL;
}

static void
start_threads (VpsQueue *q)
{
  g_mutex_lock (&q->start_lock);
  if (q->committer == NULL)
    {
      /* not exclusive: threads come as commits do, idle ones go back to
       * GLib's shared pool; creating one cannot fail here */
      q->syncers = g_thread_pool_new (sync_func, NULL, SYNC_THREADS, FALSE, NULL);
      q->committer = g_thread_new ("vps-queue-commit", committer_main, q);
    }
  g_mutex_unlock (&q->start_lock);
}

void
vps_queue_commit_init (VpsQueue *q)
{
  g_mutex_init (&q->start_lock);
  g_mutex_init (&q->batch_lock);
  q->commits = g_async_queue_new ();
}

void
vps_queue_commit_hold (VpsQueue *q, gboolean hold)
{
  if (hold)
    g_mutex_lock (&q->batch_lock);
  else
    g_mutex_unlock (&q->batch_lock);
}

gboolean
vps_queue_commit_stop (VpsQueue *q)
{
  if (q->committer != NULL && g_thread_self () == q->committer)
    {
      /* inside a batch: the thread frees the queue when it leaves */
      q->free_on_exit = TRUE;
      g_async_queue_push (q->commits, &stop_marker);
      return FALSE;
    }
  if (q->committer != NULL)
    {
      g_async_queue_push (q->commits, &stop_marker);
      g_thread_join (q->committer);
    }
  commit_clear (q);
  return TRUE;
}

void
vps_queue_commit_async (VpsQueue *q, VpsQueueWriter *w, VpsEnvelope *env,
                        GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, NULL, callback, user_data);
  GError *error = NULL;
  Commit *c;

  g_task_set_source_tag (task, vps_queue_commit_async);
  if (g_strcmp0 (env->id, w->id) != 0)
    g_set_error (&error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_INVALID_ID,
                 "envelope id %s is not the writer's %s", env->id ? env->id : "(null)", w->id);
  else if (writer_flush (w, &error))
    {
      env->size = w->size;
      if (env->received == 0)
        env->received = g_get_real_time ();
      c = g_new0 (Commit, 1);
      c->json = envelope_data (env, &c->json_len, &error);
      if (c->json != NULL)
        {
          g_autoptr (GError) push_error = NULL;

          c->w = w;
          c->task = task;
          g_task_set_task_data (task, c, (GDestroyNotify)commit_free);
          start_threads (q);
          g_atomic_int_inc (&q->syncing);
          /* FALSE: no new thread could be started; the commit is queued
           * all the same and runs when a pool thread is free (w and c may
           * be gone by now: not named in the log) */
          if (!g_thread_pool_push (q->syncers, c, &push_error))
            vps_log_once ("queue-sync-pool", 60, G_LOG_LEVEL_WARNING, NULL, "queue: sync pool: %s",
                          push_error->message);
          return;
        }
      commit_free (c);
    }
  vps_warning (w->id, "queue: %s: commit failed: %s", w->id, error->message);
  vps_queue_writer_abort (w);
  g_task_return_error (task, error);
  g_object_unref (task);
}

gboolean
vps_queue_commit_finish (VpsQueue *q, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
sync_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **)user_data = g_object_ref (result);
}

gboolean
vps_queue_commit_sync (VpsQueue *q, VpsQueueWriter *w, VpsEnvelope *env, GError **error)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (GAsyncResult) result = NULL;

  g_main_context_push_thread_default (context);
  vps_queue_commit_async (q, w, env, sync_done, &result);
  while (result == NULL)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  return vps_queue_commit_finish (q, result, error);
}

/* ---- envelope updates ------------------------------------------------------------ */

/* Durable, as the states it records decide what is delivered again after
 * a crash; and two fsyncs, no more: the new file's (else the exchange
 * could bring in an empty or partial envelope) and the area directory's
 * (the exchange itself).  tmp/, where the old envelope is unlinked, is not
 * synced: recovery empties it. */
gboolean
vps_queue_update_envelope (VpsQueue *q, const VpsEnvelope *env, GError **error)
{
  g_autofree char *tmp = NULL;
  g_autofree char *dst = NULL;
  g_autofree char *area_dir = NULL;
  g_autofree char *data = NULL;
  VpsQueueArea area;
  gsize len;
  int err = 0;

  if (!vps_queue_locate (q, env->id, &area, error))
    return FALSE;
  if ((data = envelope_data (env, &len, error)) == NULL)
    return FALSE;
  tmp = vps_queue_path (q, "tmp", env->id, ".json");
  dst = vps_queue_path (q, vps_queue_area_name (area), env->id, ".json");
  area_dir = vps_queue_path (q, vps_queue_area_name (area), NULL, NULL);
  if (!write_file_synced (tmp, data, len, error))
    return FALSE;
  /* An exchange, not a rename: if vpsctl removed or moved the message
   * since, it fails (ENOENT) instead of putting an envelope back. */
  if (renameat2 (AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE) != 0)
    {
      err = errno;
      if ((err == EINVAL || err == ENOSYS) && access (dst, F_OK) == 0)
        err = rename (tmp, dst) == 0 ? 0 : errno;
    }
  unlink (tmp); /* the old envelope after an exchange */
  if (err == ENOENT || err == EINVAL || err == ENOSYS)
    {
      g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND, "%s: not in the queue",
                   env->id);
      return FALSE;
    }
  if (err != 0)
    return vps_queue_errno_error (error, err, "rename to", dst);
  return vps_queue_fsync_dir (area_dir, error);
}

/* renameat2 (RENAME_EXCHANGE), or a rename where the file system has no
 * exchange but the destination exists: 0 or an errno (ENOENT: gone). */
static int
exchange (const char *from, const char *to)
{
  int err = 0;

  if (renameat2 (AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE) != 0)
    {
      err = errno;
      if ((err == EINVAL || err == ENOSYS) && access (to, F_OK) == 0)
        err = rename (from, to) == 0 ? 0 : errno;
      else if (err == EINVAL || err == ENOSYS)
        err = ENOENT;
    }
  return err;
}

static gboolean
exchange_error (GError **error, int err, const char *id, const char *path)
{
  if (err == ENOENT)
    {
      g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND, "%s: not in the queue", id);
      return FALSE;
    }
  return vps_queue_errno_error (error, err, "rename to", path);
}

/* The message and its envelope both change (postq's header edits), and the
 * envelope's "size" must match the message or recovery sets them aside:
 * both new files are written and fsynced in tmp/ first, then renamed over
 * the old ones, message first, and incoming/ fsynced once.  A crash
 * between the two renames leaves a size that does not match: recovery
 * moves the pair to corrupt/ (logged, kept for the admin): never a loss,
 * and a window of two renames. */
gboolean
vps_queue_rewrite_message (VpsQueue *q, VpsEnvelope *env, GBytes *content, GError **error)
{
  g_autofree char *tmp_eml = NULL;
  g_autofree char *tmp_json = NULL;
  g_autofree char *dst_eml = NULL;
  g_autofree char *dst_json = NULL;
  g_autofree char *area_dir = NULL;
  g_autofree char *data = NULL;
  VpsQueueArea area;
  gsize len, msg_len;
  const char *msg = g_bytes_get_data (content, &msg_len);
  guint64 old_size = env->size;
  int err;

  if (!vps_queue_locate (q, env->id, &area, error))
    return FALSE;
  if (area != VPS_QUEUE_INCOMING)
    {
      /* held meanwhile (vpsctl): left alone, like an envelope update */
      g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND, "%s: not in incoming/",
                   env->id);
      return FALSE;
    }
  env->size = msg_len;
  data = envelope_data (env, &len, error);
  if (data == NULL)
    {
      env->size = old_size;
      return FALSE;
    }
  tmp_eml = vps_queue_path (q, "tmp", env->id, ".eml");
  tmp_json = vps_queue_path (q, "tmp", env->id, ".json");
  dst_eml = vps_queue_path (q, "incoming", env->id, ".eml");
  dst_json = vps_queue_path (q, "incoming", env->id, ".json");
  area_dir = vps_queue_path (q, "incoming", NULL, NULL);
  if (!write_file_synced (tmp_eml, msg ? msg : "", msg_len, error))
    {
      unlink (tmp_eml);
      env->size = old_size;
      return FALSE;
    }
  if (!write_file_synced (tmp_json, data, len, error))
    {
      unlink (tmp_eml);
      unlink (tmp_json);
      env->size = old_size;
      return FALSE;
    }
  /* exchanges, as in vps_queue_update_envelope: a message vpsctl removed
   * or held since the check above is not brought back into incoming/ */
  err = exchange (tmp_eml, dst_eml);
  unlink (tmp_eml); /* the old message after an exchange */
  if (err != 0)
    {
      unlink (tmp_json);
      env->size = old_size;
      return exchange_error (error, err, env->id, dst_eml);
    }
  err = exchange (tmp_json, dst_json);
  unlink (tmp_json);
  if (err != 0)
    return exchange_error (error, err, env->id, dst_json);
  return vps_queue_fsync_dir (area_dir, error);
}
