'use strict';
// ws echo peer: every message on any path comes back unchanged (text as text, binary as
// binary), up to 16 MiB, permessage-deflate off unless --deflate (then ws's defaults); every message on `/fanout` goes to every
// other connection on `/fanout`.
//
//   node ws-echo.js --port 9001
//
// Prints `listening on 127.0.0.1:PORT` once accepting. SIGINT/SIGTERM end the process at
// once (status 0). ws picks up the native `bufferutil` addon for masking when it is
// installed (it is in package.json, as ws's README recommends).

const { parseArgs } = require('node:util');
const { WebSocket, WebSocketServer } = require('ws');

// Explicit, so they work even where the parent left SIGINT ignored (a shell's `&`).
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));

function usage(problem) {
  console.error(`ws-echo: ${problem}\nusage: node ws-echo.js --port P [--deflate]`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({ options: { port: { type: 'string' }, deflate: { type: 'boolean' } }, strict: true }));
} catch (err) {
  usage(err.message);
}
const port = Number(values.port);
if (values.port === undefined || values.port === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
  usage('--port P (0-65535) is required');
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: values.deflate === true,
  maxPayload: 16 << 20,
});

// Connections on /fanout: each message goes to every other one (ws's broadcast recipe).
const fanout = new Set();

wss.on('connection', (ws, req) => {
  // A peer's protocol error closes its connection; nothing to log in a benchmark.
  ws.on('error', () => {});
  if (req.url === '/fanout') {
    fanout.add(ws);
    ws.on('close', () => fanout.delete(ws));
    ws.on('message', (data, isBinary) => {
      for (const client of fanout) {
        if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
      }
    });
    return;
  }
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});

wss.on('listening', () => {
  console.log(`listening on 127.0.0.1:${wss.address().port}`);
});

wss.on('error', (err) => {
  console.error(`ws-echo: ${err.message}`);
  process.exit(1);
});
