/* SPDX-License-Identifier: MIT
 *
 * policy-request.c — the POLICY_ERROR quark, protocol_state names, the
 * PolicyRequest object (ordered attributes + hash lookup + typed helpers)
 * and the request encoders of the Postfix policy delegation protocol
 * (SMTPD_POLICY_README).
 *
 * Contract: every attribute stored in a PolicyRequest has a name of
 * [a-z0-9_]{1,POLICY_MAX_NAME} and a value without NUL or LF, is unique in
 * its request, and the request holds at most POLICY_MAX_ATTRS of them —
 * whether it came from the parser or from policy_request_add().  So
 * policy_request_encode() cannot produce a line the peer would split
 * differently, and never fails.
 */
#include <string.h>

#include "policy-private.h"

G_DEFINE_QUARK (policy - error - quark, policy_error)

/* ---- protocol_state ----------------------------------------------------- */

static const struct
{
  PolicyState state;
  const char *name;
} policy_states[] = {
  { POLICY_STATE_CONNECT, "CONNECT" }, { POLICY_STATE_EHLO, "EHLO" },
  { POLICY_STATE_HELO, "HELO" },       { POLICY_STATE_MAIL, "MAIL" },
  { POLICY_STATE_RCPT, "RCPT" },       { POLICY_STATE_DATA, "DATA" },
  { POLICY_STATE_BDAT, "BDAT" },       { POLICY_STATE_END_OF_MESSAGE, "END-OF-MESSAGE" },
  { POLICY_STATE_VRFY, "VRFY" },       { POLICY_STATE_ETRN, "ETRN" },
};

PolicyState
policy_state_from_string (const char *s, gssize slen)
{
  gsize len;

  if (s == NULL)
    return POLICY_STATE_UNKNOWN;
  len = slen < 0 ? strlen (s) : (gsize)slen;
  for (gsize i = 0; i < G_N_ELEMENTS (policy_states); i++)
    {
      const char *name = policy_states[i].name;

      if (strlen (name) == len && g_ascii_strncasecmp (name, s, len) == 0)
        return policy_states[i].state;
    }
  return POLICY_STATE_UNKNOWN;
}

const char *
policy_state_to_string (PolicyState state)
{
  for (gsize i = 0; i < G_N_ELEMENTS (policy_states); i++)
    if (policy_states[i].state == state)
      return policy_states[i].name;
  return "UNKNOWN";
}

/* ---- checks shared with the parsers ------------------------------------- */

static inline gboolean
policy_is_name_char (guchar c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

gboolean
policy_check_name (const char *name, gssize slen, GError **error)
{
  gsize len = slen < 0 ? strlen (name) : (gsize)slen;

  if (len == 0)
    {
      g_set_error_literal (error, POLICY_ERROR, POLICY_ERROR_EMPTY_NAME, "empty attribute name");
      return FALSE;
    }
  if (len > POLICY_MAX_NAME)
    {
      g_set_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG,
                   "attribute name longer than %d bytes", POLICY_MAX_NAME);
      return FALSE;
    }
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar)name[i];

      if (c == '\0')
        {
          g_set_error (error, POLICY_ERROR, POLICY_ERROR_NUL,
                       "NUL in attribute name at offset %" G_GSIZE_FORMAT, i);
          return FALSE;
        }
      if (!policy_is_name_char (c))
        {
          /* Never echo the byte itself: it may be a control character. */
          g_set_error (error, POLICY_ERROR, POLICY_ERROR_NAME_CHAR,
                       "invalid byte 0x%02x in attribute name at offset %" G_GSIZE_FORMAT, c, i);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
policy_split_line (const char *line, gsize len, const char **name, gsize *name_len,
                   const char **value, gsize *value_len, GError **error)
{
  const char *eq;

  /* NUL first: a NUL after the '=' would otherwise pass as value bytes and
   * truncate the value silently wherever it is used as a C string. */
  if (memchr (line, '\0', len) != NULL)
    {
      g_set_error_literal (error, POLICY_ERROR, POLICY_ERROR_NUL, "NUL byte in a line");
      return FALSE;
    }
  eq = memchr (line, '=', len);
  if (eq == NULL)
    {
      g_set_error_literal (error, POLICY_ERROR, POLICY_ERROR_NO_EQUALS,
                           "line without '=' (expected name=value)");
      return FALSE;
    }
  if (!policy_check_name (line, eq - line, error))
    return FALSE;
  *name = line;
  *name_len = eq - line;
  *value = eq + 1;
  *value_len = len - *name_len - 1;
  return TRUE;
}

static gboolean
policy_check_value (const char *value, gsize len, GError **error)
{
  for (gsize i = 0; i < len; i++)
    {
      if (value[i] == '\0')
        {
          g_set_error (error, POLICY_ERROR, POLICY_ERROR_NUL,
                       "NUL in attribute value at offset %" G_GSIZE_FORMAT, i);
          return FALSE;
        }
      /* A CR is refused too: the peer drops one before LF, so a value
       * ending in CR would not survive the round trip. */
      if (value[i] == '\n' || value[i] == '\r')
        {
          g_set_error (error, POLICY_ERROR, POLICY_ERROR_NEWLINE,
                       "line break in attribute value at offset %" G_GSIZE_FORMAT, i);
          return FALSE;
        }
    }
  return TRUE;
}

/* The whole "name=value\n" line must fit the peer's line limit. */
static gboolean
policy_check_attr (const char *name, const char *value, gsize *out_vlen, GError **error)
{
  gsize nlen = strlen (name);
  gsize vlen = strlen (value);

  if (!policy_check_name (name, nlen, error) || !policy_check_value (value, vlen, error))
    return FALSE;
  if (nlen + 1 + vlen + 1 > POLICY_MAX_LINE)
    {
      g_set_error (error, POLICY_ERROR, POLICY_ERROR_LINE_TOO_LONG,
                   "attribute %s: line longer than %d bytes", name, POLICY_MAX_LINE);
      return FALSE;
    }
  *out_vlen = vlen;
  return TRUE;
}

/* ---- the request object ------------------------------------------------- */

typedef struct
{
  const char *name;  /* in the request's string chunk */
  const char *value; /* likewise */
  guint32 hash;      /* of name, to skip most comparisons */
} PolicyAttr;

/* A request is parsed once per SMTP event and read a few dozen times: the
 * strings go into one GStringChunk (strings never move, so returned
 * pointers stay valid) and look-ups scan ~30 attributes by hash — cheaper
 * than a hash table plus an allocation per attribute. */
struct _PolicyRequest
{
  GArray *attrs;         /* PolicyAttr, wire order */
  GStringChunk *strings; /* "name\0value\0" of every attribute */
};

static guint32
name_hash (const char *s, gsize len)
{
  guint32 h = 5381;

  for (gsize i = 0; i < len; i++)
    h = h * 33 + (guchar)s[i];
  return h;
}

static void
policy_request_free (PolicyRequest *req)
{
  g_array_unref (req->attrs);
  g_string_chunk_free (req->strings);
}

PolicyRequest *
policy_request_new (void)
{
  PolicyRequest *req = g_rc_box_new0 (PolicyRequest);

  /* Postfix 3.7 sends 31 attributes of about 1 KiB in all. */
  req->attrs = g_array_sized_new (FALSE, FALSE, sizeof (PolicyAttr), 32);
  req->strings = g_string_chunk_new (2048);
  return req;
}

PolicyRequest *
policy_request_ref (PolicyRequest *req)
{
  g_return_val_if_fail (req != NULL, NULL);
  return g_rc_box_acquire (req);
}

void
policy_request_unref (PolicyRequest *req)
{
  if (req != NULL)
    g_rc_box_release_full (req, (GDestroyNotify)policy_request_free);
}

gboolean
policy_request_add_len (PolicyRequest *req, const char *name, gsize name_len, const char *value,
                        gsize value_len, guint max_attrs, GError **error)
{
  PolicyAttr a;

  if (req->attrs->len >= max_attrs)
    {
      g_set_error (error, POLICY_ERROR, POLICY_ERROR_TOO_MANY_ATTRS,
                   "more than %u attributes in one request", max_attrs);
      return FALSE;
    }
  a.hash = name_hash (name, name_len);
  for (guint i = 0; i < req->attrs->len; i++)
    {
      const PolicyAttr *b = &g_array_index (req->attrs, PolicyAttr, i);

      if (b->hash == a.hash && strlen (b->name) == name_len
          && memcmp (b->name, name, name_len) == 0)
        {
          /* The name is validated [a-z0-9_]: safe to show. */
          g_set_error (error, POLICY_ERROR, POLICY_ERROR_DUPLICATE, "duplicate attribute %s",
                       b->name);
          return FALSE;
        }
    }
  a.name = g_string_chunk_insert_len (req->strings, name, name_len);
  a.value = g_string_chunk_insert_len (req->strings, value, value_len);
  g_array_append_val (req->attrs, a);
  return TRUE;
}

gboolean
policy_request_add (PolicyRequest *req, const char *name, const char *value, GError **error)
{
  gsize vlen;

  g_return_val_if_fail (req != NULL && name != NULL, FALSE);

  if (value == NULL)
    value = "";
  if (!policy_check_attr (name, value, &vlen, error))
    return FALSE;
  return policy_request_add_len (req, name, strlen (name), value, vlen, POLICY_MAX_ATTRS, error);
}

guint
policy_request_get_n_attrs (const PolicyRequest *req)
{
  g_return_val_if_fail (req != NULL, 0);
  return req->attrs->len;
}

const char *
policy_request_get_name (const PolicyRequest *req, guint i)
{
  g_return_val_if_fail (req != NULL && i < req->attrs->len, NULL);
  return g_array_index (req->attrs, PolicyAttr, i).name;
}

const char *
policy_request_get_value (const PolicyRequest *req, guint i)
{
  g_return_val_if_fail (req != NULL && i < req->attrs->len, NULL);
  return g_array_index (req->attrs, PolicyAttr, i).value;
}

const char *
policy_request_lookup (const PolicyRequest *req, const char *name)
{
  gsize len;
  guint32 hash;

  g_return_val_if_fail (req != NULL && name != NULL, NULL);
  len = strlen (name);
  hash = name_hash (name, len);
  for (guint i = 0; i < req->attrs->len; i++)
    {
      const PolicyAttr *a = &g_array_index (req->attrs, PolicyAttr, i);

      if (a->hash == hash && strcmp (a->name, name) == 0)
        return a->value;
    }
  return NULL;
}

gboolean
policy_request_has_value (const PolicyRequest *req, const char *name)
{
  const char *v = policy_request_lookup (req, name);

  return v != NULL && *v != '\0';
}

PolicyState
policy_request_get_state (const PolicyRequest *req)
{
  return policy_state_from_string (policy_request_lookup (req, POLICY_ATTR_PROTOCOL_STATE), -1);
}

#define POLICY_GETTER(fn, attr)                                                                    \
  const char *fn (const PolicyRequest *req)                                                        \
  {                                                                                                \
    return policy_request_lookup (req, attr);                                                      \
  }

POLICY_GETTER (policy_request_get_request, POLICY_ATTR_REQUEST)
POLICY_GETTER (policy_request_get_instance, POLICY_ATTR_INSTANCE)
POLICY_GETTER (policy_request_get_client_address, POLICY_ATTR_CLIENT_ADDRESS)
POLICY_GETTER (policy_request_get_client_name, POLICY_ATTR_CLIENT_NAME)
POLICY_GETTER (policy_request_get_helo_name, POLICY_ATTR_HELO_NAME)
POLICY_GETTER (policy_request_get_sender, POLICY_ATTR_SENDER)
POLICY_GETTER (policy_request_get_recipient, POLICY_ATTR_RECIPIENT)
POLICY_GETTER (policy_request_get_queue_id, POLICY_ATTR_QUEUE_ID)
POLICY_GETTER (policy_request_get_sasl_username, POLICY_ATTR_SASL_USERNAME)

/* 20 digits hold every guint64 and some that overflow: checked below. */
#define POLICY_MAX_NUMBER_DIGITS 20

gboolean
policy_request_get_number (const PolicyRequest *req, const char *name, guint64 max, guint64 *out)
{
  const char *v = policy_request_lookup (req, name);
  gsize len;
  guint64 n = 0;

  if (v == NULL)
    return FALSE;
  len = strlen (v);
  if (len == 0 || len > POLICY_MAX_NUMBER_DIGITS)
    return FALSE;
  /* Plain digits only: strtoull would take a sign, spaces and "0x". */
  for (gsize i = 0; i < len; i++)
    {
      guint d;

      if (!g_ascii_isdigit (v[i]))
        return FALSE;
      d = v[i] - '0';
      if (n > (G_MAXUINT64 - d) / 10)
        return FALSE;
      n = n * 10 + d;
    }
  if (n > max)
    return FALSE;
  *out = n;
  return TRUE;
}

gboolean
policy_request_get_size (const PolicyRequest *req, guint64 *out)
{
  return policy_request_get_number (req, POLICY_ATTR_SIZE, G_MAXUINT64, out);
}

/* ---- encoding ----------------------------------------------------------- */

void
policy_request_encode (const PolicyRequest *req, GString *out)
{
  g_return_if_fail (req != NULL && out != NULL);

  for (guint i = 0; i < req->attrs->len; i++)
    {
      const PolicyAttr *a = &g_array_index (req->attrs, PolicyAttr, i);

      g_string_append (out, a->name);
      g_string_append_c (out, '=');
      g_string_append (out, a->value);
      g_string_append_c (out, '\n');
    }
  g_string_append_c (out, '\n');
}

gboolean
policy_encode_attr (GString *out, const char *name, const char *value, GError **error)
{
  gsize vlen;

  g_return_val_if_fail (out != NULL && name != NULL, FALSE);

  if (value == NULL)
    value = "";
  if (!policy_check_attr (name, value, &vlen, error))
    return FALSE;
  g_string_append (out, name);
  g_string_append_c (out, '=');
  g_string_append_len (out, value, vlen);
  g_string_append_c (out, '\n');
  return TRUE;
}

void
policy_encode_end (GString *out)
{
  g_return_if_fail (out != NULL);
  g_string_append_c (out, '\n');
}
