#!/bin/sh
# SPDX-License-Identifier: MIT
#
# run.sh FUZZBUILD SECONDS — run every libFuzzer target built in FUZZBUILD
# for SECONDS on a copy of its seed corpus (tests/fuzz/corpus/NAME/), and
# print "fuzz: PASS NAME" or "fuzz: FAIL NAME" per target.  Crash inputs
# are kept in FUZZBUILD/crashes/.
set -u
build=$1
seconds=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build/crashes"
for bin in "$build"/tests/fuzz/fuzz-*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	name=$(basename "$bin" | sed 's/^fuzz-//')
	work=$(mktemp -d)
	[ -d "$here/corpus/$name" ] && cp -r "$here/corpus/$name/." "$work/"
	if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/crashes/$name-" "$work" >"$build/fuzz-$name.log" 2>&1; then
		echo "fuzz: PASS $name ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$build/fuzz-$name.log" | grep -o '[0-9]*$' || echo '?') runs)"
	else
		echo "fuzz: FAIL $name (see $build/fuzz-$name.log)"
		tail -n 30 "$build/fuzz-$name.log"
	fi
	rm -rf "$work"
done
