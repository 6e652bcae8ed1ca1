/* SPDX-License-Identifier: MIT
 *
 * test-bounce.c — delivery status notifications (mta/bounce.h): every
 * due / not-due rule in one table; the structure of the message for each
 * kind and RET, read back with GMime (an independent MIME parser); the size
 * limit and originals that cannot travel whole; every error branch.
 * test-bounce-text.c has hostile input, xtext, Status and 8-bit.  Every
 * DSN built is also checked for its wire form (bounce-test-util.h).
 */
#include "tests/mta/bounce-test-util.h"

/* ---- who gets a notification ------------------------------------------- */

typedef struct
{
  const char *sender;
  VpsRcptState state;
  guint notify;
  VpsBounceKind kind;
  gboolean due;
} DueCase;

static const DueCase due_cases[] = {
  /* default NOTIFY: failure and delay, never success */
  { A, VPS_RCPT_FAILED, 0, F, TRUE },
  { A, VPS_RCPT_DEFERRED, 0, D, TRUE },
  { A, VPS_RCPT_DELIVERED, 0, S, FALSE },
  /* the state must match the kind */
  { A, VPS_RCPT_PENDING, 0, F, FALSE },
  { A, VPS_RCPT_PENDING, 0, D, FALSE },
  { A, VPS_RCPT_PENDING, N_SUCCESS | N_FAILURE | N_DELAY, S, FALSE },
  { A, VPS_RCPT_DEFERRED, 0, F, FALSE },
  { A, VPS_RCPT_FAILED, 0, D, FALSE },
  { A, VPS_RCPT_DELIVERED, 0, F, FALSE },
  { A, VPS_RCPT_DELIVERED, N_DELAY, D, FALSE },
  { A, VPS_RCPT_FAILED, N_SUCCESS, S, FALSE },
  /* explicit NOTIFY: exactly what was asked */
  { A, VPS_RCPT_DELIVERED, N_SUCCESS, S, TRUE },
  { A, VPS_RCPT_FAILED, N_SUCCESS, F, FALSE },
  { A, VPS_RCPT_DEFERRED, N_SUCCESS, D, FALSE },
  { A, VPS_RCPT_FAILED, N_FAILURE, F, TRUE },
  { A, VPS_RCPT_DEFERRED, N_FAILURE, D, FALSE },
  { A, VPS_RCPT_DELIVERED, N_FAILURE, S, FALSE },
  { A, VPS_RCPT_DEFERRED, N_DELAY, D, TRUE },
  { A, VPS_RCPT_FAILED, N_DELAY, F, FALSE },
  { A, VPS_RCPT_DELIVERED, N_SUCCESS | N_FAILURE, S, TRUE },
  { A, VPS_RCPT_FAILED, N_SUCCESS | N_FAILURE, F, TRUE },
  { A, VPS_RCPT_DEFERRED, N_SUCCESS | N_FAILURE, D, FALSE },
  { A, VPS_RCPT_DEFERRED, N_FAILURE | N_DELAY, D, TRUE },
  /* NEVER: nothing, even mixed with others (the reader refuses the mix) */
  { A, VPS_RCPT_FAILED, N_NEVER, F, FALSE },
  { A, VPS_RCPT_DEFERRED, N_NEVER, D, FALSE },
  { A, VPS_RCPT_DELIVERED, N_NEVER, S, FALSE },
  { A, VPS_RCPT_FAILED, N_NEVER | N_FAILURE, F, FALSE },
  { A, VPS_RCPT_DELIVERED, N_NEVER | N_SUCCESS, S, FALSE },
  /* the null sender: never, whatever was asked */
  { "", VPS_RCPT_FAILED, 0, F, FALSE },
  { "", VPS_RCPT_DEFERRED, 0, D, FALSE },
  { "", VPS_RCPT_FAILED, N_FAILURE, F, FALSE },
  { "", VPS_RCPT_DELIVERED, N_SUCCESS, S, FALSE },
  { NULL, VPS_RCPT_FAILED, N_FAILURE, F, FALSE },
  { "<>", VPS_RCPT_FAILED, N_FAILURE, F, FALSE },
};

static void
test_due (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (due_cases); i++)
    {
      const DueCase *c = &due_cases[i];
      g_autoptr (VpsEnvelope) env = envelope_new (c->sender);
      VpsQueueRcpt *r = add_rcpt (env, "bob@example.org", c->notify, c->state, NULL);

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      g_assert_cmpint (vps_bounce_due (env, r, c->kind), ==, c->due);
      g_assert_cmpuint (vps_bounce_count_due (env, c->kind), ==, c->due ? 1 : 0);
    }
}

static void
test_due_only_those (void)
{
  g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
  g_autoptr (Dsn) d = NULL;

  add_rcpt (env, "r1@example.org", 0, VPS_RCPT_FAILED, "550 5.1.1 one");
  add_rcpt (env, "r2@example.org", N_NEVER, VPS_RCPT_FAILED, "550 5.1.1 two");
  add_rcpt (env, "r3@example.org", 0, VPS_RCPT_DELIVERED, "250 2.0.0 ok");
  add_rcpt (env, "r4@example.org", 0, VPS_RCPT_DEFERRED, "451 4.3.0 later");
  add_rcpt (env, "r5@example.org", N_FAILURE, VPS_RCPT_FAILED, "554 5.7.1 five");
  add_rcpt (env, "r6@example.org", N_SUCCESS, VPS_RCPT_FAILED, "550 5.1.1 six");
  g_assert_cmpuint (vps_bounce_count_due (env, F), ==, 2);
  g_assert_cmpuint (vps_bounce_count_due (env, D), ==, 1);
  g_assert_cmpuint (vps_bounce_count_due (env, S), ==, 0);

  d = build (env, original_ascii, F);
  g_assert_cmpuint (d->blocks->len, ==, 3);
  g_assert_cmpstr (field (d, 1, "final-recipient"), ==, "rfc822;r1@example.org");
  g_assert_cmpstr (field (d, 2, "final-recipient"), ==, "rfc822;r5@example.org");
  g_assert_nonnull (strstr (d->flat, "<r1@example.org>: 550 5.1.1 one"));
  g_assert_nonnull (strstr (d->flat, "<r5@example.org>: 554 5.7.1 five"));
  g_assert_null (strstr (d->flat, "r2@"));
  g_assert_null (strstr (d->flat, "r3@"));
  g_assert_null (strstr (d->flat, "r6@"));
}

/* ---- errors ---------------------------------------------------------------- */

static void
assert_build_error (const VpsEnvelope *env, VpsBounceKind kind, const char *mta, gint code)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) orig = g_bytes_new_static (original_ascii, sizeof original_ascii - 1);
  gboolean eight = 2;
  g_autoptr (GBytes) bytes = vps_bounce_build (env, orig, kind, mta, T_NOW, &eight, &error);

  g_assert_null (bytes);
  g_assert_error (error, VPS_BOUNCE_ERROR, code);
  g_assert_cmpint (eight, ==, 2);
}

static void
test_error_null_sender (void)
{
  const char *senders[] = { "", NULL, "<>" };

  for (gsize i = 0; i < G_N_ELEMENTS (senders); i++)
    {
      g_autoptr (VpsEnvelope) env = envelope_new (senders[i]);

      add_rcpt (env, "bob@example.org", N_SUCCESS | N_FAILURE | N_DELAY, VPS_RCPT_FAILED,
                "550 5.1.1 no");
      assert_build_error (env, F, MTA, VPS_BOUNCE_ERROR_NULL_SENDER);
    }
}

static void
test_error_nothing_due (void)
{
  g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");

  assert_build_error (env, F, MTA, VPS_BOUNCE_ERROR_NOTHING_DUE); /* no recipient at all */
  add_rcpt (env, "bob@example.org", 0, VPS_RCPT_DELIVERED, "250 2.0.0 ok");
  add_rcpt (env, "carol@example.org", N_NEVER, VPS_RCPT_FAILED, "550 5.1.1 no");
  assert_build_error (env, F, MTA, VPS_BOUNCE_ERROR_NOTHING_DUE);
  assert_build_error (env, D, MTA, VPS_BOUNCE_ERROR_NOTHING_DUE);
  assert_build_error (env, S, MTA, VPS_BOUNCE_ERROR_NOTHING_DUE);
}

static void
test_error_reporting_mta (void)
{
  g_autofree char *long_name = g_strnfill (VPS_BOUNCE_MAX_HOSTNAME + 1, 'a');
  const char *names[] = { "",
                          NULL,
                          "mx example.org",
                          "mx.example.org\r\nX-Evil: 1",
                          "mx@example.org",
                          "m\xc3\xa9.example.org",
                          "<mx>",
                          long_name };

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autoptr (VpsEnvelope) env = failed_envelope ();

      assert_build_error (env, F, names[i], VPS_BOUNCE_ERROR_INVALID);
    }
}

static void
test_error_addresses (void)
{
  g_autofree char *long_addr = g_strnfill (VPS_BOUNCE_MAX_ADDRESS + 1, 'a');
  const char *bad[]
      = { "a\r\nBcc: victim@example.net", "a\n@example.com", "a\x7f@example.com", "a\t@example.com",
          "\xff\xfe@example.com",         long_addr };

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (VpsEnvelope) as_sender = envelope_new (bad[i]);
      g_autoptr (VpsEnvelope) as_rcpt = envelope_new ("alice@example.com");

      add_rcpt (as_sender, "bob@example.org", 0, VPS_RCPT_FAILED, "550 5.1.1 no");
      assert_build_error (as_sender, F, MTA, VPS_BOUNCE_ERROR_INVALID);
      add_rcpt (as_rcpt, "bob@example.org", 0, VPS_RCPT_FAILED, "550 5.1.1 no");
      add_rcpt (as_rcpt, bad[i], 0, VPS_RCPT_FAILED, "550 5.1.1 no");
      assert_build_error (as_rcpt, F, MTA, VPS_BOUNCE_ERROR_INVALID);
    }
}

static void
test_error_envid (void)
{
  g_autoptr (VpsEnvelope) env = failed_envelope ();

  /* 400 octets that all need encoding: 1200 octets of xtext, over a line */
  env->envid = g_strnfill (400, '\x01');
  assert_build_error (env, F, MTA, VPS_BOUNCE_ERROR_INVALID);
}

/* ---- the structure ------------------------------------------------------- */

static void
assert_common_header (const Dsn *d, const char *subject)
{
  const char *msgid = header (d, "Message-ID");

  g_assert_cmpstr (header (d, "Subject"), ==, subject);
  g_assert_cmpstr (header (d, "From"), ==, "Mail Delivery System <MAILER-DAEMON@" MTA ">");
  g_assert_cmpstr (header (d, "To"), ==, "alice@example.com");
  g_assert_cmpstr (header (d, "Date"), ==, "Fri, 28 Nov 2025 22:40:00 +0000");
  g_assert_cmpstr (header (d, "Auto-Submitted"), ==, "auto-replied");
  g_assert_cmpstr (header (d, "MIME-Version"), ==, "1.0");
  g_assert_nonnull (msgid);
  g_assert_true (g_str_has_prefix (msgid, "<" ID "."));
  g_assert_true (g_str_has_suffix (msgid, "@" MTA ">"));
  /* the per-message block */
  g_assert_cmpstr (field (d, 0, "reporting-mta"), ==, "dns; " MTA);
  g_assert_cmpstr (field (d, 0, "arrival-date"), ==, "Fri, 28 Nov 2025 21:40:00 +0000");
  g_assert_cmpstr (field (d, 0, "x-vsmtpd-queue-id"), ==, ID);
}

/* The third part holds the original byte for byte, followed by the closing
 * delimiter. */
static void
assert_original_whole (const Dsn *d, const char *original, gsize olen)
{
  gsize len;
  const char *data = g_bytes_get_data (d->bytes, &len);
  const char *mark = "Content-Type: message/rfc822\r\n";
  const char *part = g_strstr_len (data, (gssize)len, mark);
  const char *start;
  GMimeObject *third = g_mime_multipart_get_part (d->report, 2);
  GMimeMessage *inner;

  g_assert_cmpstr (d->third_type, ==, "message/rfc822");
  g_assert_true (GMIME_IS_MESSAGE_PART (third));
  inner = g_mime_message_part_get_message (GMIME_MESSAGE_PART (third));
  g_assert_nonnull (inner);
  g_assert_nonnull (part);
  start = strstr (part, "\r\n\r\n");
  g_assert_nonnull (start);
  start += 4;
  g_assert_cmpuint ((gsize)(data + len - start), >, olen);
  g_assert_cmpmem (start, olen, original, olen);
  g_assert_true (g_str_has_prefix (start + olen, "\r\n--"));
}

static void
test_structure_failure (void)
{
  g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
  g_autoptr (Dsn) d = NULL;
  VpsQueueRcpt *r;

  env->envid = g_strdup ("QQ314159");
  env->ret = g_strdup ("FULL");
  r = add_rcpt (env, "bob@example.org", 0, VPS_RCPT_FAILED,
                "host mx.example.org[192.0.2.25] said: 550 5.1.1 <bob@example.org>: user unknown");
  r->orcpt = g_strdup ("rfc822;Bob@Example.org");
  add_rcpt (env, "carol@example.org", 0, VPS_RCPT_FAILED, "550 5.1.1 unsafe local part");
  d = build (env, original_ascii, F);

  assert_common_header (d, "Undelivered Mail Returned to Sender");
  g_assert_false (d->needs_8bit);
  g_assert_cmpstr (g_mime_object_get_header (GMIME_OBJECT (d->report), "Content-Transfer-Encoding"),
                   ==, "7bit");
  g_assert_cmpstr (field (d, 0, "original-envelope-id"), ==, "QQ314159");
  g_assert_cmpuint (d->blocks->len, ==, 3);
  /* the remote failure */
  g_assert_cmpstr (field (d, 1, "original-recipient"), ==, "rfc822;Bob@Example.org");
  g_assert_cmpstr (field (d, 1, "final-recipient"), ==, "rfc822;bob@example.org");
  g_assert_cmpstr (field (d, 1, "action"), ==, "failed");
  g_assert_cmpstr (field (d, 1, "status"), ==, "5.1.1");
  g_assert_cmpstr (field (d, 1, "remote-mta"), ==, "dns; mx.example.org");
  g_assert_cmpstr (field (d, 1, "diagnostic-code"), ==,
                   "smtp; 550 5.1.1 <bob@example.org>: user unknown");
  g_assert_cmpstr (field (d, 1, "last-attempt-date"), ==, "Fri, 28 Nov 2025 22:10:00 +0000");
  g_assert_null (field (d, 1, "will-retry-until"));
  /* the local failure: no Remote-MTA, our own diagnostic type */
  g_assert_null (field (d, 2, "original-recipient"));
  g_assert_cmpstr (field (d, 2, "final-recipient"), ==, "rfc822;carol@example.org");
  g_assert_null (field (d, 2, "remote-mta"));
  g_assert_cmpstr (field (d, 2, "diagnostic-code"), ==, "X-vsmtpd; 550 5.1.1 unsafe local part");
  /* the words */
  g_assert_nonnull (strstr (d->flat, "This is the mail system at host " MTA "."));
  g_assert_nonnull (strstr (d->flat, "could not be delivered"));
  g_assert_nonnull (strstr (d->flat, "It is attached below."));
  /* a recipient's paragraph wraps with an indent */
  g_assert_nonnull (strstr (d->text, "<bob@example.org>: host mx.example.org[192.0.2.25] said: "
                                     "550 5.1.1\r\n    <bob@example.org>: user unknown"));
  /* the original, whole */
  assert_original_whole (d, original_ascii, sizeof original_ascii - 1);
}

/* RET decides for failures only: FULL and none give the message, HDRS its
 * header section; delays and successes carry the headers whatever RET. */
typedef struct
{
  VpsBounceKind kind;
  const char *ret;
  gboolean whole;
} RetCase;

static const RetCase ret_cases[] = {
  { F, NULL, TRUE },    { F, "FULL", TRUE },  { F, "full", TRUE },  { F, "HDRS", FALSE },
  { F, "hdrs", FALSE }, { D, NULL, FALSE },   { D, "FULL", FALSE }, { D, "HDRS", FALSE },
  { S, NULL, FALSE },   { S, "FULL", FALSE }, { S, "HDRS", FALSE },
};

static void
test_structure_ret (void)
{
  static const char *const subjects[]
      = { "Undelivered Mail Returned to Sender", "Delayed Mail (still being retried)",
          "Successful Mail Delivery Report" };
  static const char *const actions[] = { "failed", "delayed", "delivered" };
  static const VpsRcptState states[] = { VPS_RCPT_FAILED, VPS_RCPT_DEFERRED, VPS_RCPT_DELIVERED };

  for (gsize i = 0; i < G_N_ELEMENTS (ret_cases); i++)
    {
      const RetCase *c = &ret_cases[i];
      g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
      g_autoptr (Dsn) d = NULL;

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      env->ret = g_strdup (c->ret);
      add_rcpt (env, "bob@example.org", N_SUCCESS | N_FAILURE | N_DELAY, states[c->kind], NULL);
      d = build (env, original_ascii, c->kind);
      assert_common_header (d, subjects[c->kind]);
      g_assert_cmpstr (field (d, 1, "action"), ==, actions[c->kind]);
      if (c->whole)
        assert_original_whole (d, original_ascii, sizeof original_ascii - 1);
      else
        {
          g_assert_cmpstr (d->third_type, ==, "text/rfc822-headers");
          g_assert_cmpmem (d->third_content, strlen (d->third_content), original_ascii,
                           header_section_len (original_ascii));
          g_assert_null (strstr (g_bytes_get_data (d->bytes, NULL), "Shall we"));
          g_assert_nonnull (strstr (d->flat, "Its header section is attached below."));
        }
    }
}

static void
test_structure_delay (void)
{
  g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
  g_autoptr (Dsn) d = NULL;
  g_autoptr (Dsn) d2 = NULL;
  VpsBounceOptions options
      = { .reporting_mta = MTA, .now = T_NOW, .retry_until = T_RECEIVED + 2 * G_TIME_SPAN_DAY };

  add_rcpt (env, "bob@example.org", 0, VPS_RCPT_DEFERRED,
            "host mx.example.org[192.0.2.25] said: 451 4.7.1 greylisted");
  add_rcpt (env, "carol@example.org", 0, VPS_RCPT_DEFERRED, NULL);
  d = build (env, original_ascii, D);
  g_assert_cmpuint (d->blocks->len, ==, 3);
  g_assert_cmpstr (field (d, 1, "action"), ==, "delayed");
  g_assert_cmpstr (field (d, 1, "status"), ==, "4.7.1");
  g_assert_cmpstr (field (d, 1, "remote-mta"), ==, "dns; mx.example.org");
  g_assert_cmpstr (field (d, 1, "diagnostic-code"), ==, "smtp; 451 4.7.1 greylisted");
  /* the default lifetime: five days after arrival */
  g_assert_cmpstr (field (d, 1, "will-retry-until"), ==, "Wed, 3 Dec 2025 21:40:00 +0000");
  g_assert_cmpstr (field (d, 2, "status"), ==, "4.0.0");
  g_assert_null (field (d, 2, "diagnostic-code"));
  g_assert_cmpstr (field (d, 2, "will-retry-until"), ==, "Wed, 3 Dec 2025 21:40:00 +0000");
  g_assert_nonnull (strstr (d->flat, "WARNING ONLY"));
  g_assert_nonnull (strstr (d->flat, "<carol@example.org>: delivery deferred"));

  d2 = build_full (env, original_ascii, -1, D, &options);
  g_assert_cmpstr (field (d2, 1, "will-retry-until"), ==, "Sun, 30 Nov 2025 21:40:00 +0000");
  g_assert_nonnull (strstr (d2->flat, "Sun, 30 Nov 2025 21:40:00 +0000"));
}

static void
test_structure_success (void)
{
  g_autoptr (VpsEnvelope) env = envelope_new ("alice@example.com");
  g_autoptr (Dsn) d = NULL;

  env->envid = g_strdup ("track-42");
  add_rcpt (env, "bob@example.org", N_SUCCESS, VPS_RCPT_DELIVERED,
            "250 2.0.0 delivered to maildir");
  add_rcpt (env, "carol@example.org", N_SUCCESS | N_FAILURE, VPS_RCPT_DELIVERED,
            "host mx.example.org[192.0.2.25] said: 250 2.6.0 Ok: queued as 4B3A5C0123");
  add_rcpt (env, "dave@example.org", 0, VPS_RCPT_DELIVERED, "250 2.0.0 delivered to maildir");
  d = build (env, original_ascii, S);
  assert_common_header (d, "Successful Mail Delivery Report");
  g_assert_cmpstr (field (d, 0, "original-envelope-id"), ==, "track-42");
  g_assert_cmpuint (d->blocks->len, ==, 3);
  g_assert_cmpstr (field (d, 1, "action"), ==, "delivered");
  g_assert_cmpstr (field (d, 1, "status"), ==, "2.0.0");
  g_assert_cmpstr (field (d, 1, "diagnostic-code"), ==, "X-vsmtpd; 250 2.0.0 delivered to maildir");
  g_assert_cmpstr (field (d, 2, "status"), ==, "2.6.0");
  g_assert_cmpstr (field (d, 2, "remote-mta"), ==, "dns; mx.example.org");
  g_assert_null (field (d, 2, "will-retry-until"));
  g_assert_nonnull (strstr (d->flat, "was delivered"));
  g_assert_cmpstr (d->third_type, ==, "text/rfc822-headers");
}

static void
test_structure_no_original (void)
{
  g_autoptr (VpsEnvelope) env = failed_envelope ();
  g_autoptr (Dsn) d = build (env, NULL, F);

  g_assert_cmpint (g_mime_multipart_get_count (d->report), ==, 2);
  g_assert_null (d->third_type);
  g_assert_null (strstr (d->flat, "attached"));
}

/* ---- the size limit and originals that cannot travel whole ----------------- */

static char *
original_of_size (gsize size)
{
  GString *s = g_string_new ("From: a@example.com\r\nSubject: big\r\n\r\n");

  while (s->len + 2 <= size)
    {
      gsize n = MIN (size - s->len - 2, 70);

      for (gsize i = 0; i < n; i++)
        g_string_append_c (s, 'x');
      g_string_append (s, "\r\n");
    }
  g_assert_cmpuint (s->len, ==, size);
  return g_string_free (s, FALSE);
}

static void
test_size_limit (void)
{
  struct
  {
    gsize size;
    gsize limit; /* 0: the default */
    gboolean whole;
  } cases[] = {
    { VPS_BOUNCE_SIZE_LIMIT, 0, TRUE },
    { VPS_BOUNCE_SIZE_LIMIT + 1, 0, FALSE },
    { 1000, 1000, TRUE },
    { 1001, 1000, FALSE },
    { 5 * VPS_BOUNCE_SIZE_LIMIT, 0, FALSE },
    { 200000, 300000, TRUE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (VpsEnvelope) env = failed_envelope ();
      g_autofree char *original = original_of_size (cases[i].size);
      VpsBounceOptions options
          = { .reporting_mta = MTA, .now = T_NOW, .size_limit = cases[i].limit };
      g_autoptr (Dsn) d = build_full (env, original, -1, F, &options);

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      if (cases[i].whole)
        assert_original_whole (d, original, cases[i].size);
      else
        {
          g_assert_cmpstr (d->third_type, ==, "text/rfc822-headers");
          g_assert_cmpstr (d->third_content, ==, "From: a@example.com\r\nSubject: big\r\n");
          g_assert_cmpuint (g_bytes_get_size (d->bytes), <, 4000);
        }
    }
}

/* An original that is not 8-bit clean goes back as its headers only: NUL,
 * bare CR or LF (also in the header section), a line over 998 octets. */
static void
test_original_not_clean (void)
{
  g_autofree char *line998 = g_strnfill (998, 'y');
  g_autofree char *line999 = g_strnfill (999, 'y');
  g_autofree char *ok998 = g_strconcat ("Subject: s\r\n\r\n", line998, "\r\n", NULL);
  g_autofree char *long999 = g_strconcat ("Subject: s\r\n\r\n", line999, "\r\n", NULL);
  struct
  {
    const char *data;
    gsize len;
    gboolean whole;
    const char *headers;
  } cases[] = {
    { ok998, strlen (ok998), TRUE, NULL },
    { LIT ("Subject: s\r\n\r\nbody without final CRLF"), TRUE, NULL },
    { long999, strlen (long999), FALSE, "Subject: s\r\n" },
    { LIT ("Subject: s\r\n\r\nnul\0inside\r\n"), FALSE, "Subject: s\r\n" },
    { LIT ("Subject: s\r\n\r\nbare\nlf\r\n"), FALSE, "Subject: s\r\n" },
    { LIT ("Subject: s\r\n\r\nbare\rcr\r\n"), FALSE, "Subject: s\r\n" },
    { LIT ("Subject: s\r\n\r\nends in a bare CR\r"), FALSE, "Subject: s\r\n" },
    { LIT ("Subject: s\nX-A: 1\n\nbody\n"), FALSE, "Subject: s\r\nX-A: 1\r\n" },
    { LIT ("Subject: s\rX-A: 1\r\n\r\nbody\r\n"), FALSE, "Subject: s X-A: 1\r\n" },
    { LIT ("Subject: a\0b\r\n\r\nbody\r\n"), FALSE, "Subject: a?b\r\n" },
    { LIT ("no header at all, no line end"), TRUE, NULL },
    { LIT ("\r\nbody only\r\n"), TRUE, NULL },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (VpsEnvelope) env = failed_envelope ();
      VpsBounceOptions options = { .reporting_mta = MTA, .now = T_NOW };
      g_autoptr (Dsn) d = build_full (env, cases[i].data, (gssize)cases[i].len, F, &options);

      g_test_message ("case %" G_GSIZE_FORMAT, i);
      if (cases[i].whole)
        assert_original_whole (d, cases[i].data, cases[i].len);
      else
        {
          g_assert_cmpstr (d->third_type, ==, "text/rfc822-headers");
          g_assert_cmpstr (d->third_content, ==, cases[i].headers);
        }
    }
}

/* Returned headers are bounded too: cut before the field that crosses the
 * limit (a folded field is never split), long lines broken under 998. */
static void
test_headers_bounded (void)
{
  g_autoptr (VpsEnvelope) env = failed_envelope ();
  g_autoptr (GString) orig = g_string_new ("Subject: first\r\n");
  g_autofree char *long_value = g_strnfill (5000, 'v');
  g_autofree char *junk = g_strnfill (1500, (char)0x80);
  VpsBounceOptions options = { .reporting_mta = MTA, .now = T_NOW, .size_limit = 100 };
  g_autoptr (Dsn) d = NULL;
  g_autoptr (Dsn) d2 = NULL;
  g_autoptr (GString) utf8 = g_string_new (NULL);

  env->ret = g_strdup ("HDRS");
  g_string_append (orig, "X-Folded: 0123456789 0123456789 0123456789 0123456789\r\n"
                         "\t0123456789 0123456789 0123456789 0123456789\r\n"
                         "\t0123456789 0123456789 0123456789 0123456789\r\n"
                         "X-Last: never\r\n\r\nbody\r\n");
  d = build_full (env, orig->str, -1, F, &options);
  g_assert_cmpstr (d->third_content, ==, "Subject: first\r\n");

  /* one 5000-octet line and one of 2-octet UTF-8 characters */
  for (guint i = 0; i < 2000; i++)
    g_string_append (utf8, "\xc3\xa9");
  g_string_printf (orig, "X-Long: %s\r\nX-Utf8: %s\r\nX-Junk: %s\r\n\r\nbody\r\n", long_value,
                   utf8->str, junk);
  options.size_limit = 0;
  d2 = build_full (env, orig->str, -1, F, &options);
  g_assert_cmpstr (d2->third_type, ==, "text/rfc822-headers");
  g_assert_true (g_str_has_prefix (d2->third_content, "X-Long: vvv"));
  g_assert_nonnull (strstr (d2->third_content, "\r\n vvv"));
  g_assert_true (d2->needs_8bit);
  /* the UTF-8 line is broken between characters: still valid UTF-8 */
  {
    const char *u = strstr (d2->third_content, "X-Utf8: ");
    const char *end = strstr (u, "\r\nX-Junk");

    g_assert_true (g_utf8_validate (u, end - u, NULL));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_mime_init ();

  g_test_add_func ("/mta/bounce/due/table", test_due);
  g_test_add_func ("/mta/bounce/due/only-those-due", test_due_only_those);
  g_test_add_func ("/mta/bounce/error/null-sender", test_error_null_sender);
  g_test_add_func ("/mta/bounce/error/nothing-due", test_error_nothing_due);
  g_test_add_func ("/mta/bounce/error/reporting-mta", test_error_reporting_mta);
  g_test_add_func ("/mta/bounce/error/addresses", test_error_addresses);
  g_test_add_func ("/mta/bounce/error/envid", test_error_envid);
  g_test_add_func ("/mta/bounce/structure/failure", test_structure_failure);
  g_test_add_func ("/mta/bounce/structure/ret", test_structure_ret);
  g_test_add_func ("/mta/bounce/structure/delay", test_structure_delay);
  g_test_add_func ("/mta/bounce/structure/success", test_structure_success);
  g_test_add_func ("/mta/bounce/structure/no-original", test_structure_no_original);
  g_test_add_func ("/mta/bounce/original/size-limit", test_size_limit);
  g_test_add_func ("/mta/bounce/original/not-clean", test_original_not_clean);
  g_test_add_func ("/mta/bounce/original/headers-bounded", test_headers_bounded);
  return g_test_run ();
}
