/* SPDX-License-Identifier: MIT
 *
 * rules-test-util.c — the fake engine shared by the rules tests (see
 * rules-test-util.h).
 */
#include "rules-test-util.h"

#include <string.h>

static const RulesFieldDecl clamav_fields[] = {
  { "infected", RULES_TYPE_BOOL, FALSE },
  { "name", RULES_TYPE_STRING, FALSE },
};
static const RulesFieldDecl rspamd_fields[] = {
  { "score", RULES_TYPE_FLOAT, FALSE },
  { "action", RULES_TYPE_STRING, FALSE },
  { "symbols", RULES_TYPE_STRV, FALSE },
};
static const RulesFieldDecl http_fields[] = {
  { "status", RULES_TYPE_INT, FALSE },
  { "json", RULES_TYPE_NONE, TRUE },
};
static const RulesConnectorDecl connectors[] = {
  { "clamav", clamav_fields, G_N_ELEMENTS (clamav_fields), FALSE },
  { "rspamd", rspamd_fields, G_N_ELEMENTS (rspamd_fields), FALSE },
  { "spf", NULL, 0, FALSE },
  { "greylist", NULL, 0, FALSE },
  { "http", http_fields, G_N_ELEMENTS (http_fields), FALSE },
  { "anything", NULL, 0, TRUE },
};
static const char *const quarantines[] = { "virus", "spam", NULL };
static const char *const exports[] = { "archive", NULL };

const RulesLoadOptions test_options = {
  connectors,
  G_N_ELEMENTS (connectors),
  quarantines,
  exports,
};
const RulesLoadOptions test_options_unchecked = {
  connectors,
  G_N_ELEMENTS (connectors),
  NULL,
  NULL,
};

static char *
key_for (const RulesRef *ref, const char *arg)
{
  if (ref->var == RULES_VAR_CONNECTOR)
    return g_strdup_printf ("%s.%s%s%s", ref->connector, ref->field, arg ? ":" : "",
                            arg ? arg : "");
  return g_strdup_printf ("%d%s%s", (int)ref->var, arg ? ":" : "", arg ? arg : "");
}

static void
fake_get (gpointer host, const RulesRef *ref, const char *arg, RulesValue *out)
{
  FakeHost *h = host;
  g_autofree char *k = key_for (ref, arg);
  const RulesValue *v = g_hash_table_lookup (h->vars, k);
  if (v)
    *out = *v;
}

static gboolean
fake_query (gpointer host, RulesQuery q, const char *name, RulesValue *out)
{
  FakeHost *h = host;
  gpointer val;
  g_ptr_array_add (h->queries,
                   g_strdup_printf ("%s %s", q == RULES_QUERY_DNSBL ? "dnsbl" : "resolves", name));
  if (g_hash_table_lookup_extended (h->answers, name, NULL, &val))
    {
      rules_value_set_bool (out, GPOINTER_TO_INT (val));
      return TRUE;
    }
  g_hash_table_add (h->pending, g_strdup (name));
  return FALSE;
}

static const char *const effect_names[] = {
  "add_header", "insert_header",   "set_header",   "remove_header", "set_sender",
  "add_rcpt",   "remove_rcpt",     "replace_body", "log",           "export_json",
  "export_raw", "deliver_maildir", "deliver_mbox", "deliver_relay", "deliver_mx",
};

static void
fake_effect (gpointer host, const RulesEffect *e)
{
  FakeHost *h = host;
  g_assert_nonnull (e->rule);
  if (e->value)
    g_assert_cmpuint (strlen (e->value), ==, e->value_len);
  g_ptr_array_add (h->effects, g_strdup_printf ("%s %s=%s", effect_names[e->kind],
                                                e->name ? e->name : "", e->value ? e->value : ""));
}

static void
fake_matched (gpointer host, const char *rule)
{
  FakeHost *h = host;
  g_ptr_array_add (h->matched, g_strdup (rule));
}

/* Counts each evaluation: a re-evaluation after a WAIT must come back to
 * the same site and key, and is answered from state_answers. */
static gboolean
fake_state (gpointer host, const RulesStateCall *c, RulesValue *out)
{
  FakeHost *h = host;
  g_autofree char *ck = g_strdup_printf ("%p:%d:%s", c->site, (int)c->kind, c->key ? c->key : "");
  gpointer ans;
  gint64 n = 0, answer;

  if (g_hash_table_lookup_extended (h->state_answers, ck, NULL, &ans))
    answer = GPOINTER_TO_INT (ans);
  else if (g_hash_table_contains (h->state_held, ck))
    return FALSE;
  else
    {
      if (c->key)
        {
          g_assert_cmpuint (strlen (c->key), ==, c->key_len);
          n = GPOINTER_TO_INT (g_hash_table_lookup (h->counts, c->key)) + 1;
          g_hash_table_insert (h->counts, g_strdup (c->key), GINT_TO_POINTER ((int)n));
        }
      switch (c->kind)
        {
          case RULES_STATE_RATE:
            g_ptr_array_add (h->state_calls,
                             g_strdup_printf ("rate %s %" G_GINT64_FORMAT " %" G_GINT64_FORMAT,
                                              c->key, c->limit, c->period));
            answer = n <= c->limit;
            break;
          case RULES_STATE_CONCURRENCY:
            g_ptr_array_add (h->state_calls, g_strdup_printf ("concurrency %s", c->key));
            answer = n;
            break;
          default:
            g_ptr_array_add (h->state_calls, g_strdup ("greylisted"));
            answer = h->grey_defer;
            break;
        }
      if (h->state_async)
        {
          g_hash_table_insert (h->state_held, g_steal_pointer (&ck), GINT_TO_POINTER ((int)answer));
          return FALSE;
        }
      g_hash_table_insert (h->state_answers, g_strdup (ck), GINT_TO_POINTER ((int)answer));
    }
  if (c->kind == RULES_STATE_CONCURRENCY)
    rules_value_set_int (out, answer);
  else
    rules_value_set_bool (out, answer != 0);
  return TRUE;
}

gint64
fake_state_count (FakeHost *h, const char *key)
{
  return GPOINTER_TO_INT (g_hash_table_lookup (h->counts, key));
}

const RulesHostVTable fake_vtable = { fake_get, fake_query, fake_effect, fake_matched, fake_state };

FakeHost *
fake_host_new (void)
{
  FakeHost *h = g_new0 (FakeHost, 1);
  h->vars = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  h->answers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  h->pending = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  h->queries = g_ptr_array_new_with_free_func (g_free);
  h->effects = g_ptr_array_new_with_free_func (g_free);
  h->matched = g_ptr_array_new_with_free_func (g_free);
  h->strings = g_ptr_array_new_with_free_func (g_free);
  h->counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  h->state_answers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  h->state_held = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  h->state_calls = g_ptr_array_new_with_free_func (g_free);
  return h;
}

void
fake_host_free (FakeHost *h)
{
  g_hash_table_unref (h->vars);
  g_hash_table_unref (h->answers);
  g_hash_table_unref (h->pending);
  g_ptr_array_unref (h->queries);
  g_ptr_array_unref (h->effects);
  g_ptr_array_unref (h->matched);
  g_ptr_array_unref (h->strings);
  g_hash_table_unref (h->counts);
  g_hash_table_unref (h->state_answers);
  g_hash_table_unref (h->state_held);
  g_ptr_array_unref (h->state_calls);
  g_free (h);
}

static void
put (FakeHost *h, char *key, const RulesValue *v)
{
  g_hash_table_insert (h->vars, key, g_memdup2 (v, sizeof *v));
}

static char *
var_key (RulesVar var, const char *arg)
{
  RulesRef ref = { var, NULL, NULL };
  return key_for (&ref, arg);
}

void
fake_set_string (FakeHost *h, RulesVar var, const char *arg, const char *s, gboolean ci)
{
  RulesValue v;
  char *copy = g_strdup (s);
  g_ptr_array_add (h->strings, copy);
  rules_value_set_string (&v, copy, -1, ci);
  put (h, var_key (var, arg), &v);
}

void
fake_set_int (FakeHost *h, RulesVar var, const char *arg, gint64 i)
{
  RulesValue v;
  rules_value_set_int (&v, i);
  put (h, var_key (var, arg), &v);
}

void
fake_set_bool (FakeHost *h, RulesVar var, const char *arg, gboolean b)
{
  RulesValue v;
  rules_value_set_bool (&v, b);
  put (h, var_key (var, arg), &v);
}

void
fake_set_ip (FakeHost *h, RulesVar var, const char *ip)
{
  RulesValue v = { 0 };
  v.type = RULES_TYPE_IP;
  g_assert_true (rules_ip_parse (ip, strlen (ip), &v.ip));
  put (h, var_key (var, NULL), &v);
}

void
fake_set_strv (FakeHost *h, RulesVar var, const char *arg, const char *const *sv)
{
  RulesValue v;
  char **copy = g_strdupv ((char **)sv);
  for (guint i = 0; copy[i]; i++)
    g_ptr_array_add (h->strings, copy[i]);
  g_ptr_array_add (h->strings, copy); /* the vector itself; strings freed above */
  rules_value_set_strv (&v, (const char *const *)copy, g_strv_length (copy), TRUE);
  put (h, var_key (var, arg), &v);
}

void
fake_set_conn (FakeHost *h, const char *conn, const char *field, const RulesValue *v)
{
  RulesValue copy = *v;
  if (v->type == RULES_TYPE_STRING)
    {
      char *s = g_strndup (v->s.ptr, v->s.len);
      g_ptr_array_add (h->strings, s);
      copy.s.ptr = s;
    }
  put (h, g_strdup_printf ("%s.%s", conn, field), &copy);
}

void
fake_answer (FakeHost *h, const char *name, gboolean listed)
{
  g_hash_table_insert (h->answers, g_strdup (name), GINT_TO_POINTER (listed));
  g_hash_table_remove (h->pending, name);
}

RulesStep
fake_run_stage (RulesProgram *prog, RulesState *state, RulesStage stage, FakeHost *h,
                gboolean answer_all, guint *n_waits, guint *n_calls)
{
  g_autoptr (RulesRun) run = rules_run_new (prog, state, stage);
  RulesStep step;
  guint guard = 0;

  if (n_waits)
    *n_waits = 0;
  if (n_calls)
    *n_calls = 0;
  /* state answers belong to one run, as the engine's cache does */
  g_hash_table_remove_all (h->state_answers);
  for (;;)
    {
      RulesStepStatus st = rules_run_step (run, &fake_vtable, h, &step);
      g_assert_cmpint (st, ==, step.status);
      g_assert_cmpuint (++guard, <, 1000);
      if (st == RULES_STEP_DONE)
        return step;
      if (st == RULES_STEP_WAIT)
        {
          GHashTableIter it;
          gpointer k, v;
          g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
          g_assert_cmpuint (g_hash_table_size (h->pending) + g_hash_table_size (h->state_held), >,
                            0);
          g_hash_table_iter_init (&it, h->state_held);
          while (g_hash_table_iter_next (&it, &k, &v))
            g_hash_table_insert (h->state_answers, g_strdup (k), v);
          g_hash_table_remove_all (h->state_held);
          g_hash_table_iter_init (&it, h->pending);
          while (g_hash_table_iter_next (&it, &k, NULL))
            g_ptr_array_add (names, g_strdup (k));
          for (guint i = 0; i < names->len; i++)
            fake_answer (h, names->pdata[i], answer_all);
          if (n_waits)
            (*n_waits)++;
        }
      else if (n_calls)
        (*n_calls)++;
    }
}

RulesProgram *
load_or_fail (const char *text)
{
  g_autoptr (GError) error = NULL;
  RulesProgram *p = rules_program_load_string ("test.vsl", text, &test_options, &error);
  if (p == NULL)
    g_error ("load failed: %s\n%s", error->message, text);
  return p;
}
