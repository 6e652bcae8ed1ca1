/* SPDX-License-Identifier: MIT
 *
 * connectors.c — the list of connector classes linked into this build.
 * A new connector adds one line here (and its directory to meson.build).
 */
#include "connectors/connectors.h"

#include "connectors/clamav/conn-clamav.h"
#include "connectors/grpc/conn-grpc.h"
#include "connectors/milter/conn-milter.h"
#include "connectors/exec/conn-exec.h"
#include "connectors/http/conn-http.h"
#include "connectors/policy/conn-policy.h"
#include "connectors/test/conn-test.h"
#include "vps/connector.h"

void
vps_connectors_register_all (void)
{
  static const VpsConnectorClass *const classes[] = {
    &conn_test_class,   /* answers from its configuration */
    &conn_policy_class, /* Postfix policy services */
    &conn_http_class,   /* JSON webhooks, rspamd */
    &conn_exec_class,   /* Unix scripts */
    &conn_clamav_class, /* libclamav or clamd */
    &conn_milter_class, /* milters, as an MTA drives them */
    &conn_grpc_class,   /* vps.v1.Policy/Check services */
  };

  for (gsize i = 0; i < G_N_ELEMENTS (classes); i++)
    vps_connector_registry_add (classes[i]);
}
