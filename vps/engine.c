/* SPDX-License-Identifier: MIT
 *
 * engine.c — VpsEngine and the stage runner (contract in engine.h).
 *
 * One stage is a StageRun: it steps the RulesRun until DONE, answering
 * values (host_get), DNS queries (host_query, through vps/dns.c), actions
 * (host_effect) and `call`s (all named connectors started at once through
 * vps_connector_call_async, merged by severity when the last one answers).
 * The run holds references on engine, session and txn until its task
 * returns, so a front end may drop its own at any time.
 *
 * Re-entrancy: a callback (DNS or connector) only decrements `pending`;
 * the step loop is resumed from the callback only when no step loop is on
 * the stack (`stepping`), so a synchronously completing query cannot nest
 * loops.
 */
#include "vps/engine.h"

#include <string.h>
#include "proto/mail/mail-reply.h"
#include "vps/dns.h"
#include "vps/export.h"
#include "vps/log.h"
#include "vps/quarantine.h"
#include "vps/report.h"

G_DEFINE_QUARK (vps - engine - error - quark, vps_engine_error)

#define N_VERDICTS (RULES_VERDICT_DISCARD + 1)

struct _VpsEngine
{
  gatomicrefcount ref;
  VpsConfig *cfg;
  RulesProgram *program;
  GPtrArray *connectors; /* VpsConnector* */
  GMutex quarantine_lock;
  VpsQuarantine *quarantine; /* opened at creation or on first use */
  guint64 stats[RULES_N_STAGES][N_VERDICTS];
};

/* ---- stage results -------------------------------------------------------- */

static void
stage_result_clear (VpsStageResult *r)
{
  g_free (r->enhanced);
  g_free (r->text);
  g_free (r->rule);
  g_free (r->quarantine);
  g_free (r->rcpt);
  g_ptr_array_unref (r->matched);
  g_ptr_array_unref (r->results);
}

static VpsStageResult *
stage_result_new (RulesStage stage)
{
  VpsStageResult *r = g_atomic_rc_box_new0 (VpsStageResult);

  r->stage = stage;
  r->matched = g_ptr_array_new_with_free_func (g_free);
  r->results = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_connector_result_unref);
  return r;
}

VpsStageResult *
vps_stage_result_ref (VpsStageResult *r)
{
  return g_atomic_rc_box_acquire (r);
}

void
vps_stage_result_unref (VpsStageResult *r)
{
  if (r != NULL)
    g_atomic_rc_box_release_full (r, (GDestroyNotify)stage_result_clear);
}

/* ---- default replies ------------------------------------------------------ */

/* Which entry of proto/mail's table (the project's one place for default
 * replies) answers `verdict` at `stage`. */
static MailReplyDefault
default_reply_for (RulesStage stage, RulesVerdict verdict)
{
  switch (verdict)
    {
      case RULES_VERDICT_REJECT:
        switch (stage)
          {
            case RULES_STAGE_CONNECT:
            case RULES_STAGE_AUTH:
              return MAIL_REPLY_REJECT_CONNECT;
            case RULES_STAGE_HELO:
              return MAIL_REPLY_REJECT_HELO;
            case RULES_STAGE_MAIL:
              return MAIL_REPLY_REJECT_SENDER;
            case RULES_STAGE_RCPT:
            case RULES_STAGE_DELIVERY:
              return MAIL_REPLY_REJECT_RCPT;
            case RULES_STAGE_DATA:
            case RULES_STAGE_POSTQ:
            default:
              return MAIL_REPLY_REJECT;
          }
      case RULES_VERDICT_TEMPFAIL:
        if (stage == RULES_STAGE_RCPT || stage == RULES_STAGE_DELIVERY)
          return MAIL_REPLY_TEMPFAIL_RCPT;
        if (stage == RULES_STAGE_MAIL)
          return MAIL_REPLY_TEMPFAIL_SENDER;
        return MAIL_REPLY_TEMPFAIL;
      case RULES_VERDICT_DISCARD:
        return MAIL_REPLY_DISCARD;
      case RULES_VERDICT_QUARANTINE:
        return MAIL_REPLY_QUARANTINE;
      case RULES_VERDICT_CONTINUE:
      case RULES_VERDICT_ACCEPT:
      case RULES_VERDICT_ACCEPT_ALL:
      default:
        return MAIL_REPLY_OK;
    }
}

void
vps_default_reply (RulesStage stage, RulesVerdict verdict, guint *code, const char **enhanced,
                   const char **text)
{
  mail_reply_default_get (default_reply_for (stage, verdict), code, enhanced, text);
}

/* ---- engine --------------------------------------------------------------- */

typedef struct
{
  RulesLoadOptions options; /* first: the pointer handed out */
  GPtrArray *decls;         /* RulesConnectorDecl* */
  RulesConnectorDecl *array;
} LoadOptions;

RulesLoadOptions *
vps_engine_load_options_new (VpsConfig *cfg, GError **error)
{
  LoadOptions *lo = g_new0 (LoadOptions, 1);
  gsize n = vps_config_n_connectors (cfg);

  lo->array = g_new0 (RulesConnectorDecl, MAX (n, 1));
  for (gsize i = 0; i < n; i++)
    {
      const VpsConfigConnector *cc = vps_config_connector (cfg, i);
      const VpsConnectorClass *klass = vps_connector_registry_lookup (cc->type);
      g_autoptr (GError) local = NULL;

      if (klass == NULL)
        {
          vps_config_error_at (cfg, cc->group, "type", &local, "unknown connector type '%s'",
                               cc->type);
          g_set_error_literal (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_CONFIG, local->message);
          g_free (lo->array);
          g_free (lo);
          return NULL;
        }
      lo->array[i].name = cc->name;
      lo->array[i].fields = klass->fields;
      lo->array[i].n_fields = klass->n_fields;
      lo->array[i].any_field = klass->any_field;
    }
  lo->options.connectors = lo->array;
  lo->options.n_connectors = n;
  lo->options.quarantines = vps_config_quarantine_names (cfg);
  lo->options.exports = vps_config_export_names (cfg);
  return &lo->options;
}

void
vps_engine_load_options_free (RulesLoadOptions *options)
{
  LoadOptions *lo = (LoadOptions *)options;

  if (lo == NULL)
    return;
  g_free (lo->array);
  g_free (lo);
}

VpsEngine *
vps_engine_new_with_program (VpsConfig *cfg, RulesProgram *program, GError **error)
{
  g_autoptr (VpsConfig) own = cfg ? vps_config_ref (cfg) : vps_config_new_default ();
  VpsEngine *e;

  g_return_val_if_fail (program != NULL, NULL);
  e = g_new0 (VpsEngine, 1);
  g_atomic_ref_count_init (&e->ref);
  e->cfg = g_steal_pointer (&own);
  e->program = rules_program_ref (program);
  e->connectors = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_connector_unref);
  g_mutex_init (&e->quarantine_lock);
  for (gsize i = 0; i < vps_config_n_connectors (e->cfg); i++)
    {
      VpsConnector *c = vps_connector_new (e->cfg, vps_config_connector (e->cfg, i), error);
      if (c == NULL)
        {
          vps_engine_unref (e);
          return NULL;
        }
      g_ptr_array_add (e->connectors, c);
    }
  return e;
}

VpsEngine *
vps_engine_new_with_rules_string (VpsConfig *cfg, const char *name, const char *text,
                                  GError **error)
{
  g_autoptr (VpsConfig) own = cfg ? vps_config_ref (cfg) : vps_config_new_default ();
  g_autoptr (RulesLoadOptions) options = vps_engine_load_options_new (own, error);
  g_autoptr (RulesProgram) program = NULL;
  g_autoptr (GError) local = NULL;

  if (options == NULL)
    return NULL;
  program = rules_program_load_string (name, text, options, &local);
  if (program == NULL)
    {
      g_set_error_literal (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_RULES, local->message);
      return NULL;
    }
  return vps_engine_new_with_program (own, program, error);
}

static VpsQuarantine *
engine_quarantine (VpsEngine *e, GError **error)
{
  VpsQuarantine *q;

  g_mutex_lock (&e->quarantine_lock);
  if (e->quarantine == NULL)
    e->quarantine
        = vps_quarantine_open (vps_config_get_path_value (e->cfg, "quarantine", "dir"), error);
  q = e->quarantine;
  g_mutex_unlock (&e->quarantine_lock);
  return q;
}

VpsEngine *
vps_engine_new (VpsConfig *cfg, GError **error)
{
  g_autoptr (RulesLoadOptions) options = vps_engine_load_options_new (cfg, error);
  g_autoptr (RulesProgram) program = NULL;
  g_autoptr (GError) local = NULL;
  VpsEngine *e;

  if (options == NULL)
    return NULL;
  program
      = rules_program_load_file (vps_config_get_path_value (cfg, "vpsd", "rules"), options, &local);
  if (program == NULL)
    {
      g_set_error_literal (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_RULES, local->message);
      return NULL;
    }
  e = vps_engine_new_with_program (cfg, program, error);
  if (e != NULL && engine_quarantine (e, &local) == NULL)
    {
      g_set_error (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_CONFIG, "quarantine: %s",
                   local->message);
      g_clear_pointer (&e, vps_engine_unref);
    }
  return e;
}

VpsEngine *
vps_engine_ref (VpsEngine *e)
{
  g_atomic_ref_count_inc (&e->ref);
  return e;
}

void
vps_engine_unref (VpsEngine *e)
{
  if (e == NULL || !g_atomic_ref_count_dec (&e->ref))
    return;
  g_ptr_array_unref (e->connectors);
  rules_program_unref (e->program);
  vps_config_unref (e->cfg);
  g_clear_pointer (&e->quarantine, vps_quarantine_unref);
  g_mutex_clear (&e->quarantine_lock);
  g_free (e);
}

VpsConfig *
vps_engine_get_config (VpsEngine *e)
{
  return e->cfg;
}

RulesProgram *
vps_engine_get_program (VpsEngine *e)
{
  return e->program;
}

gsize
vps_engine_n_connectors (VpsEngine *e)
{
  return e->connectors->len;
}

VpsConnector *
vps_engine_get_connector (VpsEngine *e, gsize i)
{
  g_return_val_if_fail (i < e->connectors->len, NULL);
  return g_ptr_array_index (e->connectors, i);
}

VpsConnector *
vps_engine_lookup_connector (VpsEngine *e, const char *name)
{
  for (guint i = 0; i < e->connectors->len; i++)
    {
      VpsConnector *c = g_ptr_array_index (e->connectors, i);
      if (g_strcmp0 (vps_connector_get_name (c), name) == 0)
        return c;
    }
  return NULL;
}

guint64
vps_engine_stats_stage (VpsEngine *e, RulesStage stage, RulesVerdict verdict)
{
  g_return_val_if_fail (stage < RULES_N_STAGES && verdict < N_VERDICTS, 0);
  return __atomic_load_n (&e->stats[stage][verdict], __ATOMIC_RELAXED);
}

gboolean
vps_engine_quarantine_txn (VpsEngine *e, VpsTxn *txn, char **out_id, GError **error)
{
  VpsQuarantine *q = engine_quarantine (e, error);
  VpsMessage *msg = vps_txn_get_message (txn);
  g_autoptr (JsonObject) meta = NULL;

  if (q == NULL)
    return FALSE;
  if (msg == NULL || vps_txn_get_quarantine (txn) == NULL)
    {
      g_set_error (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_STAGE,
                   "nothing to quarantine (no message or no quarantine verdict)");
      return FALSE;
    }
  meta = vps_report_metadata (txn, NULL, NULL);
  return vps_quarantine_store (q, vps_txn_get_quarantine (txn), vps_message_get_raw (msg), meta,
                               out_id, error);
}

/* ---- one stage ------------------------------------------------------------ */

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
} StageRun;

static void
stage_run_free (StageRun *sr)
{
  g_clear_pointer (&sr->run, rules_run_free);
  g_clear_pointer (&sr->result, vps_stage_result_unref);
  g_clear_pointer (&sr->call_results, g_ptr_array_unref);
  g_clear_pointer (&sr->dns_started, g_hash_table_unref);
  g_clear_pointer (&sr->scratch, g_ptr_array_unref);
  g_free (sr->call_rule);
  vps_txn_unref (sr->txn);
  vps_session_unref (sr->session);
  vps_engine_unref (sr->engine);
  g_free (sr);
}

static const char *
sid (StageRun *sr)
{
  return vps_session_get_id (sr->session);
}

static void
add_mod (StageRun *sr, VpsModOp op, const char *name, const char *value, gsize value_len,
         gint index, const char *rule)
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
      vps_warning (sid (sr), "rule=\"%s\" modification refused, not applied: %s", rule ? rule : "",
                   error->message);
      return;
    }
  mod->rule = g_strdup (rule);
  vps_txn_add_modification (sr->txn, mod);
}

/* finish the stage: defaults, side effects on session/txn, log, count */
static void
stage_done (StageRun *sr, RulesVerdict verdict, guint code, const char *enhanced, const char *text,
            const char *rule, const char *quarantine)
{
  VpsStageResult *r = sr->result;
  guint dcode;
  const char *denh, *dtext;

  g_autoptr (MailReply) reply = NULL;
  g_autoptr (GError) error = NULL;

  /* a partial reply (code without enhanced code, no text) is completed by
   * proto/mail; one it refuses (a connector's nonsense) gives the default */
  reply
      = mail_reply_complete (default_reply_for (sr->stage, verdict), code, enhanced, text, &error);
  r->verdict = verdict;
  if (reply != NULL)
    {
      r->code = mail_reply_get_code (reply);
      r->enhanced = g_strdup (mail_reply_get_enhanced (reply));
      r->text = mail_reply_get_text (reply);
    }
  else
    {
      vps_warning (sid (sr), "stage=%s reply %u %s \"%s\" refused (%s): default used",
                   rules_stage_name (sr->stage), code, enhanced ? enhanced : "", text ? text : "",
                   error->message);
      vps_default_reply (sr->stage, verdict, &dcode, &denh, &dtext);
      r->code = dcode;
      r->enhanced = g_strdup (denh);
      r->text = g_strdup (dtext);
    }
  code = r->code;
  r->rule = g_strdup (rule);
  if (sr->stage == RULES_STAGE_RCPT || sr->stage == RULES_STAGE_DELIVERY)
    r->rcpt = g_strdup (vps_txn_get_rcpt (sr->txn));

  if (verdict == RULES_VERDICT_ACCEPT_ALL)
    {
      if (sr->stage <= RULES_STAGE_HELO)
        vps_session_set_accept_all (sr->session, TRUE);
      else
        vps_txn_set_accept_all (sr->txn, TRUE);
    }
  if (verdict == RULES_VERDICT_QUARANTINE)
    {
      r->quarantine = g_strdup (quarantine);
      vps_txn_set_quarantine (sr->txn, quarantine);
      add_mod (sr, VPS_MOD_QUARANTINE, quarantine, NULL, 0, 0, rule);
    }

  if (verdict == RULES_VERDICT_CONTINUE && rule == NULL)
    vps_debug (sid (sr), "stage=%s verdict=continue", rules_stage_name (sr->stage));
  else
    vps_info (sid (sr), "stage=%s verdict=%s rule=\"%s\" code=%u%s%s%s%s",
              rules_stage_name (sr->stage), rules_verdict_name (verdict), rule ? rule : "", code,
              r->enhanced ? " " : "", r->enhanced ? r->enhanced : "", r->rcpt ? " rcpt=" : "",
              r->rcpt ? r->rcpt : "");
  __atomic_add_fetch (&sr->engine->stats[sr->stage][verdict], 1, __ATOMIC_RELAXED);
  vps_txn_add_stage_result (sr->txn, r);
  g_task_return_pointer (sr->task, vps_stage_result_ref (r),
                         (GDestroyNotify)vps_stage_result_unref);
  g_clear_object (&sr->task);
}

static void stage_advance (StageRun *sr);

/* the connectors of one `call` have all answered: merge, store, decide */
static gboolean
merge_calls (StageRun *sr)
{
  VpsConnectorResult *worst = NULL;

  for (guint i = 0; i < sr->call_results->len; i++)
    {
      VpsConnectorResult *r = g_ptr_array_index (sr->call_results, i);

      vps_txn_set_connector_result (sr->txn, r->connector, r);
      g_ptr_array_add (sr->result->results, vps_connector_result_ref (r));
      for (guint j = 0; j < r->modifications->len; j++)
        {
          VpsModification *m = vps_modification_copy (g_ptr_array_index (r->modifications, j));
          if (m->rule == NULL)
            m->rule = g_strdup_printf ("connector %s", r->connector);
          vps_txn_add_modification (sr->txn, m);
        }
      if (r->verdict != RULES_VERDICT_CONTINUE
          && (worst == NULL
              || rules_verdict_severity (r->verdict) > rules_verdict_severity (worst->verdict)))
        worst = r;
    }
  g_ptr_array_set_size (sr->call_results, 0);
  if (worst == NULL)
    return FALSE;
  {
    g_autofree char *rule = g_strdup_printf ("%s (connector %s)",
                                             sr->call_rule ? sr->call_rule : "", worst->connector);
    stage_done (sr, worst->verdict, worst->code, worst->enhanced, worst->text, rule,
                worst->quarantine ? worst->quarantine : worst->connector);
  }
  return TRUE;
}

static void
pending_done (StageRun *sr)
{
  g_assert (sr->pending > 0);
  if (--sr->pending > 0)
    return;
  if (sr->in_call)
    {
      sr->in_call = FALSE;
      /* a decided stage is freed by whoever is outermost: the step loop
       * when it is on the stack, else us */
      if (merge_calls (sr))
        {
          if (!sr->stepping)
            stage_run_free (sr);
          return;
        }
    }
  if (!sr->stepping)
    stage_advance (sr);
}

static void
call_done (GObject *source, GAsyncResult *res, gpointer data)
{
  StageRun *sr = data;

  g_ptr_array_add (sr->call_results, vps_connector_call_finish (NULL, res));
  pending_done (sr);
}

static void
dns_done (GObject *source, GAsyncResult *res, gpointer data)
{
  vps_dns_query_finish (res);
  pending_done (data);
}

static void
start_calls (StageRun *sr, const RulesStep *step)
{
  GCancellable *cancellable = g_task_get_cancellable (sr->task);

  g_free (sr->call_rule);
  sr->call_rule = g_strdup (step->call_rule);
  sr->in_call = TRUE;
  sr->pending = (guint)step->n_calls;
  for (gsize i = 0; i < step->n_calls; i++)
    {
      VpsConnector *c = vps_engine_lookup_connector (sr->engine, step->calls[i]);

      if (c == NULL)
        {
          /* the checker refuses unknown connectors: only a program loaded
           * with other options than this engine's can get here */
          VpsConnectorResult *r = vps_connector_result_new (RULES_VERDICT_TEMPFAIL);
          r->connector = g_strdup (step->calls[i]);
          r->error = TRUE;
          r->error_message = g_strdup ("connector not configured");
          vps_warning (sid (sr), "connector=%s error=\"not configured\" on_error=tempfail",
                       step->calls[i]);
          g_ptr_array_add (sr->call_results, r);
          sr->pending--;
          continue;
        }
      vps_connector_call_async (c, sr->txn, sr->stage, cancellable, call_done, sr);
    }
  if (sr->pending == 0)
    {
      sr->pending = 1;
      pending_done (sr); /* everything answered at once */
    }
}

/* ---- the rules' host ------------------------------------------------------ */

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
set_json (StageRun *sr, RulesValue *out, JsonNode *node)
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
get_connector (StageRun *sr, const RulesRef *ref, const char *arg, RulesValue *out)
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
  StageRun *sr = host;
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

static gboolean
host_query (gpointer host, RulesQuery query, const char *name, RulesValue *out)
{
  StageRun *sr = host;
  gboolean answer;
  char *key;

  if (vps_dns_cached (sr->session, query, name, &answer))
    {
      rules_value_set_bool (out, answer);
      return TRUE;
    }
  key = g_strdup_printf ("%d:%s", (int)query, name);
  if (g_hash_table_add (sr->dns_started, key))
    {
      sr->pending++;
      vps_dns_query_async (sr->session, query, name, g_task_get_cancellable (sr->task), dns_done,
                           sr);
    }
  return FALSE;
}

static void
do_export (StageRun *sr, const RulesEffect *effect)
{
  gboolean raw = effect->kind == RULES_EFFECT_EXPORT_RAW;
  const char *dir = vps_config_export_dir (sr->engine->cfg, effect->name);
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
    vps_warning (sid (sr), "rule=\"%s\" export %s failed: %s", effect->rule ? effect->rule : "",
                 effect->name, error->message);
  vps_txn_add_export (sr->txn, raw, effect->name, path, effect->rule);
}

static void
host_effect (gpointer host, const RulesEffect *e)
{
  StageRun *sr = host;
  const char *rcpt = vps_txn_get_rcpt (sr->txn);

  switch (e->kind)
    {
      case RULES_EFFECT_ADD_HEADER:
        add_mod (sr, VPS_MOD_ADD_HEADER, e->name, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_INSERT_HEADER:
        add_mod (sr, VPS_MOD_INSERT_HEADER, e->name, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_SET_HEADER:
        add_mod (sr, VPS_MOD_SET_HEADER, e->name, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_REMOVE_HEADER:
        add_mod (sr, VPS_MOD_REMOVE_HEADER, e->name, NULL, 0, 0, e->rule);
        break;
      case RULES_EFFECT_SET_SENDER:
        add_mod (sr, VPS_MOD_SET_SENDER, NULL, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_ADD_RCPT:
        add_mod (sr, VPS_MOD_ADD_RCPT, NULL, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_REMOVE_RCPT:
        add_mod (sr, VPS_MOD_REMOVE_RCPT, NULL, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_REPLACE_BODY:
        add_mod (sr, VPS_MOD_REPLACE_BODY, NULL, e->value, e->value_len, 0, e->rule);
        break;
      case RULES_EFFECT_LOG:
        vps_log (e->level ? e->level : G_LOG_LEVEL_INFO, sid (sr), "rule=\"%s\" %.*s",
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
  StageRun *sr = host;
  g_ptr_array_add (sr->result->matched, g_strdup (rule));
}

static const RulesHostVTable host_vtable = {
  .get = host_get,
  .query = host_query,
  .effect = host_effect,
  .matched = host_matched,
};

static void
stage_advance (StageRun *sr)
{
  RulesStep step;

  sr->stepping = TRUE;
  for (;;)
    {
      GCancellable *cancellable = g_task_get_cancellable (sr->task);

      if (g_cancellable_is_cancelled (cancellable))
        {
          g_task_return_new_error (sr->task, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_CANCELLED,
                                   "stage %s cancelled", rules_stage_name (sr->stage));
          g_clear_object (&sr->task);
          stage_run_free (sr);
          return;
        }
      if (++sr->steps > VPS_ENGINE_MAX_STEPS)
        {
          vps_warning (sid (sr), "stage=%s more than %d steps: stopped, verdict continue",
                       rules_stage_name (sr->stage), VPS_ENGINE_MAX_STEPS);
          stage_done (sr, RULES_VERDICT_CONTINUE, 0, NULL, NULL, NULL, NULL);
          stage_run_free (sr);
          return;
        }
      switch (rules_run_step (sr->run, &host_vtable, sr, &step))
        {
          case RULES_STEP_DONE:
            stage_done (sr, step.verdict, step.code, step.enhanced, step.text, step.rule,
                        step.quarantine);
            stage_run_free (sr);
            return;
          case RULES_STEP_CALL:
            start_calls (sr, &step);
            break;
          case RULES_STEP_WAIT:
          default:
            break;
        }
      /* start_calls may have finished the stage synchronously */
      if (sr->task == NULL)
        {
          stage_run_free (sr);
          return;
        }
      /* work is outstanding: its callback resumes us */
      if (sr->pending > 0)
        {
          sr->stepping = FALSE;
          return;
        }
    }
}

void
vps_engine_run_stage_async (VpsEngine *engine, VpsSession *session, VpsTxn *txn, RulesStage stage,
                            GCancellable *cancellable, GAsyncReadyCallback callback,
                            gpointer user_data)
{
  StageRun *sr;
  RulesState *state;

  g_return_if_fail (engine != NULL && session != NULL && txn != NULL);
  g_return_if_fail (stage < RULES_N_STAGES);
  sr = g_new0 (StageRun, 1);
  sr->engine = vps_engine_ref (engine);
  sr->session = vps_session_ref (session);
  sr->txn = vps_txn_ref (txn);
  sr->stage = stage;
  sr->task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (sr->task, vps_engine_run_stage_async);
  /* cancellation is reported by the step loop as VPS_ENGINE_ERROR_CANCELLED */
  g_task_set_check_cancellable (sr->task, FALSE);
  sr->result = stage_result_new (stage);
  sr->call_results = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_connector_result_unref);
  sr->dns_started = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  sr->scratch = g_ptr_array_new_with_free_func (g_free);

  /* accept_all judged earlier: policy stages accept without rules; the
   * delivery stage routes, so it always runs */
  if (stage != RULES_STAGE_DELIVERY
      && (vps_session_get_accept_all (session) || vps_txn_get_accept_all (txn)))
    {
      sr->result->skipped = TRUE;
      stage_done (sr, RULES_VERDICT_ACCEPT, 0, NULL, NULL, NULL, NULL);
      stage_run_free (sr);
      return;
    }
  state = vps_txn_get_rules_state (txn, engine->program);
  sr->run = rules_run_new (engine->program, state, stage);
  stage_advance (sr);
}

VpsStageResult *
vps_engine_run_stage_finish (VpsEngine *engine, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
sync_done (GObject *source, GAsyncResult *res, gpointer data)
{
  *(GAsyncResult **)data = g_object_ref (res);
}

VpsStageResult *
vps_engine_run_stage_sync (VpsEngine *engine, VpsSession *session, VpsTxn *txn, RulesStage stage,
                           GCancellable *cancellable, GError **error)
{
  g_autoptr (GMainContext) ctx = g_main_context_new ();
  g_autoptr (GAsyncResult) res = NULL;

  g_main_context_push_thread_default (ctx);
  vps_engine_run_stage_async (engine, session, txn, stage, cancellable, sync_done, &res);
  while (res == NULL)
    g_main_context_iteration (ctx, TRUE);
  /* let calls cancelled at a timeout wind down: their sources live on this
   * private context, which nobody iterates after we return */
  while (g_main_context_iteration (ctx, FALSE))
    ;
  g_main_context_pop_thread_default (ctx);
  return vps_engine_run_stage_finish (engine, res, error);
}
