#!/bin/sh
# SPDX-License-Identifier: MIT
# start-vpsd.sh BUILD DIR PORT RULES — bench-policy setup: write a vps.conf
# into DIR that makes vpsd a policy service on 127.0.0.1:PORT with RULES
# (no milter), then exec vpsd in the foreground.
set -eu
build=$1 dir=$2 port=$3 rules=$4
cp "$rules" "$dir/rules.vsl"
cat >"$dir/vps.conf" <<CONF
[vpsd]
rules = rules.vsl
[policy]
listen = inet:127.0.0.1:$port
[log]
level = warning
[quarantine]
dir = quarantine
names = bench
CONF
exec "$build/vps/cmd/vpsd" -c "$dir/vps.conf"
