/* SPDX-License-Identifier: MIT
 *
 * smtp-out-codec.c — the SMTP client codec: EHLO extensions, MAIL/RCPT
 * with ESMTP parameters, AUTH PLAIN/LOGIN, BDAT, dot-stuffing.
 *
 * Contract (see smtp-out.h): a built command is one line ending in CRLF
 * that holds no byte a peer or the queue could use to start a second
 * command: addresses are refused if they hold a control character, ENVID
 * and ORCPT go out as xtext, credentials as base64.  Parameters are sent
 * only when the EHLO reply offered their extension; what cannot be sent
 * without one is an error naming it.  Each limit is checked before the
 * line is returned.
 *
 * Choices (RFC 5321 leaves room):
 * - An EHLO line that is no keyword is skipped, not an error: one odd line
 *   from a real server must not make its mail undeliverable.
 * - "SIZE" without a number, or with garbage, is SIZE without a fixed
 *   limit (RFC 1870 §4 "SIZE 0"); a number over 2^64-1 saturates.
 * - BODY=7BIT is never sent: it is the default and means nothing to a
 *   server; BODY=8BITMIME and BINARYMIME are sent only when offered.
 * - Dot-stuffing turns bare CR and bare LF into CRLF: Postfix's client
 *   sends lines too (its queue file holds records, not bytes), and no
 *   receiver then sees an ambiguous end of data.
 */
#include <string.h>

#include "smtp-out.h"

G_DEFINE_QUARK (smtp - out - error - quark, smtp_out_error)

/* ---- EHLO --------------------------------------------------------------------- */

typedef struct
{
  const char *keyword;
  SmtpExt ext;
} ExtName;

static const ExtName ext_names[] = {
  { "PIPELINING", SMTP_EXT_PIPELINING },
  { "SIZE", SMTP_EXT_SIZE },
  { "8BITMIME", SMTP_EXT_8BITMIME },
  { "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
  { "DSN", SMTP_EXT_DSN },
  { "STARTTLS", SMTP_EXT_STARTTLS },
  { "AUTH", SMTP_EXT_AUTH },
  { "CHUNKING", SMTP_EXT_CHUNKING },
  { "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES },
  { "BINARYMIME", SMTP_EXT_BINARYMIME },
};

typedef struct
{
  const char *name;
  SmtpAuthMech mech;
} MechName;

static const MechName mech_names[] = {
  { "PLAIN", SMTP_AUTH_MECH_PLAIN },
  { "LOGIN", SMTP_AUTH_MECH_LOGIN },
};

/* RFC 5321 §4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static gsize
keyword_len (const char *s)
{
  gsize n = 0;

  if (!g_ascii_isalnum (s[0]))
    return 0;
  while (g_ascii_isalnum (s[n]) || s[n] == '-')
    n++;
  return n;
}

/* "SIZE n": RFC 1870 size-value = 1*20DIGIT. */
static guint64
parse_size (const char *p)
{
  guint64 v = 0;
  gsize n = 0;

  while (*p == ' ')
    p++;
  for (; g_ascii_isdigit (p[n]); n++)
    {
      guint d = (guint)(p[n] - '0');

      if (n >= SMTP_MAX_SIZE_DIGITS || v > (G_MAXUINT64 - d) / 10)
        return G_MAXUINT64;
      v = v * 10 + d;
    }
  /* "SIZE 10MB" or "SIZE x": no usable limit */
  if (p[n] != '\0' && p[n] != ' ')
    return 0;
  return v;
}

/* The mechanisms after "AUTH" / "AUTH=": space-separated names. */
static guint
parse_mechs (const char *p)
{
  guint mechs = 0;

  while (*p != '\0')
    {
      gsize n;

      while (*p == ' ')
        p++;
      n = strcspn (p, " ");
      if (n > 0 && n <= SMTP_MAX_SASL_MECHANISM)
        for (gsize i = 0; i < G_N_ELEMENTS (mech_names); i++)
          if (strlen (mech_names[i].name) == n
              && g_ascii_strncasecmp (p, mech_names[i].name, n) == 0)
            mechs |= mech_names[i].mech;
      p += n;
    }
  return mechs;
}

gboolean
smtp_ehlo_parse (const MailReply *reply, SmtpEhlo *out, GError **error)
{
  guint n_lines;

  g_return_val_if_fail (reply != NULL, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  memset (out, 0, sizeof *out);
  if (mail_reply_get_code (reply) != 250)
    {
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_EHLO, "EHLO answered %u, not 250",
                   mail_reply_get_code (reply));
      return FALSE;
    }
  n_lines = mail_reply_get_n_lines (reply);
  /* Line 0 is "domain [greeting]"; every further line names an extension. */
  for (guint i = 1; i < n_lines; i++)
    {
      const char *line = mail_reply_get_line (reply, i);
      gsize klen;

      while (*line == ' ')
        line++;
      klen = keyword_len (line);
      if (klen == 0)
        continue;
      /* The pre-RFC 2554 form "AUTH=PLAIN LOGIN" (still sent next to or
       * instead of "AUTH PLAIN LOGIN" by some servers). */
      if (klen == 4 && g_ascii_strncasecmp (line, "AUTH", 4) == 0 && line[4] == '=')
        {
          out->ext |= SMTP_EXT_AUTH;
          out->auth |= parse_mechs (line + 5);
          continue;
        }
      if (line[klen] != '\0' && line[klen] != ' ')
        continue;
      for (gsize e = 0; e < G_N_ELEMENTS (ext_names); e++)
        {
          if (strlen (ext_names[e].keyword) != klen
              || g_ascii_strncasecmp (line, ext_names[e].keyword, klen) != 0)
            continue;
          out->ext |= ext_names[e].ext;
          if (ext_names[e].ext == SMTP_EXT_SIZE)
            out->size_limit = parse_size (line + klen);
          else if (ext_names[e].ext == SMTP_EXT_AUTH)
            out->auth |= parse_mechs (line + klen);
          break;
        }
    }
  return TRUE;
}

/* ---- addresses ------------------------------------------------------------------ */

gboolean
smtp_out_address_is_utf8 (const char *address)
{
  g_return_val_if_fail (address != NULL, FALSE);
  for (const char *p = address; *p != '\0'; p++)
    if ((guchar)*p >= 0x80)
      return TRUE;
  return FALSE;
}

gboolean
smtp_out_has_8bit (const guint8 *data, gsize len)
{
  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  for (gsize i = 0; i < len; i++)
    if (data[i] >= 0x80)
      return TRUE;
  return FALSE;
}

gboolean
smtp_out_header_is_utf8 (const guint8 *data, gsize len)
{
  gboolean line_start = TRUE;

  g_return_val_if_fail (data != NULL || len == 0, FALSE);
  for (gsize i = 0; i < len; i++)
    {
      guint8 c = data[i];

      /* The header section ends at the first empty line (CRLF CRLF, or a
       * bare LF one: the message may not be normalised yet). */
      if (line_start && (c == '\n' || (c == '\r' && i + 1 < len && data[i + 1] == '\n')))
        return FALSE;
      if (c >= 0x80)
        return TRUE;
      line_start = c == '\n';
    }
  return FALSE;
}

/* The checks every path we send goes through (what MAIL_ERROR would refuse
 * from a client, seen from the sending side). */
static gboolean
check_address (const char *address, gboolean is_sender, gboolean smtputf8, const SmtpEhlo *ehlo,
               GError **error)
{
  const char *what = is_sender ? "sender" : "recipient";
  gsize len = strlen (address);
  gboolean has_8bit = FALSE;

  if (len == 0 && !is_sender)
    {
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_ADDRESS, "empty recipient address");
      return FALSE;
    }
  if (len + 2 > MAIL_MAX_PATH)
    {
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_ADDRESS,
                   "%s address is %" G_GSIZE_FORMAT " octets, over %d", what, len,
                   MAIL_MAX_PATH - 2);
      return FALSE;
    }
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar)address[i];

      if (c < 0x20 || c == 0x7f)
        {
          g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_ADDRESS,
                       "%s address has control character 0x%02x at offset %" G_GSIZE_FORMAT, what,
                       c, i);
          return FALSE;
        }
      if (c >= 0x80)
        has_8bit = TRUE;
    }
  if (!has_8bit)
    return TRUE;
  if (!g_utf8_validate (address, (gssize)len, NULL))
    {
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_ADDRESS, "%s address is not valid UTF-8",
                   what);
      return FALSE;
    }
  if (!smtputf8)
    {
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_ADDRESS,
                   "%s address has 8-bit characters but the message does not ask for SMTPUTF8",
                   what);
      return FALSE;
    }
  if ((ehlo->ext & SMTP_EXT_SMTPUTF8) == 0)
    {
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_NEEDS_SMTPUTF8,
                   "%s address needs SMTPUTF8, which the server does not offer", what);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_line (GString *line, gsize max, const char *verb, GError **error)
{
  if (line->len <= max)
    return TRUE;
  g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_LINE_TOO_LONG,
               "%s command would be %" G_GSIZE_FORMAT " octets, over %" G_GSIZE_FORMAT, verb,
               line->len, max);
  return FALSE;
}

/* ---- MAIL ------------------------------------------------------------------------ */

char *
smtp_out_mail_command (const SmtpEhlo *ehlo, const SmtpOutMail *mail, GError **error)
{
  g_autoptr (GString) line = NULL;

  g_return_val_if_fail (ehlo != NULL, NULL);
  g_return_val_if_fail (mail != NULL && mail->sender != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_address (mail->sender, TRUE, mail->smtputf8, ehlo, error))
    return NULL;
  line = g_string_new ("MAIL FROM:<");
  g_string_append (line, mail->sender);
  g_string_append_c (line, '>');
  if ((ehlo->ext & SMTP_EXT_SIZE) != 0 && mail->size > 0)
    g_string_append_printf (line, " SIZE=%" G_GUINT64_FORMAT, mail->size);

  switch (mail->body)
    {
      case SMTP_BODY_DEFAULT:
      case SMTP_BODY_7BIT:
        break;
      case SMTP_BODY_8BITMIME:
        if ((ehlo->ext & SMTP_EXT_8BITMIME) == 0)
          {
            g_set_error_literal (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_NEEDS_8BITMIME,
                                 "8-bit message, the server does not offer 8BITMIME");
            return NULL;
          }
        g_string_append (line, " BODY=8BITMIME");
        break;
      case SMTP_BODY_BINARYMIME:
        if ((ehlo->ext & (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING))
            != (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING))
          {
            g_set_error_literal (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_NEEDS_BINARYMIME,
                                 "binary message, the server does not offer BINARYMIME and "
                                 "CHUNKING");
            return NULL;
          }
        g_string_append (line, " BODY=BINARYMIME");
        break;
      default:
        g_return_val_if_reached (NULL);
    }

  if (mail->smtputf8 && (ehlo->ext & SMTP_EXT_SMTPUTF8) != 0)
    g_string_append (line, " SMTPUTF8");

  if ((ehlo->ext & SMTP_EXT_DSN) != 0)
    {
      if (mail->ret == SMTP_RET_FULL)
        g_string_append (line, " RET=FULL");
      else if (mail->ret == SMTP_RET_HDRS)
        g_string_append (line, " RET=HDRS");
      if (mail->envid != NULL)
        {
          g_autofree char *x = mail_xtext_encode (mail->envid, -1);
          gsize xlen = strlen (x);

          if (xlen == 0 || xlen > SMTP_MAX_ENVID)
            {
              g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_PARAM,
                           "ENVID is %" G_GSIZE_FORMAT " octets as xtext, must be 1 to %d", xlen,
                           SMTP_MAX_ENVID);
              return NULL;
            }
          g_string_append (line, " ENVID=");
          g_string_append (line, x);
        }
    }
  g_string_append (line, "\r\n");
  if (!check_line (line, SMTP_MAX_MAIL_LINE, "MAIL", error))
    return NULL;
  return g_string_free (g_steal_pointer (&line), FALSE);
}

/* ---- RCPT ------------------------------------------------------------------------ */

static gboolean
append_notify (GString *line, guint notify, GError **error)
{
  static const struct
  {
    SmtpNotify bit;
    const char *name;
  } names[] = {
    { SMTP_NOTIFY_SUCCESS, "SUCCESS" },
    { SMTP_NOTIFY_FAILURE, "FAILURE" },
    { SMTP_NOTIFY_DELAY, "DELAY" },
  };
  const guint known
      = SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
  const char *sep = " NOTIFY=";

  if ((notify & ~known) != 0 || ((notify & SMTP_NOTIFY_NEVER) != 0 && notify != SMTP_NOTIFY_NEVER))
    {
      /* RFC 3461 §4.1: NEVER stands alone. */
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_PARAM,
                   "NOTIFY bits 0x%x: NEVER must stand alone", notify);
      return FALSE;
    }
  if (notify == SMTP_NOTIFY_NEVER)
    {
      g_string_append (line, " NOTIFY=NEVER");
      return TRUE;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    if ((notify & names[i].bit) != 0)
      {
        g_string_append (line, sep);
        g_string_append (line, names[i].name);
        sep = ",";
      }
  return TRUE;
}

/* ORCPT = addr-type ";" xtext (RFC 3461 §4.2); addr-type is an atom. */
static gboolean
append_orcpt (GString *line, const char *orcpt, GError **error)
{
  const char *semi = strchr (orcpt, ';');
  g_autofree char *x = NULL;
  gsize tlen;

  tlen = semi != NULL ? (gsize)(semi - orcpt) : 0;
  if (semi == NULL || tlen == 0 || tlen > MAIL_MAX_ESMTP_KEYWORD || semi[1] == '\0')
    {
      g_set_error_literal (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_PARAM,
                           "ORCPT is not \"type;address\"");
      return FALSE;
    }
  for (gsize i = 0; i < tlen; i++)
    if (!g_ascii_isalnum (orcpt[i]) && orcpt[i] != '-')
      {
        g_set_error_literal (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_PARAM,
                             "ORCPT address type is not an atom");
        return FALSE;
      }
  x = mail_xtext_encode (semi + 1, -1);
  if (tlen + 1 + strlen (x) > MAIL_MAX_ESMTP_VALUE)
    {
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_PARAM, "ORCPT is over %d octets as xtext",
                   MAIL_MAX_ESMTP_VALUE);
      return FALSE;
    }
  g_string_append (line, " ORCPT=");
  g_string_append_len (line, orcpt, (gssize)tlen + 1);
  g_string_append (line, x);
  return TRUE;
}

char *
smtp_out_rcpt_command (const SmtpEhlo *ehlo, const SmtpOutRcpt *rcpt, gboolean smtputf8,
                       GError **error)
{
  g_autoptr (GString) line = NULL;

  g_return_val_if_fail (ehlo != NULL, NULL);
  g_return_val_if_fail (rcpt != NULL && rcpt->address != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_address (rcpt->address, FALSE, smtputf8, ehlo, error))
    return NULL;
  line = g_string_new ("RCPT TO:<");
  g_string_append (line, rcpt->address);
  g_string_append_c (line, '>');
  if ((ehlo->ext & SMTP_EXT_DSN) != 0)
    {
      if (rcpt->notify != 0 && !append_notify (line, rcpt->notify, error))
        return NULL;
      if (rcpt->orcpt != NULL && !append_orcpt (line, rcpt->orcpt, error))
        return NULL;
    }
  g_string_append (line, "\r\n");
  if (!check_line (line, SMTP_MAX_RCPT_LINE, "RCPT", error))
    return NULL;
  return g_string_free (g_steal_pointer (&line), FALSE);
}

/* ---- AUTH ------------------------------------------------------------------------ */

void
smtp_out_wipe (char *s)
{
  if (s == NULL)
    return;
  /* volatile: the compiler may not drop stores to memory about to be freed */
  for (volatile char *p = s; *p != '\0'; p++)
    *p = '\0';
  g_free (s);
}

static gboolean
check_credential (const char *what, const char *s, GError **error)
{
  gsize len = strlen (s);

  if (len == 0 || len > SMTP_MAX_SASL_FIELD)
    {
      g_set_error (error, SMTP_OUT_ERROR, SMTP_OUT_ERROR_CREDENTIALS, "%s must be 1 to %d octets",
                   what, SMTP_MAX_SASL_FIELD);
      return FALSE;
    }
  return TRUE;
}

char *
smtp_out_auth_plain (const char *user, const char *password, GError **error)
{
  gsize ulen, plen, rlen;
  char *raw, *b64, *line;

  g_return_val_if_fail (user != NULL && password != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_credential ("user name", user, error)
      || !check_credential ("password", password, error))
    return NULL;
  ulen = strlen (user);
  plen = strlen (password);
  /* authzid (empty) NUL authcid NUL passwd (RFC 4616 §2) */
  rlen = 1 + ulen + 1 + plen;
  raw = g_malloc0 (rlen + 1);
  memcpy (raw + 1, user, ulen);
  memcpy (raw + 2 + ulen, password, plen);
  b64 = g_base64_encode ((const guchar *)raw, rlen);
  memset (raw, 0, rlen);
  g_free (raw);
  line = g_strconcat ("AUTH PLAIN ", b64, "\r\n", NULL);
  smtp_out_wipe (b64);
  return line;
}

char *
smtp_out_auth_login_step (const char *field, GError **error)
{
  char *b64, *line;

  g_return_val_if_fail (field != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_credential ("LOGIN field", field, error))
    return NULL;
  b64 = g_base64_encode ((const guchar *)field, strlen (field));
  line = g_strconcat (b64, "\r\n", NULL);
  smtp_out_wipe (b64);
  return line;
}

/* ---- BDAT ------------------------------------------------------------------------ */

char *
smtp_out_bdat_command (guint64 size, gboolean last)
{
  return g_strdup_printf ("BDAT %" G_GUINT64_FORMAT "%s\r\n", size, last ? " LAST" : "");
}

/* ---- dot-stuffing ---------------------------------------------------------------- */

enum
{
  STUFF_LINE_START, /* the next octet starts a line */
  STUFF_MID_LINE,
  STUFF_AFTER_CR, /* a CR was read and not written yet: CRLF or a bare CR */
};

static const guint8 crlf[] = { '\r', '\n' };

void
smtp_dot_stuffer_init (SmtpDotStuffer *s)
{
  g_return_if_fail (s != NULL);
  memset (s, 0, sizeof *s);
  s->state = STUFF_LINE_START;
}

static void
put (SmtpDotStuffer *s, GByteArray *out, const guint8 *p, gsize n)
{
  g_byte_array_append (out, p, (guint)n);
  s->out_len += n;
}

void
smtp_dot_stuffer_feed (SmtpDotStuffer *s, const guint8 *buf, gsize len, GByteArray *out)
{
  gsize i = 0;

  g_return_if_fail (s != NULL);
  g_return_if_fail (buf != NULL || len == 0);
  g_return_if_fail (out != NULL);

  s->in_len += len;
  while (i < len)
    {
      gsize run;

      if (s->state == STUFF_AFTER_CR)
        {
          /* CRLF, or a bare CR that ends a line all the same */
          put (s, out, crlf, 2);
          s->state = STUFF_LINE_START;
          if (buf[i] == '\n')
            {
              i++;
              continue;
            }
        }
      if (buf[i] == '\r')
        {
          s->state = STUFF_AFTER_CR;
          i++;
          continue;
        }
      if (buf[i] == '\n')
        {
          put (s, out, crlf, 2); /* a bare LF */
          s->state = STUFF_LINE_START;
          i++;
          continue;
        }
      if (s->state == STUFF_LINE_START && buf[i] == '.')
        put (s, out, (const guint8 *)".", 1);
      /* the rest of the line up to the next CR or LF in one append */
      for (run = i; run < len && buf[run] != '\r' && buf[run] != '\n'; run++)
        ;
      put (s, out, buf + i, run - i);
      s->state = STUFF_MID_LINE;
      i = run;
    }
}

void
smtp_dot_stuffer_finish (SmtpDotStuffer *s, GByteArray *out)
{
  static const guint8 end[] = { '.', '\r', '\n' };

  g_return_if_fail (s != NULL);
  g_return_if_fail (out != NULL);

  if (s->state != STUFF_LINE_START)
    put (s, out, crlf, 2);
  put (s, out, end, sizeof end);
  s->state = STUFF_LINE_START;
}
