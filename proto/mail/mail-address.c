/* SPDX-License-Identifier: MIT
 *
 * mail-address.c — parse SMTP paths and bare mailboxes into MailPath.
 *
 * Contract (see mail-address.h): a parse either returns a fully validated,
 * immutable MailPath or NULL with a MAIL_ERROR whose code names the family of
 * the problem.  Checks run in a fixed order — length limits, forbidden bytes,
 * 8-bit policy, syntax — so that the cheapest refusal wins and a hostile
 * input never makes us walk or copy more than MAIL_MAX_PATH octets.
 *
 * RFC 5321 §4.1.2 (Path, Mailbox, Local-part, Domain, address-literal),
 * §4.1.3 (address literals), §4.5.1 (postmaster), §4.5.3.1 (sizes);
 * RFC 6531 §3.3 (UTF-8 in atext, qtext and sub-domains).
 */
#include <arpa/inet.h>
#include <string.h>

#include "mail-address.h"
#include "mail-private.h"

struct _MailPath
{
  gboolean is_null;
  gboolean is_postmaster;
  gboolean had_route;
  gboolean is_utf8;
  char *local;        /* unquoted */
  char *local_raw;    /* as written */
  char *domain;       /* as written */
  char *domain_lower; /* lower-cased */
  char *address;      /* canonical local@domain */
  char *path;         /* "<address>" */
};

static gboolean
is_wsp (char c)
{
  return c == ' ' || c == '\t';
}

/* RFC 5322 atext; 8-bit bytes count as atext here because the byte check
 * already refused them unless SMTPUTF8 allows UTF-8 (RFC 6531 §3.3). */
static gboolean
is_atext (guchar c)
{
  if (g_ascii_isalnum (c) || c >= 0x80)
    return TRUE;
  return c != '\0' && strchr ("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* RFC 5321 qtextSMTP: %d32-33 / %d35-91 / %d93-126 (plus UTF-8). */
static gboolean
is_qtext (guchar c)
{
  return (c >= 32 && c <= 126 && c != '"' && c != '\\') || c >= 0x80;
}

static gboolean
is_dot_atom (const char *s, gsize len)
{
  if (len == 0 || s[0] == '.' || s[len - 1] == '.')
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      if (s[i] == '.')
        {
          if (s[i + 1] == '.')
            return FALSE;
        }
      else if (!is_atext ((guchar)s[i]))
        return FALSE;
    }
  return TRUE;
}

char *
mail_local_part_quote (const char *local)
{
  g_autoptr (GString) out = NULL;

  g_return_val_if_fail (local != NULL, NULL);

  if (is_dot_atom (local, strlen (local)))
    return g_strdup (local);
  out = g_string_new ("\"");
  for (const char *p = local; *p != '\0'; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_c (out, '\\');
      g_string_append_c (out, *p);
    }
  g_string_append_c (out, '"');
  return g_string_free (g_steal_pointer (&out), FALSE);
}

char *
mail_domain_lower (const char *domain)
{
  g_return_val_if_fail (domain != NULL, NULL);

  for (const char *p = domain; *p != '\0'; p++)
    {
      /* Only non-ASCII needs Unicode case mapping; keep ASCII byte-exact. */
      if ((guchar)*p >= 0x80 && g_utf8_validate (domain, -1, NULL))
        return g_utf8_strdown (domain, -1);
    }
  return g_ascii_strdown (domain, -1);
}

/* ---- domains -------------------------------------------------------------- */

/* Longest literal text inet_pton could accept ("IPv6:" + a full IPv6 address
 * with an embedded IPv4 tail is 5 + 45); longer is refused before copying. */
#define MAIL_MAX_LITERAL_TEXT 64

static gboolean
check_address_literal (const char *d, gsize len, GError **error)
{
  char buf[MAIL_MAX_LITERAL_TEXT + 1];
  guchar addr[16];
  const char *content = d + 1;
  gsize clen;
  int family = AF_INET;

  if (len < 3 || d[len - 1] != ']')
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_ADDRESS_LITERAL,
                   "address literal not closed by ']'");
      return FALSE;
    }
  clen = len - 2;
  if (clen > MAIL_MAX_LITERAL_TEXT)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_ADDRESS_LITERAL, "address literal too long");
      return FALSE;
    }
  if (clen > 5 && g_ascii_strncasecmp (content, "IPv6:", 5) == 0)
    {
      family = AF_INET6;
      content += 5;
      clen -= 5;
    }
  else if (memchr (content, ':', clen) != NULL)
    {
      /* General-address-literal: no other tag is registered with IANA. */
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_ADDRESS_LITERAL, "unknown address literal tag");
      return FALSE;
    }
  memcpy (buf, content, clen);
  buf[clen] = '\0';
  if (inet_pton (family, buf, addr) != 1)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_ADDRESS_LITERAL, "invalid %s address literal",
                   family == AF_INET6 ? "IPv6" : "IPv4");
      return FALSE;
    }
  return TRUE;
}

/* Domain syntax only; the byte check has already run over d. */
static gboolean
check_domain (const char *d, gsize len, MailParseFlags flags, GError **error)
{
  gsize label_start = 0;

  if (len > MAIL_MAX_DOMAIN)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_DOMAIN_TOO_LONG, "domain longer than %d octets",
                   MAIL_MAX_DOMAIN);
      return FALSE;
    }
  if (len == 0)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_NO_DOMAIN, "empty domain");
      return FALSE;
    }
  if (d[0] == '[')
    return check_address_literal (d, len, error);

  for (gsize i = 0; i <= len; i++)
    {
      gsize label_len;

      if (i < len && d[i] != '.')
        {
          guchar c = (guchar)d[i];

          if (g_ascii_isalnum (c) || c == '-' || c >= 0x80
              || (c == '_' && (flags & MAIL_PARSE_LENIENT)))
            continue;
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_DOMAIN,
                       "character '%c' not allowed in a domain (offset %" G_GSIZE_FORMAT ")", c, i);
          return FALSE;
        }
      label_len = i - label_start;
      if (label_len == 0)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_DOMAIN, "empty label in domain");
          return FALSE;
        }
      if (label_len > MAIL_MAX_DOMAIN_LABEL)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_LABEL_TOO_LONG,
                       "domain label longer than %d octets", MAIL_MAX_DOMAIN_LABEL);
          return FALSE;
        }
      if (d[label_start] == '-' || d[i - 1] == '-')
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_DOMAIN,
                       "domain label starts or ends with '-'");
          return FALSE;
        }
      label_start = i + 1;
    }
  return TRUE;
}

/* ---- local part and mailbox ---------------------------------------------- */

static gboolean
check_unquoted_local (const char *s, gsize len, MailParseFlags flags, GError **error)
{
  if (len == 0)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART, "empty local part");
      return FALSE;
    }
  for (gsize i = 0; i < len; i++)
    {
      if (s[i] == '.')
        {
          /* Leading, trailing or doubled dots break the dot-string rule but
           * exist in the wild (Japanese mobile carriers); Postfix takes them. */
          if ((flags & MAIL_PARSE_LENIENT) == 0 && (i == 0 || i == len - 1 || s[i + 1] == '.'))
            {
              g_set_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART,
                           "misplaced '.' in local part (offset %" G_GSIZE_FORMAT ")", i);
              return FALSE;
            }
        }
      else if (!is_atext ((guchar)s[i]))
        {
          g_set_error (
              error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART,
              "character '%c' not allowed in an unquoted local part (offset %" G_GSIZE_FORMAT ")",
              s[i], i);
          return FALSE;
        }
    }
  /* A lone "." or ".." has no atom at all, even for a lenient reader. */
  for (gsize i = 0; i < len; i++)
    if (s[i] != '.')
      return TRUE;
  g_set_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART, "local part without an atom");
  return FALSE;
}

/* s[0] is '"' and s[len-1] the closing '"'; returns the unquoted form. */
static char *
unquote_local (const char *s, gsize len, GError **error)
{
  g_autoptr (GString) out = g_string_sized_new (len);

  for (gsize i = 1; i + 1 < len; i++)
    {
      guchar c = (guchar)s[i];

      if (c == '\\')
        {
          guchar n = (guchar)s[i + 1];

          /* quoted-pairSMTP = %d92 %d32-126; i + 1 < len - 1 holds because the
           * scanner never ends a quote on an escaped '"'. */
          if (i + 2 >= len || n < 32 || n > 126)
            {
              g_set_error (error, MAIL_ERROR, MAIL_ERROR_QUOTED_STRING,
                           "bad quoted-pair in local part");
              return NULL;
            }
          g_string_append_c (out, (char)n);
          i++;
          continue;
        }
      if (!is_qtext (c))
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_QUOTED_STRING,
                       "character not allowed in a quoted local part");
          return NULL;
        }
      g_string_append_c (out, (char)c);
    }
  if (out->len == 0)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART, "empty local part");
      return NULL;
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static MailPath *
path_alloc (void)
{
  return g_atomic_rc_box_new0 (MailPath);
}

static void
path_clear (MailPath *p)
{
  g_free (p->local);
  g_free (p->local_raw);
  g_free (p->domain);
  g_free (p->domain_lower);
  g_free (p->address);
  g_free (p->path);
}

static void
path_finish (MailPath *p)
{
  if (p->is_null)
    p->address = g_strdup ("");
  else if (p->is_postmaster)
    p->address = g_strdup (p->local);
  else
    {
      g_autofree char *quoted = mail_local_part_quote (p->local);

      p->address = g_strconcat (quoted, "@", p->domain, NULL);
    }
  p->path = g_strconcat ("<", p->address, ">", NULL);
  for (const char *c = p->address; *c != '\0'; c++)
    if ((guchar)*c >= 0x80)
      p->is_utf8 = TRUE;
}

MailPath *
mail_path_new_null (void)
{
  MailPath *p = path_alloc ();

  p->is_null = TRUE;
  p->local = g_strdup ("");
  p->local_raw = g_strdup ("");
  p->domain = g_strdup ("");
  p->domain_lower = g_strdup ("");
  path_finish (p);
  return p;
}

/* Parse "local@domain" (or "postmaster") spanning exactly [s, s+len). */
static MailPath *
parse_mailbox_exact (const char *s, gsize len, MailParseFlags flags, GError **error)
{
  g_autoptr (MailPath) p = NULL;
  g_autofree char *local = NULL;
  gsize local_end;
  gboolean quoted = len > 0 && s[0] == '"';
  const char *domain;
  gsize domain_len = 0;

  if (len == 0)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_EMPTY, "empty address");
      return NULL;
    }

  /* Find the extent of the local part: up to the closing quote, or up to the
   * first '@' (which atext does not contain). */
  if (quoted)
    {
      gsize i = 1;

      while (i < len && s[i] != '"')
        i += s[i] == '\\' ? 2 : 1;
      if (i >= len)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_QUOTED_STRING, "unterminated quoted string");
          return NULL;
        }
      local_end = i + 1;
    }
  else
    {
      const char *at = memchr (s, '@', len);

      local_end = at != NULL ? (gsize)(at - s) : len;
    }

  /* Limits first. */
  if (local_end > MAIL_MAX_LOCAL_PART)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART_TOO_LONG,
                   "local part longer than %d octets", MAIL_MAX_LOCAL_PART);
      return NULL;
    }
  domain = s + local_end + 1;
  if (local_end < len)
    domain_len = len - local_end - 1;
  if (domain_len > MAIL_MAX_DOMAIN)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_DOMAIN_TOO_LONG, "domain longer than %d octets",
                   MAIL_MAX_DOMAIN);
      return NULL;
    }

  /* Then bytes that must never appear, then the 8-bit policy. */
  if (!mail_check_text (s, len, FALSE, (flags & MAIL_PARSE_SMTPUTF8) != 0, "address", error))
    return NULL;

  /* Then syntax. */
  if (quoted)
    {
      local = unquote_local (s, local_end, error);
      if (local == NULL)
        return NULL;
      if (local_end < len && s[local_end] != '@')
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART,
                       "unexpected character after quoted local part");
          return NULL;
        }
    }
  else
    {
      if (!check_unquoted_local (s, local_end, flags, error))
        return NULL;
      local = g_strndup (s, local_end);
    }

  p = path_alloc ();
  if (local_end == len)
    {
      if (!quoted && (flags & MAIL_PARSE_ALLOW_POSTMASTER)
          && g_ascii_strcasecmp (local, "postmaster") == 0)
        {
          p->is_postmaster = TRUE;
          p->local = g_steal_pointer (&local);
          p->local_raw = g_strndup (s, len);
          p->domain = g_strdup ("");
          p->domain_lower = g_strdup ("");
          path_finish (p);
          return g_steal_pointer (&p);
        }
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_NO_DOMAIN, "address without '@domain'");
      return NULL;
    }
  if (!check_domain (domain, domain_len, flags, error))
    return NULL;

  p->local = g_steal_pointer (&local);
  p->local_raw = g_strndup (s, local_end);
  p->domain = g_strndup (domain, domain_len);
  p->domain_lower = mail_domain_lower (p->domain);
  path_finish (p);
  return g_steal_pointer (&p);
}

/* A-d-l = At-domain *( "," At-domain ); validated, then dropped. */
static gboolean
check_route (const char *s, gsize len, MailParseFlags flags, GError **error)
{
  gsize start = 0;

  if (!mail_check_text (s, len, FALSE, (flags & MAIL_PARSE_SMTPUTF8) != 0, "source route", error))
    return FALSE;
  for (gsize i = 0; i <= len; i++)
    {
      g_autoptr (GError) local_error = NULL;

      if (i < len && s[i] != ',')
        continue;
      if (i == start || s[start] != '@'
          || !check_domain (s + start + 1, i - start - 1, flags & ~MAIL_PARSE_LENIENT,
                            &local_error))
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_SOURCE_ROUTE, "malformed source route%s%s",
                       local_error ? ": " : "", local_error ? local_error->message : "");
          return FALSE;
        }
      start = i + 1;
    }
  return TRUE;
}

/* The inside of "<...>" (brackets removed, already bounded by MAIL_MAX_PATH). */
static MailPath *
parse_path_inner (const char *s, gsize len, MailParseFlags flags, GError **error)
{
  g_autoptr (MailPath) p = NULL;
  gboolean had_route = FALSE;

  if (flags & MAIL_PARSE_LENIENT)
    {
      while (len > 0 && is_wsp (s[0]))
        s++, len--;
      while (len > 0 && is_wsp (s[len - 1]))
        len--;
    }
  if (len == 0)
    {
      if ((flags & MAIL_PARSE_ALLOW_NULL) == 0)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_NULL_PATH, "null path <> not allowed here");
          return NULL;
        }
      return mail_path_new_null ();
    }
  if (s[0] == '@')
    {
      const char *colon = memchr (s, ':', len);
      gsize route_len;

      if (colon == NULL)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_SOURCE_ROUTE, "source route without ':'");
          return NULL;
        }
      route_len = (gsize)(colon - s);
      if (!check_route (s, route_len, flags, error))
        return NULL;
      if (route_len + 1 == len)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_SOURCE_ROUTE, "source route without mailbox");
          return NULL;
        }
      s += route_len + 1;
      len -= route_len + 1;
      had_route = TRUE;
    }
  p = parse_mailbox_exact (s, len, flags, error);
  if (p != NULL)
    p->had_route = had_route;
  return g_steal_pointer (&p);
}

MailPath *
mail_path_parse_prefix (const char *s, gsize len, MailParseFlags flags, gsize *out_consumed,
                        GError **error)
{
  gsize start = 0;
  gsize i;
  gboolean in_quote = FALSE;
  MailPath *p;

  g_return_val_if_fail (s != NULL || len == 0, NULL);

  if (flags & MAIL_PARSE_LENIENT)
    while (start < len && is_wsp (s[start]))
      start++;
  if (start == len)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_EMPTY, "empty path");
      return NULL;
    }
  if (s[start] != '<')
    {
      gsize end = start;

      if ((flags & MAIL_PARSE_LENIENT) == 0)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_SYNTAX, "path does not start with '<'");
          return NULL;
        }
      /* A bracketless address ends at the first blank outside quotes. */
      while (end < len && (in_quote || !is_wsp (s[end])))
        {
          if (end - start >= MAIL_MAX_PATH - 2)
            {
              g_set_error (error, MAIL_ERROR, MAIL_ERROR_PATH_TOO_LONG,
                           "path longer than %d octets", MAIL_MAX_PATH);
              return NULL;
            }
          if (s[end] == '\\' && in_quote)
            end++;
          else if (s[end] == '"')
            in_quote = !in_quote;
          end++;
        }
      if (end > len)
        end = len;
      p = mail_mailbox_parse (s + start, (gssize)(end - start), flags, error);
      if (p != NULL && out_consumed != NULL)
        *out_consumed = end;
      return p;
    }

  /* Find the closing '>' outside quotes, never looking further than the
   * path limit allows. */
  for (i = start + 1; i < len; i++)
    {
      if (i - start + 1 > MAIL_MAX_PATH)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_PATH_TOO_LONG, "path longer than %d octets",
                       MAIL_MAX_PATH);
          return NULL;
        }
      if (in_quote && s[i] == '\\')
        i++;
      else if (s[i] == '"')
        in_quote = !in_quote;
      else if (!in_quote && s[i] == '>')
        break;
    }
  if (i >= len)
    {
      if (in_quote)
        g_set_error (error, MAIL_ERROR, MAIL_ERROR_QUOTED_STRING, "unterminated quoted string");
      else
        g_set_error (error, MAIL_ERROR, MAIL_ERROR_SYNTAX, "path does not end with '>'");
      return NULL;
    }
  p = parse_path_inner (s + start + 1, i - start - 1, flags, error);
  if (p != NULL && out_consumed != NULL)
    *out_consumed = i + 1;
  return p;
}

MailPath *
mail_path_parse (const char *s, gssize slen, MailParseFlags flags, GError **error)
{
  g_autoptr (MailPath) p = NULL;
  gsize len;
  gsize consumed = 0;

  g_return_val_if_fail (s != NULL, NULL);

  len = mail_len (s, slen);
  if (flags & MAIL_PARSE_LENIENT)
    {
      while (len > 0 && is_wsp (s[0]))
        s++, len--;
      while (len > 0 && is_wsp (s[len - 1]))
        len--;
    }
  if (len > MAIL_MAX_PATH)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_PATH_TOO_LONG, "path longer than %d octets",
                   MAIL_MAX_PATH);
      return NULL;
    }
  p = mail_path_parse_prefix (s, len, flags, &consumed, error);
  if (p == NULL)
    return NULL;
  if (consumed != len)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_SYNTAX, "unexpected characters after the path");
      return NULL;
    }
  return g_steal_pointer (&p);
}

MailPath *
mail_mailbox_parse (const char *s, gssize slen, MailParseFlags flags, GError **error)
{
  gsize len;

  g_return_val_if_fail (s != NULL, NULL);

  len = mail_len (s, slen);
  if (flags & MAIL_PARSE_LENIENT)
    {
      while (len > 0 && is_wsp (s[0]))
        s++, len--;
      while (len > 0 && is_wsp (s[len - 1]))
        len--;
      if (len > 0 && s[0] == '<')
        return mail_path_parse (s, (gssize)len, flags, error);
    }
  if (len > MAIL_MAX_MAILBOX)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_PATH_TOO_LONG, "address longer than %d octets",
                   MAIL_MAX_MAILBOX);
      return NULL;
    }
  if (len == 0 && (flags & MAIL_PARSE_ALLOW_NULL))
    return mail_path_new_null ();
  return parse_mailbox_exact (s, len, flags, error);
}

MailPath *
mail_path_new (const char *local, const char *domain, MailParseFlags flags, GError **error)
{
  g_autofree char *quoted = NULL;
  g_autofree char *addr = NULL;

  g_return_val_if_fail (local != NULL, NULL);

  /* Bound before quoting doubles anything. */
  if (strlen (local) > MAIL_MAX_LOCAL_PART)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART_TOO_LONG,
                   "local part longer than %d octets", MAIL_MAX_LOCAL_PART);
      return NULL;
    }
  quoted = mail_local_part_quote (local);
  if (domain == NULL || domain[0] == '\0')
    return mail_mailbox_parse (quoted, -1, flags & ~MAIL_PARSE_LENIENT, error);
  addr = g_strconcat (quoted, "@", domain, NULL);
  return mail_mailbox_parse (addr, -1, flags & ~MAIL_PARSE_LENIENT, error);
}

MailPath *
mail_path_ref (MailPath *path)
{
  g_return_val_if_fail (path != NULL, NULL);
  return g_atomic_rc_box_acquire (path);
}

void
mail_path_unref (MailPath *path)
{
  if (path != NULL)
    g_atomic_rc_box_release_full (path, (GDestroyNotify)path_clear);
}

gboolean
mail_path_is_null (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, FALSE);
  return path->is_null;
}

gboolean
mail_path_is_postmaster (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, FALSE);
  return path->is_postmaster;
}

gboolean
mail_path_had_route (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, FALSE);
  return path->had_route;
}

gboolean
mail_path_is_utf8 (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, FALSE);
  return path->is_utf8;
}

const char *
mail_path_get_local (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, NULL);
  return path->local;
}

const char *
mail_path_get_local_raw (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, NULL);
  return path->local_raw;
}

const char *
mail_path_get_domain (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, NULL);
  return path->domain;
}

const char *
mail_path_get_domain_lower (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, NULL);
  return path->domain_lower;
}

const char *
mail_path_get_address (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, NULL);
  return path->address;
}

const char *
mail_path_get_path (const MailPath *path)
{
  g_return_val_if_fail (path != NULL, NULL);
  return path->path;
}

gboolean
mail_path_equal (const MailPath *a, const MailPath *b)
{
  g_return_val_if_fail (a != NULL && b != NULL, FALSE);

  if (a->is_null || b->is_null)
    return a->is_null == b->is_null;
  /* RFC 5321 §4.5.1: "postmaster" is case-insensitive. */
  if (a->is_postmaster || b->is_postmaster)
    return a->is_postmaster == b->is_postmaster;
  return strcmp (a->local, b->local) == 0 && strcmp (a->domain_lower, b->domain_lower) == 0;
}
