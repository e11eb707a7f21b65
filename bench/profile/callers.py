#!/usr/bin/env python3
"""Which functions call FUNCTION, and how often per echoed message (echo
run minus baseline run, as profile.sh writes them). For bench/PROFILE.md.

  callers.py OUT_DIR FUNCTION_SUBSTRING
"""
import json
import os
import re
import subprocess
import sys


def callers(path, target):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--tree=calling", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    counts, current = {}, None
    for line in out.splitlines():
        if re.match(r"\s*[\d,]+ \(\s*[\d.]+%\)\s+\*\s", line):
            current = line.split("*", 1)[1].strip()
        elif " >   " in line and target in line and current:
            m = re.search(r"\(([\d,]+)x\)", line)
            if m:
                counts[current] = counts.get(current, 0) + int(m.group(1).replace(",", ""))
    return counts


def main():
    d, target = sys.argv[1], sys.argv[2]
    msgs = json.load(open(os.path.join(d, "cg-echo.loadgen.json")))["msgs"]
    echo = callers(os.path.join(d, "cg-echo.callgrind"), target)
    base = callers(os.path.join(d, "cg-base.callgrind"), target)
    rows = sorted(((n - base.get(k, 0)) / msgs, k) for k, n in echo.items())
    for per, name in reversed(rows):
        if per >= 0.01:
            print(f"{per:6.2f} calls/msg  {name[:150]}")


if __name__ == "__main__":
    main()
