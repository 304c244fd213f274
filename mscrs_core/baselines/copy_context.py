"""Copy-the-context reference row (not in the paper): recommend again what the dialog already mentioned.

In INSPIRED and ReDial the recommender often names again an item mentioned earlier in the same dialog,
and such samples count as hits in Table 2. This scorer measures how far that alone goes: the items
already mentioned in the context (``sample.mentioned_items``) are ranked first, the most recent first,
then every other item by training popularity.

**Recency:** ``mentioned_items`` lists items in order of *first* mention, so "more recent" here means
"first mentioned later"; an item mentioned early and again later keeps its early position. Scores are
strictly ordered among the copied items and every copied item is strictly above every other item (ties
among the remaining items follow their popularity ties; the evaluation's ``tie_break`` rule handles them).
"""
from __future__ import annotations

from typing import Sequence

import torch


def copy_context_scores(samples: Sequence, item_ids: Sequence[int], popularity: torch.Tensor) -> torch.Tensor:
    """[len(samples), N]: context items first (later first mention = higher), then the rest by ``popularity``.

    ``popularity``: [N] non-negative scores aligned with ``item_ids`` (e.g. :func:`popularity_scores` of the
    training split). Mentioned entities that are not items are ignored.
    """
    pop = torch.as_tensor(popularity, dtype=torch.float64).reshape(-1)
    if pop.numel() != len(item_ids):
        raise ValueError(f"popularity: expected {len(item_ids)} scores (one per item), got {pop.numel()}")
    if torch.isnan(pop).any() or (pop < 0).any():
        raise ValueError("popularity: expected non-negative scores without NaN")
    pos = {int(e): i for i, e in enumerate(item_ids)}
    base = pop / (pop.max() + 1.0)  # in [0, 1): below every copied item
    out = base.expand(len(samples), -1).clone()
    for b, s in enumerate(samples):
        copied = [pos[int(e)] for e in s.mentioned_items if int(e) in pos]
        for rank, i in enumerate(copied):  # first mentions in order: later -> larger score
            out[b, i] = 2.0 + rank
    return out.float()
