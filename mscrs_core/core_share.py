"""The cores a process may use, handed over while it runs.

``mscrs book --tracks N`` runs chapters side by side, each track on its share of the cores. When one track ends
before the other, its cores would sit idle for the rest of the book; so the book writes each running track's
share to a small file (``$MSCRS_CORE_SHARE``) and rewrites it when a track ends. Two things follow it:

* the **forward-only loops** (context-state chunks, title readouts, scoring, generation batches) run inside
  :func:`borrowed_cores` and call :func:`follow_share` per batch, which costs one ``stat`` and raises (or lowers)
  the torch threads of their process to that share divided by the track's sweep workers; on leaving the block
  the process's own thread count is restored. Their results do not depend on the thread count (the backbone's
  states, logits and greedy tokens are bitwise equal on 1 and 2 threads: ``tests/test_core_share.py``).
* **sweeps** (:func:`~mscrs_core.experiments.sweep.run_points`) run more points at once, each with the same
  threads as before.

**Training never changes its thread count mid-run.** Float sums over many elements are split by thread, so a
training step on two threads rounds differently from one on one thread, and the difference grows over the
steps (measured: the losses of one warm-up run differ in the eighth digit). Had training followed the share,
the numbers of a run would depend on when the other track happened to end; as it is, a run's numbers depend
only on its configuration and on the threads its process started with (a book's tracks and workers).

Outside a book with tracks (the variable unset) :func:`follow_share` does nothing.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


@contextmanager
def borrowed_cores() -> Iterator[None]:
    """A forward-only block that may use the cores a finished track handed over (:func:`follow_share` inside it);
    the process's thread count on entry is restored on exit, so that training after it runs as before."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        # the next block follows the file afresh (its share may be the one this block already saw)
        _seen.clear()
