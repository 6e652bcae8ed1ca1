/* SPDX-License-Identifier: MIT
 *
 * engine.h — the stage runner: one immutable, reference-counted VpsEngine
 * (compiled rules, configuration, connector instances, quarantine store)
 * shared by every worker thread; a reload builds a new engine and swaps the
 * pointer, sessions keep the engine they started with.
 *
 * vps_engine_run_stage_async() runs the rules of one stage for one
 * transaction on the caller's thread-default main context: it evaluates the
 * RulesRun, answers values from the session/transaction/message and from
 * earlier connector results (NAME.field), runs DNS queries (vps/dns.h),
 * answers rate(), concurrency() and greylisting from the shared state
 * (vps/state.h; engine-state.c, engine-greylist.c; docs/state.md),
 * turns non-terminal actions into modifications, log lines, exports and
 * delivery decisions, and runs `call`ed connectors concurrently, merging
 * their verdicts by severity (discard > reject > tempfail > quarantine >
 * accept > continue).  A non-continue connector verdict ends the stage as if
 * the rule had said it.
 *
 * accept_all: at connect/helo it marks the session, later the transaction;
 * once set, later policy stages answer accept without running rules, except
 * `delivery`, which routes rather than judges and always runs.
 *
 * Every stage decision is logged once with the session id:
 *   stage=rcpt verdict=reject rule="no open relay" code=554 5.7.1
 * and counted (atomic counters per stage and verdict, per connector).
 */
#pragma once

#include <gio/gio.h>
#include "rules/rules.h"
#include "vps/config.h"
#include "vps/connector.h"
#include "vps/session.h"

G_BEGIN_DECLS

#define VPS_ENGINE_ERROR (vps_engine_error_quark ())
GQuark vps_engine_error_quark (void);

typedef enum
{
  VPS_ENGINE_ERROR_CONFIG,    /* connectors, quarantine store, exports */
  VPS_ENGINE_ERROR_RULES,     /* the rule file did not load (message from rules) */
  VPS_ENGINE_ERROR_CANCELLED, /* the stage was cancelled */
  VPS_ENGINE_ERROR_STAGE,     /* the stage cannot run (e.g. data without a message) */
} VpsEngineError;

/* Bound on connector call rounds (RULES_STEP_CALL) and DNS waits in one
 * stage: a program cannot make the engine loop forever. */
#define VPS_ENGINE_MAX_STEPS 4096
/* concurrency(): a session's membership of a key expires this long after
 * the session's last stage (every stage renews it; the end of the session
 * removes it), so the sessions of an instance that crashed stop counting. */
#define VPS_ENGINE_CONC_TTL_MS (30 * 60 * 1000)

/* ---- stage results -------------------------------------------------------- */

struct _VpsStageResult
{
  RulesStage stage;
  RulesVerdict verdict; /* continue when no rule ended the stage */
  guint code;           /* always set: the rule's, the connector's or the default */
  char *enhanced;       /* may be NULL when the reply has none */
  char *text;
  char *rule;         /* the rule (or "connector NAME") that decided, or NULL */
  char *quarantine;   /* RULES_VERDICT_QUARANTINE: the name */
  char *rcpt;         /* rcpt/delivery: the recipient it was about */
  gboolean skipped;   /* accept_all was in force: rules were not run */
  GPtrArray *matched; /* names of the rules whose `when` was true (char*) */
  GPtrArray *results; /* VpsConnectorResult* called in this stage (refs) */
};

VpsStageResult *vps_stage_result_ref (VpsStageResult *result);
void vps_stage_result_unref (VpsStageResult *result);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsStageResult, vps_stage_result_unref)

/* Fill the default reply for `verdict` at `stage` (from proto/mail's table):
 * a rcpt reject is a recipient reject, a connect reject refuses access,
 * ... .  Strings are static. */
void vps_default_reply (RulesStage stage, RulesVerdict verdict, guint *code, const char **enhanced,
                        const char **text);

/* ---- engine --------------------------------------------------------------- */

typedef struct _VpsEngine VpsEngine;

/* Load the rule file named by [vpsd] rules (with the connectors, quarantine
 * and export names of cfg declared), instantiate every [connector NAME]
 * through the registry, open the quarantine store. */
VpsEngine *vps_engine_new (VpsConfig *cfg, GError **error);
/* Tests and tools: an already-loaded program (cfg still gives connectors,
 * quarantine and exports; cfg NULL = defaults).  The quarantine store is
 * opened only when [quarantine] dir exists or can be created. */
VpsEngine *vps_engine_new_with_program (VpsConfig *cfg, RulesProgram *program, GError **error);
/* Same, loading `text` as rules named `name` with cfg's declarations. */
VpsEngine *vps_engine_new_with_rules_string (VpsConfig *cfg, const char *name, const char *text,
                                             GError **error);
VpsEngine *vps_engine_ref (VpsEngine *engine);
void vps_engine_unref (VpsEngine *engine);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsEngine, vps_engine_unref)

VpsConfig *vps_engine_get_config (VpsEngine *engine);     /* borrowed */
RulesProgram *vps_engine_get_program (VpsEngine *engine); /* borrowed */
gsize vps_engine_n_connectors (VpsEngine *engine);
VpsConnector *vps_engine_get_connector (VpsEngine *engine, gsize i);             /* borrowed */
VpsConnector *vps_engine_lookup_connector (VpsEngine *engine, const char *name); /* or NULL */

/* Load options declaring cfg's connectors (their classes' fields, looked
 * up in the registry: unknown type → VPS_ENGINE_ERROR_CONFIG), quarantine
 * and export names; for tools that load a program themselves (vpsctl
 * check-rules -c FILE).  Borrows strings from cfg: keep cfg alive. */
RulesLoadOptions *vps_engine_load_options_new (VpsConfig *cfg, GError **error);
void vps_engine_load_options_free (RulesLoadOptions *options);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RulesLoadOptions, vps_engine_load_options_free)

/* Run one stage.  The session and txn are referenced until the callback.
 * The result is also appended to the txn's stage results; a quarantine
 * verdict sets the txn's quarantine name, accept_all sets the session's
 * (connect, helo) or the txn's flag.  finish fails only on cancellation or
 * when the stage cannot run. */
void vps_engine_run_stage_async (VpsEngine *engine, VpsSession *session, VpsTxn *txn,
                                 RulesStage stage, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data);
VpsStageResult *vps_engine_run_stage_finish (VpsEngine *engine, GAsyncResult *result,
                                             GError **error);
/* Synchronous wrapper (tools, tests): runs the stage on a private main
 * context until done.  Never call it from a worker loop. */
VpsStageResult *vps_engine_run_stage_sync (VpsEngine *engine, VpsSession *session, VpsTxn *txn,
                                           RulesStage stage, GCancellable *cancellable,
                                           GError **error);

/* Store the txn's message into its quarantine (the txn's quarantine name),
 * with the metadata object of vps/report.h; *out_id the store's id. */
gboolean vps_engine_quarantine_txn (VpsEngine *engine, VpsTxn *txn, char **out_id, GError **error);

/* The shared state (vps/state.h) of rate(), concurrency() and greylisting:
 * engines made from the same [state] values share one (a reload keeps the
 * counters).  NULL when the rules make no such check.  Borrowed. */
typedef struct _VpsState VpsState;
VpsState *vps_engine_get_state (VpsEngine *engine);

/* Statistics since the engine was created (atomic reads). */
guint64 vps_engine_stats_stage (VpsEngine *engine, RulesStage stage, RulesVerdict verdict);

G_END_DECLS
