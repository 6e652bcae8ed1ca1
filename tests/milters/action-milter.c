/* SPDX-License-Identifier: MIT */
/*
 * action-milter — a libmilter milter that does what the envelope tells it:
 * one per modification action and one per verdict in a single process, so
 * that a test can send the same message through Postfix driving it
 * directly and through vpsd's milter connector, and compare.
 *
 * Commands are words in local parts that start with "do-", joined by '+':
 *   HELO do-WORD..., MAIL FROM:<do-WORD...@x>, RCPT TO:<do-WORD...@x>
 * A verdict word is VERDICT.STAGE (stage helo, mail, rcpt, eoh, body, eom;
 * eom when left out): reject, tempfail, discard, accept, replycode (550
 * 5.7.0 "custom rejection"), mlreply (a two-line 450), continue.  It is
 * answered at that stage (at rcpt: only for the recipient that carries
 * it).  Modification words act at end of message: addheader, insheader
 * (at index 0), insheader2 (index 2), chgheader (Subject), delheader
 * (X-Remove-Me), foldheader (a two-line X-Folded), chgfrom, chgfromargs
 * (with "RET=HDRS ENVID=abc"), addrcpt, addrcptpar ("NOTIFY=NEVER"),
 * delrcpt (<removed@example.org>), replbody, quarantine, progress (one
 * SMFIR_PROGRESS first), stall (sleeps -S seconds at end of message), skip
 * (answers SKIP to the first body chunk).
 *
 * Usage: action-milter -p SPEC [-P PROTOFLAGS] [-S SECONDS] [-L LOGFILE]
 *   -P  hex protocol flags to ask for in the negotiation (NR_*, NO_*,
 *       HDR_LEADSPC, SKIP), masked by the MTA's offer; default 0
 *   -L  append one line per callback (what the MTA sent) to LOGFILE
 * Prints "action-milter: listening on SPEC" once the socket listens.  A
 * test tool: installed nowhere.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

/* libmilter takes char * for strings it only reads (names, values, reply
 * texts); string literals are fine there. */
#pragma GCC diagnostic ignored "-Wdiscarded-qualifiers"

#define MAX_WORDS 32

typedef struct
{
  char words[MAX_WORDS][64];
  int n;
  int skipped;
} Priv;

static char milter_name[] = "action-milter";
static unsigned long proto_flags;
static int stall_seconds = 30;
static FILE *log_file;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void logf_ (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

static void
logf_ (const char *fmt, ...)
{
  va_list ap;

  if (log_file == NULL)
    return;
  pthread_mutex_lock (&log_lock);
  va_start (ap, fmt);
  vfprintf (log_file, fmt, ap);
  va_end (ap);
  /* escape nothing: values with LF show as continuation lines, which the
   * tests read as such */
  fputc ('\n', log_file);
  fflush (log_file);
  pthread_mutex_unlock (&log_lock);
}

static const char *
sym (SMFICTX *ctx, const char *name)
{
  const char *v = smfi_getsymval (ctx, name);
  return v ? v : "-";
}

static Priv *
priv (SMFICTX *ctx)
{
  Priv *p = smfi_getpriv (ctx);

  if (p == NULL)
    {
      p = calloc (1, sizeof *p);
      smfi_setpriv (ctx, p);
    }
  return p;
}

/* Words of "do-a+b.rcpt" in an address or a name; appended to out (or
 * only returned through the verdict test when out is NULL). */
static int
parse_words (const char *s, char out[][64], int n)
{
  const char *p = strstr (s, "do-");

  if (p == NULL)
    return n;
  p += 3;
  while (*p && n < MAX_WORDS)
    {
      size_t len = strcspn (p, "+@>");
      if (len > 0 && len < 64)
        {
          memcpy (out[n], p, len);
          out[n][len] = '\0';
          n++;
        }
      p += len;
      if (*p != '+')
        break;
      p++;
    }
  return n;
}

static int
has (char words[][64], int n, const char *w)
{
  for (int i = 0; i < n; i++)
    if (strcmp (words[i], w) == 0)
      return 1;
  return 0;
}

/* The verdict words[] asks for at stage, or -1. */
static sfsistat
verdict_at (SMFICTX *ctx, char words[][64], int n, const char *stage)
{
  static const struct
  {
    const char *name;
    sfsistat st;
  } verdicts[] = {
    { "reject", SMFIS_REJECT },     { "tempfail", SMFIS_TEMPFAIL }, { "discard", SMFIS_DISCARD },
    { "accept", SMFIS_ACCEPT },     { "replycode", SMFIS_REJECT },  { "mlreply", SMFIS_TEMPFAIL },
    { "continue", SMFIS_CONTINUE },
  };
  char want[96];

  for (size_t v = 0; v < sizeof verdicts / sizeof verdicts[0]; v++)
    {
      snprintf (want, sizeof want, "%s.%s", verdicts[v].name, stage);
      if (!has (words, n, want)
          && !(strcmp (stage, "eom") == 0 && has (words, n, verdicts[v].name)))
        continue;
      if (strcmp (verdicts[v].name, "replycode") == 0)
        smfi_setreply (ctx, "550", "5.7.0", "custom rejection");
      else if (strcmp (verdicts[v].name, "mlreply") == 0)
        smfi_setmlreply (ctx, "450", "4.7.0", "first line", "second line", NULL);
      return verdicts[v].st;
    }
  return (sfsistat)-1;
}

static sfsistat
on_connect (SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
  priv (ctx);
  logf_ ("connect %s j=%s", host, sym (ctx, "j"));
  return SMFIS_CONTINUE;
}

static sfsistat
on_helo (SMFICTX *ctx, char *name)
{
  char words[MAX_WORDS][64];
  int n = parse_words (name, words, 0);
  sfsistat v = verdict_at (ctx, words, n, "helo");

  logf_ ("helo %s", name);
  return v == (sfsistat)-1 ? SMFIS_CONTINUE : v;
}

static void
log_argv (const char *what, char **argv)
{
  char line[2048];
  size_t off = 0;

  for (int i = 0; argv[i] != NULL && off < sizeof line - 2; i++)
    off += (size_t)snprintf (line + off, sizeof line - off, "%s%s", i ? " " : "", argv[i]);
  logf_ ("%s %s", what, line);
}

static sfsistat
on_envfrom (SMFICTX *ctx, char **argv)
{
  Priv *p = priv (ctx);
  sfsistat v;

  p->n = parse_words (argv[0], p->words, 0);
  p->skipped = 0;
  log_argv ("mail", argv);
  logf_ ("macro i=%s mail_addr=%s", sym (ctx, "i"), sym (ctx, "{mail_addr}"));
  v = verdict_at (ctx, p->words, p->n, "mail");
  return v == (sfsistat)-1 ? SMFIS_CONTINUE : v;
}

static sfsistat
on_envrcpt (SMFICTX *ctx, char **argv)
{
  Priv *p = priv (ctx);
  char words[MAX_WORDS][64];
  int n = parse_words (argv[0], words, 0);
  sfsistat v;

  log_argv ("rcpt", argv);
  for (int i = 0; i < n && p->n < MAX_WORDS; i++)
    if (strchr (words[i], '.') == NULL)
      memcpy (p->words[p->n++], words[i], sizeof p->words[0]);
  v = verdict_at (ctx, words, n, "rcpt");
  return v == (sfsistat)-1 ? SMFIS_CONTINUE : v;
}

static sfsistat
on_header (SMFICTX *ctx, char *name, char *value)
{
  logf_ ("header %s:%s", name, value);
  return SMFIS_CONTINUE;
}

static sfsistat
on_eoh (SMFICTX *ctx)
{
  Priv *p = priv (ctx);
  sfsistat v = verdict_at (ctx, p->words, p->n, "eoh");

  logf_ ("eoh");
  return v == (sfsistat)-1 ? SMFIS_CONTINUE : v;
}

static sfsistat
on_body (SMFICTX *ctx, unsigned char *chunk, size_t len)
{
  Priv *p = priv (ctx);
  sfsistat v = verdict_at (ctx, p->words, p->n, "body");
  logf_ ("body %zu", len);
  if (v != (sfsistat)-1)
    return v;
  if (has (p->words, p->n, "skip") && !p->skipped)
    {
      p->skipped = 1;
      return SMFIS_SKIP;
    }
  return SMFIS_CONTINUE;
}

static sfsistat
on_eom (SMFICTX *ctx)
{
  Priv *p = priv (ctx);
  sfsistat v;

  logf_ ("eom i=%s", sym (ctx, "i"));
  if (has (p->words, p->n, "progress"))
    smfi_progress (ctx);
  if (has (p->words, p->n, "stall"))
    sleep ((unsigned)stall_seconds);
  if (has (p->words, p->n, "addheader"))
    smfi_addheader (ctx, "X-Action-Milter", "added");
  if (has (p->words, p->n, "insheader"))
    smfi_insheader (ctx, 0, "X-Inserted", "at the top");
  if (has (p->words, p->n, "insheader2"))
    smfi_insheader (ctx, 2, "X-Inserted-2", "at index 2");
  if (has (p->words, p->n, "foldheader"))
    smfi_addheader (ctx, "X-Folded", "first line\n\tsecond line");
  if (has (p->words, p->n, "chgheader"))
    smfi_chgheader (ctx, "Subject", 1, "changed subject");
  if (has (p->words, p->n, "delheader"))
    smfi_chgheader (ctx, "X-Remove-Me", 1, NULL);
  if (has (p->words, p->n, "chgfrom"))
    smfi_chgfrom (ctx, "<new-sender@example.net>", NULL);
  if (has (p->words, p->n, "chgfromargs"))
    smfi_chgfrom (ctx, "<new-sender@example.net>", "RET=HDRS ENVID=abc");
  if (has (p->words, p->n, "addrcpt"))
    smfi_addrcpt (ctx, "<added@example.org>");
  if (has (p->words, p->n, "addrcptpar"))
    smfi_addrcpt_par (ctx, "<added@example.org>", "NOTIFY=NEVER");
  if (has (p->words, p->n, "delrcpt"))
    smfi_delrcpt (ctx, "<removed@example.org>");
  if (has (p->words, p->n, "replbody"))
    smfi_replacebody (ctx, (unsigned char *)"replaced body\r\nsecond line\r\n", 28);
  if (has (p->words, p->n, "quarantine"))
    smfi_quarantine (ctx, "held by action-milter");
  v = verdict_at (ctx, p->words, p->n, "eom");
  return v == (sfsistat)-1 ? SMFIS_CONTINUE : v;
}

static sfsistat
on_abort (SMFICTX *ctx)
{
  logf_ ("abort");
  return SMFIS_CONTINUE;
}

static sfsistat
on_close (SMFICTX *ctx)
{
  free (smfi_getpriv (ctx));
  smfi_setpriv (ctx, NULL);
  logf_ ("close");
  return SMFIS_CONTINUE;
}

static sfsistat
on_negotiate (SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
              unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
  *pf0 = f0; /* every action the MTA offers */
  *pf1 = proto_flags & f1;
  *pf2 = *pf3 = 0;
  return SMFIS_CONTINUE;
}

int
main (int argc, char **argv)
{
  struct smfiDesc desc = {
    .xxfi_name = milter_name,
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT
                  | SMFIF_QUARANTINE | SMFIF_CHGFROM | SMFIF_ADDRCPT_PAR,
    .xxfi_connect = on_connect,
    .xxfi_helo = on_helo,
    .xxfi_envfrom = on_envfrom,
    .xxfi_envrcpt = on_envrcpt,
    .xxfi_header = on_header,
    .xxfi_eoh = on_eoh,
    .xxfi_body = on_body,
    .xxfi_eom = on_eom,
    .xxfi_abort = on_abort,
    .xxfi_close = on_close,
    .xxfi_negotiate = on_negotiate,
  };
  const char *spec = NULL;
  int c;

  while ((c = getopt (argc, argv, "p:P:S:L:")) != -1)
    switch (c)
      {
        case 'p':
          spec = optarg;
          break;
        case 'P':
          proto_flags = strtoul (optarg, NULL, 16);
          break;
        case 'S':
          stall_seconds = atoi (optarg);
          break;
        case 'L':
          log_file = fopen (optarg, "a");
          if (log_file == NULL)
            {
              perror (optarg);
              return 1;
            }
          break;
        default:
          fprintf (stderr, "usage: action-milter -p SPEC [-P HEX] [-S SECONDS] [-L LOGFILE]\n");
          return 2;
      }
  if (spec == NULL)
    {
      fprintf (stderr, "usage: action-milter -p SPEC [-P HEX] [-S SECONDS] [-L LOGFILE]\n");
      return 2;
    }
  if (strncmp (spec, "unix:", 5) == 0)
    unlink (spec + 5);
  if (smfi_setconn ((char *)spec) == MI_FAILURE || smfi_register (desc) == MI_FAILURE
      || smfi_opensocket (1) == MI_FAILURE)
    {
      fprintf (stderr, "action-milter: cannot listen on %s\n", spec);
      return 1;
    }
  printf ("action-milter: listening on %s\n", spec);
  fflush (stdout);
  return smfi_main () == MI_SUCCESS ? 0 : 1;
}
