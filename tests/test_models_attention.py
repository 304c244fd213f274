"""The grouped eager attention (models/attention.py) computes Hugging Face's eager attention without copying the
key/value heads: same outputs, gradients and greedy tokens; switched on only for grouped-query Llama-family models."""
from __future__ import annotations

import pytest
import torch

from mscrs_core.models.attention import (GROUPED_EAGER, grouped_eager_attention, has_grouped_heads,
                                         use_grouped_eager)


def llama(kv_heads: int = 2, attn: str = "eager"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=6,
                      num_key_value_heads=kv_heads, max_position_embeddings=128, attn_implementation=attn,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def padded_batch():
    torch.manual_seed(3)
    ids = torch.randint(3, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as the project's collators write it
    mask[2, :2] = 0
    return ids, mask


def test_switches_grouped_query_llama_only():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = llama()
    assert has_grouped_heads(m) and use_grouped_eager(m)
    assert m.config._attn_implementation == GROUPED_EAGER
    assert not use_grouped_eager(llama(kv_heads=6))  # one key/value head per query head: nothing to share
    assert not use_grouped_eager(llama(attn="sdpa"))  # another implementation asked for: left alone
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=1, n_head=2))
    gpt2.config._attn_implementation = "eager"
    assert not use_grouped_eager(gpt2) and gpt2.config._attn_implementation == "eager"


def test_forward_and_gradients_equal_eager():
    ids, mask = padded_batch()
    ref, grouped = llama(), llama()
    use_grouped_eager(grouped)
    outs, grads = [], []
    for m in (ref, grouped):
        emb = m.get_input_embeddings()(ids).detach().requires_grad_(True)
        logits = m(inputs_embeds=emb, attention_mask=mask).logits
        (logits * mask.unsqueeze(-1)).square().mean().backward()
        outs.append(logits.detach())
        grads.append(emb.grad)
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert (grads[1] != 0).any()


def test_cached_decoding_and_greedy_tokens_equal_eager():
    ids, mask = padded_batch()
    ref, grouped = llama(), llama()
    use_grouped_eager(grouped)
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        a = ref.generate(input_ids=ids, attention_mask=mask, **kw)
        b = grouped.generate(input_ids=ids, attention_mask=mask, **kw)
        # one step after a cached prefix: the one-query-position product of decoding
        pre_a = ref(input_ids=ids, attention_mask=mask, use_cache=True)
        pre_b = grouped(input_ids=ids, attention_mask=mask, use_cache=True)
        nxt = torch.full((3, 1), 7)
        step_mask = torch.cat([mask, torch.ones(3, 1, dtype=mask.dtype)], 1)
        la = ref(input_ids=nxt, attention_mask=step_mask, cache=pre_a.past_key_values).logits
        lb = grouped(input_ids=nxt, attention_mask=step_mask, cache=pre_b.past_key_values).logits
    assert torch.equal(a, b)
    assert torch.allclose(la, lb, atol=1e-5)


def test_function_matches_repeated_heads_with_additive_and_boolean_masks():
    from transformers.models.llama.modeling_llama import eager_attention_forward

    torch.manual_seed(5)
    module = torch.nn.Module()
    module.num_key_value_groups = 3
    module.eval()
    q, k, v = torch.randn(2, 6, 4, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    allowed = torch.rand(2, 1, 4, 7) > 0.3
    allowed[..., 0] = True  # every query sees at least one key
    additive = torch.zeros(2, 1, 4, 7).masked_fill(~allowed, torch.finfo(torch.float32).min)
    ref_out, ref_w = eager_attention_forward(module, q, k, v, additive, scaling=0.3)
    for mask in (additive, allowed):
        out, w = grouped_eager_attention(module, q, k, v, mask, scaling=0.3)
        assert out.shape == ref_out.shape == (2, 4, 6, 8)
        assert torch.allclose(out, ref_out, atol=1e-6) and torch.allclose(w, ref_w, atol=1e-6)


def test_rejects_what_it_does_not_compute():
    module = torch.nn.Module()
    q, kv = torch.randn(1, 4, 2, 8), torch.randn(1, 3, 5, 8)
    with pytest.raises(ValueError, match="not a multiple"):
        grouped_eager_attention(module, q, kv, kv, None)
    with pytest.raises(ValueError, match="soft-capped"):
        grouped_eager_attention(module, torch.randn(1, 6, 2, 8), kv, kv, None, softcap=30.0)


def test_checkpoint_records_eager():
    from mscrs_core.models.pretrained import backbone_record

    m = llama()
    use_grouped_eager(m)
    assert backbone_record(m, "somewhere", None, None)["attn_implementation"] == "eager"
