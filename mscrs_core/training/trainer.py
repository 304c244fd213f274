"""The one training loop of the project: every trained model goes through :class:`Trainer`.

A :class:`TrainingTask` says what is task-specific (how samples become a batch, the loss of a batch, the
validation metrics, the optimiser's parameter groups, the history row of an epoch); the trainer does the rest,
the same way for every task:

* AdamW over the groups the task returns (the backbone is frozen and never among them), a linear warm-up/decay
  or constant schedule (``transformers``), optional gradient clipping;
* determinism: random/numpy/torch seeded once (unless ``seed=None``: the caller seeded); the sample order of
  epoch e is the task's :meth:`TrainingTask.order`, by default a pure function of (seed, e)
  (:func:`epoch_order`), so it does not depend on what ran before;
* batches of similar length (``group_by_length``, for tasks with a ``length(sample)``): every window of that
  many batches of the epoch's order is sorted by length before it is cut into batches, and the batches are
  shuffled (:func:`length_grouped_order`), so a batch pads to little more than its own samples (Hugging Face's
  ``group_by_length``);
* model selection on the VALIDATION split only, by the task's metric (maximised or minimised); the test split
  never enters this module; at the end the best epoch's weights are loaded into the model;
* with an ``output_dir``: ``last.pt`` (model, optimiser, scheduler, RNG state, history) written atomically after
  every epoch and ``best.pt`` with the best epoch's weights; calling :meth:`Trainer.fit` again with the same
  configuration and data continues after the last finished epoch and ends with the same metrics and weights
  as an uninterrupted run. Without one (small baselines) the best weights are kept in memory;
* devices through ``accelerate``: CPU, one GPU, or several (``accelerate launch``; each process takes its slice
  of every global batch, validation runs the full split on every process).

The tasks: :class:`~mscrs_core.training.recommendation.RecommendationTask` (pre-training, Eq. 22, and
recommendation, Eq. 24), :class:`~mscrs_core.training.conversation.ConversationTask` (Eq. 29), and the trained
baselines (:mod:`mscrs_core.baselines.entity_mean`, :mod:`mscrs_core.baselines.text_classifier`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from mscrs_core.training.checkpoint import atomic_save, load_checkpoint, resume_from, training_state

SCHEDULES = ("linear", "constant")


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """How :class:`Trainer` optimises (what is task-specific lives in the task).

    ``output_dir=None`` keeps no files (no resume). ``seed=None`` leaves the global RNGs as the caller seeded
    them. ``warmup_steps=None`` uses ``warmup_ratio`` of the total steps (``schedule="linear"`` only).
    ``validate_before``: score the untrained model first, as "epoch -1", so that training must beat it.
    """

    output_dir: str | None
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 64
    schedule: str = "linear"
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    seed: int | None = 42
    validate_before: bool = False
    cpu: bool = False
    mixed_precision: str = "no"
    progress: bool = True
    resume: bool = True
    description: str = "epoch"
    group_by_length: int = 0  # window in batches (0: the task's order as it is)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs/batch_size/eval_batch_size: expected positive integers")
        if self.group_by_length < 0:
            raise ValueError(f"group_by_length: expected >= 0 batches, got {self.group_by_length}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {self.schedule!r}")


@dataclasses.dataclass
class FitResult:
    """Outcome of :meth:`Trainer.fit`; ``history`` has one row per epoch (the task's :meth:`history_row`)."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_metric: float
    metric: str
    best_path: Path | None
    last_path: Path | None
    # the task's validation extras (e.g. the score matrix) of the best epoch, when that epoch ran in this call
    best_valid_extra: Any = None


class TrainingTask(Protocol):
    """What :class:`Trainer` asks of a task (duck-typed; :class:`TaskDefaults` gives the usual defaults)."""

    metric: str  # the validation metric that selects the epoch
    maximize: bool

    def collate(self, samples: list) -> Any: ...

    def training_loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, float]]: ...

    def validate(self, model: nn.Module, samples: list, device: torch.device) -> tuple[dict[str, float], Any]: ...

    def param_groups(self, model: nn.Module) -> list[dict]: ...

    def history_row(self, epoch: int, steps: list[tuple[int, dict[str, float]]],
                    valid: dict[str, float]) -> dict[str, Any]: ...

    def order(self, n: int, epoch: int) -> list[int]: ...

    def identity(self) -> dict[str, Any]: ...


class TaskDefaults:
    """Defaults of a :class:`TrainingTask`: seeded epoch order, the model's trainable state, decay on matrices."""

    seed: int = 0
    weight_decay: float = 0.0

    def order(self, n: int, epoch: int) -> list[int]:
        return epoch_order(n, self.seed, epoch).tolist()

    def param_groups(self, model: nn.Module) -> list[dict]:
        return decay_groups([(n, p) for n, p in model.named_parameters() if p.requires_grad], self.weight_decay)

    def state(self, model: nn.Module) -> dict[str, Tensor]:
        fn = getattr(model, "trainable_state_dict", None)
        return fn() if fn is not None else {k: v.detach().clone() for k, v in model.state_dict().items()}

    def load_state(self, model: nn.Module, state: dict[str, Tensor]) -> None:
        fn = getattr(model, "load_trainable_state_dict", None)
        fn(state) if fn is not None else model.load_state_dict(state)

    def identity(self) -> dict[str, Any]:
        return {}


# ------------------------------------------------------------------------------------------ helpers


def set_seed(seed: int) -> None:
    """Seed random, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """Permutation of the training samples for one epoch; a pure function of (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def length_grouped_order(order: Sequence[int], lengths: Sequence[int], batch_size: int, window: int,
                         seed: int, epoch: int) -> list[int]:
    """``order`` rearranged so that consecutive ``batch_size`` chunks hold samples of similar ``lengths``.

    Each window of ``window * batch_size`` samples of ``order`` is sorted by length (longest first, ties in
    ``order``'s order) and cut into batches; the batches of the whole epoch are then shuffled by a generator
    seeded with (seed, epoch), so neither the sample set of a window nor the order of batches depends on length;
    a short last batch stays last. The result is a permutation of ``order``.
    """
    if window < 1 or batch_size < 1:
        raise ValueError("window/batch_size: expected positive integers")
    idx = list(order)
    span = window * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(idx), span):
        part = sorted(idx[start:start + span], key=lambda i: -lengths[i])  # stable: ties keep the order
        batches += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    # a short batch (only the last window can end with one) stays last, so that cutting the result into
    # batch_size chunks gives back exactly these batches
    tail = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)
    shuffled = [batches[b] for b in torch.randperm(len(batches), generator=gen).tolist()] + tail
    return [i for batch in shuffled for i in batch]


def decay_groups(params: Sequence[tuple[str, nn.Parameter]], weight_decay: float, lr: float | None = None
                 ) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on vectors and norms (and ``lr`` when given)."""
    decay = [p for n, p in params if p.ndim >= 2 and "norm" not in n.lower()]
    rest = [p for n, p in params if not (p.ndim >= 2 and "norm" not in n.lower())]
    extra = {} if lr is None else {"lr": lr}
    return [{"params": decay, "weight_decay": weight_decay, **extra}, {"params": rest, "weight_decay": 0.0, **extra}]


def global_batches(order: Sequence[int], batch_size: int, n_proc: int = 1, rank: int = 0) -> list[list[int]]:
    """This process's slice of every global batch (size batch_size * n_proc); the last global batch is
    filled up by wrapping around when several processes run, so every process gets the same number of steps."""
    glob = batch_size * n_proc
    idx = list(order)
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


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (dicts, lists, tuples) on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and any(isinstance(v, Tensor) for v in batch):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def mean_logs(steps: list[tuple[int, dict[str, float]]], weighted: bool = False) -> dict[str, float]:
    """Per-key mean of the steps' logs (each step a ``(batch size, logs)`` pair), by step or by sample."""
    if not steps:
        return {}
    keys = steps[0][1].keys()
    w = [n for n, _ in steps] if weighted else None
    return {k: float(np.average([logs[k] for _, logs in steps], weights=w)) for k in keys}


def run_digest(config: TrainerConfig, task: Any, model: nn.Module, train_samples: Sequence,
               valid_samples: Sequence) -> str:
    """What a checkpoint must match to be resumed: the configuration, the task's identity, the data, the shapes."""
    skip = ("output_dir", "progress", "resume", "description")
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}
    fields["task"] = task.identity()
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for s in list(train_samples) + [None] + list(valid_samples):
        h.update(repr(s).encode())
    h.update(repr(sorted((k, tuple(v.shape)) for k, v in task.state(model).items())).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ the loop


EpochCallback = Callable[[int, dict[str, Any]], None]


class Trainer:
    """Train ``model`` on a :class:`TrainingTask` under a :class:`TrainerConfig` (see the module docstring)."""

    def __init__(self, model: nn.Module, task: Any, config: TrainerConfig,
                 callbacks: Sequence[EpochCallback] = ()):
        self.model, self.task, self.config, self.callbacks = model, task, config, tuple(callbacks)

    def _scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int):
        from transformers import get_constant_schedule, get_linear_schedule_with_warmup

        c = self.config
        if c.schedule == "constant":
            return get_constant_schedule(optimizer)
        warmup = c.warmup_steps if c.warmup_steps is not None else int(c.warmup_ratio * total_steps)
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)

    def fit(self, train_samples: Sequence, valid_samples: Sequence) -> FitResult:
        """Train with validation-based selection; the model holds the best epoch's weights on return.

        ``train_samples``/``valid_samples``: whatever the task's ``collate``/``validate`` take; never test samples.
        Callbacks ``f(epoch, row)`` run after each epoch's checkpoint is on disk (an exception raised there
        interrupts training; calling :meth:`fit` again resumes).
        """
        from accelerate import Accelerator
        from tqdm.auto import tqdm

        c, task, core = self.config, self.task, self.model
        if len(train_samples) == 0 or len(valid_samples) == 0:
            raise ValueError("train_samples/valid_samples: expected non-empty sequences")
        train_samples, valid_samples = list(train_samples), list(valid_samples)
        groups = [g for g in task.param_groups(core) if g["params"]]
        if not groups:
            raise ValueError("model: no trainable parameters")
        out_dir = None if c.output_dir is None else Path(c.output_dir)
        last_path = None if out_dir is None else out_dir / "last.pt"
        best_path = None if out_dir is None else out_dir / "best.pt"
        digest = run_digest(c, task, core, train_samples, valid_samples) if out_dir is not None else None

        if c.seed is not None:
            set_seed(c.seed)
        accelerator = Accelerator(cpu=c.cpu, mixed_precision=c.mixed_precision)
        n_proc, rank = accelerator.num_processes, accelerator.process_index
        optimizer = torch.optim.AdamW(groups, lr=groups[0].get("lr", 1e-3))
        steps_per_epoch = math.ceil(len(train_samples) / (c.batch_size * n_proc))
        # the scheduler is stepped by hand (not prepared): accelerate would step it once per process
        scheduler = self._scheduler(optimizer, steps_per_epoch * c.epochs)
        wrapped, optimizer = accelerator.prepare(core, optimizer)
        device = accelerator.device
        # clipped in module order: the total norm sums per-parameter norms, and another order moves its last bits
        in_groups = {id(p) for g in groups for p in g["params"]}
        trainable = [p for p in core.parameters() if id(p) in in_groups]
        sign = 1.0 if task.maximize else -1.0

        start_epoch, step, best_metric, best_epoch, history = 0, 0, None, None, []
        best_extra, best_state = None, None
        if c.resume and last_path is not None and last_path.is_file():
            start_epoch, step, best_metric, best_epoch, history = resume_from(last_path, digest, core, optimizer,
                                                                              scheduler, task.load_state)
        if c.validate_before and start_epoch == 0 and not history:
            valid, extra = task.validate(core, valid_samples, device)
            history.append(task.history_row(-1, [], valid))
            best_metric, best_epoch, best_extra = valid[task.metric], -1, extra
            best_state = self._keep_best(core, -1, best_metric, digest, best_path, accelerator)

        lengths = None
        if c.group_by_length:
            if not hasattr(task, "length"):
                raise ValueError(f"group_by_length: {type(task).__name__} has no length(sample)")
            lengths = [task.length(s) for s in train_samples]
        for epoch in range(start_epoch, c.epochs):
            wrapped.train()
            order = task.order(len(train_samples), epoch)
            if lengths is not None:
                order = length_grouped_order(order, lengths, c.batch_size * n_proc, c.group_by_length,
                                             0 if c.seed is None else c.seed, epoch)
            batches = global_batches(order, c.batch_size, n_proc, rank)
            steps: list[tuple[int, dict[str, float]]] = []
            bar = tqdm(batches, desc=f"{c.description} {epoch}",
                       disable=not (c.progress and accelerator.is_main_process))
            for idx in bar:
                batch = to_device(task.collate([train_samples[i] for i in idx]), device)
                loss, logs = task.training_loss(wrapped, batch)
                accelerator.backward(loss)
                if c.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(trainable, c.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                steps.append((len(idx), logs))
                bar.set_postfix(loss=f"{logs.get('loss', float(loss.detach())):.4f}")
            valid, extra = task.validate(core, valid_samples, device)
            row = task.history_row(epoch, steps, valid)
            history.append(row)
            value = valid[task.metric]
            if best_metric is None or sign * value > sign * best_metric:
                best_metric, best_epoch, best_extra = value, epoch, extra
                best_state = self._keep_best(core, epoch, value, digest, best_path, accelerator)
            if accelerator.is_main_process and last_path is not None:
                atomic_save(training_state(model_state=task.state(core), optimizer=optimizer, scheduler=scheduler,
                                           epoch=epoch, step=step, best_metric=best_metric, best_epoch=best_epoch,
                                           history=history, config_hash=digest), last_path)
            accelerator.wait_for_everyone()
            for cb in self.callbacks:
                cb(epoch, row)

        if best_epoch is None:
            raise RuntimeError("Trainer.fit: no epoch ran")
        task.load_state(core, load_checkpoint(best_path)["model"] if best_path is not None else best_state)
        return FitResult(history=history, best_epoch=best_epoch, best_metric=float(best_metric), metric=task.metric,
                         best_path=best_path, last_path=last_path, best_valid_extra=best_extra)

    def _keep_best(self, core: nn.Module, epoch: int, value: float, digest: str | None, best_path: Path | None,
                   accelerator) -> dict[str, Tensor] | None:
        """Write ``best.pt`` (or, without an output folder, return a copy of the weights to keep in memory)."""
        state = self.task.state(core)
        if best_path is None:
            return {k: v.detach().clone() for k, v in state.items()}
        if accelerator.is_main_process:
            atomic_save({"model": state, "epoch": epoch, "metric": self.task.metric, "value": value,
                         "config_hash": digest}, best_path)
        return None
