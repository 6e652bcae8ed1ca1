/* SPDX-License-Identifier: MIT
 *
 * fuzz-rules.c — libFuzzer target for rules/: loads the input as a rule file
 * (with the connectors clamav, rspamd, spf, greylist and a catch-all
 * connector declared); if it loads, explains it and evaluates every stage
 * with a host that answers every value with a fixed, plausible value, every
 * query after one WAIT, and ignores effects.
 */
#include "rules/rules.h"

#include <string.h>

#define FUZZ_MAX_INPUT (64 * 1024) /* larger inputs only slow the fuzzer down */
#define FUZZ_MAX_STEPS 10000

static const RulesFieldDecl clamav_fields[] = {
  { "infected", RULES_TYPE_BOOL, FALSE },
  { "name", RULES_TYPE_STRING, FALSE },
};
static const RulesFieldDecl rspamd_fields[] = {
  { "score", RULES_TYPE_FLOAT, FALSE },
  { "action", RULES_TYPE_STRING, FALSE },
  { "symbols", RULES_TYPE_STRV, FALSE },
};
static const RulesConnectorDecl connectors[] = {
  { "clamav", clamav_fields, G_N_ELEMENTS (clamav_fields), FALSE },
  { "rspamd", rspamd_fields, G_N_ELEMENTS (rspamd_fields), FALSE },
  { "spf", NULL, 0, FALSE },
  { "greylist", NULL, 0, FALSE },
  { "any", NULL, 0, TRUE },
};
static const char *const quarantines[] = { "virus", NULL };
static const char *const exports[] = { "archive", NULL };
static const RulesLoadOptions options
    = { connectors, G_N_ELEMENTS (connectors), quarantines, exports };
static const char *const strv[] = { "a@example.com", "B@Example.org", NULL };

static void
get (gpointer host, const RulesRef *ref, const char *arg, RulesValue *out)
{
  switch (ref->var)
    {
      case RULES_VAR_CLIENT_IP:
      case RULES_VAR_SERVER_IP:
        out->type = RULES_TYPE_IP;
        rules_ip_parse ("192.0.2.1", 9, &out->ip);
        break;
      case RULES_VAR_RCPTS:
      case RULES_VAR_HEADERS:
      case RULES_VAR_MIME_ERRORS:
        rules_value_set_strv (out, strv, 2, TRUE);
        break;
      case RULES_VAR_CLIENT_PORT:
      case RULES_VAR_MESSAGE_SIZE:
      case RULES_VAR_RCPT_COUNT:
        rules_value_set_int (out, 25);
        break;
      case RULES_VAR_CONNECTOR:
        if (strcmp (ref->field, "score") == 0)
          rules_value_set_float (out, 5.5);
        else
          rules_value_set_string (out, "x", 1, FALSE);
        break;
      default:
        rules_value_set_string (out, "Mail.Example.com", -1, TRUE);
        break;
    }
}

static gboolean
query (gpointer host, RulesQuery q, const char *name, RulesValue *out)
{
  guint *asked = host;
  if ((*asked)++ % 2 == 0)
    return FALSE;
  rules_value_set_bool (out, strlen (name) % 2);
  return TRUE;
}

static void
effect (gpointer host, const RulesEffect *e)
{
  (void)e;
}

static const RulesHostVTable vtable = { get, query, effect, NULL };

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (RulesProgram) prog = NULL;
  g_autofree char *explained = NULL;
  g_autoptr (RulesState) state = NULL;

  if (size > FUZZ_MAX_INPUT)
    return 0;
  text = g_strndup ((const char *)data, size);
  prog = rules_program_load_string ("fuzz.vsl", text, &options, &error);
  if (prog == NULL)
    {
      g_assert (error != NULL && error->domain == RULES_ERROR);
      return 0;
    }
  explained = rules_program_explain (prog);
  state = rules_state_new (prog);
  for (guint s = 0; s < RULES_N_STAGES; s++)
    {
      g_autoptr (RulesRun) run = rules_run_new (prog, state, (RulesStage)s);
      RulesStep step;
      guint asked = 0;
      for (guint n = 0; n < FUZZ_MAX_STEPS; n++)
        if (rules_run_step (run, &vtable, &asked, &step) == RULES_STEP_DONE)
          break;
    }
  return 0;
}
