/* SPDX-License-Identifier: MIT
 *
 * grpc-reflect.c — gRPC server reflection (grpc.reflection.v1alpha and
 * v1: the same messages in two packages) from the descriptor set embedded
 * at build time (proto/vps/v1/meson.build: protoc --include_imports, as a
 * GResource), so grpcurl-style tools need no .proto file.
 *
 * At start the set is indexed once: each FileDescriptorProto kept as the
 * bytes protoc wrote, its name, dependencies and the fully-qualified
 * symbols it defines (messages, nested messages, enums, services and
 * methods).  Answers: list_services, file_by_filename and
 * file_containing_symbol (the file and, transitively, what it imports);
 * extension queries answer NOT_FOUND (vps.v1 has no extensions).  Every
 * request gets exactly one response; an unknown name is an error_response
 * inside the stream, not a failed call, as the protocol says.
 */
#include "vps/grpc-private.h"

#include <gio/gio.h>

#include "proto/vps/v1/descriptor_index.pb-c.h"
#include "proto/vps/v1/vps-v1-resources.h"

#define VPS_GRPC_DESCRIPTOR_PATH "/org/vps/grpc/vps-v1.desc"
/* Bound on nesting walked when indexing (protoc's own sets are shallow). */
#define VPS_GRPC_REFLECT_MAX_DEPTH 32

static void
add_symbol (VpsGrpcServer *server, const char *prefix, const char *name, guint file)
{
  char *full = *prefix ? g_strconcat (prefix, ".", name, NULL) : g_strdup (name);

  g_hash_table_insert (server->symbol_file, full, GUINT_TO_POINTER (file + 1));
}

static void
index_message (VpsGrpcServer *server, const char *prefix, Vps__Descindex__MessageType *m,
               guint file, guint depth)
{
  g_autofree char *full = *prefix ? g_strconcat (prefix, ".", m->name, NULL) : g_strdup (m->name);

  if (depth > VPS_GRPC_REFLECT_MAX_DEPTH)
    return;
  add_symbol (server, prefix, m->name, file);
  for (size_t i = 0; i < m->n_nested_type; i++)
    index_message (server, full, m->nested_type[i], file, depth + 1);
  for (size_t i = 0; i < m->n_enum_type; i++)
    add_symbol (server, full, m->enum_type[i]->name, file);
}

static gboolean
index_file (VpsGrpcServer *server, GBytes *bytes, GError **error)
{
  gsize len = 0;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  Vps__Descindex__File *f = vps__descindex__file__unpack (NULL, len, data);
  guint file = server->files->len;
  GPtrArray *deps;

  if (f == NULL)
    {
      g_set_error (error, VPS_GRPC_SERVER_ERROR, VPS_GRPC_SERVER_ERROR_START,
                   "reflection: a file of the descriptor set does not parse");
      return FALSE;
    }
  g_ptr_array_add (server->files, g_bytes_ref (bytes));
  g_ptr_array_add (server->file_names, g_strdup (f->name));
  deps = g_ptr_array_new_with_free_func (g_free);
  for (size_t i = 0; i < f->n_dependency; i++)
    g_ptr_array_add (deps, g_strdup (f->dependency[i]));
  g_ptr_array_add (server->file_deps, deps);
  for (size_t i = 0; i < f->n_message_type; i++)
    index_message (server, f->package, f->message_type[i], file, 0);
  for (size_t i = 0; i < f->n_enum_type; i++)
    add_symbol (server, f->package, f->enum_type[i]->name, file);
  for (size_t i = 0; i < f->n_service; i++)
    {
      Vps__Descindex__Service *s = f->service[i];
      g_autofree char *full
          = *f->package ? g_strconcat (f->package, ".", s->name, NULL) : g_strdup (s->name);

      add_symbol (server, f->package, s->name, file);
      g_ptr_array_add (server->service_names, g_strdup (full));
      for (size_t k = 0; k < s->n_method; k++)
        add_symbol (server, full, s->method[k]->name, file);
    }
  vps__descindex__file__free_unpacked (f, NULL);
  return TRUE;
}

gboolean
vps_grpc_reflect_load (VpsGrpcServer *server, GError **error)
{
  g_autoptr (GError) local = NULL;
  Vps__Descindex__FileSet *set;
  gsize len = 0;
  const guint8 *data;

  server->descriptor_set = g_resource_lookup_data (vps_grpc_descriptor_get_resource (),
                                                   VPS_GRPC_DESCRIPTOR_PATH, 0, &local);
  if (server->descriptor_set == NULL)
    {
      g_set_error (error, VPS_GRPC_SERVER_ERROR, VPS_GRPC_SERVER_ERROR_START,
                   "reflection: descriptor set: %s", local->message);
      return FALSE;
    }
  server->files = g_ptr_array_new_with_free_func ((GDestroyNotify)g_bytes_unref);
  server->file_names = g_ptr_array_new_with_free_func (g_free);
  server->file_deps = g_ptr_array_new_with_free_func ((GDestroyNotify)g_ptr_array_unref);
  server->service_names = g_ptr_array_new_with_free_func (g_free);
  server->symbol_file = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  data = g_bytes_get_data (server->descriptor_set, &len);
  set = vps__descindex__file_set__unpack (NULL, len, data);
  if (set == NULL)
    {
      g_set_error (error, VPS_GRPC_SERVER_ERROR, VPS_GRPC_SERVER_ERROR_START,
                   "reflection: the descriptor set does not parse");
      return FALSE;
    }
  for (size_t i = 0; i < set->n_file; i++)
    {
      g_autoptr (GBytes) file = g_bytes_new (set->file[i].data, set->file[i].len);

      if (!index_file (server, file, error))
        {
          vps__descindex__file_set__free_unpacked (set, NULL);
          return FALSE;
        }
    }
  vps__descindex__file_set__free_unpacked (set, NULL);
  return TRUE;
}

void
vps_grpc_reflect_clear (VpsGrpcServer *server)
{
  g_clear_pointer (&server->descriptor_set, g_bytes_unref);
  g_clear_pointer (&server->files, g_ptr_array_unref);
  g_clear_pointer (&server->file_names, g_ptr_array_unref);
  g_clear_pointer (&server->file_deps, g_ptr_array_unref);
  g_clear_pointer (&server->service_names, g_ptr_array_unref);
  g_clear_pointer (&server->symbol_file, g_hash_table_unref);
}

static gint
file_index (VpsGrpcServer *server, const char *name)
{
  for (guint i = 0; i < server->file_names->len; i++)
    if (g_str_equal (g_ptr_array_index (server->file_names, i), name))
      return (gint)i;
  return -1;
}

/* The file and everything it imports, each once, the file first. */
static void
collect_files (VpsGrpcServer *server, gint file, GArray *order)
{
  GPtrArray *deps;

  if (file < 0)
    return;
  for (guint i = 0; i < order->len; i++)
    if (g_array_index (order, gint, i) == file)
      return;
  g_array_append_val (order, file);
  deps = g_ptr_array_index (server->file_deps, file);
  for (guint i = 0; i < deps->len; i++)
    collect_files (server, file_index (server, g_ptr_array_index (deps, i)), order);
}

GBytes *
vps_grpc_reflect_answer (VpsGrpcServer *server, GBytes *request)
{
  gsize len = 0;
  const guint8 *data = g_bytes_get_data (request, &len);
  Grpc__Reflection__V1alpha__ServerReflectionRequest *in
      = grpc__reflection__v1alpha__server_reflection_request__unpack (NULL, len, data);
  Grpc__Reflection__V1alpha__ServerReflectionResponse out;
  Grpc__Reflection__V1alpha__FileDescriptorResponse fdr;
  Grpc__Reflection__V1alpha__ListServiceResponse lsr;
  Grpc__Reflection__V1alpha__ErrorResponse err;
  g_autoptr (GArray) order = g_array_new (FALSE, FALSE, sizeof (gint));
  g_autofree ProtobufCBinaryData *blobs = NULL;
  g_autofree Grpc__Reflection__V1alpha__ServiceResponse *svcs = NULL;
  g_autofree Grpc__Reflection__V1alpha__ServiceResponse **svc_ptrs = NULL;
  g_autofree char *message = NULL;
  gint file = -1;
  GBytes *answer;

  grpc__reflection__v1alpha__server_reflection_response__init (&out);
  grpc__reflection__v1alpha__error_response__init (&err);
  if (in == NULL)
    {
      err.error_code = VPS_GRPC_STATUS_INVALID_ARGUMENT;
      err.error_message = (char *)"not a ServerReflectionRequest";
      out.message_response_case
          = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
      out.error_response = &err;
      return vps_grpc_pack (&out.base);
    }
  out.valid_host = in->host;
  out.original_request = in;
  switch (in->message_request_case)
    {
      case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        grpc__reflection__v1alpha__list_service_response__init (&lsr);
        svcs = g_new0 (Grpc__Reflection__V1alpha__ServiceResponse, server->service_names->len);
        svc_ptrs
            = g_new0 (Grpc__Reflection__V1alpha__ServiceResponse *, server->service_names->len);
        for (guint i = 0; i < server->service_names->len; i++)
          {
            grpc__reflection__v1alpha__service_response__init (&svcs[i]);
            svcs[i].name = g_ptr_array_index (server->service_names, i);
            svc_ptrs[i] = &svcs[i];
          }
        lsr.n_service = server->service_names->len;
        lsr.service = svc_ptrs;
        out.message_response_case
            = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        out.list_services_response = &lsr;
        break;
      case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = file_index (server, in->file_by_filename);
        if (file < 0)
          message = g_strdup_printf ("no file named '%s'", in->file_by_filename);
        break;
      case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        file = GPOINTER_TO_INT (
                   g_hash_table_lookup (server->symbol_file, in->file_containing_symbol))
               - 1;
        if (file < 0)
          message = g_strdup_printf ("no symbol '%s'", in->file_containing_symbol);
        break;
      default:
        message = g_strdup ("no extensions are declared here");
        break;
    }
  if (file >= 0)
    {
      collect_files (server, file, order);
      grpc__reflection__v1alpha__file_descriptor_response__init (&fdr);
      blobs = g_new0 (ProtobufCBinaryData, order->len);
      for (guint i = 0; i < order->len; i++)
        {
          GBytes *b = g_ptr_array_index (server->files, g_array_index (order, gint, i));

          blobs[i].data = (guint8 *)g_bytes_get_data (b, &blobs[i].len);
        }
      fdr.n_file_descriptor_proto = order->len;
      fdr.file_descriptor_proto = blobs;
      out.message_response_case
          = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
      out.file_descriptor_response = &fdr;
    }
  else if (message != NULL)
    {
      err.error_code = VPS_GRPC_STATUS_NOT_FOUND;
      err.error_message = message;
      out.message_response_case
          = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
      out.error_response = &err;
    }
  answer = vps_grpc_pack (&out.base);
  grpc__reflection__v1alpha__server_reflection_request__free_unpacked (in, NULL);
  return answer;
}
