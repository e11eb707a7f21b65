#!/usr/bin/env python3
"""Reference Autobahn client driver (Python `websockets`), run by
`run.sh client`. Speaks the fuzzingserver protocol:

    GET /getCaseCount                      -> N
    GET /runCase?case=i&agent=A            echo every message until closed (i = 1..N)
    GET /updateReports?agent=A             write the reports

Env: AUTOBAHN_URL (ws://127.0.0.1:9001), AUTOBAHN_AGENT (reference-python),
AUTOBAHN_CASE_TIMEOUT seconds per case (60). AUTOBAHN_CASES_EXCLUDE needs no
handling here: the fuzzing server already leaves those cases out of the
numbering 1..N, so a driver must run every number it is given.
"""
import asyncio
import json
import os
import sys
import urllib.parse

from websockets.asyncio.client import connect

URL = os.environ.get("AUTOBAHN_URL", "ws://127.0.0.1:9001").rstrip("/")
AGENT = os.environ.get("AUTOBAHN_AGENT", "reference-python")
CASE_TIMEOUT = float(os.environ.get("AUTOBAHN_CASE_TIMEOUT", "60"))
# Same reasoning as the echo server: no size limit, no keepalive pings, and a
# direct connection (no proxy from the environment) to the loopback server.
OPTS = dict(max_size=None, ping_interval=None, proxy=None)


async def echo_case(n):
    url = "%s/runCase?case=%d&agent=%s" % (URL, n, urllib.parse.quote(AGENT))
    async with connect(url, **OPTS) as ws:
        async for message in ws:
            await ws.send(message)


async def main():
    async with connect(URL + "/getCaseCount", **OPTS) as ws:
        count = json.loads(await ws.recv())
    print("%s: %d cases for agent %s" % (URL, count, AGENT), flush=True)
    for n in range(1, count + 1):
        try:
            await asyncio.wait_for(echo_case(n), CASE_TIMEOUT)
        except Exception as e:  # the fuzzing server records the outcome
            print("case %d: %s: %s" % (n, type(e).__name__, e), flush=True)
    async with connect("%s/updateReports?agent=%s" % (URL, urllib.parse.quote(AGENT)), **OPTS) as ws:
        async for _ in ws:  # the server closes once the reports are written
            pass
    print("reports updated", flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
