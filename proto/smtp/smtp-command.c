/* SPDX-License-Identifier: MIT
 *
 * smtp-command.c — the SMTP command parser (server side) and SMTP_ERROR.
 *
 * Contract (see smtp.h): smtp_command_parse() turns one command line
 * (without CRLF) into an SmtpCommand or one SmtpError.  Checks run in this
 * order, cheapest and most telling first: NUL (SMTP_ERROR_NUL), the
 * per-verb line limit (LINE_TOO_LONG), other control characters (SYNTAX:
 * a CR, an ESC or a DEL has no business in a command and would reach the
 * logs), the verb (UNKNOWN), then the verb's arguments.
 *
 * Arguments: trailing blanks are ignored everywhere (Postfix does the same
 * and real clients send them); DATA, RSET, QUIT and STARTTLS take none;
 * HELO, EHLO, VRFY and EXPN need one; NOOP and HELP may have one.  MAIL and
 * RCPT paths go to proto/mail (mail_path_parse_prefix), their parameters to
 * mail_params_parse and, when we know them, to a check per keyword
 * (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET, ENVID,
 * NOTIFY, ORCPT, RFC 4954 §5 AUTH).  xtext values are decoded by
 * mail_xtext_decode, which never yields CR, LF, NUL or another control
 * character (CVE-2020-28026).  A known parameter on the wrong verb (NOTIFY
 * on MAIL, SIZE on RCPT) is refused here, because the session only knows
 * which extensions it announced, not where each keyword belongs.
 */
#include <string.h>

#include "smtp.h"

G_DEFINE_QUARK (smtp - error - quark, smtp_error)

typedef enum
{
  ARG_NONE,     /* no argument allowed */
  ARG_OPTIONAL, /* anything or nothing */
  ARG_REQUIRED, /* something, not checked here */
  ARG_SPECIAL,  /* a parser of its own */
} ArgRule;

typedef struct
{
  const char *name;
  gsize max_line; /* octets with CRLF */
  ArgRule arg;
} VerbInfo;

/* Indexed by SmtpVerb. */
static const VerbInfo verbs[] = {
  [SMTP_CMD_HELO] = { "HELO", SMTP_MAX_COMMAND_LINE, ARG_REQUIRED },
  [SMTP_CMD_EHLO] = { "EHLO", SMTP_MAX_COMMAND_LINE, ARG_REQUIRED },
  [SMTP_CMD_MAIL] = { "MAIL", SMTP_MAX_MAIL_LINE, ARG_SPECIAL },
  [SMTP_CMD_RCPT] = { "RCPT", SMTP_MAX_RCPT_LINE, ARG_SPECIAL },
  [SMTP_CMD_DATA] = { "DATA", SMTP_MAX_COMMAND_LINE, ARG_NONE },
  [SMTP_CMD_BDAT] = { "BDAT", SMTP_MAX_COMMAND_LINE, ARG_SPECIAL },
  [SMTP_CMD_RSET] = { "RSET", SMTP_MAX_COMMAND_LINE, ARG_NONE },
  [SMTP_CMD_NOOP] = { "NOOP", SMTP_MAX_COMMAND_LINE, ARG_OPTIONAL },
  [SMTP_CMD_QUIT] = { "QUIT", SMTP_MAX_COMMAND_LINE, ARG_NONE },
  [SMTP_CMD_VRFY] = { "VRFY", SMTP_MAX_COMMAND_LINE, ARG_REQUIRED },
  [SMTP_CMD_EXPN] = { "EXPN", SMTP_MAX_COMMAND_LINE, ARG_REQUIRED },
  [SMTP_CMD_HELP] = { "HELP", SMTP_MAX_COMMAND_LINE, ARG_OPTIONAL },
  [SMTP_CMD_STARTTLS] = { "STARTTLS", SMTP_MAX_COMMAND_LINE, ARG_NONE },
  [SMTP_CMD_AUTH] = { "AUTH", SMTP_MAX_AUTH_LINE, ARG_SPECIAL },
};
G_STATIC_ASSERT (G_N_ELEMENTS (verbs) == SMTP_CMD_AUTH + 1);

const char *
smtp_verb_name (SmtpVerb verb)
{
  g_return_val_if_fail ((guint)verb < G_N_ELEMENTS (verbs), "?");
  return verbs[verb].name;
}

void
smtp_command_free (SmtpCommand *cmd)
{
  if (cmd == NULL)
    return;
  g_free (cmd->arg);
  if (cmd->path != NULL)
    mail_path_unref (cmd->path);
  mail_params_free (cmd->params);
  g_free (cmd->envid);
  g_free (cmd->auth);
  g_free (cmd->orcpt);
  g_free (cmd->mechanism);
  g_free (cmd->initial_response);
  g_free (cmd);
}

static gboolean
is_blank (char c)
{
  return c == ' ' || c == '\t';
}

static gboolean
all_digits (const char *s, gsize len)
{
  if (len == 0)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isdigit (s[i]))
      return FALSE;
  return TRUE;
}

/* Digits already checked; saturates at G_MAXUINT64. */
static guint64
parse_decimal (const char *s, gsize len)
{
  guint64 v = 0;

  for (gsize i = 0; i < len; i++)
    {
      guint d = (guint)(s[i] - '0');

      if (v > (G_MAXUINT64 - d) / 10)
        return G_MAXUINT64;
      v = v * 10 + d;
    }
  return v;
}

static gboolean
has_8bit (const char *s)
{
  for (; *s != '\0'; s++)
    if ((guchar)*s >= 0x80)
      return TRUE;
  return FALSE;
}

/* ---- MAIL / RCPT parameters ------------------------------------------------- */

static gboolean
bad_param (GError **error, const char *keyword, const char *why)
{
  g_set_error (error, SMTP_ERROR, SMTP_ERROR_BAD_PARAM, "%s: %s", keyword, why);
  return FALSE;
}

/* RFC 1870: size-value = 1*20DIGIT.  A value that does not fit 64 bits is
 * over any limit anyway, so it saturates instead of being refused. */
static gboolean
check_size (SmtpCommand *cmd, const char *value, GError **error)
{
  gsize len = strlen (value);

  if (len > SMTP_MAX_SIZE_DIGITS)
    return bad_param (error, "SIZE", "more than 20 digits");
  if (!all_digits (value, len))
    return bad_param (error, "SIZE", "not a decimal number");
  cmd->size = parse_decimal (value, len);
  return TRUE;
}

static gboolean
check_body (SmtpCommand *cmd, const char *value, GError **error)
{
  static const struct
  {
    const char *name;
    SmtpBody body;
  } bodies[] = {
    { "7BIT", SMTP_BODY_7BIT },
    { "8BITMIME", SMTP_BODY_8BITMIME },
    { "BINARYMIME", SMTP_BODY_BINARYMIME },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      if (g_ascii_strcasecmp (value, bodies[i].name) == 0)
        {
          cmd->body = bodies[i].body;
          return TRUE;
        }
    }
  return bad_param (error, "BODY", "not 7BIT, 8BITMIME or BINARYMIME");
}

static gboolean
check_smtputf8 (SmtpCommand *cmd, const char *value, GError **error)
{
  cmd->smtputf8 = TRUE;
  return TRUE;
}

static gboolean
check_ret (SmtpCommand *cmd, const char *value, GError **error)
{
  if (g_ascii_strcasecmp (value, "FULL") == 0)
    cmd->ret = SMTP_RET_FULL;
  else if (g_ascii_strcasecmp (value, "HDRS") == 0)
    cmd->ret = SMTP_RET_HDRS;
  else
    return bad_param (error, "RET", "not FULL or HDRS");
  return TRUE;
}

/* Decode an xtext value; proto/mail refuses anything that would decode to a
 * control character or an 8-bit byte. */
static char *
decode_xtext (const char *keyword, const char *value, gsize len, GError **error)
{
  g_autoptr (GError) local = NULL;
  char *out = mail_xtext_decode (value, (gssize)len, &local);

  if (out == NULL)
    g_set_error (error, SMTP_ERROR, SMTP_ERROR_BAD_PARAM, "%s: %s", keyword, local->message);
  return out;
}

static gboolean
check_envid (SmtpCommand *cmd, const char *value, GError **error)
{
  gsize len = strlen (value);

  if (len > SMTP_MAX_ENVID)
    return bad_param (error, "ENVID", "longer than 100 characters");
  cmd->envid = decode_xtext ("ENVID", value, len, error);
  return cmd->envid != NULL;
}

/* RFC 4954 §5: AUTH=<mailbox as xtext> or AUTH=<>. */
static gboolean
check_auth (SmtpCommand *cmd, const char *value, GError **error)
{
  cmd->auth = decode_xtext ("AUTH", value, strlen (value), error);
  return cmd->auth != NULL;
}

/* RFC 3461 §4.1: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY. */
static gboolean
check_notify (SmtpCommand *cmd, const char *value, GError **error)
{
  static const struct
  {
    const char *name;
    SmtpNotify bit;
  } words[] = {
    { "NEVER", SMTP_NOTIFY_NEVER },
    { "SUCCESS", SMTP_NOTIFY_SUCCESS },
    { "FAILURE", SMTP_NOTIFY_FAILURE },
    { "DELAY", SMTP_NOTIFY_DELAY },
  };
  const char *p = value;
  guint bits = 0;

  for (;;)
    {
      const char *comma = strchr (p, ',');
      gsize len = comma != NULL ? (gsize)(comma - p) : strlen (p);
      guint bit = 0;

      for (gsize i = 0; i < G_N_ELEMENTS (words) && bit == 0; i++)
        if (strlen (words[i].name) == len && g_ascii_strncasecmp (p, words[i].name, len) == 0)
          bit = words[i].bit;
      if (bit == 0)
        return bad_param (error, "NOTIFY", "not NEVER, SUCCESS, FAILURE or DELAY");
      bits |= bit;
      if (comma == NULL)
        break;
      p = comma + 1;
    }
  if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
    return bad_param (error, "NOTIFY", "NEVER combined with other values");
  cmd->notify = bits;
  return TRUE;
}

/* RFC 3461 §4.2: ORCPT=addr-type;xtext.  The type is kept as given, the
 * address decoded.  RFC 6533's utf-8-addr-xtext (8-bit, "\x{...}") is not
 * supported: mail_xtext_decode refuses 8-bit bytes. */
static gboolean
check_orcpt (SmtpCommand *cmd, const char *value, GError **error)
{
  const char *semi = strchr (value, ';');
  g_autofree char *addr = NULL;
  gsize tlen;

  if (semi == NULL || semi == value)
    return bad_param (error, "ORCPT", "not addr-type;address");
  tlen = (gsize)(semi - value);
  for (gsize i = 0; i < tlen; i++)
    if (!g_ascii_isalnum (value[i]) && value[i] != '-')
      return bad_param (error, "ORCPT", "malformed address type");
  if (semi[1] == '\0')
    return bad_param (error, "ORCPT", "empty address");
  addr = decode_xtext ("ORCPT", semi + 1, strlen (semi + 1), error);
  if (addr == NULL)
    return FALSE;
  cmd->orcpt = g_strdup_printf ("%.*s;%s", (int)tlen, value, addr);
  return TRUE;
}

typedef gboolean (*ParamCheck) (SmtpCommand *cmd, const char *value, GError **error);

typedef struct
{
  const char *keyword; /* upper case, as the parameters are stored */
  SmtpVerb verb;
  gboolean has_value;
  ParamCheck check;
} KnownParam;

static const KnownParam known_params[] = {
  { "SIZE", SMTP_CMD_MAIL, TRUE, check_size },
  { "BODY", SMTP_CMD_MAIL, TRUE, check_body },
  { "SMTPUTF8", SMTP_CMD_MAIL, FALSE, check_smtputf8 },
  { "RET", SMTP_CMD_MAIL, TRUE, check_ret },
  { "ENVID", SMTP_CMD_MAIL, TRUE, check_envid },
  { "AUTH", SMTP_CMD_MAIL, TRUE, check_auth },
  { "NOTIFY", SMTP_CMD_RCPT, TRUE, check_notify },
  { "ORCPT", SMTP_CMD_RCPT, TRUE, check_orcpt },
};

static gboolean
check_known_params (SmtpCommand *cmd, GError **error)
{
  for (guint i = 0; i < mail_params_get_n (cmd->params); i++)
    {
      const char *keyword = mail_params_get_keyword (cmd->params, i);
      const char *value = mail_params_get_value (cmd->params, i);

      for (gsize k = 0; k < G_N_ELEMENTS (known_params); k++)
        {
          const KnownParam *known = &known_params[k];

          if (strcmp (keyword, known->keyword) != 0)
            continue;
          if (known->verb != cmd->verb)
            return bad_param (error, keyword,
                              cmd->verb == SMTP_CMD_MAIL ? "a RCPT parameter on MAIL"
                                                         : "a MAIL parameter on RCPT");
          if (known->has_value && value == NULL)
            return bad_param (error, keyword, "needs a value");
          if (!known->has_value && value != NULL)
            return bad_param (error, keyword, "takes no value");
          if (!known->check (cmd, value, error))
            return FALSE;
          break;
        }
    }
  return TRUE;
}

/* RFC 5321 keywords are case-insensitive; store them upper-cased so every
 * reader compares one spelling.  Values are left alone. */
static void
upcase_keywords (char *s)
{
  gboolean in_keyword = TRUE;

  for (; *s != '\0'; s++)
    {
      if (*s == ' ')
        in_keyword = TRUE;
      else if (*s == '=')
        in_keyword = FALSE;
      else if (in_keyword)
        *s = g_ascii_toupper (*s);
    }
}

/* "FROM:<path> params" / "TO:<path> params" */
static gboolean
parse_mail_rcpt (SmtpCommand *cmd, const char *arg, gsize len, SmtpParseFlags flags, gboolean utf8,
                 GError **error)
{
  gboolean is_mail = cmd->verb == SMTP_CMD_MAIL;
  const char *prefix = is_mail ? "FROM:" : "TO:";
  gsize plen = strlen (prefix);
  SmtpError bad = is_mail ? SMTP_ERROR_BAD_SENDER : SMTP_ERROR_BAD_RCPT;
  guint mflags = MAIL_PARSE_SMTPUTF8;
  g_autoptr (GError) local = NULL;
  g_autofree char *params = NULL;
  const char *rest;
  gsize rlen;
  gsize used = 0;

  if (len < plen || g_ascii_strncasecmp (arg, prefix, plen) != 0 || len == plen)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "Syntax: %s %s<address>",
                   verbs[cmd->verb].name, prefix);
      return FALSE;
    }
  rest = arg + plen;
  rlen = len - plen;

  /* 8-bit is allowed by the path parser here and refused below once we
   * know whether SMTPUTF8 applies, so that case gets its own reply. */
  mflags |= is_mail ? MAIL_PARSE_ALLOW_NULL : MAIL_PARSE_ALLOW_POSTMASTER;
  if (flags & SMTP_PARSE_LENIENT)
    mflags |= MAIL_PARSE_LENIENT;
  cmd->path = mail_path_parse_prefix (rest, rlen, mflags, &used, &local);
  if (cmd->path == NULL)
    {
      g_set_error (error, SMTP_ERROR, bad, "%s", local->message);
      return FALSE;
    }
  rest += used;
  rlen -= used;
  if (rlen > 0 && rest[0] != ' ')
    {
      g_set_error (error, SMTP_ERROR, bad, "unexpected characters after the address");
      return FALSE;
    }
  while (rlen > 0 && rest[0] == ' ')
    rest++, rlen--;
  if (rlen > 0 && (flags & SMTP_PARSE_ESMTP) == 0)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "parameters on %s without EHLO",
                   verbs[cmd->verb].name);
      return FALSE;
    }

  params = g_strndup (rest, rlen);
  upcase_keywords (params);
  cmd->params = mail_params_parse (params, (gssize)rlen, MAIL_PARSE_SMTPUTF8, &local);
  if (cmd->params == NULL)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_BAD_PARAM, "%s", local->message);
      return FALSE;
    }
  if (!check_known_params (cmd, error))
    return FALSE;

  /* RFC 6531 §3.4: 8-bit in the envelope only in an SMTPUTF8 transaction. */
  if (!utf8 && !(is_mail && cmd->smtputf8))
    {
      if (mail_path_is_utf8 (cmd->path))
        {
          g_set_error (error, SMTP_ERROR, SMTP_ERROR_8BIT, "8-bit address without SMTPUTF8");
          return FALSE;
        }
      for (guint i = 0; i < mail_params_get_n (cmd->params); i++)
        {
          const char *value = mail_params_get_value (cmd->params, i);

          if (value != NULL && has_8bit (value))
            return bad_param (error, mail_params_get_keyword (cmd->params, i),
                              "8-bit value without SMTPUTF8");
        }
    }
  return TRUE;
}

/* ---- BDAT and AUTH ------------------------------------------------------------ */

/* Split [s, s+len) into at most max_words words separated by runs of SP;
 * returns the count, or max_words + 1 when there are more. */
static guint
split_words (const char *s, gsize len, const char **words, gsize *lens, guint max_words)
{
  guint n = 0;
  gsize i = 0;

  while (i < len)
    {
      gsize start;

      while (i < len && s[i] == ' ')
        i++;
      if (i == len)
        break;
      if (n == max_words)
        return max_words + 1;
      start = i;
      while (i < len && s[i] != ' ')
        i++;
      words[n] = s + start;
      lens[n] = i - start;
      n++;
    }
  return n;
}

/* RFC 3030: "BDAT" SP chunk-size [SP end-marker] */
static gboolean
parse_bdat (SmtpCommand *cmd, const char *arg, gsize len, GError **error)
{
  const char *words[2];
  gsize lens[2];
  guint n = split_words (arg, len, words, lens, 2);

  if (n == 0 || n > 2)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "Syntax: BDAT size [LAST]");
      return FALSE;
    }
  if (lens[0] > SMTP_MAX_BDAT_DIGITS || !all_digits (words[0], lens[0]))
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "BDAT: bad chunk size");
      return FALSE;
    }
  if (n == 2 && !(lens[1] == 4 && g_ascii_strncasecmp (words[1], "LAST", 4) == 0))
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "BDAT: end marker is not LAST");
      return FALSE;
    }
  cmd->chunk_size = parse_decimal (words[0], lens[0]);
  cmd->last = n == 2;
  return TRUE;
}

/* RFC 4954 §4: "AUTH" SP sasl-mech [SP initial-response] */
static gboolean
parse_auth (SmtpCommand *cmd, const char *arg, gsize len, GError **error)
{
  const char *words[2];
  gsize lens[2];
  guint n = split_words (arg, len, words, lens, 2);

  if (n == 0 || n > 2)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "Syntax: AUTH mechanism [response]");
      return FALSE;
    }
  /* RFC 4422 §3.1: sasl-mech = 1*20mech-char (upper-case ALPHA, DIGIT,
   * '-', '_'); lower case is accepted and folded. */
  if (lens[0] > SMTP_MAX_SASL_MECHANISM)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "AUTH: mechanism name too long");
      return FALSE;
    }
  for (gsize i = 0; i < lens[0]; i++)
    {
      if (!g_ascii_isalnum (words[0][i]) && words[0][i] != '-' && words[0][i] != '_')
        {
          g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "AUTH: malformed mechanism name");
          return FALSE;
        }
    }
  cmd->mechanism = g_ascii_strup (words[0], (gssize)lens[0]);
  if (n == 2)
    cmd->initial_response = g_strndup (words[1], lens[1]);
  return TRUE;
}

/* ---- the command line --------------------------------------------------------- */

static const VerbInfo *
lookup_verb (const char *s, gsize len, SmtpVerb *out)
{
  for (gsize i = 0; i < G_N_ELEMENTS (verbs); i++)
    {
      if (strlen (verbs[i].name) == len && g_ascii_strncasecmp (s, verbs[i].name, len) == 0)
        {
          *out = (SmtpVerb)i;
          return &verbs[i];
        }
    }
  return NULL;
}

SmtpCommand *
smtp_command_parse (const char *line, gsize len, SmtpParseFlags flags, gboolean utf8,
                    GError **error)
{
  g_autoptr (SmtpCommand) cmd = NULL;
  const VerbInfo *info;
  SmtpVerb verb = SMTP_CMD_NOOP;
  gsize verb_len = 0;
  gsize trimmed = len;
  gsize arg_start;
  gsize arg_len;
  const char *sp;

  g_return_val_if_fail (line != NULL || len == 0, NULL);

  if (len > 0 && memchr (line, '\0', len) != NULL)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_NUL, "NUL in command");
      return NULL;
    }
  sp = len > 0 ? memchr (line, ' ', len) : NULL;
  verb_len = sp != NULL ? (gsize)(sp - line) : len;
  info = lookup_verb (line, verb_len, &verb);
  /* An unknown verb gets the base limit: nothing entitles it to more. */
  if (len > (info != NULL ? info->max_line : SMTP_MAX_COMMAND_LINE) - 2)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_LINE_TOO_LONG, "line too long");
      return NULL;
    }
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar)line[i];

      if ((c < 0x20 && c != '\t') || c == 0x7f)
        {
          g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "control character 0x%02x in command",
                       c);
          return NULL;
        }
    }
  if (info == NULL)
    {
      g_set_error (error, SMTP_ERROR, SMTP_ERROR_UNKNOWN, "command not recognized");
      return NULL;
    }

  while (trimmed > verb_len && is_blank (line[trimmed - 1]))
    trimmed--;
  arg_start = MIN (verb_len + 1, trimmed);
  arg_len = trimmed - arg_start;

  cmd = g_new0 (SmtpCommand, 1);
  cmd->verb = verb;
  cmd->arg = g_strndup (line + arg_start, arg_len);

  switch (info->arg)
    {
      case ARG_NONE:
        if (arg_len > 0)
          {
            g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "Syntax: %s", info->name);
            return NULL;
          }
        break;
      case ARG_REQUIRED:
        if (arg_len == 0)
          {
            g_set_error (error, SMTP_ERROR, SMTP_ERROR_SYNTAX, "Syntax: %s argument", info->name);
            return NULL;
          }
        break;
      case ARG_OPTIONAL:
        break;
      case ARG_SPECIAL:
        if (verb == SMTP_CMD_MAIL || verb == SMTP_CMD_RCPT)
          {
            if (!parse_mail_rcpt (cmd, cmd->arg, arg_len, flags, utf8, error))
              return NULL;
          }
        else if (verb == SMTP_CMD_BDAT)
          {
            if (!parse_bdat (cmd, cmd->arg, arg_len, error))
              return NULL;
          }
        else if (verb == SMTP_CMD_AUTH)
          {
            if (!parse_auth (cmd, cmd->arg, arg_len, error))
              return NULL;
          }
        else
          g_assert_not_reached ();
        break;
      default:
        g_assert_not_reached ();
    }
  return g_steal_pointer (&cmd);
}
