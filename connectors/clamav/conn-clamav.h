/* SPDX-License-Identifier: MIT
 *
 * conn-clamav.h — the `clamav` connector: scans the message at data with
 * libclamav in-process (mode = library, the default) or through a running
 * clamd's INSTREAM command (mode = clamd).  Keys and behaviour are
 * documented in conn-clamav.c and docs/connectors.md.
 */
#pragma once

#include "vps/connector.h"

G_BEGIN_DECLS

extern const VpsConnectorClass conn_clamav_class;

G_END_DECLS
