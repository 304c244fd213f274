"""The recommender's layer prompt (``RecommenderConfig.prompt_injection="layers"``, the authors' code): the prompt as
every layer's keys and values after the context, read out at the last token of ``title_cue`` run after them.

Checked against one uncached pass over [s; prompt; cue] with the prompt as input embeddings: when the layer prompt
yields exactly the keys and values the input prompt's positions have, the cue's states must be the pass's
(positions, rotary embedding, masks, left padding)."""
from __future__ import annotations

import pytest
import torch

from mscrs_core.models.backbone import decoder_of
from mscrs_core.models.collate import RecCollator
from mscrs_core.models.context_states import ContextStateBank
from mscrs_core.models.layer_prompt import rotate_keys
from mscrs_core.models.recommender import MSCRSRecommender, RecommenderConfig

from test_models_recommender import TableStandIn, make_model, samples, tiny_backbone, tokenizer  # noqa: F401


def layer_model(tokenizer, kind="gpt2", **kw):
    return make_model(tokenizer, kind, prompt_position="suffix", prompt_injection="layers",
                      zero_init_projection=False, **kw)


def _input_prompt_pass(model, batch, prompt):
    """One uncached pass over [s; prompt; cue] with the prompt as input embeddings: the prompt positions' keys
    (rotated, as a cache holds them), values and position ids, and the cue's hidden states."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    emb = model.backbone.get_input_embeddings()
    cue = emb(model.readout_ids).unsqueeze(0).expand(ids.shape[0], -1, -1)
    full = torch.cat([emb(ids), prompt, cue], 1)
    m = torch.cat([mask.long(), torch.ones(ids.shape[0], prompt.shape[1] + cue.shape[1], dtype=torch.long)], 1)
    pos = (m.cumsum(1) - 1).clamp_min(0)
    with torch.no_grad():
        out = decoder_of(model.backbone)(inputs_embeds=full, attention_mask=m, position_ids=pos, use_cache=True)
    t, n = ids.shape[1], prompt.shape[1]
    keys = torch.stack([layer.keys[:, :, t:t + n] for layer in out.cache.layers])
    values = torch.stack([layer.values[:, :, t:t + n] for layer in out.cache.layers])
    return keys, values, pos[:, t:t + n], out.last_hidden_state[:, t + n:]


@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "llama-grouped"])
def test_layer_prompt_with_the_input_prompts_states_reads_what_the_input_prompt_reads(tokenizer, kind, readout):
    model = layer_model(tokenizer, kind, readout=readout).eval()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())  # three lengths, left-padded
    prompt = torch.randn(3, 5, model.backbone.config.hidden_size)
    keys, values, positions, cue_hidden = _input_prompt_pass(model, batch, prompt)
    raw = rotate_keys(model.backbone, keys, -positions)  # the layer prompt's own output carries no position
    if kind == "llama":
        assert not torch.allclose(raw, keys)
    model.layer_prompt.forward = lambda p: (raw, values)
    with torch.no_grad():
        state = model.layer_prompt_state(batch, prompt)
    expected = cue_hidden.mean(1) if readout == "mean" else cue_hidden[:, -1]
    torch.testing.assert_close(state, expected.float(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "llama-grouped"])
def test_layer_prompt_scores_ignore_padding_and_the_bank_changes_nothing(tokenizer, kind):
    col = RecCollator(tokenizer, max_length=32, max_entities=4)
    s = samples()
    runs = []
    for cached in (False, True):
        model = layer_model(tokenizer, kind).train()
        if cached:
            model.attach_context_bank(ContextStateBank(model.backbone, 32, tokenizer.pad_token_id))
        out = model(col(s), task="rec")
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
        runs.append((out.loss.detach(), grads))
        model.eval()
        scores = model.score_items(col(s))
        for i in range(len(s)):  # a sample alone (no padding) scores as in the batch
            torch.testing.assert_close(model.score_items(col([s[i]]))[0], scores[i], atol=1e-5, rtol=1e-4)
    (l0, g0), (l1, g1) = runs
    torch.testing.assert_close(l0, l1, atol=1e-5, rtol=1e-4)
    assert g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g0[name], g1[name], atol=1e-5, rtol=1e-4)


def test_layer_prompt_trains_the_map_and_never_the_backbone(tokenizer):
    model = layer_model(tokenizer, "llama").train()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    model(batch).loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    params = dict(model.named_parameters())
    for name in ("layer_prompt.proj1.0.weight", "layer_prompt.proj2.weight", "prompt_encoder.task_prompt",
                 "projection.weight"):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    assert any(k.startswith("layer_prompt.") for k in model.trainable_state_dict())
    # with the language-model path closed nothing reaches the layer prompt (the warm-up stage)
    model.zero_grad()
    model.close_lm_path()
    model(batch).loss.backward()
    assert params["layer_prompt.proj2.weight"].grad is None


def test_layer_prompt_config_checks(tokenizer):
    with pytest.raises(ValueError, match="suffix"):
        RecommenderConfig(prompt_injection="layers", prompt_position="prefix")
    with pytest.raises(ValueError, match="prompt_injection"):
        RecommenderConfig(prompt_injection="cross_attention")
    with pytest.raises(ValueError, match="title_cue"):
        RecommenderConfig(prompt_injection="layers", title_cue="")
    cfg = RecommenderConfig(max_entities=4, n_entity_prompt=3, n_task_prompt=2, prompt_injection="layers")
    assert RecommenderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="tokenizer"):
        MSCRSRecommender(TableStandIn(12, 8), tiny_backbone("gpt2", len(tokenizer)), torch.tensor([0, 2]),
                         config=cfg)
    # the readout is the cue's tokens, as the tokenizer splits it
    model = layer_model(tokenizer)
    assert model.readout_ids.tolist() == tokenizer(cfg.title_cue, add_special_tokens=False)["input_ids"]
