// Bench anchor: Node.js with the `ws` package, echoing every message back
// with its type. Compression off like every other server in the benchmark.
// Usage: node ws_echo.js PORT
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
if (!Number.isInteger(port)) {
  console.error('usage: node ws_echo.js PORT');
  process.exit(2);
}
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
