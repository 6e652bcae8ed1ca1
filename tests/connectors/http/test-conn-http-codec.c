/* SPDX-License-Identifier: MIT
 *
 * test-conn-http-codec.c — the `http` connector without sockets: the JSON
 * request document, rspamd request headers (hostile values left out), reply
 * parsing (depth, NUL, not an object) and the mapping of our reply format
 * and of rspamd's to results, with every refusal branch.
 */
#include <string.h>

#include "connectors/http/conn-http-private.h"

static ConnHttpSettings *
settings (gboolean apply)
{
  ConnHttpSettings *s = g_atomic_rc_box_new0 (ConnHttpSettings);

  s->name = g_strdup ("web");
  s->quarantine = g_strdup ("held");
  s->apply_action = apply;
  s->max_reply_size = 1024;
  return s;
}

static JsonNode *
parse (const char *text, GError **error)
{
  g_autoptr (GBytes) b = g_bytes_new (text, strlen (text));
  return conn_http_parse_reply (b, error);
}

static VpsTxn *
make_txn (const char *helo)
{
  g_autoptr (VpsSession) s = vps_session_new ();
  VpsTxn *t;
  const char *msg = "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
  g_autoptr (GBytes) raw = g_bytes_new_static (msg, strlen (msg));
  g_autoptr (VpsMessage) m = vps_message_new (raw, NULL);

  vps_session_set_client (s, "192.0.2.1", 2525, NULL);
  vps_session_set_helo (s, helo);
  t = vps_txn_new (s);
  vps_txn_set_sender (t, "", NULL);
  vps_txn_add_rcpt (t, "b@example.org", NULL);
  vps_txn_add_rcpt (t, "c@example.org", NULL);
  vps_txn_set_message (t, m);
  return t;
}

static void
test_request_document (void)
{
  g_autoptr (VpsTxn) t = make_txn ("mx.example.com");
  g_autoptr (GBytes) body = conn_http_json_request (t, RULES_STAGE_DATA, "web", TRUE);
  g_autoptr (JsonNode) doc = parse (g_bytes_get_data (body, NULL), NULL);
  JsonObject *o;

  g_assert_nonnull (doc);
  o = json_node_get_object (doc);
  g_assert_cmpstr (json_object_get_string_member (o, "stage"), ==, "data");
  g_assert_cmpstr (json_object_get_string_member (o, "helo"), ==, "mx.example.com");
  g_assert_cmpstr (json_object_get_string_member (o, "data_encoding"), ==, "utf-8");
  g_assert_nonnull (strstr (json_object_get_string_member (o, "data"), "Subject: hi"));
  g_assert_cmpint (json_array_get_length (json_object_get_array_member (
                       json_object_get_object_member (o, "envelope"), "rcpts")),
                   ==, 2);
  g_assert_cmpstr (
      json_object_get_string_member (json_object_get_object_member (o, "envelope"), "from"), ==,
      "");
}

static void
test_rspamd_headers_leave_hostile_values_out (void)
{
  g_autoptr (VpsTxn) t = make_txn ("evil\r\nX-Injected: 1");
  struct curl_slist *h = conn_http_rspamd_headers (t);
  guint rcpts = 0;
  gboolean from_null = FALSE;

  for (struct curl_slist *l = h; l != NULL; l = l->next)
    {
      g_assert_null (strchr (l->data, '\r'));
      g_assert_null (strchr (l->data, '\n'));
      g_assert_false (g_str_has_prefix (l->data, "Helo:"));
      rcpts += g_str_has_prefix (l->data, "Rcpt: ");
      from_null |= strcmp (l->data, "From: <>") == 0;
    }
  g_assert_cmpuint (rcpts, ==, 2);
  g_assert_true (from_null);
  curl_slist_free_all (h);
}

static void
test_parse_errors (void)
{
  g_autofree char *deep = NULL;
  GString *g = g_string_new (NULL);
  static const char *const bad[] = {
    "", "nope", "[1]", "\"s\"", "{\"a\": \"x\\u0000y\"}", "{\"a\": ",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (JsonNode) n = parse (bad[i], &error);

      g_assert_null (n);
      g_assert_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED);
    }
  for (guint i = 0; i < 100000; i++)
    g_string_append_c (g, '[');
  deep = g_string_free (g, FALSE);
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (JsonNode) n = parse (deep, &error);

    g_assert_null (n);
    g_assert_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED);
    g_assert_nonnull (strstr (error->message, "deeper"));
  }
  {
    /* an escaped backslash before u0000 is no NUL */
    g_autoptr (GError) error = NULL;
    g_autoptr (JsonNode) n = parse ("{\"a\": \"x\\\\u0000\"}", &error);

    g_assert_no_error (error);
    g_assert_nonnull (n);
  }
}

static void
test_json_result (void)
{
  g_autoptr (ConnHttpSettings) s = settings (TRUE);
  static const struct
  {
    const char *reply;
    RulesVerdict verdict;
    guint code;
    guint n_mods;
  } ok[] = {
    { "{}", RULES_VERDICT_CONTINUE, 0, 0 },
    { "{\"verdict\": \"reject\", \"code\": 554, \"enhanced\": \"5.7.1\", \"text\": \"no\"}",
      RULES_VERDICT_REJECT, 554, 0 },
    { "{\"verdict\": \"quarantine\"}", RULES_VERDICT_QUARANTINE, 0, 0 },
    { "{\"headers\": {\"add\": [{\"name\": \"X-A\", \"value\": \"1\"}], \"set\": {\"X-B\": "
      "\"2\"}, \"remove\": [\"X-C\"], \"insert\": {\"X-D\": \"3\"}}}",
      RULES_VERDICT_CONTINUE, 0, 4 },
  };
  static const struct
  {
    const char *reply;
    gint code;
  } bad[] = {
    { "{\"verdict\": \"maybe\"}", CONN_HTTP_ERROR_REFUSED },
    { "{\"verdict\": 1}", CONN_HTTP_ERROR_MALFORMED },
    { "{\"code\": \"550\"}", CONN_HTTP_ERROR_MALFORMED },
    { "{\"code\": 5.5}", CONN_HTTP_ERROR_MALFORMED },
    { "{\"code\": 99}", CONN_HTTP_ERROR_REFUSED },
    { "{\"verdict\": \"reject\", \"code\": 451}", CONN_HTTP_ERROR_REFUSED },
    { "{\"verdict\": \"tempfail\", \"code\": 550}", CONN_HTTP_ERROR_REFUSED },
    { "{\"code\": 550, \"enhanced\": \"4.7.1\"}", CONN_HTTP_ERROR_REFUSED },
    { "{\"text\": \"a\\r\\nb\"}", CONN_HTTP_ERROR_REFUSED },
    { "{\"text\": \"caf\\u00e9\"}", CONN_HTTP_ERROR_REFUSED },
    { "{\"quarantine\": \"../x\"}", CONN_HTTP_ERROR_REFUSED },
    { "{\"headers\": []}", CONN_HTTP_ERROR_MALFORMED },
    { "{\"headers\": {\"add\": [1]}}", CONN_HTTP_ERROR_MALFORMED },
    { "{\"headers\": {\"remove\": {\"X\": \"y\"}}}", CONN_HTTP_ERROR_MALFORMED },
    { "{\"headers\": {\"add\": {\"X-A\": \"v\\r\\nX-B: 1\"}}}", CONN_HTTP_ERROR_REFUSED },
    { "{\"headers\": {\"add\": {\"Bad Name\": \"v\"}}}", CONN_HTTP_ERROR_REFUSED },
  };

  for (guint i = 0; i < G_N_ELEMENTS (ok); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (JsonNode) n = parse (ok[i].reply, &error);
      g_autoptr (VpsConnectorResult) r = conn_http_json_result (n, 200, s, &error);

      g_assert_no_error (error);
      g_assert_cmpint (r->verdict, ==, ok[i].verdict);
      g_assert_cmpuint (r->code, ==, ok[i].code);
      g_assert_cmpuint (r->modifications->len, ==, ok[i].n_mods);
      g_assert_cmpint (vps_connector_result_get_field (r, "status")->i, ==, 200);
      if (r->verdict == RULES_VERDICT_QUARANTINE)
        g_assert_cmpstr (r->quarantine, ==, "held");
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (JsonNode) n = parse (bad[i].reply, NULL);
      g_autoptr (VpsConnectorResult) r = NULL;

      g_assert_nonnull (n);
      r = conn_http_json_result (n, 200, s, &error);
      g_assert_null (r);
      g_assert_error (error, CONN_HTTP_ERROR, bad[i].code);
    }
}

static void
test_rspamd_result (void)
{
  g_autoptr (ConnHttpSettings) on = settings (TRUE);
  g_autoptr (ConnHttpSettings) off = settings (FALSE);
  static const struct
  {
    const char *action;
    RulesVerdict verdict;
    guint code;
    const char *mod;
  } cases[] = {
    { "reject", RULES_VERDICT_REJECT, 554, NULL },
    { "soft reject", RULES_VERDICT_TEMPFAIL, 451, NULL },
    { "greylist", RULES_VERDICT_TEMPFAIL, 451, NULL },
    { "add header", RULES_VERDICT_CONTINUE, 0, "X-Spam" },
    { "rewrite subject", RULES_VERDICT_CONTINUE, 0, "Subject" },
    { "no action", RULES_VERDICT_CONTINUE, 0, NULL },
    { "something new", RULES_VERDICT_CONTINUE, 0, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = g_strdup_printf (
          "{\"action\": \"%s\", \"score\": 7, \"symbols\": {\"B\": {}, \"A\": {}}}",
          cases[i].action);
      g_autoptr (JsonNode) n = parse (text, NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsConnectorResult) r = conn_http_rspamd_result (n, 200, on, "hi", &error);
      g_autoptr (VpsConnectorResult) r2 = conn_http_rspamd_result (n, 200, off, "hi", NULL);
      const VpsFieldValue *sym;

      g_assert_no_error (error);
      g_assert_cmpint (r->verdict, ==, cases[i].verdict);
      g_assert_cmpuint (r->code, ==, cases[i].code);
      g_assert_cmpuint (r->modifications->len, ==, cases[i].mod ? 1 : 0);
      if (cases[i].mod != NULL)
        g_assert_cmpstr (((VpsModification *)r->modifications->pdata[0])->name, ==, cases[i].mod);
      g_assert_cmpfloat (vps_connector_result_get_field (r, "score")->f, ==, 7.0);
      sym = vps_connector_result_get_field (r, "symbols");
      g_assert_cmpstr (sym->strv[0], ==, "A");
      g_assert_cmpstr (sym->strv[1], ==, "B");
      g_assert_null (sym->strv[2]);
      /* apply_action = no: the fields only */
      g_assert_cmpint (r2->verdict, ==, RULES_VERDICT_CONTINUE);
      g_assert_cmpuint (r2->modifications->len, ==, 0);
    }
  {
    g_autoptr (JsonNode) n = parse ("{\"verdict\": \"reject\"}", NULL);
    g_autoptr (GError) error = NULL;
    g_autoptr (VpsConnectorResult) r = conn_http_rspamd_result (n, 200, on, "hi", &error);

    g_assert_null (r);
    g_assert_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED);
  }
  {
    /* an smtp_message that is no reply text falls back to the default */
    g_autoptr (JsonNode) n = parse ("{\"action\": \"reject\", \"score\": 20, \"messages\": "
                                    "{\"smtp_message\": \"a\\r\\n550 fake\"}}",
                                    NULL);
    g_autoptr (VpsConnectorResult) r = conn_http_rspamd_result (n, 200, on, "hi", NULL);

    g_assert_cmpstr (r->text, ==, "Spam message rejected");
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/connectors/http/request/document", test_request_document);
  g_test_add_func ("/connectors/http/request/rspamd-headers",
                   test_rspamd_headers_leave_hostile_values_out);
  g_test_add_func ("/connectors/http/reply/parse-errors", test_parse_errors);
  g_test_add_func ("/connectors/http/reply/json", test_json_result);
  g_test_add_func ("/connectors/http/reply/rspamd", test_rspamd_result);
  return g_test_run ();
}
