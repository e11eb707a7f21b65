#!/usr/bin/env bash
# Autobahn|Testsuite conformance run against a WebSocket server or client.
#
#   run.sh server '<cmd starting an echo server on PORT>' PORT [quick|full]
#   run.sh client '<cmd running a client driver>'         PORT [quick|full]
#
# quick leaves out 9.* (limits/performance) and the slow permessage-deflate
# cases, keeping 12.1.* and 13.1.* (deflate on small to large messages).
# Env (all optional):
#   AGENT=turbo_ws            name the results are filed under
#   RUN_TIMEOUT=600|3600      seconds for the whole wstest run / client driver
#   PORT_TIMEOUT=30           seconds to wait for a listening port
#   SERVER_PATH=              path of the server's URL (e.g. /bench_handlers/echo)
#   REPORTS_DIR=tests/conformance/reports   wstest reports go to REPORTS_DIR/MODE
#   RESULTS=REPORTS_DIR/results.md          Markdown summary is appended here
#   CONFORMANCE_VENV=tests/conformance/.venv   (see install.sh)
# Exit status: 0 only if every selected case passed (see README.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "run.sh: $*" >&2; exit 2; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[[ $# -eq 3 || $# -eq 4 ]] || usage
mode=$1 cmd=$2 port=$3 depth=${4:-quick}
[[ $mode == server || $mode == client ]] || usage
if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then die "bad port: $port"; fi
case $depth in
    quick)
        slow='9.* 12.2.* 12.3.* 12.4.* 12.5.* 13.2.* 13.3.* 13.4.* 13.5.* 13.6.* 13.7.*'
        exclude=$(printf '"%s", ' $slow) exclude=${exclude%, }
        exclude_env=$(tr ' ' , <<<"$slow") default_timeout=600 ;;
    full) exclude='' exclude_env='' default_timeout=3600 ;;
    *) usage ;;
esac

agent=${AGENT:-turbo_ws}
run_timeout=${RUN_TIMEOUT:-$default_timeout}
port_timeout=${PORT_TIMEOUT:-30}
reports=${REPORTS_DIR:-$here/reports}
results=${RESULTS:-$reports/results.md}
venv=${CONFORMANCE_VENV:-$here/.venv}
url=ws://127.0.0.1:$port
out=$reports/$mode

# Idempotent and quick when nothing changed; builds the env on a fresh machine.
"$here/install.sh" "$venv" >&2
py2=$venv/py2/bin/python
wstest=("$py2" "$here/wstest_local.py") # wstest, bound to 127.0.0.1

# Background processes run in their own session (setsid), so the whole tree
# (e.g. `bash -c` around luajit) can be stopped by process group.
pids=()
stop() {
    local pid=$1
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
cleanup() { for pid in "${pids[@]}"; do stop "$pid"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run "$@" (output to log $1) bounded by RUN_TIMEOUT and wait for it. Being a
# background job + `wait` keeps Ctrl-C working: the trap fires at once.
bounded() {
    local log=$1; shift
    setsid timeout -k 10 "$run_timeout" "$@" >"$log" 2>&1 &
    pids+=($!)
    wait "$!"
}

failure() {
    if (($2 == 124 || $2 == 137)); then echo "$1 timed out after ${run_timeout}s (RUN_TIMEOUT)"
    else echo "$1 exited with status $2"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# Wait until $port accepts connections; give up if process $1 died or time ran out.
wait_port() {
    local pid=$1 log=$2 deadline=$((SECONDS + port_timeout))
    until port_open; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2; die "process exited before 127.0.0.1:$port was open"
        fi
        ((SECONDS < deadline)) || { tail -n 20 "$log" >&2; die "127.0.0.1:$port not open after ${port_timeout}s"; }
        sleep 0.2
    done
}

# A stale listener would be tested instead of the peer we start.
port_open && die "127.0.0.1:$port is already in use"

rm -rf "$out"
mkdir -p "$out" "$(dirname "$results")"
spec=$out/spec.json
if [[ $mode == server ]]; then
    cat >"$spec" <<EOF
{
  "outdir": "$out",
  "servers": [{"agent": "$agent", "url": "$url${SERVER_PATH:-}"}],
  "cases": ["*"],
  "exclude-cases": [$exclude],
  "exclude-agent-cases": {}
}
EOF
else
    cat >"$spec" <<EOF
{
  "url": "$url",
  "outdir": "$out",
  "cases": ["*"],
  "exclude-cases": [$exclude],
  "exclude-agent-cases": {}
}
EOF
fi
# The cases that must have a result, resolved by wstest's own code.
"${wstest[@]}" --list-cases "$spec" >"$out/expected-cases.txt"
echo "run.sh: $mode $depth: $(wc -l <"$out/expected-cases.txt") cases, agent $agent, $url" >&2

start=$SECONDS
run_error=
if [[ $mode == server ]]; then
    setsid bash -c "$cmd" >"$out/peer.log" 2>&1 &
    pids+=($!)
    wait_port "$!" "$out/peer.log"
    # wstest writes the reports itself once every case has run.
    bounded "$out/wstest.log" "${wstest[@]}" -m fuzzingclient -s "$spec" ||
        run_error=$(failure wstest $?)
else
    # -u 0: no web UI (it would listen on 0.0.0.0:8080).
    setsid timeout -k 10 "$run_timeout" "${wstest[@]}" -m fuzzingserver -s "$spec" -u 0 \
        >"$out/wstest.log" 2>&1 &
    pids+=($!)
    wait_port "$!" "$out/wstest.log"
    # The driver must call /updateReports?agent=$AGENT: that writes the reports.
    bounded "$out/peer.log" env AUTOBAHN_URL="$url" AUTOBAHN_AGENT="$agent" \
        AUTOBAHN_CASES_EXCLUDE="$exclude_env" bash -c "$cmd" ||
        run_error=$(failure "client driver" $?)
fi
elapsed=$((SECONDS - start))
cleanup
pids=()

if [[ -n $run_error ]]; then
    echo "run.sh: $run_error; last lines of $out/peer.log and wstest.log:" >&2
    tail -n 10 "$out/peer.log" "$out/wstest.log" >&2 || true
fi
status=0
python3 "$here/summarize.py" --index "$out/index.json" --agent "$agent" --mode "$mode" \
    --label "$depth" --expected "$out/expected-cases.txt" --results "$results" || status=$?
if [[ -n $run_error ]]; then
    printf '\nRun error: %s\n' "$run_error" >>"$results"
    status=1
fi
echo "run.sh: $mode $depth took ${elapsed}s; summary appended to $results; reports in $out" >&2
exit "$status"
