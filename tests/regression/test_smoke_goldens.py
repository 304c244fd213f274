"""The smoke runs' numbers equal the committed goldens (``goldens.py`` says what, how close, and how to
regenerate them: ``make goldens``)."""
import json
from pathlib import Path

import goldens


def test_smoke_runs_match_the_goldens(smoke_root, golden_file):
    golden = json.loads(Path(golden_file).read_text())
    problems = goldens.compare(golden, goldens.collect(smoke_root))
    assert not problems, (f"{len(problems)} smoke number(s) moved; if the change is intended, regenerate with "
                          f"`make goldens` and commit {golden_file}:\n" + "\n".join(problems))


def test_comparison_names_the_run_and_the_number():
    run = {"config": {"lm_scale": 0.1}, "numbers": {"test/recall@10": 0.1234, "selected_stage": "warm-up"}}
    golden = {"tolerance": {"rel": 1e-6, "abs": 1e-9}, "runs": {"inspired-mscrs-gcti-k10-l0.5-s0": run}}
    same = {"inspired-mscrs-gcti-k10-l0.5-s0": {"dir": "x", **run}}
    assert goldens.compare(golden, same) == []
    near = {"inspired-mscrs-gcti-k10-l0.5-s0": {"dir": "x", "config": {"lm_scale": 0.1},
                                                "numbers": {"test/recall@10": 0.1234 * (1 + 1e-8),
                                                            "selected_stage": "warm-up"}}}
    assert goldens.compare(golden, near) == []
    moved = {"inspired-mscrs-gcti-k10-l0.5-s0": {"dir": "x", "config": {"lm_scale": 0.2},
                                                 "numbers": {"test/recall@10": 0.1301, "selected_stage": "warm-up"}}}
    msg = goldens.compare(golden, moved)
    assert msg[0] == ("inspired-mscrs-gcti-k10-l0.5-s0 test/recall@10: golden 0.1234, got 0.1301 "
                      "(tol rel 1e-06, abs 1e-09)")
    assert "lm_scale 0.1 -> 0.2" in msg[1]
    assert "golden run missing" in goldens.compare(golden, {})[0]


def test_numbers_skip_timings_paths_and_per_sample_lists():
    result = {"name": "inspired-popularity-gcti-k10-l0.5-s0-abc", "config": {}, "seconds": 3.0,
              "backbone": "/somewhere", "test": {"recall@10": 0.5, "count": 64.0},
              "test_per_sample": {"recall@10": [1.0, 0.0]},
              "history": [{"stage": "warm", "epoch": 0, "train_loss": 1.5, "seconds": 2.0}],
              "graphs": {"active_graphs": ["kg", "collab"]}}
    assert goldens.numbers(result) == {"test/recall@10": 0.5, "test/count": 64.0,
                                       "history/warm epoch 0/train_loss": 1.5, "graphs/active_graphs": "kg, collab"}
