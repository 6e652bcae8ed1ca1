/* SPDX-License-Identifier: MIT
 *
 * message.c — the data stage's view of one RFC 5322 message (message.h),
 * built with GMime 3.2 (RFC 2045-2049 MIME, RFC 2047 encoded words,
 * RFC 2231 parameters).
 *
 * Everything is computed once, at construction, into plain strings owned by
 * the VpsMessage; the GMime objects are dropped before returning, so the
 * object is immutable and readable from any thread.  Hostile input never
 * fails the parse: GMime's parser warnings become mime_errors (stable
 * kebab-case names), and our own walk of the MIME tree stops at the
 * VPS_MESSAGE_MAX_* limits (recorded as "limit-*" errors).  Everything
 * kept is valid UTF-8 (invalid bytes become U+FFFD).
 */
#include "vps/message.h"

#include <gmime/gmime.h>
#include <string.h>

G_DEFINE_QUARK (vps - message - error - quark, vps_message_error)

/* GMime 3.2 declares no autoptr cleanups; local aliases avoid clashing
 * with a future GMime that does. */
typedef GMimeStream VpsMimeStream;
typedef GMimeParser VpsMimeParser;
typedef GMimeMessage VpsMimeMessage;
typedef GMimeParserOptions VpsMimeOptions;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsMimeStream, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsMimeParser, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsMimeMessage, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsMimeOptions, g_mime_parser_options_free)

struct _VpsMessage
{
  gatomicrefcount ref;
  GBytes *raw;
  GPtrArray *names;      /* top-level header names, in order */
  GPtrArray *raw_values; /* their raw values */
  GHashTable *by_name;   /* lower-case name → GPtrArray of decoded values (NULL-terminated) */
  char *message_id;
  GString *body;
  GPtrArray *errors;        /* NULL-terminated, each name once */
  GPtrArray *attachments;   /* NULL-terminated */
  GPtrArray *content_types; /* NULL-terminated */
  guint parts;
  guint depth;
};

/* State of one construction (the parser's warning callback writes here). */
typedef struct
{
  VpsMessage *msg;
  VpsMimeOptions *options;
  guint visited; /* MIME objects walked, for VPS_MESSAGE_MAX_PARTS */
} Build;

static const char *const warning_names[] = {
  [GMIME_WARN_DUPLICATED_HEADER] = "duplicated-header",
  [GMIME_WARN_DUPLICATED_PARAMETER] = "duplicated-parameter",
  [GMIME_WARN_UNENCODED_8BIT_HEADER] = "unencoded-8bit-header",
  [GMIME_WARN_INVALID_CONTENT_TYPE] = "invalid-content-type",
  [GMIME_WARN_INVALID_RFC2047_HEADER_VALUE] = "invalid-rfc2047-header-value",
  [GMIME_WARN_MALFORMED_MULTIPART] = "malformed-multipart",
  [GMIME_WARN_TRUNCATED_MESSAGE] = "truncated-message",
  [GMIME_WARN_MALFORMED_MESSAGE] = "malformed-message",
  [GMIME_CRIT_INVALID_HEADER_NAME] = "invalid-header-name",
  [GMIME_CRIT_CONFLICTING_HEADER] = "conflicting-header",
  [GMIME_CRIT_CONFLICTING_PARAMETER] = "conflicting-parameter",
  [GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY] = "multipart-without-boundary",
  [GMIME_WARN_INVALID_PARAMETER] = "invalid-parameter",
  [GMIME_WARN_INVALID_ADDRESS_LIST] = "invalid-address-list",
  [GMIME_CRIT_NESTING_OVERFLOW] = "nested-too-deep",
  [GMIME_WARN_PART_WITHOUT_CONTENT] = "part-without-content",
  [GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT] = "part-without-headers-or-content",
};

static void
mime_init (void)
{
  static gsize once = 0;

  /* g_mime_init() is not thread-safe and must run once per process. */
  if (g_once_init_enter (&once))
    {
      g_mime_init ();
      g_once_init_leave (&once, 1);
    }
}

static void
add_error (VpsMessage *msg, const char *name)
{
  for (guint i = 0; i + 1 < msg->errors->len; i++)
    if (strcmp (g_ptr_array_index (msg->errors, i), name) == 0)
      return;
  /* keep the array NULL-terminated */
  g_ptr_array_insert (msg->errors, (gint)msg->errors->len - 1, g_strdup (name));
}

static void
on_warning (gint64 offset, GMimeParserWarning code, const gchar *item, gpointer user_data)
{
  Build *b = user_data;
  const char *name = NULL;

  if ((gsize)code < G_N_ELEMENTS (warning_names))
    name = warning_names[code];
  add_error (b->msg, name != NULL ? name : "unknown-warning");
}

static void
append_terminated (GPtrArray *array, char *s)
{
  g_ptr_array_insert (array, (gint)array->len - 1, s);
}

static GPtrArray *
terminated_array (void)
{
  GPtrArray *a = g_ptr_array_new_with_free_func (g_free);

  g_ptr_array_add (a, NULL);
  return a;
}

/* ---- headers ------------------------------------------------------------ */

static char *
valid_utf8 (const char *s, gssize len)
{
  return g_utf8_make_valid (s != NULL ? s : "", s != NULL ? len : 0);
}

static gint
header_offset_cmp (gconstpointer a, gconstpointer b)
{
  gint64 x = g_mime_header_get_offset (*(GMimeHeader *const *)a);
  gint64 y = g_mime_header_get_offset (*(GMimeHeader *const *)b);

  /* headers GMime made up (offset -1) go last */
  if (x < 0 || y < 0)
    return (x < 0) - (y < 0);
  return x < y ? -1 : x > y;
}

static void
add_list (GPtrArray *all, GMimeObject *obj)
{
  GMimeHeaderList *list = obj != NULL ? g_mime_object_get_header_list (obj) : NULL;
  int n = list != NULL ? g_mime_header_list_get_count (list) : 0;

  for (int i = 0; i < n; i++)
    g_ptr_array_add (all, g_mime_header_list_get_header_at (list, i));
}

/* GMime files the top-level Content-* headers under the message's MIME
 * part, not the message: merge both lists back into file order by offset. */
static void
collect_headers (Build *b, GMimeMessage *message)
{
  VpsMessage *msg = b->msg;
  g_autoptr (GPtrArray) all = g_ptr_array_new ();
  guint n;

  add_list (all, GMIME_OBJECT (message));
  add_list (all, g_mime_message_get_mime_part (message));
  g_ptr_array_sort (all, header_offset_cmp); /* stable (merge sort) */
  n = all->len;
  if (n > VPS_MESSAGE_MAX_HEADERS)
    {
      add_error (msg, "limit-headers");
      n = VPS_MESSAGE_MAX_HEADERS;
    }
  for (guint i = 0; i < n; i++)
    {
      GMimeHeader *h = g_ptr_array_index (all, i);
      const char *raw = g_mime_header_get_raw_value (h);
      g_autofree char *name = valid_utf8 (g_mime_header_get_name (h), -1);
      g_autofree char *lower = g_ascii_strdown (name, -1);
      g_autofree char *unfolded = NULL;
      g_autofree char *decoded = NULL;
      char *value;
      gsize len;
      GPtrArray *values;

      /* The raw value as it came: without the blank after the colon and
       * without the final line end, folds kept. */
      while (raw != NULL && (*raw == ' ' || *raw == '\t'))
        raw++;
      len = raw != NULL ? strlen (raw) : 0;
      while (len > 0 && (raw[len - 1] == '\n' || raw[len - 1] == '\r'))
        len--;
      value = valid_utf8 (raw, (gssize)len);
      g_ptr_array_add (msg->names, g_strdup (name));
      g_ptr_array_add (msg->raw_values, value);

      unfolded = g_mime_utils_header_unfold (value);
      decoded = g_mime_utils_header_decode_text (b->options, unfolded);
      values = g_hash_table_lookup (msg->by_name, lower);
      if (values == NULL)
        {
          values = terminated_array ();
          g_hash_table_insert (msg->by_name, g_steal_pointer (&lower), values);
        }
      append_terminated (values, g_strchug (valid_utf8 (decoded, -1)));
    }
}

/* ---- the MIME tree ------------------------------------------------------ */

static void
append_body (VpsMessage *msg, const char *text, gsize len)
{
  gsize room;

  if (msg->body->len > 0 && msg->body->len < VPS_MESSAGE_MAX_BODY_TEXT)
    g_string_append_c (msg->body, '\n');
  room = VPS_MESSAGE_MAX_BODY_TEXT - MIN (msg->body->len, VPS_MESSAGE_MAX_BODY_TEXT);
  if (len > room)
    {
      /* cut on a character boundary: text is valid UTF-8 */
      const char *end = text + room;

      while (end > text && ((guchar)*end & 0xc0) == 0x80)
        end--;
      len = (gsize)(end - text);
    }
  g_string_append_len (msg->body, text, (gssize)len);
}

/* Transfer decoding (base64, quoted-printable) through the data wrapper,
 * then charset → UTF-8.  An unknown charset leaves the bytes as they are
 * (made valid UTF-8 below). */
static void
decode_text_part (VpsMessage *msg, GMimePart *part)
{
  GMimeDataWrapper *content = g_mime_part_get_content (part);
  const char *charset;
  g_autoptr (VpsMimeStream) mem = NULL;
  g_autoptr (VpsMimeStream) filtered = NULL;
  g_autofree char *text = NULL;
  GByteArray *bytes;

  if (content == NULL || msg->body->len >= VPS_MESSAGE_MAX_BODY_TEXT)
    return;
  mem = g_mime_stream_mem_new ();
  filtered = g_mime_stream_filter_new (mem);
  charset = g_mime_object_get_content_type_parameter (GMIME_OBJECT (part), "charset");
  if (charset != NULL && g_ascii_strcasecmp (charset, "utf-8") != 0
      && g_ascii_strcasecmp (charset, "us-ascii") != 0)
    {
      GMimeFilter *conv = g_mime_filter_charset_new (charset, "UTF-8");

      if (conv != NULL)
        {
          g_mime_stream_filter_add (GMIME_STREAM_FILTER (filtered), conv);
          g_object_unref (conv);
        }
    }
  /* CRLF → LF, so rules see the same text whatever the line ends were. */
  {
    GMimeFilter *crlf = g_mime_filter_dos2unix_new (FALSE);

    g_mime_stream_filter_add (GMIME_STREAM_FILTER (filtered), crlf);
    g_object_unref (crlf);
  }
  if (g_mime_data_wrapper_write_to_stream (content, filtered) < 0)
    return;
  g_mime_stream_flush (filtered);
  bytes = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  text = valid_utf8 ((const char *)bytes->data, (gssize)bytes->len);
  append_body (msg, text, strlen (text));
}

static void
walk (Build *b, GMimeObject *obj, guint level)
{
  VpsMessage *msg = b->msg;
  GMimeContentType *ct;

  if (obj == NULL)
    return;
  if (b->visited >= VPS_MESSAGE_MAX_PARTS)
    {
      add_error (msg, "limit-parts");
      return;
    }
  if (level > VPS_MESSAGE_MAX_DEPTH)
    {
      add_error (msg, "limit-depth");
      return;
    }
  b->visited++;

  ct = g_mime_object_get_content_type (obj);
  if (ct != NULL)
    {
      g_autofree char *type = g_mime_content_type_get_mime_type (ct);
      g_autofree char *valid = valid_utf8 (type, -1);

      append_terminated (msg->content_types, g_ascii_strdown (valid, -1));
    }

  if (GMIME_IS_MULTIPART (obj))
    {
      GMimeMultipart *mp = GMIME_MULTIPART (obj);
      int n = g_mime_multipart_get_count (mp);

      for (int i = 0; i < n; i++)
        walk (b, g_mime_multipart_get_part (mp, i), level + 1);
      /* A multipart GMime could not split (no boundary) keeps its content
       * as prologue: do not let that text hide from the rules. */
      if (n == 0 && g_mime_multipart_get_prologue (mp) != NULL
          && msg->body->len < VPS_MESSAGE_MAX_BODY_TEXT)
        {
          const char *pro = g_mime_multipart_get_prologue (mp);
          g_autofree char *text = valid_utf8 (pro, -1);

          append_body (msg, text, strlen (text));
        }
    }
  else if (GMIME_IS_MESSAGE_PART (obj))
    {
      GMimeMessage *inner = g_mime_message_part_get_message (GMIME_MESSAGE_PART (obj));

      if (inner != NULL)
        walk (b, g_mime_message_get_mime_part (inner), level + 1);
    }
  else if (GMIME_IS_PART (obj))
    {
      GMimePart *part = GMIME_PART (obj);
      const char *filename = g_mime_part_get_filename (part);

      msg->parts++;
      msg->depth = MAX (msg->depth, level);
      if (filename != NULL && filename[0] != '\0')
        append_terminated (msg->attachments, valid_utf8 (filename, -1));
      if (ct != NULL && g_mime_content_type_is_type (ct, "text", "*")
          && (g_mime_content_type_is_type (ct, "text", "plain")
              || g_mime_content_type_is_type (ct, "text", "html"))
          && !g_mime_part_is_attachment (part))
        decode_text_part (msg, part);
    }
}

/* ---- construction ------------------------------------------------------- */

static void
free_values (gpointer p)
{
  g_ptr_array_unref (p);
}

VpsMessage *
vps_message_new (GBytes *raw, GError **error)
{
  g_autoptr (VpsMessage) msg = NULL;
  g_autoptr (VpsMimeOptions) options = NULL;
  g_autoptr (VpsMimeStream) stream = NULL;
  g_autoptr (VpsMimeParser) parser = NULL;
  g_autoptr (VpsMimeMessage) message = NULL;
  Build b = { 0 };
  gsize len = 0;
  gconstpointer data;

  g_return_val_if_fail (raw != NULL, NULL);
  data = g_bytes_get_data (raw, &len);
  if (len == 0)
    {
      g_set_error_literal (error, VPS_MESSAGE_ERROR, VPS_MESSAGE_ERROR_EMPTY, "empty message");
      return NULL;
    }
  mime_init ();

  msg = g_new0 (VpsMessage, 1);
  g_atomic_ref_count_init (&msg->ref);
  msg->raw = g_bytes_ref (raw);
  msg->names = g_ptr_array_new_with_free_func (g_free);
  msg->raw_values = g_ptr_array_new_with_free_func (g_free);
  msg->by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, free_values);
  msg->body = g_string_new (NULL);
  msg->errors = terminated_array ();
  msg->attachments = terminated_array ();
  msg->content_types = terminated_array ();

  options = g_mime_parser_options_new ();
  b.msg = msg;
  b.options = options;
  g_mime_parser_options_set_warning_callback (options, on_warning, &b);
  g_mime_parser_options_set_rfc2047_compliance_mode (options, GMIME_RFC_COMPLIANCE_LOOSE);
  g_mime_parser_options_set_address_compliance_mode (options, GMIME_RFC_COMPLIANCE_LOOSE);
  g_mime_parser_options_set_parameter_compliance_mode (options, GMIME_RFC_COMPLIANCE_LOOSE);

  /* XXX: the mem stream copies the bytes; GMime has no read-only view of
   * const memory.  The copy lives only while parsing. */
  stream = g_mime_stream_mem_new_with_buffer (data, len);
  parser = g_mime_parser_new_with_stream (stream);
  g_mime_parser_set_format (parser, GMIME_FORMAT_MESSAGE);
  message = g_mime_parser_construct_message (parser, options);
  if (message == NULL)
    add_error (msg, "malformed-message");
  else
    {
      const char *mid;

      collect_headers (&b, message);
      mid = g_mime_message_get_message_id (message);
      if (mid != NULL)
        msg->message_id = valid_utf8 (mid, -1);
      walk (&b, g_mime_message_get_mime_part (message), 0);
    }
  /* The callback's user data dies with this frame. */
  g_mime_parser_options_set_warning_callback (options, NULL, NULL);
  return g_steal_pointer (&msg);
}

VpsMessage *
vps_message_new_from_file (const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) map = NULL;
  g_autoptr (GBytes) bytes = NULL;

  g_return_val_if_fail (path != NULL, NULL);
  map = g_mapped_file_new (path, FALSE, &local);
  if (map == NULL)
    {
      g_set_error (error, VPS_MESSAGE_ERROR, VPS_MESSAGE_ERROR_IO, "%s", local->message);
      return NULL;
    }
  bytes = g_mapped_file_get_bytes (map);
  return vps_message_new (bytes, error);
}

VpsMessage *
vps_message_ref (VpsMessage *msg)
{
  g_return_val_if_fail (msg != NULL, NULL);
  g_atomic_ref_count_inc (&msg->ref);
  return msg;
}

void
vps_message_unref (VpsMessage *msg)
{
  g_return_if_fail (msg != NULL);
  if (!g_atomic_ref_count_dec (&msg->ref))
    return;
  g_bytes_unref (msg->raw);
  g_ptr_array_unref (msg->names);
  g_ptr_array_unref (msg->raw_values);
  g_hash_table_unref (msg->by_name);
  g_free (msg->message_id);
  g_string_free (msg->body, TRUE);
  g_ptr_array_unref (msg->errors);
  g_ptr_array_unref (msg->attachments);
  g_ptr_array_unref (msg->content_types);
  g_free (msg);
}

/* ---- accessors ---------------------------------------------------------- */

GBytes *
vps_message_get_raw (VpsMessage *msg)
{
  g_return_val_if_fail (msg != NULL, NULL);
  return msg->raw;
}

gsize
vps_message_get_size (VpsMessage *msg)
{
  g_return_val_if_fail (msg != NULL, 0);
  return g_bytes_get_size (msg->raw);
}

gsize
vps_message_n_headers (VpsMessage *msg)
{
  g_return_val_if_fail (msg != NULL, 0);
  return msg->names->len;
}

const char *
vps_message_header_name (VpsMessage *msg, gsize i)
{
  g_return_val_if_fail (msg != NULL && i < msg->names->len, NULL);
  return g_ptr_array_index (msg->names, i);
}

const char *
vps_message_header_raw_value (VpsMessage *msg, gsize i)
{
  g_return_val_if_fail (msg != NULL && i < msg->raw_values->len, NULL);
  return g_ptr_array_index (msg->raw_values, i);
}

const char *const *
vps_message_get_headers (VpsMessage *msg, const char *name, gsize *n)
{
  static const char *const none[] = { NULL };
  g_autofree char *lower = NULL;
  GPtrArray *values;

  g_return_val_if_fail (msg != NULL && name != NULL, none);
  lower = g_ascii_strdown (name, -1);
  values = g_hash_table_lookup (msg->by_name, lower);
  if (n != NULL)
    *n = values != NULL ? values->len - 1 : 0;
  return values != NULL ? (const char *const *)values->pdata : none;
}

const char *
vps_message_get_header (VpsMessage *msg, const char *name)
{
  return vps_message_get_headers (msg, name, NULL)[0];
}

gboolean
vps_message_has_header (VpsMessage *msg, const char *name)
{
  return vps_message_get_header (msg, name) != NULL;
}

const char *
vps_message_get_subject (VpsMessage *msg)
{
  return vps_message_get_header (msg, "Subject");
}

const char *
vps_message_get_message_id (VpsMessage *msg)
{
  g_return_val_if_fail (msg != NULL, NULL);
  return msg->message_id;
}

const char *
vps_message_get_body_text (VpsMessage *msg, gsize *len)
{
  g_return_val_if_fail (msg != NULL, NULL);
  if (len != NULL)
    *len = msg->body->len;
  return msg->body->str;
}

gboolean
vps_message_mime_valid (VpsMessage *msg)
{
  g_return_val_if_fail (msg != NULL, FALSE);
  return msg->errors->len == 1;
}

static const char *const *
strv_of (GPtrArray *a, gsize *n)
{
  if (n != NULL)
    *n = a->len - 1;
  return (const char *const *)a->pdata;
}

const char *const *
vps_message_mime_errors (VpsMessage *msg, gsize *n)
{
  g_return_val_if_fail (msg != NULL, NULL);
  return strv_of (msg->errors, n);
}

guint
vps_message_mime_parts (VpsMessage *msg)
{
  g_return_val_if_fail (msg != NULL, 0);
  return msg->parts;
}

guint
vps_message_mime_depth (VpsMessage *msg)
{
  g_return_val_if_fail (msg != NULL, 0);
  return msg->depth;
}

const char *const *
vps_message_attachments (VpsMessage *msg, gsize *n)
{
  g_return_val_if_fail (msg != NULL, NULL);
  return strv_of (msg->attachments, n);
}

const char *const *
vps_message_content_types (VpsMessage *msg, gsize *n)
{
  g_return_val_if_fail (msg != NULL, NULL);
  return strv_of (msg->content_types, n);
}
