/* SPDX-License-Identifier: MIT
 *
 * remote-policy.h — the engine vsmtpd runs: in-process rules ([vsmtpd]
 * policy = embedded) or every stage asked of a remote vpsd over gRPC
 * (policy = grpc://HOST:PORT).  A VpsDaemonEngineFunc (vps/daemon.h), so
 * a reload rebuilds it like any engine.
 */
#pragma once

#include "vps/engine.h"

G_BEGIN_DECLS

VpsEngine *vps_remote_policy_engine_new (VpsConfig *cfg, GError **error);

G_END_DECLS
