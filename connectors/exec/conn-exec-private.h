/* SPDX-License-Identifier: MIT
 *
 * conn-exec-private.h — what the files of the `exec` connector share and
 * its unit tests see: the settings, the environment a script gets, and the
 * pure mapping of (exit status, stdout) to a connector result
 * (conn-exec-parse.c).
 */
#pragma once

#include <sys/types.h>

#include "vps/connector.h"

G_BEGIN_DECLS

#define CONN_EXEC_ERROR (conn_exec_error_quark ())
GQuark conn_exec_error_quark (void);

typedef enum
{
  CONN_EXEC_ERROR_SPAWN,   /* the program could not be started */
  CONN_EXEC_ERROR_USER,    /* user/group cannot be applied (not root) */
  CONN_EXEC_ERROR_EXIT,    /* an exit status mapped to error */
  CONN_EXEC_ERROR_SIGNAL,  /* killed by a signal */
  CONN_EXEC_ERROR_OUTPUT,  /* output over max_output */
  CONN_EXEC_ERROR_REFUSED, /* a verdict, reply, header or field we will not pass on */
} ConnExecError;

/* Defaults and named limits. */
#define CONN_EXEC_DEFAULT_MAX_OUTPUT (64 * 1024)
#define CONN_EXEC_MAX_MAX_OUTPUT (16 * 1024 * 1024)
#define CONN_EXEC_MAX_ARGS 64
#define CONN_EXEC_MAX_COMMAND 4096
#define CONN_EXEC_MAX_SET_NAME 64    /* `set NAME=value`: NAME length */
#define CONN_EXEC_MAX_HEADER_MODS 64 /* header lines taken from one answer */
#define CONN_EXEC_MAX_STDERR_LOG 512 /* stderr bytes quoted in a log line */
#define CONN_EXEC_N_EXIT 256

/* exit_map values besides a RulesVerdict */
#define CONN_EXEC_MAP_UNSET (-1)
#define CONN_EXEC_MAP_ERROR (-2)

typedef struct
{
  char *name;
  char **argv;
  char *program; /* argv[0] as configured, for messages */
  gboolean send_body;
  guint64 max_output;
  char *quarantine;
  gint exit_map[CONN_EXEC_N_EXIT]; /* RulesVerdict, or CONN_EXEC_MAP_* */
  gint exit_other;                 /* for unmapped non-zero statuses */
  /* user/group (has_user): applied in the child when vpsd runs as root */
  gboolean has_user;
  char *user;
  uid_t uid;
  gid_t gid;
  gid_t *groups; /* supplementary groups of user */
  gsize n_groups;
} ConnExecSettings;

/* NULL-terminated environment for a script: PATH and VPS_* (see
 * conn-exec.c's header comment).  Values are data: no shell sees them. */
char **conn_exec_environment (VpsTxn *txn, RulesStage stage, const char *connector);

/* The result of a finished script.  exited: it ended with exit(status);
 * otherwise status is the signal that ended it.  out is stdout (len bytes,
 * not NUL-terminated, at most max_output). */
VpsConnectorResult *conn_exec_result (const ConnExecSettings *settings, gboolean exited,
                                      gint status, const char *out, gsize len, GError **error);

G_END_DECLS
