/* SPDX-License-Identifier: MIT
 *
 * policy-reply.c — policy replies ("action=VALUE\n\n") of the Postfix policy
 * delegation protocol: the actions of access(5), encoded by the server and
 * parsed by the connector.
 *
 * Contract:
 *   - policy_action_format() writes only what Postfix's smtpd_check reads
 *     back as the same action: texts that are valid SMTP reply text (they
 *     end up in a reply to the client), enhanced codes of the class Postfix
 *     will send, PREPEND headers that cannot inject a second header, no byte
 *     that would end the line;
 *   - policy_reply_parse() reads what real policy servers write (upper or
 *     lower case words, CRLF, extra attributes it ignores) but refuses what
 *     has no meaning: no action, two actions, an empty or unknown-shaped
 *     action, controls in the value.  It reads the action the way
 *     smtpd_check.c does: the word is up to the first SP/HT, the text
 *     follows the whitespace, a leading "X.Y.Z" of a reject/defer text is
 *     its enhanced code (Postfix's dsn_split).
 */
#include <string.h>

#include "policy-private.h"
#include "proto/mail/mail-header.h"

/* Postfix's defaults: access_map_reject_code, access_map_defer_code (also
 * used by DEFER_IF_REJECT / DEFER_IF_PERMIT via defer_code = 450). */
#define POLICY_REJECT_CODE 554
#define POLICY_DEFER_CODE 450

static const struct
{
  PolicyActionKind kind;
  const char *word;
} policy_words[] = {
  { POLICY_ACTION_OK, "OK" },
  { POLICY_ACTION_DUNNO, "DUNNO" },
  { POLICY_ACTION_REJECT, "REJECT" },
  { POLICY_ACTION_DEFER, "DEFER" },
  { POLICY_ACTION_DEFER_IF_REJECT, "DEFER_IF_REJECT" },
  { POLICY_ACTION_DEFER_IF_PERMIT, "DEFER_IF_PERMIT" },
  { POLICY_ACTION_REPLY, NULL },
  { POLICY_ACTION_HOLD, "HOLD" },
  { POLICY_ACTION_DISCARD, "DISCARD" },
  { POLICY_ACTION_PREPEND, "PREPEND" },
  { POLICY_ACTION_REDIRECT, "REDIRECT" },
  { POLICY_ACTION_BCC, "BCC" },
  { POLICY_ACTION_FILTER, "FILTER" },
  { POLICY_ACTION_WARN, "WARN" },
  { POLICY_ACTION_INFO, "INFO" },
  { POLICY_ACTION_RESTRICTION, NULL },
};
G_STATIC_ASSERT (G_N_ELEMENTS (policy_words) == POLICY_ACTION_N_KINDS);

const char *
policy_action_kind_to_string (PolicyActionKind kind)
{
  if ((guint)kind >= POLICY_ACTION_N_KINDS)
    return "INVALID";
  if (kind == POLICY_ACTION_REPLY)
    return "REPLY";
  if (kind == POLICY_ACTION_RESTRICTION)
    return "RESTRICTION";
  return policy_words[kind].word;
}

static gboolean
policy_kind_has_reply (PolicyActionKind kind)
{
  switch (kind)
    {
      case POLICY_ACTION_REJECT:
      case POLICY_ACTION_DEFER:
      case POLICY_ACTION_DEFER_IF_REJECT:
      case POLICY_ACTION_DEFER_IF_PERMIT:
      case POLICY_ACTION_REPLY:
        return TRUE;
      default:
        return FALSE;
    }
}

static gboolean
policy_kind_has_text (PolicyActionKind kind)
{
  switch (kind)
    {
      case POLICY_ACTION_HOLD:
      case POLICY_ACTION_DISCARD:
      case POLICY_ACTION_WARN:
      case POLICY_ACTION_INFO:
        return TRUE;
      default:
        return policy_kind_has_reply (kind);
    }
}

/* The code Postfix sends for a kind without its own code. */
static guint
policy_kind_code (const PolicyAction *action)
{
  if (action->kind == POLICY_ACTION_REPLY)
    return action->code;
  return action->kind == POLICY_ACTION_REJECT ? POLICY_REJECT_CODE : POLICY_DEFER_CODE;
}

/* ---- construction ------------------------------------------------------- */

static char *
policy_dup_nonempty (const char *s)
{
  return s != NULL && *s != '\0' ? g_strdup (s) : NULL;
}

PolicyAction *
policy_action_new (PolicyActionKind kind)
{
  PolicyAction *a;

  g_return_val_if_fail ((guint)kind < POLICY_ACTION_N_KINDS, NULL);
  a = g_new0 (PolicyAction, 1);
  a->kind = kind;
  return a;
}

PolicyAction *
policy_action_new_text (PolicyActionKind kind, const char *enhanced, const char *text)
{
  PolicyAction *a = policy_action_new (kind);

  if (a == NULL)
    return NULL;
  a->enhanced = policy_dup_nonempty (enhanced);
  a->text = policy_dup_nonempty (text);
  return a;
}

PolicyAction *
policy_action_new_reply (MailReply *reply, GError **error)
{
  g_autoptr (PolicyAction) a = NULL;
  guint code;

  g_return_val_if_fail (reply != NULL, NULL);

  code = mail_reply_get_code (reply);
  if (code < 400 || code > 599)
    {
      g_set_error (error, POLICY_ERROR, POLICY_ERROR_ACTION,
                   "a policy reply code must be 4xx or 5xx, not %u", code);
      return NULL;
    }
  a = policy_action_new (POLICY_ACTION_REPLY);
  a->code = code;
  a->enhanced = policy_dup_nonempty (mail_reply_get_enhanced (reply));
  /* One action line has room for one text line: the lines of a
   * multi-line reply become one, separated by a space. */
  a->text = g_strjoinv (" ", (char **)mail_reply_get_lines (reply));
  g_strstrip (a->text);
  if (*a->text == '\0')
    g_clear_pointer (&a->text, g_free);
  return g_steal_pointer (&a);
}

PolicyAction *
policy_action_new_prepend (const char *name, const char *value)
{
  PolicyAction *a = policy_action_new (POLICY_ACTION_PREPEND);

  a->header_name = g_strdup (name);
  a->header_value = g_strdup (value != NULL ? value : "");
  return a;
}

PolicyAction *
policy_action_new_argument (PolicyActionKind kind, const char *argument)
{
  PolicyAction *a = policy_action_new (kind);

  if (a == NULL)
    return NULL;
  a->argument = g_strdup (argument);
  return a;
}

void
policy_action_free (PolicyAction *action)
{
  if (action == NULL)
    return;
  g_free (action->enhanced);
  g_free (action->text);
  g_free (action->header_name);
  g_free (action->header_value);
  g_free (action->argument);
  g_free (action);
}

/* ---- formatting --------------------------------------------------------- */

static gboolean policy_action_error (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
policy_action_error (GError **error, const char *fmt, ...)
{
  va_list ap;

  if (error == NULL)
    return FALSE;
  va_start (ap, fmt);
  {
    g_autofree char *msg = g_strdup_vprintf (fmt, ap);

    g_set_error_literal (error, POLICY_ERROR, POLICY_ERROR_ACTION, msg);
  }
  va_end (ap);
  return FALSE;
}

/* No CR, LF (mail_reply_new would split lines on LF: one action has one). */
static gboolean
policy_check_one_line (const char *s, const char *what, GError **error)
{
  if (strpbrk (s, "\r\n") != NULL)
    return policy_action_error (error, "%s: line break not allowed", what);
  return TRUE;
}

/* An argument: REDIRECT/BCC address, FILTER transport:destination. */
static gboolean
policy_check_argument (const char *arg, const char *what, GError **error)
{
  if (arg == NULL || *arg == '\0')
    return policy_action_error (error, "%s needs an argument", what);
  for (const char *p = arg; *p != '\0'; p++)
    {
      guchar c = (guchar)*p;

      if (c <= ' ' || c == 0x7f)
        return policy_action_error (error, "%s: space or control byte 0x%02x in the argument", what,
                                    c);
    }
  return TRUE;
}

static gboolean
policy_is_word_char (guchar c)
{
  return g_ascii_isalnum (c) || c == '_' || c == '-';
}

static gboolean
policy_check_restriction (const char *arg, GError **error)
{
  if (arg == NULL || !policy_is_word_char ((guchar)*arg))
    return policy_action_error (error, "a restriction must start with a name");
  for (const char *p = arg; *p != '\0'; p++)
    {
      guchar c = (guchar)*p;

      if ((c < 0x20 && c != '\t') || c >= 0x7f)
        return policy_action_error (error, "restriction: byte 0x%02x not allowed", c);
    }
  return TRUE;
}

char *
policy_action_format (const PolicyAction *a, GError **error)
{
  g_autoptr (GString) s = g_string_sized_new (64);
  const char *word;

  g_return_val_if_fail (a != NULL, NULL);

  if ((guint)a->kind >= POLICY_ACTION_N_KINDS)
    {
      policy_action_error (error, "invalid action kind %d", (int)a->kind);
      return NULL;
    }
  word = policy_words[a->kind].word;

  if (policy_kind_has_text (a->kind))
    {
      const char *enh = a->enhanced != NULL && *a->enhanced != '\0' ? a->enhanced : NULL;
      const char *text = a->text != NULL && *a->text != '\0' ? a->text : NULL;
      g_autoptr (MailReply) check = NULL;
      guint code;

      if (text != NULL
          && !policy_check_one_line (text, policy_action_kind_to_string (a->kind), error))
        return NULL;
      if (policy_kind_has_reply (a->kind))
        {
          code = policy_kind_code (a);
          if (code < 400 || code > 599)
            {
              policy_action_error (error, "a policy reply code must be 4xx or 5xx, not %u", code);
              return NULL;
            }
        }
      else
        {
          if (enh != NULL)
            {
              policy_action_error (error, "%s takes no enhanced status code", word);
              return NULL;
            }
          /* Only the text is checked: the code is never sent. */
          code = 250;
        }
      /* The one place that knows SMTP reply text, code and enhanced code
       * rules: mail_reply_new (its MAIL_ERROR is the caller's answer). */
      check = mail_reply_new (code, enh, text, error);
      if (check == NULL)
        return NULL;
      if (a->kind == POLICY_ACTION_REPLY)
        g_string_append_printf (s, "%u", code);
      else
        g_string_append (s, word);
      if (enh != NULL)
        g_string_append_printf (s, " %s", enh);
      if (text != NULL)
        g_string_append_printf (s, " %s", text);
    }
  else
    switch (a->kind)
      {
        case POLICY_ACTION_OK:
        case POLICY_ACTION_DUNNO:
          g_string_append (s, word);
          break;
        case POLICY_ACTION_PREPEND:
          if (a->header_name == NULL || a->header_value == NULL)
            {
              policy_action_error (error, "PREPEND needs a header name and value");
              return NULL;
            }
          if (!mail_header_name_check (a->header_name, -1, error)
              || !mail_header_value_check (a->header_value, -1, error))
            return NULL;
          g_string_append_printf (s, "%s %s: %s", word, a->header_name, a->header_value);
          break;
        case POLICY_ACTION_REDIRECT:
        case POLICY_ACTION_BCC:
          if (!policy_check_argument (a->argument, word, error))
            return NULL;
          g_string_append_printf (s, "%s %s", word, a->argument);
          break;
        case POLICY_ACTION_FILTER:
          if (!policy_check_argument (a->argument, word, error))
            return NULL;
          if (strchr (a->argument, ':') == NULL || *a->argument == ':')
            {
              policy_action_error (error, "FILTER needs transport:destination");
              return NULL;
            }
          g_string_append_printf (s, "%s %s", word, a->argument);
          break;
        case POLICY_ACTION_RESTRICTION:
          if (!policy_check_restriction (a->argument, error))
            return NULL;
          g_string_append (s, a->argument);
          break;
        default:
          g_assert_not_reached ();
      }

  if (strlen ("action=") + s->len + 1 > POLICY_MAX_LINE)
    {
      g_set_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG,
                   "action line longer than %d bytes", POLICY_MAX_LINE);
      return NULL;
    }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

gboolean
policy_reply_encode (GString *out, const PolicyAction *action, GError **error)
{
  g_autofree char *value = NULL;

  g_return_val_if_fail (out != NULL && action != NULL, FALSE);

  value = policy_action_format (action, error);
  if (value == NULL)
    return FALSE;
  g_string_append (out, "action=");
  g_string_append (out, value);
  g_string_append (out, "\n\n");
  return TRUE;
}

void
policy_reply_encode_simple (GString *out, PolicyActionKind kind)
{
  g_return_if_fail (out != NULL);
  g_return_if_fail (kind == POLICY_ACTION_OK || kind == POLICY_ACTION_DUNNO);

  g_string_append (out, kind == POLICY_ACTION_OK ? "action=OK\n\n" : "action=DUNNO\n\n");
}

/* ---- parsing ------------------------------------------------------------ */

static inline gboolean
policy_is_wsp (char c)
{
  return c == ' ' || c == '\t';
}

/* Postfix's dsn_valid: class 2/4/5, then 1..3 digits, '.', 1..3 digits,
 * followed by whitespace or the end.  Returns the code's length or 0. */
static gsize
policy_enhanced_len (const char *s)
{
  gsize i = 0;

  if (s[0] != '2' && s[0] != '4' && s[0] != '5')
    return 0;
  if (s[1] != '.')
    return 0;
  i = 2;
  for (int part = 0; part < 2; part++)
    {
      gsize start = i;

      while (g_ascii_isdigit (s[i]) && i - start < 3)
        i++;
      if (i == start || g_ascii_isdigit (s[i]))
        return 0;
      if (part == 0)
        {
          if (s[i] != '.')
            return 0;
          i++;
        }
    }
  if (s[i] != '\0' && !policy_is_wsp (s[i]))
    return 0;
  return i;
}

/* Split "X.Y.Z text" into the action's enhanced code and text. */
static void
policy_action_set_reply_text (PolicyAction *a, const char *rest)
{
  gsize elen = policy_enhanced_len (rest);

  if (elen > 0)
    {
      a->enhanced = g_strndup (rest, elen);
      rest += elen;
      while (policy_is_wsp (*rest))
        rest++;
    }
  a->text = policy_dup_nonempty (rest);
}

static PolicyActionKind
policy_word_lookup (const char *word, gsize len)
{
  for (guint i = 0; i < G_N_ELEMENTS (policy_words); i++)
    {
      const char *w = policy_words[i].word;

      if (w != NULL && strlen (w) == len && g_ascii_strncasecmp (w, word, len) == 0)
        return policy_words[i].kind;
    }
  return POLICY_ACTION_RESTRICTION;
}

/* The action value (NUL-terminated, no NUL/LF inside) to a PolicyAction. */
static PolicyAction *
policy_action_parse_value (const char *value, GError **error)
{
  g_autoptr (PolicyAction) a = NULL;
  gsize wlen = 0;
  const char *rest;
  PolicyActionKind kind;
  gboolean numeric = TRUE;

  /* The value reaches SMTP replies, logs and headers: no controls, which
   * also rules out a CR in the middle. */
  for (const char *p = value; *p != '\0'; p++)
    if (((guchar)*p < 0x20 && *p != '\t') || *p == 0x7f)
      {
        policy_action_error (error, "control byte 0x%02x in the action", (guchar)*p);
        return NULL;
      }
  while (value[wlen] != '\0' && !policy_is_wsp (value[wlen]))
    {
      numeric = numeric && g_ascii_isdigit (value[wlen]);
      wlen++;
    }
  if (wlen == 0)
    {
      policy_action_error (error, "empty action");
      return NULL;
    }
  rest = value + wlen;
  while (policy_is_wsp (*rest))
    rest++;

  if (numeric)
    {
      /* "4NN text" / "5NN text" as smtpd_check reads them; an all-numeric
       * value is OK (access(5), pop-before-smtp style tables). */
      if (wlen == 3 && (value[0] == '4' || value[0] == '5'))
        {
          guint code = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');

          if (!mail_reply_check_code (code, NULL))
            {
              policy_action_error (error, "invalid reply code in the action");
              return NULL;
            }
          a = policy_action_new (POLICY_ACTION_REPLY);
          a->code = code;
          policy_action_set_reply_text (a, rest);
          return g_steal_pointer (&a);
        }
      if (*rest != '\0')
        {
          policy_action_error (error, "a numeric action must be a 4xx or 5xx reply code");
          return NULL;
        }
      return policy_action_new (POLICY_ACTION_OK);
    }

  kind = policy_word_lookup (value, wlen);
  a = policy_action_new (kind);
  switch (kind)
    {
      case POLICY_ACTION_REJECT:
      case POLICY_ACTION_DEFER:
      case POLICY_ACTION_DEFER_IF_REJECT:
      case POLICY_ACTION_DEFER_IF_PERMIT:
        policy_action_set_reply_text (a, rest);
        break;
      case POLICY_ACTION_OK:
      case POLICY_ACTION_DUNNO:
      case POLICY_ACTION_HOLD:
      case POLICY_ACTION_DISCARD:
      case POLICY_ACTION_WARN:
      case POLICY_ACTION_INFO:
        a->text = policy_dup_nonempty (rest);
        break;
      case POLICY_ACTION_PREPEND:
        {
          const char *colon = strchr (rest, ':');
          const char *v;

          if (colon == NULL || !mail_header_name_check (rest, colon - rest, NULL))
            {
              policy_action_error (error, "PREPEND needs \"name: value\"");
              return NULL;
            }
          v = colon + 1;
          while (policy_is_wsp (*v))
            v++;
          if (!mail_header_value_check (v, -1, NULL))
            {
              policy_action_error (error, "PREPEND: invalid header value");
              return NULL;
            }
          a->header_name = g_strndup (rest, colon - rest);
          a->header_value = g_strdup (v);
        }
        break;
      case POLICY_ACTION_REDIRECT:
      case POLICY_ACTION_BCC:
      case POLICY_ACTION_FILTER:
        if (!policy_check_argument (rest, policy_words[kind].word, error))
          return NULL;
        if (kind == POLICY_ACTION_FILTER && (strchr (rest, ':') == NULL || *rest == ':'))
          {
            policy_action_error (error, "FILTER needs transport:destination");
            return NULL;
          }
        a->argument = g_strdup (rest);
        break;
      case POLICY_ACTION_RESTRICTION:
        if (!policy_check_restriction (value, error))
          return NULL;
        a->argument = g_strdup (value);
        break;
      default:
        g_assert_not_reached ();
    }
  return g_steal_pointer (&a);
}

PolicyAction *
policy_reply_parse (const char *data, gsize len, gsize *consumed, GError **error)
{
  /* Names seen, for the duplicate check (at most POLICY_MAX_REPLY_ATTRS). */
  struct
  {
    const char *p;
    gsize len;
  } seen[POLICY_MAX_REPLY_ATTRS];
  guint n_seen = 0;
  const char *action = NULL;
  gsize action_len = 0;
  gsize pos = 0;

  g_return_val_if_fail (data != NULL || len == 0, NULL);

  if (consumed != NULL)
    *consumed = 0;
  for (;;)
    {
      const char *line = data + pos;
      gsize avail = len - pos;
      const char *lf = memchr (line, '\n', avail);
      gsize line_len = lf != NULL ? (gsize)(lf - line) : avail;
      gsize line_bytes = line_len + 1; /* with its LF, present or still to come */
      const char *name;
      const char *value;
      gsize name_len;
      gsize value_len;

      if (line_bytes > POLICY_MAX_LINE)
        {
          g_set_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG,
                       "reply line longer than %d bytes", POLICY_MAX_LINE);
          return NULL;
        }
      if (pos + line_bytes > POLICY_MAX_REPLY)
        {
          g_set_error (error, POLICY_ERROR, POLICY_ERROR_REQUEST_TOO_BIG,
                       "reply bigger than %d bytes", POLICY_MAX_REPLY);
          return NULL;
        }
      if (lf == NULL)
        {
          g_set_error_literal (error, POLICY_ERROR, POLICY_ERROR_INCOMPLETE,
                               "reply not terminated by an empty line yet");
          return NULL;
        }
      pos += line_bytes;
      if (line_len > 0 && line[line_len - 1] == '\r')
        line_len--;
      if (line_len == 0)
        break;
      if (!policy_split_line (line, line_len, &name, &name_len, &value, &value_len, error))
        return NULL;
      if (n_seen == POLICY_MAX_REPLY_ATTRS)
        {
          g_set_error (error, POLICY_ERROR, POLICY_ERROR_TOO_MANY_ATTRS,
                       "more than %d attributes in one reply", POLICY_MAX_REPLY_ATTRS);
          return NULL;
        }
      for (guint i = 0; i < n_seen; i++)
        if (seen[i].len == name_len && memcmp (seen[i].p, name, name_len) == 0)
          {
            g_set_error (error, POLICY_ERROR, POLICY_ERROR_DUPLICATE,
                         "duplicate attribute %.*s in a reply", (int)name_len, name);
            return NULL;
          }
      seen[n_seen].p = name;
      seen[n_seen].len = name_len;
      n_seen++;
      if (name_len == strlen (POLICY_ATTR_ACTION)
          && memcmp (name, POLICY_ATTR_ACTION, name_len) == 0)
        {
          action = value;
          action_len = value_len;
        }
    }

  if (action == NULL)
    {
      g_set_error_literal (error, POLICY_ERROR, POLICY_ERROR_NO_ACTION,
                           "reply without an action attribute");
      return NULL;
    }
  {
    g_autofree char *value = g_strndup (action, action_len);
    PolicyAction *a = policy_action_parse_value (value, error);

    if (a != NULL && consumed != NULL)
      *consumed = pos;
    return a;
  }
}

MailReply *
policy_action_to_reply (const PolicyAction *action, MailReplyDefault fallback, GError **error)
{
  g_autofree char *enhanced = NULL;
  guint code;

  g_return_val_if_fail (action != NULL, NULL);

  if (!policy_kind_has_reply (action->kind))
    {
      g_set_error (error, POLICY_ERROR, POLICY_ERROR_ACTION, "action %s is no SMTP reply",
                   policy_action_kind_to_string (action->kind));
      return NULL;
    }
  code = policy_kind_code (action);
  if (action->enhanced != NULL && *action->enhanced != '\0')
    {
      /* smtpd_dsn_fix: the reply class wins over the enhanced code's. */
      enhanced = g_strdup (action->enhanced);
      enhanced[0] = (char)('0' + code / 100);
    }
  return mail_reply_complete (fallback, code, enhanced, action->text, error);
}
