"""ReDial in its raw schema, with KGSF's DBpedia sub-graph.

Each ``redial/{split}_data.jsonl`` line is one dialog: ``conversationId``,
``messages`` (``senderWorkerId``, ``text`` with movie mentions written
``@<movieId>``), ``movieMentions`` (``movieId -> name``),
``initiatorWorkerId``, ``respondentWorkerId``, ...

* Roles: the initiator is the seeker, the respondent the recommender.
* Consecutive messages of one speaker are merged into one turn (as UniCRS and
  KGSF do); ``report["messages"]`` keeps the raw message count (Table 1 counts
  messages).
* Movies: ``@<movieId>`` is written out as the movie's name in ``text`` and
  linked to its entity through ``kg/movie2entity.json`` (a DBpedia URI) or, for
  the 812 movies without a URI, through KGSF's own entity for the movie id; the
  item set is ``kg/movie_entity_ids.json`` (all 6,924 movies, Table 1).
* Other entities: :class:`~mscrs_core.data.linking.EntityLinker` over the
  graph's entity names (KGSF's linker was never published).
"""
from __future__ import annotations

import csv
import os
import re
from collections import Counter

import numpy as np

from .errors import DataError
from .files import DataFiles
from .kg import check_vocabulary, entity_name, read_subkg
from .linking import EntityLinker
from .schema import RECOMMENDER, SEEKER, SPLITS, CRSDataset, Dialog, Turn

MOVIE_MENTION = re.compile(r"@(\d+)")
REQUIRED = ("conversationId", "messages", "initiatorWorkerId", "respondentWorkerId")


def _clean_name(name: str) -> str:
    return " ".join(name.split())


def movie_names(files: DataFiles) -> dict[str, str]:
    """ReDial movie id -> name, from ``movies_with_mentions.csv``."""
    p = files.path("redial/movies_with_mentions.csv")
    out = {}
    with open(p, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:2] != ["movieId", "movieName"]:
            raise DataError(p, f"expected the header movieId,movieName,..., found {header}", line=1)
        for n, row in enumerate(reader, 2):
            if len(row) < 2:
                raise DataError(p, "expected movieId,movieName", line=n)
            out[row[0]] = _clean_name(row[1])
    return out


class _DialogParser:
    def __init__(self, movie2eid: dict[str, int], item_set: set[int], names: dict[str, str],
                 linker: EntityLinker | None, counts: Counter):
        self.movie2eid = movie2eid
        self.item_set = item_set
        self.names = names
        self.linker = linker
        self.counts = counts

    def __call__(self, obj: object, path: str, line: int) -> Dialog | None:
        if not isinstance(obj, dict):
            raise DataError(path, "expected a JSON object (one ReDial dialog)", line=line)
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            raise DataError(path, f"dialog lacks the field(s) {missing}", line=line)
        msgs = obj["messages"]
        if not isinstance(msgs, list):
            raise DataError(path, "'messages' must be a list", line=line)
        if not msgs:
            self.counts["empty_dialogs_skipped"] += 1
            return None
        mentions = obj.get("movieMentions") or {}
        if isinstance(mentions, list):  # raw ReDial writes [] for "no mentions"
            mentions = {}
        seeker = obj["initiatorWorkerId"]
        # merge consecutive messages of one speaker
        merged: list[tuple[str, list[str]]] = []
        for k, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("text"), str) or "senderWorkerId" not in m:
                raise DataError(path, f"message {k}: expected an object with 'senderWorkerId' and a string 'text'", line=line)
            self.counts["messages"] += 1
            role = SEEKER if m["senderWorkerId"] == seeker else RECOMMENDER
            if merged and merged[-1][0] == role:
                merged[-1][1].append(m["text"])
            else:
                merged.append((role, [m["text"]]))
        turns = [self._turn(role, " ".join(texts), mentions) for role, texts in merged]
        return Dialog(dialog_id=str(obj["conversationId"]), turns=turns)

    def _turn(self, role: str, raw: str, mentions: dict) -> Turn:
        items: list[int] = []

        def sub(m: re.Match) -> str:
            mid = m.group(1)
            self.counts["movie_mentions"] += 1
            eid = self.movie2eid.get(mid)
            if eid is None:
                self.counts["movie_mentions_unlinked"] += 1
            elif eid not in items:
                items.append(eid)
            name = mentions.get(mid) or self.names.get(mid)
            if name is None:
                self.counts["movie_mentions_without_name"] += 1
                return m.group(0)
            return _clean_name(name)

        text = MOVIE_MENTION.sub(sub, raw)
        ents: list[int] = []
        if self.linker is not None:
            ents = [e for e in self.linker.link(MOVIE_MENTION.sub(" ", raw)).entities if e not in self.item_set]
        self.counts["turns"] += 1
        self.counts["turns_with_entity"] += bool(ents)
        self.counts["turns_with_entity_or_item"] += bool(ents or items)
        self.counts["linked_entities"] += len(ents)
        return Turn(role=role, text=text, entities=tuple(ents), items=tuple(items))


def load_redial(data_root: str | os.PathLike | None = None, *, check: bool = True,
                splits: tuple[str, ...] = SPLITS, link_entities: bool = True,
                files: DataFiles | None = None) -> CRSDataset:
    """Read ReDial (raw schema) and KGSF's DBpedia graph from ``<data_root>/redial``."""
    files = files or DataFiles(data_root, check=check)
    entity2id = check_vocabulary(files.json("redial/kg/entity2id.json"), files.root / "redial/kg/entity2id.json")
    K = len(entity2id)
    m2e_path = files.root / "redial/kg/movie2entity.json"
    movie2uri = files.json("redial/kg/movie2entity.json")
    if not isinstance(movie2uri, dict):
        raise DataError(m2e_path, "expected a JSON object {movieId: uri or null}")
    item_ids = files.json("redial/kg/movie_entity_ids.json")
    ipath = files.root / "redial/kg/movie_entity_ids.json"
    if not isinstance(item_ids, list) or not all(isinstance(i, int) and 0 <= i < K for i in item_ids):
        raise DataError(ipath, f"expected a JSON list of entity ids in 0..{K - 1}")
    item_ids = sorted(set(item_ids))
    item_set = set(item_ids)
    movie2eid: dict[str, int] = {}
    for mid, uri in movie2uri.items():
        eid = entity2id.get(uri) if uri is not None else entity2id.get(mid)
        if eid is None:
            eid = entity2id.get(mid)
        if eid is not None:
            movie2eid[mid] = eid
    kg = read_subkg(files, "redial/kg/dbpedia_subkg.json", K)
    names_by_movie = movie_names(files)

    counts: Counter = Counter()
    linker = None
    if link_entities:
        degree = np.bincount(np.concatenate([kg.head, kg.tail]), minlength=K)
        linker = EntityLinker.from_vocabulary(entity2id, exclude=item_set, degree=degree)
    parser = _DialogParser(movie2eid, item_set, names_by_movie, linker, counts)

    data: dict[str, list[Dialog]] = {}
    per_split: dict[str, dict[str, int]] = {}
    for split in splits:
        rel = f"redial/{split}_data.jsonl"
        before = Counter(counts)
        dialogs = []
        for n, obj in files.jsonl(rel):
            d = parser(obj, str(files.root / rel), n)
            if d is not None:
                dialogs.append(d)
        data[split] = dialogs
        per_split[split] = dict(counts - before)

    names = {i: entity_name(u) for u, i in entity2id.items()}
    for mid, eid in movie2eid.items():
        if mid in names_by_movie and names.get(eid, "").isdigit():
            names[eid] = names_by_movie[mid]  # unlinked movies: their KGSF entity is just the movie id
    report: dict[str, object] = dict(counts)
    report["per_split"] = per_split
    report["linker_names"] = len(linker) if linker else 0
    report["movies_linked_to_entities"] = len(movie2eid)
    source_ids = {}
    for mid, eid in sorted(movie2eid.items(), key=lambda kv: int(kv[0])):
        source_ids.setdefault(eid, mid)  # a few entities stand for several ReDial ids: keep the first
    return CRSDataset(name="redial", splits=data, entity2id=entity2id, item_ids=item_ids, kg=kg,
                      entity_names=names, report=report, source_ids=source_ids)
