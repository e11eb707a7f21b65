#!/usr/bin/env python3
"""make soak: mixed traffic against one turbo_ws server (Turbo face echo) for
SOAK_SECONDS (default 600): connects, disconnects, all message sizes, pings,
abrupt drops. Samples the server's RSS and open fds every 10 s and writes
bench/SOAK.md."""

import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

seconds = float(os.environ.get("SOAK_SECONDS", "600"))
workers = int(os.environ.get("SOAK_WORKERS", "64"))
server = bench.Server("turbo_ws-turbo" if os.path.exists(os.path.join(bench.HERE, "servers/turbo_echo.lua")) else "turbo_ws-core")
samples = []
try:
    gen = subprocess.Popen(["taskset", "-c", "1", bench.LOADGEN, "soak", server.url(), str(workers), str(seconds)],
                           stdout=subprocess.PIPE, text=True)
    t0 = time.time()
    while gen.poll() is None:
        fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        samples.append((time.time() - t0, server.rss_kib(), fds))
        print(f"t={samples[-1][0]:6.0f}s rss={samples[-1][1]} KiB fds={fds}", flush=True)
        for _ in range(100):
            if gen.poll() is not None:
                break
            time.sleep(0.1)
    result = json.loads(gen.stdout.read().strip().splitlines()[-1])
    alive = server.proc.poll() is None
    time.sleep(2)
    samples.append((time.time() - t0, server.rss_kib(), len(os.listdir(f"/proc/{server.proc.pid}/fd"))))
finally:
    server.stop()

mid = samples[len(samples) // 2]
end = samples[-1]
lines = ["# Soak results", "",
         f"- date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; command: `make soak` "
         f"(SOAK_SECONDS={seconds:.0f}, SOAK_WORKERS={workers}); server: {server.label}",
         f"- {result['messages']:,} echoed messages; {result['errors']:,} client connections failed unexpectedly "
         "(a third of all connections are dropped abruptly on purpose; those are not counted)",
         f"- server alive at the end: {alive}",
         f"- RSS middle {mid[1]:,} KiB, end {end[1]:,} KiB ({(end[1] - mid[1]) * 100 / max(mid[1], 1):+.1f}%); "
         f"open fds middle {mid[2]}, end (2 s after the load stopped) {end[2]}",
         "", "| t (s) | RSS KiB | open fds |", "|---|---|---|"]
lines += [f"| {t:.0f} | {rss:,} | {fds} |" for t, rss, fds in samples]
with open(os.path.join(bench.HERE, "SOAK.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("wrote bench/SOAK.md")
