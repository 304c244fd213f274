"""Cores handed over by a finished book track: forward-only loops borrow them, training never changes its threads."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from mscrs_core import core_share


@pytest.fixture
def share_file(tmp_path, monkeypatch):
    """A share file saying 2 cores, this process starting on 1 thread (a track of a two-track book)."""
    path = tmp_path / "share"
    core_share.write_share(path, 2)
    monkeypatch.setenv(core_share.SHARE_ENV, str(path))
    monkeypatch.setenv("MSCRS_WORKERS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    core_share._seen.clear()
    yield path
    torch.set_num_threads(before)
    core_share._seen.clear()


def test_a_forward_block_borrows_the_share_and_gives_it_back(share_file):
    with core_share.borrowed_cores():
        assert core_share.follow_share() == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1  # restored for whatever trains next
    with core_share.borrowed_cores():  # the next block follows the same, unchanged file again
        assert core_share.follow_share() == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with pytest.raises(RuntimeError), core_share.borrowed_cores():
        core_share.follow_share()
        raise RuntimeError("a failing batch")
    assert torch.get_num_threads() == 1


def test_training_keeps_the_threads_it_started_with_while_the_share_grows(share_file, monkeypatch):
    """A step on two threads rounds float sums differently from one on one thread: the trainer must not follow
    the share, or a run's numbers would depend on when the other track ended."""
    from mscrs_core.training.trainer import TaskDefaults, Trainer, TrainerConfig, mean_logs

    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n))[1])

    class Task(TaskDefaults):
        metric, maximize = "loss", False

        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x, self.y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)

        def collate(self, idx):
            assert torch.get_num_threads() == 1
            return self.x[idx], self.y[idx]

        def training_loss(self, model, batch):
            loss = nn.functional.mse_loss(model(batch[0]), batch[1])
            return loss, {"loss": float(loss.detach())}

        @torch.no_grad()
        def validate(self, model, samples, device):
            return {"loss": float(nn.functional.mse_loss(model(self.x), self.y))}, None

        def param_groups(self, model):
            return [{"params": list(model.parameters()), "lr": 0.01, "weight_decay": 0.0}]

        def history_row(self, epoch, steps, valid):
            return {"epoch": epoch, "train_loss": mean_logs(steps).get("loss", float("nan")), **valid}

        def identity(self):
            return {}

    torch.manual_seed(0)
    Trainer(nn.Linear(4, 1), Task(), TrainerConfig(None, epochs=2, batch_size=16, progress=False)).fit(
        range(64), range(64))
    assert calls == [] and torch.get_num_threads() == 1


def tiny_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    from mscrs_core.models.backbone import freeze

    torch.manual_seed(0)
    return freeze(LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=128, intermediate_size=256,
                                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                               max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                                               pad_token_id=0)))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to compare one thread with two")
def test_what_borrows_cores_is_the_same_on_one_and_two_threads():
    """The claim borrowed_cores rests on: a backbone's context states, logits and greedy tokens are bitwise equal
    on one and two threads (the loops that borrow cores compute nothing else)."""
    from mscrs_core.models.context_states import ContextStateBank

    model = tiny_llama()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 300, (24, 160), generator=g)
    mask = torch.ones_like(ids)
    mask[:8, :50] = 0
    before = torch.get_num_threads()
    got = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            states = ContextStateBank(model, 160, 0, batch_size=12).lookup(ids, mask)
            with torch.no_grad():
                logits = model(input_ids=ids[8:], attention_mask=mask[8:]).logits
                tokens = model.generate(input_ids=ids[8:14], attention_mask=mask[8:14], max_new_tokens=8,
                                        do_sample=False, pad_token_id=0)
            got[threads] = (states.keys, states.values, logits, tokens)
    finally:
        torch.set_num_threads(before)
    for one, two in zip(got[1], got[2]):
        assert torch.equal(one, two)
