/* SPDX-License-Identifier: MIT
 *
 * config-private.h — the schema table and value parsers shared by config.c
 * and config-schema.c (and visible to tests/vps/test-config.c).
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

G_END_DECLS
