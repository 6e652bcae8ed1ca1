/* SPDX-License-Identifier: MIT
 *
 * tls-test-util.h — what test-tls.c and test-tls-config.c share: a
 * temporary directory with certificates and keys made by the openssl CLI
 * (main, SNI, wildcard, CN-only, an encrypted key, a file that is not PEM).
 * Header-only (static inline): each test program includes it once.
 */
#pragma once

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

static char *tmp_dir; /* made by the program's main */

static inline char *
tmp_path (const char *name)
{
  return g_build_filename (tmp_dir, name, NULL);
}

/* ---- certificates --------------------------------------------------------- */

static inline void
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
static inline void
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

static inline void
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

static inline void
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
