#!/usr/bin/env bash
# Our pack/apply on the team's firmware corpus, side by side with the peer tools.
# Needs ../shared/bench/delta (read-only); lists and results go to ./bench-corpus, ./bench-results.
# Ours runs under `sh -c` (run_bench.py); `exec` spares it the extra shell process the peers do not have.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH_DIR:-../shared/bench/delta}
SETS=${BENCH_SETS:-public}
[ -d "$BENCH" ] || { echo "no benchmark kit at $BENCH (set BENCH_DIR)"; exit 1; }
bash "$BENCH/install_tools.sh"
[ -f bench-corpus/corpus-public.txt ] || python3 "$BENCH/fetch_corpus.py" --out bench-corpus
cargo build --release -q -p bluesphere-cli
B="$PWD/target/release/bluesphere"
KEY="$PWD/bench-results/bench-key.pem"
mkdir -p bench-results
[ -f "$KEY" ] || "$B" keygen -q -o "$KEY" >/dev/null
extra=()
[ "$SETS" = large ] && extra=(--timeout 240 --exclude 'detools-inplace-*,detools-seq-crle,detools-seq-none,detools-seq-heatshrink,qbsdiff-s8')
BENCH_CORPUS_LIST_DIR="$PWD/bench-corpus" BENCH_RESULTS_DIR="$PWD/bench-results" \
python3 "$BENCH/run_bench.py" --sets "$SETS" "${extra[@]}" --ours-name bluesphere \
  --ours-create "exec $B pack --format bin --old {old} --new {new} -o {patch} --key $KEY --json" \
  --ours-apply "exec $B apply --format bin --unverified {patch} --old {old} -o {out}"
