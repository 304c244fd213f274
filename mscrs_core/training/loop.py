"""Training loop for the prompt-learning recommender: pre-training (Eq. 22) and recommendation (Eq. 24).

* AdamW over the trainable parameters only (the backbone is frozen), linear warmup/decay
  (``transformers.get_linear_schedule_with_warmup``), gradient clipping.
* Determinism: random/numpy/torch seeded once; the sample order of epoch e comes from a generator seeded with
  (seed, e), so it does not depend on what ran before; the frozen backbone has no dropout.
* Model selection on the VALIDATION split only (Recall@10 for recommendation, loss for pre-training by default);
  the test split never enters this module. At the end the best epoch's weights are loaded into the model.
* A checkpoint (``last.pt``) is written atomically after every epoch with model/optimizer/scheduler/RNG state;
  calling :func:`train` again with the same config and data continues after the last finished epoch and ends
  with the same metrics and weights as an uninterrupted run. ``best.pt`` holds the best epoch's weights.
* Devices through ``accelerate``: CPU, one GPU, or several (launch with ``accelerate launch``; each process
  takes its slice of every global batch, validation runs the full split on every process).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mscrs_core.models.collate import RecCollator
from mscrs_core.training.checkpoint import atomic_save, load_checkpoint, resume_from, training_state

SELECT_METRICS = ("auto", "recall@10", "loss")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` (all but ``output_dir``/``progress``/``resume`` enter the resume hash).

    ``warmup_steps=None`` uses ``warmup_ratio`` of the total steps. ``select_metric="auto"`` picks Recall@10 for
    ``task="rec"`` and the loss for ``task="pretrain"`` (as UniCRS selects its pre-training by loss).
    ``include_response=None`` appends the response text for pre-training only (as UniCRS does).
    """

    output_dir: str
    task: str = "rec"
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 64
    lr: float = 1e-4
    graph_lr: float | None = None  # learning rate of ``graph_encoder.*`` parameters (R-GCN, LightGCN); None: lr
    entity_lr: float | None = None  # the entity table's (``*.node_embeds``) own rate; None: graph_lr
    head_lr: float | None = None  # the scoring head's scale and item bias; None: lr
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


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train`; ``history`` has one dict per epoch (train loss + validation metrics)."""

    history: list[dict[str, float]]
    best_epoch: int
    best_metric: float
    metric: str
    best_path: Path
    last_path: Path
    # rec task: the best epoch's validation scores over the item axis [N_valid, N_items], when that epoch ran
    # in this call (None after a resume that skipped it); saves scoring the validation split once more
    best_valid_scores: Tensor | None = None


EpochCallback = Callable[[int, dict[str, float]], None]


# ------------------------------------------------------------------------------------------ helpers


def set_seed(seed: int) -> None:
    """Seed random, numpy and torch (all devices)."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """Permutation of the training samples for one epoch; a pure function of (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def _global_batches(order: Tensor, batch_size: int, n_proc: int, rank: int) -> list[list[int]]:
    """This process's slice of every global batch (size batch_size * n_proc); the last global batch is
    filled up by wrapping around when several processes run, so every process gets the same number of steps."""
    glob = batch_size * n_proc
    idx = order.tolist()
    if n_proc > 1 and len(idx) % glob:
        idx = idx + idx[: glob - len(idx) % glob]
    out = []
    for start in range(0, len(idx), glob):
        chunk = idx[start:start + glob]
        per = math.ceil(len(chunk) / n_proc)
        mine = chunk[rank * per:(rank + 1) * per]
        if mine:
            out.append(mine)
    return out


def _config_hash(config: TrainConfig, model: nn.Module, train_samples: Sequence, valid_samples: Sequence) -> str:
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("output_dir", "progress", "resume")}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for s in list(train_samples) + [None] + list(valid_samples):
        h.update(repr(s).encode())
    shapes = sorted((k, tuple(v.shape)) for k, v in model.trainable_state_dict().items())
    h.update(repr(shapes).encode())
    return h.hexdigest()


def _ranking_metrics(scores: list[Tensor], gold: list[Tensor]) -> dict[str, float]:
    """Recall/NDCG/MRR@k of the project's evaluator (ties never count in the model's favour)."""
    from mscrs_core.evaluation.ranking import RankingEvaluator

    evaluator = RankingEvaluator()
    for s, g in zip(scores, gold):
        evaluator.update(s, g)
    return {k: float(v) for k, v in evaluator.compute().items() if k != "count"}


def _to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


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
    losses, weights, scores, gold = [], [], [], []
    for start in range(0, len(samples), batch_size):
        batch = _to_device(collator(samples[start:start + batch_size]), torch.device(device))
        out = core(batch, task=task)
        losses.append(float(out.loss))
        weights.append(len(batch["labels"]))
        if task == "rec":
            logits = out.logits if out.logits.shape[1] == core.item_ids.numel() else out.logits[:, core.item_ids]
            scores.append(logits.float().cpu())
            gold.append(core.item_positions(batch["labels"]).cpu())
        else:
            scores.append(out.logits.float().cpu())
            gold.append(batch["labels"].cpu())
    core.train(was_training)
    metrics = _ranking_metrics(scores, gold)
    metrics["loss"] = float(np.average(losses, weights=weights))
    return (metrics, torch.cat(scores)) if return_scores else metrics


def _optimizer(model: nn.Module, lr: float, weight_decay: float, graph_lr: float | None = None,
               entity_lr: float | None = None, head_lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW; no weight decay on vectors and norms; ``graph_lr`` for the graph encoder's layers and
    ``entity_lr`` for its entity table (``*.node_embeds``).

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
             "head": head_lr if head_lr is not None else lr}

    def kind(name: str) -> str:
        if name in ("log_scale", "item_bias", "mention_weight", "mention_recency"):
            return "head"
        if not name.startswith("graph_encoder."):
            return "other"
        return "table" if name.endswith("node_embeds") else "graph"

    groups = []
    for group in ("other", "graph", "table", "head"):
        sub = [(n, p) for n, p in params if kind(n) == group]
        group_lr = rates[group]
        decay = [p for n, p in sub if p.ndim >= 2 and "norm" not in n.lower()]
        rest = [p for n, p in sub if not (p.ndim >= 2 and "norm" not in n.lower())]
        groups += [{"params": decay, "weight_decay": weight_decay, "lr": group_lr},
                   {"params": rest, "weight_decay": 0.0, "lr": group_lr}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


# ------------------------------------------------------------------------------------------ train


def train(
    model: nn.Module,
    train_samples: Sequence,
    valid_samples: Sequence,
    config: TrainConfig,
    *,
    collator: RecCollator | None = None,
    callbacks: Sequence[EpochCallback] = (),
) -> TrainResult:
    """Train ``model`` (an :class:`~mscrs_core.models.recommender.MSCRSRecommender`) with validation-based
    model selection, per-epoch atomic checkpoints and exact resume (see module docstring).

    Args:
        model: the recommender; only parameters with ``requires_grad`` are optimised.
        train_samples, valid_samples: samples (``mscrs_core.data.samples``); never pass test samples here.
        config: :class:`TrainConfig`.
        collator: defaults to ``RecCollator(model.tokenizer, max_length=config.max_length,
            max_entities=<the model's q>, include_response=<task == 'pretrain'>)``.
        callbacks: ``f(epoch, metrics)`` called after each epoch's checkpoint is on disk (an exception raised
            there interrupts training; calling :func:`train` again resumes).

    Returns:
        :class:`TrainResult`; the model holds the best epoch's weights on return.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if len(train_samples) == 0 or len(valid_samples) == 0:
        raise ValueError("train_samples/valid_samples: expected non-empty sequences")
    train_samples, valid_samples = list(train_samples), list(valid_samples)
    core = model
    if collator is None:
        if getattr(core, "tokenizer", None) is None:
            raise ValueError("collator: model has no tokenizer; pass collator=RecCollator(tokenizer, ...)")
        include = config.task == "pretrain" if config.include_response is None else config.include_response
        collator = RecCollator(core.tokenizer, max_length=config.max_length,
                               max_entities=core.prompt_encoder.max_entities, include_response=include)
    limit = getattr(getattr(core, "backbone", None), "config", None)
    limit = getattr(limit, "max_position_embeddings", None)
    needed = collator.max_length + core.prompt_encoder.prompt_length
    if limit is not None and needed > limit:
        raise ValueError(f"max_length {collator.max_length} + prompt {core.prompt_encoder.prompt_length} = {needed} "
                         f"positions exceed the backbone's max_position_embeddings {limit}")
    out_dir = Path(config.output_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    digest = _config_hash(config, core, train_samples, valid_samples)

    set_seed(config.seed)
    accelerator = Accelerator(cpu=config.cpu, mixed_precision=config.mixed_precision)
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    optimizer = _optimizer(core, config.lr, config.weight_decay, config.graph_lr, config.entity_lr, config.head_lr)
    steps_per_epoch = math.ceil(len(train_samples) / (config.batch_size * n_proc))
    total_steps = steps_per_epoch * config.epochs
    warmup = config.warmup_steps if config.warmup_steps is not None else int(config.warmup_ratio * total_steps)
    # The scheduler is stepped by hand (not prepared): accelerate would step it once per process.
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device

    start_epoch, step, best_metric, best_epoch, history = 0, 0, None, None, []
    best_scores: Tensor | None = None
    if config.resume and last_path.is_file():
        start_epoch, step, best_metric, best_epoch, history = resume_from(last_path, digest, core, optimizer, scheduler)
    metric_name, sign = config.metric, (1.0 if config.metric != "loss" else -1.0)
    trainable = [p for p in core.parameters() if p.requires_grad]

    for epoch in range(start_epoch, config.epochs):
        wrapped.train()
        batches = _global_batches(epoch_order(len(train_samples), config.seed, epoch), config.batch_size,
                                  n_proc, rank)
        losses: list[float] = []
        ces: list[float] = []
        fuses: list[float] = []
        bar = tqdm(batches, desc=f"epoch {epoch}", disable=not (config.progress and accelerator.is_main_process))
        for idx in bar:
            batch = _to_device(collator([train_samples[i] for i in idx]), device)
            out = wrapped(batch, task=config.task)
            accelerator.backward(out.loss)
            if config.max_grad_norm is not None:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(float(out.loss.detach()))
            ces.append(float(out.ce.detach()))
            fuses.append(float(out.fuse_loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        metrics = {"epoch": float(epoch), "train_loss": float(np.mean(losses)), "train_ce": float(np.mean(ces)),
                   "train_fuse": float(np.mean(fuses))}
        rec = config.task == "rec"  # only rec scores are reused (pre-training's cover all entities)
        out = evaluate(core, valid_samples, collator, task=config.task, batch_size=config.eval_batch_size,
                       device=device, return_scores=rec)
        valid, valid_scores = out if rec else (out, None)
        metrics.update({f"valid_{k}": v for k, v in valid.items()})
        history.append(metrics)
        value = valid[metric_name]
        if best_metric is None or sign * value > sign * best_metric:
            best_metric, best_epoch = value, epoch
            best_scores = valid_scores
            if accelerator.is_main_process:
                atomic_save({"model": core.trainable_state_dict(), "epoch": epoch, "metric": metric_name,
                             "value": value, "config_hash": digest}, best_path)
        if accelerator.is_main_process:
            atomic_save(training_state(model_state=core.trainable_state_dict(), optimizer=optimizer,
                                       scheduler=scheduler, epoch=epoch, step=step, best_metric=best_metric,
                                       best_epoch=best_epoch, history=history, config_hash=digest), last_path)
        accelerator.wait_for_everyone()
        for cb in callbacks:
            cb(epoch, metrics)

    if best_epoch is None:
        raise RuntimeError("train: no epoch ran (epochs < 1?)")
    core.load_trainable_state_dict(load_checkpoint(best_path)["model"])
    return TrainResult(history=history, best_epoch=best_epoch, best_metric=float(best_metric), metric=metric_name,
                       best_path=best_path, last_path=last_path, best_valid_scores=best_scores)
