/* SPDX-License-Identifier: MIT
 *
 * grpc-server.c — vpsd's gRPC front end (grpc-server.h): the listeners,
 * the method table and dispatch, the admin restriction, deadlines, the
 * health service, per-method counters and the drain.
 *
 * Dispatch happens on the completion-queue thread of vps/grpc-core.c: the
 * method is looked up (unknown → UNIMPLEMENTED), Admin is refused off the
 * admin listener (PERMISSION_DENIED), the request is unpacked with the
 * method's descriptor (garbage → INVALID_ARGUMENT), a call whose deadline
 * already passed is answered DEADLINE_EXCEEDED, and the rest is handed to
 * a worker context with g_main_context_invoke (Check goes to the worker of
 * its session).  Each call in flight is a daemon session for the drain.
 */
#include "vps/grpc-private.h"

#include <stdarg.h>

#include "vps/log.h"

G_DEFINE_QUARK (vps - grpc - server - error - quark, vps_grpc_server_error)

/* The main-context tick: notices the drain and expires idle sessions. */
#define VPS_GRPC_TICK_MS 200
#define VPS_GRPC_EXPIRE_EVERY_TICKS 25

static void health_check (VpsGrpcReq *req);
static void health_watch (VpsGrpcReq *req);

/* clang-format off */
static const VpsGrpcMethod methods[] = {
  { "/vps.v1.Policy/Check", VPS_GRPC_SVC_POLICY, VPS_GRPC_RUN_WORKER,
    &vps__v1__check_request__descriptor, vps_grpc_policy_check },
  { "/vps.v1.Policy/Evaluate", VPS_GRPC_SVC_POLICY, VPS_GRPC_RUN_WORKER,
    &vps__v1__evaluate_request__descriptor, vps_grpc_policy_evaluate },
  { "/vps.v1.Policy/EndSession", VPS_GRPC_SVC_POLICY, VPS_GRPC_RUN_WORKER,
    &vps__v1__end_session_request__descriptor, vps_grpc_policy_end_session },
  { "/vps.v1.Admin/Reload", VPS_GRPC_SVC_ADMIN, VPS_GRPC_RUN_MAIN,
    &vps__v1__reload_request__descriptor, vps_grpc_admin_reload },
  { "/vps.v1.Admin/Stats", VPS_GRPC_SVC_ADMIN, VPS_GRPC_RUN_WORKER,
    &vps__v1__stats_request__descriptor, vps_grpc_admin_stats },
  { "/vps.v1.Admin/ListQuarantine", VPS_GRPC_SVC_ADMIN, VPS_GRPC_RUN_WORKER,
    &vps__v1__list_quarantine_request__descriptor, vps_grpc_admin_list_quarantine },
  { "/vps.v1.Admin/GetQuarantined", VPS_GRPC_SVC_ADMIN, VPS_GRPC_RUN_WORKER,
    &vps__v1__get_quarantined_request__descriptor, vps_grpc_admin_get_quarantined },
  { "/vps.v1.Admin/ReleaseQuarantined", VPS_GRPC_SVC_ADMIN, VPS_GRPC_RUN_WORKER,
    &vps__v1__release_quarantined_request__descriptor, vps_grpc_admin_release_quarantined },
  { "/vps.v1.Admin/DeleteQuarantined", VPS_GRPC_SVC_ADMIN, VPS_GRPC_RUN_WORKER,
    &vps__v1__delete_quarantined_request__descriptor, vps_grpc_admin_delete_quarantined },
  { "/grpc.health.v1.Health/Check", VPS_GRPC_SVC_HEALTH, VPS_GRPC_RUN_INLINE,
    &grpc__health__v1__health_check_request__descriptor, health_check },
  { "/grpc.health.v1.Health/Watch", VPS_GRPC_SVC_HEALTH, VPS_GRPC_RUN_INLINE,
    NULL, health_watch },
  /* reflection streams: handled in on_message, never through a VpsGrpcReq */
  { "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", VPS_GRPC_SVC_REFLECTION,
    VPS_GRPC_RUN_INLINE, NULL, NULL },
  { "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", VPS_GRPC_SVC_REFLECTION,
    VPS_GRPC_RUN_INLINE, NULL, NULL },
};
/* clang-format on */

const VpsGrpcMethod *
vps_grpc_methods (gsize *n)
{
  *n = G_N_ELEMENTS (methods);
  return methods;
}

static const VpsGrpcMethod *
lookup_method (const char *path, guint *index)
{
  for (guint i = 0; i < G_N_ELEMENTS (methods); i++)
    if (g_str_equal (methods[i].path, path))
      {
        *index = i;
        return &methods[i];
      }
  return NULL;
}

/* ---- requests ------------------------------------------------------------- */

static void
count_call (VpsGrpcServer *server, guint index, gint64 start, gboolean ok)
{
  VpsGrpcMethodCounters *c = &server->counters[index];
  guint64 us = (guint64)MAX (0, g_get_monotonic_time () - start);

  g_mutex_lock (&server->stats_lock);
  c->calls++;
  c->errors += ok ? 0 : 1;
  c->total_us += us;
  c->max_us = MAX (c->max_us, us);
  g_mutex_unlock (&server->stats_lock);
}

static void
req_free (VpsGrpcReq *req)
{
  if (req->deadline_source != NULL)
    {
      g_source_destroy (req->deadline_source);
      g_source_unref (req->deadline_source);
    }
  if (req->data_free != NULL)
    req->data_free (req->data);
  if (req->request != NULL)
    protobuf_c_message_free_unpacked (req->request, NULL);
  g_clear_object (&req->cancellable);
  g_clear_pointer (&req->message, g_bytes_unref);
  vps_grpc_call_unref (req->call);
  g_free (req);
}

static void
req_end (VpsGrpcReq *req, GBytes *reply, VpsGrpcStatus status, const char *details)
{
  VpsGrpcServer *server = req->server;
  gboolean counted = req->context != NULL; /* handed to a context: a daemon session */

  if (status != VPS_GRPC_STATUS_OK)
    vps_info (NULL, "grpc: %s %s: %s %s", vps_grpc_call_get_peer (req->call),
              req->method ? req->method->path : vps_grpc_call_get_method (req->call),
              vps_grpc_status_name (status), details ? details : "");
  vps_grpc_call_finish (req->call, reply, status, details);
  if (req->method != NULL)
    count_call (server, req->method_index, vps_grpc_call_get_start (req->call),
                status == VPS_GRPC_STATUS_OK);
  req_free (req);
  if (counted)
    vps_daemon_session_end (server->daemon);
}

GBytes *
vps_grpc_pack (const ProtobufCMessage *msg)
{
  gsize len = protobuf_c_message_get_packed_size (msg);
  guint8 *buf = g_malloc (MAX (len, 1));

  protobuf_c_message_pack (msg, buf);
  return g_bytes_new_take (buf, len);
}

void
vps_grpc_req_reply (VpsGrpcReq *req, const ProtobufCMessage *reply)
{
  g_autoptr (GBytes) bytes = vps_grpc_pack (reply);

  req_end (req, bytes, VPS_GRPC_STATUS_OK, NULL);
}

void
vps_grpc_req_fail (VpsGrpcReq *req, VpsGrpcStatus status, const char *fmt, ...)
{
  g_autofree char *details = NULL;
  va_list ap;

  va_start (ap, fmt);
  details = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  req_end (req, NULL, status, details);
}

static gboolean
on_deadline (gpointer data)
{
  VpsGrpcReq *req = data;

  g_clear_pointer (&req->deadline_source, g_source_unref);
  g_cancellable_cancel (req->cancellable);
  return G_SOURCE_REMOVE;
}

gboolean
vps_grpc_req_arm_deadline (VpsGrpcReq *req)
{
  gint64 left = vps_grpc_call_remaining_us (req->call);

  req->cancellable = g_cancellable_new ();
  if (left == G_MAXINT64)
    return TRUE;
  if (left <= 0)
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_DEADLINE_EXCEEDED,
                         "deadline passed before the start");
      return FALSE;
    }
  /* the timer lives on the request's context: the cancellation (and what
   * connectors do on it) happens on the thread that runs the stage */
  req->deadline_source = g_timeout_source_new ((guint)MIN ((left + 999) / 1000, G_MAXUINT));
  g_source_set_callback (req->deadline_source, on_deadline, req, NULL);
  g_source_attach (req->deadline_source, req->context);
  return TRUE;
}

gboolean
vps_grpc_req_deadline_passed (VpsGrpcReq *req)
{
  return vps_grpc_call_remaining_us (req->call) <= 0;
}

/* ---- health --------------------------------------------------------------- */

static void
health_check (VpsGrpcReq *req)
{
  Grpc__Health__V1__HealthCheckRequest *in = (gpointer)req->request;
  Grpc__Health__V1__HealthCheckResponse out;
  const char *svc = in->service ? in->service : "";
  static const char *const known[]
      = { "", "vps.v1.Policy", "vps.v1.Admin", "grpc.health.v1.Health", NULL };

  if (!g_strv_contains (known, svc))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_NOT_FOUND, "unknown service '%s'", svc);
      return;
    }
  grpc__health__v1__health_check_response__init (&out);
  out.status = vps_daemon_is_draining (req->server->daemon)
                   ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                   : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  vps_grpc_req_reply (req, &out.base);
}

static void
health_watch (VpsGrpcReq *req)
{
  vps_grpc_req_fail (req, VPS_GRPC_STATUS_UNIMPLEMENTED, "Watch is not served; poll Check");
}

/* ---- dispatch ------------------------------------------------------------- */

static gboolean
run_req (gpointer data)
{
  VpsGrpcReq *req = data;

  req->method->func (req);
  return G_SOURCE_REMOVE;
}

static gboolean
admin_allowed (VpsGrpcServer *server, VpsGrpcCall *call)
{
  if (vps_grpc_call_get_core (call) == server->admin_core)
    return TRUE;
  return server->admin_mtls && vps_grpc_call_peer_authenticated (call);
}

static void
reflection_message (VpsGrpcServer *server, VpsGrpcCall *call, GBytes *message)
{
  if (message == NULL)
    {
      /* the client half-closed: the stream ends well */
      vps_grpc_call_finish (call, NULL, VPS_GRPC_STATUS_OK, NULL);
      return;
    }
  {
    g_autoptr (GBytes) answer = vps_grpc_reflect_answer (server, message);

    vps_grpc_call_send (call, answer);
  }
}

static void
on_message (VpsGrpcCall *call, GBytes *message, gpointer user_data)
{
  VpsGrpcServer *server = user_data;
  const VpsGrpcMethod *method;
  VpsGrpcReq *req;
  guint index = 0;

  method = lookup_method (vps_grpc_call_get_method (call), &index);
  if (method != NULL && method->service == VPS_GRPC_SVC_REFLECTION)
    {
      reflection_message (server, call, message);
      return;
    }
  req = g_new0 (VpsGrpcReq, 1);
  req->server = server;
  req->call = vps_grpc_call_ref (call);
  req->method = method;
  req->method_index = index;
  req->worker = G_MAXUINT;
  if (method == NULL)
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_UNIMPLEMENTED, "unknown method %s",
                         vps_grpc_call_get_method (call));
      return;
    }
  if (method->service == VPS_GRPC_SVC_ADMIN && !admin_allowed (server, call))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_PERMISSION_DENIED,
                         "the Admin service is served on [grpc] admin_listen%s",
                         server->admin_mtls ? " or to mutual-TLS clients" : "");
      return;
    }
  if (message == NULL)
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "no request message");
      return;
    }
  req->message = g_bytes_ref (message);
  if (method->request != NULL)
    {
      gsize len = 0;
      const guint8 *data = g_bytes_get_data (message, &len);

      req->request = protobuf_c_message_unpack (method->request, NULL, len, data);
      if (req->request == NULL)
        {
          vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "not a valid %s message",
                             method->request->name);
          return;
        }
    }
  if (method->run_on == VPS_GRPC_RUN_INLINE)
    {
      method->func (req);
      return;
    }
  if (vps_daemon_is_draining (server->daemon))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_UNAVAILABLE, "vpsd is shutting down");
      return;
    }
  if (vps_grpc_call_remaining_us (call) <= 0)
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_DEADLINE_EXCEEDED, "deadline passed on arrival");
      return;
    }
  if (method->func == vps_grpc_policy_check)
    {
      guint worker = vps_grpc_policy_route (server, req);

      if (worker == G_MAXUINT)
        return; /* answered, and req is gone */
      req->worker = worker;
    }
  if (method->run_on == VPS_GRPC_RUN_MAIN)
    req->context = g_main_context_default ();
  else
    {
      guint n = vps_daemon_n_workers (server->daemon);
      guint w = req->worker != G_MAXUINT ? req->worker
                                         : (guint)g_atomic_int_add (&server->next_worker, 1);

      req->context = vps_daemon_worker_context (server->daemon, w % n);
    }
  vps_daemon_session_begin (server->daemon);
  g_main_context_invoke (req->context, run_req, req);
}

/* ---- life ----------------------------------------------------------------- */

VpsGrpcServer *
vps_grpc_server_new (VpsDaemon *daemon)
{
  VpsGrpcServer *server = g_new0 (VpsGrpcServer, 1);

  server->daemon = daemon;
  g_mutex_init (&server->stats_lock);
  server->counters = g_new0 (VpsGrpcMethodCounters, G_N_ELEMENTS (methods));
  return server;
}

static gboolean
on_tick (gpointer data)
{
  VpsGrpcServer *server = data;

  if (vps_daemon_is_draining (server->daemon)
      && g_atomic_int_compare_and_exchange (&server->shut, 0, 1))
    {
      /* stop accepting; calls in flight are daemon sessions and finish */
      vps_notice (NULL, "grpc: draining, %u calls in flight",
                  (server->core ? vps_grpc_core_n_calls (server->core) : 0)
                      + (server->admin_core ? vps_grpc_core_n_calls (server->admin_core) : 0));
      if (server->core != NULL)
        vps_grpc_core_shutdown (server->core);
      if (server->admin_core != NULL)
        vps_grpc_core_shutdown (server->admin_core);
    }
  if (++server->ticks % VPS_GRPC_EXPIRE_EVERY_TICKS == 0)
    {
      guint n = vps_grpc_sessions_expire (server->sessions);

      if (n > 0)
        vps_info (NULL, "grpc: %u idle sessions expired", n);
    }
  return G_SOURCE_CONTINUE;
}

static VpsGrpcCore *
start_core (VpsGrpcServer *server, VpsConfig *cfg, const char *name, const char *hostport,
            int *port, GError **error)
{
  g_autoptr (VpsGrpcCore) core = NULL;
  VpsGrpcTlsFiles tls = { 0 };
  gboolean with_tls = vps_config_has_key (cfg, "grpc", "tls_cert");

  core = vps_grpc_core_new (name, vps_config_get_size (cfg, "grpc", "max_message_size"), 0,
                            on_message, server);
  if (with_tls)
    {
      tls.cert = vps_config_get_path_value (cfg, "grpc", "tls_cert");
      tls.key = vps_config_get_path_value (cfg, "grpc", "tls_key");
      if (vps_config_has_key (cfg, "grpc", "tls_client_ca"))
        tls.client_ca = vps_config_get_path_value (cfg, "grpc", "tls_client_ca");
    }
  if (!vps_grpc_core_add_port (core, hostport, with_tls ? &tls : NULL, port, error)
      || !vps_grpc_core_start (core, error))
    return NULL;
  vps_notice (NULL, "grpc: %s listening on %s (port %d%s)", name, hostport, *port,
              !with_tls       ? ""
              : tls.client_ca ? ", mutual TLS"
                              : ", TLS");
  return g_steal_pointer (&core);
}

static gboolean
check_config (VpsConfig *cfg, GError **error)
{
  gboolean cert = vps_config_has_key (cfg, "grpc", "tls_cert");
  gboolean key = vps_config_has_key (cfg, "grpc", "tls_key");

  if (cert != key)
    {
      g_set_error (error, VPS_GRPC_SERVER_ERROR, VPS_GRPC_SERVER_ERROR_CONFIG,
                   "[grpc] tls_cert and tls_key go together");
      return FALSE;
    }
  if (vps_config_has_key (cfg, "grpc", "tls_client_ca") && !cert)
    {
      g_set_error (error, VPS_GRPC_SERVER_ERROR, VPS_GRPC_SERVER_ERROR_CONFIG,
                   "[grpc] tls_client_ca needs tls_cert and tls_key");
      return FALSE;
    }
  if (vps_config_get_bool (cfg, "grpc", "admin_mtls")
      && !vps_config_has_key (cfg, "grpc", "tls_client_ca"))
    {
      g_set_error (error, VPS_GRPC_SERVER_ERROR, VPS_GRPC_SERVER_ERROR_CONFIG,
                   "[grpc] admin_mtls needs tls_client_ca (mutual TLS)");
      return FALSE;
    }
  return TRUE;
}

gboolean
vps_grpc_server_start (VpsGrpcServer *server, GError **error)
{
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (server->daemon);

  g_return_val_if_fail (vps_daemon_n_workers (server->daemon) > 0, FALSE);
  if (!check_config (cfg, error) || !vps_grpc_reflect_load (server, error))
    return FALSE;
  server->admin_mtls = vps_config_get_bool (cfg, "grpc", "admin_mtls");
  server->sessions
      = vps_grpc_sessions_new ((guint)vps_config_get_int (cfg, "grpc", "max_sessions"),
                               vps_config_get_duration_ms (cfg, "grpc", "session_timeout") * 1000);
  if (vps_config_has_key (cfg, "grpc", "listen"))
    {
      server->core = start_core (server, cfg, "grpc", vps_config_get_string (cfg, "grpc", "listen"),
                                 &server->port, error);
      if (server->core == NULL)
        return FALSE;
    }
  if (vps_config_has_key (cfg, "grpc", "admin_listen"))
    {
      server->admin_core = start_core (server, cfg, "grpc-admin",
                                       vps_config_get_string (cfg, "grpc", "admin_listen"),
                                       &server->admin_port, error);
      if (server->admin_core == NULL)
        return FALSE;
    }
  server->tick = g_timeout_add (VPS_GRPC_TICK_MS, on_tick, server);
  return TRUE;
}

int
vps_grpc_server_get_port (VpsGrpcServer *server)
{
  return server->port;
}

int
vps_grpc_server_get_admin_port (VpsGrpcServer *server)
{
  return server->admin_port;
}

void
vps_grpc_server_free (VpsGrpcServer *server)
{
  if (server == NULL)
    return;
  if (server->tick != 0)
    g_source_remove (server->tick);
  g_clear_pointer (&server->core, vps_grpc_core_free);
  g_clear_pointer (&server->admin_core, vps_grpc_core_free);
  g_clear_pointer (&server->sessions, vps_grpc_sessions_free);
  vps_grpc_reflect_clear (server);
  g_mutex_clear (&server->stats_lock);
  g_free (server->counters);
  g_free (server);
}
