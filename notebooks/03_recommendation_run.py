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
# # 3. Anatomy of one recommendation run
#
# Section 4.3 of the paper, run once end to end: the fused entity table of chapter 2 feeds the prompt
# encoder (the bilinear map of Eq. 17 and the contrastive fusion of Eq. 18), the prompt
# [V_hat; O_rec; s] goes into a frozen causal language model as input embeddings (Eq. 19), and the last
# token's state (Eq. 20) scores entities (pre-training, Eq. 21-22) and then items (Eq. 23-24).
#
# This chapter is also the unit of every experiment in the next two: each row of Table 2 and each point of
# Figures 4 and 5 is this notebook executed by papermill with other parameters, its result written to
# `<results_dir>/<run name>/result.json` (a finished run is loaded, not re-trained).

# %% tags=["parameters"]
dataset = "inspired"
model = "mscrs"  # "mscrs" | "unicrs" (no semantic graph) | "popularity" | "text_classifier" | "graph_scorer"
seed = 0
k = 10
lambda_ = 0.5
use_collab = True
use_text = True
use_image = True
graph_variant = "paper"  # "paper" | "authors_code"
comention_threshold = 1
entity_dim = 64
backbone = "smollm2-135m"  # or "tiny-dialogpt", "microsoft/DialoGPT-small", a local folder
backbone_epochs = 2.0  # pre-training epochs of the miniature DialoGPT (that backbone only)
backbone_dtype = "bfloat16"  # "float32" | "bfloat16" (frozen backbone only)
attn_implementation = "eager"
n_task_prompt = 10
n_entity_prompt = 4
fuse_weight = 0.1
fuse_variant = "paper"
rec_scope = "items"
prompt_position = "suffix"  # "prefix" (Eq. 19) | "suffix" (context states computed once)
head = "cosine"  # "dot" (Eq. 23) | "cosine"
item_bias = True
entity_skip = True
zero_init_projection = True
lm_scale = 0.1  # weight of the LM term beside the entity skip path
max_length = 64
pretrain_epochs = 1
pretrain_max_samples = 1000
warm_epochs = 5  # Eq. (24) with the language-model path closed first (cheap: no backbone pass)
warm_lr = 1e-2
warm_graph_lr = 1e-3
rec_epochs = 3
batch_size = 64
lr = 1e-3
graph_lr = 1e-3  # the graph encoder's learning rate (R-GCN, LightGCN)
entity_lr = 1e-5  # the entity table's learning rate
head_lr = 1e-3  # the head's logit scale and item bias
weight_decay = 0.0
max_train_samples = 0
max_eval_samples = 0
text_max_length = 128
results_dir = None  # None: build/runs
data_root = None
sweep_point = False  # True when a sweep (chapters 4, 5) executes this run: skip the reference runs below
# "Prefix against suffix": both prompt orders on one equal budget (same samples, epochs and steps)
position_budget = {"max_train_samples": 512, "pretrain_epochs": 0, "warm_epochs": 0, "rec_epochs": 2}

# %%
import dataclasses

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mscrs_core.experiments.recommendation import RecRunConfig, run_recommendation

sns.set_theme(style="whitegrid")
cfg = RecRunConfig.from_namespace(globals())
result = run_recommendation(cfg, results_dir, data_root)
print(cfg.run_line(result))

# %% [markdown]
# ## What ran
#
# **Deviations from the paper in this run** (each is a parameter above; the `paper` profile sets the paper's
# choice where one exists):
#
# * **Backbone.** A frozen SmolLM2-135M-Instruct (`backbone="smollm2-135m"`, shipped offline as GGUF,
#   converted once to safetensors, run in bfloat16 with eager attention) instead of DialoGPT-small; the smoke
#   profile uses the project's miniature DialoGPT. Any causal LM loads by name (`microsoft/DialoGPT-small`
#   where a user has it).
# * **Prompt order** (`prompt_position="suffix"`). Eq. (19) feeds [V_hat; O_rec; s]; here the prompt comes
#   after the context, [s; V_hat; O_rec], and Eq. (20) pools the last prompt position. The context's
#   key/value states then do not depend on any trained parameter, so they are computed once without gradient
#   and reused by every step (`mscrs_core.models.context_states`; a test checks that loss and gradients equal
#   one uncached pass). A causal LM sees the same tokens either way; only where the prompt sits moves. The
#   section "Prefix against suffix" below runs both orders on the same budget. `prompt_position="prefix"`
#   is the paper's order.
# * **Scoring head** (`head="cosine"`, `item_bias=True`). Eq. (23) scores items by a dot product with the
#   entity rows; here by a learned scale times the cosine, plus a per-item bias initialised to log popularity:
#   popularity no longer has to be written into the item rows, and the logits can sharpen without the rows
#   growing.
# * **A path around the language model** (`entity_skip=True`, `zero_init_projection=True`). r_hat of Eq. (20)
#   gets the mean of the context's entity rows added, and the projection of the LM state starts at zero: the
#   untrained model is exactly "the graphs alone" plus the popularity prior (tested), and training adds what
#   the prompt and the language model contribute.
# * **A warm-up without the language model** (`warm_epochs`, `warm_lr`, `warm_graph_lr`). Before the prompt
#   training of Eq. (24), the same loss trains with the language-model path closed (the skip path alone,
#   which is the untrained model's whole output): the graph side, the scale and the item bias settle in a few
#   seconds per epoch instead of a few minutes. Validation then chooses between the best warm-up epoch and the
#   best epoch with the language model; the result records which (`selected_stage`), and the chapter shows it.
# * **The entity table's learning rate** (`entity_lr`). The table starts at the authors' Xavier scale (row norm
#   about 0.09 at d = 64) and Adam moves every row that gets a gradient by about its learning rate per
#   coordinate per step: at the prompt's 1e-3 a few dozen steps erase what the graphs put there. The table
#   trains at 1e-5, the graph layers at `graph_lr`.
# * **Sizes.** Pre-training and recommendation training run for fewer epochs than UniCRS's recipe
#   (`pretrain_epochs`, `rec_epochs`, `pretrain_max_samples`); the context is its newest `max_length` = 64
#   tokens (UniCRS: 200); the entity dimension is 64. The text encoder of the graphs is all-MiniLM-L6-v2, not
#   RoBERTa; there is no image modality (no images exist here).
# * **Selection.** The recommendation epoch with the best validation Recall@10 is kept (ties in the ranking
#   count at their expected value, never in the model's favour); the test split is scored once.

# %%
pd.Series({**dataclasses.asdict(cfg), **result["samples"]}, name="value").to_frame()

# %%
if "graphs" in result:
    g = result["graphs"]
    print("graphs used:", ", ".join(g["active_graphs"]), "| item modalities:", ", ".join(g["modalities"]) or "none")
    print("edges:", g["num_edges"], "| trainable parameters:", result.get("trainable_parameters", 0))
    print("backbone:", result.get("backbone", "none (no language model in this run)"))
if "selected_stage" in result:
    print("weights kept (chosen on validation Recall@10):", result["selected_stage"],
          "| context states:", result.get("context_state_seconds", 0.0), "s")

# %% [markdown]
# ## Training
#
# Validation Recall@10 after each epoch (entities during pre-training, items during recommendation
# training); the recommendation epoch with the best validation Recall@10 is kept. The test split is scored
# once, with the kept weights.

# %%
hist = pd.DataFrame(result["history"])
if not hist.empty and "stage" not in hist:
    hist["stage"] = "train"  # the baselines train in one stage
if not hist.empty:
    display(hist[[c for c in ("stage", "epoch", "train_loss", "train_ce", "train_fuse", "valid_loss",
                              "valid_recall@10") if c in hist]].round(4))
if not hist.empty and {"epoch", "valid_recall@10"} <= set(hist):  # the zero-shot reference has a grid, no epochs
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    for stage, h in hist.groupby("stage", sort=False):
        if "train_loss" in h:
            ax[0].plot(h["epoch"], h["train_loss"], marker="o", label=f"{stage} train")
        if "valid_loss" in h:
            ax[0].plot(h["epoch"], h["valid_loss"], marker="x", linestyle="--", label=f"{stage} valid")
        ax[1].plot(h["epoch"], h["valid_recall@10"], marker="o", label=stage)
    ax[0].set_title("loss")
    ax[1].set_title("validation Recall@10")
    for a in ax:
        a.set_xlabel("epoch")
        a.legend()
    fig.tight_layout()

# %% [markdown]
# ## Test metrics
#
# The UniCRS / MSCRS protocol: each gold item of a recommender turn is its own sample, ranked against the
# whole item set. `excl/` removes the items already mentioned earlier in the dialog from the ranking
# (a common variant, reported beside, never instead).

# %%
pd.DataFrame({"test": result["test"], "valid": result["valid"]}).round(4)

# %% [markdown]
# ## Against popularity, and against the graphs alone
#
# Two references for the same test samples, each one cheap run in the same harness:
#
# * **popularity**, the floor any recommender has to clear: items ranked by how often they are recommended
#   in the training split;
# * **the graphs alone** (`graph_scorer`, not a method of the paper): no training and no language model,
#   the untrained semantic graph encoder of this run (random entity table, same graphs, same seed) scoring
#   each item by the cosine between its row and the mean row of the context's entities. Random rows are
#   nearly orthogonal, so two rows are similar only where the graphs connect the entities: through the
#   co-mention graph this is a random-projection collaborative filter. It is shown with this run's graphs
#   and without the text graph, whose item-to-item term (Eq. 16) is added on the item rows only.

# %%
if cfg.model not in ("popularity", "graph_scorer") and not sweep_point:
    refs = {
        "popularity": dataclasses.replace(cfg, model="popularity"),
        "graphs alone": dataclasses.replace(cfg, model="graph_scorer"),
        "graphs alone, no text graph": dataclasses.replace(cfg, model="graph_scorer", use_text=False),
    }
    if cfg.model == "unicrs":  # UniCRS has no semantic graph: its graph scorer is the KG alone
        refs = {"popularity": refs["popularity"],
                "graphs alone (KG)": dataclasses.replace(cfg, model="graph_scorer", use_collab=False,
                                                         use_text=False, use_image=False)}
    cols = {cfg.model: result["test"]}
    cols.update({name: run_recommendation(c, results_dir, data_root)["test"] for name, c in refs.items()})
    comparison = pd.DataFrame(cols).loc[["recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10"]].round(4)
    comparison[f"{cfg.model} - popularity"] = (comparison[cfg.model] - comparison["popularity"]).round(4)
    display(comparison)

# %% [markdown]
# **Reading this comparison.** The cell below states it in words from the numbers above: the run against
# popularity and against the graphs alone, and on the slices of chapter 4 (gold already mentioned in the
# dialog / new item). A recommender that listens moves its top-1 away from popularity's and beats popularity
# on new items, not only on the items the dialog already named.

# %%
if cfg.model not in ("popularity", "graph_scorer") and not sweep_point:
    diff = comparison.loc["recall@10", cfg.model] - comparison.loc["recall@10", "popularity"]
    sl = result.get("test_slices", {})
    new_pop = run_recommendation(refs["popularity"], results_dir, data_root).get("test_slices", {})
    lines = [f"Test Recall@10 of {cfg.model}: {comparison.loc['recall@10', cfg.model]:.3f}, "
             f"{'above' if diff > 0 else 'not above'} popularity's {comparison.loc['recall@10', 'popularity']:.3f} "
             f"({diff:+.3f})."]
    if sl:
        lines.append(f"On new items (gold not mentioned before, {int(sl['new']['count'])} samples): "
                     f"{sl['new']['recall@10']:.3f} against popularity's {new_pop['new']['recall@10']:.3f}; on "
                     f"items already mentioned ({int(sl['mentioned']['count'])} samples): "
                     f"{sl['mentioned']['recall@10']:.3f} against {new_pop['mentioned']['recall@10']:.3f}.")
        lines.append(f"Its top-1 item is popularity's top-1 on {sl['top1_is_popularity_top1']:.0%} of the test "
                     f"samples.")
    if "selected_stage" in result:
        lines.append(f"Validation kept the weights of the stage '{result['selected_stage']}'"
                     + (": the language-model stage did not beat the warm-up on validation, so this run's "
                        "scores do not use the language model." if result["selected_stage"] != "rec" else "."))
    print("\n".join(lines))

# %% [markdown]
# ## Prefix against suffix
#
# The paper's order puts the prompt before the context (Eq. 19): every step runs the language model over the
# whole context with autograd. The suffix order runs it over the context once, without gradient, and every
# step over the prompt's positions only. Both orders below train on the same budget (`position_budget`: the
# same training samples, epochs and steps; everything else as this run) and are scored on the same test split.
# The budget has no warm-up, so that both runs train the language-model path they are meant to compare (with a
# warm-up, validation may keep the warm-up's weights for both, and the comparison would compare nothing).

# %%
if cfg.model in ("mscrs", "unicrs") and not sweep_point:
    pos_runs = {p: run_recommendation(dataclasses.replace(cfg, prompt_position=p, **position_budget),
                                      results_dir, data_root) for p in ("prefix", "suffix")}
    positions = pd.DataFrame({p: {**{m: r["test"][m] for m in ("recall@1", "recall@10", "recall@50")},
                                  "valid recall@10": r["valid"]["recall@10"],
                                  "compute (s)": r["seconds"],
                                  "context states (s)": r.get("context_state_seconds", 0.0)}
                              for p, r in pos_runs.items()}).round(4)
    display(positions)
    pre, suf = pos_runs["prefix"], pos_runs["suffix"]
    print(f"Same budget: the prefix order took {pre['seconds'] / max(suf['seconds'], 1e-9):.1f}x the suffix "
          f"order's compute ({pre['seconds']:.0f} s against {suf['seconds']:.0f} s, the suffix's context states "
          f"included) for test Recall@10 {pre['test']['recall@10']:.3f} against {suf['test']['recall@10']:.3f}.")
