/* SPDX-License-Identifier: MIT
 *
 * policy.h — the Postfix SMTP access policy delegation protocol
 * (SMTPD_POLICY_README) as a pure codec: requests and replies, both
 * directions.  GLib + proto/mail only; bytes in, values out; never a socket.
 *
 * Wire format.  A request is a sequence of "name=value" lines ended by LF,
 * terminated by an empty line.  A reply has the same shape; Postfix reads
 * one attribute, "action=VALUE".  Postfix writes bare LF; CRLF is tolerated
 * on input (one CR directly before an LF is dropped), never produced.
 *
 * Two users:
 *   - the policy *server* in vpsd (Postfix talks to us): it feeds received
 *     bytes to a PolicyParser, gets PolicyRequests, and answers with
 *     policy_reply_encode();
 *   - the policy *connector* (we are the client of postgrey, policyd-spf,
 *     another vpsd): it builds a request with policy_request_add() or
 *     policy_encode_attr(), and reads the answer with policy_reply_parse().
 *
 * Strictness (each malformed input has its own PolicyError code):
 *   - names are [a-z0-9_]+ (what Postfix sends); '=' ends the name, the
 *     value is everything after the first '=' up to the LF (it may contain
 *     '=' and any byte but NUL and LF; values are opaque here: callers
 *     parse addresses etc. with proto/mail).  A value that still ends in CR
 *     after the one CR of CRLF was dropped is refused (POLICY_ERROR_NEWLINE):
 *     it could not be passed on unchanged;
 *   - NUL anywhere is an error; a line without '=' is an error; an empty
 *     name is an error;
 *   - a duplicate name in one request or reply is REFUSED
 *     (POLICY_ERROR_DUPLICATE): Postfix never sends one, and "keep last"
 *     would let a forged second "instance=" or "recipient=" hide behind a
 *     genuine first one;
 *   - limits (below) are checked before more bytes are buffered, so a
 *     hostile peer never makes us hold more than POLICY_MAX_REQUEST.
 *
 * Ownership: requests and actions own copies of everything.  PolicyRequest
 * is reference-counted (the front end may hold it across async callbacks);
 * PolicyAction is a plain struct with public fields and a free function.
 */
#pragma once

#include <glib.h>

#include "proto/mail/mail-reply.h"

G_BEGIN_DECLS

/* ---- limits ------------------------------------------------------------- */

/* One "name=value" line including its LF (and a tolerated CR).  Postfix's
 * own line_length_limit is 2048; ccert_subject or a long sasl_username can
 * come close, so twice that. */
#define POLICY_MAX_LINE 4096
/* An attribute name (Postfix's longest is ~25 bytes). */
#define POLICY_MAX_NAME 64
/* Attributes in one request: Postfix 3.7 sends 31. */
#define POLICY_MAX_ATTRS 128
/* One whole request, all lines and the terminating empty line. */
#define POLICY_MAX_REQUEST 65536
/* Attributes in one reply (Postfix reads one; some servers add more). */
#define POLICY_MAX_REPLY_ATTRS 16
/* One whole reply. */
#define POLICY_MAX_REPLY 8192

/* ---- errors ------------------------------------------------------------- */

#define POLICY_ERROR (policy_error_quark ())
GQuark policy_error_quark (void);

typedef enum
{
  POLICY_ERROR_LINE_TOO_LONG,   /* a line over POLICY_MAX_LINE (or a name over _MAX_NAME) */
  POLICY_ERROR_TOO_MANY_ATTRS,  /* over POLICY_MAX_ATTRS / POLICY_MAX_REPLY_ATTRS */
  POLICY_ERROR_REQUEST_TOO_BIG, /* over POLICY_MAX_REQUEST / POLICY_MAX_REPLY */
  POLICY_ERROR_NO_EQUALS,       /* a non-empty line without '=' */
  POLICY_ERROR_EMPTY_NAME,      /* "=value" */
  POLICY_ERROR_NUL,             /* a NUL byte anywhere (input, or a name/value to encode) */
  POLICY_ERROR_NAME_CHAR,       /* a name byte outside [a-z0-9_] (incl. '=' when encoding) */
  POLICY_ERROR_DUPLICATE,       /* the same name twice in one request or reply */
  POLICY_ERROR_NEWLINE,         /* encoding: LF or CR in a value; input: "a=b\r\r\n" */
  POLICY_ERROR_TRUNCATED,       /* end of stream inside a request (policy_parser_finish) */
  POLICY_ERROR_INCOMPLETE,      /* one-shot parse: the empty line has not arrived (need more) */
  POLICY_ERROR_NO_ACTION,       /* a reply without an "action" attribute */
  POLICY_ERROR_ACTION,          /* an action value that is malformed or cannot be encoded */
} PolicyError;

/* ---- protocol_state ----------------------------------------------------- */

typedef enum
{
  POLICY_STATE_UNKNOWN = 0, /* absent, empty or a name we do not know */
  POLICY_STATE_CONNECT,
  POLICY_STATE_EHLO,
  POLICY_STATE_HELO,
  POLICY_STATE_MAIL,
  POLICY_STATE_RCPT,
  POLICY_STATE_DATA,
  POLICY_STATE_BDAT,
  POLICY_STATE_END_OF_MESSAGE, /* "END-OF-MESSAGE" */
  POLICY_STATE_VRFY,
  POLICY_STATE_ETRN,
} PolicyState;

/* ASCII case-insensitive; len -1 = NUL-terminated.  UNKNOWN for NULL. */
PolicyState policy_state_from_string (const char *s, gssize len);
/* "CONNECT", ..., "END-OF-MESSAGE"; "UNKNOWN" for POLICY_STATE_UNKNOWN. */
const char *policy_state_to_string (PolicyState state);

/* ---- attribute names Postfix sends (SMTPD_POLICY_README) ---------------- */

#define POLICY_ATTR_REQUEST "request" /* "smtpd_access_policy" */
#define POLICY_ATTR_PROTOCOL_STATE "protocol_state"
#define POLICY_ATTR_PROTOCOL_NAME "protocol_name" /* SMTP, ESMTP */
#define POLICY_ATTR_HELO_NAME "helo_name"
#define POLICY_ATTR_QUEUE_ID "queue_id"
#define POLICY_ATTR_SENDER "sender" /* "" for the null sender */
#define POLICY_ATTR_RECIPIENT "recipient"
#define POLICY_ATTR_RECIPIENT_COUNT "recipient_count"
#define POLICY_ATTR_CLIENT_ADDRESS "client_address"
#define POLICY_ATTR_CLIENT_NAME "client_name"
#define POLICY_ATTR_REVERSE_CLIENT_NAME "reverse_client_name"
#define POLICY_ATTR_CLIENT_PORT "client_port"
#define POLICY_ATTR_INSTANCE "instance"
#define POLICY_ATTR_SASL_METHOD "sasl_method"
#define POLICY_ATTR_SASL_USERNAME "sasl_username"
#define POLICY_ATTR_SASL_SENDER "sasl_sender"
#define POLICY_ATTR_SIZE "size"
#define POLICY_ATTR_CCERT_SUBJECT "ccert_subject"
#define POLICY_ATTR_CCERT_ISSUER "ccert_issuer"
#define POLICY_ATTR_CCERT_FINGERPRINT "ccert_fingerprint"
#define POLICY_ATTR_CCERT_PUBKEY_FINGERPRINT "ccert_pubkey_fingerprint"
#define POLICY_ATTR_ENCRYPTION_PROTOCOL "encryption_protocol"
#define POLICY_ATTR_ENCRYPTION_CIPHER "encryption_cipher"
#define POLICY_ATTR_ENCRYPTION_KEYSIZE "encryption_keysize"
#define POLICY_ATTR_ETRN_DOMAIN "etrn_domain"
#define POLICY_ATTR_STRESS "stress"
#define POLICY_ATTR_POLICY_CONTEXT "policy_context"
#define POLICY_ATTR_SERVER_ADDRESS "server_address"
#define POLICY_ATTR_SERVER_PORT "server_port"
#define POLICY_ATTR_COMPATIBILITY_LEVEL "compatibility_level"
#define POLICY_ATTR_MAIL_VERSION "mail_version"
#define POLICY_ATTR_ACTION "action" /* the reply */

#define POLICY_REQUEST_SMTPD_ACCESS "smtpd_access_policy"

/* ---- requests ----------------------------------------------------------- */

typedef struct _PolicyRequest PolicyRequest;

PolicyRequest *policy_request_new (void);
PolicyRequest *policy_request_ref (PolicyRequest *req);
void policy_request_unref (PolicyRequest *req);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PolicyRequest, policy_request_unref)

/* Append an attribute, validated as on input and for encoding: name
 * [a-z0-9_]{1,POLICY_MAX_NAME} (POLICY_ERROR_EMPTY_NAME, _NAME_CHAR,
 * _LINE_TOO_LONG), value without NUL (_NUL) or LF/CR (_NEWLINE), the line
 * within POLICY_MAX_LINE, at most POLICY_MAX_ATTRS (_TOO_MANY_ATTRS), no
 * duplicate (_DUPLICATE).  value NULL means "". */
gboolean policy_request_add (PolicyRequest *req, const char *name, const char *value,
                             GError **error);

/* Attributes in wire order. */
guint policy_request_get_n_attrs (const PolicyRequest *req);
const char *policy_request_get_name (const PolicyRequest *req, guint i);
const char *policy_request_get_value (const PolicyRequest *req, guint i);
/* By name (hash lookup).  NULL when absent; "" when sent empty (Postfix
 * sends every attribute it knows, most of them empty at early stages). */
const char *policy_request_lookup (const PolicyRequest *req, const char *name);
/* Non-NULL and non-empty. */
gboolean policy_request_has_value (const PolicyRequest *req, const char *name);

/* Typed helpers for the front end (NULL when absent, as lookup). */
PolicyState policy_request_get_state (const PolicyRequest *req);
const char *policy_request_get_request (const PolicyRequest *req);
const char *policy_request_get_instance (const PolicyRequest *req);
const char *policy_request_get_client_address (const PolicyRequest *req);
const char *policy_request_get_client_name (const PolicyRequest *req);
const char *policy_request_get_helo_name (const PolicyRequest *req);
const char *policy_request_get_sender (const PolicyRequest *req);
const char *policy_request_get_recipient (const PolicyRequest *req);
const char *policy_request_get_queue_id (const PolicyRequest *req);
const char *policy_request_get_sasl_username (const PolicyRequest *req);
/* A decimal attribute (size, recipient_count, client_port, ...): TRUE and
 * *out when it is present and is 1..20 ASCII digits whose value is at most
 * max; FALSE otherwise (absent, empty, junk, too big) and *out untouched. */
gboolean policy_request_get_number (const PolicyRequest *req, const char *name, guint64 max,
                                    guint64 *out);
/* "size" (0 when Postfix does not know it yet); FALSE as above. */
gboolean policy_request_get_size (const PolicyRequest *req, guint64 *out);

/* The wire form: every attribute "name=value\n", then "\n".  Never fails
 * (policy_request_add validated everything). */
void policy_request_encode (const PolicyRequest *req, GString *out);

/* Lower-level encoders for a caller that streams attributes (the
 * connector): one "name=value\n" line validated as policy_request_add
 * (without the duplicate and count checks); on error nothing is appended.
 * policy_encode_end appends the terminating "\n". */
gboolean policy_encode_attr (GString *out, const char *name, const char *value, GError **error);
void policy_encode_end (GString *out);

/* ---- the incremental request parser (the server) ----------------------- */

typedef struct _PolicyParser PolicyParser;

/* Limits 0 mean the defaults POLICY_MAX_LINE, POLICY_MAX_ATTRS,
 * POLICY_MAX_REQUEST. */
PolicyParser *policy_parser_new (void);
PolicyParser *policy_parser_new_full (gsize max_line, guint max_attrs, gsize max_request);
void policy_parser_free (PolicyParser *parser);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PolicyParser, policy_parser_free)

/* Feed bytes as they arrive.  Consumes at most up to the end of one
 * request:
 *   TRUE, *out_request set: a complete request; *consumed bytes of data
 *     were used (call again with the rest: pipelined requests);
 *   TRUE, *out_request NULL: all len bytes consumed (*consumed == len),
 *     more are needed;
 *   FALSE + error: the stream is unusable (close it); every later call
 *     fails with the same code.
 * A partial line is buffered (bounded by max_line); limits are checked
 * before buffering.  Errors: every POLICY_ERROR_* of the input list. */
gboolean policy_parser_feed (PolicyParser *parser, const char *data, gsize len, gsize *consumed,
                             PolicyRequest **out_request, GError **error);
/* At end of stream: TRUE when no request is partly received (a peer that
 * closes between requests is fine), else POLICY_ERROR_TRUNCATED. */
gboolean policy_parser_finish (PolicyParser *parser, GError **error);
/* Bytes of the current partial request (0 between requests). */
gsize policy_parser_get_pending (const PolicyParser *parser);

/* One-shot: parse one complete request from the start of [data, data+len);
 * *consumed gets its length.  POLICY_ERROR_INCOMPLETE when the empty line
 * is missing (read more and call again with everything). */
PolicyRequest *policy_request_parse (const char *data, gsize len, gsize *consumed, GError **error);

/* ---- replies (actions) -------------------------------------------------- */

/* The actions of access(5) a policy server may return. */
typedef enum
{
  POLICY_ACTION_OK,
  POLICY_ACTION_DUNNO,
  POLICY_ACTION_REJECT, /* [X.Y.Z] [text]; Postfix picks the code (access_map_reject_code) */
  POLICY_ACTION_DEFER,  /* [X.Y.Z] [text]; access_map_defer_code */
  POLICY_ACTION_DEFER_IF_REJECT, /* [X.Y.Z] [text] */
  POLICY_ACTION_DEFER_IF_PERMIT, /* [X.Y.Z] [text] */
  POLICY_ACTION_REPLY,           /* "4NN [X.Y.Z] [text]" or "5NN ...": code set */
  POLICY_ACTION_HOLD,            /* [text] */
  POLICY_ACTION_DISCARD,         /* [text] */
  POLICY_ACTION_PREPEND,         /* header_name, header_value */
  POLICY_ACTION_REDIRECT,        /* argument: the address */
  POLICY_ACTION_BCC,             /* argument: the address */
  POLICY_ACTION_FILTER,          /* argument: "transport:destination" */
  POLICY_ACTION_WARN,            /* [text] */
  POLICY_ACTION_INFO,            /* [text] */
  /* Any other word: Postfix evaluates it as restriction name(s) ("permit",
   * "reject_unknown_client_hostname", a restriction class).  argument holds
   * the whole value.  Parsed so a connector can report it; encoded as is. */
  POLICY_ACTION_RESTRICTION,
} PolicyActionKind;
#define POLICY_ACTION_N_KINDS (POLICY_ACTION_RESTRICTION + 1)

typedef struct
{
  PolicyActionKind kind;
  /* REPLY: 400..599 (second digit 0..5).  Parsed REJECT/DEFER*: 0.  An
   * all-numeric action ("12345", access(5): treated as OK) parses as OK. */
  guint code;
  /* REJECT, DEFER*, REPLY: "5.7.1" or NULL (a leading enhanced code of the
   * text, as Postfix's dsn_split reads it). */
  char *enhanced;
  /* REJECT, DEFER*, REPLY, HOLD, DISCARD, WARN, INFO: the text or NULL.
   * OK/DUNNO: trailing text Postfix ignores (parse only; never encoded). */
  char *text;
  char *header_name;  /* PREPEND */
  char *header_value; /* PREPEND: without the ": " separator */
  char *argument;     /* REDIRECT, BCC, FILTER, RESTRICTION */
} PolicyAction;

/* Returns a zeroed action of that kind (fields NULL). */
PolicyAction *policy_action_new (PolicyActionKind kind);
/* kind with an optional enhanced code and text (copied; NULL/"" = none). */
PolicyAction *policy_action_new_text (PolicyActionKind kind, const char *enhanced,
                                      const char *text);
/* POLICY_ACTION_REPLY from a MailReply (code, enhanced, text).  A
 * multi-line reply cannot travel in one action line: its lines are joined
 * with a space.  2xx/3xx: POLICY_ERROR_ACTION (Postfix only honours
 * 4NN/5NN). */
PolicyAction *policy_action_new_reply (MailReply *reply, GError **error);
PolicyAction *policy_action_new_prepend (const char *name, const char *value);
/* REDIRECT, BCC, FILTER, RESTRICTION. */
PolicyAction *policy_action_new_argument (PolicyActionKind kind, const char *argument);
void policy_action_free (PolicyAction *action);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PolicyAction, policy_action_free)

/* "OK", "DUNNO", ..., "DEFER_IF_PERMIT", "REPLY" for the numeric form,
 * "RESTRICTION" for the catch-all. */
const char *policy_action_kind_to_string (PolicyActionKind kind);

/* The action value without "action=" ("REJECT 5.7.1 No", "550 5.1.1
 * Unknown user", "PREPEND X-Foo: bar").  Validates (POLICY_ERROR_ACTION
 * unless said otherwise):
 *   - texts: RFC 5321 textstring (printable ASCII, HT) via mail_reply_new
 *     (its MAIL_ERROR on failure), no LF/CR/NUL;
 *   - enhanced: X.Y.Z whose class matches the code (REJECT 5, DEFER and
 *     DEFER_IF_* 4 — DEFER_IF_* are replies Postfix sends with a 4xx
 *     code), as mail_enhanced_code_check;
 *   - REPLY: code 4xx/5xx;
 *   - PREPEND: header name as mail_header_name_check, value without
 *     CR/LF/NUL;
 *   - REDIRECT, BCC: a non-empty argument without whitespace or controls;
 *     FILTER: "transport:destination" with a non-empty transport;
 *     RESTRICTION: non-empty, printable, no LF;
 *   - the whole "action=...\n" line within POLICY_MAX_LINE
 *     (POLICY_ERROR_LINE_TOO_LONG).
 * OK and DUNNO are written without text.  NULL on error. */
char *policy_action_format (const PolicyAction *action, GError **error);

/* Append "action=VALUE\n\n" (the whole reply).  On error nothing is
 * appended. */
gboolean policy_reply_encode (GString *out, const PolicyAction *action, GError **error);
/* The fast path for the two answers without arguments: never fails. */
void policy_reply_encode_simple (GString *out, PolicyActionKind kind_ok_or_dunno);

/* Parse one reply (the connector) from the start of [data, data+len):
 * "name=value" lines (same rules as requests) up to an empty line, within
 * POLICY_MAX_REPLY bytes and POLICY_MAX_REPLY_ATTRS attributes.  Exactly
 * one "action" attribute is required (POLICY_ERROR_NO_ACTION; any name
 * twice: POLICY_ERROR_DUPLICATE); other attributes are ignored.  A control
 * byte (other than HT) in the action value is POLICY_ERROR_ACTION: it
 * would reach an SMTP reply, a log line or a header.  Action words are
 * ASCII case-insensitive, separated from their text by SP/HT, as Postfix's
 * smtpd_check reads them.  *consumed gets the reply's length.
 * POLICY_ERROR_INCOMPLETE: no empty line yet and no limit exceeded (read
 * more and call again).  POLICY_ERROR_ACTION: empty action, "REPLY"-form
 * code not 4NN/5NN, PREPEND without a valid "name: value", REDIRECT/BCC/
 * FILTER without their argument. */
PolicyAction *policy_reply_parse (const char *data, gsize len, gsize *consumed, GError **error);

/* What a parsed action means as an SMTP reply, for REJECT, DEFER,
 * DEFER_IF_*, REPLY: mail_reply_complete (fallback, code, enhanced, text)
 * where REJECT uses 554 and DEFER* 450 when no code is given — Postfix's
 * defaults for access_map_reject_code / access_map_defer_code — and an
 * enhanced code whose class differs from the code's takes the code's class
 * (Postfix's smtpd_dsn_fix).  NULL with
 * POLICY_ERROR_ACTION for other kinds, or MAIL_ERROR for a text that is no
 * valid SMTP text. */
MailReply *policy_action_to_reply (const PolicyAction *action, MailReplyDefault fallback,
                                   GError **error);

G_END_DECLS
