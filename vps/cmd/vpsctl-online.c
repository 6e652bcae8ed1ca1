/* SPDX-License-Identifier: MIT
 *
 * vpsctl-online.c — the vpsctl commands that talk to a running vpsd over
 * gRPC (the Admin service of proto/vps/v1/admin.proto): reload, stats, and
 * quarantine list/show/delete/release with --server.  The target is
 * --server, else [grpc] admin_listen, else [grpc] listen; TLS options come
 * from the command line or the configuration (docs/vpsctl.md).
 */
#include <stdio.h>
#include <string.h>

#include "proto/vps/v1/admin.pb-c.h"
#include "vps/cmd/vpsctl.h"
#include "vps/grpc-core.h"
#include "vps/quarantine.h"

static char *
admin_target (Ctl *ctl)
{
  const char *t = ctl->server;

  if (t == NULL)
    t = vps_config_has_key (ctl->cfg, "grpc", "admin_listen")
            ? vps_config_get_string (ctl->cfg, "grpc", "admin_listen")
            : vps_config_get_string (ctl->cfg, "grpc", "listen");
  if (g_str_has_prefix (t, "0.0.0.0:"))
    return g_strconcat ("127.0.0.1", t + strlen ("0.0.0.0"), NULL);
  if (g_str_has_prefix (t, "[::]:"))
    return g_strconcat ("[::1]", t + strlen ("[::]"), NULL);
  return g_strdup (t);
}

/* TLS when vpsd's listeners use it ([grpc] tls_cert) or any --tls-* option
 * is given.  The CA: --tls-ca, else [grpc] tls_client_ca (one private CA
 * for both sides), else vpsd's own certificate (self-signed). */
static VpsGrpcChannel *
open_admin (Ctl *ctl, const char *target, GError **error)
{
  gboolean cfg_tls = vps_config_has_key (ctl->cfg, "grpc", "tls_cert");
  VpsGrpcClientTls tls = { 0 };

  if (!cfg_tls && !ctl->tls_ca && !ctl->tls_cert && !ctl->tls_server_name)
    return vps_grpc_channel_new (target, NULL, VPSCTL_MAX_REPLY, error);
  tls.ca = ctl->tls_ca;
  if (tls.ca == NULL && vps_config_has_key (ctl->cfg, "grpc", "tls_client_ca"))
    tls.ca = vps_config_get_path_value (ctl->cfg, "grpc", "tls_client_ca");
  if (tls.ca == NULL && cfg_tls)
    tls.ca = vps_config_get_path_value (ctl->cfg, "grpc", "tls_cert");
  tls.cert = ctl->tls_cert;
  tls.key = ctl->tls_key;
  tls.server_name = ctl->tls_server_name;
  return vps_grpc_channel_new (target, &tls, VPSCTL_MAX_REPLY, error);
}

/* One Admin call: `reply` unpacked, or NULL with the message printed. */
static ProtobufCMessage *
admin_call (Ctl *ctl, const char *method, const ProtobufCMessage *request,
            const ProtobufCMessageDescriptor *reply, int *status)
{
  g_autofree char *target = admin_target (ctl);
  g_autofree char *path = g_strconcat ("/vps.v1.Admin/", method, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsGrpcChannel) channel = open_admin (ctl, target, &error);
  g_autoptr (GBytes) out = NULL;
  g_autoptr (GBytes) in = NULL;
  ProtobufCMessage *msg;
  gsize len = protobuf_c_message_get_packed_size (request);
  guint8 *buf = g_malloc (MAX (len, 1));

  protobuf_c_message_pack (request, buf);
  out = g_bytes_new_take (buf, len);
  if (channel != NULL)
    in = vps_grpc_channel_call_sync (channel, path, out, VPSCTL_CALL_TIMEOUT_US, NULL, &error);
  if (in == NULL)
    {
      /* a release answers UNAVAILABLE itself when its SMTP server is down */
      if (g_error_matches (error, VPS_GRPC_STATUS_ERROR, VPS_GRPC_STATUS_UNAVAILABLE)
          && strcmp (method, "ReleaseQuarantined") != 0)
        fprintf (stderr, "vpsctl: %s: cannot reach vpsd at %s: %s\n", method, target,
                 error->message);
      else
        fprintf (stderr, "vpsctl: %s (%s): %s\n", method, target, error->message);
      *status = VPSCTL_EXIT_FAIL;
      return NULL;
    }
  msg = protobuf_c_message_unpack (reply, NULL, g_bytes_get_size (in), g_bytes_get_data (in, NULL));
  if (msg == NULL)
    {
      fprintf (stderr, "vpsctl: %s (%s): the reply does not parse\n", method, target);
      *status = VPSCTL_EXIT_FAIL;
    }
  return msg;
}

static void
free_reply (gpointer msg)
{
  protobuf_c_message_free_unpacked (msg, NULL);
}

static const char *
pb_stage (int s)
{
  return s >= 1 && s <= RULES_N_STAGES ? rules_stage_name ((RulesStage)(s - 1)) : "unknown";
}

static const char *
pb_verdict (int v)
{
  return v >= 1 && v <= RULES_VERDICT_DISCARD + 1 ? rules_verdict_name ((RulesVerdict)(v - 1))
                                                  : "unknown";
}

int
vpsctl_cmd_reload (Ctl *ctl, int argc, char **argv)
{
  GOptionEntry entries[] = { { NULL } };
  Vps__V1__ReloadRequest req = VPS__V1__RELOAD_REQUEST__INIT;
  Vps__V1__ReloadResponse *r;
  int status = 0;

  if (!vpsctl_parse_options ("reload", "- make vpsd reload its configuration and rules", entries,
                             &argc, &argv, &status))
    return status;
  if (argc != 1)
    return vpsctl_usage ("reload: unexpected argument '%s'", argv[1]);
  r = (gpointer)admin_call (ctl, "Reload", &req.base, &vps__v1__reload_response__descriptor,
                            &status);
  if (r == NULL)
    return status;
  printf ("reloaded: generation %u\n", r->generation);
  free_reply (r);
  return VPSCTL_EXIT_OK;
}

static void
stats_json (Vps__V1__StatsResponse *r)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

#define MEMBER_INT(name, v)                                                                        \
  G_STMT_START                                                                                     \
  {                                                                                                \
    json_builder_set_member_name (b, name);                                                        \
    json_builder_add_int_value (b, (gint64)(v));                                                   \
  }                                                                                                \
  G_STMT_END
#define MEMBER_STR(name, v)                                                                        \
  G_STMT_START                                                                                     \
  {                                                                                                \
    json_builder_set_member_name (b, name);                                                        \
    json_builder_add_string_value (b, v);                                                          \
  }                                                                                                \
  G_STMT_END
  json_builder_begin_object (b);
  MEMBER_INT ("generation", r->generation);
  MEMBER_INT ("sessions", r->sessions);
  MEMBER_INT ("calls_in_flight", r->calls_in_flight);
  json_builder_set_member_name (b, "stages");
  json_builder_begin_array (b);
  for (size_t i = 0; i < r->n_stages; i++)
    {
      json_builder_begin_object (b);
      MEMBER_STR ("stage", pb_stage (r->stages[i]->stage));
      MEMBER_STR ("verdict", pb_verdict (r->stages[i]->verdict));
      MEMBER_INT ("count", r->stages[i]->count);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "connectors");
  json_builder_begin_array (b);
  for (size_t i = 0; i < r->n_connectors; i++)
    {
      Vps__V1__ConnectorStats *c = r->connectors[i];

      json_builder_begin_object (b);
      MEMBER_STR ("name", c->name);
      MEMBER_STR ("type", c->type);
      MEMBER_INT ("calls", c->calls);
      MEMBER_INT ("errors", c->errors);
      MEMBER_INT ("timeouts", c->timeouts);
      MEMBER_INT ("total_ms", c->total_ms);
      MEMBER_INT ("active", c->active);
      MEMBER_INT ("queued", c->queued);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "methods");
  json_builder_begin_array (b);
  for (size_t i = 0; i < r->n_methods; i++)
    {
      Vps__V1__MethodStats *m = r->methods[i];

      json_builder_begin_object (b);
      MEMBER_STR ("method", m->method);
      MEMBER_INT ("calls", m->calls);
      MEMBER_INT ("errors", m->errors);
      MEMBER_INT ("total_us", m->total_us);
      MEMBER_INT ("max_us", m->max_us);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
#undef MEMBER_INT
#undef MEMBER_STR
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
}

int
vpsctl_cmd_stats (Ctl *ctl, int argc, char **argv)
{
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "One JSON object", NULL },
    { NULL },
  };
  Vps__V1__StatsRequest req = VPS__V1__STATS_REQUEST__INIT;
  Vps__V1__StatsResponse *r;
  int status = 0;

  if (!vpsctl_parse_options ("stats", "- print vpsd's counters", entries, &argc, &argv, &status))
    return status;
  if (argc != 1)
    return vpsctl_usage ("stats: unexpected argument '%s'", argv[1]);
  r = (gpointer)admin_call (ctl, "Stats", &req.base, &vps__v1__stats_response__descriptor, &status);
  if (r == NULL)
    return status;
  if (json)
    {
      stats_json (r);
      free_reply (r);
      return VPSCTL_EXIT_OK;
    }
  printf ("generation %u, %u sessions, %u calls in flight\n", r->generation, r->sessions,
          r->calls_in_flight);
  for (size_t i = 0; i < r->n_stages; i++)
    printf ("stage %-8s %-10s %" G_GUINT64_FORMAT "\n", pb_stage (r->stages[i]->stage),
            pb_verdict (r->stages[i]->verdict), (guint64)r->stages[i]->count);
  for (size_t i = 0; i < r->n_connectors; i++)
    {
      Vps__V1__ConnectorStats *c = r->connectors[i];

      printf ("connector %s (%s): %" G_GUINT64_FORMAT " calls, %" G_GUINT64_FORMAT
              " errors, %" G_GUINT64_FORMAT " timeouts, mean %.1f ms, %u active, %u queued\n",
              c->name, c->type, (guint64)c->calls, (guint64)c->errors, (guint64)c->timeouts,
              c->calls ? (double)c->total_ms / (double)c->calls : 0.0, c->active, c->queued);
    }
  for (size_t i = 0; i < r->n_methods; i++)
    {
      Vps__V1__MethodStats *m = r->methods[i];

      printf ("method %s: %" G_GUINT64_FORMAT " calls, %" G_GUINT64_FORMAT
              " errors, mean %.0f us, max %" G_GUINT64_FORMAT " us\n",
              m->method, (guint64)m->calls, (guint64)m->errors,
              m->calls ? (double)m->total_us / (double)m->calls : 0.0, (guint64)m->max_us);
    }
  free_reply (r);
  return VPSCTL_EXIT_OK;
}

int
vpsctl_online_quarantine_list (Ctl *ctl, const char *name, gboolean json)
{
  Vps__V1__ListQuarantineRequest req = VPS__V1__LIST_QUARANTINE_REQUEST__INIT;
  Vps__V1__ListQuarantineResponse *r;
  g_autoptr (GPtrArray) entries
      = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_quarantine_entry_free);
  int status = 0;

  req.name = (char *)(name ? name : "");
  r = (gpointer)admin_call (ctl, "ListQuarantine", &req.base,
                            &vps__v1__list_quarantine_response__descriptor, &status);
  if (r == NULL)
    return status;
  for (size_t i = 0; i < r->n_entries; i++)
    {
      Vps__V1__QuarantineEntry *pe = r->entries[i];
      VpsQuarantineEntry *e = g_new0 (VpsQuarantineEntry, 1);

      e->id = g_strdup (pe->id);
      e->name = g_strdup (pe->name);
      e->time = pe->time;
      e->size = pe->size;
      e->sender = g_strdup (pe->sender);
      e->recipients = g_new0 (char *, pe->n_recipients + 1);
      for (size_t j = 0; j < pe->n_recipients; j++)
        e->recipients[j] = g_strdup (pe->recipients[j]);
      e->subject = g_strdup (pe->subject);
      e->reason = g_strdup (pe->reason);
      e->rule = g_strdup (pe->rule);
      g_ptr_array_add (entries, e);
    }
  if (r->truncated)
    fprintf (stderr, "vpsctl: quarantine list: more entries than vpsd lists in one reply\n");
  free_reply (r);
  return vpsctl_print_entries (entries, json);
}

int
vpsctl_online_quarantine_show (Ctl *ctl, const char *id, gboolean json)
{
  Vps__V1__GetQuarantinedRequest req = VPS__V1__GET_QUARANTINED_REQUEST__INIT;
  Vps__V1__GetQuarantinedResponse *r;
  int status = 0;

  req.id = (char *)id;
  req.format = json ? VPS__V1__QUARANTINE_FORMAT__QUARANTINE_FORMAT_JSON
                    : VPS__V1__QUARANTINE_FORMAT__QUARANTINE_FORMAT_RAW;
  r = (gpointer)admin_call (ctl, "GetQuarantined", &req.base,
                            &vps__v1__get_quarantined_response__descriptor, &status);
  if (r == NULL)
    return status;
  if (json)
    printf ("%s\n", r->json);
  else
    fwrite (r->raw.data, 1, r->raw.len, stdout);
  free_reply (r);
  return VPSCTL_EXIT_OK;
}

/* delete and release: the same request shape, one line of output */
int
vpsctl_online_quarantine_act (Ctl *ctl, const char *id, gboolean release)
{
  Vps__V1__DeleteQuarantinedRequest del = VPS__V1__DELETE_QUARANTINED_REQUEST__INIT;
  Vps__V1__ReleaseQuarantinedRequest rel = VPS__V1__RELEASE_QUARANTINED_REQUEST__INIT;
  ProtobufCMessage *r;
  int status = 0;

  del.id = rel.id = (char *)id;
  if (release)
    r = admin_call (ctl, "ReleaseQuarantined", &rel.base,
                    &vps__v1__release_quarantined_response__descriptor, &status);
  else
    r = admin_call (ctl, "DeleteQuarantined", &del.base,
                    &vps__v1__delete_quarantined_response__descriptor, &status);
  if (r == NULL)
    return status;
  if (release)
    printf ("released %s: %s\n", id, ((Vps__V1__ReleaseQuarantinedResponse *)r)->reply);
  else
    printf ("deleted %s\n", id);
  free_reply (r);
  return VPSCTL_EXIT_OK;
}
