/* SPDX-License-Identifier: MIT
 *
 * grpc-server.h — vpsd's gRPC front end: the vps.v1 Policy and Admin
 * services (proto/vps/v1), grpc.health.v1.Health and server reflection
 * (grpc.reflection.v1alpha and v1), on the gRPC C core through
 * vps/grpc-core.h.
 *
 * vps_grpc_server_start() reads [grpc] from the daemon's configuration:
 * `listen` (Policy, Health, reflection; Admin too when `admin_mtls` is set
 * and the client authenticated with a certificate), `admin_listen` (every
 * service including Admin), TLS (`tls_cert`, `tls_key`; `tls_client_ca`
 * for mutual TLS), `max_message_size`, `max_sessions`, `session_timeout`.
 * Calls are answered on the daemon's worker threads (workers must be
 * started); each call in flight counts as a daemon session, so SIGTERM's
 * drain waits for them, and once the drain begins no new call is accepted.
 */
#pragma once

#include <gio/gio.h>

#include "vps/daemon.h"

G_BEGIN_DECLS

#define VPS_GRPC_SERVER_ERROR (vps_grpc_server_error_quark ())
GQuark vps_grpc_server_error_quark (void);

typedef enum
{
  VPS_GRPC_SERVER_ERROR_CONFIG, /* [grpc] keys that do not go together */
  VPS_GRPC_SERVER_ERROR_START,  /* a listener or the descriptor set failed */
} VpsGrpcServerError;

typedef struct _VpsGrpcServer VpsGrpcServer;

/* A server for `daemon` (borrowed: it must outlive the server). */
VpsGrpcServer *vps_grpc_server_new (VpsDaemon *daemon);
/* Bind [grpc] listen (when set) and admin_listen (when set) and serve. */
gboolean vps_grpc_server_start (VpsGrpcServer *server, GError **error);
/* The bound ports (0 when that listener is off). */
int vps_grpc_server_get_port (VpsGrpcServer *server);
int vps_grpc_server_get_admin_port (VpsGrpcServer *server);
/* Free after the workers stopped (vps_daemon_run returned): cancels what
 * is still in flight. */
void vps_grpc_server_free (VpsGrpcServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsGrpcServer, vps_grpc_server_free)

G_END_DECLS
