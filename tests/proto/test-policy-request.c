/* SPDX-License-Identifier: MIT
 *
 * test-policy-request.c — the policy request object (proto/policy/policy.h):
 * building it attribute by attribute with every refusal, the request
 * encoders (round-tripped through the parser), the typed helpers (numbers,
 * protocol states) and reference counting. The incremental parser is tested
 * in test-policy-parser.c.
 */
#include <string.h>

#include "proto/policy/policy.h"

/* the expected result of a case that succeeds, next to PolicyError codes */
#define OK (-1)

/* ---- building and encoding ---------------------------------------------- */

typedef struct
{
  const char *name;
  const char *attr;
  const char *value;
  int result;
} AddCase;

static const AddCase add_cases[] = {
  { "plain", "client_address", "192.0.2.1", OK },
  { "null-value", "sender", NULL, OK },
  { "equals-in-value", "ccert_subject", "CN=x, O=y", OK },
  { "equals-in-name", "a=b", "x", POLICY_ERROR_NAME_CHAR },
  { "empty-name", "", "x", POLICY_ERROR_EMPTY_NAME },
  { "upper-case-name", "Sender", "x", POLICY_ERROR_NAME_CHAR },
  { "lf-in-name", "a\nb", "x", POLICY_ERROR_NAME_CHAR },
  { "lf-in-value", "helo_name", "x\nprotocol_state=RCPT", POLICY_ERROR_NEWLINE },
  { "cr-in-value", "helo_name", "x\r", POLICY_ERROR_NEWLINE },
  { "lf-only-value", "helo_name", "\n", POLICY_ERROR_NEWLINE },
  { "name-too-long", "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn", "x",
    POLICY_ERROR_LINE_TOO_LONG },
};

static void
test_add_case (gconstpointer data)
{
  const AddCase *c = data;
  g_autoptr (PolicyRequest) req = policy_request_new ();
  g_autoptr (GString) out = g_string_new ("keep");
  g_autoptr (GError) error = NULL;
  gboolean ok = policy_request_add (req, c->attr, c->value, &error);

  if (c->result == OK)
    {
      g_autofree char *want = g_strdup_printf ("keep%s=%s\n", c->attr, c->value ? c->value : "");
      g_autoptr (PolicyRequest) back = NULL;
      g_autoptr (GString) full = g_string_new (NULL);

      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpstr (policy_request_lookup (req, c->attr), ==, c->value ? c->value : "");
      g_assert_true (policy_encode_attr (out, c->attr, c->value, &error));
      g_assert_cmpstr (out->str, ==, want);
      policy_request_encode (req, full);
      back = policy_request_parse (full->str, full->len, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpstr (policy_request_lookup (back, c->attr), ==, c->value ? c->value : "");
      return;
    }
  g_assert_error (error, POLICY_ERROR, c->result);
  g_assert_false (ok);
  g_assert_cmpuint (policy_request_get_n_attrs (req), ==, 0);
  g_clear_error (&error);
  /* the streaming encoder refuses the same and appends nothing */
  g_assert_false (policy_encode_attr (out, c->attr, c->value, &error));
  g_assert_error (error, POLICY_ERROR, c->result);
  g_assert_cmpstr (out->str, ==, "keep");
}

static void
test_add_limits (void)
{
  g_autoptr (PolicyRequest) req = policy_request_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *long_value = g_malloc (POLICY_MAX_LINE);

  g_assert_true (policy_request_add (req, "a", "1", &error));
  g_assert_false (policy_request_add (req, "a", "2", &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_DUPLICATE);
  g_clear_error (&error);
  g_assert_cmpstr (policy_request_lookup (req, "a"), ==, "1");

  /* "v=" + value + LF within POLICY_MAX_LINE */
  memset (long_value, 'x', POLICY_MAX_LINE - 1);
  long_value[POLICY_MAX_LINE - 3] = '\0';
  g_assert_true (policy_request_add (req, "v", long_value, &error));
  g_assert_no_error (error);
  long_value[POLICY_MAX_LINE - 3] = 'x';
  long_value[POLICY_MAX_LINE - 2] = '\0';
  g_assert_false (policy_request_add (req, "w", long_value, &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
  g_clear_error (&error);

  for (guint i = policy_request_get_n_attrs (req); i < POLICY_MAX_ATTRS; i++)
    {
      g_autofree char *name = g_strdup_printf ("n%u", i);

      g_assert_true (policy_request_add (req, name, "", &error));
    }
  g_assert_false (policy_request_add (req, "extra", "", &error));
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_TOO_MANY_ATTRS);
}

static void
test_encode_stream (void)
{
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (PolicyRequest) req = NULL;
  g_autoptr (GError) error = NULL;

  g_assert_true (policy_encode_attr (out, POLICY_ATTR_REQUEST, POLICY_REQUEST_SMTPD_ACCESS, NULL));
  g_assert_true (policy_encode_attr (out, POLICY_ATTR_PROTOCOL_STATE, "END-OF-MESSAGE", NULL));
  g_assert_true (policy_encode_attr (out, POLICY_ATTR_SENDER, "", NULL));
  policy_encode_end (out);
  g_assert_cmpstr (out->str, ==,
                   "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nsender=\n\n");
  req = policy_request_parse (out->str, out->len, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (policy_request_get_state (req), ==, POLICY_STATE_END_OF_MESSAGE);
}

/* ---- typed helpers ------------------------------------------------------- */

typedef struct
{
  const char *value; /* NULL: absent */
  guint64 max;
  gboolean ok;
  guint64 want;
} NumberCase;

static const NumberCase number_cases[] = {
  { NULL, G_MAXUINT64, FALSE },
  { "", G_MAXUINT64, FALSE },
  { "0", G_MAXUINT64, TRUE, 0 },
  { "12345", G_MAXUINT64, TRUE, 12345 },
  { "007", G_MAXUINT64, TRUE, 7 },
  { "-1", G_MAXUINT64, FALSE },
  { "+1", G_MAXUINT64, FALSE },
  { " 1", G_MAXUINT64, FALSE },
  { "1 ", G_MAXUINT64, FALSE },
  { "0x10", G_MAXUINT64, FALSE },
  { "1e3", G_MAXUINT64, FALSE },
  { "18446744073709551615", G_MAXUINT64, TRUE, G_MAXUINT64 },
  { "18446744073709551616", G_MAXUINT64, FALSE },
  { "99999999999999999999", G_MAXUINT64, FALSE },
  { "000000000000000000001", G_MAXUINT64, FALSE }, /* 21 digits */
  { "65535", 65535, TRUE, 65535 },
  { "65536", 65535, FALSE },
};

static void
test_numbers (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (number_cases); i++)
    {
      const NumberCase *c = &number_cases[i];
      g_autoptr (PolicyRequest) req = policy_request_new ();
      guint64 n = 4242;

      if (c->value != NULL)
        g_assert_true (policy_request_add (req, "size", c->value, NULL));
      g_test_message ("case %s", c->value ? c->value : "(absent)");
      g_assert_cmpint (policy_request_get_number (req, "size", c->max, &n), ==, c->ok);
      g_assert_cmpuint (n, ==, c->ok ? c->want : 4242);
      if (c->max == G_MAXUINT64)
        {
          n = 4242;
          g_assert_cmpint (policy_request_get_size (req, &n), ==, c->ok);
          g_assert_cmpuint (n, ==, c->ok ? c->want : 4242);
        }
    }
}

static void
test_states (void)
{
  static const struct
  {
    const char *s;
    PolicyState state;
  } cases[] = {
    { "CONNECT", POLICY_STATE_CONNECT }, { "EHLO", POLICY_STATE_EHLO },
    { "HELO", POLICY_STATE_HELO },       { "MAIL", POLICY_STATE_MAIL },
    { "RCPT", POLICY_STATE_RCPT },       { "DATA", POLICY_STATE_DATA },
    { "BDAT", POLICY_STATE_BDAT },       { "END-OF-MESSAGE", POLICY_STATE_END_OF_MESSAGE },
    { "VRFY", POLICY_STATE_VRFY },       { "ETRN", POLICY_STATE_ETRN },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *lower = g_ascii_strdown (cases[i].s, -1);

      g_assert_cmpint (policy_state_from_string (cases[i].s, -1), ==, cases[i].state);
      g_assert_cmpint (policy_state_from_string (lower, -1), ==, cases[i].state);
      g_assert_cmpstr (policy_state_to_string (cases[i].state), ==, cases[i].s);
    }
  /* a prefix is no match; length-delimited input is honoured */
  g_assert_cmpint (policy_state_from_string ("RCPTX", -1), ==, POLICY_STATE_UNKNOWN);
  g_assert_cmpint (policy_state_from_string ("RCPTX", 4), ==, POLICY_STATE_RCPT);
  g_assert_cmpint (policy_state_from_string ("RCP", -1), ==, POLICY_STATE_UNKNOWN);
  g_assert_cmpint (policy_state_from_string ("", -1), ==, POLICY_STATE_UNKNOWN);
  g_assert_cmpint (policy_state_from_string (NULL, -1), ==, POLICY_STATE_UNKNOWN);
  g_assert_cmpint (policy_state_from_string ("END_OF_MESSAGE", -1), ==, POLICY_STATE_UNKNOWN);
  g_assert_cmpstr (policy_state_to_string (POLICY_STATE_UNKNOWN), ==, "UNKNOWN");
}

static void
test_ref (void)
{
  PolicyRequest *req = policy_request_new ();
  PolicyRequest *ref = policy_request_ref (req);

  g_assert_true (ref == req);
  g_assert_true (policy_request_add (req, "a", "b", NULL));
  policy_request_unref (req);
  g_assert_cmpstr (policy_request_lookup (ref, "a"), ==, "b");
  policy_request_unref (ref);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (add_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/policy/request/add/%s", add_cases[i].name);

      g_test_add_data_func (path, &add_cases[i], test_add_case);
    }
  g_test_add_func ("/proto/policy/request/add/limits", test_add_limits);
  g_test_add_func ("/proto/policy/request/encode/stream", test_encode_stream);
  g_test_add_func ("/proto/policy/request/numbers", test_numbers);
  g_test_add_func ("/proto/policy/request/states", test_states);
  g_test_add_func ("/proto/policy/request/ref", test_ref);
  return g_test_run ();
}
