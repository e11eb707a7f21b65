"""Connects to a TLS server COUNT times; each time completes the TLS
handshake, sends part of an HTTP request, and drops the connection with a
reset (SO_LINGER 0) or a plain close without close_notify, alternately.
Usage: tls_drop_peer.py PORT COUNT"""
import socket
import ssl
import struct
import sys

port, count = int(sys.argv[1]), int(sys.argv[2])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
for i in range(count):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls = context.wrap_socket(raw)
    tls.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    if i % 2 == 0:
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tls.close()  # (no close_notify: that takes unwrap())
print("dropped", count)
