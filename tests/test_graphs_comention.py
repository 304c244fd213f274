"""Eq. (6): co-mention counts over training dialogs, thresholds, symmetry, sparsity."""
import time

import numpy as np
import pytest
import torch

from mscrs_core.data.schema import CRSDataset, Dialog, KnowledgeGraph, Turn
from mscrs_core.graphs.comention import (
    build_comention_graph,
    comention_counts,
    comention_graph_from_dataset,
)

# pair counts: (1, 2) in three dialogs, (0, 1) and (0, 2) in one; dialog 3 repeats entity 1
DIALOGS = [[0, 1, 2], [1, 2], [2, 1, 1], [3]]


def _edges(g):
    return {(a, b): w for (a, b), w in zip(g.edge_index.T.tolist(), g.edge_weight.tolist())}


def test_counts_each_pair_once_per_dialog():
    c, n = comention_counts(DIALOGS, 5)
    assert n == 4
    assert c[1, 2] == c[2, 1] == 3 and c[0, 1] == 1 and c[0, 2] == 1
    assert c.diagonal().sum() == 0 and c.nnz == 6


@pytest.mark.parametrize("threshold,pairs", [(0, {(0, 1): 1, (0, 2): 1, (1, 2): 3}), (1, {(1, 2): 3}), (3, {})])
def test_threshold_is_strict_and_graph_symmetric(threshold, pairs):
    g = build_comention_graph(DIALOGS, 5, threshold=threshold)
    expected = {**pairs, **{(b, a): w for (a, b), w in pairs.items()}}
    assert _edges(g) == expected
    assert g.num_pairs == 3 and g.num_dialogs == 4
    assert not (g.edge_index[0] == g.edge_index[1]).any()


def test_unweighted_option():
    g = build_comention_graph(DIALOGS, 5, threshold=0, weighted=False)
    assert set(g.edge_weight.tolist()) == {1.0} and g.num_edges == 6


def test_bad_input():
    with pytest.raises(ValueError, match="entity ids"):
        build_comention_graph([[0, 5]], 5)
    with pytest.raises(ValueError, match="threshold"):
        build_comention_graph(DIALOGS, 5, threshold=-1)


def test_sparse_for_huge_vocabulary():
    rng = np.random.default_rng(0)
    dialogs = [rng.choice(2_000_000, 10, replace=False) for _ in range(2000)]
    t = time.perf_counter()
    g = build_comention_graph(dialogs, 2_000_000, threshold=0)  # a dense K x K would need 32 TB
    assert time.perf_counter() - t < 10
    assert g.num_edges == 2 * g.num_pairs and g.num_pairs <= 2000 * 45


def test_from_dataset_uses_train_only():
    kg = KnowledgeGraph(6, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    train = [
        Dialog("a", [Turn("seeker", "x", entities=(0,), items=(4,)), Turn("recommender", "y", items=(5,))]),
        Dialog("b", [Turn("seeker", "x", entities=(0,), items=(4,))]),
    ]
    test = [Dialog("c", [Turn("seeker", "x", entities=(1, 2), items=(4,))] * 3)]
    ds = CRSDataset("toy", {"train": train, "valid": [], "test": test}, {}, [4, 5], kg)
    g = comention_graph_from_dataset(ds, threshold=1)
    assert _edges(g) == {(0, 4): 2.0, (4, 0): 2.0}
    assert comention_graph_from_dataset(ds, threshold=0).num_pairs == 3  # (0,4), (0,5), (4,5)
    assert g.edge_index.dtype == torch.long
