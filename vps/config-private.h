/* SPDX-License-Identifier: MIT
 *
 * config-private.h — the schema table and value parsers shared by config.c
 * and config-schema.c (and visible to tests/vps/test-config.c), and the
 * loaded form of a VpsConfig that config.c builds and config-access.c reads.
 */
#pragma once

#include "vps/config.h"

G_BEGIN_DECLS

/* Limits on what a config file may hold. */
#define VPS_CONFIG_MAX_FILE_SIZE (1024 * 1024)
#define VPS_CONFIG_MAX_VALUE 4096
#define VPS_CONFIG_MAX_NAME 64
#define VPS_CONFIG_MAX_UNIX_PATH 107

typedef enum
{
  VPS_CFG_STRING,
  VPS_CFG_PATH, /* resolved against the config file's directory */
  VPS_CFG_BOOL,
  VPS_CFG_INT,           /* min..max */
  VPS_CFG_DURATION,      /* milliseconds, min..max */
  VPS_CFG_SIZE,          /* bytes, min..max */
  VPS_CFG_ENUM,          /* one of choices */
  VPS_CFG_SOCKET,        /* inet:HOST:PORT or unix:/path */
  VPS_CFG_HOSTPORT,      /* HOST:PORT, [IPV6]:PORT */
  VPS_CFG_HOSTPORT_LIST, /* comma-separated HOST:PORT */
  VPS_CFG_NAME_LIST,     /* comma-separated [a-z0-9_-]{1,64}, may be empty */
  VPS_CFG_CIDR_LIST,     /* comma-separated IP or IP/prefix, may be empty */
  VPS_CFG_NAMESERVER,    /* IP or IP:PORT */
  VPS_CFG_POLICY_TARGET, /* embedded | grpc://HOST:PORT */
  VPS_CFG_IDENT,         /* [a-z0-9_-]{1,64} */
} VpsConfigType;

typedef struct
{
  const char *group; /* "connector" for every [connector NAME] */
  const char *key;
  VpsConfigType type;
  const char *def; /* default, in file syntax; NULL = unset */
  gint64 min, max; /* INT, DURATION (ms), SIZE (bytes) */
  const char *const *choices;
  const char *help;
} VpsConfigKeyDef;

typedef struct
{
  char *text;  /* normalised: absolute path, joined list ... */
  gint64 num;  /* INT, DURATION, SIZE, BOOL */
  char **list; /* the list types */
} VpsConfigValue;

gboolean vps_config_schema_known_group (const char *group);
const VpsConfigKeyDef *vps_config_schema_find (const char *schema_group, const char *key);
const VpsConfigKeyDef *vps_config_schema_all (gsize *n);

gboolean vps_config_valid_name (const char *s);
gboolean vps_config_valid_ident (const char *s);

/* On failure *why is a static reason ("out of range") and out is cleared
 * by the caller with vps_config_value_clear(). */
gboolean vps_config_value_parse (const VpsConfigKeyDef *def, const char *text, const char *base_dir,
                                 VpsConfigValue *out, const char **why);
void vps_config_value_clear (VpsConfigValue *v);

/* ---- a loaded VpsConfig (built by config.c, read by config-access.c) ---- */

#define VPS_CONFIG_CONNECTOR_PREFIX "connector "

typedef struct
{
  const VpsConfigKeyDef *def; /* NULL: a connector's type-specific key */
  VpsConfigValue v;
  char *raw;      /* as written (unescaped); NULL for a default */
  char *resolved; /* type-specific keys: raw resolved as a path */
  guint line;     /* 0 = not in the file */
} VpsConfigEntry;

typedef struct
{
  char *name;
  guint line;          /* 0 = not in the file */
  GHashTable *entries; /* key → VpsConfigEntry */
  GPtrArray *keys;     /* keys as written, in file order (owned by entries) */
} VpsConfigGroup;

struct _VpsConfig
{
  gatomicrefcount ref;
  char *name;         /* for messages: the path or name as given */
  char *path;         /* absolute, NULL for the defaults */
  char *base_dir;     /* relative paths are resolved against it */
  GHashTable *groups; /* name → VpsConfigGroup */
  GPtrArray *order;   /* VpsConfigGroup, in file order */
  GArray *connectors; /* VpsConfigConnector; strings owned by the groups */
  char **export_names;
};

/* The entry of `key` in `group` (full name, "connector NAME"), or NULL. */
const VpsConfigEntry *vps_config_entry_find (const VpsConfig *cfg, const char *group,
                                             const char *key);

G_END_DECLS
