"""Zero-shot text reference row (not in the paper): no trained weights, only a frozen sentence encoder.

score(s, i) = cos(x_s, x_i) + w * log_pop(i), where

* ``x_s`` is the MiniLM embedding (mean pooling, Eq. 3's encoder) of the dialog context, its newest
  tokens kept: the same features as the text classifier (:func:`~mscrs_core.baselines.text_classifier.
  cached_contexts`, shared cache file);
* ``x_i`` the embedding of the item's text, by default the offline description of the text graph
  (Eq. 2-3; :func:`item_texts_for`). Items without a text get cosine 0 (the prior alone);
* ``log_pop(i) = log((count_i + 1) / sum(count + 1))`` over the training split, and ``w`` is chosen from
  ``prior_weights`` by validation Recall@10 (``w = 0``: pure text similarity; large ``w``: Popularity).

It shows what matching the conversation against the item descriptions gives without any training.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ZeroShotTextConfig:
    encoder: str | None = None  # None: all-MiniLM-L6-v2
    max_length: int = 128  # context tokens (the newest are kept)
    item_max_length: int = 256  # item text tokens (the text graph's setting)
    prior_weights: tuple[float, ...] = (0.0, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 1.0)


def item_texts_for(dataset, data_root: str | os.PathLike | None = None, describer=None,
                   with_title: bool = False) -> dict[int, str]:
    """Item entity id -> the text the text graph encodes (:func:`mscrs_core.graphs.assemble.item_descriptions`).

    ``with_title=True`` prefixes each text with the item's name (``"Title. description"``); items without a
    description then get their title alone. The default descriptions contain no title (facts only).
    """
    from ..graphs.assemble import item_descriptions

    desc = item_descriptions(dataset, data_root, describer)
    if not with_title:
        return dict(desc)
    out = {}
    for eid in dataset.item_ids:
        name = dataset.name_of(eid)
        text = desc.get(eid, "")
        out[int(eid)] = f"{name}. {text}".strip() if text else name
    return out


def item_text_features(item_ids: Sequence[int], item_texts: dict[int, str], cfg: ZeroShotTextConfig,
                       cache_dir: str | os.PathLike) -> torch.Tensor:
    """[N, d] embeddings of the item texts aligned with ``item_ids`` (zero rows for items without text)."""
    from ..features import TextEncoder

    enc = TextEncoder(cfg.encoder, max_length=cfg.item_max_length)
    texts = {int(e): item_texts[int(e)] for e in item_ids if item_texts.get(int(e))}
    tag = hashlib.sha256(str(enc.name).encode()).hexdigest()[:8]
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    table = enc.encode_cached(texts, cache / f"items-text-{tag}.safetensors")
    idx = table.index()
    out = torch.zeros(len(item_ids), enc.dim)
    for p, e in enumerate(item_ids):
        j = idx.get(int(e))
        if j is not None:
            out[p] = table.features[j]
    return out


def _recall_at_10(scores: torch.Tensor, gold: torch.Tensor) -> dict[str, float]:
    from ..evaluation import RankingEvaluator

    ev = RankingEvaluator()
    ev.update(scores, gold)
    return ev.compute()


def zero_shot_text_scores(train, valid, test, item_ids: Sequence[int], item_texts: dict[int, str],
                          cfg: ZeroShotTextConfig, cache_dir: str | os.PathLike
                          ) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """(valid scores, test scores, history): cosine(context, item text) + w * log popularity, ``w`` chosen
    on ``valid`` from ``cfg.prior_weights`` (``history``: one row per ``w``, the chosen one ``"selected"``)."""
    from .text_classifier import TextClassifierConfig, cached_contexts, log_popularity

    if not cfg.prior_weights:
        raise ValueError("ZeroShotTextConfig.prior_weights: expected at least one weight")
    # all three splits, like the text classifier, so both read one cache file (train rows are not used)
    ctx = cached_contexts(list(train) + list(valid) + list(test),
                          TextClassifierConfig(encoder=cfg.encoder, max_length=cfg.max_length), cache_dir)
    ctx = ctx[len(train):]
    items = F.normalize(item_text_features(item_ids, item_texts, cfg, cache_dir), dim=-1)
    cos = F.normalize(ctx, dim=-1) @ items.T
    cva, cte = cos[: len(valid)], cos[len(valid):]
    prior = log_popularity(train, item_ids)
    pos = {int(e): i for i, e in enumerate(item_ids)}
    yva = torch.tensor([pos[int(s.target)] for s in valid])
    history, best = [], None
    for w in cfg.prior_weights:
        m = _recall_at_10(cva + w * prior, yva)
        history.append({"prior_weight": w, **{f"valid_{k}": v for k, v in m.items()}})
        if best is None or m["recall@10"] > history[best]["valid_recall@10"]:
            best = len(history) - 1
    history[best]["selected"] = True
    w = history[best]["prior_weight"]
    return cva + w * prior, cte + w * prior, history
