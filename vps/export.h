/* SPDX-License-Identifier: MIT
 *
 * export.h — `export json|raw NAME`: write the transaction's metadata
 * (ID.json, vps/report.h's metadata object) or its raw message (ID.eml) into
 * the directory configured as [export] NAME.  Files are written to a
 * temporary name, fsync'ed, renamed into place, mode 0600.  IDs are ours
 * (queue id or transaction id, plus a counter on collision), never taken
 * from the message.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define VPS_EXPORT_ERROR (vps_export_error_quark ())
GQuark vps_export_error_quark (void);

typedef enum
{
  VPS_EXPORT_ERROR_IO,
  VPS_EXPORT_ERROR_INVALID, /* bad id or nothing to write */
} VpsExportError;

#define VPS_EXPORT_MAX_ID 64
#define VPS_EXPORT_MAX_COLLISIONS 100

/* Write `data` as DIR/ID.SUFFIX (suffix "json" or "eml"); *out_path the
 * file written.  id: [A-Za-z0-9._-]+, at most VPS_EXPORT_MAX_ID. */
gboolean vps_export_write (const char *dir, const char *id, const char *suffix, GBytes *data,
                           char **out_path, GError **error);
gboolean vps_export_write_json (const char *dir, const char *id, JsonObject *object,
                                char **out_path, GError **error);

G_END_DECLS
