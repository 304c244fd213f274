"""A text-only recommender on the dialog context: the paper's "BERT" row of Table 2.

The context (the **newest** ``max_length - 2`` tokens of the preceding turns, cut from the left at the
token level by :func:`newest_tokens_text`) is encoded by a frozen sentence encoder (mean pooling, Eq. 3's
encoder; offline all-MiniLM-L6-v2) and a linear layer scores every item; trained with cross-entropy and
AdamW (weight decay ``weight_decay``; the project's :class:`~mscrs_core.training.trainer.Trainer`, constant
rate). The layer's bias starts at the log popularity of the items in the training split (``log((count + 1) / sum(count + 1))``), its weight at a small scale, so training starts
from the Popularity row and learns what the text adds. The learning rate (``lr_grid``) and the epoch
(up to ``epochs``) are chosen by Recall@10 on the validation split only; the test split is scored once.

**Deviation:** the paper fine-tunes BERT end to end; here the encoder is frozen and only the
classifier is trained (a BERT-base fine-tune does not fit the CPU budget of the book). The
features are cached on disk, keyed by the encoder and the texts.

An earlier version cut the context string to its last 1024 characters and let the tokenizer truncate
from the right, which kept the *oldest* ~128 tokens of those characters and dropped the newest turns in
most INSPIRED contexts; it also started the bias at random on standardised features and trained 30 epochs
at lr 3e-3 (overfitting). Its feature files (``contexts-text.safetensors``) are not reused.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

# the context features moved to features/context_text.py (the recommender's T_s reads them too); the names stay
from ..features.context_text import (CONTEXT_CACHE_NAME, cached_contexts, context_string,  # noqa: F401
                                     context_texts, encode_contexts, newest_tokens_text)
from ..training.trainer import TaskDefaults, Trainer, TrainerConfig, mean_logs



@dataclass(frozen=True)
class TextClassifierConfig:
    encoder: str | None = None  # None: all-MiniLM-L6-v2; the paper: bert-base-uncased
    max_length: int = 128  # encoder tokens, special tokens included; the newest max_length - 2 are kept
    epochs: int = 20  # at most; the best epoch is chosen on validation Recall@10
    lr: float = 1e-3  # used when lr_grid is empty
    lr_grid: tuple[float, ...] = (3e-4, 1e-3, 3e-3)  # chosen on validation Recall@10
    weight_decay: float = 0.01
    init_std: float = 0.01  # std of the initial weight (bias: log popularity)
    batch_size: int = 128
    seed: int = 0


def log_popularity(train, item_ids: Sequence[int]) -> torch.Tensor:
    """[N] ``log((count + 1) / sum(count + 1))`` of each item as a gold target in ``train``."""
    from .popularity import popularity_scores

    c = popularity_scores(train, item_ids) + 1.0
    return torch.log(c / c.sum())


class LinearHeadTask(TaskDefaults):
    """Cross-entropy of a linear head on fixed features for :class:`~mscrs_core.training.trainer.Trainer`:
    one AdamW group (weight decay on the bias too), the order drawn from one generator seeded once, the epoch
    with the best validation Recall@10 kept. The samples it trains on are row indices of ``x``."""

    metric, maximize = "recall@10", True

    def __init__(self, x: torch.Tensor, y: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor, lr: float,
                 cfg: TextClassifierConfig):
        self.x, self.y, self.x_valid, self.y_valid, self.lr, self.cfg = x, y, x_valid, y_valid, lr, cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def order(self, n: int, epoch: int) -> list[int]:
        return torch.randperm(n, generator=self.gen).tolist()

    def collate(self, idx: list[int]):
        return self.x[idx], self.y[idx]

    def training_loss(self, model, batch):
        x, y = batch
        loss = nn.functional.cross_entropy(model(x), y)
        return loss, {"loss": float(loss.detach())}

    @torch.no_grad()
    def validate(self, model, samples, device):
        from ..evaluation import RankingEvaluator

        model.eval()
        ev = RankingEvaluator()
        ev.update(model(self.x_valid.to(device)).cpu(), self.y_valid)
        return ev.compute(), None

    def param_groups(self, model) -> list[dict]:
        return [{"params": list(model.parameters()), "lr": self.lr, "weight_decay": self.cfg.weight_decay}]

    def history_row(self, epoch: int, steps: list, valid: dict) -> dict:
        return {"lr": self.lr, "epoch": epoch, "train_loss": mean_logs(steps, weighted=True)["loss"],
                **{f"valid_{k}": v for k, v in valid.items()}}


def _fit(xtr, ytr, xva, yva, prior, n_items: int, lr: float, cfg: TextClassifierConfig):

    torch.manual_seed(cfg.seed)
    head = nn.Linear(xtr.shape[1], n_items)
    with torch.no_grad():
        head.weight.normal_(0.0, cfg.init_std)
        head.bias.copy_(prior)
    res = Trainer(head, LinearHeadTask(xtr, ytr, xva, yva, lr, cfg), TrainerConfig(
        output_dir=None, epochs=cfg.epochs, batch_size=cfg.batch_size, schedule="constant", max_grad_norm=None,
        seed=None, progress=False, description=f"text classifier lr={lr:g} epoch")).fit(range(len(xtr)), range(len(xva)))
    return res.best_metric, head.cpu(), res.history


def train_text_classifier(train, valid, test, item_ids: Sequence[int], cfg: TextClassifierConfig,
                          cache_dir: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Train on ``train`` (recommendation samples), select lr and epoch on ``valid``; returns (valid scores,
    test scores, history). ``history`` has one row per (lr, epoch); the chosen one has ``"selected": True``."""
    if cfg.epochs < 1:
        raise ValueError(f"TextClassifierConfig.epochs: expected >= 1, got {cfg.epochs}")
    allx = cached_contexts(list(train) + list(valid) + list(test), cfg, cache_dir)
    ntr, nva = len(train), len(valid)
    mean, std = allx[:ntr].mean(0), allx[:ntr].std(0) + 1e-6  # standardised on the training split
    allx = (allx - mean) / std
    xtr, xva, xte = allx[:ntr], allx[ntr:ntr + nva], allx[ntr + nva:]
    pos = {e: i for i, e in enumerate(item_ids)}
    ytr = torch.tensor([pos[s.target] for s in train])
    yva = torch.tensor([pos[s.target] for s in valid])
    prior = log_popularity(train, item_ids)
    best, best_head, history = -math.inf, None, []
    for lr in (cfg.lr_grid or (cfg.lr,)):
        score, head, hist = _fit(xtr, ytr, xva, yva, prior, len(item_ids), lr, cfg)
        history += hist
        if score > best:
            best, best_head, best_lr = score, head, lr
    chosen = max((h for h in history if h["lr"] == best_lr), key=lambda h: h["valid_recall@10"])
    chosen["selected"] = True
    with torch.no_grad():
        return best_head(xva), best_head(xte), history
