/* SPDX-License-Identifier: MIT
 *
 * smtp-ptr.c — the client's verified reverse name (client.ptr), looked up
 * before the connect stage only when the rules read it: a PTR lookup, then
 * a forward lookup of that name that must give the client's address back
 * (Postfix's "verified" client name; a name that does not map back is a
 * forgery as far as policy is concerned, and client.ptr stays "").
 *
 * Contract (smtp-private.h): vps_smtp_ptr_lookup() makes the connection
 * busy, sets the session's client PTR (or leaves it empty), then calls
 * `done`.  Lookups go through GResolver (the system resolver; tests install
 * a fake one), bounded by the connection's command timeout; a failure or a
 * timeout is not an error for the session, only an unknown name.
 */
#include "mta/smtp-private.h"

#include <string.h>

#include "vps/log.h"

typedef struct
{
  VpsSmtpConn *conn;
  void (*done) (VpsSmtpConn *conn);
  GInetAddress *addr;
  char *name;
} PtrCall;

static void
ptr_finish (PtrCall *call, const char *verified)
{
  VpsSmtpConn *conn = call->conn;

  if (!conn->closed)
    {
      if (verified != NULL)
        vps_session_set_client (conn->session, conn->client_ip,
                                vps_session_get_client_port (conn->session), verified);
      vps_debug (vps_smtp_conn_id (conn), "smtp: client name %s", verified ? verified : "unknown");
      conn->busy = FALSE;
      call->done (conn);
      if (!conn->busy)
        vps_smtp_conn_flush (conn);
    }
  vps_smtp_conn_unref (conn);
  g_clear_object (&call->addr);
  g_free (call->name);
  g_free (call);
}

static void
forward_done (GObject *source, GAsyncResult *res, gpointer data)
{
  PtrCall *call = data;
  GList *addrs = g_resolver_lookup_by_name_finish (G_RESOLVER (source), res, NULL);
  gboolean confirmed = FALSE;

  for (GList *l = addrs; l != NULL && !confirmed; l = l->next)
    confirmed = g_inet_address_equal (l->data, call->addr);
  g_resolver_free_addresses (addrs);
  ptr_finish (call, confirmed ? call->name : NULL);
}

/* A PTR answer is the remote side's word: only a plain host name goes on
 * (it ends up in rules and in the Received header). */
static gboolean
plain_host_name (const char *name)
{
  gsize n = strlen (name);

  if (n == 0 || n > 253)
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '.' && *p != '-')
      return FALSE;
  return TRUE;
}

static void
reverse_done (GObject *source, GAsyncResult *res, gpointer data)
{
  PtrCall *call = data;
  char *name = g_resolver_lookup_by_address_finish (G_RESOLVER (source), res, NULL);

  if (name == NULL || call->conn->closed || !plain_host_name (name))
    {
      g_free (name);
      ptr_finish (call, NULL);
      return;
    }
  call->name = name;
  g_resolver_lookup_by_name_async (G_RESOLVER (source), name, call->conn->cancellable, forward_done,
                                   call);
}

void
vps_smtp_ptr_lookup (VpsSmtpConn *conn, void (*done) (VpsSmtpConn *conn))
{
  g_autoptr (GResolver) resolver = NULL;
  PtrCall *call;
  GInetAddress *addr = g_inet_address_new_from_string (conn->client_ip);

  if (addr == NULL
      || !rules_program_reads (vps_engine_get_program (conn->engine), RULES_VAR_CLIENT_PTR))
    {
      g_clear_object (&addr);
      done (conn);
      return;
    }
  call = g_new0 (PtrCall, 1);
  call->conn = vps_smtp_conn_ref (conn);
  call->done = done;
  call->addr = addr;
  resolver = g_resolver_get_default ();
  vps_smtp_conn_begin_async (conn);
  g_resolver_lookup_by_address_async (resolver, addr, conn->cancellable, reverse_done, call);
}
