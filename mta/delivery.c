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
 *
 * A pass over one message has two halves.  The first (pass_start: postq,
 * routes, local deliveries) runs on a pool thread and hands the remote
 * recipients, all at once, to the one SMTP client thread
 * (delivery-remote.c says why); the pool thread is free again at once, so
 * a slow destination never holds one.  When the last remote recipient has
 * its result, the pass comes back to the pool for its second half
 * (pass_finish: expiry, DSNs, the envelope).  At most [queue] active_limit
 * passes are with the remote thread; past it a pool thread waits for room.
 * A shutdown that interrupts remote sessions does not count as an attempt:
 * the message is due again at once after the restart.
 */
#include "mta/delivery-postq.h"
#include "mta/delivery-private.h"

#include <string.h>

#include "mta/local.h"
#include "vps/log.h"
#include "vps/metrics.h"
#include "vps/message.h"

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

/* One pass over one message: what the pool is handed.  A new pass has an
 * id (and the envelope when the caller has it in memory: a fresh commit
 * needs no read back); its first half fills the rest, its second half
 * runs when `remote_done`. */
typedef struct
{
  VpsDelivery *delivery;
  char *id;
  VpsConfig *cfg;
  VpsEngine *engine;
  VpsEnvelope *env;
  GBytes *raw;
  VpsSession *session; /* for the stages, when they have rules */
  VpsTxn *txn;
  GPtrArray *remote;       /* VpsRemoteRcpt* */
  gboolean *failed_before; /* per recipient: failed before this pass */
  gboolean hold;
  gboolean quarantined;
  gboolean postq_defer; /* postq deferred the message: no delivery this pass */
  gboolean remote_done; /* the remote half is over: finish */
} Pass;

static void remote_rcpt_free (gpointer data);

static Pass *
pass_new (VpsDelivery *delivery, const char *id, VpsEnvelope *env)
{
  Pass *pass = g_new0 (Pass, 1);

  pass->delivery = delivery;
  pass->id = g_strdup (id);
  pass->env = env;
  return pass;
}

/* Back to a new pass over the same id (the envelope is read again). */
static void
pass_clear (Pass *pass)
{
  g_clear_pointer (&pass->txn, vps_txn_unref);
  g_clear_pointer (&pass->session, vps_session_unref);
  g_clear_pointer (&pass->engine, vps_engine_unref);
  g_clear_pointer (&pass->raw, g_bytes_unref);
  g_clear_pointer (&pass->env, vps_envelope_free);
  g_clear_pointer (&pass->cfg, vps_config_unref);
  g_clear_pointer (&pass->remote, g_ptr_array_unref);
  g_clear_pointer (&pass->failed_before, g_free);
  pass->hold = pass->quarantined = pass->postq_defer = pass->remote_done = FALSE;
}

static void
pass_free (gpointer data)
{
  Pass *pass = data;

  pass_clear (pass);
  g_free (pass->id);
  g_free (pass);
}

static void
set_state (VpsQueueRcpt *r, VpsRcptState state, char *result)
{
  r->state = state;
  g_free (r->result);
  r->result = result;
  r->updated = g_get_real_time ();
  vps_metrics_count_delivery (vps_rcpt_state_name (state)); /* issue 10: metrics */
}

static void
deliver_local (Pass *job, VpsQueueRcpt *r, VpsRouteKind kind, const char *template)
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
run_stage (Pass *job, VpsQueueRcpt *r, VpsRouteKind *kind, char **target)
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
prepare_stage (Pass *job)
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

static void remote_done (gpointer data);

typedef enum
{
  PASS_DONE,   /* nothing more to do: not due, gone, or an error logged */
  PASS_FINISH, /* go on to pass_finish now */
  PASS_REMOTE, /* with the remote thread: it comes back through the pool */
} PassNext;

/* The first half of a pass, on a pool thread. */
static PassNext
pass_start (Pass *pass)
{
  VpsDelivery *delivery = pass->delivery;
  const char *id = pass->id;
  g_autoptr (GError) error = NULL;
  g_autofree char *default_target = NULL;
  VpsRouteKind default_kind;
  gboolean has_rules, has_postq, handed;

  if (pass->env == NULL)
    pass->env = vps_queue_load_envelope (delivery->queue, id, &error);
  if (pass->env == NULL)
    {
      /* held, deleted or delivered meanwhile */
      if (!g_error_matches (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND))
        vps_warning (id, "delivery: %s", error->message);
      return PASS_DONE;
    }
  if (pass->env->next_attempt > g_get_real_time ())
    return PASS_DONE;
  pass->raw = vps_queue_load_message (delivery->queue, id, &error);
  if (pass->raw == NULL)
    {
      vps_warning (id, "delivery: %s", error->message);
      return PASS_DONE;
    }
  pass->cfg = vps_daemon_get_config (delivery->daemon);
  /* the postq stage's route, when it chose one, else [delivery] default */
  if (!vps_delivery_parse_route (pass->cfg,
                                 pass->env->route
                                     ? pass->env->route
                                     : vps_config_get_string (pass->cfg, "delivery", "default"),
                                 &default_kind, &default_target, &error))
    {
      vps_warning (id, "delivery: %s", error->message);
      return PASS_DONE;
    }
  pass->engine = vps_daemon_get_engine (delivery->daemon);
  has_rules
      = rules_program_n_rules (vps_engine_get_program (pass->engine), RULES_STAGE_DELIVERY) > 0;
  has_postq
      = !pass->env->postq
        && rules_program_n_rules (vps_engine_get_program (pass->engine), RULES_STAGE_POSTQ) > 0;
  if (has_rules || has_postq)
    prepare_stage (pass);
  pass->failed_before = g_new0 (gboolean, pass->env->rcpts->len);
  for (guint i = 0; i < pass->env->rcpts->len; i++)
    pass->failed_before[i]
        = ((VpsQueueRcpt *)g_ptr_array_index (pass->env->rcpts, i))->state == VPS_RCPT_FAILED;
  if (has_postq)
    {
      switch (vps_postq_run (delivery->queue, pass->engine, pass->session, pass->txn, pass->env,
                             &pass->raw))
        {
          case VPS_POSTQ_GONE:
            return PASS_DONE; /* discarded or quarantined */
          case VPS_POSTQ_DEFERRED:
            pass->postq_defer = TRUE;
            break;
          case VPS_POSTQ_CONTINUE:
          default:
            if (pass->env->route != NULL)
              {
                /* routed in postq just now */
                g_clear_pointer (&default_target, g_free);
                if (!vps_delivery_parse_route (pass->cfg, pass->env->route, &default_kind,
                                               &default_target, &error))
                  {
                    vps_warning (id, "delivery: postq route: %s", error->message);
                    pass->postq_defer = TRUE;
                  }
              }
            break;
        }
    }

  pass->remote = g_ptr_array_new_with_free_func (remote_rcpt_free);
  for (guint i = 0; i < pass->env->rcpts->len && !pass->postq_defer; i++)
    {
      VpsQueueRcpt *r = g_ptr_array_index (pass->env->rcpts, i);
      VpsRouteKind kind = default_kind;
      g_autofree char *target = NULL;

      if (r->state == VPS_RCPT_DELIVERED || r->state == VPS_RCPT_FAILED)
        continue;
      if (has_rules && run_stage (pass, r, &kind, &target))
        continue;
      if (target == NULL && default_target != NULL)
        target = g_strdup (default_target);
      switch (kind)
        {
          case VPS_ROUTE_MAILDIR:
          case VPS_ROUTE_MBOX:
            deliver_local (pass, r, kind, target);
            break;
          case VPS_ROUTE_HOLD:
            pass->hold = TRUE;
            break;
          case VPS_ROUTE_RELAY:
          case VPS_ROUTE_MX:
          default:
            remote_add (pass->remote, r, kind == VPS_ROUTE_RELAY, g_steal_pointer (&target));
            break;
        }
    }
  if (pass->remote->len == 0)
    return PASS_FINISH;

  /* every remote recipient in one go: grouped by destination there */
  g_mutex_lock (&delivery->lock);
  while (delivery->remote_active >= (guint)vps_config_get_int (pass->cfg, "queue", "active_limit")
         && !delivery->stopping)
    g_cond_wait (&delivery->cond, &delivery->lock);
  handed = !delivery->stopping;
  if (handed)
    delivery->remote_active++;
  g_mutex_unlock (&delivery->lock);
  if (!handed)
    {
      /* shutting down: nothing was tried; pass_finish sees `stopping` */
      return PASS_FINISH;
    }
  vps_remote_deliver_async (delivery->remote, pass->cfg, pass->env, pass->raw, pass->remote,
                            remote_done, pass);
  return PASS_REMOTE;
}

/* On the remote thread: every remote recipient has its state. */
static void
remote_done (gpointer data)
{
  Pass *pass = data;
  VpsDelivery *delivery = pass->delivery;

  pass->remote_done = TRUE;
  g_mutex_lock (&delivery->lock);
  /* pushed before the count drops: vps_delivery_free waits for the count,
   * then for the pool */
  g_thread_pool_push (delivery->pool, pass, NULL);
  delivery->remote_active--;
  g_cond_broadcast (&delivery->cond);
  g_mutex_unlock (&delivery->lock);
}

/* The second half: expiry, notifications, the envelope. */
static void
pass_finish (Pass *pass)
{
  VpsDelivery *delivery = pass->delivery;
  VpsEnvelope *env = pass->env;
  const char *id = pass->id;
  g_autoptr (GError) error = NULL;
  gboolean interrupted;

  vps_delivery_expire (env, pass->cfg);
  if (!vps_delivery_bounce (delivery, pass->cfg, env, pass->raw, pass->failed_before))
    return;
  if (vps_envelope_done (env))
    {
      /* the queue logs the removal */
      if (!vps_queue_remove (delivery->queue, id, &error))
        vps_warning (id, "delivery: removing: %s", error->message);
      return;
    }
  vps_delivery_warn_delay (delivery, pass->cfg, env, pass->raw);
  g_mutex_lock (&delivery->lock);
  interrupted = delivery->stopping && pass->remote->len > 0;
  g_mutex_unlock (&delivery->lock);
  if (interrupted)
    {
      /* a shutdown cut the remote sessions short (or came before them):
       * not an attempt of the destination, tried again as soon as vsmtpd
       * is back */
      env->next_attempt = 0;
    }
  else
    {
      env->attempts++;
      env->next_attempt = g_get_real_time () + vps_delivery_retry_delay (pass->cfg, env->attempts);
    }
  if (!vps_queue_update_envelope (delivery->queue, env, &error))
    vps_warning (id, "delivery: envelope update: %s", error->message);
  else if (pass->hold && !vps_queue_hold (delivery->queue, id, &error))
    vps_warning (id, "delivery: hold: %s", error->message);
  else if (pass->hold)
    vps_info (id, "delivery: held");
}

static void
pool_func (gpointer data, gpointer user_data)
{
  VpsDelivery *delivery = user_data;
  Pass *pass = data;
  gboolean again;

  do
    {
      PassNext next;
      gboolean stopping;

      g_mutex_lock (&delivery->lock);
      stopping = delivery->stopping;
      g_mutex_unlock (&delivery->lock);
      if (pass->remote_done)
        next = PASS_FINISH; /* back from the remote thread: record it */
      else if (stopping)
        next = PASS_DONE; /* not started: the next start takes it */
      else
        next = pass_start (pass);

      if (next == PASS_REMOTE)
        return;
      if (next == PASS_FINISH)
        pass_finish (pass);
      g_mutex_lock (&delivery->lock);
      again = GPOINTER_TO_INT (g_hash_table_lookup (delivery->in_flight, pass->id)) == 2
              && !delivery->stopping;
      if (again)
        g_hash_table_insert (delivery->in_flight, g_strdup (pass->id), GINT_TO_POINTER (1));
      else
        g_hash_table_remove (delivery->in_flight, pass->id);
      g_mutex_unlock (&delivery->lock);
      /* the envelope in memory served the first pass only */
      pass_clear (pass);
    }
  while (again);
  pass_free (pass);
}

void
vps_delivery_submit_envelope (VpsDelivery *delivery, const char *id, VpsEnvelope *env)
{
  /* issue 10: metrics — only the SMTP server hands over a just-committed
   * envelope (smtp-message.c); bounces and scans come without one */
  if (env != NULL)
    vps_metrics_count_message (VPS_METRICS_FRONTEND_SMTP);
  g_mutex_lock (&delivery->lock);
  if (g_hash_table_contains (delivery->in_flight, id))
    g_hash_table_insert (delivery->in_flight, g_strdup (id), GINT_TO_POINTER (2));
  else if (!delivery->stopping)
    {
      g_hash_table_insert (delivery->in_flight, g_strdup (id), GINT_TO_POINTER (1));
      g_thread_pool_push (delivery->pool, pass_new (delivery, id, g_steal_pointer (&env)), NULL);
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
          g_thread_pool_push (delivery->pool, pass_new (delivery, id, NULL), NULL);
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
      pool_func, delivery, pass_free, (gint)vps_config_get_int (cfg, "queue", "delivery_threads"),
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
  g_mutex_lock (&delivery->lock);
  while (delivery->remote_active > 0)
    g_cond_wait (&delivery->cond, &delivery->lock);
  g_mutex_unlock (&delivery->lock);
  /* every pass back from the remote thread is in the pool now: record
   * them; passes not started skip (pool_func) */
  g_thread_pool_free (delivery->pool, FALSE, TRUE);
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
