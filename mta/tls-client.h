/* SPDX-License-Identifier: MIT
 *
 * tls-client.h — client-side TLS for vsmtpd's outbound SMTP (STARTTLS,
 * RFC 3207) with OpenSSL, on a non-blocking file descriptor.
 *
 * A VpsTlsClient is an immutable, reference-counted SSL_CTX built from the
 * config: the CA bundle (file and/or hashed directory; OpenSSL's default
 * paths — the system store — when neither is given), an optional client
 * certificate and key, the lowest protocol version (default TLSv1.2) and
 * the TLS ≤ 1.2 cipher list.  Compression and renegotiation are off; an
 * encrypted key is refused (never a prompt).
 *
 * A VpsTlsClientConn runs one handshake and the session after it over a
 * file descriptor the caller keeps owning (SSL_set_fd).  `server_name` is
 * the MX host name the caller resolved, not the address it connects to:
 * it goes out as SNI (RFC 6066; not for an IP literal) and it is the name
 * the certificate is checked against (X509_VERIFY_PARAM_set1_host: SAN
 * dNSNames, else the CN; a wildcard covers one whole left-most label; a
 * trailing dot is ignored).  With `verify` the handshake fails unless the
 * chain verifies against the CA bundle and the name matches
 * (VPS_TLS_CLIENT_ERROR_VERIFY, with OpenSSL's reason: "hostname mismatch",
 * "unable to get local issuer certificate", "certificate has expired" ...).
 * Without `verify` (policy "encrypt", "may") any certificate is accepted,
 * and vps_tls_client_conn_is_verified() tells whether it would have
 * passed, for the log ("Trusted" / "Untrusted" in Postfix's words).
 *
 * Status and I/O semantics are those of mta/tls.h (VpsTlsStatus): nothing
 * blocks, WANT_READ / WANT_WRITE say which readiness to wait for, read
 * must be called until WANT_READ (vps_tls_client_conn_pending()), a write
 * that answered WANT_* is repeated with the same bytes.  Every call clears
 * the thread's OpenSSL error queue before and after.  The program must
 * ignore SIGPIPE (OpenSSL writes with write(2)).
 */
#pragma once

#include <glib.h>

#include "mta/tls.h"

G_BEGIN_DECLS

#define VPS_TLS_CLIENT_ERROR (vps_tls_client_error_quark ())
GQuark vps_tls_client_error_quark (void);

typedef enum
{
  VPS_TLS_CLIENT_ERROR_CONFIG,    /* files, versions, ciphers */
  VPS_TLS_CLIENT_ERROR_HANDSHAKE, /* the handshake failed (protocol, peer closed) */
  VPS_TLS_CLIENT_ERROR_VERIFY,    /* the certificate did not verify (verify mode) */
  VPS_TLS_CLIENT_ERROR_IO,        /* a read or write failed after the handshake */
} VpsTlsClientError;

/* Host names longer than this are not sent as SNI nor checked (RFC 1035). */
#define VPS_TLS_CLIENT_MAX_NAME 253

typedef struct
{
  const char *ca_file;     /* PEM bundle, or NULL */
  const char *ca_path;     /* c_rehash'ed directory, or NULL */
  const char *cert;        /* client certificate (PEM, chain allowed), or NULL */
  const char *key;         /* its key (PEM), with cert */
  const char *min_version; /* "TLSv1.2" (default when NULL), "TLSv1.3", "TLSv1", "TLSv1.1" */
  const char *ciphers;     /* TLS ≤ 1.2 cipher list, NULL = OpenSSL's default */
} VpsTlsClientConfig;

typedef struct _VpsTlsClient VpsTlsClient;

VpsTlsClient *vps_tls_client_new (const VpsTlsClientConfig *config, GError **error);
VpsTlsClient *vps_tls_client_ref (VpsTlsClient *client);
void vps_tls_client_unref (VpsTlsClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsTlsClient, vps_tls_client_unref)

typedef struct _VpsTlsClientConn VpsTlsClientConn;

/* server_name may be NULL (no SNI, nothing to match: verify then fails). */
VpsTlsClientConn *vps_tls_client_conn_new (VpsTlsClient *client, int fd, const char *server_name,
                                           gboolean verify);
void vps_tls_client_conn_free (VpsTlsClientConn *conn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsTlsClientConn, vps_tls_client_conn_free)

VpsTlsStatus vps_tls_client_conn_handshake (VpsTlsClientConn *conn, GError **error);
/* *n is the number of bytes read or written when VPS_TLS_OK. */
VpsTlsStatus vps_tls_client_conn_read (VpsTlsClientConn *conn, void *buf, gsize len, gsize *n,
                                       GError **error);
VpsTlsStatus vps_tls_client_conn_write (VpsTlsClientConn *conn, const void *buf, gsize len,
                                        gsize *n, GError **error);
gsize vps_tls_client_conn_pending (VpsTlsClientConn *conn);
/* Send close_notify (best effort, never blocks). */
void vps_tls_client_conn_shutdown (VpsTlsClientConn *conn);

/* After the handshake: "TLSv1.3", "TLS_AES_256_GCM_SHA384"; whether the
 * chain and the name verified (also when verification was not required);
 * the server certificate's subject (RFC 2253, escaped, at most 1024
 * octets) or NULL. */
const char *vps_tls_client_conn_get_version (VpsTlsClientConn *conn);
const char *vps_tls_client_conn_get_cipher (VpsTlsClientConn *conn);
gboolean vps_tls_client_conn_is_verified (VpsTlsClientConn *conn);
char *vps_tls_client_conn_dup_peer_subject (VpsTlsClientConn *conn);

G_END_DECLS
