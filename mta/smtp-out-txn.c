/* SPDX-License-Identifier: MIT
 *
 * smtp-out-txn.c — one mail transaction of the outbound client: the checks
 * made before MAIL (SIZE, BINARYMIME, 8BITMIME, SMTPUTF8), MAIL, every
 * RCPT and DATA (one write with PIPELINING, RFC 2920; one command at a
 * time otherwise), the per-recipient replies, the message (DATA or BDAT,
 * RFC 3030), the final reply, then RSET for reuse or QUIT.
 *
 * Contract (smtp-out-private.h): replies are matched with what was sent
 * through an in-order queue of expectations; a reply when none is due is
 * a protocol error, except a 4xx/5xx while the message is still being
 * written (the server gave up: its reply is the recipients' result).  A
 * recipient is delivered only by a 2xx after the whole message; an
 * accepted recipient whose final reply never comes stays deferred.  The
 * job is detached from the connection before its last write and completed
 * last (smtp-out-session.c says why).
 */
#include "mta/smtp-out-private.h"

#include <string.h>

#include "vps/log.h"

static const char *
log_id (SmtpOutConn *conn)
{
  return smtp_out_log_id (conn->job);
}

/* ---- the transaction ---------------------------------------------------------------- */

static void
expect (SmtpOutConn *conn, SmtpOutExpectKind kind, guint index)
{
  SmtpOutExpect e = { kind, index };

  g_array_append_val (conn->expect, e);
}

static gboolean
expect_pop (SmtpOutConn *conn, SmtpOutExpect *e)
{
  if (conn->expect_head >= conn->expect->len)
    return FALSE;
  *e = g_array_index (conn->expect, SmtpOutExpect, conn->expect_head++);
  if (conn->expect_head == conn->expect->len)
    {
      g_array_set_size (conn->expect, 0);
      conn->expect_head = 0;
    }
  return TRUE;
}

static gboolean
expect_empty (SmtpOutConn *conn)
{
  return conn->expect_head >= conn->expect->len;
}

/* The transaction is over: settle the connection (RSET and reuse, or
 * QUIT), then hand the result over. */
static void
finish_txn (SmtpOutConn *conn)
{
  SmtpOutJob *job = smtp_out_detach_job (conn);
  VpsSmtpOut *out = conn->out;

  g_ptr_array_set_size (conn->rcpt_lines, 0);
  g_array_set_size (conn->rcpt_ids, 0);
  conn->mail_failed = FALSE;
  if (out->no_reuse || out->closing || conn->n_messages >= out->max_messages)
    smtp_out_conn_quit (conn);
  else
    {
      conn->state = SMTP_OUT_RSET;
      smtp_out_conn_set_timer (conn, out->t.rset, SMTP_OUT_PHASE_RSET);
      /* claimable by the next message for this destination already (a
       * failed write below takes it out again) */
      smtp_out_cache_add (conn);
      smtp_out_conn_send_str (conn, "RSET\r\n");
    }
  if (job != NULL)
    smtp_out_job_complete (job);
}

/* Decisions made before MAIL from the EHLO facts and the message. */
static void
local_checks (SmtpOutConn *conn, SmtpOutJob *job)
{
  gsize size = g_bytes_get_size (job->content);
  const guint8 *data = g_bytes_get_data (job->content, NULL);
  const SmtpEhlo *e = &conn->ehlo;
  g_autofree char *text = NULL;

  job->txn_body = job->body;
  job->txn_smtputf8 = job->smtputf8;
  if ((e->ext & SMTP_EXT_SIZE) != 0 && e->size_limit > 0 && size > e->size_limit)
    {
      text = g_strdup_printf ("message size %" G_GSIZE_FORMAT
                              " exceeds size limit %" G_GUINT64_FORMAT " of server %s",
                              size, e->size_limit, conn->remote);
      smtp_out_decide_rest (job, VPS_SMTP_OUT_BOUNCE, NULL, "5.3.4", text, "local");
      return;
    }
  if (job->body == SMTP_BODY_BINARYMIME
      && (e->ext & (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING))
             != (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING))
    {
      text = g_strdup_printf ("binary message, host %s does not offer BINARYMIME and CHUNKING",
                              conn->remote);
      smtp_out_decide_rest (job, VPS_SMTP_OUT_BOUNCE, NULL, "5.6.3", text, "local");
      return;
    }
  if (job->body == SMTP_BODY_8BITMIME && (e->ext & SMTP_EXT_8BITMIME) == 0)
    {
      if (smtp_out_has_8bit (data, size))
        {
          text = g_strdup_printf ("8-bit message, host %s does not offer 8BITMIME and we do "
                                  "not convert",
                                  conn->remote);
          smtp_out_decide_rest (job, VPS_SMTP_OUT_BOUNCE, NULL, "5.6.3", text, "local");
          return;
        }
      job->txn_body = SMTP_BODY_7BIT; /* declared 8-bit, is 7-bit */
    }
  if (job->smtputf8 && (e->ext & SMTP_EXT_SMTPUTF8) == 0)
    {
      text = g_strdup_printf ("SMTPUTF8 is required, but was not offered by host %s", conn->remote);
      /* RFC 6531 §3.2: only what actually needs it fails */
      if (smtp_out_address_is_utf8 (job->sender) || smtp_out_header_is_utf8 (data, size))
        {
          smtp_out_decide_rest (job, VPS_SMTP_OUT_BOUNCE, NULL, "5.6.7", text, "local");
          return;
        }
      for (guint i = 0; i < job->n_rcpts; i++)
        if (job->state[i] == SMTP_OUT_RCPT_PENDING
            && smtp_out_address_is_utf8 (job->rcpts[i].address))
          smtp_out_rcpt_set (job, i, VPS_SMTP_OUT_BOUNCE, 0, "5.6.7", text, "local", TRUE);
    }
}

static const char *
enhanced_for (const GError *error, gboolean sender)
{
  switch (error->code)
    {
      case SMTP_OUT_ERROR_NEEDS_SMTPUTF8:
        return "5.6.7";
      case SMTP_OUT_ERROR_NEEDS_8BITMIME:
      case SMTP_OUT_ERROR_NEEDS_BINARYMIME:
        return "5.6.3";
      case SMTP_OUT_ERROR_ADDRESS:
        return sender ? "5.1.7" : "5.1.3";
      default:
        return "5.5.4";
    }
}

static void
send_data_or_bdat (SmtpOutConn *conn)
{
  SmtpOutJob *job = conn->job;

  conn->data_sent = TRUE;
  if (job->txn_body == SMTP_BODY_BINARYMIME)
    {
      g_autofree char *bdat = smtp_out_bdat_command (g_bytes_get_size (job->content), TRUE);

      expect (conn, SMTP_OUT_EXPECT_BDAT, 0);
      smtp_out_conn_send_str (conn, bdat);
      smtp_out_conn_send_body (conn, TRUE);
      return;
    }
  expect (conn, SMTP_OUT_EXPECT_DATA, 0);
  smtp_out_conn_set_timer (conn, conn->out->t.data, SMTP_OUT_PHASE_DATA);
  smtp_out_conn_send_str (conn, "DATA\r\n");
}

static void
send_next_rcpt (SmtpOutConn *conn)
{
  guint k = conn->next_rcpt++;
  guint i = g_array_index (conn->rcpt_ids, guint, k);

  conn->job->state[i] = SMTP_OUT_RCPT_SENT;
  expect (conn, SMTP_OUT_EXPECT_RCPT, i);
  smtp_out_conn_set_timer (conn, conn->out->t.rcpt, SMTP_OUT_PHASE_RCPT);
  smtp_out_conn_send_str (conn, g_ptr_array_index (conn->rcpt_lines, k));
}

void
smtp_out_session_start_txn (SmtpOutConn *conn)
{
  SmtpOutJob *job = conn->job;
  g_autoptr (GError) error = NULL;
  g_autofree char *mail = NULL;
  SmtpOutMail m = { 0 };

  conn->state = SMTP_OUT_TXN;
  conn->n_messages++;
  conn->mail_failed = FALSE;
  conn->data_sent = FALSE;
  conn->next_rcpt = 0;
  g_array_set_size (conn->expect, 0);
  conn->expect_head = 0;
  g_ptr_array_set_size (conn->rcpt_lines, 0);
  g_array_set_size (conn->rcpt_ids, 0);
  smtp_out_fill_session_info (conn, job);
  local_checks (conn, job);

  m.sender = job->sender;
  m.size = g_bytes_get_size (job->content);
  m.body = job->txn_body;
  m.smtputf8 = job->txn_smtputf8;
  m.ret = job->ret;
  m.envid = job->envid;
  mail = smtp_out_mail_command (&conn->ehlo, &m, &error);
  if (mail == NULL)
    {
      g_autofree char *text = g_strdup_printf ("cannot send MAIL FROM: %s", error->message);
      smtp_out_decide_rest (job, VPS_SMTP_OUT_BOUNCE, NULL, enhanced_for (error, TRUE), text,
                            "local");
    }
  for (guint i = 0; i < job->n_rcpts && mail != NULL; i++)
    {
      g_autoptr (GError) rerror = NULL;
      char *line;

      if (job->state[i] != SMTP_OUT_RCPT_PENDING)
        continue;
      line = smtp_out_rcpt_command (&conn->ehlo, &job->rcpts[i], job->txn_smtputf8, &rerror);
      if (line == NULL)
        {
          g_autofree char *text = g_strdup_printf ("cannot send RCPT TO: %s", rerror->message);
          smtp_out_rcpt_set (job, i, VPS_SMTP_OUT_BOUNCE, 0, enhanced_for (rerror, FALSE), text,
                             "local", TRUE);
          continue;
        }
      g_ptr_array_add (conn->rcpt_lines, line);
      g_array_append_val (conn->rcpt_ids, i);
    }
  if (conn->rcpt_lines->len == 0)
    {
      /* nothing left to send: the connection stays as it was */
      finish_txn (conn);
      return;
    }

  job->mail_sent = TRUE;
  conn->pipelined = (conn->ehlo.ext & SMTP_EXT_PIPELINING) != 0;
  job->result->pipelined = conn->pipelined;
  expect (conn, SMTP_OUT_EXPECT_MAIL, 0);
  smtp_out_conn_set_timer (conn, conn->out->t.mail, SMTP_OUT_PHASE_MAIL);
  if (!conn->pipelined)
    {
      smtp_out_conn_send_str (conn, mail);
      return;
    }
  /* RFC 2920: MAIL, every RCPT and DATA in one write; BDAT waits for the
   * RCPT replies (the message would go out for nothing otherwise) */
  {
    g_autoptr (GString) batch = g_string_new (mail);

    for (guint k = 0; k < conn->rcpt_lines->len; k++)
      {
        guint i = g_array_index (conn->rcpt_ids, guint, k);

        job->state[i] = SMTP_OUT_RCPT_SENT;
        expect (conn, SMTP_OUT_EXPECT_RCPT, i);
        g_string_append (batch, g_ptr_array_index (conn->rcpt_lines, k));
      }
    conn->next_rcpt = conn->rcpt_lines->len;
    if (job->txn_body != SMTP_BODY_BINARYMIME)
      {
        conn->data_sent = TRUE;
        expect (conn, SMTP_OUT_EXPECT_DATA, 0);
        g_string_append (batch, "DATA\r\n");
      }
    smtp_out_conn_send (conn, batch->str, batch->len);
  }
}

/* The reply that ends the message (or DATA refused) for every recipient
 * still waiting for it. */
static void
apply_to_accepted (SmtpOutJob *job, const MailReply *reply, const char *phase, gboolean final)
{
  guint code = mail_reply_get_code (reply);

  for (guint i = 0; i < job->n_rcpts; i++)
    {
      if (job->state[i] != SMTP_OUT_RCPT_ACCEPTED)
        continue;
      smtp_out_rcpt_set_reply (job, i, reply, phase);
      /* only the reply after the message means delivered */
      if (smtp_out_is_2xx (code) && !final)
        job->result->rcpts[i].verdict = VPS_SMTP_OUT_DEFER;
    }
}

/* The timer for the reply due next. */
static void
timer_for_head (SmtpOutConn *conn)
{
  const SmtpOutExpect *e = &g_array_index (conn->expect, SmtpOutExpect, conn->expect_head);
  const SmtpOutTimeouts *t = &conn->out->t;

  switch (e->kind)
    {
      case SMTP_OUT_EXPECT_MAIL:
        smtp_out_conn_set_timer (conn, t->mail, SMTP_OUT_PHASE_MAIL);
        break;
      case SMTP_OUT_EXPECT_RCPT:
        smtp_out_conn_set_timer (conn, t->rcpt, SMTP_OUT_PHASE_RCPT);
        break;
      case SMTP_OUT_EXPECT_DATA:
        smtp_out_conn_set_timer (conn, t->data, SMTP_OUT_PHASE_DATA);
        break;
      case SMTP_OUT_EXPECT_BDAT:
      case SMTP_OUT_EXPECT_DOT:
      case SMTP_OUT_EXPECT_IGNORE:
      default:
        smtp_out_conn_set_timer (conn, t->data_done, SMTP_OUT_PHASE_DOT);
        break;
    }
}

/* The next step after a reply: wait for more, send the next command of a
 * sequential transaction, or end it. */
static void
advance (SmtpOutConn *conn)
{
  SmtpOutJob *job = conn->job;

  if (conn->body_state != 0)
    return; /* the message is on its way; its timer runs per block */
  if (!expect_empty (conn))
    {
      timer_for_head (conn);
      return;
    }
  if (!conn->mail_failed && conn->next_rcpt < conn->rcpt_lines->len)
    {
      send_next_rcpt (conn);
      return;
    }
  if (!conn->mail_failed && !conn->data_sent && job->n_accepted > 0)
    {
      send_data_or_bdat (conn);
      return;
    }
  finish_txn (conn);
}

void
smtp_out_txn_reply (SmtpOutConn *conn, MailReply *reply)
{
  SmtpOutJob *job = conn->job;
  guint code = mail_reply_get_code (reply);
  SmtpOutExpect e;

  if (job == NULL || !expect_pop (conn, &e))
    {
      if (job != NULL && conn->body_state != 0 && !smtp_out_is_2xx (code))
        {
          /* the server gave up in the middle of the message */
          apply_to_accepted (job, reply, "end of data", FALSE);
          smtp_out_detach_job (conn);
          smtp_out_conn_close (conn);
          smtp_out_job_complete (job);
          return;
        }
      smtp_out_protocol_error (conn, reply);
      return;
    }
  switch (e.kind)
    {
      case SMTP_OUT_EXPECT_MAIL:
        job->mail_answered = TRUE;
        if (!smtp_out_is_2xx (code))
          {
            conn->mail_failed = TRUE;
            for (guint i = 0; i < job->n_rcpts; i++)
              if (job->state[i] == SMTP_OUT_RCPT_SENT || job->state[i] == SMTP_OUT_RCPT_PENDING)
                smtp_out_rcpt_set_reply (job, i, reply, "MAIL");
          }
        break;
      case SMTP_OUT_EXPECT_RCPT:
        if (conn->mail_failed || job->state[e.index] != SMTP_OUT_RCPT_SENT)
          break;
        if (smtp_out_is_2xx (code))
          {
            job->state[e.index] = SMTP_OUT_RCPT_ACCEPTED;
            job->n_accepted++;
          }
        else
          smtp_out_rcpt_set_reply (job, e.index, reply, "RCPT");
        break;
      case SMTP_OUT_EXPECT_DATA:
        if (code == 354 && job->n_accepted > 0 && !conn->mail_failed)
          {
            smtp_out_conn_send_body (conn, FALSE);
            return;
          }
        if (code == 354)
          {
            /* RFC 2920 §3.1: nobody to send to, yet DATA was accepted */
            expect (conn, SMTP_OUT_EXPECT_IGNORE, 0);
            smtp_out_conn_set_timer (conn, conn->out->t.data_done, SMTP_OUT_PHASE_DOT);
            smtp_out_conn_send_str (conn, ".\r\n");
            return;
          }
        apply_to_accepted (job, reply, "DATA", FALSE);
        break;
      case SMTP_OUT_EXPECT_BDAT:
      case SMTP_OUT_EXPECT_DOT:
        if (conn->body_state != 0)
          {
            /* BDAT answered before the whole chunk went out: the server
             * refused it, and the rest of the chunk cannot be taken back */
            apply_to_accepted (job, reply, "end of data", FALSE);
            smtp_out_detach_job (conn);
            smtp_out_conn_close (conn);
            smtp_out_job_complete (job);
            return;
          }
        apply_to_accepted (job, reply, "end of data", TRUE);
        break;
      case SMTP_OUT_EXPECT_IGNORE:
        break;
      default:
        g_assert_not_reached ();
    }
  if (code == 421)
    {
      g_autofree char *text = mail_reply_get_text (reply);

      /* the server is closing: the rest is deferred, the connection over */
      vps_info (log_id (conn), "smtp-out: %s is closing: %u %s", conn->remote, code, text);
      smtp_out_decide_rest (job, VPS_SMTP_OUT_DEFER, reply, NULL, NULL,
                            smtp_out_phase_step (conn->phase));
      /* the host is going away, not the message that is wrong */
      job->result->try_next = TRUE;
      smtp_out_detach_job (conn);
      smtp_out_conn_close (conn);
      smtp_out_job_complete (job);
      return;
    }
  advance (conn);
}

void
smtp_out_session_body_sent (SmtpOutConn *conn)
{
  if (conn->job == NULL || conn->closed)
    return;
  if (conn->job->txn_body != SMTP_BODY_BINARYMIME)
    expect (conn, SMTP_OUT_EXPECT_DOT, 0);
  smtp_out_conn_set_timer (conn, conn->out->t.data_done, SMTP_OUT_PHASE_DOT);
}
