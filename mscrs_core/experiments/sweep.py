"""Sweeps of runs, each point a papermill execution of a run chapter.

Two run chapters exist: ``03_recommendation_run`` (a point is a dict of
:class:`~mscrs_core.experiments.recommendation.RecRunConfig` fields) and ``06_conversation_run``
(:class:`~mscrs_core.experiments.conversation.ConversationRunConfig` fields). For each point
:func:`run_points` looks for a finished ``result.json`` under ``results_dir``; only missing points (and
those whose result is stale: other data, version or backbone, or edited, :mod:`.fingerprint`) are executed
(the run chapter under the given profile, the point's fields as parameters), so an interrupted sweep resumes
without redoing finished points. The results come back as one table.

``workers`` (default ``$MSCRS_WORKERS``, else 1) runs that many points at once, each kernel with
``available_cpus() // workers`` torch threads: on 2 cores two one-thread runs finish sooner than two two-thread runs
one after the other, because the small matrices of these models do not keep two threads busy. In a track of
``mscrs book --tracks`` (``$MSCRS_CORE_SHARE`` set) the sweep runs its points in worker processes even with one
worker, and when another track ends and hands its cores over (:mod:`~mscrs_core.core_share`) it starts more points
at once, each with the same threads: a point's numbers never depend on when that happened. The caches
the runs share (a dataset's miniature backbone, item and context features: the run configuration's
``shared_caches``) are filled once each, by a preparation job in the pool; a run starts when its own caches
exist, so other runs go on meanwhile, and the costliest runs start first (:mod:`.sweep_plan`). Each worker (and an
in-process sweep) executes its points one after the other in one kept kernel, emptied between points
(:mod:`~mscrs_core.book.warm_kernel`: about 9 s less per point; ``MSCRS_FRESH_KERNELS=1`` gives each point a kernel
of its own). The thread
count can change the last digits of float sums, not the conclusions; a given configuration of tracks and
workers is deterministic.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..core_share import SHARE_ENV, positive_int_env, read_share
from ..data.files import default_check
from .fingerprint import stale_reason
from .recommendation import RecRunConfig, default_results_dir, load_result
from .recommendation.run import LEGACY_WARM_STAGE, WARM_STAGE
from .sweep_plan import PREPARE, RUN, next_job, plan_jobs, schedule  # noqa: F401  (schedule: re-exported)

RUN_CHAPTER = "03_recommendation_run"
CONVERSATION_RUN_CHAPTER = "06_conversation_run"
METRICS = ("recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50")


def default_workers() -> int:
    """Points run at once: ``$MSCRS_WORKERS`` (a positive integer), else 1."""
    return positive_int_env("MSCRS_WORKERS", 1)


def available_cpus() -> int:
    """Cores this sweep may use: ``$MSCRS_CPUS`` (set by ``mscrs book --tracks`` for each track of chapters that
    runs beside another), else every core of the machine."""
    return positive_int_env("MSCRS_CPUS", os.cpu_count() or 1)


#: this worker process's kept kernel (:mod:`~mscrs_core.book.warm_kernel`), started by its first point
_WORKER_KERNEL = None


def fresh_kernels() -> bool:
    """``$MSCRS_FRESH_KERNELS`` set (not ``0``): every point in a kernel of its own, as before kernels were kept."""
    return os.environ.get("MSCRS_FRESH_KERNELS", "0") not in ("", "0")


def _worker_kernel(out_dir: str):
    global _WORKER_KERNEL
    if _WORKER_KERNEL is None:
        import atexit

        from ..book.warm_kernel import WarmKernel

        _WORKER_KERNEL = WarmKernel(out_dir)
        atexit.register(_WORKER_KERNEL.shutdown)
    return _WORKER_KERNEL


def _execute(chapter: str, profile: str, out_dir: str, output_name: str, overrides: dict[str, Any],
             threads: int, kernel: Any = None) -> str:
    """Run one point in this (worker) process; the kernel inherits the thread limit from its environment. A worker
    (``threads`` > 0) executes its points one after the other in one kept kernel (:mod:`~mscrs_core.book.warm_kernel`)
    unless :func:`fresh_kernels`; ``kernel``: the kept kernel of an in-process sweep."""
    from ..book import runner

    if threads:
        # a worker's point keeps its threads: the sweep itself hands freed cores over, as more points at once
        os.environ.pop(SHARE_ENV, None)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        if kernel is None and not fresh_kernels():
            kernel = _worker_kernel(out_dir)
    try:
        runner.run_chapter(chapter, profile, out_dir=out_dir, output_name=output_name, overrides=overrides,
                           kernel=kernel)
    except Exception as err:  # papermill's errors do not always pickle back to the parent
        raise RuntimeError(f"run {output_name} failed ({type(err).__name__}): {err}") from None
    return output_name


def run_points(points: Iterable[dict[str, Any]], *, profile: str, base: dict[str, Any] | None = None,
               results_dir: str | os.PathLike | None = None, data_root: str | None = None,
               chapter: str = RUN_CHAPTER, log=print, workers: int | None = None) -> pd.DataFrame:
    """Execute the missing points and return every point's result as a row (see the module docstring)."""
    from ..book import runner

    # absolute: the runs execute with the chapter folder as working directory, not the caller's
    results = Path(results_dir).resolve() if results_dir else default_results_dir()
    data_root = str(Path(data_root).resolve()) if data_root else data_root
    config_cls = run_config_class(chapter)
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # the run chapter's own profile parameters apply to every point, as they will inside the run
    fields = set(config_fields(config_cls))
    profile_params = {k: v for k, v in runner.profile_parameters(chapter, profile).items() if k in fields}
    names, todo = [], {}
    for point in points:
        params = {**profile_params, **(base or {}), **point}
        cfg = config_cls.from_params(params)
        names.append(cfg.name())
        if cfg.name() in todo:
            continue
        # reused only under the same data, version and backbone, and unedited (fingerprint.stale_reason)
        why, _ = stale_reason(results / cfg.name() / "result.json", cfg, data_root)
        if why is None:
            log(f"finished already: {cfg.name()}")
        else:
            if why != "missing":
                log(f"recomputing {cfg.name()}: {why}")
            # the run chapter checks checksums unless told otherwise: pass this sweep's check_checksums=False on
            todo[cfg.name()] = (cfg, {**params, "results_dir": str(results), "data_root": data_root,
                                      **({} if default_check() else {"check_checksums": False}), "sweep_point": True})
    out_dir = str(results / "notebooks")
    if (workers == 1 and not os.environ.get(SHARE_ENV)) or len(todo) == 1:
        from ..book.warm_kernel import WarmKernel

        # in this process, one after the other: one kept kernel for them all (unless fresh_kernels())
        with WarmKernel(out_dir) as kept:
            for name, (_, overrides) in todo.items():
                log(f"running {name}")
                _execute(chapter, profile, out_dir, name, overrides, 0, None if fresh_kernels() else kept)
    elif todo:
        _run_parallel({n: cfg for n, (cfg, _) in todo.items()}, {n: o for n, (_, o) in todo.items()}, chapter,
                      profile, out_dir, data_root, workers, log)
    return results_frame([load_result(results / n) for n in names])


def _prepare(cfg: Any, data_root: str | None, threads: int, check: bool = True) -> None:
    """Fill ``cfg``'s shared caches in this (worker) process with ``threads`` torch threads."""
    import torch

    from ..data.files import set_default_check

    set_default_check(check)  # the sweep's check_checksums, in this spawned process too
    torch.set_num_threads(threads)
    cfg.prepare_caches(data_root)


def _run_parallel(configs: dict[str, Any], overrides: dict[str, dict[str, Any]], chapter: str, profile: str,
                  out_dir: str, data_root: str | None, workers: int, log) -> None:
    """Run the points on ``workers`` processes in the order of :mod:`.sweep_plan` (preparations first, a run
    once its caches exist, costliest first)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    jobs = plan_jobs(configs)
    threads = max(1, available_cpus() // workers)
    share = os.environ.get(SHARE_ENV)
    n_prep = sum(j.kind == PREPARE for j in jobs.values())
    log(f"running {len(configs)} (after {n_prep} cache preparation{'s' if n_prep != 1 else ''}), {workers} at a "
        f"time ({threads} thread{'s' if threads > 1 else ''} each{'; more when another track ends' if share else ''})")
    done: set[str] = set()
    running: dict[Any, str] = {}
    # the machine's cores, not this track's ($MSCRS_CPUS): a track may grow to all of them when the others end
    most = max(workers, (os.cpu_count() or 1) // threads) if share else workers
    with ProcessPoolExecutor(most, mp_context=multiprocessing.get_context("spawn")) as pool:
        while len(done) < len(jobs):
            at_once = points_at_once(workers, threads, share, most)
            while len(running) < at_once:
                name = next_job(jobs, done, done | set(running.values()))
                if name is None:
                    break
                job = jobs[name]
                if job.kind == PREPARE:
                    log(name)
                    running[pool.submit(_prepare, job.cfg, data_root, threads, default_check())] = name
                else:
                    running[pool.submit(_execute, chapter, profile, out_dir, name, overrides[name], threads)] = name
            # with a share file, look again every few seconds: a track that ended may have handed its cores over
            finished, _ = wait(list(running), timeout=5 if share else None, return_when=FIRST_COMPLETED)
            for fut in finished:
                name = running.pop(fut)
                fut.result()  # a failed job stops the sweep (the running ones finish first)
                done.add(name)
                log(f"finished {name}" if jobs[name].kind == RUN else f"finished: {name}")


def points_at_once(workers: int, threads: int, share: str | None, most: int) -> int:
    """How many points a sweep runs now: ``workers``, or, in a book track, as many as the track's current share of
    the cores (``$MSCRS_CORE_SHARE``) holds points of ``threads`` threads (at most ``most``)."""
    cores = read_share(share) if share else None
    if cores is None:
        return workers
    return max(workers, min(most, cores // threads))


def run_config_class(chapter: str) -> type:
    """The run configuration class whose fields a run chapter takes as parameters."""
    if chapter == RUN_CHAPTER:
        return RecRunConfig
    if chapter == CONVERSATION_RUN_CHAPTER:
        from .conversation import ConversationRunConfig

        return ConversationRunConfig
    raise ValueError(f"{chapter!r} is not a run chapter; expected {RUN_CHAPTER!r} or {CONVERSATION_RUN_CHAPTER!r}")


def results_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its configuration fields, every test metric (``excl/`` ones included) and wall time;
    a prompt run (UniCRS, MSCRS) adds the stage validation kept (``selected stage``, ``select rule``), the best
    validation Recall@10 of its warm-up and of its language-model stage (NaN for a stage it did not train) and
    its number of validation samples."""
    rows = []
    for r in records:
        row = dict(r["config"])
        if "recall@10" in r["test"]:  # recommendation runs: always the full metric set, NaN where absent
            row.update({m: r["test"][m] for m in METRICS})
            row.update({f"excl/{m}": r["test"].get(f"excl/{m}", np.nan) for m in METRICS})
            sl = r.get("test_slices", {})  # older results have no slices: NaN
            for part in ("new", "mentioned"):
                row.update({f"{part}/{m}": sl.get(part, {}).get(m, np.nan) for m in ("recall@10", "recall@50")})
                row[f"{part}_count"] = sl.get(part, {}).get("count", np.nan)
            row["top1 = popularity's"] = sl.get("top1_is_popularity_top1", np.nan)
        else:
            row.update({m: v for m, v in r["test"].items() if isinstance(v, (int, float))})
        if "valid" in r:
            row["valid recall@10"] = r["valid"]["recall@10"]
        if "selected_stage" in r:  # prompt runs: which stage validation kept, each stage's best validation Recall@10
            stages = r.get("stage_valid_recall@10", {})
            warm = stages.get(WARM_STAGE, stages.get(LEGACY_WARM_STAGE))
            row.update({"selected stage": r["selected_stage"], "select rule": r.get("select_rule", "best"),
                        "valid samples": r.get("samples", {}).get("valid", np.nan),
                        "valid recall@10 warm-up": np.nan if warm is None else warm,
                        "valid recall@10 LM stage": np.nan if stages.get("rec") is None else stages["rec"]})
        row["seconds"] = r.get("seconds", np.nan)
        row["data fingerprint"] = r.get("fingerprint", {}).get("data", "")
        row["name"] = r["name"]
        rows.append(row)
    return pd.DataFrame(rows)


def data_provenance(frame: pd.DataFrame) -> str:
    """One line saying which data the runs of ``frame`` (from :func:`results_frame`) read: per dataset, the
    digest of its files (``fingerprint.data`` of each result); more than one digest for a dataset is flagged."""
    if frame.empty or "data fingerprint" not in frame:
        return "Data: no runs."
    parts = []
    for ds, digests in frame.groupby("dataset")["data fingerprint"]:
        found = sorted({d for d in digests if d})
        if not found:
            parts.append(f"{ds}: no fingerprint recorded")
        elif len(found) == 1:
            parts.append(f"{ds} {found[0]}")
        else:
            parts.append(f"{ds}: MIXED data digests {', '.join(found)} (runs of different data in one table)")
    return "Data read by every run of this table (digest of the dataset's files): " + "; ".join(parts) + "."


def per_sample(record: dict[str, Any], metric: str = "recall@10") -> pd.Series:
    """A run's per-test-sample metric, indexed by sample id (for paired tests)."""
    return pd.Series(record["test_per_sample"][metric], index=record["test_sample_ids"], name=record["name"])


def config_fields(config_cls: type = RecRunConfig) -> list[str]:
    """The flat parameter names of a run configuration (its sections' fields included)."""
    return config_cls.field_names()


def seed_mean_per_sample(runs: pd.DataFrame, model: str, results_dir: str | os.PathLike | None = None,
                         metric: str = "recall@10") -> pd.Series:
    """Per test sample, ``metric`` averaged over the seeds of ``model``'s runs in ``runs``."""
    names = list(runs.loc[runs.model == model, "name"])
    if not names:
        raise ValueError(f"no runs of model {model!r}")
    return runs_mean_per_sample(names, results_dir, metric)


def runs_mean_per_sample(names: Iterable[str], results_dir: str | os.PathLike | None = None,
                         metric: str = "recall@10") -> pd.Series:
    """Per test sample, ``metric`` averaged over the runs ``names`` (e.g. one configuration's seeds); a name
    given twice counts once."""
    root = Path(results_dir) if results_dir else default_results_dir()
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("runs_mean_per_sample: no run names given")
    return pd.concat([per_sample(load_result(root / n), metric) for n in names], axis=1).mean(axis=1)
