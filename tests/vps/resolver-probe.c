/* SPDX-License-Identifier: MIT
 *
 * resolver-probe.c — asks vps/resolver.h and prints the answers, for
 * tests/integration/test_resolver.py (checked against a real dnsmasq).
 *
 *   resolver-probe [--nameserver IP[:PORT]] [--timeout MS] KIND NAME [KIND NAME]...
 *
 * KIND is mx, a, aaaa or addr (A and AAAA).  All queries run at once on the
 * main loop through the asynchronous API; one JSON object a line is printed
 * per query, in argument order:
 *   {"kind":"mx","name":N,"outcome":"ok","mx":[[10,"mx1.example"],...],"ms":12}
 *   {"kind":"a","name":N,"outcome":"ok","addresses":["192.0.2.1"],"ms":3}
 *   {"kind":"mx","name":N,"outcome":"nxdomain","message":"...","ms":2}
 * outcome: ok nxdomain nodata null-mx temporary malformed invalid-name
 * cancelled.  Exit status 0 once every query answered, 2 on bad usage.
 */
#include <json-glib/json-glib.h>
#include "vps/resolver.h"

typedef struct
{
  VpsResolver *resolver;
  const char *kind;
  const char *name;
  gint64 started;
  gint64 ms;
  GPtrArray *records;
  GError *error;
  guint *pending;
} Probe;

static const char *
outcome_name (const GError *e)
{
  static const char *const names[] = {
    [VPS_RESOLVER_ERROR_NXDOMAIN] = "nxdomain",
    [VPS_RESOLVER_ERROR_NODATA] = "nodata",
    [VPS_RESOLVER_ERROR_NULL_MX] = "null-mx",
    [VPS_RESOLVER_ERROR_TEMPORARY] = "temporary",
    [VPS_RESOLVER_ERROR_MALFORMED] = "malformed",
    [VPS_RESOLVER_ERROR_INVALID_NAME] = "invalid-name",
    [VPS_RESOLVER_ERROR_CANCELLED] = "cancelled",
  };

  if (e == NULL)
    return "ok";
  if (e->domain == VPS_RESOLVER_ERROR && e->code >= 0 && e->code < (int)G_N_ELEMENTS (names))
    return names[e->code];
  return "other";
}

static void
done (GObject *source, GAsyncResult *res, gpointer data)
{
  Probe *p = data;

  if (g_strcmp0 (p->kind, "mx") == 0)
    p->records = vps_resolver_lookup_mx_finish (p->resolver, res, &p->error);
  else
    p->records = vps_resolver_lookup_addresses_finish (p->resolver, res, &p->error);
  p->ms = (g_get_monotonic_time () - p->started) / 1000;
  (*p->pending)--;
}

static void
print_probe (const Probe *p)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "kind");
  json_builder_add_string_value (b, p->kind);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, p->name);
  json_builder_set_member_name (b, "outcome");
  json_builder_add_string_value (b, outcome_name (p->error));
  if (p->error != NULL)
    {
      json_builder_set_member_name (b, "message");
      json_builder_add_string_value (b, p->error->message);
    }
  else if (g_strcmp0 (p->kind, "mx") == 0)
    {
      json_builder_set_member_name (b, "mx");
      json_builder_begin_array (b);
      for (guint i = 0; i < p->records->len; i++)
        {
          const VpsResolverMx *mx = p->records->pdata[i];

          json_builder_begin_array (b);
          json_builder_add_int_value (b, mx->preference);
          json_builder_add_string_value (b, mx->exchange);
          json_builder_end_array (b);
        }
      json_builder_end_array (b);
    }
  else
    {
      json_builder_set_member_name (b, "addresses");
      json_builder_begin_array (b);
      for (guint i = 0; i < p->records->len; i++)
        {
          g_autofree char *s = g_inet_address_to_string (p->records->pdata[i]);

          json_builder_add_string_value (b, s);
        }
      json_builder_end_array (b);
    }
  json_builder_set_member_name (b, "ms");
  json_builder_add_int_value (b, p->ms);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  g_print ("%s\n", text);
}

int
main (int argc, char **argv)
{
  g_autofree char *nameserver = NULL;
  gint64 timeout_ms = 0;
  GOptionEntry entries[] = {
    { "nameserver", 0, 0, G_OPTION_ARG_STRING, &nameserver, "server to ask", "IP[:PORT]" },
    { "timeout", 0, 0, G_OPTION_ARG_INT64, &timeout_ms, "timeout of one lookup", "MS" },
    { NULL },
  };
  g_autoptr (GOptionContext) opts = g_option_context_new ("KIND NAME [KIND NAME]...");
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsResolver) r = NULL;
  g_autofree Probe *probes = NULL;
  guint n, pending;

  g_option_context_add_main_entries (opts, entries, NULL);
  if (!g_option_context_parse (opts, &argc, &argv, &error) || argc < 3 || (argc - 1) % 2 != 0)
    {
      g_printerr (
          "usage: resolver-probe [--nameserver IP[:PORT]] [--timeout MS] KIND NAME...\n%s\n",
          error ? error->message : "");
      return 2;
    }
  r = vps_resolver_new (nameserver, timeout_ms, &error);
  if (r == NULL)
    {
      g_printerr ("resolver-probe: %s\n", error->message);
      return 2;
    }
  n = (guint)(argc - 1) / 2;
  for (guint i = 0; i < n; i++)
    if (!g_strv_contains ((const char *const[]){ "mx", "a", "aaaa", "addr", NULL },
                          argv[1 + 2 * i]))
      {
        g_printerr ("resolver-probe: unknown kind \"%s\" (mx, a, aaaa, addr)\n", argv[1 + 2 * i]);
        return 2;
      }
  pending = n;
  probes = g_new0 (Probe, n);
  for (guint i = 0; i < n; i++)
    {
      Probe *p = &probes[i];

      p->resolver = r;
      p->kind = argv[1 + 2 * i];
      p->name = argv[2 + 2 * i];
      p->pending = &pending;
      p->started = g_get_monotonic_time ();
      if (g_strcmp0 (p->kind, "mx") == 0)
        vps_resolver_lookup_mx_async (r, p->name, NULL, done, p);
      else if (g_strcmp0 (p->kind, "a") == 0)
        vps_resolver_lookup_addresses_async (r, p->name, VPS_RESOLVER_FAMILY_IPV4, NULL, done, p);
      else if (g_strcmp0 (p->kind, "aaaa") == 0)
        vps_resolver_lookup_addresses_async (r, p->name, VPS_RESOLVER_FAMILY_IPV6, NULL, done, p);
      else
        vps_resolver_lookup_addresses_async (r, p->name, VPS_RESOLVER_FAMILY_ANY, NULL, done, p);
    }
  while (pending > 0)
    g_main_context_iteration (NULL, TRUE);
  for (guint i = 0; i < n; i++)
    {
      print_probe (&probes[i]);
      g_clear_pointer (&probes[i].records, g_ptr_array_unref);
      g_clear_error (&probes[i].error);
    }
  return 0;
}
