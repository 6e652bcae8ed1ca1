/* SPDX-License-Identifier: MIT
 *
 * test-resolver.c — vps/resolver.h without the network: the answer parsers
 * fed packets built here byte by byte (answers, NXDOMAIN, NODATA, RCODEs,
 * truncation, and hostile packets: counts larger than the data, records
 * running past the end, compression loops, names over 255 octets, bad
 * RDATA lengths, trailing bytes, more records than VPS_RESOLVER_MAX_ANSWERS),
 * MX ordering (preference, random ties, null MX, unusable exchanges,
 * duplicates), the name server syntax, and the checks made before any
 * query is sent (invalid names, address literals).
 */
#include <arpa/nameser.h>
#include <string.h>
#include "tests/vps/resolver-test-util.h"
#include "vps/resolver.h"

/* ---- packet builder ------------------------------------------------------- */

#define F_QR 0x8000
#define F_TC 0x0200
#define F_RD 0x0100
#define F_RA 0x0080

static void
put32 (GByteArray *b, guint32 v)
{
  put16 (b, v >> 16);
  put16 (b, v & 0xffff);
}

static void
put_ptr (GByteArray *b, guint16 offset)
{
  put16 (b, 0xc000 | offset);
}

static GByteArray *
packet (guint16 flags, guint16 an, const char *qname, guint16 qtype)
{
  GByteArray *b = g_byte_array_new ();

  put16 (b, 0x1234);
  put16 (b, flags);
  put16 (b, 1);
  put16 (b, an);
  put16 (b, 0);
  put16 (b, 0);
  put_name (b, qname);
  put16 (b, qtype);
  put16 (b, ns_c_in);
  return b;
}

/* an answer record owned by the question's name (pointer to offset 12) */
static void
put_rr (GByteArray *b, guint16 type, const guint8 *rdata, guint16 rdlen)
{
  put_ptr (b, NS_HFIXEDSZ);
  put16 (b, type);
  put16 (b, ns_c_in);
  put32 (b, 300);
  put16 (b, rdlen);
  g_byte_array_append (b, rdata, rdlen);
}

static void
put_a (GByteArray *b, guint8 a, guint8 b2, guint8 c, guint8 d)
{
  guint8 rd[4] = { a, b2, c, d };
  put_rr (b, ns_t_a, rd, 4);
}

static void
put_mx (GByteArray *b, guint16 pref, const char *exchange)
{
  g_autoptr (GByteArray) rd = g_byte_array_new ();

  put16 (rd, pref);
  put_name (rd, exchange);
  put_rr (b, ns_t_mx, rd->data, rd->len);
}

#define OK (-1)
#define QNAME "example.test"
#define NOERR (F_QR | F_RD | F_RA)

/* ---- address answers ------------------------------------------------------ */

typedef GByteArray *(*Build) (void);

static GByteArray *
a_two (void)
{
  GByteArray *b = packet (NOERR, 2, QNAME, ns_t_a);
  put_a (b, 192, 0, 2, 1);
  put_a (b, 192, 0, 2, 2);
  return b;
}

static GByteArray *
a_after_cname (void)
{
  GByteArray *b = packet (NOERR, 2, QNAME, ns_t_a);
  g_autoptr (GByteArray) rd = g_byte_array_new ();

  put_name (rd, "target.test");
  put_rr (b, ns_t_cname, rd->data, rd->len);
  put_a (b, 192, 0, 2, 3);
  return b;
}

static GByteArray *
cname_only (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_a);
  g_autoptr (GByteArray) rd = g_byte_array_new ();

  put_name (rd, "target.test");
  put_rr (b, ns_t_cname, rd->data, rd->len);
  return b;
}

static GByteArray *
aaaa_one (void)
{
  static const guint8 v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_aaaa);

  put_rr (b, ns_t_aaaa, v6, 16);
  return b;
}

static GByteArray *
class_chaos (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_a);
  static const guint8 rd[4] = { 127, 0, 0, 2 };

  put_ptr (b, NS_HFIXEDSZ);
  put16 (b, ns_t_a);
  put16 (b, ns_c_chaos);
  put32 (b, 300);
  put16 (b, 4);
  g_byte_array_append (b, rd, 4);
  return b;
}

static GByteArray *
nxdomain (void)
{
  return packet (NOERR | ns_r_nxdomain, 0, QNAME, ns_t_a);
}

static GByteArray *
nodata (void)
{
  return packet (NOERR, 0, QNAME, ns_t_a);
}

static GByteArray *
servfail (void)
{
  return packet (NOERR | ns_r_servfail, 0, QNAME, ns_t_a);
}

static GByteArray *
refused (void)
{
  return packet (NOERR | ns_r_refused, 0, QNAME, ns_t_a);
}

static GByteArray *
truncated_tc (void)
{
  GByteArray *b = packet (NOERR | F_TC, 1, QNAME, ns_t_a);
  put_a (b, 192, 0, 2, 1);
  return b;
}

static GByteArray *
not_response (void)
{
  GByteArray *b = packet (F_RD, 1, QNAME, ns_t_a);
  put_a (b, 192, 0, 2, 1);
  return b;
}

static GByteArray *
short_header (void)
{
  GByteArray *b = g_byte_array_new ();
  put16 (b, 0x1234);
  put16 (b, NOERR);
  return b;
}

/* ancount says 3, one record follows */
static GByteArray *
count_over_data (void)
{
  GByteArray *b = packet (NOERR, 3, QNAME, ns_t_a);
  put_a (b, 192, 0, 2, 1);
  return b;
}

/* ancount 65535 and nothing after the question */
static GByteArray *
count_huge (void)
{
  return packet (NOERR, 0xffff, QNAME, ns_t_a);
}

/* rdlength runs past the end of the packet */
static GByteArray *
rdata_past_end (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_a);
  static const guint8 rd[4] = { 192, 0, 2, 1 };

  put_ptr (b, NS_HFIXEDSZ);
  put16 (b, ns_t_a);
  put16 (b, ns_c_in);
  put32 (b, 300);
  put16 (b, 200);
  g_byte_array_append (b, rd, 4);
  return b;
}

static GByteArray *
a_bad_rdlen (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_a);
  static const guint8 rd[5] = { 192, 0, 2, 1, 9 };

  put_rr (b, ns_t_a, rd, 5);
  return b;
}

/* the answer's owner name is a pointer to itself */
static GByteArray *
owner_loop (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_a);
  static const guint8 rd[4] = { 192, 0, 2, 1 };
  guint16 here = (guint16)b->len;

  put_ptr (b, here);
  put16 (b, ns_t_a);
  put16 (b, ns_c_in);
  put32 (b, 300);
  put16 (b, 4);
  g_byte_array_append (b, rd, 4);
  return b;
}

/* two names that point to each other: the RDATA of a first record holds
 * them, the second record's owner is one of them */
static GByteArray *
owner_ping_pong (void)
{
  GByteArray *b = packet (NOERR, 2, QNAME, ns_t_a);
  g_autoptr (GByteArray) rd = g_byte_array_new ();
  static const guint8 addr[4] = { 192, 0, 2, 1 };
  /* first record's RDATA starts after its owner (2) and fixed part (10) */
  guint16 x = (guint16)(b->len + 2 + 10);

  put_ptr (rd, x + 2);
  put_ptr (rd, x);
  put_rr (b, 0xff00, rd->data, rd->len);
  put_ptr (b, x);
  put16 (b, ns_t_a);
  put16 (b, ns_c_in);
  put32 (b, 300);
  put16 (b, 4);
  g_byte_array_append (b, addr, 4);
  return b;
}

/* an owner name of 5 x 63-octet labels: 321 octets > 255 */
static GByteArray *
owner_too_long (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_a);
  static const guint8 rd[4] = { 192, 0, 2, 1 };
  g_autofree char *label = g_strnfill (63, 'a');
  g_autofree char *name = g_strjoin (".", label, label, label, label, label, NULL);

  put_name (b, name);
  put16 (b, ns_t_a);
  put16 (b, ns_c_in);
  put32 (b, 300);
  put16 (b, 4);
  g_byte_array_append (b, rd, 4);
  return b;
}

static GByteArray *
trailing_bytes (void)
{
  GByteArray *b = a_two ();
  static const guint8 junk[3] = { 1, 2, 3 };

  g_byte_array_append (b, junk, 3);
  return b;
}

/* more records than we read: only VPS_RESOLVER_MAX_ANSWERS are used */
static GByteArray *
many_records (void)
{
  guint n = VPS_RESOLVER_MAX_ANSWERS + 36;
  GByteArray *b = packet (NOERR, (guint16)n, QNAME, ns_t_a);

  for (guint i = 0; i < n; i++)
    put_a (b, 10, 0, (guint8)(i >> 8), (guint8)i);
  return b;
}

static const struct
{
  const char *path;
  Build build;
  VpsResolverFamily family;
  int want; /* OK or a VpsResolverError */
  guint n;
  const char *first;
} address_cases[] = {
  { "two", a_two, VPS_RESOLVER_FAMILY_IPV4, OK, 2, "192.0.2.1" },
  { "after-cname", a_after_cname, VPS_RESOLVER_FAMILY_IPV4, OK, 1, "192.0.2.3" },
  { "aaaa", aaaa_one, VPS_RESOLVER_FAMILY_IPV6, OK, 1, "2001:db8::1" },
  { "many-records", many_records, VPS_RESOLVER_FAMILY_IPV4, OK, VPS_RESOLVER_MAX_ANSWERS,
    "10.0.0.0" },
  { "cname-only", cname_only, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_NODATA },
  { "a-asked-aaaa", a_two, VPS_RESOLVER_FAMILY_IPV6, VPS_RESOLVER_ERROR_NODATA },
  { "class-chaos", class_chaos, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_NODATA },
  { "nxdomain", nxdomain, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_NXDOMAIN },
  { "nodata", nodata, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_NODATA },
  { "servfail", servfail, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_TEMPORARY },
  { "refused", refused, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_TEMPORARY },
  { "tc", truncated_tc, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_TEMPORARY },
  { "not-response", not_response, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "short-header", short_header, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "count-over-data", count_over_data, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "count-huge", count_huge, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "rdata-past-end", rdata_past_end, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "a-bad-rdlen", a_bad_rdlen, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "owner-loop", owner_loop, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "owner-ping-pong", owner_ping_pong, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "owner-too-long", owner_too_long, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
  { "trailing-bytes", trailing_bytes, VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_MALFORMED },
};

static void
test_addresses (gconstpointer data)
{
  guint i = GPOINTER_TO_UINT (data);
  g_autoptr (GByteArray) b = address_cases[i].build ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) out
      = vps_resolver_parse_addresses (b->data, b->len, address_cases[i].family, &error);

  if (address_cases[i].want == OK)
    {
      g_autofree char *first = NULL;

      g_assert_no_error (error);
      g_assert_nonnull (out);
      g_assert_cmpuint (out->len, ==, address_cases[i].n);
      first = g_inet_address_to_string (out->pdata[0]);
      g_assert_cmpstr (first, ==, address_cases[i].first);
    }
  else
    {
      g_assert_error (error, VPS_RESOLVER_ERROR, address_cases[i].want);
      g_test_message ("%s", error->message);
      g_assert_null (out);
    }
}

/* every strict prefix of a good answer is refused, never read past */
static void
test_addresses_every_prefix (void)
{
  g_autoptr (GByteArray) b = a_two ();

  for (guint len = 0; len < b->len; len++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree guint8 *copy = g_memdup2 (b->data, len ? len : 1);
      g_autoptr (GPtrArray) out
          = vps_resolver_parse_addresses (copy, len, VPS_RESOLVER_FAMILY_IPV4, &error);

      g_assert_null (out);
      g_assert_error (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_MALFORMED);
    }
}

/* ---- MX answers ----------------------------------------------------------- */

static GByteArray *
mx_unsorted (void)
{
  GByteArray *b = packet (NOERR, 3, QNAME, ns_t_mx);
  put_mx (b, 30, "mx3.example.test");
  put_mx (b, 10, "mx1.example.test");
  put_mx (b, 20, "mx2.example.test");
  return b;
}

static GByteArray *
mx_null (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_mx);
  put_mx (b, 0, ".");
  return b;
}

/* "." with other MX records is not a null MX: skipped */
static GByteArray *
mx_root_among_others (void)
{
  GByteArray *b = packet (NOERR, 2, QNAME, ns_t_mx);
  put_mx (b, 0, ".");
  put_mx (b, 10, "mx1.example.test");
  return b;
}

static GByteArray *
mx_nodata (void)
{
  return packet (NOERR, 0, QNAME, ns_t_mx);
}

static GByteArray *
mx_nxdomain (void)
{
  return packet (NOERR | ns_r_nxdomain, 0, QNAME, ns_t_mx);
}

/* exchange compressed: "mx." + pointer to the question name */
static GByteArray *
mx_compressed (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_mx);
  g_autoptr (GByteArray) rd = g_byte_array_new ();
  static const guint8 label[3] = { 2, 'm', 'x' };

  put16 (rd, 5);
  g_byte_array_append (rd, label, 3);
  put_ptr (rd, NS_HFIXEDSZ);
  put_rr (b, ns_t_mx, rd->data, rd->len);
  return b;
}

/* exchange = pointer to itself (the RDATA's name starts at its offset) */
static GByteArray *
mx_loop (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_mx);
  g_autoptr (GByteArray) rd = g_byte_array_new ();
  /* the name will sit at: current length + owner 2 + type/class/ttl/len 10 + pref 2 */
  guint16 at = (guint16)(b->len + 2 + 10 + 2);

  put16 (rd, 10);
  put_ptr (rd, at);
  put_rr (b, ns_t_mx, rd->data, rd->len);
  return b;
}

static GByteArray *
mx_name_too_long (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_mx);
  g_autofree char *label = g_strnfill (63, 'm');
  g_autofree char *name = g_strjoin (".", label, label, label, label, label, NULL);

  put_mx (b, 10, name);
  return b;
}

static GByteArray *
mx_short_rdata (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_mx);
  static const guint8 rd[2] = { 0, 10 };

  put_rr (b, ns_t_mx, rd, 2);
  return b;
}

/* the name ends before the RDATA does */
static GByteArray *
mx_bytes_after_name (void)
{
  GByteArray *b = packet (NOERR, 1, QNAME, ns_t_mx);
  g_autoptr (GByteArray) rd = g_byte_array_new ();
  guint8 junk = 7;

  put16 (rd, 10);
  put_name (rd, "mx.example.test");
  g_byte_array_append (rd, &junk, 1);
  put_rr (b, ns_t_mx, rd->data, rd->len);
  return b;
}

/* a label with a space and one with a dot inside: not host names */
static GByteArray *
mx_unusable_only (void)
{
  GByteArray *b = packet (NOERR, 2, QNAME, ns_t_mx);
  g_autoptr (GByteArray) rd = g_byte_array_new ();
  static const guint8 odd[] = { 4, 'a', '.', 'b', 'c', 4, 't', 'e', 's', 't', 0 };

  put_mx (b, 10, "bad name.test");
  put16 (rd, 20);
  g_byte_array_append (rd, odd, sizeof odd);
  put_rr (b, ns_t_mx, rd->data, rd->len);
  return b;
}

static GByteArray *
mx_unusable_and_good (void)
{
  GByteArray *b = packet (NOERR, 2, QNAME, ns_t_mx);
  put_mx (b, 5, "bad name.test");
  put_mx (b, 10, "mx1.example.test");
  return b;
}

static GByteArray *
mx_duplicate (void)
{
  GByteArray *b = packet (NOERR, 3, QNAME, ns_t_mx);
  put_mx (b, 20, "MX1.example.test");
  put_mx (b, 10, "mx1.example.test");
  put_mx (b, 30, "mx2.example.test");
  return b;
}

static const struct
{
  const char *path;
  Build build;
  int want;
  const char *expect; /* "pref exchange, ..." in order */
} mx_cases[] = {
  { "sorted", mx_unsorted, OK, "10 mx1.example.test, 20 mx2.example.test, 30 mx3.example.test" },
  { "root-among-others", mx_root_among_others, OK, "10 mx1.example.test" },
  { "compressed", mx_compressed, OK, "5 mx.example.test" },
  { "unusable-and-good", mx_unusable_and_good, OK, "10 mx1.example.test" },
  { "duplicate", mx_duplicate, OK, "10 MX1.example.test, 30 mx2.example.test" },
  { "null-mx", mx_null, VPS_RESOLVER_ERROR_NULL_MX },
  { "nodata", mx_nodata, VPS_RESOLVER_ERROR_NODATA },
  { "nodata-a-only", a_two, VPS_RESOLVER_ERROR_NODATA },
  { "nxdomain", mx_nxdomain, VPS_RESOLVER_ERROR_NXDOMAIN },
  { "servfail", servfail, VPS_RESOLVER_ERROR_TEMPORARY },
  { "loop", mx_loop, VPS_RESOLVER_ERROR_MALFORMED },
  { "name-too-long", mx_name_too_long, VPS_RESOLVER_ERROR_MALFORMED },
  { "short-rdata", mx_short_rdata, VPS_RESOLVER_ERROR_MALFORMED },
  { "bytes-after-name", mx_bytes_after_name, VPS_RESOLVER_ERROR_MALFORMED },
  { "unusable-only", mx_unusable_only, VPS_RESOLVER_ERROR_MALFORMED },
  { "count-over-data", count_over_data, VPS_RESOLVER_ERROR_MALFORMED },
};

static char *
mx_text (GPtrArray *mx)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < mx->len; i++)
    {
      const VpsResolverMx *m = mx->pdata[i];
      g_string_append_printf (s, "%s%u %s", i ? ", " : "", m->preference, m->exchange);
    }
  return g_string_free (s, FALSE);
}

static void
test_mx (gconstpointer data)
{
  guint i = GPOINTER_TO_UINT (data);
  g_autoptr (GByteArray) b = mx_cases[i].build ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) out = vps_resolver_parse_mx (b->data, b->len, &error);

  if (mx_cases[i].want == OK)
    {
      g_autofree char *text = NULL;

      g_assert_no_error (error);
      text = mx_text (out);
      g_assert_cmpstr (text, ==, mx_cases[i].expect);
    }
  else
    {
      g_assert_error (error, VPS_RESOLVER_ERROR, mx_cases[i].want);
      g_test_message ("%s", error->message);
      g_assert_null (out);
    }
}

/* RFC 5321 §5.1: equal preferences come in random order, after the lower
 * ones and before the higher ones */
static void
test_mx_ties (void)
{
  g_autoptr (GByteArray) b = packet (NOERR, 4, QNAME, ns_t_mx);
  gboolean seen_ab = FALSE, seen_ba = FALSE;

  put_mx (b, 20, "b.test");
  put_mx (b, 10, "a.test");
  put_mx (b, 5, "first.test");
  put_mx (b, 10, "c.test");
  for (guint round = 0; round < 200 && !(seen_ab && seen_ba); round++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GPtrArray) out = vps_resolver_parse_mx (b->data, b->len, &error);
      const VpsResolverMx *m1, *m2;

      g_assert_no_error (error);
      g_assert_cmpuint (out->len, ==, 4);
      g_assert_cmpstr (((VpsResolverMx *)out->pdata[0])->exchange, ==, "first.test");
      g_assert_cmpstr (((VpsResolverMx *)out->pdata[3])->exchange, ==, "b.test");
      m1 = out->pdata[1];
      m2 = out->pdata[2];
      g_assert_cmpuint (m1->preference, ==, 10);
      g_assert_cmpuint (m2->preference, ==, 10);
      if (g_str_equal (m1->exchange, "a.test") && g_str_equal (m2->exchange, "c.test"))
        seen_ab = TRUE;
      else if (g_str_equal (m1->exchange, "c.test") && g_str_equal (m2->exchange, "a.test"))
        seen_ba = TRUE;
      else
        g_assert_not_reached ();
    }
  g_assert_true (seen_ab);
  g_assert_true (seen_ba);
}

/* ---- name servers and names ----------------------------------------------- */

static const struct
{
  const char *text;
  const char *canonical; /* NULL: refused */
} nameserver_cases[] = {
  { "127.0.0.1", "127.0.0.1:53" },
  { "127.0.0.1:5353", "127.0.0.1:5353" },
  { "::1", "[::1]:53" },
  { "[::1]:5353", "[::1]:5353" },
  { "[2001:db8::53]", "[2001:db8::53]:53" },
  { "", NULL }, /* the system's servers: accepted, no nameserver */
  { "localhost", NULL },
  { "ns.example.test:53", NULL },
  { "127.0.0.1:0", NULL },
  { "127.0.0.1:65536", NULL },
  { "127.0.0.1:5x", NULL },
  { "127.0.0.1:", NULL },
  { "[::1", NULL },
  { "[::1]53", NULL },
  { "[::1]:", NULL },
  { "[nope]:53", NULL },
  { "300.0.0.1", NULL },
};

static void
test_nameserver (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (nameserver_cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsResolver) r = vps_resolver_new (nameserver_cases[i].text, 0, &error);

      g_test_message ("nameserver \"%s\"", nameserver_cases[i].text);
      if (nameserver_cases[i].canonical != NULL || nameserver_cases[i].text[0] == '\0')
        {
          g_assert_no_error (error);
          g_assert_cmpstr (vps_resolver_get_nameserver (r), ==, nameserver_cases[i].canonical);
          g_assert_cmpint (vps_resolver_get_timeout_ms (r), ==, VPS_RESOLVER_DEFAULT_TIMEOUT_MS);
        }
      else
        {
          g_assert_error (error, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_INVALID_NAME);
          g_assert_null (r);
        }
    }
}

/* refused before any query: the resolver points at a port nobody
 * serves, so a query that went out would fail differently */
static void
test_invalid_names (void)
{
  g_autofree char *label64 = g_strnfill (64, 'a');
  g_autofree char *name64 = g_strconcat (label64, ".test", NULL);
  g_autofree char *long256 = g_strnfill (VPS_RESOLVER_MAX_NAME + 1, 'a');
  g_autofree char *l63 = g_strnfill (63, 'b');
  g_autofree char *wire_over = g_strjoin (".", l63, l63, l63, l63, NULL); /* 4*64 = 256 octets */
  const char *names[]
      = { "",        ".",    "a b.test", "tab\t.test", "a\\046b.test", "caf\xc3\xa9.test",
          "a..test", name64, long256,    wire_over };
  g_autoptr (VpsResolver) r = vps_resolver_new ("127.0.0.1:9", 1000, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autoptr (GError) e1 = NULL;
      g_autoptr (GError) e2 = NULL;
      g_autoptr (GPtrArray) a = NULL;
      g_autoptr (GPtrArray) m = NULL;

      g_test_message ("name \"%s\"", names[i]);
      a = vps_resolver_lookup_addresses (r, names[i], VPS_RESOLVER_FAMILY_ANY, NULL, &e1);
      g_assert_error (e1, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_INVALID_NAME);
      m = vps_resolver_lookup_mx (r, names[i], NULL, &e2);
      g_assert_error (e2, VPS_RESOLVER_ERROR, VPS_RESOLVER_ERROR_INVALID_NAME);
    }
}

static void
test_literals (void)
{
  static const struct
  {
    const char *name;
    VpsResolverFamily family;
    int want;
  } cases[] = {
    { "192.0.2.7", VPS_RESOLVER_FAMILY_ANY, OK },
    { "192.0.2.7", VPS_RESOLVER_FAMILY_IPV4, OK },
    { "2001:db8::7", VPS_RESOLVER_FAMILY_IPV6, OK },
    { "2001:db8::7", VPS_RESOLVER_FAMILY_IPV4, VPS_RESOLVER_ERROR_NODATA },
    { "192.0.2.7", VPS_RESOLVER_FAMILY_IPV6, VPS_RESOLVER_ERROR_NODATA },
  };
  g_autoptr (VpsResolver) r = vps_resolver_new ("127.0.0.1:9", 1000, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GPtrArray) out
          = vps_resolver_lookup_addresses (r, cases[i].name, cases[i].family, NULL, &error);

      if (cases[i].want == OK)
        {
          g_autofree char *s = NULL;

          g_assert_no_error (error);
          g_assert_cmpuint (out->len, ==, 1);
          s = g_inet_address_to_string (out->pdata[0]);
          g_assert_cmpstr (s, ==, cases[i].name);
        }
      else
        g_assert_error (error, VPS_RESOLVER_ERROR, cases[i].want);
    }
}

static void
test_error_is_temporary (void)
{
  for (int code = VPS_RESOLVER_ERROR_NXDOMAIN; code <= VPS_RESOLVER_ERROR_CANCELLED; code++)
    {
      g_autoptr (GError) e = g_error_new_literal (VPS_RESOLVER_ERROR, code, "x");

      g_assert_cmpint (vps_resolver_error_is_temporary (e), ==,
                       code == VPS_RESOLVER_ERROR_TEMPORARY
                           || code == VPS_RESOLVER_ERROR_MALFORMED);
    }
  g_assert_false (vps_resolver_error_is_temporary (NULL));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (address_cases); i++)
    {
      g_autofree char *path
          = g_strconcat ("/vps/resolver/parse/addresses/", address_cases[i].path, NULL);
      g_test_add_data_func (path, GUINT_TO_POINTER (i), test_addresses);
    }
  g_test_add_func ("/vps/resolver/parse/addresses/every-prefix", test_addresses_every_prefix);
  for (guint i = 0; i < G_N_ELEMENTS (mx_cases); i++)
    {
      g_autofree char *path = g_strconcat ("/vps/resolver/parse/mx/", mx_cases[i].path, NULL);
      g_test_add_data_func (path, GUINT_TO_POINTER (i), test_mx);
    }
  g_test_add_func ("/vps/resolver/parse/mx/ties-random", test_mx_ties);
  g_test_add_func ("/vps/resolver/nameserver", test_nameserver);
  g_test_add_func ("/vps/resolver/lookup/invalid-name", test_invalid_names);
  g_test_add_func ("/vps/resolver/lookup/literal", test_literals);
  g_test_add_func ("/vps/resolver/error-is-temporary", test_error_is_temporary);
  return g_test_run ();
}
