/* SPDX-License-Identifier: MIT
 *
 * dns.c — dnsbl() and resolves() of the rule language through GResolver.
 *
 * DNSBL convention (RFC 5782 §2.1): a listed address has an A record in
 * 127.0.0.0/8 under the zone; an answer outside 127/8 is a misbehaving list
 * (or a wildcarding resolver) and does not count.  Failures other than
 * "not found" are logged and read as "not listed": a broken list must not
 * reject mail.  Answers are cached per session so a rule re-evaluated after
 * RULES_STEP_WAIT (or several rules asking the same) queries once.
 */
#include "vps/dns.h"

#include <string.h>
#include "vps/log.h"

typedef struct
{
  VpsSession *session;
  RulesQuery query;
  char *key;
} Query;

static void
query_free (gpointer data)
{
  Query *q = data;
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

static gboolean
any_listed (GList *addresses)
{
  for (GList *l = addresses; l != NULL; l = l->next)
    {
      GInetAddress *a = l->data;
      if (g_inet_address_get_family (a) == G_SOCKET_FAMILY_IPV4
          && g_inet_address_to_bytes (a)[0] == 127)
        return TRUE;
    }
  return FALSE;
}

static void
lookup_done (GObject *source, GAsyncResult *res, gpointer data)
{
  g_autoptr (GTask) task = data;
  Query *q = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  GList *addresses = g_resolver_lookup_by_name_finish (G_RESOLVER (source), res, &error);
  gboolean answer = FALSE;

  if (addresses != NULL)
    answer = q->query == RULES_QUERY_DNSBL ? any_listed (addresses) : TRUE;
  else if (!g_error_matches (error, G_RESOLVER_ERROR, G_RESOLVER_ERROR_NOT_FOUND))
    vps_warning (vps_session_get_id (q->session), "dns query=%s error=\"%s\": read as %s", q->key,
                 error ? error->message : "no answer",
                 q->query == RULES_QUERY_DNSBL ? "not listed" : "not resolving");
  g_resolver_free_addresses (addresses);
  vps_session_dns_cache_store (q->session, q->key, answer);
  g_task_return_boolean (task, answer);
}

void
vps_dns_query_async (VpsSession *session, RulesQuery query, const char *name,
                     GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Query *q = g_new0 (Query, 1);
  gboolean answer;
  g_autoptr (GResolver) resolver = NULL;

  g_task_set_source_tag (task, vps_dns_query_async);
  g_task_set_check_cancellable (task, FALSE);
  q->session = vps_session_ref (session);
  q->query = query;
  q->key = cache_key (query, name);
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
  resolver = g_resolver_get_default ();
  if (query == RULES_QUERY_DNSBL)
    g_resolver_lookup_by_name_with_flags_async (
        resolver, name, G_RESOLVER_NAME_LOOKUP_FLAGS_IPV4_ONLY, cancellable, lookup_done, task);
  else
    g_resolver_lookup_by_name_async (resolver, name, cancellable, lookup_done, task);
}

gboolean
vps_dns_query_finish (GAsyncResult *result)
{
  return g_task_propagate_boolean (G_TASK (result), NULL);
}
