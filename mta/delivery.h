/* SPDX-License-Identifier: MIT
 *
 * delivery.h — vsmtpd's queue runner and local delivery agent.
 *
 * Every committed message (handed over with vps_delivery_submit(), found in
 * incoming/ at start, or due again at a periodic scan every [queue]
 * run_interval) is delivered by a pool of [queue] delivery_threads threads:
 * for each recipient still pending or deferred the `delivery` stage of the
 * rules picks the route (`deliver maildir|mbox PATH`, relay, mx), or
 * [delivery] default when the rules decide nothing; local routes are
 * delivered at once (mta/local.h) and the recipient marked delivered or
 * failed; remote routes (mx, relay) go out through mta/delivery-remote.h
 * (delivered, failed or deferred per recipient); `hold` moves the message
 * to hold/.  After an attempt, deferred recipients past [queue] lifetime
 * fail (4.4.7); the recipients that failed in it get one failure DSN
 * (mta/bounce.h) queued to the sender — never to <> — before the envelope
 * records them, and a message whose DSN can be neither built nor queued
 * goes to dead/.  The next attempt is [queue] retry_min × 2^(attempts-1)
 * later, at most retry_max.  The envelope is updated durably after each
 * attempt and removed when every recipient is done, so a crash between a
 * delivery and its record gives a duplicate, never a loss.  A message is
 * never delivered by two threads at once.
 *
 * Log lines carry the queue id:
 *   0005E7F1A2B3C4D5: to=<bob@example.org> delivered maildir=/var/mail/...
 */
#pragma once

#include "mta/queue.h"
#include "vps/daemon.h"

G_BEGIN_DECLS

typedef struct _VpsDelivery VpsDelivery;

/* The routes of [delivery] default and the delivery stage. */
typedef enum
{
  VPS_ROUTE_MAILDIR,
  VPS_ROUTE_MBOX,
  VPS_ROUTE_RELAY,
  VPS_ROUTE_MX,
  VPS_ROUTE_HOLD,
} VpsRouteKind;

/* Parse [delivery] default ("maildir:PATH", "mbox:PATH", "relay:[HOST]:PORT",
 * "mx", "hold"); PATH is resolved against the config file's directory. */
gboolean vps_delivery_parse_route (VpsConfig *cfg, const char *text, VpsRouteKind *kind,
                                   char **target, GError **error);

VpsDelivery *vps_delivery_new (VpsDaemon *daemon, VpsQueue *queue, GError **error);
/* Start the pool and the periodic scan, and queue what the spool holds. */
void vps_delivery_start (VpsDelivery *delivery);
/* A message was committed: deliver it soon (thread-safe). */
void vps_delivery_submit (VpsDelivery *delivery, const char *id);
/* The same with its envelope as committed (taken over), so the delivery
 * does not read back and parse what was just written. */
void vps_delivery_submit_envelope (VpsDelivery *delivery, const char *id, VpsEnvelope *env);
/* Offer every queued message again now, as the periodic scan does (due
 * ones are delivered; `vpsctl queue flush|retry` made them due): SIGUSR1. */
void vps_delivery_scan_now (VpsDelivery *delivery);
/* Wait for deliveries in flight, then stop. */
void vps_delivery_free (VpsDelivery *delivery);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsDelivery, vps_delivery_free)

G_END_DECLS
