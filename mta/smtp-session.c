/* SPDX-License-Identifier: MIT
 *
 * smtp-session.c — vsmtpd's SMTP commands (RFC 5321 and the extensions of
 * the EHLO list) and the engine stages they raise: connect, helo, auth,
 * mail, rcpt (data is smtp-message.c's).  Postfix's smtpd is the model for
 * replies and ordering.
 *
 * Contract (smtp-private.h): vps_smtp_session_process() takes whole lines
 * from the input buffer and answers each in order, so pipelined commands
 * (RFC 2920) are answered in one write; a command that runs a stage makes
 * the connection busy and processing resumes when the stage is done.  Every
 * error reply counts against max_errors (then 421 and close) and past
 * tarpit_after is delayed by tarpit_delay.  Nothing from the client reaches
 * the log unchecked: addresses are logged only after proto/mail validated
 * them, other input is never logged.
 */
#include "mta/smtp-private.h"

#include <string.h>
#include <sys/socket.h>

#include "vps/log.h"
#include "vps/metrics.h"

/* ---- replies --------------------------------------------------------------- */

static void
reply_default (VpsSmtpConn *conn, MailReplyDefault which)
{
  g_autoptr (MailReply) r = mail_reply_new_default (which);

  vps_smtp_conn_reply (conn, r);
}

gboolean
vps_smtp_session_error (VpsSmtpConn *conn, const char *reply_line)
{
  conn->errors++;
  if (conn->errors >= conn->max_errors)
    {
      vps_notice (vps_smtp_conn_id (conn), "smtp: too many errors (%u), closing", conn->errors);
      vps_smtp_conn_printf (conn, "%s", reply_line);
      vps_smtp_conn_printf (conn, "421 4.7.0 %s Error: too many errors\r\n", conn->setup->hostname);
      vps_stream_close_after_flush (conn->stream);
      return FALSE;
    }
  if (conn->tarpit_delay > 0 && conn->errors > conn->tarpit_after)
    {
      vps_smtp_conn_reply_later (conn, g_strdup (reply_line), conn->tarpit_delay, FALSE);
      return TRUE;
    }
  vps_smtp_conn_write (conn, reply_line, strlen (reply_line));
  return TRUE;
}

static void
error_default (VpsSmtpConn *conn, MailReplyDefault which)
{
  g_autoptr (MailReply) r = mail_reply_new_default (which);
  g_autofree char *text = mail_reply_format (r);

  vps_smtp_session_error (conn, text);
}

void
vps_smtp_session_error_reply (VpsSmtpConn *conn, const MailReply *reply)
{
  g_autofree char *text = mail_reply_format (reply);

  vps_smtp_session_error (conn, text);
}

/* The reply of a parse error (smtp.h names each). */
void
vps_smtp_session_parse_error (VpsSmtpConn *conn, const GError *error)
{
  const char *line;

  switch (error->code)
    {
      case SMTP_ERROR_LINE_TOO_LONG:
        line = "500 5.5.2 Error: line too long\r\n";
        break;
      case SMTP_ERROR_NUL:
        line = "500 5.5.2 Error: NUL in command\r\n";
        break;
      case SMTP_ERROR_UNKNOWN:
        line = "502 5.5.2 Error: command not recognized\r\n";
        break;
      case SMTP_ERROR_BAD_SENDER:
        line = "501 5.1.7 Bad sender address syntax\r\n";
        break;
      case SMTP_ERROR_BAD_RCPT:
        line = "501 5.1.3 Bad recipient address syntax\r\n";
        break;
      case SMTP_ERROR_BAD_PARAM:
        line = "555 5.5.4 Unsupported or malformed parameter\r\n";
        break;
      case SMTP_ERROR_8BIT:
        line = "553 5.6.7 Must declare SMTPUTF8 to send UTF-8 address\r\n";
        break;
      case SMTP_ERROR_BAD_BASE64:
        line = "501 5.5.2 Cannot decode response\r\n";
        break;
      case SMTP_ERROR_SYNTAX:
      default:
        line = "501 5.5.4 Syntax error in parameters or arguments\r\n";
        break;
    }
  vps_smtp_session_error (conn, line);
}

MailReply *
vps_smtp_session_verdict_reply (VpsSmtpConn *conn, VpsStageResult *result)
{
  g_autoptr (GError) error = NULL;
  MailReply *reply;

  if (result == NULL
      || (result->verdict != RULES_VERDICT_REJECT && result->verdict != RULES_VERDICT_TEMPFAIL))
    return NULL;
  reply = mail_reply_new (result->code, result->enhanced, result->text, &error);
  if (reply == NULL)
    {
      /* the engine validated it; a connector's odd text falls back */
      vps_warning (vps_smtp_conn_id (conn), "smtp: bad reply from the rules: %s", error->message);
      reply = mail_reply_new_default (
          result->verdict == RULES_VERDICT_REJECT ? MAIL_REPLY_REJECT : MAIL_REPLY_TEMPFAIL);
    }
  return reply;
}

/* ---- stages ---------------------------------------------------------------- */

typedef struct
{
  VpsSmtpConn *conn;
  VpsSmtpStageDone done;
} StageCall;

static void
stage_done (GObject *source, GAsyncResult *res, gpointer data)
{
  StageCall *call = data;
  VpsSmtpConn *conn = call->conn;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) result = vps_engine_run_stage_finish (call->conn->engine, res, &error);

  if (!conn->closed)
    {
      if (result == NULL)
        {
          /* cannot happen short of cancellation: answer as a tempfail */
          vps_warning (vps_smtp_conn_id (conn), "smtp: stage failed: %s", error->message);
          reply_default (conn, MAIL_REPLY_SERVICE_UNAVAILABLE);
          vps_stream_close_after_flush (conn->stream);
        }
      else
        call->done (conn, result);
      vps_smtp_conn_end_async (conn);
    }
  vps_smtp_conn_unref (conn);
  g_free (call);
}

void
vps_smtp_session_run_stage (VpsSmtpConn *conn, RulesStage stage, VpsSmtpStageDone done)
{
  StageCall *call;

  if (rules_program_n_rules (vps_engine_get_program (conn->engine), stage) == 0)
    {
      done (conn, NULL);
      return;
    }
  call = g_new0 (StageCall, 1);
  call->conn = vps_smtp_conn_ref (conn);
  call->done = done;
  vps_smtp_conn_begin_async (conn);
  vps_engine_run_stage_async (conn->engine, conn->session, conn->txn, stage, conn->cancellable,
                              stage_done, call);
}

/* ---- greeting ---------------------------------------------------------------- */

static void
greet (VpsSmtpConn *conn)
{
  char probe;

  /* A client that talks before the greeting is a bot (or a smuggler): a
   * real SMTP client waits for the 220.  Only visible without TLS. */
  if (conn->tls == NULL
      && recv (vps_stream_get_fd (conn->stream), &probe, 1, MSG_PEEK | MSG_DONTWAIT) == 1)
    {
      vps_notice (vps_smtp_conn_id (conn), "smtp: client spoke before the greeting");
      vps_smtp_conn_write (conn, "554 5.5.0 Error: SMTP protocol synchronization\r\n", 48);
      vps_stream_close_after_flush (conn->stream);
      return;
    }
  vps_smtp_conn_printf (conn, "220 %s ESMTP vsmtpd\r\n", conn->setup->hostname);
  conn->greeted = TRUE;
  conn->phase = PHASE_COMMAND;
}

static void
connect_done (VpsSmtpConn *conn, VpsStageResult *result)
{
  g_autoptr (MailReply) reply = vps_smtp_session_verdict_reply (conn, result);

  if (reply != NULL)
    {
      /* refused at connect: say why and hang up (Postfix waits for RCPT with
       * smtpd_delay_reject; we have nothing to wait for).  A temporary
       * refusal that closes is a 421 (RFC 5321 §3.8). */
      if (mail_reply_get_code (reply) / 100 == 4 && mail_reply_get_code (reply) != 421)
        {
          g_autofree char *text = mail_reply_get_text (reply);
          MailReply *closing = mail_reply_new (421, mail_reply_get_enhanced (reply), text, NULL);

          if (closing != NULL)
            {
              mail_reply_unref (reply);
              reply = closing;
            }
        }
      vps_smtp_conn_reply (conn, reply);
      vps_stream_close_after_flush (conn->stream);
      return;
    }
  greet (conn);
}

/* After the optional client name lookup (smtp-ptr.c). */
static void
run_connect (VpsSmtpConn *conn)
{
  vps_smtp_session_run_stage (conn, RULES_STAGE_CONNECT, connect_done);
}

void
vps_smtp_session_start (VpsSmtpConn *conn)
{
  conn->txn = vps_txn_new (conn->session);
  if (conn->role == VPS_SMTP_ROLE_SUBMISSIONS)
    {
      /* implicit TLS: the handshake first, the connect stage after it */
      vps_smtp_conn_start_tls (conn);
      return;
    }
  vps_smtp_ptr_lookup (conn, run_connect);
  if (!conn->busy)
    vps_smtp_conn_flush (conn);
}

void
vps_smtp_session_timeout (VpsSmtpConn *conn)
{
  if (conn->phase == PHASE_HANDSHAKE)
    {
      vps_notice (vps_smtp_conn_id (conn), "smtp: TLS handshake timeout");
      vps_smtp_conn_close (conn);
      return;
    }
  vps_notice (vps_smtp_conn_id (conn), "smtp: timeout %s",
              conn->phase == PHASE_DATA || conn->phase == PHASE_BDAT ? "in data"
                                                                     : "waiting for a command");
  vps_smtp_message_abort (conn);
  vps_smtp_conn_printf (conn, "421 4.4.2 %s Error: timeout exceeded\r\n", conn->setup->hostname);
  vps_stream_close_after_flush (conn->stream);
  vps_smtp_conn_flush (conn);
}

/* ---- transaction state ----------------------------------------------------- */

void
vps_smtp_session_reset_txn (VpsSmtpConn *conn)
{
  vps_smtp_message_abort (conn);
  conn->mail_seen = FALSE;
  conn->smtputf8 = FALSE;
  conn->bdat_seen = FALSE;
  conn->discard = FALSE;
  conn->rcpt_attempts = 0;
  g_clear_pointer (&conn->mail, smtp_command_free);
  g_clear_pointer (&conn->pending, smtp_command_free);
  g_ptr_array_set_size (conn->rcpt_cmds, 0);
  g_clear_pointer (&conn->txn, vps_txn_unref);
  conn->txn = vps_txn_new (conn->session);
}

/* A discard or quarantine verdict before data: remembered, applied at the
 * end of data (the client still gets its 250s). */
static void
note_verdict (VpsSmtpConn *conn, VpsStageResult *result)
{
  if (result != NULL && result->verdict == RULES_VERDICT_DISCARD)
    conn->discard = TRUE;
}

/* ---- HELO / EHLO ------------------------------------------------------------ */

static void
helo_done (VpsSmtpConn *conn, VpsStageResult *result)
{
  g_autoptr (MailReply) reply = vps_smtp_session_verdict_reply (conn, result);
  gboolean tls_offer, auth_offer;

  if (reply != NULL)
    {
      vps_smtp_session_error_reply (conn, reply);
      if (result->verdict == RULES_VERDICT_TEMPFAIL && result->code == 421)
        vps_stream_close_after_flush (conn->stream);
      return;
    }
  note_verdict (conn, result);
  conn->helo_seen = TRUE;
  conn->esmtp = conn->pending_esmtp;
  if (!conn->esmtp)
    {
      vps_smtp_conn_printf (conn, "250 %s\r\n", conn->setup->hostname);
      return;
    }
  tls_offer = conn->setup->tls[conn->role] != NULL && conn->tls == NULL;
  auth_offer = conn->setup->passwd != NULL && !conn->authenticated
               && (conn->tls != NULL || conn->auth_over_plaintext);
  vps_smtp_conn_printf (conn,
                        "250-%s\r\n"
                        "250-PIPELINING\r\n"
                        "250-SIZE %" G_GUINT64_FORMAT "\r\n"
                        "%s%s"
                        "250-ENHANCEDSTATUSCODES\r\n"
                        "250-8BITMIME\r\n"
                        "250-DSN\r\n"
                        "250-SMTPUTF8\r\n"
                        "250 CHUNKING\r\n",
                        conn->setup->hostname, conn->max_message_size,
                        tls_offer ? "250-STARTTLS\r\n" : "",
                        auth_offer ? "250-AUTH PLAIN LOGIN\r\n" : "");
}

static void
do_helo (VpsSmtpConn *conn, SmtpCommand *cmd)
{
  /* HELO/EHLO is an implicit RSET (RFC 5321 §4.1.4) */
  vps_smtp_session_reset_txn (conn);
  vps_session_set_helo (conn->session, cmd->arg);
  conn->pending_esmtp = cmd->verb == SMTP_CMD_EHLO;
  vps_smtp_session_run_stage (conn, RULES_STAGE_HELO, helo_done);
}

/* ---- MAIL ------------------------------------------------------------------- */

static gboolean
known_params (VpsSmtpConn *conn, const SmtpCommand *cmd, const char *const *allowed)
{
  for (guint i = 0; cmd->params != NULL && i < mail_params_get_n (cmd->params); i++)
    {
      const char *kw = mail_params_get_keyword (cmd->params, i);

      if (!g_strv_contains (allowed, kw))
        {
          vps_smtp_session_error (conn, "555 5.5.4 Unsupported option\r\n");
          return FALSE;
        }
    }
  return TRUE;
}

/* "KEYWORD=value" strings for the engine (mail.param, connectors). */
static char **
param_strings (const SmtpCommand *cmd)
{
  guint n = cmd->params ? mail_params_get_n (cmd->params) : 0;
  char **v = g_new0 (char *, n + 1);

  for (guint i = 0; i < n; i++)
    {
      const char *value = mail_params_get_value (cmd->params, i);

      v[i] = value ? g_strdup_printf ("%s=%s", mail_params_get_keyword (cmd->params, i), value)
                   : g_strdup (mail_params_get_keyword (cmd->params, i));
    }
  return v;
}

static void
mail_done (VpsSmtpConn *conn, VpsStageResult *result)
{
  g_autoptr (MailReply) reply = vps_smtp_session_verdict_reply (conn, result);

  if (reply != NULL)
    {
      g_clear_pointer (&conn->pending, smtp_command_free);
      vps_smtp_session_error_reply (conn, reply);
      return;
    }
  note_verdict (conn, result);
  conn->mail = g_steal_pointer (&conn->pending);
  conn->mail_seen = TRUE;
  conn->smtputf8 = conn->mail->smtputf8;
  vps_smtp_conn_write (conn, "250 2.1.0 Ok\r\n", 14);
  vps_metrics_count_transaction (VPS_METRICS_FRONTEND_SMTP); /* issue 10: metrics */
}

static void
do_mail (VpsSmtpConn *conn, SmtpCommand *cmd)
{
  static const char *const allowed[] = { "SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH", NULL };
  g_auto (GStrv) params = NULL;

  if (!conn->helo_seen)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: send HELO/EHLO first\r\n");
      return;
    }
  if (conn->role != VPS_SMTP_ROLE_MX && !conn->authenticated)
    {
      vps_smtp_session_error (conn, "530 5.7.0 Authentication required\r\n");
      return;
    }
  if (conn->mail_seen)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: nested MAIL command\r\n");
      return;
    }
  if (!known_params (conn, cmd, allowed))
    return;
  if (cmd->size > conn->max_message_size)
    {
      error_default (conn, MAIL_REPLY_MESSAGE_TOO_BIG);
      return;
    }
  if (!vps_queue_has_space (conn->server->queue, conn->min_free + cmd->size))
    {
      vps_log_once ("vsmtpd-queue-space", 60, G_LOG_LEVEL_WARNING, vps_smtp_conn_id (conn),
                    "smtp: queue file system below [queue] min_free");
      error_default (conn, MAIL_REPLY_INSUFFICIENT_STORAGE);
      return;
    }
  vps_smtp_session_reset_txn (conn);
  params = param_strings (cmd);
  vps_txn_set_sender (conn->txn, mail_path_get_address (cmd->path), (const char *const *)params);
  conn->pending = cmd;
  vps_smtp_session_run_stage (conn, RULES_STAGE_MAIL, mail_done);
}

/* ---- RCPT ------------------------------------------------------------------- */

static void
rcpt_done (VpsSmtpConn *conn, VpsStageResult *result)
{
  g_autoptr (MailReply) reply = vps_smtp_session_verdict_reply (conn, result);

  if (reply != NULL)
    {
      g_clear_pointer (&conn->pending, smtp_command_free);
      vps_smtp_session_error_reply (conn, reply);
      return;
    }
  note_verdict (conn, result);
  vps_txn_accept_rcpt (conn->txn);
  g_ptr_array_add (conn->rcpt_cmds, g_steal_pointer (&conn->pending));
  vps_smtp_conn_write (conn, "250 2.1.5 Ok\r\n", 14);
}

static void
do_rcpt (VpsSmtpConn *conn, SmtpCommand *cmd)
{
  static const char *const allowed[] = { "NOTIFY", "ORCPT", NULL };
  g_auto (GStrv) params = NULL;

  if (!conn->mail_seen)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: need MAIL command\r\n");
      return;
    }
  if (conn->bdat_seen)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: RCPT after BDAT\r\n");
      return;
    }
  if (!known_params (conn, cmd, allowed))
    return;
  if (conn->rcpt_cmds->len >= conn->max_recipients)
    {
      /* RFC 5321 §4.5.3.1.8: 452, the client sends the rest later */
      reply_default (conn, MAIL_REPLY_TOO_MANY_RCPTS);
      return;
    }
  conn->rcpt_attempts++;
  params = param_strings (cmd);
  vps_txn_set_rcpt (conn->txn, mail_path_get_address (cmd->path), (const char *const *)params);
  conn->pending = cmd;
  vps_smtp_session_run_stage (conn, RULES_STAGE_RCPT, rcpt_done);
}

/* ---- DATA / BDAT ------------------------------------------------------------ */

static gboolean
data_ready (VpsSmtpConn *conn, const char *verb)
{
  if (!conn->mail_seen)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: need MAIL command\r\n");
      return FALSE;
    }
  if (conn->rcpt_cmds->len == 0)
    {
      /* as Postfix: no RCPT at all, or only refused ones */
      vps_smtp_session_error (conn, conn->rcpt_attempts == 0
                                        ? "503 5.5.1 Error: need RCPT command\r\n"
                                        : "554 5.5.1 Error: no valid recipients\r\n");
      return FALSE;
    }
  return TRUE;
}

static void
do_data (VpsSmtpConn *conn, gboolean more_input)
{
  if (!data_ready (conn, "DATA"))
    return;
  if (conn->bdat_seen)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: DATA after BDAT\r\n");
      return;
    }
  if (more_input)
    {
      /* content before the 354: a client that does not wait (RFC 2920
       * §3.1: DATA ends a group) — or a smuggling attempt */
      vps_notice (vps_smtp_conn_id (conn), "smtp: improper pipelining after DATA");
      vps_smtp_conn_write (conn, "554 5.5.0 Error: SMTP protocol synchronization\r\n", 48);
      vps_stream_close_after_flush (conn->stream);
      return;
    }
  if (!vps_smtp_message_begin (conn))
    return;
  vps_smtp_conn_write (conn, "354 End data with <CR><LF>.<CR><LF>\r\n", 37);
  conn->phase = PHASE_DATA;
  vps_smtp_conn_set_deadline (conn, conn->data_timeout);
}

static void
do_bdat (VpsSmtpConn *conn, SmtpCommand *cmd)
{
  if (!conn->bdat_seen)
    {
      if (!data_ready (conn, "BDAT"))
        {
          /* the chunk still comes: swallow it (RFC 3030 §4.2) */
          conn->bdat_left = cmd->chunk_size;
          conn->bdat_last = cmd->last;
          conn->bdat_discarding = TRUE;
          conn->phase = PHASE_BDAT;
          return;
        }
      if (!vps_smtp_message_begin (conn))
        {
          conn->bdat_left = cmd->chunk_size;
          conn->bdat_discarding = TRUE;
          conn->phase = PHASE_BDAT;
          return;
        }
      conn->bdat_seen = TRUE;
    }
  conn->bdat_left = cmd->chunk_size;
  conn->bdat_last = cmd->last;
  conn->phase = PHASE_BDAT;
  vps_smtp_conn_set_deadline (conn, conn->data_timeout);
}

/* ---- STARTTLS ---------------------------------------------------------------- */

static void
do_starttls (VpsSmtpConn *conn)
{
  if (conn->tls != NULL)
    {
      vps_smtp_session_error (conn, "554 5.5.1 Error: TLS already active\r\n");
      return;
    }
  if (conn->setup->tls[conn->role] == NULL)
    {
      vps_smtp_session_error (conn, "502 5.5.1 Error: command not implemented\r\n");
      return;
    }
  vps_smtp_conn_write (conn, "220 2.0.0 Ready to start TLS\r\n", 30);
  conn->starttls = TRUE;
}

void
vps_smtp_session_tls_ready (VpsSmtpConn *conn)
{
  g_autofree char *subject = vps_tls_conn_dup_peer_subject (conn->tls);
  const char *version = vps_tls_conn_get_version (conn->tls);
  const char *cipher = vps_tls_conn_get_cipher (conn->tls);

  vps_info (vps_smtp_conn_id (conn), "smtp: TLS %s %s%s%s", version, cipher,
            vps_tls_conn_get_sni (conn->tls) ? " sni=" : "",
            vps_tls_conn_get_sni (conn->tls) ? vps_tls_conn_get_sni (conn->tls) : "");
  vps_session_set_tls (conn->session, TRUE, version, cipher, subject);
  vps_smtp_conn_set_deadline (conn, 0);
  /* RFC 3207 §4.2: forget everything learnt before TLS */
  conn->helo_seen = FALSE;
  conn->esmtp = FALSE;
  vps_session_set_helo (conn->session, NULL);
  vps_smtp_session_reset_txn (conn);
  if (conn->role == VPS_SMTP_ROLE_SUBMISSIONS && !conn->greeted)
    {
      conn->greeted = TRUE;
      conn->phase = PHASE_CONNECT;
      vps_smtp_ptr_lookup (conn, run_connect);
      if (!conn->busy)
        vps_smtp_conn_flush (conn);
      return;
    }
  conn->phase = PHASE_COMMAND;
  vps_smtp_conn_end_async (conn);
  vps_smtp_conn_flush (conn);
}

/* ---- dispatch ------------------------------------------------------------------ */

static void
do_command (VpsSmtpConn *conn, const char *line, gsize len, gboolean more_input)
{
  g_autoptr (GError) error = NULL;
  SmtpParseFlags flags = SMTP_PARSE_LENIENT | (conn->esmtp ? SMTP_PARSE_ESMTP : 0);
  SmtpCommand *cmd = smtp_command_parse (line, len, flags, conn->smtputf8, &error);

  if (cmd == NULL)
    {
      vps_smtp_session_parse_error (conn, error);
      return;
    }
  /* RFC 2920: without EHLO the client may not pipeline at all */
  if (more_input && !conn->esmtp && cmd->verb != SMTP_CMD_QUIT)
    {
      vps_notice (vps_smtp_conn_id (conn), "smtp: improper pipelining after %s",
                  smtp_verb_name (cmd->verb));
      vps_smtp_conn_write (conn, "554 5.5.0 Error: SMTP protocol synchronization\r\n", 48);
      vps_stream_close_after_flush (conn->stream);
      smtp_command_free (cmd);
      return;
    }
  switch (cmd->verb)
    {
      case SMTP_CMD_HELO:
      case SMTP_CMD_EHLO:
        do_helo (conn, cmd);
        break;
      case SMTP_CMD_MAIL:
        do_mail (conn, cmd); /* takes cmd when it runs the stage */
        if (conn->pending == cmd || conn->mail == cmd)
          return;
        break;
      case SMTP_CMD_RCPT:
        do_rcpt (conn, cmd);
        if (conn->pending == cmd
            || (conn->rcpt_cmds->len > 0
                && g_ptr_array_index (conn->rcpt_cmds, conn->rcpt_cmds->len - 1) == cmd))
          return;
        break;
      case SMTP_CMD_DATA:
        do_data (conn, more_input);
        break;
      case SMTP_CMD_BDAT:
        do_bdat (conn, cmd);
        break;
      case SMTP_CMD_RSET:
        vps_smtp_session_reset_txn (conn);
        vps_smtp_conn_write (conn, "250 2.0.0 Ok\r\n", 14);
        break;
      case SMTP_CMD_NOOP:
        vps_smtp_conn_write (conn, "250 2.0.0 Ok\r\n", 14);
        break;
      case SMTP_CMD_QUIT:
        vps_smtp_conn_write (conn, "221 2.0.0 Bye\r\n", 15);
        vps_stream_close_after_flush (conn->stream);
        break;
      case SMTP_CMD_VRFY:
        if (conn->vrfy_disabled)
          vps_smtp_session_error (conn, "502 5.5.1 VRFY command is disabled\r\n");
        else
          vps_smtp_conn_write (conn, "252 2.0.0 Cannot VRFY user, but will accept message\r\n", 53);
        break;
      case SMTP_CMD_EXPN:
        vps_smtp_session_error (conn, "502 5.5.1 EXPN command is disabled\r\n");
        break;
      case SMTP_CMD_HELP:
        vps_smtp_conn_write (conn,
                             "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT "
                             "VRFY HELP STARTTLS AUTH\r\n",
                             90);
        break;
      case SMTP_CMD_STARTTLS:
        do_starttls (conn);
        break;
      case SMTP_CMD_AUTH:
        vps_smtp_auth_command (conn, cmd);
        break;
      default:
        error_default (conn, MAIL_REPLY_UNKNOWN_COMMAND);
        break;
    }
  smtp_command_free (cmd);
}

static void
bare_newline (VpsSmtpConn *conn)
{
  vps_notice (vps_smtp_conn_id (conn), "smtp: bare <LF> received, closing");
  vps_smtp_conn_printf (conn, "521 5.5.2 %s Error: bare <LF> received\r\n", conn->setup->hostname);
  vps_stream_close_after_flush (conn->stream);
}

void
vps_smtp_session_process (VpsSmtpConn *conn)
{
  while (!conn->closed && !conn->busy && !vps_stream_is_closing (conn->stream) && !conn->starttls)
    {
      if (conn->phase == PHASE_DATA || conn->phase == PHASE_BDAT)
        {
          gboolean progressed = vps_smtp_message_feed (conn);

          if (!progressed)
            break;
          continue;
        }
      if (conn->phase != PHASE_COMMAND && conn->phase != PHASE_AUTH)
        break;
      {
        const char *line = NULL;
        gsize line_len = 0, consumed = 0;
        SmtpLineStatus st = smtp_line_reader_next (&conn->reader, conn->in->data, conn->in->len,
                                                   SMTP_MAX_LINE - 2, &consumed, &line, &line_len);
        g_autofree char *copy = NULL;
        gboolean more;

        if (st == SMTP_LINE_NEED_MORE)
          {
            if (consumed > 0)
              g_byte_array_remove_range (conn->in, 0, (guint)consumed);
            /* the whole next command must come within command_timeout */
            if (conn->deadline == 0)
              vps_smtp_conn_set_deadline (conn, conn->command_timeout);
            break;
          }
        if (st == SMTP_LINE_BARE_LF && conn->bare == SMTP_BARE_REJECT)
          {
            bare_newline (conn);
            break;
          }
        /* g_strndup stops at a NUL: a shorter copy means the line had one */
        copy = st == SMTP_LINE_TOO_LONG ? NULL : g_strndup (line, line_len);
        g_byte_array_remove_range (conn->in, 0, (guint)consumed);
        more = conn->in->len > 0;
        conn->deadline = 0;
        if (st == SMTP_LINE_TOO_LONG)
          {
            vps_smtp_session_error (conn, "500 5.5.2 Error: line too long\r\n");
            continue;
          }
        if (conn->phase == PHASE_AUTH)
          {
            if (strlen (copy) != line_len)
              {
                conn->phase = PHASE_COMMAND;
                conn->auth_step = AUTH_STEP_NONE;
                vps_smtp_session_error (conn, "501 5.5.2 Cannot decode response\r\n");
                continue;
              }
            vps_smtp_auth_response (conn, copy);
            continue;
          }
        if (strlen (copy) != line_len)
          {
            vps_smtp_session_error (conn, "500 5.5.2 Error: NUL in command\r\n");
            continue;
          }
        do_command (conn, copy, line_len, more);
      }
    }
  if (conn->starttls && !conn->closed)
    {
      conn->starttls = FALSE;
      vps_smtp_conn_flush (conn);
      if (conn->closed)
        return;
      if (conn->out->len > 0)
        {
          /* 30 bytes did not fit the socket: nothing sane to do */
          vps_smtp_conn_close (conn);
          return;
        }
      vps_smtp_conn_start_tls (conn);
    }
}
