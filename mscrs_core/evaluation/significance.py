"""Paired significance tests between two systems, and mean/std aggregation across seeds.

The paper reports single numbers with no test; the book compares systems on the *same* evaluation
samples, so tests are paired on per-sample metric arrays (``RankingEvaluator.per_sample()``,
``GenerationEvaluator.per_sample()``):

* ``paired_test(a, b, method="ttest")``: ``scipy.stats.ttest_rel``; ``method="wilcoxon"``:
  ``scipy.stats.wilcoxon`` signed-rank (zero differences dropped, scipy's default ``"wilcox"``),
  better for 0/1 metrics such as Recall@k.
* ``paired_bootstrap(a, b)``: resample sample indices with replacement (same indices for both
  systems), report a percentile confidence interval of ``mean(a) - mean(b)`` and a two-sided p-value
  from the bootstrap distribution shifted to the null (``mean |d* - d| >= |d|``).
* ``holm_bonferroni``: step-down adjustment when several metrics/datasets are tested at once.
* ``aggregate_seeds``: mean and sample std (``ddof=1``; NaN for a single run) per metric across runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["PairedTestResult", "BootstrapResult", "paired_test", "paired_bootstrap", "holm_bonferroni",
           "aggregate_seeds", "aggregate_seeds_frame"]

Alternative = Literal["two-sided", "greater", "less"]


@dataclass(frozen=True)
class PairedTestResult:
    method: str
    statistic: float
    pvalue: float
    mean_diff: float  # mean(a - b)
    n: int


@dataclass(frozen=True)
class BootstrapResult:
    mean_diff: float  # mean(a) - mean(b) on the original samples
    ci_low: float
    ci_high: float
    pvalue: float  # two-sided
    n: int
    n_resamples: int


def _paired_arrays(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"a/b: paired arrays must have the same length, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"a/b: need at least 2 paired samples, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("a/b: contain NaN or inf")
    return x, y


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                method: Literal["ttest", "wilcoxon"] = "ttest",
                alternative: Alternative = "two-sided") -> PairedTestResult:
    """Paired test of system ``a`` against ``b`` on the same samples (``alternative="greater"``: a > b).

    Degenerate cases scipy leaves undefined: all differences zero gives ``pvalue = 1``; a constant
    non-zero difference (zero variance) gives ``statistic = +-inf`` and ``pvalue`` 0 in the direction
    of the difference (1 against it).
    """
    if method not in ("ttest", "wilcoxon"):
        raise ValueError(f"method: expected 'ttest' or 'wilcoxon', got {method!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative: expected 'two-sided', 'greater' or 'less', got {alternative!r}")
    x, y = _paired_arrays(a, b)
    d = x - y
    mean_diff = float(d.mean())
    if np.all(d == 0):
        return PairedTestResult(method, 0.0, 1.0, 0.0, d.size)
    if method == "ttest" and np.all(d == d[0]):
        sign = float(np.sign(d[0]))
        p = 0.0 if alternative == "two-sided" or (alternative == "greater") == (sign > 0) else 1.0
        return PairedTestResult(method, sign * np.inf, p, mean_diff, d.size)
    if method == "ttest":
        res = stats.ttest_rel(x, y, alternative=alternative)
    else:
        res = stats.wilcoxon(x, y, alternative=alternative)
    return PairedTestResult(method, float(res.statistic), float(res.pvalue), mean_diff, d.size)


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                     n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0,
                     batch: int = 1_000) -> BootstrapResult:
    """Paired bootstrap of ``mean(a) - mean(b)``: percentile CI and two-sided p-value (module docstring)."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples: expected >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected in (0, 1), got {confidence}")
    x, y = _paired_arrays(a, b)
    d = x - y
    n = d.size
    observed = float(d.mean())
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    for start in range(0, n_resamples, batch):  # batches bound memory at batch * n indices
        m = min(batch, n_resamples - start)
        idx = rng.integers(0, n, size=(m, n))
        boot[start:start + m] = d[idx].mean(axis=1)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    # shift to the null (mean 0): how often is a resampled deviation at least as extreme as observed
    if observed == 0.0:
        p = 1.0
    else:
        p = float(np.mean(np.abs(boot - observed) >= abs(observed)))
    return BootstrapResult(observed, float(lo), float(hi), p, n, n_resamples)


def holm_bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as the input), capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise ValueError(f"pvalues: expected a 1-D list of values in [0, 1], got {pvalues!r}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj_sorted, 1.0)
    return out


def _check_runs(runs: Sequence[Mapping[str, float]]) -> list[str]:
    if len(runs) == 0:
        raise ValueError("runs: expected at least one metrics dict, got none")
    keys = list(runs[0].keys())
    for i, r in enumerate(runs[1:], start=1):
        if set(r.keys()) != set(keys):
            missing = set(keys) ^ set(r.keys())
            raise ValueError(f"runs[{i}]: metric keys differ from runs[0] (symmetric difference {sorted(missing)})")
    return keys


def aggregate_seeds(runs: Sequence[Mapping[str, float]], ddof: int = 1) -> dict[str, tuple[float, float]]:
    """``{metric: (mean, std)}`` across runs (one dict per seed); sample std, NaN for one run."""
    keys = _check_runs(runs)
    out: dict[str, tuple[float, float]] = {}
    for k in keys:
        v = np.asarray([float(r[k]) for r in runs], dtype=np.float64)
        std = float(v.std(ddof=ddof)) if v.size > ddof else float("nan")
        out[k] = (float(v.mean()), std)
    return out


def aggregate_seeds_frame(runs: Sequence[Mapping[str, float]], ddof: int = 1) -> pd.DataFrame:
    """The same as ``aggregate_seeds`` as a DataFrame indexed by metric with columns mean, std, n."""
    agg = aggregate_seeds(runs, ddof=ddof)
    df = pd.DataFrame({"mean": [m for m, _ in agg.values()], "std": [s for _, s in agg.values()]},
                      index=pd.Index(list(agg.keys()), name="metric"))
    df["n"] = len(runs)
    return df
