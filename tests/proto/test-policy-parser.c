/* SPDX-License-Identifier: MIT
 *
 * test-policy-parser.c — the incremental policy request parser
 * (proto/policy/policy.h: PolicyParser, policy_request_parse).
 *
 * The parser gets the request SMTPD_POLICY_README documents (Postfix 3.x,
 * every attribute) in one piece, byte by byte, at every pair of split
 * points and with CRLF; then every malformed input with its exact
 * PolicyError, limits at and one past their value, and a stream that ends
 * inside a request. The request object and the encoders are tested in
 * test-policy-request.c.
 */
#include <string.h>

#include "proto/policy/policy.h"

#define OK (-1)

/* The example request of SMTPD_POLICY_README (Postfix 3.8), in its order. */
static const char *const readme_attrs[] = {
  "request",
  "smtpd_access_policy",
  "protocol_state",
  "RCPT",
  "protocol_name",
  "SMTP",
  "helo_name",
  "some.domain.tld",
  "queue_id",
  "8045F2AB23",
  "sender",
  "foo@bar.tld",
  "recipient",
  "bar@foo.tld",
  "recipient_count",
  "0",
  "client_address",
  "1.2.3.4",
  "client_name",
  "another.domain.tld",
  "reverse_client_name",
  "another.domain.tld",
  "instance",
  "123.456.7",
  "sasl_method",
  "plain",
  "sasl_username",
  "you",
  "sasl_sender",
  "",
  "size",
  "12345",
  "ccert_subject",
  "solaris9.porcupine.org",
  "ccert_issuer",
  "Wietse+20Venema",
  "ccert_fingerprint",
  "C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04",
  "encryption_protocol",
  "TLSv1/SSLv3",
  "encryption_cipher",
  "DHE-RSA-AES256-SHA",
  "encryption_keysize",
  "256",
  "etrn_domain",
  "",
  "stress",
  "",
  "ccert_pubkey_fingerprint",
  "68:B3:29:DA:98:93:E3:40:99:C7:D8:AD:5C:B9:C9:40",
  "client_port",
  "1234",
  "policy_context",
  "submission",
  "server_address",
  "10.3.2.1",
  "server_port",
  "54321",
  "compatibility_level",
  "major.minor.patch",
  "mail_version",
  "3.8.0",
  NULL,
};

static char *
readme_request (const char *eol)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; readme_attrs[i] != NULL; i += 2)
    g_string_append_printf (s, "%s=%s%s", readme_attrs[i], readme_attrs[i + 1], eol);
  g_string_append (s, eol);
  return g_string_free (s, FALSE);
}

static void
assert_readme (const PolicyRequest *req)
{
  guint64 n = 0;

  g_assert_nonnull (req);
  g_assert_cmpuint (policy_request_get_n_attrs (req), ==,
                    g_strv_length ((char **)readme_attrs) / 2);
  for (guint i = 0; readme_attrs[i] != NULL; i += 2)
    {
      g_assert_cmpstr (policy_request_get_name (req, i / 2), ==, readme_attrs[i]);
      g_assert_cmpstr (policy_request_get_value (req, i / 2), ==, readme_attrs[i + 1]);
      g_assert_cmpstr (policy_request_lookup (req, readme_attrs[i]), ==, readme_attrs[i + 1]);
    }
  g_assert_cmpint (policy_request_get_state (req), ==, POLICY_STATE_RCPT);
  g_assert_cmpstr (policy_request_get_request (req), ==, POLICY_REQUEST_SMTPD_ACCESS);
  g_assert_cmpstr (policy_request_get_instance (req), ==, "123.456.7");
  g_assert_cmpstr (policy_request_get_client_address (req), ==, "1.2.3.4");
  g_assert_cmpstr (policy_request_get_client_name (req), ==, "another.domain.tld");
  g_assert_cmpstr (policy_request_get_helo_name (req), ==, "some.domain.tld");
  g_assert_cmpstr (policy_request_get_sender (req), ==, "foo@bar.tld");
  g_assert_cmpstr (policy_request_get_recipient (req), ==, "bar@foo.tld");
  g_assert_cmpstr (policy_request_get_queue_id (req), ==, "8045F2AB23");
  g_assert_cmpstr (policy_request_get_sasl_username (req), ==, "you");
  g_assert_true (policy_request_get_size (req, &n));
  g_assert_cmpuint (n, ==, 12345);
  g_assert_true (policy_request_get_number (req, POLICY_ATTR_CLIENT_PORT, 65535, &n));
  g_assert_cmpuint (n, ==, 1234);
  /* sent empty vs absent */
  g_assert_cmpstr (policy_request_lookup (req, POLICY_ATTR_SASL_SENDER), ==, "");
  g_assert_false (policy_request_has_value (req, POLICY_ATTR_SASL_SENDER));
  g_assert_true (policy_request_has_value (req, POLICY_ATTR_SENDER));
  g_assert_null (policy_request_lookup (req, "no_such_attribute"));
  g_assert_false (policy_request_get_number (req, "no_such_attribute", G_MAXUINT64, &n));
}

static void
test_readme_one_shot (void)
{
  g_autofree char *wire = readme_request ("\n");
  g_autofree char *wire2 = g_strconcat (wire, "request=x\n", NULL);
  g_autoptr (GError) error = NULL;
  gsize consumed = 0;
  g_autoptr (PolicyRequest) req = policy_request_parse (wire2, strlen (wire2), &consumed, &error);
  g_autoptr (GString) enc = g_string_new (NULL);

  g_assert_no_error (error);
  assert_readme (req);
  /* stops at the empty line: the next request is not touched */
  g_assert_cmpuint (consumed, ==, strlen (wire));
  /* encoding gives back the exact bytes */
  policy_request_encode (req, enc);
  g_assert_cmpstr (enc->str, ==, wire);
}

static void
test_readme_crlf (void)
{
  g_autofree char *wire = readme_request ("\r\n");
  g_autoptr (GError) error = NULL;
  gsize consumed = 0;
  g_autoptr (PolicyRequest) req = policy_request_parse (wire, strlen (wire), &consumed, &error);

  g_assert_no_error (error);
  assert_readme (req);
  g_assert_cmpuint (consumed, ==, strlen (wire));
}

static void
test_readme_byte_by_byte (void)
{
  g_autofree char *wire = readme_request ("\n");
  gsize len = strlen (wire);
  g_autoptr (PolicyParser) parser = policy_parser_new ();
  g_autoptr (PolicyRequest) got = NULL;

  for (gsize i = 0; i < len; i++)
    {
      g_autoptr (GError) error = NULL;
      PolicyRequest *req = NULL;
      gsize consumed = 0;

      g_assert_true (policy_parser_feed (parser, wire + i, 1, &consumed, &req, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (consumed, ==, 1);
      if (i + 1 < len)
        {
          g_assert_null (req);
          g_assert_cmpuint (policy_parser_get_pending (parser), ==, i + 1);
        }
      else
        got = req;
    }
  assert_readme (got);
  g_assert_cmpuint (policy_parser_get_pending (parser), ==, 0);
  g_assert_true (policy_parser_finish (parser, NULL));
}

/* Three pieces at every pair of split points, twice in a row on one
 * parser (it must come back clean after a request). */
static void
test_readme_split_points (void)
{
  g_autofree char *one = readme_request ("\n");
  gsize len = strlen (one);

  for (gsize i = 0; i <= len; i += 7)
    for (gsize j = i; j <= len; j += 11)
      {
        g_autoptr (PolicyParser) parser = policy_parser_new ();

        for (int round = 0; round < 2; round++)
          {
            gsize cuts[] = { 0, i, j, len };
            g_autoptr (PolicyRequest) got = NULL;

            for (int k = 0; k < 3; k++)
              {
                g_autoptr (GError) error = NULL;
                PolicyRequest *req = NULL;
                gsize consumed = 0;
                gsize n = cuts[k + 1] - cuts[k];

                g_assert_true (
                    policy_parser_feed (parser, one + cuts[k], n, &consumed, &req, &error));
                g_assert_no_error (error);
                g_assert_cmpuint (consumed, ==, n);
                if (req != NULL)
                  {
                    g_assert_null (got);
                    got = req;
                  }
              }
            assert_readme (got);
          }
      }
}

static void
test_pipelined (void)
{
  const char *wire = "protocol_state=CONNECT\ninstance=\n\nprotocol_state=MAIL\n\n"
                     "protocol_state=RCPT\ninstance=a.b.c\n\n";
  g_autoptr (PolicyParser) parser = policy_parser_new ();
  PolicyState want[] = { POLICY_STATE_CONNECT, POLICY_STATE_MAIL, POLICY_STATE_RCPT };
  gsize off = 0;

  for (guint k = 0; k < G_N_ELEMENTS (want); k++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (PolicyRequest) req = NULL;
      gsize consumed = 0;

      g_assert_true (
          policy_parser_feed (parser, wire + off, strlen (wire) - off, &consumed, &req, &error));
      g_assert_no_error (error);
      g_assert_nonnull (req);
      g_assert_cmpint (policy_request_get_state (req), ==, want[k]);
      off += consumed;
    }
  g_assert_cmpuint (off, ==, strlen (wire));
}

/* ---- single requests: accepted shapes and every error ------------------- */

typedef struct
{
  const char *name;
  const char *data;
  gsize len;  /* 0: strlen (data) */
  int result; /* OK or a PolicyError */
  guint n_attrs;
  const char *attr; /* with OK: one attribute to check */
  const char *value;
} ParseCase;

#define L(s) (s), sizeof (s) - 1

static const ParseCase parse_cases[] = {
  { "empty-request", L ("\n"), OK, 0 },
  { "empty-request-crlf", L ("\r\n"), OK, 0 },
  { "one", L ("a=b\n\n"), OK, 1, "a", "b" },
  { "empty-value", L ("sender=\n\n"), OK, 1, "sender", "" },
  { "equals-in-value", L ("a=b=c==\n\n"), OK, 1, "a", "b=c==" },
  { "spaces-kept", L ("a= b \n\n"), OK, 1, "a", " b " },
  { "cr-inside-value", L ("a=b\rc\n\n"), OK, 1, "a", "b\rc" },
  { "8bit-value", L ("helo_name=\xc3\xa9t\xc3\xa9\n\n"), OK, 1, "helo_name", "\xc3\xa9t\xc3\xa9" },
  { "digits-underscore", L ("ccert_1_x=y\n\n"), OK, 1, "ccert_1_x", "y" },
  { "incomplete-no-empty-line", L ("a=b\n"), POLICY_ERROR_INCOMPLETE },
  { "incomplete-partial-line", L ("a=b"), POLICY_ERROR_INCOMPLETE },
  { "incomplete-nothing", L (""), POLICY_ERROR_INCOMPLETE },
  { "no-equals", L ("protocol_state\n\n"), POLICY_ERROR_NO_EQUALS },
  { "no-equals-after-good", L ("a=b\ngarbage\n\n"), POLICY_ERROR_NO_EQUALS },
  { "no-equals-http", L ("GET / HTTP/1.0\r\n\r\n"), POLICY_ERROR_NO_EQUALS },
  { "empty-name", L ("=x\n\n"), POLICY_ERROR_EMPTY_NAME },
  { "nul-in-name", L ("a\0b=x\n\n"), POLICY_ERROR_NUL },
  { "nul-in-value", L ("a=x\0y\n\n"), POLICY_ERROR_NUL },
  { "nul-alone", L ("\0\n\n"), POLICY_ERROR_NUL },
  { "upper-case-name", L ("Sender=x\n\n"), POLICY_ERROR_NAME_CHAR },
  { "dash-in-name", L ("client-address=x\n\n"), POLICY_ERROR_NAME_CHAR },
  { "space-in-name", L ("a b=x\n\n"), POLICY_ERROR_NAME_CHAR },
  { "space-before-equals", L ("a =x\n\n"), POLICY_ERROR_NAME_CHAR },
  { "8bit-name", L ("\xc3\xa9=x\n\n"), POLICY_ERROR_NAME_CHAR },
  { "cr-in-name", L ("a\rb=x\n\n"), POLICY_ERROR_NAME_CHAR },
  { "duplicate", L ("recipient=a@b\nrecipient=c@d\n\n"), POLICY_ERROR_DUPLICATE },
  { "duplicate-empty", L ("instance=\ninstance=x\n\n"), POLICY_ERROR_DUPLICATE },
  { "value-ends-in-cr", L ("a=b\r\r\n\n"), POLICY_ERROR_NEWLINE },
};

static void
test_parse_case (gconstpointer data)
{
  const ParseCase *c = data;
  g_autoptr (GError) error = NULL;
  gsize consumed = 99;
  g_autoptr (PolicyRequest) req = policy_request_parse (c->data, c->len, &consumed, &error);

  if (c->result == OK)
    {
      g_assert_no_error (error);
      g_assert_nonnull (req);
      g_assert_cmpuint (consumed, ==, c->len);
      g_assert_cmpuint (policy_request_get_n_attrs (req), ==, c->n_attrs);
      if (c->attr != NULL)
        g_assert_cmpstr (policy_request_lookup (req, c->attr), ==, c->value);
      g_assert_cmpint (policy_request_get_state (req), ==, POLICY_STATE_UNKNOWN);
      return;
    }
  g_assert_error (error, POLICY_ERROR, c->result);
  g_assert_null (req);
  g_assert_cmpuint (consumed, ==, 0);
}

/* ---- limits -------------------------------------------------------------- */

/* "name=" + 'v' * n + "\n": a line of 6 + n bytes. */
static void
append_line (GString *s, const char *name, gsize value_len)
{
  g_string_append_printf (s, "%s=", name);
  for (gsize i = 0; i < value_len; i++)
    g_string_append_c (s, 'v');
  g_string_append_c (s, '\n');
}

static void
test_limit_line (void)
{
  g_autoptr (GString) at = g_string_new (NULL);
  g_autoptr (GString) over = g_string_new (NULL);
  g_autoptr (GString) at_crlf = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (PolicyRequest) req = NULL;

  /* "name=" is 5 bytes, LF 1: the value gets POLICY_MAX_LINE - 6. */
  append_line (at, "name", POLICY_MAX_LINE - 6);
  g_assert_cmpuint (at->len, ==, POLICY_MAX_LINE);
  g_string_append_c (at, '\n');
  req = policy_request_parse (at->str, at->len, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (policy_request_lookup (req, "name")), ==, POLICY_MAX_LINE - 6);
  g_clear_pointer (&req, policy_request_unref);

  /* the CR of CRLF counts */
  append_line (at_crlf, "name", POLICY_MAX_LINE - 6);
  g_string_insert_c (at_crlf, at_crlf->len - 1, '\r');
  g_string_append_c (at_crlf, '\n');
  req = policy_request_parse (at_crlf->str, at_crlf->len, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
  g_assert_null (req);
  g_clear_error (&error);

  append_line (over, "name", POLICY_MAX_LINE - 5);
  g_string_append_c (over, '\n');
  req = policy_request_parse (over->str, over->len, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
  g_assert_null (req);
}

/* A line that never ends is refused once it cannot fit any more, without
 * waiting for (or buffering) more. */
static void
test_limit_line_partial (void)
{
  g_autoptr (PolicyParser) parser = policy_parser_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *chunk = g_malloc (POLICY_MAX_LINE);
  PolicyRequest *req = NULL;
  gsize consumed = 0;

  memset (chunk, 'a', POLICY_MAX_LINE);
  chunk[0] = 'x';
  chunk[1] = '=';
  /* POLICY_MAX_LINE - 1 bytes without LF: the LF still fits */
  g_assert_true (policy_parser_feed (parser, chunk, POLICY_MAX_LINE - 1, &consumed, &req, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (consumed, ==, POLICY_MAX_LINE - 1);
  /* one more byte that is no LF: over, refused at once */
  g_assert_false (policy_parser_feed (parser, "a", 1, &consumed, &req, &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
  g_assert_null (req);
  g_clear_error (&error);

  /* the whole thing in one call: refused as well */
  {
    g_autoptr (PolicyParser) p2 = policy_parser_new ();

    g_assert_false (policy_parser_feed (p2, chunk, POLICY_MAX_LINE, &consumed, &req, &error));
    g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
  }
}

static void
test_limit_name (void)
{
  g_autoptr (GString) at = g_string_new (NULL);
  g_autoptr (GString) over = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (PolicyRequest) ok = NULL;
  g_autoptr (PolicyRequest) bad = NULL;

  for (int i = 0; i < POLICY_MAX_NAME; i++)
    g_string_append_c (at, 'n');
  g_string_append (over, at->str);
  g_string_append_c (over, 'n');
  g_string_append (at, "=v\n\n");
  g_string_append (over, "=v\n\n");
  ok = policy_request_parse (at->str, at->len, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ok);
  bad = policy_request_parse (over->str, over->len, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
  g_assert_null (bad);
}

static void
test_limit_attrs (void)
{
  g_autoptr (GString) s = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (PolicyRequest) req = NULL;

  for (int i = 0; i < POLICY_MAX_ATTRS; i++)
    g_string_append_printf (s, "a%d=%d\n", i, i);
  g_string_append_c (s, '\n');
  req = policy_request_parse (s->str, s->len, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (policy_request_get_n_attrs (req), ==, POLICY_MAX_ATTRS);
  g_clear_pointer (&req, policy_request_unref);

  g_string_truncate (s, s->len - 1);
  g_string_append (s, "one_more=x\n\n");
  req = policy_request_parse (s->str, s->len, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_TOO_MANY_ATTRS);
  g_assert_null (req);
}

static void
test_limit_request (void)
{
  g_autoptr (GString) s = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (PolicyRequest) req = NULL;
  int i = 0;

  /* Long lines, few attributes: the request limit is what trips. */
  while (s->len + POLICY_MAX_LINE <= POLICY_MAX_REQUEST)
    {
      g_autofree char *name = g_strdup_printf ("a%d", i++);

      append_line (s, name, POLICY_MAX_LINE - 8);
    }
  g_assert_cmpuint (i, <, POLICY_MAX_ATTRS);
  append_line (s, "last", POLICY_MAX_REQUEST - s->len - 7);
  g_string_append_c (s, '\n');
  g_assert_cmpuint (s->len, ==, POLICY_MAX_REQUEST);
  req = policy_request_parse (s->str, s->len, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (req);
  g_clear_pointer (&req, policy_request_unref);

  g_string_insert_c (s, 0, '\n');
  g_string_insert (s, 0, "z=");
  req = policy_request_parse (s->str, s->len, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_REQUEST_TOO_BIG);
  g_assert_null (req);
}

static void
test_limit_custom (void)
{
  g_autoptr (PolicyParser) parser = policy_parser_new_full (16, 2, 24);
  g_autoptr (GError) error = NULL;
  PolicyRequest *req = NULL;
  gsize consumed = 0;
  const char *wire = "a=1\nb=2\n\n";

  /* 9 bytes, 2 attributes: fits, twice (the request size resets) */
  for (int k = 0; k < 2; k++)
    {
      g_assert_true (policy_parser_feed (parser, wire, strlen (wire), &consumed, &req, &error));
      g_assert_no_error (error);
      g_assert_nonnull (req);
      policy_request_unref (req);
    }
  g_assert_false (policy_parser_feed (parser, L ("a=1\nb=2\nc=3\n\n"), &consumed, &req, &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_TOO_MANY_ATTRS);
  g_clear_error (&error);

  {
    g_autoptr (PolicyParser) p2 = policy_parser_new_full (16, 2, 24);

    g_assert_false (policy_parser_feed (p2, L ("a=0123456789abcd\n"), &consumed, &req, &error));
    g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
    g_clear_error (&error);
  }
  {
    g_autoptr (PolicyParser) p3 = policy_parser_new_full (16, 2, 24);

    g_assert_false (
        policy_parser_feed (p3, L ("a=0123456789a\nb=0123456789\n"), &consumed, &req, &error));
    g_assert_error (error, POLICY_ERROR, POLICY_ERROR_REQUEST_TOO_BIG);
  }
}

/* A line that is too long inside a request that is too big: the limit that
 * trips at the earlier byte wins, however the bytes were split. */
static void
test_limit_order (void)
{
  static const struct
  {
    gsize max_request;
    int code;
  } cases[] = {
    /* request trips at byte 12 of the second line, the line at 16 */
    { 24, POLICY_ERROR_REQUEST_TOO_BIG },
    /* request at 18, line at 16 */
    { 30, POLICY_ERROR_LINE_TOO_LONG },
    /* both at 16: the line wins */
    { 28, POLICY_ERROR_LINE_TOO_LONG },
  };
  const char *wire = "a=0123456789\nb=0123456789abcdefgh\n\n";

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    for (gsize step = 1; step <= strlen (wire); step++)
      {
        g_autoptr (PolicyParser) parser = policy_parser_new_full (16, 8, cases[i].max_request);
        g_autoptr (GError) error = NULL;
        PolicyRequest *req = NULL;
        gsize consumed = 0;
        gsize pos = 0;

        while (pos < strlen (wire)
               && policy_parser_feed (parser, wire + pos, MIN (step, strlen (wire) - pos),
                                      &consumed, &req, &error))
          pos += consumed;
        g_test_message ("max_request %" G_GSIZE_FORMAT " step %" G_GSIZE_FORMAT,
                        cases[i].max_request, step);
        g_assert_error (error, POLICY_ERROR, cases[i].code);
        g_assert_null (req);
      }
}

/* ---- stream behaviour ---------------------------------------------------- */

static void
test_poisoned (void)
{
  g_autoptr (PolicyParser) parser = policy_parser_new ();
  g_autoptr (GError) error = NULL;
  PolicyRequest *req = NULL;
  gsize consumed = 0;

  g_assert_false (policy_parser_feed (parser, L ("bad line\n"), &consumed, &req, &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_NO_EQUALS);
  g_clear_error (&error);
  /* a good request afterwards does not revive it */
  g_assert_false (policy_parser_feed (parser, L ("a=b\n\n"), &consumed, &req, &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_NO_EQUALS);
  g_assert_null (req);
  g_clear_error (&error);
  g_assert_false (policy_parser_finish (parser, &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_NO_EQUALS);
}

static void
test_finish (void)
{
  g_autoptr (PolicyParser) parser = policy_parser_new ();
  g_autoptr (GError) error = NULL;
  PolicyRequest *req = NULL;
  gsize consumed = 0;

  /* nothing yet, then between requests: a clean close */
  g_assert_true (policy_parser_finish (parser, &error));
  g_assert_true (policy_parser_feed (parser, L ("a=b\n\n"), &consumed, &req, &error));
  g_assert_nonnull (req);
  policy_request_unref (req);
  g_assert_true (policy_parser_finish (parser, &error));
  g_assert_no_error (error);

  /* inside a request, whole lines received */
  g_assert_true (policy_parser_feed (parser, L ("a=b\n"), &consumed, &req, &error));
  g_assert_null (req);
  g_assert_cmpuint (policy_parser_get_pending (parser), ==, 4);
  g_assert_false (policy_parser_finish (parser, &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_TRUNCATED);
  g_clear_error (&error);

  /* inside a line */
  {
    g_autoptr (PolicyParser) p2 = policy_parser_new ();

    g_assert_true (policy_parser_feed (p2, L ("a="), &consumed, &req, &error));
    g_assert_false (policy_parser_finish (p2, &error));
    g_assert_error (error, POLICY_ERROR, POLICY_ERROR_TRUNCATED);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  g_test_add_func ("/proto/policy/request/readme/one-shot", test_readme_one_shot);
  g_test_add_func ("/proto/policy/request/readme/crlf", test_readme_crlf);
  g_test_add_func ("/proto/policy/request/readme/byte-by-byte", test_readme_byte_by_byte);
  g_test_add_func ("/proto/policy/request/readme/split-points", test_readme_split_points);
  g_test_add_func ("/proto/policy/request/pipelined", test_pipelined);
  for (gsize i = 0; i < G_N_ELEMENTS (parse_cases); i++)
    {
      g_autofree char *path
          = g_strdup_printf ("/proto/policy/request/parse/%s", parse_cases[i].name);

      g_test_add_data_func (path, &parse_cases[i], test_parse_case);
    }
  g_test_add_func ("/proto/policy/request/limit/line", test_limit_line);
  g_test_add_func ("/proto/policy/request/limit/line-partial", test_limit_line_partial);
  g_test_add_func ("/proto/policy/request/limit/name", test_limit_name);
  g_test_add_func ("/proto/policy/request/limit/attrs", test_limit_attrs);
  g_test_add_func ("/proto/policy/request/limit/request", test_limit_request);
  g_test_add_func ("/proto/policy/request/limit/custom", test_limit_custom);
  g_test_add_func ("/proto/policy/request/limit/order", test_limit_order);
  g_test_add_func ("/proto/policy/request/stream/poisoned", test_poisoned);
  g_test_add_func ("/proto/policy/request/stream/finish", test_finish);
  return g_test_run ();
}
