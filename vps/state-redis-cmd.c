/* SPDX-License-Identifier: MIT
 *
 * state-redis-cmd.c — the Redis side of the state operations as a codec
 * without sockets: each VpsStateOp as the command bytes Redis gets
 * (hiredis's redisFormatCommandArgv), and each reply as a VpsStateResult
 * or an error.  Contract: state-private.h.
 *
 * WINDOW and MEMBER_* are Lua scripts (EVAL: one reply each) on the Redis
 * server's clock (TIME), so hosts with skewed clocks agree; INCR is a script
 * too, so that INCRBY and its PEXPIRE NX are one atomic step.
 */
#include "vps/state-private.h"

#include <string.h>

#include <hiredis/hiredis.h>

/* KEYS[1] counter; ARGV delta, ttl ms → {value, 1 if the key was created}. */
static const char script_incr[] = "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                                  "local new = redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX')\n"
                                  "return {v, new}\n";

/* KEYS[1] sorted set of event times (µs, server clock); ARGV limit, ttl ms,
 * a unique member → events in the window including this one.  Scores of
 * exactly now - ttl are out, as in state-memory.c. */
static const char script_window[]
    = "local t = redis.call('TIME')\n"
      "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
      "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]) * 1000)\n"
      "redis.call('ZADD', KEYS[1], now, ARGV[3])\n"
      "redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 2))\n"
      "local n = redis.call('ZCARD', KEYS[1])\n"
      "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
      "return n\n";

/* KEYS[1] sorted set member → expiry (ms, server clock); ARGV add|del|count,
 * member, ttl ms, most members kept → {live members, 1 if it was live}.
 * The key expires with its last member. */
static const char script_member[]
    = "local t = redis.call('TIME')\n"
      "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
      "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
      "local found = 0\n"
      "if ARGV[1] == 'add' then\n"
      "  if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2]) == 0 then found = 1 end\n"
      "  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))\n"
      "elseif ARGV[1] == 'del' then\n"
      "  found = redis.call('ZREM', KEYS[1], ARGV[2])\n"
      "end\n"
      "local n = redis.call('ZCARD', KEYS[1])\n"
      "if n > 0 and ARGV[1] == 'add' then\n"
      "  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')\n"
      "  redis.call('PEXPIREAT', KEYS[1], top[2])\n"
      "end\n"
      "return {n, found}\n";

void
vps_state_redis_append (GByteArray *wire, int argc, const char **argv)
{
  char *cmd = NULL;
  int len = redisFormatCommandArgv (&cmd, argc, argv, NULL);

  /* Only fails when out of memory, which GLib treats as fatal anyway. */
  g_assert (len > 0);
  g_byte_array_append (wire, (const guint8 *)cmd, (guint)len);
  redisFreeCommand (cmd);
}

void
vps_state_redis_format (VpsStateBatch *batch, const VpsStateOp *ops, guint64 nonce, guint64 *seq)
{
  char max_members[24];

  g_snprintf (max_members, sizeof max_members, "%d", VPS_STATE_MAX_MEMBERS);
  batch->wire = g_byte_array_sized_new (256 * batch->n);
  batch->kinds = g_new (guint8, batch->n);
  for (guint i = 0; i < batch->n; i++)
    {
      const VpsStateOp *op = &ops[i];
      char value[24], ttl[24], uniq[48];

      batch->kinds[i] = (guint8)op->kind;
      g_snprintf (value, sizeof value, "%" G_GINT64_FORMAT, op->value);
      g_snprintf (ttl, sizeof ttl, "%" G_GINT64_FORMAT, op->ttl_ms);
      /* SET and SET_NX answer with the value set unless Redis says otherwise. */
      batch->results[i].value = op->value;
      switch (op->kind)
        {
          case VPS_STATE_GET:
            vps_state_redis_append (batch->wire, 2, (const char *[]){ "GET", op->key });
            break;
          case VPS_STATE_INCR:
            vps_state_redis_append (
                batch->wire, 6, (const char *[]){ "EVAL", script_incr, "1", op->key, value, ttl });
            break;
          case VPS_STATE_SET_NX:
            vps_state_redis_append (
                batch->wire, 7, (const char *[]){ "SET", op->key, value, "NX", "GET", "PX", ttl });
            break;
          case VPS_STATE_SET:
            vps_state_redis_append (batch->wire, 6,
                                    (const char *[]){ "SET", op->key, value, "GET", "PX", ttl });
            break;
          case VPS_STATE_WINDOW:
            /* A member unique across hosts and calls: this VpsState's
             * random nonce and a sequence number. */
            g_snprintf (uniq, sizeof uniq, "%016" G_GINT64_MODIFIER "x-%" G_GUINT64_FORMAT, nonce,
                        __atomic_fetch_add (seq, 1, __ATOMIC_RELAXED));
            vps_state_redis_append (
                batch->wire, 7,
                (const char *[]){ "EVAL", script_window, "1", op->key, value, ttl, uniq });
            break;
          case VPS_STATE_MEMBER_ADD:
          case VPS_STATE_MEMBER_DEL:
          case VPS_STATE_MEMBER_COUNT:
            {
              const char *verb = op->kind == VPS_STATE_MEMBER_ADD   ? "add"
                                 : op->kind == VPS_STATE_MEMBER_DEL ? "del"
                                                                    : "count";

              vps_state_redis_append (
                  batch->wire, 8,
                  (const char *[]){ "EVAL", script_member, "1", op->key, verb,
                                    op->member != NULL ? op->member : "",
                                    op->kind == VPS_STATE_MEMBER_ADD ? ttl : "0", max_members });
              break;
            }
          default:
            g_assert_not_reached ();
        }
    }
}

/* Redis error replies → our error codes.  Keys of the wrong kind and
 * arithmetic the interface refuses are INVALID (as in the memory backend);
 * states where Redis cannot serve now are UNAVAILABLE. */
GError *
vps_state_redis_error (const char *address, const char *msg)
{
  static const char *const busy[]
      = { "LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM", "MISCONF", "TRYAGAIN", NULL };

  if (g_str_has_prefix (msg, "NOAUTH"))
    return g_error_new (VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE,
                        "Redis at %s requires a password ([state] password): %.200s", address, msg);
  if (g_str_has_prefix (msg, "WRONGPASS") || strstr (msg, "invalid password") != NULL)
    return g_error_new (VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE,
                        "Redis at %s refused the password ([state] password): %.200s", address,
                        msg);
  if (g_str_has_prefix (msg, "WRONGTYPE"))
    return g_error_new_literal (VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID,
                                "a key holds another kind of value");
  if (strstr (msg, "not an integer") != NULL || strstr (msg, "overflow") != NULL)
    return g_error_new (VPS_STATE_ERROR, VPS_STATE_ERROR_INVALID, "Redis refused: %.200s", msg);
  for (gsize i = 0; busy[i] != NULL; i++)
    if (g_str_has_prefix (msg, busy[i]))
      return g_error_new (VPS_STATE_ERROR, VPS_STATE_ERROR_UNAVAILABLE,
                          "Redis at %s cannot serve now: %.200s", address, msg);
  return g_error_new (VPS_STATE_ERROR, VPS_STATE_ERROR_PROTOCOL, "Redis at %s answered: %.200s",
                      address, msg);
}

static gboolean
reply_int (const redisReply *reply, gint64 *out)
{
  if (reply->type == REDIS_REPLY_INTEGER)
    return (*out = reply->integer, TRUE);
  /* A bulk string holding a decimal number (GET). */
  if (reply->type == REDIS_REPLY_STRING)
    return strlen (reply->str) == reply->len
           && g_ascii_string_to_signed (reply->str, 10, G_MININT64, G_MAXINT64, out, NULL);
  return FALSE;
}

static gboolean
reply_pair (const redisReply *reply, gint64 *a, gint64 *b)
{
  return reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
         && reply->element[0]->type == REDIS_REPLY_INTEGER
         && reply->element[1]->type == REDIS_REPLY_INTEGER && reply_int (reply->element[0], a)
         && reply_int (reply->element[1], b);
}

gboolean
vps_state_redis_take (const char *address, VpsStateBatch *batch, guint i, const redisReply *reply,
                      GError **error)
{
  VpsStateResult *res = &batch->results[i];
  gint64 a = 0, b = 0;
  gboolean ok = FALSE;

  if (reply->type == REDIS_REPLY_ERROR)
    {
      *error = vps_state_redis_error (address, reply->str);
      return FALSE;
    }
  switch ((VpsStateOpKind)batch->kinds[i])
    {
      case VPS_STATE_GET:
        ok = reply->type == REDIS_REPLY_NIL || reply_int (reply, &res->value);
        res->found = reply->type != REDIS_REPLY_NIL;
        break;
      case VPS_STATE_INCR:
        ok = reply_pair (reply, &res->value, &b);
        res->found = b == 0;
        break;
      case VPS_STATE_SET_NX:
        /* SET NX GET: nil = it was absent and is now set. */
        ok = reply->type == REDIS_REPLY_NIL || reply_int (reply, &res->value);
        res->found = reply->type != REDIS_REPLY_NIL;
        break;
      case VPS_STATE_SET:
        ok = reply->type == REDIS_REPLY_NIL || reply->type == REDIS_REPLY_STRING;
        res->found = reply->type == REDIS_REPLY_STRING;
        break;
      case VPS_STATE_WINDOW:
        ok = reply->type == REDIS_REPLY_INTEGER && reply_int (reply, &res->value);
        break;
      case VPS_STATE_MEMBER_ADD:
      case VPS_STATE_MEMBER_DEL:
      case VPS_STATE_MEMBER_COUNT:
        ok = reply_pair (reply, &res->value, &a);
        res->found = batch->kinds[i] != VPS_STATE_MEMBER_COUNT && a != 0;
        break;
      default:
        break;
    }
  if (!ok)
    *error = g_error_new (VPS_STATE_ERROR, VPS_STATE_ERROR_PROTOCOL,
                          "Redis at %s: unexpected reply (type %d) to operation %u", address,
                          reply->type, i);
  return ok;
}
