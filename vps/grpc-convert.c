/* SPDX-License-Identifier: MIT
 *
 * grpc-convert.c — the engine's results as vps.v1 messages (stage results,
 * connector results and their fields, modifications), and the enum
 * mappings between RulesStage/RulesVerdict and vps.v1.Stage/Verdict.
 *
 * Replies are built in an arena: strings borrowed from the engine's
 * results stay borrowed (they outlive the packing), arrays and copies are
 * arena blocks freed after the reply is packed.
 */
#include "vps/grpc-private.h"

#include "vps/connector.h"

void
vps_grpc_arena_init (VpsGrpcArena *arena)
{
  arena->blocks = g_ptr_array_new_with_free_func (g_free);
}

void
vps_grpc_arena_clear (VpsGrpcArena *arena)
{
  g_clear_pointer (&arena->blocks, g_ptr_array_unref);
}

gpointer
vps_grpc_arena_alloc (VpsGrpcArena *arena, gsize size)
{
  gpointer p = g_malloc0 (MAX (size, 1));

  g_ptr_array_add (arena->blocks, p);
  return p;
}

char *
vps_grpc_arena_strdup (VpsGrpcArena *arena, const char *s)
{
  char *p = g_strdup (s ? s : "");

  g_ptr_array_add (arena->blocks, p);
  return p;
}

/* protobuf-c wants char*; the packer only reads. */
static char *
str (const char *s)
{
  return (char *)(s ? s : "");
}

Vps__V1__Stage
vps_grpc_stage_to_pb (RulesStage stage)
{
  return (Vps__V1__Stage)(stage + 1);
}

gboolean
vps_grpc_stage_from_pb (int stage, RulesStage *out)
{
  /* 0 (unspecified) and numbers the client's newer .proto may know are
   * both refused: the engine runs no stage it was not asked for */
  if (stage < VPS__V1__STAGE__STAGE_CONNECT || stage > VPS__V1__STAGE__STAGE_DELIVERY)
    return FALSE;
  *out = (RulesStage)(stage - 1);
  return TRUE;
}

Vps__V1__Verdict
vps_grpc_verdict_to_pb (RulesVerdict verdict)
{
  return (Vps__V1__Verdict)(verdict + 1);
}

static Vps__V1__Field *
field_to_pb (VpsGrpcArena *arena, const char *name, const VpsFieldValue *v)
{
  Vps__V1__Field *f = vps_grpc_arena_alloc (arena, sizeof *f);

  vps__v1__field__init (f);
  f->name = str (name);
  switch (v->type)
    {
      case VPS_FIELD_BOOL:
        f->value_case = VPS__V1__FIELD__VALUE_BOOL_VALUE;
        f->bool_value = v->b;
        break;
      case VPS_FIELD_INT:
        f->value_case = VPS__V1__FIELD__VALUE_INT_VALUE;
        f->int_value = v->i;
        break;
      case VPS_FIELD_FLOAT:
        f->value_case = VPS__V1__FIELD__VALUE_FLOAT_VALUE;
        f->float_value = v->f;
        break;
      case VPS_FIELD_STRING:
        f->value_case = VPS__V1__FIELD__VALUE_STRING_VALUE;
        f->string_value = str (v->s);
        break;
      case VPS_FIELD_STRV:
        {
          Vps__V1__StringList *l = vps_grpc_arena_alloc (arena, sizeof *l);

          vps__v1__string_list__init (l);
          l->n_values = v->strv ? g_strv_length (v->strv) : 0;
          l->values = v->strv;
          f->value_case = VPS__V1__FIELD__VALUE_LIST_VALUE;
          f->list_value = l;
        }
        break;
      case VPS_FIELD_JSON:
      default:
        {
          char *json = v->json ? json_to_string (v->json, FALSE) : g_strdup ("null");

          g_ptr_array_add (arena->blocks, json);
          f->value_case = VPS__V1__FIELD__VALUE_JSON_VALUE;
          f->json_value = json;
        }
        break;
    }
  return f;
}

static Vps__V1__ConnectorResult *
connector_result_to_pb (VpsGrpcArena *arena, VpsConnectorResult *r)
{
  Vps__V1__ConnectorResult *c = vps_grpc_arena_alloc (arena, sizeof *c);
  GHashTableIter it;
  gpointer k, v;
  gsize i = 0;

  vps__v1__connector_result__init (c);
  c->connector = str (r->connector);
  c->verdict = vps_grpc_verdict_to_pb (r->verdict);
  c->code = r->code;
  c->enhanced = str (r->enhanced);
  c->text = str (r->text);
  c->error = r->error;
  c->error_message = str (r->error_message);
  c->elapsed_ms = r->elapsed_ms;
  c->quarantine = str (r->quarantine);
  if (r->fields != NULL && g_hash_table_size (r->fields) > 0)
    {
      c->fields = vps_grpc_arena_alloc (arena, sizeof (*c->fields) * g_hash_table_size (r->fields));
      g_hash_table_iter_init (&it, r->fields);
      while (g_hash_table_iter_next (&it, &k, &v))
        c->fields[i++] = field_to_pb (arena, k, v);
      c->n_fields = i;
    }
  return c;
}

void
vps_grpc_stage_result_to_pb (VpsGrpcArena *arena, VpsStageResult *r, Vps__V1__StageResult *out)
{
  vps__v1__stage_result__init (out);
  out->stage = vps_grpc_stage_to_pb (r->stage);
  out->verdict = vps_grpc_verdict_to_pb (r->verdict);
  out->code = r->code;
  out->enhanced = str (r->enhanced);
  out->text = str (r->text);
  out->rule = str (r->rule);
  out->quarantine = str (r->quarantine);
  out->recipient = str (r->rcpt);
  out->skipped = r->skipped;
  if (r->matched != NULL && r->matched->len > 0)
    {
      out->n_matched_rules = r->matched->len;
      out->matched_rules = vps_grpc_arena_alloc (arena, sizeof (char *) * r->matched->len);
      for (guint i = 0; i < r->matched->len; i++)
        out->matched_rules[i] = g_ptr_array_index (r->matched, i);
    }
  if (r->results != NULL && r->results->len > 0)
    {
      out->n_connector_results = r->results->len;
      out->connector_results
          = vps_grpc_arena_alloc (arena, sizeof (*out->connector_results) * r->results->len);
      for (guint i = 0; i < r->results->len; i++)
        out->connector_results[i]
            = connector_result_to_pb (arena, g_ptr_array_index (r->results, i));
    }
}

Vps__V1__Modification **
vps_grpc_modifications_to_pb (VpsGrpcArena *arena, VpsTxn *txn, size_t *n)
{
  GPtrArray *mods = vps_txn_get_modifications (txn);
  Vps__V1__Modification **out;

  *n = mods ? mods->len : 0;
  if (*n == 0)
    return NULL;
  out = vps_grpc_arena_alloc (arena, sizeof (*out) * mods->len);
  for (guint i = 0; i < mods->len; i++)
    {
      VpsModification *m = g_ptr_array_index (mods, i);
      Vps__V1__Modification *pm = vps_grpc_arena_alloc (arena, sizeof *pm);

      vps__v1__modification__init (pm);
      pm->op = str (vps_mod_op_name (m->op));
      pm->name = str (m->name);
      pm->value = str (m->value);
      pm->index = m->index;
      pm->rule = str (m->rule);
      out[i] = pm;
    }
  return out;
}
