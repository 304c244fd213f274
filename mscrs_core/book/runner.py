"""Execute the book's chapters with papermill under a named parameter profile.

A chapter is a jupytext percent script ``notebooks/<chapter>.py`` (the source of
truth). The runner converts it to a notebook in memory, injects the profile's
parameters (``smoke`` for tests, ``default`` for the book, plus any
overrides), and writes the executed copy under a build folder. It never writes
onto the paired sources.

Parameters are checked before anything runs: a name the chapter's
``parameters`` cell does not declare, or a value whose type differs from the
declared default, is an error that names the chapter and the parameter.
"""
from __future__ import annotations

import ast
import os
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data.files import project_root
from . import timings
from .warm_kernel import WarmKernel

PROFILES = ("smoke", "default", "full", "paper")


class ParameterError(ValueError):
    """A parameter unknown to a chapter, or of the wrong type."""


class UnknownChapterError(ParameterError):
    """A chapter name (``mscrs run NAME``, ``mscrs book --only NAME``) that is not one of the book's chapters."""


def known_chapters() -> list[str]:
    """Every chapter that can run: those of ``profiles.yml``, then any other ``notebooks/*.py``."""
    names = [c.name for c in chapters()]
    names += sorted(p.stem for p in notebooks_dir().glob("*.py") if p.stem not in names)
    return names


def check_chapter(name: object) -> str:
    """``name`` if it is a chapter, else :class:`UnknownChapterError` naming it and the valid ones."""
    known = known_chapters()
    if not isinstance(name, str) or name not in known:
        raise UnknownChapterError(f"unknown chapter {name!r}; expected one of: {', '.join(known)}")
    return name


@dataclass(frozen=True)
class Chapter:
    name: str
    source: Path


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def chapters(book_only: bool = False) -> list[Chapter]:
    """Chapters in book order (from ``profiles.yml``); ``book_only``: those the rendered book contains."""
    cfg = load_profiles()
    out = []
    for name in cfg["book" if book_only else "chapters"]:
        src = notebooks_dir() / f"{name}.py"
        out.append(Chapter(name, src))
    return out


def load_profiles() -> dict[str, Any]:
    text = resources.files("mscrs_core.book").joinpath("profiles.yml").read_text()
    return yaml.safe_load(text)


def profile_parameters(chapter: str, profile: str) -> dict[str, Any]:
    cfg = load_profiles()
    if profile not in cfg["profiles"]:
        raise ParameterError(f"unknown profile {profile!r}; known: {sorted(cfg['profiles'])}")
    prof = cfg["profiles"][profile] or {}
    params = dict(prof.get("all", {}) or {})
    params.update(prof.get(chapter, {}) or {})
    return params


def _to_notebook(source: Path):
    import jupytext

    if not source.is_file():
        raise FileNotFoundError(f"chapter source {source} does not exist")
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def declared_parameters(source: Path) -> dict[str, Any]:
    """Names and default values of the chapter's ``parameters`` cell."""
    import nbformat
    import papermill as pm

    nb = _to_notebook(source)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / (source.stem + ".ipynb")
        nbformat.write(nb, p)
        info = pm.inspect_notebook(str(p))
    if not info:
        raise ParameterError(f"{source}: no cell tagged 'parameters'")
    out = {}
    for name, spec in info.items():
        try:
            out[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            out[name] = None  # an expression: no type to check against
    return out


def _compatible(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_parameters(source: Path, params: dict[str, Any]) -> None:
    """Reject names the chapter does not declare and values of another type than the default."""
    declared = declared_parameters(source)
    for name, value in params.items():
        if name not in declared:
            raise ParameterError(
                f"chapter {source.stem}: unknown parameter {name!r}; it declares {sorted(declared)}")
        if not _compatible(declared[name], value):
            raise ParameterError(
                f"chapter {source.stem}: parameter {name!r} = {value!r} has type {type(value).__name__}, "
                f"expected {type(declared[name]).__name__} like its default {declared[name]!r}")


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

#: glibc malloc settings of the chapters' kernels: every block from the heap (``mmap_max=0``; by default a block
#: above 32 MB gets fresh pages from the kernel and returns them when freed) and freed memory kept for reuse
#: (``trim_threshold``, 16 GiB). A conversation training step allocates and frees tens of such blocks; with the
#: defaults the kernel zeroes gigabytes of new pages per step, about a fifth of the step on chapter 6's run
#: (``benchmarks/allocator.py`` measures both). Only speed changes, no number; a ``GLIBC_TUNABLES`` of the
#: caller's own is kept instead, and other C libraries ignore the variable.
KERNEL_MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


def kernel_environment() -> dict[str, str]:
    """The environment a chapter's kernel starts with: this process's, the data and results paths made absolute,
    figures into the notebook, and :data:`KERNEL_MALLOC_TUNABLES` unless ``GLIBC_TUNABLES`` is set."""
    return {"GLIBC_TUNABLES": KERNEL_MALLOC_TUNABLES, **os.environ, **_absolute_paths(),
            "MPLBACKEND": INLINE_BACKEND}


def _absolute_paths() -> dict[str, str]:
    """``MSCRS_DATA`` and ``MSCRS_RESULTS_DIR`` made absolute for the kernel, which runs in ``notebooks/``: a
    relative path means the caller's working directory."""
    return {var: str(Path(os.environ[var]).expanduser().resolve())
            for var in ("MSCRS_DATA", "MSCRS_RESULTS_DIR") if os.environ.get(var)}


def _kernel_manager(stream) -> type:
    """A kernel manager for executing chapters.

    * The kernel writes its own stderr (ipykernel's start-up warnings, crash messages) to ``stream``: a chapter
      that runs other chapters (the sweeps) would otherwise show it among its outputs. What the cells print
      stays in the notebook.
    * Figures go into the notebook: a headless ``MPLBACKEND`` (``Agg``, which ``make`` sets for scripts and
      tests) would keep ipykernel from installing its inline backend, and the book would have no figures.
    """
    from jupyter_client.manager import AsyncKernelManager

    class ChapterKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw.setdefault("stderr", stream)
            kw.setdefault("env", kernel_environment())
            await super().start_kernel(**kw)

    return ChapterKernelManager


#: the tag papermill gives the cell it injects after the chapter's ``parameters`` cell
INJECTED_TAG = "injected-parameters"
#: the MyST-NB tag that folds a cell in the book behind a "Show code cell source" toggle
HIDE_TAG = "hide-cell"


def hide_injected_parameters(nb) -> int:
    """Fold papermill's injected cell in the rendered book, as the chapter's own ``parameters`` cell is.

    The injected cell is set-up (the profile's and the caller's values), not content; MyST-NB hides cells by
    tag only, and papermill gives that cell just :data:`INJECTED_TAG`, so :data:`HIDE_TAG` is added to it (the
    reader can still open it). Returns how many cells were changed."""
    changed = 0
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if INJECTED_TAG in tags and HIDE_TAG not in tags:
            cell.setdefault("metadata", {})["tags"] = [*tags, HIDE_TAG]
            changed += 1
    return changed


def output_dir(profile: str, out_dir: str | os.PathLike | None = None) -> Path:
    """Where executed chapters go: ``out_dir``, else ``build/<profile>``."""
    return Path(out_dir) if out_dir else project_root() / "build" / profile


def run_chapter(name: str, profile: str = "default", *, out_dir: str | os.PathLike | None = None,
                overrides: dict[str, Any] | None = None, output_name: str | None = None,
                prepare_only: bool = False, log_output: bool = False, kernel: WarmKernel | None = None) -> Path:
    """Execute ``notebooks/<name>.py`` into ``out_dir`` (default ``build/<profile>``).

    ``kernel``: execute in that kept kernel (:mod:`.warm_kernel`, a sweep worker's) instead of a fresh one."""
    import nbformat
    import papermill as pm

    source = notebooks_dir() / f"{check_chapter(name)}.py"
    # progress bars are for terminals; in an executed chapter they would flood the page
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    params = profile_parameters(name, profile)
    params.update(overrides or {})
    check_parameters(source, params)
    out = output_dir(profile, out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{output_name or name}.ipynb"
    nb = _to_notebook(source)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        src_nb = Path(tmp) / f"{name}.ipynb"
        nbformat.write(nb, src_nb)
        partial = out / f".{target.stem}.partial.ipynb"
        run = dict(parameters=params, kernel_name="python3", cwd=str(notebooks_dir()), prepare_only=prepare_only,
                   progress_bar=False, log_output=log_output)
        if kernel is not None and not prepare_only:  # the kept kernel's stderr goes to its own log (warm_kernel)
            ok = False
            try:
                pm.execute_notebook(str(src_nb), str(partial), km=kernel.manager_for_run(), **run)
                ok = True
            finally:
                kernel.after_run(ok)
        else:
            log = out / f".{target.stem}.kernel.log"
            with open(log, "w") as kernel_stderr:  # the kernel's own stderr: .<run>.kernel.log beside the notebook
                pm.execute_notebook(str(src_nb), str(partial), kernel_manager_class=_kernel_manager(kernel_stderr),
                                    **run)
        executed = nbformat.read(partial, as_version=4)
        if hide_injected_parameters(executed):
            nbformat.write(executed, partial)
        os.replace(partial, target)  # nothing half-written under the final name
    if not prepare_only:
        timings.record(out, target.stem, profile, started, time.time())
    return target


def tracks() -> list[list[str]]:
    """The chapter tracks of ``profiles.yml``: groups of consecutive chapters that share no runs with each other, so
    that ``mscrs book --tracks 2`` may execute them side by side (each track in order)."""
    groups = [list(t) for t in load_profiles().get("tracks", [])]
    order = [c.name for c in chapters()]
    seen: set[str] = set()
    for g in groups:
        unknown = [n for n in g if n not in order]
        if unknown or not g:
            raise ParameterError(f"profiles.yml tracks: {g!r} names no chapter or unknown ones ({unknown})")
        if seen & set(g):
            raise ParameterError(f"profiles.yml tracks: {sorted(seen & set(g))} in two tracks")
        seen |= set(g)
    if seen:  # one block of consecutive chapters, so that everything before it and after it runs alone
        pos = sorted(order.index(n) for n in seen)
        if pos != list(range(pos[0], pos[0] + len(pos))):
            raise ParameterError("profiles.yml tracks: the tracked chapters must be consecutive in book order")
    return groups


def _run_tracks(groups: list[list[str]], profile: str, out: Path, book_only: bool, log=print) -> None:
    """Execute each group of chapters in its own process, the groups side by side, the machine's cores and the
    sweep workers (``$MSCRS_WORKERS``) divided among them. Each group's output goes to ``.track-<chapter>.log`` in
    ``out``; a group that fails is named with the end of its log after every group has finished (what the others
    ran stays, and a new ``mscrs book`` resumes from it).

    When a group ends, the cores it had go to the groups still running: ``.core-share`` in ``out`` holds each
    running group's share (:mod:`~mscrs_core.core_share`): their sweeps run more points at once and their
    forward-only loops (encoding, generation) more threads; training keeps the threads it started with, so that a
    run's numbers do not depend on when another track ended."""
    import subprocess
    import sys

    from ..core_share import SHARE_ENV, write_share
    from ..experiments.sweep import available_cpus, default_workers

    n = len(groups)
    total = available_cpus()
    cpus, workers = max(1, total // n), max(1, default_workers() // n)
    share_file = out / ".core-share"
    write_share(share_file, cpus)
    env = {**os.environ, "MSCRS_CPUS": str(cpus), "MSCRS_WORKERS": str(workers), SHARE_ENV: str(share_file),
           "OMP_NUM_THREADS": str(max(1, cpus // workers)), "MKL_NUM_THREADS": str(max(1, cpus // workers))}
    procs = []
    started = time.time()
    for g in groups:
        path = out / f".track-{g[0]}.log"
        cmd = [sys.executable, "-m", "mscrs_core.cli", "book", "--profile", profile, "--out", str(out),
               *(["--book-only"] if book_only else []), "--only", *g]
        log(f"track {' -> '.join(g)}: {cpus} core{'s' if cpus > 1 else ''}, {workers} worker"
            f"{'s' if workers > 1 else ''} (log: {path})")
        f = open(path, "w")
        procs.append((g, path, f, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                                   cwd=project_root())))
    failed, running = [], list(procs)
    while running:
        time.sleep(0.5)
        ended = [p for p in running if p[3].poll() is not None]
        for g, path, f, proc in ended:
            running.remove((g, path, f, proc))
            f.close()
            log(f"track {' -> '.join(g)}: {'done' if proc.returncode == 0 else 'failed'} after "
                f"{(time.time() - started) / 60:.1f} min")
            if proc.returncode != 0:
                failed.append((g, path))
        if ended and running:
            share = max(1, total // len(running))
            write_share(share_file, share)
            log(f"{len(running)} track{'s' if len(running) > 1 else ''} left: {share} core{'s' if share > 1 else ''} "
                f"each from now on")
    share_file.unlink(missing_ok=True)
    if failed:
        lines = []
        for g, path in failed:
            tail = path.read_text(errors="replace").splitlines()[-15:]
            lines.append(f"track {' -> '.join(g)} failed; the end of {path}:\n" + "\n".join(tail))
        raise RuntimeError("\n\n".join(lines))


def run_book(profile: str = "default", *, out_dir: str | os.PathLike | None = None,
             only: list[str] | None = None, prepare_only: bool = False, book_only: bool = False,
             parallel_tracks: int = 1) -> list[Path]:
    """Execute every chapter (or ``only`` these, or the book's chapters) in book order.

    Every name in ``only`` must be one of those chapters: a typo is an error, not an empty run.
    ``parallel_tracks`` > 1 executes the tracks of ``profiles.yml`` (chapters that share no runs: the
    recommendation chapters and the conversation chapters) side by side, up to that many at once, each with its
    share of the cores (:func:`_run_tracks`); the chapters before and after them run alone, in order.
    Unless ``prepare_only``, the time of each chapter and of the whole call goes to ``book-time.json`` in the
    output folder (:mod:`~mscrs_core.book.timings`).
    """
    selected = chapters(book_only)
    if only is not None:
        if isinstance(only, str) or not isinstance(only, (list, tuple)) or not only:
            raise ParameterError(f"only={only!r}: expected a non-empty list of chapter names")
        valid = [c.name for c in selected]
        unknown = [n for n in only if n not in valid]
        if unknown:
            raise UnknownChapterError(
                f"--only: unknown chapter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"expected {'book ' if book_only else ''}chapters among: {', '.join(valid)}")
        selected = [c for c in selected if c.name in only]
    profile_parameters(selected[0].name, profile)  # an unknown profile fails before anything runs
    if parallel_tracks < 1:
        raise ParameterError(f"parallel_tracks: expected >= 1, got {parallel_tracks}")
    names = [c.name for c in selected]
    groups = [[n for n in g if n in names] for g in tracks()] if parallel_tracks > 1 and not prepare_only else []
    groups = [g for g in groups if g]
    out = output_dir(profile, out_dir)
    done: list[Path] = []
    started = time.time()
    tracked = {n for g in groups for n in g}
    for c in selected:
        if c.name in tracked:
            if c.name == next(n for n in names if n in tracked):  # the first tracked chapter: all tracks now
                for i in range(0, len(groups), parallel_tracks):
                    part = groups[i:i + parallel_tracks]
                    if len(part) == 1:
                        done += [run_chapter(n, profile, out_dir=out) for n in part[0]]
                    else:
                        out.mkdir(parents=True, exist_ok=True)
                        _run_tracks(part, profile, out, book_only)
                        done += [out / f"{n}.ipynb" for g in part for n in g]
            continue
        done.append(run_chapter(c.name, profile, out_dir=out_dir, prepare_only=prepare_only))
    if not prepare_only:  # what each chapter took, read back from the records run_chapter wrote (book-time.json)
        timings.write_summary(out, timings.summary(out, names, time.time() - started, groups))
    return done
