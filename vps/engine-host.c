/* SPDX-License-Identifier: MIT
 *
 * engine-host.c — the rules' host of a stage run: vps_engine_host_vtable,
 * the RulesHostVTable the stage runner of engine.c hands to rules_run_step().
 *
 * get: values are read from the session, the transaction, its message and
 * earlier connector results (NAME.field; JSON fields by dotted path); an
 * absent value leaves `out` unset.  query: a DNS answer from the session's
 * cache, else the query is started once per stage through vps/dns.c and
 * FALSE makes the run wait; its callback hands back to the stage runner
 * (vps_stage_run_pending_done).  effect: non-terminal actions become
 * modifications (a refused one is logged, not applied), log lines, exports
 * (written unless the txn is a dry run; a failure is logged) and delivery
 * decisions on the txn.  matched: the names of rules whose `when` held go
 * to the stage result.  state: rate(), concurrency() and greylisting,
 * answered by engine-state.c.
 */
#include "vps/engine-private.h"

#include <string.h>
#include "vps/dns.h"
#include "vps/export.h"
#include "vps/log.h"
#include "vps/report.h"

static void
set_str (RulesValue *out, const char *s, gboolean ci)
{
  if (s != NULL)
    rules_value_set_string (out, s, -1, ci);
}

static void
set_ip (RulesValue *out, const char *s)
{
  RulesIp ip;

  if (s != NULL && rules_ip_parse (s, strlen (s), &ip))
    {
      out->type = RULES_TYPE_IP;
      out->ci = FALSE;
      out->ip = ip;
    }
}

/* local part / domain of an address: split at the last '@' (a quoted
 * local part may contain '@') */
static void
set_addr_part (RulesValue *out, const char *addr, gboolean domain)
{
  const char *at;

  if (addr == NULL)
    return;
  at = strrchr (addr, '@');
  if (domain)
    rules_value_set_string (out, at ? at + 1 : "", -1, TRUE);
  else
    rules_value_set_string (out, addr, at ? at - addr : (gssize)strlen (addr), TRUE);
}

static void
set_strv (RulesValue *out, const char *const *v, gsize n, gboolean ci)
{
  if (v != NULL)
    rules_value_set_strv (out, v, n, ci);
  else
    rules_value_set_strv (out, NULL, 0, ci);
}

/* a JSON node at a dotted path ("a.b.0.c": object members, array indexes) */
static JsonNode *
json_walk (JsonNode *node, const char *path)
{
  g_auto (GStrv) parts = g_strsplit (path ? path : "", ".", 64);

  for (guint i = 0; node != NULL && parts[i] != NULL; i++)
    {
      if (parts[i][0] == '\0')
        continue;
      if (JSON_NODE_HOLDS_OBJECT (node))
        node = json_object_get_member (json_node_get_object (node), parts[i]);
      else if (JSON_NODE_HOLDS_ARRAY (node))
        {
          JsonArray *a = json_node_get_array (node);
          char *end = NULL;
          guint64 idx = g_ascii_strtoull (parts[i], &end, 10);
          node = (end && *end == '\0' && idx < json_array_get_length (a))
                     ? json_array_get_element (a, (guint)idx)
                     : NULL;
        }
      else
        node = NULL;
    }
  return node;
}

static void
set_json (VpsStageRun *sr, RulesValue *out, JsonNode *node)
{
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return;
  if (JSON_NODE_HOLDS_VALUE (node))
    {
      GType t = json_node_get_value_type (node);
      if (t == G_TYPE_BOOLEAN)
        rules_value_set_bool (out, json_node_get_boolean (node));
      else if (t == G_TYPE_INT64)
        rules_value_set_int (out, json_node_get_int (node));
      else if (t == G_TYPE_DOUBLE)
        rules_value_set_float (out, json_node_get_double (node));
      else if (t == G_TYPE_STRING)
        set_str (out, json_node_get_string (node), FALSE);
      return;
    }
  if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      guint n = json_array_get_length (a);
      const char **v = g_new0 (const char *, n + 1);
      guint k = 0;

      /* strings kept alive by the result node, the array by the stage */
      for (guint i = 0; i < n; i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          if (JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING)
            v[k++] = json_node_get_string (e);
        }
      if (sr->scratch == NULL)
        sr->scratch = g_ptr_array_new_with_free_func (g_free);
      g_ptr_array_add (sr->scratch, v);
      rules_value_set_strv (out, v, k, FALSE);
      return;
    }
  /* an object: its JSON text */
  {
    g_autofree char *text = json_to_string (node, FALSE);
    set_str (out, rules_run_scratch_strdup (sr->run, text, -1), FALSE);
  }
}

static void
get_connector (VpsStageRun *sr, const RulesRef *ref, const char *arg, RulesValue *out)
{
  VpsConnectorResult *r = vps_txn_get_connector_result (sr->txn, ref->connector);
  const VpsFieldValue *v;

  if (r == NULL || ref->field == NULL)
    return;
  if (strcmp (ref->field, "verdict") == 0)
    set_str (out, rules_verdict_name (r->verdict), TRUE);
  else if (strcmp (ref->field, "code") == 0)
    rules_value_set_int (out, r->code);
  else if (strcmp (ref->field, "text") == 0)
    set_str (out, r->text, FALSE);
  else if (strcmp (ref->field, "error") == 0)
    rules_value_set_bool (out, r->error);
  else if (strcmp (ref->field, "elapsed") == 0)
    rules_value_set_int (out, r->elapsed_ms);
  else if ((v = vps_connector_result_get_field (r, ref->field)) != NULL)
    switch (v->type)
      {
        case VPS_FIELD_BOOL:
          rules_value_set_bool (out, v->b);
          break;
        case VPS_FIELD_INT:
          rules_value_set_int (out, v->i);
          break;
        case VPS_FIELD_FLOAT:
          rules_value_set_float (out, v->f);
          break;
        case VPS_FIELD_STRING:
          set_str (out, v->s, FALSE);
          break;
        case VPS_FIELD_STRV:
          set_strv (out, (const char *const *)v->strv, g_strv_length (v->strv), FALSE);
          break;
        case VPS_FIELD_JSON:
          set_json (sr, out, json_walk (v->json, arg));
          break;
        default:
          break;
      }
}

static void
host_get (gpointer host, const RulesRef *ref, const char *arg, RulesValue *out)
{
  VpsStageRun *sr = host;
  VpsSession *s = sr->session;
  VpsTxn *t = sr->txn;
  VpsMessage *m = vps_txn_get_message (t);
  const char *const *v;
  gsize n = 0;

  switch (ref->var)
    {
      case RULES_VAR_CLIENT_IP:
        set_ip (out, vps_session_get_client_ip (s));
        break;
      case RULES_VAR_CLIENT_PORT:
        rules_value_set_int (out, vps_session_get_client_port (s));
        break;
      case RULES_VAR_CLIENT_PTR:
        set_str (out, vps_session_get_client_ptr (s) ? vps_session_get_client_ptr (s) : "", TRUE);
        break;
      case RULES_VAR_SERVER_IP:
        set_ip (out, vps_session_get_server_ip (s));
        break;
      case RULES_VAR_SERVER_PORT:
        rules_value_set_int (out, vps_session_get_server_port (s));
        break;
      case RULES_VAR_SERVER_NAME:
        set_str (out, vps_session_get_server_name (s), TRUE);
        break;
      case RULES_VAR_SESSION_ID:
        set_str (out, vps_session_get_id (s), FALSE);
        break;
      case RULES_VAR_NOW:
        rules_value_set_int (out, g_get_real_time () / G_USEC_PER_SEC);
        break;
      case RULES_VAR_HELO_NAME:
        set_str (out, vps_session_get_helo (s), TRUE);
        break;
      case RULES_VAR_TLS_ACTIVE:
        rules_value_set_bool (out, vps_session_get_tls_active (s));
        break;
      case RULES_VAR_TLS_VERSION:
        set_str (out, vps_session_get_tls_version (s), FALSE);
        break;
      case RULES_VAR_TLS_CIPHER:
        set_str (out, vps_session_get_tls_cipher (s), FALSE);
        break;
      case RULES_VAR_TLS_PEER_SUBJECT:
        set_str (out, vps_session_get_tls_peer_subject (s), FALSE);
        break;
      case RULES_VAR_CLIENT_AUTHENTICATED:
        rules_value_set_bool (out, vps_session_get_authenticated (s));
        break;
      case RULES_VAR_AUTH_USER:
        set_str (out, vps_session_get_auth_user (s), FALSE);
        break;
      case RULES_VAR_AUTH_MECHANISM:
        set_str (out, vps_session_get_auth_mechanism (s), TRUE);
        break;
      case RULES_VAR_MAIL_FROM:
        set_str (out, vps_txn_get_sender (t), TRUE);
        break;
      case RULES_VAR_MAIL_FROM_LOCAL:
        set_addr_part (out, vps_txn_get_sender (t), FALSE);
        break;
      case RULES_VAR_MAIL_FROM_DOMAIN:
        set_addr_part (out, vps_txn_get_sender (t), TRUE);
        break;
      case RULES_VAR_MAIL_PARAM:
        set_str (out, arg ? vps_txn_get_sender_param (t, arg) : NULL, FALSE);
        break;
      case RULES_VAR_RCPT_TO:
        set_str (out, vps_txn_get_rcpt (t), TRUE);
        break;
      case RULES_VAR_RCPT_LOCAL:
        set_addr_part (out, vps_txn_get_rcpt (t), FALSE);
        break;
      case RULES_VAR_RCPT_DOMAIN:
        set_addr_part (out, vps_txn_get_rcpt (t), TRUE);
        break;
      case RULES_VAR_RCPT_COUNT:
        vps_txn_get_rcpts (t, &n);
        rules_value_set_int (out, (gint64)n);
        break;
      case RULES_VAR_RCPTS:
        v = vps_txn_get_rcpts (t, &n);
        set_strv (out, v, n, TRUE);
        break;
      case RULES_VAR_HEADER:
        set_str (out, m && arg ? vps_message_get_header (m, arg) : NULL, FALSE);
        break;
      case RULES_VAR_HEADERS:
        v = m && arg ? vps_message_get_headers (m, arg, &n) : NULL;
        set_strv (out, v, n, FALSE);
        break;
      case RULES_VAR_HAS_HEADER:
        rules_value_set_bool (out, m && arg && vps_message_has_header (m, arg));
        break;
      case RULES_VAR_SUBJECT:
        set_str (out, m ? vps_message_get_subject (m) : NULL, FALSE);
        break;
      case RULES_VAR_MESSAGE_SIZE:
        rules_value_set_int (out, (gint64)vps_txn_get_size (t));
        break;
      case RULES_VAR_MESSAGE_ID:
        set_str (out, m ? vps_message_get_message_id (m) : NULL, FALSE);
        break;
      case RULES_VAR_BODY:
        if (m != NULL)
          {
            const char *body = vps_message_get_body_text (m, &n);
            if (body != NULL)
              rules_value_set_string (out, body, (gssize)n, FALSE);
          }
        break;
      case RULES_VAR_MIME_VALID:
        rules_value_set_bool (out, m == NULL || vps_message_mime_valid (m));
        break;
      case RULES_VAR_MIME_ERRORS:
        v = m ? vps_message_mime_errors (m, &n) : NULL;
        set_strv (out, v, n, FALSE);
        break;
      case RULES_VAR_MIME_PARTS:
        rules_value_set_int (out, m ? vps_message_mime_parts (m) : 0);
        break;
      case RULES_VAR_MIME_DEPTH:
        rules_value_set_int (out, m ? vps_message_mime_depth (m) : 0);
        break;
      case RULES_VAR_MIME_ATTACHMENTS:
        v = m ? vps_message_attachments (m, &n) : NULL;
        set_strv (out, v, n, FALSE);
        break;
      case RULES_VAR_MIME_CONTENT_TYPES:
        v = m ? vps_message_content_types (m, &n) : NULL;
        set_strv (out, v, n, TRUE);
        break;
      case RULES_VAR_QUEUE_ID:
        set_str (out, vps_txn_get_queue_id (t), FALSE);
        break;
      case RULES_VAR_DELIVERY_ATTEMPTS:
        rules_value_set_int (out, vps_txn_get_delivery_attempts (t));
        break;
      case RULES_VAR_MACRO:
        set_str (out, arg ? vps_session_get_macro (s, arg) : NULL, FALSE);
        break;
      case RULES_VAR_CONNECTOR:
        get_connector (sr, ref, arg, out);
        break;
      case RULES_VAR_NONE:
      case RULES_N_VARS:
      default:
        break;
    }
}

static void
dns_done (GObject *source, GAsyncResult *res, gpointer data)
{
  vps_dns_query_finish (res);
  vps_stage_run_pending_done (data);
}

static gboolean
host_query (gpointer host, RulesQuery query, const char *name, RulesValue *out)
{
  VpsStageRun *sr = host;
  gboolean answer;
  char *key;

  if (vps_dns_cached (sr->session, query, name, &answer))
    {
      rules_value_set_bool (out, answer);
      return TRUE;
    }
  key = g_strdup_printf ("%d:%s", (int)query, name);
  if (sr->dns_started == NULL)
    sr->dns_started = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  if (g_hash_table_add (sr->dns_started, key))
    {
      sr->pending++;
      vps_dns_query_config_async (vps_engine_get_config (sr->engine), sr->session, query, name,
                                  g_task_get_cancellable (sr->task), dns_done, sr);
    }
  return FALSE;
}

void
vps_stage_run_add_mod (VpsStageRun *sr, VpsModOp op, const char *name, const char *value,
                       gsize value_len, gint index, const char *rule)
{
  g_autoptr (GError) error = NULL;
  VpsModification *mod = NULL;

  /* a NUL inside the value would silently truncate it: refuse instead */
  if (value != NULL && memchr (value, '\0', value_len) != NULL)
    g_set_error (&error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_INVALID_VALUE, "%s: value contains NUL",
                 vps_mod_op_name (op));
  else
    mod = vps_modification_new (op, name, value, index, &error);
  if (mod == NULL)
    {
      vps_warning (vps_stage_run_sid (sr), "rule=\"%s\" modification refused, not applied: %s",
                   rule ? rule : "", error->message);
      return;
    }
  mod->rule = g_strdup (rule);
  vps_txn_add_modification (sr->txn, mod);
}

static void
do_export (VpsStageRun *sr, const RulesEffect *effect)
{
  gboolean raw = effect->kind == RULES_EFFECT_EXPORT_RAW;
  const char *dir = vps_config_export_dir (vps_engine_get_config (sr->engine), effect->name);
  const char *id
      = vps_txn_get_queue_id (sr->txn) ? vps_txn_get_queue_id (sr->txn) : vps_txn_get_id (sr->txn);
  VpsMessage *m = vps_txn_get_message (sr->txn);
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  gboolean ok = FALSE;

  if (vps_txn_get_dry_run (sr->txn))
    {
      vps_txn_add_export (sr->txn, raw, effect->name, NULL, effect->rule);
      return;
    }
  if (dir == NULL)
    g_set_error (&error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_CONFIG, "export %s not configured",
                 effect->name);
  else if (raw && m == NULL)
    g_set_error (&error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_STAGE, "no message to export");
  else if (raw)
    ok = vps_export_write (dir, id, "eml", vps_message_get_raw (m), &path, &error);
  else
    {
      g_autoptr (JsonObject) meta = vps_report_metadata (sr->txn, effect->rule, NULL);
      ok = vps_export_write_json (dir, id, meta, &path, &error);
    }
  if (!ok)
    vps_warning (vps_stage_run_sid (sr), "rule=\"%s\" export %s failed: %s",
                 effect->rule ? effect->rule : "", effect->name, error->message);
  vps_txn_add_export (sr->txn, raw, effect->name, path, effect->rule);
}

static void
host_effect (gpointer host, const RulesEffect *e)
{
  VpsStageRun *sr = host;
  /* a route chosen in postq is the whole message's, not the last
   * recipient's (vsmtpd keeps it in the envelope) */
  const char *rcpt = sr->stage == RULES_STAGE_DELIVERY ? vps_txn_get_rcpt (sr->txn) : NULL;

  switch (e->kind)
    {
      case RULES_EFFECT_ADD_HEADER:
        vps_stage_run_add_mod (sr, VPS_MOD_ADD_HEADER, e->name, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_INSERT_HEADER:
        vps_stage_run_add_mod (sr, VPS_MOD_INSERT_HEADER, e->name, e->value, e->value_len, 0,
                               e->rule);
        break;
      case RULES_EFFECT_SET_HEADER:
        vps_stage_run_add_mod (sr, VPS_MOD_SET_HEADER, e->name, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_REMOVE_HEADER:
        vps_stage_run_add_mod (sr, VPS_MOD_REMOVE_HEADER, e->name, NULL, 0, 0, e->rule);
        break;
      case RULES_EFFECT_SET_SENDER:
        vps_stage_run_add_mod (sr, VPS_MOD_SET_SENDER, NULL, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_ADD_RCPT:
        vps_stage_run_add_mod (sr, VPS_MOD_ADD_RCPT, NULL, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_REMOVE_RCPT:
        vps_stage_run_add_mod (sr, VPS_MOD_REMOVE_RCPT, NULL, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_REPLACE_BODY:
        vps_stage_run_add_mod (sr, VPS_MOD_REPLACE_BODY, NULL, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_LOG:
        vps_log (e->level ? e->level : G_LOG_LEVEL_INFO, vps_stage_run_sid (sr), "rule=\"%s\" %.*s",
                 e->rule ? e->rule : "", (int)MIN (e->value_len, G_MAXINT),
                 e->value ? e->value : "");
        break;
      case RULES_EFFECT_EXPORT_JSON:
      case RULES_EFFECT_EXPORT_RAW:
        do_export (sr, e);
        break;
      case RULES_EFFECT_DELIVER_MAILDIR:
        vps_txn_add_deliver (sr->txn, VPS_DELIVER_MAILDIR, rcpt, e->name, e->rule);
        break;
      case RULES_EFFECT_DELIVER_MBOX:
        vps_txn_add_deliver (sr->txn, VPS_DELIVER_MBOX, rcpt, e->name, e->rule);
        break;
      case RULES_EFFECT_DELIVER_RELAY:
        vps_txn_add_deliver (sr->txn, VPS_DELIVER_RELAY, rcpt, e->name, e->rule);
        break;
      case RULES_EFFECT_DELIVER_MX:
        vps_txn_add_deliver (sr->txn, VPS_DELIVER_MX, rcpt, NULL, e->rule);
        break;
      default:
        break;
    }
}

static void
host_matched (gpointer host, const char *rule)
{
  VpsStageRun *sr = host;
  g_ptr_array_add (sr->result->matched, g_strdup (rule));
}

static gboolean
host_state (gpointer host, const RulesStateCall *call, RulesValue *out)
{
  return vps_stage_run_state (host, call, out);
}

const RulesHostVTable vps_engine_host_vtable = {
  .get = host_get,
  .query = host_query,
  .effect = host_effect,
  .matched = host_matched,
  .state = host_state,
};
