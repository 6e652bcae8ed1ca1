/* SPDX-License-Identifier: MIT
 *
 * smtp-auth.c — vsmtpd's AUTH (RFC 4954) with the PLAIN (RFC 4616) and
 * LOGIN mechanisms against the password file (mta/auth.h), and the `auth`
 * stage of the rules that follows every attempt.
 *
 * Contract (smtp-private.h): AUTH is offered and accepted only after EHLO,
 * outside a transaction, once per session, and over TLS unless [vsmtpd]
 * auth_over_plaintext says otherwise (538 5.7.11).  The password check runs
 * off the worker (crypt is slow on purpose); a failure is answered after
 * auth_failure_delay and counts as an error; the auth stage sees the result
 * (client.authenticated, auth.user) and may still refuse a success.
 * Passwords are wiped after use and never logged; user names are logged
 * only once authenticated.
 */
#include "mta/smtp-private.h"

#include <string.h>

#include "vps/log.h"

/* ---- AUTH -------------------------------------------------------------------- */

static void
auth_stage_done (VpsSmtpConn *conn, VpsStageResult *result)
{
  g_autoptr (MailReply) reply = vps_smtp_session_verdict_reply (conn, result);

  if (conn->auth_ok && reply == NULL)
    {
      conn->authenticated = TRUE;
      vps_info (vps_smtp_conn_id (conn), "smtp: authenticated user=%s mechanism=%s",
                conn->auth_user, conn->auth_mechanism);
      vps_smtp_conn_write (conn, "235 2.7.0 Authentication successful\r\n", 37);
      return;
    }
  /* a refused success is not a success */
  vps_session_set_auth (conn->session, FALSE, conn->auth_user, conn->auth_mechanism);
  if (reply != NULL)
    {
      vps_smtp_session_error_reply (conn, reply);
      return;
    }
  vps_notice (vps_smtp_conn_id (conn), "smtp: authentication failed mechanism=%s",
              conn->auth_mechanism);
  conn->errors++;
  if (conn->errors >= conn->max_errors)
    {
      vps_smtp_conn_printf (conn, "421 4.7.0 %s Error: too many errors\r\n", conn->setup->hostname);
      vps_stream_close_after_flush (conn->stream);
      return;
    }
  /* slow down password guessing; the reply comes after the delay */
  vps_smtp_conn_reply_later (conn, g_strdup ("535 5.7.8 Error: authentication failed\r\n"),
                             conn->auth_failure_delay, FALSE);
}

static void
auth_checked (GObject *source, GAsyncResult *res, gpointer data)
{
  VpsSmtpConn *conn = data;

  conn->auth_ok = vps_passwd_file_check_finish (conn->setup->passwd, res);
  if (!conn->closed)
    {
      vps_session_set_auth (conn->session, conn->auth_ok, conn->auth_user, conn->auth_mechanism);
      conn->busy = FALSE;
      vps_smtp_session_run_stage (conn, RULES_STAGE_AUTH, auth_stage_done);
      if (!conn->busy)
        vps_smtp_conn_end_async (conn);
    }
  vps_smtp_conn_unref (conn);
}

static void
auth_check (VpsSmtpConn *conn, char *user, char *password)
{
  conn->auth_step = AUTH_STEP_NONE;
  conn->phase = PHASE_COMMAND;
  g_free (conn->auth_user);
  conn->auth_user = user;
  vps_smtp_conn_begin_async (conn);
  vps_passwd_file_check_async (conn->setup->passwd, user, password, conn->cancellable, auth_checked,
                               vps_smtp_conn_ref (conn));
  memset (password, 0, strlen (password));
  g_free (password);
}

/* A PLAIN response, or a LOGIN user name / password. */
void
vps_smtp_auth_response (VpsSmtpConn *conn, const char *line)
{
  g_autoptr (GError) error = NULL;

  if (strcmp (line, "*") == 0)
    {
      conn->auth_step = AUTH_STEP_NONE;
      conn->phase = PHASE_COMMAND;
      vps_smtp_session_error (conn, "501 5.7.0 Authentication aborted\r\n");
      return;
    }
  switch (conn->auth_step)
    {
      case AUTH_STEP_PLAIN:
        {
          g_autofree char *authzid = NULL;
          char *authcid = NULL, *password = NULL;

          if (!smtp_sasl_plain_decode (line, &authzid, &authcid, &password, &error))
            break;
          /* no proxy authorisation: authzid must be empty or the same user */
          if (authzid[0] != '\0' && strcmp (authzid, authcid) != 0)
            {
              g_free (authcid);
              g_free (password);
              conn->auth_step = AUTH_STEP_NONE;
              conn->phase = PHASE_COMMAND;
              vps_smtp_session_error (conn, "535 5.7.8 Error: authentication failed\r\n");
              return;
            }
          auth_check (conn, authcid, password);
          return;
        }
      case AUTH_STEP_LOGIN_USER:
        {
          char *user = smtp_sasl_base64_field (line, &error);

          if (user == NULL)
            break;
          g_free (conn->auth_user);
          conn->auth_user = user;
          conn->auth_step = AUTH_STEP_LOGIN_PASS;
          vps_smtp_conn_write (conn, "334 UGFzc3dvcmQ6\r\n", 18);
          return;
        }
      case AUTH_STEP_LOGIN_PASS:
        {
          char *password = smtp_sasl_base64_field (line, &error);

          if (password == NULL)
            break;
          auth_check (conn, g_steal_pointer (&conn->auth_user), password);
          return;
        }
      case AUTH_STEP_NONE:
      default:
        break;
    }
  conn->auth_step = AUTH_STEP_NONE;
  conn->phase = PHASE_COMMAND;
  if (error != NULL)
    vps_smtp_session_parse_error (conn, error);
}

void
vps_smtp_auth_command (VpsSmtpConn *conn, SmtpCommand *cmd)
{
  if (conn->setup->passwd == NULL)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: authentication not enabled\r\n");
      return;
    }
  if (!conn->helo_seen || !conn->esmtp)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: send EHLO first\r\n");
      return;
    }
  if (conn->authenticated)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: already authenticated\r\n");
      return;
    }
  if (conn->mail_seen)
    {
      vps_smtp_session_error (conn, "503 5.5.1 Error: MAIL transaction in progress\r\n");
      return;
    }
  if (conn->tls == NULL && !conn->auth_over_plaintext)
    {
      vps_smtp_session_error (
          conn, "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
      return;
    }
  g_free (conn->auth_mechanism);
  conn->auth_mechanism = g_strdup (cmd->mechanism);
  conn->phase = PHASE_AUTH;
  if (strcmp (cmd->mechanism, "PLAIN") == 0)
    {
      conn->auth_step = AUTH_STEP_PLAIN;
      if (cmd->initial_response != NULL)
        vps_smtp_auth_response (
            conn, strcmp (cmd->initial_response, "=") == 0 ? "" : cmd->initial_response);
      else
        vps_smtp_conn_write (conn, "334 \r\n", 6);
      return;
    }
  if (strcmp (cmd->mechanism, "LOGIN") == 0)
    {
      conn->auth_step = AUTH_STEP_LOGIN_USER;
      if (cmd->initial_response != NULL)
        vps_smtp_auth_response (conn, cmd->initial_response);
      else
        vps_smtp_conn_write (conn, "334 VXNlcm5hbWU6\r\n", 18);
      return;
    }
  conn->phase = PHASE_COMMAND;
  vps_smtp_session_error (conn, "504 5.5.4 Unsupported authentication mechanism\r\n");
}
