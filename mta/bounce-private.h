/* SPDX-License-Identifier: MIT
 *
 * bounce-private.h — what the two halves of the DSN generator share:
 * bounce-text.c cleans what comes from outside (envelope strings, remote
 * replies) and formats fields, dates and the returned original;
 * bounce.c decides who is due a notice and assembles the report.
 */
#pragma once

#include "mta/bounce.h"
#include "proto/mail/mail-header.h"
#include "proto/mail/mail-reply.h"

G_BEGIN_DECLS

/* The boundary is drawn at random, and again (at most this many times)
 * while it occurs in the original: a sender cannot guess it in advance, so
 * one draw is enough in practice. */
#define BOUNCE_BOUNDARY_TRIES 8
/* Wrap width of the human-readable text (RFC 5322 §2.1.1's 78, minus room). */
#define BOUNCE_TEXT_WIDTH 76
/* Where an over-long line of the original's header section is broken when
 * the headers are returned (under the 998 of RFC 5322 §2.1.1). */
#define BOUNCE_HEADER_BREAK 980
/* RFC 5322 §2.1.1, without CRLF */
#define BOUNCE_MAX_LINE MAIL_MAX_HEADER_LINE
/* An ORCPT address type (RFC 3461 §4.2 atom; "rfc822", "utf-8") */
#define BOUNCE_MAX_ADDR_TYPE 32

/* A report field value: xtext-encoded where RFC 3464 says so. */
char *vps_bounce_report_value (const char *s);
gboolean vps_bounce_check_address (const char *addr, const char *what, guint index, GError **error);
gboolean vps_bounce_check_hostname (const char *host, GError **error);
/* A stored result: the reply, and *remote_mta when it came from a server. */
const char *vps_bounce_result_parse (const char *result, char **remote_mta);
void vps_bounce_result_status (const char *reply, VpsBounceKind kind,
                               char out[MAIL_MAX_ENHANCED_CODE + 1]);
char *vps_bounce_format_date (gint64 usec);
void vps_bounce_append_field (GString *out, const char *name, const char *value);
void vps_bounce_append_wrapped (GString *out, const char *text, gsize indent);
gboolean vps_bounce_has_8bit (const char *s, gsize len);
gboolean vps_bounce_original_is_clean (const char *data, gsize len);
void vps_bounce_append_headers (GString *out, const char *data, gsize len, gsize limit);

G_END_DECLS
