/* SPDX-License-Identifier: MIT
 *
 * rules-parser.h — what the two halves of the parser share: the parser
 * state and the token helpers.  rules-parser-expr.c parses expressions;
 * rules-parser.c parses everything else (files, includes, lists, lets,
 * stage blocks, rules and actions).  Internal to rules/.
 */
#pragma once

#include "rules/rules-private.h"

#include <string.h>

G_BEGIN_DECLS

typedef struct
{
  RulesProgram *prog;
  RulesLexer lx;
  RulesToken tok;
  const char *file; /* interned */
  char *dir;
  GPtrArray *stack; /* canonical paths of the files being parsed */
  guint depth;
} Parser;

static inline gboolean
next (Parser *p, GError **error)
{
  rules_token_clear (&p->tok);
  return rules_lexer_next (&p->lx, &p->tok, error);
}

static inline gboolean
fail_expected (Parser *p, GError **error, const char *what)
{
  g_autofree char *got = rules_token_describe (&p->lx, &p->tok);
  rules_set_error (error, RULES_ERROR_SYNTAX, p->file, p->tok.line, p->tok.col,
                   "expected %s, got %s", what, got);
  return FALSE;
}

static inline gboolean
expect (Parser *p, RulesTokKind kind, const char *what, GError **error)
{
  if (p->tok.kind != kind)
    return fail_expected (p, error, what);
  return next (p, error);
}

static inline gboolean
is_ident (Parser *p, const char *word)
{
  return p->tok.kind == RULES_TOK_IDENT && g_strcmp0 (p->tok.text, word) == 0;
}

/* Takes the text of the current IDENT (or keyword, after a '.'). */
static inline char *
take_word (Parser *p)
{
  if (p->tok.kind == RULES_TOK_IDENT)
    return g_steal_pointer (&p->tok.text);
  return g_strndup (p->lx.src + p->tok.start, p->tok.end - p->tok.start);
}

static inline gboolean
is_keyword (RulesTokKind kind)
{
  return kind >= RULES_TOK_INCLUDE && kind <= RULES_TOK_FALSE;
}

static inline RulesNode *
node_here (Parser *p, RulesNodeKind kind)
{
  return rules_node_new (p->prog, kind, p->file, p->tok.line, p->tok.col);
}

/* rules-parser-expr.c: one expression; depth bounds the nesting
 * (RULES_MAX_EXPR_DEPTH). */
RulesNode *rules_parse_expr (Parser *p, guint depth, GError **error);
/* The elements of n up to `close` (after its opening token), then past it:
 * a call's arguments or a [..] list. */
gboolean rules_parse_args (Parser *p, RulesNode *n, RulesTokKind close, const char *close_name,
                           guint depth, GError **error);

G_END_DECLS
