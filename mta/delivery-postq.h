/* SPDX-License-Identifier: MIT
 *
 * delivery-postq.h — the postq stage in vsmtpd's queue runner: once per
 * message, after its commit and before any delivery (the client has its
 * 250 already, so slow connectors cost it nothing).
 */
#pragma once

#include "mta/queue.h"
#include "vps/engine.h"

G_BEGIN_DECLS

typedef enum
{
  VPS_POSTQ_CONTINUE, /* go on to delivery (recipients a reject failed are FAILED) */
  VPS_POSTQ_DEFERRED, /* every open recipient DEFERRED: no delivery this pass */
  VPS_POSTQ_GONE,     /* discarded or quarantined: removed from the queue */
} VpsPostqOutcome;

/* Run the postq stage on txn (rebuilt from env, the message set) and apply
 * its verdict: reject → every recipient not done FAILED with the rule's
 * reply (the caller's bounce path sends the DSN); tempfail or an error →
 * DEFERRED (env->postq stays FALSE: it runs again at the retry); discard,
 * quarantine → the queue entry removed; header and body edits → the queued
 * message rewritten durably (vps_queue_rewrite_message) and *raw replaced
 * by the new content, the txn's message too; `deliver` → env->route (the
 * message's route, see delivery-postq.c).  env->postq is TRUE when the
 * message passed (CONTINUE without a reject). */
VpsPostqOutcome vps_postq_run (VpsQueue *queue, VpsEngine *engine, VpsSession *session, VpsTxn *txn,
                               VpsEnvelope *env, GBytes **raw);

G_END_DECLS
