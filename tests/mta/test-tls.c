/* SPDX-License-Identifier: MIT
 *
 * test-tls.c — mta/tls against a real OpenSSL client over a socketpair.
 *
 * Certificates are made at start-up with the openssl CLI in a temporary
 * directory.  Both ends are non-blocking and pumped in turn from one
 * thread, so every WANT_READ/WANT_WRITE path runs for real: SNI selection
 * (checked by the subject the client sees), version floors, cipher
 * settings, garbage and vanishing peers, a 1 MB round trip through small
 * socket buffers, close_notify, the error-queue isolation.  The
 * configuration errors are test-tls-config.c's.
 */
#include "tests/mta/tls-test-util.h"

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

  ret = g_test_run ();
  remove_tmp_dir ();
  return ret;
}
