#!/usr/bin/env bash
# The benchmark: imagekit_ext against the app-side alternative (a Node.js
# worker with the official ImageKit SDK) and against the stand-in's own
# ceiling, on one throwaway cluster and one stand-in ImageKit.  Prints one
# table; see BENCHMARKS.md for what each scenario does and the last results.
#
#   bash test/bench/run.sh                      (as root; the full run takes a while)
#   bash test/bench/run.sh --smoke              (tiny sizes, for CI: < 2 minutes)
#   bash test/bench/run.sh --scenarios 1,2,5    (pick scenarios 1..10)
#   bash test/bench/run.sh --markdown out.md    (also write the table as markdown)
#   bash test/bench/run.sh --keep               (keep the scratch directory and logs)
#
# Exits non-zero only when the harness itself fails (set-up, a drain that
# never ends, a crash); a missed target is reported in the table, not in the
# exit status.  The measuring is done by test/bench/bench.mjs.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_dir=$IK_ROOT/test/bench

smoke=0
scenarios=1,2,3,4,5,6,7,8,9,10
markdown=
keep=0
while [ $# -gt 0 ]; do
	case $1 in
		--smoke) smoke=1 ;;
		--scenarios) scenarios=${2:?--scenarios needs a list, e.g. 1,2,5}; shift ;;
		--scenarios=*) scenarios=${1#*=} ;;
		--markdown) markdown=${2:?--markdown needs a file name}; shift ;;
		--markdown=*) markdown=${1#*=} ;;
		--keep) keep=1 ;;
		-h|--help) sed -n '2,15p' "$0"; exit 0 ;;
		*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
# a relative --markdown path is relative to where the command was run
[ -n "$markdown" ] && case $markdown in /*) ;; *) markdown=$PWD/$markdown ;; esac

ik_install_deps
# node and npm run the app-side worker and the driver; wrk is the load generator
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || { echo "missing: ${missing[*]}; run this as root to install them" >&2; exit 1; }
	ik_log "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
ik_build_install

if [ ! -d "$bench_dir/node_modules/@imagekit/nodejs" ] || [ ! -d "$bench_dir/node_modules/pg" ]; then
	ik_log "installing the app-side worker's packages (npm ci in test/bench)"
	(cd "$bench_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

work=$(ik_workdir)
key=private_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
cleanup() {
	ik_stop_cluster "$work"
	# runuser does not pass SIGTERM on: stop the stand-in itself too
	[ -n "${standin_pid:-}" ] && kill "$standin_pid" 2>/dev/null
	[ -n "${IK_STANDIN_PID:-}" ] && kill "$IK_STANDIN_PID" 2>/dev/null
	if [ "$keep" -eq 1 ] || [ "${status:-1}" -ne 0 ]; then
		echo "benchmark files kept in $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# The stand-in answers in one process per core, so that it is not what
# limits a drain (scenario 2 says how far from that it is).
ik_start_standin "$work" "$key" --processes "$(nproc)"
# The process to measure (and to stop) is python3 itself, which runuser forks.
standin_pid=$IK_STANDIN_PID
for _ in 1 2 3 4 5; do
	[ "$(cat "/proc/$standin_pid/comm" 2>/dev/null)" = python3 ] && break
	child=$(awk '{print $1}' "/proc/$standin_pid/task/$standin_pid/children" 2>/dev/null)
	[ -n "$child" ] && standin_pid=$child
done

port=$((30000 + RANDOM % 10000))
ik_log "starting a throwaway cluster on port $port (scratch directory $work)"
ik_start_bench_cluster "$work" "$port" "$key" \
	"max_connections = 100" \
	"track_commit_timestamp = on"

ik_log "running the benchmark (scenarios $scenarios$([ $smoke -eq 1 ] && echo ', smoke sizes'))"
status=0
node "$bench_dir/bench.mjs" \
	--pghost "$work" --pgport "$port" --pguser postgres --pgdatabase postgres \
	--standin "http://127.0.0.1:$IK_STANDIN_PORT" --standin-pid "$standin_pid" --key "$key" \
	--workdir "$work" --scenarios "$scenarios" \
	$([ $smoke -eq 1 ] && echo --smoke) \
	${markdown:+--markdown "$markdown"} || status=$?
exit $status
