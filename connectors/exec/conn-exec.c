/* SPDX-License-Identifier: MIT
 *
 * conn-exec.c — connector type `exec`: runs a program an admin wrote (a
 * shell or Python script, anything) for each call and reads its answer.
 *
 * Keys of [connector NAME] with type = exec (besides the common type,
 * timeout, on_error, concurrency):
 *   command      PROGRAM ARG... (required), split like a shell would split
 *                words (quotes, backslashes) but never run through a shell;
 *                a relative PROGRAM with a '/' is relative to the config
 *                file, one without is looked up in PATH
 *   send_body    the raw message on stdin at data (default yes); otherwise
 *                stdin is /dev/null
 *   max_output   stdout + stderr beyond this is an error and the process
 *                group is killed (default 64K)
 *   user, group  run as this user (and group, default the user's) when vpsd
 *                runs as root; as another user a call is an error
 *   exit_N       verdict for exit status N (0..255): a verdict name or
 *                `error`; default exit_0 = continue
 *   exit_other   verdict for a non-zero status without exit_N (default error)
 *   quarantine   quarantine name of a quarantine verdict (default NAME)
 *
 * The script gets a clean environment: PATH, VPS_CONNECTOR, VPS_STAGE,
 * VPS_SESSION_ID, VPS_TXN_ID, VPS_QUEUE_ID, VPS_CLIENT_IP, VPS_CLIENT_PORT,
 * VPS_CLIENT_PTR, VPS_SERVER_NAME, VPS_HELO, VPS_TLS (yes/no),
 * VPS_TLS_VERSION, VPS_TLS_CIPHER, VPS_AUTH_USER, VPS_AUTH_MECHANISM,
 * VPS_FROM, VPS_RCPT, VPS_RCPTS (comma-separated), VPS_RCPT_COUNT, VPS_SIZE.
 * Its answer is read as conn-exec-parse.c describes.  Results: the verdict,
 * NAME.exit, NAME.stdout and the `set` fields.
 *
 * Processes: each call spawns with GSubprocess (fork + exec, no shell); the
 * child first calls setsid() so the script and everything it starts form
 * one process group, then drops to user/group.  Stdin is a memfd holding the
 * message (no pipe to write: no SIGPIPE, no blocking); stdout and stderr
 * are read asynchronously on the caller's main context.  A timeout (the
 * wrapper cancels) or too much output kills the whole group with SIGKILL and
 * stops reading; the call completes once the leader is reaped.  Concurrency
 * is the common `concurrency` key of the wrapper.
 */
#include "connectors/exec/conn-exec.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "connectors/exec/conn-exec-private.h"
#include "vps/log.h"

#define CONN_EXEC_READ_CHUNK 65536

/* exit_0 .. exit_255 as a static key list */
#define D10(p) p "0", p "1", p "2", p "3", p "4", p "5", p "6", p "7", p "8", p "9"

static const char *const conn_exec_keys[] = {
  "command",       "send_body",     "max_output",
  "user",          "group",         "exit_other",
  "quarantine",    D10 ("exit_"),   D10 ("exit_1"),
  D10 ("exit_2"),  D10 ("exit_3"),  D10 ("exit_4"),
  D10 ("exit_5"),  D10 ("exit_6"),  D10 ("exit_7"),
  D10 ("exit_8"),  D10 ("exit_9"),  D10 ("exit_10"),
  D10 ("exit_11"), D10 ("exit_12"), D10 ("exit_13"),
  D10 ("exit_14"), D10 ("exit_15"), D10 ("exit_16"),
  D10 ("exit_17"), D10 ("exit_18"), D10 ("exit_19"),
  D10 ("exit_20"), D10 ("exit_21"), D10 ("exit_22"),
  D10 ("exit_23"), D10 ("exit_24"), "exit_250",
  "exit_251",      "exit_252",      "exit_253",
  "exit_254",      "exit_255",      NULL,
};

/* ---- settings -------------------------------------------------------------- */

static void
conn_exec_free (gpointer data)
{
  ConnExecSettings *s = data;

  g_free (s->name);
  g_strfreev (s->argv);
  g_free (s->program);
  g_free (s->quarantine);
  g_free (s->user);
  g_free (s->groups);
  g_free (s);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnExecSettings, conn_exec_free)

static gboolean
read_command (VpsConfig *cfg, const char *group, ConnExecSettings *s, GError **error)
{
  const char *command = vps_config_get_raw (cfg, group, "command");
  g_autoptr (GError) local = NULL;
  g_auto (GStrv) argv = NULL;
  int argc = 0;

  if (command == NULL || *command == '\0')
    {
      vps_config_error_at (cfg, group, "command", error, "required: PROGRAM ARG...");
      return FALSE;
    }
  if (strlen (command) > CONN_EXEC_MAX_COMMAND
      || !g_shell_parse_argv (command, &argc, &argv, &local) || argc > CONN_EXEC_MAX_ARGS)
    {
      vps_config_error_at (cfg, group, "command", error,
                           "not PROGRAM ARG... (at most %d words): %s", CONN_EXEC_MAX_ARGS,
                           local != NULL ? local->message : "too long");
      return FALSE;
    }
  s->program = g_strdup (argv[0]);
  if (strchr (argv[0], '/') != NULL && !g_path_is_absolute (argv[0]))
    {
      char *abs = vps_config_resolve_path (cfg, argv[0]);
      g_free (argv[0]);
      argv[0] = abs;
    }
  if (strchr (argv[0], '/') != NULL && !g_file_test (argv[0], G_FILE_TEST_IS_EXECUTABLE))
    {
      vps_config_error_at (cfg, group, "command", error, "'%s' is not an executable file", argv[0]);
      return FALSE;
    }
  s->argv = g_steal_pointer (&argv);
  return TRUE;
}

static gboolean
read_user (VpsConfig *cfg, const char *group, ConnExecSettings *s, GError **error)
{
  const char *user = vps_config_get_raw (cfg, group, "user");
  const char *grp = vps_config_get_raw (cfg, group, "group");
  struct passwd *pw;
  int n = 0;

  if (user == NULL || *user == '\0')
    {
      if (grp != NULL)
        {
          vps_config_error_at (cfg, group, "group", error, "needs `user`");
          return FALSE;
        }
      return TRUE;
    }
  /* at load, before any worker thread: getpwnam is fine here */
  pw = getpwnam (user);
  if (pw == NULL)
    {
      vps_config_error_at (cfg, group, "user", error, "no user '%s'", user);
      return FALSE;
    }
  s->has_user = TRUE;
  s->user = g_strdup (user);
  s->uid = pw->pw_uid;
  s->gid = pw->pw_gid;
  if (grp != NULL && *grp != '\0')
    {
      struct group *gr = getgrnam (grp);
      if (gr == NULL)
        {
          vps_config_error_at (cfg, group, "group", error, "no group '%s'", grp);
          return FALSE;
        }
      s->gid = gr->gr_gid;
    }
  /* supplementary groups now: initgroups() is not async-signal-safe */
  getgrouplist (user, s->gid, NULL, &n);
  s->groups = g_new0 (gid_t, MAX (n, 1));
  if (n > 0 && getgrouplist (user, s->gid, s->groups, &n) < 0)
    n = 0;
  s->n_groups = (gsize)MAX (n, 0);
  if (s->n_groups == 0)
    {
      s->groups[0] = s->gid;
      s->n_groups = 1;
    }
  return TRUE;
}

/* "error" or a verdict name */
static gboolean
parse_mapping (const char *v, gint *out)
{
  RulesVerdict verdict;

  if (strcmp (v, "error") == 0)
    *out = CONN_EXEC_MAP_ERROR;
  else if (rules_verdict_from_name (v, &verdict))
    *out = (gint)verdict;
  else
    return FALSE;
  return TRUE;
}

static gboolean
read_exit_map (VpsConfig *cfg, const char *group, ConnExecSettings *s, GError **error)
{
  const char *v;

  for (gint i = 0; i < CONN_EXEC_N_EXIT; i++)
    {
      char key[16];

      g_snprintf (key, sizeof key, "exit_%d", i);
      s->exit_map[i] = CONN_EXEC_MAP_UNSET;
      if ((v = vps_config_get_raw (cfg, group, key)) != NULL && !parse_mapping (v, &s->exit_map[i]))
        {
          vps_config_error_at (cfg, group, key, error, "'%s': a verdict or `error`", v);
          return FALSE;
        }
    }
  s->exit_other = CONN_EXEC_MAP_ERROR;
  if ((v = vps_config_get_raw (cfg, group, "exit_other")) != NULL
      && !parse_mapping (v, &s->exit_other))
    {
      vps_config_error_at (cfg, group, "exit_other", error, "'%s': a verdict or `error`", v);
      return FALSE;
    }
  return TRUE;
}

static gpointer
conn_exec_create (const char *name, VpsConfig *cfg, const char *group, GError **error)
{
  g_autoptr (ConnExecSettings) s = g_new0 (ConnExecSettings, 1);
  const char *q;

  s->name = g_strdup (name);
  if (!vps_config_connector_check_keys (cfg, group, conn_exec_keys, error)
      || !read_command (cfg, group, s, error) || !read_user (cfg, group, s, error)
      || !read_exit_map (cfg, group, s, error)
      || !vps_config_read_bool (cfg, group, "send_body", TRUE, &s->send_body, error)
      || !vps_config_read_size (cfg, group, "max_output", CONN_EXEC_DEFAULT_MAX_OUTPUT,
                                &s->max_output, error))
    return NULL;
  if (s->max_output == 0 || s->max_output > CONN_EXEC_MAX_MAX_OUTPUT)
    {
      vps_config_error_at (cfg, group, "max_output", error, "1 .. %d bytes",
                           CONN_EXEC_MAX_MAX_OUTPUT);
      return NULL;
    }
  q = vps_config_get_raw (cfg, group, "quarantine");
  s->quarantine = g_strdup (q != NULL ? q : name);
  return g_steal_pointer (&s);
}

/* ---- the child ------------------------------------------------------------- */

/* Runs between fork and exec: async-signal-safe calls only. */
static void
child_setup (gpointer data)
{
  const ConnExecSettings *s = data;

  setsid ();
  if (s->has_user && geteuid () == 0)
    {
      if (setgroups (s->n_groups, s->groups) != 0 || setgid (s->gid) != 0 || setuid (s->uid) != 0)
        _exit (126);
    }
}

/* A memfd holding bytes, at offset 0; -1 with errno on failure. */
static int
stdin_fd (GBytes *bytes)
{
  gsize len = 0;
  const char *p = g_bytes_get_data (bytes, &len);
  int fd = memfd_create ("vps-exec-stdin", MFD_CLOEXEC);

  if (fd < 0)
    return -1;
  while (len > 0)
    {
      ssize_t n = write (fd, p, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int saved = errno;
          close (fd);
          errno = saved;
          return -1;
        }
      p += n;
      len -= (gsize)n;
    }
  if (lseek (fd, 0, SEEK_SET) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

/* ---- calls ----------------------------------------------------------------- */

typedef struct
{
  VpsConnector *connector;
  VpsTxn *txn;
  GSubprocess *proc;
  GPid pid;
  GCancellable *io;    /* cancels our reads when the group is killed */
  GCancellable *outer; /* the wrapper's */
  gulong outer_handler;
  GByteArray *out, *err;
  guint pending; /* wait + stdout + stderr still running */
  gint killed;   /* atomic: the group got SIGKILL */
  gboolean overflow;
} Call;

static void
call_free (gpointer data)
{
  Call *call = data;

  if (call->outer_handler != 0)
    g_cancellable_disconnect (call->outer, call->outer_handler);
  g_clear_object (&call->outer);
  g_clear_object (&call->io);
  g_clear_object (&call->proc);
  g_byte_array_unref (call->out);
  g_byte_array_unref (call->err);
  vps_txn_unref (call->txn);
  vps_connector_unref (call->connector);
  g_free (call);
}

/* Kill the whole process group once (any thread). */
static void
kill_group (Call *call)
{
  if (call->pid > 1 && g_atomic_int_compare_and_exchange (&call->killed, 0, 1))
    kill (-call->pid, SIGKILL);
  g_cancellable_cancel (call->io);
}

static void
outer_cancelled (GCancellable *cancellable, gpointer data)
{
  kill_group (data);
}

static char *
stderr_excerpt (GByteArray *err)
{
  gsize len = MIN (err->len, CONN_EXEC_MAX_STDERR_LOG);
  g_autofree char *raw = len > 0 ? g_strndup ((const char *)err->data, len) : g_strdup ("");

  /* one log line: controls shown as spaces */
  for (char *p = raw; *p != '\0'; p++)
    if ((guchar)*p < 0x20 || *p == 0x7f)
      *p = ' ';
  return g_utf8_make_valid (g_strstrip (raw), -1);
}

static void
call_done (GTask *task)
{
  Call *call = g_task_get_task_data (task);
  ConnExecSettings *s = vps_connector_get_data (call->connector);
  const char *sid = vps_session_get_id (vps_txn_get_session (call->txn));
  g_autofree char *err = stderr_excerpt (call->err);
  GError *error = NULL;
  VpsConnectorResult *r = NULL;
  gint status = g_subprocess_get_if_exited (call->proc) ? g_subprocess_get_exit_status (call->proc)
                                                        : g_subprocess_get_term_sig (call->proc);

  /* the group may be gone: never signal a process group id again */
  g_atomic_int_set (&call->killed, 1);
  if (*err != '\0')
    vps_info (sid, "exec %s: stderr: %s", s->name, err);
  if (g_cancellable_is_cancelled (call->outer))
    g_set_error (&error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "exec %s: cancelled", s->name);
  else if (call->overflow)
    g_set_error (&error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_OUTPUT,
                 "exec %s: output larger than max_output (%" G_GUINT64_FORMAT " bytes)", s->name,
                 s->max_output);
  else
    {
      r = conn_exec_result (s, g_subprocess_get_if_exited (call->proc), status,
                            (const char *)call->out->data, call->out->len, &error);
      if (r == NULL)
        {
          g_prefix_error (&error, "exec %s: ", s->name);
          /* the why is usually on stderr: it goes with the warning line */
          if (*err != '\0')
            {
              g_autofree char *with = g_strdup_printf ("%s; stderr: %s", error->message, err);
              g_free (error->message);
              error->message = g_steal_pointer (&with);
            }
        }
    }
  if (r != NULL)
    g_task_return_pointer (task, r, (GDestroyNotify)vps_connector_result_unref);
  else
    g_task_return_error (task, error);
}

static void
op_done (GTask *task)
{
  Call *call = g_task_get_task_data (task);

  if (--call->pending == 0)
    call_done (task);
  g_object_unref (task); /* each operation held one */
}

static void read_next (GTask *task, GInputStream *stream, GByteArray *buf);

static void
read_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;
  Call *call = g_task_get_task_data (task);
  ConnExecSettings *s = vps_connector_get_data (call->connector);
  GInputStream *stream = G_INPUT_STREAM (source);
  GByteArray *buf = stream == g_subprocess_get_stdout_pipe (call->proc) ? call->out : call->err;
  g_autoptr (GBytes) chunk = g_input_stream_read_bytes_finish (stream, res, NULL);
  gsize n = chunk != NULL ? g_bytes_get_size (chunk) : 0;

  /* EOF, an error, or our own cancellation: this stream is finished */
  if (n == 0)
    {
      op_done (task);
      return;
    }
  if ((guint64)call->out->len + call->err->len + n > s->max_output)
    {
      /* checked before storing: a flood costs at most max_output */
      call->overflow = TRUE;
      kill_group (call);
      op_done (task);
      return;
    }
  g_byte_array_append (buf, g_bytes_get_data (chunk, NULL), (guint)n);
  read_next (task, stream, buf);
}

static void
read_next (GTask *task, GInputStream *stream, GByteArray *buf)
{
  Call *call = g_task_get_task_data (task);

  g_input_stream_read_bytes_async (stream, CONN_EXEC_READ_CHUNK, G_PRIORITY_DEFAULT, call->io,
                                   read_cb, task);
}

static void
wait_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  GTask *task = data;

  g_subprocess_wait_finish (G_SUBPROCESS (source), res, NULL);
  op_done (task);
}

static GSubprocess *
spawn (const ConnExecSettings *s, VpsTxn *txn, RulesStage stage, GError **error)
{
  g_autoptr (GSubprocessLauncher) launcher
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_auto (GStrv) env = conn_exec_environment (txn, stage, s->name);
  VpsMessage *msg = vps_txn_get_message (txn);

  if (s->has_user && geteuid () != 0 && geteuid () != s->uid)
    {
      g_set_error (error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_USER,
                   "cannot run as user %s: vpsd is not running as root", s->user);
      return NULL;
    }
  g_subprocess_launcher_set_environ (launcher, env);
  if (msg != NULL && s->send_body)
    {
      int fd = stdin_fd (vps_message_get_raw (msg));

      if (fd < 0)
        {
          int saved = errno;
          g_set_error (error, CONN_EXEC_ERROR, CONN_EXEC_ERROR_SPAWN,
                       "cannot hold the message for stdin: %s", g_strerror (saved));
          return NULL;
        }
      g_subprocess_launcher_take_stdin_fd (launcher, fd);
    }
  else
    g_subprocess_launcher_set_stdin_file_path (launcher, "/dev/null");
  /* settings outlive every call (the call holds the connector) */
  g_subprocess_launcher_set_child_setup (launcher, child_setup, (gpointer)s, NULL);
  return g_subprocess_launcher_spawnv (launcher, (const char *const *)s->argv, error);
}

static void
conn_exec_call_async (VpsConnector *connector, VpsTxn *txn, RulesStage stage,
                      GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  ConnExecSettings *s = vps_connector_get_data (connector);
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  GError *error = NULL;
  Call *call;
  const char *ident;

  g_task_set_source_tag (task, conn_exec_call_async);
  call = g_new0 (Call, 1);
  call->connector = vps_connector_ref (connector);
  call->txn = vps_txn_ref (txn);
  call->io = g_cancellable_new ();
  call->outer = cancellable != NULL ? g_object_ref (cancellable) : g_cancellable_new ();
  call->out = g_byte_array_new ();
  call->err = g_byte_array_new ();
  g_task_set_task_data (task, call, call_free);
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }
  call->proc = spawn (s, txn, stage, &error);
  if (call->proc == NULL)
    {
      g_prefix_error (&error, "exec %s: %s: ", s->name, s->program);
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  ident = g_subprocess_get_identifier (call->proc);
  call->pid = ident != NULL ? (GPid)g_ascii_strtoll (ident, NULL, 10) : 0;
  /* three operations, each with its own task reference */
  call->pending = 3;
  g_subprocess_wait_async (call->proc, NULL, wait_cb, g_object_ref (task));
  read_next (g_object_ref (task), g_subprocess_get_stdout_pipe (call->proc), call->out);
  read_next (task, g_subprocess_get_stderr_pipe (call->proc), call->err);
  /* connected last: the handler may run at once when already cancelled */
  call->outer_handler
      = g_cancellable_connect (call->outer, G_CALLBACK (outer_cancelled), call, NULL);
}

static VpsConnectorResult *
conn_exec_call_finish (VpsConnector *connector, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static const RulesFieldDecl conn_exec_fields[] = {
  { "exit", RULES_TYPE_INT, FALSE },
  { "stdout", RULES_TYPE_STRING, FALSE },
};

const VpsConnectorClass conn_exec_class = {
  .type = "exec",
  .fields = conn_exec_fields,
  .n_fields = G_N_ELEMENTS (conn_exec_fields),
  /* `set NAME=value` fields are the script's own */
  .any_field = TRUE,
  .config_keys = conn_exec_keys,
  .create = conn_exec_create,
  .call_async = conn_exec_call_async,
  .call_finish = conn_exec_call_finish,
  .free = conn_exec_free,
};
