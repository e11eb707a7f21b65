#!/usr/bin/env python3
"""make bench: turbo_ws against anchor echo servers, in one run.

Anchors: uWebSockets (C++, built by anchors/build_uws.sh from UWS_SRC and
USOCKETS_SRC), Node.js with `ws` (npm-installed into anchors/node_modules),
fastwebsockets and tokio-tungstenite (Rust, this crate). An anchor that cannot
be built here is reported as missing in RESULTS.md, with the reason.

Every server runs pinned to CPU 0 and the load generator to CPU 1, one after
the other, on the same load shapes, with the generator writing each message
with its own write (browser-like) and, as a second figure, batched. Writes
bench/RESULTS.md and bench/msgs_per_sec.png.
Usage: bench.py [--only NAME,...] [--skip echo,idle,memory,client] [--write each,batch]
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOADGEN = os.path.join(HERE, "target/release/loadgen")
ANCHORS = os.path.join(HERE, "anchors")
UWS_BIN = os.path.join(HERE, "target/anchors/uws_echo")
LUA_ENV = {"LUA_CPATH": os.path.join(ROOT, "build/?.so") + ";;"}

# (conns, in flight, size, kind)
SHAPES = [
    (1, 1, 32, "text"),
    (1, 16, 32, "text"),
    (100, 1, 32, "text"),
    (100, 8, 32, "text"),
    (10, 1, 1024, "binary"),
    (200, 1, 16384, "binary"),
    (500, 1, 16384, "binary"),
]

# name -> (command given a port, label); the first is the reference for ratios.
SERVERS = {
    "uws": (lambda p: [UWS_BIN, str(p)], "C++, uWebSockets"),
    "tungstenite": (lambda p: [os.path.join(HERE, "target/release/echo_tungstenite"), str(p)],
                    "pure Rust, tokio-tungstenite"),
    "fastwebsockets": (lambda p: [os.path.join(HERE, "target/release/echo_fastws"), str(p)],
                       "pure Rust, fastwebsockets"),
    "node-ws": (lambda p: ["node", os.path.join(ANCHORS, "ws_echo.js"), str(p)], "Node.js, ws"),
    "turbo_ws-turbo": (lambda p: ["luajit", os.path.join(HERE, "servers/turbo_echo.lua"), str(p)],
                       "turbo_ws, Turbo face, Lua on_message"),
    "turbo_ws-evlua": (lambda p: ["luajit", os.path.join(HERE, "servers/evlua_echo.lua"), str(p)],
                       "turbo_ws, evlua face, Lua handle_message"),
    "turbo_ws-core": (lambda p: ["luajit", os.path.join(HERE, "servers/core_echo.lua"), str(p)],
                      "turbo_ws, native core API, Lua callback"),
}
REFERENCE = "uws"

# --write values -> how RESULTS.md names them
WRITE_MODES = {
    "each": "browser-like: the generator writes each message with its own write(2)",
    "batch": "batched: the generator writes all messages due at once in one write(2)",
}


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def prepare_uws():
    """Builds the uWebSockets anchor if its sources are given; None or why it is missing."""
    if not os.environ.get("UWS_SRC") and os.access(UWS_BIN, os.X_OK):
        return None  # built earlier; nothing to rebuild from
    p = subprocess.run(["bash", os.path.join(ANCHORS, "build_uws.sh")], capture_output=True, text=True)
    if p.returncode == 0 and os.access(UWS_BIN, os.X_OK):
        return None
    why = last_line(p.stdout) or last_line(p.stderr) or f"build_uws.sh exit {p.returncode}"
    return why.removeprefix("missing: ")


def prepare_node():
    """Installs `ws` into anchors/node_modules when missing; None or why Node is missing."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not installed"
    if not os.path.exists(os.path.join(ANCHORS, "node_modules/ws/package.json")):
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ANCHORS, capture_output=True, text=True)
        if p.returncode != 0:
            return "npm ci in bench/anchors failed: " + last_line(p.stderr)
    return None


def missing_servers():
    """name -> reason, for every server that cannot run on this machine."""
    missing = {}
    for name in ("uws", "node-ws"):
        why = prepare_uws() if name == "uws" else prepare_node()
        if why:
            missing[name] = why
    for name in ("tungstenite", "fastwebsockets"):
        if not os.access(SERVERS[name][0](0)[0], os.X_OK):
            missing[name] = "not built (cd bench && cargo build --release)"
    for name, (cmd, _) in SERVERS.items():
        if name.startswith("turbo_ws") and not shutil.which("luajit"):
            missing[name] = "luajit not installed"
    return missing


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    def __init__(self, name):
        self.name = name
        self.port = free_port()
        cmd, self.label = SERVERS[name]
        env = dict(os.environ, **LUA_ENV)
        self.proc = subprocess.Popen(["taskset", "-c", "0"] + cmd(self.port), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_port(self.port, self.proc):
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"{name} did not start listening: {err}")

    def url(self):
        # The evlua face finds its handler module from the path.
        path = "/bench_handlers/echo" if self.name == "turbo_ws-evlua" else "/"
        return f"ws://127.0.0.1:{self.port}{path}"

    def rss_kib(self):
        return status_kib(self.proc.pid, "VmRSS")

    def peak_rss_kib(self):
        return status_kib(self.proc.pid, "VmHWM")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def loadgen(args, server_pid=None, timeout=120):
    env = dict(os.environ)
    if server_pid:
        env["SERVER_PID"] = str(server_pid)
    out = subprocess.run(["taskset", "-c", "1", LOADGEN] + [str(a) for a in args], env=env,
                         capture_output=True, text=True, timeout=timeout)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"loadgen {args} gave no result: {out.stderr[-500:]}")


def echo_runs(names, modes, seconds, warmup, rounds):
    """Every server through every shape and write mode, `rounds` times, the
    servers taking turns within each round so that a slow spell of this noisy
    machine hits them alike. Each point keeps the run with the median rate;
    its server CPU per message is the median over the rounds."""
    runs = {}
    for rnd in range(1, rounds + 1):
        for name in names:
            print(f"== round {rnd}/{rounds}: {name}", flush=True)
            server = Server(name)
            try:
                for shape in SHAPES:
                    conns, inflight, size, kind = shape
                    for mode in modes:
                        cmd = ["echo", server.url(), conns, inflight, size, kind, seconds, warmup, "--write=" + mode]
                        r = loadgen(cmd, server.proc.pid)
                        # No echo at all over the window, server and generator idle:
                        # seen on this shared machine with every server, cause unknown.
                        # Measured again, at most twice; each stall is reported.
                        stalls = 0
                        while r["msgs"] == 0 and stalls < 2:
                            stalls += 1
                            print(f"   (no echo in the window: stalled, measuring again)", flush=True)
                            r = loadgen(cmd, server.proc.pid)
                        r["stalls"] = stalls
                        r["peak_rss_kib"] = server.peak_rss_kib()
                        runs.setdefault((name, shape, mode), []).append(r)
                        print(f"   {conns}x{inflight} {size}B {kind} write={mode}: {r['rate']:.0f} msg/s, "
                              f"server {r['server_cpu_us_per_msg']:.2f} us/msg, "
                              f"gen {r['gen_cpu_us_per_msg']:.2f} us/msg, p99 {r['p99_us']} us, "
                              f"errors {r['errors']}", flush=True)
            finally:
                server.stop()
    results = {}
    for key, all_rs in runs.items():
        # A sample under a tenth of the point's best rate is such a stall,
        # not a measure of the server: left out of the medians and counted.
        best = max(r["rate"] for r in all_rs)
        rs = [r for r in all_rs if r["rate"] >= best / 10] or all_rs
        ordered = sorted(rs, key=lambda r: r["rate"])
        median = dict(ordered[len(ordered) // 2])
        median["rates"] = [r["rate"] for r in rs]
        cpus = sorted(r["server_cpu_us_per_msg"] for r in rs)
        median["cpus"] = cpus
        median["server_cpu_median"] = cpus[len(cpus) // 2]
        # The machine's speed swings by a quarter within minutes (shared
        # host): the generator's own CPU per message in the same window is a
        # yardstick that swings with it.
        per_gen = sorted(r["server_cpu_us_per_msg"] / r["gen_cpu_us_per_msg"]
                         for r in rs if r["gen_cpu_us_per_msg"] > 0)
        median["per_gen_median"] = per_gen[len(per_gen) // 2] if per_gen else None
        median["errors"] = sum(r["errors"] for r in all_rs)
        median["stalled"] = sum(r.get("stalls", 0) for r in all_rs) + len(all_rs) - len(rs)
        results[key] = median
    return results


def idle_run(name, conns, hold=3):
    server = Server(name)
    try:
        base = server.rss_kib()
        proc = subprocess.Popen(["taskset", "-c", "1", LOADGEN, "idle", server.url(), str(conns), str(hold + 5)],
                                stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        r = json.loads(line)
        time.sleep(hold)
        r["rss_before_kib"] = base
        r["rss_held_kib"] = server.rss_kib()
        r["per_conn_kib"] = (r["rss_held_kib"] - base) / max(r["conns"], 1)
        r["name"] = name
        proc.kill()
        proc.wait()
        return r
    finally:
        server.stop()


def idle_runs(names, conns):
    out = []
    for name in names:
        print(f"== idle: {name}", flush=True)
        try:
            out.append(idle_run(name, conns))
        except (RuntimeError, ValueError, OSError) as e:
            out.append({"name": name, "error": str(e)[:200]})
    return out


def memory_runs(messages, cycles):
    """RSS at start, middle and end of a long echo run and of connect/disconnect churn."""
    out = {}
    server = Server("turbo_ws-turbo")
    try:
        samples = [("start", server.rss_kib())]
        # Two halves of the message run, 100 connections x 8 in flight, 32 B.
        for label in ("middle", "end"):
            deadline_msgs = messages // 2
            r = loadgen(["echo", server.url(), 100, 8, 32, "text", 1, 0], server.proc.pid)
            rate = max(r["rate"], 1)
            secs = max(deadline_msgs / rate, 1)
            r = loadgen(["echo", server.url(), 100, 8, 32, "text", secs, 0], server.proc.pid)
            samples.append((label, server.rss_kib()))
        out["messages"] = samples
        samples = [("start", server.rss_kib())]
        for label in ("middle", "end"):
            r = loadgen(["churn", server.url(), cycles // 2], timeout=600)
            samples.append((label + f" ({r['failed']} failed)", server.rss_kib()))
        out["churn"] = samples
    finally:
        server.stop()
    return out


def client_runs(seconds):
    """turbo_ws as the client (Lua) against the Rust echo server, vs the Rust load generator."""
    results = []
    server = Server("tungstenite")
    try:
        for conns, inflight in ((1, 16), (100, 8)):
            r = loadgen(["echo", server.url(), conns, inflight, 32, "text", seconds, 1], server.proc.pid)
            results.append(("pure Rust client (loadgen)", conns, inflight, r["rate"], r["gen_cpu_us_per_msg"]))
            for script, extra, label in (
                    ("turbo_client.lua", [], "turbo_ws client, Turbo face callbacks"),
                    ("coro_client.lua", [], "turbo_ws client, coro face coroutines"),
                    ("coro_client.lua", ["luv"], "turbo_ws client, coro face under luv's uv.run()")):
                path = os.path.join(HERE, "clients", script)
                if not os.path.exists(path):
                    continue
                env = dict(os.environ, **LUA_ENV)
                p = subprocess.run(["taskset", "-c", "1", "luajit", path, server.url(), str(conns), str(inflight),
                                    str(seconds)] + extra, env=env, capture_output=True, text=True, timeout=120)
                line = next((l for l in p.stdout.splitlines() if l.startswith("{")), None)
                if line is None:
                    results.append((label + " (failed: " + p.stderr.strip()[-200:] + ")", conns, inflight, 0, 0))
                    continue
                c = json.loads(line)
                results.append((label, conns, inflight, c["rate"], c["cpu_us_per_msg"]))
    finally:
        server.stop()
    return results


def chart(results, names, mode, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{c}x{w}\n{s}B" for c, w, s, _ in SHAPES]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ys = [results.get((name, sh, mode), {}).get("rate", 0) for sh in SHAPES]
        ax.bar([x + i * width for x in range(len(SHAPES))], ys, width, label=SERVERS[name][1])
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(SHAPES))])
    ax.set_xticklabels(labels)
    ax.set_ylabel("echoed messages / s")
    ax.set_title(f"Echo throughput per load shape, {mode} write (server on CPU 0, generator on CPU 1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def shape_label(sh):
    return f"{sh[0]}x{sh[1]}, {sh[2]} B"


def shape_table(title, first_column, results, names, mode, cell):
    """A titled table, one row a load shape, one column a server: cell(result), or n/a."""
    lines = [f"### {title}", "", f"| {first_column} | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for sh in SHAPES:
        row = [shape_label(sh)]
        for n in names:
            r = results.get((n, sh, mode))
            row.append("n/a" if r is None else cell(r))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def echo_tables(results, names, mode):
    """Throughput, server CPU and ratio-to-reference tables for one write mode."""
    lines = [f"## Echo, {WRITE_MODES[mode]}", ""]
    lines += shape_table(
        "Throughput: msgs/s, median of the rounds (lowest–highest)", "load (conns x in flight, size)",
        results, names, mode,
        lambda r: f"{r['rate']:,.0f} ({min(r['rates']):,.0f}–{max(r['rates']):,.0f})")
    lines += shape_table(
        "Server CPU per echoed message: us, median of the rounds (lowest–highest)", "load",
        results, names, mode,
        lambda r: f"{r['server_cpu_median']:.2f} ({r['cpus'][0]:.2f}–{r['cpus'][-1]:.2f})")
    # uWebSockets is the reference; without it, the fastest other anchor.
    ref = next((n for n in (REFERENCE, "fastwebsockets", "tungstenite") if n in names), None)
    others = [n for n in names if n != ref]
    if ref and others:
        lines.append(f"### Ratios to {ref}: server CPU per message (median); msgs/s")
        lines.append("")
        if ref == REFERENCE:
            lines.append("Lower CPU ratio is better; issue 16's target is CPU ≤ 1.10x for the Lua echoes.")
        else:
            lines.append(f"Lower CPU ratio is better. {REFERENCE} is missing in this run, so the ratios are to {ref}.")
        lines.append("\"Same window\": each round's server CPU divided by the load generator's CPU per "
                     "message in the same window (the generator's work per message is fixed, so it slows "
                     "and speeds up with the machine), median over the rounds, as a ratio to the same for "
                     f"{ref}: less moved by the shared machine's swings than the plain ratio, but it also "
                     "counts the generator's own reads, which differ where servers batch their writes.")
        lines.append("")
        lines.append("| load | " + " | ".join(f"{n} / {ref}" for n in others) + " |")
        lines.append("|---|" + "---|" * len(others))
        for sh in SHAPES:
            row = [shape_label(sh)]
            b = results.get((ref, sh, mode))
            for n in others:
                a = results.get((n, sh, mode))
                if not a or not b or not b["rate"] or not b["server_cpu_median"]:
                    row.append("n/a")
                else:
                    same = (f"; same window {a['per_gen_median'] / b['per_gen_median']:.2f}x"
                            if a.get("per_gen_median") and b.get("per_gen_median") else "")
                    row.append(f"CPU {a['server_cpu_median'] / b['server_cpu_median']:.2f}x{same}; "
                               f"rate {a['rate'] / b['rate']:.2f}x")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return lines


def write_results(args, results, names, modes, missing, idle, memory, clients, chart_ok):
    lines = ["# Benchmark results", ""]
    lines.append(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    lines.append(f"- machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                 f"Linux {platform.release()}; load average at the start {args.load_at_start}, at the end "
                 f"{os.getloadavg()[0]:.2f} (1-minute averages; the machine is shared, so anything above ~0.3 "
                 "before the run is other people's work)")
    command = "make bench" + (' BENCH_ARGS="' + " ".join(sys.argv[1:]) + '"' if sys.argv[1:] else "")
    lines.append(f"- command: `{command}`")
    lines.append(f"- each point: {args.warmup} s warm-up, then {args.seconds} s measured, {args.rounds} rounds with the "
                 "servers taking turns in each; msgs/s is the median round's (range in brackets), server CPU the median "
                 "over the rounds; server pinned to CPU 0, load generator to CPU 1; 32 B messages are text, larger "
                 "ones binary; every message has its own pseudo-random payload (loadgen `--payload=distinct`: "
                 "a Lua server makes a string of each message, and one payload sent over and over is interned "
                 "once, which hid that cost before 2026-12-03)")
    lines.append("- server CPU is user+system time of the server process over the measured window, per echoed message")
    lines.append("- servers: " + "; ".join(f"{n} = {SERVERS[n][1]}" for n in SERVERS))
    lines.append("")
    if missing:
        lines.append("## Missing anchors")
        lines.append("")
        for n, why in missing.items():
            lines.append(f"- **{n}** ({SERVERS[n][1]}): missing — {why}")
        lines.append("")
    for mode in modes:
        if results:
            lines += echo_tables(results, names, mode)
    if results:
        lines.append("## Detail")
        lines.append("")
        lines.append("| server | write | load | msgs/s (median round) | p50 us | p99 us | p99.9 us | server CPU us/msg | "
                     "generator CPU us/msg | server peak RSS KiB | errors | stalled samples |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in names:
            for mode in modes:
                for sh in SHAPES:
                    r = results.get((n, sh, mode))
                    if r:
                        lines.append(f"| {n} | {mode} | {shape_label(sh)} | {r['rate']:,.0f} | {r['p50_us']} | "
                                     f"{r['p99_us']} | {r['p999_us']} | {r['server_cpu_us_per_msg']:.2f} | "
                                     f"{r['gen_cpu_us_per_msg']:.2f} | {r['peak_rss_kib']:,} | {r['errors']} | "
                                     f"{r.get('stalled', 0)} |")
        lines.append("")
    stalled = sum(r.get("stalled", 0) for r in results.values())
    if stalled:
        lines.append(f"Stalled samples: {stalled} samples echoed nothing (measured again) or under a tenth of their "
                     "point's best rate (left out of the medians); per point in the Detail table's last column.")
        lines.append("")
    if idle:
        lines.append(f"## Idle connections ({args.idle:,} opened, held {3} s)")
        lines.append("")
        lines.append("Issue 16's target is 2 KiB per idle connection. Per connection = (RSS holding them − RSS before) "
                     "/ connections held.")
        lines.append("")
        lines.append("| server | held (failed) | RSS before KiB | RSS holding KiB | KiB per idle connection |")
        lines.append("|---|---|---|---|---|")
        for r in idle:
            if "error" in r:
                lines.append(f"| {r['name']} | failed: {r['error']} | | | |")
            else:
                lines.append(f"| {r['name']} | {r['conns']:,} ({r['failed']}) | {r['rss_before_kib']:,} | "
                             f"{r['rss_held_kib']:,} | **{r['per_conn_kib']:.1f}** |")
        lines.append("")
    if memory:
        lines.append("## Memory over time (turbo_ws, Turbo face; RSS KiB)")
        lines.append("")
        for key, title in (("messages", f"{args.messages:,} echoed messages (100x8, 32 B)"),
                           ("churn", f"{args.cycles:,} connect/echo/close cycles")):
            lines.append(f"- {title}: " + ", ".join(f"{lbl} {kib:,}" for lbl, kib in memory[key]))
        lines.append("")
    if clients:
        lines.append("## Client side (against the tokio-tungstenite echo server)")
        lines.append("")
        lines.append("| client | conns x in flight | msgs/s | client CPU us/msg |")
        lines.append("|---|---|---|---|")
        for label, c, w, rate, cpu in clients:
            lines.append(f"| {label} | {c}x{w} | {rate:,.0f} | {cpu:.2f} |")
        lines.append("")
    if args.note:
        lines.append("## Notes")
        lines.append("")
        lines.append(args.note)
        lines.append("")
    if args.skip:
        lines.append(f"Parts skipped in this run: {args.skip} (their last figures are in this file's git history).")
        lines.append("")
    if chart_ok:
        lines.append(f"![msgs/s per load shape, {chart_ok} write](msgs_per_sec.png)")
        lines.append("")
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--only", default="")
    ap.add_argument("--write", default="each,batch", help="comma list of: each,batch")
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--idle-servers", default="uws,fastwebsockets,node-ws,turbo_ws-turbo,turbo_ws-evlua")
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--cycles", type=int, default=100000)
    ap.add_argument("--skip", default="", help="comma list of: echo,idle,memory,client")
    ap.add_argument("--note", default="", help="text for a Notes section of RESULTS.md (e.g. what else ran)")
    args = ap.parse_args()
    args.load_at_start = f"{os.getloadavg()[0]:.2f}"
    skip = set(filter(None, args.skip.split(",")))
    modes = [m for m in args.write.split(",") if m]
    if not modes or any(m not in WRITE_MODES for m in modes):
        ap.error("--write takes a comma list of: " + ",".join(WRITE_MODES))
    missing = missing_servers()
    for n, why in missing.items():
        print(f"missing anchor {n}: {why}", flush=True)
    names = [n for n in SERVERS if (not args.only or n in args.only.split(",")) and n not in missing]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {} if "echo" in skip else echo_runs(names, modes, args.seconds, args.warmup, args.rounds)
    idle_names = [n for n in args.idle_servers.split(",") if n in SERVERS and n not in missing]
    idle = None if "idle" in skip else idle_runs(idle_names, args.idle)
    memory = None if "memory" in skip else memory_runs(args.messages, args.cycles)
    clients = None if "client" in skip else client_runs(args.seconds)
    chart_ok = bool(results) and chart(results, names, modes[0], os.path.join(HERE, "msgs_per_sec.png")) and modes[0]
    write_results(args, results, names, modes, missing, idle, memory, clients, chart_ok)
    print("wrote bench/RESULTS.md")


if __name__ == "__main__":
    main()
