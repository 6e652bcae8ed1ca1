/* SPDX-License-Identifier: MIT
 *
 * test-milter-frame.c — milter framing (milter_frame_split / _append) and
 * the name and stage tables of proto/milter/milter.h.
 *
 * The framer is fed what a hostile or broken peer sends: length 0,
 * 0x80000000, 0xFFFFFFFF, one over the limit (all refused from the 4
 * length bytes alone, before any data arrived), and every partial prefix of
 * a valid stream (always "need more", never an error or a short frame).
 */
#include <string.h>

#include "proto/milter/milter.h"

#define BYTES(s) (const guint8 *)(s), sizeof (s) - 1
#define OK (-1)
#define MORE (-2)

typedef struct
{
  const char *name;
  const guint8 *data;
  gsize len;
  gsize max_len;
  int result; /* OK, MORE or a MilterError */
  gsize consumed;
  guint8 command;
  gsize data_len;
} SplitCase;

static const SplitCase split_cases[] = {
  { "empty-buffer", BYTES (""), MILTER_MAX_PACKET, MORE },
  { "three-length-bytes", BYTES ("\0\0\0"), MILTER_MAX_PACKET, MORE },
  { "length-only", BYTES ("\0\0\0\1"), MILTER_MAX_PACKET, MORE },
  { "command-only", BYTES ("\0\0\0\1c"), MILTER_MAX_PACKET, OK, 5, 'c', 0 },
  { "followed-by-next", BYTES ("\0\0\0\1c\0\0\0\1a"), MILTER_MAX_PACKET, OK, 5, 'c', 0 },
  { "data", BYTES ("\0\0\0\3Hx\0"), MILTER_MAX_PACKET, OK, 7, 'H', 2 },
  { "data-partial", BYTES ("\0\0\0\3Hx"), MILTER_MAX_PACKET, MORE },
  { "at-limit", BYTES ("\0\0\0\3Hx\0"), 3, OK, 7, 'H', 2 },
  { "over-limit", BYTES ("\0\0\0\4Hxy\0"), 3, MILTER_ERROR_FRAME_TOO_BIG },
  /* refused before the data is there */
  { "over-limit-header-only", BYTES ("\0\0\0\4"), 3, MILTER_ERROR_FRAME_TOO_BIG },
  { "length-0", BYTES ("\0\0\0\0"), MILTER_MAX_PACKET, MILTER_ERROR_FRAME_EMPTY },
  { "length-0-with-bytes", BYTES ("\0\0\0\0Oxyz"), MILTER_MAX_PACKET, MILTER_ERROR_FRAME_EMPTY },
  { "length-0x80000000", BYTES ("\x80\0\0\0"), MILTER_MAX_PACKET, MILTER_ERROR_FRAME_TOO_BIG },
  { "length-0xffffffff", BYTES ("\xff\xff\xff\xff"), MILTER_MAX_PACKET,
    MILTER_ERROR_FRAME_TOO_BIG },
  { "length-max-packet-plus-1", BYTES ("\0\x10\0\x01"), MILTER_MAX_PACKET,
    MILTER_ERROR_FRAME_TOO_BIG },
  { "length-max-packet", BYTES ("\0\x10\0\0"), MILTER_MAX_PACKET, MORE },
  /* a caller allowing everything still cannot overflow 4 + length */
  { "length-0xffffffff-unlimited",
    BYTES ("\xff\xff\xff\xff"
           "B"),
    G_MAXSIZE, MORE },
};

static void
test_split_case (gconstpointer data)
{
  const SplitCase *c = data;
  g_autoptr (GError) error = NULL;
  MilterFrame f = { 0 };
  gsize consumed = 99;
  gboolean ok = milter_frame_split (c->data, c->len, c->max_len, &consumed, &f, &error);

  switch (c->result)
    {
      case OK:
        g_assert_no_error (error);
        g_assert_true (ok);
        g_assert_cmpuint (consumed, ==, c->consumed);
        g_assert_cmpint (f.command, ==, c->command);
        g_assert_cmpuint (f.len, ==, c->data_len);
        g_assert_true (f.data == c->data + 5);
        break;
      case MORE:
        g_assert_no_error (error);
        g_assert_false (ok);
        g_assert_cmpuint (consumed, ==, 0);
        break;
      default:
        g_assert_error (error, MILTER_ERROR, c->result);
        g_assert_false (ok);
        g_assert_cmpuint (consumed, ==, 0);
        break;
    }
}

/* Every prefix of a stream of three frames is "need more" or the frames in
 * order; the framer never returns part of a frame. */
static void
test_split_prefixes (void)
{
  g_autoptr (GByteArray) stream = g_byte_array_new ();
  static const char cmds[] = "HLc";

  milter_frame_append (stream, 'H', "helo\0", 5);
  milter_frame_append (stream, 'L', "Subject\0x\0", 10);
  milter_frame_append (stream, 'c', NULL, 0);

  for (gsize cut = 0; cut <= stream->len; cut++)
    {
      gsize pos = 0;
      guint n = 0;

      for (;;)
        {
          g_autoptr (GError) error = NULL;
          MilterFrame f;
          gsize consumed;

          if (!milter_frame_split (stream->data + pos, cut - pos, MILTER_MAX_PACKET, &consumed, &f,
                                   &error))
            {
              g_assert_no_error (error);
              break;
            }
          g_assert_cmpint (f.command, ==, cmds[n]);
          pos += consumed;
          n++;
        }
      g_assert_cmpuint (pos, <=, cut);
      if (cut == stream->len)
        g_assert_cmpuint (n, ==, 3);
    }
}

static void
test_append (void)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();
  g_autofree guint8 *big = g_malloc0 (70000);

  milter_frame_append (out, 'c', NULL, 0);
  g_assert_cmpmem (out->data, out->len, "\0\0\0\1c", 5);
  g_byte_array_set_size (out, 0);
  milter_frame_append (out, 'H', "x\0", 2);
  g_assert_cmpmem (out->data, out->len, "\0\0\0\3Hx\0", 7);

  /* appends, does not replace */
  milter_frame_append (out, 'a', NULL, 0);
  g_assert_cmpmem (out->data, out->len, "\0\0\0\3Hx\0\0\0\0\1a", 12);

  /* length bytes are big-endian over all four bytes */
  g_byte_array_set_size (out, 0);
  milter_frame_append (out, 'B', big, 70000);
  g_assert_cmpuint (out->len, ==, 70005);
  g_assert_cmpmem (out->data, 5,
                   "\0\x01\x11\x71"
                   "B",
                   5);
}

static void
test_names (void)
{
  static const char commands[] = "ABCDEHKLMNOQRTU";
  static const char replies[] = "+-24Oabcdehimpqrsty";

  for (const char *c = commands; *c != '\0'; c++)
    g_assert_nonnull (milter_command_name (*c));
  for (const char *c = replies; *c != '\0'; c++)
    g_assert_nonnull (milter_reply_name (*c));
  g_assert_cmpstr (milter_command_name ('O'), ==, "OPTNEG");
  g_assert_cmpstr (milter_command_name ('K'), ==, "QUIT_NC");
  g_assert_cmpstr (milter_reply_name ('y'), ==, "REPLYCODE");
  g_assert_cmpstr (milter_reply_name ('2'), ==, "ADDRCPT_PAR");
  g_assert_null (milter_command_name ('c'));
  g_assert_null (milter_command_name ('\0'));
  g_assert_null (milter_reply_name ('C'));
  g_assert_null (milter_reply_name ('f')); /* CONN_FAIL: Postfix does not know it either */
}

static void
test_stages (void)
{
  static const char expect[MILTER_N_STAGES] = { 'C', 'H', 'M', 'R', 'T', 'E', 'N' };

  for (int i = 0; i < MILTER_N_STAGES; i++)
    {
      g_assert_cmpint (milter_stage_to_command ((MilterStage)i), ==, expect[i]);
      g_assert_cmpint (milter_stage_from_command (expect[i]), ==, i);
    }
  g_assert_cmpint (milter_stage_from_command ('L'), ==, -1);
  g_assert_cmpint (milter_stage_from_command ('B'), ==, -1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (split_cases); i++)
    {
      const SplitCase *c = &split_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/milter/frame/split/%s", c->name);

      g_test_add_data_func (path, c, test_split_case);
    }
  g_test_add_func ("/proto/milter/frame/split/prefixes", test_split_prefixes);
  g_test_add_func ("/proto/milter/frame/append", test_append);
  g_test_add_func ("/proto/milter/frame/names", test_names);
  g_test_add_func ("/proto/milter/frame/stages", test_stages);
  return g_test_run ();
}
