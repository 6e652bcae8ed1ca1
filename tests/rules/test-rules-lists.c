/* SPDX-License-Identifier: MIT
 *
 * test-rules-lists.c — compiled regex lists against a reference: regex lists
 * combined into alternations (match, no match, the regexes that must be
 * matched alone, chunks that do not compile), a 200-entry regex list file,
 * case-insensitive and Unicode regexes with GRegex's semantics.  CIDR lists
 * and the per-run memo are in test-rules-lists-cidr.c.
 * White-box where it counts: the tests read the list structures of
 * rules-private.h to prove which path answered.
 */
#include "rules-test-util.h"
#include "rules/rules-private.h"

#include <glib/gstdio.h>
#include <string.h>

static RulesList *
regex_list (const char *text)
{
  g_autoptr (GError) error = NULL;
  RulesList *l = rules_list_new ("t", RULES_LIST_REGEX);

  g_assert_true (rules_list_load_text (l, "t.list", text, strlen (text), &error));
  g_assert_no_error (error);
  g_assert_true (l->sealed);
  return l;
}

static gboolean
list_has (const RulesList *l, const char *s)
{
  RulesValue v;
  rules_value_set_string (&v, s, -1, FALSE);
  return rules_list_contains (l, &v);
}

/* What matching every regex of the list alone says. */
static gboolean
reference_has (const RulesList *l, const char *s)
{
  for (guint i = 0; i < l->regexes->len; i++)
    if (rules_regex_match (l->regexes->pdata[i], s, strlen (s)))
      return TRUE;
  return FALSE;
}

static void
assert_stats (const RulesList *l, guint chunks, guint combined, guint alone)
{
  guint c, k, a;
  rules_regex_set_stats (l->regex_set, &c, &k, &a);
  g_assert_cmpuint (c, ==, chunks);
  g_assert_cmpuint (k, ==, combined);
  g_assert_cmpuint (a, ==, alone);
}

typedef struct
{
  const char *subject;
  gboolean want;
} Probe;

static void
check_probes (const RulesList *l, const Probe *probes, guint n)
{
  for (guint i = 0; i < n; i++)
    {
      g_test_message ("subject '%s'", probes[i].subject);
      g_assert_cmpint (list_has (l, probes[i].subject), ==, probes[i].want);
      g_assert_cmpint (reference_has (l, probes[i].subject), ==, probes[i].want);
    }
}

/* ---- combined regex lists ---------------------------------------------- */

static void
test_regex_combined (void)
{
  RulesList *l = regex_list ("# senders\n"
                             "^bulk[0-9]+@\n"
                             "  (?i)viagra  # inline flag stays inside its group\n"
                             "\\.example$\n"
                             "^a|b$\n");
  static const Probe probes[] = {
    { "bulk12@x.org", TRUE },
    { "cheap VIAGRA now", TRUE },
    { "user@host.example", TRUE },
    { "alpha", TRUE },
    { "zzb", TRUE },
    { "bulk@x.org", FALSE },
    { "host.example.org", FALSE },
    { "", FALSE },
    { "xyz", FALSE },
  };

  assert_stats (l, 1, 4, 0);
  check_probes (l, probes, G_N_ELEMENTS (probes));
  /* (?i) of one entry does not leak into the next: "\.EXAMPLE$" is not matched. */
  g_assert_false (list_has (l, "user@host.EXAMPLE"));
  rules_list_free (l);
}

/* A literal list mixes regexes with their own flags, strings and networks. */
static void
test_regex_combined_flags (void)
{
  static const struct
  {
    const char *cond;
    gboolean want;
  } cases[] = {
    { "\"ABCdef\" in mixed", TRUE },           /* /^abc/i */
    { "\"foo\\nxyz\\nbar\" in mixed", TRUE },  /* /xyz$/m */
    { "\"foo\\nxyz\\nbar\" in plain", FALSE }, /* /xyz$/ without m */
    { "\"XYZ\" in mixed", FALSE },             /* case-sensitive */
    { "\"Literal\" in mixed", TRUE },          /* a string entry */
    { "\"10.1.2.3\" in mixed", TRUE },         /* a network entry */
    { "\"nothing\" in mixed", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text
          = g_strdup_printf ("list mixed = [/^abc/i, /xyz$/m, \"literal\", 10.0.0.0/8, /^q{3}/]\n"
                             "list plain = [/xyz$/, /^nope/]\n"
                             "connect { rule \"t\" when %s => reject }\n",
                             cases[i].cond);
      g_autoptr (RulesProgram) p = load_or_fail (text);
      g_autoptr (RulesState) st = rules_state_new (p);
      g_autoptr (FakeHost) h = fake_host_new ();
      RulesStep step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, TRUE, NULL, NULL);

      g_test_message ("case %u: %s", i, cases[i].cond);
      g_assert_cmpint (step.verdict == RULES_VERDICT_REJECT, ==, cases[i].want);
      for (guint k = 0; k < p->listdefs->len; k++)
        {
          const RulesListDef *d = p->listdefs->pdata[k];
          if (strcmp (d->name, "mixed") == 0)
            assert_stats (d->list, 1, 3, 0);
        }
    }
}

/* Regexes whose meaning depends on their place in the pattern are matched
 * alone; each probe would get the wrong answer in a naive alternation. */
static void
test_regex_fallback_alone (void)
{
  static const char *const patterns[] = {
    "(x)\\1",         /* back reference: group numbers shift when combined */
    "(a)\\1",         /* "aa": its \1 would name (x) in a naive alternation */
    "(c)\\g{1}d",     /* \g reference */
    "(e)(?1)f",       /* subroutine call by number */
    "g(*COMMIT)h",    /* a verb acts on the whole match: "g other" would fail */
    "\\Qlit.",        /* an unterminated \Q would swallow the closing ')' */
    "(?x)sp ace # c", /* so would a trailing extended-mode comment */
    "^plain",         "other$",
  };
  static const Probe probes[] = {
    { "aa", TRUE },         { "ccd", TRUE },       { "eef", TRUE },   { "g other", TRUE },
    { "gh", TRUE },         { "a lit. b", TRUE },  { "litx", FALSE }, { "space", TRUE },
    { "plain text", TRUE }, { "the other", TRUE }, { "ab", FALSE },   { "cd", FALSE },
    { "sp ace", FALSE },    { "gx", FALSE },
  };
  RulesList *l = rules_list_new (NULL, RULES_LIST_MIXED);

  /* Built from values: a list file would take '#' for its own comments. */
  for (guint i = 0; i < G_N_ELEMENTS (patterns); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (RulesRegex) re = rules_regex_new (patterns[i], 0, &error);
      RulesValue v = { 0 };
      const char *why = NULL;

      g_assert_no_error (error);
      v.type = RULES_TYPE_REGEX;
      v.re = re;
      g_assert_true (rules_list_add_value (l, &v, &why));
    }
  rules_list_seal (l);
  /* The two plain ones combine; the seven others stand alone. */
  assert_stats (l, 1, 2, 7);
  check_probes (l, probes, G_N_ELEMENTS (probes));
  rules_list_free (l);
}

/* Entries that compile alone but not together (the same group name twice):
 * the chunk is split until its parts compile. */
static void
test_regex_fallback_split (void)
{
  RulesList *l = regex_list ("(?<n>a)x\n"
                             "(?<n>b)y\n"
                             "zz\n"
                             "w+v\n");
  static const Probe probes[] = {
    { "ax", TRUE },  { "by", TRUE },  { "zz", TRUE }, { "wwv", TRUE },
    { "ay", FALSE }, { "bx", FALSE }, { "z", FALSE },
  };

  /* [ax by zz w+v] fails; [ax by] fails -> ax, by alone; [zz w+v] combines. */
  assert_stats (l, 1, 2, 2);
  check_probes (l, probes, G_N_ELEMENTS (probes));
  rules_list_free (l);
}

/* A chunk whose match fails with an error (here the match limit, hit by
 * catastrophic backtracking in its first alternative before the second is
 * tried) asks its members one by one: "b" still matches. */
static void
test_regex_fallback_match_error (void)
{
  RulesList *l = regex_list ("(a+)+$\n"
                             "b\n");
  g_autofree char *as = g_strnfill (40, 'a');
  g_autofree char *with_b = g_strconcat (as, "b", NULL);
  g_autofree char *with_c = g_strconcat (as, "c", NULL);

  assert_stats (l, 1, 2, 0);
  g_assert_true (list_has (l, with_b));
  g_assert_true (reference_has (l, with_b));
  g_assert_false (list_has (l, with_c));
  g_assert_true (list_has (l, "aaa"));
  rules_list_free (l);
}

/* An unsealed list (entries added one by one) still answers, by scanning. */
static void
test_regex_unsealed (void)
{
  g_autoptr (GError) error = NULL;
  RulesList *l = rules_list_new (NULL, RULES_LIST_MIXED);
  RulesRegex *re = rules_regex_new ("^ab+c$", 0, &error);
  RulesValue v = { 0 };
  const char *why = NULL;

  g_assert_no_error (error);
  v.type = RULES_TYPE_REGEX;
  v.re = re;
  g_assert_true (rules_list_add_value (l, &v, &why));
  rules_regex_unref (re);
  g_assert_null (l->regex_set);
  g_assert_true (list_has (l, "abbbc"));
  g_assert_false (list_has (l, "ac"));
  rules_list_seal (l);
  assert_stats (l, 0, 0, 1);
  g_assert_true (list_has (l, "abbbc"));
  rules_list_free (l);
}

/* ---- a 200-entry regex list file ----------------------------------------- */

static char *
entry_pattern (guint i)
{
  switch (i % 5)
    {
      case 0:
        return g_strdup_printf ("^user%u[0-9]*@", i);
      case 1:
        return g_strdup_printf ("(?i)spam%uword", i);
      case 2:
        return g_strdup_printf ("\\.dom%u\\.example$", i);
      case 3:
        return g_strdup_printf ("^x%u(?:ab|cd)+y$", i);
      default:
        return g_strdup_printf ("tok%u\\b", i);
    }
}

static char *
entry_sample (guint i)
{
  switch (i % 5)
    {
      case 0:
        return g_strdup_printf ("user%u77@example.org", i);
      case 1:
        return g_strdup_printf ("buy SPAM%uWORD today", i);
      case 2:
        return g_strdup_printf ("someone@mx.dom%u.example", i);
      case 3:
        return g_strdup_printf ("x%uabcdaby", i);
      default:
        return g_strdup_printf ("a tok%u here", i);
    }
}

static void
test_regex_file_200 (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("rules-lists-XXXXXX", &error);
  g_autofree char *list_path = g_build_filename (dir, "senders.list", NULL);
  g_autofree char *main_path = g_build_filename (dir, "main.vsl", NULL);
  g_autoptr (GString) text = g_string_new ("# 200 patterns\n");
  g_autoptr (RulesProgram) p = NULL;
  g_autoptr (GRand) rand = g_rand_new_with_seed (200);
  const RulesList *l = NULL;

  g_assert_no_error (error);
  for (guint i = 0; i < 200; i++)
    {
      g_autofree char *pat = entry_pattern (i);
      g_string_append_printf (text, "%s\n", pat);
    }
  g_assert_true (g_file_set_contents (list_path, text->str, -1, &error));
  g_assert_true (g_file_set_contents (main_path,
                                      "list senders = file \"senders.list\" as regex\n"
                                      "mail { rule \"t\" when mail.from in senders => reject }\n",
                                      -1, &error));
  p = rules_program_load_file (main_path, &test_options, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < p->listdefs->len; i++)
    if (strcmp (((RulesListDef *)p->listdefs->pdata[i])->name, "senders") == 0)
      l = ((RulesListDef *)p->listdefs->pdata[i])->list;
  g_assert_nonnull (l);
  g_assert_cmpuint (l->n_entries, ==, 200);
  /* About 3 KB of pattern: one alternation holds them all. */
  assert_stats (l, 1, 200, 0);

  for (guint i = 0; i < 200; i++)
    {
      g_autofree char *s = entry_sample (i);
      g_autoptr (FakeHost) h = fake_host_new ();
      g_autoptr (RulesState) st = rules_state_new (p);
      RulesStep step;

      g_assert_true (list_has (l, s));
      fake_set_string (h, RULES_VAR_MAIL_FROM, NULL, s, TRUE);
      step = fake_run_stage (p, st, RULES_STAGE_MAIL, h, TRUE, NULL, NULL);
      g_assert_cmpint (step.verdict, ==, RULES_VERDICT_REJECT);
    }
  /* Near misses and random text agree with matching each regex alone. */
  for (guint i = 0; i < 2000; i++)
    {
      static const char alphabet[] = "abcdxyz0123456789@.usertokspamdomexample WORD";
      g_autoptr (GString) s = g_string_new (NULL);
      guint len = (guint)g_rand_int_range (rand, 0, 24);
      if (i % 4 == 0)
        {
          g_autofree char *sample = entry_sample ((guint)g_rand_int_range (rand, 0, 400));
          g_string_append (s, sample);
          if (s->len > 0)
            g_string_erase (s, (gssize)g_rand_int_range (rand, 0, (gint32)s->len), 1);
        }
      else
        for (guint k = 0; k < len; k++)
          g_string_append_c (s, alphabet[g_rand_int_range (rand, 0, (gint32)sizeof alphabet - 1)]);
      g_assert_cmpint (list_has (l, s->str), ==, reference_has (l, s->str));
    }
  g_assert_false (list_has (l, "user@example.org"));
  g_assert_false (list_has (l, "x3y"));

  /* A bad entry is still reported at its own line and column. */
  g_clear_pointer (&p, rules_program_unref);
  g_string_append (text, "ok[0-9]\n  bad(\n");
  g_assert_true (g_file_set_contents (list_path, text->str, -1, &error));
  p = rules_program_load_file (main_path, &test_options, &error);
  g_assert_null (p);
  g_assert_error (error, RULES_ERROR, RULES_ERROR_INVALID);
  g_assert_true (g_str_has_suffix (error->message,
                                   "senders.list:203:3: invalid regex: Error while compiling "
                                   "regular expression ‘bad(’ at char 4: missing terminating )"));
  g_unlink (list_path);
  g_unlink (main_path);
  g_rmdir (dir);
}

/* ---- regex semantics: GRegex's options ------------------------------------ */

static void
test_regex_case_insensitive (void)
{
  static const struct
  {
    const char *cond;
    gboolean want;
  } cases[] = {
    { "\"HELLO World\" =~ /^hello world$/i", TRUE },
    { "\"HELLO World\" =~ /^hello world$/", FALSE },
    { "\"HÉLLO WÖRLD\" =~ /^héllo wörld$/i", TRUE }, /* UTF-8 case folding */
    { "\"straße\" =~ /^STRASSE$/i", FALSE },         /* no multi-character folding */
    { "\"héllo\" =~ /^\\w+$/", TRUE },               /* UCP: \w is Unicode */
    { "\"٣\" =~ /^\\d$/", TRUE },                    /* UCP: \d is Unicode */
    { "\"é\" =~ /^.$/", TRUE },                      /* UTF: one character */
    { "\"Mail.Example.NET\" in [/^MAIL\\./i]", TRUE },
    { "\"Mail.Example.NET\" in [/^MAIL\\./]", FALSE },
    { "\"Mail.Example.NET\" in [/(?i)^MAIL\\./, /^zz/]", TRUE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text
          = g_strdup_printf ("connect { rule \"t\" when %s => reject }\n", cases[i].cond);
      g_autoptr (RulesProgram) p = load_or_fail (text);
      g_autoptr (RulesState) st = rules_state_new (p);
      g_autoptr (FakeHost) h = fake_host_new ();
      RulesStep step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, TRUE, NULL, NULL);

      g_test_message ("case %u: %s", i, cases[i].cond);
      g_assert_cmpint (step.verdict == RULES_VERDICT_REJECT, ==, cases[i].want);
    }
  {
    /* explain shows the flags given, not inline options (as with GRegex). */
    g_autoptr (RulesProgram) p
        = load_or_fail ("connect { rule \"t\" when client.ptr =~ /a/i or client.ptr =~ "
                        "/(?i)b/ or client.ptr =~ /c/m => reject }\n");
    g_autofree char *text = rules_program_explain (p);
    g_assert_nonnull (strstr (text, "=~ /a/i)"));
    g_assert_nonnull (strstr (text, "=~ /(?i)b/)"));
    g_assert_nonnull (strstr (text, "=~ /c/m)"));
  }
}

/* GRegex's newline conventions: any Unicode newline ends a line for ^ $ and
 * the dot, and \R matches any of them. */
static void
test_regex_newlines (void)
{
  static const struct
  {
    const char *pattern;
    guint flags;
    const char *subject;
    gboolean want;
  } cases[] = {
    { "^b", RULES_RE_M, "a\r\nb", TRUE }, { "^b", RULES_RE_M, "a\rb", TRUE },
    { "^b", 0, "a\nb", FALSE },           { "a$", RULES_RE_M, "a\u2028b", TRUE },
    { "a$", 0, "a\r\n", TRUE },           { "^x\\R$", 0, "x\xc2\x85", TRUE },
    { "^x\\R$", 0, "x\r\n", TRUE },       { "^a.b$", 0, "a\rb", FALSE },
    { "^a.b$", 0, "a\u2028b", FALSE },    { "^a.b$", 0, "a\tb", TRUE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (RulesRegex) re = rules_regex_new (cases[i].pattern, cases[i].flags, &error);
      g_assert_no_error (error);
      g_test_message ("case %u: /%s/", i, cases[i].pattern);
      g_assert_cmpint (rules_regex_match (re, cases[i].subject, strlen (cases[i].subject)), ==,
                       cases[i].want);
    }
}

/* The same answers as GRegex with the flags vsl gave it, pattern by subject. */
static void
test_regex_vs_gregex (void)
{
  static const char *const patterns[] = {
    "abc",         "^abc$",   "\\bword\\b",   "^\\w+$",
    "^\\W",        "\\d{2}",  "^\\s+$",       "[[:alpha:]]+x",
    "[[:upper:]]", "\\p{Lu}", "^.$",          "^..$",
    "a.b",         "^b",      "a$",           "a\\Rb",
    "\\x{e9}",     "É",       "^(?:ab|cd)+$", "(?i)straße",
    "[^a]",        "\\bé",    "^\\h+$",       "\\v",
    "x*",          "^$",      "\\Aa",         "a\\z",
    "a\\Z",        "(?s)a.b", "(?m)^b$",      "[à-ÿ]+",
    "\\N",         "(?<=a)b", "b(?!c)",       "(a|b)*c",
  };
  static const char *const subjects[] = {
    "abc",
    "xabcx",
    "ABC",
    "a word here",
    "awordb",
    "héllo",
    "HÉLLO",
    "12",
    "١٢",
    " \t ",
    "\u00a0",
    "a\nb",
    "a\r\nb",
    "a\rb",
    "a\u2028b",
    "a\xc2\x85"
    "b",
    "a\x0b"
    "b",
    "é",
    "e\xcc\x81",
    "",
    "a\n",
    "a\r\n",
    "abab",
    "abcd",
    "STRASSE",
    "straße",
    "xÀx",
    "bc",
    "bd",
    "ccc",
    "Éa",
  };

  for (guint f = 0; f < 4; f++)
    for (guint i = 0; i < G_N_ELEMENTS (patterns); i++)
      {
        GRegexCompileFlags gf = G_REGEX_OPTIMIZE | ((f & RULES_RE_I) ? G_REGEX_CASELESS : 0)
                                | ((f & RULES_RE_M) ? G_REGEX_MULTILINE : 0);
        g_autoptr (GError) error = NULL;
        g_autoptr (GRegex) g = g_regex_new (patterns[i], gf, 0, &error);
        g_autoptr (RulesRegex) r = rules_regex_new (patterns[i], f, &error);

        g_assert_no_error (error);
        for (guint k = 0; k < G_N_ELEMENTS (subjects); k++)
          {
            gsize len = strlen (subjects[k]);
            gboolean want = g_regex_match_full (g, subjects[k], (gssize)len, 0, 0, NULL, NULL);
            if (rules_regex_match (r, subjects[k], len) != want)
              g_error ("/%s/ flags %u on \"%s\": GRegex says %d", patterns[i], f, subjects[k],
                       want);
          }
      }
}

/* Host values are not validated: invalid UTF-8 never matches a pattern item
 * and never crashes; the valid parts around it still match. */
static void
test_regex_invalid_utf8 (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesRegex) re = rules_regex_new ("^abc", 0, &error);
  g_autoptr (RulesRegex) any = rules_regex_new ("x.y", 0, &error);
  g_autoptr (RulesRegex) word = rules_regex_new ("def", RULES_RE_I, &error);
  static const char bad[] = "abc\xff\xfe DEF";

  g_assert_no_error (error);
  g_assert_true (rules_regex_match (re, bad, sizeof bad - 1));
  g_assert_true (rules_regex_match (word, bad, sizeof bad - 1));
  g_assert_false (rules_regex_match (any, "x\xffy", 3));
  g_assert_true (rules_regex_match (any, "x\0y", 3)); /* NUL is a character */
  g_assert_false (rules_regex_match (re, "\xc3", 1));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/lists/regex-combined", test_regex_combined);
  g_test_add_func ("/rules/lists/regex-combined-flags", test_regex_combined_flags);
  g_test_add_func ("/rules/lists/regex-fallback-alone", test_regex_fallback_alone);
  g_test_add_func ("/rules/lists/regex-fallback-split", test_regex_fallback_split);
  g_test_add_func ("/rules/lists/regex-fallback-match-error", test_regex_fallback_match_error);
  g_test_add_func ("/rules/lists/regex-unsealed", test_regex_unsealed);
  g_test_add_func ("/rules/lists/regex-file-200", test_regex_file_200);
  g_test_add_func ("/rules/lists/regex-case-insensitive", test_regex_case_insensitive);
  g_test_add_func ("/rules/lists/regex-newlines", test_regex_newlines);
  g_test_add_func ("/rules/lists/regex-vs-gregex", test_regex_vs_gregex);
  g_test_add_func ("/rules/lists/regex-invalid-utf8", test_regex_invalid_utf8);
  return g_test_run ();
}
