"""Eq. (14)-(16): SemanticGraphEncoder composition, switches, lambda, masks, variants, neighbours, gradients."""
import numpy as np
import pytest
import torch

from mscrs_core.data.schema import KnowledgeGraph
from mscrs_core.graphs import GraphConfig, SemanticGraphEncoder, build_comention_graph, build_kg_edges

K = 8
ITEMS = torch.tensor([2, 3, 4, 5])  # item index i <-> entity ITEMS[i]
KG = build_kg_edges(
    KnowledgeGraph(K, np.array([0, 1, 2, 6]), np.array([0, 1, 0, 1]), np.array([2, 3, 4, 7]))
)
COLLAB = build_comention_graph([[0, 2, 3], [0, 2, 3], [1, 5]], K, threshold=0)  # entity 4, 6, 7: isolated
TEXT = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # items 0-1-2 path; item 3 isolated
IMAGE = torch.tensor([[0, 3, 1, 2], [3, 0, 2, 1]])
NO_IMAGE_ITEM1 = torch.tensor([True, False, True, True])


def _enc(**cfg):
    graphs = {k: cfg.pop(k) for k in ("collab", "text", "image", "image_mask") if k in cfg}
    graphs = {"collab": COLLAB, "text": TEXT, "image": IMAGE, **graphs}
    torch.manual_seed(0)  # same entity table and R-GCN weights in every encoder
    return SemanticGraphEncoder(K, KG, ITEMS, GraphConfig(dim=4, num_bases=2, **cfg), **graphs)


def test_paper_composition_eq15_eq16():
    enc = _enc()
    out = enc()
    n1 = enc.kg_encoder()
    e_alpha = (enc.collab(n1) + n1) / 2
    x0 = n1[ITEMS]
    expected = e_alpha.clone()
    expected[ITEMS] += 0.5 * enc.text(x0) + 0.5 * enc.image(x0)
    assert torch.allclose(out, expected)
    # entity 6: no collab edge, not an item -> (N1/4 + N1)/2 = 5/8 N1 (L = 3)
    assert torch.allclose(out[6], 0.625 * n1[6])
    assert enc.describe()["modalities"] == ["text", "image"]


def test_collab_off_gives_n1_on_non_items():
    enc = _enc(use_collab=False)
    out, n1 = enc(), enc.kg_encoder()
    assert torch.allclose(out[[0, 1, 6, 7]], n1[[0, 1, 6, 7]])
    assert "collab" not in enc.active_graphs


def test_modalities_off_only_change_item_rows():
    full, plain = _enc()(), _enc(use_text=False, use_image=False)()
    non_items = [0, 1, 6, 7]
    assert torch.allclose(full[non_items], plain[non_items])
    assert not torch.allclose(full[ITEMS], plain[ITEMS])
    assert _enc(use_text=False, use_image=False).describe()["modalities"] == []


def test_lambda_one_equals_text_only_and_zero_equals_image_only():
    assert torch.allclose(_enc(lambda_=1.0)(), _enc(use_image=False)())
    assert torch.allclose(_enc(lambda_=0.0)(), _enc(use_text=False)())
    assert not torch.allclose(_enc(lambda_=0.3)(), _enc(use_image=False)())


def test_item_without_image_takes_text_term_only():
    masked = _enc(image_mask=NO_IMAGE_ITEM1)()
    text_only = _enc(use_image=False)()
    assert torch.allclose(masked[3], text_only[3])  # entity 3 = item 1 (no image)
    assert not torch.allclose(masked[2], text_only[2])
    assert _enc(image_mask=NO_IMAGE_ITEM1).describe()["items_with_image"] == 3


def test_switch_on_without_graph_raises():
    with pytest.raises(ValueError, match="image"):
        _enc(image=None)


def test_authors_code_inspired_differs_and_matches_its_recipe():
    enc = _enc(variant="authors_code")
    out = enc()
    n1 = enc.kg_encoder()
    assert torch.allclose(n1, enc.kg_encoder.rgcn(enc.kg_encoder.node_embeds, KG.edge_index, KG.edge_type)
                          + enc.kg_encoder.node_embeds)
    assert enc.text.average_layers == (1, 2) and enc.collab.average_layers == (0, 1, 2, 3)
    expected = enc.collab(n1).clone()  # no extra pooling with N1
    expected[ITEMS] += 0.5 * enc.text(n1[ITEMS]) + 0.5 * enc.image(n1[ITEMS])
    assert torch.allclose(out, expected)
    assert not torch.allclose(out, _enc()())


def test_authors_code_redial_ignores_modalities_and_propagates_raw_table():
    enc = _enc(variant="authors_code", authors_dataset="redial")
    other = _enc(variant="authors_code", authors_dataset="redial", text=IMAGE, image=TEXT)
    assert torch.allclose(enc(), other())
    assert enc.describe()["modalities"] == [] and enc.describe()["notes"]
    n1, raw = enc.kg_encoder(), enc.kg_encoder.node_embeds
    layers = enc.collab.layers(raw)
    assert torch.allclose(enc(), (n1 + layers[1] + layers[2] + layers[3]) / 4)


def test_gradients_reach_entity_table_and_rgcn():
    enc = _enc()
    enc().pow(2).sum().backward()
    assert enc.kg_encoder.node_embeds.grad.abs().sum() > 0
    assert enc.kg_encoder.rgcn.comp.grad is not None


def test_buffers_move_with_module():
    enc = _enc().to(torch.float64)
    assert enc().dtype == torch.float64
    names = {n for n, _ in enc.named_buffers()}
    assert {"item_ids", "kg_encoder.edge_index", "collab.edge_index", "text.edge_norm"} <= names


def test_neighbours_in_entity_space():
    enc = _enc()
    nb = enc.neighbours([0, 3])
    assert set(nb) == {"kg", "collab", "text", "image"}
    assert nb["kg"] == {1, 2}  # 0 -> 2 (rel 0); 3 <- 1 (rel 1, reverse edge)
    assert nb["collab"] == {0, 2, 3}  # 0 ~ 2, 3 ; 3 ~ 0, 2
    assert nb["text"] == {2, 4}  # entity 3 = item 1 ~ items 0, 2 = entities 2, 4
    assert nb["image"] == {4}  # item 1 ~ item 2
    assert set(_enc(use_text=False).neighbours([3])) == {"kg", "collab", "image"}


def test_no_grad_table_is_reused_until_a_parameter_changes():
    enc = _enc()
    with torch.no_grad():
        first = enc()
        assert enc() is first  # evaluation batches share one E_final
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    enc().pow(2).sum().backward()
    opt.step()  # in-place update: the cached table is stale now
    with torch.no_grad():
        after = enc()
        assert after is not first and not torch.allclose(after, first)
        assert torch.equal(after, enc._compute())
        enc.load_state_dict(_enc().state_dict())
        assert torch.equal(enc(), first)
    assert enc().requires_grad  # with autograd: always a fresh graph
