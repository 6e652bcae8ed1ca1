/* SPDX-License-Identifier: MIT
 *
 * mail-error.h — the one error domain of proto/mail.
 *
 * Every fallible function in proto/mail (addresses, ESMTP parameters, xtext,
 * replies, headers) reports runtime errors in MAIL_ERROR with one code per
 * family of malformed input, so callers and tests can tell them apart
 * without parsing messages.  Messages are short, in English, and name the
 * offending offset or limit; they never echo control characters back.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MAIL_ERROR (mail_error_quark ())
GQuark mail_error_quark (void);

typedef enum
{
  /* shared by every parser */
  MAIL_ERROR_EMPTY,            /* nothing to parse */
  MAIL_ERROR_SYNTAX,           /* missing '<' or '>', trailing bytes, stray character */
  MAIL_ERROR_FORBIDDEN_CHAR,   /* NUL, CR, LF, another control (also decoded xtext) */
  MAIL_ERROR_UTF8_NOT_ALLOWED, /* 8-bit byte where only ASCII is allowed (no SMTPUTF8) */
  MAIL_ERROR_INVALID_UTF8,     /* 8-bit bytes that are not valid UTF-8 */

  /* paths and mailboxes (mail-address.h) */
  MAIL_ERROR_PATH_TOO_LONG,       /* > MAIL_MAX_PATH (or MAIL_MAX_MAILBOX) */
  MAIL_ERROR_LOCAL_PART_TOO_LONG, /* > MAIL_MAX_LOCAL_PART */
  MAIL_ERROR_DOMAIN_TOO_LONG,     /* > MAIL_MAX_DOMAIN */
  MAIL_ERROR_LABEL_TOO_LONG,      /* a domain label > MAIL_MAX_DOMAIN_LABEL */
  MAIL_ERROR_NULL_PATH,           /* "<>" where the caller did not allow it */
  MAIL_ERROR_LOCAL_PART,          /* empty local part, bad dot-string */
  MAIL_ERROR_QUOTED_STRING,       /* unterminated quote, bad quoted-pair, bad qtext */
  MAIL_ERROR_NO_DOMAIN,           /* no '@domain' (and not an allowed "postmaster") */
  MAIL_ERROR_DOMAIN,              /* empty label, bad character, hyphen at a label's end */
  MAIL_ERROR_ADDRESS_LITERAL,     /* "[...]" that is no IPv4 / IPv6 address */
  MAIL_ERROR_SOURCE_ROUTE,        /* malformed "@a,@b:" route */

  /* ESMTP parameters and xtext (mail-param.h) */
  MAIL_ERROR_PARAM_KEYWORD,   /* keyword not ALPHA/DIGIT/'-' or empty */
  MAIL_ERROR_PARAM_VALUE,     /* value with '=', SP or non-printable, or empty after '=' */
  MAIL_ERROR_PARAM_TOO_LONG,  /* keyword or value over its limit */
  MAIL_ERROR_TOO_MANY_PARAMS, /* > MAIL_MAX_ESMTP_PARAMS */
  MAIL_ERROR_PARAM_DUPLICATE, /* the same keyword twice */
  MAIL_ERROR_XTEXT,           /* bad "+XX" escape, or a char xtext does not allow */

  /* replies (mail-reply.h) */
  MAIL_ERROR_REPLY_CODE,           /* not three digits 200..599 with second digit 0..5 */
  MAIL_ERROR_ENHANCED_CODE,        /* malformed "class.subject.detail" */
  MAIL_ERROR_ENHANCED_CLASS,       /* enhanced class differs from the code's first digit */
  MAIL_ERROR_REPLY_LINE_TOO_LONG,  /* a line over MAIL_MAX_REPLY_LINE (or the parse limit) */
  MAIL_ERROR_REPLY_TOO_MANY_LINES, /* over MAIL_MAX_REPLY_LINES (or the parse limit) */
  MAIL_ERROR_REPLY_SYNTAX,         /* parse: bad separator, codes differ between lines */
  MAIL_ERROR_INCOMPLETE,           /* parse: the final line has not arrived yet (need more bytes) */

  /* headers (mail-header.h) */
  MAIL_ERROR_HEADER_NAME,           /* empty, or a byte outside 33..126, or ':' */
  MAIL_ERROR_HEADER_NAME_TOO_LONG,  /* > MAIL_MAX_HEADER_NAME */
  MAIL_ERROR_HEADER_VALUE_TOO_LONG, /* > MAIL_MAX_HEADER_VALUE */
  MAIL_ERROR_HEADER_LINE_TOO_LONG,  /* a word that cannot be folded under MAIL_MAX_HEADER_LINE */
} MailError;

G_END_DECLS
