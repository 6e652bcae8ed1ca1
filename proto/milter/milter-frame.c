/* SPDX-License-Identifier: MIT
 *
 * milter-frame.c — the MILTER_ERROR quark, command names, the framing of the
 * milter protocol and the bounded field reader every decoder uses.
 *
 * Contract: milter_frame_split() looks at the 4 length bytes before anything
 * else and refuses 0 and anything over the caller's limit at once, so a
 * peer announcing 0x80000000 bytes costs us nothing; it never copies.  The
 * reader functions never read outside the frame they were given and report
 * each kind of malformed field with its own MilterError code.
 *
 * Wire format: Sendmail's libmilter (mfdef.h, comm.c) and Postfix milter8.c;
 * see /work/shared/design/MILTER.md.
 */
#include <string.h>

#include "milter-private.h"

G_DEFINE_QUARK (milter - error - quark, milter_error)

/* ---- names -------------------------------------------------------------- */

typedef struct
{
  char byte;
  const char *name;
} MilterName;

static const MilterName command_names[] = {
  { MILTER_CMD_ABORT, "ABORT" },     { MILTER_CMD_BODY, "BODY" },
  { MILTER_CMD_CONNECT, "CONNECT" }, { MILTER_CMD_MACRO, "MACRO" },
  { MILTER_CMD_EOB, "EOB" },         { MILTER_CMD_HELO, "HELO" },
  { MILTER_CMD_QUIT_NC, "QUIT_NC" }, { MILTER_CMD_HEADER, "HEADER" },
  { MILTER_CMD_MAIL, "MAIL" },       { MILTER_CMD_EOH, "EOH" },
  { MILTER_CMD_OPTNEG, "OPTNEG" },   { MILTER_CMD_QUIT, "QUIT" },
  { MILTER_CMD_RCPT, "RCPT" },       { MILTER_CMD_DATA, "DATA" },
  { MILTER_CMD_UNKNOWN, "UNKNOWN" },
};

static const MilterName reply_names[] = {
  { MILTER_REPLY_ADDRCPT, "ADDRCPT" },
  { MILTER_REPLY_DELRCPT, "DELRCPT" },
  { MILTER_REPLY_ADDRCPT_PAR, "ADDRCPT_PAR" },
  { MILTER_REPLY_SHUTDOWN, "SHUTDOWN" },
  { MILTER_REPLY_OPTNEG, "OPTNEG" },
  { MILTER_REPLY_ACCEPT, "ACCEPT" },
  { MILTER_REPLY_REPLBODY, "REPLBODY" },
  { MILTER_REPLY_CONTINUE, "CONTINUE" },
  { MILTER_REPLY_DISCARD, "DISCARD" },
  { MILTER_REPLY_CHGFROM, "CHGFROM" },
  { MILTER_REPLY_ADDHEADER, "ADDHEADER" },
  { MILTER_REPLY_INSHEADER, "INSHEADER" },
  { MILTER_REPLY_CHGHEADER, "CHGHEADER" },
  { MILTER_REPLY_PROGRESS, "PROGRESS" },
  { MILTER_REPLY_QUARANTINE, "QUARANTINE" },
  { MILTER_REPLY_REJECT, "REJECT" },
  { MILTER_REPLY_SKIP, "SKIP" },
  { MILTER_REPLY_TEMPFAIL, "TEMPFAIL" },
  { MILTER_REPLY_REPLYCODE, "REPLYCODE" },
};

/* Indexed by MilterStage: the command whose macros the stage holds. */
static const char stage_commands[MILTER_N_STAGES] = {
  [MILTER_STAGE_CONNECT] = MILTER_CMD_CONNECT, [MILTER_STAGE_HELO] = MILTER_CMD_HELO,
  [MILTER_STAGE_ENVFROM] = MILTER_CMD_MAIL,    [MILTER_STAGE_ENVRCPT] = MILTER_CMD_RCPT,
  [MILTER_STAGE_DATA] = MILTER_CMD_DATA,       [MILTER_STAGE_EOM] = MILTER_CMD_EOB,
  [MILTER_STAGE_EOH] = MILTER_CMD_EOH,
};

static const char *
lookup_name (const MilterName *table, gsize n, char byte)
{
  for (gsize i = 0; i < n; i++)
    if (table[i].byte == byte)
      return table[i].name;
  return NULL;
}

const char *
milter_command_name (char command)
{
  return lookup_name (command_names, G_N_ELEMENTS (command_names), command);
}

const char *
milter_reply_name (char code)
{
  return lookup_name (reply_names, G_N_ELEMENTS (reply_names), code);
}

char
milter_stage_to_command (MilterStage stage)
{
  g_return_val_if_fail ((guint)stage < MILTER_N_STAGES, 0);
  return stage_commands[stage];
}

int
milter_stage_from_command (char command)
{
  for (int i = 0; i < MILTER_N_STAGES; i++)
    if (stage_commands[i] == command)
      return i;
  return -1;
}

/* ---- framing ------------------------------------------------------------ */

gboolean
milter_frame_split (const guint8 *buf, gsize len, gsize max_len, gsize *consumed, MilterFrame *out,
                    GError **error)
{
  guint32 plen;

  g_return_val_if_fail (buf != NULL || len == 0, FALSE);
  g_return_val_if_fail (max_len > 0, FALSE);
  g_return_val_if_fail (consumed != NULL && out != NULL, FALSE);

  *consumed = 0;
  if (len < 4)
    return FALSE;
  plen = ((guint32)buf[0] << 24) | ((guint32)buf[1] << 16) | ((guint32)buf[2] << 8) | buf[3];
  if (plen == 0)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_FRAME_EMPTY,
                   "milter packet of length 0 (no command byte)");
      return FALSE;
    }
  /* Checked before waiting for the data: the peer does not get to make us
   * buffer what it announces. */
  if (plen > max_len)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_FRAME_TOO_BIG,
                   "milter packet of %" G_GUINT32_FORMAT " bytes, limit %" G_GSIZE_FORMAT, plen,
                   max_len);
      return FALSE;
    }
  /* written so that 4 + plen cannot overflow a 32-bit gsize */
  if (plen > len - 4)
    return FALSE;
  out->command = buf[4];
  out->data = buf + 5;
  out->len = plen - 1;
  *consumed = 4 + (gsize)plen;
  return TRUE;
}

gsize
milter_frame_begin (GByteArray *out, char cmd)
{
  static const guint8 placeholder[4] = { 0 };
  gsize start = out->len;
  guint8 c = (guint8)cmd;

  g_byte_array_append (out, placeholder, sizeof placeholder);
  g_byte_array_append (out, &c, 1);
  return start;
}

void
milter_frame_end (GByteArray *out, gsize start)
{
  gsize plen = out->len - start - 4;

  /* Our own encoders never build 4 GiB; a caller that tries has a bug. */
  g_return_if_fail (plen <= G_MAXUINT32);
  out->data[start] = (guint8)(plen >> 24);
  out->data[start + 1] = (guint8)(plen >> 16);
  out->data[start + 2] = (guint8)(plen >> 8);
  out->data[start + 3] = (guint8)plen;
}

void
milter_put_u32 (GByteArray *out, guint32 v)
{
  guint8 b[4] = { (guint8)(v >> 24), (guint8)(v >> 16), (guint8)(v >> 8), (guint8)v };

  g_byte_array_append (out, b, sizeof b);
}

void
milter_put_string (GByteArray *out, const char *s)
{
  /* the NUL goes on the wire */
  g_byte_array_append (out, (const guint8 *)s, (guint)strlen (s) + 1);
}

void
milter_frame_append (GByteArray *out, char cmd, const void *data, gsize len)
{
  gsize start;

  g_return_if_fail (out != NULL);
  g_return_if_fail (data != NULL || len == 0);
  g_return_if_fail (len < G_MAXUINT32);

  start = milter_frame_begin (out, cmd);
  if (len > 0)
    g_byte_array_append (out, data, (guint)len);
  milter_frame_end (out, start);
}

/* ---- the bounded reader ------------------------------------------------- */

static gboolean
need (MilterReader *r, gsize n, const char *field, GError **error)
{
  if (r->left >= n)
    return TRUE;
  g_set_error (error, MILTER_ERROR, MILTER_ERROR_TRUNCATED,
               "%s packet: %s needs %" G_GSIZE_FORMAT " bytes, %" G_GSIZE_FORMAT " left", r->packet,
               field, n, r->left);
  return FALSE;
}

gboolean
milter_read_u32 (MilterReader *r, const char *field, guint32 *out, GError **error)
{
  if (!need (r, 4, field, error))
    return FALSE;
  *out = ((guint32)r->p[0] << 24) | ((guint32)r->p[1] << 16) | ((guint32)r->p[2] << 8) | r->p[3];
  r->p += 4;
  r->left -= 4;
  return TRUE;
}

gboolean
milter_read_u16 (MilterReader *r, const char *field, guint16 *out, GError **error)
{
  if (!need (r, 2, field, error))
    return FALSE;
  *out = (guint16)(((guint)r->p[0] << 8) | r->p[1]);
  r->p += 2;
  r->left -= 2;
  return TRUE;
}

gboolean
milter_read_byte (MilterReader *r, const char *field, guint8 *out, GError **error)
{
  if (!need (r, 1, field, error))
    return FALSE;
  *out = r->p[0];
  r->p++;
  r->left--;
  return TRUE;
}

gboolean
milter_read_string (MilterReader *r, const char *field, gsize max_len, const char **out,
                    gsize *out_len, GError **error)
{
  const guint8 *nul = r->left > 0 ? memchr (r->p, '\0', r->left) : NULL;
  gsize slen;

  if (nul == NULL)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_UNTERMINATED,
                   "%s packet: %s is not NUL-terminated", r->packet, field);
      return FALSE;
    }
  slen = (gsize)(nul - r->p);
  if (max_len > 0 && slen > max_len)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT,
                   "%s packet: %s of %" G_GSIZE_FORMAT " bytes, limit %" G_GSIZE_FORMAT, r->packet,
                   field, slen, max_len);
      return FALSE;
    }
  *out = (const char *)r->p;
  if (out_len != NULL)
    *out_len = slen;
  r->p += slen + 1;
  r->left -= slen + 1;
  return TRUE;
}

gboolean
milter_read_string_dup (MilterReader *r, const char *field, gsize max_len, char **out,
                        GError **error)
{
  const char *s;
  gsize slen;

  if (!milter_read_string (r, field, max_len, &s, &slen, error))
    return FALSE;
  *out = g_strndup (s, slen);
  return TRUE;
}

gboolean
milter_read_end (MilterReader *r, GError **error)
{
  if (r->left == 0)
    return TRUE;
  g_set_error (error, MILTER_ERROR, MILTER_ERROR_TRAILING,
               "%s packet: %" G_GSIZE_FORMAT " trailing bytes", r->packet, r->left);
  return FALSE;
}
