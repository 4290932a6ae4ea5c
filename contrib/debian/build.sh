#!/bin/sh
# Build the Debian package of postern from the top of the source tree:
#   sh contrib/debian/build.sh
# copies contrib/debian to debian/, runs dpkg-buildpackage -us -uc -b -tc
# (-tc: debian/rules clean before and after, so an in-tree build is
# cleaned too),
# moves postern_VERSION_ARCH.deb, .changes and .buildinfo from .. to the
# top of the tree, and removes debian/ again. Needs the Build-Depends of
# contrib/debian/control (contrib/debian-deps.sh installs them).
set -eu
cd "$(dirname "$0")/../.."
[ ! -e debian ] || { echo "build.sh: debian/ exists; remove it first" >&2; exit 1; }
cp -r contrib/debian debian
trap 'rm -rf debian' EXIT
dpkg-buildpackage -us -uc -b -tc
version=$(dpkg-parsechangelog -S Version)
for f in ../postern_"$version"_*.deb ../postern-dbgsym_"$version"_*.deb \
	../postern_"$version"_*.changes ../postern_"$version"_*.buildinfo; do
	if [ -e "$f" ]; then mv -f "$f" .; fi
done
ls -l postern_"$version"_*.deb
