"""Sweeps execute only the missing points; a run's result is reused when its configuration matches."""
import shutil

import pytest

from mscrs_core.book import runner
from mscrs_core.experiments import sweep
from mscrs_core.experiments.recommendation import RecRunConfig, run_recommendation


@pytest.fixture
def fake_papermill(monkeypatch):
    """Stand in for the papermill execution of the run chapter: run the point in-process, count calls."""
    calls = []

    def run_chapter(name, profile, *, out_dir=None, overrides=None, output_name=None, **kw):
        assert name == sweep.RUN_CHAPTER
        params = dict(overrides)
        results_dir, data_root = params.pop("results_dir"), params.pop("data_root")
        assert params.pop("sweep_point") is True
        calls.append(output_name)
        run_recommendation(RecRunConfig.from_params(params), results_dir, data_root)

    monkeypatch.setattr(runner, "run_chapter", run_chapter)
    return calls


def test_interrupted_sweep_redoes_only_missing_points(tmp_path, fake_papermill):
    points = [{"model": "popularity", "k": k} for k in (5, 10, 20)]
    first = sweep.run_points(points, profile="smoke", results_dir=tmp_path, log=lambda *_: None)
    assert len(fake_papermill) == 3 and len(first) == 3
    assert first["recall@10"].between(0, 1).all() and set(first["k"]) == {5, 10, 20}
    shutil.rmtree(tmp_path / first["name"].iloc[1])  # as if the sweep had stopped before this point
    fake_papermill.clear()
    again = sweep.run_points(points, profile="smoke", results_dir=tmp_path, log=lambda *_: None)
    assert fake_papermill == [first["name"].iloc[1]]
    assert again["recall@10"].tolist() == first["recall@10"].tolist()


def test_profile_parameters_enter_the_run_name(tmp_path, fake_papermill):
    smoke = sweep.run_points([{"model": "popularity"}], profile="smoke", results_dir=tmp_path, log=lambda *_: None)
    default = sweep.run_points([{"model": "popularity"}], profile="default", results_dir=tmp_path,
                               log=lambda *_: None)
    assert smoke["name"].iloc[0] != default["name"].iloc[0]  # smoke's small samples are another experiment
    assert smoke["max_eval_samples"].iloc[0] == 64 and default["max_eval_samples"].iloc[0] == 0


def test_run_config_rejects_unknown_or_bad_values():
    with pytest.raises(ValueError, match=r"unknown RecRunConfig fields \['epochs'\]"):
        RecRunConfig.from_params({"epochs": 3})
    with pytest.raises(ValueError, match="model must be one of"):
        RecRunConfig(model="bert")
    with pytest.raises(ValueError, match="lambda_ must lie in"):
        RecRunConfig(lambda_=1.5)


def test_seed_mean_per_sample(tmp_path, fake_papermill):
    runs = sweep.run_points([{"model": "popularity", "seed": s} for s in (0, 1)], profile="smoke",
                            results_dir=tmp_path, log=lambda *_: None)
    s = sweep.seed_mean_per_sample(runs, "popularity", tmp_path)
    assert len(s) == 64 and s.between(0, 1).all()


def test_parallel_workers_give_the_serial_results(tmp_path, fake_papermill, monkeypatch):
    """workers=2: shared caches are prepared once here, then every point runs in a real papermill kernel."""
    prepared, real = [], RecRunConfig.prepare_caches
    monkeypatch.setattr(RecRunConfig, "prepare_caches",
                        lambda self, *a, **kw: (prepared.append(self.shared_caches()), real(self, *a, **kw)))
    points = [{"model": "popularity", "k": k} for k in (5, 10, 20)] + [{"model": "graph_scorer", "seed": s}
                                                                      for s in (0, 1)]
    par = sweep.run_points(points, profile="smoke", results_dir=tmp_path / "par", log=lambda *_: None, workers=2)
    assert fake_papermill == []  # nothing ran through the in-process stand-in
    assert prepared == [(("item text features", "inspired"),)]  # once for both graph scorers; popularity: none
    for name in par["name"]:
        assert (tmp_path / "par" / "notebooks" / f"{name}.ipynb").is_file()  # executed by papermill
    ser = sweep.run_points(points, profile="smoke", results_dir=tmp_path / "ser", log=lambda *_: None, workers=1)
    assert len(fake_papermill) == 5
    assert par["name"].tolist() == ser["name"].tolist()
    assert par["recall@10"].tolist() == ser["recall@10"].tolist()  # chapter 3 runs every model kind


def test_schedule_starts_the_costliest_runs_first():
    from mscrs_core.experiments.conversation import ConvRunConfig

    cfgs = {"pop": RecRunConfig(model="popularity"), "tc": RecRunConfig(model="text_classifier"),
            "ins": RecRunConfig(), "red": RecRunConfig(dataset="redial"), "uni": RecRunConfig(model="unicrs")}
    assert sweep.schedule(cfgs) == ["red", "ins", "uni", "tc", "pop"]
    assert RecRunConfig(model="popularity").shared_caches() == ()
    assert ("tiny-dialogpt", "redial", 2.0) in RecRunConfig(dataset="redial").shared_caches()
    assert sweep.schedule({"b": ConvRunConfig(model="backbone"), "m": ConvRunConfig()}) == ["m", "b"]
    assert ConvRunConfig(model="backbone").shared_caches() == (("tiny-dialogpt", "inspired", 2.0),)


def test_bad_worker_counts(monkeypatch):
    monkeypatch.setenv("MSCRS_WORKERS", "two")
    with pytest.raises(ValueError, match="MSCRS_WORKERS must be a positive integer"):
        sweep.default_workers()
    with pytest.raises(ValueError, match="workers must be >= 1"):
        sweep.run_points([], profile="smoke", workers=0)


def test_run_config_from_a_chapter_namespace():
    from mscrs_core.experiments.conversation import ConvRunConfig

    ns = {**{f: getattr(ConvRunConfig(), f) for f in sweep.config_fields(ConvRunConfig)}, "seed": 3, "other": 1}
    cfg = ConvRunConfig.from_namespace(ns)
    assert cfg.seed == 3 and cfg.digest() == ConvRunConfig(seed=3).digest() != ConvRunConfig().digest()
    del ns["lr"]
    with pytest.raises(ValueError, match=r"does not define \['lr'\]"):
        ConvRunConfig.from_namespace(ns)
    assert "loaded" in cfg.run_line({"name": "x", "reused": True, "seconds": 2})
