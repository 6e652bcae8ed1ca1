/* SPDX-License-Identifier: MIT
 *
 * delivery-postq.c — the postq stage in the queue runner (delivery.c calls
 * it on a pool thread, so the engine's synchronous runner is used, as for
 * the delivery stage there).
 *
 * Contract: see delivery-postq.h.  A message that passed is marked
 * (env->postq): with the rewrite when the message changed, otherwise with
 * the runner's next envelope update (or never, when the message is
 * delivered and removed in this pass).  A crash before that runs postq
 * again, as such a crash may deliver again: a duplicate, never a loss.
 *
 * `deliver` in postq routes the whole message: the first one that ran is
 * kept in env->route ("relay:[HOST]:PORT", "mx", "maildir:PATH",
 * "mbox:PATH"), written with the envelope like env->postq, and used by
 * the runner for every recipient the delivery stage does not route — at
 * this pass and at every retry.
 */
#include "mta/delivery-postq.h"

#include "vps/log.h"
#include "vps/message.h"
#include "vps/modify.h"

/* Every recipient not done yet gets the state and the reply. */
static void
set_all (VpsEnvelope *env, VpsRcptState state, const char *reply)
{
  for (guint i = 0; i < env->rcpts->len; i++)
    {
      VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);

      if (r->state == VPS_RCPT_DELIVERED || r->state == VPS_RCPT_FAILED)
        continue;
      r->state = state;
      g_free (r->result);
      r->result = g_strdup (reply);
      r->updated = g_get_real_time ();
    }
}

static char *
result_reply (const VpsStageResult *result)
{
  return g_strdup_printf ("%u %s %s", result->code, result->enhanced ? result->enhanced : "",
                          result->text ? result->text : "");
}

static VpsPostqOutcome
defer_on_error (VpsEnvelope *env, const char *what, const GError *error)
{
  g_autofree char *line = g_strdup_printf ("451 4.3.0 %s", error->message);

  vps_warning (env->id, "postq: %s%s; deferred", what, error->message);
  set_all (env, VPS_RCPT_DEFERRED, line);
  return VPS_POSTQ_DEFERRED;
}

/* The header and body edits made durable before any delivery: a crash
 * afterwards delivers the edited copy, and postq is not run again
 * (env->postq is written in the same rewrite). */
static gboolean
rewrite (VpsQueue *queue, VpsTxn *txn, VpsEnvelope *env, GBytes **raw, GError **error)
{
  GPtrArray *mods = vps_txn_get_modifications (txn);
  g_autoptr (GBytes) edited = NULL;
  g_autoptr (VpsMessage) msg = NULL;

  if (mods == NULL || mods->len == 0)
    return TRUE;
  edited = vps_modify_apply_message (*raw, mods, error);
  if (edited == NULL)
    return FALSE;
  if (g_bytes_equal (edited, *raw))
    return TRUE; /* envelope edits only: not applied in postq (docs/vsmtpd.md) */
  env->postq = TRUE;
  if (!vps_queue_rewrite_message (queue, env, edited, error))
    {
      env->postq = FALSE;
      return FALSE;
    }
  g_bytes_unref (*raw);
  *raw = g_bytes_ref (edited);
  /* the delivery stage sees the message as it will be delivered */
  msg = vps_message_new (edited, NULL);
  if (msg != NULL)
    vps_txn_set_message (txn, msg);
  vps_info (env->id, "postq: message rewritten (%" G_GSIZE_FORMAT " bytes)",
            g_bytes_get_size (edited));
  return TRUE;
}

/* The route of the first `deliver` that ran in postq, as [delivery]
 * default spells routes. */
static void
take_route (VpsTxn *txn, VpsEnvelope *env)
{
  GPtrArray *decisions = vps_txn_get_delivers (txn);
  const VpsDeliverDecision *d;

  if (decisions == NULL || decisions->len == 0)
    return;
  d = g_ptr_array_index (decisions, 0);
  g_free (env->route);
  switch (d->kind)
    {
      case VPS_DELIVER_MAILDIR:
        env->route = g_strconcat ("maildir:", d->target, NULL);
        break;
      case VPS_DELIVER_MBOX:
        env->route = g_strconcat ("mbox:", d->target, NULL);
        break;
      case VPS_DELIVER_RELAY:
        env->route = g_strconcat ("relay:", d->target, NULL);
        break;
      case VPS_DELIVER_MX:
      default:
        env->route = g_strdup ("mx");
        break;
    }
  vps_info (env->id, "postq: routed by rule \"%s\": %s", d->rule ? d->rule : "?", env->route);
}

static VpsPostqOutcome
remove_entry (VpsQueue *queue, VpsEnvelope *env)
{
  g_autoptr (GError) error = NULL;

  /* the queue logs the removal; a failure leaves the entry for the next
   * pass, which runs postq again */
  if (!vps_queue_remove (queue, env->id, &error))
    vps_warning (env->id, "postq: removing: %s", error->message);
  return VPS_POSTQ_GONE;
}

VpsPostqOutcome
vps_postq_run (VpsQueue *queue, VpsEngine *engine, VpsSession *session, VpsTxn *txn,
               VpsEnvelope *env, GBytes **raw)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) result = NULL;
  g_autofree char *reply = NULL;
  const char *rule;

  result = vps_engine_run_stage_sync (engine, session, txn, RULES_STAGE_POSTQ, NULL, &error);
  if (result == NULL)
    return defer_on_error (env, "", error);
  rule = result->rule ? result->rule : "?";
  switch (result->verdict)
    {
      case RULES_VERDICT_REJECT:
        reply = result_reply (result);
        vps_notice (env->id, "postq: rejected by rule \"%s\": %s", rule, reply);
        set_all (env, VPS_RCPT_FAILED, reply);
        return VPS_POSTQ_CONTINUE;
      case RULES_VERDICT_TEMPFAIL:
        reply = result_reply (result);
        vps_info (env->id, "postq: deferred by rule \"%s\": %s", rule, reply);
        set_all (env, VPS_RCPT_DEFERRED, reply);
        return VPS_POSTQ_DEFERRED;
      case RULES_VERDICT_DISCARD:
        vps_info (env->id, "postq: discarded by rule \"%s\"", rule);
        return remove_entry (queue, env);
      default:
        break;
    }
  if (result->verdict == RULES_VERDICT_QUARANTINE || vps_txn_get_quarantine (txn) != NULL)
    {
      g_autofree char *qid = NULL;

      if (!vps_engine_quarantine_txn (engine, txn, &qid, &error))
        return defer_on_error (env, "quarantine: ", error);
      vps_info (env->id, "postq: quarantined as %s", qid);
      return remove_entry (queue, env);
    }
  take_route (txn, env);
  if (!rewrite (queue, txn, env, raw, &error))
    return defer_on_error (env, "rewriting the message: ", error);
  env->postq = TRUE;
  return VPS_POSTQ_CONTINUE;
}
