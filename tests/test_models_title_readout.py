"""The backbone's title readout (mscrs_core.models.title_readout) and its place in the recommender's logits."""
from __future__ import annotations

import pytest
import torch

from mscrs_core.models.collate import RecCollator
from mscrs_core.models.context_states import ContextStateBank
from mscrs_core.models.entity_table import EntityTable
from mscrs_core.models.recommender import MSCRSRecommender, RecommenderConfig
from mscrs_core.models.title_readout import TitleReadout, item_title, precompute_readout
from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer

from test_models_recommender import TEXTS, samples, tiny_backbone

TITLES = ["alien", "scary movies", "hello there", "what else"]
CUE = "i like"


@pytest.fixture(scope="module")
def tokenizer():
    return build_reduced_tokenizer(TEXTS)


def readout_model(tokenizer, kind="llama", **kw) -> MSCRSRecommender:
    torch.manual_seed(1)
    config = RecommenderConfig(max_entities=4, n_entity_prompt=3, n_task_prompt=2, **kw)
    return MSCRSRecommender(EntityTable(12, 8), tiny_backbone(kind, len(tokenizer)), torch.tensor([0, 2, 4, 6]),
                            tokenizer=tokenizer, config=config,
                            item_titles=TITLES if config.title_readout else None)


def test_item_title_drops_the_disambiguation_only():
    assert item_title("Split (2016 American film)") == "Split"
    assert item_title("Alien (film)") == "Alien"
    assert item_title("Mission: Impossible") == "Mission: Impossible"
    assert item_title("(500) Days of Summer") == "(500) Days of Summer"


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_readout_is_the_title_pmi_of_one_pass_over_context_and_cue(tokenizer, kind):
    """t_i(s) = mean log p(title tokens | s, cue) - mean log p(title tokens | cue), by hand."""
    backbone = tiny_backbone(kind, len(tokenizer))
    readout = TitleReadout(backbone, tokenizer, TITLES, CUE)
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    got = readout.compute(batch["input_ids"], batch["attention_mask"])
    cue = tokenizer(CUE, add_special_tokens=False)["input_ids"]
    titles = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in TITLES]

    def logp(ids):
        with torch.no_grad():
            return torch.log_softmax(backbone(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)

    prior = logp(cue)
    for row, (ids, mask) in enumerate(zip(batch["input_ids"], batch["attention_mask"])):
        lp = logp([int(t) for t, m in zip(ids, mask) if m] + cue)
        expected = torch.stack([lp[t].mean() - prior[t].mean() for t in map(torch.tensor, titles)])
        assert torch.allclose(got[row], expected, atol=1e-4), row


def test_readout_after_cached_context_states_equals_one_pass(tokenizer):
    backbone = tiny_backbone("llama", len(tokenizer))
    readout = TitleReadout(backbone, tokenizer, TITLES, CUE)
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    bank = ContextStateBank(backbone, 32, tokenizer.pad_token_id)
    plain = readout.compute(batch["input_ids"], batch["attention_mask"])
    cached = readout.compute(batch["input_ids"], batch["attention_mask"], bank)
    assert torch.allclose(plain, cached, atol=1e-5)


def test_lookup_memoises_each_context_and_ignores_left_padding(tokenizer, monkeypatch):
    backbone = tiny_backbone("llama", len(tokenizer))
    readout = TitleReadout(backbone, tokenizer, TITLES, CUE)
    col = RecCollator(tokenizer, max_length=32, max_entities=4)
    batch = col(samples())
    first = readout.lookup(batch["input_ids"], batch["attention_mask"])
    assert len(readout) == 3
    calls = []
    monkeypatch.setattr(readout, "compute", lambda *a, **k: calls.append(a) or torch.zeros(0))
    alone = col(samples()[1:2])  # the same context padded to another width
    again = readout.lookup(alone["input_ids"], alone["attention_mask"])
    assert not calls and torch.allclose(again[0], first[1], atol=1e-3)  # stored in half precision


def test_save_load_round_trip_and_a_file_of_other_titles_is_refused(tokenizer, tmp_path):
    backbone = tiny_backbone("llama", len(tokenizer))
    col = RecCollator(tokenizer, max_length=32, max_entities=4)
    readout = TitleReadout(backbone, tokenizer, TITLES, CUE)
    path = precompute_readout(readout, col, samples(), dataset="toy", cache=tmp_path)
    assert path.is_file() and path.parent.name == "title-readout"
    fresh = TitleReadout(backbone, tokenizer, TITLES, CUE)
    assert fresh.load(path) and len(fresh) == 3
    batch = col(samples())
    assert torch.equal(fresh.lookup(batch["input_ids"], batch["attention_mask"]),
                       readout.lookup(batch["input_ids"], batch["attention_mask"]))
    assert not fresh.load(tmp_path / "missing.safetensors")
    other = TitleReadout(backbone, tokenizer, TITLES[::-1], CUE)
    with pytest.raises(ValueError, match="other titles or another cue"):
        other.load(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=str(path)):
        fresh.load(path)


def test_the_readout_starts_at_zero_weight_then_adds_gamma_times_t(tokenizer):
    """gamma = 0: the same scores as the model without the readout; gamma = 1: the readout added on the item axis;
    never in pre-training (its context holds the response that names the target)."""
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    on, off = readout_model(tokenizer, title_readout=True, title_cue=CUE).eval(), readout_model(tokenizer).eval()
    assert torch.allclose(on.score_items(batch), off.score_items(batch), atol=1e-6)
    with torch.no_grad():
        on.title_weight.fill_(1.0)
    t = on.title_readout.lookup(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(on.score_items(batch), off.score_items(batch) + t, atol=1e-5)
    assert torch.allclose(on.score_entities(batch), off.score_entities(batch), atol=1e-6)


def test_the_readout_weight_learns_and_the_backbone_does_not(tokenizer):
    model = readout_model(tokenizer, title_readout=True, title_cue=CUE).train()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    model(batch, task="rec").loss.backward()
    assert model.title_weight.grad is not None and float(model.title_weight.grad.abs()) > 0
    assert all(p.grad is None for p in model.backbone.parameters())


def test_the_readout_on_the_entity_axis_fills_the_item_columns_only(tokenizer):
    model = readout_model(tokenizer, title_readout=True, title_cue=CUE, rec_scope="all_entities").eval()
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    with torch.no_grad():
        model.title_weight.fill_(2.0)
    bonus = model.title_bonus(batch, item_axis=False, width=12)
    t = model.title_readout.lookup(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(bonus[:, model.item_ids], 2.0 * t)
    others = torch.ones(12, dtype=torch.bool)
    others[model.item_ids] = False
    assert torch.all(bonus[:, others] == 0)


def test_titles_are_required_and_saved_with_the_model(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="one title per item"):
        MSCRSRecommender(EntityTable(12, 8), tiny_backbone("llama", len(tokenizer)), torch.tensor([0, 2, 4, 6]),
                         tokenizer=tokenizer, config=RecommenderConfig(title_readout=True), item_titles=TITLES[:2])
    with pytest.raises(ValueError, match="title_cue"):
        RecommenderConfig(title_readout=True, title_cue="")
    model = readout_model(tokenizer, "gpt2", title_readout=True, title_cue=CUE)
    with torch.no_grad():
        model.title_weight.fill_(0.5)
    model.backbone.save_pretrained(tmp_path / "bb")
    d = model.save_pretrained(tmp_path / "m", backbone_source=str(tmp_path / "bb"))
    loaded = MSCRSRecommender.from_pretrained(d)
    assert loaded.title_readout.titles == TITLES and loaded.title_readout.cue == CUE
    assert float(loaded.title_weight.detach()) == 0.5
    batch = RecCollator(tokenizer, max_length=32, max_entities=4)(samples())
    assert torch.allclose(loaded.eval().score_items(batch), model.eval().score_items(batch), atol=1e-5)
