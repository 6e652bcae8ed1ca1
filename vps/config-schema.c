/* SPDX-License-Identifier: MIT
 *
 * config-schema.c — the static schema of vps.conf: every group, every key,
 * its type, range, default and help text, and the value parsers every key
 * type shares.  config.c does the reading; this file says what is allowed.
 *
 * Contract: vps_config_schema_find() returns the definition of a key or
 * NULL; vps_config_value_parse() turns one value (already unescaped by
 * GKeyFile) into its normalised form, or fails with a short reason that
 * config.c prefixes with "FILE:LINE: [group] key: ".  docs/config.md
 * mirrors this table: change both together.
 */
#include "vps/config-private.h"

#include <string.h>

#include <gio/gio.h>

#define SEC(n) ((gint64)(n)*1000)
#define DAY SEC (86400)
#define KIB ((gint64)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

static const char *const log_targets[] = { "stderr", "syslog", "journal", NULL };
static const char *const log_levels[] = { "debug", "info", "notice", "warning", "error", NULL };
static const char *const no_opinions[] = { "accept", "dunno", NULL };
static const char *const accept_actions[] = { "ok", "dunno", NULL };
static const char *const bare_newlines[] = { "reject", "normalize", NULL };
static const char *const vrfy_modes[] = { "ambiguous", "disabled", NULL };
static const char *const delivery_tls_policies[] = { "none", "may", "encrypt", "verify", NULL };
static const char *const tls_versions[] = { "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", NULL };
static const char *const state_backends[] = { "memory", "redis", NULL };
static const char *const state_on_errors[] = { "pass", "tempfail", NULL };
static const char *const on_errors[]
    = { "continue", "accept", "reject", "tempfail", "discard", "quarantine", NULL };

/* Groups with a fixed key set.  [export] has free keys (NAME = directory)
 * and [connector NAME] has common keys plus keys the connector class checks. */
static const char *const fixed_groups[] = {
  "vpsd",   "milter", "policy",   "grpc", "tls",   "limits",   "log",     "quarantine", "export",
  "vsmtpd", "queue",  "delivery", "dns",  "state", "greylist", "metrics", NULL,
};

/* clang-format off */
static const VpsConfigKeyDef schema[] = {
  /* group, key, type, default, min, max, choices, help */
  { "vpsd", "rules", VPS_CFG_PATH, "rules.vsl", 0, 0, NULL, "the rule file" },
  { "vpsd", "workers", VPS_CFG_INT, "0", 0, 1024, NULL, "worker threads, 0 = one per CPU core" },
  { "vpsd", "user", VPS_CFG_STRING, NULL, 0, 0, NULL, "user to run as after binding" },
  { "vpsd", "group", VPS_CFG_STRING, NULL, 0, 0, NULL, "group to run as after binding" },
  { "vpsd", "drain_timeout", VPS_CFG_DURATION, "30s", 0, SEC (3600), NULL,
    "on SIGTERM, how long sessions in flight may finish" },
  { "vpsd", "allow_root", VPS_CFG_BOOL, "false", 0, 0, NULL,
    "started as root without user: run as root anyway (otherwise refused)" },

  { "milter", "listen", VPS_CFG_SOCKET, "inet:127.0.0.1:10030", 0, 0, NULL,
    "milter listener: inet:HOST:PORT or unix:/path" },
  { "milter", "connect_timeout", VPS_CFG_DURATION, "10s", 1, DAY, NULL,
    "time allowed for the MTA's first command" },
  { "milter", "command_timeout", VPS_CFG_DURATION, "30s", 1, DAY, NULL,
    "time vpsd may spend answering one envelope step (connect .. rcpt)" },
  { "milter", "content_timeout", VPS_CFG_DURATION, "300s", 1, DAY, NULL,
    "time vpsd may spend answering the end of message" },
  { "milter", "idle_timeout", VPS_CFG_DURATION, "7210s", 1, DAY, NULL,
    "how long the MTA may stay silent on an open connection (libmilter's default)" },
  { "milter", "max_sessions", VPS_CFG_INT, "1000", 0, 1000000, NULL,
    "concurrent milter connections, 0 = unlimited" },
  { "milter", "progress_interval", VPS_CFG_DURATION, "5s", 100, SEC (3600), NULL,
    "while a stage waits (a slow connector), send the MTA progress this often" },
  { "milter", "store_quarantine", VPS_CFG_BOOL, "true", 0, 0, NULL,
    "also copy messages the MTA is told to quarantine into the vps quarantine store" },

  { "policy", "listen", VPS_CFG_SOCKET, "inet:127.0.0.1:10031", 0, 0, NULL,
    "policy delegation listener: inet:HOST:PORT or unix:/path" },
  { "policy", "timeout", VPS_CFG_DURATION, "300s", 1, DAY, NULL,
    "idle time before a policy connection is closed" },
  { "policy", "no_opinion", VPS_CFG_ENUM, "dunno", 0, 0, no_opinions,
    "action sent when the rules decide nothing (continue): DUNNO, or OK with accept" },
  { "policy", "accept_action", VPS_CFG_ENUM, "ok", 0, 0, accept_actions,
    "action sent for an accept verdict: OK, or DUNNO to leave the decision to Postfix" },
  { "policy", "request_timeout", VPS_CFG_DURATION, "60s", 1, DAY, NULL,
    "time vpsd may spend answering one request; then 4xx (below Postfix's 100s)" },
  { "policy", "max_sessions", VPS_CFG_INT, "1000", 0, 1000000, NULL,
    "concurrent policy connections, 0 = unlimited" },

  { "grpc", "listen", VPS_CFG_HOSTPORT, "127.0.0.1:10032", 0, 0, NULL, "gRPC listener HOST:PORT" },
  { "grpc", "tls_cert", VPS_CFG_PATH, NULL, 0, 0, NULL, "server certificate (PEM); TLS when set" },
  { "grpc", "tls_key", VPS_CFG_PATH, NULL, 0, 0, NULL, "private key of tls_cert (PEM)" },
  { "grpc", "tls_client_ca", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "CA bundle; when set, clients must present a certificate it signed" },
  { "grpc", "admin_listen", VPS_CFG_HOSTPORT, NULL, 0, 0, NULL,
    "listener of the admin service (reload, stats, quarantine); off when unset" },
  { "grpc", "max_message_size", VPS_CFG_SIZE, "50M", KIB, 2 * GIB, NULL,
    "largest gRPC request accepted" },
  { "grpc", "admin_mtls", VPS_CFG_BOOL, "false", 0, 0, NULL,
    "also serve Admin on listen to clients with a certificate tls_client_ca verified" },
  { "grpc", "max_sessions", VPS_CFG_INT, "10000", 0, 10000000, NULL,
    "live Check sessions, 0 = unlimited" },
  { "grpc", "session_timeout", VPS_CFG_DURATION, "300s", 1, DAY, NULL,
    "a Check session idle this long is forgotten" },

  { "tls", "cert", VPS_CFG_PATH, NULL, 0, 0, NULL, "default certificate (PEM)" },
  { "tls", "key", VPS_CFG_PATH, NULL, 0, 0, NULL, "private key of cert (PEM)" },
  { "tls", "ca", VPS_CFG_PATH, NULL, 0, 0, NULL, "CA bundle to verify peers" },

  { "limits", "max_message_size", VPS_CFG_SIZE, "50M", KIB, 2 * GIB, NULL,
    "largest message accepted" },
  { "limits", "max_header_size", VPS_CFG_SIZE, "1M", KIB, 64 * MIB, NULL,
    "largest header section of a message" },
  { "limits", "max_recipients", VPS_CFG_INT, "1000", 1, 100000, NULL,
    "recipients per transaction" },
  { "limits", "memory_body_limit", VPS_CFG_SIZE, "1M", 0, 2 * GIB, NULL,
    "message bodies above this size are spooled to a temporary file" },

  { "log", "target", VPS_CFG_ENUM, "stderr", 0, 0, log_targets, "where log lines go" },
  { "log", "level", VPS_CFG_ENUM, "info", 0, 0, log_levels, "lowest level logged" },

  { "quarantine", "dir", VPS_CFG_PATH, "quarantine", 0, 0, NULL, "quarantine store directory" },
  { "quarantine", "names", VPS_CFG_NAME_LIST, "", 0, 0, NULL,
    "quarantine names the rules may use, comma-separated" },
  { "quarantine", "release_to", VPS_CFG_HOSTPORT, NULL, 0, 0, NULL,
    "SMTP server ([host]:port) that released messages are sent to" },

  { "vsmtpd", "listen", VPS_CFG_HOSTPORT_LIST, "127.0.0.1:2525", 0, 0, NULL,
    "SMTP listeners (port 25 style), comma-separated HOST:PORT" },
  { "vsmtpd", "listen_submission", VPS_CFG_HOSTPORT_LIST, NULL, 0, 0, NULL,
    "submission listeners (STARTTLS, AUTH required)" },
  { "vsmtpd", "listen_submissions", VPS_CFG_HOSTPORT_LIST, NULL, 0, 0, NULL,
    "submissions listeners (implicit TLS)" },
  { "vsmtpd", "hostname", VPS_CFG_STRING, NULL, 0, 0, NULL,
    "name in the greeting and Received headers; the host name when unset" },
  { "vsmtpd", "policy", VPS_CFG_POLICY_TARGET, "embedded", 0, 0, NULL,
    "embedded (in-process engine) or grpc://HOST:PORT (a remote vpsd)" },
  { "vsmtpd", "metrics_listen", VPS_CFG_HOSTPORT, NULL, 0, 0, NULL,
    "vsmtpd's metrics and health endpoint (HTTP GET /metrics, /health); off when unset" },

  { "vsmtpd", "max_connections", VPS_CFG_INT, "1000", 0, 1000000, NULL,
    "concurrent SMTP sessions, 0 = unlimited; beyond, 421 4.7.0 and close" },
  { "vsmtpd", "max_connections_per_ip", VPS_CFG_INT, "50", 0, 1000000, NULL,
    "concurrent sessions from one client address, 0 = unlimited" },
  { "vsmtpd", "connection_rate_per_ip", VPS_CFG_INT, "0", 0, 1000000, NULL,
    "new sessions per minute from one client address, 0 = unlimited" },
  { "vsmtpd", "limit_exceptions", VPS_CFG_CIDR_LIST, "127.0.0.0/8, ::1/128", 0, 0, NULL,
    "client networks (comma-separated CIDR) exempt from the per-IP limits" },
  { "vsmtpd", "command_timeout", VPS_CFG_DURATION, "300s", 100, DAY, NULL,
    "time for the client to send one whole command (RFC 5321: 5 minutes)" },
  { "vsmtpd", "data_timeout", VPS_CFG_DURATION, "600s", 100, DAY, NULL,
    "time for the client to send a whole DATA or BDAT transfer" },
  { "vsmtpd", "max_errors", VPS_CFG_INT, "20", 1, 100000, NULL,
    "errors in a session before it is closed with 421" },
  { "vsmtpd", "tarpit_after", VPS_CFG_INT, "10", 0, 100000, NULL,
    "errors after which every error reply is delayed by tarpit_delay (0: from the first)" },
  { "vsmtpd", "tarpit_delay", VPS_CFG_DURATION, "1s", 0, SEC (60), NULL,
    "delay of an error reply past tarpit_after" },
  { "vsmtpd", "max_line_length", VPS_CFG_SIZE, "8K", 998, MIB, NULL,
    "longest message line (without CRLF); longer → 552 5.6.0 at the end of data" },
  { "vsmtpd", "bare_newline", VPS_CFG_ENUM, "reject", 0, 0, bare_newlines,
    "bare LF or CR: reject (521 and close, as Postfix smtpd_forbid_bare_newline) or normalize" },
  { "vsmtpd", "vrfy", VPS_CFG_ENUM, "ambiguous", 0, 0, vrfy_modes,
    "VRFY answer: ambiguous (252) or disabled (502)" },
  { "vsmtpd", "received_header", VPS_CFG_BOOL, "true", 0, 0, NULL,
    "add a Received: header to every message" },
  { "vsmtpd", "passwd_file", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "user:crypt-hash lines for AUTH PLAIN/LOGIN; AUTH is off when unset" },
  { "vsmtpd", "auth_over_plaintext", VPS_CFG_BOOL, "false", 0, 0, NULL,
    "offer AUTH before STARTTLS (only for tests and trusted networks)" },
  { "vsmtpd", "auth_failure_delay", VPS_CFG_DURATION, "2s", 0, SEC (60), NULL,
    "delay before the reply to a failed AUTH" },
  { "vsmtpd", "tls_cert", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "certificate of every listener ([tls] cert when unset); STARTTLS is offered when set" },
  { "vsmtpd", "tls_key", VPS_CFG_PATH, NULL, 0, 0, NULL, "private key of tls_cert" },
  { "vsmtpd", "submission_tls_cert", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "certificate of the submission listeners (tls_cert when unset)" },
  { "vsmtpd", "submission_tls_key", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "private key of submission_tls_cert" },
  { "vsmtpd", "submissions_tls_cert", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "certificate of the submissions (implicit TLS) listeners (tls_cert when unset)" },
  { "vsmtpd", "submissions_tls_key", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "private key of submissions_tls_cert" },
  { "vsmtpd", "tls_sni", VPS_CFG_STRING, NULL, 0, 0, NULL,
    "more certificates chosen by SNI: comma-separated CERT:KEY pairs (names from each certificate)" },
  { "vsmtpd", "tls_min_version", VPS_CFG_ENUM, "TLSv1.2", 0, 0, tls_versions,
    "lowest TLS version offered" },
  { "vsmtpd", "tls_ciphers", VPS_CFG_STRING, NULL, 0, 0, NULL,
    "OpenSSL cipher list for TLS 1.2 and lower (OpenSSL's default when unset)" },
  { "vsmtpd", "tls_ciphersuites", VPS_CFG_STRING, NULL, 0, 0, NULL,
    "OpenSSL TLS 1.3 cipher suites (OpenSSL's default when unset)" },
  { "vsmtpd", "tls_handshake_timeout", VPS_CFG_DURATION, "30s", 100, SEC (3600), NULL,
    "time allowed for a TLS handshake" },

  { "queue", "dir", VPS_CFG_PATH, "queue", 0, 0, NULL, "spool directory of vsmtpd" },
  { "queue", "min_free", VPS_CFG_SIZE, "64M", 0, 1024 * GIB, NULL,
    "free space the spool must keep: below it, MAIL gets 452 4.3.1" },
  { "queue", "run_interval", VPS_CFG_DURATION, "60s", 100, DAY, NULL,
    "how often the queue is scanned for messages to (re)try" },
  { "queue", "delivery_threads", VPS_CFG_INT, "8", 1, 256, NULL,
    "threads that route messages, run the postq and delivery stages and deliver locally" },
  { "queue", "active_limit", VPS_CFG_INT, "20000", 1, 1000000, NULL,
    "messages in remote delivery at once, waiting for a connection included (Postfix qmgr_message_active_limit)" },
  { "queue", "delay_warning", VPS_CFG_DURATION, "4h", 0, 100 * DAY, NULL,
    "after how long in the queue a sender is warned once that a message is still being retried (0: never)" },
  { "queue", "retry_min", VPS_CFG_DURATION, "300s", 1000, DAY, NULL,
    "first retry delay of a deferred message; doubled at each attempt (Postfix minimal_backoff_time)" },
  { "queue", "retry_max", VPS_CFG_DURATION, "4000s", 1000, DAY, NULL,
    "longest retry delay (Postfix maximal_backoff_time)" },
  { "queue", "lifetime", VPS_CFG_DURATION, "5d", 1000, 100 * DAY, NULL,
    "how long a deferred recipient is retried before it fails with 4.4.7 (Postfix maximal_queue_lifetime)" },

  { "delivery", "default", VPS_CFG_STRING, "mx", 0, 0, NULL,
    "when the delivery stage decides nothing: maildir:PATH, mbox:PATH, relay:[HOST]:PORT, mx or hold" },
  { "delivery", "smtp_port", VPS_CFG_INT, "25", 1, 65535, NULL,
    "port of MX hosts (MX records carry none): for tests and odd setups" },
  { "delivery", "tls_policy", VPS_CFG_ENUM, "may", 0, 0, delivery_tls_policies,
    "TLS for remote delivery unless tls_policy_map says otherwise: none, may, encrypt, verify" },
  { "delivery", "tls_ca", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "CA bundle (PEM) for tls_policy verify; the system's store when unset" },
  { "delivery", "tls_policy_map", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "file of lines DESTINATION POLICY (a domain, or [HOST]:PORT of a relay) overriding tls_policy" },
  { "delivery", "relay_auth_file", VPS_CFG_PATH, NULL, 0, 0, NULL,
    "file of lines [HOST]:PORT USER PASSWORD for AUTH to relays (over TLS only); mode 0600" },
  { "delivery", "max_connections", VPS_CFG_INT, "100", 1, 10000, NULL,
    "outgoing SMTP sessions in progress at once, every destination together (idle cached connections not counted)" },
  { "delivery", "destination_concurrency", VPS_CFG_INT, "20", 1, 10000, NULL,
    "outgoing SMTP sessions in progress at once to one destination: a recipient domain, or a relay target (Postfix default_destination_concurrency_limit)" },

  { "dns", "nameserver", VPS_CFG_NAMESERVER, NULL, 0, 0, NULL,
    "resolver to ask (IP or IP:PORT); the system resolver when unset" },
  { "dns", "timeout", VPS_CFG_DURATION, "5s", 1, SEC (300), NULL, "time allowed for one query" },

  { "state", "backend", VPS_CFG_ENUM, "memory", 0, 0, state_backends,
    "where rate counters, greylisting and connection counts live: memory (this process) or redis (shared)" },
  { "state", "max_keys", VPS_CFG_INT, "1000000", 1, 100000000, NULL,
    "memory: keys held; past it the least recently used goes" },
  /* "host:port", "[v6]:port" or "unix:/path": checked by vps_state_new(). */
  { "state", "address", VPS_CFG_STRING, "127.0.0.1:6379", 0, 0, NULL,
    "redis: HOST:PORT, [IPV6]:PORT or unix:/path of the Redis server" },
  { "state", "password", VPS_CFG_STRING, NULL, 0, 0, NULL,
    "redis: sent with AUTH after connecting; no AUTH when unset" },
  { "state", "timeout", VPS_CFG_DURATION, "200ms", 1, SEC (60), NULL,
    "redis: time allowed for one batch of operations; past it on_error applies" },
  { "state", "connect_timeout", VPS_CFG_DURATION, "1s", 1, SEC (60), NULL,
    "redis: time allowed to connect (and authenticate)" },
  { "state", "connections", VPS_CFG_INT, "2", 1, 64, NULL,
    "redis: connections in the pool (batches are pipelined on each)" },
  { "state", "on_error", VPS_CFG_ENUM, "pass", 0, 0, state_on_errors,
    "when the backend fails or times out: pass (rate() and concurrency() do not limit, greylisting lets mail through; logged once a minute) or tempfail (the stage answers 451 4.3.0)" },

  { "greylist", "delay", VPS_CFG_DURATION, "300s", 1000, DAY, NULL,
    "how long a new (client network, sender, recipient) triplet is deferred (postgrey --delay)" },
  { "greylist", "lifetime", VPS_CFG_DURATION, "35d", SEC (3600), 400 * DAY, NULL,
    "how long a triplet that passed, and an auto-whitelisted client, are remembered since last seen (postgrey --max-age)" },
  { "greylist", "retry_window", VPS_CFG_DURATION, "2d", SEC (60), 30 * DAY, NULL,
    "how long after the first attempt a retry still counts, later the triplet starts over (postgrey --retry-window); must be longer than delay" },
  { "greylist", "auto_whitelist", VPS_CFG_INT, "5", 0, 1000000, NULL,
    "a client address whose triplets passed this many times (counted at most once an hour) is no longer greylisted; 0 = off (postgrey --auto-whitelist-clients)" },
  { "greylist", "whitelist_clients", VPS_CFG_CIDR_LIST, "", 0, 0, NULL,
    "client addresses or networks never greylisted" },
  { "greylist", "code", VPS_CFG_INT, "450", 400, 499, NULL,
    "reply code of a deferral by the greylist action" },
  { "greylist", "enhanced", VPS_CFG_STRING, "4.2.0", 0, 0, NULL,
    "enhanced status code of that reply (4.2.0, as postgrey: Exchange retries it)" },
  { "greylist", "text", VPS_CFG_STRING, "Greylisted, please try again later", 0, 0, NULL,
    "text of that reply" },

  { "metrics", "listen", VPS_CFG_HOSTPORT, NULL, 0, 0, NULL,
    "vpsd's metrics and health endpoint (HTTP GET /metrics, /health); off when unset" },

  { "connector", "type", VPS_CFG_IDENT, NULL, 0, 0, NULL,
    "connector class: milter, policy, grpc, http, exec, clamav (required)" },
  { "connector", "timeout", VPS_CFG_DURATION, "10s", 1, DAY, NULL, "time allowed for one call" },
  { "connector", "on_error", VPS_CFG_ENUM, "tempfail", 0, 0, on_errors,
    "verdict when the connector fails or times out" },
  { "connector", "concurrency", VPS_CFG_INT, "0", 0, 100000, NULL,
    "calls in flight at once, 0 = unlimited" },
};
/* clang-format on */

gboolean
vps_config_schema_known_group (const char *group)
{
  return g_strv_contains (fixed_groups, group);
}

const VpsConfigKeyDef *
vps_config_schema_find (const char *schema_group, const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (schema); i++)
    if (strcmp (schema[i].group, schema_group) == 0 && strcmp (schema[i].key, key) == 0)
      return &schema[i];
  return NULL;
}

const VpsConfigKeyDef *
vps_config_schema_all (gsize *n)
{
  *n = G_N_ELEMENTS (schema);
  return schema;
}

/* ---- value parsers ------------------------------------------------------ */

/* Reads 1..18 decimal digits (no sign): 18 digits cannot overflow gint64. */
static gboolean
parse_digits (const char **p, gint64 *out)
{
  const char *s = *p;
  gint64 v = 0;
  gsize n = 0;

  while (g_ascii_isdigit (*s))
    {
      if (++n > 18)
        return FALSE;
      v = v * 10 + (*s - '0');
      s++;
    }
  if (n == 0)
    return FALSE;
  *p = s;
  *out = v;
  return TRUE;
}

gboolean
vps_config_parse_duration_ms (const char *s, gint64 *out)
{
  static const struct
  {
    const char *unit;
    gint64 ms;
  } units[] = {
    { "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
  };
  gint64 v;

  g_return_val_if_fail (s != NULL && out != NULL, FALSE);
  if (!parse_digits (&s, &v))
    return FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS (units); i++)
    if (strcmp (s, units[i].unit) == 0)
      {
        if (v > G_MAXINT64 / units[i].ms)
          return FALSE;
        *out = v * units[i].ms;
        return TRUE;
      }
  return FALSE;
}

gboolean
vps_config_parse_size (const char *s, guint64 *out)
{
  gint64 v;
  guint64 mult = 1;

  g_return_val_if_fail (s != NULL && out != NULL, FALSE);
  if (!parse_digits (&s, &v))
    return FALSE;
  switch (g_ascii_toupper (*s))
    {
      case '\0':
        break;
      case 'K':
        mult = KIB;
        break;
      case 'M':
        mult = MIB;
        break;
      case 'G':
        mult = GIB;
        break;
      case 'T':
        mult = GIB * 1024;
        break;
      default:
        return FALSE;
    }
  if (*s != '\0' && s[1] != '\0')
    return FALSE;
  if ((guint64)v > G_MAXINT64 / mult)
    return FALSE;
  *out = (guint64)v * mult;
  return TRUE;
}

static gboolean
parse_bool (const char *s, gboolean *out)
{
  static const char *const yes[] = { "true", "yes", "on", "1", NULL };
  static const char *const no[] = { "false", "no", "off", "0", NULL };

  for (gsize i = 0; yes[i] != NULL; i++)
    {
      if (g_ascii_strcasecmp (s, yes[i]) == 0)
        return (*out = TRUE, TRUE);
      if (g_ascii_strcasecmp (s, no[i]) == 0)
        return (*out = FALSE, TRUE);
    }
  return FALSE;
}

gboolean
vps_config_valid_name (const char *s)
{
  gsize n = strlen (s);

  if (n == 0 || n > VPS_CONFIG_MAX_NAME)
    return FALSE;
  for (const char *p = s; *p; p++)
    if (!(g_ascii_islower (*p) || g_ascii_isdigit (*p) || *p == '_' || *p == '-'))
      return FALSE;
  return TRUE;
}

/* Connector names appear in rules as identifiers (`call clamav`,
 * `clamav.infected`), so they follow the identifier syntax. */
gboolean
vps_config_valid_ident (const char *s)
{
  gsize n = strlen (s);

  if (n == 0 || n > VPS_CONFIG_MAX_NAME || !(g_ascii_isalpha (*s) || *s == '_'))
    return FALSE;
  for (const char *p = s; *p; p++)
    if (!(g_ascii_isalnum (*p) || *p == '_'))
      return FALSE;
  return TRUE;
}

static gboolean
parse_port (const char *s, guint *port)
{
  gint64 v;
  const char *p = s;

  if (!parse_digits (&p, &v) || *p != '\0' || v < 1 || v > 65535)
    return FALSE;
  *port = (guint)v;
  return TRUE;
}

static gboolean
valid_host (const char *host)
{
  if (host[0] == '\0' || strlen (host) > 255)
    return FALSE;
  for (const char *p = host; *p; p++)
    if (!(g_ascii_isalnum (*p) || *p == '.' || *p == '-' || *p == '_' || *p == '*'))
      return FALSE;
  return TRUE;
}

/* HOST:PORT with HOST a name, an IPv4 address, "*" or [IPv6]. */
static gboolean
parse_hostport (const char *s, const char **why)
{
  g_autofree char *host = NULL;
  const char *colon;
  guint port;

  if (s[0] == '[')
    {
      const char *close = strchr (s, ']');

      if (close == NULL || close[1] != ':')
        return (*why = "expected [IPV6]:PORT", FALSE);
      /* [IPV6]:PORT, or Postfix's [host]:PORT (no MX lookup). */
      host = g_strndup (s + 1, close - s - 1);
      if (strchr (host, ':') != NULL ? !g_hostname_is_ip_address (host) : !valid_host (host))
        return (*why = "invalid address inside [ ]", FALSE);
      colon = close + 1;
    }
  else
    {
      colon = strrchr (s, ':');
      if (colon == NULL || colon == s)
        return (*why = "expected HOST:PORT", FALSE);
      host = g_strndup (s, colon - s);
      if (strchr (host, ':') != NULL)
        return (*why = "an IPv6 address must be written [ADDR]:PORT", FALSE);
      if (!valid_host (host))
        return (*why = "invalid character in host name", FALSE);
    }
  if (!parse_port (colon + 1, &port))
    return (*why = "port must be 1-65535", FALSE);
  return TRUE;
}

static char *
parse_socket (const char *s, const char *base_dir, const char **why)
{
  if (g_str_has_prefix (s, "inet:"))
    return parse_hostport (s + 5, why) ? g_strdup (s) : NULL;
  if (g_str_has_prefix (s, "unix:"))
    {
      g_autofree char *path = NULL;

      if (s[5] == '\0')
        return (*why = "empty socket path", NULL);
      path = g_canonicalize_filename (s + 5, base_dir);
      /* sun_path holds 108 bytes including the terminating NUL. */
      if (strlen (path) > VPS_CONFIG_MAX_UNIX_PATH)
        return (*why = "unix socket path longer than 107 bytes", NULL);
      return g_strconcat ("unix:", path, NULL);
    }
  *why = "expected inet:HOST:PORT or unix:/path";
  return NULL;
}

static gboolean
parse_nameserver (const char *s, const char **why)
{
  if (g_hostname_is_ip_address (s))
    return TRUE;
  if (!parse_hostport (s, why))
    return (*why = "expected IP or IP:PORT ([IPV6]:PORT)", FALSE);
  if (s[0] != '[')
    {
      g_autofree char *host = g_strndup (s, strrchr (s, ':') - s);

      if (!g_hostname_is_ip_address (host))
        return (*why = "the name server must be an IP address", FALSE);
    }
  return TRUE;
}

static char **
split_list (const char *s)
{
  g_auto (GStrv) parts = g_strsplit_set (s, ", \t", -1);
  GPtrArray *out = g_ptr_array_new ();

  for (gsize i = 0; parts[i] != NULL; i++)
    if (parts[i][0] != '\0')
      g_ptr_array_add (out, g_strdup (parts[i]));
  g_ptr_array_add (out, NULL);
  return (char **)g_ptr_array_free (out, FALSE);
}

static gboolean
has_control (const char *s)
{
  for (const char *p = s; *p; p++)
    if ((guchar)*p < 0x20 || *p == 0x7f)
      return TRUE;
  return FALSE;
}

gboolean
vps_config_value_parse (const VpsConfigKeyDef *def, const char *text, const char *base_dir,
                        VpsConfigValue *out, const char **why)
{
  const char *w = NULL;

  memset (out, 0, sizeof *out);
  if (has_control (text))
    return (*why = "control character in value", FALSE);
  if (text[0] == '\0' && def->type != VPS_CFG_NAME_LIST && def->type != VPS_CFG_CIDR_LIST)
    return (*why = "empty value", FALSE);
  if (strlen (text) > VPS_CONFIG_MAX_VALUE)
    return (*why = "value too long", FALSE);

  switch (def->type)
    {
      case VPS_CFG_STRING:
        out->text = g_strdup (text);
        return TRUE;
      case VPS_CFG_PATH:
        out->text = g_canonicalize_filename (text, base_dir);
        return TRUE;
      case VPS_CFG_BOOL:
        {
          gboolean b;

          if (!parse_bool (text, &b))
            return (*why = "expected true or false", FALSE);
          out->num = b;
          break;
        }
      case VPS_CFG_INT:
        {
          gint64 v;
          const char *p = text + (text[0] == '-');

          if (!parse_digits (&p, &v) || *p != '\0')
            return (*why = "not an integer", FALSE);
          out->num = text[0] == '-' ? -v : v;
          if (out->num < def->min || out->num > def->max)
            return (*why = "out of range", FALSE);
          break;
        }
      case VPS_CFG_DURATION:
        if (!vps_config_parse_duration_ms (text, &out->num))
          return (*why = "not a duration (e.g. 250ms, 30s, 5m, 2h, 1d; plain seconds)", FALSE);
        if (out->num < def->min || out->num > def->max)
          return (*why = "out of range", FALSE);
        break;
      case VPS_CFG_SIZE:
        {
          guint64 v;

          if (!vps_config_parse_size (text, &v))
            return (*why = "not a size (e.g. 512K, 10M, 1G; plain bytes)", FALSE);
          if (v < (guint64)def->min || v > (guint64)def->max)
            return (*why = "out of range", FALSE);
          out->num = (gint64)v;
          break;
        }
      case VPS_CFG_ENUM:
        if (!g_strv_contains (def->choices, text))
          return (*why = "invalid value", FALSE);
        break;
      case VPS_CFG_SOCKET:
        out->text = parse_socket (text, base_dir, why);
        return out->text != NULL;
      case VPS_CFG_HOSTPORT:
        if (!parse_hostport (text, why))
          return FALSE;
        break;
      case VPS_CFG_HOSTPORT_LIST:
        out->list = split_list (text);
        if (out->list[0] == NULL)
          return (*why = "empty list", FALSE);
        for (gsize i = 0; out->list[i] != NULL; i++)
          if (!parse_hostport (out->list[i], why))
            return FALSE;
        out->text = g_strjoinv (", ", out->list);
        return TRUE;
      case VPS_CFG_CIDR_LIST:
        out->list = split_list (text);
        for (gsize i = 0; out->list[i] != NULL; i++)
          {
            g_autoptr (GInetAddressMask) mask
                = g_inet_address_mask_new_from_string (out->list[i], NULL);

            if (mask == NULL)
              return (
                  *why
                  = "expected comma-separated addresses or networks (192.0.2.0/24, 2001:db8::/32)",
                  FALSE);
          }
        out->text = g_strjoinv (", ", out->list);
        return TRUE;
      case VPS_CFG_NAME_LIST:
        out->list = split_list (text);
        for (gsize i = 0; out->list[i] != NULL; i++)
          {
            if (!vps_config_valid_name (out->list[i]))
              return (*why = "names are 1-64 characters of a-z 0-9 _ -", FALSE);
            for (gsize j = 0; j < i; j++)
              if (strcmp (out->list[i], out->list[j]) == 0)
                return (*why = "duplicate name", FALSE);
          }
        out->text = g_strjoinv (", ", out->list);
        return TRUE;
      case VPS_CFG_NAMESERVER:
        if (!parse_nameserver (text, &w))
          return (*why = w, FALSE);
        break;
      case VPS_CFG_POLICY_TARGET:
        if (strcmp (text, "embedded") != 0
            && !(g_str_has_prefix (text, "grpc://") && parse_hostport (text + 7, &w)))
          return (*why = "expected embedded or grpc://HOST:PORT", FALSE);
        break;
      case VPS_CFG_IDENT:
        if (!vps_config_valid_name (text))
          return (*why = "expected a name of a-z 0-9 _ -", FALSE);
        break;
      default:
        g_return_val_if_reached (FALSE);
    }
  out->text = g_strdup (text);
  return TRUE;
}

void
vps_config_value_clear (VpsConfigValue *v)
{
  g_clear_pointer (&v->text, g_free);
  g_clear_pointer (&v->list, g_strfreev);
}
