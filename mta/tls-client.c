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
 * The connection I/O is shared with tls.c, in mta/tls-io.c: every call
 * clears the thread's OpenSSL error queue first and drains it afterwards
 * (the queue is per thread and SSL_get_error() reads it, so an entry left
 * by one connection would turn another's WANT_READ into a failure).  After
 * a fatal error the connection only answers FAILED.
 */
#include "mta/tls-client.h"

#include "mta/tls-io.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - tls - client - error - quark, vps_tls_client_error)

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
  VpsTlsIo io;
  gboolean verify;
  gboolean named; /* a host name or address to match was set */
};

/* ---- errors ----------------------------------------------------------------- */

static void
set_config_error (GError **error, const char *prefix)
{
  vps_tls_io_set_queue_error (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_CONFIG, prefix);
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
  conn->io.ssl = SSL_new (client->ctx);
  /* Both fail only when memory is exhausted. */
  if (conn->io.ssl == NULL || SSL_set_fd (conn->io.ssl, fd) != 1)
    g_error ("tls-client: SSL_new/SSL_set_fd failed: out of memory");
  SSL_set_connect_state (conn->io.ssl);

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
      X509_VERIFY_PARAM *param = SSL_get0_param (conn->io.ssl);

      /* RFC 6066 §3: SNI carries host names only, never a literal */
      SSL_set_tlsext_host_name (conn->io.ssl, name);
      X509_VERIFY_PARAM_set_hostflags (param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (X509_VERIFY_PARAM_set1_host (param, name, 0) != 1)
        g_error ("tls-client: X509_VERIFY_PARAM_set1_host failed: out of memory");
      conn->named = TRUE;
    }
  else if (name != NULL)
    {
      /* An address was given as the name (a relay given as [IP]): the
       * certificate must carry that address (SAN iPAddress). */
      if (X509_VERIFY_PARAM_set1_ip_asc (SSL_get0_param (conn->io.ssl), name) == 1)
        conn->named = TRUE;
      else
        ERR_clear_error ();
    }
  if (!conn->named && verify)
    {
      /* Nothing to match: an empty host list would verify any name.  An
       * impossible name makes verification fail as it must. */
      X509_VERIFY_PARAM_set1_host (SSL_get0_param (conn->io.ssl), "invalid.", 0);
    }
  SSL_set_verify (conn->io.ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  ERR_clear_error ();
  return conn;
}

void
vps_tls_client_conn_free (VpsTlsClientConn *conn)
{
  if (conn == NULL)
    return;
  SSL_free (conn->io.ssl); /* the fd stays open: SSL_set_fd uses BIO_NOCLOSE */
  vps_tls_client_unref (conn->client);
  g_free (conn);
}

/* A value, not a static table: the domain is a function call.  Only in
 * verify mode does a failed verification become a VERIFY error; otherwise
 * the handshake does not stop on it. */
static VpsTlsIoErrors
client_errors (VpsTlsClientConn *conn)
{
  return (VpsTlsIoErrors){ VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_HANDSHAKE,
                           VPS_TLS_CLIENT_ERROR_IO,
                           conn->verify ? VPS_TLS_CLIENT_ERROR_VERIFY : -1 };
}

VpsTlsStatus
vps_tls_client_conn_handshake (VpsTlsClientConn *conn, GError **error)
{
  VpsTlsIoErrors errors;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  errors = client_errors (conn);
  return vps_tls_io_handshake (&conn->io, &errors, error);
}

VpsTlsStatus
vps_tls_client_conn_read (VpsTlsClientConn *conn, void *buf, gsize len, gsize *n, GError **error)
{
  VpsTlsIoErrors errors;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (buf != NULL && len > 0, VPS_TLS_FAILED);
  g_return_val_if_fail (n != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  errors = client_errors (conn);
  return vps_tls_io_read (&conn->io, &errors, buf, len, n, error);
}

VpsTlsStatus
vps_tls_client_conn_write (VpsTlsClientConn *conn, const void *buf, gsize len, gsize *n,
                           GError **error)
{
  VpsTlsIoErrors errors;

  g_return_val_if_fail (conn != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (buf != NULL && len > 0, VPS_TLS_FAILED);
  g_return_val_if_fail (n != NULL, VPS_TLS_FAILED);
  g_return_val_if_fail (error == NULL || *error == NULL, VPS_TLS_FAILED);

  errors = client_errors (conn);
  return vps_tls_io_write (&conn->io, &errors, buf, len, n, error);
}

gsize
vps_tls_client_conn_pending (VpsTlsClientConn *conn)
{
  g_return_val_if_fail (conn != NULL, 0);
  return vps_tls_io_pending (&conn->io);
}

void
vps_tls_client_conn_shutdown (VpsTlsClientConn *conn)
{
  g_return_if_fail (conn != NULL);
  vps_tls_io_shutdown (&conn->io);
}

const char *
vps_tls_client_conn_get_version (VpsTlsClientConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return vps_tls_io_get_version (&conn->io);
}

const char *
vps_tls_client_conn_get_cipher (VpsTlsClientConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return vps_tls_io_get_cipher (&conn->io);
}

gboolean
vps_tls_client_conn_is_verified (VpsTlsClientConn *conn)
{
  g_return_val_if_fail (conn != NULL, FALSE);
  /* without a name the chain alone proves nothing about the peer */
  return conn->named && SSL_is_init_finished (conn->io.ssl)
         && SSL_get0_peer_certificate (conn->io.ssl) != NULL
         && SSL_get_verify_result (conn->io.ssl) == X509_V_OK;
}

char *
vps_tls_client_conn_dup_peer_subject (VpsTlsClientConn *conn)
{
  g_return_val_if_fail (conn != NULL, NULL);
  return vps_tls_io_dup_peer_subject (&conn->io);
}
