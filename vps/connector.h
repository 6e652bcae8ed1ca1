/* SPDX-License-Identifier: MIT
 *
 * connector.h — the interface every connector implements (milter, policy,
 * grpc, http, exec, clamav, test), the registry that maps a `type` to its
 * class, and the engine-side wrapper that calls a connector with its
 * timeout, concurrency limit, on_error mapping and counters.
 *
 * A connector class is a static const VpsConnectorClass.  main() registers
 * the classes it links (vps_connector_registry_add); the engine instantiates
 * each `[connector NAME]` group by looking its type up, so it never names a
 * concrete connector.
 *
 * Calling contract for classes:
 *   - create (name, cfg, group, error) validates and reads the type-specific
 *     keys (the wrapper has already checked that no other key is present) and
 *     returns the class's instance data.  Instances are shared by all worker
 *     threads: call_async may run concurrently from several threads.
 *   - call_async (connector, txn, stage, cancellable, callback, user_data)
 *     starts one call on the caller's thread-default main context and
 *     completes there (GTask with a NULL source object is fine); the class
 *     reads its data with vps_connector_get_data (connector).
 *   - call_finish returns a new VpsConnectorResult or NULL + error.  An error
 *     (or a timeout, or a cancellation) becomes the connector's on_error
 *     verdict in the wrapper, never silence.
 *   - a class honours `cancellable` (the wrapper cancels on timeout); a
 *     class that does not still gets its answer dropped at the timeout.
 *
 * Results are atomically reference-counted and immutable once returned.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include "rules/rules.h"
#include "vps/config.h"
#include "vps/modify.h"
#include "vps/session.h"

G_BEGIN_DECLS

#define VPS_CONNECTOR_ERROR (vps_connector_error_quark ())
GQuark vps_connector_error_quark (void);

typedef enum
{
  VPS_CONNECTOR_ERROR_UNKNOWN_TYPE, /* no class registered for `type` */
  VPS_CONNECTOR_ERROR_CONFIG,       /* a class refused its configuration */
  VPS_CONNECTOR_ERROR_TIMEOUT,      /* the call took longer than `timeout` */
  VPS_CONNECTOR_ERROR_FAILED,       /* the peer failed or answered nonsense */
} VpsConnectorError;

#define VPS_CONNECTOR_MAX_CLASSES 64
#define VPS_CONNECTOR_MAX_FIELDS 256 /* result fields kept per call */

/* ---- results -------------------------------------------------------------- */

typedef enum
{
  VPS_FIELD_BOOL,
  VPS_FIELD_INT,
  VPS_FIELD_FLOAT,
  VPS_FIELD_STRING,
  VPS_FIELD_STRV,
  VPS_FIELD_JSON, /* read as NAME.field("a.b"): the path is walked in the node */
} VpsFieldType;

typedef struct
{
  VpsFieldType type;
  union
  {
    gboolean b;
    gint64 i;
    double f;
    char *s;
    char **strv;
    JsonNode *json;
  };
} VpsFieldValue;

struct _VpsConnectorResult
{
  char *connector;          /* name of the connector (set by the wrapper) */
  RulesVerdict verdict;     /* RULES_VERDICT_CONTINUE when it has no opinion */
  guint code;               /* 0 = none: the engine picks the default reply */
  char *enhanced;           /* "5.7.1" or NULL */
  char *text;               /* or NULL */
  char *quarantine;         /* RULES_VERDICT_QUARANTINE: the name, or NULL */
  GHashTable *fields;       /* name → VpsFieldValue*, owned */
  GPtrArray *modifications; /* of VpsModification*, owned */
  gboolean error;           /* the call failed or timed out (on_error applied) */
  char *error_message;      /* or NULL */
  gint64 elapsed_ms;        /* set by the wrapper */
};

VpsConnectorResult *vps_connector_result_new (RulesVerdict verdict);
VpsConnectorResult *vps_connector_result_ref (VpsConnectorResult *result);
void vps_connector_result_unref (VpsConnectorResult *result);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsConnectorResult, vps_connector_result_unref)

void vps_connector_result_set_reply (VpsConnectorResult *result, guint code, const char *enhanced,
                                     const char *text);
/* Fields: a later set of the same name replaces the earlier value; beyond
 * VPS_CONNECTOR_MAX_FIELDS new names are dropped. */
void vps_connector_result_set_bool (VpsConnectorResult *result, const char *name, gboolean b);
void vps_connector_result_set_int (VpsConnectorResult *result, const char *name, gint64 i);
void vps_connector_result_set_float (VpsConnectorResult *result, const char *name, double f);
void vps_connector_result_set_string (VpsConnectorResult *result, const char *name, const char *s);
void vps_connector_result_set_strv (VpsConnectorResult *result, const char *name,
                                    const char *const *strv);
/* Takes ownership of node. */
void vps_connector_result_set_json (VpsConnectorResult *result, const char *name, JsonNode *node);
const VpsFieldValue *vps_connector_result_get_field (const VpsConnectorResult *result,
                                                     const char *name);
/* Takes ownership of mod. */
void vps_connector_result_add_modification (VpsConnectorResult *result, VpsModification *mod);

/* ---- classes -------------------------------------------------------------- */

typedef struct _VpsConnector VpsConnector;

typedef struct
{
  const char *type;             /* the `type =` value: "milter", "test" ... */
  const RulesFieldDecl *fields; /* its own result fields (NAME.field) */
  gsize n_fields;
  gboolean any_field;             /* accept any NAME.field (test connectors) */
  const char *const *config_keys; /* its own keys, NULL-terminated */
  gpointer (*create) (const char *name, VpsConfig *cfg, const char *group, GError **error);
  void (*call_async) (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                      GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
  VpsConnectorResult *(*call_finish) (VpsConnector *connector, GAsyncResult *result,
                                      GError **error);
  void (*free) (gpointer data);
} VpsConnectorClass;

/* The registry (process-wide, thread-safe).  Adding a type twice replaces
 * the earlier class. */
void vps_connector_registry_add (const VpsConnectorClass *klass);
const VpsConnectorClass *vps_connector_registry_lookup (const char *type);

/* ---- instances ------------------------------------------------------------ */

/* Instantiate the connector `decl` of cfg: look its type up (unknown type →
 * VPS_CONNECTOR_ERROR_UNKNOWN_TYPE with "FILE:LINE: [connector NAME] type:
 * ..."), check its keys, create it. */
VpsConnector *vps_connector_new (VpsConfig *cfg, const VpsConfigConnector *decl, GError **error);
VpsConnector *vps_connector_ref (VpsConnector *connector);
void vps_connector_unref (VpsConnector *connector);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsConnector, vps_connector_unref)

const char *vps_connector_get_name (const VpsConnector *connector);
const VpsConnectorClass *vps_connector_get_class (const VpsConnector *connector);
gpointer vps_connector_get_data (const VpsConnector *connector);
gint64 vps_connector_get_timeout_ms (const VpsConnector *connector);
RulesVerdict vps_connector_get_on_error (const VpsConnector *connector);
guint vps_connector_get_concurrency (const VpsConnector *connector); /* 0 = unlimited */

/* One call with everything around it: waits for a slot when `concurrency`
 * calls are already running (FIFO), cancels the call at `timeout`, maps a
 * failure to on_error, sets connector name and elapsed_ms, counts.  finish
 * never fails: it always returns a result (error = TRUE on failure). */
void vps_connector_call_async (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                               GCancellable *cancellable, GAsyncReadyCallback callback,
                               gpointer user_data);
VpsConnectorResult *vps_connector_call_finish (VpsConnector *connector, GAsyncResult *result);

/* The one place a failure becomes a verdict: a result with the connector's
 * on_error verdict, error = TRUE, error_message from `error`, and a warning
 * log line with the session id. */
VpsConnectorResult *vps_connector_result_new_error (const VpsConnector *connector,
                                                    const char *session_id, const GError *error);

/* ---- configuration helpers ------------------------------------------------ */

/* Read the `address` key of a connector group: inet:HOST:PORT (port not 0)
 * or unix:PATH (resolved against the config file's directory).  Sets
 * *address (as written), *host and *port, or *path; all owned by the
 * caller.  Errors are "FILE:LINE: [group] address: ..."; `missing` is the
 * message for an absent key. */
gboolean vps_connector_read_address (VpsConfig *cfg, const char *group, const char *missing,
                                     char **address, char **host, guint16 *port, char **path,
                                     GError **error);

/* ---- per-worker state ----------------------------------------------------- */

/* Connector instances are shared by all worker threads, but connections
 * belong to one event loop: a VpsContextMap keeps one value (a connection
 * pool) per GMainContext, made on first use under a lock.  The value keeps
 * its context alive, so a context's address is never reused as a key while
 * the map holds it.  `make` builds the value for a context, `ref` adds a
 * reference for the caller, `drop` releases the map's own one at free. */
typedef struct _VpsContextMap VpsContextMap;
typedef gpointer (*VpsContextMapMake) (gpointer user_data, GMainContext *context);

VpsContextMap *vps_context_map_new (VpsContextMapMake make, GBoxedCopyFunc ref, GDestroyNotify drop,
                                    gpointer user_data);
/* The value of the calling thread's default context, with a new reference. */
gpointer vps_context_map_get (VpsContextMap *map);
void vps_context_map_free (VpsContextMap *map);

/* Counters since creation (atomic). */
typedef struct
{
  guint64 calls;
  guint64 errors; /* failures and timeouts */
  guint64 timeouts;
  guint64 total_ms;
  guint active; /* running now */
  guint queued; /* waiting for a slot */
} VpsConnectorStats;

void vps_connector_get_stats (const VpsConnector *connector, VpsConnectorStats *out);

/* Load declaration for rules_program_load_*: name plus its class's fields.
 * Valid as long as the connector lives. */
void vps_connector_get_decl (const VpsConnector *connector, RulesConnectorDecl *out);

G_END_DECLS
