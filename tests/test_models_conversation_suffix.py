"""The ``suffix`` prompt order of the conversation model ([s; prompt; "System:"; response], cached context states):
cached == uncached in loss and gradients, generation (greedy == a manual uncached loop, deterministic,
no-repeat n-grams, beam search), the context-state bank round trip, and the run configuration fields."""
from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from mscrs_core.data.samples import conversation_samples
from mscrs_core.data.synthetic import make_synthetic
from mscrs_core.models.backbone import freeze
from mscrs_core.models.collate import context_text
from mscrs_core.models.context_mapping import ContextBank, HashingTextEmbedder
from mscrs_core.models.context_states import ContextStateBank
from mscrs_core.models.conversation import ConversationConfig, MSCRSGenerator
from mscrs_core.models.enhanced_entities import EntityEnhancer
from mscrs_core.models.generate import GenerationConfig, generate_ids, generate_responses

# "llama-grouped": the Llama backbone under models.attention's grouped eager attention (what load_backbone gives
# SmolLM2)
BACKBONES = ("gpt2", "llama", "llama-grouped")


@pytest.fixture(scope="module")
def setup():
    from mscrs_core.graphs.comention import comention_graph_from_dataset
    from mscrs_core.graphs.kg import build_kg_edges
    from mscrs_core.graphs.knn import build_knn_graph
    from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer

    ds = make_synthetic(dialogs=(30, 6, 6))
    train, test = conversation_samples(ds.splits["train"], ds), conversation_samples(ds.splits["test"], ds)
    torch.manual_seed(0)
    parts = dict(kg=build_kg_edges(ds.kg), collab=comention_graph_from_dataset(ds, 1),
                 text=build_knn_graph(torch.randn(ds.num_items, 8), 3))
    tok = build_reduced_tokenizer([context_text(s.context, "<|endoftext|>") + s.response for s in train]
                                  + ["System:"])
    return {"ds": ds, "train": train, "test": test, "tok": tok, "parts": parts}


def _backbone(kind: str, vocab: int, eos: int):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    if kind == "gpt2":  # tied input/output embeddings, learned positions
        return freeze(GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                                 bos_token_id=eos, eos_token_id=eos)))
    # untied embeddings (a separate output placeholder row), rotary positions, grouped key/value heads
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos, attn_implementation="eager")
    model = LlamaForCausalLM(cfg)
    if kind == "llama-grouped":
        from mscrs_core.models.attention import use_grouped_eager

        assert use_grouped_eager(model)
    return freeze(model)


def build(setup, kind: str = "gpt2", **kw) -> MSCRSGenerator:
    from mscrs_core.graphs.fusion import GraphConfig, SemanticGraphEncoder

    ds, parts, tok = setup["ds"], setup["parts"], setup["tok"]
    torch.manual_seed(0)
    enc = SemanticGraphEncoder(ds.num_entities, parts["kg"], torch.tensor(ds.item_ids),
                               GraphConfig(dim=16, use_image=False), collab=parts["collab"], text=parts["text"])
    backbone = _backbone(kind, len(tok) + 1, tok.eos_token_id)  # + 1: room for the placeholder row
    args = dict(max_entities=8, n_entity_prompt=2, n_task_prompt=3, max_neighbours=6, mapping_k=3,
                mapping_mlp_hidden=16, text_embedder="hashing:32", prompt_position="suffix", max_context_length=60)
    args.update(kw)
    cfg = ConversationConfig(**args)
    emb = HashingTextEmbedder(32)
    enh = EntityEnhancer(enc.neighbours, max_neighbours=cfg.max_neighbours)
    bank = ContextBank.build(setup["train"], enh, emb, ds.num_entities, k=cfg.mapping_k)
    gen = MSCRSGenerator(enc, backbone, tok, cfg, bank=bank, embedder=emb)
    with torch.no_grad():  # "trained" weights: a fresh init leaves the placeholder and prompt near their means
        gen.prompt_encoder.task_prompt.normal_()
        gen.placeholder_in.normal_()
    return gen


def _loss_and_grads(model, batch, cached: bool):
    model.zero_grad(set_to_none=True)
    if not cached:
        model.suffix_hidden = functools.partial(type(model).suffix_hidden, model, cached=False)
    try:
        out = model(batch)
        out.loss.backward()
    finally:
        model.__dict__.pop("suffix_hidden", None)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return float(out.loss.detach()), grads


@pytest.mark.parametrize("kind", BACKBONES)
@pytest.mark.parametrize("reduction", ["context", "token"])
def test_cached_context_equals_one_uncached_pass(setup, kind, reduction):
    g = build(setup, kind, loss_reduction=reduction).train()
    samples = [setup["train"][i] for i in (0, 3, 7, 12)]  # contexts and responses of different lengths
    batch = g.make_collator()(samples)
    assert batch["context_ids"].shape[0] == 4 and (batch["attention_mask"].sum(1) > 0).all()
    ref_loss, ref_grads = _loss_and_grads(g, batch, cached=False)
    loss, grads = _loss_and_grads(g, batch, cached=True)
    assert loss == pytest.approx(ref_loss, abs=1e-5)
    assert set(grads) == set(ref_grads) and len(grads) > 5
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], atol=1e-5, rtol=1e-4, msg=n)
    assert any(float(v.abs().sum()) > 0 for k, v in grads.items() if k.startswith("prompt_encoder"))
    assert not any(p.requires_grad for p in g.backbone.parameters())
    # states from a wider bank (rows re-padded on the left) give the same loss and gradients
    g.state_bank = ContextStateBank(g.backbone, 80, setup["tok"].pad_token_id)
    bank_loss, bank_grads = _loss_and_grads(g, batch, cached=True)
    assert len(g.state_bank) == 4 and bank_loss == pytest.approx(ref_loss, abs=1e-5)
    for n in ref_grads:
        torch.testing.assert_close(bank_grads[n], ref_grads[n], atol=1e-5, rtol=1e-4, msg=n)


def test_suffix_layout_and_config_checks(setup):
    g = build(setup)
    s = setup["train"][2]
    tr, ge = g.make_collator()([s]), g.make_collator(generation=True)([s])
    ctx, resp = g.make_collator().parts(s)
    n_prefix = len(g.make_collator().prefix_ids)
    assert ge["context_ids"][0].tolist() == ctx[:-n_prefix] == tr["context_ids"][0].tolist()
    assert ge["input_ids"][0].tolist() == ctx[-n_prefix:]  # "System:" after the prompt
    assert tr["input_ids"][0].tolist() == ctx[-n_prefix:] + resp
    assert tr["labels"][0].tolist() == [-100] * n_prefix + resp
    with pytest.raises(ValueError, match="prompt_position"):
        ConversationConfig(prompt_position="middle")
    with pytest.raises(ValueError, match="response only"):
        ConversationConfig(prompt_position="suffix", loss_on="all")
    with pytest.raises(ValueError, match="suffix"):
        g.inputs_embeds(tr)


def test_training_decreases_loss_and_keeps_backbone(setup):
    g = build(setup, "llama").train()
    before = {k: v.clone() for k, v in g.backbone.state_dict().items()}
    batch = g.make_collator()(setup["train"][:8])
    opt = torch.optim.AdamW([p for p in g.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(15):
        out = g(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else float(out.loss)
    assert float(out.loss) < first
    for k, v in g.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k  # sync_placeholder is a no-op in the suffix order
    assert "placeholder_in" in g.trainable_state_dict()


def _manual_greedy(g, batch, steps: int) -> list[list[int]]:
    """One uncached forward over the whole [context; prompt; "System:"; generated] sequence per step."""
    with torch.no_grad():
        embeds, mask, _ = g.suffix_inputs(batch)
        ctx = g.backbone.get_input_embeddings()(batch["context_ids"])
        emb = torch.cat([ctx, embeds], 1)
        m = torch.cat([batch["context_mask"], mask], 1)
        out = [[] for _ in range(emb.shape[0])]
        for _ in range(steps):
            pos = (m.cumsum(1) - 1).clamp_min(0)
            h = g.backbone.base_model(inputs_embeds=emb, attention_mask=m, position_ids=pos).last_hidden_state
            nxt = g.token_logits(h[:, -1]).argmax(-1)
            for i in range(len(out)):
                out[i].append(int(nxt[i]))
            emb = torch.cat([emb, g.embed_tokens(nxt[:, None])], 1)
            m = torch.cat([m, torch.ones_like(m[:, :1])], 1)
    eos = g.tokenizer.eos_token_id
    return [o[: o.index(eos)] if eos in o else o for o in out]


@pytest.mark.parametrize("kind", BACKBONES)
def test_suffix_generation_greedy_beam_and_no_repeat(setup, kind):
    g = build(setup, kind).eval()
    samples = [setup["test"][i] for i in (0, 2, 5)]
    batch = g.make_collator(generation=True)(samples)
    greedy = generate_ids(g, batch, GenerationConfig(max_new_tokens=8, no_repeat_ngram_size=0))
    assert greedy == _manual_greedy(g, batch, 8)
    assert generate_ids(g, batch, GenerationConfig(max_new_tokens=8, no_repeat_ngram_size=0)) == greedy
    g.state_bank = ContextStateBank(g.backbone, 60, setup["tok"].pad_token_id)  # via a bank: same tokens
    assert generate_ids(g, batch, GenerationConfig(max_new_tokens=8, no_repeat_ngram_size=0)) == greedy
    g.state_bank = None
    long = GenerationConfig(max_new_tokens=24, no_repeat_ngram_size=2, min_new_tokens=24)
    for row in generate_ids(g, batch, long):
        assert len(row) == 24
        bigrams = list(zip(row, row[1:]))
        assert len(bigrams) == len(set(bigrams))  # no repeated 2-gram
    beam_cfg = GenerationConfig(max_new_tokens=10, num_beams=3, no_repeat_ngram_size=1)
    beam = generate_ids(g, batch, beam_cfg)
    assert len(beam) == 3 and all(0 < len(b) <= 10 for b in beam)
    assert all(len(set(b)) == len(b) for b in beam)  # no repeated 1-gram
    assert generate_ids(g, batch, beam_cfg) == beam  # deterministic
    assert generate_ids(g, batch, GenerationConfig(max_new_tokens=8, num_beams=1, no_repeat_ngram_size=0)) == greedy


def test_suffix_placeholder_is_generated_as_one_token_and_filled(setup, monkeypatch):
    g = build(setup).eval()
    s = setup["test"][1]
    ph = g.placeholder_id
    with torch.no_grad():  # make the placeholder the most likely token, then EOS after one of them
        g.placeholder_in.copy_(g.backbone.get_input_embeddings().weight[:ph].mean(0) * 0 + 5.0)
    orig = g.token_logits

    def logits(hidden):
        out = orig(hidden)
        out[:, ph] = 1e4
        return out

    monkeypatch.setattr(g, "token_logits", logits)
    out = generate_responses(g, [s], config=GenerationConfig(max_new_tokens=3, no_repeat_ngram_size=1),
                             rank=lambda _: [7, 8, 9], name_of=lambda e: f"M{e}", exclude_mentioned=False)
    assert out[0].token_ids[0] == ph and out[0].token_ids.count(ph) == 1
    assert out[0].raw.startswith("<movie>") and out[0].text.startswith("M7") and out[0].items == [7]


def test_state_bank_round_trip_and_mismatch(setup, tmp_path):
    g = build(setup, "llama").eval()
    batch = g.make_collator(generation=True)(setup["test"][:4])
    pad = setup["tok"].pad_token_id
    bank = ContextStateBank(g.backbone, 64, pad)
    st = bank.lookup(batch["context_ids"], batch["context_mask"])
    path = tmp_path / "bank.safetensors"
    bank.save(path)
    again = ContextStateBank(g.backbone, 64, pad)
    assert again.load(path) and len(again) == len(bank) == 4
    st2 = again.lookup(batch["context_ids"], batch["context_mask"])
    assert torch.equal(st.keys, st2.keys) and torch.equal(st.values, st2.values)
    assert torch.equal(st.attention_mask, st2.attention_mask)
    g.state_bank = again
    ref = generate_ids(g, batch, GenerationConfig(max_new_tokens=6, no_repeat_ngram_size=0))
    g.state_bank = None
    assert generate_ids(g, batch, GenerationConfig(max_new_tokens=6, no_repeat_ngram_size=0)) == ref
    # another width or another storage dtype: the file is not reused
    assert not ContextStateBank(g.backbone, 80, pad).load(path)
    assert not ContextStateBank(g.backbone, 64, pad, dtype=torch.bfloat16).load(path)
    assert not ContextStateBank(g.backbone, 64, pad).load(tmp_path / "missing.safetensors")


def test_state_bank_used_in_eval_only_when_asked(setup):
    g = build(setup)
    g.state_bank = ContextStateBank(g.backbone, 60, setup["tok"].pad_token_id)
    g.state_bank_in_training = False
    g.train()(g.make_collator()(setup["train"][:3]))
    assert len(g.state_bank) == 0  # training contexts were encoded per batch, not stored
    with torch.no_grad():
        g.eval()(g.make_collator()(setup["train"][:3]))
    assert len(g.state_bank) == 3


def test_run_config_fields_enter_the_name():
    from mscrs_core.experiments.conversation import ConversationRunConfig

    cfg = ConversationRunConfig()
    from mscrs_core.models.backbone import resolve_dtype_name

    assert (cfg.backbone, cfg.prompt_position, cfg.backbone_dtype, cfg.attn_implementation) == (
        "smollm2-135m", "suffix", resolve_dtype_name("auto"), "eager")
    assert ConversationRunConfig.of(prompt_position="prefix").name() != cfg.name()
    assert ConversationRunConfig.of(backbone="tiny-dialogpt").name() != cfg.name()
    with pytest.raises(ValueError, match="prompt_position"):
        ConversationRunConfig.of(prompt_position="middle")
    with pytest.raises(ValueError, match="backbone_dtype"):
        ConversationRunConfig.of(backbone_dtype="bf17")
    # length-grouped batches are the default and name new runs; the plain LM trains nothing, so its name ignores them
    assert cfg.group_by_length == 16 and ConversationRunConfig.of(group_by_length=0).name() != cfg.name()
    plain = ConversationRunConfig.of(model="backbone")
    assert ConversationRunConfig.of(model="backbone", group_by_length=4, epochs=3).name() == plain.name()


def test_conversation_task_length_is_what_a_batch_pads_to(setup):
    from mscrs_core.training.conversation import ConversationTask, ConversationTrainConfig

    g = build(setup, "llama")
    task = ConversationTask(g, ConversationTrainConfig(None, group_by_length=4))
    s = setup["train"][0]
    ctx, resp = task.collator.parts(s)
    assert task.length(s) == len(resp)
    assert task.config.trainer_config().group_by_length == 4
    pre = ConversationTask(build(setup, "llama", prompt_position="prefix"), ConversationTrainConfig(None))
    assert pre.length(s) == len(ctx) + len(resp)


def test_run_state_bank_streams_to_disk_beyond_the_memory_budget(setup, tmp_path):
    """Beyond max_bytes the states are written as they are computed and read back memory-mapped: the same states
    as the in-memory bank; a later call with more contexts adds only the missing ones to the file."""
    from mscrs_core.experiments.conversation import state_bank_for

    g = build(setup, "llama").eval()
    samples = setup["test"][:6]
    memory = state_bank_for(g, samples, "synthetic", "test", tmp_path / "memory")
    first = state_bank_for(g, samples[:3], "synthetic", "test", tmp_path / "disk", max_bytes=1)
    assert len(first) == len({s.context for s in samples[:3]})
    disk = state_bank_for(g, samples, "synthetic", "test", tmp_path / "disk", max_bytes=1)
    assert len(disk) == len(memory)
    batch = g.make_collator(generation=True)(samples)
    a = memory.lookup(batch["context_ids"], batch["context_mask"])
    b = disk.lookup(batch["context_ids"], batch["context_mask"])
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    assert torch.equal(a.attention_mask, b.attention_mask)
    reread = state_bank_for(g, samples, "synthetic", "test", tmp_path / "disk", max_bytes=1)  # all there: read only
    assert len(reread) == len(disk)


def test_a_float32_bank_too_large_for_the_disk_budget_is_stored_in_bfloat16(setup, tmp_path):
    """On a processor without native bfloat16 the backbone runs in float32, which doubles the states: where float32
    passes the disk budget and bfloat16 does not, the bank stores bfloat16 (the states rounded, nothing else)."""
    from mscrs_core.experiments.conversation import state_bank_for

    g = build(setup, "llama").eval()
    assert next(g.backbone.parameters()).dtype == torch.float32
    samples = setup["test"][:6]
    exact = state_bank_for(g, samples, "synthetic", "test", tmp_path / "memory")
    assert exact.dtype == torch.float32
    batch = g.make_collator(generation=True)(samples)
    a = exact.lookup(batch["context_ids"], batch["context_mask"])
    fp32_bytes = (a.keys.numel() + a.values.numel()) * 4 * len(exact) // len(samples) + 1
    half = state_bank_for(g, samples, "synthetic", "test", tmp_path / "disk", max_bytes=1,
                          max_disk_bytes=fp32_bytes * 3 // 4)
    assert half is not None and half.dtype == torch.bfloat16 and len(half) == len(exact)
    b = half.lookup(batch["context_ids"], batch["context_mask"])
    assert torch.equal(b.keys, a.keys.to(torch.bfloat16)) and torch.equal(b.values, a.values.to(torch.bfloat16))
    assert state_bank_for(g, samples, "synthetic", "test", tmp_path / "none", max_bytes=1,
                          max_disk_bytes=fp32_bytes // 4) is None



def test_a_bfloat16_training_bank_takes_the_float32_validation_rows_and_trains(setup, tmp_path):
    """Chapter 6 on a float32 backbone: the training bank, stored in bfloat16 (over the disk budget in float32),
    takes in the float32 validation bank, and a training step on rows of both runs on the float32 backbone, as
    if the contexts were encoded now but for the rounding."""
    from mscrs_core.experiments.conversation import state_bank_for

    g = build(setup, "llama").train()
    train, valid = setup["train"][:6], setup["test"][:4]
    probe = state_bank_for(g, train, "synthetic", "train", tmp_path / "probe")
    gen = g.make_collator(generation=True)
    tb = gen(train)
    a = probe.lookup(tb["context_ids"], tb["context_mask"])
    fp32_bytes = (a.keys.numel() + a.values.numel()) * 4 * len(probe) // len(train) + 1
    train_bank = state_bank_for(g, train, "synthetic", "train", tmp_path, max_bytes=1,
                                max_disk_bytes=fp32_bytes * 3 // 4)
    valid_bank = state_bank_for(g, valid, "synthetic", "valid", tmp_path)
    assert train_bank.dtype == torch.bfloat16 and valid_bank.dtype == torch.float32
    train_bank.merge(valid_bank)  # the run's order: the validation rows join the training bank
    assert len(train_bank) == len(probe) + len(valid_bank)
    vb = gen(valid)
    exact = valid_bank.lookup(vb["context_ids"], vb["context_mask"])
    kept = train_bank.lookup(vb["context_ids"], vb["context_mask"])
    assert torch.equal(kept.keys, exact.keys.to(torch.bfloat16)) and torch.equal(kept.values,
                                                                                   exact.values.to(torch.bfloat16))
    mixed = g.make_collator()(train[:2] + valid[:2])
    g.state_bank, g.state_bank_in_training = train_bank, True
    loss, grads = _loss_and_grads(g, mixed, cached=True)
    g.state_bank = None
    ref_loss, ref_grads = _loss_and_grads(g, mixed, cached=True)  # the contexts encoded now, in float32
    assert loss == pytest.approx(ref_loss, rel=2e-2)
    assert set(grads) == set(ref_grads) and all(torch.isfinite(v).all() for v in grads.values())


def test_run_state_bank_is_saved_keyed_and_reloaded(setup, tmp_path):
    from mscrs_core.experiments.conversation import state_bank_for
    from mscrs_core.models.context_states import bank_file_name

    g = build(setup, "llama").eval()
    samples = setup["test"][:5]
    bank = state_bank_for(g, samples, "synthetic", "test", tmp_path)
    path = tmp_path / "context-states" / bank_file_name(g.backbone, "synthetic", "conv-test", 60)
    assert bank is not None and path.is_file() and len(bank) == len({s.context for s in samples})
    stamp = path.stat().st_mtime_ns
    again = state_bank_for(g, samples, "synthetic", "test", tmp_path)  # loaded, nothing new: not rewritten
    assert len(again) == len(bank) and path.stat().st_mtime_ns == stamp
    batch = g.make_collator(generation=True)(samples)
    a, b = bank.lookup(batch["context_ids"], batch["context_mask"]), again.lookup(batch["context_ids"],
                                                                                  batch["context_mask"])
    assert torch.equal(a.keys, b.keys)
    # too big for memory and for the disk budget: every batch encodes its contexts
    assert state_bank_for(g, samples, "synthetic", "test", tmp_path, max_bytes=1, max_disk_bytes=1) is None
    g.config.prompt_position = "prefix"
    assert state_bank_for(g, samples, "synthetic", "test", tmp_path) is None


def test_plain_backbone_batches_by_length_and_answers_in_the_given_order(setup, monkeypatch):
    """Chapter 7's plain-backbone row decodes contexts of similar length together: the responses come back in the
    samples' order and equal those decoded one context at a time (no padding at all)."""
    import mscrs_core.models.generate as generate
    from mscrs_core.experiments.conversation import ConversationRunConfig, _plain_backbone

    tok = setup["tok"]
    backbone = _backbone("llama", len(tok), tok.eos_token_id)
    samples = [s for s in setup["test"] if s.context][:7]
    assert len({len(s.context) for s in samples}) > 1  # contexts of several lengths: the order matters
    cfg = ConversationRunConfig.of(backbone="tiny-dialogpt", max_new_tokens=6, no_repeat_ngram_size=0)
    monkeypatch.setattr(generate, "GENERATION_BATCH_SIZE", 1)
    one_by_one = _plain_backbone(backbone, tok, samples, cfg)
    assert len(set(one_by_one)) > 1  # a misplaced response would show
    monkeypatch.setattr(generate, "GENERATION_BATCH_SIZE", 3)
    assert _plain_backbone(backbone, tok, samples, cfg) == one_by_one
    assert _plain_backbone(backbone, tok, samples[::-1], cfg) == one_by_one[::-1]


@pytest.mark.parametrize("position", ["suffix", "prefix"])
@pytest.mark.parametrize("beams", [1, 3])
def test_context_block_ngram_never_repeats_the_contexts_ngrams(setup, position, beams):
    """GenerationConfig.context_block_ngram (the chat's decoding): no generated n-gram is an n-gram of the dialog
    context, in both prompt orders (explicit loop and Hugging Face generate), greedy and beam."""
    import dataclasses

    from mscrs_core.data.schema import RECOMMENDER
    from mscrs_core.models.generate import context_ngrams, decode

    g = build(setup, "llama", prompt_position=position).eval()
    collator = g.make_collator(generation=True)
    samples = sorted(setup["test"], key=lambda s: -len(collator.parts(s)[0]))[:3]  # the longest contexts
    free = GenerationConfig(max_new_tokens=14, min_new_tokens=14, num_beams=beams, no_repeat_ngram_size=0)
    # a chat's situation: the system's previous answer is in the context (this random generator repeats itself)
    said = generate_ids(g, collator(samples), free)
    samples = [dataclasses.replace(s, context=s.context + ((RECOMMENDER, decode(setup["tok"], ids)),))
               for s, ids in zip(samples, said)]
    batch = collator(samples)
    plain = generate_ids(g, batch, free)
    for n in (1, 3):
        blocked = generate_ids(g, batch, dataclasses.replace(free, context_block_ngram=n))
        hits = 0
        for s, row, unblocked in zip(samples, blocked, plain):
            table = context_ngrams(collator.parts(s)[0], n)  # the context's ids (+ "System:")
            assert row and not any(gr[-1] in table.get(gr[:-1], set()) for gr in zip(*[row[i:] for i in range(n)]))
            hits += sum(gr[-1] in table.get(gr[:-1], set()) for gr in zip(*[unblocked[i:] for i in range(n)]))
        if n == 1:
            assert hits > 0  # without the block the context's tokens come back (so this test can fail)
    with pytest.raises(ValueError, match="context_block_ngram"):
        GenerationConfig(context_block_ngram=-1)


@pytest.mark.parametrize("kind", BACKBONES)
def test_greedy_rows_that_finish_leave_the_batch_without_changing_any_row(setup, kind):
    """Finished rows are dropped from the batch and the cache: each row's response is still the one it gets
    decoded alone, whatever the other rows do (EOS forced where a row's own state crosses a threshold, so rows end
    at different steps)."""
    g = build(setup, kind).eval()
    collator = g.make_collator(generation=True)
    base = max(setup["test"], key=lambda s: len(collator.parts(s)[0]))
    (role, text), rest = base.context[0], base.context[1:]
    words = text.split() * 4  # long enough for eight cuts
    # contexts of distinct lengths (so that a row's positions are its own): the first turn cut after j words
    samples = [dataclasses.replace(base, context=((role, " ".join(words[:j])),) + rest) for j in range(1, 9)]
    assert len({len(collator.parts(x)[0]) for x in samples}) == 8
    eos = setup["tok"].eos_token_id
    plain = type(g).token_logits
    lengths = set()
    for threshold in (0.5, 1.0, 1.5, 2.0):
        def token_logits(hidden, threshold=threshold):
            logits = plain(g, hidden)
            logits[:, eos] += 1e4 * (hidden.float()[:, 0] > threshold)  # a function of the row's own state
            return logits
        g.token_logits = token_logits
        try:
            cfg = GenerationConfig(max_new_tokens=12, no_repeat_ngram_size=2)
            batched = generate_ids(g, collator(samples), cfg)
            alone = [generate_ids(g, collator([s]), cfg)[0] for s in samples]
        finally:
            del g.token_logits
        assert batched == alone, threshold
        lengths |= {len(r) for r in batched}
    assert len(lengths) >= 3  # rows did end at different steps


@pytest.mark.parametrize("kind", BACKBONES)
def test_plain_row_after_cached_states_is_hugging_faces_greedy_continuation(setup, kind, tmp_path):
    """The plain-backbone row in the suffix order (plain_context="states"): after the context's cached states and
    "System:", the frozen LM's greedy continuation, token for token what Hugging Face generate gives over the same
    ids; the states are written to the split's bank file once and read back."""
    from mscrs_core.experiments.conversation import ConversationRunConfig, _plain_after_states
    from mscrs_core.models.generate import GenerationConfig
    from mscrs_core.models.plain_generator import PlainGenerator

    tok = setup["tok"]
    backbone = _backbone(kind, len(tok), tok.eos_token_id)
    samples = [s for s in setup["test"] if s.context][:5]
    cfg = ConversationRunConfig.of(model="backbone", backbone="tiny-dialogpt", max_context_length=40)
    assert cfg.plain_context == "states"
    trained = ConversationRunConfig.of(backbone="tiny-dialogpt")
    assert trained.digest() == ConversationRunConfig.of(backbone="tiny-dialogpt", plain_context="generate").digest()
    assert cfg.digest() != ConversationRunConfig.of(model="backbone", backbone="tiny-dialogpt", max_context_length=40,
                                                    plain_context="generate").digest()
    gen_cfg = GenerationConfig(max_new_tokens=6, no_repeat_ngram_size=0)
    got = _plain_after_states(backbone, tok, samples, cfg, gen_cfg, tmp_path)
    collator = PlainGenerator(backbone, tok).make_collator()
    for s, text in zip(samples, got):
        ctx = collator.parts(s)[0][-(40 + len(collator.prefix_ids)):]
        ids = torch.tensor([ctx])
        out = backbone.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[0, len(ctx):].tolist()
        if tok.eos_token_id in out:
            out = out[:out.index(tok.eos_token_id)]
        assert text == tok.decode(out).strip()
    files = list((tmp_path / "context-states").glob("*conv-test*"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    assert _plain_after_states(backbone, tok, samples, cfg, gen_cfg, tmp_path) == got
    assert files[0].stat().st_mtime_ns == stamp  # read back, not recomputed


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bfloat16_only_where_the_hardware_has_it_and_names_the_run(monkeypatch, native):
    """Emulated bfloat16 matrix products are ~50x slower than float32 on AVX2-only CPUs: "auto" must not pick it
    there, and a run records (and is named by) the dtype it really ran in."""
    from mscrs_core.experiments.conversation import ConversationRunConfig
    from mscrs_core.experiments.recommendation import RecRunConfig
    from mscrs_core.models import backbone as bb

    monkeypatch.setattr(bb, "native_bf16", lambda: native)
    expected = "bfloat16" if native else "float32"
    assert bb.resolve_dtype_name("auto") == expected
    assert bb.resolve_dtype_name("float32") == "float32" and bb.resolve_dtype_name("bfloat16") == "bfloat16"
    for config in (ConversationRunConfig, RecRunConfig):
        auto = config.of(backbone_dtype="auto")
        assert auto.backbone_dtype == expected
        # the same digest as the explicit name: runs recorded before "auto" keep theirs on the machine they ran on
        assert auto.name() == config.of(backbone_dtype=expected).name()
        assert auto.name() != config.of(backbone_dtype="float32" if native else "bfloat16").name()
