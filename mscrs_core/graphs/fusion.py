"""Multi-modal semantic graph encoder: Eq. (1), (7)-(8), (11)-(16) of MSCRS, end to end.

forward() -> E_final [K, d]:

1. N1 = KGEncoder()                                   Eq. (1)
2. E_c = LightGCN(collab graph, init N1)              Eq. (7)-(8)
3. E_alpha = AvgPool([E_c, N1])                       Eq. (15)   (N1 when collab is off)
4. E_t, E_v = LightGCN(text / image kNN graph, init N1[items])   Eq. (11)-(13)
5. E_m = lambda E_t + (1 - lambda) E_v                Eq. (14)
6. E_final = E_alpha, with E_m added on the item rows Eq. (16)

Modalities per item: an item outside a modality's mask (e.g. no image) takes the other
modality alone (weight 1), and no multimodal term if it has neither. With one modality switched
off the other is used alone; with both off there is no multimodal term.

``variant="authors_code"`` follows MSCRS-main ``rec/src/model_prompt.py``:
N1 = rgcn(x) + x; LightGCN with self-loops, unweighted; collab average of layers 0..3, text/image
average of layers 1..2; E_alpha = E_c (no extra pooling with N1, Eq. 15);
``authors_dataset="inspired"`` (``MMPrompt_inspired``): E_m added to the items.
``authors_dataset="redial"`` (``MMPrompt``): collab propagation starts from the raw entity table
(layer 0 of the average is still N1) and the text/image result is never added (their
``index_add_`` line is commented out), so text/image graphs are inactive.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from mscrs_core.graphs.inputs import GraphInputs
from mscrs_core.graphs.kg import KGEdges, KGEncoder
from mscrs_core.graphs.lightgcn import make_lightgcn

VARIANTS = ("paper", "authors_code")
AUTHORS_DATASETS = ("inspired", "redial")
GRAPH_NAMES = ("kg", "collab", "text", "image")


@dataclass
class GraphConfig:
    """Hyper-parameters and ablation switches of the semantic graph encoder."""

    dim: int = 128
    num_bases: int = 8
    lightgcn_layers: int = 3
    lambda_: float = 0.5  # Eq. (14); paper uses 0.5 on both datasets
    use_collab: bool = True
    use_text: bool = True
    use_image: bool = True
    variant: str = "paper"  # "paper" | "authors_code"
    authors_dataset: str = "inspired"  # which of the authors' two model classes authors_code follows
    kg_activation: str = "relu"  # sigma of Eq. (1), paper variant only

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"GraphConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.authors_dataset not in AUTHORS_DATASETS:
            raise ValueError(f"GraphConfig.authors_dataset must be one of {AUTHORS_DATASETS}, got {self.authors_dataset!r}")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"GraphConfig.lambda_ must lie in [0, 1], got {self.lambda_}")
        if self.dim < 1 or self.lightgcn_layers < 0:
            raise ValueError("GraphConfig.dim must be >= 1 and lightgcn_layers >= 0")


def _edges(graph: object, name: str) -> tuple[Tensor, Tensor | None]:
    """Accept a builder result (``.edge_index``/``.edge_weight``), a [2, E] tensor or a pair."""
    if graph is None:
        raise ValueError(f"{name}: no graph given")
    if isinstance(graph, Tensor):
        return graph.long(), None
    if isinstance(graph, tuple):
        return graph[0].long(), graph[1]
    return graph.edge_index.long(), getattr(graph, "edge_weight", None)


def _csr(edge_index: Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-neighbour lists (self-loops dropped) as CSR arrays, for neighbour look-ups."""
    ei = edge_index.cpu().numpy()
    ei = ei[:, ei[0] != ei[1]]
    order = np.lexsort((ei[1], ei[0]))
    row, col = ei[0][order], ei[1][order]
    return np.searchsorted(row, np.arange(n + 1)), col


class SemanticGraphEncoder(nn.Module):
    """Entity embeddings enhanced by the KG, co-mention, text and image graphs (section 4.2).

    Args:
        num_entities: K.
        kg: typed KG edges from :func:`mscrs_core.graphs.kg.build_kg_edges`.
        item_entity_ids: [N] entity id of each item (item index i <-> entity item_entity_ids[i]).
        config: :class:`GraphConfig`.
        collab: co-mention graph in entity space (a ``CoMentionGraph``, a [2, E] tensor or
            (edge_index, edge_weight)); weights are used by the paper variant (Eq. 7 uses C).
        text, image: kNN graphs in item space 0..N-1 (a ``KNNGraph`` or a [2, E] tensor).
            Eq. (10) makes them binary, so their weights are ignored.
        text_mask, image_mask: [N] bool, items that have the modality; default: the
            ``KNNGraph.valid_mask`` when given, else all items.

    A switch that is on needs its graph (ValueError otherwise): runs state what they used.
    """

    def __init__(
        self,
        num_entities: int,
        kg: KGEdges,
        item_entity_ids: Tensor,
        config: GraphConfig | None = None,
        collab: object | None = None,
        text: object | None = None,
        image: object | None = None,
        text_mask: Tensor | None = None,
        image_mask: Tensor | None = None,
    ) -> None:
        super().__init__()
        cfg = config or GraphConfig()
        self.config = cfg
        items = torch.as_tensor(item_entity_ids, dtype=torch.long).reshape(-1)
        if items.numel() == 0:
            raise ValueError("item_entity_ids is empty")
        if int(items.min()) < 0 or int(items.max()) >= num_entities:
            raise ValueError(f"item_entity_ids must lie in [0, {num_entities})")
        if items.unique().numel() != items.numel():
            raise ValueError("item_entity_ids contains duplicates")
        n = items.numel()
        self.num_entities, self.num_items = num_entities, n
        self.register_buffer("item_ids", items)
        authors = cfg.variant == "authors_code"
        self.collab_from_raw = authors and cfg.authors_dataset == "redial"
        self.notes: list[str] = []

        self.kg_encoder = KGEncoder(
            num_entities, cfg.dim, kg, cfg.num_bases, variant=cfg.variant, activation=cfg.kg_activation
        )
        self._edge_sets: dict[str, tuple[Tensor, int, bool]] = {"kg": (kg.edge_index, num_entities, False)}

        self.collab = None
        if cfg.use_collab:
            ei, w = _edges(collab, "collab (use_collab=True)")
            self.collab = make_lightgcn("collab", cfg.variant, ei, num_entities, cfg.lightgcn_layers, w)
            self._edge_sets["collab"] = (ei, num_entities, False)

        self.text = self.image = None
        add_modal = not self.collab_from_raw
        if self.collab_from_raw and (cfg.use_text or cfg.use_image):
            self.notes.append("authors_code/redial: text/image graphs are never added to the items (as in MMPrompt)")
        masks = {}
        for name, on, graph, mask in (("text", cfg.use_text, text, text_mask), ("image", cfg.use_image, image, image_mask)):
            active = on and add_modal
            if active:
                ei, _ = _edges(graph, f"{name} (use_{name}=True)")
                if ei.numel() and int(ei.max()) >= n:
                    raise ValueError(f"{name} graph has item indices >= num_items={n}")
                setattr(self, name, make_lightgcn("modal", cfg.variant, ei, n, cfg.lightgcn_layers))
                self._edge_sets[name] = (ei, n, True)
                if mask is None:
                    mask = getattr(graph, "valid_mask", None)
            m = torch.ones(n, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool().reshape(-1)
            if m.numel() != n:
                raise ValueError(f"{name}_mask has {m.numel()} entries for {n} items")
            masks[name] = m & active
        # per-item weights of Eq. (14); one available modality gets weight 1
        t, v = masks["text"].float(), masks["image"].float()
        lam = cfg.lambda_
        self.register_buffer("w_text", t * torch.where(masks["image"], lam, 1.0))
        self.register_buffer("w_image", v * torch.where(masks["text"], 1.0 - lam, 1.0))
        self.register_buffer("text_mask", masks["text"])
        self.register_buffer("image_mask", masks["image"])
        self._csr: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        #: the graph structure this encoder was built from (``save_pretrained`` writes it next to the weights)
        self.graph_inputs = GraphInputs.from_parts(num_entities, items, kg, collab, text, image,
                                                   text_mask, image_mask)

    @property
    def active_graphs(self) -> tuple[str, ...]:
        return tuple(g for g in GRAPH_NAMES if g in self._edge_sets)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Item modalities whose graph contributes to E_final."""
        return tuple(m for m in ("text", "image") if m in self._edge_sets)

    def describe(self) -> dict[str, object]:
        """What this encoder uses: graphs, modalities, edge counts, item coverage, config."""
        return {
            "variant": self.config.variant,
            "authors_dataset": self.config.authors_dataset if self.config.variant == "authors_code" else None,
            "active_graphs": list(self.active_graphs),
            "modalities": list(self.modalities),
            "num_edges": {g: int(ei.shape[1]) for g, (ei, _, _) in self._edge_sets.items()},
            "num_entities": self.num_entities,
            "num_items": self.num_items,
            "items_with_text": int(self.text_mask.sum()),
            "items_with_image": int(self.image_mask.sum()),
            "config": asdict(self.config),
            "notes": list(self.notes),
        }

    def forward(self) -> Tensor:
        """E_final [K, d], Eq. (16).

        Without autograd (evaluation, generation) the table is computed once and reused until a parameter
        changes: E_final depends on the parameters only, and an optimizer step, ``load_state_dict`` or a
        device/dtype move all bump a parameter's version or storage. With autograd it is always recomputed.
        """
        if torch.is_grad_enabled():
            self._table_cache = None
            return self._compute()
        key = (self.training, tuple((p.data_ptr(), p._version, p.dtype) for p in self.parameters()))
        cached = getattr(self, "_table_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        table = self._compute()
        self._table_cache = (key, table)
        return table

    def _compute(self) -> Tensor:
        n1 = self.kg_encoder()
        e_alpha = n1
        if self.collab is not None:
            if self.collab_from_raw:
                layers = self.collab.layers(self.kg_encoder.node_embeds)
                layers[0] = n1
                e_c = self.collab.average(layers)
            else:
                e_c = self.collab(n1)
            e_alpha = e_c if self.config.variant == "authors_code" else (e_c + n1) / 2  # Eq. (15)
        if self.text is None and self.image is None:
            return e_alpha
        x0 = n1[self.item_ids]
        e_m = torch.zeros_like(x0)
        if self.text is not None:
            e_m = e_m + self.w_text[:, None] * self.text(x0)
        if self.image is not None:
            e_m = e_m + self.w_image[:, None] * self.image(x0)
        return e_alpha.index_add(0, self.item_ids, e_m)  # Eq. (16)

    def neighbours(self, entity_ids: Iterable[int]) -> dict[str, set[int]]:
        """First-order neighbours (entity ids) of ``entity_ids`` in every active graph (for Eq. 25).

        Item graphs are looked up for the given entities that are items; self-loops are ignored.
        """
        ids = np.fromiter((int(e) for e in entity_ids), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_entities):
            raise ValueError(f"entity_ids must lie in [0, {self.num_entities})")
        items = self.item_ids.cpu().numpy()
        ent2item = np.full(self.num_entities, -1, dtype=np.int64)
        ent2item[items] = np.arange(items.size)
        out: dict[str, set[int]] = {}
        for g, (ei, n, item_space) in self._edge_sets.items():
            if g not in self._csr:
                self._csr[g] = _csr(ei, n)
            ptr, col = self._csr[g]
            q = ent2item[ids] if item_space else ids
            q = q[q >= 0]
            nb = np.concatenate([col[ptr[i] : ptr[i + 1]] for i in q]) if q.size else np.zeros(0, np.int64)
            out[g] = set((items[nb] if item_space else nb).tolist())
        return out
