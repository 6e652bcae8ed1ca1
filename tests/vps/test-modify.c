/* SPDX-License-Identifier: MIT
 *
 * test-modify.c — each modification applied to a raw message (CRLF and LF
 * messages), validation of names and values (CR/LF/NUL refused), envelope
 * operations, op names.
 */
#include <string.h>
#include "vps/modify.h"

#define CRLF_MSG                                                                                   \
  "Received: from a\r\n by b\r\nFrom: a@example.net\r\nX-Old: 1\r\nSubject: hi\r\nX-Old: 2\r\n"    \
  "\r\nbody\r\n"

static char *
apply (const char *msg, VpsModOp op, const char *name, const char *value, gint index)
{
  g_autoptr (GPtrArray) mods
      = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_modification_free);
  g_autoptr (GBytes) raw = g_bytes_new (msg, strlen (msg));
  g_autoptr (GBytes) out = NULL;
  g_autoptr (GError) error = NULL;
  VpsModification *m = vps_modification_new (op, name, value, index, &error);

  g_assert_no_error (error);
  g_ptr_array_add (mods, m);
  out = vps_modify_apply_message (raw, mods, &error);
  g_assert_no_error (error);
  return g_strndup (g_bytes_get_data (out, NULL), g_bytes_get_size (out));
}

static void
test_apply (void)
{
  static const struct
  {
    VpsModOp op;
    const char *name, *value;
    gint index;
    const char *want;
  } cases[] = {
    { VPS_MOD_ADD_HEADER, "X-New", "v", 0,
      "Received: from a\r\n by b\r\nFrom: a@example.net\r\nX-Old: 1\r\nSubject: hi\r\n"
      "X-Old: 2\r\nX-New: v\r\n\r\nbody\r\n" },
    { VPS_MOD_INSERT_HEADER, "X-Top", "t", 0,
      "X-Top: t\r\nReceived: from a\r\n by b\r\nFrom: a@example.net\r\nX-Old: 1\r\n"
      "Subject: hi\r\nX-Old: 2\r\n\r\nbody\r\n" },
    { VPS_MOD_INSERT_HEADER, "X-Second", "s", 1,
      "Received: from a\r\n by b\r\nX-Second: s\r\nFrom: a@example.net\r\nX-Old: 1\r\n"
      "Subject: hi\r\nX-Old: 2\r\n\r\nbody\r\n" },
    { VPS_MOD_SET_HEADER, "x-old", "new", 0,
      "Received: from a\r\n by b\r\nFrom: a@example.net\r\nx-old: new\r\nSubject: hi\r\n"
      "\r\nbody\r\n" },
    { VPS_MOD_SET_HEADER, "X-Old", "second", 2,
      "Received: from a\r\n by b\r\nFrom: a@example.net\r\nX-Old: 1\r\nSubject: hi\r\n"
      "X-Old: second\r\n\r\nbody\r\n" },
    { VPS_MOD_SET_HEADER, "X-Absent", "added", 0,
      "Received: from a\r\n by b\r\nFrom: a@example.net\r\nX-Old: 1\r\nSubject: hi\r\n"
      "X-Old: 2\r\nX-Absent: added\r\n\r\nbody\r\n" },
    { VPS_MOD_REMOVE_HEADER, "X-OLD", NULL, 0,
      "Received: from a\r\n by b\r\nFrom: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n" },
    { VPS_MOD_REMOVE_HEADER, "Received", NULL, 0,
      "From: a@example.net\r\nX-Old: 1\r\nSubject: hi\r\nX-Old: 2\r\n\r\nbody\r\n" },
    { VPS_MOD_REMOVE_HEADER, "X-Old", NULL, 1,
      "Received: from a\r\n by b\r\nFrom: a@example.net\r\nSubject: hi\r\nX-Old: 2\r\n"
      "\r\nbody\r\n" },
    { VPS_MOD_REPLACE_BODY, NULL, "new\nbody\n", 0,
      "Received: from a\r\n by b\r\nFrom: a@example.net\r\nX-Old: 1\r\nSubject: hi\r\n"
      "X-Old: 2\r\n\r\nnew\r\nbody\r\n" },
    /* envelope ops leave the message alone */
    { VPS_MOD_SET_SENDER, NULL, "x@example.net", 0, CRLF_MSG },
    { VPS_MOD_QUARANTINE, "virus", NULL, 0, CRLF_MSG },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *out
          = apply (CRLF_MSG, cases[i].op, cases[i].name, cases[i].value, cases[i].index);
      g_assert_cmpstr (out, ==, cases[i].want);
    }
}

/* LF messages get LF lines; a message without body gets one when replaced */
static void
test_line_ends (void)
{
  g_autofree char *a = apply ("From: a\nSubject: s\n\nbody\n", VPS_MOD_ADD_HEADER, "X", "1", 0);
  g_autofree char *b = apply ("From: a\r\nSubject: s", VPS_MOD_ADD_HEADER, "X", "1", 0);
  g_autofree char *c = apply ("From: a\nSubject: s\n", VPS_MOD_REPLACE_BODY, NULL, "b\n", 0);

  g_assert_cmpstr (a, ==, "From: a\nSubject: s\nX: 1\n\nbody\n");
  g_assert_cmpstr (b, ==, "From: a\r\nSubject: s\r\nX: 1\r\n");
  g_assert_cmpstr (c, ==, "From: a\nSubject: s\n\nb\n");
}

/* a long value is folded, never split inside a word */
static void
test_fold (void)
{
  g_autoptr (GString) v = g_string_new (NULL);
  g_autofree char *out = NULL;

  for (int i = 0; i < 40; i++)
    g_string_append (v, i ? " word" : "word");
  out = apply ("A: b\r\n\r\n", VPS_MOD_ADD_HEADER, "X-Long", v->str, 0);
  g_assert_nonnull (strstr (out, "\r\n word"));
  for (char *l = out; (l = strstr (l, "\r\n")) != NULL; l += 2)
    g_assert_cmpint (strcspn (l + 2, "\r"), <=, 78);
}

static void
test_validate (void)
{
  static const struct
  {
    VpsModOp op;
    const char *name, *value;
    int code; /* -1: valid */
  } cases[] = {
    { VPS_MOD_ADD_HEADER, "X-Ok", "fine", -1 },
    { VPS_MOD_ADD_HEADER, "X-Ok", "a\r\nBcc: x@y", VPS_MODIFY_ERROR_INVALID_VALUE },
    { VPS_MOD_ADD_HEADER, "X-Ok", "a\nb", VPS_MODIFY_ERROR_INVALID_VALUE },
    { VPS_MOD_SET_HEADER, "X-Ok", "a\rb", VPS_MODIFY_ERROR_INVALID_VALUE },
    { VPS_MOD_INSERT_HEADER, "X-Ok", NULL, VPS_MODIFY_ERROR_INVALID_VALUE },
    { VPS_MOD_ADD_HEADER, "X:Bad", "v", VPS_MODIFY_ERROR_INVALID_NAME },
    { VPS_MOD_ADD_HEADER, "X Bad", "v", VPS_MODIFY_ERROR_INVALID_NAME },
    { VPS_MOD_ADD_HEADER, "", "v", VPS_MODIFY_ERROR_INVALID_NAME },
    { VPS_MOD_REMOVE_HEADER, NULL, NULL, VPS_MODIFY_ERROR_INVALID_NAME },
    { VPS_MOD_REMOVE_HEADER, "X-Old", NULL, -1 },
    { VPS_MOD_SET_SENDER, NULL, "", -1 },
    { VPS_MOD_SET_SENDER, NULL, "a@b\r\nRCPT TO:<x@y>", VPS_MODIFY_ERROR_INVALID_VALUE },
    { VPS_MOD_ADD_RCPT, NULL, "", VPS_MODIFY_ERROR_INVALID_VALUE },
    { VPS_MOD_REMOVE_RCPT, NULL, "a@b\n", VPS_MODIFY_ERROR_INVALID_VALUE },
    { VPS_MOD_REPLACE_BODY, NULL, "multi\r\nline", -1 },
    { VPS_MOD_QUARANTINE, "", NULL, VPS_MODIFY_ERROR_INVALID_NAME },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (VpsModification) m
          = vps_modification_new (cases[i].op, cases[i].name, cases[i].value, 0, &error);
      if (cases[i].code < 0)
        {
          g_assert_no_error (error);
          g_assert_nonnull (m);
        }
      else
        {
          g_assert_error (error, VPS_MODIFY_ERROR, cases[i].code);
          g_assert_null (m);
        }
    }
}

static void
test_malformed (void)
{
  g_autoptr (GBytes) raw = g_bytes_new_static ("", 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) out = vps_modify_apply_message (raw, NULL, &error);

  g_assert_null (out);
  g_assert_error (error, VPS_MODIFY_ERROR, VPS_MODIFY_ERROR_MALFORMED);
}

static void
test_envelope (void)
{
  g_autoptr (GPtrArray) mods
      = g_ptr_array_new_with_free_func ((GDestroyNotify)vps_modification_free);
  g_autoptr (GPtrArray) rcpts = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *sender = g_strdup ("old@example.net");

  g_ptr_array_add (rcpts, g_strdup ("a@example.org"));
  g_ptr_array_add (rcpts, g_strdup ("b@example.org"));
  g_ptr_array_add (mods,
                   vps_modification_new (VPS_MOD_SET_SENDER, NULL, "new@example.net", 0, NULL));
  g_ptr_array_add (mods, vps_modification_new (VPS_MOD_ADD_RCPT, NULL, "c@example.org", 0, NULL));
  g_ptr_array_add (mods, vps_modification_new (VPS_MOD_ADD_RCPT, NULL, "A@example.org", 0, NULL));
  g_ptr_array_add (mods,
                   vps_modification_new (VPS_MOD_REMOVE_RCPT, NULL, "B@EXAMPLE.ORG", 0, NULL));
  vps_modify_apply_envelope (mods, &sender, rcpts);
  g_assert_cmpstr (sender, ==, "new@example.net");
  g_assert_cmpuint (rcpts->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (rcpts, 0), ==, "a@example.org");
  g_assert_cmpstr (g_ptr_array_index (rcpts, 1), ==, "c@example.org");
}

static void
test_names (void)
{
  for (VpsModOp op = VPS_MOD_ADD_HEADER; op <= VPS_MOD_QUARANTINE; op++)
    {
      VpsModOp back;
      g_assert_true (vps_mod_op_from_name (vps_mod_op_name (op), &back));
      g_assert_cmpint (back, ==, op);
    }
  g_assert_cmpstr (vps_mod_op_name (VPS_MOD_REPLACE_BODY), ==, "replace_body");
  {
    VpsModOp back;
    g_assert_false (vps_mod_op_from_name ("nope", &back));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/vps/modify/apply", test_apply);
  g_test_add_func ("/vps/modify/line-ends", test_line_ends);
  g_test_add_func ("/vps/modify/fold", test_fold);
  g_test_add_func ("/vps/modify/validate", test_validate);
  g_test_add_func ("/vps/modify/malformed", test_malformed);
  g_test_add_func ("/vps/modify/envelope", test_envelope);
  g_test_add_func ("/vps/modify/names", test_names);
  return g_test_run ();
}
