#!/bin/sh
# SPDX-License-Identifier: MIT
# start-chain.sh BUILD DIR PORT — bench-milter-chain setup: a trivial
# libmilter milter on a free port, and vpsd as the milter on 127.0.0.1:PORT
# whose rules `call` it (the milter connector) at data.  Runs until
# SIGTERM, then stops both (the test milter with SIGKILL: libmilter needs
# 5-15 s for SIGTERM and holds no state).
set -eu
build=$1 dir=$2 port=$3
mport=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$build/tests/milters/trivial-milter" -p "inet:$mport@127.0.0.1" >"$dir/trivial.log" 2>&1 &
tm=$!
cat >"$dir/rules.vsl" <<RULES
data { rule "chain" when true => call trivial }
RULES
cat >"$dir/vps.conf" <<CONF
[vpsd]
rules = rules.vsl
drain_timeout = 0s
[milter]
listen = inet:127.0.0.1:$port
[log]
level = warning
[quarantine]
dir = quarantine
[connector trivial]
type = milter
address = inet:127.0.0.1:$mport
timeout = 30s
CONF
# wait until the milter listens, so the first session does not meet a
# refused connect (and the connector's backoff)
i=0
until grep -q "listening on" "$dir/trivial.log" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 500 ] || { echo "trivial-milter did not start" >&2; exit 1; }
	sleep 0.01
done
"$build/vps/cmd/vpsd" -c "$dir/vps.conf" &
vp=$!
trap 'kill $vp 2>/dev/null; kill -9 $tm 2>/dev/null; wait' TERM INT
wait $vp
