"""Benchmark of the graph builders (a script, not a test).

    python benchmarks/graphs.py [--sizes 1000 10000 100000] [--dialogs 1000 10000 100000] [--k 20]

kNN graph (Eq. 9-10) on random 384-d features: the blocked builder of ``mscrs_core.graphs.knn``
beside a dense N x N baseline (full similarity matrix + topk; skipped where the matrix would
exceed --dense-max-gb). Co-mention graph (Eq. 6) on synthetic dialogs of ~10 entities drawn
(Zipf-like popularity) from 20k entities. Each case runs in its own subprocess; peak memory is
that process's ``resource.getrusage(...).ru_maxrss`` (tracemalloc does not see torch), reported
in total and above the process's baseline after imports and input generation.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _child(case: str, n: int, k: int) -> dict:
    from mscrs_core.graphs.comention import build_comention_graph  # imports outside the timing
    from mscrs_core.graphs.knn import build_knn_graph

    torch.manual_seed(0)
    if case in ("knn", "dense"):
        x = torch.randn(n, 384)
        base = _rss_mb()
        t, cpu0 = time.perf_counter(), time.process_time()
        if case == "knn":
            edges = build_knn_graph(x, k, symmetric=False).num_edges
        else:
            xn = torch.nn.functional.normalize(x, dim=1)
            s = (xn @ xn.T).clamp_(min=0)
            s.fill_diagonal_(0)
            v, i = s.topk(k, dim=1)
            edges = int((v > 0).sum())
    else:
        rng = np.random.default_rng(0)
        p = 1.0 / np.arange(1, 20_001) ** 0.8
        p /= p.sum()
        lens = rng.integers(8, 13, size=n)
        dialogs = [rng.choice(20_000, size=m, replace=False, p=p) for m in lens]
        base = _rss_mb()
        t, cpu0 = time.perf_counter(), time.process_time()
        edges = build_comention_graph(dialogs, 20_000, threshold=1).num_edges
    wall = time.perf_counter() - t
    peak = _rss_mb()
    cpu = time.process_time() - cpu0
    return {"case": case, "n": n, "seconds": wall, "cpu_s": cpu, "peak_mb": peak, "extra_mb": peak - base,
            "edges": edges}


def _run(case: str, n: int, k: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, str(n), str(k)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--dialogs", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--dense-max-gb", type=float, default=4.0)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_child(a.child[0], int(a.child[1]), int(a.child[2]))))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f} (the machine is shared: wall times vary with load)\n")
    print(f"kNN graph, 384-d random features, k={a.k} (directed top-k; times exclude feature generation)")
    print(f"{'N':>8} {'blocked s':>10} {'cpu s':>7} {'peak MB':>8} {'+MB':>7} {'dense s':>8} {'peak MB':>8} {'+MB':>7} "
          f"{'t ratio':>8} {'+MB ratio':>9}")
    for n in a.sizes:
        b = _run("knn", n, a.k)
        if n * n * 4 / 2**30 <= a.dense_max_gb:
            d = _run("dense", n, a.k)
            assert d["edges"] == b["edges"], (d, b)
            print(f"{n:>8} {b['seconds']:>10.2f} {b['cpu_s']:>7.1f} {b['peak_mb']:>8.0f} {b['extra_mb']:>7.0f} "
                  f"{d['seconds']:>8.2f} "
                  f"{d['peak_mb']:>8.0f} {d['extra_mb']:>7.0f} {d['seconds'] / b['seconds']:>8.2f} "
                  f"{d['extra_mb'] / max(b['extra_mb'], 1):>9.1f}")
        else:
            need = n * n * 4 / 2**30
            print(f"{n:>8} {b['seconds']:>10.2f} {b['cpu_s']:>7.1f} {b['peak_mb']:>8.0f} {b['extra_mb']:>7.0f}   dense skipped "
                  f"(N x N float32 = {need:.0f} GB)")
    print("\nco-mention graph, dialogs of 8-12 entities from 20k (Zipf-like), threshold=1")
    print(f"{'dialogs':>8} {'seconds':>8} {'peak MB':>8} {'+MB':>7} {'edges':>9}")
    for n in a.dialogs:
        c = _run("comention", n, 0)
        print(f"{n:>8} {c['seconds']:>8.2f} {c['peak_mb']:>8.0f} {c['extra_mb']:>7.0f} {c['edges']:>9}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
