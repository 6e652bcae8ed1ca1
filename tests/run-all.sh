#!/bin/sh
# SPDX-License-Identifier: MIT
#
# run-all.sh BUILD FUZZBUILD SECONDS — every test that must pass, then one
# summary line.  Counts individual test cases: each TAP "ok"/"not ok" line of
# a TAP test, each non-TAP test as one case, each fuzz target as one case.
# The last line printed is "N passed, N failed" (", N skipped" when some
# were), and the exit status is 0 only when nothing failed.
set -u
build=${1:-build}
fuzzbuild=${2:-build-fuzz}
seconds=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)

meson test -C "$build" --print-errorlogs --num-processes 2
meson_rc=$?

fuzz_pass=0
fuzz_fail=0
if [ -d "$fuzzbuild" ]; then
	out=$(sh "$here/fuzz/run.sh" "$fuzzbuild" "$seconds")
	echo "$out"
	fuzz_pass=$(echo "$out" | grep -c '^fuzz: PASS' || true)
	fuzz_fail=$(echo "$out" | grep -c '^fuzz: FAIL' || true)
fi

/usr/bin/python3 - "$build/meson-logs/testlog.json" "$fuzz_pass" "$fuzz_fail" "$meson_rc" <<'PY'
import json, re, sys
log, fpass, ffail, mrc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
passed, failed, skipped = fpass, ffail, 0
seen = 0
try:
    lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
except OSError:
    lines = []
for line in lines:
    if not line.strip():
        continue
    t = json.loads(line)
    seen += 1
    res = t.get("result", "")
    out = t.get("stdout") or ""
    if t.get("protocol") == "tap" or re.search(r"^1\.\.\d+", out, re.M):
        ok = len(re.findall(r"^ok \d+(?! # SKIP)", out, re.M))
        sk = len(re.findall(r"^ok \d+ # SKIP", out, re.M))
        nok = len(re.findall(r"^not ok \d+(?! # TODO)", out, re.M))
        passed += ok; skipped += sk; failed += nok
        # a crash, a timeout or a bad plan fails the test as a whole
        if res not in ("OK", "SKIP", "EXPECTEDFAIL") and nok == 0:
            failed += 1
    else:
        if res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif res == "SKIP":
            skipped += 1
        else:
            failed += 1
if seen == 0 or (mrc != 0 and failed == 0):
    failed += 1  # meson itself failed (build error, no tests)
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)
PY
