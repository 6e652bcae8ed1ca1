/* SPDX-License-Identifier: MIT
 *
 * smtp-out-probe.c — drives mta/smtp-out.h from the command line for the
 * integration tests (tests/integration/test_smtp_out.py): sends one
 * message to one address, --repeat times one after the other on the same
 * VpsSmtpOut (so the connection cache is exercised), and prints each
 * result as one JSON object per line:
 *
 *   {"transport": "ok", "error": null, "try_next": false, "remote": "...",
 *    "greeting": "...", "esmtp": true, "dsn": true, "pipelined": true,
 *    "reused": false, "tls": false, "tls_fallback": false,
 *    "tls_verified": false, "tls_version": null, "tls_cipher": null,
 *    "rcpts": [{"address": "...", "verdict": "delivered", "code": 250,
 *               "enhanced": "2.0.0", "text": "Ok", "phase": "end of data",
 *               "local": false}]}
 *
 * and, after the last one (and --linger-ms more of the main loop), {"idle": N}
 * (connections left in the cache).
 * With --cancel-ms the send is cancelled after that long: {"cancelled":
 * true} when that beat the result.  Exit status 0 when every send
 * completed (whatever the verdicts) or was cancelled, 1 on a usage error
 * or another error from _finish.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "mta/smtp-out.h"

typedef struct
{
  GMainLoop *loop;
  VpsSmtpOut *out;
  VpsSmtpOutTarget target;
  VpsSmtpOutMessage msg;
  int remaining;
  guint delay_ms;
  GCancellable *cancellable;
  int status;
} Probe;

static void send_one (Probe *p);

static void
add_string (JsonBuilder *b, const char *name, const char *value)
{
  json_builder_set_member_name (b, name);
  if (value != NULL)
    json_builder_add_string_value (b, value);
  else
    json_builder_add_null_value (b);
}

static void
add_bool (JsonBuilder *b, const char *name, gboolean value)
{
  json_builder_set_member_name (b, name);
  json_builder_add_boolean_value (b, value);
}

static void
print_result (Probe *p, const VpsSmtpOutResult *r)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  add_string (b, "transport", vps_smtp_out_transport_name (r->transport));
  add_string (b, "error", r->error);
  add_bool (b, "try_next", r->try_next);
  add_string (b, "remote", r->remote);
  add_string (b, "greeting", r->server_greeting);
  add_bool (b, "esmtp", r->esmtp);
  add_bool (b, "dsn", r->dsn);
  add_bool (b, "pipelined", r->pipelined);
  add_bool (b, "reused", r->reused);
  add_bool (b, "tls", r->tls);
  add_bool (b, "tls_fallback", r->tls_fallback);
  add_bool (b, "tls_verified", r->tls_verified);
  add_string (b, "tls_version", r->tls_version);
  add_string (b, "tls_cipher", r->tls_cipher);
  json_builder_set_member_name (b, "rcpts");
  json_builder_begin_array (b);
  for (guint i = 0; i < r->n_rcpts; i++)
    {
      const VpsSmtpOutRcptResult *rr = &r->rcpts[i];

      json_builder_begin_object (b);
      add_string (b, "address", p->msg.rcpts[i].address);
      add_string (b, "verdict", vps_smtp_out_verdict_name (rr->verdict));
      json_builder_set_member_name (b, "code");
      json_builder_add_int_value (b, rr->code);
      add_string (b, "enhanced", rr->enhanced);
      add_string (b, "text", rr->text);
      add_string (b, "phase", rr->phase);
      add_bool (b, "local", rr->local);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
  fflush (stdout);
}

static gboolean
send_again (gpointer data)
{
  send_one (data);
  return G_SOURCE_REMOVE;
}

static void
on_sent (GObject *source, GAsyncResult *res, gpointer data)
{
  Probe *p = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsSmtpOutResult) r = vps_smtp_out_send_finish (p->out, res, &error);

  if (r == NULL && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      printf ("{\"cancelled\": true}\n");
      fflush (stdout);
      g_main_loop_quit (p->loop);
      return;
    }
  if (r == NULL)
    {
      g_printerr ("smtp-out-probe: %s\n", error->message);
      p->status = 1;
      g_main_loop_quit (p->loop);
      return;
    }
  print_result (p, r);
  if (--p->remaining > 0)
    {
      if (p->delay_ms > 0)
        g_timeout_add (p->delay_ms, send_again, p);
      else
        send_one (p);
      return;
    }
  g_main_loop_quit (p->loop);
}

static void
send_one (Probe *p)
{
  vps_smtp_out_send_async (p->out, &p->target, &p->msg, p->cancellable, on_sent, p);
}

static gboolean
cancel_now (gpointer cancellable)
{
  g_cancellable_cancel (cancellable);
  return G_SOURCE_REMOVE;
}

static gboolean
quit_loop (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

static guint
parse_notify (const char *s)
{
  g_auto (GStrv) parts = g_strsplit (s, ",", -1);
  guint bits = 0;

  for (gsize i = 0; parts[i] != NULL; i++)
    {
      if (g_ascii_strcasecmp (parts[i], "never") == 0)
        bits |= SMTP_NOTIFY_NEVER;
      else if (g_ascii_strcasecmp (parts[i], "success") == 0)
        bits |= SMTP_NOTIFY_SUCCESS;
      else if (g_ascii_strcasecmp (parts[i], "failure") == 0)
        bits |= SMTP_NOTIFY_FAILURE;
      else if (g_ascii_strcasecmp (parts[i], "delay") == 0)
        bits |= SMTP_NOTIFY_DELAY;
    }
  return bits;
}

int
main (int argc, char **argv)
{
  g_autofree char *address = NULL, *mx_name = NULL, *tls = NULL, *ca = NULL;
  g_autofree char *auth_user = NULL, *auth_password = NULL, *helo = NULL, *from = NULL;
  g_autofree char *message = NULL, *message_file = NULL, *body = NULL, *ret = NULL;
  g_autofree char *envid = NULL, *notify = NULL, *tls_min = NULL;
  g_auto (GStrv) rcpts = NULL;
  gint port = 25, repeat = 1, delay_ms = 0, timeout_ms = 0, connect_timeout_ms = 0;
  gint idle_ms = 0, max_messages = 0, linger_ms = 0, cancel_ms = 0;
  gboolean smtputf8 = FALSE, orcpt = FALSE, no_reuse = FALSE;
  GOptionEntry entries[] = {
    { "address", 0, 0, G_OPTION_ARG_STRING, &address, "server IP address", "IP" },
    { "port", 0, 0, G_OPTION_ARG_INT, &port, "server port", "N" },
    { "mx-name", 0, 0, G_OPTION_ARG_STRING, &mx_name, "MX host name", "NAME" },
    { "tls", 0, 0, G_OPTION_ARG_STRING, &tls, "none|may|encrypt|verify", "POLICY" },
    { "ca", 0, 0, G_OPTION_ARG_FILENAME, &ca, "CA bundle", "FILE" },
    { "tls-min-version", 0, 0, G_OPTION_ARG_STRING, &tls_min, "TLSv1.2|TLSv1.3", "V" },
    { "auth-user", 0, 0, G_OPTION_ARG_FILENAME, &auth_user, "AUTH user", "USER" },
    { "auth-password", 0, 0, G_OPTION_ARG_FILENAME, &auth_password, "AUTH password", "PW" },
    { "helo", 0, 0, G_OPTION_ARG_STRING, &helo, "EHLO name", "NAME" },
    { "from", 0, 0, G_OPTION_ARG_FILENAME, &from, "sender (\"\" for <>)", "ADDR" },
    { "rcpt", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rcpts, "recipient (repeat)", "ADDR" },
    { "notify", 0, 0, G_OPTION_ARG_STRING, &notify, "NOTIFY for every recipient", "LIST" },
    { "orcpt", 0, 0, G_OPTION_ARG_NONE, &orcpt, "ORCPT=rfc822;ADDR for each", NULL },
    { "message", 0, 0, G_OPTION_ARG_FILENAME, &message, "message text (\\n -> CRLF)", "TEXT" },
    { "message-file", 0, 0, G_OPTION_ARG_FILENAME, &message_file, "message as is", "FILE" },
    { "smtputf8", 0, 0, G_OPTION_ARG_NONE, &smtputf8, "envelope needs SMTPUTF8", NULL },
    { "body", 0, 0, G_OPTION_ARG_STRING, &body, "7BIT|8BITMIME|BINARYMIME", "TYPE" },
    { "ret", 0, 0, G_OPTION_ARG_STRING, &ret, "FULL|HDRS", "RET" },
    { "envid", 0, 0, G_OPTION_ARG_STRING, &envid, "DSN ENVID", "ID" },
    { "repeat", 0, 0, G_OPTION_ARG_INT, &repeat, "send N times", "N" },
    { "delay-ms", 0, 0, G_OPTION_ARG_INT, &delay_ms, "pause between sends", "MS" },
    { "timeout-ms", 0, 0, G_OPTION_ARG_INT, &timeout_ms, "every reply timeout", "MS" },
    { "connect-timeout-ms", 0, 0, G_OPTION_ARG_INT, &connect_timeout_ms, "connect", "MS" },
    { "idle-ms", 0, 0, G_OPTION_ARG_INT, &idle_ms, "idle timeout of the cache", "MS" },
    { "max-messages", 0, 0, G_OPTION_ARG_INT, &max_messages, "per connection", "N" },
    { "no-reuse", 0, 0, G_OPTION_ARG_NONE, &no_reuse, "QUIT after each message", NULL },
    { "cancel-ms", 0, 0, G_OPTION_ARG_INT, &cancel_ms, "cancel the send after", "MS" },
    { "linger-ms", 0, 0, G_OPTION_ARG_INT, &linger_ms, "run on before counting idle", "MS" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- send one message with mta/smtp-out");
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) content = NULL;
  g_autoptr (GMainLoop) loop = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autofree VpsSmtpOutRcpt *rr = NULL;
  g_autoptr (GPtrArray) orcpts = g_ptr_array_new_with_free_func (g_free);
  VpsSmtpOutConfig cfg = { 0 };
  Probe p = { 0 };
  guint n_rcpts;

  signal (SIGPIPE, SIG_IGN);
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("smtp-out-probe: %s\n", error->message);
      return 1;
    }
  if (address == NULL || from == NULL || rcpts == NULL
      || (message == NULL) == (message_file == NULL))
    {
      g_printerr ("smtp-out-probe: --address, --from, --rcpt and one of --message or "
                  "--message-file are required\n");
      return 1;
    }

  if (message_file != NULL)
    {
      char *data = NULL;
      gsize len = 0;

      if (!g_file_get_contents (message_file, &data, &len, &error))
        {
          g_printerr ("smtp-out-probe: %s\n", error->message);
          return 1;
        }
      content = g_bytes_new_take (data, len);
    }
  else
    {
      g_autoptr (GString) s = g_string_new (NULL);

      for (const char *c = message; *c != '\0'; c++)
        {
          if (c[0] == '\\' && c[1] == 'n')
            {
              g_string_append (s, "\r\n");
              c++;
            }
          else
            g_string_append_c (s, *c);
        }
      content = g_string_free_to_bytes (g_steal_pointer (&s));
    }

  cfg.helo_name = helo != NULL ? helo : "probe.test";
  if (timeout_ms > 0)
    cfg.greeting_timeout = cfg.helo_timeout = cfg.starttls_timeout = cfg.auth_timeout
        = cfg.mail_timeout = cfg.rcpt_timeout = cfg.data_timeout = cfg.data_block_timeout
        = cfg.data_done_timeout = cfg.rset_timeout = cfg.quit_timeout = (guint)timeout_ms;
  cfg.connect_timeout = (guint)connect_timeout_ms;
  cfg.idle_timeout = (guint)idle_ms;
  cfg.max_messages = (guint)max_messages;
  cfg.no_reuse = no_reuse;
  cfg.tls_ca_file = ca;
  cfg.tls_min_version = tls_min;
  p.out = vps_smtp_out_new (&cfg, &error);
  if (p.out == NULL)
    {
      g_printerr ("smtp-out-probe: %s\n", error->message);
      return 1;
    }

  p.target.address = address;
  p.target.port = (guint16)port;
  p.target.mx_name = mx_name;
  p.target.auth_user = auth_user;
  p.target.auth_password = auth_password;
  if (tls != NULL && !vps_smtp_out_tls_policy_from_name (tls, &p.target.tls))
    {
      g_printerr ("smtp-out-probe: unknown TLS policy %s\n", tls);
      return 1;
    }

  n_rcpts = g_strv_length (rcpts);
  rr = g_new0 (VpsSmtpOutRcpt, n_rcpts);
  for (guint i = 0; i < n_rcpts; i++)
    {
      rr[i].address = rcpts[i];
      rr[i].notify = notify != NULL ? parse_notify (notify) : 0;
      if (orcpt)
        {
          char *o = g_strconcat ("rfc822;", rcpts[i], NULL);
          g_ptr_array_add (orcpts, o);
          rr[i].orcpt = o;
        }
    }
  p.msg.log_id = "PROBE";
  p.msg.sender = from;
  p.msg.rcpts = rr;
  p.msg.n_rcpts = n_rcpts;
  p.msg.smtputf8 = smtputf8;
  p.msg.envid = envid;
  p.msg.content = content;
  if (ret != NULL)
    p.msg.ret = g_ascii_strcasecmp (ret, "FULL") == 0 ? SMTP_RET_FULL : SMTP_RET_HDRS;
  if (body != NULL)
    {
      if (g_ascii_strcasecmp (body, "8BITMIME") == 0)
        p.msg.body = SMTP_BODY_8BITMIME;
      else if (g_ascii_strcasecmp (body, "BINARYMIME") == 0)
        p.msg.body = SMTP_BODY_BINARYMIME;
      else
        p.msg.body = SMTP_BODY_7BIT;
    }

  loop = g_main_loop_new (NULL, FALSE);
  p.loop = loop;
  p.remaining = MAX (repeat, 1);
  p.delay_ms = (guint)MAX (delay_ms, 0);
  p.cancellable = cancellable;
  if (cancel_ms > 0)
    g_timeout_add ((guint)cancel_ms, cancel_now, cancellable);
  send_one (&p);
  g_main_loop_run (loop);
  if (linger_ms > 0)
    {
      /* let the last RSET (or an idle timeout) complete */
      g_timeout_add ((guint)linger_ms, quit_loop, loop);
      g_main_loop_run (loop);
    }
  printf ("{\"idle\": %u}\n", vps_smtp_out_get_n_idle (p.out));
  fflush (stdout);
  vps_smtp_out_unref (p.out);
  return p.status;
}
