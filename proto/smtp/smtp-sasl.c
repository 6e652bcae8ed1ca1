/* SPDX-License-Identifier: MIT
 *
 * smtp-sasl.c — the SASL PLAIN (RFC 4616) and LOGIN encodings used by SMTP
 * AUTH (RFC 4954).
 *
 * Contract (see smtp.h): base64 is checked here before g_base64_decode(),
 * which skips characters outside the alphabet and accepts any padding
 * without a word, so garbage would silently decode to something.  We want
 * RFC 4648 §4 exactly: the alphabet, a length that is a multiple of 4, at
 * most two '=' and only at the end, and zero pad bits (§3.5: a
 * non-canonical encoding is refused).  "=" alone is RFC 4954 §4's empty
 * response and decodes to nothing.  The length is bounded before decoding.
 *
 * PLAIN: [authzid] NUL authcid NUL passwd; authcid and passwd non-empty,
 * each field at most SMTP_MAX_SASL_FIELD octets.  authzid and authcid must
 * be UTF-8 without control characters (they reach logs and Received
 * headers; RFC 4616 would allow them); the password is opaque except for
 * NUL.  Decoded buffers holding a password are wiped before they are freed.
 */
#include <string.h>

#include "smtp.h"

/* PLAIN carries three fields and two NULs. */
#define SASL_MAX_PLAIN (3 * SMTP_MAX_SASL_FIELD + 2)
/* base64 of n octets */
#define B64_LEN(n) (((n) + 2) / 3 * 4)

static int
b64_value (char c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

static gboolean
b64_validate (const char *s, gsize len, GError **error)
{
  gsize pad = 0;

  if (len % 4 != 0)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_BAD_BASE64,
                   "base64 length is not a multiple of 4");
      return FALSE;
    }
  for (gsize i = 0; i < len; i++)
    {
      if (s[i] == '=')
        {
          /* '=' only in the last two places */
          if (i + 2 < len)
            break;
          pad++;
        }
      else if (pad > 0 || b64_value (s[i]) < 0)
        {
          pad = 3;
          break;
        }
    }
  if (pad > 2 || (pad == 0 && memchr (s, '=', len) != NULL))
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_BAD_BASE64, "not base64");
      return FALSE;
    }
  /* The bits the padding leaves over must be zero, or two encodings would
   * decode to the same octets. */
  if ((pad == 2 && (b64_value (s[len - 3]) & 0x0f) != 0)
      || (pad == 1 && (b64_value (s[len - 2]) & 0x03) != 0))
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_BAD_BASE64, "non-canonical base64");
      return FALSE;
    }
  return TRUE;
}

/* Validate and decode; *out_len gets the length.  Never returns NULL
 * without an error; "=" and "" give an empty buffer. */
static guchar *
b64_decode (const char *b64, gsize max_decoded, gsize *out_len, GError **error)
{
  gsize max_len = B64_LEN (max_decoded);
  gsize len = strnlen (b64, max_len + 1);

  *out_len = 0;
  if (len > max_len)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX,
                   "response longer than %" G_GSIZE_FORMAT " octets", max_decoded);
      return NULL;
    }
  if (len == 0 || (len == 1 && b64[0] == '='))
    return g_malloc0 (1);
  if (!b64_validate (b64, len, error))
    return NULL;
  return g_base64_decode (b64, out_len);
}

static void
wipe_free (guchar *p, gsize len)
{
  if (p == NULL)
    return;
  explicit_bzero (p, len);
  g_free (p);
}

static gboolean
check_identity (const char *what, const guchar *s, gsize len, GError **error)
{
  if (len > SMTP_MAX_SASL_FIELD)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "%s longer than %d octets", what,
                   SMTP_MAX_SASL_FIELD);
      return FALSE;
    }
  if (!g_utf8_validate_len ((const char *)s, len, NULL))
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "%s is not UTF-8", what);
      return FALSE;
    }
  for (gsize i = 0; i < len; i++)
    {
      if (s[i] < 0x20 || s[i] == 0x7f)
        {
          g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "control character in %s", what);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
smtp_sasl_plain_decode (const char *b64, char **authzid, char **authcid, char **password,
                        GError **error)
{
  gsize len = 0;
  guchar *d;
  const guchar *nul1;
  const guchar *nul2;
  const guchar *end;
  gboolean ok = FALSE;

  g_return_val_if_fail (b64 != NULL, FALSE);
  g_return_val_if_fail (authcid != NULL && password != NULL, FALSE);

  d = b64_decode (b64, SASL_MAX_PLAIN, &len, error);
  if (d == NULL)
    return FALSE;
  end = d + len;
  nul1 = memchr (d, '\0', len);
  nul2 = nul1 != NULL ? memchr (nul1 + 1, '\0', (gsize)(end - nul1 - 1)) : NULL;
  if (nul2 == NULL)
    g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "PLAIN: missing field");
  else if (memchr (nul2 + 1, '\0', (gsize)(end - nul2 - 1)) != NULL)
    g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "PLAIN: NUL in the password");
  else if (nul2 == nul1 + 1 || nul2 + 1 == end)
    g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "PLAIN: empty user name or password");
  else if ((gsize)(end - nul2 - 1) > SMTP_MAX_SASL_FIELD)
    g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "PLAIN: password longer than %d octets",
                 SMTP_MAX_SASL_FIELD);
  else if (check_identity ("authorization identity", d, (gsize)(nul1 - d), error)
           && check_identity ("user name", nul1 + 1, (gsize)(nul2 - nul1 - 1), error))
    {
      if (authzid != NULL)
        *authzid = g_strndup ((const char *)d, (gsize)(nul1 - d));
      *authcid = g_strndup ((const char *)nul1 + 1, (gsize)(nul2 - nul1 - 1));
      *password = g_strndup ((const char *)nul2 + 1, (gsize)(end - nul2 - 1));
      ok = TRUE;
    }
  wipe_free (d, len);
  return ok;
}

char *
smtp_sasl_base64_field (const char *b64, GError **error)
{
  gsize len = 0;
  guchar *d;
  char *out = NULL;

  g_return_val_if_fail (b64 != NULL, NULL);

  d = b64_decode (b64, SMTP_MAX_SASL_FIELD, &len, error);
  if (d == NULL)
    return NULL;
  /* B64_LEN rounds up: up to two octets more may decode */
  if (len > SMTP_MAX_SASL_FIELD)
    g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "longer than %d octets",
                 SMTP_MAX_SASL_FIELD);
  else if (memchr (d, '\0', len) != NULL)
    g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "NUL in the response");
  else
    out = g_strndup ((const char *)d, len);
  wipe_free (d, len);
  return out;
}
