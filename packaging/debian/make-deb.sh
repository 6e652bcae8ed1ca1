#!/bin/sh
# SPDX-License-Identifier: MIT
#
# make-deb.sh OUTDIR — build the vps Debian package from the work tree
# (`make deb` runs it with OUTDIR = build/deb).
#
# The files git knows or would add (tracked, plus untracked ones no
# .gitignore excludes) are copied into OUTDIR/src/vps-VERSION/, with
# packaging/debian as its debian/, and built there with
# `dpkg-buildpackage -us -uc -b`: nothing is written into the source tree,
# so `git status` stays as it was.  The .deb, .buildinfo and .changes end
# up in OUTDIR, with lintian's report in OUTDIR/lintian.txt; lintian
# errors fail the build (warnings do not).
#
# A build is keyed by a hash of those files' names and contents: when
# OUTDIR already holds the package of the same tree it is reused and this
# prints its path at once.  The last line printed is the .deb's path.
# DEB_BUILD_OPTIONS is passed on (e.g. nocheck: skip the unit suite).
set -eu

out=${1:?usage: make-deb.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

cd "$top"
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -n 1)
debversion=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "$version" != "$debversion" ]; then
	echo "make-deb.sh: meson.build says $version, packaging/debian/changelog $debversion" >&2
	exit 1
fi

# One build at a time in OUTDIR (make deb and the package test may race).
exec 9>"$out/.lock"
flock 9

list="$out/.files"
# Files only: a tracked file deleted in the work tree is left out.
# shellcheck disable=SC2016 # $f is the inner shell's
git ls-files -z --cached --others --exclude-standard |
	xargs -0 -r sh -c 'for f; do [ -f "$f" ] && printf "%s\n" "$f"; done' sh |
	LC_ALL=C sort >"$list"
# DEB_BUILD_OPTIONS is part of the key: a nocheck build is not reused for
# a build that should run the unit suite.
key=$( (echo "DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-}"; cat "$list"
	tr '\n' '\0' <"$list" | xargs -0 sha256sum) | sha256sum | cut -c1-64)
deb="$out/vps_${version}_$(dpkg --print-architecture).deb"

if [ -f "$deb" ] && [ "$(cat "$out/key" 2>/dev/null)" = "$key" ]; then
	echo "make-deb.sh: $deb is up to date (tree $key)" >&2
	echo "$deb"
	exit 0
fi

rm -f "$out"/vps_* "$out"/vps-dbgsym_* "$out/key" "$out/lintian.txt"
src="$out/src"
rm -rf "$src"
mkdir -p "$src/vps-$version"
tr '\n' '\0' <"$list" | tar -cf - --null -T - | tar -xf - -C "$src/vps-$version"
cp -a packaging/debian "$src/vps-$version/debian"

echo "make-deb.sh: building vps $version in $src (log: $out/build.log)" >&2
if ! (cd "$src/vps-$version" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
	tail -n 40 "$out/build.log" >&2
	echo "make-deb.sh: dpkg-buildpackage failed; whole log in $out/build.log" >&2
	exit 1
fi
mv "$src"/*.deb "$src"/*.buildinfo "$src"/*.changes "$out"/
rm -rf "$src"

changes=$(ls "$out"/vps_"$version"_*.changes)
if ! lintian --fail-on error --info "$changes" >"$out/lintian.txt" 2>&1; then
	cat "$out/lintian.txt" >&2
	echo "make-deb.sh: lintian reports errors (above)" >&2
	exit 1
fi
echo "$key" >"$out/key"
echo "make-deb.sh: built $deb; lintian: $(grep -c '^[EW]:' "$out/lintian.txt" || true) error/warning line(s), see $out/lintian.txt" >&2
echo "$deb"
