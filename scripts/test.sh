#!/usr/bin/env bash
# The test command (README): installs what it needs, then lint, no_std builds, all tests,
# and a short fuzz smoke run. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== fmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings

echo "== no_std builds"
cargo build -q -p bluesphere-core --no-default-features
cargo build -q -p bluesphere-device --no-default-features

echo "== tests"
bash scripts/fetch_fixtures.sh
export BLUESPHERE_REQUIRE_FIXTURES=1
cargo build -q --workspace --bins
cargo test -q --workspace -- --skip sweep::power_cut_sweep

echo "== power-cut sweep (device SDK)"
cargo test -q -p bluesphere-device --lib sweep::power_cut_sweep -- --exact --nocapture

echo "== fuzz smoke (cargo-fuzz on the stable toolchain)"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install -q cargo-fuzz --version ^0.13 --locked
for t in package_parse delta_decode delta_mutate proto_parse; do
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s address "$t" -- -max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=2048 2>&1 | tail -n 2)
done

echo "== demo"
bash scripts/demo.sh >/dev/null
echo "all checks passed"
