/* SPDX-License-Identifier: MIT
 *
 * conn-policy.h — the `policy` connector: vpsd as a client of a Postfix
 * policy delegation service (postgrey, policyd-spf, another vpsd, any
 * `action=` speaker).  Keys and behaviour are documented in conn-policy.c
 * and docs/connectors.md.
 */
#pragma once

#include "vps/connector.h"

G_BEGIN_DECLS

extern const VpsConnectorClass conn_policy_class;

G_END_DECLS
