-- SPDX-License-Identifier: MIT
-- set_header on the very first header: Postfix mishandles CHGHEADER there
-- (MILTER.md), so vpsd inserts the new header at the top and deletes the
-- old one instead.
dofile(libdir .. "/lib.lua")

local conn = open()
envelope(conn, "192.0.2.1", "good.example", "<first@example.com>", {"<bob@example.org>"})
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
header(conn, "From", "first@example.com")
header(conn, "Subject", "hello")
body(conn, "hello\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_CONTINUE, "eom")
check(mt.eom_check(conn, MT_HDRINSERT, "From", hval(conn, "changed@example.com"), 0),
      "new From inserted at the top")
check(mt.eom_check(conn, MT_HDRDELETE, "From"), "old From deleted")
mt.disconnect(conn)
mt.echo("PASS")
