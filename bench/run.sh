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
#   state   rate() checks through the engine (bench/state/bench-state.c):
#           memory at 1 stage in flight, and a redis-server started here on
#           a free loopback port at 1 and 64 in flight; a rule without the
#           check as the baseline, and two checks in one condition (one
#           pipelined batch).  BENCH_STATE_CHECKS (default 200000).
#           Goals: memory < 1 µs CPU per check; Redis <= 1 batch (round
#           trip) per stage; >= 20,000 checks/s at 64 in flight.
#
set -eu
build=$1
# The benchmarks start vpsd and vsmtpd with configs that name no [vpsd]
# user: as root they would refuse to start (vps/privs.h).
[ "$(id -u)" = 0 ] && export VPS_ALLOW_ROOT=1
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

# rate() through the engine, in memory and against Redis on loopback.
bench_state() {
	if [ ! -x "$build/bench/bench-state" ]; then
		echo "bench-state: $build/bench/bench-state is missing (build first)" >&2
		return 1
	fi
	checks=${BENCH_STATE_CHECKS:-200000}
	work=$(mktemp -d)
	port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
		>"$work/redis.log" 2>&1 &
	rpid=$!
	trap 'kill $rpid 2>/dev/null; rm -rf "$work"' EXIT
	i=0
	until redis-cli -p "$port" ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			echo "bench-state: redis-server did not start" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "== bench-state: $checks connect stages per setup, 1000 clients, redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$port"
	"$build/bench/bench-state" "$checks" "127.0.0.1:$port" >"$work/out"
	awk '
	  { v[$1] = $2 }
	  function row(label, k) {
	    printf "%-36s %10.2f %10.2f %12.0f %8.2f\n", label, v[k "_us_per_stage"], v[k "_cpu_us_per_stage"], v[k "_stages_per_s"], v[k "_batches_per_stage"]
	  }
	  END {
	    printf "%-36s %10s %10s %12s %8s\n", "setup", "wall µs", "CPU µs", "stages/s", "batches"
	    row("memory, no check", "mem_base_c1")
	    row("memory, rate()", "mem_rate_c1")
	    row("memory, 2x rate()", "mem_rate2_c1")
	    row("redis, no check, 1 in flight", "redis_base_c1")
	    row("redis, rate(), 1 in flight", "redis_rate_c1")
	    row("redis, 2x rate(), 1 in flight", "redis_rate2_c1")
	    row("redis, no check, 64 in flight", "redis_base_c64")
	    row("redis, rate(), 64 in flight", "redis_rate_c64")
	    row("redis, 2x rate(), 64 in flight", "redis_rate2_c64")
	    printf "memory WINDOW op alone (exec_try): %.3f µs\n", v["mem_window_us"]
	    mem = v["mem_rate_c1_cpu_us_per_stage"] - v["mem_base_c1_cpu_us_per_stage"]
	    printf "goal memory < 1 µs CPU per check: %.2f µs, %s\n", mem, (mem < 1) ? "met" : "NOT met"
	    b = v["redis_rate2_c1_batches_per_stage"]
	    printf "goal <= 1 round trip per stage (2 checks): %.2f batches, %s\n", b, (b <= 1.0001) ? "met" : "NOT met"
	    r = v["redis_rate_c64_stages_per_s"]; r2 = 2 * v["redis_rate2_c64_stages_per_s"]
	    best = (r > r2) ? r : r2
	    printf "goal >= 20,000 checks/s against Redis: %.0f (1 check/stage), %.0f (2 checks/stage), %s\n", r, r2, (best >= 20000) ? "met" : "NOT met"
	    printf "failed batches: %d\n", v["redis_rate_c64_failures"] + v["redis_rate2_c64_failures"] + v["redis_rate_c1_failures"]
	  }' "$work/out"
	kill $rpid 2>/dev/null || true
	wait $rpid 2>/dev/null || true
	rm -rf "$work"
	trap - EXIT
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
     bench_state ;;
milter-chain) bench_milter_chain ;;
state) bench_state ;;
*) echo "bench: unknown benchmark '$which'" >&2; exit 2 ;;
esac
