"""Training the prompt-learning recommender: pre-training (Eq. 22) and recommendation (Eq. 24).

:class:`RecommendationTask` is what is specific to the recommender (collation by
:class:`~mscrs_core.models.collate.RecCollator`, the loss CE + delta * L_fuse, ranking metrics on the
validation split, one learning rate per part of the model); :class:`~mscrs_core.training.trainer.Trainer` is
the loop. :func:`train` runs the two together under a :class:`TrainConfig`.

Model selection is on the VALIDATION split only (Recall@10 for recommendation, the loss for pre-training by
default, as UniCRS selects its pre-training); ties never count in the model's favour
(:class:`~mscrs_core.evaluation.ranking.RankingEvaluator`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mscrs_core.evaluation.ranking import RankingEvaluator
from mscrs_core.models.collate import RecCollator
from mscrs_core.training.trainer import EpochCallback, TaskDefaults, Trainer, TrainerConfig, decay_groups, \
    mean_logs, to_device

SELECT_METRICS = ("auto", "recall@10", "loss")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` (all but ``output_dir``/``progress``/``resume`` enter the resume hash).

    ``warmup_steps=None`` uses ``warmup_ratio`` of the total steps. ``select_metric="auto"`` picks Recall@10 for
    ``task="rec"`` and the loss for ``task="pretrain"`` (as UniCRS selects its pre-training by loss).
    ``include_response=None`` appends the response text for pre-training only (as UniCRS does).
    """

    output_dir: str | None  # None: best weights kept in memory, nothing written
    task: str = "rec"
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 64
    lr: float = 1e-4
    graph_lr: float | None = None  # learning rate of ``graph_encoder.*`` parameters (R-GCN, LightGCN); None: lr
    entity_lr: float | None = None  # the entity table's (``*.node_embeds``) own rate; None: graph_lr
    head_lr: float | None = None  # the scoring head's scale and item bias; None: lr
    text_lr: float | None = None  # the maps of the context's text features (text_projection, text_skip_map); None: lr
    weight_decay: float = 0.0
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    seed: int = 42
    select_metric: str = "auto"
    max_length: int = 200
    include_response: bool | None = None
    cpu: bool = False
    mixed_precision: str = "no"
    progress: bool = True
    resume: bool = True

    def __post_init__(self) -> None:
        if self.task not in ("rec", "pretrain"):
            raise ValueError(f"task: expected 'rec' or 'pretrain', got {self.task!r}")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"select_metric: expected one of {SELECT_METRICS}, got {self.select_metric!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs/batch_size/eval_batch_size: expected positive integers")

    @property
    def metric(self) -> str:
        """The validation metric used for model selection."""
        if self.select_metric != "auto":
            return self.select_metric
        return "recall@10" if self.task == "rec" else "loss"

    def trainer_config(self) -> TrainerConfig:
        """The loop's part of this configuration."""
        return TrainerConfig(output_dir=self.output_dir, epochs=self.epochs, batch_size=self.batch_size,
                             eval_batch_size=self.eval_batch_size, warmup_steps=self.warmup_steps,
                             warmup_ratio=self.warmup_ratio, max_grad_norm=self.max_grad_norm, seed=self.seed,
                             cpu=self.cpu, mixed_precision=self.mixed_precision, progress=self.progress,
                             resume=self.resume, description=f"{self.task} epoch")


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train`; ``history`` has one dict per epoch (train loss + validation metrics)."""

    history: list[dict[str, float]]
    best_epoch: int
    best_metric: float
    metric: str
    best_path: Path | None  # None when trained without an output folder
    last_path: Path
    # rec task: the best epoch's validation scores over the item axis [N_valid, N_items], when that epoch ran
    # in this call (None after a resume that skipped it); saves scoring the validation split once more
    best_valid_scores: Tensor | None = None


@torch.no_grad()
def evaluate(model: nn.Module, samples: Sequence, collator: RecCollator, *, task: str = "rec",
             batch_size: int = 64, device: torch.device | str = "cpu", return_scores: bool = False
             ) -> dict[str, float] | tuple[dict[str, float], Tensor]:
    """Validation loss (CE + delta * L_fuse) and ranking metrics.

    ``task="rec"`` ranks the item axis (``score_items`` semantics, whatever the training scope);
    ``task="pretrain"`` ranks all entities. Gold: the item position / entity id of ``sample.target``.
    With ``return_scores`` also the score matrix, one row per sample.
    """
    core = getattr(model, "module", model)
    was_training = core.training
    core.eval()
    losses, weights = [], []
    evaluator = RankingEvaluator()
    scores = []
    # validation runs at the training's threads: its loss is recorded with the run (mscrs_core.core_share)
    for start in range(0, len(samples), batch_size):
        batch = to_device(collator(samples[start:start + batch_size]), torch.device(device))
        out = core(batch, task=task)
        losses.append(float(out.loss))
        weights.append(len(batch["labels"]))
        if task == "rec":
            logits = out.logits if out.logits.shape[1] == core.item_ids.numel() else out.logits[:, core.item_ids]
            s, g = logits.float().cpu(), core.item_positions(batch["labels"]).cpu()
        else:
            s, g = out.logits.float().cpu(), batch["labels"].cpu()
        evaluator.update(s, g)
        scores.append(s)
    core.train(was_training)
    metrics = {k: float(v) for k, v in evaluator.compute().items() if k != "count"}
    metrics["loss"] = float(np.average(losses, weights=weights))
    return (metrics, torch.cat(scores)) if return_scores else metrics


def recommender_param_groups(model: nn.Module, lr: float, weight_decay: float, graph_lr: float | None = None,
                             entity_lr: float | None = None, head_lr: float | None = None,
                             text_lr: float | None = None) -> list[dict]:
    """AdamW groups: no weight decay on vectors and norms; ``graph_lr`` for the graph encoder's layers,
    ``entity_lr`` for its entity table (``*.node_embeds``), ``head_lr`` for the head's scalars and biases and
    ``text_lr`` for the maps of the context's sentence-encoder features (``context_encoder="text_encoder"``:
    384 inputs of norm about one, so a rate that suits the prompt moves their output, and overfits, fast).

    Why a separate rate for the table: it starts at the authors' Xavier scale (about 0.011 for 17k entities at
    d = 64, a row norm near 0.09), and Adam moves every row that gets a gradient by about its rate per step in
    every coordinate, whatever the gradient's size: at 1e-3 a few dozen steps overwrite what the graphs put
    into the rows. 1e-5 keeps the graph structure and still lets the rows move over a run.
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: no trainable parameters")
    graph_rate = graph_lr if graph_lr is not None else lr
    rates = {"other": lr, "graph": graph_rate, "table": entity_lr if entity_lr is not None else graph_rate,
             "head": head_lr if head_lr is not None else lr, "text": text_lr if text_lr is not None else lr}

    def kind(name: str) -> str:
        if name in ("log_scale", "item_bias", "mention_weight", "mention_recency", "title_weight"):
            return "head"
        if name.startswith(("text_projection.", "text_skip_map.")):
            return "text"
        if not name.startswith("graph_encoder."):
            return "other"
        return "table" if name.endswith("node_embeds") else "graph"

    groups = []
    for group in ("other", "graph", "table", "head", "text"):
        groups += decay_groups([(n, p) for n, p in params if kind(n) == group], weight_decay, rates[group])
    return [g for g in groups if g["params"]]


class RecommendationTask(TaskDefaults):
    """Pre-training (``task="pretrain"``, Eq. 22) or recommendation (``task="rec"``, Eq. 24) of an
    :class:`~mscrs_core.models.recommender.MSCRSRecommender` for :class:`~mscrs_core.training.trainer.Trainer`."""

    def __init__(self, config: TrainConfig, collator: RecCollator):
        self.config, self.collator = config, collator
        self.seed, self.weight_decay = config.seed, config.weight_decay
        self.metric = config.metric
        self.maximize = config.metric != "loss"

    def collate(self, samples: list) -> dict[str, Tensor]:
        return self.collator(samples)

    def training_loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        out = model(batch, task=self.config.task)
        return out.loss, {"loss": float(out.loss.detach()), "ce": float(out.ce.detach()),
                          "fuse": float(out.fuse_loss.detach())}

    def validate(self, model: nn.Module, samples: list, device: torch.device) -> tuple[dict[str, float], Any]:
        rec = self.config.task == "rec"  # only rec scores are reused (pre-training's cover all entities)
        out = evaluate(model, samples, self.collator, task=self.config.task, batch_size=self.config.eval_batch_size,
                       device=device, return_scores=rec)
        return out if rec else (out, None)

    def param_groups(self, model: nn.Module) -> list[dict]:
        c = self.config
        return recommender_param_groups(model, c.lr, c.weight_decay, c.graph_lr, c.entity_lr, c.head_lr, c.text_lr)

    def history_row(self, epoch: int, steps: list, valid: dict[str, float]) -> dict[str, Any]:
        logs = mean_logs(steps)
        return {"epoch": float(epoch), "train_loss": logs["loss"], "train_ce": logs["ce"],
                "train_fuse": logs["fuse"], **{f"valid_{k}": v for k, v in valid.items()}}

    def identity(self) -> dict[str, Any]:
        c = self.config
        out = {"task": c.task, "lr": c.lr, "graph_lr": c.graph_lr, "entity_lr": c.entity_lr, "head_lr": c.head_lr,
               "weight_decay": c.weight_decay, "select_metric": c.select_metric,
               "collator": [self.collator.max_length, self.collator.include_response]}
        if c.text_lr is not None:  # added later: absent, the checkpoints of earlier runs still resume
            out["text_lr"] = c.text_lr
        return out


def default_collator(model: nn.Module, config: TrainConfig) -> RecCollator:
    """``RecCollator(model.tokenizer, max_length, <the model's q>, include_response=<task == 'pretrain'>)``."""
    if getattr(model, "tokenizer", None) is None:
        raise ValueError("collator: model has no tokenizer; pass collator=RecCollator(tokenizer, ...)")
    include = config.task == "pretrain" if config.include_response is None else config.include_response
    return RecCollator(model.tokenizer, max_length=config.max_length,
                       max_entities=model.prompt_encoder.max_entities, include_response=include)


def train(model: nn.Module, train_samples: Sequence, valid_samples: Sequence, config: TrainConfig, *,
          collator: RecCollator | None = None, callbacks: Sequence[EpochCallback] = ()) -> TrainResult:
    """Train ``model`` (an :class:`~mscrs_core.models.recommender.MSCRSRecommender`) with validation-based
    model selection, per-epoch atomic checkpoints and exact resume (:class:`~mscrs_core.training.trainer.Trainer`).

    Args:
        model: the recommender; only parameters with ``requires_grad`` are optimised.
        train_samples, valid_samples: samples (``mscrs_core.data.samples``); never pass test samples here.
        config: :class:`TrainConfig`.
        collator: defaults to :func:`default_collator`.
        callbacks: ``f(epoch, metrics)`` called after each epoch's checkpoint is on disk.

    Returns:
        :class:`TrainResult`; the model holds the best epoch's weights on return.
    """
    collator = collator if collator is not None else default_collator(model, config)
    limit = getattr(getattr(getattr(model, "backbone", None), "config", None), "max_position_embeddings", None)
    needed = collator.max_length + model.prompt_encoder.prompt_length
    if limit is not None and needed > limit:
        raise ValueError(f"max_length {collator.max_length} + prompt {model.prompt_encoder.prompt_length} = {needed} "
                         f"positions exceed the backbone's max_position_embeddings {limit}")
    res = Trainer(model, RecommendationTask(config, collator), config.trainer_config(), callbacks).fit(
        train_samples, valid_samples)
    return TrainResult(history=res.history, best_epoch=res.best_epoch, best_metric=res.best_metric,
                       metric=res.metric, best_path=res.best_path, last_path=res.last_path,
                       best_valid_scores=res.best_valid_extra)
