/* SPDX-License-Identifier: MIT
 *
 * milter-server.h — vpsd as a milter: the MTA (Postfix smtpd_milters,
 * Sendmail INPUT_MAIL_FILTER) connects and speaks the milter protocol
 * (version 2..6, proto/milter); every connection is a VpsSession whose
 * stages the engine judges, one VpsTxn per message.
 *
 * vps_milter_server_start() binds [milter] listen on every worker of the
 * daemon (workers must be started).  Sessions run on the worker that
 * accepted them, with non-blocking I/O on its main context; a session keeps
 * the engine current when it was accepted (a reload affects new sessions
 * only) and is counted with vps_daemon_session_begin/_end for the drain.
 *
 * What is negotiated follows the loaded rule set (vps_milter_want): a step
 * with rules gets its event with a reply, a step whose values later rules
 * read gets it without reply (NR_*) when the MTA offers that, the rest is
 * switched off (NO_*); DATA and end of message are always kept (MILTER.md,
 * "The 40 ms stall").
 */
#pragma once

#include <gio/gio.h>

#include "proto/milter/milter.h"
#include "vps/daemon.h"

G_BEGIN_DECLS

#define VPS_MILTER_ERROR (vps_milter_error_quark ())
GQuark vps_milter_error_quark (void);

typedef enum
{
  VPS_MILTER_ERROR_PROTOCOL, /* a packet out of order or not allowed here */
  VPS_MILTER_ERROR_LIMIT,    /* a packet or message over a named limit */
  VPS_MILTER_ERROR_TIMEOUT,  /* the MTA (or a stage) took too long */
  VPS_MILTER_ERROR_IO,       /* the socket failed or the temporary file did */
} VpsMilterError;

typedef struct _VpsMilterServer VpsMilterServer;

/* A server for `daemon` (borrowed: it must outlive the server). */
VpsMilterServer *vps_milter_server_new (VpsDaemon *daemon);
/* Listen on `address` ("inet:HOST:PORT" / "unix:PATH") on every worker. */
gboolean vps_milter_server_start (VpsMilterServer *server, const char *address, GError **error);
/* The bound address (with the real port), NULL before start. */
const char *vps_milter_server_get_address (VpsMilterServer *server);
/* Sessions open right now (atomic read). */
guint vps_milter_server_n_sessions (VpsMilterServer *server);
/* Free after the workers stopped (vps_daemon_run returned). */
void vps_milter_server_free (VpsMilterServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsMilterServer, vps_milter_server_free)

/* What vpsd asks the MTA for with `program` and `cfg` loaded: version 6,
 * the actions the rules can need and the NO_* / NR_* / HDR_LEADSPC bits
 * described above.  The answer to an offer is milter_negotiate_answer()
 * of this.  Pure: for tests and for `vpsctl explain`-like tools. */
void vps_milter_want (RulesProgram *program, VpsConfig *cfg, MilterOptions *want);

G_END_DECLS
