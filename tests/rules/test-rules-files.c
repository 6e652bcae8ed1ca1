/* SPDX-License-Identifier: MIT
 *
 * test-rules-files.c — includes (relative paths, stage blocks appended
 * across files, loops, depth limit), list files of every type, in_file()
 * with re-reading on change, and the RULES.md example.
 */
#include "rules-test-util.h"

#include <glib/gstdio.h>
#include <string.h>
#include <utime.h>

static void rm_rf (const char *dir);

static char *
write_file (const char *dir, const char *name, const char *text)
{
  char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *parent = g_path_get_dirname (path);
  g_mkdir_with_parents (parent, 0700);
  g_assert_true (g_file_set_contents (path, text, -1, &error));
  return path;
}

static char *
make_dir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("rules-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

static void
test_includes (void)
{
  g_autofree char *dir = make_dir ();
  g_autofree char *main_path = NULL, *a = NULL, *b = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesProgram) p = NULL;
  g_autoptr (RulesState) st = NULL;
  g_autoptr (FakeHost) h = fake_host_new ();
  RulesStep step;

  a = write_file (dir, "sub/a.vsl",
                  "include \"b.vsl\"\n" /* relative to sub/ */
                  "mail { rule \"from a\" when mail.from in senders => log \"a\" }\n");
  b = write_file (dir, "sub/b.vsl",
                  "list senders = file \"senders.txt\"\n"
                  "mail { rule \"from b\" => log \"b\" }\n");
  g_free (write_file (dir, "sub/senders.txt", "X@Example.com\n"));
  main_path = write_file (dir, "main.vsl",
                          "mail { rule \"first\" => log \"main\" }\n"
                          "include \"sub/a.vsl\"\n"
                          "mail { rule \"last\" => reject }\n");
  p = rules_program_load_file (main_path, &test_options, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rules_program_n_rules (p, RULES_STAGE_MAIL), ==, 4);
  fake_set_string (h, RULES_VAR_MAIL_FROM, NULL, "x@example.COM", TRUE);
  st = rules_state_new (p);
  step = fake_run_stage (p, st, RULES_STAGE_MAIL, h, TRUE, NULL, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_REJECT);
  g_assert_cmpuint (h->effects->len, ==, 3);
  g_assert_cmpstr (h->effects->pdata[0], ==, "log =main");
  g_assert_cmpstr (h->effects->pdata[1], ==, "log =b");
  g_assert_cmpstr (h->effects->pdata[2], ==, "log =a");
  rm_rf (dir);
}

static void
test_include_depth (void)
{
  g_autofree char *dir = make_dir ();
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesProgram) p = NULL;
  g_autofree char *first = NULL, *want = NULL;

  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *name = g_strdup_printf ("f%u.vsl", i);
      g_autofree char *text = g_strdup_printf ("include \"f%u.vsl\"\n", i + 1);
      g_free (write_file (dir, name, text));
    }
  first = g_build_filename (dir, "f0.vsl", NULL);
  p = rules_program_load_file (first, &test_options, &error);
  g_assert_null (p);
  g_assert_error (error, RULES_ERROR, RULES_ERROR_INVALID);
  want = g_strdup_printf ("%s/f15.vsl:1:1: includes nested deeper than 16", dir);
  g_assert_cmpstr (error->message, ==, want);
  rm_rf (dir);
}

static void
test_list_types (void)
{
  g_autofree char *dir = make_dir ();
  g_autofree char *main_path = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesProgram) p = NULL;
  static const struct
  {
    const char *cond;
    gboolean want;
  } cases[] = {
    { "\"SPAM@x.org\" in s", TRUE },
    { "\"spam@x.org.uk\" in s", FALSE },
    { "\"bulk123@x\" in r", TRUE },
    { "\"nobulk@x\" in r", FALSE },
    { "client.ip in c", TRUE },
    { "\"10.9.9.9\" in c", TRUE },
    { "2001:db8::5 in c", TRUE },
    { "\"x@Mail.Example.COM\" in d", TRUE },
    { "\"example.com\" in d", TRUE },
    { "\"notexample.com\" in d", FALSE },
    { "\"a.b.org\" in d", TRUE },
    { "\"org\" in d", FALSE },
    { "in_file(\"live.txt\", \"Alpha\")", TRUE },
    { "in_file(\"live.txt\", \"gamma\")", FALSE },
    { "in_file(\"missing.txt\", \"x\")", FALSE },
  };

  g_free (write_file (dir, "s.txt", "# strings\nspam@x.org\n\n  other@y  # trailing\n"));
  g_free (write_file (dir, "r.txt", "^bulk[0-9]+@\n"));
  g_free (write_file (dir, "c.txt", "10.0.0.0/8\n2001:db8::/32\n192.0.2.1\n"));
  g_free (write_file (dir, "d.txt", "example.com\n.b.org\n"));
  g_free (write_file (dir, "live.txt", "alpha\nbeta\n"));
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text
          = g_strdup_printf ("list s = file \"s.txt\"\nlist r = file \"r.txt\" as regex\n"
                             "list c = file \"c.txt\" as cidr\nlist d = file \"d.txt\" as domain\n"
                             "list s2 = file \"s.txt\" as string\n"
                             "connect { rule \"t\" when %s => reject }\n",
                             cases[i].cond);
      g_autoptr (FakeHost) h = fake_host_new ();
      g_autoptr (RulesState) st = NULL;
      RulesStep step;

      g_clear_pointer (&p, rules_program_unref);
      g_free (main_path);
      main_path = write_file (dir, "main.vsl", text);
      p = rules_program_load_file (main_path, &test_options, &error);
      g_assert_no_error (error);
      fake_set_ip (h, RULES_VAR_CLIENT_IP, "10.1.2.3");
      st = rules_state_new (p);
      step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, TRUE, NULL, NULL);
      g_test_message ("case %u: %s", i, cases[i].cond);
      g_assert_cmpint (step.verdict == RULES_VERDICT_REJECT, ==, cases[i].want);
    }
  {
    g_autofree char *text = rules_program_explain (p);
    g_assert_nonnull (strstr (text, "list c: cidr, 3 entries, from "));
    g_assert_nonnull (strstr (text, "list s: string, 2 entries"));
  }
  rm_rf (dir);
}

/* in_file() re-reads its file when the mtime changes (checked at most once a second). */
static void
test_in_file_reload (void)
{
  g_autofree char *dir = make_dir ();
  g_autofree char *list = write_file (dir, "live.txt", "alpha\n");
  g_autofree char *main_path = write_file (
      dir, "main.vsl", "connect { rule \"t\" when in_file(\"live.txt\", \"beta\") => reject }\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesProgram) p = rules_program_load_file (main_path, &test_options, &error);
  g_autoptr (RulesState) st = rules_state_new (p);
  g_autoptr (FakeHost) h = fake_host_new ();
  RulesStep step;

  g_assert_no_error (error);
  step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, TRUE, NULL, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
  g_free (write_file (dir, "live.txt", "alpha\nbeta\n"));
  {
    /* A different mtime, whatever the file system's resolution. */
    GStatBuf sb;
    struct utimbuf t;
    g_assert_cmpint (g_stat (list, &sb), ==, 0);
    t.actime = t.modtime = sb.st_mtime + 10;
    g_assert_cmpint (g_utime (list, &t), ==, 0);
  }
  g_usleep (1100 * 1000);
  step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, TRUE, NULL, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_REJECT);
  rm_rf (dir);
}

static void
test_example (void)
{
  g_autofree char *path
      = g_test_build_filename (G_TEST_DIST, "rules", "example", "rules.vsl", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesProgram) p = rules_program_load_file (path, &test_options, &error);
  g_autoptr (FakeHost) h = fake_host_new ();
  g_autoptr (RulesState) st = NULL;
  RulesStep step;
  guint calls = 0;
  RulesValue v;

  g_assert_no_error (error);
  g_assert_cmpuint (rules_program_n_rules (p, RULES_STAGE_DATA), ==, 6);
  g_assert_cmpuint (rules_program_n_rules (p, RULES_STAGE_MAIL), ==, 2);
  st = rules_state_new (p);
  /* A client outside relay_nets, not listed. */
  fake_set_ip (h, RULES_VAR_CLIENT_IP, "203.0.113.5");
  step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, FALSE, NULL, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
  fake_set_string (h, RULES_VAR_MAIL_FROM, NULL, "spam@anything.example", TRUE);
  step = fake_run_stage (p, st, RULES_STAGE_MAIL, h, TRUE, NULL, NULL);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_REJECT);
  g_assert_cmpstr (step.rule, ==, "known bad sender");
  fake_set_string (h, RULES_VAR_MAIL_FROM, NULL, "a@shop.zz", TRUE);
  step = fake_run_stage (p, st, RULES_STAGE_MAIL, h, TRUE, NULL, NULL);
  g_assert_cmpstr (step.rule, ==, "bad tld");
  fake_set_string (h, RULES_VAR_RCPT_DOMAIN, NULL, "elsewhere.net", TRUE);
  step = fake_run_stage (p, st, RULES_STAGE_RCPT, h, TRUE, NULL, NULL);
  g_assert_cmpstr (step.text, ==, "Relaying denied");
  fake_set_string (h, RULES_VAR_RCPT_DOMAIN, NULL, "Example.ORG", TRUE);
  step = fake_run_stage (p, st, RULES_STAGE_RCPT, h, TRUE, NULL, &calls);
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_CONTINUE);
  g_assert_cmpuint (calls, ==, 1);
  rules_value_set_float (&v, 16);
  fake_set_conn (h, "rspamd", "score", &v);
  step = fake_run_stage (p, st, RULES_STAGE_DATA, h, TRUE, NULL, &calls);
  g_assert_cmpuint (calls, ==, 2);
  g_assert_cmpstr (step.rule, ==, "spam");
  step = fake_run_stage (p, st, RULES_STAGE_DELIVERY, h, TRUE, NULL, NULL);
  /* The first deliver routes the recipient and ends the stage: a local
   * recipient goes to its maildir, never also to the relay. */
  g_assert_cmpint (step.verdict, ==, RULES_VERDICT_ACCEPT);
  g_assert_cmpstr (step.rule, ==, "local users");
  g_assert_cmpuint (h->effects->len, >=, 1);
  g_assert_cmpstr (h->effects->pdata[h->effects->len - 1], ==, "deliver_maildir /var/mail/%d/%l=");
  /* Any other domain falls through to the catch-all relay rule. */
  fake_set_string (h, RULES_VAR_RCPT_DOMAIN, NULL, "elsewhere.example", TRUE);
  step = fake_run_stage (p, st, RULES_STAGE_DELIVERY, h, TRUE, NULL, NULL);
  g_assert_cmpstr (step.rule, ==, "rest");
  g_assert_cmpstr (h->effects->pdata[h->effects->len - 1], ==,
                   "deliver_relay [smtp.example.net]:587=");
}

static void
rm_rf (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *e;
  while (d && (e = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, e, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        rm_rf (p);
      else
        g_unlink (p);
    }
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/files/includes", test_includes);
  g_test_add_func ("/rules/files/include-depth", test_include_depth);
  g_test_add_func ("/rules/files/list-types", test_list_types);
  g_test_add_func ("/rules/files/in-file-reload", test_in_file_reload);
  g_test_add_func ("/rules/files/example", test_example);
  return g_test_run ();
}
