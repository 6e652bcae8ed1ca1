/* SPDX-License-Identifier: MIT
 *
 * test-rules-docs.c — every ```vsl block of docs/rules.md loads (with the
 * connectors clamav, rspamd, spf, greylist declared) and every ```vsl-error
 * block fails; a failure names the block's line in docs/rules.md.
 */
#include "rules-test-util.h"

#include <string.h>

static void
test_blocks (void)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "..", "docs", "rules.md", NULL);
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) lines = NULL;
  guint n_ok = 0, n_err = 0;

  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      gboolean want_error;
      guint start = i + 1;
      g_autoptr (GString) block = g_string_new (NULL);
      g_autoptr (GError) lerr = NULL;
      g_autoptr (RulesProgram) p = NULL;
      g_autofree char *name = NULL;

      if (strcmp (lines[i], "```vsl") == 0)
        want_error = FALSE;
      else if (strcmp (lines[i], "```vsl-error") == 0)
        want_error = TRUE;
      else
        continue;
      for (i++; lines[i] && strcmp (lines[i], "```") != 0; i++)
        g_string_append_printf (block, "%s\n", lines[i]);
      g_assert_nonnull (lines[i]);
      /* Relative list files in examples resolve against docs/. */
      {
        g_autofree char *dir = g_path_get_dirname (path);
        name = g_build_filename (dir, "rules-md-block.vsl", NULL);
      }
      p = rules_program_load_string (name, block->str, &test_options, &lerr);
      if (!want_error && p == NULL)
        g_error ("docs/rules.md:%u: vsl block does not load: %s", start, lerr->message);
      if (want_error && p != NULL)
        g_error ("docs/rules.md:%u: vsl-error block loads", start);
      if (want_error)
        n_err++;
      else
        n_ok++;
    }
  g_test_message ("%u vsl blocks, %u vsl-error blocks", n_ok, n_err);
  g_assert_cmpuint (n_ok, >=, 7);
  g_assert_cmpuint (n_err, >=, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/docs/vsl-blocks", test_blocks);
  return g_test_run ();
}
