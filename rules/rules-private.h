/* SPDX-License-Identifier: MIT
 *
 * rules-private.h — the internals shared by the rules modules: tokens, the
 * expression tree (parsed, then checked in place into its compiled form),
 * compiled lists, rules, actions and the program itself.  Not installed; the
 * tests include it only for the lexer.
 */
#pragma once

#include "rules/rules.h"

G_BEGIN_DECLS

/* ---- named limits (every length that comes from a file) ------------------- */

#define RULES_MAX_SOURCE_SIZE (16 * 1024 * 1024) /* one rule or list file */
#define RULES_MAX_INCLUDE_DEPTH 16               /* nested includes */
#define RULES_MAX_STRING_LEN (64 * 1024)         /* one string or regex literal */
#define RULES_MAX_IDENT_LEN 128                  /* one identifier */
#define RULES_MAX_EXPR_DEPTH 64                  /* nesting of expressions */
#define RULES_MAX_ARGS 8                         /* arguments of a function */
#define RULES_MAX_CALLS 32                       /* connectors in one `call` */
#define RULES_MAX_LIST_ENTRIES (1024 * 1024)     /* entries of one list */
#define RULES_MAX_LIST_LINE 4096                 /* one line of a list file */
#define RULES_MAX_RULES 100000                   /* rules in a program */
/* rate(key, N, PERIOD): the state backends keep N+1 events per key, so N is
 * bounded (VPS_STATE_MAX_WINDOW in vps/state.h says the same), and so is
 * the period, which becomes the key's expiry. */
#define RULES_MAX_RATE_LIMIT 100000
#define RULES_MAX_RATE_PERIOD (366 * 86400)
/* Octets of a rate()/concurrency() key as written (the host adds its
 * namespace; VPS_STATE_MAX_KEY is 512 with it). */
#define RULES_MAX_STATE_KEY 400

/* ---- tokens --------------------------------------------------------------- */

typedef enum
{
  RULES_TOK_EOF,
  RULES_TOK_IDENT,
  RULES_TOK_STRING,
  RULES_TOK_INT,
  RULES_TOK_FLOAT,
  RULES_TOK_SIZE,
  RULES_TOK_DURATION,
  RULES_TOK_IP,
  RULES_TOK_CIDR,
  RULES_TOK_ENHANCED, /* 5.7.1 */
  RULES_TOK_REGEX,
  /* keywords */
  RULES_TOK_INCLUDE,
  RULES_TOK_LIST,
  RULES_TOK_FILE,
  RULES_TOK_AS,
  RULES_TOK_LET,
  RULES_TOK_RULE,
  RULES_TOK_WHEN,
  RULES_TOK_AND,
  RULES_TOK_OR,
  RULES_TOK_NOT,
  RULES_TOK_IN,
  RULES_TOK_TRUE,
  RULES_TOK_FALSE,
  /* punctuation and operators */
  RULES_TOK_LPAREN,
  RULES_TOK_RPAREN,
  RULES_TOK_LBRACKET,
  RULES_TOK_RBRACKET,
  RULES_TOK_LBRACE,
  RULES_TOK_RBRACE,
  RULES_TOK_COMMA,
  RULES_TOK_DOT,
  RULES_TOK_ASSIGN, /* = */
  RULES_TOK_ARROW,  /* => */
  RULES_TOK_EQ,
  RULES_TOK_NE,
  RULES_TOK_LT,
  RULES_TOK_LE,
  RULES_TOK_GT,
  RULES_TOK_GE,
  RULES_TOK_MATCH,   /* =~ */
  RULES_TOK_NOMATCH, /* !~ */
  RULES_TOK_PLUS,
  RULES_TOK_MINUS,
} RulesTokKind;

typedef struct
{
  RulesTokKind kind;
  guint line, col;
  gsize start, end; /* byte offsets of the raw token in the source */
  char *text;       /* IDENT, STRING (unescaped), REGEX (pattern), ENHANCED; owned */
  gsize len;
  gint64 i; /* INT, SIZE (bytes), DURATION (seconds) */
  double f;
  RulesIp ip;     /* IP, CIDR */
  guint re_flags; /* REGEX: RULES_RE_* */
} RulesToken;

#define RULES_RE_I 1u
#define RULES_RE_M 2u

typedef struct
{
  const char *file; /* for messages */
  const char *src;
  gsize len;
  gsize pos;
  guint line, col;
} RulesLexer;

/* Validates UTF-8 (error with the position of the first bad byte). */
gboolean rules_lexer_init (RulesLexer *lx, const char *file, const char *src, gsize len,
                           GError **error);
/* Fills *tok (free its text with rules_token_clear). */
gboolean rules_lexer_next (RulesLexer *lx, RulesToken *tok, GError **error);
void rules_token_clear (RulesToken *tok);
/* "'=>'" , "string \"x\"", "end of file": for "expected X, got Y". */
char *rules_token_describe (const RulesLexer *lx, const RulesToken *tok);
const char *rules_tok_kind_name (RulesTokKind kind);

/* ---- compiled lists ------------------------------------------------------- */

typedef enum
{
  RULES_LIST_STRING,
  RULES_LIST_REGEX,
  RULES_LIST_CIDR,
  RULES_LIST_DOMAIN,
  RULES_LIST_MIXED, /* a literal list: strings, IPs/CIDRs, regexes, numbers */
} RulesListKind;

/* rules-regex.c: regexes on PCRE2 (see there for the options GRegex used). */
RulesRegex *rules_regex_new (const char *pattern, guint flags, GError **error);
RulesRegex *rules_regex_ref (const RulesRegex *re);
void rules_regex_unref (RulesRegex *re);
const char *rules_regex_pattern (const RulesRegex *re);
/* RULES_RE_*: the flags it was compiled with (inline (?i) options are not
 * reported, as GRegex did not with PCRE2). */
guint rules_regex_flags (const RulesRegex *re);
/* Thread-safe; allocates nothing in the steady state; NUL bytes in s are data. */
gboolean rules_regex_match (const RulesRegex *re, const char *s, gsize len);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RulesRegex, rules_regex_unref)

/* The regexes of a list as a few combined alternations. */
typedef struct _RulesRegexSet RulesRegexSet;
RulesRegexSet *rules_regex_set_new (RulesRegex *const *regexes, guint n);
void rules_regex_set_free (RulesRegexSet *set);
/* TRUE if any of the regexes matches (exactly as matching each alone). */
gboolean rules_regex_set_match (const RulesRegexSet *set, const char *s, gsize len);
/* For tests: alternations, regexes inside them, regexes matched alone. */
void rules_regex_set_stats (const RulesRegexSet *set, guint *n_chunks, guint *n_combined,
                            guint *n_alone);

/* rules-cidr.c: networks hashed by prefix length. */
typedef struct _RulesCidrSet RulesCidrSet;
RulesCidrSet *rules_cidr_set_new (const RulesIp *nets, guint n);
void rules_cidr_set_free (RulesCidrSet *set);
gboolean rules_cidr_set_contains (const RulesCidrSet *set, const RulesIp *ip);

struct _RulesList
{
  char *name; /* NULL for a literal list */
  RulesListKind kind;
  char *source; /* the file it came from, or NULL */
  guint n_entries;
  GHashTable *strings;      /* ASCII-lowercased string -> itself */
  GHashTable *domains;      /* lowercased domain without leading dot */
  GArray *cidrs;            /* RulesIp, in the order added */
  GPtrArray *regexes;       /* RulesRegex*, in the order added */
  GArray *ints;             /* gint64 */
  gboolean sealed;          /* the sets below are built */
  RulesCidrSet *cidr_set;   /* cidrs, for O(prefix lengths) look-ups */
  RulesRegexSet *regex_set; /* regexes, combined */
};

RulesList *rules_list_new (const char *name, RulesListKind kind);
void rules_list_free (RulesList *list);
/* Adds one constant value; FALSE (error message in *why) if it cannot be a member. */
gboolean rules_list_add_value (RulesList *list, const RulesValue *v, const char **why);
/* Builds the look-up structures once every entry is in (idempotent). */
void rules_list_seal (RulesList *list);
/* Parses a list file's text (one entry a line, '#' comments) into list, and seals it. */
gboolean rules_list_load_text (RulesList *list, const char *file, const char *text, gsize len,
                               GError **error);
gboolean rules_list_contains (const RulesList *list, const RulesValue *v);
gboolean rules_list_kind_from_name (const char *name, RulesListKind *out);
const char *rules_list_kind_name (RulesListKind kind);

/* A file read by in_file(): loaded lazily, re-read when its mtime (in ns),
 * size or inode changes (a rewrite within one second is seen), stat()ed at
 * most once a second. */
typedef struct
{
  char *path;
  GMutex lock;
  gint64 last_check; /* monotonic µs */
  gint64 mtime;      /* ns */
  gint64 size;
  guint64 ino;
  RulesList *list; /* NULL if unreadable */
} RulesFileCache;

RulesFileCache *rules_file_cache_new (const char *path);
void rules_file_cache_free (RulesFileCache *cache);
gboolean rules_file_cache_contains (RulesFileCache *cache, const RulesValue *v);

/* ---- values --------------------------------------------------------------- */

gboolean rules_str_equal (const char *a, gsize alen, const char *b, gsize blen, gboolean ci);
/* ASCII case-insensitive three-way compare of n bytes (NUL included). */
int rules_ascii_casecmp (const char *a, const char *b, gsize n);
/* Substring search; ci = ASCII case-insensitive. */
gboolean rules_str_contains (const char *hay, gsize hlen, const char *needle, gsize nlen,
                             gboolean ci);
gboolean rules_ip_in_cidr (const RulesIp *ip, const RulesIp *net);
const char *rules_type_name (RulesType type);

/* ---- expression tree ------------------------------------------------------ */

typedef enum
{
  RULES_NODE_LIT,     /* constant: lit */
  RULES_NODE_NAME,    /* parse only: dotted name in `path` */
  RULES_NODE_CALL,    /* parse: dotted name + args; checked: function `index` or host value */
  RULES_NODE_HOST,    /* host value: ref (+ a = argument) */
  RULES_NODE_SETVAR,  /* var.NAME: index */
  RULES_NODE_LISTLIT, /* [a, b]: args (not all constant) */
  RULES_NODE_NOT,
  RULES_NODE_AND,
  RULES_NODE_OR,
  RULES_NODE_NEG,
  RULES_NODE_ADD,
  RULES_NODE_SUB,
  RULES_NODE_CMP,   /* op: RULES_TOK_EQ .. RULES_TOK_GE */
  RULES_NODE_MATCH, /* =~ ; op NOMATCH for !~ */
  RULES_NODE_IN,    /* op NOT for `not in` */
} RulesNodeKind;

typedef enum
{
  RULES_FN_LOWER,
  RULES_FN_UPPER,
  RULES_FN_LEN,
  RULES_FN_DOMAIN,
  RULES_FN_LOCAL,
  RULES_FN_STARTS_WITH,
  RULES_FN_ENDS_WITH,
  RULES_FN_CONTAINS,
  RULES_FN_DNSBL,
  RULES_FN_RESOLVES,
  RULES_FN_IN_FILE,
  RULES_FN_ENV,
  RULES_FN_RATE,
  RULES_FN_CONCURRENCY,
  RULES_FN_GREYLISTED,
  RULES_N_FUNCS
} RulesFunc;

typedef struct _RulesNode RulesNode;
struct _RulesNode
{
  RulesNodeKind kind;
  int op;
  RulesType type; /* static type after checking; NONE = dynamic */
  gboolean ci;
  const char *file;
  guint line, col;
  RulesValue lit;
  char *str;   /* owned storage behind lit strings / the name */
  char **path; /* dotted name (NAME, CALL) */
  RulesNode *a, *b;
  RulesNode **args;
  guint n_args;
  RulesRef ref;  /* HOST */
  int index;     /* SETVAR, CALL (function) */
  gpointer data; /* CALL in_file: RulesFileCache* */
};

/* ---- rules and actions ---------------------------------------------------- */

typedef enum
{
  RULES_ACT_CONTINUE,
  RULES_ACT_ACCEPT,
  RULES_ACT_ACCEPT_ALL,
  RULES_ACT_DISCARD,
  RULES_ACT_REJECT,
  RULES_ACT_TEMPFAIL,
  RULES_ACT_QUARANTINE,
  RULES_ACT_CALL,
  RULES_ACT_EFFECT, /* effect */
  RULES_ACT_SET,
  RULES_ACT_GREYLIST, /* tempfail (reply or the host's) unless the triplet has passed */
} RulesActKind;

typedef struct
{
  RulesActKind kind;
  RulesEffectKind effect;
  const char *file;
  guint line, col;
  guint code;
  char *enhanced;
  char *text;
  char *name; /* quarantine, header, export, path, relay, set variable */
  RulesNode *expr;
  int index; /* SET: variable index */
  GLogLevelFlags level;
  char **calls; /* CALL: NULL-terminated */
  guint n_calls;
} RulesAction;

typedef struct
{
  char *name;
  const char *file;
  guint line, col;
  RulesStage stage;
  RulesNode *cond; /* NULL: always */
  RulesAction *actions;
  guint n_actions;
} RulesRule;

typedef struct
{
  char *name;
  const char *file;
  guint line, col;
  RulesNode *expr; /* folded to a LIT by the checker */
} RulesLet;

typedef struct
{
  char *name;
  const char *file;
  guint line, col;
  RulesList *list;
  RulesNode *expr; /* a literal [..] list until the checker fills `list` */
  gboolean busy;   /* being folded: catches lists that contain themselves */
} RulesListDef;

struct _RulesProgram
{
  gint refcount;
  GPtrArray *files;                 /* char*: every file name a position can point at */
  GPtrArray *nodes;                 /* RulesNode*: owner of every node */
  GPtrArray *lists;                 /* RulesList*: owner of every list */
  GPtrArray *caches;                /* RulesFileCache* */
  GPtrArray *regexes;               /* RulesRegex*: literal regexes */
  GPtrArray *listdefs;              /* RulesListDef* */
  GPtrArray *lets;                  /* RulesLet* */
  GPtrArray *rules[RULES_N_STAGES]; /* RulesRule* */
  GPtrArray *varnames;              /* char*, NULL-terminated after checking */
  GPtrArray *vardefs;               /* parallel to varnames: first `set` position (RulesAction*) */
  GPtrArray *calls[RULES_N_STAGES]; /* char*, NULL-terminated */
  gboolean reads[RULES_N_VARS];
  /* Which actions some rule can take: effects by RulesEffectKind, verdicts
   * by RulesVerdict (for the front ends' negotiation). */
  gboolean effects[RULES_EFFECT_DELIVER_MX + 1];
  gboolean verdicts[RULES_VERDICT_DISCARD + 1];
  /* Which shared-state checks some rule makes, by RulesStateKind. */
  gboolean state[RULES_STATE_GREYLISTED + 1];
  char *base_dir;
};

/* rules-parser.c */
gboolean rules_parse_file (RulesProgram *prog, const char *path, GError **error);
gboolean rules_parse_string (RulesProgram *prog, const char *name, const char *text, gsize len,
                             GError **error);
RulesNode *rules_node_new (RulesProgram *prog, RulesNodeKind kind, const char *file, guint line,
                           guint col);
/* ---- evaluation internals ------------------------------------------------ */

/* A bump allocator for strings computed during evaluation; reset between
 * rules, so the common path allocates nothing once its first block exists. */
typedef struct _RulesArenaBlock RulesArenaBlock;
typedef struct
{
  RulesArenaBlock *head;
} RulesArena;

char *rules_arena_alloc (RulesArena *arena, gsize n);
char *rules_arena_strndup (RulesArena *arena, const char *s, gsize n);
void rules_arena_reset (RulesArena *arena);
void rules_arena_clear (RulesArena *arena);

struct _RulesState
{
  RulesProgram *prog;
  guint n;
  RulesValue *vals;
  gpointer *owned; /* storage behind vals[i] (string or string vector) */
};

struct _RulesRun
{
  RulesProgram *prog;
  RulesState *state;
  RulesStage stage;
  guint rule, action;
  gboolean in_actions;
  /* The action that decided the stage; the rest of its rule still runs. */
  const RulesAction *decided;
  gboolean done;
  gboolean wait; /* an asynchronous query was started during this evaluation */
  RulesStep result;
  const RulesHostVTable *vt; /* NULL while folding constants */
  gpointer host;
  RulesArena arena;
  GStringChunk *scratch; /* rules_run_scratch_strdup() */
  guint64 memo_serial;   /* names the run in its thread's memo of list look-ups; 0: none yet */
};

/* rules_list_contains() through the run's memo (lists are immutable). */
gboolean rules_run_list_contains (RulesRun *run, const RulesList *list, const RulesValue *v);

/* rules-eval.c */
void rules_eval (RulesRun *run, const RulesNode *n, RulesValue *out);
gboolean rules_value_truthy (const RulesValue *v);
/* Formats any value as a string (in the run's arena when needed). */
void rules_value_to_string (RulesRun *run, const RulesValue *v, const char **ptr, gsize *len);
/* rules-func.c */
void rules_eval_func (RulesRun *run, const RulesNode *n, RulesValue *out);
/* rules-func.c: the host's answer to greylisted() for the `greylist` action
 * `a` (sets run->wait when it must wait). */
void rules_eval_greylisted (RulesRun *run, const RulesAction *a, RulesValue *out);

/* rules-check.c (expressions) and rules-check-actions.c (the rest) */
typedef struct
{
  RulesProgram *prog;
  const RulesLoadOptions *opt;
  GHashTable *lets;  /* name -> RulesLet* (folded ones only) */
  GHashTable *lists; /* name -> RulesListDef* */
  GHashTable *vars;  /* name -> index + 1 */
  const char *let;   /* checking the value of this let */
  RulesStage stage;
  GError **error;
} RulesCheck;

gboolean rules_check (RulesProgram *prog, const RulesLoadOptions *options, GError **error);
gboolean rules_check_expr (RulesCheck *c, RulesNode *n);
gboolean rules_check_is_const (const RulesNode *n);
gboolean rules_check_fold_list (RulesCheck *c, RulesNode *n, const char *name);
/* rules-check-state.c: rate(), concurrency(), greylisted() (arguments and
 * stages) and the `greylist` action. */
gboolean rules_check_state_call (RulesCheck *c, RulesNode *n, const char *name);
gboolean rules_check_greylist_action (RulesCheck *c, const RulesNode *pos, RulesStage stage);
gboolean rules_check_fail (RulesCheck *c, const RulesNode *n, RulesError code, const char *fmt, ...)
    G_GNUC_PRINTF (4, 5);
/* rules-eval.c: evaluates a constant node at load and turns it into a LIT. */
gboolean rules_eval_fold (RulesProgram *prog, RulesNode *n);
const char *rules_func_name (RulesFunc fn);
const char *rules_var_name (RulesVar var);
/* rules-program.c */
RulesProgram *rules_program_new_empty (void);
const char *rules_program_intern_file (RulesProgram *prog, const char *file);
void rules_set_error (GError **error, RulesError code, const char *file, guint line, guint col,
                      const char *fmt, ...) G_GNUC_PRINTF (6, 7);

G_END_DECLS
