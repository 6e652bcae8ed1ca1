/* SPDX-License-Identifier: MIT
 *
 * tls.h — server-side TLS for vsmtpd with OpenSSL: STARTTLS and implicit
 * TLS (port 465) on a non-blocking socket.
 *
 * A VpsTlsServer is an immutable, reference-counted SSL_CTX set built from
 * the config: a default certificate and key, more certificate/key pairs
 * chosen by SNI (the client's server name matched against each
 * certificate's names — SAN dNSNames, else the CN; wildcards as in RFC
 * 6125 §6.4.3, one whole left-most label; an exact name wins over a
 * wildcard; a trailing dot is ignored; no match → the default), the
 * lowest protocol version (default TLSv1.2), the TLS ≤ 1.2 cipher list and
 * the TLS 1.3 cipher suites.  Compression and renegotiation are off;
 * session tickets on; an encrypted key is refused (never a prompt).
 * Certificates and keys are checked at load (a key that does not match its
 * certificate is an error naming both files).
 *
 * A VpsTlsConn runs one connection over a non-blocking file descriptor the
 * caller keeps owning (SSL_set_fd): handshake, read and write never block
 * and say which readiness they wait for (VPS_TLS_WANT_READ/_WRITE).  The
 * caller must keep calling vps_tls_conn_read() until it returns WANT_READ,
 * because OpenSSL may hold decrypted bytes the socket no longer shows
 * (vps_tls_conn_pending()).  The STARTTLS rule (CVE-2011-0411) is the
 * caller's: plaintext received after the STARTTLS line is discarded before
 * the handshake starts.
 *
 * Failures (garbage ClientHello, a protocol alert, a peer that closes) come
 * back as VPS_TLS_FAILED with a VPS_TLS_ERROR whose message is "TLS
 * handshake: REASON" / "TLS read: ..." / "TLS write: ..." with OpenSSL's
 * reasons (or the errno text); the caller logs it once and closes.  After
 * FAILED every call answers FAILED again and shutdown does nothing.  The
 * handshake never returns CLOSED: a peer that closes before it completes is
 * a failure.  After WANT_WRITE, write must be called again with the same
 * bytes (the buffer may move).  Nothing leaks when a connection is freed in
 * any state.  Every call clears the thread's OpenSSL error queue before and
 * after, so connections on one worker thread never see each other's errors.
 *
 * OpenSSL writes to the fd with write(2): a peer that has closed raises
 * SIGPIPE, so the program must ignore SIGPIPE (signal (SIGPIPE, SIG_IGN)
 * before the first connection); the write then fails with EPIPE.
 *
 * Client certificates are not requested (there is no CA option yet), so
 * vps_tls_conn_dup_peer_subject() returns NULL for now.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VPS_TLS_ERROR (vps_tls_error_quark ())
GQuark vps_tls_error_quark (void);

typedef enum
{
  VPS_TLS_ERROR_CONFIG,    /* files, versions, ciphers */
  VPS_TLS_ERROR_HANDSHAKE, /* the handshake failed */
  VPS_TLS_ERROR_IO,        /* a read or write failed, or the peer closed unclean */
} VpsTlsError;

/* At most this many SNI certificates per server. */
#define VPS_TLS_MAX_SNI 64

typedef struct
{
  const char *cert; /* PEM (chain allowed), absolute path */
  const char *key;  /* PEM */
} VpsTlsCertPair;

typedef struct
{
  VpsTlsCertPair main;
  const VpsTlsCertPair *sni; /* extra certificates chosen by SNI, n_sni of them */
  gsize n_sni;
  const char *min_version;  /* "TLSv1.2" (default when NULL), "TLSv1.3", "TLSv1", "TLSv1.1" */
  const char *ciphers;      /* TLS ≤ 1.2 cipher list, NULL = OpenSSL's default */
  const char *ciphersuites; /* TLS 1.3, NULL = OpenSSL's default */
} VpsTlsServerConfig;

typedef struct _VpsTlsServer VpsTlsServer;

VpsTlsServer *vps_tls_server_new (const VpsTlsServerConfig *config, GError **error);
VpsTlsServer *vps_tls_server_ref (VpsTlsServer *server);
void vps_tls_server_unref (VpsTlsServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsTlsServer, vps_tls_server_unref)

typedef enum
{
  VPS_TLS_OK,         /* done (handshake) or some bytes moved (read/write) */
  VPS_TLS_WANT_READ,  /* call again when the socket is readable */
  VPS_TLS_WANT_WRITE, /* call again when the socket is writable */
  VPS_TLS_CLOSED,     /* the peer sent close_notify (read returns 0 bytes) */
  VPS_TLS_FAILED,     /* error set */
} VpsTlsStatus;

typedef struct _VpsTlsConn VpsTlsConn;

VpsTlsConn *vps_tls_conn_new (VpsTlsServer *server, int fd);
void vps_tls_conn_free (VpsTlsConn *conn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsTlsConn, vps_tls_conn_free)

VpsTlsStatus vps_tls_conn_handshake (VpsTlsConn *conn, GError **error);
/* *n is the number of bytes read or written when VPS_TLS_OK. */
VpsTlsStatus vps_tls_conn_read (VpsTlsConn *conn, void *buf, gsize len, gsize *n, GError **error);
VpsTlsStatus vps_tls_conn_write (VpsTlsConn *conn, const void *buf, gsize len, gsize *n,
                                 GError **error);
gsize vps_tls_conn_pending (VpsTlsConn *conn);
/* Send close_notify (best effort, never blocks). */
void vps_tls_conn_shutdown (VpsTlsConn *conn);

/* After the handshake: "TLSv1.3", "TLS_AES_256_GCM_SHA384", the client
 * certificate's subject in RFC 2253 form, special characters escaped,
 * at most 1024 octets (or NULL), the SNI name as the client sent it (or
 * NULL). */
const char *vps_tls_conn_get_version (VpsTlsConn *conn);
const char *vps_tls_conn_get_cipher (VpsTlsConn *conn);
char *vps_tls_conn_dup_peer_subject (VpsTlsConn *conn);
const char *vps_tls_conn_get_sni (VpsTlsConn *conn);

G_END_DECLS
