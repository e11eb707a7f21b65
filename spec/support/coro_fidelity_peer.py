#!/usr/bin/env python3
"""A raw HTTP/WebSocket peer for spec/coro_fidelity_spec.lua, independent of
turbo_ws and needing only Python's standard library.

    coro_fidelity_peer.py PORT_FILE SOCKET_PATH

Listens on 127.0.0.1 (the kernel picks the port) and on the Unix socket
SOCKET_PATH, then writes "tcp=N" to PORT_FILE. Every connection, on either,
is answered by the request path:

    /spelling           101 whose headers have the spelling and order in
                        SPELLING below; then a text frame holding the request
                        head as received, then a close (1000, "bye"); waits
                        for the client's close frame (or EOF) and closes
    /status/400         400 with the body "no such room" (Content-Length)
    /status/400-empty   400 with Content-Length: 0
    /status/400-eof     400, Connection: close, no length and no body: the
                        body is what comes until EOF, i.e. nothing
    /status/403         403 with a body
    /bad/connection     101 without a Connection header
    /bad/accept         101 with a wrong Sec-WebSocket-Accept
    /bad/protocol       101 choosing the subprotocol "other"

Stops when its stdin is closed, or after 120 s in any case.
"""
import base64
import hashlib
import os
import socket
import sys
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# (name, value) in the order and spelling sent; None = the accept key.
SPELLING = [
    ("Upgrade", "websocket"),
    ("CONNECTION", "Upgrade"),
    ("sec-websocket-accept", None),
    ("X-Custom-Header", "Mixed Case Value"),
    ("set-cookie", "a=1"),
    ("Set-Cookie", "b=2"),
]

STATUS = {
    "/status/400": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\nno such room",
    "/status/400-empty": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    "/status/400-eof": b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
    "/status/403": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ngo away",
}


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def request_key(head):
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            return value.strip()
    return ""


def server_frame(opcode, payload):
    assert len(payload) < 65536
    if len(payload) < 126:
        return bytes([0x80 | opcode, len(payload)]) + payload
    return bytes([0x80 | opcode, 126]) + len(payload).to_bytes(2, "big") + payload


def wait_for_close(conn):
    """Reads the client's frames until its close frame or EOF."""
    buf = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            return
        buf += chunk
        while len(buf) >= 2:
            length = buf[1] & 0x7F
            header = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if buf[1] & 0x80 else 0)
            if len(buf) < header:
                break
            if length == 126:
                length = int.from_bytes(buf[2:4], "big")
            elif length == 127:
                length = int.from_bytes(buf[2:10], "big")
            if len(buf) < header + length:
                break
            if buf[0] & 0x0F == 8:
                return
            buf = buf[header + length:]


def serve(conn):
    try:
        conn.settimeout(10)
        head = read_head(conn)
        if head is None:
            return
        path = head.split(b" ")[1].decode("latin-1")
        if path in STATUS:
            conn.sendall(STATUS[path])
            return
        accept = base64.b64encode(hashlib.sha1(request_key(head).encode() + GUID).digest()).decode()
        if path.startswith("/bad/"):
            fields = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept}
            if path == "/bad/connection":
                del fields["Connection"]
            elif path == "/bad/accept":
                fields["Sec-WebSocket-Accept"] = "d3JvbmcgYWNjZXB0IGtleSE="
            elif path == "/bad/protocol":
                fields["Sec-WebSocket-Protocol"] = "other"
            lines = ["HTTP/1.1 101 Switching Protocols"] + ["%s: %s" % kv for kv in fields.items()]
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            return
        if path != "/spelling":
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        lines = ["HTTP/1.1 101 Switching Protocols"]
        lines += ["%s: %s" % (name, accept if value is None else value) for name, value in SPELLING]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        conn.sendall(server_frame(1, head) + server_frame(8, (1000).to_bytes(2, "big") + b"bye"))
        wait_for_close(conn)
    except OSError:
        pass
    finally:
        conn.close()


def accept_loop(listener):
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main():
    port_file, socket_path = sys.argv[1], sys.argv[2]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(64)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(socket_path)
    unix.listen(64)
    for listener in (tcp, unix):
        threading.Thread(target=accept_loop, args=(listener,), daemon=True).start()
    with open(port_file + ".tmp", "w") as f:
        f.write("tcp=%d\n" % tcp.getsockname()[1])
    os.rename(port_file + ".tmp", port_file)
    # Until the spec closes our stdin (or 120 s pass).
    stopper = threading.Thread(target=sys.stdin.read, daemon=True)
    stopper.start()
    stopper.join(120)
    os.unlink(socket_path)


if __name__ == "__main__":
    main()
