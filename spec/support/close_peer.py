#!/usr/bin/env python3
"""A raw WebSocket server for spec/hardening_close_codes_spec.lua,
independent of turbo_ws (Python's standard library only).

Prints "port N", then serves connections one after the other:
    /peer/CODE   101, then a close frame with CODE and reason "r"; reads the
                 client's frames until its close frame and prints
                 "echoed <code>" (its code, or "none"); closes TCP
    /client      101, reads until the client's close frame, prints
                 "sent <code>", echoes the frame and closes TCP
Gives up after 60 s.
"""
import base64
import hashlib
import socket
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_head(conn):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(1)
        if not chunk:
            raise EOFError
        head += chunk
    return head.decode("latin-1")


def read_frame(conn):
    b0, b1 = read_exact(conn, 2)
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(read_exact(conn, 2), "big")
    elif length == 127:
        length = int.from_bytes(read_exact(conn, 8), "big")
    mask = read_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read_exact(conn, length)))
    return b0 & 0x0F, payload


def read_close(conn):
    while True:
        opcode, payload = read_frame(conn)
        if opcode == 8:
            return payload


def code_of(payload):
    return str(int.from_bytes(payload[:2], "big")) if len(payload) >= 2 else "none"


def serve(conn):
    head = read_head(conn)
    path = head.split(" ")[1]
    key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
               if line.lower().startswith("sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    if path.startswith("/peer/"):
        payload = int(path[6:]).to_bytes(2, "big") + b"r"
        conn.sendall(bytes([0x88, len(payload)]) + payload)
        print("echoed", code_of(read_close(conn)), flush=True)
    else:
        payload = read_close(conn)
        print("sent", code_of(payload), flush=True)
        conn.sendall(bytes([0x88, len(payload)]) + payload)


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(60)
    print("port", listener.getsockname()[1], flush=True)
    while True:
        try:
            conn, _ = listener.accept()
        except (socket.timeout, OSError):
            return
        conn.settimeout(10)
        try:
            serve(conn)
        except (EOFError, OSError) as e:
            print("error", e, flush=True)
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
