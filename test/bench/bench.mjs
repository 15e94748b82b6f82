// The benchmark driver, run by test/bench/run.sh on a throwaway cluster and
// stand-in that run.sh has started.  It runs the scenarios of BENCHMARKS.md
// in turn, measures, and prints one table (and writes it as markdown).
//
// What is measured, and how:
//   - drain wall time: from the commit of the INSERT to the commit that made
//     the last row's URL visible, both read from the server's commit
//     timestamps (track_commit_timestamp = on), so the harness's polling
//     does not blur it;
//   - worker CPU: utime + stime from /proc/<pid>/stat before and after; for
//     imagekit_ext the background worker (its SQL runs inside it), for the
//     app-side alternative the node process plus its pool's backends;
//   - peak RSS: /proc/<pid>/status RssAnon + RssFile sampled every 10 ms
//     (RssShmem, i.e. shared_buffers touched, is left out; VmHWM would count it);
//   - the stand-in's counters from GET /_standin/stats after POST
//     /_standin/reset, and its CPU from /proc;
//   - the ceiling: wrk alone against the stand-in (ceiling.lua).
// Exit status: 0 when every scenario ran, 1 when the harness failed (a
// missed target is not a failure).

import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadavg, availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const { values: opt } = parseArgs({
	options: {
		pghost: { type: 'string' }, pgport: { type: 'string' },
		pguser: { type: 'string', default: 'postgres' }, pgdatabase: { type: 'string', default: 'postgres' },
		pgbin: { type: 'string', default: process.env.IK_PG_BIN ?? '/usr/lib/postgresql/15/bin' },
		standin: { type: 'string' }, 'standin-pid': { type: 'string' }, key: { type: 'string' },
		workdir: { type: 'string' }, scenarios: { type: 'string', default: '1,2,3,4,5,6,7,8,9,10' },
		smoke: { type: 'boolean', default: false }, markdown: { type: 'string' },
	},
});
const SMOKE = opt.smoke;
const wanted = new Set(opt.scenarios.split(',').map((s) => Number(s.trim())));
const STANDIN = opt.standin;
const STANDIN_PID = Number(opt['standin-pid']);
const C = 32;

// Sizes: the issue's in a full run, tiny ones for CI's smoke run.
const P = SMOKE ? {
	n: 40, distinct3: 10, n4: 6, repeats4: 2, n5: 10,
	pgbenchSecs: 1, pgbenchRounds: 1, bulkRows: 2000, bulkRounds: 1, secs7: 1, wrkSecs: 1, timeoutS: 40,
	n8: 3000, distinct8: 30, drains8: 2, n10: 2000,
} : {
	n: 2000, distinct3: 500, n4: 500, repeats4: 5, n5: 200,
	pgbenchSecs: 10, pgbenchRounds: 3, bulkRows: 100000, bulkRounds: 3, secs7: 10, wrkSecs: 5, timeoutS: 600,
	n8: 1_000_000, distinct8: 1000, drains8: 2, n10: 200_000,
};
const KB20 = 20000;
const MB2 = 2 * 1024 * 1024;

const log = (msg) => process.stderr.write(`==> ${msg}\n`);
class HarnessError extends Error {}

// ---- database, stand-in, /proc --------------------------------------------

const pgConn = { host: opt.pghost, port: Number(opt.pgport), user: opt.pguser, database: opt.pgdatabase };
const db = new pg.Client({ ...pgConn, application_name: 'imagekit-bench-driver' });
await db.connect();
const q = async (sql, params) => (await db.query(sql, params)).rows;
const q1 = async (sql, params) => (await q(sql, params))[0];

async function standin(path, body) {
	const res = await fetch(`${STANDIN}/_standin/${path}`, body === undefined ? {} : {
		method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' },
	});
	if (!res.ok) throw new HarnessError(`stand-in ${path}: ${res.status} ${await res.text()}`);
	return res.json();
}

const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

function cpuSeconds(pid) {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
		const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
		return (Number(f[11]) + Number(f[12])) / TICK;    // utime, stime
	} catch {
		return 0;                       // the process is gone (a pool backend that closed)
	}
}

// The CPU time of a process and of its children (the stand-in's helpers).
function treeCpuSeconds(pid) {
	let children = [];
	try {
		children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
	} catch {
		// gone
	}
	return cpuSeconds(pid) + children.reduce((sum, child) => sum + treeCpuSeconds(Number(child)), 0);
}

function rssBytes(pid) {
	try {
		const status = readFileSync(`/proc/${pid}/status`, 'utf8');
		const kb = (name) => Number((status.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm')) ?? [0, 0])[1]);
		return (kb('RssAnon') + kb('RssFile')) * 1024;
	} catch {
		return 0;
	}
}

// Samples RssAnon + RssFile of one process every 10 ms; keeps the peak.
class RssSampler {
	constructor(pid) {
		this.pid = pid;
		this.peak = rssBytes(pid);
		this.timer = setInterval(() => { this.peak = Math.max(this.peak, rssBytes(pid)); }, 10);
	}
	stop() {
		clearInterval(this.timer);
		this.peak = Math.max(this.peak, rssBytes(this.pid));
		return this.peak;
	}
}

function tcpActiveOpens() {
	const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Tcp:'));
	const names = lines[0].split(/\s+/);
	return Number(lines[1].split(/\s+/)[names.indexOf('ActiveOpens')]);
}

// the launcher starts the database's worker once the extension is there
async function workerPid() {
	return (await workerPids(1, 'postgres'))[0];
}

// the pids of the "count" workers serving "datname", once they all serve
async function workerPids(count, datname) {
	let rows = [];
	for (let i = 0; i < 200; i++) {
		rows = await q(`SELECT w.pid FROM imagekit.workers w
		                 WHERE w.kind = 'worker' AND w.datname = $1 AND w.state = 'serving' AND w.pid IS NOT NULL
		                 ORDER BY w.pid`, [datname]);
		if (rows.length === count) return rows.map((r) => r.pid);
		await sleep(50);
	}
	throw new HarnessError(`expected ${count} imagekit worker(s) serving ${datname}, found ${rows.length}`);
}

async function setConf(name, value) {
	await q(`ALTER SYSTEM SET ${name} = '${value}'`);
	await q('SELECT pg_reload_conf()');
	for (let i = 0; i < 100 && (await q1('SELECT current_setting($1) AS v', [name])).v !== String(value); i++)
		await sleep(20);
	await sleep(100);                   // the worker reloads on its own SIGHUP
}

// ---- the schema ---------------------------------------------------------------

function psqlFile(file) {
	execFileSync(join(opt.pgbin, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', pgConn.host,
		'-p', String(pgConn.port), '-U', pgConn.user, '-d', pgConn.database, '-f', file],
	{ stdio: ['ignore', 'ignore', 'inherit'] });
}

let schemaNote;
async function setup() {
	await q('CREATE EXTENSION IF NOT EXISTS imagekit_ext');
	const migration = join(root, 'migrations', 'coffee_images.sql');
	if (existsSync(migration)) {
		psqlFile(migration);
		schemaNote = 'coffee_images from migrations/coffee_images.sql';
	} else {
		await q(`CREATE TABLE coffee_images (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		         coffee_id bigint NOT NULL, url text NOT NULL, imagekit_url text)`);
		await q("SELECT imagekit.attach('coffee_images')");
		schemaNote = 'coffee_images created by the benchmark (no migrations/coffee_images.sql)';
	}
	// the app-side worker's own dedup table
	await q(`CREATE TABLE IF NOT EXISTS app_assets (content_hash text PRIMARY KEY, url text NOT NULL,
	         file_id text, file_path text, size bigint, width int, height int,
	         created_at timestamptz NOT NULL DEFAULT now())`);
	await q('CREATE SEQUENCE IF NOT EXISTS bench_seq');
	await q('CREATE TABLE IF NOT EXISTS bench_template (png bytea NOT NULL)');
}

let attached = true;
async function setAttached(want) {
	const now = (await q1("SELECT count(*)::int AS n FROM imagekit.attachments WHERE tbl = 'coffee_images'::regclass")).n > 0;
	if (want && !now) await q("SELECT imagekit.attach('coffee_images')");
	if (!want && now) await q("SELECT imagekit.detach('coffee_images')");
	attached = want;
}

// Wait until the stand-in has finished every request (wrk leaves some in
// flight when it stops), so that they count in no later run.
async function standinQuiet() {
	const deadline = Date.now() + 60000;
	for (;;) {
		const st = await standin('stats?brief=1');
		if (st.in_flight <= 0 && st.downloads_in_flight <= 0) return;
		if (Date.now() > deadline) throw new HarnessError('the stand-in still has requests in flight after 60 s');
		await sleep(50);
	}
}

// Empty everything between runs so that they are independent.
// The extension's state is every table in schema imagekit but the
// configuration (the attached tables and their mapped result columns): jobs,
// assets, and whatever queue tables a version has.
async function resetAll(latencyMs) {
	const { tables } = await q1(`SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') AS tables
	                               FROM pg_tables WHERE schemaname = 'imagekit'
	                                AND tablename NOT IN ('attachments', 'attached_columns')`);
	await q(`TRUNCATE coffee_images, app_assets, ${tables}`);
	await standinQuiet();
	await standin('reset', {});
	await standin('config', { latency_ms: latencyMs });
}

let seedBase = 0;                      // every run gets content never seen before
const nextSeedBase = () => (seedBase += 1_000_000);

// Insert n rows (one statement) whose sources are `distinct` images of `size`
// bytes; returns the inserting transaction's xid.
async function insertRows(n, distinct, size, base) {
	await q('BEGIN');
	const { x } = await q1('SELECT pg_current_xact_id()::text AS x');
	await q(`INSERT INTO coffee_images (coffee_id, url)
	         SELECT $1::bigint + g, $2 || '/source/img-' || ($1::bigint + g % $3) || '-' || $4 || '.png'
	           FROM generate_series(1, $5) g`, [base, STANDIN, distinct, size, n]);
	await q('COMMIT');
	return x;
}

async function waitDrained(timeoutS, what) {
	const deadline = Date.now() + timeoutS * 1000;
	for (;;) {
		const { n } = await q1('SELECT count(*)::int AS n FROM coffee_images WHERE imagekit_url IS NULL');
		if (n === 0) return;
		if (Date.now() > deadline)
			throw new HarnessError(`${what}: ${n} rows still without a URL after ${timeoutS} s`);
		await sleep(20);
	}
}

// Seconds from the insert's commit to the last URL's commit.
async function drainWall(xid) {
	const r = await q1(`SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin))
	                          - pg_xact_commit_timestamp(($1::bigint % 4294967296)::text::xid))::float8 AS s,
	                           count(*) FILTER (WHERE imagekit_url = url)::int AS fallbacks
	                      FROM coffee_images`, [xid]);
	return r;
}

// ---- the two systems ----------------------------------------------------------

// imagekit_ext: the table attached, rows drained by the background worker.
const ext = {
	name: 'imagekit_ext',
	async prepare() { await setAttached(true); this.pid = await workerPid(); },
	pids() { return [this.pid]; },
	rssPid() { return this.pid; },
	async stop() {},
};

// The app-side worker: the table detached, a node process drains it.
const app = {
	name: 'app-side (node SDK)',
	proc: null,
	async prepare() {
		await setAttached(false);
		if (this.proc) return;
		this.proc = spawn(process.execPath, [join(here, 'app_worker.mjs')], {
			env: {
				...process.env, PGHOST: pgConn.host, PGPORT: String(pgConn.port), PGUSER: pgConn.user,
				PGDATABASE: pgConn.database, IMAGEKIT_PRIVATE_KEY: opt.key, IMAGEKIT_BASE_URL: STANDIN,
				CONCURRENCY: String(C),
			},
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		this.errors = [];
		createInterface({ input: this.proc.stderr }).on('line', (l) => { if (this.errors.length < 20) this.errors.push(l); });
		const lines = createInterface({ input: this.proc.stdout });
		this.lines = lines;
		const ready = await new Promise((resolve, reject) => {
			const t = setTimeout(() => reject(new HarnessError('the app-side worker did not start')), 20000);
			lines.once('line', (l) => { clearTimeout(t); resolve(JSON.parse(l)); });
			this.proc.once('exit', (code) => reject(new HarnessError(`the app-side worker exited (${code}): ${this.errors.join(' | ')}`)));
		});
		this.pid = ready.pid;
		this.backends = ready.backend_pids;
	},
	pids() { return [this.pid, ...this.backends]; },
	rssPid() { return this.pid; },
	async stop() {
		if (!this.proc) return null;
		const proc = this.proc;
		this.proc = null;
		const done = new Promise((resolve) => {
			this.lines.on('line', (l) => { try { resolve(JSON.parse(l)); } catch { /* not ours */ } });
			proc.once('exit', () => resolve(null));
		});
		proc.kill('SIGTERM');
		return done;
	},
};
process.on('exit', () => { if (app.proc) app.proc.kill('SIGKILL'); });

// One drain: insert, wait, measure.
async function drain(sys, { n, distinct, size, latency }) {
	await resetAll(latency);
	await sys.prepare();
	const pids = sys.pids();
	const cpu0 = pids.map(cpuSeconds);
	const idleRss = rssBytes(sys.rssPid());
	const standinCpu0 = treeCpuSeconds(STANDIN_PID);
	const sampler = new RssSampler(sys.rssPid());
	const xid = await insertRows(n, distinct, size, nextSeedBase());
	const timeout = Math.max(P.timeoutS, 30);
	await waitDrained(timeout, `${sys.name} drain of ${n} rows`);
	const peak = sampler.stop();
	await sleep(200);                   // what stays once the drain is over (a leak would)
	const afterRss = rssBytes(sys.rssPid());
	const cpuEach = pids.map((pid, i) => cpuSeconds(pid) - cpu0[i]);
	const cpu = cpuEach.reduce((a, b) => a + b, 0);
	const standinCpu = treeCpuSeconds(STANDIN_PID) - standinCpu0;
	const { s: wall, fallbacks } = await drainWall(xid);
	const st = await standin('stats');
	return {
		wall, cpu, cpuMain: cpuEach[0], peak, idleRss, afterRss, fallbacks, standinCpu,
		uploads: st.uploads, downloads: st.downloads,
		maxInFlight: st.max_in_flight + st.max_downloads_in_flight,
		maxUp: st.max_in_flight, maxDown: st.max_downloads_in_flight,
	};
}

// The ceiling: wrk alone against the stand-in, sending a drain's requests
// (downloads and uploads in the drain's ratio) on `conns` keep-alive
// connections, or on a fresh connection per request with `close`.
async function ceiling({ size, latency, down, up, conns = C, close = false, secs = P.wrkSecs }) {
	const img = Buffer.from(await (await fetch(`${STANDIN}/source/img-ceiling-${size}.png`)).arrayBuffer());
	const hash = createHash('sha256').update(img).digest('hex');
	const boundary = `----bench${hash.slice(0, 16)}`;
	const field = (name, value) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
	const bodyFile = join(opt.workdir, 'ceiling-body.bin');
	writeFileSync(bodyFile, Buffer.concat([
		Buffer.from(field('fileName', `${hash}.png`) + field('folder', '/coffee-images/') +
			field('useUniqueFileName', 'false') +
			`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${hash}.png"\r\n` +
			'Content-Type: image/png\r\n\r\n'),
		img, Buffer.from(`\r\n--${boundary}--\r\n`)]));
	await standinQuiet();
	await standin('reset', {});
	await standin('config', { latency_ms: latency });
	const cpu0 = treeCpuSeconds(STANDIN_PID);
	const out = execFileSync('wrk', ['-t1', `-c${conns}`, `-d${secs}s`, '--timeout', '10s',
		'-s', join(here, 'ceiling.lua'), STANDIN, '--', bodyFile, `multipart/form-data; boundary=${boundary}`,
		`Basic ${Buffer.from(`${opt.key}:`).toString('base64')}`, String(size), String(down), String(up),
		close ? '1' : '0']).toString();
	const standinCpu = treeCpuSeconds(STANDIN_PID) - cpu0;
	await standinQuiet();
	const line = out.split('\n').find((l) => l.startsWith('{'));
	if (!line) throw new HarnessError(`wrk printed no summary:\n${out}`);
	const r = JSON.parse(line);
	const st = await standin('stats');
	if (r.errors > 0 || r.requests === 0) throw new HarnessError(`wrk: ${r.errors} failed requests of ${r.requests}`);
	const duration = r.duration_us / 1e6;
	return { rate: r.requests / duration, duration, standinCpu, uploads: st.uploads, downloads: st.downloads };
}

const standinBusy = (r) => `stand-in CPU ${fmt(100 * r.standinCpu / r.wall, 0)} % of a core`;

function ceilingResult(c) {
	return `wrk ${fmt(c.rate, 0)} req/s for ${fmt(c.duration, 1)} s; stand-in CPU ${fmt(100 * c.standinCpu / c.duration, 0)} % of a core`;
}

// ---- the table ------------------------------------------------------------------

const rows = [];
const notes = [];
const fmt = (x, d = 2) => (x === undefined || x === null || Number.isNaN(x) ? '' : Number(x).toFixed(d));
const sizeStr = (b) => (b >= 1 << 20 ? `${b / (1 << 20)} MB` : `${b / 1000} KB`);
const mb = (b) => fmt(b / (1 << 20), 1);

function drainRow(scen, system, spec, r, ideal, extra = {}) {
	const row = {
		scen, system, n: spec.n, size: sizeStr(spec.size), lat: spec.latency, conc: C,
		wall: fmt(r.wall), ratio: ideal ? fmt(r.wall / ideal) : '',
		cpu: r.cpu === undefined ? '' : fmt(r.cpu), msimg: r.cpu === undefined ? '' : fmt(r.cpu * 1000 / spec.n, 3),
		rss: r.peak === undefined ? '' : mb(r.peak), uploads: String(r.uploads ?? ''),
		result: '', target: '', met: '', ...extra,
	};
	rows.push(row);
	return row;
}

function otherRow(scen, system, fields) {
	const row = { scen, system, n: '', size: '', lat: '', conc: '', wall: '', ratio: '', cpu: '', msimg: '',
		rss: '', uploads: '', result: '', target: '', met: '', ...fields };
	rows.push(row);
	return row;
}

const COLUMNS = [
	['scen', '#'], ['system', 'system'], ['n', 'N'], ['size', 'size'], ['lat', 'lat ms'], ['conc', 'C'],
	['wall', 'wall s'], ['ratio', 'x ideal'], ['cpu', 'CPU s'], ['msimg', 'CPU ms/img'],
	['rss', 'peak RSS MB'], ['uploads', 'uploads'], ['result', 'result'], ['target', 'target'], ['met', 'met'],
];
const NUMERIC = new Set(['n', 'lat', 'conc', 'wall', 'ratio', 'cpu', 'msimg', 'rss', 'uploads']);

function textTable() {
	const widths = COLUMNS.map(([k, h]) => Math.max(h.length, ...rows.map((r) => String(r[k]).length)));
	const line = (cells) => cells.map((c, i) => (NUMERIC.has(COLUMNS[i][0]) ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('  ').trimEnd();
	return [line(COLUMNS.map(([, h]) => h)), widths.map((w) => '-'.repeat(w)).join('  '),
		...rows.map((r) => line(COLUMNS.map(([k]) => r[k])))].join('\n');
}

function markdownTable() {
	const esc = (s) => String(s).replace(/\|/g, '\\|');
	return [`| ${COLUMNS.map(([, h]) => h).join(' | ')} |`,
		`|${COLUMNS.map(([k]) => (NUMERIC.has(k) ? '---:' : '---')).join('|')}|`,
		...rows.map((r) => `| ${COLUMNS.map(([k]) => esc(r[k])).join(' | ')} |`)].join('\n');
}

const yes = (ok) => (ok ? 'yes' : 'NO');

// ---- the scenarios ----------------------------------------------------------------

async function drainScenario(scen, spec, label) {
	log(`scenario ${scen}: ${label}`);
	const requests = spec.n + spec.distinct;
	const c = await ceiling({ size: spec.size, latency: spec.latency, down: spec.n, up: spec.distinct });
	c.wall_s = requests / c.rate;       // the least time the stand-in needs for the drain's requests
	const ideal = spec.latency > 0 ? requests * (spec.latency / 1000) / C : c.wall_s;
	const e = await drain(ext, spec);
	const a = await drain(app, spec);
	await app.stop();
	const idealNote = spec.latency > 0
		? `ideal ${fmt(ideal)} s = ${requests} requests x ${spec.latency} ms / ${C}`
		: `ideal = the ceiling: ${requests} requests at ${fmt(c.rate, 0)} req/s = ${fmt(ideal)} s`;
	const cr = drainRow(scen, 'ceiling (wrk)', spec, { wall: c.wall_s }, ideal, { result: ceilingResult(c) });
	const er = drainRow(scen, 'imagekit_ext', spec, e, ideal,
		{ result: `wall ${fmt(e.wall / a.wall)} x app-side's; ${standinBusy(e)}` });
	const ar = drainRow(scen, 'app-side (node SDK)', spec, a, ideal, { result: standinBusy(a) });
	notes.push(`${scen}. ${label}: ${idealNote}. imagekit_ext: ${e.downloads} downloads, ${e.uploads} uploads, ` +
		`${e.fallbacks} fallbacks, max in flight ${e.maxDown} downloads + ${e.maxUp} uploads. ` +
		`app-side: ${a.downloads} downloads, ${a.uploads} uploads, ${a.fallbacks} fallbacks, ` +
		`max in flight ${a.maxDown} + ${a.maxUp}; its CPU is node ${fmt(a.cpuMain)} s + its ${app.backends.length} pool backends ${fmt(a.cpu - a.cpuMain)} s.`);
	return { c, e, a, er, ar, cr, ideal };
}

async function scenario1() {
	const spec = { n: P.n, distinct: P.n, size: KB20, latency: 50 };
	const { e, er, ideal } = await drainScenario(1, spec, 'latency-bound drain');
	er.target = 'wall <= 1.05 x ideal';
	er.met = yes(e.wall <= 1.05 * ideal);
}

async function scenario2() {
	const spec = { n: P.n, distinct: P.n, size: KB20, latency: 0 };
	const { c, e, a, er, cr, ar } = await drainScenario(2, spec, 'CPU-bound drain');
	const perImg = e.cpu * 1000 / spec.n;
	const drainRate = (spec.n + spec.distinct) / e.wall;    // requests/s the drain asked of the stand-in
	er.target = 'CPU <= 0.15 ms/img';
	er.met = yes(perImg <= 0.15);
	er.result = `${fmt(spec.n / e.wall, 0)} images/s; ${er.result}`;
	ar.result = `${fmt(spec.n / a.wall, 0)} images/s; ${ar.result}`;
	cr.result = `${fmt(c.rate / 2, 0)} images/s (${fmt(c.rate / drainRate)} x imagekit_ext's drain rate); ${cr.result}`;
	cr.target = ">= 3 x imagekit_ext's drain rate";
	cr.met = yes(c.rate >= 3 * drainRate);
}

async function scenario3() {
	const spec = { n: P.n, distinct: P.distinct3, size: KB20, latency: 50 };
	const { e, er } = await drainScenario(3, spec, `dedup: ${spec.n} rows over ${spec.distinct} images`);
	er.target = `exactly ${spec.distinct} uploads`;
	er.met = yes(e.uploads === spec.distinct);
}

async function scenario4() {
	const spec = { n: P.n4, distinct: P.n4, size: MB2, latency: 0 };
	log(`scenario 4: large images, ${P.repeats4} drains each`);
	const c = await ceiling({ size: spec.size, latency: 0, down: spec.n, up: spec.n });
	c.wall_s = 2 * spec.n / c.rate;
	const ideal = c.wall_s;
	const runs = { ext: [], app: [] };
	for (let i = 0; i < P.repeats4; i++) runs.ext.push(await drain(ext, spec));
	for (let i = 0; i < P.repeats4; i++) runs.app.push(await drain(app, spec));
	await app.stop();
	drainRow(4, 'ceiling (wrk)', spec, { wall: c.wall_s }, ideal, { result: ceilingResult(c) });
	const limit = 64 * (1 << 20) + C * MB2;
	for (const [key, name] of [['ext', 'imagekit_ext'], ['app', 'app-side (node SDK)']]) {
		const r = runs[key];
		const first = r[0];
		const last = r[r.length - 1];
		const peak = Math.max(...r.map((x) => x.peak));
		const row = drainRow(4, name, spec, { ...first, peak }, ideal, {
			result: `peak RSS per drain ${r.map((x) => mb(x.peak)).join(', ')} MB, after ${r.map((x) => mb(x.afterRss)).join(', ')} MB; wall ${r.map((x) => fmt(x.wall, 1)).join(', ')} s`,
		});
		if (key === 'ext') {
			row.target = `peak RSS <= ${mb(limit)} MB; last <= first + 5 %`;
			row.met = yes(peak <= limit && last.peak <= first.peak * 1.05);
		}
		notes.push(`4. ${name}: ${first.downloads} downloads, ${first.uploads} uploads, ${first.fallbacks} fallbacks ` +
			`in the first drain; wall and CPU are the first drain's; peak RSS is the largest of the ${r.length} ` +
			`(RSS before the first drain: ${mb(first.idleRss)} MB; 0.2 s after each drain: ${r.map((x) => mb(x.afterRss)).join(', ')} MB); ` +
			`CPU per drain ${r.map((x) => fmt(x.cpu)).join(', ')} s.`);
	}
}

async function scenario5() {
	log(`scenario 5: commit-to-URL latency, ${P.n5} single-row inserts`);
	const results = {};
	for (const sys of [ext, app]) {
		await resetAll(0);
		await sys.prepare();
		const base = nextSeedBase();
		const inserted = [];
		for (let i = 0; i < P.n5; i++) {
			const r = await q1(`INSERT INTO coffee_images (coffee_id, url) VALUES ($1, $2)
			                    RETURNING id, xmin::text AS x`, [base + i, `${STANDIN}/source/img-${base + i}-${KB20}.png`]);
			inserted.push(r);
			const deadline = Date.now() + 10000;
			while ((await q1('SELECT imagekit_url IS NOT NULL AS done FROM coffee_images WHERE id = $1', [r.id])).done === false) {
				if (Date.now() > deadline) throw new HarnessError(`${sys.name}: row ${r.id} got no URL in 10 s`);
				await sleep(2);
			}
		}
		const lat = (await q(`SELECT extract(epoch FROM pg_xact_commit_timestamp(c.xmin) - pg_xact_commit_timestamp(i.x::xid))::float8 * 1000 AS ms
		                        FROM coffee_images c JOIN unnest($1::bigint[], $2::text[]) AS i(id, x) ON i.id = c.id`,
		[inserted.map((r) => r.id), inserted.map((r) => r.x)])).map((r) => r.ms).sort((x, y) => x - y);
		const pct = (p) => lat[Math.min(lat.length - 1, Math.ceil(p / 100 * lat.length) - 1)];
		results[sys.name] = { p50: pct(50), p99: pct(99), max: lat[lat.length - 1] };
	}
	await app.stop();
	for (const [name, r] of Object.entries(results)) {
		const row = otherRow(5, name, {
			n: String(P.n5), size: sizeStr(KB20), lat: '0', conc: String(C),
			result: `p50 ${fmt(r.p50, 1)} ms, p99 ${fmt(r.p99, 1)} ms, max ${fmt(r.max, 1)} ms`,
		});
		if (name === 'imagekit_ext') {
			row.target = 'p50 <= 10 ms, p99 <= 50 ms';
			row.met = yes(r.p50 <= 10 && r.p99 <= 50);
		}
	}
	notes.push('5. Commit-to-URL: from the commit of each single-row INSERT to the commit that set its URL, ' +
		`both from commit timestamps. The app-side worker polls every 50 ms when idle (POLL_MS).`);
}

function pgbench(args, scriptFile) {
	const out = execFileSync(join(opt.pgbin, 'pgbench'), ['-n', '-h', pgConn.host, '-p', String(pgConn.port),
		'-U', pgConn.user, ...args, '-f', scriptFile, pgConn.database], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
	const m = out.match(/tps = ([\d.]+) \(without initial connection time\)/);
	const failed = out.match(/number of failed transactions: (\d+)/);
	if (!m) throw new HarnessError(`pgbench printed no tps:\n${out}`);
	if (failed && Number(failed[1]) > 0) throw new HarnessError(`pgbench: ${failed[1]} failed transactions`);
	return Number(m[1]);
}

// pgbench with one client, run in the background while the CPU time of its
// backend is sampled (the total at the last sample, i.e. nearly all of it).
async function pgbenchOneSession(args, scriptFile) {
	const child = spawn(join(opt.pgbin, 'pgbench'), ['-n', '-h', pgConn.host, '-p', String(pgConn.port),
		'-U', pgConn.user, '-c', '1', ...args, '-f', scriptFile, pgConn.database], { stdio: ['ignore', 'pipe', 'pipe'] });
	let out = '';
	child.stdout.on('data', (d) => { out += d; });
	child.stderr.on('data', (d) => { out += d; });
	const exited = new Promise((resolve) => child.once('exit', resolve));
	let running = true;
	exited.then(() => { running = false; });
	let pid = null;
	let cpu = 0;
	while (running) {
		if (pid === null) {
			pid = (await q("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' AND pid <> pg_backend_pid()"))[0]?.pid ?? null;
		} else {
			cpu = Math.max(cpu, cpuSeconds(pid));
		}
		await sleep(50);
	}
	if (await exited !== 0) throw new HarnessError(`pgbench failed:\n${out}`);
	const m = out.match(/tps = ([\d.]+) \(without initial connection time\)/);
	if (!m) throw new HarnessError(`pgbench printed no tps:\n${out}`);
	return { tps: Number(m[1]), backendCpu: cpu };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };

async function scenario6() {
	log('scenario 6: insert overhead, attached versus not attached');
	// The worker is paused (imagekit.enabled = off) so that draining does not
	// compete with the inserts for the two cores: this measures the insert
	// path (trigger, queue row, wake-up) only.
	await setConf('imagekit.enabled', 'off');
	const script = join(opt.workdir, 'insert.sql');
	writeFileSync(script, "\\set c random(1, 1000000000)\n" +
		`INSERT INTO coffee_images (coffee_id, url) VALUES (nextval('bench_seq'), '${STANDIN}/source/img-' || :c || '-20000.png');\n`);
	const tps = { on: [], off: [] };
	const bulk = { on: [], off: [] };
	for (let round = 0; round < P.pgbenchRounds; round++) {
		for (const mode of ['off', 'on']) {
			await resetAll(0);
			await setAttached(mode === 'on');
			await q('CHECKPOINT');
			tps[mode].push(pgbench(['-c', '4', '-j', '2', '-T', String(P.pgbenchSecs)], script));
		}
	}
	for (let round = 0; round < P.bulkRounds; round++) {
		for (const mode of ['off', 'on']) {
			await resetAll(0);
			await setAttached(mode === 'on');
			await q('VACUUM');
			await q('CHECKPOINT');
			const t0 = process.hrtime.bigint();
			await q(`INSERT INTO coffee_images (coffee_id, url)
			         SELECT g, $1 || '/source/img-' || g || '-20000.png' FROM generate_series(1, $2) g`,
			[STANDIN, P.bulkRows]);
			bulk[mode].push(Number(process.hrtime.bigint() - t0) / 1e9);
		}
	}
	const queued = (await q1('SELECT sum(queued + in_flight + done + fallback)::int AS n FROM imagekit.status')).n;
	if (queued !== P.bulkRows) throw new HarnessError(`the attached bulk insert queued ${queued} jobs, not ${P.bulkRows}`);
	await resetAll(0);
	await setConf('imagekit.enabled', 'on');
	const tOn = median(tps.on);
	const tOff = median(tps.off);
	const bOn = median(bulk.on);
	const bOff = median(bulk.off);
	otherRow(6, 'not attached', { conc: '4', result: `single-row INSERT ${fmt(tOff, 0)} tps; ${P.bulkRows}-row INSERT ... SELECT ${fmt(bOff, 3)} s` });
	otherRow(6, 'imagekit_ext', {
		conc: '4',
		result: `single-row INSERT ${fmt(tOn, 0)} tps (${fmt(tOn / tOff)}x); ${P.bulkRows}-row INSERT ... SELECT ${fmt(bOn, 3)} s (${fmt(bOn / bOff)}x)`,
		target: 'tps >= 0.85 x; bulk <= 1.3 x',
		met: yes(tOn >= 0.85 * tOff && bOn <= 1.3 * bOff),
	});
	notes.push(`6. Insert overhead: pgbench -c 4 -j 2 -T ${P.pgbenchSecs}, ${P.pgbenchRounds} round(s) alternating, median ` +
		`(tps ${tps.off.map((x) => fmt(x, 0)).join(', ')} not attached; ${tps.on.map((x) => fmt(x, 0)).join(', ')} attached); ` +
		`bulk: median of ${P.bulkRounds} (${bulk.off.map((x) => fmt(x, 3)).join(', ')} s not attached; ` +
		`${bulk.on.map((x) => fmt(x, 3)).join(', ')} s attached). The worker was paused (imagekit.enabled = off) ` +
		'so that only the insert path is measured.');
}

async function scenario7() {
	log('scenario 7: synchronous imagekit_upload() from one session');
	await resetAll(0);
	const res = await fetch(`${STANDIN}/source/img-7-${KB20}.png`);
	await q('TRUNCATE bench_template');
	await q('INSERT INTO bench_template VALUES ($1)', [Buffer.from(await res.arrayBuffer())]);
	// every call sends new bytes (a counter written into the PNG's padding chunk)
	const script = join(opt.workdir, 'upload.sql');
	writeFileSync(script, "SELECT (imagekit_upload(overlay(png PLACING int8send(nextval('bench_seq')) FROM length(png) - 40), 'bench.png')).url FROM bench_template;\n");
	const canned = Buffer.from(JSON.stringify({
		fileId: 'bench0000', name: 'bench.png', size: KB20, versionInfo: { id: 'bench0000', name: 'Version 1' },
		filePath: '/coffee-images/bench.png', url: 'https://ik.imagekit.io/demo/coffee-images/bench.png',
		fileType: 'image', height: 64, width: 64,
	})).toString('base64');
	const run = async (label, fault) => {
		await resetAll(0);
		if (fault) await standin('faults', fault);
		const tcp0 = tcpActiveOpens();
		const cpu0 = treeCpuSeconds(STANDIN_PID);
		const { tps, backendCpu } = await pgbenchOneSession(['-T', String(P.secs7)], script);
		const st = await standin('stats');
		return { label, tps, backendCpu, connects: tcpActiveOpens() - tcp0, requests: st.requests, uploads: st.uploads, standinCpu: treeCpuSeconds(STANDIN_PID) - cpu0 };
	};
	const rawFault = (close) => ({
		action: 'raw', status: 200, count: 100_000_000, body_b64: canned,
		headers: { 'Content-Type': 'application/json; charset=utf-8', 'x-ik-requestId': 'bench', ...(close ? { Connection: 'close' } : {}) },
	});
	const real = await run('real uploads, keep-alive', null);
	const keep = await run('canned answer, keep-alive', rawFault(false));
	const fresh = await run('canned answer, Connection: close', rawFault(true));
	const wrkKeep = await ceiling({ size: KB20, latency: 0, down: 0, up: 1, conns: 1 });
	const wrkClose = await ceiling({ size: KB20, latency: 0, down: 0, up: 1, conns: 1, close: true });
	await resetAll(0);
	for (const [label, c] of [['keep-alive', wrkKeep], ['Connection: close', wrkClose]]) {
		otherRow(7, `ceiling (wrk): real uploads, 1 connection, ${label}`, {
			size: sizeStr(KB20), lat: '0', conc: '1', result: ceilingResult(c).replace('req/s', 'uploads/s'),
		});
	}
	for (const r of [real, keep, fresh]) {
		const row = otherRow(7, `imagekit_upload(): ${r.label}`, {
			size: sizeStr(KB20), lat: '0', conc: '1', cpu: fmt(r.backendCpu), msimg: fmt(r.backendCpu * 1000 / r.requests, 3),
			uploads: String(r.uploads),
			result: `${fmt(r.tps, 0)} calls/s; ${r.requests} requests over ${r.connects} TCP connects; stand-in CPU ${fmt(r.standinCpu)} s`,
		});
		if (r === keep) {
			row.target = '>= 2 x fresh connection per call';
			row.met = `${yes(keep.tps >= 2 * fresh.tps)} (${fmt(keep.tps / fresh.tps)}x)`;
		}
	}
	notes.push(`7. imagekit_upload(): pgbench -c 1 -T ${P.secs7}, 20 KB of new content per call. "Fresh connection per call" ` +
		'cannot be forced from SQL, so the stand-in is told (a raw fault) to answer every upload with the same canned ' +
		'JSON and "Connection: close"; the keep-alive figure to compare with gets the same canned answer without it ' +
		'(so the stand-in does the same work per call in both). TCP connects are machine-wide (/proc/net/snmp ActiveOpens). ' +
		'CPU is the pgbench session\'s backend (sampled every 50 ms); CPU ms/img is per call.');
}


// 8. A backlog: n8 rows over distinct8 images, inserted at once, drained
// drains8 times in a row (new rows and new images each time), with a short
// job retention so that the workers remove finished jobs meanwhile.
async function scenario8() {
	const n = P.n8;
	const step = n / 10;
	log(`scenario 8: a backlog of ${n} rows over ${P.distinct8} images, ${P.drains8} drains`);
	await setConf('imagekit.job_retention', '1min');
	await resetAll(0);
	await ext.prepare();
	const pid = ext.pid;
	const jobsSize = async () => Number((await q1("SELECT pg_total_relation_size('imagekit.jobs') AS b")).b);
	const sizes = [await jobsSize()];
	const drains = [];
	for (let d = 0; d < P.drains8; d++) {
		const base = nextSeedBase();
		const cpu0 = cpuSeconds(pid);
		const t0 = process.hrtime.bigint();
		const xid = await insertRows(n, P.distinct8, KB20, base);
		const insertS = Number(process.hrtime.bigint() - t0) / 1e9;
		const start = Date.now();
		const samples = [{ at: 0, done: 0 }];  // rows done, seconds since the insert
		const statusMs = [];
		const rss = [];
		for (;;) {
			const s0 = process.hrtime.bigint();
			const st = await q1(`SELECT coalesce(sum(queued + in_flight), 0)::bigint AS left
			                      FROM imagekit.status WHERE tbl = 'coffee_images'::regclass`);
			statusMs.push(Number(process.hrtime.bigint() - s0) / 1e6);
			const done = n - Number(st.left);
			const at = (Date.now() - start) / 1000;
			rss.push({ done, bytes: rssBytes(pid) });
			samples.push({ at, done });
			if (Number(st.left) === 0) break;
			if (at > Math.max(P.timeoutS, n / 50)) throw new HarnessError(`scenario 8: ${st.left} jobs left after ${at} s`);
			await sleep(250);
		}
		// when each tenth was done, between the samples around it
		const crossing = (target) => {
			const i = samples.findIndex((x) => x.done >= target);
			const [a, b] = [samples[i - 1], samples[i]];
			return a.at + (b.at - a.at) * (target - a.done) / (b.done - a.done);
		};
		const marks = Array.from({ length: 10 }, (_, k) => crossing((k + 1) * step));
		await waitDrained(60, 'scenario 8');
		const cpu = cpuSeconds(pid) - cpu0;
		const { s: wall, fallbacks } = await drainWall(xid);
		// the largest RSS of each tenth: a leak would make them climb
		const tenthRss = Array.from({ length: 10 }, (_, k) => Math.max(0, ...rss
			.filter((r) => r.done >= k * step && r.done <= (k + 1) * step).map((r) => r.bytes)));
		const rates = marks.map((t, i) => step / (t - (i === 0 ? 0 : marks[i - 1])));
		sizes.push(await jobsSize());
		const sorted = [...statusMs].sort((a, b) => a - b);
		drains.push({
			wall, cpu, insertS, fallbacks, rates,
			tenthRss,
			statusMax: sorted[sorted.length - 1], statusP99: sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)],
			samples: statusMs.length,
		});
	}
	const st = await standin('stats');
	await setConf('imagekit.job_retention', '7d');
	await resetAll(0);
	const spec = { n, size: KB20, latency: 0 };
	drains.forEach((d, i) => {
		// from the second tenth on: the first also moves the inbox into the queue
		const rest = d.rates.slice(1);
		const steady = Math.min(...rest) >= 0.8 * median(rest);
		const seen = d.tenthRss.slice(1).filter((b) => b > 0);
		const flat = seen.length === 0 || seen[seen.length - 1] <= 1.1 * seen[0];
		const row = drainRow(8, `imagekit_ext, drain ${i + 1}`, spec, { wall: d.wall, cpu: d.cpu, peak: Math.max(...d.tenthRss), uploads: i === drains.length - 1 ? st.uploads : '' }, null, {
			result: `${fmt(n / d.wall, 0)} images/s; per ${step >= 1000 ? `${step / 1000}k` : step}: ${d.rates.map((r) => fmt(r, 0)).join(', ')}; ` +
				`worker RSS per tenth ${d.tenthRss.map((b) => mb(b)).join(', ')} MB; imagekit.status max ${fmt(d.statusMax, 1)} ms (p99 ${fmt(d.statusP99, 1)}, ${d.samples} samples); ` +
				`imagekit.jobs ${mb(sizes[i + 1])} MB after`,
			target: 'steady rate; RSS flat within 10 %; status < 50 ms',
		});
		row.met = yes(flat && d.statusMax < 50 && steady);
	});
	notes.push(`8. Backlog: ${n} rows over ${P.distinct8} images of 20 KB (${n / P.distinct8} rows each), one INSERT ... SELECT ` +
		`(${drains.map((d) => fmt(d.insertS, 1)).join(', ')} s), drained ${P.drains8} times with new rows and images; imagekit.job_retention = 1min ` +
		'during the scenario. Progress, the worker\'s RSS and the time of a SELECT from imagekit.status are read every 0.25 s; ' +
		`"per ${step >= 1000 ? `${step / 1000}k` : step}" is the rate (images/s) of each tenth of the backlog (steady: from the second tenth on, ` +
		'none below 0.8 x their median; the first also moves the inbox into the queue); "worker RSS per tenth" is the largest sample of each ' +
		'tenth (flat: the last within 10 % of the second). ' +
		`imagekit.jobs (table and indexes): ${sizes.map((b) => `${mb(b)} MB`).join(' -> ')} (before, after each drain). ` +
		`Fallbacks: ${drains.map((d) => d.fallbacks).join(', ')}; uploads over all drains ${st.uploads}; CPU is the worker's.`);
}

// 9. Scenario 2 with two workers in one database, and with one worker in
// each of two databases draining at once.
async function scenario9() {
	const spec = { n: P.n, distinct: P.n, size: KB20, latency: 0 };
	log('scenario 9: two workers, and two databases');
	const one = await drain(ext, spec);

	// two workers in one database
	await setConf('imagekit.workers', '2');
	await resetAll(0);
	await setAttached(true);
	const pids = await workerPids(2, pgConn.database);
	const cpu0 = pids.map(cpuSeconds);
	const xid = await insertRows(spec.n, spec.n, KB20, nextSeedBase());
	await waitDrained(P.timeoutS, 'scenario 9, two workers');
	const cpu2 = pids.map((p, i) => cpuSeconds(p) - cpu0[i]);
	const two = await drainWall(xid);
	await setConf('imagekit.workers', '1');
	await resetAll(0);
	await workerPids(1, pgConn.database);

	// two databases, one worker each
	const other = 'bench_b';
	if (!(await q1('SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [other])).n) {
		await q(`CREATE DATABASE ${other}`);
	}
	const db2 = new pg.Client({ ...pgConn, database: other, application_name: 'imagekit-bench-driver' });
	await db2.connect();
	await db2.query('CREATE EXTENSION IF NOT EXISTS imagekit_ext');
	if (!(await db2.query("SELECT to_regclass('coffee_images') IS NOT NULL AS t")).rows[0].t) {
		execFileSync(join(opt.pgbin, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', pgConn.host,
			'-p', String(pgConn.port), '-U', pgConn.user, '-d', other, '-f', join(root, 'migrations', 'coffee_images.sql')],
		{ stdio: ['ignore', 'ignore', 'inherit'] });
	}
	await db2.query('TRUNCATE coffee_images, imagekit.jobs, imagekit.inbox, imagekit.assets, imagekit.job_counts');
	const pidA = (await workerPids(1, pgConn.database))[0];
	const pidB = (await workerPids(1, other))[0];
	const cpuAB0 = [cpuSeconds(pidA), cpuSeconds(pidB)];
	const insert2 = async (client, base) => {
		await client.query('BEGIN');
		const { x } = (await client.query('SELECT pg_current_xact_id()::text AS x')).rows[0];
		await client.query(`INSERT INTO coffee_images (coffee_id, url)
		                    SELECT $1::bigint + g, $2 || '/source/img-' || ($1::bigint + g) || '-' || $3 || '.png'
		                      FROM generate_series(1, $4) g`, [base, STANDIN, KB20, spec.n]);
		return x;
	};
	const xa = await insert2(db, nextSeedBase());
	const xb = await insert2(db2, nextSeedBase());
	await Promise.all([db.query('COMMIT'), db2.query('COMMIT')]);
	for (;;) {
		const left = (await q1('SELECT count(*)::int AS n FROM coffee_images WHERE imagekit_url IS NULL')).n +
			(await db2.query('SELECT count(*)::int AS n FROM coffee_images WHERE imagekit_url IS NULL')).rows[0].n;
		if (left === 0) break;
		await sleep(20);
	}
	const cpuAB = [cpuSeconds(pidA) - cpuAB0[0], cpuSeconds(pidB) - cpuAB0[1]];
	// from the first insert's commit to the last URL's, across both databases
	const span = async (client, x) => (await client.query(`SELECT extract(epoch FROM pg_xact_commit_timestamp(($1::bigint % 4294967296)::text::xid))::float8 AS t0,
	                                                              extract(epoch FROM max(pg_xact_commit_timestamp(xmin)))::float8 AS t1 FROM coffee_images`, [x])).rows[0];
	const a = await span(db, xa);
	const b = await span(db2, xb);
	const wallAB = Math.max(a.t1, b.t1) - Math.min(a.t0, b.t0);
	await db2.query('TRUNCATE coffee_images, imagekit.jobs, imagekit.inbox, imagekit.assets, imagekit.job_counts');
	await db2.end();
	await resetAll(0);

	const rate = (images, wall) => images / wall;
	drainRow(9, 'imagekit_ext, 1 worker', spec, one, null, { result: `${fmt(rate(spec.n, one.wall), 0)} images/s` });
	drainRow(9, 'imagekit_ext, 2 workers, 1 database', spec, { wall: two.s, cpu: cpu2[0] + cpu2[1] }, null, {
		result: `${fmt(rate(spec.n, two.s), 0)} images/s (${fmt(one.wall / two.s)} x 1 worker); CPU per worker ${cpu2.map((c) => fmt(c)).join(' + ')} s`,
	});
	drainRow(9, 'imagekit_ext, 2 databases, 1 worker each', { ...spec, n: 2 * spec.n }, { wall: wallAB, cpu: cpuAB[0] + cpuAB[1] }, null, {
		result: `${fmt(rate(2 * spec.n, wallAB), 0)} images/s (${fmt(rate(2 * spec.n, wallAB) / rate(spec.n, one.wall))} x 1 worker); ` +
			`CPU per worker ${cpuAB.map((c) => fmt(c)).join(' + ')} s`,
	});
	notes.push(`9. Scenario 2's drain (${spec.n} x 20 KB, latency 0) by one worker, by two workers of one database ` +
		'(imagekit.workers = 2), and by one worker in each of two databases, each with its own ' +
		`${spec.n} rows, inserted and committed together (wall: the first insert's commit to the last URL's commit ` +
		'in either database). CPU is the workers\' together. The stand-in, the workers and PostgreSQL share the two cores.');
}

// 10. Delivery URLs: imagekit.url() in one session against the Node SDK's
// helper.buildSrc() in one process, unsigned and signed.
async function scenario10() {
	const n = P.n10;
	log(`scenario 10: ${n} delivery URLs, imagekit.url() and buildSrc()`);
	const endpoint = (await q1("SELECT current_setting('imagekit.url_endpoint') AS e")).e;
	const sql = async (signed) => {
		const make = (m) => `SELECT count(imagekit.url('/coffee/img-' || g || '.jpg', 'w-300,h-200'${signed ? ', signed => true' : ''}))
		                     FROM generate_series(1, ${m}) g`;
		await q(make(n / 10));          // warm-up
		const t0 = process.hrtime.bigint();
		await q(make(n));
		return n / (Number(process.hrtime.bigint() - t0) / 1e9);
	};
	const unsigned = await sql(false);
	const signed = await sql(true);
	const first = (await q1("SELECT imagekit.url('/coffee/img-1.jpg', 'w-300,h-200') AS u")).u;
	const firstSigned = (await q1("SELECT imagekit.url('/coffee/img-1.jpg', 'w-300,h-200', signed => true) AS u")).u;
	const node = JSON.parse(execFileSync(process.execPath, [join(here, 'urls.mjs'), String(n), endpoint, opt.key]).toString());
	const same = first === node.first && firstSigned === node.first_signed;
	otherRow(10, 'imagekit.url(), one session', {
		result: `${fmt(unsigned, 0)} URLs/s unsigned, ${fmt(signed, 0)} signed (${fmt(unsigned / node.unsigned)} x and ${fmt(signed / node.signed)} x the SDK's)`,
	});
	otherRow(10, 'Node SDK buildSrc(), one process', {
		result: `${fmt(node.unsigned, 0)} URLs/s unsigned, ${fmt(node.signed, 0)} signed`,
	});
	notes.push(`10. ${n} URLs of '/coffee/img-<i>.jpg' with the transformation 'w-300,h-200': imagekit.url() in one ` +
		'SELECT over generate_series (one session, timed by the driver), helper.buildSrc() of @imagekit/nodejs in a loop ' +
		`(test/bench/urls.mjs, after a warm-up of a tenth); signed URLs never expire. The first URLs of both are ${same ? 'identical' : `DIFFERENT (${first} / ${node.first})`}.`);
}

// ---- main -----------------------------------------------------------------------------

const scenarios = {
	1: scenario1, 2: scenario2, 3: scenario3, 4: scenario4, 5: scenario5, 6: scenario6, 7: scenario7,
	8: scenario8, 9: scenario9, 10: scenario10,
};
let serverVersion = 'PostgreSQL ?';
const startLoad = loadavg().map((x) => x.toFixed(2)).join(' ');
let status = 0;
try {
	await setup();
	serverVersion = (await q1("SELECT split_part(version(), ' on ', 1) AS v")).v;
	for (const s of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) if (wanted.has(s)) await scenarios[s]();
} catch (err) {
	status = 1;
	console.error(`benchmark failed: ${err instanceof HarnessError ? err.message : err.stack}`);
	if (app.errors?.length) console.error(`app-side worker stderr: ${app.errors.join('\n')}`);
} finally {
	await app.stop().catch(() => {});
}

// What was measured: the source tree (commit, and what differs from it
// outside the benchmark) and the machine.
function describe() {
	const sh = (cmd, args) => { try { return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString(); } catch { return '?'; } };
	const commit = sh('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).trim();
	const dirty = sh('git', ['-C', root, 'status', '--porcelain', '--', '.', ':!test/bench', ':!BENCHMARKS.md'])
		.split('\n').filter(Boolean).map((l) => l.slice(3));
	const cpu = (readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) ?? [, '?'])[1];
	const memGB = Number((readFileSync('/proc/meminfo', 'utf8').match(/^MemTotal:\s+(\d+)/m) ?? [, 0])[1]) / 1048576;
	return [
		`source: commit ${commit}${dirty.length ? ` plus uncommitted changes to ${dirty.join(', ')}` : ' (clean)'}`,
		`machine: ${availableParallelism()} CPUs (${cpu}), ${memGB.toFixed(1)} GB RAM, ${serverVersion}, ` +
		`node ${process.version}, ${sh('python3', ['--version']).trim()} (stand-in), wrk ${sh('dpkg-query', ['-W', '-f=${Version}', 'wrk'])}, ` +
		`${sh('curl', ['--version']).split(' ').slice(0, 2).join(' ')}`,
		`load average at start ${startLoad}, at end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
	].join('\n');
}
const header = `imagekit_ext benchmark${SMOKE ? ' (SMOKE sizes: figures mean nothing)' : ''}: ` +
	`${new Date().toISOString()}, ${schemaNote ?? ''}, concurrency ${C}\n${describe()}`;
const legend = [
	'wall: insert commit to the last URL commit (commit timestamps); x ideal: wall / ideal, where ideal is',
	'(downloads + uploads) x latency / C when latency > 0, else the ceiling (load generator alone) time;',
	'CPU: imagekit_ext = its background worker; app-side = node + its pool backends. Peak RSS: RssAnon + RssFile',
	'sampled every 10 ms (shared memory excluded), the worker / the node process. uploads: seen by the stand-in.',
];
if (rows.length) {
	console.log(`\n${header}\n\n${textTable()}\n\n${legend.join('\n')}\n\n${notes.map((n) => `- ${n}`).join('\n')}`);
	if (opt.markdown) {
		writeFileSync(opt.markdown, `${header.split('\n').join('  \n')}\n\n${markdownTable()}\n\n${legend.join(' ')}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
	}
}
await db.end();
process.exit(status);
