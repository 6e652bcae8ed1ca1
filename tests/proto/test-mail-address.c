/* SPDX-License-Identifier: MIT
 *
 * test-mail-address.c — MailPath parsing (proto/mail/mail-address.h).
 *
 * Table-driven: every valid case checks the split and the canonical form,
 * every malformed case asserts the exact MAIL_ERROR code.  Limits are tested
 * at the boundary (n OK, n + 1 refused); hostile local parts (shell
 * metacharacters, path traversal) must parse and round-trip as data.
 */
#include <string.h>

#include "proto/mail/mail-address.h"

#define OK (-1)
#define UTF8 MAIL_PARSE_SMTPUTF8
#define NUL_OK MAIL_PARSE_ALLOW_NULL
#define PM MAIL_PARSE_ALLOW_POSTMASTER
#define LENIENT MAIL_PARSE_LENIENT

typedef enum
{
  PARSE_PATH,
  PARSE_MAILBOX,
} ParseKind;

typedef struct
{
  const char *name;
  ParseKind kind;
  const char *input;
  gssize len; /* 0: strlen; for embedded NULs give the length */
  guint flags;
  int error;           /* OK or a MailError */
  const char *address; /* canonical, when OK */
  const char *local;   /* unquoted, when OK */
  const char *domain;  /* as written, when OK */
} AddressCase;

static const AddressCase address_cases[] = {
  /* valid */
  { "simple", PARSE_PATH, "<user@example.org>", 0, 0, OK, "user@example.org", "user",
    "example.org" },
  { "case-kept", PARSE_PATH, "<User@Example.ORG>", 0, 0, OK, "User@Example.ORG", "User",
    "Example.ORG" },
  { "null", PARSE_PATH, "<>", 0, NUL_OK, OK, "", "", "" },
  { "route", PARSE_PATH, "<@a.example,@b.example:user@dom.example>", 0, 0, OK, "user@dom.example",
    "user", "dom.example" },
  { "route-single", PARSE_PATH, "<@relay.example:u@d.example>", 0, 0, OK, "u@d.example", "u",
    "d.example" },
  { "quoted-space", PARSE_PATH, "<\"john doe\"@x.example>", 0, 0, OK, "\"john doe\"@x.example",
    "john doe", "x.example" },
  { "quoted-pairs", PARSE_PATH, "<\"a\\\"b\\\\c\"@x.example>", 0, 0, OK,
    "\"a\\\"b\\\\c\"@x.example", "a\"b\\c", "x.example" },
  { "quoted-needless", PARSE_PATH, "<\"john\"@x.example>", 0, 0, OK, "john@x.example", "john",
    "x.example" },
  { "quoted-pair-needless", PARSE_PATH, "<\"j\\ohn\"@x.example>", 0, 0, OK, "john@x.example",
    "john", "x.example" },
  { "quoted-gt-inside", PARSE_PATH, "<\"a>b\"@x.example>", 0, 0, OK, "\"a>b\"@x.example", "a>b",
    "x.example" },
  { "quoted-at-inside", PARSE_PATH, "<\"a@b\"@x.example>", 0, 0, OK, "\"a@b\"@x.example", "a@b",
    "x.example" },
  { "dot-atom", PARSE_PATH, "<first.last+tag@sub.example.co.uk>", 0, 0, OK,
    "first.last+tag@sub.example.co.uk", "first.last+tag", "sub.example.co.uk" },
  { "all-atext", PARSE_PATH, "<!#$%&'*+-/=?^_`{|}~@x.example>", 0, 0, OK,
    "!#$%&'*+-/=?^_`{|}~@x.example", "!#$%&'*+-/=?^_`{|}~", "x.example" },
  { "no-dot-domain", PARSE_PATH, "<root@localhost>", 0, 0, OK, "root@localhost", "root",
    "localhost" },
  { "digits-hyphen", PARSE_PATH, "<u@123.a-b.example>", 0, 0, OK, "u@123.a-b.example", "u",
    "123.a-b.example" },
  { "ipv4-literal", PARSE_PATH, "<user@[192.0.2.1]>", 0, 0, OK, "user@[192.0.2.1]", "user",
    "[192.0.2.1]" },
  { "ipv6-literal", PARSE_PATH, "<user@[IPv6:2001:db8::1]>", 0, 0, OK, "user@[IPv6:2001:db8::1]",
    "user", "[IPv6:2001:db8::1]" },
  { "ipv6-literal-lower-tag", PARSE_PATH, "<user@[ipv6:::1]>", 0, 0, OK, "user@[ipv6:::1]", "user",
    "[ipv6:::1]" },
  { "ipv6-v4-tail", PARSE_PATH, "<u@[IPv6:::ffff:192.0.2.1]>", 0, 0, OK,
    "u@[IPv6:::ffff:192.0.2.1]", "u", "[IPv6:::ffff:192.0.2.1]" },
  { "postmaster", PARSE_PATH, "<postmaster>", 0, PM, OK, "postmaster", "postmaster", "" },
  { "postmaster-case", PARSE_PATH, "<PostMaster>", 0, PM, OK, "PostMaster", "PostMaster", "" },
  { "postmaster-with-domain", PARSE_PATH, "<postmaster@x.example>", 0, 0, OK,
    "postmaster@x.example", "postmaster", "x.example" },
  /* hostile but valid: must survive as data (CVE-2020-7247) */
  { "shell-quoted", PARSE_PATH, "<\";sleep 5;\"@example.org>", 0, 0, OK,
    "\";sleep 5;\"@example.org", ";sleep 5;", "example.org" },
  { "shell-atext", PARSE_PATH, "<`id`|$HOME&{x}@example.org>", 0, 0, OK,
    "`id`|$HOME&{x}@example.org", "`id`|$HOME&{x}", "example.org" },
  { "traversal-quoted", PARSE_PATH, "<\"../../x\"@example.org>", 0, 0, OK,
    "\"../../x\"@example.org", "../../x", "example.org" },
  { "slash", PARSE_PATH, "<a/b@example.org>", 0, 0, OK, "a/b@example.org", "a/b", "example.org" },
  /* lenient: what Postfix hands a milter */
  { "lenient-outer-spaces", PARSE_PATH, "  <user@x.example>\t", 0, LENIENT, OK, "user@x.example",
    "user", "x.example" },
  { "lenient-inner-spaces", PARSE_PATH, "< user@x.example >", 0, LENIENT, OK, "user@x.example",
    "user", "x.example" },
  { "lenient-no-brackets", PARSE_PATH, "user@x.example", 0, LENIENT, OK, "user@x.example", "user",
    "x.example" },
  { "lenient-null-spaces", PARSE_PATH, " < > ", 0, LENIENT | NUL_OK, OK, "", "", "" },
  { "lenient-traversal", PARSE_PATH, "<../../x@example.org>", 0, LENIENT, OK,
    "\"../../x\"@example.org", "../../x", "example.org" },
  { "lenient-docomo", PARSE_PATH, "<foo..bar.@docomo.ne.jp>", 0, LENIENT, OK,
    "\"foo..bar.\"@docomo.ne.jp", "foo..bar.", "docomo.ne.jp" },
  { "lenient-underscore", PARSE_PATH, "<u@my_host.example>", 0, LENIENT, OK, "u@my_host.example",
    "u", "my_host.example" },
  /* SMTPUTF8 */
  { "utf8-local", PARSE_PATH, "<jos\xc3\xa9@example.org>", 0, UTF8, OK, "jos\xc3\xa9@example.org",
    "jos\xc3\xa9", "example.org" },
  { "utf8-domain", PARSE_PATH,
    "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>", 0, UTF8, OK,
    "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
    "\xe7\x94\xa8\xe6\x88\xb7", "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a" },
  { "utf8-quoted", PARSE_PATH, "<\"j\xc3\xb6rg m\"@example.org>", 0, UTF8, OK,
    "\"j\xc3\xb6rg m\"@example.org", "j\xc3\xb6rg m", "example.org" },
  /* bare mailboxes */
  { "mailbox-simple", PARSE_MAILBOX, "user@example.org", 0, 0, OK, "user@example.org", "user",
    "example.org" },
  { "mailbox-null", PARSE_MAILBOX, "", 0, NUL_OK, OK, "", "", "" },
  { "mailbox-lenient-brackets", PARSE_MAILBOX, " <user@example.org> ", 0, LENIENT, OK,
    "user@example.org", "user", "example.org" },
  { "mailbox-postmaster", PARSE_MAILBOX, "postmaster", 0, PM, OK, "postmaster", "postmaster", "" },

  /* malformed */
  { "empty", PARSE_PATH, "", 0, 0, MAIL_ERROR_EMPTY },
  { "mailbox-empty", PARSE_MAILBOX, "", 0, 0, MAIL_ERROR_EMPTY },
  { "lenient-blank", PARSE_PATH, "   ", 0, LENIENT, MAIL_ERROR_EMPTY },
  { "null-not-allowed", PARSE_PATH, "<>", 0, 0, MAIL_ERROR_NULL_PATH },
  { "no-brackets", PARSE_PATH, "user@x.example", 0, 0, MAIL_ERROR_SYNTAX },
  { "no-close", PARSE_PATH, "<user@x.example", 0, 0, MAIL_ERROR_SYNTAX },
  { "trailing", PARSE_PATH, "<user@x.example>x", 0, 0, MAIL_ERROR_SYNTAX },
  { "trailing-space-strict", PARSE_PATH, "<user@x.example> ", 0, 0, MAIL_ERROR_SYNTAX },
  { "leading-space-strict", PARSE_PATH, " <user@x.example>", 0, 0, MAIL_ERROR_SYNTAX },
  { "no-domain", PARSE_PATH, "<user>", 0, 0, MAIL_ERROR_NO_DOMAIN },
  { "postmaster-not-allowed", PARSE_PATH, "<postmaster>", 0, 0, MAIL_ERROR_NO_DOMAIN },
  { "postmaster-quoted", PARSE_PATH, "<\"postmaster\">", 0, PM, MAIL_ERROR_NO_DOMAIN },
  { "empty-domain", PARSE_PATH, "<user@>", 0, 0, MAIL_ERROR_NO_DOMAIN },
  { "mailbox-no-domain", PARSE_MAILBOX, "user", 0, 0, MAIL_ERROR_NO_DOMAIN },
  { "route-no-colon", PARSE_PATH, "<@x.example>", 0, 0, MAIL_ERROR_SOURCE_ROUTE },
  { "route-missing-at", PARSE_PATH, "<@a.example,b.example:u@x.example>", 0, 0,
    MAIL_ERROR_SOURCE_ROUTE },
  { "route-empty-elem", PARSE_PATH, "<@a.example,,@b.example:u@x.example>", 0, 0,
    MAIL_ERROR_SOURCE_ROUTE },
  { "route-bad-domain", PARSE_PATH, "<@a..example:u@x.example>", 0, 0, MAIL_ERROR_SOURCE_ROUTE },
  { "route-no-mailbox", PARSE_PATH, "<@a.example:>", 0, 0, MAIL_ERROR_SOURCE_ROUTE },
  { "route-in-mailbox", PARSE_MAILBOX, "@a.example:u@x.example", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "unterminated-quote", PARSE_PATH, "<\"abc@x.example>", 0, 0, MAIL_ERROR_QUOTED_STRING },
  { "escaped-close-quote", PARSE_PATH, "<\"abc\\\"@x.example>", 0, 0, MAIL_ERROR_QUOTED_STRING },
  { "mailbox-unterminated-quote", PARSE_MAILBOX, "\"abc@x.example", 0, 0,
    MAIL_ERROR_QUOTED_STRING },
  { "after-quote", PARSE_PATH, "<\"a\"b@x.example>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "empty-quoted", PARSE_PATH, "<\"\"@x.example>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "empty-local", PARSE_PATH, "<@>", 0, 0, MAIL_ERROR_SOURCE_ROUTE },
  { "mailbox-empty-local", PARSE_MAILBOX, "@x.example", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "leading-dot", PARSE_PATH, "<.user@x.example>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "trailing-dot", PARSE_PATH, "<user.@x.example>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "double-dot", PARSE_PATH, "<us..er@x.example>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "traversal-strict", PARSE_PATH, "<../../x@example.org>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "dots-only-lenient", PARSE_PATH, "<..@x.example>", 0, LENIENT, MAIL_ERROR_LOCAL_PART },
  { "sleep-unquoted", PARSE_PATH, "<;sleep 5;>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "sleep-unquoted-domain", PARSE_PATH, "<;sleep 5;@example.org>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "space-local", PARSE_PATH, "<us er@x.example>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "paren-local", PARSE_PATH, "<$(reboot)@x.example>", 0, 0, MAIL_ERROR_LOCAL_PART },
  { "space-domain", PARSE_PATH, "<user@exa mple.org>", 0, 0, MAIL_ERROR_DOMAIN },
  { "two-at", PARSE_PATH, "<a@b@x.example>", 0, 0, MAIL_ERROR_DOMAIN },
  { "hyphen-start", PARSE_PATH, "<user@-x.example>", 0, 0, MAIL_ERROR_DOMAIN },
  { "hyphen-end", PARSE_PATH, "<user@x-.example>", 0, 0, MAIL_ERROR_DOMAIN },
  { "empty-label", PARSE_PATH, "<user@x..example>", 0, 0, MAIL_ERROR_DOMAIN },
  { "trailing-dot-domain", PARSE_PATH, "<user@x.example.>", 0, 0, MAIL_ERROR_DOMAIN },
  { "leading-dot-domain", PARSE_PATH, "<user@.x.example>", 0, 0, MAIL_ERROR_DOMAIN },
  { "underscore-strict", PARSE_PATH, "<u@my_host.example>", 0, 0, MAIL_ERROR_DOMAIN },
  { "literal-short-ipv4", PARSE_PATH, "<u@[1.2.3]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-big-octet", PARSE_PATH, "<u@[256.1.1.1]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-bad-ipv6", PARSE_PATH, "<u@[IPv6:2001:db8::g]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-ipv4-as-v6", PARSE_PATH, "<u@[IPv6:1.2.3.4]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-untagged-ipv6", PARSE_PATH, "<u@[2001:db8::1]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-unknown-tag", PARSE_PATH, "<u@[x400:foo]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-empty", PARSE_PATH, "<u@[]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-unclosed", PARSE_PATH, "<u@[1.2.3.4>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-zone", PARSE_PATH, "<u@[IPv6:fe80::1%eth0]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-leading-zero", PARSE_PATH, "<u@[01.2.3.4]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  { "literal-hostname", PARSE_PATH, "<u@[mail.example]>", 0, 0, MAIL_ERROR_ADDRESS_LITERAL },
  /* forbidden bytes anywhere, in every mode */
  { "nul-local", PARSE_PATH, "<us\0er@x.example>", 17, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "nul-domain", PARSE_PATH, "<user@x.exa\0mple>", 17, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "nul-quoted", PARSE_PATH, "<\"a\0b\"@x.example>", 17, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "cr-local", PARSE_PATH, "<user\r@x.example>", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "lf-domain", PARSE_PATH, "<user@x.example\n>", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "crlf-quoted", PARSE_PATH, "<\"a\r\nRCPT TO:<x>\"@x.example>", 0, 0,
    MAIL_ERROR_FORBIDDEN_CHAR },
  { "cr-route", PARSE_PATH, "<@a.ex\rample:u@x.example>", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "tab-quoted", PARSE_PATH, "<\"a\tb\"@x.example>", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "esc", PARSE_PATH, "<a\x1b[2J@x.example>", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "del", PARSE_PATH, "<a\x7f@x.example>", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  { "c1-control-utf8", PARSE_PATH, "<a\xc2\x85@x.example>", 0, UTF8, MAIL_ERROR_FORBIDDEN_CHAR },
  { "cr-lenient", PARSE_PATH, "< user\r@x.example >", 0, LENIENT, MAIL_ERROR_FORBIDDEN_CHAR },
  { "lf-mailbox", PARSE_MAILBOX, "user@x.example\n", 0, 0, MAIL_ERROR_FORBIDDEN_CHAR },
  /* 8-bit policy */
  { "utf8-without-flag", PARSE_PATH, "<jos\xc3\xa9@example.org>", 0, 0,
    MAIL_ERROR_UTF8_NOT_ALLOWED },
  { "utf8-domain-without-flag", PARSE_PATH, "<u@\xe4\xbe\x8b.example>", 0, 0,
    MAIL_ERROR_UTF8_NOT_ALLOWED },
  { "utf8-without-flag-lenient", PARSE_PATH, "<jos\xc3\xa9@example.org>", 0, LENIENT,
    MAIL_ERROR_UTF8_NOT_ALLOWED },
  { "latin1", PARSE_PATH, "<jos\xe9@example.org>", 0, UTF8, MAIL_ERROR_INVALID_UTF8 },
  { "overlong-slash", PARSE_PATH,
    "<a\xc0\xaf"
    "b@example.org>",
    0, UTF8, MAIL_ERROR_INVALID_UTF8 },
  { "truncated-utf8", PARSE_PATH, "<a@example.org\xe4\xbe>", 0, UTF8, MAIL_ERROR_INVALID_UTF8 },
  { "surrogate", PARSE_PATH, "<a\xed\xa0\x80@example.org>", 0, UTF8, MAIL_ERROR_INVALID_UTF8 },
};

static MailPath *
parse_case (const AddressCase *c, GError **error)
{
  gssize len = c->len != 0 ? c->len : -1;

  if (c->kind == PARSE_PATH)
    return mail_path_parse (c->input, len, c->flags, error);
  return mail_mailbox_parse (c->input, len, c->flags, error);
}

static void
test_address_case (gconstpointer data)
{
  const AddressCase *c = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (MailPath) p = parse_case (c, &error);
  g_autoptr (MailPath) again = NULL;
  g_autofree char *bracketed = NULL;

  if (c->error != OK)
    {
      g_assert_error (error, MAIL_ERROR, c->error);
      g_assert_null (p);
      return;
    }
  g_assert_no_error (error);
  g_assert_nonnull (p);
  g_assert_cmpstr (mail_path_get_address (p), ==, c->address);
  g_assert_cmpstr (mail_path_get_local (p), ==, c->local);
  g_assert_cmpstr (mail_path_get_domain (p), ==, c->domain);
  bracketed = g_strconcat ("<", c->address, ">", NULL);
  g_assert_cmpstr (mail_path_get_path (p), ==, bracketed);

  /* The canonical form is itself a valid path naming the same mailbox:
   * hostile local parts round-trip as data.  (Lenient stays on only for
   * domains such as "my_host": a canonical local part is always strict.) */
  again = mail_path_parse (mail_path_get_path (p), -1,
                           (strchr (c->domain, '_') ? c->flags : c->flags & ~MAIL_PARSE_LENIENT)
                               | MAIL_PARSE_ALLOW_NULL,
                           &error);
  g_assert_no_error (error);
  g_assert_true (mail_path_equal (p, again));
  g_assert_cmpstr (mail_path_get_local (again), ==, c->local);
  g_assert_cmpstr (mail_path_get_address (again), ==, c->address);
}

static void
test_address_accessors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MailPath) p = mail_path_parse ("<\"john doe\"@Example.ORG>", -1, 0, &error);
  g_autoptr (MailPath) n = mail_path_parse ("<>", -1, MAIL_PARSE_ALLOW_NULL, &error);
  g_autoptr (MailPath) r = mail_path_parse ("<@a.example:u@b.example>", -1, 0, &error);
  g_autoptr (MailPath) pm
      = mail_path_parse ("<Postmaster>", -1, MAIL_PARSE_ALLOW_POSTMASTER, &error);
  g_autoptr (MailPath) u
      = mail_path_parse ("<u@\xc3\x89xample.org>", -1, MAIL_PARSE_SMTPUTF8, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (mail_path_get_local_raw (p), ==, "\"john doe\"");
  g_assert_cmpstr (mail_path_get_domain_lower (p), ==, "example.org");
  g_assert_false (mail_path_is_null (p));
  g_assert_false (mail_path_is_postmaster (p));
  g_assert_false (mail_path_had_route (p));
  g_assert_false (mail_path_is_utf8 (p));

  g_assert_true (mail_path_is_null (n));
  g_assert_cmpstr (mail_path_get_path (n), ==, "<>");
  g_assert_true (mail_path_had_route (r));
  g_assert_true (mail_path_is_postmaster (pm));
  g_assert_true (mail_path_is_utf8 (u));
  g_assert_cmpstr (mail_path_get_domain_lower (u), ==, "\xc3\xa9xample.org");

  /* ref/unref keep the object alive */
  g_assert_true (mail_path_ref (p) == p);
  mail_path_unref (p);
  g_assert_cmpstr (mail_path_get_local (p), ==, "john doe");
}

static void
test_address_equal (void)
{
  static const struct
  {
    const char *a, *b;
    gboolean equal;
  } cases[] = {
    { "<User@EXAMPLE.org>", "<User@example.ORG>", TRUE },
    { "<user@example.org>", "<User@example.org>", FALSE },
    { "<\"john\"@x.example>", "<john@x.example>", TRUE },
    { "<>", "<>", TRUE },
    { "<>", "<a@x.example>", FALSE },
    { "<postmaster>", "<POSTMASTER>", TRUE },
    { "<postmaster>", "<postmaster@x.example>", FALSE },
    { "<@r.example:a@x.example>", "<a@x.example>", TRUE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      guint flags = MAIL_PARSE_ALLOW_NULL | MAIL_PARSE_ALLOW_POSTMASTER;
      g_autoptr (GError) error = NULL;
      g_autoptr (MailPath) a = mail_path_parse (cases[i].a, -1, flags, &error);
      g_autoptr (MailPath) b = mail_path_parse (cases[i].b, -1, flags, &error);

      g_assert_no_error (error);
      g_assert_cmpint (mail_path_equal (a, b), ==, cases[i].equal);
      g_assert_cmpint (mail_path_equal (b, a), ==, cases[i].equal);
    }
}

/* A valid domain of exactly len octets, labels of at most 63. */
static char *
make_domain (gsize len)
{
  GString *d = g_string_new (NULL);

  while (d->len < len)
    {
      if (d->len > 0)
        g_string_append_c (d, '.');
      for (gsize i = 0; i < 63 && d->len < len; i++)
        g_string_append_c (d, 'a' + (char)(d->len % 26));
    }
  /* A dot added last would leave an empty label: move it one to the left. */
  if (d->len >= 2 && d->str[d->len - 1] == '.')
    {
      d->str[d->len - 1] = d->str[d->len - 2];
      d->str[d->len - 2] = '.';
    }
  return g_string_free (d, FALSE);
}

static void
check_limit (ParseKind kind, gsize local_len, gsize domain_len, int expected)
{
  g_autofree char *local = g_strnfill (local_len, 'l');
  g_autofree char *domain = make_domain (domain_len);
  g_autofree char *input = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (MailPath) p = NULL;

  g_assert_cmpuint (strlen (domain), ==, domain_len);
  if (kind == PARSE_PATH)
    {
      input = g_strconcat ("<", local, "@", domain, ">", NULL);
      p = mail_path_parse (input, -1, 0, &error);
    }
  else
    {
      input = g_strconcat (local, "@", domain, NULL);
      p = mail_mailbox_parse (input, -1, 0, &error);
    }
  if (expected == OK)
    {
      g_assert_no_error (error);
      g_assert_cmpuint (strlen (mail_path_get_local (p)), ==, local_len);
      g_assert_cmpuint (strlen (mail_path_get_domain (p)), ==, domain_len);
    }
  else
    {
      g_assert_error (error, MAIL_ERROR, expected);
      g_assert_null (p);
    }
}

static void
test_address_limits (void)
{
  /* local part 64 / 65 */
  check_limit (PARSE_PATH, MAIL_MAX_LOCAL_PART, 11, OK);
  check_limit (PARSE_PATH, MAIL_MAX_LOCAL_PART + 1, 11, MAIL_ERROR_LOCAL_PART_TOO_LONG);
  check_limit (PARSE_MAILBOX, MAIL_MAX_LOCAL_PART + 1, 11, MAIL_ERROR_LOCAL_PART_TOO_LONG);
  /* path 256 / 257, counting '<' '@' '>' */
  check_limit (PARSE_PATH, 64, MAIL_MAX_PATH - 64 - 3, OK);
  check_limit (PARSE_PATH, 64, MAIL_MAX_PATH - 64 - 2, MAIL_ERROR_PATH_TOO_LONG);
  check_limit (PARSE_PATH, 1, MAIL_MAX_DOMAIN, MAIL_ERROR_PATH_TOO_LONG);
  /* domain 255 / 256: only a bare mailbox can hold one that long */
  check_limit (PARSE_MAILBOX, 1, MAIL_MAX_DOMAIN, OK);
  check_limit (PARSE_MAILBOX, 1, MAIL_MAX_DOMAIN + 1, MAIL_ERROR_DOMAIN_TOO_LONG);
  check_limit (PARSE_MAILBOX, 64, MAIL_MAX_DOMAIN, OK);
  /* mailbox as a whole */
  {
    g_autofree char *big = g_strnfill (MAIL_MAX_MAILBOX + 1, 'a');
    g_autoptr (GError) error = NULL;
    g_autoptr (MailPath) p = mail_mailbox_parse (big, -1, 0, &error);

    g_assert_error (error, MAIL_ERROR, MAIL_ERROR_PATH_TOO_LONG);
    g_assert_null (p);
  }
  /* the same bound when the path is followed by ESMTP parameters */
  for (gsize extra = 0; extra <= 1; extra++)
    {
      g_autofree char *local = g_strnfill (64, 'l');
      g_autofree char *domain = make_domain (MAIL_MAX_PATH - 64 - 3 + extra);
      g_autofree char *cmd = g_strconcat ("<", local, "@", domain, "> SIZE=1", NULL);
      g_autoptr (GError) error = NULL;
      gsize consumed = 0;
      g_autoptr (MailPath) p = mail_path_parse_prefix (cmd, strlen (cmd), 0, &consumed, &error);

      if (extra == 0)
        {
          g_assert_no_error (error);
          g_assert_cmpuint (consumed, ==, MAIL_MAX_PATH);
        }
      else
        {
          g_assert_error (error, MAIL_ERROR, MAIL_ERROR_PATH_TOO_LONG);
          g_assert_null (p);
        }
    }
  /* a quoted local part is counted with its quotes: 62 + 2 OK, 63 + 2 not */
  {
    g_autofree char *q62 = g_strnfill (62, 'q');
    g_autofree char *q63 = g_strnfill (63, 'q');
    g_autofree char *ok = g_strconcat ("<\"", q62, "\"@x.example>", NULL);
    g_autofree char *bad = g_strconcat ("<\"", q63, "\"@x.example>", NULL);
    g_autoptr (GError) error = NULL;
    g_autoptr (MailPath) p = mail_path_parse (ok, -1, 0, &error);
    g_autoptr (MailPath) p2 = NULL;

    g_assert_no_error (error);
    g_assert_nonnull (p);
    p2 = mail_path_parse (bad, -1, 0, &error);
    g_assert_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART_TOO_LONG);
    g_assert_null (p2);
  }
}

static void
test_address_labels (void)
{
  g_autofree char *l63 = g_strnfill (MAIL_MAX_DOMAIN_LABEL, 'x');
  g_autofree char *l64 = g_strnfill (MAIL_MAX_DOMAIN_LABEL + 1, 'x');
  g_autofree char *ok = g_strconcat ("<u@", l63, ".example>", NULL);
  g_autofree char *bad = g_strconcat ("<u@", l64, ".example>", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (MailPath) p = mail_path_parse (ok, -1, 0, &error);
  g_autoptr (MailPath) p2 = NULL;

  g_assert_no_error (error);
  g_assert_nonnull (p);
  p2 = mail_path_parse (bad, -1, 0, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_LABEL_TOO_LONG);
  g_assert_null (p2);
}

static void
test_address_prefix (void)
{
  static const struct
  {
    const char *input;
    guint flags;
    gsize consumed;
    const char *address;
  } cases[] = {
    { "<a@b.example> SIZE=100", 0, 13, "a@b.example" },
    { "<\"a> b\"@x.example> BODY=8BITMIME", 0, 18, "\"a> b\"@x.example" },
    { "<> RET=HDRS", MAIL_PARSE_ALLOW_NULL, 2, "" },
    { "  <a@b.example>  X", MAIL_PARSE_LENIENT, 15, "a@b.example" },
    { "a@b.example SIZE=1", MAIL_PARSE_LENIENT, 11, "a@b.example" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      gsize consumed = 0;
      g_autoptr (MailPath) p = mail_path_parse_prefix (cases[i].input, strlen (cases[i].input),
                                                       cases[i].flags, &consumed, &error);

      g_assert_no_error (error);
      g_assert_cmpuint (consumed, ==, cases[i].consumed);
      g_assert_cmpstr (mail_path_get_address (p), ==, cases[i].address);
    }
}

static void
test_address_prefix_bounded (void)
{
  /* 1 MB without '>': refused once the path limit is passed, without
   * scanning (or copying) the rest. */
  gsize len = 1024 * 1024;
  g_autofree char *big = g_malloc (len);
  g_autoptr (GError) error = NULL;
  gsize consumed = 0;
  g_autoptr (MailPath) p = NULL;

  memset (big, 'a', len);
  big[0] = '<';
  p = mail_path_parse_prefix (big, len, 0, &consumed, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_PATH_TOO_LONG);
  g_assert_null (p);
  g_clear_error (&error);
  p = mail_path_parse_prefix (big + 1, len - 1, MAIL_PARSE_LENIENT, &consumed, &error);
  g_assert_error (error, MAIL_ERROR, MAIL_ERROR_PATH_TOO_LONG);
  g_assert_null (p);
}

static void
test_address_new (void)
{
  static const struct
  {
    const char *local, *domain;
    guint flags;
    int error;
    const char *address;
  } cases[] = {
    { "john doe", "x.example", 0, OK, "\"john doe\"@x.example" },
    { "a\"b\\c", "x.example", 0, OK, "\"a\\\"b\\\\c\"@x.example" },
    { "plain", "x.example", 0, OK, "plain@x.example" },
    { ";sleep 5;", "x.example", 0, OK, "\";sleep 5;\"@x.example" },
    { "postmaster", NULL, MAIL_PARSE_ALLOW_POSTMASTER, OK, "postmaster" },
    { "user", NULL, 0, MAIL_ERROR_NO_DOMAIN, NULL },
    { "user\n", "x.example", 0, MAIL_ERROR_FORBIDDEN_CHAR, NULL },
    { "", "x.example", 0, MAIL_ERROR_LOCAL_PART, NULL },
    { "user", "bad domain", 0, MAIL_ERROR_DOMAIN, NULL },
    { "user", "x.example>", 0, MAIL_ERROR_DOMAIN, NULL },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MailPath) p
          = mail_path_new (cases[i].local, cases[i].domain, cases[i].flags, &error);

      if (cases[i].error == OK)
        {
          g_assert_no_error (error);
          g_assert_cmpstr (mail_path_get_local (p), ==, cases[i].local);
          g_assert_cmpstr (mail_path_get_address (p), ==, cases[i].address);
        }
      else
        {
          g_assert_error (error, MAIL_ERROR, cases[i].error);
          g_assert_null (p);
        }
    }
  {
    g_autofree char *l65 = g_strnfill (65, 'l');
    g_autoptr (GError) error = NULL;
    g_autoptr (MailPath) p = mail_path_new (l65, "x.example", 0, &error);

    g_assert_error (error, MAIL_ERROR, MAIL_ERROR_LOCAL_PART_TOO_LONG);
    g_assert_null (p);
  }
  {
    g_autoptr (MailPath) n = mail_path_new_null ();

    g_assert_true (mail_path_is_null (n));
  }
}

static void
test_address_helpers (void)
{
  static const struct
  {
    const char *in, *out;
  } quote[] = {
    { "plain", "plain" },     { "a.b", "a.b" },     { ".a", "\".a\"" },
    { "a..b", "\"a..b\"" },   { "a b", "\"a b\"" }, { "a\"b", "\"a\\\"b\"" },
    { "a\\b", "\"a\\\\b\"" }, { "", "\"\"" },       { "j\xc3\xb6rg", "j\xc3\xb6rg" },
  };
  static const struct
  {
    const char *in, *out;
  } lower[] = {
    { "Example.ORG", "example.org" },
    { "\xc3\x89XAMPLE.org", "\xc3\xa9xample.org" },
    { "[IPv6:2001:DB8::1]", "[ipv6:2001:db8::1]" },
    { "", "" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (quote); i++)
    {
      g_autofree char *q = mail_local_part_quote (quote[i].in);

      g_assert_cmpstr (q, ==, quote[i].out);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (lower); i++)
    {
      g_autofree char *l = mail_domain_lower (lower[i].in);

      g_assert_cmpstr (l, ==, lower[i].out);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (address_cases); i++)
    {
      const AddressCase *c = &address_cases[i];
      g_autofree char *path = g_strdup_printf ("/proto/mail/address/%s/%s",
                                               c->error == OK ? "valid" : "malformed", c->name);

      g_test_add_data_func (path, c, test_address_case);
    }
  g_test_add_func ("/proto/mail/address/accessors", test_address_accessors);
  g_test_add_func ("/proto/mail/address/equal", test_address_equal);
  g_test_add_func ("/proto/mail/address/limits", test_address_limits);
  g_test_add_func ("/proto/mail/address/labels", test_address_labels);
  g_test_add_func ("/proto/mail/address/prefix", test_address_prefix);
  g_test_add_func ("/proto/mail/address/prefix-bounded", test_address_prefix_bounded);
  g_test_add_func ("/proto/mail/address/new", test_address_new);
  g_test_add_func ("/proto/mail/address/helpers", test_address_helpers);
  return g_test_run ();
}
