"""INSPIRED in UniCRS's processed form (the form MSCRS uses).

Each ``{split}_data_dbpedia.jsonl`` line is one dialog: a JSON list of turns
``{"text", "role": "SEEKER"|"RECOMMENDER", "entity_link": [uri...], "movie_link": [uri...], ...}``.
Entity and movie links are DBpedia URIs looked up in ``entity2id.json``; a URI
outside the vocabulary is skipped and counted, as UniCRS's ``process.py`` does,
and the count is reported in ``dataset.report``.
"""
from __future__ import annotations

import os
from collections import Counter

from .errors import DataError
from .files import DataFiles
from .kg import check_id_map, check_vocabulary, entity_name, read_subkg
from .schema import RECOMMENDER, SEEKER, SPLITS, CRSDataset, Dialog, Turn

ROLE_MAP = {"SEEKER": SEEKER, "RECOMMENDER": RECOMMENDER}


def _dedup(ids: list[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))


def _describe(v: object) -> str:
    """A short description of a wrong value for an error message."""
    r = repr(v)
    return f"{type(v).__name__} {r if len(r) <= 40 else r[:37] + '...'}"


def _parse_dialog(obj: object, path: str, line: int, entity2id: dict[str, int], item_set: set[int],
                  counts: Counter) -> Dialog | None:
    if not isinstance(obj, list):
        raise DataError(path, "expected a JSON list of turns", line=line)
    if not obj:
        counts["empty_dialogs_skipped"] += 1
        return None
    turns = []
    for t_i, t in enumerate(obj):
        if not isinstance(t, dict) or not isinstance(t.get("text"), str):
            raise DataError(path, f"turn {t_i}: expected an object with a string 'text'", line=line)
        role = ROLE_MAP.get(t.get("role")) if isinstance(t.get("role"), str) else None
        if role is None:
            raise DataError(path, f"turn {t_i}: role {t.get('role')!r}, expected SEEKER or RECOMMENDER", line=line)
        links = {}
        for field in ("entity_link", "movie_link"):
            v = t.get(field)
            if v is None:
                v = []
            if not isinstance(v, list) or not all(isinstance(u, str) for u in v):
                raise DataError(path, f"turn {t_i}: '{field}' is {_describe(v)}; expected a list of URI strings",
                                line=line)
            links[field] = v
        ents, items = [], []
        for uri in links["entity_link"]:
            if uri in entity2id:
                ents.append(entity2id[uri])
            else:
                counts["entity_links_outside_vocabulary"] += 1
        for uri in links["movie_link"]:
            eid = entity2id.get(uri)
            if eid is None:
                counts["movie_links_outside_vocabulary"] += 1
            elif eid in item_set:
                items.append(eid)
            else:
                counts["movie_links_not_items"] += 1
                ents.append(eid)
        turns.append(Turn(role=role, text=t["text"], entities=_dedup(ents), items=_dedup(items)))
    return Dialog(dialog_id=f"{os.path.basename(path)}:{line}", turns=turns)


def load_inspired(data_root: str | os.PathLike | None = None, *, check: bool | None = None,
                  splits: tuple[str, ...] = SPLITS, files: DataFiles | None = None) -> CRSDataset:
    """Read INSPIRED (UniCRS form) from ``<data_root>/inspired``."""
    files = files or DataFiles(data_root, check=check)
    entity2id = check_vocabulary(files.json("inspired/entity2id.json"), files.root / "inspired/entity2id.json")
    relation2id = check_id_map(files.json("inspired/relation2id.json"), files.root / "inspired/relation2id.json",
                               "relation")
    rel_names = [""] * len(relation2id)
    for uri, rid in relation2id.items():
        rel_names[rid] = entity_name(uri.replace("http://dbpedia.org/ontology/", "http://dbpedia.org/resource/"))
    item_ids = files.json("inspired/item_ids.json")
    ipath = files.root / "inspired/item_ids.json"
    if not isinstance(item_ids, list) or not item_ids:
        raise DataError(ipath, f"expected a non-empty JSON list of integer entity ids, found {_describe(item_ids)}")
    wrong = [i for i in item_ids if type(i) is not int]
    if wrong:
        raise DataError(ipath, f"item id {wrong[0]!r} ({type(wrong[0]).__name__}) is not an integer entity id")
    bad = [i for i in item_ids if not 0 <= i < len(entity2id)]
    if bad:
        raise DataError(ipath, f"item id {bad[0]} outside the entity vocabulary 0..{len(entity2id) - 1}")
    item_ids = sorted(set(item_ids))
    item_set = set(item_ids)
    kg = read_subkg(files, "inspired/dbpedia_subkg.json", len(entity2id), len(relation2id), rel_names)

    counts: Counter = Counter()
    data: dict[str, list[Dialog]] = {}
    for split in splits:
        rel = f"inspired/{split}_data_dbpedia.jsonl"
        dialogs = []
        for n, obj in files.jsonl(rel):
            d = _parse_dialog(obj, str(files.root / rel), n, entity2id, item_set, counts)
            if d is not None:
                dialogs.append(d)
        if not dialogs:
            raise DataError(files.root / rel, f"the {split} split has no dialogs; expected at least one "
                                              "(one JSON list of turns per line)")
        data[split] = dialogs
    names = {i: entity_name(u) for u, i in entity2id.items()}
    return CRSDataset(name="inspired", splits=data, entity2id=entity2id, item_ids=item_ids, kg=kg,
                      entity_names=names, report=dict(counts))
