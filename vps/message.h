/* SPDX-License-Identifier: MIT
 *
 * message.h — one RFC 5322 message as the data stage sees it.
 *
 * Built from the raw bytes (CRLF or LF line ends) with GMime.  Parsing never
 * fails on broken MIME: it records GMime's parser warnings (multipart without
 * boundary, nesting overflow, truncated message, invalid header name ...) and
 * reports them as mime_valid = FALSE and mime_errors.  Only an I/O problem or
 * an empty input is an error.
 *
 * All strings returned are owned by the VpsMessage and valid until it is
 * freed; the object is immutable after construction (safe to read from any
 * thread).  Header lookups are case-insensitive on the name and return values
 * unfolded, with RFC 2047 encoded-words decoded, leading whitespace removed.
 *
 * Limits (VPS_MESSAGE_MAX_*) bound what is kept of a hostile message: the
 * number of headers, MIME parts and nesting depth examined, and the decoded
 * text kept for `body`.  Hitting one is itself a mime error
 * ("limit-headers", "limit-parts", "limit-depth").
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VPS_MESSAGE_MAX_HEADERS 10000
#define VPS_MESSAGE_MAX_PARTS 1000
#define VPS_MESSAGE_MAX_DEPTH 32
#define VPS_MESSAGE_MAX_BODY_TEXT (4 * 1024 * 1024)

#define VPS_MESSAGE_ERROR (vps_message_error_quark ())
GQuark vps_message_error_quark (void);

typedef enum
{
  VPS_MESSAGE_ERROR_IO,    /* vps_message_new_from_file(): cannot read */
  VPS_MESSAGE_ERROR_EMPTY, /* zero bytes */
} VpsMessageError;

typedef struct _VpsMessage VpsMessage;

VpsMessage *vps_message_new (GBytes *raw, GError **error);
VpsMessage *vps_message_new_from_file (const char *path, GError **error);
VpsMessage *vps_message_ref (VpsMessage *msg);
void vps_message_unref (VpsMessage *msg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsMessage, vps_message_unref)

/* The bytes it was built from, unchanged. */
GBytes *vps_message_get_raw (VpsMessage *msg);
gsize vps_message_get_size (VpsMessage *msg);

/* Top-level headers in order: name/value pairs, raw value (folded as it came,
 * without the leading space).  n is the number of headers. */
gsize vps_message_n_headers (VpsMessage *msg);
const char *vps_message_header_name (VpsMessage *msg, gsize i);
const char *vps_message_header_raw_value (VpsMessage *msg, gsize i);

/* Decoded values, as described above.  NULL / empty vector when absent. */
const char *vps_message_get_header (VpsMessage *msg, const char *name);
const char *const *vps_message_get_headers (VpsMessage *msg, const char *name, gsize *n);
gboolean vps_message_has_header (VpsMessage *msg, const char *name);
const char *vps_message_get_subject (VpsMessage *msg);
const char *vps_message_get_message_id (VpsMessage *msg); /* without <> */

/* Decoded (transfer encoding and charset → UTF-8) text/plain and text/html
 * parts joined with "\n", up to VPS_MESSAGE_MAX_BODY_TEXT. */
const char *vps_message_get_body_text (VpsMessage *msg, gsize *len);

gboolean vps_message_mime_valid (VpsMessage *msg);
const char *const *vps_message_mime_errors (VpsMessage *msg, gsize *n);
guint vps_message_mime_parts (VpsMessage *msg); /* leaf parts */
guint vps_message_mime_depth (VpsMessage *msg); /* 0 for a single-part message */
const char *const *vps_message_attachments (VpsMessage *msg, gsize *n); /* file names */
const char *const *
vps_message_content_types (VpsMessage *msg, gsize *n); /* "type/subtype", lower case, every part */

G_END_DECLS
