"""What the semantic graphs know before any training: an untrained, language-model-free scorer.

score(s, i) = cos(mean_{e in context(s)} E_final[e], E_final[i]), with E_final the output of a freshly
initialised :class:`~mscrs_core.graphs.fusion.SemanticGraphEncoder` (Eq. 1-16; random entity table).

Random d-dimensional rows are nearly orthogonal, so after propagation two entities are similar exactly when
the graphs connect them: through the co-mention graph (Eq. 6-8) an item's row contains the rows of the
entities it was recommended with, which makes this a random-projection collaborative filter. It is not a
method of the paper; the book uses it to show how much of the recommendation signal the graphs carry by
themselves, next to what the trained prompt model extracts. Samples without context entities score every
item 0: one big tie, which the evaluation's default ``tie_break="expected"`` scores as a random order
(Recall@k = k / N), never as a hit.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def graph_scores(encoder: nn.Module, samples: Sequence, item_ids: Sequence[int]) -> torch.Tensor:
    """[len(samples), N] cosine scores of each sample's mean context-entity row against the item rows."""
    table = F.normalize(encoder().float(), dim=-1)
    items = table[torch.as_tensor(list(item_ids), dtype=torch.long)]
    rows = torch.zeros(len(samples), table.shape[1])
    for i, s in enumerate(samples):
        ids = [int(e) for e in s.context_entities]
        if ids:
            if max(ids) >= table.shape[0] or min(ids) < 0:
                raise ValueError(f"sample {s.dialog_id}#{s.turn_index}: entity ids outside [0, {table.shape[0]})")
            rows[i] = table[ids].mean(0)
    return F.normalize(rows, dim=-1) @ items.T
