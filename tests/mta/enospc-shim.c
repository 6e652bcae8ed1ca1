/* SPDX-License-Identifier: MIT
 *
 * enospc-shim.c — an LD_PRELOAD fault injector for the durability tests of
 * vsmtpd's spool (TESTING.md, "Durability": ENOSPC during a queue write →
 * 451 4.3.0, never 250, no partial file).
 *
 * It wraps the calls that put bytes on disk — write, pwrite(64), writev,
 * fsync, fdatasync, (posix_)fallocate(64) — and makes them fail with ENOSPC,
 * as a full file system does, but only for files whose /proc/self/fd link
 * contains "/queue/tmp/" (the spool's staging area; the directory itself,
 * the log on stderr and everything else are left alone):
 *
 *   VPS_SHIM_ENOSPC=1           every such call fails at once;
 *   VPS_SHIM_ENOSPC=fsync       only fsync/fdatasync fail (the data was
 *                               "written" but cannot be made durable, as
 *                               on a thin-provisioned or network disk);
 *   VPS_SHIM_ENOSPC_AFTER=N     writes succeed until the file would grow
 *                               past N bytes: the write that crosses N is
 *                               short (up to N, as the kernel does when the
 *                               disk fills mid-write), the next one fails.
 *
 * Each injected failure is reported on stderr as one line starting with
 * "enospc-shim: ", so a test can prove the fault really happened (a test
 * that passes because the shim never fired would prove nothing).
 *
 * Only the environment at process start counts (read once, in the
 * constructor).  Not for production: a test tool, small on purpose.
 */
/* The build defines _FILE_OFFSET_BITS=64, which makes glibc's headers rename
 * pwrite to pwrite64 (and the same for fallocate): both names must be
 * defined here, each under its own symbol, so no renaming. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* What the fd's path must contain to be a victim. */
#define SHIM_NEEDLE "/queue/tmp/"
/* Longest /proc/self/fd link read (longer ones are truncated, which only
 * matters when the needle sits beyond it). */
#define SHIM_MAX_PATH 4096

typedef ssize_t (*write_fn) (int, const void *, size_t);
typedef ssize_t (*pwrite_fn) (int, const void *, size_t, off_t);
typedef ssize_t (*pwrite64_fn) (int, const void *, size_t, off64_t);
typedef ssize_t (*writev_fn) (int, const struct iovec *, int);
typedef int (*fsync_fn) (int);
typedef int (*fallocate_fn) (int, int, off_t, off_t);
typedef int (*fallocate64_fn) (int, int, off64_t, off64_t);
typedef int (*posix_fallocate_fn) (int, off_t, off_t);
typedef int (*posix_fallocate64_fn) (int, off64_t, off64_t);

static int shim_always;           /* VPS_SHIM_ENOSPC=1 */
static int shim_fsync_only;       /* VPS_SHIM_ENOSPC=fsync */
static long long shim_after = -1; /* VPS_SHIM_ENOSPC_AFTER, -1 = unset */

/* Exported functions need prototypes under -Wmissing-prototypes; these are
 * the libc ones, declared by the headers above, plus our constructor. */
static void shim_init (void) __attribute__ ((constructor));

static void
shim_init (void)
{
  const char *always = getenv ("VPS_SHIM_ENOSPC");
  const char *after = getenv ("VPS_SHIM_ENOSPC_AFTER");

  shim_always = always != NULL && strcmp (always, "1") == 0;
  shim_fsync_only = always != NULL && strcmp (always, "fsync") == 0;
  if (after != NULL && *after != '\0')
    {
      char *end = NULL;
      long long v;

      errno = 0;
      v = strtoll (after, &end, 10);
      if (errno == 0 && end != NULL && *end == '\0' && v >= 0)
        shim_after = v;
    }
}

static void *
next_symbol (const char *name)
{
  void *fn = dlsym (RTLD_NEXT, name);

  /* Without the real function nothing sensible can happen; dying loudly
   * beats a test that silently measures nothing. */
  if (fn == NULL)
    abort ();
  return fn;
}

/* TRUE when fd is a file in the spool's tmp/. */
static int
is_victim (int fd)
{
  char link[64];
  char path[SHIM_MAX_PATH];
  ssize_t n;

  if (fd < 0 || (!shim_always && !shim_fsync_only && shim_after < 0))
    return 0;
  if (snprintf (link, sizeof link, "/proc/self/fd/%d", fd) >= (int)sizeof link)
    return 0;
  n = readlink (link, path, sizeof path - 1);
  if (n <= 0)
    return 0;
  path[n] = '\0';
  return strstr (path, SHIM_NEEDLE) != NULL;
}

/* One line on stderr through the real write (stderr is never a victim). */
static void
report (const char *call, int fd)
{
  static write_fn real_write;
  char line[128];
  int n;

  if (real_write == NULL)
    real_write = (write_fn)next_symbol ("write");
  n = snprintf (line, sizeof line, "enospc-shim: %s fd=%d: ENOSPC injected\n", call, fd);
  if (n > 0 && n < (int)sizeof line)
    (void)!real_write (STDERR_FILENO, line, (size_t)n);
}

static int
fail (const char *call, int fd)
{
  report (call, fd);
  errno = ENOSPC;
  return -1;
}

/* How many of `count` bytes written at `offset` still fit under the limit:
 * count when they all do, else what is left (0 = the disk is "full"). */
static size_t
room_at (off_t offset, size_t count)
{
  if (shim_always)
    return 0;
  if (shim_after < 0) /* fsync-only mode: writes always fit */
    return count;
  if (offset < 0 || (long long)offset >= shim_after)
    return 0;
  if ((unsigned long long)offset + count <= (unsigned long long)shim_after)
    return count;
  return (size_t)(shim_after - (long long)offset);
}

static off_t
current_offset (int fd)
{
  int flags = fcntl (fd, F_GETFL);
  struct stat st;

  /* O_APPEND writes land at the end whatever the position says. */
  if (flags >= 0 && (flags & O_APPEND) && fstat (fd, &st) == 0)
    return st.st_size;
  return lseek (fd, 0, SEEK_CUR);
}

ssize_t
write (int fd, const void *buf, size_t count)
{
  static write_fn real;
  size_t room;

  if (real == NULL)
    real = (write_fn)next_symbol ("write");
  if (count == 0 || !is_victim (fd))
    return real (fd, buf, count);
  room = room_at (current_offset (fd), count);
  if (room == 0)
    return fail ("write", fd);
  return real (fd, buf, room);
}

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
  static pwrite_fn real;
  size_t room;

  if (real == NULL)
    real = (pwrite_fn)next_symbol ("pwrite");
  if (count == 0 || !is_victim (fd))
    return real (fd, buf, count, offset);
  room = room_at (offset, count);
  if (room == 0)
    return fail ("pwrite", fd);
  return real (fd, buf, room, offset);
}

ssize_t
pwrite64 (int fd, const void *buf, size_t count, off64_t offset)
{
  static pwrite64_fn real;
  size_t room;

  if (real == NULL)
    real = (pwrite64_fn)next_symbol ("pwrite64");
  if (count == 0 || !is_victim (fd))
    return real (fd, buf, count, offset);
  room = room_at ((off_t)offset, count);
  if (room == 0)
    return fail ("pwrite64", fd);
  return real (fd, buf, room, offset);
}

ssize_t
writev (int fd, const struct iovec *iov, int iovcnt)
{
  static writev_fn real;
  static write_fn real_write;
  size_t total = 0, room, done = 0;

  if (real == NULL)
    real = (writev_fn)next_symbol ("writev");
  if (real_write == NULL)
    real_write = (write_fn)next_symbol ("write");
  if (!is_victim (fd))
    return real (fd, iov, iovcnt);
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (total == 0)
    return real (fd, iov, iovcnt);
  room = room_at (current_offset (fd), total);
  if (room == 0)
    return fail ("writev", fd);
  if (room == total)
    return real (fd, iov, iovcnt);
  /* A short vectored write: the pieces that fit, one by one. */
  for (int i = 0; i < iovcnt && done < room; i++)
    {
      size_t want = iov[i].iov_len < room - done ? iov[i].iov_len : room - done;
      ssize_t n = real_write (fd, iov[i].iov_base, want);

      if (n < 0)
        return done > 0 ? (ssize_t)done : -1;
      done += (size_t)n;
      if ((size_t)n < want)
        break;
    }
  return (ssize_t)done;
}

/* A full disk also fails a sync (delayed allocation); in the "after" mode
 * nothing was written past the limit, so a sync has nothing to fail on. */
int
fsync (int fd)
{
  static fsync_fn real;

  if (real == NULL)
    real = (fsync_fn)next_symbol ("fsync");
  if ((shim_always || shim_fsync_only) && is_victim (fd))
    return fail ("fsync", fd);
  return real (fd);
}

int
fdatasync (int fd)
{
  static fsync_fn real;

  if (real == NULL)
    real = (fsync_fn)next_symbol ("fdatasync");
  if ((shim_always || shim_fsync_only) && is_victim (fd))
    return fail ("fdatasync", fd);
  return real (fd);
}

int
fallocate (int fd, int mode, off_t offset, off_t len)
{
  static fallocate_fn real;

  if (real == NULL)
    real = (fallocate_fn)next_symbol ("fallocate");
  if (is_victim (fd) && len > 0 && room_at (offset, (size_t)len) < (size_t)len)
    return fail ("fallocate", fd);
  return real (fd, mode, offset, len);
}

int
fallocate64 (int fd, int mode, off64_t offset, off64_t len)
{
  static fallocate64_fn real;

  if (real == NULL)
    real = (fallocate64_fn)next_symbol ("fallocate64");
  if (is_victim (fd) && len > 0 && room_at ((off_t)offset, (size_t)len) < (size_t)len)
    return fail ("fallocate64", fd);
  return real (fd, mode, offset, len);
}

/* posix_fallocate returns the error number instead of setting errno. */
int
posix_fallocate (int fd, off_t offset, off_t len)
{
  static posix_fallocate_fn real;

  if (real == NULL)
    real = (posix_fallocate_fn)next_symbol ("posix_fallocate");
  if (is_victim (fd) && len > 0 && room_at (offset, (size_t)len) < (size_t)len)
    {
      report ("posix_fallocate", fd);
      return ENOSPC;
    }
  return real (fd, offset, len);
}

int
posix_fallocate64 (int fd, off64_t offset, off64_t len)
{
  static posix_fallocate64_fn real;

  if (real == NULL)
    real = (posix_fallocate64_fn)next_symbol ("posix_fallocate64");
  if (is_victim (fd) && len > 0 && room_at ((off_t)offset, (size_t)len) < (size_t)len)
    {
      report ("posix_fallocate64", fd);
      return ENOSPC;
    }
  return real (fd, offset, len);
}
