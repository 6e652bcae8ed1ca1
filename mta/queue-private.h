/* SPDX-License-Identifier: MIT
 *
 * queue-private.h — what the spool's two files share: the queue and writer
 * structs and the small file helpers.  queue.c owns the layout, recovery
 * and the calls that read and move queued messages; queue-commit.c the
 * writer, the commit (its threads included) and the envelope rewrite.
 * Tests see it too (vps_queue_commit_hold).  Not for other modules:
 * queue.h is the contract.
 */
#pragma once

#include "mta/queue.h"

G_BEGIN_DECLS

#define VPS_QUEUE_FILE_MODE 0600

struct _VpsQueue
{
  gatomicrefcount ref;
  char *dir;   /* absolute */
  int lock_fd; /* -1: opened without the lock (vpsctl) */
  /* the commit machinery (queue-commit.c), started by the first commit */
  GMutex start_lock;     /* starting the committer and the sync pool */
  GMutex batch_lock;     /* the committer's, around each batch */
  GThread *committer;    /* NULL until the first commit */
  GThreadPool *syncers;  /* per-message fsyncs; NULL until the first commit */
  gint syncing;          /* atomic: commits on the pool, not yet handed over */
  GAsyncQueue *commits;  /* Commit* synced (or failed), or the stop marker */
  gboolean free_on_exit; /* the last unref happened on the committer */
  guint64 dir_syncs;     /* atomic */
};

struct _VpsQueueWriter
{
  VpsQueue *q; /* ref */
  char *id;
  char *path; /* tmp/ID.eml */
  int fd;
  guint8 *buf;
  gsize buffered;
  guint64 size;  /* written + buffered */
  GError *error; /* sticky */
};

/* ---- helpers (queue.c) ---------------------------------------------------- */

/* G_IO_ERROR from errno, "what path: strerror"; returns FALSE. */
gboolean vps_queue_errno_error (GError **error, int err, const char *what, const char *path);
/* DIR/area[/id ext] (id NULL: the area directory itself). */
char *vps_queue_path (VpsQueue *q, const char *area, const char *id, const char *ext);
/* write(2) until done (EINTR retried): 0 or an errno. */
int vps_queue_write_all (int fd, const void *data, gsize len);
/* rename(2) that never replaces a file: 0 or an errno. */
int vps_queue_rename_noreplace (const char *from, const char *to);
gboolean vps_queue_fsync_dir (const char *path, GError **error);
/* The queue's memory and lock (the last reference is gone, the commit
 * machinery stopped). */
void vps_queue_free (VpsQueue *q);

/* ---- the commit machinery (queue-commit.c) -------------------------------- */

void vps_queue_commit_init (VpsQueue *q);
/* At the last unref: stops the committer and the sync pool.  FALSE when
 * called on the committer thread itself: that thread frees the queue when
 * it leaves its loop, the caller must not.  TRUE: the caller frees. */
gboolean vps_queue_commit_stop (VpsQueue *q);
/* Tests: while held, the committer starts no batch (it may have taken one
 * commit already), so the commits that reach it meanwhile all go in the
 * next one.  Held and released on the same thread. */
void vps_queue_commit_hold (VpsQueue *q, gboolean hold);

/* Shared by queue.c and queue-recover.c. */
#define VPS_QUEUE_N_SPOOL_DIRS 5
extern const char *const vps_queue_spool_dirs[VPS_QUEUE_N_SPOOL_DIRS]; /* every area, tmp/ first */
gint vps_queue_compare_names (gconstpointer a, gconstpointer b);
GBytes *vps_queue_read_bounded (const char *path, gsize max, GError **error);
GPtrArray *vps_queue_list_names (const char *path, GError **error);
void vps_queue_raise_id_floor (gint64 seen);
gboolean vps_queue_split_name (const char *name, char *id, gboolean *is_json);
gboolean vps_queue_recover (VpsQueue *q, GError **error);

G_END_DECLS
