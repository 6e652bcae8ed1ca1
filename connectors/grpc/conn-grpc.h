/* SPDX-License-Identifier: MIT
 *
 * conn-grpc.h — the `grpc` connector: vpsd as a client of vps.v1.Policy/Check
 * (another vpsd, or any service implementing proto/vps/v1/policy.proto).
 * Keys and behaviour are documented in conn-grpc.c and docs/connectors.md.
 */
#pragma once

#include "vps/connector.h"

G_BEGIN_DECLS

extern const VpsConnectorClass conn_grpc_class;

G_END_DECLS
