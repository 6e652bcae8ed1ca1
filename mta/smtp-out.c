/* SPDX-License-Identifier: MIT
 *
 * smtp-out.c — the outbound SMTP client object: configuration, one job per
 * message (copy of the target and the envelope, the result being built,
 * the GTask), and the cache of connections kept open between messages.
 *
 * Contract (smtp-out.h): send_async() always completes once, on the
 * object's main context — with a result, or with an error for bad
 * arguments and cancellation.  A job never outlives its GTask; every
 * recipient has a verdict when the result is returned (one left undecided
 * by a bug is deferred, never delivered).  The cache only ever holds
 * connections that are idle or waiting for their RSET reply; a job claims
 * one by its key and no two jobs share a connection.
 */
#include "mta/smtp-out-private.h"

#include <string.h>

#include "vps/log.h"

G_DEFINE_QUARK (vps - smtp - out - error - quark, vps_smtp_out_error)

/* RFC 5321 §4.5.3.2 minimums, Postfix where the RFC names none. */
#define DEFAULT_CONNECT_TIMEOUT (30 * 1000)
#define DEFAULT_GREETING_TIMEOUT (300 * 1000)
#define DEFAULT_HELO_TIMEOUT (300 * 1000)
#define DEFAULT_STARTTLS_TIMEOUT (300 * 1000)
#define DEFAULT_AUTH_TIMEOUT (300 * 1000)
#define DEFAULT_MAIL_TIMEOUT (300 * 1000)
#define DEFAULT_RCPT_TIMEOUT (300 * 1000)
#define DEFAULT_DATA_TIMEOUT (120 * 1000)
#define DEFAULT_DATA_BLOCK_TIMEOUT (180 * 1000)
#define DEFAULT_DATA_DONE_TIMEOUT (600 * 1000)
#define DEFAULT_RSET_TIMEOUT (20 * 1000)
#define DEFAULT_QUIT_TIMEOUT (300 * 1000)
#define DEFAULT_IDLE_TIMEOUT (5 * 1000)
#define DEFAULT_MAX_MESSAGES 100
#define DEFAULT_MAX_IDLE 64
/* RFC 1035: a host name for EHLO */
#define MAX_HELO_NAME 255

static const struct
{
  const char *step;
  const char *doing;
} phase_names[] = {
  [SMTP_OUT_PHASE_CONNECT] = { "connect", "connecting" },
  [SMTP_OUT_PHASE_GREETING] = { "greeting", "receiving the initial server greeting" },
  [SMTP_OUT_PHASE_EHLO] = { "EHLO", "performing the EHLO handshake" },
  [SMTP_OUT_PHASE_STARTTLS] = { "STARTTLS", "sending STARTTLS" },
  [SMTP_OUT_PHASE_TLS] = { "STARTTLS", "performing the TLS handshake" },
  [SMTP_OUT_PHASE_AUTH] = { "AUTH", "performing AUTH" },
  [SMTP_OUT_PHASE_MAIL] = { "MAIL", "sending MAIL FROM" },
  [SMTP_OUT_PHASE_RCPT] = { "RCPT", "sending RCPT TO" },
  [SMTP_OUT_PHASE_DATA] = { "DATA", "sending DATA command" },
  [SMTP_OUT_PHASE_BODY] = { "end of data", "sending message body" },
  [SMTP_OUT_PHASE_DOT] = { "end of data", "sending end of data -- message may be sent more "
                                          "than once" },
  [SMTP_OUT_PHASE_RSET] = { "RSET", "sending RSET" },
  [SMTP_OUT_PHASE_IDLE] = { "idle", "idle" },
  [SMTP_OUT_PHASE_QUIT] = { "QUIT", "sending QUIT" },
};

const char *
smtp_out_phase_step (SmtpOutPhase phase)
{
  g_return_val_if_fail (phase < G_N_ELEMENTS (phase_names), "?");
  return phase_names[phase].step;
}

const char *
smtp_out_phase_doing (SmtpOutPhase phase)
{
  g_return_val_if_fail (phase < G_N_ELEMENTS (phase_names), "?");
  return phase_names[phase].doing;
}

/* ---- names ------------------------------------------------------------------ */

static const char *const policy_names[] = {
  [VPS_SMTP_OUT_TLS_NONE] = "none",
  [VPS_SMTP_OUT_TLS_MAY] = "may",
  [VPS_SMTP_OUT_TLS_ENCRYPT] = "encrypt",
  [VPS_SMTP_OUT_TLS_VERIFY] = "verify",
};

gboolean
vps_smtp_out_tls_policy_from_name (const char *name, VpsSmtpOutTlsPolicy *out)
{
  g_return_val_if_fail (name != NULL && out != NULL, FALSE);
  for (gsize i = 0; i < G_N_ELEMENTS (policy_names); i++)
    if (strcmp (name, policy_names[i]) == 0)
      {
        *out = (VpsSmtpOutTlsPolicy)i;
        return TRUE;
      }
  return FALSE;
}

const char *
vps_smtp_out_tls_policy_name (VpsSmtpOutTlsPolicy policy)
{
  g_return_val_if_fail (policy < G_N_ELEMENTS (policy_names), NULL);
  return policy_names[policy];
}

const char *
vps_smtp_out_verdict_name (VpsSmtpOutVerdict v)
{
  static const char *const names[] = { "delivered", "defer", "bounce" };

  g_return_val_if_fail (v < G_N_ELEMENTS (names), NULL);
  return names[v];
}

const char *
vps_smtp_out_transport_name (VpsSmtpOutTransport t)
{
  static const char *const names[] = {
    "ok", "connect-failed", "tls-failed", "timeout", "closed", "protocol",
  };

  g_return_val_if_fail (t < G_N_ELEMENTS (names), NULL);
  return names[t];
}

/* ---- the object --------------------------------------------------------------- */

static guint
or_default (guint v, guint def)
{
  return v != 0 ? v : def;
}

VpsSmtpOut *
vps_smtp_out_new (const VpsSmtpOutConfig *config, GError **error)
{
  VpsSmtpOutConfig c;
  VpsTlsClientConfig tc = { 0 };
  g_autoptr (GError) tls_error = NULL;
  VpsSmtpOut *out;
  VpsTlsClient *tls;

  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  c = *config;
  if (c.helo_name == NULL || c.helo_name[0] == '\0' || strlen (c.helo_name) > MAX_HELO_NAME
      || strpbrk (c.helo_name, " \t\r\n") != NULL)
    {
      g_set_error_literal (error, VPS_SMTP_OUT_ERROR, VPS_SMTP_OUT_ERROR_CONFIG,
                           "helo_name must be a host name (1 to 255 octets, no blanks)");
      return NULL;
    }
  for (const char *p = c.helo_name; *p != '\0'; p++)
    if ((guchar)*p < 0x20 || (guchar)*p >= 0x7f)
      {
        g_set_error_literal (error, VPS_SMTP_OUT_ERROR, VPS_SMTP_OUT_ERROR_CONFIG,
                             "helo_name must be printable ASCII");
        return NULL;
      }

  tc.ca_file = c.tls_ca_file;
  tc.ca_path = c.tls_ca_path;
  tc.cert = c.tls_cert;
  tc.key = c.tls_key;
  tc.min_version = c.tls_min_version;
  tc.ciphers = c.tls_ciphers;
  tls = vps_tls_client_new (&tc, &tls_error);
  if (tls == NULL)
    {
      g_set_error (error, VPS_SMTP_OUT_ERROR, VPS_SMTP_OUT_ERROR_CONFIG, "TLS: %s",
                   tls_error->message);
      return NULL;
    }

  out = g_new0 (VpsSmtpOut, 1);
  out->ref = 1;
  out->context = g_main_context_ref_thread_default ();
  out->helo_name = g_strdup (c.helo_name);
  out->t.connect = or_default (c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
  out->t.greeting = or_default (c.greeting_timeout, DEFAULT_GREETING_TIMEOUT);
  out->t.helo = or_default (c.helo_timeout, DEFAULT_HELO_TIMEOUT);
  out->t.starttls = or_default (c.starttls_timeout, DEFAULT_STARTTLS_TIMEOUT);
  out->t.auth = or_default (c.auth_timeout, DEFAULT_AUTH_TIMEOUT);
  out->t.mail = or_default (c.mail_timeout, DEFAULT_MAIL_TIMEOUT);
  out->t.rcpt = or_default (c.rcpt_timeout, DEFAULT_RCPT_TIMEOUT);
  out->t.data = or_default (c.data_timeout, DEFAULT_DATA_TIMEOUT);
  out->t.data_block = or_default (c.data_block_timeout, DEFAULT_DATA_BLOCK_TIMEOUT);
  out->t.data_done = or_default (c.data_done_timeout, DEFAULT_DATA_DONE_TIMEOUT);
  out->t.rset = or_default (c.rset_timeout, DEFAULT_RSET_TIMEOUT);
  out->t.quit = or_default (c.quit_timeout, DEFAULT_QUIT_TIMEOUT);
  out->t.idle = or_default (c.idle_timeout, DEFAULT_IDLE_TIMEOUT);
  out->max_messages = or_default (c.max_messages, DEFAULT_MAX_MESSAGES);
  out->max_idle = or_default (c.max_idle, DEFAULT_MAX_IDLE);
  out->no_reuse = c.no_reuse;
  out->tls = tls;
  out->client = g_socket_client_new ();
  /* GSocketClient would otherwise honour proxy settings from the
   * environment (a SOCKS proxy for port 25 is never what we want), and
   * its own timeout would also become the socket's I/O timeout. */
  g_socket_client_set_enable_proxy (out->client, FALSE);
  g_socket_client_set_timeout (out->client, 0);
  g_queue_init (&out->cache);
  g_queue_init (&out->conns);
  return out;
}

VpsSmtpOut *
vps_smtp_out_ref (VpsSmtpOut *out)
{
  g_return_val_if_fail (out != NULL, NULL);
  g_atomic_int_inc (&out->ref);
  return out;
}

void
vps_smtp_out_unref (VpsSmtpOut *out)
{
  if (out == NULL || !g_atomic_int_dec_and_test (&out->ref))
    return;
  /* Only connections without a job are left (a job holds a reference):
   * idle ones, ones waiting for their RSET or QUIT reply.  Say QUIT
   * without waiting for the answer: nothing may outlive the object. */
  while (out->conns.head != NULL)
    {
      SmtpOutConn *conn = out->conns.head->data;

      if (conn->state == SMTP_OUT_IDLE || conn->state == SMTP_OUT_RSET)
        smtp_out_conn_send_str (conn, "QUIT\r\n");
      smtp_out_conn_close (conn);
    }
  vps_tls_client_unref (out->tls);
  g_object_unref (out->client);
  g_free (out->helo_name);
  g_main_context_unref (out->context);
  g_free (out);
}

void
vps_smtp_out_close_idle (VpsSmtpOut *out)
{
  GList *l;

  g_return_if_fail (out != NULL);
  out->closing = TRUE;
  l = out->cache.head;
  while (l != NULL)
    {
      SmtpOutConn *conn = l->data;

      l = l->next;
      /* one waiting for its RSET reply quits when it comes */
      if (conn->state == SMTP_OUT_IDLE)
        smtp_out_conn_quit (conn);
    }
}

guint
vps_smtp_out_get_n_idle (VpsSmtpOut *out)
{
  guint n = 0;

  g_return_val_if_fail (out != NULL, 0);
  for (GList *l = out->cache.head; l != NULL; l = l->next)
    if (((SmtpOutConn *)l->data)->state == SMTP_OUT_IDLE)
      n++;
  return n;
}

/* ---- results ------------------------------------------------------------------ */

void
vps_smtp_out_result_free (VpsSmtpOutResult *result)
{
  if (result == NULL)
    return;
  for (guint i = 0; i < result->n_rcpts; i++)
    {
      g_free (result->rcpts[i].enhanced);
      g_free (result->rcpts[i].text);
    }
  g_free (result->rcpts);
  g_free (result->error);
  g_free (result->remote);
  g_free (result->server_greeting);
  g_free (result->tls_version);
  g_free (result->tls_cipher);
  g_free (result);
}

void
smtp_out_rcpt_set (SmtpOutJob *job, guint i, VpsSmtpOutVerdict verdict, guint code,
                   const char *enhanced, const char *text, const char *phase, gboolean local)
{
  VpsSmtpOutRcptResult *r;

  g_return_if_fail (i < job->n_rcpts);
  r = &job->result->rcpts[i];
  r->verdict = verdict;
  r->code = code;
  g_free (r->enhanced);
  r->enhanced = g_strdup (enhanced);
  g_free (r->text);
  r->text = g_strdup (text);
  r->phase = phase;
  r->local = local;
  job->state[i] = SMTP_OUT_RCPT_DONE;
}

void
smtp_out_rcpt_set_reply (SmtpOutJob *job, guint i, const MailReply *reply, const char *phase)
{
  guint code = mail_reply_get_code (reply);
  g_autofree char *text = mail_reply_get_text (reply);
  VpsSmtpOutVerdict verdict;

  if (code >= 200 && code < 300)
    verdict = VPS_SMTP_OUT_DELIVERED;
  else if (code >= 500)
    verdict = VPS_SMTP_OUT_BOUNCE;
  else
    verdict = VPS_SMTP_OUT_DEFER; /* 4xx, and a 3xx where none belongs */
  smtp_out_rcpt_set (job, i, verdict, code, mail_reply_get_enhanced (reply), text, phase, FALSE);
}

/* ---- jobs --------------------------------------------------------------------- */

static void
job_free (SmtpOutJob *job)
{
  if (job->cancel_source != NULL)
    {
      g_source_destroy (job->cancel_source);
      g_source_unref (job->cancel_source);
    }
  g_clear_object (&job->task);
  g_free (job->log_id);
  g_free (job->address);
  g_free (job->mx_name);
  g_free (job->auth_user);
  smtp_out_wipe (job->auth_password);
  g_free (job->key);
  g_free (job->sender);
  g_free (job->rcpts);
  g_ptr_array_unref (job->rcpt_strings);
  g_free (job->envid);
  g_clear_pointer (&job->content, g_bytes_unref);
  g_free (job->state);
  vps_smtp_out_result_free (job->result);
  vps_smtp_out_unref (job->out);
  g_free (job);
}

const char *
smtp_out_log_id (SmtpOutJob *job)
{
  return job != NULL ? job->log_id : NULL;
}

void
smtp_out_job_complete (SmtpOutJob *job)
{
  VpsSmtpOutResult *result = g_steal_pointer (&job->result);
  GTask *task = g_steal_pointer (&job->task);

  if (job->conn != NULL)
    {
      job->conn->job = NULL;
      job->conn = NULL;
    }
  for (guint i = 0; i < job->n_rcpts; i++)
    if (job->state[i] != SMTP_OUT_RCPT_DONE)
      {
        /* a state the session forgot: never report such a recipient
         * delivered */
        g_warning ("smtp-out: recipient %u undecided at the end of a job", i);
        result->rcpts[i].verdict = VPS_SMTP_OUT_DEFER;
        result->rcpts[i].phase = "local";
        result->rcpts[i].local = TRUE;
        g_free (result->rcpts[i].enhanced);
        result->rcpts[i].enhanced = g_strdup ("4.3.0");
        g_free (result->rcpts[i].text);
        result->rcpts[i].text = g_strdup ("internal error: recipient left undecided");
      }
  job_free (job);
  g_task_return_pointer (task, result, (GDestroyNotify)vps_smtp_out_result_free);
  g_object_unref (task);
}

static void
job_fail_cancelled (SmtpOutJob *job)
{
  GTask *task = g_steal_pointer (&job->task);

  job_free (job);
  g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "delivery cancelled");
  g_object_unref (task);
}

static gboolean
job_cancelled (GCancellable *cancellable, gpointer data)
{
  SmtpOutJob *job = data;
  SmtpOutConn *conn = job->conn;

  if (conn != NULL)
    {
      conn->job = NULL;
      job->conn = NULL;
      /* a connection claimed while its RSET was on its way is still good
       * for the next message; one inside a transaction or a handshake is
       * in a state nobody can resume */
      if (conn->state == SMTP_OUT_RSET)
        smtp_out_cache_add (conn);
      else
        smtp_out_conn_close (conn);
    }
  job_fail_cancelled (job);
  return G_SOURCE_REMOVE;
}

static void
job_reset_progress (SmtpOutJob *job)
{
  for (guint i = 0; i < job->n_rcpts; i++)
    if (job->state[i] == SMTP_OUT_RCPT_SENT || job->state[i] == SMTP_OUT_RCPT_ACCEPTED)
      job->state[i] = SMTP_OUT_RCPT_PENDING;
  job->mail_sent = FALSE;
  job->mail_answered = FALSE;
  job->n_accepted = 0;
}

/* Start the job on a connection: a cached one for its key, else a new one. */
static void
job_start (SmtpOutJob *job)
{
  VpsSmtpOut *out = job->out;

  if (!job->retried && !job->plaintext)
    for (GList *l = out->cache.head; l != NULL; l = l->next)
      {
        SmtpOutConn *conn = l->data;

        if (conn->job != NULL || strcmp (conn->key, job->key) != 0)
          continue;
        conn->job = job;
        job->conn = conn;
        job->result->reused = TRUE;
        smtp_out_cache_remove (conn);
        vps_debug (job->log_id, "smtp-out: reusing the connection to %s", conn->remote);
        /* one still waiting for its RSET reply starts the job on it */
        if (conn->state == SMTP_OUT_IDLE)
          smtp_out_session_start_txn (conn);
        return;
      }
  job->result->reused = FALSE;
  job->conn = smtp_out_conn_new (out, job);
  smtp_out_conn_connect (job->conn);
}

void
smtp_out_job_restart (SmtpOutJob *job, gboolean plaintext)
{
  VpsSmtpOutResult *r = job->result;

  g_return_if_fail (job->conn == NULL);
  job->plaintext = job->plaintext || plaintext;
  job_reset_progress (job);
  r->tls = FALSE;
  r->tls_verified = FALSE;
  g_clear_pointer (&r->tls_version, g_free);
  g_clear_pointer (&r->tls_cipher, g_free);
  r->tls_fallback = job->plaintext;
  r->pipelined = FALSE;
  job_start (job);
}

static char *
dup_or_null (const char *s)
{
  return s != NULL ? g_strdup (s) : NULL;
}

static gboolean
check_args (const VpsSmtpOutTarget *target, const VpsSmtpOutMessage *msg, GError **error)
{
  g_autoptr (GInetAddress) addr = NULL;

  if (target->address == NULL || (addr = g_inet_address_new_from_string (target->address)) == NULL)
    {
      g_set_error (error, VPS_SMTP_OUT_ERROR, VPS_SMTP_OUT_ERROR_TARGET,
                   "target address \"%s\" is not an IP address",
                   target->address != NULL ? target->address : "(null)");
      return FALSE;
    }
  if (msg->n_rcpts == 0 || msg->n_rcpts > VPS_SMTP_OUT_MAX_RCPTS || msg->rcpts == NULL)
    {
      g_set_error (error, VPS_SMTP_OUT_ERROR, VPS_SMTP_OUT_ERROR_TARGET,
                   "%u recipients: must be 1 to %d", msg->n_rcpts, VPS_SMTP_OUT_MAX_RCPTS);
      return FALSE;
    }
  if (msg->sender == NULL || msg->content == NULL)
    {
      g_set_error_literal (error, VPS_SMTP_OUT_ERROR, VPS_SMTP_OUT_ERROR_TARGET,
                           "a message needs a sender and content");
      return FALSE;
    }
  for (guint i = 0; i < msg->n_rcpts; i++)
    if (msg->rcpts[i].address == NULL)
      {
        g_set_error (error, VPS_SMTP_OUT_ERROR, VPS_SMTP_OUT_ERROR_TARGET,
                     "recipient %u has no address", i);
        return FALSE;
      }
  if (target->auth_user != NULL && target->auth_password == NULL)
    {
      g_set_error_literal (error, VPS_SMTP_OUT_ERROR, VPS_SMTP_OUT_ERROR_TARGET,
                           "AUTH user without a password");
      return FALSE;
    }
  return TRUE;
}

static SmtpOutJob *
job_new (VpsSmtpOut *out, const VpsSmtpOutTarget *target, const VpsSmtpOutMessage *msg)
{
  SmtpOutJob *job = g_new0 (SmtpOutJob, 1);
  VpsSmtpOutResult *r;

  job->out = vps_smtp_out_ref (out);
  job->log_id = dup_or_null (msg->log_id);
  job->address = g_strdup (target->address);
  job->port = target->port != 0 ? target->port : 25;
  job->mx_name = g_strdup (target->mx_name != NULL ? target->mx_name : target->address);
  job->tls = target->tls;
  job->auth_user = dup_or_null (target->auth_user);
  job->auth_password = dup_or_null (target->auth_password);
  job->key = g_strdup_printf ("%s|%s|%u|%s|%s", job->mx_name, job->address, job->port,
                              vps_smtp_out_tls_policy_name (job->tls),
                              job->auth_user != NULL ? job->auth_user : "");

  job->sender = g_strdup (msg->sender);
  job->n_rcpts = msg->n_rcpts;
  job->rcpts = g_new0 (SmtpOutRcpt, msg->n_rcpts);
  job->rcpt_strings = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < msg->n_rcpts; i++)
    {
      char *a = g_strdup (msg->rcpts[i].address);
      char *o = dup_or_null (msg->rcpts[i].orcpt);

      g_ptr_array_add (job->rcpt_strings, a);
      if (o != NULL)
        g_ptr_array_add (job->rcpt_strings, o);
      job->rcpts[i].address = a;
      job->rcpts[i].orcpt = o;
      job->rcpts[i].notify = msg->rcpts[i].notify;
    }
  job->ret = msg->ret;
  job->envid = dup_or_null (msg->envid);
  job->body = msg->body;
  job->smtputf8 = msg->smtputf8;
  job->content = g_bytes_ref (msg->content);
  job->state = g_new0 (SmtpOutRcptState, msg->n_rcpts);

  r = g_new0 (VpsSmtpOutResult, 1);
  r->n_rcpts = msg->n_rcpts;
  r->rcpts = g_new0 (VpsSmtpOutRcptResult, msg->n_rcpts);
  r->remote = g_strdup_printf ("%s[%s]:%u", job->mx_name, job->address, job->port);
  job->result = r;
  return job;
}

void
vps_smtp_out_send_async (VpsSmtpOut *out, const VpsSmtpOutTarget *target,
                         const VpsSmtpOutMessage *message, GCancellable *cancellable,
                         GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  SmtpOutJob *job;
  GTask *task;

  g_return_if_fail (out != NULL);
  g_return_if_fail (target != NULL && message != NULL);

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, vps_smtp_out_send_async);
  /* A result once returned is the truth (a message may have been
   * delivered): a cancellation that comes later must not hide it. */
  g_task_set_check_cancellable (task, FALSE);
  if (!check_args (target, message, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      g_object_unref (task);
      return;
    }
  if (g_cancellable_is_cancelled (cancellable))
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "delivery cancelled");
      g_object_unref (task);
      return;
    }
  job = job_new (out, target, message);
  job->task = task;
  if (cancellable != NULL)
    {
      job->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (job->cancel_source, G_SOURCE_FUNC (job_cancelled), job, NULL);
      g_source_attach (job->cancel_source, out->context);
    }
  job_start (job);
}

VpsSmtpOutResult *
vps_smtp_out_send_finish (VpsSmtpOut *out, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vps_smtp_out_send_async, NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- the connection cache ------------------------------------------------------ */

void
smtp_out_cache_add (SmtpOutConn *conn)
{
  if (conn->cached)
    return;
  conn->cache_link.data = conn;
  g_queue_push_tail_link (&conn->out->cache, &conn->cache_link);
  conn->cached = TRUE;
}

void
smtp_out_cache_remove (SmtpOutConn *conn)
{
  if (!conn->cached)
    return;
  g_queue_unlink (&conn->out->cache, &conn->cache_link);
  conn->cached = FALSE;
}

void
smtp_out_cache_done (SmtpOutConn *conn)
{
  VpsSmtpOut *out = conn->out;
  guint n_idle = 0;

  if (conn->job != NULL)
    {
      /* claimed while the RSET was on its way */
      smtp_out_cache_remove (conn);
      smtp_out_session_start_txn (conn);
      return;
    }
  if (out->closing || out->no_reuse || conn->n_messages >= out->max_messages)
    {
      smtp_out_cache_remove (conn);
      smtp_out_conn_quit (conn);
      return;
    }
  conn->state = SMTP_OUT_IDLE;
  smtp_out_cache_add (conn);
  smtp_out_conn_set_timer (conn, out->t.idle, SMTP_OUT_PHASE_IDLE);

  /* over the limit: the oldest idle connection goes */
  for (GList *l = out->cache.head; l != NULL; l = l->next)
    if (((SmtpOutConn *)l->data)->state == SMTP_OUT_IDLE)
      n_idle++;
  if (n_idle > out->max_idle)
    for (GList *l = out->cache.head; l != NULL; l = l->next)
      {
        SmtpOutConn *old = l->data;

        if (old->state == SMTP_OUT_IDLE)
          {
            smtp_out_cache_remove (old);
            smtp_out_conn_quit (old);
            break;
          }
      }
}
