#!/bin/sh
# SPDX-License-Identifier: MIT
#
# run-all.sh BUILD FUZZBUILD SECONDS — every test that must pass, then one
# summary line.  Counts individual test cases: each TAP "ok"/"not ok" line of
# a TAP test, each non-TAP test as one case, each fuzz target as one case.
# The last line printed is "N passed, N failed" (", N skipped" when some
# were), and the exit status is 0 only when nothing failed.  Just above it,
# every failed case is named with the last line of its diagnostics: a CI log
# is often read from the tail only.
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
failures = []


def why(out, num):
    """The last diagnostic line TAP printed after "not ok num"."""
    m = re.search(rf"^not ok {num}\b.*?\n((?:#.*\n?)*)", out, re.M)
    diag = [d[1:].strip() for d in (m.group(1).splitlines() if m else []) if d[1:].strip()]
    return diag[-1][:300] if diag else ""


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
        for m in re.finditer(r"^not ok (\d+)(?! # TODO)\s*-?\s*(.*)$", out, re.M):
            failures.append(f"{t.get('name')}: {m.group(2)}: {why(out, m.group(1))}")
        # a crash, a timeout or a bad plan fails the test as a whole
        if res not in ("OK", "SKIP", "EXPECTEDFAIL") and nok == 0:
            failed += 1
            failures.append(f"{t.get('name')}: {res}")
    else:
        if res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif res == "SKIP":
            skipped += 1
        else:
            failed += 1
            failures.append(f"{t.get('name')}: {res}")
if seen == 0 or (mrc != 0 and failed == 0):
    failed += 1  # meson itself failed (build error, no tests)
for f in failures:
    print(f"FAILED {f}")
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)
PY
