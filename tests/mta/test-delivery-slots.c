/* SPDX-License-Identifier: MIT
 *
 * test-delivery-slots.c — the connection slots of remote delivery
 * (mta/delivery-slots.h): the total and per-destination limits, FIFO
 * within a destination, destinations served in the order they began to
 * wait, work never overtaking a destination's waiting work, run() that
 * releases at once (re-entry), flush at shutdown, limits changed between
 * submissions, and destinations forgotten once idle.
 */
#include "mta/delivery-slots.h"

typedef struct
{
  VpsSlots *slots;
  GPtrArray *started; /* item names, in the order run() saw them */
  GHashTable *held;   /* item name -> VpsSlot* (NULL when flushed) */
  gboolean release_at_once;
} Fixture;

static void
run (VpsSlot *slot, gpointer item, gpointer data)
{
  Fixture *f = data;

  g_ptr_array_add (f->started, item);
  if (f->release_at_once)
    vps_slots_release (f->slots, slot);
  else
    g_hash_table_insert (f->held, item, slot);
}

static void
setup (Fixture *f, gconstpointer data)
{
  f->slots = vps_slots_new (run, f);
  f->started = g_ptr_array_new ();
  f->held = g_hash_table_new (g_str_hash, g_str_equal);
}

static void
teardown (Fixture *f, gconstpointer data)
{
  vps_slots_free (f->slots);
  g_ptr_array_unref (f->started);
  g_hash_table_unref (f->held);
}

/* The items started so far, joined: "a1 a2 b1". */
static char *
started (Fixture *f)
{
  char *s;

  g_ptr_array_add (f->started, NULL);
  s = g_strjoinv (" ", (char **)f->started->pdata);

  g_ptr_array_remove_index (f->started, f->started->len - 1);
  return s;
}

static void
submit (Fixture *f, const char *key, const char *item)
{
  vps_slots_submit (f->slots, key, (gpointer)item);
}

static void
done (Fixture *f, const char *item)
{
  gpointer slot;

  g_assert_true (g_hash_table_lookup_extended (f->held, item, NULL, &slot));
  g_hash_table_remove (f->held, item);
  vps_slots_release (f->slots, slot);
}

static void
check_started (Fixture *f, const char *want)
{
  g_autofree char *got = started (f);

  g_assert_cmpstr (got, ==, want);
}

static void
test_limits (Fixture *f, gconstpointer data)
{
  vps_slots_set_limits (f->slots, 3, 2);
  submit (f, "A", "a1");
  submit (f, "A", "a2");
  submit (f, "A", "a3"); /* A is full */
  submit (f, "B", "b1");
  submit (f, "B", "b2"); /* all are full */
  check_started (f, "a1 a2 b1");
  g_assert_cmpuint (vps_slots_get_busy (f->slots, NULL), ==, 3);
  g_assert_cmpuint (vps_slots_get_busy (f->slots, "A"), ==, 2);
  g_assert_cmpuint (vps_slots_get_waiting (f->slots), ==, 2);

  /* B's slot frees: A began to wait first, but A is at its own limit */
  done (f, "b1");
  check_started (f, "a1 a2 b1 b2");
  /* A's slot frees: its oldest waiter */
  done (f, "a1");
  check_started (f, "a1 a2 b1 b2 a3");
  g_assert_cmpuint (vps_slots_get_waiting (f->slots), ==, 0);
  done (f, "a2");
  done (f, "a3");
  done (f, "b2");
  g_assert_cmpuint (vps_slots_get_busy (f->slots, NULL), ==, 0);
  g_assert_cmpuint (vps_slots_get_busy (f->slots, "A"), ==, 0);
}

/* A freed slot of the total goes to the destination that began to wait
 * first, and a new submission never overtakes a destination's waiters. */
static void
test_order (Fixture *f, gconstpointer data)
{
  vps_slots_set_limits (f->slots, 1, 5);
  submit (f, "A", "a1");
  submit (f, "B", "b1");
  submit (f, "C", "c1");
  submit (f, "B", "b2");
  check_started (f, "a1");
  done (f, "a1");
  check_started (f, "a1 b1");
  /* room in all now, but B still has a waiter: b3 queues behind it */
  vps_slots_set_limits (f->slots, 2, 5);
  submit (f, "B", "b3");
  check_started (f, "a1 b1");
  done (f, "b1");
  /* B is served first (it blocked before C), oldest first, then C */
  check_started (f, "a1 b1 b2 b3");
  done (f, "b2");
  check_started (f, "a1 b1 b2 b3 c1");
  done (f, "b3");
  done (f, "c1");
  g_assert_cmpuint (vps_slots_get_waiting (f->slots), ==, 0);
}

/* Work that ends inside run() releases its slot there: the rest goes on
 * in one pass, in order, however long the queue. */
static void
test_release_at_once (Fixture *f, gconstpointer data)
{
  static char names[2000][8];

  vps_slots_set_limits (f->slots, 1, 1);
  submit (f, "A", "first");
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_snprintf (names[i], sizeof names[i], "w%u", i);
      submit (f, i % 2 ? "A" : "B", names[i]);
    }
  g_assert_cmpuint (f->started->len, ==, 1);
  f->release_at_once = TRUE;
  done (f, "first");
  g_assert_cmpuint (f->started->len, ==, G_N_ELEMENTS (names) + 1);
  g_assert_cmpuint (vps_slots_get_busy (f->slots, NULL), ==, 0);
  g_assert_cmpuint (vps_slots_get_waiting (f->slots), ==, 0);
  /* per destination, submission order */
  for (guint i = 1, last_a = 0, last_b = 0; i < f->started->len; i++)
    {
      guint n = (guint)g_ascii_strtoull ((char *)g_ptr_array_index (f->started, i) + 1, NULL, 10);
      guint *last = n % 2 ? &last_a : &last_b;

      g_assert_true (*last == 0 || n > *last);
      *last = n;
    }
}

static void
test_flush (Fixture *f, gconstpointer data)
{
  gpointer slot = GINT_TO_POINTER (1);

  vps_slots_set_limits (f->slots, 1, 1);
  submit (f, "A", "a1");
  submit (f, "A", "a2");
  submit (f, "B", "b1");
  vps_slots_flush (f->slots);
  check_started (f, "a1 a2 b1");
  /* flushed work holds no slot */
  g_assert_true (g_hash_table_lookup_extended (f->held, "a2", NULL, &slot));
  g_assert_null (slot);
  g_assert_cmpuint (vps_slots_get_busy (f->slots, NULL), ==, 1);
  done (f, "a2");
  done (f, "b1");
  done (f, "a1");
  g_assert_cmpuint (vps_slots_get_busy (f->slots, NULL), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/mta/slots/limits", Fixture, NULL, setup, test_limits, teardown);
  g_test_add ("/mta/slots/order", Fixture, NULL, setup, test_order, teardown);
  g_test_add ("/mta/slots/release-at-once", Fixture, NULL, setup, test_release_at_once, teardown);
  g_test_add ("/mta/slots/flush", Fixture, NULL, setup, test_flush, teardown);
  return g_test_run ();
}
