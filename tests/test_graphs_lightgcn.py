"""Eq. (7)-(8), (11)-(13): symmetric normalisation, propagation, layer averaging, authors' variant."""
import math

import pytest
import torch

from mscrs_core.graphs.lightgcn import LightGCN, make_lightgcn, normalize_adjacency

PATH = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # undirected path 0 - 1 - 2
E0 = torch.tensor([[1.0], [0.0], [0.0]])
R2 = 2**-0.5


def _weights(ei, w):
    return {tuple(e): round(float(x), 6) for e, x in zip(ei.T.tolist(), w)}


def test_normalisation_values():
    ei, w = normalize_adjacency(PATH, 3)
    assert _weights(ei, w) == {k: round(R2, 6) for k in [(0, 1), (1, 0), (1, 2), (2, 1)]}
    # weighted (co-mention counts): deg 0 = 3, deg 1 = 3 + 1, deg 2 = 1
    ei, w = normalize_adjacency(PATH, 3, torch.tensor([3.0, 3.0, 1.0, 1.0]))
    got = _weights(ei, w)
    assert got[(0, 1)] == round(3 / math.sqrt(3 * 4), 6) and got[(1, 2)] == round(1 / math.sqrt(4 * 1), 6)
    # self-loops (authors' code): degrees 2, 3, 2
    ei, w = normalize_adjacency(PATH, 3, add_self_loops=True)
    got = _weights(ei, w)
    assert got[(0, 0)] == 0.5 and got[(1, 1)] == round(1 / 3, 6) and got[(0, 1)] == round(1 / math.sqrt(6), 6)


def test_paper_propagation_and_average_over_layers_0_to_3():
    g = LightGCN(PATH, 3, num_layers=3)
    layers = g.layers(E0)
    # E1 = (0, .7071, 0), E2 = (.5, 0, .5), E3 = (0, .7071, 0)
    assert torch.allclose(layers[2].squeeze(), torch.tensor([0.5, 0.0, 0.5]))
    out = g(E0).squeeze()
    assert torch.allclose(out, torch.tensor([1.5 / 4, 2 * R2 / 4, 0.5 / 4]))


def test_authors_modal_variant_self_loops_and_layers_1_2():
    g = make_lightgcn("modal", "authors_code", PATH, 3, num_layers=3)
    assert g.average_layers == (1, 2)
    s6 = 1 / math.sqrt(6)
    e1 = torch.tensor([0.5, s6, 0.0])
    e2 = torch.tensor([0.25 + s6 * s6, s6 * 0.5 + s6 / 3, s6 * s6])
    assert torch.allclose(g(E0).squeeze(), (e1 + e2) / 2)


def test_authors_collab_variant_ignores_weights_and_averages_0_to_3():
    g = make_lightgcn("collab", "authors_code", PATH, 3, 3, edge_weight=torch.tensor([9.0, 9.0, 1.0, 1.0]))
    ref = LightGCN(PATH, 3, 3, add_self_loops=True)
    assert g.average_layers == (0, 1, 2, 3)
    assert torch.allclose(g(E0), ref(E0))


def test_isolated_node_keeps_e0_over_l_plus_1():
    g = LightGCN(PATH, 4, num_layers=3)
    x = torch.ones(4, 2)
    assert torch.allclose(g(x)[3], torch.full((2,), 0.25))


@pytest.mark.parametrize("layers,avg", [(3, None), (2, None), (3, (1, 2))])
def test_propagating_only_nodes_with_edges_equals_the_full_propagation(layers, avg):
    g = torch.Generator().manual_seed(0)
    nodes = torch.randperm(200, generator=g)[:30]  # 30 of 200 nodes carry the edges
    ei = nodes[torch.randint(0, 30, (2, 120), generator=g)]
    lgc = LightGCN(ei, 200, layers, torch.rand(120, generator=g), average_layers=avg)
    assert lgc.active is not None and lgc.active.numel() <= 30
    x = torch.randn(200, 8, generator=g, requires_grad=True)
    fast = lgc(x)
    full = lgc.average(lgc.layers(x))  # every node through every layer
    assert torch.allclose(fast, full, atol=1e-6)
    isolated = torch.ones(200, dtype=torch.bool)
    isolated[lgc.active] = False
    assert torch.equal(fast[isolated], full[isolated])  # E^(0)/(L+1) (or 0), bit for bit
    (gx_fast,) = torch.autograd.grad((fast * fast).sum(), x)
    (gx_full,) = torch.autograd.grad((full * full).sum(), x)
    assert torch.allclose(gx_fast, gx_full, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="average_layers"):
        LightGCN(PATH, 3, 2, average_layers=[3])
    with pytest.raises(ValueError, match="outside"):
        LightGCN(PATH, 2)
    with pytest.raises(ValueError, match="num_layers >= 2"):
        make_lightgcn("modal", "authors_code", PATH, 3, 1)
    with pytest.raises(ValueError, match="rows"):
        LightGCN(PATH, 3)(torch.ones(4, 1))
