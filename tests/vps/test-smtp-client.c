/* SPDX-License-Identifier: MIT
 *
 * test-smtp-client.c — the quarantine release's SMTP client: the DATA
 * encoding (CRLF normalisation, dot-stuffing) as bytes, reply formatting,
 * and every error branch of vps_smtp_client_send() against a scripted peer
 * thread (refused input before connecting, malformed / oversized / missing
 * replies, a peer that closes, timeouts, 4xx / 5xx / 421 at each step).
 * The happy path against a real MTA (smtp-sink) is in
 * tests/integration/test_quarantine_release.py.
 */
#include "vps/smtp-client.h"

#include <string.h>

/* ---- encoding ---------------------------------------------------------------- */

typedef struct
{
  const char *in;
  const char *out;
} EncodeCase;

static const EncodeCase encode_cases[] = {
  { "", ".\r\n" },
  { "a", "a\r\n.\r\n" },
  { "a\n", "a\r\n.\r\n" },
  { "a\r\n", "a\r\n.\r\n" },
  { "a\nb\r\nc", "a\r\nb\r\nc\r\n.\r\n" },
  /* a lone CR is a line end too: "\r.\r" must not reach the wire */
  { "a\r.\rb\n", "a\r\n..\r\nb\r\n.\r\n" },
  { ".\n", "..\r\n.\r\n" },
  { "x\n.\n..y\n.z", "x\r\n..\r\n...y\r\n..z\r\n.\r\n" },
  { "\n\n", "\r\n\r\n.\r\n" },
  { "a.b\n", "a.b\r\n.\r\n" }, /* only a leading dot is doubled */
  { "a\r\n\r\n.\r\n", "a\r\n\r\n..\r\n.\r\n" },
};

static void
test_encode (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (encode_cases); i++)
    {
      g_autoptr (GBytes) got
          = vps_smtp_client_encode_data (encode_cases[i].in, strlen (encode_cases[i].in));
      gsize len = 0;
      const char *data = g_bytes_get_data (got, &len);

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      g_assert_cmpmem (data, len, encode_cases[i].out, strlen (encode_cases[i].out));
    }
}

static void
test_encode_nul_kept (void)
{
  g_autoptr (GBytes) got = vps_smtp_client_encode_data ("a\0b\n", 4);

  g_assert_cmpmem (g_bytes_get_data (got, NULL), g_bytes_get_size (got), "a\0b\r\n.\r\n", 8);
}

static void
test_describe (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MailReply) r
      = mail_reply_parse ("550-5.7.1 first\r\n550 5.7.1 second\r\n", 36, NULL, &error);
  g_autoptr (MailReply) plain = mail_reply_parse ("354 go\r\n", 8, NULL, &error);
  g_autofree char *a = NULL;
  g_autofree char *b = NULL;

  g_assert_no_error (error);
  a = vps_smtp_client_describe_reply (r);
  b = vps_smtp_client_describe_reply (plain);
  g_assert_cmpstr (a, ==, "550 5.7.1 first / second");
  g_assert_cmpstr (b, ==, "354 go");
}

/* ---- a scripted peer ------------------------------------------------------- */

/* The peer sends `script` at once when a client connects (the client reads
 * one reply at a time, the rest waits in its buffer), then reads until the
 * client closes, keeping what it got; close_now: it closes right after. */
typedef struct
{
  GSocket *listener;
  char *script;
  gboolean close_now;
  GString *received;
  GThread *thread;
  guint16 port;
} Peer;

static gpointer
peer_run (gpointer data)
{
  Peer *p = data;
  g_autoptr (GSocket) c = g_socket_accept (p->listener, NULL, NULL);
  char buf[4096];
  gssize n;

  if (c == NULL)
    return NULL;
  if (p->script[0] != '\0')
    g_socket_send (c, p->script, strlen (p->script), NULL, NULL);
  if (!p->close_now)
    while ((n = g_socket_receive (c, buf, sizeof buf, NULL, NULL)) > 0)
      g_string_append_len (p->received, buf, n);
  g_socket_close (c, NULL);
  return NULL;
}

static Peer *
peer_new (const char *script, gboolean close_now)
{
  Peer *p = g_new0 (Peer, 1);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) any = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GError) error = NULL;

  p->listener
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_assert_no_error (error);
  g_assert_true (g_socket_bind (p->listener, any, TRUE, &error));
  g_assert_true (g_socket_listen (p->listener, &error));
  bound = g_socket_get_local_address (p->listener, &error);
  g_assert_no_error (error);
  p->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  p->script = g_strdup (script);
  p->close_now = close_now;
  p->received = g_string_new (NULL);
  p->thread = g_thread_new ("peer", peer_run, p);
  return p;
}

/* Wait until the peer is done (the client closed): p->received is whole. */
static void
peer_join (Peer *p)
{
  if (p->thread != NULL)
    g_thread_join (g_steal_pointer (&p->thread));
}

static void
peer_free (Peer *p)
{
  peer_join (p);
  g_object_unref (p->listener);
  g_string_free (p->received, TRUE);
  g_free (p->script);
  g_free (p);
}

static VpsSmtpClientResult *
send_to (Peer *p, const char *const *rcpts, guint timeout_ms, GError **error)
{
  g_autofree char *hp = g_strdup_printf ("127.0.0.1:%u", p->port);
  g_autoptr (GBytes) msg = g_bytes_new_static ("Subject: t\n\n.x\n", 15);
  static const char *const one[] = { "bob@example.org", NULL };
  VpsSmtpClientOptions o = { .helo_name = "client.test", .timeout_ms = timeout_ms };

  return vps_smtp_client_send (hp, "alice@example.net", rcpts ? rcpts : one, msg, &o, NULL, error);
}

#define OK_UP_TO_MAIL "220 peer\r\n250-peer\r\n250 SIZE\r\n250 2.1.0 Ok\r\n"

static void
test_success_partial (void)
{
  static const char *const rcpts[] = { "bob@example.org", "carol@example.org", NULL };
  Peer *p = peer_new (OK_UP_TO_MAIL "250 2.1.5 Ok\r\n550 5.1.1 no carol\r\n354 go\r\n"
                                    "250 2.0.0 queued\r\n221 bye\r\n",
                      FALSE);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsSmtpClientResult) r = send_to (p, rcpts, 5000, &error);
  g_autofree char *final = NULL;
  VpsSmtpClientRcpt *carol;

  g_assert_no_error (error);
  g_assert_nonnull (r);
  g_assert_cmpuint (r->n_accepted, ==, 1);
  g_assert_cmpuint (r->rcpts->len, ==, 2);
  carol = g_ptr_array_index (r->rcpts, 1);
  g_assert_cmpstr (carol->address, ==, "carol@example.org");
  g_assert_false (carol->accepted);
  g_assert_cmpuint (mail_reply_get_code (carol->reply), ==, 550);
  final = vps_smtp_client_describe_reply (r->reply);
  g_assert_cmpstr (final, ==, "250 2.0.0 queued");
  peer_free (p);
}

static void
test_commands_on_the_wire (void)
{
  Peer *p
      = peer_new (OK_UP_TO_MAIL "250 2.1.5 Ok\r\n354 go\r\n250 2.0.0 queued\r\n221 bye\r\n", FALSE);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsSmtpClientResult) r = send_to (p, NULL, 5000, &error);

  g_assert_no_error (error);
  g_assert_nonnull (r);
  peer_join (p);
  /* SIZE is what goes on the wire after 354: 12 + 2 + 5 + 3 octets */
  g_assert_cmpstr (p->received->str, ==,
                   "EHLO client.test\r\n"
                   "MAIL FROM:<alice@example.net> SIZE=22\r\n"
                   "RCPT TO:<bob@example.org>\r\n"
                   "DATA\r\n"
                   "Subject: t\r\n\r\n..x\r\n.\r\n"
                   "QUIT\r\n");
  peer_free (p);
}

typedef struct
{
  const char *name;
  const char *script;
  gboolean close_now;
  int code;
  const char *needle; /* in the error message */
} ErrorCase;

static const ErrorCase error_cases[] = {
  { "garbage-greeting", "hello there\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_PROTOCOL,
    "greeting: malformed reply" },
  { "mixed-codes", "220-a\r\n250 b\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_PROTOCOL,
    "greeting: malformed reply" },
  { "control-in-reply", "220 a\001b\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_PROTOCOL,
    "greeting: malformed reply" },
  { "closed", "", TRUE, VPS_SMTP_CLIENT_ERROR_IO, "greeting: the server closed" },
  { "closed-after-greeting", "220 a\r\n", TRUE, VPS_SMTP_CLIENT_ERROR_IO, "EHLO:" },
  { "greeting-554", "554 5.7.1 go away\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_REJECTED,
    "greeting: 554 5.7.1 go away" },
  { "greeting-421", "421 4.3.2 busy\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_TEMPFAIL,
    "greeting: 421 4.3.2 busy" },
  { "ehlo-421", "220 a\r\n421 4.3.2 bye\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_TEMPFAIL,
    "EHLO: 421 4.3.2 bye" },
  { "helo-refused", "220 a\r\n502 5.5.2 no\r\n550 5.7.1 not you\r\n", FALSE,
    VPS_SMTP_CLIENT_ERROR_REJECTED, "HELO: 550 5.7.1 not you" },
  { "mail-451", "220 a\r\n250 a\r\n451 4.3.0 later\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_TEMPFAIL,
    "MAIL FROM:<alice@example.net>: 451 4.3.0 later" },
  { "mail-354", "220 a\r\n250 a\r\n354 what\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_PROTOCOL,
    "MAIL FROM:<alice@example.net>: unexpected reply 354 what" },
  { "rcpt-550", OK_UP_TO_MAIL "550 5.1.1 no such user\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_REJECTED,
    "RCPT TO: no recipient accepted: <bob@example.org>: 550 5.1.1 no such user" },
  { "rcpt-450", OK_UP_TO_MAIL "450 4.2.0 greylisted\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_TEMPFAIL,
    "<bob@example.org>: 450 4.2.0 greylisted" },
  { "rcpt-421", OK_UP_TO_MAIL "421 4.4.2 closing\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_TEMPFAIL,
    "RCPT TO:<bob@example.org>: 421 4.4.2 closing" },
  { "data-554", OK_UP_TO_MAIL "250 ok\r\n554 5.5.1 no valid recipients\r\n", FALSE,
    VPS_SMTP_CLIENT_ERROR_REJECTED, "DATA: 554 5.5.1 no valid recipients" },
  { "eod-552", OK_UP_TO_MAIL "250 ok\r\n354 go\r\n552 5.3.4 too big\r\n", FALSE,
    VPS_SMTP_CLIENT_ERROR_REJECTED, "end of data: 552 5.3.4 too big" },
  { "eod-closed", OK_UP_TO_MAIL "250 ok\r\n354 go\r\n", TRUE, VPS_SMTP_CLIENT_ERROR_IO, NULL },
  { "silent", "", FALSE, VPS_SMTP_CLIENT_ERROR_TIMEOUT, "greeting: timed out" },
  { "no-final-line", "220-a\r\n220-b\r\n", FALSE, VPS_SMTP_CLIENT_ERROR_TIMEOUT,
    "greeting: timed out" },
};

static void
test_error (gconstpointer data)
{
  const ErrorCase *c = data;
  Peer *p = peer_new (c->script, c->close_now);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsSmtpClientResult) r = send_to (p, NULL, 500, &error);

  g_assert_null (r);
  g_assert_error (error, VPS_SMTP_CLIENT_ERROR, c->code);
  if (c->needle != NULL && strstr (error->message, c->needle) == NULL)
    g_error ("'%s' not in '%s'", c->needle, error->message);
  peer_free (p);
}

/* A reply line without LF longer than the limit, and a reply with more lines
 * than the limit: refused with bounded memory, not read forever. */
static void
test_reply_limits (void)
{
  g_autoptr (GString) s = g_string_new ("220 ");
  Peer *p;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsSmtpClientResult) r = NULL;

  for (int i = 0; i < VPS_SMTP_CLIENT_MAX_REPLY_LINE + 10; i++)
    g_string_append_c (s, 'x');
  p = peer_new (s->str, FALSE);
  r = send_to (p, NULL, 2000, &error);
  g_assert_null (r);
  g_assert_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, "longer than"));
  peer_free (p);
  g_clear_error (&error);

  g_string_truncate (s, 0);
  for (int i = 0; i <= VPS_SMTP_CLIENT_MAX_REPLY_LINES; i++)
    g_string_append (s, "220-x\r\n");
  g_string_append (s, "220 x\r\n");
  p = peer_new (s->str, FALSE);
  r = send_to (p, NULL, 2000, &error);
  g_assert_null (r);
  g_assert_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, "more than"));
  peer_free (p);
}

/* Refused before any connection: port 9 on 127.0.0.1 is never dialled. */
static void
test_invalid_input (void)
{
  static const char *const none[] = { NULL };
  static const char *const injected[] = { "bob@example.org>\r\nRCPT TO:<x@y", NULL };
  static const char *const ok[] = { "bob@example.org", NULL };
  g_autoptr (GBytes) msg = g_bytes_new_static ("x\n", 2);
  struct
  {
    const char *host_port, *sender;
    const char *const *rcpts;
    const char *helo;
  } cases[] = {
    { "127.0.0.1:9", "a@b.example", none, NULL },
    { "127.0.0.1:9", "a@b.example", injected, NULL },
    { "127.0.0.1:9", "a@b.example\r\nRSET", ok, NULL },
    { "127.0.0.1:9", "a@b.example", ok, "bad helo" },
    { "", "a@b.example", ok, NULL },
    { "host\r\n:25", "a@b.example", ok, NULL },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      VpsSmtpClientOptions o = { .helo_name = cases[i].helo, .timeout_ms = 500 };
      VpsSmtpClientResult *r = vps_smtp_client_send (cases[i].host_port, cases[i].sender,
                                                     cases[i].rcpts, msg, &o, NULL, &error);

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      g_assert_null (r);
      g_assert_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_INVALID);
    }
}

static void
test_connect_refused (void)
{
  Peer *p = peer_new ("", TRUE);
  g_autofree char *hp = g_strdup_printf ("[127.0.0.1]:%u", p->port);
  static const char *const ok[] = { "bob@example.org", NULL };
  g_autoptr (GBytes) msg = g_bytes_new_static ("x\n", 2);
  g_autoptr (GError) error = NULL;

  /* connect once so the peer thread ends, then nobody listens there */
  g_assert_null (vps_smtp_client_send (hp, "", ok, msg, NULL, NULL, &error));
  g_clear_error (&error);
  peer_free (p);
  g_assert_null (vps_smtp_client_send (hp, "", ok, msg, NULL, NULL, &error));
  g_assert_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_CONNECT);
  g_assert_nonnull (strstr (error->message, "connect to [127.0.0.1]:"));
}

static gpointer
cancel_later (gpointer data)
{
  g_usleep (200 * 1000);
  g_cancellable_cancel (data);
  return NULL;
}

/* A peer that never greets, and a cancel from another thread: the client
 * returns at once, not at its 10 s timeout. */
static void
test_cancelled (void)
{
  Peer *p = peer_new ("", FALSE);
  g_autofree char *hp = g_strdup_printf ("127.0.0.1:%u", p->port);
  static const char *const ok[] = { "bob@example.org", NULL };
  g_autoptr (GBytes) msg = g_bytes_new_static ("x\n", 2);
  g_autoptr (GCancellable) cancel = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  VpsSmtpClientOptions o = { .timeout_ms = 10000 };
  gint64 start = g_get_monotonic_time ();
  GThread *t = g_thread_new ("cancel", cancel_later, cancel);

  g_assert_null (vps_smtp_client_send (hp, "", ok, msg, &o, cancel, &error));
  g_assert_error (error, VPS_SMTP_CLIENT_ERROR, VPS_SMTP_CLIENT_ERROR_CANCELLED);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 5 * G_USEC_PER_SEC);
  g_thread_join (t);
  peer_free (p);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  g_test_add_func ("/vps/smtp-client/encode", test_encode);
  g_test_add_func ("/vps/smtp-client/encode/nul-kept", test_encode_nul_kept);
  g_test_add_func ("/vps/smtp-client/describe", test_describe);
  g_test_add_func ("/vps/smtp-client/send/partial", test_success_partial);
  g_test_add_func ("/vps/smtp-client/send/wire", test_commands_on_the_wire);
  for (gsize i = 0; i < G_N_ELEMENTS (error_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/vps/smtp-client/error/%s", error_cases[i].name);

      g_test_add_data_func (path, &error_cases[i], test_error);
    }
  g_test_add_func ("/vps/smtp-client/error/reply-limits", test_reply_limits);
  g_test_add_func ("/vps/smtp-client/error/invalid-input", test_invalid_input);
  g_test_add_func ("/vps/smtp-client/error/connect-refused", test_connect_refused);
  g_test_add_func ("/vps/smtp-client/error/cancelled", test_cancelled);
  return g_test_run ();
}
