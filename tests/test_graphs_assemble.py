"""From a dataset to every graph: descriptions, cached text features, kNN/co-mention/KG, the encoder."""
import torch

from mscrs_core.data.synthetic import make_synthetic
from mscrs_core.graphs.assemble import GraphSettings, build_dataset_graphs, item_descriptions, knn_neighbours
from mscrs_core.graphs.fusion import GraphConfig


def test_synthetic_build(tmp_path):
    ds = make_synthetic(seed=0)
    desc = item_descriptions(ds)
    assert set(desc) == set(ds.item_ids)
    some = ds.item_ids[0]
    assert "genre0" in desc[some] and "Movie" not in desc[some]  # facts only, no title
    g = build_dataset_graphs(ds, GraphSettings(k=3, cache_dir=str(tmp_path)))
    assert g.text_features.shape == (ds.num_items, 384) and bool(g.text_mask.all())
    assert list(tmp_path.glob("synthetic-text-*.safetensors"))
    # items of one cluster share genre and cast: their text neighbours are in the same cluster
    cl = ds.report["cluster_of"]
    ei = g.text_knn.edge_index
    same = [cl[ds.item_ids[int(i)]] == cl[ds.item_ids[int(j)]] for i, j in ei.T]
    assert sum(same) / len(same) > 0.9
    # co-mention graph from training dialogs only, threshold 1
    assert g.collab.threshold == 1 and g.collab.num_dialogs == len(ds.dialogs("train"))
    # no image folder: no image graph, and the encoder says so
    assert g.image_knn is None and any("no image" in n for n in g.notes)
    enc = g.encoder(GraphConfig(dim=16))
    assert enc.describe()["active_graphs"] == ["kg", "collab", "text"]
    assert enc().shape == (ds.num_entities, 16)
    # a k sweep re-uses the features
    g5 = g.with_k(5)
    assert g5.settings.k == 5 and g5.text_knn.num_edges > g.text_knn.num_edges
    assert torch.equal(g5.text_features, g.text_features)
    nb = knn_neighbours(g, some, top=2)
    assert len(nb) == 2 and all(isinstance(s, float) for _, s in nb)


def test_feature_cache_is_reused(tmp_path, monkeypatch):
    ds = make_synthetic(seed=0)
    build_dataset_graphs(ds, GraphSettings(k=3, cache_dir=str(tmp_path)))
    from mscrs_core.features import TextEncoder

    def boom(self, texts):
        raise AssertionError("the cached features must be reused")

    monkeypatch.setattr(TextEncoder, "encode", boom)
    build_dataset_graphs(ds, GraphSettings(k=4, cache_dir=str(tmp_path)))
