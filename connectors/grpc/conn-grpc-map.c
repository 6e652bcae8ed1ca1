/* SPDX-License-Identifier: MIT
 *
 * conn-grpc-map.c — the `grpc` connector's mapping: which Check calls a
 * stage needs (catch-up of a remote session that has not seen the earlier
 * stages), the vps.v1.CheckRequest of each from the local session and
 * transaction, and the connector result a vps.v1.CheckResponse means.
 *
 * The remote side keeps one session and one transaction across calls
 * (policy.proto: successive Checks with one session_id), so a rule file
 * that calls the connector only at data still gets its sender and
 * recipients judged there: the calls for connect, helo, mail and each
 * accepted recipient are sent first, their verdicts ignored (our engine
 * already decided those stages).  A new transaction is recognised by a
 * mail stage, a stage that goes backwards, a second data, or a changed
 * sender; it is started remotely with reset = true.
 *
 * Reply: every value is checked before it becomes a verdict, a field or a
 * modification; an unknown verdict or operation, or a modification
 * proto/mail would refuse, makes the whole reply an error (the wrapper
 * applies on_error) rather than half an answer.
 */
#include "connectors/grpc/conn-grpc-private.h"

#include <string.h>

G_DEFINE_QUARK (conn - grpc - error - quark, conn_grpc_error)

void
conn_grpc_sess_free (ConnGrpcSess *s)
{
  if (s == NULL)
    return;
  g_free (s->remote_id);
  g_free (s->sender);
  g_free (s->remote_txn);
  g_free (s);
}

/* ---- the plan ------------------------------------------------------------- */

gsize
conn_grpc_plan_max (VpsTxn *txn)
{
  gsize n = 0;

  vps_txn_get_rcpts (txn, &n);
  /* connect, helo, mail, the recipients, the stage itself */
  return 3 + n + 1;
}

static void
add_step (ConnGrpcStep *steps, gsize *k, RulesStage stage, gboolean reset, const char *rcpt,
          gboolean catch_up)
{
  steps[*k] = (ConnGrpcStep){ stage, reset, rcpt, catch_up };
  (*k)++;
}

/* Account for a step as sent. */
static void
sess_advance (ConnGrpcSess *s, VpsTxn *txn, const ConnGrpcStep *step)
{
  s->connected = TRUE;
  if (step->stage == RULES_STAGE_HELO)
    s->helo_sent = TRUE;
  if (step->stage == RULES_STAGE_MAIL)
    {
      s->in_txn = TRUE;
      g_free (s->sender);
      s->sender = g_strdup (vps_txn_get_sender (txn));
      s->rcpts_sent = 0;
      s->mods_seen = 0;
    }
  if (step->stage == RULES_STAGE_RCPT)
    s->rcpts_sent++;
  if (step->stage >= RULES_STAGE_MAIL)
    s->last_stage = step->stage;
}

static gboolean
is_new_txn (ConnGrpcSess *s, VpsTxn *txn, RulesStage stage)
{
  if (stage == RULES_STAGE_MAIL)
    return TRUE;
  return !s->in_txn || stage < s->last_stage
         || (stage == RULES_STAGE_DATA && s->last_stage >= RULES_STAGE_DATA)
         || g_strcmp0 (vps_txn_get_sender (txn), s->sender) != 0;
}

gsize
conn_grpc_plan (ConnGrpcSess *s, VpsTxn *txn, RulesStage stage, ConnGrpcStep *steps)
{
  VpsSession *session = vps_txn_get_session (txn);
  const char *helo = vps_session_get_helo (session);
  gboolean reset = FALSE;
  gsize k = 0;

  if (!s->connected && stage != RULES_STAGE_CONNECT && vps_session_get_client_ip (session)[0])
    add_step (steps, &k, RULES_STAGE_CONNECT, FALSE, NULL, TRUE);
  if (!s->helo_sent && stage > RULES_STAGE_HELO && helo != NULL && helo[0] != '\0')
    add_step (steps, &k, RULES_STAGE_HELO, FALSE, NULL, TRUE);
  if (stage >= RULES_STAGE_MAIL && is_new_txn (s, txn, stage))
    {
      if (stage == RULES_STAGE_MAIL)
        reset = TRUE;
      else if (vps_txn_get_sender (txn) != NULL)
        add_step (steps, &k, RULES_STAGE_MAIL, TRUE, NULL, TRUE);
      else
        {
          /* nothing to start a transaction with (delivery of a message
           * the remote side never saw): the stage goes alone */
          s->in_txn = TRUE;
          s->rcpts_sent = 0;
          s->mods_seen = 0;
        }
    }
  /* the recipients of a transaction the remote side has none of (a mail
   * catch-up just started it) */
  if ((stage == RULES_STAGE_DATA || stage == RULES_STAGE_POSTQ)
      && ((k > 0 && steps[k - 1].stage == RULES_STAGE_MAIL) || s->rcpts_sent == 0))
    {
      gsize n = 0;
      const char *const *rcpts = vps_txn_get_rcpts (txn, &n);

      for (gsize i = 0; i < n; i++)
        add_step (steps, &k, RULES_STAGE_RCPT, FALSE, rcpts[i], TRUE);
    }
  add_step (steps, &k, stage, reset, NULL, FALSE);
  for (gsize i = 0; i < k; i++)
    sess_advance (s, txn, &steps[i]);
  return k;
}

/* ---- the request ---------------------------------------------------------- */

/* protobuf-c wants char*; the packer only reads. */
static char *
str (const char *s)
{
  return (char *)(s ? s : "");
}

GBytes *
conn_grpc_build_request (const char *remote_id, VpsTxn *txn, const ConnGrpcStep *step,
                         GError **error)
{
  VpsSession *session = vps_txn_get_session (txn);
  Vps__V1__CheckRequest req;
  Vps__V1__Client client;
  Vps__V1__Tls tls;
  Vps__V1__Auth auth;
  Vps__V1__Address addr;
  Vps__V1__Message message;
  g_autoptr (GBytes) raw = NULL;
  gsize len;
  guint8 *buf;

  vps__v1__check_request__init (&req);
  req.session_id = (char *)remote_id;
  req.stage = (Vps__V1__Stage)(step->stage + 1);
  req.reset = step->reset;
  req.queue_id = str (vps_txn_get_queue_id (txn));
  /* the session's TLS and AUTH state travel with every call: they may
   * change at any stage, and setting them again is harmless */
  if (vps_session_get_tls_active (session))
    {
      vps__v1__tls__init (&tls);
      tls.active = TRUE;
      tls.version = str (vps_session_get_tls_version (session));
      tls.cipher = str (vps_session_get_tls_cipher (session));
      tls.peer_subject = str (vps_session_get_tls_peer_subject (session));
      req.tls = &tls;
    }
  if (vps_session_get_authenticated (session) || step->stage == RULES_STAGE_AUTH)
    {
      vps__v1__auth__init (&auth);
      auth.authenticated = vps_session_get_authenticated (session);
      auth.user = str (vps_session_get_auth_user (session));
      auth.mechanism = str (vps_session_get_auth_mechanism (session));
      req.auth = &auth;
    }
  vps__v1__address__init (&addr);
  switch (step->stage)
    {
      case RULES_STAGE_CONNECT:
        vps__v1__client__init (&client);
        client.ip = str (vps_session_get_client_ip (session));
        client.port = vps_session_get_client_port (session);
        client.ptr = str (vps_session_get_client_ptr (session));
        client.server_ip = str (vps_session_get_server_ip (session));
        client.server_port = vps_session_get_server_port (session);
        client.server_name = str (vps_session_get_server_name (session));
        req.client = &client;
        break;
      case RULES_STAGE_HELO:
        req.helo = str (vps_session_get_helo (session));
        break;
      case RULES_STAGE_MAIL:
        if (vps_txn_get_sender (txn) == NULL)
          {
            g_set_error (error, CONN_GRPC_ERROR, CONN_GRPC_ERROR_NOT_SENDABLE,
                         "stage mail without a sender");
            return NULL;
          }
        addr.address = str (vps_txn_get_sender (txn));
        req.sender = &addr;
        break;
      case RULES_STAGE_RCPT:
      case RULES_STAGE_DELIVERY:
        addr.address = str (step->rcpt ? step->rcpt : vps_txn_get_rcpt (txn));
        if (step->rcpt == NULL && vps_txn_get_rcpt (txn) == NULL)
          {
            g_set_error (error, CONN_GRPC_ERROR, CONN_GRPC_ERROR_NOT_SENDABLE,
                         "stage %s without a recipient", rules_stage_name (step->stage));
            return NULL;
          }
        req.recipient = &addr;
        break;
      case RULES_STAGE_DATA:
      case RULES_STAGE_POSTQ:
        if (vps_txn_get_message (txn) == NULL)
          {
            /* the policy front end knows only the size at end of message */
            g_set_error (error, CONN_GRPC_ERROR, CONN_GRPC_ERROR_NOT_SENDABLE,
                         "stage %s without the message (this front end has only its size)",
                         rules_stage_name (step->stage));
            return NULL;
          }
        raw = g_bytes_ref (vps_message_get_raw (vps_txn_get_message (txn)));
        vps__v1__message__init (&message);
        message.content_case = VPS__V1__MESSAGE__CONTENT_RAW;
        message.raw.data = (guint8 *)g_bytes_get_data (raw, &message.raw.len);
        req.message = &message;
        break;
      default:
        break;
    }
  len = vps__v1__check_request__get_packed_size (&req);
  buf = g_malloc (MAX (len, 1));
  vps__v1__check_request__pack (&req, buf);
  return g_bytes_new_take (buf, len);
}

/* ---- the reply ------------------------------------------------------------ */

static gboolean bad_reply (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
bad_reply (GError **error, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, CONN_GRPC_ERROR, CONN_GRPC_ERROR_BAD_REPLY, "bad CheckResponse: %s", msg);
  return FALSE;
}

static gboolean
verdict_from_pb (int v, RulesVerdict *out)
{
  if (v < VPS__V1__VERDICT__VERDICT_CONTINUE || v > VPS__V1__VERDICT__VERDICT_DISCARD)
    return FALSE;
  *out = (RulesVerdict)(v - 1);
  return TRUE;
}

/* "PREFIX_name" (or "name" without a prefix) as a rule identifier: other
 * characters become '_'; NULL when empty or too long. */
static char *
field_name (const char *prefix, const char *name)
{
  g_autofree char *s = prefix && *prefix ? g_strconcat (prefix, "_", name, NULL) : g_strdup (name);

  if (s[0] == '\0' || strlen (s) > CONN_GRPC_MAX_FIELD_NAME)
    return NULL;
  for (char *p = s; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '_')
      *p = '_';
  if (g_ascii_isdigit (s[0]))
    return NULL;
  return g_steal_pointer (&s);
}

static void
add_field (VpsConnectorResult *r, const char *name, const Vps__V1__Field *f)
{
  switch (f->value_case)
    {
      case VPS__V1__FIELD__VALUE_BOOL_VALUE:
        vps_connector_result_set_bool (r, name, f->bool_value);
        break;
      case VPS__V1__FIELD__VALUE_INT_VALUE:
        vps_connector_result_set_int (r, name, f->int_value);
        break;
      case VPS__V1__FIELD__VALUE_FLOAT_VALUE:
        vps_connector_result_set_float (r, name, f->float_value);
        break;
      case VPS__V1__FIELD__VALUE_STRING_VALUE:
        vps_connector_result_set_string (r, name, f->string_value);
        break;
      case VPS__V1__FIELD__VALUE_LIST_VALUE:
        {
          g_autoptr (GPtrArray) v = g_ptr_array_new ();

          for (size_t i = 0; f->list_value && i < f->list_value->n_values; i++)
            g_ptr_array_add (v, f->list_value->values[i]);
          g_ptr_array_add (v, NULL);
          vps_connector_result_set_strv (r, name, (const char *const *)v->pdata);
        }
        break;
      case VPS__V1__FIELD__VALUE_JSON_VALUE:
        {
          JsonNode *node = json_from_string (f->json_value, NULL);

          /* unparsable JSON is kept as the string it is */
          if (node != NULL)
            vps_connector_result_set_json (r, name, node);
          else
            vps_connector_result_set_string (r, name, f->json_value);
        }
        break;
      default:
        break; /* no value, or a kind newer than our .proto */
    }
}

static void
add_stage_fields (VpsConnectorResult *r, const Vps__V1__StageResult *sr)
{
  gsize budget = CONN_GRPC_MAX_REPLY_FIELDS;
  g_autoptr (GPtrArray) matched = g_ptr_array_new ();

  vps_connector_result_set_string (r, "enhanced", sr->enhanced);
  vps_connector_result_set_string (r, "rule", sr->rule);
  vps_connector_result_set_string (r, "quarantine", sr->quarantine);
  for (size_t i = 0; i < sr->n_matched_rules && i < CONN_GRPC_MAX_REPLY_FIELDS; i++)
    g_ptr_array_add (matched, sr->matched_rules[i]);
  g_ptr_array_add (matched, NULL);
  vps_connector_result_set_strv (r, "matched", (const char *const *)matched->pdata);
  /* the remote side's connector results: their fields as PREFIX_field,
   * bare for a result without a connector name (a third-party service
   * answering fields of its own) */
  for (size_t i = 0; i < sr->n_connector_results && budget > 0; i++)
    {
      const Vps__V1__ConnectorResult *cr = sr->connector_results[i];
      RulesVerdict v;

      if (cr->connector[0] != '\0' && verdict_from_pb (cr->verdict, &v))
        {
          g_autofree char *name = field_name (cr->connector, "verdict");

          if (name != NULL)
            vps_connector_result_set_string (r, name, rules_verdict_name (v));
        }
      for (size_t j = 0; j < cr->n_fields && budget > 0; j++, budget--)
        {
          g_autofree char *name = field_name (cr->connector, cr->fields[j]->name);

          if (name != NULL)
            add_field (r, name, cr->fields[j]);
        }
    }
}

/* The arguments an operation takes (modify.h: unused ones are NULL). */
static VpsModification *
mod_from_pb (const Vps__V1__Modification *m, VpsModOp op, const char *connector, GError **error)
{
  const char *name = NULL, *value = NULL;
  VpsModification *mod;

  switch (op)
    {
      case VPS_MOD_ADD_HEADER:
      case VPS_MOD_INSERT_HEADER:
      case VPS_MOD_SET_HEADER:
        name = m->name;
        value = m->value;
        break;
      case VPS_MOD_REMOVE_HEADER:
        name = m->name;
        break;
      default:
        value = m->value;
        break;
    }
  mod = vps_modification_new (op, name, value, m->index, error);
  if (mod != NULL && m->rule[0] != '\0')
    mod->rule = g_strdup_printf ("connector %s: %s", connector, m->rule);
  return mod;
}

VpsConnectorResult *
conn_grpc_result_from_reply (GBytes *reply, ConnGrpcSess *s, const char *connector, GError **error)
{
  gsize len = 0;
  const guint8 *data = g_bytes_get_data (reply, &len);
  Vps__V1__CheckResponse *resp = vps__v1__check_response__unpack (NULL, len, data);
  g_autoptr (VpsConnectorResult) r = NULL;
  Vps__V1__StageResult *sr;
  RulesVerdict verdict;
  size_t first;

  if (resp == NULL)
    return bad_reply (error, "not a vps.v1.CheckResponse (%zu bytes)", len), NULL;
  sr = resp->result;
  if (sr == NULL)
    bad_reply (error, "no result");
  else if (!verdict_from_pb (sr->verdict, &verdict))
    bad_reply (error, "unknown verdict %d", (int)sr->verdict);
  else if (sr->code != 0 && (sr->code < 200 || sr->code > 599))
    bad_reply (error, "reply code %u", sr->code);
  else if (resp->n_modifications > CONN_GRPC_MAX_REPLY_MODS)
    bad_reply (error, "%zu modifications (at most %d)", resp->n_modifications,
               CONN_GRPC_MAX_REPLY_MODS);
  else
    {
      r = vps_connector_result_new (verdict);
      vps_connector_result_set_reply (r, sr->code, sr->enhanced[0] ? sr->enhanced : NULL,
                                      sr->text[0] ? sr->text : NULL);
      if (verdict == RULES_VERDICT_QUARANTINE && sr->quarantine[0] != '\0')
        r->quarantine = g_strdup (sr->quarantine);
      add_stage_fields (r, sr);
      vps_connector_result_set_string (r, "transaction_id", resp->transaction_id);
      /* only what is new since our last call: the remote side lists every
       * modification of its transaction; fewer than we saw = it started a
       * new one */
      first = resp->n_modifications >= s->mods_seen ? s->mods_seen : 0;
      for (size_t i = first; i < resp->n_modifications; i++)
        {
          const Vps__V1__Modification *m = resp->modifications[i];
          g_autoptr (GError) local = NULL;
          VpsModOp op;
          VpsModification *mod;

          if (!vps_mod_op_from_name (m->op, &op))
            {
              bad_reply (error, "modification %zu: unknown op '%.40s'", i, m->op);
              g_clear_pointer (&r, vps_connector_result_unref);
              break;
            }
          /* our engine records the quarantine of the verdict itself */
          if (op == VPS_MOD_QUARANTINE)
            continue;
          mod = mod_from_pb (m, op, connector, &local);
          if (mod == NULL)
            {
              bad_reply (error, "modification %zu (%s): %s", i, m->op, local->message);
              g_clear_pointer (&r, vps_connector_result_unref);
              break;
            }
          vps_connector_result_add_modification (r, mod);
        }
      if (r != NULL)
        {
          s->mods_seen = resp->n_modifications;
          g_free (s->remote_txn);
          s->remote_txn = g_strdup (resp->transaction_id);
        }
    }
  vps__v1__check_response__free_unpacked (resp, NULL);
  return g_steal_pointer (&r);
}
