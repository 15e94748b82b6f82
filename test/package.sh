#!/usr/bin/env bash
# The Debian package: builds it from debian/ with dpkg-buildpackage -us -uc
# (postgresql-<major>-imagekit-ext), installs it and runs its autopkgtest
# (debian/tests/installcheck: pg_regress and isolation against the installed
# package, in a cluster that preloads the library).  Exits non-zero when the
# build or the test fails.
#
#   bash test/package.sh            (as root: every supported major in turn,
#                                    the others than this Debian's in chroots)
#   bash test/package.sh --pg 18    (one major)
#
# The .deb files are left in $IK_PACKAGE_DIR (default /var/tmp/imagekit_ext-debs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

majors=()
while [ $# -gt 0 ]; do
	case $1 in
		--pg) majors+=("${2:?--pg needs a major, one of $IK_MAJORS}"); shift ;;
		*) echo "usage: $0 [--pg MAJOR]..." >&2; exit 2 ;;
	esac
	shift
done

if [ -z "${IK_ONE_MAJOR:-}" ]; then
	ik_each_major "${majors[*]-}" test/package.sh
	exit
fi

IK_DEPS="$IK_DEPS build-essential dpkg-dev debhelper postgresql-server-dev-all autopkgtest"
ik_install_deps

work=$(ik_workdir)
trap 'rm -rf "$work"' EXIT
ik_copy_tree "$work/imagekit-ext"
cd "$work/imagekit-ext"
# debian/control lists the package of this major (where more majors are
# installed, PG_SUPPORTED_VERSIONS=installed would list each of them)
export PG_SUPPORTED_VERSIONS=$IK_PG_MAJOR
pg_buildext updatecontrol >/dev/null
ik_log "dpkg-buildpackage for PostgreSQL $(pg_buildext supported-versions | xargs)"
dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1 || {
	tail -n 40 "$work/build.log" >&2
	exit 1
}
grep -i 'warning:' "$work/build.log" | grep -v 'dpkg-\|dh_\|debian/' >&2 && {
	echo "FAIL: the build warns" >&2
	exit 1
}
deb=$(ls "$work"/postgresql-"$IK_PG_MAJOR"-imagekit-ext_*.deb)
dpkg-deb -c "$deb" | grep "/usr/lib/postgresql/$IK_PG_MAJOR/lib/imagekit_ext.so" >/dev/null ||
	{ echo "FAIL: $deb has no imagekit_ext.so" >&2; exit 1; }
out=${IK_PACKAGE_DIR:-/var/tmp/imagekit_ext-debs}
mkdir -p "$out"
cp "$work"/*.deb "$out/"

ik_log "autopkgtest of $(basename "$deb")"
status=0
autopkgtest "$deb" "$work/imagekit-ext" -- null || status=$?
# the test installed the package: leave the machine as it was
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "postgresql-$IK_PG_MAJOR-imagekit-ext" >/dev/null
exit $status
