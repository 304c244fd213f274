"""A graph-free entity encoder: a learnable K x d table, ``forward() -> Tensor[K, d]``.

The simplest module with the graph side's interface (``SemanticGraphEncoder``): for tests, for the
benchmark's prompt-only baseline, and for a "no knowledge graph at all" model.
"""
from __future__ import annotations

import torch
from torch import nn


class EntityTable(nn.Module):
    def __init__(self, num_entities: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(num_entities, dim)

    def forward(self) -> torch.Tensor:
        return self.emb.weight
