/* SPDX-License-Identifier: MIT
 *
 * queue.h — vsmtpd's spool: durable message files and their envelopes.
 *
 * Layout under [queue] dir (every directory 0700, every file 0600):
 *   tmp/        being written (ID.eml, ID.json); never trusted after a crash
 *   incoming/   committed: ID.eml (the message, CRLF line ends, as it will be
 *               delivered) and ID.json (the envelope); both or neither
 *   hold/       put aside by `vpsctl queue hold`; released back to incoming/
 *   corrupt/    what recovery could not read, moved aside and logged
 *   dead/       what could be neither delivered nor bounced (vps_queue_bury);
 *               kept for the admin, never retried
 *   lock        flock()ed by the one process that owns the spool, which writes
 *               its pid there (`vpsctl queue flush` signals it, SIGUSR1)
 *
 * Durability (TESTING.md, "Durability"): a commit writes the envelope to
 * tmp/, fsyncs the message and the envelope, renames the message and then
 * the envelope into incoming/ and fsyncs incoming/ — all before the caller
 * answers 250.  The envelope's presence in incoming/ is the commit point.
 * The file fsyncs of concurrent commits run side by side on a thread pool
 * (the file system folds them into one journal commit); then a committer
 * thread takes every commit so synced, renames them and fsyncs incoming/
 * once for all of them (group commit).  Any failure (ENOSPC, EIO, rename)
 * fails the commit with no file left behind in tmp/ or incoming/
 * (G_IO_ERROR_NO_SPACE for ENOSPC, so the session answers 451 4.3.0, or
 * 452 4.3.1).  A removal is not synced (a crash may bring a delivered
 * message back: a duplicate, never a loss); an envelope update is.
 *
 * Queue ids are 16 upper-case hex digits: microseconds since the epoch,
 * made strictly increasing within the process (so ids sort by arrival time
 * and never repeat; the spool lock keeps other processes out).  No file
 * name ever comes from message data: only ids made here (or checked with
 * vps_queue_valid_id) name files.
 *
 * Recovery (vps_queue_open): a rewrite cut between its two renames is
 * finished (vps_queue_rewrite_message), then tmp/ is emptied; in incoming/ and hold/, an
 * ID.eml without ID.json is an incomplete commit and removed; an envelope
 * that does not parse, names another id, or has no message, is moved with
 * its message to corrupt/ and logged (one line per file, with the id); so
 * is a message whose size is not the envelope's "size" (truncated).  Ids
 * made afterwards are above every id found in the spool, so a clock set
 * back across a restart cannot reuse one.
 *
 * Moves keep that invariant at every instant (a crash anywhere leaves a
 * state recovery repairs without loss): hold and release link ID.eml into
 * the destination, rename ID.json there (the commit point), then unlink the
 * old ID.eml; remove unlinks ID.json first; recovery moves a corrupt ID.eml
 * before its ID.json.
 *
 * Thread safety: a VpsQueue may be used from every worker thread; writers
 * belong to one thread.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define VPS_QUEUE_ERROR (vps_queue_error_quark ())
GQuark vps_queue_error_quark (void);

typedef enum
{
  VPS_QUEUE_ERROR_LOCKED, /* another process owns the spool */
  VPS_QUEUE_ERROR_NOT_FOUND,
  VPS_QUEUE_ERROR_INVALID_ID,
  VPS_QUEUE_ERROR_CORRUPT, /* an envelope that does not parse */
} VpsQueueError;
/* I/O failures are G_IO_ERROR (g_io_error_from_errno), ENOSPC included. */

#define VPS_QUEUE_ID_LEN 16
/* What an envelope file may weigh when read back (bounded parsing). */
#define VPS_QUEUE_MAX_ENVELOPE (16 * 1024 * 1024)
/* Bytes the writer buffers before a write(2). */
#define VPS_QUEUE_WRITE_BUFFER (64 * 1024)

/* ---- envelope -------------------------------------------------------------- */

typedef enum
{
  VPS_RCPT_PENDING,   /* not delivered yet */
  VPS_RCPT_DEFERRED,  /* last attempt failed temporarily */
  VPS_RCPT_DELIVERED, /* done */
  VPS_RCPT_FAILED,    /* failed permanently (bounce: issue 9) */
} VpsRcptState;

const char *vps_rcpt_state_name (VpsRcptState state); /* "pending" */

typedef struct
{
  char *address; /* without <> */
  char *orcpt;   /* DSN ORCPT "type;addr" decoded, or NULL */
  guint notify;  /* SmtpNotify bits (proto/smtp), 0 = default */
  VpsRcptState state;
  char *result;   /* last result, one line ("250 2.0.0 delivered to maildir ..."), or NULL */
  gint64 updated; /* unix time (µs) of the last state change */
} VpsQueueRcpt;

typedef struct
{
  char *id;
  char *sender; /* "" for <> (NULL from vps_envelope_new: written as "") */
  char *ret;    /* DSN RET: "FULL", "HDRS" or NULL */
  char *envid;  /* DSN ENVID decoded, or NULL */
  char *body;   /* "7BIT", "8BITMIME", "BINARYMIME" or NULL */
  gboolean smtputf8;
  guint64 size;     /* octets of ID.eml */
  gint64 received;  /* unix time (µs) of the 250 */
  char *session_id; /* the SMTP session (log correlation) */
  char *client_ip;
  char *client_ptr;      /* or NULL */
  char *helo;            /* or NULL */
  char *auth_user;       /* or NULL */
  char *tls;             /* "TLSv1.3 TLS_AES_256_GCM_SHA384" or NULL */
  guint attempts;        /* delivery attempts so far */
  gint64 next_attempt;   /* unix time (µs), 0 = now */
  gboolean postq;        /* the postq stage ran and let the message through */
  char *route;           /* the postq stage's route for every recipient ("relay:[HOST]:PORT",
                        * "mx", "maildir:PATH", "mbox:PATH"), or NULL: [delivery] default */
  gboolean delay_warned; /* the sender was warned of the delay ([queue] delay_warning) */
  GPtrArray *rcpts;      /* VpsQueueRcpt*, owned */
  JsonObject *report;    /* the engine's verdicts (vps/report.h), or NULL; owned ref */
} VpsEnvelope;

VpsEnvelope *vps_envelope_new (void);
void vps_envelope_free (VpsEnvelope *env);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsEnvelope, vps_envelope_free)
VpsQueueRcpt *vps_envelope_add_rcpt (VpsEnvelope *env, const char *address, const char *orcpt,
                                     guint notify);
/* TRUE when every recipient is delivered or failed. */
gboolean vps_envelope_done (const VpsEnvelope *env);

/* The JSON form (the queue file, `vpsctl queue show --format json`):
 * {"id", "sender", "ret", "envid", "body", "smtputf8", "size", "received"
 *  (RFC 3339), "session", "client": {"ip","ptr","helo","auth_user","tls"},
 *  "attempts", "next_attempt", "postq" (boolean: the postq stage passed),
 *  "route" (the postq stage's route, or null), "delay_warned" (boolean),
 *  "recipients": [{"address","orcpt","notify": ["success",...],"state",
 *  "result","updated"}], "report": {...}}.
 * Every member is written, in this order; NULL strings and a NULL report
 * are null.  Times ("received", "next_attempt", "updated") are RFC 3339 UTC
 * with microseconds, "2026-11-28T21:40:00.123456Z"; a time of 0 ("now",
 * "never changed") is null.  "notify" lists the SmtpNotify bits by name
 * ("success", "failure", "delay", "never"; [] = default); "state" is
 * vps_rcpt_state_name().
 * Parsing is strict: unknown types, missing id/sender/recipients (or none),
 * an invalid id, unknown members or names, "never" with another notify,
 * control characters (below 0x20, 0x7F; CR, LF, NUL among them) in any
 * string outside "report" → VPS_QUEUE_ERROR_CORRUPT.  Absent optional
 * members take their zero value. */
JsonObject *vps_envelope_to_json (const VpsEnvelope *env);
VpsEnvelope *vps_envelope_from_json (JsonObject *object, GError **error);
/* What vps_envelope_from_json() would refuse, checked on the struct (a
 * commit refuses such an envelope before writing anything). */
gboolean vps_envelope_check (const VpsEnvelope *env, GError **error);
/* The file form: vps_envelope_to_json() as UTF-8 text with a final LF. */
char *vps_envelope_to_data (const VpsEnvelope *env, gboolean pretty, gsize *length);
/* Parse a file's bytes: more than VPS_QUEUE_MAX_ENVELOPE, text that is not
 * one JSON object (trailing values), a duplicate member or an escaped NUL
 * (which json-glib would silently cut a string at) → VPS_QUEUE_ERROR_CORRUPT,
 * then vps_envelope_from_json(). */
VpsEnvelope *vps_envelope_from_data (const char *data, gsize length, GError **error);
/* The envelope file of queue id `id`: vps_envelope_from_data(), errors
 * prefixed with the id, and an envelope naming another id refused. */
VpsEnvelope *vps_envelope_from_file_data (const char *id, GBytes *data, GError **error);
/* The same checks without the envelope schema: the stored object as is
 * (`vpsctl queue show --format json`). */
JsonNode *vps_envelope_parse_data (const char *data, gsize length, GError **error);
/* A time as the JSON form writes it ("2026-11-28T21:40:00.123456Z"). */
char *vps_envelope_format_time (gint64 usec);

/* ---- the spool --------------------------------------------------------------- */

typedef struct _VpsQueue VpsQueue;

/* Create the layout when missing, take the lock, recover.  `recover` FALSE
 * (vpsctl on a spool a running vsmtpd owns) opens without lock or recovery
 * and creates nothing: the directory must exist (G_IO_ERROR_NOT_FOUND). */
VpsQueue *vps_queue_open (const char *dir, gboolean recover, GError **error);
VpsQueue *vps_queue_ref (VpsQueue *q);
void vps_queue_unref (VpsQueue *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsQueue, vps_queue_unref)
const char *vps_queue_get_dir (VpsQueue *q);

gboolean vps_queue_valid_id (const char *id);
/* A new id (what writers use): strictly increasing in the process. */
char *vps_queue_new_id (void);
/* Tests: how many times the committer fsynced incoming/ (one per group of
 * concurrent commits). */
guint64 vps_queue_get_dir_syncs (VpsQueue *q);

/* Free space check at MAIL (statvfs of the spool): FALSE when fewer than
 * `need` bytes are available to an unprivileged writer. */
gboolean vps_queue_has_space (VpsQueue *q, guint64 need);

/* ---- writing one message ------------------------------------------------- */

typedef struct _VpsQueueWriter VpsQueueWriter;

/* A new id and tmp/ID.eml (O_CREAT|O_EXCL, 0600). */
VpsQueueWriter *vps_queue_writer_new (VpsQueue *q, GError **error);
const char *vps_queue_writer_get_id (VpsQueueWriter *w);
/* Buffered append; errors stick (later calls fail the same way). */
gboolean vps_queue_writer_write (VpsQueueWriter *w, const void *data, gsize len, GError **error);
/* Flush the buffer (no fsync) and map the file read-only: the message as
 * written, for the engine's data stage.  The bytes stay valid after the
 * writer is gone. */
GBytes *vps_queue_writer_map (VpsQueueWriter *w, GError **error);
/* Replace the whole content (modifications applied by the data stage). */
gboolean vps_queue_writer_replace (VpsQueueWriter *w, GBytes *content, GError **error);
guint64 vps_queue_writer_get_size (VpsQueueWriter *w);
/* Remove tmp/ID.eml and free (rejected, discarded, aborted sessions). */
void vps_queue_writer_abort (VpsQueueWriter *w);

/* Commit: env->id must be the writer's id; env->size is set here (and
 * env->received when 0).  The envelope is checked (vps_envelope_check)
 * and serialised on the calling thread; one the reader would refuse fails
 * the commit with VPS_QUEUE_ERROR_CORRUPT before a file is touched.  Runs the fsyncs off the
 * calling thread; the callback comes on the caller's thread-default main
 * context, with a NULL source object.  The writer is consumed (freed)
 * either way; on failure nothing remains in tmp/ or incoming/. */
void vps_queue_commit_async (VpsQueue *q, VpsQueueWriter *w, VpsEnvelope *env,
                             GAsyncReadyCallback callback, gpointer user_data);
gboolean vps_queue_commit_finish (VpsQueue *q, GAsyncResult *result, GError **error);
/* The same, blocking (tools, tests). */
gboolean vps_queue_commit_sync (VpsQueue *q, VpsQueueWriter *w, VpsEnvelope *env, GError **error);

/* ---- reading and managing --------------------------------------------------- */

typedef enum
{
  VPS_QUEUE_INCOMING,
  VPS_QUEUE_HOLD,
  VPS_QUEUE_CORRUPT,
  VPS_QUEUE_DEAD,
} VpsQueueArea;

const char *vps_queue_area_name (VpsQueueArea area); /* "incoming" */

/* Ids in an area, oldest first (char*, owned). */
GPtrArray *vps_queue_list (VpsQueue *q, VpsQueueArea area, GError **error);
/* Find which area holds id (incoming, then hold). */
gboolean vps_queue_locate (VpsQueue *q, const char *id, VpsQueueArea *area, GError **error);
VpsEnvelope *vps_queue_load_envelope (VpsQueue *q, const char *id, GError **error);
/* The envelope file's bytes as stored (bounded by VPS_QUEUE_MAX_ENVELOPE). */
GBytes *vps_queue_load_envelope_data (VpsQueue *q, const char *id, GError **error);
/* The message, mapped. */
GBytes *vps_queue_load_message (VpsQueue *q, const char *id, GError **error);
/* Rewrite the envelope durably (tmp, fsync, rename, fsync dir): recipient
 * states after a delivery attempt.  The new file replaces the old one in
 * one atomic exchange: a message held or removed meanwhile (vpsctl) is
 * not brought back but fails with VPS_QUEUE_ERROR_NOT_FOUND. */
gboolean vps_queue_update_envelope (VpsQueue *q, const VpsEnvelope *env, GError **error);
/* Replace a message in incoming/ and its envelope (env->size is set to
 * the new content's length) durably: both written to tmp/ and fsynced,
 * renamed over ID.eml then ID.json, incoming/ fsynced (the postq stage's
 * header edits).  A message not in incoming/ (held or removed meanwhile)
 * → VPS_QUEUE_ERROR_NOT_FOUND, nothing changed.  A crash between the two
 * renames leaves the new message with the old envelope, whose size does
 * not match, and the new envelope in tmp/: recovery finishes the rewrite
 * (when the two are the same length the old envelope stays and postq runs
 * again on the new message). */
gboolean vps_queue_rewrite_message (VpsQueue *q, VpsEnvelope *env, GBytes *content, GError **error);
/* Delivered to every recipient (or deleted by the admin): remove the
 * envelope first (the commit point), then the message.  No directory
 * fsync: a crash soon after may bring the message back (delivered again,
 * allowed), never lose one. */
gboolean vps_queue_remove (VpsQueue *q, const char *id, GError **error);
/* incoming/ → hold/ and back; holding a held message (releasing one in
 * incoming/) succeeds and changes nothing. */
gboolean vps_queue_hold (VpsQueue *q, const char *id, GError **error);
gboolean vps_queue_release (VpsQueue *q, const char *id, GError **error);
/* incoming/ or hold/ → dead/ (same crash-safe move as hold): a message
 * that could be neither delivered nor bounced. */
gboolean vps_queue_bury (VpsQueue *q, const char *id, GError **error);

G_END_DECLS
