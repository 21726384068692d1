'use strict';
// fastify + @fastify/websocket echo peer: every message on `/` comes back unchanged (text
// as text, binary as binary), up to 16 MiB, permessage-deflate off unless --deflate (then ws's defaults); every message on
// `/fanout` goes to every other connection on `/fanout`.
//
//   node fastify-echo.js --port 9001
//
// Prints `listening on 127.0.0.1:PORT` once accepting. SIGINT/SIGTERM end the process at
// once (status 0).

const { parseArgs } = require('node:util');
const Fastify = require('fastify');

// Explicit, so they work even where the parent left SIGINT ignored (a shell's `&`).
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));

function usage(problem) {
  console.error(`fastify-echo: ${problem}\nusage: node fastify-echo.js --port P [--deflate]`);
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

async function main() {
  const fastify = Fastify({ logger: false });
  await fastify.register(require('@fastify/websocket'), {
    options: { maxPayload: 16 << 20, perMessageDeflate: values.deflate === true },
  });
  fastify.get('/', { websocket: true }, (socket) => {
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  // Fan-out through the plugin's client tracking (fastify.websocketServer.clients).
  const fanout = new WeakSet();
  fastify.get('/fanout', { websocket: true }, (socket) => {
    fanout.add(socket);
    socket.on('message', (data, isBinary) => {
      for (const client of fastify.websocketServer.clients) {
        if (client !== socket && fanout.has(client) && client.readyState === 1) client.send(data, { binary: isBinary });
      }
    });
  });
  await fastify.listen({ host: '127.0.0.1', port });
  console.log(`listening on 127.0.0.1:${fastify.server.address().port}`);
}

main().catch((err) => {
  console.error(`fastify-echo: ${err.message}`);
  process.exit(1);
});
