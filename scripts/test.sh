#!/usr/bin/env bash
# The test command (README): installs what it needs, then lint, no_std builds, all tests,
# and a short fuzz smoke run. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
# No incremental caches: they double the target directory and a clean run never reuses them.
export CARGO_INCREMENTAL=0
echo "== disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free where the build goes"
bash scripts/deps.sh --with-driver
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== Studio frontend: install, type-check, lint, unit tests, build"
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run check && npm run lint && npm test && npm run build)
echo "== TypeScript bindings generated from the Rust types are up to date"
bash scripts/bindings.sh --check
# The bindings build has a target directory of its own; CI (.ci/run) does not need it again.
if [ -n "${BLUESPHERE_CI:-}" ]; then rm -rf target/bindings; fi

echo "== fmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings

echo "== no_std builds"
cargo build -q -p bluesphere-core --no-default-features
cargo build -q -p bluesphere-device --no-default-features

echo "== tests"
# The corpus pair is an extra: without the network the tests use a generated pair.
if bash scripts/fetch_fixtures.sh; then
  export BLUESPHERE_REQUIRE_FIXTURES=1
else
  echo "note: corpus fixture not fetched (offline?); the tests use generated images"
fi
cargo build -q --workspace --bins
cargo test -q --workspace -- --skip sweep::power_cut_sweep --skip machine_tests::machine_power_cut_sweep

echo "== Studio in a real window (Xvfb + WebDriver)"
cargo test -q -p bluesphere-tests --test studio -- --ignored --nocapture

echo "== Bluetooth LE on a real stack: kernel Bluetooth + bluetoothd + 2 emulated controllers in a qemu guest"
bash tests/ble-vm/run.sh

echo "== power-cut sweep (device SDK)"
cargo test -q -p bluesphere-device --lib sweep::power_cut_sweep -- --exact --nocapture

echo "== whole-machine power-cut sweep (main MCU + module + data partition)"
cargo test -q -p bluesphere-device --lib machine_tests::machine_power_cut_sweep -- --exact --nocapture | grep -v '^machine sweep (seed'

echo "== fuzz (cargo-fuzz on the stable toolchain): input parsers 45 s each, codecs 20 s"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install -q cargo-fuzz --version ^0.13 --locked
fuzz() { # target seconds
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s address "$1" -- -max_total_time="$2" -rss_limit_mb=2048 -malloc_limit_mb=1024 2>&1 | tail -n 2)
}
for t in package_parse image_parse activation_parse; do fuzz "$t" "${FUZZ_PARSER_SECONDS:-45}"; done
for t in delta_decode delta_mutate delta_roundtrip proto_parse; do fuzz "$t" "${FUZZ_SECONDS:-20}"; done

echo "== demo"
bash scripts/demo.sh >/dev/null
echo "all checks passed"
