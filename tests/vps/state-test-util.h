/* SPDX-License-Identifier: MIT
 *
 * state-test-util.h — helpers shared by tests/vps/test-state-*.c: the
 * table of operation sequences both backends must answer alike, and a
 * synchronous wrapper around vps_state_exec_async() that also checks the
 * callback comes exactly once and never inside the call.
 */
#pragma once

#include <string.h>

#include "vps/state-private.h"

/* One step of a sequence: wait `advance_ms`, run the op, expect value/found
 * (or, when err >= 0, that VPS_STATE_ERROR code). */
typedef struct
{
  gint64 advance_ms;
  VpsStateOpKind kind;
  const char *key;
  const char *member;
  gint64 value, ttl_ms;
  gint64 want_value;
  gboolean want_found;
  gint err; /* -1: success expected */
} StateStep;

typedef struct
{
  const char *name;
  const StateStep *steps;
  gsize n_steps;
  gboolean timing; /* edges at the millisecond: memory's fake clock only */
} StateCase;

#define OK -1
#define STEPS(...)                                                                                 \
  (const StateStep[]){ __VA_ARGS__ },                                                              \
      sizeof ((const StateStep[]){ __VA_ARGS__ }) / sizeof (StateStep)

/* clang-format off */
static const StateCase state_cases[] G_GNUC_UNUSED = {
  { "get-absent", STEPS ({ 0, VPS_STATE_GET, "k", NULL, 0, 0, 0, FALSE, OK }), FALSE },
  { "incr", STEPS (
      { 0, VPS_STATE_INCR, "k", NULL, 1, 10000, 1, FALSE, OK },
      { 0, VPS_STATE_INCR, "k", NULL, 2, 10000, 3, TRUE, OK },
      { 0, VPS_STATE_INCR, "k", NULL, -5, 10000, -2, TRUE, OK },
      { 0, VPS_STATE_GET, "k", NULL, 0, 0, -2, TRUE, OK }), FALSE },
  { "incr-fixed-window", STEPS (
      { 0, VPS_STATE_INCR, "k", NULL, 1, 1000, 1, FALSE, OK },
      { 600, VPS_STATE_INCR, "k", NULL, 1, 1000, 2, TRUE, OK },
      /* the second INCR did not extend it: gone at 1000 ms */
      { 400, VPS_STATE_GET, "k", NULL, 0, 0, 0, FALSE, OK },
      { 0, VPS_STATE_INCR, "k", NULL, 1, 1000, 1, FALSE, OK }), TRUE },
  { "set-nx", STEPS (
      { 0, VPS_STATE_SET_NX, "k", NULL, 5, 10000, 5, FALSE, OK },
      { 0, VPS_STATE_SET_NX, "k", NULL, 7, 10000, 5, TRUE, OK },
      { 0, VPS_STATE_GET, "k", NULL, 0, 0, 5, TRUE, OK }), FALSE },
  { "set-nx-after-expiry", STEPS (
      { 0, VPS_STATE_SET_NX, "k", NULL, 5, 100, 5, FALSE, OK },
      { 100, VPS_STATE_SET_NX, "k", NULL, 7, 100, 7, FALSE, OK }), TRUE },
  { "set", STEPS (
      { 0, VPS_STATE_SET, "k", NULL, 5, 10000, 5, FALSE, OK },
      { 0, VPS_STATE_SET, "k", NULL, 6, 10000, 6, TRUE, OK },
      { 0, VPS_STATE_GET, "k", NULL, 0, 0, 6, TRUE, OK },
      { 0, VPS_STATE_INCR, "k", NULL, 1, 10000, 7, TRUE, OK }), FALSE },
  { "set-renews-expiry", STEPS (
      { 0, VPS_STATE_SET, "k", NULL, 5, 100, 5, FALSE, OK },
      { 60, VPS_STATE_SET, "k", NULL, 7, 100, 7, TRUE, OK },
      { 60, VPS_STATE_GET, "k", NULL, 0, 0, 7, TRUE, OK },
      { 40, VPS_STATE_GET, "k", NULL, 0, 0, 0, FALSE, OK }), TRUE },
  { "window-limit-0", STEPS (
      { 0, VPS_STATE_WINDOW, "w", NULL, 0, 10000, 1, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "w", NULL, 0, 10000, 1, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "w", NULL, 0, 10000, 1, FALSE, OK }), FALSE },
  { "window-limit-1", STEPS (
      { 0, VPS_STATE_WINDOW, "w", NULL, 1, 10000, 1, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "w", NULL, 1, 10000, 2, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "w", NULL, 1, 10000, 2, FALSE, OK }), FALSE },
  { "window-limit-3", STEPS (
      { 0, VPS_STATE_WINDOW, "w", NULL, 3, 10000, 1, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "w", NULL, 3, 10000, 2, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "w", NULL, 3, 10000, 3, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "w", NULL, 3, 10000, 4, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "w", NULL, 3, 10000, 4, FALSE, OK }), FALSE },
  { "window-slides", STEPS (
      { 0, VPS_STATE_WINDOW, "w", NULL, 10, 1000, 1, FALSE, OK },
      { 600, VPS_STATE_WINDOW, "w", NULL, 10, 1000, 2, FALSE, OK },
      { 600, VPS_STATE_WINDOW, "w", NULL, 10, 1000, 2, FALSE, OK },
      { 1000, VPS_STATE_WINDOW, "w", NULL, 10, 1000, 1, FALSE, OK }), TRUE },
  /* An event exactly ttl old has left the window. */
  { "window-edge", STEPS (
      { 0, VPS_STATE_WINDOW, "w", NULL, 5, 1000, 1, FALSE, OK },
      { 999, VPS_STATE_WINDOW, "w", NULL, 5, 1000, 2, FALSE, OK },
      { 1, VPS_STATE_WINDOW, "w", NULL, 5, 1000, 2, FALSE, OK },
      { 999, VPS_STATE_WINDOW, "w", NULL, 5, 1000, 2, FALSE, OK }), TRUE },
  /* limit+1 kept: after the cap the oldest kept event decides the slide */
  { "window-cap-slides", STEPS (
      { 0, VPS_STATE_WINDOW, "w", NULL, 1, 1000, 1, FALSE, OK },
      { 100, VPS_STATE_WINDOW, "w", NULL, 1, 1000, 2, FALSE, OK },
      { 100, VPS_STATE_WINDOW, "w", NULL, 1, 1000, 2, FALSE, OK },
      { 1050, VPS_STATE_WINDOW, "w", NULL, 1, 1000, 1, FALSE, OK }), TRUE },
  { "members", STEPS (
      { 0, VPS_STATE_MEMBER_ADD, "m", "a", 0, 10000, 1, FALSE, OK },
      { 0, VPS_STATE_MEMBER_ADD, "m", "b", 0, 10000, 2, FALSE, OK },
      { 0, VPS_STATE_MEMBER_ADD, "m", "a", 0, 10000, 2, TRUE, OK },
      { 0, VPS_STATE_MEMBER_COUNT, "m", NULL, 0, 0, 2, FALSE, OK },
      { 0, VPS_STATE_MEMBER_DEL, "m", "a", 0, 0, 1, TRUE, OK },
      { 0, VPS_STATE_MEMBER_DEL, "m", "a", 0, 0, 1, FALSE, OK },
      { 0, VPS_STATE_MEMBER_DEL, "m", "b", 0, 0, 0, TRUE, OK },
      { 0, VPS_STATE_MEMBER_COUNT, "m", NULL, 0, 0, 0, FALSE, OK },
      { 0, VPS_STATE_MEMBER_COUNT, "absent", NULL, 0, 0, 0, FALSE, OK }), FALSE },
  { "member-expiry", STEPS (
      { 0, VPS_STATE_MEMBER_ADD, "m", "a", 0, 1000, 1, FALSE, OK },
      { 0, VPS_STATE_MEMBER_ADD, "m", "b", 0, 500, 2, FALSE, OK },
      { 500, VPS_STATE_MEMBER_COUNT, "m", NULL, 0, 0, 1, FALSE, OK },
      { 0, VPS_STATE_MEMBER_ADD, "m", "b", 0, 800, 2, FALSE, OK },
      { 500, VPS_STATE_MEMBER_COUNT, "m", NULL, 0, 0, 1, FALSE, OK },
      { 300, VPS_STATE_MEMBER_COUNT, "m", NULL, 0, 0, 0, FALSE, OK }), TRUE },
  { "member-refresh", STEPS (
      { 0, VPS_STATE_MEMBER_ADD, "m", "a", 0, 100, 1, FALSE, OK },
      { 80, VPS_STATE_MEMBER_ADD, "m", "a", 0, 100, 1, TRUE, OK },
      { 80, VPS_STATE_MEMBER_COUNT, "m", NULL, 0, 0, 1, FALSE, OK },
      { 20, VPS_STATE_MEMBER_COUNT, "m", NULL, 0, 0, 0, FALSE, OK }), TRUE },
  { "wrong-kind", STEPS (
      { 0, VPS_STATE_INCR, "k", NULL, 1, 10000, 1, FALSE, OK },
      { 0, VPS_STATE_WINDOW, "k", NULL, 5, 10000, 0, FALSE, VPS_STATE_ERROR_INVALID },
      { 0, VPS_STATE_MEMBER_ADD, "k", "a", 0, 10000, 0, FALSE, VPS_STATE_ERROR_INVALID },
      { 0, VPS_STATE_WINDOW, "w", NULL, 5, 10000, 1, FALSE, OK },
      { 0, VPS_STATE_GET, "w", NULL, 0, 0, 0, FALSE, VPS_STATE_ERROR_INVALID },
      { 0, VPS_STATE_INCR, "w", NULL, 1, 10000, 0, FALSE, VPS_STATE_ERROR_INVALID },
      { 0, VPS_STATE_SET, "w", NULL, 1, 10000, 0, FALSE, VPS_STATE_ERROR_INVALID }), FALSE },
  { "incr-overflow", STEPS (
      { 0, VPS_STATE_SET, "k", NULL, G_MAXINT64 - 1, 10000, G_MAXINT64 - 1, FALSE, OK },
      { 0, VPS_STATE_INCR, "k", NULL, 2, 10000, 0, FALSE, VPS_STATE_ERROR_INVALID }), FALSE },
};
/* clang-format on */

/* Batches with a malformed shape, refused before any backend sees them. */
typedef struct
{
  const char *name;
  VpsStateOp op;
  guint n; /* ops in the batch (copies of op) */
} StateInvalidCase;

static char state_long_key[VPS_STATE_MAX_KEY + 2] G_GNUC_UNUSED;
static char state_long_member[VPS_STATE_MAX_MEMBER + 2] G_GNUC_UNUSED;

static inline void
state_invalid_init (void)
{
  memset (state_long_key, 'k', VPS_STATE_MAX_KEY + 1);
  memset (state_long_member, 'm', VPS_STATE_MAX_MEMBER + 1);
}

/* clang-format off */
static const StateInvalidCase state_invalid_cases[] G_GNUC_UNUSED = {
  { "empty-batch", { VPS_STATE_GET, "k", NULL, 0, 0 }, 0 },
  { "too-many-ops", { VPS_STATE_GET, "k", NULL, 0, 0 }, VPS_STATE_MAX_OPS + 1 },
  { "key-null", { VPS_STATE_GET, NULL, NULL, 0, 0 }, 1 },
  { "key-empty", { VPS_STATE_GET, "", NULL, 0, 0 }, 1 },
  { "key-too-long", { VPS_STATE_GET, state_long_key, NULL, 0, 0 }, 1 },
  { "member-null", { VPS_STATE_MEMBER_ADD, "m", NULL, 0, 1000 }, 1 },
  { "member-too-long", { VPS_STATE_MEMBER_DEL, "m", state_long_member, 0, 0 }, 1 },
  { "ttl-zero", { VPS_STATE_INCR, "k", NULL, 1, 0 }, 1 },
  { "ttl-negative", { VPS_STATE_SET, "k", NULL, 1, -5 }, 1 },
  { "ttl-too-long", { VPS_STATE_SET_NX, "k", NULL, 1, VPS_STATE_MAX_TTL_MS + 1 }, 1 },
  { "window-limit-negative", { VPS_STATE_WINDOW, "w", NULL, -1, 1000 }, 1 },
  { "window-limit-too-big", { VPS_STATE_WINDOW, "w", NULL, VPS_STATE_MAX_WINDOW + 1, 1000 }, 1 },
  { "member-add-no-ttl", { VPS_STATE_MEMBER_ADD, "m", "a", 0, 0 }, 1 },
  { "unknown-kind", { (VpsStateOpKind)99, "k", NULL, 0, 1000 }, 1 },
};
/* clang-format on */

/* ---- a synchronous wrapper of exec_async --------------------------------- */

typedef struct
{
  guint calls;
  VpsStateResult results[VPS_STATE_MAX_OPS];
  guint n;
  GError *error;
  GThread *thread;
} StateWait;

static inline void
state_wait_cb (VpsState *state, const VpsStateResult *results, guint n, const GError *error,
               gpointer p)
{
  StateWait *w = p;

  w->calls++;
  w->thread = g_thread_self ();
  w->n = n;
  if (error != NULL)
    w->error = g_error_copy (error);
  else
    memcpy (w->results, results, n * sizeof *results);
}

/* Run one batch to its callback on the thread-default context; fails the
 * test if it takes longer than limit_ms.  Returns the elapsed ms. */
static inline gint64
state_run_async (VpsState *state, const VpsStateOp *ops, guint n, GCancellable *cancellable,
                 StateWait *w, gint64 limit_ms)
{
  GMainContext *ctx = g_main_context_get_thread_default ();
  gint64 start = g_get_monotonic_time ();

  memset (w, 0, sizeof *w);
  vps_state_exec_async (state, ops, n, cancellable, state_wait_cb, w);
  /* Never inside the call. */
  g_assert_cmpuint (w->calls, ==, 0);
  while (w->calls == 0)
    {
      g_main_context_iteration (ctx, FALSE);
      if (w->calls == 0)
        g_usleep (200);
      if (g_get_monotonic_time () - start > limit_ms * 1000)
        g_error ("no callback within %" G_GINT64_FORMAT " ms", limit_ms);
    }
  /* And only once: give a second callback a chance to show up. */
  for (int i = 0; i < 5; i++)
    g_main_context_iteration (ctx, FALSE);
  g_assert_cmpuint (w->calls, ==, 1);
  g_assert_true (w->thread == g_thread_self ());
  return (g_get_monotonic_time () - start) / 1000;
}

static inline VpsStateOp
state_op_of (const StateStep *s, const char *prefix, GString *key)
{
  VpsStateOp op = { s->kind, NULL, s->member, s->value, s->ttl_ms };

  g_string_printf (key, "%s%s", prefix, s->key);
  op.key = key->str;
  return op;
}
