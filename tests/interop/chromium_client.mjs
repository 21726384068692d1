// Headless Chromium (Debian's, driven by playwright-core) against `echo --deflate`: the browser
// offers permessage-deflate by default; the page round-trips text and binary of 0 B, 1 KiB and
// 1 MiB, then those of 1 KiB and 1 MiB through `/broadcast` (the server's fan-out), and reports
// `WebSocket.extensions`.
// Usage: node chromium_client.mjs ws://127.0.0.1:PORT/ [path to chromium]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const url = process.argv[2];
const executablePath = process.argv[3] || '/usr/bin/chromium';
const fail = (msg) => {
  console.error(`chromium client: FAIL: ${msg}`);
  process.exit(1);
};
setTimeout(() => fail('timed out after 60 s'), 60_000).unref();

const profile = mkdtempSync(join(tmpdir(), 'ringsocket-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  const result = await page.evaluate(async (url) => {
    const WORDS = ['ring', 'socket', 'deflate', 'frame', 'message', 'window', 'inflate',
      'core', 'server', 'client', 'echo', 'context', 'takeover', 'bits', 'json', '{"id":', '},\n'];
    const lcg = (seed) => {
      let x = seed >>> 0;
      return () => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return x >>> 16;
      };
    };
    const words = (bytes) => {
      const next = lcg(1);
      const parts = [];
      let len = 0;
      while (len < bytes) {
        const w = WORDS[next() % WORDS.length] + ' ';
        parts.push(w);
        len += w.length;
      }
      return parts.join('').slice(0, bytes);
    };
    // The same messages as payloads.mjs (a page cannot import it).
    const text = (bytes) => (bytes === 0 ? '' : '\u00e9' + words(bytes - 2));
    const binary = (bytes) => {
      const w = words(bytes);
      const out = new Uint8Array(bytes);
      for (let i = 0; i < bytes; i++) out[i] = w.charCodeAt(i) ^ 0x80;
      return out;
    };
    // Opens `target` and round-trips text and binary of each size; what comes back must be
    // what was sent.
    const roundTrip = async (target, sizes, label, errors) => {
      const ws = new WebSocket(target);
      ws.binaryType = 'arraybuffer';
      const queue = [];
      let waiter = null;
      ws.onmessage = (e) => {
        queue.push(e.data);
        if (waiter) waiter();
      };
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error(`${label}: connection failed`));
      });
      const next = async () => {
        while (!queue.length) await new Promise((r) => (waiter = r));
        return queue.shift();
      };
      let checked = 0;
      for (const size of sizes) {
        const t = text(size);
        ws.send(t);
        const echoT = await next();
        if (typeof echoT !== 'string' || echoT !== t) errors.push(`${label} text ${size}: differs`);
        const b = binary(size);
        ws.send(b);
        const echoB = await next();
        const got = echoB instanceof ArrayBuffer ? new Uint8Array(echoB) : null;
        if (!got || got.length !== b.length || got.some((v, i) => v !== b[i])) {
          errors.push(`${label} binary ${size}: differs`);
        }
        checked += 2;
      }
      const closed = new Promise((resolve) => (ws.onclose = (e) => resolve(e.code)));
      ws.close(1000, 'done');
      const code = await closed;
      if (code !== 1000) errors.push(`${label}: closed with ${code}`);
      return { extensions: ws.extensions, checked };
    };
    const errors = [];
    const echo = await roundTrip(url, [0, 1024, 1 << 20], 'echo', errors);
    // The server's fan-out (a topic the connection itself is on).
    const fan = await roundTrip(`${url}broadcast`, [1024, 1 << 20], 'broadcast', errors);
    if (fan.extensions !== echo.extensions) {
      errors.push(`/broadcast extensions ${JSON.stringify(fan.extensions)}`);
    }
    return { extensions: echo.extensions, errors, checked: echo.checked + fan.checked };
  }, url);
  if (!/^permessage-deflate\b/.test(result.extensions)) {
    fail(`permessage-deflate not negotiated (extensions: ${JSON.stringify(result.extensions)})`);
  }
  if (result.errors.length) fail(result.errors.join('; '));
  console.log(
    `chromium client: OK: ${result.checked} messages (echo and broadcast), extensions "${result.extensions}"`,
  );
} catch (e) {
  fail(e.stack || String(e));
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
