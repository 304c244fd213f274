"""Eq. (2) without an LLM: a templated description from the metadata the data holds.

This is NOT the paper's GPT-4o text. It writes the same four aspects as Figure 3, each
stating only facts present in the data:

- **Theme**: the item's genres.
- **Emotion**: the emotions conventionally associated with those genres, from the small
  documented table :data:`GENRE_EMOTIONS` (a genre convention, not a claim about the film).
- **Cultural Significance**: who made it (director, writer, stars), as recorded.
- **Plot Overview**: the plot summary (ReDial's ``movie_metadata.json``); where there is none
  (INSPIRED), the remaining knowledge-graph facts (producer, composer, studio, distributor, ...).

Sources: ReDial ``redial/movie_metadata.json`` (:func:`item_infos_from_redial_metadata`,
:func:`describe_redial_items`); INSPIRED the item's DBpedia facts (:func:`item_infos_from_kg`).
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from ..data.errors import DataError
from ..data.files import DataFiles
from ..data.kg import entity_name
from ..data.schema import CRSDataset
from .describer_cache import ItemInfo, ItemKey, _check_unique_keys

# Genre pattern -> emotions the genre conventionally evokes. Each pattern is a regular expression
# searched in the lower-cased genre name, so DBpedia names ("Horror fiction", "Black comedy") map as
# well as IMDb ones ("horror", "sci-fi"). Genres with no entry (short, news, talk-show, ...) add nothing.
GENRE_EMOTIONS: dict[str, tuple[str, ...]] = {
    r"\baction\b": ("excitement", "adrenaline"),
    r"\badventure": ("excitement", "wonder"),
    r"\banimat": ("playfulness",),
    r"\bbiograph": ("inspiration",),
    r"\bcomed|\bsatir|\bhumou?r": ("amusement", "joy"),
    r"\bcrime\b": ("tension",),
    r"\bdocumentar": ("curiosity",),
    r"\bdrama": ("empathy",),
    r"\bfamily\b": ("warmth",),
    r"\bfantasy\b": ("wonder",),
    r"\bnoir\b": ("unease",),
    r"\bhistor": ("reflection",),
    r"\bhorror\b": ("fear", "dread"),
    r"\bmusic": ("joy",),
    r"\bmyster": ("curiosity", "suspense"),
    r"\bromanc|\bromantic": ("tenderness", "longing"),
    r"\bsci-fi\b|\bscience fiction": ("awe", "curiosity"),
    r"\bsports?\b": ("determination", "triumph"),
    r"\bthriller": ("tension", "suspense"),
    r"\bwar\b": ("grief", "tension"),
    r"\bwestern\b": ("grit",),
}

# Canonical fact names; KG relation names (INSPIRED's dbo: relations) are normalised onto them.
_RELATION_TO_FACT = {
    "starring": "star", "director": "director", "writer": "writer", "genre": "genre",
    "producer": "producer", "musiccomposer": "music", "cinematography": "cinematography",
    "editing": "editing", "productioncompany": "production_company", "distributor": "distributor",
}
# Relations that describe people, not films, and the graph's self-loops: never item facts.
_IGNORED_RELATIONS = {"selfloop", "occupation", "relative"}
_PLOT_FACTS = (("producer", "produced by"), ("music", "music by"), ("cinematography", "cinematography by"),
               ("editing", "edited by"), ("production_company", "production company"), ("distributor", "distributed by"))
ASPECTS = ("Theme", "Emotion", "Cultural Significance", "Plot Overview")


def readable_entity_name(uri_or_name: str) -> str:
    """``<http://dbpedia.org/resource/The_Shining_(film)>`` -> ``The Shining (film)``; plain names pass through."""
    s = uri_or_name.strip()
    if s.startswith("<") or s.startswith("http"):
        if not s.startswith("<"):
            s = f"<{s}>"
        return entity_name(s)
    return s


def _norm_relation(name: str) -> str:
    return re.sub(r"[\s_\-]", "", readable_entity_name(name).rsplit("/", 1)[-1]).lower()


def _join(values: Sequence[str], limit: int) -> str:
    vals = list(values[:limit])
    extra = len(values) - len(vals)
    if extra > 0:
        vals.append(f"{extra} other{'s' if extra > 1 else ''}")
    if len(vals) <= 1:
        return "".join(vals)
    return ", ".join(vals[:-1]) + " and " + vals[-1]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def genre_emotions(genres: Iterable[str]) -> list[str]:
    """Emotions for the genres via :data:`GENRE_EMOTIONS`, first occurrence order, no duplicates."""
    out: dict[str, None] = {}
    for g in genres:
        low = g.lower()
        for pattern, emos in GENRE_EMOTIONS.items():
            if re.search(pattern, low):
                out.update(dict.fromkeys(emos))
    return list(out)


class OfflineDescriber:
    """Eq. (2) stand-in: the four Figure 3 aspects written from ``ItemInfo.facts`` only (no LLM).

    ``max_per_role`` caps each list of people/companies ("... and 7 others") so descriptions stay
    within the text encoder's input length. Deterministic: the same facts give the same text.
    """

    fingerprint = "offline-template-v1"

    def __init__(self, max_per_role: int = 5, state_missing: bool = True):
        if max_per_role < 1:
            raise ValueError(f"max_per_role must be >= 1, got {max_per_role}")
        self.max_per_role = max_per_role
        # False: leave out aspects the data say nothing about and do not repeat the title. The text
        # encoder then sees only facts: the shared "no genre recorded" boilerplate and title words would
        # otherwise dominate the cosine similarities of the text semantic graph (Eq. 9).
        self.state_missing = state_missing
        if not state_missing:
            self.fingerprint = "offline-template-v1-facts-only"

    def __repr__(self) -> str:
        return f"OfflineDescriber(max_per_role={self.max_per_role}, state_missing={self.state_missing})"

    def describe_one(self, item: ItemInfo) -> str:
        f = {k: tuple(v for v in vals if isinstance(v, str) and v.strip()) for k, vals in item.facts.items()}
        name, n = item.name, self.max_per_role
        genres = f.get("genre", ())
        theme = (f"{name} is recorded under the genre{'s' if len(genres) > 1 else ''} {_join(genres, n)}." if genres
                 else f"The data record no genre for {name}.")
        emos = genre_emotions(genres)
        emotion = (f"Its genres are conventionally associated with {_join(emos, 6)}." if emos
                   else "The data record no genre from which to infer its emotional tone.")
        credits = [f"{label} {_join(f[k], n)}" for k, label in
                   (("director", "directed by"), ("writer", "written by"), ("star", "starring")) if f.get(k)]
        culture = (f"Credits of {name}: {'; '.join(credits)}." if credits
                   else f"The data record no director, writer or cast for {name}.")
        plot = " ".join(f.get("plot", ())).strip()
        extra: list[str] = []
        if plot:
            overview = plot
        else:
            extra = [f"{label} {_join(f[k], n)}" for k, label in _PLOT_FACTS if f.get(k)]
            known = {"genre", "director", "writer", "star", "plot"} | {k for k, _ in _PLOT_FACTS}
            extra += [f"{k.replace('_', ' ')}: {_join(v, n)}" for k, v in f.items() if k not in known and v]
            overview = (f"No plot summary is available; recorded production facts: {'; '.join(extra)}." if extra
                        else "No plot summary is available in the data.")
        if not self.state_missing:
            parts = [("Theme", f"Genres: {_join(genres, n)}." if genres else ""),
                     ("Emotion", emotion if emos else ""),
                     ("Cultural Significance", f"{_upper_first('; '.join(credits))}." if credits else ""),
                     ("Plot Overview", plot or (f"{_upper_first('; '.join(extra))}." if extra else ""))]
            return "\n".join(f"{k}: {v}" for k, v in parts if v)
        return (f"Theme: {theme}\nEmotion: {emotion}\nCultural Significance: {culture}\n"
                f"Plot Overview: {overview}")

    def describe(self, items: Sequence[ItemInfo]) -> dict[ItemKey, str]:
        _check_unique_keys(items)
        return {it.key: self.describe_one(it) for it in items}


# -- builders ---------------------------------------------------------------------------
REDIAL_METADATA = "redial/movie_metadata.json"


def item_infos_from_redial_metadata(data_root: str | os.PathLike | None = None, *,
                                    movie_ids: Iterable[str] | None = None, check: bool | None = None,
                                    files: DataFiles | None = None) -> list[ItemInfo]:
    """One :class:`ItemInfo` per record of ``<data_root>/redial/movie_metadata.json``.

    Keys are ReDial movie ids as strings (the file's keys); facts: ``genre, plot, director, writer, star``.
    ``movie_ids`` restricts (and orders) the result; an id absent from the file is an error.
    """
    files = files or DataFiles(data_root, check=check)
    raw = files.json(REDIAL_METADATA)
    path = files.root / REDIAL_METADATA
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object {movie_id: {name, genre, plot, director, writer, star, imdb_id}}")
    keys = list(raw) if movie_ids is None else [str(m) for m in movie_ids]
    infos = []
    for k in keys:
        if k not in raw:
            raise DataError(path, f"movie id {k!r} has no record")
        rec = raw[k]
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str) or not rec["name"].strip():
            raise DataError(path, f"movie {k!r}: expected an object with a non-empty string 'name'")
        facts: dict[str, tuple[str, ...]] = {}
        for field in ("genre", "director", "writer", "star"):
            v = rec.get(field) or []
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise DataError(path, f"movie {k!r}: {field!r} must be a list of strings, got {v!r}")
            facts[field] = tuple(x.strip() for x in v if x.strip())
        plot = rec.get("plot") or ""
        if not isinstance(plot, str):
            raise DataError(path, f"movie {k!r}: 'plot' must be a string")
        facts["plot"] = (plot.strip(),) if plot.strip() else ()
        infos.append(ItemInfo(key=k, name=rec["name"].strip(), facts=facts))
    return infos


def describe_redial_items(data_root: str | os.PathLike | None = None, *, describer=None,
                          movie_ids: Iterable[str] | None = None, check: bool | None = None) -> dict[str, str]:
    """ReDial movie id -> description (Eq. 2) from ``movie_metadata.json``; default :class:`OfflineDescriber`.

    Pass ``describer=LLMDescriber(...)`` to get the paper's LLM descriptions for the same items.
    """
    infos = item_infos_from_redial_metadata(data_root, movie_ids=movie_ids, check=check)
    return (describer or OfflineDescriber()).describe(infos)


def item_infos_from_kg(dataset: CRSDataset, item_ids: Sequence[int] | None = None) -> list[ItemInfo]:
    """One :class:`ItemInfo` per item (entity id key) from its outgoing knowledge-graph edges.

    Facts follow the relation names (``starring -> star``, ``director``, ``genre``, ``writer``,
    ``producer``, ``musicComposer -> music``, ...); tails are turned into readable names
    (``<http://dbpedia.org/resource/The_Shining_(film)>`` -> ``The Shining (film)``). Self-loops and
    person-only relations (occupation, relative) are skipped; other named relations are kept under
    their normalised name. Needs ``dataset.kg.relation_names`` (INSPIRED has them; ReDial's KGSF graph
    does not: use :func:`describe_redial_items` there).
    """
    kg = dataset.kg
    if not kg.relation_names:
        raise ValueError(f"{dataset.name}: the knowledge graph has no relation names, so its facts cannot be "
                         "named; for ReDial use describe_redial_items (movie_metadata.json)")
    rel_fact = []
    for r in kg.relation_names:
        nr = _norm_relation(r or "")
        rel_fact.append(None if nr in _IGNORED_RELATIONS or not nr else _RELATION_TO_FACT.get(nr, nr))
    id2uri = {i: u for u, i in dataset.entity2id.items()}

    def name(e: int) -> str:
        n = dataset.entity_names.get(e) or id2uri.get(e) or str(e)
        return readable_entity_name(n)

    items = list(dataset.item_ids if item_ids is None else item_ids)
    wanted = set(items)
    facts: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    mask = np.isin(kg.head, np.fromiter(wanted, dtype=np.int64, count=len(wanted)))
    for h, r, t in zip(kg.head[mask].tolist(), kg.relation[mask].tolist(), kg.tail[mask].tolist()):
        fact = rel_fact[r] if r < len(rel_fact) else None
        if fact is None or t == h:
            continue
        vals = facts[h][fact]
        v = name(t)
        if v not in vals:
            vals.append(v)
    return [ItemInfo(key=e, name=name(e), facts={k: tuple(v) for k, v in facts.get(e, {}).items()}) for e in items]
