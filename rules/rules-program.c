/* SPDX-License-Identifier: MIT
 *
 * rules-program.c — loading (parse, then check) and the lifetime of a
 * compiled RulesProgram, plus the questions the engine asks it.
 *
 * Contract: a program is immutable once loaded and reference-counted with
 * atomic operations, so any number of threads may share it; the only
 * mutable parts (in_file() caches) lock themselves.  Loading either returns
 * a complete program or NULL with a RULES_ERROR whose message is
 * "file:line:col: message".
 */
#include "rules/rules-private.h"

#include <string.h>

void
rules_set_error (GError **error, RulesError code, const char *file, guint line, guint col,
                 const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, RULES_ERROR, (gint)code, "%s:%u:%u: %s", file ? file : "<rules>", line, col,
               msg);
}

static void
node_free (RulesNode *n)
{
  g_free (n->str);
  g_strfreev (n->path);
  g_free (n->args);
  g_free (n);
}

static void
rule_free (RulesRule *r)
{
  for (guint i = 0; i < r->n_actions; i++)
    {
      g_free (r->actions[i].enhanced);
      g_free (r->actions[i].text);
      g_free (r->actions[i].name);
      g_strfreev (r->actions[i].calls);
    }
  g_free (r->actions);
  g_free (r->name);
  g_free (r);
}

static void
let_free (RulesLet *l)
{
  g_free (l->name);
  g_free (l);
}

static void
listdef_free (RulesListDef *d)
{
  g_free (d->name);
  g_free (d);
}

RulesProgram *
rules_program_new_empty (void)
{
  RulesProgram *p = g_new0 (RulesProgram, 1);

  p->refcount = 1;
  p->files = g_ptr_array_new_with_free_func (g_free);
  p->nodes = g_ptr_array_new_with_free_func ((GDestroyNotify)node_free);
  p->lists = g_ptr_array_new_with_free_func ((GDestroyNotify)rules_list_free);
  p->caches = g_ptr_array_new_with_free_func ((GDestroyNotify)rules_file_cache_free);
  p->regexes = g_ptr_array_new_with_free_func ((GDestroyNotify)rules_regex_unref);
  p->listdefs = g_ptr_array_new_with_free_func ((GDestroyNotify)listdef_free);
  p->lets = g_ptr_array_new_with_free_func ((GDestroyNotify)let_free);
  p->varnames = g_ptr_array_new_with_free_func (g_free);
  p->vardefs = g_ptr_array_new ();
  for (guint s = 0; s < RULES_N_STAGES; s++)
    {
      p->rules[s] = g_ptr_array_new_with_free_func ((GDestroyNotify)rule_free);
      p->calls[s] = g_ptr_array_new_with_free_func (g_free);
    }
  return p;
}

const char *
rules_program_intern_file (RulesProgram *prog, const char *file)
{
  for (guint i = 0; i < prog->files->len; i++)
    if (strcmp (prog->files->pdata[i], file) == 0)
      return prog->files->pdata[i];
  g_ptr_array_add (prog->files, g_strdup (file));
  return prog->files->pdata[prog->files->len - 1];
}

RulesProgram *
rules_program_ref (RulesProgram *program)
{
  g_return_val_if_fail (program != NULL, NULL);
  g_atomic_int_inc (&program->refcount);
  return program;
}

void
rules_program_unref (RulesProgram *p)
{
  if (p == NULL || !g_atomic_int_dec_and_test (&p->refcount))
    return;
  for (guint s = 0; s < RULES_N_STAGES; s++)
    {
      g_ptr_array_unref (p->rules[s]);
      g_ptr_array_unref (p->calls[s]);
    }
  g_ptr_array_unref (p->lets);
  g_ptr_array_unref (p->listdefs);
  g_ptr_array_unref (p->nodes);
  g_ptr_array_unref (p->lists);
  g_ptr_array_unref (p->caches);
  g_ptr_array_unref (p->regexes);
  g_ptr_array_unref (p->varnames);
  g_ptr_array_unref (p->vardefs);
  g_ptr_array_unref (p->files);
  g_free (p->base_dir);
  g_free (p);
}

static RulesProgram *
finish_load (RulesProgram *prog, gboolean parsed, const RulesLoadOptions *options, GError **error)
{
  if (!parsed || !rules_check (prog, options, error))
    {
      rules_program_unref (prog);
      return NULL;
    }
  return prog;
}

RulesProgram *
rules_program_load_file (const char *path, const RulesLoadOptions *options, GError **error)
{
  RulesProgram *prog;

  g_return_val_if_fail (path != NULL, NULL);
  prog = rules_program_new_empty ();
  prog->base_dir = g_path_get_dirname (path);
  return finish_load (prog, rules_parse_file (prog, path, error), options, error);
}

RulesProgram *
rules_program_load_string (const char *name, const char *text, const RulesLoadOptions *options,
                           GError **error)
{
  RulesProgram *prog;

  g_return_val_if_fail (name != NULL && text != NULL, NULL);
  prog = rules_program_new_empty ();
  prog->base_dir = g_path_get_dirname (name);
  return finish_load (prog, rules_parse_string (prog, name, text, strlen (text), error), options,
                      error);
}

guint
rules_program_n_rules (const RulesProgram *program, RulesStage stage)
{
  g_return_val_if_fail (program != NULL && (guint)stage < RULES_N_STAGES, 0);
  return program->rules[stage]->len;
}

gboolean
rules_program_reads (const RulesProgram *program, RulesVar var)
{
  g_return_val_if_fail (program != NULL && (guint)var < RULES_N_VARS, FALSE);
  return program->reads[var];
}

gboolean
rules_program_has_effect (const RulesProgram *program, RulesEffectKind effect)
{
  g_return_val_if_fail (program != NULL && (guint)effect <= RULES_EFFECT_DELIVER_MX, FALSE);
  return program->effects[effect];
}

gboolean
rules_program_has_verdict (const RulesProgram *program, RulesVerdict verdict)
{
  g_return_val_if_fail (program != NULL && (guint)verdict <= RULES_VERDICT_DISCARD, FALSE);
  return program->verdicts[verdict];
}

gboolean
rules_program_uses_state (const RulesProgram *program, RulesStateKind kind)
{
  g_return_val_if_fail (program != NULL && (guint)kind <= RULES_STATE_GREYLISTED, FALSE);
  return program->state[kind];
}

const char *const *
rules_program_calls (const RulesProgram *program, RulesStage stage)
{
  g_return_val_if_fail (program != NULL && (guint)stage < RULES_N_STAGES, NULL);
  return (const char *const *)program->calls[stage]->pdata;
}

const char *const *
rules_program_variables (const RulesProgram *program)
{
  g_return_val_if_fail (program != NULL, NULL);
  return (const char *const *)program->varnames->pdata;
}
