/* SPDX-License-Identifier: MIT
 *
 * dns.c — dnsbl() and resolves() of the rule language, through
 * vps/resolver.h when `[dns] nameserver` is set, through GResolver (the
 * system resolver) when it is not.
 *
 * Why two paths: GResolver cannot be pointed at a server, so the
 * documented key needs libresolv; but without the key GResolver is what
 * operators get from every other GLib program (nsswitch, /etc/hosts), and
 * the unit tests install a fake GResolver to answer.  `[dns] timeout`
 * bounds both: the resolver has its own timer, the GResolver lookup is
 * cancelled by ours (GLib 2.74 has no resolver timeout).
 *
 * DNSBL convention (RFC 5782 §2.1): a listed address has an A record in
 * 127.0.0.0/8 under the zone; an answer outside 127/8 is a misbehaving list
 * (or a wildcarding resolver) and does not count.  Failures other than
 * "not found" are logged and read as "not listed": a broken list must not
 * reject mail.  Answers are cached per session so a rule re-evaluated after
 * RULES_STEP_WAIT (or several rules asking the same) queries once; a
 * cancelled query is not cached.
 */
#include "vps/dns.h"

#include <string.h>
#include "vps/log.h"

typedef struct
{
  VpsSession *session;
  RulesQuery query;
  char *key;
  /* GResolver path: `own` is what the lookup watches; the caller's
   * cancellable and our timer both cancel it. */
  GCancellable *own;
  GCancellable *parent;
  gulong parent_handler;
  GSource *timer;
  gint64 timeout_ms;
  gboolean timed_out;
} Query;

/* The process's resolvers, by [dns] settings as written in the config. */
typedef struct
{
  char *nameserver; /* NULL: the system's servers */
  gint64 timeout_ms;
  VpsResolver *resolver;
} SharedResolver;

static GMutex resolvers_lock;
static GPtrArray *resolvers; /* SharedResolver*, oldest first */

static void
shared_resolver_free (gpointer data)
{
  SharedResolver *s = data;

  g_free (s->nameserver);
  g_clear_pointer (&s->resolver, vps_resolver_unref);
  g_free (s);
}

static void
query_free (gpointer data)
{
  Query *q = data;

  if (q->timer != NULL)
    {
      g_source_destroy (q->timer);
      g_source_unref (q->timer);
    }
  if (q->parent_handler != 0)
    g_cancellable_disconnect (q->parent, q->parent_handler);
  g_clear_object (&q->parent);
  g_clear_object (&q->own);
  vps_session_unref (q->session);
  g_free (q->key);
  g_free (q);
}

static char *
cache_key (RulesQuery query, const char *name)
{
  return g_strconcat (query == RULES_QUERY_DNSBL ? "dnsbl:" : "resolves:", name, NULL);
}

gboolean
vps_dns_cached (VpsSession *session, RulesQuery query, const char *name, gboolean *answer)
{
  g_autofree char *key = cache_key (query, name);
  return vps_session_dns_cache_lookup (session, key, answer);
}

VpsResolver *
vps_dns_get_resolver (VpsConfig *cfg)
{
  const char *ns = vps_config_get_string (cfg, "dns", "nameserver");
  gint64 timeout_ms = vps_config_get_duration_ms (cfg, "dns", "timeout");
  g_autoptr (GError) error = NULL;
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&resolvers_lock);
  SharedResolver *shared;

  if (ns != NULL && ns[0] == '\0')
    ns = NULL;
  if (resolvers == NULL)
    resolvers = g_ptr_array_new_with_free_func (shared_resolver_free);
  for (guint i = 0; i < resolvers->len; i++)
    {
      SharedResolver *old = resolvers->pdata[i];

      if (old->timeout_ms == timeout_ms && g_strcmp0 (old->nameserver, ns) == 0)
        return vps_resolver_ref (old->resolver);
    }
  shared = g_new0 (SharedResolver, 1);
  shared->resolver = vps_resolver_new (ns, timeout_ms, &error);
  if (shared->resolver == NULL)
    {
      /* the config checked the key already: this is a bug, and the
       * caller falls back to the system resolver */
      g_warning ("[dns] nameserver: %s", error->message);
      shared_resolver_free (shared);
      return NULL;
    }
  shared->nameserver = g_strdup (ns);
  shared->timeout_ms = timeout_ms;
  if (resolvers->len >= VPS_DNS_MAX_RESOLVERS)
    g_ptr_array_remove_index (resolvers, 0);
  g_ptr_array_add (resolvers, shared);
  return vps_resolver_ref (shared->resolver);
}

static gboolean
any_listed (GPtrArray *addresses)
{
  for (guint i = 0; i < addresses->len; i++)
    {
      GInetAddress *a = addresses->pdata[i];
      if (g_inet_address_get_family (a) == G_SOCKET_FAMILY_IPV4
          && g_inet_address_to_bytes (a)[0] == 127)
        return TRUE;
    }
  return FALSE;
}

static void
query_return (GTask *task, gboolean answer, const GError *error, gboolean silent)
{
  Query *q = g_task_get_task_data (task);

  if (error != NULL && !silent)
    vps_warning (vps_session_get_id (q->session), "dns query=%s error=\"%s\": read as %s", q->key,
                 error->message, q->query == RULES_QUERY_DNSBL ? "not listed" : "not resolving");
  vps_session_dns_cache_store (q->session, q->key, answer);
  g_task_return_boolean (task, answer);
}

/* ---- libresolv path ----------------------------------------------------- */

static void
resolver_done (GObject *source, GAsyncResult *res, gpointer data)
{
  g_autoptr (GTask) task = data;
  Query *q = g_task_get_task_data (task);
  VpsResolver *resolver = g_object_get_data (G_OBJECT (task), "vps-resolver");
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) addresses = vps_resolver_lookup_addresses_finish (resolver, res, &error);

  if (g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_CANCELLED))
    {
      g_task_return_boolean (task, FALSE);
      return;
    }
  query_return (
      task, addresses != NULL && (q->query == RULES_QUERY_DNSBL ? any_listed (addresses) : TRUE),
      error,
      g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NXDOMAIN)
          || g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_NODATA)
          || g_error_matches (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_INVALID_NAME));
}

/* ---- GResolver path ------------------------------------------------------ */

static void
lookup_done (GObject *source, GAsyncResult *res, gpointer data)
{
  g_autoptr (GTask) task = data;
  Query *q = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  GList *list = g_resolver_lookup_by_name_finish (G_RESOLVER (source), res, &error);
  g_autoptr (GPtrArray) addresses = g_ptr_array_new_with_free_func (g_object_unref);

  /* on this thread, before anything can free q: the timer uses it */
  g_source_destroy (q->timer);
  for (GList *l = list; l != NULL; l = l->next)
    g_ptr_array_add (addresses, g_object_ref (l->data));
  g_resolver_free_addresses (list);
  if (q->timed_out)
    {
      g_clear_error (&error);
      error
          = g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                         "no answer within %" G_GINT64_FORMAT " ms ([dns] timeout)", q->timeout_ms);
    }
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_task_return_boolean (task, FALSE);
      return;
    }
  query_return (
      task, addresses->len > 0 && (q->query == RULES_QUERY_DNSBL ? any_listed (addresses) : TRUE),
      addresses->len > 0 ? NULL : error,
      g_error_matches (error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_NOT_FOUND));
}

static gboolean
lookup_timed_out (gpointer data)
{
  Query *q = data;

  q->timed_out = TRUE;
  g_cancellable_cancel (q->own);
  return G_SOURCE_REMOVE;
}

static void
parent_cancelled (GCancellable *parent, gpointer data)
{
  /* runs in the thread that cancelled; GCancellable is thread-safe */
  g_cancellable_cancel (G_CANCELLABLE (data));
}

static void
start_gresolver (GTask *task, Query *q, const char *name, GCancellable *cancellable)
{
  g_autoptr (GResolver) resolver = g_resolver_get_default ();

  q->own = g_cancellable_new ();
  if (cancellable != NULL)
    {
      q->parent = g_object_ref (cancellable);
      /* connect calls the handler at once when already cancelled */
      q->parent_handler = g_cancellable_connect (cancellable, G_CALLBACK (parent_cancelled),
                                                 g_object_ref (q->own), g_object_unref);
    }
  q->timer = g_timeout_source_new ((guint)MIN (q->timeout_ms, G_MAXUINT));
  g_source_set_static_name (q->timer, "vps dns timeout");
  g_source_set_callback (q->timer, lookup_timed_out, q, NULL);
  g_source_attach (q->timer, g_task_get_context (task));
  if (q->query == RULES_QUERY_DNSBL)
    g_resolver_lookup_by_name_with_flags_async (
        resolver, name, G_RESOLVER_NAME_LOOKUP_FLAGS_IPV4_ONLY, q->own, lookup_done, task);
  else
    g_resolver_lookup_by_name_async (resolver, name, q->own, lookup_done, task);
}

void
vps_dns_query_config_async (VpsConfig *cfg, VpsSession *session, RulesQuery query, const char *name,
                            GCancellable *cancellable, GAsyncReadyCallback callback,
                            gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Query *q = g_new0 (Query, 1);
  const char *ns = cfg ? vps_config_get_string (cfg, "dns", "nameserver") : NULL;
  gboolean answer;
  VpsResolver *resolver;

  g_task_set_source_tag (task, vps_dns_query_async);
  g_task_set_check_cancellable (task, FALSE);
  q->session = vps_session_ref (session);
  q->query = query;
  q->key = cache_key (query, name);
  q->timeout_ms
      = cfg ? vps_config_get_duration_ms (cfg, "dns", "timeout") : VPS_RESOLVER_DEFAULT_TIMEOUT_MS;
  if (q->timeout_ms <= 0)
    q->timeout_ms = VPS_RESOLVER_DEFAULT_TIMEOUT_MS;
  g_task_set_task_data (task, q, query_free);

  if (vps_session_dns_cache_lookup (session, q->key, &answer))
    {
      g_task_return_boolean (task, answer);
      g_object_unref (task);
      return;
    }
  /* A name longer than DNS allows (or empty) cannot be listed. */
  if (name == NULL || name[0] == '\0' || strlen (name) > VPS_DNS_MAX_NAME)
    {
      vps_session_dns_cache_store (session, q->key, FALSE);
      g_task_return_boolean (task, FALSE);
      g_object_unref (task);
      return;
    }
  resolver = ns != NULL && ns[0] != '\0' ? vps_dns_get_resolver (cfg) : NULL;
  if (resolver == NULL)
    {
      start_gresolver (task, q, name, cancellable);
      return;
    }
  g_object_set_data_full (G_OBJECT (task), "vps-resolver", resolver,
                          (GDestroyNotify)vps_resolver_unref);
  vps_resolver_lookup_addresses_async (resolver, name,
                                       query == RULES_QUERY_DNSBL ? VPS_RESOLVER_FAMILY_IPV4
                                                                  : VPS_RESOLVER_FAMILY_ANY,
                                       cancellable, resolver_done, task);
}

void
vps_dns_query_async (VpsSession *session, RulesQuery query, const char *name,
                     GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  vps_dns_query_config_async (NULL, session, query, name, cancellable, callback, user_data);
}

gboolean
vps_dns_query_finish (GAsyncResult *result)
{
  return g_task_propagate_boolean (G_TASK (result), NULL);
}
