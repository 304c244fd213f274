"""What the rendered book shows in its main flow (issue #13): no plumbing code, no ``nan`` in the prose.

* Every chapter's ``parameters`` cell is folded in the HTML (MyST-NB ``hide-cell``/``hide-input``: a "Show code
  cell source" toggle) and keeps its ``parameters`` tag (papermill needs it); so is the cell papermill injects
  after it (``injected-parameters``), which the runner tags when it writes the executed chapter.
* Set-up cells (imports) are folded or removed.
* Chapter 4's findings paragraph says in words that a dataset was not run, instead of printing ``nan``.
"""
from __future__ import annotations

import json
import math
import re

import jupytext
import nbformat
import pandas as pd
import pytest

from mscrs_core.book import rec_tables, runner
from mscrs_core.book.show import glue_markdown
from mscrs_core.experiments.sweep import METRICS

#: MyST-NB tags that fold a cell behind a toggle (the reader can open it)
FOLD = {"hide-cell", "hide-input"}
#: tags that keep a cell's source out of the main flow (folded or removed)
OUT_OF_FLOW = FOLD | {"remove-cell", "remove-input"}
IMPORT = re.compile(r"^(import \w|from [\w.]+ import )", re.MULTILINE)


def chapter_cells(chapter: str):
    return jupytext.read(runner.notebooks_dir() / f"{chapter}.py").cells


def tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


@pytest.mark.parametrize("chapter", [c.name for c in runner.chapters()])
def test_parameters_cell_is_folded_and_keeps_its_tag(chapter):
    params = [c for c in chapter_cells(chapter) if "parameters" in tags(c)]
    assert len(params) == 1, f"{chapter}: expected one cell tagged 'parameters', found {len(params)}"
    assert tags(params[0]) & FOLD, \
        f"{chapter}: its parameters cell has tags {sorted(tags(params[0]))}; add 'hide-cell' so the book folds it"


@pytest.mark.parametrize("chapter", [c.name for c in runner.chapters()])
def test_setup_cells_are_out_of_the_main_flow(chapter):
    visible = [c.source.splitlines()[0] for c in chapter_cells(chapter)
               if c.cell_type == "code" and IMPORT.search(c.source) and not tags(c) & OUT_OF_FLOW]
    assert not visible, f"{chapter}: code cells that import modules are shown in full: {visible}; tag them " \
                        f"'hide-cell' (set-up) or 'hide-input' (their output is content)"


def test_hide_injected_parameters_adds_the_fold_tag_once():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters", "hide-cell"]}),
        nbformat.v4.new_code_cell("# Parameters\na = 2\n", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(a)"),
    ])
    assert runner.hide_injected_parameters(nb) == 1
    assert nb.cells[1].metadata.tags == ["injected-parameters", "hide-cell"]
    assert nb.cells[0].metadata.tags == ["parameters", "hide-cell"] and "tags" not in nb.cells[2].metadata
    assert runner.hide_injected_parameters(nb) == 0 and nb.cells[1].metadata.tags.count("hide-cell") == 1


def test_runner_folds_the_injected_parameters_cell(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.py").write_text('# %% tags=["parameters", "hide-cell"]\nn = 3\n\n# %%\nprint(n)\n')
    monkeypatch.setattr(runner, "notebooks_dir", lambda: src)
    out = runner.run_chapter("tiny", "smoke", out_dir=tmp_path / "out", overrides={"n": 4}, prepare_only=True)
    cells = json.loads(out.read_text())["cells"]
    injected = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "n = 4" in "".join(injected[0]["source"])
    assert "hide-cell" in injected[0]["metadata"]["tags"]
    params = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert params[0]["metadata"]["tags"] == ["parameters", "hide-cell"]  # papermill keeps the source's tags
    assert not list((tmp_path / "out").glob(".*partial*"))


# ---------------------------------------------------------------------------------------------- chapter 4 prose

def _runs(models: dict[str, list[str]]) -> pd.DataFrame:
    rows = []
    for ds, names in models.items():
        for i, model in enumerate(names):
            r10 = 0.1 + 0.02 * i
            rows.append({"dataset": ds, "model": model, "seed": 0, "name": f"{ds}-{model}", "seconds": 1.0,
                         **{m: 0.1 for m in METRICS}, "recall@10": r10, "recall@50": 2 * r10,
                         "mentioned/recall@10": 0.5, "new/recall@10": r10 / 2, "new/recall@50": r10,
                         "top1 = popularity's": 0.5, "mentioned_count": 2.0, "new_count": 6.0})
    return pd.DataFrame(rows)


def _per_sample(sub: pd.DataFrame, model: str) -> pd.Series:
    return pd.Series([1, 1, 0, 0] if model == "mscrs" else [1, 0, 0, 0], dtype=float)


REFS = ("copy_context", "zero_shot_text", "entity_mean")


def test_summary_says_a_dataset_was_not_run_instead_of_nan():
    runs = _runs({"inspired": ["popularity", "copy_context", "unicrs", "mscrs"]})  # an INSPIRED-only build
    f = rec_tables.findings(runs, ("inspired", "redial"), _per_sample, REFS)
    assert math.isnan(f["redial_mscrs_r10"]) and f["redial_runs"] == 0  # the numbers keep their keys
    redial = rec_tables.summary(f, "redial")
    assert redial == ("**ReDial** was not run in this build (the chapter's `datasets` parameter left it out), so "
                      "Table 2 and the tests above have no ReDial rows.")
    ins = rec_tables.summary(f, "inspired")
    assert ins.startswith("On **INSPIRED**, MSCRS reaches Recall@10 **0.160** and Recall@50 **0.320** (**one seed**; "
                          "the paper: **0.257** and ")
    assert "**above** the best of the paper's baselines here, **UniCRS** (**0.140**, Recall@50 **0.280**)" in ins
    assert "the strongest reference beyond the paper, **Copy context** (**0.120** and **0.240**)" in ins
    assert "paired over **4** test samples, its Recall@10 differs by **+0.250**" in ins
    assert "its Recall@10 is **0.080**, **above** popularity's **0.050**." in ins
    for text in (ins, redial):
        assert "nan" not in text.lower() and "(not run)" not in text


def test_summary_leaves_out_the_comparisons_whose_runs_are_missing():
    f = rec_tables.findings(_runs({"redial": ["mscrs"], "inspired": ["popularity"]}), ("redial", "inspired"),
                            _per_sample, REFS)
    # no baseline, reference, UniCRS or popularity run on ReDial: MSCRS's own numbers only
    assert rec_tables.summary(f, "redial") == (
        "On **ReDial**, MSCRS reaches Recall@10 **0.100** and Recall@50 **0.200** (**one seed**; the paper: **0.264** "
        "and **0.451**). On new items (the gold not mentioned before) its Recall@10 is **0.050**.")
    assert rec_tables.summary(f, "inspired") == ("MSCRS was not run on **INSPIRED** in this build, so there is no "
                                                 "INSPIRED result of MSCRS to state.")


def test_chapter4_prose_glues_only_keys_that_its_remove_cell_glues():
    """Every glue key of chapter 4's Markdown is glued for any dataset, run or not, and none is a number that
    could read ``nan``: the findings paragraphs are whole sentences (``{glue:md}``)."""
    cells = chapter_cells("04_recommendation")
    used = set()
    for cell in cells:
        if cell.cell_type == "markdown":
            used |= set(re.findall(r"\{glue:(?:text|md)\}`([^`:]+)", cell.source))
    assert used == {"inspired_summary", "redial_summary", "stage_summary"}
    glued = "\n".join(c.source for c in cells if c.cell_type == "code" and "glue_markdown(" in c.source)
    assert 'f"{ds}_summary": rec_tables.summary(found, ds) for ds in ("inspired", "redial")' in glued
    assert '"stage_summary": rec_tables.stage_summary(runs)' in glued  # a sentence for any runs, none included


def test_glue_markdown_takes_text_only():
    glue_markdown({"a": "**1**"})  # outside a kernel: nothing is glued, nothing fails
    with pytest.raises(TypeError, match="'x_a' is a float"):
        glue_markdown({"a": 0.5}, prefix="x_")


def test_conversation_summary_never_prints_nan():
    import pandas as pd

    from mscrs_core.book import conversation_tables

    table = pd.DataFrame({"bleu@2": [0.0182, 0.0101, 0.0150], "dist@2": [7.46, 5.2, 6.1]},
                         index=["MSCRS", "plain backbone", "w/o graphs (UniCRS-like)"])
    full = conversation_tables.summary(conversation_tables.numbers(table), "INSPIRED")
    assert "**0.018**" in full and "**above** the plain backbone's BLEU-2 **0.010**" in full
    assert "**above** the UniCRS-like variant's (without graphs) **0.015** (Distinct-2 **6.10**)" in full
    assert "input embeddings" not in full  # one injection ran: the text does not name it
    alone = conversation_tables.summary(conversation_tables.numbers(table.loc[["MSCRS"]]), "INSPIRED")
    assert "plain backbone" not in alone and "UniCRS" not in alone and alone.endswith(".")
    assert "For scale" not in full  # no reference row ran
    ref_rows = ["most frequent response (ref.)", "nearest context's response (ref.)"]
    refs = pd.concat([table, pd.DataFrame({"bleu@2": [0.0140, 0.0104], "dist@2": [0.01, 4.52]}, index=ref_rows)])
    scaled = conversation_tables.summary(conversation_tables.numbers(refs), "INSPIRED")
    assert "said to every test turn: BLEU-2 **0.014**, Distinct-2 **0.01**;" in scaled
    assert "most similar training context: BLEU-2 **0.010**" in scaled and "random training" not in scaled
    assert "MSCRS's BLEU-2 is **above** that of one sentence said to everyone." in scaled
    layer_rows = ["MSCRS (layer prompt)", "w/o graphs (UniCRS-like, layer prompt)"]
    layered = pd.concat([refs, pd.DataFrame({"bleu@2": [0.0241, 0.0199], "dist@2": [5.9, 5.1]}, index=layer_rows)])
    both = conversation_tables.summary(conversation_tables.numbers(layered), "INSPIRED")
    assert both.startswith("On **INSPIRED**, MSCRS's responses with the prompt as input embeddings (Eq. 28) reach "
                           "BLEU-2 **0.018**")
    assert ("With the prompt in every layer's keys and values (the authors' code), MSCRS reaches BLEU-2 **0.024** "
            "and Distinct-2 **5.90**, **above** the UniCRS-like variant's (without graphs) **0.020** (Distinct-2 "
            "**5.10**) under the same injection.") in both
    assert ("one sentence said to everyone with the prompt as input embeddings, and **above** it with the layer "
            "prompt.") in both
    only_mscrs = conversation_tables.summary(conversation_tables.numbers(layered.drop(layer_rows[1])), "INSPIRED")
    assert "MSCRS reaches BLEU-2 **0.024** and Distinct-2 **5.90**." in only_mscrs
    # the default profile's build: the layer rows alone lead, against the plain backbone
    layers_only = conversation_tables.summary(
        conversation_tables.numbers(layered.drop(["MSCRS", "w/o graphs (UniCRS-like)"])), "INSPIRED")
    assert layers_only.startswith("On **INSPIRED**, MSCRS's responses with the prompt in every layer's keys and "
                                  "values (the authors' code) reach BLEU-2 **0.024** and Distinct-2 **5.90**, "
                                  "**above** the plain backbone's BLEU-2 **0.010**")
    assert "**above** the UniCRS-like variant's (without graphs) **0.020**" in layers_only
    assert "MSCRS's BLEU-2 is **above** that of one sentence said to everyone." in layers_only
    missing = conversation_tables.summary(conversation_tables.numbers(table.iloc[0:0]), "ReDial")
    assert "not generated on **ReDial**" in missing
    for text in (full, alone, missing, scaled, both, only_mscrs, layers_only):
        assert "nan" not in text.lower()
