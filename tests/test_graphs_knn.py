"""Eq. (9)-(10): cosine kNN graphs: ties, negatives, k >= N-1, masks, zero norms, self-loops, blocks."""
import pytest
import torch

from mscrs_core.graphs.knn import build_knn_graph

# cos: 0-1 = 1-2 = 0.7071 (a tie for item 1), 0-2 = 0, 0-3 = -1, 1-3 = -0.7071, 2-3 = 0
X = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])


def _set(g):
    return set(map(tuple, g.edge_index.T.tolist()))


def test_top1_directed_tie_lower_index_and_negatives_dropped():
    g = build_knn_graph(X, 1, symmetric=False)
    assert _set(g) == {(0, 1), (1, 0), (2, 1)}  # item 1: tie 0 vs 2 -> 0; item 3: only <= 0
    assert torch.allclose(g.edge_weight, torch.full((3,), 2**-0.5))


def test_symmetric_union():
    g = build_knn_graph(X, 1)
    assert _set(g) == {(0, 1), (1, 0), (1, 2), (2, 1)}


def test_k_at_least_n_minus_1_keeps_all_positive_pairs():
    for k in (3, 10):
        assert _set(build_knn_graph(X, k, symmetric=False)) == {(0, 1), (1, 0), (1, 2), (2, 1)}


def test_self_loops_parameter():
    g = build_knn_graph(X, 1, self_loops=True)
    assert {(i, i) for i in range(4)} <= _set(g)
    w = dict(zip(map(tuple, g.edge_index.T.tolist()), g.edge_weight.tolist()))
    assert w[(3, 3)] == 1.0
    assert not any(a == b for a, b in _set(build_knn_graph(X, 3)))


def test_mask_and_zero_norm_items_get_no_edges_and_are_reported():
    x = torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.0, 0.0], [1.0, 0.2], [0.9, 0.1]])
    mask = torch.tensor([True, False, True, True, True])
    g = build_knn_graph(x, 2, mask=mask)
    assert g.missing == [1] and g.zero_norm == [2]
    assert g.valid_mask.tolist() == [True, False, False, True, True]
    assert not (torch.isin(g.edge_index, torch.tensor([1, 2]))).any()
    assert _set(g) == {(a, b) for a in (0, 3, 4) for b in (0, 3, 4) if a != b}


@pytest.mark.parametrize("block", [3, 7, 1000])
def test_matches_brute_force_stable_sort_with_ties(block):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(25, 6, generator=gen)
    x = torch.cat([base, base[:10], base[:5] * 3.0])  # duplicates and scaled copies -> many ties
    k = 4
    g = build_knn_graph(x, k, symmetric=False, block_size=block)
    x64 = x.double() / x.double().norm(dim=1, keepdim=True)
    s = torch.round(x64 @ x64.T, decimals=9)  # the documented tie rule
    s.fill_diagonal_(float("-inf"))
    v, i = torch.sort(s, dim=1, descending=True, stable=True)
    expected = {(r, int(i[r, j])) for r in range(x.shape[0]) for j in range(k) if v[r, j] > 0}
    assert _set(g) == expected


def test_directed_edge_count_for_positive_features():
    x = torch.rand(50, 8) + 0.1  # all cosines > 0
    g = build_knn_graph(x, 5, symmetric=False, block_size=16)
    assert g.num_edges == 250
    assert torch.bincount(g.edge_index[0], minlength=50).eq(5).all()


def test_bad_input():
    with pytest.raises(ValueError, match="k must"):
        build_knn_graph(X, 0)
    with pytest.raises(ValueError, match="mask"):
        build_knn_graph(X, 1, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        build_knn_graph(torch.tensor([[float("nan"), 1.0], [1.0, 1.0]]), 1)
