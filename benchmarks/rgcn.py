"""Benchmark of the R-GCN layer of Eq. (1) on the real knowledge graphs (a script, not a test).

    python benchmarks/rgcn.py [--datasets inspired redial] [--dim 64] [--steps 5]

``GroupedRGCNConv`` (``mscrs_core.graphs.rgcn``) against the baseline ``torch_geometric.nn.RGCNConv`` with
the same parameters, on the KG edges every run uses (both directions, inverse relations, self-loops):
forward + backward of one layer over all entities, the cost paid at every training step. Both are
timed in the same process, alternating, after a warm-up; the outputs are checked to agree.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch_geometric.nn import RGCNConv

from mscrs_core.data import load_dataset
from mscrs_core.graphs.kg import build_kg_edges
from mscrs_core.graphs.rgcn import GroupedRGCNConv


def _step(conv, x, kg) -> float:
    t = time.perf_counter()
    conv(x, kg.edge_index, kg.edge_type).square().mean().backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["inspired", "redial"])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--bases", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--data", default=None, help="data root (default $MSCRS_DATA or ../shared/data)")
    args = ap.parse_args()
    print(f"threads {torch.get_num_threads()}, dim {args.dim}, bases {args.bases}, median of {args.steps} steps")
    print("| KG | entities | edges | relations | RGCNConv (PyG) | GroupedRGCNConv | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name in args.datasets:
        ds = load_dataset(name, args.data)
        kg = build_kg_edges(ds.kg)
        torch.manual_seed(0)
        ref = RGCNConv(args.dim, args.dim, num_relations=kg.num_relations, num_bases=args.bases)
        new = GroupedRGCNConv(args.dim, args.dim, num_relations=kg.num_relations, num_bases=args.bases)
        new.load_state_dict(ref.state_dict())
        x = torch.randn(kg.num_entities, args.dim, requires_grad=True)
        with torch.no_grad():
            diff = float((ref(x, kg.edge_index, kg.edge_type) - new(x, kg.edge_index, kg.edge_type)).abs().max())
        assert diff < 1e-4, f"outputs differ by {diff}"
        _step(ref, x, kg), _step(new, x, kg)  # warm-up (and the grouping cache)
        times = {"ref": [], "new": []}
        for _ in range(args.steps):
            times["ref"].append(_step(ref, x, kg))
            times["new"].append(_step(new, x, kg))
        a, b = statistics.median(times["ref"]), statistics.median(times["new"])
        print(f"| {name} | {kg.num_entities:,} | {kg.num_edges:,} | {kg.num_relations} | {a:.3f} s | {b:.3f} s "
              f"| {a / b:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
