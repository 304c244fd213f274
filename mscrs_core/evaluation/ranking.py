"""Recommendation metrics: Recall@k, NDCG@k, MRR@k (paper Sec. 5.1.3, Table 2).

Protocol (the one UniCRS ``src/evaluate_rec.py`` and the MSCRS ``rec/src/train_rec_*.py`` use)
------------------------------------------------------------------------------------------------
* One evaluation **sample = one gold item**. A recommender turn that mentions several items yields
  several samples, each with the same scores and a different gold item (``update_multi_gold``).
* Scores cover the **whole item set** (the model's logits restricted to the item ids, ``N_items``
  columns); there is no sampled-negative protocol.
* With ``rank`` the 1-based position of the gold item in the descending score order:

  - ``Recall@k = 1[rank <= k]``
  - ``NDCG@k  = 1 / log2(rank + 1)`` if ``rank <= k`` else 0. With one relevant item the ideal DCG
    is 1, so no normalisation is needed (UniCRS: ``1 / log2(label_rank + 2)`` with 0-based rank).
  - ``MRR@k   = 1 / rank`` if ``rank <= k`` else 0.

  Each metric is the mean over samples (UniCRS sums and divides by ``count``).
* Defaults ``k`` in (1, 10, 50) for Recall and (10, 50) for NDCG and MRR, the columns of Table 2.

Ties
----
UniCRS takes the order of ``torch.topk`` (which is unspecified among equal scores), so a gold item
tied with many others (e.g. every item of an all-zero score row) can count as a hit by accident.
The default here, ``tie_break="expected"``, scores each sample by the **exact expectation of each
metric under a uniformly random order of the tied items**. With ``h`` the number of items scored
strictly above the gold and ``t`` the number scored equal to it (gold included), the gold's rank is
uniform on ``{h+1, ..., h+t}``, so

  - ``Recall@k = clamp(k - h, 0, t) / t``
  - ``NDCG@k  = (1/t) * sum_{r=h+1}^{min(h+t, k)} 1 / log2(r + 1)``
  - ``MRR@k   = (1/t) * sum_{r=h+1}^{min(h+t, k)} 1 / r``

and the reported ``rank`` is the mean rank ``h + (t + 1) / 2``. Per-sample values may therefore be
fractional (an all-equal row of ``N`` items gives ``Recall@k = k / N``, what a random order gets on
average). Without ties (``t = 1``) this is the usual definition. Named options:
``"optimistic"``: ``rank = h + 1`` (gold before all its ties; the old default, which counts an
all-zero row as a hit at every k); ``"pessimistic"``: ``rank = h + t`` (gold after all its ties);
``"topk"`` reproduces the UniCRS code exactly (gold's position in ``torch.topk(scores, max_k)``; ranks
beyond ``max_k`` are unknown and stored as ``inf``). Without ties all four agree; with ties the
expectation always lies between the pessimistic and the optimistic value.

Exclusion (an extra, non-standard view)
---------------------------------------
``update(..., exclude=...)`` also scores each sample after setting the scores of items already
mentioned in the dialog (every listed item **except that sample's gold**) to ``-inf``. Those numbers
are reported *beside* the standard ones under ``"excl/<metric>"``; the standard keys never use the
exclusion, so Table 2 comparisons stay on the UniCRS protocol.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch

TieBreak = Literal["expected", "optimistic", "pessimistic", "topk"]
_TIE_BREAKS = ("expected", "optimistic", "pessimistic", "topk")

__all__ = ["RankingEvaluator", "rank_of_gold", "gold_ties", "metrics_from_ranks", "metrics_from_ties",
           "TieBreak"]


def _check_inputs(scores: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise ValueError(f"scores: expected a 2-D tensor [batch, n_items], got "
                         f"{getattr(scores, 'shape', type(scores))}")
    gold = torch.as_tensor(gold, device=scores.device)
    if gold.dim() != 1 or gold.shape[0] != scores.shape[0]:
        raise ValueError(f"gold: expected a 1-D tensor of length {scores.shape[0]} (one gold item index "
                         f"per row of scores), got shape {tuple(gold.shape)}")
    if gold.dtype.is_floating_point or gold.dtype == torch.bool:
        raise ValueError(f"gold: expected integer item indices, got dtype {gold.dtype}")
    n_items = scores.shape[1]
    if gold.numel() and (int(gold.min()) < 0 or int(gold.max()) >= n_items):
        raise ValueError(f"gold: item indices must lie in [0, {n_items}), got min {int(gold.min())}, "
                         f"max {int(gold.max())}")
    if torch.isnan(scores).any():
        raise ValueError("scores: contains NaN; ranks would be undefined")
    return gold.long()


def gold_ties(scores: torch.Tensor, gold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h, t)`` per row (float tensors, CPU): ``h`` = #items scored strictly above the gold, ``t`` =
    #items scored equal to the gold, the gold included (so ``t >= 1``)."""
    gold = _check_inputs(scores, gold)
    gold_score = scores.gather(1, gold[:, None])
    higher = (scores > gold_score).sum(dim=1)
    ties = (scores == gold_score).sum(dim=1)
    return higher.float().cpu(), ties.float().cpu()


def rank_of_gold(scores: torch.Tensor, gold: torch.Tensor, tie_break: TieBreak = "expected",
                 max_k: int = 50) -> torch.Tensor:
    """1-based rank of each row's gold item among all ``N_items`` scores (float tensor, CPU).

    ``tie_break`` is described in the module docstring: ``"expected"`` gives the mean rank
    ``h + (t + 1) / 2`` of the gold under a random order of its ties (fractional with ties); for
    ``"topk"`` ranks beyond ``max_k`` are ``inf``.
    """
    if tie_break not in _TIE_BREAKS:
        raise ValueError(f"tie_break: expected one of {_TIE_BREAKS}, got {tie_break!r}")
    gold = _check_inputs(scores, gold)
    if tie_break == "topk":
        k = min(max_k, scores.shape[1])
        top = torch.topk(scores, k=k, dim=1).indices
        hit = top == gold[:, None]
        pos = hit.float().argmax(dim=1) + 1
        rank = torch.where(hit.any(dim=1), pos.float(), torch.full_like(pos, math.inf, dtype=torch.float))
        return rank.float().cpu()
    h, t = gold_ties(scores, gold)
    if tie_break == "optimistic":
        return h + 1
    if tie_break == "pessimistic":
        return h + t
    return h + (t + 1) / 2


def metrics_from_ranks(rank: torch.Tensor | np.ndarray, ks_recall: Sequence[int] = (1, 10, 50),
                       ks_ndcg: Sequence[int] = (10, 50), ks_mrr: Sequence[int] = (10, 50)
                       ) -> dict[str, np.ndarray]:
    """Per-sample ``recall@k``, ``ndcg@k``, ``mrr@k`` arrays from 1-based ranks (``inf`` = not ranked).

    The ranks are taken as exact (no ties); for the expected metrics under ties use
    :func:`metrics_from_ties` (a fractional mean rank passed here is *not* the same thing).
    """
    r = np.asarray(rank.cpu() if isinstance(rank, torch.Tensor) else rank, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks_recall:
        out[f"recall@{k}"] = (r <= k).astype(np.float64)
    with np.errstate(divide="ignore"):
        ndcg = 1.0 / np.log2(r + 1.0)
        mrr = 1.0 / r
    for k in ks_ndcg:
        out[f"ndcg@{k}"] = np.where(r <= k, ndcg, 0.0)
    for k in ks_mrr:
        out[f"mrr@{k}"] = np.where(r <= k, mrr, 0.0)
    return out


def _mean_gain_over_ties(h: np.ndarray, t: np.ndarray, k: int, gain) -> np.ndarray:
    """``(1/t) * sum_{r=h+1}^{min(h+t, k)} gain(r)`` per sample, through a prefix sum of ``gain`` over 1..k."""
    prefix = np.concatenate([[0.0], np.cumsum(gain(np.arange(1, k + 1, dtype=np.float64)))])
    hi = np.minimum(h + t, k).astype(np.int64)
    lo = np.minimum(h, k).astype(np.int64)
    return (prefix[hi] - prefix[lo]) / t


def metrics_from_ties(higher: torch.Tensor | np.ndarray, ties: torch.Tensor | np.ndarray,
                      ks_recall: Sequence[int] = (1, 10, 50), ks_ndcg: Sequence[int] = (10, 50),
                      ks_mrr: Sequence[int] = (10, 50)) -> dict[str, np.ndarray]:
    """Per-sample expected ``recall@k``, ``ndcg@k``, ``mrr@k`` when the gold's rank is uniform on
    ``{h+1, ..., h+t}`` (``higher`` = h, ``ties`` = t >= 1; see the module docstring).

    Rows with ``t == 1`` get exactly :func:`metrics_from_ranks` of ``h + 1``.
    """
    def arr(x):
        return np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)

    h, t = arr(higher), arr(ties)
    if h.shape != t.shape:
        raise ValueError(f"higher/ties: expected arrays of the same shape, got {h.shape} and {t.shape}")
    if t.size and (t.min() < 1 or h.min() < 0):
        raise ValueError("ties: expected >= 1 (the gold ties with itself) and higher >= 0")
    exact = metrics_from_ranks(h + 1, ks_recall, ks_ndcg, ks_mrr)
    single = t == 1
    if single.all():
        return exact
    hf = np.where(np.isfinite(h), h, 0.0)  # inf only with t == 1, whose rows come from ``exact``
    out: dict[str, np.ndarray] = {}
    for k in ks_recall:
        out[f"recall@{k}"] = np.where(single, exact[f"recall@{k}"], np.clip(k - hf, 0, t) / t)
    for k in ks_ndcg:
        v = _mean_gain_over_ties(hf, t, k, lambda r: 1.0 / np.log2(r + 1.0))
        out[f"ndcg@{k}"] = np.where(single, exact[f"ndcg@{k}"], v)
    for k in ks_mrr:
        v = _mean_gain_over_ties(hf, t, k, lambda r: 1.0 / r)
        out[f"mrr@{k}"] = np.where(single, exact[f"mrr@{k}"], v)
    return out


class RankingEvaluator:
    """Streaming accumulator of Recall/NDCG/MRR@k under the UniCRS/MSCRS protocol (module docstring).

    ``update`` adds one batch; ``compute`` gives means (plus ``"count"``); ``per_sample`` gives the
    per-sample arrays (plus ``"rank"``) a paired significance test needs (``significance.py``).
    """

    def __init__(self, ks_recall: Sequence[int] = (1, 10, 50), ks_ndcg: Sequence[int] = (10, 50),
                 ks_mrr: Sequence[int] = (10, 50), tie_break: TieBreak = "expected") -> None:
        for name, ks in (("ks_recall", ks_recall), ("ks_ndcg", ks_ndcg), ("ks_mrr", ks_mrr)):
            if any((not isinstance(k, int)) or k < 1 for k in ks):
                raise ValueError(f"{name}: expected positive integers, got {tuple(ks)}")
        if tie_break not in _TIE_BREAKS:
            raise ValueError(f"tie_break: expected one of {_TIE_BREAKS}, got {tie_break!r}")
        self.ks_recall, self.ks_ndcg, self.ks_mrr = tuple(ks_recall), tuple(ks_ndcg), tuple(ks_mrr)
        self.tie_break: TieBreak = tie_break
        # topk needs the largest k any metric asks for
        self.max_k = max(self.ks_recall + self.ks_ndcg + self.ks_mrr, default=1)
        self.reset()

    def reset(self) -> None:
        # per update a [B, 2] tensor of (h, t): #items strictly above the gold, #items tied with it
        # (gold included); the deterministic modes store (rank - 1, 1)
        self._ranks: list[torch.Tensor] = []
        self._ranks_excl: list[torch.Tensor] = []
        self._exclude_mode: bool | None = None  # all updates must agree on using exclusion

    @torch.no_grad()
    def update(self, scores: torch.Tensor, gold: torch.Tensor,
               exclude: list[Sequence[int]] | None = None) -> None:
        """Add a batch: ``scores`` [B, N_items] over the whole item set, ``gold`` [B] item indices.

        ``exclude[b]``: item indices already mentioned in dialog ``b``; they get ``-inf`` (except
        ``gold[b]``) for the ``excl/`` metrics only.
        """
        gold = _check_inputs(scores, gold)
        use_excl = exclude is not None
        if self._exclude_mode is not None and self._exclude_mode != use_excl:
            raise ValueError("exclude: pass it on every update() or on none (the excl/ metrics must cover "
                             "the same samples as the standard ones)")
        self._exclude_mode = use_excl
        self._ranks.append(self._ties(scores, gold))
        if use_excl:
            self._ranks_excl.append(self._ties(self._mask(scores, gold, exclude), gold))

    def update_multi_gold(self, scores: torch.Tensor, golds: Sequence[Sequence[int]],
                          exclude: list[Sequence[int]] | None = None) -> None:
        """Recommender turns with several gold items: each gold becomes its own sample (same scores)."""
        if len(golds) != scores.shape[0]:
            raise ValueError(f"golds: expected {scores.shape[0]} lists (one per row of scores), got {len(golds)}")
        if exclude is not None and len(exclude) != scores.shape[0]:
            raise ValueError(f"exclude: expected {scores.shape[0]} lists, got {len(exclude)}")
        rows = [i for i, g in enumerate(golds) for _ in g]
        flat = [int(x) for g in golds for x in g]
        if not rows:
            return
        idx = torch.tensor(rows, device=scores.device)
        ex = [exclude[i] for i in rows] if exclude is not None else None
        self.update(scores.index_select(0, idx), torch.tensor(flat, device=scores.device), ex)

    def _ties(self, scores: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        if self.tie_break == "expected":
            h, t = gold_ties(scores, gold)
        else:
            h = rank_of_gold(scores, gold, self.tie_break, self.max_k) - 1
            t = torch.ones_like(h)
        return torch.stack([h, t], dim=1)

    @staticmethod
    def _mask(scores: torch.Tensor, gold: torch.Tensor, exclude: list[Sequence[int]]) -> torch.Tensor:
        if len(exclude) != scores.shape[0]:
            raise ValueError(f"exclude: expected {scores.shape[0]} lists (one per row of scores), got {len(exclude)}")
        n_items = scores.shape[1]
        rows, cols = [], []
        for b, items in enumerate(exclude):
            for it in items:
                it = int(it)
                if not 0 <= it < n_items:
                    raise ValueError(f"exclude[{b}]: item index {it} outside [0, {n_items})")
                rows.append(b)
                cols.append(it)
        masked = scores.clone()
        if rows:
            masked[torch.tensor(rows), torch.tensor(cols)] = -math.inf
        b = torch.arange(scores.shape[0], device=scores.device)
        masked[b, gold] = scores[b, gold]  # the gold itself is never excluded
        return masked

    def _all_ranks(self, excl: bool = False) -> torch.Tensor:
        parts = self._ranks_excl if excl else self._ranks
        return torch.cat(parts) if parts else torch.zeros(0, 2)

    def _metrics(self, excl: bool) -> dict[str, np.ndarray]:
        ht = self._all_ranks(excl).numpy().astype(np.float64)
        h, t = ht[:, 0], ht[:, 1]
        out = metrics_from_ties(h, t, self.ks_recall, self.ks_ndcg, self.ks_mrr)
        out["rank"] = h + (t + 1) / 2  # the mean rank; h + 1 without ties
        return out

    def per_sample(self) -> dict[str, np.ndarray]:
        """Per-sample metric arrays (same order as the updates) plus ``"rank"``; ``excl/`` keys if used.

        Under ``tie_break="expected"`` the values are expectations over the gold's ties (possibly
        fractional) and ``"rank"`` is the mean rank ``h + (t + 1) / 2``.
        """
        out = self._metrics(excl=False)
        if self._exclude_mode:
            for k, v in self._metrics(excl=True).items():
                out[f"excl/{k}"] = v
        return out

    def compute(self) -> dict[str, float]:
        """Means over all samples so far: ``recall@k``, ``ndcg@k``, ``mrr@k`` (+ ``excl/...``) and ``count``."""
        per = self.per_sample()
        n = len(per["rank"])
        if n == 0:
            raise ValueError("RankingEvaluator.compute: no samples; call update() first")
        out = {k: float(v.mean()) for k, v in per.items() if not k.endswith("rank")}
        out["count"] = float(n)
        return out
