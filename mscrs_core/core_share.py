"""The cores a process may use, handed over while it runs.

``mscrs book --tracks N`` runs chapters side by side, each track on its share of the cores. When one track ends
before the other, its cores would sit idle for the rest of the book; so the book writes each running track's
share to a small file (``$MSCRS_CORE_SHARE``) and rewrites it when a track ends. The long loops (training steps,
generation batches, context-state chunks) call :func:`follow_share`, which costs one ``stat`` and raises (or
lowers) the torch threads of their process to that share divided by the track's sweep workers.

Outside a book with tracks (the variable unset) :func:`follow_share` does nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

from .atomic import atomic_write

SHARE_ENV = "MSCRS_CORE_SHARE"

_seen: dict[str, int] = {}


def positive_int_env(name: str, default: int) -> int:
    """``$name`` as a positive integer (``default`` when unset); anything else is an error naming the variable."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return n


def write_share(path: str | os.PathLike, cores: int) -> None:
    """Give every running track ``cores`` cores (atomically: a reader sees the old or the new share)."""
    if cores < 1:
        raise ValueError(f"cores: expected >= 1, got {cores}")
    atomic_write(path, lambda f: f.write(f"{cores}\n"))


def read_share(path: str | os.PathLike) -> int | None:
    """The share in ``path``; None when the file is missing or does not hold a positive integer."""
    try:
        n = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    return n if n >= 1 else None


def follow_share() -> int | None:
    """Set this process's torch threads to the current share (divided by ``$MSCRS_WORKERS``, the runs a track
    executes at once) when the share file changed since the last call; returns the threads set, else None."""
    path = os.environ.get(SHARE_ENV)
    if not path:
        return None
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    if _seen.get(path) == stamp:
        return None
    _seen[path] = stamp
    share = read_share(path)
    if share is None:
        return None
    import torch

    threads = max(1, share // positive_int_env("MSCRS_WORKERS", 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
