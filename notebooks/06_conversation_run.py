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
# # 6. Anatomy of one conversation run
#
# Section 4.4 of the paper, run once end to end. A dialog's entities are enhanced by their first-order
# neighbours in every semantic graph (Eq. 25); training contexts that share enhanced entities are linked into
# a correlation semantic mapping, propagated by an MLP and averaged (Eq. 26), and fused with the entity prompt
# (Eq. 27); the prompt [T_tilde; O_cov] (Eq. 28) conditions the frozen language model, whose soft prompts
# are trained with the token loss of Eq. 29 on the recommender's turns, movie names replaced by `<movie>`.
#
# Like chapter 3 for recommendation, this notebook is the unit of the next chapter's experiments: every row
# of Table 3 and every point of Figure 4 (c, d) is this notebook executed by papermill with other
# parameters, its result written to `<results_dir>/<run name>/result.json` (a finished run is loaded).

# %% tags=["parameters"]
dataset = "inspired"
model = "mscrs"  # "mscrs" | "backbone" (the plain frozen language model, no prompt, no training)
seed = 0
use_graphs = True  # False: knowledge-graph prompt only (no collaborative or text graph): UniCRS-like
use_enhanced_entities = True  # Eq. (25); False is "w/o -s"
use_context_mapping = True  # Eq. (26)-(27); False is "w/o -c"
graph_variant = "paper"  # "authors_code": the graph embeddings are computed and then discarded
k = 10
entity_dim = 64
backbone = "smollm2-135m"  # SmolLM2-135M-Instruct (offline); "tiny-dialogpt": the miniature DialoGPT (smoke)
backbone_dtype = "bfloat16"  # the frozen backbone only; prompt, graphs and mapping train in float32
attn_implementation = "eager"  # "" keeps the model's default
prompt_position = "suffix"  # "suffix": [s; prompt] with cached context states; "prefix": Eq. (28)'s [prompt; s]
backbone_epochs = 2.0  # pre-training epochs of the miniature DialoGPT (only for the tiny-dialogpt backbone)
text_embedder = "minilm"  # context embeddings E_s^(0); "hashing:<dim>" only for smoke runs
epochs = 1
batch_size = 16
lr = 1e-2  # soft prompt on a frozen LM: 1e-3 barely moves it in one short epoch
max_train_samples = 1000
max_eval_samples = 200
max_new_tokens = 30
num_beams = 1
no_repeat_ngram_size = 3
results_dir = None  # None: build/runs
data_root = None
sweep_point = False  # True when chapter 7's sweep executes this run (nothing here depends on it yet)

# %%
import dataclasses

import matplotlib.pyplot as plt
import pandas as pd

from mscrs_core.experiments.conversation import ConvRunConfig, run_conversation

cfg = ConvRunConfig.from_namespace(globals())
result = run_conversation(cfg, results_dir, data_root)
print(cfg.run_line(result))

# %% [markdown]
# ## What ran
#
# **Deviations from the paper in this run.** The backbone is SmolLM2-135M-Instruct (`backbone`, the
# offline GGUF converted once to safetensors), in bfloat16 with eager attention, instead of DialoGPT-small;
# it stays frozen, as in the paper (the smoke profile uses the project's miniature DialoGPT in float32).
# With `prompt_position="suffix"` the soft prompt goes AFTER the dialog context, [s; T_tilde; O_cov;
# "System:"; response], instead of Eq. (28)'s [T_tilde; O_cov; s]: a causal LM gets the same information,
# but the context's key/value states then depend on no trainable weight, so they are computed once without
# gradient (and kept for the validation and test contexts in `cache/context-states/`) and only the prompt
# and response positions are trained through; `"prefix"` is the paper's order (the `paper` profile). T, the
# text part of Eq. (27), is still the mean input embedding of the context tokens. The context embeddings
# E_s^(0) of the correlation semantic mapping come from all-MiniLM-L6-v2, not RoBERTa. Training uses
# `max_train_samples` of the training split's recommender turns for `epochs` epochs, and the metrics a
# fixed subset of `max_eval_samples` test turns, to fit the book's CPU budget. No image graph exists.
# Generation is greedy (`num_beams=1`) with no repeated trigrams, at most `max_new_tokens` tokens.

# %%
pd.Series({**dataclasses.asdict(cfg), **result["samples"]}, name="value").to_frame()

# %%
if "graphs" in result:
    g = result["graphs"]
    print("graphs in the generator:", ", ".join(g["active_graphs"]), "| item modalities:",
          ", ".join(g["modalities"]) or "none")
print("backbone:", result["backbone"])

# %% [markdown]
# ## Training
#
# Validation loss and perplexity of the gold responses after each epoch; the epoch with the lowest
# validation loss is kept.

# %%
hist = pd.DataFrame(result["history"])
if not hist.empty:
    display(hist.round(4))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(hist["epoch"], hist["train_loss"], marker="o", label="train")
    ax.plot(hist["epoch"], hist["valid_loss"], marker="x", linestyle="--", label="valid")
    ax.set_xlabel("epoch")
    ax.set_title("loss per context (Eq. 29)")
    ax.legend()
    fig.tight_layout()
else:
    print("no training: the plain backbone generates from the context alone")

# %% [markdown]
# ## Test metrics
#
# BLEU-n is UniCRS's sentence-level BLEU with one-hot weights, averaged over responses, and `sacrebleu` the
# corpus BLEU beside it; ROUGE from `rouge-score`; `dist@n` counts distinct word n-grams over all responses
# divided by the number of responses (the UniCRS/DCRS convention, the paper's values above 1) and
# `dist_ratio@n` divides by the number of n-grams instead (0 to 1). Both sides keep `<movie>`, as in UniCRS.

# %%
pd.Series(result["test"], name="test").to_frame().round(4)

# %% [markdown]
# ## What the model saw and said
#
# For the first test contexts: the last two turns, the gold response and the generated one. For MSCRS runs
# also the Eq. (25) neighbours that entered the prompt, per graph, and the training contexts the
# correlation semantic mapping retrieved (Eq. 26; only training contexts can be retrieved).

# %%
pd.set_option("display.max_colwidth", 160)
rows = []
for ex in result["examples"][:8]:
    row = {"context": " / ".join(f"{role}: {text}" for role, text in ex["context"])[-200:],
           "gold": ex["gold"], "generated": ex["generated"]}
    if "neighbours" in ex:
        row["context entities"] = ", ".join(ex["context_entities"])
        row["graph neighbours"] = "; ".join(f"{g}: {', '.join(v[:4])}" for g, v in sorted(ex["neighbours"].items()))
        row["retrieved training contexts"] = " || ".join(ex["retrieved_contexts"])
    rows.append(row)
pd.DataFrame(rows)
