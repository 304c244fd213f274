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
# # 8. Talk to it
#
# The recommender of chapter 3 and the generator of chapter 6, trained on the real dialogs, answering new
# utterances. Each user turn is linked to knowledge-graph entities (chapter 1's linker, with the movies in its
# dictionary; a title links only where the user wrote it with a capital letter, because many titles are
# everyday phrases: "a scary movie" is not the film *Scary Movie*, "I need to get out" not *Get Out*); the
# recommender ranks the items (Eq. 23); the generator writes a response (Eq. 28) whose `<movie>` slots are
# filled from that ranking (the title as people write it, without DBpedia's "(2019 film)"), skipping movies
# already mentioned, as UniCRS does. Beside each response: the
# entities linked in the utterance, the top recommendations, and the graph neighbours (Eq. 25) that entered
# the prompt.
#
# Both models are loaded from a chat checkpoint that this chapter writes from the two finished runs (their
# validation-selected weights; nothing is trained here). Each model sits in it as a Hugging Face-style folder
# written by its `save_pretrained` (`config.json`, `model.safetensors`, its graphs and tokenizer; the frozen
# backbone is recorded by name), so `MSCRSRecommender.from_pretrained(".../recommender")` loads one on its own.
# The same folder works from a shell:
#
# ```
# mscrs chat --checkpoint build/chat/inspired
# ```
#
# **Deviations.** The models are those of the default profile: SmolLM2-135M-Instruct (bfloat16 where native) as the
# frozen backbone (not DialoGPT-small; the smoke profile uses the project's miniature DialoGPT, which gives
# short generic sentences), the soft prompt placed after the dialog context (`prompt_position="suffix"`,
# chapter 6) instead of before it (Eq. 28). The recommendations and neighbours show what the graphs add.
# Under the `default` and `full` profiles the generator is MSCRS with the prompt given to every layer as keys
# and values (the authors' code, `prompt_injection="layers"`, chapter 6; `conversation_overrides`; under `default`
# it is chapter 6's own run), not as input embeddings (Eq. 28 as printed; under `full`,
# `conversation_overrides={}` chats with that one), chosen on the validation split, where its perplexity is the
# lower of the two.
#
# **Decoding.** The chat decodes otherwise than Table 3 (greedy, chapter 6): beam search over four hypotheses
# that never repeats a trigram of the dialog so far (`context_block_ngram=3`, the context blocking of ParlAI's
# BlenderBot). The trained prompt favours a few short generic replies: decoded
# greedily without the block, an earlier default build's generator answered all three turns of the script below
# with "I think I'll watch the movie." `ChatSession(..., generation=GenerationConfig(...))` and
# `mscrs chat --num-beams 1 --context-block-ngram 0` give the greedy, unblocked answers back.

# %% tags=["parameters", "hide-cell"]
profile = "default"  # the profile the two runs were executed under (chapters 3 and 6)
dataset = "inspired"
seed = 0
script = [
    "Hi! I want to watch a scary movie tonight, something like The Shining.",
    "I liked Get Out too. Anything newer?",
    "What about a comedy instead?",
]
# a second dialog that opens with another request: a recommender that listens answers it with other movies
contrast_script = ["Hi! I am in the mood for a funny comedy tonight."]
# overrides of chapter 6's run for the generator (e.g. {"prompt_injection": "layers", "lr": 1e-3}: Table 3's
# layer-prompt row); {} is chapter 6's own run
conversation_overrides = {}
results_dir = None
data_root = None
check_checksums = True  # check the data against the root's MANIFEST.sha256.tsv, else the shipped manifest

# %% tags=["hide-cell"]
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from mscrs_core.chat import ChatSession, carried_over, format_turn
from mscrs_core.data.manifest import use_data_root
from mscrs_core.experiments.chat_export import export_chat
from mscrs_core.experiments.conversation import ConversationRunConfig
from mscrs_core.experiments.recommendation import RecRunConfig, default_results_dir, load_result
from mscrs_core.experiments.sweep import CONVERSATION_RUN_CHAPTER, RUN_CHAPTER, run_points

TRANSCRIPT_WIDTH = 88  # what the rendered page's code column shows without a scroll bar
print(use_data_root(data_root, check_checksums, datasets=[dataset]))  # the runs below read the data the same way
root = Path(results_dir) if results_dir else default_results_dir()
# the two runs: loaded when chapters 3 and 6 ran them under this profile already, executed otherwise
rec_run = run_points([{"dataset": dataset, "model": "mscrs", "seed": seed}], profile=profile,
                     results_dir=results_dir, data_root=data_root, chapter=RUN_CHAPTER).iloc[0]
conversation_run = run_points([{"dataset": dataset, "seed": seed, **conversation_overrides}], profile=profile,
                              results_dir=results_dir,
                              data_root=data_root, chapter=CONVERSATION_RUN_CHAPTER).iloc[0]
rec_cfg = RecRunConfig.from_record(load_result(root / rec_run["name"])["config"])
conversation_cfg = ConversationRunConfig.from_record(load_result(root / conversation_run["name"])["config"])
checkpoint = export_chat(rec_cfg, conversation_cfg, root.parent / "chat" / dataset, results_dir=results_dir,
                         data_root=data_root)
print("chat checkpoint:", checkpoint)
print(f"recommender run {rec_run['name']}: test Recall@10 {rec_run['recall@10']:.3f}")
print(f"conversation run {conversation_run['name']}: test BLEU-2 {conversation_run['bleu@2']:.4f}")

# %% [markdown]
# ## A scripted conversation
#
# The `script` parameter's utterances, one dialog. Papermill can re-run this chapter with any other script.

# %%
session = ChatSession.load(checkpoint)
turns = [session.respond(u) for u in script]
for t in turns:
    print(format_turn(t, width=TRANSCRIPT_WIDTH), end="\n\n")

# %% [markdown]
# Does a later request move the list? For each turn after the first: how many of its movies the previous turn's
# list already held. A recommender that follows the latest request keeps few of them when the dialog changes
# direction ("a comedy instead?"). What pulls the other way: every entity linked so far stays in the dialog's
# context side by side, so a later "Comedy" joins the movies named before it and does not replace them. Movies
# the dialog has named drop out of the lists by themselves, so a count below the list's length is not by itself
# a change of direction.

# %% tags=["hide-input"]
pd.set_option("display.max_colwidth", 200)
pd.DataFrame({"user": [t.user for t in turns],
              "recommended": [len(t.recommended) for t in turns],
              "of them in the previous turn's list": ["(first turn)" if n is None else n for n in carried_over(turns)]},
             index=pd.RangeIndex(1, len(turns) + 1, name="turn"))

# %% [markdown]
# ## Does it listen? A second dialog
#
# A new dialog that opens with another request (`contrast_script`). If the recommender listens, its first
# answer differs from the first answer of the dialog above; if it ranked by popularity, the two lists would be
# the same.

# %%
contrast = ChatSession.load(checkpoint)
contrast_turns = [contrast.respond(u) for u in contrast_script]
for t in contrast_turns:
    print(format_turn(t, width=TRANSCRIPT_WIDTH), end="\n\n")

# %% tags=["hide-input"]
above, below = turns[0].recommended, contrast_turns[0].recommended
shared = {e for e, _ in above} & {e for e, _ in below}
print(f"First answers of the two dialogs: {len(shared)} of the top {len(above)} movies in common.")
pd.DataFrame({f"'{script[0]}'": [n for _, n in above], f"'{contrast_script[0]}'": [n for _, n in below]},
             index=pd.RangeIndex(1, len(above) + 1, name="rank"))

# %% [markdown]
# ## Where each answer came from
#
# Per turn: the entities linked in the user's utterance, the recommender's top five (movies already
# mentioned removed), the movies that filled the response's `<movie>` slots, and the enhanced-entity
# neighbours (Eq. 25) each graph contributed to the generator's prompt.

# %% tags=["hide-input"]
pd.DataFrame([{
    "user": t.user,
    "response (raw, before filling)": t.raw_response,
    "linked": ", ".join(n for _, n in t.linked),
    "recommended": "; ".join(n for _, n in t.recommended),
    "filled in": "; ".join(n for _, n in t.filled),
    **{f"{g} neighbours": ", ".join(n for _, n in v[:6]) for g, v in sorted(t.neighbours.items())},
} for t in turns])

# %% [markdown]
# ## Your turn
#
# In Jupyter, `talk("...")` continues the dialog above and `session.reset()` starts a new one. From a shell,
# the same checkpoint answers on the command line; the cell below runs that command on the script and prints
# its transcript, so the book checks that it works.

# %% tags=["hide-input"]
def talk(utterance: str) -> None:
    """One user turn: print the response, the recommendations and the graph neighbours."""
    print(format_turn(session.respond(utterance), width=TRANSCRIPT_WIDTH))


with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    f.write("\n".join(script) + "\n")
cmd = [sys.executable, "-m", "mscrs_core.cli", "chat", "--checkpoint", str(checkpoint), "--script", f.name]
print("$ mscrs chat --checkpoint", checkpoint, "--script script.txt")
out = subprocess.run(cmd, capture_output=True, text=True, check=False)
print(out.stdout or out.stderr)
assert out.returncode == 0, out.stderr
