"""Prompt encoder (Eq. 17-19), input assembly, collator and the recommender (Eq. 20-24) on tiny models."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mscrs_core.models.collate import RecCollator, context_text
from mscrs_core.models.prompt_encoder import PromptEncoder, assemble_inputs
from mscrs_core.models.context_states import ContextStateBank
from mscrs_core.models.recommender import MSCRSRecommender, RecommenderConfig
from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer

from mscrs_core.data.samples import Sample
from mscrs_core.models.entity_table import EntityTable as TableStandIn

EOS = "<|endoftext|>"
TEXTS = ["hello there", "i like scary movies", "have you seen alien", "yes it was great", "what else"]




@pytest.fixture(scope="module")
def tokenizer():
    return build_reduced_tokenizer(TEXTS)


def tiny_backbone(kind: str, vocab: int) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "gpt2":
        m = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                           bos_token_id=vocab - 1, eos_token_id=vocab - 1))
    else:  # "llama-grouped": two query heads per key/value head, under models.attention's grouped eager attention
        grouped = kind == "llama-grouped"
        m = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4 if grouped else 2,
                                         num_key_value_heads=2, max_position_embeddings=128, bos_token_id=vocab - 1,
                                         eos_token_id=vocab - 1, pad_token_id=vocab - 1,
                                         attn_implementation="eager" if grouped else None))
        if grouped:
            from mscrs_core.models.attention import use_grouped_eager

            assert use_grouped_eager(m)
    return m.requires_grad_(False).eval()


def make_model(tokenizer, kind="gpt2", rec_scope="items", config=None, **kw) -> MSCRSRecommender:
    torch.manual_seed(1)
    config = config or RecommenderConfig(max_entities=4, n_entity_prompt=3, n_task_prompt=2)
    return MSCRSRecommender(TableStandIn(12, 8), tiny_backbone(kind, len(tokenizer)), torch.tensor([0, 2, 4, 6]),
                            tokenizer=tokenizer, config=config, rec_scope=rec_scope, **kw)


def samples() -> list[Sample]:
    return [
        Sample("d1", 2, (("seeker", "hello there"), ("recommender", "what else")), (5, 7), "have you seen alien", 2),
        Sample("d2", 1, (("recommender", "i like scary movies"),), (1, 3, 5, 7, 9, 11), "yes", 4),
        Sample("d3", 0, (), (), "hello", 6),
    ]


# ------------------------------------------------------------------ Eq. (17)


def test_entity_prompt_matches_hand_computation_and_ignores_padding():
    enc = PromptEncoder(2, 2, max_entities=3, n_entity_prompt=2, n_task_prompt=1, tau=0.07)
    with torch.no_grad():
        enc.w1.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]))
        enc.w2.weight.copy_(torch.eye(2))
    v = torch.tensor([[[100.0, 100.0], [1.0, 0.0], [0.0, 2.0]]])  # slot 0 is padding (garbage values)
    mask = torch.tensor([[False, True, True]])
    out = enc.entity_prompt(v, mask)
    # row 0: 2*[1,0] + 3*[0,2] = [2, 6]; row 1: 1*[0,2] = [0, 2]
    assert torch.allclose(out, torch.tensor([[[2.0, 6.0], [0.0, 2.0]]]))


def test_text_embedding_is_masked_mean():
    t = torch.tensor([[[9.0, 9.0], [1.0, 3.0], [3.0, 5.0]]])
    m = torch.tensor([[0, 1, 1]])
    assert torch.allclose(PromptEncoder.text_embedding(t, m), torch.tensor([[2.0, 4.0]]))


# ------------------------------------------------------------------ Eq. (18)


def test_fuse_loss_paper_variant_hand_computed():
    tau = 0.5
    enc = PromptEncoder(2, 2, max_entities=1, n_entity_prompt=1, n_task_prompt=0, tau=tau)
    v = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # V_tilde per dialog (already unit vectors)
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # T_s; second one has cos 1/sqrt(2) with both
    c = 1 / math.sqrt(2)
    # dialog 0: pos = 1/tau; den_T = log(e^{1/tau} + e^{c/tau}); den_V = log(e^{1/tau} + e^{0})
    # dialog 1: pos = c/tau; den_T = log(e^{c/tau} + e^{1/tau}); den_V = log(e^{0} + e^{1/tau})
    lse_t = math.log(math.exp(1 / tau) + math.exp(c / tau))
    lse_v = math.log(math.exp(1 / tau) + 1.0)
    expected = ((lse_t - 1 / tau + lse_v - 1 / tau) + (lse_t - c / tau + lse_v - c / tau)) / 2
    assert enc.fuse_loss(v, t).item() == pytest.approx(expected, rel=1e-5)


def test_fuse_loss_infonce_variant_hand_computed():
    tau = 1.0
    enc = PromptEncoder(2, 2, max_entities=1, n_entity_prompt=1, n_task_prompt=0, tau=tau, fuse_variant="infonce")
    v = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # perfectly aligned pairs, orthogonal negatives
    expected = 2 * (math.log(math.e + 1.0) - 1.0)  # per dialog, both directions
    assert enc.fuse_loss(v, t).item() == pytest.approx(expected, rel=1e-5)


def test_bad_prompt_encoder_arguments_raise():
    with pytest.raises(ValueError, match="fuse_variant"):
        PromptEncoder(2, 2, max_entities=1, n_entity_prompt=1, n_task_prompt=1, tau=0.07, fuse_variant="clip")
    with pytest.raises(ValueError, match="tau"):
        PromptEncoder(2, 2, max_entities=1, n_entity_prompt=1, n_task_prompt=1, tau=0.0)


# ------------------------------------------------------------------ Eq. (19) input layout


def test_assemble_inputs_layout_mask_and_positions():
    prompt = torch.tensor([[[10.0], [11.0]], [[20.0], [21.0]]])  # P = 2
    tokens = torch.tensor([[[0.0], [1.0], [2.0]], [[-1.0], [5.0], [6.0]]])  # row 1 has one left pad
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    emb, m, pos = assemble_inputs(prompt, tokens, mask)
    assert emb[0, :, 0].tolist() == [10.0, 11.0, 0.0, 1.0, 2.0]
    assert emb[1, 1:, 0].tolist() == [20.0, 21.0, 5.0, 6.0]  # [pad, prompt, tokens]
    assert m.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]
    assert pos.tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 2, 3]]


# ------------------------------------------------------------------ collator


def test_collator_format_truncation_and_entity_alignment(tokenizer):
    s = samples()
    assert context_text(s[0].context, EOS) == f"User: hello there{EOS}System: what else{EOS}"
    assert context_text(s[0].context, EOS, response="have you") == \
        f"User: hello there{EOS}System: what else{EOS}User: have you{EOS}"
    col = RecCollator(tokenizer, max_length=5, max_entities=4)
    b = col(s)
    full = tokenizer(context_text(s[0].context, EOS), add_special_tokens=False)["input_ids"]
    assert b["input_ids"][0].tolist() == full[-5:]  # left truncation keeps the most recent tokens
    assert b["attention_mask"][:, -1].tolist() == [1, 1, 1]  # last column always real
    assert b["input_ids"][2, -1].item() == tokenizer.eos_token_id and b["attention_mask"][2].sum() == 1
    assert b["entity_ids"].tolist() == [[0, 0, 5, 7], [5, 7, 9, 11], [0, 0, 0, 0]]  # most recent q, right-aligned
    assert b["entity_mask"].tolist()[0] == [False, False, True, True]
    assert b["labels"].tolist() == [2, 4, 6]
    with pytest.raises(ValueError, match="role"):
        col([Sample("x", 1, (("bot", "hi"),), (), "r", 0)])


# ------------------------------------------------------------------ recommender


@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("position", ["prefix", "suffix"])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "llama-grouped"])
def test_forward_shapes_and_padding_invariance(tokenizer, kind, position, readout):
    # with readout="mean" the prompt's positions move with each row's left padding (prefix): a wrong gather
    # would read pads or context tokens for the padded rows, and the batched scores would differ from the lone ones
    model = make_model(tokenizer, kind, prompt_position=position, zero_init_projection=False, readout=readout).eval()
    col = RecCollator(tokenizer, max_length=32, max_entities=4)
    s = samples()
    batch = col(s)
    scores = model.score_items(batch)
    assert scores.shape == (3, 4)
    for i in range(3):  # the same sample alone (no padding) gives the same scores
        alone = model.score_items(col([s[i]]))
        assert torch.allclose(alone[0], scores[i], atol=1e-5), (kind, i)
    out = model(batch, task="rec")
    assert out.logits.shape == (3, 4) and torch.isfinite(out.loss)
    assert model(batch, task="pretrain").logits.shape == (3, 12)


@pytest.mark.parametrize("config", [RecommenderConfig.paper(max_entities=4, n_entity_prompt=3, n_task_prompt=2),
                                    RecommenderConfig(max_entities=4, n_entity_prompt=3, n_task_prompt=2,
                                                      zero_init_projection=False)])
def test_backbone_gets_no_gradient_and_prompt_parts_do(tokenizer, config):
    model = make_model(tokenizer, config=config).train()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    model(batch).loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert not model.backbone.training  # dropout stays off even in train mode
    for name in ("graph_encoder.emb.weight", "prompt_encoder.w1", "prompt_encoder.w2.weight",
                 "prompt_encoder.task_prompt", "projection.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert not any(k.startswith("backbone.") for k in model.trainable_state_dict())


@pytest.mark.parametrize("head", ["dot", "cosine"])
def test_rec_scope_items_vs_all_entities(tokenizer, head):
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    paper = make_model(tokenizer, rec_scope="items", head=head, zero_init_projection=False)
    unicrs = make_model(tokenizer, rec_scope="all_entities", head=head, zero_init_projection=False)
    with torch.no_grad():  # a non-trivial bias, so the test sees it land on the right columns
        for m in (paper, unicrs):
            m.item_bias.copy_(torch.arange(4.0))
    p, u = paper(batch), unicrs(batch)
    assert p.logits.shape == (3, 4) and u.logits.shape == (3, 12)
    # same weights (same seed): the item columns of the all-entity logits are the item logits
    assert torch.allclose(u.logits[:, paper.item_ids], p.logits, atol=1e-6)
    assert paper.item_positions(torch.tensor([6, 0])).tolist() == [3, 0]
    bad = dict(batch, labels=torch.tensor([1, 2, 4]))
    with pytest.raises(ValueError, match="not items"):
        paper(bad)
    with pytest.raises(ValueError, match="rec_scope"):
        make_model(tokenizer, rec_scope="both")


def test_unfrozen_backbone_is_rejected(tokenizer):
    bb = tiny_backbone("gpt2", len(tokenizer)).requires_grad_(True)
    with pytest.raises(ValueError, match="frozen"):
        MSCRSRecommender(TableStandIn(12, 8), bb, torch.tensor([0]))


# ------------------------------------------------------------------ the CPU recipe and the suffix order


@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("kind", ["gpt2", "llama", "llama-grouped"])
def test_suffix_with_cached_context_equals_one_uncached_pass(tokenizer, kind, readout):
    """[s; prompt] with s's states from the bank = one pass over [s; prompt]: loss and every gradient."""
    col = RecCollator(tokenizer, max_length=32, max_entities=4)
    batch = col(samples())
    runs = []
    for cached in (False, True):
        model = make_model(tokenizer, kind, prompt_position="suffix", zero_init_projection=False,
                           readout=readout).train()
        if cached:
            model.attach_context_bank(ContextStateBank(model.backbone, 32, tokenizer.pad_token_id))
        out = model(batch, task="rec")
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
        runs.append((out.loss.detach(), grads))
    (l0, g0), (l1, g1) = runs
    assert torch.allclose(l0, l1, atol=1e-5)
    assert g0.keys() == g1.keys() and "prompt_encoder.task_prompt" in g0
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("position", ["prefix", "suffix"])
def test_mean_readout_pools_the_prompt_positions(tokenizer, position):
    """readout="mean" projects the mean of the prompt's output states (found by hand here), not the last state."""
    from mscrs_core.models.backbone import decoder_of
    from mscrs_core.models.prompt_encoder import assemble_inputs

    model = make_model(tokenizer, prompt_position=position, zero_init_projection=False, readout="mean",
                       entity_skip=False).eval()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    r_hat, _, _ = model.encode(batch)
    token_embeds = model.backbone.get_input_embeddings()(batch["input_ids"])
    table = model.graph_encoder()
    out = model.prompt_encoder(table[batch["entity_ids"]], batch["entity_mask"], token_embeds.float(),
                               batch["attention_mask"])
    n, mask = out.prompt.shape[1], batch["attention_mask"]
    if position == "prefix":
        embeds, full, pos = assemble_inputs(out.prompt, token_embeds, mask)
        hidden = decoder_of(model.backbone)(inputs_embeds=embeds, attention_mask=full, position_ids=pos).last_hidden_state
        pad = (mask.shape[1] - mask.sum(1)).tolist()
        pooled = torch.stack([hidden[i, pad[i]:pad[i] + n].mean(0) for i in range(len(pad))])
    else:
        embeds = torch.cat([token_embeds, out.prompt], 1)
        full = torch.cat([mask, torch.ones(mask.shape[0], n, dtype=mask.dtype)], 1)
        hidden = decoder_of(model.backbone)(inputs_embeds=embeds, attention_mask=full,
                                            position_ids=(full.cumsum(1) - 1).clamp_min(0)).last_hidden_state
        pooled = hidden[:, -n:].mean(1)
    assert torch.allclose(r_hat, model.projection(pooled), atol=1e-5)
    last, _, _ = make_model(tokenizer, prompt_position=position, zero_init_projection=False,
                            entity_skip=False).eval().encode(batch)
    assert not torch.allclose(r_hat, last, atol=1e-3)
    with pytest.raises(ValueError, match="readout"):
        RecommenderConfig(readout="max")


def test_untrained_recipe_is_the_graph_scorer_plus_popularity(tokenizer):
    """Zero-initialised projection + skip path + cosine head: before training, score(s, i) =
    scale * cos(mean context entity row, item row) + log popularity_i; the LM enters only through training."""
    model = make_model(tokenizer).eval()
    counts = torch.tensor([5.0, 0.0, 2.0, 1.0])
    model.init_item_bias(counts)
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    scores = model.score_items(batch)
    table = model.graph_encoder()
    prior = torch.log_softmax(torch.log(counts + 1), 0)
    for i, s in enumerate(samples()):
        ents = list(s.context_entities)[-4:]
        if ents:
            user = table[ents].mean(0)
            expected = 10.0 * torch.nn.functional.cosine_similarity(user[None], table[model.item_ids]) + prior
        else:  # no entity and a zero projection: only the prior orders the items
            expected = prior
        assert torch.allclose(scores[i], expected, atol=1e-5), i


def test_recommender_config_round_trip_and_checks(tokenizer):
    cfg = RecommenderConfig.paper(n_task_prompt=3, max_entities=4, n_entity_prompt=3)
    assert cfg.head == "dot" and cfg.prompt_position == "prefix" and not cfg.item_bias
    assert RecommenderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        RecommenderConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="head"):
        RecommenderConfig(head="mlp")
    with pytest.raises(ValueError, match="prompt_position"):
        RecommenderConfig(prompt_position="middle")
    model = make_model(tokenizer, config=cfg)
    assert model.config.n_task_prompt == 3 and model.prompt_encoder.n_task_prompt == 3
    with pytest.raises(ValueError, match="no item bias"):
        model.init_item_bias(torch.ones(4))
    with pytest.raises(ValueError, match="suffix"):
        model.attach_context_bank(ContextStateBank(model.backbone, 32, 0))


def test_closed_lm_path_is_the_untrained_output_and_needs_the_skip_path(tokenizer):
    model = make_model(tokenizer).eval()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    open_scores = model.score_items(batch)
    model.close_lm_path()
    assert torch.allclose(model.score_items(batch), open_scores, atol=1e-6)  # zero projection: same output
    with torch.no_grad():
        model.projection.weight.normal_()
    closed = model.score_items(batch)
    model.close_lm_path(False)
    assert not torch.allclose(model.score_items(batch), closed)  # the LM term is back
    no_skip = make_model(tokenizer, entity_skip=False)
    with pytest.raises(ValueError, match="entity_skip"):
        no_skip.close_lm_path()


def test_mention_bias_adds_beta_plus_gamma_recency_to_mentioned_items_only(tokenizer):
    """beta + gamma * r on items already mentioned (r = rank of first mention / count, 1 for the latest); mentioned
    entities that are not items, and samples without mentions, are untouched; off in the paper's config."""
    base = [Sample("d1", 2, (("seeker", "hello there"),), (5, 7), "x", 2, mentioned_items=(4, 5, 0)),
            Sample("d2", 1, (("recommender", "what else"),), (1,), "y", 4)]
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(base)
    assert batch["mentioned_ids"].tolist() == [[4, 5, 0], [0, 0, 0]]
    assert batch["mentioned_mask"].tolist() == [[True, True, True], [False, False, False]]
    on = make_model(tokenizer).eval()
    with torch.no_grad():
        on.mention_weight.fill_(2.0)
        on.mention_recency.fill_(1.0)
    off = make_model(tokenizer, mention_bias=False).eval()
    off.load_state_dict({k: v for k, v in on.state_dict().items() if not k.startswith("mention_")}, strict=False)
    diff = on.score_items(batch) - off.score_items(batch)
    # item positions: entity 0 -> 0, 4 -> 2; entity 5 is not an item, so the ranks are 1 and 2 of 2 items
    expected = torch.zeros(2, 4)
    expected[0, 2] = 2.0 + 1.0 * (1 / 2)
    expected[0, 0] = 2.0 + 1.0 * (2 / 2)
    assert torch.allclose(diff, expected, atol=1e-5)
    loss = on(batch).loss
    loss.backward()
    assert on.mention_weight.grad is not None and on.mention_recency.grad is not None
    assert not RecommenderConfig.paper().mention_bias


# ------------------------------------------------------------------ T_s from a text encoder (context_encoder)


class FakeContextFeatures:
    """samples -> fixed features (4-d), keyed by dialog id, counting calls (a stand-in for ContextTextFeatures)."""

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.table = {d: torch.randn(4, generator=g) for d in ("d1", "d2", "d3")}

    def __call__(self, batch_samples):
        return torch.stack([self.table[s.dialog_id] for s in batch_samples])


def text_model(tokenizer, **kw):
    cfg = RecommenderConfig(max_entities=4, n_entity_prompt=3, n_task_prompt=2, context_encoder="text_encoder",
                            context_text_dim=4, **kw)
    return make_model(tokenizer, config=cfg).eval()


def test_collator_writes_the_context_features(tokenizer):
    feats = FakeContextFeatures()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4, context_features=feats)(samples())
    assert torch.equal(batch["context_text"], torch.stack([feats.table[d] for d in ("d1", "d2", "d3")]))
    assert "context_text" not in RecCollator(tokenizer, max_length=32, max_entities=4)(samples())


def test_text_encoder_t_s_is_the_mapped_features_and_reaches_the_prompt(tokenizer):
    """context_encoder="text_encoder": T_s = W_T x_s (not the mean input embedding), V_hat = V_tilde + T_s, and
    the scores move with x_s; a batch without the features is refused with a message that says what is missing."""
    model = text_model(tokenizer)
    feats = FakeContextFeatures()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4, context_features=feats)(samples())
    seen = {}
    hook = model.prompt_encoder.register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    with torch.no_grad():
        model.projection.weight.normal_()  # let the LM term reach the score
        scores = model.score_items(batch)
    hook.remove()
    expected = model.text_projection(batch["context_text"])
    assert torch.allclose(seen["out"].text_embedding, expected, atol=1e-6)
    assert torch.allclose(seen["out"].prompt[:, :3], seen["out"].entity_prompt + expected[:, None], atol=1e-5)
    other = dict(batch, context_text=batch["context_text"].flip(0))
    with torch.no_grad():
        assert not torch.allclose(model.score_items(other), scores)
    with pytest.raises(ValueError, match="context_text"):
        model.score_items(RecCollator(tokenizer, max_length=32, max_entities=4)(samples()))


def test_text_skip_starts_at_zero_then_carries_the_text_around_the_lm(tokenizer):
    """text_skip: zero-initialised, so the untrained model is the entity-mean scorer exactly; once W_t moves, the
    closed-LM output (the warm-up's model) depends on the text, also for a dialog without any entity."""
    plain = make_model(tokenizer).eval()
    model = text_model(tokenizer, text_skip=True)
    batch = RecCollator(tokenizer, max_length=32, max_entities=4, context_features=FakeContextFeatures())(samples())
    model.close_lm_path()
    plain.close_lm_path()
    with torch.no_grad():
        assert torch.allclose(model.score_items(batch), plain.score_items(batch), atol=1e-6)
        model.text_skip_map.weight.normal_()
        moved = model.score_items(batch)
        r_hat, _, table = model.encode(batch)
    assert not torch.allclose(moved[2], plain.score_items(batch)[2])  # d3 has no entity: the text alone moves it
    m = batch["entity_mask"].unsqueeze(-1).float()
    mean = (table[batch["entity_ids"]] * m).sum(1) / m.sum(1).clamp_min(1)
    assert torch.allclose(r_hat, mean + model.text_skip_map(batch["context_text"]), atol=1e-6)


def test_text_options_are_checked():
    with pytest.raises(ValueError, match="context_encoder"):
        RecommenderConfig(context_encoder="roberta")
    with pytest.raises(ValueError, match="text_skip"):
        RecommenderConfig(text_skip=True)  # needs the text encoder's features
    with pytest.raises(ValueError, match="text_skip"):
        RecommenderConfig(text_skip=True, context_encoder="text_encoder", entity_skip=False)
    with pytest.raises(ValueError, match="context_text_dim"):
        RecommenderConfig(context_encoder="text_encoder", context_text_dim=0)
