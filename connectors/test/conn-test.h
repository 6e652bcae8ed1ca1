/* SPDX-License-Identifier: MIT
 *
 * conn-test.h — the `test` connector: answers from its own configuration,
 * for rule tests, `vpsctl run` experiments and the engine's unit tests.
 * Keys are documented in conn-test.c.
 */
#pragma once

#include "vps/connector.h"

G_BEGIN_DECLS

extern const VpsConnectorClass conn_test_class;

/* The envelope text `match` is applied to before data (exposed for tests). */
char *conn_test_envelope_text (VpsTxn *txn);

G_END_DECLS
