/* SPDX-License-Identifier: MIT
 *
 * rules-parser-expr.c — the expression half of the recursive-descent parser
 * (grammar in RULES.md): or / and / not, comparisons, =~ and in, sums,
 * unary minus, literals (a regex literal is compiled here, so a bad one is
 * an error at its position), [..] lists, dotted names and calls.
 *
 * Contract: returns the node, owned by the program, or NULL with the error
 * set ("file:line:col: expected X, got Y").  Nesting deeper than
 * RULES_MAX_EXPR_DEPTH is an error, so hostile input cannot exhaust the
 * stack.  Names are not resolved here (rules-check.c does it).
 */
#include "rules/rules-parser.h"

gboolean
rules_parse_args (Parser *p, RulesNode *n, RulesTokKind close, const char *close_name, guint depth,
                  GError **error)
{
  g_autoptr (GPtrArray) args = g_ptr_array_new ();

  if (p->tok.kind != close)
    for (;;)
      {
        RulesNode *a = rules_parse_expr (p, depth + 1, error);
        if (a == NULL)
          return FALSE;
        if (args->len >= (close == RULES_TOK_RPAREN ? RULES_MAX_ARGS : RULES_MAX_LIST_ENTRIES))
          {
            rules_set_error (error, RULES_ERROR_SYNTAX, p->file, a->line, a->col,
                             "too many elements");
            return FALSE;
          }
        g_ptr_array_add (args, a);
        if (p->tok.kind != RULES_TOK_COMMA)
          break;
        if (!next (p, error))
          return FALSE;
      }
  if (p->tok.kind != close)
    {
      g_autofree char *what = g_strdup_printf ("',' or %s", close_name);
      return fail_expected (p, error, what);
    }
  n->n_args = args->len;
  n->args = (RulesNode **)g_ptr_array_free (g_steal_pointer (&args), FALSE);
  return next (p, error);
}

static RulesNode *
parse_primary (Parser *p, guint depth, GError **error)
{
  RulesNode *n;
  RulesToken *t = &p->tok;

  switch (t->kind)
    {
      case RULES_TOK_STRING:
        n = node_here (p, RULES_NODE_LIT);
        n->str = g_steal_pointer (&t->text);
        rules_value_set_string (&n->lit, n->str, (gssize)t->len, FALSE);
        break;
      case RULES_TOK_INT:
      case RULES_TOK_SIZE:
      case RULES_TOK_DURATION:
        n = node_here (p, RULES_NODE_LIT);
        rules_value_set_int (&n->lit, t->i);
        break;
      case RULES_TOK_FLOAT:
        n = node_here (p, RULES_NODE_LIT);
        rules_value_set_float (&n->lit, t->f);
        break;
      case RULES_TOK_TRUE:
      case RULES_TOK_FALSE:
        n = node_here (p, RULES_NODE_LIT);
        rules_value_set_bool (&n->lit, t->kind == RULES_TOK_TRUE);
        break;
      case RULES_TOK_IP:
      case RULES_TOK_CIDR:
        n = node_here (p, RULES_NODE_LIT);
        n->lit.type = t->kind == RULES_TOK_IP ? RULES_TYPE_IP : RULES_TYPE_CIDR;
        n->lit.ip = t->ip;
        break;
      case RULES_TOK_REGEX:
        {
          g_autoptr (GError) local = NULL;
          RulesRegex *re = rules_regex_new (t->text, t->re_flags, &local);
          if (re == NULL)
            {
              rules_set_error (error, RULES_ERROR_INVALID, p->file, t->line, t->col,
                               "invalid regex: %s", local->message);
              return NULL;
            }
          g_ptr_array_add (p->prog->regexes, re);
          n = node_here (p, RULES_NODE_LIT);
          n->str = g_steal_pointer (&t->text);
          n->lit.type = RULES_TYPE_REGEX;
          n->lit.re = re;
          break;
        }
      case RULES_TOK_LPAREN:
        if (!next (p, error))
          return NULL;
        n = rules_parse_expr (p, depth + 1, error);
        if (n == NULL)
          return NULL;
        if (p->tok.kind != RULES_TOK_RPAREN)
          {
            fail_expected (p, error, "')' to close '('");
            return NULL;
          }
        break;
      case RULES_TOK_LBRACKET:
        n = node_here (p, RULES_NODE_LISTLIT);
        if (!next (p, error) || !rules_parse_args (p, n, RULES_TOK_RBRACKET, "']'", depth, error))
          return NULL;
        return n;
      case RULES_TOK_IDENT:
        {
          g_autoptr (GPtrArray) path = g_ptr_array_new_with_free_func (g_free);
          n = node_here (p, RULES_NODE_NAME);
          g_ptr_array_add (path, take_word (p));
          if (!next (p, error))
            return NULL;
          while (p->tok.kind == RULES_TOK_DOT)
            {
              if (!next (p, error))
                return NULL;
              if (p->tok.kind != RULES_TOK_IDENT && !is_keyword (p->tok.kind))
                {
                  fail_expected (p, error, "a name after '.'");
                  return NULL;
                }
              if (path->len >= 4)
                {
                  fail_expected (p, error, "a shorter dotted name");
                  return NULL;
                }
              g_ptr_array_add (path, take_word (p));
              if (!next (p, error))
                return NULL;
            }
          g_ptr_array_add (path, NULL);
          n->path = (char **)g_ptr_array_free (g_steal_pointer (&path), FALSE);
          if (p->tok.kind == RULES_TOK_LPAREN)
            {
              n->kind = RULES_NODE_CALL;
              if (!next (p, error)
                  || !rules_parse_args (p, n, RULES_TOK_RPAREN, "')'", depth, error))
                return NULL;
            }
          return n;
        }
      default:
        fail_expected (p, error, "an expression");
        return NULL;
    }
  if (!next (p, error))
    return NULL;
  return n;
}

static RulesNode *
parse_unary (Parser *p, guint depth, GError **error)
{
  if (depth > RULES_MAX_EXPR_DEPTH)
    {
      rules_set_error (error, RULES_ERROR_SYNTAX, p->file, p->tok.line, p->tok.col,
                       "expression nested deeper than %u", (guint)RULES_MAX_EXPR_DEPTH);
      return NULL;
    }
  if (p->tok.kind == RULES_TOK_MINUS)
    {
      RulesNode *n = node_here (p, RULES_NODE_NEG);
      if (!next (p, error) || (n->a = parse_unary (p, depth + 1, error)) == NULL)
        return NULL;
      return n;
    }
  return parse_primary (p, depth, error);
}

static RulesNode *
parse_sum (Parser *p, guint depth, GError **error)
{
  RulesNode *left = parse_unary (p, depth + 1, error);

  while (left && (p->tok.kind == RULES_TOK_PLUS || p->tok.kind == RULES_TOK_MINUS))
    {
      RulesNode *n = node_here (p, p->tok.kind == RULES_TOK_PLUS ? RULES_NODE_ADD : RULES_NODE_SUB);
      n->a = left;
      if (!next (p, error) || (n->b = parse_unary (p, depth + 1, error)) == NULL)
        return NULL;
      left = n;
    }
  return left;
}

static RulesNode *
parse_cmp (Parser *p, guint depth, GError **error)
{
  RulesNode *left = parse_sum (p, depth + 1, error), *n;
  RulesTokKind k = p->tok.kind;

  if (left == NULL)
    return NULL;
  if (k >= RULES_TOK_EQ && k <= RULES_TOK_GE)
    {
      n = node_here (p, RULES_NODE_CMP);
      n->op = k;
    }
  else if (k == RULES_TOK_MATCH || k == RULES_TOK_NOMATCH)
    {
      n = node_here (p, RULES_NODE_MATCH);
      n->op = k;
    }
  else if (k == RULES_TOK_IN)
    n = node_here (p, RULES_NODE_IN);
  else if (k == RULES_TOK_NOT)
    {
      /* `a not in b`: the only place 'not' follows an operand. */
      n = node_here (p, RULES_NODE_IN);
      n->op = RULES_TOK_NOT;
      if (!next (p, error))
        return NULL;
      if (p->tok.kind != RULES_TOK_IN)
        {
          fail_expected (p, error, "'in' after 'not'");
          return NULL;
        }
    }
  else
    return left;
  n->a = left;
  if (!next (p, error) || (n->b = parse_sum (p, depth + 1, error)) == NULL)
    return NULL;
  return n;
}

static RulesNode *
parse_not (Parser *p, guint depth, GError **error)
{
  if (depth > RULES_MAX_EXPR_DEPTH)
    {
      rules_set_error (error, RULES_ERROR_SYNTAX, p->file, p->tok.line, p->tok.col,
                       "expression nested deeper than %u", (guint)RULES_MAX_EXPR_DEPTH);
      return NULL;
    }
  if (p->tok.kind == RULES_TOK_NOT)
    {
      RulesNode *n = node_here (p, RULES_NODE_NOT);
      if (!next (p, error) || (n->a = parse_not (p, depth + 1, error)) == NULL)
        return NULL;
      return n;
    }
  return parse_cmp (p, depth, error);
}

static RulesNode *
parse_binary (Parser *p, guint depth, RulesTokKind op, GError **error)
{
  RulesNode *left = op == RULES_TOK_OR ? parse_binary (p, depth + 1, RULES_TOK_AND, error)
                                       : parse_not (p, depth + 1, error);

  while (left && p->tok.kind == op)
    {
      RulesNode *n = node_here (p, op == RULES_TOK_OR ? RULES_NODE_OR : RULES_NODE_AND);
      n->a = left;
      if (!next (p, error))
        return NULL;
      n->b = op == RULES_TOK_OR ? parse_binary (p, depth + 1, RULES_TOK_AND, error)
                                : parse_not (p, depth + 1, error);
      if (n->b == NULL)
        return NULL;
      left = n;
    }
  return left;
}

RulesNode *
rules_parse_expr (Parser *p, guint depth, GError **error)
{
  if (depth > RULES_MAX_EXPR_DEPTH)
    {
      rules_set_error (error, RULES_ERROR_SYNTAX, p->file, p->tok.line, p->tok.col,
                       "expression nested deeper than %u", (guint)RULES_MAX_EXPR_DEPTH);
      return NULL;
    }
  return parse_binary (p, depth, RULES_TOK_OR, error);
}
