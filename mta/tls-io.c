/* SPDX-License-Identifier: MIT
 *
 * tls-io.c — non-blocking OpenSSL connection I/O shared by mta/tls.c
 * (server) and mta/tls-client.c (client); see mta/tls-io.h.
 *
 * Contract: each call clears the thread's OpenSSL error queue before the
 * SSL call and leaves it empty after (reasons go into the GError); a fatal
 * result marks the connection failed, after which every call answers
 * FAILED ("TLS <what>: the connection has already failed") and OpenSSL is
 * not touched again except by SSL_free.  Errors are set in the caller's
 * domain with the caller's codes (VpsTlsIoErrors).
 */
#include "mta/tls-io.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* OpenSSL can stack many entries for one failure (a PEM file with several
 * bad blocks); the first few say what happened. */
#define TLS_IO_MAX_ERROR_ENTRIES 8
/* A peer certificate subject is peer data: cut it for logs. */
#define TLS_IO_MAX_PEER_SUBJECT 1024

char *
vps_tls_io_drain_errors (void)
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

      if (n++ >= TLS_IO_MAX_ERROR_ENTRIES)
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

void
vps_tls_io_set_queue_error (GError **error, GQuark domain, int code, const char *prefix)
{
  g_autofree char *reasons = vps_tls_io_drain_errors ();

  if (reasons != NULL)
    g_set_error (error, domain, code, "%s: %s", prefix, reasons);
  else
    g_set_error_literal (error, domain, code, prefix);
}

/* Maps the result of an SSL call that did not succeed.  `saved_errno` is
 * errno right after the call (SSL_ERROR_SYSCALL explains itself there). */
static VpsTlsStatus
tls_io_status (VpsTlsIo *io, const VpsTlsIoErrors *errors, int ret, int saved_errno,
               gboolean handshake, const char *what, GError **error)
{
  int ssl_error = SSL_get_error (io->ssl, ret);
  int code = handshake ? errors->handshake : errors->io;
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
        if (handshake)
          {
            /* close_notify before the handshake finished: no session. */
            why = "the peer closed the connection";
            break;
          }
        io->closed = TRUE;
        return VPS_TLS_CLOSED;
      case SSL_ERROR_SYSCALL:
        reasons = vps_tls_io_drain_errors ();
        if (reasons != NULL)
          why = reasons;
        else if (saved_errno != 0)
          why = g_strerror (saved_errno);
        else
          why = "the peer closed the connection";
        break;
      case SSL_ERROR_SSL:
        reasons = vps_tls_io_drain_errors ();
        why = reasons != NULL ? reasons : "protocol error";
        /* A verification failure surfaces as a protocol error whose
         * reasons only say "certificate verify failed"; the verify result
         * names the actual cause. */
        if (handshake && errors->verify >= 0)
          {
            long v = SSL_get_verify_result (io->ssl);

            if (v != X509_V_OK)
              {
                io->failed = TRUE;
                g_set_error (error, errors->domain, errors->verify,
                             "TLS handshake: server certificate not verified: %s",
                             X509_verify_cert_error_string (v));
                return VPS_TLS_FAILED;
              }
          }
        break;
      default:
        /* WANT_X509_LOOKUP, WANT_ASYNC ...: nothing here enables them. */
        ERR_clear_error ();
        why = "unexpected OpenSSL state";
        break;
    }
  io->failed = TRUE;
  g_set_error (error, errors->domain, code, "TLS %s: %s", what, why);
  return VPS_TLS_FAILED;
}

static gboolean
tls_io_check_usable (VpsTlsIo *io, GQuark domain, int code, const char *what, GError **error)
{
  if (!io->failed)
    return TRUE;
  g_set_error (error, domain, code, "TLS %s: the connection has already failed", what);
  return FALSE;
}

VpsTlsStatus
vps_tls_io_handshake (VpsTlsIo *io, const VpsTlsIoErrors *errors, GError **error)
{
  int ret;

  g_return_val_if_fail (io != NULL && errors != NULL, VPS_TLS_FAILED);

  if (!tls_io_check_usable (io, errors->domain, errors->handshake, "handshake", error))
    return VPS_TLS_FAILED;
  ERR_clear_error ();
  errno = 0;
  ret = SSL_do_handshake (io->ssl);
  if (ret == 1)
    {
      ERR_clear_error ();
      return VPS_TLS_OK;
    }
  return tls_io_status (io, errors, ret, errno, TRUE, "handshake", error);
}

VpsTlsStatus
vps_tls_io_read (VpsTlsIo *io, const VpsTlsIoErrors *errors, void *buf, gsize len, gsize *n,
                 GError **error)
{
  size_t done = 0;
  int ret;

  g_return_val_if_fail (io != NULL && errors != NULL, VPS_TLS_FAILED);

  *n = 0;
  if (!tls_io_check_usable (io, errors->domain, errors->io, "read", error))
    return VPS_TLS_FAILED;
  if (io->closed)
    return VPS_TLS_CLOSED;
  ERR_clear_error ();
  errno = 0;
  ret = SSL_read_ex (io->ssl, buf, len, &done);
  if (ret == 1)
    {
      ERR_clear_error ();
      *n = done;
      return VPS_TLS_OK;
    }
  return tls_io_status (io, errors, ret, errno, FALSE, "read", error);
}

VpsTlsStatus
vps_tls_io_write (VpsTlsIo *io, const VpsTlsIoErrors *errors, const void *buf, gsize len, gsize *n,
                  GError **error)
{
  size_t done = 0;
  int ret;

  g_return_val_if_fail (io != NULL && errors != NULL, VPS_TLS_FAILED);

  *n = 0;
  if (!tls_io_check_usable (io, errors->domain, errors->io, "write", error))
    return VPS_TLS_FAILED;
  ERR_clear_error ();
  errno = 0;
  ret = SSL_write_ex (io->ssl, buf, len, &done);
  if (ret == 1)
    {
      ERR_clear_error ();
      *n = done;
      return VPS_TLS_OK;
    }
  return tls_io_status (io, errors, ret, errno, FALSE, "write", error);
}

gsize
vps_tls_io_pending (VpsTlsIo *io)
{
  int pending;

  g_return_val_if_fail (io != NULL, 0);
  if (io->failed)
    return 0;
  pending = SSL_pending (io->ssl);
  return pending > 0 ? (gsize)pending : 0;
}

void
vps_tls_io_shutdown (VpsTlsIo *io)
{
  g_return_if_fail (io != NULL);

  /* After a fatal error OpenSSL must not be asked to write; before the
   * handshake completed there is no session to close. */
  if (io->failed || !SSL_is_init_finished (io->ssl)
      || (SSL_get_shutdown (io->ssl) & SSL_SENT_SHUTDOWN) != 0)
    return;
  ERR_clear_error ();
  /* One attempt: 0 (sent, peer's not seen yet), or WANT_WRITE when the
   * socket is full; either way the caller is about to close. */
  (void)SSL_shutdown (io->ssl);
  ERR_clear_error ();
}

const char *
vps_tls_io_get_version (VpsTlsIo *io)
{
  g_return_val_if_fail (io != NULL, NULL);
  return SSL_get_version (io->ssl);
}

const char *
vps_tls_io_get_cipher (VpsTlsIo *io)
{
  const SSL_CIPHER *cipher;

  g_return_val_if_fail (io != NULL, NULL);
  cipher = SSL_get_current_cipher (io->ssl);
  return cipher != NULL ? SSL_CIPHER_get_name (cipher) : NULL;
}

char *
vps_tls_io_dup_peer_subject (VpsTlsIo *io)
{
  X509 *peer;
  BIO *mem;
  char *data = NULL;
  long len;
  char *subject = NULL;

  g_return_val_if_fail (io != NULL, NULL);

  peer = SSL_get0_peer_certificate (io->ssl);
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
        subject = g_strndup (data, MIN ((gsize)len, (gsize)TLS_IO_MAX_PEER_SUBJECT));
    }
  BIO_free (mem);
  ERR_clear_error ();
  return subject;
}
