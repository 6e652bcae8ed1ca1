/* SPDX-License-Identifier: MIT
 *
 * delivery-remote.c — remote delivery (contract: delivery-remote.h).
 *
 * Why one dedicated thread with its own GMainContext: mta/smtp-out.h and
 * vps/resolver.h are asynchronous and belong to the main context they
 * were made on; the queue runner's pool threads are blocking (the rules'
 * synchronous stage runner, local delivery, fsync).  So a pool thread
 * hands its remote recipients to the remote thread (g_main_context_invoke)
 * and waits on a GCond until every group is done.  One event loop carries
 * every SMTP session and DNS query of all pool threads at once, so a slow
 * destination holds one pool thread, never the others, and the connection
 * cache of smtp-out is shared by every message (reuse per destination).
 * The pool size ([queue] delivery_threads) bounds the messages in remote
 * delivery at once.  The waiting pool thread owns the envelope: the remote
 * thread writes the recipients' states while the owner sleeps on the
 * GCond, and the GMutex orders those writes before the owner reads them.
 */
#include "mta/delivery-remote-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mta/bounce.h"
#include "mta/delivery-slots.h"
#include "mta/smtp-out.h"
#include "vps/dns.h"
#include "vps/log.h"
#include "vps/metrics.h"

struct _VpsRemote
{
  GThread *thread;
  GMainContext *context;
  GMainLoop *loop;
  GCancellable *cancellable;
  VpsSmtpOut *out; /* made lazily on the remote thread, for helo_name */
  char *helo_name;
  char *tls_ca; /* [delivery] tls_ca the client was made with */
  GMutex lock;
  GCond cond;
  VpsSlots *slots; /* connection slots (delivery-slots.h); remote thread only */
};

G_DEFINE_QUARK (vps - remote - error - quark, vps_remote_error)

/* One call of vps_remote_deliver. */
typedef struct
{
  VpsRemote *remote;
  VpsConfig *cfg;
  const VpsEnvelope *env;
  GBytes *raw;
  GPtrArray *rcpts;
  VpsResolver *resolver;
  VpsSmtpOutTlsPolicy tls_default;
  GHashTable *tls_map; /* destination key -> GINT_TO_POINTER (policy + 1), or NULL */
  GHashTable *auth;    /* relay key -> RemoteAuth*, or NULL */
  guint pending;       /* groups not finished; remote thread only */
  VpsRemoteDoneFunc done_func;
  gpointer done_data;
} RemoteJob;

/* The recipients of one destination. */
typedef struct
{
  RemoteJob *job;
  GPtrArray *rcpts; /* VpsRemoteRcpt* (the job's), still to deliver */
  char *dest;       /* the domain or the relay host */
  guint16 port;
  gboolean mx_lookup;
  gboolean relay;
  VpsSmtpOutTlsPolicy tls;
  const RemoteAuth *auth; /* the job's, or NULL */
  GPtrArray *hosts;       /* char*: MX host names, in order */
  guint host_index;
  GPtrArray *addrs; /* GInetAddress* of the current host */
  guint addr_index;
  guint tried;       /* addresses tried */
  gboolean applied;  /* a server's (or the client's) result is in the rcpts */
  char *last_result; /* for the deferred when nothing else was said */
  VpsSlot *slot;     /* the connection slot it holds, or NULL */
} Group;

static void
set_rcpt (VpsQueueRcpt *r, VpsRcptState state, char *result)
{
  r->state = state;
  g_free (r->result);
  r->result = result;
  r->updated = g_get_real_time ();
  vps_metrics_count_delivery (vps_rcpt_state_name (state));
}

static void
group_free (Group *g)
{
  g_ptr_array_unref (g->rcpts);
  g_free (g->dest);
  g_clear_pointer (&g->hosts, g_ptr_array_unref);
  g_clear_pointer (&g->addrs, g_ptr_array_unref);
  g_free (g->last_result);
  g_free (g);
}

/* Every group is done: the caller learns it (on this thread), and what
 * the job held goes. */
static void
job_finish (RemoteJob *job)
{
  job->done_func (job->done_data);
  g_clear_pointer (&job->tls_map, g_hash_table_unref);
  g_clear_pointer (&job->auth, g_hash_table_unref);
  g_ptr_array_unref (job->rcpts);
  g_bytes_unref (job->raw);
  vps_config_unref (job->cfg);
  vps_resolver_unref (job->resolver);
  g_free (job);
}

/* The slot goes last: releasing it may start (and finish) other groups,
 * of this job too. */
static void
group_done (Group *g)
{
  RemoteJob *job = g->job;
  VpsRemote *remote = job->remote;
  VpsSlot *slot = g->slot;

  group_free (g);
  if (--job->pending == 0)
    job_finish (job);
  vps_slots_release (remote->slots, slot);
}

/* Every recipient left in g gets state and result (a printf format). */
static void G_GNUC_PRINTF (3, 4) group_finish (Group *g, VpsRcptState state, const char *fmt, ...)
{
  g_autofree char *text = NULL;
  va_list ap;

  va_start (ap, fmt);
  text = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  for (guint i = 0; i < g->rcpts->len; i++)
    {
      VpsRemoteRcpt *rr = g_ptr_array_index (g->rcpts, i);

      if (state == VPS_RCPT_FAILED)
        vps_notice (g->job->env->id, "delivery: to=<%s> failed: %s", rr->rcpt->address, text);
      else
        vps_warning (g->job->env->id, "delivery: to=<%s> deferred: %s", rr->rcpt->address, text);
      set_rcpt (rr->rcpt, state, g_strdup (text));
    }
  group_done (g);
}

static void next_host (Group *g);
static void try_address (Group *g);

/* Text for the envelope (one line, bounded): it refuses control
 * characters, and the text may quote a server. */
static char *
one_line (const char *text)
{
  return vps_bounce_clean (text ? text : "", text ? strlen (text) : 0, TRUE,
                           VPS_BOUNCE_MAX_DIAGNOSTIC);
}

static char *
result_text (const VpsSmtpOutRcptResult *res, const char *mx_name, const char *addr)
{
  g_autofree char *text = NULL;
  gboolean bounce = res->verdict == VPS_SMTP_OUT_BOUNCE;

  if (res->code != 0 && !res->local)
    {
      g_autofree char *reply
          = g_strdup_printf ("%u%s%s %s", res->code, res->enhanced ? " " : "",
                             res->enhanced ? res->enhanced : "", res->text ? res->text : "");

      return vps_bounce_remote_result (mx_name, addr, reply, -1);
    }
  if (res->verdict == VPS_SMTP_OUT_DELIVERED)
    return g_strdup_printf ("250 2.0.0 delivered to %s[%s]", mx_name, addr);
  /* a decision made here, or a transport failure (the text names the host) */
  text = one_line (res->text);
  return g_strdup_printf ("%u %s %s",
                          res->code ? res->code
                          : bounce  ? 554u
                                    : 451u,
                          res->enhanced ? res->enhanced
                          : bounce      ? "5.0.0"
                                        : "4.4.1",
                          text);
}

static void
sent_cb (GObject *source, GAsyncResult *ares, gpointer data)
{
  Group *g = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsSmtpOutResult) res = vps_smtp_out_send_finish ((VpsSmtpOut *)source, ares, &error);
  const char *mx_name = g_ptr_array_index (g->hosts, g->host_index - 1);
  g_autofree char *addr = g_inet_address_to_string (g_ptr_array_index (g->addrs, g->addr_index));
  g_autoptr (GPtrArray) left = NULL;

  if (res == NULL)
    {
      group_finish (g, VPS_RCPT_DEFERRED, "451 4.4.2 delivery to %s[%s] interrupted: %s", mx_name,
                    addr, error->message);
      return;
    }
  left = g_ptr_array_new ();
  for (guint i = 0; i < res->n_rcpts && i < g->rcpts->len; i++)
    {
      VpsRemoteRcpt *rr = g_ptr_array_index (g->rcpts, i);
      const VpsSmtpOutRcptResult *r = &res->rcpts[i];
      char *text = result_text (r, mx_name, addr);

      switch (r->verdict)
        {
          case VPS_SMTP_OUT_DELIVERED:
            vps_info (g->job->env->id, "delivery: to=<%s> delivered relay=%s: %s",
                      rr->rcpt->address, res->remote ? res->remote : addr, text);
            set_rcpt (rr->rcpt, VPS_RCPT_DELIVERED, text);
            break;
          case VPS_SMTP_OUT_BOUNCE:
            vps_notice (g->job->env->id, "delivery: to=<%s> failed: %s", rr->rcpt->address, text);
            set_rcpt (rr->rcpt, VPS_RCPT_FAILED, text);
            break;
          case VPS_SMTP_OUT_DEFER:
          default:
            vps_warning (g->job->env->id, "delivery: to=<%s> deferred: %s", rr->rcpt->address,
                         text);
            set_rcpt (rr->rcpt, VPS_RCPT_DEFERRED, text);
            g_ptr_array_add (left, rr);
            break;
        }
    }
  if (left->len == 0 || !res->try_next)
    {
      group_done (g);
      return;
    }
  /* the failure was this host's: the deferred ones try the next address */
  g->applied = TRUE;
  g_ptr_array_set_size (g->rcpts, 0);
  g_ptr_array_extend (g->rcpts, left, NULL, NULL);
  g->addr_index++;
  try_address (g);
}

static VpsSmtpOut *
get_out (VpsRemote *remote, VpsConfig *cfg)
{
  const char *helo = vps_config_get_string (cfg, "vsmtpd", "hostname");

  if (helo == NULL)
    helo = g_get_host_name ();
  const char *ca = vps_config_get_path_value (cfg, "delivery", "tls_ca");

  if (remote->out == NULL || g_strcmp0 (helo, remote->helo_name) != 0
      || g_strcmp0 (ca, remote->tls_ca) != 0)
    {
      g_autoptr (GError) error = NULL;
      VpsSmtpOutConfig config = { 0 };

      config.helo_name = helo;
      config.tls_ca_file = ca;
      g_clear_pointer (&remote->out, vps_smtp_out_unref);
      remote->out = vps_smtp_out_new (&config, &error);
      if (remote->out == NULL)
        vps_warning (NULL, "delivery: SMTP client: %s", error->message);
      g_free (remote->helo_name);
      remote->helo_name = g_strdup (helo);
      g_free (remote->tls_ca);
      remote->tls_ca = g_strdup (ca);
    }
  return remote->out;
}

static void
try_address (Group *g)
{
  RemoteJob *job = g->job;
  const VpsEnvelope *env = job->env;
  VpsSmtpOut *out;
  g_autofree VpsSmtpOutRcpt *rcpts = NULL;
  g_autofree char *addr = NULL;
  VpsSmtpOutTarget target = { 0 };
  VpsSmtpOutMessage msg = { 0 };

  if (g->addrs == NULL || g->addr_index >= g->addrs->len || g->tried >= VPS_REMOTE_MAX_ADDRESSES)
    {
      next_host (g);
      return;
    }
  out = get_out (job->remote, job->cfg);
  if (out == NULL)
    {
      group_finish (g, VPS_RCPT_DEFERRED, "451 4.3.5 SMTP client not available");
      return;
    }
  g->tried++;
  addr = g_inet_address_to_string (g_ptr_array_index (g->addrs, g->addr_index));
  rcpts = g_new0 (VpsSmtpOutRcpt, g->rcpts->len);
  for (guint i = 0; i < g->rcpts->len; i++)
    {
      VpsQueueRcpt *r = ((VpsRemoteRcpt *)g_ptr_array_index (g->rcpts, i))->rcpt;

      rcpts[i].address = r->address;
      rcpts[i].notify = r->notify;
      rcpts[i].orcpt = r->orcpt;
    }
  target.address = addr;
  target.port = g->port;
  target.mx_name = g_ptr_array_index (g->hosts, g->host_index - 1);
  target.tls = g->tls;
  /* credentials only where TLS may come up: smtp-out refuses to send them
   * over a plaintext session (the recipients are deferred then) */
  if (g->auth != NULL && g->tls != VPS_SMTP_OUT_TLS_NONE)
    {
      target.auth_user = g->auth->user;
      target.auth_password = g->auth->password;
    }
  msg.log_id = env->id;
  msg.sender = env->sender ? env->sender : "";
  msg.rcpts = rcpts;
  msg.n_rcpts = g->rcpts->len;
  msg.ret = vps_remote_ret (env->ret);
  msg.envid = env->envid;
  msg.body = vps_remote_body (env->body);
  msg.smtputf8 = env->smtputf8;
  msg.content = job->raw;
  vps_smtp_out_send_async (out, &target, &msg, job->remote->cancellable, sent_cb, g);
}

static void
addresses_cb (GObject *source, GAsyncResult *ares, gpointer data)
{
  Group *g = data;
  g_autoptr (GError) error = NULL;
  GPtrArray *addrs = vps_resolver_lookup_addresses_finish ((VpsResolver *)source, ares, &error);
  const char *host = g_ptr_array_index (g->hosts, g->host_index - 1);

  g_clear_pointer (&g->addrs, g_ptr_array_unref);
  if (addrs == NULL)
    {
      if (g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_CANCELLED))
        {
          group_finish (g, VPS_RCPT_DEFERRED, "451 4.4.2 delivery interrupted");
          return;
        }
      g_free (g->last_result);
      g->last_result = g_strdup_printf ("451 4.4.3 host %s: %s", host, error->message);
      next_host (g);
      return;
    }
  g->addrs = addrs;
  g->addr_index = 0;
  try_address (g);
}

/* The next MX host (or the relay host): resolve its addresses. */
static void
next_host (Group *g)
{
  if (g->host_index >= g->hosts->len || g->tried >= VPS_REMOTE_MAX_ADDRESSES)
    {
      /* what the last host said is already logged and stored: keep it */
      if (g->applied)
        {
          group_done (g);
          return;
        }
      group_finish (g, VPS_RCPT_DEFERRED, "%s",
                    g->last_result ? g->last_result : "451 4.4.3 no usable address");
      return;
    }
  g->host_index++;
  vps_resolver_lookup_addresses_async (
      g->job->resolver, g_ptr_array_index (g->hosts, g->host_index - 1), VPS_RESOLVER_FAMILY_ANY,
      g->job->remote->cancellable, addresses_cb, g);
}

static void
mx_cb (GObject *source, GAsyncResult *ares, gpointer data)
{
  Group *g = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) mxs = vps_resolver_lookup_mx_finish ((VpsResolver *)source, ares, &error);

  if (mxs != NULL)
    {
      for (guint i = 0; i < mxs->len && i < VPS_REMOTE_MAX_HOSTS; i++)
        g_ptr_array_add (g->hosts,
                         g_strdup (((VpsResolverMx *)g_ptr_array_index (mxs, i))->exchange));
    }
  else if (g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NODATA))
    g_ptr_array_add (g->hosts, g_strdup (g->dest)); /* RFC 5321 §5.1: the implicit MX */
  else if (g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NXDOMAIN))
    {
      group_finish (g, VPS_RCPT_FAILED, "550 5.1.2 domain %s does not exist", g->dest);
      return;
    }
  else if (g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NULL_MX))
    {
      group_finish (g, VPS_RCPT_FAILED, "556 5.1.10 domain %s does not accept mail (null MX)",
                    g->dest);
      return;
    }
  else
    {
      group_finish (g, VPS_RCPT_DEFERRED, "451 4.4.3 MX lookup for %s: %s", g->dest,
                    error->message);
      return;
    }
  next_host (g);
}

/* ---- connection slots ----------------------------------------------------------
 *
 * A group in progress holds one slot (mta/delivery-slots.h): it runs one
 * SMTP session at a time (addresses are tried one after the other), so at
 * most [delivery] max_connections sessions run in all and
 * destination_concurrency to one destination — the recipient domain, or
 * the relay target.  A slow or dead destination holds its own slots only,
 * and the others' mail goes on. */

static void group_run (Group *g);

static void
slot_run (VpsSlot *slot, gpointer item, gpointer data)
{
  Group *g = item;

  g->slot = slot;
  group_run (g);
}

static void
group_start (Group *g)
{
  VpsRemote *remote = g->job->remote;
  VpsConfig *cfg = g->job->cfg;
  g_autofree char *key = NULL;

  if (g_cancellable_is_cancelled (remote->cancellable))
    {
      group_run (g); /* ends at once, as interrupted */
      return;
    }
  key = g_strdup_printf ("%c%u:%s", g->relay ? 'r' : 'd', g->port, g->dest);
  vps_slots_set_limits (remote->slots,
                        (guint)vps_config_get_int (cfg, "delivery", "max_connections"),
                        (guint)vps_config_get_int (cfg, "delivery", "destination_concurrency"));
  vps_slots_submit (remote->slots, key, g);
}

static void
group_run (Group *g)
{
  if (g_cancellable_is_cancelled (g->job->remote->cancellable))
    {
      group_finish (g, VPS_RCPT_DEFERRED, "451 4.4.2 delivery interrupted");
      return;
    }
  if (!g->mx_lookup)
    {
      g_ptr_array_add (g->hosts, g_strdup (g->dest));
      next_host (g);
      return;
    }
  vps_resolver_lookup_mx_async (g->job->resolver, g->dest, g->job->remote->cancellable, mx_cb, g);
}

/* The key of a relay target in tls_policy_map and relay_auth_file:
 * "[host]:port" (or "host:port" for a target looked up by MX), lower case. */
static Group *
group_new (RemoteJob *job, const char *dest, guint16 port, gboolean mx_lookup, gboolean relay)
{
  Group *g = g_new0 (Group, 1);
  g_autofree char *key
      = relay ? vps_remote_relay_key (dest, port, mx_lookup) : g_ascii_strdown (dest, -1);
  gpointer policy = job->tls_map ? g_hash_table_lookup (job->tls_map, key) : NULL;

  /* a domain is matched for MX delivery only, a target for relay only */
  g->tls = policy != NULL ? (VpsSmtpOutTlsPolicy)(GPOINTER_TO_INT (policy) - 1) : job->tls_default;
  g->auth = relay && job->auth ? g_hash_table_lookup (job->auth, key) : NULL;
  g->relay = relay;

  g->job = job;
  g->rcpts = g_ptr_array_new ();
  g->dest = g_ascii_strdown (dest, -1);
  g->port = port;
  g->mx_lookup = mx_lookup;
  g->hosts = g_ptr_array_new_with_free_func (g_free);
  return g;
}

/* On the remote thread: group the recipients, start every group. */
static gboolean
job_start (gpointer data)
{
  RemoteJob *job = data;
  guint16 smtp_port = (guint16)vps_config_get_int (job->cfg, "delivery", "smtp_port");
  g_autoptr (GHashTable) groups = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GPtrArray) order = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  const char *policy_name = vps_config_get_string (job->cfg, "delivery", "tls_policy");

  if (!vps_smtp_out_tls_policy_from_name (policy_name, &job->tls_default))
    job->tls_default = VPS_SMTP_OUT_TLS_MAY; /* the schema allows no other value */
  /* a map that does not load defers everything: never a weaker policy or
   * no AUTH than the admin asked for */
  if (!vps_remote_load_maps (job->cfg, &job->tls_map, &job->auth, &error))
    {
      g_autofree char *text = one_line (error->message);

      for (guint i = 0; i < job->rcpts->len; i++)
        {
          VpsRemoteRcpt *rr = g_ptr_array_index (job->rcpts, i);

          vps_warning (job->env->id, "delivery: to=<%s> deferred: 451 4.3.5 %s", rr->rcpt->address,
                       text);
          set_rcpt (rr->rcpt, VPS_RCPT_DEFERRED, g_strdup_printf ("451 4.3.5 %s", text));
        }
      job_finish (job);
      return G_SOURCE_REMOVE;
    }
  for (guint i = 0; i < job->rcpts->len; i++)
    {
      VpsRemoteRcpt *rr = g_ptr_array_index (job->rcpts, i);
      g_autofree char *host = NULL;
      g_autofree char *key = NULL;
      guint16 port = smtp_port;
      gboolean mx_lookup = TRUE;
      Group *g;

      if (rr->relay)
        {
          if (!vps_remote_parse_target (rr->target, &host, &port, &mx_lookup))
            {
              set_rcpt (rr->rcpt, VPS_RCPT_DEFERRED,
                        g_strdup ("451 4.3.5 bad relay target (expected [HOST]:PORT)"));
              vps_warning (job->env->id, "delivery: to=<%s> deferred: bad relay target",
                           rr->rcpt->address);
              continue;
            }
        }
      else
        {
          const char *at = strrchr (rr->rcpt->address, '@');

          if (at == NULL || at[1] == '\0')
            {
              set_rcpt (rr->rcpt, VPS_RCPT_FAILED,
                        g_strdup ("550 5.1.3 no domain in the recipient address"));
              continue;
            }
          if (at[1] == '[' && vps_remote_parse_target (at + 1, &host, &port, &mx_lookup))
            port = smtp_port; /* an address literal: no MX lookup */
          else
            host = g_strdup (at + 1);
        }
      key = g_strdup_printf ("%c%c%u:%s", rr->relay ? 'r' : 'd', mx_lookup ? 'm' : 'a', port, host);
      g = g_hash_table_lookup (groups, key);
      if (g == NULL || g->rcpts->len >= VPS_SMTP_OUT_MAX_RCPTS)
        {
          g = group_new (job, host, port, mx_lookup, rr->relay);
          g_hash_table_replace (groups, g_strdup (key), g);
          g_ptr_array_add (order, g);
        }
      g_ptr_array_add (g->rcpts, rr);
    }
  job->pending = order->len + 1; /* +1: no group finishes the job early */
  for (guint i = 0; i < order->len; i++)
    group_start (g_ptr_array_index (order, i));
  job->pending--;
  if (job->pending == 0)
    job_finish (job);
  return G_SOURCE_REMOVE;
}

void
vps_remote_deliver_async (VpsRemote *remote, VpsConfig *cfg, const VpsEnvelope *env, GBytes *raw,
                          GPtrArray *rcpts, VpsRemoteDoneFunc done_func, gpointer done_data)
{
  RemoteJob *job;

  if (rcpts->len == 0)
    {
      done_func (done_data);
      return;
    }
  job = g_new0 (RemoteJob, 1);
  job->remote = remote;
  job->cfg = vps_config_ref (cfg);
  job->env = env;
  job->raw = g_bytes_ref (raw);
  job->rcpts = g_ptr_array_ref (rcpts);
  job->resolver = vps_dns_get_resolver (cfg);
  job->done_func = done_func;
  job->done_data = done_data;
  g_main_context_invoke (remote->context, job_start, job);
}

typedef struct
{
  VpsRemote *remote;
  gboolean done;
} SyncWait;

static void
sync_done (gpointer data)
{
  SyncWait *wait = data;

  g_mutex_lock (&wait->remote->lock);
  wait->done = TRUE;
  g_cond_broadcast (&wait->remote->cond);
  g_mutex_unlock (&wait->remote->lock);
}

void
vps_remote_deliver (VpsRemote *remote, VpsConfig *cfg, const VpsEnvelope *env, GBytes *raw,
                    GPtrArray *rcpts)
{
  SyncWait wait = { remote, FALSE };

  vps_remote_deliver_async (remote, cfg, env, raw, rcpts, sync_done, &wait);
  g_mutex_lock (&remote->lock);
  while (!wait.done)
    g_cond_wait (&remote->cond, &remote->lock);
  g_mutex_unlock (&remote->lock);
}

static gpointer
remote_thread (gpointer data)
{
  VpsRemote *remote = data;

  g_main_context_push_thread_default (remote->context);
  g_main_loop_run (remote->loop);
  /* idle connections say QUIT; not waited for */
  g_clear_pointer (&remote->out, vps_smtp_out_unref);
  while (g_main_context_iteration (remote->context, FALSE))
    ;
  g_main_context_pop_thread_default (remote->context);
  return NULL;
}

VpsRemote *
vps_remote_new (void)
{
  VpsRemote *remote = g_new0 (VpsRemote, 1);

  g_mutex_init (&remote->lock);
  g_cond_init (&remote->cond);
  remote->context = g_main_context_new ();
  remote->loop = g_main_loop_new (remote->context, FALSE);
  remote->cancellable = g_cancellable_new ();
  remote->slots = vps_slots_new (slot_run, NULL);
  remote->thread = g_thread_new ("vsmtpd-remote", remote_thread, remote);
  return remote;
}

static gboolean
cancel_func (gpointer data)
{
  VpsRemote *remote = data;

  /* on the remote thread: the cancelled handlers run where smtp-out and
   * the resolver expect them */
  g_cancellable_cancel (remote->cancellable);
  if (remote->out != NULL)
    vps_smtp_out_close_idle (remote->out);
  vps_slots_flush (remote->slots); /* the waiting groups end as interrupted */
  return G_SOURCE_REMOVE;
}

void
vps_remote_cancel (VpsRemote *remote)
{
  g_main_context_invoke (remote->context, cancel_func, remote);
}

static gboolean
quit_func (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

void
vps_remote_free (VpsRemote *remote)
{
  if (remote == NULL)
    return;
  g_main_context_invoke (remote->context, quit_func, remote->loop);
  g_thread_join (remote->thread);
  g_free (remote->helo_name);
  g_free (remote->tls_ca);
  g_object_unref (remote->cancellable);
  vps_slots_free (remote->slots);
  g_main_loop_unref (remote->loop);
  g_main_context_unref (remote->context);
  g_cond_clear (&remote->cond);
  g_mutex_clear (&remote->lock);
  g_free (remote);
}
