"""Sweeps execute only the missing points; a run's result is reused when its configuration matches."""
import dataclasses
import functools
import shutil

import pandas as pd
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


def test_relative_results_dir_is_the_callers_not_the_chapters(tmp_path, fake_papermill, monkeypatch):
    # the runs execute in the chapter folder: a relative path must reach them resolved against the caller's cwd
    seen, fake = [], runner.run_chapter
    monkeypatch.setattr(runner, "run_chapter", lambda *a, **kw: (seen.append(kw["overrides"]), fake(*a, **kw)))
    monkeypatch.chdir(tmp_path)
    runs = sweep.run_points([{"model": "popularity"}], profile="smoke", results_dir="rel/runs", data_root=None,
                            log=lambda *_: None)
    assert [o["results_dir"] for o in seen] == [str(tmp_path / "rel" / "runs")]
    assert (tmp_path / "rel" / "runs" / runs["name"].iloc[0] / "result.json").is_file()


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
        RecRunConfig.of(lambda_=1.5)


def test_seed_mean_per_sample(tmp_path, fake_papermill):
    runs = sweep.run_points([{"model": "popularity", "seed": s} for s in (0, 1)], profile="smoke",
                            results_dir=tmp_path, log=lambda *_: None)
    s = sweep.seed_mean_per_sample(runs, "popularity", tmp_path)
    assert len(s) == 64 and s.between(0, 1).all()
    names = runs["name"].tolist()
    one = sweep.per_sample(sweep.load_result(tmp_path / names[0]))
    pd.testing.assert_series_equal(sweep.runs_mean_per_sample(names[:1] * 2, tmp_path), one, check_names=False)
    with pytest.raises(ValueError, match="no run names"):
        sweep.runs_mean_per_sample([], tmp_path)


def test_results_frame_records_which_stage_a_prompt_run_kept():
    from mscrs_core.experiments.recommendation.run import LEGACY_WARM_STAGE, WARM_STAGE

    test = {m: 0.1 for m in sweep.METRICS}
    base = {"test": test, "name": "x", "samples": {"train": 10, "valid": 271, "test": 5}}
    records = [{**base, "config": {"model": "popularity"}},
               {**base, "config": {"model": "mscrs"}, "selected_stage": WARM_STAGE, "select_rule": "one_se",
                "stage_valid_recall@10": {WARM_STAGE: 0.317, "rec": 0.328}},
               {**base, "config": {"model": "unicrs"}, "selected_stage": "rec",  # written before the readout
                "stage_valid_recall@10": {LEGACY_WARM_STAGE: 0.30, "rec": None}}]
    frame = sweep.results_frame(records).set_index("model")
    assert frame.loc["mscrs", "selected stage"] == WARM_STAGE and frame.loc["mscrs", "select rule"] == "one_se"
    assert frame.loc["mscrs", "valid recall@10 warm-up"] == 0.317
    assert frame.loc["mscrs", "valid recall@10 LM stage"] == 0.328 and frame.loc["mscrs", "valid samples"] == 271
    assert frame.loc["unicrs", "valid recall@10 warm-up"] == 0.30 and frame.loc["unicrs", "select rule"] == "best"
    assert pd.isna(frame.loc["unicrs", "valid recall@10 LM stage"])
    assert pd.isna(frame.loc["popularity", "selected stage"])  # not a prompt run


def test_parallel_workers_give_the_serial_results(tmp_path, fake_papermill):
    """workers=2: one preparation job fills the shared cache, then every point runs in a real papermill kernel."""
    points = [{"model": "popularity", "k": k} for k in (5, 10, 20)] + [{"model": "graph_scorer", "seed": s}
                                                                      for s in (0, 1)]
    lines: list[str] = []
    par = sweep.run_points(points, profile="smoke", results_dir=tmp_path / "par", log=lines.append, workers=2)
    assert fake_papermill == []  # nothing ran through the in-process stand-in
    preps = [line for line in lines if line.startswith("prepare")]
    assert preps == ["prepare item text features for inspired"]  # once for both graph scorers; popularity: none
    started = [line for line in lines if line.startswith(("prepare", "finished"))]
    first_scorer = min(i for i, line in enumerate(started) if "graph_scorer" in line)
    assert started.index("finished: " + preps[0]) < first_scorer  # a graph scorer ran after its cache existed
    for name in par["name"]:
        assert (tmp_path / "par" / "notebooks" / f"{name}.ipynb").is_file()  # executed by papermill
    ser = sweep.run_points(points, profile="smoke", results_dir=tmp_path / "ser", log=lambda *_: None, workers=1)
    assert len(fake_papermill) == 5
    assert par["name"].tolist() == ser["name"].tolist()
    assert par["recall@10"].tolist() == ser["recall@10"].tolist()  # chapter 3 runs every model kind


def test_plan_prepares_each_cache_once_and_runs_wait_only_for_their_own():
    from mscrs_core.experiments import sweep_plan

    tiny = functools.partial(RecRunConfig.of, backbone="tiny-dialogpt")  # a backbone trained per dataset
    cfgs = {"red": tiny(dataset="redial"), "red-uni": tiny(dataset="redial", model="unicrs"),
            **{f"ins{s}": tiny(seed=s) for s in range(3)}, "ins-tc": tiny(model="text_classifier"),
            "pop": tiny(model="popularity")}
    jobs = sweep_plan.plan_jobs(cfgs)
    preps = {n: j for n, j in jobs.items() if j.kind == sweep_plan.PREPARE}
    keys = [k for j in preps.values() for k in j.keys]
    assert len(keys) == len(set(keys)) == len({k for c in cfgs.values() for k in c.shared_caches()})
    assert jobs["pop"].deps == frozenset()  # nothing to wait for
    assert jobs["red"].deps == jobs["red-uni"].deps  # the same ReDial backbone and features
    assert not jobs["ins0"].deps & jobs["red"].deps  # INSPIRED runs never wait for ReDial's caches
    # durations as measured on 2 cores (s): the ReDial backbone trains while INSPIRED runs go on
    seconds = {n: 330 if n == "red" else 285 if n == "red-uni" else 7 if n == "ins-tc" else 1 if n == "pop" else 70
               for n in cfgs}
    seconds.update({n: 170 if "redial" in n else 5 for n in preps})  # INSPIRED's caches exist (chapter 3)
    wall, order = sweep_plan.simulate(jobs, seconds, workers=2)
    assert order[:2] == list(preps)[:2]  # preparations start first
    assert order.index("ins0") < order.index("red")  # INSPIRED does not wait for ReDial's backbone
    barrier = sweep_plan.simulate(preps, seconds, workers=2)[0] + sweep_plan.simulate(
        {n: dataclasses.replace(j, deps=frozenset()) for n, j in jobs.items() if n not in preps},
        seconds, workers=2)[0]
    assert wall < barrier - 60  # every preparation first, then the runs: idle cores meanwhile
    with pytest.raises(ValueError, match="wait on each other"):
        sweep_plan.simulate({"a": dataclasses.replace(jobs["pop"], deps=frozenset({"b"}))}, {"a": 1}, 2)


def test_schedule_starts_the_costliest_runs_first():
    from mscrs_core.experiments.conversation import ConversationRunConfig

    cfgs = {"pop": RecRunConfig(model="popularity"), "tc": RecRunConfig(model="text_classifier"),
            "ins": RecRunConfig(), "red": RecRunConfig(dataset="redial"), "uni": RecRunConfig(model="unicrs")}
    assert sweep.schedule(cfgs) == ["red", "ins", "uni", "tc", "pop"]
    assert RecRunConfig(model="popularity").shared_caches() == ()
    assert ("tiny-dialogpt", "redial", 2.0) in RecRunConfig.of(dataset="redial", backbone="tiny-dialogpt").shared_caches()
    assert ("backbone", "smollm2-135m") in RecRunConfig(dataset="redial").shared_caches()
    assert sweep.schedule({"b": ConversationRunConfig(model="backbone"), "m": ConversationRunConfig()}) == ["m", "b"]
    assert ConversationRunConfig(model="backbone").shared_caches() == (("backbone", "smollm2-135m"),)


def test_bad_worker_counts(monkeypatch):
    monkeypatch.setenv("MSCRS_WORKERS", "two")
    with pytest.raises(ValueError, match="MSCRS_WORKERS must be a positive integer"):
        sweep.default_workers()
    with pytest.raises(ValueError, match="workers must be >= 1"):
        sweep.run_points([], profile="smoke", workers=0)


def test_run_config_from_a_chapter_namespace():
    from mscrs_core.experiments.conversation import ConversationRunConfig

    ns = {**{f: getattr(ConversationRunConfig(), f) for f in sweep.config_fields(ConversationRunConfig)},
          "seed": 3, "other": 1}
    cfg = ConversationRunConfig.from_namespace(ns)
    assert cfg.seed == 3 and cfg.digest() == ConversationRunConfig(seed=3).digest() != ConversationRunConfig().digest()
    del ns["lr"]
    with pytest.raises(ValueError, match=r"does not define \['lr'\]"):
        ConversationRunConfig.from_namespace(ns)
    assert "loaded" in cfg.run_line({"name": "x", "reused": True, "seconds": 2})


def test_lm_stage_must_beat_the_warm_up_by_one_standard_error():
    from mscrs_core.experiments.recommendation import lm_stage_wins

    se = (0.3 * 0.7 / 100) ** 0.5  # 0.0458
    assert not lm_stage_wins(0.3, 0.3 + se - 1e-3, 100)
    assert lm_stage_wins(0.3, 0.3 + se + 1e-3, 100)
    assert lm_stage_wins(0.3, 0.31, 100, "best") and not lm_stage_wins(0.3, 0.3, 100, "best")
    with pytest.raises(ValueError, match="rule"):
        lm_stage_wins(0.3, 0.4, 100, "max")


def test_data_provenance_names_each_dataset_digest_and_flags_mixed_data():
    import pandas as pd

    from mscrs_core.experiments.sweep import data_provenance

    one = pd.DataFrame({"dataset": ["inspired", "inspired", "redial"], "data fingerprint": ["abc", "abc", "def"]})
    assert data_provenance(one).endswith("inspired abc; redial def.")
    mixed = pd.DataFrame({"dataset": ["inspired", "inspired"], "data fingerprint": ["abc", "xyz"]})
    assert "MIXED data digests abc, xyz" in data_provenance(mixed)
    assert "no fingerprint recorded" in data_provenance(pd.DataFrame({"dataset": ["redial"], "data fingerprint": [""]}))


def test_cpus_and_workers_come_from_the_environment_as_positive_integers(monkeypatch):
    from mscrs_core.experiments.sweep import available_cpus, default_workers

    monkeypatch.setenv("MSCRS_CPUS", "3")
    monkeypatch.setenv("MSCRS_WORKERS", "2")
    assert (available_cpus(), default_workers()) == (3, 2)
    for var, fn in (("MSCRS_CPUS", available_cpus), ("MSCRS_WORKERS", default_workers)):
        monkeypatch.setenv(var, "0")
        with pytest.raises(ValueError, match=var):
            fn()


def test_a_track_sweep_runs_more_points_when_another_track_hands_its_cores_over(tmp_path, monkeypatch):
    """In a book track the sweep runs points in workers even with one worker; when the share file grows from 1 to
    2 cores it runs two at once, each still with one thread (a point's numbers must not depend on the timing)."""
    import concurrent.futures as cf

    from mscrs_core import core_share

    share = tmp_path / "share"
    core_share.write_share(share, 1)
    monkeypatch.setenv(core_share.SHARE_ENV, str(share))
    monkeypatch.setenv("MSCRS_CPUS", "1")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    pending, seen = [], []

    class Pool:
        def __init__(self, n, mp_context=None):
            self.n = n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args):
            assert fn is sweep._execute and args[-1] == 1  # one thread each, before and after the hand-over
            fut = cf.Future()
            pending.append(fut)
            seen.append(sum(not f.done() for f in pending))
            return fut

    waits = []

    def wait(futures, timeout=None, return_when=None):
        assert timeout is not None  # the sweep looks at the share file again while its points run
        waits.append(1)
        if len(waits) == 1:  # the other track ends while this sweep's first point runs: nothing finished yet
            core_share.write_share(share, 2)
            return set(), set(futures)
        first = next(f for f in pending if not f.done())
        first.set_result(None)
        return {first}, set()

    monkeypatch.setattr(cf, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(cf, "wait", wait)
    configs = {f"p{k}": RecRunConfig.of(model="popularity", k=k) for k in (5, 10, 20, 40)}
    lines: list[str] = []
    sweep._run_parallel(configs, {n: {} for n in configs}, sweep.RUN_CHAPTER, "smoke", str(tmp_path), None, 1,
                        lines.append)
    assert seen == [1, 2, 2, 2]  # one at a time, then two at once, without waiting for the first to finish
    assert "more when another track ends" in lines[0]
    assert sweep.points_at_once(1, 1, None, 2) == 1 and sweep.points_at_once(2, 1, str(share), 2) == 2
    core_share.write_share(share, 8)
    assert sweep.points_at_once(1, 1, str(share), 2) == 2  # never more processes than the pool has
