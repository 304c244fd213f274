"""Slices (gold already mentioned vs new) and top-1 agreement, on hand-made inputs."""
import math

import numpy as np
import pytest
import torch

from mscrs_core.data.samples import Sample
from mscrs_core.evaluation import RankingEvaluator, gold_was_mentioned, slice_metrics, top1_agreement


def _s(target, mentioned):
    return Sample("d", 1, (("seeker", "hi"),), (), "", target, tuple(mentioned))


def test_gold_was_mentioned():
    samples = [_s(5, [3, 5]), _s(4, [3, 5]), _s(7, [])]
    assert gold_was_mentioned(samples).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="target"):
        gold_was_mentioned([_s(None, [])])


def test_slice_metrics_means_and_counts():
    per = {"recall@10": np.array([1.0, 0.0, 0.5, 1.0]), "mrr@10": np.array([1.0, 0.0, 0.25, 0.5]),
           "rank": np.array([1.0, 30.0, 5.0, 2.0]), "excl/rank": np.array([1.0, 30.0, 5.0, 2.0])}
    out = slice_metrics(per, np.array([True, False, False, True]))
    assert out["mentioned"] == {"recall@10": 1.0, "mrr@10": 0.75, "count": 2.0}
    assert out["new"] == {"recall@10": 0.25, "mrr@10": 0.125, "count": 2.0}
    empty = slice_metrics(per, np.zeros(4, dtype=bool))
    assert empty["mentioned"]["count"] == 0 and math.isnan(empty["mentioned"]["recall@10"])
    assert empty["new"]["recall@10"] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="mentioned"):
        slice_metrics(per, np.array([True, False]))
    with pytest.raises(ValueError, match="bool"):
        slice_metrics(per, np.array([1, 0, 0, 1]))


def test_slice_metrics_on_evaluator_output():
    scores = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    ev = RankingEvaluator(ks_recall=(1,), ks_ndcg=(1,), ks_mrr=(1,))
    ev.update(scores, torch.tensor([0, 2]))
    out = slice_metrics(ev.per_sample(), gold_was_mentioned([_s(1, [1]), _s(2, [])]))
    assert out["mentioned"]["recall@1"] == 1.0 and out["new"]["recall@1"] == 0.0
    assert set(out["new"]) == {"recall@1", "ndcg@1", "mrr@1", "count"}


def test_top1_agreement_with_ties_counted_fractionally():
    ref = torch.tensor([[0.0, 5.0, 1.0, 2.0]]).expand(4, -1)  # reference top-1: item 1
    scores = torch.tensor([[0.0, 9.0, 1.0, 2.0],    # same top-1 -> 1
                           [9.0, 1.0, 1.0, 2.0],    # different -> 0
                           [0.0, 0.0, 0.0, 0.0],    # all tied: 1 of 4 -> 0.25
                           [0.0, 3.0, 3.0, 1.0]])   # item 1 tied with item 2 at the top -> 0.5
    assert top1_agreement(scores, ref) == pytest.approx((1 + 0 + 0.25 + 0.5) / 4)
    assert top1_agreement(ref, ref) == 1.0
    with pytest.raises(ValueError, match="shape"):
        top1_agreement(scores, ref[:2])
