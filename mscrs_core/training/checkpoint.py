"""Atomic training checkpoints with everything needed for bit-identical resume.

A checkpoint holds the model's trainable state (everything but the frozen backbone), optimizer and scheduler
state, the RNG states of torch (CPU and CUDA), numpy and random, epoch/step counters, the best validation metric
and the history. It is written to a temporary file in the same folder, fsynced and renamed over the old one,
so an interruption never leaves a torn file. Loading uses ``torch.load(..., weights_only=True)``: every value is
a tensor or plain Python data (the numpy RNG state is stored as lists).
"""
from __future__ import annotations

from ..atomic import atomic_write

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """RNG states of random, numpy and torch (CPU + all CUDA devices) as weights_only-loadable data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file in the target folder, fsync, then ``os.replace`` (atomic on POSIX)."""
    return atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_save` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return torch.load(path, map_location=map_location, weights_only=True)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def training_state(
    *, model_state: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, scheduler: Any,
    epoch: int, step: int, best_metric: float | None, best_epoch: int | None, history: list[dict[str, float]],
    config_hash: str,
) -> dict[str, Any]:
    """Everything :meth:`mscrs_core.training.trainer.Trainer.fit` needs to continue after ``epoch`` (0-based,
    finished)."""
    return {
        "format": 1,
        "model": _to_cpu(model_state),
        "optimizer": _to_cpu(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "epoch": epoch,
        "step": step,
        "best_metric": best_metric,
        "best_epoch": best_epoch,
        "history": history,
        "config_hash": config_hash,
    }


def resume_from(last_path: Path, digest: str, model, optimizer, scheduler, load_state=None
                ) -> tuple[int, int, Any, Any, list]:
    """Restore a run from its last per-epoch checkpoint (model, optimizer, scheduler, RNG).

    Returns ``(start_epoch, step, best_metric, best_epoch, history)``; a checkpoint written under another
    configuration or other data (``digest``) is refused rather than silently mixed in. ``load_state(model,
    state)`` restores the weights (default: ``model.load_trainable_state_dict``).
    """
    ckpt = load_checkpoint(last_path)
    if ckpt["config_hash"] != digest:
        raise ValueError(f"{last_path}: checkpoint of a different config/data; use another output_dir "
                         "or resume=False")
    if load_state is None:
        model.load_trainable_state_dict(ckpt["model"])
    else:
        load_state(model, ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    return ckpt["epoch"] + 1, ckpt["step"], ckpt["best_metric"], ckpt["best_epoch"], list(ckpt["history"])
