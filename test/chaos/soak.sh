#!/usr/bin/env bash
# The chaos soak: drains rows through the pipeline while it injects faults at
# random (SIGKILL of a worker, pg_ctl restart -m immediate, the stand-in
# answering 500/503/429, dropping or truncating answers, too slow, killed for
# 20 s, frozen), then retries the fallbacks against a healthy stand-in and
# checks that nothing was lost: every row done (or a fallback for a missing
# source), with the CDN URL of its own content, no duplicate asset, no content
# stored under two names, the private key absent from the log, the workers'
# memory flat.  Prints a table; exits non-zero when a check fails.
#
#   bash test/chaos/soak.sh                   (as root: 20 000 rows, about 11 minutes)
#   bash test/chaos/soak.sh --short           (the CI size: 2 000 rows, a few faults, under 2 minutes)
#   bash test/chaos/soak.sh --rows N --seed S --span SECONDS
#   bash test/chaos/soak.sh --markdown out.md (also write the summary and table as markdown)
#   bash test/chaos/soak.sh --keep            (keep the scratch directory even on success)
#
# The same seed gives the same rows and the same fault plan (the timing of
# the system under test still varies).  The driver is test/chaos/soak.py; it
# runs as the postgres user, like the cluster and the stand-in it starts.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

keep=0
args=()
while [ $# -gt 0 ]; do
	case $1 in
		--keep) keep=1 ;;
		--short) args+=("$1") ;;
		--rows|--seed|--span) args+=("$1" "${2:?$1 needs a value}"); shift ;;
		--markdown)
			m=${2:?--markdown needs a file name}; shift
			case $m in /*) ;; *) m=$PWD/$m ;; esac
			markdown=$m ;;
		--rows=*|--seed=*|--span=*) args+=("$1") ;;
		-h|--help) sed -n '2,19p' "$0"; exit 0 ;;
		*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

ik_install_deps
ik_build_install

work=$(ik_workdir)
cleanup() {
	# the driver stops what it started; this is for when it could not
	if [ -s "$work/standin.pid" ]; then
		pid=$(cat "$work/standin.pid")
		kill -CONT "$pid" 2>/dev/null || true
		kill "$pid" 2>/dev/null || true
	fi
	[ -d "$work/data" ] && ik_stop_cluster "$work"
	if [ "${status:-1}" -eq 0 ] && [ "$keep" -eq 0 ]; then
		rm -rf "$work"
	else
		echo "soak files kept in $work (server.log, events.log, standin.log, soak-result.md)" >&2
	fi
}
trap cleanup EXIT

# the driver and the stand-in run from a copy the postgres user can read
mkdir "$work/bin"
cp "$IK_ROOT/test/chaos/soak.py" "$IK_ROOT/test/imagekit_standin.py" "$work/bin/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$work"

ik_log "chaos soak in $work"
status=0
ik_as_postgres python3 -B "$work/bin/soak.py" --work "$work" \
	--pg-bin "$IK_PG_BIN" "${args[@]}" || status=$?
if [ -n "${markdown:-}" ] && [ -f "$work/soak-result.md" ]; then
	cp "$work/soak-result.md" "$markdown"
fi
exit $status
