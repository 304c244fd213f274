"""What every run configuration shares: construction from chapter parameters and a content digest."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


class RunConfig:
    """Mixin for the frozen dataclasses that configure one run (:class:`~.recommendation.RecRunConfig`,
    :class:`~.conversation.ConversationRunConfig`); a run's folder name ends with :meth:`digest`."""

    @classmethod
    def from_params(cls, params: dict[str, Any]):
        """The configuration from a chapter's parameters; a name the class does not have is an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
        return cls(**params)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]):
        """The configuration from a run chapter's globals (its parameters cell defines every field)."""
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in namespace]
        if missing:
            raise ValueError(f"{cls.__name__}: the chapter does not define {missing}")
        return cls(**{f.name: namespace[f.name] for f in dataclasses.fields(cls)})

    def run_line(self, result: dict[str, Any]) -> str:
        """One line saying whether ``result`` was trained now or loaded, and its compute time."""
        how = "loaded (finished before)" if result.get("reused") else "trained now"
        return f"run {result['name']}: {how}, {result.get('seconds', 0)} s of compute"

    def digest(self) -> str:
        """12 hex digits of the SHA-256 of every field (sorted JSON): equal configurations, equal digests."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    # -- sweep scheduling hooks (mscrs_core.experiments.sweep) ---------------------------------------------------
    def shared_caches(self) -> tuple[tuple, ...]:
        """Keys of the on-disk caches this run shares with other runs (a trained miniature backbone, features).

        A sweep prepares each key once, alone, before it starts runs side by side (:meth:`prepare_caches`)."""
        return ()

    def prepare_caches(self, data_root: str | None = None, cache_dir: str | None = None) -> None:
        """Fill the caches named by :meth:`shared_caches` (instant when they exist already)."""

    def relative_cost(self) -> float:
        """A rough relative compute cost; a sweep starts the costliest runs first so that none is left alone
        at the end."""
        return 1.0
