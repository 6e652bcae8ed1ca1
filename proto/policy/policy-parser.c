/* SPDX-License-Identifier: MIT
 *
 * policy-parser.c — the incremental request parser of the Postfix policy
 * delegation protocol (SMTPD_POLICY_README): bytes as they arrive in,
 * complete PolicyRequests out.
 *
 * Contract: the caller feeds whatever the socket gave; the parser consumes
 * up to the end of one request at a time (so pipelined requests come out
 * one by one and the caller may stop reading while a request is being
 * evaluated).  Only an incomplete line is copied; complete lines are split
 * in place.  Every limit is checked before the bytes that would exceed it
 * are buffered: a hostile client costs at most max_line bytes of buffer and
 * max_request bytes of attributes.  The first error poisons the parser
 * (the stream has no resynchronisation point we could trust).
 *
 * Line ends: LF; one CR directly before the LF is dropped (CRLF clients).
 * A value that still ends in CR after that ("a=b\r\r\n") is refused
 * (POLICY_ERROR_NEWLINE): it could not be sent on unchanged.  Other CRs are
 * value bytes — the protocol has no escaping and Postfix passes some
 * client-supplied strings through; consumers validate values (proto/mail).
 *
 * An empty line with no attribute before it yields an empty request: the
 * caller decides (vpsd answers it like any request without a usable
 * protocol_state).
 */
#include <string.h>

#include "policy-private.h"

struct _PolicyParser
{
  gsize max_line;
  guint max_attrs;
  gsize max_request;

  GString *line;       /* the incomplete line, without LF */
  PolicyRequest *req;  /* the request being received, NULL between requests */
  gsize request_bytes; /* bytes of the current request consumed so far */
  gboolean failed;     /* poisoned by an error */
  PolicyError error_code;
};

PolicyParser *
policy_parser_new_full (gsize max_line, guint max_attrs, gsize max_request)
{
  PolicyParser *p = g_new0 (PolicyParser, 1);

  p->max_line = max_line != 0 ? max_line : POLICY_MAX_LINE;
  p->max_attrs = max_attrs != 0 ? max_attrs : POLICY_MAX_ATTRS;
  p->max_request = max_request != 0 ? max_request : POLICY_MAX_REQUEST;
  p->line = g_string_sized_new (128);
  return p;
}

PolicyParser *
policy_parser_new (void)
{
  return policy_parser_new_full (0, 0, 0);
}

void
policy_parser_free (PolicyParser *parser)
{
  if (parser == NULL)
    return;
  g_string_free (parser->line, TRUE);
  policy_request_unref (parser->req);
  g_free (parser);
}

gsize
policy_parser_get_pending (const PolicyParser *parser)
{
  g_return_val_if_fail (parser != NULL, 0);
  return parser->request_bytes;
}

static gboolean policy_parser_fail (PolicyParser *parser, GError **error, PolicyError code,
                                    const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
policy_parser_fail (PolicyParser *parser, GError **error, PolicyError code, const char *fmt, ...)
{
  va_list ap;

  parser->failed = TRUE;
  parser->error_code = code;
  va_start (ap, fmt);
  if (error != NULL)
    {
      g_autofree char *msg = g_strdup_vprintf (fmt, ap);

      g_set_error_literal (error, POLICY_ERROR, code, msg);
    }
  va_end (ap);
  return FALSE;
}

/* Take the poison: keep the parser's own state consistent and remember the
 * code the next calls repeat. */
static gboolean
policy_parser_fail_with (PolicyParser *parser, GError **error, GError *local)
{
  parser->failed = TRUE;
  parser->error_code = (PolicyError)local->code;
  g_propagate_error (error, local);
  return FALSE;
}

/* One complete line (LF removed). */
static gboolean
policy_parser_line (PolicyParser *parser, const char *line, gsize len, gboolean *out_end,
                    GError **error)
{
  const char *name;
  const char *value;
  gsize name_len;
  gsize value_len;
  GError *local = NULL;

  if (len > 0 && line[len - 1] == '\r')
    len--;
  *out_end = (len == 0);
  if (len == 0)
    return TRUE;
  if (line[len - 1] == '\r')
    return policy_parser_fail (parser, error, POLICY_ERROR_NEWLINE, "value ends with a bare CR");
  if (!policy_split_line (line, len, &name, &name_len, &value, &value_len, &local))
    return policy_parser_fail_with (parser, error, local);
  if (parser->req == NULL)
    parser->req = policy_request_new ();
  if (!policy_request_add_len (parser->req, name, name_len, value, value_len, parser->max_attrs,
                               &local))
    return policy_parser_fail_with (parser, error, local);
  return TRUE;
}

gboolean
policy_parser_feed (PolicyParser *parser, const char *data, gsize len, gsize *consumed,
                    PolicyRequest **out_request, GError **error)
{
  gsize pos = 0;

  g_return_val_if_fail (parser != NULL && (data != NULL || len == 0), FALSE);
  g_return_val_if_fail (consumed != NULL && out_request != NULL, FALSE);

  *consumed = 0;
  *out_request = NULL;
  if (parser->failed)
    {
      g_set_error_literal (error, POLICY_ERROR, parser->error_code, "policy stream already failed");
      return FALSE;
    }

  while (pos < len)
    {
      const char *start = data + pos;
      const char *lf = memchr (start, '\n', len - pos);
      gsize chunk = lf != NULL ? (gsize)(lf - start) + 1 : len - pos;
      gsize content = lf != NULL ? chunk - 1 : chunk;
      /* Where in this chunk each limit trips (1-based, 0 = it does not):
       * a line is too long once its content reaches max_line (its LF would
       * not fit any more), a request once it passes max_request.  The
       * earlier one is reported, so how the stream was split into reads
       * never changes which error a peer gets. */
      gsize trip_line = parser->line->len + content >= parser->max_line
                            ? parser->max_line - parser->line->len
                            : 0;
      gsize trip_request = parser->request_bytes + chunk > parser->max_request
                               ? parser->max_request - parser->request_bytes + 1
                               : 0;
      gboolean end = FALSE;

      if (trip_line != 0 && (trip_request == 0 || trip_line <= trip_request))
        return policy_parser_fail (parser, error, POLICY_ERROR_LINE_TOO_LONG,
                                   "line longer than %" G_GSIZE_FORMAT " bytes", parser->max_line);
      if (trip_request != 0)
        return policy_parser_fail (parser, error, POLICY_ERROR_REQUEST_TOO_BIG,
                                   "request bigger than %" G_GSIZE_FORMAT " bytes",
                                   parser->max_request);
      pos += chunk;
      parser->request_bytes += chunk;
      if (lf == NULL)
        {
          g_string_append_len (parser->line, start, chunk);
          break;
        }
      if (parser->line->len == 0)
        {
          /* The common case: the whole line is in this read. */
          if (!policy_parser_line (parser, start, chunk - 1, &end, error))
            return FALSE;
        }
      else
        {
          g_string_append_len (parser->line, start, chunk - 1);
          if (!policy_parser_line (parser, parser->line->str, parser->line->len, &end, error))
            return FALSE;
          g_string_truncate (parser->line, 0);
        }
      if (end)
        {
          *out_request
              = parser->req != NULL ? g_steal_pointer (&parser->req) : policy_request_new ();
          parser->request_bytes = 0;
          *consumed = pos;
          return TRUE;
        }
    }
  *consumed = len;
  return TRUE;
}

gboolean
policy_parser_finish (PolicyParser *parser, GError **error)
{
  g_return_val_if_fail (parser != NULL, FALSE);

  if (parser->failed)
    {
      g_set_error_literal (error, POLICY_ERROR, parser->error_code, "policy stream already failed");
      return FALSE;
    }
  if (parser->request_bytes != 0)
    return policy_parser_fail (parser, error, POLICY_ERROR_TRUNCATED,
                               "end of stream inside a request (%" G_GSIZE_FORMAT
                               " bytes received)",
                               parser->request_bytes);
  return TRUE;
}

PolicyRequest *
policy_request_parse (const char *data, gsize len, gsize *consumed, GError **error)
{
  g_autoptr (PolicyParser) parser = policy_parser_new ();
  PolicyRequest *req = NULL;
  gsize used = 0;

  g_return_val_if_fail (data != NULL || len == 0, NULL);

  if (consumed != NULL)
    *consumed = 0;
  if (!policy_parser_feed (parser, data, len, &used, &req, error))
    return NULL;
  if (req == NULL)
    {
      g_set_error_literal (error, POLICY_ERROR, POLICY_ERROR_INCOMPLETE,
                           "request not terminated by an empty line yet");
      return NULL;
    }
  if (consumed != NULL)
    *consumed = used;
  return req;
}
