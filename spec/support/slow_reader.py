#!/usr/bin/env python3
"""A WebSocket server that does not read for a while: the peer for
spec/hardening_backpressure_spec.lua, independent of turbo_ws.

    slow_reader.py DELAY_SECONDS

Prints "port N", accepts one client, answers its upgrade, then reads
nothing for DELAY_SECONDS (with a small receive buffer, so the client's
queue fills). Then it reads every frame until the client's close, answers
the close with the same payload, prints "frames N bytes M" (data frames,
payload bytes) and exits. Gives up after 60 s in any case.
"""
import base64
import hashlib
import socket
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def main():
    delay = float(sys.argv[1])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(60)
    print("port", listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    conn.settimeout(60)
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(1)
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    time.sleep(delay)
    frames = total = 0
    while True:
        b0, b1 = read_exact(conn, 2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack("!H", read_exact(conn, 2))[0]
        elif length == 127:
            length = struct.unpack("!Q", read_exact(conn, 8))[0]
        mask = read_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read_exact(conn, length))) \
            if length < 256 else read_exact(conn, length)
        opcode = b0 & 0x0F
        if opcode == 8:
            conn.sendall(bytes([0x88, len(payload)]) + payload)
            break
        if opcode in (0, 1, 2):
            frames += 1
            total += length
    print("frames", frames, "bytes", total, flush=True)
    conn.close()


if __name__ == "__main__":
    main()
