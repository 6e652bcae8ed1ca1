/* SPDX-License-Identifier: MIT
 *
 * connectors.h — registers every connector class this build links into the
 * engine's registry (vps/connector.h).  Programs call it once from main();
 * the engine itself never names a concrete connector.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

void vps_connectors_register_all (void);

G_END_DECLS
