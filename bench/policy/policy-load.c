/* SPDX-License-Identifier: MIT
 *
 * policy-load.c — a closed-loop load generator for Postfix policy services
 * (SMTPD_POLICY_README): N connections, each sends one request, waits for
 * its "action=..." reply, sends the next, for a fixed time.  Single thread,
 * epoll, so the generator costs little of a small machine.
 *
 *   policy-load HOST PORT CONNECTIONS SECONDS MODE
 *
 * MODE "rcpt": one RCPT request per message, a new SMTP session each time
 * (Postfix with smtpd_delay_reject = yes and check_policy_service in
 * smtpd_recipient_restrictions); "full": CONNECT, EHLO, MAIL, RCPT, DATA,
 * END-OF-MESSAGE per message (delay_reject = no, every restriction list).
 *
 * Prints "key value" lines: requests, seconds, req_per_s, p50_us, p99_us,
 * p999_us, errors (replies that are not action=DUNNO/OK/PREPEND, closed
 * connections).  Exit 1 when there were errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define REQ_MAX 2048
#define IN_MAX 4096
#define MAX_SAMPLES (1 << 22)

typedef struct
{
  int fd;
  unsigned seq;  /* messages sent on this connection */
  unsigned step; /* request within the message (full mode) */
  char in[IN_MAX];
  size_t in_len;
  double sent_at;
} Conn;

static int full_mode;
static unsigned long n_done, n_errors;
static double *samples;
static size_t n_samples;

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const states[] = { "CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE" };

static int
build (Conn *c, int idx, char *buf)
{
  const char *state = full_mode ? states[c->step] : "RCPT";
  unsigned port = 1024 + (idx * 977 + c->seq) % 60000;
  int late = full_mode ? c->step >= 3 : 1;
  int n = snprintf (buf, REQ_MAX,
                    "request=smtpd_access_policy\nprotocol_state=%s\nprotocol_name=ESMTP\n"
                    "client_address=127.0.0.1\nclient_name=localhost\nclient_port=%u\n"
                    "reverse_client_name=localhost\nserver_address=127.0.0.1\nserver_port=25\n"
                    "helo_name=%s\nsender=%s\nrecipient=%s\nrecipient_count=%s\nqueue_id=\n"
                    "instance=%s%x.%x\nsize=%s\nsasl_method=\nsasl_username=\nsasl_sender=\n"
                    "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
                    "encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\netrn_domain=\n"
                    "stress=\npolicy_context=\ncompatibility_level=3.6\nmail_version=3.7.11\n\n",
                    state, port, (full_mode && c->step == 0) ? "" : "client.example",
                    (full_mode && c->step < 2) ? "" : "bench@example.com",
                    (full_mode && c->step != 3) ? "" : "sink@example.org",
                    (full_mode && c->step >= 4) ? "1" : "0", late ? "" : "-", idx, c->seq,
                    (full_mode && c->step == 5) ? "5120" : "0");
  if (!late)
    {
      /* no instance before RCPT, as Postfix */
      char *p = strstr (buf, "instance=");
      char *e = strchr (p, '\n');
      memmove (p + 9, e, strlen (e) + 1);
      n = (int)strlen (buf);
    }
  return n;
}

static int
send_next (Conn *c, int idx)
{
  char buf[REQ_MAX];
  int n = build (c, idx, buf);
  ssize_t w = write (c->fd, buf, (size_t)n);

  c->sent_at = now ();
  return w == n ? 0 : -1;
}

static int
cmp (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int
main (int argc, char **argv)
{
  static Conn conns[MAX_CONNS];
  struct sockaddr_in sa = { 0 };
  int n, ep;
  double seconds, t0, t_end;
  struct epoll_event evs[MAX_CONNS];

  if (argc != 6)
    {
      fprintf (stderr, "usage: policy-load HOST PORT CONNECTIONS SECONDS rcpt|full\n");
      return 2;
    }
  n = atoi (argv[3]);
  seconds = atof (argv[4]);
  full_mode = strcmp (argv[5], "full") == 0;
  if (n < 1 || n > MAX_CONNS || seconds <= 0)
    return 2;
  samples = calloc (MAX_SAMPLES, sizeof *samples);
  sa.sin_family = AF_INET;
  sa.sin_port = htons ((unsigned short)atoi (argv[2]));
  inet_pton (AF_INET, argv[1], &sa.sin_addr);
  ep = epoll_create1 (0);
  for (int i = 0; i < n; i++)
    {
      int one = 1;
      struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)i };

      conns[i].fd = socket (AF_INET, SOCK_STREAM, 0);
      if (connect (conns[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        {
          perror ("connect");
          return 1;
        }
      setsockopt (conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      epoll_ctl (ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
  t0 = now ();
  t_end = t0 + seconds;
  for (int i = 0; i < n; i++)
    send_next (&conns[i], i);
  while (1)
    {
      int k = epoll_wait (ep, evs, MAX_CONNS, 100);
      double t = now ();

      if (t >= t_end)
        break;
      for (int j = 0; j < k; j++)
        {
          int i = (int)evs[j].data.u32;
          Conn *c = &conns[i];
          ssize_t r = read (c->fd, c->in + c->in_len, IN_MAX - c->in_len);
          char *end;

          if (r <= 0)
            {
              n_errors++;
              epoll_ctl (ep, EPOLL_CTL_DEL, c->fd, NULL);
              continue;
            }
          c->in_len += (size_t)r;
          end = memmem (c->in, c->in_len, "\n\n", 2);
          if (end == NULL)
            continue;
          if (strncmp (c->in, "action=DUNNO", 12) != 0 && strncmp (c->in, "action=OK", 9) != 0
              && strncmp (c->in, "action=PREPEND", 14) != 0)
            n_errors++;
          c->in_len = 0;
          n_done++;
          if (n_samples < MAX_SAMPLES)
            samples[n_samples++] = t - c->sent_at;
          if (full_mode && ++c->step < 6)
            ;
          else
            {
              c->step = 0;
              c->seq++;
            }
          if (send_next (c, i) < 0)
            n_errors++;
        }
    }
  {
    double el = now () - t0;

    qsort (samples, n_samples, sizeof *samples, cmp);
    printf ("requests %lu\nseconds %.3f\nreq_per_s %.0f\n", n_done, el, (double)n_done / el);
    if (n_samples > 0)
      printf ("p50_us %.0f\np99_us %.0f\np999_us %.0f\n", samples[n_samples / 2] * 1e6,
              samples[(size_t)((double)n_samples * 0.99)] * 1e6,
              samples[(size_t)((double)n_samples * 0.999)] * 1e6);
    printf ("errors %lu\n", n_errors);
  }
  return n_errors > 0 ? 1 : 0;
}
