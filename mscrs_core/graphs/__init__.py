"""Semantic graphs of MSCRS section 4.2: KG (Eq. 1), co-mention (Eq. 6-8), text/image kNN (Eq. 9-13), fusion (Eq. 14-16)."""
from mscrs_core.graphs.comention import (
    AUTHORS_THRESHOLD,
    DEFAULT_THRESHOLD,
    CoMentionGraph,
    build_comention_graph,
    comention_counts,
    comention_graph_from_dataset,
    dialog_entity_sets,
)
from mscrs_core.graphs.fusion import GraphConfig, SemanticGraphEncoder
from mscrs_core.graphs.kg import KGEdges, KGEncoder, build_kg_edges
from mscrs_core.graphs.knn import KNNGraph, build_knn_graph
from mscrs_core.graphs.lightgcn import LightGCN, make_lightgcn, normalize_adjacency

__all__ = [
    "AUTHORS_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "CoMentionGraph",
    "GraphConfig",
    "KGEdges",
    "KGEncoder",
    "KNNGraph",
    "LightGCN",
    "SemanticGraphEncoder",
    "build_comention_graph",
    "build_kg_edges",
    "build_knn_graph",
    "comention_counts",
    "comention_graph_from_dataset",
    "dialog_entity_sets",
    "make_lightgcn",
    "normalize_adjacency",
]
