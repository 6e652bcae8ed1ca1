#!/bin/sh
# SPDX-License-Identifier: MIT
#
# deps.sh — install every Debian 12 package vps needs to build and test.
#
# Idempotent and quiet: when every package is already installed it prints
# nothing and exits 0.  Otherwise it runs apt-get (as root, or through sudo)
# for the missing ones only.  Postfix is preseeded to "No configuration" so
# the install asks no question and starts no system instance.
set -eu

# Build: toolchain and libraries (ARCHITECTURE.md, "Dependencies").
BUILD="meson ninja-build pkg-config gcc clang clang-format
libglib2.0-dev libglib2.0-bin libssl-dev openssl
libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
libcurl4-openssl-dev libclamav-dev libgmime-3.0-dev libjson-glib-dev
libesmtp-dev libmilter-dev libhiredis-dev libsystemd-dev
libclang-rt-14-dev valgrind libpcre2-dev"

# Test peers (TESTING.md, "Real peers").
TEST="postfix swaks miltertest python3-milter opendkim opendkim-tools
postgrey postfix-policyd-spf-python python3-grpcio python3-protobuf
clamav clamav-daemon redis-server dnsmasq-base zip procps iproute2
util-linux psmisc"

# Sendmail (second real MTA) is not installed -- sendmail-bin conflicts with
# postfix; tests/integration/sendmaillib.py fetches and unpacks its .debs.
# What it needs to run and to build its .cf from the installed system:
# m4 (sendmail.cf from the .mc), libwrap0 (a library the sendmail binary
# links that nothing else installs), gcc (above: its LD_PRELOAD shim),
# apt (apt-get download) and dpkg (dpkg -x), both always on Debian.
TEST="$TEST m4 libwrap0"
# vsmtpd's durability tests: strace checks the fsync order before the 250,
# e2fsprogs' chattr makes a rename fail; openssl makes test certificates.
TEST="$TEST strace e2fsprogs openssl libssl-dev"
# The Debian package (make deb, tests/integration/test_package.py):
# dpkg-buildpackage with debhelper's meson support, lintian, the adduser of
# the postinst; systemd for `systemd-analyze verify` of the units (it is
# not started: a container keeps its own PID 1).
TEST="$TEST dpkg-dev debhelper fakeroot lintian adduser systemd"
# The metrics endpoint is read by the Prometheus project's own text parser
# (tests/integration/test_operations.py).
TEST="$TEST python3-prometheus-client"

missing=""
for p in $BUILD $TEST; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

echo "deps.sh: installing:$missing" >&2
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# policy-rc.d keeps package postinst scripts from starting system daemons
# (postfix, clamav-daemon, redis, postgrey, opendkim): tests start their own.
prc=/usr/sbin/policy-rc.d
created_prc=0
if [ ! -e "$prc" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$prc" >/dev/null
	$SUDO chmod 755 "$prc"
	created_prc=1
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
[ "$created_prc" -eq 1 ] && $SUDO rm -f "$prc"
exit 0
