"""What every item describer shares (Eq. 2): the item record, the interface, the on-disk cache.

A describer turns items into the text ``v_i^t`` of Eq. (2). Two implementations exist:
:class:`~mscrs_core.features.describe_llm.LLMDescriber` (the paper's GPT-4o call, any
OpenAI-compatible endpoint) and :class:`~mscrs_core.features.describe_offline.OfflineDescriber`
(a templated description written from the metadata the data holds).

The cache stores one small JSON file per item, written to a temporary file and renamed
into place (``os.replace`` is atomic), so an interrupted run leaves only complete entries
and a re-run resumes where it stopped.
"""
from __future__ import annotations

from ..atomic import atomic_write_text  # noqa: F401  (re-exported: part of this module's API)

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Mapping, Protocol, Sequence, runtime_checkable

ItemKey = Hashable  # a ReDial movie id (str) or a DBpedia entity id (int)


@dataclass(frozen=True)
class ItemInfo:
    """One item to describe.

    ``key`` is stable across runs (ReDial movie id, entity id) and names the cache entry;
    ``name`` is the title given to the prompt (``{movie_name}`` in Figure 3);
    ``facts`` maps an aspect (``genre``, ``director``, ``writer``, ``star``, ``plot``, ``producer``, ...)
    to the values the data records for it, in the data's order.
    """

    key: ItemKey
    name: str
    facts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"ItemInfo {self.key!r}: name must be a non-empty string, got {self.name!r}")


@runtime_checkable
class Describer(Protocol):
    """Eq. (2): ``v_i^t = F(i; theta_p)`` for a batch of items, returned by item key."""

    def describe(self, items: Sequence[ItemInfo]) -> dict[ItemKey, str]:
        ...


def _check_unique_keys(items: Sequence[ItemInfo]) -> None:
    seen: set[str] = set()
    for it in items:
        k = str(it.key)
        if k in seen:
            raise ValueError(f"duplicate item key {it.key!r} in the items to describe")
        seen.add(k)


_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")




class DescriptionCache:
    """One JSON file per item under ``root``: ``{"key", "name", "text", "fingerprint"}``.

    ``fingerprint`` identifies what produced the text (model, prompt template hash); an entry
    written under another fingerprint counts as missing, so changing the model or the prompt
    re-describes the items instead of silently mixing sources.
    """

    def __init__(self, root: str | os.PathLike, fingerprint: str):
        self.root = Path(root)
        self.fingerprint = fingerprint

    def path_for(self, key: ItemKey) -> Path:
        k = str(key)
        # Keys such as DBpedia URIs contain '/', '<': those are stored under a hash of the key.
        stem = k if _SAFE.match(k) and not k.startswith(".") else "h_" + hashlib.sha256(k.encode()).hexdigest()[:32]
        return self.root / f"{stem}.json"

    def get(self, key: ItemKey) -> str | None:
        p = self.path_for(key)
        if not p.is_file():
            return None
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # unreadable entry: describe the item again and overwrite it
        if (not isinstance(rec, dict) or rec.get("key") != str(key) or rec.get("fingerprint") != self.fingerprint
                or not isinstance(rec.get("text"), str)):
            return None
        return rec["text"]

    def put(self, key: ItemKey, name: str, text: str) -> None:
        rec = {"key": str(key), "name": name, "fingerprint": self.fingerprint, "text": text}
        atomic_write_text(self.path_for(key), json.dumps(rec, ensure_ascii=False))
