"""System calls per message from two `strace -c` summaries: an echo run
minus a baseline run, divided by the messages echoed. Used by profile.sh
and client_profile.sh.

    python3 strace_per_message.py ECHO.strace BASE.strace MESSAGES LABEL
"""
import sys


def calls(path):
    out = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0].replace('.', '').isdigit() and f[-1] != 'total':
            out[f[-1]] = int(f[3])
    return out


echo, base, msgs = calls(sys.argv[1]), calls(sys.argv[2]), int(sys.argv[3])
per = {k: (v - base.get(k, 0)) / msgs for k, v in echo.items()}
top = sorted(per.items(), key=lambda kv: -kv[1])
print(f"strace {sys.argv[4]}: {msgs} msgs; system calls per message {sum(per.values()):.2f}: "
      + ", ".join(f"{k} {v:.2f}" for k, v in top if v >= 0.005))
