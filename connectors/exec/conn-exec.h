/* SPDX-License-Identifier: MIT
 *
 * conn-exec.h — the `exec` connector: a program run for each call (argv,
 * never a shell) with the transaction in its environment and the message
 * on stdin; it answers with stdout lines and its exit status.  Keys are
 * documented in conn-exec.c and docs/connectors.md.
 */
#pragma once

#include "vps/connector.h"

G_BEGIN_DECLS

extern const VpsConnectorClass conn_exec_class;

G_END_DECLS
