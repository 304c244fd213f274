"""``mscrs chat``: checkpoint round trip, a scripted 3-turn conversation, clear errors for bad checkpoints."""
from __future__ import annotations

import io

import pytest
import torch

from mscrs_core.chat import ChatSession, GraphInputs, load_chat_checkpoint, main, save_chat_checkpoint
from mscrs_core.data.samples import conv_samples
from mscrs_core.data.synthetic import make_synthetic
from mscrs_core.models.collate import context_text
from mscrs_core.models.context_mapping import ContextBank, HashingTextEmbedder
from mscrs_core.models.conversation import ConvConfig, MSCRSGenerator
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
    train = conv_samples(ds.splits["train"], ds)
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
    cfg = ConvConfig(max_entities=8, n_entity_prompt=2, n_task_prompt=3, max_neighbours=6, mapping_k=3,
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
    return {"dir": d, "gen": gen, "rec": rec, "ds": ds}


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
    (bad / "generator.pt").write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match=r"generator\.pt: corrupt"):
        load_chat_checkpoint(bad)
    assert main(["--checkpoint", str(bad)], stdin=io.StringIO("hi\n")) == 2
    assert "generator.pt" in capsys.readouterr().err
    (bad / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"config\.json: corrupt"):
        load_chat_checkpoint(bad)
    gone = tmp_path / "gone"
    shutil.copytree(checkpoint["dir"], gone)
    (gone / "graphs.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"graphs\.pt"):
        load_chat_checkpoint(gone)


def test_stdin_session(checkpoint, capsys):
    rc = main(["--checkpoint", str(checkpoint["dir"]), "--max-new-tokens", "4"],
              stdin=io.StringIO("hello\n/reset\nI loved Movie 1-2\n"))
    out = capsys.readouterr().out
    assert rc == 0 and out.count("User: ") == 2 and "-- new dialog --" in out
