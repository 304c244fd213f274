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
import io
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


def movie_names(files: DataFiles, rel: str = "redial/movies_with_mentions.csv") -> dict[str, str]:
    """ReDial movie id -> name, from ``movies_with_mentions.csv`` (``rel``: its path under ``files.root``)."""
    p = files.root / rel
    reader = csv.reader(io.StringIO(files.text(rel), newline=""))
    out: dict[str, str] = {}
    try:
        header = next(reader, None)
        if header is None or header[:2] != ["movieId", "movieName"]:
            raise DataError(p, f"expected the header movieId,movieName,..., found {header}", line=1)
        for row in reader:
            n = reader.line_num
            if not row:
                continue
            if len(row) < 2:
                raise DataError(p, f"expected movieId,movieName, found {row}", line=n)
            if not row[0].isdigit():
                raise DataError(p, f"movieId {row[0]!r} is not a non-negative integer", line=n)
            out[row[0]] = _clean_name(row[1])
    except csv.Error as e:
        raise DataError(p, f"malformed CSV ({e}); expected movieId,movieName rows", line=reader.line_num) from None
    return out


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def movie_entities(movie2uri: dict, entity2id: dict[str, int], path) -> dict[str, int]:
    """ReDial movie id -> entity id through ``movie2entity.json`` (``path``, for errors): the movie's URI when the
    graph has it, else the movie id itself as an entity name; movies with neither are left out."""
    out: dict[str, int] = {}
    for mid, uri in movie2uri.items():
        if not (uri is None or isinstance(uri, str)):
            raise DataError(path, f"movie {mid!r} maps to {_describe(uri)}; expected a URI string or null")
        eid = entity2id.get(uri) if uri is not None else entity2id.get(mid)
        if eid is None:
            eid = entity2id.get(mid)
        if eid is not None:
            out[mid] = eid
    return out


def _describe(v: object) -> str:
    r = repr(v)
    return f"{type(v).__name__} {r if len(r) <= 40 else r[:37] + '...'}"


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
        cid = obj["conversationId"]
        if not (_is_id(cid) or (isinstance(cid, str) and cid.strip())):
            raise DataError(path, f"'conversationId' is {_describe(cid)}; expected an integer or a non-empty string",
                            line=line)
        for k in ("initiatorWorkerId", "respondentWorkerId"):
            if not _is_id(obj[k]):
                raise DataError(path, f"'{k}' is {_describe(obj[k])}; expected an integer worker id", line=line)
        msgs = obj["messages"]
        if not isinstance(msgs, list):
            raise DataError(path, f"'messages' is {_describe(msgs)}; expected a list of messages", line=line)
        mentions = obj.get("movieMentions")
        if mentions is None or mentions == []:  # raw ReDial writes [] for "no mentions"
            mentions = {}
        if not isinstance(mentions, dict) or not all(
                isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mentions.items()):
            raise DataError(path, f"'movieMentions' is {_describe(mentions)}; expected an object "
                                  "{movieId: movie name or null}", line=line)
        if not msgs:
            self.counts["empty_dialogs_skipped"] += 1
            return None
        seeker = obj["initiatorWorkerId"]
        # merge consecutive messages of one speaker
        merged: list[tuple[str, list[str]]] = []
        for k, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("text"), str) or not _is_id(m.get("senderWorkerId")):
                raise DataError(path, f"message {k}: expected an object with an integer 'senderWorkerId' and a "
                                      f"string 'text', found {_describe(m)}", line=line)
            self.counts["messages"] += 1
            role = SEEKER if m["senderWorkerId"] == seeker else RECOMMENDER
            if merged and merged[-1][0] == role:
                merged[-1][1].append(m["text"])
            else:
                merged.append((role, [m["text"]]))
        turns = [self._turn(role, " ".join(texts), mentions) for role, texts in merged]
        return Dialog(dialog_id=str(cid), turns=turns)

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


def load_redial(data_root: str | os.PathLike | None = None, *, check: bool | None = None,
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
    if not isinstance(item_ids, list) or not item_ids:
        raise DataError(ipath, f"expected a non-empty JSON list of entity ids in 0..{K - 1}, found {_describe(item_ids)}")
    wrong = [i for i in item_ids if not (_is_id(i) and 0 <= i < K)]
    if wrong:
        raise DataError(ipath, f"item id {wrong[0]!r} ({type(wrong[0]).__name__}) is not an entity id in 0..{K - 1}")
    item_ids = sorted(set(item_ids))
    item_set = set(item_ids)
    movie2eid = movie_entities(movie2uri, entity2id, m2e_path)
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
    first_seen: dict[str, tuple[str, int]] = {}  # conversationId -> (file, line): a dialog in two places leaks
    for split in splits:
        rel = f"redial/{split}_data.jsonl"
        path = str(files.root / rel)
        before = Counter(counts)
        dialogs = []
        repeat: DataError | None = None  # reported once the split's lines are all well-formed
        for n, obj in files.jsonl(rel):
            d = parser(obj, path, n)
            if d is None:
                continue  # a skipped (empty) dialog is no dialog: its id may be used by a real one
            if d.dialog_id in first_seen:
                if repeat is None:
                    other, other_line = first_seen[d.dialog_id]
                    repeat = DataError(path, f"conversationId {d.dialog_id} also appears at {other}:{other_line}; "
                                             "expected each dialog in exactly one split (a repeat leaks test "
                                             "dialogs)", line=n)
            else:
                first_seen[d.dialog_id] = (path, n)
            dialogs.append(d)
        if repeat is not None:
            raise repeat
        if not dialogs:
            raise DataError(path, f"the {split} split has no dialogs; expected at least one (one ReDial dialog per line)")
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
