/* SPDX-License-Identifier: MIT
 *
 * conn-http-codec.c — the documents of the `http` connector, without any
 * I/O: the JSON request of mode = json, the rspamd request headers, and the
 * mapping of a reply (ours, or rspamd's /checkv2 JSON) to a connector
 * result.
 *
 * Everything that leaves here towards the MTA is checked: verdict names,
 * reply codes against the verdict's class (a "reject" with 250 is refused),
 * enhanced codes and texts with proto/mail's rules (no CR, LF, NUL or other
 * controls), header modifications with vps_modification_new.  A reply that
 * fails a check is an error (→ on_error), never passed on in part.
 * Strings we send are valid UTF-8 (invalid bytes become U+FFFD) so the JSON
 * stays JSON; the raw message goes as text when it is valid UTF-8 without
 * NUL, otherwise base64 ("data_encoding" says which).
 */
#include "connectors/http/conn-http-private.h"

#include <string.h>

#include "proto/mail/mail-header.h"
#include "proto/mail/mail-reply.h"

G_DEFINE_QUARK (conn - http - error - quark, conn_http_error)

/* ---- requests -------------------------------------------------------------- */

static void
add_string (JsonBuilder *b, const char *member, const char *value)
{
  json_builder_set_member_name (b, member);
  if (value == NULL)
    json_builder_add_null_value (b);
  else if (g_utf8_validate (value, -1, NULL))
    json_builder_add_string_value (b, value);
  else
    {
      g_autofree char *valid = g_utf8_make_valid (value, -1);
      json_builder_add_string_value (b, valid);
    }
}

static void
add_value_string (JsonBuilder *b, const char *value)
{
  if (g_utf8_validate (value, -1, NULL))
    json_builder_add_string_value (b, value);
  else
    {
      g_autofree char *valid = g_utf8_make_valid (value, -1);
      json_builder_add_string_value (b, valid);
    }
}

static void
add_message (JsonBuilder *b, VpsMessage *msg, gboolean send_body)
{
  gsize n = vps_message_n_headers (msg);
  GBytes *raw = vps_message_get_raw (msg);
  gsize len = 0;
  const char *data = g_bytes_get_data (raw, &len);

  json_builder_set_member_name (b, "size");
  json_builder_add_int_value (b, (gint64)vps_message_get_size (msg));
  json_builder_set_member_name (b, "headers");
  json_builder_begin_array (b);
  for (gsize i = 0; i < n; i++)
    {
      g_autofree char *value = mail_header_unfold (vps_message_header_raw_value (msg, i), -1);

      json_builder_begin_array (b);
      add_value_string (b, vps_message_header_name (msg, i));
      add_value_string (b, value);
      json_builder_end_array (b);
    }
  json_builder_end_array (b);
  if (!send_body)
    return;
  json_builder_set_member_name (b, "data_encoding");
  if (memchr (data, '\0', len) == NULL && g_utf8_validate_len (data, len, NULL))
    {
      g_autofree char *text = g_strndup (data, len);
      json_builder_add_string_value (b, "utf-8");
      json_builder_set_member_name (b, "data");
      json_builder_add_string_value (b, text);
    }
  else
    {
      g_autofree char *b64 = g_base64_encode ((const guchar *)data, len);
      json_builder_add_string_value (b, "base64");
      json_builder_set_member_name (b, "data");
      json_builder_add_string_value (b, b64);
    }
}

GBytes *
conn_http_json_request (VpsTxn *txn, RulesStage stage, const char *connector, gboolean send_body)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  VpsSession *s = vps_txn_get_session (txn);
  VpsMessage *msg = vps_txn_get_message (txn);
  const char *const *rcpts = vps_txn_get_rcpts (txn, NULL);
  gsize len = 0;
  char *text;

  json_builder_begin_object (b);
  add_string (b, "connector", connector);
  add_string (b, "stage", rules_stage_name (stage));
  add_string (b, "session", vps_session_get_id (s));
  add_string (b, "txn", vps_txn_get_id (txn));
  add_string (b, "queue_id", vps_txn_get_queue_id (txn));

  json_builder_set_member_name (b, "client");
  json_builder_begin_object (b);
  add_string (b, "ip", vps_session_get_client_ip (s));
  json_builder_set_member_name (b, "port");
  json_builder_add_int_value (b, vps_session_get_client_port (s));
  add_string (b, "ptr", vps_session_get_client_ptr (s));
  json_builder_end_object (b);

  json_builder_set_member_name (b, "server");
  json_builder_begin_object (b);
  add_string (b, "ip", vps_session_get_server_ip (s));
  json_builder_set_member_name (b, "port");
  json_builder_add_int_value (b, vps_session_get_server_port (s));
  add_string (b, "name", vps_session_get_server_name (s));
  json_builder_end_object (b);

  add_string (b, "helo", vps_session_get_helo (s));

  json_builder_set_member_name (b, "tls");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "active");
  json_builder_add_boolean_value (b, vps_session_get_tls_active (s));
  add_string (b, "version", vps_session_get_tls_version (s));
  add_string (b, "cipher", vps_session_get_tls_cipher (s));
  add_string (b, "peer_subject", vps_session_get_tls_peer_subject (s));
  json_builder_end_object (b);

  json_builder_set_member_name (b, "auth");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "authenticated");
  json_builder_add_boolean_value (b, vps_session_get_authenticated (s));
  add_string (b, "user", vps_session_get_auth_user (s));
  add_string (b, "mechanism", vps_session_get_auth_mechanism (s));
  json_builder_end_object (b);

  json_builder_set_member_name (b, "envelope");
  json_builder_begin_object (b);
  add_string (b, "from", vps_txn_get_sender (txn));
  add_string (b, "rcpt", vps_txn_get_rcpt (txn));
  json_builder_set_member_name (b, "rcpts");
  json_builder_begin_array (b);
  for (gsize i = 0; rcpts != NULL && rcpts[i] != NULL; i++)
    add_value_string (b, rcpts[i]);
  json_builder_end_array (b);
  json_builder_end_object (b);

  if (msg != NULL)
    add_message (b, msg, send_body);
  else if (vps_txn_get_size (txn) > 0)
    {
      json_builder_set_member_name (b, "size");
      json_builder_add_int_value (b, (gint64)vps_txn_get_size (txn));
    }
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, &len);
  return g_bytes_new_take (text, len);
}

/* A header line "Name: value" for value, or NULL when value has a byte
 * that could end or split the HTTP header (CR, LF, NUL, other controls). */
static char *
header_line (const char *name, const char *value)
{
  if (value == NULL || *value == '\0')
    return NULL;
  for (const char *p = value; *p != '\0'; p++)
    if ((guchar)*p < 0x20 || *p == 0x7f)
      return NULL;
  return g_strdup_printf ("%s: %s", name, value);
}

static struct curl_slist *
append_header (struct curl_slist *list, const char *name, const char *value)
{
  g_autofree char *line = header_line (name, value);

  return line != NULL ? curl_slist_append (list, line) : list;
}

struct curl_slist *
conn_http_rspamd_headers (VpsTxn *txn)
{
  VpsSession *s = vps_txn_get_session (txn);
  const char *from = vps_txn_get_sender (txn);
  gsize n = 0;
  const char *const *rcpts = vps_txn_get_rcpts (txn, &n);
  const char *queue_id = vps_txn_get_queue_id (txn);
  struct curl_slist *h = NULL;

  h = append_header (h, "IP", vps_session_get_client_ip (s));
  h = append_header (h, "Hostname", vps_session_get_client_ptr (s));
  h = append_header (h, "Helo", vps_session_get_helo (s));
  if (from != NULL)
    h = append_header (h, "From", *from == '\0' ? "<>" : from);
  for (gsize i = 0; i < n; i++)
    h = append_header (h, "Rcpt", rcpts[i]);
  if (n == 0)
    h = append_header (h, "Rcpt", vps_txn_get_rcpt (txn));
  h = append_header (h, "Queue-Id", queue_id != NULL ? queue_id : vps_txn_get_id (txn));
  if (vps_session_get_authenticated (s))
    h = append_header (h, "User", vps_session_get_auth_user (s));
  return h;
}

/* ---- replies --------------------------------------------------------------- */

/* json-glib's parser recurses once per nesting level: refuse deep input
 * before parsing, so a reply of a million '[' costs a scan, not the stack.
 * The same scan refuses an escaped NUL ("\u0000"): json-glib keeps strings
 * as C strings and would silently cut the value there. */
static gboolean
scan_ok (const char *p, gsize len, GError **error)
{
  guint depth = 0;
  gboolean in_string = FALSE;

  for (gsize i = 0; i < len; i++)
    {
      char c = p[i];

      if (in_string)
        {
          if (c == '\\' && i + 5 < len && memcmp (p + i + 1, "u0000", 5) == 0)
            {
              g_set_error_literal (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED,
                                   "reply has a NUL (\\u0000) in a string");
              return FALSE;
            }
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = FALSE;
        }
      else if (c == '"')
        in_string = TRUE;
      else if (c == '[' || c == '{')
        {
          if (++depth > CONN_HTTP_MAX_JSON_DEPTH)
            {
              g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED,
                           "reply nested deeper than %d levels", CONN_HTTP_MAX_JSON_DEPTH);
              return FALSE;
            }
        }
      else if ((c == ']' || c == '}') && depth > 0)
        depth--;
    }
  return TRUE;
}

JsonNode *
conn_http_parse_reply (GBytes *body, GError **error)
{
  gsize len = 0;
  const char *data = g_bytes_get_data (body, &len);
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) local = NULL;
  JsonNode *root;

  if (len == 0)
    {
      g_set_error_literal (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED, "empty reply");
      return NULL;
    }
  if (!scan_ok (data, len, error))
    return NULL;
  if (!json_parser_load_from_data (parser, data, (gssize)len, &local))
    {
      g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED, "reply is not JSON: %s",
                   local->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error_literal (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED,
                           "reply is not a JSON object");
      return NULL;
    }
  return json_node_ref (root);
}

/* A member that must be a string when present; absent or null → NULL. */
static gboolean
member_string (JsonObject *o, const char *name, const char **out, GError **error)
{
  JsonNode *n = json_object_get_member (o, name);

  *out = NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    {
      g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED, "\"%s\" is not a string",
                   name);
      return FALSE;
    }
  *out = json_node_get_string (n);
  return TRUE;
}

/* A member that must be a number when present; absent or null → FALSE in
 * *present. */
static gboolean
member_number (JsonObject *o, const char *name, gboolean integer, double *out, gboolean *present,
               GError **error)
{
  JsonNode *n = json_object_get_member (o, name);
  GType t;

  *present = FALSE;
  *out = 0;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  t = JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : G_TYPE_INVALID;
  if (t != G_TYPE_INT64 && (integer || t != G_TYPE_DOUBLE))
    {
      g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED, "\"%s\" is not %s", name,
                   integer ? "an integer" : "a number");
      return FALSE;
    }
  *out = t == G_TYPE_INT64 ? (double)json_node_get_int (n) : json_node_get_double (n);
  *present = TRUE;
  return TRUE;
}

/* Reply text: one line of printable ASCII that fits a reply line. */
static gboolean
text_ok (const char *text, GError **error)
{
  g_autoptr (MailReply) probe = NULL;

  if (strpbrk (text, "\r\n") != NULL)
    {
      g_set_error_literal (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR,
                           "CR or LF in the reply text");
      return FALSE;
    }
  probe = mail_reply_new (550, NULL, text, error);
  return probe != NULL;
}

static gboolean
reply_ok (RulesVerdict verdict, guint code, const char *enhanced, const char *text, GError **error)
{
  g_autoptr (GError) local = NULL;

  if ((code != 0 && !mail_reply_check_code (code, &local))
      || (enhanced != NULL && !mail_enhanced_code_check (enhanced, code, &local))
      || (text != NULL && !text_ok (text, &local)))
    {
      g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_REFUSED, "reply refused: %s",
                   local->message);
      return FALSE;
    }
  /* a code of the wrong class would tell the client the opposite */
  if (code != 0
      && ((verdict == RULES_VERDICT_REJECT && code / 100 != 5)
          || (verdict == RULES_VERDICT_TEMPFAIL && code / 100 != 4)))
    {
      g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_REFUSED,
                   "reply refused: code %u does not fit verdict %s", code,
                   rules_verdict_name (verdict));
      return FALSE;
    }
  return TRUE;
}

static gboolean
add_mod (VpsConnectorResult *r, VpsModOp op, const char *name, const char *value, GError **error)
{
  g_autoptr (GError) local = NULL;
  VpsModification *m;

  if (r->modifications->len >= CONN_HTTP_MAX_HEADER_MODS)
    {
      g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_REFUSED,
                   "more than %d header operations", CONN_HTTP_MAX_HEADER_MODS);
      return FALSE;
    }
  m = vps_modification_new (op, name, value, 0, &local);
  if (m == NULL)
    {
      g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_REFUSED, "header %s refused: %s",
                   vps_mod_op_name (op), local->message);
      return FALSE;
    }
  vps_connector_result_add_modification (r, m);
  return TRUE;
}

static gboolean
malformed_headers (VpsModOp op, GError **error)
{
  g_clear_error (error);
  g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED,
               "\"headers\": \"%s\" is not a list of {\"name\", \"value\"} (or names to remove)",
               vps_mod_op_name (op));
  return FALSE;
}

/* One element of a header list: a name (remove) or {"name", "value"}. */
static gboolean
header_element (JsonNode *e, VpsModOp op, const char **name, const char **value)
{
  JsonObject *o;

  *name = *value = NULL;
  if (op == VPS_MOD_REMOVE_HEADER)
    {
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
        return FALSE;
      *name = json_node_get_string (e);
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_OBJECT (e))
    return FALSE;
  o = json_node_get_object (e);
  return member_string (o, "name", name, NULL) && member_string (o, "value", value, NULL)
         && *name != NULL && *value != NULL;
}

/* "add"/"set"/"insert": [{"name": N, "value": V}, ...] or {N: V, ...};
 * "remove": [N, ...]. */
static gboolean
header_ops (VpsConnectorResult *r, JsonNode *node, VpsModOp op, GError **error)
{
  if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      guint n = json_array_get_length (a);

      for (guint i = 0; i < n; i++)
        {
          const char *name, *value;

          if (!header_element (json_array_get_element (a, i), op, &name, &value))
            return malformed_headers (op, error);
          if (!add_mod (r, op, name, value, error))
            return FALSE;
        }
      return TRUE;
    }
  if (op != VPS_MOD_REMOVE_HEADER && JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObjectIter it;
      const char *name;
      JsonNode *v;

      json_object_iter_init (&it, json_node_get_object (node));
      while (json_object_iter_next (&it, &name, &v))
        {
          if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING)
            return malformed_headers (op, error);
          if (!add_mod (r, op, name, json_node_get_string (v), error))
            return FALSE;
        }
      return TRUE;
    }
  return malformed_headers (op, error);
}

static const struct
{
  const char *key;
  VpsModOp op;
} header_keys[] = {
  { "add", VPS_MOD_ADD_HEADER },
  { "insert", VPS_MOD_INSERT_HEADER },
  { "set", VPS_MOD_SET_HEADER },
  { "remove", VPS_MOD_REMOVE_HEADER },
};

static gboolean
headers_member (VpsConnectorResult *r, JsonObject *o, GError **error)
{
  JsonNode *h = json_object_get_member (o, "headers");
  JsonObject *ho;

  if (h == NULL || JSON_NODE_HOLDS_NULL (h))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (h))
    {
      g_set_error_literal (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED,
                           "\"headers\" is not an object");
      return FALSE;
    }
  ho = json_node_get_object (h);
  for (gsize k = 0; k < G_N_ELEMENTS (header_keys); k++)
    {
      JsonNode *n = json_object_get_member (ho, header_keys[k].key);
      if (n != NULL && !JSON_NODE_HOLDS_NULL (n) && !header_ops (r, n, header_keys[k].op, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
quarantine_name_ok (const char *q)
{
  gsize len = strlen (q);

  if (len == 0 || len > 64)
    return FALSE;
  for (const char *p = q; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-' && *p != '.')
      return FALSE;
  return TRUE;
}

VpsConnectorResult *
conn_http_json_result (JsonNode *reply, glong status, const ConnHttpSettings *settings,
                       GError **error)
{
  JsonObject *o = json_node_get_object (reply);
  const char *vs, *enhanced, *text, *quarantine;
  RulesVerdict verdict = RULES_VERDICT_CONTINUE;
  double code = 0;
  gboolean has_code;
  g_autoptr (VpsConnectorResult) r = NULL;

  if (!member_string (o, "verdict", &vs, error) || !member_string (o, "enhanced", &enhanced, error)
      || !member_string (o, "text", &text, error)
      || !member_string (o, "quarantine", &quarantine, error)
      || !member_number (o, "code", TRUE, &code, &has_code, error))
    return NULL;
  if (vs != NULL && !rules_verdict_from_name (vs, &verdict))
    {
      g_set_error (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_REFUSED, "unknown verdict \"%.64s\"",
                   vs);
      return NULL;
    }
  if (has_code && (code < 0 || code > 999))
    code = 1; /* refused by the range check below */
  if (enhanced != NULL && *enhanced == '\0')
    enhanced = NULL;
  if (!reply_ok (verdict, (guint)code, enhanced, text, error))
    return NULL;
  if (quarantine != NULL && !quarantine_name_ok (quarantine))
    {
      g_set_error_literal (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_REFUSED,
                           "quarantine name refused (1-64 of A-Z a-z 0-9 _ - .)");
      return NULL;
    }
  r = vps_connector_result_new (verdict);
  vps_connector_result_set_reply (r, (guint)code, enhanced, text);
  if (verdict == RULES_VERDICT_QUARANTINE)
    r->quarantine = g_strdup (quarantine != NULL ? quarantine : settings->quarantine);
  if (!headers_member (r, o, error))
    return NULL;
  vps_connector_result_set_int (r, "status", status);
  vps_connector_result_set_json (r, "json", json_node_ref (reply));
  return g_steal_pointer (&r);
}

/* ---- rspamd ---------------------------------------------------------------- */

/* rspamd's actions (rspamd.com/doc/faq.html#what-are-rspamd-actions) and
 * what they become with apply_action = yes; texts as rspamd's proxy says. */
static const struct
{
  const char *action;
  RulesVerdict verdict;
  guint code;
  const char *enhanced;
  const char *text;
} rspamd_actions[] = {
  { "reject", RULES_VERDICT_REJECT, 554, "5.7.1", "Spam message rejected" },
  { "soft reject", RULES_VERDICT_TEMPFAIL, 451, "4.7.1", "Try again later" },
  { "greylist", RULES_VERDICT_TEMPFAIL, 451, "4.7.1", "Greylisted, try again later" },
  { "add header", RULES_VERDICT_CONTINUE, 0, NULL, NULL },
  { "rewrite subject", RULES_VERDICT_CONTINUE, 0, NULL, NULL },
  { "no action", RULES_VERDICT_CONTINUE, 0, NULL, NULL },
};

#define CONN_HTTP_RSPAMD_SPAM_HEADER "X-Spam"
#define CONN_HTTP_RSPAMD_SUBJECT_PREFIX "*** SPAM *** "

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

static char **
symbol_names (JsonObject *o)
{
  JsonNode *n = json_object_get_member (o, "symbols");
  GPtrArray *out = g_ptr_array_new ();

  if (n != NULL && JSON_NODE_HOLDS_OBJECT (n))
    {
      JsonObjectIter it;
      const char *name;

      json_object_iter_init (&it, json_node_get_object (n));
      while (json_object_iter_next (&it, &name, NULL) && out->len < CONN_HTTP_MAX_SYMBOLS)
        if (g_utf8_validate (name, -1, NULL))
          g_ptr_array_add (out, g_strdup (name));
    }
  g_ptr_array_sort (out, compare_names);
  g_ptr_array_add (out, NULL);
  return (char **)g_ptr_array_free (out, FALSE);
}

static const char *
smtp_message (JsonObject *o)
{
  JsonNode *m = json_object_get_member (o, "messages");
  const char *text = NULL;

  if (m != NULL && JSON_NODE_HOLDS_OBJECT (m)
      && member_string (json_node_get_object (m), "smtp_message", &text, NULL) && text != NULL
      && text_ok (text, NULL))
    return text;
  return NULL;
}

VpsConnectorResult *
conn_http_rspamd_result (JsonNode *reply, glong status, const ConnHttpSettings *settings,
                         const char *subject, GError **error)
{
  JsonObject *o = json_node_get_object (reply);
  const char *action, *new_subject;
  double score = 0, required = 0;
  gboolean has_score, has_required;
  g_auto (GStrv) symbols = NULL;
  g_autoptr (VpsConnectorResult) r = NULL;
  gsize k;

  if (!member_string (o, "action", &action, error)
      || !member_number (o, "score", FALSE, &score, &has_score, error)
      || !member_number (o, "required_score", FALSE, &required, &has_required, error)
      || !member_string (o, "subject", &new_subject, error))
    return NULL;
  if (action == NULL || !has_score)
    {
      g_set_error_literal (error, CONN_HTTP_ERROR, CONN_HTTP_ERROR_MALFORMED,
                           "not an rspamd reply: no \"action\" or \"score\"");
      return NULL;
    }
  for (k = 0; k < G_N_ELEMENTS (rspamd_actions); k++)
    if (g_ascii_strcasecmp (action, rspamd_actions[k].action) == 0)
      break;

  r = vps_connector_result_new (RULES_VERDICT_CONTINUE);
  if (settings->apply_action && k < G_N_ELEMENTS (rspamd_actions))
    {
      const char *msg = smtp_message (o);

      r->verdict = rspamd_actions[k].verdict;
      if (rspamd_actions[k].code != 0)
        vps_connector_result_set_reply (r, rspamd_actions[k].code, rspamd_actions[k].enhanced,
                                        msg != NULL ? msg : rspamd_actions[k].text);
      if (strcmp (rspamd_actions[k].action, "add header") == 0
          && !add_mod (r, VPS_MOD_SET_HEADER, CONN_HTTP_RSPAMD_SPAM_HEADER, "Yes", error))
        return NULL;
      if (strcmp (rspamd_actions[k].action, "rewrite subject") == 0)
        {
          g_autofree char *value
              = new_subject != NULL
                    ? g_strdup (new_subject)
                    : g_strconcat (CONN_HTTP_RSPAMD_SUBJECT_PREFIX, subject ? subject : "", NULL);
          if (!add_mod (r, VPS_MOD_SET_HEADER, "Subject", value, error))
            return NULL;
        }
    }
  symbols = symbol_names (o);
  vps_connector_result_set_int (r, "status", status);
  vps_connector_result_set_float (r, "score", score);
  if (has_required)
    vps_connector_result_set_float (r, "required_score", required);
  if (g_utf8_validate (action, -1, NULL))
    vps_connector_result_set_string (r, "action", action);
  vps_connector_result_set_strv (r, "symbols", (const char *const *)symbols);
  vps_connector_result_set_json (r, "json", json_node_ref (reply));
  return g_steal_pointer (&r);
}
