"""KBRD-like entity-mean scorer: cosine of the mean context row, learned scale, popularity-initialised bias."""
import math

import pytest
import torch
from torch import nn

from mscrs_core.baselines import EntityMeanConfig, EntityMeanScorer, train_entity_mean
from mscrs_core.data.samples import Sample


class Table(nn.Module):
    """A trainable entity table standing in for the graph encoder (forward() -> E[K, d])."""

    def __init__(self, k=8, d=4, std=0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, d) * std)

    def forward(self):
        return self.weight


def _s(ents, target):
    return Sample("d", 1, (("seeker", "hi"),), tuple(ents), "", target, ())


def test_scores_by_hand():
    table = Table()
    with torch.no_grad():
        table.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 1.0, 0],
                                         [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]))
    prior = torch.tensor([0.1, 0.2, 0.3])
    m = EntityMeanScorer(table, item_ids=[4, 5, 6], dim=4, prior=prior, init_scale=10.0)
    s = m([[0, 1], []])
    # mean of rows 0 and 1 = (0.5, 0.5, 0, 0): cosines 1/sqrt2, 1/sqrt2, 0 with items 4, 5, 6
    c = 1 / math.sqrt(2)
    torch.testing.assert_close(s[0], 10 * torch.tensor([c, c, 0.0]) + prior)
    nv = torch.nn.functional.normalize(m.no_entity.detach(), dim=0)
    torch.testing.assert_close(s[1], 10 * nv[:3] + prior, atol=1e-5, rtol=1e-5)  # the learned no-entity vector
    with pytest.raises(ValueError, match="outside"):
        m([[9]])


def test_training_learns_entity_item_association_and_keeps_best_epoch():
    torch.manual_seed(0)
    items = list(range(4, 19))  # 15 items, so Recall@10 is not trivially 1
    # entity e in {0, 1, 2} in the context -> target item 4 + e; item 7 for samples without entities
    train = [_s([e], 4 + e) for e in range(3) for _ in range(10)] + [_s([], 7)] * 5
    valid = [_s([e], 4 + e) for e in range(3)] + [_s([], 7)]
    test = [_s([2], 6)]
    cfg = EntityMeanConfig(epochs=30, lr=0.05, graph_lr=0.05, batch_size=8)
    vs, ts, hist = train_entity_mean(Table(k=20, std=0.01), train, valid, test, items, cfg)
    assert vs.shape == (4, 15) and ts.shape == (1, 15)
    gold = torch.tensor([0, 1, 2, 3])
    assert ((vs > vs[torch.arange(4), gold][:, None]).sum(1) < 10).all()  # every valid gold in the top 10
    assert ts[0].argsort(descending=True)[:10].tolist().count(2) == 1
    assert hist[0]["epoch"] == -1  # the untrained model is a candidate too
    assert sum(bool(h.get("selected")) for h in hist) == 1
    best = max(h["valid_recall@10"] for h in hist)
    assert best == 1.0 and next(h for h in hist if h.get("selected"))["valid_recall@10"] == best
    with pytest.raises(ValueError, match="epochs"):
        train_entity_mean(Table(), train, valid, test, items, EntityMeanConfig(epochs=0))


def test_bias_starts_at_log_popularity_and_scale_at_init():
    torch.manual_seed(0)
    table = Table()
    train = [_s([0], 4)] * 3 + [_s([1], 5)]
    cfg = EntityMeanConfig(epochs=1, lr=0.0, graph_lr=0.0, init_scale=10.0)
    vs, _, _ = train_entity_mean(table, train, [_s([0, 1], 4)], [_s([0], 4)], [4, 5, 6], cfg)
    bias = torch.log(torch.tensor([4.0, 2.0, 1.0]) / 7.0)
    e = torch.nn.functional.normalize(table.weight.detach(), dim=-1)
    user = torch.nn.functional.normalize(table.weight.detach()[[0, 1]].mean(0), dim=0)
    torch.testing.assert_close(vs[0], 10 * (e[[4, 5, 6]] @ user) + bias, atol=1e-5, rtol=1e-5)
