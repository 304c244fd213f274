"""A text-only recommender on the dialog context: the paper's "BERT" row of Table 2.

The context (the last ``max_length`` tokens of the preceding turns) is encoded by a frozen
sentence encoder (mean pooling, Eq. 3's encoder; offline all-MiniLM-L6-v2) and a linear layer
scores every item; trained with cross-entropy and AdamW, the epoch kept by validation Recall@10.

**Deviation:** the paper fine-tunes BERT end to end; here the encoder is frozen and only the
classifier is trained (a BERT-base fine-tune does not fit the CPU budget of the book). The
features are cached on disk, keyed by the encoder and the texts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class TextClassifierConfig:
    encoder: str | None = None  # None: all-MiniLM-L6-v2; the paper: bert-base-uncased
    max_length: int = 128
    epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    seed: int = 0


def context_string(sample) -> str:
    return " ".join(f"{'User' if r == 'seeker' else 'System'}: {t}" for r, t in sample.context)


def encode_contexts(samples: Sequence, cfg: TextClassifierConfig, cache_path: str | os.PathLike) -> torch.Tensor:
    from ..features import TextEncoder

    texts = {}
    for s in samples:
        texts.setdefault(context_string(s), None)
    keys = {t: f"c{i}" for i, t in enumerate(texts)}
    enc = TextEncoder(cfg.encoder, max_length=cfg.max_length)
    # keep the newest turns: tokenizers truncate on the right, so cut the text from the left first
    table = enc.encode_cached({keys[t]: t[-4 * cfg.max_length * 2:] for t in texts}, cache_path)
    idx = table.index()
    return torch.stack([table.features[idx[keys[context_string(s)]]] for s in samples])


def cached_contexts(samples: Sequence, cfg: TextClassifierConfig, cache_dir: str | os.PathLike) -> torch.Tensor:
    """:func:`encode_contexts` through the classifier's feature file in ``cache_dir`` (created if missing)."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    return encode_contexts(samples, cfg, cache / "contexts-text.safetensors")


def train_text_classifier(train, valid, test, item_ids: Sequence[int], cfg: TextClassifierConfig,
                          cache_dir: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Train on ``train`` (recommendation samples), select on ``valid``; returns (valid scores, test scores, history)."""
    from ..evaluation import RankingEvaluator

    allx = cached_contexts(list(train) + list(valid) + list(test), cfg, cache_dir)
    xtr, xva, xte = allx[: len(train)], allx[len(train): len(train) + len(valid)], allx[len(train) + len(valid):]
    pos = {e: i for i, e in enumerate(item_ids)}
    ytr = torch.tensor([pos[s.target] for s in train])
    yva = torch.tensor([pos[s.target] for s in valid])
    torch.manual_seed(cfg.seed)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    head = nn.Linear(xtr.shape[1], len(item_ids))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, history = -1.0, None, []
    for epoch in range(cfg.epochs):
        head.train()
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            loss = nn.functional.cross_entropy(head((xtr[b] - mean) / std), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            ev = RankingEvaluator()
            ev.update(head((xva - mean) / std), yva)
            m = ev.compute()
        history.append({"epoch": epoch, "train_loss": float(loss), **{f"valid_{k}": v for k, v in m.items()}})
        if m["recall@10"] > best:
            best, best_state = m["recall@10"], {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    with torch.no_grad():
        return head((xva - mean) / std), head((xte - mean) / std), history
