/* SPDX-License-Identifier: MIT
 *
 * mail-param.c — ESMTP parameters of MAIL/RCPT and xtext.
 *
 * Contract (see mail-param.h): mail_params_parse() bounds the input
 * (MAIL_MAX_ESMTP_PARAMS_LEN), refuses control characters and un-allowed
 * 8-bit bytes, then splits on SP and validates each keyword/value against
 * RFC 5321 §4.1.2 (esmtp-keyword, esmtp-value; RFC 6531 §3.3 for UTF-8).
 * Values are stored as sent.  mail_xtext_decode() implements RFC 3461 §4 and
 * refuses to produce control characters: an ENVID or ORCPT must never smuggle
 * CR/LF into a queue file, a DSN or a log line (CVE-2020-28026).
 */
#include <string.h>

#include "mail-address.h"
#include "mail-param.h"
#include "mail-private.h"

typedef struct
{
  char *keyword;
  char *value; /* NULL: no '=' */
} MailParam;

struct _MailParams
{
  GPtrArray *items; /* of MailParam* */
};

static void
param_free (gpointer data)
{
  MailParam *p = data;

  g_free (p->keyword);
  g_free (p->value);
  g_free (p);
}

MailParams *
mail_params_new (void)
{
  MailParams *params = g_new0 (MailParams, 1);

  params->items = g_ptr_array_new_with_free_func (param_free);
  return params;
}

void
mail_params_free (MailParams *params)
{
  if (params == NULL)
    return;
  g_ptr_array_unref (params->items);
  g_free (params);
}

MailParams *
mail_params_copy (const MailParams *params)
{
  MailParams *copy;

  g_return_val_if_fail (params != NULL, NULL);

  copy = mail_params_new ();
  for (guint i = 0; i < params->items->len; i++)
    {
      const MailParam *p = g_ptr_array_index (params->items, i);
      MailParam *c = g_new0 (MailParam, 1);

      c->keyword = g_strdup (p->keyword);
      c->value = g_strdup (p->value);
      g_ptr_array_add (copy->items, c);
    }
  return copy;
}

/* One "keyword[=value]" token, bytes already checked. */
static gboolean
params_add_token (MailParams *params, const char *s, gsize len, GError **error)
{
  const char *eq = memchr (s, '=', len);
  gsize klen = eq != NULL ? (gsize)(eq - s) : len;
  gsize vlen = eq != NULL ? len - klen - 1 : 0;
  MailParam *p;

  if (params->items->len >= MAIL_MAX_ESMTP_PARAMS)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_TOO_MANY_PARAMS, "more than %d ESMTP parameters",
                   MAIL_MAX_ESMTP_PARAMS);
      return FALSE;
    }
  if (klen > MAIL_MAX_ESMTP_KEYWORD)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_TOO_LONG,
                   "ESMTP keyword longer than %d octets", MAIL_MAX_ESMTP_KEYWORD);
      return FALSE;
    }
  if (vlen > MAIL_MAX_ESMTP_VALUE)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_TOO_LONG,
                   "ESMTP value longer than %d octets", MAIL_MAX_ESMTP_VALUE);
      return FALSE;
    }
  /* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
  if (klen == 0 || !g_ascii_isalnum (s[0]))
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_KEYWORD, "malformed ESMTP keyword");
      return FALSE;
    }
  for (gsize i = 0; i < klen; i++)
    {
      if (!g_ascii_isalnum (s[i]) && s[i] != '-')
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_KEYWORD, "malformed ESMTP keyword");
          return FALSE;
        }
    }
  if (eq != NULL)
    {
      /* esmtp-value = 1*(%d33-60 / %d62-126) (+ UTF-8, checked before) */
      if (vlen == 0)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_VALUE, "empty ESMTP value");
          return FALSE;
        }
      for (gsize i = 0; i < vlen; i++)
        {
          guchar c = (guchar)eq[1 + i];

          if (c == '=' || c == ' ')
            {
              g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_VALUE,
                           "character '%c' not allowed in an ESMTP value", c);
              return FALSE;
            }
        }
    }
  for (guint i = 0; i < params->items->len; i++)
    {
      const MailParam *other = g_ptr_array_index (params->items, i);

      if (strlen (other->keyword) == klen && g_ascii_strncasecmp (other->keyword, s, klen) == 0)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_DUPLICATE,
                       "ESMTP parameter %s given twice", other->keyword);
          return FALSE;
        }
    }

  p = g_new0 (MailParam, 1);
  p->keyword = g_strndup (s, klen);
  p->value = eq != NULL ? g_strndup (eq + 1, vlen) : NULL;
  g_ptr_array_add (params->items, p);
  return TRUE;
}

MailParams *
mail_params_parse (const char *s, gssize slen, guint flags, GError **error)
{
  g_autoptr (MailParams) params = mail_params_new ();
  gsize len;
  gsize i = 0;

  g_return_val_if_fail (s != NULL, NULL);

  len = mail_len (s, slen);
  if (len > MAIL_MAX_ESMTP_PARAMS_LEN)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_TOO_LONG,
                   "ESMTP parameters longer than %d octets", MAIL_MAX_ESMTP_PARAMS_LEN);
      return NULL;
    }
  if (!mail_check_text (s, len, FALSE, (flags & MAIL_PARSE_SMTPUTF8) != 0, "ESMTP parameters",
                        error))
    return NULL;

  /* RFC 5321 separates parameters with one SP; clients that send more are
   * common enough (and harmless) that runs of SP are accepted. */
  while (i < len)
    {
      gsize start;

      while (i < len && s[i] == ' ')
        i++;
      if (i == len)
        break;
      start = i;
      while (i < len && s[i] != ' ')
        i++;
      if (!params_add_token (params, s + start, i - start, error))
        return NULL;
    }
  return g_steal_pointer (&params);
}

MailParams *
mail_params_parse_argv (const char *const *argv, guint flags, GError **error)
{
  g_autoptr (MailParams) params = mail_params_new ();

  for (gsize n = 0; argv != NULL && argv[n] != NULL; n++)
    {
      gsize len = strlen (argv[n]);

      if (len > MAIL_MAX_ESMTP_KEYWORD + 1 + MAIL_MAX_ESMTP_VALUE)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_TOO_LONG,
                       "ESMTP parameter longer than %d octets",
                       MAIL_MAX_ESMTP_KEYWORD + 1 + MAIL_MAX_ESMTP_VALUE);
          return NULL;
        }
      if (!mail_check_text (argv[n], len, FALSE, (flags & MAIL_PARSE_SMTPUTF8) != 0,
                            "ESMTP parameter", error))
        return NULL;
      if (len == 0)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_PARAM_KEYWORD, "empty ESMTP parameter");
          return NULL;
        }
      if (!params_add_token (params, argv[n], len, error))
        return NULL;
    }
  return g_steal_pointer (&params);
}

guint
mail_params_get_n (const MailParams *params)
{
  g_return_val_if_fail (params != NULL, 0);
  return params->items->len;
}

const char *
mail_params_get_keyword (const MailParams *params, guint i)
{
  g_return_val_if_fail (params != NULL && i < params->items->len, NULL);
  return ((const MailParam *)g_ptr_array_index (params->items, i))->keyword;
}

const char *
mail_params_get_value (const MailParams *params, guint i)
{
  g_return_val_if_fail (params != NULL && i < params->items->len, NULL);
  return ((const MailParam *)g_ptr_array_index (params->items, i))->value;
}

gboolean
mail_params_lookup (const MailParams *params, const char *keyword, const char **out_value)
{
  g_return_val_if_fail (params != NULL && keyword != NULL, FALSE);

  for (guint i = 0; i < params->items->len; i++)
    {
      const MailParam *p = g_ptr_array_index (params->items, i);

      if (g_ascii_strcasecmp (p->keyword, keyword) == 0)
        {
          if (out_value != NULL)
            *out_value = p->value;
          return TRUE;
        }
    }
  if (out_value != NULL)
    *out_value = NULL;
  return FALSE;
}

const char *
mail_params_get (const MailParams *params, const char *keyword)
{
  const char *value = NULL;

  mail_params_lookup (params, keyword, &value);
  return value;
}

char *
mail_params_to_string (const MailParams *params)
{
  g_autoptr (GString) out = g_string_new (NULL);

  g_return_val_if_fail (params != NULL, NULL);

  for (guint i = 0; i < params->items->len; i++)
    {
      const MailParam *p = g_ptr_array_index (params->items, i);

      if (i > 0)
        g_string_append_c (out, ' ');
      g_string_append (out, p->keyword);
      if (p->value != NULL)
        {
          g_string_append_c (out, '=');
          g_string_append (out, p->value);
        }
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* ---- xtext ---------------------------------------------------------------- */

char *
mail_xtext_encode (const char *s, gssize slen)
{
  static const char hex[] = "0123456789ABCDEF";
  g_autoptr (GString) out = NULL;
  gsize len;

  g_return_val_if_fail (s != NULL, NULL);

  len = mail_len (s, slen);
  out = g_string_sized_new (len);
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar)s[i];

      if (c >= '!' && c <= '~' && c != '+' && c != '=')
        g_string_append_c (out, (char)c);
      else
        {
          g_string_append_c (out, '+');
          g_string_append_c (out, hex[c >> 4]);
          g_string_append_c (out, hex[c & 0xf]);
        }
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

char *
mail_xtext_decode (const char *s, gssize slen, GError **error)
{
  g_autoptr (GString) out = NULL;
  gsize len;

  g_return_val_if_fail (s != NULL, NULL);

  len = mail_len (s, slen);
  out = g_string_sized_new (len);
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar)s[i];

      if (c == '+')
        {
          int hi, lo;

          /* RFC 3461 says upper-case hex; lower case is decoded too, as
           * Postfix does, because being strict here buys nothing. */
          if (i + 2 >= len)
            hi = lo = -1;
          else
            {
              hi = g_ascii_xdigit_value (s[i + 1]);
              lo = g_ascii_xdigit_value (s[i + 2]);
            }
          if (hi < 0 || lo < 0)
            {
              g_set_error (error, MAIL_ERROR, MAIL_ERROR_XTEXT,
                           "malformed xtext escape at offset %" G_GSIZE_FORMAT, i);
              return NULL;
            }
          c = (guchar)(hi << 4 | lo);
          i += 2;
          if (c < 0x20 || c == 0x7f)
            {
              g_set_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR,
                           "xtext decodes to control character 0x%02x", c);
              return NULL;
            }
          if (c >= 0x80)
            {
              g_set_error (error, MAIL_ERROR, MAIL_ERROR_XTEXT, "xtext decodes to an 8-bit byte");
              return NULL;
            }
          g_string_append_c (out, (char)c);
          continue;
        }
      if (c < 0x20 || c == 0x7f)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR,
                       "control character 0x%02x in xtext", c);
          return NULL;
        }
      if (c < '!' || c > '~' || c == '=')
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_XTEXT,
                       "character not allowed in xtext at offset %" G_GSIZE_FORMAT, i);
          return NULL;
        }
      g_string_append_c (out, (char)c);
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}
