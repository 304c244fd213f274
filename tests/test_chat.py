"""``mscrs chat``: checkpoint round trip, a scripted 3-turn conversation, clear errors for bad checkpoints."""
from __future__ import annotations

import io

import pytest
import torch

from mscrs_core.chat import (ChatSession, ChatTurn, GraphInputs, carried_over, format_turn, load_chat_checkpoint,
                              main, save_chat_checkpoint)
from mscrs_core.data.samples import conversation_samples
from mscrs_core.data.synthetic import make_synthetic
from mscrs_core.models.collate import context_text
from mscrs_core.models.context_mapping import ContextBank, HashingTextEmbedder
from mscrs_core.models.conversation import ConversationConfig, MSCRSGenerator
from mscrs_core.models.enhanced_entities import EntityEnhancer

SCRIPT = "# a comment line\nhi, I like Genre1 movies\n\nI loved Movie 1-2\nanything else?\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    from mscrs_core.graphs.comention import comention_graph_from_dataset
    from mscrs_core.graphs.fusion import GraphConfig
    from mscrs_core.graphs.kg import build_kg_edges
    from mscrs_core.graphs.knn import build_knn_graph
    from mscrs_core.models.recommender import MSCRSRecommender
    from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer

    ds = make_synthetic(dialogs=(30, 5, 5))
    train = conversation_samples(ds.splits["train"], ds)
    torch.manual_seed(0)
    graphs = GraphInputs.from_parts(ds.num_entities, ds.item_ids, build_kg_edges(ds.kg),
                                    comention_graph_from_dataset(ds, 1),
                                    build_knn_graph(torch.randn(ds.num_items, 8), 3))
    tok = build_reduced_tokenizer([context_text(s.context, "<|endoftext|>") + s.response for s in train]
                                  + ["System:", SCRIPT])
    backbone = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                          bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    backbone.requires_grad_(False).eval()
    gcfg = GraphConfig(dim=16, use_image=False)
    cfg = ConversationConfig(max_entities=8, n_entity_prompt=2, n_task_prompt=3, max_neighbours=6, mapping_k=3,
                             mapping_mlp_hidden=16, text_embedder="hashing:32")
    enc = graphs.encoder(gcfg)
    emb = HashingTextEmbedder(32)
    bank = ContextBank.build(train, EntityEnhancer(enc.neighbours, max_neighbours=6), emb, ds.num_entities, k=3)
    gen = MSCRSGenerator(enc, backbone, tok, cfg, bank=bank, embedder=emb)
    with torch.no_grad():
        gen.prompt_encoder.task_prompt.normal_()  # "trained" weights differ from a fresh init
    rec = MSCRSRecommender(graphs.encoder(gcfg), backbone, torch.tensor(ds.item_ids), tokenizer=tok,
                           max_entities=8, n_entity_prompt=2, n_task_prompt=2)
    d = tmp_path_factory.mktemp("chat") / "ckpt"
    save_chat_checkpoint(d, generator=gen, dataset=ds, graphs=graphs, recommender=rec)
    return {"dir": d, "gen": gen, "rec": rec, "ds": ds, "graphs": graphs}


def test_round_trip_restores_weights(checkpoint):
    bundle = load_chat_checkpoint(checkpoint["dir"])
    for k, v in checkpoint["gen"].trainable_state_dict().items():
        assert torch.equal(bundle.generator.trainable_state_dict()[k], v), k
    for k, v in checkpoint["rec"].trainable_state_dict().items():
        assert torch.equal(bundle.recommender.trainable_state_dict()[k], v), k
    assert bundle.generator.config == checkpoint["gen"].config
    assert len(bundle.generator.bank) == len(checkpoint["gen"].bank)
    assert bundle.generator.tokenizer.convert_tokens_to_ids("<movie>") == checkpoint["gen"].placeholder_id


def test_scripted_three_turn_conversation(checkpoint, tmp_path, capsys):
    script = tmp_path / "script.txt"
    script.write_text(SCRIPT, encoding="utf-8")
    rc = main(["--checkpoint", str(checkpoint["dir"]), "--script", str(script), "--max-new-tokens", "8",
               "--top-k", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert [ln.split(":")[0] for ln in lines if ln.startswith(("User:", "System:"))] == ["User", "System"] * 3
    assert "User: I loved Movie 1-2" in lines
    assert any(ln.startswith("  linked: ") and "Movie 1-2" in ln for ln in lines)
    assert any(ln.startswith("  linked: ") and "genre1" in ln for ln in lines)
    assert sum(ln.startswith("  recommended: ") for ln in lines) == 3
    assert any(ln.startswith("  graph neighbours: ") and "kg: " in ln for ln in lines)


def test_session_keeps_history_and_entities(checkpoint):
    ds = checkpoint["ds"]
    session = ChatSession.load(checkpoint["dir"], top_k=4)
    movie = next(e for e, n in ds.entity_names.items() if n == "Movie 1-2")
    t1 = session.respond("I loved Movie 1-2")
    assert t1.linked == [(movie, "Movie 1-2")]
    assert len(t1.recommended) == 4 and movie not in [e for e, _ in t1.recommended]  # mentioned: not recommended
    assert "kg" in t1.neighbours  # its genre and cast, Eq. (25)
    assert all(k.startswith("train-") for k in t1.retrieved_contexts)  # Eq. (26) bank: training contexts only
    session.respond("what else?")
    assert [r for r, _ in session.history] == ["seeker", "recommender"] * 2
    assert session.entities[0] == movie
    session.reset()
    assert session.history == [] and session.entities == []


def test_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_chat_checkpoint(missing)
    assert main(["--checkpoint", str(missing)], stdin=io.StringIO("hi\n")) == 2
    assert str(missing) in capsys.readouterr().err


def test_corrupt_and_incomplete_checkpoints(checkpoint, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(checkpoint["dir"], bad)
    (bad / "generator" / "model.safetensors").write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match=r"generator/model\.safetensors: corrupt"):
        load_chat_checkpoint(bad)
    assert main(["--checkpoint", str(bad)], stdin=io.StringIO("hi\n")) == 2
    assert "generator/model.safetensors" in capsys.readouterr().err
    (bad / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"config\.json: corrupt"):
        load_chat_checkpoint(bad)
    gone = tmp_path / "gone"
    shutil.copytree(checkpoint["dir"], gone)
    (gone / "generator" / "graphs.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"graphs\.safetensors"):
        load_chat_checkpoint(gone)
    (gone / "generator" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"generator/config\.json"):
        load_chat_checkpoint(gone)


def _save_v1(d, gen, rec, ds, graphs):
    """A checkpoint of the previous format (mscrs-chat/1), as the former save_chat_checkpoint wrote it."""
    import json
    from dataclasses import asdict

    d.mkdir(parents=True)
    gen.tokenizer.save_pretrained(d / "tokenizer")
    gen.sync_placeholder()
    gen.backbone.save_pretrained(d / "backbone")
    gen.tokenizer.save_pretrained(d / "backbone")
    torch.save(rec.trainable_state_dict(), d / "recommender.pt")
    torch.save(gen.trainable_state_dict(), d / "generator.pt")
    torch.save(gen.bank.state(), d / "context_bank.pt")
    torch.save(asdict(graphs), d / "graphs.pt")
    (d / "entities.json").write_text(json.dumps({
        "entity2id": ds.entity2id, "item_ids": list(ds.item_ids),
        "entity_names": {str(k): v for k, v in ds.entity_names.items()}}))
    gen_config = gen.config.to_dict()  # mscrs-chat/1 predates the rename of graph_variant to graph_prompt
    gen_config["graph_variant"] = gen_config.pop("graph_prompt")
    (d / "config.json").write_text(json.dumps({
        "format": "mscrs-chat/1", "dataset": ds.name,
        "backbone": {"source": None, "gguf_file": None, "saved": True, "dtype": "float32", "attn_implementation": None},
        "generator": gen_config, "generator_graph_config": asdict(gen.graph_encoder.config),
        "recommender": {"config": rec.config.to_dict(), "lm_path": rec.lm_path,
                        "graph_config": asdict(rec.graph_encoder.config)}}))


def test_previous_format_still_loads(checkpoint, tmp_path):
    d = tmp_path / "v1"
    _save_v1(d, checkpoint["gen"], checkpoint["rec"], checkpoint["ds"], checkpoint["graphs"])
    bundle = load_chat_checkpoint(d)
    for k, v in checkpoint["gen"].trainable_state_dict().items():
        assert torch.equal(bundle.generator.trainable_state_dict()[k], v), k
    for k, v in checkpoint["rec"].trainable_state_dict().items():
        assert torch.equal(bundle.recommender.trainable_state_dict()[k], v), k
    assert _responses(d, DIALOG_A) == _responses(checkpoint["dir"], DIALOG_A)


def test_python_dash_m_runs_the_command_line(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mscrs_core.chat", "--checkpoint", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "mscrs chat: error:" in out.stderr and "nope" in out.stderr


def test_stdin_session(checkpoint, capsys):
    rc = main(["--checkpoint", str(checkpoint["dir"]), "--max-new-tokens", "4"],
              stdin=io.StringIO("hello\n/reset\nI loved Movie 1-2\n"))
    out = capsys.readouterr().out
    assert rc == 0 and out.count("User: ") == 2 and "-- new dialog --" in out


DIALOG_A = ["hi, I like Genre1 movies", "I loved Movie 1-2"]
DIALOG_B = ["anything scary?", "no, something else please", "thanks"]


def _responses(directory, dialog):
    session = ChatSession.load(directory, top_k=3,
                               generation=__import__("mscrs_core.models.generate", fromlist=["x"]).GenerationConfig(
                                   max_new_tokens=8, no_repeat_ngram_size=3))
    return [session.respond(u).raw_response for u in dialog]


def test_two_dialogs_get_different_responses(checkpoint):
    a, b = _responses(checkpoint["dir"], DIALOG_A), _responses(checkpoint["dir"], DIALOG_B)
    # (a random tiny GPT-2 may open both dialogs alike; over the dialog the responses must follow the input)
    assert a != b and set(a) != set(b)
    assert _responses(checkpoint["dir"], DIALOG_A) == a  # deterministic


def test_two_dialogs_get_different_top5_lists(checkpoint):
    def tops(dialog):
        session = ChatSession.load(checkpoint["dir"], top_k=5)
        return [[e for e, _ in session.respond(u).recommended] for u in dialog]

    a, b = tops(DIALOG_A), tops(DIALOG_B)
    assert all(len(t) == 5 for t in a + b)
    assert a[-1] != b[-1]  # the last turns' lists follow what each dialog said


def test_the_chat_does_not_answer_every_turn_with_the_same_sentence(checkpoint):
    """The chat's default decoding blocks the dialog's own trigrams (context_block_ngram=3): the same request
    three times gets three different answers (the token-level guarantee is tested in
    test_models_conversation_suffix.py::test_context_block_ngram_never_repeats_the_contexts_ngrams)."""
    from mscrs_core.chat.session import CHAT_CONTEXT_BLOCK_NGRAM, CHAT_NUM_BEAMS
    from mscrs_core.models.generate import GenerationConfig

    said = ["hi, I like Genre1 movies"] * 3
    free = ChatSession.load(checkpoint["dir"], generation=GenerationConfig(max_new_tokens=8, min_new_tokens=8))
    unblocked = [free.respond(u).raw_response for u in said]
    session = ChatSession.load(checkpoint["dir"], generation=GenerationConfig(max_new_tokens=8, min_new_tokens=8,
                                                                             context_block_ngram=3))
    default = ChatSession.load(checkpoint["dir"]).generation
    assert (default.context_block_ngram, default.num_beams) == (CHAT_CONTEXT_BLOCK_NGRAM, CHAT_NUM_BEAMS) == (3, 4)
    turns = [session.respond(u) for u in said]
    raws = [t.raw_response for t in turns]
    assert len(set(raws)) == 3
    assert len(set(unblocked)) < 3  # this random generator does repeat itself without the block


@pytest.fixture(scope="module")
def suffix_checkpoint(tmp_path_factory):
    """A SmolLM2-shaped generator: a tiny bf16 Llama with untied embeddings, the suffix prompt order."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mscrs_core.graphs.fusion import GraphConfig
    from mscrs_core.graphs.kg import build_kg_edges
    from mscrs_core.models.backbone import freeze
    from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer

    ds = make_synthetic(dialogs=(20, 4, 4))
    train = conversation_samples(ds.splits["train"], ds)
    graphs = GraphInputs.from_parts(ds.num_entities, ds.item_ids, build_kg_edges(ds.kg))
    tok = build_reduced_tokenizer([context_text(s.context, "<|endoftext|>") + s.response for s in train]
                                  + ["System:", SCRIPT] + DIALOG_A + DIALOG_B)
    torch.manual_seed(0)
    backbone = freeze(LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok) + 1, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False, bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id)).to(torch.bfloat16))
    cfg = ConversationConfig(max_entities=8, n_entity_prompt=2, n_task_prompt=3, max_neighbours=6, mapping_k=3,
                             mapping_mlp_hidden=16, text_embedder="hashing:32", prompt_position="suffix")
    enc = graphs.encoder(GraphConfig(dim=16, use_image=False, use_collab=False, use_text=False))
    emb = HashingTextEmbedder(32)
    bank = ContextBank.build(train, EntityEnhancer(enc.neighbours, max_neighbours=6), emb, ds.num_entities, k=3)
    gen = MSCRSGenerator(enc, backbone, tok, cfg, bank=bank, embedder=emb)
    with torch.no_grad():
        gen.prompt_encoder.task_prompt.normal_()
    d = tmp_path_factory.mktemp("chat-suffix") / "ckpt"
    save_chat_checkpoint(d, generator=gen, dataset=ds, graphs=graphs, attn_implementation="eager")
    return {"dir": d, "gen": gen}


def test_suffix_bf16_checkpoint_round_trip_and_dialogs(suffix_checkpoint, capsys):
    d = suffix_checkpoint["dir"]
    bundle = load_chat_checkpoint(d)
    assert next(bundle.generator.backbone.parameters()).dtype == torch.bfloat16
    assert bundle.generator.config.prompt_position == "suffix" and bundle.recommender is None
    for k, v in suffix_checkpoint["gen"].trainable_state_dict().items():
        assert torch.equal(bundle.generator.trainable_state_dict()[k], v), k
    a, b = _responses(d, DIALOG_A), _responses(d, DIALOG_B)
    assert a != b and set(a) != set(b)
    assert main(["--checkpoint", str(d), "--max-new-tokens", "4"], stdin=io.StringIO("hello\nmore?\n")) == 0
    assert capsys.readouterr().out.count("System: ") == 2


@pytest.mark.parametrize("top_k", [0, -3, 2.5, True, "5"])
def test_session_rejects_a_bad_top_k(checkpoint, top_k):
    with pytest.raises(ValueError, match="top_k: expected an integer >= 1"):
        ChatSession.load(checkpoint["dir"], top_k=top_k)


def test_the_items_a_response_names_head_that_turns_recommendations(checkpoint, monkeypatch):
    """The <movie> slots take the recommender's top items, and the turn lists those same items first (the items
    join the mentioned ones only after the turn: they were once dropped from their own turn's list)."""
    from mscrs_core.models import generate

    session = ChatSession.load(checkpoint["dir"], top_k=4)
    slots = [session.bundle.generator.placeholder_id] * 2
    monkeypatch.setattr(generate, "generate_ids", lambda *a, **k: [slots])
    turn = session.respond("I loved Movie 1-2")
    assert turn.raw_response == "<movie><movie>" and len(turn.filled) == 2
    assert turn.recommended[:2] == turn.filled
    assert all(e in session.mentioned_items for e, _ in turn.filled)  # not recommended again next turn
    nxt = session.respond("what else?")
    assert not {e for e, _ in turn.filled} & {e for e, _ in nxt.recommended}


def test_filled_slots_read_as_titles_people_write(checkpoint, monkeypatch):
    """A <movie> slot takes the title without DBpedia's disambiguation ("(2019 film)"); the lists keep the entity."""
    from mscrs_core.models import generate

    session = ChatSession.load(checkpoint["dir"], top_k=4)
    monkeypatch.setattr(session.bundle, "name_of", lambda e: f"Title {e} (2019 film)")
    monkeypatch.setattr(generate, "generate_ids", lambda *a, **k: [[session.bundle.generator.placeholder_id]])
    turn = session.respond("I loved Movie 1-2")
    (item, full), = turn.filled
    assert full == f"Title {item} (2019 film)" and turn.response == f"Title {item}"
    assert session.history[-1][1] == f"Title {item}"  # the next turn's context reads the plain title too


def test_carried_over_counts_the_previous_turns_movies_a_turn_keeps():
    def turn(*ids):
        return ChatTurn("u", "r", "r", [(e, f"m{e}") for e in ids], [], [])

    turns = [turn(1, 2, 3), turn(2, 3, 4), turn(5, 6, 7), turn(5, 6, 7)]
    assert carried_over(turns) == [None, 2, 0, 3]
    assert carried_over([]) == []


def test_format_turn_wraps_long_lines_under_their_label_and_keeps_every_word():
    movies = [(i, f"A Rather Long Movie Title Number {i} (2019 film)") for i in range(6)]
    turn = ChatTurn("I want something scary, like The Shining, but newer and a little less slow, please.",
                    "Have you seen it?", "Have you seen it?", movies, [], [(0, "The Shining (film)")],
                    {"kg": movies[:3], "text": movies[3:]})
    flat = format_turn(turn)
    assert max(map(len, flat.splitlines())) > 110  # the unwrapped transcript runs past the page
    wrapped = format_turn(turn, width=60)
    lines = wrapped.splitlines()
    assert max(map(len, lines)) <= 60
    assert len(lines) > len(flat.splitlines())
    assert wrapped.split() == flat.split()  # the same words in the same order, only the breaks move
    rec = [i for i, line in enumerate(lines) if line.startswith("  recommended:")][0]
    assert lines[rec + 1].startswith(" " * 4) and not lines[rec + 1].startswith(" " * 5)
    user = [line for line in lines if not line.startswith(" ")]
    assert user[0].startswith("User: ") and user[-1].startswith("System: ")
    assert format_turn(turn, width=1000) == flat  # nothing to wrap: the same text
    for bad in (10, 0, True, 60.0):
        with pytest.raises(ValueError, match="width"):
            format_turn(turn, width=bad)
