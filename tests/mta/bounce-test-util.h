/* SPDX-License-Identifier: MIT
 *
 * bounce-test-util.h — what the DSN tests share: envelopes to notify about,
 * and the reading of a DSN back with GMime plus the checks every DSN must
 * pass on the wire (CRLF only, no NUL, lines <= 998, clean header fields).
 * Header-only (static inline): each test program includes it once.
 */
#pragma once

#include "mta/bounce.h"
#include "proto/smtp/smtp.h"

#include <gmime/gmime.h>
#include <string.h>

/* GMime 3.2 declares no autoptr cleanups */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeStream, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeParser, g_object_unref)

#define MTA "mx.example.org"
#define ID "0006431E2F3A4B5C"
/* 2025-11-28T21:40:00Z */
#define T_RECEIVED G_GINT64_CONSTANT (1764366000000000)
#define T_NOW (T_RECEIVED + G_TIME_SPAN_HOUR)

G_GNUC_UNUSED static const char original_ascii[] = "From: Alice <alice@example.com>\r\n"
                                                   "To: Bob <bob@example.org>\r\n"
                                                   "Subject: lunch\r\n"
                                                   "\tand more\r\n"
                                                   "Message-ID: <lunch-1@example.com>\r\n"
                                                   "\r\n"
                                                   "Shall we have lunch?\r\n";
/* a string literal and its length, NULs inside included */
#define LIT(s) s, sizeof (s) - 1

/* Short names for the tables */
#define F VPS_BOUNCE_FAILURE
#define D VPS_BOUNCE_DELAY
#define S VPS_BOUNCE_SUCCESS
#define N_SUCCESS SMTP_NOTIFY_SUCCESS
#define N_FAILURE SMTP_NOTIFY_FAILURE
#define N_DELAY SMTP_NOTIFY_DELAY
#define N_NEVER SMTP_NOTIFY_NEVER
#define A "a@example.com"

static inline gsize
header_section_len (const char *original)
{
  return (gsize)(strstr (original, "\r\n\r\n") - original) + 2;
}

/* ---- envelopes ------------------------------------------------------------- */

static inline VpsEnvelope *
envelope_new (const char *sender)
{
  VpsEnvelope *env = vps_envelope_new ();

  env->id = g_strdup (ID);
  g_free (env->sender);
  env->sender = g_strdup (sender);
  env->received = T_RECEIVED;
  return env;
}

static inline VpsQueueRcpt *
add_rcpt (VpsEnvelope *env, const char *address, guint notify, VpsRcptState state,
          const char *result)
{
  VpsQueueRcpt *r = vps_envelope_add_rcpt (env, address, NULL, notify);

  r->state = state;
  r->result = g_strdup (result);
  r->updated = T_RECEIVED + 30 * G_TIME_SPAN_MINUTE;
  return r;
}

/* One failed recipient with a remote result. */
static inline VpsEnvelope *
failed_envelope (void)
{
  VpsEnvelope *env = envelope_new ("alice@example.com");

  add_rcpt (env, "bob@example.org", 0, VPS_RCPT_FAILED,
            "host mx.example.org[192.0.2.25] said: 550 5.1.1 user unknown");
  return env;
}

/* ---- reading a DSN back ------------------------------------------------------ */

/* The wire form every DSN must have, whatever went in (bounce.h). */
static inline void
assert_wire_form (GBytes *dsn)
{
  gsize len;
  const char *data = g_bytes_get_data (dsn, &len);
  gsize line = 0;
  gboolean in_header = TRUE;

  g_assert_cmpuint (len, >, 0);
  g_assert_cmpuint (len, >, 4);
  g_assert_cmpmem (data + len - 4, 4, "--\r\n", 4);
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar)data[i];

      g_assert_cmpint (c, !=, '\0');
      if (c == '\r')
        {
          g_assert_true (i + 1 < len && data[i + 1] == '\n');
          if (line == 0)
            in_header = FALSE;
          i++;
          line = 0;
          continue;
        }
      g_assert_cmpint (c, !=, '\n');
      /* the header of the DSN: no control character but HT */
      if (in_header)
        g_assert_true (c == '\t' || (c >= 0x20 && c != 0x7f));
      line++;
      g_assert_cmpuint (line, <=, 998);
    }
  g_assert_cmpuint (line, ==, 0);
}

typedef struct
{
  GBytes *bytes;
  gboolean needs_8bit;
  GMimeMessage *message;
  GMimeMultipart *report;
  char *text;          /* part 1, as GMime decodes it */
  char *flat;          /* the same with each run of blanks and line ends one space */
  GPtrArray *blocks;   /* part 2: GHashTable* per block, lower-case name -> value */
  char *third_type;    /* "message/rfc822", "text/rfc822-headers", or NULL */
  char *third_content; /* the third part's content (headers), or NULL */
} Dsn;

static inline void
dsn_free (Dsn *d)
{
  g_bytes_unref (d->bytes);
  g_clear_object (&d->message);
  g_free (d->text);
  g_free (d->flat);
  g_ptr_array_unref (d->blocks);
  g_free (d->third_type);
  g_free (d->third_content);
  g_free (d);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Dsn, dsn_free)

static inline char *
part_content (GMimeObject *obj)
{
  GMimeDataWrapper *w = g_mime_part_get_content (GMIME_PART (obj));
  g_autoptr (GMimeStream) out = g_mime_stream_mem_new ();
  GByteArray *ba;

  g_mime_data_wrapper_write_to_stream (w, out);
  ba = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (out));
  return g_strndup ((const char *)ba->data, ba->len);
}

/* The report's blocks (RFC 3464 §2.1: header-like fields, blocks separated
 * by an empty line), unfolded. */
static inline GPtrArray *
parse_blocks (const char *content)
{
  GPtrArray *blocks = g_ptr_array_new_with_free_func ((GDestroyNotify)g_hash_table_unref);
  g_auto (GStrv) raw = g_strsplit (content, "\r\n\r\n", -1);

  for (guint i = 0; raw[i] != NULL; i++)
    {
      GHashTable *fields = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      g_autoptr (GRegex) fold = g_regex_new ("\r\n[ \t]", 0, 0, NULL);
      g_autofree char *unfolded = g_regex_replace_literal (fold, raw[i], -1, 0, " ", 0, NULL);
      g_auto (GStrv) lines = g_strsplit (unfolded, "\r\n", -1);

      if (raw[i][0] == '\0')
        {
          g_hash_table_unref (fields);
          continue;
        }
      for (guint j = 0; lines[j] != NULL; j++)
        {
          const char *colon = strchr (lines[j], ':');

          if (lines[j][0] == '\0')
            continue;
          g_assert_nonnull (colon);
          g_assert_false (g_hash_table_contains (fields, lines[j]));
          g_hash_table_insert (fields, g_ascii_strdown (lines[j], colon - lines[j]),
                               g_strstrip (g_strdup (colon + 1)));
        }
      g_ptr_array_add (blocks, fields);
    }
  return blocks;
}

static inline const char *
field (const Dsn *d, guint block, const char *name)
{
  g_assert_cmpuint (block, <, d->blocks->len);
  return g_hash_table_lookup (g_ptr_array_index (d->blocks, block), name);
}

static inline Dsn *
dsn_parse (GBytes *bytes, gboolean needs_8bit)
{
  Dsn *d = g_new0 (Dsn, 1);
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);
  g_autoptr (GMimeStream) stream = g_mime_stream_mem_new_with_buffer (data, len);
  g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (stream);
  GMimeObject *top;
  GMimeContentType *ct;
  g_autofree char *status = NULL;

  assert_wire_form (bytes);
  d->bytes = g_bytes_ref (bytes);
  d->needs_8bit = needs_8bit;
  d->message = g_mime_parser_construct_message (parser, NULL);
  g_assert_nonnull (d->message);
  top = g_mime_message_get_mime_part (d->message);
  g_assert_true (GMIME_IS_MULTIPART (top));
  ct = g_mime_object_get_content_type (top);
  g_assert_true (g_mime_content_type_is_type (ct, "multipart", "report"));
  g_assert_cmpstr (g_mime_content_type_get_parameter (ct, "report-type"), ==, "delivery-status");
  g_assert_nonnull (g_mime_content_type_get_parameter (ct, "boundary"));
  d->report = GMIME_MULTIPART (top);
  g_assert_cmpint (g_mime_multipart_get_count (d->report), >=, 2);
  g_assert_cmpint (g_mime_multipart_get_count (d->report), <=, 3);

  ct = g_mime_object_get_content_type (g_mime_multipart_get_part (d->report, 0));
  g_assert_true (g_mime_content_type_is_type (ct, "text", "plain"));
  d->text = part_content (g_mime_multipart_get_part (d->report, 0));
  {
    g_autoptr (GRegex) blanks = g_regex_new ("[ \t\r\n]+", 0, 0, NULL);

    d->flat = g_regex_replace_literal (blanks, d->text, -1, 0, " ", 0, NULL);
  }

  ct = g_mime_object_get_content_type (g_mime_multipart_get_part (d->report, 1));
  g_assert_true (g_mime_content_type_is_type (ct, "message", "delivery-status"));
  status = part_content (g_mime_multipart_get_part (d->report, 1));
  d->blocks = parse_blocks (status);
  g_assert_cmpuint (d->blocks->len, >=, 2);

  if (g_mime_multipart_get_count (d->report) == 3)
    {
      GMimeObject *third = g_mime_multipart_get_part (d->report, 2);

      d->third_type = g_mime_content_type_get_mime_type (g_mime_object_get_content_type (third));
      if (GMIME_IS_PART (third))
        d->third_content = part_content (third);
    }
  return d;
}

static inline Dsn *
build_full (const VpsEnvelope *env, const char *original, gssize olen, VpsBounceKind kind,
            const VpsBounceOptions *options)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) orig = NULL;
  g_autoptr (GBytes) bytes = NULL;
  gboolean eight = 2;

  if (original != NULL)
    orig = g_bytes_new (original, olen < 0 ? strlen (original) : (gsize)olen);
  bytes = vps_bounce_build_full (env, orig, kind, options, &eight, &error);
  g_assert_no_error (error);
  g_assert_nonnull (bytes);
  g_assert_true (eight == TRUE || eight == FALSE);
  return dsn_parse (bytes, eight);
}

static inline Dsn *
build (const VpsEnvelope *env, const char *original, VpsBounceKind kind)
{
  VpsBounceOptions options = { .reporting_mta = MTA, .now = T_NOW };

  return build_full (env, original, -1, kind, &options);
}

static inline const char *
header (const Dsn *d, const char *name)
{
  return g_mime_object_get_header (GMIME_OBJECT (d->message), name);
}
