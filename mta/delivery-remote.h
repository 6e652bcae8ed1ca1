/* SPDX-License-Identifier: MIT
 *
 * delivery-remote.h — remote delivery for vsmtpd's queue runner: the
 * recipients of one message routed `mx` or `relay` are grouped by
 * destination (the recipient domain for mx, the relay target for relay),
 * the destination resolved (RFC 5321 §5.1: MX by preference, A/AAAA when
 * the domain has no MX, RFC 7505 null MX) and the message sent with
 * mta/smtp-out.h, host after host while the result says try_next.
 *
 * Outcomes per recipient, written into its VpsQueueRcpt (state, result):
 *   2xx at the end of data          DELIVERED
 *   5xx (or a permanent local one)  FAILED
 *   4xx, transport failure          DEFERRED (after every host was tried
 *                                   when the failure concerned the host)
 *   NXDOMAIN                        FAILED  "550 5.1.2 ..."
 *   null MX (RFC 7505)              FAILED  "556 5.1.10 ..."
 *   DNS temporary failure           DEFERRED "451 4.4.3 ..."
 * TLS ([delivery] tls_policy, tls_ca, tls_policy_map) and AUTH
 * ([delivery] relay_auth_file) per destination: a domain in the map
 * matches MX delivery to it, "[host]:port" (or "host:port") a relay
 * target; verify checks the certificate against the MX host name (the
 * relay host for a relay).  Credentials go to relay targets only, never
 * with policy none, and smtp-out sends them only inside TLS (a "may"
 * session without TLS is refused with 4.7.0 rather than sending them in
 * the clear).  The map files are read at every vps_remote_deliver (they
 * are small; an edit takes effect without a reload); one that does not
 * load defers every remote recipient with its FILE:LINE error.
 * A server's reply is stored as vps_bounce_remote_result() makes it
 * ("host NAME[ADDR] said: REPLY"), so that a DSN quotes it as such.
 *
 * Connections: an SMTP session in progress holds a slot; at most
 * [delivery] max_connections in all and destination_concurrency per
 * destination (recipient domain or relay target).  Recipients whose
 * destination has no free slot wait for one, oldest first, so a slow
 * destination delays its own mail only.  Idle connections kept for reuse
 * (mta/smtp-out.h) hold no slot.
 *
 * Threads: one "vsmtpd-remote" thread runs every SMTP session and DNS
 * query on its own main loop; vps_remote_deliver_async() hands it a
 * message and returns; its done function runs on that thread when every
 * recipient has its new state.  See delivery-remote.c for why.
 */
#pragma once

#include "mta/queue.h"
#include "vps/config.h"

G_BEGIN_DECLS

/* Addresses tried for one destination in one attempt (Postfix's
 * smtp_mx_address_limit is 5). */
#define VPS_REMOTE_MAX_ADDRESSES 5
/* MX hosts of one domain looked at (the resolver reads at most
 * VPS_RESOLVER_MAX_ANSWERS records anyway). */
#define VPS_REMOTE_MAX_HOSTS 10
/* A relay target "[host]:port" as the config or a rule gives it. */
#define VPS_REMOTE_MAX_TARGET 300

/* tls_policy_map and relay_auth_file: size, line and entry limits. */
#define VPS_REMOTE_MAX_MAP_SIZE (1024 * 1024)
#define VPS_REMOTE_MAX_MAP_LINE 1024
#define VPS_REMOTE_MAX_MAP_ENTRIES 10000

#define VPS_REMOTE_ERROR (vps_remote_error_quark ())
GQuark vps_remote_error_quark (void);

typedef enum
{
  VPS_REMOTE_ERROR_MAP,  /* a map file does not load: "FILE:LINE: ..." */
  VPS_REMOTE_ERROR_MODE, /* relay_auth_file is accessible by group or others */
} VpsRemoteError;

typedef struct _VpsRemote VpsRemote;

/* One recipient to deliver: rcpt is written by vps_remote_deliver. */
typedef struct
{
  VpsQueueRcpt *rcpt;
  gboolean relay;     /* FALSE: mx */
  const char *target; /* relay: "[host]:port", "host:port", "[host]" or "host" */
} VpsRemoteRcpt;

/* Start the remote delivery thread. */
VpsRemote *vps_remote_new (void);
/* Interrupt every delivery in flight (their recipients are deferred) and
 * every one started afterwards: for shutdown.  Thread-safe. */
void vps_remote_cancel (VpsRemote *remote);
/* Stop the thread; no delivery may be in progress (every done called). */
void vps_remote_free (VpsRemote *remote);

typedef void (*VpsRemoteDoneFunc) (gpointer user_data);

/* Deliver rcpts (VpsRemoteRcpt*) of env, message raw, under cfg (cfg, raw
 * and rcpts are referenced; env and the VpsQueueRcpt it holds must stay
 * until done): done(user_data) is called on the remote thread when every
 * recipient has its new state — at once, on the caller's thread, when
 * rcpts is empty.  The caller must not touch the recipients meanwhile.
 * Call from any thread but the remote one. */
void vps_remote_deliver_async (VpsRemote *remote, VpsConfig *cfg, const VpsEnvelope *env,
                               GBytes *raw, GPtrArray *rcpts, VpsRemoteDoneFunc done,
                               gpointer user_data);
/* The same, blocking until done. */
void vps_remote_deliver (VpsRemote *remote, VpsConfig *cfg, const VpsEnvelope *env, GBytes *raw,
                         GPtrArray *rcpts);

/* Split a relay target into host and port (25 when absent); *mx_lookup
 * is FALSE for a bracketed host.  FALSE on a malformed target. */
gboolean vps_remote_parse_target (const char *target, char **host, guint16 *port,
                                  gboolean *mx_lookup);

/* Load [delivery] tls_policy_map and relay_auth_file of cfg as delivery
 * would: for --check and start-up, so that a bad file is refused with
 * FILE:LINE before any message waits on it. */
gboolean vps_remote_check_config (VpsConfig *cfg, GError **error);

G_END_DECLS
