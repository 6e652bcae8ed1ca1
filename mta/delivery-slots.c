/* SPDX-License-Identifier: MIT
 *
 * delivery-slots.c — connection slots of remote delivery (contract:
 * delivery-slots.h).  A destination is kept while it has sessions in
 * progress or waiting work, so the table holds the destinations in use,
 * not every one ever seen.
 */
#include "mta/delivery-slots.h"

struct _VpsSlotsDest
{
  char *key;
  guint busy;
  GQueue waiting;   /* items, oldest first */
  gboolean blocked; /* in slots->blocked */
};
typedef struct _VpsSlotsDest Dest;

struct _VpsSlots
{
  VpsSlotsRunFunc run;
  gpointer user_data;
  guint max_total, max_per;
  GHashTable *dests; /* key -> Dest* */
  guint n_busy;
  guint n_waiting;
  GQueue blocked; /* Dest* with waiting work, in the order they began to wait */
  gboolean admitting;
};

static void
dest_free (gpointer data)
{
  Dest *d = data;

  g_free (d->key);
  g_free (d);
}

/* Forget a destination with nothing in progress and nobody waiting. */
static void
dest_maybe_forget (VpsSlots *slots, Dest *d)
{
  if (d->busy == 0 && d->waiting.length == 0 && !d->blocked)
    g_hash_table_remove (slots->dests, d->key);
}

VpsSlots *
vps_slots_new (VpsSlotsRunFunc run, gpointer user_data)
{
  VpsSlots *slots = g_new0 (VpsSlots, 1);

  slots->run = run;
  slots->user_data = user_data;
  slots->max_total = slots->max_per = 1;
  slots->dests = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, dest_free);
  g_queue_init (&slots->blocked);
  return slots;
}

void
vps_slots_free (VpsSlots *slots)
{
  if (slots == NULL)
    return;
  g_warn_if_fail (slots->n_busy == 0 && slots->n_waiting == 0);
  g_hash_table_unref (slots->dests);
  g_queue_clear (&slots->blocked);
  g_free (slots);
}

void
vps_slots_set_limits (VpsSlots *slots, guint max_total, guint max_per)
{
  slots->max_total = MAX (max_total, 1);
  slots->max_per = MAX (max_per, 1);
}

static gboolean
take (VpsSlots *slots, Dest *d)
{
  if (slots->n_busy >= slots->max_total || d->busy >= slots->max_per)
    return FALSE;
  d->busy++;
  slots->n_busy++;
  return TRUE;
}

/* Start the waiting work that fits now (all of it when flushing).  Work
 * that starts may end at once and release its slot, which re-enters here:
 * `admitting` keeps that to one pass at a time (the pass sees the freed
 * slot anyway). */
static void
admit (VpsSlots *slots, gboolean flush)
{
  GList *l;

  if (slots->admitting)
    return;
  slots->admitting = TRUE;
  l = slots->blocked.head;
  while (l != NULL)
    {
      Dest *d = l->data;
      GList *next;

      while (d->waiting.length > 0 && (flush || take (slots, d)))
        {
          slots->n_waiting--;
          slots->run (flush ? NULL : d, g_queue_pop_head (&d->waiting), slots->user_data);
        }
      /* run() may have submitted work: read the list after it */
      next = l->next;
      if (d->waiting.length == 0)
        {
          g_queue_delete_link (&slots->blocked, l);
          d->blocked = FALSE;
          dest_maybe_forget (slots, d);
        }
      l = next;
    }
  slots->admitting = FALSE;
}

void
vps_slots_submit (VpsSlots *slots, const char *key, gpointer item)
{
  Dest *d = g_hash_table_lookup (slots->dests, key);

  if (d == NULL)
    {
      d = g_new0 (Dest, 1);
      d->key = g_strdup (key);
      g_queue_init (&d->waiting);
      g_hash_table_insert (slots->dests, d->key, d);
    }
  if (d->waiting.length == 0 && take (slots, d))
    {
      slots->run (d, item, slots->user_data);
      return;
    }
  g_queue_push_tail (&d->waiting, item);
  slots->n_waiting++;
  if (!d->blocked)
    {
      d->blocked = TRUE;
      g_queue_push_tail (&slots->blocked, d);
    }
}

void
vps_slots_release (VpsSlots *slots, VpsSlot *slot)
{
  if (slot == NULL)
    return;
  slot->busy--;
  slots->n_busy--;
  dest_maybe_forget (slots, slot);
  admit (slots, FALSE);
}

void
vps_slots_flush (VpsSlots *slots)
{
  admit (slots, TRUE);
}

guint
vps_slots_get_busy (VpsSlots *slots, const char *key)
{
  Dest *d;

  if (key == NULL)
    return slots->n_busy;
  d = g_hash_table_lookup (slots->dests, key);
  return d != NULL ? d->busy : 0;
}

guint
vps_slots_get_waiting (VpsSlots *slots)
{
  return slots->n_waiting;
}
