/* SPDX-License-Identifier: MIT
 *
 * bounce-text.c — the DSN generator's text helpers (bounce-private.h):
 * everything that comes from the envelope or a remote server is cleaned
 * here before bounce.c writes it; dates, wrapped fields and the returned
 * original's header section are formatted here.
 */
#include "mta/bounce-private.h"

#include <string.h>

#include "proto/mail/mail-param.h"

/* The status class each kind of notice reports (RFC 3464 §2.3.4). */
static char
action_class (VpsBounceKind kind)
{
  switch (kind)
    {
      case VPS_BOUNCE_FAILURE:
        return '5';
      case VPS_BOUNCE_DELAY:
        return '4';
      case VPS_BOUNCE_SUCCESS:
      default:
        return '2';
    }
}

/* ---- cleaning what comes from outside ------------------------------------ */

/* Append text from a peer or the envelope, made safe for one line: each run
 * of CR, LF, HT and SP becomes one space (a multi-line reply reads as one
 * line), leading and trailing blanks go, and every other control character
 * (C1 included), every octet that is not UTF-8 and — unless utf8 — every
 * non-ASCII character becomes one '?'.  At most max octets are appended,
 * cut at a character boundary. */
static void
append_clean (GString *out, const char *s, gsize len, gboolean utf8, gsize max)
{
  gsize start = out->len;
  gboolean pending_space = FALSE;
  gsize i = 0;

  while (i < len)
    {
      guchar c = (guchar)s[i];
      gsize clen = 1;
      gboolean keep = c >= 0x20 && c < 0x7f;

      if (c == '\r' || c == '\n' || c == '\t' || c == ' ')
        {
          pending_space = out->len > start;
          i++;
          continue;
        }
      if (c >= 0x80)
        {
          gunichar u = g_utf8_get_char_validated (s + i, (gssize)(len - i));

          if (u != (gunichar)-1 && u != (gunichar)-2)
            {
              clen = (gsize)g_unichar_to_utf8 (u, NULL);
              keep = utf8 && u >= 0xa0;
            }
        }
      if (out->len - start + (pending_space ? 1 : 0) + (keep ? clen : 1) > max)
        break;
      if (pending_space)
        g_string_append_c (out, ' ');
      pending_space = FALSE;
      if (keep)
        g_string_append_len (out, s + i, (gssize)clen);
      else
        g_string_append_c (out, '?');
      i += clen;
    }
}

char *
vps_bounce_clean (const char *s, gsize len, gboolean utf8, gsize max)
{
  GString *out = g_string_sized_new (MIN (len, max) + 1);

  append_clean (out, s, len, utf8, max);
  return g_string_free (out, FALSE);
}

/* A value for a report field (RFC 3464 *text): as is when it is printable
 * US-ASCII without leading or trailing blanks, else xtext (RFC 3461 §4) —
 * the form a DSN reader knows how to decode. */
char *
vps_bounce_report_value (const char *s)
{
  gsize len = strlen (s);
  gboolean plain = len > 0 && s[0] != ' ' && s[len - 1] != ' ';

  for (gsize i = 0; plain && i < len; i++)
    plain = (guchar)s[i] >= 0x20 && (guchar)s[i] < 0x7f;
  return plain ? g_strdup (s) : mail_xtext_encode (s, (gssize)len);
}

/* An address from the envelope: it goes into header fields (To:) and the
 * report, so it must be one line of valid UTF-8 of bounded size. */
gboolean
vps_bounce_check_address (const char *addr, const char *what, guint index, GError **error)
{
  gsize len = addr != NULL ? strlen (addr) : 0;
  const char *why = NULL;

  if (len == 0 || len > VPS_BOUNCE_MAX_ADDRESS)
    why = "empty or too long";
  for (gsize i = 0; why == NULL && i < len; i++)
    if ((guchar)addr[i] < 0x20 || (guchar)addr[i] == 0x7f)
      why = "a control character";
  if (why == NULL && !g_utf8_validate (addr, (gssize)len, NULL))
    why = "not valid UTF-8";
  if (why != NULL)
    g_set_error (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_INVALID, "%s %u: address: %s", what,
                 index, why);
  return why == NULL;
}

/* Octets of a remote host token "NAME[ADDR]" (':' for IPv6 addresses). */
static gboolean
hostname_char (char c)
{
  return g_ascii_isalnum (c) || c == '.' || c == '-' || c == '_' || c == ':';
}

/* The reporting MTA names itself in From: and the report: a plain host
 * name (it comes from the configuration, but it lands in header fields). */
gboolean
vps_bounce_check_hostname (const char *host, GError **error)
{
  gsize len = host != NULL ? strlen (host) : 0;
  gboolean ok = len > 0 && len <= VPS_BOUNCE_MAX_HOSTNAME;

  for (gsize i = 0; ok && i < len; i++)
    ok = g_ascii_isalnum (host[i]) || host[i] == '.' || host[i] == '-' || host[i] == '_';
  if (!ok)
    g_set_error (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_INVALID,
                 "reporting MTA: not a host name of at most %d octets", VPS_BOUNCE_MAX_HOSTNAME);
  return ok;
}

/* ---- results --------------------------------------------------------------- */

char *
vps_bounce_remote_result (const char *name, const char *addr, const char *reply, gssize reply_len)
{
  GString *out;
  const char *first = name != NULL ? name : addr;

  g_return_val_if_fail (name != NULL || addr != NULL, NULL);
  g_return_val_if_fail (reply != NULL || reply_len <= 0, NULL);

  out = g_string_new ("host ");
  /* Host names come from DNS answers: hostile too, and they end a token
   * the reader splits at a blank, so anything unusual becomes '?'. */
  for (guint part = 0; part < 2; part++)
    {
      const char *s = part == 0 ? first : addr;

      if (s == NULL)
        break;
      if (part == 1)
        g_string_append_c (out, '[');
      for (gsize i = 0; s[i] != '\0' && i < VPS_BOUNCE_MAX_HOSTNAME; i++)
        g_string_append_c (out, hostname_char (s[i]) ? s[i] : '?');
    }
  g_string_append (out, addr != NULL ? "] said: " : " said: ");
  if (reply != NULL)
    append_clean (out, reply, reply_len < 0 ? strlen (reply) : (gsize)reply_len, TRUE,
                  VPS_BOUNCE_MAX_DIAGNOSTIC);
  return g_string_free (out, FALSE);
}

/* Split "host NAME[ADDR] said: REPLY" (vps_bounce_remote_result): returns
 * the reply and sets *remote_mta to NAME; anything else is a local result,
 * returned whole with *remote_mta NULL. */
const char *
vps_bounce_result_parse (const char *result, char **remote_mta)
{
  const char *token, *end, *name_end;

  *remote_mta = NULL;
  if (result == NULL || !g_str_has_prefix (result, "host "))
    return result;
  token = result + strlen ("host ");
  end = strchr (token, ' ');
  if (end == NULL || end == token || !g_str_has_prefix (end, " said: "))
    return result;
  name_end = memchr (token, '[', (gsize)(end - token));
  if (name_end == NULL)
    name_end = end;
  else if (end[-1] != ']')
    return result;
  /* '?' is what vps_bounce_remote_result made of a character it refused. */
  for (const char *p = token; p < name_end; p++)
    if (!hostname_char (*p) && *p != '?')
      return result;
  /* A host name is bounded (RFC 1035); a longer token was not made by
   * vps_bounce_remote_result and could not fit a field line. */
  if (name_end == token || (gsize)(name_end - token) > VPS_BOUNCE_MAX_HOSTNAME)
    return result;
  *remote_mta = g_strndup (token, (gsize)(name_end - token));
  return end + strlen (" said: ");
}

/* The Status field (RFC 3464 §2.3.4) for a reply ("550 5.1.1 text",
 * possibly "550  text" without enhanced code), see bounce.h. */
void
vps_bounce_result_status (const char *reply, VpsBounceKind kind,
                          char out[MAIL_MAX_ENHANCED_CODE + 1])
{
  char enhanced[MAIL_MAX_ENHANCED_CODE + 1] = "";
  char klass = '\0';
  const char *p = reply;
  const char *detail = ".0.0";
  gsize wlen;

  if (p != NULL)
    {
      while (*p == ' ')
        p++;
      if (g_ascii_isdigit (p[0]) && g_ascii_isdigit (p[1]) && g_ascii_isdigit (p[2])
          && (p[3] == ' ' || p[3] == '-' || p[3] == '\0'))
        {
          klass = p[0];
          p += 3;
          while (*p == ' ' || *p == '-')
            p++;
        }
      /* The enhanced code: the next word when it is one (RFC 3463). */
      wlen = strcspn (p, " \t\r\n");
      if (wlen > 0 && wlen <= MAIL_MAX_ENHANCED_CODE)
        {
          memcpy (enhanced, p, wlen);
          enhanced[wlen] = '\0';
          if (mail_enhanced_code_check (enhanced, 0, NULL)
              && (klass == '\0' || klass == enhanced[0]))
            {
              klass = enhanced[0];
              detail = strchr (enhanced, '.');
            }
          else
            enhanced[0] = '\0';
        }
    }
  /* A failure may carry a 4.X.X: a persistent transient failure that was
   * given up on (RFC 3463 §3.2: "abandonment ... of attempts").  Any other
   * class that does not fit the action takes the action's class. */
  if (!(klass == action_class (kind) || (kind == VPS_BOUNCE_FAILURE && klass == '4')))
    klass = action_class (kind);
  g_snprintf (out, MAIL_MAX_ENHANCED_CODE + 1, "%c%s", klass, detail);
}

/* ---- formatting helpers ------------------------------------------------ */

/* RFC 5322 §3.3 date-time in UTC with English names whatever the locale
 * (g_date_time_format's %a and %b follow LC_TIME). */
char *
vps_bounce_format_date (gint64 usec)
{
  static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
  static const char *const months[]
      = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_utc (usec / G_USEC_PER_SEC);

  if (dt == NULL)
    dt = g_date_time_new_from_unix_utc (0);
  return g_strdup_printf ("%s, %d %s %04d %02d:%02d:%02d +0000",
                          days[g_date_time_get_day_of_week (dt) % 7],
                          g_date_time_get_day_of_month (dt), months[g_date_time_get_month (dt) - 1],
                          g_date_time_get_year (dt), g_date_time_get_hour (dt),
                          g_date_time_get_minute (dt), g_date_time_get_second (dt));
}

/* "Name: value\r\n", folded at blanks (values here hold no control
 * characters and no word near 998 octets: they were cleaned and bounded). */
void
vps_bounce_append_field (GString *out, const char *name, const char *value)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *line = mail_header_fold (name, value, &error);

  if (line == NULL)
    {
      /* Unreachable by the bounds above; drop the field rather than
       * write something unchecked. */
      g_critical ("bounce: field %s not written: %s", name, error->message);
      return;
    }
  g_string_append (out, line);
}

/* Append words wrapped at BOUNCE_TEXT_WIDTH, continuation lines indented by
 * indent spaces (a recipient's paragraph, as Postfix writes it); a word
 * longer than the width stands alone on its line (the words are bounded:
 * addresses and cleaned results). */
void
vps_bounce_append_wrapped (GString *out, const char *text, gsize indent)
{
  g_auto (GStrv) words = g_strsplit (text, " ", -1);
  gsize col = 0;

  for (guint i = 0; words[i] != NULL; i++)
    {
      gsize wlen = strlen (words[i]);

      if (wlen == 0)
        continue;
      if (col > 0 && col + 1 + wlen > BOUNCE_TEXT_WIDTH)
        {
          g_string_append (out, "\r\n");
          for (col = 0; col < indent; col++)
            g_string_append_c (out, ' ');
        }
      else if (col > 0)
        {
          g_string_append_c (out, ' ');
          col++;
        }
      g_string_append (out, words[i]);
      col += wlen;
    }
  g_string_append (out, "\r\n");
}

gboolean
vps_bounce_has_8bit (const char *s, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if ((guchar)s[i] >= 0x80)
      return TRUE;
  return FALSE;
}

/* ---- the original -------------------------------------------------------- */

/* Whether the original can travel as is inside message/rfc822 over
 * 8BITMIME: no NUL, every line ends in CRLF (the last may have none), no
 * line longer than 998 octets (RFC 6152 §3; RFC 2046 §5.2.1 allows only
 * 7bit/8bit/binary there, and binary needs BINARYMIME). */
gboolean
vps_bounce_original_is_clean (const char *data, gsize len)
{
  gsize line = 0;

  for (gsize i = 0; i < len; i++)
    {
      char c = data[i];

      if (c == '\0')
        return FALSE;
      if (c == '\r')
        {
          if (i + 1 >= len || data[i + 1] != '\n')
            return FALSE;
          i++;
          line = 0;
          continue;
        }
      if (c == '\n' || ++line > BOUNCE_MAX_LINE)
        return FALSE;
    }
  return TRUE;
}

/* Append the header section of the original as text/rfc822-headers content:
 * lines up to the first empty one, each ending in CRLF; a NUL becomes '?'
 * and a stray CR a space (this is a report, not the message); a line over
 * the limit is broken (at a UTF-8 character boundary) into continuation
 * lines.  At most limit octets, cut before the header field that would
 * cross it. */
void
vps_bounce_append_headers (GString *out, const char *data, gsize len, gsize limit)
{
  gsize start = out->len;
  gsize field_start = out->len;
  gsize pos = 0;

  while (pos < len)
    {
      const char *nl = memchr (data + pos, '\n', len - pos);
      gsize end = nl != NULL ? (gsize)(nl - data) : len;
      gsize next = nl != NULL ? end + 1 : len;
      gsize col = 0;

      if (end > pos && data[end - 1] == '\r' && nl != NULL)
        end--;
      if (end == pos)
        break; /* the empty line: the body starts */
      if (data[pos] != ' ' && data[pos] != '\t')
        field_start = out->len;
      for (gsize i = pos; i < end; i++)
        {
          guchar c = (guchar)data[i];

          /* Not inside a UTF-8 sequence, unless the octets are no UTF-8
           * at all (a run of continuation octets must not run on). */
          if (col >= BOUNCE_HEADER_BREAK && ((c & 0xc0) != 0x80 || col >= BOUNCE_HEADER_BREAK + 4))
            {
              g_string_append (out, "\r\n ");
              col = 1;
            }
          g_string_append_c (out, c == '\0' ? '?' : c == '\r' ? ' ' : (char)c);
          col++;
        }
      g_string_append (out, "\r\n");
      if (out->len - start > limit)
        {
          g_string_truncate (out, field_start);
          return;
        }
      pos = next;
    }
}
