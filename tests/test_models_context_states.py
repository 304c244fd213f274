"""Context key/value states computed once (the suffix prompt order): equivalence, the bank, its files."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mscrs_core.models.backbone import decoder_of, freeze
from mscrs_core.models.context_states import (ContextStateBank, backbone_fingerprint, bank_file_name, bank_path,
                                              encode_context, run_after_context)


def tiny(kind: str) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "gpt2":
        m = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                       bos_token_id=1, eos_token_id=1))
    else:
        m = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         bos_token_id=1, eos_token_id=1, pad_token_id=0))
    return freeze(m)


def batch():
    torch.manual_seed(1)
    ids = torch.randint(2, 50, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :3] = 0  # left padding, as the collators write it
    mask[1, :1] = 0
    return ids, mask


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_context_equals_one_pass_in_values_and_gradients(kind):
    model = tiny(kind)
    ids, mask = batch()
    prompt = torch.randn(3, 4, 32, requires_grad=True)
    cached = run_after_context(model, encode_context(model, ids, mask), prompt)
    full_mask = torch.cat([mask, torch.ones(3, 4, dtype=torch.long)], 1)
    full = decoder_of(model)(inputs_embeds=torch.cat([model.get_input_embeddings()(ids), prompt], 1),
                             attention_mask=full_mask, position_ids=(full_mask.cumsum(1) - 1).clamp_min(0)
                             ).last_hidden_state[:, 7:]
    assert torch.allclose(cached, full, atol=1e-5)
    g_cached, = torch.autograd.grad(cached.square().sum(), prompt)
    g_full, = torch.autograd.grad(full.square().sum(), prompt)
    assert torch.allclose(g_cached, g_full, atol=1e-5)
    logits = run_after_context(model, encode_context(model, ids, mask), prompt, lm_head=True)
    assert logits.shape == (3, 4, 50)


def test_bank_memoises_by_token_ids_and_ignores_padding_width():
    model = tiny("llama")
    ids, mask = batch()
    bank = ContextStateBank(model, 7, 0, batch_size=2)
    a = bank.lookup(ids, mask)
    assert len(bank) == 3
    # the same contexts, padded to another batch width: same rows, nothing recomputed
    wide_ids = torch.cat([torch.zeros(3, 2, dtype=torch.long), ids], 1)[:, 2:]
    b = bank.lookup(wide_ids, mask)
    assert len(bank) == 3 and torch.equal(a.keys, b.keys) and torch.equal(a.attention_mask, b.attention_mask)
    direct = encode_context(model, ids, mask)
    real = mask.bool()
    for layer in range(direct.keys.shape[0]):  # real positions agree with a direct pass
        assert torch.allclose(a.keys[layer].transpose(1, 2)[real], direct.keys[layer].transpose(1, 2)[real], atol=1e-6)
    with pytest.raises(ValueError, match="exceed the bank width"):
        bank.lookup(torch.ones(1, 9, dtype=torch.long), torch.ones(1, 9, dtype=torch.long))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_bank_encodes_each_chunk_at_its_own_width_with_full_width_states(kind):
    """Rows are encoded shortest first, each chunk as wide as its longest row, then padded back: the states of the
    real positions are a full-width pass's, the positions left of a chunk's width hold zeros under a zero mask, and what the states
    feed (the positions after the context) is unchanged."""
    model = tiny(kind)
    torch.manual_seed(2)
    width = 12
    lengths = [12, 3, 7, 1, 9, 4]
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, width - n:] = torch.randint(2, 50, (n,))
        mask[i, width - n:] = 1
    bank = ContextStateBank(model, width, 0, batch_size=2)  # chunks of two: (1, 3), (4, 7), (9, 12) tokens
    got = bank.lookup(ids, mask)
    direct = encode_context(model, ids, mask)
    real = mask.bool()
    for layer in range(direct.keys.shape[0]):
        for mine, ref in ((got.keys, direct.keys), (got.values, direct.values)):
            m, r = mine[layer].transpose(1, 2), ref[layer].transpose(1, 2)  # [B, T, h, d]
            assert torch.allclose(m[real], r[real], atol=1e-5)
            assert torch.count_nonzero(m[[1, 3], : width - 3]) == 0  # the (1, 3)-token chunk was 3 wide
    assert torch.equal(got.attention_mask, mask)
    prompt = torch.randn(len(lengths), 3, 32)
    assert torch.allclose(run_after_context(model, got, prompt), run_after_context(model, direct, prompt), atol=1e-5)


def test_bank_file_round_trip_memory_mapped(tmp_path):
    model = tiny("gpt2")
    ids, mask = batch()
    bank = ContextStateBank(model, 7, 0)
    before = bank.lookup(ids, mask)
    path = bank.save(tmp_path / "bank.safetensors")
    again = ContextStateBank(model, 7, 0)
    assert again.load(path) and len(again) == 3
    after = again.lookup(ids, mask)
    assert torch.equal(before.keys, after.keys) and torch.equal(before.values, after.values)
    assert torch.equal(before.attention_mask, after.attention_mask)
    # another width or dtype is a different cache: not reused
    assert not ContextStateBank(model, 8, 0).load(path)
    assert not ContextStateBank(model, 7, 0, dtype=torch.bfloat16).load(path)
    # merge shares rows; a damaged file is rebuilt, never trusted
    merged = ContextStateBank(model, 7, 0)
    merged.merge(again)
    assert len(merged) == 3
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.warns(UserWarning, match="recomputing"):
        assert not ContextStateBank(model, 7, 0).load(bad)


def test_bank_file_name_changes_with_each_key():
    a, b = tiny("gpt2"), tiny("llama")
    base = bank_file_name(a, "inspired", "train", 64)
    assert base != bank_file_name(b, "inspired", "train", 64)  # backbone
    assert base != bank_file_name(a, "redial", "train", 64)  # dataset
    assert base != bank_file_name(a, "inspired", "valid", 64)  # split
    assert base != bank_file_name(a, "inspired", "train", 32)  # context length
    assert backbone_fingerprint(a) == backbone_fingerprint(tiny("gpt2"))


def test_a_backbone_with_an_appended_token_row_shares_the_bank_and_its_states():
    """The conversation generator appends the ``<movie>`` row; chapter 7's plain backbone does not. A context
    without that token has the same states under both, so both read one bank file (the run fingerprint, which
    names the whole backbone, still tells them apart)."""
    plain, grown = tiny("llama"), tiny("llama")
    grown.resize_token_embeddings(51, mean_resizing=False)
    assert bank_file_name(plain, "inspired", "test", 64) == bank_file_name(grown, "inspired", "test", 64)
    assert backbone_fingerprint(plain) != backbone_fingerprint(grown)
    ids, mask = batch()
    a, b = encode_context(plain, ids, mask), encode_context(grown, ids, mask)
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    other = tiny("llama")
    with torch.no_grad():
        other.get_input_embeddings().weight[:8] += 1  # other weights: another bank
    assert bank_file_name(other, "inspired", "test", 64) != bank_file_name(plain, "inspired", "test", 64)


def test_a_moved_project_keeps_its_backbone_identity_and_banks(tmp_path):
    # the converted SmolLM2 is loaded from <project>/cache/backbones/<name>: the project's place must not matter
    here, there = tiny("llama"), tiny("llama")
    here.config._name_or_path = "/work/main/cache/backbones/SmolLM2-dense"
    there.config._name_or_path = "/home/me/mscrs/cache/backbones/SmolLM2-dense"
    assert backbone_fingerprint(here) == backbone_fingerprint(there)
    assert backbone_fingerprint(here, legacy=True) != backbone_fingerprint(there, legacy=True)
    other = tiny("llama")
    other.config._name_or_path = "/work/main/cache/backbones/another-model"
    assert backbone_fingerprint(other) != backbone_fingerprint(here)
    hub = tiny("gpt2")
    hub.config._name_or_path = "microsoft/DialoGPT-small"  # a hub id stays what it is
    assert backbone_fingerprint(hub) == backbone_fingerprint(hub, legacy=True)
    # a bank written under the earlier, path-dependent name is renamed, not recomputed
    old = tmp_path / bank_file_name(here, "inspired", "train", 64, legacy=True)
    old.write_bytes(b"states")
    path = bank_path(tmp_path, here, "inspired", "train", 64)
    assert path.name == bank_file_name(here, "inspired", "train", 64) and path.read_bytes() == b"states"
    assert not old.exists()
    assert bank_path(tmp_path, here, "inspired", "valid", 64).exists() is False  # nothing to rename: no file
    # and one written under the name that still held the vocabulary's size
    sized = tmp_path / bank_file_name(here, "inspired", "test", 64, vocabulary=True)
    assert sized.name != bank_file_name(here, "inspired", "test", 64)
    sized.write_bytes(b"test states")
    assert bank_path(tmp_path, here, "inspired", "test", 64).read_bytes() == b"test states" and not sized.exists()


def test_save_streams_new_rows_into_the_file_without_keeping_them(tmp_path):
    model = tiny("llama")
    ids, mask = batch()
    rows = [tuple(i[m.bool()].tolist()) for i, m in zip(ids, mask)]
    bank = ContextStateBank(model, 7, 0, batch_size=2)
    bank.lookup(ids[:1], mask[:1])  # one row in memory, two computed on the way to the file
    path = bank.save(tmp_path / "b.safetensors", compute=rows)
    assert len(bank) == 1  # the streamed rows are not kept
    again = ContextStateBank(model, 7, 0)
    assert again.load(path) and len(again) == 3
    direct = ContextStateBank(model, 7, 0).lookup(ids, mask)
    got = again.lookup(ids, mask)
    assert torch.allclose(got.keys, direct.keys, atol=1e-6) and torch.equal(got.attention_mask, direct.attention_mask)
    with pytest.raises(ValueError, match="empty"):
        ContextStateBank(model, 7, 0).save(tmp_path / "none.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_a_bank_that_cannot_fit_on_its_disk_fails_before_computing_anything(tmp_path, monkeypatch):
    import collections
    import errno
    import shutil

    model = tiny("llama")
    ids, mask = batch()
    rows = [tuple(i[m.bool()].tolist()) for i, m in zip(ids, mask)]
    bank = ContextStateBank(model, 7, 0, batch_size=1)
    computed = []
    original = bank._compute
    monkeypatch.setattr(bank, "_compute", lambda rs: (computed.append(len(rs)), original(rs))[1])
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 << 30, 10 << 30, 1000))
    with pytest.raises(OSError, match=r"b\.safetensors: this context-state bank needs .* GiB free") as err:
        bank.save(tmp_path / "cs" / "b.safetensors", compute=rows)
    assert err.value.errno == errno.ENOSPC
    assert computed == [1]  # the one-row probe of the row shape, nothing more
    assert not list((tmp_path / "cs").iterdir())  # nothing written


def test_bfloat16_bank_round_trip(tmp_path):
    model = tiny("gpt2")
    ids, mask = batch()
    bank = ContextStateBank(model, 7, 0, dtype=torch.bfloat16)
    before = bank.lookup(ids, mask)
    assert before.keys.dtype == torch.bfloat16
    again = ContextStateBank(model, 7, 0, dtype=torch.bfloat16)
    assert again.load(bank.save(tmp_path / "bf16.safetensors"))
    after = again.lookup(ids, mask)
    assert after.keys.dtype == torch.bfloat16 and torch.equal(before.keys, after.keys)


def _backward_nodes(fn) -> list:
    """Every autograd node reachable from ``fn``."""
    seen, todo = {}, [fn]
    while todo:
        f = todo.pop()
        if f is not None and id(f) not in seen:
            seen[id(f)] = f
            todo += [g for g, _ in f.next_functions]
    return list(seen.values())


def test_as_cache_splits_layers_with_one_backward_node_and_the_same_gradients():
    """States that carry a gradient (the layer prompt appended to them): every layer of the cache hangs off ONE
    unbind node, whose backward stacks the layers' gradients once. One ``keys[i]`` per layer would give each layer its
    own select node, whose backward writes a zero tensor of all layers' size (L of them per step, summed): the same
    gradients at L times the memory traffic."""
    from mscrs_core.models.context_states import ContextStates

    torch.manual_seed(4)
    n_layers = 3
    base = torch.randn(n_layers, 2, 2, 5, 4)
    prompt = torch.randn(n_layers, 2, 2, 3, 4, requires_grad=True)
    keys = torch.cat([base, prompt], dim=3)
    states = ContextStates(keys, keys * 2, torch.ones(2, 8, dtype=torch.long))
    cache = states.as_cache()
    layers = cache.layers
    assert len(layers) == n_layers
    nodes = [_backward_nodes(layer.keys.grad_fn) for layer in layers]
    unbind = {id(fn) for found in nodes for fn in found if type(fn).__name__.startswith("UnbindBackward")}
    assert len(unbind) == 1  # one node for all layers
    assert not any(type(fn).__name__.startswith("SelectBackward") for found in nodes for fn in found)
    weights = torch.arange(1.0, n_layers + 1)
    g_cache, = torch.autograd.grad(sum(w * (layer.keys.square().sum() + layer.values.sum())
                                       for w, layer in zip(weights, layers)), prompt)
    g_select, = torch.autograd.grad(sum(w * (keys[i].square().sum() + (keys * 2)[i].sum())
                                        for i, w in enumerate(weights)), prompt)
    assert torch.equal(g_cache, g_select)
    assert all(torch.equal(layer.keys, keys[i]) for i, layer in enumerate(layers))
