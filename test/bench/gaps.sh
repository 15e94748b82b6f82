#!/usr/bin/env bash
# How long the worker leaves an HTTP connection idle between a response and
# its next request, in benchmark scenario 1's drain (2000 images of 20 KB,
# the stand-in waiting 50 ms per request, 32 at once), seen from the
# stand-in's side (--trace: when each request arrived and ended, per
# connection).  The time lost to the ideal (4000 x 50 ms / 32) is mostly
# this; BENCHMARKS.md quotes it.
#
#   bash test/bench/gaps.sh                 (as root)
#   bash test/bench/gaps.sh --rows 4000 --keep
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

rows=2000
keep=0
while [ $# -gt 0 ]; do
	case $1 in
		--rows) rows=${2:?}; shift ;;
		--keep) keep=1 ;;
		-h|--help) sed -n '2,10p' "$0"; exit 0 ;;
		*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

ik_install_deps
ik_build_install
ik_bench_dir "$keep"
work=$IK_BENCH_DIR
ik_bench_start private_gaps --latency-ms 50 --trace "$work/trace.txt"
psql_() { ik_bench_psql "$@"; }

xid=$(psql_ -c "BEGIN" -c "INSERT INTO coffee_images (coffee_id, url)
	SELECT g, 'http://127.0.0.1:$IK_STANDIN_PORT/source/img-gaps-' || g || '-20000.png'
	  FROM generate_series(1, $rows) g" -c "SELECT txid_current()" -c "COMMIT")
until [ "$(psql_ -c 'SELECT count(*) FROM coffee_images WHERE imagekit_url IS NULL')" = 0 ]; do
	sleep 0.05
done
psql_ -c "SELECT extract(epoch FROM pg_xact_commit_timestamp('$xid'::xid)),
                 extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) FROM coffee_images" \
	>"$work/walls.txt"

python3 - "$work/trace.txt" "$work/walls.txt" "$rows" <<'PY'
import collections, sys
trace, walls, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0, t1 = (float(x) for x in open(walls).read().split("|"))
reqs = sorted((float(a), float(e), c, m) for c, a, e, m, _ in
              (line.split() for line in open(trace)))
by_conn = collections.defaultdict(list)
for r in reqs:
    by_conn[r[2]].append(r)
gaps = [b[0] - a[1] for rs in by_conn.values() for a, b in zip(rs, rs[1:])]
busy = sum(e - a for a, e, _, _ in reqs)
ideal = 2 * rows * 0.050 / 32
print("%d requests on %d connections; wall %.2f s = %.3f x ideal (%.2f s)"
      % (len(reqs), len(by_conn), t1 - t0, (t1 - t0) / ideal, ideal))
print("first request %.1f ms after the insert's commit; last URL committed %.1f ms after "
      "the last answer" % (1000 * (reqs[0][0] - t0), 1000 * (t1 - max(e for _, e, _, _ in reqs))))
print("a request takes the stand-in %.2f ms on average; %.1f requests in flight on average"
      % (1000 * busy / len(reqs), busy / (t1 - t0)))
def show(what, gaps):
    gaps = sorted(gaps)
    q = lambda f: 1000 * gaps[min(len(gaps) - 1, int(f * len(gaps)))]
    print("%s: mean %.2f ms, p50 %.2f, p90 %.2f, p99 %.2f, max %.1f (%d)"
          % (what, 1000 * sum(gaps) / len(gaps), q(0.5), q(0.9), q(0.99),
             1000 * gaps[-1], len(gaps)))
show("a connection idle between a response and its next request", gaps)
# after a download the worker looks the content up in the database before
# it uploads; after an upload the next job's download needs nothing
for method, what in (("GET", "  after a download"), ("POST", "  after an upload")):
    show(what, [b[0] - a[1] for rs in by_conn.values() for a, b in zip(rs, rs[1:])
                if a[3] == method])
PY
