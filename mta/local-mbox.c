/* SPDX-License-Identifier: MIT
 *
 * local-mbox.c — mbox delivery (see local.h for the contract).
 *
 * Locking is what mail readers expect on Debian: a dot-lock PATH.lock
 * (created with O_EXCL; broken when older than VPS_LOCAL_DOTLOCK_STALE, as
 * a reader that died cannot remove it) and a write lock with fcntl(2) on
 * the whole file, taken in this order like Postfix's local(8).  We use
 * open file description locks: they conflict with the classic fcntl locks
 * of other programs, but unlike those they also conflict between two
 * threads of vsmtpd and are not dropped when another thread closes the
 * same file.  Both are polled with a back-off until one deadline.
 *
 * The format is mboxrd (every /^>*From / line gets one more ">", so readers
 * can undo it exactly); each message ends with an empty line.  The file's
 * size is taken under the lock; a write or fsync failure cuts the file
 * back to it, so readers never see half a message.
 */
#include "mta/local.h"
#include "vps/log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Lock polling: first retry after 10 ms, doubling up to 500 ms. */
#define LOCK_POLL_MIN_US 10000
#define LOCK_POLL_MAX_US 500000

#ifdef F_OFD_SETLK
#define LOCK_CMD F_OFD_SETLK
#else
#define LOCK_CMD F_SETLK
#endif

static gint lock_timeout = VPS_LOCAL_LOCK_TIMEOUT;

void
vps_local_set_lock_timeout (guint seconds)
{
  g_atomic_int_set (&lock_timeout, (gint)MIN (seconds, G_MAXINT / 2));
}

static gboolean
locked_error (GError **error, const char *path, const char *which)
{
  g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_LOCKED,
               "mbox %s: %s lock not obtained within %u s", path, which,
               (guint)g_atomic_int_get (&lock_timeout));
  return FALSE;
}

/* Sleep before the next attempt, or FALSE when the deadline has passed. */
static gboolean
lock_backoff (gint64 deadline, gulong *delay)
{
  gint64 now = g_get_monotonic_time ();

  if (now >= deadline)
    return FALSE;
  g_usleep (MIN ((gint64)*delay, deadline - now));
  *delay = MIN (*delay * 2, LOCK_POLL_MAX_US);
  return TRUE;
}

static gboolean
dotlock_acquire (const char *lock, const char *path, gint64 deadline, GError **error)
{
  gulong delay = LOCK_POLL_MIN_US;

  for (;;)
    {
      struct stat st;
      int fd = open (lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

      if (fd >= 0)
        {
          /* The pid is for humans; the lock is the name. */
          g_autofree char *pid = g_strdup_printf ("%d\n", (int)getpid ());

          if (write (fd, pid, strlen (pid)) < 0)
            vps_notice (NULL, "mbox: cannot write %s: %s", lock, g_strerror (errno));
          close (fd);
          return TRUE;
        }
      if (errno != EEXIST)
        return vps_local_io_error (error, errno, "cannot create", lock);
      if (lstat (lock, &st) != 0)
        {
          /* Removed since our open: try again at once. */
          if (errno == ENOENT)
            continue;
          return vps_local_io_error (error, errno, "cannot stat", lock);
        }
      if (time (NULL) - st.st_mtime > VPS_LOCAL_DOTLOCK_STALE)
        {
          vps_notice (NULL, "mbox: removing stale lock %s (%ld s old)", lock,
                      (long)(time (NULL) - st.st_mtime));
          if (unlink (lock) != 0 && errno != ENOENT)
            return vps_local_io_error (error, errno, "cannot remove stale", lock);
          continue;
        }
      if (!lock_backoff (deadline, &delay))
        return locked_error (error, path, "dot-");
    }
}

static gboolean
fcntl_acquire (int fd, const char *path, gint64 deadline, GError **error)
{
  gulong delay = LOCK_POLL_MIN_US;

  for (;;)
    {
      struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

      if (fcntl (fd, LOCK_CMD, &fl) == 0)
        return TRUE;
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EACCES)
        return vps_local_io_error (error, errno, "cannot lock", path);
      if (!lock_backoff (deadline, &delay))
        return locked_error (error, path, "fcntl");
    }
}

/* Open the mailbox (read too: separator() looks at its end) without
 * following a symlink or blocking on a FIFO, and
 * refuse what is not a plain file of its own (a hard link could make us
 * append to another user's file). */
static int
open_mbox (const char *path, GError **error)
{
  struct stat st;
  int fd = open (path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);

  if (fd < 0)
    {
      vps_local_io_error (error, errno, "cannot open", path);
      return -1;
    }
  if (fstat (fd, &st) != 0)
    {
      vps_local_io_error (error, errno, "cannot stat", path);
      close (fd);
      return -1;
    }
  if (!S_ISREG (st.st_mode) || st.st_nlink != 1)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE,
                   "mbox %s is not a regular file with one link", path);
      close (fd);
      return -1;
    }
  return fd;
}

/* "From sender Thu Nov 28 21:28:00 2024\n" (asctime(3) in the C locale,
 * which mail readers parse; strftime would follow LC_TIME). */
static char *
from_line (const char *sender)
{
  static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
  static const char *const months[]
      = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  g_autofree char *who = g_strdup (sender != NULL && *sender ? sender : "MAILER-DAEMON");
  time_t now = time (NULL);
  struct tm tm;

  /* The line is split at blanks by readers; a quoted local part may have some. */
  g_strdelimit (who, " \t", '_');
  localtime_r (&now, &tm);
  return g_strdup_printf ("From %s %s %s %2d %02d:%02d:%02d %d\n", who, days[tm.tm_wday % 7],
                          months[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                          tm.tm_year + 1900);
}

/* How many "\n" the mailbox needs so the next From_ line follows an empty
 * line (a file left by another writer, or edited by hand, may lack it). */
static const char *
separator (int fd, off_t size)
{
  char tail[2];

  if (size == 0)
    return "";
  if (size == 1)
    return pread (fd, tail, 1, 0) == 1 && tail[0] == '\n' ? "\n" : "\n\n";
  if (pread (fd, tail, 2, size - 2) != 2)
    return "\n";
  if (tail[1] != '\n')
    return "\n\n";
  return tail[0] == '\n' ? "" : "\n";
}

/* Append one message under both locks; on failure the file is cut back. */
static gboolean
append_locked (int fd, const char *path, const char *sender, const char *rcpt, GBytes *message,
               GError **error)
{
  g_autofree char *before = NULL;
  g_autofree char *from = from_line (sender);
  struct stat st;
  int err = 0;

  if (fstat (fd, &st) != 0)
    return vps_local_io_error (error, errno, "cannot stat", path);
  before = g_strconcat (separator (fd, st.st_size), from, NULL);
  if (!vps_local_write_message (fd, path, before, sender, rcpt, message, TRUE, NULL, error))
    err = -1;
  else if (fsync (fd) != 0)
    {
      err = errno;
      vps_local_io_error (error, err, "cannot fsync", path);
    }
  if (err == 0)
    return TRUE;
  /* A message cut in the middle would glue the next one onto it. */
  if (ftruncate (fd, st.st_size) != 0 || fsync (fd) != 0)
    vps_notice (NULL, "mbox: cannot truncate %s back to %lld bytes: %s", path,
                (long long)st.st_size, g_strerror (errno));
  return FALSE;
}

gboolean
vps_local_mbox_deliver (const char *path, const char *sender, const char *rcpt, GBytes *message,
                        GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *lock = NULL;
  gint64 deadline;
  gboolean ok;
  int fd;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (rcpt != NULL, FALSE);
  g_return_val_if_fail (message != NULL, FALSE);

  if (!g_path_is_absolute (path))
    {
      g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE,
                   "mbox \"%s\" is not an absolute path", path);
      return FALSE;
    }
  if (!vps_local_check_envelope (sender, rcpt, error))
    return FALSE;
  dir = g_path_get_dirname (path);
  if (!vps_local_make_dir (dir, NULL, error))
    return FALSE;

  deadline = g_get_monotonic_time () + (gint64)g_atomic_int_get (&lock_timeout) * G_USEC_PER_SEC;
  lock = g_strconcat (path, ".lock", NULL);
  if (!dotlock_acquire (lock, path, deadline, error))
    return FALSE;
  fd = open_mbox (path, error);
  ok = fd >= 0 && fcntl_acquire (fd, path, deadline, error)
       && append_locked (fd, path, sender, rcpt, message, error);
  /* Closing our only descriptor releases the fcntl lock; the dot-lock
   * goes last, as it was taken first. */
  if (fd >= 0)
    close (fd);
  if (unlink (lock) != 0)
    vps_notice (NULL, "mbox: cannot remove %s: %s", lock, g_strerror (errno));
  return ok;
}
