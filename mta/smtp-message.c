/* SPDX-License-Identifier: MIT
 *
 * smtp-message.c — a message's way from DATA or BDAT into the spool: the
 * content streams through proto/smtp's decoder into a queue file (never
 * whole in memory), the Received header goes first, and at the end of data
 * the limits, the data stage, quarantine/discard, the modifications and the
 * commit decide the one reply the client gets.
 *
 * Contract (smtp-private.h): 250 is written only after vps_queue_commit
 * reported the message and its envelope durable; every other outcome
 * removes the queue file (vps_queue_writer_abort).  A write error while
 * the content streams in does not stop the reading — the client must reach
 * its end of data to understand a reply — it only decides that reply
 * (451 4.3.0).
 */
#include "mta/smtp-private.h"

#include <string.h>

#include "vps/log.h"
#include "vps/modify.h"
#include "vps/report.h"

/* RFC 5322 date in the C locale, whatever LC_TIME says. */
static char *
rfc5322_date (void)
{
  static const char *const days[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
  static const char *const months[]
      = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  gint64 off = g_date_time_get_utc_offset (now) / G_TIME_SPAN_MINUTE;

  return g_strdup_printf (
      "%s, %d %s %d %02d:%02d:%02d %c%02d%02d", days[g_date_time_get_day_of_week (now) - 1],
      g_date_time_get_day_of_month (now), months[g_date_time_get_month (now) - 1],
      g_date_time_get_year (now), g_date_time_get_hour (now), g_date_time_get_minute (now),
      g_date_time_get_second (now), off < 0 ? '-' : '+', (int)(ABS (off) / 60),
      (int)(ABS (off) % 60));
}

/* Received: (RFC 5321 §4.4) with the protocol names of RFC 3848 / 6531.
 * The HELO name is the client's word: only printable ASCII without
 * parentheses or backslashes goes in, anything else as "unknown"... the
 * parser allowed only a domain or address literal anyway. */
static char *
received_header (VpsSmtpConn *conn, const char *queue_id)
{
  const char *helo = vps_session_get_helo (conn->session);
  const char *ptr = vps_session_get_client_ptr (conn->session);
  g_autofree char *date = rfc5322_date ();
  g_autofree char *for_clause = NULL;
  GString *proto = g_string_new (conn->smtputf8 ? "UTF8SMTP" : conn->esmtp ? "ESMTP" : "SMTP");

  if (conn->tls != NULL)
    g_string_append_c (proto, 'S');
  if (conn->authenticated)
    g_string_append_c (proto, 'A');
  if (conn->rcpt_cmds->len == 1)
    {
      const SmtpCommand *rcpt = g_ptr_array_index (conn->rcpt_cmds, 0);

      for_clause = g_strdup_printf ("\r\n\tfor <%s>", mail_path_get_address (rcpt->path));
    }
  {
    g_autofree char *p = g_string_free (proto, FALSE);

    return g_strdup_printf ("Received: from %s (%s [%s])\r\n\tby %s (vsmtpd) with %s id %s%s;"
                            "\r\n\t%s\r\n",
                            helo && *helo ? helo : "unknown", ptr && *ptr ? ptr : "unknown",
                            conn->client_ip, conn->setup->hostname, p, queue_id,
                            for_clause ? for_clause : "", date);
  }
}

static void
note_write_error (VpsSmtpConn *conn, GError *error)
{
  if (conn->write_error == NULL)
    conn->write_error = error;
  else
    g_error_free (error);
  conn->write_failed = TRUE;
}

gboolean
vps_smtp_message_begin (VpsSmtpConn *conn)
{
  g_autoptr (GError) error = NULL;

  conn->writer = vps_queue_writer_new (conn->server->queue, &error);
  if (conn->writer == NULL)
    {
      vps_warning (vps_smtp_conn_id (conn), "smtp: queue file: %s", error->message);
      vps_smtp_session_error (conn, "451 4.3.0 Error: queue file write error\r\n");
      return FALSE;
    }
  conn->write_failed = FALSE;
  g_clear_error (&conn->write_error);
  if (conn->received_header)
    {
      g_autofree char *received = received_header (conn, vps_queue_writer_get_id (conn->writer));

      if (!vps_queue_writer_write (conn->writer, received, strlen (received), &error))
        note_write_error (conn, g_steal_pointer (&error));
    }
  smtp_data_decoder_init (&conn->dec);
  conn->dec.max_size = conn->max_message_size;
  conn->dec.max_header_size = conn->max_header_size;
  conn->dec.max_line = (gsize)conn->max_line_length;
  conn->dec.bare = conn->bare;
  g_byte_array_set_size (conn->chunk, 0);
  return TRUE;
}

void
vps_smtp_message_abort (VpsSmtpConn *conn)
{
  if (conn->writer != NULL)
    {
      vps_queue_writer_abort (conn->writer);
      conn->writer = NULL;
    }
  g_clear_error (&conn->write_error);
  conn->write_failed = FALSE;
}

static void
write_chunk (VpsSmtpConn *conn)
{
  g_autoptr (GError) error = NULL;

  if (conn->chunk->len == 0)
    return;
  if (!conn->write_failed && conn->writer != NULL
      && !vps_queue_writer_write (conn->writer, conn->chunk->data, conn->chunk->len, &error))
    note_write_error (conn, g_steal_pointer (&error));
  g_byte_array_set_size (conn->chunk, 0);
}

/* ---- the end of data ------------------------------------------------------ */

/* What a discarded or quarantined message gets: the reply of a queued one,
 * so a sender cannot tell (the writer's id is unique and unused). */
static char *
as_if_queued (VpsSmtpConn *conn)
{
  return g_strdup_printf ("250 2.0.0 Ok: queued as %s\r\n", vps_queue_writer_get_id (conn->writer));
}

/* Finish the transaction with `line` as the reply. */
static void
finish (VpsSmtpConn *conn, const char *line, gboolean is_error)
{
  vps_smtp_session_reset_txn (conn);
  if (is_error)
    vps_smtp_session_error (conn, line);
  else
    vps_smtp_conn_write (conn, line, strlen (line));
}

typedef struct
{
  VpsSmtpConn *conn;
  VpsEnvelope *env;
} CommitCall;

static void
commit_done (GObject *source, GAsyncResult *res, gpointer data)
{
  CommitCall *call = data;
  VpsSmtpConn *conn = call->conn;
  g_autoptr (GError) error = NULL;
  g_autofree char *qid = g_strdup (call->env->id);
  gboolean ok = vps_queue_commit_finish (conn->server->queue, res, &error);

  if (ok)
    {
      vps_info (vps_smtp_conn_id (conn),
                "smtp: %s: queued from=<%s> nrcpt=%u size=%" G_GUINT64_FORMAT, qid,
                call->env->sender, call->env->rcpts->len, call->env->size);
      /* the envelope goes to the delivery as committed */
      vps_delivery_submit_envelope (conn->server->delivery, qid, g_steal_pointer (&call->env));
    }
  else
    vps_warning (vps_smtp_conn_id (conn), "smtp: %s: queue commit failed: %s", qid, error->message);
  if (!conn->closed)
    {
      conn->n_messages += ok;
      if (ok)
        {
          g_autofree char *line = g_strdup_printf ("250 2.0.0 Ok: queued as %s\r\n", qid);

          finish (conn, line, FALSE);
        }
      else
        finish (conn, "451 4.3.0 Error: queue file write error\r\n", TRUE);
      vps_smtp_conn_end_async (conn);
    }
  g_clear_pointer (&call->env, vps_envelope_free);
  vps_smtp_conn_unref (conn);
  g_free (call);
}

static VpsEnvelope *
build_envelope (VpsSmtpConn *conn, const char *sender, GPtrArray *rcpts)
{
  VpsEnvelope *env = vps_envelope_new ();
  const SmtpCommand *mail = conn->mail;
  VpsSession *s = conn->session;

  env->id = g_strdup (vps_queue_writer_get_id (conn->writer));
  env->sender = g_strdup (sender);
  env->ret = mail->ret == SMTP_RET_FULL   ? g_strdup ("FULL")
             : mail->ret == SMTP_RET_HDRS ? g_strdup ("HDRS")
                                          : NULL;
  env->envid = g_strdup (mail->envid);
  env->body = mail->body == SMTP_BODY_8BITMIME     ? g_strdup ("8BITMIME")
              : mail->body == SMTP_BODY_BINARYMIME ? g_strdup ("BINARYMIME")
              : mail->body == SMTP_BODY_7BIT       ? g_strdup ("7BIT")
                                                   : NULL;
  env->smtputf8 = mail->smtputf8;
  env->received = g_get_real_time ();
  env->session_id = g_strdup (vps_session_get_id (s));
  env->client_ip = g_strdup (conn->client_ip);
  env->client_ptr = g_strdup (vps_session_get_client_ptr (s));
  env->helo = g_strdup (vps_session_get_helo (s));
  env->auth_user = conn->authenticated ? g_strdup (conn->auth_user) : NULL;
  if (conn->tls != NULL)
    env->tls = g_strdup_printf ("%s %s", vps_tls_conn_get_version (conn->tls),
                                vps_tls_conn_get_cipher (conn->tls));
  for (guint i = 0; i < rcpts->len; i++)
    {
      const char *address = g_ptr_array_index (rcpts, i);
      const SmtpCommand *given = NULL;

      /* the DSN parameters of the RCPT that named it (none for add_rcpt) */
      for (guint j = 0; j < conn->rcpt_cmds->len && given == NULL; j++)
        {
          const SmtpCommand *c = g_ptr_array_index (conn->rcpt_cmds, j);

          if (g_ascii_strcasecmp (mail_path_get_address (c->path), address) == 0)
            given = c;
        }
      vps_envelope_add_rcpt (env, address, given ? given->orcpt : NULL, given ? given->notify : 0);
    }
  env->report = vps_report_txn (conn->txn);
  return env;
}

static void
commit (VpsSmtpConn *conn)
{
  g_autoptr (GError) error = NULL;
  GPtrArray *mods = vps_txn_get_modifications (conn->txn);
  g_autoptr (GPtrArray) rcpts = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *sender = g_strdup (vps_txn_get_sender (conn->txn));
  const char *const *accepted = vps_txn_get_rcpts (conn->txn, NULL);
  CommitCall *call;

  for (gsize i = 0; accepted && accepted[i]; i++)
    g_ptr_array_add (rcpts, g_strdup (accepted[i]));
  if (mods != NULL && mods->len > 0)
    {
      g_autoptr (GBytes) raw = vps_queue_writer_map (conn->writer, &error);
      g_autoptr (GBytes) edited = raw ? vps_modify_apply_message (raw, mods, &error) : NULL;

      if (edited == NULL || !vps_queue_writer_replace (conn->writer, edited, &error))
        {
          vps_warning (vps_smtp_conn_id (conn), "smtp: modifications: %s", error->message);
          finish (conn, "451 4.3.0 Error: queue file write error\r\n", TRUE);
          return;
        }
      vps_modify_apply_envelope (mods, &sender, rcpts);
    }
  if (rcpts->len == 0)
    {
      /* the rules removed every recipient: nothing to deliver */
      g_autofree char *line = as_if_queued (conn);

      vps_info (vps_smtp_conn_id (conn), "smtp: no recipients left after the rules: discarded");
      finish (conn, line, FALSE);
      return;
    }
  call = g_new0 (CommitCall, 1);
  call->conn = vps_smtp_conn_ref (conn);
  call->env = build_envelope (conn, sender, rcpts);
  vps_smtp_conn_begin_async (conn);
  vps_queue_commit_async (conn->server->queue, g_steal_pointer (&conn->writer), call->env,
                          commit_done, call);
}

static void
quarantine (VpsSmtpConn *conn)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *id = NULL;
  g_autofree char *line = NULL;

  if (!vps_engine_quarantine_txn (conn->engine, conn->txn, &id, &error))
    {
      vps_warning (vps_smtp_conn_id (conn), "smtp: quarantine: %s", error->message);
      finish (conn, "451 4.3.0 Error: queue file write error\r\n", TRUE);
      return;
    }
  line = as_if_queued (conn);
  vps_info (vps_smtp_conn_id (conn), "smtp: quarantined as %s in %s", id,
            vps_txn_get_quarantine (conn->txn));
  conn->n_messages++;
  finish (conn, line, FALSE);
}

static void
data_done (VpsSmtpConn *conn, VpsStageResult *result)
{
  g_autoptr (MailReply) reply = vps_smtp_session_verdict_reply (conn, result);

  if (reply != NULL)
    {
      g_autofree char *text = mail_reply_format (reply);

      finish (conn, text, TRUE);
      return;
    }
  if (conn->discard || (result != NULL && result->verdict == RULES_VERDICT_DISCARD))
    {
      g_autofree char *line = as_if_queued (conn);

      vps_info (vps_smtp_conn_id (conn), "smtp: message discarded");
      finish (conn, line, FALSE);
      return;
    }
  if (vps_txn_get_quarantine (conn->txn) != NULL)
    {
      quarantine (conn);
      return;
    }
  commit (conn);
}

static void
end_of_data (VpsSmtpConn *conn)
{
  g_autoptr (GError) error = NULL;
  RulesProgram *program = vps_engine_get_program (conn->engine);

  conn->phase = PHASE_COMMAND;
  vps_smtp_conn_set_deadline (conn, 0);
  if (conn->dec.too_big)
    {
      finish (conn, "552 5.3.4 Message size exceeds fixed limit\r\n", TRUE);
      return;
    }
  if (conn->dec.header_too_big)
    {
      finish (conn, "552 5.3.4 Message header size exceeds limit\r\n", TRUE);
      return;
    }
  if (conn->dec.line_too_long)
    {
      g_autofree char *line
          = g_strdup_printf ("552 5.6.0 Message has lines over %" G_GUINT64_FORMAT " octets\r\n",
                             conn->max_line_length);

      finish (conn, line, TRUE);
      return;
    }
  if (conn->write_failed)
    {
      vps_warning (vps_smtp_conn_id (conn), "smtp: queue file write error: %s",
                   conn->write_error ? conn->write_error->message : "?");
      finish (conn, "451 4.3.0 Error: queue file write error\r\n", TRUE);
      return;
    }
  vps_txn_set_size (conn->txn, conn->dec.size);
  if (conn->discard)
    {
      data_done (conn, NULL);
      return;
    }
  /* GMime parses the message only when rules look at it */
  if (rules_program_n_rules (program, RULES_STAGE_DATA) > 0
      || vps_txn_get_quarantine (conn->txn) != NULL)
    {
      g_autoptr (GBytes) raw = vps_queue_writer_map (conn->writer, &error);
      g_autoptr (VpsMessage) msg = raw ? vps_message_new (raw, &error) : NULL;

      if (msg == NULL)
        {
          vps_warning (vps_smtp_conn_id (conn), "smtp: message: %s", error->message);
          finish (conn, "451 4.3.0 Error: queue file write error\r\n", TRUE);
          return;
        }
      vps_txn_set_message (conn->txn, msg);
    }
  vps_smtp_session_run_stage (conn, RULES_STAGE_DATA, data_done);
}

/* ---- feeding --------------------------------------------------------------- */

static gboolean
feed_data (VpsSmtpConn *conn)
{
  gsize consumed = 0;
  SmtpDataStatus st;

  if (conn->in->len == 0)
    return FALSE;
  st = smtp_data_decoder_feed (&conn->dec, conn->in->data, conn->in->len, conn->chunk, &consumed);
  g_byte_array_remove_range (conn->in, 0, (guint)consumed);
  write_chunk (conn);
  switch (st)
    {
      case SMTP_DATA_END:
        end_of_data (conn);
        return TRUE;
      case SMTP_DATA_BARE_NEWLINE:
        vps_notice (vps_smtp_conn_id (conn), "smtp: bare <LF> received in data, closing");
        vps_smtp_message_abort (conn);
        vps_smtp_conn_printf (conn, "521 5.5.2 %s Error: bare <LF> received\r\n",
                              conn->setup->hostname);
        vps_stream_close_after_flush (conn->stream);
        return TRUE;
      case SMTP_DATA_MORE:
      default:
        return consumed > 0;
    }
}

static gboolean
feed_bdat (VpsSmtpConn *conn)
{
  gsize n = (gsize)MIN ((guint64)conn->in->len, conn->bdat_left);

  if (n > 0)
    {
      if (!conn->bdat_discarding)
        {
          smtp_data_decoder_feed_chunk (&conn->dec, conn->in->data, n, conn->chunk);
          write_chunk (conn);
        }
      g_byte_array_remove_range (conn->in, 0, (guint)n);
      conn->bdat_left -= n;
    }
  if (conn->bdat_left > 0)
    return n > 0;
  /* the chunk is complete */
  if (conn->bdat_discarding)
    {
      /* its error reply went out with the BDAT command */
      conn->bdat_discarding = FALSE;
      conn->phase = PHASE_COMMAND;
      vps_smtp_conn_set_deadline (conn, 0);
      return TRUE;
    }
  if (conn->bdat_last)
    {
      /* a bare CR at the very end is only known to be bare now */
      smtp_data_decoder_finish_chunks (&conn->dec, conn->chunk);
      write_chunk (conn);
      end_of_data (conn);
      return TRUE;
    }
  conn->phase = PHASE_COMMAND;
  vps_smtp_conn_set_deadline (conn, 0);
  vps_smtp_conn_printf (conn, "250 2.0.0 Ok: %" G_GUINT64_FORMAT " octets\r\n", conn->dec.size);
  return TRUE;
}

gboolean
vps_smtp_message_feed (VpsSmtpConn *conn)
{
  return conn->phase == PHASE_BDAT ? feed_bdat (conn) : feed_data (conn);
}
