/* SPDX-License-Identifier: MIT
 *
 * grpc-core.h — the small wrapper around the gRPC C core (libgrpc 1.51):
 * the only module that names grpc_* (the core API has no stability
 * promise, GRPC.md).  It knows HTTP/2 listeners, client channels, calls,
 * messages as bytes and status codes; it knows nothing of protobuf or of
 * the engine.
 *
 * One VpsGrpcCore is one gRPC server (one or more ports, same credentials)
 * with its own completion queue and one thread blocked in it: that thread
 * also drives the network I/O.  It keeps `slots` request_call operations
 * posted, so that many calls can arrive at once, reads each call's
 * messages and hands them to the handler — on the completion-queue thread,
 * so a handler must only hand the call on (g_main_context_invoke) and never
 * block.  Replies may be sent from any thread, at most one send at a time
 * per call.
 *
 * Every call gets exactly one vps_grpc_call_finish(); a streaming handler
 * may first vps_grpc_call_send() replies, after each of which the next
 * client message is read and handed to the handler again (NULL message =
 * the client half-closed).  Messages over the size limit are refused by the
 * core with RESOURCE_EXHAUSTED before the handler sees them.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define VPS_GRPC_ERROR (vps_grpc_error_quark ())
GQuark vps_grpc_error_quark (void);

typedef enum
{
  VPS_GRPC_ERROR_BIND, /* a port could not be bound */
  VPS_GRPC_ERROR_TLS,  /* certificate, key or CA unreadable */
  VPS_GRPC_ERROR_CALL, /* the core refused an operation */
} VpsGrpcError;

/* The gRPC status codes (same numbers as on the wire). */
typedef enum
{
  VPS_GRPC_STATUS_OK = 0,
  VPS_GRPC_STATUS_CANCELLED = 1,
  VPS_GRPC_STATUS_UNKNOWN = 2,
  VPS_GRPC_STATUS_INVALID_ARGUMENT = 3,
  VPS_GRPC_STATUS_DEADLINE_EXCEEDED = 4,
  VPS_GRPC_STATUS_NOT_FOUND = 5,
  VPS_GRPC_STATUS_ALREADY_EXISTS = 6,
  VPS_GRPC_STATUS_PERMISSION_DENIED = 7,
  VPS_GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
  VPS_GRPC_STATUS_FAILED_PRECONDITION = 9,
  VPS_GRPC_STATUS_ABORTED = 10,
  VPS_GRPC_STATUS_OUT_OF_RANGE = 11,
  VPS_GRPC_STATUS_UNIMPLEMENTED = 12,
  VPS_GRPC_STATUS_INTERNAL = 13,
  VPS_GRPC_STATUS_UNAVAILABLE = 14,
  VPS_GRPC_STATUS_DATA_LOSS = 15,
  VPS_GRPC_STATUS_UNAUTHENTICATED = 16,
} VpsGrpcStatus;

/* Limits on what a peer hands us besides the message itself. */
#define VPS_GRPC_MAX_METHOD 256   /* longer method paths are UNIMPLEMENTED */
#define VPS_GRPC_MAX_PEER 256     /* peer description kept for logs */
#define VPS_GRPC_DEFAULT_SLOTS 64 /* request_call operations kept posted */
#define VPS_GRPC_MAX_SLOTS 4096
#define VPS_GRPC_MAX_TLS_FILE (1024 * 1024) /* PEM files larger than this are refused */

typedef struct _VpsGrpcCore VpsGrpcCore;
typedef struct _VpsGrpcCall VpsGrpcCall;

/* Called on the completion-queue thread with each message of `call`
 * (message NULL: the client sent no more, or the call failed).  The call
 * is borrowed: take a reference to keep it. */
typedef void (*VpsGrpcHandler) (VpsGrpcCall *call, GBytes *message, gpointer user_data);

/* TLS for a port: PEM file paths.  client_ca set = mutual TLS: clients must
 * present a certificate signed by it. */
typedef struct
{
  const char *cert;
  const char *key;
  const char *client_ca; /* or NULL */
} VpsGrpcTlsFiles;

/* max_message: largest message received; slots: request_call
 * operations kept posted (0 = VPS_GRPC_DEFAULT_SLOTS). */
VpsGrpcCore *vps_grpc_core_new (const char *name, guint64 max_message, guint slots,
                                VpsGrpcHandler handler, gpointer user_data);
/* Bind HOST:PORT (port 0 = any free port) with `tls` (NULL = plaintext);
 * *out_port the bound port.  Before start only. */
gboolean vps_grpc_core_add_port (VpsGrpcCore *core, const char *hostport,
                                 const VpsGrpcTlsFiles *tls, int *out_port, GError **error);
/* Start serving: the completion-queue thread and the posted slots. */
gboolean vps_grpc_core_start (VpsGrpcCore *core, GError **error);
/* Stop accepting calls; calls in flight go on (the drain).  Idempotent,
 * any thread. */
void vps_grpc_core_shutdown (VpsGrpcCore *core);
/* Calls being answered now (accepted, not yet finished). */
guint vps_grpc_core_n_calls (VpsGrpcCore *core);
/* Shut down, cancel the calls still in flight, wait for the core (bounded)
 * and stop the thread.  Calls still referenced elsewhere stay valid
 * objects; replies on them are dropped. */
void vps_grpc_core_free (VpsGrpcCore *core);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsGrpcCore, vps_grpc_core_free)

VpsGrpcCall *vps_grpc_call_ref (VpsGrpcCall *call);
void vps_grpc_call_unref (VpsGrpcCall *call);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsGrpcCall, vps_grpc_call_unref)

/* "/package.Service/Method" */
const char *vps_grpc_call_get_method (const VpsGrpcCall *call);
/* "ipv4:127.0.0.1:51234" */
const char *vps_grpc_call_get_peer (const VpsGrpcCall *call);
/* The client's deadline on g_get_monotonic_time()'s clock (µs), or
 * G_MAXINT64 when it gave none. */
gint64 vps_grpc_call_get_deadline (const VpsGrpcCall *call);
/* Microseconds left until the deadline (<= 0: passed; G_MAXINT64: none). */
gint64 vps_grpc_call_remaining_us (const VpsGrpcCall *call);
/* g_get_monotonic_time() when the call arrived. */
gint64 vps_grpc_call_get_start (const VpsGrpcCall *call);
/* The client presented a certificate our client CA verified (mutual TLS). */
gboolean vps_grpc_call_peer_authenticated (const VpsGrpcCall *call);
/* The core that accepted the call (borrowed). */
VpsGrpcCore *vps_grpc_call_get_core (const VpsGrpcCall *call);

/* Streaming: send one reply message; when it is out, the next client
 * message is read and handed to the handler.  Any thread. */
void vps_grpc_call_send (VpsGrpcCall *call, GBytes *message);
/* The final answer: `message` (NULL for none; only with OK), the status
 * and its text.  Exactly once per call; any thread. */
void vps_grpc_call_finish (VpsGrpcCall *call, GBytes *message, VpsGrpcStatus status,
                           const char *details);

const char *vps_grpc_status_name (VpsGrpcStatus status);

/* ---- the client side -------------------------------------------------------
 *
 * A VpsGrpcChannel is one HTTP/2 channel to HOST:PORT (connected lazily,
 * reconnected by the core after a failure).  Unary calls on it complete on
 * one process-wide completion-queue thread ("grpc-client", started with the
 * first channel and kept for the life of the process) and are handed back
 * to the caller's thread-default main context through their GTask.
 *
 * A call that ends with a status other than OK fails with an error in
 * VPS_GRPC_STATUS_ERROR whose code is the VpsGrpcStatus and whose message
 * is the server's details; a cancelled GCancellable cancels the call on the
 * wire and the call fails with G_IO_ERROR_CANCELLED. */

#define VPS_GRPC_STATUS_ERROR (vps_grpc_status_error_quark ())
GQuark vps_grpc_status_error_quark (void);

#define VPS_GRPC_CLIENT_MAX_TARGET 512 /* HOST:PORT longer than this is refused */

typedef struct _VpsGrpcChannel VpsGrpcChannel;

/* TLS for a channel: PEM file paths.  ca NULL = the core's default roots;
 * cert + key = a client certificate (mutual TLS); server_name = the name
 * the server's certificate must carry when it is not the target's host. */
typedef struct
{
  const char *ca;
  const char *cert;
  const char *key;
  const char *server_name;
} VpsGrpcClientTls;

/* target "HOST:PORT"; tls NULL = plaintext; max_message: largest reply
 * accepted (bigger ones fail with RESOURCE_EXHAUSTED).  Errors:
 * VPS_GRPC_ERROR_TLS (a file unreadable), VPS_GRPC_ERROR_CALL. */
VpsGrpcChannel *vps_grpc_channel_new (const char *target, const VpsGrpcClientTls *tls,
                                      guint64 max_message, GError **error);
VpsGrpcChannel *vps_grpc_channel_ref (VpsGrpcChannel *channel);
/* Calls in flight go on after the last reference is gone. */
void vps_grpc_channel_unref (VpsGrpcChannel *channel);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsGrpcChannel, vps_grpc_channel_unref)
const char *vps_grpc_channel_get_target (const VpsGrpcChannel *channel);

/* One unary call of `method` ("/pkg.Service/Method") with `request` as the
 * message; timeout_us > 0 is the call's deadline (sent to the server), <= 0
 * none.  Completes on the caller's thread-default main context; with a
 * NULL callback nobody waits: the outcome is dropped on the queue's thread
 * (fire and forget, from any thread, with or without a running loop). */
void vps_grpc_channel_call_async (VpsGrpcChannel *channel, const char *method, GBytes *request,
                                  gint64 timeout_us, GCancellable *cancellable,
                                  GAsyncReadyCallback callback, gpointer user_data);
/* The reply message, or NULL + error. */
GBytes *vps_grpc_channel_call_finish (VpsGrpcChannel *channel, GAsyncResult *result,
                                      GError **error);
/* The same, blocking the calling thread (command-line tools). */
GBytes *vps_grpc_channel_call_sync (VpsGrpcChannel *channel, const char *method, GBytes *request,
                                    gint64 timeout_us, GCancellable *cancellable, GError **error);

G_END_DECLS
