"""Conversation model of MSCRS (Eq. 25-29), its collator, generation and training loop, on tiny models."""
from __future__ import annotations

import math

import pytest
import torch

from mscrs_core.data.samples import MOVIE_PLACEHOLDER, Sample, conversation_samples
from mscrs_core.data.synthetic import make_synthetic
from mscrs_core.models.collate import context_text
from mscrs_core.models.context_mapping import ContextBank, HashingTextEmbedder, context_string
from mscrs_core.models.conversation import ConversationConfig, MSCRSGenerator
from mscrs_core.models.enhanced_entities import EntityEnhancer
from mscrs_core.models.generate import (
    GenerationConfig, fill_placeholders, generate_ids, generate_responses,
)

EMBED = "hashing:32"


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def setup():
    from transformers import GPT2Config, GPT2LMHeadModel

    from mscrs_core.graphs.comention import comention_graph_from_dataset
    from mscrs_core.graphs.fusion import GraphConfig, SemanticGraphEncoder
    from mscrs_core.graphs.kg import build_kg_edges
    from mscrs_core.graphs.knn import build_knn_graph
    from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer

    ds = make_synthetic(dialogs=(40, 10, 10))
    train, test = conversation_samples(ds.splits["train"], ds), conversation_samples(ds.splits["test"], ds)
    torch.manual_seed(0)
    graph_parts = dict(kg=build_kg_edges(ds.kg), collab=comention_graph_from_dataset(ds, 1),
                       text=build_knn_graph(torch.randn(ds.num_items, 8), 3))
    tok = build_reduced_tokenizer([context_text(s.context, "<|endoftext|>") + s.response for s in train]
                                  + ["System:"])

    def build(**cfg_kw) -> MSCRSGenerator:
        torch.manual_seed(0)
        enc = SemanticGraphEncoder(ds.num_entities, graph_parts["kg"], torch.tensor(ds.item_ids),
                                   GraphConfig(dim=16, use_image=False), collab=graph_parts["collab"],
                                   text=graph_parts["text"])
        backbone = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                              bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
        backbone.requires_grad_(False).eval()
        kw = dict(max_entities=8, n_entity_prompt=2, n_task_prompt=3, max_neighbours=6, mapping_k=3,
                  mapping_mlp_hidden=16, text_embedder=EMBED)
        kw.update(cfg_kw)
        cfg = ConversationConfig(**kw)
        emb = HashingTextEmbedder(32)
        bank = None
        if cfg.use_context_mapping:
            enh = EntityEnhancer(enc.neighbours, max_neighbours=cfg.max_neighbours, enabled=cfg.use_enhanced_entities)
            bank = ContextBank.build(train, enh, emb, ds.num_entities, k=cfg.mapping_k)
        return MSCRSGenerator(enc, backbone, tok, cfg, bank=bank, embedder=emb)

    return {"ds": ds, "train": train, "test": test, "build": build, "tok": tok, "parts": graph_parts}


# ------------------------------------------------------------------------------------------ Eq. (25)


def test_enhanced_entities_order_cap_and_sources():
    table = {1: {"kg": {5, 6}, "collab": {2}}, 2: {"kg": {5, 7}, "text": {8, 1}}}
    calls = []

    def nb(ids):
        ids = list(ids)
        calls.append(ids)
        return {g: set(v) for g, v in table[ids[0]].items()}

    full = EntityEnhancer(nb, max_neighbours=None)([1, 2, 1])
    assert full.context == (1, 2)
    # 5 touches both context entities; 6, 7, 8 one each (tie -> id); context entities are never neighbours
    assert full.neighbours == (5, 6, 7, 8)
    assert full.touches == {5: 2, 6: 1, 7: 1, 8: 1}
    assert full.sources[8] == ("text",) and full.sources[5] == ("kg",)
    assert full.entities == (1, 2, 5, 6, 7, 8)
    assert full.slot_order() == (8, 7, 6, 5, 1, 2)
    capped = EntityEnhancer(nb, max_neighbours=2)([1, 2])
    assert capped.neighbours == (5, 6) and capped.dropped == 2
    assert capped.by_graph() == {"kg": (5, 6)}
    off = EntityEnhancer(nb, enabled=False)([1, 2])
    assert off.entities == (1, 2) and off.neighbours == ()


def test_enhanced_entities_from_semantic_graph_encoder(setup):
    g = setup["build"]()
    ds = setup["ds"]
    item = ds.item_ids[0]
    genre = int(ds.kg.tail[(ds.kg.head == item) & (ds.kg.relation == 0)][0])
    enh = g.enhancer([item])
    assert genre in enh.neighbours and "kg" in enh.sources[genre]
    assert set(enh.by_graph()) <= {"kg", "collab", "text"}


# ------------------------------------------------------------------------------------------ Eq. (26)


def test_context_bank_topk_and_weights_by_hand():
    # contexts a, b (dialog d1), c, d (dialog d2); sets chosen so overlaps are easy to count
    sets = [(1, 2, 3), (1, 2), (2, 3), (9,)]
    bank = ContextBank(["d1#1", "d1#2", "d2#1", "d3#1"], ["d1", "d1", "d2", "d3"], sets, torch.eye(4), 10, k=2)
    # training graph (own dialog excluded): a -> c (2), b -> c (1), c -> a (2), b (1); d: none
    # symmetrised degrees: a: {c} = 1, b: {c} = 1, c: {a, b} = 2, d: 0 -> clamped to 1
    assert bank.degree.tolist() == [1.0, 1.0, 2.0, 1.0]
    r = bank.lookup([(1, 2, 3)], ["d1#1"])  # training context a
    assert r.index[0].tolist() == [2, -1]  # c only: b is its own dialog, d shares nothing
    assert r.weight[0, 0].item() == pytest.approx(1 / math.sqrt(1 * 2))
    q = bank.lookup([(1, 2)])  # an unseen (test) context: may retrieve every training context
    assert q.index[0].tolist() == [0, 1]  # overlap 2 with a and b; tie -> lower index first
    assert q.overlap[0].tolist() == [2, 2]
    assert q.weight[0].tolist() == pytest.approx([1 / math.sqrt(2 * 1), 1 / math.sqrt(2 * 1)])
    assert bank.lookup([(8,)]).index[0].tolist() == [-1, -1]  # shares nothing: no neighbour
    with pytest.raises(ValueError, match="ids must lie"):
        bank.lookup([(42,)])
    again = ContextBank.from_state(bank.state())
    assert again.entity_sets == bank.entity_sets and again.degree.tolist() == bank.degree.tolist()


def test_mapping_never_leaks_test_dialogs(setup):
    g = setup["build"]()
    train, test = setup["train"], setup["test"]
    bank = g.bank
    assert all(d.startswith("train-") for d in bank.dialog_ids) and len(bank) == len(train)
    feats = g.featurizer(test)
    idx = feats["nb_index"]
    assert (idx >= 0).any()
    assert all(bank.dialog_ids[int(i)].startswith("train-") for i in idx.flatten() if i >= 0)
    # training contexts never retrieve themselves nor another sample of their own dialog
    tr = g.featurizer(train)["nb_index"]
    for s, row in zip(train, tr):
        assert all(bank.dialog_ids[int(i)] != s.dialog_id for i in row if i >= 0)
    # adding test contexts to the bank's query never changes a training context's neighbours
    both = g.featurizer(list(train[:5]) + list(test[:5]))["nb_index"][:5]
    assert torch.equal(both, tr[:5])


def test_prefill_encodes_only_what_the_bank_lacks_once_through_the_disk_cache(setup, tmp_path):
    """ContextFeaturizer.prefill: the contexts outside the bank, encoded in one pass (through the embedder's
    on-disk cache when it has one) and memoised; the collator then encodes nothing and gets the same features."""
    from mscrs_core.models.context_mapping import ContextFeaturizer

    g = setup["build"]()
    train, test = setup["train"], setup["test"]
    calls = []

    class Counting:  # the hashing embedder, with MiniLMContextEmbedder's keyed disk cache faked by a dict
        store: dict = {}

        def __call__(self, texts):
            calls.append(len(texts))
            return HashingTextEmbedder(32)(texts)

        def encode_keyed(self, texts, tag):
            if tag not in self.store:
                self.store[tag] = self(list(texts.values()))
            return self.store[tag]

    counting = Counting()
    want = ContextFeaturizer(g.bank, HashingTextEmbedder(32), g.enhancer)(test)
    f = ContextFeaturizer(g.bank, counting, g.enhancer)
    assert f.prefill(list(train[:3]) + list(test)) == len({(s.dialog_id, s.turn_index) for s in test})
    assert calls == [len(test)]  # training contexts come from the bank; the rest in one pass
    got = f(test)
    assert calls == [len(test)] and f.prefill(test) == 0  # memoised: nothing encoded again
    assert torch.allclose(got["ctx_emb"], want["ctx_emb"]) and torch.equal(got["nb_index"], want["nb_index"])
    again = ContextFeaturizer(g.bank, counting, g.enhancer)  # a later run: read back from the cache
    again.prefill(test)
    assert calls == [len(test)] and torch.allclose(again(test)["ctx_emb"], want["ctx_emb"])


def test_context_string_keeps_recent_turns():
    ctx = (("seeker", "a" * 50), ("recommender", "b" * 50), ("seeker", "last"))
    s = context_string(ctx, max_chars=70)
    assert s.endswith("User: last") and "a" * 50 not in s


# ------------------------------------------------------------------------------------------ collator, Eq. (27)-(29)


def test_collator_supervises_response_only(setup):
    g = setup["build"]()
    tok = setup["tok"]
    s = setup["train"][1]
    batch = g.make_collator()([s, setup["train"][0]])
    lab, ids = batch["labels"][0], batch["input_ids"][0]
    sup = lab != -100
    assert tok.decode(ids[sup]).strip() == s.response + tok.eos_token
    assert int((ids[sup] == g.placeholder_id).sum()) == s.response.count(MOVIE_PLACEHOLDER) == 1
    assert not (batch["context_mask"][0].bool() & sup).any()  # T_s never sees the response
    assert tok.decode(ids[batch["context_mask"][0].bool()]).endswith("System:")
    g_all = setup["build"](loss_on="all", graph_prompt="authors_code")
    b_all = g_all.make_collator()([s])
    assert torch.equal(b_all["labels"][0][b_all["attention_mask"][0].bool()],
                       b_all["input_ids"][0][b_all["attention_mask"][0].bool()])


def test_prompt_is_eq27_and_ignores_response(setup):
    g = setup["build"]().eval()
    s = setup["test"][0]
    other = Sample(s.dialog_id, s.turn_index, s.context, s.context_entities, "something else entirely")
    col = g.make_collator()
    with torch.no_grad():
        b1, b2 = col([s]), col([other])
        p1, _ = g.build_prompt(b1, g.embed_tokens(b1["input_ids"]))
        p2, _ = g.build_prompt(b2, g.embed_tokens(b2["input_ids"]))
        assert torch.allclose(p1, p2)  # the prompt depends on the context only
        emb = g.embed_tokens(b1["input_ids"])
        table = g.graph_encoder()
        t_hat = g.prompt_encoder(table[b1["entity_ids"]], b1["entity_mask"], emb, b1["context_mask"]).prompt[:, :2]
        e_hat = g.mapping(b1["ctx_emb"], b1["nb_emb"], b1["nb_weight"])
        assert torch.allclose(p1[:, :2], (e_hat + t_hat) / 2, atol=1e-6)  # Eq. (27)
        assert torch.allclose(p1[:, 2:], g.prompt_encoder.task_prompt.unsqueeze(0))  # O_cov


def test_ablation_switches_and_authors_variant(setup):
    s = setup["train"][0]
    assert setup["build"]().config.ablation == "MSCRS"
    no_s = setup["build"](use_enhanced_entities=False)
    assert no_s.config.ablation == "w/o -s" and no_s.slot_entities(s) == s.context_entities
    no_c = setup["build"](use_context_mapping=False)
    assert no_c.mapping is None and "ctx_emb" not in no_c.make_collator()([s])
    assert setup["build"](use_context_mapping=False, use_enhanced_entities=False).config.ablation == "w/o -all"
    with pytest.raises(ValueError, match="graph_prompt"):
        ConversationConfig(graph_prompt="nope")

    def loss_after_graph_change(g):
        b = g.make_collator()([s])
        with torch.no_grad():
            before = float(g(b).loss)
            for p in g.graph_encoder.parameters():
                p.add_(1.0)
            return before, float(g(b).loss)

    before, after = loss_after_graph_change(setup["build"](graph_prompt="authors_code"))
    assert before == after  # the authors' code discards the graph embeddings
    before, after = loss_after_graph_change(setup["build"]())
    assert before != after


def test_loss_decreases_and_backbone_frozen(setup, tmp_path):
    from mscrs_core.training.conversation import ConversationTrainConfig, evaluate_loss, train_generator

    g = setup["build"]()
    frozen = {k: v.clone() for k, v in g.backbone.state_dict().items()}
    train, valid = setup["train"][:24], setup["train"][24:32]
    before = evaluate_loss(g, train)["loss"]
    res = train_generator(g, train, valid, ConversationTrainConfig(str(tmp_path), epochs=3, batch_size=8, lr=3e-2,
                                                                   warmup_ratio=0.0, progress=False))
    after = evaluate_loss(g, train)["loss"]
    assert after < before - 1.0, (before, after)
    assert len(res.history) == 3 and res.best_path.is_file() and res.last_path.is_file()
    for k, v in g.backbone.state_dict().items():
        if "wte" in k or "lm_head" in k:
            assert torch.equal(v[:g.placeholder_id], frozen[k][:g.placeholder_id])  # only the placeholder row moves
        else:
            assert torch.equal(v, frozen[k]), k
    # resume: a finished run re-loads and trains nothing more, with the same best epoch
    again = train_generator(g, train, valid, ConversationTrainConfig(str(tmp_path), epochs=3, batch_size=8, lr=3e-2,
                                                                     warmup_ratio=0.0, progress=False))
    assert again.best_epoch == res.best_epoch and again.history == res.history


# ------------------------------------------------------------------------------------------ generation


def test_placeholder_is_one_token(setup):
    g = setup["build"]()
    tok = setup["tok"]
    assert tok("watch <movie> now", add_special_tokens=False)["input_ids"].count(g.placeholder_id) == 1
    assert g.backbone.get_input_embeddings().weight.shape[0] > g.placeholder_id


def test_fill_placeholders():
    names = {10: "Alien", 11: "Heat", 12: "Up"}.get
    text, used = fill_placeholders("try <movie> or <movie>!", [10, 11, 12], names, exclude=[10])
    assert text == "try Heat or Up!" and used == [11, 12]
    text, used = fill_placeholders("<movie> <movie>", [11], names)
    assert text == "Heat <movie>" and used == [11]
    with pytest.raises(ValueError, match="placeholders"):
        fill_placeholders("<movie> <movie>", [11], names, strict=True)


def test_generate_responses_fills_from_rank(setup, monkeypatch):
    import mscrs_core.models.generate as gen_mod

    g = setup["build"]()
    tok = setup["tok"]
    fixed = tok("you might like <movie> and <movie>", add_special_tokens=False)["input_ids"]
    monkeypatch.setattr(gen_mod, "generate_ids", lambda gen, batch, config=None: [fixed] * len(batch["input_ids"]))
    s = next(x for x in setup["test"] if x.mentioned_items)
    seen = []

    def rank(sample):
        seen.append(sample)
        return [s.mentioned_items[0], 1000, 1001]

    out = generate_responses(g, [s], rank=rank, name_of=lambda e: f"M{e}")
    assert out[0].raw == "you might like <movie> and <movie>"
    assert out[0].text == "you might like M1000 and M1001" and out[0].items == [1000, 1001]  # mentioned item skipped
    assert seen == [s]


def test_greedy_matches_manual_loop_and_beam_runs(setup):
    g = setup["build"]().eval()
    samples = [setup["test"][0], setup["test"][3]]
    batch = g.make_collator(generation=True)(samples)
    greedy = generate_ids(g, batch, GenerationConfig(max_new_tokens=6, no_repeat_ngram_size=0))
    with torch.no_grad():
        emb, mask, _, _ = g.inputs_embeds(batch)
        manual = [[], []]
        for _ in range(6):
            pos = (mask.cumsum(1) - 1).clamp_min(0)
            nxt = g.backbone(inputs_embeds=emb, attention_mask=mask, position_ids=pos).logits[:, -1].argmax(-1)
            for i in range(2):
                manual[i].append(int(nxt[i]))
            emb = torch.cat([emb, g.backbone.get_input_embeddings()(nxt)[:, None]], 1)
            mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], 1)
    eos = setup["tok"].eos_token_id
    manual = [m[: m.index(eos)] if eos in m else m for m in manual]
    assert greedy == manual
    beam = generate_ids(g, batch, GenerationConfig(max_new_tokens=6, num_beams=3, no_repeat_ngram_size=1))
    assert len(beam) == 2 and all(len(b) <= 6 for b in beam)
    assert all(len(set(b)) == len(b) for b in beam)  # no repeated 1-gram
    one_beam = generate_ids(g, batch, GenerationConfig(max_new_tokens=6, num_beams=1, no_repeat_ngram_size=0))
    assert one_beam == greedy
