#!/usr/bin/env bash
# The test command: installs what is missing, builds and installs the
# extension, then runs every suite: pg_regress against a throwaway cluster
# configured for the stand-in ImageKit, and the TAP tests (which start their
# own clusters and stand-ins).  Exits non-zero when any test fails.
#
#   bash test/run-tests.sh            (as root, or as a user with sudo rights)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ik_install_deps
ik_build_install

work=$(ik_workdir)
key=private_regress_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
cleanup() {
	ik_stop_cluster "$work"
	ik_stop_standin "$work"
	if [ "${status:-1}" -eq 0 ]; then rm -rf "$work"; else echo "test files kept in $work" >&2; fi
}
trap cleanup EXIT

# The tests run from a copy the postgres user owns.
mkdir "$work/src"
(cd "$IK_ROOT" && tar --exclude=.git --exclude='*.o' --exclude='*.so' -cf - .) | tar -xf - -C "$work/src"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$work"

ik_start_standin "$work" "$key"
port=$((50000 + RANDOM % 10000))
ik_start_cluster "$work" "$port" \
	"shared_preload_libraries = 'imagekit_ext'" \
	"imagekit.private_key = '$key'" \
	"imagekit.upload_endpoint = 'http://127.0.0.1:$IK_STANDIN_PORT/api/v1/files/upload'" \
	"imagekit.url_endpoint = 'https://ik.imagekit.io/demo'"

ik_log "running pg_regress and TAP suites"
status=0
ik_as_postgres make -C "$work/src" -s PG_CONFIG="$IK_PG_BIN/pg_config" \
	PGHOST="$work" PGPORT="$port" installcheck || status=$?
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
if grep -qF "$key" "$work/server.log"; then
	echo "FAIL: the private key appears in the server log" >&2
	status=1
fi
[ $status -eq 0 ] && ik_log "all tests passed"
exit $status
