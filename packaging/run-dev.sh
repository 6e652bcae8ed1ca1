#!/bin/sh
# SPDX-License-Identifier: MIT
# `make run`: vpsd and vsmtpd side by side on the development config, in the
# foreground; Ctrl-C (or SIGTERM) stops both.
#   packaging/run-dev.sh BUILD_DIR CONFIG
set -u
build=$1
conf=$2
# The development config names no [vpsd] user: as root (a fresh container)
# the daemons would refuse to start (vps/privs.h), so allow it here only.
[ "$(id -u)" = 0 ] && export VPS_ALLOW_ROOT=1
"$build/mta/vsmtpd" -c "$conf" &
vsmtpd=$!
"$build/vps/cmd/vpsd" -c "$conf" &
vpsd=$!
stop() {
	kill -TERM "$vsmtpd" "$vpsd" 2>/dev/null
}
trap stop INT TERM
# the first one to end stops the other
while kill -0 "$vsmtpd" 2>/dev/null && kill -0 "$vpsd" 2>/dev/null; do
	sleep 1
done
stop
wait
