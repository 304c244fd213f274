"""The authors' released files: id_embeddings_{text,image}.json and edge_index_c.pt, written by the test."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from mscrs_core.data.errors import DataError
from mscrs_core.features import load_collaborative_edges, load_id_embeddings, save_id_embeddings


def _write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_load_id_embeddings_sorted_by_id(tmp_path):
    p = _write(tmp_path / "id_embeddings_text.json", {"12": [1, 2.5, -3], "3": [0.5, 0, 1e-3]})
    ids, feats = load_id_embeddings(p)
    assert ids.dtype == torch.long and ids.tolist() == [3, 12]
    assert feats.dtype == torch.float32
    assert torch.equal(feats, torch.tensor([[0.5, 0.0, 1e-3], [1.0, 2.5, -3.0]]))


def test_round_trip(tmp_path):
    ids = torch.tensor([5, 1])
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    save_id_embeddings(tmp_path / "id_embeddings_image.json", ids, feats)
    got_ids, got = load_id_embeddings(tmp_path / "id_embeddings_image.json")
    assert got_ids.tolist() == [1, 5] and torch.equal(got, torch.tensor([[3.0, 4.0], [1.0, 2.0]]))


@pytest.mark.parametrize("content, match", [
    ({"1": [1.0, 2.0], "2": [1.0]}, r"ragged vectors: id 2 has 1 values, id 1 has 2"),
    ({"movie_1": [1.0]}, r"id 'movie_1' is not an integer entity id"),
    ({"-4": [1.0]}, "negative"),
    ({"1": [1.0, "x"]}, "non-numeric value 'x'"),
    ({"1": [True]}, "non-numeric value True"),
    ({"1": []}, "non-empty list"),
    ({"1": {"a": 1}}, "non-empty list"),
    ({}, "holds no embeddings"),
    ([[1.0]], "expected a JSON object"),
    ('{"1": [1.0], "1": [2.0]}', "duplicate key '1'"),
    ({"7": [1.0], "07": [2.0]}, "same entity id"),
    ('{"1": [NaN]}', "NaN"),
    ('{"1": [1.0,', "malformed JSON"),
])
def test_bad_embedding_files_name_the_file(tmp_path, content, match):
    p = _write(tmp_path / "id_embeddings_text.json", content)
    with pytest.raises(DataError, match=match) as ei:
        load_id_embeddings(p)
    assert "id_embeddings_text.json" in str(ei.value)


def test_missing_embedding_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="id_embeddings_image.json"):
        load_id_embeddings(tmp_path / "id_embeddings_image.json")


def test_load_collaborative_edges(tmp_path):
    p = tmp_path / "edge_index_c.pt"
    torch.save(torch.tensor([[0, 1, 2], [1, 2, 0]]), p)
    e = load_collaborative_edges(p, num_entities=3)
    assert e.dtype == torch.long and e.tolist() == [[0, 1, 2], [1, 2, 0]]
    torch.save(torch.tensor([[0, 1], [1, 0]], dtype=torch.int32), p)
    assert load_collaborative_edges(p).dtype == torch.long  # other integer widths are converted


@pytest.mark.parametrize("obj, match", [
    (torch.zeros(3, 2, dtype=torch.long), r"expected shape \[2, E\], got \[3, 2\]"),
    (torch.zeros(2, dtype=torch.long), r"expected shape \[2, E\], got \[2\]"),
    (torch.zeros(2, 4), "integer .* got torch.float32"),
    (torch.zeros(2, 4, dtype=torch.bool), "torch.bool"),
    ([[0, 1], [1, 0]], "expected a \\[2, E\\] LongTensor, got list"),
    (torch.tensor([[0, -1], [1, 0]]), "negative entity id -1"),
    (torch.tensor([[0, 5], [1, 0]]), r"entity id 5 outside 0..2"),
])
def test_bad_edge_files_name_the_file(tmp_path, obj, match):
    p = tmp_path / "edge_index_c.pt"
    torch.save(obj, p)
    with pytest.raises(DataError, match=match) as ei:
        load_collaborative_edges(p, num_entities=3)
    assert "edge_index_c.pt" in str(ei.value)


def test_edge_file_needing_pickle_is_refused(tmp_path):
    p = tmp_path / "edge_index_c.pt"
    torch.save({"x": argparse.Namespace(a=1)}, p)  # arbitrary classes need pickle code: weights_only refuses them
    with pytest.raises(DataError, match="weights_only=True"):
        load_collaborative_edges(p)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="junk.pt"):
        load_collaborative_edges(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_collaborative_edges(tmp_path / "missing.pt")
