#!/usr/bin/env python3
"""Inclusive instructions per echoed message, per function: the echo run's
callgrind profile minus the baseline run's (start-up and handshakes only),
divided by the messages echoed. Used for bench/PROFILE.md.

  per_message.py OUT_DIR [TOP]     (OUT_DIR as written by profile.sh)
"""
import json
import os
import re
import subprocess
import sys


def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            name = m.group(2)
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main():
    d = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    msgs = json.load(open(os.path.join(d, "cg-echo.loadgen.json")))["msgs"]
    echo, base = inclusive(os.path.join(d, "cg-echo.callgrind")), inclusive(os.path.join(d, "cg-base.callgrind"))
    total = (sum_total(os.path.join(d, "cg-echo.callgrind")) - sum_total(os.path.join(d, "cg-base.callgrind"))) / msgs
    print(f"{msgs} messages; {total:,.0f} instructions per message in all")
    rows = sorted(((v - base.get(k, 0)) / msgs, k) for k, v in echo.items())
    rows.reverse()
    for per, name in rows[:top]:
        # Recursion-marked entries ('2) and unknown JIT addresses double-count; shown as is.
        print(f"{per:10,.0f}  {100 * per / total:5.1f}%  {name[:150]}")


def sum_total(path):
    for line in open(path):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
