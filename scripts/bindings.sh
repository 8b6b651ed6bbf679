#!/usr/bin/env bash
# Generate the Studio's TypeScript types from the Rust jobs API (ts-rs) into
# ui/src/lib/bindings/. `--check` fails when the committed files are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out=ui/src/lib/bindings
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A target directory of its own: the `ts` feature must not rebuild the main one.
CARGO_TARGET_DIR=target/bindings TS_RS_EXPORT_DIR="$tmp" \
  cargo test -q -p bluesphere-core -p bluesphere-host -p bluesphere-api \
    --features bluesphere-api/ts --lib export_bindings >/dev/null
# JSON carries u64 sizes as numbers (all below 2^53), not bigints.
for f in "$tmp"/*.ts; do
  sed -i 's/\bbigint\b/number/g' "$f"
done
if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$tmp" "$out" >/dev/null; then
    diff -r "$tmp" "$out" || true
    echo "ui/src/lib/bindings is stale: run scripts/bindings.sh and commit the result" >&2
    exit 1
  fi
  echo "bindings up to date ($(ls "$out" | wc -l) files)"
else
  rm -rf "$out"
  mkdir -p "$out"
  cp "$tmp"/*.ts "$out"/
  echo "wrote $(ls "$out" | wc -l) files to $out"
fi
