#!/usr/bin/env bash
# make fuzz: runs every cargo-fuzz target for FUZZ_SECONDS (default 120) each.
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets the stable
# toolchain accept them. The corpus in fuzz/corpus/ is kept in the repo,
# minimised to the inputs that add edge coverage: a run adds hundreds of
# inputs that differ only in hit counts, so before committing new ones run
#   cargo fuzz cmin T corpus/T -- -use_counters=0 -set_cover_merge=1 -max_len=4096
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-120}
for target in handshake url frames close; do
  mkdir -p "corpus/$target"
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 2>&1 |
    grep -E "^(Done|stat::number_of_executed_units|stat::new_units_added|==|SUMMARY)|panicked|ERROR" || true
done
