"""GroupedRGCNConv computes RGCNConv's function (same parameters, outputs and gradients)."""
import pytest
import torch
from torch_geometric.nn import RGCNConv

from mscrs_core.graphs.rgcn import GroupedRGCNConv


def _graph(n=40, e=300, r=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    et = torch.randint(0, r - 1, (e,), generator=g)  # relation r-1 has no edge; some nodes have none
    ei[:, :5] = torch.tensor([[1, 2, 3, 1, 1], [0, 0, 0, 0, 0]])  # duplicates and a hub: means over several
    return ei, et


@pytest.mark.parametrize("num_bases", [None, 3])
@pytest.mark.parametrize("root_weight", [True, False])
def test_matches_rgcnconv_outputs_and_gradients(num_bases, root_weight):
    ei, et = _graph()
    torch.manual_seed(0)
    ref = RGCNConv(8, 5, num_relations=7, num_bases=num_bases, root_weight=root_weight)
    new = GroupedRGCNConv(8, 5, num_relations=7, num_bases=num_bases, root_weight=root_weight)
    new.load_state_dict(ref.state_dict())
    x1 = torch.randn(40, 8, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    a, b = ref(x1, ei, et), new(x2, ei, et)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-5)
    for (n, p), (_, q) in zip(ref.named_parameters(), new.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=n)


def test_same_initialisation_and_state_dict_keys():
    torch.manual_seed(1)
    ref = RGCNConv(6, 6, num_relations=4, num_bases=2)
    torch.manual_seed(1)
    new = GroupedRGCNConv(6, 6, num_relations=4, num_bases=2)
    assert ref.state_dict().keys() == new.state_dict().keys()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(new.state_dict()[k], v)


def test_grouping_follows_a_changed_graph_and_rejects_bad_types():
    ei, et = _graph()
    conv = GroupedRGCNConv(4, 4, num_relations=7)
    ref = RGCNConv(4, 4, num_relations=7)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(40, 4)
    conv(x, ei, et)
    ei2, et2 = _graph(seed=3)
    torch.testing.assert_close(conv(x, ei2, et2), ref(x, ei2, et2), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="edge_type"):
        conv(x, ei2, torch.full_like(et2, 9))
