"""Training loop: learning on planted data, exact resume after interruption, checkpoints (tiny models)."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from mscrs_core.models.collate import RecCollator
from mscrs_core.models.recommender import MSCRSRecommender
from mscrs_core.models.tiny_dialogpt import build_reduced_tokenizer
from mscrs_core.training.checkpoint import load_checkpoint
from mscrs_core.training.recommendation import TrainConfig, evaluate, train
from mscrs_core.training.trainer import epoch_order

from mscrs_core.data.samples import Sample
from mscrs_core.models.entity_table import EntityTable as TableStandIn

N_ITEMS, N_ATTR = 40, 40  # entities 0..39 are items, 40..79 attributes; attribute a plants item a - 40
WORDS = "a good movie film night fun watch like love see maybe sure the any".split()




def planted(n_per_attr: int, seed: int) -> list[Sample]:
    """The attribute mentioned in the context determines the gold item; the text carries no signal."""
    rng = random.Random(seed)
    out = []
    for a in range(N_ATTR):
        for j in range(n_per_attr):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
            noise = rng.randrange(N_ITEMS)  # an unrelated earlier mention
            out.append(Sample(f"d{a}-{j}-{seed}", 1, (("seeker", text),), (noise, N_ITEMS + a), "ok", a))
    rng.shuffle(out)
    return out


@pytest.fixture(scope="module")
def tokenizer():
    return build_reduced_tokenizer(["User: " + " ".join(WORDS), "System: ok"])


def build(tokenizer) -> MSCRSRecommender:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # initializer_range 0.2: a random frozen GPT-2 with the default 0.02 passes the prompt on only weakly
    # (tiny attention values), which makes the planted task needlessly slow to learn.
    bb = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                    initializer_range=0.2, bos_token_id=tokenizer.eos_token_id,
                                    eos_token_id=tokenizer.eos_token_id))
    bb.requires_grad_(False).eval()
    return MSCRSRecommender(TableStandIn(N_ITEMS + N_ATTR, 16), bb, torch.arange(N_ITEMS), tokenizer=tokenizer,
                            max_entities=4, n_entity_prompt=2, n_task_prompt=2, fuse_weight=0.1)


def config(tmp_path, **kw) -> TrainConfig:
    base = dict(output_dir=str(tmp_path), epochs=3, batch_size=32, eval_batch_size=64, lr=1e-2, warmup_steps=2,
                seed=7, max_length=16, cpu=True, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def popularity_recall10(train_s, valid_s) -> float:
    counts = torch.zeros(N_ITEMS)
    for s in train_s:
        counts[s.target] += 1
    top = set(counts.topk(10).indices.tolist())
    return sum(s.target in top for s in valid_s) / len(valid_s)


def test_loss_decreases_and_beats_popularity(tokenizer, tmp_path):
    train_s, valid_s = planted(4, seed=1), planted(1, seed=2)
    model = build(tokenizer)
    col = RecCollator(tokenizer, max_length=16, max_entities=4)
    before = evaluate(model, valid_s, col)
    result = train(model, train_s, valid_s, config(tmp_path, epochs=10, batch_size=16, lr=3e-2))
    print([(round(h["train_ce"], 3), round(h["valid_recall@10"], 3)) for h in result.history])
    ce = [h["train_ce"] for h in result.history]
    assert ce[-1] < 0.25 * ce[0] and ce == sorted(ce, reverse=True)
    pop = popularity_recall10(train_s, valid_s)
    assert pop <= 0.35  # uniform targets: about 10/40
    after = evaluate(model, valid_s, col)  # the model now holds the best epoch's weights
    assert after["recall@10"] == pytest.approx(result.best_metric)
    assert after["recall@10"] >= 0.9 > pop
    assert after["recall@10"] > before["recall@10"]
    with torch.no_grad():  # the loop's best-epoch validation scores are those of the weights it returns
        rescored = torch.cat([model.score_items(col(valid_s[i:i + 32])) for i in range(0, len(valid_s), 32)])
    assert torch.allclose(result.best_valid_scores, rescored, atol=1e-5)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_is_identical(tokenizer, tmp_path):
    train_s, valid_s = planted(2, seed=3), planted(1, seed=4)
    ref_model = build(tokenizer)
    ref = train(ref_model, train_s, valid_s, config(tmp_path / "ref"))

    def stop_after_first(epoch, metrics):
        if epoch == 0:
            raise Interrupt

    model = build(tokenizer)
    with pytest.raises(Interrupt):
        train(model, train_s, valid_s, config(tmp_path / "run"), callbacks=[stop_after_first])
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 0
    resumed_model = build(tokenizer)  # a fresh process would rebuild the model from scratch
    resumed = train(resumed_model, train_s, valid_s, config(tmp_path / "run"))
    assert resumed.history == ref.history  # every epoch's train loss and validation metrics, exactly
    assert resumed.best_epoch == ref.best_epoch and resumed.best_metric == ref.best_metric
    if resumed.best_epoch > 0:  # the best epoch ran after the resume: its scores are kept, else None
        assert torch.equal(resumed.best_valid_scores, ref.best_valid_scores)
    else:
        assert resumed.best_valid_scores is None
    a, b = ref_model.trainable_state_dict(), resumed_model.trainable_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last_a = load_checkpoint(tmp_path / "ref" / "last.pt")["model"]
    last_b = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    assert not list((tmp_path / "run").glob("*.tmp"))  # atomic writes leave no temp files


def test_resume_with_other_config_is_refused(tokenizer, tmp_path):
    train_s, valid_s = planted(1, seed=5), planted(1, seed=6)
    train(build(tokenizer), train_s, valid_s, config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match="different config"):
        train(build(tokenizer), train_s, valid_s, config(tmp_path, epochs=1, lr=5e-3))


def test_context_longer_than_backbone_positions_is_refused(tokenizer, tmp_path):
    train_s = planted(1, seed=5)[:4]
    with pytest.raises(ValueError, match="max_position_embeddings"):  # 61 + 4 prompt slots > 64 positions
        train(build(tokenizer), train_s, train_s, config(tmp_path, epochs=1, max_length=61))


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    assert torch.equal(epoch_order(50, 3, 2), epoch_order(50, 3, 2))
    assert not torch.equal(epoch_order(50, 3, 2), epoch_order(50, 3, 1))
    assert sorted(epoch_order(50, 3, 0).tolist()) == list(range(50))


def test_bad_config_raises(tmp_path):
    with pytest.raises(ValueError, match="task"):
        TrainConfig(output_dir=str(tmp_path), task="conv")
    with pytest.raises(ValueError, match="select_metric"):
        TrainConfig(output_dir=str(tmp_path), select_metric="ndcg")


def test_graph_encoder_gets_its_own_learning_rate():
    from torch import nn

    from mscrs_core.training.recommendation import recommender_param_groups

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.graph_encoder = nn.Linear(3, 3)
            self.prompt = nn.Linear(3, 3)

    m = M()
    groups = recommender_param_groups(m, 1e-3, 0.01, graph_lr=1e-5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(m.graph_encoder.weight)]["lr"] == 1e-5
    assert by_param[id(m.graph_encoder.bias)]["weight_decay"] == 0.0
    assert by_param[id(m.prompt.weight)]["lr"] == 1e-3 and by_param[id(m.prompt.weight)]["weight_decay"] == 0.01
    assert {g["lr"] for g in recommender_param_groups(m, 1e-3, 0.0)} == {1e-3}
