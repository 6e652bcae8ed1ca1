/* SPDX-License-Identifier: MIT
 *
 * trivial-policy.c — the baseline of bench-policy: a Postfix policy
 * service that answers every request "action=DUNNO" (BENCH.md's "trivial
 * policy server").  Single thread, epoll, no parsing beyond finding the
 * empty line that ends a request.
 *
 *   trivial-policy PORT      (listens on 127.0.0.1:PORT until killed)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define BUF 65536

/* bytes of "\n\n" already matched per connection: a request may span reads */
static unsigned char nl_state[MAX_FD];

int
main (int argc, char **argv)
{
  struct sockaddr_in sa = { 0 };
  int one = 1, lfd, ep;
  static char buf[BUF];
  struct epoll_event ev, evs[256];

  if (argc != 2)
    {
      fprintf (stderr, "usage: trivial-policy PORT\n");
      return 2;
    }
  lfd = socket (AF_INET, SOCK_STREAM, 0);
  setsockopt (lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sa.sin_family = AF_INET;
  sa.sin_port = htons ((unsigned short)atoi (argv[1]));
  sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (bind (lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen (lfd, 1024) < 0)
    {
      perror ("bind/listen");
      return 1;
    }
  ep = epoll_create1 (0);
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl (ep, EPOLL_CTL_ADD, lfd, &ev);
  for (;;)
    {
      int k = epoll_wait (ep, evs, 256, -1);

      for (int j = 0; j < k; j++)
        {
          int fd = evs[j].data.fd;

          if (fd == lfd)
            {
              int c = accept (lfd, NULL, NULL);

              if (c < 0 || c >= MAX_FD)
                {
                  if (c >= 0)
                    close (c);
                  continue;
                }
              setsockopt (c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
              nl_state[c] = 0;
              ev.events = EPOLLIN;
              ev.data.fd = c;
              epoll_ctl (ep, EPOLL_CTL_ADD, c, &ev);
              continue;
            }
          {
            ssize_t r = read (fd, buf, sizeof buf);
            int replies = 0;

            if (r <= 0)
              {
                close (fd);
                continue;
              }
            for (ssize_t i = 0; i < r; i++)
              {
                if (buf[i] == '\n')
                  {
                    if (nl_state[fd] == 1)
                      {
                        replies++;
                        nl_state[fd] = 0;
                      }
                    else
                      nl_state[fd] = 1;
                  }
                else
                  nl_state[fd] = 0;
              }
            for (int i = 0; i < replies; i++)
              if (write (fd, "action=DUNNO\n\n", 14) != 14)
                break;
          }
        }
    }
}
