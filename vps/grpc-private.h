/* SPDX-License-Identifier: MIT
 *
 * grpc-private.h — what the modules of the gRPC front end share:
 * grpc-server.c (listeners, dispatch, health, stats), grpc-policy.c
 * (Policy service and the session table), grpc-admin.c (Admin service),
 * grpc-reflect.c (server reflection), grpc-convert.c (engine → vps.v1).
 *
 * A VpsGrpcReq is one unary call on its way through a worker: it owns the
 * call reference, the request bytes and the unpacked request, and ends
 * with exactly one vps_grpc_req_reply() / vps_grpc_req_fail().
 */
#pragma once

#include <protobuf-c/protobuf-c.h>

#include "proto/vps/v1/admin.pb-c.h"
#include "proto/vps/v1/health.pb-c.h"
#include "proto/vps/v1/policy.pb-c.h"
#include "proto/vps/v1/reflection_v1alpha.pb-c.h"
#include "vps/engine.h"
#include "vps/grpc-core.h"
#include "vps/grpc-server.h"

G_BEGIN_DECLS

/* Named limits on request fields (the whole request is bounded by
 * [grpc] max_message_size). */
#define VPS_GRPC_MAX_SESSION_ID 128
#define VPS_GRPC_MAX_ADDRESS 256   /* envelope address, as RFC 5321's path limit */
#define VPS_GRPC_MAX_NAME 255      /* helo, host, macro and header names */
#define VPS_GRPC_MAX_VALUE 4096    /* macro values, TLS and AUTH strings */
#define VPS_GRPC_MAX_HEADERS 10000 /* headers of a ParsedMessage */
#define VPS_GRPC_MAX_MACROS 256    /* macros per request */
#define VPS_GRPC_MAX_RCPTS 1000    /* Evaluate recipients */
#define VPS_GRPC_MAX_LIST 100000   /* ListQuarantine entries in one reply */

typedef struct _VpsGrpcSessions VpsGrpcSessions;
typedef struct _VpsGrpcReq VpsGrpcReq;

typedef enum
{
  VPS_GRPC_SVC_POLICY,
  VPS_GRPC_SVC_ADMIN,
  VPS_GRPC_SVC_HEALTH,
  VPS_GRPC_SVC_REFLECTION,
} VpsGrpcService;

/* Where a method runs: a worker (most), the main context (reload, like
 * SIGHUP), or right on the completion-queue thread (pure and cheap). */
typedef enum
{
  VPS_GRPC_RUN_WORKER,
  VPS_GRPC_RUN_MAIN,
  VPS_GRPC_RUN_INLINE,
} VpsGrpcRunOn;

typedef struct
{
  const char *path; /* "/vps.v1.Policy/Check" */
  VpsGrpcService service;
  VpsGrpcRunOn run_on;
  const ProtobufCMessageDescriptor *request; /* NULL: the method reads its bytes itself */
  void (*func) (VpsGrpcReq *req);
} VpsGrpcMethod;

/* Method counters (MethodStats). */
typedef struct
{
  guint64 calls;
  guint64 errors;
  guint64 total_us;
  guint64 max_us;
} VpsGrpcMethodCounters;

struct _VpsGrpcServer
{
  VpsDaemon *daemon;
  VpsGrpcCore *core;       /* [grpc] listen, or NULL */
  VpsGrpcCore *admin_core; /* [grpc] admin_listen, or NULL */
  int port, admin_port;
  gboolean admin_mtls;
  VpsGrpcSessions *sessions;
  guint tick;       /* drain / expiry timer on the main context */
  gint next_worker; /* atomic round robin */
  gint shut;        /* atomic: the cores stopped accepting */
  guint ticks;

  GMutex stats_lock;
  VpsGrpcMethodCounters *counters; /* one per method table entry */

  /* reflection index (grpc-reflect.c) */
  GBytes *descriptor_set;
  GPtrArray *files;         /* GBytes*: FileDescriptorProto each */
  GPtrArray *file_names;    /* char* */
  GPtrArray *file_deps;     /* GPtrArray* of char* per file */
  GHashTable *symbol_file;  /* symbol → index+1 */
  GPtrArray *service_names; /* char* */
};

struct _VpsGrpcReq
{
  VpsGrpcServer *server;
  VpsGrpcCall *call;
  const VpsGrpcMethod *method;
  guint method_index;
  GBytes *message;
  ProtobufCMessage *request; /* unpacked with method->request */
  guint worker;              /* set by routing; G_MAXUINT = round robin */
  GMainContext *context;     /* where it runs */
  GCancellable *cancellable; /* cancelled at the call's deadline */
  GSource *deadline_source;
  gpointer data; /* the method's own state */
  GDestroyNotify data_free;
};

/* ---- grpc-server.c ---------------------------------------------------------- */

/* Reply OK with `reply` packed; frees the request. */
void vps_grpc_req_reply (VpsGrpcReq *req, const ProtobufCMessage *reply);
/* Reply with an error status; details printf-style.  Frees the request. */
void vps_grpc_req_fail (VpsGrpcReq *req, VpsGrpcStatus status, const char *fmt, ...)
    G_GNUC_PRINTF (3, 4);
/* Arm req->cancellable to be cancelled at the call's deadline, on the
 * request's context.  FALSE (and DEADLINE_EXCEEDED sent) when it passed. */
gboolean vps_grpc_req_arm_deadline (VpsGrpcReq *req);
/* The deadline passed (the engine's cancellation was ours). */
gboolean vps_grpc_req_deadline_passed (VpsGrpcReq *req);

/* Pack any protobuf-c message into new bytes. */
GBytes *vps_grpc_pack (const ProtobufCMessage *msg);

const VpsGrpcMethod *vps_grpc_methods (gsize *n);

/* ---- grpc-policy.c ---------------------------------------------------------- */

VpsGrpcSessions *vps_grpc_sessions_new (guint max, gint64 idle_us);
void vps_grpc_sessions_free (VpsGrpcSessions *sessions);
/* Drop sessions idle longer than the timeout; returns how many. */
guint vps_grpc_sessions_expire (VpsGrpcSessions *sessions);
guint vps_grpc_sessions_count (VpsGrpcSessions *sessions);
/* Routing on the completion-queue thread: the worker a Check of this
 * session id runs on (the session's objects live on one thread). */
guint vps_grpc_policy_route (VpsGrpcServer *server, VpsGrpcReq *req);

void vps_grpc_policy_check (VpsGrpcReq *req);
void vps_grpc_policy_evaluate (VpsGrpcReq *req);
void vps_grpc_policy_end_session (VpsGrpcReq *req);

/* ---- grpc-admin.c ----------------------------------------------------------- */

void vps_grpc_admin_reload (VpsGrpcReq *req);
void vps_grpc_admin_stats (VpsGrpcReq *req);
void vps_grpc_admin_list_quarantine (VpsGrpcReq *req);
void vps_grpc_admin_get_quarantined (VpsGrpcReq *req);
void vps_grpc_admin_release_quarantined (VpsGrpcReq *req);
void vps_grpc_admin_delete_quarantined (VpsGrpcReq *req);

/* ---- grpc-reflect.c --------------------------------------------------------- */

/* Index the embedded descriptor set (files, symbols, services). */
gboolean vps_grpc_reflect_load (VpsGrpcServer *server, GError **error);
void vps_grpc_reflect_clear (VpsGrpcServer *server);
/* One ServerReflectionRequest in, one response out (never NULL). */
GBytes *vps_grpc_reflect_answer (VpsGrpcServer *server, GBytes *request);

/* ---- grpc-convert.c --------------------------------------------------------- */

/* Allocations of a reply under construction, freed together. */
typedef struct
{
  GPtrArray *blocks;
} VpsGrpcArena;

void vps_grpc_arena_init (VpsGrpcArena *arena);
void vps_grpc_arena_clear (VpsGrpcArena *arena);
gpointer vps_grpc_arena_alloc (VpsGrpcArena *arena, gsize size);
char *vps_grpc_arena_strdup (VpsGrpcArena *arena, const char *s);

Vps__V1__Stage vps_grpc_stage_to_pb (RulesStage stage);
gboolean vps_grpc_stage_from_pb (int stage, RulesStage *out);
Vps__V1__Verdict vps_grpc_verdict_to_pb (RulesVerdict verdict);
/* Fill `out` (initialised here) from an engine stage result. */
void vps_grpc_stage_result_to_pb (VpsGrpcArena *arena, VpsStageResult *result,
                                  Vps__V1__StageResult *out);
/* The txn's modifications as a new array; *n its length. */
Vps__V1__Modification **vps_grpc_modifications_to_pb (VpsGrpcArena *arena, VpsTxn *txn, size_t *n);

G_END_DECLS
