/* SPDX-License-Identifier: MIT
 *
 * grpc-core.c — gRPC C core wrapper, the server side (see grpc-core.h for
 * the contract; the client side is grpc-core-client.c).  Verified against libgrpc 1.51 (core 29): GRPC.md lists the
 * names that changed and the pitfalls this file avoids.
 *
 * Every operation started on the core carries a Tag naming what completed
 * and whose it is; the completion-queue thread is the only reader of the
 * queue.  Per call: one RECV_CLOSE_ON_SERVER batch posted at arrival (it
 * completes when the call ends, cancelled or not), one RECV_MESSAGE at a
 * time, then SEND_MESSAGE batches (streaming) and one final batch
 * SEND_INITIAL_METADATA? + SEND_MESSAGE? + SEND_STATUS_FROM_SERVER.  A call
 * holds one reference per outstanding batch plus one for its unanswered
 * reply, so the grpc_call is released only when nothing can complete on it
 * any more.
 */
#include "vps/grpc-core.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <string.h>

#include "vps/grpc-core-private.h"
#include "vps/log.h"

G_DEFINE_QUARK (vps - grpc - error - quark, vps_grpc_error)

/* How long vps_grpc_core_free() waits for the core to finish its shutdown
 * after cancelling every call. */
#define VPS_GRPC_SHUTDOWN_WAIT_US (5 * G_USEC_PER_SEC)

typedef enum
{
  TAG_REQUEST,
  TAG_RECV,
  TAG_SEND,
  TAG_FINISH,
  TAG_CLOSE,
  TAG_SHUTDOWN,
} TagKind;

typedef struct
{
  TagKind kind;
  gpointer owner; /* Slot*, VpsGrpcCall* or VpsGrpcCore* */
} Tag;

typedef struct
{
  Tag tag;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array metadata;
} Slot;

struct _VpsGrpcCore
{
  char *name;
  guint64 max_message;
  guint n_slots;
  Slot *slots;
  VpsGrpcHandler handler;
  gpointer user_data;

  grpc_server *server;
  grpc_completion_queue *cq;
  GThread *thread;
  gboolean started;
  gint shutting_down; /* atomic */
  gint n_calls;       /* atomic: accepted, not finished */
  Tag shutdown_tag;

  GMutex lock; /* guards shutdown_done */
  GCond cond;
  gboolean shutdown_done;
};

struct _VpsGrpcCall
{
  gint ref; /* atomic */
  VpsGrpcCore *core;
  grpc_call *call;
  char *method;
  char *peer;
  gint64 deadline;
  gint64 start;
  gboolean authenticated;

  Tag recv_tag, send_tag, finish_tag, close_tag;
  grpc_byte_buffer *recv_buf;
  grpc_byte_buffer *send_buf;  /* of the send or finish batch in flight */
  grpc_byte_buffer *final_buf; /* of the finish batch */
  grpc_slice details;
  gboolean has_details;
  gboolean sent_initial; /* initial metadata went out with a send */
  gint finished;         /* atomic: finish was called */
  int cancelled;         /* written by the core at RECV_CLOSE_ON_SERVER */
};

static const char *const status_names[] = {
  "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
  "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
  "DATA_LOSS", "UNAUTHENTICATED",
};

const char *
vps_grpc_status_name (VpsGrpcStatus status)
{
  if ((guint)status < G_N_ELEMENTS (status_names))
    return status_names[status];
  return "UNKNOWN";
}

/* ---- calls ---------------------------------------------------------------- */

VpsGrpcCall *
vps_grpc_call_ref (VpsGrpcCall *call)
{
  g_atomic_int_inc (&call->ref);
  return call;
}

void
vps_grpc_call_unref (VpsGrpcCall *call)
{
  if (call == NULL || !g_atomic_int_dec_and_test (&call->ref))
    return;
  /* no batch can complete any more: every batch held a reference */
  if (call->recv_buf != NULL)
    grpc_byte_buffer_destroy (call->recv_buf);
  if (call->send_buf != NULL)
    grpc_byte_buffer_destroy (call->send_buf);
  if (call->final_buf != NULL)
    grpc_byte_buffer_destroy (call->final_buf);
  if (call->has_details)
    grpc_slice_unref (call->details);
  grpc_call_unref (call->call);
  g_free (call->method);
  g_free (call->peer);
  g_free (call);
}

const char *
vps_grpc_call_get_method (const VpsGrpcCall *call)
{
  return call->method;
}

const char *
vps_grpc_call_get_peer (const VpsGrpcCall *call)
{
  return call->peer;
}

gint64
vps_grpc_call_get_deadline (const VpsGrpcCall *call)
{
  return call->deadline;
}

gint64
vps_grpc_call_remaining_us (const VpsGrpcCall *call)
{
  if (call->deadline == G_MAXINT64)
    return G_MAXINT64;
  return call->deadline - g_get_monotonic_time ();
}

gint64
vps_grpc_call_get_start (const VpsGrpcCall *call)
{
  return call->start;
}

gboolean
vps_grpc_call_peer_authenticated (const VpsGrpcCall *call)
{
  return call->authenticated;
}

VpsGrpcCore *
vps_grpc_call_get_core (const VpsGrpcCall *call)
{
  return call->core;
}

grpc_byte_buffer *
vps_grpc_buffer_from_bytes (GBytes *bytes)
{
  gsize len = 0;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  grpc_slice slice = grpc_slice_from_copied_buffer ((const char *)data, len);
  grpc_byte_buffer *buf = grpc_raw_byte_buffer_create (&slice, 1);

  /* the buffer took its own reference */
  grpc_slice_unref (slice);
  return buf;
}

/* The message may arrive split into slices (or compressed): readall
 * joins and decompresses. */
GBytes *
vps_grpc_bytes_from_buffer (grpc_byte_buffer *buf)
{
  grpc_byte_buffer_reader reader;
  grpc_slice slice;
  GBytes *bytes;

  if (!grpc_byte_buffer_reader_init (&reader, buf))
    return NULL;
  slice = grpc_byte_buffer_reader_readall (&reader);
  bytes = g_bytes_new (GRPC_SLICE_START_PTR (slice), GRPC_SLICE_LENGTH (slice));
  grpc_slice_unref (slice);
  grpc_byte_buffer_reader_destroy (&reader);
  return bytes;
}

static gboolean
start_batch (VpsGrpcCall *call, const grpc_op *ops, size_t n, Tag *tag)
{
  grpc_call_error err;

  vps_grpc_call_ref (call);
  err = grpc_call_start_batch (call->call, ops, n, tag, NULL);
  if (err != GRPC_CALL_OK)
    {
      vps_warning (NULL, "grpc: %s: %s: batch refused (%d)", call->core->name, call->method,
                   (int)err);
      vps_grpc_call_unref (call);
      return FALSE;
    }
  return TRUE;
}

static void
post_recv (VpsGrpcCall *call)
{
  grpc_op op;

  memset (&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &call->recv_buf;
  if (!start_batch (call, &op, 1, &call->recv_tag))
    call->core->handler (call, NULL, call->core->user_data);
}

void
vps_grpc_call_send (VpsGrpcCall *call, GBytes *message)
{
  grpc_op ops[2];
  size_t n = 0;

  g_return_if_fail (call->send_buf == NULL);
  memset (ops, 0, sizeof ops);
  if (!call->sent_initial)
    {
      ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
      call->sent_initial = TRUE;
    }
  call->send_buf = vps_grpc_buffer_from_bytes (message);
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = call->send_buf;
  if (!start_batch (call, ops, n, &call->send_tag))
    call->core->handler (call, NULL, call->core->user_data);
}

void
vps_grpc_call_finish (VpsGrpcCall *call, GBytes *message, VpsGrpcStatus status, const char *details)
{
  grpc_op ops[3];
  size_t n = 0;

  if (!g_atomic_int_compare_and_exchange (&call->finished, 0, 1))
    {
      g_critical ("grpc: %s finished twice", call->method);
      return;
    }
  g_atomic_int_add (&call->core->n_calls, -1);
  memset (ops, 0, sizeof ops);
  if (!call->sent_initial)
    {
      ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
      call->sent_initial = TRUE;
    }
  if (message != NULL && status == VPS_GRPC_STATUS_OK)
    {
      call->final_buf = vps_grpc_buffer_from_bytes (message);
      ops[n].op = GRPC_OP_SEND_MESSAGE;
      ops[n++].data.send_message.send_message = call->final_buf;
    }
  call->details = grpc_slice_from_copied_string (details ? details : "");
  call->has_details = TRUE;
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)status;
  ops[n++].data.send_status_from_server.status_details = &call->details;
  start_batch (call, ops, n, &call->finish_tag);
  /* the reference of the unanswered reply */
  vps_grpc_call_unref (call);
}

/* ---- the completion-queue thread ------------------------------------------ */

static void post_slot (VpsGrpcCore *core, Slot *slot);

static gint64
deadline_to_monotonic (gpr_timespec deadline)
{
  gpr_timespec mono, left;
  gint64 us;

  if (gpr_time_cmp (deadline, gpr_inf_future (deadline.clock_type)) == 0)
    return G_MAXINT64;
  mono = gpr_convert_clock_type (deadline, GPR_CLOCK_MONOTONIC);
  left = gpr_time_sub (mono, gpr_now (GPR_CLOCK_MONOTONIC));
  /* a deadline days away is as good as none and must not overflow */
  if (left.tv_sec > 365 * 86400)
    return G_MAXINT64;
  us = left.tv_sec * G_USEC_PER_SEC + left.tv_nsec / 1000;
  return g_get_monotonic_time () + us;
}

static void
call_arrived (VpsGrpcCore *core, Slot *slot)
{
  VpsGrpcCall *call = g_new0 (VpsGrpcCall, 1);
  gsize method_len = GRPC_SLICE_LENGTH (slot->details.method);
  grpc_auth_context *auth;
  char *peer;
  grpc_op op;

  call->ref = 1; /* the unanswered reply */
  call->core = core;
  call->call = slot->call;
  call->start = g_get_monotonic_time ();
  /* an over-long method is no method of ours: it stays "" → UNIMPLEMENTED */
  call->method
      = method_len <= VPS_GRPC_MAX_METHOD
            ? g_strndup ((const char *)GRPC_SLICE_START_PTR (slot->details.method), method_len)
            : g_strdup ("");
  call->deadline = deadline_to_monotonic (slot->details.deadline);
  peer = grpc_call_get_peer (slot->call);
  call->peer = g_strndup (peer ? peer : "", VPS_GRPC_MAX_PEER);
  gpr_free (peer);
  auth = grpc_call_auth_context (slot->call);
  call->authenticated = auth != NULL && grpc_auth_context_peer_is_authenticated (auth);
  grpc_auth_context_release (auth);
  call->recv_tag = (Tag){ TAG_RECV, call };
  call->send_tag = (Tag){ TAG_SEND, call };
  call->finish_tag = (Tag){ TAG_FINISH, call };
  call->close_tag = (Tag){ TAG_CLOSE, call };
  g_atomic_int_inc (&core->n_calls);

  /* the slot's call is the call's now; the slot is posted again */
  slot->call = NULL;
  grpc_call_details_destroy (&slot->details);
  grpc_metadata_array_destroy (&slot->metadata);
  post_slot (core, slot);

  memset (&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &call->cancelled;
  start_batch (call, &op, 1, &call->close_tag);
  post_recv (call);
  /* post_recv holds its own reference; ours is the reply's */
}

static void
post_slot (VpsGrpcCore *core, Slot *slot)
{
  grpc_call_error err;

  if (g_atomic_int_get (&core->shutting_down))
    return;
  grpc_call_details_init (&slot->details);
  grpc_metadata_array_init (&slot->metadata);
  slot->call = NULL;
  err = grpc_server_request_call (core->server, &slot->call, &slot->details, &slot->metadata,
                                  core->cq, core->cq, &slot->tag);
  if (err != GRPC_CALL_OK)
    {
      grpc_call_details_destroy (&slot->details);
      grpc_metadata_array_destroy (&slot->metadata);
      vps_warning (NULL, "grpc: %s: request_call refused (%d)", core->name, (int)err);
    }
}

static void
handle_event (VpsGrpcCore *core, Tag *tag, gboolean success)
{
  VpsGrpcCall *call = tag->owner;

  switch (tag->kind)
    {
      case TAG_REQUEST:
        {
          Slot *slot = tag->owner;

          if (success)
            call_arrived (core, slot);
          else
            {
              /* the server shuts down: the slot is not posted again */
              grpc_call_details_destroy (&slot->details);
              grpc_metadata_array_destroy (&slot->metadata);
            }
        }
        break;
      case TAG_RECV:
        {
          g_autoptr (GBytes) message = NULL;

          if (success && call->recv_buf != NULL)
            message = vps_grpc_bytes_from_buffer (call->recv_buf);
          if (call->recv_buf != NULL)
            grpc_byte_buffer_destroy (call->recv_buf);
          call->recv_buf = NULL;
          core->handler (call, message, core->user_data);
          vps_grpc_call_unref (call);
        }
        break;
      case TAG_SEND:
        grpc_byte_buffer_destroy (call->send_buf);
        call->send_buf = NULL;
        if (success)
          post_recv (call);
        else
          core->handler (call, NULL, core->user_data);
        vps_grpc_call_unref (call);
        break;
      case TAG_FINISH:
      case TAG_CLOSE:
        vps_grpc_call_unref (call);
        break;
      case TAG_SHUTDOWN:
        g_mutex_lock (&core->lock);
        core->shutdown_done = TRUE;
        g_cond_broadcast (&core->cond);
        g_mutex_unlock (&core->lock);
        break;
      default:
        g_assert_not_reached ();
    }
}

static gpointer
cq_thread (gpointer data)
{
  VpsGrpcCore *core = data;

  for (;;)
    {
      grpc_event ev
          = grpc_completion_queue_next (core->cq, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);

      if (ev.type == GRPC_QUEUE_SHUTDOWN)
        break;
      if (ev.type == GRPC_OP_COMPLETE)
        handle_event (core, ev.tag, ev.success != 0);
    }
  return NULL;
}

/* ---- the server ----------------------------------------------------------- */

VpsGrpcCore *
vps_grpc_core_new (const char *name, guint64 max_message, guint slots, VpsGrpcHandler handler,
                   gpointer user_data)
{
  VpsGrpcCore *core = g_new0 (VpsGrpcCore, 1);
  grpc_arg args[3];
  grpc_channel_args channel_args = { G_N_ELEMENTS (args), args };
  int max = (int)MIN (max_message, (guint64)G_MAXINT);

  grpc_init ();
  core->name = g_strdup (name);
  core->max_message = max_message;
  core->n_slots = slots == 0 ? VPS_GRPC_DEFAULT_SLOTS : MIN (slots, VPS_GRPC_MAX_SLOTS);
  core->handler = handler;
  core->user_data = user_data;
  g_mutex_init (&core->lock);
  g_cond_init (&core->cond);
  core->shutdown_tag = (Tag){ TAG_SHUTDOWN, core };

  /* SO_REUSEPORT is on by default in the core: two servers would silently
   * share a port (GRPC.md). */
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
  args[0].value.integer = 0;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[1].value.integer = max;
  /* replies are ours (a quarantined message may be as large as the
   * largest request plus its envelope): not limited */
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
  args[2].value.integer = -1;
  core->server = grpc_server_create (&channel_args, NULL);
  core->cq = grpc_completion_queue_create_for_next (NULL);
  grpc_server_register_completion_queue (core->server, core->cq, NULL);
  return core;
}

char *
vps_grpc_read_pem (const char *what, const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  g_autoptr (GError) local = NULL;

  if (!g_file_get_contents (path, &data, &len, &local))
    {
      g_set_error (error, VPS_GRPC_ERROR, VPS_GRPC_ERROR_TLS, "%s: %s", what, local->message);
      return NULL;
    }
  if (len == 0 || len > VPS_GRPC_MAX_TLS_FILE || memchr (data, '\0', len) != NULL)
    {
      g_set_error (error, VPS_GRPC_ERROR, VPS_GRPC_ERROR_TLS, "%s: %s: not a PEM file", what, path);
      return NULL;
    }
  return g_steal_pointer (&data);
}

gboolean
vps_grpc_core_add_port (VpsGrpcCore *core, const char *hostport, const VpsGrpcTlsFiles *tls,
                        int *out_port, GError **error)
{
  grpc_server_credentials *creds;
  int port;

  g_return_val_if_fail (!core->started, FALSE);
  if (tls != NULL)
    {
      g_autofree char *cert = vps_grpc_read_pem ("tls_cert", tls->cert, error);
      g_autofree char *key = cert ? vps_grpc_read_pem ("tls_key", tls->key, error) : NULL;
      g_autofree char *ca = NULL;
      grpc_ssl_pem_key_cert_pair pair;

      if (key == NULL)
        return FALSE;
      if (tls->client_ca != NULL
          && (ca = vps_grpc_read_pem ("tls_client_ca", tls->client_ca, error)) == NULL)
        return FALSE;
      pair.private_key = key;
      pair.cert_chain = cert;
      creds = grpc_ssl_server_credentials_create_ex (
          ca, &pair, 1,
          ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
          NULL);
      if (creds == NULL)
        {
          g_set_error (error, VPS_GRPC_ERROR, VPS_GRPC_ERROR_TLS,
                       "tls_cert/tls_key: refused by the TLS library");
          return FALSE;
        }
    }
  else
    creds = grpc_insecure_server_credentials_create ();
  port = grpc_server_add_http2_port (core->server, hostport, creds);
  grpc_server_credentials_release (creds);
  if (port <= 0)
    {
      g_set_error (error, VPS_GRPC_ERROR, VPS_GRPC_ERROR_BIND,
                   "%s: cannot listen on %s (in use, or not a local address)", core->name,
                   hostport);
      return FALSE;
    }
  if (out_port != NULL)
    *out_port = port;
  return TRUE;
}

gboolean
vps_grpc_core_start (VpsGrpcCore *core, GError **error)
{
  g_autofree char *thread_name = g_strdup_printf ("grpc-%s", core->name);

  g_return_val_if_fail (!core->started, FALSE);
  grpc_server_start (core->server);
  core->started = TRUE;
  core->slots = g_new0 (Slot, core->n_slots);
  for (guint i = 0; i < core->n_slots; i++)
    {
      core->slots[i].tag = (Tag){ TAG_REQUEST, &core->slots[i] };
      post_slot (core, &core->slots[i]);
    }
  core->thread = g_thread_new (thread_name, cq_thread, core);
  return TRUE;
}

void
vps_grpc_core_shutdown (VpsGrpcCore *core)
{
  if (g_atomic_int_compare_and_exchange (&core->shutting_down, 0, 1))
    grpc_server_shutdown_and_notify (core->server, core->cq, &core->shutdown_tag);
}

guint
vps_grpc_core_n_calls (VpsGrpcCore *core)
{
  return (guint)MAX (0, g_atomic_int_get (&core->n_calls));
}

void
vps_grpc_core_free (VpsGrpcCore *core)
{
  gboolean done;

  if (core == NULL)
    return;
  vps_grpc_core_shutdown (core);
  grpc_server_cancel_all_calls (core->server);
  if (core->started)
    {
      gint64 until = g_get_monotonic_time () + VPS_GRPC_SHUTDOWN_WAIT_US;

      g_mutex_lock (&core->lock);
      while (!core->shutdown_done && g_cond_wait_until (&core->cond, &core->lock, until))
        ;
      done = core->shutdown_done;
      g_mutex_unlock (&core->lock);
    }
  else
    {
      /* nobody reads the queue yet: take the shutdown event here */
      grpc_event ev;

      do
        ev = grpc_completion_queue_next (core->cq, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
      while (ev.type == GRPC_OP_COMPLETE && ev.tag != &core->shutdown_tag);
      done = ev.type == GRPC_OP_COMPLETE;
    }
  /* XXX: a core that never confirmed the shutdown is left allocated rather
   * than destroyed under calls it still runs; the process is exiting. */
  if (!done)
    {
      vps_warning (NULL, "grpc: %s: shutdown did not complete; leaving it", core->name);
      return;
    }
  grpc_server_destroy (core->server);
  grpc_completion_queue_shutdown (core->cq);
  if (core->thread != NULL)
    g_thread_join (core->thread);
  else
    while (grpc_completion_queue_next (core->cq, gpr_inf_future (GPR_CLOCK_REALTIME), NULL).type
           != GRPC_QUEUE_SHUTDOWN)
      ;
  grpc_completion_queue_destroy (core->cq);
  g_free (core->slots);
  g_mutex_clear (&core->lock);
  g_cond_clear (&core->cond);
  g_free (core->name);
  g_free (core);
  grpc_shutdown ();
}
