/* SPDX-License-Identifier: MIT
 *
 * privs.c — switching to the configured user and group (see privs.h).
 *
 * Order matters and follows OpenSMTPD and Postfix: groups first (once the
 * uid is no longer 0 setgroups() and setgid() are refused), then the uid.
 * The intermediate state keeps uid 0 as real and saved uid only, so the
 * effective uid (which the kernel checks for files) is the user's from the
 * moment the configuration is known, while bind() of a port below 1024 can
 * still raise it for the call.  glibc applies set*id to every thread of
 * the process, so worker threads created earlier change with us.
 */
#include "vps/privs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PRIVS_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PRIVS_UNDER_ASAN 1
#endif
#endif

G_DEFINE_QUARK (vps - privs - error - quark, vps_privs_error)

/* getpwnam_r/getgrnam_r buffer; ERANGE doubles it up to this. */
#define PRIVS_MAX_PWBUF (1024 * 1024)

struct _VpsPrivs
{
  char *user;  /* NULL: none configured */
  char *group; /* the group's name, for messages */
  uid_t uid;
  gid_t gid;
  gboolean do_switch;
  gboolean entered;
  gboolean raised;
  gboolean dropped;
};

gboolean
vps_privs_allow_root_from_env (void)
{
  const char *v = g_getenv (VPS_PRIVS_ALLOW_ROOT_ENV);

  return v != NULL
         && (strcmp (v, "1") == 0 || g_ascii_strcasecmp (v, "yes") == 0
             || g_ascii_strcasecmp (v, "true") == 0);
}

static gboolean
lookup_user (const char *name, uid_t *uid, gid_t *gid, GError **error)
{
  gsize size = 16384;

  for (;;)
    {
      g_autofree char *buf = g_malloc (size);
      struct passwd pw, *res = NULL;
      int rc = getpwnam_r (name, &pw, buf, size, &res);

      if (rc == ERANGE && size < PRIVS_MAX_PWBUF)
        {
          size *= 2;
          continue;
        }
      if (res == NULL)
        {
          g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_USER, "[vpsd] user: %s: %s", name,
                       rc ? g_strerror (rc) : "no such user");
          return FALSE;
        }
      *uid = pw.pw_uid;
      *gid = pw.pw_gid;
      return TRUE;
    }
}

static gboolean
lookup_group (const char *name, gid_t *gid, GError **error)
{
  gsize size = 16384;

  for (;;)
    {
      g_autofree char *buf = g_malloc (size);
      struct group gr, *res = NULL;
      int rc = getgrnam_r (name, &gr, buf, size, &res);

      if (rc == ERANGE && size < PRIVS_MAX_PWBUF)
        {
          size *= 2;
          continue;
        }
      if (res == NULL)
        {
          g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_USER, "[vpsd] group: %s: %s", name,
                       rc ? g_strerror (rc) : "no such group");
          return FALSE;
        }
      *gid = gr.gr_gid;
      return TRUE;
    }
}

static gboolean
name_ok (const char *key, const char *name, GError **error)
{
  if (strlen (name) > VPS_PRIVS_MAX_NAME)
    {
      g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_USER, "[vpsd] %s: longer than %d bytes",
                   key, VPS_PRIVS_MAX_NAME);
      return FALSE;
    }
  return TRUE;
}

VpsPrivs *
vps_privs_new (uid_t euid, const char *user, const char *group, gboolean allow_root, GError **error)
{
  g_autoptr (VpsPrivs) p = g_new0 (VpsPrivs, 1);
  gboolean has_user = user != NULL && *user != '\0';
  gboolean has_group = group != NULL && *group != '\0';

  allow_root = allow_root || vps_privs_allow_root_from_env ();
  p->uid = euid;
  p->gid = getegid ();
  if (has_group && !has_user)
    {
      g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_USER,
                   "[vpsd] group is set but user is not: set both (the group alone would leave "
                   "the daemon running as root)");
      return NULL;
    }
  if (has_user)
    {
      if (!name_ok ("user", user, error) || (has_group && !name_ok ("group", group, error))
          || !lookup_user (user, &p->uid, &p->gid, error)
          || (has_group && !lookup_group (group, &p->gid, error)))
        return NULL;
      p->user = g_strdup (user);
      p->group = has_group ? g_strdup (group) : NULL;
    }
  if (euid != 0)
    return g_steal_pointer (&p); /* systemd's User= (or a plain user) did it */

  if (!has_user || p->uid == 0)
    {
      if (!allow_root)
        {
          g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_ROOT,
                       "refusing to run as root: set [vpsd] user (and group) to switch to after "
                       "binding the listeners, or [vpsd] allow_root = true (environment: %s=1)",
                       VPS_PRIVS_ALLOW_ROOT_ENV);
          return NULL;
        }
      p->uid = 0;
      return g_steal_pointer (&p);
    }
  p->do_switch = TRUE;
  return g_steal_pointer (&p);
}

void
vps_privs_free (VpsPrivs *p)
{
  if (p == NULL)
    return;
#ifdef PRIVS_UNDER_ASAN
  /* XXX: a start refused between enter and drop exits with root as real
   * uid and the user as effective uid, a state LeakSanitizer cannot ptrace
   * from: sanitizer builds go back to root on the way out. */
  if (p->entered && !p->dropped)
    vps_privs_raise (p, NULL);
#endif
  g_free (p->user);
  g_free (p->group);
  g_free (p);
}

gboolean
vps_privs_will_switch (const VpsPrivs *p)
{
  return p->do_switch;
}

uid_t
vps_privs_get_uid (const VpsPrivs *p)
{
  return p->uid;
}

gid_t
vps_privs_get_gid (const VpsPrivs *p)
{
  return p->gid;
}

const char *
vps_privs_get_user (const VpsPrivs *p)
{
  return p->user;
}

/* XXX: the kernel makes a process non-dumpable when its uids change, which
 * is right for a daemon (the user may not ptrace it) but stops
 * LeakSanitizer, which ptraces its own process at exit: only in sanitizer
 * builds (make test-asan), keep it dumpable. */
static void
keep_dumpable_for_sanitizers (void)
{
#ifdef PRIVS_UNDER_ASAN
  prctl (PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
}

static gboolean
failed (const char *what, GError **error)
{
  int saved = errno;

  g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_FAILED, "%s: %s", what, g_strerror (saved));
  return FALSE;
}

gboolean
vps_privs_enter (VpsPrivs *p, GError **error)
{
  if (!p->do_switch || p->entered)
    return TRUE;
  /* The user's supplementary groups (ssl-cert for a TLS key, a group that
   * may write the milter socket's directory), with the target gid in. */
  if (initgroups (p->user, p->gid) != 0)
    return failed ("initgroups", error);
  if (setresgid (p->gid, p->gid, p->gid) != 0)
    return failed ("setresgid", error);
  if (setresuid ((uid_t)-1, p->uid, 0) != 0)
    return failed ("setresuid", error);
  p->entered = TRUE;
  keep_dumpable_for_sanitizers ();
  return TRUE;
}

gboolean
vps_privs_raise (VpsPrivs *p, GError **error)
{
  if (!p->entered || p->dropped || p->raised)
    return TRUE;
  if (seteuid (0) != 0)
    return failed ("seteuid(0) to bind", error);
  p->raised = TRUE;
  return TRUE;
}

void
vps_privs_lower (VpsPrivs *p)
{
  if (!p->raised)
    return;
  /* cannot fail from euid 0; if it did, drop() fails later and we exit */
  if (seteuid (p->uid) == 0)
    p->raised = FALSE;
}

gboolean
vps_privs_check_no_root (GError **error)
{
  uid_t r, e, s;

  if (getresuid (&r, &e, &s) != 0)
    return failed ("getresuid", error);
  if (r == 0 || e == 0 || s == 0 || setuid (0) == 0 || seteuid (0) == 0 || setgid (0) == 0
      || setegid (0) == 0 || setgroups (0, NULL) == 0)
    {
      g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_REGAINED,
                   "root privileges could be regained after the switch (uid %u/%u/%u)", (guint)r,
                   (guint)e, (guint)s);
      return FALSE;
    }
  return TRUE;
}

gboolean
vps_privs_drop (VpsPrivs *p, GError **error)
{
  if (!p->entered || p->dropped)
    return TRUE;
  vps_privs_lower (p);
  if (setresuid (p->uid, p->uid, p->uid) != 0)
    return failed ("setresuid", error);
  p->dropped = TRUE;
  keep_dumpable_for_sanitizers ();
  return vps_privs_check_no_root (error);
}

gboolean
vps_privs_dropped (const VpsPrivs *p)
{
  return p->dropped;
}

static gboolean
writable (const VpsPrivs *p, const char *dir, GError **error)
{
  if (faccessat (AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) == 0)
    return TRUE;
  if (errno == ENOENT)
    return TRUE;
  g_set_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_DIRECTORY,
               "%s: not writable by user %s (uid %u, gid %u): %s; give it to the user "
               "(chown -R %s:%s %s) or set [vpsd] user to its owner",
               dir, p->user, (guint)p->uid, (guint)p->gid, g_strerror (errno), p->user,
               p->group ? p->group : "", dir);
  return FALSE;
}

gboolean
vps_privs_check_writable (const VpsPrivs *p, const char *dir, GError **error)
{
  g_autoptr (GDir) d = NULL;
  const char *name;

  g_return_val_if_fail (dir != NULL, FALSE);
  if (!p->do_switch)
    return TRUE;
  if (!writable (p, dir, error))
    return FALSE;
  /* One level down: the spool's areas (incoming, deferred ...) left by a
   * run as root would fail the first delivery, not the start. */
  d = g_dir_open (dir, 0, NULL);
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *sub = g_build_filename (dir, name, NULL);
      struct stat st;

      if (lstat (sub, &st) == 0 && S_ISDIR (st.st_mode) && !writable (p, sub, error))
        return FALSE;
    }
  return TRUE;
}
