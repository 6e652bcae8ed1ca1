/* SPDX-License-Identifier: MIT
 *
 * test-envelope.c — the queue envelope and its JSON file form: a full
 * round trip (UTF-8 addresses, every member, the report), the exact
 * text written, times to the microsecond, and the strict reader: one
 * table of edits to a valid file that must each be refused with
 * VPS_QUEUE_ERROR_CORRUPT, and one of raw texts json-glib alone would
 * accept (several values, duplicate members, escaped NUL, over the limit).
 * (vps_queue_rewrite_message: test-queue-rewrite.c.)
 */
#include "mta/queue.h"
#include "proto/smtp/smtp.h"
#include "tests/mta/queue-test-util.h"

#include <string.h>

#define ID "0006431E2F3A4B5C"

/* 2025-11-28T21:40:00.123456Z */
#define T_RECEIVED G_GINT64_CONSTANT (1764366000123456)

static VpsEnvelope *
full_envelope (void)
{
  VpsEnvelope *env = vps_envelope_new ();
  VpsQueueRcpt *r;
  JsonObject *report = json_object_new ();

  env->id = g_strdup (ID);
  g_free (env->sender);
  env->sender = g_strdup ("jörg@bücher.example");
  env->ret = g_strdup ("HDRS");
  env->envid = g_strdup ("QQ314159");
  env->body = g_strdup ("8BITMIME");
  env->smtputf8 = TRUE;
  env->size = 12345;
  env->received = T_RECEIVED;
  env->session_id = g_strdup ("S1A2B3");
  env->client_ip = g_strdup ("2001:db8::25");
  env->client_ptr = g_strdup ("mail.example.net");
  env->helo = g_strdup ("mail.example.net");
  env->auth_user = g_strdup ("jörg");
  env->tls = g_strdup ("TLSv1.3 TLS_AES_256_GCM_SHA384");
  env->attempts = 3;
  env->postq = TRUE;
  env->route = g_strdup ("relay:[smarthost.example]:587");
  env->delay_warned = TRUE;
  env->next_attempt = T_RECEIVED + 900 * G_USEC_PER_SEC;
  vps_envelope_add_rcpt (env, "ελένη@παράδειγμα.ελ", "utf-8;ελένη@παράδειγμα.ελ",
                         SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
  r = vps_envelope_add_rcpt (env, "bob@example.org", NULL, SMTP_NOTIFY_NEVER);
  r->state = VPS_RCPT_DEFERRED;
  r->result = g_strdup ("451 4.7.1 try again later \"quoted\" \\ back");
  r->updated = T_RECEIVED + 1;
  r = vps_envelope_add_rcpt (env, "carol@example.org", NULL, 0);
  r->state = VPS_RCPT_DELIVERED;
  r->result = g_strdup ("250 2.0.0 delivered to maildir");
  r->updated = T_RECEIVED + 2;
  json_object_set_string_member (report, "verdict", "accept");
  json_object_set_string_member (report, "text", "line\r\nwith CR LF is fine in the report");
  env->report = report;
  return env;
}

static void
assert_envelopes_equal (const VpsEnvelope *a, const VpsEnvelope *b)
{
  g_autofree char *ta = vps_envelope_to_data (a, FALSE, NULL);
  g_autofree char *tb = vps_envelope_to_data (b, FALSE, NULL);

  g_assert_cmpstr (a->id, ==, b->id);
  g_assert_cmpstr (a->sender, ==, b->sender);
  g_assert_cmpstr (a->ret, ==, b->ret);
  g_assert_cmpstr (a->envid, ==, b->envid);
  g_assert_cmpstr (a->body, ==, b->body);
  g_assert_cmpint (a->smtputf8, ==, b->smtputf8);
  g_assert_cmpuint (a->size, ==, b->size);
  g_assert_cmpint (a->received, ==, b->received);
  g_assert_cmpstr (a->session_id, ==, b->session_id);
  g_assert_cmpstr (a->client_ip, ==, b->client_ip);
  g_assert_cmpstr (a->client_ptr, ==, b->client_ptr);
  g_assert_cmpstr (a->helo, ==, b->helo);
  g_assert_cmpstr (a->auth_user, ==, b->auth_user);
  g_assert_cmpstr (a->tls, ==, b->tls);
  g_assert_cmpuint (a->attempts, ==, b->attempts);
  g_assert_cmpint (a->postq, ==, b->postq);
  g_assert_cmpstr (a->route, ==, b->route);
  g_assert_cmpint (a->delay_warned, ==, b->delay_warned);
  g_assert_cmpint (a->next_attempt, ==, b->next_attempt);
  g_assert_cmpuint (a->rcpts->len, ==, b->rcpts->len);
  for (guint i = 0; i < a->rcpts->len; i++)
    {
      const VpsQueueRcpt *ra = g_ptr_array_index (a->rcpts, i);
      const VpsQueueRcpt *rb = g_ptr_array_index (b->rcpts, i);

      g_assert_cmpstr (ra->address, ==, rb->address);
      g_assert_cmpstr (ra->orcpt, ==, rb->orcpt);
      g_assert_cmpuint (ra->notify, ==, rb->notify);
      g_assert_cmpint (ra->state, ==, rb->state);
      g_assert_cmpstr (ra->result, ==, rb->result);
      g_assert_cmpint (ra->updated, ==, rb->updated);
    }
  g_assert_true ((a->report == NULL) == (b->report == NULL));
  if (a->report != NULL)
    g_assert_true (json_object_equal (a->report, b->report));
  g_assert_cmpstr (ta, ==, tb);
}

static void
test_round_trip (void)
{
  g_autoptr (VpsEnvelope) env = full_envelope ();
  g_autoptr (VpsEnvelope) back = NULL;
  g_autoptr (VpsEnvelope) back_pretty = NULL;
  g_autoptr (GError) error = NULL;
  gsize len = 0;
  g_autofree char *text = vps_envelope_to_data (env, FALSE, &len);
  g_autofree char *pretty = vps_envelope_to_data (env, TRUE, NULL);

  g_assert_cmpuint (len, ==, strlen (text));
  g_assert_true (g_str_has_suffix (text, "}\n"));
  g_assert_true (g_utf8_validate (text, -1, NULL));
  back = vps_envelope_from_data (text, len, &error);
  g_assert_no_error (error);
  assert_envelopes_equal (env, back);
  back_pretty = vps_envelope_from_data (pretty, strlen (pretty), &error);
  g_assert_no_error (error);
  assert_envelopes_equal (env, back_pretty);
}

/* The exact file text: what other tools (and tests in other languages)
 * write by hand. */
static void
test_format (void)
{
  g_autoptr (VpsEnvelope) env = vps_envelope_new ();
  g_autofree char *text = NULL;
  VpsQueueRcpt *r;

  env->id = g_strdup (ID);
  env->received = T_RECEIVED;
  r = vps_envelope_add_rcpt (env, "bob@example.org", "rfc822;bob@example.org",
                             SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
  r->updated = 1;
  text = vps_envelope_to_data (env, FALSE, NULL);
  g_assert_cmpstr (text, ==,
                   "{\"id\":\"" ID "\",\"sender\":\"\",\"ret\":null,\"envid\":null,\"body\":null,"
                   "\"smtputf8\":false,\"size\":0,\"received\":\"2025-11-28T21:40:00.123456Z\","
                   "\"session\":null,\"client\":{\"ip\":null,\"ptr\":null,\"helo\":null,"
                   "\"auth_user\":null,\"tls\":null},\"attempts\":0,\"next_attempt\":null,"
                   "\"postq\":false,\"route\":null,\"delay_warned\":false,"
                   "\"recipients\":[{\"address\":\"bob@example.org\","
                   "\"orcpt\":\"rfc822;bob@example.org\",\"notify\":[\"failure\",\"delay\"],"
                   "\"state\":\"pending\",\"result\":null,"
                   "\"updated\":\"1970-01-01T00:00:00.000001Z\"}],\"report\":null}\n");
}

/* Absent optional members take their zero value. */
static void
test_minimal (void)
{
  static const char text[]
      = "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\"}]}";
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsEnvelope) env = vps_envelope_from_data (text, strlen (text), &error);
  const VpsQueueRcpt *r;

  g_assert_no_error (error);
  g_assert_cmpstr (env->sender, ==, "");
  g_assert_null (env->ret);
  g_assert_null (env->client_ip);
  g_assert_cmpint (env->received, ==, 0);
  g_assert_null (env->report);
  g_assert_false (env->postq); /* an envelope from before the postq stage */
  g_assert_null (env->route);
  g_assert_false (env->delay_warned);
  g_assert_cmpuint (env->rcpts->len, ==, 1);
  r = g_ptr_array_index (env->rcpts, 0);
  g_assert_cmpint (r->state, ==, VPS_RCPT_PENDING);
  g_assert_cmpuint (r->notify, ==, 0);
  g_assert_null (r->orcpt);
}

static void
test_times (void)
{
  static const struct
  {
    gint64 usec;
    const char *text;
  } cases[] = {
    { T_RECEIVED, "2025-11-28T21:40:00.123456Z" },
    { 1, "1970-01-01T00:00:00.000001Z" },
    { -1, "1969-12-31T23:59:59.999999Z" },
    { G_GINT64_CONSTANT (4102444799999999), "2099-12-31T23:59:59.999999Z" },
  };
  static const struct
  {
    const char *text;
    gint64 usec;
  } short_forms[] = {
    { "2025-11-28T21:40:00Z", T_RECEIVED - 123456 },
    { "2025-11-28T21:40:00.5Z", T_RECEIVED - 123456 + 500000 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = vps_envelope_format_time (cases[i].usec);
      g_autoptr (VpsEnvelope) env = vps_envelope_new ();
      g_autoptr (VpsEnvelope) back = NULL;
      g_autofree char *data = NULL;

      g_assert_cmpstr (text, ==, cases[i].text);
      env->id = g_strdup (ID);
      env->received = cases[i].usec;
      vps_envelope_add_rcpt (env, "a@b", NULL, 0);
      data = vps_envelope_to_data (env, FALSE, NULL);
      back = vps_envelope_from_data (data, strlen (data), NULL);
      g_assert_nonnull (back);
      g_assert_cmpint (back->received, ==, cases[i].usec);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (short_forms); i++)
    {
      g_autofree char *data = g_strdup_printf (
          "{\"id\":\"" ID "\",\"sender\":\"\",\"received\":\"%s\",\"recipients\":[{\"address\":"
          "\"a@b\"}]}",
          short_forms[i].text);
      g_autoptr (VpsEnvelope) back = vps_envelope_from_data (data, strlen (data), NULL);

      g_assert_nonnull (back);
      g_assert_cmpint (back->received, ==, short_forms[i].usec);
    }
}

static void
test_rcpt_states (void)
{
  g_autoptr (VpsEnvelope) env = vps_envelope_new ();
  VpsQueueRcpt *a = vps_envelope_add_rcpt (env, "a@b", NULL, 0);
  VpsQueueRcpt *b = vps_envelope_add_rcpt (env, "c@d", NULL, 0);

  g_assert_cmpstr (vps_rcpt_state_name (VPS_RCPT_PENDING), ==, "pending");
  g_assert_cmpstr (vps_rcpt_state_name (VPS_RCPT_DEFERRED), ==, "deferred");
  g_assert_cmpstr (vps_rcpt_state_name (VPS_RCPT_DELIVERED), ==, "delivered");
  g_assert_cmpstr (vps_rcpt_state_name (VPS_RCPT_FAILED), ==, "failed");
  g_assert_false (vps_envelope_done (env));
  a->state = VPS_RCPT_DELIVERED;
  b->state = VPS_RCPT_DEFERRED;
  g_assert_false (vps_envelope_done (env));
  b->state = VPS_RCPT_FAILED;
  g_assert_true (vps_envelope_done (env));
}

/* ---- the strict reader ------------------------------------------------------ */

/* One edit of the full envelope's JSON (NULs are in bad_texts: the edit
 * goes through json-glib, which would cut the string): `path` is "member" or
 * "member.member" / "member.INDEX.member"; `value` is JSON text, or NULL
 * to remove the member. */
static const struct
{
  const char *name;
  const char *path;
  const char *value;
} bad_edits[] = {
  { "id-missing", "id", NULL },
  { "id-null", "id", "null" },
  { "id-number", "id", "12" },
  { "id-traversal", "id", "\"../../etc/passwd\"" },
  { "id-lower-case", "id", "\"0006431e2f3a4b5c\"" },
  { "id-short", "id", "\"0006431E2F3A4B5\"" },
  { "sender-missing", "sender", NULL },
  { "sender-null", "sender", "null" },
  { "sender-number", "sender", "0" },
  { "sender-cr-lf", "sender", "\"a@b\\r\\nRCPT TO:<x@y>\"" },
  { "sender-tab", "sender", "\"a\\t@b\"" },
  { "sender-del", "sender", "\"a\\u007f@b\"" },
  { "ret-unknown", "ret", "\"ALL\"" },
  { "ret-lower", "ret", "\"full\"" },
  { "body-unknown", "body", "\"8bit\"" },
  { "envid-lf", "envid", "\"x\\ny\"" },
  { "envid-number", "envid", "7" },
  { "smtputf8-string", "smtputf8", "\"true\"" },
  { "smtputf8-number", "smtputf8", "1" },
  { "size-negative", "size", "-1" },
  { "size-double", "size", "1.5" },
  { "size-string", "size", "\"10\"" },
  { "attempts-huge", "attempts", "4294967296" },
  { "attempts-negative", "attempts", "-3" },
  { "received-number", "received", "1764366000" },
  { "received-offset", "received", "\"2025-11-28T22:40:00.123456+01:00\"" },
  { "received-no-zone", "received", "\"2025-11-28T21:40:00\"" },
  { "received-bad-date", "received", "\"2025-13-28T21:40:00Z\"" },
  { "received-seven-digits", "received", "\"2025-11-28T21:40:00.1234567Z\"" },
  { "received-empty-fraction", "received", "\"2025-11-28T21:40:00.Z\"" },
  { "received-leap-second", "received", "\"2025-12-31T23:59:60Z\"" },
  { "next-attempt-garbage", "next_attempt", "\"soon\"" },
  { "postq-string", "postq", "\"true\"" },
  { "postq-number", "postq", "1" },
  { "route-number", "route", "25" },
  { "route-lf", "route", "\"mx\\nx\"" },
  { "delay-warned-string", "delay_warned", "\"yes\"" },
  { "session-cr", "session", "\"S1\\r\"" },
  { "client-array", "client", "[]" },
  { "client-ip-number", "client.ip", "127" },
  { "client-helo-lf", "client.helo", "\"a\\nb\"" },
  { "client-auth-user-cr", "client.auth_user", "\"u\\r\"" },
  { "client-tls-object", "client.tls", "{}" },
  { "client-unknown", "client.port", "25" },
  { "recipients-missing", "recipients", NULL },
  { "recipients-null", "recipients", "null" },
  { "recipients-empty", "recipients", "[]" },
  { "recipients-object", "recipients", "{}" },
  { "recipient-string", "recipients.0", "\"a@b\"" },
  { "recipient-address-missing", "recipients.0.address", NULL },
  { "recipient-address-empty", "recipients.0.address", "\"\"" },
  { "recipient-address-crlf", "recipients.0.address", "\"a@b>\\r\\nDATA\"" },
  { "recipient-orcpt-crlf", "recipients.1.orcpt", "\"rfc822;a@b\\r\\nX\"" },
  { "recipient-notify-string", "recipients.0.notify", "\"success\"" },
  { "recipient-notify-unknown", "recipients.0.notify", "[\"sometimes\"]" },
  { "recipient-notify-number", "recipients.0.notify", "[1]" },
  { "recipient-notify-never-and-more", "recipients.0.notify", "[\"never\",\"failure\"]" },
  { "recipient-state-unknown", "recipients.0.state", "\"bounced\"" },
  { "recipient-state-number", "recipients.0.state", "2" },
  { "recipient-result-lf", "recipients.1.result", "\"451 a\\nb\"" },
  { "recipient-updated-bad", "recipients.1.updated", "\"yesterday\"" },
  { "recipient-unknown", "recipients.0.priority", "1" },
  { "report-array", "report", "[]" },
  { "report-string", "report", "\"accept\"" },
  { "unknown-member", "queue", "\"incoming\"" },
};

static JsonNode *
parse_json (const char *text)
{
  g_autoptr (JsonParser) parser = json_parser_new ();

  g_assert_true (json_parser_load_from_data (parser, text, -1, NULL));
  return json_node_ref (json_parser_get_root (parser));
}

/* Apply one edit to the object tree. */
static void
apply_edit (JsonObject *root, const char *path, const char *value)
{
  g_auto (GStrv) parts = g_strsplit (path, ".", -1);
  guint n = g_strv_length (parts);
  JsonNode *container = NULL;
  JsonObject *o = root;

  for (guint i = 0; i + 1 < n; i++)
    {
      if (g_ascii_isdigit (parts[i][0]))
        container = json_array_get_element (json_node_get_array (container),
                                            (guint)g_ascii_strtoull (parts[i], NULL, 10));
      else
        container = json_object_get_member (o, parts[i]);
      g_assert_nonnull (container);
      if (JSON_NODE_HOLDS_OBJECT (container))
        o = json_node_get_object (container);
    }
  if (g_ascii_isdigit (parts[n - 1][0]))
    {
      JsonArray *a = json_node_get_array (container);
      guint index = (guint)g_ascii_strtoull (parts[n - 1], NULL, 10);

      g_assert_nonnull (value);
      json_array_remove_element (a, index);
      /* the replaced element goes last: position does not matter here */
      json_array_add_element (a, parse_json (value));
      return;
    }
  if (value == NULL)
    json_object_remove_member (o, parts[n - 1]);
  else
    json_object_set_member (o, parts[n - 1], parse_json (value));
}

static void
test_reject_edits (void)
{
  g_autoptr (VpsEnvelope) env = full_envelope ();
  g_autofree char *valid = vps_envelope_to_data (env, FALSE, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (bad_edits); i++)
    {
      g_autoptr (JsonNode) root = parse_json (valid);
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsEnvelope) back = NULL;
      g_autofree char *text = NULL;

      g_test_message ("case %s", bad_edits[i].name);
      apply_edit (json_node_get_object (root), bad_edits[i].path, bad_edits[i].value);
      json_generator_set_root (gen, root);
      text = json_generator_to_data (gen, NULL);
      back = vps_envelope_from_data (text, strlen (text), &error);
      if (back != NULL)
        g_error ("case %s accepted: %s", bad_edits[i].name, text);
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
      g_test_message ("  refused: %s", error->message);
    }
}

/* Texts json-glib parses (or nearly): each must be refused. */
static const struct
{
  const char *name;
  const char *text;
} bad_texts[] = {
  { "empty", "" },
  { "blank", " \n" },
  { "not-json", "id=" ID },
  { "truncated", "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\"}" },
  { "array", "[{\"id\":\"" ID "\"}]" },
  { "string", "\"" ID "\"" },
  { "two-objects", "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\"}]}"
                   "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"c@d\"}]}" },
  { "object-then-array",
    "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\"}]}[1]" },
  { "trailing-garbage",
    "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\"}]} x" },
  { "duplicate-sender",
    "{\"id\":\"" ID "\",\"sender\":\"\",\"sender\":\"a@b\",\"recipients\":[{\"address\":"
    "\"a@b\"}]}" },
  { "duplicate-address",
    "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\",\"address\":"
    "\"c@d\"}]}" },
  { "duplicate-in-report",
    "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\"}],"
    "\"report\":{\"v\":1,\"v\":2}}" },
  /* (json-glib would cut these strings at the NUL: "a@b" accepted) */
  { "nul-escape-in-sender",
    "{\"id\":\"" ID "\",\"sender\":\"a@b\\u0000evil\",\"recipients\":[{\"address\":"
    "\"a@b\"}]}" },
  { "nul-escape-in-address",
    "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\\u0000x\"}]}" },
  { "nul-escape-after-backslashes",
    "{\"id\":\"" ID "\",\"sender\":\"\\\\\\u0000\",\"recipients\":[{\"address\":"
    "\"a@b\"}]}" },
  { "nul-escape-in-report",
    "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\"}],"
    "\"report\":{\"v\":\"a\\u0000b\"}}" },
  { "invalid-utf8", "{\"id\":\"" ID "\",\"sender\":\"\xff\",\"recipients\":[{\"address\":"
                    "\"a@b\"}]}" },
};

static void
test_reject_texts (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (bad_texts); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsEnvelope) env = NULL;

      g_test_message ("case %s", bad_texts[i].name);
      env = vps_envelope_from_data (bad_texts[i].text, strlen (bad_texts[i].text), &error);
      g_assert_null (env);
      g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
      g_test_message ("  refused: %s", error->message);
    }
}

/* A NUL byte in the file (not an escape) and an escaped backslash before
 * "u0000" (which is not a NUL: accepted). */
static void
test_nul_bytes (void)
{
  static const char with_nul[]
      = "{\"id\":\"" ID "\",\"sender\":\"a\0b\",\"recipients\":[{\"address\":\"a@b\"}]}";
  static const char backslash[]
      = "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"a@b\"}],"
        "\"report\":{\"v\":\"a\\\\u0000b\"}}";
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsEnvelope) env = NULL;
  const char *v;

  g_assert_null (vps_envelope_from_data (with_nul, sizeof with_nul - 1, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
  g_clear_error (&error);
  env = vps_envelope_from_data (backslash, strlen (backslash), &error);
  g_assert_no_error (error);
  v = json_object_get_string_member (env->report, "v");
  g_assert_cmpstr (v, ==, "a\\u0000b");
}

/* Bigger than VPS_QUEUE_MAX_ENVELOPE: refused before parsing. */
static void
test_too_large (void)
{
  gsize len = VPS_QUEUE_MAX_ENVELOPE + 1;
  g_autofree char *text = g_malloc (len);
  g_autoptr (GError) error = NULL;
  static const char head[] = "{\"id\":\"" ID "\",\"sender\":\"\",\"recipients\":[{\"address\":\"";
  static const char tail[] = "\"}]}";

  memset (text, 'a', len);
  memcpy (text, head, strlen (head));
  memcpy (text + len - strlen (tail), tail, strlen (tail));
  g_assert_null (vps_envelope_from_data (text, len, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
  g_assert_nonnull (strstr (error->message, "larger"));
  g_clear_error (&error);
  g_assert_null (vps_envelope_parse_data (text, len, &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
}

/* parse_data keeps any object (what `vpsctl queue show --format json`
 * prints), with the same shape checks. */
static void
test_parse_data (void)
{
  static const char ok[] = "{\"anything\":[1,2,{\"x\":null}]}";
  static const char dup[] = "{\"a\":1,\"a\":1}";
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) root = vps_envelope_parse_data (ok, strlen (ok), &error);

  g_assert_no_error (error);
  g_assert_true (json_object_has_member (json_node_get_object (root), "anything"));
  g_assert_null (vps_envelope_parse_data (dup, strlen (dup), &error));
  g_assert_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
}

/* vps_envelope_check() (what a commit runs instead of writing the
 * envelope and parsing it back) agrees with the reader on every struct
 * edit: a check that passes what the reader refuses would let a commit
 * write an envelope that recovery then moves to corrupt/. */
typedef void (*EnvelopeEdit) (VpsEnvelope *env);

static void
edit_none (VpsEnvelope *env)
{
}
static void
edit_sender_cr (VpsEnvelope *env)
{
  g_free (env->sender);
  env->sender = g_strdup ("a\r@b");
}
static void
edit_postq (VpsEnvelope *env)
{
  env->postq = !env->postq;
}
static void
edit_sender_null (VpsEnvelope *env)
{
  g_clear_pointer (&env->sender, g_free);
}
static void
edit_sender_empty (VpsEnvelope *env)
{
  g_free (env->sender);
  env->sender = g_strdup ("");
}
static void
edit_envid_lf (VpsEnvelope *env)
{
  g_free (env->envid);
  env->envid = g_strdup ("x\ny");
}
static void
edit_helo_del (VpsEnvelope *env)
{
  g_free (env->helo);
  env->helo = g_strdup ("a\x7f");
}
static void
edit_tls_tab (VpsEnvelope *env)
{
  g_free (env->tls);
  env->tls = g_strdup ("TLS\t1");
}
static void
edit_ret_bad (VpsEnvelope *env)
{
  g_free (env->ret);
  env->ret = g_strdup ("SOME");
}
static void
edit_body_bad (VpsEnvelope *env)
{
  g_free (env->body);
  env->body = g_strdup ("8bitmime");
}
static void
edit_id_bad (VpsEnvelope *env)
{
  g_free (env->id);
  env->id = g_strdup ("../x");
}
static void
edit_no_rcpts (VpsEnvelope *env)
{
  g_ptr_array_set_size (env->rcpts, 0);
}
static void
edit_rcpt_empty (VpsEnvelope *env)
{
  VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, 0);

  g_free (r->address);
  r->address = g_strdup ("");
}
static void
edit_orcpt_crlf (VpsEnvelope *env)
{
  VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, 1);

  r->orcpt = g_strdup ("rfc822;a@b\r\nX-Injected: 1");
}
static void
edit_result_nul_free_control (VpsEnvelope *env)
{
  VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, 1);

  g_free (r->result);
  r->result = g_strdup ("451 \x1b[31m");
}
static void
edit_notify_never_plus (VpsEnvelope *env)
{
  ((VpsQueueRcpt *)g_ptr_array_index (env->rcpts, 1))->notify
      = SMTP_NOTIFY_NEVER | SMTP_NOTIFY_FAILURE;
}
static void
edit_state_bad (VpsEnvelope *env)
{
  ((VpsQueueRcpt *)g_ptr_array_index (env->rcpts, 2))->state = (VpsRcptState)42;
}

static void
test_check_agrees (void)
{
  static const struct
  {
    const char *name;
    EnvelopeEdit edit;
  } edits[] = {
    { "none", edit_none },
    { "sender-cr", edit_sender_cr },
    { "sender-null", edit_sender_null },
    { "postq", edit_postq },
    { "sender-empty", edit_sender_empty },
    { "envid-lf", edit_envid_lf },
    { "helo-del", edit_helo_del },
    { "tls-tab", edit_tls_tab },
    { "ret", edit_ret_bad },
    { "body", edit_body_bad },
    { "id", edit_id_bad },
    { "no-rcpts", edit_no_rcpts },
    { "rcpt-empty", edit_rcpt_empty },
    { "orcpt-crlf", edit_orcpt_crlf },
    { "result-esc", edit_result_nul_free_control },
    { "notify", edit_notify_never_plus },
    { "state", edit_state_bad },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (edits); i++)
    {
      g_autoptr (VpsEnvelope) env = full_envelope ();
      g_autoptr (GError) check_error = NULL;
      g_autoptr (GError) read_error = NULL;
      g_autoptr (VpsEnvelope) back = NULL;
      g_autofree char *data = NULL;
      gboolean checked;
      gsize len = 0;

      edits[i].edit (env);
      checked = vps_envelope_check (env, &check_error);
      /* an unknown state cannot even be written: the check is the guard */
      if (strcmp (edits[i].name, "state") != 0)
        {
          data = vps_envelope_to_data (env, FALSE, &len);
          back = vps_envelope_from_data (data, len, &read_error);
          g_test_message ("%s: check %s, read %s", edits[i].name,
                          check_error ? check_error->message : "ok",
                          read_error ? read_error->message : "ok");
          g_assert_cmpint (checked, ==, back != NULL);
        }
      else
        g_assert_false (checked);
      if (!checked)
        g_assert_error (check_error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT);
      /* the null sender, as NULL or "", is a good one */
      if (i == 0 || strcmp (edits[i].name, "sender-null") == 0
          || strcmp (edits[i].name, "sender-empty") == 0)
        g_assert_true (checked);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  g_test_add_func ("/mta/envelope/round-trip", test_round_trip);
  g_test_add_func ("/mta/envelope/format", test_format);
  g_test_add_func ("/mta/envelope/minimal", test_minimal);
  g_test_add_func ("/mta/envelope/times", test_times);
  g_test_add_func ("/mta/envelope/rcpt-states", test_rcpt_states);
  g_test_add_func ("/mta/envelope/reject/edits", test_reject_edits);
  g_test_add_func ("/mta/envelope/reject/texts", test_reject_texts);
  g_test_add_func ("/mta/envelope/reject/nul-bytes", test_nul_bytes);
  g_test_add_func ("/mta/envelope/reject/too-large", test_too_large);
  g_test_add_func ("/mta/envelope/parse-data", test_parse_data);
  g_test_add_func ("/mta/envelope/check-agrees", test_check_agrees);
  return g_test_run ();
}
