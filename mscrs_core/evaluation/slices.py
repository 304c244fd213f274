"""Slices of the recommendation metrics, and agreement with a reference ranking (beyond the paper).

Two questions Table 2 does not answer by itself:

* **Repeated vs new gold items.** In INSPIRED/ReDial the recommender often names again an item that was
  already mentioned earlier in the dialog. A model that merely copies context items scores on those
  samples without recommending anything. :func:`slice_metrics` splits the per-sample metrics of
  :meth:`~mscrs_core.evaluation.ranking.RankingEvaluator.per_sample` into ``"mentioned"`` (the gold item
  was mentioned earlier: ``sample.target in sample.mentioned_items``, see :func:`gold_was_mentioned`) and
  ``"new"`` (it was not), each with its sample ``"count"``.
* **Is the model just popularity?** :func:`top1_agreement` is the share of samples whose top-1 item equals
  a reference's (e.g. popularity's) top-1. Ties at the model's top count fractionally (the share of the tied
  items that equal the reference's top-1), the expectation under a random order of the ties, so an
  all-equal score row never looks like it "differs from popularity".
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

__all__ = ["SLICES", "gold_was_mentioned", "slice_metrics", "top1_agreement"]

SLICES = ("mentioned", "new")


def gold_was_mentioned(samples: Sequence) -> np.ndarray:
    """[B] bool: the sample's gold item (``target``) is among the items mentioned before the turn."""
    out = np.zeros(len(samples), dtype=bool)
    for i, s in enumerate(samples):
        if s.target is None:
            raise ValueError(f"sample {i} ({s.dialog_id}#{s.turn_index}): no target; expected recommendation "
                             "samples (mscrs_core.data.rec_samples)")
        out[i] = s.target in set(s.mentioned_items)
    return out


def slice_metrics(per_sample: Mapping[str, np.ndarray], mentioned: np.ndarray) -> dict[str, dict[str, float]]:
    """``{"mentioned": {...}, "new": {...}}``: the mean of every per-sample metric except ranks over each slice.

    ``per_sample``: ``RankingEvaluator.per_sample()`` (keys ending in ``"rank"`` are skipped);
    ``mentioned``: [B] bool from :func:`gold_was_mentioned`, aligned with the samples. An empty slice has
    ``count`` 0 and NaN metrics.
    """
    m = np.asarray(mentioned)
    if m.ndim != 1 or m.dtype != bool:
        raise ValueError(f"mentioned: expected a 1-D bool array, got dtype {m.dtype} and shape {m.shape}")
    out: dict[str, dict[str, float]] = {}
    keys = [k for k in per_sample if not k.endswith("rank")]
    for k in keys:
        v = np.asarray(per_sample[k])
        if v.shape != m.shape:
            raise ValueError(f"per_sample[{k!r}]: {v.shape[0] if v.ndim else 0} samples, but mentioned has {m.size}")
    for name, sel in (("mentioned", m), ("new", ~m)):
        n = int(sel.sum())
        row = {k: float(np.asarray(per_sample[k], dtype=np.float64)[sel].mean()) if n else float("nan")
               for k in keys}
        row["count"] = float(n)
        out[name] = row
    return out


@torch.no_grad()
def top1_agreement(scores: torch.Tensor, reference_scores: torch.Tensor) -> float:
    """Share of rows whose top-1 item equals the reference's top-1 (``argmax`` of ``reference_scores``).

    When several items tie at the top of ``scores``, the row counts as the fraction of those tied items that
    equal the reference's top-1 (the expectation under a random order of the ties).
    """
    if scores.dim() != 2 or reference_scores.shape != scores.shape:
        raise ValueError(f"scores/reference_scores: expected two 2-D tensors of the same shape, got "
                         f"{tuple(scores.shape)} and {tuple(reference_scores.shape)}")
    if scores.shape[0] == 0:
        raise ValueError("scores: no rows")
    if torch.isnan(scores).any() or torch.isnan(reference_scores).any():
        raise ValueError("scores/reference_scores: contain NaN")
    ref = reference_scores.argmax(dim=1)
    top = scores == scores.max(dim=1, keepdim=True).values
    hit = top.gather(1, ref[:, None]).squeeze(1).double()
    return float((hit / top.sum(dim=1).double()).mean())
