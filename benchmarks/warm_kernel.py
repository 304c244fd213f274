"""Sweep points in a fresh kernel each against one kept kernel (``mscrs_core/book/warm_kernel.py``).

Each point of chapters 4 and 5 is chapter 3 executed by papermill. In a fresh kernel a point first starts the
kernel and imports torch, transformers, torch-geometric, pandas and seaborn, and its last cell imports the glue
machinery: about 11 s on one core before any of its own work, while an untrained graph scorer computes for about a
second and a warm-up-alone MSCRS run for about 18. A sweep worker now keeps its kernel for point after point.

The same points run twice in this process, one after the other (``run_points`` with one worker): first with
``MSCRS_FRESH_KERNELS=1`` (a kernel per point, as before), then in one kept kernel, each into its own temporary
results folder, after one untimed point that fills the shared caches. Prints the wall seconds per point of each way,
the ratio fresh / kept, the run's own seconds (what the point computes), and whether every number of every result is
the same both ways.

Examples:
    python benchmarks/warm_kernel.py                       # 6 untrained graph-scorer points on INSPIRED
    python benchmarks/warm_kernel.py --model mscrs --points 3 --warm-up-only   # chapter 5's warm-up-alone runs
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

#: what a result holds that may differ between two executions of the same point (times, not numbers)
TIMES = ("seconds", "finished", "timings", "context_state_seconds")


def _numbers(results: Path, name: str) -> dict:
    r = json.loads((results / name / "result.json").read_text())
    out = {k: v for k, v in r.items() if k not in TIMES}
    out["fingerprint"] = {k: v for k, v in r.get("fingerprint", {}).items() if k != "content"}  # digests the times
    return out


def _base(args: argparse.Namespace) -> dict:
    """What every point overrides: chapter 5's warm-up stage alone, or nothing."""
    return {"pretrain_epochs": 0, "rec_epochs": 0} if args.warm_up_only else {}


def measure(args: argparse.Namespace, fresh: bool, results: Path) -> dict:
    from mscrs_core.experiments.sweep import run_points

    os.environ["MSCRS_FRESH_KERNELS"] = "1" if fresh else "0"
    points = [{"dataset": args.dataset, "model": args.model, "seed": s} for s in range(1, args.points + 1)]
    t = time.perf_counter()
    runs = run_points(points, profile=args.profile, base=_base(args), results_dir=results, log=lambda *_: None,
                      workers=1)
    wall = time.perf_counter() - t
    return {"per_point_s": wall / len(points), "run_s": float(runs["seconds"].mean()),
            "numbers": {n: _numbers(results, n) for n in runs["name"]}}


def compare(args: argparse.Namespace) -> dict:
    from mscrs_core.experiments.sweep import run_points

    before = os.environ.get("MSCRS_FRESH_KERNELS")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # untimed: the shared caches (item features, context features, title readouts) exist afterwards
            run_points([{"dataset": args.dataset, "model": args.model, "seed": 0}], profile=args.profile,
                       base=_base(args), results_dir=Path(tmp) / "warm-up", log=lambda *_: None, workers=1)
            fresh = measure(args, True, Path(tmp) / "fresh")
            kept = measure(args, False, Path(tmp) / "kept")
    finally:
        if before is None:
            os.environ.pop("MSCRS_FRESH_KERNELS", None)
        else:
            os.environ["MSCRS_FRESH_KERNELS"] = before
    same = fresh.pop("numbers") == kept.pop("numbers")
    return {"fresh": fresh, "kept": kept, "ratio": fresh["per_point_s"] / kept["per_point_s"], "same_numbers": same}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="inspired")
    ap.add_argument("--model", default="graph_scorer", help="the points' model (chapter 3's `model`)")
    ap.add_argument("--points", type=int, default=6, help="points per way (seeds 1..N)")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--warm-up-only", action="store_true",
                    help="no pre-training, no language-model stage (chapter 5's points under `default`)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    r = compare(args)
    print(f"{args.points} sweep points ({args.model} on {args.dataset}, profile {args.profile}"
          f"{', warm-up stage only' if args.warm_up_only else ''}), {os.environ.get('OMP_NUM_THREADS', 'all')} "
          f"thread(s), one after the other:")
    for name in ("fresh", "kept"):
        m = r[name]
        print(f"  {name + ' kernel' + ('s' if name == 'fresh' else ''):13s}: {m['per_point_s']:6.2f} s per point "
              f"(the run itself {m['run_s']:.2f} s)")
    print(f"  ratio fresh / kept: {r['ratio']:.2f}x; same numbers: {r['same_numbers']}")
    return r


if __name__ == "__main__":
    main()
