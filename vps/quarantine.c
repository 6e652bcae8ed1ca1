/* SPDX-License-Identifier: MIT
 *
 * quarantine.c — the quarantine store (see quarantine.h for the contract).
 *
 * Durability follows the queue's rule: data reaches the disk before its
 * name does (write + fsync of a temp file, rename, fsync of the directory),
 * so a crash leaves either a whole entry or a stray ".*.tmp" file, never a
 * half message under a real name.  The .json is renamed last: an entry
 * without its .json is invisible and a failed store removes the .eml.
 * File names are built only from validated names and generated ids.
 */
#include "vps/quarantine.h"
#include "vps/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - quarantine - error - quark, vps_quarantine_error)

#define ID_RANDOM_BYTES 6
#define STORE_ATTEMPTS 5

struct _VpsQuarantine
{
  gatomicrefcount ref;
  char *dir;
};

gboolean
vps_quarantine_valid_name (const char *name)
{
  gsize n;

  if (name == NULL)
    return FALSE;
  n = strlen (name);
  if (n == 0 || n > VPS_QUARANTINE_MAX_NAME)
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!(g_ascii_islower (*p) || g_ascii_isdigit (*p) || *p == '_' || *p == '-'))
      return FALSE;
  return TRUE;
}

/* "YYYYMMDDTHHMMSSZ-xxxxxxxxxxxx": digits, T, digits, Z, -, lower hex. */
gboolean
vps_quarantine_valid_id (const char *id)
{
  if (id == NULL || strlen (id) != VPS_QUARANTINE_ID_LEN)
    return FALSE;
  for (gsize i = 0; i < VPS_QUARANTINE_ID_LEN; i++)
    {
      char c = id[i];
      gboolean ok;

      if (i == 8)
        ok = c == 'T';
      else if (i == 15)
        ok = c == 'Z';
      else if (i == 16)
        ok = c == '-';
      else if (i < 16)
        ok = g_ascii_isdigit (c);
      else
        ok = g_ascii_isdigit (c) || (c >= 'a' && c <= 'f');
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

static gboolean
io_error (GError **error, int err, const char *what, const char *path)
{
  g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_IO, "%s %s: %s", what, path,
               g_strerror (err));
  return FALSE;
}

VpsQuarantine *
vps_quarantine_open (const char *dir, GError **error)
{
  VpsQuarantine *q;

  g_return_val_if_fail (dir != NULL, NULL);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      io_error (error, errno, "cannot create", dir);
      return NULL;
    }
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      io_error (error, ENOTDIR, "cannot open", dir);
      return NULL;
    }
  q = g_new0 (VpsQuarantine, 1);
  g_atomic_ref_count_init (&q->ref);
  q->dir = g_canonicalize_filename (dir, NULL);
  return q;
}

VpsQuarantine *
vps_quarantine_ref (VpsQuarantine *q)
{
  g_return_val_if_fail (q != NULL, NULL);
  g_atomic_ref_count_inc (&q->ref);
  return q;
}

void
vps_quarantine_unref (VpsQuarantine *q)
{
  g_return_if_fail (q != NULL);
  if (!g_atomic_ref_count_dec (&q->ref))
    return;
  g_free (q->dir);
  g_free (q);
}

const char *
vps_quarantine_get_dir (VpsQuarantine *q)
{
  g_return_val_if_fail (q != NULL, NULL);
  return q->dir;
}

void
vps_quarantine_entry_free (VpsQuarantineEntry *e)
{
  if (e == NULL)
    return;
  g_free (e->id);
  g_free (e->name);
  g_free (e->sender);
  g_strfreev (e->recipients);
  g_free (e->subject);
  g_free (e->reason);
  g_free (e->rule);
  g_free (e);
}

/* ---- store -------------------------------------------------------------- */

static char *
new_id (GDateTime *now)
{
  guchar rnd[ID_RANDOM_BYTES];
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%dT%H%M%SZ");
  GString *id = g_string_new (stamp);

  if (getrandom (rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
    for (gsize i = 0; i < sizeof rnd; i++)
      rnd[i] = (guchar)g_random_int_range (0, 256);
  g_string_append_c (id, '-');
  for (gsize i = 0; i < sizeof rnd; i++)
    g_string_append_printf (id, "%02x", rnd[i]);
  return g_string_free (id, FALSE);
}

static gboolean
fsync_dir (const char *dir, GError **error)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err;

  if (fd < 0)
    return io_error (error, errno, "cannot open", dir);
  if (fsync (fd) != 0)
    {
      err = errno;
      close (fd);
      return io_error (error, err, "cannot fsync", dir);
    }
  close (fd);
  return TRUE;
}

/* dir/base via dir/.base.tmp: write, fsync, rename.  The temp file is
 * removed on failure.  O_EXCL: a leftover temp of a crashed store with the
 * same id (practically impossible) fails instead of being appended to. */
static gboolean
write_durable (const char *dir, const char *base, const void *data, gsize len, GError **error)
{
  g_autofree char *tmp_base = g_strconcat (".", base, ".tmp", NULL);
  g_autofree char *tmp = g_build_filename (dir, tmp_base, NULL);
  g_autofree char *path = g_build_filename (dir, base, NULL);
  const guchar *p = data;
  int fd, err = 0;

  fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return io_error (error, errno, "cannot create", tmp);
  /* The umask may only narrow the mode; make it exactly 0600. */
  if (fchmod (fd, 0600) != 0)
    err = errno;
  while (err == 0 && len > 0)
    {
      ssize_t n = write (fd, p, len);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        err = n < 0 ? errno : EIO;
      else
        p += n, len -= (gsize)n;
    }
  if (err == 0 && fsync (fd) != 0)
    err = errno;
  if (close (fd) != 0 && err == 0)
    err = errno;
  if (err == 0 && rename (tmp, path) != 0)
    err = errno;
  if (err != 0)
    {
      unlink (tmp);
      return io_error (error, err, "cannot write", path);
    }
  return TRUE;
}

static char *
build_json (JsonObject *meta, const char *id, const char *name, GDateTime *now, GBytes *raw)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *stored = g_date_time_format_iso8601 (now);
  g_autofree char *sha = g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, raw);
  static const char *const ours[] = { "id", "name", "stored", "time", "size", "sha256", NULL };

  json_builder_begin_object (b);
  if (meta != NULL)
    {
      g_autoptr (GList) members = json_object_get_members (meta);

      /* A caller's member that collides with ours (the engine's "id" is the
       * transaction id) is kept as "meta_NAME" rather than lost. */
      for (GList *l = members; l != NULL; l = l->next)
        {
          g_autofree char *key = g_strv_contains (ours, l->data)
                                     ? g_strconcat ("meta_", (char *)l->data, NULL)
                                     : g_strdup (l->data);

          json_builder_set_member_name (b, key);
          json_builder_add_value (b, json_node_copy (json_object_get_member (meta, l->data)));
        }
    }
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, id);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, name);
  json_builder_set_member_name (b, "stored");
  json_builder_add_string_value (b, stored);
  json_builder_set_member_name (b, "time");
  json_builder_add_int_value (b, g_date_time_to_unix (now));
  json_builder_set_member_name (b, "size");
  json_builder_add_int_value (b, (gint64)g_bytes_get_size (raw));
  json_builder_set_member_name (b, "sha256");
  json_builder_add_string_value (b, sha);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

gboolean
vps_quarantine_store (VpsQuarantine *q, const char *name, GBytes *raw, JsonObject *meta,
                      char **out_id, GError **error)
{
  g_autofree char *dir = NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *id = NULL;
  g_autofree char *eml = NULL;
  g_autofree char *json_base = NULL;
  g_autofree char *json = NULL;
  gsize len;
  gconstpointer data;

  g_return_val_if_fail (q != NULL && raw != NULL, FALSE);
  if (!vps_quarantine_valid_name (name))
    {
      g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_NAME,
                   "invalid quarantine name (1-%d characters of a-z 0-9 _ -)",
                   VPS_QUARANTINE_MAX_NAME);
      return FALSE;
    }
  dir = g_build_filename (q->dir, name, NULL);
  if (mkdir (dir, 0700) == 0)
    {
      /* A new directory entry in the store: make it durable too. */
      if (chmod (dir, 0700) != 0)
        return io_error (error, errno, "cannot chmod", dir);
      if (!fsync_dir (q->dir, error))
        return FALSE;
    }
  else if (errno != EEXIST)
    return io_error (error, errno, "cannot create", dir);

  for (guint attempt = 0;; attempt++)
    {
      g_autofree char *path = NULL;

      g_clear_pointer (&id, g_free);
      g_clear_pointer (&eml, g_free);
      id = new_id (now);
      eml = g_strconcat (id, ".eml", NULL);
      path = g_build_filename (dir, eml, NULL);
      if (!g_file_test (path, G_FILE_TEST_EXISTS))
        break;
      if (attempt + 1 >= STORE_ATTEMPTS)
        return io_error (error, EEXIST, "no free id in", dir);
    }

  data = g_bytes_get_data (raw, &len);
  if (!write_durable (dir, eml, data != NULL ? data : "", len, error))
    return FALSE;
  json = build_json (meta, id, name, now, raw);
  json_base = g_strconcat (id, ".json", NULL);
  if (!write_durable (dir, json_base, json, strlen (json), error) || !fsync_dir (dir, error))
    {
      g_autofree char *path = g_build_filename (dir, eml, NULL);
      g_autofree char *jpath = g_build_filename (dir, json_base, NULL);

      unlink (jpath);
      unlink (path);
      fsync_dir (dir, NULL);
      return FALSE;
    }
  if (out_id != NULL)
    *out_id = g_steal_pointer (&id);
  return TRUE;
}

/* ---- lookups ------------------------------------------------------------ */

static gboolean
check_id (const char *id, GError **error)
{
  if (vps_quarantine_valid_id (id))
    return TRUE;
  g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_ID,
               "invalid quarantine id");
  return FALSE;
}

/* The quarantine directory that holds id (ids are unique across names). */
static char *
find_dir (VpsQuarantine *q, const char *id, GError **error)
{
  g_autoptr (GDir) d = NULL;
  g_autofree char *json = g_strconcat (id, ".json", NULL);
  const char *name;

  if (!check_id (id, error))
    return NULL;
  d = g_dir_open (q->dir, 0, NULL);
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = NULL;

      if (!vps_quarantine_valid_name (name))
        continue;
      path = g_build_filename (q->dir, name, json, NULL);
      if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
        return g_build_filename (q->dir, name, NULL);
    }
  g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_NOT_FOUND,
               "no quarantined message %s", id);
  return NULL;
}

static char *
read_json_file (const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  char *text = NULL;
  gsize len = 0;
  struct stat st;

  if (stat (path, &st) == 0 && st.st_size > VPS_QUARANTINE_MAX_META)
    {
      g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_CORRUPT,
                   "%s: larger than %d bytes", path, VPS_QUARANTINE_MAX_META);
      return NULL;
    }
  if (!g_file_get_contents (path, &text, &len, &local))
    {
      g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_IO, "%s", local->message);
      return NULL;
    }
  return text;
}

/* o[key], or o[outer][inner] (the engine's report: envelope.from ...). */
static JsonNode *
member (JsonObject *o, const char *key, const char *outer, const char *inner)
{
  JsonNode *n = json_object_get_member (o, key);

  if (n == NULL && outer != NULL)
    {
      JsonNode *sub = json_object_get_member (o, outer);

      if (sub != NULL && JSON_NODE_HOLDS_OBJECT (sub))
        n = json_object_get_member (json_node_get_object (sub), inner);
    }
  return n;
}

static char *
string_of (JsonNode *n)
{
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return g_strdup (json_node_get_string (n));
}

static VpsQuarantineEntry *
entry_from_file (const char *dir, const char *name, const char *id, GError **error)
{
  g_autofree char *base = g_strconcat (id, ".json", NULL);
  g_autofree char *path = g_build_filename (dir, base, NULL);
  g_autofree char *text = read_json_file (path, error);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (VpsQuarantineEntry) e = NULL;
  g_autoptr (GPtrArray) rcpts = g_ptr_array_new ();
  JsonNode *root;
  JsonObject *o;
  JsonNode *list;

  if (text == NULL)
    return NULL;
  if (!json_parser_load_from_data (parser, text, -1, NULL)
      || (root = json_parser_get_root (parser)) == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_CORRUPT,
                   "%s: not a JSON object", path);
      return NULL;
    }
  o = json_node_get_object (root);
  e = g_new0 (VpsQuarantineEntry, 1);
  /* The file's place, not its content, says which entry it is. */
  e->id = g_strdup (id);
  e->name = g_strdup (name);
  e->time = json_object_get_int_member_with_default (o, "time", 0);
  e->size = (guint64)MAX (0, json_object_get_int_member_with_default (o, "size", 0));
  e->sender = string_of (member (o, "sender", "envelope", "from"));
  e->subject = string_of (member (o, "subject", "headers", "subject"));
  e->reason = string_of (member (o, "reason", NULL, NULL));
  e->rule = string_of (member (o, "rule", NULL, NULL));
  list = member (o, "recipients", "envelope", "rcpts");
  if (list != NULL && JSON_NODE_HOLDS_ARRAY (list))
    {
      JsonArray *a = json_node_get_array (list);

      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *n = json_array_get_element (a, i);

          if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
            g_ptr_array_add (rcpts, g_strdup (json_node_get_string (n)));
        }
    }
  g_ptr_array_add (rcpts, NULL);
  e->recipients = (char **)g_ptr_array_steal (rcpts, NULL);
  return g_steal_pointer (&e);
}

static void
list_dir (VpsQuarantine *q, const char *name, GPtrArray *out)
{
  g_autofree char *dir = g_build_filename (q->dir, name, NULL);
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *file;

  while (d != NULL && (file = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *id = NULL;
      g_autoptr (GError) error = NULL;
      VpsQuarantineEntry *e;

      if (!g_str_has_suffix (file, ".json") || strlen (file) != VPS_QUARANTINE_ID_LEN + 5)
        continue;
      id = g_strndup (file, VPS_QUARANTINE_ID_LEN);
      if (!vps_quarantine_valid_id (id))
        continue;
      e = entry_from_file (dir, name, id, &error);
      if (e == NULL)
        {
          vps_log_once (file, 3600, G_LOG_LEVEL_WARNING, NULL, "quarantine: skipping %s: %s", file,
                        error->message);
          continue;
        }
      g_ptr_array_add (out, e);
    }
}

static gint
entry_cmp (gconstpointer a, gconstpointer b)
{
  const VpsQuarantineEntry *x = *(VpsQuarantineEntry *const *)a;
  const VpsQuarantineEntry *y = *(VpsQuarantineEntry *const *)b;
  int c = strcmp (x->id, y->id);

  return c != 0 ? c : strcmp (x->name, y->name);
}

GPtrArray *
vps_quarantine_list (VpsQuarantine *q, const char *name, GError **error)
{
  g_autoptr (GPtrArray) out
      = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_quarantine_entry_free);

  g_return_val_if_fail (q != NULL, NULL);
  if (name != NULL)
    {
      if (!vps_quarantine_valid_name (name))
        {
          g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_INVALID_NAME,
                       "invalid quarantine name");
          return NULL;
        }
      list_dir (q, name, out);
    }
  else
    {
      g_autoptr (GError) local = NULL;
      g_autoptr (GDir) d = g_dir_open (q->dir, 0, &local);
      const char *sub;

      if (d == NULL)
        {
          g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_IO, "%s", local->message);
          return NULL;
        }
      while ((sub = g_dir_read_name (d)) != NULL)
        if (vps_quarantine_valid_name (sub))
          list_dir (q, sub, out);
    }
  g_ptr_array_sort (out, entry_cmp);
  return g_steal_pointer (&out);
}

VpsQuarantineEntry *
vps_quarantine_get_entry (VpsQuarantine *q, const char *id, GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *name = NULL;

  g_return_val_if_fail (q != NULL, NULL);
  dir = find_dir (q, id, error);
  if (dir == NULL)
    return NULL;
  name = g_path_get_basename (dir);
  return entry_from_file (dir, name, id, error);
}

GBytes *
vps_quarantine_get_raw (VpsQuarantine *q, const char *id, GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *path = NULL;
  g_autoptr (GError) local = NULL;
  char *data = NULL;
  gsize len = 0;

  g_return_val_if_fail (q != NULL, NULL);
  dir = find_dir (q, id, error);
  if (dir == NULL)
    return NULL;
  base = g_strconcat (id, ".eml", NULL);
  path = g_build_filename (dir, base, NULL);
  if (!g_file_get_contents (path, &data, &len, &local))
    {
      g_set_error (error, VPS_QUARANTINE_ERROR, VPS_QUARANTINE_ERROR_IO, "%s", local->message);
      return NULL;
    }
  return g_bytes_new_take (data, len);
}

char *
vps_quarantine_get_json (VpsQuarantine *q, const char *id, GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *base = NULL;
  g_autofree char *path = NULL;

  g_return_val_if_fail (q != NULL, NULL);
  dir = find_dir (q, id, error);
  if (dir == NULL)
    return NULL;
  base = g_strconcat (id, ".json", NULL);
  path = g_build_filename (dir, base, NULL);
  return read_json_file (path, error);
}

gboolean
vps_quarantine_delete (VpsQuarantine *q, const char *id, GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *json = NULL;
  g_autofree char *eml = NULL;

  g_return_val_if_fail (q != NULL, FALSE);
  dir = find_dir (q, id, error);
  if (dir == NULL)
    return FALSE;
  json = g_strdup_printf ("%s/%s.json", dir, id);
  eml = g_strdup_printf ("%s/%s.eml", dir, id);
  /* .json first: once it is gone the entry is gone for every reader. */
  if (unlink (json) != 0)
    return io_error (error, errno, "cannot remove", json);
  if (unlink (eml) != 0 && errno != ENOENT)
    return io_error (error, errno, "cannot remove", eml);
  return fsync_dir (dir, error);
}
