#!/bin/sh
# SPDX-License-Identifier: MIT
# start-vpsd.sh BUILD DIR PORT RULES — bench-milter setup: write a vps.conf
# into DIR that makes vpsd a milter on 127.0.0.1:PORT with RULES, then exec
# vpsd in the foreground (bench_milter.py measures and stops it).
set -eu
build=$1 dir=$2 port=$3 rules=$4
cp "$rules" "$dir/rules.vsl"
cat >"$dir/vps.conf" <<CONF
[vpsd]
rules = rules.vsl
[milter]
listen = inet:127.0.0.1:$port
[log]
level = warning
[quarantine]
dir = quarantine
CONF
exec "$build/vps/cmd/vpsd" -c "$dir/vps.conf"
