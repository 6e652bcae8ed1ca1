/* SPDX-License-Identifier: MIT
 *
 * mail-header.c — validate, fold and unfold header fields.
 *
 * Contract (see mail-header.h): nothing here emits a header line that could
 * start another header or end the header block — names and values are
 * checked before folding, and folding only ever inserts a line end before
 * existing whitespace, so unfolding restores the value exactly.
 *
 * RFC 5322 §2.1.1 (line length), §2.2 (fields), §2.2.3 (folding), §3.6;
 * RFC 6532 (UTF-8 in values).
 */
#include <string.h>

#include "mail-header.h"
#include "mail-private.h"

static gboolean
is_wsp (char c)
{
  return c == ' ' || c == '\t';
}

gboolean
mail_header_name_check (const char *name, gssize slen, GError **error)
{
  gsize len;

  g_return_val_if_fail (name != NULL, FALSE);

  len = mail_len (name, slen);
  if (len > MAIL_MAX_HEADER_NAME)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_NAME_TOO_LONG,
                   "header name longer than %d octets", MAIL_MAX_HEADER_NAME);
      return FALSE;
    }
  if (len == 0)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_NAME, "empty header name");
      return FALSE;
    }
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar)name[i];

      /* ftext = %d33-57 / %d59-126; anything else (SP, controls, 8-bit, ':')
       * would change where the name ends for the next reader. */
      if (c < 33 || c > 126 || c == ':')
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_NAME,
                       "character 0x%02x not allowed in a header name (offset %" G_GSIZE_FORMAT ")",
                       c, i);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
mail_header_value_check (const char *value, gssize slen, GError **error)
{
  gsize len;

  g_return_val_if_fail (value != NULL, FALSE);

  len = mail_len (value, slen);
  if (len > MAIL_MAX_HEADER_VALUE)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_VALUE_TOO_LONG,
                   "header value longer than %d octets", MAIL_MAX_HEADER_VALUE);
      return FALSE;
    }
  return mail_check_text (value, len, TRUE, TRUE, "header value", error);
}

char *
mail_header_fold_full (const char *name, const char *value, gsize width, const char *eol,
                       GError **error)
{
  g_autoptr (GString) out = NULL;
  gsize vlen;
  gsize line_len;
  gboolean may_break = FALSE;
  gsize p = 0;

  g_return_val_if_fail (name != NULL && value != NULL && eol != NULL, NULL);
  g_return_val_if_fail (width >= 20 && width <= MAIL_MAX_HEADER_LINE, NULL);

  if (!mail_header_name_check (name, -1, error) || !mail_header_value_check (value, -1, error))
    return NULL;

  vlen = strlen (value);
  out = g_string_sized_new (strlen (name) + vlen + vlen / width * 3 + 8);
  g_string_append (out, name);
  g_string_append_c (out, ':');
  line_len = out->len;
  if (vlen == 0)
    {
      g_string_append (out, eol);
      return g_string_free (g_steal_pointer (&out), FALSE);
    }
  g_string_append_c (out, ' ');
  line_len++;

  /* Walk the value in segments "whitespace run + word".  A segment that
   * does not fit on the current line starts a new one, its whitespace
   * becoming the continuation's leading WSP.  A segment without a word
   * (trailing whitespace) or without whitespace (the first word) cannot
   * start a line. */
  while (p < vlen)
    {
      gsize seg = p;
      gsize word;

      while (p < vlen && is_wsp (value[p]))
        p++;
      word = p;
      while (p < vlen && !is_wsp (value[p]))
        p++;

      if (may_break && word > seg && p > word && line_len + (p - seg) > width)
        {
          g_string_append (out, eol);
          line_len = 0;
        }
      g_string_append_len (out, value + seg, (gssize)(p - seg));
      line_len += p - seg;
      may_break = TRUE;
      if (line_len > MAIL_MAX_HEADER_LINE)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_HEADER_LINE_TOO_LONG,
                       "header %s: a word does not fit in %d octets", name, MAIL_MAX_HEADER_LINE);
          return NULL;
        }
    }
  g_string_append (out, eol);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

char *
mail_header_fold (const char *name, const char *value, GError **error)
{
  return mail_header_fold_full (name, value, MAIL_HEADER_FOLD_WIDTH, "\r\n", error);
}

char *
mail_header_unfold (const char *raw, gssize slen)
{
  g_autoptr (GString) out = NULL;
  gsize len;

  g_return_val_if_fail (raw != NULL, NULL);

  len = mail_len (raw, slen);
  /* The line end that terminates the field is not part of the value. */
  if (len > 0 && raw[len - 1] == '\n')
    {
      len--;
      if (len > 0 && raw[len - 1] == '\r')
        len--;
    }
  out = g_string_sized_new (len);
  for (gsize i = 0; i < len; i++)
    {
      if (raw[i] == '\r' && i + 2 < len && raw[i + 1] == '\n' && is_wsp (raw[i + 2]))
        {
          i++;
          continue;
        }
      if (raw[i] == '\n' && i + 1 < len && is_wsp (raw[i + 1]))
        continue;
      g_string_append_c (out, raw[i]);
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

gboolean
mail_header_name_equal (const char *a, const char *b)
{
  g_return_val_if_fail (a != NULL && b != NULL, FALSE);
  return g_ascii_strcasecmp (a, b) == 0;
}

guint
mail_header_name_hash (gconstpointer name)
{
  guint h = 5381;

  for (const char *p = name; *p != '\0'; p++)
    h = (h << 5) + h + (guint)g_ascii_tolower (*p);
  return h;
}
