/* SPDX-License-Identifier: MIT
 *
 * listen.c — listening sockets with one accept path per worker (see
 * listen.h for the contract).
 *
 * Raw file descriptors and g_unix_fd_source are used rather than
 * GSocketService: the accept loop has to run on a chosen worker context,
 * several contexts share one unix socket, and SO_REUSEPORT must be set
 * before bind(), none of which GSocketListener lets us say.
 */
#include "vps/listen.h"

#include <errno.h>
#include <glib-unix.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vps/log.h"

G_DEFINE_QUARK (vps - listen - error - quark, vps_listen_error)

typedef struct
{
  int fd;
  GSource *source;
} ListenSlot;

struct _VpsListener
{
  char *name;
  char *address; /* with the real port */
  char *unix_path;
  guint16 port;
  gboolean is_inet;
  ListenSlot slots[VPS_LISTEN_MAX_CONTEXTS];
  guint n_slots;
  GMutex lock; /* guards the sources against concurrent close */
  gboolean closed;
  VpsAcceptFunc func;
  gpointer user_data;
};

gboolean
vps_listen_parse_address (const char *address, char **host, guint16 *port, char **path,
                          GError **error)
{
  const char *rest;

  *host = NULL;
  *path = NULL;
  *port = 0;
  if (g_str_has_prefix (address, "unix:"))
    {
      rest = address + strlen ("unix:");
      if (*rest == '\0' || strlen (rest) >= sizeof (((struct sockaddr_un *)0)->sun_path))
        {
          g_set_error (error, VPS_LISTEN_ERROR, VPS_LISTEN_ERROR_ADDRESS,
                       "%s: unix socket path empty or too long", address);
          return FALSE;
        }
      *path = g_strdup (rest);
      return TRUE;
    }
  if (g_str_has_prefix (address, "inet:"))
    {
      const char *colon;
      guint64 p;
      char *end = NULL;

      rest = address + strlen ("inet:");
      if (*rest == '[')
        {
          const char *close = strchr (rest, ']');

          if (close == NULL || close[1] != ':')
            goto bad;
          *host = g_strndup (rest + 1, close - rest - 1);
          colon = close + 1;
        }
      else
        {
          colon = strrchr (rest, ':');
          if (colon == NULL || colon == rest)
            goto bad;
          *host = g_strndup (rest, colon - rest);
        }
      p = g_ascii_strtoull (colon + 1, &end, 10);
      if (colon[1] == '\0' || *end != '\0' || p > 65535)
        goto bad;
      *port = (guint16)p;
      return TRUE;
    }
bad:
  g_clear_pointer (host, g_free);
  g_set_error (error, VPS_LISTEN_ERROR, VPS_LISTEN_ERROR_ADDRESS,
               "%s: expected inet:HOST:PORT, inet:[IPV6]:PORT or unix:/path", address);
  return FALSE;
}

void
vps_socket_set_nodelay (GSocket *socket)
{
  int one = 1;
  GSocketFamily family = g_socket_get_family (socket);

  if (family == G_SOCKET_FAMILY_IPV4 || family == G_SOCKET_FAMILY_IPV6)
    setsockopt (g_socket_get_fd (socket), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void
vps_socket_quickack (GSocket *socket)
{
  int one = 1;
  GSocketFamily family = g_socket_get_family (socket);

  if (family == G_SOCKET_FAMILY_IPV4 || family == G_SOCKET_FAMILY_IPV6)
    setsockopt (g_socket_get_fd (socket), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static gboolean
on_acceptable (gint fd, GIOCondition condition, gpointer data)
{
  VpsListener *l = data;

  /* Drain the backlog: several connections may be waiting. */
  for (;;)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GSocket) socket = NULL;
      int cfd = accept4 (fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

      if (cfd < 0)
        {
          if (errno == EINTR || errno == ECONNABORTED)
            continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK)
            vps_log_once ("listen-accept", 60, G_LOG_LEVEL_WARNING, NULL, "%s: accept: %s", l->name,
                          g_strerror (errno));
          break;
        }
      socket = g_socket_new_from_fd (cfd, &error);
      if (socket == NULL)
        {
          close (cfd);
          vps_warning (NULL, "%s: accepted socket: %s", l->name, error->message);
          continue;
        }
      g_socket_set_blocking (socket, FALSE);
      vps_socket_set_nodelay (socket);
      l->func (g_steal_pointer (&socket), l->user_data);
    }
  return G_SOURCE_CONTINUE;
}

static int
bind_inet (const char *host, guint16 port, gboolean reuseport, guint16 *bound_port, GError **error)
{
  struct addrinfo hints = { 0 }, *res = NULL;
  char portbuf[8];
  int fd, one = 1, rc;

  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  g_snprintf (portbuf, sizeof portbuf, "%u", port);
  rc = getaddrinfo (*host ? host : NULL, portbuf, &hints, &res);
  if (rc != 0)
    {
      g_set_error (error, VPS_LISTEN_ERROR, VPS_LISTEN_ERROR_ADDRESS, "%s: %s", host,
                   gai_strerror (rc));
      return -1;
    }
  fd = socket (res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    goto fail;
  setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && setsockopt (fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    goto fail;
  if (res->ai_family == AF_INET6)
    setsockopt (fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind (fd, res->ai_addr, res->ai_addrlen) < 0 || listen (fd, VPS_LISTEN_BACKLOG) < 0)
    goto fail;
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;

    if (getsockname (fd, (struct sockaddr *)&ss, &sl) == 0)
      *bound_port = ntohs (ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port);
  }
  freeaddrinfo (res);
  return fd;

fail:
  {
    int saved = errno;

    g_set_error (error, VPS_LISTEN_ERROR, VPS_LISTEN_ERROR_BIND, "[%s]:%u: %s", host, port,
                 g_strerror (saved));
    if (fd >= 0)
      close (fd);
    freeaddrinfo (res);
    return -1;
  }
}

static int
bind_unix (const char *path, GError **error)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int fd;

  g_strlcpy (sun.sun_path, path, sizeof sun.sun_path);
  /* A socket file left by a dead process is removed; one that still
   * answers belongs to a running daemon and must not be stolen. */
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect (fd, (struct sockaddr *)&sun, sizeof sun) == 0)
    {
      close (fd);
      g_set_error (error, VPS_LISTEN_ERROR, VPS_LISTEN_ERROR_BIND, "%s: in use by another process",
                   path);
      return -1;
    }
  if (fd >= 0)
    close (fd);
  unlink (path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind (fd, (struct sockaddr *)&sun, sizeof sun) < 0 || chmod (path, 0660) < 0
      || listen (fd, VPS_LISTEN_BACKLOG) < 0)
    {
      int saved = errno;

      g_set_error (error, VPS_LISTEN_ERROR, VPS_LISTEN_ERROR_BIND, "%s: %s", path,
                   g_strerror (saved));
      if (fd >= 0)
        close (fd);
      return -1;
    }
  return fd;
}

VpsListener *
vps_listener_new (const char *name, const char *address, GMainContext **contexts, guint n_contexts,
                  VpsAcceptFunc func, gpointer user_data, GError **error)
{
  g_autofree char *host = NULL;
  g_autofree char *path = NULL;
  guint16 port;
  VpsListener *l;

  g_return_val_if_fail (n_contexts >= 1 && n_contexts <= VPS_LISTEN_MAX_CONTEXTS, NULL);
  if (!vps_listen_parse_address (address, &host, &port, &path, error))
    return NULL;

  l = g_new0 (VpsListener, 1);
  l->name = g_strdup (name);
  l->func = func;
  l->user_data = user_data;
  g_mutex_init (&l->lock);
  for (guint i = 0; i < G_N_ELEMENTS (l->slots); i++)
    l->slots[i].fd = -1;

  if (path != NULL)
    {
      int fd = bind_unix (path, error);

      if (fd < 0)
        {
          vps_listener_free (l);
          return NULL;
        }
      l->unix_path = g_strdup (path);
      l->address = g_strdup_printf ("unix:%s", path);
      /* One socket, an accept source on every context. */
      l->slots[0].fd = fd;
      l->n_slots = n_contexts;
      for (guint i = 1; i < n_contexts; i++)
        l->slots[i].fd = -2; /* shares slot 0's fd */
    }
  else
    {
      guint16 bound = port;

      l->is_inet = TRUE;
      l->n_slots = n_contexts;
      for (guint i = 0; i < n_contexts; i++)
        {
          l->slots[i].fd = bind_inet (host, bound, TRUE, &bound, error);
          if (l->slots[i].fd < 0)
            {
              vps_listener_free (l);
              return NULL;
            }
        }
      l->port = bound;
      l->address = strchr (host, ':') ? g_strdup_printf ("inet:[%s]:%u", host, bound)
                                      : g_strdup_printf ("inet:%s:%u", host, bound);
    }

  for (guint i = 0; i < l->n_slots; i++)
    {
      int fd = l->slots[i].fd == -2 ? l->slots[0].fd : l->slots[i].fd;
      GSource *src = g_unix_fd_source_new (fd, G_IO_IN);

      g_source_set_callback (src, G_SOURCE_FUNC (on_acceptable), l, NULL);
      g_source_attach (src, contexts[i]);
      l->slots[i].source = src;
    }
  vps_notice (NULL, "%s: listening on %s (%u workers)", name, l->address, n_contexts);
  return l;
}

guint16
vps_listener_get_port (const VpsListener *listener)
{
  return listener->port;
}

const char *
vps_listener_get_address (const VpsListener *listener)
{
  return listener->address;
}

void
vps_listener_close (VpsListener *l)
{
  g_mutex_lock (&l->lock);
  if (!l->closed)
    {
      for (guint i = 0; i < l->n_slots; i++)
        if (l->slots[i].source)
          g_source_destroy (l->slots[i].source);
      /* Stop listening too: a listening socket left open keeps completing
       * handshakes into its backlog, and those clients would wait for a
       * greeting until we exit instead of trying the next MX.  shutdown()
       * rather than close(): a worker may be inside accept() on it right
       * now, and the fd must not be reused under it (free() closes). */
      for (guint i = 0; i < G_N_ELEMENTS (l->slots); i++)
        if (l->slots[i].fd >= 0)
          shutdown (l->slots[i].fd, SHUT_RDWR);
      l->closed = TRUE;
    }
  g_mutex_unlock (&l->lock);
}

void
vps_listener_free (VpsListener *l)
{
  if (l == NULL)
    return;
  vps_listener_close (l);
  for (guint i = 0; i < G_N_ELEMENTS (l->slots); i++)
    {
      g_clear_pointer (&l->slots[i].source, g_source_unref);
      if (l->slots[i].fd >= 0)
        close (l->slots[i].fd);
    }
  if (l->unix_path)
    unlink (l->unix_path);
  g_mutex_clear (&l->lock);
  g_free (l->unix_path);
  g_free (l->address);
  g_free (l->name);
  g_free (l);
}
