/* SPDX-License-Identifier: MIT
 *
 * test-engine-util.h — helpers shared by the engine tests: an engine from a
 * config text and a rule text (the `test` connector registered), a session
 * and transaction filled like a front end would, and a stage run.
 */
#pragma once

#include <glib.h>
#include <string.h>
#include "connectors/test/conn-test.h"
#include "vps/engine.h"
#include "vps/log.h"

static inline VpsEngine *
tu_engine (const char *config, const char *rules)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = NULL;
  g_autofree char *text
      = g_strconcat ("[quarantine]\nnames = virus, spam\n", config ? config : "", NULL);
  VpsEngine *e;

  vps_connector_registry_add (&conn_test_class);
  cfg = vps_config_load_data ("/nonexistent/test.conf", text, &error);
  g_assert_no_error (error);
  e = vps_engine_new_with_rules_string (cfg, "test.vsl", rules, &error);
  g_assert_no_error (error);
  g_assert_nonnull (e);
  return e;
}

static inline VpsTxn *
tu_txn (const char *client_ip)
{
  g_autoptr (VpsSession) s = vps_session_new ();

  vps_session_set_client (s, client_ip ? client_ip : "192.0.2.1", 4242, NULL);
  vps_session_set_server (s, "192.0.2.25", 25, "mx.example.org");
  vps_session_set_helo (s, "client.example.net");
  return vps_txn_new (s);
}

static inline VpsStageResult *
tu_run (VpsEngine *e, VpsTxn *t, RulesStage stage)
{
  g_autoptr (GError) error = NULL;
  VpsStageResult *r
      = vps_engine_run_stage_sync (e, vps_txn_get_session (t), t, stage, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (r);
  return r;
}

static inline VpsMessage *
tu_message (const char *text)
{
  g_autoptr (GBytes) raw = g_bytes_new (text, strlen (text));
  g_autoptr (GError) error = NULL;
  VpsMessage *m = vps_message_new (raw, &error);

  g_assert_no_error (error);
  return m;
}
