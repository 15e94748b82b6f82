#!/usr/bin/env bash
# Runs a command of the project with a given PostgreSQL major: here when this
# machine has (or its Debian release ships) that major, otherwise in a Debian
# chroot that has it.  The command runs from a copy of the project, with
# IK_PG_MAJOR set, so test/lib.sh installs and uses that major.
#
#   bash test/with-pg.sh 18 bash test/run-tests.sh --pg 18
#   bash test/with-pg.sh 19 bash test/chaos/soak.sh --short
#   bash test/with-pg.sh --prepare 17     (only make the chroot, if missing)
#
# The chroots are made with debootstrap (--variant=minbase, about 2 GB each,
# a minute or two) under $IK_CHROOT_DIR (default
# /var/tmp/imagekit_ext-chroots) and kept for the next run:
#   17: trixie;  18: sid;  19: sid, then postgresql-19 from experimental.
# No service starts in them (policy-rc.d) and no cluster is made on install
# (create_main_cluster = false).  /proc, /dev and a tmpfs /dev/shm are
# mounted in a mount namespace of the command's own (unshare), so they go
# away with it, also when it fails; processes it leaves behind are killed.
# Needs root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

prepare_only=0
if [ "${1:-}" = --prepare ]; then
	prepare_only=1
	shift
fi
major=${1:?usage: $0 [--prepare] MAJOR [COMMAND...]}
shift
case " $IK_MAJORS " in
	*" $major "*) ;;
	*) echo "PostgreSQL $major is not supported (supported: $IK_MAJORS)" >&2; exit 2 ;;
esac

# Here when inside a chroot made for this major, when the major is installed,
# or when this Debian release ships it.
host_major() {
	. /etc/os-release
	case ${VERSION_CODENAME:-} in
		bookworm) echo 15 ;;
		trixie) echo 17 ;;
	esac
}
if [ "${IK_IN_CHROOT:-}" = "$major" ] || [ -x "/usr/lib/postgresql/$major/bin/pg_config" ] ||
	[ "$(host_major)" = "$major" ]; then
	[ $prepare_only -eq 1 ] && exit 0
	cd "$IK_ROOT"
	IK_PG_MAJOR=$major IK_PG_BIN=/usr/lib/postgresql/$major/bin exec "$@"
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "PostgreSQL $major runs in a chroot here, which needs root" >&2
	exit 1
fi

mirror=${IK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=${IK_CHROOT_DIR:-/var/tmp/imagekit_ext-chroots}
root=$base/pg$major
case $major in
	17) suite=trixie experimental= ;;
	18) suite=sid experimental= ;;
	19) suite=sid experimental=1 ;;
esac
old_debs="postgresql-15 postgresql-client-15 postgresql-server-dev-15 libicu72 libldap-2.5-0 libxml2"
deps="postgresql-$major postgresql-server-dev-$major libcurl4-openssl-dev libjson-c-dev libipc-run-perl pkg-config make gcc python3 perl procps"
stamp="$suite $mirror $deps"

# in_ns ROOT COMMAND [ARG...]: COMMAND run in the chroot ROOT,
# with /proc, /dev and /dev/shm mounted in a private mount namespace.
in_ns() {
	local r=$1
	shift
	unshare --mount --propagation private -- bash -c '
		r=$1; shift
		mount -t proc proc "$r/proc"
		mount --bind /dev "$r/dev"
		mount -t tmpfs -o mode=1777 shm "$r/dev/shm"
		status=0
		chroot "$r" "$@" || status=$?
		# whatever the command left running in the chroot
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/root" 2>/dev/null)" = "$r" ] && kill -9 "${p#/proc/}" 2>/dev/null
		done
		umount "$r/dev/shm" "$r/dev" "$r/proc" || true
		exit $status
	' in_ns "$r" "$@"
}

make_chroot() {
	local tmp=$root.new
	ik_log "making a $suite chroot for PostgreSQL $major in $root"
	rm -rf "$tmp"
	mkdir -p "$base"
	apt_get_install_host debootstrap
	debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$base/debootstrap-$major.log" 2>&1 || {
		tail -n 20 "$base/debootstrap-$major.log" >&2
		return 1
	}
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 755 "$tmp/usr/sbin/policy-rc.d"
	mkdir -p "$tmp/etc/postgresql-common"
	echo "create_main_cluster = false" >"$tmp/etc/postgresql-common/createcluster.conf"
	# sid's and experimental's Release files may be past their Valid-Until
	echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99imagekit-ext"
	local install="DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
	local script="apt-get update -qq && $install $deps" others
	if [ -n "$experimental" ]; then
		echo "deb $mirror experimental main" >>"$tmp/etc/apt/sources.list"
		# the dependencies from sid, then PostgreSQL itself from experimental
		others=$(echo " $deps " | sed "s/ postgresql-$major / /; s/ postgresql-server-dev-$major / /")
		script="apt-get update -qq && $install $others postgresql-common &&
			$install -t experimental postgresql-$major postgresql-server-dev-$major"
	fi
	in_ns "$tmp" sh -c "$script" >"$base/apt-$major.log" 2>&1 || {
		tail -n 20 "$base/apt-$major.log" >&2
		return 1
	}
	echo "$stamp" >"$tmp/etc/imagekit-ext-chroot"
	rm -rf "$root"
	mv "$tmp" "$root"
}

# PostgreSQL 15 as this Debian release (12) ships it, unpacked beside: the
# old server of the pg_upgrade test (test/t/013_pg_upgrade.pl).  Its
# libraries that the newer suite lacks come along (other sonames).
add_old_major() {
	local r=$1 d missing
	[ "$(host_major)" = 15 ] || return 0
	[ "$(cat "$r/etc/imagekit-ext-old" 2>/dev/null)" = "$old_debs" ] && return 0
	ik_log "unpacking Debian 12's PostgreSQL 15 into $r (the pg_upgrade test's old server)"
	rm -rf "$base/debs-15"
	mkdir -p "$base/debs-15"
	(cd "$base/debs-15" && apt-get download $old_debs >/dev/null 2>&1) || {
		apt-get update -qq
		(cd "$base/debs-15" && apt-get download $old_debs >/dev/null)
	}
	for d in "$base"/debs-15/*.deb; do
		dpkg-deb -x "$d" "$r"
	done
	missing=$(chroot "$r" sh -c 'ldd /usr/lib/postgresql/15/bin/* 2>/dev/null' | grep 'not found' | sort -u || true)
	if [ -n "$missing" ]; then
		echo "PostgreSQL 15 lacks libraries in $r:" >&2
		echo "$missing" >&2
		return 1
	fi
	echo "$old_debs" >"$r/etc/imagekit-ext-old"
}

apt_get_install_host() {
	command -v "$1" >/dev/null && return 0
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

if [ "$(cat "$root/etc/imagekit-ext-chroot" 2>/dev/null)" != "$stamp" ]; then
	make_chroot
fi
add_old_major "$root"
[ $prepare_only -eq 1 ] && exit 0

# A fresh copy of the project (without build products) in the chroot.
rm -rf "$root/imagekit_ext"
ik_copy_tree "$root/imagekit_ext"
in_ns "$root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root LANG=C.UTF-8 IK_IN_CHROOT="$major" IK_PG_MAJOR="$major" \
	IK_ONE_MAJOR="${IK_ONE_MAJOR:-}" \
	bash -c 'cd /imagekit_ext && exec "$@"' with-pg "$@"
