/* SPDX-License-Identifier: MIT
 *
 * vpsctl — the admin tool.
 *
 *   vpsctl [-c FILE] check-rules RULES.vsl
 *   vpsctl [-c FILE] run MSG.eml [--from ADDR] [--rcpt ADDR]... [--client-ip IP]
 *                        [--helo NAME] [--rules RULES.vsl] [--json] [--apply]
 *   vpsctl [-c FILE] explain RULES.vsl
 *   vpsctl [-c FILE] [--server HOST:PORT] quarantine list [--name NAME] [--json]
 *   vpsctl [-c FILE] [--server HOST:PORT] quarantine show ID [--format raw|json]
 *   vpsctl [-c FILE] [--server HOST:PORT] quarantine delete ID
 *   vpsctl [-c FILE] [--server HOST:PORT] quarantine release ID
 *   vpsctl [-c FILE] [--server HOST:PORT] reload | stats [--json]
 *   vpsctl [-c FILE] queue list [--hold|--dead] [--json]
 *   vpsctl [-c FILE] queue show ID [--format raw|json]
 *   vpsctl [-c FILE] queue delete|hold|release|retry ID...
 *   vpsctl [-c FILE] queue flush
 *
 * check-rules, explain and run work offline, without a daemon: they read
 * the same configuration vpsd reads (-c; without it the built-in defaults,
 * relative to the current directory).  reload and stats always talk to a
 * running vpsd over gRPC (the Admin service at --server, else [grpc]
 * admin_listen, else [grpc] listen); quarantine list, show, delete and
 * release do too when --server is given, and otherwise read the quarantine
 * directory themselves (release then sends over SMTP to [quarantine]
 * release_to from this process; docs/vpsctl.md).  queue works on vsmtpd's
 * spool ([queue] dir) in place, offline (vpsctl-queue.c).  Exit status:
 * 0 success, 1 the thing checked or asked for failed (a rule file that
 * does not load, an unknown id), 2 usage.  `run` exits 0 whatever the
 * verdict: the verdict is the output.
 */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "connectors/connectors.h"
#include "proto/vps/v1/admin.pb-c.h"
#include "vps/config.h"
#include "vps/engine.h"
#include "vps/grpc-core.h"
#include "vps/log.h"
#include "vps/quarantine.h"
#include "vps/report.h"
#include "vps/simulate.h"
#include "vps/smtp-client.h"

#include "vps/cmd/vpsctl.h"

int
vpsctl_fail (const char *what, const GError *error)
{
  fprintf (stderr, "vpsctl: %s%s%s\n", what ? what : "", what ? ": " : "", error->message);
  return VPSCTL_EXIT_FAIL;
}

int
vpsctl_usage (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fputs ("vpsctl: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputs ("\n", stderr);
  va_end (ap);
  fputs ("usage: vpsctl [-c FILE] [--server HOST:PORT] "
         "check-rules|run|explain|quarantine|queue|reload|stats ... (vpsctl help)\n",
         stderr);
  return VPSCTL_EXIT_USAGE;
}

/* Parse a sub-command's options; leaves positional arguments in argv. */
gboolean
vpsctl_parse_options (const char *name, const char *summary, GOptionEntry *entries, int *argc,
                      char ***argv, int *status)
{
  g_autoptr (GOptionContext) context = g_option_context_new (summary);
  g_autoptr (GError) error = NULL;

  g_option_context_set_help_enabled (context, TRUE);
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, argc, argv, &error))
    {
      *status = vpsctl_usage ("%s: %s", name, error->message);
      return FALSE;
    }
  return TRUE;
}

static RulesProgram *
load_program (Ctl *ctl, const char *path, GError **error)
{
  g_autoptr (RulesLoadOptions) options = vps_engine_load_options_new (ctl->cfg, error);

  if (options == NULL)
    return NULL;
  return rules_program_load_file (path, options, error);
}

static int
cmd_check_rules (Ctl *ctl, int argc, char **argv)
{
  GOptionEntry entries[] = { { NULL } };
  g_autoptr (RulesProgram) program = NULL;
  g_autoptr (GError) error = NULL;
  int status = 0;
  guint total = 0;

  if (!vpsctl_parse_options ("check-rules", "RULES.vsl - load and check a rule file", entries,
                             &argc, &argv, &status))
    return status;
  if (argc != 2)
    return vpsctl_usage ("check-rules: expected one rule file");
  program = load_program (ctl, argv[1], &error);
  if (program == NULL)
    {
      /* The message already is FILE:LINE:COL: ... */
      fprintf (stderr, "%s\n", error->message);
      return VPSCTL_EXIT_FAIL;
    }
  for (int s = 0; s < RULES_N_STAGES; s++)
    total += rules_program_n_rules (program, s);
  printf ("%s: OK, %u rules\n", argv[1], total);
  return VPSCTL_EXIT_OK;
}

static int
cmd_explain (Ctl *ctl, int argc, char **argv)
{
  GOptionEntry entries[] = { { NULL } };
  g_autoptr (RulesProgram) program = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  int status = 0;

  if (!vpsctl_parse_options ("explain", "RULES.vsl - print the compiled program", entries, &argc,
                             &argv, &status))
    return status;
  if (argc != 2)
    return vpsctl_usage ("explain: expected one rule file");
  program = load_program (ctl, argv[1], &error);
  if (program == NULL)
    {
      fprintf (stderr, "%s\n", error->message);
      return VPSCTL_EXIT_FAIL;
    }
  text = rules_program_explain (program);
  fputs (text, stdout);
  return VPSCTL_EXIT_OK;
}

static const char *
obj_string (JsonObject *o, const char *member)
{
  JsonNode *n = json_object_get_member (o, member);

  if (n == NULL || JSON_NODE_HOLDS_NULL (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

static gint64
obj_int (JsonObject *o, const char *member)
{
  JsonNode *n = json_object_get_member (o, member);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return 0;
  return json_node_get_int (n);
}

/* The human form of a run report: one line per stage, then the decision and
 * the modifications. */
static void
print_report_text (JsonObject *report)
{
  JsonArray *stages = json_object_get_array_member (report, "stages");
  JsonArray *mods = json_object_has_member (report, "modifications")
                        ? json_object_get_array_member (report, "modifications")
                        : NULL;
  const char *quarantine = obj_string (report, "quarantine");

  for (guint i = 0; stages && i < json_array_get_length (stages); i++)
    {
      JsonObject *st = json_array_get_object_element (stages, i);
      const char *rcpt = obj_string (st, "rcpt");
      const char *rule = obj_string (st, "rule");
      JsonArray *results = json_object_has_member (st, "results")
                               ? json_object_get_array_member (st, "results")
                               : NULL;

      printf ("%-9s %-10s", obj_string (st, "stage"), obj_string (st, "verdict"));
      if (g_strcmp0 (obj_string (st, "verdict"), "continue") != 0)
        printf (" %" G_GINT64_FORMAT " %s %s", obj_int (st, "code"),
                obj_string (st, "enhanced") ? obj_string (st, "enhanced") : "",
                obj_string (st, "text") ? obj_string (st, "text") : "");
      if (rcpt)
        printf (" <%s>", rcpt);
      if (rule)
        printf ("  [rule \"%s\"]", rule);
      printf ("\n");
      for (guint j = 0; results && j < json_array_get_length (results); j++)
        {
          JsonObject *r = json_array_get_object_element (results, j);
          g_autoptr (JsonGenerator) gen = json_generator_new ();
          g_autoptr (JsonNode) fields = NULL;
          g_autofree char *fields_text = NULL;

          if (json_object_has_member (r, "fields"))
            {
              fields = json_node_copy (json_object_get_member (r, "fields"));
              json_generator_set_root (gen, fields);
              fields_text = json_generator_to_data (gen, NULL);
            }
          printf ("          connector %s: %s%s %s\n", obj_string (r, "connector"),
                  obj_string (r, "verdict"),
                  json_object_get_boolean_member_with_default (r, "error", FALSE) ? " (error)" : "",
                  fields_text ? fields_text : "");
        }
    }
  printf ("result: %s %" G_GINT64_FORMAT " %s %s (at %s)\n", obj_string (report, "verdict"),
          obj_int (report, "code"),
          obj_string (report, "enhanced") ? obj_string (report, "enhanced") : "",
          obj_string (report, "text") ? obj_string (report, "text") : "",
          obj_string (report, "stage") ? obj_string (report, "stage") : "-");
  if (quarantine)
    printf ("quarantine: %s\n", quarantine);
  for (guint i = 0; mods && i < json_array_get_length (mods); i++)
    {
      JsonObject *m = json_array_get_object_element (mods, i);
      const char *name = obj_string (m, "name");
      const char *value = obj_string (m, "value");

      printf ("modification: %s%s%s%s%s\n", obj_string (m, "op"), name ? " " : "", name ? name : "",
              value ? " " : "", value ? value : "");
    }
}

static int
cmd_run (Ctl *ctl, int argc, char **argv)
{
  g_autofree char *from = NULL;
  g_auto (GStrv) rcpts = NULL;
  g_autofree char *client_ip = NULL;
  g_autofree char *helo = NULL;
  g_autofree char *rules_path = NULL;
  gboolean json = FALSE, apply = FALSE;
  GOptionEntry entries[] = {
    { "from", 0, 0, G_OPTION_ARG_STRING, &from, "Envelope sender (\"\" for <>)", "ADDR" },
    { "rcpt", 0, 0, G_OPTION_ARG_STRING_ARRAY, &rcpts, "Envelope recipient (repeatable)", "ADDR" },
    { "client-ip", 0, 0, G_OPTION_ARG_STRING, &client_ip, "Client address", "IP" },
    { "helo", 0, 0, G_OPTION_ARG_STRING, &helo, "HELO name", "NAME" },
    { "rules", 0, 0, G_OPTION_ARG_FILENAME, &rules_path, "Rule file instead of [vpsd] rules",
      "FILE" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the JSON report", NULL },
    { "apply", 0, 0, G_OPTION_ARG_NONE, &apply,
      "Really quarantine and export (default: only report)", NULL },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsEngine) engine = NULL;
  g_autoptr (JsonObject) report = NULL;
  VpsSimulateOptions options = { 0 };
  int status = 0;

  if (!vpsctl_parse_options ("run", "MSG.eml - run every stage on a message offline", entries,
                             &argc, &argv, &status))
    return status;
  if (argc != 2)
    return vpsctl_usage ("run: expected one message file");

  if (rules_path != NULL)
    {
      g_autoptr (RulesProgram) program = load_program (ctl, rules_path, &error);

      if (program == NULL)
        {
          fprintf (stderr, "%s\n", error->message);
          return VPSCTL_EXIT_FAIL;
        }
      engine = vps_engine_new_with_program (ctl->cfg, program, &error);
    }
  else
    engine = vps_engine_new (ctl->cfg, &error);
  if (engine == NULL)
    {
      fprintf (stderr, "%s\n", error->message);
      return VPSCTL_EXIT_FAIL;
    }

  options.from = from;
  options.rcpts = (const char *const *)rcpts;
  options.client_ip = client_ip;
  options.helo = helo;
  options.apply = apply;
  report = vps_simulate_run_file (engine, argv[1], &options, NULL, &error);
  if (report == NULL)
    return vpsctl_fail (argv[1], error);

  if (json)
    {
      g_autofree char *text = vps_report_to_string (report, TRUE);

      printf ("%s\n", text);
    }
  else
    print_report_text (report);
  return VPSCTL_EXIT_OK;
}

static VpsQuarantine *
open_quarantine (Ctl *ctl, GError **error)
{
  return vps_quarantine_open (vps_config_get_path_value (ctl->cfg, "quarantine", "dir"), error);
}

/* The entries as `quarantine list` prints them (offline and online). */
int
vpsctl_print_entries (GPtrArray *entries_found, gboolean json)
{
  if (json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      g_autoptr (JsonNode) root = NULL;
      g_autofree char *text = NULL;

      json_builder_begin_array (b);
      for (guint i = 0; i < entries_found->len; i++)
        {
          const VpsQuarantineEntry *e = g_ptr_array_index (entries_found, i);

          json_builder_begin_object (b);
          json_builder_set_member_name (b, "id");
          json_builder_add_string_value (b, e->id);
          json_builder_set_member_name (b, "name");
          json_builder_add_string_value (b, e->name);
          json_builder_set_member_name (b, "time");
          json_builder_add_int_value (b, e->time);
          json_builder_set_member_name (b, "size");
          json_builder_add_int_value (b, (gint64)e->size);
          json_builder_set_member_name (b, "sender");
          json_builder_add_string_value (b, e->sender ? e->sender : "");
          json_builder_set_member_name (b, "recipients");
          json_builder_begin_array (b);
          for (guint j = 0; e->recipients && e->recipients[j]; j++)
            json_builder_add_string_value (b, e->recipients[j]);
          json_builder_end_array (b);
          json_builder_set_member_name (b, "subject");
          json_builder_add_string_value (b, e->subject ? e->subject : "");
          json_builder_set_member_name (b, "reason");
          json_builder_add_string_value (b, e->reason ? e->reason : "");
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      root = json_builder_get_root (b);
      json_generator_set_root (gen, root);
      json_generator_set_pretty (gen, TRUE);
      text = json_generator_to_data (gen, NULL);
      printf ("%s\n", text);
      return VPSCTL_EXIT_OK;
    }

  for (guint i = 0; i < entries_found->len; i++)
    {
      const VpsQuarantineEntry *e = g_ptr_array_index (entries_found, i);
      g_autofree char *rcpts = e->recipients ? g_strjoinv (",", e->recipients) : g_strdup ("");

      printf ("%s %-8s %8" G_GUINT64_FORMAT " <%s> -> %s \"%s\" %s\n", e->id, e->name,
              (guint64)e->size, e->sender ? e->sender : "", rcpts, e->subject ? e->subject : "",
              e->reason ? e->reason : "");
    }
  return VPSCTL_EXIT_OK;
}

/* ---- online commands: vpsd's Admin service over gRPC ----------------------- */

/* Where vpsd's Admin service is: --server, [grpc] admin_listen, or
 * [grpc] listen (admin_mtls).  A wildcard listen address is reached on
 * the loopback. */
static int
cmd_quarantine_list (Ctl *ctl, int argc, char **argv)
{
  g_autofree char *name = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "name", 0, 0, G_OPTION_ARG_STRING, &name, "Only this quarantine", "NAME" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "One JSON array", NULL },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsQuarantine) q = NULL;
  g_autoptr (GPtrArray) entries_found = NULL;
  int status = 0;

  if (!vpsctl_parse_options ("quarantine list", "- list quarantined messages", entries, &argc,
                             &argv, &status))
    return status;
  if (argc != 1)
    return vpsctl_usage ("quarantine list: unexpected argument '%s'", argv[1]);
  if (ctl->server != NULL)
    return vpsctl_online_quarantine_list (ctl, name, json);
  q = open_quarantine (ctl, &error);
  if (q == NULL)
    return vpsctl_fail ("quarantine", error);
  entries_found = vps_quarantine_list (q, name, &error);
  if (entries_found == NULL)
    return vpsctl_fail ("quarantine list", error);
  return vpsctl_print_entries (entries_found, json);
}

static int
cmd_quarantine_show (Ctl *ctl, int argc, char **argv)
{
  g_autofree char *format = NULL;
  GOptionEntry entries[] = {
    { "format", 0, 0, G_OPTION_ARG_STRING, &format, "raw (default) or json", "raw|json" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsQuarantine) q = NULL;
  int status = 0;

  if (!vpsctl_parse_options ("quarantine show", "ID - print a quarantined message", entries, &argc,
                             &argv, &status))
    return status;
  if (argc != 2)
    return vpsctl_usage ("quarantine show: expected one id");
  if (format != NULL && strcmp (format, "raw") != 0 && strcmp (format, "json") != 0)
    return vpsctl_usage ("quarantine show: --format is raw or json, not '%s'", format);
  if (ctl->server != NULL)
    return vpsctl_online_quarantine_show (ctl, argv[1], format && strcmp (format, "json") == 0);
  q = open_quarantine (ctl, &error);
  if (q == NULL)
    return vpsctl_fail ("quarantine", error);
  if (format != NULL && strcmp (format, "json") == 0)
    {
      g_autofree char *text = vps_quarantine_get_json (q, argv[1], &error);

      if (text == NULL)
        return vpsctl_fail (argv[1], error);
      printf ("%s\n", text);
    }
  else
    {
      g_autoptr (GBytes) raw = vps_quarantine_get_raw (q, argv[1], &error);
      gsize len;
      const char *data;

      if (raw == NULL)
        return vpsctl_fail (argv[1], error);
      data = g_bytes_get_data (raw, &len);
      fwrite (data, 1, len, stdout);
    }
  return VPSCTL_EXIT_OK;
}

static int
cmd_quarantine_delete (Ctl *ctl, int argc, char **argv)
{
  GOptionEntry entries[] = { { NULL } };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsQuarantine) q = NULL;
  int status = 0;

  if (!vpsctl_parse_options ("quarantine delete", "ID - delete a quarantined message", entries,
                             &argc, &argv, &status))
    return status;
  if (argc != 2)
    return vpsctl_usage ("quarantine delete: expected one id");
  if (ctl->server != NULL)
    return vpsctl_online_quarantine_act (ctl, argv[1], FALSE);
  q = open_quarantine (ctl, &error);
  if (q == NULL)
    return vpsctl_fail ("quarantine", error);
  if (!vps_quarantine_delete (q, argv[1], &error))
    return vpsctl_fail (argv[1], error);
  printf ("deleted %s\n", argv[1]);
  return VPSCTL_EXIT_OK;
}

/* Offline: this process sends the stored message with its stored envelope
 * to [quarantine] release_to (vps/smtp-client.h), as vpsd does for the
 * gRPC call; online (--server) vpsd does it.  The message stays in the
 * quarantine either way (`quarantine delete` removes it). */
static int
cmd_quarantine_release (Ctl *ctl, int argc, char **argv)
{
  GOptionEntry entries[] = { { NULL } };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsQuarantine) q = NULL;
  g_autoptr (VpsQuarantineEntry) entry = NULL;
  g_autoptr (GBytes) raw = NULL;
  g_autoptr (VpsSmtpClientResult) result = NULL;
  g_autofree char *reply = NULL;
  const char *release_to;
  int status = 0;

  if (!vpsctl_parse_options ("quarantine release",
                             "ID - re-inject a quarantined message over SMTP to [quarantine] "
                             "release_to",
                             entries, &argc, &argv, &status))
    return status;
  if (argc != 2)
    return vpsctl_usage ("quarantine release: expected one id");
  if (ctl->server != NULL)
    return vpsctl_online_quarantine_act (ctl, argv[1], TRUE);
  q = open_quarantine (ctl, &error);
  if (q == NULL)
    return vpsctl_fail ("quarantine", error);
  if ((entry = vps_quarantine_get_entry (q, argv[1], &error)) == NULL)
    return vpsctl_fail (argv[1], error);
  if (!vps_config_has_key (ctl->cfg, "quarantine", "release_to"))
    {
      fprintf (stderr, "vpsctl: %s: [quarantine] release_to is not set%s%s: nowhere to send it\n",
               argv[1], ctl->config_path ? " in " : "", ctl->config_path ? ctl->config_path : "");
      return VPSCTL_EXIT_FAIL;
    }
  release_to = vps_config_get_string (ctl->cfg, "quarantine", "release_to");
  if ((raw = vps_quarantine_get_raw (q, argv[1], &error)) == NULL)
    return vpsctl_fail (argv[1], error);
  /* no sender in the entry: the null sender, so nothing bounces to a guess */
  result = vps_smtp_client_send (release_to, entry->sender ? entry->sender : "",
                                 (const char *const *)entry->recipients, raw, NULL, NULL, &error);
  if (result == NULL)
    {
      fprintf (stderr, "vpsctl: %s: release to %s: %s; the message stays in the quarantine\n",
               argv[1], release_to, error->message);
      return VPSCTL_EXIT_FAIL;
    }
  for (guint i = 0; i < result->rcpts->len; i++)
    {
      VpsSmtpClientRcpt *r = g_ptr_array_index (result->rcpts, i);
      g_autofree char *text = NULL;

      if (r->accepted)
        continue;
      text = vps_smtp_client_describe_reply (r->reply);
      fprintf (stderr, "vpsctl: %s: %s refused <%s>: %s\n", argv[1], release_to, r->address, text);
    }
  reply = vps_smtp_client_describe_reply (result->reply);
  printf ("released %s: %s\n", argv[1], reply);
  return VPSCTL_EXIT_OK;
}

static int
cmd_quarantine (Ctl *ctl, int argc, char **argv)
{
  if (argc < 2)
    return vpsctl_usage ("quarantine: expected list, show, delete or release");
  if (strcmp (argv[1], "release") == 0)
    return cmd_quarantine_release (ctl, argc - 1, argv + 1);
  if (strcmp (argv[1], "list") == 0)
    return cmd_quarantine_list (ctl, argc - 1, argv + 1);
  if (strcmp (argv[1], "show") == 0)
    return cmd_quarantine_show (ctl, argc - 1, argv + 1);
  if (strcmp (argv[1], "delete") == 0)
    return cmd_quarantine_delete (ctl, argc - 1, argv + 1);
  return vpsctl_usage ("quarantine: unknown sub-command '%s'", argv[1]);
}

static const char help_text[]
    = "usage: vpsctl [-c FILE] COMMAND ...\n"
      "\n"
      "  check-rules RULES.vsl        load and check a rule file (exit 1 on any error)\n"
      "  explain RULES.vsl            print the compiled program\n"
      "  run MSG.eml [--from ADDR] [--rcpt ADDR]... [--client-ip IP] [--helo NAME]\n"
      "              [--rules RULES.vsl] [--json] [--apply]\n"
      "                               run every stage on a message offline\n"
      "  quarantine list [--name NAME] [--json]\n"
      "  quarantine show ID [--format raw|json]\n"
      "  quarantine delete ID         offline; online with --server\n"
      "  quarantine release ID        send it over SMTP to [quarantine] release_to\n"
      "                               (offline; by vpsd with --server)\n"
      "  queue list [--hold|--dead] [--json]\n"
      "                               vsmtpd's spool ([queue] dir), oldest first\n"
      "  queue show ID [--format raw|json]\n"
      "  queue delete ID...           remove queued messages\n"
      "  queue hold ID...             put aside: not delivered until released\n"
      "  queue release ID...          give held messages back to delivery\n"
      "  queue retry ID...            make messages due now (and wake vsmtpd)\n"
      "  queue flush                  make every queued message due now\n"
      "  reload                       online: vpsd reloads configuration and rules\n"
      "  stats [--json]               online: vpsd's counters\n"
      "\n"
      "-c FILE reads the configuration vpsd reads (connectors, quarantine, exports,\n"
      "[grpc] admin_listen); without it the built-in defaults apply.\n"
      "Online options (before the command): --server HOST:PORT, --tls-ca FILE,\n"
      "--tls-cert FILE, --tls-key FILE, --tls-server-name NAME.  See docs/vpsctl.md.\n";

/* --server and the --tls-* options, as "--opt VALUE" or "--opt=VALUE". */
static gboolean
online_option (Ctl *ctl, int argc, char **argv, int *i)
{
  static const char *const names[]
      = { "--server", "--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name" };
  const char **slots[]
      = { &ctl->server, &ctl->tls_ca, &ctl->tls_cert, &ctl->tls_key, &ctl->tls_server_name };

  for (gsize n = 0; n < G_N_ELEMENTS (names); n++)
    {
      gsize len = strlen (names[n]);

      if (strcmp (argv[*i], names[n]) == 0 && *i + 1 < argc)
        {
          *slots[n] = argv[*i + 1];
          *i += 2;
          return TRUE;
        }
      if (strncmp (argv[*i], names[n], len) == 0 && argv[*i][len] == '=')
        {
          *slots[n] = argv[(*i)++] + len + 1;
          return TRUE;
        }
    }
  return FALSE;
}

int
main (int argc, char **argv)
{
  Ctl ctl = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsConfig) cfg = NULL;
  int i = 1;
  int status;

  setlocale (LC_ALL, "");
  /* Global options come before the command. */
  while (i < argc && argv[i][0] == '-')
    {
      if ((strcmp (argv[i], "-c") == 0 || strcmp (argv[i], "--config") == 0) && i + 1 < argc)
        {
          ctl.config_path = argv[i + 1];
          i += 2;
        }
      else if (g_str_has_prefix (argv[i], "--config="))
        ctl.config_path = argv[i++] + strlen ("--config=");
      else if (online_option (&ctl, argc, argv, &i))
        ;
      else if (strcmp (argv[i], "-h") == 0 || strcmp (argv[i], "--help") == 0)
        {
          fputs (help_text, stdout);
          return VPSCTL_EXIT_OK;
        }
      else
        return vpsctl_usage ("unknown option '%s'", argv[i]);
    }
  if (i >= argc)
    return vpsctl_usage ("expected a command");
  if (strcmp (argv[i], "help") == 0)
    {
      fputs (help_text, stdout);
      return VPSCTL_EXIT_OK;
    }

  /* Warnings (a connector that failed during `run`) go to stderr without
   * disturbing the report on stdout. */
  vps_log_setup (VPS_LOG_TARGET_STDERR, G_LOG_LEVEL_WARNING, "vpsctl", NULL);
  vps_connectors_register_all ();
  cfg = ctl.config_path ? vps_config_load (ctl.config_path, &error) : vps_config_new_default ();
  if (cfg == NULL)
    {
      fprintf (stderr, "%s\n", error->message);
      return VPSCTL_EXIT_FAIL;
    }
  ctl.cfg = cfg;

  if (strcmp (argv[i], "check-rules") == 0)
    status = cmd_check_rules (&ctl, argc - i, argv + i);
  else if (strcmp (argv[i], "explain") == 0)
    status = cmd_explain (&ctl, argc - i, argv + i);
  else if (strcmp (argv[i], "run") == 0)
    status = cmd_run (&ctl, argc - i, argv + i);
  else if (strcmp (argv[i], "quarantine") == 0)
    status = cmd_quarantine (&ctl, argc - i, argv + i);
  else if (strcmp (argv[i], "queue") == 0)
    status = vpsctl_cmd_queue (&ctl, argc - i, argv + i);
  else if (strcmp (argv[i], "reload") == 0)
    status = vpsctl_cmd_reload (&ctl, argc - i, argv + i);
  else if (strcmp (argv[i], "stats") == 0)
    status = vpsctl_cmd_stats (&ctl, argc - i, argv + i);
  else
    status = vpsctl_usage ("unknown command '%s'", argv[i]);
  return status;
}
