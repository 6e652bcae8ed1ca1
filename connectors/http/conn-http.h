/* SPDX-License-Identifier: MIT
 *
 * conn-http.h — the `http` connector: a web service (our JSON protocol, or
 * rspamd's /checkv2) asked with one POST per call over libcurl, without
 * blocking the worker's event loop.  Keys are documented in conn-http.c and
 * docs/connectors.md.
 */
#pragma once

#include "vps/connector.h"

G_BEGIN_DECLS

extern const VpsConnectorClass conn_http_class;

G_END_DECLS
