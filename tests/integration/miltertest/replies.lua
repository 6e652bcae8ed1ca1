-- SPDX-License-Identifier: MIT
-- Each stage's reject / tempfail reaches the MTA as SMFIR_REPLYCODE; the
-- end-of-message one is checked byte for byte (code, enhanced code, text).
-- A rejected recipient refuses only that recipient.
dofile(libdir .. "/lib.lua")

-- connect
local conn = open()
ok(mt.conninfo(conn, "bad.example", "192.0.2.66"), "conninfo")
reply_is(conn, SMFIR_REPLYCODE, "connect reject")
mt.disconnect(conn)

-- helo
conn = open()
ok(mt.conninfo(conn, "client.example", "192.0.2.1"), "conninfo")
reply_is(conn, SMFIR_CONTINUE, "connect")
ok(mt.helo(conn, "evil.example"), "helo")
reply_is(conn, SMFIR_REPLYCODE, "helo reject")
mt.disconnect(conn)

-- mail: reject, then tempfail, then a good sender on the same connection
conn = open()
ok(mt.conninfo(conn, "client.example", "192.0.2.1"), "conninfo")
reply_is(conn, SMFIR_CONTINUE, "connect")
ok(mt.helo(conn, "good.example"), "helo")
reply_is(conn, SMFIR_CONTINUE, "helo")
ok(mt.mailfrom(conn, "<bad@example.com>"), "mail")
reply_is(conn, SMFIR_REPLYCODE, "mail reject")
ok(mt.abort(conn), "abort")
ok(mt.mailfrom(conn, "<tmp@example.com>"), "mail")
reply_is(conn, SMFIR_REPLYCODE, "mail tempfail")
ok(mt.abort(conn), "abort")
ok(mt.mailfrom(conn, "<alice@example.com>"), "mail")
reply_is(conn, SMFIR_CONTINUE, "mail ok")
-- rcpt: one refused, the next accepted, the message goes on
ok(mt.rcptto(conn, "<nobody@example.org>"), "rcpt")
reply_is(conn, SMFIR_REPLYCODE, "rcpt reject")
ok(mt.rcptto(conn, "<bob@example.org>"), "rcpt")
reply_is(conn, SMFIR_CONTINUE, "rcpt ok")
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
header(conn, "Subject", "buy viagra now")
body(conn, "pills\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_REPLYCODE, "data reject")
check(mt.eom_check(conn, MT_SMTPREPLY, "554", "5.7.1", "No pills"), "554 5.7.1 No pills")
check(not mt.eom_check(conn, MT_HDRADD), "no edits with a reject")
mt.disconnect(conn)

-- data reject by sender, exact reply
conn = open()
envelope(conn, "192.0.2.1", "good.example", "<spam@example.com>", {"<bob@example.org>"})
header(conn, "Subject", "hello")
body(conn, "hello\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_REPLYCODE, "data reject")
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Spam here"), "550 5.7.1 Spam here")
mt.disconnect(conn)
mt.echo("PASS")
