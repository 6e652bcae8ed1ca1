/* SPDX-License-Identifier: MIT
 *
 * auth.h — the password file behind vsmtpd's AUTH PLAIN / LOGIN.
 *
 * The file ([vsmtpd] passwd_file) has one `user:crypt-hash` line per user
 * (the hashes crypt(3) makes: yescrypt "$y$", SHA-512 "$6$", bcrypt "$2b$",
 * ... — what `mkpasswd` prints); empty lines and lines starting with '#'
 * (after optional blanks) are ignored; trailing blanks and a CR before the
 * LF are dropped.  An error naming FILE:LINE: a line without ':', a blank
 * before the user name, an empty user name, a control character or more
 * than VPS_AUTH_MAX_USER octets in it, a user already defined, a line over
 * VPS_AUTH_MAX_LINE, a NUL byte, a hash crypt(3) cannot use.  "Cannot use"
 * is tested with crypt_r() at load: it refuses the hash, or its output is
 * not as long as the hash (a bare salt "$6$abc", a plaintext password taken
 * for a DES salt) — so loading costs one hash per user (yescrypt: ~15 ms).
 * User names are compared exactly (case-sensitive).
 *
 * The file is read at load and again when its mtime, size or inode changes
 * (one stat(2) at most per VPS_AUTH_RECHECK_INTERVAL, by the thread that
 * checks a password), so an admin edits it without a reload — best by
 * writing a new file and renaming it over the old one, as editors do: an
 * in-place rewrite may be read half-written (and is read again at its next
 * change).  A changed file that fails to load (unreadable, removed, a bad
 * line) keeps the last good contents and logs one warning per failing
 * version.  While one thread rereads the file, the others check against the
 * previous contents.
 *
 * Checking a password runs crypt_r() — slow on purpose (yescrypt takes
 * milliseconds) — on a small thread pool, never on a worker loop.  An
 * unknown user costs the same as a wrong password (a dummy hash is
 * checked), and the comparison of hashes is constant-time.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define VPS_AUTH_ERROR (vps_auth_error_quark ())
GQuark vps_auth_error_quark (void);

typedef enum
{
  VPS_AUTH_ERROR_FILE, /* FILE:LINE: what is wrong */
} VpsAuthError;

#define VPS_AUTH_MAX_USER 255
#define VPS_AUTH_MAX_PASSWORD 255
#define VPS_AUTH_MAX_LINE 1024
#define VPS_AUTH_MAX_USERS 100000
#define VPS_AUTH_MAX_FILE (64 * 1024 * 1024)
/* Microseconds between two looks at the file's mtime/size. */
#define VPS_AUTH_RECHECK_INTERVAL G_USEC_PER_SEC

typedef struct _VpsPasswdFile VpsPasswdFile;

VpsPasswdFile *vps_passwd_file_load (const char *path, GError **error);
VpsPasswdFile *vps_passwd_file_ref (VpsPasswdFile *pw);
void vps_passwd_file_unref (VpsPasswdFile *pw);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsPasswdFile, vps_passwd_file_unref)

/* How often the file is looked at (default VPS_AUTH_RECHECK_INTERVAL); 0 =
 * at every check (tests). */
void vps_passwd_file_set_recheck_interval (VpsPasswdFile *pw, gint64 interval_us);
/* Users in the current contents (after a reload check). */
guint vps_passwd_file_get_n_users (VpsPasswdFile *pw);

/* Blocking check (tests; the async form uses it on the pool).  FALSE for a
 * wrong password, an unknown user, a password longer than
 * VPS_AUTH_MAX_PASSWORD.  Safe from any thread. */
gboolean vps_passwd_file_check (VpsPasswdFile *pw, const char *user, const char *password);
/* On GTask's shared, bounded thread pool (g_task_run_in_thread); the
 * callback runs on the caller's thread-default main context.  The password
 * is copied and wiped after the check.  A cancelled check finishes FALSE. */
void vps_passwd_file_check_async (VpsPasswdFile *pw, const char *user, const char *password,
                                  GCancellable *cancellable, GAsyncReadyCallback callback,
                                  gpointer user_data);
gboolean vps_passwd_file_check_finish (VpsPasswdFile *pw, GAsyncResult *result);

G_END_DECLS
