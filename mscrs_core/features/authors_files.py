"""The authors' released multi-modal files, for whoever has them (they live only on the authors' Drive).

- ``id_embeddings_text.json`` / ``id_embeddings_image.json``: ``{entity_id: [float, ...]}``, the item
  features X^t (Eq. 3, 768-d RoBERTa) and X^v (Eq. 5, 1024-d ViT) keyed by DBpedia entity id.
- ``edge_index_c.pt``: the collaborative semantic graph (Eq. 6) as a ``[2, E]`` LongTensor.

The loaders validate everything and name the file in every error. The authors' code appends a
padding entity with an all-ones vector after loading; that belongs to the graph builder, not here.
"""
from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import torch

from ..data.errors import DataError


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def load_id_embeddings(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """``{entity_id: vector}`` JSON -> ``(ids LongTensor [N], features FloatTensor [N, d])``, sorted by id.

    Errors (:class:`DataError`, naming the file): not a JSON object, empty, an id that is not a
    non-negative integer, duplicate ids, a vector that is not a non-empty list of finite numbers,
    vectors of different lengths.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: embeddings file not found (expected {{entity_id: [float, ...]}} JSON)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f, object_pairs_hook=lambda p: _reject_duplicates(p))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON ({e.msg})", line=e.lineno) from None
    except ValueError as e:  # from _reject_duplicates
        raise DataError(path, f"{e}; every entity id must appear once") from None
    if not isinstance(raw, dict):
        raise DataError(path, f"expected a JSON object {{entity_id: [float, ...]}}, got {type(raw).__name__}")
    if not raw:
        raise DataError(path, "holds no embeddings")
    ids: list[int] = []
    rows: list[list[float]] = []
    dim: int | None = None
    first_key = None
    for k, v in raw.items():
        try:
            eid = int(k)
        except ValueError:
            raise DataError(path, f"id {k!r} is not an integer entity id") from None
        if eid < 0:
            raise DataError(path, f"id {k!r} is negative")
        if not isinstance(v, list) or not v:
            raise DataError(path, f"id {k}: expected a non-empty list of numbers, got {type(v).__name__}")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            bad = next(x for x in v if not isinstance(x, (int, float)) or isinstance(x, bool))
            raise DataError(path, f"id {k}: vector holds a non-numeric value {bad!r}")
        if not all(math.isfinite(x) for x in v):
            raise DataError(path, f"id {k}: vector holds NaN or infinity")
        if dim is None:
            dim, first_key = len(v), k
        elif len(v) != dim:
            raise DataError(path, f"ragged vectors: id {k} has {len(v)} values, id {first_key} has {dim}")
        ids.append(eid)
        rows.append(v)
    if len(set(ids)) != len(ids):  # "7" and "07" are the same entity
        raise DataError(path, "two keys name the same entity id")
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return (torch.tensor([ids[i] for i in order], dtype=torch.long),
            torch.tensor([rows[i] for i in order], dtype=torch.float32))


def save_id_embeddings(path: str | os.PathLike, ids: torch.Tensor, features: torch.Tensor) -> None:
    """Write ``{entity_id: vector}`` in the authors' format (to hand our features to their code)."""
    ids = torch.as_tensor(ids)
    if ids.ndim != 1 or features.ndim != 2 or features.shape[0] != ids.shape[0]:
        raise ValueError(f"ids [N] and features [N, d] expected, got {tuple(ids.shape)} and {tuple(features.shape)}")
    obj = {str(int(i)): [float(x) for x in row] for i, row in zip(ids.tolist(), features.tolist())}
    Path(path).write_text(json.dumps(obj), encoding="utf-8")


def load_collaborative_edges(path: str | os.PathLike, num_entities: int | None = None) -> torch.Tensor:
    """``edge_index_c.pt`` -> ``[2, E]`` LongTensor (``torch.load(weights_only=True)``, no pickle code).

    Errors name the file: not a tensor, not two rows, a non-integer dtype, negative ids, or (when
    ``num_entities`` is given) ids outside ``0..num_entities-1``. Integer dtypes other than int64 are
    converted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: collaborative graph file not found (expected a [2, E] LongTensor)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise DataError(path, f"cannot be loaded with torch.load(weights_only=True): {str(e).splitlines()[0]}") from None
    if not isinstance(obj, torch.Tensor):
        raise DataError(path, f"expected a [2, E] LongTensor, got {type(obj).__name__}")
    if obj.ndim != 2 or obj.shape[0] != 2:
        raise DataError(path, f"expected shape [2, E], got {list(obj.shape)}")
    if obj.dtype.is_floating_point or obj.dtype.is_complex or obj.dtype == torch.bool:
        raise DataError(path, f"expected an integer (int64) tensor, got {obj.dtype}")
    edges = obj.to(torch.long)
    if edges.numel() and int(edges.min()) < 0:
        raise DataError(path, f"negative entity id {int(edges.min())}")
    if num_entities is not None and edges.numel() and int(edges.max()) >= num_entities:
        raise DataError(path, f"entity id {int(edges.max())} outside 0..{num_entities - 1}")
    return edges
