#!/usr/bin/env bash
# Where the worker's CPU goes: drain scenario 2's rows (20 KB images,
# latency 0) on a throwaway cluster and stand-in, with perf recording the
# worker's call stacks, and print the worker's CPU per image and the top of
# the profile, each sample counted once under the innermost function of
# the extension (or the library) it was in.  BENCHMARKS.md quotes it.
#
#   bash test/bench/profile.sh                 (as root; 3 drains of 2000 rows, the last one profiled)
#   bash test/bench/profile.sh --rows 5000 --drains 2 --keep
#
# Needs perf (Debian's linux-perf, installed if missing) and root, which
# perf needs to follow another user's process.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

rows=2000
drains=3
keep=0
while [ $# -gt 0 ]; do
	case $1 in
		--rows) rows=${2:?}; shift ;;
		--drains) drains=${2:?}; shift ;;
		--keep) keep=1 ;;
		-h|--help) sed -n '2,13p' "$0"; exit 0 ;;
		*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" -eq 0 ] || { echo "run this as root (perf follows the postgres user's worker)" >&2; exit 1; }

ik_install_deps
if ! command -v perf >/dev/null; then
	ik_log "installing linux-perf"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
fi
ik_build_install

ik_bench_dir "$keep"
work=$IK_BENCH_DIR
ik_bench_start private_profile
psql_() { ik_bench_psql "$@"; }

pid=
for _ in $(seq 1 200); do
	pid=$(psql_ -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'imagekit worker'")
	[ -n "$pid" ] && break
	sleep 0.05
done
[ -n "$pid" ] || { echo "no imagekit worker" >&2; exit 1; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)

for d in $(seq 1 "$drains"); do
	psql_ -c "TRUNCATE coffee_images, imagekit.jobs, imagekit.inbox, imagekit.assets, imagekit.job_counts" >/dev/null
	c0=$(cpu)
	if [ "$d" -eq "$drains" ]; then
		perf record -F 2000 -g -o "$work/perf.data" -p "$pid" 2>/dev/null &
		perf_pid=$!
		sleep 0.5
	fi
	psql_ -c "INSERT INTO coffee_images (coffee_id, url)
	          SELECT g, 'http://127.0.0.1:$IK_STANDIN_PORT/source/img-p$d-' || g || '-20000.png'
	            FROM generate_series(1, $rows) g" >/dev/null
	until [ "$(psql_ -c 'SELECT count(*) FROM coffee_images WHERE imagekit_url IS NULL')" = 0 ]; do
		sleep 0.05
	done
	c1=$(cpu)
	if [ "$d" -eq "$drains" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
	fi
	awk -v c="$((c1 - c0))" -v t="$ticks" -v n="$rows" -v d="$d" \
		'BEGIN { printf "drain %d: %d rows, worker CPU %.2f s, %.3f ms per image\n", d, n, c / t, 1000 * c / t / n }'
done

perf script -i "$work/perf.data" 2>/dev/null | python3 "$IK_ROOT/test/bench/perf_top.py"
