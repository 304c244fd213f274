"""The one training loop (mscrs_core.training.trainer) on a task it knows nothing about: a linear classifier."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mscrs_core.training.trainer import (TaskDefaults, Trainer, TrainerConfig, global_batches, length_grouped_order,
                                         mean_logs)


class ToyTask(TaskDefaults):
    """Classify 8-d points into 3 classes; validation metric: accuracy (or the loss)."""

    def __init__(self, x, y, xv, yv, metric="accuracy", lr=0.05, seed=0):
        self.x, self.y, self.xv, self.yv, self.lr, self.seed = x, y, xv, yv, lr, seed
        self.metric, self.maximize = metric, metric != "loss"

    def collate(self, idx):
        return self.x[idx], self.y[idx]

    def training_loss(self, model, batch):
        loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
        return loss, {"loss": float(loss.detach())}

    @torch.no_grad()
    def validate(self, model, samples, device):
        logits = model(self.xv)
        acc = float((logits.argmax(1) == self.yv).float().mean())
        return {"accuracy": acc, "loss": float(nn.functional.cross_entropy(logits, self.yv))}, logits

    def param_groups(self, model):
        return [{"params": list(model.parameters()), "lr": self.lr, "weight_decay": 0.0}]

    def history_row(self, epoch, steps, valid):
        return {"epoch": epoch, "train_loss": mean_logs(steps).get("loss", float("nan")), **valid}

    def identity(self):
        return {"lr": self.lr, "metric": self.metric}


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, 8, generator=g) * 2
    y = torch.randint(0, 3, (120,), generator=g)
    x = centers[y] + torch.randn(120, 8, generator=g)
    return x[:90], y[:90], x[90:], y[90:]


def fresh():
    torch.manual_seed(0)
    return nn.Linear(8, 3)


def test_learns_and_restores_the_best_epoch(tmp_path):
    x, y, xv, yv = data()
    model = fresh()
    res = Trainer(model, ToyTask(x, y, xv, yv), TrainerConfig(str(tmp_path), epochs=6, batch_size=16,
                                                               progress=False)).fit(range(90), range(30))
    accs = [h["accuracy"] for h in res.history]
    assert res.best_metric == max(accs) and res.history[res.best_epoch]["accuracy"] == max(accs)
    assert max(accs) > 0.8  # separable clusters
    with torch.no_grad():  # the model holds the best epoch's weights, whose logits validation returned
        assert torch.equal(model(xv), res.best_valid_extra)
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    x, y, xv, yv = data()
    full = fresh()
    ref = Trainer(full, ToyTask(x, y, xv, yv), TrainerConfig(str(tmp_path / "a"), epochs=4, batch_size=16,
                                                              progress=False)).fit(range(90), range(30))

    def stop(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    part = fresh()
    cfg = TrainerConfig(str(tmp_path / "b"), epochs=4, batch_size=16, progress=False)
    with pytest.raises(KeyboardInterrupt):
        Trainer(part, ToyTask(x, y, xv, yv), cfg, callbacks=[stop]).fit(range(90), range(30))
    again = fresh()  # a new process would start from fresh weights: the checkpoint restores everything
    res = Trainer(again, ToyTask(x, y, xv, yv), cfg).fit(range(90), range(30))
    assert res.history == ref.history
    for a, b in zip(full.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_refuses_a_checkpoint_of_another_configuration(tmp_path):
    x, y, xv, yv = data()
    Trainer(fresh(), ToyTask(x, y, xv, yv), TrainerConfig(str(tmp_path), epochs=1, progress=False)).fit(
        range(90), range(30))
    with pytest.raises(ValueError, match="different config"):
        Trainer(fresh(), ToyTask(x, y, xv, yv, lr=0.01), TrainerConfig(str(tmp_path), epochs=2, progress=False)).fit(
            range(90), range(30))


def test_validate_before_keeps_the_untrained_model_when_training_hurts():
    x, y, xv, yv = data()
    model = fresh()
    with torch.no_grad():  # a perfect start: the nearest-center rule written into the layer
        centers = torch.stack([x[y == c].mean(0) for c in range(3)])
        model.weight.copy_(centers * 5)
        model.bias.copy_(-(centers ** 2).sum(1) * 2.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = ToyTask(x, y[torch.randperm(90, generator=torch.Generator().manual_seed(1))], xv, yv, lr=0.5)
    res = Trainer(model, task, TrainerConfig(None, epochs=3, batch_size=16, seed=None, validate_before=True,
                                             schedule="constant", max_grad_norm=None, progress=False)).fit(
        range(90), range(30))
    assert res.history[0]["epoch"] == -1 and res.best_path is None
    if res.best_epoch == -1:  # training on shuffled labels did not beat the start: the start is restored
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert res.best_metric == max(h["accuracy"] for h in res.history)


def test_minimises_the_loss_when_asked(tmp_path):
    x, y, xv, yv = data()
    res = Trainer(fresh(), ToyTask(x, y, xv, yv, metric="loss"), TrainerConfig(None, epochs=4, progress=False)).fit(
        range(90), range(30))
    assert res.best_metric == min(h["loss"] for h in res.history)


def test_global_batches_give_every_process_the_same_number_of_steps():
    order = list(range(10))
    a, b = global_batches(order, 3, n_proc=2, rank=0), global_batches(order, 3, n_proc=2, rank=1)
    assert len(a) == len(b) == 2
    assert set(i for bat in a + b for i in bat) == set(order)  # every sample, the wrap-around repeats two
    assert global_batches(order, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_config_is_checked():
    with pytest.raises(ValueError, match="schedule"):
        TrainerConfig(None, schedule="cosine")
    with pytest.raises(ValueError, match="positive"):
        TrainerConfig(None, epochs=0)


def test_length_grouped_order_is_a_seeded_permutation_of_similar_length_batches():
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 50, (203,), generator=g).tolist()
    order = torch.randperm(203, generator=g).tolist()
    out = length_grouped_order(order, lengths, batch_size=16, window=4, seed=0, epoch=1)
    assert sorted(out) == list(range(203))
    assert out == length_grouped_order(order, lengths, batch_size=16, window=4, seed=0, epoch=1)
    assert out != length_grouped_order(order, lengths, batch_size=16, window=4, seed=0, epoch=2)

    def padded(seq):  # what a batch costs: its size times its longest sample
        return sum(len(b) * max(lengths[i] for i in b) for b in (seq[k:k + 16] for k in range(0, len(seq), 16)))

    assert padded(out) < 0.85 * padded(order)
    # every batch comes from one window of the order (grouping never mixes samples across windows)
    window_of = {i: pos // 64 for pos, i in enumerate(order)}
    for k in range(0, len(out), 16):
        assert len({window_of[i] for i in out[k:k + 16]}) == 1
    with pytest.raises(ValueError):
        length_grouped_order(order, lengths, batch_size=16, window=0, seed=0, epoch=0)


class LengthTask(ToyTask):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen: list[list[int]] = []

    def length(self, i):
        return int(i) % 7

    def collate(self, idx):
        self.seen.append(list(idx))
        return super().collate(idx)


def test_trainer_groups_batches_by_the_tasks_length_and_still_learns(tmp_path):
    x, y, xv, yv = data()
    task = LengthTask(x, y, xv, yv)
    res = Trainer(fresh(), task, TrainerConfig(None, epochs=3, batch_size=8, group_by_length=4,
                                               progress=False)).fit(list(range(90)), list(range(30)))
    assert res.history[-1]["accuracy"] > 0.6
    epoch0 = task.seen[:12]
    assert sorted(i for b in epoch0 for i in b) == list(range(90))
    spread = [max(i % 7 for i in b) - min(i % 7 for i in b) for b in epoch0]
    assert sum(spread) / len(spread) < 3  # plain shuffled batches of 8 span about 6
    with pytest.raises(ValueError, match="length"):
        Trainer(fresh(), ToyTask(x, y, xv, yv), TrainerConfig(None, epochs=1, group_by_length=2,
                                                              progress=False)).fit(list(range(90)), list(range(30)))
    with pytest.raises(ValueError, match="group_by_length"):
        TrainerConfig(None, group_by_length=-1)
