/* SPDX-License-Identifier: MIT
 *
 * config-access.c — the accessors of a loaded VpsConfig (contract in
 * config.h): typed reads of schema keys, raw and checked reads of a
 * connector's type-specific keys, export and connector lists.
 *
 * Every schema key has an entry once config.c has loaded the file (the
 * value written or the schema default), so the plain accessors always
 * answer; asking for a key the schema does not know is a caller's bug
 * (g_return_val_if_fail).  A connector's type-specific keys are kept raw
 * and parsed here on demand: the vps_config_get_*() family reads an invalid
 * one as 0, the vps_config_read_*() family reports it with file and line.
 * Nothing here modifies the VpsConfig, so any thread may read it.
 */
#include "vps/config-private.h"

#include <string.h>

/* ---- accessors ---------------------------------------------------------- */

const char *
vps_config_get_path (const VpsConfig *cfg)
{
  g_return_val_if_fail (cfg != NULL, NULL);
  return cfg->path;
}

static const char *
schema_group_of (const char *group)
{
  return g_str_has_prefix (group, VPS_CONFIG_CONNECTOR_PREFIX) ? "connector" : group;
}

/* The entry of a key: schema keys always have one (maybe unset); a
 * connector's type-specific keys only when written.  Anything else is a
 * caller's bug. */
static const VpsConfigEntry *
lookup (const VpsConfig *cfg, const char *group, const char *key, gboolean *known)
{
  const char *sg;

  *known = FALSE;
  g_return_val_if_fail (cfg != NULL && group != NULL && key != NULL, NULL);
  sg = schema_group_of (group);
  if (vps_config_schema_find (sg, key) != NULL || strcmp (sg, "connector") == 0
      || strcmp (sg, "export") == 0)
    *known = TRUE;
  g_return_val_if_fail (*known, NULL);
  return vps_config_entry_find (cfg, group, key);
}

const char *
vps_config_get_string (const VpsConfig *cfg, const char *group, const char *key)
{
  gboolean known;
  const VpsConfigEntry *e = lookup (cfg, group, key, &known);

  if (e == NULL)
    return NULL;
  return e->def != NULL ? e->v.text : e->raw;
}

const char *
vps_config_get_path_value (const VpsConfig *cfg, const char *group, const char *key)
{
  gboolean known;
  const VpsConfigEntry *e = lookup (cfg, group, key, &known);

  if (e == NULL)
    return NULL;
  return e->def != NULL ? e->v.text : e->resolved;
}

/* Numbers of a connector's type-specific keys are parsed on demand; an
 * invalid one reads as 0 (use vps_config_read_* to report it). */
static gint64
number_of (const VpsConfigEntry *e, VpsConfigType type)
{
  gint64 v = 0;
  guint64 u = 0;

  if (e == NULL)
    return 0;
  if (e->def != NULL)
    return e->v.num;
  switch (type)
    {
      case VPS_CFG_INT:
        return g_ascii_string_to_signed (e->raw, 10, G_MININT64, G_MAXINT64, &v, NULL) ? v : 0;
      case VPS_CFG_DURATION:
        return vps_config_parse_duration_ms (e->raw, &v) ? v : 0;
      case VPS_CFG_SIZE:
        return vps_config_parse_size (e->raw, &u) ? (gint64)u : 0;
      default:
        {
          VpsConfigKeyDef def = { .type = VPS_CFG_BOOL };
          VpsConfigValue val;
          const char *why;
          gboolean ok = vps_config_value_parse (&def, e->raw, NULL, &val, &why);

          vps_config_value_clear (&val);
          return ok ? val.num : 0;
        }
    }
}

gboolean
vps_config_get_bool (const VpsConfig *cfg, const char *group, const char *key)
{
  gboolean known;

  return number_of (lookup (cfg, group, key, &known), VPS_CFG_BOOL) != 0;
}

gint64
vps_config_get_int (const VpsConfig *cfg, const char *group, const char *key)
{
  gboolean known;

  return number_of (lookup (cfg, group, key, &known), VPS_CFG_INT);
}

gint64
vps_config_get_duration_ms (const VpsConfig *cfg, const char *group, const char *key)
{
  gboolean known;

  return number_of (lookup (cfg, group, key, &known), VPS_CFG_DURATION);
}

guint64
vps_config_get_size (const VpsConfig *cfg, const char *group, const char *key)
{
  gboolean known;

  return (guint64)number_of (lookup (cfg, group, key, &known), VPS_CFG_SIZE);
}

const char *const *
vps_config_get_strv (const VpsConfig *cfg, const char *group, const char *key)
{
  static const char *const empty[] = { NULL };
  gboolean known;
  const VpsConfigEntry *e = lookup (cfg, group, key, &known);

  return e != NULL && e->v.list != NULL ? (const char *const *)e->v.list : empty;
}

gboolean
vps_config_has_key (const VpsConfig *cfg, const char *group, const char *key)
{
  const VpsConfigEntry *e;

  g_return_val_if_fail (cfg != NULL && group != NULL && key != NULL, FALSE);
  e = vps_config_entry_find (cfg, group, key);
  return e != NULL && e->line != 0;
}

const char *
vps_config_get_raw (const VpsConfig *cfg, const char *group, const char *key)
{
  const VpsConfigEntry *e;

  g_return_val_if_fail (cfg != NULL && group != NULL && key != NULL, NULL);
  e = vps_config_entry_find (cfg, group, key);
  return e != NULL ? e->raw : NULL;
}

char *
vps_config_resolve_path (const VpsConfig *cfg, const char *path)
{
  g_return_val_if_fail (cfg != NULL && path != NULL, NULL);
  return g_canonicalize_filename (path, cfg->base_dir);
}

const char *const *
vps_config_quarantine_names (const VpsConfig *cfg)
{
  return vps_config_get_strv (cfg, "quarantine", "names");
}

const char *const *
vps_config_export_names (const VpsConfig *cfg)
{
  g_return_val_if_fail (cfg != NULL, NULL);
  return (const char *const *)cfg->export_names;
}

const char *
vps_config_export_dir (const VpsConfig *cfg, const char *name)
{
  const VpsConfigEntry *e;

  g_return_val_if_fail (cfg != NULL && name != NULL, NULL);
  e = vps_config_entry_find (cfg, "export", name);
  return e != NULL ? e->v.text : NULL;
}

gsize
vps_config_n_connectors (const VpsConfig *cfg)
{
  g_return_val_if_fail (cfg != NULL, 0);
  return cfg->connectors->len;
}

const VpsConfigConnector *
vps_config_connector (const VpsConfig *cfg, gsize i)
{
  g_return_val_if_fail (cfg != NULL && i < cfg->connectors->len, NULL);
  return &g_array_index (cfg->connectors, VpsConfigConnector, i);
}

/* ---- checked reads of type-specific keys -------------------------------- */

static gboolean
read_number (const VpsConfig *cfg, const char *group, const char *key, VpsConfigType type,
             gint64 def, gint64 min, gint64 max, gint64 *out, GError **error)
{
  const VpsConfigEntry *e = vps_config_entry_find (cfg, group, key);
  VpsConfigKeyDef d = { group, key, type, NULL, min, max, NULL, NULL };
  VpsConfigValue v;
  const char *why = NULL;
  gboolean ok;

  if (e == NULL || e->raw == NULL)
    {
      *out = def;
      return TRUE;
    }
  ok = vps_config_value_parse (&d, e->raw, cfg->base_dir, &v, &why);
  *out = v.num;
  vps_config_value_clear (&v);
  if (!ok && type == VPS_CFG_INT && strcmp (why, "out of range") == 0)
    vps_config_error_at (cfg, group, key, error,
                         "out of range (%" G_GINT64_FORMAT "-%" G_GINT64_FORMAT ")", min, max);
  else if (!ok)
    vps_config_error_at (cfg, group, key, error, "%s", why);
  return ok;
}

gboolean
vps_config_read_int (const VpsConfig *cfg, const char *group, const char *key, gint64 def,
                     gint64 min, gint64 max, gint64 *out, GError **error)
{
  g_return_val_if_fail (cfg != NULL && group != NULL && key != NULL && out != NULL, FALSE);
  return read_number (cfg, group, key, VPS_CFG_INT, def, min, max, out, error);
}

gboolean
vps_config_read_duration_ms (const VpsConfig *cfg, const char *group, const char *key, gint64 def,
                             gint64 *out, GError **error)
{
  g_return_val_if_fail (cfg != NULL && group != NULL && key != NULL && out != NULL, FALSE);
  return read_number (cfg, group, key, VPS_CFG_DURATION, def, 0, G_MAXINT64, out, error);
}

gboolean
vps_config_read_size (const VpsConfig *cfg, const char *group, const char *key, guint64 def,
                      guint64 *out, GError **error)
{
  gint64 v;

  g_return_val_if_fail (cfg != NULL && group != NULL && key != NULL && out != NULL, FALSE);
  if (!read_number (cfg, group, key, VPS_CFG_SIZE, (gint64)def, 0, G_MAXINT64, &v, error))
    return FALSE;
  *out = (guint64)v;
  return TRUE;
}

gboolean
vps_config_read_bool (const VpsConfig *cfg, const char *group, const char *key, gboolean def,
                      gboolean *out, GError **error)
{
  gint64 v;

  g_return_val_if_fail (cfg != NULL && group != NULL && key != NULL && out != NULL, FALSE);
  if (!read_number (cfg, group, key, VPS_CFG_BOOL, def, 0, 1, &v, error))
    return FALSE;
  *out = v != 0;
  return TRUE;
}
