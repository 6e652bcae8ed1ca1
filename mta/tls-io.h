/* SPDX-License-Identifier: MIT
 *
 * tls-io.h — the OpenSSL connection I/O shared by the server (mta/tls.c)
 * and the client (mta/tls-client.c) side: one SSL* on a non-blocking fd,
 * driven through handshake, read, write, pending and shutdown, with the
 * SSL_get_error() result mapped to a VpsTlsStatus.
 *
 * Internal to mta/: the public contracts stay in mta/tls.h and
 * mta/tls-client.h.  This module has no error domain of its own: each
 * caller passes its domain and codes (VpsTlsIoErrors), so the server keeps
 * reporting VPS_TLS_ERROR_* and the client VPS_TLS_CLIENT_ERROR_*, with the
 * messages "TLS <what>: <why>".
 *
 * Every call clears the thread's OpenSSL error queue first and drains it
 * afterwards: the queue is per thread and SSL_get_error() reads it, so an
 * entry left by one connection would turn another's WANT_READ into a
 * failure.  After a fatal error the connection only answers FAILED.
 */
#pragma once

#include <glib.h>
#include <openssl/ssl.h>

#include "mta/tls.h"

G_BEGIN_DECLS

/* Embedded in VpsTlsConn and VpsTlsClientConn; the owner creates and frees
 * `ssl`. */
typedef struct
{
  SSL *ssl;
  gboolean failed; /* a fatal error happened: OpenSSL forbids further I/O */
  gboolean closed; /* close_notify received */
} VpsTlsIo;

/* The caller's error domain and codes.  `verify` >= 0 turns a handshake
 * protocol failure with a failed certificate verification into that code
 * ("TLS handshake: server certificate not verified: <reason>"); -1 keeps it
 * a `handshake` error. */
typedef struct
{
  GQuark domain;
  int handshake;
  int io;
  int verify;
} VpsTlsIoErrors;

/* OpenSSL's queued reasons as "reason (data); reason", the queue left
 * empty; NULL when it was empty. */
char *vps_tls_io_drain_errors (void);
/* Sets "PREFIX: OpenSSL's reasons" (or just PREFIX) in domain/code and
 * empties the queue. */
void vps_tls_io_set_queue_error (GError **error, GQuark domain, int code, const char *prefix);

VpsTlsStatus vps_tls_io_handshake (VpsTlsIo *io, const VpsTlsIoErrors *errors, GError **error);
VpsTlsStatus vps_tls_io_read (VpsTlsIo *io, const VpsTlsIoErrors *errors, void *buf, gsize len,
                              gsize *n, GError **error);
VpsTlsStatus vps_tls_io_write (VpsTlsIo *io, const VpsTlsIoErrors *errors, const void *buf,
                               gsize len, gsize *n, GError **error);
gsize vps_tls_io_pending (VpsTlsIo *io);
void vps_tls_io_shutdown (VpsTlsIo *io);

const char *vps_tls_io_get_version (VpsTlsIo *io);
const char *vps_tls_io_get_cipher (VpsTlsIo *io);
/* The peer certificate's subject (RFC 2253, escaped, cut for logs) or
 * NULL. */
char *vps_tls_io_dup_peer_subject (VpsTlsIo *io);

G_END_DECLS
