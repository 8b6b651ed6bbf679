#!/usr/bin/env bash
# A short demo of the CLI (the main job, scripts/studio.sh, runs it when there is no display):
# make a key, pack a signed delta from the sample images, inspect it, verify it, apply it and
# compare the bytes; then install it on a virtual device (file-backed flash), boot, confirm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# The same build as the tests and the Studio (one feature set: nothing is rebuilt).
cargo build -q --workspace --bins
B="$PWD/target/debug/bluesphere"
D="$PWD/target/debug/bluesphere-device"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step "$B" keygen -o "$work/key.pem"
step "$B" pack --old assets/sample-v1.0.0.bin --new assets/sample-v1.1.0.hex \
  --key "$work/key.pem" -o "$work/update.bsp" \
  --product demo-thermostat --hardware revB --from-version 1.0.0 --version 1.1.0 --counter 2
step "$B" inspect "$work/update.bsp"
step "$B" verify "$work/update.bsp" --pub "$work/key.pub.pem" --old assets/sample-v1.0.0.bin
step "$B" apply "$work/update.bsp" --old assets/sample-v1.0.0.bin -o "$work/installed.bin" --pub "$work/key.pub.pem"
step cmp "$work/installed.bin" assets/sample-v1.1.0.bin
echo "demo: the applied image is byte-identical to version 1.1.0"
echo
echo "and a wrong base image is refused with what the package expects:"
"$B" apply "$work/update.bsp" --old assets/sample-v1.1.0.bin -o "$work/x.bin" --pub "$work/key.pub.pem" || echo "(exit code $?)"

echo
echo "a virtual device (the device SDK over file-backed flash) installs the same package:"
step "$D" --flash "$work/dev" init --product demo-thermostat --hardware revB \
  --key "$work/key.pub.pem" --image assets/sample-v1.0.0.bin --version 1.0.0
step "$D" --flash "$work/dev" install "$work/update.bsp"
step "$D" --flash "$work/dev" boot
step "$D" --flash "$work/dev" confirm
step "$D" --flash "$work/dev" status

echo
echo "a whole machine: main MCU firmware, a radio module on a local link and a data partition,"
echo "one package made from a release manifest, one push over a (pseudo-terminal) serial port:"
cp assets/sample-v1.0.0.bin assets/sample-v1.1.0.bin "$work/"
cat > "$work/release.toml" <<'TOML'
product = "demo-coffee"
hardware = "rev3"
key = "key.pem"
out = "machine.bsp"

[[component]]
name = "main"
old = "sample-v1.0.0.bin"
new = "sample-v1.1.0.bin"
from = "1.0.0"
to = "1.1.0"
depends = ["radio>=1.1.0"]

[[component]]
name = "radio"
old = "sample-v1.0.0.bin"
new = "sample-v1.1.0.bin"
from = "1.0.0"
to = "1.1.0"
profile = "small"

[[component]]
name = "data"
new = "sample-v1.1.0.bin"
to = "1.1.0"
TOML
for c in main radio data; do
  "$D" --flash "$work/m/$c" init --product demo-coffee --hardware rev3 --key "$work/key.pub.pem" \
    --image assets/sample-v1.0.0.bin --version 1.0.0 --component "$c" --mode ab >/dev/null
done
step "$D" --flash "$work/m" machine init --member local:main=main --member module:radio=radio --member local:data=data
step "$B" pack --manifest "$work/release.toml"
"$D" --flash "$work/m" machine serve --port auto --auto-confirm > "$work/port" 2>"$work/machine.log" &
machine=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
step "$B" push "$work/machine.bsp" --port "$(head -n 1 "$work/port")"
step "$B" info --port "$(head -n 1 "$work/port")"
kill "$machine"; wait "$machine" 2>/dev/null || true
step "$D" --flash "$work/m" machine status

echo
echo "activation codes for three chips (STM32 96-bit, nRF 64-bit, ESP32 MAC):"
printf '0123456789abcdef01234567\nfedcba9876543210\n24:6f:28:aa:bb:cc\n' > "$work/uids.txt"
step "$B" codes gen --key "$work/key.pem" --product demo-thermostat --uids "$work/uids.txt" \
  -o "$work/codes.csv" --registry "$work/registry.sqlite" --new-registry
step cat "$work/codes.csv"
step "$B" codes verify --pub "$work/key.pub.pem" --product demo-thermostat "$work/codes.csv"
