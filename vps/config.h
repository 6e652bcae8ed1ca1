/* SPDX-License-Identifier: MIT
 *
 * config.h — vps.conf, the GKeyFile configuration of vpsd, vsmtpd and vpsctl.
 *
 * vps_config_load() reads and validates the whole file against a static
 * schema (every group and key, its type, range and default) and refuses
 * unknown groups and keys.  Every error is in VPS_CONFIG_ERROR and reads
 * "FILE:LINE: [group] key: what is wrong".  Relative paths are resolved
 * against the directory of the file (or the current directory for the
 * built-in defaults).  A loaded VpsConfig is immutable and reference-counted:
 * a reload builds a new one and swaps it.
 *
 * `[connector NAME]` groups are validated here only for the keys every
 * connector has (type, timeout, on_error, concurrency); the connector class
 * validates its own keys with vps_config_connector_check_keys() and reads
 * them with the group/key accessors.
 */
#pragma once

#include <glib.h>
#include "rules/rules.h"

G_BEGIN_DECLS

#define VPS_CONFIG_ERROR (vps_config_error_quark ())
GQuark vps_config_error_quark (void);

typedef enum
{
  VPS_CONFIG_ERROR_IO,
  VPS_CONFIG_ERROR_SYNTAX, /* not a key file */
  VPS_CONFIG_ERROR_UNKNOWN_GROUP,
  VPS_CONFIG_ERROR_UNKNOWN_KEY,
  VPS_CONFIG_ERROR_MISSING, /* a required key is absent */
  VPS_CONFIG_ERROR_INVALID, /* a value of the wrong type, range or form */
} VpsConfigError;

typedef struct _VpsConfig VpsConfig;

VpsConfig *vps_config_load (const char *path, GError **error);
/* `name` is used in messages and its directory for relative paths. */
VpsConfig *vps_config_load_data (const char *name, const char *text, GError **error);
/* Every default; relative paths against the current directory. */
VpsConfig *vps_config_new_default (void);
VpsConfig *vps_config_ref (VpsConfig *cfg);
void vps_config_unref (VpsConfig *cfg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsConfig, vps_config_unref)

/* The file it was read from (absolute), or NULL for the defaults. */
const char *vps_config_get_path (const VpsConfig *cfg);

/* Typed accessors for any schema key: the value from the file or the
 * default.  Paths come back absolute.  Durations are in milliseconds, sizes
 * in bytes.  Asking for a key the schema does not have is a programming
 * error (g_return_val_if_fail).  For connector groups pass the full group
 * name "connector NAME". */
const char *vps_config_get_string (const VpsConfig *cfg, const char *group, const char *key);
const char *vps_config_get_path_value (const VpsConfig *cfg, const char *group, const char *key);
gboolean vps_config_get_bool (const VpsConfig *cfg, const char *group, const char *key);
gint64 vps_config_get_int (const VpsConfig *cfg, const char *group, const char *key);
gint64 vps_config_get_duration_ms (const VpsConfig *cfg, const char *group, const char *key);
guint64 vps_config_get_size (const VpsConfig *cfg, const char *group, const char *key);
gboolean vps_config_has_key (const VpsConfig *cfg, const char *group, const char *key);

/* Quarantine names from [quarantine] names, and export names from [export]
 * (NAME = directory); NULL-terminated, owned by cfg. */
const char *const *vps_config_quarantine_names (const VpsConfig *cfg);
const char *const *vps_config_export_names (const VpsConfig *cfg);
/* Absolute directory of an export, or NULL if not configured. */
const char *vps_config_export_dir (const VpsConfig *cfg, const char *name);

/* Connectors, in file order. */
typedef struct
{
  const char *name;  /* NAME of [connector NAME] */
  const char *group; /* "connector NAME" */
  const char *type;
  gint64 timeout_ms;
  RulesVerdict on_error;
  gint64 concurrency; /* 0 = unlimited */
} VpsConfigConnector;

gsize vps_config_n_connectors (const VpsConfig *cfg);
const VpsConfigConnector *vps_config_connector (const VpsConfig *cfg, gsize i);

/* Refuse keys of a connector group other than the common ones and
 * `allowed` (NULL-terminated); errors carry file, line, group and key. */
gboolean vps_config_connector_check_keys (const VpsConfig *cfg, const char *group,
                                          const char *const *allowed, GError **error);
/* Raw string of any key in any group (connector type-specific keys); NULL if absent. */
const char *vps_config_get_raw (const VpsConfig *cfg, const char *group, const char *key);
/* List-valued keys ([quarantine] names, [vsmtpd] listen*): NULL-terminated,
 * owned by cfg, empty when unset. */
const char *const *vps_config_get_strv (const VpsConfig *cfg, const char *group, const char *key);

/* Checked reads of a connector's type-specific keys: `def` when absent; a
 * value of the wrong form or range sets "FILE:LINE: [group] key: ..." .
 * (The plain vps_config_get_int() & co. read such keys as 0 when invalid.) */
gboolean vps_config_read_int (const VpsConfig *cfg, const char *group, const char *key, gint64 def,
                              gint64 min, gint64 max, gint64 *out, GError **error);
gboolean vps_config_read_duration_ms (const VpsConfig *cfg, const char *group, const char *key,
                                      gint64 def, gint64 *out, GError **error);
gboolean vps_config_read_size (const VpsConfig *cfg, const char *group, const char *key,
                               guint64 def, guint64 *out, GError **error);
gboolean vps_config_read_bool (const VpsConfig *cfg, const char *group, const char *key,
                               gboolean def, gboolean *out, GError **error);

/* Resolve a path-valued raw string relative to the config file's directory. */
char *vps_config_resolve_path (const VpsConfig *cfg, const char *path);

/* Set *error to VPS_CONFIG_ERROR_INVALID with "FILE:LINE: [group] key: message". */
void vps_config_error_at (const VpsConfig *cfg, const char *group, const char *key, GError **error,
                          const char *fmt, ...) G_GNUC_PRINTF (5, 6);

/* Parse helpers shared with the connector classes. */
gboolean vps_config_parse_duration_ms (const char *s, gint64 *out);
gboolean vps_config_parse_size (const char *s, guint64 *out);

G_END_DECLS
