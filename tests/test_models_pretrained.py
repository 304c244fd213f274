"""``save_pretrained`` / ``from_pretrained`` (mscrs_core.models.pretrained) for both models.

Each tiny model is trained for a few steps on the synthetic dataset (random GPT-2 / Llama backbones loaded from a
local folder, as a real backbone is), saved, and loaded with ``from_pretrained`` in a FRESH Python process: the
recommender's scores and the conversation model's greedy generations must be identical. Bad folders (missing
config.json, unknown config fields, wrong tensor shapes, corrupt safetensors) raise one line naming the file.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from mscrs_core.models.conversation import ConversationConfig, MSCRSGenerator
from mscrs_core.models.recommender import MSCRSRecommender, RecommenderConfig

#: run in this process on the trained models and in a fresh process on the loaded ones (same code, same inputs)
PROBE = '''
import torch
from mscrs_core.data.samples import conversation_samples, rec_samples
from mscrs_core.data.synthetic import make_synthetic
from mscrs_core.models.collate import RecCollator
from mscrs_core.models.generate import GenerationConfig, generate_ids

DS = make_synthetic(dialogs=(30, 5, 5))


def rec_scores(model):
    samples = rec_samples(DS.splits["test"], DS.item_ids)[:8]
    batch = RecCollator(model.tokenizer, max_length=64, max_entities=model.config.max_entities)(samples)
    return model.eval().score_items(batch).tolist()


def generations(model):
    samples = [s for s in conversation_samples(DS.splits["test"], DS) if s.context][:4]
    batch = model.make_collator(generation=True)(samples)
    return generate_ids(model, batch, GenerationConfig(max_new_tokens=8, no_repeat_ngram_size=0))
'''

CHILD = PROBE + '''
import json, sys
from mscrs_core.models.conversation import MSCRSGenerator
from mscrs_core.models.recommender import MSCRSRecommender

rec = MSCRSRecommender.from_pretrained(sys.argv[1])
gen = MSCRSGenerator.from_pretrained(sys.argv[2])
print(json.dumps({"scores": rec_scores(rec), "generations": generations(gen), "lm_path": rec.lm_path}))
'''

BACKBONES = {  # (prompt position of the conversation model, dtype, prompt injection)
    "gpt2": ("prefix", torch.float32, "inputs"),  # tied embeddings; the generator resizes the vocabulary for <movie>
    "llama": ("suffix", torch.bfloat16, "inputs"),  # SmolLM2-shaped: untied embeddings, room for <movie>, bf16
    "llama-layers": ("suffix", torch.bfloat16, "layers"),  # the prompt as every layer's keys and values
}


def probe() -> dict:
    ns: dict = {}
    exec(PROBE, ns)  # noqa: S102 -- the test's own code, shared with the fresh process
    return ns


def _train(model, batches, steps: int = 3) -> None:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for i in range(steps):
        opt.zero_grad()
        model(batches[i % len(batches)]).loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def saved(request, tmp_path_factory):
    """A trained recommender and conversation model on one backbone kind, saved; their in-process outputs."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from mscrs_core.graphs.comention import comention_graph_from_dataset
    from mscrs_core.graphs.fusion import GraphConfig
    from mscrs_core.graphs.inputs import GraphInputs
    from mscrs_core.graphs.kg import build_kg_edges
    from mscrs_core.graphs.knn import build_knn_graph
    from mscrs_core.models.backbone import load_backbone
    from mscrs_core.models.collate import RecCollator, context_text
    from mscrs_core.models.context_mapping import ContextBank, HashingTextEmbedder
    from mscrs_core.models.enhanced_entities import EntityEnhancer
    from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer

    kind = request.param
    position, dtype, injection = BACKBONES[kind]
    p = probe()
    ds = p["DS"]
    from mscrs_core.data.samples import conversation_samples, rec_samples

    train = conversation_samples(ds.splits["train"], ds)
    texts = [context_text(s.context, "<|endoftext|>") + s.response for s in train]
    texts += [context_text(s.context, "<|endoftext|>") + s.response
              for s in conversation_samples(ds.splits["test"], ds)]
    tok = build_reduced_tokenizer(texts + ["System:"])
    torch.manual_seed(0)
    if kind == "gpt2":
        backbone = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                              bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    else:
        backbone = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok) + 1, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, tie_word_embeddings=False, bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id))
    root = tmp_path_factory.mktemp(f"pretrained-{kind}")
    folder = root / "backbone"  # "a backbone given by local folder path"
    backbone.save_pretrained(folder)
    tok.save_pretrained(folder)
    graphs = GraphInputs.from_parts(ds.num_entities, ds.item_ids, build_kg_edges(ds.kg),
                                    comention_graph_from_dataset(ds, 1),
                                    build_knn_graph(torch.randn(ds.num_items, 8), 3))

    # recommender (Eq. 17-24), a few training steps
    rec_backbone, rec_tok = load_backbone(str(folder), dtype=dtype)
    torch.manual_seed(1)
    rec = MSCRSRecommender(graphs.encoder(GraphConfig(dim=16, use_image=False)), rec_backbone,
                           torch.tensor(ds.item_ids), tokenizer=rec_tok,
                           config=RecommenderConfig(max_entities=8, n_entity_prompt=2, n_task_prompt=2))
    rec_train = rec_samples(ds.splits["train"], ds.item_ids)
    collate = RecCollator(rec_tok, max_length=64, max_entities=8)
    _train(rec, [collate(rec_train[i:i + 8]) for i in range(0, 24, 8)])

    # conversation model (Eq. 25-29), a few training steps
    gen_backbone, gen_tok = load_backbone(str(folder), dtype=dtype)
    torch.manual_seed(2)
    enc = graphs.encoder(GraphConfig(dim=16, use_image=False))
    emb = HashingTextEmbedder(32)
    bank = ContextBank.build(train, EntityEnhancer(enc.neighbours, max_neighbours=6), emb, ds.num_entities, k=3)
    gen = MSCRSGenerator(enc, gen_backbone, gen_tok, ConversationConfig(
        max_entities=8, n_entity_prompt=2, n_task_prompt=3, max_neighbours=6, mapping_k=3, mapping_mlp_hidden=16,
        text_embedder="hashing:32", prompt_position=position, max_context_length=64, max_response_length=24,
        prompt_injection=injection),
        bank=bank, embedder=emb)
    gcollate = gen.make_collator()
    train_nonempty = [s for s in train if s.response.strip()]
    _train(gen, [gcollate(train_nonempty[i:i + 8]) for i in range(0, 24, 8)])

    rec_dir, gen_dir = rec.save_pretrained(root / "rec"), gen.save_pretrained(root / "gen")
    return {"kind": kind, "folder": folder, "rec": rec, "gen": gen, "rec_dir": rec_dir, "gen_dir": gen_dir,
            "scores": p["rec_scores"](rec), "generations": p["generations"](gen)}


def test_folder_layout(saved):
    for d in (saved["rec_dir"], saved["gen_dir"]):
        names = {p.name for p in d.iterdir()}
        assert {"config.json", "model.safetensors", "graphs.safetensors", "tokenizer"} <= names
        assert not [p for p in d.rglob("*") if p.suffix in (".pt", ".bin", ".pkl")]  # nothing to unpickle
        record = json.loads((d / "config.json").read_text())
        assert record["backbone"]["name_or_path"] == str(saved["folder"])  # by path, never saved
        assert record["backbone"]["dtype"] == ("float32" if saved["kind"] == "gpt2" else "bfloat16")
    assert {"context_bank.safetensors", "context_bank.json"} <= {p.name for p in saved["gen_dir"].iterdir()}
    rec_record = json.loads((saved["rec_dir"] / "config.json").read_text())
    assert RecommenderConfig.from_dict(rec_record["config"]) == saved["rec"].config
    gen_record = json.loads((saved["gen_dir"] / "config.json").read_text())
    assert ConversationConfig.from_dict(gen_record["config"]) == saved["gen"].config


def test_fresh_process_gives_identical_scores_and_generations(saved):
    out = subprocess.run([sys.executable, "-c", CHILD, str(saved["rec_dir"]), str(saved["gen_dir"])],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["lm_path"] is True
    assert got["scores"] == saved["scores"]  # bit-identical
    assert got["generations"] == saved["generations"]
    assert any(len(g) > 0 for g in got["generations"])


def test_same_process_round_trip_restores_state(saved):
    rec = MSCRSRecommender.from_pretrained(saved["rec_dir"])
    for k, v in saved["rec"].trainable_state_dict().items():
        assert torch.equal(rec.trainable_state_dict()[k], v), k
    assert torch.equal(rec.item_ids, saved["rec"].item_ids)
    gen = MSCRSGenerator.from_pretrained(saved["gen_dir"])
    assert gen.placeholder_id == saved["gen"].placeholder_id
    assert len(gen.bank) == len(saved["gen"].bank) and gen.bank.keys == saved["gen"].bank.keys
    assert next(gen.backbone.parameters()).dtype == next(saved["gen"].backbone.parameters()).dtype


def test_closed_lm_path_and_shared_backbone(saved, tmp_path):
    rec = saved["rec"]
    rec.close_lm_path()
    try:
        d = rec.save_pretrained(tmp_path / "warm")
    finally:
        rec.close_lm_path(False)
    gen = MSCRSGenerator.from_pretrained(saved["gen_dir"])
    loaded = MSCRSRecommender.from_pretrained(d, backbone=gen.backbone, tokenizer=gen.tokenizer)
    assert loaded.lm_path is False and loaded.backbone is gen.backbone


def test_entity_table_encoder_round_trip(tmp_path):
    from mscrs_core.models.entity_table import EntityTable
    from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_reduced_tokenizer(["hello there", "what else"])
    torch.manual_seed(0)
    bb = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2))
    bb.requires_grad_(False).eval()
    model = MSCRSRecommender(EntityTable(12, 8), bb, torch.tensor([0, 2, 4]), tokenizer=tok,
                             config=RecommenderConfig(max_entities=4, n_entity_prompt=2, n_task_prompt=2))
    bb.save_pretrained(tmp_path / "bb")
    d = model.save_pretrained(tmp_path / "m", backbone_source=str(tmp_path / "bb"))
    loaded = MSCRSRecommender.from_pretrained(d)
    assert torch.equal(loaded.graph_encoder.emb.weight, model.graph_encoder.emb.weight)


def test_a_backbone_without_a_source_is_refused(tmp_path):
    from mscrs_core.models.entity_table import EntityTable
    from transformers import GPT2Config, GPT2LMHeadModel

    bb = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    model = MSCRSRecommender(EntityTable(6, 8), bb.requires_grad_(False), torch.tensor([0, 1]),
                             config=RecommenderConfig(max_entities=4, n_entity_prompt=2, n_task_prompt=2))
    with pytest.raises(ValueError, match="backbone_source"):
        model.save_pretrained(tmp_path / "m")


# ------------------------------------------------------------------------------------------ bad folders


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def copy(saved, tmp_path):
    d = tmp_path / "rec"
    shutil.copytree(saved["rec_dir"], d)
    return d


def test_missing_folder_and_config(copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        MSCRSRecommender.from_pretrained(tmp_path / "nope")
    (copy / "config.json").unlink()
    with pytest.raises(FileNotFoundError) as err:
        MSCRSRecommender.from_pretrained(copy)
    assert str(copy / "config.json") in _one_line(err) and "missing" in _one_line(err)


def test_unknown_config_field(copy):
    record = json.loads((copy / "config.json").read_text())
    record["config"]["n_task_prompts"] = 10  # a typo
    (copy / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"config\.json: unknown RecommenderConfig fields \['n_task_prompts'\]") as err:
        MSCRSRecommender.from_pretrained(copy)
    _one_line(err)
    record["config"].pop("n_task_prompts")
    record["config"]["head"] = "sine"
    (copy / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"config\.json: bad RecommenderConfig value"):
        MSCRSRecommender.from_pretrained(copy)


def test_wrong_model_type_and_corrupt_json(saved, copy):
    with pytest.raises(ValueError, match="model_type 'mscrs_conversation'"):
        MSCRSRecommender.from_pretrained(saved["gen_dir"])
    (copy / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"config\.json: corrupt"):
        MSCRSRecommender.from_pretrained(copy)


def test_wrong_tensor_shape(copy):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(copy / "model.safetensors"))
    name = "prompt_encoder.task_prompt"
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"model\.safetensors: tensor '{name}' has shape") as err:
        MSCRSRecommender.from_pretrained(copy)
    _one_line(err)
    tensors.pop(name)
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.safetensors: the weights do not fit .*missing tensors"):
        MSCRSRecommender.from_pretrained(copy)


@pytest.mark.parametrize("name", ["model.safetensors", "graphs.safetensors"])
def test_corrupt_safetensors(copy, name):
    (copy / name).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}: corrupt") as err:
        MSCRSRecommender.from_pretrained(copy)
    _one_line(err)
    (copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", "[.]")):
        MSCRSRecommender.from_pretrained(copy)


def test_cli_reports_a_broken_chat_checkpoint_in_one_line(saved, tmp_path, capsys):
    from mscrs_core.chat import save_chat_checkpoint
    from mscrs_core.cli import main

    d = save_chat_checkpoint(tmp_path / "chat", generator=saved["gen"], dataset=probe()["DS"],
                             recommender=saved["rec"])
    (d / "recommender" / "model.safetensors").write_bytes(b"not safetensors")
    capsys.readouterr()  # (saving the backbone into the checkpoint shows a progress bar)
    assert main(["chat", "--checkpoint", str(d), "--script", "/dev/null"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (after the backbone's loading progress bar)
    assert last.startswith("mscrs chat: error: ") and "recommender/model.safetensors: corrupt" in last


def test_a_conversation_config_saved_under_the_former_name_graph_variant_loads(saved, tmp_path):
    """``ConversationConfig.graph_prompt`` was called ``graph_variant``: folders saved before the rename load."""
    assert ConversationConfig.from_dict({"graph_variant": "authors_code"}).graph_prompt == "authors_code"
    assert "graph_variant" not in ConversationConfig().to_dict()
    with pytest.raises(ValueError, match="'graph_prompt' given twice"):
        ConversationConfig.from_dict({"graph_variant": "paper", "graph_prompt": "paper"})
    d = tmp_path / "gen"
    shutil.copytree(saved["gen_dir"], d)
    record = json.loads((d / "config.json").read_text())
    record["config"]["graph_variant"] = record["config"].pop("graph_prompt")
    (d / "config.json").write_text(json.dumps(record))
    gen = MSCRSGenerator.from_pretrained(d)
    assert gen.config == saved["gen"].config
    record["config"]["graph_prompt"] = record["config"]["graph_variant"]
    (d / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"config\.json: ConversationConfig: field 'graph_prompt' given twice"):
        MSCRSGenerator.from_pretrained(d)


def test_text_encoder_options_round_trip_and_a_reloaded_model_encodes_live_contexts(tmp_path):
    """context_encoder="text_encoder" + text_skip: the two text maps are saved and restored; a reloaded model
    has no feature table, so the chat ranker attaches the sentence encoder and encodes the live dialog."""
    from mscrs_core.data.samples import Sample
    from mscrs_core.features.context_text import ContextTextFeatures
    from mscrs_core.models.collate import RecCollator
    from mscrs_core.models.entity_table import EntityTable
    from mscrs_core.models.generate import recommender_ranker
    from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_reduced_tokenizer(["hello there", "what else", "i like scary movies"])
    torch.manual_seed(0)
    bb = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2))
    bb.requires_grad_(False).eval()
    model = MSCRSRecommender(EntityTable(12, 8), bb, torch.tensor([0, 2, 4]), tokenizer=tok, config=RecommenderConfig(
        max_entities=4, n_entity_prompt=2, n_task_prompt=2, context_encoder="text_encoder", text_skip=True))
    with torch.no_grad():
        model.text_skip_map.weight.normal_()
        model.projection.weight.normal_()
    bb.save_pretrained(tmp_path / "bb")
    loaded = MSCRSRecommender.from_pretrained(model.save_pretrained(tmp_path / "m", backbone_source=str(tmp_path / "bb")))
    for name in ("text_projection.weight", "text_skip_map.weight"):
        assert torch.equal(loaded.trainable_state_dict()[name], model.trainable_state_dict()[name])
    assert loaded.context_features is None
    dialog = Sample("chat", 1, (("seeker", "i like scary movies"),), (5,), "", None, ())
    ranking = recommender_ranker(loaded, top=3)(dialog)
    assert isinstance(loaded.context_features, ContextTextFeatures) and sorted(ranking) == [0, 2, 4]
    features = loaded.context_features
    scored = dict(dialog.__dict__, target=0)
    batch = RecCollator(tok, max_length=32, max_entities=4, context_features=features)([Sample(**scored)])
    assert torch.allclose(loaded.eval().score_items(batch), model.eval().score_items(batch), atol=1e-6)
