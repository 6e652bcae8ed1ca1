-- SPDX-License-Identifier: MIT
-- Version 6 with miltertest's full offer: vpsd asks only for what the rules
-- need (test_miltertest.py's RULES): every envelope step with a reply (each
-- has rules), headers and body without reply, no EOH, DATA kept (never
-- NODATA: the 40 ms stall), HDR_LEADSPC, every modification action.
dofile(libdir .. "/lib.lua")

local conn = open(6, nil, nil)
check(not mt.test_option(conn, SMFIP_NOCONNECT), "CONNECT kept")
check(not mt.test_option(conn, SMFIP_NR_CONN), "CONNECT replied (connect rules)")
check(not mt.test_option(conn, SMFIP_NR_RCPT), "RCPT replied (rcpt rules)")
check(not mt.test_option(conn, SMFIP_NODATA), "DATA kept")
check(not mt.test_option(conn, SMFIP_NR_DATA), "DATA replied")
check(mt.test_option(conn, SMFIP_NR_HDR), "headers without reply")
check(mt.test_option(conn, SMFIP_NR_BODY), "body without reply")
check(mt.test_option(conn, SMFIP_NOEOH), "no EOH")
check(mt.test_option(conn, SMFIP_NOUNKNOWN), "no UNKNOWN")
check(mt.test_option(conn, SMFIP_HDR_LEADSPC), "HDR_LEADSPC")
for _, a in ipairs({SMFIF_ADDHDRS, SMFIF_CHGHDRS, SMFIF_CHGBODY, SMFIF_ADDRCPT,
                    SMFIF_ADDRCPT_PAR, SMFIF_DELRCPT, SMFIF_CHGFROM, SMFIF_QUARANTINE}) do
  check(mt.test_action(conn, a), "action " .. a)
end

envelope(conn, "192.0.2.1", "good.example", "<alice@example.com>", {"<bob@example.org>"})
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
header(conn, "From", "alice@example.com")
header(conn, "Subject", "hello")
body(conn, "hello\r\n")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_CONTINUE, "eom")
check(mt.eom_check(conn, MT_HDRADD, "X-Scanned", hval(conn, "vps")), "X-Scanned added")
mt.disconnect(conn)
mt.echo("PASS")
