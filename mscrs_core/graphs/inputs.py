"""The graph structure a :class:`~mscrs_core.graphs.fusion.SemanticGraphEncoder` is built from, and its file.

:class:`GraphInputs` holds the edges (KG, co-mention, text/image kNN), the item ids and the item modality masks:
everything but the encoder's config and its trained weights. Every ``SemanticGraphEncoder`` records its own in
``encoder.graph_inputs``, so a model can be saved with the graphs it was trained on and rebuilt from them
(``save_pretrained`` / ``from_pretrained`` of the recommender and the conversation model).

On disk (:meth:`GraphInputs.save` / :meth:`GraphInputs.load`) it is one ``graphs.safetensors`` file: the tensors
under their field names, ``num_entities`` and ``kg_num_relations`` in the file's metadata. Loading never
unpickles; a bad file raises ValueError (FileNotFoundError when missing) naming the file and what is wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor

#: tensor fields that every file holds, then the optional ones
REQUIRED_TENSORS = ("item_ids", "kg_edge_index", "kg_edge_type")
OPTIONAL_TENSORS = ("collab_edge_index", "collab_edge_weight", "text_edge_index", "image_edge_index",
                    "text_mask", "image_mask")
META = ("num_entities", "kg_num_relations")


def _edge_pair(graph) -> tuple[Tensor | None, Tensor | None]:
    """(edge_index, edge_weight) of a builder result, a [2, E] tensor or a pair (as the encoder accepts them)."""
    if graph is None:
        return None, None
    if isinstance(graph, Tensor):
        return graph.long(), None
    if isinstance(graph, tuple):
        return graph[0].long(), graph[1]
    return graph.edge_index.long(), getattr(graph, "edge_weight", None)


@dataclass
class GraphInputs:
    """What a :class:`~mscrs_core.graphs.fusion.SemanticGraphEncoder` is built from (see the module docstring)."""

    num_entities: int
    item_ids: Tensor
    kg_edge_index: Tensor
    kg_edge_type: Tensor
    kg_num_relations: int
    collab_edge_index: Tensor | None = None
    collab_edge_weight: Tensor | None = None
    text_edge_index: Tensor | None = None
    image_edge_index: Tensor | None = None
    text_mask: Tensor | None = None
    image_mask: Tensor | None = None

    @classmethod
    def from_parts(cls, num_entities: int, item_ids, kg, collab=None, text=None, image=None,
                   text_mask=None, image_mask=None) -> "GraphInputs":
        """From a ``KGEdges`` and optional ``CoMentionGraph`` / ``KNNGraph`` objects (or the tensors and
        ``(edge_index, edge_weight)`` pairs ``SemanticGraphEncoder`` accepts)."""
        collab_ei, collab_w = _edge_pair(collab)
        return cls(
            int(num_entities), torch.as_tensor(item_ids, dtype=torch.long).reshape(-1), kg.edge_index,
            kg.edge_type, int(kg.num_relations), collab_ei, collab_w, _edge_pair(text)[0], _edge_pair(image)[0],
            text_mask if text_mask is not None else getattr(text, "valid_mask", None),
            image_mask if image_mask is not None else getattr(image, "valid_mask", None),
        )

    @classmethod
    def from_dataset_graphs(cls, graphs) -> "GraphInputs":
        """From :class:`~mscrs_core.graphs.assemble.DatasetGraphs`."""
        return cls.from_parts(graphs.dataset.num_entities, graphs.item_ids, graphs.kg, graphs.collab,
                              graphs.text_knn, graphs.image_knn, graphs.text_mask, graphs.image_mask)

    def encoder(self, config):
        """A fresh ``SemanticGraphEncoder`` under ``config``; graphs absent here are switched off."""
        from dataclasses import replace

        from mscrs_core.graphs.fusion import SemanticGraphEncoder
        from mscrs_core.graphs.kg import KGEdges

        kg = KGEdges(self.kg_edge_index, self.kg_edge_type, self.num_entities, self.kg_num_relations, {}, {}, None,
                     [str(i) for i in range(self.kg_num_relations)])
        cfg = replace(config, use_collab=config.use_collab and self.collab_edge_index is not None,
                      use_text=config.use_text and self.text_edge_index is not None,
                      use_image=config.use_image and self.image_edge_index is not None)
        collab = None if not cfg.use_collab else (self.collab_edge_index, self.collab_edge_weight)
        return SemanticGraphEncoder(self.num_entities, kg, self.item_ids, cfg, collab=collab,
                                    text=self.text_edge_index if cfg.use_text else None,
                                    image=self.image_edge_index if cfg.use_image else None,
                                    text_mask=self.text_mask, image_mask=self.image_mask)

    # ------------------------------------------------------------------ file
    def tensors(self) -> dict[str, Tensor]:
        """The tensor fields that are set, on the CPU, each with its own storage (as safetensors needs)."""
        out = {}
        for name in REQUIRED_TENSORS + OPTIONAL_TENSORS:
            value = getattr(self, name)
            if value is not None:
                out[name] = torch.as_tensor(value).detach().cpu().contiguous().clone()
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (a ``.safetensors`` file, atomically)."""
        from safetensors.torch import save

        from mscrs_core.atomic import atomic_write

        meta = {"num_entities": str(int(self.num_entities)), "kg_num_relations": str(int(self.kg_num_relations))}
        data = save(self.tensors(), metadata=meta)
        return atomic_write(path, lambda f: f.write(data), binary=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GraphInputs":
        """Inverse of :meth:`save`; a missing, corrupt or incomplete file raises an error naming it."""
        from mscrs_core.models.pretrained import read_safetensors

        p = Path(path)
        tensors, meta = read_safetensors(p, what="graph file")
        missing = [k for k in REQUIRED_TENSORS if k not in tensors] + [k for k in META if k not in meta]
        unknown = sorted(set(tensors) - set(REQUIRED_TENSORS + OPTIONAL_TENSORS))
        if missing or unknown:
            raise ValueError(f"{p}: not a graph file of this version (missing {missing}, unknown tensors {unknown})")
        try:
            counts = {k: int(meta[k]) for k in META}
        except ValueError:
            raise ValueError(f"{p}: metadata {dict((k, meta[k]) for k in META)} are not integers") from None
        for name in ("kg_edge_index", "collab_edge_index", "text_edge_index", "image_edge_index"):
            t = tensors.get(name)
            if t is not None and (t.dim() != 2 or t.shape[0] != 2):
                raise ValueError(f"{p}: {name} has shape {tuple(t.shape)}, expected (2, E)")
        values = {f.name: tensors.get(f.name) for f in fields(cls) if f.name not in META}
        return cls(num_entities=counts["num_entities"], kg_num_relations=counts["kg_num_relations"], **values)
