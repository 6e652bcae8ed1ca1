/* SPDX-License-Identifier: MIT
 *
 * smtp-out-session.c — the client's SMTP state machine around the
 * transaction (smtp-out-txn.c): greeting, EHLO (HELO on 5xx), STARTTLS per
 * policy (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954), RSET, QUIT, and what a
 * transport failure means for the job.  RFC 5321 §3, §4.1, §4.3.2 (the
 * replies each command allows).
 *
 * Contract (smtp-out-private.h): replies arrive one at a time, complete,
 * in order.  Every state handles every reply code; a reply where none is
 * due is a protocol error that ends the connection, never a guess.  The
 * job is completed last in every handler, after the connection's own
 * state is settled (completing may run the caller's callback, which may
 * start the next message on this very connection).
 */
#include "mta/smtp-out-private.h"

#include <string.h>

#include "vps/log.h"

static void after_ehlo (SmtpOutConn *conn);

static const char *
log_id (SmtpOutConn *conn)
{
  return smtp_out_log_id (conn->job);
}

/* Take the job off the connection before the connection is written to
 * for the last time on its behalf: a write that fails reports to the
 * job attached, and this job is about to be completed here. */
SmtpOutJob *
smtp_out_detach_job (SmtpOutConn *conn)
{
  SmtpOutJob *job = conn->job;

  if (job != NULL)
    {
      conn->job = NULL;
      job->conn = NULL;
    }
  return job;
}

gboolean
smtp_out_is_2xx (guint code)
{
  return code >= 200 && code < 300;
}

/* The session facts a result reports, from the connection that ran it. */
void
smtp_out_fill_session_info (SmtpOutConn *conn, SmtpOutJob *job)
{
  VpsSmtpOutResult *r = job->result;

  g_free (r->server_greeting);
  r->server_greeting = g_strdup (conn->greeting);
  r->esmtp = conn->esmtp;
  r->dsn = (conn->ehlo.ext & SMTP_EXT_DSN) != 0;
  r->tls = conn->tls_up;
  r->tls_verified = r->tls && conn->tls_verified;
  g_free (r->tls_version);
  g_free (r->tls_cipher);
  r->tls_version = r->tls ? g_strdup (vps_tls_client_conn_get_version (conn->tls)) : NULL;
  r->tls_cipher = r->tls ? g_strdup (vps_tls_client_conn_get_cipher (conn->tls)) : NULL;
}

/* Every undecided recipient gets the same outcome. */
void
smtp_out_decide_rest (SmtpOutJob *job, VpsSmtpOutVerdict verdict, const MailReply *reply,
                      const char *enhanced, const char *text, const char *phase)
{
  for (guint i = 0; i < job->n_rcpts; i++)
    {
      if (job->state[i] == SMTP_OUT_RCPT_DONE)
        continue;
      if (reply != NULL)
        {
          smtp_out_rcpt_set_reply (job, i, reply, phase);
          /* a session-level refusal defers whatever the class (the next
           * MX may take the mail) */
          job->result->rcpts[i].verdict = verdict;
        }
      else
        smtp_out_rcpt_set (job, i, verdict, 0, enhanced, text, phase, TRUE);
    }
}

/* The server refused the session before any transaction (greeting,
 * EHLO/HELO, STARTTLS, AUTH) or a local reason forbids going on: the
 * recipients are deferred, the next MX is worth a try, the connection
 * ends.  reply NULL: a local decision with enhanced and text. */
static void
refuse_session (SmtpOutConn *conn, const MailReply *reply, VpsSmtpOutTransport transport,
                const char *enhanced, const char *text)
{
  SmtpOutJob *job = smtp_out_detach_job (conn);
  const char *phase = smtp_out_phase_step (conn->phase);

  if (reply != NULL)
    {
      g_autofree char *rt = mail_reply_get_text (reply);
      vps_info (smtp_out_log_id (job), "smtp-out: %s refused the session while %s: %u %s",
                conn->remote, smtp_out_phase_doing (conn->phase), mail_reply_get_code (reply), rt);
    }
  else
    vps_info (smtp_out_log_id (job), "smtp-out: %s", text);

  if (job != NULL)
    smtp_out_fill_session_info (conn, job);
  /* a 421 means the server closes anyway: no QUIT */
  if (reply != NULL && mail_reply_get_code (reply) == 421)
    smtp_out_conn_close (conn);
  else
    smtp_out_conn_quit (conn);
  if (job == NULL)
    return;
  smtp_out_decide_rest (job, VPS_SMTP_OUT_DEFER, reply, enhanced, text, phase);
  job->result->transport = transport;
  job->result->try_next = TRUE;
  if (transport != VPS_SMTP_OUT_TRANSPORT_OK)
    {
      g_free (job->result->error);
      job->result->error = g_strdup (text);
    }
  smtp_out_job_complete (job);
}

void
smtp_out_protocol_error (SmtpOutConn *conn, const MailReply *reply)
{
  g_autofree char *text = mail_reply_get_text (reply);

  smtp_out_conn_fail (conn, VPS_SMTP_OUT_TRANSPORT_PROTOCOL,
                      "unexpected reply from %s while %s: %u %s", conn->remote,
                      smtp_out_phase_doing (conn->phase), mail_reply_get_code (reply), text);
}

/* ---- greeting, EHLO, HELO --------------------------------------------------------- */

void
smtp_out_session_connected (SmtpOutConn *conn)
{
  conn->state = SMTP_OUT_GREETING;
  smtp_out_conn_set_timer (conn, conn->out->t.greeting, SMTP_OUT_PHASE_GREETING);
}

static void
send_hello (SmtpOutConn *conn, const char *verb, SmtpOutState state)
{
  g_autofree char *line = g_strdup_printf ("%s %s\r\n", verb, conn->out->helo_name);

  conn->state = state;
  smtp_out_conn_set_timer (conn, conn->out->t.helo, SMTP_OUT_PHASE_EHLO);
  smtp_out_conn_send_str (conn, line);
}

static void
on_greeting (SmtpOutConn *conn, MailReply *reply)
{
  guint code = mail_reply_get_code (reply);

  if (!smtp_out_is_2xx (code))
    {
      refuse_session (conn, reply, VPS_SMTP_OUT_TRANSPORT_OK, NULL, NULL);
      return;
    }
  g_free (conn->greeting);
  conn->greeting = g_strdup (mail_reply_get_line (reply, 0));
  send_hello (conn, "EHLO", SMTP_OUT_EHLO);
}

static void
on_ehlo (SmtpOutConn *conn, MailReply *reply)
{
  guint code = mail_reply_get_code (reply);

  if (code >= 500 && code != 521 && conn->tls == NULL)
    {
      /* RFC 5321 §3.2: a server that does not know EHLO gets HELO (a 5xx
       * after STARTTLS is a refusal: HELO would lose the TLS facts) */
      send_hello (conn, "HELO", SMTP_OUT_HELO);
      return;
    }
  if (!smtp_out_is_2xx (code))
    {
      refuse_session (conn, reply, VPS_SMTP_OUT_TRANSPORT_OK, NULL, NULL);
      return;
    }
  /* a 2xx other than 250 has no extension list we can trust */
  if (!smtp_ehlo_parse (reply, &conn->ehlo, NULL))
    memset (&conn->ehlo, 0, sizeof conn->ehlo);
  conn->esmtp = TRUE;
  after_ehlo (conn);
}

static void
on_helo (SmtpOutConn *conn, MailReply *reply)
{
  if (!smtp_out_is_2xx (mail_reply_get_code (reply)))
    {
      refuse_session (conn, reply, VPS_SMTP_OUT_TRANSPORT_OK, NULL, NULL);
      return;
    }
  memset (&conn->ehlo, 0, sizeof conn->ehlo);
  conn->esmtp = FALSE;
  after_ehlo (conn);
}

/* ---- STARTTLS ----------------------------------------------------------------------- */

static void
on_starttls (SmtpOutConn *conn, MailReply *reply)
{
  guint code = mail_reply_get_code (reply);

  if (code == 220)
    {
      smtp_out_conn_start_tls (conn);
      return;
    }
  if (conn->policy == VPS_SMTP_OUT_TLS_MAY && code != 421)
    {
      g_autofree char *text = mail_reply_get_text (reply);

      /* RFC 3207 §4: the client may go on without TLS */
      vps_info (log_id (conn), "smtp-out: %s refused STARTTLS (%u %s): going on in plaintext",
                conn->remote, code, text);
      conn->plaintext = TRUE;
      after_ehlo (conn);
      return;
    }
  if (conn->policy == VPS_SMTP_OUT_TLS_MAY)
    {
      refuse_session (conn, reply, VPS_SMTP_OUT_TRANSPORT_OK, NULL, NULL);
      return;
    }
  {
    g_autofree char *rt = mail_reply_get_text (reply);
    g_autofree char *text = g_strdup_printf (
        "TLS is required, but host %s refused to start TLS: %u %s", conn->remote, code, rt);

    refuse_session (conn, NULL, VPS_SMTP_OUT_TRANSPORT_TLS_FAILED, "4.7.5", text);
  }
}

void
smtp_out_session_tls_done (SmtpOutConn *conn)
{
  /* RFC 3207 §4.2: everything learnt before TLS is forgotten */
  memset (&conn->ehlo, 0, sizeof conn->ehlo);
  send_hello (conn, "EHLO", SMTP_OUT_EHLO);
}

void
smtp_out_session_tls_failed (SmtpOutConn *conn, const GError *error)
{
  SmtpOutJob *job = smtp_out_detach_job (conn);
  gboolean verify = g_error_matches (error, VPS_TLS_CLIENT_ERROR, VPS_TLS_CLIENT_ERROR_VERIFY);
  g_autofree char *text = NULL;

  text = g_strdup_printf ("%s with %s: %s",
                          verify ? "Server certificate not verified" : "Cannot start TLS",
                          conn->remote, error->message);
  vps_info (smtp_out_log_id (job), "smtp-out: %s", text);
  /* the session is unusable after a failed handshake */
  smtp_out_conn_close (conn);
  if (job == NULL)
    return;
  if (conn->policy == VPS_SMTP_OUT_TLS_MAY && !job->plaintext)
    {
      /* Postfix's opportunistic TLS: the same address again, in plaintext */
      vps_info (job->log_id, "smtp-out: retrying %s without TLS", conn->remote);
      smtp_out_job_restart (job, TRUE);
      return;
    }
  smtp_out_decide_rest (job, VPS_SMTP_OUT_DEFER, NULL, "4.7.5", text, "STARTTLS");
  job->result->transport = VPS_SMTP_OUT_TRANSPORT_TLS_FAILED;
  job->result->try_next = TRUE;
  g_free (job->result->error);
  job->result->error = g_strdup (text);
  smtp_out_job_complete (job);
}

/* ---- AUTH (RFC 4954) ---------------------------------------------------------------- */

static void
send_secret (SmtpOutConn *conn, char *line)
{
  smtp_out_conn_send_str (conn, line);
  smtp_out_wipe (line);
}

static void
start_auth (SmtpOutConn *conn)
{
  SmtpOutJob *job = conn->job;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;

  if (conn->tls == NULL)
    {
      text = g_strdup_printf ("refusing to send AUTH credentials to %s without TLS", conn->remote);
      refuse_session (conn, NULL, VPS_SMTP_OUT_TRANSPORT_OK, "4.7.0", text);
      return;
    }
  conn->state = SMTP_OUT_AUTH;
  smtp_out_conn_set_timer (conn, conn->out->t.auth, SMTP_OUT_PHASE_AUTH);
  if ((conn->ehlo.auth & SMTP_AUTH_MECH_PLAIN) != 0)
    {
      char *line = smtp_out_auth_plain (job->auth_user, job->auth_password, &error);

      if (line == NULL)
        {
          text = g_strdup_printf ("AUTH to %s: %s", conn->remote, error->message);
          refuse_session (conn, NULL, VPS_SMTP_OUT_TRANSPORT_OK, "4.7.0", text);
          return;
        }
      conn->auth_step = 0;
      send_secret (conn, line);
      return;
    }
  if ((conn->ehlo.auth & SMTP_AUTH_MECH_LOGIN) != 0)
    {
      conn->auth_step = 1;
      smtp_out_conn_send_str (conn, "AUTH LOGIN\r\n");
      return;
    }
  text = g_strdup_printf ("no AUTH mechanism in common with %s (we have PLAIN and LOGIN)",
                          conn->remote);
  refuse_session (conn, NULL, VPS_SMTP_OUT_TRANSPORT_OK, "4.7.0", text);
}

static void
on_auth (SmtpOutConn *conn, MailReply *reply)
{
  SmtpOutJob *job = conn->job;
  guint code = mail_reply_get_code (reply);
  g_autoptr (GError) error = NULL;
  char *line;

  if (job == NULL)
    {
      smtp_out_protocol_error (conn, reply);
      return;
    }
  /* step 0: PLAIN sent; 1: "AUTH LOGIN" sent; 2: user sent; 3: password sent */
  if ((conn->auth_step == 1 || conn->auth_step == 2) && code == 334)
    {
      line = smtp_out_auth_login_step (conn->auth_step == 1 ? job->auth_user : job->auth_password,
                                       &error);
      if (line == NULL)
        {
          g_autofree char *text = g_strdup_printf ("AUTH to %s: %s", conn->remote, error->message);
          refuse_session (conn, NULL, VPS_SMTP_OUT_TRANSPORT_OK, "4.7.0", text);
          return;
        }
      conn->auth_step++;
      send_secret (conn, line);
      return;
    }
  if ((conn->auth_step == 0 || conn->auth_step == 3) && smtp_out_is_2xx (code))
    {
      vps_info (log_id (conn), "smtp-out: authenticated to %s as %s", conn->remote, job->auth_user);
      conn->authenticated = TRUE;
      after_ehlo (conn);
      return;
    }
  /* 535, 534, 454 ... or a 334 where none belongs: soft bounce */
  refuse_session (conn, reply, VPS_SMTP_OUT_TRANSPORT_OK, NULL, NULL);
}

/* After EHLO/HELO (and again after STARTTLS, after AUTH): what is next. */
static void
after_ehlo (SmtpOutConn *conn)
{
  SmtpOutJob *job = conn->job;

  if (job == NULL)
    {
      smtp_out_conn_quit (conn);
      return;
    }
  if (conn->tls == NULL && conn->policy != VPS_SMTP_OUT_TLS_NONE && !conn->plaintext)
    {
      if ((conn->ehlo.ext & SMTP_EXT_STARTTLS) != 0)
        {
          conn->state = SMTP_OUT_STARTTLS;
          smtp_out_conn_set_timer (conn, conn->out->t.starttls, SMTP_OUT_PHASE_STARTTLS);
          smtp_out_conn_send_str (conn, "STARTTLS\r\n");
          return;
        }
      if (conn->policy != VPS_SMTP_OUT_TLS_MAY)
        {
          g_autofree char *text
              = g_strdup_printf ("TLS is required, but was not offered by host %s", conn->remote);
          refuse_session (conn, NULL, VPS_SMTP_OUT_TRANSPORT_TLS_FAILED, "4.7.4", text);
          return;
        }
    }
  if (job->auth_user != NULL && !conn->authenticated)
    {
      start_auth (conn);
      return;
    }
  smtp_out_session_start_txn (conn);
}

/* ---- RSET, idle, QUIT ------------------------------------------------------------ */

static void
on_rset (SmtpOutConn *conn, MailReply *reply)
{
  SmtpOutJob *job;

  if (smtp_out_is_2xx (mail_reply_get_code (reply)))
    {
      smtp_out_cache_done (conn);
      return;
    }
  job = smtp_out_detach_job (conn);
  /* the server will not start over: no more messages on this one */
  smtp_out_cache_remove (conn);
  if (mail_reply_get_code (reply) == 421)
    smtp_out_conn_close (conn);
  else
    smtp_out_conn_quit (conn);
  if (job != NULL)
    smtp_out_job_restart (job, FALSE);
}

void
smtp_out_session_reply (SmtpOutConn *conn, MailReply *reply)
{
  switch (conn->state)
    {
      case SMTP_OUT_GREETING:
        on_greeting (conn, reply);
        break;
      case SMTP_OUT_EHLO:
        on_ehlo (conn, reply);
        break;
      case SMTP_OUT_HELO:
        on_helo (conn, reply);
        break;
      case SMTP_OUT_STARTTLS:
        on_starttls (conn, reply);
        break;
      case SMTP_OUT_AUTH:
        on_auth (conn, reply);
        break;
      case SMTP_OUT_TXN:
        smtp_out_txn_reply (conn, reply);
        break;
      case SMTP_OUT_RSET:
        on_rset (conn, reply);
        break;
      case SMTP_OUT_QUIT:
        smtp_out_conn_close (conn);
        break;
      case SMTP_OUT_IDLE:
        {
          g_autofree char *text = mail_reply_get_text (reply);
          /* typically "421 timeout": the server is done with us */
          vps_debug (NULL, "smtp-out: idle connection to %s: %u %s", conn->remote,
                     mail_reply_get_code (reply), text);
          smtp_out_conn_close (conn);
          break;
        }
      case SMTP_OUT_CONNECTING:
      case SMTP_OUT_HANDSHAKE:
      case SMTP_OUT_CLOSED:
      default:
        smtp_out_protocol_error (conn, reply);
        break;
    }
}

/* ---- transport failures ---------------------------------------------------------- */

static const char *
transport_enhanced (VpsSmtpOutTransport transport)
{
  switch (transport)
    {
      case VPS_SMTP_OUT_TRANSPORT_CONNECT_FAILED:
        return "4.4.1";
      case VPS_SMTP_OUT_TRANSPORT_TLS_FAILED:
        return "4.7.5";
      case VPS_SMTP_OUT_TRANSPORT_PROTOCOL:
        return "4.5.0";
      case VPS_SMTP_OUT_TRANSPORT_TIMEOUT:
      case VPS_SMTP_OUT_TRANSPORT_CLOSED:
      case VPS_SMTP_OUT_TRANSPORT_OK:
      default:
        return "4.4.2";
    }
}

void
smtp_out_session_transport_failed (SmtpOutConn *conn, VpsSmtpOutTransport transport,
                                   const char *message)
{
  SmtpOutJob *job = smtp_out_detach_job (conn);

  if (job == NULL)
    return;
  if (job->result->reused && !job->mail_answered && !job->retried
      && (transport == VPS_SMTP_OUT_TRANSPORT_CLOSED
          || transport == VPS_SMTP_OUT_TRANSPORT_TIMEOUT))
    {
      /* a cached connection the server had given up on: once more, fresh */
      vps_debug (job->log_id, "smtp-out: cached connection to %s was dead: reconnecting",
                 conn->remote);
      job->retried = TRUE;
      smtp_out_job_restart (job, FALSE);
      return;
    }
  if (conn->phase == SMTP_OUT_PHASE_TLS && conn->policy == VPS_SMTP_OUT_TLS_MAY && !job->plaintext)
    {
      /* a handshake that never completes is a failed one: as in
       * smtp_out_session_tls_failed(), plaintext over a new connection */
      vps_info (job->log_id, "smtp-out: retrying %s without TLS", conn->remote);
      smtp_out_job_restart (job, TRUE);
      return;
    }
  if (conn->greeting != NULL)
    smtp_out_fill_session_info (conn, job);
  smtp_out_decide_rest (job, VPS_SMTP_OUT_DEFER, NULL, transport_enhanced (transport), message,
                        smtp_out_phase_step (conn->phase));
  job->result->transport = transport;
  job->result->try_next = !job->mail_answered;
  g_free (job->result->error);
  job->result->error = g_strdup (message);
  smtp_out_job_complete (job);
}
