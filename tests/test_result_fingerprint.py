"""Results that know where they came from (issue 12, item 3): a finished ``result.json`` is reused only under the
same configuration, data, package version and backbone, and only when it was not edited since the run wrote it;
otherwise the run is recomputed with a logged line saying why."""
import json
import logging
import shutil
from pathlib import Path

import pytest

from mscrs_core.book import runner
from mscrs_core.data import ChecksumError, DataError
from mscrs_core.data import files as data_files
from mscrs_core.data.files import resolve_data_root
from mscrs_core.data.manifest import data_digest, write_manifest
from mscrs_core.experiments import fingerprint as fp
from mscrs_core.experiments import sweep
from mscrs_core.experiments.recommendation import RecRunConfig, load_result, run_recommendation
from mscrs_core.experiments.sweep import RUN_CHAPTER, config_fields

REAL = resolve_data_root()


def smoke_config(**kw) -> RecRunConfig:
    """A cheap run: chapter 3's smoke-profile parameters, the popularity model, all training samples."""
    fields = set(config_fields(RecRunConfig))
    params = {k: v for k, v in runner.profile_parameters(RUN_CHAPTER, "smoke").items() if k in fields}
    return RecRunConfig.from_params({**params, "model": "popularity", "max_train_samples": 0, **kw})


@pytest.fixture
def root(tmp_path) -> Path:
    """A small data root of one's own: INSPIRED copied, with its own manifest."""
    r = tmp_path / "data"
    shutil.copytree(REAL / "inspired", r / "inspired")
    for p in [r, *r.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    write_manifest(r)
    return r


@pytest.fixture(autouse=True)
def _checks_back_on():
    yield
    data_files.set_default_check(True)


def result_path(results: Path, cfg) -> Path:
    return results / cfg.name() / "result.json"


def test_changed_data_is_recomputed_with_new_numbers(root, tmp_path, caplog):
    cfg, results = smoke_config(), tmp_path / "runs"
    first = run_recommendation(cfg, results, root)
    assert first["reused"] is False and first["fingerprint"]["data"] == data_digest("inspired", root)
    assert first["fingerprint"]["data_root"] == str(root) and first["fingerprint"]["backbone"] is None
    assert run_recommendation(cfg, results, root)["reused"] is True
    # one file changes: the training split becomes another split
    train = root / "inspired" / "train_data_dbpedia.jsonl"
    shutil.copyfile(root / "inspired" / "valid_data_dbpedia.jsonl", train)
    with pytest.raises(ChecksumError, match=r"train_data_dbpedia\.jsonl.*mscrs data manifest"):
        run_recommendation(cfg, results, root)  # the manifest no longer matches: neither reused nor recomputed
    write_manifest(root)
    with caplog.at_level(logging.WARNING, logger="mscrs_core.results"):
        again = run_recommendation(cfg, results, root)
    assert again["reused"] is False
    assert any("computed on other data" in r.getMessage() and str(result_path(results, cfg)) in r.getMessage()
               for r in caplog.records)
    assert again["samples"]["train"] != first["samples"]["train"]
    assert again["test"] != first["test"]  # new popularity counts, new numbers
    assert again["fingerprint"]["data"] == data_digest("inspired", root) != first["fingerprint"]["data"]
    assert load_result(results / cfg.name())["test"] == again["test"]
    assert run_recommendation(cfg, results, root)["reused"] is True


def test_a_hand_edited_result_is_not_trusted(tmp_path, caplog):
    cfg, results = smoke_config(), tmp_path / "runs"
    honest = run_recommendation(cfg, results)["test"]["recall@10"]
    p = result_path(results, cfg)
    rec = json.loads(p.read_text())
    rec["test"]["recall@10"] = 0.999
    p.write_text(json.dumps(rec, indent=1))
    with caplog.at_level(logging.WARNING, logger="mscrs_core.results"):
        res = run_recommendation(cfg, results)
    assert res["reused"] is False and res["test"]["recall@10"] == honest != 0.999
    assert any("edited after the run wrote it" in r.getMessage() and str(p) in r.getMessage() for r in caplog.records)
    # a fingerprint removed (or a result from before fingerprints existed): recomputed too
    rec = json.loads(p.read_text())
    del rec["fingerprint"]
    p.write_text(json.dumps(rec))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mscrs_core.results"):
        assert run_recommendation(cfg, results)["reused"] is False
    assert any("has no fingerprint" in r.getMessage() for r in caplog.records)


def test_a_truncated_result_names_its_path_and_is_recomputed(tmp_path, caplog):
    cfg, results = smoke_config(), tmp_path / "runs"
    honest = run_recommendation(cfg, results)["test"]
    p = result_path(results, cfg)
    p.write_text(p.read_text()[:200])
    with pytest.raises(DataError, match=rf"{p}:\d+: malformed JSON") as err:
        load_result(p.parent)
    assert not isinstance(err.value, json.JSONDecodeError)
    with caplog.at_level(logging.WARNING, logger="mscrs_core.results"):
        res = run_recommendation(cfg, results)
    assert res["reused"] is False and res["test"] == honest
    assert any(str(p) in r.getMessage() and "malformed JSON" in r.getMessage() for r in caplog.records)
    p.write_text("[1, 2]")
    with pytest.raises(DataError, match=rf"{p}: expected a JSON object"):
        load_result(p.parent)


def test_another_version_or_backbone_is_recomputed(tmp_path, monkeypatch):
    cfg = smoke_config(model="mscrs")
    monkeypatch.setattr(fp, "backbone_part", lambda *a, **k: "aaaaaaaaaaaa")  # no backbone is loaded here
    record = {"config": cfg.flat(), "name": cfg.name(), "test": {"recall@10": 0.25}}
    p = tmp_path / cfg.name() / "result.json"
    p.parent.mkdir()
    p.write_text(json.dumps(fp.seal(record, fp.run_fingerprint(cfg))))
    assert fp.stale_reason(p, cfg) == (None, json.loads(p.read_text()))
    monkeypatch.setattr(fp, "package_version", lambda: "99.0")
    assert "computed by mscrs_core" in fp.stale_reason(p, cfg)[0]
    monkeypatch.undo()
    monkeypatch.setattr(fp, "backbone_part", lambda *a, **k: "bbbbbbbbbbbb")
    assert "another backbone" in fp.stale_reason(p, cfg)[0]
    # a run written here before the backbone identity left out the project's path: its legacy identity matches
    monkeypatch.setattr(fp, "backbone_part", lambda *a, legacy=False, **k: "aaaaaaaaaaaa" if legacy else "cccc")
    assert fp.stale_reason(p, cfg)[0] is None
    assert fp.stale_reason(p, smoke_config(model="mscrs", seed=1))[0].endswith("written for another configuration")
    assert fp.stale_reason(tmp_path / "nothing.json", cfg) == ("missing", None)


def test_backbone_fingerprint_is_recorded_for_prompt_models():
    assert fp.backbone_part(smoke_config()) is None  # popularity: no language model
    tiny = smoke_config(model="mscrs")
    assert tiny.backbone == "tiny-dialogpt"
    first = fp.backbone_part(tiny)
    assert isinstance(first, str) and len(first) == 12 and fp.backbone_part(tiny) == first


def test_content_digest_survives_the_round_trip():
    cfg = smoke_config()
    record = {"config": cfg.flat(), "name": cfg.name(), "test": {"recall@10": float("nan"), "n": (1, 2)},
              "reused": False}
    sealed = fp.seal(record, {"config": cfg.digest(), "data": "d", "data_root": "/x", "version": "v",
                              "backbone": None})
    assert "reused" not in sealed
    back = json.loads(json.dumps(sealed, indent=1))
    assert fp.content_digest(back) == sealed["fingerprint"]["content"]
    back["fingerprint"]["data"] = "other"  # the fingerprint itself is part of the content
    assert fp.content_digest(back) != sealed["fingerprint"]["content"]


def test_start_run_removes_checkpoints_of_another_fingerprint(tmp_path, caplog):
    run_dir = tmp_path / "run"
    a = {"config": "c", "data": "d1", "version": "v", "backbone": None}
    fp.start_run(run_dir, a)
    (run_dir / "rec").mkdir()
    (run_dir / "rec" / "last.pt").write_bytes(b"checkpoint")
    fp.start_run(run_dir, a)  # same fingerprint: an interrupted run resumes from its checkpoints
    assert (run_dir / "rec" / "last.pt").is_file()
    with caplog.at_level(logging.WARNING, logger="mscrs_core.results"):
        fp.start_run(run_dir, {**a, "data": "d2"})
    assert not (run_dir / "rec").exists() and (run_dir / fp.RUN_MARKER).is_file()
    assert any("removing rec" in r.getMessage() for r in caplog.records)


def test_a_sweep_recomputes_only_the_stale_point(tmp_path, monkeypatch):
    calls = []

    def run_chapter(name, profile, *, out_dir=None, overrides=None, output_name=None, **kw):
        params = dict(overrides)
        results_dir, data_root = params.pop("results_dir"), params.pop("data_root")
        params.pop("sweep_point")
        calls.append(output_name)
        run_recommendation(RecRunConfig.from_params(params), results_dir, data_root)

    monkeypatch.setattr(runner, "run_chapter", run_chapter)
    points = [{"model": "popularity", "k": k} for k in (5, 10)]
    first = sweep.run_points(points, profile="smoke", results_dir=tmp_path, log=lambda *_: None)
    assert len(calls) == 2
    edited = tmp_path / first["name"].iloc[1] / "result.json"
    rec = json.loads(edited.read_text())
    rec["test"]["recall@10"] = 0.999
    edited.write_text(json.dumps(rec))
    calls.clear()
    lines = []
    again = sweep.run_points(points, profile="smoke", results_dir=tmp_path, log=lines.append)
    assert calls == [first["name"].iloc[1]]
    assert again["recall@10"].tolist() == first["recall@10"].tolist()
    assert any(line.startswith(f"recomputing {first['name'].iloc[1]}") and "edited" in line for line in lines)
