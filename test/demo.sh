#!/usr/bin/env bash
# The demo: installs what is missing, builds and installs the extension,
# starts a throwaway cluster configured for ImageKit, uploads a few sample
# images with imagekit_upload() and prints what came back.
#
# With IMAGEKIT_PRIVATE_KEY and IMAGEKIT_URL_ENDPOINT in the environment it
# talks to the real ImageKit; without them, to the local stand-in.
#
#   bash test/demo.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ik_install_deps
ik_build_install

work=$(ik_workdir)
cleanup() {
	ik_stop_cluster "$work"
	[ -n "${IK_STANDIN_PID:-}" ] && kill "$IK_STANDIN_PID" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${IMAGEKIT_PRIVATE_KEY:-}" ] && [ -n "${IMAGEKIT_URL_ENDPOINT:-}" ]; then
	ik_log "using the real ImageKit ($IMAGEKIT_URL_ENDPOINT)"
	key=$IMAGEKIT_PRIVATE_KEY
	endpoint=https://upload.imagekit.io/api/v1/files/upload
	url_endpoint=$IMAGEKIT_URL_ENDPOINT
else
	key=private_demo_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
	ik_start_standin "$work" "$key"
	ik_log "no IMAGEKIT_PRIVATE_KEY / IMAGEKIT_URL_ENDPOINT: using the local stand-in on port $IK_STANDIN_PORT"
	endpoint=http://127.0.0.1:$IK_STANDIN_PORT/api/v1/files/upload
	url_endpoint=https://ik.imagekit.io/demo
fi

port=$((40000 + RANDOM % 10000))
ik_start_cluster "$work" "$port" \
	"shared_preload_libraries = 'imagekit_ext'" \
	"imagekit.private_key = '${key//\'/\'\'}'" \
	"imagekit.upload_endpoint = '$endpoint'" \
	"imagekit.url_endpoint = '$url_endpoint'"

ik_log "uploading sample images"
{
	echo "CREATE EXTENSION imagekit_ext;"
	echo "\\echo"
	echo "SELECT s.file_name, r.url, r.size, r.width, r.height, r.deduplicated, left(r.content_hash, 12) AS hash"
	echo "FROM ($(python3 "$IK_ROOT/test/sample_images.py")) AS s(file_name, content),"
	echo "     LATERAL imagekit_upload(s.content, s.file_name) AS r;"
	echo "\\echo"
	echo "SELECT content_hash, url FROM imagekit.assets ORDER BY created_at;"
} | ik_as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d postgres
