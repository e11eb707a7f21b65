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
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raw_ws import accept_upgrade, close_frame, listen, read_frame, read_head  # noqa: E402


def read_close(conn):
    while True:
        opcode, _, payload = read_frame(conn)
        if opcode == 8:
            return payload


def code_of(payload):
    return str(int.from_bytes(payload[:2], "big")) if len(payload) >= 2 else "none"


def serve(conn):
    head = read_head(conn)
    path = head.split(" ")[1]
    accept_upgrade(conn, head)
    if path.startswith("/peer/"):
        payload = int(path[6:]).to_bytes(2, "big") + b"r"
        conn.sendall(close_frame(payload))
        print("echoed", code_of(read_close(conn)), flush=True)
    else:
        payload = read_close(conn)
        print("sent", code_of(payload), flush=True)
        conn.sendall(close_frame(payload))


def main():
    listener = listen(16, [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)])
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
