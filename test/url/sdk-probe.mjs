// buildsrc-probe.mjs — feed JSON lines on stdin, print @imagekit/nodejs buildSrc() output per line.
// Usage (offline once installed):
//   mkdir -p /tmp/sdkprobe && cd /tmp/sdkprobe && npm init -y >/dev/null && npm install @imagekit/nodejs
//   cd /tmp/sdkprobe && node /work/research/buildsrc-probe.mjs < cases.jsonl
// The SDK is resolved from the CURRENT DIRECTORY (or $IK_SDK_DIR), not from this file's folder.
// Input fields per line: src, urlEndpoint, transformation (array of SDK objects, or a string
//   which is passed verbatim as [{raw: string}]), transformationPosition ('path'|'query'),
//   signed (bool), expiresIn (number), queryParameters (object),
//   privateKey (default 'dummy-key'), now (optional unix seconds: freezes the clock for ik-t).
// Output: one line per input: the URL ('' printed as empty line). Errors print "ERROR: <msg>".
import { createRequire } from 'node:module';
import readline from 'node:readline';
import path from 'node:path';

const base = process.env.IK_SDK_DIR || process.cwd();
const require = createRequire(path.join(base, 'noop.js'));
const mod = require('@imagekit/nodejs');
const ImageKit = mod.default || mod.ImageKit || mod;

const RealDate = Date;
function freezeClock(sec) {
  const ms = sec * 1000;
  globalThis.Date = class extends RealDate {
    constructor(...a) { if (a.length === 0) super(ms); else super(...a); }
    static now() { return ms; }
  };
}
function unfreezeClock() { globalThis.Date = RealDate; }

const clients = new Map();
function client(pk) {
  if (!clients.has(pk)) clients.set(pk, new ImageKit({ privateKey: pk }));
  return clients.get(pk);
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  try {
    const c = JSON.parse(line);
    const opts = { src: c.src, urlEndpoint: c.urlEndpoint };
    if (typeof c.transformation === 'string') opts.transformation = c.transformation === '' ? [] : [{ raw: c.transformation }];
    else if (c.transformation !== undefined) opts.transformation = c.transformation;
    for (const k of ['transformationPosition', 'signed', 'expiresIn', 'queryParameters'])
      if (c[k] !== undefined) opts[k] = c[k];
    if (c.now !== undefined) freezeClock(c.now);
    try {
      console.log(client(c.privateKey ?? 'dummy-key').helper.buildSrc(opts));
    } finally { unfreezeClock(); }
  } catch (e) {
    console.log('ERROR: ' + (e && e.message));
  }
}
