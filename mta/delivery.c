/* SPDX-License-Identifier: MIT
 *
 * delivery.c — vsmtpd's queue runner: a pool of delivery threads, a scan
 * thread that re-offers due messages every [queue] run_interval, and the
 * per-recipient route decision (delivery stage, else [delivery] default).
 *
 * Contract: see delivery.h.  A message id is in `in_flight` from its
 * submission until its thread is done with it, so two threads never work
 * on one message; a submission while it is in flight is remembered and
 * runs again afterwards (a release from hold/ during a scan, say).  The
 * engine's synchronous stage runner is used here on purpose: these are
 * pool threads, not worker loops, and a delivery waits for its disk anyway.
 * Remote recipients are handed, all at once, to the one SMTP client thread
 * (delivery-remote.c says why) and the pool thread waits for their results.
 * A shutdown that interrupts remote sessions does not count as an attempt:
 * the message is due again at once after the restart.
 */
#include "mta/delivery.h"
#include "mta/delivery-postq.h"
#include "mta/delivery-remote.h"

#include <string.h>

#include "mta/bounce.h"
#include "mta/local.h"
#include "vps/log.h"
#include "vps/message.h"

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
  VpsRemote *remote; /* the SMTP client's thread (delivery-remote.c) */
};

/* ---- routes ------------------------------------------------------------------ */

gboolean
vps_delivery_parse_route (VpsConfig *cfg, const char *text, VpsRouteKind *kind, char **target,
                          GError **error)
{
  *target = NULL;
  if (g_str_has_prefix (text, "maildir:") || g_str_has_prefix (text, "mbox:"))
    {
      const char *path = strchr (text, ':') + 1;

      *kind = text[1] == 'a' ? VPS_ROUTE_MAILDIR : VPS_ROUTE_MBOX;
      if (*path == '\0')
        {
          vps_config_error_at (cfg, "delivery", "default", error, "a path is missing after %s",
                               text);
          return FALSE;
        }
      *target = vps_config_resolve_path (cfg, path);
      return TRUE;
    }
  if (g_str_has_prefix (text, "relay:"))
    {
      *kind = VPS_ROUTE_RELAY;
      *target = g_strdup (text + 6);
      return TRUE;
    }
  if (strcmp (text, "mx") == 0)
    {
      *kind = VPS_ROUTE_MX;
      return TRUE;
    }
  if (strcmp (text, "hold") == 0)
    {
      *kind = VPS_ROUTE_HOLD;
      return TRUE;
    }
  vps_config_error_at (cfg, "delivery", "default", error,
                       "expected maildir:PATH, mbox:PATH, relay:[HOST]:PORT, mx or hold");
  return FALSE;
}

static VpsRouteKind
route_from_decision (VpsDeliverKind kind)
{
  switch (kind)
    {
      case VPS_DELIVER_MAILDIR:
        return VPS_ROUTE_MAILDIR;
      case VPS_DELIVER_MBOX:
        return VPS_ROUTE_MBOX;
      case VPS_DELIVER_RELAY:
        return VPS_ROUTE_RELAY;
      case VPS_DELIVER_MX:
      default:
        return VPS_ROUTE_MX;
    }
}

/* ---- one message ------------------------------------------------------------- */

/* What the pool is handed: an id, and the envelope when the caller has it
 * in memory (a fresh commit: no need to read back and parse what was just
 * written). */
typedef struct
{
  char *id;
  VpsEnvelope *env;
} Item;

static void
item_free (gpointer data)
{
  Item *item = data;

  g_free (item->id);
  g_clear_pointer (&item->env, vps_envelope_free);
  g_free (item);
}

static Item *
item_new (const char *id, VpsEnvelope *env)
{
  Item *item = g_new0 (Item, 1);

  item->id = g_strdup (id);
  item->env = env;
  return item;
}

typedef struct
{
  VpsEngine *engine;
  VpsEnvelope *env;
  GBytes *raw;
  VpsSession *session; /* for the delivery stage, when it has rules */
  VpsTxn *txn;
  gboolean hold;
  gboolean quarantined;
  gboolean postq_defer; /* postq deferred the message: no delivery this pass */
} Job;

static void
set_state (VpsQueueRcpt *r, VpsRcptState state, char *result)
{
  r->state = state;
  g_free (r->result);
  r->result = result;
  r->updated = g_get_real_time ();
}

static void
deliver_local (Job *job, VpsQueueRcpt *r, VpsRouteKind kind, const char *template)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = vps_local_expand (template, r->address, &error);
  g_autofree char *file = NULL;
  gboolean ok = FALSE;

  if (path != NULL)
    ok = kind == VPS_ROUTE_MAILDIR
             ? vps_local_maildir_deliver (path, job->env->sender, r->address, job->raw, &file,
                                          &error)
             : vps_local_mbox_deliver (path, job->env->sender, r->address, job->raw, &error);
  if (ok)
    {
      vps_info (job->env->id, "delivery: to=<%s> delivered %s=%s", r->address,
                kind == VPS_ROUTE_MAILDIR ? "maildir" : "mbox", file ? file : path);
      set_state (r, VPS_RCPT_DELIVERED,
                 g_strdup_printf ("250 2.0.0 delivered to %s",
                                  kind == VPS_ROUTE_MAILDIR ? "maildir" : "mbox"));
      return;
    }
  if (vps_local_error_is_permanent (error))
    {
      vps_notice (job->env->id, "delivery: to=<%s> failed: %s", r->address, error->message);
      set_state (r, VPS_RCPT_FAILED, g_strdup_printf ("550 5.1.1 %s", error->message));
      return;
    }
  vps_warning (job->env->id, "delivery: to=<%s> deferred: %s", r->address, error->message);
  set_state (r, VPS_RCPT_DEFERRED, g_strdup_printf ("451 4.3.0 %s", error->message));
}

/* The delivery stage for one recipient: its verdict applied to r when it
 * decided one; *kind and *target set when it chose a route. */
static gboolean
run_stage (Job *job, VpsQueueRcpt *r, VpsRouteKind *kind, char **target)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) result = NULL;
  GPtrArray *decisions = vps_txn_get_delivers (job->txn);
  guint before = decisions ? decisions->len : 0;

  vps_txn_set_rcpt (job->txn, r->address, NULL);
  result = vps_engine_run_stage_sync (job->engine, job->session, job->txn, RULES_STAGE_DELIVERY,
                                      NULL, &error);
  if (result == NULL)
    {
      set_state (r, VPS_RCPT_DEFERRED, g_strdup_printf ("451 4.3.0 %s", error->message));
      return TRUE;
    }
  switch (result->verdict)
    {
      case RULES_VERDICT_REJECT:
        vps_notice (job->env->id, "delivery: to=<%s> rejected by rule \"%s\"", r->address,
                    result->rule ? result->rule : "?");
        set_state (r, VPS_RCPT_FAILED,
                   g_strdup_printf ("%u %s %s", result->code,
                                    result->enhanced ? result->enhanced : "",
                                    result->text ? result->text : ""));
        return TRUE;
      case RULES_VERDICT_TEMPFAIL:
        set_state (r, VPS_RCPT_DEFERRED,
                   g_strdup_printf ("%u %s %s", result->code,
                                    result->enhanced ? result->enhanced : "",
                                    result->text ? result->text : ""));
        return TRUE;
      case RULES_VERDICT_DISCARD:
        vps_info (job->env->id, "delivery: to=<%s> discarded by rule \"%s\"", r->address,
                  result->rule ? result->rule : "?");
        set_state (r, VPS_RCPT_DELIVERED, g_strdup ("250 2.0.0 discarded"));
        return TRUE;
      case RULES_VERDICT_QUARANTINE:
        if (!job->quarantined)
          {
            g_autofree char *qid = NULL;

            if (!vps_engine_quarantine_txn (job->engine, job->txn, &qid, &error))
              {
                set_state (r, VPS_RCPT_DEFERRED, g_strdup_printf ("451 4.3.0 %s", error->message));
                return TRUE;
              }
            vps_info (job->env->id, "delivery: quarantined as %s", qid);
            job->quarantined = TRUE;
          }
        set_state (r, VPS_RCPT_DELIVERED, g_strdup ("250 2.0.0 quarantined"));
        return TRUE;
      default:
        break;
    }
  decisions = vps_txn_get_delivers (job->txn);
  for (guint i = decisions ? decisions->len : 0; i > before; i--)
    {
      VpsDeliverDecision *d = g_ptr_array_index (decisions, i - 1);

      if (d->rcpt == NULL || g_ascii_strcasecmp (d->rcpt, r->address) == 0)
        {
          *kind = route_from_decision (d->kind);
          *target = g_strdup (d->target);
          return FALSE;
        }
    }
  return FALSE;
}

static void
prepare_stage (Job *job)
{
  VpsEnvelope *env = job->env;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsMessage) msg = vps_message_new (job->raw, &error);

  job->session = vps_session_new ();
  vps_session_set_client (job->session, env->client_ip ? env->client_ip : "", 0, env->client_ptr);
  if (env->helo != NULL)
    vps_session_set_helo (job->session, env->helo);
  if (env->auth_user != NULL)
    vps_session_set_auth (job->session, TRUE, env->auth_user, NULL);
  job->txn = vps_txn_new (job->session);
  vps_txn_set_sender (job->txn, env->sender, NULL);
  for (guint i = 0; i < env->rcpts->len; i++)
    vps_txn_add_rcpt (job->txn, ((VpsQueueRcpt *)g_ptr_array_index (env->rcpts, i))->address, NULL);
  vps_txn_set_queue_id (job->txn, env->id);
  vps_txn_set_delivery_attempts (job->txn, env->attempts);
  if (msg != NULL)
    vps_txn_set_message (job->txn, msg);
}

/* ---- remote routes, retries, expiry, bounces ----------------------------------- */

static void
remote_rcpt_free (gpointer data)
{
  VpsRemoteRcpt *rr = data;

  g_free ((char *)rr->target);
  g_free (rr);
}

static void
remote_add (GPtrArray *remote, VpsQueueRcpt *r, gboolean relay, char *target)
{
  VpsRemoteRcpt *rr = g_new0 (VpsRemoteRcpt, 1);

  rr->rcpt = r;
  rr->relay = relay;
  rr->target = target;
  g_ptr_array_add (remote, rr);
}

/* Exponential backoff (Postfix's minimal/maximal_backoff_time):
 * retry_min × 2^(attempts-1), at most retry_max. */
static gint64
retry_delay (VpsConfig *cfg, guint attempts)
{
  gint64 min_ms = vps_config_get_duration_ms (cfg, "queue", "retry_min");
  gint64 max_ms = vps_config_get_duration_ms (cfg, "queue", "retry_max");
  gint64 delay = min_ms;

  for (guint i = 1; i < attempts && delay < max_ms; i++)
    delay *= 2;
  return MIN (delay, MAX (max_ms, min_ms)) * 1000;
}

/* Past [queue] lifetime a deferred recipient is given up (Postfix's
 * maximal_queue_lifetime); its last result stays in the text. */
static void
expire (VpsEnvelope *env, VpsConfig *cfg)
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
      set_state (r, VPS_RCPT_FAILED,
                 g_strdup_printf ("451 4.4.7 message expired; last result: %s",
                                  r->result ? r->result : "none"));
    }
}

static gboolean
has_8bit (const char *s)
{
  for (; *s != '\0'; s++)
    if ((guchar)*s >= 0x80)
      return TRUE;
  return FALSE;
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
  benv->smtputf8 = has_8bit (env->sender);
  vps_envelope_add_rcpt (benv, env->sender, NULL, 0);
  if (!vps_queue_commit_sync (delivery->queue, w, benv, error))
    return NULL;
  vps_delivery_submit (delivery, benv->id);
  return g_strdup (benv->id);
}

/* A DSN for the recipients that failed in this attempt (failed_before[i]:
 * failed before it).  FALSE when the original went to dead/ instead. */
static gboolean
bounce (VpsDelivery *delivery, VpsConfig *cfg, VpsEnvelope *env, GBytes *raw,
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

static void
deliver_message (VpsDelivery *delivery, const char *id, VpsEnvelope *given)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (delivery->daemon);
  g_autofree char *default_target = NULL;
  VpsRouteKind default_kind;
  gboolean has_rules, has_postq;
  g_autoptr (GPtrArray) remote = g_ptr_array_new_with_free_func (remote_rcpt_free);
  g_autofree gboolean *failed_before = NULL;
  gboolean interrupted;
  Job job = { 0 };

  job.env = given != NULL ? given : vps_queue_load_envelope (delivery->queue, id, &error);
  if (job.env == NULL)
    {
      /* held, deleted or delivered meanwhile */
      if (!g_error_matches (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND))
        vps_warning (id, "delivery: %s", error->message);
      return;
    }
  if (job.env->next_attempt > g_get_real_time ())
    goto out;
  job.raw = vps_queue_load_message (delivery->queue, id, &error);
  if (job.raw == NULL)
    {
      vps_warning (id, "delivery: %s", error->message);
      goto out;
    }
  if (!vps_delivery_parse_route (cfg, vps_config_get_string (cfg, "delivery", "default"),
                                 &default_kind, &default_target, &error))
    {
      vps_warning (id, "delivery: %s", error->message);
      goto out;
    }
  job.engine = vps_daemon_get_engine (delivery->daemon);
  has_rules = rules_program_n_rules (vps_engine_get_program (job.engine), RULES_STAGE_DELIVERY) > 0;
  has_postq = !job.env->postq
              && rules_program_n_rules (vps_engine_get_program (job.engine), RULES_STAGE_POSTQ) > 0;
  if (has_rules || has_postq)
    prepare_stage (&job);
  failed_before = g_new0 (gboolean, job.env->rcpts->len);
  for (guint i = 0; i < job.env->rcpts->len; i++)
    failed_before[i]
        = ((VpsQueueRcpt *)g_ptr_array_index (job.env->rcpts, i))->state == VPS_RCPT_FAILED;
  if (has_postq)
    {
      switch (vps_postq_run (delivery->queue, job.engine, job.session, job.txn, job.env, &job.raw))
        {
          case VPS_POSTQ_GONE:
            goto out; /* discarded or quarantined */
          case VPS_POSTQ_DEFERRED:
            job.postq_defer = TRUE;
            break;
          case VPS_POSTQ_CONTINUE:
          default:
            break;
        }
    }

  for (guint i = 0; i < job.env->rcpts->len && !job.postq_defer; i++)
    {
      VpsQueueRcpt *r = g_ptr_array_index (job.env->rcpts, i);
      VpsRouteKind kind = default_kind;
      g_autofree char *target = NULL;

      if (r->state == VPS_RCPT_DELIVERED || r->state == VPS_RCPT_FAILED)
        continue;
      if (has_rules && run_stage (&job, r, &kind, &target))
        continue;
      if (target == NULL && default_target != NULL)
        target = g_strdup (default_target);
      switch (kind)
        {
          case VPS_ROUTE_MAILDIR:
          case VPS_ROUTE_MBOX:
            deliver_local (&job, r, kind, target);
            break;
          case VPS_ROUTE_HOLD:
            job.hold = TRUE;
            break;
          case VPS_ROUTE_RELAY:
          case VPS_ROUTE_MX:
          default:
            remote_add (remote, r, kind == VPS_ROUTE_RELAY, g_steal_pointer (&target));
            break;
        }
    }
  /* every remote recipient in one go: grouped by destination there */
  vps_remote_deliver (delivery->remote, cfg, job.env, job.raw, remote);
  expire (job.env, cfg);
  if (!bounce (delivery, cfg, job.env, job.raw, failed_before))
    goto out;

  if (vps_envelope_done (job.env))
    {
      /* the queue logs the removal */
      if (!vps_queue_remove (delivery->queue, id, &error))
        vps_warning (id, "delivery: removing: %s", error->message);
      goto out;
    }
  g_mutex_lock (&delivery->lock);
  interrupted = delivery->stopping && remote->len > 0;
  g_mutex_unlock (&delivery->lock);
  if (interrupted)
    {
      /* a shutdown cut the remote sessions short: not an attempt of the
       * destination, tried again as soon as vsmtpd is back */
      job.env->next_attempt = 0;
    }
  else
    {
      job.env->attempts++;
      job.env->next_attempt = g_get_real_time () + retry_delay (cfg, job.env->attempts);
    }
  if (!vps_queue_update_envelope (delivery->queue, job.env, &error))
    vps_warning (id, "delivery: envelope update: %s", error->message);
  else if (job.hold && !vps_queue_hold (delivery->queue, id, &error))
    vps_warning (id, "delivery: hold: %s", error->message);
  else if (job.hold)
    vps_info (id, "delivery: held");
out:
  g_clear_pointer (&job.txn, vps_txn_unref);
  g_clear_pointer (&job.session, vps_session_unref);
  g_clear_pointer (&job.engine, vps_engine_unref);
  g_clear_pointer (&job.raw, g_bytes_unref);
  g_clear_pointer (&job.env, vps_envelope_free);
}

static void
pool_func (gpointer data, gpointer user_data)
{
  VpsDelivery *delivery = user_data;
  Item *item = data;
  const char *id = item->id;
  gboolean again;

  do
    {
      /* the envelope in memory serves the first pass only */
      deliver_message (delivery, id, g_steal_pointer (&item->env));
      g_mutex_lock (&delivery->lock);
      again = GPOINTER_TO_INT (g_hash_table_lookup (delivery->in_flight, id)) == 2
              && !delivery->stopping;
      if (again)
        g_hash_table_insert (delivery->in_flight, g_strdup (id), GINT_TO_POINTER (1));
      else
        g_hash_table_remove (delivery->in_flight, id);
      g_mutex_unlock (&delivery->lock);
    }
  while (again);
  item_free (item);
}

void
vps_delivery_submit_envelope (VpsDelivery *delivery, const char *id, VpsEnvelope *env)
{
  g_mutex_lock (&delivery->lock);
  if (g_hash_table_contains (delivery->in_flight, id))
    g_hash_table_insert (delivery->in_flight, g_strdup (id), GINT_TO_POINTER (2));
  else if (!delivery->stopping)
    {
      g_hash_table_insert (delivery->in_flight, g_strdup (id), GINT_TO_POINTER (1));
      g_thread_pool_push (delivery->pool, item_new (id, g_steal_pointer (&env)), NULL);
    }
  g_mutex_unlock (&delivery->lock);
  g_clear_pointer (&env, vps_envelope_free);
}

void
vps_delivery_submit (VpsDelivery *delivery, const char *id)
{
  vps_delivery_submit_envelope (delivery, id, NULL);
}

/* ---- the scan ---------------------------------------------------------------- */

static void
scan (VpsDelivery *delivery)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) ids = vps_queue_list (delivery->queue, VPS_QUEUE_INCOMING, &error);

  if (ids == NULL)
    {
      vps_warning (NULL, "delivery: queue scan: %s", error->message);
      return;
    }
  for (guint i = 0; i < ids->len; i++)
    {
      const char *id = g_ptr_array_index (ids, i);

      g_mutex_lock (&delivery->lock);
      if (!g_hash_table_contains (delivery->in_flight, id) && !delivery->stopping)
        {
          g_hash_table_insert (delivery->in_flight, g_strdup (id), GINT_TO_POINTER (1));
          g_thread_pool_push (delivery->pool, item_new (id, NULL), NULL);
        }
      g_mutex_unlock (&delivery->lock);
    }
}

static gpointer
scanner_func (gpointer data)
{
  VpsDelivery *delivery = data;

  g_mutex_lock (&delivery->lock);
  while (!delivery->stopping)
    {
      g_autoptr (VpsConfig) cfg = vps_daemon_get_config (delivery->daemon);
      gint64 interval = vps_config_get_duration_ms (cfg, "queue", "run_interval") * 1000;
      gint64 until = g_get_monotonic_time () + interval;

      while (!delivery->stopping && g_cond_wait_until (&delivery->cond, &delivery->lock, until))
        ;
      if (delivery->stopping)
        break;
      g_mutex_unlock (&delivery->lock);
      scan (delivery);
      g_mutex_lock (&delivery->lock);
    }
  g_mutex_unlock (&delivery->lock);
  return NULL;
}

VpsDelivery *
vps_delivery_new (VpsDaemon *daemon, VpsQueue *queue, GError **error)
{
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (daemon);
  g_autofree char *target = NULL;
  VpsRouteKind kind;
  VpsDelivery *delivery;

  if (!vps_delivery_parse_route (cfg, vps_config_get_string (cfg, "delivery", "default"), &kind,
                                 &target, error))
    return NULL;
  delivery = g_new0 (VpsDelivery, 1);
  delivery->daemon = daemon;
  delivery->queue = vps_queue_ref (queue);
  g_mutex_init (&delivery->lock);
  g_cond_init (&delivery->cond);
  delivery->in_flight = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  delivery->remote = vps_remote_new ();
  delivery->pool = g_thread_pool_new_full (
      pool_func, delivery, item_free, (gint)vps_config_get_int (cfg, "queue", "delivery_threads"),
      FALSE, NULL);
  return delivery;
}

void
vps_delivery_start (VpsDelivery *delivery)
{
  scan (delivery);
  delivery->scanner = g_thread_new ("vsmtpd-queue-scan", scanner_func, delivery);
}

void
vps_delivery_free (VpsDelivery *delivery)
{
  if (delivery == NULL)
    return;
  g_mutex_lock (&delivery->lock);
  delivery->stopping = TRUE;
  g_cond_broadcast (&delivery->cond);
  g_mutex_unlock (&delivery->lock);
  if (delivery->scanner != NULL)
    g_thread_join (delivery->scanner);
  /* remote deliveries in flight are interrupted (their recipients stay
   * deferred: a duplicate at worst); local ones finish; queued ones wait
   * for the next start */
  vps_remote_cancel (delivery->remote);
  g_thread_pool_free (delivery->pool, TRUE, TRUE);
  vps_remote_free (delivery->remote);
  g_hash_table_unref (delivery->in_flight);
  g_cond_clear (&delivery->cond);
  g_mutex_clear (&delivery->lock);
  vps_queue_unref (delivery->queue);
  g_free (delivery);
}

/* On the caller's thread (vsmtpd's main loop, SIGUSR1): the scan only
 * lists incoming/ and hands ids to the pool, so it does not hold the loop
 * up for long; the periodic scanner keeps its own schedule. */
void
vps_delivery_scan_now (VpsDelivery *delivery)
{
  g_return_if_fail (delivery != NULL);
  scan (delivery);
}
