"""Multi-modal semantic graph enhanced entity sets, Eq. (25) of MSCRS (paper Sec. 4.4).

    Q_hat_s = Q_s  U  U_{G in {G_kg, G_c, G_t, G_v}} { e_j | e_i in Q_s, A_ij(G) = 1 }

i.e. a context's entities plus their first-order neighbours in every ACTIVE semantic graph (whatever the
:class:`~mscrs_core.graphs.fusion.SemanticGraphEncoder` was built with: a "w/o -t" encoder contributes no
text-graph neighbours).

Cap and order (the paper gives none; KG neighbour sets of a genre or a popular actor run into thousands):

* the context entities come first, in order of first mention (all of them are kept: Q_s is always in Q_hat_s);
* then at most ``max_neighbours`` neighbours, ranked by
  1. how many context entities they are adjacent to (in any active graph), descending;
  2. in how many graphs they are adjacent to some context entity, descending;
  3. entity id, ascending (deterministic tie-break).

A neighbour reached from several graphs is listed once; :attr:`EnhancedEntities.sources` records which graphs
reached it, which is what ``mscrs chat`` prints as "graph neighbours that contributed".

``max_neighbours=None`` keeps every neighbour (the printed Eq. 25). The collaborative graph is built from the
TRAINING dialogs only (``comention_graph_from_dataset``), so looking up neighbours of a test context leaks nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

NeighbourFn = Callable[[Iterable[int]], dict[str, set[int]]]


@dataclass(frozen=True)
class EnhancedEntities:
    """Q_hat_s of Eq. (25), ordered (see the module docstring)."""

    context: tuple[int, ...]  # Q_s, first-mention order
    neighbours: tuple[int, ...]  # the kept neighbours, best first
    sources: dict[int, tuple[str, ...]] = field(default_factory=dict, compare=False)  # neighbour -> graph names
    touches: dict[int, int] = field(default_factory=dict, compare=False)  # neighbour -> #context entities adjacent
    dropped: int = 0  # neighbours beyond the cap

    @property
    def entities(self) -> tuple[int, ...]:
        """Q_hat_s: context entities first, then the kept neighbours."""
        return self.context + self.neighbours

    def slot_order(self) -> tuple[int, ...]:
        """Order for right-aligned prompt slots (the collators keep the LAST q ids): the kept neighbours,
        worst first, then the context entities, so truncation to q drops the weakest neighbours first."""
        return tuple(reversed(self.neighbours)) + self.context

    def by_graph(self) -> dict[str, tuple[int, ...]]:
        """Kept neighbours grouped by the graph that reached them (a neighbour can appear under several)."""
        out: dict[str, list[int]] = {}
        for e in self.neighbours:
            for g in self.sources.get(e, ()):
                out.setdefault(g, []).append(e)
        return {g: tuple(v) for g, v in out.items()}


class EntityEnhancer:
    """Callable ``context_entities -> EnhancedEntities`` implementing Eq. (25).

    Args:
        neighbour_fn: ``entity_ids -> {graph_name: set(neighbour ids)}``, e.g.
            ``SemanticGraphEncoder.neighbours`` (first-order neighbours in every active graph).
        max_neighbours: cap on the neighbours kept per context (``None``: no cap).
        graphs: restrict to these graph names (default: every graph ``neighbour_fn`` reports).
        enabled: ``False`` gives Q_hat_s = Q_s (the "w/o -s" ablation of Fig. 4(c, d)).

    Neighbour look-ups are memoised per entity (the graphs are fixed once built).
    """

    def __init__(self, neighbour_fn: NeighbourFn, *, max_neighbours: int | None = 32,
                 graphs: Sequence[str] | None = None, enabled: bool = True):
        if max_neighbours is not None and max_neighbours < 0:
            raise ValueError(f"max_neighbours: expected None or >= 0, got {max_neighbours}")
        self.neighbour_fn = neighbour_fn
        self.max_neighbours = max_neighbours
        self.graphs = tuple(graphs) if graphs is not None else None
        self.enabled = enabled
        self._cache: dict[int, dict[str, frozenset[int]]] = {}

    @classmethod
    def from_encoder(cls, encoder, **kwargs) -> "EntityEnhancer":
        """From a :class:`~mscrs_core.graphs.fusion.SemanticGraphEncoder` (its active graphs)."""
        return cls(encoder.neighbours, **kwargs)

    def _neighbours_of(self, entity: int) -> dict[str, frozenset[int]]:
        hit = self._cache.get(entity)
        if hit is None:
            raw = self.neighbour_fn([entity])
            hit = {g: frozenset(int(x) for x in s) for g, s in raw.items()
                   if self.graphs is None or g in self.graphs}
            self._cache[entity] = hit
        return hit

    def __call__(self, context_entities: Iterable[int]) -> EnhancedEntities:
        ctx = tuple(dict.fromkeys(int(e) for e in context_entities))
        if not self.enabled or not ctx:
            return EnhancedEntities(ctx, ())
        in_ctx = set(ctx)
        touches: dict[int, int] = {}
        graphs_of: dict[int, set[str]] = {}
        for e in ctx:
            reached: set[int] = set()
            for g, nbs in self._neighbours_of(e).items():
                for n in nbs:
                    if n in in_ctx:
                        continue
                    reached.add(n)
                    graphs_of.setdefault(n, set()).add(g)
            for n in reached:  # count each context entity once, whatever the number of graphs
                touches[n] = touches.get(n, 0) + 1
        ranked = sorted(touches, key=lambda n: (-touches[n], -len(graphs_of[n]), n))
        cap = len(ranked) if self.max_neighbours is None else self.max_neighbours
        kept = tuple(ranked[:cap])
        return EnhancedEntities(
            ctx, kept,
            sources={n: tuple(sorted(graphs_of[n])) for n in kept},
            touches={n: touches[n] for n in kept},
            dropped=len(ranked) - len(kept),
        )
