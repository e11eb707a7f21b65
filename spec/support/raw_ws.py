"""Raw WebSocket server pieces for the specs' Python peers (standard
library only, independent of turbo_ws): a loopback listener, reading
exactly, request heads, frames, and the 101 answer."""
import base64
import hashlib
import socket

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def listen(backlog, options=()):
    """A listener on a loopback port the kernel picks, after setting the
    (level, name, value) socket `options`; accept() gives up after 60 s.
    Prints "port N" for the spec."""
    listener = socket.socket()
    for option in options:
        listener.setsockopt(*option)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    listener.settimeout(60)
    print("port", listener.getsockname()[1], flush=True)
    return listener


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_head(conn):
    """The request head, as text."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(1)
        if not chunk:
            raise EOFError
        head += chunk
    return head.decode("latin-1")


def accept_key(head):
    """Sec-WebSocket-Accept for the request head's Sec-WebSocket-Key
    (RFC 6455 section 4.2.2); the key is empty when the head has none."""
    key = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")), "")
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def accept_upgrade(conn, head):
    """Answers the upgrade request `head` with 101."""
    accept = accept_key(head)
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())


def read_frame(conn):
    """(opcode, payload length, payload); payloads of up to 125 bytes are
    unmasked (large ones are only counted by the specs)."""
    b0, b1 = read_exact(conn, 2)
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(read_exact(conn, 2), "big")
    elif length == 127:
        length = int.from_bytes(read_exact(conn, 8), "big")
    mask = read_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
    data = read_exact(conn, length)
    if mask != b"\0\0\0\0" and length <= 125:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, length, data


def close_frame(payload):
    """An unmasked close frame (the server's) with `payload` (<= 125 bytes)."""
    return bytes([0x88, len(payload)]) + payload
