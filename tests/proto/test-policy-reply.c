/* SPDX-License-Identifier: MIT
 *
 * test-policy-reply.c — policy replies (proto/policy/policy.h): formatting
 * every action of access(5) and refusing what Postfix would misread,
 * parsing what real policy servers send (postgrey, policyd-spf, upper and
 * lower case, CRLF, extra attributes) and refusing garbage with its exact
 * error, round trips, and the SMTP reply a parsed action stands for.
 */
#include <string.h>

#include "proto/policy/policy.h"

#define OK (-1)
#define MAIL (-2) /* the error is in MAIL_ERROR: checked by code below */

/* ---- formatting --------------------------------------------------------- */

typedef struct
{
  const char *name;
  PolicyAction action;
  const char *want; /* the action value, or NULL for an error */
  GQuark (*domain) (void);
  int code;
} FormatCase;

#define A(...)                                                                                     \
  {                                                                                                \
    __VA_ARGS__                                                                                    \
  }

static const FormatCase format_cases[] = {
  { "ok", A (.kind = POLICY_ACTION_OK), "OK" },
  { "ok-text-dropped", A (.kind = POLICY_ACTION_OK, .text = (char *)"x"), "OK" },
  { "dunno", A (.kind = POLICY_ACTION_DUNNO), "DUNNO" },
  { "reject", A (.kind = POLICY_ACTION_REJECT), "REJECT" },
  { "reject-text", A (.kind = POLICY_ACTION_REJECT, .text = (char *)"Go away"), "REJECT Go away" },
  { "reject-enhanced-text",
    A (.kind = POLICY_ACTION_REJECT, .enhanced = (char *)"5.7.1", .text = (char *)"No"),
    "REJECT 5.7.1 No" },
  { "reject-empty-strings",
    A (.kind = POLICY_ACTION_REJECT, .enhanced = (char *)"", .text = (char *)""), "REJECT" },
  { "defer-text", A (.kind = POLICY_ACTION_DEFER, .text = (char *)"Later"), "DEFER Later" },
  { "defer-enhanced",
    A (.kind = POLICY_ACTION_DEFER, .enhanced = (char *)"4.2.0", .text = (char *)"Greylisted"),
    "DEFER 4.2.0 Greylisted" },
  { "defer-if-permit", A (.kind = POLICY_ACTION_DEFER_IF_PERMIT), "DEFER_IF_PERMIT" },
  { "defer-if-reject-text", A (.kind = POLICY_ACTION_DEFER_IF_REJECT, .text = (char *)"maybe"),
    "DEFER_IF_REJECT maybe" },
  { "reply-550",
    A (.kind = POLICY_ACTION_REPLY, .code = 550, .enhanced = (char *)"5.1.1",
       .text = (char *)"User unknown"),
    "550 5.1.1 User unknown" },
  { "reply-450-bare", A (.kind = POLICY_ACTION_REPLY, .code = 450), "450" },
  { "reply-tab-in-text", A (.kind = POLICY_ACTION_REPLY, .code = 554, .text = (char *)"a\tb"),
    "554 a\tb" },
  { "hold", A (.kind = POLICY_ACTION_HOLD), "HOLD" },
  { "hold-text", A (.kind = POLICY_ACTION_HOLD, .text = (char *)"quarantined by rule x"),
    "HOLD quarantined by rule x" },
  { "discard-text", A (.kind = POLICY_ACTION_DISCARD, .text = (char *)"spam"), "DISCARD spam" },
  { "warn", A (.kind = POLICY_ACTION_WARN, .text = (char *)"odd"), "WARN odd" },
  { "info", A (.kind = POLICY_ACTION_INFO, .text = (char *)"note"), "INFO note" },
  { "prepend",
    A (.kind = POLICY_ACTION_PREPEND, .header_name = (char *)"X-Spam-Score",
       .header_value = (char *)"5.0 (yes)"),
    "PREPEND X-Spam-Score: 5.0 (yes)" },
  { "prepend-empty-value",
    A (.kind = POLICY_ACTION_PREPEND, .header_name = (char *)"X-Flag", .header_value = (char *)""),
    "PREPEND X-Flag: " },
  { "redirect", A (.kind = POLICY_ACTION_REDIRECT, .argument = (char *)"abuse@example.org"),
    "REDIRECT abuse@example.org" },
  { "bcc", A (.kind = POLICY_ACTION_BCC, .argument = (char *)"archive@example.org"),
    "BCC archive@example.org" },
  { "filter", A (.kind = POLICY_ACTION_FILTER, .argument = (char *)"smtp:[127.0.0.1]:10025"),
    "FILTER smtp:[127.0.0.1]:10025" },
  { "restriction", A (.kind = POLICY_ACTION_RESTRICTION, .argument = (char *)"permit"), "permit" },
  /* errors */
  { "reject-enhanced-class",
    A (.kind = POLICY_ACTION_REJECT, .enhanced = (char *)"4.7.1", .text = (char *)"x"), NULL,
    mail_error_quark, MAIL_ERROR_ENHANCED_CLASS },
  { "defer-enhanced-class", A (.kind = POLICY_ACTION_DEFER, .enhanced = (char *)"5.7.1"), NULL,
    mail_error_quark, MAIL_ERROR_ENHANCED_CLASS },
  { "reject-bad-enhanced", A (.kind = POLICY_ACTION_REJECT, .enhanced = (char *)"5.7"), NULL,
    mail_error_quark, MAIL_ERROR_ENHANCED_CODE },
  { "reply-250", A (.kind = POLICY_ACTION_REPLY, .code = 250, .text = (char *)"ok"), NULL,
    policy_error_quark, POLICY_ERROR_ACTION },
  { "reply-0", A (.kind = POLICY_ACTION_REPLY), NULL, policy_error_quark, POLICY_ERROR_ACTION },
  { "reply-600", A (.kind = POLICY_ACTION_REPLY, .code = 600), NULL, policy_error_quark,
    POLICY_ERROR_ACTION },
  { "reply-569", A (.kind = POLICY_ACTION_REPLY, .code = 569), NULL, mail_error_quark,
    MAIL_ERROR_REPLY_CODE },
  { "text-lf", A (.kind = POLICY_ACTION_REJECT, .text = (char *)"a\nb"), NULL, policy_error_quark,
    POLICY_ERROR_ACTION },
  { "text-lf-injection", A (.kind = POLICY_ACTION_HOLD, .text = (char *)"x\n\naction=OK"), NULL,
    policy_error_quark, POLICY_ERROR_ACTION },
  { "text-cr", A (.kind = POLICY_ACTION_DEFER, .text = (char *)"a\rb"), NULL, policy_error_quark,
    POLICY_ERROR_ACTION },
  { "text-control", A (.kind = POLICY_ACTION_REJECT, .text = (char *)"a\x01"), NULL,
    mail_error_quark, MAIL_ERROR_FORBIDDEN_CHAR },
  { "text-8bit", A (.kind = POLICY_ACTION_REJECT, .text = (char *)"caf\xc3\xa9"), NULL,
    mail_error_quark, MAIL_ERROR_UTF8_NOT_ALLOWED },
  { "hold-enhanced", A (.kind = POLICY_ACTION_HOLD, .enhanced = (char *)"2.0.0"), NULL,
    policy_error_quark, POLICY_ERROR_ACTION },
  { "prepend-missing", A (.kind = POLICY_ACTION_PREPEND), NULL, policy_error_quark,
    POLICY_ERROR_ACTION },
  { "prepend-bad-name",
    A (.kind = POLICY_ACTION_PREPEND, .header_name = (char *)"X Bad", .header_value = (char *)"v"),
    NULL, mail_error_quark, MAIL_ERROR_HEADER_NAME },
  { "prepend-colon-name",
    A (.kind = POLICY_ACTION_PREPEND, .header_name = (char *)"X:", .header_value = (char *)"v"),
    NULL, mail_error_quark, MAIL_ERROR_HEADER_NAME },
  { "prepend-value-injection",
    A (.kind = POLICY_ACTION_PREPEND, .header_name = (char *)"X-A",
       .header_value = (char *)"v\r\nBcc: x@y"),
    NULL, mail_error_quark, MAIL_ERROR_FORBIDDEN_CHAR },
  { "redirect-empty", A (.kind = POLICY_ACTION_REDIRECT), NULL, policy_error_quark,
    POLICY_ERROR_ACTION },
  { "redirect-space", A (.kind = POLICY_ACTION_REDIRECT, .argument = (char *)"a@b c@d"), NULL,
    policy_error_quark, POLICY_ERROR_ACTION },
  { "bcc-lf", A (.kind = POLICY_ACTION_BCC, .argument = (char *)"a@b\n"), NULL, policy_error_quark,
    POLICY_ERROR_ACTION },
  { "filter-no-colon", A (.kind = POLICY_ACTION_FILTER, .argument = (char *)"smtp"), NULL,
    policy_error_quark, POLICY_ERROR_ACTION },
  { "filter-empty-transport", A (.kind = POLICY_ACTION_FILTER, .argument = (char *)":dest"), NULL,
    policy_error_quark, POLICY_ERROR_ACTION },
  { "restriction-empty", A (.kind = POLICY_ACTION_RESTRICTION, .argument = (char *)""), NULL,
    policy_error_quark, POLICY_ERROR_ACTION },
  { "restriction-lf", A (.kind = POLICY_ACTION_RESTRICTION, .argument = (char *)"permit\n"), NULL,
    policy_error_quark, POLICY_ERROR_ACTION },
  { "bad-kind", A (.kind = (PolicyActionKind)99), NULL, policy_error_quark, POLICY_ERROR_ACTION },
};

static void
test_format_case (gconstpointer data)
{
  const FormatCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *got = policy_action_format (&c->action, &error);
  g_autoptr (GString) out = g_string_new ("x");

  if (c->want != NULL)
    {
      g_autofree char *wire = g_strdup_printf ("xaction=%s\n\n", c->want);

      g_assert_no_error (error);
      g_assert_cmpstr (got, ==, c->want);
      g_assert_true (policy_reply_encode (out, &c->action, &error));
      g_assert_cmpstr (out->str, ==, wire);
      return;
    }
  g_assert_null (got);
  g_assert_error (error, c->domain (), c->code);
  g_clear_error (&error);
  g_assert_false (policy_reply_encode (out, &c->action, &error));
  g_assert_error (error, c->domain (), c->code);
  g_assert_cmpstr (out->str, ==, "x");
}

static void
test_format_line_limit (void)
{
  g_autoptr (PolicyAction) a = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *value = g_malloc (POLICY_MAX_LINE + 1);
  g_autofree char *got = NULL;
  /* "action=PREPEND X: " is 18 bytes, the LF 1 */
  gsize fits = POLICY_MAX_LINE - 19;

  memset (value, 'v', fits + 1);
  value[fits] = '\0';
  a = policy_action_new_prepend ("X", value);
  got = policy_action_format (a, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (got), ==, POLICY_MAX_LINE - 8);
  g_clear_pointer (&got, g_free);
  g_clear_pointer (&a, policy_action_free);

  value[fits] = 'v';
  value[fits + 1] = '\0';
  a = policy_action_new_prepend ("X", value);
  got = policy_action_format (a, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
  g_assert_null (got);
}

static void
test_simple (void)
{
  g_autoptr (GString) out = g_string_new (NULL);

  policy_reply_encode_simple (out, POLICY_ACTION_OK);
  policy_reply_encode_simple (out, POLICY_ACTION_DUNNO);
  g_assert_cmpstr (out->str, ==, "action=OK\n\naction=DUNNO\n\n");
}

static void
test_constructors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MailReply) r550 = mail_reply_new (550, "5.1.1", "User unknown", NULL);
  g_autoptr (MailReply) multi = mail_reply_new (451, "4.3.0", "first\nsecond", NULL);
  g_autoptr (MailReply) r250 = mail_reply_new (250, "2.0.0", "Ok", NULL);
  g_autoptr (MailReply) bare = mail_reply_new (554, NULL, NULL, NULL);
  g_autoptr (PolicyAction) a = NULL;
  g_autofree char *s = NULL;

  a = policy_action_new_reply (r550, &error);
  g_assert_no_error (error);
  s = policy_action_format (a, &error);
  g_assert_cmpstr (s, ==, "550 5.1.1 User unknown");
  g_clear_pointer (&a, policy_action_free);
  g_clear_pointer (&s, g_free);

  /* one action line holds one text line */
  a = policy_action_new_reply (multi, &error);
  s = policy_action_format (a, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (s, ==, "451 4.3.0 first second");
  g_clear_pointer (&a, policy_action_free);
  g_clear_pointer (&s, g_free);

  a = policy_action_new_reply (bare, &error);
  g_assert_null (a->text);
  g_assert_null (a->enhanced);
  s = policy_action_format (a, &error);
  g_assert_cmpstr (s, ==, "554");
  g_clear_pointer (&a, policy_action_free);
  g_clear_pointer (&s, g_free);

  a = policy_action_new_reply (r250, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_ACTION);
  g_assert_null (a);
  g_clear_error (&error);

  a = policy_action_new_text (POLICY_ACTION_DEFER_IF_PERMIT, "4.7.1", "Greylisted");
  s = policy_action_format (a, &error);
  g_assert_cmpstr (s, ==, "DEFER_IF_PERMIT 4.7.1 Greylisted");
  g_clear_pointer (&a, policy_action_free);
  g_clear_pointer (&s, g_free);

  a = policy_action_new_argument (POLICY_ACTION_BCC, "x@example.org");
  s = policy_action_format (a, &error);
  g_assert_cmpstr (s, ==, "BCC x@example.org");
  g_assert_no_error (error);
}

static void
test_kind_names (void)
{
  g_assert_cmpstr (policy_action_kind_to_string (POLICY_ACTION_OK), ==, "OK");
  g_assert_cmpstr (policy_action_kind_to_string (POLICY_ACTION_DEFER_IF_PERMIT), ==,
                   "DEFER_IF_PERMIT");
  g_assert_cmpstr (policy_action_kind_to_string (POLICY_ACTION_REPLY), ==, "REPLY");
  g_assert_cmpstr (policy_action_kind_to_string (POLICY_ACTION_RESTRICTION), ==, "RESTRICTION");
  g_assert_cmpstr (policy_action_kind_to_string (POLICY_ACTION_INFO), ==, "INFO");
  for (int k = 0; k < POLICY_ACTION_N_KINDS; k++)
    g_assert_nonnull (policy_action_kind_to_string (k));
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct
{
  const char *name;
  const char *data;
  gsize len;
  int result; /* OK or a PolicyError */
  PolicyActionKind kind;
  guint code;
  const char *enhanced;
  const char *text;
  const char *argument; /* PREPEND: "name|value" */
} ParseCase;

#define L(s) (s), sizeof (s) - 1

static const ParseCase parse_cases[] = {
  { "ok", L ("action=OK\n\n"), OK, POLICY_ACTION_OK },
  { "ok-lower", L ("action=ok\n\n"), OK, POLICY_ACTION_OK },
  { "dunno-mixed", L ("action=Dunno\n\n"), OK, POLICY_ACTION_DUNNO },
  { "dunno-crlf", L ("action=DUNNO\r\n\r\n"), OK, POLICY_ACTION_DUNNO },
  { "ok-with-text", L ("action=OK whatever\n\n"), OK, POLICY_ACTION_OK, 0, NULL, "whatever" },
  { "all-numeric", L ("action=12345\n\n"), OK, POLICY_ACTION_OK },
  { "reject", L ("action=REJECT\n\n"), OK, POLICY_ACTION_REJECT },
  { "reject-text", L ("action=reject Go away\n\n"), OK, POLICY_ACTION_REJECT, 0, NULL, "Go away" },
  { "reject-enhanced", L ("action=REJECT 5.7.1 No thanks\n\n"), OK, POLICY_ACTION_REJECT, 0,
    "5.7.1", "No thanks" },
  { "reject-enhanced-only", L ("action=REJECT 5.7.1\n\n"), OK, POLICY_ACTION_REJECT, 0, "5.7.1" },
  { "reject-not-enhanced", L ("action=REJECT 5.7.1x y\n\n"), OK, POLICY_ACTION_REJECT, 0, NULL,
    "5.7.1x y" },
  { "reject-tab", L ("action=REJECT\t5.7.1\tNo\n\n"), OK, POLICY_ACTION_REJECT, 0, "5.7.1", "No" },
  { "reject-3-digit-detail", L ("action=REJECT 5.7.123 x\n\n"), OK, POLICY_ACTION_REJECT, 0,
    "5.7.123", "x" },
  { "reject-4-digit-detail", L ("action=REJECT 5.7.1234 x\n\n"), OK, POLICY_ACTION_REJECT, 0, NULL,
    "5.7.1234 x" },
  { "defer", L ("action=DEFER Later\n\n"), OK, POLICY_ACTION_DEFER, 0, NULL, "Later" },
  { "postgrey",
    L ("action=DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/help/x.html\n\n"), OK,
    POLICY_ACTION_DEFER_IF_PERMIT, 0, NULL,
    "Greylisted, see http://postgrey.schweikert.ch/help/x.html" },
  { "defer-if-reject", L ("action=DEFER_IF_REJECT\n\n"), OK, POLICY_ACTION_DEFER_IF_REJECT },
  { "numeric-550", L ("action=550 5.1.1 <u@example.org>: Recipient unknown\n\n"), OK,
    POLICY_ACTION_REPLY, 550, "5.1.1", "<u@example.org>: Recipient unknown" },
  { "numeric-450-bare", L ("action=450\n\n"), OK, POLICY_ACTION_REPLY, 450 },
  { "policyd-spf-fail",
    L ("action=550 5.7.23 Message rejected due to: SPF fail - not authorized. Please see "
       "http://www.openspf.net/Why?s=mfrom;id=a@b;ip=192.0.2.1;r=<UNKNOWN>\n\n"),
    OK, POLICY_ACTION_REPLY, 550, "5.7.23",
    "Message rejected due to: SPF fail - not authorized. Please see "
    "http://www.openspf.net/Why?s=mfrom;id=a@b;ip=192.0.2.1;r=<UNKNOWN>" },
  { "policyd-spf-prepend",
    L ("action=prepend Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.1\n\n"),
    OK, POLICY_ACTION_PREPEND, 0, NULL, NULL,
    "Received-SPF|Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.1" },
  { "prepend-no-space", L ("action=PREPEND X-A:b\n\n"), OK, POLICY_ACTION_PREPEND, 0, NULL, NULL,
    "X-A|b" },
  { "prepend-empty-value", L ("action=PREPEND X-A:\n\n"), OK, POLICY_ACTION_PREPEND, 0, NULL, NULL,
    "X-A|" },
  { "hold", L ("action=HOLD\n\n"), OK, POLICY_ACTION_HOLD },
  { "discard-text", L ("action=DISCARD spam\n\n"), OK, POLICY_ACTION_DISCARD, 0, NULL, "spam" },
  { "warn", L ("action=WARN look\n\n"), OK, POLICY_ACTION_WARN, 0, NULL, "look" },
  { "info", L ("action=INFO x y\n\n"), OK, POLICY_ACTION_INFO, 0, NULL, "x y" },
  { "redirect", L ("action=REDIRECT a@example.org\n\n"), OK, POLICY_ACTION_REDIRECT, 0, NULL, NULL,
    "a@example.org" },
  { "bcc", L ("action=bcc a@example.org\n\n"), OK, POLICY_ACTION_BCC, 0, NULL, NULL,
    "a@example.org" },
  { "filter", L ("action=FILTER smtp:[127.0.0.1]:10025\n\n"), OK, POLICY_ACTION_FILTER, 0, NULL,
    NULL, "smtp:[127.0.0.1]:10025" },
  { "restriction", L ("action=reject_unauth_destination\n\n"), OK, POLICY_ACTION_RESTRICTION, 0,
    NULL, NULL, "reject_unauth_destination" },
  { "restriction-list", L ("action=permit_mynetworks, reject\n\n"), OK, POLICY_ACTION_RESTRICTION,
    0, NULL, NULL, "permit_mynetworks, reject" },
  { "extra-attributes", L ("id=42\naction=OK\nlog=yes\n\n"), OK, POLICY_ACTION_OK },
  { "pipelined-next-ignored", L ("action=DUNNO\n\naction=OK\n\n"), OK, POLICY_ACTION_DUNNO },
  /* incomplete */
  { "incomplete-empty", L (""), POLICY_ERROR_INCOMPLETE },
  { "incomplete-partial", L ("action=O"), POLICY_ERROR_INCOMPLETE },
  { "incomplete-no-blank", L ("action=OK\n"), POLICY_ERROR_INCOMPLETE },
  { "incomplete-cr", L ("action=OK\r\n\r"), POLICY_ERROR_INCOMPLETE },
  /* garbage */
  { "no-action", L ("\n"), POLICY_ERROR_NO_ACTION },
  { "no-action-other", L ("result=OK\n\n"), POLICY_ERROR_NO_ACTION },
  { "two-actions", L ("action=OK\naction=REJECT\n\n"), POLICY_ERROR_DUPLICATE },
  { "duplicate-other", L ("x=1\nx=2\naction=OK\n\n"), POLICY_ERROR_DUPLICATE },
  { "http", L ("HTTP/1.1 400 Bad Request\r\n\r\n"), POLICY_ERROR_NO_EQUALS },
  { "smtp-banner", L ("220 mx.example.org ESMTP\r\n"), POLICY_ERROR_NO_EQUALS },
  { "upper-name", L ("Action=OK\n\n"), POLICY_ERROR_NAME_CHAR },
  { "empty-name", L ("=OK\n\n"), POLICY_ERROR_EMPTY_NAME },
  { "nul", L ("action=OK\0\n\n"), POLICY_ERROR_NUL },
  { "empty-action", L ("action=\n\n"), POLICY_ERROR_ACTION },
  { "leading-space", L ("action= OK\n\n"), POLICY_ERROR_ACTION },
  { "control", L ("action=REJECT a\x01\n\n"), POLICY_ERROR_ACTION },
  { "cr-inside", L ("action=REJECT a\rb\n\n"), POLICY_ERROR_ACTION },
  { "numeric-250", L ("action=250 ok\n\n"), POLICY_ERROR_ACTION },
  { "numeric-569", L ("action=569 x\n\n"), POLICY_ERROR_ACTION },
  { "numeric-2-digits-text", L ("action=55 x\n\n"), POLICY_ERROR_ACTION },
  { "prepend-no-colon", L ("action=PREPEND X-A b\n\n"), POLICY_ERROR_ACTION },
  { "prepend-empty-name", L ("action=PREPEND : b\n\n"), POLICY_ERROR_ACTION },
  { "prepend-nothing", L ("action=PREPEND\n\n"), POLICY_ERROR_ACTION },
  { "redirect-nothing", L ("action=REDIRECT\n\n"), POLICY_ERROR_ACTION },
  { "bcc-space", L ("action=BCC a@b c\n\n"), POLICY_ERROR_ACTION },
  { "filter-no-colon", L ("action=FILTER smtp\n\n"), POLICY_ERROR_ACTION },
  { "restriction-junk", L ("action=!!!\n\n"), POLICY_ERROR_ACTION },
};

static void
test_parse_case (gconstpointer data)
{
  const ParseCase *c = data;
  g_autoptr (GError) error = NULL;
  gsize consumed = 99;
  g_autoptr (PolicyAction) a = policy_reply_parse (c->data, c->len, &consumed, &error);

  if (c->result != OK)
    {
      g_assert_error (error, POLICY_ERROR, c->result);
      g_assert_null (a);
      g_assert_cmpuint (consumed, ==, 0);
      return;
    }
  g_assert_no_error (error);
  g_assert_nonnull (a);
  g_assert_cmpint (a->kind, ==, c->kind);
  g_assert_cmpuint (a->code, ==, c->code);
  g_assert_cmpstr (a->enhanced, ==, c->enhanced);
  g_assert_cmpstr (a->text, ==, c->text);
  if (c->kind == POLICY_ACTION_PREPEND)
    {
      g_autofree char *both = g_strdup_printf ("%s|%s", a->header_name, a->header_value);

      g_assert_cmpstr (both, ==, c->argument);
      g_assert_null (a->argument);
    }
  else
    {
      g_assert_cmpstr (a->argument, ==, c->argument);
      g_assert_null (a->header_name);
    }
  /* up to and including the empty line, never into the next reply */
  {
    const char *blank = strstr (c->data, "\n\n");
    const char *crlf = strstr (c->data, "\r\n\r\n");
    gsize want = crlf != NULL && (blank == NULL || crlf < blank) ? (gsize)(crlf - c->data) + 4
                                                                 : (gsize)(blank - c->data) + 2;

    g_assert_cmpuint (consumed, ==, want);
  }
}

static void
test_parse_limits (void)
{
  g_autoptr (GString) s = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (PolicyAction) a = NULL;

  /* a line that cannot end in time: refused before its LF arrives */
  for (int i = 0; i < POLICY_MAX_LINE; i++)
    g_string_append_c (s, 'x');
  a = policy_reply_parse (s->str, s->len, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG);
  g_clear_error (&error);
  /* one byte less: it still may */
  a = policy_reply_parse (s->str, s->len - 1, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_INCOMPLETE);
  g_clear_error (&error);

  /* attributes: POLICY_MAX_REPLY_ATTRS fit, one more does not */
  g_string_truncate (s, 0);
  for (int i = 0; i < POLICY_MAX_REPLY_ATTRS - 1; i++)
    g_string_append_printf (s, "x%d=y\n", i);
  g_string_append (s, "action=OK\n\n");
  a = policy_reply_parse (s->str, s->len, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (a);
  g_clear_pointer (&a, policy_action_free);
  g_string_prepend (s, "extra=1\n");
  a = policy_reply_parse (s->str, s->len, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_TOO_MANY_ATTRS);
  g_assert_null (a);
  g_clear_error (&error);

  /* total size, with lines each under the line limit */
  g_string_truncate (s, 0);
  for (int i = 0; i < 3; i++)
    {
      g_string_append_printf (s, "pad%d=", i);
      for (int k = 0; k < POLICY_MAX_LINE - 16; k++)
        g_string_append_c (s, 'p');
      g_string_append_c (s, '\n');
    }
  g_assert_cmpuint (s->len, >, POLICY_MAX_REPLY);
  a = policy_reply_parse (s->str, s->len, NULL, &error);
  g_assert_error (error, POLICY_ERROR, POLICY_ERROR_REQUEST_TOO_BIG);
  g_assert_null (a);
}

/* Every prefix of a valid reply is "incomplete", never an error. */
static void
test_parse_prefixes (void)
{
  const char *wire = "x=1\r\naction=PREPEND X-Greylist: delayed 30 seconds\r\n\r\n";
  gsize len = strlen (wire);

  for (gsize i = 0; i < len; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (PolicyAction) a = policy_reply_parse (wire, i, NULL, &error);

      g_assert_error (error, POLICY_ERROR, POLICY_ERROR_INCOMPLETE);
      g_assert_null (a);
    }
}

/* What we format, the parser reads back as the same action. */
static void
test_round_trip (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (format_cases); i++)
    {
      const PolicyAction *in = &format_cases[i].action;
      g_autoptr (GString) wire = g_string_new (NULL);
      g_autoptr (PolicyAction) out = NULL;
      g_autoptr (GError) error = NULL;
      gsize consumed = 0;

      if (format_cases[i].want == NULL)
        continue;
      g_test_message ("round trip %s", format_cases[i].name);
      g_assert_true (policy_reply_encode (wire, in, &error));
      out = policy_reply_parse (wire->str, wire->len, &consumed, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (consumed, ==, wire->len);
      g_assert_cmpint (out->kind, ==, in->kind);
      g_assert_cmpuint (out->code, ==, in->code);
#define NE(s) ((s) != NULL && *(s) != '\0' ? (s) : NULL)
      g_assert_cmpstr (out->enhanced, ==, NE (in->enhanced));
      if (in->kind != POLICY_ACTION_OK)
        g_assert_cmpstr (out->text, ==, NE (in->text));
      g_assert_cmpstr (out->header_name, ==, in->header_name);
      g_assert_cmpstr (out->header_value, ==, in->header_value);
      g_assert_cmpstr (out->argument, ==, in->argument);
#undef NE
    }
}

/* ---- the SMTP reply of a parsed action ---------------------------------- */

typedef struct
{
  const char *wire;
  MailReplyDefault fallback;
  const char *want; /* mail_reply_format without CRLF, or NULL: error */
  GQuark (*domain) (void);
  int code;
} ToReplyCase;

static const ToReplyCase to_reply_cases[] = {
  { "action=REJECT\n\n", MAIL_REPLY_REJECT_RCPT, "554 5.7.1 Recipient rejected" },
  { "action=REJECT No thanks\n\n", MAIL_REPLY_REJECT, "554 5.7.1 No thanks" },
  { "action=REJECT 5.1.1 Unknown\n\n", MAIL_REPLY_REJECT, "554 5.1.1 Unknown" },
  /* the class of the reply wins, as Postfix's smtpd_dsn_fix */
  { "action=REJECT 4.1.1 Unknown\n\n", MAIL_REPLY_REJECT, "554 5.1.1 Unknown" },
  { "action=DEFER\n\n", MAIL_REPLY_TEMPFAIL_RCPT, "450 4.7.1 Recipient temporarily rejected" },
  { "action=DEFER_IF_PERMIT Greylisted\n\n", MAIL_REPLY_TEMPFAIL, "450 4.7.1 Greylisted" },
  { "action=DEFER_IF_REJECT 5.7.1 x\n\n", MAIL_REPLY_TEMPFAIL, "450 4.7.1 x" },
  { "action=550 5.1.1 User unknown\n\n", MAIL_REPLY_REJECT, "550 5.1.1 User unknown" },
  { "action=421\n\n", MAIL_REPLY_SHUTDOWN, "421 4.3.2 Service shutting down" },
  { "action=REJECT caf\xc3\xa9\n\n", MAIL_REPLY_REJECT, NULL, mail_error_quark,
    MAIL_ERROR_UTF8_NOT_ALLOWED },
  { "action=OK\n\n", MAIL_REPLY_REJECT, NULL, policy_error_quark, POLICY_ERROR_ACTION },
  { "action=HOLD x\n\n", MAIL_REPLY_REJECT, NULL, policy_error_quark, POLICY_ERROR_ACTION },
};

static void
test_to_reply (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (to_reply_cases); i++)
    {
      const ToReplyCase *c = &to_reply_cases[i];
      g_autoptr (GError) error = NULL;
      g_autoptr (PolicyAction) a = policy_reply_parse (c->wire, strlen (c->wire), NULL, &error);
      g_autoptr (MailReply) r = NULL;

      g_test_message ("to_reply %s", c->wire);
      g_assert_no_error (error);
      r = policy_action_to_reply (a, c->fallback, &error);
      if (c->want != NULL)
        {
          g_autofree char *f = NULL;

          g_assert_no_error (error);
          f = mail_reply_format (r);
          g_assert_true (g_str_has_suffix (f, "\r\n"));
          f[strlen (f) - 2] = '\0';
          g_assert_cmpstr (f, ==, c->want);
        }
      else
        {
          g_assert_error (error, c->domain (), c->code);
          g_assert_null (r);
        }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (format_cases); i++)
    {
      g_autofree char *path
          = g_strdup_printf ("/proto/policy/reply/format/%s", format_cases[i].name);

      g_test_add_data_func (path, &format_cases[i], test_format_case);
    }
  g_test_add_func ("/proto/policy/reply/format/line-limit", test_format_line_limit);
  g_test_add_func ("/proto/policy/reply/format/simple", test_simple);
  g_test_add_func ("/proto/policy/reply/format/constructors", test_constructors);
  g_test_add_func ("/proto/policy/reply/kind-names", test_kind_names);
  for (gsize i = 0; i < G_N_ELEMENTS (parse_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/proto/policy/reply/parse/%s", parse_cases[i].name);

      g_test_add_data_func (path, &parse_cases[i], test_parse_case);
    }
  g_test_add_func ("/proto/policy/reply/parse/limits", test_parse_limits);
  g_test_add_func ("/proto/policy/reply/parse/prefixes", test_parse_prefixes);
  g_test_add_func ("/proto/policy/reply/round-trip", test_round_trip);
  g_test_add_func ("/proto/policy/reply/to-reply", test_to_reply);
  return g_test_run ();
}
