/* SPDX-License-Identifier: MIT
 *
 * modify.h — message and envelope modifications, and applying them.
 *
 * A VpsModification is what a rule action or a connector asks for; they
 * accumulate on the transaction and the front end that can apply them does
 * (milter: SMFIR_* at end of message; vsmtpd: on the queued message).
 *
 * vps_modify_apply_message() applies the header and body operations to a raw
 * RFC 5322 message (GBytes in, GBytes out):
 *   add_header     appended at the end of the header block
 *   insert_header  at position `index` among the headers (0 = the top)
 *   set_header     replace every instance (index 0) or the index-th instance
 *                  (1-based, milter CHGHEADER style); added at the end when
 *                  there is none
 *   remove_header  every instance (index 0) or the index-th one
 *   replace_body   the body after the blank line is replaced
 * Line ends of the input (CRLF or LF) are preserved and used for what is
 * added; header name matching is case-insensitive.  Envelope operations
 * (set_sender, add_rcpt, remove_rcpt) and quarantine are ignored there;
 * vps_modify_apply_envelope() applies the envelope ones.
 *
 * Every value is validated before it is accepted (vps_modification_validate,
 * with proto/mail's header rules: names printable ASCII without ':', values
 * without CR, LF, NUL or controls): a refused modification is an error,
 * never applied.  Added headers are folded at 78 columns where whitespace
 * allows (mail_header_fold_full).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VPS_MODIFY_ERROR (vps_modify_error_quark ())
GQuark vps_modify_error_quark (void);

typedef enum
{
  VPS_MODIFY_ERROR_INVALID_NAME,  /* header name empty, too long or with bad characters */
  VPS_MODIFY_ERROR_INVALID_VALUE, /* CR, LF or NUL in a value, or too long */
  VPS_MODIFY_ERROR_MALFORMED,     /* the message has no header/body structure we can edit */
} VpsModifyError;

/* Named limits for values we are asked to add. */
/* header names and values: MAIL_MAX_HEADER_NAME / MAIL_MAX_HEADER_VALUE of
 * proto/mail/mail-header.h */
#define VPS_MODIFY_MAX_ADDRESS 256
#define VPS_MODIFY_MAX_BODY (64 * 1024 * 1024)

typedef enum
{
  VPS_MOD_ADD_HEADER,
  VPS_MOD_INSERT_HEADER,
  VPS_MOD_SET_HEADER,
  VPS_MOD_REMOVE_HEADER,
  VPS_MOD_SET_SENDER,
  VPS_MOD_ADD_RCPT,
  VPS_MOD_REMOVE_RCPT,
  VPS_MOD_REPLACE_BODY,
  VPS_MOD_QUARANTINE,
} VpsModOp;

typedef struct
{
  VpsModOp op;
  char *name;  /* header name (header ops), quarantine name; else NULL */
  char *value; /* header value, address, body; else NULL */
  gint index;  /* insert position / instance (see above); 0 by default */
  char *rule;  /* rule or connector that asked for it, or NULL */
} VpsModification;

/* "add_header", ... as in the `vpsctl run --json` report. */
const char *vps_mod_op_name (VpsModOp op);
gboolean vps_mod_op_from_name (const char *name, VpsModOp *out);

/* A new modification (strings copied, NULL allowed where unused).  It is
 * validated: NULL with *error set when the name or value is refused. */
VpsModification *vps_modification_new (VpsModOp op, const char *name, const char *value, gint index,
                                       GError **error);
VpsModification *vps_modification_copy (const VpsModification *mod);
void vps_modification_free (VpsModification *mod);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsModification, vps_modification_free)

gboolean vps_modification_validate (VpsModOp op, const char *name, const char *value,
                                    GError **error);

/* Header and body operations of `mods` (VpsModification*) applied to `raw`,
 * in order.  A message without a blank line is all headers (body added
 * when replaced).  NULL + error only for VPS_MODIFY_ERROR_MALFORMED. */
GBytes *vps_modify_apply_message (GBytes *raw, GPtrArray *mods, GError **error);

/* Envelope operations applied: *sender replaced by set_sender (g_free'd),
 * rcpts (a GPtrArray of g_malloc'd strings with g_free as free func) gets
 * add_rcpt appended (unless present) and remove_rcpt removed
 * (case-insensitive). */
void vps_modify_apply_envelope (GPtrArray *mods, char **sender, GPtrArray *rcpts);

G_END_DECLS
