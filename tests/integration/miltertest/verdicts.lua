-- SPDX-License-Identifier: MIT
-- quarantine (SMFIR_QUARANTINE with the name and rule, then continue),
-- discard, accept_all at end of message and at connect.
dofile(libdir .. "/lib.lua")

local conn = open()
envelope(conn, "192.0.2.1", "good.example", "<quarantine@example.com>", {"<bob@example.org>"})
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
header(conn, "Subject", "hold me")
body(conn, "suspicious\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_CONTINUE, "eom after quarantine")
check(mt.eom_check(conn, MT_QUARANTINE), "quarantine asked")
check(mt.eom_check(conn, MT_QUARANTINE, "spam (rule d-quarantine)"), "quarantine reason")
mt.disconnect(conn)

conn = open()
envelope(conn, "192.0.2.1", "good.example", "<discard@example.com>", {"<bob@example.org>"})
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
header(conn, "Subject", "bin me")
body(conn, "x\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_DISCARD, "discard")
mt.disconnect(conn)

conn = open()
envelope(conn, "192.0.2.1", "good.example", "<all@example.com>", {"<bob@example.org>"})
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
header(conn, "Subject", "friend")
body(conn, "x\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_ACCEPT, "accept_all at data")
mt.disconnect(conn)

-- accept_all at connect: the MTA stops asking for this connection
conn = open()
ok(mt.conninfo(conn, "friend.example", "192.0.2.77"), "conninfo")
reply_is(conn, SMFIR_ACCEPT, "accept_all at connect")
mt.disconnect(conn)
mt.echo("PASS")
