#!/usr/bin/env bash
# Activation-code throughput: `bluesphere codes gen` on N random 96-bit UIDs (default
# 1,000,000), end to end (parse, sign on all cores, record in a fresh registry, write the
# CSV). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
cargo build -q --release -p bluesphere-cli
B="$PWD/target/release/bluesphere"
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
head -c $((N * 12)) /dev/urandom | od -An -tx1 -v -w12 | tr -d ' ' > "$w/uids.txt"
"$B" keygen -o "$w/k.pem" >/dev/null
start=$(date +%s.%N)
out=$("$B" --json --quiet codes gen --key "$w/k.pem" --product bench --uids "$w/uids.txt" \
  -o "$w/codes.csv" --registry "$w/reg.sqlite" --new-registry)
end=$(date +%s.%N)
echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
n, total = r["issued"], float(sys.argv[1])
print("| UIDs | cores | signing | end to end (parse, sign, registry, CSV) |")
print("|---|---|---|---|")
cps = r["codes_per_second"]
print(f"| {n:,} | {sys.argv[2]} | {cps:,.0f} codes/s | {total:.1f} s ({n/total:,.0f} codes/s) |")
' "$(echo "$end - $start" | bc)" "$(nproc)"
