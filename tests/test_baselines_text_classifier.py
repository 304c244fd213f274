"""Text classifier ("BERT" row): newest context tokens kept, popularity-initialised bias, selection on valid."""
import pytest
import torch

from mscrs_core.baselines import TextClassifierConfig, cached_contexts, newest_tokens_text, train_text_classifier
from mscrs_core.baselines.text_classifier import CONTEXT_CACHE_NAME, context_texts, log_popularity
from mscrs_core.data.samples import Sample

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "user", "system", ":", "a", "cat", "dog", "sat", "on",
         "the", "mat", "tax", "law", "##s"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 1-layer BERT and its (slow) word-piece tokenizer saved to a folder."""
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert_tc")
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(folder)
    return folder


def _s(turns, target, mentioned=()):
    return Sample("d", len(turns), tuple(turns), (), "", target, tuple(mentioned))


def test_newest_tokens_kept_with_real_minilm_tokenizer():
    from transformers import AutoTokenizer

    from mscrs_core.features import default_text_encoder_path

    tok = AutoTokenizer.from_pretrained(str(default_text_encoder_path()))
    text = "User: " + "an old remark about westerns. " * 50 + "System: Then try Tenet, a well-made film."
    out = newest_tokens_text(text, tok, 12)
    assert out.endswith("Then try Tenet, a well-made film.") and text.endswith(out)  # original characters
    assert len(tok(out, add_special_tokens=False)["input_ids"]) <= 12
    assert newest_tokens_text("short text", tok, 12) == "short text"
    with pytest.raises(ValueError, match="budget"):
        newest_tokens_text(text, tok, 0)


def test_newest_tokens_slow_tokenizer_starts_at_a_word(tiny_bert):
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(tiny_bert)
    out = newest_tokens_text("the cat sat on the mats", tok, 2)  # tokens: ... the mat ##s
    assert out == "mats"  # never starts inside a word
    assert len(tok(out, add_special_tokens=False)["input_ids"]) <= 2


def test_context_texts_keep_the_last_turn(tiny_bert):
    from mscrs_core.features import TextEncoder

    enc = TextEncoder(tiny_bert, max_length=10)
    turns = [("seeker", "the cat sat on the mat " * 20), ("recommender", "tax law")]
    (text,) = context_texts([_s(turns, 1)], enc, max_length=10)
    assert text.endswith("System: tax law")
    assert len(enc.tokenizer(text)["input_ids"]) <= 10  # with [CLS] and [SEP]


def test_train_signature_prior_and_selection(tiny_bert, tmp_path):
    items = [1, 2, 3]
    train = [_s([("seeker", "a cat")], 1), _s([("seeker", "a dog")], 2), _s([("seeker", "the cat")], 1),
             _s([("seeker", "tax law")], 3), _s([("seeker", "a cat sat")], 1)]
    valid = [_s([("seeker", "cat")], 1), _s([("seeker", "dog")], 2)]
    test = [_s([("seeker", "law")], 3)]
    cfg = TextClassifierConfig(encoder=str(tiny_bert), max_length=16, epochs=3, lr_grid=(1e-3, 1e-2), batch_size=2)
    vs, ts, hist = train_text_classifier(train, valid, test, items, cfg, tmp_path)
    assert vs.shape == (2, 3) and ts.shape == (1, 3)
    assert (tmp_path / CONTEXT_CACHE_NAME).is_file() and CONTEXT_CACHE_NAME != "contexts-text.safetensors"
    assert len(hist) == 6 and sum(bool(h.get("selected")) for h in hist) == 1
    assert {h["lr"] for h in hist} == {1e-3, 1e-2}
    torch.testing.assert_close(log_popularity(train, items).exp().sum(), torch.tensor(1.0))
    assert log_popularity(train, items).argmax() == 0  # item 1 is the most frequent target
    # zero training epochs is refused; contexts are cached per sample order
    with pytest.raises(ValueError, match="epochs"):
        train_text_classifier(train, valid, test, items, TextClassifierConfig(encoder=str(tiny_bert), epochs=0),
                              tmp_path)
    x = cached_contexts(valid, cfg, tmp_path / "other")
    assert x.shape == (2, 8)


def test_bias_starts_at_log_popularity(tiny_bert, tmp_path, monkeypatch):
    """With a zero learning rate the scores are the initial layer: bias = log popularity, tiny weights."""
    items = [1, 2, 3]
    train = [_s([("seeker", "a cat")], 1)] * 3 + [_s([("seeker", "a dog")], 2)]
    valid = [_s([("seeker", "cat")], 1)]
    cfg = TextClassifierConfig(encoder=str(tiny_bert), max_length=16, epochs=1, lr_grid=(0.0,), init_std=0.0)
    vs, _, _ = train_text_classifier(train, valid, valid, items, cfg, tmp_path)
    torch.testing.assert_close(vs[0], torch.log(torch.tensor([4.0, 2.0, 1.0]) / 7.0))
