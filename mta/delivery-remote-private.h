/* SPDX-License-Identifier: MIT
 *
 * delivery-remote-private.h — what remote delivery (delivery-remote.c:
 * groups, MX, sending) and its map files (delivery-remote-maps.c: the TLS
 * policy map and the relay credentials) share.
 */
#pragma once

#include "mta/delivery-remote.h"

#include "proto/smtp/smtp.h"

G_BEGIN_DECLS

/* The envelope's RET and BODY values ("FULL", "8BITMIME", ...; NULL: none
 * given) as smtp-out takes them. */
SmtpRet vps_remote_ret (const char *ret);
SmtpBody vps_remote_body (const char *body);

/* Credentials for one relay target. */
typedef struct
{
  char *user;
  char *password;
} RemoteAuth;

/* The key of a destination in the maps: "domain:port" for MX delivery,
 * "[host]:port" for a relay target. */
char *vps_remote_relay_key (const char *host, guint16 port, gboolean mx_lookup);
/* Load [delivery] tls_policy_map (policy name per key) and relay_auth_file
 * (RemoteAuth per key) of cfg; NULL tables when unset; FALSE with
 * FILE:LINE in error when one does not load. */
gboolean vps_remote_load_maps (VpsConfig *cfg, GHashTable **tls_map, GHashTable **auth,
                               GError **error);

G_END_DECLS
