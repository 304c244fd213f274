"""ContextTextFeatures: the recommender's T_s input (context_encoder="text_encoder"), from a cached file or live."""
import pytest
import torch

from mscrs_core.data.samples import Sample
from mscrs_core.features import TextEncoder
from mscrs_core.features.context_text import ContextTextFeatures, context_texts

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "user", "system", ":", "a", "cat", "dog", "sat", "on",
         "the", "mat"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert_ctx")
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def _s(dialog, turns):
    return Sample(dialog, len(turns), tuple(turns), (), "", 1, ())


def test_precomputed_and_live_features_are_the_encoder_of_the_newest_tokens(tiny_bert, tmp_path):
    enc = TextEncoder(tiny_bert, max_length=10)
    seen = [_s("a", [("seeker", "the cat sat on the mat " * 3)]), _s("b", [("recommender", "a dog")])]
    live = _s("c", [("seeker", "a cat"), ("recommender", "the dog sat")])
    feats = ContextTextFeatures(enc, max_length=10).precompute(seen, tmp_path / "f.safetensors")
    assert (tmp_path / "f.safetensors").is_file() and feats.dim == 8
    got = feats(seen + [live, seen[0]])
    expected = enc.encode(context_texts(seen + [live, seen[0]], enc, 10))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert live in feats.table  # encoded once, kept
    again = ContextTextFeatures(enc, max_length=10).precompute(seen, tmp_path / "f.safetensors")  # from the file
    torch.testing.assert_close(again(seen), got[:2])
