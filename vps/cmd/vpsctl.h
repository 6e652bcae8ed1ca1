/* SPDX-License-Identifier: MIT
 *
 * vpsctl.h — what the parts of vpsctl share: the command context, exit
 * codes and helpers of vpsctl.c, the online commands of vpsctl-online.c
 * (those that talk to a running vpsd over gRPC) and the spool commands of
 * vpsctl-queue.c.
 * Internal to the vpsctl program.
 */
#pragma once

#include <glib.h>

#include "vps/config.h"

G_BEGIN_DECLS

#define VPSCTL_EXIT_OK 0
#define VPSCTL_EXIT_FAIL 1
#define VPSCTL_EXIT_USAGE 2

/* Online commands: how long one Admin call may take (a reload compiles
 * the rules), and the largest reply taken (a quarantined message). */
#define VPSCTL_CALL_TIMEOUT_US (120 * G_USEC_PER_SEC)
#define VPSCTL_MAX_REPLY ((guint64)G_MAXINT)

typedef struct
{
  const char *config_path; /* NULL: defaults */
  VpsConfig *cfg;
  /* online: --server and the TLS options of the command line */
  const char *server;
  const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
} Ctl;

/* vpsctl.c */
int vpsctl_fail (const char *what, const GError *error);
int vpsctl_usage (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
/* Parse a sub-command's options; leaves positional arguments in argv. */
gboolean vpsctl_parse_options (const char *name, const char *summary, GOptionEntry *entries,
                               int *argc, char ***argv, int *status);
/* Print quarantine entries (VpsQuarantineEntry*) as text or JSON. */
int vpsctl_print_entries (GPtrArray *entries, gboolean json);

/* vpsctl-online.c: the Admin service of a running vpsd */
int vpsctl_cmd_reload (Ctl *ctl, int argc, char **argv);
int vpsctl_cmd_stats (Ctl *ctl, int argc, char **argv);
int vpsctl_online_quarantine_list (Ctl *ctl, const char *name, gboolean json);
int vpsctl_online_quarantine_show (Ctl *ctl, const char *id, gboolean json);
int vpsctl_online_quarantine_act (Ctl *ctl, const char *id, gboolean release);

/* vpsctl-queue.c: `queue list|show|delete|hold|release` on [queue] dir */
int vpsctl_cmd_queue (Ctl *ctl, int argc, char **argv);

G_END_DECLS
