/* SPDX-License-Identifier: MIT
 *
 * fuzz-mail.c — libFuzzer target for every parser in proto/mail.
 *
 * Input layout: byte 0 selects MailParseFlags (low 4 bits) and the reply
 * code used for construction; the rest is the payload, fed as is to every
 * parser (path, path prefix, mailbox, ESMTP parameters as a string and as a
 * NUL-separated argv, xtext, reply parse and construction, header checks,
 * fold and unfold).  Besides "no crash, no leak, no UB" it checks the
 * invariants the callers rely on, and aborts when one breaks:
 *   - a parsed path's canonical form parses again to an equal path;
 *   - a path prefix never consumes more than it was given;
 *   - xtext never decodes to a control character, and decode(encode(x)) == x
 *     for printable x;
 *   - a parsed reply formats to bytes that parse back to the same reply;
 *   - a folded header has no line over 998 octets and unfolds to its value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mail/mail-address.h"
#include "proto/mail/mail-header.h"
#include "proto/mail/mail-param.h"
#include "proto/mail/mail-reply.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do                                                                                               \
    {                                                                                              \
      if (!(cond))                                                                                 \
        abort ();                                                                                  \
    }                                                                                              \
  while (0)

static void
fuzz_paths (const char *s, gsize len, guint flags)
{
  g_autoptr (MailPath) p = mail_path_parse (s, (gssize)len, flags, NULL);
  g_autoptr (MailPath) m = mail_mailbox_parse (s, (gssize)len, flags, NULL);
  gsize consumed = 0;
  g_autoptr (MailPath) pre = mail_path_parse_prefix (s, len, flags, &consumed, NULL);

  if (pre != NULL)
    CHECK (consumed > 0 && consumed <= len);

  for (MailPath *cur = p; cur != NULL; cur = cur == p ? m : NULL)
    {
      const char *domain = mail_path_get_domain (cur);
      guint again_flags = (flags & ~MAIL_PARSE_LENIENT) | MAIL_PARSE_ALLOW_NULL;
      g_autoptr (MailPath) again = NULL;
      g_autoptr (GError) error = NULL;

      /* '_' in a domain is the only lenient leftover in a canonical form */
      if (strchr (domain, '_') != NULL)
        again_flags |= MAIL_PARSE_LENIENT;
      again = mail_path_parse (mail_path_get_path (cur), -1, again_flags, &error);
      /* Re-quoting can lengthen a lenient local part past a limit; anything
       * else must come back. */
      if (again == NULL)
        {
          CHECK (error != NULL);
          CHECK (error->code == MAIL_ERROR_LOCAL_PART_TOO_LONG
                 || error->code == MAIL_ERROR_PATH_TOO_LONG);
          continue;
        }
      CHECK (mail_path_equal (cur, again));
      CHECK (strcmp (mail_path_get_local (cur), mail_path_get_local (again)) == 0);
      CHECK (strlen (mail_path_get_local_raw (cur)) <= MAIL_MAX_LOCAL_PART);
      CHECK (strlen (domain) <= MAIL_MAX_DOMAIN);
      CHECK (strpbrk (mail_path_get_address (cur), "\r\n") == NULL);
    }
}

static void
fuzz_params (const char *s, gsize len, guint flags)
{
  g_autoptr (MailParams) p = mail_params_parse (s, (gssize)len, flags, NULL);
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (MailParams) pa = NULL;
  gsize start = 0;

  if (p != NULL)
    {
      g_autofree char *str = mail_params_to_string (p);
      g_autoptr (MailParams) again = mail_params_parse (str, -1, flags, NULL);

      CHECK (again != NULL);
      CHECK (mail_params_get_n (again) == mail_params_get_n (p));
    }

  /* the milter form: NUL-separated strings */
  for (gsize i = 0; i <= len && argv->len < 64; i++)
    {
      if (i == len || s[i] == '\0')
        {
          g_ptr_array_add (argv, g_strndup (s + start, i - start));
          start = i + 1;
        }
    }
  g_ptr_array_add (argv, NULL);
  pa = mail_params_parse_argv ((const char *const *)argv->pdata, flags, NULL);
}

static void
fuzz_xtext (const char *s, gsize len)
{
  g_autofree char *dec = mail_xtext_decode (s, (gssize)len, NULL);
  g_autofree char *enc = mail_xtext_encode (s, (gssize)len);
  g_autofree char *back = NULL;
  gboolean printable = TRUE;

  if (dec != NULL)
    for (const char *c = dec; *c != '\0'; c++)
      CHECK ((guchar)*c >= 0x20 && (guchar)*c < 0x7f);

  for (gsize i = 0; i < len; i++)
    if ((guchar)s[i] < 0x20 || (guchar)s[i] >= 0x7f)
      printable = FALSE;
  back = mail_xtext_decode (enc, -1, NULL);
  if (printable)
    CHECK (back != NULL && strlen (back) == len && memcmp (back, s, len) == 0);
  else
    CHECK (back == NULL);
}

static void
fuzz_reply (const char *s, gsize len, guint selector)
{
  gsize consumed = 0;
  g_autoptr (MailReply) r = mail_reply_parse (s, len, &consumed, NULL);
  g_autofree char *text = g_strndup (s, len);
  static const guint codes[] = { 250, 354, 421, 451, 550, 554, 199, 560 };
  static const char *const enhanced[] = { NULL, "2.0.0", "4.7.1", "5.7.1", "5.07.1", "" };
  g_autoptr (MailReply) built
      = mail_reply_new (codes[selector % G_N_ELEMENTS (codes)],
                        enhanced[selector % G_N_ELEMENTS (enhanced)], text, NULL);
  g_autoptr (MailReply) completed = mail_reply_complete (
      selector % MAIL_REPLY_N_DEFAULTS, selector & 1 ? 0 : codes[selector % G_N_ELEMENTS (codes)],
      NULL, text, NULL);

  if (built != NULL)
    {
      g_autofree char *wire = mail_reply_format (built);
      g_autofree char *milter = mail_reply_format_milter (built);
      gsize used = 0;
      g_autoptr (MailReply) back = mail_reply_parse (wire, strlen (wire), &used, NULL);

      CHECK (back != NULL && used == strlen (wire));
      CHECK (mail_reply_get_n_lines (back) == mail_reply_get_n_lines (built));
      /* the milter form only grows by doubled '%' and loses the final CRLF */
      CHECK (strlen (milter) + 2 >= strlen (wire) && !g_str_has_suffix (milter, "\r\n"));
    }
  (void)completed;

  if (r != NULL)
    {
      g_autofree char *wire = mail_reply_format (r);
      g_autoptr (MailReply) back = NULL;
      gboolean fits = TRUE;
      const char *line = wire;

      CHECK (consumed > 0 && consumed <= len);
      /* formatting may repeat the enhanced code on a line that lacked it */
      for (const char *nl; (nl = strstr (line, "\r\n")) != NULL; line = nl + 2)
        if ((gsize)(nl + 2 - line) >= MAIL_MAX_REPLY_PARSE_LINE)
          fits = FALSE;
      if (!fits)
        return;
      back = mail_reply_parse (wire, strlen (wire), &consumed, NULL);
      CHECK (back != NULL && consumed == strlen (wire));
      CHECK (mail_reply_get_code (back) == mail_reply_get_code (r));
      CHECK (g_strcmp0 (mail_reply_get_enhanced (back), mail_reply_get_enhanced (r)) == 0);
      CHECK (mail_reply_get_n_lines (back) == mail_reply_get_n_lines (r));
      for (guint i = 0; i < mail_reply_get_n_lines (r); i++)
        CHECK (strcmp (mail_reply_get_line (back, i), mail_reply_get_line (r, i)) == 0);
    }
}

static void
fuzz_header (const char *s, gsize len)
{
  const char *colon = memchr (s, ':', len);
  g_autofree char *name = NULL;
  g_autofree char *value = NULL;
  g_autofree char *folded = NULL;
  g_autofree char *unfolded = mail_header_unfold (s, (gssize)len);

  CHECK (strlen (unfolded) <= len);
  (void)mail_header_name_check (s, (gssize)len, NULL);
  (void)mail_header_value_check (s, (gssize)len, NULL);
  if (colon == NULL)
    return;
  name = g_strndup (s, (gsize)(colon - s));
  value = g_strndup (colon + 1, len - (gsize)(colon - s) - 1);
  folded = mail_header_fold (name, value, NULL);
  if (folded != NULL)
    {
      gsize prefix = strlen (name) + 1;
      g_autofree char *back = NULL;
      const char *line = folded;

      for (const char *nl; (nl = strstr (line, "\r\n")) != NULL; line = nl + 2)
        CHECK ((gsize)(nl - line) <= MAIL_MAX_HEADER_LINE);
      back = mail_header_unfold (folded + prefix, -1);
      if (value[0] == '\0')
        CHECK (back[0] == '\0');
      else
        CHECK (back[0] == ' ' && strcmp (back + 1, value) == 0);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static gboolean initialized = FALSE;
  const char *s;
  gsize len;
  guint flags;

  if (!initialized)
    {
      /* a g_return_if_fail reached from input is a bug too */
      g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
      initialized = TRUE;
    }
  if (size < 1)
    return 0;
  flags = data[0] & 0x0f;
  s = (const char *)data + 1;
  len = size - 1;

  fuzz_paths (s, len, flags);
  fuzz_params (s, len, flags);
  fuzz_xtext (s, len);
  fuzz_reply (s, len, data[0] >> 4 | (data[0] & 0x0f) << 4);
  fuzz_header (s, len);
  return 0;
}
