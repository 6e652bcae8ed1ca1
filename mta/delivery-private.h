/* SPDX-License-Identifier: MIT
 *
 * delivery-private.h — what the queue runner (delivery.c: passes, pool,
 * scan) and its notifications (delivery-notify.c: retry times, expiry,
 * bounces, delay warnings) share.
 */
#pragma once

#include "mta/delivery-remote.h"
#include "mta/delivery.h"

G_BEGIN_DECLS

struct _VpsDelivery
{
  VpsDaemon *daemon;
  VpsQueue *queue;
  GThreadPool *pool;
  GMutex lock;
  GCond cond;
  GHashTable *in_flight; /* id → GINT_TO_POINTER (run again when done) */
  GThread *scanner;
  gboolean stopping;
  guint remote_active; /* passes handed to the remote thread (under lock) */
  VpsRemote *remote;   /* the SMTP client's thread (delivery-remote.c) */
};

/* When the next attempt is due after `attempts` attempts: [queue]
 * retry_min × 2^(attempts-1), at most retry_max, in µs from now. */
gint64 vps_delivery_retry_delay (VpsConfig *cfg, guint attempts);
/* Deferred recipients of a message older than [queue] lifetime fail
 * (4.4.7, the last result quoted). */
void vps_delivery_expire (VpsEnvelope *env, VpsConfig *cfg);
/* One failure DSN for the recipients that failed in this attempt
 * (failed_before[i]: recipient i had failed before it).  FALSE when the
 * message went to dead/ instead (no DSN could be built or queued). */
gboolean vps_delivery_bounce (VpsDelivery *delivery, VpsConfig *cfg, VpsEnvelope *env, GBytes *raw,
                              const gboolean *failed_before);
/* The delay warning ([queue] delay_warning): once per message, when it
 * has been queued that long and recipients due for a DELAY notification
 * are deferred; env->delay_warned records it (the caller writes the
 * envelope). */
void vps_delivery_warn_delay (VpsDelivery *delivery, VpsConfig *cfg, VpsEnvelope *env, GBytes *raw);

G_END_DECLS
