/* SPDX-License-Identifier: MIT
 *
 * test-connector.c — the registry, connector instances from the config
 * (unknown type, unknown keys, bad values of the `test` connector), the
 * `test` connector's answers (field types, match / fields_nomatch,
 * add_header), results and the on_error helper.
 */
#include "test-engine-util.h"

static VpsConnector *
make (const char *group_body, GError **error)
{
  g_autofree char *text = g_strdup_printf ("[connector c]\ntype = test\n%s", group_body);
  g_autoptr (GError) local = NULL;
  g_autoptr (VpsConfig) cfg = vps_config_load_data ("/nonexistent/c.conf", text, &local);

  g_assert_no_error (local);
  vps_connector_registry_add (&conn_test_class);
  return vps_connector_new (cfg, vps_config_connector (cfg, 0), error);
}

static void
test_registry (void)
{
  vps_connector_registry_add (&conn_test_class);
  g_assert_true (vps_connector_registry_lookup ("test") == &conn_test_class);
  g_assert_null (vps_connector_registry_lookup ("nosuch"));
}

static void
test_config_errors (void)
{
  static const struct
  {
    const char *body;
    const char *key;
  } cases[] = {
    { "verdict = maybe\n", "verdict" },
    { "code = 99\n", "code" },
    { "delay = soon\n", "delay" },
    { "fail = perhaps\n", "fail" },
    { "match = (unclosed\n", "match" },
    { "fields = novalue\n", "fields" },
    { "fields_nomatch = =x\n", "fields_nomatch" },
    { "add_header = no colon\n", "add_header" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsConnector) c = make (cases[i].body, &error);
      g_autofree char *want = g_strdup_printf ("[connector c] %s", cases[i].key);

      g_assert_null (c);
      g_assert_nonnull (error);
      g_assert_nonnull (strstr (error->message, "c.conf:"));
      g_assert_nonnull (strstr (error->message, want));
    }
  /* a key the class does not know */
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (VpsConnector) c = make ("colour = blue\n", &error);
    g_assert_null (c);
    g_assert_nonnull (error);
    g_assert_nonnull (strstr (error->message, "colour"));
  }
}

static void
test_unknown_type (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg
      = vps_config_load_data ("/nonexistent/c.conf", "[connector z]\ntype = zzz\n", &error);
  g_autoptr (VpsConnector) c = NULL;

  g_assert_no_error (error);
  c = vps_connector_new (cfg, vps_config_connector (cfg, 0), &error);
  g_assert_null (c);
  g_assert_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_UNKNOWN_TYPE);
  g_assert_nonnull (strstr (error->message, "c.conf:2"));
}

static void
done_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  *(VpsConnectorResult **)data = vps_connector_call_finish (NULL, res);
}

static VpsConnectorResult *
call (VpsConnector *c, VpsTxn *t, RulesStage stage)
{
  VpsConnectorResult *r = NULL;

  vps_connector_call_async (c, t, stage, NULL, done_cb, &r);
  while (r == NULL)
    g_main_context_iteration (NULL, TRUE);
  return r;
}

static void
test_answers (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConnector) c
      = make ("verdict = reject\ncode = 550\nenhanced = 5.7.1\ntext = no\n"
              "fields = b=true; i=-3; f=0.25; v=[x, y]; s=hello world\n"
              "match = ^from=spam@\nfields_nomatch = clean=true\nadd_header = X-C: 1\n",
              &error);
  g_autoptr (VpsTxn) t = tu_txn (NULL);
  g_autoptr (VpsConnectorResult) hit = NULL;
  g_autoptr (VpsConnectorResult) miss = NULL;
  const VpsFieldValue *v;

  g_assert_no_error (error);
  vps_txn_set_sender (t, "spam@example.net", NULL);
  hit = call (c, t, RULES_STAGE_MAIL);
  g_assert_cmpint (hit->verdict, ==, RULES_VERDICT_REJECT);
  g_assert_cmpuint (hit->code, ==, 550);
  g_assert_cmpstr (hit->enhanced, ==, "5.7.1");
  g_assert_cmpstr (hit->text, ==, "no");
  g_assert_cmpstr (hit->connector, ==, "c");
  v = vps_connector_result_get_field (hit, "b");
  g_assert_cmpint (v->type, ==, VPS_FIELD_BOOL);
  g_assert_true (v->b);
  v = vps_connector_result_get_field (hit, "i");
  g_assert_cmpint (v->type, ==, VPS_FIELD_INT);
  g_assert_cmpint (v->i, ==, -3);
  v = vps_connector_result_get_field (hit, "f");
  g_assert_cmpint (v->type, ==, VPS_FIELD_FLOAT);
  g_assert_cmpfloat (v->f, ==, 0.25);
  v = vps_connector_result_get_field (hit, "v");
  g_assert_cmpint (v->type, ==, VPS_FIELD_STRV);
  g_assert_cmpstr (v->strv[1], ==, "y");
  v = vps_connector_result_get_field (hit, "s");
  g_assert_cmpint (v->type, ==, VPS_FIELD_STRING);
  g_assert_cmpstr (v->s, ==, "hello world");
  g_assert_cmpuint (hit->modifications->len, ==, 1);

  vps_txn_set_sender (t, "ham@example.net", NULL);
  miss = call (c, t, RULES_STAGE_MAIL);
  g_assert_cmpint (miss->verdict, ==, RULES_VERDICT_CONTINUE);
  g_assert_null (vps_connector_result_get_field (miss, "b"));
  g_assert_true (vps_connector_result_get_field (miss, "clean")->b);
  g_assert_cmpuint (miss->modifications->len, ==, 0);
}

static void
test_error_helper (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConnector) c = make ("on_error = discard\n", &error);
  g_autoptr (GString) log = g_string_new (NULL);
  g_autoptr (GError) failure
      = g_error_new_literal (VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED, "peer hung up");
  g_autoptr (VpsConnectorResult) r = NULL;

  g_assert_no_error (error);
  vps_log_capture (log);
  r = vps_connector_result_new_error (c, "SESSION1", failure);
  vps_log_capture (NULL);
  g_assert_cmpint (r->verdict, ==, RULES_VERDICT_DISCARD);
  g_assert_true (r->error);
  g_assert_cmpstr (r->error_message, ==, "peer hung up");
  g_assert_nonnull (strstr (log->str, "id=SESSION1"));
  g_assert_nonnull (strstr (log->str, "peer hung up"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/vps/connector/registry", test_registry);
  g_test_add_func ("/vps/connector/config-errors", test_config_errors);
  g_test_add_func ("/vps/connector/unknown-type", test_unknown_type);
  g_test_add_func ("/vps/connector/test/answers", test_answers);
  g_test_add_func ("/vps/connector/error-helper", test_error_helper);
  return g_test_run ();
}
