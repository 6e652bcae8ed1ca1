/* SPDX-License-Identifier: MIT
 *
 * conn-policy-map.c — what the `policy` connector says and what it hears,
 * in the engine's terms.
 *
 * Requests: the attributes Postfix 3.7's smtpd sends (SMTPD_POLICY_README),
 * in its order, filled from the session and transaction.  As in Postfix,
 * `instance` is empty before the first recipient and then identifies the
 * transaction (it is the transaction id, which RSET renews), `recipient`
 * at the end of the message is set only when there is exactly one
 * recipient, and `recipient_count` is 0 before the end of the message.
 *
 * Replies: an access(5) action becomes a verdict (table below), a reply,
 * fields and modifications.  Actions without a verdict of their own
 * (DEFER_IF_REJECT, FILTER, WARN, INFO, restriction names) give continue,
 * with the action kept in NAME.action for the rules.
 */
#include "connectors/policy/conn-policy-private.h"

#include <string.h>

#include "vps/log.h"

static const struct
{
  RulesStage stage;
  PolicyState state;
} stage_states[] = {
  { RULES_STAGE_CONNECT, POLICY_STATE_CONNECT },
  { RULES_STAGE_HELO, POLICY_STATE_EHLO },
  /* Postfix has no AUTH state: AUTH happens between EHLO and MAIL */
  { RULES_STAGE_AUTH, POLICY_STATE_EHLO },
  { RULES_STAGE_MAIL, POLICY_STATE_MAIL },
  { RULES_STAGE_RCPT, POLICY_STATE_RCPT },
  /* our data stage has the whole message: Postfix's END-OF-MESSAGE */
  { RULES_STAGE_DATA, POLICY_STATE_END_OF_MESSAGE },
  { RULES_STAGE_POSTQ, POLICY_STATE_END_OF_MESSAGE },
  /* per recipient, with that recipient: what a recipient check needs */
  { RULES_STAGE_DELIVERY, POLICY_STATE_RCPT },
};

PolicyState
conn_policy_stage_state (RulesStage stage)
{
  for (gsize i = 0; i < G_N_ELEMENTS (stage_states); i++)
    if (stage_states[i].stage == stage)
      return stage_states[i].state;
  return POLICY_STATE_UNKNOWN;
}

static gboolean
stage_after_message (RulesStage stage)
{
  return stage == RULES_STAGE_DATA || stage == RULES_STAGE_POSTQ;
}

static const char *
or_empty (const char *s)
{
  return s != NULL ? s : "";
}

typedef struct
{
  GString *out;
  GError *error;
} Enc;

static void
put (Enc *e, const char *name, const char *value)
{
  if (e->error == NULL && !policy_encode_attr (e->out, name, or_empty (value), &e->error))
    g_prefix_error (&e->error, "attribute %s: ", name);
}

static void
put_uint (Enc *e, const char *name, guint64 value)
{
  char buf[24];

  g_snprintf (buf, sizeof buf, "%" G_GUINT64_FORMAT, value);
  put (e, name, buf);
}

GBytes *
conn_policy_build_request (VpsTxn *txn, RulesStage stage, const char *policy_context,
                           GError **error)
{
  VpsSession *s = vps_txn_get_session (txn);
  PolicyState state = conn_policy_stage_state (stage);
  gsize n_rcpts = 0;
  const char *const *rcpts = vps_txn_get_rcpts (txn, &n_rcpts);
  const char *recipient = NULL;
  const char *ptr = vps_session_get_client_ptr (s);
  const char *client_name = ptr != NULL && *ptr != '\0' ? ptr : "unknown";
  gboolean tls = vps_session_get_tls_active (s);
  guint64 size = 0;
  Enc e = { g_string_sized_new (768), NULL };

  if (state == POLICY_STATE_RCPT)
    recipient = vps_txn_get_rcpt (txn);
  else if (stage_after_message (stage) && n_rcpts == 1)
    recipient = rcpts[0];

  if (stage_after_message (stage))
    size = vps_txn_get_size (txn);
  else if (vps_txn_get_sender_param (txn, "SIZE") != NULL)
    {
      /* the client's announcement; junk reads as unknown (0), as in Postfix */
      if (!g_ascii_string_to_unsigned (vps_txn_get_sender_param (txn, "SIZE"), 10, 0, G_MAXINT64,
                                       &size, NULL))
        size = 0;
    }

  put (&e, POLICY_ATTR_REQUEST, POLICY_REQUEST_SMTPD_ACCESS);
  put (&e, POLICY_ATTR_PROTOCOL_STATE, policy_state_to_string (state));
  put (&e, POLICY_ATTR_PROTOCOL_NAME, stage == RULES_STAGE_CONNECT ? "SMTP" : "ESMTP");
  put (&e, POLICY_ATTR_HELO_NAME, stage == RULES_STAGE_CONNECT ? "" : vps_session_get_helo (s));
  put (&e, POLICY_ATTR_QUEUE_ID, vps_txn_get_queue_id (txn));
  put (&e, POLICY_ATTR_SENDER, stage >= RULES_STAGE_MAIL ? vps_txn_get_sender (txn) : NULL);
  put (&e, POLICY_ATTR_RECIPIENT, recipient);
  put_uint (&e, POLICY_ATTR_RECIPIENT_COUNT, stage_after_message (stage) ? n_rcpts : 0);
  put (&e, POLICY_ATTR_CLIENT_ADDRESS, vps_session_get_client_ip (s));
  put (&e, POLICY_ATTR_CLIENT_NAME, client_name);
  put (&e, POLICY_ATTR_REVERSE_CLIENT_NAME, client_name);
  /* Postfix: empty at CONNECT, HELO and MAIL, then one value per message */
  put (&e, POLICY_ATTR_INSTANCE, stage >= RULES_STAGE_RCPT ? vps_txn_get_id (txn) : NULL);
  if (vps_session_get_authenticated (s))
    {
      const char *auth = vps_txn_get_sender_param (txn, "AUTH");

      put (&e, POLICY_ATTR_SASL_METHOD, vps_session_get_auth_mechanism (s));
      put (&e, POLICY_ATTR_SASL_USERNAME, vps_session_get_auth_user (s));
      put (&e, POLICY_ATTR_SASL_SENDER, auth != NULL && strcmp (auth, "<>") != 0 ? auth : NULL);
    }
  else
    {
      put (&e, POLICY_ATTR_SASL_METHOD, NULL);
      put (&e, POLICY_ATTR_SASL_USERNAME, NULL);
      put (&e, POLICY_ATTR_SASL_SENDER, NULL);
    }
  put_uint (&e, POLICY_ATTR_SIZE, size);
  put (&e, POLICY_ATTR_CCERT_SUBJECT, tls ? vps_session_get_tls_peer_subject (s) : NULL);
  /* issuer and fingerprints are not in the session model: sent empty, as
   * Postfix does for a client without a verified certificate */
  put (&e, POLICY_ATTR_CCERT_ISSUER, NULL);
  put (&e, POLICY_ATTR_CCERT_FINGERPRINT, NULL);
  put (&e, POLICY_ATTR_CCERT_PUBKEY_FINGERPRINT, NULL);
  put (&e, POLICY_ATTR_ENCRYPTION_PROTOCOL, tls ? vps_session_get_tls_version (s) : NULL);
  put (&e, POLICY_ATTR_ENCRYPTION_CIPHER, tls ? vps_session_get_tls_cipher (s) : NULL);
  /* the key size is not known here; Postfix sends 0 without TLS */
  put (&e, POLICY_ATTR_ENCRYPTION_KEYSIZE, "0");
  put (&e, POLICY_ATTR_ETRN_DOMAIN, NULL);
  put (&e, POLICY_ATTR_STRESS, NULL);
  put_uint (&e, POLICY_ATTR_CLIENT_PORT, vps_session_get_client_port (s));
  put (&e, POLICY_ATTR_POLICY_CONTEXT, policy_context);
  put (&e, POLICY_ATTR_SERVER_ADDRESS, vps_session_get_server_ip (s));
  put_uint (&e, POLICY_ATTR_SERVER_PORT, vps_session_get_server_port (s));
  if (e.error != NULL)
    {
      g_propagate_error (error, e.error);
      g_string_free (e.out, TRUE);
      return NULL;
    }
  policy_encode_end (e.out);
  return g_string_free_to_bytes (e.out);
}

/* ---- replies -------------------------------------------------------------- */

static const struct
{
  PolicyActionKind kind;
  RulesVerdict verdict;
} action_verdicts[] = {
  { POLICY_ACTION_OK, RULES_VERDICT_ACCEPT },
  { POLICY_ACTION_DUNNO, RULES_VERDICT_CONTINUE },
  { POLICY_ACTION_REJECT, RULES_VERDICT_REJECT },
  { POLICY_ACTION_DEFER, RULES_VERDICT_TEMPFAIL },
  /* "defer unless something else rejects": our severity order gives
   * exactly that, since a reject anywhere beats tempfail */
  { POLICY_ACTION_DEFER_IF_PERMIT, RULES_VERDICT_TEMPFAIL },
  /* "defer only if something else rejects": nothing to do on its own */
  { POLICY_ACTION_DEFER_IF_REJECT, RULES_VERDICT_CONTINUE },
  { POLICY_ACTION_HOLD, RULES_VERDICT_QUARANTINE },
  { POLICY_ACTION_DISCARD, RULES_VERDICT_DISCARD },
  { POLICY_ACTION_PREPEND, RULES_VERDICT_CONTINUE },
  { POLICY_ACTION_REDIRECT, RULES_VERDICT_CONTINUE },
  { POLICY_ACTION_BCC, RULES_VERDICT_CONTINUE },
  { POLICY_ACTION_FILTER, RULES_VERDICT_CONTINUE },
  { POLICY_ACTION_WARN, RULES_VERDICT_CONTINUE },
  { POLICY_ACTION_INFO, RULES_VERDICT_CONTINUE },
  { POLICY_ACTION_RESTRICTION, RULES_VERDICT_CONTINUE },
};

static RulesVerdict
action_verdict (const PolicyAction *a)
{
  if (a->kind == POLICY_ACTION_REPLY)
    return a->code >= 500 ? RULES_VERDICT_REJECT : RULES_VERDICT_TEMPFAIL;
  for (gsize i = 0; i < G_N_ELEMENTS (action_verdicts); i++)
    if (action_verdicts[i].kind == a->kind)
      return action_verdicts[i].verdict;
  return RULES_VERDICT_CONTINUE;
}

/* The action word as the peer sent it (case aside): the code of a numeric
 * reply, the first restriction name, else the keyword. */
static char *
action_word (const PolicyAction *a)
{
  if (a->kind == POLICY_ACTION_REPLY)
    return g_strdup_printf ("%u", a->code);
  if (a->kind == POLICY_ACTION_RESTRICTION && a->argument != NULL)
    {
      gsize n = strcspn (a->argument, " \t,");
      return g_strndup (a->argument, n);
    }
  return g_strdup (policy_action_kind_to_string (a->kind));
}

static char *
action_text (const PolicyAction *a)
{
  switch (a->kind)
    {
      case POLICY_ACTION_PREPEND:
        return g_strdup_printf ("%s: %s", or_empty (a->header_name), or_empty (a->header_value));
      case POLICY_ACTION_REDIRECT:
      case POLICY_ACTION_BCC:
      case POLICY_ACTION_FILTER:
      case POLICY_ACTION_RESTRICTION:
        return g_strdup (a->argument);
      case POLICY_ACTION_OK:
      case POLICY_ACTION_DUNNO:
        /* trailing text Postfix ignores */
        return NULL;
      case POLICY_ACTION_REJECT:
      case POLICY_ACTION_DEFER:
      case POLICY_ACTION_DEFER_IF_REJECT:
      case POLICY_ACTION_DEFER_IF_PERMIT:
      case POLICY_ACTION_REPLY:
      case POLICY_ACTION_HOLD:
      case POLICY_ACTION_DISCARD:
      case POLICY_ACTION_WARN:
      case POLICY_ACTION_INFO:
      default:
        return g_strdup (a->text);
    }
}

static gboolean
add_mod (VpsConnectorResult *r, VpsModOp op, const char *name, const char *value, GError **error)
{
  VpsModification *m = vps_modification_new (op, name, value, 0, error);

  if (m == NULL)
    return FALSE;
  vps_connector_result_add_modification (r, m);
  return TRUE;
}

VpsConnectorResult *
conn_policy_result_from_action (const PolicyAction *a, VpsTxn *txn, RulesStage stage,
                                const char *connector, const char *quarantine, GError **error)
{
  RulesVerdict verdict = action_verdict (a);
  g_autoptr (VpsConnectorResult) r = vps_connector_result_new (verdict);
  g_autofree char *word = action_word (a);
  g_autofree char *text = action_text (a);
  const char *sid = vps_session_get_id (vps_txn_get_session (txn));
  g_autoptr (GError) local = NULL;

  vps_connector_result_set_string (r, "action", word);
  /* NAME.text reads the result's reply text: the code only for replies */
  vps_connector_result_set_reply (
      r, a->kind == POLICY_ACTION_REPLY ? a->code : 0,
      verdict == RULES_VERDICT_REJECT || verdict == RULES_VERDICT_TEMPFAIL ? a->enhanced : NULL,
      text);
  if (verdict == RULES_VERDICT_QUARANTINE)
    r->quarantine = g_strdup (quarantine);

  switch (a->kind)
    {
      case POLICY_ACTION_PREPEND:
        /* Postfix puts a PREPENDed header on top (Received-SPF belongs
         * there): an insert at index 0, which the front ends map back to
         * PREPEND or SMFIR_INSHEADER 0. */
        {
          VpsModification *m = vps_modification_new (VPS_MOD_INSERT_HEADER, a->header_name,
                                                     a->header_value, 0, &local);
          if (m == NULL)
            {
              g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                           "policy %s: PREPEND refused: %s", connector, local->message);
              return NULL;
            }
          vps_connector_result_add_modification (r, m);
        }
        break;
      case POLICY_ACTION_REDIRECT:
        /* every recipient so far (and the one being checked) is replaced;
         * recipients accepted after this answer are not (see docs) */
        {
          gsize n = 0;
          const char *const *rcpts = vps_txn_get_rcpts (txn, &n);
          const char *current = stage == RULES_STAGE_RCPT ? vps_txn_get_rcpt (txn) : NULL;
          gboolean ok = TRUE;

          for (gsize i = 0; ok && i < n; i++)
            ok = add_mod (r, VPS_MOD_REMOVE_RCPT, NULL, rcpts[i], &local);
          if (ok && current != NULL && !g_strv_contains (rcpts, current))
            ok = add_mod (r, VPS_MOD_REMOVE_RCPT, NULL, current, &local);
          if (ok)
            ok = add_mod (r, VPS_MOD_ADD_RCPT, NULL, a->argument, &local);
          if (!ok)
            {
              g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                           "policy %s: REDIRECT refused: %s", connector, local->message);
              return NULL;
            }
        }
        break;
      case POLICY_ACTION_BCC:
        if (!add_mod (r, VPS_MOD_ADD_RCPT, NULL, a->argument, &local))
          {
            g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                         "policy %s: BCC refused: %s", connector, local->message);
            return NULL;
          }
        break;
      case POLICY_ACTION_WARN:
        /* Postfix logs WARN; so do we, with the session */
        vps_warning (sid, "policy %s: WARN %s", connector, or_empty (a->text));
        break;
      case POLICY_ACTION_OK:
      case POLICY_ACTION_DUNNO:
      case POLICY_ACTION_REJECT:
      case POLICY_ACTION_DEFER:
      case POLICY_ACTION_DEFER_IF_REJECT:
      case POLICY_ACTION_DEFER_IF_PERMIT:
      case POLICY_ACTION_REPLY:
      case POLICY_ACTION_HOLD:
      case POLICY_ACTION_DISCARD:
      case POLICY_ACTION_FILTER:
      case POLICY_ACTION_INFO:
      case POLICY_ACTION_RESTRICTION:
      default:
        break;
    }
  return g_steal_pointer (&r);
}
