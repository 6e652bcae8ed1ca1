/* SPDX-License-Identifier: MIT
 *
 * state-memory.c — the in-process state backend (the default): a hash table
 * of keys with expiry and least-recently-used eviction at [state] max_keys.
 *
 * Contract: every op answers synchronously in exec_try (well under a
 * microsecond), each op atomic under the lock of its key's shard.  Time is
 * the monotonic clock (tests may replace it), so a wall-clock step never
 * expires or revives anything.  Memory is bounded: at most max_keys entries,
 * at most limit+1 events per WINDOW key, at most VPS_STATE_MAX_MEMBERS per
 * member set.  An expired entry is dropped when it is looked up, when the
 * sweep cursor (walking the LRU list a few entries per operation) reaches
 * it, or when it is the least recently used one at max_keys.
 */
#include "vps/state-private.h"

#include <string.h>

typedef enum
{
  ENTRY_COUNTER,
  ENTRY_WINDOW,
  ENTRY_MEMBERS,
} EntryKind;

typedef struct
{
  gint64 expires; /* µs */
  char name[];
} Member;

typedef struct
{
  GList link; /* in Shard.lru, data = the entry */
  EntryKind kind;
  gint64 expires; /* µs, monotonic */
  union
  {
    gint64 value;
    struct
    {
      gint64 *ev; /* ring of event times, oldest at head */
      guint alloc, head, count;
    } w;
    struct
    {
      GHashTable *set; /* name → Member */
      gint64 next_expiry;
    } m;
  } u;
  char key[];
} Entry;

typedef struct
{
  GMutex lock;
  GHashTable *table; /* key → Entry (key owned by the entry) */
  GQueue lru;        /* head = most recently used */
  GList *cursor;     /* the sweep walks from the tail towards the head */
  guint64 max_keys;
  guint64 evictions;
} Shard;

typedef struct
{
  Shard *shards;
  guint n_shards;
  VpsStateClock clock;
  gpointer clock_data;
} Memory;

static gint64
monotonic (gpointer unused)
{
  return g_get_monotonic_time ();
}

/* ---- entries --------------------------------------------------------------- */

static void
entry_free (Entry *e)
{
  if (e->kind == ENTRY_WINDOW)
    g_free (e->u.w.ev);
  else if (e->kind == ENTRY_MEMBERS)
    g_hash_table_unref (e->u.m.set);
  g_free (e);
}

/* Keep the sweep cursor off an entry that leaves its place in the list. */
static void
cursor_skip (Shard *s, Entry *e)
{
  if (s->cursor == &e->link)
    s->cursor = e->link.prev;
}

static void
entry_remove (Shard *s, Entry *e)
{
  cursor_skip (s, e);
  g_queue_unlink (&s->lru, &e->link);
  g_hash_table_remove (s->table, e->key);
  entry_free (e);
}

static void
entry_touch (Shard *s, Entry *e)
{
  if (s->lru.head == &e->link)
    return;
  cursor_skip (s, e);
  g_queue_unlink (&s->lru, &e->link);
  g_queue_push_head_link (&s->lru, &e->link);
}

/* The amortised sweep: a few entries per operation, so a full pass over a
 * shard of n keys takes n / VPS_STATE_MEMORY_SWEEP operations and no
 * operation ever walks the whole table. */
static void
sweep (Shard *s, gint64 now)
{
  for (guint i = 0; i < VPS_STATE_MEMORY_SWEEP; i++)
    {
      Entry *e;

      if (s->cursor == NULL)
        s->cursor = s->lru.tail;
      if (s->cursor == NULL)
        return;
      e = s->cursor->data;
      s->cursor = s->cursor->prev;
      if (e->expires <= now)
        entry_remove (s, e);
    }
}

/* The live entry of key, or NULL (an expired one is dropped on the way). */
static Entry *
lookup (Shard *s, const char *key, gint64 now)
{
  Entry *e = g_hash_table_lookup (s->table, key);

  if (e != NULL && e->expires <= now)
    {
      entry_remove (s, e);
      return NULL;
    }
  if (e != NULL)
    entry_touch (s, e);
  return e;
}

static Entry *
entry_add (Shard *s, const char *key, EntryKind kind, gint64 expires)
{
  gsize len = strlen (key);
  Entry *e;

  while (g_hash_table_size (s->table) >= s->max_keys && s->lru.tail != NULL)
    {
      entry_remove (s, s->lru.tail->data);
      s->evictions++;
    }
  e = g_malloc0 (sizeof (Entry) + len + 1);
  memcpy (e->key, key, len + 1);
  e->kind = kind;
  e->expires = expires;
  e->link.data = e;
  if (kind == ENTRY_MEMBERS)
    {
      e->u.m.set = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
      e->u.m.next_expiry = G_MAXINT64;
    }
  g_hash_table_insert (s->table, e->key, e);
  g_queue_push_head_link (&s->lru, &e->link);
  return e;
}

static gboolean
check_kind (const Entry *e, EntryKind kind, const char *key, GError **error)
{
  if (e == NULL || e->kind == kind)
    return TRUE;
  g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
               "key \"%s\" holds another kind of value", key);
  return FALSE;
}

/* ---- WINDOW ---------------------------------------------------------------- */

static gint64
ring_oldest (const Entry *e)
{
  return e->u.w.ev[e->u.w.head];
}

static void
ring_pop (Entry *e)
{
  e->u.w.head = (e->u.w.head + 1) % e->u.w.alloc;
  e->u.w.count--;
}

static void
ring_push (Entry *e, gint64 t, guint keep)
{
  if (e->u.w.count == e->u.w.alloc)
    {
      guint alloc = MIN (keep, MAX (4, e->u.w.alloc * 2));
      gint64 *ev = g_new (gint64, alloc);

      for (guint i = 0; i < e->u.w.count; i++)
        ev[i] = e->u.w.ev[(e->u.w.head + i) % e->u.w.alloc];
      g_free (e->u.w.ev);
      e->u.w.ev = ev;
      e->u.w.alloc = alloc;
      e->u.w.head = 0;
    }
  e->u.w.ev[(e->u.w.head + e->u.w.count) % e->u.w.alloc] = t;
  e->u.w.count++;
}

/* An event exactly ttl old has left the window (the Redis script drops
 * scores <= now - ttl too). */
static void
op_window (Shard *s, Entry *e, const VpsStateOp *op, gint64 now, VpsStateResult *r)
{
  gint64 ttl = op->ttl_ms * 1000;
  guint keep = (guint)op->value + 1;

  if (e == NULL)
    e = entry_add (s, op->key, ENTRY_WINDOW, now + ttl);
  while (e->u.w.count > 0 && now - ring_oldest (e) >= ttl)
    ring_pop (e);
  /* Make room: beyond limit+1 events the answer "above the limit" cannot
   * change, so the oldest go. */
  while (e->u.w.count >= keep)
    ring_pop (e);
  ring_push (e, now, keep);
  e->expires = now + ttl;
  r->value = e->u.w.count;
}

/* ---- MEMBER_* -------------------------------------------------------------- */

static void
members_sweep (Entry *e, gint64 now)
{
  GHashTableIter it;
  gpointer v;
  gint64 next = G_MAXINT64;

  if (now < e->u.m.next_expiry)
    return;
  g_hash_table_iter_init (&it, e->u.m.set);
  while (g_hash_table_iter_next (&it, NULL, &v))
    {
      Member *m = v;

      if (m->expires <= now)
        g_hash_table_iter_remove (&it);
      else
        next = MIN (next, m->expires);
    }
  e->u.m.next_expiry = next;
}

/* Past VPS_STATE_MAX_MEMBERS the member expiring first goes (the Redis
 * script keeps the highest scores likewise). */
static void
members_cap (Entry *e)
{
  GHashTableIter it;
  gpointer v;
  Member *first = NULL;

  if (g_hash_table_size (e->u.m.set) <= VPS_STATE_MAX_MEMBERS)
    return;
  g_hash_table_iter_init (&it, e->u.m.set);
  while (g_hash_table_iter_next (&it, NULL, &v))
    if (first == NULL || ((Member *)v)->expires < first->expires)
      first = v;
  g_hash_table_remove (e->u.m.set, first->name);
}

static void
op_members (Shard *s, Entry *e, const VpsStateOp *op, gint64 now, VpsStateResult *r)
{
  if (e != NULL)
    members_sweep (e, now);
  if (op->kind == VPS_STATE_MEMBER_ADD)
    {
      gint64 expires = now + op->ttl_ms * 1000;
      gsize len = strlen (op->member);
      Member *m;

      if (e == NULL)
        e = entry_add (s, op->key, ENTRY_MEMBERS, expires);
      r->found = g_hash_table_contains (e->u.m.set, op->member);
      m = g_malloc (sizeof (Member) + len + 1);
      m->expires = expires;
      memcpy (m->name, op->member, len + 1);
      g_hash_table_replace (e->u.m.set, m->name, m);
      members_cap (e);
      e->u.m.next_expiry = MIN (e->u.m.next_expiry, expires);
      /* The key lives as long as its last member. */
      e->expires = MAX (e->expires, expires);
    }
  else if (op->kind == VPS_STATE_MEMBER_DEL && e != NULL)
    r->found = g_hash_table_remove (e->u.m.set, op->member);
  r->value = e != NULL ? g_hash_table_size (e->u.m.set) : 0;
  /* An empty set is no key (as in Redis). */
  if (e != NULL && r->value == 0)
    entry_remove (s, e);
}

/* ---- one operation ----------------------------------------------------------- */

static gboolean
op_run (Memory *mem, const VpsStateOp *op, VpsStateResult *r, GError **error)
{
  Shard *s = &mem->shards[mem->n_shards == 1 ? 0 : g_str_hash (op->key) % mem->n_shards];
  gint64 now = mem->clock (mem->clock_data);
  gint64 ttl = op->ttl_ms * 1000;
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&s->lock);
  Entry *e;

  memset (r, 0, sizeof *r);
  sweep (s, now);
  e = lookup (s, op->key, now);
  switch (op->kind)
    {
      case VPS_STATE_GET:
        if (!check_kind (e, ENTRY_COUNTER, op->key, error))
          return FALSE;
        r->found = e != NULL;
        r->value = e != NULL ? e->u.value : 0;
        return TRUE;
      case VPS_STATE_INCR:
        if (!check_kind (e, ENTRY_COUNTER, op->key, error))
          return FALSE;
        if (e == NULL)
          {
            e = entry_add (s, op->key, ENTRY_COUNTER, now + ttl);
            e->u.value = 0;
          }
        else if ((op->value > 0 && e->u.value > G_MAXINT64 - op->value)
                 || (op->value < 0 && e->u.value < G_MININT64 - op->value))
          {
            g_set_error (error, VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
                         "key \"%s\": increment would overflow", op->key);
            return FALSE;
          }
        else
          r->found = TRUE;
        e->u.value += op->value;
        r->value = e->u.value;
        return TRUE;
      case VPS_STATE_SET_NX:
      case VPS_STATE_SET:
        if (!check_kind (e, ENTRY_COUNTER, op->key, error))
          return FALSE;
        r->found = e != NULL;
        if (e != NULL && op->kind == VPS_STATE_SET_NX)
          {
            r->value = e->u.value;
            return TRUE;
          }
        if (e == NULL)
          e = entry_add (s, op->key, ENTRY_COUNTER, now + ttl);
        e->u.value = op->value;
        e->expires = now + ttl;
        r->value = op->value;
        return TRUE;
      case VPS_STATE_WINDOW:
        if (!check_kind (e, ENTRY_WINDOW, op->key, error))
          return FALSE;
        op_window (s, e, op, now, r);
        return TRUE;
      case VPS_STATE_MEMBER_ADD:
      case VPS_STATE_MEMBER_DEL:
      case VPS_STATE_MEMBER_COUNT:
        if (!check_kind (e, ENTRY_MEMBERS, op->key, error))
          return FALSE;
        op_members (s, e, op, now, r);
        return TRUE;
      default:
        g_return_val_if_reached (FALSE);
    }
}

/* ---- backend ----------------------------------------------------------------- */

gpointer
vps_state_memory_new (guint64 max_keys)
{
  Memory *mem = g_new0 (Memory, 1);

  max_keys = MAX (max_keys, 1);
  mem->n_shards = max_keys >= VPS_STATE_MEMORY_SHARD_MIN_KEYS ? VPS_STATE_MEMORY_SHARDS : 1;
  mem->shards = g_new0 (Shard, mem->n_shards);
  mem->clock = monotonic;
  for (guint i = 0; i < mem->n_shards; i++)
    {
      Shard *s = &mem->shards[i];

      g_mutex_init (&s->lock);
      s->table = g_hash_table_new (g_str_hash, g_str_equal);
      g_queue_init (&s->lru);
      /* Shards split max_keys; rounding up keeps the total at least max_keys. */
      s->max_keys = (max_keys + mem->n_shards - 1) / mem->n_shards;
    }
  return mem;
}

static void
memory_free (gpointer p)
{
  Memory *mem = p;

  for (guint i = 0; i < mem->n_shards; i++)
    {
      Shard *s = &mem->shards[i];

      while (s->lru.head != NULL)
        entry_remove (s, s->lru.head->data);
      g_hash_table_unref (s->table);
      g_mutex_clear (&s->lock);
    }
  g_free (mem->shards);
  g_free (mem);
}

static gboolean
memory_exec_try (gpointer backend, const VpsStateOp *ops, guint n, VpsStateResult *results,
                 GError **error)
{
  for (guint i = 0; i < n; i++)
    if (!op_run (backend, &ops[i], &results[i], error))
      return FALSE;
  return TRUE;
}

static void
memory_submit (gpointer backend, VpsStateBatch *batch, const VpsStateOp *ops)
{
  GError *error = NULL;

  if (!memory_exec_try (backend, ops, batch->n, batch->results, &error))
    vps_state_batch_complete (batch, error);
  else
    vps_state_batch_complete (batch, NULL);
}

static void
memory_stats (gpointer backend, VpsStateStats *out)
{
  Memory *mem = backend;

  for (guint i = 0; i < mem->n_shards; i++)
    {
      Shard *s = &mem->shards[i];
      g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&s->lock);

      out->keys += g_hash_table_size (s->table);
      out->evictions += s->evictions;
    }
}

void
vps_state_memory_set_clock (VpsState *state, VpsStateClock clock, gpointer user_data)
{
  Memory *mem;

  g_return_if_fail (state != NULL && state->klass == &vps_state_memory_class);
  mem = state->backend;
  mem->clock = clock != NULL ? clock : monotonic;
  mem->clock_data = clock != NULL ? user_data : NULL;
}

const VpsStateBackendClass vps_state_memory_class = {
  .name = "memory",
  .exec_try = memory_exec_try,
  .prepare = NULL,
  .submit = memory_submit,
  .stats = memory_stats,
  .free = memory_free,
};
