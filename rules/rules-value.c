/* SPDX-License-Identifier: MIT
 *
 * rules-value.c — the small vocabulary of vsl: stage and verdict names,
 * verdict severity, value helpers for hosts, IP parsing and formatting, and
 * the string comparisons every other module uses.
 *
 * Case-insensitive comparison is ASCII-only on purpose: it is used for
 * addresses, domains and header names, whose case rules are ASCII
 * (RFC 5321 §2.4, RFC 5322 §1.2.2); it never allocates.
 */
#include "rules/rules-private.h"

#include <arpa/inet.h>
#include <string.h>

G_DEFINE_QUARK (rules - error - quark, rules_error)

static const char *const stage_names[RULES_N_STAGES] = {
  "connect", "helo", "auth", "mail", "rcpt", "data", "postq", "delivery",
};

const char *
rules_stage_name (RulesStage stage)
{
  if ((guint)stage >= RULES_N_STAGES)
    return "?";
  return stage_names[stage];
}

gboolean
rules_stage_from_name (const char *name, RulesStage *out)
{
  for (guint i = 0; i < RULES_N_STAGES; i++)
    if (g_strcmp0 (name, stage_names[i]) == 0)
      {
        *out = (RulesStage)i;
        return TRUE;
      }
  return FALSE;
}

static const struct
{
  RulesVerdict verdict;
  const char *name;
  int severity;
} verdicts[] = {
  { RULES_VERDICT_CONTINUE, "continue", 0 },     { RULES_VERDICT_ACCEPT, "accept", 1 },
  { RULES_VERDICT_ACCEPT_ALL, "accept_all", 1 }, { RULES_VERDICT_QUARANTINE, "quarantine", 2 },
  { RULES_VERDICT_TEMPFAIL, "tempfail", 3 },     { RULES_VERDICT_REJECT, "reject", 4 },
  { RULES_VERDICT_DISCARD, "discard", 5 },
};

const char *
rules_verdict_name (RulesVerdict verdict)
{
  for (guint i = 0; i < G_N_ELEMENTS (verdicts); i++)
    if (verdicts[i].verdict == verdict)
      return verdicts[i].name;
  return "?";
}

gboolean
rules_verdict_from_name (const char *name, RulesVerdict *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (verdicts); i++)
    if (g_strcmp0 (name, verdicts[i].name) == 0)
      {
        *out = verdicts[i].verdict;
        return TRUE;
      }
  return FALSE;
}

int
rules_verdict_severity (RulesVerdict verdict)
{
  for (guint i = 0; i < G_N_ELEMENTS (verdicts); i++)
    if (verdicts[i].verdict == verdict)
      return verdicts[i].severity;
  return 0;
}

static const char *const type_names[] = {
  "missing", "bool", "int", "float", "string", "ip", "cidr", "regex", "string list", "list",
};

const char *
rules_type_name (RulesType type)
{
  if ((guint)type >= G_N_ELEMENTS (type_names))
    return "?";
  return type_names[type];
}

void
rules_value_set_bool (RulesValue *v, gboolean b)
{
  memset (v, 0, sizeof *v);
  v->type = RULES_TYPE_BOOL;
  v->b = !!b;
}

void
rules_value_set_int (RulesValue *v, gint64 i)
{
  memset (v, 0, sizeof *v);
  v->type = RULES_TYPE_INT;
  v->i = i;
}

void
rules_value_set_float (RulesValue *v, double f)
{
  memset (v, 0, sizeof *v);
  v->type = RULES_TYPE_FLOAT;
  v->f = f;
}

void
rules_value_set_string (RulesValue *v, const char *s, gssize len, gboolean ci)
{
  memset (v, 0, sizeof *v);
  v->type = RULES_TYPE_STRING;
  v->ci = ci;
  v->s.ptr = s ? s : "";
  v->s.len = s ? (len < 0 ? strlen (s) : (gsize)len) : 0;
}

void
rules_value_set_strv (RulesValue *v, const char *const *strv, gsize n, gboolean ci)
{
  memset (v, 0, sizeof *v);
  v->type = RULES_TYPE_STRV;
  v->ci = ci;
  v->strv.v = strv;
  v->strv.n = strv ? n : 0;
}

gboolean
rules_ip_parse (const char *s, gsize len, RulesIp *out)
{
  char buf[INET6_ADDRSTRLEN + 8];

  if (s == NULL)
    return FALSE;
  /* Address literals as they appear in HELO and addresses (RFC 5321 §4.1.3). */
  if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
    {
      s++;
      len -= 2;
      if (len >= 5 && g_ascii_strncasecmp (s, "IPv6:", 5) == 0)
        {
          s += 5;
          len -= 5;
          if (memchr (s, ':', len) == NULL)
            return FALSE;
        }
    }
  if (len == 0 || len >= sizeof buf)
    return FALSE;
  memcpy (buf, s, len);
  buf[len] = '\0';
  memset (out, 0, sizeof *out);
  if (inet_pton (AF_INET, buf, out->addr) == 1)
    {
      out->family = 4;
      out->prefix = 32;
      return TRUE;
    }
  if (inet_pton (AF_INET6, buf, out->addr) == 1)
    {
      out->family = 6;
      out->prefix = 128;
      return TRUE;
    }
  return FALSE;
}

const char *
rules_ip_to_string (const RulesIp *ip, char *buf)
{
  if (inet_ntop (ip->family == 4 ? AF_INET : AF_INET6, ip->addr, buf, 46) == NULL)
    g_strlcpy (buf, "?", 46);
  return buf;
}

gboolean
rules_ip_in_cidr (const RulesIp *ip, const RulesIp *net)
{
  guint bits = net->prefix;

  if (ip->family != net->family)
    return FALSE;
  if (bits > (ip->family == 4 ? 32u : 128u))
    return FALSE;
  if (memcmp (ip->addr, net->addr, bits / 8) != 0)
    return FALSE;
  if (bits % 8)
    {
      guint8 mask = (guint8)(0xff << (8 - bits % 8));
      if ((ip->addr[bits / 8] & mask) != (net->addr[bits / 8] & mask))
        return FALSE;
    }
  return TRUE;
}

/* ASCII lower case of every byte; other bytes map to themselves. */
static const guint8 ascii_lower[256] = {
#define L4(c) (c), (c) + 1, (c) + 2, (c) + 3
#define L16(c) L4 (c), L4 ((c) + 4), L4 ((c) + 8), L4 ((c) + 12)
  L16 (0x00),
  L16 (0x10),
  L16 (0x20),
  L16 (0x30),
  /* 0x40: '@', then 'A'..'Z' lowered, then 0x5b..0x5f */
  0x40,
  L16 (0x61),
  L4 (0x71),
  0x75,
  0x76,
  0x77,
  0x78,
  0x79,
  0x7a,
  0x5b,
  0x5c,
  0x5d,
  0x5e,
  0x5f,
  L16 (0x60),
  L16 (0x70),
  L16 (0x80),
  L16 (0x90),
  L16 (0xa0),
  L16 (0xb0),
  L16 (0xc0),
  L16 (0xd0),
  L16 (0xe0),
  L16 (0xf0),
#undef L16
#undef L4
};

int
rules_ascii_casecmp (const char *a, const char *b, gsize n)
{
  /* Like g_ascii_strncasecmp() on unsigned bytes, but NUL is a byte like any
   * other: values carry their length and may contain one. */
  for (gsize i = 0; i < n; i++)
    {
      int x = ascii_lower[(guint8)a[i]], y = ascii_lower[(guint8)b[i]];
      if (x != y)
        return x - y;
    }
  return 0;
}

gboolean
rules_str_equal (const char *a, gsize alen, const char *b, gsize blen, gboolean ci)
{
  if (alen != blen)
    return FALSE;
  if (alen == 0)
    return TRUE;
  return ci ? rules_ascii_casecmp (a, b, alen) == 0 : memcmp (a, b, alen) == 0;
}

gboolean
rules_str_contains (const char *hay, gsize hlen, const char *needle, gsize nlen, gboolean ci)
{
  if (nlen == 0)
    return TRUE;
  if (nlen > hlen)
    return FALSE;
  if (!ci)
    return memmem (hay, hlen, needle, nlen) != NULL;
  for (gsize i = 0; i + nlen <= hlen; i++)
    if (ascii_lower[(guint8)hay[i]] == ascii_lower[(guint8)needle[0]]
        && rules_ascii_casecmp (hay + i, needle, nlen) == 0)
      return TRUE;
  return FALSE;
}
