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
 * the GError message; after one, the connection only answers FAILED.
 */
#include "mta/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - tls - error - quark, vps_tls_error)

/* OpenSSL can stack many entries for one failure (a PEM file with several
 * bad blocks); the first few say what happened. */
#define TLS_MAX_ERROR_ENTRIES 8
/* Longest SNI host name considered (RFC 1035 limit; OpenSSL caps the
 * extension itself at 255 too). */
#define TLS_MAX_SNI_NAME 255
/* A client certificate subject is peer data: cut it for logs. */
#define TLS_MAX_PEER_SUBJECT 1024

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
  SSL *ssl;
  gboolean failed; /* a fatal error happened: OpenSSL forbids further I/O */
  gboolean closed; /* close_notify received */
};

/* ---- errors ------------------------------------------------------------ */

/* Drains the thread's OpenSSL error queue into "reason (data); reason";
 * returns NULL when the queue was empty. */
static char *
tls_drain_errors (void)
{
  g_autoptr (GString) text = g_string_new (NULL);
  unsigned long code;
  const char *data = NULL;
  int flags = 0;
  guint n = 0;

  while ((code = ERR_get_error_all (NULL, NULL, NULL, &data, &flags)) != 0)
    {
      const char *reason = ERR_reason_error_string (code);
      char buf[256];

      if (n++ >= TLS_MAX_ERROR_ENTRIES)
        continue; /* keep draining: the queue must end up empty */
      if (reason == NULL)
        {
          ERR_error_string_n (code, buf, sizeof buf);
          reason = buf;
        }
      if (text->len > 0)
        g_string_append (text, "; ");
      g_string_append (text, reason);
      if ((flags & ERR_TXT_STRING) != 0 && data != NULL && data[0] != '\0')
        g_string_append_printf (text, " (%s)", data);
    }
  if (text->len == 0)
    return NULL;
  return g_string_free (g_steal_pointer (&text), FALSE);
}

/* Sets a CONFIG error "PREFIX: OpenSSL's reasons" (or just PREFIX). */
static void
tls_set_config_error (GError **error, const char *prefix)
{
  g_autofree char *reasons = tls_drain_errors ();

  if (reasons != NULL)
    g_set_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG, "%s: %s", prefix, reasons);
  else
    g_set_error_literal (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG, prefix);
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
  conn->ssl = SSL_new (server->ctx[0]);
  /* Both fail only when memory is exhausted. */
  if (conn->ssl == NULL || SSL_set_fd (conn->ssl, fd) != 1)
    g_error ("tls: SSL_new/SSL_set_fd failed: out of memory");
  SSL_set_accept_state (conn->ssl);
  return conn;
}

void
vps_tls_conn_free (VpsTlsConn *conn)
{
  if (conn == NULL)
    return;
  SSL_free (conn->ssl); /* the fd stays open: SSL_set_fd uses BIO_NOCLOSE */
  vps_tls_server_unref (conn->server);
  g_free (conn);
}

/* Maps the result of an SSL call that did not succeed.  `saved_errno` is
 * errno right after the call (SSL_ERROR_SYSCALL explains itself there). */
static VpsTlsStatus
tls_status (VpsTlsConn *conn, int ret, int saved_errno, VpsTlsError code, const char *what,
            GError **error)
{
  int ssl_error = SSL_get_error (conn->ssl, ret);
  g_autofree char *reasons = NULL;
  const char *why;

  switch (ssl_error)
    {
      case SSL_ERROR_WANT_READ:
        ERR_clear_error ();
        return VPS_TLS_WANT_READ;
      case SSL_ERROR_WANT_WRITE:
        ERR_clear_error ();
        return VPS_TLS_WANT_WRITE;
      case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error ();
        if (code == VPS_TLS_ERROR_HANDSHAKE)
          {
            /* close_notify before the handshake finished: no session. */
            why = "the peer closed the connection";
            break;
          }
        conn->closed = TRUE;
        return VPS_TLS_CLOSED;
      case SSL_ERROR_SYSCALL:
        reasons = tls_drain_errors ();
        if (reasons != NULL)
          why = reasons;
        else if (saved_errno != 0)
          why = g_strerror (saved_errno);
        else
          why = "the peer closed the connection";
        break;
      case SSL_ERROR_SSL:
        reasons = tls_drain_errors ();
        why = reasons != NULL ? reasons : "protocol error";
        break;
      default:
        /* WANT_X509_LOOKUP, WANT_ASYNC ...: nothing here enables them. */
        ERR_clear_error ();
        why = "unexpected OpenSSL state";
        break;
    }
  conn->failed = TRUE;
  g_set_error (error, VPS_TLS_ERROR, code, "TLS %s: %s", what, why);
  return VPS_TLS_FAILED;
}

static gboolean
tls_check_usable (VpsTlsConn *conn, VpsTlsError code, const char *what, GError **error)
{
  if (!conn->failed)
    return TRUE;
  g_set_error (error, VPS_TLS_ERROR, code, "TLS %s: the connection has already failed", what);
  return FALSE;
}

VpsTlsStatus
vps_tls_conn_handshake (VpsTlsConn *conn, GError **error)
{
  int ret;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  if (!tls_check_usable (conn, VPS_TLS_ERROR_HANDSHAKE, "handshake", error))
    return VPS_TLS_FAILED;
  ERR_clear_error ();
  errno = 0;
  ret = SSL_do_handshake (conn->ssl);
  if (ret == 1)
    {
      ERR_clear_error ();
      return VPS_TLS_OK;
    }
  return tls_status (conn, ret, errno, VPS_TLS_ERROR_HANDSHAKE, "handshake", error);
}

VpsTlsStatus
vps_tls_conn_read (VpsTlsConn *conn, void *buf, gsize len, gsize *n, GError **error)
{
  size_t done = 0;
  int ret;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (buf != NULL && len > 0, VPS_TLS_FAILED);
  g_return_val_if_fail (n != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  *n = 0;
  if (!tls_check_usable (conn, VPS_TLS_ERROR_IO, "read", error))
    return VPS_TLS_FAILED;
  if (conn->closed)
    return VPS_TLS_CLOSED;
  ERR_clear_error ();
  errno = 0;
  ret = SSL_read_ex (conn->ssl, buf, len, &done);
  if (ret == 1)
    {
      ERR_clear_error ();
      *n = done;
      return VPS_TLS_OK;
    }
  return tls_status (conn, ret, errno, VPS_TLS_ERROR_IO, "read", error);
}

VpsTlsStatus
vps_tls_conn_write (VpsTlsConn *conn, const void *buf, gsize len, gsize *n, GError **error)
{
  size_t done = 0;
  int ret;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (buf != NULL && len > 0, VPS_TLS_FAILED);
  g_return_val_if_fail (n != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  *n = 0;
  if (!tls_check_usable (conn, VPS_TLS_ERROR_IO, "write", error))
    return VPS_TLS_FAILED;
  ERR_clear_error ();
  errno = 0;
  ret = SSL_write_ex (conn->ssl, buf, len, &done);
  if (ret == 1)
    {
      ERR_clear_error ();
      *n = done;
      return VPS_TLS_OK;
    }
  return tls_status (conn, ret, errno, VPS_TLS_ERROR_IO, "write", error);
}

gsize
vps_tls_conn_pending (VpsTlsConn *conn)
{
  int pending;

  g_return_val_if_fail (conn != NULL, 0);
  if (conn->failed)
    return 0;
  pending = SSL_pending (conn->ssl);
  return pending > 0 ? (gsize)pending : 0;
}

void
vps_tls_conn_shutdown (VpsTlsConn *conn)
{
  g_return_if_fail (conn != NULL);

  /* After a fatal error OpenSSL must not be asked to write; before the
   * handshake completed there is no session to close. */
  if (conn->failed || !SSL_is_init_finished (conn->ssl)
      || (SSL_get_shutdown (conn->ssl) & SSL_SENT_SHUTDOWN) != 0)
    return;
  ERR_clear_error ();
  /* One attempt: 0 (sent, peer's not seen yet), or WANT_WRITE when the
   * socket is full; either way the caller is about to close. */
  (void)SSL_shutdown (conn->ssl);
  ERR_clear_error ();
}

const char *
vps_tls_conn_get_version (VpsTlsConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return SSL_get_version (conn->ssl);
}

const char *
vps_tls_conn_get_cipher (VpsTlsConn *conn)
{
  const SSL_CIPHER *cipher;

  g_return_val_if_fail (conn != NULL, NULL);
  cipher = SSL_get_current_cipher (conn->ssl);
  return cipher != NULL ? SSL_CIPHER_get_name (cipher) : NULL;
}

char *
vps_tls_conn_dup_peer_subject (VpsTlsConn *conn)
{
  X509 *peer;
  BIO *mem;
  char *data = NULL;
  long len;
  char *subject = NULL;

  g_return_val_if_fail (conn != NULL, NULL);

  peer = SSL_get0_peer_certificate (conn->ssl);
  if (peer == NULL)
    return NULL;
  ERR_clear_error ();
  mem = BIO_new (BIO_s_mem ());
  /* RFC 2253 form with control and non-ASCII characters escaped: the
   * subject is peer data on its way to a log line. */
  if (mem != NULL
      && X509_NAME_print_ex (mem, X509_get_subject_name (peer), 0, XN_FLAG_RFC2253) >= 0)
    {
      len = BIO_get_mem_data (mem, &data);
      if (len > 0 && data != NULL)
        subject = g_strndup (data, MIN ((gsize)len, (gsize)TLS_MAX_PEER_SUBJECT));
    }
  BIO_free (mem);
  ERR_clear_error ();
  return subject;
}

const char *
vps_tls_conn_get_sni (VpsTlsConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return SSL_get_servername (conn->ssl, TLSEXT_NAMETYPE_host_name);
}
