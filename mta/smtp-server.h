/* SPDX-License-Identifier: MIT
 *
 * smtp-server.h — vsmtpd's SMTP listeners: one per address of [vsmtpd]
 * listen (role mx), listen_submission (submission: AUTH required) and
 * listen_submissions (implicit TLS, AUTH required), accepting on every
 * worker of the daemon.
 *
 * At accept the server enforces the connection limits before a session
 * exists (draining, max_connections, max_connections_per_ip,
 * connection_rate_per_ip, with limit_exceptions exempt): the client gets
 * one 421 4.7.0 line and the socket closes.  Each accepted connection runs
 * a session (smtp-session.c) on the worker that accepted it; sessions hand
 * committed messages to the delivery runner (delivery.h).
 *
 * The TLS contexts (per role) and the password file are built at start
 * from the configuration; any error there refuses the start with
 * FILE:LINE: [group] key: messages.
 */
#pragma once

#include "mta/delivery.h"
#include "mta/queue.h"
#include "vps/daemon.h"

G_BEGIN_DECLS

typedef struct _VpsSmtpServer VpsSmtpServer;

VpsSmtpServer *vps_smtp_server_new (VpsDaemon *daemon, VpsQueue *queue, VpsDelivery *delivery);
/* Build what the listeners need from the config (TLS contexts, password
 * file, limit exceptions): FILE:LINE: [group] key: errors.  `vsmtpd
 * --check` stops here. */
gboolean vps_smtp_server_prepare (VpsSmtpServer *server, GError **error);
/* Prepare, then bind every configured listener (workers must be running). */
gboolean vps_smtp_server_start (VpsSmtpServer *server, GError **error);
guint vps_smtp_server_n_sessions (VpsSmtpServer *server);
void vps_smtp_server_free (VpsSmtpServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsSmtpServer, vps_smtp_server_free)

G_END_DECLS
