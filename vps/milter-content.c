/* SPDX-License-Identifier: MIT
 *
 * milter-content.c — one message's content as the MTA streams it (HEADER,
 * BODY), the end of message (EOB): the raw message rebuilt, the data stage
 * run, the accumulated modifications sent as SMFIR_* packets and the
 * verdict.
 *
 * Contract:
 * - headers are kept as sent (with their leading space under HDR_LEADSPC)
 *   up to [limits] max_header_size and VPS_MILTER_MAX_HEADERS; the body in
 *   memory up to [limits] memory_body_limit, then in a temporary file in
 *   $TMPDIR (mode 0600, removed when the message ends); a message over
 *   [limits] max_message_size is not kept and is refused at EOB with
 *   552 5.3.4 — memory stays bounded whatever the MTA sends;
 * - the raw message is the headers as sent, CRLF, the body (RFC 5322);
 * - modifications are sent in the order the rules gave them, only those the
 *   MTA granted; one it did not grant is logged (rate-limited), never
 *   dropped silently.  Header indices are computed against the headers as
 *   the MTA holds them after each edit (Postfix and Sendmail apply edits in
 *   order).  XXX: Postfix mishandles CHGHEADER of the very first header
 *   (MILTER.md): that one is inserted at the top and the old one deleted.
 */
#include "vps/milter-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "vps/log.h"
#include "vps/metrics.h"

/* ---- collecting ---------------------------------------------------------- */

void
vps_milter_content_reset (VpsMilterConn *conn)
{
  g_clear_pointer (&conn->headers, g_ptr_array_unref);
  g_clear_pointer (&conn->body, g_byte_array_unref);
  if (conn->body_fd >= 0)
    close (conn->body_fd);
  conn->body_fd = -1;
  if (conn->body_path != NULL)
    unlink (conn->body_path);
  g_clear_pointer (&conn->body_path, g_free);
  conn->header_bytes = 0;
  conn->body_size = 0;
  conn->too_big = FALSE;
}

static gboolean
leadspc (VpsMilterConn *conn)
{
  return (conn->negotiated.protocol & MILTER_PROTO_HDR_LEADSPC) != 0;
}

/* Append `s` with every bare LF made CRLF (MTAs pass folded header values
 * with LF line ends; the message we build is CRLF throughout). */
static void
append_crlf (GByteArray *out, const char *s, gsize len)
{
  for (gsize i = 0; i < len; i++)
    {
      if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
        g_byte_array_append (out, (const guint8 *)"\r", 1);
      g_byte_array_append (out, (const guint8 *)&s[i], 1);
    }
}

/* The header block as the message starts: "Name:" value CRLF ... CRLF. */
static GByteArray *
header_block (VpsMilterConn *conn)
{
  GByteArray *out = g_byte_array_sized_new ((guint)conn->header_bytes + 64);

  for (guint i = 0; conn->headers != NULL && i + 1 < conn->headers->len; i += 2)
    {
      const char *name = g_ptr_array_index (conn->headers, i);
      const char *value = g_ptr_array_index (conn->headers, i + 1);

      g_byte_array_append (out, (const guint8 *)name, (guint)strlen (name));
      /* without HDR_LEADSPC the MTA took the space after the colon away */
      g_byte_array_append (out, (const guint8 *)(leadspc (conn) ? ":" : ": "),
                           leadspc (conn) ? 1 : 2);
      append_crlf (out, value, strlen (value));
      g_byte_array_append (out, (const guint8 *)"\r\n", 2);
    }
  g_byte_array_append (out, (const guint8 *)"\r\n", 2);
  return out;
}

static gboolean
over_limit (VpsMilterConn *conn, gsize more)
{
  if (conn->too_big)
    return TRUE;
  if (conn->header_bytes + conn->body_size + more > conn->max_message_size
      || conn->header_bytes > conn->max_header_size)
    {
      vps_notice (vps_milter_conn_id (conn),
                  "milter: message over the size limit (%" G_GUINT64_FORMAT " bytes): "
                  "not kept, refused at end of message",
                  conn->max_message_size);
      /* drop what was kept: the message is refused anyway */
      vps_milter_content_reset (conn);
      conn->too_big = TRUE;
    }
  return conn->too_big;
}

gboolean
vps_milter_content_header (VpsMilterConn *conn, const char *name, const char *value, GError **error)
{
  gsize len = strlen (name) + strlen (value) + 4;

  if (conn->body_size > 0 || conn->body_fd >= 0)
    {
      g_set_error (error, VPS_MILTER_ERROR, VPS_MILTER_ERROR_PROTOCOL, "header after body");
      return FALSE;
    }
  if (conn->headers != NULL && conn->headers->len / 2 >= VPS_MILTER_MAX_HEADERS)
    {
      g_set_error (error, VPS_MILTER_ERROR, VPS_MILTER_ERROR_LIMIT, "more than %d headers",
                   VPS_MILTER_MAX_HEADERS);
      return FALSE;
    }
  conn->header_bytes += len;
  if (over_limit (conn, 0))
    return TRUE;
  if (conn->headers == NULL)
    conn->headers = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (conn->headers, g_strdup (name));
  g_ptr_array_add (conn->headers, g_strdup (value));
  return TRUE;
}

static gboolean
write_all (int fd, const guint8 *data, gsize len, GError **error)
{
  while (len > 0)
    {
      ssize_t n = write (fd, data, len);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          g_set_error (error, VPS_MILTER_ERROR, VPS_MILTER_ERROR_IO, "temporary file: %s",
                       g_strerror (errno));
          return FALSE;
        }
      data += n;
      len -= (gsize)n;
    }
  return TRUE;
}

/* Past memory_body_limit: the message so far (headers, blank line, body)
 * goes to a temporary file and the rest is appended there. */
static gboolean
spool (VpsMilterConn *conn, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GByteArray) head = header_block (conn);
  int fd = g_file_open_tmp ("vps-milter-XXXXXX", &conn->body_path, &local);

  if (fd < 0)
    {
      g_set_error (error, VPS_MILTER_ERROR, VPS_MILTER_ERROR_IO, "temporary file: %s",
                   local->message);
      return FALSE;
    }
  conn->body_fd = fd;
  if (!write_all (fd, head->data, head->len, error)
      || (conn->body && !write_all (fd, conn->body->data, conn->body->len, error)))
    return FALSE;
  g_clear_pointer (&conn->body, g_byte_array_unref);
  vps_debug (vps_milter_conn_id (conn), "milter: body spooled to %s", conn->body_path);
  return TRUE;
}

gboolean
vps_milter_content_body (VpsMilterConn *conn, GBytes *chunk, GError **error)
{
  gsize len = 0;
  const guint8 *data = g_bytes_get_data (chunk, &len);

  if (over_limit (conn, len))
    return TRUE;
  conn->body_size += len;
  if (conn->body_fd < 0 && conn->body_size > conn->memory_body_limit && !spool (conn, error))
    return FALSE;
  if (conn->body_fd >= 0)
    return write_all (conn->body_fd, data, len, error);
  if (conn->body == NULL)
    conn->body = g_byte_array_new ();
  g_byte_array_append (conn->body, data, (guint)len);
  return TRUE;
}

/* The raw message, or NULL when the MTA sent no content at all. */
static VpsMessage *
build_message (VpsMilterConn *conn, GError **error)
{
  g_autoptr (GByteArray) raw = NULL;
  g_autoptr (GBytes) bytes = NULL;

  if (conn->body_fd >= 0)
    {
      /* mapped: the mapping outlives the file name, removed at reset */
      close (conn->body_fd);
      conn->body_fd = -1;
      return vps_message_new_from_file (conn->body_path, error);
    }
  if (conn->headers == NULL && conn->body == NULL)
    return NULL;
  raw = header_block (conn);
  if (conn->body != NULL)
    g_byte_array_append (raw, conn->body->data, conn->body->len);
  bytes = g_byte_array_free_to_bytes (g_steal_pointer (&raw));
  return vps_message_new (bytes, error);
}

/* ---- end of message ---------------------------------------------------------- */

static void
end_message (VpsMilterConn *conn)
{
  conn->n_messages++;
  conn->txn_has_message = FALSE;
  conn->phase = PHASE_HELO;
  vps_milter_content_reset (conn);
}

void
vps_milter_content_eom (VpsMilterConn *conn)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsMessage) msg = NULL;
  gsize n = 0;
  const char *const *rcpts;

  if (conn->too_big)
    {
      g_autoptr (GError) local = NULL;

      if (!milter_encode_replycode (conn->out, 552, "5.3.4",
                                    "Message size exceeds fixed maximum message size", &local))
        milter_encode_reply_simple (conn->out, MILTER_REPLY_REJECT);
      vps_info (vps_milter_conn_id (conn), "milter: message verdict=reject (size limit)");
      end_message (conn);
      return;
    }
  msg = build_message (conn, &error);
  if (msg == NULL && error != NULL)
    {
      vps_warning (vps_milter_conn_id (conn), "milter: message not readable: %s: tempfail",
                   error->message);
      milter_encode_reply_simple (conn->out, MILTER_REPLY_TEMPFAIL);
      end_message (conn);
      return;
    }
  if (msg != NULL)
    vps_txn_set_message (conn->txn, msg);
  /* at data rcpt.* is the last accepted recipient, as {rcpt_addr} is */
  rcpts = vps_txn_get_rcpts (conn->txn, &n);
  if (n > 0)
    {
      g_autofree char *last = g_strdup (rcpts[n - 1]);
      vps_txn_set_rcpt (conn->txn, last, NULL);
    }
  vps_milter_conn_run_stage (conn, RULES_STAGE_DATA, MILTER_CMD_EOB, TRUE);
}

/* ---- modifications ------------------------------------------------------------ */

typedef struct
{
  VpsMilterConn *conn;
  GPtrArray *names; /* header names as the MTA holds them now (borrowed strings) */
  guint sent;
} Edit;

static gboolean
granted (Edit *e, guint32 action, const char *action_name, const VpsModification *m)
{
  g_autofree char *key = NULL;

  if ((e->conn->negotiated.actions & action) != 0)
    return TRUE;
  key = g_strdup_printf ("milter-not-granted-%s", vps_mod_op_name (m->op));
  vps_log_once (key, 60, G_LOG_LEVEL_WARNING, vps_milter_conn_id (e->conn),
                "milter: cannot apply %s%s%s (rule %s): the MTA did not grant %s",
                vps_mod_op_name (m->op), m->name ? " " : "", m->name ? m->name : "",
                m->rule ? m->rule : "?", action_name);
  return FALSE;
}

/* Under HDR_LEADSPC the MTA adds no space after the colon of what we add. */
static char *
header_value (Edit *e, const char *value)
{
  return leadspc (e->conn) ? g_strconcat (" ", value, NULL) : g_strdup (value);
}

/* Positions (in e->names) of the headers called `name`, in order. */
static GArray *
instances (Edit *e, const char *name)
{
  GArray *pos = g_array_new (FALSE, FALSE, sizeof (guint));

  for (guint i = 0; i < e->names->len; i++)
    if (g_ascii_strcasecmp (g_ptr_array_index (e->names, i), name) == 0)
      g_array_append_val (pos, i);
  return pos;
}

static void
add_header (Edit *e, const VpsModification *m)
{
  g_autofree char *v = NULL;

  if (!granted (e, MILTER_ACTION_ADDHDRS, "ADDHDRS", m))
    return;
  v = header_value (e, m->value);
  milter_encode_addheader (e->conn->out, m->name, v);
  g_ptr_array_add (e->names, m->name);
  e->sent++;
}

static void
insert_header (Edit *e, const VpsModification *m, guint at)
{
  g_autofree char *v = NULL;

  if (!granted (e, MILTER_ACTION_ADDHDRS, "ADDHDRS", m))
    return;
  at = MIN (at, e->names->len);
  v = header_value (e, m->value);
  milter_encode_insheader (e->conn->out, at, m->name, v);
  g_ptr_array_insert (e->names, (gint)at, m->name);
  e->sent++;
}

/* Delete the k-th (1-based) header called m->name, at position pos. */
static void
delete_instance (Edit *e, const VpsModification *m, guint k, guint pos)
{
  milter_encode_chgheader (e->conn->out, k, m->name, "");
  g_ptr_array_remove_index (e->names, pos);
  e->sent++;
}

static void
change_instance (Edit *e, const VpsModification *m, guint k, guint pos)
{
  g_autofree char *v = header_value (e, m->value);

  if (pos == 0)
    {
      /* XXX: Postfix misplaces a change of the very first header; insert
       * the new one on top, then delete the old one, which is now the
       * (k+1)-th of its name */
      if (!granted (e, MILTER_ACTION_ADDHDRS, "ADDHDRS", m))
        return;
      milter_encode_insheader (e->conn->out, 0, m->name, v);
      g_ptr_array_insert (e->names, 0, m->name);
      delete_instance (e, m, k + 1, 1);
      e->sent++;
      return;
    }
  milter_encode_chgheader (e->conn->out, k, m->name, v);
  e->sent++;
}

static void
remove_header (Edit *e, const VpsModification *m)
{
  g_autoptr (GArray) pos = NULL;

  if (!granted (e, MILTER_ACTION_CHGHDRS, "CHGHDRS", m))
    return;
  pos = instances (e, m->name);
  /* last first: deleting one renumbers those after it */
  for (guint k = pos->len; k >= 1; k--)
    if (m->index <= 0 || (guint)m->index == k)
      delete_instance (e, m, k, g_array_index (pos, guint, k - 1));
}

/* set_header as vps_modify_apply_message does it: the first (or the
 * index-th) instance gets the value, with index 0 the others go; none →
 * added at the end. */
static void
set_header (Edit *e, const VpsModification *m)
{
  g_autoptr (GArray) pos = instances (e, m->name);

  if (pos->len == 0 || (m->index > 0 && (guint)m->index > pos->len))
    {
      add_header (e, m);
      return;
    }
  if (!granted (e, MILTER_ACTION_CHGHDRS, "CHGHDRS", m))
    return;
  if (m->index > 0)
    {
      change_instance (e, m, (guint)m->index, g_array_index (pos, guint, m->index - 1));
      return;
    }
  for (guint k = pos->len; k >= 2; k--)
    delete_instance (e, m, k, g_array_index (pos, guint, k - 1));
  change_instance (e, m, 1, g_array_index (pos, guint, 0));
}

/* "<a@b> NOTIFY=NEVER" or "a@b NOTIFY=NEVER" → "<a@b>" and the args (or NULL). */
static char *
split_address (const char *value, char **args)
{
  const char *end;
  g_autofree char *addr = NULL;

  while (*value == ' ')
    value++;
  end = value[0] == '<' ? strchr (value, '>') : strchr (value, ' ');
  if (end == NULL)
    end = value + strlen (value);
  else if (value[0] == '<')
    end++;
  addr = g_strndup (value, (gsize)(end - value));
  while (*end == ' ')
    end++;
  *args = *end ? g_strdup (end) : NULL;
  return addr[0] == '<' ? g_steal_pointer (&addr) : g_strdup_printf ("<%s>", addr);
}

static void
envelope_edit (Edit *e, const VpsModification *m)
{
  g_autofree char *args = NULL;
  g_autofree char *addr = split_address (m->value, &args);
  GByteArray *out = e->conn->out;

  switch (m->op)
    {
      case VPS_MOD_SET_SENDER:
        if (!granted (e, MILTER_ACTION_CHGFROM, "CHGFROM", m))
          return;
        milter_encode_chgfrom (out, addr, args);
        break;
      case VPS_MOD_ADD_RCPT:
        if (args != NULL && (e->conn->negotiated.actions & MILTER_ACTION_ADDRCPT_PAR))
          milter_encode_addrcpt_par (out, addr, args);
        else if (granted (e, MILTER_ACTION_ADDRCPT, "ADDRCPT", m))
          {
            if (args != NULL)
              vps_log_once ("milter-addrcpt-args", 60, G_LOG_LEVEL_WARNING,
                            vps_milter_conn_id (e->conn),
                            "milter: add_rcpt %s: parameters dropped (no ADDRCPT_PAR)", addr);
            milter_encode_addrcpt (out, addr);
          }
        else
          return;
        break;
      case VPS_MOD_REMOVE_RCPT:
        if (!granted (e, MILTER_ACTION_DELRCPT, "DELRCPT", m))
          return;
        milter_encode_delrcpt (out, addr);
        break;
      default:
        return;
    }
  e->sent++;
}

static void
replace_body (Edit *e, const VpsModification *m)
{
  g_autoptr (GByteArray) body = g_byte_array_new ();

  if (!granted (e, MILTER_ACTION_CHGBODY, "CHGBODY", m))
    return;
  append_crlf (body, m->value, strlen (m->value));
  milter_encode_replbody (e->conn->out, body->data, body->len);
  e->sent++;
}

static guint
send_modifications (VpsMilterConn *conn)
{
  GPtrArray *mods = vps_txn_get_modifications (conn->txn);
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  Edit e = { conn, names, 0 };

  for (guint i = 0; conn->headers != NULL && i < conn->headers->len; i += 2)
    g_ptr_array_add (names, g_ptr_array_index (conn->headers, i));
  for (guint i = 0; mods != NULL && i < mods->len; i++)
    {
      const VpsModification *m = g_ptr_array_index (mods, i);

      switch (m->op)
        {
          case VPS_MOD_ADD_HEADER:
            add_header (&e, m);
            break;
          case VPS_MOD_INSERT_HEADER:
            insert_header (&e, m, (guint)MAX (m->index, 0));
            break;
          case VPS_MOD_SET_HEADER:
            set_header (&e, m);
            break;
          case VPS_MOD_REMOVE_HEADER:
            remove_header (&e, m);
            break;
          case VPS_MOD_SET_SENDER:
          case VPS_MOD_ADD_RCPT:
          case VPS_MOD_REMOVE_RCPT:
            envelope_edit (&e, m);
            break;
          case VPS_MOD_REPLACE_BODY:
            replace_body (&e, m);
            break;
          case VPS_MOD_QUARANTINE: /* the verdict's business */
          default:
            break;
        }
    }
  return e.sent;
}

/* ---- quarantine and verdict ------------------------------------------------------ */

/* The rule that named the quarantine (the last stage that said so). */
static const char *
quarantine_rule (VpsTxn *txn)
{
  GPtrArray *results = vps_txn_get_stage_results (txn);

  for (guint i = results ? results->len : 0; i > 0; i--)
    {
      const VpsStageResult *r = g_ptr_array_index (results, i - 1);
      if (r->verdict == RULES_VERDICT_QUARANTINE)
        return r->rule;
    }
  return NULL;
}

static void
quarantine (VpsMilterConn *conn, const char *name)
{
  const char *rule = quarantine_rule (conn->txn);
  g_autofree char *reason = rule ? g_strdup_printf ("%s (rule %s)", name, rule) : g_strdup (name);

  if (conn->negotiated.actions & MILTER_ACTION_QUARANTINE)
    milter_encode_quarantine (conn->out, reason);
  else
    vps_log_once ("milter-not-granted-quarantine", 60, G_LOG_LEVEL_WARNING,
                  vps_milter_conn_id (conn),
                  "milter: cannot quarantine at the MTA (%s): QUARANTINE not granted", reason);
  if (conn->store_quarantine)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *id = NULL;

      if (vps_txn_get_message (conn->txn) == NULL)
        vps_warning (vps_milter_conn_id (conn),
                     "milter: quarantine %s: no content to store (MTA sent none)", name);
      else if (!vps_engine_quarantine_txn (conn->engine, conn->txn, &id, &error))
        vps_warning (vps_milter_conn_id (conn), "milter: quarantine store: %s", error->message);
      else
        vps_info (vps_milter_conn_id (conn), "milter: quarantined as %s/%s", name, id);
    }
}

void
vps_milter_content_finish (VpsMilterConn *conn, const VpsStageResult *r)
{
  const char *q = vps_txn_get_quarantine (conn->txn);
  const char *qid = vps_txn_get_queue_id (conn->txn);
  guint sent = 0;

  if (r->verdict == RULES_VERDICT_REJECT || r->verdict == RULES_VERDICT_TEMPFAIL
      || r->verdict == RULES_VERDICT_DISCARD)
    vps_milter_conn_stage_reply (conn, RULES_STAGE_DATA, r);
  else
    {
      vps_metrics_count_message (VPS_METRICS_FRONTEND_MILTER);
      /* edits first: the MTA takes them only before the verdict */
      sent = send_modifications (conn);
      if (q != NULL)
        quarantine (conn, q);
      milter_encode_reply_simple (conn->out, r->verdict == RULES_VERDICT_ACCEPT_ALL
                                                 ? MILTER_REPLY_ACCEPT
                                                 : MILTER_REPLY_CONTINUE);
    }
  vps_info (vps_milter_conn_id (conn), "milter: message queue_id=%s verdict=%s%s%s edits=%u",
            qid ? qid : "-", rules_verdict_name (r->verdict), q ? " quarantine=" : "", q ? q : "",
            sent);
  end_message (conn);
}
