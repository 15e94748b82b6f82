#!/usr/bin/env bash
# The demo: installs what is missing, builds and installs the extension,
# starts a throwaway cluster configured for ImageKit, applies the coffee
# migration, and shows the pipeline: sample coffee images (some duplicates,
# one broken source) are inserted, the background worker uploads them, and
# the demo prints progress until every row has its URL, then the table.  It
# also uploads one image synchronously through rpc_upsert_coffee_image().
#
# With IMAGEKIT_PRIVATE_KEY and IMAGEKIT_URL_ENDPOINT in the environment the
# uploads go to the real ImageKit; without them, to the local stand-in.  The
# source images are always served by the local stand-in.
#
#   bash test/demo.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ik_install_deps
ik_build_install

work=$(ik_workdir)
cleanup() {
	ik_stop_cluster "$work"
	ik_stop_standin "$work"
	rm -rf "$work"
}
trap cleanup EXIT

standin_key=private_demo_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
ik_start_standin "$work" "$standin_key"
src=http://127.0.0.1:$IK_STANDIN_PORT/source
if [ -n "${IMAGEKIT_PRIVATE_KEY:-}" ] && [ -n "${IMAGEKIT_URL_ENDPOINT:-}" ]; then
	ik_log "uploading to the real ImageKit ($IMAGEKIT_URL_ENDPOINT)"
	key=$IMAGEKIT_PRIVATE_KEY
	endpoint=https://upload.imagekit.io/api/v1/files/upload
	url_endpoint=$IMAGEKIT_URL_ENDPOINT
else
	ik_log "no IMAGEKIT_PRIVATE_KEY / IMAGEKIT_URL_ENDPOINT: uploading to the local stand-in on port $IK_STANDIN_PORT"
	key=$standin_key
	endpoint=http://127.0.0.1:$IK_STANDIN_PORT/api/v1/files/upload
	url_endpoint=https://ik.imagekit.io/demo
fi

port=$((40000 + RANDOM % 10000))
ik_start_cluster "$work" "$port" \
	"shared_preload_libraries = 'imagekit_ext'" \
	"imagekit.private_key = '${key//\'/\'\'}'" \
	"imagekit.upload_endpoint = '$endpoint'" \
	"imagekit.url_endpoint = '$url_endpoint'" \
	"imagekit.allow_private_sources = on" \
	"imagekit.max_retries = 2" \
	"imagekit.retry_base_delay = 200"

psql_demo() {
	ik_as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d postgres "$@"
}

ik_log "installing the extension and the coffee schema (migrations/coffee_images.sql)"
psql_demo -c "CREATE EXTENSION imagekit_ext" -f "$IK_ROOT/migrations/coffee_images.sql" >/dev/null

ik_log "a synchronous upload through rpc_upsert_coffee_image(), with content bytes"
{
	echo "SELECT id, coffee_id, url, imagekit_url, width, height"
	echo "FROM ($(python3 "$IK_ROOT/test/sample_images.py" | head -1 | sed 's/,$//')) AS s(file_name, content),"
	echo "     LATERAL rpc_upsert_coffee_image(p_coffee_id => 1, p_url => 'https://roaster.example/' || s.file_name, p_content => s.content);"
} | psql_demo

ik_log "an application inserts a row and waits for it: LISTEN, INSERT, the notification"
# (notifications are off unless asked for; the migration leaves them off)
psql_demo -c "SELECT imagekit.configure('coffee_images', notify => true)" >/dev/null
coproc LISTENER { ik_as_postgres psql -X -q -A -t -h "$work" -p "$port" -d postgres 2>&1; }
echo "LISTEN imagekit_coffee_images;" >&"${LISTENER[1]}"
echo "INSERT INTO coffee_images (coffee_id, url, alt) VALUES (1, '$src/img-10-30000.png', 'waited for') RETURNING id;" >&"${LISTENER[1]}"
read -r -t 10 row_id <&"${LISTENER[0]}" || row_id=
printf '    inserted row %s\n' "$row_id"
heard=
# psql prints a notification after the next command it runs
for i in $(seq 1 100); do
	echo "SELECT 'tick';" >&"${LISTENER[1]}"
	while read -r -t 10 line <&"${LISTENER[0]}"; do
		case $line in
			tick) break ;;
			*"payload \"{\"key\": \"$row_id\""*) heard=$line ;;
		esac
	done
	[ -n "$heard" ] && break
	sleep 0.1
done
echo '\q' >&"${LISTENER[1]}"
wait "$LISTENER_PID" 2>/dev/null || true
if [ -n "$heard" ]; then
	printf '    %s\n' "$heard"
else
	printf '    no notification for row %s within 10 s\n' "$row_id"
fi

ik_log "inserting 12 coffee images: 9 distinct, 2 duplicates, 1 broken source"
psql_demo <<SQL
INSERT INTO coffee_images (coffee_id, url, alt, sort_order)
SELECT 2 + g / 4, '$src/img-' || seed || '-30000.png', 'coffee ' || g, g % 4
FROM (VALUES (1, 11), (2, 12), (3, 13), (4, 14), (5, 15), (6, 16), (7, 17), (8, 18), (9, 19),
             (10, 11), (11, 12)) AS v(g, seed);
INSERT INTO coffee_images (coffee_id, url, alt) VALUES (9, '$src/missing-roaster-image.jpg', 'broken');
SQL

for i in $(seq 1 120); do
	line=$(psql_demo -At -F ' ' -c "SELECT queued, in_flight, done, fallback FROM imagekit.status WHERE tbl = 'coffee_images'::regclass")
	set -- $line
	printf '    queued %s  in flight %s  done %s  fallback %s\n' "$1" "$2" "$3" "$4"
	[ "$1" = 0 ] && [ "$2" = 0 ] && break
	sleep 0.5
done

ik_log "the table"
psql_demo -c "SELECT id, coffee_id, regexp_replace(url, '^https?://[^/]+', '') AS source, width, height, imagekit_url FROM coffee_images ORDER BY id"
ik_log "the queue, and the counters"
psql_demo -c "SELECT row_key, state, attempts, last_http_status, last_error FROM imagekit.jobs ORDER BY row_key::bigint" \
	-c "SELECT * FROM imagekit.stats()"
