/* SPDX-License-Identifier: MIT
 *
 * policy-server.h — vpsd as a Postfix policy service (check_policy_service,
 * SMTPD_POLICY_README): Postfix connects, sends "name=value" requests
 * (proto/policy) and reads one "action=..." per request.
 *
 * vps_policy_server_start() binds [policy] listen on every worker of the
 * daemon (workers must be started).  A connection is kept for as many
 * requests as the MTA sends (Postfix keeps one per smtpd process and reuses
 * it for that process's next SMTP sessions); requests are answered in
 * order, one at a time.  A connection keeps the engine current when it was
 * accepted and is counted with vps_daemon_session_begin/_end for the drain.
 *
 * What a request means (policy-session.c):
 *   - protocol_state → stage: CONNECT → connect, EHLO/HELO → helo, MAIL →
 *     auth (when sasl_username is set and auth has rules) then mail, RCPT →
 *     rcpt, DATA/BDAT → no stage (the message is not there yet),
 *     END-OF-MESSAGE → data with the size only, VRFY/ETRN → DUNNO.  A stage
 *     that was not asked for yet runs first ("catch-up"): with Postfix's
 *     default smtpd_delay_reject = yes the first request of a session is a
 *     RCPT, and connect, helo and mail rules run there, once.
 *   - one SMTP session = one VpsSession, told apart by client and server
 *     address and port; one transaction = one VpsTxn: a MAIL request starts
 *     it, the first request with a non-empty `instance` adopts it, a new
 *     instance or the next session's CONNECT/HELO ends it.  Nothing (rule
 *     variables, connector results, recipients, pending modifications)
 *     outlives its transaction.
 *   - a request identical to the previous one on the connection (Postfix
 *     evaluates check_policy_service once per restriction list: with
 *     smtpd_delay_reject = yes the same RCPT request comes up to four times)
 *     is answered from the previous verdict without running rules again.
 *   - verdicts: accept → OK ([policy] accept_action = dunno: DUNNO),
 *     accept_all → OK, continue → DUNNO ([policy] no_opinion = accept: OK),
 *     reject → "5NN X.Y.Z text", tempfail → "4NN X.Y.Z text", discard →
 *     DISCARD, quarantine → HOLD.  add_header/insert_header → PREPEND and
 *     add_rcpt → BCC, one per reply, sent in replies that would otherwise
 *     be DUNNO (the verdict always wins); what is left when the transaction
 *     ends, and every modification the protocol cannot express, is logged
 *     (a warning once per rule), never silently dropped.
 */
#pragma once

#include <gio/gio.h>

#include "vps/daemon.h"

G_BEGIN_DECLS

#define VPS_POLICY_ERROR (vps_policy_error_quark ())
GQuark vps_policy_error_quark (void);

typedef enum
{
  VPS_POLICY_ERROR_PROTOCOL, /* a request the codec refused, or an unusable one */
  VPS_POLICY_ERROR_TIMEOUT,  /* the MTA stayed silent, or a request took too long */
  VPS_POLICY_ERROR_IO,       /* the socket failed */
} VpsPolicyError;

typedef struct _VpsPolicyServer VpsPolicyServer;

/* A server for `daemon` (borrowed: it must outlive the server). */
VpsPolicyServer *vps_policy_server_new (VpsDaemon *daemon);
/* Listen on `address` ("inet:HOST:PORT" / "unix:PATH") on every worker. */
gboolean vps_policy_server_start (VpsPolicyServer *server, const char *address, GError **error);
/* The bound address (with the real port), NULL before start. */
const char *vps_policy_server_get_address (VpsPolicyServer *server);
/* Connections open right now (atomic read). */
guint vps_policy_server_n_sessions (VpsPolicyServer *server);
/* Requests answered since start (atomic read). */
guint64 vps_policy_server_n_requests (VpsPolicyServer *server);
/* Free after the workers stopped (vps_daemon_run returned). */
void vps_policy_server_free (VpsPolicyServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsPolicyServer, vps_policy_server_free)

G_END_DECLS
