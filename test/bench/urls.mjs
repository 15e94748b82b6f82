// Scenario 10 of the benchmark (test/bench/bench.mjs): how many delivery
// URLs the official Node SDK builds per second in one process, the way
// imagekit.url() builds them in one session.
//
//   node test/bench/urls.mjs N URL_ENDPOINT PRIVATE_KEY
//
// Prints one JSON line: {"unsigned": URLs/s, "signed": URLs/s, "first": the
// first unsigned URL, "first_signed": ...} (each loop builds N URLs after a
// warm-up of N / 10).
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(`${dirname(fileURLToPath(import.meta.url))}/`);
const mod = require('@imagekit/nodejs');
const ImageKit = mod.default || mod.ImageKit || mod;

const [n, urlEndpoint, privateKey] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const client = new ImageKit({ privateKey });
const build = (i, signed) => client.helper.buildSrc({
	src: `/coffee/img-${i}.jpg`, urlEndpoint, transformation: [{ raw: 'w-300,h-200' }],
	...(signed ? { signed: true } : {}),
});

function rate(signed) {
	let sink = 0;
	for (let i = 1; i <= n / 10; i++) sink += build(i, signed).length;
	const t0 = process.hrtime.bigint();
	for (let i = 1; i <= n; i++) sink += build(i, signed).length;
	const s = Number(process.hrtime.bigint() - t0) / 1e9;
	if (sink === 0) throw new Error('no URL built');
	return n / s;
}

console.log(JSON.stringify({
	unsigned: rate(false), signed: rate(true), first: build(1, false), first_signed: build(1, true),
}));
