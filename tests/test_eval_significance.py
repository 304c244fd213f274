"""Paired tests, bootstrap, Holm and seed aggregation against hand-computed values."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from mscrs_core.evaluation import (
    RankingEvaluator,
    aggregate_seeds,
    aggregate_seeds_frame,
    holm_bonferroni,
    paired_bootstrap,
    paired_test,
)


def test_paired_ttest_hand_computed():
    a, b = [1, 2, 3, 4, 5], [0, 2, 1, 4, 3]
    # d = [1, 0, 2, 0, 2]: mean 1, sample sd 1 -> t = 1 / (1 / sqrt 5) = sqrt 5, df 4
    r = paired_test(a, b)
    assert r.statistic == pytest.approx(math.sqrt(5))
    assert r.pvalue == pytest.approx(2 * stats.t.sf(math.sqrt(5), 4))
    assert r.mean_diff == pytest.approx(1.0) and r.n == 5
    g = paired_test(a, b, alternative="greater")
    assert g.pvalue == pytest.approx(stats.t.sf(math.sqrt(5), 4))


def test_wilcoxon_exact_hand_computed():
    b = np.zeros(6)
    a = np.array([1, -2, 3, 4, 5, 6], dtype=float)
    # |d| ranks 1..6, W- = 2 -> statistic 2; subsets of {1..6} with sum <= 2: {}, {1}, {2} -> p = 2*3/64
    r = paired_test(a, b, method="wilcoxon")
    assert r.statistic == pytest.approx(2.0)
    assert r.pvalue == pytest.approx(6 / 64)


def test_degenerate_differences():
    x = [0.1, 0.2, 0.3]
    assert paired_test(x, x).pvalue == 1.0
    assert paired_test(x, x, method="wilcoxon").pvalue == 1.0
    r = paired_test([1, 1, 1], [0, 0, 0])
    assert r.statistic == math.inf and r.pvalue == 0.0
    assert paired_test([1, 1, 1], [0, 0, 0], alternative="less").pvalue == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        paired_test([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        paired_test([1], [1])
    with pytest.raises(ValueError, match="method"):
        paired_test([1, 2], [2, 1], method="sign")
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap([1, float("nan")], [1, 2])


def test_paired_bootstrap_detects_shift_and_is_deterministic():
    rng = np.random.default_rng(0)
    b = rng.normal(size=300)
    a = b + 0.5 + rng.normal(scale=0.3, size=300)
    r1 = paired_bootstrap(a, b, n_resamples=2000, seed=3)
    r2 = paired_bootstrap(a, b, n_resamples=2000, seed=3)
    assert r1 == r2
    assert r1.mean_diff == pytest.approx(float(np.mean(a - b)))
    assert 0 < r1.ci_low < r1.mean_diff < r1.ci_high
    assert r1.pvalue < 0.001
    # CI width ~ 2 * 1.96 * sd / sqrt(n)
    sd = np.std(a - b, ddof=1) / math.sqrt(300)
    assert r1.ci_high - r1.ci_low == pytest.approx(2 * 1.96 * sd, rel=0.15)
    same = paired_bootstrap(b, b, n_resamples=100)
    assert same.pvalue == 1.0 and same.ci_low == same.ci_high == 0.0


def test_bootstrap_no_difference_is_not_significant():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(size=200)
    assert paired_bootstrap(a, b, n_resamples=2000).pvalue > 0.05


def test_holm_bonferroni_hand_computed():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(0.06, 1*0.04) -> back in input order
    assert holm_bonferroni([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_bonferroni([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_aggregate_seeds():
    runs = [{"recall@10": 0.1, "ndcg@10": 0.5}, {"recall@10": 0.3, "ndcg@10": 0.5}]
    agg = aggregate_seeds(runs)
    assert agg["recall@10"][0] == pytest.approx(0.2)
    assert agg["recall@10"][1] == pytest.approx(math.sqrt(0.02))  # sample std of {0.1, 0.3}
    assert agg["ndcg@10"] == pytest.approx((0.5, 0.0))
    df = aggregate_seeds_frame(runs)
    assert df.loc["recall@10", "mean"] == pytest.approx(0.2) and (df["n"] == 2).all()
    assert math.isnan(aggregate_seeds(runs[:1])["recall@10"][1])
    with pytest.raises(ValueError, match="keys"):
        aggregate_seeds([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError, match="at least one"):
        aggregate_seeds([])


def test_end_to_end_with_ranking_per_sample():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(200, 50, generator=g)
    gold = torch.randint(0, 50, (200,), generator=g)
    better = base.clone()
    better[torch.arange(200), gold] += 2.0  # system A lifts every gold item
    ea, eb = RankingEvaluator(), RankingEvaluator()
    ea.update(better, gold)
    eb.update(base, gold)
    pa, pb = ea.per_sample(), eb.per_sample()
    r = paired_test(pa["mrr@10"], pb["mrr@10"], method="wilcoxon", alternative="greater")
    assert r.mean_diff > 0 and r.pvalue < 1e-6
