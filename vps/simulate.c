/* SPDX-License-Identifier: MIT
 *
 * simulate.c — `vpsctl run MSG.eml`: every stage of one transaction run
 * offline on a message file, stopping where a real MTA would (simulate.h),
 * and the report of it.
 *
 * The run is a small state machine (Phase) advanced from each stage's
 * completion callback; the synchronous wrapper iterates a private main
 * context until the task returns.
 */
#include "vps/simulate.h"

#include <gmime/gmime.h>
#include <string.h>
#include "vps/report.h"

G_DEFINE_QUARK (vps - simulate - error - quark, vps_simulate_error)

typedef enum
{
  PHASE_CONNECT,
  PHASE_HELO,
  PHASE_MAIL,
  PHASE_RCPT,
  PHASE_DATA,
  PHASE_POSTQ,
  PHASE_DELIVERY,
  PHASE_DONE,
} Phase;

typedef struct
{
  VpsEngine *engine;
  VpsSession *session;
  VpsTxn *txn;
  VpsMessage *message;
  GPtrArray *rcpts; /* char*, to try */
  guint rcpt_i;
  GPtrArray *accepted; /* char*, for delivery */
  guint deliver_i;
  Phase phase;
  gboolean apply;
} Sim;

static void
sim_free (Sim *sim)
{
  vps_engine_unref (sim->engine);
  vps_session_unref (sim->session);
  vps_txn_unref (sim->txn);
  g_clear_pointer (&sim->message, vps_message_unref);
  g_ptr_array_unref (sim->rcpts);
  g_ptr_array_unref (sim->accepted);
  g_free (sim);
}

/* Addresses of the mailboxes in a header value ("A <a@x>, b@y"), via
 * GMime's RFC 5322 address parser. */
static void
header_addresses (VpsMessage *msg, const char *name, GPtrArray *out)
{
  gsize n = 0;
  const char *const *values = vps_message_get_headers (msg, name, &n);

  for (gsize i = 0; values != NULL && i < n; i++)
    {
      InternetAddressList *list = internet_address_list_parse (NULL, values[i]);
      if (list == NULL)
        continue;
      for (int k = 0; k < internet_address_list_length (list); k++)
        {
          InternetAddress *a = internet_address_list_get_address (list, k);
          if (INTERNET_ADDRESS_IS_MAILBOX (a) && out->len < VPS_SIMULATE_MAX_RCPTS)
            g_ptr_array_add (
                out, g_strdup (internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (a))));
        }
      g_object_unref (list);
    }
}

static gboolean
ends_session (RulesVerdict v)
{
  return v == RULES_VERDICT_REJECT || v == RULES_VERDICT_TEMPFAIL || v == RULES_VERDICT_DISCARD;
}

static void sim_next (GTask *task);

static void
stage_done (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;
  Sim *sim = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (VpsStageResult) r = vps_engine_run_stage_finish (sim->engine, res, &error);

  if (r == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  switch (sim->phase)
    {
      case PHASE_CONNECT:
      case PHASE_HELO:
      case PHASE_MAIL:
        sim->phase = ends_session (r->verdict) ? PHASE_DONE : sim->phase + 1;
        break;
      case PHASE_RCPT:
        if (r->verdict == RULES_VERDICT_DISCARD)
          {
            sim->phase = PHASE_DONE;
            break;
          }
        if (r->verdict != RULES_VERDICT_REJECT && r->verdict != RULES_VERDICT_TEMPFAIL)
          {
            vps_txn_accept_rcpt (sim->txn);
            g_ptr_array_add (sim->accepted, g_strdup (g_ptr_array_index (sim->rcpts, sim->rcpt_i)));
          }
        if (++sim->rcpt_i >= sim->rcpts->len)
          sim->phase = sim->accepted->len == 0 ? PHASE_DONE : PHASE_DATA;
        break;
      case PHASE_DATA:
      case PHASE_POSTQ:
        /* quarantine holds the message: it is not delivered */
        sim->phase = (ends_session (r->verdict) || r->verdict == RULES_VERDICT_QUARANTINE)
                         ? PHASE_DONE
                         : sim->phase + 1;
        break;
      case PHASE_DELIVERY:
        if (++sim->deliver_i >= sim->accepted->len)
          sim->phase = PHASE_DONE;
        break;
      case PHASE_DONE:
      default:
        break;
    }
  sim_next (task);
}

static void
sim_finish (GTask *task)
{
  Sim *sim = g_task_get_task_data (task);
  g_autoptr (JsonObject) report = NULL;
  g_autofree char *qid = NULL;
  GError *error = NULL;

  if (sim->apply && vps_txn_get_quarantine (sim->txn) != NULL)
    {
      /* a quarantine verdict before data has no message yet: give it one */
      if (vps_txn_get_message (sim->txn) == NULL)
        vps_txn_set_message (sim->txn, sim->message);
      if (!vps_engine_quarantine_txn (sim->engine, sim->txn, &qid, &error))
        {
          g_task_return_new_error (task, VPS_SIMULATE_ERROR, VPS_SIMULATE_ERROR_QUARANTINE,
                                   "quarantine: %s", error->message);
          g_error_free (error);
          g_object_unref (task);
          return;
        }
    }
  report = vps_report_txn (sim->txn);
  if (qid != NULL)
    json_object_set_string_member (report, "quarantine_id", qid);
  g_task_return_pointer (task, g_steal_pointer (&report), (GDestroyNotify)json_object_unref);
  g_object_unref (task);
}

static void
sim_next (GTask *task)
{
  Sim *sim = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);
  RulesStage stage;

  switch (sim->phase)
    {
      case PHASE_CONNECT:
        stage = RULES_STAGE_CONNECT;
        break;
      case PHASE_HELO:
        stage = RULES_STAGE_HELO;
        break;
      case PHASE_MAIL:
        stage = RULES_STAGE_MAIL;
        break;
      case PHASE_RCPT:
        vps_txn_set_rcpt (sim->txn, g_ptr_array_index (sim->rcpts, sim->rcpt_i), NULL);
        stage = RULES_STAGE_RCPT;
        break;
      case PHASE_DATA:
        /* At data and postq rcpt.* is the last accepted recipient, as the
         * milter {rcpt_addr} macro is at end of message; `rcpts` has all. */
        vps_txn_set_rcpt (
            sim->txn,
            sim->accepted->len ? g_ptr_array_index (sim->accepted, sim->accepted->len - 1) : NULL,
            NULL);
        vps_txn_set_message (sim->txn, sim->message);
        stage = RULES_STAGE_DATA;
        break;
      case PHASE_POSTQ:
        /* queued: the simulated queue id is the transaction id */
        vps_txn_set_queue_id (sim->txn, vps_txn_get_id (sim->txn));
        stage = RULES_STAGE_POSTQ;
        break;
      case PHASE_DELIVERY:
        vps_txn_set_rcpt (sim->txn, g_ptr_array_index (sim->accepted, sim->deliver_i), NULL);
        vps_txn_set_delivery_attempts (sim->txn, 1);
        stage = RULES_STAGE_DELIVERY;
        break;
      case PHASE_DONE:
      default:
        sim_finish (task);
        return;
    }
  vps_engine_run_stage_async (sim->engine, sim->session, sim->txn, stage, cancellable, stage_done,
                              task);
}

void
vps_simulate_run_async (VpsEngine *engine, GBytes *raw, const VpsSimulateOptions *options,
                        GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  static const VpsSimulateOptions defaults = { 0 };
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  GError *error = NULL;
  Sim *sim;
  const char *from;

  if (options == NULL)
    options = &defaults;
  g_task_set_source_tag (task, vps_simulate_run_async);
  sim = g_new0 (Sim, 1);
  sim->engine = vps_engine_ref (engine);
  sim->session = vps_session_new ();
  sim->txn = vps_txn_new (sim->session);
  sim->rcpts = g_ptr_array_new_with_free_func (g_free);
  sim->accepted = g_ptr_array_new_with_free_func (g_free);
  sim->apply = options->apply;
  g_task_set_task_data (task, sim, (GDestroyNotify)sim_free);

  sim->message = raw ? vps_message_new (raw, &error) : NULL;
  if (sim->message == NULL)
    {
      g_task_return_new_error (task, VPS_SIMULATE_ERROR, VPS_SIMULATE_ERROR_MESSAGE, "message: %s",
                               error ? error->message : "none");
      g_clear_error (&error);
      g_object_unref (task);
      return;
    }

  from = options->from;
  if (from == NULL)
    {
      g_autoptr (GPtrArray) froms = g_ptr_array_new_with_free_func (g_free);
      header_addresses (sim->message, "From", froms);
      if (froms->len > 0)
        vps_txn_set_sender (sim->txn, g_ptr_array_index (froms, 0), NULL);
    }
  else
    vps_txn_set_sender (sim->txn, from, NULL);
  for (guint i = 0; options->rcpts != NULL && options->rcpts[i] != NULL; i++)
    if (sim->rcpts->len < VPS_SIMULATE_MAX_RCPTS)
      g_ptr_array_add (sim->rcpts, g_strdup (options->rcpts[i]));
  if (sim->rcpts->len == 0)
    {
      header_addresses (sim->message, "To", sim->rcpts);
      header_addresses (sim->message, "Cc", sim->rcpts);
    }
  if (vps_txn_get_sender (sim->txn) == NULL || sim->rcpts->len == 0)
    {
      g_task_return_new_error (task, VPS_SIMULATE_ERROR, VPS_SIMULATE_ERROR_ENVELOPE,
                               "no %s: give it or put it in the message's %s header",
                               sim->rcpts->len == 0 ? "recipient" : "sender",
                               sim->rcpts->len == 0 ? "To" : "From");
      g_object_unref (task);
      return;
    }

  vps_session_set_client (sim->session, options->client_ip ? options->client_ip : "127.0.0.1", 0,
                          NULL);
  vps_session_set_server (sim->session, "127.0.0.1", 25, g_get_host_name ());
  vps_session_set_helo (sim->session, options->helo ? options->helo : "localhost");
  vps_txn_set_dry_run (sim->txn, !options->apply);
  sim->phase = PHASE_CONNECT;
  sim_next (task);
}

JsonObject *
vps_simulate_run_finish (GAsyncResult *result, VpsTxn **out_txn, GError **error)
{
  GTask *task = G_TASK (result);
  Sim *sim = g_task_get_task_data (task);
  JsonObject *report = g_task_propagate_pointer (task, error);

  if (report != NULL && out_txn != NULL)
    *out_txn = vps_txn_ref (sim->txn);
  return report;
}

static void
sync_done (GObject *source, GAsyncResult *res, gpointer data)
{
  *(GAsyncResult **)data = g_object_ref (res);
}

JsonObject *
vps_simulate_run (VpsEngine *engine, GBytes *raw, const VpsSimulateOptions *options,
                  VpsTxn **out_txn, GError **error)
{
  g_autoptr (GMainContext) ctx = g_main_context_new ();
  g_autoptr (GAsyncResult) res = NULL;

  g_main_context_push_thread_default (ctx);
  vps_simulate_run_async (engine, raw, options, NULL, sync_done, &res);
  while (res == NULL)
    g_main_context_iteration (ctx, TRUE);
  /* let calls cancelled at a timeout wind down: their sources live on this
   * private context, which nobody iterates after we return */
  while (g_main_context_iteration (ctx, FALSE))
    ;
  g_main_context_pop_thread_default (ctx);
  return vps_simulate_run_finish (res, out_txn, error);
}

JsonObject *
vps_simulate_run_file (VpsEngine *engine, const char *path, const VpsSimulateOptions *options,
                       VpsTxn **out_txn, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  g_autoptr (GError) local = NULL;
  g_autoptr (GBytes) raw = NULL;

  if (!g_file_get_contents (path, &data, &len, &local))
    {
      g_set_error (error, VPS_SIMULATE_ERROR, VPS_SIMULATE_ERROR_MESSAGE, "%s", local->message);
      return NULL;
    }
  raw = g_bytes_new_take (g_steal_pointer (&data), len);
  return vps_simulate_run (engine, raw, options, out_txn, error);
}
