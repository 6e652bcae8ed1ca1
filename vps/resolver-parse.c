/* SPDX-License-Identifier: MIT
 *
 * resolver-parse.c — DNS answers read for vps/resolver.h: addresses and MX
 * (RFC 1035 through libresolv's ns_* parser, RFC 5321 §5.1 ordering, RFC
 * 7505 null MX).  Nothing in a packet is trusted: counts are bounded by
 * VPS_RESOLVER_MAX_ANSWERS and by the data, names by 255 octets, and
 * anything odd is VPS_RESOLVER_ERROR_MALFORMED.
 */
#include "vps/resolver-private.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

/* ---- answer parsing --------------------------------------------------------- */

static const char *
rcode_name (int rcode)
{
  static const char *const names[]
      = { "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED" };

  return rcode >= 0 && rcode < (int)G_N_ELEMENTS (names) ? names[rcode] : "RCODE";
}

const char *
vps_resolver_type_name (int type)
{
  return type == ns_t_mx ? "MX" : type == ns_t_aaaa ? "AAAA" : "A";
}

/* Header checks shared by the parsers: on success, *n is the number of
 * answer records to read (at most VPS_RESOLVER_MAX_ANSWERS). */
static gboolean
parse_begin (const guint8 *packet, gsize len, ns_msg *msg, guint *n, GError **error)
{
  int rcode;
  guint count;

  if (len < NS_HFIXEDSZ)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_MALFORMED,
                              "answer of %" G_GSIZE_FORMAT " bytes is shorter than a DNS header",
                              len);
  if (len > VPS_RESOLVER_MAX_PACKET)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_MALFORMED,
                              "answer of %" G_GSIZE_FORMAT " bytes is over %d", len,
                              VPS_RESOLVER_MAX_PACKET);
  /* ns_initparse walks every section: a count larger than the records
   * present, a record running past the end or bytes after the last
   * record all fail here, before any count is used. */
  if (ns_initparse (packet, (int)len, msg) < 0)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_MALFORMED,
                              "answer does not parse (section counts do not match the data)");
  if (!ns_msg_getflag (*msg, ns_f_qr))
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_MALFORMED,
                              "answer is not a response (QR clear)");
  rcode = ns_msg_getflag (*msg, ns_f_rcode);
  if (rcode == ns_r_nxdomain)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_NXDOMAIN, "no such domain (NXDOMAIN)");
  if (rcode != ns_r_noerror)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_TEMPORARY, "name server answered %s (%d)",
                              rcode_name (rcode), rcode);
  /* A truncated answer should have been retried over TCP by libresolv;
   * what is left of it may miss records: not an answer to act on. */
  if (ns_msg_getflag (*msg, ns_f_tc))
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_TEMPORARY, "truncated answer (TC)");
  count = ns_msg_count (*msg, ns_s_an);
  *n = MIN (count, VPS_RESOLVER_MAX_ANSWERS);
  return TRUE;
}

static gboolean
parse_record (ns_msg *msg, guint i, ns_rr *rr, GError **error)
{
  if (ns_parserr (msg, ns_s_an, (int)i, rr) < 0)
    return vps_resolver_fail (error, VPS_RESOLVER_ERROR_MALFORMED,
                              "answer record %u does not parse (bad or looping name compression, a "
                              "name over 255 octets, or truncated data)",
                              i);
  return TRUE;
}

GPtrArray *
vps_resolver_parse_addresses (const guint8 *packet, gsize len, VpsResolverFamily family,
                              GError **error)
{
  g_autoptr (GPtrArray) out = NULL;
  ns_msg msg;
  guint n;
  ns_type type = family == VPS_RESOLVER_FAMILY_IPV6 ? ns_t_aaaa : ns_t_a;
  guint rdlen = family == VPS_RESOLVER_FAMILY_IPV6 ? 16 : 4;

  g_return_val_if_fail (packet != NULL || len == 0, NULL);
  g_return_val_if_fail (family == VPS_RESOLVER_FAMILY_IPV4 || family == VPS_RESOLVER_FAMILY_IPV6,
                        NULL);

  if (!parse_begin (packet, len, &msg, &n, error))
    return NULL;
  out = g_ptr_array_new_with_free_func (g_object_unref);
  for (guint i = 0; i < n; i++)
    {
      ns_rr rr;

      if (!parse_record (&msg, i, &rr, error))
        return NULL;
      /* CNAMEs of the chain (and anything else) are not addresses */
      if (ns_rr_class (rr) != ns_c_in || ns_rr_type (rr) != type)
        continue;
      if (ns_rr_rdlen (rr) != rdlen)
        return vps_resolver_fail_null (error, VPS_RESOLVER_ERROR_MALFORMED, "%s record of %u bytes",
                                       vps_resolver_type_name (type), (guint)ns_rr_rdlen (rr));
      g_ptr_array_add (out, g_inet_address_new_from_bytes (ns_rr_rdata (rr),
                                                           type == ns_t_a ? G_SOCKET_FAMILY_IPV4
                                                                          : G_SOCKET_FAMILY_IPV6));
    }
  if (out->len == 0)
    return vps_resolver_fail_null (error, VPS_RESOLVER_ERROR_NODATA, "no %s record",
                                   vps_resolver_type_name (type));
  return g_steal_pointer (&out);
}

/* An exchange we can connect to: LDH labels (and '_', seen in the wild),
 * no empty label.  ns_name_ntop() escapes anything else with '\', so a
 * name with escapes fails here too. */
static gboolean
is_host_name (const char *s)
{
  gsize label = 0;

  if (s[0] == '\0' || strlen (s) > VPS_RESOLVER_MAX_NAME)
    return FALSE;
  for (const char *p = s; *p != '\0'; p++)
    {
      if (*p == '.')
        {
          if (label == 0)
            return FALSE;
          label = 0;
        }
      else if (g_ascii_isalnum (*p) || *p == '-' || *p == '_')
        label++;
      else
        return FALSE;
    }
  return label > 0;
}

typedef struct
{
  VpsResolverMx *mx;
  guint32 tiebreak;
} MxSlot;

static gint
mx_slot_cmp (gconstpointer a, gconstpointer b)
{
  const MxSlot *x = a, *y = b;

  if (x->mx->preference != y->mx->preference)
    return x->mx->preference < y->mx->preference ? -1 : 1;
  return x->tiebreak < y->tiebreak ? -1 : x->tiebreak > y->tiebreak;
}

static void
mx_slot_clear (gpointer data)
{
  vps_resolver_mx_free (((MxSlot *)data)->mx);
}

/* Add (exchange, preference) unless the exchange is there already; a
 * repeated exchange keeps the lowest preference. */
static void
mx_add (GArray *slots, guint16 preference, const char *exchange)
{
  MxSlot slot;

  for (guint i = 0; i < slots->len; i++)
    {
      VpsResolverMx *mx = g_array_index (slots, MxSlot, i).mx;

      if (g_ascii_strcasecmp (mx->exchange, exchange) == 0)
        {
          mx->preference = MIN (mx->preference, preference);
          return;
        }
    }
  slot.mx = g_new0 (VpsResolverMx, 1);
  slot.mx->preference = preference;
  slot.mx->exchange = g_strdup (exchange);
  /* RFC 5321 §5.1: equal preferences in random order, to spread load */
  slot.tiebreak = g_random_int ();
  g_array_append_val (slots, slot);
}

GPtrArray *
vps_resolver_parse_mx (const guint8 *packet, gsize len, GError **error)
{
  g_autoptr (GArray) slots = NULL;
  GPtrArray *out;
  ns_msg msg;
  guint n, n_mx = 0, n_root = 0;

  g_return_val_if_fail (packet != NULL || len == 0, NULL);

  if (!parse_begin (packet, len, &msg, &n, error))
    return NULL;
  slots = g_array_new (FALSE, FALSE, sizeof (MxSlot));
  g_array_set_clear_func (slots, mx_slot_clear);
  for (guint i = 0; i < n; i++)
    {
      ns_rr rr;
      char host[NS_MAXDNAME];
      int used;

      if (!parse_record (&msg, i, &rr, error))
        return NULL;
      if (ns_rr_class (rr) != ns_c_in || ns_rr_type (rr) != (ns_type)ns_t_mx)
        continue;
      /* RDATA: 16-bit preference, then a (possibly compressed) name that
       * must end exactly where the RDATA does */
      if (ns_rr_rdlen (rr) < NS_INT16SZ + 1)
        return vps_resolver_fail_null (error, VPS_RESOLVER_ERROR_MALFORMED, "MX record of %u bytes",
                                       (guint)ns_rr_rdlen (rr));
      used = ns_name_uncompress (ns_msg_base (msg), ns_msg_end (msg), ns_rr_rdata (rr) + NS_INT16SZ,
                                 host, sizeof host);
      if (used < 0 || (guint)used != (guint)ns_rr_rdlen (rr) - NS_INT16SZ)
        return vps_resolver_fail_null (error, VPS_RESOLVER_ERROR_MALFORMED,
                                       "MX exchange does not parse (bad or looping compression, "
                                       "a name over 255 octets, or bytes after it)");
      n_mx++;
      if (strcmp (host, ".") == 0)
        n_root++;
      else if (is_host_name (host))
        mx_add (slots, (guint16)ns_get16 (ns_rr_rdata (rr)), host);
    }
  /* RFC 7505 §3: the null MX is the only MX record of the domain */
  if (n_mx == 1 && n_root == 1)
    return vps_resolver_fail_null (error, VPS_RESOLVER_ERROR_NULL_MX,
                                   "null MX (RFC 7505): the domain accepts no mail");
  if (n_mx == 0)
    return vps_resolver_fail_null (error, VPS_RESOLVER_ERROR_NODATA, "no MX record");
  if (slots->len == 0)
    return vps_resolver_fail_null (error, VPS_RESOLVER_ERROR_MALFORMED,
                                   "no usable MX host among %u MX records", n_mx);
  g_array_sort (slots, mx_slot_cmp);
  out = g_ptr_array_new_full (slots->len, (GDestroyNotify)vps_resolver_mx_free);
  for (guint i = 0; i < slots->len; i++)
    g_ptr_array_add (out, g_steal_pointer (&g_array_index (slots, MxSlot, i).mx));
  return out;
}
