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
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raw_ws import accept_key, read_frame, read_head  # noqa: E402

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


def server_frame(opcode, payload):
    assert len(payload) < 65536
    if len(payload) < 126:
        return bytes([0x80 | opcode, len(payload)]) + payload
    return bytes([0x80 | opcode, 126]) + len(payload).to_bytes(2, "big") + payload


def wait_for_close(conn):
    """Reads the client's frames until its close frame or EOF."""
    try:
        while read_frame(conn)[0] != 8:
            pass
    except EOFError:
        return


def serve(conn):
    try:
        conn.settimeout(10)
        head = read_head(conn)
        path = head.split(" ")[1]
        if path in STATUS:
            conn.sendall(STATUS[path])
            return
        accept = accept_key(head)
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
        conn.sendall(server_frame(1, head.encode("latin-1")) + server_frame(8, (1000).to_bytes(2, "big") + b"bye"))
        wait_for_close(conn)
    except (OSError, EOFError):
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
