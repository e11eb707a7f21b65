#!/usr/bin/env python3
"""Reference WebSocket echo server (Python `websockets`), a known-good peer
for run.sh and a yardstick for turbo_ws:

    reference_echo_server.py [PORT]     # listens on 127.0.0.1:PORT (9001)

Echoes every message with its type (text stays text). Limits are lifted
(max_size) and keepalive pings are off, so that what Autobahn measures is the
protocol handling, not this server's policy. permessage-deflate is on.
"""
import asyncio
import signal
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except Exception:
        pass  # protocol errors are Autobahn's to judge; keep serving


async def main(port):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(echo, "127.0.0.1", port, max_size=None, ping_interval=None):
        print("reference echo server on ws://127.0.0.1:%d" % port, flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9001))
