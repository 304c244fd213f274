"""The authors' code's prompt injection (``prompt_injection="layers"``, :mod:`mscrs_core.models.layer_prompt`): the
prompt as every layer's keys and values after the cached context. Checked against the input-embedding prompt: when
the layer prompt yields exactly the keys and values the input prompt's positions have, the response positions
must see the same hidden states (positions, rotary embedding, masks); generation follows the training path;
training moves the layer prompt and never the backbone."""
from __future__ import annotations

import pytest
import torch

from mscrs_core.models.backbone import decoder_of
from mscrs_core.models.conversation import ConversationConfig
from mscrs_core.models.generate import GenerationConfig, generate_ids
from mscrs_core.models.layer_prompt import LayerPrompt, kv_shape, rotate_keys

from test_models_conversation_suffix import BACKBONES, build, setup  # noqa: F401  (the fixture)


def _prompt_states(g, batch):
    """Keys (rotated, as cached) and values of the input prompt's positions in one uncached pass, and the hidden
    states of the tail after them."""
    with torch.no_grad():
        embeds, mask, _ = g.suffix_inputs(batch)
        ctx = g.backbone.get_input_embeddings()(batch["context_ids"])
        full = torch.cat([ctx, embeds], 1)
        m = torch.cat([batch["context_mask"].long(), mask.long()], 1)
        pos = (m.cumsum(1) - 1).clamp_min(0)
        out = decoder_of(g.backbone)(inputs_embeds=full, attention_mask=m, position_ids=pos, use_cache=True)
        t, n = ctx.shape[1], g.prompt_length
        keys = torch.stack([layer.keys[:, :, t:t + n] for layer in out.cache.layers])
        values = torch.stack([layer.values[:, :, t:t + n] for layer in out.cache.layers])
        return keys, values, pos[:, t:t + n], out.last_hidden_state[:, t + n:], mask[:, n:]


@pytest.mark.parametrize("kind", BACKBONES)
def test_layer_prompt_with_the_input_prompts_states_equals_the_input_prompt(setup, kind):
    g = build(setup, kind, prompt_injection="layers").eval()
    layer_prompt, g.layer_prompt = g.layer_prompt, None  # without it the same model is the input-embedding prompt
    assert g.prompt_positions == g.prompt_length
    batch = g.make_collator()([setup["train"][i] for i in (0, 3, 7, 12)])  # different lengths, padded
    keys, values, positions, hidden_ref, tail_mask = _prompt_states(g, batch)
    g.layer_prompt = layer_prompt
    raw = rotate_keys(g.backbone, keys, -positions)  # undo the rotation: the layer prompt's output is position-free
    if kind == "llama":
        assert not torch.allclose(raw, keys)
    g.layer_prompt.forward = lambda prompt: (raw, values)
    with torch.no_grad():
        hidden, _ = g.suffix_hidden(batch)
    assert hidden.shape == hidden_ref.shape
    real = tail_mask.bool()
    torch.testing.assert_close(hidden[real], hidden_ref[real], atol=1e-5, rtol=1e-4)
    # the loss sees the tail only: labels are not shifted by prompt positions that do not exist
    assert g.prompt_positions == 0


def test_layer_prompt_shapes_and_config_checks(setup):
    g = build(setup, "llama", prompt_injection="layers")
    layers, heads, dim = kv_shape(g.backbone.config)
    assert (layers, heads, dim) == (2, 2, 8)  # grouped key/value heads: 2 of the 4 query heads
    k, v = g.layer_prompt(torch.randn(3, 5, 32))
    assert k.shape == v.shape == (layers, 3, heads, 5, dim)
    assert isinstance(build(setup, "gpt2", prompt_injection="layers").layer_prompt, LayerPrompt)
    assert build(setup, "gpt2").layer_prompt is None
    with pytest.raises(ValueError, match="prompt_injection"):
        ConversationConfig(prompt_position="suffix", prompt_injection="everywhere")
    with pytest.raises(ValueError, match="suffix"):
        ConversationConfig(prompt_position="prefix", prompt_injection="layers")
    with pytest.raises(ValueError, match="no single uncached pass"):
        g.suffix_hidden(g.make_collator()(setup["train"][:2]), cached=False)


@pytest.mark.parametrize("kind", BACKBONES)
def test_layer_prompt_generation_follows_the_training_path(setup, kind):
    g = build(setup, kind, prompt_injection="layers").eval()
    with torch.no_grad():  # a prompt that matters
        g.layer_prompt.proj2.weight.normal_(0, 0.5)
    sample = setup["test"][2]
    gen = g.make_collator(generation=True)([sample])
    ids = generate_ids(g, gen, GenerationConfig(max_new_tokens=6, min_new_tokens=6, no_repeat_ngram_size=0))[0]
    assert len(ids) == 6
    batch = dict(gen)
    batch["input_ids"] = torch.cat([gen["input_ids"], torch.tensor([ids])], 1)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    with torch.no_grad():
        hidden, _ = g.suffix_hidden(batch)
        n = gen["input_ids"].shape[1]
        predicted = g.token_logits(hidden[0, n - 1:-1]).argmax(-1).tolist()
    assert predicted == ids
    beams = generate_ids(g, gen, GenerationConfig(max_new_tokens=6, num_beams=3, no_repeat_ngram_size=0))
    assert len(beams) == 1 and 0 < len(beams[0]) <= 6


def test_layer_prompt_trains_and_the_backbone_stays_frozen(setup):
    g = build(setup, "llama", prompt_injection="layers").train()
    before = {k: v.clone() for k, v in g.backbone.state_dict().items()}
    batch = g.make_collator()(setup["train"][:8])
    opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(15):
        out = g(batch)
        opt.zero_grad()
        out.loss.backward()
        assert float(g.layer_prompt.proj2.weight.grad.abs().sum()) > 0
        opt.step()
        losses.append(float(out.loss))
    assert losses[-1] < losses[0]
    for k, v in g.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(k.startswith("layer_prompt.") for k in g.trainable_state_dict())
