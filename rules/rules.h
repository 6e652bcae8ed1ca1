/* SPDX-License-Identifier: MIT
 *
 * rules.h — the public contract of vsl, the vps rule language.
 *
 * A rule file (plus what it includes) is loaded once into an immutable,
 * reference-counted RulesProgram that any number of threads share.  The
 * engine then evaluates one stage of one transaction at a time with a
 * RulesRun, a resumable cursor:
 *
 *   run = rules_run_new (program, state, stage);
 *   while (rules_run_step (run, &host_vtable, host, &step) != RULES_STEP_DONE)
 *     {
 *       RULES_STEP_CALL: call step.calls[] concurrently, store their results
 *                        where host->get can read them (NAME.field), then
 *                        either end the stage with the connectors' verdict or
 *                        step again (the run resumes after the `call`);
 *       RULES_STEP_WAIT: an asynchronous query (dnsbl, resolves) was started
 *                        through host->query; when it completes, step again:
 *                        the rule whose condition needed it is re-evaluated
 *                        and host->query now answers from its cache.
 *     }
 *   step.verdict, step.code/enhanced/text, step.rule, step.quarantine
 *
 * Values the rules read come from the host (the engine) through
 * RulesHostVTable.get, by a RulesVar id resolved at load time; non-terminal
 * actions (header edits, envelope edits, log, export, deliver) are handed to
 * RulesHostVTable.effect with their arguments evaluated.  `set` variables live
 * in a RulesState the engine keeps per transaction.
 *
 * Loading never aborts on bad input: every error is a GError in the
 * RULES_ERROR domain whose message is "file:line:col: message", naming what
 * was expected.  Evaluation never fails: a missing value is "" / 0 / false.
 *
 * See ../shared/design/RULES.md and docs/rules.md for the language.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* ---- stages --------------------------------------------------------------- */

typedef enum
{
  RULES_STAGE_CONNECT,
  RULES_STAGE_HELO,
  RULES_STAGE_AUTH,
  RULES_STAGE_MAIL,
  RULES_STAGE_RCPT,
  RULES_STAGE_DATA,
  RULES_STAGE_POSTQ,
  RULES_STAGE_DELIVERY,
  RULES_N_STAGES
} RulesStage;

const char *rules_stage_name (RulesStage stage);
gboolean rules_stage_from_name (const char *name, RulesStage *out);

/* ---- verdicts ------------------------------------------------------------- */

/* Ordered by severity for merging concurrent answers (RULES.md):
 * discard > reject > tempfail > quarantine > accept > continue.
 * ACCEPT_ALL merges as ACCEPT's equal but is kept distinct for the engine. */
typedef enum
{
  RULES_VERDICT_CONTINUE,
  RULES_VERDICT_ACCEPT,
  RULES_VERDICT_ACCEPT_ALL,
  RULES_VERDICT_QUARANTINE,
  RULES_VERDICT_TEMPFAIL,
  RULES_VERDICT_REJECT,
  RULES_VERDICT_DISCARD,
} RulesVerdict;

const char *rules_verdict_name (RulesVerdict verdict);
gboolean rules_verdict_from_name (const char *name, RulesVerdict *out);
/* Severity rank for merging; higher wins. */
int rules_verdict_severity (RulesVerdict verdict);

/* ---- errors --------------------------------------------------------------- */

#define RULES_ERROR (rules_error_quark ())
GQuark rules_error_quark (void);

typedef enum
{
  RULES_ERROR_IO,      /* a file (rule file, include, list) could not be read */
  RULES_ERROR_SYNTAX,  /* lexer or parser */
  RULES_ERROR_UNKNOWN, /* unknown name: variable, list, connector, quarantine, function */
  RULES_ERROR_TYPE,    /* type mismatch found at load */
  RULES_ERROR_STAGE,   /* value or action not available in that stage */
  RULES_ERROR_INVALID, /* anything else found at load: bad reply code, bad regex, include loop ... */
} RulesError;

/* ---- values --------------------------------------------------------------- */

typedef enum
{
  RULES_TYPE_NONE, /* missing: reads as "" / 0 / false */
  RULES_TYPE_BOOL,
  RULES_TYPE_INT,   /* also sizes (bytes) and durations (seconds) */
  RULES_TYPE_FLOAT, /* connector scores */
  RULES_TYPE_STRING,
  RULES_TYPE_IP,   /* an address; RulesIp.prefix is 32 or 128 */
  RULES_TYPE_CIDR, /* a network */
  RULES_TYPE_REGEX,
  RULES_TYPE_STRV, /* a list of strings supplied by the host (rcpts, headers("X")) */
  RULES_TYPE_LIST, /* a compiled list (named or literal) */
} RulesType;

typedef struct
{
  guint8 family; /* 4 or 6 */
  guint8 prefix; /* network prefix length; full length for an address */
  guint8 addr[16];
} RulesIp;

typedef struct _RulesList RulesList;
/* A compiled regex (PCRE2; owned by the program).  Opaque: hosts never make one. */
typedef struct _RulesRegex RulesRegex;

/* A value.  Strings and string vectors are borrowed: the host keeps them
 * valid until rules_run_step() returns (the transaction owns them, or they
 * were allocated with rules_run_scratch_strdup()).  Strings need not be
 * NUL-terminated; len is authoritative.  `ci` marks strings compared
 * case-insensitively (addresses, domains, header names). */
typedef struct
{
  RulesType type;
  gboolean ci;
  union
  {
    gboolean b;
    gint64 i;
    double f;
    struct
    {
      const char *ptr;
      gsize len;
    } s;
    RulesIp ip;
    const RulesRegex *re;
    struct
    {
      const char *const *v;
      gsize n;
    } strv;
    const RulesList *list;
  };
} RulesValue;

/* Helpers for hosts filling values. */
void rules_value_set_bool (RulesValue *v, gboolean b);
void rules_value_set_int (RulesValue *v, gint64 i);
void rules_value_set_float (RulesValue *v, double f);
void rules_value_set_string (RulesValue *v, const char *s, gssize len, gboolean ci);
void rules_value_set_strv (RulesValue *v, const char *const *strv, gsize n, gboolean ci);
/* Parse "1.2.3.4", "::1", "[1.2.3.4]" or "[IPv6:::1]"; FALSE if not an IP. */
gboolean rules_ip_parse (const char *s, gsize len, RulesIp *out);
/* "1.2.3.4" / "2001:db8::1"; buf must hold 46 bytes. */
const char *rules_ip_to_string (const RulesIp *ip, char *buf);

/* ---- values the host provides -------------------------------------------- */

/* Every name a rule can read, resolved at load.  The "first stage" column of
 * RULES.md is enforced by the checker: reading a value before its stage is a
 * load error.  Values marked (arg) take one string argument, passed to
 * RulesHostVTable.get as `arg`. */
typedef enum
{
  RULES_VAR_NONE,
  /* connect */
  RULES_VAR_CLIENT_IP,   /* IP */
  RULES_VAR_CLIENT_PORT, /* INT */
  RULES_VAR_CLIENT_PTR,  /* STRING ci */
  RULES_VAR_SERVER_IP,   /* IP */
  RULES_VAR_SERVER_PORT, /* INT */
  RULES_VAR_SERVER_NAME, /* STRING ci */
  RULES_VAR_SESSION_ID,  /* STRING */
  RULES_VAR_NOW,         /* INT, seconds since the epoch (host clock) */
  /* helo */
  RULES_VAR_HELO_NAME,        /* STRING ci */
  RULES_VAR_TLS_ACTIVE,       /* BOOL */
  RULES_VAR_TLS_VERSION,      /* STRING */
  RULES_VAR_TLS_CIPHER,       /* STRING */
  RULES_VAR_TLS_PEER_SUBJECT, /* STRING */
  /* auth */
  RULES_VAR_CLIENT_AUTHENTICATED, /* BOOL */
  RULES_VAR_AUTH_USER,            /* STRING */
  RULES_VAR_AUTH_MECHANISM,       /* STRING ci */
  /* mail */
  RULES_VAR_MAIL_FROM,        /* STRING ci; "" for <> */
  RULES_VAR_MAIL_FROM_LOCAL,  /* STRING ci */
  RULES_VAR_MAIL_FROM_DOMAIN, /* STRING ci */
  RULES_VAR_MAIL_PARAM,       /* (arg) STRING: ESMTP parameter of MAIL FROM */
  /* rcpt */
  RULES_VAR_RCPT_TO,     /* STRING ci */
  RULES_VAR_RCPT_LOCAL,  /* STRING ci */
  RULES_VAR_RCPT_DOMAIN, /* STRING ci */
  RULES_VAR_RCPT_COUNT,  /* INT: recipients accepted so far */
  RULES_VAR_RCPTS,       /* STRV ci: the accepted recipients */
  /* data */
  RULES_VAR_HEADER,             /* (arg) STRING: first value of that header */
  RULES_VAR_HEADERS,            /* (arg) STRV: every value of that header */
  RULES_VAR_HAS_HEADER,         /* (arg) BOOL */
  RULES_VAR_SUBJECT,            /* STRING (RFC 2047 decoded) */
  RULES_VAR_MESSAGE_SIZE,       /* INT bytes */
  RULES_VAR_MESSAGE_ID,         /* STRING */
  RULES_VAR_BODY,               /* STRING: decoded text parts */
  RULES_VAR_MIME_VALID,         /* BOOL */
  RULES_VAR_MIME_ERRORS,        /* STRV */
  RULES_VAR_MIME_PARTS,         /* INT */
  RULES_VAR_MIME_DEPTH,         /* INT */
  RULES_VAR_MIME_ATTACHMENTS,   /* STRV: file names */
  RULES_VAR_MIME_CONTENT_TYPES, /* STRV ci */
  /* postq, delivery */
  RULES_VAR_QUEUE_ID,          /* STRING */
  RULES_VAR_DELIVERY_ATTEMPTS, /* INT */
  /* any stage */
  RULES_VAR_MACRO,     /* (arg) STRING: milter macro, "{name}" or "i" */
  RULES_VAR_CONNECTOR, /* CONNECTOR.field[(arg)]: see RulesRef */
  RULES_N_VARS
} RulesVar;

/* What RulesHostVTable.get is asked for.  For RULES_VAR_CONNECTOR, connector
 * and field name it (field "json" takes an arg: NAME.json("a.b")). */
typedef struct
{
  RulesVar var;
  const char *connector; /* RULES_VAR_CONNECTOR only */
  const char *field;     /* RULES_VAR_CONNECTOR only */
} RulesRef;

typedef enum
{
  RULES_QUERY_DNSBL,    /* name = reversed ip + "." + zone; answer BOOL (listed) */
  RULES_QUERY_RESOLVES, /* name = a host name; answer BOOL (has an A/AAAA record) */
} RulesQuery;

/* Shared-state checks, answered by RulesHostVTable.state (the engine keeps
 * the counters in vps/state.h, in memory or in Redis). */
typedef enum
{
  RULES_STATE_RATE,        /* key, limit, period: BOOL, TRUE while the events of key in the
                            * sliding period (this one included) are at most limit */
  RULES_STATE_CONCURRENCY, /* key: INT, the open sessions of key (this one joins it) */
  RULES_STATE_GREYLISTED,  /* BOOL: TRUE = defer now (the greylisting triplet of the
                            * recipient, or of any accepted recipient at data, has not passed) */
} RulesStateKind;

typedef struct
{
  RulesStateKind kind;
  const char *key; /* RATE, CONCURRENCY: NUL-terminated, no namespace (the host adds it) */
  gsize key_len;
  gint64 limit;       /* RATE: events allowed in the period, >= 1 */
  gint64 period;      /* RATE: seconds, >= 1 */
  gconstpointer site; /* the call in the program: two calls with one key count twice */
} RulesStateCall;

/* Non-terminal actions, handed to the host with their arguments evaluated.
 * Header names were validated at load; values are whatever the expression
 * gave: the host validates them (no CR/LF/NUL) before applying them. */
typedef enum
{
  RULES_EFFECT_ADD_HEADER,      /* name, value */
  RULES_EFFECT_INSERT_HEADER,   /* name, value: at the top */
  RULES_EFFECT_SET_HEADER,      /* name, value: replace every instance or add */
  RULES_EFFECT_REMOVE_HEADER,   /* name */
  RULES_EFFECT_SET_SENDER,      /* value */
  RULES_EFFECT_ADD_RCPT,        /* value */
  RULES_EFFECT_REMOVE_RCPT,     /* value */
  RULES_EFFECT_REPLACE_BODY,    /* value */
  RULES_EFFECT_LOG,             /* value, level */
  RULES_EFFECT_EXPORT_JSON,     /* name = export name */
  RULES_EFFECT_EXPORT_RAW,      /* name = export name */
  RULES_EFFECT_DELIVER_MAILDIR, /* name = path template, resolved against the rule file's dir */
  RULES_EFFECT_DELIVER_MBOX,    /* name = path template, resolved likewise */
  RULES_EFFECT_DELIVER_RELAY,   /* name = "[host]:port" */
  RULES_EFFECT_DELIVER_MX,
} RulesEffectKind;

typedef struct
{
  RulesEffectKind kind;
  const char *rule;  /* name of the rule */
  const char *name;  /* header name, export name, path, relay; or NULL */
  const char *value; /* evaluated expression (NUL-terminated); or NULL */
  gsize value_len;
  GLogLevelFlags level; /* RULES_EFFECT_LOG */
} RulesEffect;

typedef struct
{
  /* Fill *out with the value `ref` names (arg: the evaluated argument of a
   * function-like value, else NULL).  Leave *out untouched (NONE) when the
   * value is missing. */
  void (*get) (gpointer host, const RulesRef *ref, const char *arg, RulesValue *out);
  /* An asynchronous lookup.  Return TRUE with *out filled when the answer is
   * known (cached).  Otherwise start it (once per name) and return FALSE: the
   * step returns RULES_STEP_WAIT and is re-run when the host has the answer. */
  gboolean (*query) (gpointer host, RulesQuery query, const char *name, RulesValue *out);
  /* A non-terminal action of a matching rule. */
  void (*effect) (gpointer host, const RulesEffect *effect);
  /* A rule matched (its `when` was true); for reports and statistics. May be NULL. */
  void (*matched) (gpointer host, const char *rule);
  /* A shared-state check (rate, concurrency, greylisting): as query, TRUE
   * with *out filled when answered, FALSE to make the run wait.  The host
   * must answer a re-evaluation of the same call (same site and key, same
   * RulesRun) from its own cache: each evaluation counts once.  NULL: every
   * check answers "not limited" (rate true, concurrency 0, greylisted
   * false). */
  gboolean (*state) (gpointer host, const RulesStateCall *call, RulesValue *out);
} RulesHostVTable;

/* ---- loading -------------------------------------------------------------- */

typedef struct
{
  const char *name;
  RulesType type;     /* RULES_TYPE_NONE: any type (no checking) */
  gboolean takes_arg; /* NAME.field("arg"), e.g. http.json("a.b") */
} RulesFieldDecl;

/* A connector the configuration declares: calls to it are checked against
 * this, and NAME.field against its fields plus the common ones every
 * connector has (verdict, code, text, error, elapsed).  A NULL `fields` with
 * `any_field` TRUE accepts any field name (test connectors). */
typedef struct
{
  const char *name;
  const RulesFieldDecl *fields;
  gsize n_fields;
  gboolean any_field;
} RulesConnectorDecl;

typedef struct
{
  const RulesConnectorDecl *connectors;
  gsize n_connectors;
  /* Quarantine and export names the configuration defines; NULL-terminated.
   * NULL means "do not check" (vpsctl check-rules without a config). */
  const char *const *quarantines;
  const char *const *exports;
} RulesLoadOptions;

typedef struct _RulesProgram RulesProgram;

RulesProgram *rules_program_load_file (const char *path, const RulesLoadOptions *options,
                                       GError **error);
/* `name` is the file name used in messages and as the base for relative paths
 * (its directory). */
RulesProgram *rules_program_load_string (const char *name, const char *text,
                                         const RulesLoadOptions *options, GError **error);
RulesProgram *rules_program_ref (RulesProgram *program);
void rules_program_unref (RulesProgram *program);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RulesProgram, rules_program_unref)

/* What the front ends need to know to ask the MTA for as little as possible. */
guint rules_program_n_rules (const RulesProgram *program, RulesStage stage);
/* TRUE if any rule reads `var` (or, for RULES_VAR_CONNECTOR, calls anything). */
gboolean rules_program_reads (const RulesProgram *program, RulesVar var);
/* Can some rule take this action?  (A connector called anywhere may add
 * more: look at rules_program_calls too.) */
gboolean rules_program_has_effect (const RulesProgram *program, RulesEffectKind effect);
gboolean rules_program_has_verdict (const RulesProgram *program, RulesVerdict verdict);
/* Does some rule make this shared-state check (rate(), concurrency(),
 * greylisted() or the `greylist` action for RULES_STATE_GREYLISTED)? */
gboolean rules_program_uses_state (const RulesProgram *program, RulesStateKind kind);
/* Names of the connectors called anywhere in `stage`; NULL-terminated, owned by the program. */
const char *const *rules_program_calls (const RulesProgram *program, RulesStage stage);
/* Names of the `set` variables, index order. */
const char *const *rules_program_variables (const RulesProgram *program);

/* A human-readable listing of the compiled program (vpsctl explain). */
char *rules_program_explain (const RulesProgram *program);

/* ---- evaluation ----------------------------------------------------------- */

/* Per-transaction storage of `set` variables (var.NAME).  Create one per
 * transaction; reset it at RSET. */
typedef struct _RulesState RulesState;
RulesState *rules_state_new (const RulesProgram *program);
void rules_state_reset (RulesState *state);
void rules_state_free (RulesState *state);
/* Read a variable by name (for reports); NULL if unset. */
const RulesValue *rules_state_get (const RulesState *state, const char *name);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RulesState, rules_state_free)

typedef enum
{
  RULES_STEP_DONE,
  RULES_STEP_CALL,
  RULES_STEP_WAIT,
} RulesStepStatus;

typedef struct
{
  RulesStepStatus status;
  /* RULES_STEP_DONE */
  RulesVerdict verdict;
  guint code;             /* 0 = the rule gave none: the host picks a default */
  const char *enhanced;   /* "5.7.1" or NULL */
  const char *text;       /* or NULL */
  const char *rule;       /* the rule that ended the stage, or NULL */
  const char *quarantine; /* RULES_VERDICT_QUARANTINE: the quarantine name */
  /* RULES_STEP_CALL: connectors to run concurrently (owned by the program) */
  const char *const *calls;
  gsize n_calls;
  const char *call_rule; /* the rule holding the `call` */
  /* RULES_STEP_DONE by a `greylist` action: with code 0 the host gives its
   * configured greylisting reply instead of the tempfail default. */
  gboolean greylist;
} RulesStep;

typedef struct _RulesRun RulesRun;

/* A run holds a reference on program; state must outlive it. */
RulesRun *rules_run_new (RulesProgram *program, RulesState *state, RulesStage stage);
RulesStepStatus rules_run_step (RulesRun *run, const RulesHostVTable *vtable, gpointer host,
                                RulesStep *step);
/* Scratch memory valid until the run is freed (for host-computed strings). */
const char *rules_run_scratch_strdup (RulesRun *run, const char *s, gssize len);
void rules_run_free (RulesRun *run);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RulesRun, rules_run_free)

G_END_DECLS
