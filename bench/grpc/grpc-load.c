/* SPDX-License-Identifier: MIT
 *
 * grpc-load.c — a load generator for vps.v1.Policy/Check on one channel
 * (vps/grpc-core.h's client side, the one the grpc connector uses).
 *
 *   grpc-load HOST:PORT INFLIGHT SECONDS [RATE]
 *
 * INFLIGHT sessions, each with at most one call outstanding (vpsd refuses
 * a second concurrent call of one session): a session sends connect and
 * helo once, then mail, rcpt, rcpt over and over (a new transaction per
 * mail), so the session table stays small and every call runs the rules
 * of its stage.  RATE 0 (default): closed loop, INFLIGHT calls in flight
 * all the time.  RATE > 0: open loop, calls started at RATE per second (on
 * a 1 ms tick) on whichever session is free.
 *
 * Prints "key value" lines: calls, seconds, calls_per_s, p50_us, p99_us,
 * p999_us, errors (calls that failed, or answered a verdict other than
 * continue), late (open loop: calls that could not start on time for
 * want of a free session).  Exit 1 when there were errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/vps/v1/policy.pb-c.h"
#include "vps/grpc-core.h"

#define LOAD_MAX_INFLIGHT 4096
#define LOAD_MAX_SAMPLES (1 << 23)
#define LOAD_CALL_TIMEOUT_US (10 * G_USEC_PER_SEC)
#define LOAD_MAIL_CYCLE 3 /* mail, rcpt, rcpt */

typedef struct
{
  char id[32];
  guint step; /* 0 connect, 1 helo, then the mail cycle */
  gboolean busy;
  gint64 sent_at;
} Sess;

static VpsGrpcChannel *channel;
static Sess *sessions;
static guint n_sessions;
static gboolean stopping;
static guint outstanding;
static guint64 n_done, n_errors, n_late, n_started;
static double *samples;
static gsize n_samples;
static GMainLoop *loop;
static gboolean running; /* the measured run (not the warm-up) */
static double rate;      /* calls per second, 0 = closed loop */

static GBytes *
request_for (Sess *s)
{
  Vps__V1__CheckRequest req = VPS__V1__CHECK_REQUEST__INIT;
  Vps__V1__Client client = VPS__V1__CLIENT__INIT;
  Vps__V1__Address addr = VPS__V1__ADDRESS__INIT;
  guint cycle = s->step < 2 ? 0 : (s->step - 2) % LOAD_MAIL_CYCLE;
  gsize len;
  guint8 *buf;

  req.session_id = s->id;
  if (s->step == 0)
    {
      req.stage = VPS__V1__STAGE__STAGE_CONNECT;
      client.ip = (char *)"127.0.0.1";
      client.port = 40000;
      client.ptr = (char *)"localhost";
      req.client = &client;
    }
  else if (s->step == 1)
    {
      req.stage = VPS__V1__STAGE__STAGE_HELO;
      req.helo = (char *)"client.example.com";
    }
  else if (cycle == 0)
    {
      req.stage = VPS__V1__STAGE__STAGE_MAIL;
      addr.address = (char *)"bench@example.com";
      req.sender = &addr;
    }
  else
    {
      req.stage = VPS__V1__STAGE__STAGE_RCPT;
      addr.address = (char *)"sink@example.org";
      req.recipient = &addr;
    }
  len = vps__v1__check_request__get_packed_size (&req);
  buf = g_malloc (len);
  vps__v1__check_request__pack (&req, buf);
  return g_bytes_new_take (buf, len);
}

static void start_call (Sess *s);

static void
call_done (GObject *source, GAsyncResult *res, gpointer data)
{
  Sess *s = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) reply = vps_grpc_channel_call_finish (channel, res, &error);
  gint64 now = g_get_monotonic_time ();
  Vps__V1__CheckResponse *resp = NULL;

  s->busy = FALSE;
  outstanding--;
  if (reply != NULL)
    resp = vps__v1__check_response__unpack (NULL, g_bytes_get_size (reply),
                                            g_bytes_get_data (reply, NULL));
  if (resp == NULL || resp->result == NULL
      || resp->result->verdict != VPS__V1__VERDICT__VERDICT_CONTINUE)
    {
      if (n_errors++ < 5)
        fprintf (stderr, "grpc-load: %s\n", error ? error->message : "unexpected answer");
    }
  if (resp != NULL)
    vps__v1__check_response__free_unpacked (resp, NULL);
  n_done++;
  if (n_samples < LOAD_MAX_SAMPLES)
    samples[n_samples++] = (double)(now - s->sent_at);
  s->step++;
  if (stopping)
    {
      if (outstanding == 0)
        g_main_loop_quit (loop);
      return;
    }
  /* closed loop: the session goes on at once */
  if (running && rate <= 0)
    start_call (s);
}

static void
start_call (Sess *s)
{
  g_autoptr (GBytes) req = request_for (s);

  s->busy = TRUE;
  s->sent_at = g_get_monotonic_time ();
  outstanding++;
  n_started++;
  vps_grpc_channel_call_async (channel, "/vps.v1.Policy/Check", req, LOAD_CALL_TIMEOUT_US, NULL,
                               call_done, s);
}

static gboolean
stop (gpointer data)
{
  stopping = TRUE;
  if (outstanding == 0)
    g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

/* Open loop: start the calls due by now at `rate`. */
static gint64 t_start;
static guint next_free;

static gboolean
open_tick (gpointer data)
{
  guint64 due = (guint64)(rate * (double)(g_get_monotonic_time () - t_start) / 1e6);

  while (n_started + n_late < due && !stopping)
    {
      guint i, tried;

      for (tried = 0, i = next_free; tried < n_sessions && sessions[i].busy; tried++)
        i = (i + 1) % n_sessions;
      if (tried == n_sessions)
        {
          /* no free session: this call is late (counted, not queued) */
          n_late++;
          continue;
        }
      next_free = (i + 1) % n_sessions;
      start_call (&sessions[i]);
    }
  return G_SOURCE_CONTINUE;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return x < y ? -1 : x > y;
}

static double
percentile (double p)
{
  gsize i;

  if (n_samples == 0)
    return 0;
  i = (gsize)(p * (double)(n_samples - 1));
  return samples[i];
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  double seconds;
  gint64 t0, t1;

  if (argc < 4 || argc > 5)
    {
      fprintf (stderr, "usage: grpc-load HOST:PORT INFLIGHT SECONDS [RATE]\n");
      return 2;
    }
  n_sessions = (guint)CLAMP (atoi (argv[2]), 1, LOAD_MAX_INFLIGHT);
  seconds = atof (argv[3]);
  rate = argc == 5 ? atof (argv[4]) : 0;
  channel = vps_grpc_channel_new (argv[1], NULL, 1024 * 1024, &error);
  if (channel == NULL)
    {
      fprintf (stderr, "grpc-load: %s\n", error->message);
      return 2;
    }
  samples = g_new (double, LOAD_MAX_SAMPLES);
  sessions = g_new0 (Sess, n_sessions);
  for (guint i = 0; i < n_sessions; i++)
    g_snprintf (sessions[i].id, sizeof sessions[i].id, "load-%d-%u", (int)getpid (), i);
  loop = g_main_loop_new (NULL, FALSE);

  /* warm up: the connection and every session's connect and helo */
  for (guint i = 0; i < n_sessions; i++)
    start_call (&sessions[i]);
  while (outstanding > 0)
    g_main_context_iteration (NULL, TRUE);
  for (guint i = 0; i < n_sessions; i++)
    start_call (&sessions[i]);
  while (outstanding > 0)
    g_main_context_iteration (NULL, TRUE);
  n_done = n_errors = n_started = n_late = 0;
  n_samples = 0;

  t0 = t_start = g_get_monotonic_time ();
  running = TRUE;
  if (rate > 0)
    g_timeout_add (1, open_tick, NULL);
  else
    for (guint i = 0; i < n_sessions; i++)
      start_call (&sessions[i]);
  g_timeout_add ((guint)(seconds * 1000), stop, NULL);
  g_main_loop_run (loop);
  t1 = g_get_monotonic_time ();

  qsort (samples, n_samples, sizeof (double), cmp_double);
  printf ("calls %" G_GUINT64_FORMAT "\n", n_done);
  printf ("seconds %.3f\n", (double)(t1 - t0) / 1e6);
  printf ("calls_per_s %.0f\n", (double)n_done / ((double)(t1 - t0) / 1e6));
  printf ("p50_us %.0f\np99_us %.0f\np999_us %.0f\n", percentile (0.50), percentile (0.99),
          percentile (0.999));
  printf ("errors %" G_GUINT64_FORMAT "\nlate %" G_GUINT64_FORMAT "\n", n_errors, n_late);
  vps_grpc_channel_unref (channel);
  g_main_loop_unref (loop);
  g_free (sessions);
  g_free (samples);
  return n_errors > 0 ? 1 : 0;
}
