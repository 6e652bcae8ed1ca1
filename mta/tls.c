/* SPDX-License-Identifier: MIT
 *
 * tls.c — server-side TLS on OpenSSL 3 for vsmtpd (STARTTLS, RFC 3207, and
 * implicit TLS, RFC 8314).
 *
 * One SSL_CTX per certificate (the default one and each SNI pair), all with
 * the same settings; the default context's servername callback (RFC 6066 §3)
 * moves a connection to the context whose certificate names the requested
 * host (X509_check_host: SAN dNSName, else CN; a wildcard covers one whole
 * left-most label, RFC 6125 §6.4.3).  Exact names win over wildcards, and a
 * name no certificate covers keeps the default certificate.
 *
 * A connection wraps a non-blocking fd with SSL_set_fd; every call clears the
 * thread's OpenSSL error queue first and drains it afterwards, because the
 * queue is per thread and SSL_get_error() consults it: a stale entry left by
 * one connection would turn another connection's WANT_READ into a failure.
 * Fatal errors come back as VPS_TLS_FAILED with OpenSSL's reasons joined in
 * the GError message; after one, the connection only answers FAILED.  That
 * connection I/O is shared with the client side, in mta/tls-io.c.
 */
#include "mta/tls.h"

#include "mta/tls-io.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - tls - error - quark, vps_tls_error)

/* Longest SNI host name considered (RFC 1035 limit; OpenSSL caps the
 * extension itself at 255 too). */
#define TLS_MAX_SNI_NAME 255

/* Session ids and tickets are valid only for the server that issued them. */
static const unsigned char session_id_context[] = "vsmtpd";

typedef struct
{
  const char *name;
  int version;
} TlsVersionName;

static const TlsVersionName version_names[] = {
  { "TLSv1", TLS1_VERSION },
  { "TLSv1.1", TLS1_1_VERSION },
  { "TLSv1.2", TLS1_2_VERSION },
  { "TLSv1.3", TLS1_3_VERSION },
};

struct _VpsTlsServer
{
  gatomicrefcount ref;
  /* ctx[0] is the default certificate, then the SNI ones in config order.
   * Immutable after vps_tls_server_new(): worker threads share it. */
  SSL_CTX *ctx[1 + VPS_TLS_MAX_SNI];
  gsize n_ctx;
};

struct _VpsTlsConn
{
  VpsTlsServer *server; /* ref: the servername callback reads its table */
  VpsTlsIo io;
};

/* ---- errors ------------------------------------------------------------ */

/* Sets a CONFIG error "PREFIX: OpenSSL's reasons" (or just PREFIX). */
static void
tls_set_config_error (GError **error, const char *prefix)
{
  vps_tls_io_set_queue_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG, prefix);
}

/* ---- server ------------------------------------------------------------ */

/* Never ask for a passphrase: OpenSSL's default callback would read the
 * terminal of a daemon.  An encrypted key is a config error. */
static int
tls_no_passphrase (char *buf, int size, int rwflag, void *userdata)
{
  return 0;
}

/* A readable-file check first, so that a missing file is reported with the
 * system's words rather than OpenSSL's "system library" entries. */
static gboolean
tls_check_readable (const char *what, const char *path, GError **error)
{
  int fd;

  if (path == NULL || path[0] == '\0')
    {
      g_set_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG, "no %s file given", what);
      return FALSE;
    }
  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    {
      int saved_errno = errno;
      g_set_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG, "%s %s: %s", what, path,
                   g_strerror (saved_errno));
      return FALSE;
    }
  close (fd);
  return TRUE;
}

static gboolean
tls_load_pair (SSL_CTX *ctx, const VpsTlsCertPair *pair, GError **error)
{
  g_autofree char *prefix = NULL;
  EVP_PKEY *pkey;
  BIO *bio;
  gboolean ok;

  if (!tls_check_readable ("certificate", pair->cert, error)
      || !tls_check_readable ("key", pair->key, error))
    return FALSE;

  if (SSL_CTX_use_certificate_chain_file (ctx, pair->cert) != 1)
    {
      prefix = g_strdup_printf ("certificate %s", pair->cert);
      tls_set_config_error (error, prefix);
      return FALSE;
    }

  /* The key is read here rather than with SSL_CTX_use_PrivateKey_file so
   * that "not a key" and "not this certificate's key" are told apart. */
  bio = BIO_new_file (pair->key, "r");
  pkey = bio != NULL ? PEM_read_bio_PrivateKey (bio, NULL, tls_no_passphrase, NULL) : NULL;
  BIO_free (bio);
  if (pkey == NULL)
    {
      prefix = g_strdup_printf ("key %s: no usable PEM private key (an encrypted key is not "
                                "supported)",
                                pair->key);
      tls_set_config_error (error, prefix);
      return FALSE;
    }
  ERR_clear_error ();
  if (X509_check_private_key (SSL_CTX_get0_certificate (ctx), pkey) != 1)
    {
      EVP_PKEY_free (pkey);
      ERR_clear_error ();
      g_set_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG,
                   "key %s does not match certificate %s", pair->key, pair->cert);
      return FALSE;
    }
  ok = SSL_CTX_use_PrivateKey (ctx, pkey) == 1;
  EVP_PKEY_free (pkey);
  if (!ok || SSL_CTX_check_private_key (ctx) != 1)
    {
      prefix = g_strdup_printf ("key %s with certificate %s", pair->key, pair->cert);
      tls_set_config_error (error, prefix);
      return FALSE;
    }
  return TRUE;
}

static SSL_CTX *
tls_ctx_new (const VpsTlsServerConfig *config, int min_version, const VpsTlsCertPair *pair,
             GError **error)
{
  SSL_CTX *ctx = SSL_CTX_new (TLS_server_method ());

  if (ctx == NULL)
    {
      tls_set_config_error (error, "SSL_CTX_new");
      return NULL;
    }
  /* Compression: CRIME.  Renegotiation: client-initiated renegotiation is a
   * CPU-exhaustion lever and SMTP never needs it. */
  SSL_CTX_set_options (ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                                | SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* Partial writes let a non-blocking caller see progress; the moving
   * buffer lets it retry from a different address after WANT_WRITE. */
  SSL_CTX_set_mode (ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_default_passwd_cb (ctx, tls_no_passphrase);
  SSL_CTX_set_session_id_context (ctx, session_id_context, sizeof session_id_context - 1);

  if (SSL_CTX_set_min_proto_version (ctx, min_version) != 1)
    {
      tls_set_config_error (error, "min_version");
      SSL_CTX_free (ctx);
      return NULL;
    }
  if (config->ciphers != NULL && SSL_CTX_set_cipher_list (ctx, config->ciphers) != 1)
    {
      g_autofree char *prefix = g_strdup_printf ("ciphers \"%s\"", config->ciphers);
      tls_set_config_error (error, prefix);
      SSL_CTX_free (ctx);
      return NULL;
    }
  if (config->ciphersuites != NULL && SSL_CTX_set_ciphersuites (ctx, config->ciphersuites) != 1)
    {
      g_autofree char *prefix = g_strdup_printf ("ciphersuites \"%s\"", config->ciphersuites);
      tls_set_config_error (error, prefix);
      SSL_CTX_free (ctx);
      return NULL;
    }
  if (!tls_load_pair (ctx, pair, error))
    {
      SSL_CTX_free (ctx);
      return NULL;
    }
  return ctx;
}

/* The context whose certificate names `name`: exact names first over all
 * certificates, then wildcards; NULL when none does. */
static SSL_CTX *
tls_pick_ctx (VpsTlsServer *server, const char *name, gsize len)
{
  static const unsigned int passes[] = {
    X509_CHECK_FLAG_NO_WILDCARDS,
    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
  };

  for (gsize p = 0; p < G_N_ELEMENTS (passes); p++)
    for (gsize i = 0; i < server->n_ctx; i++)
      {
        X509 *cert = SSL_CTX_get0_certificate (server->ctx[i]);

        if (cert != NULL && X509_check_host (cert, name, len, passes[p], NULL) == 1)
          return server->ctx[i];
      }
  return NULL;
}

static int
tls_servername_cb (SSL *ssl, int *alert, void *arg)
{
  VpsTlsServer *server = arg;
  const char *name = SSL_get_servername (ssl, TLSEXT_NAMETYPE_host_name);
  SSL_CTX *ctx;
  gsize len;

  if (name == NULL)
    return SSL_TLSEXT_ERR_NOACK; /* no SNI: the default certificate */
  len = strnlen (name, TLS_MAX_SNI_NAME + 1);
  /* "mx.example.org." is the same host as "mx.example.org". */
  if (len > 0 && name[len - 1] == '.')
    len--;
  if (len == 0 || len > TLS_MAX_SNI_NAME)
    return SSL_TLSEXT_ERR_NOACK;

  ctx = tls_pick_ctx (server, name, len);
  if (ctx == NULL)
    return SSL_TLSEXT_ERR_NOACK; /* unknown name: the default certificate */
  if (ctx != SSL_get_SSL_CTX (ssl) && SSL_set_SSL_CTX (ssl, ctx) == NULL)
    {
      *alert = SSL_AD_INTERNAL_ERROR;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
  return SSL_TLSEXT_ERR_OK;
}

static gboolean
tls_parse_version (const char *text, int *version, GError **error)
{
  if (text == NULL)
    {
      *version = TLS1_2_VERSION;
      return TRUE;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (version_names); i++)
    if (strcmp (text, version_names[i].name) == 0)
      {
        *version = version_names[i].version;
        return TRUE;
      }
  g_set_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG,
               "min_version \"%s\": expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3", text);
  return FALSE;
}

VpsTlsServer *
vps_tls_server_new (const VpsTlsServerConfig *config, GError **error)
{
  g_autoptr (VpsTlsServer) server = NULL;
  int min_version;

  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (config->n_sni == 0 || config->sni != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  /* Whatever a previous failure elsewhere left on this thread's queue must
   * not be blamed on these files. */
  ERR_clear_error ();
  if (config->n_sni > VPS_TLS_MAX_SNI)
    {
      g_set_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG,
                   "%" G_GSIZE_FORMAT " SNI certificates: at most %d", config->n_sni,
                   VPS_TLS_MAX_SNI);
      return NULL;
    }
  if (!tls_parse_version (config->min_version, &min_version, error))
    return NULL;

  server = g_new0 (VpsTlsServer, 1);
  g_atomic_ref_count_init (&server->ref);
  for (gsize i = 0; i <= config->n_sni; i++)
    {
      const VpsTlsCertPair *pair = i == 0 ? &config->main : &config->sni[i - 1];
      SSL_CTX *ctx = tls_ctx_new (config, min_version, pair, error);

      if (ctx == NULL)
        {
          ERR_clear_error ();
          return NULL;
        }
      server->ctx[server->n_ctx++] = ctx;
    }
  /* Only the context a connection starts on runs the callback; the table it
   * reads is the server's, which every connection holds a reference to. */
  SSL_CTX_set_tlsext_servername_callback (server->ctx[0], tls_servername_cb);
  SSL_CTX_set_tlsext_servername_arg (server->ctx[0], server);
  ERR_clear_error ();
  return g_steal_pointer (&server);
}

VpsTlsServer *
vps_tls_server_ref (VpsTlsServer *server)
{
  g_return_val_if_fail (server != NULL, NULL);
  g_atomic_ref_count_inc (&server->ref);
  return server;
}

void
vps_tls_server_unref (VpsTlsServer *server)
{
  if (server == NULL || !g_atomic_ref_count_dec (&server->ref))
    return;
  for (gsize i = 0; i < server->n_ctx; i++)
    SSL_CTX_free (server->ctx[i]);
  g_free (server);
}

/* ---- connection -------------------------------------------------------- */

VpsTlsConn *
vps_tls_conn_new (VpsTlsServer *server, int fd)
{
  VpsTlsConn *conn;

  g_return_val_if_fail (server != NULL, NULL);
  g_return_val_if_fail (fd >= 0, NULL);

  conn = g_new0 (VpsTlsConn, 1);
  conn->server = vps_tls_server_ref (server);
  ERR_clear_error ();
  conn->io.ssl = SSL_new (server->ctx[0]);
  /* Both fail only when memory is exhausted. */
  if (conn->io.ssl == NULL || SSL_set_fd (conn->io.ssl, fd) != 1)
    g_error ("tls: SSL_new/SSL_set_fd failed: out of memory");
  SSL_set_accept_state (conn->io.ssl);
  return conn;
}

void
vps_tls_conn_free (VpsTlsConn *conn)
{
  if (conn == NULL)
    return;
  SSL_free (conn->io.ssl); /* the fd stays open: SSL_set_fd uses BIO_NOCLOSE */
  vps_tls_server_unref (conn->server);
  g_free (conn);
}

/* A value, not a static table: the domain is a function call. */
static VpsTlsIoErrors
tls_errors (void)
{
  /* verify -1: the server does not verify client certificates. */
  return (VpsTlsIoErrors){ VPS_TLS_ERROR, VPS_TLS_ERROR_HANDSHAKE, VPS_TLS_ERROR_IO, -1 };
}

VpsTlsStatus
vps_tls_conn_handshake (VpsTlsConn *conn, GError **error)
{
  VpsTlsIoErrors errors = tls_errors ();

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  return vps_tls_io_handshake (&conn->io, &errors, error);
}

VpsTlsStatus
vps_tls_conn_read (VpsTlsConn *conn, void *buf, gsize len, gsize *n, GError **error)
{
  VpsTlsIoErrors errors = tls_errors ();

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (buf != NULL && len > 0, VPS_TLS_FAILED);
  g_return_val_if_fail (n != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  return vps_tls_io_read (&conn->io, &errors, buf, len, n, error);
}

VpsTlsStatus
vps_tls_conn_write (VpsTlsConn *conn, const void *buf, gsize len, gsize *n, GError **error)
{
  VpsTlsIoErrors errors = tls_errors ();

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (buf != NULL && len > 0, VPS_TLS_FAILED);
  g_return_val_if_fail (n != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  return vps_tls_io_write (&conn->io, &errors, buf, len, n, error);
}

gsize
vps_tls_conn_pending (VpsTlsConn *conn)
{
  g_return_val_if_fail (conn != NULL, 0);
  return vps_tls_io_pending (&conn->io);
}

void
vps_tls_conn_shutdown (VpsTlsConn *conn)
{
  g_return_if_fail (conn != NULL);
  vps_tls_io_shutdown (&conn->io);
}

const char *
vps_tls_conn_get_version (VpsTlsConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return vps_tls_io_get_version (&conn->io);
}

const char *
vps_tls_conn_get_cipher (VpsTlsConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return vps_tls_io_get_cipher (&conn->io);
}

char *
vps_tls_conn_dup_peer_subject (VpsTlsConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return vps_tls_io_dup_peer_subject (&conn->io);
}

const char *
vps_tls_conn_get_sni (VpsTlsConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return SSL_get_servername (conn->io.ssl, TLSEXT_NAMETYPE_host_name);
}
