/* SPDX-License-Identifier: MIT
 *
 * resolver-test-util.h — what the resolver tests share: writing DNS wire
 * format by hand (16-bit fields, uncompressed names).
 * Header-only (static inline): each test program includes it once.
 */
#pragma once

#include <glib.h>
#include <string.h>

static inline void
put16 (GByteArray *b, guint16 v)
{
  guint8 x[2] = { v >> 8, v & 0xff };
  g_byte_array_append (b, x, 2);
}

/* "a.b.c" as labels (no compression); "." is the root */
static inline void
put_name (GByteArray *b, const char *name)
{
  g_auto (GStrv) labels = g_strsplit (name, ".", -1);
  guint8 zero = 0;

  for (guint i = 0; labels[i] != NULL; i++)
    if (labels[i][0] != '\0')
      {
        guint8 len = (guint8)strlen (labels[i]);
        g_byte_array_append (b, &len, 1);
        g_byte_array_append (b, (const guint8 *)labels[i], len);
      }
  g_byte_array_append (b, &zero, 1);
}
