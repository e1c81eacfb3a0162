#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 10: the smoke CI runs), seeded
# with the wire fixtures and fresh certificates (written by the stable smoke test), and
# prints each target's executions. Needs a nightly toolchain and cargo-fuzz (installed
# when missing). Exits nonzero when a target finds a crash; its input is under
# fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain; the stable smoke test (fuzz_smoke) covers the targets" >&2
  exit 0
fi
command -v cargo-fuzz >/dev/null || [ -x "$HOME/.cargo/bin/cargo-fuzz" ] || cargo install cargo-fuzz --locked
seeds=fuzz/corpus/seeds
RDV_FUZZ_SEEDS="$PWD/$seeds" RDV_FUZZ_MUTATIONS=0 \
  cargo test --release --test it every_fuzz_target -- --quiet >/dev/null
cargo +nightly fuzz build -O
for t in udp_datagram tcp_frames answer_stream certificate udp_core tcp_core; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/corpus/$t.log"
  cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" "$seeds" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1 || { tail -40 "$log"; exit 1; }
  echo "fuzz $t: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1), no crash"
done
