/* SPDX-License-Identifier: MIT
 *
 * rules-regex.c — vsl regexes on PCRE2, and regex sets: the regexes of a list
 * matched as a few combined alternations instead of one match each.
 *
 * Contract: a RulesRegex is compiled once at load with the options GLib's
 * GRegex used for vsl (GLib 2.74, gregex.c): UTF-8, PCRE2_UCP (\w \d \b and
 * POSIX classes are Unicode-aware), any newline sequence is a newline,
 * \R is any Unicode newline, and the i and m flags as CASELESS and MULTILINE;
 * the pattern ends at its first NUL as with g_regex_new().  It is then
 * JIT-compiled; where JIT is unavailable PCRE2's interpreter runs it.  A bad
 * pattern is reported with GRegex's own message ("Error while compiling
 * regular expression ‘a(b’ at char 3: missing terminating )"), so load
 * errors read as they always did.
 *
 * Matching is thread-safe (compiled code is read-only after load) and does
 * not allocate in the steady state: each thread keeps one match data block,
 * and a yes/no answer needs a single ovector pair whatever the pattern
 * (PCRE2 returns 0, still a match, when the ovector is too small).  Host
 * values are not validated UTF-8: patterns are compiled with
 * PCRE2_MATCH_INVALID_UTF, so an invalid sequence never matches any pattern
 * item and no match crosses it (GRegex's JIT path had undefined behaviour
 * there); valid subjects match exactly as before.
 *
 * A regex set combines the regexes that can be combined into
 * "(?:r1)|(?i:r2)|..." chunks of at most RULES_REGEX_CHUNK_BYTES of pattern
 * (any match of the chunk is a match of one of them: each regex keeps its
 * flags and its inline options stay inside its group).  A regex whose meaning
 * depends on its position in a bigger pattern (group numbers: back
 * references, subroutine calls, recursion, conditions; backtracking verbs,
 * which act beyond their group) or that does not survive being wrapped in a
 * group is matched alone.  A chunk that does not compile (size limits,
 * duplicate group names) is split in halves down to single regexes; a chunk
 * whose match fails with an error (a match limit) retries its members one by
 * one, so the set's answer is always that of matching every regex alone.
 */
#include "rules/rules-private.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

/* Pattern bytes per combined alternation: far below PCRE2's compiled-size
 * limit for ordinary list entries, and small enough to JIT quickly. */
#define RULES_REGEX_CHUNK_BYTES (16 * 1024)
#define RULES_REGEX_ERROR_MAX 256 /* a PCRE2 error message */

/* The options g_regex_new() adds to every pattern (plus invalid-UTF support). */
#define BASE_OPTIONS (PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF)

struct _RulesRegex
{
  gint refcount;
  pcre2_code *code;
  char *pattern; /* up to the first NUL, as compiled */
  guint flags;   /* RULES_RE_* */
};

typedef struct
{
  pcre2_code *code;
  GPtrArray *members; /* RulesRegex*: what the chunk combines, for a one-by-one retry */
} Chunk;

struct _RulesRegexSet
{
  GPtrArray *chunks; /* Chunk* */
  GPtrArray *alone;  /* RulesRegex*: matched one by one */
  guint n_combined;  /* regexes inside chunks */
};

/* ---- compiling ------------------------------------------------------------ */

/* VPS_PCRE2_JIT=0 in the environment turns the JIT off (same answers, the
 * interpreter's speed): memory checkers such as valgrind cannot follow the
 * JIT's vectorised reads past the end of a subject and report them. */
static gboolean
jit_wanted (void)
{
  static gsize once = 0;
  static gboolean wanted;

  if (g_once_init_enter (&once))
    {
      wanted = g_strcmp0 (g_getenv ("VPS_PCRE2_JIT"), "0") != 0;
      g_once_init_leave (&once, 1);
    }
  return wanted;
}

static pcre2_code *
compile (const char *pattern, gsize len, guint flags, gboolean jit, int *errcode,
         PCRE2_SIZE *erroffset)
{
  pcre2_compile_context *cc = pcre2_compile_context_create (NULL);
  guint32 options = BASE_OPTIONS;
  pcre2_code *code;

  if (cc == NULL)
    {
      *errcode = PCRE2_ERROR_NOMEMORY;
      *erroffset = 0;
      return NULL;
    }
  if (flags & RULES_RE_I)
    options |= PCRE2_CASELESS;
  if (flags & RULES_RE_M)
    options |= PCRE2_MULTILINE;
  pcre2_set_newline (cc, PCRE2_NEWLINE_ANY);
  pcre2_set_bsr (cc, PCRE2_BSR_UNICODE);
  code = pcre2_compile ((PCRE2_SPTR)pattern, len, options, errcode, erroffset, cc);
  pcre2_compile_context_free (cc);
  /* Failure (no JIT on this platform, no executable memory) leaves the
   * interpreter in charge: slower, same answers. */
  if (code != NULL && jit && jit_wanted ())
    (void)pcre2_jit_compile (code, PCRE2_JIT_COMPLETE);
  return code;
}

/* The message GRegex gives for a pattern PCRE2 refused. */
static void
set_compile_error (const char *pattern, guint flags, int errcode, PCRE2_SIZE erroffset,
                   GError **error)
{
  GRegexCompileFlags gflags = G_REGEX_OPTIMIZE;
  g_autoptr (GRegex) re = NULL;
  PCRE2_UCHAR msg[RULES_REGEX_ERROR_MAX];

  if (flags & RULES_RE_I)
    gflags |= G_REGEX_CASELESS;
  if (flags & RULES_RE_M)
    gflags |= G_REGEX_MULTILINE;
  /* Same library, same options: GRegex refuses it too, in its own words
   * (translated, with a character offset). */
  re = g_regex_new (pattern, gflags, 0, error);
  if (re == NULL)
    return;
  if (pcre2_get_error_message (errcode, msg, sizeof msg) < 0)
    g_strlcpy ((char *)msg, "unknown error", sizeof msg);
  g_set_error (error, G_REGEX_ERROR, G_REGEX_ERROR_COMPILE,
               "Error while compiling regular expression ‘%s’ at char %ld: %s", pattern,
               g_utf8_pointer_to_offset (pattern, pattern + MIN (erroffset, strlen (pattern))),
               (const char *)msg);
}

RulesRegex *
rules_regex_new (const char *pattern, guint flags, GError **error)
{
  RulesRegex *re;
  pcre2_code *code;
  int errcode = 0;
  PCRE2_SIZE erroffset = 0;

  g_return_val_if_fail (pattern != NULL, NULL);
  code = compile (pattern, strlen (pattern), flags, TRUE, &errcode, &erroffset);
  if (code == NULL)
    {
      set_compile_error (pattern, flags, errcode, erroffset, error);
      return NULL;
    }
  re = g_new0 (RulesRegex, 1);
  re->refcount = 1;
  re->code = code;
  re->pattern = g_strdup (pattern);
  re->flags = flags & (RULES_RE_I | RULES_RE_M);
  return re;
}

RulesRegex *
rules_regex_ref (const RulesRegex *re)
{
  RulesRegex *r = (RulesRegex *)re;
  g_return_val_if_fail (r != NULL, NULL);
  g_atomic_int_inc (&r->refcount);
  return r;
}

void
rules_regex_unref (RulesRegex *re)
{
  if (re == NULL || !g_atomic_int_dec_and_test (&re->refcount))
    return;
  pcre2_code_free (re->code);
  g_free (re->pattern);
  g_free (re);
}

const char *
rules_regex_pattern (const RulesRegex *re)
{
  return re ? re->pattern : "";
}

guint
rules_regex_flags (const RulesRegex *re)
{
  return re ? re->flags : 0;
}

/* ---- matching ------------------------------------------------------------- */

static void
match_data_free (gpointer md)
{
  pcre2_match_data_free (md);
}

/* One block per thread: read through a thread-local pointer (a GPrivate
 * look-up costs more than many matches), and registered with a GPrivate only
 * so that it is freed when the thread exits. */
static GPrivate match_data_key = G_PRIVATE_INIT (match_data_free);
static __thread pcre2_match_data *thread_match_data;

/* pcre2_match()'s result: >= 0 a match, PCRE2_ERROR_NOMATCH, or an error. */
static int
exec (const pcre2_code *code, const char *s, gsize len)
{
  pcre2_match_data *md = thread_match_data;

  if (G_UNLIKELY (md == NULL))
    {
      md = pcre2_match_data_create (1, NULL);
      if (md == NULL)
        return PCRE2_ERROR_NOMEMORY;
      g_private_set (&match_data_key, md);
      thread_match_data = md;
    }
  if (s == NULL)
    s = "", len = 0;
  return pcre2_match (code, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
}

gboolean
rules_regex_match (const RulesRegex *re, const char *s, gsize len)
{
  return re != NULL && exec (re->code, s, len) >= 0;
}

/* ---- sets ----------------------------------------------------------------- */

/* "(?:", "(?i:", "(?m:" or "(?im:" */
static void
open_group (GString *out, guint flags)
{
  g_string_append (out, "(?");
  if (flags & RULES_RE_I)
    g_string_append_c (out, 'i');
  if (flags & RULES_RE_M)
    g_string_append_c (out, 'm');
  g_string_append_c (out, ':');
}

/* Constructs whose meaning depends on the rest of the pattern.  Conservative:
 * a false alarm (in a class, after \Q) only costs a match of its own. */
static gboolean
position_dependent (const char *p)
{
  for (; *p; p++)
    {
      if (p[0] == '\\')
        {
          if (p[1] == 'g') /* \g{1} \g-1 \g<1> \g'name': references and calls */
            return TRUE;
          if (p[1] != '\0')
            p++;
          continue;
        }
      if (p[0] != '(')
        continue;
      if (p[1] == '*') /* (*COMMIT) (*SKIP) ... act on the whole match */
        return TRUE;
      if (p[1] == '?')
        {
          const char *q = p + 2;
          if (*q == 'R' || *q == '(' || *q == '&' || (*q == 'P' && q[1] == '>'))
            return TRUE; /* recursion, conditions, named calls */
          if (*q == '+' || *q == '-')
            q++;
          if (g_ascii_isdigit (*q)) /* (?1) (?+1) (?-1) */
            return TRUE;
        }
    }
  return FALSE;
}

static gboolean
combinable (const RulesRegex *re)
{
  g_autoptr (GString) wrapped = g_string_new (NULL);
  guint32 backrefs = 0;
  pcre2_code *code;
  int errcode;
  PCRE2_SIZE erroffset;

  if (pcre2_pattern_info (re->code, PCRE2_INFO_BACKREFMAX, &backrefs) != 0 || backrefs > 0)
    return FALSE;
  if (position_dependent (re->pattern))
    return FALSE;
  /* An unterminated \Q or an extended-mode comment at the end would swallow
   * the closing parenthesis: such a regex does not compile wrapped. */
  open_group (wrapped, re->flags);
  g_string_append (wrapped, re->pattern);
  g_string_append_c (wrapped, ')');
  code = compile (wrapped->str, wrapped->len, 0, FALSE, &errcode, &erroffset);
  if (code == NULL)
    return FALSE;
  pcre2_code_free (code);
  return TRUE;
}

static void
chunk_free (Chunk *c)
{
  pcre2_code_free (c->code);
  g_ptr_array_unref (c->members);
  g_free (c);
}

/* Combines v[0..n) into one chunk; splits it when that does not compile. */
static void
add_chunk (RulesRegexSet *set, RulesRegex *const *v, guint n)
{
  g_autoptr (GString) pat = g_string_new (NULL);
  pcre2_code *code;
  int errcode;
  PCRE2_SIZE erroffset;
  Chunk *c;

  if (n == 0)
    return;
  if (n == 1)
    {
      /* Its own compiled code is as good as a chunk of one. */
      g_ptr_array_add (set->alone, rules_regex_ref (v[0]));
      return;
    }
  for (guint i = 0; i < n; i++)
    {
      if (i > 0)
        g_string_append_c (pat, '|');
      open_group (pat, v[i]->flags);
      g_string_append (pat, v[i]->pattern);
      g_string_append_c (pat, ')');
    }
  code = compile (pat->str, pat->len, 0, TRUE, &errcode, &erroffset);
  if (code == NULL)
    {
      add_chunk (set, v, n / 2);
      add_chunk (set, v + n / 2, n - n / 2);
      return;
    }
  c = g_new0 (Chunk, 1);
  c->code = code;
  c->members = g_ptr_array_new_full (n, (GDestroyNotify)rules_regex_unref);
  for (guint i = 0; i < n; i++)
    g_ptr_array_add (c->members, rules_regex_ref (v[i]));
  g_ptr_array_add (set->chunks, c);
  set->n_combined += n;
}

RulesRegexSet *
rules_regex_set_new (RulesRegex *const *regexes, guint n)
{
  RulesRegexSet *set = g_new0 (RulesRegexSet, 1);
  g_autoptr (GPtrArray) pending = g_ptr_array_new ();
  gsize bytes = 0;

  set->chunks = g_ptr_array_new_with_free_func ((GDestroyNotify)chunk_free);
  set->alone = g_ptr_array_new_with_free_func ((GDestroyNotify)rules_regex_unref);
  for (guint i = 0; i < n; i++)
    {
      RulesRegex *re = regexes[i];
      gsize len = strlen (re->pattern) + 8; /* "(?im:" ")|" */

      if (!combinable (re))
        {
          g_ptr_array_add (set->alone, rules_regex_ref (re));
          continue;
        }
      if (pending->len > 0 && bytes + len > RULES_REGEX_CHUNK_BYTES)
        {
          add_chunk (set, (RulesRegex *const *)pending->pdata, pending->len);
          g_ptr_array_set_size (pending, 0);
          bytes = 0;
        }
      g_ptr_array_add (pending, re);
      bytes += len;
    }
  add_chunk (set, (RulesRegex *const *)pending->pdata, pending->len);
  return set;
}

void
rules_regex_set_free (RulesRegexSet *set)
{
  if (set == NULL)
    return;
  g_ptr_array_unref (set->chunks);
  g_ptr_array_unref (set->alone);
  g_free (set);
}

gboolean
rules_regex_set_match (const RulesRegexSet *set, const char *s, gsize len)
{
  for (guint i = 0; i < set->chunks->len; i++)
    {
      const Chunk *c = set->chunks->pdata[i];
      int rc = exec (c->code, s, len);

      if (rc >= 0)
        return TRUE;
      if (rc != PCRE2_ERROR_NOMATCH)
        {
          /* A limit hit by the alternation as a whole: each regex alone has
           * its own budget, so ask them one by one. */
          for (guint k = 0; k < c->members->len; k++)
            if (rules_regex_match (c->members->pdata[k], s, len))
              return TRUE;
        }
    }
  for (guint i = 0; i < set->alone->len; i++)
    if (rules_regex_match (set->alone->pdata[i], s, len))
      return TRUE;
  return FALSE;
}

void
rules_regex_set_stats (const RulesRegexSet *set, guint *n_chunks, guint *n_combined, guint *n_alone)
{
  *n_chunks = set ? set->chunks->len : 0;
  *n_combined = set ? set->n_combined : 0;
  *n_alone = set ? set->alone->len : 0;
}
