/* SPDX-License-Identifier: MIT
 *
 * milter-session.c — what each MTA→milter packet means for the engine: the
 * negotiation, macros into the VpsSession, CONNECT/HELO/MAIL/RCPT into
 * stages, ABORT/QUIT/QUIT_NC, and the reply to each command (MILTER.md).
 *
 * Contract: vps_milter_conn_dispatch() takes one decoded packet.  It
 * returns FALSE (with an error naming what was wrong) for a packet that is
 * out of order or not allowed — the caller then closes the connection.  A
 * packet that starts a stage marks the connection busy; the reply is
 * queued when the stage finishes and the connection resumes reading.
 *
 * Verdicts map as: continue/accept → 'c' (a vps accept judges one stage;
 * milter's accept would end the filtering), accept_all → 'a',
 * reject/tempfail → 'y' with the code, enhanced code and text, discard →
 * 'd', quarantine before end of message → remembered, 'c'.  In RCPT a
 * reject refuses that recipient only.
 */
#include "vps/milter-private.h"

#include <string.h>

#include "proto/mail/mail-address.h"
#include "vps/log.h"
#include "vps/metrics.h"

/* ---- replies ---------------------------------------------------------------- */

static void
reply_code (VpsMilterConn *conn, RulesVerdict verdict, guint code, const char *enhanced,
            const char *text)
{
  g_autoptr (GError) error = NULL;

  if (!milter_encode_replycode (conn->out, code, enhanced, text, &error))
    {
      /* the engine completes and checks replies, so this is a last resort:
       * the plain verdict still tells the MTA what to do */
      vps_warning (vps_milter_conn_id (conn), "milter: reply %u refused (%s): plain %s sent", code,
                   error->message, rules_verdict_name (verdict));
      milter_encode_reply_simple (
          conn->out, verdict == RULES_VERDICT_REJECT ? MILTER_REPLY_REJECT : MILTER_REPLY_TEMPFAIL);
    }
}

void
vps_milter_conn_stage_reply (VpsMilterConn *conn, RulesStage stage, const VpsStageResult *r)
{
  switch (r->verdict)
    {
      case RULES_VERDICT_CONTINUE:
      case RULES_VERDICT_ACCEPT:
      case RULES_VERDICT_QUARANTINE: /* sent at end of message */
        milter_encode_reply_simple (conn->out, MILTER_REPLY_CONTINUE);
        break;
      case RULES_VERDICT_ACCEPT_ALL:
        milter_encode_reply_simple (conn->out, MILTER_REPLY_ACCEPT);
        break;
      case RULES_VERDICT_REJECT:
      case RULES_VERDICT_TEMPFAIL:
        reply_code (conn, r->verdict, r->code, r->enhanced, r->text);
        break;
      case RULES_VERDICT_DISCARD:
        milter_encode_reply_simple (conn->out, MILTER_REPLY_DISCARD);
        break;
      default:
        g_assert_not_reached ();
    }
}

/* Does the MTA wait for our reply to `cmd`?  As libmilter decides it: a
 * replied command that arrives is answered unless its NR_* bit was
 * negotiated — also one the version or a NO_* bit says the MTA should not
 * send (miltertest sends DATA in version 2 and waits). */
gboolean
vps_milter_conn_expects_reply (VpsMilterConn *conn, MilterCommand cmd)
{
  MilterOptions o = conn->negotiated;

  o.version = MILTER_VERSION;
  o.protocol &= ~(guint32)(MILTER_PROTO_NOCONNECT | MILTER_PROTO_NOHELO | MILTER_PROTO_NOMAIL
                           | MILTER_PROTO_NORCPT | MILTER_PROTO_NOBODY | MILTER_PROTO_NOHDRS
                           | MILTER_PROTO_NOEOH | MILTER_PROTO_NOUNKNOWN | MILTER_PROTO_NODATA);
  return milter_protocol_expects_reply (&o, cmd);
}

static void
reply_continue (VpsMilterConn *conn, MilterCommand cmd)
{
  if (vps_milter_conn_expects_reply (conn, cmd))
    milter_encode_reply_simple (conn->out, MILTER_REPLY_CONTINUE);
}

/* ---- stages ----------------------------------------------------------------- */

typedef struct
{
  VpsMilterConn *conn; /* a reference */
  RulesStage stage;
  char command;
  gboolean replies;
} StageCall;

static gboolean
refuses (RulesVerdict v)
{
  return v == RULES_VERDICT_REJECT || v == RULES_VERDICT_TEMPFAIL || v == RULES_VERDICT_DISCARD;
}

/* The answer to the command that started the stage: the EOM sequence, or
 * the plain stage reply when the MTA waits for one. */
static void
answer (VpsMilterConn *conn, const StageCall *call, const VpsStageResult *r)
{
  if (call->command == MILTER_CMD_EOB)
    vps_milter_content_finish (conn, r);
  else if (call->replies)
    vps_milter_conn_stage_reply (conn, call->stage, r);
}

static void
stage_finished (StageCall *call, GAsyncResult *res)
{
  VpsMilterConn *conn = call->conn;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) r = vps_engine_run_stage_finish (conn->engine, res, &error);

  if (conn->closed)
    return;
  conn->busy = FALSE;
  g_clear_object (&conn->cancellable);
  if (r == NULL)
    {
      /* cancelled at the stage timeout, or the stage could not run: the
       * MTA gets a temporary failure, never silence */
      VpsStageResult tmp = { 0 };
      const char *enh, *text;

      vps_warning (vps_milter_conn_id (conn), "milter: stage %s failed: %s: tempfail",
                   rules_stage_name (call->stage), error->message);
      vps_default_reply (call->stage, RULES_VERDICT_TEMPFAIL, &tmp.code, &enh, &text);
      tmp.stage = call->stage;
      tmp.verdict = RULES_VERDICT_TEMPFAIL;
      tmp.enhanced = (char *)enh;
      tmp.text = (char *)text;
      answer (conn, call, &tmp);
      vps_milter_conn_resume (conn);
      return;
    }
  if (call->stage == RULES_STAGE_AUTH && !refuses (r->verdict)
      && r->verdict != RULES_VERDICT_ACCEPT_ALL
      && rules_program_n_rules (vps_engine_get_program (conn->engine), RULES_STAGE_MAIL) > 0)
    {
      /* AUTH came as macros of MAIL: the mail stage follows at once */
      vps_milter_conn_run_stage (conn, RULES_STAGE_MAIL, call->command, call->replies);
      return;
    }
  if (call->stage == RULES_STAGE_RCPT && !refuses (r->verdict))
    vps_txn_accept_rcpt (conn->txn);
  answer (conn, call, r);
  vps_milter_conn_resume (conn);
}

static void
stage_done (GObject *source, GAsyncResult *res, gpointer data)
{
  StageCall *call = data;

  stage_finished (call, res);
  vps_milter_conn_unref (call->conn);
  g_free (call);
}

void
vps_milter_conn_run_stage (VpsMilterConn *conn, RulesStage stage, char command, gboolean replies)
{
  StageCall *call = g_new0 (StageCall, 1);
  gint64 now = g_get_monotonic_time ();

  call->conn = vps_milter_conn_ref (conn);
  call->stage = stage;
  call->command = command;
  call->replies = replies;
  conn->busy = TRUE;
  conn->busy_command = command;
  conn->busy_replies = replies;
  conn->busy_since = now;
  conn->last_progress = now;
  g_clear_object (&conn->cancellable);
  conn->cancellable = g_cancellable_new ();
  vps_engine_run_stage_async (conn->engine, conn->session, conn->txn, stage, conn->cancellable,
                              stage_done, call);
}

/* Run `stage` when it has rules; otherwise answer continue right away. */
static void
stage_or_continue (VpsMilterConn *conn, RulesStage stage, MilterCommand cmd)
{
  if (rules_program_n_rules (vps_engine_get_program (conn->engine), stage) > 0)
    vps_milter_conn_run_stage (conn, stage, cmd, vps_milter_conn_expects_reply (conn, cmd));
  else
    reply_continue (conn, cmd);
}

void
vps_milter_conn_new_txn (VpsMilterConn *conn)
{
  g_clear_pointer (&conn->txn, vps_txn_unref);
  conn->txn = vps_txn_new (conn->session);
  conn->txn_has_message = TRUE;
  vps_milter_content_reset (conn);
}

/* Content or RCPT without MAIL (NOMAIL negotiated): the message begins. */
static void
ensure_message (VpsMilterConn *conn)
{
  if (!conn->txn_has_message)
    vps_milter_conn_new_txn (conn);
}

/* ---- macros ------------------------------------------------------------------ */

/* "{auth_type}" and "auth_type" name the same macro. */
static gboolean
macro_is (const char *name, const char *bare)
{
  gsize n = strlen (bare);

  if (name[0] == '{')
    return strncmp (name + 1, bare, n) == 0 && name[n + 1] == '}' && name[n + 2] == '\0';
  return strcmp (name, bare) == 0;
}

static const char *
macro (VpsMilterConn *conn, const char *bare)
{
  g_autofree char *braced = g_strdup_printf ("{%s}", bare);
  const char *v = vps_session_get_macro (conn->session, braced);

  return v != NULL ? v : vps_session_get_macro (conn->session, bare);
}

static void
apply_macros (VpsMilterConn *conn, char **pairs)
{
  gboolean auth = FALSE, tls = FALSE, server = FALSE;

  for (guint i = 0; pairs[i] != NULL && pairs[i + 1] != NULL; i += 2)
    {
      const char *name = pairs[i], *value = pairs[i + 1];

      if (!vps_session_set_macro (conn->session, name, value))
        vps_log_once ("milter-macros", 60, G_LOG_LEVEL_WARNING, vps_milter_conn_id (conn),
                      "milter: more than %d macros: %s dropped", VPS_SESSION_MAX_MACROS, name);
      if (macro_is (name, "i"))
        vps_txn_set_queue_id (conn->txn, value);
      else if (macro_is (name, "auth_authen") || macro_is (name, "auth_type"))
        auth = TRUE;
      else if (macro_is (name, "tls_version") || macro_is (name, "cipher")
               || macro_is (name, "cert_subject"))
        tls = TRUE;
      else if (macro_is (name, "j"))
        {
          g_free (conn->server_name);
          conn->server_name = g_strdup (value);
          server = TRUE;
        }
      else if (macro_is (name, "daemon_addr") || macro_is (name, "if_addr"))
        {
          g_free (conn->server_ip);
          conn->server_ip = g_strdup (value);
          server = TRUE;
        }
      else if (macro_is (name, "daemon_port"))
        {
          guint64 port = 0;

          if (g_ascii_string_to_unsigned (value, 10, 1, 65535, &port, NULL))
            conn->server_port = (guint16)port;
          server = TRUE;
        }
    }
  if (auth)
    {
      const char *user = macro (conn, "auth_authen");

      vps_session_set_auth (conn->session, user != NULL && *user != '\0', user,
                            macro (conn, "auth_type"));
    }
  if (tls)
    {
      const char *version = macro (conn, "tls_version"), *cipher = macro (conn, "cipher");

      vps_session_set_tls (conn->session, (version && *version) || (cipher && *cipher), version,
                           cipher, macro (conn, "cert_subject"));
    }
  if (server)
    vps_session_set_server (conn->session, conn->server_ip, conn->server_port, conn->server_name);
}

/* ---- commands --------------------------------------------------------------- */

static gboolean
order_error (VpsMilterConn *conn, char cmd, GError **error)
{
  g_set_error (error, VPS_MILTER_ERROR, VPS_MILTER_ERROR_PROTOCOL, "%s out of order",
               milter_command_name (cmd) ? milter_command_name (cmd) : "command");
  return FALSE;
}

static gboolean
do_optneg (VpsMilterConn *conn, const MilterOptions *offer, GError **error)
{
  if (!milter_negotiate_answer (offer, &conn->want, &conn->negotiated, error))
    return FALSE;
  milter_encode_optneg_reply (conn->out, &conn->negotiated, NULL);
  conn->phase = PHASE_CONNECT;
  vps_info (vps_milter_conn_id (conn), "milter: negotiated offer=%u/0x%x/0x%x answer=%u/0x%x/0x%x",
            offer->version, offer->actions, offer->protocol, conn->negotiated.version,
            conn->negotiated.actions, conn->negotiated.protocol);
  return TRUE;
}

static void
do_connect (VpsMilterConn *conn, MilterCommandPacket *p)
{
  const char *host = p->u.connect.host;
  const char *addr = p->u.connect.address;
  const char *ptr = host;

  /* Postfix sends "unknown" without a verified name, Sendmail "[ip]" */
  if (host == NULL || *host == '\0' || strcmp (host, "unknown") == 0 || host[0] == '[')
    ptr = NULL;
  if (addr != NULL && g_ascii_strncasecmp (addr, "IPv6:", 5) == 0)
    addr += 5;
  if (p->u.connect.family == MILTER_FAMILY_INET || p->u.connect.family == MILTER_FAMILY_INET6)
    vps_session_set_client (conn->session, addr, p->u.connect.port, ptr);
  else
    vps_session_set_client (conn->session, "", 0, ptr);
  vps_info (vps_milter_conn_id (conn), "milter: client %s[%s]:%u", host ? host : "",
            addr ? addr : "", p->u.connect.port);
  conn->phase = PHASE_HELO;
  stage_or_continue (conn, RULES_STAGE_CONNECT, MILTER_CMD_CONNECT);
}

/* "<a@b>" → "a@b" (lenient, as Postfix hands it on); unparsable input is
 * passed on without its brackets so rules still see what the MTA saw. */
static char *
envelope_address (const char *arg, gboolean reverse)
{
  g_autoptr (MailPath) path = NULL;
  gsize n = strlen (arg);

  path = mail_path_parse (arg, -1,
                          MAIL_PARSE_LENIENT | MAIL_PARSE_SMTPUTF8
                              | (reverse ? MAIL_PARSE_ALLOW_NULL : MAIL_PARSE_ALLOW_POSTMASTER),
                          NULL);
  if (path != NULL)
    return g_strdup (mail_path_get_address (path));
  if (n >= 2 && arg[0] == '<' && arg[n - 1] == '>')
    return g_strndup (arg + 1, n - 2);
  return g_strdup (arg);
}

static void
do_mail (VpsMilterConn *conn, MilterCommandPacket *p)
{
  RulesProgram *prog = vps_engine_get_program (conn->engine);
  g_autofree char *from = envelope_address (p->u.envelope.argv[0], TRUE);
  gboolean replies = vps_milter_conn_expects_reply (conn, MILTER_CMD_MAIL);

  vps_milter_conn_new_txn (conn);
  vps_metrics_count_transaction (VPS_METRICS_FRONTEND_MILTER);
  vps_txn_set_sender (conn->txn, from, (const char *const *)p->u.envelope.argv + 1);
  conn->phase = PHASE_MAIL;
  vps_debug (vps_milter_conn_id (conn), "milter: mail from=<%s>", from);
  if (rules_program_n_rules (prog, RULES_STAGE_AUTH) > 0
      && vps_session_get_authenticated (conn->session))
    vps_milter_conn_run_stage (conn, RULES_STAGE_AUTH, MILTER_CMD_MAIL, replies);
  else
    stage_or_continue (conn, RULES_STAGE_MAIL, MILTER_CMD_MAIL);
}

static void
do_rcpt (VpsMilterConn *conn, MilterCommandPacket *p)
{
  g_autofree char *to = envelope_address (p->u.envelope.argv[0], FALSE);

  ensure_message (conn);
  vps_txn_set_rcpt (conn->txn, to, (const char *const *)p->u.envelope.argv + 1);
  conn->phase = PHASE_RCPT;
  vps_debug (vps_milter_conn_id (conn), "milter: rcpt to=<%s>", to);
  if (rules_program_n_rules (vps_engine_get_program (conn->engine), RULES_STAGE_RCPT) > 0)
    vps_milter_conn_run_stage (conn, RULES_STAGE_RCPT, MILTER_CMD_RCPT,
                               vps_milter_conn_expects_reply (conn, MILTER_CMD_RCPT));
  else
    {
      vps_txn_accept_rcpt (conn->txn);
      reply_continue (conn, MILTER_CMD_RCPT);
    }
}

/* QUIT_NC: the MTA reuses the socket for a new SMTP session. */
static void
new_session (VpsMilterConn *conn)
{
  const char *old = vps_milter_conn_id (conn);
  g_autoptr (VpsSession) s = vps_session_new ();

  vps_info (old, "milter: session ends (QUIT_NC), next is %s", vps_session_get_id (s));
  vps_milter_content_reset (conn);
  g_clear_pointer (&conn->txn, vps_txn_unref);
  g_clear_pointer (&conn->session, vps_session_unref);
  conn->session = g_steal_pointer (&s);
  conn->txn = vps_txn_new (conn->session);
  conn->txn_has_message = FALSE;
  g_clear_pointer (&conn->server_name, g_free);
  g_clear_pointer (&conn->server_ip, g_free);
  conn->server_port = 0;
  conn->phase = PHASE_CONNECT;
}

/* Every command but OPTNEG needs a negotiated connection; the ones that
 * belong to a message must not come after a later step of it. */
static gboolean
check_order (VpsMilterConn *conn, char cmd, GError **error)
{
  VpsMilterPhase ph = conn->phase;

  if (cmd == MILTER_CMD_OPTNEG)
    return ph == PHASE_OPTNEG || ph == PHASE_CONNECT ? TRUE : order_error (conn, cmd, error);
  if (ph == PHASE_OPTNEG)
    return order_error (conn, cmd, error);
  switch (cmd)
    {
      case MILTER_CMD_CONNECT:
        return ph == PHASE_CONNECT || order_error (conn, cmd, error);
      case MILTER_CMD_HELO:
        return ph <= PHASE_HELO || order_error (conn, cmd, error);
      case MILTER_CMD_MAIL:
      case MILTER_CMD_RCPT:
        return ph <= PHASE_RCPT || order_error (conn, cmd, error);
      case MILTER_CMD_DATA:
        return ph <= PHASE_DATA || order_error (conn, cmd, error);
      case MILTER_CMD_HEADER:
        return ph <= PHASE_HEADER || order_error (conn, cmd, error);
      case MILTER_CMD_EOH:
        return ph <= PHASE_EOH || order_error (conn, cmd, error);
      default:
        return TRUE;
    }
}

gboolean
vps_milter_conn_dispatch (VpsMilterConn *conn, MilterCommandPacket *p, GError **error)
{
  if (!check_order (conn, p->command, error))
    return FALSE;
  switch (p->command)
    {
      case MILTER_CMD_OPTNEG:
        return do_optneg (conn, &p->u.optneg, error);
      case MILTER_CMD_MACRO:
        /* any stage byte: Postfix sends macros before headers and body too */
        apply_macros (conn, p->u.macro.pairs);
        return TRUE;
      case MILTER_CMD_CONNECT:
        do_connect (conn, p);
        return TRUE;
      case MILTER_CMD_HELO:
        vps_session_set_helo (conn->session, p->u.helo.name);
        vps_debug (vps_milter_conn_id (conn), "milter: helo %s", p->u.helo.name);
        conn->phase = PHASE_HELO;
        stage_or_continue (conn, RULES_STAGE_HELO, MILTER_CMD_HELO);
        return TRUE;
      case MILTER_CMD_MAIL:
        do_mail (conn, p);
        return TRUE;
      case MILTER_CMD_RCPT:
        do_rcpt (conn, p);
        return TRUE;
      case MILTER_CMD_DATA:
        ensure_message (conn);
        conn->phase = PHASE_DATA;
        reply_continue (conn, MILTER_CMD_DATA);
        return TRUE;
      case MILTER_CMD_HEADER:
        ensure_message (conn);
        conn->phase = PHASE_HEADER;
        if (!vps_milter_content_header (conn, p->u.header.name, p->u.header.value, error))
          return FALSE;
        reply_continue (conn, MILTER_CMD_HEADER);
        return TRUE;
      case MILTER_CMD_EOH:
        ensure_message (conn);
        conn->phase = PHASE_EOH;
        reply_continue (conn, MILTER_CMD_EOH);
        return TRUE;
      case MILTER_CMD_BODY:
        ensure_message (conn);
        conn->phase = PHASE_BODY;
        if (!vps_milter_content_body (conn, p->u.body, error))
          return FALSE;
        reply_continue (conn, MILTER_CMD_BODY);
        return TRUE;
      case MILTER_CMD_EOB:
        ensure_message (conn);
        /* libmilter accepts a last chunk inside EOB */
        if (p->u.body != NULL && g_bytes_get_size (p->u.body) > 0
            && !vps_milter_content_body (conn, p->u.body, error))
          return FALSE;
        vps_milter_content_eom (conn);
        return TRUE;
      case MILTER_CMD_UNKNOWN:
        vps_debug (vps_milter_conn_id (conn), "milter: unknown SMTP command");
        reply_continue (conn, MILTER_CMD_UNKNOWN);
        return TRUE;
      case MILTER_CMD_ABORT:
        /* the message only: the SMTP session (HELO, TLS, AUTH) stays */
        if (conn->txn_has_message)
          vps_debug (vps_milter_conn_id (conn), "milter: abort");
        vps_txn_reset (conn->txn);
        vps_milter_content_reset (conn);
        conn->txn_has_message = FALSE;
        if (conn->phase > PHASE_HELO)
          conn->phase = PHASE_HELO;
        return TRUE;
      case MILTER_CMD_QUIT:
        vps_stream_close_after_flush (conn->stream);
        if (conn->out->len == 0)
          vps_milter_conn_close (conn);
        return TRUE;
      case MILTER_CMD_QUIT_NC:
        new_session (conn);
        return TRUE;
      default:
        g_set_error (error, VPS_MILTER_ERROR, VPS_MILTER_ERROR_PROTOCOL, "command 0x%02x",
                     (guint)p->command);
        return FALSE;
    }
}
