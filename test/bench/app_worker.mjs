// The app-side alternative to imagekit_ext's background worker, for the
// benchmark (test/bench/run.sh): a Node.js process that does the same job
// with the official ImageKit SDK (@imagekit/nodejs) and node-postgres.
//
// It is written the way a competent engineer would write it for one process:
//
//   - a feeder selects rows without a CDN URL (keyset pagination on the
//     primary key, LIMIT BATCH; the index on imagekit_url serves IS NULL),
//     skipping the rows already in flight, and polls every POLL_MS when idle;
//   - CONCURRENCY async workers take rows from that queue: download the
//     source (global fetch: undici, keep-alive), refuse what is not an image
//     or too large, SHA-256 (node:crypto), dedup in memory (a bounded map of
//     finished and in-flight hashes, so the same bytes claimed twice at once
//     are uploaded once) and in the database (table app_assets), upload as
//     <sha256>.<ext> with useUniqueFileName=false (like the extension: a
//     repeated upload replaces the same file), record the asset, and set the
//     row's imagekit_url where its url is still the one downloaded;
//   - every failure that is left after retries (the SDK retries uploads
//     itself: connection errors, 408, 409, 429, 5xx; downloads are retried
//     here) falls back to the source URL;
//   - each worker does one HTTP request at a time, so at most CONCURRENCY
//     requests (downloads and uploads together) are in flight, the same limit
//     as imagekit.max_concurrent_uploads;
//   - row updates are single autocommit statements on a pg pool, with
//     synchronous_commit off (a lost URL is simply uploaded again, as the
//     extension's worker also assumes).
//
// Configuration comes from the environment: PGHOST, PGPORT, PGUSER,
// PGDATABASE (node-postgres reads them), IMAGEKIT_PRIVATE_KEY,
// IMAGEKIT_BASE_URL (the SDK's baseURL: the stand-in), and optionally
// CONCURRENCY (32), BATCH (256), POLL_MS (50), POOL_SIZE (4), FOLDER
// (/coffee-images/), MAX_FILE_SIZE (25 MB), TABLE (coffee_images).
//
// Once the pool is connected it prints one JSON line {"ready": true, ...} on
// stdout; on SIGTERM it stops claiming, finishes what is in flight, prints
// {"stopped": true, counters...} and exits.

import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import ImageKit, { toFile, APIError } from '@imagekit/nodejs';

if (!globalThis.File) globalThis.File = (await import('node:buffer')).File; // Node 18

const env = (name, dflt) => process.env[name] ?? dflt;
const CONCURRENCY = Number(env('CONCURRENCY', 32));
const BATCH = Number(env('BATCH', 256));
const POLL_MS = Number(env('POLL_MS', 50));
const POOL_SIZE = Number(env('POOL_SIZE', 4));
const FOLDER = env('FOLDER', '/coffee-images/');
const MAX_FILE_SIZE = Number(env('MAX_FILE_SIZE', 25 * 1024 * 1024));
const TABLE = env('TABLE', 'coffee_images');
const DOWNLOAD_ATTEMPTS = 4;           // like imagekit.max_retries = 3
const DOWNLOAD_TIMEOUT_MS = 30_000;
const DEDUP_CACHE_SIZE = 50_000;

const imagekit = new ImageKit({
	privateKey: env('IMAGEKIT_PRIVATE_KEY'),
	baseURL: env('IMAGEKIT_BASE_URL'),   // default: https://upload.imagekit.io for uploads
	maxRetries: 3,
	timeout: 30_000,
});

const pool = new pg.Pool({
	max: POOL_SIZE,
	idleTimeoutMillis: 0,
	application_name: 'imagekit-bench-app',
	options: '-c synchronous_commit=off',
});

const counters = { rows: 0, downloads: 0, uploads: 0, dedup_memory: 0, dedup_db: 0, fallbacks: 0, errors: 0 };

class Permanent extends Error {}

// ---- the queue of claimed rows -------------------------------------------

const queue = [];                      // rows waiting for a worker
const inFlight = new Set();            // ids claimed and not finished
let finishedDuringScan = null;         // ids finished while a SELECT runs: its
                                       // snapshot may predate their UPDATE
let stopping = false;
let wakeWorkers = null;                // resolves when rows arrive
let wakeFeeder = null;                 // resolves when the queue runs low

function signal(which) {
	const fn = which === 'workers' ? wakeWorkers : wakeFeeder;
	if (which === 'workers') wakeWorkers = null; else wakeFeeder = null;
	if (fn) fn();
}

async function feeder() {
	let lastId = 0;
	while (!stopping) {
		if (queue.length >= CONCURRENCY * 2) {
			await new Promise((resolve) => { wakeFeeder = resolve; });
			continue;
		}
		const finished = new Set();
		finishedDuringScan = finished;
		const { rows } = await pool.query(
			`SELECT id, url FROM ${TABLE} WHERE imagekit_url IS NULL AND id > $1 ORDER BY id LIMIT $2`,
			[lastId, BATCH]);
		finishedDuringScan = null;
		let added = 0;
		for (const row of rows) {
			if (inFlight.has(row.id) || finished.has(row.id)) continue;
			inFlight.add(row.id);
			queue.push(row);
			added++;
		}
		if (added > 0) signal('workers');
		if (rows.length < BATCH) {
			// end of the table: start again from the top after a pause when
			// nothing new came (the rows in flight are skipped above)
			lastId = 0;
			if (added === 0) await sleep(POLL_MS);
		} else {
			lastId = rows[rows.length - 1].id;
		}
	}
	signal('workers');
}

async function worker() {
	for (;;) {
		const row = queue.shift();
		if (row === undefined) {
			if (stopping) return;
			await new Promise((resolve) => { wakeWorkers = wakeWorkers ? chain(wakeWorkers, resolve) : resolve; });
			continue;
		}
		if (queue.length < CONCURRENCY) signal('feeder');
		try {
			await processRow(row);
		} catch (err) {
			counters.errors++;
			console.error(`row ${row.id}: ${err.message}`);
		} finally {
			inFlight.delete(row.id);
			finishedDuringScan?.add(row.id);
		}
	}
}

function chain(a, b) {
	return () => { a(); b(); };
}

// ---- one row ---------------------------------------------------------------

const dedup = new Map();               // sha256 -> Promise<url>, bounded

async function processRow(row) {
	counters.rows++;
	let url;
	try {
		const bytes = await download(row.url);
		const ext = imageExtension(bytes);
		if (ext === null) throw new Permanent('the source is not an image');
		const hash = createHash('sha256').update(bytes).digest('hex');
		let pending = dedup.get(hash);
		if (pending === undefined) {
			pending = uploadOnce(hash, ext, bytes);
			remember(hash, pending);
			pending.catch(() => dedup.delete(hash));   // a failure is not cached
		} else {
			counters.dedup_memory++;
		}
		url = await pending;
	} catch (err) {
		counters.fallbacks++;
		console.error(`row ${row.id}: using the source URL: ${err.message}`);
		url = row.url;
	}
	await pool.query(`UPDATE ${TABLE} SET imagekit_url = $1 WHERE id = $2 AND url = $3`,
		[url, row.id, row.url]);
}

function remember(hash, promise) {
	dedup.set(hash, promise);
	if (dedup.size > DEDUP_CACHE_SIZE) dedup.delete(dedup.keys().next().value);
}

async function uploadOnce(hash, ext, bytes) {
	const known = await pool.query('SELECT url FROM app_assets WHERE content_hash = $1', [hash]);
	if (known.rows.length > 0) {
		counters.dedup_db++;
		return known.rows[0].url;
	}
	const fileName = `${hash}.${ext}`;
	let res;
	try {
		res = await imagekit.files.upload({
			file: await toFile(bytes, fileName, { type: `image/${ext === 'jpg' ? 'jpeg' : ext}` }),
			fileName,
			folder: FOLDER,
			useUniqueFileName: false,
		});
	} catch (err) {
		if (err instanceof APIError && err.status) throw new Error(`upload failed: ${err.status} ${err.message}`);
		throw err;
	}
	if (typeof res?.url !== 'string') throw new Error('upload answer without a url');
	counters.uploads++;
	await pool.query(
		`INSERT INTO app_assets (content_hash, url, file_id, file_path, size, width, height)
		 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (content_hash) DO NOTHING`,
		[hash, res.url, res.fileId ?? null, res.filePath ?? null, res.size ?? bytes.length,
			res.width ?? null, res.height ?? null]);
	return res.url;
}

// Download with a size cap and a timeout; retry transient failures with
// backoff (0.5 s x 2^n, minus up to 25 % jitter); 4xx and non-images are permanent.
async function download(url) {
	for (let attempt = 1; ; attempt++) {
		try {
			const res = await fetch(url, {
				headers: { accept: 'image/*' },
				signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS),
			});
			if (res.status >= 400 && res.status < 500 && ![408, 409, 429].includes(res.status)) {
				await res.body?.cancel();
				throw new Permanent(`source answered ${res.status}`);
			}
			if (res.status !== 200) {
				await res.body?.cancel();
				throw new Error(`source answered ${res.status}`);
			}
			const declared = Number(res.headers.get('content-length') ?? 0);
			if (declared > MAX_FILE_SIZE) {
				await res.body?.cancel();
				throw new Permanent(`source too large (${declared} bytes)`);
			}
			const chunks = [];
			let size = 0;
			for await (const chunk of res.body) {
				size += chunk.length;
				if (size > MAX_FILE_SIZE) throw new Permanent('source too large');
				chunks.push(chunk);
			}
			counters.downloads++;
			return Buffer.concat(chunks, size);
		} catch (err) {
			if (err instanceof Permanent || attempt >= DOWNLOAD_ATTEMPTS) throw err;
			await sleep(500 * 2 ** (attempt - 1) * (1 - Math.random() * 0.25));
		}
	}
}

function imageExtension(b) {
	if (b.length >= 8 && b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
	if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpg';
	if (b.length >= 6 && ['GIF87a', 'GIF89a'].includes(b.toString('latin1', 0, 6))) return 'gif';
	if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
	return null;
}

// ---- main --------------------------------------------------------------------

// connect the whole pool up front, so that its backends can be measured
const clients = await Promise.all(Array.from({ length: POOL_SIZE }, () => pool.connect()));
const backendPids = clients.map((c) => c.processID);
clients.forEach((c) => c.release());

const workers = Array.from({ length: CONCURRENCY }, () => worker());
const feeding = feeder().catch((err) => { console.error(`feeder: ${err.stack}`); process.exit(1); });
console.log(JSON.stringify({ ready: true, pid: process.pid, backend_pids: backendPids }));

process.on('SIGTERM', async () => {
	if (stopping) return;
	stopping = true;
	signal('feeder');
	await feeding;
	await Promise.all(workers);
	await pool.end();
	console.log(JSON.stringify({ stopped: true, ...counters }));
	process.exit(0);
});
