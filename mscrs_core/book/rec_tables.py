"""Tables and findings of chapter 4 (Table 2), so the chapter shows results rather than table-shaping code.

Every function takes ``runs``: the frame :func:`~mscrs_core.experiments.sweep.run_points` returns (one row per
run: ``dataset``, ``model``, ``seed``, ``name``, the test metrics of :data:`~mscrs_core.experiments.sweep.METRICS`
and the slice columns ``mentioned/...``, ``new/...``), and computes exactly what the chapter's cells used to
compute inline (same aggregation, same formatting, same row order).

* :func:`table2` -- Table 2, ours (mean ± std over seeds) beside the paper's rows.
* :func:`best_baseline_tests` -- MSCRS against the paper's strongest baseline, paired over test samples.
* :func:`slice_table` -- the already-mentioned / new slices of every row.
* :func:`stage_table`, :func:`stage_summary` -- which stage's weights validation kept in each prompt run (the
  warm-up without the soft prompt, or the language-model stage of Eq. 24), so the reader knows what Table 2's
  UniCRS and MSCRS rows score with.
* :func:`findings` -- the numbers the chapter's prose states, per dataset (glued with
  :func:`~mscrs_core.book.show.glue_numbers`), and :func:`summary`, the paragraph that states them (glued with
  :func:`~mscrs_core.book.show.glue_markdown`).
"""
from __future__ import annotations

import numbers
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from ..evaluation.significance import paired_test
from ..experiments.recommendation import lm_stage_bar
from ..experiments.sweep import METRICS
from .show import direction

__all__ = ["MODEL_NAMES", "PAPER_ROWS", "DATASET_NAMES", "table2", "paired_rows", "paired_test_rows",
           "best_baseline_tests", "slice_table", "stage_table", "stage_summary", "findings", "summary"]

#: model key -> the row name chapter 4 prints
MODEL_NAMES = {"popularity": "Popularity", "text_classifier": "BERT (frozen MiniLM)",
               "graph_scorer": "Graphs alone (untrained)", "copy_context": "Copy context (ref.)",
               "zero_shot_text": "Zero-shot text (ref.)", "entity_mean": "Entity mean (ref., KBRD-like)",
               "unicrs": "UniCRS", "mscrs": "MSCRS"}
#: rows of the paper's Table 2 that the chapter prints beside ours (their model names in the paper)
PAPER_ROWS = ("Popularity", "BERT", "UniCRS", "MSCRS")
#: dataset key -> its name in prose
DATASET_NAMES = {"inspired": "INSPIRED", "redial": "ReDial"}

#: a function giving, for the runs of one dataset and a model key, the per-test-sample metric (mean over seeds)
PerSample = Callable[[pd.DataFrame, str], pd.Series]


def table2(runs: pd.DataFrame, datasets: Sequence[str], paper: pd.DataFrame | None = None,
           names: Mapping[str, str] = MODEL_NAMES, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Table 2 indexed by (dataset, model, source): ours as ``mean ± std`` over seeds (the mean alone for one
    run), the paper's rows (``paper``: :func:`~mscrs_core.book.paper_tables.paper_table2` by default) as printed,
    ``-`` where the paper has no value. Rows follow ``names``' order, ours before the paper's."""
    if paper is None:
        from .paper_tables import paper_table2

        paper = paper_table2()
    agg = runs.groupby(["dataset", "model"])[list(metrics)].agg(["mean", "std"])
    rows = []
    for (ds, m), r in agg.iterrows():
        n = int((runs.dataset.eq(ds) & runs.model.eq(m)).sum())
        rows.append({"dataset": ds, "model": names[m], "source": f"ours ({n} seed{'s' if n > 1 else ''})",
                     **{c: (f"{r[(c, 'mean')]:.3f} ± {r[(c, 'std')]:.3f}" if n > 1 else f"{r[(c, 'mean')]:.3f}")
                        for c in metrics}})
    paper = paper.reset_index()
    paper = paper[paper.model.isin(PAPER_ROWS) & paper.dataset.isin(datasets)]
    for _, r in paper.iterrows():
        rows.append({"dataset": r.dataset, "model": r.model if r.model != "BERT" else names["text_classifier"],
                     "source": "paper", **{c: "-" if pd.isna(r[c]) else f"{r[c]:.3f}" for c in metrics}})
    order = {v: i for i, v in enumerate(names.values())}
    table = pd.DataFrame(rows).sort_values(["dataset", "model", "source"],
                                           key=lambda s: s.map(order) if s.name == "model" else s)
    return table.set_index(["dataset", "model", "source"])


def _paired(runs: pd.DataFrame, dataset: str, model: str, against: str, per_sample: PerSample, method: str):
    sub = runs[runs.dataset == dataset]
    a, b = per_sample(sub, model).align(per_sample(sub, against), join="inner")
    return paired_test(a.values, b.values, method=method, alternative="greater")


def paired_rows(runs: pd.DataFrame, dataset: str, model: str, against: str, per_sample: PerSample,
                methods: Iterable[str] = ("ttest", "wilcoxon"), names: Mapping[str, str] = MODEL_NAMES) -> list[dict]:
    """One row per test in ``methods``: ``model`` against ``against`` on ``dataset``, per test sample (the metric
    that ``per_sample`` gives, averaged over seeds), paired over the samples both have, one-sided ("better")."""
    sub = runs[runs.dataset == dataset]
    return [{"dataset": dataset, f"{names[model]} vs": names[against], **row}
            for row in paired_test_rows(per_sample(sub, model), per_sample(sub, against), methods)]


def paired_test_rows(a: pd.Series, b: pd.Series, methods: Iterable[str] = ("ttest", "wilcoxon"),
                     metric: str = "Recall@10") -> list[dict]:
    """One row per test in ``methods`` of ``a`` against ``b`` (per-sample values indexed by sample id), paired
    over the samples both have, one-sided ("``a`` better"): test, samples, mean difference, p-value."""
    a, b = a.align(b, join="inner")
    rows = []
    for method in methods:
        t = paired_test(a.values, b.values, method=method, alternative="greater")
        rows.append({"test": method, "samples": t.n, f"mean difference in {metric}": round(t.mean_diff, 4),
                     "p-value": float(f"{t.pvalue:.3g}")})  # three significant digits: never a bare 0.0
    return rows


def best_baseline_tests(runs: pd.DataFrame, datasets: Sequence[str], per_sample: PerSample,
                        not_baselines: Iterable[str] = ("graph_scorer",), model: str = "mscrs",
                        names: Mapping[str, str] = MODEL_NAMES) -> pd.DataFrame:
    """Per dataset, ``model`` against the baseline with the best mean Recall@10 (every other model except
    ``not_baselines``: the paper's baselines only), paired t-test and Wilcoxon signed-rank test (one-sided).
    A dataset without ``model`` or without a baseline is left out."""
    tests = []
    for ds in datasets:
        means = runs[runs.dataset == ds].groupby("model")["recall@10"].mean()
        baselines = means.drop([model, *not_baselines], errors="ignore")
        if model not in means or baselines.empty:
            continue
        tests += paired_rows(runs, ds, model, baselines.idxmax(), per_sample, names=names)
    return pd.DataFrame(tests)


def slice_table(runs: pd.DataFrame, names: Mapping[str, str] = MODEL_NAMES) -> pd.DataFrame:
    """Per (dataset, model): the test samples of each slice (mean over seeds), Recall@10 on the gold items already
    mentioned, Recall@10/50 on the new ones, and the share of samples whose top-1 is popularity's."""
    slice_cols = ["mentioned/recall@10", "new/recall@10", "new/recall@50", "top1 = popularity's"]
    slices = runs.groupby(["dataset", "model"])[slice_cols].mean().round(3)
    slices.insert(0, "test samples (mentioned / new)", [
        f"{int(round(r['mentioned_count']))} / {int(round(r['new_count']))}" for _, r in
        runs.groupby(["dataset", "model"])[["mentioned_count", "new_count"]].mean().iterrows()])
    return slices.rename(index=names, level=1)


def _prompt_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that chose between a warm-up and a language-model stage (UniCRS, MSCRS)."""
    if "selected stage" not in runs:
        return runs.iloc[0:0]
    return runs[runs["selected stage"].fillna("").astype(str).ne("")]


def _lm_needs(row: pd.Series) -> float:
    """The validation Recall@10 the LM stage had to exceed to be kept, under the run's rule
    (:func:`~mscrs_core.experiments.recommendation.lm_stage_bar`)."""
    warm, n, rule = row["valid recall@10 warm-up"], row.get("valid samples"), row.get("select rule", "best")
    if pd.isna(warm) or (rule == "one_se" and (pd.isna(n) or n < 1)):  # nothing to compute it from
        return float("nan")
    return float(lm_stage_bar(float(warm), 0 if pd.isna(n) else int(n), rule))


def stage_table(runs: pd.DataFrame, names: Mapping[str, str] = MODEL_NAMES) -> pd.DataFrame:
    """Per prompt run, indexed by (dataset, model, seed): the best validation Recall@10 of the warm-up (no soft
    prompt) and of the language-model stage, what the LM stage had to exceed under the run's rule, and the stage
    whose weights were kept (the ones Table 2 scores with). Empty when ``runs`` has no prompt run."""
    prompt = _prompt_runs(runs)
    cols = ["warm-up", "LM stage", "LM stage needed", "rule", "kept"]
    if prompt.empty:
        return pd.DataFrame(columns=cols)
    table = pd.DataFrame({
        "dataset": prompt["dataset"], "model": prompt["model"].map(lambda m: names.get(m, m)),
        "seed": prompt["seed"], "warm-up": prompt["valid recall@10 warm-up"],
        "LM stage": prompt["valid recall@10 LM stage"],
        "LM stage needed": prompt.apply(_lm_needs, axis=1),
        "rule": prompt.get("select rule", pd.Series("best", index=prompt.index)),
        "kept": prompt["selected stage"].map(lambda s: "LM stage (Eq. 24)" if s == "rec" else "warm-up")})
    return table.sort_values(["dataset", "model", "seed"]).set_index(["dataset", "model", "seed"]).round(3)


def stage_summary(runs: pd.DataFrame, names: Mapping[str, str] = MODEL_NAMES) -> str:
    """In words: in how many prompt runs validation kept the warm-up, per model, and what that means for the
    scores of Table 2 (numbers in bold as glued values render). A sentence saying so when there is no prompt
    run."""
    prompt = _prompt_runs(runs)
    if prompt.empty:
        return "No UniCRS or MSCRS run is in this build's Table 2, so no stage was chosen."
    warm = prompt["selected stage"].ne("rec")
    trained_lm = prompt["valid recall@10 LM stage"].notna()
    per_model = [f"{names.get(m, m)} **{int(w.sum())} of {len(w)}**"
                 for m, w in warm.groupby(prompt["model"], sort=False)]
    out = [f"Validation kept the warm-up's weights in **{int(warm.sum())} of {len(prompt)}** UniCRS and MSCRS runs "
           f"({', '.join(per_model)})."]
    if int(trained_lm.sum()) < len(prompt):
        out.append(f"**{len(prompt) - int(trained_lm.sum())}** of them trained no language-model stage "
                   f"(`rec_epochs = 0`).")
    if warm.all():
        out.append("Table 2's UniCRS and MSCRS rows therefore score items without the soft prompt of Eq. (24): "
                   "the graphs, the context's text, the mention bonus and the item bias, with the backbone "
                   "entering only through its title readout (chapter 3). The language-model stage, where it "
                   "trained, did not beat the warm-up by the margin the rule asks for.")
    elif warm.any():
        out.append("Where the warm-up was kept, those runs score items without the soft prompt of Eq. (24); the "
                   "others score with it.")
    else:
        out.append("Every run scores items through the soft prompt of Eq. (24).")
    return " ".join(out)


def findings(runs: pd.DataFrame, datasets: Sequence[str], per_sample: PerSample, references: Iterable[str],
             not_baselines: Iterable[str] = ("graph_scorer",), paper: pd.DataFrame | None = None,
             names: Mapping[str, str] = MODEL_NAMES) -> dict[str, object]:
    """The numbers chapter 4 states in its prose, keyed ``<dataset>_<name>`` for every dataset in ``datasets``
    (``nan`` and ``"(not run)"`` where a dataset has no MSCRS run, so every key exists; the prose states them
    through :func:`summary`, which never prints a ``nan``):

    * ``name``, ``runs``: the dataset's name in prose and its number of runs in ``runs`` (0: not run in this build);
    * ``mscrs_r10``, ``mscrs_r50``, ``seeds``, ``seeds_text``: MSCRS's mean test Recall@10/50 and its number of
      seeds (in words: ``"mean over 3 seeds"``, ``"one seed"``);
    * ``best``, ``best_r10``, ``best_r50``, ``vs_best``: the paper's baseline with the best mean Recall@10 (every
      model but MSCRS, ``references`` and ``not_baselines``), its Recall@10/50, and ``"above"``/``"below"``
      (MSCRS's Recall@10 against it, at the 3 decimals the prose prints);
    * ``ref``, ``ref_r10``, ``ref_r50``, ``vs_ref``: the same for the best of ``references``;
    * ``paper_r10``, ``paper_r50``: the paper's MSCRS row;
    * ``unicrs_diff``, ``unicrs_p``, ``samples``: MSCRS against UniCRS, per test sample (Recall@10 averaged over
      seeds), mean difference and one-sided paired t-test p-value, over ``samples`` samples;
    * ``new_r10``, ``pop_new_r10``, ``vs_pop_new``: Recall@10 on the new items (gold not mentioned before), MSCRS
      against popularity.
    """
    if paper is None:
        from .paper_tables import paper_table2

        paper = paper_table2()
    references = list(references)
    nan = float("nan")
    out: dict[str, object] = {}
    for ds in datasets:
        sub = runs[runs.dataset == ds]
        means = sub.groupby("model")[["recall@10", "recall@50", "new/recall@10"]].mean()
        f: dict[str, object] = {"name": DATASET_NAMES.get(ds, ds), "runs": int(len(sub)), "mscrs_r10": nan,
                                "mscrs_r50": nan, "seeds": 0,
                                "seeds_text": "not run",
                                "best": "(not run)", "best_r10": nan, "best_r50": nan, "vs_best": "",
                                "ref": "(not run)", "ref_r10": nan, "ref_r50": nan, "vs_ref": "",
                                "paper_r10": nan, "paper_r50": nan, "unicrs_diff": nan, "unicrs_p": nan,
                                "samples": 0, "new_r10": nan, "pop_new_r10": nan, "vs_pop_new": ""}
        if (ds, "MSCRS") in paper.index:
            f["paper_r10"], f["paper_r50"] = (float(paper.loc[(ds, "MSCRS"), c]) for c in ("recall@10", "recall@50"))
        if "mscrs" in means.index:
            mscrs = means.loc["mscrs"]
            seeds = int(sub.model.eq("mscrs").sum())
            f.update(mscrs_r10=float(mscrs["recall@10"]), mscrs_r50=float(mscrs["recall@50"]), seeds=seeds,
                     seeds_text=f"mean over {seeds} seeds" if seeds > 1 else "one seed",
                     new_r10=float(mscrs["new/recall@10"]))
            baselines = means.drop(["mscrs", *references, *not_baselines], errors="ignore")
            refs = means.loc[[m for m in means.index if m in references]]
            for key, pool in (("best", baselines), ("ref", refs)):
                if not pool.empty:
                    top = pool["recall@10"].idxmax()
                    # in prose a reference is named without its table marker: "Copy context", not "... (ref.)"
                    f.update({key: names[top].split(" (ref.")[0], f"{key}_r10": float(pool.loc[top, "recall@10"]),
                              f"{key}_r50": float(pool.loc[top, "recall@50"]),
                              f"vs_{key}": direction(f["mscrs_r10"], float(pool.loc[top, "recall@10"]), 3)})
            if "popularity" in means.index:
                f["pop_new_r10"] = float(means.loc["popularity", "new/recall@10"])
                f["vs_pop_new"] = direction(f["new_r10"], f["pop_new_r10"], 3)
            if "unicrs" in means.index:
                t = _paired(runs, ds, "mscrs", "unicrs", per_sample, "ttest")
                f.update(unicrs_diff=t.mean_diff, unicrs_p=t.pvalue, samples=t.n)
        out.update({f"{ds}_{k}": v for k, v in f.items()})
    return out


def _number(value: object) -> bool:
    """A number the prose can print: not None, not a bool, not NaN."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # NaN != NaN


def p_text(p: float) -> str:
    """A p-value as the prose prints it, numbers in bold: "p = **0.436**", or "p < **0.001**" (never 0.000)."""
    return "p < **0.001**" if p < 0.001 else f"p = **{p:.3f}**"


def summary(found: Mapping[str, object], dataset: str) -> str:
    """Chapter 4's findings on ``dataset`` as a Markdown paragraph, from :func:`findings`' numbers (``found``), the
    numbers and names in bold as glued values render. A comparison whose runs are missing is left out; a dataset
    with no run, or with no MSCRS run, gets a sentence that says so instead of ``nan``."""
    f = {k[len(dataset) + 1:]: v for k, v in found.items() if k.startswith(f"{dataset}_")}
    name = f"**{f['name']}**"
    if not f.get("runs"):
        return (f"{name} was not run in this build (the chapter's `datasets` parameter left it out), so Table 2 and "
                f"the tests above have no {f['name']} rows.")
    if not f.get("seeds"):
        return f"MSCRS was not run on {name} in this build, so there is no {f['name']} result of MSCRS to state."
    paper = (f"; the paper: **{f['paper_r10']:.3f}** and **{f['paper_r50']:.3f}**"
             if _number(f["paper_r10"]) and _number(f["paper_r50"]) else "")
    out = [f"On {name}, MSCRS reaches Recall@10 **{f['mscrs_r10']:.3f}** and Recall@50 **{f['mscrs_r50']:.3f}** "
           f"(**{f['seeds_text']}**{paper})."]
    against = []
    if f["vs_best"] and _number(f["best_r10"]):
        against.append(f"**{f['vs_best']}** the best of the paper's baselines here, **{f['best']}** "
                       f"(**{f['best_r10']:.3f}**, Recall@50 **{f['best_r50']:.3f}**)")
    if f["vs_ref"] and _number(f["ref_r10"]):
        against.append(f"**{f['vs_ref']}** the strongest reference beyond the paper, **{f['ref']}** "
                       f"(**{f['ref_r10']:.3f}** and **{f['ref_r50']:.3f}**)")
    if against:
        out.append("At Recall@10 it is " + ", and ".join(against) + ".")
    if f["samples"] and _number(f["unicrs_diff"]) and _number(f["unicrs_p"]):
        out.append(f"Against UniCRS, paired over **{f['samples']:,d}** test samples, its Recall@10 differs by "
                   f"**{f['unicrs_diff']:+.3f}** (one-sided t-test, \"MSCRS better\": {p_text(f['unicrs_p'])}).")
    if _number(f["new_r10"]):
        pop = (f", **{f['vs_pop_new']}** popularity's **{f['pop_new_r10']:.3f}**"
               if f["vs_pop_new"] and _number(f["pop_new_r10"]) else "")
        out.append(f"On new items (the gold not mentioned before) its Recall@10 is **{f['new_r10']:.3f}**{pop}.")
    return " ".join(out)
