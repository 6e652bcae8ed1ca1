/* SPDX-License-Identifier: MIT
 *
 * queue-recover.c — what vps_queue_open() does to a spool a crash may have
 * left half-written (contract: queue.h, "Recovery"): a rewrite cut
 * between its renames is finished, the rest of tmp/ emptied, an
 * .eml without its .json is an incomplete commit and goes, an envelope
 * that does not read back, names another id, lacks its message or
 * disagrees with its size goes to corrupt/ with one log line per file,
 * and new ids are kept above every id found.
 */
#include "mta/queue-private.h"
#include "vps/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- recovery ------------------------------------------------------------------ */

static gboolean check_entry (VpsQueue *q, const char *area, const char *id, GError **error);

/* A rewrite (vps_queue_rewrite_message) cut between its two renames left
 * the new message in incoming/ beside the old envelope, whose size no
 * longer matches, and the new envelope in tmp/: finish it.  Only then:
 * the tmp/ envelope must read back, name the id and give the new
 * message's size, and the one in incoming/ must not (any other tmp/
 * envelope is an update that never happened, or the old half of one that
 * did). */
static gboolean
finish_rewrite (VpsQueue *q, const char *name)
{
  char id[VPS_QUEUE_ID_LEN + 1];
  gboolean is_json;
  g_autofree char *tmp_json = NULL;
  g_autofree char *dst_json = NULL;
  g_autofree char *eml = NULL;
  g_autoptr (GBytes) data = NULL;
  g_autoptr (VpsEnvelope) env = NULL;
  struct stat st;

  if (!vps_queue_split_name (name, id, &is_json) || !is_json)
    return FALSE;
  eml = vps_queue_path (q, "incoming", id, ".eml");
  dst_json = vps_queue_path (q, "incoming", id, ".json");
  tmp_json = vps_queue_path (q, "tmp", id, ".json");
  if (stat (eml, &st) != 0 || access (dst_json, F_OK) != 0 || check_entry (q, "incoming", id, NULL))
    return FALSE;
  data = vps_queue_read_bounded (tmp_json, VPS_QUEUE_MAX_ENVELOPE, NULL);
  env = data ? vps_envelope_from_file_data (id, data, NULL) : NULL;
  if (env == NULL || env->size != (guint64)st.st_size || rename (tmp_json, dst_json) != 0)
    return FALSE;
  vps_notice (id, "queue: %s: finished an interrupted rewrite (tmp/%s)", id, name);
  return TRUE;
}

static void
recover_tmp (VpsQueue *q, GPtrArray *names)
{
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      g_autofree char *path = vps_queue_path (q, "tmp", name, NULL);
      g_autofree char *id = g_strndup (name, VPS_QUEUE_ID_LEN);
      const char *log_id = vps_queue_valid_id (id) ? id : NULL;

      if (finish_rewrite (q, name))
        continue;
      if (unlink (path) == 0)
        vps_notice (log_id, "queue: %s: removed tmp/%s: incomplete message", log_id ? log_id : "-",
                    name);
      else
        vps_warning (log_id, "queue: %s: cannot remove tmp/%s: %s", log_id ? log_id : "-", name,
                     g_strerror (errno));
    }
}

static void
move_to_corrupt (VpsQueue *q, const char *area, const char *id, const char *ext, const char *reason)
{
  g_autofree char *from = vps_queue_path (q, area, id, ext);
  g_autofree char *to = vps_queue_path (q, "corrupt", id, ext);

  if (rename (from, to) == 0)
    vps_warning (id, "queue: %s: moved to corrupt/: %s (%s/%s%s)", id, reason, area, id, ext);
  else
    vps_warning (id, "queue: %s: cannot move %s/%s%s to corrupt/ (%s): %s", id, area, id, ext,
                 reason, g_strerror (errno));
}

/* Both files are there: does the envelope read, name this id, and give
 * the message's size? */
static gboolean
check_entry (VpsQueue *q, const char *area, const char *id, GError **error)
{
  g_autofree char *json = vps_queue_path (q, area, id, ".json");
  g_autofree char *eml = vps_queue_path (q, area, id, ".eml");
  g_autoptr (GBytes) data = vps_queue_read_bounded (json, VPS_QUEUE_MAX_ENVELOPE, error);
  g_autoptr (VpsEnvelope) env = NULL;
  struct stat st;

  if (data == NULL)
    return FALSE;
  env = vps_envelope_from_data (g_bytes_get_data (data, NULL), g_bytes_get_size (data), error);
  if (env == NULL)
    return FALSE;
  if (strcmp (env->id, id) != 0)
    {
      g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT, "envelope of %s", env->id);
      return FALSE;
    }
  if (stat (eml, &st) != 0)
    return vps_queue_errno_error (error, errno, "stat", eml);
  if ((guint64)st.st_size != env->size)
    {
      g_set_error (error, VPS_QUEUE_ERROR, VPS_QUEUE_ERROR_CORRUPT,
                   "message has %" G_GUINT64_FORMAT " bytes, envelope says %" G_GUINT64_FORMAT,
                   (guint64)st.st_size, env->size);
      return FALSE;
    }
  return TRUE;
}

enum
{
  HAS_EML = 1,
  HAS_JSON = 2,
};

static void
recover_area (VpsQueue *q, const char *area, GPtrArray *names)
{
  g_autoptr (GHashTable) found = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autofree gpointer *ids = NULL;
  guint n_ids;

  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      char id[VPS_QUEUE_ID_LEN + 1];
      gboolean is_json;
      guint flags;

      if (!vps_queue_split_name (name, id, &is_json))
        {
          vps_warning (NULL, "queue: ignoring %s/%s: not a queue file", area, name);
          continue;
        }
      vps_queue_raise_id_floor ((gint64)g_ascii_strtoull (id, NULL, 16));
      flags = GPOINTER_TO_UINT (g_hash_table_lookup (found, id));
      g_hash_table_insert (found, g_strdup (id),
                           GUINT_TO_POINTER (flags | (is_json ? HAS_JSON : HAS_EML)));
    }
  ids = g_hash_table_get_keys_as_array (found, &n_ids);
  qsort (ids, n_ids, sizeof *ids, vps_queue_compare_names); /* oldest first in the log */
  for (guint i = 0; i < n_ids; i++)
    {
      const char *id = ids[i];
      guint flags = GPOINTER_TO_UINT (g_hash_table_lookup (found, id));
      g_autoptr (GError) error = NULL;

      if (flags == HAS_EML)
        {
          /* the commit point (the envelope's rename) was never reached */
          g_autofree char *eml = vps_queue_path (q, area, id, ".eml");

          if (unlink (eml) == 0)
            vps_notice (id, "queue: %s: removed %s/%s.eml: incomplete commit (no envelope)", id,
                        area, id);
          else
            vps_warning (id, "queue: %s: cannot remove %s/%s.eml: %s", id, area, id,
                         g_strerror (errno));
        }
      else if (flags == HAS_JSON)
        move_to_corrupt (q, area, id, ".json", "envelope without message");
      else if (!check_entry (q, area, id, &error))
        {
          /* the message first: an envelope left alone is moved by the next
           * recovery, a message left alone would be removed */
          move_to_corrupt (q, area, id, ".eml", error->message);
          move_to_corrupt (q, area, id, ".json", error->message);
        }
    }
}

gboolean
vps_queue_recover (VpsQueue *q, GError **error)
{
  for (gsize i = 0; i < VPS_QUEUE_N_SPOOL_DIRS; i++)
    {
      const char *dir = vps_queue_spool_dirs[i];
      g_autofree char *path = vps_queue_path (q, dir, NULL, NULL);
      g_autoptr (GPtrArray) names = vps_queue_list_names (path, error);

      if (names == NULL)
        return FALSE;
      if (strcmp (dir, "tmp") == 0)
        recover_tmp (q, names);
      else if (strcmp (dir, "corrupt") != 0)
        recover_area (q, dir, names);
      else
        for (guint k = 0; k < names->len; k++)
          {
            char id[VPS_QUEUE_ID_LEN + 1];
            gboolean is_json;

            if (vps_queue_split_name (g_ptr_array_index (names, k), id, &is_json))
              vps_queue_raise_id_floor ((gint64)g_ascii_strtoull (id, NULL, 16));
          }
    }
  /* what recovery removed or moved stays so after the next crash */
  for (gsize i = 0; i < VPS_QUEUE_N_SPOOL_DIRS; i++)
    {
      g_autofree char *path = vps_queue_path (q, vps_queue_spool_dirs[i], NULL, NULL);

      if (!vps_queue_fsync_dir (path, error))
        return FALSE;
    }
  return TRUE;
}
