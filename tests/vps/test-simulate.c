/* SPDX-License-Identifier: MIT
 *
 * test-simulate.c — the offline run of `vpsctl run MSG.eml --json`: every
 * stage in order, stops where an MTA stops, envelope from the headers, the
 * JSON shape key by key, dry run vs apply (quarantine and export written).
 */
#include <glib/gstdio.h>
#include "test-engine-util.h"
#include "vps/report.h"
#include "vps/simulate.h"

#define EML                                                                                        \
  "From: Alice <alice@example.net>\r\n"                                                            \
  "To: Bob <bob@example.org>, carol@elsewhere.test\r\n"                                            \
  "Subject: quarterly report\r\n"                                                                  \
  "Message-ID: <m1@example.net>\r\n"                                                               \
  "\r\n"                                                                                           \
  "Hello\r\n"

#define RULES                                                                                      \
  "rcpt { rule \"no relay\" when rcpt.domain != \"example.org\" => reject 554 5.7.1 \"Relaying "   \
  "denied\" }\n"                                                                                   \
  "data { rule \"scan\" => call t\n"                                                               \
  "       rule \"tag\" when subject =~ /report/ => add_header \"X-Tag\" \"report\"\n"              \
  "       rule \"hold\" when t.score > 5 => quarantine \"spam\" }\n"                               \
  "postq { rule \"archive\" => export raw \"archive\" }\n"                                         \
  "delivery { rule \"local\" => deliver maildir \"/var/mail/%d/%l\" }\n"

static char *
write_file (const char *name, const char *text)
{
  char *path = g_build_filename (g_get_tmp_dir (), name, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  return path;
}

static VpsEngine *
engine (const char *score)
{
  g_autofree char *cfg = g_strdup_printf (
      "[quarantine]\nnames = virus, spam\ndir = %s/q\n[export]\narchive = %s/archive\n"
      "[connector t]\ntype = test\nfields = score=%s\n",
      g_get_tmp_dir (), g_get_tmp_dir (), score);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) c = NULL;
  VpsEngine *e;

  vps_connector_registry_add (&conn_test_class);
  c = vps_config_load_data ("/nonexistent/t.conf", cfg, &error);
  g_assert_no_error (error);
  e = vps_engine_new_with_rules_string (c, "t.vsl", RULES, &error);
  g_assert_no_error (error);
  return e;
}

static JsonObject *
stage_obj (JsonObject *report, guint i)
{
  return json_array_get_object_element (json_object_get_array_member (report, "stages"), i);
}

/* accepted: connect helo mail rcpt rcpt data postq delivery */
static void
test_accepted (void)
{
  g_autoptr (VpsEngine) e = engine ("1");
  g_autofree char *path = write_file ("m.eml", EML);
  VpsSimulateOptions opts = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsTxn) txn = NULL;
  g_autoptr (JsonObject) r = vps_simulate_run_file (e, path, &opts, &txn, &error);
  static const char *const stages[]
      = { "connect", "helo", "mail", "rcpt", "rcpt", "data", "postq", "delivery" };
  JsonArray *sa, *mods, *exports, *delivery;
  JsonObject *o;

  g_assert_no_error (error);
  g_assert_nonnull (r);
  g_assert_cmpstr (json_object_get_string_member (r, "verdict"), ==, "accept");
  g_assert_cmpint (json_object_get_int_member (r, "code"), ==, 250);
  g_assert_cmpstr (json_object_get_string_member (r, "enhanced"), ==, "2.0.0");
  g_assert_true (json_object_has_member (r, "text"));
  g_assert_cmpstr (json_object_get_string_member (r, "stage"), ==, "postq");
  g_assert_true (json_object_get_null_member (r, "quarantine"));

  sa = json_object_get_array_member (r, "stages");
  g_assert_cmpuint (json_array_get_length (sa), ==, G_N_ELEMENTS (stages));
  for (guint i = 0; i < G_N_ELEMENTS (stages); i++)
    {
      o = stage_obj (r, i);
      g_assert_cmpstr (json_object_get_string_member (o, "stage"), ==, stages[i]);
      g_assert_true (json_object_has_member (o, "verdict"));
      g_assert_true (json_object_has_member (o, "rules"));
      g_assert_true (json_object_has_member (o, "results"));
    }
  /* the envelope came from the headers; carol was refused */
  o = stage_obj (r, 3);
  g_assert_cmpstr (json_object_get_string_member (o, "rcpt"), ==, "bob@example.org");
  g_assert_cmpstr (json_object_get_string_member (o, "verdict"), ==, "continue");
  o = stage_obj (r, 4);
  g_assert_cmpstr (json_object_get_string_member (o, "rcpt"), ==, "carol@elsewhere.test");
  g_assert_cmpstr (json_object_get_string_member (o, "verdict"), ==, "reject");
  g_assert_cmpint (json_object_get_int_member (o, "code"), ==, 554);
  g_assert_cmpstr (json_object_get_string_member (o, "rule"), ==, "no relay");
  g_assert_cmpstr (json_array_get_string_element (json_object_get_array_member (o, "rules"), 0), ==,
                   "no relay");
  /* data: the connector result with its fields, the matched rules */
  o = stage_obj (r, 5);
  {
    JsonArray *results = json_object_get_array_member (o, "results");
    JsonObject *res0 = json_array_get_object_element (results, 0);
    JsonArray *rules = json_object_get_array_member (o, "rules");

    g_assert_cmpuint (json_array_get_length (results), ==, 1);
    g_assert_cmpstr (json_object_get_string_member (res0, "connector"), ==, "t");
    g_assert_cmpstr (json_object_get_string_member (res0, "verdict"), ==, "continue");
    g_assert_false (json_object_get_boolean_member (res0, "error"));
    g_assert_cmpint (
        json_object_get_int_member (json_object_get_object_member (res0, "fields"), "score"), ==,
        1);
    g_assert_cmpuint (json_array_get_length (rules), ==, 2);
    g_assert_cmpstr (json_array_get_string_element (rules, 1), ==, "tag");
  }
  mods = json_object_get_array_member (r, "modifications");
  g_assert_cmpuint (json_array_get_length (mods), ==, 1);
  o = json_array_get_object_element (mods, 0);
  g_assert_cmpstr (json_object_get_string_member (o, "op"), ==, "add_header");
  g_assert_cmpstr (json_object_get_string_member (o, "name"), ==, "X-Tag");
  g_assert_cmpstr (json_object_get_string_member (o, "value"), ==, "report");
  /* index only where it applies (insert/set/remove) */
  g_assert_false (json_object_has_member (o, "index"));
  /* dry run: the export is reported, not written */
  exports = json_object_get_array_member (r, "exports");
  g_assert_cmpuint (json_array_get_length (exports), ==, 1);
  g_assert_true (json_object_get_null_member (json_array_get_object_element (exports, 0), "path"));
  delivery = json_object_get_array_member (r, "delivery");
  g_assert_cmpuint (json_array_get_length (delivery), ==, 1);
  o = json_array_get_object_element (delivery, 0);
  g_assert_cmpstr (json_object_get_string_member (o, "rcpt"), ==, "bob@example.org");
  g_assert_cmpstr (json_object_get_string_member (o, "kind"), ==, "maildir");
  /* it serializes */
  {
    g_autofree char *s = vps_report_to_string (r, TRUE);
    g_assert_nonnull (strstr (s, "\"verdict\""));
  }
}

/* quarantined at data, with apply: stored; postq and delivery do not run */
static void
test_quarantine_apply (void)
{
  g_autoptr (VpsEngine) e = engine ("9");
  g_autoptr (GBytes) raw = g_bytes_new_static (EML, strlen (EML));
  const char *rcpts[] = { "bob@example.org", NULL };
  VpsSimulateOptions opts = { .from = "x@example.net",
                              .rcpts = rcpts,
                              .client_ip = "192.0.2.9",
                              .helo = "h.example",
                              .apply = TRUE };
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) r = vps_simulate_run (e, raw, &opts, NULL, &error);
  JsonArray *sa;
  JsonArray *mods;

  g_assert_no_error (error);
  g_assert_cmpstr (json_object_get_string_member (r, "verdict"), ==, "quarantine");
  g_assert_cmpstr (json_object_get_string_member (r, "stage"), ==, "data");
  g_assert_cmpstr (json_object_get_string_member (r, "quarantine"), ==, "spam");
  g_assert_true (json_object_has_member (r, "quarantine_id"));
  sa = json_object_get_array_member (r, "stages");
  g_assert_cmpuint (json_array_get_length (sa), ==, 5);
  mods = json_object_get_array_member (r, "modifications");
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (mods, 1), "op"),
                   ==, "quarantine");
}

/* postq export really written with apply */
static void
test_export_apply (void)
{
  g_autoptr (VpsEngine) e = engine ("1");
  g_autoptr (GBytes) raw = g_bytes_new_static (EML, strlen (EML));
  VpsSimulateOptions opts = { .apply = TRUE };
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) r = vps_simulate_run (e, raw, &opts, NULL, &error);
  JsonObject *ex;
  const char *path;
  GStatBuf st;

  g_assert_no_error (error);
  ex = json_array_get_object_element (json_object_get_array_member (r, "exports"), 0);
  path = json_object_get_string_member (ex, "path");
  g_assert_nonnull (path);
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (st.st_size, ==, strlen (EML));
}

/* a connect reject ends everything */
static void
test_connect_reject (void)
{
  g_autoptr (VpsEngine) e = tu_engine (NULL, "connect { rule \"go away\" => reject }");
  g_autoptr (GBytes) raw = g_bytes_new_static (EML, strlen (EML));
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) r = vps_simulate_run (e, raw, NULL, NULL, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (json_object_get_string_member (r, "verdict"), ==, "reject");
  g_assert_cmpint (json_object_get_int_member (r, "code"), ==, 554);
  g_assert_cmpstr (json_object_get_string_member (r, "stage"), ==, "connect");
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (r, "stages")), ==, 1);
}

/* every recipient refused: the transaction ends at rcpt */
static void
test_all_rcpts_refused (void)
{
  g_autoptr (VpsEngine) e = tu_engine (NULL, "rcpt { rule \"nobody\" => tempfail }");
  g_autoptr (GBytes) raw = g_bytes_new_static (EML, strlen (EML));
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) r = vps_simulate_run (e, raw, NULL, NULL, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (json_object_get_string_member (r, "verdict"), ==, "tempfail");
  g_assert_cmpint (json_object_get_int_member (r, "code"), ==, 450);
  g_assert_cmpstr (json_object_get_string_member (r, "stage"), ==, "rcpt");
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (r, "stages")), ==, 5);
}

static void
test_errors (void)
{
  g_autoptr (VpsEngine) e = tu_engine (NULL, "");
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) raw = g_bytes_new_static ("Subject: x\r\n\r\nno envelope\r\n", 28);
  g_autoptr (JsonObject) r = vps_simulate_run (e, raw, NULL, NULL, &error);
  g_autoptr (JsonObject) r2 = NULL;

  g_assert_null (r);
  g_assert_error (error, VPS_SIMULATE_ERROR, VPS_SIMULATE_ERROR_ENVELOPE);
  g_clear_error (&error);
  r2 = vps_simulate_run_file (e, "/nonexistent/m.eml", NULL, NULL, &error);
  g_assert_null (r2);
  g_assert_error (error, VPS_SIMULATE_ERROR, VPS_SIMULATE_ERROR_MESSAGE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/vps/simulate/accepted", test_accepted);
  g_test_add_func ("/vps/simulate/quarantine-apply", test_quarantine_apply);
  g_test_add_func ("/vps/simulate/export-apply", test_export_apply);
  g_test_add_func ("/vps/simulate/connect-reject", test_connect_reject);
  g_test_add_func ("/vps/simulate/all-rcpts-refused", test_all_rcpts_refused);
  g_test_add_func ("/vps/simulate/errors", test_errors);
  return g_test_run ();
}
