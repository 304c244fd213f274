"""The untrained graph scorer: cosine of the mean context row against item rows."""
import pytest
import torch
from torch import nn

from mscrs_core.baselines import graph_scores
from mscrs_core.data.samples import Sample


class FixedTable(nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self):
        return self.table


def _sample(ents, target=3):
    return Sample("d", 1, (("seeker", "hi"),), tuple(ents), "", target, ())


def test_scores_are_cosines_of_the_mean_context_row():
    table = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
    s = graph_scores(FixedTable(table), [_sample([0, 1]), _sample([])], item_ids=[3, 4])
    # mean of normalised rows 0 and 1 is (0.5, 0.5): cosine 1 with item 3, -1/sqrt(2) with item 4
    torch.testing.assert_close(s[0], torch.tensor([1.0, -(0.5 ** 0.5)]))
    assert torch.equal(s[1], torch.zeros(2))  # no context entity: all ties


def test_out_of_range_entity_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        graph_scores(FixedTable(torch.eye(3)), [_sample([7])], item_ids=[0])
