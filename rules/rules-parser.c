/* SPDX-License-Identifier: MIT
 *
 * rules-parser.c — recursive-descent parser for the grammar of RULES.md:
 * files, includes, list and let declarations, stage blocks, rules and their
 * actions (expressions: rules-parser-expr.c).
 *
 * Contract: parses one file (and, recursively, what it includes) into the
 * program being built: list definitions, let constants and the rules of each
 * stage (a stage block may appear in several files; its rules append).
 * Names are not resolved here (rules-check.c does it once everything is
 * read).  Paths in `include`, `file` and `deliver` are relative to the
 * directory of the file naming them.  Include loops and nesting deeper than
 * RULES_MAX_INCLUDE_DEPTH are load errors; expression nesting is bounded by
 * RULES_MAX_EXPR_DEPTH so hostile input cannot exhaust the stack.
 *
 * Every error is "file:line:col: expected X after Y, got Z".
 */
#include "rules/rules-parser.h"

static gboolean parse_source (RulesProgram *prog, const char *file, const char *text, gsize len,
                              GPtrArray *stack, GError **error);

static char *
resolve_path (Parser *p, const char *path)
{
  /* Keep messages short: "x.list", not "./x.list". */
  if (g_path_is_absolute (path) || strcmp (p->dir, ".") == 0)
    return g_strdup (path);
  return g_build_filename (p->dir, path, NULL);
}

RulesNode *
rules_node_new (RulesProgram *prog, RulesNodeKind kind, const char *file, guint line, guint col)
{
  RulesNode *n = g_new0 (RulesNode, 1);
  n->kind = kind;
  n->file = file;
  n->line = line;
  n->col = col;
  g_ptr_array_add (prog->nodes, n);
  return n;
}

/* ---- actions -------------------------------------------------------------- */

static const struct
{
  const char *word;
  RulesActKind kind;
  RulesEffectKind effect;
} action_words[] = {
  { "continue", RULES_ACT_CONTINUE, 0 },
  { "accept", RULES_ACT_ACCEPT, 0 },
  { "accept_all", RULES_ACT_ACCEPT_ALL, 0 },
  { "discard", RULES_ACT_DISCARD, 0 },
  { "reject", RULES_ACT_REJECT, 0 },
  { "tempfail", RULES_ACT_TEMPFAIL, 0 },
  { "quarantine", RULES_ACT_QUARANTINE, 0 },
  { "call", RULES_ACT_CALL, 0 },
  { "set", RULES_ACT_SET, 0 },
  { "add_header", RULES_ACT_EFFECT, RULES_EFFECT_ADD_HEADER },
  { "insert_header", RULES_ACT_EFFECT, RULES_EFFECT_INSERT_HEADER },
  { "set_header", RULES_ACT_EFFECT, RULES_EFFECT_SET_HEADER },
  { "remove_header", RULES_ACT_EFFECT, RULES_EFFECT_REMOVE_HEADER },
  { "set_sender", RULES_ACT_EFFECT, RULES_EFFECT_SET_SENDER },
  { "add_rcpt", RULES_ACT_EFFECT, RULES_EFFECT_ADD_RCPT },
  { "remove_rcpt", RULES_ACT_EFFECT, RULES_EFFECT_REMOVE_RCPT },
  { "replace_body", RULES_ACT_EFFECT, RULES_EFFECT_REPLACE_BODY },
  { "log", RULES_ACT_EFFECT, RULES_EFFECT_LOG },
  { "export", RULES_ACT_EFFECT, RULES_EFFECT_EXPORT_JSON },
  { "deliver", RULES_ACT_EFFECT, RULES_EFFECT_DELIVER_MAILDIR },
  { "greylist", RULES_ACT_GREYLIST, 0 },
};

static const struct
{
  const char *word;
  GLogLevelFlags level;
} log_levels[] = {
  { "debug", G_LOG_LEVEL_DEBUG },
  { "info", G_LOG_LEVEL_INFO },
  { "notice", G_LOG_LEVEL_MESSAGE },
  { "warning", G_LOG_LEVEL_WARNING },
};

static int
action_index (const RulesToken *t)
{
  if (t->kind != RULES_TOK_IDENT)
    return -1;
  for (guint i = 0; i < G_N_ELEMENTS (action_words); i++)
    if (strcmp (t->text, action_words[i].word) == 0)
      return (int)i;
  return -1;
}

static gboolean
take_string (Parser *p, char **out, const char *what, GError **error)
{
  if (p->tok.kind != RULES_TOK_STRING)
    return fail_expected (p, error, what);
  *out = g_steal_pointer (&p->tok.text);
  return next (p, error);
}

static gboolean
parse_reply (Parser *p, RulesAction *a, const char *verb, GError **error)
{
  g_autofree char *what = NULL;

  if (p->tok.kind != RULES_TOK_INT)
    return TRUE; /* no reply: the host's default for this verdict */
  if (p->tok.i < 100 || p->tok.i > 999)
    {
      rules_set_error (error, RULES_ERROR_INVALID, p->file, p->tok.line, p->tok.col,
                       "reply code must have three digits");
      return FALSE;
    }
  a->code = (guint)p->tok.i;
  if (!next (p, error))
    return FALSE;
  if (p->tok.kind == RULES_TOK_ENHANCED)
    {
      a->enhanced = g_steal_pointer (&p->tok.text);
      if (!next (p, error))
        return FALSE;
    }
  what = g_strdup_printf ("reply text string after %s code", verb);
  return take_string (p, &a->text, what, error);
}

static gboolean
parse_action (Parser *p, RulesAction *a, GError **error)
{
  int idx = action_index (&p->tok);
  const char *verb;

  a->file = p->file;
  a->line = p->tok.line;
  a->col = p->tok.col;
  if (idx < 0)
    return fail_expected (p, error, "an action");
  verb = action_words[idx].word;
  a->kind = action_words[idx].kind;
  a->effect = action_words[idx].effect;
  if (!next (p, error))
    return FALSE;

  switch (a->kind)
    {
      case RULES_ACT_CONTINUE:
      case RULES_ACT_ACCEPT:
      case RULES_ACT_ACCEPT_ALL:
      case RULES_ACT_DISCARD:
        return TRUE;
      case RULES_ACT_REJECT:
      case RULES_ACT_TEMPFAIL:
      case RULES_ACT_GREYLIST:
        return parse_reply (p, a, verb, error);
      case RULES_ACT_QUARANTINE:
        return take_string (p, &a->name, "quarantine name string after 'quarantine'", error);
      case RULES_ACT_CALL:
        {
          g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
          for (;;)
            {
              if (p->tok.kind != RULES_TOK_IDENT)
                return fail_expected (p, error, "connector name after 'call'");
              if (names->len >= RULES_MAX_CALLS)
                return fail_expected (p, error, "fewer connectors in one 'call'");
              g_ptr_array_add (names, g_steal_pointer (&p->tok.text));
              if (!next (p, error))
                return FALSE;
              /* `call a, b` names connectors; `call a, accept` starts the next action. */
              if (p->tok.kind != RULES_TOK_COMMA)
                break;
              {
                RulesLexer save = p->lx;
                RulesToken peek_tok;
                gboolean more;
                if (!rules_lexer_next (&save, &peek_tok, NULL))
                  break;
                /* `greylist` after a comma of a `call` stays a connector name
                 * (a chained postgrey is often called that): the action
                 * `greylist` cannot follow a call in the same rule. */
                more = peek_tok.kind == RULES_TOK_IDENT
                       && (action_index (&peek_tok) < 0 || strcmp (peek_tok.text, "greylist") == 0);
                rules_token_clear (&peek_tok);
                if (!more)
                  break;
              }
              if (!next (p, error))
                return FALSE;
            }
          a->n_calls = names->len;
          g_ptr_array_add (names, NULL);
          a->calls = (char **)g_ptr_array_free (g_steal_pointer (&names), FALSE);
          return TRUE;
        }
      case RULES_ACT_SET:
        /* Any word: it is read back as var.NAME, where keywords are fine too. */
        if (p->tok.kind != RULES_TOK_IDENT && !is_keyword (p->tok.kind))
          return fail_expected (p, error, "variable name after 'set'");
        a->name = take_word (p);
        if (!next (p, error) || !expect (p, RULES_TOK_ASSIGN, "'=' after variable name", error))
          return FALSE;
        return (a->expr = rules_parse_expr (p, 0, error)) != NULL;
      case RULES_ACT_EFFECT:
        break;
    }

  switch (a->effect)
    {
      case RULES_EFFECT_ADD_HEADER:
      case RULES_EFFECT_INSERT_HEADER:
      case RULES_EFFECT_SET_HEADER:
        {
          g_autofree char *what = g_strdup_printf ("header name string after '%s'", verb);
          if (!take_string (p, &a->name, what, error))
            return FALSE;
          return (a->expr = rules_parse_expr (p, 0, error)) != NULL;
        }
      case RULES_EFFECT_REMOVE_HEADER:
        return take_string (p, &a->name, "header name string after 'remove_header'", error);
      case RULES_EFFECT_LOG:
        a->level = G_LOG_LEVEL_INFO;
        for (guint i = 0; p->tok.kind == RULES_TOK_IDENT && i < G_N_ELEMENTS (log_levels); i++)
          if (strcmp (p->tok.text, log_levels[i].word) == 0)
            {
              a->level = log_levels[i].level;
              if (!next (p, error))
                return FALSE;
              break;
            }
        return (a->expr = rules_parse_expr (p, 0, error)) != NULL;
      case RULES_EFFECT_EXPORT_JSON:
        if (is_ident (p, "raw"))
          a->effect = RULES_EFFECT_EXPORT_RAW;
        else if (!is_ident (p, "json"))
          return fail_expected (p, error, "'json' or 'raw' after 'export'");
        if (!next (p, error))
          return FALSE;
        return take_string (p, &a->name, "export name string", error);
      case RULES_EFFECT_DELIVER_MAILDIR:
        {
          g_autofree char *path = NULL;
          if (is_ident (p, "mx"))
            {
              a->effect = RULES_EFFECT_DELIVER_MX;
              return next (p, error);
            }
          if (is_ident (p, "relay"))
            {
              a->effect = RULES_EFFECT_DELIVER_RELAY;
              if (!next (p, error))
                return FALSE;
              return take_string (p, &a->name, "relay string \"[host]:port\" after 'relay'", error);
            }
          if (is_ident (p, "mbox"))
            a->effect = RULES_EFFECT_DELIVER_MBOX;
          else if (!is_ident (p, "maildir"))
            return fail_expected (p, error, "'maildir', 'mbox', 'relay' or 'mx' after 'deliver'");
          if (!next (p, error) || !take_string (p, &path, "path string", error))
            return FALSE;
          a->name = resolve_path (p, path);
          return TRUE;
        }
      default:
        {
          g_autofree char *what = g_strdup_printf ("an expression after '%s'", verb);
          if (p->tok.kind == RULES_TOK_EOF || p->tok.kind == RULES_TOK_RBRACE
              || p->tok.kind == RULES_TOK_RULE || p->tok.kind == RULES_TOK_COMMA)
            return fail_expected (p, error, what);
          return (a->expr = rules_parse_expr (p, 0, error)) != NULL;
        }
    }
}

static void
action_clear (RulesAction *a)
{
  g_free (a->enhanced);
  g_free (a->text);
  g_free (a->name);
  g_strfreev (a->calls);
}

static gboolean
parse_rule (Parser *p, RulesStage stage, GError **error)
{
  RulesRule *r = g_new0 (RulesRule, 1);
  g_autoptr (GArray) acts = g_array_new (FALSE, TRUE, sizeof (RulesAction));
  guint total = 0;

  g_array_set_clear_func (acts, (GDestroyNotify)action_clear);
  r->file = p->file;
  r->line = p->tok.line;
  r->col = p->tok.col;
  r->stage = stage;
  /* Owned by the program from here on, so every error path frees it. */
  g_ptr_array_add (p->prog->rules[stage], r);
  for (guint s = 0; s < RULES_N_STAGES; s++)
    total += p->prog->rules[s]->len;
  if (total > RULES_MAX_RULES)
    {
      rules_set_error (error, RULES_ERROR_INVALID, p->file, r->line, r->col, "more than %u rules",
                       (guint)RULES_MAX_RULES);
      return FALSE;
    }
  if (!next (p, error) || !take_string (p, &r->name, "rule name string after 'rule'", error))
    return FALSE;
  if (p->tok.kind == RULES_TOK_WHEN)
    {
      if (!next (p, error) || (r->cond = rules_parse_expr (p, 0, error)) == NULL)
        return FALSE;
      if (!expect (p, RULES_TOK_ARROW, "'=>' after rule condition", error))
        return FALSE;
    }
  else if (!expect (p, RULES_TOK_ARROW, "'when' or '=>' after rule name", error))
    return FALSE;
  for (;;)
    {
      RulesAction a = { 0 };
      gboolean ok = parse_action (p, &a, error);
      g_array_append_val (acts, a);
      if (!ok)
        return FALSE;
      if (p->tok.kind != RULES_TOK_COMMA)
        break;
      if (!next (p, error))
        return FALSE;
    }
  r->n_actions = acts->len;
  g_array_set_clear_func (acts, NULL);
  r->actions = (RulesAction *)g_array_free (g_steal_pointer (&acts), FALSE);
  return TRUE;
}

/* ---- top level ------------------------------------------------------------ */

static gboolean
parse_include (Parser *p, GError **error)
{
  guint line = p->tok.line, col = p->tok.col;
  g_autofree char *rel = NULL, *path = NULL, *canon = NULL, *text = NULL;
  g_autoptr (GError) local = NULL;
  gsize len = 0;

  if (!next (p, error) || !take_string (p, &rel, "file name string after 'include'", error))
    return FALSE;
  path = resolve_path (p, rel);
  canon = g_canonicalize_filename (path, NULL);
  for (guint i = 0; i < p->stack->len; i++)
    if (strcmp (p->stack->pdata[i], canon) == 0)
      {
        rules_set_error (error, RULES_ERROR_INVALID, p->file, line, col,
                         "include loop: '%s' is already being read", rel);
        return FALSE;
      }
  if (p->stack->len >= RULES_MAX_INCLUDE_DEPTH)
    {
      rules_set_error (error, RULES_ERROR_INVALID, p->file, line, col,
                       "includes nested deeper than %u", (guint)RULES_MAX_INCLUDE_DEPTH);
      return FALSE;
    }
  if (!g_file_get_contents (path, &text, &len, &local))
    {
      rules_set_error (error, RULES_ERROR_IO, p->file, line, col, "cannot include '%s': %s", rel,
                       local->message);
      return FALSE;
    }
  g_ptr_array_add (p->stack, g_steal_pointer (&canon));
  if (!parse_source (p->prog, path, text, len, p->stack, error))
    return FALSE;
  g_ptr_array_remove_index (p->stack, p->stack->len - 1);
  return TRUE;
}

static gboolean
parse_list (Parser *p, GError **error)
{
  RulesListDef *def = g_new0 (RulesListDef, 1);

  def->file = p->file;
  def->line = p->tok.line;
  def->col = p->tok.col;
  g_ptr_array_add (p->prog->listdefs, def);
  if (!next (p, error))
    return FALSE;
  if (p->tok.kind != RULES_TOK_IDENT)
    return fail_expected (p, error, "list name after 'list'");
  def->name = g_steal_pointer (&p->tok.text);
  if (!next (p, error) || !expect (p, RULES_TOK_ASSIGN, "'=' after list name", error))
    return FALSE;
  if (p->tok.kind == RULES_TOK_LBRACKET)
    {
      def->expr = node_here (p, RULES_NODE_LISTLIT);
      return next (p, error)
             && rules_parse_args (p, def->expr, RULES_TOK_RBRACKET, "']'", 0, error);
    }
  if (p->tok.kind == RULES_TOK_FILE)
    {
      g_autofree char *rel = NULL, *path = NULL, *text = NULL;
      g_autoptr (GError) local = NULL;
      RulesListKind kind = RULES_LIST_STRING;
      guint line = p->tok.line, col = p->tok.col;
      gsize len = 0;

      if (!next (p, error) || !take_string (p, &rel, "file name string after 'file'", error))
        return FALSE;
      if (p->tok.kind == RULES_TOK_AS)
        {
          if (!next (p, error))
            return FALSE;
          if (p->tok.kind != RULES_TOK_IDENT || !rules_list_kind_from_name (p->tok.text, &kind))
            return fail_expected (p, error, "list type (string, regex, cidr, domain) after 'as'");
          if (!next (p, error))
            return FALSE;
        }
      path = resolve_path (p, rel);
      def->list = rules_list_new (def->name, kind);
      g_ptr_array_add (p->prog->lists, def->list);
      if (!g_file_get_contents (path, &text, &len, &local))
        {
          rules_set_error (error, RULES_ERROR_IO, p->file, line, col, "cannot read list '%s': %s",
                           rel, local->message);
          return FALSE;
        }
      def->list->source = g_strdup (path);
      return rules_list_load_text (def->list, rules_program_intern_file (p->prog, path), text, len,
                                   error);
    }
  return fail_expected (p, error, "'[' or 'file' after '='");
}

static gboolean
parse_let (Parser *p, GError **error)
{
  RulesLet *let = g_new0 (RulesLet, 1);

  let->file = p->file;
  let->line = p->tok.line;
  let->col = p->tok.col;
  g_ptr_array_add (p->prog->lets, let);
  if (!next (p, error))
    return FALSE;
  if (p->tok.kind != RULES_TOK_IDENT)
    return fail_expected (p, error, "constant name after 'let'");
  let->name = g_steal_pointer (&p->tok.text);
  if (!next (p, error) || !expect (p, RULES_TOK_ASSIGN, "'=' after constant name", error))
    return FALSE;
  return (let->expr = rules_parse_expr (p, 0, error)) != NULL;
}

static gboolean
parse_items (Parser *p, GError **error)
{
  RulesStage stage;

  if (!next (p, error))
    return FALSE;
  while (p->tok.kind != RULES_TOK_EOF)
    {
      gboolean ok;
      if (p->tok.kind == RULES_TOK_INCLUDE)
        ok = parse_include (p, error);
      else if (p->tok.kind == RULES_TOK_LIST)
        ok = parse_list (p, error);
      else if (p->tok.kind == RULES_TOK_LET)
        ok = parse_let (p, error);
      else if (p->tok.kind == RULES_TOK_IDENT && rules_stage_from_name (p->tok.text, &stage))
        {
          ok = next (p, error) && expect (p, RULES_TOK_LBRACE, "'{' after stage name", error);
          while (ok && p->tok.kind == RULES_TOK_RULE)
            ok = parse_rule (p, stage, error);
          if (ok && p->tok.kind != RULES_TOK_RBRACE)
            {
              g_autofree char *what
                  = g_strdup_printf ("'rule' or '}' in %s block", rules_stage_name (stage));
              return fail_expected (p, error, what);
            }
          ok = ok && next (p, error);
        }
      else
        return fail_expected (p, error, "'include', 'list', 'let' or a stage name");
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

static gboolean
parse_source (RulesProgram *prog, const char *file, const char *text, gsize len, GPtrArray *stack,
              GError **error)
{
  Parser p = { 0 };
  gboolean ok;

  p.prog = prog;
  p.file = rules_program_intern_file (prog, file);
  p.dir = g_path_get_dirname (file);
  p.stack = stack;
  ok = rules_lexer_init (&p.lx, p.file, text, len, error) && parse_items (&p, error);
  rules_token_clear (&p.tok);
  g_free (p.dir);
  return ok;
}

gboolean
rules_parse_string (RulesProgram *prog, const char *name, const char *text, gsize len,
                    GError **error)
{
  g_autoptr (GPtrArray) stack = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (stack, g_canonicalize_filename (name, NULL));
  return parse_source (prog, name, text, len, stack, error);
}

gboolean
rules_parse_file (RulesProgram *prog, const char *path, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr (GError) local = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &text, &len, &local))
    {
      g_set_error (error, RULES_ERROR, RULES_ERROR_IO, "%s: cannot read rule file: %s", path,
                   local->message);
      return FALSE;
    }
  return rules_parse_string (prog, path, text, len, error);
}
