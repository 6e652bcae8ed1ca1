/* SPDX-License-Identifier: MIT
 *
 * smtp-server.c — vsmtpd's listeners and what happens before a session
 * exists: the connection limits (global, per client address, rate per
 * client address, exceptions), the TLS contexts per role and the password
 * file; and the per-worker tick that enforces deadlines and the drain.
 *
 * Contract: see smtp-server.h.  The per-IP table is shared by the workers
 * (one mutex, held for a hash lookup); an entry lives while the address has
 * sessions or recent connections in its rate window, and the table never
 * holds more than VPS_SMTP_MAX_TRACKED_IPS addresses (past that, new
 * addresses are not rate-limited rather than refused: a flood of distinct
 * addresses must not lock everyone out).
 */
#include "mta/smtp-private.h"

#include <string.h>
#include <unistd.h>

#include "vps/log.h"

/* ---- per-IP accounting ------------------------------------------------------ */

#define RATE_WINDOW_US (60 * G_USEC_PER_SEC)

typedef struct
{
  guint sessions;
  gint64 window_start; /* monotonic µs */
  guint window_count;  /* connections since window_start */
} IpEntry;

static gboolean
ip_exempt (VpsSmtpSetup *setup, GInetAddress *addr)
{
  for (guint i = 0; i < setup->exceptions->len; i++)
    if (g_inet_address_mask_matches (g_ptr_array_index (setup->exceptions, i), addr))
      return TRUE;
  return FALSE;
}

/* NULL when the connection may go on, or the reason it may not. */
static const char *
ip_admit (VpsSmtpServer *server, VpsSmtpSetup *setup, VpsConfig *cfg, const char *ip,
          GInetAddress *addr)
{
  gint64 max_per_ip = vps_config_get_int (cfg, "vsmtpd", "max_connections_per_ip");
  gint64 rate = vps_config_get_int (cfg, "vsmtpd", "connection_rate_per_ip");
  gint64 now = g_get_monotonic_time ();
  const char *refuse = NULL;
  IpEntry *e;

  if (addr != NULL && ip_exempt (setup, addr))
    max_per_ip = rate = 0;
  g_mutex_lock (&server->ip_lock);
  e = g_hash_table_lookup (server->ips, ip);
  if (e == NULL && g_hash_table_size (server->ips) < VPS_SMTP_MAX_TRACKED_IPS)
    {
      e = g_new0 (IpEntry, 1);
      e->window_start = now;
      g_hash_table_insert (server->ips, g_strdup (ip), e);
    }
  if (e != NULL)
    {
      if (now - e->window_start >= RATE_WINDOW_US)
        {
          e->window_start = now;
          e->window_count = 0;
        }
      if (max_per_ip > 0 && e->sessions >= (guint)max_per_ip)
        refuse = "too many connections";
      else if (rate > 0 && e->window_count >= (guint)rate)
        refuse = "too many connections"; /* as Postfix says for both limits */
      e->window_count++;
      if (refuse == NULL)
        e->sessions++;
    }
  g_mutex_unlock (&server->ip_lock);
  return refuse;
}

void
vps_smtp_server_ip_release (VpsSmtpServer *server, const char *ip)
{
  IpEntry *e;

  g_mutex_lock (&server->ip_lock);
  e = g_hash_table_lookup (server->ips, ip);
  if (e != NULL && e->sessions > 0)
    e->sessions--;
  /* forget idle addresses whose rate window is over */
  if (e != NULL && e->sessions == 0 && g_get_monotonic_time () - e->window_start >= RATE_WINDOW_US)
    g_hash_table_remove (server->ips, ip);
  g_mutex_unlock (&server->ip_lock);
}

/* ---- workers --------------------------------------------------------------- */

static gboolean
on_tick (gpointer data)
{
  VpsSmtpWorker *w = data;
  gint64 now = g_get_monotonic_time ();
  gboolean draining = vps_daemon_is_draining (w->server->daemon);
  GList *l = w->conns.head;

  while (l != NULL)
    {
      VpsSmtpConn *conn = l->data;

      /* the tick may close conn (which unlinks it): step first */
      l = l->next;
      vps_smtp_conn_ref (conn);
      vps_smtp_conn_tick (conn, now, draining);
      vps_smtp_conn_unref (conn);
    }
  return G_SOURCE_CONTINUE;
}

static VpsSmtpWorker *
worker_for_context (VpsSmtpServer *server, GMainContext *context)
{
  VpsSmtpWorker *w;

  g_mutex_lock (&server->workers_lock);
  w = g_hash_table_lookup (server->workers, context);
  if (w == NULL)
    {
      w = g_new0 (VpsSmtpWorker, 1);
      w->context = context;
      w->server = server;
      g_queue_init (&w->conns);
      w->tick = g_timeout_source_new_seconds (1);
      g_source_set_callback (w->tick, on_tick, w, NULL);
      g_source_attach (w->tick, context);
      g_hash_table_insert (server->workers, context, w);
    }
  g_mutex_unlock (&server->workers_lock);
  return w;
}

static void
worker_free (gpointer data)
{
  VpsSmtpWorker *w = data;

  g_source_destroy (w->tick);
  g_source_unref (w->tick);
  g_free (w);
}

/* ---- drain ----------------------------------------------------------------- */

/* One drain round: how many workers have not run their part yet.  Shared
 * (a reference each) by on_drain and every worker's call, since on_drain
 * may return first (not final, or a stuck worker). */
typedef struct
{
  gint pending;
} DrainRound;

typedef struct
{
  VpsSmtpWorker *worker;
  gboolean final;
  DrainRound *round; /* a reference */
} DrainCall;

/* The call's source is destroyed after it ran, or with a worker context
 * that stops before it could: either way the call goes. */
static void
drain_call_free (gpointer data)
{
  DrainCall *d = data;

  g_atomic_rc_box_release (d->round);
  g_free (d);
}

static gboolean
drain_worker (gpointer data)
{
  DrainCall *d = data;
  gint64 now = g_get_monotonic_time ();
  GList *l = d->worker->conns.head;

  while (l != NULL)
    {
      VpsSmtpConn *conn = l->data;

      l = l->next;
      vps_smtp_conn_ref (conn);
      if (d->final)
        vps_smtp_conn_goodbye (conn);
      else
        vps_smtp_conn_tick (conn, now, TRUE);
      vps_smtp_conn_unref (conn);
    }
  g_atomic_int_add (&d->round->pending, -1);
  return G_SOURCE_REMOVE;
}

static void
on_drain (gboolean final, gpointer data)
{
  VpsSmtpServer *server = data;
  DrainRound *round = g_atomic_rc_box_new0 (DrainRound);
  GHashTableIter it;
  gpointer w;
  gint64 until = g_get_monotonic_time () + G_USEC_PER_SEC;

  g_mutex_lock (&server->workers_lock);
  g_hash_table_iter_init (&it, server->workers);
  while (g_hash_table_iter_next (&it, NULL, &w))
    {
      DrainCall *d = g_new0 (DrainCall, 1);

      d->worker = w;
      d->final = final;
      d->round = g_atomic_rc_box_acquire (round);
      g_atomic_int_inc (&round->pending);
      g_main_context_invoke_full (d->worker->context, G_PRIORITY_DEFAULT, drain_worker, d,
                                  drain_call_free);
    }
  g_mutex_unlock (&server->workers_lock);
  /* the final goodbye must be written before the workers stop; a worker
   * stuck elsewhere does not hold the exit for more than a second */
  while (final && g_atomic_int_get (&round->pending) > 0 && g_get_monotonic_time () < until)
    g_usleep (10 * 1000);
  g_atomic_rc_box_release (round);
}

/* ---- accept ---------------------------------------------------------------- */

static VpsSmtpSetup *current_setup (VpsSmtpServer *server, VpsConfig *cfg, guint generation);

static void
refuse (GSocket *socket, const char *hostname, const char *why, const char *ip)
{
  g_autofree char *line = g_strdup_printf ("421 4.7.0 %s Error: %s%s%s\r\n", hostname, why,
                                           ip ? " from " : "", ip ? ip : "");

  /* best effort: the socket is fresh, 100 bytes fit */
  (void)g_socket_send (socket, line, strlen (line), NULL, NULL);
  g_socket_close (socket, NULL);
}

static void
conn_load_config (VpsSmtpConn *conn)
{
  VpsConfig *cfg = conn->cfg;

  conn->max_message_size = vps_config_get_size (cfg, "limits", "max_message_size");
  conn->max_header_size = vps_config_get_size (cfg, "limits", "max_header_size");
  conn->max_recipients = (guint)vps_config_get_int (cfg, "limits", "max_recipients");
  conn->max_line_length = vps_config_get_size (cfg, "vsmtpd", "max_line_length");
  conn->command_timeout = vps_config_get_duration_ms (cfg, "vsmtpd", "command_timeout") * 1000;
  conn->data_timeout = vps_config_get_duration_ms (cfg, "vsmtpd", "data_timeout") * 1000;
  conn->handshake_timeout
      = vps_config_get_duration_ms (cfg, "vsmtpd", "tls_handshake_timeout") * 1000;
  conn->max_errors = (guint)vps_config_get_int (cfg, "vsmtpd", "max_errors");
  conn->tarpit_after = (guint)vps_config_get_int (cfg, "vsmtpd", "tarpit_after");
  conn->tarpit_delay = vps_config_get_duration_ms (cfg, "vsmtpd", "tarpit_delay");
  conn->auth_failure_delay = vps_config_get_duration_ms (cfg, "vsmtpd", "auth_failure_delay");
  conn->min_free = vps_config_get_size (cfg, "queue", "min_free");
  conn->bare = g_strcmp0 (vps_config_get_string (cfg, "vsmtpd", "bare_newline"), "normalize") == 0
                   ? SMTP_BARE_NORMALIZE
                   : SMTP_BARE_REJECT;
  conn->vrfy_disabled = g_strcmp0 (vps_config_get_string (cfg, "vsmtpd", "vrfy"), "disabled") == 0;
  conn->received_header = vps_config_get_bool (cfg, "vsmtpd", "received_header");
  conn->auth_over_plaintext = vps_config_get_bool (cfg, "vsmtpd", "auth_over_plaintext");
}

typedef struct
{
  VpsSmtpServer *server;
  VpsSmtpRole role;
} AcceptData;

static void
on_accept (GSocket *socket, gpointer data)
{
  AcceptData *ad = data;
  VpsSmtpServer *server = ad->server;
  g_autoptr (GSocket) owned = socket;
  g_autoptr (VpsEngine) engine = NULL;
  g_autoptr (VpsSmtpSetup) setup = NULL;
  g_autoptr (GSocketAddress) peer = g_socket_get_remote_address (socket, NULL);
  g_autoptr (GSocketAddress) local = g_socket_get_local_address (socket, NULL);
  g_autofree char *ip = NULL, *local_ip = NULL;
  GInetAddress *addr = NULL;
  guint16 port = 0, local_port = 0;
  VpsConfig *cfg;
  gint64 max;
  const char *why;
  VpsSmtpConn *conn;

  if (G_IS_INET_SOCKET_ADDRESS (peer))
    {
      addr = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (peer));
      ip = g_inet_address_to_string (addr);
      port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (peer));
    }
  else
    ip = g_strdup ("127.0.0.1");
  if (G_IS_INET_SOCKET_ADDRESS (local))
    {
      local_ip = g_inet_address_to_string (
          g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (local)));
      local_port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local));
    }
  engine = vps_daemon_get_engine (server->daemon);
  cfg = vps_engine_get_config (engine);
  setup = current_setup (server, cfg, vps_daemon_get_generation (server->daemon));
  if (vps_daemon_is_draining (server->daemon))
    {
      refuse (socket, setup->hostname, "service shutting down", NULL);
      return;
    }
  max = vps_config_get_int (cfg, "vsmtpd", "max_connections");
  if (max > 0 && g_atomic_int_get (&server->n_sessions) >= max)
    {
      vps_log_once ("vsmtpd-max-connections", 60, G_LOG_LEVEL_WARNING, NULL,
                    "smtp: max_connections (%" G_GINT64_FORMAT ") reached, refusing", max);
      refuse (socket, setup->hostname, "too many connections", NULL);
      return;
    }
  why = ip_admit (server, setup, cfg, ip, addr);
  if (why != NULL)
    {
      vps_log_once ("vsmtpd-per-ip", 10, G_LOG_LEVEL_MESSAGE, NULL, "smtp: [%s]: %s, refusing", ip,
                    why);
      refuse (socket, setup->hostname, why, ip);
      return;
    }

  g_atomic_int_inc (&server->n_sessions);
  vps_daemon_session_begin (server->daemon);
  conn = vps_smtp_conn_new (server,
                            worker_for_context (server, g_main_context_get_thread_default ()),
                            ad->role, socket, ip);
  conn->engine = g_steal_pointer (&engine);
  conn->setup = g_steal_pointer (&setup);
  conn->cfg = vps_engine_get_config (conn->engine);
  conn_load_config (conn);
  vps_session_set_client (conn->session, ip, port, NULL);
  vps_session_set_server (conn->session, local_ip ? local_ip : "", local_port,
                          conn->setup->hostname);
  vps_info (vps_smtp_conn_id (conn), "smtp: connect from [%s]:%u to %s", ip, port,
            ad->role == VPS_SMTP_ROLE_MX           ? "mx"
            : ad->role == VPS_SMTP_ROLE_SUBMISSION ? "submission"
                                                   : "submissions");
  vps_smtp_session_start (conn);
}

/* ---- start ------------------------------------------------------------------- */

/* The config checked every entry ([vsmtpd] limit_exceptions is a CIDR list). */
static void
parse_exceptions (VpsSmtpSetup *server, VpsConfig *cfg)
{
  const char *const *items = vps_config_get_strv (cfg, "vsmtpd", "limit_exceptions");

  for (guint i = 0; items && items[i]; i++)
    {
      GInetAddressMask *mask = g_inet_address_mask_new_from_string (items[i], NULL);

      if (mask != NULL)
        g_ptr_array_add (server->exceptions, mask);
    }
}

static gboolean
build_tls (VpsSmtpSetup *server, VpsConfig *cfg, GError **error)
{
  static const char *const prefixes[VPS_SMTP_N_ROLES] = { "", "submission_", "submissions_" };
  const char *main_cert = vps_config_get_path_value (cfg, "vsmtpd", "tls_cert");
  const char *main_key = vps_config_get_path_value (cfg, "vsmtpd", "tls_key");
  const char *sni_text = vps_config_get_string (cfg, "vsmtpd", "tls_sni");
  g_auto (GStrv) sni_items = g_strsplit (sni_text ? sni_text : "", ",", -1);
  g_autoptr (GArray) sni = g_array_new (FALSE, TRUE, sizeof (VpsTlsCertPair));
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);

  if (main_cert == NULL)
    {
      main_cert = vps_config_get_path_value (cfg, "tls", "cert");
      main_key = vps_config_get_path_value (cfg, "tls", "key");
    }
  for (guint i = 0; sni_items[i]; i++)
    {
      char *item = g_strstrip (sni_items[i]);
      char *colon = strchr (item, ':');
      VpsTlsCertPair pair;

      if (*item == '\0')
        continue;
      if (colon == NULL)
        {
          vps_config_error_at (cfg, "vsmtpd", "tls_sni", error, "expected CERT:KEY, got %s", item);
          return FALSE;
        }
      *colon = '\0';
      pair.cert = vps_config_resolve_path (cfg, item);
      pair.key = vps_config_resolve_path (cfg, colon + 1);
      g_ptr_array_add (keep, (char *)pair.cert);
      g_ptr_array_add (keep, (char *)pair.key);
      g_array_append_val (sni, pair);
    }
  for (int role = 0; role < VPS_SMTP_N_ROLES; role++)
    {
      g_autofree char *cert_key = g_strconcat (prefixes[role], "tls_cert", NULL);
      g_autofree char *key_key = g_strconcat (prefixes[role], "tls_key", NULL);
      const char *cert = role > 0 ? vps_config_get_path_value (cfg, "vsmtpd", cert_key) : NULL;
      const char *key = role > 0 ? vps_config_get_path_value (cfg, "vsmtpd", key_key) : NULL;
      VpsTlsServerConfig tc = { 0 };
      g_autoptr (GError) local = NULL;

      if (cert == NULL)
        {
          cert = main_cert;
          key = main_key;
          g_free (cert_key);
          cert_key = g_strdup ("tls_cert");
        }
      if (cert == NULL)
        {
          if (role == VPS_SMTP_ROLE_SUBMISSIONS
              && vps_config_has_key (cfg, "vsmtpd", "listen_submissions"))
            {
              vps_config_error_at (cfg, "vsmtpd", "listen_submissions", error,
                                   "implicit TLS needs tls_cert and tls_key");
              return FALSE;
            }
          continue;
        }
      if (key == NULL)
        {
          vps_config_error_at (cfg, "vsmtpd", cert_key, error, "set without its key");
          return FALSE;
        }
      tc.main.cert = cert;
      tc.main.key = key;
      tc.sni = (const VpsTlsCertPair *)sni->data;
      tc.n_sni = sni->len;
      tc.min_version = vps_config_get_string (cfg, "vsmtpd", "tls_min_version");
      tc.ciphers = vps_config_get_string (cfg, "vsmtpd", "tls_ciphers");
      tc.ciphersuites = vps_config_get_string (cfg, "vsmtpd", "tls_ciphersuites");
      server->tls[role] = vps_tls_server_new (&tc, &local);
      if (server->tls[role] == NULL)
        {
          vps_config_error_at (cfg, "vsmtpd", cert_key, error, "%s", local->message);
          return FALSE;
        }
    }
  return TRUE;
}

VpsSmtpServer *
vps_smtp_server_new (VpsDaemon *daemon, VpsQueue *queue, VpsDelivery *delivery)
{
  VpsSmtpServer *server = g_new0 (VpsSmtpServer, 1);

  server->daemon = daemon;
  server->queue = queue ? vps_queue_ref (queue) : NULL;
  server->delivery = delivery;
  g_mutex_init (&server->ip_lock);
  g_mutex_init (&server->setup_lock);
  server->ips = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_mutex_init (&server->workers_lock);
  server->workers = g_hash_table_new_full (NULL, NULL, NULL, worker_free);
  server->listeners = g_ptr_array_new_with_free_func (g_free);
  vps_daemon_set_drain_func (daemon, on_drain, server);
  return server;
}

VpsSmtpSetup *
vps_smtp_setup_ref (VpsSmtpSetup *setup)
{
  g_atomic_int_inc (&setup->ref);
  return setup;
}

void
vps_smtp_setup_unref (VpsSmtpSetup *setup)
{
  if (setup == NULL || !g_atomic_int_dec_and_test (&setup->ref))
    return;
  for (int i = 0; i < VPS_SMTP_N_ROLES; i++)
    g_clear_pointer (&setup->tls[i], vps_tls_server_unref);
  g_clear_pointer (&setup->passwd, vps_passwd_file_unref);
  g_ptr_array_unref (setup->exceptions);
  g_free (setup->hostname);
  g_free (setup);
}

static VpsSmtpSetup *
setup_new (VpsConfig *cfg, guint generation, GError **error)
{
  g_autoptr (VpsSmtpSetup) setup = g_new0 (VpsSmtpSetup, 1);
  const char *hostname = vps_config_get_string (cfg, "vsmtpd", "hostname");
  const char *passwd = vps_config_get_path_value (cfg, "vsmtpd", "passwd_file");

  setup->ref = 1;
  setup->generation = generation;
  setup->exceptions = g_ptr_array_new_with_free_func (g_object_unref);
  setup->hostname = g_strdup (hostname ? hostname : g_get_host_name ());
  parse_exceptions (setup, cfg);
  if (!build_tls (setup, cfg, error))
    return NULL;
  if (passwd != NULL)
    {
      g_autoptr (GError) local = NULL;

      setup->passwd = vps_passwd_file_load (passwd, &local);
      if (setup->passwd == NULL)
        {
          vps_config_error_at (cfg, "vsmtpd", "passwd_file", error, "%s", local->message);
          return NULL;
        }
    }
  return g_steal_pointer (&setup);
}

gboolean
vps_smtp_server_prepare (VpsSmtpServer *server, GError **error)
{
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (server->daemon);
  VpsSmtpSetup *setup = setup_new (cfg, vps_daemon_get_generation (server->daemon), error);

  if (setup == NULL)
    return FALSE;
  g_mutex_lock (&server->setup_lock);
  g_clear_pointer (&server->setup, vps_smtp_setup_unref);
  server->setup = setup;
  g_mutex_unlock (&server->setup_lock);
  return TRUE;
}

/* The setup for a new session: rebuilt once after each reload (certificates
 * renewed on disk are picked up by `vsmtpd` SIGHUP, as `postfix reload`
 * does); a setup that fails to build is logged and the old one stays. */
static VpsSmtpSetup *
current_setup (VpsSmtpServer *server, VpsConfig *cfg, guint generation)
{
  VpsSmtpSetup *setup;

  g_mutex_lock (&server->setup_lock);
  if (server->setup->generation != generation)
    {
      g_autoptr (GError) error = NULL;
      VpsSmtpSetup *fresh = setup_new (cfg, generation, &error);

      if (fresh != NULL)
        {
          vps_smtp_setup_unref (server->setup);
          server->setup = fresh;
        }
      else
        {
          /* do not retry at every connection: this generation is done */
          server->setup->generation = generation;
          vps_warning (NULL, "smtp: reload: keeping the previous TLS/AUTH setup: %s",
                       error->message);
        }
    }
  setup = vps_smtp_setup_ref (server->setup);
  g_mutex_unlock (&server->setup_lock);
  return setup;
}

gboolean
vps_smtp_server_start (VpsSmtpServer *server, GError **error)
{
  g_autoptr (VpsConfig) cfg = vps_daemon_get_config (server->daemon);
  static const char *const keys[VPS_SMTP_N_ROLES]
      = { "listen", "listen_submission", "listen_submissions" };

  if (!vps_smtp_server_prepare (server, error))
    return FALSE;
  for (int role = 0; role < VPS_SMTP_N_ROLES; role++)
    {
      const char *const *addresses = vps_config_get_strv (cfg, "vsmtpd", keys[role]);

      for (guint i = 0; addresses && addresses[i]; i++)
        {
          AcceptData *ad = g_new0 (AcceptData, 1);
          g_autofree char *address = g_strconcat ("inet:", addresses[i], NULL);

          ad->server = server;
          ad->role = (VpsSmtpRole)role;
          g_ptr_array_add (server->listeners, ad);
          if (vps_daemon_listen (server->daemon, keys[role], address, on_accept, ad, error) == NULL)
            return FALSE;
        }
    }
  return TRUE;
}

guint
vps_smtp_server_n_sessions (VpsSmtpServer *server)
{
  return (guint)g_atomic_int_get (&server->n_sessions);
}

void
vps_smtp_server_free (VpsSmtpServer *server)
{
  if (server->queue != NULL) /* not the --check probe */
    vps_daemon_set_drain_func (server->daemon, NULL, NULL);
  /* the workers are stopped: connections still open are abandoned with
   * their contexts (the daemon drained them first) */
  g_clear_pointer (&server->setup, vps_smtp_setup_unref);
  g_mutex_clear (&server->setup_lock);
  g_hash_table_unref (server->workers);
  g_mutex_clear (&server->workers_lock);
  g_hash_table_unref (server->ips);
  g_mutex_clear (&server->ip_lock);
  g_ptr_array_unref (server->listeners);
  g_clear_pointer (&server->queue, vps_queue_unref);
  g_free (server);
}
