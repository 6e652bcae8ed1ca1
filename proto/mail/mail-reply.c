/* SPDX-License-Identifier: MIT
 *
 * mail-reply.c — build, format and parse SMTP replies; the default replies.
 *
 * Contract (see mail-reply.h): every MailReply that exists is valid — code,
 * enhanced code and text checked at construction — so formatting never
 * fails and never emits a line a peer could misread.  The parser is the only
 * way in for peer bytes; it bounds memory by MAIL_MAX_REPLY_PARSE_LINE and
 * MAIL_MAX_REPLY_PARSE_LINES before copying anything.
 *
 * RFC 5321 §4.2 (reply syntax, multi-line replies), §4.5.3.1.5 (line size);
 * RFC 3463 (enhanced status codes); RFC 2034 (their place in the text).
 */
#include <string.h>

#include "mail-private.h"
#include "mail-reply.h"

struct _MailReply
{
  guint code;
  char *enhanced; /* NULL: none */
  char **lines;   /* at least one, without code or enhanced code */
  guint n_lines;
};

typedef struct
{
  guint code;
  const char *enhanced;
  const char *text;
} MailReplyDefaultEntry;

/* Wording follows Postfix where Postfix has an equivalent reply, so that
 * operators and log parsers see what they already know. */
static const MailReplyDefaultEntry mail_reply_defaults[] = {
  [MAIL_REPLY_OK] = { 250, "2.0.0", "Ok" },
  [MAIL_REPLY_REJECT] = { 550, "5.7.1", "Message rejected" },
  [MAIL_REPLY_REJECT_RCPT] = { 550, "5.7.1", "Recipient rejected" },
  [MAIL_REPLY_REJECT_SENDER] = { 550, "5.7.1", "Sender rejected" },
  [MAIL_REPLY_REJECT_HELO] = { 550, "5.7.1", "Helo command rejected" },
  [MAIL_REPLY_REJECT_CONNECT] = { 554, "5.7.1", "Access denied" },
  [MAIL_REPLY_TEMPFAIL] = { 451, "4.7.1", "Try again later" },
  [MAIL_REPLY_TEMPFAIL_RCPT] = { 450, "4.7.1", "Recipient temporarily rejected" },
  [MAIL_REPLY_TEMPFAIL_SENDER] = { 450, "4.7.1", "Sender temporarily rejected" },
  [MAIL_REPLY_SERVICE_UNAVAILABLE] = { 451, "4.7.1", "Service unavailable - try again later" },
  /* Postfix answers a milter discard with its normal "250 2.0.0 Ok": the
   * client must not learn that the message went nowhere. */
  [MAIL_REPLY_DISCARD] = { 250, "2.0.0", "Ok" },
  [MAIL_REPLY_QUARANTINE] = { 250, "2.0.0", "Ok" },
  [MAIL_REPLY_SHUTDOWN] = { 421, "4.3.2", "Service shutting down" },
  [MAIL_REPLY_TIMEOUT] = { 421, "4.4.2", "Error: timeout exceeded" },
  [MAIL_REPLY_TOO_MANY_RCPTS] = { 452, "4.5.3", "Error: too many recipients" },
  [MAIL_REPLY_MESSAGE_TOO_BIG] = { 552, "5.3.4", "Message size exceeds fixed limit" },
  [MAIL_REPLY_INSUFFICIENT_STORAGE] = { 452, "4.3.1", "Insufficient system storage" },
  [MAIL_REPLY_QUEUE_ERROR] = { 451, "4.3.0", "Error: queue file write error" },
  [MAIL_REPLY_SYNTAX_ERROR] = { 501, "5.5.4", "Syntax error in parameters or arguments" },
  [MAIL_REPLY_BAD_SENDER_SYNTAX] = { 501, "5.1.7", "Bad sender address syntax" },
  [MAIL_REPLY_BAD_RCPT_SYNTAX] = { 501, "5.1.3", "Bad recipient address syntax" },
  [MAIL_REPLY_UNKNOWN_COMMAND] = { 502, "5.5.2", "Error: command not recognized" },
};
G_STATIC_ASSERT (G_N_ELEMENTS (mail_reply_defaults) == MAIL_REPLY_N_DEFAULTS);

/* ---- codes ---------------------------------------------------------------- */

gboolean
mail_reply_check_code (guint code, GError **error)
{
  if (code < 200 || code > 599 || (code / 10) % 10 > 5)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_CODE, "invalid reply code %u", code);
      return FALSE;
    }
  return TRUE;
}

/* subject / detail: 1*3DIGIT, no leading zero (so each code has one spelling). */
static gboolean
parse_enhanced_number (const char *s, gsize len, gsize *pos)
{
  gsize start = *pos;

  while (*pos < len && g_ascii_isdigit (s[*pos]))
    (*pos)++;
  if (*pos == start || *pos - start > 3)
    return FALSE;
  if (s[start] == '0' && *pos - start > 1)
    return FALSE;
  return TRUE;
}

/* class "." subject "." detail spanning exactly [s, s+len); class 2, 4, 5. */
static gboolean
parse_enhanced (const char *s, gsize len, guint *out_class)
{
  gsize pos = 2;

  if (len < 5 || len > MAIL_MAX_ENHANCED_CODE)
    return FALSE;
  if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
    return FALSE;
  if (!parse_enhanced_number (s, len, &pos) || pos >= len || s[pos] != '.')
    return FALSE;
  pos++;
  if (!parse_enhanced_number (s, len, &pos) || pos != len)
    return FALSE;
  *out_class = (guint)(s[0] - '0');
  return TRUE;
}

gboolean
mail_enhanced_code_check (const char *enhanced, guint code, GError **error)
{
  guint klass = 0;

  g_return_val_if_fail (enhanced != NULL, FALSE);

  if (!parse_enhanced (enhanced, strlen (enhanced), &klass))
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_ENHANCED_CODE,
                   "malformed enhanced status code (want 2|4|5.subject.detail)");
      return FALSE;
    }
  if (code != 0 && klass != code / 100)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_ENHANCED_CLASS,
                   "enhanced status code %s does not match reply code %u", enhanced, code);
      return FALSE;
    }
  return TRUE;
}

/* ---- construction --------------------------------------------------------- */

static gsize
content_len (const char *enhanced, const char *line)
{
  gsize elen = enhanced != NULL ? strlen (enhanced) : 0;
  gsize tlen = strlen (line);

  if (elen > 0 && tlen > 0)
    return elen + 1 + tlen;
  return elen + tlen;
}

static MailReply *
reply_alloc (guint code, const char *enhanced, guint n_lines)
{
  MailReply *r = g_atomic_rc_box_new0 (MailReply);

  r->code = code;
  r->enhanced = g_strdup (enhanced);
  r->lines = g_new0 (char *, n_lines + 1);
  r->n_lines = n_lines;
  return r;
}

static void
reply_clear (MailReply *r)
{
  g_free (r->enhanced);
  g_strfreev (r->lines);
}

MailReply *
mail_reply_new_lines (guint code, const char *enhanced, const char *const *lines, GError **error)
{
  static const char *const empty[] = { "", NULL };
  MailReply *r;
  guint n = 0;

  if (enhanced != NULL && enhanced[0] == '\0')
    enhanced = NULL;
  if (lines == NULL || lines[0] == NULL)
    lines = empty;

  if (!mail_reply_check_code (code, error))
    return NULL;
  if (enhanced != NULL && !mail_enhanced_code_check (enhanced, code, error))
    return NULL;

  while (lines[n] != NULL)
    {
      if (++n > MAIL_MAX_REPLY_LINES)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_TOO_MANY_LINES,
                       "reply has more than %d lines", MAIL_MAX_REPLY_LINES);
          return NULL;
        }
    }
  for (guint i = 0; i < n; i++)
    {
      /* code + separator + content + CRLF */
      if (3 + 1 + content_len (enhanced, lines[i]) + 2 > MAIL_MAX_REPLY_LINE)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_LINE_TOO_LONG,
                       "reply line %u longer than %d octets", i + 1, MAIL_MAX_REPLY_LINE);
          return NULL;
        }
      /* RFC 5321 textstring = 1*(%d09 / %d32-126); an LF here would start
       * an unannounced line. */
      if (!mail_check_text (lines[i], strlen (lines[i]), TRUE, FALSE, "reply text", error))
        return NULL;
    }

  r = reply_alloc (code, enhanced, n);
  for (guint i = 0; i < n; i++)
    r->lines[i] = g_strdup (lines[i]);
  return r;
}

MailReply *
mail_reply_new (guint code, const char *enhanced, const char *text, GError **error)
{
  g_auto (GStrv) lines = NULL;
  g_autofree char *copy = NULL;
  gsize len;
  guint n = 1;

  if (text == NULL)
    text = "";
  len = strlen (text);
  /* One trailing LF ends the text; it does not open an empty last line. */
  if (len > 0 && text[len - 1] == '\n')
    len--;
  for (gsize i = 0; i < len; i++)
    if (text[i] == '\n')
      n++;
  /* Count before splitting so a hostile text costs no allocation. */
  if (n > MAIL_MAX_REPLY_LINES)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_TOO_MANY_LINES,
                   "reply has more than %d lines", MAIL_MAX_REPLY_LINES);
      return NULL;
    }
  copy = g_strndup (text, len);
  lines = g_strsplit (copy, "\n", -1);
  return mail_reply_new_lines (code, enhanced, (const char *const *)lines, error);
}

void
mail_reply_default_get (MailReplyDefault which, guint *out_code, const char **out_enhanced,
                        const char **out_text)
{
  g_return_if_fail ((guint)which < MAIL_REPLY_N_DEFAULTS);

  if (out_code != NULL)
    *out_code = mail_reply_defaults[which].code;
  if (out_enhanced != NULL)
    *out_enhanced = mail_reply_defaults[which].enhanced;
  if (out_text != NULL)
    *out_text = mail_reply_defaults[which].text;
}

MailReply *
mail_reply_new_default (MailReplyDefault which)
{
  const MailReplyDefaultEntry *d;
  MailReply *r;

  g_return_val_if_fail ((guint)which < MAIL_REPLY_N_DEFAULTS, NULL);

  d = &mail_reply_defaults[which];
  r = reply_alloc (d->code, d->enhanced, 1);
  r->lines[0] = g_strdup (d->text);
  return r;
}

MailReply *
mail_reply_complete (MailReplyDefault fallback, guint code, const char *enhanced, const char *text,
                     GError **error)
{
  /* Policy defaults per class: what Postfix uses for an access-map reply
   * that has a code but no enhanced code. */
  static const char *const class_enhanced[6] = { NULL, NULL, "2.0.0", NULL, "4.7.1", "5.7.1" };
  static const char *const class_text[6] = {
    "", "", "Ok", "", "Try again later", "Message rejected",
  };
  const MailReplyDefaultEntry *d;
  gboolean same_class;
  guint klass;

  g_return_val_if_fail ((guint)fallback < MAIL_REPLY_N_DEFAULTS, NULL);

  d = &mail_reply_defaults[fallback];
  if (code == 0)
    code = d->code;
  if (!mail_reply_check_code (code, error))
    return NULL;
  klass = code / 100;
  same_class = klass == d->code / 100;
  if (enhanced == NULL || enhanced[0] == '\0')
    enhanced = same_class ? d->enhanced : class_enhanced[klass];
  if (text == NULL || text[0] == '\0')
    text = same_class ? d->text : class_text[klass];
  return mail_reply_new (code, enhanced, text, error);
}

MailReply *
mail_reply_ref (MailReply *reply)
{
  g_return_val_if_fail (reply != NULL, NULL);
  return g_atomic_rc_box_acquire (reply);
}

void
mail_reply_unref (MailReply *reply)
{
  if (reply != NULL)
    g_atomic_rc_box_release_full (reply, (GDestroyNotify)reply_clear);
}

guint
mail_reply_get_code (const MailReply *reply)
{
  g_return_val_if_fail (reply != NULL, 0);
  return reply->code;
}

const char *
mail_reply_get_enhanced (const MailReply *reply)
{
  g_return_val_if_fail (reply != NULL, NULL);
  return reply->enhanced;
}

guint
mail_reply_get_n_lines (const MailReply *reply)
{
  g_return_val_if_fail (reply != NULL, 0);
  return reply->n_lines;
}

const char *
mail_reply_get_line (const MailReply *reply, guint i)
{
  g_return_val_if_fail (reply != NULL && i < reply->n_lines, NULL);
  return reply->lines[i];
}

const char *const *
mail_reply_get_lines (const MailReply *reply)
{
  g_return_val_if_fail (reply != NULL, NULL);
  return (const char *const *)reply->lines;
}

char *
mail_reply_get_text (const MailReply *reply)
{
  g_return_val_if_fail (reply != NULL, NULL);
  return g_strjoinv ("\n", reply->lines);
}

/* ---- formatting ----------------------------------------------------------- */

static void
append_escaped (GString *out, const char *text, gboolean double_percent)
{
  for (const char *p = text; *p != '\0'; p++)
    {
      if (*p == '%' && double_percent)
        g_string_append_c (out, '%');
      g_string_append_c (out, *p);
    }
}

static char *
format_reply (const MailReply *reply, gboolean milter)
{
  g_autoptr (GString) out = g_string_new (NULL);

  for (guint i = 0; i < reply->n_lines; i++)
    {
      gboolean last = i + 1 == reply->n_lines;
      const char *line = reply->lines[i];

      g_string_append_printf (out, "%03u", reply->code);
      if (!last || reply->enhanced != NULL || line[0] != '\0')
        g_string_append_c (out, last ? ' ' : '-');
      if (reply->enhanced != NULL)
        {
          g_string_append (out, reply->enhanced);
          if (line[0] != '\0')
            g_string_append_c (out, ' ');
        }
      append_escaped (out, line, milter);
      if (!last || !milter)
        g_string_append (out, "\r\n");
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

char *
mail_reply_format (const MailReply *reply)
{
  g_return_val_if_fail (reply != NULL, NULL);
  return format_reply (reply, FALSE);
}

char *
mail_reply_format_milter (const MailReply *reply)
{
  g_return_val_if_fail (reply != NULL, NULL);
  return format_reply (reply, TRUE);
}

char *
mail_reply_escape_percent (const char *text)
{
  g_autoptr (GString) out = NULL;

  g_return_val_if_fail (text != NULL, NULL);

  out = g_string_sized_new (strlen (text));
  append_escaped (out, text, TRUE);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* ---- parsing -------------------------------------------------------------- */

/* The enhanced code at the start of text, if any: its length, else 0. */
static gsize
leading_enhanced (const char *text, guint code_class)
{
  const char *sp = strchr (text, ' ');
  gsize len = sp != NULL ? (gsize)(sp - text) : strlen (text);
  guint klass = 0;

  if (!parse_enhanced (text, len, &klass) || klass != code_class)
    return 0;
  return len;
}

MailReply *
mail_reply_parse (const char *data, gsize len, gsize *out_consumed, GError **error)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *enhanced = NULL;
  MailReply *r;
  gsize pos = 0;
  guint code = 0;
  gsize elen;

  g_return_val_if_fail (data != NULL || len == 0, NULL);

  if (len == 0)
    {
      g_set_error (error, MAIL_ERROR, MAIL_ERROR_INCOMPLETE, "reply incomplete");
      return NULL;
    }
  for (;;)
    {
      gsize avail = len - pos;
      const char *line = data + pos;
      /* line is never NULL (len == 0 returned early); avail may be 0 after
       * a continuation line, and memchr then finds nothing. */
      const char *nl = memchr (line, '\n', MIN (avail, (gsize)MAIL_MAX_REPLY_PARSE_LINE));
      gsize line_len;
      guint c;
      gboolean last;

      if (nl == NULL)
        {
          if (avail >= MAIL_MAX_REPLY_PARSE_LINE)
            g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_LINE_TOO_LONG,
                         "reply line longer than %d octets", MAIL_MAX_REPLY_PARSE_LINE);
          else
            g_set_error (error, MAIL_ERROR, MAIL_ERROR_INCOMPLETE, "reply incomplete");
          return NULL;
        }
      if (lines->len >= MAIL_MAX_REPLY_PARSE_LINES)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_TOO_MANY_LINES,
                       "reply has more than %d lines", MAIL_MAX_REPLY_PARSE_LINES);
          return NULL;
        }
      pos = (gsize)(nl - data) + 1;
      line_len = (gsize)(nl - line);
      /* CRLF is the rule; a bare LF is tolerated as Postfix's client does. */
      if (line_len > 0 && line[line_len - 1] == '\r')
        line_len--;

      if (line_len < 3 || !g_ascii_isdigit (line[0]) || !g_ascii_isdigit (line[1])
          || !g_ascii_isdigit (line[2]))
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_SYNTAX,
                       "reply line %u does not start with a code", lines->len + 1);
          return NULL;
        }
      c = (guint)((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
      if (!mail_reply_check_code (c, error))
        return NULL;
      if (code != 0 && c != code)
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_SYNTAX,
                       "reply line %u has code %u, not %u", lines->len + 1, c, code);
          return NULL;
        }
      code = c;
      if (line_len == 3 || line[3] == ' ')
        last = TRUE;
      else if (line[3] == '-')
        last = FALSE;
      else
        {
          g_set_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_SYNTAX,
                       "reply line %u: code not followed by ' ' or '-'", lines->len + 1);
          return NULL;
        }
      line += MIN (line_len, (gsize)4);
      line_len -= MIN (line_len, (gsize)4);
      /* A CR left inside, a NUL or another control is refused; UTF-8 is
       * accepted from peers (RFC 6531 servers send it). */
      if (!mail_check_text (line, line_len, TRUE, TRUE, "reply text", error))
        return NULL;
      g_ptr_array_add (lines, g_strndup (line, line_len));
      if (last)
        break;
    }

  /* RFC 2034: the enhanced code starts the text of each line; take it from
   * the first line when its class matches the code (3xx has none). */
  elen = leading_enhanced (g_ptr_array_index (lines, 0), code / 100);
  if (elen > 0)
    enhanced = g_strndup (g_ptr_array_index (lines, 0), elen);

  r = reply_alloc (code, enhanced, lines->len);
  for (guint i = 0; i < lines->len; i++)
    {
      const char *text = g_ptr_array_index (lines, i);

      if (enhanced != NULL && strncmp (text, enhanced, elen) == 0
          && (text[elen] == ' ' || text[elen] == '\0'))
        text += elen + (text[elen] == ' ' ? 1 : 0);
      r->lines[i] = g_strdup (text);
    }
  if (out_consumed != NULL)
    *out_consumed = pos;
  return r;
}
