"""Knowledge graph for the R-GCN entity encoder, Eq. (1) of MSCRS (section 4.1).

:func:`build_kg_edges` turns a :class:`~mscrs_core.data.schema.KnowledgeGraph` into the
``edge_index`` / ``edge_type`` pair ``torch_geometric.nn.RGCNConv`` consumes;
:class:`KGEncoder` holds the learnable entity table and one R-GCN layer giving N^(1).

Paper vs. authors' code (MSCRS-main, ``rec/src/dataset_dbpedia*.py``, ``model_prompt.py``):

* reverse edges: R-GCN (Schlichtkrull et al.) gives inverse edges their own relation;
  the authors add the reverse edge with the *same* relation id -> ``reverse_relations=False``.
* self-loops: one self-loop per entity in a dedicated relation (the authors' ReDial code does
  the same with relation 185 and skips the file's self-loops; their INSPIRED code keeps the
  file's ``self_loop`` relation, which only covers some entities).
* relation ids: remapped to 0..R-1. The authors' ReDial code numbers kept relations 1..R but
  declares ``num_relations=R``; PyG 2.8 rejects the out-of-range id R.
* rare relations: ``min_relation_count`` drops relations with fewer distinct edges (KGSF /
  UniCRS / the authors' ReDial code keep relations with > 1000 edges counted over *both*
  directions, i.e. roughly ``min_relation_count=501`` here, where each stored edge counts once).
* activation: Eq. (1) applies sigma (ReLU, as in R-GCN); the authors (like UniCRS) use no
  activation and a residual ``rgcn(x) + x`` -> ``variant="authors_code"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from mscrs_core.data.schema import KnowledgeGraph
from mscrs_core.graphs.rgcn import GroupedRGCNConv

SELF_LOOP_NAME = "self_loop"
INVERSE_SUFFIX = "_inv"


@dataclass
class KGEdges:
    """Typed edges ready for ``RGCNConv`` (messages flow ``edge_index[0] -> edge_index[1]``)."""

    edge_index: Tensor  # [2, E] int64
    edge_type: Tensor  # [E] int64 in 0..num_relations-1
    num_entities: int
    num_relations: int
    relation_map: dict[int, int]  # original relation id -> forward relation id
    reverse_relation_map: dict[int, int]  # original relation id -> id of its inverse edges
    self_loop_relation: int | None
    relation_names: list[str]  # name of every new relation id
    dropped_relations: dict[int, int] = field(default_factory=dict)  # original id -> edge count

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


def _check_kg(kg: KnowledgeGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, r, t = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (kg.head, kg.relation, kg.tail))
    if not (h.shape == r.shape == t.shape):
        raise ValueError(f"kg: head/relation/tail lengths differ ({h.size}, {r.size}, {t.size})")
    k = int(kg.num_entities)
    if k <= 0:
        raise ValueError(f"kg.num_entities must be positive, got {k}")
    for name, a in (("head", h), ("tail", t)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"kg.{name} has ids outside [0, {k}): min {a.min()}, max {a.max()}")
    if r.size and r.min() < 0:
        raise ValueError(f"kg.relation has negative ids (min {r.min()})")
    return h, r, t


def build_kg_edges(
    kg: KnowledgeGraph,
    *,
    reverse_relations: bool = True,
    add_self_loops: bool = True,
    min_relation_count: int = 0,
) -> KGEdges:
    """Edges for Eq. (1): both directions, self-loops, contiguous relation ids.

    Args:
        kg: the graph as stored (each edge once, as the file gives it).
        reverse_relations: inverse edges get their own relation id (R-GCN; paper default).
            ``False`` reuses the forward id (authors' code).
        add_self_loops: add one self-loop per entity in a dedicated relation (last id); the
            file's own self-loops are then dropped so no entity gets two. With ``False`` the
            file's self-loops are kept as ordinary (not reversed) edges.
        min_relation_count: drop relations with fewer distinct stored edges than this.

    Duplicate (head, tail, type) triples are removed; edges are sorted by (head, tail, type).
    """
    if min_relation_count < 0:
        raise ValueError(f"min_relation_count must be >= 0, got {min_relation_count}")
    h, r, t = _check_kg(kg)
    k = int(kg.num_entities)
    if h.size:  # distinct stored triples only
        trip = np.unique(np.stack([h, r, t], axis=1), axis=0)
        h, r, t = trip[:, 0], trip[:, 1], trip[:, 2]
    is_loop = h == t
    if add_self_loops:
        keep = ~is_loop
        h, r, t, is_loop = h[keep], r[keep], t[keep], is_loop[keep]

    rels, counts = np.unique(r, return_counts=True)
    kept = rels[counts >= min_relation_count]
    dropped = {int(a): int(c) for a, c in zip(rels, counts) if c < min_relation_count}
    relation_map = {int(orig): i for i, orig in enumerate(kept.tolist())}
    n_fwd = len(relation_map)

    sel = np.isin(r, kept)
    h, r, t, is_loop = h[sel], r[sel], t[sel], is_loop[sel]
    lut = np.full(int(r.max()) + 1 if r.size else 1, -1, dtype=np.int64)
    lut[kept] = np.arange(n_fwd)
    fwd = lut[r]
    rev = fwd + n_fwd if reverse_relations else fwd
    reverse_relation_map = {o: i + n_fwd for o, i in relation_map.items()} if reverse_relations else {}
    num_relations = n_fwd * (2 if reverse_relations else 1)

    names_src = kg.relation_names
    fwd_names = [names_src[o] if names_src and o < len(names_src) else str(o) for o in relation_map]
    names = fwd_names + ([n + INVERSE_SUFFIX for n in fwd_names] if reverse_relations else [])

    nl = ~is_loop  # a self-loop's reverse is itself: do not duplicate it
    heads = [h, t[nl]]
    tails = [t, h[nl]]
    types = [fwd, rev[nl]]
    self_rel = None
    if add_self_loops:
        self_rel = num_relations
        num_relations += 1
        names.append(SELF_LOOP_NAME)
        ar = np.arange(k, dtype=np.int64)
        heads.append(ar), tails.append(ar), types.append(np.full(k, self_rel, dtype=np.int64))
    e = np.unique(np.stack([np.concatenate(heads), np.concatenate(tails), np.concatenate(types)], 1), axis=0)
    return KGEdges(
        edge_index=torch.from_numpy(np.ascontiguousarray(e[:, :2].T)),
        edge_type=torch.from_numpy(np.ascontiguousarray(e[:, 2])),
        num_entities=k,
        num_relations=num_relations,
        relation_map=relation_map,
        reverse_relation_map=reverse_relation_map,
        self_loop_relation=self_rel,
        relation_names=names,
        dropped_relations=dropped,
    )


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "none": lambda x: x}


class KGEncoder(nn.Module):
    """Learnable entity table + one ``RGCNConv`` layer -> N^(1) in R^{K x d}, Eq. (1).

    ``variant="paper"``: ``sigma(RGCN(x))`` with root weight (``RGCNConv``'s default ``aggr="mean"``
    is the 1/Z_{e,r} normalisation); sigma = ``activation`` (ReLU as in R-GCN).
    ``variant="authors_code"``: ``RGCN(x) + x`` (no activation, residual), as in UniCRS/MSCRS code.
    The graph lives in buffers so ``.to(device)`` moves it. The layer is
    :class:`~mscrs_core.graphs.rgcn.GroupedRGCNConv` (``RGCNConv``'s parameters and math, faster here).
    """

    def __init__(
        self,
        num_entities: int,
        dim: int,
        kg: KGEdges,
        num_bases: int | None = 8,
        variant: str = "paper",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if variant not in ("paper", "authors_code"):
            raise ValueError(f"variant must be 'paper' or 'authors_code', got {variant!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if num_entities != kg.num_entities:
            raise ValueError(f"num_entities={num_entities} but the KG edges were built for {kg.num_entities}")
        if kg.num_edges and int(kg.edge_type.max()) >= kg.num_relations:
            raise ValueError("kg.edge_type has ids >= num_relations; build edges with build_kg_edges")
        self.variant = variant
        self.activation = activation
        self.node_embeds = nn.Parameter(torch.empty(num_entities, dim))
        # same scale as the authors' init: U(-sqrt(6/(K+d)), +sqrt(6/(K+d)))
        bound = math.sqrt(6.0 / (num_entities + dim))
        nn.init.uniform_(self.node_embeds, -bound, bound)
        # RGCNConv's parameters and function, computed per edge group (graphs/rgcn.py: many relations, many nodes)
        self.rgcn = GroupedRGCNConv(dim, dim, num_relations=kg.num_relations, num_bases=num_bases)
        self.register_buffer("edge_index", kg.edge_index.clone())
        self.register_buffer("edge_type", kg.edge_type.clone())

    def forward(self) -> Tensor:
        """N^(1) for all K entities."""
        out = self.rgcn(self.node_embeds, self.edge_index, self.edge_type)
        if self.variant == "authors_code":
            return out + self.node_embeds
        return _ACTIVATIONS[self.activation](out)
