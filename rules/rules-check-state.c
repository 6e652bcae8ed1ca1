/* SPDX-License-Identifier: MIT
 *
 * rules-check-state.c — load-time checks of the shared-state checks:
 * rate(key, N, PERIOD), concurrency(key), greylisted() and the `greylist`
 * action.
 *
 * Contract (docs/rules.md "Rate limits, concurrency, greylisting"):
 *  - rate() and concurrency() take a key that is a string (or an address);
 *    rate's N and PERIOD are constants (a literal or a let), 1 <= N <=
 *    RULES_MAX_RATE_LIMIT and 1 s <= PERIOD <= RULES_MAX_RATE_PERIOD,
 *    because the backends size and expire the key by them;
 *  - rate() is available from connect on, in every stage; concurrency()
 *    counts open SMTP sessions, so connect to data (not postq/delivery,
 *    which run after the session);
 *  - greylisting needs a sender and a recipient: greylisted() and `greylist`
 *    only in rcpt (the recipient being checked) and data (every accepted
 *    recipient).
 * Errors: RULES_ERROR_TYPE for arguments, RULES_ERROR_INVALID for
 * out-of-range constants, RULES_ERROR_STAGE for stages.
 */
#include "rules/rules-private.h"

#define err rules_check_fail

static gboolean
want_key (RulesCheck *c, RulesNode *n, const char *name)
{
  RulesType t = n->args[0]->type;

  if (t == RULES_TYPE_NONE || t == RULES_TYPE_STRING || t == RULES_TYPE_IP)
    return TRUE;
  return err (c, n->args[0], RULES_ERROR_TYPE, "the key of '%s' must be a string, got %s", name,
              rules_type_name (t));
}

/* A constant integer argument in [min, max]. */
static gboolean
want_const_int (RulesCheck *c, RulesNode *arg, const char *what, gint64 min, gint64 max)
{
  if (arg->kind != RULES_NODE_LIT || arg->lit.type != RULES_TYPE_INT)
    return err (c, arg, RULES_ERROR_TYPE, "%s must be a constant number, got %s", what,
                arg->kind == RULES_NODE_LIT ? rules_type_name (arg->lit.type) : "an expression");
  if (arg->lit.i < min || arg->lit.i > max)
    return err (c, arg, RULES_ERROR_INVALID,
                "%s must be between %" G_GINT64_FORMAT " and %" G_GINT64_FORMAT
                ", got %" G_GINT64_FORMAT,
                what, min, max, arg->lit.i);
  return TRUE;
}

gboolean
rules_check_greylist_action (RulesCheck *c, const RulesNode *pos, RulesStage stage)
{
  c->prog->state[RULES_STATE_GREYLISTED] = TRUE;
  if (stage != RULES_STAGE_RCPT && stage != RULES_STAGE_DATA)
    return err (c, pos, RULES_ERROR_STAGE,
                "'greylist' needs a sender and a recipient: only in rcpt and data, not in %s",
                rules_stage_name (stage));
  return TRUE;
}

gboolean
rules_check_state_call (RulesCheck *c, RulesNode *n, const char *name)
{
  switch ((RulesFunc)n->index)
    {
      case RULES_FN_RATE:
        c->prog->state[RULES_STATE_RATE] = TRUE;
        if (!want_key (c, n, name))
          return FALSE;
        if (!want_const_int (c, n->args[1], "the limit of 'rate'", 1, RULES_MAX_RATE_LIMIT))
          return FALSE;
        return want_const_int (c, n->args[2], "the period of 'rate' (a duration)", 1,
                               RULES_MAX_RATE_PERIOD);
      case RULES_FN_CONCURRENCY:
        c->prog->state[RULES_STATE_CONCURRENCY] = TRUE;
        if (c->stage > RULES_STAGE_DATA)
          return err (c, n, RULES_ERROR_STAGE,
                      "'concurrency' counts open SMTP sessions: not available in %s",
                      rules_stage_name (c->stage));
        return want_key (c, n, name);
      case RULES_FN_GREYLISTED:
        c->prog->state[RULES_STATE_GREYLISTED] = TRUE;
        if (c->stage != RULES_STAGE_RCPT && c->stage != RULES_STAGE_DATA)
          return err (c, n, RULES_ERROR_STAGE,
                      "'greylisted' needs a sender and a recipient: only in rcpt and data, not "
                      "in %s",
                      rules_stage_name (c->stage));
        return TRUE;
      default:
        g_return_val_if_reached (FALSE);
    }
}
