/* SPDX-License-Identifier: MIT
 *
 * milter-reply.c — the milter -> MTA packets (SMFIR_* and the 'O' answer):
 * decoding for the milter connector, encoding for the milter server.
 *
 * Contract: milter_reply_decode() accepts what Postfix's milter8.c accepts
 * and refuses the rest with one MilterError per family: verdicts carry no
 * data; CHGFROM and ADDRCPT_PAR carry one optional args string (not an
 * argv); a REPLYCODE is one NUL-terminated "ddd x.y.z text" with "ddd-"
 * continuation lines, 4xx or 5xx, at most MILTER_MAX_REPLY_LINES lines, and
 * comes back as a MailReply with Sendmail's '%%' undone (Postfix does the
 * same).  The reply encoders build their text through proto/mail
 * (mail_reply_new, mail_reply_format_milter): replies are formatted in one
 * place only.
 */
#include <string.h>

#include "milter-private.h"

/* ---- decoding ----------------------------------------------------------- */

static gboolean
decode_optneg (MilterReader *r, MilterReplyPacket *p, GError **error)
{
  if (!milter_read_u32 (r, "version", &p->u.optneg.options.version, error)
      || !milter_read_u32 (r, "actions", &p->u.optneg.options.actions, error)
      || !milter_read_u32 (r, "protocol", &p->u.optneg.options.protocol, error))
    return FALSE;
  /* Symbol lists are not a packet of their own: u32 stage + string pairs
   * after the 12 bytes. */
  while (r->left > 0)
    {
      guint32 stage;
      char *list;

      if (!milter_read_u32 (r, "symbol list stage", &stage, error))
        return FALSE;
      if (stage >= MILTER_N_STAGES)
        {
          g_set_error (error, MILTER_ERROR, MILTER_ERROR_STAGE,
                       "OPTNEG reply: symbol list for unknown stage %" G_GUINT32_FORMAT, stage);
          return FALSE;
        }
      if (!milter_read_string_dup (r, "symbol list", MILTER_MAX_SYMLIST, &list, error))
        return FALSE;
      g_free (p->u.optneg.symlists[stage]);
      p->u.optneg.symlists[stage] = list;
    }
  return TRUE;
}

/* Sendmail uses the text as a format string, so milters double '%'.
 * Undo it as Postfix does: "%%" -> "%", and a lone '%' is dropped. */
static char *
undo_percent (const char *s, gsize len)
{
  char *out = g_malloc (len + 1);
  gsize o = 0;

  for (gsize i = 0; i < len; i++)
    {
      if (s[i] == '%')
        {
          if (++i == len)
            break;
        }
      out[o++] = s[i];
    }
  out[o] = '\0';
  return out;
}

static MailReply *
decode_replycode_text (const char *s, gsize len, GError **error)
{
  g_autofree char *text = NULL;
  g_autofree char *wire = NULL;
  g_autoptr (GError) local = NULL;
  g_autoptr (MailReply) reply = NULL;
  gsize tlen, consumed = 0;
  guint lines = 1;
  guint code;

  if (len == 0)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_EMPTY_FIELD, "REPLYCODE reply: empty text");
      return NULL;
    }
  text = undo_percent (s, len);
  tlen = strlen (text);
  /* tolerate one final CRLF, which libmilter never sends but a home-made
   * milter might */
  if (tlen >= 2 && text[tlen - 2] == '\r' && text[tlen - 1] == '\n')
    text[tlen -= 2] = '\0';
  for (gsize i = 0; i < tlen; i++)
    if (text[i] == '\n' && ++lines > MILTER_MAX_REPLY_LINES)
      {
        g_set_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_LINES,
                     "REPLYCODE reply: more than %d lines", MILTER_MAX_REPLY_LINES);
        return NULL;
      }
  wire = g_strconcat (text, "\r\n", NULL);
  reply = mail_reply_parse (wire, tlen + 2, &consumed, &local);
  if (reply == NULL)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_CODE, "REPLYCODE reply: %s",
                   local->message);
      return NULL;
    }
  if (consumed != tlen + 2)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_CODE,
                   "REPLYCODE reply: text after the last line");
      return NULL;
    }
  code = mail_reply_get_code (reply);
  if (code / 100 != 4 && code / 100 != 5)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_CODE,
                   "REPLYCODE reply: code %u is not 4xx or 5xx", code);
      return NULL;
    }
  /* "550 4.7.1 x": an enhanced code of the wrong class, which Postfix
   * refuses as malformed rather than showing it as text. */
  if (mail_reply_get_enhanced (reply) == NULL
      && g_ascii_isdigit (mail_reply_get_line (reply, 0)[0]))
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_CODE,
                   "REPLYCODE reply: enhanced code does not match code %u", code);
      return NULL;
    }
  return g_steal_pointer (&reply);
}

static gboolean
decode_header (MilterReader *r, MilterReplyPacket *p, gboolean indexed, GError **error)
{
  if (indexed && !milter_read_u32 (r, "index", &p->u.header.index, error))
    return FALSE;
  if (!milter_read_string_dup (r, "header name", MILTER_MAX_NAME, &p->u.header.name, error))
    return FALSE;
  if (p->u.header.name[0] == '\0')
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_EMPTY_FIELD, "%s reply: empty header name",
                   r->packet);
      return FALSE;
    }
  return milter_read_string_dup (r, "header value", 0, &p->u.header.value, error)
         && milter_read_end (r, error);
}

static gboolean
decode_envelope (MilterReader *r, MilterReplyPacket *p, gboolean with_args, GError **error)
{
  if (!milter_read_string_dup (r, "address", 0, &p->u.envelope.address, error))
    return FALSE;
  if (p->u.envelope.address[0] == '\0')
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_EMPTY_FIELD, "%s reply: empty address",
                   r->packet);
      return FALSE;
    }
  /* one optional args string (MILTER.md errata: not an argv) */
  if (with_args && r->left > 0
      && !milter_read_string_dup (r, "args", 0, &p->u.envelope.args, error))
    return FALSE;
  return milter_read_end (r, error);
}

MilterReplyPacket *
milter_reply_decode (const MilterFrame *frame, GError **error)
{
  g_autoptr (MilterReplyPacket) p = NULL;
  const char *name;
  MilterReader r;
  gboolean ok = FALSE;

  g_return_val_if_fail (frame != NULL, NULL);
  g_return_val_if_fail (frame->data != NULL || frame->len == 0, NULL);

  name = milter_reply_name ((char)frame->command);
  if (name == NULL)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_UNKNOWN_COMMAND, "unknown milter reply 0x%02x",
                   frame->command);
      return NULL;
    }
  p = g_new0 (MilterReplyPacket, 1);
  p->code = (MilterReplyCode)frame->command;
  milter_reader_init (&r, frame, name);
  switch (p->code)
    {
      case MILTER_REPLY_OPTNEG:
        ok = decode_optneg (&r, p, error);
        break;
      case MILTER_REPLY_CONTINUE:
      case MILTER_REPLY_ACCEPT:
      case MILTER_REPLY_REJECT:
      case MILTER_REPLY_TEMPFAIL:
      case MILTER_REPLY_DISCARD:
      case MILTER_REPLY_SKIP:
      case MILTER_REPLY_PROGRESS:
      case MILTER_REPLY_SHUTDOWN:
        ok = milter_read_end (&r, error);
        break;
      case MILTER_REPLY_REPLYCODE:
        {
          const char *s;
          gsize slen;

          ok = milter_read_string (&r, "reply text", 0, &s, &slen, error)
               && milter_read_end (&r, error)
               && (p->u.reply = decode_replycode_text (s, slen, error)) != NULL;
        }
        break;
      case MILTER_REPLY_ADDHEADER:
        ok = decode_header (&r, p, FALSE, error);
        break;
      case MILTER_REPLY_INSHEADER:
      case MILTER_REPLY_CHGHEADER:
        ok = decode_header (&r, p, TRUE, error);
        break;
      case MILTER_REPLY_CHGFROM:
      case MILTER_REPLY_ADDRCPT_PAR:
        ok = decode_envelope (&r, p, TRUE, error);
        break;
      case MILTER_REPLY_ADDRCPT:
      case MILTER_REPLY_DELRCPT:
        ok = decode_envelope (&r, p, FALSE, error);
        break;
      case MILTER_REPLY_REPLBODY:
        p->u.body = g_bytes_new (frame->data, frame->len);
        ok = TRUE;
        break;
      case MILTER_REPLY_QUARANTINE:
        /* an empty reason is accepted, as Postfix does */
        ok = milter_read_string_dup (&r, "reason", 0, &p->u.reason, error)
             && milter_read_end (&r, error);
        break;
      default:
        g_assert_not_reached ();
    }
  if (!ok)
    return NULL;
  return g_steal_pointer (&p);
}

void
milter_reply_packet_free (MilterReplyPacket *p)
{
  if (p == NULL)
    return;
  switch (p->code)
    {
      case MILTER_REPLY_OPTNEG:
        for (guint i = 0; i < MILTER_N_STAGES; i++)
          g_free (p->u.optneg.symlists[i]);
        break;
      case MILTER_REPLY_REPLYCODE:
        g_clear_pointer (&p->u.reply, mail_reply_unref);
        break;
      case MILTER_REPLY_ADDHEADER:
      case MILTER_REPLY_INSHEADER:
      case MILTER_REPLY_CHGHEADER:
        g_free (p->u.header.name);
        g_free (p->u.header.value);
        break;
      case MILTER_REPLY_CHGFROM:
      case MILTER_REPLY_ADDRCPT_PAR:
      case MILTER_REPLY_ADDRCPT:
      case MILTER_REPLY_DELRCPT:
        g_free (p->u.envelope.address);
        g_free (p->u.envelope.args);
        break;
      case MILTER_REPLY_REPLBODY:
        g_clear_pointer (&p->u.body, g_bytes_unref);
        break;
      case MILTER_REPLY_QUARANTINE:
        g_free (p->u.reason);
        break;
      default:
        break;
    }
  g_free (p);
}

/* ---- encoding ----------------------------------------------------------- */

void
milter_encode_optneg_reply (GByteArray *out, const MilterOptions *answer,
                            const char *const *symlists)
{
  gsize start;

  g_return_if_fail (out != NULL && answer != NULL);
  start = milter_frame_begin (out, MILTER_REPLY_OPTNEG);
  milter_put_u32 (out, answer->version);
  milter_put_u32 (out, answer->actions);
  milter_put_u32 (out, answer->protocol);
  for (guint i = 0; symlists != NULL && i < MILTER_N_STAGES; i++)
    if (symlists[i] != NULL)
      {
        milter_put_u32 (out, i);
        milter_put_string (out, symlists[i]);
      }
  milter_frame_end (out, start);
}

void
milter_encode_reply_simple (GByteArray *out, MilterReplyCode code)
{
  g_return_if_fail (out != NULL);
  g_return_if_fail (code == MILTER_REPLY_CONTINUE || code == MILTER_REPLY_ACCEPT
                    || code == MILTER_REPLY_REJECT || code == MILTER_REPLY_TEMPFAIL
                    || code == MILTER_REPLY_DISCARD || code == MILTER_REPLY_SKIP
                    || code == MILTER_REPLY_PROGRESS || code == MILTER_REPLY_SHUTDOWN);
  milter_frame_append (out, (char)code, NULL, 0);
}

gboolean
milter_encode_reply (GByteArray *out, const MailReply *reply, GError **error)
{
  g_autoptr (MailReply) with_enhanced = NULL;
  g_autofree char *text = NULL;
  guint code;
  gsize start;

  g_return_val_if_fail (out != NULL && reply != NULL, FALSE);

  code = mail_reply_get_code (reply);
  if (code / 100 != 4 && code / 100 != 5)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_REPLY_CODE,
                   "a milter reply code must be 4xx or 5xx, not %u", code);
      return FALSE;
    }
  if (mail_reply_get_enhanced (reply) == NULL)
    {
      /* libmilter's smfi_setreply default; Postfix looks for the class
       * digit right after the code. */
      const char *dflt = code / 100 == 4 ? "4.0.0" : "5.0.0";

      with_enhanced = mail_reply_new_lines (code, dflt, mail_reply_get_lines (reply), error);
      if (with_enhanced == NULL)
        return FALSE;
      reply = with_enhanced;
    }
  text = mail_reply_format_milter (reply);
  start = milter_frame_begin (out, MILTER_REPLY_REPLYCODE);
  milter_put_string (out, text);
  milter_frame_end (out, start);
  return TRUE;
}

gboolean
milter_encode_replycode (GByteArray *out, guint code, const char *enhanced, const char *text,
                         GError **error)
{
  g_autoptr (MailReply) reply = NULL;

  g_return_val_if_fail (out != NULL, FALSE);

  reply = mail_reply_new (code, enhanced, text, error);
  if (reply == NULL)
    return FALSE;
  return milter_encode_reply (out, reply, error);
}

static void
encode_header (GByteArray *out, char cmd, gboolean indexed, guint32 index, const char *name,
               const char *value)
{
  gsize start = milter_frame_begin (out, cmd);

  if (indexed)
    milter_put_u32 (out, index);
  milter_put_string (out, name);
  milter_put_string (out, value);
  milter_frame_end (out, start);
}

void
milter_encode_addheader (GByteArray *out, const char *name, const char *value)
{
  g_return_if_fail (out != NULL && name != NULL && name[0] != '\0' && value != NULL);
  encode_header (out, MILTER_REPLY_ADDHEADER, FALSE, 0, name, value);
}

void
milter_encode_insheader (GByteArray *out, guint32 index, const char *name, const char *value)
{
  g_return_if_fail (out != NULL && name != NULL && name[0] != '\0' && value != NULL);
  encode_header (out, MILTER_REPLY_INSHEADER, TRUE, index, name, value);
}

void
milter_encode_chgheader (GByteArray *out, guint32 index, const char *name, const char *value)
{
  g_return_if_fail (out != NULL && name != NULL && name[0] != '\0');
  encode_header (out, MILTER_REPLY_CHGHEADER, TRUE, index, name, value != NULL ? value : "");
}

static void
encode_envelope (GByteArray *out, char cmd, const char *address, const char *args)
{
  gsize start = milter_frame_begin (out, cmd);

  milter_put_string (out, address);
  if (args != NULL)
    milter_put_string (out, args);
  milter_frame_end (out, start);
}

void
milter_encode_chgfrom (GByteArray *out, const char *from, const char *args)
{
  g_return_if_fail (out != NULL && from != NULL && from[0] != '\0');
  encode_envelope (out, MILTER_REPLY_CHGFROM, from, args);
}

void
milter_encode_addrcpt (GByteArray *out, const char *rcpt)
{
  g_return_if_fail (out != NULL && rcpt != NULL && rcpt[0] != '\0');
  encode_envelope (out, MILTER_REPLY_ADDRCPT, rcpt, NULL);
}

void
milter_encode_addrcpt_par (GByteArray *out, const char *rcpt, const char *args)
{
  g_return_if_fail (out != NULL && rcpt != NULL && rcpt[0] != '\0');
  encode_envelope (out, MILTER_REPLY_ADDRCPT_PAR, rcpt, args);
}

void
milter_encode_delrcpt (GByteArray *out, const char *rcpt)
{
  g_return_if_fail (out != NULL && rcpt != NULL && rcpt[0] != '\0');
  encode_envelope (out, MILTER_REPLY_DELRCPT, rcpt, NULL);
}

guint
milter_encode_replbody (GByteArray *out, const void *data, gsize len)
{
  const guint8 *p = data;
  guint n = 0;

  g_return_val_if_fail (out != NULL, 0);
  g_return_val_if_fail (data != NULL || len == 0, 0);

  if (len == 0)
    {
      /* Postfix starts the replacement at the first REPLBODY and ends it at
       * the next other packet: one empty packet replaces the body by none. */
      milter_frame_append (out, MILTER_REPLY_REPLBODY, NULL, 0);
      return 1;
    }
  for (gsize off = 0; off < len; off += MILTER_MAX_BODY_CHUNK, n++)
    milter_frame_append (out, MILTER_REPLY_REPLBODY, p + off,
                         MIN (len - off, MILTER_MAX_BODY_CHUNK));
  return n;
}

void
milter_encode_quarantine (GByteArray *out, const char *reason)
{
  g_return_if_fail (out != NULL && reason != NULL);
  encode_envelope (out, MILTER_REPLY_QUARANTINE, reason, NULL);
}
