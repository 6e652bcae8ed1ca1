/* SPDX-License-Identifier: MIT
 *
 * delivery-slots.h — connection slots of remote delivery: at most
 * max_total sessions in progress in all and max_per to one destination (a
 * recipient domain or a relay target, named by a key).  Work that finds no
 * slot waits in its destination's queue, oldest first; a released slot
 * goes to the oldest waiting item of the first blocked destination (in
 * the order destinations began to wait) that may take it.  Admission
 * looks at destinations, not at every waiting item, so thousands of
 * messages waiting for one slow destination cost nothing when a slot
 * frees elsewhere.
 *
 * Bookkeeping only: no I/O, no clock, no locking — one thread (the
 * remote delivery thread) owns a VpsSlots.  run() may release the slot it
 * was given (work that ends at once) or submit more work: both re-enter
 * safely.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _VpsSlots VpsSlots;
typedef struct _VpsSlotsDest VpsSlot; /* a slot held: its destination */

/* Start item: it holds slot until vps_slots_release (slot is NULL for
 * work run by vps_slots_flush: it holds none). */
typedef void (*VpsSlotsRunFunc) (VpsSlot *slot, gpointer item, gpointer user_data);

VpsSlots *vps_slots_new (VpsSlotsRunFunc run, gpointer user_data);
/* Nothing may be waiting or in progress any more. */
void vps_slots_free (VpsSlots *slots);

/* The limits for the admissions from now on (a reload may change them). */
void vps_slots_set_limits (VpsSlots *slots, guint max_total, guint max_per);
/* Run item now with a slot of key, or queue it behind key's waiting work
 * (never ahead of it). */
void vps_slots_submit (VpsSlots *slots, const char *key, gpointer item);
/* A slot ends (NULL: none was held); waiting work that fits now runs. */
void vps_slots_release (VpsSlots *slots, VpsSlot *slot);
/* Run every waiting item now without a slot (shutdown: they end at once). */
void vps_slots_flush (VpsSlots *slots);

/* Sessions in progress: in all, and to key (tests, logs). */
guint vps_slots_get_busy (VpsSlots *slots, const char *key);
/* Items waiting in all. */
guint vps_slots_get_waiting (VpsSlots *slots);

G_END_DECLS
