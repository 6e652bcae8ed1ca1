/* SPDX-License-Identifier: MIT
 *
 * milter-command.c — the MTA -> milter packets (SMFIC_*): decoding for the
 * milter server in vpsd, encoding for the milter connector.
 *
 * Contract: milter_command_decode() accepts exactly the layout MILTER.md
 * describes and nothing more — every string NUL-terminated inside the
 * packet, no bytes after the last field (except EOB, which libmilter lets
 * carry a final body chunk) — and bounds every count and name by a named
 * limit before copying.  A MACRO packet is accepted for any stage byte:
 * Postfix sends macros before headers ('L') and body chunks ('B') too.
 * The encoders write what Postfix's milter8.c writes, byte for byte.
 */
#include <string.h>

#include "milter-private.h"

/* ---- decoding ----------------------------------------------------------- */

static gboolean
decode_optneg (MilterReader *r, MilterCommandPacket *p, GError **error)
{
  /* Sendmail and Postfix send exactly three u32; more would be a peer we do
   * not understand. */
  return milter_read_u32 (r, "version", &p->u.optneg.version, error)
         && milter_read_u32 (r, "actions", &p->u.optneg.actions, error)
         && milter_read_u32 (r, "protocol", &p->u.optneg.protocol, error)
         && milter_read_end (r, error);
}

static gboolean
decode_macro (MilterReader *r, MilterCommandPacket *p, GError **error)
{
  g_autoptr (GPtrArray) strings = g_ptr_array_new_with_free_func (g_free);
  guint8 stage;

  if (!milter_read_byte (r, "stage", &stage, error))
    return FALSE;
  p->u.macro.stage = (char)stage;
  while (r->left > 0)
    {
      gboolean is_name = strings->len % 2 == 0;
      const char *s;
      gsize slen;

      if (is_name && strings->len / 2 >= MILTER_MAX_MACROS)
        {
          g_set_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT, "MACRO packet: more than %d macros",
                       MILTER_MAX_MACROS);
          return FALSE;
        }
      if (!milter_read_string (r, is_name ? "macro name" : "macro value",
                               is_name ? MILTER_MAX_NAME : 0, &s, &slen, error))
        return FALSE;
      if (is_name && slen == 0)
        {
          g_set_error (error, MILTER_ERROR, MILTER_ERROR_EMPTY_FIELD,
                       "MACRO packet: empty macro name");
          return FALSE;
        }
      g_ptr_array_add (strings, g_strndup (s, slen));
    }
  if (strings->len % 2 != 0)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_ODD_MACROS,
                   "MACRO packet: macro \"%s\" has no value",
                   (const char *)g_ptr_array_index (strings, strings->len - 1));
      return FALSE;
    }
  p->u.macro.n_pairs = strings->len / 2;
  g_ptr_array_add (strings, NULL);
  p->u.macro.pairs = (char **)g_ptr_array_free (g_steal_pointer (&strings), FALSE);
  return TRUE;
}

static gboolean
decode_connect (MilterReader *r, MilterCommandPacket *p, GError **error)
{
  guint8 family;

  if (!milter_read_string_dup (r, "host", 0, &p->u.connect.host, error)
      || !milter_read_byte (r, "family", &family, error))
    return FALSE;
  switch (family)
    {
      case MILTER_FAMILY_UNKNOWN:
        /* Postfix and Sendmail send nothing after 'U'. */
        p->u.connect.family = MILTER_FAMILY_UNKNOWN;
        return milter_read_end (r, error);
      case MILTER_FAMILY_UNIX:
      case MILTER_FAMILY_INET:
      case MILTER_FAMILY_INET6:
        p->u.connect.family = (MilterFamily)family;
        break;
      default:
        g_set_error (error, MILTER_ERROR, MILTER_ERROR_FAMILY,
                     "CONNECT packet: unknown address family 0x%02x", family);
        return FALSE;
    }
  return milter_read_u16 (r, "port", &p->u.connect.port, error)
         && milter_read_string_dup (r, "address", 0, &p->u.connect.address, error)
         && milter_read_end (r, error);
}

static gboolean
decode_envelope (MilterReader *r, MilterCommandPacket *p, GError **error)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);

  /* at least the address, then each ESMTP argument as its own string */
  do
    {
      char *s;

      if (argv->len >= MILTER_MAX_ARGS)
        {
          g_set_error (error, MILTER_ERROR, MILTER_ERROR_LIMIT, "%s packet: more than %d arguments",
                       r->packet, MILTER_MAX_ARGS);
          return FALSE;
        }
      if (!milter_read_string_dup (r, argv->len == 0 ? "address" : "argument", 0, &s, error))
        return FALSE;
      g_ptr_array_add (argv, s);
    }
  while (r->left > 0);
  if (((const char *)g_ptr_array_index (argv, 0))[0] == '\0')
    {
      /* the null sender is "<>", never nothing */
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_EMPTY_FIELD, "%s packet: empty address",
                   r->packet);
      return FALSE;
    }
  p->u.envelope.argc = argv->len;
  g_ptr_array_add (argv, NULL);
  p->u.envelope.argv = (char **)g_ptr_array_free (g_steal_pointer (&argv), FALSE);
  return TRUE;
}

static gboolean
decode_header (MilterReader *r, MilterCommandPacket *p, GError **error)
{
  if (!milter_read_string_dup (r, "header name", MILTER_MAX_NAME, &p->u.header.name, error))
    return FALSE;
  if (p->u.header.name[0] == '\0')
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_EMPTY_FIELD, "HEADER packet: empty name");
      return FALSE;
    }
  return milter_read_string_dup (r, "header value", 0, &p->u.header.value, error)
         && milter_read_end (r, error);
}

static gboolean
decode_one_string (MilterReader *r, const char *field, char **out, GError **error)
{
  return milter_read_string_dup (r, field, 0, out, error) && milter_read_end (r, error);
}

MilterCommandPacket *
milter_command_decode (const MilterFrame *frame, GError **error)
{
  g_autoptr (MilterCommandPacket) p = NULL;
  const char *name;
  MilterReader r;
  gboolean ok = FALSE;

  g_return_val_if_fail (frame != NULL, NULL);
  g_return_val_if_fail (frame->data != NULL || frame->len == 0, NULL);

  name = milter_command_name ((char)frame->command);
  if (name == NULL)
    {
      g_set_error (error, MILTER_ERROR, MILTER_ERROR_UNKNOWN_COMMAND,
                   "unknown milter command 0x%02x", frame->command);
      return NULL;
    }
  p = g_new0 (MilterCommandPacket, 1);
  p->command = (MilterCommand)frame->command;
  milter_reader_init (&r, frame, name);
  switch (p->command)
    {
      case MILTER_CMD_OPTNEG:
        ok = decode_optneg (&r, p, error);
        break;
      case MILTER_CMD_MACRO:
        ok = decode_macro (&r, p, error);
        break;
      case MILTER_CMD_CONNECT:
        ok = decode_connect (&r, p, error);
        break;
      case MILTER_CMD_HELO:
        ok = decode_one_string (&r, "name", &p->u.helo.name, error);
        break;
      case MILTER_CMD_MAIL:
      case MILTER_CMD_RCPT:
        ok = decode_envelope (&r, p, error);
        break;
      case MILTER_CMD_HEADER:
        ok = decode_header (&r, p, error);
        break;
      case MILTER_CMD_BODY:
      case MILTER_CMD_EOB:
        p->u.body = g_bytes_new (frame->data, frame->len);
        ok = TRUE;
        break;
      case MILTER_CMD_UNKNOWN:
        ok = decode_one_string (&r, "command line", &p->u.unknown, error);
        break;
      case MILTER_CMD_DATA:
      case MILTER_CMD_EOH:
      case MILTER_CMD_ABORT:
      case MILTER_CMD_QUIT:
      case MILTER_CMD_QUIT_NC:
        ok = milter_read_end (&r, error);
        break;
      default:
        g_assert_not_reached ();
    }
  if (!ok)
    return NULL;
  return g_steal_pointer (&p);
}

void
milter_command_packet_free (MilterCommandPacket *p)
{
  if (p == NULL)
    return;
  switch (p->command)
    {
      case MILTER_CMD_MACRO:
        g_strfreev (p->u.macro.pairs);
        break;
      case MILTER_CMD_CONNECT:
        g_free (p->u.connect.host);
        g_free (p->u.connect.address);
        break;
      case MILTER_CMD_HELO:
        g_free (p->u.helo.name);
        break;
      case MILTER_CMD_MAIL:
      case MILTER_CMD_RCPT:
        g_strfreev (p->u.envelope.argv);
        break;
      case MILTER_CMD_HEADER:
        g_free (p->u.header.name);
        g_free (p->u.header.value);
        break;
      case MILTER_CMD_BODY:
      case MILTER_CMD_EOB:
        g_clear_pointer (&p->u.body, g_bytes_unref);
        break;
      case MILTER_CMD_UNKNOWN:
        g_free (p->u.unknown);
        break;
      case MILTER_CMD_OPTNEG:
      case MILTER_CMD_DATA:
      case MILTER_CMD_EOH:
      case MILTER_CMD_ABORT:
      case MILTER_CMD_QUIT:
      case MILTER_CMD_QUIT_NC:
      default:
        break;
    }
  g_free (p);
}

/* ---- encoding ----------------------------------------------------------- */

void
milter_encode_optneg (GByteArray *out, const MilterOptions *offer)
{
  gsize start;

  g_return_if_fail (out != NULL && offer != NULL);
  start = milter_frame_begin (out, MILTER_CMD_OPTNEG);
  milter_put_u32 (out, offer->version);
  milter_put_u32 (out, offer->actions);
  milter_put_u32 (out, offer->protocol);
  milter_frame_end (out, start);
}

void
milter_encode_macro (GByteArray *out, char stage, const char *const *pairs)
{
  guint8 s = (guint8)stage;
  gsize start;
  guint n = pairs != NULL ? g_strv_length ((char **)pairs) : 0;

  g_return_if_fail (out != NULL);
  g_return_if_fail (n % 2 == 0);
  start = milter_frame_begin (out, MILTER_CMD_MACRO);
  g_byte_array_append (out, &s, 1);
  for (guint i = 0; i < n; i++)
    milter_put_string (out, pairs[i]);
  milter_frame_end (out, start);
}

void
milter_encode_connect (GByteArray *out, const char *host, MilterFamily family, guint16 port,
                       const char *address)
{
  guint8 f = (guint8)family;
  gsize start;

  g_return_if_fail (out != NULL && host != NULL);
  g_return_if_fail (family == MILTER_FAMILY_UNKNOWN || address != NULL);
  g_return_if_fail (family == MILTER_FAMILY_UNKNOWN || family == MILTER_FAMILY_UNIX
                    || family == MILTER_FAMILY_INET || family == MILTER_FAMILY_INET6);

  start = milter_frame_begin (out, MILTER_CMD_CONNECT);
  milter_put_string (out, host);
  g_byte_array_append (out, &f, 1);
  if (family != MILTER_FAMILY_UNKNOWN)
    {
      guint8 p[2] = { (guint8)(port >> 8), (guint8)port };

      g_byte_array_append (out, p, sizeof p);
      milter_put_string (out, address);
    }
  milter_frame_end (out, start);
}

static void
encode_strings (GByteArray *out, char cmd, const char *a, const char *b)
{
  gsize start = milter_frame_begin (out, cmd);

  milter_put_string (out, a);
  if (b != NULL)
    milter_put_string (out, b);
  milter_frame_end (out, start);
}

void
milter_encode_helo (GByteArray *out, const char *name)
{
  g_return_if_fail (out != NULL && name != NULL);
  encode_strings (out, MILTER_CMD_HELO, name, NULL);
}

void
milter_encode_envelope (GByteArray *out, MilterCommand cmd, const char *const *argv)
{
  gsize start;

  g_return_if_fail (out != NULL);
  g_return_if_fail (cmd == MILTER_CMD_MAIL || cmd == MILTER_CMD_RCPT);
  g_return_if_fail (argv != NULL && argv[0] != NULL);

  start = milter_frame_begin (out, (char)cmd);
  for (guint i = 0; argv[i] != NULL; i++)
    milter_put_string (out, argv[i]);
  milter_frame_end (out, start);
}

void
milter_encode_header (GByteArray *out, const char *name, const char *value)
{
  g_return_if_fail (out != NULL && name != NULL && value != NULL);
  encode_strings (out, MILTER_CMD_HEADER, name, value);
}

void
milter_encode_unknown (GByteArray *out, const char *line)
{
  g_return_if_fail (out != NULL && line != NULL);
  encode_strings (out, MILTER_CMD_UNKNOWN, line, NULL);
}

guint
milter_encode_body (GByteArray *out, const void *data, gsize len)
{
  const guint8 *p = data;
  guint n = 0;

  g_return_val_if_fail (out != NULL, 0);
  g_return_val_if_fail (data != NULL || len == 0, 0);

  for (gsize off = 0; off < len; off += MILTER_MAX_BODY_CHUNK, n++)
    milter_frame_append (out, MILTER_CMD_BODY, p + off, MIN (len - off, MILTER_MAX_BODY_CHUNK));
  return n;
}

void
milter_encode_data (GByteArray *out)
{
  milter_frame_append (out, MILTER_CMD_DATA, NULL, 0);
}

void
milter_encode_eoh (GByteArray *out)
{
  milter_frame_append (out, MILTER_CMD_EOH, NULL, 0);
}

void
milter_encode_eob (GByteArray *out)
{
  milter_frame_append (out, MILTER_CMD_EOB, NULL, 0);
}

void
milter_encode_abort (GByteArray *out)
{
  milter_frame_append (out, MILTER_CMD_ABORT, NULL, 0);
}

void
milter_encode_quit (GByteArray *out)
{
  milter_frame_append (out, MILTER_CMD_QUIT, NULL, 0);
}

void
milter_encode_quit_nc (GByteArray *out)
{
  milter_frame_append (out, MILTER_CMD_QUIT_NC, NULL, 0);
}
