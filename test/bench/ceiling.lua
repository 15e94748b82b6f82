-- wrk script for the benchmark's ceiling (test/bench/bench.mjs): the
-- requests of a drain, sent to the stand-in ImageKit by wrk alone.
--
--   wrk -t1 -c32 -d5s -s ceiling.lua URL -- BODY_FILE CONTENT_TYPE AUTH SIZE DOWNLOADS UPLOADS [CLOSE]
--
-- Downloads (GET /source/img-<i>-<SIZE>.png) and uploads (POST the
-- multipart body in BODY_FILE) are interleaved evenly in the ratio
-- DOWNLOADS : UPLOADS.  With CLOSE = 1 every request says "Connection:
-- close", so every request is made on a fresh connection.  done() prints
-- one JSON line.

local size, down, up, close, upload_request
local i = 0

function init(args)
	local f = assert(io.open(args[1], "rb"))
	local body = f:read("*a")
	f:close()
	size = args[4]
	down, up, close = tonumber(args[5]), tonumber(args[6]), args[7] == "1"
	-- every upload is the same request: format it once, so that wrk spends
	-- its CPU sending rather than copying the body
	local headers = { ["Content-Type"] = args[2], ["Authorization"] = args[3] }
	if close then headers["Connection"] = "close" end
	upload_request = wrk.format("POST", "/api/v1/files/upload", headers, body)
end

function request()
	local total = down + up
	local upload = math.floor((i + 1) * up / total) > math.floor(i * up / total)
	i = i + 1
	if upload then
		return upload_request
	end
	return wrk.format("GET", "/source/img-" .. i .. "-" .. size .. ".png",
		close and { ["Connection"] = "close" } or {})
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format('{"requests": %d, "duration_us": %d, "errors": %d}\n',
		summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout))
end
