/* SPDX-License-Identifier: MIT
 *
 * test-privs.c — vps/privs.c: the decision (who runs as whom, when root is
 * refused, every error branch) as a table, and — when the test runs as
 * root — the real switch in a child process: effective uid first with a
 * way back for bind(), then the drop, after which every way back fails;
 * the writable-directory check with its message.
 *
 * The switch cases need root; run as another user they are reported as
 * skipped (never as passed).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "vps/privs.h"

/* The unprivileged account every Debian system has. */
#define TEST_USER "nobody"
#define TEST_GROUP "nogroup"

static uid_t
user_uid (const char *name)
{
  struct passwd *pw = getpwnam (name);

  g_assert_nonnull (pw);
  return pw->pw_uid;
}

static gid_t
group_gid (const char *name)
{
  struct group *gr = getgrnam (name);

  g_assert_nonnull (gr);
  return gr->gr_gid;
}

static void
test_decide (void)
{
  g_autofree char *long_name = g_strnfill (VPS_PRIVS_MAX_NAME + 1, 'u');
  const struct
  {
    uid_t euid;
    const char *user, *group;
    gboolean allow_root;
    gint error; /* -1: none */
    gboolean will_switch;
  } cases[] = {
    /* root */
    { 0, NULL, NULL, FALSE, VPS_PRIVS_ERROR_ROOT, FALSE },
    { 0, "", "", FALSE, VPS_PRIVS_ERROR_ROOT, FALSE },
    { 0, NULL, NULL, TRUE, -1, FALSE },
    { 0, "root", NULL, FALSE, VPS_PRIVS_ERROR_ROOT, FALSE },
    { 0, "root", NULL, TRUE, -1, FALSE },
    { 0, TEST_USER, NULL, FALSE, -1, TRUE },
    { 0, TEST_USER, TEST_GROUP, FALSE, -1, TRUE },
    { 0, TEST_USER, TEST_GROUP, TRUE, -1, TRUE }, /* allow_root does not stop the switch */
    { 0, "vps-no-such-user", NULL, FALSE, VPS_PRIVS_ERROR_USER, FALSE },
    { 0, TEST_USER, "vps-no-such-group", FALSE, VPS_PRIVS_ERROR_USER, FALSE },
    { 0, NULL, TEST_GROUP, FALSE, VPS_PRIVS_ERROR_USER, FALSE },
    { 0, long_name, NULL, FALSE, VPS_PRIVS_ERROR_USER, FALSE },
    { 0, TEST_USER, long_name, FALSE, VPS_PRIVS_ERROR_USER, FALSE },
    /* not root (systemd's User=): nothing to switch, names still checked */
    { 1000, NULL, NULL, FALSE, -1, FALSE },
    { 1000, TEST_USER, TEST_GROUP, FALSE, -1, FALSE },
    { 1000, "vps-no-such-user", NULL, FALSE, VPS_PRIVS_ERROR_USER, FALSE },
  };

  g_unsetenv (VPS_PRIVS_ALLOW_ROOT_ENV);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsPrivs) p = vps_privs_new (cases[i].euid, cases[i].user, cases[i].group,
                                              cases[i].allow_root, &error);

      g_test_message ("case %u: euid %u user %s group %s", i, (guint)cases[i].euid,
                      cases[i].user ? cases[i].user : "(unset)",
                      cases[i].group ? cases[i].group : "(unset)");
      if (cases[i].error >= 0)
        {
          g_assert_error (error, VPS_PRIVS_ERROR, cases[i].error);
          g_assert_null (p);
          continue;
        }
      g_assert_no_error (error);
      g_assert_nonnull (p);
      g_assert_cmpint (vps_privs_will_switch (p), ==, cases[i].will_switch);
      if (cases[i].will_switch)
        {
          g_assert_cmpuint (vps_privs_get_uid (p), ==, user_uid (TEST_USER));
          g_assert_cmpuint (vps_privs_get_gid (p), ==,
                            cases[i].group ? group_gid (cases[i].group)
                                           : getpwnam (TEST_USER)->pw_gid);
          g_assert_cmpstr (vps_privs_get_user (p), ==, TEST_USER);
        }
    }
}

static void
test_root_message (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsPrivs) p = NULL;

  g_unsetenv (VPS_PRIVS_ALLOW_ROOT_ENV);
  p = vps_privs_new (0, NULL, NULL, FALSE, &error);
  g_assert_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_ROOT);
  /* the message says both ways out */
  g_assert_nonnull (strstr (error->message, "[vpsd] user"));
  g_assert_nonnull (strstr (error->message, "allow_root = true"));
  g_assert_nonnull (strstr (error->message, VPS_PRIVS_ALLOW_ROOT_ENV "=1"));
}

static void
test_env (void)
{
  static const struct
  {
    const char *value;
    gboolean allows;
  } cases[] = {
    { "1", TRUE },  { "yes", TRUE }, { "TRUE", TRUE },
    { "0", FALSE }, { "", FALSE },   { "no", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsPrivs) p = NULL;

      g_setenv (VPS_PRIVS_ALLOW_ROOT_ENV, cases[i].value, TRUE);
      g_assert_cmpint (vps_privs_allow_root_from_env (), ==, cases[i].allows);
      p = vps_privs_new (0, NULL, NULL, FALSE, &error);
      if (cases[i].allows)
        g_assert_no_error (error);
      else
        g_assert_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_ROOT);
    }
  g_unsetenv (VPS_PRIVS_ALLOW_ROOT_ENV);
}

/* Not switching (not root, or root allowed): every step is a no-op. */
static void
test_noop (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsPrivs) p = vps_privs_new (1000, TEST_USER, NULL, FALSE, &error);
  uid_t r, e, s;
  uid_t r2, e2, s2;

  g_assert_no_error (error);
  g_assert_true (getresuid (&r, &e, &s) == 0);
  g_assert_true (vps_privs_enter (p, &error));
  g_assert_true (vps_privs_raise (p, &error));
  vps_privs_lower (p);
  g_assert_true (vps_privs_drop (p, &error));
  g_assert_no_error (error);
  g_assert_false (vps_privs_dropped (p));
  g_assert_true (vps_privs_check_writable (p, "/", &error));
  g_assert_true (getresuid (&r2, &e2, &s2) == 0);
  g_assert_true (r == r2 && e == e2 && s == s2);
}

/* ---- the real switch (root only, in a child) ----------------------------------------- */

static gboolean
need_root (void)
{
  if (geteuid () == 0)
    return TRUE;
  g_test_skip ("needs root (the switch itself)");
  return FALSE;
}

static void
switch_child (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsPrivs) p = vps_privs_new (0, TEST_USER, TEST_GROUP, FALSE, &error);
  uid_t nobody = user_uid (TEST_USER);
  gid_t nogroup = group_gid (TEST_GROUP);
  uid_t r, e, s;
  gid_t gr, ge, gs;
  gid_t groups[64];
  int n;
  const char *tmp = g_getenv ("VPS_TEST_PRIVS_DIR");
  g_autofree char *mine = g_build_filename (tmp, "mine", NULL);
  g_autofree char *roots = g_build_filename (tmp, "roots", NULL);
  g_autofree char *mine_sub = g_build_filename (mine, "incoming", NULL);
  g_autofree char *root_sub = g_build_filename (tmp, "mixed", NULL);
  g_autofree char *root_sub_sub = g_build_filename (root_sub, "deferred", NULL);

  g_assert_nonnull (tmp);
  /* as root: a directory for the user, one for root only, one of the
   * user's with a root-only area inside */
  g_assert_cmpint (chmod (tmp, 0755), ==, 0);
  g_assert_cmpint (g_mkdir (mine, 0700), ==, 0);
  g_assert_cmpint (g_mkdir (mine_sub, 0700), ==, 0);
  g_assert_cmpint (chown (mine, nobody, nogroup), ==, 0);
  g_assert_cmpint (chown (mine_sub, nobody, nogroup), ==, 0);
  g_assert_cmpint (g_mkdir (roots, 0700), ==, 0);
  g_assert_cmpint (g_mkdir (root_sub, 0755), ==, 0);
  g_assert_cmpint (chown (root_sub, nobody, nogroup), ==, 0);
  g_assert_cmpint (g_mkdir (root_sub_sub, 0700), ==, 0);

  g_assert_nonnull (p);
  g_assert_true (vps_privs_enter (p, &error));
  g_assert_no_error (error);
  /* step 1: effective ids are the user's, root kept as real/saved uid */
  g_assert_true (getresuid (&r, &e, &s) == 0 && getresgid (&gr, &ge, &gs) == 0);
  g_assert_cmpuint (e, ==, nobody);
  g_assert_cmpuint (r, ==, 0);
  g_assert_cmpuint (s, ==, 0);
  g_assert_true (gr == nogroup && ge == nogroup && gs == nogroup);
  n = getgroups (G_N_ELEMENTS (groups), groups);
  g_assert_cmpint (n, >=, 1);
  for (int i = 0; i < n; i++)
    g_assert_cmpuint (groups[i], !=, 0); /* root's groups are gone */

  /* files are made as the user */
  g_assert_true (vps_privs_check_writable (p, mine, &error));
  g_assert_no_error (error);
  {
    /* missing: made later, as the user — unless the user cannot get there */
    g_autofree char *missing = g_build_filename (mine, "later", NULL);
    g_autofree char *unreachable = g_build_filename (roots, "later", NULL);

    g_assert_true (vps_privs_check_writable (p, missing, &error));
    g_assert_no_error (error);
    g_assert_false (vps_privs_check_writable (p, unreachable, &error));
    g_assert_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_DIRECTORY);
    g_clear_error (&error);
  }
  g_assert_false (vps_privs_check_writable (p, roots, &error));
  g_assert_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_DIRECTORY);
  g_assert_nonnull (strstr (error->message, "chown -R " TEST_USER ":" TEST_GROUP));
  g_assert_nonnull (strstr (error->message, roots));
  g_clear_error (&error);
  g_assert_false (vps_privs_check_writable (p, root_sub, &error)); /* an area left by root */
  g_assert_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_DIRECTORY);
  g_assert_nonnull (strstr (error->message, root_sub_sub));
  g_clear_error (&error);

  /* step 2: root for a bind, and back */
  g_assert_true (vps_privs_raise (p, &error));
  g_assert_cmpuint (geteuid (), ==, 0);
  vps_privs_lower (p);
  g_assert_cmpuint (geteuid (), ==, nobody);

  /* step 3: for good, verified */
  g_assert_true (vps_privs_drop (p, &error));
  g_assert_no_error (error);
  g_assert_true (vps_privs_dropped (p));
  g_assert_true (getresuid (&r, &e, &s) == 0);
  g_assert_true (r == nobody && e == nobody && s == nobody);
  g_assert_cmpint (setuid (0), ==, -1);
  g_assert_cmpint (seteuid (0), ==, -1);
  g_assert_cmpint (setgid (0), ==, -1);
  g_assert_cmpint (setgroups (0, NULL), ==, -1);
  g_assert_true (vps_privs_check_no_root (&error));
  g_assert_no_error (error);
  /* raise after the drop is a no-op, not a way back */
  g_assert_true (vps_privs_raise (p, &error));
  g_assert_cmpuint (geteuid (), ==, nobody);
  g_assert_cmpint (access (roots, W_OK), ==, -1);
}

static void
remove_tree (const char *path)
{
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *sub = g_build_filename (path, name, NULL);

      if (g_file_test (sub, G_FILE_TEST_IS_DIR) && !g_file_test (sub, G_FILE_TEST_IS_SYMLINK))
        remove_tree (sub);
      else
        g_unlink (sub);
    }
  g_rmdir (path);
}

static void
test_switch (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = NULL;

  if (!need_root ())
    return;
  if (g_test_subprocess ())
    {
      switch_child ();
      return;
    }
  /* made and removed here: the child ends as a user that cannot */
  tmp = g_dir_make_tmp ("privs-XXXXXX", &error);
  g_assert_no_error (error);
  g_setenv ("VPS_TEST_PRIVS_DIR", tmp, TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  remove_tree (tmp);
  g_test_trap_assert_passed ();
}

/* Still root (nothing switched): the check says root can be regained. */
static void
test_check_no_root_as_root (void)
{
  if (!need_root ())
    return;
  if (g_test_subprocess ())
    {
      g_autoptr (GError) error = NULL;

      g_assert_false (vps_privs_check_no_root (&error));
      g_assert_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_REGAINED);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* Only the effective uid switched (enter without drop): regainable. */
static void
test_check_no_root_entered (void)
{
  if (!need_root ())
    return;
  if (g_test_subprocess ())
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsPrivs) p = vps_privs_new (0, TEST_USER, NULL, FALSE, &error);

      g_assert_true (vps_privs_enter (p, &error));
      g_assert_false (vps_privs_check_no_root (&error));
      g_assert_error (error, VPS_PRIVS_ERROR, VPS_PRIVS_ERROR_REGAINED);
      g_clear_error (&error);
      /* and from there the drop still completes */
      g_assert_true (vps_privs_drop (p, &error));
      g_assert_no_error (error);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/privs/decide", test_decide);
  g_test_add_func ("/privs/decide/root-message", test_root_message);
  g_test_add_func ("/privs/decide/allow-root-env", test_env);
  g_test_add_func ("/privs/noop", test_noop);
  g_test_add_func ("/privs/switch/enter-raise-drop", test_switch);
  g_test_add_func ("/privs/check-no-root/still-root", test_check_no_root_as_root);
  g_test_add_func ("/privs/check-no-root/effective-only", test_check_no_root_entered);
  return g_test_run ();
}
