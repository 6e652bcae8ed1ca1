/* SPDX-License-Identifier: MIT
 *
 * grpc-policy.c — the vps.v1.Policy service: Check (one stage of one
 * transaction), Evaluate (a whole message through vps/simulate.h) and
 * EndSession, and the bounded table of live Check sessions.
 *
 * A session is created by the first Check with a new session_id and holds
 * a VpsSession, its current VpsTxn and the engine current at its creation
 * (a reload affects new sessions only, as for milter connections).  Its
 * objects are not locked (vps/session.h): every Check of one session runs
 * on the same worker (the id's hash picks it) and a second Check while one
 * runs is refused with ABORTED.  Sessions idle longer than
 * [grpc] session_timeout are dropped; beyond [grpc] max_sessions new ones
 * are refused with RESOURCE_EXHAUSTED after expiring idle ones.
 *
 * Every value from the request is checked against a named limit and for
 * control characters before it reaches the engine: INVALID_ARGUMENT names
 * the field.
 */
#include "vps/grpc-private.h"

#include <string.h>

#include "vps/log.h"
#include "vps/report.h"
#include "vps/simulate.h"
#include "vps/metrics.h"

/* ---- the session table ---------------------------------------------------- */

typedef struct
{
  char *id;
  guint64 serial; /* tells a re-created entry of the same id apart */
  VpsEngine *engine;
  VpsSession *session;
  VpsTxn *txn;
  gint64 last_used;
  gboolean busy;
} Sess;

struct _VpsGrpcSessions
{
  GMutex lock;
  GHashTable *table; /* id → Sess* (owned) */
  guint max;         /* 0 = unlimited */
  gint64 idle_us;
  guint64 next_serial;
};

static void
sess_free (Sess *s)
{
  vps_txn_unref (s->txn);
  vps_session_unref (s->session);
  vps_engine_unref (s->engine);
  g_free (s->id);
  g_free (s);
}

VpsGrpcSessions *
vps_grpc_sessions_new (guint max, gint64 idle_us)
{
  VpsGrpcSessions *t = g_new0 (VpsGrpcSessions, 1);

  g_mutex_init (&t->lock);
  t->table = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)sess_free);
  t->max = max;
  t->idle_us = idle_us;
  return t;
}

void
vps_grpc_sessions_free (VpsGrpcSessions *t)
{
  if (t == NULL)
    return;
  g_hash_table_unref (t->table);
  g_mutex_clear (&t->lock);
  g_free (t);
}

static gboolean
sess_idle (gpointer key, gpointer value, gpointer data)
{
  Sess *s = value;
  gint64 cutoff = *(gint64 *)data;

  return !s->busy && s->last_used < cutoff;
}

static guint
expire_locked (VpsGrpcSessions *t)
{
  gint64 cutoff = g_get_monotonic_time () - t->idle_us;

  return g_hash_table_foreach_remove (t->table, sess_idle, &cutoff);
}

guint
vps_grpc_sessions_expire (VpsGrpcSessions *t)
{
  guint n;

  if (t == NULL)
    return 0;
  g_mutex_lock (&t->lock);
  n = expire_locked (t);
  g_mutex_unlock (&t->lock);
  return n;
}

guint
vps_grpc_sessions_count (VpsGrpcSessions *t)
{
  guint n;

  g_mutex_lock (&t->lock);
  n = g_hash_table_size (t->table);
  g_mutex_unlock (&t->lock);
  return n;
}

/* ---- request checks ------------------------------------------------------- */

/* Printable text without control characters (CR, LF, NUL never reach a
 * log line or an MTA reply), at most `max` bytes. */
static gboolean
valid_text (const char *s, gsize max)
{
  gsize n = 0;

  for (; s[n] != '\0'; n++)
    if (n >= max || (guchar)s[n] < 0x20 || s[n] == 0x7f)
      return FALSE;
  return TRUE;
}

static gboolean
valid_session_id (const char *id)
{
  if (id == NULL || id[0] == '\0' || strlen (id) > VPS_GRPC_MAX_SESSION_ID)
    return FALSE;
  for (const char *p = id; *p; p++)
    if (!g_ascii_isgraph (*p))
      return FALSE;
  return TRUE;
}

guint
vps_grpc_policy_route (VpsGrpcServer *server, VpsGrpcReq *req)
{
  Vps__V1__CheckRequest *in = (gpointer)req->request;

  if (!valid_session_id (in->session_id))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT,
                         "session_id: required, 1..%d printable ASCII characters",
                         VPS_GRPC_MAX_SESSION_ID);
      return G_MAXUINT;
    }
  return g_str_hash (in->session_id) % vps_daemon_n_workers (server->daemon);
}

/* NULL-terminated copy of params (strings borrowed), or NULL + *bad. */
static GPtrArray *
params_array (Vps__V1__Address *a, const char **bad)
{
  GPtrArray *p;

  if (a->n_params > VPS_TXN_MAX_PARAMS)
    {
      *bad = "too many params";
      return NULL;
    }
  p = g_ptr_array_new ();
  for (size_t i = 0; i < a->n_params; i++)
    {
      if (!valid_text (a->params[i], VPS_GRPC_MAX_VALUE))
        {
          *bad = "a param has control characters or is too long";
          g_ptr_array_unref (p);
          return NULL;
        }
      g_ptr_array_add (p, a->params[i]);
    }
  g_ptr_array_add (p, NULL);
  return p;
}

static gboolean
check_address (Vps__V1__Address *a, const char *what, GString *why)
{
  const char *bad = NULL;
  g_autoptr (GPtrArray) p = NULL;

  if (!valid_text (a->address, VPS_GRPC_MAX_ADDRESS))
    bad = "control characters, or longer than 256";
  else
    p = params_array (a, &bad);
  if (bad != NULL)
    g_string_printf (why, "%s: %s", what, bad);
  return bad == NULL;
}

/* A header value may be folded (CRLF or LF followed by a space or tab);
 * any other CR, LF or NUL would let the client smuggle a header. */
static gboolean
valid_header_value (const char *v)
{
  gsize n = 0;

  for (const char *p = v; *p; p++, n++)
    {
      if (n > MAX (VPS_GRPC_MAX_VALUE * 16, 65536))
        return FALSE;
      if (*p == '\r' && p[1] == '\n')
        p++;
      if (*p == '\n' || *p == '\r')
        {
          if (p[1] != ' ' && p[1] != '\t')
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
valid_header_name (const char *s)
{
  if (s[0] == '\0')
    return FALSE;
  for (gsize n = 0; s[n]; n++)
    if (n >= VPS_GRPC_MAX_NAME || !g_ascii_isgraph (s[n]) || s[n] == ':')
      return FALSE;
  return TRUE;
}

/* The raw message of a Message: the bytes, or the parsed headers joined
 * with CRLF, a blank line and the body. */
static GBytes *
message_bytes (Vps__V1__Message *m, GString *why)
{
  if (m->content_case == VPS__V1__MESSAGE__CONTENT_RAW)
    {
      if (m->raw.len == 0)
        {
          g_string_assign (why, "message.raw: empty");
          return NULL;
        }
      return g_bytes_new (m->raw.data, m->raw.len);
    }
  if (m->content_case == VPS__V1__MESSAGE__CONTENT_PARSED && m->parsed != NULL)
    {
      Vps__V1__ParsedMessage *pm = m->parsed;
      GString *s;

      if (pm->n_headers > VPS_GRPC_MAX_HEADERS)
        {
          g_string_assign (why, "message.parsed.headers: too many");
          return NULL;
        }
      s = g_string_new (NULL);
      for (size_t i = 0; i < pm->n_headers; i++)
        {
          if (!valid_header_name (pm->headers[i]->name)
              || !valid_header_value (pm->headers[i]->value))
            {
              g_string_printf (why, "message.parsed.headers[%zu]: invalid name or value", i);
              g_string_free (s, TRUE);
              return NULL;
            }
          g_string_append_printf (s, "%s: %s\r\n", pm->headers[i]->name, pm->headers[i]->value);
        }
      g_string_append (s, "\r\n");
      g_string_append_len (s, (const char *)pm->body.data, (gssize)pm->body.len);
      return g_string_free_to_bytes (s);
    }
  g_string_assign (why, "message: raw or parsed is required");
  return NULL;
}

/* Put the request's values for `stage` into the session and txn.  FALSE
 * with the reason in `why` (INVALID_ARGUMENT, or FAILED_PRECONDITION when
 * *precondition is set). */
static gboolean
apply_request (Vps__V1__CheckRequest *in, RulesStage stage, VpsSession *session, VpsTxn *txn,
               GString *why, gboolean *precondition)
{
  g_autoptr (GPtrArray) params = NULL;
  const char *bad = NULL;

  if (in->n_macros > VPS_GRPC_MAX_MACROS)
    return g_string_assign (why, "macros: too many"), FALSE;
  for (size_t i = 0; i < in->n_macros; i++)
    if (!valid_text (in->macros[i]->name, VPS_GRPC_MAX_NAME) || in->macros[i]->name[0] == '\0'
        || !valid_text (in->macros[i]->value, VPS_GRPC_MAX_VALUE))
      return g_string_printf (why, "macros[%zu]: invalid name or value", i), FALSE;
  if (in->tls != NULL
      && (!valid_text (in->tls->version, VPS_GRPC_MAX_NAME)
          || !valid_text (in->tls->cipher, VPS_GRPC_MAX_NAME)
          || !valid_text (in->tls->peer_subject, VPS_GRPC_MAX_VALUE)))
    return g_string_assign (why, "tls: control characters or too long"), FALSE;
  if (in->auth != NULL
      && (!valid_text (in->auth->user, VPS_GRPC_MAX_VALUE)
          || !valid_text (in->auth->mechanism, VPS_GRPC_MAX_NAME)))
    return g_string_assign (why, "auth: control characters or too long"), FALSE;

  switch (stage)
    {
      case RULES_STAGE_CONNECT:
        {
          g_autoptr (GInetAddress) ip = NULL;

          if (in->client == NULL || in->client->ip[0] == '\0')
            return g_string_assign (why, "client: required at connect"), FALSE;
          ip = strlen (in->client->ip) < 64 ? g_inet_address_new_from_string (in->client->ip)
                                            : NULL;
          if (ip == NULL || in->client->port > 65535 || in->client->server_port > 65535
              || !valid_text (in->client->ptr, VPS_GRPC_MAX_NAME)
              || !valid_text (in->client->server_ip, 64)
              || !valid_text (in->client->server_name, VPS_GRPC_MAX_NAME))
            return g_string_assign (why, "client: ip is not an IP address, or a bad port/name"),
                   FALSE;
        }
        break;
      case RULES_STAGE_HELO:
        if (in->helo[0] == '\0' || !valid_text (in->helo, VPS_GRPC_MAX_NAME))
          return g_string_assign (why, "helo: required at helo, printable, at most 255"), FALSE;
        break;
      case RULES_STAGE_AUTH:
        if (in->auth == NULL)
          return g_string_assign (why, "auth: required at auth"), FALSE;
        break;
      case RULES_STAGE_MAIL:
        if (in->sender == NULL)
          return g_string_assign (why, "sender: required at mail"), FALSE;
        if (!check_address (in->sender, "sender", why))
          return FALSE;
        break;
      case RULES_STAGE_RCPT:
      case RULES_STAGE_DELIVERY:
        if (in->recipient == NULL)
          return g_string_assign (why, "recipient: required at rcpt and delivery"), FALSE;
        if (!check_address (in->recipient, "recipient", why))
          return FALSE;
        break;
      case RULES_STAGE_DATA:
      case RULES_STAGE_POSTQ:
        if (in->message == NULL)
          return g_string_assign (why, "message: required at data and postq"), FALSE;
        break;
      default:
        break;
    }
  if (!valid_text (in->queue_id, VPS_GRPC_MAX_NAME))
    return g_string_assign (why, "queue_id: control characters or too long"), FALSE;

  /* everything checked: now change the session */
  if (in->reset)
    vps_txn_reset (txn);
  for (size_t i = 0; i < in->n_macros; i++)
    vps_session_set_macro (session, in->macros[i]->name, in->macros[i]->value);
  if (in->tls != NULL)
    vps_session_set_tls (session, in->tls->active, in->tls->version, in->tls->cipher,
                         in->tls->peer_subject);
  if (in->auth != NULL)
    vps_session_set_auth (session, in->auth->authenticated, in->auth->user, in->auth->mechanism);
  switch (stage)
    {
      case RULES_STAGE_CONNECT:
        vps_session_set_client (session, in->client->ip, (guint16)in->client->port,
                                in->client->ptr);
        vps_session_set_server (session, in->client->server_ip, (guint16)in->client->server_port,
                                in->client->server_name);
        break;
      case RULES_STAGE_HELO:
        vps_session_set_helo (session, in->helo);
        break;
      case RULES_STAGE_MAIL:
        /* a second MAIL starts the next message of the session */
        if (vps_txn_get_sender (txn) != NULL)
          vps_txn_reset (txn);
        params = params_array (in->sender, &bad);
        vps_txn_set_sender (txn, in->sender->address, (const char *const *)params->pdata);
        vps_metrics_count_transaction (VPS_METRICS_FRONTEND_GRPC);
        break;
      case RULES_STAGE_RCPT:
        if (vps_txn_get_sender (txn) == NULL)
          {
            *precondition = TRUE;
            return g_string_assign (why, "rcpt before mail in this session"), FALSE;
          }
        params = params_array (in->recipient, &bad);
        vps_txn_set_rcpt (txn, in->recipient->address, (const char *const *)params->pdata);
        break;
      case RULES_STAGE_DATA:
      case RULES_STAGE_POSTQ:
        {
          g_autoptr (GBytes) raw = message_bytes (in->message, why);
          g_autoptr (VpsMessage) msg = NULL;
          g_autoptr (GError) error = NULL;
          gsize n = 0;
          const char *const *rcpts = vps_txn_get_rcpts (txn, &n);

          if (raw == NULL)
            return FALSE;
          msg = vps_message_new (raw, &error);
          if (msg == NULL)
            return g_string_printf (why, "message: %s", error->message), FALSE;
          /* rcpt.* at data is the last accepted recipient, as the milter
           * {rcpt_addr} macro is at end of message (vps/simulate.c) */
          if (n > 0)
            vps_txn_set_rcpt (txn, rcpts[n - 1], NULL);
          vps_txn_set_message (txn, msg);
          if (stage == RULES_STAGE_POSTQ)
            vps_txn_set_queue_id (txn, in->queue_id[0] ? in->queue_id : vps_txn_get_id (txn));
        }
        break;
      case RULES_STAGE_DELIVERY:
        params = params_array (in->recipient, &bad);
        vps_txn_set_rcpt (txn, in->recipient->address, (const char *const *)params->pdata);
        if (in->queue_id[0] != '\0')
          vps_txn_set_queue_id (txn, in->queue_id);
        break;
      default:
        break;
    }
  return TRUE;
}

/* ---- Check ---------------------------------------------------------------- */

typedef struct
{
  char *id;
  guint64 serial;
  VpsEngine *engine;
  VpsSession *session;
  VpsTxn *txn;
  RulesStage stage;
} CheckState;

static void
check_state_free (gpointer data)
{
  CheckState *st = data;

  g_clear_pointer (&st->txn, vps_txn_unref);
  g_clear_pointer (&st->session, vps_session_unref);
  g_clear_pointer (&st->engine, vps_engine_unref);
  g_free (st->id);
  g_free (st);
}

/* The call is over: the session may take the next one. */
static void
release_session (VpsGrpcServer *server, CheckState *st)
{
  VpsGrpcSessions *t = server->sessions;
  Sess *s;

  g_mutex_lock (&t->lock);
  s = g_hash_table_lookup (t->table, st->id);
  if (s != NULL && s->serial == st->serial)
    {
      s->busy = FALSE;
      s->last_used = g_get_monotonic_time ();
    }
  g_mutex_unlock (&t->lock);
}

static void
check_done (GObject *source, GAsyncResult *res, gpointer data)
{
  VpsGrpcReq *req = data;
  CheckState *st = req->data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsStageResult) r = vps_engine_run_stage_finish (st->engine, res, &error);
  Vps__V1__CheckResponse out;
  Vps__V1__StageResult result;
  VpsGrpcArena arena;

  release_session (req->server, st);
  /* past the deadline the client gave up: a connector cancelled at the
   * deadline may have produced its on_error verdict, which nobody reads */
  if (r != NULL && vps_grpc_req_deadline_passed (req))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_DEADLINE_EXCEEDED, "stage %s: deadline passed",
                         rules_stage_name (st->stage));
      return;
    }
  if (r == NULL)
    {
      if (vps_grpc_req_deadline_passed (req))
        vps_grpc_req_fail (req, VPS_GRPC_STATUS_DEADLINE_EXCEEDED, "stage %s: %s",
                           rules_stage_name (st->stage), error->message);
      else if (g_error_matches (error, VPS_ENGINE_ERROR, VPS_ENGINE_ERROR_STAGE))
        vps_grpc_req_fail (req, VPS_GRPC_STATUS_FAILED_PRECONDITION, "%s", error->message);
      else
        vps_grpc_req_fail (req, VPS_GRPC_STATUS_INTERNAL, "%s", error->message);
      return;
    }
  /* a recipient not refused joins the accepted list, as an MTA would */
  if (st->stage == RULES_STAGE_RCPT && r->verdict != RULES_VERDICT_REJECT
      && r->verdict != RULES_VERDICT_TEMPFAIL && r->verdict != RULES_VERDICT_DISCARD)
    vps_txn_accept_rcpt (st->txn);

  vps_grpc_arena_init (&arena);
  vps__v1__check_response__init (&out);
  out.session_id = st->id;
  out.transaction_id = (char *)vps_txn_get_id (st->txn);
  vps_grpc_stage_result_to_pb (&arena, r, &result);
  out.result = &result;
  out.modifications = vps_grpc_modifications_to_pb (&arena, st->txn, &out.n_modifications);
  vps_grpc_req_reply (req, &out.base);
  vps_grpc_arena_clear (&arena);
}

void
vps_grpc_policy_check (VpsGrpcReq *req)
{
  Vps__V1__CheckRequest *in = (gpointer)req->request;
  VpsGrpcSessions *t = req->server->sessions;
  g_autoptr (GString) why = g_string_new (NULL);
  gboolean precondition = FALSE;
  CheckState *st;
  RulesStage stage;
  Sess *s;

  if (!vps_grpc_stage_from_pb (in->stage, &stage))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT,
                         "stage: %d is not a stage (CONNECT..DELIVERY)", (int)in->stage);
      return;
    }
  g_mutex_lock (&t->lock);
  s = g_hash_table_lookup (t->table, in->session_id);
  if (s == NULL && t->max > 0 && g_hash_table_size (t->table) >= t->max)
    expire_locked (t);
  if (s == NULL && t->max > 0 && g_hash_table_size (t->table) >= t->max)
    {
      g_mutex_unlock (&t->lock);
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_RESOURCE_EXHAUSTED,
                         "%u sessions live ([grpc] max_sessions); end some with EndSession",
                         t->max);
      return;
    }
  if (s == NULL)
    {
      s = g_new0 (Sess, 1);
      s->id = g_strdup (in->session_id);
      s->serial = ++t->next_serial;
      s->engine = vps_daemon_get_engine (req->server->daemon);
      s->session = vps_session_new ();
      s->txn = vps_txn_new (s->session);
      g_hash_table_insert (t->table, s->id, s);
      vps_info (vps_session_get_id (s->session), "grpc: session '%s' from %s", s->id,
                vps_grpc_call_get_peer (req->call));
    }
  else if (s->busy)
    {
      g_mutex_unlock (&t->lock);
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_ABORTED,
                         "another call of session '%s' is still running", in->session_id);
      return;
    }
  s->busy = TRUE;
  s->last_used = g_get_monotonic_time ();
  st = g_new0 (CheckState, 1);
  st->id = g_strdup (s->id);
  st->serial = s->serial;
  st->engine = vps_engine_ref (s->engine);
  st->session = vps_session_ref (s->session);
  st->txn = vps_txn_ref (s->txn);
  st->stage = stage;
  g_mutex_unlock (&t->lock);
  req->data = st;
  req->data_free = check_state_free;

  if (!apply_request (in, stage, st->session, st->txn, why, &precondition))
    {
      release_session (req->server, st);
      vps_grpc_req_fail (req,
                         precondition ? VPS_GRPC_STATUS_FAILED_PRECONDITION
                                      : VPS_GRPC_STATUS_INVALID_ARGUMENT,
                         "%s", why->str);
      return;
    }
  if (!vps_grpc_req_arm_deadline (req))
    {
      release_session (req->server, st);
      return;
    }
  vps_engine_run_stage_async (st->engine, st->session, st->txn, stage, req->cancellable, check_done,
                              req);
}

/* ---- EndSession ----------------------------------------------------------- */

void
vps_grpc_policy_end_session (VpsGrpcReq *req)
{
  Vps__V1__EndSessionRequest *in = (gpointer)req->request;
  VpsGrpcSessions *t = req->server->sessions;
  Vps__V1__EndSessionResponse out;

  if (!valid_session_id (in->session_id))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "session_id: required");
      return;
    }
  vps__v1__end_session_response__init (&out);
  g_mutex_lock (&t->lock);
  /* a call still running keeps its own references and finds no entry */
  out.existed = g_hash_table_remove (t->table, in->session_id);
  g_mutex_unlock (&t->lock);
  vps_grpc_req_reply (req, &out.base);
}

/* ---- Evaluate ------------------------------------------------------------- */

static const char *
json_string (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  return n != NULL && JSON_NODE_HOLDS_VALUE (n) ? json_node_get_string (n) : NULL;
}

static void
evaluate_done (GObject *source, GAsyncResult *res, gpointer data)
{
  VpsGrpcReq *req = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VpsTxn) txn = NULL;
  g_autoptr (JsonObject) report = vps_simulate_run_finish (res, &txn, &error);
  g_autofree char *json = NULL;
  Vps__V1__EvaluateResponse out;
  VpsGrpcArena arena;
  RulesVerdict verdict = RULES_VERDICT_CONTINUE;
  RulesStage stage = RULES_STAGE_CONNECT;
  GPtrArray *stages;

  if (report != NULL && vps_grpc_req_deadline_passed (req))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_DEADLINE_EXCEEDED, "deadline passed");
      return;
    }
  if (report == NULL)
    {
      if (vps_grpc_req_deadline_passed (req))
        vps_grpc_req_fail (req, VPS_GRPC_STATUS_DEADLINE_EXCEEDED, "%s", error->message);
      else if (g_error_matches (error, VPS_SIMULATE_ERROR, VPS_SIMULATE_ERROR_MESSAGE)
               || g_error_matches (error, VPS_SIMULATE_ERROR, VPS_SIMULATE_ERROR_ENVELOPE))
        vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "%s", error->message);
      else
        vps_grpc_req_fail (req, VPS_GRPC_STATUS_INTERNAL, "%s", error->message);
      return;
    }
  vps_grpc_arena_init (&arena);
  vps__v1__evaluate_response__init (&out);
  if (json_string (report, "verdict") != NULL)
    rules_verdict_from_name (json_string (report, "verdict"), &verdict);
  if (json_string (report, "stage") != NULL)
    rules_stage_from_name (json_string (report, "stage"), &stage);
  out.verdict = vps_grpc_verdict_to_pb (verdict);
  out.stage = vps_grpc_stage_to_pb (stage);
  out.code = (guint32)json_object_get_int_member_with_default (report, "code", 0);
  out.enhanced = (char *)(json_string (report, "enhanced") ? json_string (report, "enhanced") : "");
  out.text = (char *)(json_string (report, "text") ? json_string (report, "text") : "");
  out.quarantine
      = (char *)(json_string (report, "quarantine") ? json_string (report, "quarantine") : "");
  out.quarantine_id
      = (char *)(json_string (report, "quarantine_id") ? json_string (report, "quarantine_id")
                                                       : "");
  stages = vps_txn_get_stage_results (txn);
  if (stages != NULL && stages->len > 0)
    {
      Vps__V1__StageResult *arr = vps_grpc_arena_alloc (&arena, sizeof (*arr) * stages->len);

      out.stages = vps_grpc_arena_alloc (&arena, sizeof (*out.stages) * stages->len);
      out.n_stages = stages->len;
      for (guint i = 0; i < stages->len; i++)
        {
          vps_grpc_stage_result_to_pb (&arena, g_ptr_array_index (stages, i), &arr[i]);
          out.stages[i] = &arr[i];
        }
    }
  out.modifications = vps_grpc_modifications_to_pb (&arena, txn, &out.n_modifications);
  json = vps_report_to_string (report, FALSE);
  out.report_json = json;
  vps_grpc_req_reply (req, &out.base);
  vps_grpc_arena_clear (&arena);
}

void
vps_grpc_policy_evaluate (VpsGrpcReq *req)
{
  Vps__V1__EvaluateRequest *in = (gpointer)req->request;
  g_autoptr (VpsEngine) engine = NULL;
  g_autoptr (GBytes) raw = NULL;
  g_autoptr (GPtrArray) rcpts = g_ptr_array_new ();
  g_autoptr (GString) why = g_string_new (NULL);
  VpsSimulateOptions opts = { 0 };

  if (in->message.len == 0)
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "message: required");
      return;
    }
  if (in->sender != NULL && !check_address (in->sender, "sender", why))
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "%s", why->str);
      return;
    }
  if (in->n_recipients > VPS_GRPC_MAX_RCPTS)
    {
      vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "recipients: more than %d",
                         VPS_GRPC_MAX_RCPTS);
      return;
    }
  for (size_t i = 0; i < in->n_recipients; i++)
    {
      if (in->recipients[i][0] == '\0' || !valid_text (in->recipients[i], VPS_GRPC_MAX_ADDRESS))
        {
          vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT,
                             "recipients[%zu]: empty, control characters or too long", i);
          return;
        }
      g_ptr_array_add (rcpts, in->recipients[i]);
    }
  g_ptr_array_add (rcpts, NULL);
  if (in->client_ip[0] != '\0')
    {
      g_autoptr (GInetAddress) ip
          = strlen (in->client_ip) < 64 ? g_inet_address_new_from_string (in->client_ip) : NULL;
      if (ip == NULL)
        {
          vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "client_ip: not an IP address");
          return;
        }
      opts.client_ip = in->client_ip;
    }
  if (in->helo[0] != '\0')
    {
      if (!valid_text (in->helo, VPS_GRPC_MAX_NAME))
        {
          vps_grpc_req_fail (req, VPS_GRPC_STATUS_INVALID_ARGUMENT, "helo: invalid");
          return;
        }
      opts.helo = in->helo;
    }
  opts.from = in->sender ? in->sender->address : NULL;
  opts.rcpts = in->n_recipients ? (const char *const *)rcpts->pdata : NULL;
  opts.apply = in->apply;
  if (!vps_grpc_req_arm_deadline (req))
    return;
  engine = vps_daemon_get_engine (req->server->daemon);
  raw = g_bytes_new (in->message.data, in->message.len);
  /* the options are copied by the run before it returns */
  vps_simulate_run_async (engine, raw, &opts, req->cancellable, evaluate_done, req);
}
