/* SPDX-License-Identifier: MIT
 *
 * delivery-remote-maps.c — what remote delivery reads from outside the
 * SMTP session: relay targets as routes write them, the envelope's DSN
 * values, and the files it consults at each delivery (read again only
 * when they change): [delivery] tls_policy_map (`DESTINATION POLICY` lines) and
 * relay_auth_file (`[host]:port user password` lines, refused when group or
 * others may access it).  Bounded (VPS_REMOTE_MAX_MAP_*), every error as
 * FILE:LINE; a file that does not load defers remote delivery rather than
 * falling back to a weaker policy or to no AUTH.
 */
#include "mta/delivery-remote-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mta/smtp-out.h"

static void
remote_auth_free (gpointer data)
{
  RemoteAuth *a = data;

  g_free (a->user);
  if (a->password != NULL)
    memset (a->password, 0, strlen (a->password)); /* do not leave it in freed memory */
  g_free (a->password);
  g_free (a);
}

char *
vps_remote_relay_key (const char *host, guint16 port, gboolean mx_lookup)
{
  g_autofree char *lower = g_ascii_strdown (host, -1);

  return mx_lookup ? g_strdup_printf ("%s:%u", lower, port)
                   : g_strdup_printf ("[%s]:%u", lower, port);
}

/* Reads a map file whole: bounded size, regular file.  With private, the
 * file must not be accessible by group or others (it holds passwords). */
static char *
read_map_file (const char *path, gboolean private, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  struct stat st;
  g_autofree char *data = NULL;
  gsize got = 0;

  if (fd < 0)
    {
      int e = errno;

      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP, "%s: %s", path, g_strerror (e));
      return NULL;
    }
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    {
      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP, "%s: not a regular file", path);
      close (fd);
      return NULL;
    }
  if (private && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    {
      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MODE,
                   "%s: holds passwords but is accessible by group or others (mode %04o; "
                   "chmod 600 it)",
                   path, (unsigned)(st.st_mode & 07777));
      close (fd);
      return NULL;
    }
  if (st.st_size > VPS_REMOTE_MAX_MAP_SIZE)
    {
      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP, "%s: larger than %d octets", path,
                   VPS_REMOTE_MAX_MAP_SIZE);
      close (fd);
      return NULL;
    }
  data = g_malloc ((gsize)st.st_size + 1);
  while (got < (gsize)st.st_size)
    {
      ssize_t n = read (fd, data + got, (gsize)st.st_size - got);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      got += (gsize)n;
    }
  close (fd);
  data[got] = '\0';
  if (memchr (data, '\0', got) != NULL)
    {
      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP, "%s: contains a NUL octet", path);
      return NULL;
    }
  return g_steal_pointer (&data);
}

/* The next field of *p (blank-separated), or NULL at the end. */
static char *
next_field (char **p)
{
  char *start = *p;

  while (*start == ' ' || *start == '\t')
    start++;
  if (*start == '\0')
    return NULL;
  *p = start;
  while (**p != '\0' && **p != ' ' && **p != '\t')
    (*p)++;
  if (**p != '\0')
    *(*p)++ = '\0';
  return start;
}

/* DESTINATION as a map key: a domain, or a relay target. */
static char *
map_key (const char *dest)
{
  g_autofree char *host = NULL;
  guint16 port = 25;
  gboolean mx_lookup = TRUE;

  if (strchr (dest, '[') == NULL && strchr (dest, ':') == NULL)
    return strlen (dest) <= VPS_REMOTE_MAX_TARGET ? g_ascii_strdown (dest, -1) : NULL;
  if (!vps_remote_parse_target (dest, &host, &port, &mx_lookup))
    return NULL;
  return vps_remote_relay_key (host, port, mx_lookup);
}

typedef gboolean (*MapLineFunc) (GHashTable *map, char *key, char *rest, GError **error);

static GHashTable *parse_map (char *data, const char *path, GDestroyNotify value_free,
                              MapLineFunc line_func, GError **error);

static GHashTable *
load_map (const char *path, gboolean private, GDestroyNotify value_free, MapLineFunc line_func,
          GError **error)
{
  g_autofree char *data = read_map_file (path, private, error);
  g_autoptr (GHashTable) map = NULL;
  gsize size = data ? strlen (data) : 0;
  GHashTable *result;

  if (data == NULL)
    return NULL;
  result = parse_map (data, path, value_free, line_func, error);
  if (private)
    memset (data, 0, size); /* the passwords: not left in freed memory */
  return result;
}

static GHashTable *
parse_map (char *data, const char *path, GDestroyNotify value_free, MapLineFunc line_func,
           GError **error)
{
  g_autoptr (GHashTable) map = NULL;
  char *line;
  char *save = NULL;
  guint lineno = 0;

  map = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, value_free);
  /* strtok_r would merge empty lines and miscount: split by hand */
  for (line = data; line != NULL; line = save)
    {
      char *nl = strchr (line, '\n');
      g_autoptr (GError) local = NULL;
      char *p = line;
      char *dest;
      char *key;

      save = nl ? nl + 1 : NULL;
      if (nl != NULL)
        *nl = '\0';
      lineno++;
      if (nl != NULL && nl > line && nl[-1] == '\r')
        nl[-1] = '\0';
      if (strlen (line) > VPS_REMOTE_MAX_MAP_LINE)
        {
          g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP,
                       "%s:%u: line longer than %d octets", path, lineno, VPS_REMOTE_MAX_MAP_LINE);
          return NULL;
        }
      dest = next_field (&p);
      if (dest == NULL || dest[0] == '#')
        continue;
      if (g_hash_table_size (map) >= VPS_REMOTE_MAX_MAP_ENTRIES)
        {
          g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP, "%s:%u: more than %d entries",
                       path, lineno, VPS_REMOTE_MAX_MAP_ENTRIES);
          return NULL;
        }
      key = map_key (dest);
      if (key == NULL)
        {
          g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP,
                       "%s:%u: bad destination (expected a domain or [HOST]:PORT)", path, lineno);
          return NULL;
        }
      if (!line_func (map, key, p, &local))
        {
          g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP, "%s:%u: %s", path, lineno,
                       local->message);
          return NULL;
        }
    }
  return g_steal_pointer (&map);
}

static gboolean
tls_map_line (GHashTable *map, char *key, char *rest, GError **error)
{
  char *name = next_field (&rest);
  VpsSmtpOutTlsPolicy policy;

  if (name == NULL || !vps_smtp_out_tls_policy_from_name (name, &policy))
    {
      g_free (key);
      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP,
                   "expected a policy: none, may, encrypt or verify");
      return FALSE;
    }
  if (next_field (&rest) != NULL)
    {
      g_free (key);
      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP, "extra text after the policy");
      return FALSE;
    }
  g_hash_table_replace (map, key, GINT_TO_POINTER ((int)policy + 1));
  return TRUE;
}

static gboolean
auth_line (GHashTable *map, char *key, char *rest, GError **error)
{
  char *user = next_field (&rest);
  char *password = next_field (&rest);
  RemoteAuth *a;

  if (key[0] != '[')
    {
      g_free (key);
      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP,
                   "expected a relay target [HOST]:PORT");
      return FALSE;
    }
  if (user == NULL || password == NULL || next_field (&rest) != NULL)
    {
      g_free (key);
      g_set_error (error, VPS_REMOTE_ERROR, VPS_REMOTE_ERROR_MAP,
                   "expected [HOST]:PORT USER PASSWORD");
      return FALSE;
    }
  a = g_new0 (RemoteAuth, 1);
  a->user = g_strdup (user);
  a->password = g_strdup (password);
  g_hash_table_replace (map, key, a);
  return TRUE;
}

/* Loads [delivery] tls_policy_map and relay_auth_file of cfg (NULL when
 * unset); FALSE with FILE:LINE in error when one does not load. */
/* The last good load of each file, reused while the file is unchanged:
 * deliveries ask for the maps every time, the disk is read only when an
 * admin edited the file (a new mtime, size, inode or mode — the mode
 * matters for the credentials' permission check).  The tables are never
 * changed once built, so callers share them by reference. */
typedef struct
{
  char *path;
  struct stat st;
  GHashTable *map;
} MapCache;

static GMutex map_cache_lock;
static MapCache map_caches[2]; /* [0] tls_policy_map, [1] relay_auth_file */

static gboolean
same_file (const struct stat *a, const struct stat *b)
{
  return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size
         && a->st_mode == b->st_mode && a->st_mtim.tv_sec == b->st_mtim.tv_sec
         && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static GHashTable *
cached_map (MapCache *c, const char *path, gboolean private, GDestroyNotify value_free,
            MapLineFunc line_func, GError **error)
{
  struct stat st;
  GHashTable *map;

  g_mutex_lock (&map_cache_lock);
  if (c->map != NULL && g_strcmp0 (c->path, path) == 0 && stat (path, &st) == 0
      && same_file (&st, &c->st))
    {
      map = g_hash_table_ref (c->map);
      g_mutex_unlock (&map_cache_lock);
      return map;
    }
  /* stat before the read: an edit racing the read is seen next time */
  if (stat (path, &st) != 0)
    memset (&st, 0, sizeof st);
  map = load_map (path, private, value_free, line_func, error);
  g_clear_pointer (&c->map, g_hash_table_unref);
  g_free (c->path);
  c->path = g_strdup (path);
  c->st = st;
  c->map = map != NULL ? g_hash_table_ref (map) : NULL;
  g_mutex_unlock (&map_cache_lock);
  return map;
}

gboolean
vps_remote_load_maps (VpsConfig *cfg, GHashTable **tls_map, GHashTable **auth, GError **error)
{
  const char *map_path = vps_config_get_path_value (cfg, "delivery", "tls_policy_map");
  const char *auth_path = vps_config_get_path_value (cfg, "delivery", "relay_auth_file");

  *tls_map = NULL;
  *auth = NULL;
  if (map_path != NULL
      && (*tls_map = cached_map (&map_caches[0], map_path, FALSE, NULL, tls_map_line, error))
             == NULL)
    return FALSE;
  if (auth_path != NULL
      && (*auth = cached_map (&map_caches[1], auth_path, TRUE, remote_auth_free, auth_line, error))
             == NULL)
    {
      g_clear_pointer (tls_map, g_hash_table_unref);
      return FALSE;
    }
  return TRUE;
}

gboolean
vps_remote_check_config (VpsConfig *cfg, GError **error)
{
  g_autoptr (GHashTable) tls_map = NULL;
  g_autoptr (GHashTable) auth = NULL;

  return vps_remote_load_maps (cfg, &tls_map, &auth, error);
}

/* ---- targets and envelope values ---------------------------------------------- */

gboolean
vps_remote_parse_target (const char *target, char **host, guint16 *port, gboolean *mx_lookup)
{
  const char *end;
  const char *colon;
  guint64 p = 25;

  *host = NULL;
  if (target == NULL || *target == '\0' || strlen (target) > VPS_REMOTE_MAX_TARGET)
    return FALSE;
  if (target[0] == '[')
    {
      end = strchr (target, ']');
      if (end == NULL || end == target + 1)
        return FALSE;
      *mx_lookup = FALSE;
      *host = g_strndup (target + 1, end - target - 1);
      colon = end[1] == ':' ? end + 1 : NULL;
      if (end[1] != '\0' && colon == NULL)
        goto bad;
    }
  else
    {
      colon = strrchr (target, ':');
      if (colon == target)
        return FALSE;
      *mx_lookup = TRUE;
      *host = colon ? g_strndup (target, colon - target) : g_strdup (target);
    }
  if (colon != NULL && !g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &p, NULL))
    goto bad;
  *port = (guint16)p;
  return TRUE;
bad:
  g_clear_pointer (host, g_free);
  return FALSE;
}

SmtpRet
vps_remote_ret (const char *ret)
{
  if (ret != NULL && g_ascii_strcasecmp (ret, "FULL") == 0)
    return SMTP_RET_FULL;
  if (ret != NULL && g_ascii_strcasecmp (ret, "HDRS") == 0)
    return SMTP_RET_HDRS;
  return SMTP_RET_DEFAULT;
}

SmtpBody
vps_remote_body (const char *body)
{
  if (body == NULL)
    return SMTP_BODY_DEFAULT;
  if (g_ascii_strcasecmp (body, "8BITMIME") == 0)
    return SMTP_BODY_8BITMIME;
  if (g_ascii_strcasecmp (body, "BINARYMIME") == 0)
    return SMTP_BODY_BINARYMIME;
  return SMTP_BODY_7BIT;
}
