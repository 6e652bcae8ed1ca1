/* SPDX-License-Identifier: MIT
 *
 * fake-nameserver.h — a fake name server on loopback for the resolver
 * tests: a thread answering UDP queries from a table (addresses, MX sets,
 * null MX, NXDOMAIN, NODATA, SERVFAIL, silence, hostile answers), that can
 * hold its answers back.  Header-only (static inline): each test program
 * includes it once.
 */
#pragma once

#include <arpa/nameser.h>
#include <gio/gio.h>
#include <string.h>

#include "tests/vps/resolver-test-util.h"

/* ---- the fake name server ------------------------------------------------- */

typedef struct
{
  GSocket *socket;
  char *address; /* "127.0.0.1:PORT" / "[::1]:PORT" */
  GThread *thread;
  gint stop;
  gint queries;
  /* "silent.test" queries not answered yet, and whether they now get a
   * SERVFAIL: a test that leaves libresolv waiting releases them, so no
   * pool thread is still blocked when the program exits (valgrind would
   * see its libresolv state as lost) */
  GMutex lock;
  GPtrArray *held; /* GBytes: source address + query */
  gboolean released;
} FakeServer;

/* a record owned by the question name (offset 12) */
static inline void
put_rr (GByteArray *b, guint16 type, const guint8 *rdata, guint16 rdlen)
{
  put16 (b, 0xc000 | NS_HFIXEDSZ);
  put16 (b, type);
  put16 (b, ns_c_in);
  put16 (b, 0);
  put16 (b, 60);
  put16 (b, rdlen);
  g_byte_array_append (b, rdata, rdlen);
}

static inline void
put_a (GByteArray *b, const char *ip)
{
  g_autoptr (GInetAddress) a = g_inet_address_new_from_string (ip);
  gboolean v6 = g_inet_address_get_family (a) == G_SOCKET_FAMILY_IPV6;

  put_rr (b, v6 ? ns_t_aaaa : ns_t_a, g_inet_address_to_bytes (a), v6 ? 16 : 4);
}

static inline void
put_mx (GByteArray *b, guint16 pref, const char *exchange)
{
  g_autoptr (GByteArray) rd = g_byte_array_new ();

  put16 (rd, pref);
  put_name (rd, exchange);
  put_rr (b, ns_t_mx, rd->data, rd->len);
}

/* Append the answer records for (name, type) to b, counting them in *an;
 * returns the RCODE, or -1 for silence.  *an_extra inflates ANCOUNT
 * beyond the records (a hostile answer). */
static inline int
answer (const char *name, int type, GByteArray *b, guint *an, guint *an_extra)
{
  static const struct
  {
    const char *name;
    int type;
    guint16 pref; /* MX */
    const char *data;
  } zone[] = {
    { "a.test", ns_t_a, 0, "192.0.2.1" },
    { "a.test", ns_t_a, 0, "192.0.2.2" },
    { "a.test", ns_t_aaaa, 0, "2001:db8::1" },
    { "v4.test", ns_t_a, 0, "192.0.2.3" },
    { "helo.test", ns_t_a, 0, "192.0.2.3" },
    { "v6.test", ns_t_aaaa, 0, "2001:db8::6" },
    { "2.0.0.127.zen.test", ns_t_a, 0, "127.0.0.2" },
    { "2.2.0.192.zen.test", ns_t_a, 0, "10.0.0.1" },
    { "mx.test", ns_t_mx, 20, "mx2.test" },
    { "mx.test", ns_t_mx, 10, "mx1.test" },
    { "mx.test", ns_t_mx, 10, "mx1b.test" },
    { "null.test", ns_t_mx, 0, "." },
    { "hostile.test", ns_t_mx, 10, "mx1.test" },
  };
  gboolean known = FALSE;

  if (g_str_equal (name, "silent.test"))
    return -1;
  if (g_str_equal (name, "servfail.test") || g_str_equal (name, "3.2.0.192.zen.test"))
    return ns_r_servfail;
  if (g_str_equal (name, "hostile.test"))
    *an_extra = 4;
  if (g_str_equal (name, "loop.test"))
    {
      g_autoptr (GByteArray) rd = g_byte_array_new ();
      /* the exchange is a pointer to itself: after owner 2, fixed 10, pref 2 */
      guint16 at = (guint16)(b->len + 2 + 10 + 2);

      if (type != ns_t_mx)
        return ns_r_noerror;
      put16 (rd, 10);
      put16 (rd, 0xc000 | at);
      put_rr (b, ns_t_mx, rd->data, rd->len);
      (*an)++;
      return ns_r_noerror;
    }
  for (guint i = 0; i < G_N_ELEMENTS (zone); i++)
    {
      if (!g_str_equal (zone[i].name, name))
        continue;
      known = TRUE;
      if (zone[i].type != type)
        continue;
      if (type == ns_t_mx)
        put_mx (b, zone[i].pref, zone[i].data);
      else
        put_a (b, zone[i].data);
      (*an)++;
    }
  return known ? ns_r_noerror : ns_r_nxdomain;
}

/* One query: header, a question of plain labels, QTYPE, QCLASS. */
static inline GByteArray *
respond (const guint8 *q, gsize len)
{
  GString *name = g_string_new (NULL);
  gsize p = NS_HFIXEDSZ;
  g_autoptr (GByteArray) b = g_byte_array_new ();
  guint an = 0, an_extra = 0;
  int type, rcode;

  if (len < NS_HFIXEDSZ + 5 || q[4] != 0 || q[5] != 1)
    return g_string_free (name, TRUE), NULL;
  while (p < len && q[p] != 0)
    {
      guint l = q[p];

      if (l > 63 || p + 1 + l >= len)
        return g_string_free (name, TRUE), NULL;
      if (name->len > 0)
        g_string_append_c (name, '.');
      g_string_append_len (name, (const char *)q + p + 1, l);
      p += 1 + l;
    }
  if (p + 5 > len)
    return g_string_free (name, TRUE), NULL;
  p++;
  type = (q[p] << 8) | q[p + 1];
  p += 4;
  /* header, then the question copied as asked */
  g_byte_array_append (b, q, 2);
  put16 (b, 0);
  put16 (b, 1);
  put16 (b, 0);
  put16 (b, 0);
  put16 (b, 0);
  g_byte_array_append (b, q + NS_HFIXEDSZ, (guint)(p - NS_HFIXEDSZ));
  {
    g_autofree char *lower = g_ascii_strdown (name->str, -1);

    g_string_free (name, TRUE);
    rcode = answer (lower, type, b, &an, &an_extra);
  }
  if (rcode < 0)
    return NULL;
  b->data[2] = 0x85; /* QR AA RD */
  b->data[3] = 0x80 | (guint8)rcode;
  b->data[6] = (guint8)((an + an_extra) >> 8);
  b->data[7] = (guint8)(an + an_extra);
  return g_steal_pointer (&b);
}

/* the query echoed with QR and SERVFAIL, question included */
static inline GByteArray *
servfail (const guint8 *q, gsize len)
{
  GByteArray *b = g_byte_array_new ();

  g_byte_array_append (b, q, (guint)len);
  b->data[2] = 0x81;
  b->data[3] = 0x80 | ns_r_servfail;
  return b;
}

typedef struct
{
  GSocketAddress *from;
  GBytes *query;
} Held;

static inline Held *
held_new (GSocketAddress *from, const guint8 *q, gsize len)
{
  Held *h = g_new0 (Held, 1);

  h->from = g_object_ref (from);
  h->query = g_bytes_new (q, len);
  return h;
}

static inline void
held_free (gpointer data)
{
  Held *h = data;

  g_object_unref (h->from);
  g_bytes_unref (h->query);
  g_free (h);
}

/* answer the held silent queries with SERVFAIL, and later ones too */
static inline void
server_release (FakeServer *s)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&s->lock);

  s->released = TRUE;
  for (guint i = 0; i < s->held->len; i++)
    {
      Held *h = s->held->pdata[i];
      gsize len;
      const guint8 *q = g_bytes_get_data (h->query, &len);
      g_autoptr (GByteArray) reply = servfail (q, len);

      g_socket_send_to (s->socket, h->from, (const char *)reply->data, reply->len, NULL, NULL);
    }
  g_ptr_array_set_size (s->held, 0);
}

static inline void
server_hold (FakeServer *s)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&s->lock);

  s->released = FALSE;
}

static inline gpointer
server_thread (gpointer data)
{
  FakeServer *s = data;
  guint8 buf[4096];

  while (!g_atomic_int_get (&s->stop))
    {
      g_autoptr (GSocketAddress) from = NULL;
      g_autoptr (GByteArray) reply = NULL;
      gssize n;

      if (!g_socket_condition_timed_wait (s->socket, G_IO_IN, 50000, NULL, NULL))
        continue;
      n = g_socket_receive_from (s->socket, &from, (char *)buf, sizeof buf, NULL, NULL);
      if (n <= 0)
        continue;
      g_atomic_int_inc (&s->queries);
      reply = respond (buf, (gsize)n);
      if (reply == NULL && n >= NS_HFIXEDSZ)
        {
          g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&s->lock);

          if (s->released)
            reply = servfail (buf, (gsize)n);
          else
            g_ptr_array_add (s->held, held_new (from, buf, (gsize)n));
        }
      if (reply != NULL)
        g_socket_send_to (s->socket, from, (const char *)reply->data, reply->len, NULL, NULL);
    }
  return NULL;
}

static inline FakeServer *
server_start (const char *ip)
{
  FakeServer *s = g_new0 (FakeServer, 1);
  g_autoptr (GInetAddress) a = g_inet_address_new_from_string (ip);
  g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (a, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GError) error = NULL;
  guint16 port;

  s->socket = g_socket_new (g_inet_address_get_family (a), G_SOCKET_TYPE_DATAGRAM,
                            G_SOCKET_PROTOCOL_UDP, &error);
  g_assert_no_error (error);
  g_socket_bind (s->socket, sa, FALSE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (s->socket, &error);
  g_assert_no_error (error);
  port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  s->address = g_inet_address_get_family (a) == G_SOCKET_FAMILY_IPV6
                   ? g_strdup_printf ("[%s]:%u", ip, port)
                   : g_strdup_printf ("%s:%u", ip, port);
  g_mutex_init (&s->lock);
  s->held = g_ptr_array_new_with_free_func (held_free);
  s->thread = g_thread_new ("fake-dns", server_thread, s);
  return s;
}

static inline void
server_stop (FakeServer *s)
{
  server_release (s);
  g_atomic_int_set (&s->stop, 1);
  g_thread_join (s->thread);
  g_ptr_array_unref (s->held);
  g_mutex_clear (&s->lock);
  g_object_unref (s->socket);
  g_free (s->address);
  g_free (s);
}
