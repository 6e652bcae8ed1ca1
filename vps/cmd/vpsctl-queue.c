/* SPDX-License-Identifier: MIT
 *
 * vpsctl-queue.c — `vpsctl queue list|show|delete|hold|release`: vsmtpd's
 * spool ([queue] dir of the configuration) read and managed in place
 * (mta/queue.h), offline: no daemon is asked, and the spool is opened
 * without its lock or recovery (vsmtpd may own it at that moment).
 *
 * Every id from the command line is checked with vps_queue_valid_id()
 * before anything is done: one bad id ("../x") is a usage error (exit 2)
 * and nothing is touched.  An id that is not queued is a failure (exit 1)
 * reported on stderr; the other ids of the same command are still done.
 * A message being delivered at that moment may be deleted or held under
 * the delivery's feet: the delivery notices (its envelope update fails)
 * and does not put it back (docs/vpsctl.md).
 */
#include <stdio.h>
#include <string.h>

#include "mta/queue.h"
#include "vps/cmd/vpsctl.h"

static VpsQueue *
open_spool (Ctl *ctl, int *status)
{
  const char *dir = vps_config_get_path_value (ctl->cfg, "queue", "dir");
  g_autoptr (GError) error = NULL;
  VpsQueue *q = vps_queue_open (dir, FALSE, &error);

  if (q == NULL)
    *status = vpsctl_fail ("queue", error);
  return q;
}

/* Every argument an id, or a usage error naming the first that is not. */
static gboolean
check_ids (const char *cmd, int argc, char **argv, int *status)
{
  if (argc < 2)
    {
      *status = vpsctl_usage ("queue %s: expected at least one id", cmd);
      return FALSE;
    }
  for (int i = 1; i < argc; i++)
    if (!vps_queue_valid_id (argv[i]))
      {
        *status = vpsctl_usage ("queue %s: '%s' is not a queue id (%d hex digits)", cmd, argv[i],
                                VPS_QUEUE_ID_LEN);
        return FALSE;
      }
  return TRUE;
}

/* "2026-11-28T21:40:00Z": the list shows seconds. */
static char *
list_time (gint64 usec)
{
  g_autofree char *full = NULL;

  if (usec == 0)
    return g_strdup ("-");
  full = vps_envelope_format_time (usec);
  return g_strdup_printf ("%.19sZ", full);
}

static void
print_text (const VpsEnvelope *env)
{
  g_autofree char *received = list_time (env->received);
  g_autoptr (GString) rcpts = g_string_new (NULL);

  for (guint i = 0; i < env->rcpts->len; i++)
    {
      const VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);

      g_string_append_printf (rcpts, "%s%s (%s)", i ? ", " : "", r->address,
                              vps_rcpt_state_name (r->state));
    }
  printf ("%s %s %8" G_GUINT64_FORMAT " %u <%s> -> %s\n", env->id, received, env->size,
          env->attempts, env->sender, rcpts->str);
}

static void
add_time (JsonBuilder *b, const char *member, gint64 usec)
{
  json_builder_set_member_name (b, member);
  if (usec == 0)
    json_builder_add_null_value (b);
  else
    {
      g_autofree char *text = vps_envelope_format_time (usec);

      json_builder_add_string_value (b, text);
    }
}

static void
add_json (JsonBuilder *b, const VpsEnvelope *env, VpsQueueArea area)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, env->id);
  json_builder_set_member_name (b, "area");
  json_builder_add_string_value (b, vps_queue_area_name (area));
  add_time (b, "received", env->received);
  json_builder_set_member_name (b, "size");
  json_builder_add_int_value (b, (gint64)MIN (env->size, (guint64)G_MAXINT64));
  json_builder_set_member_name (b, "sender");
  json_builder_add_string_value (b, env->sender);
  json_builder_set_member_name (b, "attempts");
  json_builder_add_int_value (b, env->attempts);
  add_time (b, "next_attempt", env->next_attempt);
  json_builder_set_member_name (b, "recipients");
  json_builder_begin_array (b);
  for (guint i = 0; i < env->rcpts->len; i++)
    {
      const VpsQueueRcpt *r = g_ptr_array_index (env->rcpts, i);

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "address");
      json_builder_add_string_value (b, r->address);
      json_builder_set_member_name (b, "state");
      json_builder_add_string_value (b, vps_rcpt_state_name (r->state));
      json_builder_set_member_name (b, "result");
      if (r->result != NULL)
        json_builder_add_string_value (b, r->result);
      else
        json_builder_add_null_value (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static void
print_json (JsonNode *root)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autofree char *text = NULL;

  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
}

static int
cmd_list (Ctl *ctl, int argc, char **argv)
{
  gboolean hold = FALSE, json = FALSE;
  GOptionEntry entries[] = {
    { "hold", 0, 0, G_OPTION_ARG_NONE, &hold, "The held messages (hold/), not incoming/", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "One JSON array", NULL },
    { NULL },
  };
  VpsQueueArea area;
  g_autoptr (VpsQueue) q = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  int status = VPSCTL_EXIT_OK;

  if (!vpsctl_parse_options ("queue list", "- list queued messages, oldest first", entries, &argc,
                             &argv, &status))
    return status;
  if (argc != 1)
    return vpsctl_usage ("queue list: unexpected argument '%s'", argv[1]);
  area = hold ? VPS_QUEUE_HOLD : VPS_QUEUE_INCOMING;
  if ((q = open_spool (ctl, &status)) == NULL)
    return status;
  if ((ids = vps_queue_list (q, area, &error)) == NULL)
    return vpsctl_fail ("queue list", error);
  json_builder_begin_array (b);
  for (guint i = 0; i < ids->len; i++)
    {
      const char *id = g_ptr_array_index (ids, i);
      g_autoptr (VpsEnvelope) env = vps_queue_load_envelope (q, id, &error);

      if (env == NULL)
        {
          /* delivered (or moved) since the listing: not an error */
          if (!g_error_matches (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_NOT_FOUND))
            status = vpsctl_fail (NULL, error);
          g_clear_error (&error);
          continue;
        }
      if (json)
        add_json (b, env, area);
      else
        print_text (env);
    }
  json_builder_end_array (b);
  if (json)
    {
      root = json_builder_get_root (b);
      print_json (root);
    }
  return status;
}

static int
cmd_show (Ctl *ctl, int argc, char **argv)
{
  g_autofree char *format = NULL;
  GOptionEntry entries[] = {
    { "format", 0, 0, G_OPTION_ARG_STRING, &format, "raw (the message, default) or json",
      "raw|json" },
    { NULL },
  };
  g_autoptr (VpsQueue) q = NULL;
  g_autoptr (GError) error = NULL;
  gboolean json;
  int status = 0;

  if (!vpsctl_parse_options ("queue show", "ID - print a queued message or its envelope", entries,
                             &argc, &argv, &status))
    return status;
  if (argc != 2)
    return vpsctl_usage ("queue show: expected one id");
  if (format != NULL && strcmp (format, "raw") != 0 && strcmp (format, "json") != 0)
    return vpsctl_usage ("queue show: --format is raw or json, not '%s'", format);
  json = format != NULL && strcmp (format, "json") == 0;
  if (!check_ids ("show", argc, argv, &status) || (q = open_spool (ctl, &status)) == NULL)
    return status;
  if (json)
    {
      /* the envelope as stored (not re-encoded from a VpsEnvelope) */
      g_autoptr (GBytes) data = vps_queue_load_envelope_data (q, argv[1], &error);
      g_autoptr (JsonNode) root = NULL;

      if (data != NULL)
        root = vps_envelope_parse_data (g_bytes_get_data (data, NULL), g_bytes_get_size (data),
                                        &error);
      if (root == NULL)
        return vpsctl_fail (argv[1], error);
      print_json (root);
    }
  else
    {
      g_autoptr (GBytes) raw = vps_queue_load_message (q, argv[1], &error);
      gsize len;
      const char *data;

      if (raw == NULL)
        return vpsctl_fail (argv[1], error);
      data = g_bytes_get_data (raw, &len);
      if (fwrite (data, 1, len, stdout) != len || fflush (stdout) != 0)
        {
          fprintf (stderr, "vpsctl: %s: cannot write the message out\n", argv[1]);
          return VPSCTL_EXIT_FAIL;
        }
    }
  return VPSCTL_EXIT_OK;
}

typedef gboolean (*QueueAction) (VpsQueue *q, const char *id, GError **error);

static const struct
{
  const char *name;
  const char *summary;
  const char *done; /* printed per id */
  QueueAction action;
} actions[] = {
  { "delete", "ID... - remove queued messages", "deleted", vps_queue_remove },
  { "hold", "ID... - put messages aside (hold/): not delivered until released", "held",
    vps_queue_hold },
  { "release", "ID... - give held messages back to delivery", "released", vps_queue_release },
};

static int
cmd_action (Ctl *ctl, gsize which, int argc, char **argv)
{
  GOptionEntry entries[] = { { NULL } };
  g_autofree char *name = g_strconcat ("queue ", actions[which].name, NULL);
  g_autoptr (VpsQueue) q = NULL;
  int status = VPSCTL_EXIT_OK;

  if (!vpsctl_parse_options (name, actions[which].summary, entries, &argc, &argv, &status))
    return status;
  if (!check_ids (actions[which].name, argc, argv, &status)
      || (q = open_spool (ctl, &status)) == NULL)
    return status;
  for (int i = 1; i < argc; i++)
    {
      g_autoptr (GError) error = NULL;

      if (actions[which].action (q, argv[i], &error))
        printf ("%s %s\n", actions[which].done, argv[i]);
      else
        status = vpsctl_fail (NULL, error);
    }
  return status;
}

int
vpsctl_cmd_queue (Ctl *ctl, int argc, char **argv)
{
  if (argc < 2)
    return vpsctl_usage ("queue: expected list, show, delete, hold or release");
  if (ctl->server != NULL)
    return vpsctl_usage ("queue: works on the spool directly; --server does not apply");
  if (strcmp (argv[1], "list") == 0)
    return cmd_list (ctl, argc - 1, argv + 1);
  if (strcmp (argv[1], "show") == 0)
    return cmd_show (ctl, argc - 1, argv + 1);
  for (gsize i = 0; i < G_N_ELEMENTS (actions); i++)
    if (strcmp (argv[1], actions[i].name) == 0)
      return cmd_action (ctl, i, argc - 1, argv + 1);
  return vpsctl_usage ("queue: unknown sub-command '%s'", argv[1]);
}
