/* SPDX-License-Identifier: MIT
 *
 * engine-private.h — one stage run, shared by the stage runner (engine.c)
 * and the rules' host it hands to rules_run_step() (engine-host.c).  Not
 * for use outside vps/engine*.c.
 *
 * The runner owns the run: it creates and frees it, steps it and counts
 * the outstanding work (`pending`).  The host reads session, txn and
 * earlier results through it, starts DNS queries (one more `pending`, given
 * back with vps_stage_run_pending_done() when the answer arrives) and
 * records effects on the txn.
 */
#pragma once

#include "vps/engine.h"
#include "vps/modify.h"

G_BEGIN_DECLS

typedef struct
{
  VpsEngine *engine;
  VpsSession *session;
  VpsTxn *txn;
  RulesStage stage;
  RulesRun *run;
  GTask *task;
  VpsStageResult *result;
  guint pending;     /* connector calls or DNS queries outstanding */
  gboolean stepping; /* the step loop is on the stack */
  gboolean in_call;  /* the outstanding work is a connector round */
  guint steps;
  char *call_rule;
  GPtrArray *call_results; /* this round's VpsConnectorResult* */
  GHashTable *dns_started; /* keys of queries started in this stage */
  GPtrArray *scratch;      /* allocations handed to the rules (strv) */
} VpsStageRun;

/* The session id every log line of the stage carries. */
static inline const char *
vps_stage_run_sid (VpsStageRun *sr)
{
  return vps_session_get_id (sr->session);
}

/* engine.c: one piece of outstanding work (a connector call or a DNS
 * query) has answered; the last one merges a call round or resumes the
 * step loop.  May free sr. */
void vps_stage_run_pending_done (VpsStageRun *sr);

/* engine-host.c: append a modification made by `rule` to the txn, or log
 * and drop it when vps/modify.c refuses it (or the value holds a NUL). */
void vps_stage_run_add_mod (VpsStageRun *sr, VpsModOp op, const char *name, const char *value,
                            gsize value_len, gint index, const char *rule);

/* engine-host.c: get / query / effect / matched for rules_run_step(). */
extern const RulesHostVTable vps_engine_host_vtable;

G_END_DECLS
