#!/usr/bin/env python3
"""An HTTP server for spec/turbo_async_spec.lua, independent of turbo_ws.

    http_peer.py PORT_FILE

Listens on 127.0.0.1 on two ports (two origins, "a" and "b") with Python's
http.server, plus one socket whose accept queue is kept full (connects to
it hang: for connect timeouts), and writes "a=N b=N full=N" to PORT_FILE.

Paths, on both origins:
    /echo...            200, JSON {method, target, headers: [[name, value]...],
                        body, peer, client_port}; header X-Peer: a|b
    /status/NNN         status NNN, body "status NNN"
    /redirect/CODE?to=U CODE with Location U (U is percent-decoded)
    /close              200 with Connection: close, then closes
    /loop               302 to itself
    /slow               answers after 3 s
    /gzip               "compressed hello" gzip-encoded when the request
                        accepts gzip, else "plain hello"
    /chunked            a chunked body "chunk1chunk2"
    /big                a 100000-byte body
    /log                JSON list of every request received so far (not /log
                        itself): {peer, method, target, headers}

Stops when its stdin is closed, or after 300 s in any case.
"""
import gzip
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = []
LOG_LOCK = threading.Lock()


def handler_for(peer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, body, headers=()):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Peer", peer)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def read_body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length).decode("latin-1") if length else ""

        def handle_any(self):
            body = self.read_body()
            path = urllib.parse.urlsplit(self.path)
            if path.path != "/log":
                with LOG_LOCK:
                    LOG.append({"peer": peer, "method": self.command, "target": self.path,
                                "headers": [[k, v] for k, v in self.headers.items()]})
            if path.path == "/log":
                with LOG_LOCK:
                    self.send(200, json.dumps(LOG).encode())
            elif path.path.startswith("/echo"):
                echo = {"method": self.command, "target": self.path, "body": body, "peer": peer,
                        "client_port": self.client_address[1],
                        "headers": [[k, v] for k, v in self.headers.items()]}
                self.send(200, json.dumps(echo).encode(), [("Content-Type", "application/json")])
            elif path.path.startswith("/status/"):
                code = int(path.path.split("/")[2])
                self.send(code, ("status %d" % code).encode())
            elif path.path.startswith("/redirect/"):
                code = int(path.path.split("/")[2])
                to = urllib.parse.parse_qs(path.query).get("to", ["/echo"])[0]
                self.send(code, b"moved", [("Location", to)])
            elif path.path == "/close":
                self.send(200, b"closing", [("Connection", "close")])
                self.close_connection = True
            elif path.path == "/loop":
                self.send(302, b"again", [("Location", "/loop")])
            elif path.path == "/slow":
                time.sleep(3)
                self.send(200, b"slow")
            elif path.path == "/gzip":
                if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                    self.send(200, gzip.compress(b"compressed hello"), [("Content-Encoding", "gzip")])
                else:
                    self.send(200, b"plain hello")
            elif path.path == "/chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in (b"chunk1", b"chunk2"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            elif path.path == "/big":
                self.send(200, b"x" * 100000)
            else:
                self.send(404, b"not found")

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

    return Handler


def full_listener():
    """A listener whose accept queue is full: further connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.1)
    return listener, fillers, port


def main():
    servers = {}
    for peer in ("a", "b"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(peer))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[peer] = server
    keep = full_listener()
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write("a=%d b=%d full=%d\n" % (servers["a"].server_address[1],
                                         servers["b"].server_address[1], keep[2]))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    threading.Thread(target=lambda: (time.sleep(300), os._exit(0)), daemon=True).start()
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
