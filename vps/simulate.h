/* SPDX-License-Identifier: MIT
 *
 * simulate.h — the offline run behind `vpsctl run MSG.eml`.
 *
 * Builds a session (client 127.0.0.1 port 0 unless given, helo "localhost"
 * unless given, server 127.0.0.1:25) and a transaction, and runs connect,
 * helo, mail, each rcpt, data (the message parsed), postq and delivery (per
 * accepted recipient) as a real MTA would: a reject/tempfail/discard at
 * connect, helo or mail ends everything; a refused recipient is dropped and
 * when every recipient is refused the transaction ends; a decision at data
 * ends before postq.  The sender defaults to the address of the message's
 * From header, the recipients to the addresses of its To and Cc headers.
 *
 * With apply = FALSE quarantine and export actions are only reported; with
 * apply = TRUE a quarantine verdict stores the message in the engine's
 * quarantine store and exports are written.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include "vps/engine.h"

G_BEGIN_DECLS

#define VPS_SIMULATE_ERROR (vps_simulate_error_quark ())
GQuark vps_simulate_error_quark (void);

typedef enum
{
  VPS_SIMULATE_ERROR_MESSAGE,   /* unreadable or empty message */
  VPS_SIMULATE_ERROR_ENVELOPE,  /* no sender/recipient given nor found in the headers */
  VPS_SIMULATE_ERROR_QUARANTINE /* apply: storing into the quarantine failed */
} VpsSimulateError;

#define VPS_SIMULATE_MAX_RCPTS 1000

typedef struct
{
  const char *from;         /* NULL: From header; "" = the null sender <> */
  const char *const *rcpts; /* NULL-terminated; NULL or empty: To/Cc headers */
  const char *client_ip;    /* NULL: 127.0.0.1 */
  const char *helo;         /* NULL: "localhost" */
  gboolean apply;
} VpsSimulateOptions;

void vps_simulate_run_async (VpsEngine *engine, GBytes *raw, const VpsSimulateOptions *options,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
/* The report of vps/report.h (plus "quarantine_id" when applied);
 * *out_txn (optional) receives the transaction. */
JsonObject *vps_simulate_run_finish (GAsyncResult *result, VpsTxn **out_txn, GError **error);

/* Synchronous: runs on a private GMainContext until done. */
JsonObject *vps_simulate_run (VpsEngine *engine, GBytes *raw, const VpsSimulateOptions *options,
                              VpsTxn **out_txn, GError **error);
JsonObject *vps_simulate_run_file (VpsEngine *engine, const char *path,
                                   const VpsSimulateOptions *options, VpsTxn **out_txn,
                                   GError **error);

G_END_DECLS
