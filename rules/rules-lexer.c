/* SPDX-License-Identifier: MIT
 *
 * rules-lexer.c — turns vsl source text into tokens with line:col positions.
 *
 * Contract: the whole input is checked to be UTF-8 first (the error names
 * the line:col of the first bad byte); columns count characters, from 1.
 * Every lexical error is a RULES_ERROR_SYNTAX "file:line:col: message".
 *
 * Context-free decisions, because vsl has no division operator:
 *  - '/' always starts a regex literal (/.../ flags i m) — except right after
 *    an address, where it is the prefix of a CIDR (10.0.0.0/8);
 *  - a run of hex digits, ':' and '.' that contains ':' and parses with
 *    inet_pton(AF_INET6) is an IPv6 address (so fe80::1 is not an identifier);
 *  - digits: d.d.d is an enhanced status code, d.d.d.d an IPv4 address, d.d a
 *    float, d followed by K/M/G a size (binary), by s/m/h/d a duration.
 */
#include "rules/rules-private.h"

#include <arpa/inet.h>
#include <string.h>

static const struct
{
  const char *word;
  RulesTokKind kind;
} keywords[] = {
  { "include", RULES_TOK_INCLUDE }, { "list", RULES_TOK_LIST }, { "file", RULES_TOK_FILE },
  { "as", RULES_TOK_AS },           { "let", RULES_TOK_LET },   { "rule", RULES_TOK_RULE },
  { "when", RULES_TOK_WHEN },       { "and", RULES_TOK_AND },   { "or", RULES_TOK_OR },
  { "not", RULES_TOK_NOT },         { "in", RULES_TOK_IN },     { "true", RULES_TOK_TRUE },
  { "false", RULES_TOK_FALSE },
};

static const char *const kind_names[] = {
  [RULES_TOK_EOF] = "end of file",
  [RULES_TOK_IDENT] = "identifier",
  [RULES_TOK_STRING] = "string",
  [RULES_TOK_INT] = "integer",
  [RULES_TOK_FLOAT] = "number",
  [RULES_TOK_SIZE] = "size",
  [RULES_TOK_DURATION] = "duration",
  [RULES_TOK_IP] = "IP address",
  [RULES_TOK_CIDR] = "network",
  [RULES_TOK_ENHANCED] = "enhanced status code",
  [RULES_TOK_REGEX] = "regex",
  [RULES_TOK_INCLUDE] = "'include'",
  [RULES_TOK_LIST] = "'list'",
  [RULES_TOK_FILE] = "'file'",
  [RULES_TOK_AS] = "'as'",
  [RULES_TOK_LET] = "'let'",
  [RULES_TOK_RULE] = "'rule'",
  [RULES_TOK_WHEN] = "'when'",
  [RULES_TOK_AND] = "'and'",
  [RULES_TOK_OR] = "'or'",
  [RULES_TOK_NOT] = "'not'",
  [RULES_TOK_IN] = "'in'",
  [RULES_TOK_TRUE] = "'true'",
  [RULES_TOK_FALSE] = "'false'",
  [RULES_TOK_LPAREN] = "'('",
  [RULES_TOK_RPAREN] = "')'",
  [RULES_TOK_LBRACKET] = "'['",
  [RULES_TOK_RBRACKET] = "']'",
  [RULES_TOK_LBRACE] = "'{'",
  [RULES_TOK_RBRACE] = "'}'",
  [RULES_TOK_COMMA] = "','",
  [RULES_TOK_DOT] = "'.'",
  [RULES_TOK_ASSIGN] = "'='",
  [RULES_TOK_ARROW] = "'=>'",
  [RULES_TOK_EQ] = "'=='",
  [RULES_TOK_NE] = "'!='",
  [RULES_TOK_LT] = "'<'",
  [RULES_TOK_LE] = "'<='",
  [RULES_TOK_GT] = "'>'",
  [RULES_TOK_GE] = "'>='",
  [RULES_TOK_MATCH] = "'=~'",
  [RULES_TOK_NOMATCH] = "'!~'",
  [RULES_TOK_PLUS] = "'+'",
  [RULES_TOK_MINUS] = "'-'",
};

const char *
rules_tok_kind_name (RulesTokKind kind)
{
  if ((guint)kind >= G_N_ELEMENTS (kind_names) || kind_names[kind] == NULL)
    return "?";
  return kind_names[kind];
}

gboolean
rules_lexer_init (RulesLexer *lx, const char *file, const char *src, gsize len, GError **error)
{
  const char *bad = NULL;

  memset (lx, 0, sizeof *lx);
  lx->file = file;
  lx->src = src;
  lx->len = len;
  lx->line = 1;
  lx->col = 1;
  if (len > RULES_MAX_SOURCE_SIZE)
    {
      rules_set_error (error, RULES_ERROR_IO, file, 1, 1, "file is larger than %u bytes",
                       (guint)RULES_MAX_SOURCE_SIZE);
      return FALSE;
    }
  if (!g_utf8_validate_len (src, len, &bad))
    {
      guint line = 1, col = 1;
      for (const char *p = src; p < bad; p++)
        {
          if (*p == '\n')
            {
              line++;
              col = 1;
            }
          else if (((guchar)*p & 0xc0) != 0x80)
            col++;
        }
      rules_set_error (error, RULES_ERROR_SYNTAX, file, line, col, "invalid UTF-8");
      return FALSE;
    }
  return TRUE;
}

void
rules_token_clear (RulesToken *tok)
{
  g_clear_pointer (&tok->text, g_free);
  memset (tok, 0, sizeof *tok);
}

char *
rules_token_describe (const RulesLexer *lx, const RulesToken *tok)
{
  gsize n = tok->end - tok->start;

  switch (tok->kind)
    {
      case RULES_TOK_EOF:
        return g_strdup ("end of file");
      case RULES_TOK_STRING:
        if (tok->len > 32)
          return g_strdup_printf ("string \"%.32s...\"", tok->text);
        return g_strdup_printf ("string \"%s\"", tok->text);
      default:
        if (n > 32)
          return g_strdup_printf ("'%.*s...'", 32, lx->src + tok->start);
        return g_strdup_printf ("'%.*s'", (int)n, lx->src + tok->start);
    }
}

static inline int
peek (const RulesLexer *lx, gsize off)
{
  return lx->pos + off < lx->len ? (guchar)lx->src[lx->pos + off] : -1;
}

/* Advances one byte, keeping line:col in characters. */
static void
advance (RulesLexer *lx)
{
  guchar c = (guchar)lx->src[lx->pos++];
  if (c == '\n')
    {
      lx->line++;
      lx->col = 1;
    }
  else if ((c & 0xc0) != 0x80)
    lx->col++;
}

static void
advance_n (RulesLexer *lx, gsize n)
{
  while (n-- > 0 && lx->pos < lx->len)
    advance (lx);
}

static gboolean
is_ident_char (int c)
{
  return c >= 0 && (g_ascii_isalnum (c) || c == '_');
}

static gboolean
lex_string (RulesLexer *lx, RulesToken *tok, GError **error)
{
  g_autoptr (GString) s = g_string_new (NULL);

  advance (lx); /* opening quote */
  for (;;)
    {
      int c = peek (lx, 0);
      if (c < 0 || c == '\n')
        {
          rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                           "unterminated string");
          return FALSE;
        }
      if (c == '"')
        {
          advance (lx);
          break;
        }
      if (c == '\\')
        {
          int e = peek (lx, 1);
          char out;
          switch (e)
            {
              case '"':
                out = '"';
                break;
              case '\\':
                out = '\\';
                break;
              case 'n':
                out = '\n';
                break;
              case 't':
                out = '\t';
                break;
              default:
                rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, lx->line, lx->col,
                                 "invalid escape in string (only \\\" \\\\ \\n \\t)");
                return FALSE;
            }
          g_string_append_c (s, out);
          advance_n (lx, 2);
        }
      else
        {
          g_string_append_c (s, (char)c);
          advance (lx);
        }
      if (s->len > RULES_MAX_STRING_LEN)
        {
          rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                           "string longer than %u bytes", (guint)RULES_MAX_STRING_LEN);
          return FALSE;
        }
    }
  tok->kind = RULES_TOK_STRING;
  tok->len = s->len;
  tok->text = g_string_free (g_steal_pointer (&s), FALSE);
  return TRUE;
}

static gboolean
lex_regex (RulesLexer *lx, RulesToken *tok, GError **error)
{
  g_autoptr (GString) s = g_string_new (NULL);

  advance (lx); /* opening slash */
  for (;;)
    {
      int c = peek (lx, 0);
      if (c < 0 || c == '\n')
        {
          rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                           "unterminated regex");
          return FALSE;
        }
      if (c == '/')
        {
          advance (lx);
          break;
        }
      if (c == '\\' && peek (lx, 1) == '/')
        {
          /* \/ is how a slash is written inside /.../ */
          g_string_append_c (s, '/');
          advance_n (lx, 2);
          continue;
        }
      if (c == '\\' && peek (lx, 1) >= 0 && peek (lx, 1) != '\n')
        {
          g_string_append_c (s, '\\');
          advance (lx);
          c = peek (lx, 0);
        }
      g_string_append_c (s, (char)c);
      advance (lx);
      if (s->len > RULES_MAX_STRING_LEN)
        {
          rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                           "regex longer than %u bytes", (guint)RULES_MAX_STRING_LEN);
          return FALSE;
        }
    }
  while (is_ident_char (peek (lx, 0)))
    {
      int f = peek (lx, 0);
      if (f == 'i')
        tok->re_flags |= RULES_RE_I;
      else if (f == 'm')
        tok->re_flags |= RULES_RE_M;
      else
        {
          rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, lx->line, lx->col,
                           "unknown regex flag '%c' (flags are i and m)", f);
          return FALSE;
        }
      advance (lx);
    }
  tok->kind = RULES_TOK_REGEX;
  tok->len = s->len;
  tok->text = g_string_free (g_steal_pointer (&s), FALSE);
  return TRUE;
}

/* An optional "/N" after an address: makes it a CIDR. */
static gboolean
lex_prefix (RulesLexer *lx, RulesToken *tok, GError **error)
{
  guint max = tok->ip.family == 4 ? 32 : 128;
  guint v = 0, digits = 0;
  RulesIp *ip = &tok->ip;

  if (peek (lx, 0) != '/' || !g_ascii_isdigit (peek (lx, 1)))
    return TRUE;
  advance (lx);
  while (g_ascii_isdigit (peek (lx, 0)) && digits < 4)
    {
      v = v * 10 + (guint)(peek (lx, 0) - '0');
      digits++;
      advance (lx);
    }
  if (v > max || is_ident_char (peek (lx, 0)))
    {
      rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                       "invalid network prefix length (0-%u)", max);
      return FALSE;
    }
  ip->prefix = (guint8)v;
  /* Clear host bits so that membership is a plain prefix compare. */
  for (guint b = v; b < max; b++)
    ip->addr[b / 8] &= (guint8) ~(0x80 >> (b % 8));
  tok->kind = RULES_TOK_CIDR;
  return TRUE;
}

/* Tries an IPv6 address at the current position; FALSE (nothing consumed) if none. */
static gboolean
try_ipv6 (RulesLexer *lx, RulesToken *tok)
{
  gsize n = 0;
  gboolean colon = FALSE;
  char buf[INET6_ADDRSTRLEN + 1];

  for (;;)
    {
      int c = peek (lx, n);
      if (c < 0 || !(g_ascii_isxdigit (c) || c == ':' || c == '.'))
        break;
      colon |= c == ':';
      n++;
    }
  /* A trailing '.' belongs to the next token (never part of an address). */
  while (n > 0 && lx->src[lx->pos + n - 1] == '.')
    n--;
  if (!colon || n >= sizeof buf || is_ident_char (peek (lx, n)))
    return FALSE;
  memcpy (buf, lx->src + lx->pos, n);
  buf[n] = '\0';
  memset (&tok->ip, 0, sizeof tok->ip);
  if (inet_pton (AF_INET6, buf, tok->ip.addr) != 1)
    return FALSE;
  tok->ip.family = 6;
  tok->ip.prefix = 128;
  tok->kind = RULES_TOK_IP;
  advance_n (lx, n);
  return TRUE;
}

static gboolean
lex_number (RulesLexer *lx, RulesToken *tok, GError **error)
{
  gsize n = 0, dots = 0;
  char buf[64];

  for (;;)
    {
      int c = peek (lx, n);
      if (g_ascii_isdigit (c))
        n++;
      else if (c == '.' && g_ascii_isdigit (peek (lx, n + 1)))
        {
          dots++;
          n++;
        }
      else
        break;
    }
  if (n >= sizeof buf)
    {
      rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col, "number too long");
      return FALSE;
    }
  memcpy (buf, lx->src + lx->pos, n);
  buf[n] = '\0';
  advance_n (lx, n);

  if (dots == 1)
    {
      tok->kind = RULES_TOK_FLOAT;
      tok->f = g_ascii_strtod (buf, NULL);
    }
  else if (dots == 2)
    {
      tok->kind = RULES_TOK_ENHANCED;
      tok->text = g_strdup (buf);
      tok->len = n;
    }
  else if (dots == 3)
    {
      memset (&tok->ip, 0, sizeof tok->ip);
      if (inet_pton (AF_INET, buf, tok->ip.addr) != 1)
        {
          rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                           "invalid IPv4 address '%s'", buf);
          return FALSE;
        }
      tok->ip.family = 4;
      tok->ip.prefix = 32;
      tok->kind = RULES_TOK_IP;
      return lex_prefix (lx, tok, error);
    }
  else if (dots > 3)
    {
      rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                       "invalid number '%s'", buf);
      return FALSE;
    }
  else
    {
      guint64 v = 0;
      if (!g_ascii_string_to_unsigned (buf, 10, 0, G_MAXINT64 / (1024 * 1024 * 1024), &v, NULL))
        {
          rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                           "integer '%s' out of range", buf);
          return FALSE;
        }
      tok->kind = RULES_TOK_INT;
      tok->i = (gint64)v;
      if (is_ident_char (peek (lx, 0)) && !is_ident_char (peek (lx, 1)))
        {
          static const struct
          {
            char c;
            RulesTokKind kind;
            gint64 mul;
          } suffixes[] = {
            { 'K', RULES_TOK_SIZE, 1024 },
            { 'M', RULES_TOK_SIZE, 1024 * 1024 },
            { 'G', RULES_TOK_SIZE, 1024 * 1024 * 1024 },
            { 's', RULES_TOK_DURATION, 1 },
            { 'm', RULES_TOK_DURATION, 60 },
            { 'h', RULES_TOK_DURATION, 3600 },
            { 'd', RULES_TOK_DURATION, 86400 },
          };
          for (guint i = 0; i < G_N_ELEMENTS (suffixes); i++)
            if (peek (lx, 0) == suffixes[i].c)
              {
                tok->kind = suffixes[i].kind;
                tok->i *= suffixes[i].mul;
                advance (lx);
                break;
              }
        }
    }
  if (is_ident_char (peek (lx, 0)))
    {
      rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, lx->line, lx->col,
                       "invalid suffix '%c' after number (sizes: K M G, durations: s m h d)",
                       peek (lx, 0));
      return FALSE;
    }
  return TRUE;
}

static gboolean
lex_ident (RulesLexer *lx, RulesToken *tok, GError **error)
{
  gsize n = 0;

  while (is_ident_char (peek (lx, n)))
    n++;
  if (n > RULES_MAX_IDENT_LEN)
    {
      rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                       "identifier longer than %u characters", (guint)RULES_MAX_IDENT_LEN);
      return FALSE;
    }
  tok->kind = RULES_TOK_IDENT;
  for (guint i = 0; i < G_N_ELEMENTS (keywords); i++)
    if (strlen (keywords[i].word) == n && memcmp (keywords[i].word, lx->src + lx->pos, n) == 0)
      tok->kind = keywords[i].kind;
  if (tok->kind == RULES_TOK_IDENT)
    {
      tok->text = g_strndup (lx->src + lx->pos, n);
      tok->len = n;
    }
  advance_n (lx, n);
  return TRUE;
}

static const struct
{
  const char *op;
  RulesTokKind kind;
} operators[] = {
  /* two-character operators first */
  { "=>", RULES_TOK_ARROW },   { "==", RULES_TOK_EQ },      { "!=", RULES_TOK_NE },
  { "<=", RULES_TOK_LE },      { ">=", RULES_TOK_GE },      { "=~", RULES_TOK_MATCH },
  { "!~", RULES_TOK_NOMATCH }, { "(", RULES_TOK_LPAREN },   { ")", RULES_TOK_RPAREN },
  { "[", RULES_TOK_LBRACKET }, { "]", RULES_TOK_RBRACKET }, { "{", RULES_TOK_LBRACE },
  { "}", RULES_TOK_RBRACE },   { ",", RULES_TOK_COMMA },    { ".", RULES_TOK_DOT },
  { "=", RULES_TOK_ASSIGN },   { "<", RULES_TOK_LT },       { ">", RULES_TOK_GT },
  { "+", RULES_TOK_PLUS },     { "-", RULES_TOK_MINUS },
};

gboolean
rules_lexer_next (RulesLexer *lx, RulesToken *tok, GError **error)
{
  int c;

  memset (tok, 0, sizeof *tok);
  for (;;)
    {
      c = peek (lx, 0);
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
        advance (lx);
      else if (c == '#')
        while (peek (lx, 0) >= 0 && peek (lx, 0) != '\n')
          advance (lx);
      else
        break;
    }
  tok->line = lx->line;
  tok->col = lx->col;
  tok->start = lx->pos;

  gboolean ok;
  if (c < 0)
    {
      tok->kind = RULES_TOK_EOF;
      ok = TRUE;
    }
  else if (c == '"')
    ok = lex_string (lx, tok, error);
  else if (c == '/')
    ok = lex_regex (lx, tok, error);
  else if ((g_ascii_isxdigit (c) || c == ':') && try_ipv6 (lx, tok))
    ok = lex_prefix (lx, tok, error);
  else if (g_ascii_isdigit (c))
    ok = lex_number (lx, tok, error);
  else if (g_ascii_isalpha (c) || c == '_')
    ok = lex_ident (lx, tok, error);
  else
    {
      ok = FALSE;
      for (guint i = 0; i < G_N_ELEMENTS (operators); i++)
        {
          gsize n = strlen (operators[i].op);
          if (lx->pos + n <= lx->len && memcmp (lx->src + lx->pos, operators[i].op, n) == 0)
            {
              tok->kind = operators[i].kind;
              advance_n (lx, n);
              ok = TRUE;
              break;
            }
        }
      if (!ok)
        {
          gunichar u = g_utf8_get_char (lx->src + lx->pos);
          char ubuf[8] = { 0 };
          g_unichar_to_utf8 (u, ubuf);
          rules_set_error (error, RULES_ERROR_SYNTAX, lx->file, tok->line, tok->col,
                           "unexpected character '%s'", g_unichar_isprint (u) ? ubuf : "?");
        }
    }
  tok->end = lx->pos;
  if (!ok)
    g_clear_pointer (&tok->text, g_free);
  return ok;
}
