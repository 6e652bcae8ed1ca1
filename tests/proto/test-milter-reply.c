/* SPDX-License-Identifier: MIT
 *
 * test-milter-reply.c — milter -> MTA packets (proto/milter/milter.h):
 * decoding what libmilter milters send (for the connector), encoding what
 * vpsd answers byte for byte (hand-written wire bytes from MILTER.md's
 * layouts), reply codes through proto/mail (multi-line, '%' doubling, the
 * 32-line limit), REPLBODY chunking, and one case per malformed-input
 * branch with its exact MilterError.
 */
#include <string.h>

#include "proto/milter/milter.h"

#define OK (-1)
#define BYTES(s) (const guint8 *)(s), sizeof (s) - 1

static MilterReplyPacket *
decode (char code, const guint8 *data, gsize len, GError **error)
{
  MilterFrame f = { (guint8)code, data, len };

  return milter_reply_decode (&f, error);
}

static MilterReplyPacket *
decode_wire (const GByteArray *wire, GError **error)
{
  MilterFrame f;
  gsize consumed = 0;

  g_assert_true (
      milter_frame_split (wire->data, wire->len, MILTER_MAX_PACKET, &consumed, &f, NULL));
  g_assert_cmpuint (consumed, ==, wire->len);
  return milter_reply_decode (&f, error);
}

#define assert_wire(got, ...) g_assert_cmpmem ((got)->data, (got)->len, __VA_ARGS__)

/* ---- decoding: shapes and malformed input -------------------------------- */

typedef struct
{
  const char *name;
  char code;
  const guint8 *data;
  gsize len;
  int error;
} DecodeCase;

static const DecodeCase decode_cases[] = {
  { "optneg", 'O', BYTES ("\0\0\0\6\0\0\1\x11\0\x10\x07\x02"), OK },
  { "optneg-symlist", 'O',
    BYTES ("\0\0\0\6\0\0\1\xff\0\0\0\0"
           "\0\0\0\2{auth_authen} i\0"),
    OK },
  { "continue", 'c', BYTES (""), OK },
  { "shutdown", '4', BYTES (""), OK },
  { "replycode", 'y', BYTES ("550 5.7.1 Spam\0"), OK },
  { "addheader-empty-value", 'h', BYTES ("X\0\0"), OK },
  { "chgheader-delete", 'm', BYTES ("\0\0\0\1X\0\0"), OK },
  { "chgfrom-args", 'e', BYTES ("<a@b>\0SIZE=1 RET=HDRS\0"), OK },
  { "addrcpt-par-no-args", '2', BYTES ("<a@b>\0"), OK },
  { "replbody-empty", 'b', BYTES (""), OK },
  { "quarantine-empty-reason", 'q', BYTES ("\0"), OK },

  { "unknown-reply", 'Z', BYTES (""), MILTER_ERROR_UNKNOWN_COMMAND },
  { "command-byte", 'C', BYTES (""), MILTER_ERROR_UNKNOWN_COMMAND },
  { "conn-fail", 'f', BYTES (""), MILTER_ERROR_UNKNOWN_COMMAND },
  { "setsymlist-byte", 'l', BYTES (""), MILTER_ERROR_UNKNOWN_COMMAND },
  { "optneg-short", 'O', BYTES ("\0\0\0\6\0\0\1\xff\0\0\0"), MILTER_ERROR_TRUNCATED },
  { "optneg-stage-short", 'O', BYTES ("\0\0\0\6\0\0\1\xff\0\0\0\0\0\0"), MILTER_ERROR_TRUNCATED },
  { "optneg-stage-7", 'O',
    BYTES ("\0\0\0\6\0\0\1\xff\0\0\0\0"
           "\0\0\0\7j\0"),
    MILTER_ERROR_STAGE },
  { "optneg-stage-huge", 'O',
    BYTES ("\0\0\0\6\0\0\1\xff\0\0\0\0"
           "\xff\0\0\0j\0"),
    MILTER_ERROR_STAGE },
  { "optneg-symlist-without-nul", 'O',
    BYTES ("\0\0\0\6\0\0\1\xff\0\0\0\0"
           "\0\0\0\1j"),
    MILTER_ERROR_UNTERMINATED },
  { "optneg-stage-without-list", 'O',
    BYTES ("\0\0\0\6\0\0\1\xff\0\0\0\0"
           "\0\0\0\1"),
    MILTER_ERROR_UNTERMINATED },
  { "continue-with-data", 'c', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "accept-with-data", 'a', BYTES ("\0"), MILTER_ERROR_TRAILING },
  { "reject-with-data", 'r', BYTES ("550"), MILTER_ERROR_TRAILING },
  { "tempfail-with-data", 't', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "discard-with-data", 'd', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "skip-with-data", 's', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "progress-with-data", 'p', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "shutdown-with-data", '4', BYTES ("x"), MILTER_ERROR_TRAILING },
  { "replycode-empty-packet", 'y', BYTES (""), MILTER_ERROR_UNTERMINATED },
  { "replycode-without-nul", 'y', BYTES ("550 5.7.1 x"), MILTER_ERROR_UNTERMINATED },
  { "replycode-empty-text", 'y', BYTES ("\0"), MILTER_ERROR_EMPTY_FIELD },
  { "replycode-trailing", 'y', BYTES ("550 5.7.1 x\0y"), MILTER_ERROR_TRAILING },
  { "replycode-2xx", 'y', BYTES ("250 2.0.0 Ok\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-3xx", 'y', BYTES ("354 go ahead\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-two-digits", 'y', BYTES ("55 x\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-letter", 'y', BYTES ("5x0 x\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-text-only", 'y', BYTES ("rejected\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-bad-separator", 'y', BYTES ("550_5.7.1 x\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-second-digit", 'y', BYTES ("570 x\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-codes-differ", 'y', BYTES ("550-5.7.1 a\r\n551 5.7.1 b\0"),
    MILTER_ERROR_REPLY_CODE },
  { "replycode-no-last-line", 'y', BYTES ("550-5.7.1 a\r\n550-5.7.1 b\0"),
    MILTER_ERROR_REPLY_CODE },
  { "replycode-after-last-line", 'y', BYTES ("550 5.7.1 a\r\n550 5.7.1 b\0"),
    MILTER_ERROR_REPLY_CODE },
  { "replycode-enhanced-class", 'y', BYTES ("550 4.7.1 x\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-control-char", 'y', BYTES ("550 5.7.1 a\x1b[0m\0"), MILTER_ERROR_REPLY_CODE },
  { "replycode-bare-cr", 'y', BYTES ("550 5.7.1 a\rb\0"), MILTER_ERROR_REPLY_CODE },
  { "addheader-empty", 'h', BYTES (""), MILTER_ERROR_UNTERMINATED },
  { "addheader-no-value", 'h', BYTES ("X\0"), MILTER_ERROR_UNTERMINATED },
  { "addheader-value-without-nul", 'h', BYTES ("X\0v"), MILTER_ERROR_UNTERMINATED },
  { "addheader-empty-name", 'h', BYTES ("\0v\0"), MILTER_ERROR_EMPTY_FIELD },
  { "addheader-trailing", 'h', BYTES ("X\0v\0z"), MILTER_ERROR_TRAILING },
  { "insheader-no-index", 'i', BYTES (""), MILTER_ERROR_TRUNCATED },
  { "insheader-short-index", 'i', BYTES ("\0\0\0"), MILTER_ERROR_TRUNCATED },
  { "insheader-no-name", 'i', BYTES ("\0\0\0\0"), MILTER_ERROR_UNTERMINATED },
  { "chgheader-empty-name", 'm', BYTES ("\0\0\0\1\0\0"), MILTER_ERROR_EMPTY_FIELD },
  { "chgheader-trailing", 'm', BYTES ("\0\0\0\1X\0\0\0"), MILTER_ERROR_TRAILING },
  { "chgfrom-empty", 'e', BYTES (""), MILTER_ERROR_UNTERMINATED },
  { "chgfrom-empty-address", 'e', BYTES ("\0"), MILTER_ERROR_EMPTY_FIELD },
  { "chgfrom-args-without-nul", 'e', BYTES ("<a>\0SIZE=1"), MILTER_ERROR_UNTERMINATED },
  /* one args string, not an argv (MILTER.md errata) */
  { "chgfrom-argv", 'e', BYTES ("<a>\0SIZE=1\0RET=FULL\0"), MILTER_ERROR_TRAILING },
  { "addrcpt-with-args", '+', BYTES ("<a>\0NOTIFY=NEVER\0"), MILTER_ERROR_TRAILING },
  { "addrcpt-par-empty-address", '2', BYTES ("\0"), MILTER_ERROR_EMPTY_FIELD },
  { "addrcpt-par-argv", '2', BYTES ("<a>\0x\0y\0"), MILTER_ERROR_TRAILING },
  { "delrcpt-without-nul", '-', BYTES ("<a>"), MILTER_ERROR_UNTERMINATED },
  { "delrcpt-empty-address", '-', BYTES ("\0"), MILTER_ERROR_EMPTY_FIELD },
  { "quarantine-empty", 'q', BYTES (""), MILTER_ERROR_UNTERMINATED },
  { "quarantine-trailing", 'q', BYTES ("x\0y"), MILTER_ERROR_TRAILING },
};

static void
test_decode_case (gconstpointer data)
{
  const DecodeCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (MilterReplyPacket) p = decode (c->code, c->data, c->len, &error);

  if (c->error == OK)
    {
      g_assert_no_error (error);
      g_assert_nonnull (p);
      g_assert_cmpint (p->code, ==, c->code);
      return;
    }
  g_assert_error (error, MILTER_ERROR, c->error);
  g_assert_null (p);
}

static void
test_decode_values (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MilterReplyPacket) p = NULL;

  /* what opendkim answers */
  p = decode ('O', BYTES ("\0\0\0\6\0\0\1\x11\0\x10\x07\x02"), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->u.optneg.options.version, ==, 6);
  g_assert_cmphex (p->u.optneg.options.actions, ==, 0x111);
  g_assert_cmphex (p->u.optneg.options.protocol, ==, 0x100702);
  for (int i = 0; i < MILTER_N_STAGES; i++)
    g_assert_null (p->u.optneg.symlists[i]);
  g_clear_pointer (&p, milter_reply_packet_free);

  /* symbol lists; a second list for a stage replaces the first */
  p = decode ('O',
              BYTES ("\0\0\0\6\0\0\1\xff\0\0\0\0"
                     "\0\0\0\2{auth_authen} i\0"
                     "\0\0\0\0j\0"
                     "\0\0\0\6x\0"
                     "\0\0\0\0j {client_addr}\0"),
              &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.optneg.symlists[MILTER_STAGE_ENVFROM], ==, "{auth_authen} i");
  g_assert_cmpstr (p->u.optneg.symlists[MILTER_STAGE_CONNECT], ==, "j {client_addr}");
  g_assert_cmpstr (p->u.optneg.symlists[MILTER_STAGE_EOH], ==, "x");
  g_assert_null (p->u.optneg.symlists[MILTER_STAGE_HELO]);
  g_clear_pointer (&p, milter_reply_packet_free);

  p = decode ('y', BYTES ("550-5.7.1 first 100%% sure\r\n550 5.7.1 second\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mail_reply_get_code (p->u.reply), ==, 550);
  g_assert_cmpstr (mail_reply_get_enhanced (p->u.reply), ==, "5.7.1");
  g_assert_cmpuint (mail_reply_get_n_lines (p->u.reply), ==, 2);
  g_assert_cmpstr (mail_reply_get_line (p->u.reply, 0), ==, "first 100% sure");
  g_assert_cmpstr (mail_reply_get_line (p->u.reply, 1), ==, "second");
  g_clear_pointer (&p, milter_reply_packet_free);

  /* no enhanced code; a lone '%' is dropped as Postfix does; a final CRLF
   * is tolerated */
  p = decode ('y', BYTES ("451 try 50% later\r\n\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mail_reply_get_code (p->u.reply), ==, 451);
  g_assert_null (mail_reply_get_enhanced (p->u.reply));
  g_assert_cmpstr (mail_reply_get_line (p->u.reply, 0), ==, "try 50 later");
  g_clear_pointer (&p, milter_reply_packet_free);

  p = decode ('i', BYTES ("\0\0\0\0X-First\0 v\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (p->u.header.index, ==, 0);
  g_assert_cmpstr (p->u.header.name, ==, "X-First");
  g_assert_cmpstr (p->u.header.value, ==, " v");
  g_clear_pointer (&p, milter_reply_packet_free);

  p = decode ('m', BYTES ("\x01\x02\x03\x04Subject\0\0"), &error);
  g_assert_no_error (error);
  g_assert_cmphex (p->u.header.index, ==, 0x01020304);
  g_assert_cmpstr (p->u.header.value, ==, "");
  g_clear_pointer (&p, milter_reply_packet_free);

  p = decode ('e', BYTES ("<new@example.org>\0RET=HDRS ENVID=x\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.envelope.address, ==, "<new@example.org>");
  g_assert_cmpstr (p->u.envelope.args, ==, "RET=HDRS ENVID=x");
  g_clear_pointer (&p, milter_reply_packet_free);

  p = decode ('-', BYTES ("<old@example.org>\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.envelope.address, ==, "<old@example.org>");
  g_assert_null (p->u.envelope.args);
  g_clear_pointer (&p, milter_reply_packet_free);

  p = decode ('b', BYTES ("new\0body\r\n"), &error);
  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (p->u.body, NULL), g_bytes_get_size (p->u.body),
                   "new\0body\r\n", 10);
  g_clear_pointer (&p, milter_reply_packet_free);

  p = decode ('q', BYTES ("virus found\0"), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.reason, ==, "virus found");
}

static void
test_decode_limits (void)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (MilterReplyPacket) p = NULL;
  g_autofree char *list = g_strnfill (MILTER_MAX_SYMLIST + 1, 'j');
  g_autofree char *name = g_strnfill (MILTER_MAX_NAME + 1, 'n');

  /* 32 reply lines pass, 33 do not */
  for (int i = 0; i < MILTER_MAX_REPLY_LINES; i++)
    g_string_append_printf (text, "550%c5.7.1 line %d\r\n",
                            i + 1 < MILTER_MAX_REPLY_LINES ? '-' : ' ', i);
  g_string_truncate (text, text->len - 2);
  p = decode ('y', (const guint8 *)text->str, text->len + 1, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mail_reply_get_n_lines (p->u.reply), ==, MILTER_MAX_REPLY_LINES);
  g_clear_pointer (&p, milter_reply_packet_free);
  g_string_replace (text, "550 5.7.1 line 31", "550-5.7.1 line 31\r\n550 5.7.1 line 32", 1);
  p = decode ('y', (const guint8 *)text->str, text->len + 1, &error);
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_LINES);
  g_assert_null (p);
  g_clear_error (&error);

  /* symbol list at and over MILTER_MAX_SYMLIST */
  g_byte_array_append (buf, BYTES ("\0\0\0\6\0\0\1\xff\0\0\0\0"
                                   "\0\0\0\1"));
  g_byte_array_append (buf, (const guint8 *)list, MILTER_MAX_SYMLIST + 2);
  p = decode ('O', buf->data, buf->len, &error);
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT);
  g_clear_error (&error);
  list[MILTER_MAX_SYMLIST] = '\0';
  g_byte_array_set_size (buf, 16);
  g_byte_array_append (buf, (const guint8 *)list, MILTER_MAX_SYMLIST + 1);
  p = decode ('O', buf->data, buf->len, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (p->u.optneg.symlists[MILTER_STAGE_HELO]), ==, MILTER_MAX_SYMLIST);
  g_clear_pointer (&p, milter_reply_packet_free);

  /* header names over MILTER_MAX_NAME */
  g_byte_array_set_size (buf, 0);
  g_byte_array_append (buf, (const guint8 *)name, MILTER_MAX_NAME + 2);
  g_byte_array_append (buf, (const guint8 *)"v", 2);
  p = decode ('h', buf->data, buf->len, &error);
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT);
}

/* ---- encoding: byte-exact ----------------------------------------------- */

static void
test_encode_bytes (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  const MilterOptions opendkim = { 6, 0x111, 0x100702 };
  const char *symlists[MILTER_N_STAGES] = { NULL };
  static const char simple[] = "cartdsp4";

  milter_encode_optneg_reply (out, &opendkim, NULL);
  assert_wire (out, BYTES ("\0\0\0\x0d"
                           "O"
                           "\0\0\0\6"
                           "\0\0\1\x11"
                           "\0\x10\x07\x02"));
  g_byte_array_set_size (out, 0);
  symlists[MILTER_STAGE_ENVFROM] = "{auth_authen}";
  milter_encode_optneg_reply (out, &opendkim, symlists);
  assert_wire (out, BYTES ("\0\0\0\x1f"
                           "O"
                           "\0\0\0\6"
                           "\0\0\1\x11"
                           "\0\x10\x07\x02"
                           "\0\0\0\2"
                           "{auth_authen}\0"));
  g_byte_array_set_size (out, 0);

  for (const char *c = simple; *c != '\0'; c++)
    {
      guint8 want[5] = { 0, 0, 0, 1, (guint8)*c };

      milter_encode_reply_simple (out, (MilterReplyCode)*c);
      assert_wire (out, want, sizeof want);
      g_byte_array_set_size (out, 0);
    }

  g_assert_true (milter_encode_replycode (out, 550, "5.7.1", "Spam", &error));
  g_assert_no_error (error);
  assert_wire (out, BYTES ("\0\0\0\x10"
                           "y"
                           "550 5.7.1 Spam\0"));
  g_byte_array_set_size (out, 0);
  g_assert_true (milter_encode_replycode (out, 550, "5.7.1", "a\nb", &error));
  assert_wire (out, BYTES ("\0\0\0\x1a"
                           "y"
                           "550-5.7.1 a\r\n550 5.7.1 b\0"));
  g_byte_array_set_size (out, 0);
  g_assert_true (milter_encode_replycode (out, 451, "4.7.1", "100% sure", &error));
  assert_wire (out, BYTES ("\0\0\0\x16"
                           "y"
                           "451 4.7.1 100%% sure\0"));
  g_byte_array_set_size (out, 0);
  /* no enhanced code: libmilter's class default */
  g_assert_true (milter_encode_replycode (out, 550, NULL, "x", &error));
  assert_wire (out, BYTES ("\0\0\0\x0d"
                           "y"
                           "550 5.0.0 x\0"));
  g_byte_array_set_size (out, 0);
  g_assert_true (milter_encode_replycode (out, 421, "", "x", &error));
  assert_wire (out, BYTES ("\0\0\0\x0d"
                           "y"
                           "421 4.0.0 x\0"));
  g_byte_array_set_size (out, 0);

  milter_encode_addheader (out, "X-Spam", " yes");
  assert_wire (out, BYTES ("\0\0\0\x0d"
                           "h"
                           "X-Spam\0"
                           " yes\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_insheader (out, 0, "X", "v");
  assert_wire (out, BYTES ("\0\0\0\x09"
                           "i"
                           "\0\0\0\0"
                           "X\0"
                           "v\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_chgheader (out, 1, "Subject", "");
  assert_wire (out, BYTES ("\0\0\0\x0e"
                           "m"
                           "\0\0\0\1"
                           "Subject\0"
                           "\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_chgheader (out, 0x01020304, "S", NULL);
  assert_wire (out, BYTES ("\0\0\0\x08"
                           "m"
                           "\x01\x02\x03\x04"
                           "S\0"
                           "\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_chgfrom (out, "<a@b>", NULL);
  assert_wire (out, BYTES ("\0\0\0\x07"
                           "e"
                           "<a@b>\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_chgfrom (out, "<a@b>", "SIZE=1");
  assert_wire (out, BYTES ("\0\0\0\x0e"
                           "e"
                           "<a@b>\0"
                           "SIZE=1\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_addrcpt (out, "<r@b>");
  assert_wire (out, BYTES ("\0\0\0\x07"
                           "+"
                           "<r@b>\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_addrcpt_par (out, "<r@b>", "NOTIFY=NEVER");
  assert_wire (out, BYTES ("\0\0\0\x14"
                           "2"
                           "<r@b>\0"
                           "NOTIFY=NEVER\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_delrcpt (out, "<r@b>");
  assert_wire (out, BYTES ("\0\0\0\x07"
                           "-"
                           "<r@b>\0"));
  g_byte_array_set_size (out, 0);
  milter_encode_quarantine (out, "spam");
  assert_wire (out, BYTES ("\0\0\0\x06"
                           "q"
                           "spam\0"));
  g_byte_array_set_size (out, 0);
  g_assert_cmpuint (milter_encode_replbody (out, NULL, 0), ==, 1);
  assert_wire (out, BYTES ("\0\0\0\x01"
                           "b"));
}

/* Each validation branch of the reply-code encoder, with its domain. */
static void
test_encode_replycode_errors (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GString) lines = g_string_new (NULL);
  g_autoptr (MailReply) ok250 = mail_reply_new (250, "2.0.0", "Ok", NULL);
  GError *error = NULL;

  g_assert_false (milter_encode_replycode (out, 250, "2.0.0", "Ok", &error));
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_CODE);
  g_clear_error (&error);
  g_assert_false (milter_encode_reply (out, ok250, &error));
  g_assert_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_CODE);
  g_clear_error (&error);
  g_assert_false (milter_encode_replycode (out, 600, NULL, "x", &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_CODE);
  g_clear_error (&error);
  g_assert_false (milter_encode_replycode (out, 550, "4.7.1", "x", &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_ENHANCED_CLASS);
  g_clear_error (&error);
  g_assert_false (milter_encode_replycode (out, 550, "5.7.1", "a\r\n250 fake", &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_FORBIDDEN_CHAR);
  g_clear_error (&error);

  for (int i = 0; i < MILTER_MAX_REPLY_LINES; i++)
    g_string_append_printf (lines, "%sline %d", i ? "\n" : "", i);
  g_assert_true (milter_encode_replycode (out, 550, "5.7.1", lines->str, &error));
  g_assert_no_error (error);
  g_string_append (lines, "\none too many");
  g_assert_false (milter_encode_replycode (out, 550, "5.7.1", lines->str, &error));
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_REPLY_TOO_MANY_LINES);
  g_clear_error (&error);
  /* nothing was appended by the failures */
  {
    MilterFrame f;
    gsize consumed;

    g_assert_true (
        milter_frame_split (out->data, out->len, MILTER_MAX_PACKET, &consumed, &f, NULL));
    g_assert_cmpuint (consumed, ==, out->len);
  }
}

/* ---- round trips -------------------------------------------------------- */

static void
test_round_trip (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (MilterReplyPacket) p = NULL;
  g_autoptr (GString) lines = g_string_new (NULL);
  const MilterOptions answer = { 6, 0x1FF, 0x400 };
  const char *symlists[MILTER_N_STAGES] = { "j _", NULL, NULL, NULL, NULL, "{msg_id}", "" };

  milter_encode_optneg_reply (out, &answer, symlists);
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (&p->u.optneg.options, sizeof answer, &answer, sizeof answer);
  for (int i = 0; i < MILTER_N_STAGES; i++)
    g_assert_cmpstr (p->u.optneg.symlists[i], ==, symlists[i]);
  g_clear_pointer (&p, milter_reply_packet_free);
  g_byte_array_set_size (out, 0);

  /* every reply code through encode and decode, 32 lines, '%' kept */
  for (int i = 0; i < MILTER_MAX_REPLY_LINES; i++)
    g_string_append_printf (lines, "%s%d%% of line %d", i ? "\n" : "", i, i);
  g_assert_true (milter_encode_replycode (out, 554, "5.7.0", lines->str, &error));
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  {
    g_autofree char *text = mail_reply_get_text (p->u.reply);

    g_assert_cmpuint (mail_reply_get_code (p->u.reply), ==, 554);
    g_assert_cmpstr (mail_reply_get_enhanced (p->u.reply), ==, "5.7.0");
    g_assert_cmpstr (text, ==, lines->str);
  }
  g_clear_pointer (&p, milter_reply_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_insheader (out, 7, "X-Vps", "\tfolded\r\n value");
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpint (p->code, ==, MILTER_REPLY_INSHEADER);
  g_assert_cmpuint (p->u.header.index, ==, 7);
  g_assert_cmpstr (p->u.header.name, ==, "X-Vps");
  g_assert_cmpstr (p->u.header.value, ==, "\tfolded\r\n value");
  g_clear_pointer (&p, milter_reply_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_addrcpt_par (out, "<x@y>", "NOTIFY=SUCCESS ORCPT=rfc822;x@y");
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.envelope.address, ==, "<x@y>");
  g_assert_cmpstr (p->u.envelope.args, ==, "NOTIFY=SUCCESS ORCPT=rfc822;x@y");
  g_clear_pointer (&p, milter_reply_packet_free);
  g_byte_array_set_size (out, 0);

  milter_encode_chgfrom (out, "<>", NULL);
  p = decode_wire (out, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (p->u.envelope.address, ==, "<>");
  g_assert_null (p->u.envelope.args);
}

/* A 200 KB replacement body: 65535-byte REPLBODY packets in order. */
static void
test_replbody_chunks (void)
{
  const gsize size = 200 * 1024;
  g_autofree guint8 *body = g_malloc (size);
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autoptr (GByteArray) back = g_byte_array_new ();
  gsize pos = 0;
  guint n;

  for (gsize i = 0; i < size; i++)
    body[i] = (guint8)(i % 251);
  n = milter_encode_replbody (out, body, size);
  g_assert_cmpuint (n, ==, 4);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MilterReplyPacket) p = NULL;
      MilterFrame f;
      gsize consumed;

      g_assert_true (milter_frame_split (out->data + pos, out->len - pos, MILTER_MAX_PACKET,
                                         &consumed, &f, &error));
      g_assert_cmpuint (f.len, <=, MILTER_MAX_BODY_CHUNK);
      g_assert_cmpuint (f.len, ==, i < 3 ? 65535 : size - 3 * 65535);
      p = milter_reply_decode (&f, &error);
      g_assert_no_error (error);
      g_assert_cmpint (p->code, ==, MILTER_REPLY_REPLBODY);
      g_byte_array_append (back, g_bytes_get_data (p->u.body, NULL),
                           (guint)g_bytes_get_size (p->u.body));
      pos += consumed;
    }
  g_assert_cmpuint (pos, ==, out->len);
  g_assert_cmpmem (back->data, back->len, body, size);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (decode_cases); i++)
    {
      const DecodeCase *c = &decode_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/milter/reply/decode/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_decode_case);
    }
  g_test_add_func ("/proto/milter/reply/decode/values", test_decode_values);
  g_test_add_func ("/proto/milter/reply/decode/limits", test_decode_limits);
  g_test_add_func ("/proto/milter/reply/encode/bytes", test_encode_bytes);
  g_test_add_func ("/proto/milter/reply/encode/replycode-errors", test_encode_replycode_errors);
  g_test_add_func ("/proto/milter/reply/encode/replbody-chunks", test_replbody_chunks);
  g_test_add_func ("/proto/milter/reply/round-trip", test_round_trip);
  return g_test_run ();
}
