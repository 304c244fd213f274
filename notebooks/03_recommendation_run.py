# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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

# %% tags=["parameters", "hide-cell"]
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
backbone_dtype = "auto"  # "auto" (bfloat16 where the CPU/GPU has it natively, else float32) | "float32" | "bfloat16"
attn_implementation = "eager"
max_entities = 32  # q, the newest context entities the prompt reads
n_task_prompt = 10
n_entity_prompt = 4
tau = 0.07  # Eq. (18)
fuse_weight = 0.1
fuse_variant = "paper"
rec_scope = "items"
prompt_position = "suffix"  # "prefix" (Eq. 19) | "suffix" (context states computed once)
readout = "last"  # Eq. (20): "last" (the last position's state, as the paper's text says) | "mean" (prompt states)
prompt_injection = "inputs"  # "inputs" (Eq. 19) | "layers": every layer's keys/values, read at title_cue (authors' code)
context_encoder = "text_encoder"  # T_s (Eq. 17-18): "backbone_embeddings" | "text_encoder" (MiniLM as RoBERTa)
context_text_dim = 384  # width of the text encoder features (MiniLM: 384)
text_skip = True  # the skip path also carries the context text features (needs the text_encoder context_encoder)
head = "cosine"  # "dot" (Eq. 23) | "cosine"
init_scale = 10.0  # cosine head: initial logit scale
item_bias = True
entity_skip = True
zero_init_projection = True
lm_scale = 0.1  # weight of the LM term beside the entity skip path
mention_bias = True  # a learned bonus for the items already mentioned in the dialog
mention_init = 2.0  # beta's start (gamma: half of it)
title_readout = True  # + gamma * t_i(s): the backbone's own next-token readout of item i's title (beyond the paper)
title_cue = 'System: I think you would like the movie "'  # the text the backbone reads after the context
lm_trains = "prompt"  # after the warm-up: "prompt" (prompt encoder + projection) | "all"
select_rule = "one_se"  # warm-up vs LM stage on validation: "one_se" | "best"
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
text_lr = 1e-3  # the maps of the context text features (the text_encoder context_encoder), every stage
weight_decay = 0.0
max_train_samples = 0
max_eval_samples = 0
text_max_length = 128
results_dir = None  # None: build/runs
data_root = None
check_checksums = True  # check the data against the root's MANIFEST.sha256.tsv, else the shipped manifest
sweep_point = False  # True when a sweep (chapters 4, 5) executes this run: skip the reference runs below
# "Prefix against suffix": both prompt orders on one equal budget (same samples, epochs and steps)
position_budget = {"max_train_samples": 512, "pretrain_epochs": 0, "warm_epochs": 0, "rec_epochs": 1}

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mscrs_core.data.manifest import use_data_root
from mscrs_core.experiments.recommendation import RecRunConfig, run_recommendation
from mscrs_core.experiments.recommendation.run import LEGACY_WARM_STAGE, WARM_STAGE

sns.set_theme(style="whitegrid")
print(use_data_root(data_root, check_checksums, datasets=[dataset]))
cfg = RecRunConfig.from_namespace(globals())
result = run_recommendation(cfg, results_dir, data_root)
print(cfg.run_line(result))

# %% tags=["remove-cell"]
from mscrs_core.book.show import equation_with_code, glue_numbers
from mscrs_core.models.prompt_encoder import PromptEncoder, assemble_inputs
from mscrs_core.models.recommender import MSCRSRecommender

# %% [markdown]
# ## Section 4.3 in code
#
# Each equation as the paper prints it, followed by the library code that computes it (pulled from
# `mscrs_core` when the chapter runs; {doc}`/book/equations` lists them all). Shapes: $B$ dialogs, $q$ entity
# slots, $p$ entity-prompt positions, $d$ the entity dimension, $H$ the backbone's hidden size.
#
# **The entity prompt (Eq. 17).** The context's entities $\mathbf{V}_s$ are rows of the fused entity table
# $\hat{\mathbf{E}}_{final}$ of chapter 2 (Eq. 16); $\mathbf{W}_1$ mixes the $q$ entity slots into $p$ prompt
# positions and $\mathbf{W}_2$ maps the entity space into the backbone's. The paper's text vector
# $\mathbf{T}_s$ comes from RoBERTa; here it is the mean input embedding of the context's tokens, and the
# prompt's entity part is $\hat{\mathbf{V}}_s = \tilde{\mathbf{V}}_s + \mathbf{T}_s$.

# %% tags=["remove-input"]
equation_with_code(17, PromptEncoder.entity_prompt, PromptEncoder.text_embedding,
                   note="Entity slots are right-aligned (the last slot is the latest mention) and padded slots are "
                        "zeroed, so a column of $\\mathbf{W}_1$ means \"the k-th most recent entity\" in every "
                        "dialog:")

# %% [markdown]
# **Contrastive fusion (Eq. 18).** The entity prompt and the context's text vector of one dialog are pulled
# together against the other dialogs of the batch.

# %% tags=["remove-input"]
equation_with_code(18, PromptEncoder.fuse_loss,
                   note="$\\tilde{\\mathbf{V}}_s$ is mean-pooled over its $p$ positions, both sides are "
                        "L2-normalised and $\\gamma$ runs over the dialogs of the batch; `fuse_variant=\"infonce\"` "
                        "replaces the printed intra-modal denominators by cross-modal ones:")

# %% [markdown]
# **The prompt (Eq. 19).** The soft prompt $[\hat{\mathbf{V}}_s; \mathbf{O}_{rec}]$ enters the frozen language
# model as input embeddings, beside the context's token embeddings.

# %% tags=["remove-input"]
equation_with_code(19, PromptEncoder.forward, assemble_inputs, fold=30,
                   note="`forward` builds $[\\hat{\\mathbf{V}}_s; \\mathbf{O}_{rec}]$ and $L_{fuse}$; "
                        "`assemble_inputs` puts it before the context as printed (`prompt_position=\"prefix\"`). "
                        "The book's default puts it after the context (next equation, and \"What ran\" below):")

# %% [markdown]
# **User preference (Eq. 20).** The language model's state at the last position, projected into the entity
# space by a linear map (`projection`), is the preference $\hat{\mathbf{r}}_s$ every item is scored against.

# %% tags=["remove-input"]
equation_with_code(20, MSCRSRecommender.encode, MSCRSRecommender.input_prompt_state, fold=45,
                   note="With `prompt_position=\"suffix\"` the last position is the prompt's end, and the "
                        "context's key/value states come from `context_bank` (computed once, without gradient) "
                        "when one is attached. The last lines of `encode` are the skip path (next cell); "
                        "`layer_prompt_state` is the authors' code's way in (`prompt_injection=\"layers\"`, "
                        "\"What ran\" below):")

# %% [markdown]
# **Beyond the paper: the skip path** (`entity_skip=True`, `zero_init_projection=True`). The mean of the
# context's entity rows is added to the projected state, which `lm_scale` ($\lambda_{lm}$) weights; the
# projection $\mathbf{W}_p$ starts at zero, so the untrained model is the graphs alone plus the popularity prior
# of the item bias. The warm-up closes the language-model path, and the skip path is then the whole preference.

# %% tags=["remove-input"]
equation_with_code(r"\hat{\mathbf{r}}_s = \lambda_{lm}\, \mathbf{W}_p\, \mathbf{h}_s + \frac{1}{|Q_s|} "
                   r"\sum_{e \in Q_s} \hat{\mathbf{E}}_{final}[e]",
                   MSCRSRecommender.close_lm_path,
                   note="$\\mathbf{h}_s$ is the language model's state of Eq. (20) and $Q_s$ the context's "
                        "entities:")

# %% [markdown]
# **Scores (Eq. 21, 23).** Pre-training scores all $K$ entities (Eq. 21), recommendation the $N$ items
# (Eq. 23). As printed, a logit is the dot product of $\hat{\mathbf{r}}_s$ with an entity row (`head="dot"`).
# The book's default head (`head="cosine"`, `item_bias=True`, `mention_bias=True`) is the third line: a
# learned scale $e^{\sigma}$ times the cosine, plus a per-item bias $b_i$ that starts at log popularity, plus
# the bonus $m_{s,i}$ of the items the dialog already mentioned (next cell).

# %% tags=["remove-input"]
equation_with_code([21, 23, r"\mathbf{P}(i) = \operatorname{Softmax}_i\big(e^{\sigma} \cos(\hat{\mathbf{r}}_s, "
                            r"\hat{\mathbf{E}}_{final}[i]) + b_i + m_{s,i}\big)"],
                   MSCRSRecommender.scores, MSCRSRecommender.score_items, MSCRSRecommender.score_entities,
                   MSCRSRecommender.init_item_bias,
                   note="The softmax is the one inside the cross-entropy of Eq. (22) and (24); scoring needs "
                        "only the logits:")

# %% [markdown]
# **Beyond the paper: the mention bonus** (`mention_bias=True`). An item the dialog already named gets a learned
# bonus, larger for the later mentions.

# %% tags=["remove-input"]
equation_with_code(r"m_{s,i} = \big(\beta + \gamma\, \rho_{s,i}\big)\, [\, i \in Q_s \,]",
                   MSCRSRecommender.mention_bonus,
                   note="$\\rho_{s,i}$ is the place of item $i$ among the dialog's mentions in order of first "
                        "mention, divided by their number (1 for the latest); $\\beta$ and $\\gamma$ "
                        "(`mention_weight`, `mention_recency`) are learned:")

# %% [markdown]
# **The losses (Eq. 22, 24).** One forward pass gives the cross-entropy over entities (`task="pretrain"`) or
# items (`task="rec"`) plus $\delta L_{fuse}$.

# %% tags=["remove-input"]
equation_with_code([22, 24], MSCRSRecommender.forward,
                   note="$\\delta$ is `fuse_weight`. Each gold item of a recommender turn is its own sample "
                        "(the UniCRS protocol), and `F.cross_entropy` averages over the batch where the paper "
                        "sums over $S_{train}$:")

# %% [markdown]
# ## What ran
#
# **Deviations from the paper in this run** (each is a parameter above; the `paper` profile sets the paper's
# choice where one exists):
#
# * **Backbone.** A frozen SmolLM2-135M-Instruct (`backbone="smollm2-135m"`, shipped offline as GGUF,
#   converted once to safetensors, run with eager attention (without copying its 3 key/value heads for its 9
#   query heads: `mscrs_core/models/attention.py`, the same attention) in bfloat16 where the processor computes it natively
#   (AMX or AVX512-BF16, a recent GPU), in float32 elsewhere: `backbone_dtype="auto"`; the run records which)
#   instead of DialoGPT-small; the smoke
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
# * **Which state is read** (`readout`). Eq. (20) writes a pooling of the LM's output and the text says the
#   last token's state is used; `readout="last"` (the default) does that. `readout="mean"` pools the output
#   states of the soft prompt's positions instead (each of them attends to the whole context); an option
#   (`-p readout '"mean"'`) that the default profile does not run.
# * **How the prompt enters the language model** (`prompt_injection`). Eq. (19) gives the prompt as input
#   embeddings (`"inputs"`, the default, as printed). The authors' code, inherited from UniCRS, gives it to every
#   layer as keys and values (prefix tuning, `"layers"`; chapter 6 explains the map and the rotation of the keys,
#   and tests it). A prompt given as keys and values has no output state of its own, so Eq. (20) then reads the
#   state of the last token of `title_cue` run after it, where the frozen model itself would name a movie (a test
#   checks that state against one uncached pass). An option (`-p prompt_injection '"layers"'`, suffix order
#   only) that the default profile does not run; the code's cross-attention between the context's tokens and
#   the entities is not reproduced.
# * **T_s, the context's text** (`context_encoder="text_encoder"`). Eq. (17)-(18) take T_s from RoBERTa over
#   the context; here the frozen sentence encoder of chapter 2 (all-MiniLM-L6-v2 in place of RoBERTa) encodes
#   the newest 126 context tokens, and a trained linear layer maps its 384 dimensions to the backbone's width
#   (the paper's T_s has one vector per token, of RoBERTa's width, which equals DialoGPT's; ours is one vector
#   per dialog). `text_skip=True` adds the same features, mapped into the entity space by a zero-initialised
#   layer with its own rate (`text_lr`), to the path around the language model, so the words reach the score
#   even when the language-model stage is not kept. Both were chosen on the validation split over the model
#   class's own default, `context_encoder="backbone_embeddings"` (the mean of the backbone's input embeddings,
#   no second encoder; the runs before this choice), with the warm-up stage alone on seeds 0-2: its
#   validation Recall@10 rose on every seed, and its Recall@10 on new items did not move. The UniCRS row
#   gets the same text path (UniCRS's prompt reads RoBERTa's encoding of the context too).
# * **A bonus for items already mentioned** (`mention_bias=True`). An item the dialog has already named gets
#   beta + gamma * r added to its logit (r: 1 for the latest first mention, smaller for earlier ones; beta and
#   gamma are learned). A sixth of the test golds were mentioned before (the "mentioned" slice in chapter 4),
#   and the mean of the context's entity rows dilutes such an item among the genres and people around it. The
#   paper has no such term; `copy_context` in chapter 4 is the same idea with an infinite bonus.
# * **The backbone's own reading of the titles** (`title_readout=True`, `title_cue`; not in the paper). Eq.
#   (20)-(23) read the language model through one state mapped by a trained projection into the entity space;
#   on 2,065 training samples that projection never learned what the backbone knows about movies (before this
#   option validation kept the warm-up, which has no language model, in all six language-model runs of
#   chapter 4). The backbone's output layer already maps its state onto words, and titles are words: after
#   the context it reads the cue `System: I think you would like the movie "`, and item i scores
#   t_i(s) = mean over the title's tokens of log p(token | context, cue) minus the same without a dialog (a
#   pointwise mutual information: a title the backbone likes everywhere gains nothing). The logits get
#   gamma * t_i(s), gamma learned from zero, so the untrained model is unchanged. t(s) is computed once per
#   context without gradient (after the cached context states) and cached under `cache/title-readout`, so
#   it costs seconds per run and the warm-up uses it too. Chosen on validation: the warm-up stage alone
#   (no pre-training), seeds 0-2, validation Recall@10 0.320 with the readout against 0.304 without
#   (higher on every seed), new items 0.153 against 0.133 (an experiment outside the book, like the choice of
#   the text path below; `-p title_readout=false` runs the comparison here). The UniCRS row gets it too: it is a property of the backbone, not of the graphs.
# * **A warm-up without the soft prompt** (`warm_epochs`, `warm_lr`, `warm_graph_lr`). Before the prompt
#   training of Eq. (24), the same loss trains with the soft-prompt path closed (the skip path, the mention
#   bonus and the title readout: the untrained model's whole output): the graph side, the scale and the item bias settle in a few
#   seconds per epoch instead of a few minutes. Validation then chooses between the best warm-up epoch and the
#   best epoch with the language model; the result records which (`selected_stage`), and the chapter shows it.
#   After the warm-up the language-model stage trains only the prompt encoder and the projection
#   (`lm_trains="prompt"`): the graph side, the scale and the biases stay as the warm-up chose them, so the
#   stage measures what the language model adds to them (`"all"` trains everything, as Eq. (24) does).
#   Validation keeps the language-model stage only if its best Recall@10 beats the warm-up's by more than one
#   standard error of the warm-up's (`select_rule="one_se"`, the one-standard-error rule; `"best"` takes the
#   plain maximum): with a few hundred validation samples the maximum over a handful of epochs wins by chance
#   as often as by merit.
# * **The entity table's learning rate** (`entity_lr`). The table starts at the authors' Xavier scale (row norm
#   about 0.09 at d = 64) and Adam moves every row that gets a gradient by about its learning rate per
#   coordinate per step: at the prompt's 1e-3 a few dozen steps erase what the graphs put there. The table
#   trains at 1e-5, the graph layers at `graph_lr`.
# * **Sizes.** Pre-training and recommendation training run for fewer epochs than UniCRS's recipe
#   (`pretrain_epochs`, `rec_epochs`, `pretrain_max_samples`; `make book` trains the language-model stage two
#   epochs, `PROFILE=full` three, chapter 4); the context is its newest `max_length` = 64
#   tokens (UniCRS: 200); the entity dimension is 64. The text encoder of the graphs is all-MiniLM-L6-v2, not
#   RoBERTa; there is no image modality (no images exist here).
# * **Stage names.** The warm-up stage is recorded as "warm-up (no soft prompt)"; results written before the title
#   readout call it "warm-up (no LM)".
# * **Selection.** The recommendation epoch with the best validation Recall@10 is kept (ties in the ranking
#   count at their expected value, never in the model's favour); the test split is scored once.

# %% tags=["hide-input"]
pd.Series({**cfg.flat(), **result["samples"]}, name="value").to_frame()

# %% tags=["hide-input"]
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

# %% tags=["hide-input"]
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

# %% tags=["hide-input"]
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

# %% tags=["hide-input"]
if cfg.model not in ("popularity", "graph_scorer") and not sweep_point:
    refs = {
        "popularity": cfg.replace(model="popularity"),
        "graphs alone": cfg.replace(model="graph_scorer"),
        "graphs alone, no text graph": cfg.replace(model="graph_scorer", use_text=False),
    }
    if cfg.model == "unicrs":  # UniCRS has no semantic graph: its graph scorer is the KG alone
        refs = {"popularity": refs["popularity"],
                "graphs alone (KG)": cfg.replace(model="graph_scorer", use_collab=False,
                                                         use_text=False, use_image=False)}
    cols = {cfg.model: result["test"]}
    cols.update({name: run_recommendation(c, results_dir, data_root)["test"] for name, c in refs.items()})
    comparison = pd.DataFrame(cols).loc[["recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10"]].round(4)
    comparison[f"{cfg.model} - popularity"] = (comparison[cfg.model] - comparison["popularity"]).round(4)
    display(comparison)

# %% tags=["remove-cell"]
reading = "(No comparison: this run is itself a reference, or a point of a sweep.)"
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
        stage = result.get("stage_valid_recall@10", {})
        warm_r, lm_r = stage.get(WARM_STAGE, stage.get(LEGACY_WARM_STAGE)), stage.get("rec")
        where = (f" (validation Recall@10: warm-up {warm_r:.3f}, language-model stage {lm_r:.3f}, rule "
                 f"'{result.get('select_rule', 'best')}')" if warm_r is not None and lm_r is not None else "")
        lines.append(f"Validation kept the weights of the stage '{result['selected_stage']}'{where}"
                     + (": the soft-prompt stage did not earn its place on validation, so this run's scores use "
                        "the language model only through its title readout (when on)." if result["selected_stage"] != "rec"
                        else "."))
    print("\n".join(lines))
    reading = " ".join(lines)
glue_numbers({"reading": reading})

# %% [markdown]
# **Reading this comparison.** In words, from the numbers above: the run against popularity and against the
# graphs alone, and on the slices of chapter 4 (gold already mentioned in the dialog / new item). A recommender
# that listens moves its top-1 away from popularity's and beats popularity on new items, not only on the items
# the dialog already named.
#
# {glue:text}`reading`

# %% [markdown]
# ## Prefix against suffix
#
# The paper's order puts the prompt before the context (Eq. 19): every step runs the language model over the
# whole context with autograd. The suffix order runs it over the context once, without gradient, and every
# step over the prompt's positions only. Both orders below train on the same budget (`position_budget`: the
# same training samples, epochs and steps; everything else as this run) and are scored on the same test split.
# The budget has no warm-up, so that both runs train the language-model path they are meant to compare (with a
# warm-up, validation may keep the warm-up's weights for both, and the comparison would compare nothing).

# %% tags=["hide-input"]
if cfg.model in ("mscrs", "unicrs") and not sweep_point:
    pos_runs = {p: run_recommendation(cfg.replace(prompt_position=p, **position_budget),
                                      results_dir, data_root) for p in ("prefix", "suffix")}
    positions = pd.DataFrame({p: {**{m: r["test"][m] for m in ("recall@1", "recall@10", "recall@50")},
                                  "valid recall@10": r["valid"]["recall@10"],
                                  "compute (s)": r["seconds"],
                                  "context states (s)": r.get("context_state_seconds", 0.0)}
                              for p, r in pos_runs.items()}).round(4)
    display(positions)

# %% tags=["remove-cell"]
positions_sentence = "(Not compared: only the MSCRS and UniCRS runs of this chapter compare the two orders.)"
if cfg.model in ("mscrs", "unicrs") and not sweep_point:
    pre, suf = pos_runs["prefix"], pos_runs["suffix"]
    positions_sentence = (
        f"Same budget: the prefix order took {pre['seconds'] / max(suf['seconds'], 1e-9):.1f}x the suffix "
        f"order's compute ({pre['seconds']:.0f} s against {suf['seconds']:.0f} s, the suffix's context states "
        f"included) for test Recall@10 {pre['test']['recall@10']:.3f} against {suf['test']['recall@10']:.3f}.")
    print(positions_sentence)
glue_numbers({"positions_sentence": positions_sentence})

# %% [markdown]
# {glue:text}`positions_sentence`

# %% tags=["remove-cell"]
glue_numbers({"model": {"mscrs": "MSCRS", "unicrs": "UniCRS"}.get(cfg.model, cfg.model),
              "dataset": {"inspired": "INSPIRED", "redial": "ReDial"}.get(cfg.dataset, cfg.dataset),
              "train": result["samples"]["train"], "test": result["samples"]["test"],
              "recall1": result["test"]["recall@1"], "recall10": result["test"]["recall@10"],
              "recall50": result["test"]["recall@50"]}, prefix="run_")

# %% [markdown]
# ## What this run finds
#
# {glue:text}`run_model` on {glue:text}`run_dataset`, trained on {glue:text}`run_train:,d` samples and scored
# once on {glue:text}`run_test:,d` test samples with the weights validation kept, ranks the gold item first for
# {glue:text}`run_recall1:.1%` of them, in its top 10 for {glue:text}`run_recall10:.1%` and in its top 50 for
# {glue:text}`run_recall50:.1%` (against popularity and on the two slices: "Reading this comparison" above).
# Chapter 4 repeats this run over seeds and against the baselines of Table 2, and tests whether the difference
# is significant.
