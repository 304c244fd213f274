"""Reading the DBpedia sub-graphs (``dbpedia_subkg.json``) and their entity names."""
from __future__ import annotations

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
            raise DataError(path, f"head key {h!r} is not an integer entity id") from None
        if not isinstance(edges, list):
            raise DataError(path, f"head {h}: expected a list of [relation_id, tail_id] pairs")
        for e in edges:
            if not (isinstance(e, list) and len(e) == 2 and all(isinstance(x, int) for x in e)):
                raise DataError(path, f"head {h}: edge {e!r} is not a [relation_id, tail_id] pair of integers")
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
        raise DataError(path, "negative relation id")
    return KnowledgeGraph(num_entities=num_entities, head=head, relation=relation, tail=tail,
                          relation_names=relation_names)


def check_vocabulary(entity2id: object, path: object) -> dict[str, int]:
    """entity2id must map strings to the contiguous ids 0..K-1."""
    if not isinstance(entity2id, dict) or not entity2id:
        raise DataError(str(path), "expected a non-empty JSON object {uri: id}")
    ids = sorted(entity2id.values())
    if not all(isinstance(i, int) for i in ids) or ids != list(range(len(ids))):
        raise DataError(str(path), "entity ids must be the contiguous integers 0..K-1")
    return entity2id  # type: ignore[return-value]
