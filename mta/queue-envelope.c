/* SPDX-License-Identifier: MIT
 *
 * queue-envelope.c — a queued message's envelope (VpsEnvelope) and its JSON
 * form, the ID.json file of the spool (queue.h has the format).
 *
 * The writer is the queue itself, but the reader must still trust nothing:
 * a file may be truncated by a crash of the disk, edited by hand or written
 * by another version.  So parsing is strict in what it accepts (every
 * member's type, known members only, known names for enums, no control
 * character in any string the delivery will put on a wire or in a path
 * decision: CVE-2020-28026 came from CR/LF in an ORCPT reaching a spool
 * file) and bounded in what it reads (VPS_QUEUE_MAX_ENVELOPE).  json-glib
 * is lenient in three ways that matter and are closed here: several
 * top-level values ("{}{}"), duplicate members (last one wins) and "\u0000"
 * (cuts the string short without a word).
 */
#include "mta/queue.h"
#include "proto/smtp/smtp.h"

#include <string.h>

/* ---- the envelope ---------------------------------------------------------- */

static const char *const rcpt_state_names[] = {
  [VPS_RCPT_PENDING] = "pending",
  [VPS_RCPT_DEFERRED] = "deferred",
  [VPS_RCPT_DELIVERED] = "delivered",
  [VPS_RCPT_FAILED] = "failed",
};

static const struct
{
  SmtpNotify bit;
  const char *name;
} notify_names[] = {
  { SMTP_NOTIFY_SUCCESS, "success" },
  { SMTP_NOTIFY_FAILURE, "failure" },
  { SMTP_NOTIFY_DELAY, "delay" },
  { SMTP_NOTIFY_NEVER, "never" },
};

static const char *const ret_names[] = { "FULL", "HDRS", NULL };
static const char *const body_names[] = { "7BIT", "8BITMIME", "BINARYMIME", NULL };

const char *
vps_rcpt_state_name (VpsRcptState state)
{
  if ((guint)state >= G_N_ELEMENTS (rcpt_state_names))
    return "unknown";
  return rcpt_state_names[state];
}

static void
rcpt_free (gpointer data)
{
  VpsQueueRcpt *r = data;

  g_free (r->address);
  g_free (r->orcpt);
  g_free (r->result);
  g_free (r);
}

VpsEnvelope *
vps_envelope_new (void)
{
  VpsEnvelope *env = g_new0 (VpsEnvelope, 1);

  /* sender stays NULL until the caller sets it (written as "", <>) */
  env->rcpts = g_ptr_array_new_with_free_func (rcpt_free);
  return env;
}

void
vps_envelope_free (VpsEnvelope *env)
{
  if (env == NULL)
    return;
  g_free (env->id);
  g_free (env->sender);
  g_free (env->ret);
  g_free (env->envid);
  g_free (env->body);
  g_free (env->session_id);
  g_free (env->client_ip);
  g_free (env->client_ptr);
  g_free (env->helo);
  g_free (env->auth_user);
  g_free (env->tls);
  g_free (env->route);
  g_ptr_array_unref (env->rcpts);
  if (env->report != NULL)
    json_object_unref (env->report);
  g_free (env);
}

VpsQueueRcpt *
vps_envelope_add_rcpt (VpsEnvelope *env, const char *address, const char *orcpt, guint notify)
{
  VpsQueueRcpt *r;

  g_return_val_if_fail (env != NULL && address != NULL, NULL);
  r = g_new0 (VpsQueueRcpt, 1);
  r->address = g_strdup (address);
  r->orcpt = g_strdup (orcpt);
  r->notify = notify;
  r->state = VPS_RCPT_PENDING;
  g_ptr_array_add (env->rcpts, r);
  return r;
}

gboolean
vps_envelope_done (const VpsEnvelope *env)
{
  for (guint i = 0; i < env->rcpts->len; i++)
    {
      const VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);

      if (r->state != VPS_RCPT_DELIVERED && r->state != VPS_RCPT_FAILED)
        return FALSE;
    }
  return TRUE;
}

/* ---- times ----------------------------------------------------------------- */

char *
vps_envelope_format_time (gint64 usec)
{
  gint64 secs = usec / G_USEC_PER_SEC;
  gint64 frac = usec % G_USEC_PER_SEC;
  g_autoptr (GDateTime) dt = NULL;
  g_autofree char *base = NULL;

  if (frac < 0)
    {
      secs--;
      frac += G_USEC_PER_SEC;
    }
  dt = g_date_time_new_from_unix_utc (secs);
  if (dt == NULL) /* out of GDateTime's range: only from a broken clock */
    return g_strdup ("0001-01-01T00:00:00.000000Z");
  base = g_date_time_format (dt, "%Y-%m-%dT%H:%M:%S");
  return g_strdup_printf ("%s.%06dZ", base, (int)frac);
}

/* Exactly what vps_envelope_format_time() writes, fraction optional: the
 * format is ours, and GDateTime's ISO 8601 parser goes through a double for
 * the seconds, which may lose the last microsecond. */
static gboolean
parse_time (const char *s, gint64 *out)
{
  static const char shape[] = "dddd-dd-ddTdd:dd:dd";
  int f[6] = { 0 };
  int frac = 0, frac_digits = 0;
  gsize i;
  g_autoptr (GDateTime) dt = NULL;

  if (strlen (s) < sizeof shape)
    return FALSE;
  for (i = 0; i < sizeof shape - 1; i++)
    if (shape[i] == 'd' ? !g_ascii_isdigit (s[i]) : s[i] != shape[i])
      return FALSE;
  for (int k = 0, pos = 0; k < 6; k++)
    {
      int width = k == 0 ? 4 : 2;

      for (int d = 0; d < width; d++)
        f[k] = f[k] * 10 + (s[pos + d] - '0');
      pos += width + 1;
    }
  if (s[i] == '.')
    for (i++; g_ascii_isdigit (s[i]); i++)
      {
        if (++frac_digits > 6)
          return FALSE;
        frac = frac * 10 + (s[i] - '0');
      }
  if (strcmp (s + i, "Z") != 0 || (s[sizeof shape - 1] == '.' && frac_digits == 0))
    return FALSE;
  for (; frac_digits < 6 && frac_digits > 0; frac_digits++)
    frac *= 10;
  if (f[5] > 59) /* no leap seconds in our own times */
    return FALSE;
  dt = g_date_time_new_utc (f[0], f[1], f[2], f[3], f[4], f[5]);
  if (dt == NULL)
    return FALSE;
  *out = g_date_time_to_unix (dt) * G_USEC_PER_SEC + frac;
  return TRUE;
}

/* ---- to JSON --------------------------------------------------------------- */

static void
set_string_or_null (JsonObject *o, const char *member, const char *value)
{
  if (value != NULL)
    json_object_set_string_member (o, member, value);
  else
    json_object_set_null_member (o, member);
}

static void
set_time_or_null (JsonObject *o, const char *member, gint64 usec)
{
  g_autofree char *text = usec != 0 ? vps_envelope_format_time (usec) : NULL;

  set_string_or_null (o, member, text);
}

static JsonObject *
rcpt_to_json (const VpsQueueRcpt *r)
{
  JsonObject *o = json_object_new ();
  JsonArray *notify = json_array_new ();

  json_object_set_string_member (o, "address", r->address);
  set_string_or_null (o, "orcpt", r->orcpt);
  for (gsize i = 0; i < G_N_ELEMENTS (notify_names); i++)
    if (r->notify & notify_names[i].bit)
      json_array_add_string_element (notify, notify_names[i].name);
  json_object_set_array_member (o, "notify", notify);
  json_object_set_string_member (o, "state", vps_rcpt_state_name (r->state));
  set_string_or_null (o, "result", r->result);
  set_time_or_null (o, "updated", r->updated);
  return o;
}

JsonObject *
vps_envelope_to_json (const VpsEnvelope *env)
{
  JsonObject *o = json_object_new ();
  JsonObject *client = json_object_new ();
  JsonArray *rcpts = json_array_new ();

  set_string_or_null (o, "id", env->id);
  json_object_set_string_member (o, "sender", env->sender ? env->sender : "");
  set_string_or_null (o, "ret", env->ret);
  set_string_or_null (o, "envid", env->envid);
  set_string_or_null (o, "body", env->body);
  json_object_set_boolean_member (o, "smtputf8", env->smtputf8);
  json_object_set_int_member (o, "size", (gint64)MIN (env->size, (guint64)G_MAXINT64));
  set_time_or_null (o, "received", env->received);
  set_string_or_null (o, "session", env->session_id);
  set_string_or_null (client, "ip", env->client_ip);
  set_string_or_null (client, "ptr", env->client_ptr);
  set_string_or_null (client, "helo", env->helo);
  set_string_or_null (client, "auth_user", env->auth_user);
  set_string_or_null (client, "tls", env->tls);
  json_object_set_object_member (o, "client", client);
  json_object_set_int_member (o, "attempts", env->attempts);
  set_time_or_null (o, "next_attempt", env->next_attempt);
  json_object_set_boolean_member (o, "postq", env->postq);
  set_string_or_null (o, "route", env->route);
  json_object_set_boolean_member (o, "delay_warned", env->delay_warned);
  for (guint i = 0; i < env->rcpts->len; i++)
    json_array_add_object_element (rcpts, rcpt_to_json (g_ptr_array_index (env->rcpts, i)));
  json_object_set_array_member (o, "recipients", rcpts);
  if (env->report != NULL)
    json_object_set_object_member (o, "report", json_object_ref (env->report));
  else
    json_object_set_null_member (o, "report");
  return o;
}

char *
vps_envelope_to_data (const VpsEnvelope *env, gboolean pretty, gsize *length)
{
  g_autoptr (JsonNode) root = json_node_new (JSON_NODE_OBJECT);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autofree char *text = NULL;
  char *data;

  json_node_take_object (root, vps_envelope_to_json (env));
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, pretty);
  text = json_generator_to_data (gen, NULL);
  data = g_strconcat (text, "\n", NULL);
  if (length != NULL)
    *length = strlen (data);
  return data;
}

/* ---- from JSON ------------------------------------------------------------- */

static gboolean corrupt (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
corrupt (GError **error, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT, msg);
  return FALSE;
}

static gboolean
clean_string (const char *s)
{
  for (const guchar *p = (const guchar *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return FALSE;
  return TRUE;
}

/* Members of one object: the known names, so that anything else is refused
 * (a file of another version is not guessed at). */
static gboolean
only_members (JsonObject *o, const char *what, const char *const *known, GError **error)
{
  g_autoptr (GList) members = json_object_get_members (o);

  for (GList *l = members; l != NULL; l = l->next)
    if (!g_strv_contains (known, l->data))
      return corrupt (error, "%s: unknown member \"%s\"", what, (const char *)l->data);
  return TRUE;
}

/* An optional string: absent or null → NULL; a string without control
 * characters → a copy; anything else refused. */
static gboolean
get_string (JsonObject *o, const char *what, const char *member, gboolean required, char **out,
            GError **error)
{
  JsonNode *n = json_object_get_member (o, member);
  const char *s;

  *out = NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    {
      if (required)
        return corrupt (error, "%s: \"%s\" missing", what, member);
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return corrupt (error, "%s: \"%s\" is not a string", what, member);
  s = json_node_get_string (n);
  if (!clean_string (s))
    return corrupt (error, "%s: \"%s\" has a control character", what, member);
  *out = g_strdup (s);
  return TRUE;
}

static gboolean
get_int (JsonObject *o, const char *what, const char *member, gint64 max, gint64 *out,
         GError **error)
{
  JsonNode *n = json_object_get_member (o, member);

  *out = 0;
  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return corrupt (error, "%s: \"%s\" is not an integer", what, member);
  *out = json_node_get_int (n);
  if (*out < 0 || *out > max)
    return corrupt (error, "%s: \"%s\" out of range", what, member);
  return TRUE;
}

static gboolean
get_time (JsonObject *o, const char *what, const char *member, gint64 *out, GError **error)
{
  g_autofree char *text = NULL;

  *out = 0;
  if (!get_string (o, what, member, FALSE, &text, error))
    return FALSE;
  if (text != NULL && !parse_time (text, out))
    return corrupt (error, "%s: \"%s\" is not a time like 2026-11-28T21:40:00.123456Z", what,
                    member);
  return TRUE;
}

static gboolean
get_name (JsonObject *o, const char *what, const char *member, const char *const *names, char **out,
          GError **error)
{
  if (!get_string (o, what, member, FALSE, out, error))
    return FALSE;
  if (*out != NULL && !g_strv_contains (names, *out))
    {
      g_clear_pointer (out, g_free);
      return corrupt (error, "%s: unknown \"%s\" value", what, member);
    }
  return TRUE;
}

static gboolean
get_notify (JsonObject *o, const char *what, guint *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, "notify");
  JsonArray *a;

  *out = 0;
  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return corrupt (error, "%s: \"notify\" is not an array", what);
  a = json_node_get_array (n);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      guint bit = 0;

      if (JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING)
        for (gsize k = 0; k < G_N_ELEMENTS (notify_names); k++)
          if (strcmp (json_node_get_string (e), notify_names[k].name) == 0)
            bit = notify_names[k].bit;
      if (bit == 0)
        return corrupt (error, "%s: unknown \"notify\" value", what);
      *out |= bit;
    }
  /* RFC 3461 §4.1: NEVER stands alone */
  if ((*out & SMTP_NOTIFY_NEVER) && *out != SMTP_NOTIFY_NEVER)
    return corrupt (error, "%s: \"notify\" has never with another value", what);
  return TRUE;
}

static gboolean
rcpt_from_json (JsonNode *n, guint index, VpsEnvelope *env, GError **error)
{
  static const char *const known[]
      = { "address", "orcpt", "notify", "state", "result", "updated", NULL };
  g_autofree char *what = g_strdup_printf ("recipient %u", index + 1);
  g_autofree char *state = NULL;
  VpsQueueRcpt *r;
  JsonObject *o;
  gsize k;

  if (!JSON_NODE_HOLDS_OBJECT (n))
    return corrupt (error, "%s is not an object", what);
  o = json_node_get_object (n);
  if (!only_members (o, what, known, error))
    return FALSE;
  r = g_new0 (VpsQueueRcpt, 1);
  g_ptr_array_add (env->rcpts, r); /* freed with env on any error below */
  if (!get_string (o, what, "address", TRUE, &r->address, error)
      || !get_string (o, what, "orcpt", FALSE, &r->orcpt, error)
      || !get_notify (o, what, &r->notify, error)
      || !get_string (o, what, "state", FALSE, &state, error)
      || !get_string (o, what, "result", FALSE, &r->result, error)
      || !get_time (o, what, "updated", &r->updated, error))
    return FALSE;
  if (r->address[0] == '\0')
    return corrupt (error, "%s: empty address", what);
  for (k = 0; state != NULL && k < G_N_ELEMENTS (rcpt_state_names); k++)
    if (strcmp (state, rcpt_state_names[k]) == 0)
      break;
  if (k == G_N_ELEMENTS (rcpt_state_names))
    return corrupt (error, "%s: unknown \"state\" value", what);
  r->state = state != NULL ? (VpsRcptState)k : VPS_RCPT_PENDING;
  return TRUE;
}

static gboolean
client_from_json (JsonObject *o, VpsEnvelope *env, GError **error)
{
  static const char *const known[] = { "ip", "ptr", "helo", "auth_user", "tls", NULL };
  JsonNode *n = json_object_get_member (o, "client");
  JsonObject *c;

  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return corrupt (error, "envelope: \"client\" is not an object");
  c = json_node_get_object (n);
  return only_members (c, "client", known, error)
         && get_string (c, "client", "ip", FALSE, &env->client_ip, error)
         && get_string (c, "client", "ptr", FALSE, &env->client_ptr, error)
         && get_string (c, "client", "helo", FALSE, &env->helo, error)
         && get_string (c, "client", "auth_user", FALSE, &env->auth_user, error)
         && get_string (c, "client", "tls", FALSE, &env->tls, error);
}

static gboolean
envelope_fill (JsonObject *o, VpsEnvelope *env, GError **error)
{
  static const char *const known[]
      = { "id",    "sender",   "ret",          "envid",      "body",     "smtputf8",
          "size",  "received", "session",      "client",     "attempts", "next_attempt",
          "postq", "route",    "delay_warned", "recipients", "report",   NULL };
  const char *what = "envelope";
  JsonNode *n;
  JsonArray *rcpts;
  gint64 size, attempts;

  if (!only_members (o, what, known, error) || !get_string (o, what, "id", TRUE, &env->id, error))
    return FALSE;
  if (!vps_queue_valid_id (env->id))
    return corrupt (error, "envelope: \"id\" is not a queue id");
  g_clear_pointer (&env->sender, g_free);
  /* "" is the null sender; absent (or null) is not the same thing */
  if (!get_string (o, what, "sender", TRUE, &env->sender, error)
      || !get_name (o, what, "ret", ret_names, &env->ret, error)
      || !get_string (o, what, "envid", FALSE, &env->envid, error)
      || !get_name (o, what, "body", body_names, &env->body, error)
      || !get_int (o, what, "size", G_MAXINT64, &size, error)
      || !get_time (o, what, "received", &env->received, error)
      || !get_string (o, what, "session", FALSE, &env->session_id, error)
      || !client_from_json (o, env, error)
      || !get_int (o, what, "attempts", G_MAXUINT, &attempts, error)
      || !get_time (o, what, "next_attempt", &env->next_attempt, error)
      || !get_string (o, what, "route", FALSE, &env->route, error))
    return FALSE;
  env->size = (guint64)size;
  env->attempts = (guint)attempts;

  n = json_object_get_member (o, "smtputf8");
  if (n != NULL && !JSON_NODE_HOLDS_NULL (n))
    {
      if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
        return corrupt (error, "envelope: \"smtputf8\" is not a boolean");
      env->smtputf8 = json_node_get_boolean (n);
    }
  /* absent in envelopes written before the postq stage: not run yet */
  n = json_object_get_member (o, "postq");
  if (n != NULL && !JSON_NODE_HOLDS_NULL (n))
    {
      if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
        return corrupt (error, "envelope: \"postq\" is not a boolean");
      env->postq = json_node_get_boolean (n);
    }
  n = json_object_get_member (o, "delay_warned");
  if (n != NULL && !JSON_NODE_HOLDS_NULL (n))
    {
      if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
        return corrupt (error, "envelope: \"delay_warned\" is not a boolean");
      env->delay_warned = json_node_get_boolean (n);
    }

  n = json_object_get_member (o, "recipients");
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    return corrupt (error, "envelope: \"recipients\" missing or not an array");
  rcpts = json_node_get_array (n);
  if (json_array_get_length (rcpts) == 0)
    return corrupt (error, "envelope: no recipient");
  for (guint i = 0; i < json_array_get_length (rcpts); i++)
    if (!rcpt_from_json (json_array_get_element (rcpts, i), i, env, error))
      return FALSE;

  n = json_object_get_member (o, "report");
  if (n != NULL && !JSON_NODE_HOLDS_NULL (n))
    {
      if (!JSON_NODE_HOLDS_OBJECT (n))
        return corrupt (error, "envelope: \"report\" is not an object");
      env->report = json_object_ref (json_node_get_object (n));
    }
  return TRUE;
}

VpsEnvelope *
vps_envelope_from_json (JsonObject *object, GError **error)
{
  g_autoptr (VpsEnvelope) env = vps_envelope_new ();

  g_return_val_if_fail (object != NULL, NULL);
  if (!envelope_fill (object, env, error))
    return NULL;
  return g_steal_pointer (&env);
}

/* ---- checking an envelope in memory ----------------------------------------- */

/* The rules of envelope_fill() applied to the struct itself: what the
 * reader would refuse is refused before it is written (a commit checks
 * every envelope this way, which costs a few string scans where writing
 * and parsing it back cost a JSON parse per message). */
static gboolean
check_optional (const char *s, const char *what, const char *member, GError **error)
{
  if (s != NULL && !clean_string (s))
    return corrupt (error, "%s: \"%s\" has a control character", what, member);
  return TRUE;
}

gboolean
vps_envelope_check (const VpsEnvelope *env, GError **error)
{
  const char *what = "envelope";

  if (env->id == NULL || !vps_queue_valid_id (env->id))
    return corrupt (error, "envelope: \"id\" is not a queue id");
  /* a NULL sender is written as "" (the null reverse path) */
  if (!check_optional (env->sender, what, "sender", error)
      || !check_optional (env->envid, what, "envid", error)
      || !check_optional (env->session_id, what, "session", error)
      || !check_optional (env->client_ip, "client", "ip", error)
      || !check_optional (env->client_ptr, "client", "ptr", error)
      || !check_optional (env->helo, "client", "helo", error)
      || !check_optional (env->auth_user, "client", "auth_user", error)
      || !check_optional (env->tls, "client", "tls", error)
      || !check_optional (env->route, what, "route", error))
    return FALSE;
  if (env->ret != NULL && !g_strv_contains (ret_names, env->ret))
    return corrupt (error, "envelope: unknown \"ret\" value");
  if (env->body != NULL && !g_strv_contains (body_names, env->body))
    return corrupt (error, "envelope: unknown \"body\" value");
  /* "postq" (and "smtputf8") are booleans: any value is written as one, nothing to refuse */
  if (env->size > G_MAXINT64 || env->received < 0 || env->next_attempt < 0)
    return corrupt (error, "envelope: a number out of range");
  if (env->rcpts == NULL || env->rcpts->len == 0)
    return corrupt (error, "envelope: no recipient");
  for (guint i = 0; i < env->rcpts->len; i++)
    {
      const VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);
      g_autofree char *rwhat = g_strdup_printf ("recipient %u", i + 1);

      if (r->address == NULL || r->address[0] == '\0')
        return corrupt (error, "%s: empty address", rwhat);
      if (!check_optional (r->address, rwhat, "address", error)
          || !check_optional (r->orcpt, rwhat, "orcpt", error)
          || !check_optional (r->result, rwhat, "result", error))
        return FALSE;
      if ((guint)r->state >= G_N_ELEMENTS (rcpt_state_names) || r->updated < 0)
        return corrupt (error, "%s: unknown \"state\" value", rwhat);
      if ((r->notify & SMTP_NOTIFY_NEVER) && r->notify != SMTP_NOTIFY_NEVER)
        return corrupt (error, "%s: \"notify\" has never with another value", rwhat);
      if (r->notify
          & ~(guint)(SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE
                     | SMTP_NOTIFY_DELAY))
        return corrupt (error, "%s: unknown \"notify\" value", rwhat);
    }
  return TRUE;
}

/* ---- from bytes ------------------------------------------------------------ */

/* One object, then only white space; no NUL, raw or escaped.  json-glib
 * would read on past the object and take a second value as the root
 * (leaking the first), and cut a string at "\u0000" without a word, so
 * the text is scanned first and only the object handed over.  Strings are
 * the double-quoted ones of JSON: text that uses json-glib's leniencies
 * (single quotes, comments) may be refused here, never misread. */
static gboolean
scan_text (const char *data, gsize length, gsize *end, GError **error)
{
  gboolean in_string = FALSE;
  int depth = 0;
  gsize i = 0;

  if (length > VPS_QUEUE_MAX_ENVELOPE)
    return corrupt (error, "envelope larger than %d bytes", VPS_QUEUE_MAX_ENVELOPE);
  if (memchr (data, '\0', length) != NULL)
    return corrupt (error, "envelope has a NUL");
  while (i < length && g_ascii_isspace (data[i]))
    i++;
  if (i == length || data[i] != '{')
    return corrupt (error, "envelope is not a JSON object");
  for (; i < length; i++)
    {
      char c = data[i];

      if (in_string && c == '\\')
        {
          if (i + 5 < length && data[i + 1] == 'u' && memcmp (data + i + 2, "0000", 4) == 0)
            return corrupt (error, "envelope has a NUL");
          i++; /* the escaped character cannot end the string */
        }
      else if (c == '"')
        in_string = !in_string;
      else if (!in_string && (c == '{' || c == '['))
        depth++;
      else if (!in_string && (c == '}' || c == ']') && --depth == 0)
        break;
    }
  if (i >= length)
    return corrupt (error, "envelope: truncated");
  *end = i + 1;
  for (i++; i < length; i++)
    if (!g_ascii_isspace (data[i]))
      return corrupt (error, "envelope: text after the object");
  return TRUE;
}

/* A member whose addition leaves its object's size as it was replaced an
 * earlier one of the same name (json-glib keeps the last). */
static void
check_member (JsonParser *parser, JsonObject *object, const char *name, gpointer data)
{
  GHashTable *sizes = data;
  guint seen = GPOINTER_TO_UINT (g_hash_table_lookup (sizes, object)) + 1;

  if (json_object_get_size (object) != seen)
    g_hash_table_insert (sizes, NULL, GUINT_TO_POINTER (1)); /* NULL key: a duplicate */
  g_hash_table_insert (sizes, object, GUINT_TO_POINTER (seen));
}

JsonNode *
vps_envelope_parse_data (const char *data, gsize length, GError **error)
{
  g_autoptr (JsonParser) parser = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GHashTable) sizes = NULL;
  JsonNode *root;
  gsize end = 0;

  if (!scan_text (data, length, &end, error))
    return NULL;
  parser = json_parser_new ();
  sizes = g_hash_table_new (NULL, NULL);
  g_signal_connect (parser, "object-member", G_CALLBACK (check_member), sizes);
  if (!json_parser_load_from_data (parser, data, (gssize)end, &local_error))
    {
      corrupt (error, "envelope: %s", local_error->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      corrupt (error, "envelope is not a JSON object");
      return NULL;
    }
  if (g_hash_table_contains (sizes, NULL))
    {
      corrupt (error, "envelope: a member appears twice");
      return NULL;
    }
  return json_node_ref (root);
}

VpsEnvelope *
vps_envelope_from_data (const char *data, gsize length, GError **error)
{
  g_autoptr (JsonNode) root = vps_envelope_parse_data (data, length, error);

  if (root == NULL)
    return NULL;
  return vps_envelope_from_json (json_node_get_object (root), error);
}

VpsEnvelope *
vps_envelope_from_file_data (const char *id, GBytes *data, GError **error)
{
  g_autoptr (VpsEnvelope) env
      = vps_envelope_from_data (g_bytes_get_data (data, NULL), g_bytes_get_size (data), error);

  if (env == NULL)
    {
      g_prefix_error (error, "%s: ", id);
      return NULL;
    }
  if (strcmp (env->id, id) != 0)
    {
      g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT, "%s: envelope of %s", id,
                   env->id);
      return NULL;
    }
  return g_steal_pointer (&env);
}
