/* SPDX-License-Identifier: MIT
 *
 * grpc-core-private.h — what the server and client halves of the gRPC
 * wrapper share (grpc-core.c, grpc-core-client.c).  Nothing outside those
 * two files includes it: it is the only header that names grpc_* types.
 */
#pragma once

#include <glib.h>
#include <grpc/byte_buffer.h>

G_BEGIN_DECLS

/* A byte buffer holding a copy of bytes (the caller destroys it). */
grpc_byte_buffer *vps_grpc_buffer_from_bytes (GBytes *bytes);
/* The whole content of a received buffer (split or compressed). */
GBytes *vps_grpc_bytes_from_buffer (grpc_byte_buffer *buf);
/* The content of a PEM file for `what` (a config key), or NULL + error. */
char *vps_grpc_read_pem (const char *what, const char *path, GError **error);

G_END_DECLS
