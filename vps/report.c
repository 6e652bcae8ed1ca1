/* SPDX-License-Identifier: MIT
 *
 * report.c — JSON views of a transaction: the `vpsctl run --json` object
 * and the metadata stored with quarantined and exported messages.  Shapes
 * are documented in report.h; keys are always present (null when unknown)
 * except those marked optional there, so consumers can index them.
 */
#include "vps/report.h"

#include "vps/connector.h"
#include "vps/engine.h"

static void
set_string_or_null (JsonObject *o, const char *key, const char *value)
{
  if (value != NULL)
    json_object_set_string_member (o, key, value);
  else
    json_object_set_null_member (o, key);
}

static JsonNode *
field_to_node (const VpsFieldValue *v)
{
  JsonNode *n = json_node_alloc ();

  switch (v->type)
    {
      case VPS_FIELD_BOOL:
        return json_node_init_boolean (n, v->b);
      case VPS_FIELD_INT:
        return json_node_init_int (n, v->i);
      case VPS_FIELD_FLOAT:
        return json_node_init_double (n, v->f);
      case VPS_FIELD_STRING:
        return json_node_init_string (n, v->s);
      case VPS_FIELD_STRV:
        {
          JsonArray *a = json_array_new ();
          for (guint i = 0; v->strv != NULL && v->strv[i] != NULL; i++)
            json_array_add_string_element (a, v->strv[i]);
          json_node_init_array (n, a);
          json_array_unref (a);
          return n;
        }
      case VPS_FIELD_JSON:
        json_node_free (n);
        return v->json ? json_node_copy (v->json) : json_node_init_null (json_node_alloc ());
      default:
        return json_node_init_null (n);
    }
}

static JsonObject *
result_to_object (const VpsConnectorResult *r)
{
  JsonObject *o = json_object_new ();
  JsonObject *fields = json_object_new ();
  g_autoptr (GList) keys = NULL;

  set_string_or_null (o, "connector", r->connector);
  json_object_set_string_member (o, "verdict", rules_verdict_name (r->verdict));
  if (r->code != 0)
    json_object_set_int_member (o, "code", r->code);
  else
    json_object_set_null_member (o, "code");
  set_string_or_null (o, "enhanced", r->enhanced);
  set_string_or_null (o, "text", r->text);
  json_object_set_boolean_member (o, "error", r->error);
  if (r->error_message != NULL)
    json_object_set_string_member (o, "error_message", r->error_message);
  json_object_set_int_member (o, "elapsed", r->elapsed_ms);
  /* sorted, so reports are stable from run to run */
  keys = g_hash_table_get_keys (r->fields);
  keys = g_list_sort (keys, (GCompareFunc)g_strcmp0);
  for (GList *l = keys; l != NULL; l = l->next)
    json_object_set_member (fields, l->data,
                            field_to_node (g_hash_table_lookup (r->fields, l->data)));
  json_object_set_object_member (o, "fields", fields);
  return o;
}

static JsonObject *
stage_to_object (const VpsStageResult *sr)
{
  JsonObject *o = json_object_new ();
  JsonArray *rules = json_array_new ();
  JsonArray *results = json_array_new ();

  json_object_set_string_member (o, "stage", rules_stage_name (sr->stage));
  json_object_set_string_member (o, "verdict", rules_verdict_name (sr->verdict));
  json_object_set_int_member (o, "code", sr->code);
  set_string_or_null (o, "enhanced", sr->enhanced);
  set_string_or_null (o, "text", sr->text);
  set_string_or_null (o, "rule", sr->rule);
  if (sr->rcpt != NULL)
    json_object_set_string_member (o, "rcpt", sr->rcpt);
  if (sr->quarantine != NULL)
    json_object_set_string_member (o, "quarantine", sr->quarantine);
  if (sr->skipped)
    json_object_set_boolean_member (o, "skipped", TRUE);
  for (guint i = 0; sr->matched != NULL && i < sr->matched->len; i++)
    json_array_add_string_element (rules, g_ptr_array_index (sr->matched, i));
  for (guint i = 0; sr->results != NULL && i < sr->results->len; i++)
    json_array_add_object_element (results, result_to_object (g_ptr_array_index (sr->results, i)));
  json_object_set_array_member (o, "rules", rules);
  json_object_set_array_member (o, "results", results);
  return o;
}

static gboolean
ends_transaction (RulesVerdict v)
{
  return v == RULES_VERDICT_REJECT || v == RULES_VERDICT_TEMPFAIL || v == RULES_VERDICT_DISCARD
         || v == RULES_VERDICT_QUARANTINE;
}

/* The decision of the whole run (see report.h). */
static const VpsStageResult *
final_stage (GPtrArray *stages, gboolean *accepted_all)
{
  const VpsStageResult *last_refusal = NULL;
  guint rcpt_ok = 0, rcpt_seen = 0;

  *accepted_all = FALSE;
  for (guint i = 0; i < stages->len; i++)
    {
      const VpsStageResult *sr = g_ptr_array_index (stages, i);

      if (sr->verdict == RULES_VERDICT_ACCEPT_ALL)
        *accepted_all = TRUE;
      if (sr->stage == RULES_STAGE_DELIVERY)
        continue;
      if (sr->stage == RULES_STAGE_RCPT)
        {
          rcpt_seen++;
          if (sr->verdict == RULES_VERDICT_REJECT || sr->verdict == RULES_VERDICT_TEMPFAIL)
            last_refusal = sr;
          else if (sr->verdict == RULES_VERDICT_DISCARD || sr->verdict == RULES_VERDICT_QUARANTINE)
            return sr; /* these apply to the whole message */
          else
            rcpt_ok++;
          continue;
        }
      if (ends_transaction (sr->verdict))
        return sr;
    }
  if (rcpt_seen > 0 && rcpt_ok == 0)
    return last_refusal;
  return NULL;
}

JsonObject *
vps_report_txn (VpsTxn *txn)
{
  JsonObject *o = json_object_new ();
  JsonArray *stages = json_array_new ();
  JsonArray *mods = json_array_new ();
  JsonArray *delivery = json_array_new ();
  JsonArray *exports = json_array_new ();
  GPtrArray *results = vps_txn_get_stage_results (txn);
  GPtrArray *ml = vps_txn_get_modifications (txn);
  GPtrArray *dl = vps_txn_get_delivers (txn);
  GPtrArray *el = vps_txn_get_exports (txn);
  gboolean all = FALSE;
  const VpsStageResult *fin = final_stage (results, &all);

  if (fin != NULL)
    {
      json_object_set_string_member (o, "verdict", rules_verdict_name (fin->verdict));
      json_object_set_int_member (o, "code", fin->code);
      set_string_or_null (o, "enhanced", fin->enhanced);
      set_string_or_null (o, "text", fin->text);
      json_object_set_string_member (o, "stage", rules_stage_name (fin->stage));
    }
  else
    {
      guint code;
      const char *enhanced, *text;
      const char *stage = NULL;

      vps_default_reply (RULES_STAGE_DATA, RULES_VERDICT_ACCEPT, &code, &enhanced, &text);
      /* The stage that decided: the one that said accept_all, else the
       * last policy stage that ran. */
      for (guint i = 0; i < results->len; i++)
        {
          const VpsStageResult *sr = g_ptr_array_index (results, i);

          if (sr->verdict == RULES_VERDICT_ACCEPT_ALL)
            {
              stage = rules_stage_name (sr->stage);
              break;
            }
          if (sr->stage != RULES_STAGE_DELIVERY)
            stage = rules_stage_name (sr->stage);
        }
      json_object_set_string_member (
          o, "verdict", rules_verdict_name (all ? RULES_VERDICT_ACCEPT_ALL : RULES_VERDICT_ACCEPT));
      json_object_set_int_member (o, "code", code);
      set_string_or_null (o, "enhanced", enhanced);
      set_string_or_null (o, "text", text);
      set_string_or_null (o, "stage", stage);
    }

  for (guint i = 0; i < results->len; i++)
    json_array_add_object_element (stages, stage_to_object (g_ptr_array_index (results, i)));
  json_object_set_array_member (o, "stages", stages);

  for (guint i = 0; i < ml->len; i++)
    {
      const VpsModification *m = g_ptr_array_index (ml, i);
      JsonObject *mo = json_object_new ();

      json_object_set_string_member (mo, "op", vps_mod_op_name (m->op));
      if (m->name != NULL)
        json_object_set_string_member (mo, "name", m->name);
      if (m->value != NULL)
        json_object_set_string_member (mo, "value", m->value);
      if (m->op == VPS_MOD_INSERT_HEADER || m->op == VPS_MOD_SET_HEADER
          || m->op == VPS_MOD_REMOVE_HEADER)
        json_object_set_int_member (mo, "index", m->index);
      if (m->rule != NULL)
        json_object_set_string_member (mo, "rule", m->rule);
      json_array_add_object_element (mods, mo);
    }
  json_object_set_array_member (o, "modifications", mods);
  set_string_or_null (o, "quarantine", vps_txn_get_quarantine (txn));

  for (guint i = 0; i < dl->len; i++)
    {
      const VpsDeliverDecision *d = g_ptr_array_index (dl, i);
      JsonObject *d_o = json_object_new ();

      set_string_or_null (d_o, "rcpt", d->rcpt);
      json_object_set_string_member (d_o, "kind", vps_deliver_kind_name (d->kind));
      set_string_or_null (d_o, "target", d->target);
      set_string_or_null (d_o, "rule", d->rule);
      json_array_add_object_element (delivery, d_o);
    }
  json_object_set_array_member (o, "delivery", delivery);

  for (guint i = 0; i < el->len; i++)
    {
      const VpsExportRecord *e = g_ptr_array_index (el, i);
      JsonObject *e_o = json_object_new ();

      json_object_set_string_member (e_o, "format", e->raw ? "raw" : "json");
      set_string_or_null (e_o, "name", e->name);
      set_string_or_null (e_o, "path", e->path);
      set_string_or_null (e_o, "rule", e->rule);
      json_array_add_object_element (exports, e_o);
    }
  json_object_set_array_member (o, "exports", exports);
  return o;
}

JsonObject *
vps_report_metadata (VpsTxn *txn, const char *rule, const char *reason)
{
  VpsSession *s = vps_txn_get_session (txn);
  VpsMessage *msg = vps_txn_get_message (txn);
  JsonObject *o = json_object_new ();
  JsonObject *env = json_object_new ();
  JsonObject *client = json_object_new ();
  JsonObject *verdicts = json_object_new ();
  JsonObject *headers = json_object_new ();
  JsonArray *rcpts = json_array_new ();
  GPtrArray *results = vps_txn_get_stage_results (txn);
  const char *const *rv = vps_txn_get_rcpts (txn, NULL);
  gboolean all;
  const VpsStageResult *fin = final_stage (results, &all);

  json_object_set_string_member (
      o, "id", vps_txn_get_queue_id (txn) ? vps_txn_get_queue_id (txn) : vps_txn_get_id (txn));
  json_object_set_string_member (o, "session", vps_session_get_id (s));
  json_object_set_int_member (o, "time", g_get_real_time () / G_USEC_PER_SEC);

  set_string_or_null (env, "from", vps_txn_get_sender (txn));
  for (guint i = 0; rv[i] != NULL; i++)
    json_array_add_string_element (rcpts, rv[i]);
  json_object_set_array_member (env, "rcpts", rcpts);
  json_object_set_object_member (o, "envelope", env);

  json_object_set_string_member (client, "ip", vps_session_get_client_ip (s));
  json_object_set_int_member (client, "port", vps_session_get_client_port (s));
  set_string_or_null (client, "ptr", vps_session_get_client_ptr (s));
  json_object_set_object_member (o, "client", client);
  set_string_or_null (o, "helo", vps_session_get_helo (s));

  /* the last verdict of each stage (rcpt and delivery run once per recipient) */
  for (guint i = 0; i < results->len; i++)
    {
      const VpsStageResult *sr = g_ptr_array_index (results, i);
      json_object_set_string_member (verdicts, rules_stage_name (sr->stage),
                                     rules_verdict_name (sr->verdict));
    }
  json_object_set_object_member (o, "verdicts", verdicts);

  set_string_or_null (headers, "from", msg ? vps_message_get_header (msg, "From") : NULL);
  set_string_or_null (headers, "to", msg ? vps_message_get_header (msg, "To") : NULL);
  set_string_or_null (headers, "subject", msg ? vps_message_get_subject (msg) : NULL);
  set_string_or_null (headers, "message_id", msg ? vps_message_get_message_id (msg) : NULL);
  json_object_set_object_member (o, "headers", headers);

  if (rule == NULL && fin != NULL)
    rule = fin->rule;
  {
    /* A quarantine's reply is only the "250 Ok" the client saw: the reason
     * worth keeping is the quarantine and the rule, as the MTA is told. */
    g_autofree char *made = NULL;

    if (reason == NULL && fin != NULL && fin->verdict == RULES_VERDICT_QUARANTINE)
      reason = made = g_strdup_printf ("%s (rule %s)", fin->quarantine ? fin->quarantine : "",
                                       fin->rule ? fin->rule : "-");
    else if (reason == NULL && fin != NULL)
      reason = fin->text;
    set_string_or_null (o, "rule", rule);
    set_string_or_null (o, "reason", reason);
  }
  set_string_or_null (o, "quarantine", vps_txn_get_quarantine (txn));
  if (msg != NULL)
    json_object_set_int_member (o, "size", (gint64)vps_message_get_size (msg));
  return o;
}

char *
vps_report_to_string (JsonObject *object, gboolean pretty)
{
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  g_autoptr (JsonGenerator) gen = json_generator_new ();

  json_node_set_object (node, object);
  json_generator_set_root (gen, node);
  json_generator_set_pretty (gen, pretty);
  return json_generator_to_data (gen, NULL);
}
