// Node `ws` against `echo --deflate`: negotiates permessage-deflate (ws offers it by default),
// round-trips text and binary of 0 B, 1 KiB and 1 MiB, then those of 1 KiB and 1 MiB through
// `/broadcast` (the server's fan-out), and checks the server compressed them.
// Usage: node ws_client.mjs ws://127.0.0.1:PORT/
import WebSocket from 'ws';
import { SIZES, binary, text } from './payloads.mjs';

const url = process.argv[2];
const fail = (msg) => {
  console.error(`ws client: FAIL: ${msg}`);
  process.exit(1);
};
setTimeout(() => fail('timed out after 30 s'), 30_000).unref();

const ws = new WebSocket(url, { perMessageDeflate: true, maxPayload: 4 << 20 });
let answered = '';
ws.once('upgrade', (res) => (answered = res.headers['sec-websocket-extensions'] || ''));
await new Promise((resolve, reject) => {
  ws.once('open', resolve);
  ws.once('error', reject);
}).catch((e) => fail(`connect: ${e.message}`));

if (!/^permessage-deflate\b/.test(answered) || ws.extensions !== 'permessage-deflate') {
  fail(`permessage-deflate not negotiated (Sec-WebSocket-Extensions: ${JSON.stringify(answered)})`);
}

const messages = [];
ws.on('message', (data, isBinary) => messages.push({ data, isBinary }));
const next = () =>
  new Promise((resolve) => {
    const poll = () => (messages.length ? resolve(messages.shift()) : setTimeout(poll, 1));
    poll();
  });

let checked = 0;
for (const size of SIZES) {
  for (const kind of ['text', 'binary']) {
    const sent = kind === 'text' ? text(size) : binary(size);
    // The socket's byte count shows whether the echo came compressed.
    const before = ws._socket.bytesRead;
    ws.send(sent, { binary: kind === 'binary' });
    const { data, isBinary } = await next();
    const wire = ws._socket.bytesRead - before;
    const expected = kind === 'text' ? Buffer.from(sent, 'utf8') : Buffer.from(sent);
    if (isBinary !== (kind === 'binary')) fail(`${kind} ${size}: echoed as ${isBinary ? 'binary' : 'text'}`);
    if (!Buffer.from(data).equals(expected)) fail(`${kind} ${size}: echo differs (${data.length} bytes)`);
    if (size === 1 << 20 && wire >= size * 0.5) fail(`${kind} ${size}: ${wire} bytes on the wire, not compressed`);
    checked++;
  }
}
ws.close(1000, 'done');
const [code] = await new Promise((resolve) => ws.once('close', (...a) => resolve(a)));
if (code !== 1000) fail(`closed with ${code}`);

// The same through the server's fan-out (a topic the connection itself is on), which
// compresses once for all recipients.
const fan = new WebSocket(`${url}broadcast`, { perMessageDeflate: true, maxPayload: 4 << 20 });
await new Promise((resolve, reject) => {
  fan.once('open', resolve);
  fan.once('error', reject);
}).catch((e) => fail(`connect to /broadcast: ${e.message}`));
if (fan.extensions !== 'permessage-deflate') fail('/broadcast: permessage-deflate not negotiated');
const fanned = [];
fan.on('message', (data, isBinary) => fanned.push({ data, isBinary }));
for (const size of SIZES.filter((s) => s > 0)) {
  for (const kind of ['text', 'binary']) {
    const sent = kind === 'text' ? text(size) : binary(size);
    const before = fan._socket.bytesRead;
    fan.send(sent, { binary: kind === 'binary' });
    while (!fanned.length) await new Promise((r) => setTimeout(r, 1));
    const { data, isBinary } = fanned.shift();
    const wire = fan._socket.bytesRead - before;
    const expected = kind === 'text' ? Buffer.from(sent, 'utf8') : Buffer.from(sent);
    if (isBinary !== (kind === 'binary')) fail(`broadcast ${kind} ${size}: came as ${isBinary ? 'binary' : 'text'}`);
    if (!Buffer.from(data).equals(expected)) fail(`broadcast ${kind} ${size}: differs (${data.length} bytes)`);
    if (size === 1 << 20 && wire >= size * 0.5) fail(`broadcast ${kind} ${size}: ${wire} bytes on the wire, not compressed`);
    checked++;
  }
}
fan.close(1000, 'done');
const [fanCode] = await new Promise((resolve) => fan.once('close', (...a) => resolve(a)));
if (fanCode !== 1000) fail(`/broadcast closed with ${fanCode}`);
console.log(`ws client: OK: ${checked} messages (echo and broadcast), extensions "${answered}"`);
