/* SPDX-License-Identifier: MIT
 *
 * local.h — local delivery: maildir and mbox, and the path templates that
 * name them.  Blocking file I/O: vsmtpd calls these from its delivery
 * thread pool, never from a worker loop.  Every function is thread-safe.
 *
 * Templates (the target of `deliver maildir|mbox PATH` or of [delivery]
 * default): %l is the recipient's local part, %u the local part without
 * its "+extension" (the user: split at the first "+", unless that would
 * leave it empty, as Postfix's recipient_delimiter does), %d the domain in
 * lower case (ASCII), %% a percent.  The address is split at its last "@";
 * without one the domain is empty.  The local part keeps its case.
 * Whatever a recipient address brings is checked before it becomes part of
 * a path: a substituted value that is empty, ".", "..", starts with a dot,
 * is longer than VPS_LOCAL_MAX_NAME, or contains "/", NUL, or a control
 * character, is refused (VPS_LOCAL_ERROR_UNSAFE) — a local part like
 * "../../x" or "a/b" never escapes the root.  The template itself must be
 * an absolute path (the config and the rule loader make relative ones
 * absolute); it is trusted, only substituted values are checked.
 *
 * Both formats get two header lines in front of the message:
 *   Return-Path: <sender>
 *   Delivered-To: rcpt
 * and are written with LF line ends (the queue keeps CRLF; a bare CR stays
 * as it is; a last line without line end gets one), as Postfix's local(8)
 * and virtual(8) write them.  A sender or recipient with a control
 * character (CR, LF ...) would forge header lines and is refused
 * (VPS_LOCAL_ERROR_UNSAFE) before anything is written.
 *
 * maildir: PATH is a maildir; a last component starting with "." is a
 * Maildir++ sub-folder (`deliver maildir "/var/mail/%d/%l/.Junk"`): the
 * parent maildir is created as well, and the folder gets its
 * `maildirfolder` file.  Missing directories are created (0700).  The file
 * is written to tmp/ under a unique name (time.M<usec>P<pid>Q<n>.<host>,
 * "/" and ":" in the host name written as \057 and \072), fsync'ed, linked
 * into new/ as NAME,S=<size> (rename where the file system has no hard
 * links) and new/ is fsync'ed; then tmp/'s name is removed.  A failure
 * leaves no file in tmp/ or new/.
 *
 * mbox: PATH is a file (created 0600; a symlink, FIFO or hard-linked file
 * is refused), locked with a dot-lock (PATH.lock, stale after
 * VPS_LOCAL_DOTLOCK_STALE seconds) and then fcntl() (open file description
 * locks, which conflict with the classic fcntl locks of MUAs and also
 * between threads of one process), waiting at most VPS_LOCAL_LOCK_TIMEOUT
 * seconds for both together.  Each message starts with
 * "From sender date" (MAILER-DAEMON for <>; blanks in the sender become
 * "_"; date as asctime(3), local time), lines matching /^>*From / get one
 * more ">" (mboxrd), and ends with an empty line; a mailbox whose last
 * message lacks that empty line gets it first.  fsync before the lock is
 * released.  A failed write truncates the file back to its old size, so a
 * partial message never stays in the mailbox.
 *
 * Errors: VPS_LOCAL_ERROR_UNSAFE / _TEMPLATE are permanent (the message
 * bounces); G_IO_ERROR ones and _LOCKED are temporary (retried).
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define VPS_LOCAL_ERROR (vps_local_error_quark ())
GQuark vps_local_error_quark (void);

typedef enum
{
  VPS_LOCAL_ERROR_TEMPLATE, /* unknown %x, relative path */
  VPS_LOCAL_ERROR_UNSAFE,   /* a substituted value could escape the root */
  VPS_LOCAL_ERROR_LOCKED,   /* the mbox lock was not obtained in time */
} VpsLocalError;

#define VPS_LOCAL_LOCK_TIMEOUT 30
#define VPS_LOCAL_DOTLOCK_STALE 300
/* Longest path a template may expand to. */
#define VPS_LOCAL_MAX_PATH 4096
/* Longest substituted value (one path component: NAME_MAX). */
#define VPS_LOCAL_MAX_NAME 255

/* Expand `template` for `rcpt` ("local@domain", without <>). */
char *vps_local_expand (const char *template, const char *rcpt, GError **error);

/* TRUE when the error is permanent (bounce rather than retry). */
gboolean vps_local_error_is_permanent (const GError *error);

/* Deliver `message` (CRLF line ends, as queued).  `sender` is "" (or NULL)
 * for <>.  *out_file (may be NULL) is the file written (maildir:
 * PATH/new/NAME). */
gboolean vps_local_maildir_deliver (const char *path, const char *sender, const char *rcpt,
                                    GBytes *message, char **out_file, GError **error);
gboolean vps_local_mbox_deliver (const char *path, const char *sender, const char *rcpt,
                                 GBytes *message, GError **error);

/* Tests: how long an mbox delivery waits for its locks (default
 * VPS_LOCAL_LOCK_TIMEOUT; 0 = try once).  Process-wide. */
void vps_local_set_lock_timeout (guint seconds);

/* Internal: shared by local.c and local-mbox.c only. */
gboolean vps_local_check_envelope (const char *sender, const char *rcpt, GError **error);
gboolean vps_local_make_dir (const char *dir, gboolean *created, GError **error);
gboolean vps_local_io_error (GError **error, int err, const char *what, const char *path);
/* Write `before` (may be NULL) verbatim, the Return-Path/Delivered-To lines
 * and `message` with CRLF → LF to `fd`, buffered; with `mboxrd`, quote
 * /^>*From / lines and end with an empty line.  *out_size: bytes written. */
gboolean vps_local_write_message (int fd, const char *path, const char *before, const char *sender,
                                  const char *rcpt, GBytes *message, gboolean mboxrd,
                                  guint64 *out_size, GError **error);

G_END_DECLS
