/* SPDX-License-Identifier: MIT
 *
 * session.c — VpsSession (one SMTP connection) and VpsTxn (one message).
 *
 * Plain data holders with atomic reference counts.  Ids: a process-wide
 * counter started from the clock in microseconds, printed as 12 hex digits,
 * so ids are unique in the process, increase, and do not repeat across a
 * restart unless more than one id per microsecond was handed out.
 */
#include "vps/session.h"

#include <string.h>
#include "vps/connector.h"
#include "vps/engine.h"

struct _VpsSession
{
  gatomicrefcount ref;
  char id[16];
  char *client_ip, *client_ptr, *server_ip, *server_name, *helo;
  guint16 client_port, server_port;
  gboolean tls_active;
  char *tls_version, *tls_cipher, *tls_peer_subject;
  gboolean authenticated;
  char *auth_user, *auth_mechanism;
  GHashTable *macros;    /* name → value */
  GHashTable *dns_cache; /* key → GINT_TO_POINTER (answer + 1) */
  gboolean accept_all;
  GArray *end_notifies; /* EndNotify, or NULL */
  GPtrArray *joined;    /* char*: concurrency() keys, or NULL */
};

typedef struct
{
  GDestroyNotify func;
  gpointer data;
} EndNotify;

typedef struct
{
  char *address;
  GPtrArray *params; /* "KEY=value" */
} Path;

struct _VpsTxn
{
  gatomicrefcount ref;
  VpsSession *session;
  char id[16];
  Path *sender;
  Path *rcpt;           /* being checked / delivered */
  GPtrArray *rcpts;     /* Path*, accepted */
  GPtrArray *rcpt_strv; /* NULL-terminated view of rcpts' addresses */
  VpsMessage *message;
  guint64 size;
  char *queue_id;
  guint attempts;
  gboolean accept_all;
  RulesProgram *program;
  RulesState *state;
  GHashTable *results; /* name → VpsConnectorResult* */
  GPtrArray *mods;
  GPtrArray *stages;
  char *quarantine;
  GPtrArray *delivers;
  GPtrArray *exports;
  gboolean dry_run;
};

static void
new_id (char *buf)
{
  static gint64 base; /* first id: the clock */
  static gint counter;
  gint64 b;

  if (g_once_init_enter (&base))
    g_once_init_leave (&base, g_get_real_time ());
  b = base;
  g_snprintf (buf, 16, "%012" G_GINT64_MODIFIER "X",
              (b + g_atomic_int_add (&counter, 1)) & G_GINT64_CONSTANT (0xFFFFFFFFFFFF));
}

/* ---- session -------------------------------------------------------------- */

VpsSession *
vps_session_new (void)
{
  VpsSession *s = g_new0 (VpsSession, 1);

  g_atomic_ref_count_init (&s->ref);
  new_id (s->id);
  s->client_ip = g_strdup ("");
  s->server_ip = g_strdup ("");
  s->macros = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  s->dns_cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return s;
}

VpsSession *
vps_session_ref (VpsSession *session)
{
  g_return_val_if_fail (session != NULL, NULL);
  g_atomic_ref_count_inc (&session->ref);
  return session;
}

void
vps_session_unref (VpsSession *s)
{
  if (s == NULL || !g_atomic_ref_count_dec (&s->ref))
    return;
  for (guint i = 0; s->end_notifies != NULL && i < s->end_notifies->len; i++)
    {
      EndNotify *n = &g_array_index (s->end_notifies, EndNotify, i);
      n->func (n->data);
    }
  g_clear_pointer (&s->end_notifies, g_array_unref);
  g_clear_pointer (&s->joined, g_ptr_array_unref);
  g_free (s->client_ip);
  g_free (s->client_ptr);
  g_free (s->server_ip);
  g_free (s->server_name);
  g_free (s->helo);
  g_free (s->tls_version);
  g_free (s->tls_cipher);
  g_free (s->tls_peer_subject);
  g_free (s->auth_user);
  g_free (s->auth_mechanism);
  g_hash_table_unref (s->macros);
  g_hash_table_unref (s->dns_cache);
  g_free (s);
}

gboolean
vps_session_add_end_notify (VpsSession *s, GDestroyNotify func, gpointer data)
{
  EndNotify n = { func, data };

  g_return_val_if_fail (func != NULL, FALSE);
  if (s->end_notifies == NULL)
    s->end_notifies = g_array_new (FALSE, FALSE, sizeof (EndNotify));
  if (s->end_notifies->len >= VPS_SESSION_MAX_END_NOTIFIES)
    return FALSE;
  g_array_append_val (s->end_notifies, n);
  return TRUE;
}

gboolean
vps_session_join (VpsSession *s, const char *key)
{
  g_return_val_if_fail (key != NULL, FALSE);
  if (s->joined == NULL)
    s->joined = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < s->joined->len; i++)
    if (strcmp (g_ptr_array_index (s->joined, i), key) == 0)
      return FALSE;
  if (s->joined->len >= VPS_SESSION_MAX_JOINED)
    return FALSE;
  g_ptr_array_add (s->joined, g_strdup (key));
  return TRUE;
}

GPtrArray *
vps_session_get_joined (const VpsSession *s)
{
  return s->joined;
}

static void
replace (char **slot, const char *value)
{
  char *old = *slot;
  *slot = g_strdup (value);
  g_free (old);
}

const char *
vps_session_get_id (const VpsSession *s)
{
  return s->id;
}

void
vps_session_set_client (VpsSession *s, const char *ip, guint16 port, const char *ptr)
{
  replace (&s->client_ip, ip ? ip : "");
  s->client_port = port;
  replace (&s->client_ptr, ptr);
}

const char *
vps_session_get_client_ip (const VpsSession *s)
{
  return s->client_ip;
}

guint16
vps_session_get_client_port (const VpsSession *s)
{
  return s->client_port;
}

const char *
vps_session_get_client_ptr (const VpsSession *s)
{
  return s->client_ptr;
}

void
vps_session_set_server (VpsSession *s, const char *ip, guint16 port, const char *name)
{
  replace (&s->server_ip, ip ? ip : "");
  s->server_port = port;
  replace (&s->server_name, name);
}

const char *
vps_session_get_server_ip (const VpsSession *s)
{
  return s->server_ip;
}

guint16
vps_session_get_server_port (const VpsSession *s)
{
  return s->server_port;
}

const char *
vps_session_get_server_name (const VpsSession *s)
{
  return s->server_name;
}

void
vps_session_set_helo (VpsSession *s, const char *helo)
{
  replace (&s->helo, helo);
}

const char *
vps_session_get_helo (const VpsSession *s)
{
  return s->helo;
}

void
vps_session_set_tls (VpsSession *s, gboolean active, const char *version, const char *cipher,
                     const char *peer_subject)
{
  s->tls_active = active;
  replace (&s->tls_version, version);
  replace (&s->tls_cipher, cipher);
  replace (&s->tls_peer_subject, peer_subject);
}

gboolean
vps_session_get_tls_active (const VpsSession *s)
{
  return s->tls_active;
}

const char *
vps_session_get_tls_version (const VpsSession *s)
{
  return s->tls_version;
}

const char *
vps_session_get_tls_cipher (const VpsSession *s)
{
  return s->tls_cipher;
}

const char *
vps_session_get_tls_peer_subject (const VpsSession *s)
{
  return s->tls_peer_subject;
}

void
vps_session_set_auth (VpsSession *s, gboolean authenticated, const char *user,
                      const char *mechanism)
{
  s->authenticated = authenticated;
  replace (&s->auth_user, user);
  replace (&s->auth_mechanism, mechanism);
}

gboolean
vps_session_get_authenticated (const VpsSession *s)
{
  return s->authenticated;
}

const char *
vps_session_get_auth_user (const VpsSession *s)
{
  return s->auth_user;
}

const char *
vps_session_get_auth_mechanism (const VpsSession *s)
{
  return s->auth_mechanism;
}

gboolean
vps_session_set_macro (VpsSession *s, const char *name, const char *value)
{
  g_return_val_if_fail (name != NULL, FALSE);
  if (!g_hash_table_contains (s->macros, name)
      && g_hash_table_size (s->macros) >= VPS_SESSION_MAX_MACROS)
    return FALSE;
  g_hash_table_replace (s->macros, g_strdup (name), g_strdup (value ? value : ""));
  return TRUE;
}

const char *
vps_session_get_macro (const VpsSession *s, const char *name)
{
  return g_hash_table_lookup (s->macros, name);
}

void
vps_session_set_accept_all (VpsSession *s, gboolean accept_all)
{
  s->accept_all = accept_all;
}

gboolean
vps_session_get_accept_all (const VpsSession *s)
{
  return s->accept_all;
}

gboolean
vps_session_dns_cache_lookup (const VpsSession *s, const char *key, gboolean *answer)
{
  gpointer v = g_hash_table_lookup (s->dns_cache, key);

  if (v == NULL)
    return FALSE;
  *answer = GPOINTER_TO_INT (v) - 1;
  return TRUE;
}

void
vps_session_dns_cache_store (VpsSession *s, const char *key, gboolean answer)
{
  /* A hostile rule set or client cannot grow the cache without bound; a
   * full cache simply stops caching new names. */
  if (g_hash_table_size (s->dns_cache) >= VPS_SESSION_MAX_DNS_CACHE
      && !g_hash_table_contains (s->dns_cache, key))
    return;
  g_hash_table_replace (s->dns_cache, g_strdup (key), GINT_TO_POINTER ((answer ? 1 : 0) + 1));
}

/* ---- transaction ---------------------------------------------------------- */

static Path *
path_new (const char *address, const char *const *params)
{
  Path *p = g_new0 (Path, 1);

  p->address = g_strdup (address ? address : "");
  p->params = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; params != NULL && params[i] != NULL && i < VPS_TXN_MAX_PARAMS; i++)
    g_ptr_array_add (p->params, g_strdup (params[i]));
  return p;
}

static void
path_free (gpointer data)
{
  Path *p = data;

  if (p == NULL)
    return;
  g_free (p->address);
  g_ptr_array_unref (p->params);
  g_free (p);
}

static const char *
path_param (const Path *p, const char *keyword)
{
  gsize klen = strlen (keyword);

  if (p == NULL)
    return NULL;
  for (guint i = 0; i < p->params->len; i++)
    {
      const char *s = g_ptr_array_index (p->params, i);
      if (g_ascii_strncasecmp (s, keyword, klen) == 0 && (s[klen] == '=' || s[klen] == '\0'))
        return s[klen] == '=' ? s + klen + 1 : "";
    }
  return NULL;
}

static void
deliver_free (gpointer data)
{
  VpsDeliverDecision *d = data;
  g_free (d->rcpt);
  g_free (d->target);
  g_free (d->rule);
  g_free (d);
}

static void
export_free (gpointer data)
{
  VpsExportRecord *e = data;
  g_free (e->name);
  g_free (e->path);
  g_free (e->rule);
  g_free (e);
}

static void
txn_init_message_state (VpsTxn *t)
{
  t->rcpts = g_ptr_array_new_with_free_func (path_free);
  t->rcpt_strv = g_ptr_array_new ();
  g_ptr_array_add (t->rcpt_strv, NULL);
  t->results = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify)vps_connector_result_unref);
  t->mods = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_modification_free);
  t->stages = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_stage_result_unref);
  t->delivers = g_ptr_array_new_with_free_func (deliver_free);
  t->exports = g_ptr_array_new_with_free_func (export_free);
}

static void
txn_clear_message_state (VpsTxn *t)
{
  g_clear_pointer (&t->sender, path_free);
  g_clear_pointer (&t->rcpt, path_free);
  g_clear_pointer (&t->rcpts, g_ptr_array_unref);
  g_clear_pointer (&t->rcpt_strv, g_ptr_array_unref);
  g_clear_pointer (&t->message, vps_message_unref);
  g_clear_pointer (&t->queue_id, g_free);
  g_clear_pointer (&t->results, g_hash_table_unref);
  g_clear_pointer (&t->mods, g_ptr_array_unref);
  g_clear_pointer (&t->stages, g_ptr_array_unref);
  g_clear_pointer (&t->quarantine, g_free);
  g_clear_pointer (&t->delivers, g_ptr_array_unref);
  g_clear_pointer (&t->exports, g_ptr_array_unref);
  t->size = 0;
  t->attempts = 0;
  t->accept_all = FALSE;
}

VpsTxn *
vps_txn_new (VpsSession *session)
{
  VpsTxn *t;

  g_return_val_if_fail (session != NULL, NULL);
  t = g_new0 (VpsTxn, 1);
  g_atomic_ref_count_init (&t->ref);
  t->session = vps_session_ref (session);
  new_id (t->id);
  txn_init_message_state (t);
  return t;
}

VpsTxn *
vps_txn_ref (VpsTxn *txn)
{
  g_return_val_if_fail (txn != NULL, NULL);
  g_atomic_ref_count_inc (&txn->ref);
  return txn;
}

void
vps_txn_unref (VpsTxn *t)
{
  if (t == NULL || !g_atomic_ref_count_dec (&t->ref))
    return;
  txn_clear_message_state (t);
  g_clear_pointer (&t->state, rules_state_free);
  g_clear_pointer (&t->program, rules_program_unref);
  vps_session_unref (t->session);
  g_free (t);
}

void
vps_txn_reset (VpsTxn *t)
{
  txn_clear_message_state (t);
  txn_init_message_state (t);
  if (t->state != NULL)
    rules_state_reset (t->state);
  new_id (t->id);
}

VpsSession *
vps_txn_get_session (VpsTxn *t)
{
  return t->session;
}

const char *
vps_txn_get_id (const VpsTxn *t)
{
  return t->id;
}

void
vps_txn_set_sender (VpsTxn *t, const char *address, const char *const *params)
{
  path_free (t->sender);
  t->sender = path_new (address, params);
}

const char *
vps_txn_get_sender (const VpsTxn *t)
{
  return t->sender ? t->sender->address : NULL;
}

const char *
vps_txn_get_sender_param (const VpsTxn *t, const char *keyword)
{
  return path_param (t->sender, keyword);
}

void
vps_txn_set_rcpt (VpsTxn *t, const char *address, const char *const *params)
{
  path_free (t->rcpt);
  t->rcpt = address ? path_new (address, params) : NULL;
}

const char *
vps_txn_get_rcpt (const VpsTxn *t)
{
  return t->rcpt ? t->rcpt->address : NULL;
}

const char *
vps_txn_get_rcpt_param (const VpsTxn *t, const char *keyword)
{
  return path_param (t->rcpt, keyword);
}

static void
add_path (VpsTxn *t, Path *p)
{
  g_ptr_array_add (t->rcpts, p);
  /* keep the NULL-terminated view in step: replace the terminator */
  t->rcpt_strv->pdata[t->rcpt_strv->len - 1] = p->address;
  g_ptr_array_add (t->rcpt_strv, NULL);
}

void
vps_txn_accept_rcpt (VpsTxn *t)
{
  Path *p;

  if (t->rcpt == NULL)
    return;
  p = path_new (t->rcpt->address, NULL);
  for (guint i = 0; i < t->rcpt->params->len; i++)
    g_ptr_array_add (p->params, g_strdup (g_ptr_array_index (t->rcpt->params, i)));
  add_path (t, p);
}

static char **
path_dup_params (const Path *p)
{
  GStrvBuilder *b = g_strv_builder_new ();
  char **out;

  for (guint i = 0; p != NULL && i < p->params->len; i++)
    g_strv_builder_add (b, g_ptr_array_index (p->params, i));
  out = g_strv_builder_end (b);
  g_strv_builder_unref (b);
  return out;
}

char **
vps_txn_dup_sender_params (const VpsTxn *t)
{
  return path_dup_params (t->sender);
}

char **
vps_txn_dup_rcpt_params (const VpsTxn *t, gssize i)
{
  if (i < 0)
    return path_dup_params (t->rcpt);
  return path_dup_params ((gsize)i < t->rcpts->len ? g_ptr_array_index (t->rcpts, i) : NULL);
}

void
vps_txn_add_rcpt (VpsTxn *t, const char *address, const char *const *params)
{
  add_path (t, path_new (address, params));
}

const char *const *
vps_txn_get_rcpts (const VpsTxn *t, gsize *n)
{
  if (n != NULL)
    *n = t->rcpts->len;
  return (const char *const *)t->rcpt_strv->pdata;
}

void
vps_txn_set_message (VpsTxn *t, VpsMessage *message)
{
  g_clear_pointer (&t->message, vps_message_unref);
  if (message != NULL)
    {
      t->message = vps_message_ref (message);
      t->size = vps_message_get_size (message);
    }
}

VpsMessage *
vps_txn_get_message (const VpsTxn *t)
{
  return t->message;
}

void
vps_txn_set_size (VpsTxn *t, guint64 size)
{
  t->size = size;
}

guint64
vps_txn_get_size (const VpsTxn *t)
{
  return t->size;
}

void
vps_txn_set_queue_id (VpsTxn *t, const char *queue_id)
{
  replace (&t->queue_id, queue_id);
}

const char *
vps_txn_get_queue_id (const VpsTxn *t)
{
  return t->queue_id;
}

void
vps_txn_set_delivery_attempts (VpsTxn *t, guint attempts)
{
  t->attempts = attempts;
}

guint
vps_txn_get_delivery_attempts (const VpsTxn *t)
{
  return t->attempts;
}

void
vps_txn_set_accept_all (VpsTxn *t, gboolean accept_all)
{
  t->accept_all = accept_all;
}

gboolean
vps_txn_get_accept_all (const VpsTxn *t)
{
  return t->accept_all;
}

RulesState *
vps_txn_get_rules_state (VpsTxn *t, RulesProgram *program)
{
  if (t->state == NULL || t->program != program)
    {
      g_clear_pointer (&t->state, rules_state_free);
      g_clear_pointer (&t->program, rules_program_unref);
      t->program = rules_program_ref (program);
      t->state = rules_state_new (program);
    }
  return t->state;
}

void
vps_txn_set_connector_result (VpsTxn *t, const char *connector, VpsConnectorResult *result)
{
  g_hash_table_replace (t->results, g_strdup (connector), vps_connector_result_ref (result));
}

VpsConnectorResult *
vps_txn_get_connector_result (const VpsTxn *t, const char *connector)
{
  return g_hash_table_lookup (t->results, connector);
}

void
vps_txn_add_modification (VpsTxn *t, VpsModification *mod)
{
  g_ptr_array_add (t->mods, mod);
}

GPtrArray *
vps_txn_get_modifications (const VpsTxn *t)
{
  return t->mods;
}

void
vps_txn_add_stage_result (VpsTxn *t, VpsStageResult *result)
{
  g_ptr_array_add (t->stages, vps_stage_result_ref (result));
}

GPtrArray *
vps_txn_get_stage_results (const VpsTxn *t)
{
  return t->stages;
}

void
vps_txn_set_quarantine (VpsTxn *t, const char *name)
{
  replace (&t->quarantine, name);
}

const char *
vps_txn_get_quarantine (const VpsTxn *t)
{
  return t->quarantine;
}

static const char *const deliver_names[] = {
  [VPS_DELIVER_MAILDIR] = "maildir",
  [VPS_DELIVER_MBOX] = "mbox",
  [VPS_DELIVER_RELAY] = "relay",
  [VPS_DELIVER_MX] = "mx",
};

const char *
vps_deliver_kind_name (VpsDeliverKind kind)
{
  g_return_val_if_fail (kind <= VPS_DELIVER_MX, "unknown");
  return deliver_names[kind];
}

void
vps_txn_add_deliver (VpsTxn *t, VpsDeliverKind kind, const char *rcpt, const char *target,
                     const char *rule)
{
  VpsDeliverDecision *d = g_new0 (VpsDeliverDecision, 1);

  d->kind = kind;
  d->rcpt = g_strdup (rcpt);
  d->target = g_strdup (target);
  d->rule = g_strdup (rule);
  g_ptr_array_add (t->delivers, d);
}

GPtrArray *
vps_txn_get_delivers (const VpsTxn *t)
{
  return t->delivers;
}

void
vps_txn_add_export (VpsTxn *t, gboolean raw, const char *name, const char *path, const char *rule)
{
  VpsExportRecord *e = g_new0 (VpsExportRecord, 1);

  e->raw = raw;
  e->name = g_strdup (name);
  e->path = g_strdup (path);
  e->rule = g_strdup (rule);
  g_ptr_array_add (t->exports, e);
}

GPtrArray *
vps_txn_get_exports (const VpsTxn *t)
{
  return t->exports;
}

void
vps_txn_set_dry_run (VpsTxn *t, gboolean dry_run)
{
  t->dry_run = dry_run;
}

gboolean
vps_txn_get_dry_run (const VpsTxn *t)
{
  return t->dry_run;
}
