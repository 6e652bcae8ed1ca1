/* SPDX-License-Identifier: MIT
 *
 * rules-eval.c — evaluation of a compiled expression tree against a host.
 *
 * Contract: rules_eval() never fails and never crashes on any value the host
 * supplies: a missing value (RULES_TYPE_NONE) reads as "" / 0 / false, and
 * an operation on values of unexpected dynamic types yields false / "" / 0.
 * Strings computed here live in the run's arena until the next rule.  An
 * asynchronous query that is not answered yet sets run->wait; the caller
 * then discards the result and re-evaluates later.
 *
 * Also: the arena allocator, and load-time folding of constants
 * (rules_eval_fold), which is the same evaluator run without a host.
 */
#include "rules/rules-private.h"

#include <string.h>

#define ARENA_BLOCK 4096

struct _RulesArenaBlock
{
  RulesArenaBlock *next;
  gsize size, used;
  char data[];
};

char *
rules_arena_alloc (RulesArena *a, gsize n)
{
  RulesArenaBlock *b = a->head;
  char *p;

  n = (n + 7) & ~(gsize)7;
  if (b == NULL || b->size - b->used < n)
    {
      gsize size = MAX (n, ARENA_BLOCK);
      b = g_malloc (sizeof *b + size);
      b->size = size;
      b->used = 0;
      b->next = a->head;
      a->head = b;
    }
  p = b->data + b->used;
  b->used += n;
  return p;
}

char *
rules_arena_strndup (RulesArena *a, const char *s, gsize n)
{
  char *p = rules_arena_alloc (a, n + 1);
  if (n)
    memcpy (p, s, n);
  p[n] = '\0';
  return p;
}

void
rules_arena_reset (RulesArena *a)
{
  RulesArenaBlock *keep = NULL;

  /* Keep the largest block, so a steady workload stops allocating. */
  for (RulesArenaBlock *b = a->head, *next; b; b = next)
    {
      next = b->next;
      if (keep == NULL || b->size > keep->size)
        {
          g_free (keep);
          keep = b;
        }
      else
        g_free (b);
    }
  if (keep)
    {
      keep->used = 0;
      keep->next = NULL;
    }
  a->head = keep;
}

void
rules_arena_clear (RulesArena *a)
{
  rules_arena_reset (a);
  g_clear_pointer (&a->head, g_free);
}

/* ---- coercions ------------------------------------------------------------ */

gboolean
rules_value_truthy (const RulesValue *v)
{
  switch (v->type)
    {
      case RULES_TYPE_BOOL:
        return v->b;
      case RULES_TYPE_INT:
        return v->i != 0;
      case RULES_TYPE_FLOAT:
        return v->f != 0.0;
      case RULES_TYPE_STRING:
        return v->s.len > 0;
      case RULES_TYPE_STRV:
        return v->strv.n > 0;
      case RULES_TYPE_IP:
      case RULES_TYPE_CIDR:
      case RULES_TYPE_REGEX:
      case RULES_TYPE_LIST:
        return TRUE;
      default:
        return FALSE;
    }
}

void
rules_value_to_string (RulesRun *run, const RulesValue *v, const char **ptr, gsize *len)
{
  char buf[64];
  const char *s = buf;

  switch (v->type)
    {
      case RULES_TYPE_STRING:
        *ptr = v->s.ptr;
        *len = v->s.len;
        return;
      case RULES_TYPE_BOOL:
        s = v->b ? "true" : "false";
        break;
      case RULES_TYPE_INT:
        g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, v->i);
        break;
      case RULES_TYPE_FLOAT:
        g_ascii_formatd (buf, sizeof buf, "%g", v->f);
        break;
      case RULES_TYPE_IP:
        rules_ip_to_string (&v->ip, buf);
        break;
      case RULES_TYPE_CIDR:
        {
          char ip[46];
          g_snprintf (buf, sizeof buf, "%s/%u", rules_ip_to_string (&v->ip, ip), v->ip.prefix);
          break;
        }
      case RULES_TYPE_STRV:
        {
          gsize total = 0;
          char *out, *p;
          for (gsize i = 0; i < v->strv.n; i++)
            total += strlen (v->strv.v[i]) + 2;
          p = out = rules_arena_alloc (&run->arena, total + 1);
          for (gsize i = 0; i < v->strv.n; i++)
            {
              gsize l = strlen (v->strv.v[i]);
              if (i)
                {
                  memcpy (p, ", ", 2);
                  p += 2;
                }
              memcpy (p, v->strv.v[i], l);
              p += l;
            }
          *p = '\0';
          *ptr = out;
          *len = (gsize)(p - out);
          return;
        }
      default:
        s = "";
        break;
    }
  *len = strlen (s);
  *ptr = s == buf ? rules_arena_strndup (&run->arena, buf, *len) : s;
}

static gboolean
is_num (const RulesValue *v)
{
  return v->type == RULES_TYPE_INT || v->type == RULES_TYPE_FLOAT;
}

static double
num (const RulesValue *v)
{
  return v->type == RULES_TYPE_INT ? (double)v->i : v->type == RULES_TYPE_FLOAT ? v->f : 0.0;
}

/* A dynamically typed string that holds a number (connector fields). */
static gboolean
parse_num (const RulesValue *v, RulesValue *out)
{
  char buf[64], *end = NULL;

  if (v->type != RULES_TYPE_STRING || v->s.len == 0 || v->s.len >= sizeof buf)
    return FALSE;
  memcpy (buf, v->s.ptr, v->s.len);
  buf[v->s.len] = '\0';
  rules_value_set_float (out, g_ascii_strtod (buf, &end));
  return end && *end == '\0';
}

/* Missing reads as the zero of the other side's type. */
static void
default_for (const RulesValue *other, RulesValue *v)
{
  switch (other->type)
    {
      case RULES_TYPE_BOOL:
        rules_value_set_bool (v, FALSE);
        break;
      case RULES_TYPE_INT:
      case RULES_TYPE_FLOAT:
        rules_value_set_int (v, 0);
        break;
      default:
        rules_value_set_string (v, "", 0, FALSE);
        break;
    }
}

/* Three-way comparison; FALSE if the two values cannot be compared. */
static gboolean
compare (RulesValue a, RulesValue b, int *cmp)
{
  RulesValue tmp;

  if (a.type == RULES_TYPE_NONE)
    default_for (&b, &a);
  if (b.type == RULES_TYPE_NONE)
    default_for (&a, &b);
  if (is_num (&a) && b.type == RULES_TYPE_STRING && parse_num (&b, &tmp))
    b = tmp;
  if (is_num (&b) && a.type == RULES_TYPE_STRING && parse_num (&a, &tmp))
    a = tmp;
  if (is_num (&a) && is_num (&b))
    {
      if (a.type == RULES_TYPE_INT && b.type == RULES_TYPE_INT)
        *cmp = a.i < b.i ? -1 : a.i > b.i;
      else
        *cmp = num (&a) < num (&b) ? -1 : num (&a) > num (&b);
      return TRUE;
    }
  if (a.type == RULES_TYPE_STRING && b.type == RULES_TYPE_IP)
    {
      tmp = a;
      a = b;
      b = tmp;
    }
  if (a.type == RULES_TYPE_IP && b.type == RULES_TYPE_STRING)
    {
      if (!rules_ip_parse (b.s.ptr, b.s.len, &tmp.ip))
        return FALSE;
      b.type = RULES_TYPE_IP;
      b.ip = tmp.ip;
    }
  if (a.type != b.type)
    return FALSE;
  switch (a.type)
    {
      case RULES_TYPE_STRING:
        {
          gsize n = MIN (a.s.len, b.s.len);
          int r = n == 0           ? 0
                  : (a.ci || b.ci) ? rules_ascii_casecmp (a.s.ptr, b.s.ptr, n)
                                   : memcmp (a.s.ptr, b.s.ptr, n);
          *cmp = r != 0 ? (r < 0 ? -1 : 1) : a.s.len < b.s.len ? -1 : a.s.len > b.s.len;
          return TRUE;
        }
      case RULES_TYPE_BOOL:
        *cmp = (int)a.b - (int)b.b;
        return TRUE;
      case RULES_TYPE_IP:
      case RULES_TYPE_CIDR:
        *cmp = a.ip.family != b.ip.family ? 1
               : a.type == RULES_TYPE_CIDR && a.ip.prefix != b.ip.prefix
                   ? 1
                   : memcmp (a.ip.addr, b.ip.addr, a.ip.family == 4 ? 4 : 16);
        return TRUE;
      default:
        return FALSE;
    }
}

static gboolean
values_equal (const RulesValue *a, const RulesValue *b)
{
  int c = 1;
  return compare (*a, *b, &c) && c == 0;
}

static gboolean
regex_match (const RulesValue *v, const RulesRegex *re)
{
  if (re == NULL)
    return FALSE;
  if (v->type == RULES_TYPE_STRV)
    {
      for (gsize i = 0; i < v->strv.n; i++)
        if (rules_regex_match (re, v->strv.v[i], strlen (v->strv.v[i])))
          return TRUE;
      return FALSE;
    }
  if (v->type == RULES_TYPE_STRING)
    return rules_regex_match (re, v->s.ptr, v->s.len);
  return rules_regex_match (re, "", 0);
}

static gboolean
strv_has (const RulesValue *strv, const RulesValue *x)
{
  for (gsize i = 0; i < strv->strv.n; i++)
    {
      const char *e = strv->strv.v[i];
      if (x->type == RULES_TYPE_STRV)
        {
          RulesValue one;
          rules_value_set_string (&one, e, -1, TRUE);
          if (strv_has (x, &one))
            return TRUE;
        }
      else if (x->type == RULES_TYPE_STRING
               && rules_str_equal (e, strlen (e), x->s.ptr, x->s.len, TRUE))
        return TRUE;
    }
  return FALSE;
}

static gboolean
eval_in (RulesRun *run, const RulesNode *n)
{
  RulesValue l = { 0 }, r = { 0 };
  RulesIp ip;

  rules_eval (run, n->a, &l);
  if (n->b->kind == RULES_NODE_LISTLIT)
    {
      for (guint i = 0; i < n->b->n_args; i++)
        {
          rules_eval (run, n->b->args[i], &r);
          if (r.type == RULES_TYPE_CIDR && l.type == RULES_TYPE_IP
              && rules_ip_in_cidr (&l.ip, &r.ip))
            return TRUE;
          if (values_equal (&l, &r))
            return TRUE;
        }
      return FALSE;
    }
  rules_eval (run, n->b, &r);
  if (l.type == RULES_TYPE_NONE)
    rules_value_set_string (&l, "", 0, FALSE);
  switch (r.type)
    {
      case RULES_TYPE_LIST:
        return rules_run_list_contains (run, r.list, &l);
      case RULES_TYPE_STRV:
        return strv_has (&r, &l);
      case RULES_TYPE_STRING:
        if (l.type == RULES_TYPE_STRV)
          {
            for (gsize i = 0; i < l.strv.n; i++)
              if (rules_str_contains (r.s.ptr, r.s.len, l.strv.v[i], strlen (l.strv.v[i]),
                                      l.ci || r.ci))
                return TRUE;
            return FALSE;
          }
        return l.type == RULES_TYPE_STRING
               && rules_str_contains (r.s.ptr, r.s.len, l.s.ptr, l.s.len, l.ci || r.ci);
      case RULES_TYPE_CIDR:
      case RULES_TYPE_IP:
        if (l.type == RULES_TYPE_IP)
          return rules_ip_in_cidr (&l.ip, &r.ip);
        if (l.type == RULES_TYPE_STRING && rules_ip_parse (l.s.ptr, l.s.len, &ip))
          return rules_ip_in_cidr (&ip, &r.ip);
        return FALSE;
      default:
        return FALSE;
    }
}

static void
eval_arith (RulesRun *run, const RulesNode *n, RulesValue *out)
{
  RulesValue a = { 0 }, b = { 0 };

  rules_eval (run, n->a, &a);
  rules_eval (run, n->b, &b);
  if (n->kind == RULES_NODE_ADD
      && (a.type == RULES_TYPE_STRING || b.type == RULES_TYPE_STRING
          || n->type == RULES_TYPE_STRING))
    {
      const char *pa, *pb;
      gsize la, lb;
      char *s;
      rules_value_to_string (run, &a, &pa, &la);
      rules_value_to_string (run, &b, &pb, &lb);
      s = rules_arena_alloc (&run->arena, la + lb + 1);
      if (la)
        memcpy (s, pa, la);
      if (lb)
        memcpy (s + la, pb, lb);
      s[la + lb] = '\0';
      rules_value_set_string (out, s, (gssize)(la + lb), FALSE);
      return;
    }
  if (a.type == RULES_TYPE_INT && b.type == RULES_TYPE_INT)
    {
      /* Wrap instead of overflowing: evaluation must never be undefined. */
      guint64 x = (guint64)a.i, y = (guint64)b.i;
      rules_value_set_int (out, (gint64)(n->kind == RULES_NODE_ADD ? x + y : x - y));
    }
  else if (n->type == RULES_TYPE_INT && !is_num (&a) && !is_num (&b))
    rules_value_set_int (out, 0);
  else
    rules_value_set_float (out,
                           n->kind == RULES_NODE_ADD ? num (&a) + num (&b) : num (&a) - num (&b));
}

void
rules_eval (RulesRun *run, const RulesNode *n, RulesValue *out)
{
  /* Filled by rules_eval() before any use: no need to clear them on every
   * call of this, the hottest function of a run. */
  RulesValue a, b;
  int c = 0;

  memset (out, 0, sizeof *out);
  switch (n->kind)
    {
      case RULES_NODE_LIT:
        *out = n->lit;
        return;
      case RULES_NODE_HOST:
        {
          const char *arg = NULL;
          if (n->a && n->a->kind == RULES_NODE_LIT && n->a->lit.type == RULES_TYPE_STRING
              && n->a->lit.s.ptr[n->a->lit.s.len] == '\0')
            arg = n->a->lit.s.ptr; /* header("X-Foo"): already a C string */
          else if (n->a)
            {
              const char *p;
              gsize len;
              rules_eval (run, n->a, &a);
              rules_value_to_string (run, &a, &p, &len);
              arg = rules_arena_strndup (&run->arena, p, len);
            }
          if (run->vt && run->vt->get)
            run->vt->get (run->host, &n->ref, arg, out);
          /* The static type is a promise to the checker: a host that hands
         * back something else is treated as missing. */
          if (n->type != RULES_TYPE_NONE && out->type != n->type
              && !(n->type == RULES_TYPE_FLOAT && out->type == RULES_TYPE_INT))
            memset (out, 0, sizeof *out);
          if (n->ci && out->type == RULES_TYPE_STRING)
            out->ci = TRUE;
          if (out->type == RULES_TYPE_STRING && out->s.ptr == NULL)
            rules_value_set_string (out, "", 0, out->ci);
          if (out->type == RULES_TYPE_STRV && out->strv.v == NULL)
            out->strv.n = 0;
          return;
        }
      case RULES_NODE_SETVAR:
        if (run->state && (guint)n->index < run->state->n)
          *out = run->state->vals[n->index];
        return;
      case RULES_NODE_NOT:
        rules_eval (run, n->a, &a);
        rules_value_set_bool (out, !rules_value_truthy (&a));
        return;
      case RULES_NODE_AND:
      case RULES_NODE_OR:
        rules_eval (run, n->a, &a);
        if (rules_value_truthy (&a) == (n->kind == RULES_NODE_OR))
          {
            rules_value_set_bool (out, n->kind == RULES_NODE_OR);
            return;
          }
        rules_eval (run, n->b, &b);
        rules_value_set_bool (out, rules_value_truthy (&b));
        return;
      case RULES_NODE_NEG:
        rules_eval (run, n->a, &a);
        if (a.type == RULES_TYPE_FLOAT)
          rules_value_set_float (out, -a.f);
        else
          rules_value_set_int (out, a.type == RULES_TYPE_INT ? (gint64)(0 - (guint64)a.i) : 0);
        return;
      case RULES_NODE_ADD:
      case RULES_NODE_SUB:
        eval_arith (run, n, out);
        return;
      case RULES_NODE_CMP:
        rules_eval (run, n->a, &a);
        rules_eval (run, n->b, &b);
        if (!compare (a, b, &c))
          {
            /* Incomparable values are unequal and unordered. */
            rules_value_set_bool (out, n->op == RULES_TOK_NE);
            return;
          }
        switch (n->op)
          {
            case RULES_TOK_EQ:
              rules_value_set_bool (out, c == 0);
              break;
            case RULES_TOK_NE:
              rules_value_set_bool (out, c != 0);
              break;
            case RULES_TOK_LT:
              rules_value_set_bool (out, c < 0);
              break;
            case RULES_TOK_LE:
              rules_value_set_bool (out, c <= 0);
              break;
            case RULES_TOK_GT:
              rules_value_set_bool (out, c > 0);
              break;
            default:
              rules_value_set_bool (out, c >= 0);
              break;
          }
        return;
      case RULES_NODE_MATCH:
        rules_eval (run, n->a, &a);
        rules_eval (run, n->b, &b);
        rules_value_set_bool (out, regex_match (&a, b.type == RULES_TYPE_REGEX ? b.re : NULL)
                                       == (n->op == RULES_TOK_MATCH));
        return;
      case RULES_NODE_IN:
        rules_value_set_bool (out, eval_in (run, n) == (n->op != RULES_TOK_NOT));
        return;
      case RULES_NODE_CALL:
        rules_eval_func (run, n, out);
        return;
      default:
        return;
    }
}

gboolean
rules_eval_fold (RulesProgram *prog, RulesNode *n)
{
  RulesRun run = { 0 };
  RulesValue v;
  char *old = n->str;

  run.prog = prog;
  rules_eval (&run, n, &v);
  n->str = NULL;
  if (v.type == RULES_TYPE_STRING)
    {
      n->str = g_strndup (v.s.ptr, v.s.len);
      v.s.ptr = n->str;
    }
  else if (v.type == RULES_TYPE_STRV || v.type == RULES_TYPE_NONE)
    {
      n->str = old;
      rules_arena_clear (&run.arena);
      return FALSE;
    }
  g_free (old);
  n->kind = RULES_NODE_LIT;
  n->lit = v;
  n->type = v.type;
  n->ci = v.ci;
  rules_arena_clear (&run.arena);
  return TRUE;
}
