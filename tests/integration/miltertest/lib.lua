-- SPDX-License-Identifier: MIT
-- Helpers shared by the miltertest scripts: the driver (test_miltertest.py)
-- passes -D port=PORT; every script ends with mt.echo("PASS").
--
-- miltertest raises a Lua error (exit 1, often silently) when a script
-- calls a step the milter negotiated away: steps that vpsd may switch off
-- go through step(), which checks mt.test_option first.

-- miltertest does not print the message of a Lua error: echo it first.
function fail(msg)
  mt.echo("FAIL: " .. msg)
  error(msg)
end

function check(cond, what)
  if not cond then
    fail(what)
  end
end

-- Each step function returns nil on success or an error string.
function ok(err, what)
  if err ~= nil then
    fail(what .. ": " .. tostring(err))
  end
end

function reply_is(conn, want, what)
  local got = mt.getreply(conn)
  if got ~= want then
    fail(string.format("%s: reply %q, expected %q", what, tostring(got), tostring(want)))
  end
end

function open(version, actions, protocol)
  local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 5, 0.2)
  check(conn ~= nil, "connect to vpsd")
  if version ~= nil then
    ok(mt.negotiate(conn, version, actions, protocol), "negotiate")
  end
  return conn
end

-- A header, unless vpsd negotiated headers away (then nothing is sent).
function header(conn, name, value)
  if mt.test_option(conn, SMFIP_NOHDRS) then
    return
  end
  ok(mt.header(conn, name, value), "header " .. name)
end

function body(conn, text)
  if mt.test_option(conn, SMFIP_NOBODY) then
    return
  end
  ok(mt.bodystring(conn, text), "body")
end

-- The value of a header as vpsd sends it: with a leading space when the
-- MTA (here miltertest) granted HDR_LEADSPC.
function hval(conn, v)
  if mt.test_option(conn, SMFIP_HDR_LEADSPC) then
    return " " .. v
  end
  return v
end

-- One envelope up to the recipients, each step checked for 'c'.
function envelope(conn, ip, helo, from, rcpts)
  ok(mt.conninfo(conn, "client.example", ip), "conninfo")
  reply_is(conn, SMFIR_CONTINUE, "connect")
  ok(mt.helo(conn, helo), "helo")
  reply_is(conn, SMFIR_CONTINUE, "helo")
  ok(mt.mailfrom(conn, from), "mail")
  reply_is(conn, SMFIR_CONTINUE, "mail")
  for _, r in ipairs(rcpts) do
    ok(mt.rcptto(conn, r), "rcpt " .. r)
    reply_is(conn, SMFIR_CONTINUE, "rcpt " .. r)
  end
end
