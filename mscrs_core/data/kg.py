"""Reading the DBpedia sub-graphs (``dbpedia_subkg.json``) and their entity names."""
from __future__ import annotations

import json
import re
from urllib.parse import unquote

import numpy as np

from .errors import DataError
from .files import DataFiles
from .schema import KnowledgeGraph

_DBPEDIA = "<http://dbpedia.org/resource/"


def entity_name(uri: str) -> str:
    """Readable name of a DBpedia URI: ``<http://dbpedia.org/resource/The_Shining_(film)>`` -> ``The Shining (film)``.

    KGSF-style duplicates (``__1``) and UniCRS's ``__PersonFunction__1`` suffixes are dropped.
    """
    s = uri
    if s.startswith(_DBPEDIA):
        s = s[len(_DBPEDIA):].rstrip(">")
    else:
        s = s.strip("<>")
    s = re.sub(r"__.*$", "", s)
    return unquote(s).replace("_", " ").strip()


def read_subkg(files: DataFiles, rel: str, num_entities: int, num_relations: int | None = None,
               relation_names: list[str] | None = None) -> KnowledgeGraph:
    """``{head_id: [[relation_id, tail_id], ...]}`` -> typed edges, every id checked against the vocabularies."""
    raw = files.json(rel)
    path = files.root / rel
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object {head_id: [[relation_id, tail_id], ...]}")
    heads: list[int] = []
    rels: list[int] = []
    tails: list[int] = []
    for h, edges in raw.items():
        try:
            hid = int(h)
        except ValueError:
            raise DataError(path, f"head key {h!r} is not an integer entity id", line=_line_of(path, h)) from None
        if not isinstance(edges, list):
            raise DataError(path, f"head {h}: expected a list of [relation_id, tail_id] pairs, "
                                  f"found {type(edges).__name__}", line=_line_of(path, h))
        for e in edges:
            # type() rather than isinstance(): true/false are not ids
            if not (type(e) is list and len(e) == 2 and type(e[0]) is int and type(e[1]) is int):
                raise DataError(path, f"head {h}: edge {e!r} is not a [relation_id, tail_id] pair of integers",
                                line=_line_of(path, h))
            heads.append(hid)
            rels.append(e[0])
            tails.append(e[1])
    head = np.asarray(heads, dtype=np.int64)
    relation = np.asarray(rels, dtype=np.int64)
    tail = np.asarray(tails, dtype=np.int64)
    for name, arr in (("head", head), ("tail", tail)):
        bad = (arr < 0) | (arr >= num_entities)
        if bad.any():
            raise DataError(path, f"{name} entity id {int(arr[bad][0])} outside the entity vocabulary 0..{num_entities - 1}")
    if num_relations is not None:
        bad = (relation < 0) | (relation >= num_relations)
        if bad.any():
            raise DataError(path, f"relation id {int(relation[bad][0])} outside 0..{num_relations - 1} (relation2id.json)")
    elif (relation < 0).any():
        raise DataError(path, f"negative relation id {int(relation[relation < 0][0])}; expected ids >= 0")
    if not (head != tail).any():
        raise DataError(path, f"{'no edges' if head.size == 0 else 'only self-loops'}: expected a graph with "
                              "at least one edge between two different entities")
    return KnowledgeGraph(num_entities=num_entities, head=head, relation=relation, tail=tail,
                          relation_names=relation_names)


def _line_of(path: object, key: str) -> int | None:
    """Line of the first occurrence of the JSON key ``key`` in ``path`` (for error messages only)."""
    try:
        data = open(path, "rb").read()
    except OSError:
        return None
    i = data.find(json.dumps(str(key)).encode("utf-8") + b":")
    if i < 0:
        i = data.find(json.dumps(str(key)).encode("utf-8"))
    return data.count(b"\n", 0, i) + 1 if i >= 0 else None


def _is_id(x: object) -> bool:
    return type(x) is int or (isinstance(x, int) and not isinstance(x, bool))


def check_id_map(mapping: object, path: object, what: str = "entity") -> dict[str, int]:
    """``{name: id}`` with the ids exactly the contiguous integers 0..K-1 (no gap, no duplicate, none negative)."""
    if not isinstance(mapping, dict) or not mapping:
        found = "an empty object" if isinstance(mapping, dict) else type(mapping).__name__
        raise DataError(str(path), f"expected a non-empty JSON object {{uri: {what} id}}, found {found}")
    seen: dict[int, str] = {}
    for k, v in mapping.items():
        if not _is_id(v):
            raise DataError(str(path), f"{what} {k!r} has id {v!r}; expected a non-negative integer",
                            line=_line_of(path, k))
        if v < 0:
            raise DataError(str(path), f"{what} {k!r} has the negative id {v}; expected ids 0..{len(mapping) - 1}",
                            line=_line_of(path, k))
        if v in seen:
            raise DataError(str(path), f"{what}s {seen[v]!r} and {k!r} share the id {v}; expected one id each",
                            line=_line_of(path, k))
        seen[v] = k
    if len(seen) != len(mapping) or max(seen) != len(mapping) - 1:
        gap = next(i for i in range(len(mapping)) if i not in seen)
        raise DataError(str(path), f"{what} ids must be the contiguous integers 0..{len(mapping) - 1}; "
                                   f"id {gap} is missing (largest is {max(seen)})")
    return mapping  # type: ignore[return-value]


def check_vocabulary(entity2id: object, path: object) -> dict[str, int]:
    """entity2id must map strings to the contiguous ids 0..K-1."""
    return check_id_map(entity2id, path, "entity")
