"""The one in-memory model every reader produces.

INSPIRED (UniCRS's processed form) and ReDial (raw schema + KGSF's DBpedia graph)
are both turned into a :class:`CRSDataset`: dialogs made of turns, each turn with
its speaker role, text, the entity ids linked in it and the item ids mentioned in
it; the entity vocabulary; the recommendable item set; the knowledge graph as
typed edges.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

SEEKER = "seeker"
RECOMMENDER = "recommender"
ROLES = (SEEKER, RECOMMENDER)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Turn:
    """One utterance.

    ``entities`` are the non-item entity ids linked in the text (actors, genres, ...);
    ``items`` are the entity ids of recommendable items (movies) mentioned in it.
    Both keep the order of first mention and contain no duplicates.
    ``text`` is the surface text with movie mentions written as their names.
    """

    role: str
    text: str
    entities: tuple[int, ...] = ()
    items: tuple[int, ...] = ()

    @property
    def all_entities(self) -> tuple[int, ...]:
        """Entities then items, the order UniCRS feeds the prompt encoder."""
        return self.entities + tuple(i for i in self.items if i not in self.entities)


@dataclass
class Dialog:
    dialog_id: str
    turns: list[Turn]

    def __len__(self) -> int:
        return len(self.turns)


@dataclass
class KnowledgeGraph:
    """Typed directed edges ``head --relation--> tail`` as three int64 arrays.

    Edges are stored once, as the source file gives them (self-loops included
    where the file has them); graph builders add reverse edges and remap
    relations as the method needs (see ``mscrs_core.graphs.kg``).
    """

    num_entities: int
    head: np.ndarray
    relation: np.ndarray
    tail: np.ndarray
    relation_names: list[str] | None = None

    @property
    def num_edges(self) -> int:
        return int(self.head.shape[0])

    @property
    def num_relations(self) -> int:
        return int(self.relation.max()) + 1 if self.num_edges else 0

    def neighbours(self, entity: int) -> np.ndarray:
        """Entities adjacent to ``entity`` in either direction (self excluded)."""
        out = np.concatenate([self.tail[self.head == entity], self.head[self.tail == entity]])
        return np.unique(out[out != entity])


@dataclass
class CRSDataset:
    """A conversational-recommendation dataset in one form for both corpora."""

    name: str
    splits: dict[str, list[Dialog]]
    entity2id: dict[str, int]
    item_ids: list[int]
    kg: KnowledgeGraph
    # entity id -> readable name (DBpedia resource name or the movie title)
    entity_names: dict[int, str] = field(default_factory=dict)
    # item entity id -> the item's id in the source data (ReDial movie id); empty where they coincide
    source_ids: dict[int, str] = field(default_factory=dict)
    # reader-specific notes and counts (skipped lines, linking coverage, ...)
    report: dict[str, object] = field(default_factory=dict)

    @property
    def num_entities(self) -> int:
        return self.kg.num_entities

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def dialogs(self, split: str) -> list[Dialog]:
        if split not in self.splits:
            raise KeyError(f"{self.name} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    def iter_turns(self, split: str) -> Iterator[Turn]:
        for d in self.dialogs(split):
            yield from d.turns

    def item_index(self) -> dict[int, int]:
        """Entity id -> position of the item in ``item_ids`` (the ranking axis)."""
        return {e: i for i, e in enumerate(self.item_ids)}

    def name_of(self, entity: int) -> str:
        return self.entity_names.get(entity, str(entity))
