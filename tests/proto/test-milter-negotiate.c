/* SPDX-License-Identifier: MIT
 *
 * test-milter-negotiate.c — option negotiation (proto/milter/milter.h) from
 * both ends: our answer to MTAs of versions 0..7 (libmilter's rules: min
 * version, < 2 refused, nothing asked that was not offered, version masks),
 * a milter's answer judged as Postfix does, and which commands are sent
 * and replied under a negotiated protocol.
 */
#include "proto/milter/milter.h"

#define REFUSED 0xFFFFFFFFu

typedef struct
{
  const char *name;
  MilterOptions offer;
  MilterOptions want;
  MilterOptions answer; /* version REFUSED: MILTER_ERROR_VERSION */
} AnswerCase;

/* what vpsd wants: every action, no NO_* step off, replies for everything
 * but headers, leading spaces kept */
#define WANT_ALL                                                                                   \
  {                                                                                                \
    0, MILTER_ACTIONS_ALL, MILTER_PROTO_NR_HDR | MILTER_PROTO_HDR_LEADSPC | MILTER_PROTO_SKIP      \
  }

static const AnswerCase answer_cases[] = {
  /* Postfix 3.x */
  { "postfix-v6", { 6, 0x1FF, 0x1FFFFF }, WANT_ALL, { 6, 0x1FF, 0x100480 } },
  /* an MTA that offers fewer protocol bits gets asked for fewer */
  { "v6-partial-offer", { 6, 0x1FF, 0x00047F }, WANT_ALL, { 6, 0x1FF, 0x000400 } },
  { "v6-no-setsymlist", { 6, 0x0FF, 0x1FFFFF }, WANT_ALL, { 6, 0x0FF, 0x100480 } },
  /* older MTAs: version-2 masks for actions; protocol bits per version */
  { "v5", { 5, 0x1FF, 0x1FFFFF }, WANT_ALL, { 5, 0x3F, 0x000 } },
  { "v4", { 4, 0x3F, 0x3FF }, { 0, 0x3F, 0x240 }, { 4, 0x3F, 0x240 } },
  { "v3", { 3, 0x3F, 0x3FF }, { 0, 0x3F, 0x340 }, { 3, 0x3F, 0x140 } },
  { "v2", { 2, 0x3F, 0x7F }, WANT_ALL, { 2, 0x3F, 0x00 } },
  { "v2-want-all", { 2, 0x3F, 0x7F }, { 0, 0x1FF, 0x1FFFFF }, { 2, 0x3F, 0x7F } },
  /* Postfix "2,no_header_reply": NR_HDR is not a version-2 bit for us */
  { "v2-no-header-reply", { 2, 0x3F, 0xFF }, WANT_ALL, { 2, 0x3F, 0x00 } },
  /* an empty offer means libmilter's version-1 defaults */
  { "v2-empty-offer", { 2, 0, 0 }, { 0, 0x1FF, 0x1FFFFF }, { 2, 0x0F, 0x3F } },
  /* a future MTA gets our version */
  { "v7", { 7, 0xFFFFFFFF, 0xFFFFFFFF }, { 0, 0x1FF, 0xFFFFFFFF }, { 6, 0x1FF, 0x1FFFFF } },
  /* we may ask for a lower version */
  { "want-v2", { 6, 0x1FF, 0x1FFFFF }, { 2, 0x1FF, 0x1FFFFF }, { 2, 0x3F, 0x7F } },
  { "want-nothing", { 6, 0x1FF, 0x1FFFFF }, { 0, 0, 0 }, { 6, 0, 0 } },
  { "v1", { 1, 0x0F, 0x3F }, WANT_ALL, { REFUSED } },
  { "v0", { 0, 0x1FF, 0x1FFFFF }, WANT_ALL, { REFUSED } },
};

static void
test_answer_case (gconstpointer data)
{
  const AnswerCase *c = data;
  g_autoptr (GError) error = NULL;
  MilterOptions got = { 0 };
  gboolean ok = milter_negotiate_answer (&c->offer, &c->want, &got, &error);

  if (c->answer.version == REFUSED)
    {
      g_assert_error (error, MILTER_ERROR, MILTER_ERROR_VERSION);
      g_assert_false (ok);
      return;
    }
  g_assert_no_error (error);
  g_assert_true (ok);
  g_assert_cmpuint (got.version, ==, c->answer.version);
  g_assert_cmphex (got.actions, ==, c->answer.actions);
  g_assert_cmphex (got.protocol, ==, c->answer.protocol);
  /* the invariants, whatever the case: never more than offered (after the
   * version-1 defaults) nor than the version defines */
  g_assert_cmpuint (got.version, <=, c->offer.version);
  g_assert_cmphex (got.actions & ~milter_version_actions (got.version), ==, 0);
  g_assert_cmphex (got.protocol & ~milter_version_protocol (got.version), ==, 0);
  if (c->offer.actions != 0)
    g_assert_cmphex (got.actions & ~c->offer.actions, ==, 0);
  if (c->offer.protocol != 0)
    g_assert_cmphex (got.protocol & ~c->offer.protocol, ==, 0);
}

/* MTA versions 2..6 with a full offer: the answered version is the MTA's
 * and each is accepted by our own connector-side check. */
static void
test_answer_versions (void)
{
  for (guint32 v = 2; v <= 6; v++)
    {
      const MilterOptions offer = { v, milter_version_actions (v), milter_version_protocol (v) };
      const MilterOptions want = { 0, MILTER_ACTIONS_ALL, MILTER_PROTOCOL_ALL };
      MilterOptions answer, effective;
      g_autoptr (GError) error = NULL;

      g_assert_true (milter_negotiate_answer (&offer, &want, &answer, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (answer.version, ==, v);
      g_assert_cmphex (answer.actions, ==, offer.actions);
      g_assert_cmphex (answer.protocol, ==, offer.protocol);
      g_assert_true (milter_negotiate_check_answer (&offer, &answer, &effective, &error));
      g_assert_no_error (error);
      g_assert_cmpmem (&effective, sizeof effective, &answer, sizeof answer);
    }
  g_assert_cmphex (milter_version_protocol (2), ==, 0x7F);
  g_assert_cmphex (milter_version_protocol (3), ==, 0x17F);
  g_assert_cmphex (milter_version_protocol (4), ==, 0x37F);
  g_assert_cmphex (milter_version_protocol (5), ==, 0x37F);
  g_assert_cmphex (milter_version_protocol (6), ==, 0x1FFFFF);
  g_assert_cmphex (milter_version_actions (5), ==, 0x3F);
  g_assert_cmphex (milter_version_actions (6), ==, 0x1FF);
}

typedef struct
{
  const char *name;
  MilterOptions answer;
  int error; /* -1: accepted */
  guint32 protocol;
} CheckCase;

/* our offer as the connector: Postfix's */
static const MilterOptions connector_offer = { 6, 0x1FF, 0x1FFFFF };

static const CheckCase check_cases[] = {
  { "opendkim", { 6, 0x111, 0x100702 }, -1, 0x100702 },
  { "pymilter", { 6, 0x1FF, 0x400 }, -1, 0x400 },
  { "v2-milter", { 2, 0x3F, 0x7F }, -1, 0x7F },
  { "internal-bits-dropped", { 6, 0x1, 0x30000010 }, -1, 0x10 },
  { "version-above-offer", { 7, 0x1, 0 }, MILTER_ERROR_VERSION },
  { "version-1", { 1, 0x1, 0 }, MILTER_ERROR_VERSION },
  { "version-0", { 0, 0x1, 0 }, MILTER_ERROR_VERSION },
  { "actions-above-offer", { 6, 0x200, 0 }, MILTER_ERROR_ACTIONS },
};

static void
test_check_case (gconstpointer data)
{
  const CheckCase *c = data;
  g_autoptr (GError) error = NULL;
  MilterOptions eff = { 0 };
  gboolean ok = milter_negotiate_check_answer (&connector_offer, &c->answer, &eff, &error);

  if (c->error != -1)
    {
      g_assert_error (error, MILTER_ERROR, c->error);
      g_assert_false (ok);
      return;
    }
  g_assert_no_error (error);
  g_assert_true (ok);
  g_assert_cmpuint (eff.version, ==, c->answer.version);
  g_assert_cmphex (eff.actions, ==, c->answer.actions);
  g_assert_cmphex (eff.protocol, ==, c->protocol);
}

/* A smaller offer: an answer with an NR_* bit we did not offer is honoured
 * (we must not wait for that reply), actions outside the offer are not. */
static void
test_check_partial_offer (void)
{
  const MilterOptions offer = { 2, 0x3F, 0x7F };
  const MilterOptions nr_hdr = { 2, 0x01, 0x80 };
  const MilterOptions chgfrom = { 2, 0x40, 0 };
  const MilterOptions v6 = { 6, 0x01, 0 };
  MilterOptions eff;
  GError *error = NULL;

  g_assert_true (milter_negotiate_check_answer (&offer, &nr_hdr, &eff, &error));
  g_assert_no_error (error);
  g_assert_cmphex (eff.protocol, ==, 0x80);
  g_assert_false (milter_protocol_expects_reply (&eff, MILTER_CMD_HEADER));
  g_assert_false (milter_negotiate_check_answer (&offer, &chgfrom, &eff, &error));
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_ACTIONS);
  g_clear_error (&error);
  g_assert_false (milter_negotiate_check_answer (&offer, &v6, &eff, &error));
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_VERSION);
  g_clear_error (&error);
}

typedef struct
{
  MilterCommand cmd;
  gboolean sent;
  gboolean replied;
} StepCase;

static void
check_steps (const MilterOptions *neg, const StepCase *steps, gsize n)
{
  for (gsize i = 0; i < n; i++)
    {
      g_test_message ("command %c", steps[i].cmd);
      g_assert_cmpint (milter_protocol_sends (neg, steps[i].cmd), ==, steps[i].sent);
      g_assert_cmpint (milter_protocol_expects_reply (neg, steps[i].cmd), ==, steps[i].replied);
    }
}

static void
test_steps (void)
{
  /* v6, nothing negotiated away */
  const MilterOptions all = { 6, 0x1FF, 0 };
  static const StepCase all_steps[] = {
    { MILTER_CMD_OPTNEG, TRUE, TRUE },   { MILTER_CMD_MACRO, TRUE, FALSE },
    { MILTER_CMD_CONNECT, TRUE, TRUE },  { MILTER_CMD_HELO, TRUE, TRUE },
    { MILTER_CMD_MAIL, TRUE, TRUE },     { MILTER_CMD_RCPT, TRUE, TRUE },
    { MILTER_CMD_DATA, TRUE, TRUE },     { MILTER_CMD_HEADER, TRUE, TRUE },
    { MILTER_CMD_EOH, TRUE, TRUE },      { MILTER_CMD_BODY, TRUE, TRUE },
    { MILTER_CMD_EOB, TRUE, TRUE },      { MILTER_CMD_UNKNOWN, TRUE, TRUE },
    { MILTER_CMD_ABORT, TRUE, FALSE },   { MILTER_CMD_QUIT, TRUE, FALSE },
    { MILTER_CMD_QUIT_NC, TRUE, FALSE },
  };
  /* opendkim's 0x100702: NOHELO, NOUNKNOWN, NODATA, SKIP, HDR_LEADSPC */
  const MilterOptions dkim = { 6, 0x111, 0x100702 };
  static const StepCase dkim_steps[] = {
    { MILTER_CMD_HELO, FALSE, FALSE },    { MILTER_CMD_DATA, FALSE, FALSE },
    { MILTER_CMD_UNKNOWN, FALSE, FALSE }, { MILTER_CMD_HEADER, TRUE, TRUE },
    { MILTER_CMD_EOB, TRUE, TRUE },
  };
  /* every NR_* bit */
  const MilterOptions nr = { 6, 0, 0x0FF080 };
  static const StepCase nr_steps[] = {
    { MILTER_CMD_CONNECT, TRUE, FALSE }, { MILTER_CMD_HELO, TRUE, FALSE },
    { MILTER_CMD_MAIL, TRUE, FALSE },    { MILTER_CMD_RCPT, TRUE, FALSE },
    { MILTER_CMD_DATA, TRUE, FALSE },    { MILTER_CMD_HEADER, TRUE, FALSE },
    { MILTER_CMD_EOH, TRUE, FALSE },     { MILTER_CMD_BODY, TRUE, FALSE },
    { MILTER_CMD_UNKNOWN, TRUE, FALSE }, { MILTER_CMD_EOB, TRUE, TRUE },
    { MILTER_CMD_OPTNEG, TRUE, TRUE },
  };
  /* version 2 has no DATA and no UNKNOWN; version 3 has UNKNOWN */
  const MilterOptions v2 = { 2, 0x3F, 0 };
  const MilterOptions v3 = { 3, 0x3F, 0 };
  static const StepCase v2_steps[] = {
    { MILTER_CMD_DATA, FALSE, FALSE },
    { MILTER_CMD_UNKNOWN, FALSE, FALSE },
    { MILTER_CMD_EOH, TRUE, TRUE },
  };
  static const StepCase v3_steps[] = {
    { MILTER_CMD_DATA, FALSE, FALSE },
    { MILTER_CMD_UNKNOWN, TRUE, TRUE },
  };

  check_steps (&all, all_steps, G_N_ELEMENTS (all_steps));
  check_steps (&dkim, dkim_steps, G_N_ELEMENTS (dkim_steps));
  check_steps (&nr, nr_steps, G_N_ELEMENTS (nr_steps));
  check_steps (&v2, v2_steps, G_N_ELEMENTS (v2_steps));
  check_steps (&v3, v3_steps, G_N_ELEMENTS (v3_steps));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (answer_cases); i++)
    {
      g_autofree char *path
          = g_strdup_printf ("/proto/milter/negotiate/answer/%s", answer_cases[i].name);

      g_test_add_data_func (path, &answer_cases[i], test_answer_case);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (check_cases); i++)
    {
      g_autofree char *path
          = g_strdup_printf ("/proto/milter/negotiate/check/%s", check_cases[i].name);

      g_test_add_data_func (path, &check_cases[i], test_check_case);
    }
  g_test_add_func ("/proto/milter/negotiate/answer/mta-versions", test_answer_versions);
  g_test_add_func ("/proto/milter/negotiate/check/partial-offer", test_check_partial_offer);
  g_test_add_func ("/proto/milter/negotiate/steps", test_steps);
  return g_test_run ();
}
