/* SPDX-License-Identifier: MIT
 *
 * grpc-admin.c — the vps.v1.Admin service: Reload (as SIGHUP, on the main
 * context), Stats (engine counters per stage and verdict, connector
 * counters, this server's per-method latencies), and the quarantine store
 * (list, get raw or JSON, release, delete) of [quarantine] dir.
 *
 * Who may call it is decided before a call gets here (grpc-server.c).
 * Store errors map to status codes in one place (quarantine_status).
 * ReleaseQuarantined sends the stored message with its stored envelope to
 * [quarantine] release_to with vps/smtp-client.h, in a GTask thread (the
 * client blocks); the reply is sent from the worker the call came to.
 * SMTP failures map to status codes in one place (release_status).  The
 * request has no "delete after release" field, so a released message stays
 * in the quarantine until DeleteQuarantined.
 */
#include "vps/grpc-private.h"

#include "vps/log.h"
#include "vps/quarantine.h"
#include "vps/smtp-client.h"

/* ---- Reload --------------------------------------------------------------- */

void
vps_grpc_admin_reload (VpsGrpcReq *req)
{
  g_autoptr (GError) error = NULL;
  Vps__V1__ReloadResponse out;

  vps_notice (NULL, "grpc: reload asked by %s", vps_grpc_call_get_peer (req->call));
  if (!vps_daemon_reload (req->server->daemon, &error))
    {
      vps_warning (NULL, "reload refused, keeping generation %u: %s",
                   vps_daemon_get_generation (req->server->daemon), error->message);
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_FAILED_PRECONDITION,
                         "reload refused, generation %u stays: %s",
                         vps_daemon_get_generation (req->server->daemon), error->message);
      return;
    }
  vps__v1__reload_response__init (&out);
  out.generation = vps_daemon_get_generation (req->server->daemon);
  vps_grpc_req_reply (req, &out.base);
}

/* ---- Stats ---------------------------------------------------------------- */

void
vps_grpc_admin_stats (VpsGrpcReq *req)
{
  VpsGrpcServer *server = req->server;
  g_autoptr (VpsEngine) engine = vps_daemon_get_engine (server->daemon);
  Vps__V1__StatsResponse out;
  VpsGrpcArena arena;
  gsize n_methods = 0;
  const VpsGrpcMethod *methods = vps_grpc_methods (&n_methods);
  gsize n_conn = vps_engine_n_connectors (engine);

  vps_grpc_arena_init (&arena);
  vps__v1__stats_response__init (&out);
  out.generation = vps_daemon_get_generation (server->daemon);

  out.stages = vps_grpc_arena_alloc (&arena, sizeof (*out.stages) * RULES_N_STAGES
                                                 * (RULES_VERDICT_DISCARD + 1));
  for (int s = 0; s < RULES_N_STAGES; s++)
    for (int v = RULES_VERDICT_CONTINUE; v <= RULES_VERDICT_DISCARD; v++)
      {
        guint64 count = vps_engine_stats_stage (engine, s, v);
        Vps__V1__StageCount *c;

        if (count == 0)
          continue;
        c = vps_grpc_arena_alloc (&arena, sizeof *c);
        vps__v1__stage_count__init (c);
        c->stage = vps_grpc_stage_to_pb (s);
        c->verdict = vps_grpc_verdict_to_pb (v);
        c->count = count;
        out.stages[out.n_stages++] = c;
      }

  out.connectors = vps_grpc_arena_alloc (&arena, sizeof (*out.connectors) * n_conn);
  for (gsize i = 0; i < n_conn; i++)
    {
      VpsConnector *conn = vps_engine_get_connector (engine, i);
      Vps__V1__ConnectorStats *c = vps_grpc_arena_alloc (&arena, sizeof *c);
      VpsConnectorStats st;

      vps_connector_get_stats (conn, &st);
      vps__v1__connector_stats__init (c);
      c->name = (char *)vps_connector_get_name (conn);
      c->type = (char *)vps_connector_get_class (conn)->type;
      c->calls = st.calls;
      c->errors = st.errors;
      c->timeouts = st.timeouts;
      c->total_ms = st.total_ms;
      c->active = st.active;
      c->queued = st.queued;
      out.connectors[out.n_connectors++] = c;
    }

  out.methods = vps_grpc_arena_alloc (&arena, sizeof (*out.methods) * n_methods);
  g_mutex_lock (&server->stats_lock);
  for (gsize i = 0; i < n_methods; i++)
    {
      const VpsGrpcMethodCounters *k = &server->counters[i];
      Vps__V1__MethodStats *m;

      if (k->calls == 0)
        continue;
      m = vps_grpc_arena_alloc (&arena, sizeof *m);
      vps__v1__method_stats__init (m);
      m->method = (char *)methods[i].path;
      m->calls = k->calls;
      m->errors = k->errors;
      m->total_us = k->total_us;
      m->max_us = k->max_us;
      out.methods[out.n_methods++] = m;
    }
  g_mutex_unlock (&server->stats_lock);
  out.sessions = vps_grpc_sessions_count (server->sessions);
  out.calls_in_flight = (server->core ? vps_grpc_core_n_calls (server->core) : 0)
                        + (server->admin_core ? vps_grpc_core_n_calls (server->admin_core) : 0);
  vps_grpc_req_reply (req, &out.base);
  vps_grpc_arena_clear (&arena);
}

/* ---- quarantine ----------------------------------------------------------- */

static VpsGrpcStatus
quarantine_status (const GError *error)
{
  if (error->domain != VPS_QUARANTINE_ERROR)
    return VPS_GRPC_STATUS_INTERNAL;
  switch (error->code)
    {
      case VPS_QUARANTINE_ERROR_INVALID_ID:
      case VPS_QUARANTINE_ERROR_INVALID_NAME:
        return VPS_GRPC_STATUS_INVALID_ARGUMENT;
      case VPS_QUARANTINE_ERROR_NOT_FOUND:
        return VPS_GRPC_STATUS_NOT_FOUND;
      case VPS_QUARANTINE_ERROR_CORRUPT:
        return VPS_GRPC_STATUS_DATA_LOSS;
      case VPS_QUARANTINE_ERROR_IO:
      default:
        return VPS_GRPC_STATUS_INTERNAL;
    }
}

static void
fail_quarantine (VpsGrpcReq *req, const GError *error)
{
  vps_grpc_req_fail (req, quarantine_status (error), "quarantine: %s", error->message);
}

/* The store of the configuration now in force; NULL with the reply sent. */
static VpsQuarantine *
open_store (VpsGrpcReq *req)
{
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (req->server->daemon);
  g_autoptr (GError) error = NULL;
  VpsQuarantine *q
      = vps_quarantine_open (vps_config_get_path_value (cfg, "quarantine", "dir"), &error);

  if (q == NULL)
    fail_quarantine (req, error);
  return q;
}

static Vps__V1__QuarantineEntry *
entry_to_pb (VpsGrpcArena *arena, VpsQuarantineEntry *e)
{
  Vps__V1__QuarantineEntry *p = vps_grpc_arena_alloc (arena, sizeof *p);

  vps__v1__quarantine_entry__init (p);
  p->id = e->id;
  p->name = e->name;
  p->time = e->time;
  p->size = e->size;
  p->sender = e->sender ? e->sender : (char *)"";
  p->n_recipients = g_strv_length (e->recipients);
  p->recipients = e->recipients;
  p->subject = e->subject ? e->subject : (char *)"";
  p->reason = e->reason ? e->reason : (char *)"";
  p->rule = e->rule ? e->rule : (char *)"";
  return p;
}

void
vps_grpc_admin_list_quarantine (VpsGrpcReq *req)
{
  Vps__V1__ListQuarantineRequest *in = (gpointer)req->request;
  g_autoptr (VpsQuarantine) q = NULL;
  g_autoptr (GPtrArray) entries = NULL;
  g_autoptr (GError) error = NULL;
  Vps__V1__ListQuarantineResponse out;
  VpsGrpcArena arena;
  guint limit = in->limit == 0 ? 1000 : MIN (in->limit, VPS_GRPC_MAX_LIST);
  guint first;

  if (in->name[0] != '\0' && !vps_quarantine_valid_name (in->name))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "name: not a quarantine name");
      return;
    }
  if ((q = open_store (req)) == NULL)
    return;
  entries = vps_quarantine_list (q, in->name[0] ? in->name : NULL, &error);
  if (entries == NULL)
    {
      fail_quarantine (req, error);
      return;
    }
  vps_grpc_arena_init (&arena);
  vps__v1__list_quarantine_response__init (&out);
  /* the newest `limit` entries, oldest first */
  first = entries->len > limit ? entries->len - limit : 0;
  out.truncated = first > 0;
  out.entries = vps_grpc_arena_alloc (&arena, sizeof (*out.entries) * (entries->len - first));
  for (guint i = first; i < entries->len; i++)
    out.entries[out.n_entries++] = entry_to_pb (&arena, g_ptr_array_index (entries, i));
  vps_grpc_req_reply (req, &out.base);
  vps_grpc_arena_clear (&arena);
}

void
vps_grpc_admin_get_quarantined (VpsGrpcReq *req)
{
  Vps__V1__GetQuarantinedRequest *in = (gpointer)req->request;
  g_autoptr (VpsQuarantine) q = NULL;
  g_autoptr (VpsQuarantineEntry) entry = NULL;
  g_autoptr (GBytes) raw = NULL;
  g_autofree char *json = NULL;
  g_autoptr (GError) error = NULL;
  Vps__V1__GetQuarantinedResponse out;
  VpsGrpcArena arena;

  if (in->format != VPS__V1__QUARANTINE_FORMAT__QUARANTINE_FORMAT_RAW
      && in->format != VPS__V1__QUARANTINE_FORMAT__QUARANTINE_FORMAT_JSON)
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "format: %d is not RAW or JSON",
                         (int)in->format);
      return;
    }
  if (!vps_quarantine_valid_id (in->id))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "id: not a quarantine id");
      return;
    }
  if ((q = open_store (req)) == NULL)
    return;
  entry = vps_quarantine_get_entry (q, in->id, &error);
  if (entry != NULL)
    {
      if (in->format == VPS__V1__QUARANTINE_FORMAT__QUARANTINE_FORMAT_RAW)
        raw = vps_quarantine_get_raw (q, in->id, &error);
      else
        json = vps_quarantine_get_json (q, in->id, &error);
    }
  if (entry == NULL || (raw == NULL && json == NULL))
    {
      fail_quarantine (req, error);
      return;
    }
  vps_grpc_arena_init (&arena);
  vps__v1__get_quarantined_response__init (&out);
  out.entry = entry_to_pb (&arena, entry);
  if (raw != NULL)
    out.raw.data = (guint8 *)g_bytes_get_data (raw, &out.raw.len);
  out.json = json ? json : (char *)"";
  vps_grpc_req_reply (req, &out.base);
  vps_grpc_arena_clear (&arena);
}

/* ---- ReleaseQuarantined ----------------------------------------------------- */

/* What the SMTP thread needs, copied: it shares nothing with the worker. */
typedef struct
{
  char *release_to;
  char *sender;
  char **recipients;
  GBytes *raw;
  guint timeout_ms;
} ReleaseJob;

static void
release_job_free (gpointer data)
{
  ReleaseJob *job = data;

  g_free (job->release_to);
  g_free (job->sender);
  g_strfreev (job->recipients);
  g_bytes_unref (job->raw);
  g_free (job);
}

static void
release_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  ReleaseJob *job = data;
  VpsSmtpClientOptions options = { .timeout_ms = job->timeout_ms };
  GError *error = NULL;
  VpsSmtpClientResult *result
      = vps_smtp_client_send (job->release_to, job->sender, (const char *const *)job->recipients,
                              job->raw, &options, cancellable, &error);

  if (result != NULL)
    g_task_return_pointer (task, result, (GDestroyNotify)vps_smtp_client_result_free);
  else
    g_task_return_error (task, error);
}

/* An SMTP server that says no (5xx) or data that cannot be sent:
 * FAILED_PRECONDITION, retrying will not help; a server that cannot be
 * reached, is slow, garbles or says "later" (4xx): UNAVAILABLE. */
static VpsGrpcStatus
release_status (VpsGrpcReq *req, const GError *error)
{
  if (error->domain != VPS_SMTP_CLIENT_ERROR)
    return VPS_GRPC_STATUS_INTERNAL;
  switch (error->code)
    {
      case VPS_SMTP_CLIENT_ERROR_INVALID:
      case VPS_SMTP_CLIENT_ERROR_REJECTED:
        return VPS_GRPC_STATUS_FAILED_PRECONDITION;
      case VPS_SMTP_CLIENT_ERROR_CANCELLED:
      case VPS_SMTP_CLIENT_ERROR_TIMEOUT:
        if (vps_grpc_req_deadline_passed (req))
          return VPS_GRPC_STATUS_DEADLINE_EXCEEDED;
        return VPS_GRPC_STATUS_UNAVAILABLE;
      case VPS_SMTP_CLIENT_ERROR_CONNECT:
      case VPS_SMTP_CLIENT_ERROR_IO:
      case VPS_SMTP_CLIENT_ERROR_PROTOCOL:
      case VPS_SMTP_CLIENT_ERROR_TEMPFAIL:
      default:
        return VPS_GRPC_STATUS_UNAVAILABLE;
    }
}

static void
release_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  VpsGrpcReq *req = user_data;
  Vps__V1__ReleaseQuarantinedRequest *in = (gpointer)req->request;
  ReleaseJob *job = g_task_get_task_data (G_TASK (res));
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsSmtpClientResult) result = g_task_propagate_pointer (G_TASK (res), &error);
  g_autofree char *reply = NULL;
  Vps__V1__ReleaseQuarantinedResponse out;

  if (result == NULL)
    {
      vps_warning (NULL, "grpc: release of quarantine %s to %s failed: %s", in->id, job->release_to,
                   error->message);
      vps_grpc_req_fail (req, release_status (req, error),
                         "release to %s: %s; the message %s stays in the quarantine",
                         job->release_to, error->message, in->id);
      return;
    }
  reply = vps_smtp_client_describe_reply (result->reply);
  for (guint i = 0; i < result->rcpts->len; i++)
    {
      VpsSmtpClientRcpt *r = g_ptr_array_index (result->rcpts, i);
      g_autofree char *text = NULL;

      if (r->accepted)
        continue;
      text = vps_smtp_client_describe_reply (r->reply);
      vps_warning (NULL, "grpc: release of quarantine %s: %s refused <%s>: %s", in->id,
                   job->release_to, r->address, text);
    }
  vps_notice (NULL, "grpc: quarantine %s released to %s by %s (%u of %u recipients): %s", in->id,
              job->release_to, vps_grpc_call_get_peer (req->call), result->n_accepted,
              result->rcpts->len, reply);
  vps__v1__release_quarantined_response__init (&out);
  out.reply = reply;
  vps_grpc_req_reply (req, &out.base);
}

void
vps_grpc_admin_release_quarantined (VpsGrpcReq *req)
{
  Vps__V1__ReleaseQuarantinedRequest *in = (gpointer)req->request;
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (req->server->daemon);
  g_autoptr (VpsQuarantine) q = NULL;
  g_autoptr (VpsQuarantineEntry) entry = NULL;
  g_autoptr (GBytes) raw = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GTask) task = NULL;
  ReleaseJob *job;
  gint64 left;

  if (!vps_quarantine_valid_id (in->id))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "id: not a quarantine id");
      return;
    }
  if ((q = open_store (req)) == NULL)
    return;
  if ((entry = vps_quarantine_get_entry (q, in->id, &error)) == NULL)
    {
      fail_quarantine (req, error);
      return;
    }
  if (!vps_config_has_key (cfg, "quarantine", "release_to"))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_FAILED_PRECONDITION,
                         "[quarantine] release_to is not set: nowhere to send %s", in->id);
      return;
    }
  if ((raw = vps_quarantine_get_raw (q, in->id, &error)) == NULL)
    {
      fail_quarantine (req, error);
      return;
    }
  if (!vps_grpc_req_arm_deadline (req))
    return;

  job = g_new0 (ReleaseJob, 1);
  job->release_to = g_strdup (vps_config_get_string (cfg, "quarantine", "release_to"));
  /* an entry without a sender goes out with the null sender: nothing
   * bounces to an address nobody gave */
  job->sender = g_strdup (entry->sender ? entry->sender : "");
  job->recipients = g_strdupv (entry->recipients);
  job->raw = g_steal_pointer (&raw);
  left = vps_grpc_call_remaining_us (req->call);
  job->timeout_ms = left == G_MAXINT64
                        ? VPS_SMTP_CLIENT_DEFAULT_TIMEOUT_MS
                        : (guint)CLAMP (left / 1000, 1, VPS_SMTP_CLIENT_DEFAULT_TIMEOUT_MS);

  /* completes on this worker's context (its thread-default one) */
  task = g_task_new (NULL, req->cancellable, release_done, req);
  g_task_set_source_tag (task, vps_grpc_admin_release_quarantined);
  /* a message the server took must be reported as sent even when the
   * deadline fires as the reply comes in */
  g_task_set_check_cancellable (task, FALSE);
  g_task_set_task_data (task, job, release_job_free);
  g_task_run_in_thread (task, release_thread);
}

void
vps_grpc_admin_delete_quarantined (VpsGrpcReq *req)
{
  Vps__V1__DeleteQuarantinedRequest *in = (gpointer)req->request;
  g_autoptr (VpsQuarantine) q = NULL;
  g_autoptr (GError) error = NULL;
  Vps__V1__DeleteQuarantinedResponse out;

  if (!vps_quarantine_valid_id (in->id))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "id: not a quarantine id");
      return;
    }
  if ((q = open_store (req)) == NULL)
    return;
  if (!vps_quarantine_delete (q, in->id, &error))
    {
      fail_quarantine (req, error);
      return;
    }
  vps_notice (NULL, "grpc: quarantine %s deleted by %s", in->id,
              vps_grpc_call_get_peer (req->call));
  vps__v1__delete_quarantined_response__init (&out);
  vps_grpc_req_reply (req, &out.base);
}
