#!/usr/bin/env bash
# Fuzzing: builds the libFuzzer harnesses of test/fuzz/ with clang (ASan and
# UBSan, any report fatal) in a scratch directory, then runs each for SECONDS
# (default 60) on a scratch copy of its seed corpus, so the repository's
# corpus is never touched.  Prints a summary per harness; exits non-zero when
# a harness crashes, leaks, hangs or trips a sanitizer, and then keeps the
# scratch directory with the offending input (set IK_FUZZ_KEEP=1 to keep it
# anyway, e.g. for the grown corpus).  Installs clang and libFuzzer when
# missing (as root).
#
#   bash test/fuzz/run.sh [SECONDS]
#
# Reproduce a crash: <scratch>/fuzz_upload_response <scratch>/artifacts/crash-...
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

secs=${1:-60}
case $secs in
	'' | *[!0-9]*)
		echo "usage: $0 [SECONDS]" >&2
		exit 2
		;;
esac

# what the build needs (pg_config, headers and libpgcommon.a, json-c, curl)
IK_DEPS="postgresql-server-dev-15 postgresql-client-15 libcurl4-openssl-dev libjson-c-dev pkg-config clang-14 libclang-rt-14-dev llvm-14"
ik_install_deps

fuzz_dir=$IK_ROOT/test/fuzz
pg_config=$IK_PG_BIN/pg_config
cc=${IK_FUZZ_CC:-clang-14}
work=$(mktemp -d "${TMPDIR:-/tmp}/imagekit_fuzz.XXXXXX")
status=0
cleanup() {
	if [ $status -eq 0 ] && [ -z "${IK_FUZZ_KEEP:-}" ]; then
		rm -rf "$work"
	else
		echo "fuzzing files kept in $work" >&2
	fi
}
trap cleanup EXIT

cflags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
	-Wall -Werror -Wno-ignored-attributes -DFRONTEND
	-I"$($pg_config --includedir-server)" -I"$IK_ROOT/src"
	$(pkg-config --cflags json-c libcurl))
libs=(-L"$($pg_config --pkglibdir)" -lpgcommon -lpgport
	$(pkg-config --libs json-c libcurl))

ik_log "building the fuzz harnesses in $work"
for h in fuzz_upload_response fuzz_retry_headers; do
	"$cc" "${cflags[@]}" -o "$work/$h" "$fuzz_dir/$h.c" "$IK_ROOT/src/ik_response.c" "${libs[@]}"
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
command -v llvm-symbolizer-14 >/dev/null && export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer-14)

# fuzz NAME DICT MAX_LEN: run one harness; prints its summary line
fuzz() {
	local h=$1 dict=$2 max_len=$3 rc=0 execs rate cov ft corpus crashes
	mkdir -p "$work/corpus/$h" "$work/artifacts"
	cp "$fuzz_dir/corpus/$h/"* "$work/corpus/$h/"
	ik_log "fuzzing $h for $secs s"
	"$work/$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-max_len="$max_len" -dict="$fuzz_dir/$dict" -print_final_stats=1 \
		-artifact_prefix="$work/artifacts/$h-" "$work/corpus/$h" \
		>"$work/$h.log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$h.log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$h.log")
	cov=$(grep -o 'cov: [0-9]*' "$work/$h.log" | tail -n 1 | cut -d' ' -f2 || true)
	ft=$(grep -o 'ft: [0-9]*' "$work/$h.log" | tail -n 1 | cut -d' ' -f2 || true)
	corpus=$(grep -o 'corp: [0-9]*' "$work/$h.log" | tail -n 1 | cut -d' ' -f2 || true)
	crashes=$(find "$work/artifacts" -name "$h-*" -type f | wc -l)
	printf '%-22s %s s, %s execs (%s/s), cov: %s, ft: %s, corpus: %s inputs, crashes: %s\n' \
		"$h" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$crashes"
	if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
		echo "---- $h failed (exit $rc); the end of $work/$h.log:" >&2
		tail -n 60 "$work/$h.log" >&2
		status=1
	fi
}

fuzz fuzz_upload_response json.dict 16384
fuzz fuzz_retry_headers headers.dict 512
[ $status -eq 0 ] && ik_log "fuzzing found nothing"
exit $status
