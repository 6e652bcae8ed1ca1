/* SPDX-License-Identifier: MIT
 *
 * conn-test.c — connector type `test`: a scripted peer.  It answers every
 * call from its configuration, so rule files and the engine can be tested
 * without any real service.
 *
 * Keys of [connector NAME] with type = test (all optional):
 *   verdict   continue|accept|accept_all|reject|tempfail|discard|quarantine
 *             (default continue)
 *   code      reply code, e.g. 550 (default: none, the engine's default)
 *   enhanced  enhanced status code, e.g. 5.7.1
 *   text      reply text
 *   quarantine  quarantine name for verdict = quarantine (default: NAME)
 *   delay     answer after this long (duration: 250ms, 2s) — timeouts
 *   fail      true: the call fails (the engine applies on_error)
 *   fields    "name=value; name2=value2": result fields read as NAME.name;
 *             true/false → bool, integers → int, decimals → float,
 *             [a,b,c] → list of strings, anything else → string
 *   match     a regex (PCRE): verdict and fields apply only when the raw
 *             message (data and later) or the envelope text (earlier
 *             stages: "client=IP\nhelo=H\nfrom=S\nrcpt=R\n") matches;
 *             otherwise the answer is continue with `fields_nomatch`
 *   fields_nomatch  fields when `match` did not match
 *   add_header  "Name: value": an add_header modification it returns (on a
 *             match)
 * Every answer also sets the field `calls` (int): how many calls this
 * connector instance has answered, including this one.
 */
#include "connectors/test/conn-test.h"

#include <string.h>

#define CONN_TEST_MAX_FIELDS 64
#define CONN_TEST_MAX_FIELD_SPEC 4096

typedef struct
{
  char *name;
  VpsFieldValue value;
} Field;

typedef struct
{
  char *name;
  RulesVerdict verdict;
  guint code;
  char *enhanced, *text, *quarantine;
  gint64 delay_ms;
  gboolean fail;
  GRegex *match;
  GArray *fields;         /* Field */
  GArray *fields_nomatch; /* Field */
  char *hdr_name, *hdr_value;
  gint calls; /* atomic */
} ConnTest;

static void
field_clear (gpointer data)
{
  Field *f = data;
  g_free (f->name);
  if (f->value.type == VPS_FIELD_STRING)
    g_free (f->value.s);
  else if (f->value.type == VPS_FIELD_STRV)
    g_strfreev (f->value.strv);
}

static void
conn_test_free (gpointer data)
{
  ConnTest *t = data;

  g_free (t->name);
  g_free (t->enhanced);
  g_free (t->text);
  g_free (t->quarantine);
  g_clear_pointer (&t->match, g_regex_unref);
  g_array_unref (t->fields);
  g_array_unref (t->fields_nomatch);
  g_free (t->hdr_name);
  g_free (t->hdr_value);
  g_free (t);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnTest, conn_test_free)

static void
parse_value (const char *s, VpsFieldValue *v)
{
  gint64 i;
  char *end = NULL;
  double f;
  gsize len = strlen (s);

  if (strcmp (s, "true") == 0 || strcmp (s, "false") == 0)
    {
      v->type = VPS_FIELD_BOOL;
      v->b = s[0] == 't';
    }
  else if (g_ascii_string_to_signed (s, 10, G_MININT64, G_MAXINT64, &i, NULL))
    {
      v->type = VPS_FIELD_INT;
      v->i = i;
    }
  else if (len > 0 && (f = g_ascii_strtod (s, &end), end != NULL && *end == '\0')
           && strchr (s, '.') != NULL)
    {
      v->type = VPS_FIELD_FLOAT;
      v->f = f;
    }
  else if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
    {
      g_autofree char *inner = g_strndup (s + 1, len - 2);
      g_auto (GStrv) parts = g_strsplit (inner, ",", -1);
      GPtrArray *out = g_ptr_array_new ();

      for (guint k = 0; parts[k] != NULL; k++)
        {
          char *p = g_strstrip (parts[k]);
          if (*p != '\0')
            g_ptr_array_add (out, g_strdup (p));
        }
      g_ptr_array_add (out, NULL);
      v->type = VPS_FIELD_STRV;
      v->strv = (char **)g_ptr_array_free (out, FALSE);
    }
  else
    {
      v->type = VPS_FIELD_STRING;
      v->s = g_strdup (s);
    }
}

/* "a=1; b=x" → fields; FALSE with a message for a malformed spec */
static gboolean
parse_fields (const char *spec, GArray *out, char **why)
{
  g_auto (GStrv) items = NULL;

  if (spec == NULL)
    return TRUE;
  if (strlen (spec) > CONN_TEST_MAX_FIELD_SPEC)
    {
      *why = g_strdup ("too long");
      return FALSE;
    }
  items = g_strsplit (spec, ";", -1);
  for (guint k = 0; items[k] != NULL; k++)
    {
      char *item = g_strstrip (items[k]);
      char *eq;
      Field f = { 0 };

      if (*item == '\0')
        continue;
      eq = strchr (item, '=');
      if (eq == NULL || eq == item)
        {
          *why = g_strdup_printf ("'%s' is not name=value", item);
          return FALSE;
        }
      if (out->len >= CONN_TEST_MAX_FIELDS)
        {
          *why = g_strdup_printf ("more than %d fields", CONN_TEST_MAX_FIELDS);
          return FALSE;
        }
      *eq = '\0';
      f.name = g_strdup (g_strstrip (item));
      parse_value (g_strstrip (eq + 1), &f.value);
      g_array_append_val (out, f);
    }
  return TRUE;
}

static gpointer
conn_test_create (const char *name, VpsConfig *cfg, const char *group, GError **error)
{
  g_autoptr (GArray) fields = g_array_new (FALSE, TRUE, sizeof (Field));
  g_autoptr (GArray) nomatch = g_array_new (FALSE, TRUE, sizeof (Field));
  const char *s;
  g_autofree char *why = NULL;
  g_autoptr (ConnTest) t = NULL;

  g_array_set_clear_func (fields, field_clear);
  g_array_set_clear_func (nomatch, field_clear);
  t = g_new0 (ConnTest, 1);
  t->name = g_strdup (name);
  t->fields = g_steal_pointer (&fields);
  t->fields_nomatch = g_steal_pointer (&nomatch);

  if ((s = vps_config_get_raw (cfg, group, "verdict")) && !rules_verdict_from_name (s, &t->verdict))
    {
      vps_config_error_at (cfg, group, "verdict", error, "unknown verdict '%s'", s);
      return NULL;
    }
  if ((s = vps_config_get_raw (cfg, group, "code")))
    {
      guint64 code;
      if (!g_ascii_string_to_unsigned (s, 10, 200, 599, &code, NULL))
        {
          vps_config_error_at (cfg, group, "code", error, "'%s' is not a reply code 200..599", s);
          return NULL;
        }
      t->code = (guint)code;
    }
  t->enhanced = g_strdup (vps_config_get_raw (cfg, group, "enhanced"));
  t->text = g_strdup (vps_config_get_raw (cfg, group, "text"));
  t->quarantine = g_strdup (vps_config_get_raw (cfg, group, "quarantine"));
  if ((s = vps_config_get_raw (cfg, group, "delay"))
      && !vps_config_parse_duration_ms (s, &t->delay_ms))
    {
      vps_config_error_at (cfg, group, "delay", error, "'%s' is not a duration", s);
      return NULL;
    }
  if ((s = vps_config_get_raw (cfg, group, "fail")))
    {
      if (g_ascii_strcasecmp (s, "true") == 0 || g_ascii_strcasecmp (s, "yes") == 0)
        t->fail = TRUE;
      else if (g_ascii_strcasecmp (s, "false") != 0 && g_ascii_strcasecmp (s, "no") != 0)
        {
          vps_config_error_at (cfg, group, "fail", error, "'%s' is not a boolean", s);
          return NULL;
        }
    }
  if ((s = vps_config_get_raw (cfg, group, "match")))
    {
      g_autoptr (GError) re_error = NULL;
      t->match = g_regex_new (s, G_REGEX_MULTILINE, 0, &re_error);
      if (t->match == NULL)
        {
          vps_config_error_at (cfg, group, "match", error, "bad regex: %s", re_error->message);
          return NULL;
        }
    }
  if (!parse_fields (vps_config_get_raw (cfg, group, "fields"), t->fields, &why))
    {
      vps_config_error_at (cfg, group, "fields", error, "%s", why);
      return NULL;
    }
  if (!parse_fields (vps_config_get_raw (cfg, group, "fields_nomatch"), t->fields_nomatch, &why))
    {
      vps_config_error_at (cfg, group, "fields_nomatch", error, "%s", why);
      return NULL;
    }
  if ((s = vps_config_get_raw (cfg, group, "add_header")))
    {
      const char *colon = strchr (s, ':');
      g_autofree char *hname = colon ? g_strstrip (g_strndup (s, (gsize)(colon - s))) : NULL;
      g_autofree char *hvalue = colon ? g_strstrip (g_strdup (colon + 1)) : NULL;

      if (colon == NULL || !vps_modification_validate (VPS_MOD_ADD_HEADER, hname, hvalue, NULL))
        {
          vps_config_error_at (cfg, group, "add_header", error, "not \"Name: value\"");
          return NULL;
        }
      t->hdr_name = g_steal_pointer (&hname);
      t->hdr_value = g_steal_pointer (&hvalue);
    }
  return g_steal_pointer (&t);
}

char *
conn_test_envelope_text (VpsTxn *txn)
{
  VpsSession *s = vps_txn_get_session (txn);
  const char *helo = vps_session_get_helo (s);
  const char *from = vps_txn_get_sender (txn);
  const char *rcpt = vps_txn_get_rcpt (txn);

  return g_strdup_printf ("client=%s\nhelo=%s\nfrom=%s\nrcpt=%s\n", vps_session_get_client_ip (s),
                          helo ? helo : "", from ? from : "", rcpt ? rcpt : "");
}

static void
add_fields (VpsConnectorResult *r, GArray *fields)
{
  for (guint i = 0; i < fields->len; i++)
    {
      const Field *f = &g_array_index (fields, Field, i);
      switch (f->value.type)
        {
          case VPS_FIELD_BOOL:
            vps_connector_result_set_bool (r, f->name, f->value.b);
            break;
          case VPS_FIELD_INT:
            vps_connector_result_set_int (r, f->name, f->value.i);
            break;
          case VPS_FIELD_FLOAT:
            vps_connector_result_set_float (r, f->name, f->value.f);
            break;
          case VPS_FIELD_STRV:
            vps_connector_result_set_strv (r, f->name, (const char *const *)f->value.strv);
            break;
          case VPS_FIELD_STRING:
          case VPS_FIELD_JSON:
          default:
            vps_connector_result_set_string (r, f->name, f->value.s);
            break;
        }
    }
}

static gboolean
matches (ConnTest *t, VpsTxn *txn)
{
  VpsMessage *m = vps_txn_get_message (txn);

  if (t->match == NULL)
    return TRUE;
  if (m != NULL)
    {
      gsize len = 0;
      const char *raw = g_bytes_get_data (vps_message_get_raw (m), &len);
      return g_regex_match_full (t->match, raw ? raw : "", (gssize)len, 0, 0, NULL, NULL);
    }
  {
    g_autofree char *env = conn_test_envelope_text (txn);
    return g_regex_match (t->match, env, 0, NULL);
  }
}

static VpsConnectorResult *
answer (ConnTest *t, VpsTxn *txn, GError **error)
{
  VpsConnectorResult *r;
  gint calls = g_atomic_int_add (&t->calls, 1) + 1;

  if (t->fail)
    {
      g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                   "test connector %s: configured to fail", t->name);
      return NULL;
    }
  if (!matches (t, txn))
    {
      r = vps_connector_result_new (RULES_VERDICT_CONTINUE);
      add_fields (r, t->fields_nomatch);
    }
  else
    {
      r = vps_connector_result_new (t->verdict);
      if (t->code != 0 || t->text != NULL)
        vps_connector_result_set_reply (r, t->code, t->enhanced, t->text);
      if (t->verdict == RULES_VERDICT_QUARANTINE)
        r->quarantine = g_strdup (t->quarantine ? t->quarantine : t->name);
      add_fields (r, t->fields);
      if (t->hdr_name != NULL)
        vps_connector_result_add_modification (
            r, vps_modification_new (VPS_MOD_ADD_HEADER, t->hdr_name, t->hdr_value, 0, NULL));
    }
  vps_connector_result_set_int (r, "calls", calls);
  return r;
}

typedef struct
{
  GTask *task;
  GSource *timer;
  GSource *cancel;
} Pending;

static void
pending_finish (Pending *p, gboolean cancelled)
{
  ConnTest *t = g_task_get_task_data (p->task);
  VpsTxn *txn = g_object_get_data (G_OBJECT (p->task), "txn");
  GError *error = NULL;
  VpsConnectorResult *r;

  g_source_destroy (p->timer);
  g_source_unref (p->timer);
  if (p->cancel != NULL)
    {
      g_source_destroy (p->cancel);
      g_source_unref (p->cancel);
    }
  if (cancelled)
    g_task_return_new_error (p->task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
  else if ((r = answer (t, txn, &error)) != NULL)
    g_task_return_pointer (p->task, r, (GDestroyNotify)vps_connector_result_unref);
  else
    g_task_return_error (p->task, error);
  g_object_unref (p->task);
  g_free (p);
}

static gboolean
timer_cb (gpointer data)
{
  pending_finish (data, FALSE);
  return G_SOURCE_REMOVE;
}

static gboolean
cancel_cb (GCancellable *cancellable, gpointer data)
{
  pending_finish (data, TRUE);
  return G_SOURCE_REMOVE;
}

static void
conn_test_call_async (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                      GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  ConnTest *t = vps_connector_get_data (connector);
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Pending *p;

  g_task_set_source_tag (task, conn_test_call_async);
  g_task_set_task_data (task, t, NULL);
  g_object_set_data_full (G_OBJECT (task), "txn", vps_txn_ref (txn), (GDestroyNotify)vps_txn_unref);
  p = g_new0 (Pending, 1);
  p->task = task;
  /* even without delay answer from the loop, as a real peer would */
  p->timer = g_timeout_source_new ((guint)MIN (t->delay_ms, G_MAXUINT));
  g_source_set_callback (p->timer, timer_cb, p, NULL);
  g_source_attach (p->timer, g_main_context_get_thread_default ());
  if (cancellable != NULL)
    {
      p->cancel = g_cancellable_source_new (cancellable);
      g_source_set_callback (p->cancel, G_SOURCE_FUNC (cancel_cb), p, NULL);
      g_source_attach (p->cancel, g_main_context_get_thread_default ());
    }
}

static VpsConnectorResult *
conn_test_call_finish (VpsConnector *connector, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const char *const conn_test_keys[] = {
  "verdict", "code",   "enhanced", "text",           "quarantine", "delay",
  "fail",    "fields", "match",    "fields_nomatch", "add_header", NULL,
};

const VpsConnectorClass conn_test_class = {
  .type = "test",
  .fields = NULL,
  .n_fields = 0,
  .any_field = TRUE,
  .config_keys = conn_test_keys,
  .create = conn_test_create,
  .call_async = conn_test_call_async,
  .call_finish = conn_test_call_finish,
  .free = conn_test_free,
};
