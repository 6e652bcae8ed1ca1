/* SPDX-License-Identifier: MIT
 *
 * test-bounce-text.c — what the DSN generator takes from outside: hostile
 * remote replies (CR LF, NUL, 8-bit, overlong) and host names, ENVID, ORCPT
 * and addresses that need xtext, the Status field, 8-bit originals and
 * texts, unique boundaries and ids, the longest values that still fit.
 */
#include "tests/mta/bounce-test-util.h"

/* ---- hostile input --------------------------------------------------------- */

typedef struct
{
  const char *reply;
  gssize len;
  const char *result;     /* what vps_bounce_remote_result makes of it (after "said: ") */
  const char *diagnostic; /* Diagnostic-Code */
} ReplyCase;

static const ReplyCase reply_cases[] = {
  { "550 5.1.1 user unknown", -1, "550 5.1.1 user unknown", "smtp; 550 5.1.1 user unknown" },
  /* a header injection through a multi-line reply */
  { "550 5.7.1 no\r\nBcc: victim@example.net\r\n\r\n--boundary\r\n", -1,
    "550 5.7.1 no Bcc: victim@example.net --boundary",
    "smtp; 550 5.7.1 no Bcc: victim@example.net --boundary" },
  { "550-5.7.1 first\r\n550 5.7.1 second", -1, "550-5.7.1 first 550 5.7.1 second",
    "smtp; 550-5.7.1 first 550 5.7.1 second" },
  { "550 5.7.1 bare\rcr and\nlf", -1, "550 5.7.1 bare cr and lf",
    "smtp; 550 5.7.1 bare cr and lf" },
  /* NUL and other controls */
  { LIT ("550 5.7.1 a\0b\x01"
         "c\x1b[31m\x7f"),
    "550 5.7.1 a?b?c?[31m?", "smtp; 550 5.7.1 a?b?c?[31m?" },
  /* invalid 8-bit, valid UTF-8 (kept in the result and the text, not in the report),
   * a C1 control */
  { "550 5.7.1 \xff\xfe caf\xc3\xa9 \xc2\x85!", -1, "550 5.7.1 ?? caf\xc3\xa9 ?!",
    "smtp; 550 5.7.1 ?? caf? ?!" },
  /* blanks collapse, ends trimmed */
  { "  550   5.1.1 \t spaced  \r\n", -1, "550 5.1.1 spaced", "smtp; 550 5.1.1 spaced" },
  { "", -1, "", NULL },
};

static void
test_hostile_reply (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (reply_cases); i++)
    {
      const ReplyCase *c = &reply_cases[i];
      g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
      g_autofree char *result
          = vps_bounce_remote_result ("mx.example.net", "192.0.2.7", c->reply, c->len);
      g_autofree char *want
          = g_strconcat ("host mx.example.net[192.0.2.7] said: ", c->result, NULL);
      g_autoptr (Dsn) d = NULL;

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      g_assert_cmpstr (result, ==, want);
      add_rcpt (env, "bob@example.org", 0, VPS_RCPT_FAILED, result);
      d = build (env, original_ascii, F);
      g_assert_cmpstr (field (d, 1, "diagnostic-code"), ==, c->diagnostic);
      g_assert_cmpstr (field (d, 1, "remote-mta"), ==, "dns; mx.example.net");
      g_assert_null (field (d, 1, "bcc"));
      g_assert_null (header (d, "Bcc"));
      /* the text part carries the same, wrapped */
      g_assert_true (g_utf8_validate (d->text, -1, NULL));
    }
}

/* A result that did not come through vps_bounce_remote_result (an envelope
 * built in memory) is cleaned just the same. */
static void
test_hostile_raw_result (void)
{
  g_autofree char *long_host = g_strnfill (2000, 'h');
  g_autofree char *long_host_result = g_strdup_printf ("host %s said: 550 5.1.1 x", long_host);
  g_autofree char *long_reply = g_strnfill (20000, 'r');
  g_autofree char *long_words = NULL;
  g_autoptr (GString) words = g_string_new ("550 5.1.1");
  struct
  {
    const char *result;
    const char *remote_mta;
    const char *diagnostic_prefix;
  } cases[] = {
    { "550 5.1.1 x\r\nX-Injected: 1", NULL, "X-vsmtpd; 550 5.1.1 x X-Injected: 1" },
    { "host evil\r\nX-Injected: 1 said: 550 5.1.1 x", NULL, "X-vsmtpd; host evil X-Injected" },
    { long_host_result, NULL, "X-vsmtpd; host hhhh" },
    { "host bad<name> said: 550 5.1.1 x", NULL, "X-vsmtpd; host bad<name> said:" },
    { "host [192.0.2.1] said: 550 5.1.1 x", NULL, "X-vsmtpd; host [192.0.2.1]" },
    { "host a[192.0.2.1 said: 550 5.1.1 x", NULL, "X-vsmtpd; host a[192.0.2.1" },
    { "host ok.example[192.0.2.1] said: 550 5.1.1 x", "dns; ok.example", "smtp; 550 5.1.1 x" },
    { long_reply, NULL, "X-vsmtpd; rrrr" },
    { NULL, NULL, NULL },
  };

  for (guint i = 0; i < 400; i++)
    g_string_append (words, " word");
  long_words = g_string_free (g_steal_pointer (&words), FALSE);
  cases[G_N_ELEMENTS (cases) - 1].result = long_words;
  cases[G_N_ELEMENTS (cases) - 1].diagnostic_prefix = "X-vsmtpd; 550 5.1.1 word word";
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
      g_autoptr (Dsn) d = NULL;
      const char *diag;

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      add_rcpt (env, "bob@example.org", 0, VPS_RCPT_FAILED, cases[i].result);
      d = build (env, original_ascii, F);
      g_assert_cmpstr (field (d, 1, "remote-mta"), ==, cases[i].remote_mta);
      g_assert_null (field (d, 1, "x-injected"));
      diag = field (d, 1, "diagnostic-code");
      g_assert_true (g_str_has_prefix (diag, cases[i].diagnostic_prefix));
      /* the diagnostic type and "; " are not counted in the limit */
      g_assert_cmpuint (strlen (diag), <=, VPS_BOUNCE_MAX_DIAGNOSTIC + strlen ("X-vsmtpd; "));
    }
}

typedef struct
{
  const char *name;
  const char *addr;
  const char *reply;
  const char *result;
} RemoteCase;

static const RemoteCase remote_cases[] = {
  { "mx.example.net", "192.0.2.7", "250 ok", "host mx.example.net[192.0.2.7] said: 250 ok" },
  { "mx.example.net", NULL, "250 ok", "host mx.example.net said: 250 ok" },
  { NULL, "192.0.2.7", "250 ok", "host 192.0.2.7[192.0.2.7] said: 250 ok" },
  { NULL, "2001:db8::25", "250 ok", "host 2001:db8::25[2001:db8::25] said: 250 ok" },
  { "evil\r\nX: y", "192.0.2.7\n", "250 ok", "host evil??X:?y[192.0.2.7?] said: 250 ok" },
  { "mx example]", "[1", "250 ok", "host mx?example?[?1] said: 250 ok" },
  { "mx.example.net", "192.0.2.7", NULL, "host mx.example.net[192.0.2.7] said: " },
};

static void
test_remote_result (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (remote_cases); i++)
    {
      const RemoteCase *c = &remote_cases[i];
      g_autofree char *result = vps_bounce_remote_result (c->name, c->addr, c->reply, -1);

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      g_assert_cmpstr (result, ==, c->result);
    }
  /* the reply is cut at the limit, at a character boundary */
  {
    g_autoptr (GString) reply = g_string_new ("550 ");
    g_autofree char *result = NULL;
    const char *said;

    for (guint i = 0; i < VPS_BOUNCE_MAX_DIAGNOSTIC; i++)
      g_string_append (reply, "\xc3\xa9");
    result = vps_bounce_remote_result ("mx", NULL, reply->str, (gssize)reply->len);
    said = strstr (result, "said: ") + strlen ("said: ");
    g_assert_cmpuint (strlen (said), <=, VPS_BOUNCE_MAX_DIAGNOSTIC);
    g_assert_cmpuint (strlen (said), >=, VPS_BOUNCE_MAX_DIAGNOSTIC - 1);
    g_assert_true (g_utf8_validate (said, -1, NULL));
  }
}

/* ---- Status ------------------------------------------------------------------ */

typedef struct
{
  const char *result;
  VpsBounceKind kind;
  const char *status;
} StatusCase;

static const StatusCase status_cases[] = {
  { "550 5.1.1 user unknown", F, "5.1.1" },
  { "550 5.1.10 detail", F, "5.1.10" },
  { "550  text without enhanced code", F, "5.0.0" },
  { "554 text", F, "5.0.0" },
  { "550 4.1.1 classes differ", F, "5.0.0" },
  { "550 5.01.1 leading zero", F, "5.0.0" },
  { "no code at all", F, "5.0.0" },
  { NULL, F, "5.0.0" },
  { "", F, "5.0.0" },
  /* given up after temporary failures: a failure may say 4.X.X (RFC 3463) */
  { "451 4.4.1 connection timed out", F, "4.4.1" },
  { "421 text", F, "4.0.0" },
  /* a class that does not fit the action takes the action's */
  { "250 2.0.0 odd", F, "5.0.0" },
  { "451 4.7.1 greylisted", D, "4.7.1" },
  { "450 text", D, "4.0.0" },
  { "550 5.1.1 odd", D, "4.1.1" },
  { NULL, D, "4.0.0" },
  { "250 2.0.0 ok", S, "2.0.0" },
  { "250 2.6.0 queued", S, "2.6.0" },
  { "250 ok", S, "2.0.0" },
  { "550 5.1.1 odd", S, "2.1.1" },
  { "host mx[192.0.2.1] said: 552 5.2.2 full", F, "5.2.2" },
  { "host mx[192.0.2.1] said: 552-5.2.2 full", F, "5.2.2" },
  { "5.7.1 enhanced code alone", F, "5.7.1" },
};

static void
test_status (void)
{
  static const VpsRcptState states[] = { VPS_RCPT_FAILED, VPS_RCPT_DEFERRED, VPS_RCPT_DELIVERED };

  for (gsize i = 0; i < G_N_ELEMENTS (status_cases); i++)
    {
      const StatusCase *c = &status_cases[i];
      g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
      g_autoptr (Dsn) d = NULL;

      g_test_message ("case %" G_GSIZE_FORMAT ": %s", i, c->result ? c->result : "(null)");
      add_rcpt (env, "bob@example.org", N_SUCCESS | N_FAILURE | N_DELAY, states[c->kind],
                c->result);
      d = build (env, NULL, c->kind);
      g_assert_cmpstr (field (d, 1, "status"), ==, c->status);
    }
}

/* ---- xtext in the report -------------------------------------------------------- */

typedef struct
{
  const char *envid;
  const char *envid_field;
  const char *orcpt;
  const char *orcpt_field; /* NULL: left out */
  const char *address;
  const char *final_field;
} XtextCase;

static const XtextCase xtext_cases[] = {
  { "QQ314159", "QQ314159", "rfc822;bob@example.org", "rfc822;bob@example.org", "bob@example.org",
    "rfc822;bob@example.org" },
  /* printable ASCII stays as is, '+' and '=' included */
  { "a+b=c;d", "a+b=c;d", "rfc822;b+x=y@example.org", "rfc822;b+x=y@example.org", "b+x@example.org",
    "rfc822;b+x@example.org" },
  { "with space", "with space", "rfc822;\"john doe\"@example.org",
    "rfc822;\"john doe\"@example.org", "\"john doe\"@example.org",
    "rfc822;\"john doe\"@example.org" },
  /* outside printable ASCII (or blanks at an end): xtext */
  { "caf\xc3\xa9+1", "caf+C3+A9+2B1", "rfc822;j\xc3\xb6rg+x@example.org",
    "rfc822;j+C3+B6rg+2Bx@example.org",
    "j\xc3\xb6rg@b\xc3\xbc"
    "cher.example",
    "rfc822;j+C3+B6rg@b+C3+BCcher.example" },
  { " lead", "+20lead", "rfc822; bob@example.org", "rfc822;+20bob@example.org", "bob@example.org",
    "rfc822;bob@example.org" },
  { "tab\there", "tab+09here", "utf-8;\xce\xb5@example.org", "utf-8;+CE+B5@example.org",
    "bob@example.org", "rfc822;bob@example.org" },
  /* an ORCPT whose type is not an atom, or without one, is left out */
  { "x", "x", "rfc 822;bob@example.org", NULL, "bob@example.org", "rfc822;bob@example.org" },
  { "x", "x", "bob@example.org", NULL, "bob@example.org", "rfc822;bob@example.org" },
  { "x", "x", ";bob@example.org", NULL, "bob@example.org", "rfc822;bob@example.org" },
  { "x", "x", "rfc822;", NULL, "bob@example.org", "rfc822;bob@example.org" },
  { "x", "x", "r\r\n;bob@example.org", NULL, "bob@example.org", "rfc822;bob@example.org" },
};

static void
test_xtext (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (xtext_cases); i++)
    {
      const XtextCase *c = &xtext_cases[i];
      g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
      VpsQueueRcpt *r = add_rcpt (env, c->address, 0, VPS_RCPT_FAILED, "550 5.1.1 no");
      g_autoptr (Dsn) d = NULL;

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      env->envid = g_strdup (c->envid);
      r->orcpt = g_strdup (c->orcpt);
      d = build (env, original_ascii, F);
      g_assert_cmpstr (field (d, 0, "original-envelope-id"), ==, c->envid_field);
      g_assert_cmpstr (field (d, 1, "original-recipient"), ==, c->orcpt_field);
      g_assert_cmpstr (field (d, 1, "final-recipient"), ==, c->final_field);
    }
}

/* An ORCPT whose encoded form cannot fit one line is left out (the field
 * is optional); the DSN is still built. */
static void
test_xtext_orcpt_too_long (void)
{
  g_autoptr (VpsEnvelope) env = failed_envelope ();
  VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, 0);
  g_autofree char *addr = g_strnfill (400, '\x80');
  g_autoptr (Dsn) d = NULL;

  r->orcpt = g_strconcat ("rfc822;", addr, NULL);
  d = build (env, NULL, F);
  g_assert_null (field (d, 1, "original-recipient"));
  g_assert_cmpstr (field (d, 1, "final-recipient"), ==, "rfc822;bob@example.org");
}

/* ---- 8-bit ------------------------------------------------------------------- */

static void
test_8bit (void)
{
  static const char original_8bit[] = "Subject: caf\xc3\xa9\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n";
  struct
  {
    const char *sender;
    const char *rcpt;
    const char *ret;
    const char *original;
    const char *result;
    gboolean needs_8bit;
    const char *text_charset;
  } cases[] = {
    { "alice@example.com", "bob@example.org", NULL, original_ascii, "550 5.1.1 no", FALSE,
      "us-ascii" },
    /* carried as is inside message/rfc822 */
    { "alice@example.com", "bob@example.org", NULL, original_8bit, "550 5.1.1 no", TRUE,
      "us-ascii" },
    /* headers only, 8-bit in them */
    { "alice@example.com", "bob@example.org", "HDRS", original_8bit, "550 5.1.1 no", TRUE,
      "us-ascii" },
    /* UTF-8 addresses: in To: and the text part */
    { "j\xc3\xb6rg@example.com", "bob@example.org", NULL, original_ascii, "550 5.1.1 no", TRUE,
      "us-ascii" },
    { "alice@example.com", "\xce\xb5@example.org", NULL, original_ascii, "550 5.1.1 no", TRUE,
      "utf-8" },
    /* a UTF-8 reply: kept in the words, '?' in the report */
    { "alice@example.com", "bob@example.org", NULL, NULL,
      "host mx[192.0.2.1] said: 550 5.1.1 caf\xc3\xa9", TRUE, "utf-8" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (VpsEnvelope) env = envelope_new (cases[i].sender);
      g_autoptr (Dsn) d = NULL;
      GMimeObject *text;

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      env->ret = g_strdup (cases[i].ret);
      add_rcpt (env, cases[i].rcpt, 0, VPS_RCPT_FAILED, cases[i].result);
      d = build (env, cases[i].original, F);
      g_assert_cmpint (d->needs_8bit, ==, cases[i].needs_8bit);
      g_assert_cmpstr (
          g_mime_object_get_header (GMIME_OBJECT (d->report), "Content-Transfer-Encoding"), ==,
          cases[i].needs_8bit ? "8bit" : "7bit");
      text = g_mime_multipart_get_part (d->report, 0);
      g_assert_cmpstr (g_mime_object_get_content_type_parameter (text, "charset"), ==,
                       cases[i].text_charset);
      g_assert_cmpstr (g_mime_object_get_header (text, "Content-Transfer-Encoding"), ==,
                       strcmp (cases[i].text_charset, "utf-8") == 0 ? "8bit" : "7bit");
    }
}

/* ---- the rest ------------------------------------------------------------------ */

static void
test_unique (void)
{
  g_autoptr (VpsEnvelope) env = failed_envelope ();
  g_autoptr (Dsn) a = build (env, original_ascii, F);
  g_autoptr (Dsn) b = build (env, original_ascii, F);
  const char *ba = g_mime_object_get_content_type_parameter (GMIME_OBJECT (a->report), "boundary");
  const char *bb = g_mime_object_get_content_type_parameter (GMIME_OBJECT (b->report), "boundary");

  g_assert_cmpstr (header (a, "Message-ID"), !=, header (b, "Message-ID"));
  g_assert_cmpstr (ba, !=, bb);
  g_assert_cmpuint (strlen (ba), >=, 32);
  g_assert_null (strstr (original_ascii, ba));
}

static void
test_kind_name (void)
{
  g_assert_cmpstr (vps_bounce_kind_name (F), ==, "failure");
  g_assert_cmpstr (vps_bounce_kind_name (D), ==, "delay");
  g_assert_cmpstr (vps_bounce_kind_name (S), ==, "success");
}

/* No field of the header or the report spans a line it should not: the
 * longest values still fit under 998 octets per line. */
static void
test_longest_values (void)
{
  g_autoptr (VpsEnvelope) env = envelope_new (NULL);
  g_autoptr (GString) addr = g_string_new (NULL);
  g_autofree char *mta = g_strnfill (VPS_BOUNCE_MAX_HOSTNAME, 'm');
  g_autofree char *envid = g_strnfill (100, (char)0xc0);
  g_autofree char *reporting = g_strconcat ("dns; ", mta, NULL);
  VpsBounceOptions options = { .reporting_mta = mta, .now = T_NOW };
  g_autoptr (Dsn) d = NULL;

  /* an address of the largest size, every octet of it to be xtext-encoded */
  while (addr->len + 3 <= VPS_BOUNCE_MAX_ADDRESS)
    g_string_append (addr, "\xc3\xa9");
  g_string_append_c (addr, '@');
  g_free (env->sender);
  env->sender = g_strdup (addr->str);
  env->envid = g_strdup (envid);
  add_rcpt (env, addr->str, 0, VPS_RCPT_FAILED, NULL);
  d = build_full (env, original_ascii, -1, F, &options);
  g_assert_true (g_str_has_prefix (field (d, 1, "final-recipient"), "rfc822;+C3+A9"));
  g_assert_cmpuint (strlen (field (d, 1, "final-recipient")), ==, 7 + 3 * (addr->len - 1) + 1);
  g_assert_cmpstr (field (d, 0, "reporting-mta"), ==, reporting);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_mime_init ();

  g_test_add_func ("/mta/bounce/hostile/reply", test_hostile_reply);
  g_test_add_func ("/mta/bounce/hostile/raw-result", test_hostile_raw_result);
  g_test_add_func ("/mta/bounce/hostile/longest-values", test_longest_values);
  g_test_add_func ("/mta/bounce/remote-result", test_remote_result);
  g_test_add_func ("/mta/bounce/status", test_status);
  g_test_add_func ("/mta/bounce/xtext/fields", test_xtext);
  g_test_add_func ("/mta/bounce/xtext/orcpt-too-long", test_xtext_orcpt_too_long);
  g_test_add_func ("/mta/bounce/8bit", test_8bit);
  g_test_add_func ("/mta/bounce/unique", test_unique);
  g_test_add_func ("/mta/bounce/kind-name", test_kind_name);
  return g_test_run ();
}
