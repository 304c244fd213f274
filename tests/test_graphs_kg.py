"""Eq. (1): KG edge building (reverse relations, self-loops, remapping, filtering) and the R-GCN encoder."""
import numpy as np
import pytest
import torch

from mscrs_core.data.schema import KnowledgeGraph
from mscrs_core.graphs.kg import KGEncoder, build_kg_edges


def _kg(triples, k=4, names=None):
    a = np.array(triples, dtype=np.int64).reshape(-1, 3)
    return KnowledgeGraph(num_entities=k, head=a[:, 0], relation=a[:, 1], tail=a[:, 2], relation_names=names)


def _triples(e):
    return {(h, t, r) for (h, t), r in zip(e.edge_index.T.tolist(), e.edge_type.tolist())}


# (head, relation, tail); relation ids are sparse (2, 5, 7), one file self-loop, one duplicate
TRIPLES = [(0, 5, 1), (1, 2, 2), (2, 5, 3), (3, 7, 3), (0, 5, 1)]


def test_reverse_relations_self_loops_and_remap():
    e = build_kg_edges(_kg(TRIPLES))
    assert e.relation_map == {2: 0, 5: 1}  # relation 7 only had the file's self-loop
    assert e.reverse_relation_map == {2: 2, 5: 3}
    assert e.self_loop_relation == 4 and e.num_relations == 5
    expected = {(0, 1, 1), (1, 2, 0), (2, 3, 1), (1, 0, 3), (2, 1, 2), (3, 2, 3)}
    expected |= {(i, i, 4) for i in range(4)}  # one self-loop each, the file's (3, 3) not doubled
    assert _triples(e) == expected
    assert e.num_edges == 10


def test_relation_names_follow_new_ids():
    names = [f"r{i}" for i in range(8)]
    e = build_kg_edges(_kg(TRIPLES, names=names))
    assert e.relation_names == ["r2", "r5", "r2_inv", "r5_inv", "self_loop"]


def test_authors_shared_reverse_relation():
    e = build_kg_edges(_kg(TRIPLES), reverse_relations=False)
    assert e.num_relations == 3 and e.reverse_relation_map == {}
    assert (1, 0, 1) in _triples(e) and (2, 1, 0) in _triples(e)


def test_out_of_range_relation_id_is_remapped_and_accepted_by_rgcn():
    # the authors' ReDial code would declare num_relations=2 and emit id 2; here ids are contiguous
    e = build_kg_edges(_kg([(0, 0, 1), (1, 214, 2)], k=3))
    assert e.relation_map == {0: 0, 214: 1}
    assert int(e.edge_type.max()) == e.num_relations - 1 == 4
    enc = KGEncoder(3, 4, e, num_bases=2)
    assert enc().shape == (3, 4)


def test_min_relation_count_drops_rare_relations():
    e = build_kg_edges(_kg([(0, 1, 1), (1, 1, 2), (2, 9, 3)]), min_relation_count=2)
    assert e.relation_map == {1: 0} and e.dropped_relations == {9: 1}
    assert not any(h in (2, 3) and t in (2, 3) and h != t for h, t, _ in _triples(e))


def test_without_added_self_loops_file_loop_kept_once():
    e = build_kg_edges(_kg(TRIPLES), add_self_loops=False)
    loops = [(h, t, r) for h, t, r in _triples(e) if h == t]
    assert loops == [(3, 3, e.relation_map[7])] and e.self_loop_relation is None


def test_bad_ids_raise():
    with pytest.raises(ValueError, match="head"):
        build_kg_edges(_kg([(7, 0, 1)]))
    with pytest.raises(ValueError, match="negative"):
        build_kg_edges(_kg([(0, -1, 1)]))


def _identity_encoder(variant):
    # relations: 0 (fwd), 1 (inverse), 2 (self-loop); graph 0 -> 1, 2 -> 1
    e = build_kg_edges(_kg([(0, 0, 1), (2, 0, 1)], k=3))
    enc = KGEncoder(3, 2, e, num_bases=None, variant=variant)
    with torch.no_grad():
        enc.rgcn.weight.copy_(torch.stack([torch.eye(2) * s for s in (1.0, 10.0, 100.0)]))
        enc.rgcn.root.zero_()
        enc.rgcn.bias.zero_()
        enc.node_embeds.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0], [5.0, 6.0]]))
    return enc


def test_rgcn_eq1_mean_per_relation_and_activation():
    enc = _identity_encoder("paper")
    out = enc().detach()
    # node 1: mean over fwd neighbours {0, 2} = (3, 2), + 100 * self = (300, 400)
    assert torch.allclose(out[1], torch.tensor([303.0, 402.0]))
    # node 0: inverse neighbour 1 * 10 + 100 * self (100, -200) -> (130, -160) -> relu
    assert torch.allclose(out[0], torch.tensor([130.0, 0.0]))


def test_authors_variant_residual_no_activation():
    enc = _identity_encoder("authors_code")
    out = enc().detach()
    assert torch.allclose(out[0], torch.tensor([131.0, -162.0]))


def test_buffers_and_gradients():
    e = build_kg_edges(_kg(TRIPLES))
    enc = KGEncoder(4, 3, e, num_bases=2)
    names = dict(enc.named_buffers())
    assert set(names) == {"edge_index", "edge_type"}
    enc().sum().backward()
    assert enc.node_embeds.grad is not None and enc.node_embeds.grad.abs().sum() > 0
    enc64 = enc.to(torch.float64)
    assert enc64().dtype == torch.float64 and enc64.edge_index.dtype == torch.long
