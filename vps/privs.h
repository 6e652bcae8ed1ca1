/* SPDX-License-Identifier: MIT
 *
 * privs.h — running as an unprivileged user (docs/operations.md,
 * "Privileges").
 *
 * A daemon started as root with [vpsd] user set (vpsd and vsmtpd read the
 * same keys) goes through three steps:
 *
 *   1. vps_privs_enter(), right after the configuration is read: the
 *      supplementary groups become the user's (initgroups), the real,
 *      effective and saved gid the target group, and the *effective* uid the
 *      user.  Everything the daemon reads or creates from here on — the rule
 *      file, lists, the spool, the quarantine store — is read and created as
 *      the user, exactly as a reload will later, so a file the user cannot
 *      read fails the start and not the first reload.  The real and saved
 *      uid stay 0.
 *   2. vps_privs_raise() / vps_privs_lower() around binding a listener
 *      (ports below 1024 need root); nothing else runs as root.
 *   3. vps_privs_drop(), before any worker reads network input: real,
 *      effective and saved uid all become the user; then every way back is
 *      tried (setuid(0), seteuid(0), setgid(0), setgroups) and must fail,
 *      or the daemon refuses to run.
 *
 * Root without a user is refused unless [vpsd] allow_root = true or the
 * environment has VPS_ALLOW_ROOT=1 (for containers and test harnesses that
 * cannot edit the configuration).  A daemon that is not root (systemd's
 * User=) skips every step; a configured user that does not exist is an
 * error either way, so `--check` finds the typo.
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

#define VPS_PRIVS_ERROR (vps_privs_error_quark ())
GQuark vps_privs_error_quark (void);

typedef enum
{
  VPS_PRIVS_ERROR_USER,      /* unknown user or group */
  VPS_PRIVS_ERROR_ROOT,      /* would run as root without allow_root */
  VPS_PRIVS_ERROR_FAILED,    /* a set*id call failed */
  VPS_PRIVS_ERROR_REGAINED,  /* root could be regained after the drop */
  VPS_PRIVS_ERROR_DIRECTORY, /* a directory the daemon writes is not the user's */
} VpsPrivsError;

/* Longest user or group name accepted (useradd allows 32). */
#define VPS_PRIVS_MAX_NAME 256
/* Environment variable that allows running as root, as allow_root does. */
#define VPS_PRIVS_ALLOW_ROOT_ENV "VPS_ALLOW_ROOT"

typedef struct _VpsPrivs VpsPrivs;

/* Decide what to do for a process with effective uid `euid` and the
 * configured `user`/`group` (NULL or "" = unset).  Errors: unknown names
 * (USER), group without user (USER), root without a user or with user root
 * and neither allow_root nor VPS_ALLOW_ROOT=1 (ROOT). */
VpsPrivs *vps_privs_new (uid_t euid, const char *user, const char *group, gboolean allow_root,
                         GError **error);
void vps_privs_free (VpsPrivs *privs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsPrivs, vps_privs_free)

/* TRUE when the steps change identities (root with a non-root user). */
gboolean vps_privs_will_switch (const VpsPrivs *privs);
/* The target: the user's uid and the group's gid (getpwnam / getgrnam);
 * the current ones when no user is configured. */
uid_t vps_privs_get_uid (const VpsPrivs *privs);
gid_t vps_privs_get_gid (const VpsPrivs *privs);
const char *vps_privs_get_user (const VpsPrivs *privs); /* or NULL */

/* Step 1 (no-op unless will_switch). */
gboolean vps_privs_enter (VpsPrivs *privs, GError **error);
/* Step 2: effective uid 0 until lower (no-op unless entered and not yet
 * dropped). */
gboolean vps_privs_raise (VpsPrivs *privs, GError **error);
void vps_privs_lower (VpsPrivs *privs);
/* Step 3: for good, then verified (no-op unless entered). */
gboolean vps_privs_drop (VpsPrivs *privs, GError **error);
gboolean vps_privs_dropped (const VpsPrivs *privs);

/* The checks of step 3 on their own: FALSE + REGAINED if this process can
 * become root again (uid 0 for any of real/effective/saved, or setuid(0),
 * seteuid(0), setgid(0), setegid(0), setgroups succeed).  What a
 * succeeding call changed is not undone: FALSE here means "exit now". */
gboolean vps_privs_check_no_root (GError **error);

/* A directory the daemon writes (spool, quarantine): when switching, it
 * and its subdirectories must be writable by the target user — checked
 * with the effective ids, so call it after enter.  A missing directory is
 * fine (it is created as the user).  Error DIRECTORY names the directory,
 * the user and the fix (chown -R USER:GROUP DIR). */
gboolean vps_privs_check_writable (const VpsPrivs *privs, const char *dir, GError **error);

/* Is VPS_ALLOW_ROOT=1 (or yes/true) set? */
gboolean vps_privs_allow_root_from_env (void);

G_END_DECLS
