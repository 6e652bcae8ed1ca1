/* SPDX-License-Identifier: MIT
 *
 * export.c — write one exported file atomically: a temporary file in the
 * target directory (mode 0600 from creation, never world-readable even for
 * a moment), fsync, then moved to ID.SUFFIX with link(2) + unlink, which
 * unlike rename(2) never replaces an earlier export of the same id (EEXIST:
 * try ID.N.SUFFIX).  The id is validated: it becomes a file name.
 */
#include "vps/export.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK (vps - export - error - quark, vps_export_error)

static gboolean
id_valid (const char *id)
{
  gsize len = id ? strlen (id) : 0;

  if (len == 0 || len > VPS_EXPORT_MAX_ID || id[0] == '.')
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
      return FALSE;
  return TRUE;
}

static gboolean
write_all (int fd, const guint8 *p, gsize len, GError **error)
{
  while (len > 0)
    {
      gssize n = write (fd, p, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;
          g_set_error (error, VPS_EXPORT_ERROR, VPS_EXPORT_ERROR_IO, "write: %s",
                       g_strerror (saved));
          return FALSE;
        }
      p += n;
      len -= (gsize)n;
    }
  return TRUE;
}

gboolean
vps_export_write (const char *dir, const char *id, const char *suffix, GBytes *data,
                  char **out_path, GError **error)
{
  g_autofree char *tmp = NULL;
  gsize len = 0;
  const guint8 *p;
  int fd;

  if (!id_valid (id) || dir == NULL || data == NULL)
    {
      g_set_error (error, VPS_EXPORT_ERROR, VPS_EXPORT_ERROR_INVALID, "invalid export id '%s'",
                   id ? id : "");
      return FALSE;
    }
  if (g_mkdir_with_parents (dir, 0700) < 0)
    {
      int saved = errno;
      g_set_error (error, VPS_EXPORT_ERROR, VPS_EXPORT_ERROR_IO, "%s: %s", dir, g_strerror (saved));
      return FALSE;
    }
  tmp = g_build_filename (dir, ".tmp-XXXXXX", NULL);
  fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      int saved = errno;
      g_set_error (error, VPS_EXPORT_ERROR, VPS_EXPORT_ERROR_IO, "%s: %s", tmp, g_strerror (saved));
      return FALSE;
    }
  p = g_bytes_get_data (data, &len);
  if (!write_all (fd, p, len, error) || fsync (fd) < 0)
    {
      int saved = errno;
      if (error != NULL && *error == NULL)
        g_set_error (error, VPS_EXPORT_ERROR, VPS_EXPORT_ERROR_IO, "fsync %s: %s", tmp,
                     g_strerror (saved));
      close (fd);
      g_unlink (tmp);
      return FALSE;
    }
  close (fd);

  for (guint n = 0; n < VPS_EXPORT_MAX_COLLISIONS; n++)
    {
      g_autofree char *base = n == 0 ? g_strdup_printf ("%s.%s", id, suffix)
                                     : g_strdup_printf ("%s.%u.%s", id, n, suffix);
      g_autofree char *path = g_build_filename (dir, base, NULL);

      /* link() refuses to replace: an earlier export of the same id stays */
      if (link (tmp, path) == 0)
        {
          g_unlink (tmp);
          if (out_path != NULL)
            *out_path = g_steal_pointer (&path);
          return TRUE;
        }
      if (errno != EEXIST)
        {
          int saved = errno;
          g_set_error (error, VPS_EXPORT_ERROR, VPS_EXPORT_ERROR_IO, "%s: %s", path,
                       g_strerror (saved));
          g_unlink (tmp);
          return FALSE;
        }
    }
  g_unlink (tmp);
  g_set_error (error, VPS_EXPORT_ERROR, VPS_EXPORT_ERROR_IO, "%s: too many exports with id %s", dir,
               id);
  return FALSE;
}

gboolean
vps_export_write_json (const char *dir, const char *id, JsonObject *object, char **out_path,
                       GError **error)
{
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (GBytes) bytes = NULL;
  gsize len = 0;
  char *text;

  json_node_set_object (node, object);
  json_generator_set_root (gen, node);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, &len);
  bytes = g_bytes_new_take (text, len);
  return vps_export_write (dir, id, "json", bytes, out_path, error);
}
