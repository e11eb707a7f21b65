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
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raw_ws import accept_upgrade, close_frame, listen, read_frame, read_head  # noqa: E402


def main():
    delay = float(sys.argv[1])
    listener = listen(1, [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    conn, _ = listener.accept()
    conn.settimeout(60)
    accept_upgrade(conn, read_head(conn))
    time.sleep(delay)
    frames = total = 0
    while True:
        opcode, length, payload = read_frame(conn)
        if opcode == 8:
            conn.sendall(close_frame(payload))
            break
        if opcode in (0, 1, 2):
            frames += 1
            total += length
    print("frames", frames, "bytes", total, flush=True)
    conn.close()


if __name__ == "__main__":
    main()
