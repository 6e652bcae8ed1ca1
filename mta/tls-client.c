/* SPDX-License-Identifier: MIT
 *
 * tls-client.c — client-side TLS on OpenSSL 3 for outbound SMTP (STARTTLS,
 * RFC 3207; certificate names per RFC 6125 as OpenSSL implements them).
 *
 * One SSL_CTX per VpsTlsClient, shared read-only by every connection (the
 * per-connection settings — SNI, the name to verify, the verify mode —
 * live on the SSL, never on the context, so connections to different MX
 * hosts on one worker cannot see each other's names).  The chain is
 * always verified against the CA store; only with `verify` does a failure
 * stop the handshake, otherwise its result is kept for the log.
 *
 * As in tls.c, every call clears the thread's OpenSSL error queue first
 * and drains it afterwards: the queue is per thread and SSL_get_error()
 * reads it, so an entry left by one connection would turn another's
 * WANT_READ into a failure.  After a fatal error the connection only
 * answers FAILED.
 */
#include "mta/tls-client.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - tls - client - error - quark, vps_tls_client_error)

/* The first few of OpenSSL's stacked reasons say what happened. */
#define TLS_CLIENT_MAX_ERROR_ENTRIES 8
/* A server certificate subject is peer data: cut it for logs. */
#define TLS_CLIENT_MAX_PEER_SUBJECT 1024

typedef struct
{
  const char *name;
  int version;
} VersionName;

static const VersionName version_names[] = {
  { "TLSv1", TLS1_VERSION },
  { "TLSv1.1", TLS1_1_VERSION },
  { "TLSv1.2", TLS1_2_VERSION },
  { "TLSv1.3", TLS1_3_VERSION },
};

struct _VpsTlsClient
{
  gatomicrefcount ref;
  SSL_CTX *ctx; /* immutable after vps_tls_client_new() */
};

struct _VpsTlsClientConn
{
  VpsTlsClient *client; /* ref */
  SSL *ssl;
  gboolean verify;
  gboolean named; /* a host name or address to match was set */
  gboolean failed;
  gboolean closed;
};

/* ---- errors ----------------------------------------------------------------- */

static char *
drain_errors (void)
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

      if (n++ >= TLS_CLIENT_MAX_ERROR_ENTRIES)
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

static void
set_config_error (GError **error, const char *prefix)
{
  g_autofree char *reasons = drain_errors ();

  if (reasons != NULL)
    g_set_error (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_CONFIG, "%s: %s", prefix,
                 reasons);
  else
    g_set_error_literal (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_CONFIG, prefix);
}

/* ---- context -------------------------------------------------------------------- */

static int
no_passphrase (char *buf, int size, int rwflag, void *userdata)
{
  return 0;
}

static gboolean
check_readable (const char *what, const char *path, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

  if (fd < 0)
    {
      int saved_errno = errno;
      g_set_error (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_CONFIG, "%s %s: %s", what,
                   path, g_strerror (saved_errno));
      return FALSE;
    }
  close (fd);
  return TRUE;
}

static gboolean
load_client_cert (SSL_CTX *ctx, const char *cert, const char *key, GError **error)
{
  g_autofree char *prefix = NULL;

  if (!check_readable ("client certificate", cert, error)
      || !check_readable ("client key", key, error))
    return FALSE;
  if (SSL_CTX_use_certificate_chain_file (ctx, cert) != 1)
    {
      prefix = g_strdup_printf ("client certificate %s", cert);
      set_config_error (error, prefix);
      return FALSE;
    }
  if (SSL_CTX_use_PrivateKey_file (ctx, key, SSL_FILETYPE_PEM) != 1)
    {
      prefix = g_strdup_printf ("client key %s (an encrypted key is not supported)", key);
      set_config_error (error, prefix);
      return FALSE;
    }
  if (SSL_CTX_check_private_key (ctx) != 1)
    {
      ERR_clear_error ();
      g_set_error (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_CONFIG,
                   "client key %s does not match certificate %s", key, cert);
      return FALSE;
    }
  return TRUE;
}

static gboolean
load_ca (SSL_CTX *ctx, const VpsTlsClientConfig *config, GError **error)
{
  if (config->ca_file == NULL && config->ca_path == NULL)
    {
      /* the system store; a machine without one only fails verification */
      if (SSL_CTX_set_default_verify_paths (ctx) != 1)
        ERR_clear_error ();
      return TRUE;
    }
  if (config->ca_file != NULL && !check_readable ("CA file", config->ca_file, error))
    return FALSE;
  if (SSL_CTX_load_verify_locations (ctx, config->ca_file, config->ca_path) != 1)
    {
      g_autofree char *prefix
          = g_strdup_printf ("CA %s", config->ca_file != NULL ? config->ca_file : config->ca_path);
      set_config_error (error, prefix);
      return FALSE;
    }
  return TRUE;
}

VpsTlsClient *
vps_tls_client_new (const VpsTlsClientConfig *config, GError **error)
{
  g_autoptr (VpsTlsClient) client = NULL;
  int min_version = TLS1_2_VERSION;

  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  ERR_clear_error ();
  if (config->min_version != NULL)
    {
      gsize i;

      for (i = 0; i < G_N_ELEMENTS (version_names); i++)
        if (strcmp (config->min_version, version_names[i].name) == 0)
          break;
      if (i == G_N_ELEMENTS (version_names))
        {
          g_set_error (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_CONFIG,
                       "min_version \"%s\": expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3",
                       config->min_version);
          return NULL;
        }
      min_version = version_names[i].version;
    }
  if ((config->cert == NULL) != (config->key == NULL))
    {
      g_set_error_literal (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_CONFIG,
                           "a client certificate needs its key and a key its certificate");
      return NULL;
    }

  client = g_new0 (VpsTlsClient, 1);
  g_atomic_ref_count_init (&client->ref);
  client->ctx = SSL_CTX_new (TLS_client_method ());
  if (client->ctx == NULL)
    {
      set_config_error (error, "SSL_CTX_new");
      return NULL;
    }
  SSL_CTX_set_options (client->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode (client->ctx,
                    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_default_passwd_cb (client->ctx, no_passphrase);
  if (SSL_CTX_set_min_proto_version (client->ctx, min_version) != 1)
    {
      set_config_error (error, "min_version");
      return NULL;
    }
  if (config->ciphers != NULL && SSL_CTX_set_cipher_list (client->ctx, config->ciphers) != 1)
    {
      g_autofree char *prefix = g_strdup_printf ("ciphers \"%s\"", config->ciphers);
      set_config_error (error, prefix);
      return NULL;
    }
  if (!load_ca (client->ctx, config, error))
    return NULL;
  if (config->cert != NULL && !load_client_cert (client->ctx, config->cert, config->key, error))
    return NULL;
  ERR_clear_error ();
  return g_steal_pointer (&client);
}

VpsTlsClient *
vps_tls_client_ref (VpsTlsClient *client)
{
  g_return_val_if_fail (client != NULL, NULL);
  g_atomic_ref_count_inc (&client->ref);
  return client;
}

void
vps_tls_client_unref (VpsTlsClient *client)
{
  if (client == NULL || !g_atomic_ref_count_dec (&client->ref))
    return;
  SSL_CTX_free (client->ctx);
  g_free (client);
}

/* ---- connection ----------------------------------------------------------------- */

VpsTlsClientConn *
vps_tls_client_conn_new (VpsTlsClient *client, int fd, const char *server_name, gboolean verify)
{
  VpsTlsClientConn *conn;
  g_autofree char *name = NULL;

  g_return_val_if_fail (client != NULL, NULL);
  g_return_val_if_fail (fd >= 0, NULL);

  conn = g_new0 (VpsTlsClientConn, 1);
  conn->client = vps_tls_client_ref (client);
  conn->verify = verify;
  ERR_clear_error ();
  conn->ssl = SSL_new (client->ctx);
  /* Both fail only when memory is exhausted. */
  if (conn->ssl == NULL || SSL_set_fd (conn->ssl, fd) != 1)
    g_error ("tls-client: SSL_new/SSL_set_fd failed: out of memory");
  SSL_set_connect_state (conn->ssl);

  if (server_name != NULL)
    {
      gsize len = strnlen (server_name, VPS_TLS_CLIENT_MAX_NAME + 2);

      /* "mx.example.org." is the host "mx.example.org" */
      if (len > 0 && server_name[len - 1] == '.')
        len--;
      if (len > 0 && len <= VPS_TLS_CLIENT_MAX_NAME)
        name = g_strndup (server_name, len);
    }
  if (name != NULL && !g_hostname_is_ip_address (name))
    {
      X509_VERIFY_PARAM *param = SSL_get0_param (conn->ssl);

      /* RFC 6066 §3: SNI carries host names only, never a literal */
      SSL_set_tlsext_host_name (conn->ssl, name);
      X509_VERIFY_PARAM_set_hostflags (param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (X509_VERIFY_PARAM_set1_host (param, name, 0) != 1)
        g_error ("tls-client: X509_VERIFY_PARAM_set1_host failed: out of memory");
      conn->named = TRUE;
    }
  else if (name != NULL)
    {
      /* An address was given as the name (a relay given as [IP]): the
       * certificate must carry that address (SAN iPAddress). */
      if (X509_VERIFY_PARAM_set1_ip_asc (SSL_get0_param (conn->ssl), name) == 1)
        conn->named = TRUE;
      else
        ERR_clear_error ();
    }
  if (!conn->named && verify)
    {
      /* Nothing to match: an empty host list would verify any name.  An
       * impossible name makes verification fail as it must. */
      X509_VERIFY_PARAM_set1_host (SSL_get0_param (conn->ssl), "invalid.", 0);
    }
  SSL_set_verify (conn->ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  ERR_clear_error ();
  return conn;
}

void
vps_tls_client_conn_free (VpsTlsClientConn *conn)
{
  if (conn == NULL)
    return;
  SSL_free (conn->ssl); /* the fd stays open: SSL_set_fd uses BIO_NOCLOSE */
  vps_tls_client_unref (conn->client);
  g_free (conn);
}

static VpsTlsStatus
tls_status (VpsTlsClientConn *conn, int ret, int saved_errno, VpsTlsClientError code,
            const char *what, GError **error)
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
        if (code == VPS_TLS_CLIENT_ERROR_HANDSHAKE)
          {
            why = "the peer closed the connection";
            break;
          }
        conn->closed = TRUE;
        return VPS_TLS_CLOSED;
      case SSL_ERROR_SYSCALL:
        reasons = drain_errors ();
        if (reasons != NULL)
          why = reasons;
        else if (saved_errno != 0)
          why = g_strerror (saved_errno);
        else
          why = "the peer closed the connection";
        break;
      case SSL_ERROR_SSL:
        reasons = drain_errors ();
        why = reasons != NULL ? reasons : "protocol error";
        if (code == VPS_TLS_CLIENT_ERROR_HANDSHAKE && conn->verify
            && SSL_get_verify_result (conn->ssl) != X509_V_OK)
          {
            long v = SSL_get_verify_result (conn->ssl);

            conn->failed = TRUE;
            g_set_error (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_VERIFY,
                         "TLS handshake: server certificate not verified: %s",
                         X509_verify_cert_error_string (v));
            return VPS_TLS_FAILED;
          }
        break;
      default:
        ERR_clear_error ();
        why = "unexpected OpenSSL state";
        break;
    }
  conn->failed = TRUE;
  g_set_error (error, VPS_TLS_CLIENT_ERROR, code, "TLS %s: %s", what, why);
  return VPS_TLS_FAILED;
}

static gboolean
check_usable (VpsTlsClientConn *conn, VpsTlsClientError code, const char *what, GError **error)
{
  if (!conn->failed)
    return TRUE;
  g_set_error (error, VPS_TLS_CLIENT_ERROR, code, "TLS %s: the connection has already failed",
               what);
  return FALSE;
}

VpsTlsStatus
vps_tls_client_conn_handshake (VpsTlsClientConn *conn, GError **error)
{
  int ret;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  if (!check_usable (conn, VPS_TLS_CLIENT_ERROR_HANDSHAKE, "handshake", error))
    return VPS_TLS_FAILED;
  ERR_clear_error ();
  errno = 0;
  ret = SSL_do_handshake (conn->ssl);
  if (ret == 1)
    {
      ERR_clear_error ();
      return VPS_TLS_OK;
    }
  return tls_status (conn, ret, errno, VPS_TLS_CLIENT_ERROR_HANDSHAKE, "handshake", error);
}

VpsTlsStatus
vps_tls_client_conn_read (VpsTlsClientConn *conn, void *buf, gsize len, gsize *n, GError **error)
{
  size_t done = 0;
  int ret;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (buf != NULL && len > 0, VPS_TLS_FAILED);
  g_return_val_if_fail (n != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  *n = 0;
  if (!check_usable (conn, VPS_TLS_CLIENT_ERROR_IO, "read", error))
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
  return tls_status (conn, ret, errno, VPS_TLS_CLIENT_ERROR_IO, "read", error);
}

VpsTlsStatus
vps_tls_client_conn_write (VpsTlsClientConn *conn, const void *buf, gsize len, gsize *n,
                           GError **error)
{
  size_t done = 0;
  int ret;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (buf != NULL && len > 0, VPS_TLS_FAILED);
  g_return_val_if_fail (n != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  *n = 0;
  if (!check_usable (conn, VPS_TLS_CLIENT_ERROR_IO, "write", error))
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
  return tls_status (conn, ret, errno, VPS_TLS_CLIENT_ERROR_IO, "write", error);
}

gsize
vps_tls_client_conn_pending (VpsTlsClientConn *conn)
{
  int pending;

  g_return_val_if_fail (conn != NULL, 0);
  if (conn->failed)
    return 0;
  pending = SSL_pending (conn->ssl);
  return pending > 0 ? (gsize)pending : 0;
}

void
vps_tls_client_conn_shutdown (VpsTlsClientConn *conn)
{
  g_return_if_fail (conn != NULL);

  if (conn->failed || !SSL_is_init_finished (conn->ssl)
      || (SSL_get_shutdown (conn->ssl) & SSL_SENT_SHUTDOWN) != 0)
    return;
  ERR_clear_error ();
  (void)SSL_shutdown (conn->ssl);
  ERR_clear_error ();
}

const char *
vps_tls_client_conn_get_version (VpsTlsClientConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return SSL_get_version (conn->ssl);
}

const char *
vps_tls_client_conn_get_cipher (VpsTlsClientConn *conn)
{
  const SSL_CIPHER *cipher;

  g_return_val_if_fail (conn != NULL, NULL);
  cipher = SSL_get_current_cipher (conn->ssl);
  return cipher != NULL ? SSL_CIPHER_get_name (cipher) : NULL;
}

gboolean
vps_tls_client_conn_is_verified (VpsTlsClientConn *conn)
{
  g_return_val_if_fail (conn != NULL, FALSE);
  /* without a name the chain alone proves nothing about the peer */
  return conn->named && SSL_is_init_finished (conn->ssl)
         && SSL_get0_peer_certificate (conn->ssl) != NULL
         && SSL_get_verify_result (conn->ssl) == X509_V_OK;
}

char *
vps_tls_client_conn_dup_peer_subject (VpsTlsClientConn *conn)
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
  if (mem != NULL
      && X509_NAME_print_ex (mem, X509_get_subject_name (peer), 0, XN_FLAG_RFC2253) >= 0)
    {
      len = BIO_get_mem_data (mem, &data);
      if (len > 0 && data != NULL)
        subject = g_strndup (data, MIN ((gsize)len, (gsize)TLS_CLIENT_MAX_PEER_SUBJECT));
    }
  BIO_free (mem);
  ERR_clear_error ();
  return subject;
}
