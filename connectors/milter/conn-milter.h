/* SPDX-License-Identifier: MIT
 *
 * conn-milter.h — the `milter` connector: vpsd as the MTA side of the
 * Sendmail milter protocol, driving existing milters (opendkim,
 * clamav-milter, spamass-milter, rspamd, any libmilter milter) from any
 * stage.  Keys and behaviour are documented in conn-milter.c and
 * docs/connectors.md.
 */
#pragma once

#include "vps/connector.h"

G_BEGIN_DECLS

extern const VpsConnectorClass conn_milter_class;

G_END_DECLS
