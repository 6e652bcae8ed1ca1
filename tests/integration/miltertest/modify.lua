-- SPDX-License-Identifier: MIT
-- Every modification a rule can ask for, as SMFIR_* packets at end of
-- message: add, insert (at the top), change and delete headers, change the
-- sender, add and delete recipients, replace the body.
dofile(libdir .. "/lib.lua")

local conn = open()
envelope(conn, "192.0.2.1", "good.example", "<mods@example.com>",
         {"<bob@example.org>", "<carol@example.org>"})
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
header(conn, "From", "mods@example.com")
header(conn, "Subject", "hello")
header(conn, "X-Remove", "one")
header(conn, "X-Remove", "two")
body(conn, "old body\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_CONTINUE, "eom")
check(mt.eom_check(conn, MT_HDRADD, "X-Added", hval(conn, "added")), "X-Added added")
check(mt.eom_check(conn, MT_HDRINSERT, "X-Top", hval(conn, "top"), 0), "X-Top inserted at 0")
check(mt.eom_check(conn, MT_HDRCHANGE, "Subject", hval(conn, "changed")), "Subject changed")
check(mt.eom_check(conn, MT_HDRDELETE, "X-Remove"), "X-Remove deleted")
check(mt.eom_check(conn, MT_RCPTADD, "<added@example.org>"), "recipient added")
check(mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>"), "recipient deleted")
check(mt.eom_check(conn, MT_BODYCHANGE, "new body\r\n"), "body replaced")
-- the rule ended with its edits; later rules still ran
check(mt.eom_check(conn, MT_HDRADD, "X-Scanned", hval(conn, "vps")), "X-Scanned added")
mt.disconnect(conn)
mt.echo("PASS")
