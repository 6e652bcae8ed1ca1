-- SPDX-License-Identifier: MIT
-- An MTA speaking protocol version 2 (Sendmail 8.13 style: actions 0x3F,
-- steps 0x7F, no DATA step, no HDR_LEADSPC): vpsd answers version 2 and
-- still filters the message.
dofile(libdir .. "/lib.lua")

-- miltertest puts its third argument on the wire as the protocol steps and
-- the fourth as the actions (the reverse of its manual): 0x7F steps, 0x3F actions.
local conn = open(2, 0x7F, 0x3F)
check(not mt.test_option(conn, SMFIP_HDR_LEADSPC), "no HDR_LEADSPC in version 2")
check(not mt.test_action(conn, SMFIF_CHGFROM), "no CHGFROM in version 2")
envelope(conn, "192.0.2.1", "good.example", "<alice@example.com>", {"<bob@example.org>"})
header(conn, "From", "alice@example.com")
header(conn, "Subject", "hello")
body(conn, "hello\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_CONTINUE, "eom")
check(mt.eom_check(conn, MT_HDRADD, "X-Scanned", "vps"), "X-Scanned added without leading space")
mt.disconnect(conn)

-- A rejected message in version 2 gets the exact reply.
conn = open(2, 0x7F, 0x3F)
envelope(conn, "192.0.2.1", "good.example", "<spam@example.com>", {"<bob@example.org>"})
header(conn, "Subject", "hello")
body(conn, "hello\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_REPLYCODE, "eom")
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Spam here"), "550 5.7.1 Spam here")
mt.disconnect(conn)
mt.echo("PASS")
