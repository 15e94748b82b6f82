# Shared shell functions for test/run-tests.sh, test/demo.sh and benchmarks.
# Source it; it defines functions and a few variables, and runs nothing.

IK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The PostgreSQL majors the project supports and tests (README.md,
# "Supported versions"); IK_PG_MAJOR is the one this process uses.  Majors
# the host's Debian release does not ship run in a chroot (test/with-pg.sh).
IK_MAJORS="15 17 18 19"
IK_PG_MAJOR=${IK_PG_MAJOR:-15}
IK_PG_BIN=${IK_PG_BIN:-/usr/lib/postgresql/$IK_PG_MAJOR/bin}
IK_DEPS="postgresql-$IK_PG_MAJOR postgresql-server-dev-$IK_PG_MAJOR libcurl4-openssl-dev libjson-c-dev libipc-run-perl pkg-config make gcc python3 perl procps"

ik_log() { printf '==> %s\n' "$*" >&2; }

# Install the Debian packages the build and the tests need, if missing.
ik_install_deps() {
	local missing=() p
	for p in $IK_DEPS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]}; run this as root to install them" >&2
		return 1
	fi
	ik_log "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Build and install the extension into the PostgreSQL installation.
ik_build_install() {
	ik_log "building and installing imagekit_ext"
	make -C "$IK_ROOT" -s PG_CONFIG="$IK_PG_BIN/pg_config" ${IK_MAKE_FLAGS:-} >/dev/null
	make -C "$IK_ROOT" -s PG_CONFIG="$IK_PG_BIN/pg_config" ${IK_MAKE_FLAGS:-} install >/dev/null
}

# ik_copy_tree DIR: the project's files, without .git and build products,
# into DIR (made if missing).
ik_copy_tree() {
	mkdir -p "$1"
	(cd "$IK_ROOT" && tar --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - .) |
		tar -xf - -C "$1"
}

# ik_each_major MAJORS SCRIPT [ARG...]: SCRIPT (a path from the project's
# root) with each major of the space-separated MAJORS (every supported one
# when empty) in turn, never in parallel, through test/with-pg.sh, with
# IK_ONE_MAJOR set so that it does its work for that major only.  Prints a
# line per major; returns non-zero when any failed.
ik_each_major() {
	local m t0 failed=0 summary=()
	local -a majors
	read -r -a majors <<<"${1:-$IK_MAJORS}"
	shift
	for m in "${majors[@]}"; do
		ik_log "PostgreSQL $m: $*"
		t0=$SECONDS
		if IK_ONE_MAJOR=1 bash "$IK_ROOT/test/with-pg.sh" "$m" bash "$@"; then
			summary+=("PostgreSQL $m: passed in $((SECONDS - t0)) s ($*)")
		else
			summary+=("PostgreSQL $m: FAILED after $((SECONDS - t0)) s ($*)")
			failed=1
		fi
	done
	printf '==> %s\n' "${summary[@]}" >&2
	return $failed
}

# Run a command as the unprivileged postgres user (PostgreSQL refuses root).
ik_as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- env PATH="$IK_PG_BIN:$PATH" "$@"
	else
		env PATH="$IK_PG_BIN:$PATH" "$@"
	fi
}

# A scratch directory the postgres user can write.
ik_workdir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/imagekit_ext.XXXXXX")
	chmod 755 "$d"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$d"
	echo "$d"
}

# ik_start_standin DIR KEY [OPTION...]: start the stand-in ImageKit in the
# background, with more of its options if given; sets IK_STANDIN_PID and
# IK_STANDIN_PORT.
ik_start_standin() {
	local dir=$1 key=$2 i
	shift 2
	ik_as_postgres python3 "$IK_ROOT/test/imagekit_standin.py" --host 127.0.0.1 --port 0 \
		--private-key "$key" --url-endpoint https://ik.imagekit.io/demo \
		--port-file "$dir/standin.port" "$@" >"$dir/standin.log" 2>&1 &
	IK_STANDIN_PID=$!
	for i in $(seq 1 100); do
		[ -s "$dir/standin.port" ] && break
		sleep 0.1
	done
	IK_STANDIN_PORT=$(cat "$dir/standin.port" 2>/dev/null) || { cat "$dir/standin.log" >&2; return 1; }
}

# ik_start_cluster DIR PORT CONF...: initdb and start a throwaway cluster
# listening on a Unix socket in DIR; extra lines go into postgresql.conf.
ik_start_cluster() {
	local dir=$1 port=$2
	shift 2
	ik_as_postgres initdb -D "$dir/data" -A trust -U postgres >/dev/null
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = $port"
		printf '%s\n' "$@"
	} | ik_as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null
	ik_as_postgres pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

# ik_start_bench_cluster DIR PORT KEY [CONF...]: the benchmark's cluster
# (test/bench/run.sh and profile.sh), its worker uploading to the stand-in
# started with ik_start_standin DIR KEY: 32 uploads at once, claims of 64,
# images stored as they are under /coffee-images/.
ik_start_bench_cluster() {
	local dir=$1 port=$2 key=$3
	shift 3
	ik_start_cluster "$dir" "$port" \
		"shared_preload_libraries = 'imagekit_ext'" \
		"shared_buffers = 256MB" \
		"log_min_messages = warning" \
		"imagekit.private_key = '$key'" \
		"imagekit.upload_endpoint = 'http://127.0.0.1:$IK_STANDIN_PORT/api/v1/files/upload'" \
		"imagekit.url_endpoint = 'https://ik.imagekit.io/demo'" \
		"imagekit.allow_private_sources = on" \
		"imagekit.max_concurrent_uploads = 32" \
		"imagekit.batch_size = 64" \
		"imagekit.transformation = ''" \
		"imagekit.folder = '/coffee-images/'" \
		"$@"
}

# ik_bench_dir KEEP, then ik_bench_start KEY [STANDIN_OPTION...]: what
# test/bench's profile.sh and gaps.sh drain on: a scratch directory
# (IK_BENCH_DIR), removed at exit unless KEEP is 1; the stand-in in one
# process per core, with the options given; the benchmark's cluster
# (IK_BENCH_PORT) with imagekit_ext and migrations/coffee_images.sql
# installed.  ik_bench_psql runs psql on it.
ik_bench_dir() {
	IK_BENCH_KEEP=$1
	IK_BENCH_DIR=$(ik_workdir)
	trap ik_bench_cleanup EXIT
}

ik_bench_start() {
	local key=$1
	shift
	ik_start_standin "$IK_BENCH_DIR" "$key" --processes "$(nproc)" "$@"
	IK_BENCH_PORT=$((30000 + RANDOM % 10000))
	ik_start_bench_cluster "$IK_BENCH_DIR" "$IK_BENCH_PORT" "$key" "track_commit_timestamp = on"
	ik_bench_psql -c "CREATE EXTENSION imagekit_ext" -f "$IK_ROOT/migrations/coffee_images.sql" >/dev/null
}

ik_bench_psql() {
	ik_as_postgres psql -X -q -At -h "$IK_BENCH_DIR" -p "$IK_BENCH_PORT" -U postgres \
		-d postgres -v ON_ERROR_STOP=1 "$@"
}

ik_bench_cleanup() {
	ik_stop_cluster "$IK_BENCH_DIR"
	ik_stop_standin "$IK_BENCH_DIR"
	if [ "$IK_BENCH_KEEP" -eq 1 ]; then
		echo "files kept in $IK_BENCH_DIR" >&2
	else
		rm -rf "$IK_BENCH_DIR"
	fi
}

# ik_stop_standin DIR: stop the stand-in started with ik_start_standin DIR
# (runuser's child survives a kill of runuser itself).
ik_stop_standin() {
	pkill -f "imagekit_standin.py .*--port-file $1/standin.port" 2>/dev/null || true
}

ik_stop_cluster() {
	ik_as_postgres pg_ctl -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}
