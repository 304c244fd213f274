"""Sweeps of runs, each point a papermill execution of a run chapter.

Two run chapters exist: ``03_recommendation_run`` (a point is a dict of
:class:`~mscrs_core.experiments.recommendation.RecRunConfig` fields) and ``06_conversation_run``
(:class:`~mscrs_core.experiments.conversation.ConvRunConfig` fields). For each point
:func:`run_points` looks for a finished ``result.json`` under ``results_dir``; only missing points
are executed (the run chapter under the given profile, the point's fields as parameters), so an
interrupted sweep resumes without redoing finished points. The results come back as one table.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .recommendation import RecRunConfig, default_results_dir, load_result

RUN_CHAPTER = "03_recommendation_run"
CONV_RUN_CHAPTER = "06_conversation_run"
METRICS = ("recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50")


def run_points(points: Iterable[dict[str, Any]], *, profile: str, base: dict[str, Any] | None = None,
               results_dir: str | os.PathLike | None = None, data_root: str | None = None,
               chapter: str = RUN_CHAPTER, log=print) -> pd.DataFrame:
    """Execute the missing points and return every point's result as a row."""
    from ..book import runner

    results = Path(results_dir) if results_dir else default_results_dir()
    config_cls = run_config_class(chapter)
    # the run chapter's own profile parameters apply to every point, as they will inside the run
    fields = set(config_fields(config_cls))
    profile_params = {k: v for k, v in runner.profile_parameters(chapter, profile).items() if k in fields}
    rows = []
    for point in points:
        params = {**profile_params, **(base or {}), **point}
        cfg = config_cls.from_params(params)
        run_dir = results / cfg.name()
        if not (run_dir / "result.json").is_file():
            log(f"running {cfg.name()}")
            runner.run_chapter(chapter, profile, out_dir=results / "notebooks", output_name=cfg.name(),
                               overrides={**params, "results_dir": str(results), "data_root": data_root})
        else:
            log(f"finished already: {cfg.name()}")
        rows.append(load_result(run_dir))
    return results_frame(rows)


def run_config_class(chapter: str) -> type:
    """The run configuration class whose fields a run chapter takes as parameters."""
    if chapter == RUN_CHAPTER:
        return RecRunConfig
    if chapter == CONV_RUN_CHAPTER:
        from .conversation import ConvRunConfig

        return ConvRunConfig
    raise ValueError(f"{chapter!r} is not a run chapter; expected {RUN_CHAPTER!r} or {CONV_RUN_CHAPTER!r}")


def results_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its configuration fields, every test metric (``excl/`` ones included) and wall time."""
    rows = []
    for r in records:
        row = dict(r["config"])
        if "recall@10" in r["test"]:  # recommendation runs: always the full metric set, NaN where absent
            row.update({m: r["test"][m] for m in METRICS})
            row.update({f"excl/{m}": r["test"].get(f"excl/{m}", np.nan) for m in METRICS})
        else:
            row.update({m: v for m, v in r["test"].items() if isinstance(v, (int, float))})
        if "valid" in r:
            row["valid recall@10"] = r["valid"]["recall@10"]
        row["seconds"] = r.get("seconds", np.nan)
        row["name"] = r["name"]
        rows.append(row)
    return pd.DataFrame(rows)


def per_sample(record: dict[str, Any], metric: str = "recall@10") -> pd.Series:
    """A run's per-test-sample metric, indexed by sample id (for paired tests)."""
    return pd.Series(record["test_per_sample"][metric], index=record["test_sample_ids"], name=record["name"])


def config_fields(config_cls: type = RecRunConfig) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls)]


def seed_mean_per_sample(runs: pd.DataFrame, model: str, results_dir: str | os.PathLike | None = None,
                         metric: str = "recall@10") -> pd.Series:
    """Per test sample, ``metric`` averaged over the seeds of ``model``'s runs in ``runs``."""
    root = Path(results_dir) if results_dir else default_results_dir()
    recs = [per_sample(load_result(root / n), metric) for n in runs.loc[runs.model == model, "name"]]
    if not recs:
        raise ValueError(f"no runs of model {model!r}")
    return pd.concat(recs, axis=1).mean(axis=1)
