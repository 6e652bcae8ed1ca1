/* SPDX-License-Identifier: MIT
 *
 * test-rules-lists-cidr.c — CIDR lists against a reference (mixed prefix
 * lengths, IPv6, edges, through the language) and the per-run memo of list
 * look-ups.  Regex lists are in test-rules-lists.c.  White-box where it
 * counts: the tests read the list structures of rules-private.h to compare
 * with a linear reference.
 */
#include "rules-test-util.h"
#include "rules/rules-private.h"

#include <string.h>

/* ---- CIDR lists ------------------------------------------------------------ */

static const char *const nets_text = "10.0.0.0/8\n"
                                     "10.1.2.0/24\n" /* nested */
                                     "192.168.1.128/25\n"
                                     "203.0.113.7\n"
                                     "172.16.0.0/12\n"
                                     "198.51.100.77/31\n"
                                     "2001:db8::/32\n"
                                     "2001:db8:abcd:12::/64\n"
                                     "::1\n"
                                     "fe80::/10\n"
                                     "2001:db8:ffff::/127\n"
                                     "2a00:1450:4001:0800::/56\n";

static RulesList *
cidr_list (const char *text)
{
  g_autoptr (GError) error = NULL;
  RulesList *l = rules_list_new ("c", RULES_LIST_CIDR);
  g_assert_true (rules_list_load_text (l, "c.list", text, strlen (text), &error));
  g_assert_no_error (error);
  g_assert_true (l->sealed);
  return l;
}

/* Looks up a string value (a CIDR list parses it as an address). */
static gboolean
list_has (const RulesList *l, const char *s)
{
  RulesValue v;
  rules_value_set_string (&v, s, -1, FALSE);
  return rules_list_contains (l, &v);
}

static gboolean
reference_in (const RulesList *l, const RulesIp *ip)
{
  for (guint i = 0; l->cidrs && i < l->cidrs->len; i++)
    if (rules_ip_in_cidr (ip, &g_array_index (l->cidrs, RulesIp, i)))
      return TRUE;
  return FALSE;
}

static gboolean
ip_in (const RulesList *l, const char *addr)
{
  RulesValue v = { 0 };
  g_assert_true (rules_ip_parse (addr, strlen (addr), &v.ip));
  v.type = RULES_TYPE_IP;
  g_assert_cmpint (rules_list_contains (l, &v), ==, reference_in (l, &v.ip));
  return rules_list_contains (l, &v);
}

static void
test_cidr_mixed (void)
{
  RulesList *l = cidr_list (nets_text);
  static const struct
  {
    const char *addr;
    gboolean want;
  } cases[] = {
    { "10.0.0.1", TRUE },
    { "10.255.255.255", TRUE },
    { "11.0.0.0", FALSE },
    { "9.255.255.255", FALSE },
    { "192.168.1.127", FALSE },
    { "192.168.1.128", TRUE },
    { "192.168.1.255", TRUE },
    { "192.168.2.128", FALSE },
    { "203.0.113.7", TRUE },
    { "203.0.113.6", FALSE },
    { "172.31.255.255", TRUE },
    { "172.32.0.0", FALSE },
    { "172.15.255.255", FALSE },
    { "198.51.100.76", TRUE },
    { "198.51.100.77", TRUE },
    { "198.51.100.78", FALSE },
    { "2001:db8::1", TRUE },
    { "2001:db8:ffff:ffff::", TRUE },
    { "2001:db9::", FALSE },
    { "2001:db8:abcd:12:ffff::1", TRUE },
    { "::1", TRUE },
    { "::2", FALSE },
    { "::", FALSE },
    { "fe80::1", TRUE },
    { "febf:ffff::", TRUE },
    { "fec0::", FALSE },
    { "2a00:1450:4001:08ff::1", TRUE },
    { "2a00:1450:4001:0900::", FALSE },
    { "::ffff:10.0.0.1", FALSE }, /* IPv4-mapped is IPv6: no IPv4 network holds it */
    { "[IPv6:fe80::2]", TRUE },
    { "[10.9.9.9]", TRUE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_test_message ("case %u: %s", i, cases[i].addr);
      g_assert_cmpint (ip_in (l, cases[i].addr), ==, cases[i].want);
    }
  /* An address as a string is parsed; anything else is not in the list. */
  g_assert_true (list_has (l, "10.1.1.1"));
  g_assert_true (list_has (l, "2001:db8::5"));
  g_assert_false (list_has (l, "not an address"));
  rules_list_free (l);
}

/* Random addresses in and around the networks agree with a linear scan. */
static void
test_cidr_random (void)
{
  RulesList *l = cidr_list (nets_text);
  g_autoptr (GRand) rand = g_rand_new_with_seed (7);

  for (guint i = 0; i < 20000; i++)
    {
      const RulesIp *base
          = &g_array_index (l->cidrs, RulesIp, g_rand_int_range (rand, 0, (gint32)l->cidrs->len));
      RulesValue v = { 0 };
      guint flips = (guint)g_rand_int_range (rand, 0, 3);

      v.type = RULES_TYPE_IP;
      v.ip = *base;
      v.ip.prefix = base->family == 4 ? 32 : 128;
      /* Random host bits, sometimes a flipped network bit too. */
      for (guint b = base->prefix; b < (base->family == 4 ? 32u : 128u); b++)
        if (g_rand_boolean (rand))
          v.ip.addr[b / 8] ^= (guint8)(0x80 >> (b % 8));
      for (guint f = 0; f < flips && base->prefix > 0; f++)
        {
          guint b = (guint)g_rand_int_range (rand, 0, base->prefix);
          v.ip.addr[b / 8] ^= (guint8)(0x80 >> (b % 8));
        }
      g_assert_cmpint (rules_list_contains (l, &v), ==, reference_in (l, &v.ip));
    }
  rules_list_free (l);
}

static void
test_cidr_edges (void)
{
  RulesList *all4 = cidr_list ("0.0.0.0/0\n");
  RulesList *all6 = cidr_list ("::/0\n");
  RulesList *empty = cidr_list ("# nothing\n");
  RulesValue v = { 0 };

  g_assert_true (ip_in (all4, "255.255.255.255"));
  g_assert_false (ip_in (all4, "::1"));
  g_assert_true (ip_in (all6, "ffff::1"));
  g_assert_false (ip_in (all6, "1.2.3.4"));
  g_assert_false (ip_in (empty, "1.2.3.4"));
  /* A host IPv4 value with junk after its 4 bytes is still the same address. */
  g_assert_true (rules_ip_parse ("10.0.0.1", 8, &v.ip));
  v.type = RULES_TYPE_IP;
  memset (v.ip.addr + 4, 0xaa, 12);
  g_assert_true (rules_list_contains (all4, &v));
  rules_list_free (all4);
  rules_list_free (all6);
  rules_list_free (empty);
}

/* The same networks through the language: a file and a literal list. */
static void
test_cidr_program (void)
{
  static const struct
  {
    const char *ip;
    gboolean want;
  } cases[] = {
    { "10.1.2.3", TRUE },     { "192.168.1.200", TRUE }, { "192.168.1.1", FALSE },
    { "2001:db8::7", TRUE },  { "2001:db9::7", FALSE },  { "100.64.0.1", TRUE },
    { "100.128.0.1", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (RulesProgram) p
          = load_or_fail ("list lit = [10.0.0.0/8, 192.168.1.128/25, 2001:db8::/32, "
                          "100.64.0.0/10, 203.0.113.9]\n"
                          "connect { rule \"t\" when client.ip in lit => reject }\n");
      g_autoptr (RulesState) st = rules_state_new (p);
      g_autoptr (FakeHost) h = fake_host_new ();
      RulesStep step;

      fake_set_ip (h, RULES_VAR_CLIENT_IP, cases[i].ip);
      step = fake_run_stage (p, st, RULES_STAGE_CONNECT, h, TRUE, NULL, NULL);
      g_test_message ("case %u: %s", i, cases[i].ip);
      g_assert_cmpint (step.verdict == RULES_VERDICT_REJECT, ==, cases[i].want);
    }
}

/* ---- the per-run memo ---------------------------------------------------- */

/* Many look-ups of different values and lists in one run, more than the memo
 * holds, some repeated, one longer than a memo key: each rule gets its own
 * answer. */
static void
test_memo (void)
{
  g_autoptr (GString) text = g_string_new ("list words = [\"alpha\", \"beta\", /^gam+a$/]\n"
                                           "list other = [\"beta\", /^delta/]\n"
                                           "data {\n");
  g_autoptr (RulesProgram) p = NULL;
  g_autoptr (RulesState) st = NULL;
  g_autoptr (FakeHost) h = fake_host_new ();
  g_autofree char *longval = g_strnfill (300, 'a');
  static const char *const values[] = { "alpha", "beta", "gammma", "delta9", "nope" };
  guint n = 0;

  for (guint round = 0; round < 3; round++)
    for (guint i = 0; i < 24; i++)
      {
        g_string_append_printf (text,
                                "  rule \"w%u\" when header(\"H%u\") in words => "
                                "add_header \"X-W\" \"%u\"\n"
                                "  rule \"o%u\" when header(\"H%u\") in other => "
                                "add_header \"X-O\" \"%u\"\n",
                                n, i, i, n, i, i);
        n++;
      }
  g_string_append (text, "  rule \"long\" when header(\"L\") in words => add_header \"X-L\" \"1\"\n"
                         "}\n");
  p = load_or_fail (text->str);
  for (guint i = 0; i < 24; i++)
    {
      g_autofree char *name = g_strdup_printf ("H%u", i);
      fake_set_string (h, RULES_VAR_HEADER, name, values[i % G_N_ELEMENTS (values)], FALSE);
    }
  fake_set_string (h, RULES_VAR_HEADER, "L", longval, FALSE);
  st = rules_state_new (p);
  fake_run_stage (p, st, RULES_STAGE_DATA, h, TRUE, NULL, NULL);
  {
    guint w = 0, o = 0;
    for (guint k = 0; k < h->effects->len; k++)
      {
        const char *e = h->effects->pdata[k];
        guint i = (guint)g_ascii_strtoull (strchr (e, '=') + 1, NULL, 10);
        const char *val = values[i % G_N_ELEMENTS (values)];
        g_assert_false (g_str_has_prefix (e, "add_header X-L"));
        if (g_str_has_prefix (e, "add_header X-W"))
          {
            g_assert_true (strcmp (val, "alpha") == 0 || strcmp (val, "beta") == 0
                           || strcmp (val, "gammma") == 0);
            w++;
          }
        else
          {
            g_assert_true (strcmp (val, "beta") == 0 || strcmp (val, "delta9") == 0);
            o++;
          }
      }
    /* Per round: 24 headers, 3/5 in words (15 of 24 here), 2/5 in other. */
    g_assert_cmpuint (w, ==, 3 * 15);
    g_assert_cmpuint (o, ==, 3 * 10);
  }
}

/* Two runs interleaved on one thread do not read each other's memo. */
static void
test_memo_interleaved (void)
{
  g_autoptr (RulesProgram) p = load_or_fail ("list l = [\"yes@example.com\"]\n"
                                             "mail {\n"
                                             "  rule \"a\" when mail.from in l => set a = true\n"
                                             "  rule \"c\" => call spf\n"
                                             "  rule \"b\" when mail.from in l => set b = true\n"
                                             "}\n");
  g_autoptr (RulesState) s1 = rules_state_new (p), s2 = rules_state_new (p);
  g_autoptr (FakeHost) h1 = fake_host_new (), h2 = fake_host_new ();
  g_autoptr (RulesRun) r1 = rules_run_new (p, s1, RULES_STAGE_MAIL);
  g_autoptr (RulesRun) r2 = rules_run_new (p, s2, RULES_STAGE_MAIL);
  RulesStep step;

  fake_set_string (h1, RULES_VAR_MAIL_FROM, NULL, "yes@example.com", TRUE);
  fake_set_string (h2, RULES_VAR_MAIL_FROM, NULL, "no@example.com", TRUE);
  g_assert_cmpint (rules_run_step (r1, &fake_vtable, h1, &step), ==, RULES_STEP_CALL);
  g_assert_cmpint (rules_run_step (r2, &fake_vtable, h2, &step), ==, RULES_STEP_CALL);
  g_assert_cmpint (rules_run_step (r2, &fake_vtable, h2, &step), ==, RULES_STEP_DONE);
  g_assert_cmpint (rules_run_step (r1, &fake_vtable, h1, &step), ==, RULES_STEP_DONE);
  g_assert_nonnull (rules_state_get (s1, "a"));
  g_assert_nonnull (rules_state_get (s1, "b"));
  g_assert_null (rules_state_get (s2, "a"));
  g_assert_null (rules_state_get (s2, "b"));
}

/* A list freed with its program and another allocated in its place (the
 * same address, often) is never answered from the old run's memo. */
static void
test_memo_program_reload (void)
{
  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *text
          = g_strdup_printf ("list l = [\"%s\"]\n"
                             "mail { rule \"t\" when mail.from in l => reject }\n",
                             i % 2 ? "other@example.com" : "x@example.com");
      g_autoptr (RulesProgram) p = load_or_fail (text);
      g_autoptr (RulesState) st = rules_state_new (p);
      g_autoptr (FakeHost) h = fake_host_new ();
      RulesStep step;

      fake_set_string (h, RULES_VAR_MAIL_FROM, NULL, "x@example.com", TRUE);
      step = fake_run_stage (p, st, RULES_STAGE_MAIL, h, TRUE, NULL, NULL);
      g_assert_cmpint (step.verdict == RULES_VERDICT_REJECT, ==, i % 2 == 0);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/lists/cidr-mixed", test_cidr_mixed);
  g_test_add_func ("/rules/lists/cidr-random", test_cidr_random);
  g_test_add_func ("/rules/lists/cidr-edges", test_cidr_edges);
  g_test_add_func ("/rules/lists/cidr-program", test_cidr_program);
  g_test_add_func ("/rules/lists/memo", test_memo);
  g_test_add_func ("/rules/lists/memo-interleaved", test_memo_interleaved);
  g_test_add_func ("/rules/lists/memo-program-reload", test_memo_program_reload);
  return g_test_run ();
}
