/* SPDX-License-Identifier: MIT
 *
 * rules-check-actions.c — the checker's driver: definitions (duplicates,
 * let folding in order, literal lists), `set` variables, every rule's
 * condition and actions (stage availability, reply codes, header names,
 * connector / quarantine / export names), and the per-stage tables the
 * engine asks for (rules_program_calls).
 *
 * Contract: see rules-check.c; the first error wins.
 */
#include "rules/rules-private.h"

#include "proto/mail/mail-reply.h"

#include <string.h>

#define err rules_check_fail

static gboolean
valid_header_name (const char *s)
{
  if (s == NULL || *s == '\0')
    return FALSE;
  /* RFC 5322 §2.2: printable US-ASCII except colon. */
  for (; *s; s++)
    if ((guchar)*s < 33 || (guchar)*s > 126 || *s == ':')
      return FALSE;
  return TRUE;
}

static gboolean
in_strv (const char *const *v, const char *name)
{
  return v == NULL || g_strv_contains (v, name);
}

static gboolean
check_reply (RulesCheck *c, const RulesNode *pos, const RulesAction *a)
{
  char want = a->kind == RULES_ACT_REJECT ? '5' : '4';
  const char *verb = a->kind == RULES_ACT_REJECT     ? "reject"
                     : a->kind == RULES_ACT_GREYLIST ? "greylist"
                                                     : "tempfail";

  if (a->code == 0)
    return TRUE;
  if (a->code / 100 != (guint)(want - '0'))
    return err (c, pos, RULES_ERROR_INVALID, "%s needs a %cxx reply code, got %u", verb, want,
                a->code);
  if (a->enhanced)
    {
      g_auto (GStrv) parts = g_strsplit (a->enhanced, ".", 3);
      guint64 sub = 0, det = 0;
      if (parts[0][0] != want || parts[0][1] != '\0')
        return err (c, pos, RULES_ERROR_INVALID,
                    "enhanced status code %s does not match reply code %u (class must be %c)",
                    a->enhanced, a->code, want);
      if (!g_ascii_string_to_unsigned (parts[1], 10, 0, 999, &sub, NULL)
          || !g_ascii_string_to_unsigned (parts[2], 10, 0, 999, &det, NULL))
        return err (c, pos, RULES_ERROR_INVALID, "invalid enhanced status code %s", a->enhanced);
    }
  /* The text may span lines ("a\nb" → a multi-line reply); proto/mail
   * checks the rest: printable ASCII, line length, at most 32 lines. */
  if (a->text)
    {
      g_autoptr (GError) reply_error = NULL;
      g_autoptr (MailReply) reply = mail_reply_new (a->code, a->enhanced, a->text, &reply_error);

      if (reply == NULL)
        return err (c, pos, RULES_ERROR_INVALID, "invalid reply text: %s", reply_error->message);
    }
  return TRUE;
}

static void
add_call (RulesProgram *prog, RulesStage stage, const char *name)
{
  GPtrArray *calls = prog->calls[stage];
  for (guint i = 0; i < calls->len; i++)
    if (strcmp (calls->pdata[i], name) == 0)
      return;
  g_ptr_array_add (calls, g_strdup (name));
}

/* Record what the program can do (rules_program_has_effect / _verdict). */
static void
note_action (RulesProgram *prog, const RulesAction *a)
{
  static const RulesVerdict verdict_of[] = {
    [RULES_ACT_ACCEPT] = RULES_VERDICT_ACCEPT,
    [RULES_ACT_ACCEPT_ALL] = RULES_VERDICT_ACCEPT_ALL,
    [RULES_ACT_DISCARD] = RULES_VERDICT_DISCARD,
    [RULES_ACT_REJECT] = RULES_VERDICT_REJECT,
    [RULES_ACT_TEMPFAIL] = RULES_VERDICT_TEMPFAIL,
    [RULES_ACT_QUARANTINE] = RULES_VERDICT_QUARANTINE,
  };

  switch (a->kind)
    {
      case RULES_ACT_ACCEPT:
      case RULES_ACT_ACCEPT_ALL:
      case RULES_ACT_DISCARD:
      case RULES_ACT_REJECT:
      case RULES_ACT_TEMPFAIL:
      case RULES_ACT_QUARANTINE:
        prog->verdicts[verdict_of[a->kind]] = TRUE;
        break;
      case RULES_ACT_GREYLIST:
        prog->verdicts[RULES_VERDICT_TEMPFAIL] = TRUE;
        break;
      case RULES_ACT_EFFECT:
        prog->effects[a->effect] = TRUE;
        break;
      default:
        break;
    }
}

static gboolean
check_action (RulesCheck *c, RulesRule *r, RulesAction *a)
{
  RulesNode pos = { .file = a->file, .line = a->line, .col = a->col };
  RulesStage st = r->stage;

  note_action (c->prog, a);
  switch (a->kind)
    {
      case RULES_ACT_REJECT:
      case RULES_ACT_TEMPFAIL:
        return check_reply (c, &pos, a);
      case RULES_ACT_GREYLIST:
        return rules_check_greylist_action (c, &pos, st) && check_reply (c, &pos, a);
      case RULES_ACT_QUARANTINE:
        if (st == RULES_STAGE_DELIVERY)
          return err (c, &pos, RULES_ERROR_STAGE, "'quarantine' is not available in delivery");
        if (c->opt && !in_strv (c->opt->quarantines, a->name))
          return err (c, &pos, RULES_ERROR_UNKNOWN, "unknown quarantine '%s'", a->name);
        return TRUE;
      case RULES_ACT_CALL:
        for (guint i = 0; i < a->n_calls; i++)
          {
            gboolean found = FALSE;
            for (gsize k = 0; c->opt && k < c->opt->n_connectors; k++)
              found |= g_strcmp0 (c->opt->connectors[k].name, a->calls[i]) == 0;
            if (!found)
              return err (c, &pos, RULES_ERROR_UNKNOWN, "unknown connector '%s'", a->calls[i]);
            add_call (c->prog, st, a->calls[i]);
          }
        c->prog->reads[RULES_VAR_CONNECTOR] = TRUE;
        return TRUE;
      case RULES_ACT_SET:
        a->index = GPOINTER_TO_INT (g_hash_table_lookup (c->vars, a->name)) - 1;
        return rules_check_expr (c, a->expr);
      case RULES_ACT_EFFECT:
        break;
      default:
        return TRUE;
    }

  switch (a->effect)
    {
      case RULES_EFFECT_ADD_HEADER:
      case RULES_EFFECT_INSERT_HEADER:
      case RULES_EFFECT_SET_HEADER:
      case RULES_EFFECT_REMOVE_HEADER:
        if (!valid_header_name (a->name))
          return err (c, &pos, RULES_ERROR_INVALID,
                      "invalid header name '%s' (printable ASCII without ':' or spaces)", a->name);
        break;
      case RULES_EFFECT_EXPORT_JSON:
      case RULES_EFFECT_EXPORT_RAW:
        if (st < RULES_STAGE_DATA)
          return err (c, &pos, RULES_ERROR_STAGE,
                      "'export' is not available in %s (only in data, postq, delivery)",
                      rules_stage_name (st));
        if (c->opt && !in_strv (c->opt->exports, a->name))
          return err (c, &pos, RULES_ERROR_UNKNOWN, "unknown export '%s'", a->name);
        break;
      case RULES_EFFECT_DELIVER_MAILDIR:
      case RULES_EFFECT_DELIVER_MBOX:
      case RULES_EFFECT_DELIVER_RELAY:
      case RULES_EFFECT_DELIVER_MX:
        /* postq routes the whole message (vsmtpd keeps it in the envelope);
         * delivery routes each recipient */
        if (st != RULES_STAGE_DELIVERY && st != RULES_STAGE_POSTQ)
          return err (c, &pos, RULES_ERROR_STAGE,
                      "'deliver' is only available in postq and delivery, not in %s",
                      rules_stage_name (st));
        break;
      default:
        break;
    }
  if (a->expr)
    {
      if (!rules_check_expr (c, a->expr))
        return FALSE;
      if (a->expr->type == RULES_TYPE_REGEX || a->expr->type == RULES_TYPE_LIST)
        return err (c, a->expr, RULES_ERROR_TYPE, "action value must be a string, got %s",
                    rules_type_name (a->expr->type));
    }
  return TRUE;
}

static const char *
deciding_action_name (const RulesAction *a)
{
  switch (a->kind)
    {
      case RULES_ACT_ACCEPT:
        return "accept";
      case RULES_ACT_ACCEPT_ALL:
        return "accept_all";
      case RULES_ACT_DISCARD:
        return "discard";
      case RULES_ACT_REJECT:
        return "reject";
      case RULES_ACT_TEMPFAIL:
        return "tempfail";
      case RULES_ACT_QUARANTINE:
        return "quarantine";
      case RULES_ACT_GREYLIST:
        return "greylist";
      case RULES_ACT_EFFECT:
        if (a->effect == RULES_EFFECT_DELIVER_MAILDIR || a->effect == RULES_EFFECT_DELIVER_MBOX
            || a->effect == RULES_EFFECT_DELIVER_RELAY || a->effect == RULES_EFFECT_DELIVER_MX)
          return "deliver";
        return NULL;
      default:
        return NULL;
    }
}

/* A rule decides its stage at most once: after a verdict (or a deliver)
 * only non-deciding actions may follow, and no `call`, whose answer could
 * no longer change anything. */
static gboolean
check_rule_order (RulesCheck *c, const RulesRule *r)
{
  const char *decided = NULL;

  for (guint k = 0; k < r->n_actions; k++)
    {
      const RulesAction *a = &r->actions[k];
      RulesNode pos = { .file = a->file, .line = a->line, .col = a->col };
      const char *name = deciding_action_name (a);

      if (decided && (name || a->kind == RULES_ACT_CALL))
        return err (c, &pos, RULES_ERROR_INVALID,
                    "'%s' after '%s' in the same rule: the rule has already decided",
                    name ? name : "call", decided);
      if (name)
        decided = name;
    }
  return TRUE;
}

static gboolean
check_defs (RulesCheck *c)
{
  RulesProgram *prog = c->prog;

  for (guint i = 0; i < prog->listdefs->len; i++)
    {
      RulesListDef *d = prog->listdefs->pdata[i];
      RulesListDef *old = g_hash_table_lookup (c->lists, d->name);
      RulesNode pos = { .file = d->file, .line = d->line, .col = d->col };
      if (old)
        return err (c, &pos, RULES_ERROR_INVALID, "list '%s' is already defined at %s:%u:%u",
                    d->name, old->file, old->line, old->col);
      g_hash_table_insert (c->lists, d->name, d);
    }
  for (guint i = 0; i < prog->lets->len; i++)
    {
      RulesLet *let = prog->lets->pdata[i];
      RulesNode pos = { .file = let->file, .line = let->line, .col = let->col };
      RulesLet *old = g_hash_table_lookup (c->lets, let->name);
      RulesListDef *d = g_hash_table_lookup (c->lists, let->name);
      if (old)
        return err (c, &pos, RULES_ERROR_INVALID, "constant '%s' is already defined at %s:%u:%u",
                    let->name, old->file, old->line, old->col);
      if (d)
        return err (c, &pos, RULES_ERROR_INVALID, "'%s' is already defined as a list at %s:%u:%u",
                    let->name, d->file, d->line, d->col);
      c->let = let->name;
      c->stage = RULES_STAGE_CONNECT;
      if (!rules_check_expr (c, let->expr))
        return FALSE;
      if (!rules_check_is_const (let->expr))
        return err (c, let->expr, RULES_ERROR_INVALID, "let '%s' must be a constant", let->name);
      if (let->expr->kind != RULES_NODE_LIT && !rules_eval_fold (prog, let->expr))
        return err (c, let->expr, RULES_ERROR_INVALID, "let '%s' must be a constant", let->name);
      c->let = NULL;
      g_hash_table_insert (c->lets, let->name, let);
    }
  /* Literal lists nobody referenced are still checked and compiled. */
  for (guint i = 0; i < prog->listdefs->len; i++)
    {
      RulesListDef *d = prog->listdefs->pdata[i];
      if (d->list == NULL)
        {
          for (guint k = 0; k < d->expr->n_args; k++)
            if (!rules_check_expr (c, d->expr->args[k]))
              return FALSE;
          if (!rules_check_fold_list (c, d->expr, d->name))
            return FALSE;
          d->list = (RulesList *)d->expr->lit.list;
        }
    }
  return TRUE;
}

gboolean
rules_check (RulesProgram *prog, const RulesLoadOptions *options, GError **error)
{
  g_autoptr (GHashTable) lets = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) lists = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) vars = g_hash_table_new (g_str_hash, g_str_equal);
  RulesCheck c = { prog, options, lets, lists, vars, NULL, RULES_STAGE_CONNECT, error };

  /* `set` variables first: a rule may read a variable a later rule sets. */
  for (guint s = 0; s < RULES_N_STAGES; s++)
    for (guint i = 0; i < prog->rules[s]->len; i++)
      {
        RulesRule *r = prog->rules[s]->pdata[i];
        for (guint k = 0; k < r->n_actions; k++)
          if (r->actions[k].kind == RULES_ACT_SET
              && !g_hash_table_contains (vars, r->actions[k].name))
            {
              g_ptr_array_add (prog->varnames, g_strdup (r->actions[k].name));
              g_ptr_array_add (prog->vardefs, &r->actions[k]);
              g_hash_table_insert (vars, r->actions[k].name,
                                   GINT_TO_POINTER ((int)prog->varnames->len));
            }
      }
  g_ptr_array_add (prog->varnames, NULL);

  if (!check_defs (&c))
    return FALSE;

  for (guint s = 0; s < RULES_N_STAGES; s++)
    {
      c.stage = (RulesStage)s;
      for (guint i = 0; i < prog->rules[s]->len; i++)
        {
          RulesRule *r = prog->rules[s]->pdata[i];
          if (r->cond)
            {
              if (!rules_check_expr (&c, r->cond))
                return FALSE;
              if (r->cond->type != RULES_TYPE_BOOL && r->cond->type != RULES_TYPE_NONE)
                return err (&c, r->cond, RULES_ERROR_TYPE,
                            "rule condition must be a boolean, got %s",
                            rules_type_name (r->cond->type));
            }
          if (!check_rule_order (&c, r))
            return FALSE;
          for (guint k = 0; k < r->n_actions; k++)
            if (!check_action (&c, r, &r->actions[k]))
              return FALSE;
        }
      g_ptr_array_add (prog->calls[s], NULL);
    }
  return TRUE;
}
