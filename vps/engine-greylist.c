/* SPDX-License-Identifier: MIT
 *
 * engine-greylist.c — greylisting as postgrey 1.37 does it: the keys a
 * greylisting check reads and the decision over what they hold (the
 * engine's shared-state module, engine-state.c, reads and writes them).
 *
 * Contract (docs/state.md "Greylisting"):
 *  - the triplet is the client network (/24 IPv4, /64 IPv6), the sender
 *    (lowercased, +extension removed, numbers-only words replaced by '#',
 *    BATV prvs= tag removed) and the recipient (lowercased): the recipient
 *    being checked at rcpt, every accepted one (the first
 *    VPS_GREY_MAX_TRIPLETS) at data;
 *  - vps:grey:t:NET/SENDER/RCPT holds the first-seen time (s) while pending,
 *    expiring retry_window after it was set (a later retry starts over),
 *    and GREY_PASSED once a retry came after delay, expiring lifetime
 *    after the last pass;
 *  - vps:grey:c:IP counts the passes of a client address (at most one an
 *    hour, marked by vps:grey:h:IP); at auto_whitelist it is not greylisted
 *    for lifetime after it was last seen;
 *  - whitelist_clients are never greylisted.
 * Time is this host's clock: instances sharing Redis should run NTP; a
 * first-seen time in the future counts as now.
 */
#include "vps/engine-private.h"

#include <string.h>

#include "vps/state.h"

/* The value of a triplet that passed; pending ones hold their first-seen
 * time in seconds since the epoch, always far larger. */
#define GREY_PASSED 1
/* Auto-whitelisting counts a client at most once an hour (postgrey). */
#define GREY_AWL_INTERVAL_MS (3600 * 1000)

/* postgrey's sender substitutions: BATV prvs=TAG=LOCAL → LOCAL, +extension
 * stripped, every word made only of digits replaced by '#' (VERP), then
 * lowercased (postgrey lowercases the whole triplet). */
char *
vps_grey_sender (const char *sender)
{
  const char *at = strrchr (sender, '@');
  g_autofree char *local = g_ascii_strdown (sender, at ? at - sender : -1);
  GString *out = g_string_new (NULL);
  char *plus;
  const char *p;

  if (at == NULL)
    {
      g_string_free (out, TRUE);
      return g_steal_pointer (&local);
    }
  if (g_str_has_prefix (local, "prvs="))
    {
      g_auto (GStrv) parts = g_strsplit (local, "=", -1);
      if (g_strv_length (parts) == 3)
        {
          /* the tag is 10 alphanumerics; either order occurs */
          gboolean tag1 = strlen (parts[1]) >= 10, tag2 = strlen (parts[2]) >= 10;
          for (guint i = 0; tag1 && i < 10; i++)
            tag1 = g_ascii_isalnum (parts[1][i]);
          for (guint i = 0; tag2 && i < 10; i++)
            tag2 = g_ascii_isalnum (parts[2][i]);
          char *pick = tag2 && !tag1 ? parts[1] : parts[2];
          g_free (local);
          local = g_strdup (pick);
        }
    }
  if ((plus = strchr (local, '+')) != NULL)
    *plus = '\0';
  for (p = local; *p;)
    {
      const char *q = p;
      gboolean word_start = p == local || !(g_ascii_isalnum (p[-1]) || p[-1] == '_');

      while (g_ascii_isdigit (*q))
        q++;
      if (q > p && word_start && !(g_ascii_isalnum (*q) || *q == '_'))
        {
          g_string_append_c (out, '#');
          p = q;
        }
      else
        g_string_append_c (out, *p++);
    }
  {
    g_autofree char *domain = g_ascii_strdown (at + 1, -1);
    g_string_append_printf (out, "@%s", domain);
  }
  return g_string_free (out, FALSE);
}

/* The client network of the triplet: /24 for IPv4, /64 for IPv6. */
static gboolean
grey_net (const char *ip, char *buf)
{
  RulesIp a;

  if (ip == NULL || !rules_ip_parse (ip, strlen (ip), &a))
    return FALSE;
  if (a.family == 4)
    a.addr[3] = 0;
  else
    memset (a.addr + 8, 0, 8);
  rules_ip_to_string (&a, buf);
  return TRUE;
}

static gboolean
whitelisted_client (const VpsGreyConf *conf, const char *ip)
{
  g_autoptr (GInetAddress) addr = NULL;

  if (conf->whitelist->len == 0 || ip == NULL
      || (addr = g_inet_address_new_from_string (ip)) == NULL)
    return FALSE;
  for (guint i = 0; i < conf->whitelist->len; i++)
    if (g_inet_address_mask_matches (g_ptr_array_index (conf->whitelist, i), addr))
      return TRUE;
  return FALSE;
}

static char *
triplet_key (const char *net, const char *sender, const char *rcpt)
{
  g_autofree char *lrcpt = g_ascii_strdown (rcpt, -1);
  char *key = g_strdup_printf ("vps:grey:t:%s/%s/%s", net, sender, lrcpt);

  if (strlen (key) > VPS_STATE_MAX_KEY)
    {
      /* as postgrey --privacy does, but only where the key would not fit */
      g_autofree char *sum = g_compute_checksum_for_string (G_CHECKSUM_SHA256, key, -1);
      g_free (key);
      key = g_strconcat ("vps:grey:t:sha256:", sum, NULL);
    }
  return key;
}

gboolean
vps_grey_keys (const VpsGreyConf *conf, VpsStageRun *sr, GPtrArray *keys)
{
  const char *ip = vps_session_get_client_ip (sr->session);
  const char *from = vps_txn_get_sender (sr->txn);
  g_autofree char *sender = vps_grey_sender (from ? from : "");
  char net[48];
  const char *one[2] = { vps_txn_get_rcpt (sr->txn), NULL };
  const char *const *rcpts
      = sr->stage == RULES_STAGE_RCPT ? one : vps_txn_get_rcpts (sr->txn, NULL);
  guint first;

  if (!grey_net (ip, net) || whitelisted_client (conf, ip) || rcpts == NULL || rcpts[0] == NULL)
    return FALSE;
  if (conf->awl > 0)
    {
      g_ptr_array_add (keys, g_strconcat ("vps:grey:c:", ip, NULL));
      g_ptr_array_add (keys, g_strconcat ("vps:grey:h:", ip, NULL));
    }
  first = keys->len;
  for (guint i = 0; rcpts[i] != NULL && keys->len - first < VPS_GREY_MAX_TRIPLETS; i++)
    {
      char *key = triplet_key (net, sender, rcpts[i]);
      gboolean dup = FALSE;

      for (guint k = first; k < keys->len && !dup; k++)
        dup = strcmp (g_ptr_array_index (keys, k), key) == 0;
      if (dup)
        g_free (key);
      else
        g_ptr_array_add (keys, key);
    }
  return TRUE;
}

gboolean
vps_grey_decide (const VpsGreyConf *conf, const char *const *keys, guint n_keys,
                 const VpsStateResult *r, VpsStateOp *w, guint *nw)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  guint t0 = conf->awl > 0 ? 2 : 0;
  gboolean defer = FALSE, newly_passed = FALSE;

  *nw = 0;
  if (conf->awl > 0 && r[0].found && r[0].value >= conf->awl)
    {
      /* an auto-whitelisted client: seen again, remembered for lifetime */
      w[(*nw)++] = (VpsStateOp){ VPS_STATE_SET, keys[0], NULL, r[0].value, conf->lifetime_ms };
      return FALSE;
    }
  for (guint i = t0; i < n_keys; i++)
    {
      if (!r[i].found)
        {
          /* first seen: pending until retry_window, then it starts over;
           * SET_NX so that two instances agree on the first time */
          w[(*nw)++] = (VpsStateOp){ VPS_STATE_SET_NX, keys[i], NULL, now, conf->retry_window_ms };
          defer = TRUE;
        }
      else if (r[i].value == GREY_PASSED)
        w[(*nw)++] = (VpsStateOp){ VPS_STATE_SET, keys[i], NULL, GREY_PASSED, conf->lifetime_ms };
      else if (now - MIN (r[i].value, now) >= conf->delay_s)
        {
          w[(*nw)++] = (VpsStateOp){ VPS_STATE_SET, keys[i], NULL, GREY_PASSED, conf->lifetime_ms };
          newly_passed = TRUE;
        }
      else
        defer = TRUE; /* retried too early: the first-seen time stays */
    }
  if (newly_passed && conf->awl > 0 && !r[1].found)
    {
      w[(*nw)++] = (VpsStateOp){ VPS_STATE_SET, keys[1], NULL, 1, GREY_AWL_INTERVAL_MS };
      w[(*nw)++] = (VpsStateOp){ VPS_STATE_INCR, keys[0], NULL, 1, conf->lifetime_ms };
    }
  return defer;
}
