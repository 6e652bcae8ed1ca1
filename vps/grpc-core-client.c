/* SPDX-License-Identifier: MIT
 *
 * grpc-core-client.c — gRPC C core wrapper, the client side (channels and
 * unary calls; see grpc-core.h for the contract, grpc-core.c for the
 * server side).  Verified against libgrpc 1.51 (core 29), see GRPC.md.
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

/* ---- the client side ------------------------------------------------------
 *
 * One completion queue for every client call of the process, read by one
 * thread started with the first channel (GRPC.md: some thread must block in
 * grpc_completion_queue_next; it also drives the network I/O of the
 * channels).  It is never shut down: channels come and go with reloads, the
 * queue stays, and so does the grpc_init() it holds.  Each call is one
 * batch of six operations; its completion returns the GTask, which hands
 * the result to the caller's main context. */

G_DEFINE_QUARK (vps - grpc - status - error - quark, vps_grpc_status_error)

/* Reconnect quickly after a peer restarts; the core's default backs off to
 * two minutes, during which every call fails UNAVAILABLE. */
#define VPS_GRPC_CLIENT_MAX_BACKOFF_MS 5000
#define VPS_GRPC_CLIENT_MIN_BACKOFF_MS 200

struct _VpsGrpcChannel
{
  gint ref; /* atomic */
  char *target;
  grpc_channel *channel;
};

typedef struct
{
  grpc_call *call;
  GTask *task;
  GCancellable *cancellable;
  gulong cancel_id;
  VpsGrpcChannel *channel;
  grpc_byte_buffer *send_buf;
  grpc_byte_buffer *recv_buf;
  grpc_metadata_array initial_md;
  grpc_metadata_array trailing_md;
  grpc_status_code status;
  grpc_slice details;
  const char *error_string;
} ClientCall;

static grpc_completion_queue *client_cq;

static gpointer
client_cq_thread (gpointer data)
{
  for (;;)
    {
      grpc_event ev
          = grpc_completion_queue_next (client_cq, gpr_inf_future (GPR_CLOCK_REALTIME), NULL);
      ClientCall *cc = ev.tag;

      if (ev.type == GRPC_QUEUE_SHUTDOWN)
        break;
      if (ev.type != GRPC_OP_COMPLETE)
        continue;
      if (cc->cancellable != NULL)
        /* waits for a handler running in another thread: after it, nobody
         * touches cc->call but us */
        g_cancellable_disconnect (cc->cancellable, cc->cancel_id);
      if (cc->task == NULL)
        ; /* nobody waits for this one (vps_grpc_channel_call_async) */
      else if (!ev.success)
        g_task_return_new_error (cc->task, VPS_GRPC_ERROR, VPS_GRPC_ERROR_CALL,
                                 "%s: the call failed in the gRPC core", cc->channel->target);
      else if (cc->status != GRPC_STATUS_OK)
        {
          g_autofree char *details = grpc_slice_to_c_string (cc->details);

          g_task_return_new_error (cc->task, VPS_GRPC_STATUS_ERROR, (int)cc->status, "%s: %s%s%s",
                                   vps_grpc_status_name ((VpsGrpcStatus)cc->status), details,
                                   cc->error_string ? " — " : "",
                                   cc->error_string ? cc->error_string : "");
        }
      else if (cc->recv_buf == NULL)
        g_task_return_new_error (cc->task, VPS_GRPC_STATUS_ERROR, VPS_GRPC_STATUS_INTERNAL,
                                 "OK without a reply message");
      else
        {
          GBytes *reply = vps_grpc_bytes_from_buffer (cc->recv_buf);

          if (reply == NULL)
            g_task_return_new_error (cc->task, VPS_GRPC_STATUS_ERROR, VPS_GRPC_STATUS_INTERNAL,
                                     "the reply message could not be read");
          else
            g_task_return_pointer (cc->task, reply, (GDestroyNotify)g_bytes_unref);
        }
      g_clear_object (&cc->task);
      g_clear_object (&cc->cancellable);
      if (cc->recv_buf != NULL)
        grpc_byte_buffer_destroy (cc->recv_buf);
      grpc_byte_buffer_destroy (cc->send_buf);
      grpc_metadata_array_destroy (&cc->initial_md);
      grpc_metadata_array_destroy (&cc->trailing_md);
      grpc_slice_unref (cc->details);
      gpr_free ((void *)cc->error_string);
      grpc_call_unref (cc->call);
      vps_grpc_channel_unref (cc->channel);
      g_free (cc);
    }
  return NULL;
}

static void
client_cq_ensure (void)
{
  static gsize once = 0;

  if (g_once_init_enter (&once))
    {
      grpc_init ();
      client_cq = grpc_completion_queue_create_for_next (NULL);
      /* the thread lives as long as the process: not joined */
      g_thread_unref (g_thread_new ("grpc-client", client_cq_thread, NULL));
      g_once_init_leave (&once, 1);
    }
}

VpsGrpcChannel *
vps_grpc_channel_new (const char *target, const VpsGrpcClientTls *tls, guint64 max_message,
                      GError **error)
{
  grpc_channel_credentials *creds;
  grpc_arg args[5];
  grpc_channel_args channel_args = { 0, args };
  VpsGrpcChannel *ch;

  g_return_val_if_fail (target != NULL, NULL);
  if (target[0] == '\0' || strlen (target) > VPS_GRPC_CLIENT_MAX_TARGET)
    {
      g_set_error (error, VPS_GRPC_ERROR, VPS_GRPC_ERROR_CALL, "'%.40s': not a HOST:PORT target",
                   target);
      return NULL;
    }
  client_cq_ensure ();
  if (tls != NULL)
    {
      g_autofree char *ca = tls->ca ? vps_grpc_read_pem ("tls_ca", tls->ca, error) : NULL;
      g_autofree char *cert = NULL, *key = NULL;
      grpc_ssl_pem_key_cert_pair pair;

      if (tls->ca != NULL && ca == NULL)
        return NULL;
      if (tls->cert != NULL)
        {
          if ((cert = vps_grpc_read_pem ("tls_cert", tls->cert, error)) == NULL
              || (key = vps_grpc_read_pem ("tls_key", tls->key ? tls->key : "", error)) == NULL)
            return NULL;
          pair.private_key = key;
          pair.cert_chain = cert;
        }
      creds = grpc_ssl_credentials_create (ca, cert ? &pair : NULL, NULL, NULL);
      if (creds == NULL)
        {
          g_set_error (error, VPS_GRPC_ERROR, VPS_GRPC_ERROR_TLS,
                       "%s: TLS settings refused by the TLS library", target);
          return NULL;
        }
      if (tls->server_name != NULL)
        {
          args[channel_args.num_args].type = GRPC_ARG_STRING;
          args[channel_args.num_args].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
          args[channel_args.num_args++].value.string = (char *)tls->server_name;
        }
    }
  else
    creds = grpc_insecure_credentials_create ();
  args[channel_args.num_args].type = GRPC_ARG_INTEGER;
  args[channel_args.num_args].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[channel_args.num_args++].value.integer = (int)MIN (max_message, (guint64)G_MAXINT);
  args[channel_args.num_args].type = GRPC_ARG_INTEGER;
  args[channel_args.num_args].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
  args[channel_args.num_args++].value.integer = VPS_GRPC_CLIENT_MAX_BACKOFF_MS;
  args[channel_args.num_args].type = GRPC_ARG_INTEGER;
  args[channel_args.num_args].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
  args[channel_args.num_args++].value.integer = VPS_GRPC_CLIENT_MIN_BACKOFF_MS;
  args[channel_args.num_args].type = GRPC_ARG_INTEGER;
  args[channel_args.num_args].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
  args[channel_args.num_args++].value.integer = VPS_GRPC_CLIENT_MIN_BACKOFF_MS;

  ch = g_new0 (VpsGrpcChannel, 1);
  ch->ref = 1;
  ch->target = g_strdup (target);
  ch->channel = grpc_channel_create (target, creds, &channel_args);
  grpc_channel_credentials_release (creds);
  return ch;
}

VpsGrpcChannel *
vps_grpc_channel_ref (VpsGrpcChannel *channel)
{
  g_atomic_int_inc (&channel->ref);
  return channel;
}

void
vps_grpc_channel_unref (VpsGrpcChannel *channel)
{
  if (channel == NULL || !g_atomic_int_dec_and_test (&channel->ref))
    return;
  /* every call held a reference: none is in flight */
  grpc_channel_destroy (channel->channel);
  g_free (channel->target);
  g_free (channel);
}

const char *
vps_grpc_channel_get_target (const VpsGrpcChannel *channel)
{
  return channel->target;
}

static void
client_call_cancelled (GCancellable *cancellable, gpointer data)
{
  ClientCall *cc = data;

  grpc_call_cancel (cc->call, NULL);
}

void
vps_grpc_channel_call_async (VpsGrpcChannel *channel, const char *method, GBytes *request,
                             gint64 timeout_us, GCancellable *cancellable,
                             GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = callback ? g_task_new (NULL, cancellable, callback, user_data) : NULL;
  grpc_slice method_slice = grpc_slice_from_copied_string (method);
  gpr_timespec deadline = gpr_inf_future (GPR_CLOCK_MONOTONIC);
  ClientCall *cc;
  grpc_op ops[6];
  grpc_call_error err;

  if (task != NULL)
    g_task_set_source_tag (task, vps_grpc_channel_call_async);
  if (timeout_us > 0)
    deadline = gpr_time_add (gpr_now (GPR_CLOCK_MONOTONIC),
                             gpr_time_from_micros (timeout_us, GPR_TIMESPAN));
  cc = g_new0 (ClientCall, 1);
  cc->task = task;
  cc->channel = vps_grpc_channel_ref (channel);
  cc->call = grpc_channel_create_call (channel->channel, NULL, GRPC_PROPAGATE_DEFAULTS, client_cq,
                                       method_slice, NULL, deadline, NULL);
  grpc_slice_unref (method_slice);
  cc->send_buf = vps_grpc_buffer_from_bytes (request);
  grpc_metadata_array_init (&cc->initial_md);
  grpc_metadata_array_init (&cc->trailing_md);
  cc->details = grpc_empty_slice ();

  memset (ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = cc->send_buf;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &cc->initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &cc->recv_buf;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &cc->trailing_md;
  ops[5].data.recv_status_on_client.status = &cc->status;
  ops[5].data.recv_status_on_client.status_details = &cc->details;
  ops[5].data.recv_status_on_client.error_string = &cc->error_string;
  /* connected before the batch starts: its completion may come at once on
   * the queue's thread, which disconnects; a cancel that comes before the
   * batch completes it with CANCELLED all the same */
  if (cancellable != NULL)
    {
      cc->cancellable = g_object_ref (cancellable);
      cc->cancel_id
          = g_cancellable_connect (cc->cancellable, G_CALLBACK (client_call_cancelled), cc, NULL);
    }
  err = grpc_call_start_batch (cc->call, ops, G_N_ELEMENTS (ops), cc, NULL);
  if (err != GRPC_CALL_OK)
    {
      if (cc->cancellable != NULL)
        g_cancellable_disconnect (cc->cancellable, cc->cancel_id);
      if (task != NULL)
        g_task_return_new_error (task, VPS_GRPC_ERROR, VPS_GRPC_ERROR_CALL,
                                 "%s: %s: batch refused (%d)", channel->target, method, (int)err);
      g_clear_object (&task);
      g_clear_object (&cc->cancellable);
      grpc_byte_buffer_destroy (cc->send_buf);
      grpc_metadata_array_destroy (&cc->initial_md);
      grpc_metadata_array_destroy (&cc->trailing_md);
      grpc_call_unref (cc->call);
      vps_grpc_channel_unref (cc->channel);
      g_free (cc);
      return;
    }
}

GBytes *
vps_grpc_channel_call_finish (VpsGrpcChannel *channel, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
sync_done (GObject *source, GAsyncResult *res, gpointer data)
{
  *(GAsyncResult **)data = g_object_ref (res);
}

GBytes *
vps_grpc_channel_call_sync (VpsGrpcChannel *channel, const char *method, GBytes *request,
                            gint64 timeout_us, GCancellable *cancellable, GError **error)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (GAsyncResult) res = NULL;

  g_main_context_push_thread_default (context);
  vps_grpc_channel_call_async (channel, method, request, timeout_us, cancellable, sync_done, &res);
  while (res == NULL)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  return vps_grpc_channel_call_finish (channel, res, error);
}
