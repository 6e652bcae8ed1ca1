/* SPDX-License-Identifier: MIT
 *
 * delivery-notify.c — what the queue runner does after an attempt besides
 * writing the envelope: the next retry time, expiry past [queue]
 * lifetime, the failure DSN to the sender and the one-time delay warning
 * (contract: delivery-private.h; the DSN format: bounce.h).
 *
 * A notification is queued like any message (from <>, to the original
 * sender, never to <>) and committed before the envelope that records it
 * is written: a crash in between sends it twice, never zero times.
 */
#include "mta/delivery-private.h"

#include "mta/bounce.h"
#include "vps/log.h"

/* Exponential backoff: Postfix's minimal/maximal_backoff_time. */
gint64
vps_delivery_retry_delay (VpsConfig *cfg, guint attempts)
{
  gint64 min_ms = vps_config_get_duration_ms (cfg, "queue", "retry_min");
  gint64 max_ms = vps_config_get_duration_ms (cfg, "queue", "retry_max");
  gint64 delay = min_ms;

  for (guint i = 1; i < attempts && delay < max_ms; i++)
    delay *= 2;
  return MIN (delay, MAX (max_ms, min_ms)) * 1000;
}

/* Postfix's maximal_queue_lifetime; the last result stays in the text. */
void
vps_delivery_expire (VpsEnvelope *env, VpsConfig *cfg)
{
  gint64 lifetime = vps_config_get_duration_ms (cfg, "queue", "lifetime") * 1000;
  gint64 now = g_get_real_time ();

  if (env->received == 0 || now - env->received < lifetime)
    return;
  for (guint i = 0; i < env->rcpts->len; i++)
    {
      VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);

      if (r->state != VPS_RCPT_DEFERRED)
        continue;
      vps_notice (env->id, "delivery: to=<%s> failed: message expired", r->address);
      g_autofree char *old = r->result;

      r->state = VPS_RCPT_FAILED;
      r->result
          = g_strdup_printf ("451 4.4.7 message expired; last result: %s", old ? old : "none");
      r->updated = now;
    }
}

/* Queue dsn as a new message from <> to the original sender. */
static char *
queue_bounce (VpsDelivery *delivery, const VpsEnvelope *env, GBytes *dsn, gboolean needs_8bit,
              GError **error)
{
  g_autoptr (VpsEnvelope) benv = vps_envelope_new ();
  VpsQueueWriter *w = vps_queue_writer_new (delivery->queue, error);
  gsize len;
  const guint8 *data = g_bytes_get_data (dsn, &len);

  if (w == NULL)
    return NULL;
  if (!vps_queue_writer_write (w, data, len, error))
    {
      vps_queue_writer_abort (w);
      return NULL;
    }
  benv->id = g_strdup (vps_queue_writer_get_id (w));
  benv->sender = g_strdup ("");
  benv->body = needs_8bit ? g_strdup ("8BITMIME") : NULL;
  benv->smtputf8 = !g_str_is_ascii (env->sender);
  vps_envelope_add_rcpt (benv, env->sender, NULL, 0);
  if (!vps_queue_commit_sync (delivery->queue, w, benv, error))
    return NULL;
  vps_delivery_submit (delivery, benv->id);
  return g_strdup (benv->id);
}

gboolean
vps_delivery_bounce (VpsDelivery *delivery, VpsConfig *cfg, VpsEnvelope *env, GBytes *raw,
                     const gboolean *failed_before)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsEnvelope) copy = NULL;
  g_autoptr (JsonObject) json = NULL;
  g_autoptr (GBytes) dsn = NULL;
  g_autofree char *bid = NULL;
  const char *hostname = vps_config_get_string (cfg, "vsmtpd", "hostname");
  VpsBounceOptions opts = { 0 };
  gboolean needs_8bit = FALSE;
  guint n = 0;

  for (guint i = 0; i < env->rcpts->len; i++)
    {
      VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);

      if (!failed_before[i] && vps_bounce_due (env, r, VPS_BOUNCE_FAILURE))
        n++;
    }
  if (n == 0) /* the sender <> among the reasons: never a bounce to it */
    return TRUE;
  /* the notification covers this attempt's failures only */
  json = vps_envelope_to_json (env);
  copy = vps_envelope_from_json (json, &error);
  if (copy != NULL)
    for (guint i = env->rcpts->len; i > 0; i--)
      if (failed_before[i - 1]
          || !vps_bounce_due (env, g_ptr_array_index (env->rcpts, i - 1), VPS_BOUNCE_FAILURE))
        g_ptr_array_remove_index (copy->rcpts, i - 1);
  opts.reporting_mta = hostname ? hostname : g_get_host_name ();
  opts.now = g_get_real_time ();
  if (copy != NULL)
    dsn = vps_bounce_build_full (copy, raw, VPS_BOUNCE_FAILURE, &opts, &needs_8bit, &error);
  if (dsn != NULL)
    bid = queue_bounce (delivery, env, dsn, needs_8bit, &error);
  if (bid != NULL)
    {
      vps_info (env->id, "delivery: sender non-delivery notification: %s", bid);
      return TRUE;
    }
  if (g_error_matches (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_NOTHING_DUE)
      || g_error_matches (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_NULL_SENDER))
    return TRUE; /* nobody to tell: not a failure */
  vps_warning (env->id, "delivery: no bounce to <%s>: %s; moving to dead/", env->sender,
               error->message);
  g_clear_error (&error);
  if (!vps_queue_update_envelope (delivery->queue, env, &error)
      || !vps_queue_bury (delivery->queue, env->id, &error))
    {
      vps_warning (env->id, "delivery: moving to dead/: %s", error->message);
      return TRUE; /* still in incoming/: tried again at the next attempt */
    }
  return FALSE;
}

void
vps_delivery_warn_delay (VpsDelivery *delivery, VpsConfig *cfg, VpsEnvelope *env, GBytes *raw)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) dsn = NULL;
  g_autofree char *bid = NULL;
  gint64 after = vps_config_get_duration_ms (cfg, "queue", "delay_warning") * 1000;
  gint64 now = g_get_real_time ();
  const char *hostname = vps_config_get_string (cfg, "vsmtpd", "hostname");
  VpsBounceOptions opts = { 0 };
  gboolean needs_8bit = FALSE;

  if (after <= 0 || env->delay_warned || env->received == 0 || now - env->received < after
      || vps_bounce_count_due (env, VPS_BOUNCE_DELAY) == 0)
    return;
  opts.reporting_mta = hostname ? hostname : g_get_host_name ();
  opts.now = now;
  opts.retry_until = env->received + vps_config_get_duration_ms (cfg, "queue", "lifetime") * 1000;
  dsn = vps_bounce_build_full (env, raw, VPS_BOUNCE_DELAY, &opts, &needs_8bit, &error);
  if (dsn != NULL)
    bid = queue_bounce (delivery, env, dsn, needs_8bit, &error);
  if (bid != NULL)
    vps_info (env->id, "delivery: sender delay notification: %s", bid);
  else if (g_error_matches (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_NOTHING_DUE)
           || g_error_matches (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_NULL_SENDER))
    ; /* nobody to warn */
  else
    {
      /* a warning is a courtesy: the message goes on; tried again at the
       * next attempt */
      vps_warning (env->id, "delivery: no delay notification to <%s>: %s", env->sender,
                   error->message);
      return;
    }
  env->delay_warned = TRUE;
}
