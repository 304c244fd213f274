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
# # 1. Data
#
# MSCRS is evaluated on two conversational movie-recommendation corpora, **ReDial** and **INSPIRED**
# (paper, section 5.1.1 and Table 1). This chapter reads the real files, recomputes Table 1 from them,
# shows how long the turns are and how many movies a dialog mentions, measures how much of the text
# our entity linking covers, and states plainly what we do not have.
#
# Everything here is computed by `mscrs_core.data`; the cells only call it.

# %% tags=["parameters", "hide-cell"]
data_root = None  # None: $MSCRS_DATA, else ../shared/data
datasets = ["inspired", "redial"]
check_checksums = True  # check the data against the root's MANIFEST.sha256.tsv, else the shipped manifest

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mscrs_core.data import load_dataset
from mscrs_core.data.manifest import use_data_root
from mscrs_core.data.samples import sample_counts
from mscrs_core.data.stats import beside_paper, dialog_table, linking_coverage, table1, turn_table

sns.set_theme(style="whitegrid")
data_check = use_data_root(data_root, check_checksums, datasets=datasets)
print(data_check)  # one line: the root, the manifest it matches, each dataset's data digest
data = {name: load_dataset(name, data_root, check=check_checksums) for name in datasets}

# %% [markdown]
# ## Where the data comes from
#
# * **INSPIRED** (Hayati et al., 2020) in the processed form of UniCRS, which MSCRS also uses:
#   dialogs as lists of turns with DBpedia entity and movie links, a DBpedia sub-graph with 12 relations
#   (+ self-loop), and the 1,472 recommendable movies. Complete: 801 / 99 / 99 dialogs.
# * **ReDial** (Li et al., 2018) in its raw schema (movie mentions written `@<movieId>`), with the DBpedia
#   sub-graph of KGSF (64,362 entities, relation names never published). **Partial**: the official test split
#   (1,342 dialogs), KGSF's validation split (901) and 1,369 other dialogs from the original training range;
#   the full 10,006-dialog training split is not obtainable on this machine.
#
# ## Table 1, recomputed
#
# The paper's Table 1 beside ours. "Utterances" counts messages as collected (ReDial: before merging
# consecutive messages of one speaker); entities are the size of the graph's vocabulary, items the item set.

# %% tags=["hide-input"]
t1 = {name: table1(ds) for name, ds in data.items()}
beside_paper(t1)

# %% [markdown]
# Per split (turns are utterances after merging consecutive messages of one speaker; "mentioned" counts the
# distinct entities and items that the dialogs of a split actually mention):

# %% tags=["hide-input"]
pd.concat(t1, names=["dataset"])  # one table, the dataset in the index: each row says which data it counts

# %% tags=["hide-cell"]
# The shipped splits must be exactly the files described in the data README (data of your own: its own counts).
expected = {"inspired": (801, 99, 99), "redial": (1369, 901, 1342)} if data_check.shipped else {}
for name, ds in data.items():
    got = tuple(len(ds.dialogs(s)) for s in ("train", "valid", "test"))
    assert got == expected.get(name, got), (name, got)

# %% [markdown]
# **How ours differs from the paper's Table 1.** INSPIRED: the paper counts 1,001 dialogs and 35,811
# utterances; UniCRS's processed files hold 999 dialogs and 21,124 turns (the processing merged and dropped
# some), and its item set has 1,472 movies (every movie linked in the three splits) where the paper reports
# 1,123. The graph has 17,320 entities (the paper's 17,321 counts a padding entity). ReDial: we have 3,612 of
# 11,348 dialogs (train + valid + test), so every count except the graph and the item set is smaller.

# %% [markdown]
# ## Turn length and movies per dialog

# %% tags=["hide-input"]
turns = pd.concat([turn_table(ds) for ds in data.values()], ignore_index=True)
dialogs = pd.concat([dialog_table(ds) for ds in data.values()], ignore_index=True)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
sns.histplot(turns[turns.words <= 80], x="words", hue="dataset", stat="density", common_norm=False,
             binwidth=2, element="step", ax=axes[0])
axes[0].set_title("words per turn (<= 80 shown)")
sns.histplot(dialogs[dialogs["items"] <= 30], x="items", hue="dataset", stat="density", common_norm=False,
             discrete=True, element="step", ax=axes[1])
axes[1].set_title("distinct movies mentioned per dialog")
fig.tight_layout()

# %% tags=["hide-input"]
turns.groupby(["dataset", "role"])["words"].describe().round(1)

# %% [markdown]
# ## Entity linking coverage
#
# INSPIRED's turns come linked (UniCRS's processing). For ReDial, movies are linked exactly through the
# `@movieId` mentions and `movie2entity.json`; other entities (actors, directors, genres, ...) are linked by
# our dictionary linker (`mscrs_core.data.linking`): the graph's entity names, longest n-gram match, single
# words only when capitalised or a genre, no common words. KGSF's own linker was never published, so ReDial's
# entity coverage here is our linker's, not the paper's.

# %% tags=["hide-input"]
cov = pd.concat({name: linking_coverage(ds) for name, ds in data.items()}, names=["dataset"])
cov

# %% tags=["hide-input"]
if "redial" in data:
    rd = data["redial"]
    examples = [t for t in rd.iter_turns("test") if t.entities][:8]
    display(pd.DataFrame({
        "text": [t.text[:110] for t in examples],
        "entities": [", ".join(rd.name_of(e) for e in t.entities) for t in examples],
        "movies": [", ".join(rd.name_of(e) for e in t.items) for t in examples],
    }))
    rep = rd.report
    print(f"movie mentions: {rep['movie_mentions']}, unlinked: {rep.get('movie_mentions_unlinked', 0)}; "
          f"dictionary names: {rep['linker_names']}")

# %% [markdown]
# ## Samples
#
# The training and evaluation samples follow the UniCRS / MSCRS protocol (`mscrs_core.data.samples`):
# pre-training samples are every turn with an entity (one sample per entity of the turn, the turn's text in
# the input); recommendation samples are recommender turns with a movie, one sample per gold movie, the
# context being the preceding turns; conversation samples are recommender turns with their movies replaced
# by a `<movie>` placeholder.

# %% tags=["hide-input"]
pd.concat({name: pd.DataFrame(sample_counts(ds)).T for name, ds in data.items()}, names=["dataset", "split"])

# %% [markdown]
# ## What is missing
#
# * **ReDial's full training split.** Only 1,369 of its 10,006 training dialogs are available here, so every
#   ReDial number in this book is trained on about 14% of the paper's data and is a different experiment.
# * **MSCRS's images.** The authors scraped IMDb stills; they are not public here, and movie posters found
#   elsewhere carry no licence. The image modality is implemented and tested on images the tests create,
#   but the book's runs use the text and collaborative graphs only, and each chapter says so.
# * **MSCRS's GPT-4o descriptions and feature files** live only on the authors' Google Drive; our item
#   descriptions come from ReDial's movie metadata and INSPIRED's knowledge graph (next chapter).
# * **INSPIRED's movie database** (plots) is not part of UniCRS's files.
