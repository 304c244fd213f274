"""Training the conversation model (Eq. 29) and scoring its responses.

:class:`ConversationTask` is what is specific to the generator (its collator, the response NLL of Eq. 29,
selection by the VALIDATION loss); :class:`~mscrs_core.training.trainer.Trainer` is the loop (checkpoints,
exact resume, accelerate). :func:`train_generator` runs the two under a :class:`ConversationTrainConfig`.
Defaults follow the authors' ``train_conv.py`` where it sets them (lr 1e-4, weight decay 0.01).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mscrs_core.evaluation.generation import GenerationEvaluator
from mscrs_core.models.generate import GENERATION_BATCH_SIZE, GenerationConfig, generate_responses
from mscrs_core.training.trainer import TaskDefaults, Trainer, TrainerConfig, decay_groups, mean_logs, to_device


@dataclasses.dataclass(frozen=True)
class ConversationTrainConfig:
    """Hyper-parameters of :func:`train_generator` (all but output_dir/progress/resume/device enter the hash).

    ``device="cpu"`` keeps the run on the CPU whatever the machine; any other value lets ``accelerate`` place it.
    """

    output_dir: str | None  # None: best weights kept in memory, nothing written
    epochs: int = 5
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    seed: int = 42
    # batches of responses of similar length (a window of this many batches sorted by response length, then the
    # batches shuffled): the frozen LM runs over each batch's longest response, so grouping saves compute
    group_by_length: int = 0
    device: str = "cpu"
    progress: bool = True
    resume: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs/batch_size/eval_batch_size: expected positive integers")

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(output_dir=self.output_dir, epochs=self.epochs, batch_size=self.batch_size,
                             eval_batch_size=self.eval_batch_size, warmup_steps=self.warmup_steps,
                             warmup_ratio=self.warmup_ratio, max_grad_norm=self.max_grad_norm, seed=self.seed,
                             cpu=self.device == "cpu", progress=self.progress, resume=self.resume,
                             description="conversation epoch", group_by_length=self.group_by_length)


@dataclasses.dataclass
class ConversationTrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_loss: float
    best_path: Path | None  # None when trained without an output folder
    last_path: Path


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
        out = model(to_device(collator(samples[start:start + batch_size]), torch.device(device)))
        nll_sum += out.nll_sum
        n_tok += out.n_tokens
        n_ctx += out.n_contexts
    model.train(was)
    token_nll = nll_sum / max(n_tok, 1)
    loss = token_nll if model.config.loss_reduction == "token" else nll_sum / max(n_ctx, 1)
    return {"loss": float(loss), "token_nll": float(token_nll), "ppl": float(math.exp(min(token_nll, 50.0)))}


def evaluate_generation(model, samples: Sequence, *, config: GenerationConfig | None = None, rank=None,
                        name_of: Callable[[int], str] | None = None, batch_size: int = GENERATION_BATCH_SIZE,
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


class ConversationTask(TaskDefaults):
    """Eq. (29) for :class:`~mscrs_core.training.trainer.Trainer`: the generator's response NLL, selected by the
    validation loss."""

    metric, maximize = "loss", False

    def __init__(self, model: nn.Module, config: ConversationTrainConfig):
        self.config, self.collator = config, model.make_collator()
        self.seed, self.weight_decay = config.seed, config.weight_decay
        self.model_config = model.config.to_dict()

    def collate(self, samples: list) -> dict[str, Tensor]:
        return self.collator(samples)

    def length(self, sample: Any) -> int:
        """Tokens a sample adds to the width of its batch: the response (+ EOS) after the soft prompt in the
        suffix layout (the context's states are cached), context + response in the prefix layout."""
        ctx, resp = self.collator.parts(sample)
        return len(resp) if self.collator.layout == "suffix" else len(ctx) + len(resp)

    def training_loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        out = model(batch)
        return out.loss, {"loss": float(out.loss.detach())}

    def validate(self, model: nn.Module, samples: list, device: torch.device) -> tuple[dict[str, float], Any]:
        return evaluate_loss(model, samples, batch_size=self.config.eval_batch_size, device=device,
                             collator=self.collator), None

    def param_groups(self, model: nn.Module) -> list[dict]:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return decay_groups(params, self.config.weight_decay, self.config.lr)

    def history_row(self, epoch: int, steps: list, valid: dict[str, float]) -> dict[str, Any]:
        return {"epoch": float(epoch), "train_loss": mean_logs(steps)["loss"],
                **{f"valid_{k}": v for k, v in valid.items()}}

    def identity(self) -> dict[str, Any]:
        return {"lr": self.config.lr, "weight_decay": self.config.weight_decay, "model": self.model_config}


def train_generator(model, train_samples: Sequence, valid_samples: Sequence, config: ConversationTrainConfig, *,
                    callbacks: Sequence[Callable[[int, dict[str, float]], None]] = ()) -> ConversationTrainResult:
    """Train an :class:`~mscrs_core.models.conversation.MSCRSGenerator` (Eq. 29); the model holds the best
    epoch's weights (by validation loss) on return. Calling it again with the same configuration and data
    resumes after the last finished epoch."""
    if config.device != "cpu":
        model.to(torch.device(config.device))
    res = Trainer(model, ConversationTask(model, config), config.trainer_config(), callbacks).fit(
        train_samples, valid_samples)
    return ConversationTrainResult(res.history, res.best_epoch, res.best_metric, res.best_path, res.last_path)
