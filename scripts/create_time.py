#!/usr/bin/env python3
"""Create time of `bluesphere pack` next to hdiffz -SD, interleaved and repeated.

run_bench.py times every tool once per pair (and ours under `sh -c`); on a shared 2-core
machine single runs vary by +-20 %. This runs ours and hdiffz alternately, R times per pair,
and keeps each one's fastest run: a steadier figure for "create time <= hdiffz".

    python3 scripts/create_time.py [LIST] [BINARY ...]

LIST: corpus list (family<TAB>old<TAB>new; default bench-corpus/corpus-public.txt, written
by scripts/bench.sh). BINARY: one or more builds of ours to compare (default
target/release/bluesphere). Env: R (runs per tool and pair, default 9), HDIFFZ (default
/tmp/deltatools/bin/hdiffz, where the bench kit installs it), KEY (signing key, default
bench-results/bench-key.pem).
"""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    args = sys.argv[1:]
    lst = args[0] if args else os.path.join(ROOT, "bench-corpus", "corpus-public.txt")
    bins = args[1:] or [os.path.join(ROOT, "target", "release", "bluesphere")]
    runs = int(os.environ.get("R", "9"))
    hdiffz = os.environ.get("HDIFFZ", "/tmp/deltatools/bin/hdiffz")
    key = os.environ.get("KEY", os.path.join(ROOT, "bench-results", "bench-key.pem"))
    for path in [lst, hdiffz, key, *bins]:
        if not os.path.exists(path):
            sys.exit(f"missing {path} (run scripts/bench.sh once first)")
    out = "/tmp/bluesphere-create-time"
    os.makedirs(out, exist_ok=True)
    names = [os.path.basename(b) for b in bins] + ["hdiffz-SD"]
    print("pair".ljust(22), " ".join(n[:10].rjust(10) for n in names), " (ms, fastest of", runs, "runs)")
    rows = []
    for line in open(lst):
        fam, old, new = line.rstrip("\n").split("\t")
        cmds = [[b, "pack", "--format", "bin", "--old", old, "--new", new, "-o", f"{out}/p.bsp", "--key", key, "--json"]
                for b in bins]
        cmds.append([hdiffz, "-SD", "-c-lzma2", "-f", old, new, f"{out}/p.hd"])
        best = [float("inf")] * len(cmds)
        for _ in range(runs):
            for i, c in enumerate(cmds):
                t = time.perf_counter()
                r = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                dt = time.perf_counter() - t
                if r.returncode != 0:
                    sys.exit(f"{' '.join(c)} failed with exit {r.returncode}")
                best[i] = min(best[i], dt)
        rows.append(best)
        print(fam[:22].ljust(22), " ".join(f"{x * 1000:10.2f}" for x in best), flush=True)
    h = len(names) - 1
    for i, n in enumerate(names):
        print(f"median {n}: {statistics.median(r[i] for r in rows) * 1000:.2f} ms")
    for i in range(h):
        faster = sum(r[i] < r[h] for r in rows)
        ratio = statistics.median(r[i] / r[h] for r in rows)
        print(f"{names[i]} vs hdiffz-SD: median per-pair ratio {ratio:.3f}, faster on {faster}/{len(rows)} pairs")


if __name__ == "__main__":
    main()
