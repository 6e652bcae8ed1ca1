/* SPDX-License-Identifier: MIT
 *
 * fuzz-policy.c — libFuzzer target for proto/policy, both directions.
 *
 * Input layout: byte 0 seeds the chunking and picks small or default parser
 * limits (small ones reach every limit branch quickly); the rest is a byte
 * stream a policy client might send.  It goes
 *   - to one PolicyParser in random-sized chunks, and to a second one in a
 *     single piece: both must yield the same requests and fail (or not)
 *     with the same code — chunking must never change the outcome;
 *   - to policy_reply_parse as a policy server's answer.
 * Besides "no crash, no leak, no UB" it checks the invariants callers rely
 * on, and aborts when one breaks:
 *   - feed never consumes more than it was given, always makes progress,
 *     and never holds more than max_request bytes of a request;
 *   - a parsed request encodes to bytes that parse to the same encoding;
 *     without CRs in the input, it encodes to exactly the bytes consumed;
 *   - a parsed action that formats at all parses back to the same action.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/policy/policy.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do                                                                                               \
    {                                                                                              \
      if (!(cond))                                                                                 \
        abort ();                                                                                  \
    }                                                                                              \
  while (0)

typedef struct
{
  GPtrArray *encoded; /* char *: each request's encoding */
  int error_code;     /* -1: no error */
} Outcome;

static void
check_request (PolicyRequest *req, const char *raw, gsize raw_len, GPtrArray *encoded)
{
  GString *enc = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (PolicyRequest) again = NULL;
  gsize consumed = 0;

  policy_request_encode (req, enc);
  if (raw != NULL && memchr (raw, '\r', raw_len) == NULL)
    CHECK (enc->len == raw_len && memcmp (enc->str, raw, raw_len) == 0);
  again = policy_request_parse (enc->str, enc->len, &consumed, &error);
  CHECK (again != NULL && consumed == enc->len);
  CHECK (policy_request_get_n_attrs (again) == policy_request_get_n_attrs (req));
  for (guint i = 0; i < policy_request_get_n_attrs (req); i++)
    {
      const char *name = policy_request_get_name (req, i);

      CHECK (strcmp (policy_request_lookup (again, name), policy_request_get_value (req, i)) == 0);
    }
  g_ptr_array_add (encoded, g_string_free (enc, FALSE));
}

static Outcome
run_parser (const char *buf, gsize len, gboolean small, guint32 seed, gboolean chunked)
{
  g_autoptr (PolicyParser) parser
      = small ? policy_parser_new_full (24, 3, 48) : policy_parser_new ();
  gsize max_request = small ? 48 : POLICY_MAX_REQUEST;
  Outcome o = { g_ptr_array_new_with_free_func (g_free), -1 };
  gsize pos = 0;
  gsize request_start = 0;
  GString *raw = g_string_new (NULL); /* the bytes of the current request */

  while (pos < len)
    {
      g_autoptr (GError) error = NULL;
      PolicyRequest *req = NULL;
      gsize consumed = 0;
      gsize n = len - pos;

      if (chunked)
        {
          seed = seed * 1103515245u + 12345u;
          n = MIN (n, 1 + (seed >> 16) % 64);
        }
      if (!policy_parser_feed (parser, buf + pos, n, &consumed, &req, &error))
        {
          CHECK (error != NULL && error->domain == POLICY_ERROR && req == NULL);
          o.error_code = error->code;
          /* poisoned: the same code again */
          g_clear_error (&error);
          CHECK (!policy_parser_feed (parser, "a=b\n\n", 5, &consumed, &req, &error));
          CHECK (error != NULL && error->code == o.error_code);
          break;
        }
      CHECK (error == NULL);
      CHECK (consumed <= n);
      CHECK (consumed > 0);
      g_string_append_len (raw, buf + pos, consumed);
      pos += consumed;
      CHECK (policy_parser_get_pending (parser) <= max_request);
      if (req != NULL)
        {
          CHECK (policy_parser_get_pending (parser) == 0);
          check_request (req, raw->str, raw->len, o.encoded);
          policy_request_unref (req);
          g_string_truncate (raw, 0);
          request_start = pos;
        }
      else
        CHECK (consumed == n);
    }
  if (o.error_code == -1)
    {
      g_autoptr (GError) error = NULL;
      gboolean clean = policy_parser_finish (parser, &error);

      CHECK (clean == (request_start == len));
      if (!clean)
        CHECK (error != NULL && error->code == POLICY_ERROR_TRUNCATED);
    }
  g_string_free (raw, TRUE);
  return o;
}

static void
same_action (const PolicyAction *a, const PolicyAction *b)
{
  CHECK (a->kind == b->kind);
  CHECK (a->code == b->code);
  CHECK (g_strcmp0 (a->enhanced, b->enhanced) == 0);
  if (a->kind != POLICY_ACTION_OK && a->kind != POLICY_ACTION_DUNNO)
    CHECK (g_strcmp0 (a->text, b->text) == 0);
  CHECK (g_strcmp0 (a->header_name, b->header_name) == 0);
  CHECK (g_strcmp0 (a->header_value, b->header_value) == 0);
  CHECK (g_strcmp0 (a->argument, b->argument) == 0);
}

static void
fuzz_reply (const char *buf, gsize len)
{
  g_autoptr (GError) error = NULL;
  gsize consumed = 0;
  g_autoptr (PolicyAction) a = policy_reply_parse (buf, len, &consumed, &error);
  g_autoptr (GString) wire = g_string_new (NULL);
  g_autoptr (PolicyAction) back = NULL;
  g_autoptr (MailReply) reply = NULL;

  if (a == NULL)
    {
      CHECK (error != NULL && error->domain == POLICY_ERROR);
      return;
    }
  CHECK (consumed >= 2 && consumed <= len && consumed <= POLICY_MAX_REPLY);
  CHECK (buf[consumed - 1] == '\n');
  reply = policy_action_to_reply (a, MAIL_REPLY_REJECT, NULL);
  if (!policy_reply_encode (wire, a, NULL))
    return;
  back = policy_reply_parse (wire->str, wire->len, &consumed, NULL);
  CHECK (back != NULL && consumed == wire->len);
  same_action (a, back);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *buf;
  gsize len;
  guint8 mode;
  Outcome one;
  Outcome chunks;

  if (size < 1)
    return 0;
  mode = data[0];
  buf = (const char *)data + 1;
  len = size - 1;

  one = run_parser (buf, len, mode & 1, mode, FALSE);
  chunks = run_parser (buf, len, mode & 1, mode, TRUE);
  CHECK (one.error_code == chunks.error_code);
  CHECK (one.encoded->len == chunks.encoded->len);
  for (guint i = 0; i < one.encoded->len; i++)
    CHECK (strcmp (one.encoded->pdata[i], chunks.encoded->pdata[i]) == 0);
  g_ptr_array_unref (one.encoded);
  g_ptr_array_unref (chunks.encoded);

  fuzz_reply (buf, len);
  return 0;
}
