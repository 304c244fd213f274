# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Multi-modal semantic graphs
#
# Sections 4.1 and 4.2 of the paper: every item gets a text description (Eq. 2), text features (Eq. 3) and,
# where images exist, image features (Eq. 4-5). Four graphs then enrich the entity embeddings: the
# knowledge graph through one R-GCN layer (Eq. 1), the collaborative co-mention graph (Eq. 6-8), and the
# text and image kNN graphs (Eq. 9-13), fused by Eq. 14-16. This chapter builds all of them on the real
# data and shows what they contain, so a reader can judge them before any model is trained.
#
# Each equation appears as the paper prints it, followed by the library code that computes it, pulled from
# `mscrs_core` when the chapter runs (so it is the code that runs, never a copy); {doc}`/book/equations`
# lists every equation with its code, and the {doc}`/book/api` documents each function shown.

# %% tags=["parameters", "hide-cell"]
data_root = None
check_checksums = True  # check the data against the root's MANIFEST.sha256.tsv, else the shipped manifest
datasets = ["inspired", "redial"]
k = {"inspired": 10, "redial": 20}  # Eq. (10); the paper's best per dataset (Figure 5)
comention_threshold = 1  # Eq. (6): an edge where the co-mention count exceeds this
text_encoder = None  # None: all-MiniLM-L6-v2 (offline); the paper: "roberta-base"
image_root = None  # <image_root>/<item id>/<n>.jpg; none exist here
image_encoder = None  # e.g. "google/vit-large-patch16-224-in21k" (the paper's 1024-d ViT)
showcase = {
    "inspired": ["The Shining (film)", "Get Out", "Toy Story 4", "The Notebook", "Frozen (2013 film)"],
    "redial": ["The Shining (film)", "Toy Story", "The Conjuring", "Frozen (2013 film)", "Halloween (1978 film)"],
}
cache_dir = None  # features cache; None: <project>/cache
max_described_items = 0  # >0 only in smoke runs: encode the first N items' descriptions

# %% tags=["hide-cell"]
import pandas as pd
import seaborn as sns
import torch

from mscrs_core.book import graph_tables as tables
from mscrs_core.book.show import equation_with_code, glue_numbers
from mscrs_core.data import load_dataset
from mscrs_core.data.manifest import use_data_root
from mscrs_core.features.describe_offline import OfflineDescriber
from mscrs_core.features.image_encoder import ImageEncoder
from mscrs_core.features.text_encoder import mean_pool
from mscrs_core.graphs.assemble import GraphSettings, build_dataset_graphs
from mscrs_core.graphs.comention import AUTHORS_THRESHOLD, comention_counts
from mscrs_core.graphs.fusion import SemanticGraphEncoder
from mscrs_core.graphs.kg import KGEncoder
from mscrs_core.graphs.knn import build_knn_graph
from mscrs_core.graphs.lightgcn import LightGCN, make_lightgcn, normalize_adjacency
from mscrs_core.graphs.rgcn import GroupedRGCNConv

sns.set_theme(style="whitegrid")
torch.manual_seed(0)
print(use_data_root(data_root, check_checksums, datasets=datasets))
built = {}
for name in datasets:
    ds = load_dataset(name, data_root)
    settings = GraphSettings(k=k[name], comention_threshold=comention_threshold, text_encoder=text_encoder,
                             image_root=image_root, image_encoder=image_encoder, cache_dir=cache_dir,
                             max_described_items=max_described_items)
    built[name] = build_dataset_graphs(ds, settings, data_root)
    for note in built[name].notes:
        print(f"{name}: {note}")

# %% [markdown]
# ## Item descriptions (Eq. 2)
#
# **Deviation.** The paper asks GPT-4o to describe each movie with the prompt of Figure 3 (theme, emotion,
# cultural significance, plot overview, 30 tokens each). There is no model endpoint here, so the default
# describer (`mscrs_core.features.OfflineDescriber`) writes the same four aspects from the data alone: for
# ReDial the movie metadata (genres, plot, director, writer, stars), for INSPIRED the item's DBpedia facts.
# Emotions are the ones a genre conventionally evokes (a documented table), never a claim about the film.
# Aspects the data say nothing about are left out. `mscrs_core.features.LLMDescriber` runs the paper's
# prompt against any OpenAI-compatible endpoint and caches per item, for readers who have one.

# %% tags=["remove-input"]
equation_with_code(2, OfflineDescriber.describe_one, fold=12,
                   note="Offline, $\\mathbf{F}_{\\text{GPT}}$ is a template over the item's recorded facts:")

# %% tags=["hide-input"]
for name, g in built.items():
    ds = g.dataset
    for title in showcase.get(name, [])[:2]:
        e = tables.find_item(ds, title)
        if e is not None:
            print(f"--- {name}: {ds.name_of(e)}\n{g.descriptions.get(e, '(no description)')}\n")

# %% [markdown]
# ## Item features (Eq. 3-5)
#
# Text features are the mean-pooled token states of the text encoder over each description (Eq. 3).
# **Deviation:** the paper uses RoBERTa-base (768-d); offline we use all-MiniLM-L6-v2 (384-d), set
# `text_encoder="roberta-base"` where it is available. **No image modality:** MSCRS's IMDb stills are not
# available here, so no image features or image graph exist in these runs; the image encoder (Eq. 4-5) is
# implemented and tested on images the tests create, and `image_root`/`image_encoder` switch it on.

# %% tags=["remove-input"]
equation_with_code(3, mean_pool, note="AvgPool is the mean over the description's real (non-padding) tokens:")

# %% tags=["remove-input"]
equation_with_code([4, 5], ImageEncoder.encode_folder, fold=12,
                   note="Every still of an item goes through the vision encoder, and the item keeps the mean:")

# %% tags=["hide-input"]
features = tables.feature_summary(built)
features.round(3)

# %% tags=["remove-cell"]
for name, row in features.iterrows():
    glue_numbers({"items": row["items"], "described": row["with description"],
                  "described_share": row["with description"] / row["items"], "dim": row["dim"],
                  "mean_cos": row["mean pairwise cosine"], "cos_p95": row["cosine p95"]}, prefix=f"{name}_")

# %% [markdown]
# On INSPIRED {glue:text}`inspired_described:,d` of the {glue:text}`inspired_items:,d` items have a
# description ({glue:text}`inspired_described_share:.0%`), on ReDial
# {glue:text}`redial_described:,d` of {glue:text}`redial_items:,d`
# ({glue:text}`redial_described_share:.0%`). Two described items drawn at random have a cosine similarity of
# {glue:text}`inspired_mean_cos:.2f` on average on INSPIRED and {glue:text}`redial_mean_cos:.2f` on ReDial, and
# only one pair in twenty exceeds {glue:text}`inspired_cos_p95:.2f` and {glue:text}`redial_cos_p95:.2f`: the
# descriptions share their four-aspect template, so what tells two films apart is the top of a narrow range,
# which is what the top-k of Eq. (10) keeps.

# %% [markdown]
# ## The graphs
#
# ### Knowledge graph (Eq. 1)
#
# Every stored edge in both directions, the inverse with its own relation (as R-GCN defines it), one
# self-loop per entity in its own relation, relation ids made contiguous. One R-GCN layer over it gives
# $\mathbf{N}^{(1)}$, the table every other graph starts from.

# %% tags=["remove-input"]
equation_with_code(
    1, KGEncoder.forward, GroupedRGCNConv.forward, fold=12,
    note="$\\frac{1}{Z_{e,r}}$ is the mean over $\\mathcal{E}_e^r$ and $\\mathbf{W}^{(l)}$ the root weight of "
         "PyG's `RGCNConv`; `GroupedRGCNConv` computes the same layer per (target, relation) pair:")

# %% [markdown]
# ### Collaborative graph (Eq. 6-8)
#
# Co-mention counts of entities and items within a training dialog (never valid or test); an edge where the
# count exceeds the threshold. The paper does not give the threshold. We use 1 (pairs seen together in at
# least two dialogs): a dialog makes a clique of all its entities, so a single co-mention is mostly chance,
# while the authors' code (counts of at least 5) leaves almost nothing on training splits of this size
# (table below).

# %% tags=["remove-input"]
equation_with_code(6, comention_counts,
                   note="With $B$ the binary dialog-by-entity incidence matrix of the training dialogs, "
                        "$\\mathbf{C} = B^\\top B$ without its diagonal:")

# %% tags=["hide-input"]
thresholds = tables.comention_thresholds(built, (0, 1, 2, AUTHORS_THRESHOLD))
thresholds.pivot(index="threshold", columns="dataset")

# %% tags=["remove-cell"]
for name, g in built.items():
    authors = thresholds[(thresholds["dataset"] == name) & (thresholds["threshold"] == AUTHORS_THRESHOLD)].iloc[0]
    touched = int(torch.unique(g.collab.edge_index).numel()) if g.collab.num_edges else 0
    glue_numbers({"collab_edges": g.collab.num_edges // 2, "collab_entities": touched,
                  "collab_entity_share": touched / g.dataset.num_entities, "entities": g.dataset.num_entities,
                  "authors_edges": authors["edges (undirected)"], "authors_entities": authors["entities with an edge"],
                  "authors_vs_ours": authors["entities with an edge"] / max(touched, 1)}, prefix=f"{name}_")
glue_numbers({"collab_threshold": comention_threshold, "authors_min_count": AUTHORS_THRESHOLD + 1})

# %% [markdown]
# At threshold {glue:text}`collab_threshold:d` the collaborative graph has {glue:text}`inspired_collab_edges:,d`
# edges touching {glue:text}`inspired_collab_entities:,d` of INSPIRED's {glue:text}`inspired_entities:,d`
# entities ({glue:text}`inspired_collab_entity_share:.1%`) and {glue:text}`redial_collab_edges:,d` edges touching
# {glue:text}`redial_collab_entities:,d` of ReDial's {glue:text}`redial_entities:,d`
# ({glue:text}`redial_collab_entity_share:.1%`). The authors' rule (counts of at least
# {glue:text}`authors_min_count:d`) would keep {glue:text}`inspired_authors_edges:,d` and
# {glue:text}`redial_authors_edges:,d` edges, over {glue:text}`inspired_authors_vs_ours:.0%` and
# {glue:text}`redial_authors_vs_ours:.0%` of the entities ours reaches.
#
# LightGCN propagates the counts with the symmetric normalisation of Eq. (7), no transformation and no
# activation, and averages the layers (Eq. 8). Nodes without an edge keep $\mathbf{E}^{(0)}/(L+1)$, which
# `LightGCN.forward` uses to propagate over the nodes that have edges only, with the same values.

# %% tags=["remove-input"]
equation_with_code([7, 8], normalize_adjacency, LightGCN._propagate, LightGCN.average)

# %% [markdown]
# ### Text graph (Eq. 9-13)
#
# Cosine similarity of item text features, negatives set to zero, top-k per item, made undirected (the
# symmetric normalisation of Eq. 11 implies it). The similarities are computed in blocks, so no $N \times N$
# matrix is ever held; ties at the k-th place are settled in float64 by item index.

# %% tags=["remove-input"]
equation_with_code([9, 10], build_knn_graph, fold=12)

# %% [markdown]
# The item graphs are propagated by the same `LightGCN` as the collaborative graph (Eq. 11-13), started from
# the item rows of $\mathbf{N}^{(1)}$; `make_lightgcn` configures it as the paper or as the authors' code does.

# %% tags=["remove-input"]
equation_with_code([11, 12, 13], make_lightgcn)

# %% [markdown]
# ### Sizes and degrees

# %% tags=["hide-input"]
summary = pd.DataFrame([g.summary() for g in built.values()]).set_index("dataset")
summary.T

# %% tags=["remove-cell"]
for name, row in summary.iterrows():
    glue_numbers({"kg_edges": row["kg edges (typed, both directions + self-loops)"],
                  "kg_relations": row["kg relations"], "text_edges": row["text kNN edges"], "k": row["k"],
                  "text_degree": row["text kNN edges"] / max(row["items with description"], 1)}, prefix=f"{name}_")

# %% [markdown]
# The knowledge graph has {glue:text}`inspired_kg_edges:,d` typed edges in
# {glue:text}`inspired_kg_relations:d` relations on INSPIRED and {glue:text}`redial_kg_edges:,d` in
# {glue:text}`redial_kg_relations:d` on ReDial. The text graph keeps the top {glue:text}`inspired_k:d`
# (INSPIRED) and {glue:text}`redial_k:d` (ReDial) neighbours per item; made undirected, a described item has
# {glue:text}`inspired_text_degree:.1f` and {glue:text}`redial_text_degree:.1f` neighbours on average. The
# degree distributions of the three graphs (nodes with at least one edge):

# %% tags=["hide-input"]
fig = tables.plot_degree_distributions(built)

# %% [markdown]
# ## Nearest neighbours a reader can judge
#
# The text neighbours of a few well-known films, with their cosine similarity, and the entities most often
# co-mentioned with the first two in training dialogs, with their counts. Good neighbours share director,
# cast or genre; on INSPIRED the descriptions come from DBpedia facts only (no plots), so neighbours are
# mostly by crew and cast.

# %% tags=["hide-input"]
with pd.option_context("display.max_colwidth", None):
    display(tables.neighbour_table(built, showcase))

# %% [markdown]
# ## Fusion (Eq. 14-16) and the two variants
#
# `SemanticGraphEncoder` computes N^(1) with one R-GCN layer, propagates it on the collaborative graph
# (LightGCN, 3 layers, Eq. 7-8), averages with N^(1) (Eq. 15), propagates N^(1) of the items on the text
# (and image) graph (Eq. 11-13), mixes text and image with lambda (Eq. 14) and adds the result to the item
# rows (Eq. 16). An item with one modality takes it with weight 1 (the weights `w_text`, `w_image` are set
# once, when the encoder is built).

# %% tags=["remove-input"]
equation_with_code([14, 15, 16], SemanticGraphEncoder._compute)

# %% [markdown]
# Where the authors' code differs, the paper is the default and the code's behaviour is the named variant
# `variant="authors_code"`:
#
# | step | paper (default) | authors' code (`authors_code`) |
# |---|---|---|
# | R-GCN (Eq. 1) | sigma(W_r + root), inverse edges own relation | no activation, residual `rgcn(x) + x`, inverse edges share the relation |
# | LightGCN normalisation (Eq. 7, 11) | D^-1/2 A D^-1/2 of the graph | self-loops added before normalising, unweighted |
# | layer averaging (Eq. 8, 12-13) | layers 0..3 | collaborative 0..3; text/image only layers 1..2 |
# | kNN graph | undirected (Eq. 11's symmetric normalisation) | directed top-k |
# | Eq. 15 | mean of E_c and N^(1) | E_c alone |
# | ReDial items | text/image result added (Eq. 16) | never added (the line is commented out) |
# | co-mention threshold | 1 here (paper silent) | counts >= 5 |

# %% tags=["hide-input"]
variants = tables.encoder_variants(built, dim=128)
with pd.option_context("display.max_colwidth", None):
    display(variants)

# %% tags=["remove-cell"]
for (name, variant), row in variants.iterrows():
    if variant == "paper":
        table = built[name].dataset.num_entities * row["E_final"][1]
        glue_numbers({"params": row["trainable parameters"], "dim": row["E_final"][1],
                      "table_share": table / row["trainable parameters"]}, prefix=f"{name}_encoder_")

# %% [markdown]
# The ablation switches of Figure 4 (a, b) build the same encoder with graphs left out:

# %% tags=["hide-input"]
switches = tables.ablation_switches(built)
assert all("image" not in g.encoder().describe()["active_graphs"] for g in built.values()), "no images exist here"
switches

# %% [markdown]
# ## What this chapter finds
#
# * Text features exist for {glue:text}`inspired_described_share:.0%` of INSPIRED's items and
#   {glue:text}`redial_described_share:.0%` of ReDial's; no item has an image, so Eq. (4)-(5), (13) and the
#   image half of Eq. (14) are implemented but idle, and the multi-modal term is the text graph alone.
# * The collaborative graph is small: at threshold {glue:text}`collab_threshold:d` it reaches
#   {glue:text}`inspired_collab_entity_share:.1%` of INSPIRED's entities and
#   {glue:text}`redial_collab_entity_share:.1%` of ReDial's. The authors' threshold would leave
#   {glue:text}`inspired_authors_edges:,d` and {glue:text}`redial_authors_edges:,d` edges: on training splits of
#   this size the threshold decides how much of the entity set the graph reaches.
# * The encoder has {glue:text}`inspired_encoder_params:,d` trainable parameters on INSPIRED and
#   {glue:text}`redial_encoder_params:,d` on ReDial at $d = $ {glue:text}`inspired_encoder_dim:d`; the entity
#   table is {glue:text}`inspired_encoder_table_share:.0%` and {glue:text}`redial_encoder_table_share:.0%` of
#   them, the rest is the R-GCN layer: LightGCN adds no parameter.
# * On ReDial the authors' code never adds the text graph's result to the items (the variants table), so
#   the two variants differ there by a whole graph, not by details.
