/* SPDX-License-Identifier: MIT
 *
 * milter.h — the Sendmail milter protocol (version 2..6) as a pure codec:
 * framing, decoding and encoding of every packet in both directions, and
 * the option negotiation.  GLib only; bytes in, values out; never a socket.
 *
 * Two users:
 *   - the milter *server* in vpsd (the MTA talks to us): it splits frames,
 *     decodes MilterCommandPackets, answers with milter_encode_optneg_reply,
 *     milter_encode_reply_simple, milter_encode_replycode and the
 *     modification encoders;
 *   - the milter *connector* (we are the MTA and drive libmilter milters):
 *     it encodes commands with milter_encode_optneg .. milter_encode_quit_nc
 *     and decodes MilterReplyPackets.
 *
 * Wire format (see /work/shared/design/MILTER.md): u32 length (big-endian,
 * counts the command byte), one command byte, data.  Strings are
 * NUL-terminated inside the packet; the decoders refuse a string without
 * its NUL, a fixed field cut short and — where the protocol allows none —
 * trailing bytes, each with its own MilterError code.
 *
 * Ownership: decoded packets own copies of everything (they outlive the
 * receive buffer); free them with milter_command_packet_free /
 * milter_reply_packet_free (g_autoptr works).  Encoders append complete
 * frames to a caller-owned GByteArray and never fail, except the reply-code
 * encoders, which validate the text.
 */
#pragma once

#include <glib.h>

#include "proto/mail/mail-reply.h"

G_BEGIN_DECLS

/* ---- limits (every length read from the wire is checked against one) ---- */

/* Default bound on a frame's length field (command byte + data).  libmilter
 * refuses more than 65535 data bytes unless told otherwise; an MTA sends at
 * most a body chunk, so 1 MiB is generous and still bounds memory. */
#define MILTER_MAX_PACKET (1024 * 1024)
/* libmilter's limit on the data of one packet: what we send must fit. */
#define MILTER_MAX_DATA_SIZE 65535
/* Body (BODY, REPLBODY) chunks we send: libmilter refuses larger ones. */
#define MILTER_MAX_BODY_CHUNK 65535
/* name/value pairs in one MACRO packet (Sendmail sends < 50 per stage). */
#define MILTER_MAX_MACROS 128
/* strings in a MAIL/RCPT packet: the address + ESMTP args. */
#define MILTER_MAX_ARGS 64
/* a header name or a macro name (RFC 5322 lines are at most 998 octets). */
#define MILTER_MAX_NAME 998
/* one symbol list of the negotiation answer ("{a} {b} ..."). */
#define MILTER_MAX_SYMLIST 4096
/* lines of an SMFIR_REPLYCODE (libmilter's smfi_setmlreply limit). */
#define MILTER_MAX_REPLY_LINES MAIL_MAX_REPLY_LINES

/* ---- protocol versions and flag masks ----------------------------------- */

#define MILTER_VERSION 6
#define MILTER_VERSION_MIN 2

/* Actions SMFIF_* (what the milter may do at end of message). */
typedef enum
{
  MILTER_ACTION_ADDHDRS = 0x01, /* add and insert headers */
  MILTER_ACTION_CHGBODY = 0x02,
  MILTER_ACTION_ADDRCPT = 0x04,
  MILTER_ACTION_DELRCPT = 0x08,
  MILTER_ACTION_CHGHDRS = 0x10,
  MILTER_ACTION_QUARANTINE = 0x20,
  MILTER_ACTION_CHGFROM = 0x40,
  MILTER_ACTION_ADDRCPT_PAR = 0x80,
  MILTER_ACTION_SETSYMLIST = 0x100,
} MilterAction;

/* Protocol SMFIP_*: NO_* (do not send a step), NR_* (no reply to a step),
 * and extensions (SKIP, RCPT_REJ, HDR_LEADSPC). */
typedef enum
{
  MILTER_PROTO_NOCONNECT = 0x1,
  MILTER_PROTO_NOHELO = 0x2,
  MILTER_PROTO_NOMAIL = 0x4,
  MILTER_PROTO_NORCPT = 0x8,
  MILTER_PROTO_NOBODY = 0x10,
  MILTER_PROTO_NOHDRS = 0x20,
  MILTER_PROTO_NOEOH = 0x40,
  MILTER_PROTO_NR_HDR = 0x80,
  MILTER_PROTO_NOUNKNOWN = 0x100,
  MILTER_PROTO_NODATA = 0x200,
  MILTER_PROTO_SKIP = 0x400,
  MILTER_PROTO_RCPT_REJ = 0x800,
  MILTER_PROTO_NR_CONN = 0x1000,
  MILTER_PROTO_NR_HELO = 0x2000,
  MILTER_PROTO_NR_MAIL = 0x4000,
  MILTER_PROTO_NR_RCPT = 0x8000,
  MILTER_PROTO_NR_DATA = 0x10000,
  MILTER_PROTO_NR_UNKN = 0x20000,
  MILTER_PROTO_NR_EOH = 0x40000,
  MILTER_PROTO_NR_BODY = 0x80000,
  MILTER_PROTO_HDR_LEADSPC = 0x100000,
} MilterProtocol;

/* Everything version 6 defines (Postfix offers 6 / 0x1FF / 0x1FFFFF). */
#define MILTER_ACTIONS_ALL 0x1FFu
#define MILTER_PROTOCOL_ALL 0x1FFFFFu
/* Versions 2..5 know fewer bits (Postfix's MILTER8_V*_PROTO_MASK). */
#define MILTER_V2_ACTIONS 0x3Fu
#define MILTER_V2_PROTOCOL 0x7Fu
#define MILTER_V3_PROTOCOL (MILTER_V2_PROTOCOL | MILTER_PROTO_NOUNKNOWN)
#define MILTER_V4_PROTOCOL (MILTER_V3_PROTOCOL | MILTER_PROTO_NODATA)
/* An offer of 0 means "version 1 defaults" to libmilter. */
#define MILTER_V1_ACTIONS 0x0Fu
#define MILTER_V1_PROTOCOL 0x3Fu

/* ---- commands and replies (the wire bytes) ------------------------------ */

/* MTA -> milter, SMFIC_*. */
typedef enum
{
  MILTER_CMD_ABORT = 'A',
  MILTER_CMD_BODY = 'B',
  MILTER_CMD_CONNECT = 'C',
  MILTER_CMD_MACRO = 'D',
  MILTER_CMD_EOB = 'E',
  MILTER_CMD_HELO = 'H',
  MILTER_CMD_QUIT_NC = 'K',
  MILTER_CMD_HEADER = 'L',
  MILTER_CMD_MAIL = 'M',
  MILTER_CMD_EOH = 'N',
  MILTER_CMD_OPTNEG = 'O',
  MILTER_CMD_QUIT = 'Q',
  MILTER_CMD_RCPT = 'R',
  MILTER_CMD_DATA = 'T',
  MILTER_CMD_UNKNOWN = 'U',
} MilterCommand;

/* milter -> MTA, SMFIR_* (and 'O', the negotiation answer). */
typedef enum
{
  MILTER_REPLY_ADDRCPT = '+',
  MILTER_REPLY_DELRCPT = '-',
  MILTER_REPLY_ADDRCPT_PAR = '2',
  MILTER_REPLY_SHUTDOWN = '4',
  MILTER_REPLY_OPTNEG = 'O',
  MILTER_REPLY_ACCEPT = 'a',
  MILTER_REPLY_REPLBODY = 'b',
  MILTER_REPLY_CONTINUE = 'c',
  MILTER_REPLY_DISCARD = 'd',
  MILTER_REPLY_CHGFROM = 'e',
  MILTER_REPLY_ADDHEADER = 'h',
  MILTER_REPLY_INSHEADER = 'i',
  MILTER_REPLY_CHGHEADER = 'm',
  MILTER_REPLY_PROGRESS = 'p',
  MILTER_REPLY_QUARANTINE = 'q',
  MILTER_REPLY_REJECT = 'r',
  MILTER_REPLY_SKIP = 's',
  MILTER_REPLY_TEMPFAIL = 't',
  MILTER_REPLY_REPLYCODE = 'y',
} MilterReplyCode;

/* Stages of macros and symbol lists (SMFIM_*). */
typedef enum
{
  MILTER_STAGE_CONNECT = 0,
  MILTER_STAGE_HELO = 1,
  MILTER_STAGE_ENVFROM = 2,
  MILTER_STAGE_ENVRCPT = 3,
  MILTER_STAGE_DATA = 4,
  MILTER_STAGE_EOM = 5,
  MILTER_STAGE_EOH = 6,
} MilterStage;
#define MILTER_N_STAGES 7

/* Address families of CONNECT (SMFIA_*). */
typedef enum
{
  MILTER_FAMILY_UNKNOWN = 'U', /* no port, no address follow */
  MILTER_FAMILY_UNIX = 'L',
  MILTER_FAMILY_INET = '4',
  MILTER_FAMILY_INET6 = '6',
} MilterFamily;

/* The command a stage's macros are sent with ('C' for CONNECT, ...), and
 * back; the latter returns -1 for a byte that names no stage. */
char milter_stage_to_command (MilterStage stage);
int milter_stage_from_command (char command);
/* "OPTNEG", "CONTINUE", ...; NULL for a byte that is none. */
const char *milter_command_name (char command);
const char *milter_reply_name (char code);

/* ---- errors ------------------------------------------------------------- */

#define MILTER_ERROR (milter_error_quark ())
GQuark milter_error_quark (void);

typedef enum
{
  MILTER_ERROR_FRAME_EMPTY,     /* length field 0: not even a command byte */
  MILTER_ERROR_FRAME_TOO_BIG,   /* length field over the caller's limit */
  MILTER_ERROR_UNKNOWN_COMMAND, /* a command / reply byte not of that direction */
  MILTER_ERROR_TRUNCATED,       /* a fixed field (u32, u16, byte) cut short */
  MILTER_ERROR_UNTERMINATED,    /* a string without its NUL inside the packet */
  MILTER_ERROR_TRAILING,        /* bytes after the last field of a packet */
  MILTER_ERROR_EMPTY_FIELD,     /* empty header/macro name, envelope address, reply text */
  MILTER_ERROR_ODD_MACROS,      /* a MACRO list with a name but no value */
  MILTER_ERROR_LIMIT,           /* over MILTER_MAX_MACROS, _ARGS, _NAME, _SYMLIST */
  MILTER_ERROR_FAMILY,          /* CONNECT family not '4' '6' 'L' 'U' */
  MILTER_ERROR_STAGE,           /* symbol-list stage outside 0..6 */
  MILTER_ERROR_REPLY_CODE,      /* SMFIR_REPLYCODE text that is no 4xx/5xx reply */
  MILTER_ERROR_REPLY_LINES,     /* SMFIR_REPLYCODE with over MILTER_MAX_REPLY_LINES */
  MILTER_ERROR_VERSION,         /* version < 2, or an answer above the offer */
  MILTER_ERROR_ACTIONS,         /* a milter asks for actions the MTA did not offer */
} MilterError;

/* ---- framing ------------------------------------------------------------ */

typedef struct
{
  guint8 command;     /* the command / reply byte */
  const guint8 *data; /* into the caller's buffer (never NULL: may point past it if len 0) */
  gsize len;          /* data bytes, without the command byte */
} MilterFrame;

/* Split one frame off the front of [buf, buf+len).
 *   TRUE:  *out describes it, *consumed = its size (4 + length field);
 *   FALSE, no error: more bytes are needed (*consumed = 0);
 *   FALSE, error: MILTER_ERROR_FRAME_EMPTY or _FRAME_TOO_BIG — the stream is
 *   unusable, close it.  The size check happens on the 4 length bytes alone,
 *   so a hostile length never makes the caller buffer more than max_len.
 * max_len bounds the length field (command byte + data); use
 * MILTER_MAX_PACKET unless there is a reason not to. */
gboolean milter_frame_split (const guint8 *buf, gsize len, gsize max_len, gsize *consumed,
                             MilterFrame *out, GError **error);
/* Append one frame: length, command byte, data (len bytes, data may be NULL
 * when len is 0). */
void milter_frame_append (GByteArray *out, char cmd, const void *data, gsize len);

/* ---- negotiation -------------------------------------------------------- */

typedef struct
{
  guint32 version;
  guint32 actions;  /* MilterAction bits */
  guint32 protocol; /* MilterProtocol bits */
} MilterOptions;

/* What a protocol version can carry: MILTER_V2_* .. MILTER_*_ALL. */
guint32 milter_version_actions (guint32 version);
guint32 milter_version_protocol (guint32 version);

/* Server side (vpsd is the milter).  Given the MTA's offer and what we want
 * (want->version 0 = MILTER_VERSION), compute our answer as libmilter does:
 * version min(want, offer), refusing an offer below MILTER_VERSION_MIN
 * (MILTER_ERROR_VERSION); an offer of 0 actions / 0 protocol means the
 * version-1 defaults; actions and protocol are what we want AND what was
 * offered AND what the answered version knows — we never ask for anything
 * the MTA did not offer.  A wanted NR_* bit that is missing from the answer
 * means the MTA waits for a reply to that step: the caller must send 'c'. */
gboolean milter_negotiate_answer (const MilterOptions *offer, const MilterOptions *want,
                                  MilterOptions *answer, GError **error);

/* Connector side (we are the MTA).  Check a milter's answer against our
 * offer as Postfix does: version below MILTER_VERSION_MIN or above the
 * offer is MILTER_ERROR_VERSION, actions outside the offer
 * MILTER_ERROR_ACTIONS.  *effective gets the answer with the protocol
 * limited to the bits the answered version defines; protocol bits we did
 * not offer are honoured (Postfix does), so an NR_* bit we did not offer
 * still means "do not wait for that reply". */
gboolean milter_negotiate_check_answer (const MilterOptions *offer, const MilterOptions *answer,
                                        MilterOptions *effective, GError **error);

/* With the negotiated protocol and version: does the MTA send this command
 * at all, and does it then wait for a reply?  (MACRO, ABORT, QUIT, QUIT_NC
 * are never replied; OPTNEG and EOB always are.) */
gboolean milter_protocol_sends (const MilterOptions *negotiated, MilterCommand cmd);
gboolean milter_protocol_expects_reply (const MilterOptions *negotiated, MilterCommand cmd);

/* ---- MTA -> milter: decoding -------------------------------------------- */

typedef struct
{
  MilterCommand command;
  union
  {
    MilterOptions optneg; /* OPTNEG: exactly 12 bytes */
    struct
    {
      char stage;   /* the command byte these macros precede; any byte is accepted */
      char **pairs; /* NULL-terminated: name, value, name, value, ... (may be empty) */
      guint n_pairs;
    } macro;
    struct
    {
      char *host;
      MilterFamily family;
      guint16 port;  /* host order; 0 for UNKNOWN */
      char *address; /* NULL for UNKNOWN */
    } connect;
    struct
    {
      char *name;
    } helo;
    struct
    {
      char **argv; /* MAIL, RCPT: NULL-terminated, argv[0] the address ("<a@b>") */
      guint argc;  /* >= 1 */
    } envelope;
    struct
    {
      char *name;  /* not empty */
      char *value; /* as sent (with its leading space under HDR_LEADSPC) */
    } header;
    GBytes *body;  /* BODY; EOB: a final chunk (libmilter accepts one), usually empty */
    char *unknown; /* UNKNOWN: the SMTP command line */
  } u;
} MilterCommandPacket;

/* Decode one MTA->milter frame.  DATA, EOH, ABORT, QUIT and QUIT_NC carry
 * no data.  Errors: MILTER_ERROR_UNKNOWN_COMMAND, _TRUNCATED,
 * _UNTERMINATED, _TRAILING, _EMPTY_FIELD, _ODD_MACROS, _LIMIT, _FAMILY. */
MilterCommandPacket *milter_command_decode (const MilterFrame *frame, GError **error);
void milter_command_packet_free (MilterCommandPacket *packet);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MilterCommandPacket, milter_command_packet_free)

/* ---- MTA -> milter: encoding (the connector) ---------------------------- */

void milter_encode_optneg (GByteArray *out, const MilterOptions *offer);
/* pairs: NULL-terminated name, value, ... (an even count); NULL = none. */
void milter_encode_macro (GByteArray *out, char stage, const char *const *pairs);
/* port and address are ignored for MILTER_FAMILY_UNKNOWN. */
void milter_encode_connect (GByteArray *out, const char *host, MilterFamily family, guint16 port,
                            const char *address);
void milter_encode_helo (GByteArray *out, const char *name);
/* cmd MILTER_CMD_MAIL or MILTER_CMD_RCPT; argv NULL-terminated, argv[0] the
 * address, then each ESMTP argument. */
void milter_encode_envelope (GByteArray *out, MilterCommand cmd, const char *const *argv);
void milter_encode_data (GByteArray *out);
void milter_encode_header (GByteArray *out, const char *name, const char *value);
void milter_encode_eoh (GByteArray *out);
/* As many BODY packets as needed, each at most MILTER_MAX_BODY_CHUNK bytes;
 * nothing for len 0.  Returns the number of packets. */
guint milter_encode_body (GByteArray *out, const void *data, gsize len);
void milter_encode_eob (GByteArray *out);
void milter_encode_abort (GByteArray *out);
void milter_encode_quit (GByteArray *out);
void milter_encode_quit_nc (GByteArray *out);
void milter_encode_unknown (GByteArray *out, const char *line);

/* ---- milter -> MTA: decoding (the connector) ---------------------------- */

typedef struct
{
  MilterReplyCode code;
  union
  {
    struct
    {
      MilterOptions options;
      /* the symbol lists the milter asked for, per MilterStage; NULL = none
       * sent (keep the MTA's default).  A later list for the same stage
       * replaces an earlier one, as in Postfix. */
      char *symlists[MILTER_N_STAGES];
    } optneg;
    MailReply *reply; /* REPLYCODE: 4xx/5xx, '%%' already undone */
    struct
    {
      guint32 index; /* INSHEADER (0 = top), CHGHEADER (1 = first of that name); ADDHEADER 0 */
      char *name;    /* not empty */
      char *value;   /* CHGHEADER: "" deletes */
    } header;
    struct
    {
      char *address; /* CHGFROM, ADDRCPT, ADDRCPT_PAR, DELRCPT */
      char *args;    /* CHGFROM, ADDRCPT_PAR: one space-separated string, or NULL */
    } envelope;
    GBytes *body; /* REPLBODY: one chunk */
    char *reason; /* QUARANTINE */
  } u;
} MilterReplyPacket;

/* Decode one milter->MTA frame.  Verdicts (c a r t d s p 4) carry no data.
 * Errors: MILTER_ERROR_UNKNOWN_COMMAND, _TRUNCATED, _UNTERMINATED,
 * _TRAILING, _EMPTY_FIELD, _LIMIT, _STAGE, _REPLY_CODE, _REPLY_LINES. */
MilterReplyPacket *milter_reply_decode (const MilterFrame *frame, GError **error);
void milter_reply_packet_free (MilterReplyPacket *packet);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MilterReplyPacket, milter_reply_packet_free)

/* ---- milter -> MTA: encoding (the server in vpsd) ----------------------- */

/* The 'O' answer, then each non-NULL symlists[stage] (may be NULL). */
void milter_encode_optneg_reply (GByteArray *out, const MilterOptions *answer,
                                 const char *const *symlists);
/* code: one of c a r t d s p 4 (no data). */
void milter_encode_reply_simple (GByteArray *out, MilterReplyCode code);
/* SMFIR_REPLYCODE from parts validated by mail_reply_new (errors in
 * MAIL_ERROR: code, enhanced code, text, at most 32 lines), then
 * MILTER_ERROR_REPLY_CODE unless 4xx/5xx.  Without an enhanced code the
 * class default "4.0.0"/"5.0.0" is sent, as libmilter does (Postfix reads
 * the enhanced code at a fixed offset).  Lines become "550-5.7.1 a\r\n550
 * 5.7.1 b" and '%' is doubled (mail_reply_format_milter). */
gboolean milter_encode_replycode (GByteArray *out, guint code, const char *enhanced,
                                  const char *text, GError **error);
/* The same from a finished MailReply. */
gboolean milter_encode_reply (GByteArray *out, const MailReply *reply, GError **error);
void milter_encode_addheader (GByteArray *out, const char *name, const char *value);
void milter_encode_insheader (GByteArray *out, guint32 index, const char *name, const char *value);
/* value "" deletes the index-th header of that name. */
void milter_encode_chgheader (GByteArray *out, guint32 index, const char *name, const char *value);
/* args: one space-separated ESMTP args string, or NULL. */
void milter_encode_chgfrom (GByteArray *out, const char *from, const char *args);
void milter_encode_addrcpt (GByteArray *out, const char *rcpt);
void milter_encode_addrcpt_par (GByteArray *out, const char *rcpt, const char *args);
void milter_encode_delrcpt (GByteArray *out, const char *rcpt);
/* REPLBODY packets of at most MILTER_MAX_BODY_CHUNK bytes; returns their
 * number.  len 0 sends one empty packet: Postfix starts the replacement on
 * the first REPLBODY, so that is how a body is replaced by nothing. */
guint milter_encode_replbody (GByteArray *out, const void *data, gsize len);
void milter_encode_quarantine (GByteArray *out, const char *reason);

G_END_DECLS
