"""Chapter 4's Table 2 and findings (mscrs_core.book.rec_tables), chapter 5's sweep slicing and ablation numbers
(mscrs_core.book.ablation_tables), on small synthetic results frames."""
import math

import numpy as np
import pandas as pd
import pytest

from mscrs_core.book import ablation_tables, rec_tables
from mscrs_core.book.show import direction
from mscrs_core.experiments.sweep import METRICS

# ---------------------------------------------------------------------------------------------- chapter 4

# mean test Recall@10 per (dataset, model); recall@50 = 2 x recall@10, every other metric 0.1
R10 = {("inspired", "popularity"): [0.10], ("inspired", "text_classifier"): [0.20, 0.22],
       ("inspired", "graph_scorer"): [0.05, 0.07], ("inspired", "copy_context"): [0.25],
       ("inspired", "unicrs"): [0.18, 0.20], ("inspired", "mscrs"): [0.21, 0.23],
       ("redial", "popularity"): [0.05], ("redial", "mscrs"): [0.12]}
# per test sample Recall@10 (mean over seeds): MSCRS finds samples 0-3, UniCRS 0-1, the others sample 0 only
HITS = {"mscrs": [1, 1, 1, 1, 0, 0, 0, 0], "unicrs": [1, 1, 0, 0, 0, 0, 0, 0]}


def _runs() -> pd.DataFrame:
    rows = []
    for (ds, model), values in R10.items():
        for seed, r10 in enumerate(values):
            rows.append({"dataset": ds, "model": model, "seed": seed, "name": f"{ds}-{model}-s{seed}",
                         "seconds": 1.0, **{m: 0.1 for m in METRICS}, "recall@10": r10, "recall@50": 2 * r10,
                         "mentioned/recall@10": 0.5, "new/recall@10": r10 / 2, "new/recall@50": r10,
                         "top1 = popularity's": 1.0 if model == "popularity" else 0.25,
                         "mentioned_count": 2.0, "new_count": 6.0})
    return pd.DataFrame(rows)


def _per_sample(sub: pd.DataFrame, model: str) -> pd.Series:
    return pd.Series(HITS.get(model, [1, 0, 0, 0, 0, 0, 0, 0]), dtype=float)


def test_table2_formats_ours_beside_the_paper():
    table = rec_tables.table2(_runs(), ["inspired"])
    assert table.index.names == ["dataset", "model", "source"]
    assert list(table.columns) == list(METRICS)
    assert table.loc[("inspired", "MSCRS", "ours (2 seeds)"), "recall@10"] == "0.220 ± 0.014"
    assert table.loc[("inspired", "Popularity", "ours (1 seed)"), "recall@10"] == "0.100"  # one run: no ± std
    assert table.loc[("inspired", "MSCRS", "paper"), "recall@10"] == "0.257"
    assert table.loc[("inspired", "BERT (frozen MiniLM)", "paper"), "recall@10"] == "0.189"  # the paper's BERT
    # the paper's rows of the datasets asked for only; ours of every dataset in the runs
    assert {s for d, _, s in table.index if d == "redial"} == {"ours (1 seed)"}
    # rows in the chapter's order: popularity first, MSCRS last, ours before the paper's
    models = list(dict.fromkeys(table.loc["inspired"].index.get_level_values("model")))
    assert models == ["Popularity", "BERT (frozen MiniLM)", "Graphs alone (untrained)", "Copy context (ref.)",
                      "UniCRS", "MSCRS"]
    assert [s for d, m, s in table.index if (d, m) == ("inspired", "MSCRS")] == ["ours (2 seeds)", "paper"]


def test_table2_marks_missing_paper_values():
    paper = pd.DataFrame([{"dataset": "inspired", "model": "MSCRS", **{m: np.nan for m in METRICS}}]).set_index(
        ["dataset", "model"])
    table = rec_tables.table2(_runs(), ["inspired"], paper=paper)
    assert (table.loc[("inspired", "MSCRS", "paper")] == "-").all()


def test_best_baseline_is_the_papers_strongest_baseline():
    runs = _runs()
    tests = rec_tables.best_baseline_tests(runs, ["inspired", "redial"], _per_sample,
                                           not_baselines=("graph_scorer", "copy_context"))
    ins = tests[tests.dataset == "inspired"]
    # copy_context (0.25) is a reference, not a baseline: the best baseline is the text classifier (0.21)
    assert list(ins["MSCRS vs"]) == ["BERT (frozen MiniLM)"] * 2 and list(ins["test"]) == ["ttest", "wilcoxon"]
    assert ins["samples"].tolist() == [8, 8] and ins["mean difference in Recall@10"].tolist() == [0.375, 0.375]
    assert ins["p-value"].tolist()[0] < 0.05 and ins["p-value"].tolist()[1] == 0.125  # Wilcoxon: 3 pairs, exact
    assert tests[tests.dataset == "redial"]["MSCRS vs"].tolist() == ["Popularity"] * 2
    # without MSCRS, or without any baseline, a dataset has no test
    assert rec_tables.best_baseline_tests(runs[runs.model != "mscrs"], ["inspired"], _per_sample).empty
    only = runs[(runs.dataset == "redial") & (runs.model == "mscrs")]
    assert rec_tables.best_baseline_tests(only, ["redial"], _per_sample).empty


def test_slice_table():
    slices = rec_tables.slice_table(_runs())
    assert slices.loc[("inspired", "MSCRS"), "test samples (mentioned / new)"] == "2 / 6"
    assert slices.loc[("inspired", "MSCRS"), "new/recall@10"] == 0.11
    assert slices.loc[("inspired", "Popularity"), "top1 = popularity's"] == 1.0


def test_findings_state_the_comparisons_in_words():
    f = rec_tables.findings(_runs(), ("inspired", "redial", "other"), _per_sample,
                            references=("copy_context", "zero_shot_text", "entity_mean"))
    assert f["inspired_name"] == "INSPIRED" and f["inspired_seeds"] == 2
    assert f["inspired_seeds_text"] == "mean over 2 seeds"
    assert f["redial_seeds_text"] == "one seed" and f["other_seeds_text"] == "not run"
    assert f["inspired_mscrs_r10"] == pytest.approx(0.22) and f["inspired_mscrs_r50"] == pytest.approx(0.44)
    assert (f["inspired_best"], f["inspired_vs_best"]) == ("BERT (frozen MiniLM)", "above")
    assert f["inspired_best_r10"] == pytest.approx(0.21)
    assert (f["inspired_ref"], f["inspired_vs_ref"]) == ("Copy context", "below")
    assert f["inspired_ref_r50"] == pytest.approx(0.5)
    assert f["inspired_paper_r10"] == 0.257
    assert f["inspired_unicrs_diff"] == pytest.approx(0.25) and f["inspired_samples"] == 8
    assert 0 < f["inspired_unicrs_p"] < 0.1 and isinstance(f["inspired_unicrs_p"], float)
    assert f["inspired_new_r10"] == pytest.approx(0.11) and f["inspired_vs_pop_new"] == "above"
    # ReDial has no UniCRS and no reference run; a dataset with no run at all still has every key
    assert math.isnan(f["redial_unicrs_p"]) and f["redial_ref"] == "(not run)" and f["redial_vs_best"] == "above"
    assert f["other_best"] == "(not run)" and math.isnan(f["other_mscrs_r10"]) and f["other_name"] == "other"
    assert {k.split("_", 1)[1] for k in f if k.startswith("inspired_")} == \
           {k.split("_", 1)[1] for k in f if k.startswith("other_")}


def test_tiny_p_values_never_print_as_zero():
    # ReDial's 4,897 paired samples give p far below 0.001: "0.000" / 0.0 would read as "impossible"
    assert rec_tables.p_text(3e-9) == "p < **0.001**" and rec_tables.p_text(0.43612) == "p = **0.436**"
    found = {"redial_name": "ReDial", "redial_runs": 7, "redial_seeds": 1, "redial_seeds_text": "one seed",
             "redial_mscrs_r10": 0.162, "redial_mscrs_r50": 0.343, "redial_paper_r10": float("nan"),
             "redial_paper_r50": float("nan"), "redial_vs_best": "", "redial_best_r10": float("nan"),
             "redial_vs_ref": "", "redial_ref_r10": float("nan"), "redial_samples": 4897,
             "redial_unicrs_diff": 0.0155, "redial_unicrs_p": 2e-12, "redial_new_r10": float("nan")}
    text = rec_tables.summary(found, "redial")
    assert "p < **0.001**" in text and "0.000" not in text


def _stage_runs() -> pd.DataFrame:
    runs = _runs()
    runs["selected stage"] = ""
    runs["select rule"], runs["valid samples"] = "one_se", 100
    runs["valid recall@10 warm-up"] = runs["valid recall@10 LM stage"] = np.nan
    prompt = runs.model.isin(["unicrs", "mscrs"])
    runs.loc[prompt, "selected stage"] = "warm-up (no soft prompt)"
    runs.loc[prompt, "valid recall@10 warm-up"] = 0.3
    runs.loc[prompt, "valid recall@10 LM stage"] = 0.32  # better, but not by one SE (0.046)
    return runs


def test_stage_table_shows_what_the_lm_stage_had_to_beat_and_what_was_kept():
    runs = _stage_runs()
    table = rec_tables.stage_table(runs)
    assert list(table.index.get_level_values("model").unique()) == ["MSCRS", "UniCRS"]  # prompt runs only
    assert len(table) == 5  # 2 + 2 INSPIRED seeds, 1 ReDial
    row = table.loc[("inspired", "MSCRS", 0)]
    assert row["LM stage needed"] == pytest.approx(0.3 + math.sqrt(0.21 / 100), abs=1e-3)
    assert row["kept"] == "warm-up" and row["rule"] == "one_se"
    runs.loc[runs.model.eq("mscrs") & runs.seed.eq(1), "selected stage"] = "rec"
    runs.loc[runs.model.eq("mscrs"), "select rule"] = "best"
    table = rec_tables.stage_table(runs)
    assert table.loc[("inspired", "MSCRS", 1), "kept"] == "LM stage (Eq. 24)"
    assert table.loc[("inspired", "MSCRS", 0), "LM stage needed"] == 0.3  # "best": the warm-up itself
    assert rec_tables.stage_table(_runs()).empty  # results without stage columns


def test_stage_summary_says_whether_table2_scores_through_the_soft_prompt():
    runs = _stage_runs()
    text = rec_tables.stage_summary(runs)
    assert "**5 of 5**" in text and "MSCRS **3 of 3**" in text and "UniCRS **2 of 2**" in text
    assert "without the soft prompt" in text and "trained no language-model stage" not in text
    runs.loc[runs.model.eq("unicrs"), "valid recall@10 LM stage"] = np.nan  # rec_epochs = 0
    assert "**2** of them trained no language-model stage" in rec_tables.stage_summary(runs)
    runs.loc[runs.model.eq("mscrs") & runs.seed.eq(0) & runs.dataset.eq("inspired"), "selected stage"] = "rec"
    text = rec_tables.stage_summary(runs)
    assert "**4 of 5**" in text and "the others score with it" in text
    runs.loc[runs.model.isin(["mscrs", "unicrs"]), "selected stage"] = "rec"
    assert "Every run scores items through the soft prompt" in rec_tables.stage_summary(runs)
    assert "no stage was chosen" in rec_tables.stage_summary(_runs())


def test_direction_words():
    assert direction(0.3, 0.2) == "above" and direction(np.float64(0.1), 0.2) == "below"
    assert direction(1, 1) == "equal to" and direction(float("nan"), 1.0) == "not comparable with"
    assert direction(None, 1.0) == "not comparable with"
    assert direction(2, 1, words=("more than", "less than", "as many as")) == "more than"
    # as the prose prints them: 0.2251 and 0.2249 both read 0.225
    assert direction(0.2251, 0.2249) == "above" and direction(0.2251, 0.2249, digits=3) == "equal to"
    assert direction(np.float32(0.5), float("nan"), digits=3) == "not comparable with"


# ---------------------------------------------------------------------------------------------- chapter 5


def test_split_rows_cuts_the_sweep_back_into_its_groups():
    every = pd.DataFrame({"name": list("abcdef"), "recall@10": range(6)}, index=[5, 4, 3, 2, 1, 0])
    parts = ablation_tables.split_rows(every, {"ablations": 2, "k": 3, "lambda": 0, "graph variants": 1})
    assert list(parts) == ["ablations", "k", "lambda", "graph variants"]
    assert parts["ablations"]["name"].tolist() == ["a", "b"] and parts["k"]["name"].tolist() == ["c", "d", "e"]
    assert parts["lambda"].empty and parts["graph variants"]["name"].tolist() == ["f"]
    assert parts["k"].index.tolist() == [0, 1, 2]  # a fresh index per group
    with pytest.raises(ValueError, match="add up to 5 rows"):
        ablation_tables.split_rows(every, {"a": 2, "b": 3})
    with pytest.raises(ValueError, match="non-negative"):
        ablation_tables.split_rows(every, {"a": 7, "b": -1})


def _ablations() -> pd.DataFrame:
    rows = []
    for variant, trained, alone in (("MSCRS", [0.20, 0.22], [0.07, 0.07]), ("w/o -co", [0.18, 0.18], [0.03, 0.05]),
                                    ("w/o -r", [0.15, 0.17], [0.02, 0.02])):
        for seed in (0, 1):
            rows.append({"variant": variant, "kind": ablation_tables.TRAINED, "seed": seed, "recall@1": 0.0,
                         "recall@10": trained[seed], "recall@50": 0.5})
            rows.append({"variant": variant, "kind": ablation_tables.UNTRAINED, "seed": seed, "recall@1": 0.0,
                         "recall@10": alone[seed], "recall@50": 0.25})
    return pd.DataFrame(rows)


def test_ablation_table_and_differences():
    ab = _ablations()
    table = ablation_tables.ablation_table(ab, ["MSCRS", "w/o -co", "w/o -r"])
    assert table.index.tolist() == ["MSCRS", "w/o -co", "w/o -r"]
    assert table.loc["MSCRS", ("recall@10", ablation_tables.TRAINED)] == 0.21
    assert table.loc["w/o -r", ("recall@10", ablation_tables.UNTRAINED)] == 0.02
    d = ablation_tables.ablation_differences(ab, ["MSCRS", "w/o -co", "w/o -t", "w/o -r"])
    assert d["trained_mscrs"] == pytest.approx(0.21) and d["alone_mscrs"] == pytest.approx(0.07)
    assert d["trained_wo_co_diff"] == pytest.approx(-0.03) and d["trained_wo_r_diff"] == pytest.approx(-0.05)
    assert d["alone_wo_co_diff"] == pytest.approx(-0.03)
    assert math.isnan(d["trained_wo_t_diff"])  # not run: every key still there
    assert ablation_tables.variant_key("w/o -co") == "wo_co" and ablation_tables.variant_key("MSCRS") == "mscrs"


def test_variant_tests_pool_each_variants_seeds_per_sample_and_test_mscrs_better():
    """Per sample the seeds are averaged first; the test is paired over the samples and one-sided."""
    ids = [f"s{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    hits = {  # per run: a 0/1 Recall@10 per test sample
        "m0": rng.random(40) < 0.6, "m1": rng.random(40) < 0.6,  # MSCRS, two seeds
        "r0": np.zeros(40, bool), "r1": np.zeros(40, bool),  # w/o -r: never a hit
        "c0": np.ones(40, bool),  # w/o -co: always a hit (MSCRS cannot be better)
    }
    rows = [("MSCRS", "m0"), ("MSCRS", "m1"), ("w/o -r", "r0"), ("w/o -r", "r1"), ("w/o -co", "c0"),
            ("w/o -i", "m0"), ("w/o -i", "m1")]  # w/o -i without images: MSCRS's own runs
    ab = pd.DataFrame([{"variant": v, "kind": ablation_tables.TRAINED, "name": n} for v, n in rows]
                      + [{"variant": "MSCRS", "kind": ablation_tables.UNTRAINED, "name": "r0"}])  # never tested
    calls = []

    def per_sample(names):
        calls.append(tuple(names))
        return pd.DataFrame({n: hits[n].astype(float) for n in names}, index=ids).mean(axis=1)

    t = ablation_tables.variant_tests(ab, per_sample, ["MSCRS", "w/o -co", "w/o -i", "w/o -r"])
    assert ("m0", "m1") in calls and ("r0", "r1") in calls  # the seeds of a variant come together
    assert set(t["MSCRS vs"]) == {"w/o -co", "w/o -r"}  # the reference itself and w/o -i (same runs) left out
    wo_r = t[(t["MSCRS vs"] == "w/o -r") & (t["test"] == "ttest")].iloc[0]
    expected = (hits["m0"].astype(float) + hits["m1"]).mean() / 2
    assert wo_r["samples"] == 40 and wo_r["seeds"] == 2
    assert wo_r["mean difference in Recall@10"] == pytest.approx(round(expected, 4))
    assert wo_r["p-value"] < 1e-6
    wo_co = t[(t["MSCRS vs"] == "w/o -co") & (t["test"] == "wilcoxon")].iloc[0]
    assert wo_co["p-value"] > 0.99  # one-sided: MSCRS worse is no evidence for it
    with pytest.raises(ValueError, match="reference"):
        ablation_tables.variant_tests(ab[ab["variant"] != "MSCRS"], per_sample, ["w/o -r"])


def test_graph_test_summary_states_the_no_graph_test_or_that_it_did_not_run():
    tests = pd.DataFrame([{"MSCRS vs": "w/o -r", "seeds": 3, "test": "ttest", "samples": 252,
                           "mean difference in Recall@10": 0.0186, "p-value": 0.022},
                          {"MSCRS vs": "w/o -r", "seeds": 3, "test": "wilcoxon", "samples": 252,
                           "mean difference in Recall@10": 0.0185, "p-value": 0.028}])
    text = ablation_tables.graph_test_summary(tests, "the warm-up stage alone")
    assert "**+0.019**" in text and "p = **0.022**" in text and "252 samples" in text and "3 seeds" in text
    assert "significant at 0.05" in text and "not significant" not in text
    tests["p-value"] = 0.4
    assert "not significant at 0.05" in ablation_tables.graph_test_summary(tests, "x")
    assert "not compared" in ablation_tables.graph_test_summary(tests.iloc[0:0], "x")
