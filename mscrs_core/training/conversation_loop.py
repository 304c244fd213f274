"""Training loop of the conversation model (Eq. 29) with atomic checkpoints and exact resume.

:func:`mscrs_core.training.loop.train` cannot train the generator unchanged: its config accepts only the
``rec``/``pretrain`` tasks, it builds a :class:`~mscrs_core.models.collate.RecCollator` (which requires an entity
target) and it selects by ranking metrics. This loop keeps its conventions and re-uses its pieces
(:func:`~mscrs_core.training.loop.set_seed`, :func:`~mscrs_core.training.loop.epoch_order`, the checkpoint module):

* AdamW over the trainable parameters only (backbone frozen), linear warmup/decay, gradient clipping;
* the sample order of epoch e is a pure function of (seed, e);
* model selection on the VALIDATION loss (Eq. 29) only; the test split never enters this module;
* ``last.pt`` (full training state) written atomically after every epoch, ``best.pt`` with the best weights;
  calling :func:`train_generator` again with the same config and data resumes after the last finished epoch.

Single process (CPU or one GPU through ``device``).
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

from mscrs_core.evaluation.generation import GenerationEvaluator
from mscrs_core.models.generate import GenerationConfig, generate_responses
from mscrs_core.training.checkpoint import atomic_save, load_checkpoint, resume_from, training_state
from mscrs_core.training.loop import epoch_order, set_seed


@dataclasses.dataclass(frozen=True)
class ConversationTrainConfig:
    """Hyper-parameters of :func:`train_generator` (all but output_dir/progress/resume/device enter the hash).

    Defaults follow the authors' ``train_conv.py`` where it sets them (lr 1e-4, weight decay 0.01).
    """

    output_dir: str
    epochs: int = 5
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    seed: int = 42
    device: str = "cpu"
    progress: bool = True
    resume: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs/batch_size/eval_batch_size: expected positive integers")


@dataclasses.dataclass
class ConversationTrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_loss: float
    best_path: Path
    last_path: Path


def _hash(config: ConversationTrainConfig, model, train_samples: Sequence, valid_samples: Sequence) -> str:
    skip = ("output_dir", "progress", "resume", "device")
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}
    fields["model"] = model.config.to_dict()
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for s in list(train_samples) + [None] + list(valid_samples):
        h.update(repr(s).encode())
    h.update(repr(sorted((k, tuple(v.shape)) for k, v in model.trainable_state_dict().items())).encode())
    return h.hexdigest()


@torch.no_grad()
def evaluate_loss(model, samples: Sequence, *, batch_size: int = 32, device: str | torch.device = "cpu",
                  collator=None) -> dict[str, float]:
    """Eq. (29) on ``samples``: ``loss`` (the model's reduction, averaged over contexts/tokens accordingly),
    ``token_nll`` (mean NLL per response token) and ``ppl`` = exp(token_nll)."""
    collator = collator or model.make_collator()
    was = model.training
    model.eval()
    nll_sum = n_tok = n_ctx = 0.0
    for start in range(0, len(samples), batch_size):
        batch = {k: v.to(device) for k, v in collator(samples[start:start + batch_size]).items()}
        out = model(batch)
        nll_sum += out.nll_sum
        n_tok += out.n_tokens
        n_ctx += out.n_contexts
    model.train(was)
    token_nll = nll_sum / max(n_tok, 1)
    loss = token_nll if model.config.loss_reduction == "token" else nll_sum / max(n_ctx, 1)
    return {"loss": float(loss), "token_nll": float(token_nll), "ppl": float(math.exp(min(token_nll, 50.0)))}


def evaluate_generation(model, samples: Sequence, *, config: GenerationConfig | None = None, rank=None,
                        name_of: Callable[[int], str] | None = None, batch_size: int = 16,
                        filled: bool = False) -> tuple[dict[str, float], list]:
    """BLEU/ROUGE/Distinct (:class:`~mscrs_core.evaluation.generation.GenerationEvaluator`) of generated
    responses against the references. ``filled=False`` (UniCRS): both sides keep ``<movie>``; ``True``: the
    prediction's placeholders are filled by ``rank`` and compared with the reference... which still holds
    placeholders, so use it for display rather than for Table 3 numbers."""
    responses = generate_responses(model, samples, config=config, rank=rank, name_of=name_of,
                                   batch_size=batch_size)
    ev = GenerationEvaluator()
    ev.update([r.text if filled else r.raw for r in responses], [s.response for s in samples])
    return ev.compute(), responses


def train_generator(model, train_samples: Sequence, valid_samples: Sequence, config: ConversationTrainConfig, *,
                    callbacks: Sequence[Callable[[int, dict[str, float]], None]] = ()) -> ConversationTrainResult:
    """Train an :class:`~mscrs_core.models.conversation.MSCRSGenerator` (see the module docstring).

    The model holds the best epoch's weights on return.
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if len(train_samples) == 0 or len(valid_samples) == 0:
        raise ValueError("train_samples/valid_samples: expected non-empty sequences")
    train_samples, valid_samples = list(train_samples), list(valid_samples)
    out_dir = Path(config.output_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    digest = _hash(config, model, train_samples, valid_samples)
    device = torch.device(config.device)
    model.to(device)
    set_seed(config.seed)
    collator = model.make_collator()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: no trainable parameters")
    decay = [p for n, p in params if p.ndim >= 2 and "norm" not in n.lower()]
    rest = [p for n, p in params if not (p.ndim >= 2 and "norm" not in n.lower())]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=config.lr)
    steps_per_epoch = math.ceil(len(train_samples) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = config.warmup_steps if config.warmup_steps is not None else int(config.warmup_ratio * total)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    trainable = [p for _, p in params]

    start_epoch, step, best, best_epoch, history = 0, 0, None, None, []
    if config.resume and last_path.is_file():
        start_epoch, step, best, best_epoch, history = resume_from(last_path, digest, model, optimizer, scheduler)

    for epoch in range(start_epoch, config.epochs):
        model.train()
        order = epoch_order(len(train_samples), config.seed, epoch).tolist()
        losses = []
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"conv epoch {epoch}", disable=not config.progress)
        for s in bar:
            batch = {k: v.to(device) for k, v in collator([train_samples[i] for i in order[s:s + config.batch_size]]).items()}
            out = model(batch)
            out.loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(float(out.loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        metrics = {"epoch": float(epoch), "train_loss": float(np.mean(losses))}
        valid = evaluate_loss(model, valid_samples, batch_size=config.eval_batch_size, device=device,
                              collator=collator)
        metrics.update({f"valid_{k}": v for k, v in valid.items()})
        history.append(metrics)
        if best is None or valid["loss"] < best:
            best, best_epoch = valid["loss"], epoch
            atomic_save({"model": model.trainable_state_dict(), "epoch": epoch, "metric": "loss",
                         "value": best, "config_hash": digest}, best_path)
        atomic_save(training_state(model_state=model.trainable_state_dict(), optimizer=optimizer,
                                   scheduler=scheduler, epoch=epoch, step=step, best_metric=best,
                                   best_epoch=best_epoch, history=history, config_hash=digest), last_path)
        for cb in callbacks:
            cb(epoch, metrics)
    if best_epoch is None:
        raise RuntimeError("train_generator: no epoch ran")
    model.load_trainable_state_dict(load_checkpoint(best_path)["model"])
    return ConversationTrainResult(history, best_epoch, float(best), best_path, last_path)
