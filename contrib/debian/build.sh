#!/bin/sh
# Build the Debian package of postern from the top of the source tree:
#   sh contrib/debian/build.sh
# It copies contrib/debian to debian/, runs dpkg-buildpackage -us -uc -b
# -tc (-tc: debian/rules clean after the build as well as before, so an
# in-tree build of yours is cleaned too), moves postern_VERSION_ARCH.deb
# (and the -dbgsym .deb, .changes and .buildinfo) from .. to the top of
# the tree, and removes debian/ again. Needs the Build-Depends of
# contrib/debian/control (contrib/debian-deps.sh installs them). Keep
# its output outside the tree: dh_autoreconf_clean deletes files that
# changed while autoreconf ran.
set -eu
cd "$(dirname "$0")/../.."
if [ -e debian ]; then
	echo "build.sh: debian/ exists; remove it first" >&2
	exit 1
fi
cp -r contrib/debian debian
trap 'rm -rf debian' EXIT
dpkg-buildpackage -us -uc -b -tc
version=$(dpkg-parsechangelog -S Version)
for f in ../postern_"$version"_*.deb ../postern-dbgsym_"$version"_*.deb \
	../postern_"$version"_*.changes ../postern_"$version"_*.buildinfo; do
	if [ -e "$f" ]; then mv -f "$f" .; fi
done
ls -l postern_"$version"_*.deb
