/* SPDX-License-Identifier: MIT
 *
 * report.h — JSON views of a transaction (json-glib).
 *
 * vps_report_txn() builds the `vpsctl run --json` object of ARCHITECTURE.md:
 *   { "verdict", "code", "enhanced", "text", "stage",        the final decision
 *     "stages": [ { "stage", "verdict", "code", "enhanced", "text", "rule",
 *                   "rcpt"?, "skipped"?, "rules": [matched rule names],
 *                   "results": [ { "connector", "verdict", "code", "enhanced",
 *                                  "text", "error", "elapsed", "fields": {} } ] } ],
 *     "modifications": [ { "op", "name"?, "value"?, "index"? } ],
 *     "quarantine": name or null,
 *     "delivery": [ { "rcpt", "kind", "target" } ], "exports": [ ... ] }
 * The final decision is the first stage that ended the transaction
 * (connect/helo/mail/data/postq reject, tempfail, discard, quarantine; rcpt
 * when every recipient was refused); otherwise the transaction was accepted
 * ("accept", 250 2.0.0, stage = the last policy stage run).
 *
 * vps_report_metadata() builds the metadata stored next to a quarantined or
 * exported message: { "id", "session", "envelope": { "from", "rcpts" },
 * "client": { "ip", "port", "ptr" }, "helo", "verdicts": { stage: verdict },
 * "headers": { "from", "to", "subject", "message_id" }, "rule", "reason" }.
 */
#pragma once

#include <json-glib/json-glib.h>
#include "vps/session.h"

G_BEGIN_DECLS

JsonObject *vps_report_txn (VpsTxn *txn);
/* rule/reason: what decided (NULL: taken from the last deciding stage). */
JsonObject *vps_report_metadata (VpsTxn *txn, const char *rule, const char *reason);
/* Serialize (pretty: indented, for humans). */
char *vps_report_to_string (JsonObject *object, gboolean pretty);

G_END_DECLS
