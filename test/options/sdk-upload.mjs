// sdk-upload.mjs: upload one file with the official Node SDK
// (@imagekit/nodejs, resolved from $IK_SDK_DIR, e.g. test/bench after its
// npm ci), so that test/t/016_options.pl can compare the multipart fields
// the SDK sends with those the extension sends, as the stand-in saw them.
// Input (stdin): one JSON object: baseURL, privateKey, fileBase64, and the
// SDK's own upload parameters (fileName, folder, tags, customMetadata,
// isPrivateFile, extensions, transformation, useUniqueFileName).
// Output: the upload answer as JSON, or "ERROR: <message>".
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.IK_SDK_DIR || process.cwd(), 'noop.js'));
const mod = require('@imagekit/nodejs');
const ImageKit = mod.default || mod.ImageKit || mod;
const { toFile } = mod;

let input = '';
for await (const chunk of process.stdin)
	input += chunk;
const { baseURL, privateKey, fileBase64, ...params } = JSON.parse(input);
const client = new ImageKit({ privateKey, baseURL, maxRetries: 0 });
try {
	const file = await toFile(Buffer.from(fileBase64, 'base64'), params.fileName, { type: 'image/png' });
	const res = await client.files.upload({ file, ...params });
	console.log(JSON.stringify(res));
} catch (e) {
	console.log(`ERROR: ${e.message}`);
}
