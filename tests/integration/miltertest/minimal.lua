-- SPDX-License-Identifier: MIT
-- Rules with one rcpt rule and no quarantine copy: vpsd switches off what
-- nobody reads (CONNECT, HELO, MAIL, the body), answers RCPT, keeps and
-- answers DATA (no NODATA: the 40 ms stall), and asks for no headers: no
-- rule reads or edits them (rules_program_has_effect says so).
dofile(libdir .. "/lib.lua")

local conn = open(6, nil, nil)
check(mt.test_option(conn, SMFIP_NOCONNECT), "NOCONNECT")
check(mt.test_option(conn, SMFIP_NOHELO), "NOHELO")
check(mt.test_option(conn, SMFIP_NOMAIL), "NOMAIL")
check(not mt.test_option(conn, SMFIP_NORCPT), "RCPT kept")
check(not mt.test_option(conn, SMFIP_NR_RCPT), "RCPT replied")
check(not mt.test_option(conn, SMFIP_NODATA), "DATA kept")
check(mt.test_option(conn, SMFIP_NOHDRS), "NOHDRS")
check(mt.test_option(conn, SMFIP_NOBODY), "NOBODY")
ok(mt.rcptto(conn, "<x@blocked.example>"), "rcpt")
reply_is(conn, SMFIR_REPLYCODE, "rcpt reject")
ok(mt.rcptto(conn, "<x@fine.example>"), "rcpt")
reply_is(conn, SMFIR_CONTINUE, "rcpt ok")
ok(mt.data(conn), "data")
reply_is(conn, SMFIR_CONTINUE, "data")
ok(mt.eom(conn), "eom")
reply_is(conn, SMFIR_CONTINUE, "eom")
mt.disconnect(conn)
mt.echo("PASS")
