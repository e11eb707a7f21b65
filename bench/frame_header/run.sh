#!/usr/bin/env bash
# Instructions per call (callgrind, inclusive, of the one function each mode
# calls in a loop), ours against tungstenite's. See docs/architecture.md.
#   bash bench/frame_header/run.sh [ITERS]
set -eu
cd "$(dirname "$0")"
N=${1:-1000000}
cargo build --release --locked -q
./target/release/frame_header_bench check
OUT=$(mktemp -d)
for m in ours-parse tung-parse ours-format tung-format ours-close tung-close; do
    valgrind -q --tool=callgrind --callgrind-out-file="$OUT/$m" ./target/release/frame_header_bench "$m" "$N" >/dev/null
    fn=${m/-/_}
    ir=$(callgrind_annotate --inclusive=yes "$OUT/$m" | grep -m1 "frame_header_bench::$fn\b" | awk '{gsub(",", "", $1); print $1}')
    echo "$m: $(python3 -c "print(f'{$ir / $N:.1f}')") instructions per call"
done
rm -rf "$OUT"
