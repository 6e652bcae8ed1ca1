/* SPDX-License-Identifier: MIT
 *
 * test-tls.c — mta/tls against a real OpenSSL client over a socketpair.
 *
 * Certificates are made at start-up with the openssl CLI in a temporary
 * directory.  Both ends are non-blocking and pumped in turn from one
 * thread, so every WANT_READ/WANT_WRITE path runs for real: SNI selection
 * (checked by the subject the client sees), version floors, cipher
 * settings, garbage and vanishing peers, a 1 MB round trip through small
 * socket buffers, close_notify, the error-queue isolation, and one case per
 * configuration error with its message.
 */
#include "mta/tls.h"

#include <glib/gstdio.h>
#include <glib-unix.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Rounds of the pumping loops before a test calls it a hang. */
#define PUMP_MAX_ROUNDS 200000
#define ROUND_TRIP_SIZE (1024 * 1024)

static char *tmp_dir;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmp_dir, name, NULL);
}

/* ---- certificates --------------------------------------------------------- */

static void
run_openssl (const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *err_text = NULL;
  int status = 0;

  g_ptr_array_add (argv, (char *)"openssl");
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (char *)args[i]);
  g_ptr_array_add (argv, NULL);
  if (!g_spawn_sync (tmp_dir, (char **)argv->pdata, NULL,
                     G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &err_text,
                     &status, &error))
    g_error ("openssl: %s", error->message);
  if (!g_spawn_check_wait_status (status, &error))
    g_error ("openssl %s: %s\n%s", args[0], error->message, err_text);
}

/* NAME.pem and NAME.key, self-signed, CN=cn, SAN dNSNames `san` (or none). */
static void
make_cert (const char *name, const char *cn, const char *san)
{
  g_autofree char *cert = g_strdup_printf ("%s.pem", name);
  g_autofree char *key = g_strdup_printf ("%s.key", name);
  g_autofree char *subj = g_strdup_printf ("/CN=%s", cn);
  g_autofree char *ext = san != NULL ? g_strdup_printf ("subjectAltName=%s", san) : NULL;
  const char *args[] = {
    "req",     "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-keyout", key,     "-out",    cert,       "-subj",  subj,    ext != NULL ? "-addext" : NULL,
    ext,       NULL
  };

  run_openssl (args);
}

static void
make_files (void)
{
  const char *encrypt[] = { "pkey",        "-in",  "main.key",      "-aes256", "-passout",
                            "pass:secret", "-out", "encrypted.key", NULL };
  g_autofree char *garbage = tmp_path ("garbage.pem");

  make_cert ("main", "mx.test", "DNS:mx.test");
  make_cert ("sni", "sni.test", "DNS:sni.test,DNS:*.wild.test");
  make_cert ("exact", "exact.wild.test", "DNS:exact.wild.test");
  make_cert ("cnonly", "cnonly.test", NULL);
  run_openssl (encrypt);
  g_assert_true (g_file_set_contents (garbage, "hello, not PEM\n", -1, NULL));
}

static void
remove_tmp_dir (void)
{
  g_autoptr (GDir) dir = g_dir_open (tmp_dir, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = tmp_path (name);
      g_unlink (path);
    }
  g_rmdir (tmp_dir);
}

/* ---- fixture -------------------------------------------------------------- */

typedef struct
{
  int fds[2]; /* [0] server end, [1] client end */
  VpsTlsServer *server;
  VpsTlsConn *conn;
  SSL_CTX *client_ctx;
  SSL *client;
  gboolean client_done;
} Fixture;

static VpsTlsServerConfig
default_config (void)
{
  static char *main_cert, *main_key;
  static VpsTlsCertPair sni[3];
  VpsTlsServerConfig config = { 0 };

  if (main_cert == NULL)
    {
      main_cert = tmp_path ("main.pem");
      main_key = tmp_path ("main.key");
      sni[0] = (VpsTlsCertPair){ tmp_path ("sni.pem"), tmp_path ("sni.key") };
      sni[1] = (VpsTlsCertPair){ tmp_path ("exact.pem"), tmp_path ("exact.key") };
      sni[2] = (VpsTlsCertPair){ tmp_path ("cnonly.pem"), tmp_path ("cnonly.key") };
    }
  config.main = (VpsTlsCertPair){ main_cert, main_key };
  config.sni = sni;
  config.n_sni = G_N_ELEMENTS (sni);
  return config;
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->fds), ==, 0);
  g_assert_true (g_unix_set_fd_nonblocking (f->fds[0], TRUE, NULL));
  g_assert_true (g_unix_set_fd_nonblocking (f->fds[1], TRUE, NULL));
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->conn, vps_tls_conn_free);
  g_clear_pointer (&f->server, vps_tls_server_unref);
  g_clear_pointer (&f->client, SSL_free);
  g_clear_pointer (&f->client_ctx, SSL_CTX_free);
  for (gsize i = 0; i < 2; i++)
    if (f->fds[i] >= 0)
      close (f->fds[i]);
  /* Nothing a test did may stay on this thread's queue. */
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
}

/* Server from `config`, client capped at `max_version` (0 = none) asking
 * for `sni` (NULL = no SNI). */
static void
fixture_start (Fixture *f, const VpsTlsServerConfig *config, int max_version, const char *sni)
{
  g_autoptr (GError) error = NULL;

  f->server = vps_tls_server_new (config, &error);
  g_assert_no_error (error);
  f->conn = vps_tls_conn_new (f->server, f->fds[0]);

  f->client_ctx = SSL_CTX_new (TLS_client_method ());
  g_assert_nonnull (f->client_ctx);
  if (max_version != 0)
    g_assert_cmpint (SSL_CTX_set_max_proto_version (f->client_ctx, max_version), ==, 1);
  SSL_CTX_set_mode (f->client_ctx,
                    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  f->client = SSL_new (f->client_ctx);
  g_assert_cmpint (SSL_set_fd (f->client, f->fds[1]), ==, 1);
  SSL_set_connect_state (f->client);
  if (sni != NULL)
    g_assert_cmpint (SSL_set_tlsext_host_name (f->client, sni), ==, 1);
}

/* One client handshake step; FALSE when the client failed. */
static gboolean
client_step (Fixture *f)
{
  int ret, err;

  if (f->client_done)
    return TRUE;
  ERR_clear_error ();
  ret = SSL_do_handshake (f->client);
  if (ret == 1)
    {
      f->client_done = TRUE;
      return TRUE;
    }
  err = SSL_get_error (f->client, ret);
  ERR_clear_error ();
  return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
}

/* Runs both handshakes to the end; returns the server's final status.
 * With `poison`, a stale error is pushed on the thread's OpenSSL error
 * queue before every server call, as another connection could leave it. */
static VpsTlsStatus
pump_handshake (Fixture *f, gboolean poison, GError **error)
{
  gboolean server_done = FALSE;
  guint after_client_failed = 0;

  for (guint i = 0; i < PUMP_MAX_ROUNDS; i++)
    {
      if (!server_done)
        {
          VpsTlsStatus st;

          if (poison)
            ERR_raise (ERR_LIB_USER, 42);
          st = vps_tls_conn_handshake (f->conn, error);
          if (st == VPS_TLS_OK)
            server_done = TRUE;
          else if (st != VPS_TLS_WANT_READ && st != VPS_TLS_WANT_WRITE)
            return st;
          else if (after_client_failed > 16)
            return st; /* the client gave up without telling */
        }
      if (!client_step (f))
        after_client_failed++;
      if (server_done && f->client_done)
        return VPS_TLS_OK;
      if (server_done && after_client_failed > 0)
        return VPS_TLS_OK;
    }
  g_assert_not_reached ();
}

static char *
client_seen_subject (Fixture *f)
{
  X509 *peer = SSL_get0_peer_certificate (f->client);
  char *line, *copy;

  g_assert_nonnull (peer);
  line = X509_NAME_oneline (X509_get_subject_name (peer), NULL, 0);
  copy = g_strdup (line);
  OPENSSL_free (line);
  return copy;
}

/* ---- SNI, table-driven ------------------------------------------------------ */

typedef struct
{
  const char *path;
  const char *sni;     /* asked by the client, NULL = none */
  const char *subject; /* of the certificate the client must get */
  int max_version;     /* of the client, 0 = TLS 1.3 */
} SniCase;

static const SniCase sni_cases[] = {
  { "none", NULL, "/CN=mx.test" },
  { "main-name", "mx.test", "/CN=mx.test" },
  { "exact", "sni.test", "/CN=sni.test" },
  { "case-insensitive", "SNI.Test", "/CN=sni.test" },
  { "trailing-dot", "sni.test.", "/CN=sni.test" },
  { "wildcard", "a.wild.test", "/CN=sni.test" },
  { "wildcard-two-labels", "a.b.wild.test", "/CN=mx.test" },
  { "wildcard-bare-domain", "wild.test", "/CN=mx.test" },
  { "exact-over-wildcard", "exact.wild.test", "/CN=exact.wild.test" },
  { "cn-without-san", "cnonly.test", "/CN=cnonly.test" },
  { "unknown", "nowhere.example", "/CN=mx.test" },
  { "tls12-wildcard", "b.wild.test", "/CN=sni.test", TLS1_2_VERSION },
  { "tls12-unknown", "nowhere.example", "/CN=mx.test", TLS1_2_VERSION },
};

static void
test_sni (Fixture *f, gconstpointer data)
{
  const SniCase *c = data;
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;
  g_autofree char *subject = NULL;

  fixture_start (f, &config, c->max_version, c->sni);
  g_assert_cmpint (pump_handshake (f, FALSE, &error), ==, VPS_TLS_OK);
  g_assert_no_error (error);
  g_assert_true (f->client_done);

  subject = client_seen_subject (f);
  g_assert_cmpstr (subject, ==, c->subject);
  g_assert_cmpstr (vps_tls_conn_get_sni (f->conn), ==, c->sni);
  if (c->max_version == 0)
    {
      g_assert_cmpstr (vps_tls_conn_get_version (f->conn), ==, "TLSv1.3");
      g_assert_true (g_str_has_prefix (vps_tls_conn_get_cipher (f->conn), "TLS_"));
    }
  else
    g_assert_cmpstr (vps_tls_conn_get_version (f->conn), ==, "TLSv1.2");
  /* No client certificate is requested. */
  g_assert_null (vps_tls_conn_dup_peer_subject (f->conn));
}

/* ---- versions and ciphers ---------------------------------------------------- */

static void
test_min_version_refuses (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;

  config.min_version = "TLSv1.3";
  fixture_start (f, &config, TLS1_2_VERSION, NULL);
  g_assert_cmpint (pump_handshake (f, FALSE, &error), ==, VPS_TLS_FAILED);
  g_assert_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_HANDSHAKE);
  g_assert_cmpstr (error->message, ==, "TLS handshake: unsupported protocol");
  g_assert_false (f->client_done);
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
}

static void
test_tls12_cipher_list (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;

  config.ciphers = "ECDHE-RSA-AES128-GCM-SHA256";
  fixture_start (f, &config, TLS1_2_VERSION, NULL);
  g_assert_cmpint (pump_handshake (f, FALSE, &error), ==, VPS_TLS_OK);
  g_assert_no_error (error);
  g_assert_cmpstr (vps_tls_conn_get_version (f->conn), ==, "TLSv1.2");
  g_assert_cmpstr (vps_tls_conn_get_cipher (f->conn), ==, "ECDHE-RSA-AES128-GCM-SHA256");
}

static void
test_tls13_ciphersuites (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;

  config.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256";
  fixture_start (f, &config, 0, NULL);
  g_assert_cmpint (pump_handshake (f, FALSE, &error), ==, VPS_TLS_OK);
  g_assert_no_error (error);
  g_assert_cmpstr (vps_tls_conn_get_cipher (f->conn), ==, "TLS_CHACHA20_POLY1305_SHA256");
}

/* ---- hostile or vanishing peers ---------------------------------------------- */

static void
assert_dead (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  char buf[16];
  gsize n = 99;

  /* After a failure every call fails again and shutdown is a no-op. */
  g_assert_cmpint (vps_tls_conn_read (f->conn, buf, sizeof buf, &n, &error), ==, VPS_TLS_FAILED);
  g_assert_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_IO);
  g_assert_cmpstr (error->message, ==, "TLS read: the connection has already failed");
  g_assert_cmpuint (n, ==, 0);
  vps_tls_conn_shutdown (f->conn);
  g_assert_cmpuint (vps_tls_conn_pending (f->conn), ==, 0);
}

static void
test_garbage_hello (Fixture *f, gconstpointer data)
{
  static const char garbage[] = "EHLO client.example\r\nMAIL FROM:<a@b>\r\n";
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;
  VpsTlsStatus st;

  fixture_start (f, &config, 0, NULL);
  g_assert_cmpint (write (f->fds[1], garbage, sizeof garbage - 1), ==, sizeof garbage - 1);
  st = vps_tls_conn_handshake (f->conn, &error);
  g_assert_cmpint (st, ==, VPS_TLS_FAILED);
  g_assert_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_HANDSHAKE);
  g_assert_cmpstr (error->message, ==, "TLS handshake: wrong version number");
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
  assert_dead (f);
}

static void
test_eof_before_hello (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;

  fixture_start (f, &config, 0, NULL);
  g_assert_cmpint (vps_tls_conn_handshake (f->conn, &error), ==, VPS_TLS_WANT_READ);
  close (f->fds[1]);
  f->fds[1] = -1;
  g_assert_cmpint (vps_tls_conn_handshake (f->conn, &error), ==, VPS_TLS_FAILED);
  g_assert_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_HANDSHAKE);
  g_assert_true (g_str_has_prefix (error->message, "TLS handshake: "));
  assert_dead (f);
}

/* The client sends its ClientHello and disappears: the server's reply
 * meets a closed socket (EPIPE, SIGPIPE ignored) or EOF. */
static void
test_client_closes_mid_handshake (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;
  VpsTlsStatus st = VPS_TLS_WANT_READ;

  fixture_start (f, &config, 0, NULL);
  g_assert_true (client_step (f)); /* ClientHello written */
  g_clear_pointer (&f->client, SSL_free);
  close (f->fds[1]);
  f->fds[1] = -1;
  for (guint i = 0; i < 4 && (st == VPS_TLS_WANT_READ || st == VPS_TLS_WANT_WRITE); i++)
    st = vps_tls_conn_handshake (f->conn, &error);
  g_assert_cmpint (st, ==, VPS_TLS_FAILED);
  g_assert_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_HANDSHAKE);
  g_assert_true (g_str_has_prefix (error->message, "TLS handshake: "));
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
}

/* Freed half-way: the teardown frees a connection that has sent its
 * ServerHello and waits for the client's Finished (valgrind checks). */
static void
test_free_mid_handshake (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;

  fixture_start (f, &config, 0, NULL);
  g_assert_cmpint (vps_tls_conn_handshake (f->conn, &error), ==, VPS_TLS_WANT_READ);
  g_assert_true (client_step (f));
  g_assert_cmpint (vps_tls_conn_handshake (f->conn, &error), ==, VPS_TLS_WANT_READ);
  g_assert_no_error (error);
}

/* ---- data ------------------------------------------------------------------- */

static void
fill_pattern (guint8 *buf, gsize len, guint32 seed)
{
  for (gsize i = 0; i < len; i++)
    {
      seed = seed * 1103515245u + 12345u;
      buf[i] = (guint8)(seed >> 16);
    }
}

static void
handshake_ok (Fixture *f)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;

  fixture_start (f, &config, 0, "mx.test");
  g_assert_cmpint (pump_handshake (f, FALSE, &error), ==, VPS_TLS_OK);
  g_assert_no_error (error);
  g_assert_true (f->client_done);
}

/* 1 MB each way at once through 4 KiB socket buffers: partial writes,
 * WANT_WRITE on full sockets, WANT_READ on empty ones. */
static void
test_round_trip (Fixture *f, gconstpointer data)
{
  g_autofree guint8 *s_out = g_malloc (ROUND_TRIP_SIZE);
  g_autofree guint8 *c_out = g_malloc (ROUND_TRIP_SIZE);
  g_autofree guint8 *s_in = g_malloc (ROUND_TRIP_SIZE);
  g_autofree guint8 *c_in = g_malloc (ROUND_TRIP_SIZE);
  gsize s_w = 0, s_r = 0, c_w = 0, c_r = 0;
  guint want_write = 0, want_read = 0, rounds = 0;
  int small = 4096;

  for (gsize i = 0; i < 2; i++)
    {
      g_assert_cmpint (setsockopt (f->fds[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), ==, 0);
      g_assert_cmpint (setsockopt (f->fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), ==, 0);
    }
  fill_pattern (s_out, ROUND_TRIP_SIZE, 1);
  fill_pattern (c_out, ROUND_TRIP_SIZE, 2);
  handshake_ok (f);

  while (s_w < ROUND_TRIP_SIZE || s_r < ROUND_TRIP_SIZE || c_w < ROUND_TRIP_SIZE
         || c_r < ROUND_TRIP_SIZE)
    {
      g_autoptr (GError) error = NULL;
      VpsTlsStatus st;
      gsize n = 0;
      size_t done = 0;

      g_assert_cmpuint (++rounds, <, PUMP_MAX_ROUNDS);
      if (s_w < ROUND_TRIP_SIZE)
        {
          st = vps_tls_conn_write (f->conn, s_out + s_w, ROUND_TRIP_SIZE - s_w, &n, &error);
          g_assert_no_error (error);
          if (st == VPS_TLS_OK)
            s_w += n;
          else if (st == VPS_TLS_WANT_WRITE)
            want_write++;
          else
            g_assert_cmpint (st, ==, VPS_TLS_WANT_READ);
        }
      /* Read until WANT_READ, as the contract asks. */
      for (;;)
        {
          guint8 buf[16384];

          st = vps_tls_conn_read (f->conn, buf, sizeof buf, &n, &error);
          g_assert_no_error (error);
          if (st != VPS_TLS_OK)
            {
              g_assert_cmpint (st, ==, VPS_TLS_WANT_READ);
              want_read++;
              break;
            }
          g_assert_cmpuint (s_r + n, <=, ROUND_TRIP_SIZE);
          memcpy (s_in + s_r, buf, n);
          s_r += n;
        }
      ERR_clear_error ();
      if (c_w < ROUND_TRIP_SIZE
          && SSL_write_ex (f->client, c_out + c_w, ROUND_TRIP_SIZE - c_w, &done) == 1)
        c_w += done;
      ERR_clear_error ();
      while (c_r < ROUND_TRIP_SIZE
             && SSL_read_ex (f->client, c_in + c_r, ROUND_TRIP_SIZE - c_r, &done) == 1)
        c_r += done;
      ERR_clear_error ();
    }
  g_assert_true (memcmp (s_in, c_out, ROUND_TRIP_SIZE) == 0);
  g_assert_true (memcmp (c_in, s_out, ROUND_TRIP_SIZE) == 0);
  g_assert_cmpuint (want_write, >, 0);
  g_assert_cmpuint (want_read, >, 0);
}

static void
test_pending (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  size_t done = 0;
  char buf[16];
  gsize n = 0;
  VpsTlsStatus st = VPS_TLS_WANT_READ;

  handshake_ok (f);
  g_assert_cmpint (SSL_write_ex (f->client, "0123456789", 10, &done), ==, 1);
  /* One byte at a time: the rest of the record waits inside OpenSSL,
   * invisible to poll(2). */
  for (guint i = 0; i < 8 && st == VPS_TLS_WANT_READ; i++)
    st = vps_tls_conn_read (f->conn, buf, 1, &n, &error);
  g_assert_cmpint (st, ==, VPS_TLS_OK);
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, 1);
  g_assert_cmpint (buf[0], ==, '0');
  g_assert_cmpuint (vps_tls_conn_pending (f->conn), ==, 9);
  g_assert_cmpint (vps_tls_conn_read (f->conn, buf, sizeof buf, &n, &error), ==, VPS_TLS_OK);
  g_assert_cmpuint (n, ==, 9);
  g_assert_true (memcmp (buf, "123456789", 9) == 0);
  g_assert_cmpuint (vps_tls_conn_pending (f->conn), ==, 0);
}

static void
test_close_notify (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  char buf[16];
  gsize n = 0;
  VpsTlsStatus st = VPS_TLS_WANT_READ;
  int ret;

  handshake_ok (f);
  /* The server says goodbye: the client reads a clean end. */
  vps_tls_conn_shutdown (f->conn);
  vps_tls_conn_shutdown (f->conn); /* twice is harmless */
  ERR_clear_error ();
  ret = SSL_read (f->client, buf, sizeof buf);
  g_assert_cmpint (ret, ==, 0);
  g_assert_cmpint (SSL_get_error (f->client, ret), ==, SSL_ERROR_ZERO_RETURN);
  ERR_clear_error ();

  /* The client says goodbye: the server reads CLOSED, and again. */
  g_assert_cmpint (SSL_shutdown (f->client), >=, 0);
  ERR_clear_error ();
  for (guint i = 0; i < 8 && st == VPS_TLS_WANT_READ; i++)
    st = vps_tls_conn_read (f->conn, buf, sizeof buf, &n, &error);
  g_assert_cmpint (st, ==, VPS_TLS_CLOSED);
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, 0);
  g_assert_cmpint (vps_tls_conn_read (f->conn, buf, sizeof buf, &n, &error), ==, VPS_TLS_CLOSED);
}

static void
test_unclean_eof (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  char buf[16];
  gsize n = 0;

  handshake_ok (f);
  /* The client takes the session tickets first: a close with unread bytes
   * would be a reset, not an end of file. */
  ERR_clear_error ();
  g_assert_cmpint (SSL_read (f->client, buf, sizeof buf), <, 0);
  ERR_clear_error ();
  close (f->fds[1]);
  f->fds[1] = -1;
  g_assert_cmpint (vps_tls_conn_read (f->conn, buf, sizeof buf, &n, &error), ==, VPS_TLS_FAILED);
  g_assert_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_IO);
  g_assert_cmpstr (error->message, ==, "TLS read: unexpected eof while reading");
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
  assert_dead (f);
}

/* A TLS 1.2 client asking to renegotiate is refused; the connection lives. */
static void
test_no_renegotiation (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;
  char buf[16];
  gsize n = 0;
  int ret = 0;

  fixture_start (f, &config, TLS1_2_VERSION, NULL);
  g_assert_cmpint (pump_handshake (f, FALSE, &error), ==, VPS_TLS_OK);
  g_assert_cmpint (SSL_renegotiate (f->client), ==, 1);
  for (guint i = 0; i < 8; i++)
    {
      ERR_clear_error ();
      ret = SSL_do_handshake (f->client);
      if (ret == 1 || SSL_get_error (f->client, ret) != SSL_ERROR_WANT_READ)
        break;
      g_assert_cmpint (vps_tls_conn_read (f->conn, buf, sizeof buf, &n, &error), ==,
                       VPS_TLS_WANT_READ);
      g_assert_no_error (error);
    }
  g_assert_cmpint (ret, !=, 1);
  g_assert_cmpint (SSL_get_error (f->client, ret), ==, SSL_ERROR_SSL);
  g_assert_cmpint (ERR_GET_REASON (ERR_peek_error ()), ==, SSL_R_NO_RENEGOTIATION);
  ERR_clear_error ();
}

/* Another connection's error left on the thread's queue must not turn this
 * connection's WANT_READ into a failure. */
static void
test_stale_error_queue (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;
  char buf[16];
  gsize n = 0;

  fixture_start (f, &config, 0, NULL);
  g_assert_cmpint (pump_handshake (f, TRUE, &error), ==, VPS_TLS_OK);
  g_assert_no_error (error);
  ERR_raise (ERR_LIB_USER, 42);
  g_assert_cmpint (vps_tls_conn_read (f->conn, buf, sizeof buf, &n, &error), ==, VPS_TLS_WANT_READ);
  g_assert_no_error (error);
  /* Writes until the socket is full (the client reads nothing). */
  for (guint i = 0; i < PUMP_MAX_ROUNDS; i++)
    {
      static const char block[4096];
      VpsTlsStatus st;

      ERR_raise (ERR_LIB_USER, 42);
      st = vps_tls_conn_write (f->conn, block, sizeof block, &n, &error);
      g_assert_no_error (error);
      if (st == VPS_TLS_WANT_WRITE)
        break;
      g_assert_cmpint (st, ==, VPS_TLS_OK);
      g_assert_cmpuint (n, >, 0);
    }
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
}

/* The connection keeps the server alive. */
static void
test_server_outlived (Fixture *f, gconstpointer data)
{
  VpsTlsServerConfig config = default_config ();
  g_autoptr (GError) error = NULL;

  fixture_start (f, &config, 0, "a.wild.test");
  g_clear_pointer (&f->server, vps_tls_server_unref);
  g_assert_cmpint (pump_handshake (f, FALSE, &error), ==, VPS_TLS_OK);
  g_assert_no_error (error);
}

/* ---- configuration errors, table-driven ---------------------------------- */

typedef struct
{
  const char *path;
  const char *cert, *key;         /* files in the temporary dir, NULL = none */
  const char *sni_cert, *sni_key; /* one SNI pair when set */
  gsize sni_copies;               /* or this many copies of the main pair */
  const char *min_version, *ciphers, *ciphersuites;
  const char *message; /* '@' stands for the temporary dir */
  gboolean prefix;     /* the message only starts so (OpenSSL's words follow) */
} ConfigCase;

static const ConfigCase config_cases[] = {
  { "missing-cert", "nope.pem", "main.key",
    .message = "certificate @/nope.pem: No such file or "
               "directory" },
  { "missing-key", "main.pem", "nope.key", .message = "key @/nope.key: No such file or directory" },
  { "no-cert", NULL, "main.key", .message = "no certificate file given" },
  { "key-mismatch", "main.pem", "sni.key",
    .message = "key @/sni.key does not match certificate @/main.pem" },
  { "sni-key-mismatch", "main.pem", "main.key", "exact.pem", "cnonly.key",
    .message = "key @/cnonly.key does not match certificate @/exact.pem" },
  { "sni-missing-cert", "main.pem", "main.key", "nope.pem", "sni.key",
    .message = "certificate @/nope.pem: No such file or directory" },
  { "cert-not-pem", "garbage.pem", "main.key",
    .message = "certificate @/garbage.pem: ", .prefix = TRUE },
  { "key-not-pem", "main.pem", "garbage.pem",
    .message = "key @/garbage.pem: no usable PEM private key (an encrypted key is not "
               "supported): ",
    .prefix = TRUE },
  { "key-encrypted", "main.pem", "encrypted.key",
    .message = "key @/encrypted.key: no usable PEM private key (an encrypted key is not "
               "supported)",
    .prefix = TRUE },
  { "min-version", "main.pem", "main.key", .min_version = "SSLv3",
    .message = "min_version \"SSLv3\": expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3" },
  { "ciphers", "main.pem", "main.key", .ciphers = "NOPE",
    .message = "ciphers \"NOPE\": no cipher match" },
  { "ciphersuites", "main.pem", "main.key", .ciphersuites = "TLS_FAKE",
    .message = "ciphersuites \"TLS_FAKE\": no cipher match" },
  { "too-many-sni", "main.pem", "main.key", .sni_copies = VPS_TLS_MAX_SNI + 1,
    .message = "65 SNI certificates: at most 64" },
};

static void
test_config_error (gconstpointer data)
{
  const ConfigCase *c = data;
  g_autofree char *cert = c->cert != NULL ? tmp_path (c->cert) : NULL;
  g_autofree char *key = c->key != NULL ? tmp_path (c->key) : NULL;
  g_autofree char *sni_cert = c->sni_cert != NULL ? tmp_path (c->sni_cert) : NULL;
  g_autofree char *sni_key = c->sni_key != NULL ? tmp_path (c->sni_key) : NULL;
  g_autofree VpsTlsCertPair *sni = g_new0 (VpsTlsCertPair, VPS_TLS_MAX_SNI + 1);
  g_auto (GStrv) parts = g_strsplit (c->message, "@", -1);
  g_autofree char *expected = g_strjoinv (tmp_dir, parts);
  VpsTlsServerConfig config = { { cert, key } };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsTlsServer) server = NULL;

  config.sni = sni;
  if (sni_cert != NULL)
    {
      sni[0] = (VpsTlsCertPair){ sni_cert, sni_key };
      config.n_sni = 1;
    }
  for (gsize i = 0; i < c->sni_copies; i++)
    sni[i] = config.main;
  if (c->sni_copies > 0)
    config.n_sni = c->sni_copies;
  config.min_version = c->min_version;
  config.ciphers = c->ciphers;
  config.ciphersuites = c->ciphersuites;

  /* A stale entry must not end up in the message. */
  ERR_raise (ERR_LIB_USER, 42);
  server = vps_tls_server_new (&config, &error);
  g_assert_null (server);
  g_assert_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG);
  g_test_message ("%s", error->message);
  if (c->prefix)
    {
      if (!g_str_has_prefix (error->message, expected))
        g_error ("\"%s\" does not start with \"%s\"", error->message, expected);
    }
  else
    g_assert_cmpstr (error->message, ==, expected);
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
}

/* The whole set at the limit loads. */
static void
test_config_max_sni (void)
{
  g_autofree char *cert = tmp_path ("main.pem");
  g_autofree char *key = tmp_path ("main.key");
  VpsTlsCertPair sni[VPS_TLS_MAX_SNI];
  VpsTlsServerConfig config = { { cert, key }, sni, G_N_ELEMENTS (sni), "TLSv1.3" };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsTlsServer) server = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (sni); i++)
    sni[i] = config.main;
  server = vps_tls_server_new (&config, &error);
  g_assert_no_error (error);
  g_assert_nonnull (server);
}

static void
add_config_tests (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (config_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/tls/config/%s", config_cases[i].path);
      g_test_add_data_func (path, &config_cases[i], test_config_error);
    }
  g_test_add_func ("/tls/config/max-sni", test_config_max_sni);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  int ret;

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  /* As vsmtpd must: a vanished peer is EPIPE, not a dead process. */
  signal (SIGPIPE, SIG_IGN);
  tmp_dir = g_dir_make_tmp ("test-tls-XXXXXX", &error);
  g_assert_no_error (error);
  make_files ();

  for (gsize i = 0; i < G_N_ELEMENTS (sni_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/tls/sni/%s", sni_cases[i].path);
      g_test_add (path, Fixture, &sni_cases[i], fixture_setup, test_sni, fixture_teardown);
    }
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/tls/version/min-tls13-refuses-tls12", test_min_version_refuses);
  ADD ("/tls/version/tls12-cipher-list", test_tls12_cipher_list);
  ADD ("/tls/version/tls13-ciphersuites", test_tls13_ciphersuites);
  ADD ("/tls/handshake/garbage-hello", test_garbage_hello);
  ADD ("/tls/handshake/eof-before-hello", test_eof_before_hello);
  ADD ("/tls/handshake/client-closes-mid-handshake", test_client_closes_mid_handshake);
  ADD ("/tls/handshake/free-mid-handshake", test_free_mid_handshake);
  ADD ("/tls/handshake/stale-error-queue", test_stale_error_queue);
  ADD ("/tls/handshake/server-unref-first", test_server_outlived);
  ADD ("/tls/io/round-trip-1mb", test_round_trip);
  ADD ("/tls/io/pending", test_pending);
  ADD ("/tls/io/close-notify", test_close_notify);
  ADD ("/tls/io/unclean-eof", test_unclean_eof);
  ADD ("/tls/io/no-renegotiation", test_no_renegotiation);
#undef ADD
  add_config_tests ();

  ret = g_test_run ();
  remove_tmp_dir ();
  return ret;
}
