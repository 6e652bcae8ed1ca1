/* SPDX-License-Identifier: MIT
 *
 * policy-session.c — what a Postfix policy request means for the engine:
 * which SMTP session and transaction it belongs to, which stages it runs,
 * and the one action it is answered with (SMTPD_POLICY_README, access(5)).
 *
 * Contract: vps_policy_conn_request() takes one parsed request and either
 * queues its reply at once or marks the connection busy until the stages
 * it runs have finished.  It never fails: a request we cannot use is
 * answered DUNNO (and logged), a stage that fails or times out is answered
 * with a temporary failure — Postfix always gets an answer.
 *
 * Sessions and transactions (verified with Postfix 3.7): one smtpd process
 * sends the requests of one SMTP session over one connection and reuses it
 * for its next session; `instance` is empty at CONNECT, HELO and MAIL and
 * set from the first RCPT on.  So: a request whose client/server address
 * and port differ from the current session's, or a CONNECT, starts a new
 * VpsSession; a MAIL starts a new VpsTxn, the first request with a
 * non-empty instance adopts it, a different instance (or HELO/EHLO, which
 * resets SMTP's transaction) ends it.  A new VpsTxn starts empty, so rule
 * variables, connector results and recipients never cross transactions.
 *
 * Stages: each runs once per session (connect, helo per HELO name) or per
 * transaction (auth, mail), at the first request that can run it — Postfix
 * asks at RCPT only, by default (smtpd_delay_reject = yes), and a site may
 * list check_policy_service in smtpd_recipient_restrictions alone.  Of
 * these catch-up stages only a refusal (reject, tempfail, discard) or a
 * quarantine shows in the reply; an accept there must not become an OK
 * that skips Postfix's own checks of the request's restriction list.
 *
 * One action per reply: the verdict is the action; modifications Postfix
 * can apply (add_header/insert_header → PREPEND, one add_rcpt → BCC; never
 * at END-OF-MESSAGE, where access(5) says PREPEND cannot execute) wait in
 * a queue and go out, one each, in replies that would otherwise be DUNNO —
 * this request's, the repeats of it (the same request once per restriction
 * list) and the transaction's later requests.  Every other modification,
 * and whatever is still queued when the transaction ends, is logged as not
 * applied: a warning once per rule and operation per hour, then debug.
 */
#include "vps/policy-private.h"

#include <string.h>

#include "vps/log.h"
#include "vps/metrics.h"

/* ---- small helpers ---------------------------------------------------------- */

static gboolean
nonempty (const char *s)
{
  return s != NULL && *s != '\0';
}

static gboolean
refuses (RulesVerdict v)
{
  return v == RULES_VERDICT_REJECT || v == RULES_VERDICT_TEMPFAIL || v == RULES_VERDICT_DISCARD;
}

/* The same attributes with the same values in the same order: Postfix
 * evaluating check_policy_service in another restriction list. */
static gboolean
same_request (const PolicyRequest *a, const PolicyRequest *b)
{
  guint n = policy_request_get_n_attrs (a);

  if (n != policy_request_get_n_attrs (b))
    return FALSE;
  for (guint i = 0; i < n; i++)
    if (strcmp (policy_request_get_value (a, i), policy_request_get_value (b, i)) != 0
        || strcmp (policy_request_get_name (a, i), policy_request_get_name (b, i)) != 0)
      return FALSE;
  return TRUE;
}

static guint16
port_of (const PolicyRequest *req, const char *name)
{
  guint64 port = 0;

  if (!policy_request_get_number (req, name, 65535, &port))
    return 0;
  return (guint16)port;
}

/* ---- modifications that cannot be sent ------------------------------------ */

static void
not_applied (VpsPolicyConn *conn, const char *rule, VpsModOp op, const char *what, const char *why)
{
  g_autofree char *key
      = g_strdup_printf ("policy-na:%s:%s", rule ? rule : "", vps_mod_op_name (op));

  if (!vps_log_once (key, 3600, G_LOG_LEVEL_WARNING, vps_policy_conn_id (conn),
                     "policy: rule \"%s\": %s %s not applied: %s", rule ? rule : "",
                     vps_mod_op_name (op), what ? what : "", why))
    vps_debug (vps_policy_conn_id (conn), "policy: rule \"%s\": %s %s not applied: %s",
               rule ? rule : "", vps_mod_op_name (op), what ? what : "", why);
}

static void
drop_pending (VpsPolicyConn *conn, const char *why)
{
  PolicyAction *a;
  guint i = 0;

  while ((a = g_queue_pop_head (&conn->pending)) != NULL)
    {
      const char *rule = i < conn->pend_rule->len ? g_ptr_array_index (conn->pend_rule, i) : NULL;

      if (a->kind == POLICY_ACTION_PREPEND)
        not_applied (conn, rule, VPS_MOD_ADD_HEADER, a->header_name, why);
      else
        not_applied (conn, rule, VPS_MOD_ADD_RCPT, a->argument, why);
      policy_action_free (a);
      i++;
    }
  g_ptr_array_set_size (conn->pend_rule, 0);
}

static void
push_pending (VpsPolicyConn *conn, PolicyAction *action, const char *rule)
{
  g_queue_push_tail (&conn->pending, action);
  g_ptr_array_add (conn->pend_rule, g_strdup (rule));
}

static PolicyAction *
pop_pending (VpsPolicyConn *conn)
{
  PolicyAction *a = g_queue_pop_head (&conn->pending);

  if (a != NULL && conn->pend_rule->len > 0)
    g_ptr_array_remove_index (conn->pend_rule, 0);
  return a;
}

/* Look at the modifications the stages of this request added: queue what
 * Postfix can apply, log the rest. */
static void
collect_modifications (VpsPolicyConn *conn)
{
  GPtrArray *mods = vps_txn_get_modifications (conn->txn);
  gboolean eom = conn->state == POLICY_STATE_END_OF_MESSAGE;

  for (; mods != NULL && conn->mods_seen < mods->len; conn->mods_seen++)
    {
      const VpsModification *m = g_ptr_array_index (mods, conn->mods_seen);

      switch (m->op)
        {
          case VPS_MOD_QUARANTINE:
            break; /* the verdict: HOLD */
          case VPS_MOD_ADD_HEADER:
          case VPS_MOD_INSERT_HEADER:
            if (eom)
              not_applied (conn, m->rule, m->op, m->name,
                           "PREPEND cannot execute at END-OF-MESSAGE (access(5))");
            else if (g_queue_get_length (&conn->pending) >= VPS_POLICY_MAX_PENDING)
              not_applied (conn, m->rule, m->op, m->name, "too many modifications waiting");
            else
              push_pending (conn, policy_action_new_prepend (m->name, m->value), m->rule);
            break;
          case VPS_MOD_ADD_RCPT:
            if (eom)
              not_applied (conn, m->rule, m->op, m->value, "BCC cannot execute at END-OF-MESSAGE");
            else if (conn->bcc_used)
              not_applied (conn, m->rule, m->op, m->value, "Postfix keeps one BCC per transaction");
            else
              {
                conn->bcc_used = TRUE;
                push_pending (conn, policy_action_new_argument (POLICY_ACTION_BCC, m->value),
                              m->rule);
              }
            break;
          default:
            not_applied (conn, m->rule, m->op, m->name ? m->name : m->value,
                         "the policy protocol cannot express it");
            break;
        }
    }
}

/* ---- sessions and transactions ------------------------------------------ */

static void
end_txn (VpsPolicyConn *conn)
{
  if (g_queue_get_length (&conn->pending) > 0)
    drop_pending (conn, "no later reply of the transaction could carry it (one action per reply)");
  g_clear_pointer (&conn->txn, vps_txn_unref);
  g_clear_pointer (&conn->instance, g_free);
  conn->txn_is_message = FALSE;
  conn->ran_mail = FALSE;
  conn->mods_seen = 0;
  conn->bcc_used = FALSE;
  conn->hold_sent = FALSE;
}

static void
new_txn (VpsPolicyConn *conn, gboolean message)
{
  end_txn (conn);
  conn->txn = vps_txn_new (conn->session);
  conn->txn_is_message = message;
  if (message)
    vps_metrics_count_transaction (VPS_METRICS_FRONTEND_POLICY);
}

void
vps_policy_conn_end_session (VpsPolicyConn *conn)
{
  end_txn (conn);
  g_clear_pointer (&conn->session, vps_session_unref);
  g_clear_pointer (&conn->session_key, g_free);
  g_clear_pointer (&conn->ran_helo, g_free);
  conn->ran_connect = FALSE;
}

static void
new_session (VpsPolicyConn *conn, const PolicyRequest *req, const char *key)
{
  const char *name = policy_request_get_client_name (req);
  const char *ip = policy_request_get_client_address (req);
  const char *sip = policy_request_lookup (req, POLICY_ATTR_SERVER_ADDRESS);

  vps_policy_conn_end_session (conn);
  conn->session = vps_session_new ();
  conn->session_key = g_strdup (key);
  /* client_name is the verified name ("unknown" without one), what
   * client.ptr means; reverse_client_name is the unverified PTR */
  if (name != NULL && strcmp (name, "unknown") == 0)
    name = NULL;
  vps_session_set_client (conn->session, ip ? ip : "", port_of (req, POLICY_ATTR_CLIENT_PORT),
                          name);
  if (nonempty (sip))
    vps_session_set_server (conn->session, sip, port_of (req, POLICY_ATTR_SERVER_PORT), NULL);
  vps_info (vps_policy_conn_id (conn), "policy: session client=%s[%s]:%u (connection %s)",
            name ? name : "unknown", ip ? ip : "", port_of (req, POLICY_ATTR_CLIENT_PORT),
            conn->id);
  new_txn (conn, FALSE);
}

/* HELO, TLS and AUTH can change within a session: keep them current. */
static void
update_session (VpsPolicyConn *conn, const PolicyRequest *req)
{
  VpsSession *s = conn->session;
  const char *helo = policy_request_get_helo_name (req);
  const char *user = policy_request_get_sasl_username (req);
  const char *tls = policy_request_lookup (req, POLICY_ATTR_ENCRYPTION_PROTOCOL);

  if (nonempty (helo) && g_strcmp0 (helo, vps_session_get_helo (s)) != 0)
    vps_session_set_helo (s, helo);
  if (nonempty (user) != vps_session_get_authenticated (s)
      || (nonempty (user) && g_strcmp0 (user, vps_session_get_auth_user (s)) != 0))
    vps_session_set_auth (s, nonempty (user), user,
                          policy_request_lookup (req, POLICY_ATTR_SASL_METHOD));
  if (nonempty (tls) != vps_session_get_tls_active (s)
      || (nonempty (tls) && g_strcmp0 (tls, vps_session_get_tls_version (s)) != 0))
    vps_session_set_tls (s, nonempty (tls), tls,
                         policy_request_lookup (req, POLICY_ATTR_ENCRYPTION_CIPHER),
                         policy_request_lookup (req, POLICY_ATTR_CCERT_SUBJECT));
  if (conn->want_macros)
    {
      /* every attribute as macro("{name}"): rules can read what has no
       * variable of its own (policy_context, stress, protocol_name ...) */
      for (guint i = 0; i < policy_request_get_n_attrs (req); i++)
        {
          g_autofree char *name = g_strdup_printf ("{%s}", policy_request_get_name (req, i));

          vps_session_set_macro (s, name, policy_request_get_value (req, i));
        }
    }
}

static void
set_sender (VpsPolicyConn *conn, const PolicyRequest *req)
{
  const char *sender = policy_request_get_sender (req);
  guint64 size = 0;

  if (sender == NULL)
    return;
  /* at MAIL and RCPT, size is the client's SIZE= (0 when it sent none) */
  if (conn->state < POLICY_STATE_END_OF_MESSAGE && policy_request_get_size (req, &size) && size > 0)
    {
      g_autofree char *param = g_strdup_printf ("SIZE=%" G_GUINT64_FORMAT, size);
      const char *params[] = { param, NULL };

      vps_txn_set_sender (conn->txn, sender, params);
    }
  else
    vps_txn_set_sender (conn->txn, sender, NULL);
}

/* Which session and transaction `req` belongs to (see the file comment). */
static void
place_request (VpsPolicyConn *conn, const PolicyRequest *req)
{
  char key[VPS_POLICY_MAX_KEY];
  const char *instance = policy_request_get_instance (req);
  const char *qid = policy_request_get_queue_id (req);

  g_snprintf (key, sizeof key, "%s|%s|%s|%s",
              policy_request_lookup (req, POLICY_ATTR_CLIENT_ADDRESS) ?: "",
              policy_request_lookup (req, POLICY_ATTR_CLIENT_PORT) ?: "",
              policy_request_lookup (req, POLICY_ATTR_SERVER_ADDRESS) ?: "",
              policy_request_lookup (req, POLICY_ATTR_SERVER_PORT) ?: "");
  if (conn->session == NULL || conn->state == POLICY_STATE_CONNECT
      || strcmp (key, conn->session_key) != 0)
    new_session (conn, req, key);
  update_session (conn, req);

  switch (conn->state)
    {
      case POLICY_STATE_CONNECT:
        break;
      case POLICY_STATE_EHLO:
      case POLICY_STATE_HELO:
        /* HELO/EHLO reset SMTP's transaction (RFC 5321 4.1.4) */
        if (conn->txn_is_message)
          new_txn (conn, FALSE);
        break;
      case POLICY_STATE_MAIL:
        new_txn (conn, TRUE);
        set_sender (conn, req);
        break;
      default:
        if (nonempty (instance))
          {
            if (conn->txn_is_message && conn->instance == NULL)
              conn->instance = g_strdup (instance); /* adopt MAIL's transaction */
            else if (!conn->txn_is_message || strcmp (conn->instance, instance) != 0)
              {
                new_txn (conn, TRUE);
                conn->instance = g_strdup (instance);
              }
          }
        else if (!conn->txn_is_message)
          new_txn (conn, TRUE);
        if (vps_txn_get_sender (conn->txn) == NULL)
          set_sender (conn, req);
        break;
    }
  if (nonempty (qid) && g_strcmp0 (qid, vps_txn_get_queue_id (conn->txn)) != 0)
    vps_txn_set_queue_id (conn->txn, qid);
}

/* ---- the plan: which stages this request runs ---------------------------- */

static void
plan_add (VpsPolicyConn *conn, RulesStage stage, gboolean target)
{
  g_assert (conn->n_plan < VPS_POLICY_MAX_PLAN);
  if (target)
    conn->target = (gint)conn->n_plan;
  conn->plan[conn->n_plan++] = stage;
}

static void
plan_mail (VpsPolicyConn *conn, gboolean target)
{
  if (vps_session_get_authenticated (conn->session)
      && rules_program_n_rules (vps_engine_get_program (conn->engine), RULES_STAGE_AUTH) > 0)
    plan_add (conn, RULES_STAGE_AUTH, FALSE);
  plan_add (conn, RULES_STAGE_MAIL, target);
  conn->ran_mail = TRUE;
}

static void
make_plan (VpsPolicyConn *conn, const PolicyRequest *req)
{
  PolicyState st = conn->state;
  const char *helo = vps_session_get_helo (conn->session);

  conn->n_plan = conn->plan_i = 0;
  conn->target = -1;
  if (!conn->ran_connect)
    {
      plan_add (conn, RULES_STAGE_CONNECT, st == POLICY_STATE_CONNECT);
      conn->ran_connect = TRUE;
    }
  if (st == POLICY_STATE_EHLO || st == POLICY_STATE_HELO
      || (st != POLICY_STATE_CONNECT && nonempty (helo) && g_strcmp0 (helo, conn->ran_helo) != 0))
    {
      plan_add (conn, RULES_STAGE_HELO, st == POLICY_STATE_EHLO || st == POLICY_STATE_HELO);
      g_free (conn->ran_helo);
      conn->ran_helo = g_strdup (helo ? helo : "");
    }
  if (st == POLICY_STATE_MAIL)
    plan_mail (conn, TRUE);
  else if (st >= POLICY_STATE_RCPT && !conn->ran_mail && vps_txn_get_sender (conn->txn) != NULL)
    plan_mail (conn, FALSE);
  if (st == POLICY_STATE_RCPT)
    {
      vps_txn_set_rcpt (conn->txn, policy_request_get_recipient (req) ?: "", NULL);
      plan_add (conn, RULES_STAGE_RCPT, TRUE);
    }
  else if (st == POLICY_STATE_END_OF_MESSAGE)
    {
      guint64 size = 0;

      if (policy_request_get_size (req, &size))
        vps_txn_set_size (conn->txn, size);
      plan_add (conn, RULES_STAGE_DATA, TRUE);
    }
}

/* ---- the reply -------------------------------------------------------------- */

/* Append "action=VALUE\n\n" and remember VALUE for repeats when `verdict`. */
static void
send_action (VpsPolicyConn *conn, const PolicyAction *action, gboolean verdict)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *value = NULL;

  if (action->kind == POLICY_ACTION_OK || action->kind == POLICY_ACTION_DUNNO)
    value = g_strdup (policy_action_kind_to_string (action->kind));
  else
    value = policy_action_format (action, &error);
  if (value == NULL)
    {
      /* the engine checks replies, so this is a last resort: the plain
       * action still tells Postfix what to do */
      PolicyActionKind plain = action->kind;

      if (action->kind == POLICY_ACTION_REPLY)
        plain = action->code >= 500 ? POLICY_ACTION_REJECT : POLICY_ACTION_DEFER;
      else if (action->kind == POLICY_ACTION_PREPEND || action->kind == POLICY_ACTION_BCC)
        plain = POLICY_ACTION_DUNNO;
      vps_warning (vps_policy_conn_id (conn), "policy: action refused (%s): plain %s sent",
                   error->message, policy_action_kind_to_string (plain));
      value = g_strdup (policy_action_kind_to_string (plain));
      action = NULL;
    }
  g_string_append (conn->out, "action=");
  g_string_append (conn->out, value);
  g_string_append (conn->out, "\n\n");
  vps_debug (vps_policy_conn_id (conn), "policy: reply action=%s", value);
  if (verdict)
    {
      g_free (conn->prev_reply);
      conn->prev_reply = g_steal_pointer (&value);
      conn->prev_kind = action != NULL ? action->kind : POLICY_ACTION_DUNNO;
    }
}

static PolicyAction *
verdict_action (VpsPolicyConn *conn, const VpsStageResult *r)
{
  RulesVerdict v = r != NULL ? r->verdict : RULES_VERDICT_CONTINUE;

  switch (v)
    {
      case RULES_VERDICT_CONTINUE:
        return policy_action_new (conn->no_opinion_action);
      case RULES_VERDICT_ACCEPT:
        return policy_action_new (conn->accept_action);
      case RULES_VERDICT_ACCEPT_ALL:
        return policy_action_new (POLICY_ACTION_OK);
      case RULES_VERDICT_REJECT:
      case RULES_VERDICT_TEMPFAIL:
        {
          g_autoptr (GError) error = NULL;
          g_autoptr (MailReply) reply = mail_reply_new (r->code, r->enhanced, r->text, &error);
          PolicyAction *a = reply ? policy_action_new_reply (reply, &error) : NULL;

          if (a != NULL)
            return a;
          vps_warning (vps_policy_conn_id (conn), "policy: reply %u refused (%s): plain %s sent",
                       r->code, error->message, v == RULES_VERDICT_REJECT ? "REJECT" : "DEFER");
          return policy_action_new (v == RULES_VERDICT_REJECT ? POLICY_ACTION_REJECT
                                                              : POLICY_ACTION_DEFER);
        }
      case RULES_VERDICT_DISCARD:
        return policy_action_new_text (POLICY_ACTION_DISCARD, NULL, r->rule);
      case RULES_VERDICT_QUARANTINE:
        {
          g_autofree char *text = g_strdup_printf ("quarantine %s", r->quarantine ?: "");
          return policy_action_new_text (POLICY_ACTION_HOLD, NULL, text);
        }
      default:
        g_assert_not_reached ();
    }
}

static void
remember_verdict (VpsPolicyConn *conn, PolicyActionKind kind, const char *value)
{
  g_free (conn->prev_reply);
  conn->prev_reply = g_strdup (value);
  conn->prev_kind = kind;
}

/* The reply for the stages this request ran: conn->final decides (NULL =
 * continue), or a temporary failure when a stage failed. */
static void
answer (VpsPolicyConn *conn)
{
  g_autoptr (PolicyAction) action = NULL;
  const VpsStageResult *r = conn->final;
  VpsStageResult failed = { 0 };
  const char *quarantine = vps_txn_get_quarantine (conn->txn);

  collect_modifications (conn);
  if (conn->failed)
    {
      const char *enh, *text;

      failed.stage = conn->failed_stage;
      failed.verdict = RULES_VERDICT_TEMPFAIL;
      vps_default_reply (conn->failed_stage, RULES_VERDICT_TEMPFAIL, &failed.code, &enh, &text);
      failed.enhanced = (char *)enh;
      failed.text = (char *)text;
      r = &failed;
    }
  if (r != NULL && refuses (r->verdict))
    action = verdict_action (conn, r);
  else if (quarantine != NULL && !conn->hold_sent)
    {
      /* quarantine, at this request's stage or at an earlier one of the
       * transaction whose reply had something more urgent to say */
      g_autofree char *text = g_strdup_printf ("quarantine %s", quarantine);

      action = policy_action_new_text (POLICY_ACTION_HOLD, NULL, text);
      conn->hold_sent = TRUE;
    }
  else if (r != NULL && r->verdict == RULES_VERDICT_QUARANTINE)
    action = policy_action_new (conn->no_opinion_action); /* held already */
  else
    action = verdict_action (conn, r);

  /* a reply that says nothing carries a waiting modification instead */
  if (action->kind == POLICY_ACTION_DUNNO && conn->state != POLICY_STATE_END_OF_MESSAGE
      && g_queue_get_length (&conn->pending) > 0)
    {
      g_autoptr (PolicyAction) mod = pop_pending (conn);

      remember_verdict (conn, POLICY_ACTION_DUNNO, "DUNNO");
      send_action (conn, mod, FALSE);
      return;
    }
  send_action (conn, action, TRUE);
}

/* ---- running the plan ------------------------------------------------------- */

static gboolean run_plan (VpsPolicyConn *conn);

static void
stage_finished (VpsPolicyConn *conn, RulesStage stage, GAsyncResult *res)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) r = vps_engine_run_stage_finish (conn->engine, res, &error);
  gboolean is_target = (gint)conn->plan_i == conn->target;

  conn->busy = FALSE;
  g_clear_object (&conn->cancellable);
  if (r == NULL)
    {
      /* timed out (cancelled) or could not run: a temporary failure,
       * never silence; the request ends here */
      vps_warning (vps_policy_conn_id (conn), "policy: stage %s failed: %s: tempfail",
                   rules_stage_name (stage), error->message);
      conn->failed = TRUE;
      conn->failed_stage = stage;
      conn->plan_i = conn->n_plan;
    }
  else if (refuses (r->verdict))
    {
      /* a refusal ends the request, whichever stage said it */
      g_clear_pointer (&conn->final, vps_stage_result_unref);
      conn->final = g_steal_pointer (&r);
      conn->plan_i = conn->n_plan;
    }
  else
    {
      /* a catch-up stage's accept says nothing about this request; its
       * quarantine is on the txn and becomes HOLD in answer() */
      if (is_target)
        {
          g_clear_pointer (&conn->final, vps_stage_result_unref);
          conn->final = g_steal_pointer (&r);
        }
      if (stage == RULES_STAGE_RCPT)
        vps_txn_accept_rcpt (conn->txn);
      conn->plan_i++;
    }
  if (run_plan (conn))
    vps_policy_conn_resume (conn);
}

typedef struct
{
  VpsPolicyConn *conn; /* a reference */
  RulesStage stage;
} StageCall;

static void
stage_done (GObject *source, GAsyncResult *res, gpointer data)
{
  StageCall *call = data;

  if (!call->conn->closed)
    stage_finished (call->conn, call->stage, res);
  else
    {
      g_autoptr (VpsStageResult) r = vps_engine_run_stage_finish (call->conn->engine, res, NULL);
    }
  vps_policy_conn_unref (call->conn);
  g_free (call);
}

static gboolean
should_run (VpsPolicyConn *conn, RulesStage stage)
{
  /* accept_all answers accept at every later stage (the engine skips the
   * rules then), so the stage runs even without rules */
  return rules_program_n_rules (vps_engine_get_program (conn->engine), stage) > 0
         || vps_session_get_accept_all (conn->session) || vps_txn_get_accept_all (conn->txn);
}

/* Run the plan from plan_i on.  TRUE when everything ran and the reply is
 * queued; FALSE when a stage is in flight (its callback goes on). */
static gboolean
run_plan (VpsPolicyConn *conn)
{
  while (conn->plan_i < conn->n_plan)
    {
      RulesStage stage = conn->plan[conn->plan_i];
      StageCall *call;

      if (!should_run (conn, stage))
        {
          if (stage == RULES_STAGE_RCPT)
            vps_txn_accept_rcpt (conn->txn);
          conn->plan_i++;
          continue;
        }
      call = g_new0 (StageCall, 1);
      call->conn = vps_policy_conn_ref (conn);
      call->stage = stage;
      conn->busy = TRUE;
      conn->busy_since = g_get_monotonic_time ();
      g_clear_object (&conn->cancellable);
      conn->cancellable = g_cancellable_new ();
      vps_engine_run_stage_async (conn->engine, conn->session, conn->txn, stage, conn->cancellable,
                                  stage_done, call);
      return FALSE;
    }
  answer (conn);
  g_clear_pointer (&conn->final, vps_stage_result_unref);
  g_clear_pointer (&conn->req, policy_request_unref);
  conn->failed = FALSE;
  return TRUE;
}

/* ---- requests --------------------------------------------------------------- */

/* The previous request again: its verdict again, or a waiting modification
 * in its DUNNO slot; no rule runs twice for one SMTP event. */
static void
answer_repeat (VpsPolicyConn *conn)
{
  if (conn->prev_kind == POLICY_ACTION_DUNNO && conn->state != POLICY_STATE_END_OF_MESSAGE
      && g_queue_get_length (&conn->pending) > 0)
    {
      g_autoptr (PolicyAction) mod = pop_pending (conn);

      send_action (conn, mod, FALSE);
      return;
    }
  g_string_append (conn->out, "action=");
  g_string_append (conn->out, conn->prev_reply);
  g_string_append (conn->out, "\n\n");
}

void
vps_policy_conn_request (VpsPolicyConn *conn, PolicyRequest *req)
{
  const char *kind = policy_request_get_request (req);
  PolicyState st = policy_request_get_state (req);

  if (conn->prev_req != NULL && conn->prev_reply != NULL && same_request (req, conn->prev_req))
    {
      vps_debug (vps_policy_conn_id (conn), "policy: repeated %s request",
                 policy_state_to_string (st));
      answer_repeat (conn);
      return;
    }
  g_clear_pointer (&conn->prev_req, policy_request_unref);
  g_clear_pointer (&conn->prev_reply, g_free);
  if (kind != NULL && strcmp (kind, POLICY_REQUEST_SMTPD_ACCESS) != 0)
    {
      vps_log_once ("policy-request-kind", 60, G_LOG_LEVEL_WARNING, vps_policy_conn_id (conn),
                    "policy: request=%s is not %s: DUNNO", kind, POLICY_REQUEST_SMTPD_ACCESS);
      policy_reply_encode_simple (conn->out, POLICY_ACTION_DUNNO);
      return;
    }
  if (st == POLICY_STATE_UNKNOWN || st == POLICY_STATE_VRFY || st == POLICY_STATE_ETRN)
    {
      /* nothing of a message to judge (VRFY/ETRN), or a state we do not
       * know: no opinion, and the session state stays as it was */
      if (st == POLICY_STATE_UNKNOWN)
        vps_log_once ("policy-state", 60, G_LOG_LEVEL_WARNING, vps_policy_conn_id (conn),
                      "policy: protocol_state=%s unknown: DUNNO",
                      policy_request_lookup (req, POLICY_ATTR_PROTOCOL_STATE) ?: "(none)");
      policy_reply_encode_simple (conn->out, POLICY_ACTION_DUNNO);
      return;
    }
  /* BDAT stands where DATA does (smtpd_data_restrictions with CHUNKING) */
  conn->state = st == POLICY_STATE_BDAT ? POLICY_STATE_DATA : st;
  conn->prev_req = policy_request_ref (req);
  conn->req = policy_request_ref (req);
  place_request (conn, req);
  vps_debug (vps_policy_conn_id (conn), "policy: request %s instance=%s",
             policy_state_to_string (st), policy_request_get_instance (req) ?: "");
  make_plan (conn, req);
  run_plan (conn);
}
