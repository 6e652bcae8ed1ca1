/* SPDX-License-Identifier: MIT
 *
 * session.h — the engine's model of one SMTP connection (VpsSession) and of
 * one message inside it (VpsTxn).
 *
 * Both are reference-counted (atomic) and are filled by the front ends
 * (milter, policy, gRPC, vsmtpd) and by the offline simulation through the
 * setters below; the engine reads them while it runs a stage.  A session and
 * its transactions live on one worker thread: they are not locked, only
 * their reference counts are atomic (a connector may finish on a pool
 * thread, but it completes back on the worker's main context).
 *
 * Strings passed to setters are copied.  Strings returned by getters are
 * owned by the object and stay valid until the next setter of the same value
 * or vps_txn_reset().  Addresses are stored as given, without the angle
 * brackets; the null reverse path is "".
 */
#pragma once

#include <glib.h>
#include "rules/rules.h"
#include "vps/message.h"
#include "vps/modify.h"

G_BEGIN_DECLS

/* Named limits on what the front ends hand us from the wire. */
#define VPS_SESSION_MAX_MACROS 256     /* milter macros kept per session */
#define VPS_SESSION_MAX_DNS_CACHE 1024 /* DNS answers cached per session */
#define VPS_TXN_MAX_PARAMS 32          /* ESMTP parameters per MAIL/RCPT */

typedef struct _VpsSession VpsSession;
typedef struct _VpsTxn VpsTxn;
typedef struct _VpsConnectorResult VpsConnectorResult; /* vps/connector.h */
typedef struct _VpsStageResult VpsStageResult;         /* vps/engine.h */

/* ---- session -------------------------------------------------------------- */

/* A new session with a fresh id (12 upper-case hex digits, unique in the
 * process, increasing, like Postfix queue ids). */
VpsSession *vps_session_new (void);
VpsSession *vps_session_ref (VpsSession *session);
void vps_session_unref (VpsSession *session);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsSession, vps_session_unref)

const char *vps_session_get_id (const VpsSession *session);

/* ip is a textual address ("192.0.2.1", "2001:db8::1"); ptr the verified
 * reverse name or NULL/"" when none. */
void vps_session_set_client (VpsSession *session, const char *ip, guint16 port, const char *ptr);
const char *vps_session_get_client_ip (const VpsSession *session); /* "" when unset */
guint16 vps_session_get_client_port (const VpsSession *session);
const char *vps_session_get_client_ptr (const VpsSession *session);
void vps_session_set_server (VpsSession *session, const char *ip, guint16 port, const char *name);
const char *vps_session_get_server_ip (const VpsSession *session);
guint16 vps_session_get_server_port (const VpsSession *session);
const char *vps_session_get_server_name (const VpsSession *session);

void vps_session_set_helo (VpsSession *session, const char *helo);
const char *vps_session_get_helo (const VpsSession *session);

void vps_session_set_tls (VpsSession *session, gboolean active, const char *version,
                          const char *cipher, const char *peer_subject);
gboolean vps_session_get_tls_active (const VpsSession *session);
const char *vps_session_get_tls_version (const VpsSession *session);
const char *vps_session_get_tls_cipher (const VpsSession *session);
const char *vps_session_get_tls_peer_subject (const VpsSession *session);

void vps_session_set_auth (VpsSession *session, gboolean authenticated, const char *user,
                           const char *mechanism);
gboolean vps_session_get_authenticated (const VpsSession *session);
const char *vps_session_get_auth_user (const VpsSession *session);
const char *vps_session_get_auth_mechanism (const VpsSession *session);

/* Milter macros, by name as the MTA sends it ("{auth_authen}", "i").  Beyond
 * VPS_SESSION_MAX_MACROS distinct names new ones are dropped (FALSE). */
gboolean vps_session_set_macro (VpsSession *session, const char *name, const char *value);
const char *vps_session_get_macro (const VpsSession *session, const char *name);

/* The end of a session, for connectors that keep state for its lifetime
 * (the milter connector keeps one connection per session and must send QUIT
 * when the SMTP session ends, as an MTA does).  `func (data)` runs once, on
 * the thread that drops the last reference, when the session is freed; it
 * must not touch the session.  At most VPS_SESSION_MAX_END_NOTIFIES per
 * session: beyond, FALSE and nothing is registered. */
#define VPS_SESSION_MAX_END_NOTIFIES 64
gboolean vps_session_add_end_notify (VpsSession *session, GDestroyNotify func, gpointer data);

/* concurrency(): the shared-state keys (namespaced) this session is a member
 * of, so that its end can leave them (vps/engine-state.c registers the end
 * notify that does).  TRUE when `key` is new and was added; FALSE when it is
 * known or VPS_SESSION_MAX_JOINED keys are joined already. */
#define VPS_SESSION_MAX_JOINED 16
gboolean vps_session_join (VpsSession *session, const char *key);
/* The joined keys (char*), NULL before the first join; borrowed (an end
 * notify takes its own reference with g_ptr_array_ref). */
GPtrArray *vps_session_get_joined (const VpsSession *session);

/* accept_all given at connect or helo covers the whole session. */
void vps_session_set_accept_all (VpsSession *session, gboolean accept_all);
gboolean vps_session_get_accept_all (const VpsSession *session);

/* The per-session DNS answer cache (used by vps/dns.c): key is
 * "<kind>:<name>".  lookup returns FALSE when not cached. */
gboolean vps_session_dns_cache_lookup (const VpsSession *session, const char *key,
                                       gboolean *answer);
void vps_session_dns_cache_store (VpsSession *session, const char *key, gboolean answer);

/* ---- transaction ---------------------------------------------------------- */

/* One message of `session` (holds a reference on it).  Its id is a fresh id
 * like the session's; its queue id is unset until vps_txn_set_queue_id(). */
VpsTxn *vps_txn_new (VpsSession *session);
VpsTxn *vps_txn_ref (VpsTxn *txn);
void vps_txn_unref (VpsTxn *txn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsTxn, vps_txn_unref)

VpsSession *vps_txn_get_session (VpsTxn *txn); /* borrowed */
const char *vps_txn_get_id (const VpsTxn *txn);

/* RSET / milter ABORT: forget everything about the message (sender,
 * recipients, message, results, modifications, rule variables, decisions,
 * transaction accept_all); the session stays. */
void vps_txn_reset (VpsTxn *txn);

/* MAIL FROM: address without brackets ("" for <>), and its ESMTP
 * parameters as "KEYWORD=value" or "KEYWORD" strings (NULL-terminated or
 * NULL); at most VPS_TXN_MAX_PARAMS are kept. */
void vps_txn_set_sender (VpsTxn *txn, const char *address, const char *const *params);
const char *vps_txn_get_sender (const VpsTxn *txn); /* NULL before MAIL */
/* The value of a MAIL parameter (keyword case-insensitive); "" for a
 * parameter without value, NULL when absent. */
const char *vps_txn_get_sender_param (const VpsTxn *txn, const char *keyword);

/* The recipient the rcpt stage is checking, or the delivery stage
 * delivering.  vps_txn_accept_rcpt() appends it to the accepted list (the
 * front end calls it once the rcpt stage did not refuse it);
 * vps_txn_add_rcpt() appends any address directly. */
void vps_txn_set_rcpt (VpsTxn *txn, const char *address, const char *const *params);
const char *vps_txn_get_rcpt (const VpsTxn *txn); /* NULL when none */
const char *vps_txn_get_rcpt_param (const VpsTxn *txn, const char *keyword);
void vps_txn_accept_rcpt (VpsTxn *txn);
/* ESMTP parameters as a new NULL-terminated vector (empty when none): of
 * MAIL, and of the recipient being checked (i < 0) or of the i-th accepted
 * one.  For connectors that pass the envelope on (milter MAIL/RCPT). */
char **vps_txn_dup_sender_params (const VpsTxn *txn);
char **vps_txn_dup_rcpt_params (const VpsTxn *txn, gssize i);
void vps_txn_add_rcpt (VpsTxn *txn, const char *address, const char *const *params);
/* NULL-terminated, owned by the txn; n may be NULL. */
const char *const *vps_txn_get_rcpts (const VpsTxn *txn, gsize *n);

/* The message, at data (also sets the size). */
void vps_txn_set_message (VpsTxn *txn, VpsMessage *message);
VpsMessage *vps_txn_get_message (const VpsTxn *txn); /* borrowed, NULL before data */
/* The size alone (policy END-OF-MESSAGE knows only the size). */
void vps_txn_set_size (VpsTxn *txn, guint64 size);
guint64 vps_txn_get_size (const VpsTxn *txn);

void vps_txn_set_queue_id (VpsTxn *txn, const char *queue_id);
const char *vps_txn_get_queue_id (const VpsTxn *txn);
void vps_txn_set_delivery_attempts (VpsTxn *txn, guint attempts);
guint vps_txn_get_delivery_attempts (const VpsTxn *txn);

/* accept_all given at mail or later covers this transaction only. */
void vps_txn_set_accept_all (VpsTxn *txn, gboolean accept_all);
gboolean vps_txn_get_accept_all (const VpsTxn *txn);

/* The RulesState of `set` variables, created on first use for `program`
 * (a txn that outlives a reload keeps the state of the program it started
 * with: the engine a session started with runs all its stages). */
RulesState *vps_txn_get_rules_state (VpsTxn *txn, RulesProgram *program);

/* Connector results of this transaction, by connector name (a later call of
 * the same connector replaces the earlier result).  set takes a reference. */
void vps_txn_set_connector_result (VpsTxn *txn, const char *connector, VpsConnectorResult *result);
VpsConnectorResult *vps_txn_get_connector_result (const VpsTxn *txn, const char *connector);

/* Accumulated modifications (in the order given); add takes ownership. */
void vps_txn_add_modification (VpsTxn *txn, VpsModification *mod);
GPtrArray *vps_txn_get_modifications (const VpsTxn *txn); /* of VpsModification*, borrowed */

/* Per-stage results in the order the stages ran (for reports); add takes a
 * reference. */
void vps_txn_add_stage_result (VpsTxn *txn, VpsStageResult *result);
GPtrArray *vps_txn_get_stage_results (const VpsTxn *txn); /* of VpsStageResult*, borrowed */

/* The quarantine a `quarantine` verdict named (NULL when none). */
void vps_txn_set_quarantine (VpsTxn *txn, const char *name);
const char *vps_txn_get_quarantine (const VpsTxn *txn);

/* Delivery decisions of the delivery stage (`deliver ...`), per recipient. */
typedef enum
{
  VPS_DELIVER_MAILDIR,
  VPS_DELIVER_MBOX,
  VPS_DELIVER_RELAY,
  VPS_DELIVER_MX,
} VpsDeliverKind;

typedef struct
{
  VpsDeliverKind kind;
  char *rcpt;   /* the recipient being delivered, or NULL */
  char *target; /* path template / "[host]:port"; NULL for mx */
  char *rule;
} VpsDeliverDecision;

const char *vps_deliver_kind_name (VpsDeliverKind kind);
void vps_txn_add_deliver (VpsTxn *txn, VpsDeliverKind kind, const char *rcpt, const char *target,
                          const char *rule);
GPtrArray *vps_txn_get_delivers (const VpsTxn *txn); /* of VpsDeliverDecision*, borrowed */

/* Exports asked for by `export json|raw NAME` (done or, in a dry run, only
 * reported). */
typedef struct
{
  gboolean raw; /* raw (.eml) or json */
  char *name;   /* export name */
  char *path;   /* the file written, NULL in a dry run or on failure */
  char *rule;
} VpsExportRecord;

void vps_txn_add_export (VpsTxn *txn, gboolean raw, const char *name, const char *path,
                         const char *rule);
GPtrArray *vps_txn_get_exports (const VpsTxn *txn); /* of VpsExportRecord*, borrowed */

/* Dry run (vpsctl run without --apply): exports are reported, not written. */
void vps_txn_set_dry_run (VpsTxn *txn, gboolean dry_run);
gboolean vps_txn_get_dry_run (const VpsTxn *txn);

G_END_DECLS
