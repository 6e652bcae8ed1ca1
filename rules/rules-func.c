/* SPDX-License-Identifier: MIT
 *
 * rules-func.c — the built-in functions of vsl: lower upper len domain
 * local starts_with ends_with contains dnsbl resolves in_file env, and the
 * shared-state checks rate concurrency greylisted.
 *
 * Contract: like every evaluation, a function never fails: bad or missing
 * arguments give "" / 0 / false.  dnsbl() and resolves() go through
 * host->query; an unanswered query sets run->wait (the rule is re-evaluated
 * when the answer is in the host's cache).  DNSBL names follow RFC 5782 §2.1
 * (IPv4: reversed octets) and §2.4 (IPv6: reversed nibbles).
 * Case changes and case-insensitive tests are ASCII only (see rules-value.c).
 */
#include "rules/rules-private.h"

#include <string.h>

/* DNS names are at most 253 characters; a longer query is never listed. */
#define DNS_NAME_MAX 253

static void
arg_string (RulesRun *run, const RulesNode *n, guint i, RulesValue *v, const char **p, gsize *len)
{
  rules_eval (run, n->args[i], v);
  rules_value_to_string (run, v, p, len);
}

/* Strips <> around an address: "<a@b>" -> "a@b". */
static void
strip_angle (const char **p, gsize *len)
{
  if (*len >= 2 && (*p)[0] == '<' && (*p)[*len - 1] == '>')
    {
      (*p)++;
      *len -= 2;
    }
}

static const char *
last_at (const char *p, gsize len)
{
  for (gsize i = len; i > 0; i--)
    if (p[i - 1] == '@')
      return p + i - 1;
  return NULL;
}

static void
query (RulesRun *run, RulesQuery q, const char *name, RulesValue *out)
{
  RulesValue ans = { 0 };

  if (run->vt == NULL || run->vt->query == NULL)
    {
      rules_value_set_bool (out, FALSE);
      return;
    }
  if (!run->vt->query (run->host, q, name, &ans))
    {
      run->wait = TRUE;
      rules_value_set_bool (out, FALSE);
      return;
    }
  rules_value_set_bool (out, rules_value_truthy (&ans));
}

static void
fn_dnsbl (RulesRun *run, const RulesNode *n, RulesValue *out)
{
  RulesValue zv, iv = { 0 };
  const char *zone;
  gsize zlen;
  GString *name;
  RulesIp ip;
  static const char hex[] = "0123456789abcdef";

  rules_value_set_bool (out, FALSE);
  arg_string (run, n, 0, &zv, &zone, &zlen);
  if (n->n_args == 2)
    rules_eval (run, n->args[1], &iv);
  else if (run->vt && run->vt->get)
    {
      RulesRef ref = { RULES_VAR_CLIENT_IP, NULL, NULL };
      run->vt->get (run->host, &ref, NULL, &iv);
    }
  if (iv.type == RULES_TYPE_IP)
    ip = iv.ip;
  else if (iv.type != RULES_TYPE_STRING || !rules_ip_parse (iv.s.ptr, iv.s.len, &ip))
    return;
  if (zlen == 0 || zlen > DNS_NAME_MAX)
    return;
  name = g_string_sized_new (80);
  if (ip.family == 4)
    g_string_append_printf (name, "%u.%u.%u.%u.", ip.addr[3], ip.addr[2], ip.addr[1], ip.addr[0]);
  else
    for (int i = 15; i >= 0; i--)
      {
        g_string_append_c (name, hex[ip.addr[i] & 0xf]);
        g_string_append_c (name, '.');
        g_string_append_c (name, hex[ip.addr[i] >> 4]);
        g_string_append_c (name, '.');
      }
  g_string_append_len (name, zone, (gssize)zlen);
  if (name->len <= DNS_NAME_MAX + 64)
    query (run, RULES_QUERY_DNSBL, rules_arena_strndup (&run->arena, name->str, name->len), out);
  g_string_free (name, TRUE);
}

/* Asks the host's shared state; without one (or for a key the backend
 * could never hold) the answer is "not limited". */
static void
state_call (RulesRun *run, RulesStateCall *call, RulesValue *out)
{
  RulesValue ans = { 0 };

  if (call->kind == RULES_STATE_CONCURRENCY)
    rules_value_set_int (out, 0);
  else
    rules_value_set_bool (out, call->kind == RULES_STATE_RATE);
  if (run->vt == NULL || run->vt->state == NULL)
    return;
  if (call->key != NULL && (call->key_len == 0 || call->key_len > RULES_MAX_STATE_KEY))
    return;
  if (!run->vt->state (run->host, call, &ans))
    {
      run->wait = TRUE;
      return;
    }
  if (call->kind == RULES_STATE_CONCURRENCY)
    rules_value_set_int (out, ans.type == RULES_TYPE_INT ? ans.i : 0);
  else
    rules_value_set_bool (out, rules_value_truthy (&ans));
}

static void
fn_state (RulesRun *run, const RulesNode *n, RulesValue *out)
{
  RulesStateCall call = { 0 };
  RulesValue kv = { 0 };
  const char *key;
  gsize klen;

  call.site = n;
  if (n->index == RULES_FN_GREYLISTED)
    {
      call.kind = RULES_STATE_GREYLISTED;
      state_call (run, &call, out);
      return;
    }
  arg_string (run, n, 0, &kv, &key, &klen);
  /* NUL-terminated for the host; a key with a NUL inside is not one */
  call.key = memchr (key, '\0', klen) ? "" : rules_arena_strndup (&run->arena, key, klen);
  call.key_len = call.key[0] ? klen : 0;
  if (n->index == RULES_FN_RATE)
    {
      call.kind = RULES_STATE_RATE;
      call.limit = n->args[1]->lit.i;
      call.period = n->args[2]->lit.i;
    }
  else
    call.kind = RULES_STATE_CONCURRENCY;
  state_call (run, &call, out);
}

void
rules_eval_greylisted (RulesRun *run, const RulesAction *a, RulesValue *out)
{
  RulesStateCall call = { .kind = RULES_STATE_GREYLISTED, .site = a };

  state_call (run, &call, out);
}

void
rules_eval_func (RulesRun *run, const RulesNode *n, RulesValue *out)
{
  RulesValue v = { 0 }, w = { 0 };
  const char *p = "", *q = "";
  gsize len = 0, qlen = 0;

  switch ((RulesFunc)n->index)
    {
      case RULES_FN_LOWER:
      case RULES_FN_UPPER:
        {
          char *s;
          arg_string (run, n, 0, &v, &p, &len);
          s = rules_arena_alloc (&run->arena, len + 1);
          for (gsize i = 0; i < len; i++)
            s[i] = n->index == RULES_FN_LOWER ? g_ascii_tolower (p[i]) : g_ascii_toupper (p[i]);
          s[len] = '\0';
          rules_value_set_string (out, s, (gssize)len, FALSE);
          return;
        }
      case RULES_FN_LEN:
        rules_eval (run, n->args[0], &v);
        if (v.type == RULES_TYPE_STRV)
          rules_value_set_int (out, (gint64)v.strv.n);
        else if (v.type == RULES_TYPE_LIST)
          rules_value_set_int (out, v.list ? v.list->n_entries : 0);
        else
          {
            rules_value_to_string (run, &v, &p, &len);
            rules_value_set_int (out, v.type == RULES_TYPE_NONE ? 0 : (gint64)len);
          }
        return;
      case RULES_FN_DOMAIN:
      case RULES_FN_LOCAL:
        {
          const char *at;
          arg_string (run, n, 0, &v, &p, &len);
          strip_angle (&p, &len);
          at = last_at (p, len);
          if (n->index == RULES_FN_DOMAIN)
            rules_value_set_string (out, at ? at + 1 : "", at ? (gssize)(p + len - at - 1) : 0,
                                    TRUE);
          else
            rules_value_set_string (out, p, at ? (gssize)(at - p) : (gssize)len, TRUE);
          return;
        }
      case RULES_FN_STARTS_WITH:
      case RULES_FN_ENDS_WITH:
        {
          gboolean ci;
          arg_string (run, n, 0, &v, &p, &len);
          arg_string (run, n, 1, &w, &q, &qlen);
          ci = v.ci || w.ci;
          if (qlen > len)
            rules_value_set_bool (out, FALSE);
          else if (n->index == RULES_FN_STARTS_WITH)
            rules_value_set_bool (out, rules_str_equal (p, qlen, q, qlen, ci));
          else
            rules_value_set_bool (out, rules_str_equal (p + len - qlen, qlen, q, qlen, ci));
          return;
        }
      case RULES_FN_CONTAINS:
        rules_eval (run, n->args[0], &v);
        arg_string (run, n, 1, &w, &q, &qlen);
        if (v.type == RULES_TYPE_STRV)
          {
            /* On a list of strings: membership (case-insensitive). */
            for (gsize i = 0; i < v.strv.n; i++)
              if (rules_str_equal (v.strv.v[i], strlen (v.strv.v[i]), q, qlen, TRUE))
                {
                  rules_value_set_bool (out, TRUE);
                  return;
                }
            rules_value_set_bool (out, FALSE);
            return;
          }
        rules_value_to_string (run, &v, &p, &len);
        rules_value_set_bool (out, rules_str_contains (p, len, q, qlen, v.ci || w.ci));
        return;
      case RULES_FN_DNSBL:
        fn_dnsbl (run, n, out);
        return;
      case RULES_FN_RESOLVES:
        arg_string (run, n, 0, &v, &p, &len);
        if (len == 0 || len > DNS_NAME_MAX || memchr (p, '\0', len))
          {
            rules_value_set_bool (out, FALSE);
            return;
          }
        query (run, RULES_QUERY_RESOLVES, rules_arena_strndup (&run->arena, p, len), out);
        return;
      case RULES_FN_IN_FILE:
        rules_eval (run, n->args[1], &v);
        rules_value_set_bool (out, n->data && rules_file_cache_contains (n->data, &v));
        return;
      case RULES_FN_ENV:
        {
          const char *val;
          arg_string (run, n, 0, &v, &p, &len);
          val = g_getenv (rules_arena_strndup (&run->arena, p, len));
          rules_value_set_string (
              out, val ? rules_arena_strndup (&run->arena, val, strlen (val)) : "", -1, FALSE);
          return;
        }
      case RULES_FN_RATE:
      case RULES_FN_CONCURRENCY:
      case RULES_FN_GREYLISTED:
        fn_state (run, n, out);
        return;
      default:
        return;
    }
}
