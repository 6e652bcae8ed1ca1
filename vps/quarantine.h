/* SPDX-License-Identifier: MIT
 *
 * quarantine.h — the quarantine store: `[quarantine] dir`/NAME/ID.eml + ID.json.
 *
 * vps_quarantine_store() writes the message bytes exactly as given (ID.eml)
 * and a JSON description (ID.json: the caller's meta plus id, name, stored,
 * time, size, sha256), each through temp file → write → fsync → rename, then
 * fsyncs the directory; on any failure nothing of the entry is left.  The
 * .json is written last and is what makes an entry visible to list/get.
 * Files are 0600, directories created here 0700.
 *
 * IDs are generated here and never derived from message data:
 * "20261128T214000Z-0123456789ab" (UTC time of the store, '-', 12 random
 * lower-case hex digits), so sorting by id sorts by time (to the second).
 * Every lookup validates the id's form first; "../x" and the like fail with
 * VPS_QUARANTINE_ERROR_INVALID_ID before touching the file system.
 *
 * Meta keys read back by vps_quarantine_list(): "sender" (string, else
 * envelope.from), "recipients" (array of strings, else envelope.rcpts),
 * "subject" (else headers.subject), "reason", "rule" — the flat names or the
 * shape of vps_report_metadata().  A meta member named like one the store
 * sets (id, name, stored, time, size, sha256) is kept as "meta_NAME".
 * A VpsQuarantine is immutable; every function may be called from any
 * thread.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define VPS_QUARANTINE_ERROR (vps_quarantine_error_quark ())
GQuark vps_quarantine_error_quark (void);

typedef enum
{
  VPS_QUARANTINE_ERROR_IO,
  VPS_QUARANTINE_ERROR_INVALID_NAME, /* not [a-z0-9_-]{1,64} */
  VPS_QUARANTINE_ERROR_INVALID_ID,   /* not the id format */
  VPS_QUARANTINE_ERROR_NOT_FOUND,
  VPS_QUARANTINE_ERROR_CORRUPT, /* an unreadable or oversized ID.json */
} VpsQuarantineError;

#define VPS_QUARANTINE_MAX_NAME 64
/* An ID.json larger than this is not read (the store writes small ones). */
#define VPS_QUARANTINE_MAX_META (1024 * 1024)
/* Length of an id: "YYYYMMDDTHHMMSSZ-" + 12 hex digits. */
#define VPS_QUARANTINE_ID_LEN 29

typedef struct _VpsQuarantine VpsQuarantine;

typedef struct
{
  char *id;
  char *name;
  gint64 time;       /* Unix seconds of the store */
  guint64 size;      /* bytes of ID.eml */
  char *sender;      /* NULL when the meta had none */
  char **recipients; /* NULL-terminated, never NULL */
  char *subject;
  char *reason;
  char *rule;
} VpsQuarantineEntry;

void vps_quarantine_entry_free (VpsQuarantineEntry *entry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsQuarantineEntry, vps_quarantine_entry_free)

/* Creates `dir` (0700, with parents) when missing. */
VpsQuarantine *vps_quarantine_open (const char *dir, GError **error);
VpsQuarantine *vps_quarantine_ref (VpsQuarantine *q);
void vps_quarantine_unref (VpsQuarantine *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsQuarantine, vps_quarantine_unref)

const char *vps_quarantine_get_dir (VpsQuarantine *q);
gboolean vps_quarantine_valid_name (const char *name);
gboolean vps_quarantine_valid_id (const char *id);

/* `meta` may be NULL; it is copied, not modified.  *out_id (may be NULL)
 * receives the new id. */
gboolean vps_quarantine_store (VpsQuarantine *q, const char *name, GBytes *raw, JsonObject *meta,
                               char **out_id, GError **error);

/* Entries of one quarantine (`name`) or of all (NULL), sorted by id.
 * Unreadable entries are skipped with a warning in the log.  Element type
 * VpsQuarantineEntry. */
GPtrArray *vps_quarantine_list (VpsQuarantine *q, const char *name, GError **error);
VpsQuarantineEntry *vps_quarantine_get_entry (VpsQuarantine *q, const char *id, GError **error);
GBytes *vps_quarantine_get_raw (VpsQuarantine *q, const char *id, GError **error);
char *vps_quarantine_get_json (VpsQuarantine *q, const char *id, GError **error);
/* Removes ID.json, then ID.eml. */
gboolean vps_quarantine_delete (VpsQuarantine *q, const char *id, GError **error);

G_END_DECLS
