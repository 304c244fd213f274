"""Popularity (Table 2): rank items by how often they are recommended in the training split."""
from __future__ import annotations

from typing import Sequence

import torch


def popularity_scores(train_samples: Sequence, item_ids: Sequence[int]) -> torch.Tensor:
    """[N] counts of each item as a gold target in ``train_samples`` (recommendation samples).

    The paper ranks "items based on their occurrence frequency in the dataset"; counting the
    training split's recommended items keeps test labels out. Items with equal counts tie; the
    evaluation's default ``tie_break="expected"`` scores a gold among ties by its expected rank.
    """
    pos = {e: i for i, e in enumerate(item_ids)}
    counts = torch.zeros(len(item_ids))
    for s in train_samples:
        if s.target in pos:
            counts[pos[s.target]] += 1
    return counts
