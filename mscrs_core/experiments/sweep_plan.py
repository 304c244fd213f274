"""The order in which a parallel sweep starts its jobs: cache preparations first, then costliest runs first.

A sweep's runs share on-disk caches (a dataset's miniature backbone, item and context features; each run
configuration names them in ``shared_caches``). Every cache key is filled by exactly one *preparation job*
(the first run configuration that needs it prepares it), and a run starts only after the preparations of all
its keys have finished, so that no two processes ever write one cache. Runs whose caches are ready do not
wait for the others' preparations: on two cores the ReDial backbone trains while INSPIRED runs go on.

Among the jobs that may start, preparations come first (they unblock runs), then the costliest run
(``relative_cost``), so that a long ReDial run is not left alone at the end. Ties keep the given order.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

PREPARE, RUN = "prepare", "run"


@dataclasses.dataclass
class Job:
    """One unit of a sweep: fill ``cfg``'s new shared caches (``kind="prepare"``) or execute one run."""

    name: str
    kind: str
    cfg: Any
    deps: frozenset[str]
    cost: float
    keys: tuple[tuple, ...] = ()  # prepare jobs: the cache keys this job owns


def schedule(configs: dict[str, Any]) -> list[str]:
    """Run names in start order: costliest first (``relative_cost``), ties in the given order."""
    return sorted(configs, key=lambda n: -configs[n].relative_cost())


def plan_jobs(configs: dict[str, Any]) -> dict[str, Job]:
    """Preparation and run jobs for the runs ``configs`` (name -> run configuration), with dependencies.

    A preparation job that needs a key owned by an earlier preparation depends on that job too: a
    configuration's ``prepare_caches`` may read (or, if missing, build) every key it names.
    """
    owner: dict[tuple, str] = {}
    jobs: dict[str, Job] = {}
    for name in schedule(configs):  # the costliest run's preparation owns what it shares with cheaper ones
        cfg = configs[name]
        keys = tuple(cfg.shared_caches())
        new = tuple(k for k in keys if k not in owner)
        if new:
            prep = f"prepare {', '.join(str(k[0]) for k in new)} for {getattr(cfg, 'dataset', name)}"
            while prep in jobs:  # two preparations with equal descriptions (e.g. two k values)
                prep += "'"
            jobs[prep] = Job(prep, PREPARE, cfg, frozenset(owner[k] for k in keys if k in owner), math.inf, new)
            owner.update({k: prep for k in new})
        jobs[name] = Job(name, RUN, cfg, frozenset(owner[k] for k in keys), float(cfg.relative_cost()))
    return jobs


def next_job(jobs: dict[str, Job], done: Iterable[str], started: Iterable[str]) -> str | None:
    """The job to start now, or None when every remaining job waits on one that has not finished."""
    done, started = set(done), set(started)
    best: str | None = None
    for name, job in jobs.items():
        if name in started or not job.deps <= done:
            continue
        if best is None or job.cost > jobs[best].cost:
            best = name
    return best


def simulate(jobs: dict[str, Job], seconds: dict[str, float], workers: int) -> tuple[float, list[str]]:
    """Wall time and start order of ``jobs`` on ``workers`` slots given each job's duration (for tests and
    for comparing plans): the list scheduler that :func:`~mscrs_core.experiments.sweep.run_points` runs."""
    clock, running, done, order = 0.0, {}, set(), []
    while len(done) < len(jobs):
        while len(running) < workers:
            name = next_job(jobs, done, set(running) | done)
            if name is None:
                break
            running[name] = clock + seconds[name]
            order.append(name)
        if not running:
            raise ValueError(f"jobs wait on each other or on unknown jobs: {sorted(set(jobs) - done)}")
        first = min(running, key=running.get)
        clock = running.pop(first)
        done.add(first)
    return clock, order
