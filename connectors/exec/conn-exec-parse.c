/* SPDX-License-Identifier: MIT
 *
 * conn-exec-parse.c — the two data ends of the `exec` connector, without
 * any process: the environment a script gets, and its answer (stdout lines
 * and exit status) turned into a connector result.
 *
 * Answer lines (one per line, LF or CRLF; other lines are ignored and only
 * readable as NAME.stdout):
 *   verdict=VERDICT            continue accept accept_all reject tempfail
 *                              discard quarantine
 *   code=NNN  enhanced=X.Y.Z  text=...   the SMTP reply
 *   quarantine=NAME            the quarantine of a quarantine verdict
 *   add_header=Name: value     also set_header=, insert_header= (at the
 *   remove_header=Name         top)
 *   set NAME=value             a field NAME.NAME: true/false → bool,
 *                              integers → int, decimals → float, else string
 * The verdict is the `verdict=` line when there is one, otherwise the exit
 * status's mapping (exit_N, exit_other; default: 0 → continue, anything
 * else → error).  A status that maps to error, or a signal, is an error even
 * when a verdict was printed: the script did not finish its work.
 *
 * What reaches the MTA is checked: an answer line with CR or NUL inside,
 * a reply code of the wrong class for the verdict, a text or header
 * proto/mail refuses — each makes the whole answer an error, never a
 * partial one.
 */
#include "connectors/exec/conn-exec-private.h"

#include <string.h>

#include "proto/mail/mail-reply.h"

G_DEFINE_QUARK (conn - exec - error - quark, conn_exec_error)

/* ---- environment ----------------------------------------------------------- */

static char **
env_set (char **env, const char *name, const char *value)
{
  return g_environ_setenv (env, name, value != NULL ? value : "", TRUE);
}

char **
conn_exec_environment (VpsTxn *txn, RulesStage stage, const char *connector)
{
  VpsSession *s = vps_txn_get_session (txn);
  const char *path = g_getenv ("PATH");
  gsize n = 0;
  const char *const *rcpts = vps_txn_get_rcpts (txn, &n);
  g_autofree char *joined = rcpts != NULL ? g_strjoinv (",", (char **)rcpts) : g_strdup ("");
  g_autofree char *port = g_strdup_printf ("%u", vps_session_get_client_port (s));
  g_autofree char *count = g_strdup_printf ("%" G_GSIZE_FORMAT, n);
  g_autofree char *size = g_strdup_printf ("%" G_GUINT64_FORMAT, vps_txn_get_size (txn));
  char **env = NULL;

  /* a clean environment: nothing of vpsd's own leaks into the script */
  env = env_set (env, "PATH", path != NULL ? path : "/usr/local/bin:/usr/bin:/bin");
  env = env_set (env, "VPS_CONNECTOR", connector);
  env = env_set (env, "VPS_STAGE", rules_stage_name (stage));
  env = env_set (env, "VPS_SESSION_ID", vps_session_get_id (s));
  env = env_set (env, "VPS_TXN_ID", vps_txn_get_id (txn));
  env = env_set (env, "VPS_QUEUE_ID", vps_txn_get_queue_id (txn));
  env = env_set (env, "VPS_CLIENT_IP", vps_session_get_client_ip (s));
  env = env_set (env, "VPS_CLIENT_PORT", port);
  env = env_set (env, "VPS_CLIENT_PTR", vps_session_get_client_ptr (s));
  env = env_set (env, "VPS_SERVER_NAME", vps_session_get_server_name (s));
  env = env_set (env, "VPS_HELO", vps_session_get_helo (s));
  env = env_set (env, "VPS_TLS", vps_session_get_tls_active (s) ? "yes" : "no");
  env = env_set (env, "VPS_TLS_VERSION", vps_session_get_tls_version (s));
  env = env_set (env, "VPS_TLS_CIPHER", vps_session_get_tls_cipher (s));
  env = env_set (env, "VPS_AUTH_USER", vps_session_get_auth_user (s));
  env = env_set (env, "VPS_AUTH_MECHANISM", vps_session_get_auth_mechanism (s));
  env = env_set (env, "VPS_FROM", vps_txn_get_sender (txn));
  env = env_set (env, "VPS_RCPT", vps_txn_get_rcpt (txn));
  env = env_set (env, "VPS_RCPTS", joined);
  env = env_set (env, "VPS_RCPT_COUNT", count);
  env = env_set (env, "VPS_SIZE", size);
  return env;
}

/* ---- answers --------------------------------------------------------------- */

typedef struct
{
  gboolean has_verdict;
  RulesVerdict verdict;
  guint code;
  char *enhanced, *text, *quarantine;
} Answer;

static void
answer_clear (Answer *a)
{
  g_free (a->enhanced);
  g_free (a->text);
  g_free (a->quarantine);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Answer, answer_clear)

static gboolean refuse (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
refuse (GError **error, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_REFUSED, msg);
  return FALSE;
}

static const char *const reserved_fields[] = {
  "exit", "stdout", "verdict", "code", "text", "error", "elapsed",
};

static gboolean
field_name_ok (const char *name)
{
  gsize len = strlen (name);

  if (len == 0 || len > CONN_EXEC_MAX_SET_NAME || !(g_ascii_isalpha (name[0]) || name[0] == '_'))
    return FALSE;
  for (const char *p = name; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '_')
      return FALSE;
  return TRUE;
}

static void
set_field (VpsConnectorResult *r, const char *name, const char *value)
{
  gint64 i;
  char *end = NULL;
  double f;

  if (strcmp (value, "true") == 0 || strcmp (value, "false") == 0)
    vps_connector_result_set_bool (r, name, value[0] == 't');
  else if (g_ascii_string_to_signed (value, 10, G_MININT64, G_MAXINT64, &i, NULL))
    vps_connector_result_set_int (r, name, i);
  else if (*value != '\0' && strchr (value, '.') != NULL
           && (f = g_ascii_strtod (value, &end), end != NULL && *end == '\0'))
    vps_connector_result_set_float (r, name, f);
  else if (g_utf8_validate (value, -1, NULL))
    vps_connector_result_set_string (r, name, value);
  else
    {
      g_autofree char *valid = g_utf8_make_valid (value, -1);
      vps_connector_result_set_string (r, name, valid);
    }
}

static const struct
{
  const char *key;
  VpsModOp op;
} header_directives[] = {
  { "add_header", VPS_MOD_ADD_HEADER },
  { "set_header", VPS_MOD_SET_HEADER },
  { "insert_header", VPS_MOD_INSERT_HEADER },
  { "remove_header", VPS_MOD_REMOVE_HEADER },
};

static gboolean
header_line (VpsConnectorResult *r, VpsModOp op, const char *arg, GError **error)
{
  g_autofree char *name = NULL;
  const char *value = NULL;
  g_autoptr (GError) local = NULL;
  VpsModification *m;

  if (r->modifications->len >= CONN_EXEC_MAX_HEADER_MODS)
    return refuse (error, "more than %d header lines", CONN_EXEC_MAX_HEADER_MODS);
  if (op == VPS_MOD_REMOVE_HEADER)
    name = g_strdup (arg);
  else
    {
      const char *colon = strchr (arg, ':');

      if (colon == NULL)
        return refuse (error, "%s: not \"Name: value\"", vps_mod_op_name (op));
      name = g_strndup (arg, (gsize)(colon - arg));
      value = colon + 1;
      while (*value == ' ' || *value == '\t')
        value++;
    }
  m = vps_modification_new (op, name, value, 0, &local);
  if (m == NULL)
    return refuse (error, "%s refused: %s", vps_mod_op_name (op), local->message);
  vps_connector_result_add_modification (r, m);
  return TRUE;
}

static void
replace_str (char **slot, const char *value)
{
  g_free (*slot);
  *slot = g_strdup (value);
}

/* Does [line, line+len) look like an answer line (a known key before '=')? */
static gboolean
is_directive (const char *line, gsize len)
{
  static const char *const keys[] = {
    "verdict=",    "code=",       "enhanced=",      "text=",          "quarantine=",
    "add_header=", "set_header=", "insert_header=", "remove_header=", "set ",
  };

  for (gsize k = 0; k < G_N_ELEMENTS (keys); k++)
    if (len >= strlen (keys[k]) && memcmp (line, keys[k], strlen (keys[k])) == 0)
      return TRUE;
  return FALSE;
}

/* One line of stdout (without its line end, NUL-free). */
static gboolean
answer_line (Answer *a, VpsConnectorResult *r, const char *line, GError **error)
{
  const char *eq = strchr (line, '=');
  g_autofree char *key = NULL;
  const char *arg;

  if (g_str_has_prefix (line, "set ") && eq != NULL)
    {
      g_autofree char *name = g_strstrip (g_strndup (line + 4, (gsize)(eq - line - 4)));

      if (!field_name_ok (name))
        return refuse (error, "set: '%.64s' is not a field name", name);
      for (gsize k = 0; k < G_N_ELEMENTS (reserved_fields); k++)
        if (strcmp (name, reserved_fields[k]) == 0)
          return refuse (error, "set: '%s' is a reserved field name", name);
      set_field (r, name, eq + 1);
      return TRUE;
    }
  if (eq == NULL)
    return TRUE;
  key = g_strndup (line, (gsize)(eq - line));
  arg = eq + 1;
  if (strcmp (key, "verdict") == 0)
    {
      if (!rules_verdict_from_name (arg, &a->verdict))
        return refuse (error, "unknown verdict '%.64s'", arg);
      a->has_verdict = TRUE;
    }
  else if (strcmp (key, "code") == 0)
    {
      guint64 code;
      if (!g_ascii_string_to_unsigned (arg, 10, 200, 599, &code, NULL))
        return refuse (error, "code '%.16s' is not 200..599", arg);
      a->code = (guint)code;
    }
  else if (strcmp (key, "enhanced") == 0)
    replace_str (&a->enhanced, *arg != '\0' ? arg : NULL);
  else if (strcmp (key, "text") == 0)
    replace_str (&a->text, arg);
  else if (strcmp (key, "quarantine") == 0)
    replace_str (&a->quarantine, arg);
  else
    for (gsize k = 0; k < G_N_ELEMENTS (header_directives); k++)
      if (strcmp (key, header_directives[k].key) == 0)
        return header_line (r, header_directives[k].op, arg, error);
  return TRUE;
}

static gboolean
reply_ok (const Answer *a, RulesVerdict verdict, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (MailReply) probe = NULL;

  if (a->enhanced != NULL && !mail_enhanced_code_check (a->enhanced, a->code, &local))
    return refuse (error, "enhanced refused: %s", local->message);
  if (a->text != NULL && (probe = mail_reply_new (550, NULL, a->text, &local)) == NULL)
    return refuse (error, "text refused: %s", local->message);
  /* a code of the wrong class would tell the client the opposite */
  if (a->code != 0
      && ((verdict == RULES_VERDICT_REJECT && a->code / 100 != 5)
          || (verdict == RULES_VERDICT_TEMPFAIL && a->code / 100 != 4)))
    return refuse (error, "code %u does not fit verdict %s", a->code, rules_verdict_name (verdict));
  if (a->quarantine != NULL
      && (strlen (a->quarantine) > 64
          || strspn (a->quarantine, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "abcdefghijklmnopqrstuvwxyz"
                                    "0123456789_-.")
                 != strlen (a->quarantine)))
    return refuse (error, "quarantine name refused (1-64 of A-Z a-z 0-9 _ - .)");
  return TRUE;
}

/* stdout as a field: valid UTF-8, NUL shown as U+FFFD */
static char *
stdout_text (const char *out, gsize len)
{
  g_autoptr (GString) s = g_string_sized_new (len);

  for (gsize i = 0; i < len; i++)
    if (out[i] == '\0')
      g_string_append (s, "\xEF\xBF\xBD");
    else
      g_string_append_c (s, out[i]);
  return g_utf8_make_valid (s->str, (gssize)s->len);
}

static gint
exit_mapping (const ConnExecSettings *s, gint status)
{
  gint m = status >= 0 && status < CONN_EXEC_N_EXIT ? s->exit_map[status] : CONN_EXEC_MAP_UNSET;

  if (m != CONN_EXEC_MAP_UNSET)
    return m;
  return status == 0 ? RULES_VERDICT_CONTINUE : s->exit_other;
}

VpsConnectorResult *
conn_exec_result (const ConnExecSettings *s, gboolean exited, gint status, const char *out,
                  gsize len, GError **error)
{
  g_autoptr (VpsConnectorResult) r = vps_connector_result_new (RULES_VERDICT_CONTINUE);
  g_auto (Answer) a = { 0 };
  g_autofree char *text = NULL;
  gint mapped;

  /* no output at all may come as NULL */
  if (out == NULL || len == 0)
    {
      out = "";
      len = 0;
    }
  text = stdout_text (out, len);

  if (!exited)
    {
      g_set_error (error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_SIGNAL, "killed by signal %d", status);
      return NULL;
    }
  mapped = exit_mapping (s, status);
  if (mapped == CONN_EXEC_MAP_ERROR)
    {
      g_set_error (error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_EXIT, "exit status %d", status);
      return NULL;
    }
  {
    /* split the raw bytes: a line with NUL must be seen as such, not cut */
    gsize start = 0;

    for (gsize i = 0; i <= len; i++)
      {
        g_autofree char *line = NULL;
        gsize end;

        if (i < len && out[i] != '\n')
          continue;
        end = i;
        if (end > start && out[end - 1] == '\r')
          end--;
        if (memchr (out + start, '\0', end - start) != NULL
            || memchr (out + start, '\r', end - start) != NULL)
          {
            /* only answer lines matter; any other line is just output */
            if (is_directive (out + start, end - start))
              {
                g_set_error_literal (error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_REFUSED,
                                     "a line with CR or NUL inside");
                return NULL;
              }
            start = i + 1;
            continue;
          }
        line = g_strndup (out + start, end - start);
        start = i + 1;
        if (!answer_line (&a, r, line, error))
          return NULL;
      }
  }
  r->verdict = a.has_verdict ? a.verdict : (RulesVerdict)mapped;
  if (!reply_ok (&a, r->verdict, error))
    return NULL;
  vps_connector_result_set_reply (r, a.code, a.enhanced, a.text);
  if (r->verdict == RULES_VERDICT_QUARANTINE)
    r->quarantine = g_strdup (a.quarantine != NULL ? a.quarantine : s->quarantine);
  vps_connector_result_set_int (r, "exit", status);
  vps_connector_result_set_string (r, "stdout", text);
  return g_steal_pointer (&r);
}
