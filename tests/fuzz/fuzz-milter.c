/* SPDX-License-Identifier: MIT
 *
 * fuzz-milter.c — libFuzzer target for proto/milter, both directions.
 *
 * Input layout: byte 0 picks the framer's limit (small limits reach the
 * FRAME_TOO_BIG branch); the rest is a byte stream split into frames as a
 * server or connector would, and every frame goes to both decoders.  The
 * input without byte 0 is also decoded as a single frame whose command is
 * its first byte.  Besides "no crash, no leak, no UB" it checks the
 * invariants callers rely on, and aborts when one breaks:
 *   - the framer never consumes more than it was given nor less than 5;
 *   - the codec is canonical where the protocol is: a decoded packet
 *     re-encodes to exactly the bytes it came from (every command but a
 *     multi-chunk or empty BODY and an EOB with data; every reply but an
 *     OPTNEG with symbol lists and a REPLYCODE);
 *   - an OPTNEG reply and a REPLYCODE decode(encode(x)) to x.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/milter/milter.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do                                                                                               \
    {                                                                                              \
      if (!(cond))                                                                                 \
        abort ();                                                                                  \
    }                                                                                              \
  while (0)

static void
check_same_frame (const GByteArray *enc, const MilterFrame *f)
{
  CHECK (enc->len == f->len + 5);
  CHECK (enc->data[4] == f->command);
  CHECK (f->len == 0 || memcmp (enc->data + 5, f->data, f->len) == 0);
}

static void
fuzz_command (const MilterFrame *f)
{
  g_autoptr (MilterCommandPacket) p = milter_command_decode (f, NULL);
  g_autoptr (GByteArray) enc = g_byte_array_new ();

  if (p == NULL)
    return;
  switch (p->command)
    {
      case MILTER_CMD_OPTNEG:
        milter_encode_optneg (enc, &p->u.optneg);
        break;
      case MILTER_CMD_MACRO:
        milter_encode_macro (enc, p->u.macro.stage, (const char *const *)p->u.macro.pairs);
        break;
      case MILTER_CMD_CONNECT:
        milter_encode_connect (enc, p->u.connect.host, p->u.connect.family, p->u.connect.port,
                               p->u.connect.address);
        break;
      case MILTER_CMD_HELO:
        milter_encode_helo (enc, p->u.helo.name);
        break;
      case MILTER_CMD_MAIL:
      case MILTER_CMD_RCPT:
        milter_encode_envelope (enc, p->command, (const char *const *)p->u.envelope.argv);
        break;
      case MILTER_CMD_HEADER:
        milter_encode_header (enc, p->u.header.name, p->u.header.value);
        break;
      case MILTER_CMD_BODY:
        {
          gsize n = g_bytes_get_size (p->u.body);
          guint packets = milter_encode_body (enc, g_bytes_get_data (p->u.body, NULL), n);

          CHECK (packets == (n + MILTER_MAX_BODY_CHUNK - 1) / MILTER_MAX_BODY_CHUNK);
          if (packets != 1)
            return;
        }
        break;
      case MILTER_CMD_EOB:
        if (g_bytes_get_size (p->u.body) != 0)
          return;
        milter_encode_eob (enc);
        break;
      case MILTER_CMD_UNKNOWN:
        milter_encode_unknown (enc, p->u.unknown);
        break;
      case MILTER_CMD_DATA:
        milter_encode_data (enc);
        break;
      case MILTER_CMD_EOH:
        milter_encode_eoh (enc);
        break;
      case MILTER_CMD_ABORT:
        milter_encode_abort (enc);
        break;
      case MILTER_CMD_QUIT:
        milter_encode_quit (enc);
        break;
      case MILTER_CMD_QUIT_NC:
        milter_encode_quit_nc (enc);
        break;
      default:
        abort ();
    }
  check_same_frame (enc, f);
}

static MilterReplyPacket *
redecode (const GByteArray *enc)
{
  MilterFrame f;
  gsize consumed = 0;
  MilterReplyPacket *p;

  CHECK (milter_frame_split (enc->data, enc->len, G_MAXUINT32, &consumed, &f, NULL));
  CHECK (consumed == enc->len);
  p = milter_reply_decode (&f, NULL);
  CHECK (p != NULL);
  return p;
}

static void
fuzz_replycode (const MailReply *reply)
{
  g_autoptr (GByteArray) enc = g_byte_array_new ();
  g_autoptr (MilterReplyPacket) back = NULL;
  const char *enhanced = mail_reply_get_enhanced (reply);

  /* what a peer may send (long lines, UTF-8) need not be ours to send */
  if (!milter_encode_reply (enc, reply, NULL))
    return;
  back = redecode (enc);
  CHECK (mail_reply_get_code (back->u.reply) == mail_reply_get_code (reply));
  if (enhanced != NULL)
    CHECK (g_strcmp0 (mail_reply_get_enhanced (back->u.reply), enhanced) == 0);
  CHECK (mail_reply_get_n_lines (back->u.reply) == mail_reply_get_n_lines (reply));
  for (guint i = 0; i < mail_reply_get_n_lines (reply); i++)
    CHECK (strcmp (mail_reply_get_line (back->u.reply, i), mail_reply_get_line (reply, i)) == 0);
}

static void
fuzz_reply (const MilterFrame *f)
{
  g_autoptr (MilterReplyPacket) p = milter_reply_decode (f, NULL);
  g_autoptr (GByteArray) enc = g_byte_array_new ();

  if (p == NULL)
    return;
  switch (p->code)
    {
      case MILTER_REPLY_OPTNEG:
        {
          g_autoptr (MilterReplyPacket) back = NULL;

          milter_encode_optneg_reply (enc, &p->u.optneg.options,
                                      (const char *const *)p->u.optneg.symlists);
          back = redecode (enc);
          CHECK (memcmp (&back->u.optneg.options, &p->u.optneg.options, sizeof p->u.optneg.options)
                 == 0);
          for (int i = 0; i < MILTER_N_STAGES; i++)
            CHECK (g_strcmp0 (back->u.optneg.symlists[i], p->u.optneg.symlists[i]) == 0);
          if (f->len != 12)
            return; /* lists may come in any order, or twice */
        }
        break;
      case MILTER_REPLY_REPLYCODE:
        fuzz_replycode (p->u.reply);
        return;
      case MILTER_REPLY_CONTINUE:
      case MILTER_REPLY_ACCEPT:
      case MILTER_REPLY_REJECT:
      case MILTER_REPLY_TEMPFAIL:
      case MILTER_REPLY_DISCARD:
      case MILTER_REPLY_SKIP:
      case MILTER_REPLY_PROGRESS:
      case MILTER_REPLY_SHUTDOWN:
        milter_encode_reply_simple (enc, p->code);
        break;
      case MILTER_REPLY_ADDHEADER:
        milter_encode_addheader (enc, p->u.header.name, p->u.header.value);
        break;
      case MILTER_REPLY_INSHEADER:
        milter_encode_insheader (enc, p->u.header.index, p->u.header.name, p->u.header.value);
        break;
      case MILTER_REPLY_CHGHEADER:
        milter_encode_chgheader (enc, p->u.header.index, p->u.header.name, p->u.header.value);
        break;
      case MILTER_REPLY_CHGFROM:
        milter_encode_chgfrom (enc, p->u.envelope.address, p->u.envelope.args);
        break;
      case MILTER_REPLY_ADDRCPT_PAR:
        milter_encode_addrcpt_par (enc, p->u.envelope.address, p->u.envelope.args);
        break;
      case MILTER_REPLY_ADDRCPT:
        milter_encode_addrcpt (enc, p->u.envelope.address);
        break;
      case MILTER_REPLY_DELRCPT:
        milter_encode_delrcpt (enc, p->u.envelope.address);
        break;
      case MILTER_REPLY_REPLBODY:
        if (milter_encode_replbody (enc, g_bytes_get_data (p->u.body, NULL),
                                    g_bytes_get_size (p->u.body))
            != 1)
          return;
        break;
      case MILTER_REPLY_QUARANTINE:
        milter_encode_quarantine (enc, p->u.reason);
        break;
      default:
        abort ();
    }
  check_same_frame (enc, f);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const gsize limits[] = { MILTER_MAX_PACKET, 1, 13, 64, 65536, G_MAXUINT32 };
  static gboolean initialized = FALSE;
  gsize max_len, pos = 0;

  if (!initialized)
    {
      /* a g_return_if_fail reached from input is a bug too */
      g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
      initialized = TRUE;
    }
  if (size < 1)
    return 0;
  max_len = limits[data[0] % G_N_ELEMENTS (limits)];
  data++;
  size--;

  /* as a stream */
  for (;;)
    {
      g_autoptr (GError) error = NULL;
      MilterFrame f;
      gsize consumed = 0;

      if (!milter_frame_split (data + pos, size - pos, max_len, &consumed, &f, &error))
        {
          CHECK (consumed == 0);
          break;
        }
      CHECK (consumed >= 5 && consumed <= size - pos);
      CHECK (f.len + 5 == consumed && f.len + 1 <= max_len);
      fuzz_command (&f);
      fuzz_reply (&f);
      pos += consumed;
    }

  /* as one frame */
  if (size > 0)
    {
      MilterFrame f = { data[0], data + 1, size - 1 };

      fuzz_command (&f);
      fuzz_reply (&f);
    }
  return 0;
}
