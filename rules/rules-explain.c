/* SPDX-License-Identifier: MIT
 *
 * rules-explain.c — a human-readable listing of a compiled program
 * (vpsctl explain): constants, lists (type, entry count, source), then every
 * stage with its rules, their conditions fully parenthesised as the
 * evaluator sees them (constants folded, names resolved), and their actions.
 */
#include "rules/rules-private.h"

#include <string.h>

static void expr (GString *out, const RulesNode *n);

static void
quoted (GString *out, const char *s, gsize len)
{
  g_string_append_c (out, '"');
  for (gsize i = 0; i < len; i++)
    {
      char c = s[i];
      if (c == '"' || c == '\\')
        g_string_append_c (out, '\\');
      if (c == '\n')
        g_string_append (out, "\\n");
      else if (c == '\t')
        g_string_append (out, "\\t");
      else
        g_string_append_c (out, c);
    }
  g_string_append_c (out, '"');
}

static void
literal (GString *out, const RulesNode *n)
{
  const RulesValue *v = &n->lit;
  char buf[46];

  switch (v->type)
    {
      case RULES_TYPE_STRING:
        quoted (out, v->s.ptr, v->s.len);
        break;
      case RULES_TYPE_BOOL:
        g_string_append (out, v->b ? "true" : "false");
        break;
      case RULES_TYPE_INT:
        g_string_append_printf (out, "%" G_GINT64_FORMAT, v->i);
        break;
      case RULES_TYPE_FLOAT:
        {
          char f[G_ASCII_DTOSTR_BUF_SIZE];
          g_string_append (out, g_ascii_dtostr (f, sizeof f, v->f));
          break;
        }
      case RULES_TYPE_IP:
        g_string_append (out, rules_ip_to_string (&v->ip, buf));
        break;
      case RULES_TYPE_CIDR:
        g_string_append_printf (out, "%s/%u", rules_ip_to_string (&v->ip, buf), v->ip.prefix);
        break;
      case RULES_TYPE_REGEX:
        g_string_append_printf (out, "/%s/", rules_regex_pattern (v->re));
        if (rules_regex_flags (v->re) & RULES_RE_I)
          g_string_append_c (out, 'i');
        if (rules_regex_flags (v->re) & RULES_RE_M)
          g_string_append_c (out, 'm');
        break;
      case RULES_TYPE_LIST:
        if (v->list && v->list->name)
          g_string_append (out, v->list->name);
        else
          g_string_append_printf (out, "[%u entries]", v->list ? v->list->n_entries : 0);
        break;
      default:
        g_string_append (out, "<missing>");
        break;
    }
}

static void
args (GString *out, const RulesNode *n)
{
  g_string_append_c (out, '(');
  for (guint i = 0; i < n->n_args; i++)
    {
      if (i)
        g_string_append (out, ", ");
      expr (out, n->args[i]);
    }
  g_string_append_c (out, ')');
}

static void
binary (GString *out, const RulesNode *n, const char *op)
{
  g_string_append_c (out, '(');
  expr (out, n->a);
  g_string_append_printf (out, " %s ", op);
  expr (out, n->b);
  g_string_append_c (out, ')');
}

static void
expr (GString *out, const RulesNode *n)
{
  switch (n->kind)
    {
      case RULES_NODE_LIT:
        literal (out, n);
        break;
      case RULES_NODE_HOST:
        if (n->ref.var == RULES_VAR_CONNECTOR)
          g_string_append_printf (out, "%s.%s", n->ref.connector, n->ref.field);
        else
          g_string_append (out, rules_var_name (n->ref.var));
        if (n->a)
          {
            g_string_append_c (out, '(');
            expr (out, n->a);
            g_string_append_c (out, ')');
          }
        break;
      case RULES_NODE_SETVAR:
        g_string_append_printf (out, "var.%s", n->path ? n->path[1] : "?");
        break;
      case RULES_NODE_CALL:
        g_string_append (out, rules_func_name ((RulesFunc)n->index));
        args (out, n);
        break;
      case RULES_NODE_LISTLIT:
        g_string_append_c (out, '[');
        for (guint i = 0; i < n->n_args; i++)
          {
            if (i)
              g_string_append (out, ", ");
            expr (out, n->args[i]);
          }
        g_string_append_c (out, ']');
        break;
      case RULES_NODE_NOT:
        g_string_append (out, "(not ");
        expr (out, n->a);
        g_string_append_c (out, ')');
        break;
      case RULES_NODE_NEG:
        g_string_append (out, "(-");
        expr (out, n->a);
        g_string_append_c (out, ')');
        break;
      case RULES_NODE_AND:
        binary (out, n, "and");
        break;
      case RULES_NODE_OR:
        binary (out, n, "or");
        break;
      case RULES_NODE_ADD:
        binary (out, n, "+");
        break;
      case RULES_NODE_SUB:
        binary (out, n, "-");
        break;
      case RULES_NODE_CMP:
        {
          const char *op = rules_tok_kind_name (n->op);
          g_autofree char *bare = g_strndup (op + 1, strlen (op) - 2);
          binary (out, n, bare);
          break;
        }
      case RULES_NODE_MATCH:
        binary (out, n, n->op == RULES_TOK_MATCH ? "=~" : "!~");
        break;
      case RULES_NODE_IN:
        binary (out, n, n->op == RULES_TOK_NOT ? "not in" : "in");
        break;
      default:
        g_string_append (out, "?");
        break;
    }
}

static const char *const effect_words[] = {
  [RULES_EFFECT_ADD_HEADER] = "add_header",
  [RULES_EFFECT_INSERT_HEADER] = "insert_header",
  [RULES_EFFECT_SET_HEADER] = "set_header",
  [RULES_EFFECT_REMOVE_HEADER] = "remove_header",
  [RULES_EFFECT_SET_SENDER] = "set_sender",
  [RULES_EFFECT_ADD_RCPT] = "add_rcpt",
  [RULES_EFFECT_REMOVE_RCPT] = "remove_rcpt",
  [RULES_EFFECT_REPLACE_BODY] = "replace_body",
  [RULES_EFFECT_LOG] = "log",
  [RULES_EFFECT_EXPORT_JSON] = "export json",
  [RULES_EFFECT_EXPORT_RAW] = "export raw",
  [RULES_EFFECT_DELIVER_MAILDIR] = "deliver maildir",
  [RULES_EFFECT_DELIVER_MBOX] = "deliver mbox",
  [RULES_EFFECT_DELIVER_RELAY] = "deliver relay",
  [RULES_EFFECT_DELIVER_MX] = "deliver mx",
};

static void
action (GString *out, const RulesAction *a)
{
  static const char *const verbs[] = {
    [RULES_ACT_CONTINUE] = "continue",
    [RULES_ACT_ACCEPT] = "accept",
    [RULES_ACT_ACCEPT_ALL] = "accept_all",
    [RULES_ACT_DISCARD] = "discard",
    [RULES_ACT_REJECT] = "reject",
    [RULES_ACT_TEMPFAIL] = "tempfail",
    [RULES_ACT_QUARANTINE] = "quarantine",
    [RULES_ACT_CALL] = "call",
    [RULES_ACT_SET] = "set",
    [RULES_ACT_GREYLIST] = "greylist",
  };

  g_string_append (out, "    ");
  if (a->kind == RULES_ACT_EFFECT)
    g_string_append (out, effect_words[a->effect]);
  else
    g_string_append (out, verbs[a->kind]);
  if (a->code)
    g_string_append_printf (out, " %u", a->code);
  if (a->enhanced)
    g_string_append_printf (out, " %s", a->enhanced);
  if (a->text)
    {
      g_string_append_c (out, ' ');
      quoted (out, a->text, strlen (a->text));
    }
  for (guint i = 0; i < a->n_calls; i++)
    g_string_append_printf (out, "%s%s", i ? ", " : " ", a->calls[i]);
  if (a->kind == RULES_ACT_SET)
    g_string_append_printf (out, " var.%s =", a->name);
  else if (a->name)
    {
      g_string_append_c (out, ' ');
      quoted (out, a->name, strlen (a->name));
    }
  if (a->kind == RULES_ACT_EFFECT && a->effect == RULES_EFFECT_LOG)
    g_string_append_printf (out, " [%s]",
                            a->level == G_LOG_LEVEL_DEBUG     ? "debug"
                            : a->level == G_LOG_LEVEL_MESSAGE ? "notice"
                            : a->level == G_LOG_LEVEL_WARNING ? "warning"
                                                              : "info");
  if (a->expr)
    {
      g_string_append_c (out, ' ');
      expr (out, a->expr);
    }
  g_string_append_c (out, '\n');
}

char *
rules_program_explain (const RulesProgram *p)
{
  GString *out = g_string_new (NULL);

  g_return_val_if_fail (p != NULL, NULL);
  for (guint i = 0; i < p->lets->len; i++)
    {
      const RulesLet *l = p->lets->pdata[i];
      g_string_append_printf (out, "let %s = ", l->name);
      expr (out, l->expr);
      g_string_append_printf (out, "    # %s, %s:%u\n", rules_type_name (l->expr->type), l->file,
                              l->line);
    }
  for (guint i = 0; i < p->listdefs->len; i++)
    {
      const RulesListDef *d = p->listdefs->pdata[i];
      const RulesList *l = d->list;
      if (l == NULL)
        continue;
      g_string_append_printf (out, "list %s: %s, %u entr%s", d->name,
                              rules_list_kind_name (l->kind), l->n_entries,
                              l->n_entries == 1 ? "y" : "ies");
      if (l->source)
        g_string_append_printf (out, ", from %s", l->source);
      g_string_append_c (out, '\n');
    }
  for (guint s = 0; s < RULES_N_STAGES; s++)
    {
      const GPtrArray *rules = p->rules[s];
      if (rules->len == 0)
        continue;
      g_string_append_printf (out, "\n%s: %u rule%s\n", rules_stage_name ((RulesStage)s),
                              rules->len, rules->len == 1 ? "" : "s");
      for (guint i = 0; i < rules->len; i++)
        {
          const RulesRule *r = rules->pdata[i];
          g_string_append_printf (out, "  %u. rule ", i + 1);
          quoted (out, r->name, strlen (r->name));
          g_string_append_printf (out, "  (%s:%u)\n    when ", r->file, r->line);
          if (r->cond)
            expr (out, r->cond);
          else
            g_string_append (out, "always");
          g_string_append_c (out, '\n');
          for (guint k = 0; k < r->n_actions; k++)
            action (out, &r->actions[k]);
        }
    }
  if (p->varnames->len > 1)
    {
      g_string_append (out, "\nvariables:");
      for (guint i = 0; i + 1 < p->varnames->len; i++)
        g_string_append_printf (out, " var.%s", (const char *)p->varnames->pdata[i]);
      g_string_append_c (out, '\n');
    }
  return g_string_free (out, FALSE);
}
