/* SPDX-License-Identifier: MIT
 *
 * local.c — path templates, the safety checks on what a recipient brings,
 * the message writer shared with local-mbox.c, and maildir delivery (see
 * local.h for the contract).
 *
 * Maildir follows D. J. Bernstein's maildir(5) and the Maildir++ folder
 * layout of Courier/Dovecot: a unique name in tmp/, data on disk (fsync)
 * before the name appears in new/, and new/ fsync'ed before we report
 * success, so a crash leaves either a delivered message or a stray file in
 * tmp/ that MUAs ignore.  The writer copies the queued CRLF message with LF
 * line ends through one buffer, so a message costs a handful of write(2)
 * calls whatever its number of lines.
 */
#include "mta/local.h"
#include "vps/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* clang-format off */
G_DEFINE_QUARK (vps-local-error-quark, vps_local_error)
/* clang-format on */

/* Bytes gathered before one write(2). */
#define WRITE_BUFFER_SIZE (64 * 1024)
/* Fresh unique names tried when tmp/NAME exists (a leftover of a crashed
 * process whose pid came back, in the same microsecond). */
#define UNIQUE_ATTEMPTS 5

gboolean
vps_local_io_error (GError **error, int err, const char *what, const char *path)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (err), "%s %s: %s", what, path,
               g_strerror (err));
  return FALSE;
}

gboolean
vps_local_error_is_permanent (const GError *error)
{
  return error != NULL && error->domain == VPS_LOCAL_ERROR
         && (error->code == VPS_LOCAL_ERROR_TEMPLATE || error->code == VPS_LOCAL_ERROR_UNSAFE);
}

/* Templates */

static gboolean
has_control (const char *s)
{
  for (const guchar *p = (const guchar *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return TRUE;
  return FALSE;
}

/* Can `value` become (part of) one path component without naming another
 * directory?  A leading dot is refused as a whole, not only "." and "..":
 * it also keeps a recipient from choosing a Maildir++ folder or a hidden
 * file, and it means no literal text around the value can turn it into
 * "..". */
static gboolean
check_value (const char *what, const char *value, GError **error)
{
  const char *why = NULL;

  if (value[0] == '\0')
    why = "is empty";
  else if (value[0] == '.')
    why = "starts with a dot";
  else if (strchr (value, '/') != NULL)
    why = "contains \"/\"";
  else if (has_control (value))
    why = "contains a control character";
  else if (strlen (value) > VPS_LOCAL_MAX_NAME)
    why = "is too long";
  if (why == NULL)
    return TRUE;
  {
    g_autofree char *shown = g_strescape (value, NULL);

    g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_UNSAFE, "%s \"%.64s\" %s", what, shown,
                 why);
  }
  return FALSE;
}

char *
vps_local_expand (const char *template, const char *rcpt, GError **error)
{
  g_autoptr (GString) out = NULL;
  g_autofree char *local = NULL;
  g_autofree char *user = NULL;
  g_autofree char *domain = NULL;
  const char *at, *plus;

  g_return_val_if_fail (template != NULL, NULL);
  g_return_val_if_fail (rcpt != NULL, NULL);

  if (template[0] != '/')
    {
      g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE,
                   "template \"%s\" is not an absolute path", template);
      return NULL;
    }
  /* The last "@": a quoted local part may contain one. */
  at = strrchr (rcpt, '@');
  local = at != NULL ? g_strndup (rcpt, (gsize)(at - rcpt)) : g_strdup (rcpt);
  /* A quoted local part ("a b"@d, RFC 5321 §4.1.2) means its content: the
   * checks below must see ".hidden", not "\".hidden\"". */
  if (local[0] == '"')
    {
      g_autofree char *quoted = g_steal_pointer (&local);
      gsize n = strlen (quoted);
      GString *plain = g_string_new (NULL);

      for (gsize i = 1; i + 1 < n; i++)
        {
          if (quoted[i] == '\\' && i + 2 < n)
            i++;
          g_string_append_c (plain, quoted[i]);
        }
      local = g_string_free (plain, FALSE);
    }
  domain = g_ascii_strdown (at != NULL ? at + 1 : "", -1);
  plus = strchr (local, '+');
  user
      = plus != NULL && plus != local ? g_strndup (local, (gsize)(plus - local)) : g_strdup (local);

  out = g_string_new (NULL);
  for (const char *p = template; *p; p++)
    {
      const char *value;
      const char *what;

      if (*p != '%')
        {
          g_string_append_c (out, *p);
          continue;
        }
      switch (p[1])
        {
          case '%':
            g_string_append_c (out, '%');
            p++;
            continue;
          case 'l':
            value = local, what = "local part";
            break;
          case 'u':
            value = user, what = "user";
            break;
          case 'd':
            value = domain, what = "domain";
            break;
          case '\0':
            g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE,
                         "template \"%s\" ends with a lone %%", template);
            return NULL;
          default:
            g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE,
                         "template \"%s\": unknown %%%c (known: %%l %%u %%d %%%%)", template,
                         g_ascii_isprint (p[1]) ? p[1] : '?');
            return NULL;
        }
      if (!check_value (what, value, error))
        return NULL;
      g_string_append (out, value);
      p++;
    }
  if (out->len > VPS_LOCAL_MAX_PATH)
    {
      g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE,
                   "template \"%s\" expands to more than %d bytes", template, VPS_LOCAL_MAX_PATH);
      return NULL;
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* The writer */

gboolean
vps_local_check_envelope (const char *sender, const char *rcpt, GError **error)
{
  if (sender != NULL && has_control (sender))
    {
      g_set_error_literal (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_UNSAFE,
                           "sender contains a control character");
      return FALSE;
    }
  if (has_control (rcpt))
    {
      g_set_error_literal (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_UNSAFE,
                           "recipient contains a control character");
      return FALSE;
    }
  return TRUE;
}

typedef struct
{
  int fd;
  guchar *buf;
  gsize len;
  guint64 total;
  int err; /* the first failure; later puts are no-ops */
} Writer;

static void
write_all (Writer *w, const guchar *p, gsize n)
{
  while (w->err == 0 && n > 0)
    {
      ssize_t r = write (w->fd, p, n);

      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        w->err = r < 0 ? errno : EIO;
      else
        p += r, n -= (gsize)r, w->total += (guint64)r;
    }
}

static void
writer_flush (Writer *w)
{
  write_all (w, w->buf, w->len);
  w->len = 0;
}

static void
writer_put (Writer *w, const void *data, gsize n)
{
  if (w->err != 0 || n == 0)
    return;
  if (n > WRITE_BUFFER_SIZE - w->len)
    writer_flush (w);
  if (n >= WRITE_BUFFER_SIZE)
    write_all (w, data, n);
  else
    {
      memcpy (w->buf + w->len, data, n);
      w->len += n;
    }
}

static gboolean
is_from_line (const guchar *p, gsize n)
{
  gsize i = 0;

  while (i < n && p[i] == '>')
    i++;
  return n - i >= 5 && memcmp (p + i, "From ", 5) == 0;
}

/* One line without its line end; CRLF and LF both become LF. */
static void
put_line (Writer *w, const guchar *p, gsize n, gboolean mboxrd)
{
  if (mboxrd && is_from_line (p, n))
    writer_put (w, ">", 1);
  writer_put (w, p, n);
  writer_put (w, "\n", 1);
}

gboolean
vps_local_write_message (int fd, const char *path, const char *before, const char *sender,
                         const char *rcpt, GBytes *message, gboolean mboxrd, guint64 *out_size,
                         GError **error)
{
  g_autofree guchar *buf = g_malloc (WRITE_BUFFER_SIZE);
  g_autofree char *head = NULL;
  Writer w = { .fd = fd, .buf = buf };
  gsize size;
  const guchar *p = g_bytes_get_data (message, &size);
  const guchar *end = p + size;

  head = g_strdup_printf ("%sReturn-Path: <%s>\nDelivered-To: %s\n", before != NULL ? before : "",
                          sender != NULL ? sender : "", rcpt);
  writer_put (&w, head, strlen (head));
  while (p < end)
    {
      const guchar *nl = memchr (p, '\n', (gsize)(end - p));
      const guchar *stop = nl != NULL ? nl : end;
      gsize n = (gsize)(stop - p);

      /* Only the CR of a CRLF goes; a bare CR elsewhere is data. */
      if (nl != NULL && n > 0 && stop[-1] == '\r')
        n--;
      put_line (&w, p, n, mboxrd);
      p = nl != NULL ? nl + 1 : end;
    }
  if (mboxrd)
    writer_put (&w, "\n", 1);
  writer_flush (&w);
  if (w.err != 0)
    return vps_local_io_error (error, w.err, "cannot write", path);
  if (out_size != NULL)
    *out_size = w.total;
  return TRUE;
}

/* Directories */

static gboolean
fsync_dir (const char *dir, GError **error)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err;

  if (fd < 0)
    return vps_local_io_error (error, errno, "cannot open", dir);
  if (fsync (fd) != 0)
    {
      err = errno;
      close (fd);
      return vps_local_io_error (error, err, "cannot fsync", dir);
    }
  close (fd);
  return TRUE;
}

/* `dir` exists afterwards (missing parents made 0700); *created tells
 * whether this call made it, so the caller can fsync the parent. */
gboolean
vps_local_make_dir (const char *dir, gboolean *created, GError **error)
{
  struct stat st;

  if (created != NULL)
    *created = FALSE;
  /* The common case, an existing directory, costs one mkdir(2). */
  if (mkdir (dir, 0700) == 0)
    {
      if (created != NULL)
        *created = TRUE;
      return TRUE;
    }
  if (errno == EEXIST)
    {
      if (stat (dir, &st) == 0 && S_ISDIR (st.st_mode))
        return TRUE;
      return vps_local_io_error (error, ENOTDIR, "cannot use", dir);
    }
  if (errno != ENOENT)
    return vps_local_io_error (error, errno, "cannot create", dir);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    return vps_local_io_error (error, errno, "cannot create", dir);
  if (created != NULL)
    *created = TRUE;
  return TRUE;
}

/* tmp/ new/ cur/ under `dir`; new entries are made durable in their
 * parents, or a crash could lose the new/ a message was linked into. */
static gboolean
make_maildir (const char *dir, GError **error)
{
  static const char *const subs[] = { "tmp", "new", "cur" };
  gboolean made_dir, made_any = FALSE;

  if (!vps_local_make_dir (dir, &made_dir, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (subs); i++)
    {
      g_autofree char *sub = g_build_filename (dir, subs[i], NULL);
      gboolean made;

      if (!vps_local_make_dir (sub, &made, error))
        return FALSE;
      made_any |= made;
    }
  if (made_any && !fsync_dir (dir, error))
    return FALSE;
  if (made_dir)
    {
      g_autofree char *parent = g_path_get_dirname (dir);

      return fsync_dir (parent, error);
    }
  return TRUE;
}

static gboolean
make_folder_marker (const char *dir, GError **error)
{
  g_autofree char *marker = g_build_filename (dir, "maildirfolder", NULL);
  int fd = open (marker, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

  if (fd < 0)
    return vps_local_io_error (error, errno, "cannot create", marker);
  close (fd);
  return TRUE;
}

/* Unique names */

/* The host part of maildir names, computed once: "/" would name a
 * directory and ":" starts the info part, so they are written as octal
 * escapes as qmail and Dovecot do. */
static const char *
maildir_host (void)
{
  static char *host;

  if (g_once_init_enter (&host))
    {
      GString *s = g_string_new (NULL);

      for (const char *p = g_get_host_name (); *p; p++)
        {
          if (*p == '/')
            g_string_append (s, "\\057");
          else if (*p == ':')
            g_string_append (s, "\\072");
          else
            g_string_append_c (s, *p);
        }
      g_once_init_leave (&host, g_string_free (s, FALSE));
    }
  return host;
}

/* time.M<usec>P<pid>Q<n>.<host>: time and pid make it unique among
 * processes, the counter among threads of one process. */
static char *
unique_name (void)
{
  static gint counter;
  gint64 now = g_get_real_time ();
  guint n = (guint)g_atomic_int_add (&counter, 1);

  return g_strdup_printf ("%" G_GINT64_FORMAT ".M%" G_GINT64_FORMAT "P%dQ%u.%s",
                          now / G_USEC_PER_SEC, now % G_USEC_PER_SEC, (int)getpid (), n,
                          maildir_host ());
}

/* Maildir delivery */

/* The file's data is on disk when this returns TRUE; on FALSE tmp is gone. */
static gboolean
write_tmp (const char *tmp, int fd, const char *sender, const char *rcpt, GBytes *message,
           guint64 *size, GError **error)
{
  int err = 0;

  if (!vps_local_write_message (fd, tmp, NULL, sender, rcpt, message, FALSE, size, error))
    {
      close (fd);
      unlink (tmp);
      return FALSE;
    }
  if (fsync (fd) != 0)
    err = errno;
  /* close(2) reports the deferred write errors of some file systems (NFS). */
  if (close (fd) != 0 && err == 0)
    err = errno;
  if (err != 0)
    {
      unlink (tmp);
      return vps_local_io_error (error, err, "cannot write", tmp);
    }
  return TRUE;
}

/* tmp → new: link(2) never replaces an existing name; file systems without
 * hard links get rename(2), which is safe here as names are unique. */
static gboolean
move_to_new (const char *tmp, const char *final, GError **error)
{
  if (link (tmp, final) == 0)
    {
      if (unlink (tmp) != 0)
        vps_notice (NULL, "maildir: cannot remove %s: %s", tmp, g_strerror (errno));
      return TRUE;
    }
  if ((errno == EPERM || errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP)
      && rename (tmp, final) == 0)
    return TRUE;
  vps_local_io_error (error, errno, "cannot link into", final);
  unlink (tmp);
  return FALSE;
}

gboolean
vps_local_maildir_deliver (const char *path, const char *sender, const char *rcpt, GBytes *message,
                           char **out_file, GError **error)
{
  g_autofree char *root = NULL;
  g_autofree char *base = NULL;
  g_autofree char *name = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *newdir = NULL;
  g_autofree char *final = NULL;
  g_autofree char *final_base = NULL;
  guint64 size = 0;
  int fd = -1;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (rcpt != NULL, FALSE);
  g_return_val_if_fail (message != NULL, FALSE);

  if (!g_path_is_absolute (path))
    {
      g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE,
                   "maildir \"%s\" is not an absolute path", path);
      return FALSE;
    }
  if (!vps_local_check_envelope (sender, rcpt, error))
    return FALSE;
  root = g_strdup (path);
  /* "/var/mail/u/" is the maildir "/var/mail/u". */
  for (gsize n = strlen (root); n > 1 && root[n - 1] == '/'; n--)
    root[n - 1] = '\0';
  base = g_path_get_basename (root);
  if (strcmp (base, "/") == 0 || strcmp (base, ".") == 0 || strcmp (base, "..") == 0)
    {
      g_set_error (error, VPS_LOCAL_ERROR, VPS_LOCAL_ERROR_TEMPLATE,
                   "maildir \"%s\" does not name a directory", path);
      return FALSE;
    }
  if (base[0] == '.')
    {
      g_autofree char *parent = g_path_get_dirname (root);

      if (!make_maildir (parent, error) || !make_maildir (root, error)
          || !make_folder_marker (root, error))
        return FALSE;
    }
  else if (!make_maildir (root, error))
    return FALSE;

  for (guint attempt = 0; fd < 0; attempt++)
    {
      g_free (name);
      g_free (tmp);
      name = unique_name ();
      tmp = g_build_filename (root, "tmp", name, NULL);
      fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0 && (errno != EEXIST || attempt + 1 >= UNIQUE_ATTEMPTS))
        return vps_local_io_error (error, errno, "cannot create", tmp);
    }
  if (!write_tmp (tmp, fd, sender, rcpt, message, &size, error))
    return FALSE;

  newdir = g_build_filename (root, "new", NULL);
  final_base = g_strdup_printf ("%s,S=%" G_GUINT64_FORMAT, name, size);
  final = g_build_filename (newdir, final_base, NULL);
  if (!move_to_new (tmp, final, error))
    return FALSE;
  if (!fsync_dir (newdir, error))
    {
      /* Not known to be durable: take it back so the retry is the only
       * copy (a duplicate would be allowed, but this is cleaner). */
      unlink (final);
      return FALSE;
    }
  if (out_file != NULL)
    *out_file = g_steal_pointer (&final);
  return TRUE;
}
