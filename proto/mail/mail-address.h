/* SPDX-License-Identifier: MIT
 *
 * mail-address.h — SMTP paths and mailboxes (RFC 5321 §4.1.2, §4.5.3.1;
 * RFC 6531 SMTPUTF8).  Pure functions over bytes; GLib only.
 *
 * A MailPath is what MAIL FROM / RCPT TO carry (or what a config file or a
 * rule names): a local part and a domain, or the null path "<>", or the
 * domain-less "postmaster".  It is immutable and reference-counted, so the
 * engine can share it between threads and stages.
 *
 * Parsing checks, in this order, so the cheapest and most telling refusal
 * wins: the named length limits (path, then local part, then domain), then
 * forbidden bytes (NUL, CR, LF, any control character: always refused), then
 * 8-bit bytes (only with MAIL_PARSE_SMTPUTF8, and then only valid UTF-8),
 * then the syntax.  A local part such as `";sleep 5;"` or `../../x` is valid
 * data: it parses, and the code that uses it (shell, file system) must treat
 * it as data.  Nothing here ever aborts on input.
 *
 * Choices (documented because RFC 5321 leaves room):
 * - MAIL_MAX_PATH counts the whole path including '<' and '>' and any source
 *   route ("including the punctuation and element separators").
 * - A bare mailbox (mail_mailbox_parse) is bounded by MAIL_MAX_MAILBOX =
 *   local + '@' + domain limits, not by the path limit: it is not on the wire.
 * - An empty local part (`""@x`) is refused although the grammar allows it:
 *   no real mailbox has one and it turns into an empty file name later.
 * - Source routes (`<@a,@b:user@dom>`) are validated and dropped.
 * - Domain labels are LDH (letters, digits, '-' not at either end), at most
 *   MAIL_MAX_DOMAIN_LABEL octets; with SMTPUTF8 a label may also hold UTF-8
 *   (a U-label; the octet limit then applies to its UTF-8 form).  A trailing
 *   dot (empty last label) is refused.
 * - Address literals: `[IPv4]` and `[IPv6:...]` (tag case-insensitive),
 *   checked with inet_pton; other tags are refused.
 *
 * MAIL_PARSE_LENIENT accepts what Postfix accepts from clients and hands to
 * milters: surrounding whitespace (also inside the brackets), a path without
 * brackets, and local parts with leading, trailing or doubled dots
 * (`foo..bar.@docomo.ne.jp`, `../../x@dom`) and '_' in domain labels.  It
 * never relaxes the byte checks or the limits.
 */
#pragma once

#include <glib.h>

#include "proto/mail/mail-error.h"
#include "proto/mail/mail-param.h"

G_BEGIN_DECLS

/* RFC 5321 §4.5.3.1 */
#define MAIL_MAX_LOCAL_PART 64
#define MAIL_MAX_DOMAIN 255
#define MAIL_MAX_PATH 256
/* RFC 1035 §2.3.4 */
#define MAIL_MAX_DOMAIN_LABEL 63
/* a bare mailbox: local part '@' domain */
#define MAIL_MAX_MAILBOX (MAIL_MAX_LOCAL_PART + 1 + MAIL_MAX_DOMAIN)

typedef enum
{
  MAIL_PARSE_NONE = 0,
  MAIL_PARSE_ALLOW_NULL = 1 << 0,       /* accept "<>" (a reverse path) */
  MAIL_PARSE_ALLOW_POSTMASTER = 1 << 1, /* accept "<postmaster>" without a domain (RCPT TO) */
  MAIL_PARSE_SMTPUTF8 = 1 << 2,         /* UTF-8 allowed in local part, domain, param values */
  MAIL_PARSE_LENIENT = 1 << 3,          /* see above */
} MailParseFlags;

typedef struct _MailPath MailPath;

/* Parse exactly one path "<...>" spanning [s, s+len) (len -1: NUL-terminated). */
MailPath *mail_path_parse (const char *s, gssize len, MailParseFlags flags, GError **error);

/* Parse a path at the start of [s, s+len) and report in *out_consumed where
 * it ended (just after '>'), so a command parser can read ESMTP parameters
 * after it.  A '>' inside a quoted local part does not end the path.  With
 * MAIL_PARSE_LENIENT, leading whitespace is skipped (and counted). */
MailPath *mail_path_parse_prefix (const char *s, gsize len, MailParseFlags flags,
                                  gsize *out_consumed, GError **error);

/* Parse a bare mailbox "local@domain" (no brackets, no route; "postmaster"
 * and "" only with the matching flags).  With MAIL_PARSE_LENIENT surrounding
 * whitespace and "<...>" are also accepted. */
MailPath *mail_mailbox_parse (const char *s, gssize len, MailParseFlags flags, GError **error);

/* Build from parts already split (e.g. a rule's local/domain); the same
 * checks as parsing "local@domain", where local is the unquoted form (it is
 * quoted as needed). */
MailPath *mail_path_new (const char *local, const char *domain, MailParseFlags flags,
                         GError **error);
MailPath *mail_path_new_null (void);

MailPath *mail_path_ref (MailPath *path);
void mail_path_unref (MailPath *path);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MailPath, mail_path_unref)

/* The null path "<>". */
gboolean mail_path_is_null (const MailPath *path);
/* "postmaster" without a domain (RFC 5321 §4.5.1). */
gboolean mail_path_is_postmaster (const MailPath *path);
/* Whether a source route was present (and dropped). */
gboolean mail_path_had_route (const MailPath *path);
/* Whether the address needs SMTPUTF8 to be sent (8-bit in it). */
gboolean mail_path_is_utf8 (const MailPath *path);

/* The local part, unquoted ("john doe" for "\"john doe\"@x"); "" for <>. */
const char *mail_path_get_local (const MailPath *path);
/* The local part as it was written, quotes and quoted-pairs included. */
const char *mail_path_get_local_raw (const MailPath *path);
/* The domain as written ("[1.2.3.4]" for a literal); "" for <> and postmaster. */
const char *mail_path_get_domain (const MailPath *path);
/* The domain lower-cased (ASCII and UTF-8). */
const char *mail_path_get_domain_lower (const MailPath *path);
/* Canonical "local@domain": the local part re-quoted only when it is not a
 * dot-atom; "" for <>, "postmaster" for the domain-less postmaster. */
const char *mail_path_get_address (const MailPath *path);
/* The canonical address in brackets: "<local@domain>", "<>". */
const char *mail_path_get_path (const MailPath *path);

/* Same mailbox: local parts equal byte for byte (RFC 5321: case-sensitive),
 * domains equal ignoring case. */
gboolean mail_path_equal (const MailPath *a, const MailPath *b);

/* Lower-case a domain: ASCII only when it is ASCII, Unicode lower case when it
 * is valid UTF-8.  Never fails. */
char *mail_domain_lower (const char *domain);

/* Quote a local part for use in "local@domain" when it is not a dot-atom
 * ("john doe" -> "\"john doe\"", '"' and '\\' escaped); returns a copy
 * otherwise. */
char *mail_local_part_quote (const char *local);

G_END_DECLS
