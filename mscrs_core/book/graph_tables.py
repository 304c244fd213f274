"""Tables and figures of chapter 2 (the semantic graphs), so the chapter shows results rather than indexing code.

Every function takes ``built``: ``{dataset name: DatasetGraphs}`` as
:func:`~mscrs_core.graphs.assemble.build_dataset_graphs` returns them (one per dataset), and computes exactly what
the chapter's cells used to compute inline (same sampling seeds, same orderings).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..graphs.assemble import DatasetGraphs, knn_neighbours
from ..graphs.comention import build_comention_graph, dialog_entity_sets
from ..graphs.fusion import GraphConfig

Built = Mapping[str, DatasetGraphs]


def find_item(dataset, title: str) -> int | None:
    """Entity id of the item named ``title`` (the first one), or None."""
    hits = [e for e in dataset.item_ids if dataset.name_of(e) == title]
    return hits[0] if hits else None


def feature_summary(built: Built, sample: int = 500, seed: int = 0) -> pd.DataFrame:
    """Per dataset: items, described items, feature width, mean norm, and the cosine similarity of ``sample``
    described items drawn with ``seed`` (mean and 95th percentile over distinct pairs)."""
    rows = []
    for name, g in built.items():
        x = g.text_features[g.text_mask]
        xn = torch.nn.functional.normalize(x, dim=1)
        picked = xn[torch.randperm(len(xn), generator=torch.Generator().manual_seed(seed))[:sample]]
        sims = (picked @ picked.T)[~torch.eye(len(picked), dtype=torch.bool)]
        rows.append({"dataset": name, "items": g.dataset.num_items, "with description": int(g.text_mask.sum()),
                     "dim": x.shape[1], "mean norm": float(x.norm(dim=1).mean()),
                     "mean pairwise cosine": float(sims.mean()), "cosine p95": float(sims.quantile(0.95)),
                     "with images": 0 if g.image_mask is None else int(g.image_mask.sum())})
    return pd.DataFrame(rows).set_index("dataset")


def comention_thresholds(built: Built, thresholds: Sequence[int] = (0, 1, 2, 4)) -> pd.DataFrame:
    """The co-mention graph of each dataset's training dialogs at each threshold (Eq. 6): undirected edges and
    the entities that have at least one. Long format: one row per (dataset, threshold)."""
    rows = []
    for name, g in built.items():
        sets = dialog_entity_sets(g.dataset, "train")
        for t in thresholds:
            cg = build_comention_graph(sets, g.dataset.num_entities, threshold=t)
            touched = int(torch.unique(cg.edge_index).numel()) if cg.num_edges else 0
            rows.append({"dataset": name, "threshold": t, "edges (undirected)": cg.num_edges // 2,
                         "entities with an edge": touched})
    return pd.DataFrame(rows)


def degrees(edge_index: torch.Tensor, n: int) -> np.ndarray:
    """Out-degree of each of ``n`` nodes."""
    return np.bincount(edge_index[0].numpy(), minlength=n)


def plot_degree_distributions(built: Built):
    """Log-log degree distributions (nodes with an edge) of the knowledge, collaborative and text kNN graphs."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(built), figsize=(6 * len(built), 3.8), squeeze=False)
    for ax, (name, g) in zip(axes[0], built.items()):
        for label, ei, n in (("knowledge graph", g.kg.edge_index, g.dataset.num_entities),
                             ("collaborative", g.collab.edge_index, g.dataset.num_entities),
                             ("text kNN", g.text_knn.edge_index, g.dataset.num_items)):
            d = degrees(ei, n)
            d = d[d > 0]
            vals, counts = np.unique(d, return_counts=True)
            ax.loglog(vals, counts / counts.sum(), marker=".", linestyle="none", label=label)
        ax.set_title(f"{name}: degree distribution (nodes with an edge)")
        ax.set_xlabel("degree")
        ax.set_ylabel("share of nodes")
        ax.legend()
    fig.tight_layout()
    return fig


def comention_neighbours(g: DatasetGraphs, entity: int, top: int = 8) -> list[tuple[str, int]]:
    """The ``top`` entities most often co-mentioned with ``entity`` in training dialogs: (name, count)."""
    ei, w = g.collab.edge_index, g.collab.edge_weight
    sel = ei[0] == entity
    order = torch.argsort(w[sel], descending=True)[:top]
    return [(g.dataset.name_of(int(j)), int(c)) for j, c in zip(ei[1][sel][order], w[sel][order])]


def _joined(pairs: Sequence[tuple[str, object]]) -> str:
    return "; ".join(f"{t} ({s})" for t, s in pairs)


def neighbour_table(built: Built, showcase: Mapping[str, Sequence[str]], *, text_top: int = 6,
                    comention_top: int = 8, comention_films: int = 2) -> pd.DataFrame:
    """For each showcase film: its nearest items in the text kNN graph (with cosine) and, for the first
    ``comention_films`` of each dataset, the entities most co-mentioned with it (with counts)."""
    rows = []
    for name, g in built.items():
        ds = g.dataset
        for i, title in enumerate(showcase.get(name, [])):
            e = find_item(ds, title)
            if e is None:
                rows.append({"dataset": name, "film": title, "text neighbours (cosine)": "(not an item)",
                             "co-mentioned with (count)": ""})
                continue
            co = _joined(comention_neighbours(g, e, comention_top)) if i < comention_films else ""
            rows.append({"dataset": name, "film": ds.name_of(e),
                         "text neighbours (cosine)": _joined(knn_neighbours(g, e, top=text_top)),
                         "co-mentioned with (count)": co})
    return pd.DataFrame(rows).set_index(["dataset", "film"])


def encoder_variants(built: Built, dim: int = 128, seed: int = 0) -> pd.DataFrame:
    """The semantic graph encoder of each dataset under the paper's and the authors' variant: graphs used, item
    modalities, the shape of E_final and the trainable parameters (each built after ``torch.manual_seed(seed)``)."""
    rows = []
    for name, g in built.items():
        for variant in ("paper", "authors_code"):
            cfg = GraphConfig(dim=dim, variant=variant, authors_dataset=name)
            torch.manual_seed(seed)
            enc = g.encoder(cfg)
            with torch.no_grad():
                e = enc()
            info = enc.describe()
            rows.append({"dataset": name, "variant": variant, "graphs used": ", ".join(info["active_graphs"]),
                         "item modalities": ", ".join(info["modalities"]) or "none",
                         "E_final": tuple(e.shape), "trainable parameters": sum(p.numel() for p in enc.parameters()),
                         "notes": "; ".join(info["notes"])})
    return pd.DataFrame(rows).set_index(["dataset", "variant"])


#: the ablation switches of Figure 4 (a, b) on the graph encoder
SWITCHES = ({}, {"use_collab": False}, {"use_text": False}, {"use_collab": False, "use_text": False})


def ablation_switches(built: Built, dim: int = 32) -> pd.DataFrame:
    """Which graphs the encoder uses under each ablation switch of Figure 4 (a, b)."""
    rows = []
    for name, g in built.items():
        for sw in SWITCHES:
            enc = g.encoder(GraphConfig(dim=dim, **sw))
            rows.append({"dataset": name, "switches": ", ".join(f"{k}={v}" for k, v in sw.items()) or "all graphs",
                         "graphs used": ", ".join(enc.describe()["active_graphs"])})
    return pd.DataFrame(rows).set_index(["dataset", "switches"])
