/* SPDX-License-Identifier: MIT */
/*
 * trivial-milter — the reference libmilter milter of the benchmarks and the
 * real-peer tests: it answers "continue" to every event it is sent and never
 * modifies anything, so what it costs an MTA is the milter protocol itself.
 *
 * Modes (BENCH.md rows):
 *   default  every step: all callbacks set, no NO_* and no NR_* bits, every
 *            action the MTA offers accepted ("trivial libmilter, all steps");
 *   -e       DATA and EOM only: SMFIP_NO* for every other step the MTA lets
 *            us drop ("trivial libmilter, DATA+EOM only");
 *   -E       EOM only (DATA dropped too): the negotiation that shows the
 *            40 ms stall of MILTER.md over TCP — kept to reproduce it.
 *
 * Usage: trivial-milter -p inet:PORT@127.0.0.1 | -p unix:PATH [-e|-E] [-v]
 * Prints "trivial-milter: listening on SPEC" once the socket listens (tests
 * wait for that line); -v also prints one line per negotiation and per
 * end of message.  Exit status: 0 after smfi_main returns, 1 on a setup
 * failure, 2 on a usage error.  It is a test tool: installed nowhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

enum trivial_mode
{
  TRIVIAL_ALL_STEPS,
  TRIVIAL_DATA_EOM,
  TRIVIAL_EOM_ONLY,
};

static enum trivial_mode mode = TRIVIAL_ALL_STEPS;
static int verbose;

/* libmilter wants a writable char * for the name. */
static char milter_name[] = "trivial-milter";

static sfsistat
trivial_connect (SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_helo (SMFICTX *ctx, char *name)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_envfrom (SMFICTX *ctx, char **argv)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_envrcpt (SMFICTX *ctx, char **argv)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_data (SMFICTX *ctx)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_header (SMFICTX *ctx, char *name, char *value)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_eoh (SMFICTX *ctx)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_body (SMFICTX *ctx, unsigned char *chunk, size_t len)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_eom (SMFICTX *ctx)
{
  if (verbose)
    {
      printf ("trivial-milter: eom\n");
      fflush (stdout);
    }
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_abort (SMFICTX *ctx)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_close (SMFICTX *ctx)
{
  return SMFIS_CONTINUE;
}

static sfsistat
trivial_unknown (SMFICTX *ctx, const char *line)
{
  return SMFIS_CONTINUE;
}

/*
 * Take every action offered (a milter that may modify is what a real one
 * negotiates, and Postfix's per-event work does not depend on it) and choose
 * the steps by mode.  Only bits the MTA offered may be asked for: libmilter
 * refuses the session otherwise.  No NR_* bits: every step sent gets its
 * reply, which is what "answers continue to every event" means.
 */
static sfsistat
trivial_negotiate (SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                   unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
                   unsigned long *pf3)
{
  unsigned long drop = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOHDRS
                       | SMFIP_NOEOH | SMFIP_NOBODY | SMFIP_NOUNKNOWN;
  unsigned long steps = 0;

  switch (mode)
    {
      case TRIVIAL_ALL_STEPS:
        steps = 0;
        break;
      case TRIVIAL_DATA_EOM:
        steps = drop;
        break;
      case TRIVIAL_EOM_ONLY:
        steps = drop | SMFIP_NODATA;
        break;
      default:
        return SMFIS_REJECT;
    }
  *pf0 = f0;
  *pf1 = steps & f1;
  *pf2 = 0;
  *pf3 = 0;
  if (verbose)
    {
      printf ("trivial-milter: negotiate offered actions=0x%lx protocol=0x%lx"
              " -> actions=0x%lx protocol=0x%lx\n",
              f0, f1, *pf0, *pf1);
      fflush (stdout);
    }
  return SMFIS_CONTINUE;
}

static void
usage (void)
{
  fprintf (stderr, "usage: trivial-milter -p inet:PORT@HOST|unix:PATH [-e|-E] [-v]\n");
  exit (2);
}

int
main (int argc, char **argv)
{
  struct smfiDesc desc = {
    .xxfi_name = milter_name,
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_CHGHDRS
                  | SMFIF_QUARANTINE | SMFIF_CHGFROM | SMFIF_ADDRCPT_PAR,
    .xxfi_connect = trivial_connect,
    .xxfi_helo = trivial_helo,
    .xxfi_envfrom = trivial_envfrom,
    .xxfi_envrcpt = trivial_envrcpt,
    .xxfi_header = trivial_header,
    .xxfi_eoh = trivial_eoh,
    .xxfi_body = trivial_body,
    .xxfi_eom = trivial_eom,
    .xxfi_abort = trivial_abort,
    .xxfi_close = trivial_close,
    .xxfi_unknown = trivial_unknown,
    .xxfi_data = trivial_data,
    .xxfi_negotiate = trivial_negotiate,
  };
  char *spec = NULL;
  int c;

  while ((c = getopt (argc, argv, "p:eEv")) != -1)
    {
      switch (c)
        {
          case 'p':
            spec = optarg;
            break;
          case 'e':
            mode = TRIVIAL_DATA_EOM;
            break;
          case 'E':
            mode = TRIVIAL_EOM_ONLY;
            break;
          case 'v':
            verbose = 1;
            break;
          default:
            usage ();
        }
    }
  if (spec == NULL || optind != argc)
    usage ();

  if (smfi_setconn (spec) != MI_SUCCESS)
    {
      fprintf (stderr, "trivial-milter: bad socket spec %s\n", spec);
      return 1;
    }
  if (smfi_register (desc) != MI_SUCCESS)
    {
      fprintf (stderr, "trivial-milter: smfi_register failed\n");
      return 1;
    }
  /* Open (and listen on) the socket before announcing readiness, so a test
   * that waits for the line never races the bind.  true: remove a stale
   * unix socket left by an earlier run. */
  if (smfi_opensocket (true) != MI_SUCCESS)
    {
      fprintf (stderr, "trivial-milter: cannot listen on %s\n", spec);
      return 1;
    }
  printf ("trivial-milter: listening on %s\n", spec);
  fflush (stdout);
  return smfi_main () == MI_SUCCESS ? 0 : 1;
}
