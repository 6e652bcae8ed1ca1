/* SPDX-License-Identifier: MIT
 *
 * rules-list.c — compiled lists and membership (`in`), list files, and the
 * lazily read files of in_file().
 *
 * A list is compiled into the structure its entries need: a hash set of
 * ASCII-lowercased strings (exact, case-insensitive), a set of domains (an
 * entry matches itself and every subdomain), a set of networks hashed by
 * prefix length (rules-cidr.c), regexes combined into a few alternations
 * (rules-regex.c), an array of integers.  Literal lists ([..]) may mix
 * kinds.  Entries are added one by one, then rules_list_seal() builds the
 * network and regex sets (an unsealed list still answers, by scanning).
 * Membership never allocates for values shorter than LOWER_BUF bytes.
 *
 * A run memoises its look-ups (rules_run_list_contains): lists are
 * immutable, so the same value in the same list gives the same answer for
 * the whole run; the memo compares the value's bytes, never its address.
 *
 * List files: one entry a line, '#' starts a comment, blank lines ignored;
 * a bad entry is a load error at its file:line:col.
 */
#include "rules/rules-private.h"

#include <glib/gstdio.h>
#include <string.h>

#define LOWER_BUF 512                        /* stack buffer for case folding */
#define FILE_CACHE_CHECK_USEC G_USEC_PER_SEC /* at most one stat a second */

static const char *const kind_names[] = { "string", "regex", "cidr", "domain", "mixed" };

const char *
rules_list_kind_name (RulesListKind kind)
{
  return (guint)kind < G_N_ELEMENTS (kind_names) ? kind_names[kind] : "?";
}

gboolean
rules_list_kind_from_name (const char *name, RulesListKind *out)
{
  for (guint i = 0; i < RULES_LIST_MIXED; i++)
    if (g_strcmp0 (name, kind_names[i]) == 0)
      {
        *out = (RulesListKind)i;
        return TRUE;
      }
  return FALSE;
}

RulesList *
rules_list_new (const char *name, RulesListKind kind)
{
  RulesList *l = g_new0 (RulesList, 1);
  l->name = g_strdup (name);
  l->kind = kind;
  return l;
}

void
rules_list_free (RulesList *l)
{
  if (l == NULL)
    return;
  g_free (l->name);
  g_free (l->source);
  g_clear_pointer (&l->strings, g_hash_table_unref);
  g_clear_pointer (&l->domains, g_hash_table_unref);
  g_clear_pointer (&l->cidrs, g_array_unref);
  g_clear_pointer (&l->cidr_set, rules_cidr_set_free);
  g_clear_pointer (&l->regexes, g_ptr_array_unref);
  g_clear_pointer (&l->regex_set, rules_regex_set_free);
  g_clear_pointer (&l->ints, g_array_unref);
  g_free (l);
}

void
rules_list_seal (RulesList *l)
{
  if (l == NULL || l->sealed)
    return;
  if (l->cidrs)
    l->cidr_set = rules_cidr_set_new ((const RulesIp *)(gpointer)l->cidrs->data, l->cidrs->len);
  if (l->regexes)
    l->regex_set = rules_regex_set_new ((RulesRegex *const *)l->regexes->pdata, l->regexes->len);
  l->sealed = TRUE;
}

/* Adding to a sealed list (nothing does today) drops the sets it outdates. */
static void
unseal (RulesList *l)
{
  g_clear_pointer (&l->cidr_set, rules_cidr_set_free);
  g_clear_pointer (&l->regex_set, rules_regex_set_free);
  l->sealed = FALSE;
}

static void
add_lower (GHashTable **set, const char *s, gsize len)
{
  char *k = g_ascii_strdown (s, (gssize)len);
  if (*set == NULL)
    *set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_hash_table_add (*set, k);
}

gboolean
rules_list_add_value (RulesList *l, const RulesValue *v, const char **why)
{
  unseal (l);
  switch (v->type)
    {
      case RULES_TYPE_STRING:
        if (l->kind == RULES_LIST_DOMAIN)
          {
            const char *s = v->s.ptr;
            gsize len = v->s.len;
            /* ".example.com" and "example.com" mean the same: it and below. */
            while (len > 0 && *s == '.')
              s++, len--;
            add_lower (&l->domains, s, len);
          }
        else
          add_lower (&l->strings, v->s.ptr, v->s.len);
        break;
      case RULES_TYPE_IP:
      case RULES_TYPE_CIDR:
        if (l->cidrs == NULL)
          l->cidrs = g_array_new (FALSE, FALSE, sizeof (RulesIp));
        g_array_append_val (l->cidrs, v->ip);
        break;
      case RULES_TYPE_REGEX:
        if (v->re == NULL)
          {
            *why = "a list holds strings, numbers, addresses, networks and regexes";
            return FALSE;
          }
        if (l->regexes == NULL)
          l->regexes = g_ptr_array_new_with_free_func ((GDestroyNotify)rules_regex_unref);
        g_ptr_array_add (l->regexes, rules_regex_ref (v->re));
        break;
      case RULES_TYPE_INT:
        if (l->ints == NULL)
          l->ints = g_array_new (FALSE, FALSE, sizeof (gint64));
        g_array_append_val (l->ints, v->i);
        break;
      default:
        *why = "a list holds strings, numbers, addresses, networks and regexes";
        return FALSE;
    }
  if (++l->n_entries > RULES_MAX_LIST_ENTRIES)
    {
      *why = "too many list entries";
      return FALSE;
    }
  return TRUE;
}

static gboolean
load_entry (RulesList *l, const char *file, guint line, guint col, const char *s, gsize len,
            GError **error)
{
  RulesValue v = { 0 };
  const char *why = NULL;
  RulesRegex *re = NULL;
  gboolean ok;

  switch (l->kind)
    {
      case RULES_LIST_CIDR:
        {
          const char *slash = memchr (s, '/', len);
          guint64 bits = 0;
          if (!rules_ip_parse (s, slash ? (gsize)(slash - s) : len, &v.ip))
            {
              rules_set_error (error, RULES_ERROR_INVALID, file, line, col,
                               "invalid address or network '%.*s'", (int)MIN (len, 64), s);
              return FALSE;
            }
          v.type = RULES_TYPE_CIDR;
          if (slash)
            {
              g_autofree char *num = g_strndup (slash + 1, len - (gsize)(slash + 1 - s));
              if (!g_ascii_string_to_unsigned (num, 10, 0, v.ip.family == 4 ? 32 : 128, &bits,
                                               NULL))
                {
                  rules_set_error (error, RULES_ERROR_INVALID, file, line, col,
                                   "invalid network prefix length '%s'", num);
                  return FALSE;
                }
              v.ip.prefix = (guint8)bits;
              for (guint b = (guint)bits; b < (v.ip.family == 4 ? 32u : 128u); b++)
                v.ip.addr[b / 8] &= (guint8) ~(0x80 >> (b % 8));
            }
          break;
        }
      case RULES_LIST_REGEX:
        {
          g_autoptr (GError) local = NULL;
          g_autofree char *pat = g_strndup (s, len);
          re = rules_regex_new (pat, 0, &local);
          if (re == NULL)
            {
              rules_set_error (error, RULES_ERROR_INVALID, file, line, col, "invalid regex: %s",
                               local->message);
              return FALSE;
            }
          v.type = RULES_TYPE_REGEX;
          v.re = re;
          break;
        }
      default:
        rules_value_set_string (&v, s, (gssize)len, TRUE);
        break;
    }
  ok = rules_list_add_value (l, &v, &why);
  rules_regex_unref (re);
  if (!ok)
    {
      rules_set_error (error, RULES_ERROR_INVALID, file, line, col, "%s", why);
      return FALSE;
    }
  return TRUE;
}

gboolean
rules_list_load_text (RulesList *l, const char *file, const char *text, gsize len, GError **error)
{
  const char *p = text, *end = text + len, *bad = NULL;
  guint line = 0;

  if (len > RULES_MAX_SOURCE_SIZE)
    {
      rules_set_error (error, RULES_ERROR_IO, file, 1, 1, "file is larger than %u bytes",
                       (guint)RULES_MAX_SOURCE_SIZE);
      return FALSE;
    }
  if (!g_utf8_validate_len (text, len, &bad))
    {
      guint bl = 1;
      for (const char *q = text; q < bad; q++)
        bl += *q == '\n';
      rules_set_error (error, RULES_ERROR_SYNTAX, file, bl, 1, "invalid UTF-8");
      return FALSE;
    }
  while (p < end)
    {
      const char *nl = memchr (p, '\n', (gsize)(end - p));
      const char *eol = nl ? nl : end, *s = p, *e;
      line++;
      if (eol - p > RULES_MAX_LIST_LINE)
        {
          rules_set_error (error, RULES_ERROR_INVALID, file, line, 1, "line longer than %u bytes",
                           (guint)RULES_MAX_LIST_LINE);
          return FALSE;
        }
      e = memchr (s, '#', (gsize)(eol - s));
      if (e == NULL)
        e = eol;
      while (s < e && g_ascii_isspace (*s))
        s++;
      while (e > s && g_ascii_isspace (e[-1]))
        e--;
      if (e > s
          && !load_entry (l, file, line, (guint)g_utf8_strlen (p, s - p) + 1, s, (gsize)(e - s),
                          error))
        return FALSE;
      p = nl ? nl + 1 : end;
    }
  rules_list_seal (l);
  return TRUE;
}

static gboolean
set_has_lower (GHashTable *set, const char *s, gsize len)
{
  char buf[LOWER_BUF];
  g_autofree char *heap = NULL;
  char *k = buf;

  if (set == NULL)
    return FALSE;
  if (len >= sizeof buf)
    k = heap = g_malloc (len + 1);
  for (gsize i = 0; i < len; i++)
    k[i] = g_ascii_tolower (s[i]);
  k[len] = '\0';
  if (memchr (s, '\0', len) != NULL)
    return FALSE;
  return g_hash_table_contains (set, k);
}

static gboolean
domain_match (GHashTable *set, const char *s, gsize len)
{
  const char *at;

  if (set == NULL || len == 0)
    return FALSE;
  /* An address stands for its domain; an address literal never matches. */
  while ((at = memchr (s, '@', len)) != NULL)
    {
      len -= (gsize)(at + 1 - s);
      s = at + 1;
    }
  if (len > 0 && s[len - 1] == '>')
    len--;
  if (len > 0 && s[len - 1] == '.')
    len--;
  while (len > 0)
    {
      const char *dot;
      if (set_has_lower (set, s, len))
        return TRUE;
      dot = memchr (s, '.', len);
      if (dot == NULL)
        break;
      len -= (gsize)(dot + 1 - s);
      s = dot + 1;
    }
  return FALSE;
}

static gboolean
cidrs_contain (const RulesList *l, const RulesIp *ip)
{
  if (l->cidr_set)
    return rules_cidr_set_contains (l->cidr_set, ip);
  if (l->cidrs)
    for (guint i = 0; i < l->cidrs->len; i++)
      if (rules_ip_in_cidr (ip, &g_array_index (l->cidrs, RulesIp, i)))
        return TRUE;
  return FALSE;
}

static gboolean
regexes_match (const RulesList *l, const char *s, gsize len)
{
  if (l->regex_set)
    return rules_regex_set_match (l->regex_set, s, len);
  if (l->regexes)
    for (guint i = 0; i < l->regexes->len; i++)
      if (rules_regex_match (l->regexes->pdata[i], s, len))
        return TRUE;
  return FALSE;
}

gboolean
rules_list_contains (const RulesList *l, const RulesValue *v)
{
  RulesIp ip;

  if (l == NULL)
    return FALSE;
  switch (v->type)
    {
      case RULES_TYPE_IP:
        if (cidrs_contain (l, &v->ip))
          return TRUE;
        if (l->strings)
          {
            char buf[46];
            rules_ip_to_string (&v->ip, buf);
            return set_has_lower (l->strings, buf, strlen (buf));
          }
        return FALSE;
      case RULES_TYPE_STRING:
        if (set_has_lower (l->strings, v->s.ptr, v->s.len))
          return TRUE;
        if (domain_match (l->domains, v->s.ptr, v->s.len))
          return TRUE;
        if (regexes_match (l, v->s.ptr, v->s.len))
          return TRUE;
        if (l->cidrs && rules_ip_parse (v->s.ptr, v->s.len, &ip))
          return cidrs_contain (l, &ip);
        return FALSE;
      case RULES_TYPE_INT:
        if (l->ints)
          for (guint i = 0; i < l->ints->len; i++)
            if (g_array_index (l->ints, gint64, i) == v->i)
              return TRUE;
        return FALSE;
      case RULES_TYPE_STRV:
        /* A set of values is in the list if any of them is. */
        for (gsize i = 0; i < v->strv.n; i++)
          {
            RulesValue e;
            rules_value_set_string (&e, v->strv.v[i], -1, v->ci);
            if (rules_list_contains (l, &e))
              return TRUE;
          }
        return FALSE;
      default:
        return FALSE;
    }
}

/* ---- memoised membership -------------------------------------------------- */

/* The most recent look-ups of a run (round robin).  Values longer than
 * RULES_MEMO_KEY_MAX bytes are looked up every time. */
#define RULES_MEMO_SLOTS 16
#define RULES_MEMO_KEY_MAX 200

typedef struct
{
  const RulesList *list;
  RulesType type; /* STRING or IP */
  gboolean found;
  gsize len;
  RulesIp ip;
  char key[RULES_MEMO_KEY_MAX];
} MemoSlot;

/* One memo per thread, owned by one run at a time (the run's serial): a
 * run that finds another's serial there starts it afresh.  Runs come and go
 * by the thousand; keeping the memo in the thread spares each one a
 * zeroed allocation of a few KB.  Serials are never reused, so a slot can
 * never answer for a list of another run's (maybe freed) program. */
typedef struct
{
  guint64 owner;
  guint n, next;
  MemoSlot slots[RULES_MEMO_SLOTS];
} Memo;

static GPrivate memo_key = G_PRIVATE_INIT (g_free); /* frees it at thread exit */
static __thread Memo *thread_memo;
static guint64 last_serial;

static Memo *
run_memo (RulesRun *run)
{
  Memo *memo = thread_memo;

  if (G_UNLIKELY (memo == NULL))
    {
      memo = g_new0 (Memo, 1);
      g_private_set (&memo_key, memo);
      thread_memo = memo;
    }
  if (run->memo_serial == 0)
    run->memo_serial = __atomic_add_fetch (&last_serial, 1, __ATOMIC_RELAXED);
  if (memo->owner != run->memo_serial)
    {
      memo->owner = run->memo_serial;
      memo->n = memo->next = 0;
    }
  return memo;
}

static gboolean
slot_is (const MemoSlot *m, const RulesList *l, const RulesValue *v)
{
  if (m->list != l || m->type != v->type)
    return FALSE;
  if (v->type == RULES_TYPE_IP)
    return m->ip.family == v->ip.family && memcmp (m->ip.addr, v->ip.addr, 16) == 0;
  return m->len == v->s.len && memcmp (m->key, v->s.ptr, v->s.len) == 0;
}

/* One string or IP through the memo. */
static gboolean
memo_contains (RulesRun *run, const RulesList *l, const RulesValue *v)
{
  Memo *memo;
  MemoSlot *m;
  gboolean found;

  if (v->type == RULES_TYPE_STRING ? v->s.len > RULES_MEMO_KEY_MAX : v->type != RULES_TYPE_IP)
    return rules_list_contains (l, v);
  memo = run_memo (run);
  for (guint i = 0; i < memo->n; i++)
    if (slot_is (&memo->slots[i], l, v))
      return memo->slots[i].found;
  found = rules_list_contains (l, v);
  if (memo->n < RULES_MEMO_SLOTS)
    m = &memo->slots[memo->n++];
  else
    {
      m = &memo->slots[memo->next];
      memo->next = (memo->next + 1) % RULES_MEMO_SLOTS;
    }
  m->list = l;
  m->type = v->type;
  m->found = found;
  if (v->type == RULES_TYPE_IP)
    {
      /* Compared on all 16 bytes: two IPv4 values that differ only in junk
       * after their 4 bytes take two slots, with the same answer. */
      m->ip = v->ip;
    }
  else
    {
      m->len = v->s.len;
      if (v->s.len)
        memcpy (m->key, v->s.ptr, v->s.len);
    }
  return found;
}

gboolean
rules_run_list_contains (RulesRun *run, const RulesList *l, const RulesValue *v)
{
  /* Folding constants at load has no run to keep a memo in. */
  if (l == NULL || run->vt == NULL)
    return rules_list_contains (l, v);
  if (v->type == RULES_TYPE_STRV)
    {
      for (gsize i = 0; i < v->strv.n; i++)
        {
          RulesValue e;
          rules_value_set_string (&e, v->strv.v[i], -1, v->ci);
          if (memo_contains (run, l, &e))
            return TRUE;
        }
      return FALSE;
    }
  return memo_contains (run, l, v);
}

/* ---- in_file() ------------------------------------------------------------ */

RulesFileCache *
rules_file_cache_new (const char *path)
{
  RulesFileCache *c = g_new0 (RulesFileCache, 1);
  c->path = g_strdup (path);
  c->mtime = -1;
  c->last_check = G_MININT64;
  g_mutex_init (&c->lock);
  return c;
}

void
rules_file_cache_free (RulesFileCache *c)
{
  if (c == NULL)
    return;
  g_mutex_clear (&c->lock);
  rules_list_free (c->list);
  g_free (c->path);
  g_free (c);
}

/* Called with the lock held. */
static void
refresh (RulesFileCache *c)
{
  gint64 now = g_get_monotonic_time ();
  GStatBuf st;
  g_autofree char *text = NULL;
  gsize len = 0;

  if (c->last_check != G_MININT64 && now - c->last_check < FILE_CACHE_CHECK_USEC)
    return;
  c->last_check = now;
  if (g_stat (c->path, &st) != 0)
    {
      g_clear_pointer (&c->list, rules_list_free);
      c->mtime = -1;
      return;
    }
  if ((gint64)st.st_mtim.tv_sec * G_GINT64_CONSTANT (1000000000) + st.st_mtim.tv_nsec == c->mtime
      && (gint64)st.st_size == c->size && (guint64)st.st_ino == c->ino && c->list != NULL)
    return;
  g_clear_pointer (&c->list, rules_list_free);
  c->mtime = (gint64)st.st_mtim.tv_sec * G_GINT64_CONSTANT (1000000000) + st.st_mtim.tv_nsec;
  c->size = (gint64)st.st_size;
  c->ino = (guint64)st.st_ino;
  if (g_file_get_contents (c->path, &text, &len, NULL))
    {
      c->list = rules_list_new (NULL, RULES_LIST_STRING);
      /* A broken file at run time matches nothing rather than failing. */
      if (!rules_list_load_text (c->list, c->path, text, len, NULL))
        g_clear_pointer (&c->list, rules_list_free);
    }
}

gboolean
rules_file_cache_contains (RulesFileCache *c, const RulesValue *v)
{
  gboolean found;

  g_mutex_lock (&c->lock);
  refresh (c);
  found = c->list != NULL && rules_list_contains (c->list, v);
  g_mutex_unlock (&c->lock);
  return found;
}
