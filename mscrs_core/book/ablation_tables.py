"""Tables and findings of chapter 5 (ablations, Figures 4a-b and 5), so the chapter shows results, not indexing.

Chapter 5 runs every point of its figures in one sweep (:func:`~mscrs_core.experiments.sweep.run_points` returns
one row per point, in the order given) and takes each figure's rows back out of it:

* :func:`split_rows` -- the sweep's rows cut back into its groups, by the groups' sizes;
* :func:`ablation_table` -- Figure 4 (a, b) as a table: mean metrics per graph variant, trained and untrained;
* :func:`ablation_differences` -- each variant's Recall@10 minus MSCRS's, the numbers the prose states.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import pandas as pd

__all__ = ["TRAINED", "UNTRAINED", "split_rows", "ablation_table", "variant_key", "ablation_differences"]

#: the ``kind`` of a row of the ablation sweep: the trained variant, or its graphs untrained and alone
TRAINED, UNTRAINED = "trained MSCRS variant", "graphs alone (untrained)"


def split_rows(frame: pd.DataFrame, sizes: Mapping[str, int]) -> dict[str, pd.DataFrame]:
    """``frame``'s rows cut into consecutive groups of ``sizes[name]`` rows, in ``sizes``' order, each with a
    fresh 0-based index. The sizes must add up to the frame's length (a sweep returns one row per point)."""
    if any(n < 0 for n in sizes.values()):
        raise ValueError(f"sizes: expected non-negative row counts, got {dict(sizes)}")
    if sum(sizes.values()) != len(frame):
        raise ValueError(f"sizes add up to {sum(sizes.values())} rows, the frame has {len(frame)}")
    parts, start = {}, 0
    for name, n in sizes.items():
        parts[name], start = frame.iloc[start:start + n].reset_index(drop=True), start + n
    return parts


def ablation_table(ab: pd.DataFrame, variants: Sequence[str],
                   metrics: Sequence[str] = ("recall@1", "recall@10", "recall@50")) -> pd.DataFrame:
    """Mean ``metrics`` per ``variant`` (rows, in ``variants``' order) and ``kind`` (column level), 4 decimals."""
    return ab.groupby(["variant", "kind"])[list(metrics)].mean().unstack("kind").reindex(list(variants)).round(4)


def variant_key(name: str) -> str:
    """A glue-friendly key of a variant name: ``"MSCRS"`` -> ``"mscrs"``, ``"w/o -co"`` -> ``"wo_co"``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("w/o", "wo")).strip("_")


def ablation_differences(ab: pd.DataFrame, variants: Sequence[str], reference: str = "MSCRS",
                         metric: str = "recall@10") -> dict[str, float]:
    """Per kind (``trained_``, ``alone_``): the reference's mean ``metric`` (``<kind>_<reference key>``) and every
    variant's mean minus it (``<kind>_<variant key>_diff``); ``nan`` where a variant or the reference is missing,
    so a sentence that names every variant always renders."""
    means = ab.groupby(["variant", "kind"])[metric].mean()
    out: dict[str, float] = {}
    for prefix, kind in (("trained", TRAINED), ("alone", UNTRAINED)):
        ref = float(means.get((reference, kind), float("nan")))
        out[f"{prefix}_{variant_key(reference)}"] = ref
        for v in variants:
            if v != reference:
                out[f"{prefix}_{variant_key(v)}_diff"] = float(means.get((v, kind), float("nan"))) - ref
    return out
