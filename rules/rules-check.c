/* SPDX-License-Identifier: MIT
 *
 * rules-check.c — name resolution, type checking and stage checking of a
 * parsed program, turning the parse tree into its compiled form in place.
 *
 * Contract: after rules_check() every NAME/CALL node is a LIT (let constant,
 * list), HOST (a RulesRef the engine answers), SETVAR (an index into
 * RulesState) or a function CALL with its id; every node has a static type
 * (RULES_TYPE_NONE = only known at run time: connector fields of unknown
 * type, var.NAME); let constants and constant literal lists are folded.
 * Nothing is looked up by name at run time.
 *
 * Errors (first one wins): RULES_ERROR_UNKNOWN for unknown names,
 * RULES_ERROR_TYPE for type mismatches, RULES_ERROR_STAGE for values and
 * actions used before (or outside) their stages, RULES_ERROR_INVALID for bad
 * reply codes, header names, duplicate definitions, non-constant lets.
 *
 * Coercions, decided here and documented in docs/rules.md:
 *  - string == ip compares the parsed address (a string that is not an
 *    address is unequal);
 *  - int and float compare and add numerically;
 *  - '+' with a string on either side concatenates, the other side formatted;
 *  - conditions and and/or/not operands must be booleans (no truthiness),
 *    except dynamically typed values, which are truthy when non-empty/non-zero.
 */
#include "rules/rules-private.h"

#include <string.h>

typedef struct
{
  const char *name;
  RulesVar var;
  RulesType type;
  gboolean ci;
  RulesStage first;
  gboolean takes_arg;
} VarInfo;

static const VarInfo var_table[] = {
  { "client.ip", RULES_VAR_CLIENT_IP, RULES_TYPE_IP, FALSE, RULES_STAGE_CONNECT, FALSE },
  { "client.port", RULES_VAR_CLIENT_PORT, RULES_TYPE_INT, FALSE, RULES_STAGE_CONNECT, FALSE },
  { "client.ptr", RULES_VAR_CLIENT_PTR, RULES_TYPE_STRING, TRUE, RULES_STAGE_CONNECT, FALSE },
  { "server.ip", RULES_VAR_SERVER_IP, RULES_TYPE_IP, FALSE, RULES_STAGE_CONNECT, FALSE },
  { "server.port", RULES_VAR_SERVER_PORT, RULES_TYPE_INT, FALSE, RULES_STAGE_CONNECT, FALSE },
  { "server.name", RULES_VAR_SERVER_NAME, RULES_TYPE_STRING, TRUE, RULES_STAGE_CONNECT, FALSE },
  { "session.id", RULES_VAR_SESSION_ID, RULES_TYPE_STRING, FALSE, RULES_STAGE_CONNECT, FALSE },
  { "now", RULES_VAR_NOW, RULES_TYPE_INT, FALSE, RULES_STAGE_CONNECT, FALSE },
  { "helo.name", RULES_VAR_HELO_NAME, RULES_TYPE_STRING, TRUE, RULES_STAGE_HELO, FALSE },
  { "tls.active", RULES_VAR_TLS_ACTIVE, RULES_TYPE_BOOL, FALSE, RULES_STAGE_HELO, FALSE },
  { "tls.version", RULES_VAR_TLS_VERSION, RULES_TYPE_STRING, FALSE, RULES_STAGE_HELO, FALSE },
  { "tls.cipher", RULES_VAR_TLS_CIPHER, RULES_TYPE_STRING, FALSE, RULES_STAGE_HELO, FALSE },
  { "tls.peer_subject", RULES_VAR_TLS_PEER_SUBJECT, RULES_TYPE_STRING, FALSE, RULES_STAGE_HELO,
    FALSE },
  { "client.authenticated", RULES_VAR_CLIENT_AUTHENTICATED, RULES_TYPE_BOOL, FALSE,
    RULES_STAGE_AUTH, FALSE },
  { "auth.user", RULES_VAR_AUTH_USER, RULES_TYPE_STRING, FALSE, RULES_STAGE_AUTH, FALSE },
  { "auth.mechanism", RULES_VAR_AUTH_MECHANISM, RULES_TYPE_STRING, TRUE, RULES_STAGE_AUTH, FALSE },
  { "mail.from", RULES_VAR_MAIL_FROM, RULES_TYPE_STRING, TRUE, RULES_STAGE_MAIL, FALSE },
  { "mail.from.local", RULES_VAR_MAIL_FROM_LOCAL, RULES_TYPE_STRING, TRUE, RULES_STAGE_MAIL,
    FALSE },
  { "mail.from.domain", RULES_VAR_MAIL_FROM_DOMAIN, RULES_TYPE_STRING, TRUE, RULES_STAGE_MAIL,
    FALSE },
  { "mail.param", RULES_VAR_MAIL_PARAM, RULES_TYPE_STRING, FALSE, RULES_STAGE_MAIL, TRUE },
  { "rcpt.to", RULES_VAR_RCPT_TO, RULES_TYPE_STRING, TRUE, RULES_STAGE_RCPT, FALSE },
  { "rcpt.local", RULES_VAR_RCPT_LOCAL, RULES_TYPE_STRING, TRUE, RULES_STAGE_RCPT, FALSE },
  { "rcpt.domain", RULES_VAR_RCPT_DOMAIN, RULES_TYPE_STRING, TRUE, RULES_STAGE_RCPT, FALSE },
  { "rcpt.count", RULES_VAR_RCPT_COUNT, RULES_TYPE_INT, FALSE, RULES_STAGE_RCPT, FALSE },
  { "rcpts", RULES_VAR_RCPTS, RULES_TYPE_STRV, TRUE, RULES_STAGE_RCPT, FALSE },
  { "header", RULES_VAR_HEADER, RULES_TYPE_STRING, FALSE, RULES_STAGE_DATA, TRUE },
  { "headers", RULES_VAR_HEADERS, RULES_TYPE_STRV, FALSE, RULES_STAGE_DATA, TRUE },
  { "has_header", RULES_VAR_HAS_HEADER, RULES_TYPE_BOOL, FALSE, RULES_STAGE_DATA, TRUE },
  { "subject", RULES_VAR_SUBJECT, RULES_TYPE_STRING, FALSE, RULES_STAGE_DATA, FALSE },
  { "message.size", RULES_VAR_MESSAGE_SIZE, RULES_TYPE_INT, FALSE, RULES_STAGE_DATA, FALSE },
  { "message.id", RULES_VAR_MESSAGE_ID, RULES_TYPE_STRING, FALSE, RULES_STAGE_DATA, FALSE },
  { "body", RULES_VAR_BODY, RULES_TYPE_STRING, FALSE, RULES_STAGE_DATA, FALSE },
  { "mime.valid", RULES_VAR_MIME_VALID, RULES_TYPE_BOOL, FALSE, RULES_STAGE_DATA, FALSE },
  { "mime.errors", RULES_VAR_MIME_ERRORS, RULES_TYPE_STRV, FALSE, RULES_STAGE_DATA, FALSE },
  { "mime.parts", RULES_VAR_MIME_PARTS, RULES_TYPE_INT, FALSE, RULES_STAGE_DATA, FALSE },
  { "mime.depth", RULES_VAR_MIME_DEPTH, RULES_TYPE_INT, FALSE, RULES_STAGE_DATA, FALSE },
  { "mime.attachments", RULES_VAR_MIME_ATTACHMENTS, RULES_TYPE_STRV, FALSE, RULES_STAGE_DATA,
    FALSE },
  { "mime.content_types", RULES_VAR_MIME_CONTENT_TYPES, RULES_TYPE_STRV, TRUE, RULES_STAGE_DATA,
    FALSE },
  { "queue.id", RULES_VAR_QUEUE_ID, RULES_TYPE_STRING, FALSE, RULES_STAGE_POSTQ, FALSE },
  { "delivery.attempts", RULES_VAR_DELIVERY_ATTEMPTS, RULES_TYPE_INT, FALSE, RULES_STAGE_POSTQ,
    FALSE },
  { "macro", RULES_VAR_MACRO, RULES_TYPE_STRING, FALSE, RULES_STAGE_CONNECT, TRUE },
};

const char *
rules_var_name (RulesVar var)
{
  for (guint i = 0; i < G_N_ELEMENTS (var_table); i++)
    if (var_table[i].var == var)
      return var_table[i].name;
  return var == RULES_VAR_CONNECTOR ? "connector" : "?";
}

/* Fields every connector has (RULES.md "Connector results"). */
static const RulesFieldDecl common_fields[] = {
  { "verdict", RULES_TYPE_STRING, FALSE }, { "code", RULES_TYPE_INT, FALSE },
  { "text", RULES_TYPE_STRING, FALSE },    { "error", RULES_TYPE_BOOL, FALSE },
  { "elapsed", RULES_TYPE_FLOAT, FALSE },
};

typedef struct
{
  const char *name;
  RulesFunc fn;
  guint min, max;
  RulesType result;
} FuncInfo;

static const FuncInfo func_table[] = {
  { "lower", RULES_FN_LOWER, 1, 1, RULES_TYPE_STRING },
  { "upper", RULES_FN_UPPER, 1, 1, RULES_TYPE_STRING },
  { "len", RULES_FN_LEN, 1, 1, RULES_TYPE_INT },
  { "domain", RULES_FN_DOMAIN, 1, 1, RULES_TYPE_STRING },
  { "local", RULES_FN_LOCAL, 1, 1, RULES_TYPE_STRING },
  { "starts_with", RULES_FN_STARTS_WITH, 2, 2, RULES_TYPE_BOOL },
  { "ends_with", RULES_FN_ENDS_WITH, 2, 2, RULES_TYPE_BOOL },
  { "contains", RULES_FN_CONTAINS, 2, 2, RULES_TYPE_BOOL },
  { "dnsbl", RULES_FN_DNSBL, 1, 2, RULES_TYPE_BOOL },
  { "resolves", RULES_FN_RESOLVES, 1, 1, RULES_TYPE_BOOL },
  { "in_file", RULES_FN_IN_FILE, 2, 2, RULES_TYPE_BOOL },
  { "env", RULES_FN_ENV, 1, 1, RULES_TYPE_STRING },
  { "rate", RULES_FN_RATE, 3, 3, RULES_TYPE_BOOL },
  { "concurrency", RULES_FN_CONCURRENCY, 1, 1, RULES_TYPE_INT },
  { "greylisted", RULES_FN_GREYLISTED, 0, 0, RULES_TYPE_BOOL },
};

const char *
rules_func_name (RulesFunc fn)
{
  for (guint i = 0; i < G_N_ELEMENTS (func_table); i++)
    if (func_table[i].fn == fn)
      return func_table[i].name;
  return "?";
}

typedef RulesCheck Check;

gboolean
rules_check_fail (RulesCheck *c, const RulesNode *n, RulesError code, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  rules_set_error (c->error, code, n->file, n->line, n->col, "%s", msg);
  return FALSE;
}

#define err rules_check_fail

static char *
dotted (const RulesNode *n)
{
  return g_strjoinv (".", n->path);
}

static gboolean
is_num (RulesType t)
{
  return t == RULES_TYPE_INT || t == RULES_TYPE_FLOAT;
}

static gboolean
is_const (const RulesNode *n)
{
  switch (n->kind)
    {
      case RULES_NODE_LIT:
        return TRUE;
      case RULES_NODE_HOST:
      case RULES_NODE_SETVAR:
      case RULES_NODE_NAME:
        return FALSE;
      case RULES_NODE_CALL:
        if (n->index == RULES_FN_DNSBL || n->index == RULES_FN_RESOLVES
            || n->index == RULES_FN_IN_FILE || n->index >= RULES_FN_RATE)
          return FALSE;
        break;
      default:
        break;
    }
  if ((n->a && !is_const (n->a)) || (n->b && !is_const (n->b)))
    return FALSE;
  for (guint i = 0; i < n->n_args; i++)
    if (!is_const (n->args[i]))
      return FALSE;
  return TRUE;
}

static gboolean check_node (Check *c, RulesNode *n);
static gboolean fold_list (Check *c, RulesNode *n, const char *name);

static gboolean
resolve_host (Check *c, RulesNode *n, const VarInfo *vi, const char *name)
{
  if (c->let)
    return err (c, n, RULES_ERROR_INVALID, "let '%s' must be a constant, but reads '%s'", c->let,
                name);
  if (c->stage < vi->first)
    return err (c, n, RULES_ERROR_STAGE, "'%s' is not available in %s (only from %s on)", name,
                rules_stage_name (c->stage), rules_stage_name (vi->first));
  n->kind = RULES_NODE_HOST;
  n->ref.var = vi->var;
  n->type = vi->type;
  n->ci = vi->ci;
  c->prog->reads[vi->var] = TRUE;
  return TRUE;
}

static const RulesConnectorDecl *
find_connector (Check *c, const char *name)
{
  for (gsize i = 0; c->opt && i < c->opt->n_connectors; i++)
    if (g_strcmp0 (c->opt->connectors[i].name, name) == 0)
      return &c->opt->connectors[i];
  return NULL;
}

/* NAME.field: TRUE with *field NULL and any_field if any field is accepted. */
static gboolean
resolve_connector (Check *c, RulesNode *n, const RulesConnectorDecl *cd, gboolean with_arg)
{
  const RulesFieldDecl *fd = NULL;
  g_autofree char *name = dotted (n);

  if (c->let)
    return err (c, n, RULES_ERROR_INVALID, "let '%s' must be a constant, but reads '%s'", c->let,
                name);
  if (g_strv_length (n->path) != 2)
    return err (c, n, RULES_ERROR_UNKNOWN, "unknown name '%s' (connector results are NAME.field)",
                name);
  for (guint i = 0; !with_arg && i < G_N_ELEMENTS (common_fields); i++)
    if (strcmp (common_fields[i].name, n->path[1]) == 0)
      fd = &common_fields[i];
  for (gsize i = 0; fd == NULL && i < cd->n_fields; i++)
    if (g_strcmp0 (cd->fields[i].name, n->path[1]) == 0 && cd->fields[i].takes_arg == with_arg)
      fd = &cd->fields[i];
  if (fd == NULL && !cd->any_field)
    return err (c, n, RULES_ERROR_UNKNOWN, "connector '%s' has no field '%s%s'", cd->name,
                n->path[1], with_arg ? "(...)" : "");
  n->ref.var = RULES_VAR_CONNECTOR;
  n->ref.connector = n->path[0];
  n->ref.field = n->path[1];
  n->type = fd ? fd->type : RULES_TYPE_NONE;
  c->prog->reads[RULES_VAR_CONNECTOR] = TRUE;
  if (!with_arg)
    n->kind = RULES_NODE_HOST;
  return TRUE;
}

static gboolean
check_name (Check *c, RulesNode *n)
{
  g_autofree char *name = dotted (n);
  const RulesConnectorDecl *cd;
  gsize depth = g_strv_length (n->path);

  if (strcmp (n->path[0], "var") == 0 && depth == 2)
    {
      gpointer idx = g_hash_table_lookup (c->vars, n->path[1]);
      if (idx == NULL)
        return err (c, n, RULES_ERROR_UNKNOWN, "variable '%s' is read but never set", name);
      if (c->let)
        return err (c, n, RULES_ERROR_INVALID, "let '%s' must be a constant, but reads '%s'",
                    c->let, name);
      n->kind = RULES_NODE_SETVAR;
      n->index = GPOINTER_TO_INT (idx) - 1;
      n->type = RULES_TYPE_NONE;
      return TRUE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (var_table); i++)
    if (!var_table[i].takes_arg && strcmp (var_table[i].name, name) == 0)
      return resolve_host (c, n, &var_table[i], name);
  if (depth == 1)
    {
      RulesLet *let = g_hash_table_lookup (c->lets, name);
      RulesListDef *def = g_hash_table_lookup (c->lists, name);
      if (let)
        {
          n->kind = RULES_NODE_LIT;
          n->lit = let->expr->lit;
          n->type = let->expr->type;
          n->ci = let->expr->ci;
          return TRUE;
        }
      if (def && def->list == NULL)
        {
          const char *saved = c->let;
          if (def->busy)
            return err (c, n, RULES_ERROR_INVALID, "list '%s' contains itself", name);
          def->busy = TRUE;
          c->let = NULL;
          for (guint i = 0; i < def->expr->n_args; i++)
            if (!check_node (c, def->expr->args[i]))
              return FALSE;
          if (!fold_list (c, def->expr, def->name))
            return FALSE;
          c->let = saved;
          def->list = (RulesList *)def->expr->lit.list;
          def->busy = FALSE;
        }
      if (def)
        {
          n->kind = RULES_NODE_LIT;
          n->lit.type = RULES_TYPE_LIST;
          n->lit.list = def->list;
          n->type = RULES_TYPE_LIST;
          return TRUE;
        }
      for (guint i = 0; i < c->prog->lets->len; i++)
        if (strcmp (((RulesLet *)c->prog->lets->pdata[i])->name, name) == 0)
          return err (c, n, RULES_ERROR_UNKNOWN, "constant '%s' is used before its definition",
                      name);
    }
  if ((cd = find_connector (c, n->path[0])) != NULL)
    return resolve_connector (c, n, cd, FALSE);
  for (guint i = 0; i < G_N_ELEMENTS (var_table); i++)
    if (var_table[i].takes_arg && strcmp (var_table[i].name, name) == 0)
      return err (c, n, RULES_ERROR_TYPE, "'%s' needs an argument: %s(\"...\")", name, name);
  return err (c, n, RULES_ERROR_UNKNOWN, "unknown name '%s'", name);
}

static gboolean
want_arg (Check *c, RulesNode *n, guint i, const char *fname, gboolean string_only)
{
  RulesType t = n->args[i]->type;
  if (t == RULES_TYPE_NONE || t == RULES_TYPE_STRING)
    return TRUE;
  if (!string_only && (t == RULES_TYPE_STRV || t == RULES_TYPE_IP))
    return TRUE;
  return err (c, n->args[i], RULES_ERROR_TYPE, "argument %u of '%s' must be a string, got %s",
              i + 1, fname, rules_type_name (t));
}

static gboolean
check_call (Check *c, RulesNode *n)
{
  g_autofree char *name = dotted (n);
  const RulesConnectorDecl *cd;

  for (guint i = 0; i < n->n_args; i++)
    if (!check_node (c, n->args[i]))
      return FALSE;

  /* Host values that take an argument: header("X"), mail.param("SIZE") ... */
  for (guint i = 0; i < G_N_ELEMENTS (var_table); i++)
    if (var_table[i].takes_arg && strcmp (var_table[i].name, name) == 0)
      {
        if (n->n_args != 1)
          return err (c, n, RULES_ERROR_TYPE, "'%s' takes 1 argument, got %u", name, n->n_args);
        if (!want_arg (c, n, 0, name, TRUE) || !resolve_host (c, n, &var_table[i], name))
          return FALSE;
        n->a = n->args[0];
        return TRUE;
      }
  if (g_strv_length (n->path) > 1 && (cd = find_connector (c, n->path[0])) != NULL)
    {
      if (n->n_args != 1)
        return err (c, n, RULES_ERROR_TYPE, "'%s' takes 1 argument, got %u", name, n->n_args);
      if (!want_arg (c, n, 0, name, TRUE) || !resolve_connector (c, n, cd, TRUE))
        return FALSE;
      n->kind = RULES_NODE_HOST;
      n->a = n->args[0];
      return TRUE;
    }
  if (strcmp (name, "now") == 0)
    {
      if (n->n_args != 0)
        return err (c, n, RULES_ERROR_TYPE, "'now' takes no argument, got %u", n->n_args);
      return resolve_host (c, n, &var_table[7], name);
    }
  for (guint i = 0; i < G_N_ELEMENTS (func_table); i++)
    {
      const FuncInfo *fi = &func_table[i];
      if (strcmp (fi->name, name) != 0)
        continue;
      if (n->n_args < fi->min || n->n_args > fi->max)
        {
          if (fi->min == fi->max)
            return err (c, n, RULES_ERROR_TYPE, "'%s' takes %u argument%s, got %u", name, fi->min,
                        fi->min == 1 ? "" : "s", n->n_args);
          return err (c, n, RULES_ERROR_TYPE, "'%s' takes %u to %u arguments, got %u", name,
                      fi->min, fi->max, n->n_args);
        }
      n->index = fi->fn;
      n->type = fi->result;
      switch (fi->fn)
        {
          case RULES_FN_LEN:
            {
              RulesType t = n->args[0]->type;
              if (t != RULES_TYPE_NONE && t != RULES_TYPE_STRING && t != RULES_TYPE_STRV
                  && t != RULES_TYPE_LIST)
                return err (c, n->args[0], RULES_ERROR_TYPE,
                            "argument of 'len' must be a string or a list, got %s",
                            rules_type_name (t));
              break;
            }
          case RULES_FN_DOMAIN:
          case RULES_FN_LOCAL:
            n->ci = TRUE;
            if (!want_arg (c, n, 0, name, TRUE))
              return FALSE;
            break;
          case RULES_FN_CONTAINS:
            if (!want_arg (c, n, 0, name, FALSE) || !want_arg (c, n, 1, name, TRUE))
              return FALSE;
            break;
          case RULES_FN_DNSBL:
            if (!want_arg (c, n, 0, name, TRUE))
              return FALSE;
            if (n->n_args == 2 && n->args[1]->type != RULES_TYPE_IP
                && !want_arg (c, n, 1, name, TRUE))
              return FALSE;
            if (n->n_args == 1)
              c->prog->reads[RULES_VAR_CLIENT_IP] = TRUE;
            break;
          case RULES_FN_RATE:
          case RULES_FN_CONCURRENCY:
          case RULES_FN_GREYLISTED:
            if (!rules_check_state_call (c, n, name))
              return FALSE;
            break;
          case RULES_FN_IN_FILE:
            {
              g_autofree char *dir = NULL, *path = NULL;
              RulesFileCache *fc;
              if (n->args[0]->kind != RULES_NODE_LIT || n->args[0]->type != RULES_TYPE_STRING)
                return err (c, n->args[0], RULES_ERROR_TYPE,
                            "first argument of 'in_file' must be a constant path string");
              if (!want_arg (c, n, 1, name, FALSE))
                return FALSE;
              dir = g_path_get_dirname (n->file);
              path = g_path_is_absolute (n->args[0]->str)
                         ? g_strdup (n->args[0]->str)
                         : g_build_filename (dir, n->args[0]->str, NULL);
              fc = rules_file_cache_new (path);
              g_ptr_array_add (c->prog->caches, fc);
              n->data = fc;
              break;
            }
          default:
            for (guint a = 0; a < n->n_args; a++)
              if (!want_arg (c, n, a, name, TRUE))
                return FALSE;
            break;
        }
      return TRUE;
    }
  return err (c, n, RULES_ERROR_UNKNOWN, "unknown function '%s'", name);
}

static gboolean
check_in (Check *c, RulesNode *n)
{
  RulesType l = n->a->type, r = n->b->type;

  if (l == RULES_TYPE_REGEX || l == RULES_TYPE_LIST || l == RULES_TYPE_CIDR)
    return err (c, n->a, RULES_ERROR_TYPE, "a %s cannot be on the left of 'in'",
                rules_type_name (l));
  switch (r)
    {
      case RULES_TYPE_NONE:
      case RULES_TYPE_LIST:
      case RULES_TYPE_STRV:
        return TRUE;
      case RULES_TYPE_STRING:
        if (l != RULES_TYPE_NONE && l != RULES_TYPE_STRING && l != RULES_TYPE_STRV)
          return err (c, n, RULES_ERROR_TYPE, "'in' a string needs a string on the left, got %s",
                      rules_type_name (l));
        return TRUE;
      case RULES_TYPE_CIDR:
        if (l != RULES_TYPE_NONE && l != RULES_TYPE_IP && l != RULES_TYPE_STRING)
          return err (c, n, RULES_ERROR_TYPE, "'in' a network needs an ip on the left, got %s",
                      rules_type_name (l));
        return TRUE;
      default:
        return err (c, n->b, RULES_ERROR_TYPE,
                    "right side of 'in' must be a list, a network or a string, got %s",
                    rules_type_name (r));
    }
}

static gboolean
comparable (RulesType a, RulesType b)
{
  if (a == RULES_TYPE_NONE || b == RULES_TYPE_NONE)
    return TRUE;
  if (is_num (a) && is_num (b))
    return TRUE;
  if ((a == RULES_TYPE_STRING && b == RULES_TYPE_IP)
      || (a == RULES_TYPE_IP && b == RULES_TYPE_STRING))
    return TRUE;
  return a == b && a != RULES_TYPE_REGEX && a != RULES_TYPE_LIST && a != RULES_TYPE_STRV;
}

static gboolean
check_ops (Check *c, RulesNode *n)
{
  RulesType l = n->a ? n->a->type : RULES_TYPE_NONE;
  RulesType r = n->b ? n->b->type : RULES_TYPE_NONE;
  const char *opname;

  switch (n->kind)
    {
      case RULES_NODE_NOT:
      case RULES_NODE_AND:
      case RULES_NODE_OR:
        opname = n->kind == RULES_NODE_NOT ? "not" : n->kind == RULES_NODE_AND ? "and" : "or";
        if (l != RULES_TYPE_NONE && l != RULES_TYPE_BOOL)
          return err (c, n->a, RULES_ERROR_TYPE, "operand of '%s' must be a boolean, got %s",
                      opname, rules_type_name (l));
        if (n->b && r != RULES_TYPE_NONE && r != RULES_TYPE_BOOL)
          return err (c, n->b, RULES_ERROR_TYPE, "operand of '%s' must be a boolean, got %s",
                      opname, rules_type_name (r));
        n->type = RULES_TYPE_BOOL;
        return TRUE;
      case RULES_NODE_NEG:
        if (l != RULES_TYPE_NONE && !is_num (l))
          return err (c, n, RULES_ERROR_TYPE, "operator '-' needs a number, got %s",
                      rules_type_name (l));
        n->type = l;
        return TRUE;
      case RULES_NODE_ADD:
        if (l == RULES_TYPE_STRING || r == RULES_TYPE_STRING)
          {
            RulesType o = l == RULES_TYPE_STRING ? r : l;
            if (o == RULES_TYPE_REGEX || o == RULES_TYPE_LIST)
              return err (c, n, RULES_ERROR_TYPE, "cannot add a %s to a string",
                          rules_type_name (o));
            n->type = RULES_TYPE_STRING;
            return TRUE;
          }
        if ((l != RULES_TYPE_NONE && !is_num (l)) || (r != RULES_TYPE_NONE && !is_num (r)))
          return err (c, n, RULES_ERROR_TYPE,
                      "operator '+' needs numbers or strings, got %s and %s", rules_type_name (l),
                      rules_type_name (r));
        n->type = l == RULES_TYPE_NONE || r == RULES_TYPE_NONE     ? RULES_TYPE_NONE
                  : l == RULES_TYPE_FLOAT || r == RULES_TYPE_FLOAT ? RULES_TYPE_FLOAT
                                                                   : RULES_TYPE_INT;
        return TRUE;
      case RULES_NODE_SUB:
        if ((l != RULES_TYPE_NONE && !is_num (l)) || (r != RULES_TYPE_NONE && !is_num (r)))
          return err (c, n, RULES_ERROR_TYPE, "operator '-' needs numbers, got %s and %s",
                      rules_type_name (l), rules_type_name (r));
        n->type = l == RULES_TYPE_NONE || r == RULES_TYPE_NONE     ? RULES_TYPE_NONE
                  : l == RULES_TYPE_FLOAT || r == RULES_TYPE_FLOAT ? RULES_TYPE_FLOAT
                                                                   : RULES_TYPE_INT;
        return TRUE;
      case RULES_NODE_CMP:
        n->type = RULES_TYPE_BOOL;
        opname = rules_tok_kind_name (n->op);
        if (n->op == RULES_TOK_EQ || n->op == RULES_TOK_NE)
          {
            if (!comparable (l, r))
              return err (c, n, RULES_ERROR_TYPE, "cannot compare %s with %s", rules_type_name (l),
                          rules_type_name (r));
            return TRUE;
          }
        if ((l == RULES_TYPE_NONE || is_num (l) || l == RULES_TYPE_STRING)
            && (r == RULES_TYPE_NONE || is_num (r) || r == RULES_TYPE_STRING)
            && !(is_num (l) && r == RULES_TYPE_STRING) && !(is_num (r) && l == RULES_TYPE_STRING))
          return TRUE;
        return err (c, n, RULES_ERROR_TYPE,
                    "operator %s needs two numbers or two strings, got %s and %s", opname,
                    rules_type_name (l), rules_type_name (r));
      case RULES_NODE_MATCH:
        n->type = RULES_TYPE_BOOL;
        opname = n->op == RULES_TOK_MATCH ? "=~" : "!~";
        if (l == RULES_TYPE_REGEX)
          return err (c, n->a, RULES_ERROR_TYPE,
                      "regex on the left of '%s' (write: value %s /regex/)", opname, opname);
        if (r != RULES_TYPE_REGEX)
          return err (c, n->b, RULES_ERROR_TYPE, "right side of '%s' must be a regex, got %s",
                      opname, rules_type_name (r));
        if (l != RULES_TYPE_NONE && l != RULES_TYPE_STRING && l != RULES_TYPE_STRV)
          return err (c, n->a, RULES_ERROR_TYPE, "cannot match a value of type %s against a regex",
                      rules_type_name (l));
        return TRUE;
      case RULES_NODE_IN:
        n->type = RULES_TYPE_BOOL;
        return check_in (c, n);
      default:
        return TRUE;
    }
}

/* A literal list whose entries are all constant becomes one compiled list. */
static gboolean
fold_list (Check *c, RulesNode *n, const char *name)
{
  RulesList *l;

  for (guint i = 0; i < n->n_args; i++)
    if (!is_const (n->args[i]))
      {
        if (name)
          return err (c, n->args[i], RULES_ERROR_INVALID, "entries of list '%s' must be constants",
                      name);
        n->type = RULES_TYPE_LIST;
        return TRUE;
      }
  l = rules_list_new (name, RULES_LIST_MIXED);
  g_ptr_array_add (c->prog->lists, l);
  for (guint i = 0; i < n->n_args; i++)
    {
      const char *why = NULL;
      if (n->args[i]->kind != RULES_NODE_LIT)
        rules_eval_fold (c->prog, n->args[i]);
      if (!rules_list_add_value (l, &n->args[i]->lit, &why))
        return err (c, n->args[i], RULES_ERROR_TYPE, "%s, got %s", why,
                    rules_type_name (n->args[i]->lit.type));
    }
  rules_list_seal (l);
  n->kind = RULES_NODE_LIT;
  n->lit.type = RULES_TYPE_LIST;
  n->lit.list = l;
  n->type = RULES_TYPE_LIST;
  return TRUE;
}

static gboolean
check_node (Check *c, RulesNode *n)
{
  switch (n->kind)
    {
      case RULES_NODE_LIT:
        n->type = n->lit.type;
        n->ci = n->lit.ci;
        return TRUE;
      case RULES_NODE_NAME:
        return check_name (c, n);
      case RULES_NODE_CALL:
        return check_call (c, n);
      case RULES_NODE_LISTLIT:
        for (guint i = 0; i < n->n_args; i++)
          if (!check_node (c, n->args[i]))
            return FALSE;
        return fold_list (c, n, NULL);
      default:
        if (n->a && !check_node (c, n->a))
          return FALSE;
        if (n->b && !check_node (c, n->b))
          return FALSE;
        return check_ops (c, n);
    }
}

gboolean
rules_check_expr (RulesCheck *c, RulesNode *n)
{
  return check_node (c, n);
}

gboolean
rules_check_is_const (const RulesNode *n)
{
  return is_const (n);
}

gboolean
rules_check_fold_list (RulesCheck *c, RulesNode *n, const char *name)
{
  return fold_list (c, n, name);
}
