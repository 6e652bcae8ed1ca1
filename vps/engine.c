/* SPDX-License-Identifier: MIT
 *
 * engine.c — VpsEngine and the stage runner (contract in engine.h).
 *
 * One stage is a VpsVpsStageRun: it steps the RulesRun until DONE, answering
 * values (host get), DNS queries (host query, through vps/dns.c) and
 * actions (host effect) through the rules' host of engine-host.c, and
 * `call`s itself (all named connectors started at once through
 * vps_connector_call_async, merged by severity when the last one answers).
 * The run holds references on engine, session and txn until its task
 * returns, so a front end may drop its own at any time.
 *
 * Re-entrancy: a callback (DNS or connector) only decrements `pending`
 * (vps_stage_run_pending_done); the step loop is resumed from the callback
 * only when no step loop is on the stack (`stepping`), so a synchronously
 * completing query cannot nest loops.
 */
#include "vps/engine-private.h"

#include "proto/mail/mail-reply.h"
#include "vps/log.h"
#include "vps/quarantine.h"
#include "vps/report.h"
#include "vps/metrics.h"

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
  VpsEngineState *es;        /* rate(), concurrency(), greylisting */
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
  if ((e->es = vps_engine_state_new (e->cfg, program, error)) == NULL)
    {
      vps_engine_unref (e);
      return NULL;
    }
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
  g_clear_pointer (&e->es, vps_engine_state_free);
  g_mutex_clear (&e->quarantine_lock);
  g_free (e);
}

VpsEngineState *
vps_engine_get_state_ctx (VpsEngine *e)
{
  return e->es;
}

VpsState *
vps_engine_get_state (VpsEngine *e)
{
  return vps_engine_state_get (e->es);
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

static void
stage_run_free (VpsStageRun *sr)
{
  g_clear_pointer (&sr->run, rules_run_free);
  g_clear_pointer (&sr->result, vps_stage_result_unref);
  g_clear_pointer (&sr->call_results, g_ptr_array_unref);
  g_clear_pointer (&sr->dns_started, g_hash_table_unref);
  g_clear_pointer (&sr->scratch, g_ptr_array_unref);
  vps_stage_run_state_free (sr);
  g_free (sr->call_rule);
  vps_txn_unref (sr->txn);
  vps_session_unref (sr->session);
  vps_engine_unref (sr->engine);
  g_free (sr);
}
/* finish the stage: defaults, side effects on session/txn, log, count */
static void
stage_done (VpsStageRun *sr, RulesVerdict verdict, guint code, const char *enhanced,
            const char *text, const char *rule, const char *quarantine)
{
  VpsStageResult *r = sr->result;
  guint dcode;
  const char *denh, *dtext;

  g_autoptr (MailReply) reply = NULL;
  g_autoptr (GError) error = NULL;

  /* No reply given (most stages): the default, without building a reply.
   * A partial reply (code without enhanced code, no text) is completed by
   * proto/mail; one it refuses (a connector's nonsense) gives the default. */
  if (code == 0 && enhanced == NULL && text == NULL)
    {
      vps_default_reply (sr->stage, verdict, &dcode, &denh, &dtext);
      reply = NULL;
    }
  else
    reply = mail_reply_complete (default_reply_for (sr->stage, verdict), code, enhanced, text,
                                 &error);
  r->verdict = verdict;
  if (code == 0 && enhanced == NULL && text == NULL)
    {
      r->code = dcode;
      r->enhanced = g_strdup (denh);
      r->text = g_strdup (dtext);
    }
  else if (reply != NULL)
    {
      r->code = mail_reply_get_code (reply);
      r->enhanced = g_strdup (mail_reply_get_enhanced (reply));
      r->text = mail_reply_get_text (reply);
    }
  else
    {
      vps_warning (vps_stage_run_sid (sr), "stage=%s reply %u %s \"%s\" refused (%s): default used",
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
      vps_stage_run_add_mod (sr, VPS_MOD_QUARANTINE, quarantine, NULL, 0, 0, rule);
    }

  if (verdict == RULES_VERDICT_CONTINUE && rule == NULL)
    vps_debug (vps_stage_run_sid (sr), "stage=%s verdict=continue", rules_stage_name (sr->stage));
  else
    vps_info (vps_stage_run_sid (sr), "stage=%s verdict=%s rule=\"%s\" code=%u%s%s%s%s",
              rules_stage_name (sr->stage), rules_verdict_name (verdict), rule ? rule : "", code,
              r->enhanced ? " " : "", r->enhanced ? r->enhanced : "", r->rcpt ? " rcpt=" : "",
              r->rcpt ? r->rcpt : "");
  __atomic_add_fetch (&sr->engine->stats[sr->stage][verdict], 1, __ATOMIC_RELAXED);
  vps_metrics_count_stage_result (r);
  vps_txn_add_stage_result (sr->txn, r);
  g_task_return_pointer (sr->task, vps_stage_result_ref (r),
                         (GDestroyNotify)vps_stage_result_unref);
  g_clear_object (&sr->task);
}

static void stage_advance (VpsStageRun *sr);

/* the connectors of one `call` have all answered: merge, store, decide */
static gboolean
merge_calls (VpsStageRun *sr)
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

void
vps_stage_run_pending_done (VpsStageRun *sr)
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
  VpsStageRun *sr = data;

  g_ptr_array_add (sr->call_results, vps_connector_call_finish (NULL, res));
  vps_stage_run_pending_done (sr);
}

static void
start_calls (VpsStageRun *sr, const RulesStep *step)
{
  GCancellable *cancellable = g_task_get_cancellable (sr->task);

  g_free (sr->call_rule);
  sr->call_rule = g_strdup (step->call_rule);
  sr->in_call = TRUE;
  if (sr->call_results == NULL)
    sr->call_results = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_connector_result_unref);
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
          vps_warning (vps_stage_run_sid (sr),
                       "connector=%s error=\"not configured\" on_error=tempfail", step->calls[i]);
          g_ptr_array_add (sr->call_results, r);
          sr->pending--;
          continue;
        }
      vps_connector_call_async (c, sr->txn, sr->stage, cancellable, call_done, sr);
    }
  if (sr->pending == 0)
    {
      sr->pending = 1;
      vps_stage_run_pending_done (sr); /* everything answered at once */
    }
}

static void
stage_advance (VpsStageRun *sr)
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
          vps_warning (vps_stage_run_sid (sr),
                       "stage=%s more than %d steps: stopped, verdict continue",
                       rules_stage_name (sr->stage), VPS_ENGINE_MAX_STEPS);
          stage_done (sr, RULES_VERDICT_CONTINUE, 0, NULL, NULL, NULL, NULL);
          stage_run_free (sr);
          return;
        }
      if (vps_stage_run_state_failed (sr))
        {
          /* [state] on_error = tempfail: the backend could not answer */
          stage_done (sr, RULES_VERDICT_TEMPFAIL, 451, "4.3.0",
                      "Policy state unavailable, try again later", "state backend", NULL);
          stage_run_free (sr);
          return;
        }
      switch (rules_run_step (sr->run, &vps_engine_host_vtable, sr, &step))
        {
          case RULES_STEP_DONE:
            if (step.greylist && step.code == 0)
              vps_engine_state_greylist_reply (sr->engine->es, &step.code, &step.enhanced,
                                               &step.text);
            stage_done (sr, step.verdict, step.code, step.enhanced, step.text, step.rule,
                        step.quarantine);
            stage_run_free (sr);
            return;
          case RULES_STEP_CALL:
            start_calls (sr, &step);
            break;
          case RULES_STEP_WAIT:
          default:
            /* the state checks this evaluation queued: one batch */
            vps_stage_run_state_flush (sr);
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
  VpsStageRun *sr;
  RulesState *state;

  g_return_if_fail (engine != NULL && session != NULL && txn != NULL);
  g_return_if_fail (stage < RULES_N_STAGES);
  sr = g_new0 (VpsStageRun, 1);
  sr->engine = vps_engine_ref (engine);
  sr->session = vps_session_ref (session);
  sr->txn = vps_txn_ref (txn);
  sr->stage = stage;
  sr->task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (sr->task, vps_engine_run_stage_async);
  /* cancellation is reported by the step loop as VPS_ENGINE_ERROR_CANCELLED */
  g_task_set_check_cancellable (sr->task, FALSE);
  sr->result = stage_result_new (stage);
  /* call_results, dns_started and scratch are made when first needed:
   * most stages call no connector and ask no DNS question. */

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
  vps_stage_run_state_begin (sr);
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
