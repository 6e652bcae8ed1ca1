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
#include "vps/state.h"

G_BEGIN_DECLS

/* engine-state.c: the engine's shared-state settings, and a stage run's
 * answers and queued checks. */
typedef struct _VpsEngineState VpsEngineState;
typedef struct _VpsStageState VpsStageState;

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
  VpsStageState *state;    /* shared-state checks of this run, or NULL */
} VpsStageRun;

/* engine-greylist.c: postgrey's greylisting over vps/state.h operations. */
#define VPS_GREY_MAX_TRIPLETS 48 /* triplets one check reads (data, many rcpts) */

typedef struct
{
  gint64 delay_s, lifetime_ms, retry_window_ms;
  gint64 awl;           /* auto_whitelist, 0 = off */
  GPtrArray *whitelist; /* GInetAddressMask*: whitelist_clients */
} VpsGreyConf;

/* The sender as postgrey keys it (newly allocated). */
char *vps_grey_sender (const char *sender);
/* The keys a greylisting check of this stage reads (appended to keys,
 * char*): with auto-whitelisting the client's counter and hour mark first,
 * then one per triplet.  FALSE: nothing to greylist (a whitelisted client,
 * no client address, no recipient). */
gboolean vps_grey_keys (const VpsGreyConf *conf, VpsStageRun *sr, GPtrArray *keys);
/* Given what those keys hold (GET results, in order): TRUE = defer, and the
 * updates to make (w: room for n_keys + 2 ops, pointing into keys). */
gboolean vps_grey_decide (const VpsGreyConf *conf, const char *const *keys, guint n_keys,
                          const VpsStateResult *r, VpsStateOp *w, guint *nw);

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

/* engine.c: the engine's shared-state settings (NULL only while it is made). */
VpsEngineState *vps_engine_get_state_ctx (VpsEngine *engine);

/* engine-state.c: [state] on_error and [greylist], and the VpsState the
 * program's checks use (shared by engines with the same [state]; none when
 * the program makes no check).  Fails on a [greylist] that cannot work or
 * a backend vps_state_new() refuses. */
VpsEngineState *vps_engine_state_new (VpsConfig *cfg, RulesProgram *program, GError **error);
void vps_engine_state_free (VpsEngineState *es);
VpsState *vps_engine_state_get (VpsEngineState *es);
/* The reply of a `greylist` action that gave none: [greylist] code,
 * enhanced, text (owned by es). */
void vps_engine_state_greylist_reply (VpsEngineState *es, guint *code, const char **enhanced,
                                      const char **text);

/* engine-state.c: the host's answer to a check (RulesHostVTable.state):
 * TRUE with *out filled, or FALSE with the check queued for the next
 * vps_stage_run_state_flush(), which the runner calls when the step waits:
 * the queued checks go as one pipelined batch (one `pending` each batch). */
gboolean vps_stage_run_state (VpsStageRun *sr, const RulesStateCall *call, RulesValue *out);
void vps_stage_run_state_flush (VpsStageRun *sr);
/* A batch failed and [state] on_error = tempfail: the stage must end 451. */
gboolean vps_stage_run_state_failed (VpsStageRun *sr);
/* At the start of every stage: renew the session's concurrency memberships. */
void vps_stage_run_state_begin (VpsStageRun *sr);
void vps_stage_run_state_free (VpsStageRun *sr);

/* engine-host.c: get / query / effect / matched for rules_run_step(). */
extern const RulesHostVTable vps_engine_host_vtable;

G_END_DECLS
