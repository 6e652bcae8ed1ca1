/* SPDX-License-Identifier: MIT
 *
 * rules-cidr.c — sets of networks for CIDR lists: is an address in any of
 * them?
 *
 * Contract: a set is built once from a list's networks (addresses count as
 * /32 and /128) and is read-only afterwards, so threads share it.  Networks
 * are stored masked to their prefix in one hash table keyed by (family,
 * prefix, network); each family keeps the distinct prefix lengths it holds,
 * so a lookup masks the address once per distinct prefix length and probes
 * the table: O(distinct prefix lengths), whatever the number of networks.
 * Nested and duplicate networks are fine (any hit is a hit).  The answer is
 * that of rules_ip_in_cidr() against every network.
 */
#include "rules/rules-private.h"

#include <string.h>

#define MAX_PREFIX 128 /* IPv6; IPv4 uses 0..32 */

struct _RulesCidrSet
{
  GHashTable *nets; /* RulesIp* (into `keys`) -> itself */
  RulesIp *keys;
  guint8 prefixes4[33], prefixes6[MAX_PREFIX + 1]; /* distinct lengths, longest first */
  guint n4, n6;
};

static guint
family_bits (guint family)
{
  return family == 4 ? 32 : 128;
}

/* Clears every bit from `prefix` on (all 16 bytes: an IPv4 host value may
 * leave junk after its 4 bytes). */
static void
mask (RulesIp *ip, guint prefix)
{
  guint full = prefix / 8;

  if (full < 16)
    {
      ip->addr[full] &= (guint8)(0xff00 >> (prefix % 8));
      memset (ip->addr + full + 1, 0, 16 - full - 1);
    }
  ip->prefix = (guint8)prefix;
}

static guint
net_hash (gconstpointer key)
{
  const RulesIp *ip = key;
  guint64 a, b, h;

  memcpy (&a, ip->addr, 8);
  memcpy (&b, ip->addr + 8, 8);
  h = (a ^ ((guint64)ip->prefix << 56) ^ ((guint64)ip->family << 48)) * 0x9E3779B97F4A7C15ull;
  h ^= b * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  return (guint)(h ^ (h >> 32));
}

static gboolean
net_equal (gconstpointer x, gconstpointer y)
{
  const RulesIp *a = x, *b = y;
  return a->family == b->family && a->prefix == b->prefix && memcmp (a->addr, b->addr, 16) == 0;
}

RulesCidrSet *
rules_cidr_set_new (const RulesIp *nets, guint n)
{
  RulesCidrSet *set = g_new0 (RulesCidrSet, 1);
  gboolean seen4[33] = { FALSE }, seen6[MAX_PREFIX + 1] = { FALSE };

  set->keys = g_new0 (RulesIp, MAX (n, 1));
  set->nets = g_hash_table_new (net_hash, net_equal);
  for (guint i = 0; i < n; i++)
    {
      RulesIp *k = &set->keys[i];
      guint bits;

      *k = nets[i];
      if (k->family != 4 && k->family != 6)
        continue;
      bits = family_bits (k->family);
      if (k->prefix > bits)
        continue; /* rules_ip_in_cidr() never matches such a network */
      mask (k, k->prefix);
      g_hash_table_add (set->nets, k);
      if (k->family == 4)
        seen4[k->prefix] = TRUE;
      else
        seen6[k->prefix] = TRUE;
    }
  for (int p = 32; p >= 0; p--)
    if (seen4[p])
      set->prefixes4[set->n4++] = (guint8)p;
  for (int p = MAX_PREFIX; p >= 0; p--)
    if (seen6[p])
      set->prefixes6[set->n6++] = (guint8)p;
  return set;
}

void
rules_cidr_set_free (RulesCidrSet *set)
{
  if (set == NULL)
    return;
  g_hash_table_unref (set->nets);
  g_free (set->keys);
  g_free (set);
}

gboolean
rules_cidr_set_contains (const RulesCidrSet *set, const RulesIp *ip)
{
  const guint8 *prefixes;
  guint n;

  if (set == NULL || (ip->family != 4 && ip->family != 6))
    return FALSE;
  prefixes = ip->family == 4 ? set->prefixes4 : set->prefixes6;
  n = ip->family == 4 ? set->n4 : set->n6;
  for (guint i = 0; i < n; i++)
    {
      RulesIp key = *ip;
      mask (&key, prefixes[i]);
      if (g_hash_table_contains (set->nets, &key))
        return TRUE;
    }
  return FALSE;
}
