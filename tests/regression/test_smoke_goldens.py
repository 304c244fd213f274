"""The smoke runs' numbers equal the committed goldens (``goldens.py`` says what, how close, and how to
regenerate them: ``make goldens``)."""
from pathlib import Path

import goldens
import pytest


def test_smoke_runs_match_the_goldens(smoke_root, golden_file):
    path, own = golden_file
    problems = goldens.compare(goldens.load_goldens(path, own), goldens.collect(smoke_root))
    where = "" if own else (f" (no goldens of this platform, {goldens.platform_key()}: compared with {Path(path).name} "
                            f"at the cross-platform tolerance; `make goldens` records this platform's)")
    assert not problems, (f"{len(problems)} smoke number(s) moved{where}; if the change is intended, regenerate with "
                          f"`make goldens` and commit {path}:\n" + "\n".join(problems))


def test_goldens_are_this_platforms_else_anothers_compared_loosely(tmp_path, monkeypatch):
    """Float32 sums differ between AVX2 and AVX-512 kernels: each platform compares with its own file exactly,
    and with another platform's only at the cross-platform tolerance."""
    monkeypatch.setattr(goldens, "platform_key", lambda: "x86_64-AVX2")
    with pytest.raises(FileNotFoundError, match="make goldens"):
        goldens.golden_file(tmp_path)
    (tmp_path / "smoke-x86_64-AVX512.json").write_text("{}")
    assert goldens.golden_file(tmp_path) == (tmp_path / "smoke-x86_64-AVX512.json", False)
    (tmp_path / "smoke-x86_64-AVX2.json").write_text("{}")
    assert goldens.golden_file(tmp_path) == (tmp_path / "smoke-x86_64-AVX2.json", True)
    run = {"config": {}, "numbers": {"test/recall@10": 0.1234}}
    golden = {"tolerance": {"rel": 1e-6, "abs": 1e-9}, "runs": {"r": run}}
    other_cpu = {"r": {"dir": "x", "config": {}, "numbers": {"test/recall@10": 0.1234 + 3e-4}}}
    assert goldens.compare(golden, other_cpu) and not goldens.compare(goldens.cross_platform(golden), other_cpu)
    moved = {"r": {"dir": "x", "config": {}, "numbers": {"test/recall@10": 0.1334}}}
    assert goldens.compare(goldens.cross_platform(golden), moved)


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
