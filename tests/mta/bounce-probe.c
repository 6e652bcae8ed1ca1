/* SPDX-License-Identifier: MIT
 *
 * bounce-probe.c — writes the DSNs of a fixed set of envelopes into a
 * directory, for tests/integration/test_bounce_format.py to read with an
 * independent parser (Python's email package).  One file per case,
 * NAME.eml; one line per case on stdout: "NAME needs_8bit=0|1".  The
 * cases (their names and contents) are the contract with that test.
 *
 * Usage: bounce-probe DIR
 */
#include "mta/bounce.h"
#include "proto/smtp/smtp.h"

#include <stdio.h>
#include <string.h>

#define PROBE_MTA "mx.example.org"
/* 2025-11-28T21:40:00Z */
#define PROBE_RECEIVED G_GINT64_CONSTANT (1764366000000000)
#define PROBE_NOW (PROBE_RECEIVED + G_TIME_SPAN_HOUR)

static const char small_original[]
    = "Received: from client.example.com (client.example.com [192.0.2.10])\r\n"
      "\tby mx.example.org (vsmtpd) with ESMTP id 0006431E2F3A4B5C\r\n"
      "From: Alice <alice@example.com>\r\n"
      "To: Bob <bob@example.org>\r\n"
      "Subject: lunch\r\n"
      "Message-ID: <lunch-1@example.com>\r\n"
      "MIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n"
      "\r\n"
      "Shall we have lunch at the caf\xc3\xa9?\r\n"
      "--\r\n"
      "Alice\r\n";

static VpsEnvelope *
base_envelope (const char *sender)
{
  VpsEnvelope *env = vps_envelope_new ();

  env->id = g_strdup ("0006431E2F3A4B5C");
  g_free (env->sender);
  env->sender = g_strdup (sender);
  env->received = PROBE_RECEIVED;
  return env;
}

static VpsQueueRcpt *
add (VpsEnvelope *env, const char *address, const char *orcpt, guint notify, VpsRcptState state,
     const char *result)
{
  VpsQueueRcpt *r = vps_envelope_add_rcpt (env, address, orcpt, notify);

  r->state = state;
  r->result = g_strdup (result);
  r->updated = PROBE_RECEIVED + 30 * G_TIME_SPAN_MINUTE;
  return r;
}

static GBytes *
big_original (void)
{
  GString *s = g_string_new ("From: Alice <alice@example.com>\r\n"
                             "To: Bob <bob@example.org>\r\n"
                             "Subject: the big one\r\n"
                             "Message-ID: <big-1@example.com>\r\n"
                             "\r\n");

  while (s->len <= VPS_BOUNCE_SIZE_LIMIT)
    g_string_append (s, "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789\r\n");
  return g_string_free_to_bytes (s);
}

static gboolean
write_case (const char *dir, const char *name, VpsEnvelope *env, GBytes *original,
            VpsBounceKind kind)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) dsn = NULL;
  g_autofree char *path = NULL;
  g_autofree char *file = g_strconcat (name, ".eml", NULL);
  gboolean eight = FALSE;
  gsize len;
  const char *data;

  dsn = vps_bounce_build (env, original, kind, PROBE_MTA, PROBE_NOW, &eight, &error);
  if (dsn == NULL)
    {
      g_printerr ("bounce-probe: %s: %s\n", name, error->message);
      return FALSE;
    }
  data = g_bytes_get_data (dsn, &len);
  path = g_build_filename (dir, file, NULL);
  if (!g_file_set_contents (path, data, (gssize)len, &error))
    {
      g_printerr ("bounce-probe: %s\n", error->message);
      return FALSE;
    }
  printf ("%s needs_8bit=%d\n", name, eight ? 1 : 0);
  return TRUE;
}

int
main (int argc, char **argv)
{
  const char *dir;
  g_autoptr (GBytes) small = g_bytes_new_static (small_original, sizeof small_original - 1);
  g_autoptr (GBytes) big = big_original ();
  gboolean ok = TRUE;

  if (argc != 2)
    {
      g_printerr ("usage: bounce-probe DIR\n");
      return 2;
    }
  dir = argv[1];

  /* failure-full: a remote and a local failure, ENVID, ORCPT, the whole
   * 8-bit original; a delivered and a NOTIFY=NEVER recipient left out. */
  {
    g_autoptr (VpsEnvelope) env = base_envelope ("alice@example.com");

    env->envid = g_strdup ("QQ314159");
    env->ret = g_strdup ("FULL");
    add (env, "bob@example.org", "rfc822;Bob@Example.org", 0, VPS_RCPT_FAILED,
         "host mx.example.org[192.0.2.25] said: 550 5.1.1 <bob@example.org>: Recipient "
         "address rejected: User unknown");
    add (env, "carol@example.org", NULL, SMTP_NOTIFY_FAILURE, VPS_RCPT_FAILED,
         "550 5.1.1 unsafe address in the mailbox path");
    add (env, "dave@example.org", NULL, 0, VPS_RCPT_DELIVERED, "250 2.0.0 delivered to maildir");
    add (env, "erin@example.org", NULL, SMTP_NOTIFY_NEVER, VPS_RCPT_FAILED, "550 5.1.1 no");
    ok = write_case (dir, "failure-full", env, small, VPS_BOUNCE_FAILURE) && ok;
  }
  /* failure-hdrs: RET=HDRS, headers only */
  {
    g_autoptr (VpsEnvelope) env = base_envelope ("alice@example.com");

    env->ret = g_strdup ("HDRS");
    add (env, "bob@example.org", NULL, 0, VPS_RCPT_FAILED,
         "host mx.example.org[192.0.2.25] said: 552 5.2.2 mailbox full");
    ok = write_case (dir, "failure-hdrs", env, small, VPS_BOUNCE_FAILURE) && ok;
  }
  /* failure-big: no RET, over the size limit: headers only */
  {
    g_autoptr (VpsEnvelope) env = base_envelope ("alice@example.com");

    add (env, "bob@example.org", NULL, 0, VPS_RCPT_FAILED,
         "host mx.example.org[192.0.2.25] said: 552 5.3.4 message too big");
    ok = write_case (dir, "failure-big", env, big, VPS_BOUNCE_FAILURE) && ok;
  }
  /* delay: a deferred recipient (default NOTIFY) */
  {
    g_autoptr (VpsEnvelope) env = base_envelope ("alice@example.com");

    add (env, "bob@example.org", NULL, 0, VPS_RCPT_DEFERRED,
         "host mx.example.org[192.0.2.25] said: 451 4.7.1 greylisted, try again later");
    add (env, "carol@example.org", NULL, 0, VPS_RCPT_DELIVERED, "250 2.0.0 delivered to maildir");
    ok = write_case (dir, "delay", env, small, VPS_BOUNCE_DELAY) && ok;
  }
  /* success: NOTIFY=SUCCESS,FAILURE delivered locally */
  {
    g_autoptr (VpsEnvelope) env = base_envelope ("alice@example.com");

    env->envid = g_strdup ("track-42");
    add (env, "bob@example.org", "rfc822;bob@example.org",
         SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, VPS_RCPT_DELIVERED,
         "250 2.0.0 delivered to maildir");
    ok = write_case (dir, "success", env, small, VPS_BOUNCE_SUCCESS) && ok;
  }
  /* hostile: a remote reply with CR LF (a header injection attempt), NUL
   * and invalid 8-bit; ENVID and ORCPT with characters that need xtext */
  {
    g_autoptr (VpsEnvelope) env = base_envelope ("alice@example.com");
    static const char reply[] = "550 5.7.1 go away\r\nInjected: yes\r\n\r\n--x\0tail\xff\xfe end";
    g_autofree char *result = vps_bounce_remote_result ("evil.example.net\r\nX: y", "192.0.2.66",
                                                        reply, sizeof reply - 1);

    env->envid = g_strdup ("caf\xc3\xa9+=1");
    add (env, "bob@example.org",
         "rfc822;b\xc3\xb6"
         "b+x=y@example.org",
         0, VPS_RCPT_FAILED, result);
    ok = write_case (dir, "hostile", env, small, VPS_BOUNCE_FAILURE) && ok;
  }
  /* utf8: a UTF-8 sender and recipient (SMTPUTF8), no original */
  {
    g_autoptr (VpsEnvelope) env = base_envelope ("j\xc3\xb6rg@b\xc3\xbc"
                                                 "cher.example");

    env->smtputf8 = TRUE;
    add (env, "\xce\xb5\xce\xbb\xce\xad\xce\xbd\xce\xb7@example.org", NULL, 0, VPS_RCPT_FAILED,
         "550 5.1.1 no such user");
    ok = write_case (dir, "utf8", env, NULL, VPS_BOUNCE_FAILURE) && ok;
  }
  return ok ? 0 : 1;
}
