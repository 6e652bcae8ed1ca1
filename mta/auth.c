/* SPDX-License-Identifier: MIT
 *
 * auth.c — the vsmtpd password file: `user:crypt-hash` lines checked with
 * crypt_r(3) (libxcrypt), reloaded when the file changes.
 *
 * The parsed contents are an immutable, reference-counted table; a check
 * takes a reference under the mutex and runs crypt_r() outside it, so one
 * slow hash never blocks another thread, and a reload (parsing outside the
 * mutex, swapping the pointer inside) never shows a half-read file.  Every
 * hash is run through crypt_r() once at load — a hash it refuses, or whose
 * output does not have the hash's own length (a bare salt, a plaintext
 * password), is a FILE:LINE error — so loading costs one hash per user.
 *
 * Unknown users are checked against a dummy hash made at load with the
 * file's most common method, and the final comparison is CRYPTO_memcmp(), so
 * timing tells neither whether a user exists nor how much of a hash matched.
 */
#include "mta/auth.h"

#include "vps/log.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - auth - error - quark, vps_auth_error)

/* Bytes read per read(2) while loading. */
#define AUTH_READ_CHUNK 65536
/* Longest method prefix ("$gy$", "$sha1$") used to pick the dummy's method. */
#define AUTH_MAX_METHOD_PREFIX 16

/* What a stat(2) says about the file, to notice edits.  The inode catches
 * editors that write a new file and rename it over the old one. */
typedef struct
{
  int err; /* errno of a failed stat, else 0 */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
} AuthStamp;

/* One version of the file's contents; immutable once built. */
typedef struct
{
  GHashTable *users; /* user (char *) → crypt hash (char *) */
  char *dummy;       /* hash checked for unknown users */
} AuthTable;

struct _VpsPasswdFile
{
  gatomicrefcount ref;
  char *path;
  GMutex lock; /* guards everything below */
  AuthTable *table;
  AuthStamp stamp;    /* of the version last read, good or bad */
  gint64 next_check;  /* monotonic µs: no stat(2) before this */
  gint64 interval;    /* µs between stat(2) calls */
  gboolean reloading; /* one thread rereads the file; the others go on */
};

/* ---- crypt helpers ------------------------------------------------------ */

/* struct crypt_data is ~32 KiB: heap, never the stack of a pool thread.
 * It holds a copy of the passphrase, hence the wipe. */
static struct crypt_data *
auth_crypt_data_new (void)
{
  return g_new0 (struct crypt_data, 1);
}

static void
auth_crypt_data_free (struct crypt_data *data)
{
  if (data == NULL)
    return;
  explicit_bzero (data, sizeof *data);
  g_free (data);
}

typedef struct crypt_data AuthCryptData;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AuthCryptData, auth_crypt_data_free)

/* Does crypt_r() give back a string the length of `hash` for it?  A hash it
 * cannot use comes back NULL or as "*..."; a bare salt ("$6$abc") or a
 * plaintext password read as a DES salt comes back with another length. */
static gboolean
auth_hash_usable (const char *hash, struct crypt_data *data)
{
  const char *out = crypt_r ("", hash, data);

  return out != NULL && out[0] != '*' && strlen (out) == strlen (hash);
}

/* "$6$", "$2b$", "$y$" ... of a hash; "" for the traditional DES form. */
static gsize
auth_method_prefix (const char *hash, char *buf, gsize size)
{
  const char *end;
  gsize len;

  buf[0] = '\0';
  if (hash[0] != '$' || (end = strchr (hash + 1, '$')) == NULL)
    return 0;
  len = (gsize)(end - hash) + 1;
  if (len >= size)
    return 0;
  memcpy (buf, hash, len);
  buf[len] = '\0';
  return len;
}

/* A hash of a random string with `prefix`'s method and its default cost
 * (what mkpasswd uses), or the library's default method. */
static char *
auth_make_dummy (const char *prefix, struct crypt_data *data)
{
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  char secret[33];
  const char *out;

  for (gsize i = 0; i + 1 < sizeof secret; i += 8)
    g_snprintf (secret + i, sizeof secret - i, "%08" G_GINT32_MODIFIER "x", g_random_int ());
  if ((prefix == NULL || prefix[0] == '\0'
       || crypt_gensalt_rn (prefix, 0, NULL, 0, setting, sizeof setting) == NULL)
      && crypt_gensalt_rn (NULL, 0, NULL, 0, setting, sizeof setting) == NULL)
    return NULL;
  out = crypt_r (secret, setting, data);
  explicit_bzero (secret, sizeof secret);
  if (out == NULL || out[0] == '*')
    return NULL;
  return g_strdup (out);
}

/* ---- the table ---------------------------------------------------------- */

static void
auth_table_clear (AuthTable *table)
{
  g_clear_pointer (&table->users, g_hash_table_unref);
  g_free (table->dummy);
}

static AuthTable *
auth_table_ref (AuthTable *table)
{
  return g_atomic_rc_box_acquire (table);
}

static void
auth_table_unref (AuthTable *table)
{
  if (table != NULL)
    g_atomic_rc_box_release_full (table, (GDestroyNotify)auth_table_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (AuthTable, auth_table_unref)

static void
auth_stamp_from_stat (AuthStamp *stamp, const struct stat *st)
{
  memset (stamp, 0, sizeof *stamp);
  stamp->dev = st->st_dev;
  stamp->ino = st->st_ino;
  stamp->size = st->st_size;
  stamp->mtime = st->st_mtim;
}

static gboolean
auth_stamp_equal (const AuthStamp *a, const AuthStamp *b)
{
  if (a->err != 0 || b->err != 0)
    return a->err == b->err;
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size
         && a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void
auth_stamp_of_path (AuthStamp *stamp, const char *path)
{
  struct stat st;

  if (stat (path, &st) != 0)
    {
      memset (stamp, 0, sizeof *stamp);
      stamp->err = errno != 0 ? errno : EIO;
      return;
    }
  auth_stamp_from_stat (stamp, &st);
}

/* Reads the whole file (a regular file of at most VPS_AUTH_MAX_FILE bytes)
 * and the stamp of what was read. */
static GBytes *
auth_read_file (const char *path, AuthStamp *stamp, GError **error)
{
  g_autoptr (GByteArray) buf = NULL;
  struct stat st;
  int fd;

  fd = g_open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY, 0);
  if (fd < 0)
    {
      int saved_errno = errno;
      g_set_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE, "%s: %s", path,
                   g_strerror (saved_errno));
      return NULL;
    }
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode))
    {
      g_set_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE, "%s: not a regular file", path);
      close (fd);
      return NULL;
    }
  auth_stamp_from_stat (stamp, &st);
  if (st.st_size > VPS_AUTH_MAX_FILE)
    {
      g_set_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE, "%s: larger than %d bytes", path,
                   VPS_AUTH_MAX_FILE);
      close (fd);
      return NULL;
    }
  buf = g_byte_array_sized_new ((guint)MIN (st.st_size, VPS_AUTH_MAX_FILE) + 1);
  for (;;)
    {
      guint8 chunk[AUTH_READ_CHUNK];
      ssize_t got = read (fd, chunk, sizeof chunk);

      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0)
        {
          int saved_errno = errno;
          g_set_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE, "%s: %s", path,
                       g_strerror (saved_errno));
          close (fd);
          return NULL;
        }
      if (got == 0)
        break;
      /* The size from fstat can be stale (the file grows while read). */
      if (buf->len + (gsize)got > VPS_AUTH_MAX_FILE)
        {
          g_set_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE, "%s: larger than %d bytes", path,
                       VPS_AUTH_MAX_FILE);
          close (fd);
          return NULL;
        }
      g_byte_array_append (buf, chunk, (guint)got);
    }
  close (fd);
  return g_byte_array_free_to_bytes (g_steal_pointer (&buf));
}

/* One line, without its '\n'; adds the user to `users`.  Returns FALSE with
 * the reason in `why` (the caller prefixes FILE:LINE). */
static gboolean
auth_parse_line (const char *line, gsize len, GHashTable *users, GHashTable *first_line,
                 guint lineno, struct crypt_data *data, GHashTable *methods, char **why)
{
  const char *colon;
  gsize user_len, start = 0;
  g_autofree char *user = NULL;
  g_autofree char *hash = NULL;
  char prefix[AUTH_MAX_METHOD_PREFIX];

  /* CRLF files and trailing blanks are common after editing elsewhere. */
  while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
    len--;
  while (start < len && (line[start] == ' ' || line[start] == '\t'))
    start++;
  if (start == len || line[start] == '#')
    return TRUE;
  if (start > 0)
    {
      /* " alice" would be a user nobody can type by mistake. */
      *why = g_strdup ("blank before the user name");
      return FALSE;
    }
  if (memchr (line, '\0', len) != NULL)
    {
      *why = g_strdup ("NUL byte in line");
      return FALSE;
    }
  colon = memchr (line, ':', len);
  if (colon == NULL)
    {
      *why = g_strdup ("expected user:hash");
      return FALSE;
    }
  user_len = (gsize)(colon - line);
  if (user_len == 0)
    {
      *why = g_strdup ("empty user name");
      return FALSE;
    }
  if (user_len > VPS_AUTH_MAX_USER)
    {
      *why = g_strdup_printf ("user name longer than %d octets", VPS_AUTH_MAX_USER);
      return FALSE;
    }
  for (gsize i = 0; i < user_len; i++)
    if ((guchar)line[i] < 0x20 || line[i] == 0x7f)
      {
        *why = g_strdup ("control character in user name");
        return FALSE;
      }
  user = g_strndup (line, user_len);
  hash = g_strndup (colon + 1, len - user_len - 1);
  if (hash[0] == '\0')
    {
      *why = g_strdup_printf ("user \"%s\": empty hash", user);
      return FALSE;
    }
  if (g_hash_table_contains (users, user))
    {
      *why = g_strdup_printf ("user \"%s\" already defined on line %u", user,
                              GPOINTER_TO_UINT (g_hash_table_lookup (first_line, user)));
      return FALSE;
    }
  if (g_hash_table_size (users) >= VPS_AUTH_MAX_USERS)
    {
      *why = g_strdup_printf ("more than %d users", VPS_AUTH_MAX_USERS);
      return FALSE;
    }
  if (!auth_hash_usable (hash, data))
    {
      *why = g_strdup_printf ("user \"%s\": not a hash crypt(3) can use (unknown or disabled "
                              "method, or malformed)",
                              user);
      return FALSE;
    }
  auth_method_prefix (hash, prefix, sizeof prefix);
  g_hash_table_replace (
      methods, g_strdup (prefix),
      GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (methods, prefix)) + 1));
  g_hash_table_insert (first_line, g_strdup (user), GUINT_TO_POINTER (lineno));
  g_hash_table_insert (users, g_steal_pointer (&user), g_steal_pointer (&hash));
  return TRUE;
}

/* The method most hashes use, so an unknown user costs what a known one
 * does; "" when the file is empty. */
static const char *
auth_common_method (GHashTable *methods)
{
  GHashTableIter iter;
  gpointer key, value;
  const char *best = "";
  guint best_count = 0;

  g_hash_table_iter_init (&iter, methods);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (GPOINTER_TO_UINT (value) > best_count)
      {
        best = key;
        best_count = GPOINTER_TO_UINT (value);
      }
  return best;
}

static AuthTable *
auth_table_load (const char *path, AuthStamp *stamp, GError **error)
{
  g_autoptr (GBytes) bytes = NULL;
  g_autoptr (GHashTable) users = NULL;
  g_autoptr (GHashTable) first_line = NULL;
  g_autoptr (GHashTable) methods = NULL;
  g_autoptr (AuthCryptData) data = NULL;
  g_autoptr (AuthTable) table = NULL;
  const char *text;
  gsize size, pos = 0;
  guint lineno = 0;

  bytes = auth_read_file (path, stamp, error);
  if (bytes == NULL)
    return NULL;
  text = g_bytes_get_data (bytes, &size);
  users = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  first_line = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  methods = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  data = auth_crypt_data_new ();

  while (pos < size)
    {
      const char *nl = memchr (text + pos, '\n', size - pos);
      gsize len = nl != NULL ? (gsize)(nl - (text + pos)) : size - pos;
      g_autofree char *why = NULL;

      lineno++;
      if (len > VPS_AUTH_MAX_LINE)
        why = g_strdup_printf ("line longer than %d octets", VPS_AUTH_MAX_LINE);
      else
        auth_parse_line (text + pos, len, users, first_line, lineno, data, methods, &why);
      if (why != NULL)
        {
          g_set_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE, "%s:%u: %s", path, lineno, why);
          return NULL;
        }
      pos += len + (nl != NULL ? 1 : 0);
    }

  table = g_atomic_rc_box_new0 (AuthTable);
  table->users = g_steal_pointer (&users);
  table->dummy = auth_make_dummy (auth_common_method (methods), data);
  if (table->dummy == NULL)
    {
      g_set_error (error, VPS_AUTH_ERROR, VPS_AUTH_ERROR_FILE,
                   "%s: crypt(3) cannot make a hash (no usable method)", path);
      return NULL;
    }
  return g_steal_pointer (&table);
}

/* ---- the file ----------------------------------------------------------- */

VpsPasswdFile *
vps_passwd_file_load (const char *path, GError **error)
{
  VpsPasswdFile *pw;
  AuthTable *table;
  AuthStamp stamp;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  table = auth_table_load (path, &stamp, error);
  if (table == NULL)
    return NULL;
  pw = g_new0 (VpsPasswdFile, 1);
  g_atomic_ref_count_init (&pw->ref);
  g_mutex_init (&pw->lock);
  pw->path = g_strdup (path);
  pw->table = table;
  pw->stamp = stamp;
  pw->interval = VPS_AUTH_RECHECK_INTERVAL;
  pw->next_check = g_get_monotonic_time () + pw->interval;
  return pw;
}

VpsPasswdFile *
vps_passwd_file_ref (VpsPasswdFile *pw)
{
  g_return_val_if_fail (pw != NULL, NULL);
  g_atomic_ref_count_inc (&pw->ref);
  return pw;
}

void
vps_passwd_file_unref (VpsPasswdFile *pw)
{
  if (pw == NULL || !g_atomic_ref_count_dec (&pw->ref))
    return;
  auth_table_unref (pw->table);
  g_mutex_clear (&pw->lock);
  g_free (pw->path);
  g_free (pw);
}

void
vps_passwd_file_set_recheck_interval (VpsPasswdFile *pw, gint64 interval_us)
{
  g_return_if_fail (pw != NULL);
  g_return_if_fail (interval_us >= 0);

  g_mutex_lock (&pw->lock);
  pw->interval = interval_us;
  pw->next_check = g_get_monotonic_time () + interval_us;
  g_mutex_unlock (&pw->lock);
}

/* Rereads the file when it changed since it was last read and the last
 * look is old enough.  A version that fails to load is remembered too, so
 * it is logged once and not reparsed every second. */
static void
auth_maybe_reload (VpsPasswdFile *pw)
{
  g_autoptr (GError) error = NULL;
  AuthTable *table, *old = NULL;
  AuthStamp now_stamp, read_stamp;
  gint64 now = g_get_monotonic_time ();

  g_mutex_lock (&pw->lock);
  if (pw->reloading || now < pw->next_check)
    {
      g_mutex_unlock (&pw->lock);
      return;
    }
  pw->next_check = now + pw->interval;
  auth_stamp_of_path (&now_stamp, pw->path);
  if (auth_stamp_equal (&now_stamp, &pw->stamp))
    {
      g_mutex_unlock (&pw->lock);
      return;
    }
  pw->reloading = TRUE;
  g_mutex_unlock (&pw->lock);

  /* Parsing runs one crypt per user: other threads keep checking against
   * the old table meanwhile. */
  table = auth_table_load (pw->path, &read_stamp, &error);

  g_mutex_lock (&pw->lock);
  pw->reloading = FALSE;
  if (table != NULL)
    {
      old = pw->table;
      pw->table = table;
      pw->stamp = read_stamp;
    }
  else
    pw->stamp = now_stamp;
  g_mutex_unlock (&pw->lock);

  if (table != NULL)
    vps_info (NULL, "%s: reloaded, %u users", pw->path, g_hash_table_size (table->users));
  else
    vps_warning (NULL, "%s: keeping the previous contents: %s", pw->path, error->message);
  auth_table_unref (old);
}

static AuthTable *
auth_current_table (VpsPasswdFile *pw)
{
  AuthTable *table;

  auth_maybe_reload (pw);
  g_mutex_lock (&pw->lock);
  table = auth_table_ref (pw->table);
  g_mutex_unlock (&pw->lock);
  return table;
}

guint
vps_passwd_file_get_n_users (VpsPasswdFile *pw)
{
  g_autoptr (AuthTable) table = NULL;

  g_return_val_if_fail (pw != NULL, 0);
  table = auth_current_table (pw);
  return g_hash_table_size (table->users);
}

gboolean
vps_passwd_file_check (VpsPasswdFile *pw, const char *user, const char *password)
{
  g_autoptr (AuthTable) table = NULL;
  g_autoptr (AuthCryptData) data = NULL;
  const char *hash, *out;
  gboolean known;
  gsize hash_len;

  g_return_val_if_fail (pw != NULL, FALSE);
  g_return_val_if_fail (user != NULL && password != NULL, FALSE);

  /* Lengths are the client's own knowledge: refusing early leaks nothing. */
  if (strnlen (password, VPS_AUTH_MAX_PASSWORD + 1) > VPS_AUTH_MAX_PASSWORD)
    return FALSE;
  table = auth_current_table (pw);
  hash = strnlen (user, VPS_AUTH_MAX_USER + 1) <= VPS_AUTH_MAX_USER
             ? g_hash_table_lookup (table->users, user)
             : NULL;
  known = hash != NULL;
  if (!known)
    hash = table->dummy;

  data = auth_crypt_data_new ();
  out = crypt_r (password, hash, data);
  hash_len = strlen (hash);
  if (out == NULL || out[0] == '*' || strlen (out) != hash_len)
    return FALSE;
  /* Both sides are evaluated: the unknown-user path does the same work. */
  return (CRYPTO_memcmp (out, hash, hash_len) == 0) & known;
}

/* ---- async -------------------------------------------------------------- */

typedef struct
{
  VpsPasswdFile *pw;
  char *user;
  char *password;
} AuthCheck;

static void
auth_check_free (AuthCheck *check)
{
  vps_passwd_file_unref (check->pw);
  g_free (check->user);
  if (check->password != NULL)
    explicit_bzero (check->password, strlen (check->password));
  g_free (check->password);
  g_free (check);
}

static void
auth_check_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  AuthCheck *check = task_data;

  g_task_return_boolean (task, vps_passwd_file_check (check->pw, check->user, check->password));
}

void
vps_passwd_file_check_async (VpsPasswdFile *pw, const char *user, const char *password,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  AuthCheck *check;

  g_return_if_fail (pw != NULL);
  g_return_if_fail (user != NULL && password != NULL);

  /* No source object: the file is not a GObject; the task data holds a
   * reference instead. */
  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, vps_passwd_file_check_async);
  check = g_new0 (AuthCheck, 1);
  check->pw = vps_passwd_file_ref (pw);
  check->user = g_strdup (user);
  check->password = g_strdup (password);
  g_task_set_task_data (task, check, (GDestroyNotify)auth_check_free);
  g_task_run_in_thread (task, auth_check_thread);
}

gboolean
vps_passwd_file_check_finish (VpsPasswdFile *pw, GAsyncResult *result)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vps_passwd_file_check_async,
                        FALSE);

  /* A cancelled check is a failed one. */
  return g_task_propagate_boolean (G_TASK (result), NULL);
}
