-- SPDX-License-Identifier: MIT
-- ABORT resets the message only: a second message on the same connection
-- is judged on its own (its sender, its edits), the session (HELO) stays.
dofile(libdir .. "/lib.lua")

local conn = open()
envelope(conn, "192.0.2.1", "good.example", "<spam@example.com>", {"<bob@example.org>"})
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
header(conn, "Subject", "first")
ok(mt.abort(conn), "abort")

ok(mt.mailfrom(conn, "<alice@example.com>"), "mail 2")
reply_is(conn, SMFIR_CONTINUE, "mail 2")
ok(mt.rcptto(conn, "<carol@example.org>"), "rcpt 2")
reply_is(conn, SMFIR_CONTINUE, "rcpt 2")
ok(mt.data(conn), "data 2")
reply_is(conn, SMFIR_CONTINUE, "data 2")
header(conn, "Subject", "second")
body(conn, "hello\r\n")
ok(mt.eom(conn), "eom 2")
reply_is(conn, SMFIR_CONTINUE, "second message accepted")
check(mt.eom_check(conn, MT_HDRADD, "X-Scanned", hval(conn, "vps")), "X-Scanned on message 2")

-- and a third after a completed one
ok(mt.mailfrom(conn, "<spam@example.com>"), "mail 3")
reply_is(conn, SMFIR_CONTINUE, "mail 3")
ok(mt.rcptto(conn, "<carol@example.org>"), "rcpt 3")
reply_is(conn, SMFIR_CONTINUE, "rcpt 3")
ok(mt.data(conn), "data 3")
reply_is(conn, SMFIR_CONTINUE, "data 3")
header(conn, "Subject", "third")
body(conn, "hello\r\n")
ok(mt.eom(conn), "eom 3")
reply_is(conn, SMFIR_REPLYCODE, "third message rejected")
mt.disconnect(conn)
mt.echo("PASS")
