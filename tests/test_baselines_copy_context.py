"""Copy-the-context reference row: mentioned items first (most recent first), then popularity."""
import pytest
import torch

from mscrs_core.baselines import copy_context_scores
from mscrs_core.data.samples import Sample
from mscrs_core.evaluation import RankingEvaluator


def _s(mentioned, target=10):
    return Sample("d", 3, (("seeker", "hi"),), tuple(mentioned), "", target, tuple(mentioned))


ITEMS = [10, 11, 12, 13, 14]
POP = torch.tensor([5.0, 0.0, 2.0, 7.0, 2.0])


def test_order_copied_recent_first_then_popularity():
    s = copy_context_scores([_s([12, 99, 10]), _s([])], ITEMS, POP)  # 99 is not an item: ignored
    assert s.shape == (2, 5)
    order = torch.argsort(s[0], descending=True).tolist()
    assert order[:2] == [0, 2]  # item 10 (first mentioned last) above item 12
    assert order[2] == 3  # then the most popular remaining item
    # strict: copied items distinct and strictly above every other item
    assert s[0, 0] > s[0, 2] > s[0, [1, 3, 4]].max()
    # no mention: pure popularity order (ties stay ties)
    assert torch.argsort(s[1], descending=True)[:2].tolist() == [3, 0]
    assert s[1, 2] == s[1, 4]


def test_rank_of_copied_gold_is_exact():
    ev = RankingEvaluator(ks_recall=(1, 2), ks_ndcg=(2,), ks_mrr=(2,))
    ev.update(copy_context_scores([_s([12, 10]), _s([12, 10])], ITEMS, POP), torch.tensor([0, 2]))
    assert ev.per_sample()["rank"].tolist() == [1.0, 2.0]


def test_bad_popularity():
    with pytest.raises(ValueError, match="popularity"):
        copy_context_scores([_s([])], ITEMS, torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        copy_context_scores([_s([])], ITEMS, -torch.ones(5))
