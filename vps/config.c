/* SPDX-License-Identifier: MIT
 *
 * config.c — reads vps.conf (a GKeyFile) and validates it against the
 * schema of config-schema.c; the accessors of a loaded VpsConfig are in
 * config-access.c.
 *
 * GKeyFile parses and unescapes values but knows no line numbers, so the
 * text is first scanned here with GKeyFile's own line rules (comment,
 * [group], key = value) to map every group and key to its line and to
 * report syntax errors with a line.  Then each group and key is checked:
 * unknown groups and keys, wrong types, out-of-range values and missing
 * required keys are refused with "FILE:LINE: [group] key: what".  Values
 * that are absent take their schema default, so every accessor answers.
 * The result is immutable; reads from several threads need no lock.
 * A connector class checks its own keys later with
 * vps_config_connector_check_keys(), which reports the same way.
 */
#include "vps/config-private.h"

#include <errno.h>
#include <string.h>

G_DEFINE_QUARK (vps - config - error - quark, vps_config_error)

static const VpsConfigKeyDef export_def = {
  "export", "NAME", VPS_CFG_PATH, NULL, 0, 0, NULL, "export directory",
};

static void
entry_free (gpointer p)
{
  VpsConfigEntry *e = p;

  vps_config_value_clear (&e->v);
  g_free (e->raw);
  g_free (e->resolved);
  g_free (e);
}

static void
group_free (gpointer p)
{
  VpsConfigGroup *g = p;

  g_hash_table_unref (g->entries);
  g_ptr_array_unref (g->keys);
  g_free (g->name);
  g_free (g);
}

static VpsConfigGroup *
group_get (VpsConfig *cfg, const char *name, guint line)
{
  VpsConfigGroup *g = g_hash_table_lookup (cfg->groups, name);

  if (g == NULL)
    {
      g = g_new0 (VpsConfigGroup, 1);
      g->name = g_strdup (name);
      g->line = line;
      g->entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, entry_free);
      g->keys = g_ptr_array_new ();
      g_hash_table_insert (cfg->groups, g->name, g);
      g_ptr_array_add (cfg->order, g);
    }
  return g;
}

static VpsConfigEntry *
entry_add (VpsConfigGroup *g, const char *key, guint line)
{
  VpsConfigEntry *e = g_new0 (VpsConfigEntry, 1);
  char *k = g_strdup (key);

  e->line = line;
  g_hash_table_insert (g->entries, k, e);
  if (line != 0)
    g_ptr_array_add (g->keys, k);
  return e;
}

const VpsConfigEntry *
vps_config_entry_find (const VpsConfig *cfg, const char *group, const char *key)
{
  VpsConfigGroup *g = g_hash_table_lookup (cfg->groups, group);

  return g != NULL ? g_hash_table_lookup (g->entries, key) : NULL;
}

/* ---- errors ------------------------------------------------------------- */

static void G_GNUC_PRINTF (7, 8)
    set_error (GError **error, gint code, const char *name, guint line, const char *group,
               const char *key, const char *fmt, ...)
{
  g_autoptr (GString) s = g_string_new (name);
  va_list ap;

  if (line != 0)
    g_string_append_printf (s, ":%u", line);
  g_string_append (s, ": ");
  if (group != NULL && key != NULL)
    g_string_append_printf (s, "[%s] %s: ", group, key);
  else if (group != NULL)
    g_string_append_printf (s, "[%s]: ", group);
  va_start (ap, fmt);
  g_string_append_vprintf (s, fmt, ap);
  va_end (ap);
  g_set_error_literal (error, VPS_CONFIG_ERROR, code, s->str);
}

void
vps_config_error_at (const VpsConfig *cfg, const char *group, const char *key, GError **error,
                     const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  const VpsConfigGroup *g;
  const VpsConfigEntry *e;
  guint line = 0;
  va_list ap;

  g_return_if_fail (cfg != NULL && group != NULL);
  g = g_hash_table_lookup (cfg->groups, group);
  e = key != NULL ? vps_config_entry_find (cfg, group, key) : NULL;
  if (e != NULL && e->line != 0)
    line = e->line;
  else if (g != NULL)
    line = g->line;
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, line, group, key, "%s", msg);
}

/* ---- the line scanner --------------------------------------------------- */

static guint
line_of (const char *text, const char *at)
{
  guint line = 1;

  for (const char *p = text; p < at; p++)
    line += *p == '\n';
  return line;
}

/* Records every group and key with its line, following GKeyFile's rules: a
 * line is blank, a comment ('#' after leading space), "[group]" (trailing
 * blanks allowed) or "key = value".  Duplicates are refused here, because
 * GKeyFile would silently merge groups and keep the last key. */
static gboolean
scan (VpsConfig *cfg, const char *text, GError **error)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  VpsConfigGroup *cur = NULL;

  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *l = lines[i];
      guint n = i + 1;

      while (g_ascii_isspace (*l))
        l++;
      if (*l == '\0' || *l == '#')
        continue;
      if (*l == '[')
        {
          const char *close = strchr (l, ']');
          g_autofree char *name = NULL;
          const char *p;

          if (close == NULL)
            {
              set_error (error, VPS_CONFIG_ERROR_SYNTAX, cfg->name, n, NULL, NULL,
                         "syntax error: group header without ]");
              return FALSE;
            }
          for (p = close + 1; *p == ' ' || *p == '\t' || *p == '\r'; p++)
            ;
          name = g_strndup (l + 1, close - l - 1);
          if (*p != '\0' || name[0] == '\0' || strchr (name, '[') != NULL)
            {
              set_error (error, VPS_CONFIG_ERROR_SYNTAX, cfg->name, n, NULL, NULL,
                         "syntax error: invalid group header");
              return FALSE;
            }
          if (g_hash_table_contains (cfg->groups, name))
            {
              VpsConfigGroup *first = g_hash_table_lookup (cfg->groups, name);

              set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, n, name, NULL,
                         "group appears twice (first at line %u)", first->line);
              return FALSE;
            }
          cur = group_get (cfg, name, n);
        }
      else
        {
          const char *eq = strchr (l, '=');
          g_autofree char *key = NULL;

          if (eq == NULL || eq == l)
            {
              set_error (error, VPS_CONFIG_ERROR_SYNTAX, cfg->name, n, NULL, NULL,
                         "syntax error: expected key = value, [group] or # comment");
              return FALSE;
            }
          if (cur == NULL)
            {
              set_error (error, VPS_CONFIG_ERROR_SYNTAX, cfg->name, n, NULL, NULL,
                         "syntax error: key outside of any [group]");
              return FALSE;
            }
          key = g_strstrip (g_strndup (l, eq - l));
          if (g_hash_table_contains (cur->entries, key))
            {
              const VpsConfigEntry *first = g_hash_table_lookup (cur->entries, key);

              set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, n, cur->name, key,
                         "key set twice (first at line %u)", first->line);
              return FALSE;
            }
          entry_add (cur, key, n);
        }
    }
  return TRUE;
}

/* ---- validation --------------------------------------------------------- */

static gboolean
set_value (VpsConfig *cfg, VpsConfigGroup *g, const char *key, VpsConfigEntry *e,
           const VpsConfigKeyDef *def, const char *text, GError **error)
{
  const char *why = NULL;

  e->def = def;
  if (vps_config_value_parse (def, text, cfg->base_dir, &e->v, &why))
    return TRUE;
  if (e->line == 0) /* a default that does not parse is our bug */
    g_critical ("config schema: default of [%s] %s: %s", g->name, key, why);
  if (def->type == VPS_CFG_ENUM && strcmp (why, "invalid value") == 0)
    {
      g_autofree char *choices = g_strjoinv (", ", (char **)def->choices);

      set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, e->line, g->name, key,
                 "invalid value \"%s\" (expected one of: %s)", text, choices);
    }
  else if (strcmp (why, "out of range") == 0 && def->type == VPS_CFG_INT)
    set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, e->line, g->name, key,
               "out of range (%" G_GINT64_FORMAT "-%" G_GINT64_FORMAT ")", def->min, def->max);
  else
    set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, e->line, g->name, key, "%s", why);
  return FALSE;
}

static gboolean
check_group (VpsConfig *cfg, GKeyFile *kf, VpsConfigGroup *g, GError **error)
{
  const char *schema_group = g->name;
  gboolean is_connector = g_str_has_prefix (g->name, VPS_CONFIG_CONNECTOR_PREFIX);
  gboolean is_export = strcmp (g->name, "export") == 0;

  if (is_connector)
    {
      if (!vps_config_valid_ident (g->name + strlen (VPS_CONFIG_CONNECTOR_PREFIX)))
        {
          set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, g->line, g->name, NULL,
                     "a connector name is a letter or _ then letters, digits, _ (at most %d)",
                     VPS_CONFIG_MAX_NAME);
          return FALSE;
        }
      schema_group = "connector";
    }
  else if (!vps_config_schema_known_group (g->name))
    {
      set_error (error, VPS_CONFIG_ERROR_UNKNOWN_GROUP, cfg->name, g->line, g->name, NULL,
                 "unknown group");
      return FALSE;
    }

  for (guint i = 0; i < g->keys->len; i++)
    {
      const char *key = g_ptr_array_index (g->keys, i);
      VpsConfigEntry *e = g_hash_table_lookup (g->entries, key);
      const VpsConfigKeyDef *def = vps_config_schema_find (schema_group, key);
      g_autoptr (GError) local = NULL;
      g_autofree char *raw = NULL;

      /* GKeyFile's localized keys ("key[de]") have no use here. */
      if ((def == NULL && !is_connector && !is_export) || strchr (key, '[') != NULL)
        {
          set_error (error, VPS_CONFIG_ERROR_UNKNOWN_KEY, cfg->name, e->line, g->name, key,
                     "unknown key");
          return FALSE;
        }
      /* GKeyFile may return a value and set an error for a bad escape. */
      raw = g_key_file_get_string (kf, g->name, key, &local);
      if (raw == NULL || local != NULL)
        {
          set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, e->line, g->name, key,
                     "invalid escape sequence (write \\\\ for a backslash)");
          return FALSE;
        }
      g_strstrip (raw);
      e->raw = g_strdup (raw);
      if (is_export)
        {
          if (!vps_config_valid_name (key))
            {
              set_error (error, VPS_CONFIG_ERROR_INVALID, cfg->name, e->line, g->name, key,
                         "export names are 1-%d characters of a-z 0-9 _ -", VPS_CONFIG_MAX_NAME);
              return FALSE;
            }
          def = &export_def;
        }
      if (def == NULL && is_connector)
        {
          /* Checked later by the connector class (vps_config_connector_check_keys). */
          e->resolved = g_canonicalize_filename (raw, cfg->base_dir);
          continue;
        }
      if (!set_value (cfg, g, key, e, def, raw, error))
        return FALSE;
    }
  return TRUE;
}

/* Absent keys take the schema default (or stay unset) so every accessor
 * finds an entry. */
static void
fill_defaults (VpsConfig *cfg, VpsConfigGroup *g, const char *schema_group)
{
  gsize n;
  const VpsConfigKeyDef *all = vps_config_schema_all (&n);

  for (gsize i = 0; i < n; i++)
    {
      VpsConfigEntry *e;

      if (strcmp (all[i].group, schema_group) != 0
          || g_hash_table_contains (g->entries, all[i].key))
        continue;
      e = entry_add (g, all[i].key, 0);
      e->def = &all[i];
      if (all[i].def != NULL)
        set_value (cfg, g, all[i].key, e, &all[i], all[i].def, NULL);
    }
}

static RulesVerdict
verdict_of (const char *name)
{
  static const struct
  {
    const char *name;
    RulesVerdict verdict;
  } map[] = {
    { "continue", RULES_VERDICT_CONTINUE }, { "accept", RULES_VERDICT_ACCEPT },
    { "reject", RULES_VERDICT_REJECT },     { "tempfail", RULES_VERDICT_TEMPFAIL },
    { "discard", RULES_VERDICT_DISCARD },   { "quarantine", RULES_VERDICT_QUARANTINE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (map); i++)
    if (strcmp (map[i].name, name) == 0)
      return map[i].verdict;
  return RULES_VERDICT_TEMPFAIL;
}

static gboolean
check_connector (VpsConfig *cfg, VpsConfigGroup *g, GError **error)
{
  VpsConfigConnector c = { 0 };
  const VpsConfigEntry *type = g_hash_table_lookup (g->entries, "type");

  if (type == NULL)
    {
      set_error (error, VPS_CONFIG_ERROR_MISSING, cfg->name, g->line, g->name, "type",
                 "missing (required)");
      return FALSE;
    }
  fill_defaults (cfg, g, "connector");
  c.name = g->name + strlen (VPS_CONFIG_CONNECTOR_PREFIX);
  c.group = g->name;
  c.type = type->v.text;
  c.timeout_ms = ((const VpsConfigEntry *)g_hash_table_lookup (g->entries, "timeout"))->v.num;
  c.on_error
      = verdict_of (((const VpsConfigEntry *)g_hash_table_lookup (g->entries, "on_error"))->v.text);
  c.concurrency = ((const VpsConfigEntry *)g_hash_table_lookup (g->entries, "concurrency"))->v.num;
  g_array_append_val (cfg->connectors, c);
  return TRUE;
}

/* A certificate without its key (or the reverse) is useless and would
 * otherwise surface only when the first TLS client connects. */
static gboolean
check_pair (VpsConfig *cfg, const char *group, const char *a, const char *b, GError **error)
{
  const VpsConfigEntry *ea = vps_config_entry_find (cfg, group, a);
  const VpsConfigEntry *eb = vps_config_entry_find (cfg, group, b);
  gboolean has_a = ea != NULL && ea->line != 0;
  gboolean has_b = eb != NULL && eb->line != 0;

  if (has_a == has_b)
    return TRUE;
  set_error (error, VPS_CONFIG_ERROR_MISSING, cfg->name, has_a ? ea->line : eb->line, group,
             has_a ? a : b, "%s is required with %s", has_a ? b : a, has_a ? a : b);
  return FALSE;
}

static VpsConfig *
config_new (const char *name, const char *path, const char *base_dir)
{
  VpsConfig *cfg = g_new0 (VpsConfig, 1);

  g_atomic_ref_count_init (&cfg->ref);
  cfg->name = g_strdup (name);
  cfg->path = g_strdup (path);
  cfg->base_dir = g_strdup (base_dir);
  cfg->groups = g_hash_table_new (g_str_hash, g_str_equal);
  cfg->order = g_ptr_array_new_with_free_func (group_free);
  cfg->connectors = g_array_new (FALSE, TRUE, sizeof (VpsConfigConnector));
  return cfg;
}

static gboolean
config_read (VpsConfig *cfg, const char *text, gsize len, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (GPtrArray) exports = g_ptr_array_new ();
  const char *bad;
  guint n_groups;

  if (len > VPS_CONFIG_MAX_FILE_SIZE)
    {
      set_error (error, VPS_CONFIG_ERROR_IO, cfg->name, 0, NULL, NULL, "file larger than %d bytes",
                 VPS_CONFIG_MAX_FILE_SIZE);
      return FALSE;
    }
  if ((bad = memchr (text, '\0', len)) != NULL)
    {
      set_error (error, VPS_CONFIG_ERROR_SYNTAX, cfg->name, line_of (text, bad), NULL, NULL,
                 "syntax error: NUL byte");
      return FALSE;
    }
  if (!g_utf8_validate (text, len, &bad))
    {
      set_error (error, VPS_CONFIG_ERROR_SYNTAX, cfg->name, line_of (text, bad), NULL, NULL,
                 "syntax error: not valid UTF-8");
      return FALSE;
    }
  if (!scan (cfg, text, error))
    return FALSE;
  if (!g_key_file_load_from_data (kf, text, len, G_KEY_FILE_NONE, &local))
    {
      /* The scanner follows GKeyFile's rules, so this is a corner it missed. */
      set_error (error, VPS_CONFIG_ERROR_SYNTAX, cfg->name, 0, NULL, NULL, "syntax error: %s",
                 local->message);
      return FALSE;
    }

  n_groups = cfg->order->len;
  for (guint i = 0; i < n_groups; i++)
    {
      VpsConfigGroup *g = g_ptr_array_index (cfg->order, i);

      if (!check_group (cfg, kf, g, error))
        return FALSE;
      if (g_str_has_prefix (g->name, VPS_CONFIG_CONNECTOR_PREFIX)
          && !check_connector (cfg, g, error))
        return FALSE;
    }
  {
    gsize n;
    const VpsConfigKeyDef *all = vps_config_schema_all (&n);

    for (gsize i = 0; i < n; i++)
      if (strcmp (all[i].group, "connector") != 0)
        fill_defaults (cfg, group_get (cfg, all[i].group, 0), all[i].group);
  }
  if (!check_pair (cfg, "grpc", "tls_cert", "tls_key", error)
      || !check_pair (cfg, "tls", "cert", "key", error))
    return FALSE;

  {
    VpsConfigGroup *g = group_get (cfg, "export", 0);

    for (guint i = 0; i < g->keys->len; i++)
      g_ptr_array_add (exports, g_strdup (g_ptr_array_index (g->keys, i)));
    g_ptr_array_add (exports, NULL);
    cfg->export_names = (char **)g_ptr_array_steal (exports, NULL);
  }
  return TRUE;
}

VpsConfig *
vps_config_load_data (const char *name, const char *text, GError **error)
{
  g_autoptr (VpsConfig) cfg = NULL;
  g_autofree char *abs = NULL;
  g_autofree char *dir = NULL;

  g_return_val_if_fail (name != NULL && text != NULL, NULL);
  abs = g_canonicalize_filename (name, NULL);
  dir = g_path_get_dirname (abs);
  cfg = config_new (name, abs, dir);
  if (!config_read (cfg, text, strlen (text), error))
    return NULL;
  return g_steal_pointer (&cfg);
}

VpsConfig *
vps_config_load (const char *path, GError **error)
{
  g_autoptr (VpsConfig) cfg = NULL;
  g_autoptr (GMappedFile) map = NULL;
  g_autoptr (GError) local = NULL;
  g_autofree char *abs = NULL;
  g_autofree char *dir = NULL;

  g_return_val_if_fail (path != NULL, NULL);
  abs = g_canonicalize_filename (path, NULL);
  dir = g_path_get_dirname (abs);
  cfg = config_new (path, abs, dir);
  /* Mapped, so a huge file is refused by size before it is read. */
  map = g_mapped_file_new (path, FALSE, &local);
  if (map == NULL)
    {
      set_error (error, VPS_CONFIG_ERROR_IO, path, 0, NULL, NULL, "cannot read: %s",
                 local->message);
      return NULL;
    }
  {
    gsize len = g_mapped_file_get_length (map);
    g_autofree char *text = NULL;

    if (len > VPS_CONFIG_MAX_FILE_SIZE)
      {
        set_error (error, VPS_CONFIG_ERROR_IO, path, 0, NULL, NULL, "file larger than %d bytes",
                   VPS_CONFIG_MAX_FILE_SIZE);
        return NULL;
      }
    text = g_strndup (len ? g_mapped_file_get_contents (map) : "", len);
    if (!config_read (cfg, text, len, error))
      return NULL;
  }
  return g_steal_pointer (&cfg);
}

VpsConfig *
vps_config_new_default (void)
{
  g_autofree char *cwd = g_get_current_dir ();
  VpsConfig *cfg = config_new ("(defaults)", NULL, cwd);
  gboolean ok = config_read (cfg, "", 0, NULL);

  g_assert (ok); /* the schema's own defaults must load */
  return cfg;
}

VpsConfig *
vps_config_ref (VpsConfig *cfg)
{
  g_return_val_if_fail (cfg != NULL, NULL);
  g_atomic_ref_count_inc (&cfg->ref);
  return cfg;
}

void
vps_config_unref (VpsConfig *cfg)
{
  g_return_if_fail (cfg != NULL);
  if (!g_atomic_ref_count_dec (&cfg->ref))
    return;
  g_hash_table_unref (cfg->groups);
  g_ptr_array_unref (cfg->order);
  g_array_unref (cfg->connectors);
  g_strfreev (cfg->export_names);
  g_free (cfg->name);
  g_free (cfg->path);
  g_free (cfg->base_dir);
  g_free (cfg);
}

/* ---- a connector class's keys ------------------------------------------- */

gboolean
vps_config_connector_check_keys (const VpsConfig *cfg, const char *group,
                                 const char *const *allowed, GError **error)
{
  const VpsConfigGroup *g;

  g_return_val_if_fail (cfg != NULL && group != NULL, FALSE);
  g = g_hash_table_lookup (cfg->groups, group);
  if (g == NULL)
    {
      set_error (error, VPS_CONFIG_ERROR_MISSING, cfg->name, 0, group, NULL, "no such group");
      return FALSE;
    }
  for (guint i = 0; i < g->keys->len; i++)
    {
      const char *key = g_ptr_array_index (g->keys, i);
      const VpsConfigEntry *e = g_hash_table_lookup (g->entries, key);

      if (vps_config_schema_find ("connector", key) != NULL
          || (allowed != NULL && g_strv_contains (allowed, key)))
        continue;
      set_error (error, VPS_CONFIG_ERROR_UNKNOWN_KEY, cfg->name, e->line, group, key,
                 "unknown key for this connector type");
      return FALSE;
    }
  return TRUE;
}
