/* SPDX-License-Identifier: MIT
 *
 * test-rules-lexer.c — every token kind and every lexical error of vsl.
 */
#include "rules/rules-private.h"

#include <string.h>

typedef struct
{
  const char *src;
  RulesTokKind kind;
  const char *text; /* expected text (IDENT, STRING, REGEX, ENHANCED) or NULL */
  gint64 i;
  const char *ip; /* expected address for IP/CIDR */
  guint prefix;
  guint re_flags;
} TokCase;

static const TokCase tok_cases[] = {
  { "", RULES_TOK_EOF },
  { "  # only a comment\n", RULES_TOK_EOF },
  { "client", RULES_TOK_IDENT, "client" },
  { "_x1", RULES_TOK_IDENT, "_x1" },
  { "\"a\\\"b\\\\c\\nd\\te\"", RULES_TOK_STRING, "a\"b\\c\nd\te" },
  { "\"h\xc3\xa9\"", RULES_TOK_STRING, "h\xc3\xa9" },
  { "42", RULES_TOK_INT, NULL, 42 },
  { "10K", RULES_TOK_SIZE, NULL, 10240 },
  { "5M", RULES_TOK_SIZE, NULL, 5 * 1024 * 1024 },
  { "1G", RULES_TOK_SIZE, NULL, 1024 * 1024 * 1024 },
  { "30s", RULES_TOK_DURATION, NULL, 30 },
  { "5m", RULES_TOK_DURATION, NULL, 300 },
  { "2h", RULES_TOK_DURATION, NULL, 7200 },
  { "1d", RULES_TOK_DURATION, NULL, 86400 },
  { "7.5", RULES_TOK_FLOAT },
  { "5.7.1", RULES_TOK_ENHANCED, "5.7.1" },
  { "192.168.1.2", RULES_TOK_IP, NULL, 0, "192.168.1.2", 32 },
  { "10.1.2.3/8", RULES_TOK_CIDR, NULL, 0, "10.0.0.0", 8 },
  { "::1", RULES_TOK_IP, NULL, 0, "::1", 128 },
  { "2001:db8::/32", RULES_TOK_CIDR, NULL, 0, "2001:db8::", 32 },
  { "fe80::1", RULES_TOK_IP, NULL, 0, "fe80::1", 128 },
  { "::ffff:1.2.3.4", RULES_TOK_IP, NULL, 0, "::ffff:1.2.3.4", 128 },
  { "/ab+c/", RULES_TOK_REGEX, "ab+c", 0, NULL, 0, 0 },
  { "/a\\/b/im", RULES_TOK_REGEX, "a/b", 0, NULL, 0, RULES_RE_I | RULES_RE_M },
  { "/\\d+/i", RULES_TOK_REGEX, "\\d+", 0, NULL, 0, RULES_RE_I },
  { "include", RULES_TOK_INCLUDE },
  { "list", RULES_TOK_LIST },
  { "file", RULES_TOK_FILE },
  { "as", RULES_TOK_AS },
  { "let", RULES_TOK_LET },
  { "rule", RULES_TOK_RULE },
  { "when", RULES_TOK_WHEN },
  { "and", RULES_TOK_AND },
  { "or", RULES_TOK_OR },
  { "not", RULES_TOK_NOT },
  { "in", RULES_TOK_IN },
  { "true", RULES_TOK_TRUE },
  { "false", RULES_TOK_FALSE },
  { "(", RULES_TOK_LPAREN },
  { ")", RULES_TOK_RPAREN },
  { "[", RULES_TOK_LBRACKET },
  { "]", RULES_TOK_RBRACKET },
  { "{", RULES_TOK_LBRACE },
  { "}", RULES_TOK_RBRACE },
  { ",", RULES_TOK_COMMA },
  { ".", RULES_TOK_DOT },
  { "=", RULES_TOK_ASSIGN },
  { "=>", RULES_TOK_ARROW },
  { "==", RULES_TOK_EQ },
  { "!=", RULES_TOK_NE },
  { "<", RULES_TOK_LT },
  { "<=", RULES_TOK_LE },
  { ">", RULES_TOK_GT },
  { ">=", RULES_TOK_GE },
  { "=~", RULES_TOK_MATCH },
  { "!~", RULES_TOK_NOMATCH },
  { "+", RULES_TOK_PLUS },
  { "-", RULES_TOK_MINUS },
};

static void
test_tokens (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (tok_cases); i++)
    {
      const TokCase *c = &tok_cases[i];
      RulesLexer lx;
      RulesToken tok, eof;
      g_autoptr (GError) error = NULL;

      g_test_message ("case %u: %s", i, c->src);
      g_assert_true (rules_lexer_init (&lx, "t.vsl", c->src, strlen (c->src), &error));
      g_assert_true (rules_lexer_next (&lx, &tok, &error));
      g_assert_no_error (error);
      g_assert_cmpint (tok.kind, ==, c->kind);
      if (c->text)
        g_assert_cmpstr (tok.text, ==, c->text);
      if (c->kind == RULES_TOK_INT || c->kind == RULES_TOK_SIZE || c->kind == RULES_TOK_DURATION)
        g_assert_cmpint (tok.i, ==, c->i);
      if (c->kind == RULES_TOK_FLOAT)
        g_assert_cmpfloat_with_epsilon (tok.f, 7.5, 1e-9);
      if (c->ip)
        {
          char buf[46];
          g_assert_cmpstr (rules_ip_to_string (&tok.ip, buf), ==, c->ip);
          g_assert_cmpuint (tok.ip.prefix, ==, c->prefix);
        }
      if (c->kind == RULES_TOK_REGEX)
        g_assert_cmpuint (tok.re_flags, ==, c->re_flags);
      g_assert_true (rules_lexer_next (&lx, &eof, &error));
      g_assert_cmpint (eof.kind, ==, RULES_TOK_EOF);
      rules_token_clear (&tok);
    }
}

/* Positions: lines from 1, columns in characters from 1. */
static void
test_positions (void)
{
  const char *src = "rule \"\xc3\xa9t\xc3\xa9\" when\n  a.b == 1 # c\n\t=> x";
  static const struct
  {
    RulesTokKind kind;
    guint line, col;
  } want[] = {
    { RULES_TOK_RULE, 1, 1 },  { RULES_TOK_STRING, 1, 6 }, { RULES_TOK_WHEN, 1, 12 },
    { RULES_TOK_IDENT, 2, 3 }, { RULES_TOK_DOT, 2, 4 },    { RULES_TOK_IDENT, 2, 5 },
    { RULES_TOK_EQ, 2, 7 },    { RULES_TOK_INT, 2, 10 },   { RULES_TOK_ARROW, 3, 2 },
    { RULES_TOK_IDENT, 3, 5 }, { RULES_TOK_EOF, 3, 6 },
  };
  RulesLexer lx;
  g_autoptr (GError) error = NULL;

  g_assert_true (rules_lexer_init (&lx, "t.vsl", src, strlen (src), &error));
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      RulesToken tok;
      g_assert_true (rules_lexer_next (&lx, &tok, &error));
      g_assert_cmpint (tok.kind, ==, want[i].kind);
      g_assert_cmpuint (tok.line, ==, want[i].line);
      g_assert_cmpuint (tok.col, ==, want[i].col);
      rules_token_clear (&tok);
    }
}

/* A dotted name next to an address-like word stays a name. */
static void
test_sequences (void)
{
  const char *src = "clamav.name add_header deadbeef 1.2.3.4:25";
  static const RulesTokKind want[] = {
    RULES_TOK_IDENT, RULES_TOK_DOT, RULES_TOK_IDENT, RULES_TOK_IDENT, RULES_TOK_IDENT,
  };
  RulesLexer lx;
  g_autoptr (GError) error = NULL;

  g_assert_true (rules_lexer_init (&lx, "t.vsl", src, strlen (src), &error));
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      RulesToken tok;
      g_assert_true (rules_lexer_next (&lx, &tok, &error));
      g_assert_cmpint (tok.kind, ==, want[i]);
      rules_token_clear (&tok);
    }
  /* 1.2.3.4:25 is an address followed by an unexpected ':' */
  {
    RulesToken tok;
    g_assert_true (rules_lexer_next (&lx, &tok, &error));
    g_assert_cmpint (tok.kind, ==, RULES_TOK_IP);
    g_assert_false (rules_lexer_next (&lx, &tok, &error));
    g_assert_error (error, RULES_ERROR, RULES_ERROR_SYNTAX);
    g_assert_cmpstr (error->message, ==, "t.vsl:1:40: unexpected character ':'");
  }
}

typedef struct
{
  const char *src;
  const char *message;
} ErrCase;

static const ErrCase err_cases[] = {
  { "\"abc", "t.vsl:1:1: unterminated string" },
  { "x \"ab\ncd\"", "t.vsl:1:3: unterminated string" },
  { "\"a\\qb\"", "t.vsl:1:3: invalid escape in string (only \\\" \\\\ \\n \\t)" },
  { "/abc", "t.vsl:1:1: unterminated regex" },
  { "/abc/x", "t.vsl:1:6: unknown regex flag 'x' (flags are i and m)" },
  { "10X", "t.vsl:1:3: invalid suffix 'X' after number (sizes: K M G, durations: s m h d)" },
  { "10Kb", "t.vsl:1:3: invalid suffix 'K' after number (sizes: K M G, durations: s m h d)" },
  { "999.1.1.1", "t.vsl:1:1: invalid IPv4 address '999.1.1.1'" },
  { "1.2.3.4/33", "t.vsl:1:1: invalid network prefix length (0-32)" },
  { "::1/129", "t.vsl:1:1: invalid network prefix length (0-128)" },
  { "1.2.3.4.5", "t.vsl:1:1: invalid number '1.2.3.4.5'" },
  { "99999999999999999999", "t.vsl:1:1: integer '99999999999999999999' out of range" },
  { "a !b", "t.vsl:1:3: unexpected character '!'" },
  { "  @", "t.vsl:1:3: unexpected character '@'" },
  { "x\n \xc3\xa9\xff", "t.vsl:2:3: invalid UTF-8" },
  { "\xe2\x82", "t.vsl:1:1: invalid UTF-8" },
};

static void
test_errors (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (err_cases); i++)
    {
      RulesLexer lx;
      RulesToken tok = { 0 };
      g_autoptr (GError) error = NULL;
      gboolean ok;

      {
        /* The source may be invalid UTF-8 on purpose: print it escaped so
         * the TAP stream stays valid. */
        g_autofree char *shown = g_strescape (err_cases[i].src, NULL);

        g_test_message ("case %u: %s", i, shown);
      }
      ok = rules_lexer_init (&lx, "t.vsl", err_cases[i].src, strlen (err_cases[i].src), &error);
      while (ok)
        {
          ok = rules_lexer_next (&lx, &tok, &error);
          if (ok && tok.kind == RULES_TOK_EOF)
            g_error ("no error for %s", err_cases[i].src);
          rules_token_clear (&tok);
        }
      g_assert_error (error, RULES_ERROR, RULES_ERROR_SYNTAX);
      g_assert_cmpstr (error->message, ==, err_cases[i].message);
    }
}

static void
test_long_string (void)
{
  g_autoptr (GString) s = g_string_new ("\"");
  RulesLexer lx;
  RulesToken tok;
  g_autoptr (GError) error = NULL;

  for (guint i = 0; i <= RULES_MAX_STRING_LEN; i++)
    g_string_append_c (s, 'a');
  g_string_append_c (s, '"');
  g_assert_true (rules_lexer_init (&lx, "t.vsl", s->str, s->len, &error));
  g_assert_false (rules_lexer_next (&lx, &tok, &error));
  g_assert_error (error, RULES_ERROR, RULES_ERROR_SYNTAX);
  g_assert_cmpstr (error->message, ==, "t.vsl:1:1: string longer than 65536 bytes");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/rules/lexer/tokens", test_tokens);
  g_test_add_func ("/rules/lexer/positions", test_positions);
  g_test_add_func ("/rules/lexer/sequences", test_sequences);
  g_test_add_func ("/rules/lexer/errors", test_errors);
  g_test_add_func ("/rules/lexer/long-string", test_long_string);
  return g_test_run ();
}
