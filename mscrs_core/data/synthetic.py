"""A small synthetic CRS dataset with planted structure, for unit tests only.

``n_clusters`` "genres", each with attribute entities (actors, directors) and
items. The knowledge graph links every item to its genre and to two of its
cluster's attributes. In every dialog the seeker names attributes of one
cluster and a liked item of it; the recommender then recommends another item of
the same cluster. A model that reads the context entities can therefore beat
popularity, and the cluster of the gold item is known for every sample.
"""
from __future__ import annotations

import numpy as np

from .schema import RECOMMENDER, SEEKER, CRSDataset, Dialog, KnowledgeGraph, Turn


def make_synthetic(n_clusters: int = 4, items_per_cluster: int = 6, attrs_per_cluster: int = 4,
                   dialogs: tuple[int, int, int] = (120, 30, 30), seed: int = 0) -> CRSDataset:
    rng = np.random.default_rng(seed)
    names: dict[int, str] = {}
    genre, attrs, items = [], [], []
    eid = 0
    for c in range(n_clusters):
        genre.append(eid); names[eid] = f"genre{c}"; eid += 1
        attrs.append(list(range(eid, eid + attrs_per_cluster)))
        for j, a in enumerate(attrs[-1]):
            names[a] = f"person{c}_{j}"
        eid += attrs_per_cluster
        items.append(list(range(eid, eid + items_per_cluster)))
        for j, it in enumerate(items[-1]):
            names[it] = f"Movie {c}-{j}"
        eid += items_per_cluster
    K = eid
    h, r, t = [], [], []
    for c in range(n_clusters):
        for it in items[c]:
            h.append(it); r.append(0); t.append(genre[c])
            for a in rng.choice(attrs[c], size=2, replace=False):
                h.append(it); r.append(1); t.append(int(a))
    kg = KnowledgeGraph(K, np.array(h), np.array(r), np.array(t), ["genre", "starring"])

    def dialog(k: int, split: str) -> Dialog:
        c = int(rng.integers(n_clusters))
        a = [int(x) for x in rng.choice(attrs[c], size=2, replace=False)]
        liked, rec = (int(x) for x in rng.choice(items[c], size=2, replace=False))
        turns = [
            Turn(RECOMMENDER, "hi what do you like to watch?"),
            Turn(SEEKER, f"I like {names[genre[c]]} with {names[a[0]]} and {names[a[1]]}",
                 entities=(genre[c], a[0], a[1])),
            Turn(RECOMMENDER, "any movie you liked recently?"),
            Turn(SEEKER, f"I loved {names[liked]}", items=(liked,)),
            Turn(RECOMMENDER, f"then you should watch {names[rec]}", items=(rec,)),
            Turn(SEEKER, "thanks, I will"),
        ]
        return Dialog(f"{split}-{k}", turns)

    splits = {s: [dialog(k, s) for k in range(n)] for s, n in zip(("train", "valid", "test"), dialogs)}
    item_ids = sorted(i for c in items for i in c)
    entity2id = {f"<synthetic:{names[i]}>": i for i in range(K)}
    ds = CRSDataset("synthetic", splits, entity2id, item_ids, kg, names)
    ds.report["cluster_of"] = {i: c for c in range(n_clusters) for i in [genre[c], *attrs[c], *items[c]]}
    return ds
