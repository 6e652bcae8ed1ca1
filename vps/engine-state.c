/* SPDX-License-Identifier: MIT
 *
 * engine-state.c — the engine's answers to the rules' shared-state checks:
 * rate(key, N, PERIOD), concurrency(key), greylisted() and the `greylist`
 * action, kept in a VpsState (vps/state.h: memory, or Redis shared by
 * several instances).
 *
 * Keys are namespaced and every one expires (nothing grows without bound):
 *   vps:rate:KEY          WINDOW, limit N, expiry PERIOD
 *   vps:conc:KEY          members = "HOST:PID:SESSION", each expiring after
 *                         VPS_ENGINE_CONC_TTL_MS unless refreshed (every
 *                         stage of the session refreshes them), left at the
 *                         session's end
 *   vps:grey:t:NET/SENDER/RCPT   first-seen time (s) while pending, expiry
 *                         [greylist] retry_window; GREY_PASSED once passed,
 *                         expiry lifetime (refreshed at each pass)
 *   vps:grey:c:IP         passes counted toward auto_whitelist (lifetime)
 *   vps:grey:h:IP         "counted this hour" marker (1 h)
 *
 * Answers: with a backend that answers synchronously (memory) a check is
 * answered on the spot.  Otherwise the check is queued, the step waits
 * (RULES_STEP_WAIT) and the stage runner sends every check queued by that
 * evaluation as one pipelined batch (vps_stage_run_state_flush); when it
 * answers, the rule is re-evaluated and the answer comes from this stage
 * run's answers, by call site and key: one evaluation counts once.
 * Greylisting reads in that batch and writes after it without waiting.
 *
 * A batch that fails (backend down, timeout) answers "not limited" (rate
 * true, concurrency 0, not greylisted) with a warning at most once a
 * minute, or, with [state] on_error = tempfail, ends the stage with 451
 * 4.3.0.  Never a stuck session: the backend fails a batch at its timeout.
 *
 * Greylisting's keys and decision are engine-greylist.c's (postgrey 1.37).
 */
#include "vps/engine-private.h"

#include <string.h>
#include <unistd.h>

#include "proto/mail/mail-reply.h"
#include "vps/config-private.h"
#include "vps/log.h"
#include "vps/state.h"

/* Interval of the "state backend failed" warning. */
#define STATE_WARN_INTERVAL_S 60
/* Host name octets kept in a concurrency member. */
#define MEMBER_HOST_MAX 64

struct _VpsEngineState
{
  VpsState *state; /* NULL: the program makes no state check */
  char *signature; /* the [state] values it was made from */
  gboolean tempfail_on_error;
  VpsGreyConf grey;
  guint code;
  char *enhanced, *text;
  char *member_prefix; /* "HOST:PID:" */
};

/* ---- the VpsState engines share --------------------------------------------
 * Engines made from the same [state] values (a reload) share one VpsState,
 * so counters survive a reload; it goes when its last engine goes. */

static GMutex shared_lock;
static VpsState *shared_state;
static char *shared_signature;
static guint shared_users;

static char *
state_signature (VpsConfig *cfg)
{
  GString *sig = g_string_new (NULL);
  gsize n;
  const VpsConfigKeyDef *defs = vps_config_schema_all (&n);

  for (gsize i = 0; i < n; i++)
    if (strcmp (defs[i].group, "state") == 0 && strcmp (defs[i].key, "on_error") != 0)
      {
        const char *v = vps_config_get_raw (cfg, "state", defs[i].key);
        g_string_append_printf (sig, "%s=%s\n", defs[i].key, v ? v : "");
      }
  return g_string_free (sig, FALSE);
}

static VpsState *
shared_state_get (VpsConfig *cfg, char **signature, GError **error)
{
  g_autofree char *sig = state_signature (cfg);
  VpsState *st = NULL;

  g_mutex_lock (&shared_lock);
  if (shared_state != NULL && g_strcmp0 (shared_signature, sig) == 0)
    {
      st = vps_state_ref (shared_state);
      shared_users++;
    }
  else if ((st = vps_state_new (cfg, error)) != NULL)
    {
      /* the previous one (other values) stays with the engines using it */
      shared_state = st;
      g_free (shared_signature);
      shared_signature = g_strdup (sig);
      shared_users = 1;
    }
  g_mutex_unlock (&shared_lock);
  *signature = g_steal_pointer (&sig);
  return st;
}

static void
shared_state_put (VpsState *st)
{
  g_mutex_lock (&shared_lock);
  if (st == shared_state && --shared_users == 0)
    {
      shared_state = NULL;
      g_clear_pointer (&shared_signature, g_free);
    }
  g_mutex_unlock (&shared_lock);
  vps_state_unref (st);
}

/* ---- engine configuration ------------------------------------------------- */

VpsEngineState *
vps_engine_state_new (VpsConfig *cfg, RulesProgram *program, GError **error)
{
  g_autoptr (GError) local = NULL, reply_error = NULL;
  g_autoptr (MailReply) reply = NULL;
  VpsEngineState *es = g_new0 (VpsEngineState, 1);
  const char *const *nets = vps_config_get_strv (cfg, "greylist", "whitelist_clients");
  gboolean used = FALSE;
  char host[MEMBER_HOST_MAX + 1];

  for (guint k = 0; k <= RULES_STATE_GREYLISTED; k++)
    used |= rules_program_uses_state (program, (RulesStateKind)k);
  es->tempfail_on_error
      = g_strcmp0 (vps_config_get_string (cfg, "state", "on_error"), "tempfail") == 0;
  es->grey.delay_s = vps_config_get_duration_ms (cfg, "greylist", "delay") / 1000;
  es->grey.lifetime_ms = vps_config_get_duration_ms (cfg, "greylist", "lifetime");
  es->grey.retry_window_ms = vps_config_get_duration_ms (cfg, "greylist", "retry_window");
  es->grey.awl = vps_config_get_int (cfg, "greylist", "auto_whitelist");
  es->code = (guint)vps_config_get_int (cfg, "greylist", "code");
  es->enhanced = g_strdup (vps_config_get_string (cfg, "greylist", "enhanced"));
  es->text = g_strdup (vps_config_get_string (cfg, "greylist", "text"));
  es->grey.whitelist = g_ptr_array_new_with_free_func (g_object_unref);
  for (guint i = 0; nets && nets[i]; i++)
    {
      GInetAddressMask *m = g_inet_address_mask_new_from_string (nets[i], NULL);
      if (m != NULL)
        g_ptr_array_add (es->grey.whitelist, m);
    }
  g_strlcpy (host, g_get_host_name (), sizeof host);
  es->member_prefix = g_strdup_printf ("%s:%ld:", host, (long)getpid ());

  /* A retry window no longer than the delay would defer a triplet forever:
   * its pending entry would expire before it could pass. */
  if (es->grey.retry_window_ms <= es->grey.delay_s * 1000)
    vps_config_error_at (cfg, "greylist", "retry_window", &local,
                         "must be longer than delay (%" G_GINT64_FORMAT "s)", es->grey.delay_s);
  else if ((reply = mail_reply_new (es->code, es->enhanced, es->text, &reply_error)) == NULL)
    vps_config_error_at (cfg, "greylist", "enhanced", &local, "the reply %u %s \"%s\": %s",
                         es->code, es->enhanced, es->text, reply_error->message);
  if (local == NULL && used)
    es->state = shared_state_get (cfg, &es->signature, &local);
  if (local != NULL)
    {
      g_set_error_literal (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_CONFIG, local->message);
      vps_engine_state_free (es);
      return NULL;
    }
  return es;
}

void
vps_engine_state_free (VpsEngineState *es)
{
  if (es == NULL)
    return;
  if (es->state)
    shared_state_put (es->state);
  g_free (es->signature);
  g_ptr_array_unref (es->grey.whitelist);
  g_free (es->enhanced);
  g_free (es->text);
  g_free (es->member_prefix);
  g_free (es);
}

VpsState *
vps_engine_state_get (VpsEngineState *es)
{
  return es ? es->state : NULL;
}

void
vps_engine_state_greylist_reply (VpsEngineState *es, guint *code, const char **enhanced,
                                 const char **text)
{
  *code = es->code;
  *enhanced = es->enhanced;
  *text = es->text;
}

/* ---- fire and forget -------------------------------------------------------- */

static void
warn_failed (const char *sid, const char *what, const GError *error)
{
  vps_log_once ("state-backend-failed", STATE_WARN_INTERVAL_S, G_LOG_LEVEL_WARNING, sid,
                "state backend: %s failed (%s); on_error applies (logged once a minute)", what,
                error ? error->message : "unknown error");
}

static void
forget_done (VpsState *state, const VpsStateResult *results, guint n, const GError *error,
             gpointer user_data)
{
  if (error != NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    warn_failed (NULL, "an update", error);
}

/* Writes nobody waits for: greylisting updates, membership refresh and
 * removal.  Answered on the spot by the memory backend. */
static void
state_fire (VpsState *state, const VpsStateOp *ops, guint n)
{
  VpsStateResult results[VPS_STATE_MAX_OPS];
  g_autoptr (GError) error = NULL;

  if (n == 0)
    return;
  g_return_if_fail (n <= VPS_STATE_MAX_OPS);
  if (vps_state_exec_try (state, ops, n, results, &error))
    return;
  if (error != NULL)
    warn_failed (NULL, "an update", error);
  else
    vps_state_exec_async (state, ops, n, NULL, forget_done, NULL);
}

/* ---- concurrency membership ------------------------------------------------- */

typedef struct
{
  VpsState *state;
  char *member;
  GPtrArray *keys; /* the session's joined keys (a reference) */
} Leave;

/* The session ended: leave every key it joined. */
static void
leave_all (gpointer data)
{
  Leave *l = data;
  VpsStateOp ops[VPS_SESSION_MAX_JOINED];
  guint n = 0;

  for (guint i = 0; i < l->keys->len && n < G_N_ELEMENTS (ops); i++)
    ops[n++] = (VpsStateOp){ .kind = VPS_STATE_MEMBER_DEL,
                             .key = g_ptr_array_index (l->keys, i),
                             .member = l->member };
  state_fire (l->state, ops, n);
  vps_state_unref (l->state);
  g_ptr_array_unref (l->keys);
  g_free (l->member);
  g_free (l);
}

static char *
member_name (VpsEngineState *es, VpsSession *session)
{
  return g_strconcat (es->member_prefix, vps_session_get_id (session), NULL);
}

/* Join `key`: remembered on the session (the first join registers the
 * leave at its end).  FALSE when the session has joined too many keys. */
static gboolean
session_join (VpsEngineState *es, VpsSession *session, const char *key)
{
  gboolean first = vps_session_get_joined (session) == NULL;

  if (!vps_session_join (session, key))
    {
      GPtrArray *keys = vps_session_get_joined (session);
      for (guint i = 0; keys && i < keys->len; i++)
        if (strcmp (g_ptr_array_index (keys, i), key) == 0)
          return TRUE;
      return FALSE;
    }
  if (first)
    {
      Leave *l = g_new0 (Leave, 1);
      l->state = vps_state_ref (es->state);
      l->member = member_name (es, session);
      l->keys = g_ptr_array_ref (vps_session_get_joined (session));
      if (!vps_session_add_end_notify (session, leave_all, l))
        {
          /* no slot left: the members expire by their ttl instead */
          vps_state_unref (l->state);
          g_ptr_array_unref (l->keys);
          g_free (l->member);
          g_free (l);
        }
    }
  return TRUE;
}

void
vps_stage_run_state_begin (VpsStageRun *sr)
{
  VpsEngineState *es = vps_engine_get_state_ctx (sr->engine);
  GPtrArray *keys = vps_session_get_joined (sr->session);
  VpsStateOp ops[VPS_SESSION_MAX_JOINED];
  g_autofree char *member = NULL;
  guint n = 0;

  if (es == NULL || es->state == NULL || keys == NULL || keys->len == 0)
    return;
  /* every stage of a live session renews its memberships; a crashed
   * instance's members expire VPS_ENGINE_CONC_TTL_MS after its last stage */
  member = member_name (es, sr->session);
  for (guint i = 0; i < keys->len && n < G_N_ELEMENTS (ops); i++)
    ops[n++] = (VpsStateOp){ .kind = VPS_STATE_MEMBER_ADD,
                             .key = g_ptr_array_index (keys, i),
                             .member = member,
                             .ttl_ms = VPS_ENGINE_CONC_TTL_MS };
  state_fire (es->state, ops, n);
}

/* ---- one check ------------------------------------------------------------ */

typedef struct
{
  guint answer_index; /* in the stage run's answers */
  RulesStateKind kind;
  gint64 limit; /* rate */
  guint n_ops;  /* greylisting: vps_grey_keys()' keys, in order */
  VpsStateOp ops[VPS_GREY_MAX_TRIPLETS + 2];
  GPtrArray *strings; /* keys and members behind ops */
} Check;

static void
check_free (Check *c)
{
  g_clear_pointer (&c->strings, g_ptr_array_unref);
  g_free (c);
}

static const char *
keep (Check *c, char *s)
{
  g_ptr_array_add (c->strings, s);
  return s;
}

static void
add_op (Check *c, VpsStateOpKind kind, const char *key, const char *member, gint64 value,
        gint64 ttl_ms)
{
  g_return_if_fail (c->n_ops < G_N_ELEMENTS (c->ops));
  c->ops[c->n_ops++] = (VpsStateOp){
    .kind = kind, .key = key, .member = member, .value = value, .ttl_ms = ttl_ms
  };
}

/* The greylisting reads of this stage (engine-greylist.c says which). */
static gboolean
grey_build (VpsEngineState *es, VpsStageRun *sr, Check *c)
{
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);

  if (!vps_grey_keys (&es->grey, sr, keys))
    return FALSE;
  for (guint i = 0; i < keys->len && c->n_ops < G_N_ELEMENTS (c->ops); i++)
    add_op (c, VPS_STATE_GET, keep (c, g_strdup (g_ptr_array_index (keys, i))), NULL, 0, 0);
  return TRUE;
}

/* postgrey's decision over the reads; the updates go without waiting. */
static gboolean
grey_decide (VpsEngineState *es, const Check *c, const VpsStateResult *r)
{
  const char *keys[G_N_ELEMENTS (c->ops)];
  VpsStateOp w[G_N_ELEMENTS (c->ops) + 2];
  guint nw = 0;
  gboolean defer;

  for (guint i = 0; i < c->n_ops; i++)
    keys[i] = c->ops[i].key;
  defer = vps_grey_decide (&es->grey, keys, c->n_ops, r, w, &nw);
  state_fire (es->state, w, nw);
  return defer;
}

static gint64
default_answer (RulesStateKind kind)
{
  /* "not limited": rate within its limit, no session counted, not greylisted */
  return kind == RULES_STATE_RATE ? 1 : 0;
}

static gint64
check_answer (VpsEngineState *es, const Check *c, const VpsStateResult *r)
{
  switch (c->kind)
    {
      case RULES_STATE_RATE:
        return r[0].value <= c->limit;
      case RULES_STATE_CONCURRENCY:
        return r[0].value;
      case RULES_STATE_GREYLISTED:
      default:
        return grey_decide (es, c, r);
    }
}

/* ---- per stage run -------------------------------------------------------- */

/* One check of this stage run: a re-evaluation of the same call (site,
 * kind, key) is answered from here.  A stage makes a handful of checks: a
 * small array searched linearly costs less than a hash table. */
typedef struct
{
  gconstpointer site;
  RulesStateKind kind;
  guint64 key_hash;
  gboolean inflight; /* queued or sent, not answered yet */
  gint64 answer;
} Answer;

struct _VpsStageState
{
  GArray *answers;  /* Answer */
  GPtrArray *queue; /* Check* not sent yet */
  gboolean failed;  /* a batch failed and on_error = tempfail */
};

/* FNV-1a: the key's identity within one stage run (with site and kind). */
static guint64
key_hash (const char *key)
{
  guint64 h = 14695981039346656037ULL;

  for (const char *p = key ? key : ""; *p; p++)
    h = (h ^ (guchar)*p) * 1099511628211ULL;
  return h;
}

static Answer *
answer_find (VpsStageState *st, gconstpointer site, RulesStateKind kind, guint64 hash)
{
  for (guint i = 0; i < st->answers->len; i++)
    {
      Answer *a = &g_array_index (st->answers, Answer, i);
      if (a->site == site && a->kind == kind && a->key_hash == hash)
        return a;
    }
  return NULL;
}

void
vps_stage_run_state_free (VpsStageRun *sr)
{
  VpsStageState *st = sr->state;

  if (st == NULL)
    return;
  g_array_unref (st->answers);
  g_clear_pointer (&st->queue, g_ptr_array_unref);
  g_free (st);
  sr->state = NULL;
}

gboolean
vps_stage_run_state_failed (VpsStageRun *sr)
{
  return sr->state != NULL && sr->state->failed;
}

static void
answer_set (RulesStateKind kind, gint64 answer, RulesValue *out)
{
  if (kind == RULES_STATE_CONCURRENCY)
    rules_value_set_int (out, answer);
  else
    rules_value_set_bool (out, answer != 0);
}

static void
answer_add (VpsStageState *st, gconstpointer site, RulesStateKind kind, guint64 hash,
            gboolean inflight, gint64 answer)
{
  Answer a = { site, kind, hash, inflight, answer };
  g_array_append_val (st->answers, a);
}

typedef struct
{
  VpsStageRun *sr;
  GPtrArray *checks; /* Check*, in batch order */
} Batch;

static void
batch_done (VpsState *state, const VpsStateResult *results, guint n, const GError *error,
            gpointer data)
{
  Batch *b = data;
  VpsStageRun *sr = b->sr;
  VpsEngineState *es = vps_engine_get_state_ctx (sr->engine);
  guint at = 0;

  if (error != NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      warn_failed (vps_stage_run_sid (sr), "a check", error);
      if (es->tempfail_on_error)
        sr->state->failed = TRUE;
    }
  for (guint i = 0; i < b->checks->len; i++)
    {
      Check *c = g_ptr_array_index (b->checks, i);
      Answer *a = &g_array_index (sr->state->answers, Answer, c->answer_index);

      a->answer = error == NULL && at + c->n_ops <= n ? check_answer (es, c, results + at)
                                                      : default_answer (c->kind);
      a->inflight = FALSE;
      at += c->n_ops;
    }
  g_ptr_array_unref (b->checks);
  g_free (b);
  vps_stage_run_pending_done (sr);
}

static void
batch_send (VpsStageRun *sr, VpsEngineState *es, GPtrArray *checks)
{
  VpsStateOp ops[VPS_STATE_MAX_OPS];
  Batch *b = g_new0 (Batch, 1);
  guint n = 0;

  for (guint i = 0; i < checks->len; i++)
    {
      Check *c = g_ptr_array_index (checks, i);
      memcpy (ops + n, c->ops, c->n_ops * sizeof ops[0]);
      n += c->n_ops;
    }
  b->sr = sr;
  b->checks = checks;
  sr->pending++;
  vps_state_exec_async (es->state, ops, n, g_task_get_cancellable (sr->task), batch_done, b);
}

void
vps_stage_run_state_flush (VpsStageRun *sr)
{
  VpsEngineState *es = vps_engine_get_state_ctx (sr->engine);
  VpsStageState *st = sr->state;
  g_autoptr (GPtrArray) queue = NULL;
  GPtrArray *batch = NULL;
  guint n = 0;

  if (st == NULL || st->queue == NULL || st->queue->len == 0)
    return;
  /* every check of this evaluation in one pipelined batch (more only past
   * VPS_STATE_MAX_OPS operations) */
  queue = g_steal_pointer (&st->queue);
  g_ptr_array_set_free_func (queue, NULL);
  for (guint i = 0; i < queue->len; i++)
    {
      Check *c = g_ptr_array_index (queue, i);
      if (batch != NULL && n + c->n_ops > VPS_STATE_MAX_OPS)
        {
          batch_send (sr, es, batch);
          batch = NULL;
        }
      if (batch == NULL)
        {
          batch = g_ptr_array_new_with_free_func ((GDestroyNotify)check_free);
          n = 0;
        }
      g_ptr_array_add (batch, c);
      n += c->n_ops;
    }
  if (batch != NULL)
    batch_send (sr, es, batch);
}

/* "vps:NS:" + key into buf (the rules bound keys well below the limit). */
static const char *
ns_key (char *buf, const char *ns, const char *key)
{
  g_snprintf (buf, VPS_STATE_MAX_KEY + 1, "%s%s", ns, key ? key : "");
  return buf;
}

gboolean
vps_stage_run_state (VpsStageRun *sr, const RulesStateCall *call, RulesValue *out)
{
  VpsEngineState *es = vps_engine_get_state_ctx (sr->engine);
  VpsStageState *st;
  VpsStateResult results[VPS_STATE_MAX_OPS];
  g_autoptr (GError) error = NULL;
  g_autofree char *member = NULL;
  char key[VPS_STATE_MAX_KEY + 1];
  guint64 hash = key_hash (call->key);
  VpsStateOp op = { 0 };
  Answer *known;
  Check *c;

  if (es == NULL || es->state == NULL)
    {
      answer_set (call->kind, default_answer (call->kind), out);
      return TRUE;
    }
  if ((st = sr->state) == NULL)
    {
      st = sr->state = g_new0 (VpsStageState, 1);
      st->answers = g_array_sized_new (FALSE, FALSE, sizeof (Answer), 4);
    }
  if ((known = answer_find (st, call->site, call->kind, hash)) != NULL)
    {
      if (known->inflight)
        return FALSE;
      answer_set (call->kind, known->answer, out);
      return TRUE;
    }

  c = g_new0 (Check, 1);
  c->kind = call->kind;
  c->limit = call->limit;
  switch (call->kind)
    {
      case RULES_STATE_RATE:
        op = (VpsStateOp){ VPS_STATE_WINDOW, ns_key (key, "vps:rate:", call->key), NULL,
                           call->limit, call->period * 1000 };
        break;
      case RULES_STATE_CONCURRENCY:
        member = member_name (es, sr->session);
        op = (VpsStateOp){ VPS_STATE_MEMBER_ADD, ns_key (key, "vps:conc:", call->key), member, 0,
                           VPS_ENGINE_CONC_TTL_MS };
        /* a session that could not remember the key (too many keys) could
         * not leave it at its end: it counts the others without joining */
        if (!session_join (es, sr->session, op.key))
          op = (VpsStateOp){ VPS_STATE_MEMBER_COUNT, op.key, NULL, 0, 0 };
        break;
      case RULES_STATE_GREYLISTED:
      default:
        c->strings = g_ptr_array_new_with_free_func (g_free);
        if (!grey_build (es, sr, c))
          {
            check_free (c);
            answer_add (st, call->site, call->kind, hash, FALSE, 0);
            answer_set (call->kind, 0, out);
            return TRUE;
          }
        break;
    }
  if (c->n_ops == 0)
    c->ops[c->n_ops++] = op; /* rate, concurrency: the strings are on our stack for now */
  if (vps_state_exec_try (es->state, c->ops, c->n_ops, results, &error))
    {
      gint64 answer = check_answer (es, c, results);
      check_free (c);
      answer_add (st, call->site, call->kind, hash, FALSE, answer);
      answer_set (call->kind, answer, out);
      return TRUE;
    }
  if (error != NULL)
    {
      /* a batch the interface refuses is ours to fix, not the backend's
       * failure: log it and do not limit */
      vps_warning (vps_stage_run_sid (sr), "state check refused: %s", error->message);
      check_free (c);
      answer_add (st, call->site, call->kind, hash, FALSE, default_answer (call->kind));
      answer_set (call->kind, default_answer (call->kind), out);
      return TRUE;
    }
  /* to be sent with the other checks of this evaluation: own the strings */
  if (c->strings == NULL)
    {
      c->strings = g_ptr_array_new_with_free_func (g_free);
      c->ops[0].key = keep (c, g_strdup (c->ops[0].key));
      if (c->ops[0].member)
        c->ops[0].member = keep (c, g_strdup (c->ops[0].member));
    }
  c->answer_index = st->answers->len;
  answer_add (st, call->site, call->kind, hash, TRUE, 0);
  if (st->queue == NULL)
    st->queue = g_ptr_array_new_with_free_func ((GDestroyNotify)check_free);
  g_ptr_array_add (st->queue, c);
  return FALSE;
}
