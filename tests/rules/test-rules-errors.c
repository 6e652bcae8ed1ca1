/* SPDX-License-Identifier: MIT
 *
 * test-rules-errors.c — load-error golden files: every errors/NAME.vsl must
 * fail to load with exactly the message in errors/NAME.err, and with the
 * error code its name prefix announces (syntax-, unknown-, type-, stage-,
 * invalid-, io-, utf8-).
 */
#include "rules-test-util.h"

#include <string.h>
#include <unistd.h>

static const struct
{
  const char *prefix;
  RulesError code;
} prefixes[] = {
  { "syntax-", RULES_ERROR_SYNTAX },   { "utf8-", RULES_ERROR_SYNTAX },
  { "unknown-", RULES_ERROR_UNKNOWN }, { "type-", RULES_ERROR_TYPE },
  { "stage-", RULES_ERROR_STAGE },     { "invalid-", RULES_ERROR_INVALID },
  { "io-", RULES_ERROR_IO },
};

static void
test_golden (gconstpointer data)
{
  const char *name = data;
  g_autofree char *vsl = g_strconcat (name, ".vsl", NULL);
  g_autofree char *errf = g_strconcat (name, ".err", NULL);
  g_autofree char *want = NULL;
  g_autoptr (GError) error = NULL, ioerr = NULL;
  g_autoptr (RulesProgram) p = NULL;
  int code = -1;

  g_assert_true (g_file_get_contents (errf, &want, NULL, &ioerr));
  g_strchomp (want);
  p = rules_program_load_file (vsl, &test_options, &error);
  g_assert_null (p);
  g_assert_nonnull (error);
  g_assert_cmpstr (error->message, ==, want);
  for (guint i = 0; i < G_N_ELEMENTS (prefixes); i++)
    if (g_str_has_prefix (name, prefixes[i].prefix))
      code = (int)prefixes[i].code;
  g_assert_cmpint (code, >=, 0);
  g_assert_error (error, RULES_ERROR, code);
}

static int
cmp_names (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(char *const *)a, *(char *const *)b);
}

int
main (int argc, char **argv)
{
  g_autofree char *dir = NULL;
  g_autoptr (GDir) d = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *entry;

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  dir = g_test_build_filename (G_TEST_DIST, "rules", "errors", NULL);
  /* Messages name files relative to the directory the test runs in. */
  if (chdir (dir) != 0)
    g_error ("cannot enter %s", dir);
  d = g_dir_open (".", 0, NULL);
  g_assert_nonnull (d);
  while ((entry = g_dir_read_name (d)) != NULL)
    if (g_str_has_suffix (entry, ".vsl"))
      g_ptr_array_add (names, g_strndup (entry, strlen (entry) - 4));
  g_ptr_array_sort (names, cmp_names);
  /* The brief asks for at least 25 cases covering every error class. */
  g_assert_cmpuint (names->len, >=, 25);
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *path = g_strdup_printf ("/rules/errors/%s", (char *)names->pdata[i]);
      g_test_add_data_func (path, names->pdata[i], test_golden);
    }
  return g_test_run ();
}
