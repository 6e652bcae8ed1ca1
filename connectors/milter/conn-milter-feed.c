/* SPDX-License-Identifier: MIT
 *
 * conn-milter-feed.c — the MTA side of a milter conversation: which
 * packets a stage sends (in the order Postfix sends them), with which
 * macros, and what the milter's answers mean for the transaction.
 *
 * Contract (MILTER.md):
 * - envelope steps are sent once per session (connect, helo) or message
 *   (mail, each rcpt); a stage sends what the milter has not seen yet, so
 *   `call grey` at rcpt and later `call grey` at data continue one
 *   conversation.  MAIL for a new transaction is preceded by ABORT when the
 *   milter saw MAIL of an earlier one (Postfix sends ABORT between
 *   messages; ABORT resets the message only);
 * - macros go before every command, even one the milter negotiated away
 *   (its callbacks of later steps may read them), with the milter's symbol
 *   list of that stage or Postfix's default list; only macros with a value
 *   are sent.  Values come from the front end's macros when it had an MTA
 *   (milter server), else from the session (client, helo, TLS, AUTH) and
 *   the transaction;
 * - at data the message is the transaction's message with every
 *   modification so far applied (rules and connectors before this call),
 *   as Postfix hands the edited message to the next milter; headers go one
 *   by one (folded lines joined with LF, as Postfix sends them; leading
 *   white space kept only under HDR_LEADSPC), the body CRLF in chunks of at
 *   most MILTER_MAX_BODY_CHUNK bytes;
 * - answers: continue goes on; accept retires the milter for the message
 *   (at connect/helo: the session) and is not a verdict of ours (Postfix
 *   and milter-manager: an accept only ends that milter's part); reject,
 *   tempfail, reply codes, discard and shutdown end the call with that
 *   verdict (Postfix's replies: "550 5.7.1 Command rejected", "451 4.7.1
 *   Service unavailable - try again later", 421 on shutdown); at end of
 *   message every modification becomes a VpsModification (a header with
 *   CR/LF or a bad name is refused: the whole call fails, nothing partial
 *   is applied) and QUARANTINE the quarantine verdict.
 */
#include "connectors/milter/conn-milter-private.h"

#include <string.h>

#include "vps/log.h"

/* ---- macros --------------------------------------------------------------- */

/* Postfix's default macro lists (milter_*_macros), by MilterStage. */
static const char *const default_macros[MILTER_N_STAGES] = {
  [MILTER_STAGE_CONNECT] = "j {daemon_name} {daemon_addr} v _",
  [MILTER_STAGE_HELO] = "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
  [MILTER_STAGE_ENVFROM] = "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} "
                           "{mail_mailer}",
  [MILTER_STAGE_ENVRCPT] = "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
  [MILTER_STAGE_DATA] = "i",
  [MILTER_STAGE_EOM] = "i",
  [MILTER_STAGE_EOH] = "i",
};

/* A macro's value when no MTA gave it to us (NULL = none). */
static char *
macro_value (VpsTxn *txn, const char *bare, const char *rcpt)
{
  VpsSession *s = vps_txn_get_session (txn);
  const char *v;

  if (g_str_equal (bare, "j"))
    return g_strdup (vps_session_get_server_name (s) && *vps_session_get_server_name (s)
                         ? vps_session_get_server_name (s)
                         : g_get_host_name ());
  if (g_str_equal (bare, "daemon_name"))
    return g_strdup ("vps");
  if (g_str_equal (bare, "v"))
    return g_strdup ("vps");
  if (g_str_equal (bare, "daemon_addr"))
    return *vps_session_get_server_ip (s) ? g_strdup (vps_session_get_server_ip (s)) : NULL;
  if (g_str_equal (bare, "_"))
    {
      v = vps_session_get_client_ptr (s);
      return g_strdup_printf ("%s [%s]", v && *v ? v : "unknown", vps_session_get_client_ip (s));
    }
  if (g_str_equal (bare, "client_addr"))
    return g_strdup (vps_session_get_client_ip (s));
  if (g_str_equal (bare, "client_port"))
    return g_strdup_printf ("%u", vps_session_get_client_port (s));
  if (g_str_equal (bare, "client_name") || g_str_equal (bare, "client_ptr"))
    return (v = vps_session_get_client_ptr (s)) && *v ? g_strdup (v) : g_strdup ("unknown");
  if (g_str_equal (bare, "tls_version"))
    return vps_session_get_tls_active (s) ? g_strdup (vps_session_get_tls_version (s)) : NULL;
  if (g_str_equal (bare, "cipher"))
    return vps_session_get_tls_active (s) ? g_strdup (vps_session_get_tls_cipher (s)) : NULL;
  if (g_str_equal (bare, "cert_subject"))
    return (v = vps_session_get_tls_peer_subject (s)) && *v ? g_strdup (v) : NULL;
  if (g_str_equal (bare, "auth_type"))
    return vps_session_get_authenticated (s) ? g_strdup (vps_session_get_auth_mechanism (s)) : NULL;
  if (g_str_equal (bare, "auth_authen"))
    return vps_session_get_authenticated (s) ? g_strdup (vps_session_get_auth_user (s)) : NULL;
  if (g_str_equal (bare, "i"))
    return g_strdup (vps_txn_get_queue_id (txn) ? vps_txn_get_queue_id (txn)
                                                : vps_txn_get_id (txn));
  if (g_str_equal (bare, "mail_addr"))
    return (v = vps_txn_get_sender (txn)) ? g_strdup (v) : NULL;
  if (g_str_equal (bare, "rcpt_addr"))
    return rcpt ? g_strdup (rcpt) : NULL;
  return NULL;
}

/* "D" for `stage` before command `cmd`: the milter's list or the default. */
static void
append_macros (ConnMilterConn *conn, GByteArray *out, VpsTxn *txn, MilterStage stage, char cmd,
               const char *rcpt)
{
  const char *list = conn->symlists[stage] ? conn->symlists[stage] : default_macros[stage];
  g_auto (GStrv) names = g_strsplit_set (list, " ", -1);
  g_autoptr (GPtrArray) pairs = g_ptr_array_new_with_free_func (g_free);
  VpsSession *s = vps_txn_get_session (txn);

  for (guint i = 0; names[i] != NULL && pairs->len / 2 < MILTER_MAX_MACROS; i++)
    {
      const char *name = names[i];
      g_autofree char *bare = NULL;
      g_autofree char *braced = NULL;
      const char *given;
      char *value;

      if (*name == '\0')
        continue;
      bare = name[0] == '{'
                 ? g_strndup (name + 1, strlen (name) - 1 - (name[strlen (name) - 1] == '}'))
                 : g_strdup (name);
      braced = strlen (bare) > 1 ? g_strdup_printf ("{%s}", bare) : g_strdup (bare);
      /* the front end's MTA knows its own values best (queue id, ...) */
      if ((given = vps_session_get_macro (s, braced)) != NULL
          || (given = vps_session_get_macro (s, bare)) != NULL)
        value = g_strdup (given);
      else
        value = macro_value (txn, bare, rcpt);
      if (value == NULL || *value == '\0')
        {
          g_free (value);
          continue;
        }
      g_ptr_array_add (pairs, g_strdup (name));
      g_ptr_array_add (pairs, value);
    }
  if (pairs->len == 0)
    return;
  g_ptr_array_add (pairs, NULL);
  milter_encode_macro (out, cmd, (const char *const *)pairs->pdata);
}

/* ---- steps ---------------------------------------------------------------- */

void
conn_milter_step_free (ConnMilterStep *step)
{
  if (step == NULL)
    return;
  g_byte_array_unref (step->bytes);
  g_free (step->rcpt);
  g_free (step);
}

/* A new step for cmd; when the milter negotiated cmd away only the macros
 * go out (command MACRO: no reply). */
static ConnMilterStep *
step_new (ConnMilterConn *conn, GPtrArray *steps, MilterCommand cmd)
{
  ConnMilterStep *st = g_new0 (ConnMilterStep, 1);

  st->command = milter_protocol_sends (&conn->options, cmd) ? cmd : MILTER_CMD_MACRO;
  st->for_cmd = cmd;
  st->bytes = g_byte_array_new ();
  g_ptr_array_add (steps, st);
  return st;
}

static char **
envelope_argv (const char *address, char **params)
{
  GStrvBuilder *b = g_strv_builder_new ();
  g_autofree char *path = g_strdup_printf ("<%s>", address);
  char **out;

  g_strv_builder_add (b, path);
  for (guint i = 0; params[i] != NULL && i + 1 < MILTER_MAX_ARGS; i++)
    g_strv_builder_add (b, params[i]);
  out = g_strv_builder_end (b);
  g_strv_builder_unref (b);
  return out;
}

static void
plan_rcpt (ConnMilterConn *conn, GPtrArray *steps, VpsTxn *txn, const char *rcpt, char **params,
           gboolean catch_up, GHashTable *planned)
{
  g_autofree char *key = g_utf8_casefold (rcpt, -1);
  ConnMilterStep *st;

  if (g_hash_table_contains (conn->rcpts_sent, key) || g_hash_table_contains (planned, key))
    return;
  g_hash_table_add (planned, g_strdup (key));
  st = step_new (conn, steps, MILTER_CMD_RCPT);
  st->catch_up = catch_up;
  st->rcpt = g_steal_pointer (&key);
  append_macros (conn, st->bytes, txn, MILTER_STAGE_ENVRCPT, MILTER_CMD_RCPT, rcpt);
  if (st->command == MILTER_CMD_RCPT)
    {
      g_auto (GStrv) argv = envelope_argv (rcpt, params);
      milter_encode_envelope (st->bytes, MILTER_CMD_RCPT, (const char *const *)argv);
    }
}

/* Header block of raw: (name, value) pairs as Postfix sends them; *body
 * is set to the first body byte (or the end). */
static GPtrArray *
split_headers (const char *p, gsize len, gboolean leadspc, gsize *body)
{
  GPtrArray *pairs = g_ptr_array_new_with_free_func (g_free);
  gsize i = 0;

  while (i < len)
    {
      gsize eol = i, next;
      const char *colon;
      GString *value;

      while (eol < len && p[eol] != '\n')
        eol++;
      next = eol < len ? eol + 1 : eol;
      if (eol == i || (eol == i + 1 && p[i] == '\r'))
        {
          i = next; /* the blank line */
          break;
        }
      colon = memchr (p + i, ':', eol - i);
      if (colon == NULL || p[i] == ' ' || p[i] == '\t')
        break; /* not a header: the body starts here (no blank line) */
      g_ptr_array_add (pairs, g_strndup (p + i, (gsize)(colon - (p + i))));
      value = g_string_new (NULL);
      {
        const char *v = colon + 1;
        const char *end = p + eol;

        if (end > v && end[-1] == '\r')
          end--;
        if (!leadspc)
          while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        g_string_append_len (value, v, end - v);
      }
      i = next;
      /* continuation lines: joined with LF, as Postfix passes them */
      while (i < len && (p[i] == ' ' || p[i] == '\t'))
        {
          gsize e = i;

          while (e < len && p[e] != '\n')
            e++;
          g_string_append_c (value, '\n');
          g_string_append_len (value, p + i, (gssize)(e - i - (e > i && p[e - 1] == '\r')));
          i = e < len ? e + 1 : e;
        }
      g_ptr_array_add (pairs, g_string_free (value, FALSE));
    }
  *body = MIN (i, len);
  return pairs;
}

/* The body with CRLF line ends (an MTA sends it so). */
static GByteArray *
body_crlf (const char *p, gsize len)
{
  GByteArray *out = g_byte_array_sized_new ((guint)len + len / 32 + 2);

  for (gsize i = 0; i < len; i++)
    {
      if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
        g_byte_array_append (out, (const guint8 *)"\r", 1);
      g_byte_array_append (out, (const guint8 *)&p[i], 1);
    }
  return out;
}

static gboolean
plan_message (ConnMilterConn *conn, GPtrArray *steps, VpsTxn *txn, GError **error)
{
  VpsMessage *msg = vps_txn_get_message (txn);
  g_autoptr (GBytes) edited = NULL;
  g_autoptr (GPtrArray) headers = NULL;
  g_autoptr (GByteArray) body = NULL;
  gboolean leadspc = (conn->options.protocol & MILTER_PROTO_HDR_LEADSPC) != 0;
  const char *p;
  gsize len = 0, body_at = 0;
  ConnMilterStep *st;

  if (msg == NULL)
    {
      g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                   "no message in this transaction (the front end has none at this stage)");
      return FALSE;
    }
  edited = vps_modify_apply_message (vps_message_get_raw (msg), vps_txn_get_modifications (txn),
                                     error);
  if (edited == NULL)
    return FALSE;
  p = g_bytes_get_data (edited, &len);
  headers = split_headers (p, len, leadspc, &body_at);

  st = step_new (conn, steps, MILTER_CMD_DATA);
  append_macros (conn, st->bytes, txn, MILTER_STAGE_DATA, MILTER_CMD_DATA, NULL);
  if (st->command == MILTER_CMD_DATA)
    milter_encode_data (st->bytes);
  if (milter_protocol_sends (&conn->options, MILTER_CMD_HEADER))
    for (guint i = 0; i + 1 < headers->len; i += 2)
      {
        st = step_new (conn, steps, MILTER_CMD_HEADER);
        milter_encode_header (st->bytes, g_ptr_array_index (headers, i),
                              g_ptr_array_index (headers, i + 1));
      }
  st = step_new (conn, steps, MILTER_CMD_EOH);
  append_macros (conn, st->bytes, txn, MILTER_STAGE_EOH, MILTER_CMD_EOH, NULL);
  if (st->command == MILTER_CMD_EOH)
    milter_encode_eoh (st->bytes);
  if (milter_protocol_sends (&conn->options, MILTER_CMD_BODY))
    {
      body = body_crlf (p + body_at, len - body_at);
      for (gsize off = 0; off < body->len; off += MILTER_MAX_BODY_CHUNK)
        {
          st = step_new (conn, steps, MILTER_CMD_BODY);
          st->body = TRUE;
          milter_encode_body (st->bytes, body->data + off,
                              MIN (MILTER_MAX_BODY_CHUNK, body->len - off));
        }
    }
  st = step_new (conn, steps, MILTER_CMD_EOB);
  st->command = st->for_cmd = MILTER_CMD_EOB; /* always sent, always answered */
  append_macros (conn, st->bytes, txn, MILTER_STAGE_EOM, MILTER_CMD_EOB, NULL);
  milter_encode_eob (st->bytes);
  return TRUE;
}

GPtrArray *
conn_milter_plan (ConnMilterConn *conn, VpsTxn *txn, RulesStage stage, GError **error)
{
  g_autoptr (GPtrArray) steps
      = g_ptr_array_new_with_free_func ((GDestroyNotify)conn_milter_step_free);
  g_autoptr (GHashTable) planned = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  VpsSession *s = vps_txn_get_session (txn);
  gboolean same_txn = g_str_equal (conn->txn_id, vps_txn_get_id (txn));
  ConnMilterStep *st;

  if (conn->session_done)
    return g_steal_pointer (&steps);
  if (!conn->sent_connect)
    {
      const char *ip = vps_session_get_client_ip (s);
      const char *ptr = vps_session_get_client_ptr (s);
      MilterFamily family = *ip == '\0'                ? MILTER_FAMILY_UNKNOWN
                            : strchr (ip, ':') != NULL ? MILTER_FAMILY_INET6
                                                       : MILTER_FAMILY_INET;
      g_autofree char *host
          = ptr && *ptr ? g_strdup (ptr) : g_strdup_printf ("[%s]", *ip ? ip : "unknown");

      st = step_new (conn, steps, MILTER_CMD_CONNECT);
      append_macros (conn, st->bytes, txn, MILTER_STAGE_CONNECT, MILTER_CMD_CONNECT, NULL);
      if (st->command == MILTER_CMD_CONNECT)
        milter_encode_connect (st->bytes, host, family, vps_session_get_client_port (s), ip);
    }
  if (stage == RULES_STAGE_CONNECT)
    return g_steal_pointer (&steps);
  if (!conn->sent_helo && vps_session_get_helo (s) != NULL && *vps_session_get_helo (s))
    {
      st = step_new (conn, steps, MILTER_CMD_HELO);
      append_macros (conn, st->bytes, txn, MILTER_STAGE_HELO, MILTER_CMD_HELO, NULL);
      if (st->command == MILTER_CMD_HELO)
        milter_encode_helo (st->bytes, vps_session_get_helo (s));
    }
  if (stage < RULES_STAGE_MAIL || vps_txn_get_sender (txn) == NULL || stage == RULES_STAGE_DELIVERY)
    return g_steal_pointer (&steps);
  if (same_txn && conn->message_done)
    return g_steal_pointer (&steps);
  if (!same_txn || !conn->sent_mail)
    {
      g_auto (GStrv) params = vps_txn_dup_sender_params (txn);
      g_auto (GStrv) argv = envelope_argv (vps_txn_get_sender (txn), params);

      st = step_new (conn, steps, MILTER_CMD_MAIL);
      if (conn->sent_mail)
        milter_encode_abort (st->bytes); /* the message before is over */
      append_macros (conn, st->bytes, txn, MILTER_STAGE_ENVFROM, MILTER_CMD_MAIL, NULL);
      if (st->command == MILTER_CMD_MAIL)
        milter_encode_envelope (st->bytes, MILTER_CMD_MAIL, (const char *const *)argv);
    }
  if (stage >= RULES_STAGE_RCPT)
    {
      gsize n = 0;
      const char *const *rcpts = vps_txn_get_rcpts (txn, &n);
      const char *current = stage == RULES_STAGE_RCPT ? vps_txn_get_rcpt (txn) : NULL;

      for (gsize i = 0; i < n; i++)
        {
          g_auto (GStrv) params = vps_txn_dup_rcpt_params (txn, (gssize)i);
          plan_rcpt (conn, steps, txn, rcpts[i], params, TRUE, planned);
        }
      if (current != NULL)
        {
          g_auto (GStrv) params = vps_txn_dup_rcpt_params (txn, -1);
          plan_rcpt (conn, steps, txn, current, params, FALSE, planned);
        }
    }
  if ((stage == RULES_STAGE_DATA || stage == RULES_STAGE_POSTQ)
      && !plan_message (conn, steps, txn, error))
    return NULL;
  return g_steal_pointer (&steps);
}

void
conn_milter_step_sent (ConnMilterConn *conn, const ConnMilterStep *step, VpsTxn *txn)
{
  switch ((int)step->for_cmd)
    {
      case MILTER_CMD_CONNECT:
        conn->sent_connect = TRUE;
        break;
      case MILTER_CMD_HELO:
        conn->sent_helo = TRUE;
        break;
      case MILTER_CMD_MAIL:
        g_strlcpy (conn->txn_id, vps_txn_get_id (txn), sizeof conn->txn_id);
        conn->sent_mail = TRUE;
        conn->message_done = FALSE;
        g_hash_table_remove_all (conn->rcpts_sent);
        break;
      case MILTER_CMD_RCPT:
        if (step->rcpt != NULL)
          g_hash_table_add (conn->rcpts_sent, g_strdup (step->rcpt));
        break;
      case MILTER_CMD_EOB:
        conn->message_done = TRUE;
        break;
      default:
        break;
    }
}

/* ---- answers ---------------------------------------------------------------- */

/* The action a modification needs (MilterAction). */
static guint32
needed_action (guint8 code)
{
  switch (code)
    {
      case MILTER_REPLY_ADDHEADER:
      case MILTER_REPLY_INSHEADER:
        return MILTER_ACTION_ADDHDRS;
      case MILTER_REPLY_CHGHEADER:
        return MILTER_ACTION_CHGHDRS;
      case MILTER_REPLY_CHGFROM:
        return MILTER_ACTION_CHGFROM;
      case MILTER_REPLY_ADDRCPT:
        return MILTER_ACTION_ADDRCPT;
      case MILTER_REPLY_ADDRCPT_PAR:
        return MILTER_ACTION_ADDRCPT_PAR;
      case MILTER_REPLY_DELRCPT:
        return MILTER_ACTION_DELRCPT;
      case MILTER_REPLY_REPLBODY:
        return MILTER_ACTION_CHGBODY;
      case MILTER_REPLY_QUARANTINE:
        return MILTER_ACTION_QUARANTINE;
      default:
        return 0;
    }
}

/* A header value as our modifications hold it: unfolded (milters fold
 * long values such as DKIM-Signature with LF or CRLF; removing the line
 * break before the white space is RFC 5322 unfolding), without the leading
 * space a HDR_LEADSPC milter includes. */
static char *
header_value (const char *v, gboolean leadspc)
{
  GString *out = g_string_new (NULL);

  if (leadspc && *v == ' ')
    v++;
  for (; *v; v++)
    {
      /* only a line break followed by white space is folding; any other
       * CR or LF stays and the modification is refused (header injection) */
      gsize brk = v[0] == '\r' && v[1] == '\n' ? 2 : v[0] == '\n' ? 1 : 0;

      if (brk > 0 && (v[brk] == ' ' || v[brk] == '\t'))
        {
          v += brk - 1;
          continue;
        }
      g_string_append_c (out, *v);
    }
  return g_string_free (out, FALSE);
}

/* "<a@b>" → "a@b" (our addresses have no brackets); with args appended. */
static char *
envelope_value (const char *address, const char *args)
{
  gsize len = strlen (address);
  g_autofree char *bare = address[0] == '<' && len >= 2 && address[len - 1] == '>'
                              ? g_strndup (address + 1, len - 2)
                              : g_strdup (address);

  return args && *args ? g_strdup_printf ("%s %s", bare, args) : g_steal_pointer (&bare);
}

static VpsModification *
modification_from (const MilterReplyPacket *p, gboolean leadspc, GError **error)
{
  g_autofree char *v = NULL;

  switch (p->code)
    {
      case MILTER_REPLY_ADDHEADER:
        v = header_value (p->u.header.value, leadspc);
        return vps_modification_new (VPS_MOD_ADD_HEADER, p->u.header.name, v, 0, error);
      case MILTER_REPLY_INSHEADER:
        v = header_value (p->u.header.value, leadspc);
        return vps_modification_new (VPS_MOD_INSERT_HEADER, p->u.header.name, v,
                                     (gint)MIN (p->u.header.index, G_MAXINT), error);
      case MILTER_REPLY_CHGHEADER:
        {
          /* milter indices count from 1; 0 means the first too (libmilter
           * passes it on, Postfix and Sendmail treat it as 1), while our
           * index 0 means "every instance" */
          gint index = (gint)MAX (1, MIN (p->u.header.index, G_MAXINT));

          if (*p->u.header.value == '\0')
            return vps_modification_new (VPS_MOD_REMOVE_HEADER, p->u.header.name, NULL, index,
                                         error);
          v = header_value (p->u.header.value, leadspc);
          return vps_modification_new (VPS_MOD_SET_HEADER, p->u.header.name, v, index, error);
        }
      case MILTER_REPLY_CHGFROM:
        v = envelope_value (p->u.envelope.address, p->u.envelope.args);
        return vps_modification_new (VPS_MOD_SET_SENDER, NULL, v, 0, error);
      case MILTER_REPLY_ADDRCPT:
      case MILTER_REPLY_ADDRCPT_PAR:
        v = envelope_value (p->u.envelope.address,
                            p->code == MILTER_REPLY_ADDRCPT_PAR ? p->u.envelope.args : NULL);
        return vps_modification_new (VPS_MOD_ADD_RCPT, NULL, v, 0, error);
      case MILTER_REPLY_DELRCPT:
        v = envelope_value (p->u.envelope.address, NULL);
        return vps_modification_new (VPS_MOD_REMOVE_RCPT, NULL, v, 0, error);
      default:
        g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                     "'%c' is no modification", p->code);
        return NULL;
    }
}

static void
set_verdict (VpsConnectorResult *r, RulesVerdict verdict, guint code, const char *enhanced,
             const char *text, const char *action)
{
  r->verdict = verdict;
  if (code != 0)
    vps_connector_result_set_reply (r, code, enhanced, text);
  vps_connector_result_set_string (r, "action", action);
}

static gboolean
is_session_step (const ConnMilterStep *step)
{
  return step->for_cmd == MILTER_CMD_CONNECT || step->for_cmd == MILTER_CMD_HELO;
}

/* The milter decided the message (or, at connect/helo, the session). */
static void
retire (ConnMilterConn *conn, const ConnMilterStep *step)
{
  if (is_session_step (step))
    conn->session_done = TRUE;
  else
    conn->message_done = TRUE;
}

gboolean
conn_milter_apply_replies (ConnMilterConn *conn, const ConnMilterStep *step, GPtrArray *replies,
                           VpsConnectorResult *result, gboolean *ends, gboolean *skip,
                           GError **error)
{
  const ConnMilterSettings *set = conn_milter_pool_settings (conn->pool);
  gboolean eom = step->for_cmd == MILTER_CMD_EOB;
  gboolean leadspc = (conn->options.protocol & MILTER_PROTO_HDR_LEADSPC) != 0;
  g_autoptr (GPtrArray) mods
      = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_modification_free);
  g_autoptr (GByteArray) body = NULL;
  g_autofree char *reason = NULL;
  const MilterReplyPacket *last;
  g_autoptr (MailReply) reply = NULL;

  *ends = *skip = FALSE;
  g_return_val_if_fail (replies->len > 0, FALSE);
  last = g_ptr_array_index (replies, replies->len - 1);
  for (guint i = 0; i + 1 < replies->len; i++)
    {
      const MilterReplyPacket *p = g_ptr_array_index (replies, i);
      guint32 need = needed_action (p->code);
      VpsModification *m;

      if (p->code == MILTER_REPLY_PROGRESS)
        continue;
      if (!eom || need == 0 || (conn->options.actions & need) == 0)
        {
          /* Postfix treats these as a protocol error of the milter too */
          g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED, "'%c' (%s) %s",
                       p->code, milter_reply_name ((char)p->code) ?: "?",
                       !eom ? "outside end of message" : "not negotiated");
          return FALSE;
        }
      if (p->code == MILTER_REPLY_REPLBODY)
        {
          gsize n = 0;
          const guint8 *d = g_bytes_get_data (p->u.body, &n);

          if (body == NULL)
            body = g_byte_array_new ();
          if (body->len + n > CONN_MILTER_MAX_REPLBODY || memchr (d, '\0', n) != NULL)
            {
              g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                           "replaced body refused (over %d bytes or with NUL)",
                           CONN_MILTER_MAX_REPLBODY);
              return FALSE;
            }
          g_byte_array_append (body, d, (guint)n);
          continue;
        }
      if (p->code == MILTER_REPLY_QUARANTINE)
        {
          g_free (reason);
          reason = g_strdup (p->u.reason);
          continue;
        }
      if ((m = modification_from (p, leadspc, error)) == NULL)
        {
          g_prefix_error (error, "milter modification refused: ");
          return FALSE;
        }
      g_ptr_array_add (mods, m);
    }
  if (body != NULL)
    {
      VpsModification *m;

      g_byte_array_append (body, (const guint8 *)"", 1);
      if ((m
           = vps_modification_new (VPS_MOD_REPLACE_BODY, NULL, (const char *)body->data, 0, error))
          == NULL)
        return FALSE;
      g_ptr_array_add (mods, m);
    }

  switch ((int)last->code)
    {
      case MILTER_REPLY_CONTINUE:
        vps_connector_result_set_string (result, "action", eom ? "accept" : "continue");
        break;
      case MILTER_REPLY_ACCEPT:
        vps_connector_result_set_string (result, "action", "accept");
        retire (conn, step);
        *ends = TRUE;
        break;
      case MILTER_REPLY_SKIP:
        /* only meaningful in the body; elsewhere it means go on */
        *skip = TRUE;
        vps_connector_result_set_string (result, "action", "continue");
        break;
      case MILTER_REPLY_REJECT:
      case MILTER_REPLY_TEMPFAIL:
      case MILTER_REPLY_REPLYCODE:
        {
          gboolean rej = last->code == MILTER_REPLY_REJECT
                         || (last->code == MILTER_REPLY_REPLYCODE
                             && mail_reply_get_code (last->u.reply) >= 500);
          g_autofree char *text
              = last->code == MILTER_REPLY_REPLYCODE ? mail_reply_get_text (last->u.reply) : NULL;

          if (step->catch_up)
            {
              /* a recipient accepted before this milter was called: an MTA
               * would have asked it then; now it can only be noted */
              vps_info (conn->sid, "milter %s: late %s of recipient %s ignored", set->name,
                        rej ? "reject" : "tempfail", step->rcpt);
              break;
            }
          if (last->code == MILTER_REPLY_REPLYCODE)
            set_verdict (result, rej ? RULES_VERDICT_REJECT : RULES_VERDICT_TEMPFAIL,
                         mail_reply_get_code (last->u.reply),
                         mail_reply_get_enhanced (last->u.reply), text, "replycode");
          else if (rej)
            set_verdict (result, RULES_VERDICT_REJECT, 550, "5.7.1", "Command rejected", "reject");
          else
            set_verdict (result, RULES_VERDICT_TEMPFAIL, 451, "4.7.1",
                         "Service unavailable - try again later", "tempfail");
          if (step->for_cmd != MILTER_CMD_RCPT)
            retire (conn, step);
          *ends = TRUE;
          return TRUE; /* edits of a refused message are moot */
        }
      case MILTER_REPLY_DISCARD:
        set_verdict (result, RULES_VERDICT_DISCARD, 0, NULL, NULL, "discard");
        conn->message_done = TRUE;
        *ends = TRUE;
        return TRUE;
      case MILTER_REPLY_SHUTDOWN:
        set_verdict (result, RULES_VERDICT_TEMPFAIL, 421, "4.7.0", "Server closing connection",
                     "shutdown");
        conn->broken = TRUE;
        *ends = TRUE;
        return TRUE;
      default:
        g_set_error (error, VPS_CONNECTOR_ERROR, VPS_CONNECTOR_ERROR_FAILED,
                     "'%c' (%s) is no answer to %s", last->code,
                     milter_reply_name ((char)last->code) ?: "?",
                     milter_command_name ((char)step->command) ?: "?");
        return FALSE;
    }
  for (guint i = 0; i < mods->len; i++)
    vps_connector_result_add_modification (result, g_steal_pointer (&mods->pdata[i]));
  if (reason != NULL)
    {
      /* Postfix holds the message: our quarantine verdict */
      result->verdict = RULES_VERDICT_QUARANTINE;
      g_free (result->quarantine);
      result->quarantine = g_strdup (set->quarantine);
      vps_connector_result_set_string (result, "reason", reason);
      vps_connector_result_set_string (result, "action", "quarantine");
    }
  return TRUE;
}
