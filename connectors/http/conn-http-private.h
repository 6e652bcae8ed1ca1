/* SPDX-License-Identifier: MIT
 *
 * conn-http-private.h — what the files of the `http` connector share, and
 * what its unit tests see: the settings, the libcurl multi loop of one main
 * context (conn-http-loop.c), and the pure request/reply codecs
 * (conn-http-codec.c).
 *
 * Ownership: settings are immutable after create and reference-counted
 * (atomic); every request holds a reference.  A loop belongs to one
 * GMainContext and is only touched from it.
 */
#pragma once

#include <curl/curl.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "vps/connector.h"

G_BEGIN_DECLS

#define CONN_HTTP_ERROR (conn_http_error_quark ())
GQuark conn_http_error_quark (void);

typedef enum
{
  CONN_HTTP_ERROR_TRANSPORT,  /* connect, TLS, protocol failure (curl) */
  CONN_HTTP_ERROR_TIMEOUT,    /* curl's own deadline passed */
  CONN_HTTP_ERROR_TOO_LARGE,  /* the reply exceeds max_reply_size */
  CONN_HTTP_ERROR_STATUS,     /* an HTTP status other than 2xx */
  CONN_HTTP_ERROR_MALFORMED,  /* not JSON, not an object, too deep, wrong member type */
  CONN_HTTP_ERROR_REFUSED,    /* a verdict, reply or header we will not pass on */
  CONN_HTTP_ERROR_NO_MESSAGE, /* rspamd mode called before the data stage */
} ConnHttpError;

/* Defaults and named limits. */
#define CONN_HTTP_DEFAULT_MAX_REPLY (1024 * 1024)
#define CONN_HTTP_MAX_MAX_REPLY (64 * 1024 * 1024)
#define CONN_HTTP_MAX_URL 4096
#define CONN_HTTP_MAX_JSON_DEPTH 64       /* json-glib's parser recurses */
#define CONN_HTTP_MAX_HEADER_MODS 64      /* header operations taken from one reply */
#define CONN_HTTP_MAX_SYMBOLS 1024        /* rspamd symbols exposed */
#define CONN_HTTP_DEFAULT_CONNECT_MS 5000 /* never longer than the call's timeout */

typedef enum
{
  CONN_HTTP_MODE_JSON,
  CONN_HTTP_MODE_RSPAMD,
} ConnHttpMode;

typedef struct
{
  char *name;
  ConnHttpMode mode;
  char *url;
  gboolean send_body;    /* json: the raw message at data */
  gboolean apply_action; /* rspamd: action → verdict */
  guint64 max_reply_size;
  char *ca_file; /* NULL: the system store */
  char *cert;    /* client certificate (PEM) or NULL */
  char *key;     /* its key (PEM) or NULL */
  char *quarantine;
  char *user_agent;
} ConnHttpSettings;

ConnHttpSettings *conn_http_settings_ref (ConnHttpSettings *settings);
void conn_http_settings_unref (ConnHttpSettings *settings);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnHttpSettings, conn_http_settings_unref)

/* ---- conn-http-loop.c: curl multi on a GMainContext ----------------------- */

typedef struct _ConnHttpLoop ConnHttpLoop;

/* A loop for `context` (referenced).  Its connection cache is what gives
 * connection reuse across calls made from that context. */
ConnHttpLoop *conn_http_loop_new (GMainContext *context);
ConnHttpLoop *conn_http_loop_ref (ConnHttpLoop *loop);
void conn_http_loop_unref (ConnHttpLoop *loop);
/* Close the idle connections and drop the curl handle on the loop's own
 * context (at once when this thread may own it), then unref. */
void conn_http_loop_shutdown (ConnHttpLoop *loop);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConnHttpLoop, conn_http_loop_unref)

/* POST body (may be empty) with `headers` (taken; may be NULL) to
 * settings->url.  Must be called on the loop's context; completes there.
 * timeout_ms 0 = none (the wrapper's timeout still cancels). */
void conn_http_loop_post_async (ConnHttpLoop *loop, ConnHttpSettings *settings, GBytes *body,
                                struct curl_slist *headers, gint64 timeout_ms,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);
/* The reply body of a 2xx answer; *status gets the HTTP status (also on a
 * CONN_HTTP_ERROR_STATUS error). */
GBytes *conn_http_loop_post_finish (ConnHttpLoop *loop, GAsyncResult *result, glong *status,
                                    GError **error);

/* ---- conn-http-codec.c: documents in, results out (pure) ----------------- */

/* The JSON document of mode = json for txn at stage. */
GBytes *conn_http_json_request (VpsTxn *txn, RulesStage stage, const char *connector,
                                gboolean send_body);
/* rspamd request headers (IP, Helo, From, Rcpt..., Queue-Id, User,
 * Hostname); values with control characters are left out, never sent. */
struct curl_slist *conn_http_rspamd_headers (VpsTxn *txn);

/* Parse a reply body: a JSON object no deeper than CONN_HTTP_MAX_JSON_DEPTH. */
JsonNode *conn_http_parse_reply (GBytes *body, GError **error);
/* The result of a mode = json reply object (fields `status`, `json`). */
VpsConnectorResult *conn_http_json_result (JsonNode *reply, glong status,
                                           const ConnHttpSettings *settings, GError **error);
/* The result of an rspamd /checkv2 reply (fields `status`, `json`,
 * `score`, `required_score`, `action`, `symbols`); subject is the message's
 * current Subject (for rewrite subject without a `subject` member). */
VpsConnectorResult *conn_http_rspamd_result (JsonNode *reply, glong status,
                                             const ConnHttpSettings *settings, const char *subject,
                                             GError **error);

G_END_DECLS
