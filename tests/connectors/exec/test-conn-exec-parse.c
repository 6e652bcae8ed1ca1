/* SPDX-License-Identifier: MIT
 *
 * test-conn-exec-parse.c — the `exec` connector without processes: the
 * answer lines, the exit-status mapping, every refusal branch, and the
 * environment (clean, values verbatim).
 */
#include <string.h>

#include "connectors/exec/conn-exec-private.h"

static ConnExecSettings *
settings (void)
{
  ConnExecSettings *s = g_new0 (ConnExecSettings, 1);

  s->name = g_strdup ("ex");
  s->quarantine = g_strdup ("held");
  for (guint i = 0; i < CONN_EXEC_N_EXIT; i++)
    s->exit_map[i] = CONN_EXEC_MAP_UNSET;
  s->exit_map[1] = RULES_VERDICT_REJECT;
  s->exit_map[3] = CONN_EXEC_MAP_ERROR;
  s->exit_other = CONN_EXEC_MAP_ERROR;
  return s;
}

static void
settings_free (ConnExecSettings *s)
{
  g_free (s->name);
  g_free (s->quarantine);
  g_free (s);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnExecSettings, settings_free)

static VpsConnectorResult *
answer (const ConnExecSettings *s, gint status, const char *out, GError **error)
{
  return conn_exec_result (s, TRUE, status, out, out ? strlen (out) : 0, error);
}

static void
test_answers (void)
{
  g_autoptr (ConnExecSettings) s = settings ();
  static const struct
  {
    gint status;
    const char *out;
    RulesVerdict verdict;
    guint code;
    guint n_mods;
  } cases[] = {
    { 0, NULL, RULES_VERDICT_CONTINUE, 0, 0 },
    { 0, "", RULES_VERDICT_CONTINUE, 0, 0 },
    { 1, "", RULES_VERDICT_REJECT, 0, 0 },
    { 1, "verdict=accept\n", RULES_VERDICT_ACCEPT, 0, 0 },
    { 0, "noise\nverdict=reject\r\ncode=554\nenhanced=5.7.1\ntext=no\n", RULES_VERDICT_REJECT, 554,
      0 },
    { 0, "verdict=tempfail\ncode=451\n", RULES_VERDICT_TEMPFAIL, 451, 0 },
    { 0, "verdict=quarantine", RULES_VERDICT_QUARANTINE, 0, 0 },
    { 0, "add_header=X-A: 1\nset_header=X-B:2\ninsert_header=X-C: 3\nremove_header=X-D\n",
      RULES_VERDICT_CONTINUE, 0, 4 },
    { 0, "binary\001junk\r in a line that is no answer\n", RULES_VERDICT_CONTINUE, 0, 0 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsConnectorResult) r = answer (s, cases[i].status, cases[i].out, &error);

      g_assert_no_error (error);
      g_assert_cmpint (r->verdict, ==, cases[i].verdict);
      g_assert_cmpuint (r->code, ==, cases[i].code);
      g_assert_cmpuint (r->modifications->len, ==, cases[i].n_mods);
      g_assert_cmpint (vps_connector_result_get_field (r, "exit")->i, ==, cases[i].status);
      if (r->verdict == RULES_VERDICT_QUARANTINE)
        g_assert_cmpstr (r->quarantine, ==, "held");
    }
}

static void
test_set_fields (void)
{
  g_autoptr (ConnExecSettings) s = settings ();
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConnectorResult) r
      = answer (s, 0, "set b=true\nset i=-42\nset f=2.5\nset s=two words\nset e=\n", &error);

  g_assert_no_error (error);
  g_assert_true (vps_connector_result_get_field (r, "b")->b);
  g_assert_cmpint (vps_connector_result_get_field (r, "i")->i, ==, -42);
  g_assert_cmpfloat (vps_connector_result_get_field (r, "f")->f, ==, 2.5);
  g_assert_cmpstr (vps_connector_result_get_field (r, "s")->s, ==, "two words");
  g_assert_cmpstr (vps_connector_result_get_field (r, "e")->s, ==, "");
  g_assert_nonnull (strstr (vps_connector_result_get_field (r, "stdout")->s, "set i=-42"));
}

static void
test_refusals (void)
{
  g_autoptr (ConnExecSettings) s = settings ();
  static const struct
  {
    gint status;
    const char *out;
    gsize len; /* 0: strlen */
    gint code;
  } cases[] = {
    { 2, "", 0, CONN_EXEC_ERROR_EXIT },                 /* unmapped, exit_other=error */
    { 3, "verdict=accept\n", 0, CONN_EXEC_ERROR_EXIT }, /* mapped to error */
    { 0, "verdict=maybe\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "code=99\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "code=abc\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "verdict=reject\ncode=250\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "verdict=tempfail\ncode=550\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "code=550\nenhanced=4.1.1\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "text=caf\xc3\xa9\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "text=a\tb\001c\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "text=a\rb\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "add_header=X-A: a\0b\n", 20, CONN_EXEC_ERROR_REFUSED },
    { 0, "add_header=no colon\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "add_header=Bad Name: v\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "remove_header=\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "set exit=1\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "set 1x=1\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "set a-b=1\n", 0, CONN_EXEC_ERROR_REFUSED },
    { 0, "quarantine=a/b\nverdict=quarantine\n", 0, CONN_EXEC_ERROR_REFUSED },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      gsize len = cases[i].len ? cases[i].len : strlen (cases[i].out);
      g_autoptr (VpsConnectorResult) r
          = conn_exec_result (s, TRUE, cases[i].status, cases[i].out, len, &error);

      if (r != NULL)
        g_test_message ("case %u accepted: %s", i, cases[i].out);
      g_assert_null (r);
      g_assert_error (error, CONN_EXEC_ERROR, cases[i].code);
    }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (VpsConnectorResult) r
        = conn_exec_result (s, FALSE, 9, "verdict=accept\n", 15, &error);
    g_assert_null (r);
    g_assert_error (error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_SIGNAL);
  }
  {
    /* more header lines than the limit */
    g_autoptr (GString) out = g_string_new (NULL);
    g_autoptr (GError) error = NULL;
    g_autoptr (VpsConnectorResult) r = NULL;

    for (guint i = 0; i <= CONN_EXEC_MAX_HEADER_MODS; i++)
      g_string_append_printf (out, "add_header=X-%u: v\n", i);
    r = conn_exec_result (s, TRUE, 0, out->str, out->len, &error);
    g_assert_null (r);
    g_assert_error (error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_REFUSED);
  }
}

static void
test_environment (void)
{
  g_autoptr (VpsSession) s = vps_session_new ();
  g_autoptr (VpsTxn) t = NULL;
  g_auto (GStrv) env = NULL;
  const char *evil = "x$(reboot)`id`;\r\n@example.com";

  vps_session_set_client (s, "192.0.2.9", 1234, NULL);
  t = vps_txn_new (s);
  vps_txn_set_sender (t, evil, NULL);
  vps_txn_add_rcpt (t, "a@example.org", NULL);
  vps_txn_add_rcpt (t, "b@example.org", NULL);
  g_setenv ("VPS_TEST_SECRET", "leak", TRUE);
  env = conn_exec_environment (t, RULES_STAGE_RCPT, "ex");
  g_assert_cmpstr (g_environ_getenv (env, "VPS_FROM"), ==, evil);
  g_assert_cmpstr (g_environ_getenv (env, "VPS_STAGE"), ==, "rcpt");
  g_assert_cmpstr (g_environ_getenv (env, "VPS_CLIENT_IP"), ==, "192.0.2.9");
  g_assert_cmpstr (g_environ_getenv (env, "VPS_CLIENT_PORT"), ==, "1234");
  g_assert_cmpstr (g_environ_getenv (env, "VPS_RCPTS"), ==, "a@example.org,b@example.org");
  g_assert_cmpstr (g_environ_getenv (env, "VPS_RCPT_COUNT"), ==, "2");
  g_assert_cmpstr (g_environ_getenv (env, "VPS_HELO"), ==, "");
  g_assert_null (g_environ_getenv (env, "VPS_TEST_SECRET"));
  g_assert_null (g_environ_getenv (env, "HOME"));
  g_assert_nonnull (g_environ_getenv (env, "PATH"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/connectors/exec/answer/verdicts", test_answers);
  g_test_add_func ("/connectors/exec/answer/set-fields", test_set_fields);
  g_test_add_func ("/connectors/exec/answer/refusals", test_refusals);
  g_test_add_func ("/connectors/exec/environment", test_environment);
  return g_test_run ();
}
