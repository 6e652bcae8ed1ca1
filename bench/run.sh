#!/bin/sh
# SPDX-License-Identifier: MIT
#
# run.sh BUILD NAME|all — run one benchmark or all of them and print their
# tables.  Method and anchors: BENCH.md of the design notes; every figure is
# measured in this run on this machine, never copied.
#
#   rules   500-rule file over a 20 KB message, every stage, 100k transactions
#           (BENCH_TXNS to change): µs per transaction, RSS growth.
#           Goal: < 200 µs per transaction, flat RSS.
#
#   milter  Postfix alone / + trivial libmilter (all steps, DATA+EOM only),
#           1, 10, 50 sessions (bench/milter/bench_milter.py; BENCH_MILTER_*).
#
#   policy  vpsd as a policy service alone (bench/policy/policy-load at 1
#           and 64 connections, 20 rules, vs a trivial DUNNO server), then
#           Postfix + vpsd vs Postfix + trivial policy server end to end
#           (bench/policy/bench_policy.py; BENCH_POLICY_*).
#           Goals: >= 30,000 req/s at 64 connections; >= 0.95x.
#
#   grpc    vps.v1.Policy/Check on one channel at 1 and 64 calls in flight,
#           20 rules, vpsd CPU per call, p99 at half the best rate
#           (bench/grpc/bench_grpc.py; BENCH_GRPC_*).
#           Goals: >= 25,000 calls/s at 64 in flight; p99 < 5 ms at half.
#
#   connectors  `call X` at data through vpsd's milter, per connector (test,
#           http, exec, clamav, policy, grpc) at 1 and 16 sessions: msgs/s,
#           added EOM latency over `test`, CPU per message; ClamAV MB/s on a
#           1 MB message; fresh sessions during 2 s HTTP calls and ClamAV
#           scans (bench/connectors/bench_connectors.py; BENCH_CONN_*).
#           No goal yet beyond an event loop that is never blocked.
#
#   mta     vsmtpd vs sandboxed Postfix, both receiving into their durable
#           queue and delivering into maildir: smtp-source at 10 and 50
#           sessions, 5 KB and 100 KB, queues on disk and on tmpfs,
#           interleaved rounds; accept and end-to-end msgs/s, CPU per message
#           per daemon/thread, open-loop p50/p99/p99.9 at 30% of Postfix's
#           capacity, vsmtpd RSS with 1000 sessions
#           (bench/mta/bench_mta.py; BENCH_ROUNDS, BENCH_MSGS, BENCH_MTA_*).
#           Goals: >= 2x Postfix's msgs/s; RSS < 100 MB.
#
# Benchmarks of later issues (state) are listed as not available until
# their front ends exist.
set -eu
build=$1
which=${2:-all}
here=$(cd "$(dirname "$0")" && pwd)

bench_rules() {
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	/usr/bin/python3 "$here/gen-rules.py" "$work" >/dev/null
	txns=${BENCH_TXNS:-100000}
	echo "== bench-rules: $(grep -c '^  rule' "$work/rules.vsl") rules, $(wc -c <"$work/msg.eml") byte message, $txns transactions"
	"$build/bench/bench-rules" "$work/rules.vsl" "$work/msg.eml" "$txns" >"$work/out"
	awk '
	  { v[$1] = $2 }
	  END {
	    printf "%-34s %10s\n", "metric", "value"
	    printf "%-34s %10.1f\n", "wall µs / transaction", v["wall_us_per_txn"]
	    printf "%-34s %10.1f\n", "CPU µs / transaction", v["cpu_us_per_txn"]
	    printf "%-34s %10.1f\n", "  of which message parse (GMime)", v["parse_us_per_msg"]
	    printf "%-34s %10.1f\n", "  rules and engine", v["rules_us_per_txn"]
	    printf "%-34s %10s\n", "RSS KB at 1% / 10%", v["rss_kb_at_1pct"] " / " v["rss_kb_at_10pct"]
	    printf "%-34s %10s\n", "RSS KB at 50% / 100%", v["rss_kb_at_50pct"] " / " v["rss_kb_at_100pct"]
	    goal = (v["wall_us_per_txn"] < 200) ? "met" : "NOT met"
	    printf "goal < 200 µs per transaction: %s\n", goal
	    growth = v["rss_kb_at_100pct"] - v["rss_kb_at_10pct"]
	    printf "RSS growth from 10%% to 100%% of the run: %d KB\n", growth
	  }' "$work/out"
	rm -rf "$work"
	trap - EXIT
}

# The milter baselines: sandboxed Postfix alone and with trivial libmilter
# milters (all steps; DATA+EOM only), smtp-source at 1, 10 and 50 sessions,
# 5 KB messages relayed to smtp-sink; interleaved rounds, ratios per round.
# Sizes and setups through BENCH_MILTER_* (bench/milter/bench_milter.py).
bench_milter() {
	if [ ! -x "$build/tests/milters/trivial-milter" ]; then
		echo "bench-milter: $build/tests/milters/trivial-milter is missing (libmilter-dev?)" >&2
		return 1
	fi
	/usr/bin/python3 "$here/milter/bench_milter.py" --build "$build"
	echo "== bench-milter: vpsd memory with ${BENCH_MILTER_RSS_SESSIONS:-500} concurrent milter sessions"
	/usr/bin/python3 "$here/milter/rss_sessions.py" "$build" "${BENCH_MILTER_RSS_SESSIONS:-500}"
}

# vpsd as a Postfix policy service: alone with a load generator, and
# behind Postfix against a trivial policy server (bench/policy/).
bench_policy() {
	if [ ! -x "$build/bench/policy/policy-load" ]; then
		echo "bench-policy: $build/bench/policy/policy-load is missing (build first)" >&2
		return 1
	fi
	/usr/bin/python3 "$here/policy/bench_policy.py" "$build"
}

# What a `call` costs per connector against local endpoints, and whether
# the event loop stays free during slow calls (bench/connectors/).
bench_connectors() {
	/usr/bin/python3 "$here/connectors/bench_connectors.py" "$build"
}

# vps.v1.Policy/Check against vpsd: bench/grpc/grpc-load (C, one channel)
# at 1 and 64 calls in flight, vpsd's CPU per call, p99 at half the rate.
bench_grpc() {
	if [ ! -x "$build/bench/grpc/grpc-load" ]; then
		echo "bench-grpc: $build/bench/grpc/grpc-load is missing (build first)" >&2
		return 1
	fi
	/usr/bin/python3 "$here/grpc/bench_grpc.py" "$build"
}

# Postfix -> vpsd -> trivial libmilter milter (the milter connector) vs
# Postfix -> the same milter directly, same run (bench/milter-chain).
bench_milter_chain() {
	out=$(mktemp)
	BENCH_MILTER_SESSIONS=${BENCH_MILTER_SESSIONS:-1,10} \
		/usr/bin/python3 "$here/milter/bench_milter.py" --build "$build" \
		--setups-file "$here/milter-chain/setups.json" \
		--setups postfix,libmilter-all,vpsd-chain --json "$out" || { rm -f "$out"; return 1; }
	/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
runs = [r for r in json.load(open(sys.argv[1])) if not r.get("error")]
rate = {}
for r in runs:
    rate.setdefault((r["setup"], r["sessions"]), []).append(r["e2e_rate"])
for c in sorted({s for _, s in rate}):
    d, v = rate.get(("libmilter-all", c)), rate.get(("vpsd-chain", c))
    if d and v:
        ratio = statistics.median(v) / statistics.median(d)
        print(f"vpsd-chain / libmilter-all at c={c}: {ratio:.2f}x "
              f"(goal >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
PY
	rm -f "$out"
}

# vsmtpd against Postfix, both durable, both delivering into maildir
# (bench/mta/README.md).
bench_mta() {
	if [ ! -x "$build/mta/vsmtpd" ]; then
		echo "bench-mta: $build/mta/vsmtpd is missing (build first)" >&2
		return 1
	fi
	/usr/bin/python3 "$here/mta/bench_mta.py" --build "$build"
}

case "$which" in
rules) bench_rules ;;
milter) bench_milter ;;
policy) bench_policy ;;
grpc) bench_grpc ;;
connectors) bench_connectors ;;
mta) bench_mta ;;
all) bench_rules
     bench_milter
     bench_policy
     bench_grpc
     bench_connectors
     bench_milter_chain
     bench_mta
     for b in state; do
	     echo "== bench-$b: not available yet (its front end or connector has not landed)"
     done ;;
milter-chain) bench_milter_chain ;;
state)
	echo "bench-$which: not available yet (its front end or connector has not landed)"; exit 1 ;;
*) echo "bench: unknown benchmark '$which'" >&2; exit 2 ;;
esac
