"""A trained KBRD-like entity-mean recommender without a language model (reference row, not in the paper).

KBRD (Chen et al., 2019) scores items from the mean of the context entities' graph embeddings. Here:

* ``E = encoder()`` is the entity table [K, d] of a graph encoder (a
  :class:`~mscrs_core.graphs.fusion.SemanticGraphEncoder`; with every semantic graph switched off it is
  the R-GCN over the knowledge graph alone, Eq. 1, i.e. the KBRD analogue; with the graphs on, Eq. 1-16);
* the user vector ``u_s`` is the mean of the rows of the sample's context entities; a sample without
  context entities gets a learned "no entity" vector;
* ``score(s, i) = scale * cos(u_s, E[item_i]) + b_i``, with ``scale`` a learned logit scale (stored as
  its log, initialised to ``init_scale``) and ``b`` initialised to the log popularity of the training split;
* trained by cross-entropy over the items with AdamW (the project's :class:`~mscrs_core.training.trainer.Trainer`,
  constant rate); the epoch with the best validation Recall@10 is kept.

**Why two learning rates:** the entity table starts tiny (Xavier scale, about 0.02 for 17k entities) and
Adam moves every touched row by about ``lr`` per step, so a rate suited to the head would overwrite the
table's graph structure within a few dozen steps; the encoder gets ``graph_lr``. The cosine head makes the
scores independent of the table's scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..training.trainer import TaskDefaults, Trainer, TrainerConfig, mean_logs


@dataclass(frozen=True)
class EntityMeanConfig:
    epochs: int = 20  # at most; the best epoch by validation Recall@10 is kept
    lr: float = 1e-2  # head: no-entity vector, logit scale, item bias
    graph_lr: float = 1e-3  # the encoder (entity table, R-GCN, ...)
    weight_decay: float = 0.0
    init_scale: float = 10.0
    batch_size: int = 64
    max_entities: int = 0  # >0: only the newest context entities
    seed: int = 0


class EntityMeanScorer(nn.Module):
    """Eq. above: ``scale * cos(mean context rows, item rows) + bias`` over ``item_ids``."""

    def __init__(self, encoder: nn.Module, item_ids: Sequence[int], dim: int, prior: torch.Tensor,
                 init_scale: float = 10.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("item_ids", torch.as_tensor(list(item_ids), dtype=torch.long))
        self.no_entity = nn.Parameter(torch.randn(dim) * 0.1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(prior.clone().float())

    def forward(self, entity_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        table = self.encoder()
        k = table.shape[0]
        flat = [int(e) for ids in entity_lists for e in ids]
        if flat and (min(flat) < 0 or max(flat) >= k):
            raise ValueError(f"context entity ids outside [0, {k})")
        dev = table.device
        seg = torch.tensor([b for b, ids in enumerate(entity_lists) for _ in ids], dtype=torch.long, device=dev)
        sums = torch.zeros(len(entity_lists), table.shape[1], dtype=table.dtype, device=dev)
        if flat:
            sums = sums.index_add(0, seg, table[torch.tensor(flat, dtype=torch.long, device=dev)])
        counts = torch.tensor([len(ids) for ids in entity_lists], dtype=table.dtype, device=dev)
        user = sums / counts.clamp_min(1)[:, None]
        empty = (counts == 0)[:, None]
        user = torch.where(empty, self.no_entity.to(table.dtype).expand_as(user), user)
        cos = F.normalize(user, dim=-1) @ F.normalize(table[self.item_ids], dim=-1).T
        return self.log_scale.exp() * cos + self.bias


def _entities(samples: Sequence, max_entities: int) -> list[list[int]]:
    out = []
    for s in samples:
        ids = [int(e) for e in s.context_entities]
        out.append(ids[-max_entities:] if max_entities > 0 else ids)
    return out


@torch.no_grad()
def _score(model: EntityMeanScorer, ents: list[list[int]], batch: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(ents[i:i + batch]) for i in range(0, len(ents), batch)]) if ents \
        else torch.zeros(0, len(model.item_ids))


class EntityMeanTask(TaskDefaults):
    """Cross-entropy over the items for :class:`~mscrs_core.training.trainer.Trainer`; the epoch with the best
    validation Recall@10 is kept (the untrained scorer, "epoch -1", included). The samples it trains on are
    indices into the precomputed entity lists; the order is drawn from one generator seeded once."""

    metric, maximize = "recall@10", True

    def __init__(self, model: EntityMeanScorer, entities: list[list[int]], targets: torch.Tensor,
                 valid_entities: list[list[int]], valid_targets: torch.Tensor, cfg: EntityMeanConfig):
        self.model, self.entities, self.targets, self.cfg = model, entities, targets, cfg
        self.valid_entities, self.valid_targets = valid_entities, valid_targets
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def order(self, n: int, epoch: int) -> list[int]:
        return torch.randperm(n, generator=self.gen).tolist()

    def collate(self, idx: list[int]):
        return [self.entities[j] for j in idx], self.targets[idx]

    def training_loss(self, model, batch):
        ents, y = batch
        loss = F.cross_entropy(model(ents), y)
        return loss, {"loss": float(loss.detach())}

    def validate(self, model, samples, device):
        from ..evaluation import RankingEvaluator

        scores = _score(getattr(model, "module", model), self.valid_entities).cpu()
        ev = RankingEvaluator()
        ev.update(scores, self.valid_targets)
        return ev.compute(), scores

    def param_groups(self, model) -> list[dict]:
        enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in enc_params}
        head = [p for p in model.parameters() if id(p) not in enc_ids]
        wd = self.cfg.weight_decay
        return [{"params": enc_params, "lr": self.cfg.graph_lr, "weight_decay": wd},
                {"params": head, "lr": self.cfg.lr, "weight_decay": wd}]

    def history_row(self, epoch: int, steps: list, valid: dict) -> dict:
        valid = {f"valid_{k}": v for k, v in valid.items()}
        if epoch < 0:
            return {"epoch": -1, "train_loss": float("nan"), **valid}
        return {"epoch": epoch, "train_loss": mean_logs(steps, weighted=True)["loss"],
                "scale": float(self.model.log_scale.detach().exp()), **valid}


def train_entity_mean(encoder: nn.Module, train, valid, test, item_ids: Sequence[int], cfg: EntityMeanConfig
                      ) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Train the entity-mean scorer on ``train`` (:class:`~mscrs_core.training.trainer.Trainer`, constant rate,
    no clipping), keep the epoch with the best validation Recall@10; returns (valid scores, test scores,
    history). ``encoder`` is trained in place (``graph_lr``)."""
    from .text_classifier import log_popularity

    if cfg.epochs < 1:
        raise ValueError(f"EntityMeanConfig.epochs: expected >= 1, got {cfg.epochs}")
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        dim = encoder().shape[1]
    model = EntityMeanScorer(encoder, item_ids, dim, log_popularity(train, item_ids), cfg.init_scale)
    pos = {int(e): i for i, e in enumerate(item_ids)}
    ytr = torch.tensor([pos[int(s.target)] for s in train])
    yva = torch.tensor([pos[int(s.target)] for s in valid])
    etr, eva, ete = (_entities(x, cfg.max_entities) for x in (train, valid, test))
    task = EntityMeanTask(model, etr, ytr, eva, yva, cfg)
    res = Trainer(model, task, TrainerConfig(output_dir=None, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                             schedule="constant", max_grad_norm=None, seed=None,
                                             validate_before=True, progress=False,
                                             description="entity mean epoch")).fit(range(len(etr)), valid)
    history = res.history
    chosen = max(history, key=lambda h: h["valid_recall@10"])
    chosen["selected"] = True
    return _score(model, eva).cpu(), _score(model, ete).cpu(), history
