#!/usr/bin/env python3
"""Peers for spec/coro_websocket_peers_spec.lua, independent of turbo_ws.

    coro_peer.py PORT_FILE [CA CERT KEY]

Listens on 127.0.0.1, port 0 (the kernel picks), and writes
"ws=N raw=N [mtls=N]" to PORT_FILE once listening:

- ws: a Python `websockets` server. Paths:
    /echo...      the reference echo server's handler (tests/conformance)
    /headers      sends the request target and headers as JSON, then echoes
    /ping         pings with b"hello", sends "after-ping", then echoes
    /fragments    sends "frag"+"ment"+"ed" as one fragmented text message
    /close        closes with 4000 "bye"
    /forbidden    answers 403
  The subprotocol "chat" is selected when offered.
- raw: a hand-written server for what `websockets` would never send:
    /raw/HEX      101, then the bytes HEX in the same write; then waits for the
                  client's close frame (or EOF) and closes
    /rawdrop/HEX  the same, then drops the TCP connection
    /badaccept    101 with a wrong Sec-WebSocket-Accept
    /status/400   a 400 answer with a body
    /eof          closes without answering
    /silent       accepts and never answers
- resetter: a blocking server (a plain thread) for a close the client cannot
  answer: 101, then 0.3 s later, having read nothing the client sent, a
  close 4004 "Authentication failed." and close(): the unread bytes make
  that a TCP reset (a gateway refusing a token does this).
- mtls (with CA CERT KEY): /echo over TLS, requiring a client certificate
  signed by CA.

Stops when its stdin is closed, or after 300 s in any case.
"""
import asyncio
import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from http import HTTPStatus

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "conformance"))
from reference_echo_server import echo  # noqa: E402  (the reference handler itself)
from websockets.asyncio.server import serve  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def ws_handler(ws):
    path = ws.request.path.split("?")[0]
    if path == "/headers":
        await ws.send(json.dumps({"path": ws.request.path,
                                  "headers": list(ws.request.headers.raw_items())}))
    elif path == "/ping":
        await ws.ping(b"hello")
        await ws.send("after-ping")
    elif path == "/fragments":
        await ws.send(["frag", "ment", "ed"])
    elif path == "/close":
        await ws.close(4000, "bye")
        return
    await echo(ws)


def process_request(connection, request):
    if request.path == "/forbidden":
        return connection.respond(HTTPStatus.FORBIDDEN, "nope\n")
    return None


def select_subprotocol(connection, offered):
    return "chat" if "chat" in offered else None


async def raw_handler(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except Exception:
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    key = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if path == "/eof":
        writer.close()
        return
    if path == "/silent":
        await asyncio.sleep(30)
        writer.close()
        return
    if path == "/status/400":
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad")
        await writer.drain()
        writer.close()
        return
    if path == "/badaccept":
        accept = base64.b64encode(b"x" * 20).decode()
    payload = b""
    kind, _, hexdata = path[1:].partition("/")
    if kind in ("raw", "rawdrop"):
        payload = bytes.fromhex(hexdata)
    writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode() + payload)
    await writer.drain()
    if kind != "rawdrop":
        try:  # until the client closes: its close frame (0x88 ...) or EOF
            while True:
                data = await asyncio.wait_for(reader.read(65536), 10)
                if not data or data[0] == 0x88:
                    break
        except Exception:
            pass
    writer.close()


def read_upgrade(conn):
    """Reads a blocking socket's upgrade request; its Sec-WebSocket-Accept."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    key = ""
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())


def resetter(listener):
    while True:
        conn, _ = listener.accept()
        try:
            accept = read_upgrade(conn)
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            time.sleep(0.3)
            reason = struct.pack("!H", 4004) + b"Authentication failed."
            conn.sendall(bytes([0x88, len(reason)]) + reason)
        except OSError:
            pass
        conn.close()


def holder(listener):
    """Closes with 4000 "bye" right after the 101, then holds TCP open for
    2 s (reading the echo) before closing it: RFC 6455 wants the server to
    close TCP first, and this one is slow to."""
    while True:
        conn, _ = listener.accept()
        try:
            accept = read_upgrade(conn)
            reason = struct.pack("!H", 4000) + b"bye"
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                         + bytes([0x88, len(reason)]) + reason)
            conn.settimeout(2.0)
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass
        except OSError:
            pass
        conn.close()


def stop_on_stdin_eof(loop, stop):
    sys.stdin.read()
    loop.call_soon_threadsafe(stop.set_result, None)


async def main():
    port_file = sys.argv[1]
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    threading.Thread(target=stop_on_stdin_eof, args=(loop, stop), daemon=True).start()
    opts = dict(max_size=None, ping_interval=None, process_request=process_request,
                select_subprotocol=select_subprotocol)
    async with serve(ws_handler, "127.0.0.1", 0, **opts) as ws_server:
        raw_server = await asyncio.start_server(raw_handler, "127.0.0.1", 0)
        listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=resetter, args=(listener,), daemon=True).start()
        holding = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=holder, args=(holding,), daemon=True).start()
        ports = "ws=%d raw=%d resetter=%d holder=%d" % (ws_server.sockets[0].getsockname()[1],
                                                        raw_server.sockets[0].getsockname()[1],
                                                        listener.getsockname()[1],
                                                        holding.getsockname()[1])
        mtls_server = None
        if len(sys.argv) >= 5:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(sys.argv[3], sys.argv[4])
            ctx.load_verify_locations(sys.argv[2])
            ctx.verify_mode = ssl.CERT_REQUIRED
            mtls_server = await serve(echo, "127.0.0.1", 0, ssl=ctx, max_size=None, ping_interval=None)
            ports += " mtls=%d" % mtls_server.sockets[0].getsockname()[1]
        with open(port_file + ".tmp", "w") as f:
            f.write(ports + "\n")
        os.rename(port_file + ".tmp", port_file)
        try:
            await asyncio.wait_for(stop, 300)
        except asyncio.TimeoutError:
            pass
        raw_server.close()
        if mtls_server:
            mtls_server.close()


if __name__ == "__main__":
    asyncio.run(main())
