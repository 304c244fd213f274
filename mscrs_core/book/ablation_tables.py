"""Tables and findings of chapter 5 (ablations, Figures 4a-b and 5), so the chapter shows results, not indexing.

Chapter 5 runs every point of its figures in one sweep (:func:`~mscrs_core.experiments.sweep.run_points` returns
one row per point, in the order given) and takes each figure's rows back out of it:

* :func:`split_rows` -- the sweep's rows cut back into its groups, by the groups' sizes;
* :func:`ablation_table` -- Figure 4 (a, b) as a table: mean metrics per graph variant, trained and untrained;
* :func:`ablation_differences` -- each variant's Recall@10 minus MSCRS's, the numbers the prose states;
* :func:`variant_tests` -- trained MSCRS against each trained variant, paired over the test samples (the
  per-sample metric averaged over each variant's seeds), one-sided "MSCRS better";
* :func:`graph_test_summary` -- the test against the no-graph prompt (w/o -r) in words.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from .rec_tables import p_text, paired_test_rows

__all__ = ["TRAINED", "UNTRAINED", "split_rows", "ablation_table", "variant_key", "ablation_differences",
           "variant_tests", "graph_test_summary"]

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


def variant_tests(ab: pd.DataFrame, per_sample: Callable[[Sequence[str]], pd.Series], variants: Sequence[str],
                  reference: str = "MSCRS", methods: Iterable[str] = ("ttest", "wilcoxon"),
                  metric: str = "Recall@10") -> pd.DataFrame:
    """The trained ``reference`` against each other trained variant: one row per variant and test in ``methods``,
    paired over the test samples both have, one-sided ("the reference is better").

    ``ab`` holds the ablation rows (columns ``name``, ``variant``, ``kind``); ``per_sample(names)`` gives the
    per-test-sample metric averaged over those runs (a variant's seeds), indexed by sample id. Pooling the seeds
    per sample before the test is what chapter 4 does for Table 2. A variant whose runs are the reference's own
    (w/o -i without images) is no comparison and is left out, as is one with no trained runs.
    """
    trained = ab[ab["kind"] == TRAINED]
    names = {v: sorted(set(trained.loc[trained["variant"] == v, "name"]))
             for v in dict.fromkeys([reference, *variants])}
    if not names[reference]:
        raise ValueError(f"variant_tests: no trained runs of the reference {reference!r}")
    ref = per_sample(names[reference])
    rows = []
    for v in variants:
        if v == reference or not names[v] or names[v] == names[reference]:
            continue
        rows += [{f"{reference} vs": v, "seeds": len(names[v]), **row}
                 for row in paired_test_rows(ref, per_sample(names[v]), methods, metric)]
    return pd.DataFrame(rows)


def graph_test_summary(tests: pd.DataFrame, recipe: str, against: str = "w/o -r", reference: str = "MSCRS",
                       metric: str = "Recall@10") -> str:
    """:func:`variant_tests`' t-test of ``reference`` against ``against`` as one Markdown sentence (numbers in
    bold, as glued values render); a sentence saying so where that comparison did not run."""
    col = f"{reference} vs"
    row = tests[(tests[col] == against) & (tests["test"] == "ttest")] if len(tests) else tests
    if len(row) == 0:
        return f"{reference} was not compared with {against} in this execution."
    r = row.iloc[0]
    diff = r[f"mean difference in {metric}"]
    verdict = "significant at 0.05" if r["p-value"] < 0.05 else "not significant at 0.05"
    return (f"Trained with {recipe}, {reference} against {against} (no semantic graph: the UniCRS prompt) differs "
            f"by **{diff:+.3f}** in {metric} per test sample ({int(r['samples'])} samples, "
            f"{int(r['seeds'])} seed{'s' if r['seeds'] != 1 else ''} pooled per sample); one-sided paired t-test, "
            f"\"{reference} better\": {p_text(r['p-value'])}, {verdict}.")
