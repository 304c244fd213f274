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
# # 6. Conversation (Table 3, Figure 4c-d)
#
# Section 4.4: the dialog's entities are enhanced by their first-order neighbours in every semantic graph
# (Eq. 25); contexts that share enhanced entities are linked into a correlation semantic mapping over the
# TRAINING contexts only, propagated by an MLP and averaged (Eq. 26) and fused with the entity prompt (Eq. 27);
# the prompt [T_tilde; O_cov; s] (Eq. 28) conditions a frozen language model trained with the token loss of
# Eq. 29 on recommender turns, movies replaced by `<movie>`. Each configuration below is one run of
# `mscrs_core.experiments.conversation.run_conversation` (finished runs are loaded, so a build resumes).
#
# **Deviations.** The backbone is the project's miniature DialoGPT (chapter 3), not DialoGPT-small; the
# context embeddings E_s^(0) come from all-MiniLM-L6-v2, not RoBERTa; training uses a subset of the
# training turns for one epoch and the metrics a subset of the test turns (`max_train_samples`,
# `max_eval_samples`); no image graph exists. No human evaluation (Table 4) is possible here: the examples at
# the end put the responses side by side instead.

# %% tags=["parameters"]
dataset = "inspired"
seed = 0
text_embedder = "minilm"  # "hashing:<dim>" only for smoke runs
backbone_epochs = 2.0
epochs = 1
max_train_samples = 2000
max_eval_samples = 200
max_new_tokens = 30
entity_dim = 64
run_ablations = True
results_dir = None
data_root = None

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mscrs_core.book.paper_tables import paper_table3
from mscrs_core.experiments.conversation import ConvRunConfig, run_conversation

sns.set_theme(style="whitegrid")
common = dict(dataset=dataset, seed=seed, text_embedder=text_embedder, backbone_epochs=backbone_epochs,
              epochs=epochs, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
              max_new_tokens=max_new_tokens, entity_dim=entity_dim)
configs = {
    "MSCRS": ConvRunConfig(**common),
    "w/o graphs (UniCRS-like)": ConvRunConfig(**common, use_graphs=False, use_enhanced_entities=False,
                                             use_context_mapping=False),
    "plain backbone": ConvRunConfig(**common, model="backbone"),
}
if run_ablations:
    configs.update({
        "w/o -s": ConvRunConfig(**common, use_enhanced_entities=False),
        "w/o -c": ConvRunConfig(**common, use_context_mapping=False),
        "w/o -all": ConvRunConfig(**common, use_enhanced_entities=False, use_context_mapping=False),
    })
results = {}
for name, cfg in configs.items():
    results[name] = run_conversation(cfg, results_dir, data_root)
    print(f"{name}: {'loaded' if results[name]['reused'] else 'trained'} ({results[name]['seconds']} s)")

# %% [markdown]
# ## Table 3, ours beside the paper's
#
# BLEU-n is UniCRS's sentence-level BLEU with one-hot weights; ROUGE from `rouge-score`; `dist@n` is the
# UniCRS/DCRS convention (distinct n-grams over all responses divided by the number of responses, the
# paper's values above 1) and `dist_ratio@n` the 0-1 ratio of distinct to total n-grams, both word-level.

# %%
cols = ["bleu@2", "bleu@3", "rouge2", "rougeL", "dist@2", "dist@3", "dist@4", "dist_ratio@2", "sacrebleu"]
ours = pd.DataFrame({n: {c: r["test"].get(c) for c in cols} for n, r in results.items()}).T
ours.insert(0, "source", f"ours ({dataset}, {results['MSCRS']['samples']['test']} test turns)")
paper = paper_table3().loc[dataset].reindex(["MSCRS", "UniCRS", "DialoGPT"])
paper.insert(0, "source", "paper (full data, DialoGPT-small)")
pd.concat([ours, paper]).round(4)

# %% [markdown]
# ## Figure 4 (c, d): BLEU-2 without enhanced entities (-s), without the correlation mapping (-c), without both

# %%
if run_ablations:
    order = ["MSCRS", "w/o -s", "w/o -c", "w/o -all"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.barplot(x=order, y=[results[n]["test"]["bleu@2"] for n in order], ax=ax)
    ax.set_ylabel("BLEU-2")
    ax.set_title(f"{dataset}: BLEU-2 of the conversation ablations")
    fig.tight_layout()

# %% [markdown]
# ## The same contexts, side by side
#
# The gold response and the responses of MSCRS, the variant without graphs and the plain backbone, for the
# first test contexts (`<movie>` stands where a movie would be filled in from the recommender's ranking).

# %%
rows = []
for i in range(min(6, len(results["MSCRS"]["examples"]))):
    ex = results["MSCRS"]["examples"][i]
    rows.append({"last turn": ex["context"][-1][1][:120] if ex["context"] else "",
                 "gold": ex["gold"][:120],
                 **{n: results[n]["examples"][i]["generated"][:120] for n in
                    ("MSCRS", "w/o graphs (UniCRS-like)", "plain backbone")}})
pd.set_option("display.max_colwidth", 120)
pd.DataFrame(rows)
