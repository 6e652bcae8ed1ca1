/* SPDX-License-Identifier: MIT
 *
 * listen.h — listening sockets for the front ends (milter, policy, gRPC
 * health, vsmtpd), one accept path per worker thread.
 *
 * An address is "inet:HOST:PORT", "inet:[IPV6]:PORT" or "unix:PATH" (the
 * forms of vps.conf's socket type).  For inet every worker gets its own
 * socket bound with SO_REUSEPORT, so the kernel spreads connections over
 * the workers (ARCHITECTURE.md, "Process and thread model"); port 0 binds
 * the first socket to a free port and the others to the same one.  A unix
 * socket is bound once (a stale socket file is removed first; a live one
 * is an error) and every worker accepts from it.
 *
 * Accepted sockets are non-blocking, close-on-exec, with TCP_NODELAY on TCP
 * (small replies must not wait for Nagle: MILTER.md, "The 40 ms stall").  The
 * accept callback runs on the worker's context, which is also the thread-
 * default context there.  vps_listener_close() stops accepting (drain)
 * without touching the connections already accepted.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define VPS_LISTEN_ERROR (vps_listen_error_quark ())
GQuark vps_listen_error_quark (void);

typedef enum
{
  VPS_LISTEN_ERROR_ADDRESS, /* not inet:HOST:PORT or unix:/path */
  VPS_LISTEN_ERROR_BIND,    /* socket, bind or listen failed */
} VpsListenError;

#define VPS_LISTEN_BACKLOG 1024
#define VPS_LISTEN_MAX_CONTEXTS 64

typedef struct _VpsListener VpsListener;

/* Called on the worker context that accepted `socket` (a new reference the
 * callee takes over). */
typedef void (*VpsAcceptFunc) (GSocket *socket, gpointer user_data);

/* Bind `address` and accept on each of `contexts` (n of them).  `name`
 * labels log lines ("milter"). */
VpsListener *vps_listener_new (const char *name, const char *address, GMainContext **contexts,
                               guint n_contexts, VpsAcceptFunc func, gpointer user_data,
                               GError **error);
/* The bound port (inet), 0 for unix. */
guint16 vps_listener_get_port (const VpsListener *listener);
/* The address with the real port: "inet:127.0.0.1:10030" / "unix:/path". */
const char *vps_listener_get_address (const VpsListener *listener);
/* Stop accepting; safe to call from any thread, more than once. */
void vps_listener_close (VpsListener *listener);
void vps_listener_free (VpsListener *listener);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VpsListener, vps_listener_free)

/* Parse an address (also used by the config checks and the connectors):
 * host and port for inet (host without brackets), path for unix. */
gboolean vps_listen_parse_address (const char *address, char **host, guint16 *port, char **path,
                                   GError **error);

/* Set TCP_NODELAY (and nothing on unix sockets). */
void vps_socket_set_nodelay (GSocket *socket);
/* Re-arm TCP_QUICKACK after a read: the kernel clears it by itself, and a
 * peer that sends packets we do not answer (milter macros) would otherwise
 * wait for our delayed ACK before its next small write (MILTER.md). */
void vps_socket_quickack (GSocket *socket);

G_END_DECLS
