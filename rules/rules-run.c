/* SPDX-License-Identifier: MIT
 *
 * rules-run.c — the resumable cursor that runs one stage of one transaction
 * (RulesRun), and the per-transaction `set` variables (RulesState).
 *
 * Contract (see rules.h): rules run top to bottom; a rule whose condition is
 * false is skipped; a matching rule's actions run left to right.  A terminal
 * action decides the stage: the actions after it in the same rule still run
 * (`quarantine "virus", log warning ...`), then the stage ends
 * (RULES_STEP_DONE).  The checker refuses a second deciding action or a
 * `call` after the first in one rule.  `call` suspends the run
 * (RULES_STEP_CALL) and the next step resumes with the action after it.  An
 * unanswered asynchronous query suspends it too (RULES_STEP_WAIT) and the
 * next step re-evaluates the same condition (or action argument) from the
 * start.  A `deliver` action ends the (delivery) stage with accept once its
 * effect is handed over.  `greylist` asks the host (RulesHostVTable.state)
 * and decides tempfail only while the greylisting triplet has not passed;
 * else it is a no-op.  `continue` is a no-op action (it does not end the stage); a stage
 * no rule ended yields RULES_VERDICT_CONTINUE.  Once DONE, further steps
 * return the same result.
 *
 * Allocation: the common path (conditions over host values, list lookups)
 * allocates nothing; computed strings use the run's arena, reset per rule.
 */
#include "rules/rules-private.h"

#include <string.h>

/* ---- state ---------------------------------------------------------------- */

RulesState *
rules_state_new (const RulesProgram *program)
{
  RulesState *st;

  g_return_val_if_fail (program != NULL, NULL);
  st = g_new0 (RulesState, 1);
  st->prog = rules_program_ref ((RulesProgram *)program);
  st->n = program->varnames->len - 1;
  st->vals = g_new0 (RulesValue, st->n + 1);
  st->owned = g_new0 (gpointer, st->n + 1);
  return st;
}

static void
clear_slot (RulesState *st, guint i)
{
  if (st->vals[i].type == RULES_TYPE_STRV)
    g_strfreev (st->owned[i]);
  else
    g_free (st->owned[i]);
  st->owned[i] = NULL;
  memset (&st->vals[i], 0, sizeof st->vals[i]);
}

void
rules_state_reset (RulesState *st)
{
  g_return_if_fail (st != NULL);
  for (guint i = 0; i < st->n; i++)
    clear_slot (st, i);
}

void
rules_state_free (RulesState *st)
{
  if (st == NULL)
    return;
  rules_state_reset (st);
  g_free (st->vals);
  g_free (st->owned);
  rules_program_unref (st->prog);
  g_free (st);
}

const RulesValue *
rules_state_get (const RulesState *st, const char *name)
{
  g_return_val_if_fail (st != NULL && name != NULL, NULL);
  for (guint i = 0; i < st->n; i++)
    if (strcmp (st->prog->varnames->pdata[i], name) == 0)
      return st->vals[i].type == RULES_TYPE_NONE ? NULL : &st->vals[i];
  return NULL;
}

/* Stores an owned copy: the value may point into the run's arena or the host. */
static void
state_store (RulesState *st, guint i, const RulesValue *v)
{
  RulesValue copy = *v;

  if (i >= st->n)
    return;
  clear_slot (st, i);
  if (v->type == RULES_TYPE_STRING)
    {
      char *s = g_strndup (v->s.ptr, v->s.len);
      st->owned[i] = s;
      copy.s.ptr = s;
    }
  else if (v->type == RULES_TYPE_STRV)
    {
      char **sv = g_new0 (char *, v->strv.n + 1);
      for (gsize k = 0; k < v->strv.n; k++)
        sv[k] = g_strdup (v->strv.v[k]);
      st->owned[i] = sv;
      copy.strv.v = (const char *const *)sv;
    }
  st->vals[i] = copy;
}

/* ---- run ------------------------------------------------------------------ */

RulesRun *
rules_run_new (RulesProgram *program, RulesState *state, RulesStage stage)
{
  RulesRun *run;

  g_return_val_if_fail (program != NULL && state != NULL, NULL);
  g_return_val_if_fail ((guint)stage < RULES_N_STAGES, NULL);
  run = g_new0 (RulesRun, 1);
  run->prog = rules_program_ref (program);
  run->state = state;
  run->stage = stage;
  return run;
}

void
rules_run_free (RulesRun *run)
{
  if (run == NULL)
    return;
  rules_arena_clear (&run->arena);
  if (run->scratch)
    g_string_chunk_free (run->scratch);
  rules_program_unref (run->prog);
  g_free (run);
}

const char *
rules_run_scratch_strdup (RulesRun *run, const char *s, gssize len)
{
  g_return_val_if_fail (run != NULL, NULL);
  if (s == NULL)
    return NULL;
  if (run->scratch == NULL)
    run->scratch = g_string_chunk_new (1024);
  return g_string_chunk_insert_len (run->scratch, s, len);
}

static gboolean
is_deliver (RulesEffectKind kind)
{
  return kind == RULES_EFFECT_DELIVER_MAILDIR || kind == RULES_EFFECT_DELIVER_MBOX
         || kind == RULES_EFFECT_DELIVER_RELAY || kind == RULES_EFFECT_DELIVER_MX;
}

static RulesStepStatus
finish (RulesRun *run, const RulesRule *r, const RulesAction *a, RulesStep *step)
{
  static const RulesVerdict map[] = {
    [RULES_ACT_ACCEPT] = RULES_VERDICT_ACCEPT,
    [RULES_ACT_ACCEPT_ALL] = RULES_VERDICT_ACCEPT_ALL,
    [RULES_ACT_DISCARD] = RULES_VERDICT_DISCARD,
    [RULES_ACT_REJECT] = RULES_VERDICT_REJECT,
    [RULES_ACT_TEMPFAIL] = RULES_VERDICT_TEMPFAIL,
    [RULES_ACT_QUARANTINE] = RULES_VERDICT_QUARANTINE,
    [RULES_ACT_GREYLIST] = RULES_VERDICT_TEMPFAIL,
  };
  RulesStep *res = &run->result;

  memset (res, 0, sizeof *res);
  res->status = RULES_STEP_DONE;
  /* A `deliver` action is an effect that also decides the delivery stage. */
  if (a && a->kind == RULES_ACT_EFFECT)
    res->verdict = RULES_VERDICT_ACCEPT;
  else
    res->verdict = a ? map[a->kind] : RULES_VERDICT_CONTINUE;
  if (a)
    {
      res->code = a->code;
      res->enhanced = a->enhanced;
      res->text = a->text;
      res->rule = r->name;
      res->greylist = a->kind == RULES_ACT_GREYLIST;
      if (a->kind == RULES_ACT_QUARANTINE)
        res->quarantine = a->name;
    }
  run->done = TRUE;
  *step = *res;
  return RULES_STEP_DONE;
}

/* Runs a non-terminal action; FALSE if it must wait for a query. */
static gboolean
do_action (RulesRun *run, const RulesRule *r, const RulesAction *a)
{
  RulesValue v = { 0 };
  RulesEffect e = { 0 };

  run->wait = FALSE;
  if (a->expr)
    {
      rules_eval (run, a->expr, &v);
      if (run->wait)
        return FALSE;
    }
  if (a->kind == RULES_ACT_SET)
    {
      state_store (run->state, (guint)a->index, &v);
      return TRUE;
    }
  if (a->kind != RULES_ACT_EFFECT)
    return TRUE;
  e.kind = a->effect;
  e.rule = r->name;
  e.name = a->name;
  e.level = a->level;
  if (a->expr)
    {
      const char *p;
      gsize len;
      rules_value_to_string (run, &v, &p, &len);
      /* The host gets a NUL-terminated copy whatever the value's origin. */
      e.value = rules_arena_strndup (&run->arena, p, len);
      e.value_len = len;
    }
  if (run->vt->effect)
    run->vt->effect (run->host, &e);
  return TRUE;
}

RulesStepStatus
rules_run_step (RulesRun *run, const RulesHostVTable *vtable, gpointer host, RulesStep *step)
{
  GPtrArray *rules;

  g_return_val_if_fail (run != NULL && vtable != NULL && step != NULL, RULES_STEP_DONE);
  memset (step, 0, sizeof *step);
  if (run->done)
    {
      *step = run->result;
      return RULES_STEP_DONE;
    }
  run->vt = vtable;
  run->host = host;
  rules = run->prog->rules[run->stage];
  while (run->rule < rules->len)
    {
      const RulesRule *r = rules->pdata[run->rule];

      rules_arena_reset (&run->arena);
      if (!run->in_actions)
        {
          if (r->cond)
            {
              RulesValue v;
              run->wait = FALSE;
              rules_eval (run, r->cond, &v);
              if (run->wait)
                {
                  step->status = RULES_STEP_WAIT;
                  return RULES_STEP_WAIT;
                }
              if (!rules_value_truthy (&v))
                {
                  run->rule++;
                  continue;
                }
            }
          if (vtable->matched)
            vtable->matched (host, r->name);
          run->in_actions = TRUE;
          run->action = 0;
        }
      while (run->action < r->n_actions)
        {
          const RulesAction *a = &r->actions[run->action];
          switch (a->kind)
            {
              case RULES_ACT_ACCEPT:
              case RULES_ACT_ACCEPT_ALL:
              case RULES_ACT_DISCARD:
              case RULES_ACT_REJECT:
              case RULES_ACT_TEMPFAIL:
              case RULES_ACT_QUARANTINE:
                /* The verdict is made; the rule's remaining actions (a log
                 * line, a header) still run before the stage ends. */
                run->decided = a;
                break;
              case RULES_ACT_CALL:
                run->action++;
                step->status = RULES_STEP_CALL;
                step->calls = (const char *const *)a->calls;
                step->n_calls = a->n_calls;
                step->call_rule = r->name;
                return RULES_STEP_CALL;
              case RULES_ACT_CONTINUE:
                break;
              case RULES_ACT_GREYLIST:
                {
                  /* Decides (tempfail) only while the triplet has not passed. */
                  RulesValue g = { 0 };
                  run->wait = FALSE;
                  rules_eval_greylisted (run, a, &g);
                  if (run->wait)
                    {
                      step->status = RULES_STEP_WAIT;
                      return RULES_STEP_WAIT;
                    }
                  if (rules_value_truthy (&g))
                    run->decided = a;
                  break;
                }
              default:
                if (!do_action (run, r, a))
                  {
                    step->status = RULES_STEP_WAIT;
                    return RULES_STEP_WAIT;
                  }
                /* The first `deliver` that runs routes the recipient: it decides
                 * the delivery stage, so a later catch-all rule ("rest =>
                 * deliver relay ...") applies only to what nothing else took. */
                if (a->kind == RULES_ACT_EFFECT && is_deliver (a->effect))
                  run->decided = a;
                break;
            }
          run->action++;
        }
      if (run->decided)
        return finish (run, r, run->decided, step);
      run->in_actions = FALSE;
      run->rule++;
    }
  return finish (run, NULL, NULL, step);
}
