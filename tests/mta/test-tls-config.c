/* SPDX-License-Identifier: MIT
 *
 * test-tls-config.c — mta/tls's configuration errors, one case per error
 * with its exact message (files missing, not PEM, encrypted, not matching
 * their certificate; versions, ciphers, the SNI limit), and the largest
 * set that loads.
 */
#include "tests/mta/tls-test-util.h"

/* ---- configuration errors, table-driven ---------------------------------- */

typedef struct
{
  const char *path;
  const char *cert, *key;         /* files in the temporary dir, NULL = none */
  const char *sni_cert, *sni_key; /* one SNI pair when set */
  gsize sni_copies;               /* or this many copies of the main pair */
  const char *min_version, *ciphers, *ciphersuites;
  const char *message; /* '@' stands for the temporary dir */
  gboolean prefix;     /* the message only starts so (OpenSSL's words follow) */
} ConfigCase;

static const ConfigCase config_cases[] = {
  { "missing-cert", "nope.pem", "main.key",
    .message = "certificate @/nope.pem: No such file or "
               "directory" },
  { "missing-key", "main.pem", "nope.key", .message = "key @/nope.key: No such file or directory" },
  { "no-cert", NULL, "main.key", .message = "no certificate file given" },
  { "key-mismatch", "main.pem", "sni.key",
    .message = "key @/sni.key does not match certificate @/main.pem" },
  { "sni-key-mismatch", "main.pem", "main.key", "exact.pem", "cnonly.key",
    .message = "key @/cnonly.key does not match certificate @/exact.pem" },
  { "sni-missing-cert", "main.pem", "main.key", "nope.pem", "sni.key",
    .message = "certificate @/nope.pem: No such file or directory" },
  { "cert-not-pem", "garbage.pem", "main.key",
    .message = "certificate @/garbage.pem: ", .prefix = TRUE },
  { "key-not-pem", "main.pem", "garbage.pem",
    .message = "key @/garbage.pem: no usable PEM private key (an encrypted key is not "
               "supported): ",
    .prefix = TRUE },
  { "key-encrypted", "main.pem", "encrypted.key",
    .message = "key @/encrypted.key: no usable PEM private key (an encrypted key is not "
               "supported)",
    .prefix = TRUE },
  { "min-version", "main.pem", "main.key", .min_version = "SSLv3",
    .message = "min_version \"SSLv3\": expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3" },
  { "ciphers", "main.pem", "main.key", .ciphers = "NOPE",
    .message = "ciphers \"NOPE\": no cipher match" },
  { "ciphersuites", "main.pem", "main.key", .ciphersuites = "TLS_FAKE",
    .message = "ciphersuites \"TLS_FAKE\": no cipher match" },
  { "too-many-sni", "main.pem", "main.key", .sni_copies = VPS_TLS_MAX_SNI + 1,
    .message = "65 SNI certificates: at most 64" },
};

static void
test_config_error (gconstpointer data)
{
  const ConfigCase *c = data;
  g_autofree char *cert = c->cert != NULL ? tmp_path (c->cert) : NULL;
  g_autofree char *key = c->key != NULL ? tmp_path (c->key) : NULL;
  g_autofree char *sni_cert = c->sni_cert != NULL ? tmp_path (c->sni_cert) : NULL;
  g_autofree char *sni_key = c->sni_key != NULL ? tmp_path (c->sni_key) : NULL;
  g_autofree VpsTlsCertPair *sni = g_new0 (VpsTlsCertPair, VPS_TLS_MAX_SNI + 1);
  g_auto (GStrv) parts = g_strsplit (c->message, "@", -1);
  g_autofree char *expected = g_strjoinv (tmp_dir, parts);
  VpsTlsServerConfig config = { { cert, key } };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsTlsServer) server = NULL;

  config.sni = sni;
  if (sni_cert != NULL)
    {
      sni[0] = (VpsTlsCertPair){ sni_cert, sni_key };
      config.n_sni = 1;
    }
  for (gsize i = 0; i < c->sni_copies; i++)
    sni[i] = config.main;
  if (c->sni_copies > 0)
    config.n_sni = c->sni_copies;
  config.min_version = c->min_version;
  config.ciphers = c->ciphers;
  config.ciphersuites = c->ciphersuites;

  /* A stale entry must not end up in the message. */
  ERR_raise (ERR_LIB_USER, 42);
  server = vps_tls_server_new (&config, &error);
  g_assert_null (server);
  g_assert_error (error, VPS_TLS_ERROR, VPS_TLS_ERROR_CONFIG);
  g_test_message ("%s", error->message);
  if (c->prefix)
    {
      if (!g_str_has_prefix (error->message, expected))
        g_error ("\"%s\" does not start with \"%s\"", error->message, expected);
    }
  else
    g_assert_cmpstr (error->message, ==, expected);
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
}

/* The whole set at the limit loads. */
static void
test_config_max_sni (void)
{
  g_autofree char *cert = tmp_path ("main.pem");
  g_autofree char *key = tmp_path ("main.key");
  VpsTlsCertPair sni[VPS_TLS_MAX_SNI];
  VpsTlsServerConfig config = { { cert, key }, sni, G_N_ELEMENTS (sni), "TLSv1.3" };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsTlsServer) server = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (sni); i++)
    sni[i] = config.main;
  server = vps_tls_server_new (&config, &error);
  g_assert_no_error (error);
  g_assert_nonnull (server);
}

static void
add_config_tests (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (config_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/tls/config/%s", config_cases[i].path);
      g_test_add_data_func (path, &config_cases[i], test_config_error);
    }
  g_test_add_func ("/tls/config/max-sni", test_config_max_sni);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  int ret;

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  tmp_dir = g_dir_make_tmp ("test-tls-config-XXXXXX", &error);
  g_assert_no_error (error);
  make_files ();
  add_config_tests ();
  ret = g_test_run ();
  remove_tmp_dir ();
  return ret;
}
