/* SPDX-License-Identifier: MIT
 *
 * milter-private.h — the bounded reader the proto/milter decoders share, and
 * the small writers the encoders share; not for other directories (tests
 * may include it).
 *
 * A MilterReader walks the data of one frame.  Every read checks what is
 * left first and fails with the MilterError of its family, naming the
 * packet and the field, so no decoder ever indexes past the frame.
 */
#pragma once

#include <glib.h>

#include "milter.h"

G_BEGIN_DECLS

typedef struct
{
  const guint8 *p;
  gsize left;
  const char *packet; /* "HEADER", "CHGFROM", ... for error messages */
} MilterReader;

static inline void
milter_reader_init (MilterReader *r, const MilterFrame *frame, const char *packet)
{
  r->p = frame->data;
  r->left = frame->len;
  r->packet = packet;
}

gboolean milter_read_u32 (MilterReader *r, const char *field, guint32 *out, GError **error);
gboolean milter_read_u16 (MilterReader *r, const char *field, guint16 *out, GError **error);
gboolean milter_read_byte (MilterReader *r, const char *field, guint8 *out, GError **error);
/* A NUL-terminated string inside the frame; *out points into the frame
 * (valid as a C string there), *out_len excludes the NUL.  max_len 0 means
 * no limit other than the frame; over it: MILTER_ERROR_LIMIT. */
gboolean milter_read_string (MilterReader *r, const char *field, gsize max_len, const char **out,
                             gsize *out_len, GError **error);
/* The same, copied. */
gboolean milter_read_string_dup (MilterReader *r, const char *field, gsize max_len, char **out,
                                 GError **error);
/* MILTER_ERROR_TRAILING unless the frame is used up. */
gboolean milter_read_end (MilterReader *r, GError **error);

/* Writers: a frame is assembled in a GByteArray, its length patched last. */
gsize milter_frame_begin (GByteArray *out, char cmd);
void milter_frame_end (GByteArray *out, gsize start);
void milter_put_u32 (GByteArray *out, guint32 v);
void milter_put_string (GByteArray *out, const char *s);

G_END_DECLS
