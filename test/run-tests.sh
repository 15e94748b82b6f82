#!/usr/bin/env bash
# The test command: installs what is missing, builds and installs the
# extension, then runs every suite: pg_regress against a throwaway cluster
# configured for the stand-in ImageKit, and the TAP tests (which start their
# own clusters and stand-ins).  Exits non-zero when any test fails.
#
# Every supported PostgreSQL major in turn (test/lib.sh's IK_MAJORS): the
# one this Debian release ships here, the others each in a Debian chroot
# made for it (test/with-pg.sh), one after another, never in parallel.
#
#   bash test/run-tests.sh            (as root, or as a user with sudo rights)
#   bash test/run-tests.sh --pg 18    (one major only; --pg may be repeated)
#   bash test/run-tests.sh --sanitize (the extension built with ASan and
#                                      UBSan; fails on any sanitizer report)
#   bash test/run-tests.sh --tap test/t/007_scale.pl
#                                     (that TAP test alone, verbose: the
#                                      figures it prints, e.g. 007's)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

sanitize=0
only_tap=
majors=()
pass=()
while [ $# -gt 0 ]; do
	case $1 in
		--sanitize) sanitize=1; pass+=("$1") ;;
		--tap) only_tap=${2:?--tap needs a test file, e.g. test/t/007_scale.pl}; pass+=("$1" "$2"); shift ;;
		--pg) majors+=("${2:?--pg needs a major, one of $IK_MAJORS}"); shift ;;
		*) echo "usage: $0 [--pg MAJOR]... [--sanitize | --tap test/t/NNN_name.pl]" >&2; exit 2 ;;
	esac
	shift
done

if [ -z "${IK_ONE_MAJOR:-}" ]; then
	ik_each_major "${majors[*]-}" test/run-tests.sh ${pass[@]+"${pass[@]}"}
	exit
fi

ik_install_deps

# META.json (PGXN) says the version the control file installs
control_version=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$IK_ROOT/imagekit_ext.control")
if ! python3 - "$IK_ROOT/META.json" "$control_version" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
want = sys.argv[2] + ".0"
got = {meta["version"], meta["provides"]["imagekit_ext"]["version"]}
sys.exit(0 if got == {want} else "META.json says %s, imagekit_ext.control %s" % (sorted(got), want))
PY
then
	echo "FAIL: META.json is not in step with imagekit_ext.control" >&2
	exit 1
fi

work=$(ik_workdir)
key=private_regress_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
status=1
cleanup() {
	ik_stop_cluster "$work"
	ik_stop_standin "$work"
	if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "test files kept in $work" >&2; fi
}
trap cleanup EXIT

# The tests run from a copy the postgres user owns.
ik_copy_tree "$work/src"

if [ $sanitize -eq 1 ]; then
	# The sanitized build is made in the copy and installed into a private
	# copy of the PostgreSQL installation (it is relocatable), never into
	# the system's, where a server started without the ASan runtime could
	# not load it.
	pg=$(dirname "$IK_PG_BIN")
	ver=$(basename "$pg")
	mkdir -p "$work/pg/usr/lib/postgresql" "$work/pg/usr/share/postgresql" "$work/pg/usr/include"
	cp -a "$pg" "$work/pg/usr/lib/postgresql/"
	cp -a "$("$IK_PG_BIN/pg_config" --sharedir)" "$work/pg/usr/share/postgresql/$ver"
	cp -a "$(dirname "$(dirname "$("$IK_PG_BIN/pg_config" --includedir-server)")")" "$work/pg/usr/include/"
	IK_PG_BIN="$work/pg/usr/lib/postgresql/$ver/bin"
	ik_log "building imagekit_ext with SANITIZE=1 into $work/pg"
	make -C "$work/src" -s PG_CONFIG="$IK_PG_BIN/pg_config" SANITIZE=1 >/dev/null
	make -C "$work/src" -s PG_CONFIG="$IK_PG_BIN/pg_config" SANITIZE=1 install >/dev/null

	# The server is not instrumented: every process (the postmasters the
	# suites start, and their clients) runs with the ASan runtime preloaded.
	# Reports go to files in $work/sanitizer, which must stay empty (but
	# for the helper library test/sanitize/asan_early_init.c built there).
	mkdir "$work/sanitizer"
	gcc -shared -fPIC -O2 -o "$work/sanitizer/asan_early_init.so" \
		"$IK_ROOT/test/sanitize/asan_early_init.c" -ldl
	LD_PRELOAD="$(gcc -print-file-name=libasan.so):$work/sanitizer/asan_early_init.so"
	ASAN_OPTIONS="detect_leaks=0:log_path=$work/sanitizer/asan:print_suppressions=0"
	UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/sanitizer/ubsan"
	export LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
else
	# the build must give no warning, on every major and compiler
	IK_MAKE_FLAGS="${IK_MAKE_FLAGS:-} COPT=-Werror" ik_build_install
fi
# An older major beside this one (test/with-pg.sh puts 15 in the chroots of
# the newer ones): the pg_upgrade test starts from it, with the extension
# built for it.
old_bin=/usr/lib/postgresql/15/bin
if [ "$IK_PG_MAJOR" != 15 ] && [ -x "$old_bin/pg_ctl" ] && [ -x "$old_bin/pg_config" ]; then
	ik_log "building and installing imagekit_ext for PostgreSQL 15 too (pg_upgrade test)"
	ik_copy_tree "$work/src15"
	# 15's PGXS would build LLVM bitcode with Debian 12's clang, not here
	make -C "$work/src15" -s PG_CONFIG="$old_bin/pg_config" with_llvm=no >/dev/null
	make -C "$work/src15" -s PG_CONFIG="$old_bin/pg_config" with_llvm=no install >/dev/null
	export IK_OLD_PG_BIN=$old_bin
fi
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$work"

ik_start_standin "$work" "$key"
port=$((50000 + RANDOM % 10000))
ik_start_cluster "$work" "$port" \
	"shared_preload_libraries = 'imagekit_ext'" \
	"imagekit.private_key = '$key'" \
	"imagekit.upload_endpoint = 'http://127.0.0.1:$IK_STANDIN_PORT/api/v1/files/upload'" \
	"imagekit.url_endpoint = 'https://ik.imagekit.io/demo'" \
	"imagekit.database = 'postgres'"

# (imagekit.database: the workers serve postgres only, so that the suites'
# own databases, contrib_regression and isolation_regression, see their
# queues as the SQL left them)
status=0
if [ -n "$only_tap" ]; then
	ik_log "running $only_tap"
	ik_as_postgres make -C "$work/src" -s PG_CONFIG="$IK_PG_BIN/pg_config" \
		REGRESS= ISOLATION= PROVE_TESTS="$only_tap" PROVE_FLAGS=-v installcheck || status=$?
else
	ik_log "testing the stand-in's shared state (test/standin_test.py)"
	ik_as_postgres python3 "$IK_ROOT/test/standin_test.py" || status=$?
	ik_log "running pg_regress and TAP suites"
	ik_as_postgres make -C "$work/src" -s PG_CONFIG="$IK_PG_BIN/pg_config" \
		PGHOST="$work" PGPORT="$port" installcheck || status=$?
fi
if [ $status -ne 0 ]; then
	for f in "$work/src/regression.diffs" "$work/src/output_iso/regression.diffs"; do
		[ -f "$f" ] && cat "$f"
	done
fi
if [ $status -ne 0 ] && [ -d "$work/src/tmp_check/log" ]; then
	for f in "$work/src/tmp_check/log"/regress_log_*; do
		echo "---- $f (tail)"; tail -n 40 "$f"
	done
fi
# reports written at shutdown count too
ik_stop_cluster "$work"
ik_stop_standin "$work"
if [ $sanitize -eq 1 ] && compgen -G "$work/sanitizer/*san.*" >/dev/null; then
	for f in "$work/sanitizer"/*san.*; do
		echo "---- sanitizer report $f"; cat "$f"
	done
	echo "FAIL: sanitizer reports" >&2
	status=1
fi
if grep -qF "$key" "$work/server.log"; then
	echo "FAIL: the private key appears in the server log" >&2
	status=1
fi
[ $status -eq 0 ] && ik_log "all tests passed"
exit $status
