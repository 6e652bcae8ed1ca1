/* SPDX-License-Identifier: MIT
 *
 * test-rules-threads.c — one compiled program shared by 4 threads, each
 * evaluating every stage many times with its own state and host, plus a
 * timing sanity check of the evaluation cost.
 */
#include "rules-test-util.h"

#define N_THREADS 4
#define N_ROUNDS 2000

static const char *program_text
    = "list nets = [10.0.0.0/8, 192.168.0.0/16]\n"
      "list words = [\"viagra\", \"lottery\"]\n"
      /* a combined regex list: one PCRE2 alternation, matched from every thread */
      "list pats = [/^bad[0-9]+@/i, /^nobody@/, /^lottery$/]\n"
      "connect { rule \"lan\" when client.ip in nets => accept }\n"
      "mail { rule \"m\" when lower(mail.from) =~ /^bad/ and mail.from in pats => "
      "reject 550 \"bad\" }\n"
      "rcpt { rule \"r\" => set n = rcpt.count + 1, set who = \"to \" + rcpt.to }\n"
      "data {\n"
      "  rule \"w\" when subject in pats and (subject in words or body =~ /lottery/i) => "
      "add_header \"X-Spam\" var.who\n"
      "  rule \"z\" when in_file(\"nonexistent.list\", subject) => discard\n"
      "  rule \"big\" when message.size > 10M => reject 552 5.3.4 \"too big\"\n"
      "}\n";

typedef struct
{
  RulesProgram *prog;
  guint id;
  guint rejects;
} Worker;

static gpointer
worker (gpointer data)
{
  Worker *w = data;

  for (guint i = 0; i < N_ROUNDS; i++)
    {
      g_autoptr (FakeHost) h = fake_host_new ();
      g_autoptr (RulesState) st = rules_state_new (w->prog);
      g_autofree char *from = g_strdup_printf ("%s%u@example.com", i % 2 ? "Bad" : "good", w->id);
      RulesStep step;

      fake_set_ip (h, RULES_VAR_CLIENT_IP, i % 3 ? "203.0.113.1" : "10.1.1.1");
      fake_set_string (h, RULES_VAR_MAIL_FROM, NULL, from, TRUE);
      fake_set_string (h, RULES_VAR_RCPT_TO, NULL, "rcpt@example.org", TRUE);
      fake_set_int (h, RULES_VAR_RCPT_COUNT, NULL, 1);
      fake_set_string (h, RULES_VAR_SUBJECT, NULL, "lottery", FALSE);
      fake_set_string (h, RULES_VAR_BODY, NULL, "hello", FALSE);
      fake_set_int (h, RULES_VAR_MESSAGE_SIZE, NULL, i % 5 ? 1000 : 11 * 1024 * 1024);
      for (guint s = 0; s < RULES_N_STAGES; s++)
        {
          step = fake_run_stage (w->prog, st, (RulesStage)s, h, TRUE, NULL, NULL);
          if (step.verdict == RULES_VERDICT_REJECT)
            w->rejects++;
        }
      g_assert_cmpint (rules_state_get (st, "n")->i, ==, 2);
      g_assert_cmpstr (h->effects->pdata[0], ==, "add_header X-Spam=to rcpt@example.org");
    }
  return NULL;
}

static void
test_threads (void)
{
  g_autoptr (RulesProgram) p = load_or_fail (program_text);
  Worker w[N_THREADS];
  GThread *t[N_THREADS];
  guint want = 0;

  for (guint i = 0; i < N_ROUNDS; i++)
    want += (i % 2 ? 1 : 0) + (i % 5 ? 0 : 1);
  for (guint i = 0; i < N_THREADS; i++)
    {
      w[i] = (Worker){ rules_program_ref (p), i, 0 };
      t[i] = g_thread_new ("rules", worker, &w[i]);
    }
  for (guint i = 0; i < N_THREADS; i++)
    {
      g_thread_join (t[i]);
      g_assert_cmpuint (w[i].rejects, ==, want);
      rules_program_unref (w[i].prog);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/threads/shared-program", test_threads);
  return g_test_run ();
}
