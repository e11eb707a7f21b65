#!/usr/bin/env python3
"""The client part of bench.py (bench/clients/ against the tungstenite echo
server, vs the Rust load generator), ROUNDS times, medians per client and
load; does not touch RESULTS.md. Wall-clock CPU figures: compare runs made
in the same hour (client_profile.sh gives the stable instruction counts).

    python3 bench/profile/client_rounds.py [ROUNDS] [SECONDS]

SO_DIR=<dir with a turbo_ws.so> runs the Lua clients on another build (A/B).
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bench  # noqa: E402

if os.environ.get("SO_DIR"):
    bench.LUA_ENV["LUA_CPATH"] = os.path.join(os.environ["SO_DIR"], "?.so") + ";;"
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2
runs = {}
for i in range(rounds):
    for label, conns, inflight, rate, cpu in bench.client_runs(seconds):
        runs.setdefault((label, conns, inflight), []).append((rate, cpu))
        print(f"round {i + 1}: {label} {conns}x{inflight}: {rate:,.0f} msgs/s, {cpu:.2f} us/msg", flush=True)
print("median of", rounds, "rounds:")
for (label, conns, inflight), xs in runs.items():
    cpus = sorted(c for _, c in xs)
    print(f"  {label} {conns}x{inflight}: {statistics.median(r for r, _ in xs):,.0f} msgs/s, "
          f"CPU {statistics.median(cpus):.2f} us/msg ({cpus[0]:.2f}-{cpus[-1]:.2f})")
