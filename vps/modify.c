/* SPDX-License-Identifier: MIT
 *
 * modify.c — validating modifications and applying them to a raw message
 * (RFC 5322 §2.2 header fields, §2.1 header/body separation) and to the
 * envelope.
 *
 * The raw message is split into header fields (each with its continuation
 * lines, kept byte for byte) and the body; edits work on that list and the
 * message is joined again, so everything we do not touch stays identical.
 * The line end of the input (CRLF or bare LF, decided on the first line) is
 * used for every line we add.
 */
#include "vps/modify.h"

#include <string.h>
#include "proto/mail/mail-header.h"

G_DEFINE_QUARK (vps - modify - error - quark, vps_modify_error)

static const char *const op_names[] = {
  [VPS_MOD_ADD_HEADER] = "add_header",   [VPS_MOD_INSERT_HEADER] = "insert_header",
  [VPS_MOD_SET_HEADER] = "set_header",   [VPS_MOD_REMOVE_HEADER] = "remove_header",
  [VPS_MOD_SET_SENDER] = "set_sender",   [VPS_MOD_ADD_RCPT] = "add_rcpt",
  [VPS_MOD_REMOVE_RCPT] = "remove_rcpt", [VPS_MOD_REPLACE_BODY] = "replace_body",
  [VPS_MOD_QUARANTINE] = "quarantine",
};

const char *
vps_mod_op_name (VpsModOp op)
{
  g_return_val_if_fail (op <= VPS_MOD_QUARANTINE, "unknown");
  return op_names[op];
}

gboolean
vps_mod_op_from_name (const char *name, VpsModOp *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (op_names); i++)
    if (g_strcmp0 (name, op_names[i]) == 0)
      {
        *out = (VpsModOp)i;
        return TRUE;
      }
  return FALSE;
}

/* CR or LF in an address or a quarantine name would let a rule (or a
 * connector, or message data a rule copied) inject protocol lines. */
static gboolean
value_clean (const char *value, gsize max)
{
  gsize len = strlen (value);
  return len <= max && strpbrk (value, "\r\n") == NULL;
}

gboolean
vps_modification_validate (VpsModOp op, const char *name, const char *value, GError **error)
{
  g_autoptr (GError) local = NULL;

  switch (op)
    {
      case VPS_MOD_ADD_HEADER:
      case VPS_MOD_INSERT_HEADER:
      case VPS_MOD_SET_HEADER:
      case VPS_MOD_REMOVE_HEADER:
        /* proto/mail holds the RFC 5322 rules for names and values */
        if (name == NULL || !mail_header_name_check (name, -1, &local))
          {
            g_set_error (error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_INVALID_NAME,
                         "%s: invalid header name: %s", op_names[op],
                         local ? local->message : "missing");
            return FALSE;
          }
        if (op == VPS_MOD_REMOVE_HEADER)
          return TRUE;
        if (value == NULL || !mail_header_value_check (value, -1, &local))
          {
            g_set_error (error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_INVALID_VALUE,
                         "%s %s: invalid value: %s", op_names[op], name,
                         local ? local->message : "missing");
            return FALSE;
          }
        return TRUE;
      case VPS_MOD_SET_SENDER:
      case VPS_MOD_ADD_RCPT:
      case VPS_MOD_REMOVE_RCPT:
        if (value == NULL || !value_clean (value, VPS_MODIFY_MAX_ADDRESS)
            || (op != VPS_MOD_SET_SENDER && value[0] == '\0'))
          {
            g_set_error (error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_INVALID_VALUE,
                         "%s: invalid address", op_names[op]);
            return FALSE;
          }
        return TRUE;
      case VPS_MOD_REPLACE_BODY:
        /* A body has line ends; only NUL is impossible in a C string. */
        if (value == NULL || strlen (value) > VPS_MODIFY_MAX_BODY)
          {
            g_set_error (error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_INVALID_VALUE,
                         "replace_body: missing or too long");
            return FALSE;
          }
        return TRUE;
      case VPS_MOD_QUARANTINE:
        if (name == NULL || name[0] == '\0' || !value_clean (name, MAIL_MAX_HEADER_NAME))
          {
            g_set_error (error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_INVALID_NAME,
                         "quarantine: invalid name");
            return FALSE;
          }
        return TRUE;
      default:
        g_set_error (error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_INVALID_NAME,
                     "unknown modification %d", (int)op);
        return FALSE;
    }
}

VpsModification *
vps_modification_new (VpsModOp op, const char *name, const char *value, gint index, GError **error)
{
  VpsModification *mod;

  if (!vps_modification_validate (op, name, value, error))
    return NULL;
  mod = g_new0 (VpsModification, 1);
  mod->op = op;
  mod->name = g_strdup (name);
  mod->value = g_strdup (value);
  mod->index = index;
  return mod;
}

VpsModification *
vps_modification_copy (const VpsModification *mod)
{
  VpsModification *copy = g_new0 (VpsModification, 1);

  copy->op = mod->op;
  copy->name = g_strdup (mod->name);
  copy->value = g_strdup (mod->value);
  copy->index = mod->index;
  copy->rule = g_strdup (mod->rule);
  return copy;
}

void
vps_modification_free (VpsModification *mod)
{
  if (mod == NULL)
    return;
  g_free (mod->name);
  g_free (mod->value);
  g_free (mod->rule);
  g_free (mod);
}

/* ---- the raw message ------------------------------------------------------ */

typedef struct
{
  char *name;    /* NULL for a line that is not a header field */
  GString *text; /* the whole field with its line ends */
} Field;

static void
field_free (gpointer p)
{
  Field *f = p;
  g_free (f->name);
  g_string_free (f->text, TRUE);
  g_free (f);
}

static Field *
field_new_formatted (const char *name, const char *value, const char *eol)
{
  Field *f = g_new0 (Field, 1);
  g_autofree char *folded = mail_header_fold_full (name, value, MAIL_HEADER_FOLD_WIDTH, eol, NULL);

  f->name = g_strdup (name);
  if (folded != NULL)
    f->text = g_string_new (folded);
  else
    {
      /* a word longer than a line can hold: keep it on one line rather
       * than break it (values were validated when the modification was
       * made) */
      f->text = g_string_new (name);
      g_string_append (f->text, ": ");
      g_string_append (f->text, value);
      g_string_append (f->text, eol);
    }
  return f;
}

static gsize
line_end (const char *p, gsize len, gsize pos)
{
  const char *nl = memchr (p + pos, '\n', len - pos);
  return nl ? (gsize)(nl - p) + 1 : len;
}

/* Split raw into fields and body; *body_off = len when there is no body
 * separator (then *has_sep is FALSE). */
static GPtrArray *
split_headers (const char *p, gsize len, gsize *body_off, gboolean *has_sep)
{
  GPtrArray *fields = g_ptr_array_new_with_free_func (field_free);
  gsize pos = 0;

  *has_sep = FALSE;
  while (pos < len)
    {
      gsize end = line_end (p, len, pos);
      Field *f;
      const char *colon;

      if (p[pos] == '\n' || (p[pos] == '\r' && pos + 1 < len && p[pos + 1] == '\n'))
        {
          *has_sep = TRUE;
          pos = end;
          break;
        }
      /* continuation lines (RFC 5322 §2.2.3) belong to this field */
      while (end < len && (p[end] == ' ' || p[end] == '\t'))
        end = line_end (p, len, end);
      f = g_new0 (Field, 1);
      f->text = g_string_new_len (p + pos, (gssize)(end - pos));
      colon = memchr (p + pos, ':', end - pos);
      if (colon != NULL)
        {
          gsize nlen = (gsize)(colon - (p + pos));
          while (nlen > 0 && (p[pos + nlen - 1] == ' ' || p[pos + nlen - 1] == '\t'))
            nlen--;
          f->name = g_strndup (p + pos, nlen);
        }
      g_ptr_array_add (fields, f);
      pos = end;
    }
  *body_off = pos;
  return fields;
}

static gboolean
field_is (const Field *f, const char *name)
{
  return f->name != NULL && g_ascii_strcasecmp (f->name, name) == 0;
}

static void
apply_set_header (GPtrArray *fields, const VpsModification *mod, const char *eol)
{
  gint seen = 0;
  gboolean replaced = FALSE;

  for (guint i = 0; i < fields->len;)
    {
      Field *f = g_ptr_array_index (fields, i);
      if (!field_is (f, mod->name))
        {
          i++;
          continue;
        }
      seen++;
      if (mod->index > 0 && seen != mod->index)
        {
          i++;
          continue;
        }
      if (!replaced)
        {
          fields->pdata[i] = field_new_formatted (mod->name, mod->value, eol);
          field_free (f);
          replaced = TRUE;
          i++;
        }
      else
        g_ptr_array_remove_index (fields, i);
    }
  if (!replaced)
    g_ptr_array_add (fields, field_new_formatted (mod->name, mod->value, eol));
}

static void
apply_remove_header (GPtrArray *fields, const VpsModification *mod)
{
  gint seen = 0;

  for (guint i = 0; i < fields->len;)
    {
      Field *f = g_ptr_array_index (fields, i);
      if (field_is (f, mod->name) && (++seen == mod->index || mod->index <= 0))
        g_ptr_array_remove_index (fields, i);
      else
        i++;
    }
}

/* Body text given by a rule uses "\n"; write it with the message's line end. */
static void
append_body (GString *out, const char *body, const char *eol)
{
  for (const char *p = body; *p != '\0'; p++)
    {
      if (*p == '\r' && p[1] == '\n')
        continue;
      if (*p == '\n')
        g_string_append (out, eol);
      else
        g_string_append_c (out, *p);
    }
}

GBytes *
vps_modify_apply_message (GBytes *raw, GPtrArray *mods, GError **error)
{
  gsize len = 0;
  const char *p = g_bytes_get_data (raw, &len);
  const char *nl, *eol;
  gsize body_off;
  gboolean has_sep;
  const char *new_body = NULL;
  g_autoptr (GPtrArray) fields = NULL;
  GString *out;

  if (p == NULL || len == 0)
    {
      g_set_error (error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_MALFORMED, "empty message");
      return NULL;
    }
  nl = memchr (p, '\n', len);
  eol = (nl != NULL && nl > p && nl[-1] == '\r') ? "\r\n" : "\n";
  fields = split_headers (p, len, &body_off, &has_sep);

  for (guint i = 0; mods != NULL && i < mods->len; i++)
    {
      const VpsModification *mod = g_ptr_array_index (mods, i);
      switch (mod->op)
        {
          case VPS_MOD_ADD_HEADER:
            g_ptr_array_add (fields, field_new_formatted (mod->name, mod->value, eol));
            break;
          case VPS_MOD_INSERT_HEADER:
            g_ptr_array_insert (fields, CLAMP (mod->index, 0, (gint)fields->len),
                                field_new_formatted (mod->name, mod->value, eol));
            break;
          case VPS_MOD_SET_HEADER:
            apply_set_header (fields, mod, eol);
            break;
          case VPS_MOD_REMOVE_HEADER:
            apply_remove_header (fields, mod);
            break;
          case VPS_MOD_REPLACE_BODY:
            new_body = mod->value;
            break;
          case VPS_MOD_SET_SENDER:
          case VPS_MOD_ADD_RCPT:
          case VPS_MOD_REMOVE_RCPT:
          case VPS_MOD_QUARANTINE:
          default:
            break;
        }
    }

  out = g_string_sized_new (len + 256);
  for (guint i = 0; i < fields->len; i++)
    {
      Field *f = g_ptr_array_index (fields, i);
      g_string_append_len (out, f->text->str, (gssize)f->text->len);
      /* a last header without line end must not glue onto what follows */
      if (f->text->len > 0 && f->text->str[f->text->len - 1] != '\n')
        g_string_append (out, eol);
    }
  if (new_body != NULL)
    {
      g_string_append (out, eol);
      append_body (out, new_body, eol);
    }
  else if (has_sep)
    {
      g_string_append (out, eol);
      g_string_append_len (out, p + body_off, (gssize)(len - body_off));
    }
  return g_string_free_to_bytes (out);
}

void
vps_modify_apply_envelope (GPtrArray *mods, char **sender, GPtrArray *rcpts)
{
  for (guint i = 0; mods != NULL && i < mods->len; i++)
    {
      const VpsModification *mod = g_ptr_array_index (mods, i);
      guint j;

      switch (mod->op)
        {
          case VPS_MOD_SET_SENDER:
            if (sender != NULL)
              {
                g_free (*sender);
                *sender = g_strdup (mod->value);
              }
            break;
          case VPS_MOD_ADD_RCPT:
            if (rcpts == NULL)
              break;
            for (j = 0; j < rcpts->len; j++)
              if (g_ascii_strcasecmp (g_ptr_array_index (rcpts, j), mod->value) == 0)
                break;
            if (j == rcpts->len)
              g_ptr_array_add (rcpts, g_strdup (mod->value));
            break;
          case VPS_MOD_REMOVE_RCPT:
            for (j = 0; rcpts != NULL && j < rcpts->len;)
              if (g_ascii_strcasecmp (g_ptr_array_index (rcpts, j), mod->value) == 0)
                g_ptr_array_remove_index (rcpts, j);
              else
                j++;
            break;
          default:
            break;
        }
    }
}
