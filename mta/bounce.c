/* SPDX-License-Identifier: MIT
 *
 * bounce.c — delivery status notifications (the contract is in bounce.h).
 *
 * The DSN is written into a GString by hand, not with GMime: every octet of
 * it must be ours to control (CRLF everywhere, the original carried byte for
 * byte inside message/rfc822 with its 8-bit text untouched, no re-encoding),
 * and nothing here parses MIME — the original is only split at its first
 * empty line.  Everything that comes from the envelope or from a remote
 * server passes through one of the cleaning helpers below before it is
 * written; the writers never see raw strings.
 */
#include "mta/bounce-private.h"

#include <string.h>

#include "proto/mail/mail-header.h"
#include "proto/mail/mail-param.h"
#include "proto/mail/mail-reply.h"
#include "proto/smtp/smtp.h"

/* clang-format off */
G_DEFINE_QUARK (vps-bounce-error-quark, vps_bounce_error)
/* clang-format on */

typedef struct
{
  const char *name;
  const char *action;           /* RFC 3464 §2.3.3 */
  char klass;                   /* the status class of the action */
  const char *subject;          /* Postfix's subjects */
  const char *returned_headers; /* Content-Description of the third part */
  const char *no_result;        /* a recipient without a result */
} KindInfo;

static const KindInfo kinds[] = {
  [VPS_BOUNCE_FAILURE] = { "failure", "failed", '5', "Undelivered Mail Returned to Sender",
                           "Undelivered Message Headers", "delivery failed" },
  [VPS_BOUNCE_DELAY] = { "delay", "delayed", '4', "Delayed Mail (still being retried)",
                         "Delayed Message Headers", "delivery deferred" },
  [VPS_BOUNCE_SUCCESS] = { "success", "delivered", '2', "Successful Mail Delivery Report",
                           "Delivered Message Headers", "delivered" },
};

const char *
vps_bounce_kind_name (VpsBounceKind kind)
{
  g_return_val_if_fail ((guint)kind < G_N_ELEMENTS (kinds), "unknown");
  return kinds[kind].name;
}

/* ---- who gets a notification ------------------------------------------- */

static gboolean
sender_is_null (const VpsEnvelope *env)
{
  /* The envelope writes <> as ""; "<>" itself is refused by every parser,
   * but an envelope built in memory should not turn it into an address. */
  return env->sender == NULL || env->sender[0] == '\0' || strcmp (env->sender, "<>") == 0;
}

gboolean
vps_bounce_due (const VpsEnvelope *env, const VpsQueueRcpt *rcpt, VpsBounceKind kind)
{
  guint notify;

  g_return_val_if_fail (env != NULL, FALSE);
  g_return_val_if_fail (rcpt != NULL, FALSE);
  g_return_val_if_fail ((guint)kind < G_N_ELEMENTS (kinds), FALSE);

  if (sender_is_null (env))
    return FALSE;
  notify = rcpt->notify;
  /* NEVER wins over anything it might have been combined with: the
   * envelope reader refuses the mix, but silence is the safe reading. */
  if (notify & SMTP_NOTIFY_NEVER)
    return FALSE;
  if (notify == SMTP_NOTIFY_DEFAULT)
    notify = SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
  switch (kind)
    {
      case VPS_BOUNCE_FAILURE:
        return rcpt->state == VPS_RCPT_FAILED && (notify & SMTP_NOTIFY_FAILURE) != 0;
      case VPS_BOUNCE_DELAY:
        return rcpt->state == VPS_RCPT_DEFERRED && (notify & SMTP_NOTIFY_DELAY) != 0;
      case VPS_BOUNCE_SUCCESS:
        return rcpt->state == VPS_RCPT_DELIVERED && (notify & SMTP_NOTIFY_SUCCESS) != 0;
      default:
        g_return_val_if_reached (FALSE);
    }
}

guint
vps_bounce_count_due (const VpsEnvelope *env, VpsBounceKind kind)
{
  guint n = 0;

  g_return_val_if_fail (env != NULL, 0);
  for (guint i = 0; env->rcpts != NULL && i < env->rcpts->len; i++)
    if (vps_bounce_due (env, g_ptr_array_index (env->rcpts, i), kind))
      n++;
  return n;
}

/* ---- the report ---------------------------------------------------------- */

static gboolean
orcpt_field (const char *orcpt, GString *out)
{
  const char *semi = orcpt != NULL ? strchr (orcpt, ';') : NULL;
  g_autofree char *type = NULL;
  g_autofree char *addr = NULL;
  g_autofree char *value = NULL;
  gsize tlen;

  if (semi == NULL || semi == orcpt || semi[1] == '\0')
    return FALSE;
  tlen = (gsize)(semi - orcpt);
  if (tlen > BOUNCE_MAX_ADDR_TYPE)
    return FALSE;
  for (gsize i = 0; i < tlen; i++)
    if (!g_ascii_isalnum (orcpt[i]) && orcpt[i] != '-')
      return FALSE;
  type = g_strndup (orcpt, tlen);
  addr = vps_bounce_report_value (semi + 1);
  value = g_strdup_printf ("%s;%s", type, addr);
  /* Optional field (RFC 3464 §2.3.1): one that cannot fit a line (an
   * ORCPT near its 500 octets, all of it to be encoded) is left out. */
  if (strlen ("Original-Recipient: ") + strlen (value) > BOUNCE_MAX_LINE)
    return FALSE;
  vps_bounce_append_field (out, "Original-Recipient", value);
  return TRUE;
}

static void
append_recipient_report (GString *status, GString *text, const VpsQueueRcpt *r, VpsBounceKind kind,
                         gint64 retry_until)
{
  g_autofree char *remote_mta = NULL;
  const char *reply = vps_bounce_result_parse (r->result, &remote_mta);
  g_autofree char *final = vps_bounce_report_value (r->address);
  g_autofree char *final_value = g_strdup_printf ("rfc822;%s", final);
  g_autofree char *diag = NULL;
  g_autofree char *human = NULL;
  g_autofree char *line = NULL;
  char code[MAIL_MAX_ENHANCED_CODE + 1];

  vps_bounce_result_status (reply, kind, code);

  g_string_append (status, "\r\n");
  orcpt_field (r->orcpt, status);
  vps_bounce_append_field (status, "Final-Recipient", final_value);
  vps_bounce_append_field (status, "Action", kinds[kind].action);
  vps_bounce_append_field (status, "Status", code);
  if (remote_mta != NULL)
    {
      g_autofree char *mta = g_strdup_printf ("dns; %s", remote_mta);

      vps_bounce_append_field (status, "Remote-MTA", mta);
    }
  if (reply != NULL)
    {
      g_autofree char *cleaned
          = vps_bounce_clean (reply, strlen (reply), FALSE, VPS_BOUNCE_MAX_DIAGNOSTIC);

      /* RFC 3464 §2.3.6: "smtp" for what an SMTP server said; a local
       * result gets our own diagnostic type, as Postfix's "X-Postfix". */
      if (cleaned[0] != '\0')
        diag = g_strdup_printf ("%s; %s", remote_mta != NULL ? "smtp" : "X-vsmtpd", cleaned);
      if (diag != NULL)
        vps_bounce_append_field (status, "Diagnostic-Code", diag);
    }
  if (r->updated > 0)
    {
      g_autofree char *date = vps_bounce_format_date (r->updated);

      vps_bounce_append_field (status, "Last-Attempt-Date", date);
    }
  if (kind == VPS_BOUNCE_DELAY)
    {
      g_autofree char *date = vps_bounce_format_date (retry_until);

      vps_bounce_append_field (status, "Will-Retry-Until", date);
    }

  /* The human-readable paragraph: the address and the result as they
   * are (UTF-8 kept in the text part), cleaned to one line. */
  human = r->result != NULL
              ? vps_bounce_clean (r->result, strlen (r->result), TRUE, VPS_BOUNCE_MAX_DIAGNOSTIC)
              : g_strdup (kinds[kind].no_result);
  line = g_strdup_printf ("<%s>: %s", r->address, human);
  g_string_append (text, "\r\n");
  vps_bounce_append_wrapped (text, line, 4);
}

/* The words before the recipients' paragraphs (Postfix's templates are the
 * model); paragraphs are separated by '\n'. */
static void
append_intro (GString *text, VpsBounceKind kind, const char *mta, gboolean full, gboolean returned,
              gint64 retry_until)
{
  g_autofree char *until = vps_bounce_format_date (retry_until);
  g_autofree char *intro = NULL;
  g_auto (GStrv) paragraphs = NULL;
  const char *attached = !returned ? ""
                         : full    ? " It is attached below."
                                   : " Its header section is attached below.";

  switch (kind)
    {
      case VPS_BOUNCE_FAILURE:
        intro = g_strdup_printf (
            "Your message could not be delivered to one or more recipients.%s\n"
            "For further assistance, please write to postmaster at this host, and include "
            "this report.%s",
            attached, returned ? " You can delete your own text from the returned message." : "");
        break;
      case VPS_BOUNCE_DELAY:
        intro = g_strdup_printf (
            "THIS IS A WARNING ONLY. YOU DO NOT NEED TO SEND YOUR MESSAGE AGAIN.\n"
            "Your message could not be delivered yet to the recipients below. The mail system "
            "keeps trying until %s; if it gives up, you will be told.%s",
            until, attached);
        break;
      case VPS_BOUNCE_SUCCESS:
        intro = g_strdup_printf (
            "Your message was delivered to the recipients listed below. If it went into a "
            "mailbox, you will not hear about it again; a system further on may still report "
            "on its own delivery.%s",
            attached);
        break;
      default:
        g_return_if_reached ();
    }
  g_string_append_printf (text, "This is the mail system at host %s.\r\n", mta);
  paragraphs = g_strsplit (intro, "\n", -1);
  for (guint i = 0; paragraphs[i] != NULL; i++)
    {
      g_string_append (text, "\r\n");
      vps_bounce_append_wrapped (text, paragraphs[i], 0);
    }
  g_string_append (text, "\r\n                   The mail system\r\n");
}

static char *
random_hex (guint n_words)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < n_words; i++)
    g_string_append_printf (s, "%08X", g_random_int ());
  return g_string_free (s, FALSE);
}

static char *
pick_boundary (const char *data, gsize len)
{
  char *boundary = NULL;

  for (guint i = 0; i < BOUNCE_BOUNDARY_TRIES; i++)
    {
      g_autofree char *hex = random_hex (4);

      g_free (boundary);
      boundary = g_strdup_printf ("vps-bounce-%s", hex);
      if (data == NULL || memmem (data, len, boundary, strlen (boundary)) == NULL)
        break;
    }
  return boundary;
}

/* Everything that must hold before a byte is written (see bounce.h). */
static gboolean
check_envelope (const VpsEnvelope *env, VpsBounceKind kind, const char *mta, GError **error)
{
  if (sender_is_null (env))
    {
      g_set_error_literal (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_NULL_SENDER,
                           "the sender is <>: no notification");
      return FALSE;
    }
  if (vps_bounce_count_due (env, kind) == 0)
    {
      g_set_error (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_NOTHING_DUE,
                   "no recipient is due a %s notification", kinds[kind].name);
      return FALSE;
    }
  if (!vps_bounce_check_hostname (mta, error)
      || !vps_bounce_check_address (env->sender, "sender", 0, error))
    return FALSE;
  for (guint i = 0; i < env->rcpts->len; i++)
    {
      const VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);

      if (vps_bounce_due (env, r, kind)
          && !vps_bounce_check_address (r->address, "recipient", i, error))
        return FALSE;
    }
  if (env->envid != NULL && env->envid[0] != '\0')
    {
      g_autofree char *v = vps_bounce_report_value (env->envid);

      /* RFC 3461 §4.4 bounds an ENVID to 100 octets of xtext; the queue
       * holds it decoded, so one that cannot fit its line is not from SMTP
       * (and the field is not optional). */
      if (strlen ("Original-Envelope-Id: ") + strlen (v) > BOUNCE_MAX_LINE)
        {
          g_set_error_literal (error, VPS_BOUNCE_ERROR, VPS_BOUNCE_ERROR_INVALID,
                               "ENVID too long for its field");
          return FALSE;
        }
    }
  return TRUE;
}

/* The per-message fields of the report (RFC 3464 §2.2). */
static void
append_message_report (GString *status, const VpsEnvelope *env, const char *mta)
{
  g_autofree char *reporting = g_strdup_printf ("dns; %s", mta);

  if (env->envid != NULL && env->envid[0] != '\0')
    {
      g_autofree char *v = vps_bounce_report_value (env->envid);

      vps_bounce_append_field (status, "Original-Envelope-Id", v);
    }
  vps_bounce_append_field (status, "Reporting-MTA", reporting);
  if (env->id != NULL && vps_queue_valid_id (env->id))
    vps_bounce_append_field (status, "X-Vsmtpd-Queue-ID", env->id);
  if (env->received > 0)
    {
      g_autofree char *v = vps_bounce_format_date (env->received);

      vps_bounce_append_field (status, "Arrival-Date", v);
    }
}

/* The third part: the original whole, or its header section. */
static void
append_original (GString *body, VpsBounceKind kind, const char *data, gsize len, gboolean full,
                 gsize limit)
{
  g_autoptr (GString) headers = NULL;

  if (full)
    {
      g_string_append (body, "Content-Description: Undelivered Message\r\n"
                             "Content-Type: message/rfc822\r\n");
      g_string_append_printf (body, "Content-Transfer-Encoding: %s\r\n\r\n",
                              vps_bounce_has_8bit (data, len) ? "8bit" : "7bit");
      g_string_append_len (body, data, (gssize)len);
      return;
    }
  headers = g_string_new (NULL);
  vps_bounce_append_headers (headers, data, len, limit);
  g_string_append_printf (body, "Content-Description: %s\r\n", kinds[kind].returned_headers);
  g_string_append (body, "Content-Type: text/rfc822-headers\r\n");
  g_string_append_printf (body, "Content-Transfer-Encoding: %s\r\n\r\n",
                          vps_bounce_has_8bit (headers->str, headers->len) ? "8bit" : "7bit");
  g_string_append_len (body, headers->str, (gssize)headers->len);
}

/* The header of the notification itself. */
static void
append_header (GString *msg, const VpsEnvelope *env, VpsBounceKind kind, const char *mta,
               gint64 now, const char *boundary)
{
  g_autofree char *date = vps_bounce_format_date (now);
  g_autofree char *rand = random_hex (2);
  g_autofree char *msgid
      = g_strdup_printf ("<%s.%s.%" G_GINT64_MODIFIER "X.%s@%s>",
                         env->id != NULL && vps_queue_valid_id (env->id) ? env->id : "0",
                         kinds[kind].name, (guint64)now, rand, mta);
  g_autofree char *from = g_strdup_printf ("Mail Delivery System <MAILER-DAEMON@%s>", mta);
  g_autofree char *ctype = g_strdup_printf (
      "multipart/report; report-type=delivery-status; boundary=\"%s\"", boundary);

  vps_bounce_append_field (msg, "Date", date);
  vps_bounce_append_field (msg, "From", from);
  vps_bounce_append_field (msg, "To", env->sender);
  vps_bounce_append_field (msg, "Subject", kinds[kind].subject);
  vps_bounce_append_field (msg, "Message-ID", msgid);
  vps_bounce_append_field (msg, "Auto-Submitted", "auto-replied");
  vps_bounce_append_field (msg, "MIME-Version", "1.0");
  vps_bounce_append_field (msg, "Content-Type", ctype);
}

GBytes *
vps_bounce_build_full (const VpsEnvelope *env, GBytes *original, VpsBounceKind kind,
                       const VpsBounceOptions *options, gboolean *needs_8bit, GError **error)
{
  const char *mta;
  const char *odata = NULL;
  gsize olen = 0;
  gsize limit;
  gint64 retry_until;
  gboolean full = FALSE;
  gboolean eight;
  g_autoptr (GString) text = NULL;
  g_autoptr (GString) status = NULL;
  g_autoptr (GString) body = NULL;
  g_autoptr (GString) msg = NULL;
  g_autofree char *boundary = NULL;

  g_return_val_if_fail (env != NULL, NULL);
  g_return_val_if_fail ((guint)kind < G_N_ELEMENTS (kinds), NULL);
  g_return_val_if_fail (options != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  mta = options->reporting_mta;
  if (!check_envelope (env, kind, mta, error))
    return NULL;
  limit = options->size_limit > 0 ? options->size_limit : VPS_BOUNCE_SIZE_LIMIT;
  if (original != NULL)
    {
      odata = g_bytes_get_data (original, &olen);
      if (odata == NULL)
        olen = 0;
      full = kind == VPS_BOUNCE_FAILURE
             && (env->ret == NULL || g_ascii_strcasecmp (env->ret, "HDRS") != 0) && olen <= limit
             && vps_bounce_original_is_clean (odata, olen);
    }
  retry_until = options->retry_until;
  if (retry_until <= 0)
    retry_until = (env->received > 0 ? env->received : options->now) + VPS_BOUNCE_DEFAULT_LIFETIME;
  boundary = pick_boundary (odata, olen);

  /* 1. the words, 2. the report — one paragraph and one block per recipient */
  text = g_string_new (NULL);
  append_intro (text, kind, mta, full, original != NULL, retry_until);
  status = g_string_new (NULL);
  append_message_report (status, env, mta);
  for (guint i = 0; i < env->rcpts->len; i++)
    {
      const VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);

      if (vps_bounce_due (env, r, kind))
        append_recipient_report (status, text, r, kind, retry_until);
    }

  body = g_string_new ("This is a MIME-encapsulated message.\r\n");
  eight = vps_bounce_has_8bit (text->str, text->len);
  g_string_append_printf (body, "\r\n--%s\r\n", boundary);
  g_string_append (body, "Content-Description: Notification\r\n");
  g_string_append_printf (body, "Content-Type: text/plain; charset=%s\r\n",
                          eight ? "utf-8" : "us-ascii");
  g_string_append_printf (body, "Content-Transfer-Encoding: %s\r\n\r\n", eight ? "8bit" : "7bit");
  g_string_append_len (body, text->str, (gssize)text->len);
  g_string_append_printf (body, "\r\n--%s\r\n", boundary);
  g_string_append (body, "Content-Description: Delivery report\r\n"
                         "Content-Type: message/delivery-status\r\n\r\n");
  g_string_append_len (body, status->str, (gssize)status->len);
  /* 3. the original */
  if (original != NULL)
    {
      g_string_append_printf (body, "\r\n--%s\r\n", boundary);
      append_original (body, kind, odata, olen, full, limit);
    }
  g_string_append_printf (body, "\r\n--%s--\r\n", boundary);

  msg = g_string_new (NULL);
  append_header (msg, env, kind, mta, options->now, boundary);
  /* The outer label says what the parts hold (RFC 2046 §5.1.1). */
  eight = vps_bounce_has_8bit (body->str, body->len) || vps_bounce_has_8bit (msg->str, msg->len);
  vps_bounce_append_field (msg, "Content-Transfer-Encoding", eight ? "8bit" : "7bit");
  g_string_append (msg, "\r\n");
  g_string_append_len (msg, body->str, (gssize)body->len);
  if (needs_8bit != NULL)
    *needs_8bit = eight;
  return g_string_free_to_bytes (g_steal_pointer (&msg));
}

GBytes *
vps_bounce_build (const VpsEnvelope *env, GBytes *original, VpsBounceKind kind,
                  const char *reporting_mta, gint64 now_us, gboolean *needs_8bit, GError **error)
{
  VpsBounceOptions options = { .reporting_mta = reporting_mta, .now = now_us };

  return vps_bounce_build_full (env, original, kind, &options, needs_8bit, error);
}
