/* SPDX-License-Identifier: MIT
 *
 * test-milter-command.c — MTA -> milter packets (proto/milter/milter.h):
 * decoding what Postfix and Sendmail send, encoding it byte for byte as
 * Postfix does (hand-written wire bytes from MILTER.md's layouts), round
 * trips through the framer, and one case per malformed-input branch with
 * its exact MilterError.
 */
#include <string.h>

#include "proto/milter/milter.h"

#define OK (-1)
/* a byte-string literal as (data, len), embedded NULs included */
#define BYTES(s) (const guint8 *)(s), sizeof (s) - 1

static MilterCommandPacket *
decode (char cmd, const guint8 *data, gsize len, GError **error)
{
  MilterFrame f = { (guint8)cmd, data, len };

  return milter_command_decode (&f, error);
}

/* Split exactly one frame off `wire` and decode it. */
static MilterCommandPacket *
decode_wire (const GByteArray *wire, GError **error)
{
  MilterFrame f;
  gsize consumed = 0;

  g_assert_true (
      milter_frame_split (wire->data, wire->len, MILTER_MAX_PACKET, &consumed, &f, NULL));
  g_assert_cmpuint (consumed, ==, wire->len);
  return milter_command_decode (&f, error);
}

static void
assert_wire (const GByteArray *got, const guint8 *want, gsize want_len)
{
  g_assert_cmpmem (got->data, got->len, want, want_len);
}

/* ---- malformed input: one case per branch ------------------------------- */

typedef struct
{
  const char *name;
  char cmd;
  const guint8 *data;
  gsize len;
  int error;
} DecodeCase;

static const DecodeCase decode_cases[] = {
  /* valid shapes (values are checked in the tests below) */
  { "optneg", 'O', BYTES ("\0\0\0\6\0\0\1\xff\0\x1f\xff\xff"), OK },
  { "macro-empty-list", 'D', BYTES ("C"), OK },
  { "macro-any-stage", 'D', BYTES ("L{x}\0y\0"), OK },
  { "macro-empty-value", 'D', BYTES ("Mi\0\0"), OK },
  { "connect-unknown", 'C', BYTES ("host\0U"), OK },
  { "connect-unix", 'C', BYTES ("localhost\0L\0\0/run/sock\0"), OK },
  { "helo-empty", 'H', BYTES ("\0"), OK },
  { "mail-args", 'M', BYTES ("<a@b>\0SIZE=1\0BODY=8BITMIME\0"), OK },
  { "rcpt-null-path", 'R', BYTES ("<>\0"), OK },
  { "header-empty-value", 'L', BYTES ("X\0\0"), OK },
  { "body-empty", 'B', BYTES (""), OK },
  { "eob-with-chunk", 'E', BYTES ("last\r\n"), OK },
  { "data", 'T', BYTES (""), OK },

  { "unknown-command", 'Z', BYTES (""), MILTER_ERROR_UNKNOWN_COMMAND },
  { "reply-byte-as-command", 'c', BYTES (""), MILTER_ERROR_UNKNOWN_COMMAND },
  { "nul-command", '\0', BYTES (""), MILTER_ERROR_UNKNOWN_COMMAND },
  { "optneg-empty", 'O', BYTES (""), MILTER_ERROR_TRUNCATED },
  { "optneg-11-bytes", 'O', BYTES ("\0\0\0\6\0\0\1\xff\0\x1f\xff"), MILTER_ERROR_TRUNCATED },
  { "optneg-13-bytes", 'O', BYTES ("\0\0\0\6\0\0\1\xff\0\x1f\xff\xff\0"), MILTER_ERROR_TRAILING },
  { "macro-no-stage", 'D', BYTES (""), MILTER_ERROR_TRUNCATED },
  { "macro-odd", 'D', BYTES ("Cj\0host\0_\0"), MILTER_ERROR_ODD_MACROS },
  { "macro-name-without-nul", 'D', BYTES ("Cj"), MILTER_ERROR_UNTERMINATED },
  { "macro-value-without-nul", 'D', BYTES ("Cj\0host"), MILTER_ERROR_UNTERMINATED },
  { "macro-empty-name", 'D', BYTES ("C\0value\0"), MILTER_ERROR_EMPTY_FIELD },
  { "connect-empty", 'C', BYTES (""), MILTER_ERROR_UNTERMINATED },
  { "connect-host-without-nul", 'C', BYTES ("host"), MILTER_ERROR_UNTERMINATED },
  { "connect-no-family", 'C', BYTES ("host\0"), MILTER_ERROR_TRUNCATED },
  { "connect-bad-family", 'C',
    BYTES ("host\0"
           "5\0\x19"
           "1.2.3.4\0"),
    MILTER_ERROR_FAMILY },
  { "connect-family-nul", 'C', BYTES ("host\0\0"), MILTER_ERROR_FAMILY },
  { "connect-no-port", 'C',
    BYTES ("host\0"
           "4"),
    MILTER_ERROR_TRUNCATED },
  { "connect-half-port", 'C',
    BYTES ("host\0"
           "4\0"),
    MILTER_ERROR_TRUNCATED },
  { "connect-no-address", 'C',
    BYTES ("host\0"
           "4\0\x19"),
    MILTER_ERROR_UNTERMINATED },
  { "connect-address-without-nul", 'C',
    BYTES ("host\0"
           "4\0\x19"
           "1.2.3.4"),
    MILTER_ERROR_UNTERMINATED },
  { "connect-trailing", 'C',
    BYTES ("host\0"
           "4\0\x19"
           "1.2.3.4\0x"),
    MILTER_ERROR_TRAILING },
  { "connect-unknown-trailing", 'C', BYTES ("host\0U\0\0"), MILTER_ERROR_TRAILING },
  { "helo-empty-packet", 'H', BYTES (""), MILTER_ERROR_UNTERMINATED },
  { "helo-without-nul", 'H', BYTES ("example.org"), MILTER_ERROR_UNTERMINATED },
  { "helo-two-strings", 'H', BYTES ("a\0b\0"), MILTER_ERROR_TRAILING },
  { "mail-empty-packet", 'M', BYTES (""), MILTER_ERROR_UNTERMINATED },
  { "mail-without-nul", 'M', BYTES ("<a@b>"), MILTER_ERROR_UNTERMINATED },
  { "mail-arg-without-nul", 'M', BYTES ("<a@b>\0SIZE=1"), MILTER_ERROR_UNTERMINATED },
  { "mail-empty-address", 'M', BYTES ("\0"), MILTER_ERROR_EMPTY_FIELD },
  { "rcpt-without-nul", 'R', BYTES ("<a@b>"), MILTER_ERROR_UNTERMINATED },
  { "header-empty", 'L', BYTES (""), MILTER_ERROR_UNTERMINATED },
  { "header-no-value", 'L', BYTES ("Subject\0"), MILTER_ERROR_UNTERMINATED },
  { "header-value-without-nul", 'L', BYTES ("Subject\0hi"), MILTER_ERROR_UNTERMINATED },
  { "header-empty-name", 'L', BYTES ("\0value\0"), MILTER_ERROR_EMPTY_FIELD },
  { "header-trailing", 'L', BYTES ("a\0b\0c\0"), MILTER_ERROR_TRAILING },
  { "unknown-without-nul", 'U', BYTES ("VRFY x"), MILTER_ERROR_UNTERMINATED },
  { "unknown-trailing", 'U', BYTES ("VRFY x\0y"), MILTER_ERROR_TRAILING },
  { "data-with-bytes", 'T', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "eoh-with-bytes", 'N', BYTES ("\0"), MILTER_ERROR_TRAILING },
  { "abort-with-bytes", 'A', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "quit-with-bytes", 'Q', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "quit-nc-with-bytes", 'K', BYTES ("x"), MILTER_ERROR_TRAILING },
};

static void
test_decode_case (gconstpointer data)
{
  const DecodeCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (MilterCommandPacket) p = decode (c->cmd, c->data, c->len, &error);

  if (c->error == OK)
    {
      g_assert_no_error (error);
      g_assert_nonnull (p);
      g_assert_cmpint (p->command, ==, c->cmd);
      return;
    }
  g_assert_error (error, MILTER_ERROR, c->error);
  g_assert_null (p);
}

/* ---- limits ------------------------------------------------------------- */

static void
test_decode_limits (void)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (MilterCommandPacket) p = NULL;
  g_autofree char *long_name = g_strnfill (MILTER_MAX_NAME + 1, 'n');
  g_autofree char *max_name = g_strnfill (MILTER_MAX_NAME, 'n');

  /* exactly MILTER_MAX_MACROS pairs, then one more */
  g_byte_array_append (buf, (const guint8 *)"C", 1);
  for (int i = 0; i < MILTER_MAX_MACROS; i++)
    g_byte_array_append (buf, (const guint8 *)"m\0v", 4);
  p = decode ('D', buf->data, buf->len, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->u.macro.n_pairs, ==, MILTER_MAX_MACROS);
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_append (buf, (const guint8 *)"m\0v", 4);
  p = decode ('D', buf->data, buf->len, &error);
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT);
  g_assert_null (p);
  g_clear_error (&error);

  /* MILTER_MAX_ARGS strings in MAIL, then one more */
  g_byte_array_set_size (buf, 0);
  for (int i = 0; i < MILTER_MAX_ARGS; i++)
    g_byte_array_append (buf, (const guint8 *)"<a>", 4);
  p = decode ('M', buf->data, buf->len, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->u.envelope.argc, ==, MILTER_MAX_ARGS);
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_append (buf, (const guint8 *)"<a>", 4);
  p = decode ('R', buf->data, buf->len, &error);
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT);
  g_clear_error (&error);

  /* header and macro names at and over MILTER_MAX_NAME */
  g_byte_array_set_size (buf, 0);
  g_byte_array_append (buf, (const guint8 *)max_name, MILTER_MAX_NAME + 1);
  g_byte_array_append (buf, (const guint8 *)"v", 2);
  p = decode ('L', buf->data, buf->len, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (p->u.header.name), ==, MILTER_MAX_NAME);
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (buf, 0);
  g_byte_array_append (buf, (const guint8 *)long_name, MILTER_MAX_NAME + 2);
  g_byte_array_append (buf, (const guint8 *)"v", 2);
  p = decode ('L', buf->data, buf->len, &error);
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT);
  g_clear_error (&error);
  g_byte_array_set_size (buf, 0);
  g_byte_array_append (buf, (const guint8 *)"C", 1);
  g_byte_array_append (buf, (const guint8 *)long_name, MILTER_MAX_NAME + 2);
  g_byte_array_append (buf, (const guint8 *)"v", 2);
  p = decode ('D', buf->data, buf->len, &error);
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT);
}

/* ---- values of what Postfix sends --------------------------------------- */

static void
test_decode_values (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MilterCommandPacket) p = NULL;

  p = decode ('O', BYTES ("\0\0\0\6\0\0\1\xff\0\x1f\xff\xff"), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->u.optneg.version, ==, 6);
  g_assert_cmphex (p->u.optneg.actions, ==, 0x1FF);
  g_assert_cmphex (p->u.optneg.protocol, ==, 0x1FFFFF);
  g_clear_pointer (&p, milter_command_packet_free);

  p = decode ('D', BYTES ("Cj\0mx.example.org\0{daemon_name}\0smtpd\0_\0\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpint (p->u.macro.stage, ==, 'C');
  g_assert_cmpuint (p->u.macro.n_pairs, ==, 3);
  g_assert_cmpstr (p->u.macro.pairs[0], ==, "j");
  g_assert_cmpstr (p->u.macro.pairs[1], ==, "mx.example.org");
  g_assert_cmpstr (p->u.macro.pairs[2], ==, "{daemon_name}");
  g_assert_cmpstr (p->u.macro.pairs[3], ==, "smtpd");
  g_assert_cmpstr (p->u.macro.pairs[4], ==, "_");
  g_assert_cmpstr (p->u.macro.pairs[5], ==, "");
  g_assert_null (p->u.macro.pairs[6]);
  g_clear_pointer (&p, milter_command_packet_free);

  p = decode ('C',
              BYTES ("client.example.net\0"
                     "6\xc3\x50"
                     "2001:db8::1\0"),
              &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.connect.host, ==, "client.example.net");
  g_assert_cmpint (p->u.connect.family, ==, MILTER_FAMILY_INET6);
  g_assert_cmpuint (p->u.connect.port, ==, 50000);
  g_assert_cmpstr (p->u.connect.address, ==, "2001:db8::1");
  g_clear_pointer (&p, milter_command_packet_free);

  p = decode ('C', BYTES ("unknown\0U"), &error);
  g_assert_no_error (error);
  g_assert_cmpint (p->u.connect.family, ==, MILTER_FAMILY_UNKNOWN);
  g_assert_cmpuint (p->u.connect.port, ==, 0);
  g_assert_null (p->u.connect.address);
  g_clear_pointer (&p, milter_command_packet_free);

  p = decode ('M', BYTES ("<a@example.org>\0SIZE=1234\0BODY=8BITMIME\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->u.envelope.argc, ==, 3);
  g_assert_cmpstr (p->u.envelope.argv[0], ==, "<a@example.org>");
  g_assert_cmpstr (p->u.envelope.argv[1], ==, "SIZE=1234");
  g_assert_cmpstr (p->u.envelope.argv[2], ==, "BODY=8BITMIME");
  g_assert_null (p->u.envelope.argv[3]);
  g_clear_pointer (&p, milter_command_packet_free);

  p = decode ('L', BYTES ("Subject\0 hello\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.header.name, ==, "Subject");
  g_assert_cmpstr (p->u.header.value, ==, " hello");
  g_clear_pointer (&p, milter_command_packet_free);

  /* body bytes are raw: NULs and bare CR survive */
  p = decode ('B', BYTES ("a\0b\rc\r\n"), &error);
  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (p->u.body, NULL), g_bytes_get_size (p->u.body), "a\0b\rc\r\n",
                   7);
  g_clear_pointer (&p, milter_command_packet_free);

  p = decode ('U', BYTES ("XCLIENT foo\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.unknown, ==, "XCLIENT foo");
}

/* ---- encoding: byte-exact ----------------------------------------------- */

static void
test_encode_bytes (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  const MilterOptions postfix = { 6, 0x1FF, 0x1FFFFF };
  const char *const macros[] = { "j", "mx", "{daemon_name}", "smtpd", NULL };
  const char *const mail[] = { "<a@b>", "SIZE=10", NULL };
  const char *const rcpt[] = { "<c@d>", NULL };

  /* the OPTNEG Postfix sends */
  milter_encode_optneg (out, &postfix);
  assert_wire (out, BYTES ("\0\0\0\x0d"
                           "O"
                           "\0\0\0\6"
                           "\0\0\1\xff"
                           "\0\x1f\xff\xff"));
  g_byte_array_set_size (out, 0);

  milter_encode_macro (out, 'C', macros);
  assert_wire (out, BYTES ("\0\0\0\x1b"
                           "D"
                           "C"
                           "j\0"
                           "mx\0"
                           "{daemon_name}\0"
                           "smtpd\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_macro (out, 'T', NULL);
  assert_wire (out, BYTES ("\0\0\0\2"
                           "DT"));
  g_byte_array_set_size (out, 0);

  milter_encode_connect (out, "mail.example.org", MILTER_FAMILY_INET, 25, "192.0.2.1");
  assert_wire (out, BYTES ("\0\0\0\x1f"
                           "C"
                           "mail.example.org\0"
                           "4"
                           "\0\x19"
                           "192.0.2.1\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_connect (out, "localhost", MILTER_FAMILY_UNKNOWN, 99, "ignored");
  assert_wire (out, BYTES ("\0\0\0\x0c"
                           "C"
                           "localhost\0"
                           "U"));
  g_byte_array_set_size (out, 0);

  milter_encode_helo (out, "client.example");
  assert_wire (out, BYTES ("\0\0\0\x10"
                           "H"
                           "client.example\0"));
  g_byte_array_set_size (out, 0);

  milter_encode_envelope (out, MILTER_CMD_MAIL, mail);
  assert_wire (out, BYTES ("\0\0\0\x0f"
                           "M"
                           "<a@b>\0"
                           "SIZE=10\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_envelope (out, MILTER_CMD_RCPT, rcpt);
  assert_wire (out, BYTES ("\0\0\0\x07"
                           "R"
                           "<c@d>\0"));
  g_byte_array_set_size (out, 0);

  milter_encode_header (out, "To", " x");
  assert_wire (out, BYTES ("\0\0\0\x07"
                           "L"
                           "To\0"
                           " x\0"));
  g_byte_array_set_size (out, 0);

  milter_encode_unknown (out, "HELP");
  assert_wire (out, BYTES ("\0\0\0\x06"
                           "U"
                           "HELP\0"));
  g_byte_array_set_size (out, 0);

  milter_encode_data (out);
  milter_encode_eoh (out);
  milter_encode_eob (out);
  milter_encode_abort (out);
  milter_encode_quit_nc (out);
  milter_encode_quit (out);
  assert_wire (out, BYTES ("\0\0\0\1T"
                           "\0\0\0\1N"
                           "\0\0\0\1E"
                           "\0\0\0\1A"
                           "\0\0\0\1K"
                           "\0\0\0\1Q"));
  g_byte_array_set_size (out, 0);

  g_assert_cmpuint (milter_encode_body (out, "x\r\n", 3), ==, 1);
  assert_wire (out, BYTES ("\0\0\0\4"
                           "B"
                           "x\r\n"));
  g_byte_array_set_size (out, 0);
  g_assert_cmpuint (milter_encode_body (out, NULL, 0), ==, 0);
  g_assert_cmpuint (out->len, ==, 0);
}

/* A 200 KB body goes out as 65535-byte chunks that concatenate back. */
static void
test_encode_body_chunks (void)
{
  const gsize size = 200 * 1024;
  g_autofree guint8 *body = g_malloc (size);
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GByteArray) back = g_byte_array_new ();
  gsize pos = 0;
  guint n;

  for (gsize i = 0; i < size; i++)
    body[i] = (guint8)(i * 7 + 3);
  n = milter_encode_body (out, body, size);
  g_assert_cmpuint (n, ==, 4); /* 3 * 65535 + 8195 */
  for (guint i = 0; i < n; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MilterCommandPacket) p = NULL;
      MilterFrame f;
      gsize consumed;

      g_assert_true (milter_frame_split (out->data + pos, out->len - pos, MILTER_MAX_PACKET,
                                         &consumed, &f, &error));
      g_assert_cmpuint (f.len, ==, i < 3 ? MILTER_MAX_BODY_CHUNK : size - 3 * 65535);
      p = milter_command_decode (&f, &error);
      g_assert_no_error (error);
      g_assert_cmpint (p->command, ==, MILTER_CMD_BODY);
      g_byte_array_append (back, g_bytes_get_data (p->u.body, NULL),
                           (guint)g_bytes_get_size (p->u.body));
      pos += consumed;
    }
  g_assert_cmpuint (pos, ==, out->len);
  g_assert_cmpmem (back->data, back->len, body, size);

  /* exactly one chunk's worth is one packet */
  g_byte_array_set_size (out, 0);
  g_assert_cmpuint (milter_encode_body (out, body, MILTER_MAX_BODY_CHUNK), ==, 1);
  g_assert_cmpuint (milter_encode_body (out, body, MILTER_MAX_BODY_CHUNK + 1), ==, 2);
}

/* ---- round trips -------------------------------------------------------- */

static void
test_round_trip (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (MilterCommandPacket) p = NULL;
  const MilterOptions offer = { 2, 0x3F, 0x7F };
  const char *const pairs[] = { "i", "4XyZ", "{auth_authen}", "", NULL };
  const char *const argv[] = { "<>", "BODY=7BIT", "ENVID=x+2By", NULL };

  milter_encode_optneg (out, &offer);
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (&p->u.optneg, sizeof offer, &offer, sizeof offer);
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_macro (out, 'R', pairs);
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpint (p->u.macro.stage, ==, 'R');
  g_assert_true (g_strv_equal ((const char *const *)p->u.macro.pairs, pairs));
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_connect (out, "[192.0.2.7]", MILTER_FAMILY_UNIX, 0, "/var/run/x.sock");
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.connect.host, ==, "[192.0.2.7]");
  g_assert_cmpint (p->u.connect.family, ==, MILTER_FAMILY_UNIX);
  g_assert_cmpuint (p->u.connect.port, ==, 0);
  g_assert_cmpstr (p->u.connect.address, ==, "/var/run/x.sock");
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_connect (out, "h", MILTER_FAMILY_INET, 65535, "198.51.100.1");
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->u.connect.port, ==, 65535);
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_helo (out, "[IPv6:2001:db8::2]");
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.helo.name, ==, "[IPv6:2001:db8::2]");
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_envelope (out, MILTER_CMD_MAIL, argv);
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpint (p->command, ==, MILTER_CMD_MAIL);
  g_assert_true (g_strv_equal ((const char *const *)p->u.envelope.argv, argv));
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_header (out, "X-Folded", " a\r\n\tb");
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.header.name, ==, "X-Folded");
  g_assert_cmpstr (p->u.header.value, ==, " a\r\n\tb");
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_unknown (out, "ETRN x");
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.unknown, ==, "ETRN x");
  g_clear_pointer (&p, milter_command_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_eob (out);
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpint (p->command, ==, MILTER_CMD_EOB);
  g_assert_cmpuint (g_bytes_get_size (p->u.body), ==, 0);
}

/* Every command with its names, through the framer in one stream, as an
 * MTA would pipeline them. */
static void
test_stream (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  const char *const from[] = { "<s@example.org>", NULL };
  const char *const to[] = { "<r@example.net>", NULL };
  const MilterOptions offer = { 6, 0x1FF, 0x1FFFFF };
  static const char expect[] = "ODCDHDMDRTLNBEAKQ";
  gsize pos = 0;
  guint i = 0;

  milter_encode_optneg (out, &offer);
  milter_encode_macro (out, 'C', NULL);
  milter_encode_connect (out, "h", MILTER_FAMILY_INET, 1, "192.0.2.1");
  milter_encode_macro (out, 'H', NULL);
  milter_encode_helo (out, "h");
  milter_encode_macro (out, 'M', NULL);
  milter_encode_envelope (out, MILTER_CMD_MAIL, from);
  milter_encode_macro (out, 'R', NULL);
  milter_encode_envelope (out, MILTER_CMD_RCPT, to);
  milter_encode_data (out);
  milter_encode_header (out, "Subject", "x");
  milter_encode_eoh (out);
  milter_encode_body (out, "body\r\n", 6);
  milter_encode_eob (out);
  milter_encode_abort (out);
  milter_encode_quit_nc (out);
  milter_encode_quit (out);

  while (pos < out->len)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MilterCommandPacket) p = NULL;
      MilterFrame f;
      gsize consumed;

      g_assert_true (milter_frame_split (out->data + pos, out->len - pos, MILTER_MAX_PACKET,
                                         &consumed, &f, &error));
      p = milter_command_decode (&f, &error);
      g_assert_no_error (error);
      g_assert_cmpint (p->command, ==, expect[i]);
      g_assert_nonnull (milter_command_name ((char)p->command));
      pos += consumed;
      i++;
    }
  g_assert_cmpuint (i, ==, strlen (expect));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (decode_cases); i++)
    {
      const DecodeCase *c = &decode_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/milter/command/decode/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_decode_case);
    }
  g_test_add_func ("/proto/milter/command/decode/limits", test_decode_limits);
  g_test_add_func ("/proto/milter/command/decode/values", test_decode_values);
  g_test_add_func ("/proto/milter/command/encode/bytes", test_encode_bytes);
  g_test_add_func ("/proto/milter/command/encode/body-chunks", test_encode_body_chunks);
  g_test_add_func ("/proto/milter/command/round-trip", test_round_trip);
  g_test_add_func ("/proto/milter/command/stream", test_stream);
  return g_test_run ();
}
