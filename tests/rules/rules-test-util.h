/* SPDX-License-Identifier: MIT
 *
 * rules-test-util.h — a fake engine for the rules tests: values by RulesVar
 * (and "connector.field"), a query cache that answers only after a WAIT,
 * recorded effects and matched rules, shared-state checks counted in a
 * table (answered at once or, like Redis, after a WAIT), and the connector declarations of the
 * RULES.md example (clamav, rspamd, spf, greylist).
 */
#pragma once

#include "rules/rules.h"

typedef struct
{
  GHashTable *vars;    /* "RulesVar[:arg]" or "conn.field[:arg]" -> RulesValue* */
  GHashTable *answers; /* query name -> GINT (0/1): known answers */
  GHashTable *pending; /* query names started and not answered */
  GPtrArray *queries;  /* every name asked, in order */
  GPtrArray *effects;  /* "kind name=value" strings */
  GPtrArray *matched;  /* rule names */
  GPtrArray *strings;  /* storage for values */
  /* shared-state checks (rate, concurrency, greylisted) */
  gboolean state_async;      /* answer only after a WAIT, like Redis */
  gboolean grey_defer;       /* greylisted() answer */
  GHashTable *counts;        /* key -> GINT64 events counted */
  GHashTable *state_answers; /* "site:kind:key" -> answer (this run) */
  GHashTable *state_held;    /* counted, answered at the next WAIT */
  GPtrArray *state_calls;    /* "rate KEY N P", "concurrency KEY", "greylisted" */
} FakeHost;

extern const RulesHostVTable fake_vtable;
extern const RulesLoadOptions test_options;
extern const RulesLoadOptions test_options_unchecked;

FakeHost *fake_host_new (void);
void fake_host_free (FakeHost *h);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FakeHost, fake_host_free)
void fake_set_string (FakeHost *h, RulesVar var, const char *arg, const char *s, gboolean ci);
void fake_set_int (FakeHost *h, RulesVar var, const char *arg, gint64 i);
void fake_set_bool (FakeHost *h, RulesVar var, const char *arg, gboolean b);
void fake_set_ip (FakeHost *h, RulesVar var, const char *ip);
void fake_set_strv (FakeHost *h, RulesVar var, const char *arg, const char *const *v);
void fake_set_conn (FakeHost *h, const char *conn, const char *field, const RulesValue *v);
/* Events counted for a state key (rate, concurrency). */
gint64 fake_state_count (FakeHost *h, const char *key);
/* Answers a query that was (or will be) started. */
void fake_answer (FakeHost *h, const char *name, gboolean listed);

/* Runs a stage to completion, answering pending queries with `answer_all`
 * (TRUE: listed) after each WAIT and continuing after each CALL; returns the
 * final step.  *n_waits / *n_calls count suspensions (may be NULL). */
RulesStep fake_run_stage (RulesProgram *prog, RulesState *state, RulesStage stage, FakeHost *h,
                          gboolean answer_all, guint *n_waits, guint *n_calls);

RulesProgram *load_or_fail (const char *text);
