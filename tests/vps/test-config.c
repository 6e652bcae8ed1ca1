/* SPDX-License-Identifier: MIT
 *
 * test-config.c — vps.conf loading: defaults, path resolution, connectors,
 * and one case per error class with its exact "FILE:LINE: [group] key:"
 * message.
 */
#include "vps/config.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

/* ---- errors, table-driven ---------------------------------------------- */

typedef struct
{
  const char *path; /* test path suffix */
  const char *text;
  gint code;
  const char *message;
} ErrorCase;

static const ErrorCase error_cases[] = {
  { "unknown-group", "# c\n[vpsd]\n[bogus]\nx = 1\n", VPS_CONFIG_ERROR_UNKNOWN_GROUP,
    "/etc/t.conf:3: [bogus]: unknown group" },
  { "unknown-key", "[vpsd]\nworkers = 2\nfoo = 1\n", VPS_CONFIG_ERROR_UNKNOWN_KEY,
    "/etc/t.conf:3: [vpsd] foo: unknown key" },
  { "locale-key", "[log]\nlevel[de] = info\n", VPS_CONFIG_ERROR_UNKNOWN_KEY,
    "/etc/t.conf:2: [log] level[de]: unknown key" },
  { "bad-int", "[vpsd]\nworkers = many\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vpsd] workers: not an integer" },
  { "int-trailing", "[vpsd]\nworkers = 4x\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vpsd] workers: not an integer" },
  { "int-range-high", "[vpsd]\nworkers = 5000\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vpsd] workers: out of range (0-1024)" },
  { "int-range-low", "[vpsd]\n\nworkers = -1\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:3: [vpsd] workers: out of range (0-1024)" },
  { "int-overflow", "[limits]\nmax_recipients = 99999999999999999999999\n",
    VPS_CONFIG_ERROR_INVALID, "/etc/t.conf:2: [limits] max_recipients: not an integer" },
  { "bad-duration", "[milter]\ncommand_timeout = 30x\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [milter] command_timeout: not a duration (e.g. 250ms, 30s, 5m, 2h, 1d; "
    "plain seconds)" },
  { "duration-negative", "[milter]\ncommand_timeout = -5s\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [milter] command_timeout: not a duration (e.g. 250ms, 30s, 5m, 2h, 1d; "
    "plain seconds)" },
  { "duration-range", "[dns]\ntimeout = 1h\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [dns] timeout: out of range" },
  { "duration-zero", "[milter]\ncontent_timeout = 0\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [milter] content_timeout: out of range" },
  { "bad-size", "[limits]\nmax_message_size = 10Q\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [limits] max_message_size: not a size (e.g. 512K, 10M, 1G; plain bytes)" },
  { "size-range", "[limits]\nmax_message_size = 10\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [limits] max_message_size: out of range" },
  { "bad-enum", "[log]\ntarget = stderr\nlevel = loud\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:3: [log] level: invalid value \"loud\" (expected one of: debug, info, notice, "
    "warning, error)" },
  { "bad-on-error", "[connector av]\ntype = clamav\non_error = maybe\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:3: [connector av] on_error: invalid value \"maybe\" (expected one of: "
    "continue, accept, reject, tempfail, discard, quarantine)" },
  { "missing-connector-type", "[vpsd]\n[connector av]\ntimeout = 5s\n", VPS_CONFIG_ERROR_MISSING,
    "/etc/t.conf:2: [connector av] type: missing (required)" },
  { "bad-connector-name", "[connector a-b]\ntype = milter\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:1: [connector a-b]: a connector name is a letter or _ then letters, digits, _ "
    "(at most 64)" },
  { "bad-connector-type", "[connector av]\ntype = Clam AV\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [connector av] type: expected a name of a-z 0-9 _ -" },
  { "bad-listen-scheme", "[milter]\nlisten = tcp:127.0.0.1:10030\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [milter] listen: expected inet:HOST:PORT or unix:/path" },
  { "bad-listen-port", "[policy]\nlisten = inet:127.0.0.1:70000\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [policy] listen: port must be 1-65535" },
  { "bad-listen-noport", "[grpc]\nlisten = 127.0.0.1\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [grpc] listen: expected HOST:PORT" },
  { "bad-listen-v6", "[grpc]\nlisten = ::1:10032\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [grpc] listen: an IPv6 address must be written [ADDR]:PORT" },
  { "bad-listen-list", "[vsmtpd]\nlisten = 127.0.0.1:25, nohost\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vsmtpd] listen: expected HOST:PORT" },
  { "bad-unix-path",
    "[milter]\nlisten = unix:/" /* 120 x */
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
    VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [milter] listen: unix socket path longer than 107 bytes" },
  { "bad-policy-target", "[vsmtpd]\npolicy = http://x:1\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vsmtpd] policy: expected embedded or grpc://HOST:PORT" },
  { "bad-nameserver", "[dns]\nnameserver = dns.example:53\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [dns] nameserver: the name server must be an IP address" },
  { "bad-quarantine-name", "[quarantine]\nnames = virus, Spam\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [quarantine] names: names are 1-64 characters of a-z 0-9 _ -" },
  { "dup-quarantine-name", "[quarantine]\nnames = virus, spam virus\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [quarantine] names: duplicate name" },
  { "bad-export-name", "[export]\n../x = /tmp\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [export] ../x: export names are 1-64 characters of a-z 0-9 _ -" },
  { "empty-value", "[vpsd]\nuser =\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vpsd] user: empty value" },
  { "control-char", "[vpsd]\nuser = a\\tb\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vpsd] user: control character in value" },
  { "bad-escape", "[vpsd]\nuser = a\\qb\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vpsd] user: invalid escape sequence (write \\\\ for a backslash)" },
  { "trailing-backslash", "[vpsd]\nuser = a\\\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:2: [vpsd] user: invalid escape sequence (write \\\\ for a backslash)" },
  { "cert-without-key", "[tls]\ncert = a.pem\n", VPS_CONFIG_ERROR_MISSING,
    "/etc/t.conf:2: [tls] cert: key is required with cert" },
  { "grpc-key-without-cert", "[grpc]\n\ntls_key = k.pem\n", VPS_CONFIG_ERROR_MISSING,
    "/etc/t.conf:3: [grpc] tls_key: tls_cert is required with tls_key" },
  { "dup-key", "[vpsd]\nworkers = 1\nworkers = 2\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:3: [vpsd] workers: key set twice (first at line 2)" },
  { "dup-group", "[vpsd]\n[log]\n[vpsd]\n", VPS_CONFIG_ERROR_INVALID,
    "/etc/t.conf:3: [vpsd]: group appears twice (first at line 1)" },
  { "syntax-no-bracket", "[vpsd]\nworkers = 1\n[log\n", VPS_CONFIG_ERROR_SYNTAX,
    "/etc/t.conf:3: syntax error: group header without ]" },
  { "syntax-junk-after-group", "[vpsd] x\n", VPS_CONFIG_ERROR_SYNTAX,
    "/etc/t.conf:1: syntax error: invalid group header" },
  { "syntax-not-kv", "[vpsd]\n\nworkers\n", VPS_CONFIG_ERROR_SYNTAX,
    "/etc/t.conf:3: syntax error: expected key = value, [group] or # comment" },
  { "syntax-empty-key", "[vpsd]\n= 3\n", VPS_CONFIG_ERROR_SYNTAX,
    "/etc/t.conf:2: syntax error: expected key = value, [group] or # comment" },
  { "syntax-no-group", "# hello\nworkers = 1\n", VPS_CONFIG_ERROR_SYNTAX,
    "/etc/t.conf:2: syntax error: key outside of any [group]" },
  { "syntax-utf8", "[vpsd]\nuser = ok\nuser2 = \xff\xfe\n", VPS_CONFIG_ERROR_SYNTAX,
    "/etc/t.conf:3: syntax error: not valid UTF-8" },
};

static void
test_error_case (gconstpointer data)
{
  const ErrorCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = vps_config_load_data ("/etc/t.conf", c->text, &error);

  g_assert_null (cfg);
  g_assert_error (error, VPS_CONFIG_ERROR, c->code);
  if (c->message != NULL)
    g_assert_cmpstr (error->message, ==, c->message);
  else
    g_assert_true (g_str_has_prefix (error->message, "/etc/t.conf:2: [vpsd] user: "));
}

/* ---- defaults ---------------------------------------------------------- */

static void
test_defaults (void)
{
  g_autoptr (VpsConfig) cfg = vps_config_new_default ();
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *rules = g_build_filename (cwd, "rules.vsl", NULL);
  g_autofree char *qdir = g_build_filename (cwd, "quarantine", NULL);

  g_assert_null (vps_config_get_path (cfg));
  g_assert_cmpstr (vps_config_get_path_value (cfg, "vpsd", "rules"), ==, rules);
  g_assert_cmpstr (vps_config_get_path_value (cfg, "quarantine", "dir"), ==, qdir);
  g_assert_cmpint (vps_config_get_int (cfg, "vpsd", "workers"), ==, 0);
  g_assert_cmpint (vps_config_get_duration_ms (cfg, "vpsd", "drain_timeout"), ==, 30000);
  g_assert_cmpstr (vps_config_get_string (cfg, "milter", "listen"), ==, "inet:127.0.0.1:10030");
  g_assert_cmpint (vps_config_get_duration_ms (cfg, "milter", "command_timeout"), ==, 30000);
  g_assert_cmpint (vps_config_get_duration_ms (cfg, "milter", "content_timeout"), ==, 300000);
  g_assert_cmpstr (vps_config_get_string (cfg, "policy", "listen"), ==, "inet:127.0.0.1:10031");
  g_assert_cmpstr (vps_config_get_string (cfg, "policy", "no_opinion"), ==, "dunno");
  g_assert_cmpstr (vps_config_get_string (cfg, "grpc", "listen"), ==, "127.0.0.1:10032");
  g_assert_null (vps_config_get_path_value (cfg, "grpc", "tls_cert"));
  g_assert_cmpuint (vps_config_get_size (cfg, "limits", "max_message_size"), ==, 50 << 20);
  g_assert_cmpuint (vps_config_get_size (cfg, "limits", "memory_body_limit"), ==, 1 << 20);
  g_assert_cmpint (vps_config_get_int (cfg, "limits", "max_recipients"), ==, 1000);
  g_assert_cmpstr (vps_config_get_string (cfg, "log", "target"), ==, "stderr");
  g_assert_cmpstr (vps_config_get_string (cfg, "log", "level"), ==, "info");
  g_assert_cmpstr (vps_config_get_string (cfg, "vsmtpd", "policy"), ==, "embedded");
  g_assert_cmpstr (vps_config_get_strv (cfg, "vsmtpd", "listen")[0], ==, "127.0.0.1:2525");
  g_assert_null (vps_config_get_strv (cfg, "vsmtpd", "listen_submission")[0]);
  g_assert_null (vps_config_get_string (cfg, "vpsd", "user"));
  g_assert_null (vps_config_quarantine_names (cfg)[0]);
  g_assert_null (vps_config_export_names (cfg)[0]);
  g_assert_cmpuint (vps_config_n_connectors (cfg), ==, 0);
  g_assert_false (vps_config_has_key (cfg, "vpsd", "rules"));
}

/* ---- a full file -------------------------------------------------------- */

static const char full_conf[] = "# vps test configuration\n"
                                "[vpsd]\n"
                                "rules = rules/main.vsl\n"
                                "workers = 4\n"
                                "\n"
                                "[milter]\n"
                                "listen = unix:run/milter.sock\n"
                                "command_timeout = 250ms\n"
                                "content_timeout = 5m\n"
                                "[policy]\n"
                                "listen = inet:[::1]:10031\n"
                                "no_opinion = accept\n"
                                "[grpc]\n"
                                "tls_cert = /etc/ssl/vps.pem\n"
                                "tls_key = vps.key\n"
                                "[limits]\n"
                                "max_message_size = 10M\n"
                                "max_header_size = 512k\n"
                                "[quarantine]\n"
                                "names = virus, spam,bulk\n"
                                "release_to = [127.0.0.1]:25\n"
                                "[export]\n"
                                "archive = ../archive\n"
                                "legal = /srv/legal\n"
                                "[vsmtpd]\n"
                                "listen = 127.0.0.1:2525, [::1]:2525\r\n"
                                "policy = grpc://vps.example:10032\n"
                                "[dns]\n"
                                "nameserver = 127.0.0.1:5353\n"
                                "timeout = 2\n"
                                "[connector clamav]\n"
                                "type = clamav\n"
                                "database = db/\n"
                                "max_scan = 20M\n"
                                "[connector rspamd]\n"
                                "  type = http   \n"
                                "url = http://127.0.0.1:11333/checkv2\n"
                                "timeout = 3s\n"
                                "on_error = continue\n"
                                "concurrency = 8\n"
                                "retries = lots\n"
                                "[connector spf]\n"
                                "type = policy\n"
                                "on_error = quarantine\n"
                                "[delivery]\n";

static char *
write_conf (const char *text)
{
  g_autoptr (GError) error = NULL;
  /* G_TEST_OPTION_ISOLATE_DIRS gives each test its own, removed afterwards. */
  g_autofree char *sub = g_build_filename (g_get_user_data_dir (), "etc", NULL);
  char *path;

  g_assert_cmpint (g_mkdir_with_parents (sub, 0700), ==, 0);
  path = g_build_filename (sub, "vps.conf", NULL);
  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
  return path;
}

static void
test_full (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = write_conf (full_conf);
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *parent = g_path_get_dirname (dir);
  g_autoptr (VpsConfig) cfg = vps_config_load (path, &error);
  g_autofree char *expect = NULL;
  const VpsConfigConnector *c;
  const char *const *names;
  gint64 v = -1;
  guint64 size = 0;

  g_assert_no_error (error);
  g_assert_nonnull (cfg);
  g_assert_cmpstr (vps_config_get_path (cfg), ==, path);

  expect = g_build_filename (dir, "rules", "main.vsl", NULL);
  g_assert_cmpstr (vps_config_get_path_value (cfg, "vpsd", "rules"), ==, expect);
  g_clear_pointer (&expect, g_free);
  g_assert_cmpint (vps_config_get_int (cfg, "vpsd", "workers"), ==, 4);
  g_assert_true (vps_config_has_key (cfg, "vpsd", "workers"));
  g_assert_false (vps_config_has_key (cfg, "vpsd", "user"));

  expect = g_strconcat ("unix:", dir, "/run/milter.sock", NULL);
  g_assert_cmpstr (vps_config_get_string (cfg, "milter", "listen"), ==, expect);
  g_clear_pointer (&expect, g_free);
  g_assert_cmpint (vps_config_get_duration_ms (cfg, "milter", "command_timeout"), ==, 250);
  g_assert_cmpint (vps_config_get_duration_ms (cfg, "milter", "content_timeout"), ==, 300000);
  g_assert_cmpint (vps_config_get_duration_ms (cfg, "milter", "connect_timeout"), ==, 10000);
  g_assert_cmpstr (vps_config_get_string (cfg, "policy", "listen"), ==, "inet:[::1]:10031");
  g_assert_cmpstr (vps_config_get_string (cfg, "policy", "no_opinion"), ==, "accept");
  g_assert_cmpstr (vps_config_get_path_value (cfg, "grpc", "tls_cert"), ==, "/etc/ssl/vps.pem");
  expect = g_build_filename (dir, "vps.key", NULL);
  g_assert_cmpstr (vps_config_get_path_value (cfg, "grpc", "tls_key"), ==, expect);
  g_clear_pointer (&expect, g_free);
  g_assert_cmpuint (vps_config_get_size (cfg, "limits", "max_message_size"), ==, 10 << 20);
  g_assert_cmpuint (vps_config_get_size (cfg, "limits", "max_header_size"), ==, 512 << 10);

  names = vps_config_quarantine_names (cfg);
  g_assert_cmpuint (g_strv_length ((char **)names), ==, 3);
  g_assert_cmpstr (names[0], ==, "virus");
  g_assert_cmpstr (names[2], ==, "bulk");
  g_assert_cmpstr (vps_config_get_string (cfg, "quarantine", "release_to"), ==, "[127.0.0.1]:25");

  names = vps_config_export_names (cfg);
  g_assert_cmpuint (g_strv_length ((char **)names), ==, 2);
  g_assert_cmpstr (names[0], ==, "archive");
  expect = g_build_filename (parent, "archive", NULL);
  g_assert_cmpstr (vps_config_export_dir (cfg, "archive"), ==, expect);
  g_clear_pointer (&expect, g_free);
  g_assert_cmpstr (vps_config_export_dir (cfg, "legal"), ==, "/srv/legal");
  g_assert_null (vps_config_export_dir (cfg, "nope"));

  names = vps_config_get_strv (cfg, "vsmtpd", "listen");
  g_assert_cmpuint (g_strv_length ((char **)names), ==, 2);
  g_assert_cmpstr (names[1], ==, "[::1]:2525");
  g_assert_cmpstr (vps_config_get_string (cfg, "vsmtpd", "policy"), ==, "grpc://vps.example:10032");
  g_assert_cmpint (vps_config_get_duration_ms (cfg, "dns", "timeout"), ==, 2000);

  /* connectors in file order, common keys with defaults */
  g_assert_cmpuint (vps_config_n_connectors (cfg), ==, 3);
  c = vps_config_connector (cfg, 0);
  g_assert_cmpstr (c->name, ==, "clamav");
  g_assert_cmpstr (c->group, ==, "connector clamav");
  g_assert_cmpstr (c->type, ==, "clamav");
  g_assert_cmpint (c->timeout_ms, ==, 10000);
  g_assert_cmpint (c->on_error, ==, RULES_VERDICT_TEMPFAIL);
  g_assert_cmpint (c->concurrency, ==, 0);
  c = vps_config_connector (cfg, 1);
  g_assert_cmpstr (c->name, ==, "rspamd");
  g_assert_cmpstr (c->type, ==, "http");
  g_assert_cmpint (c->timeout_ms, ==, 3000);
  g_assert_cmpint (c->on_error, ==, RULES_VERDICT_CONTINUE);
  g_assert_cmpint (c->concurrency, ==, 8);
  c = vps_config_connector (cfg, 2);
  g_assert_cmpint (c->on_error, ==, RULES_VERDICT_QUARANTINE);
  g_assert_cmpint (vps_config_get_duration_ms (cfg, "connector rspamd", "timeout"), ==, 3000);
  g_assert_cmpstr (vps_config_get_string (cfg, "connector rspamd", "on_error"), ==, "continue");

  /* type-specific keys: raw, as paths, checked reads */
  g_assert_cmpstr (vps_config_get_raw (cfg, "connector rspamd", "url"), ==,
                   "http://127.0.0.1:11333/checkv2");
  g_assert_cmpstr (vps_config_get_string (cfg, "connector rspamd", "url"), ==,
                   "http://127.0.0.1:11333/checkv2");
  g_assert_null (vps_config_get_raw (cfg, "connector rspamd", "nothing"));
  expect = g_build_filename (dir, "db", NULL);
  g_assert_cmpstr (vps_config_get_path_value (cfg, "connector clamav", "database"), ==, expect);
  g_clear_pointer (&expect, g_free);
  g_assert_cmpuint (vps_config_get_size (cfg, "connector clamav", "max_scan"), ==, 20 << 20);
  g_assert_true (vps_config_read_size (cfg, "connector clamav", "max_scan", 0, &size, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (size, ==, 20 << 20);
  g_assert_true (vps_config_read_int (cfg, "connector clamav", "absent", 7, 0, 10, &v, &error));
  g_assert_cmpint (v, ==, 7);
  g_assert_false (vps_config_read_int (cfg, "connector rspamd", "retries", 1, 0, 10, &v, &error));
  g_assert_error (error, VPS_CONFIG_ERROR, VPS_CONFIG_ERROR_INVALID);
  expect = g_strdup_printf ("%s:41: [connector rspamd] retries: not an integer", path);
  g_assert_cmpstr (error->message, ==, expect);
  g_clear_pointer (&expect, g_free);
  g_clear_error (&error);
  g_assert_false (vps_config_read_size (cfg, "connector rspamd", "url", 0, &size, &error));
  g_assert_error (error, VPS_CONFIG_ERROR, VPS_CONFIG_ERROR_INVALID);
  g_clear_error (&error);

  {
    const char *const clam_keys[] = { "database", "max_scan", NULL };
    const char *const http_keys[] = { "url", NULL };

    g_assert_true (vps_config_connector_check_keys (cfg, "connector clamav", clam_keys, &error));
    g_assert_no_error (error);
    g_assert_false (vps_config_connector_check_keys (cfg, "connector rspamd", http_keys, &error));
    g_assert_error (error, VPS_CONFIG_ERROR, VPS_CONFIG_ERROR_UNKNOWN_KEY);
    expect = g_strdup_printf (
        "%s:41: [connector rspamd] retries: unknown key for this connector type", path);
    g_assert_cmpstr (error->message, ==, expect);
    g_clear_pointer (&expect, g_free);
    g_clear_error (&error);
  }

  /* vps_config_error_at: the line of the key, else of the group */
  vps_config_error_at (cfg, "connector clamav", "database", &error, "no such %s", "directory");
  g_assert_error (error, VPS_CONFIG_ERROR, VPS_CONFIG_ERROR_INVALID);
  expect = g_strdup_printf ("%s:33: [connector clamav] database: no such directory", path);
  g_assert_cmpstr (error->message, ==, expect);
  g_clear_pointer (&expect, g_free);
  g_clear_error (&error);
  vps_config_error_at (cfg, "connector spf", "address", &error, "required");
  expect = g_strdup_printf ("%s:42: [connector spf] address: required", path);
  g_assert_cmpstr (error->message, ==, expect);
  g_clear_pointer (&expect, g_free);
  g_clear_error (&error);

  /* immutable + refcounted */
  {
    VpsConfig *again = vps_config_ref (cfg);

    g_assert_true (again == cfg);
    vps_config_unref (again);
  }
  {
    g_autofree char *p = vps_config_resolve_path (cfg, "x/../y");

    expect = g_build_filename (dir, "y", NULL);
    g_assert_cmpstr (p, ==, expect);
    g_clear_pointer (&expect, g_free);
  }
  g_unlink (path);
}

static void
test_load_data_relative (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg
      = vps_config_load_data ("/srv/vps/vps.conf", "[queue]\ndir = spool\n", &error);

  g_assert_no_error (error);
  g_assert_cmpstr (vps_config_get_path (cfg), ==, "/srv/vps/vps.conf");
  g_assert_cmpstr (vps_config_get_path_value (cfg, "queue", "dir"), ==, "/srv/vps/spool");
  g_assert_cmpstr (vps_config_get_path_value (cfg, "quarantine", "dir"), ==, "/srv/vps/quarantine");
}

static void
test_io_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = vps_config_load ("/nonexistent/vps.conf", &error);
  g_autofree char *path = NULL;
  g_autofree char *expect = NULL;

  g_assert_null (cfg);
  g_assert_error (error, VPS_CONFIG_ERROR, VPS_CONFIG_ERROR_IO);
  g_assert_true (g_str_has_prefix (error->message, "/nonexistent/vps.conf: cannot read: "));
  g_clear_error (&error);

  /* a NUL byte inside the file is refused with its line */
  path = write_conf ("");
  g_assert_true (g_file_set_contents (path, "[vpsd]\nuser = a\0b\n", 18, &error));
  cfg = vps_config_load (path, &error);
  g_assert_null (cfg);
  g_assert_error (error, VPS_CONFIG_ERROR, VPS_CONFIG_ERROR_SYNTAX);
  expect = g_strdup_printf ("%s:2: syntax error: NUL byte", path);
  g_assert_cmpstr (error->message, ==, expect);
  g_clear_error (&error);

  /* larger than VPS_CONFIG_MAX_FILE_SIZE */
  {
    gsize n = 2 * 1024 * 1024;
    g_autofree char *big = g_malloc (n);

    memset (big, '#', n);
    g_assert_true (g_file_set_contents (path, big, n, &error));
    cfg = vps_config_load (path, &error);
    g_assert_null (cfg);
    g_assert_error (error, VPS_CONFIG_ERROR, VPS_CONFIG_ERROR_IO);
  }
  g_unlink (path);
}

static void
test_parse_helpers (void)
{
  static const struct
  {
    const char *s;
    gboolean ok;
    gint64 ms;
  } durations[] = {
    { "30", TRUE, 30000 },
    { "30s", TRUE, 30000 },
    { "250ms", TRUE, 250 },
    { "5m", TRUE, 300000 },
    { "2h", TRUE, 7200000 },
    { "1d", TRUE, 86400000 },
    { "0", TRUE, 0 },
    { "", FALSE, 0 },
    { "s", FALSE, 0 },
    { "5 m", FALSE, 0 },
    { "5M", FALSE, 0 },
    { "1.5s", FALSE, 0 },
    { "-1", FALSE, 0 },
    { "999999999999999999d", FALSE, 0 },
    { "9999999999999999999", FALSE, 0 },
  };
  static const struct
  {
    const char *s;
    gboolean ok;
    guint64 bytes;
  } sizes[] = {
    { "100", TRUE, 100 },    { "10K", TRUE, 10240 },
    { "10k", TRUE, 10240 },  { "2M", TRUE, 2 << 20 },
    { "1G", TRUE, 1 << 30 }, { "10MB", FALSE, 0 },
    { "", FALSE, 0 },        { "M", FALSE, 0 },
    { "-1", FALSE, 0 },      { "999999999999999999T", FALSE, 0 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (durations); i++)
    {
      gint64 v = -1;

      g_test_message ("duration %s", durations[i].s);
      g_assert_cmpint (vps_config_parse_duration_ms (durations[i].s, &v), ==, durations[i].ok);
      if (durations[i].ok)
        g_assert_cmpint (v, ==, durations[i].ms);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      guint64 v = 0;

      g_test_message ("size %s", sizes[i].s);
      g_assert_cmpint (vps_config_parse_size (sizes[i].s, &v), ==, sizes[i].ok);
      if (sizes[i].ok)
        g_assert_cmpuint (v, ==, sizes[i].bytes);
    }
}

static void
test_empty_groups (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = vps_config_load_data (
      "t.conf", "[delivery]\n[export]\n[quarantine]\nnames =\n[tls]\n", &error);

  g_assert_no_error (error);
  g_assert_null (vps_config_quarantine_names (cfg)[0]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (error_cases); i++)
    {
      g_autofree char *p = g_strdup_printf ("/vps/config/error/%s", error_cases[i].path);

      g_test_add_data_func (p, &error_cases[i], test_error_case);
    }
  g_test_add_func ("/vps/config/defaults", test_defaults);
  g_test_add_func ("/vps/config/full", test_full);
  g_test_add_func ("/vps/config/load-data-relative", test_load_data_relative);
  g_test_add_func ("/vps/config/io-errors", test_io_errors);
  g_test_add_func ("/vps/config/parse-helpers", test_parse_helpers);
  g_test_add_func ("/vps/config/empty-groups", test_empty_groups);
  return g_test_run ();
}
