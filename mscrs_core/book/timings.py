"""The wall time of each executed chapter, recorded beside it, and the book's time as one table.

:func:`~mscrs_core.book.runner.run_chapter` writes ``.<chapter>.time.json`` next to the executed notebook (when it
started and ended, the cores it was given, the machine). ``mscrs book`` reads them back for the chapters it ran
and prints the table at its end; it also writes it to ``book-time.json`` in the output folder. So the book time
the README states is read from the build itself: which chapter took how long, on which processor, with the
backbone in which arithmetic (:func:`~mscrs_core.models.backbone.native_bf16`). A chapter that loaded finished
runs (a warm rebuild) records the time it took to load them.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

from ..atomic import atomic_write_text

SUMMARY_NAME = "book-time.json"
RECORD_KEYS = ("chapter", "seconds", "started", "ended", "cpus", "processor", "cores", "bfloat16_native")


def record_path(out_dir: str | os.PathLike, name: str) -> Path:
    """Where the time of the executed notebook ``<out_dir>/<name>.ipynb`` is kept."""
    return Path(out_dir) / f".{name}.time.json"


def processor() -> str:
    """The processor's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """What the times depend on: the processor, the cores of the machine and whether the backbone ran in
    bfloat16 (native) or float32 (``backbone_dtype="auto"``)."""
    from ..models.backbone import native_bf16

    return {"processor": processor(), "cores": os.cpu_count() or 1, "bfloat16_native": bool(native_bf16())}


def record(out_dir: str | os.PathLike, name: str, profile: str, started: float, ended: float) -> Path:
    """Write the time of one executed chapter (``started``/``ended``: :func:`time.time` values)."""
    if ended < started:
        raise ValueError(f"{name}: ended ({ended}) before it started ({started})")
    entry = {"chapter": name, "profile": profile, "seconds": round(ended - started, 1),
             "started": _iso(started), "ended": _iso(ended),
             "cpus": int(os.environ.get("MSCRS_CPUS") or os.cpu_count() or 1), **machine()}
    return atomic_write_text(record_path(out_dir, name), json.dumps(entry, indent=1) + "\n")


def read(out_dir: str | os.PathLike, names: Sequence[str]) -> list[dict[str, Any]]:
    """The recorded times of ``names`` (book order), skipping those never executed into ``out_dir``. A record that
    is not a chapter time is an error naming its file."""
    found = []
    for name in names:
        path = record_path(out_dir, name)
        if not path.exists():
            continue
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            missing = [k for k in RECORD_KEYS if k not in entry]
            float(entry["seconds"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: expected a chapter time (JSON with 'seconds'), could not read it: {e}") from e
        if missing:
            raise ValueError(f"{path}: expected a chapter time with {', '.join(RECORD_KEYS)}; missing "
                             f"{', '.join(missing)}")
        found.append(entry)
    return found


def summary(out_dir: str | os.PathLike, names: Sequence[str], wall_seconds: float,
            tracks: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
    """The book's time: each chapter's, which track it ran in (chapters of one track ran one after the other,
    the tracks side by side), and the wall clock of the whole ``mscrs book`` (set-up and rendering excluded)."""
    track_of = {n: i + 1 for i, g in enumerate(tracks) for n in g}
    entries = read(out_dir, names)
    where = {k: entries[-1][k] for k in ("processor", "cores", "bfloat16_native")} if entries else machine()
    chapters = [{**{k: e[k] for k in ("chapter", "seconds", "started", "ended", "cpus")},
                 "track": track_of.get(e["chapter"])} for e in entries]
    return {"wall_seconds": round(wall_seconds, 1), "machine": where, "chapters": chapters}


def write_summary(out_dir: str | os.PathLike, book_time: dict[str, Any]) -> Path:
    return atomic_write_text(Path(out_dir) / SUMMARY_NAME, json.dumps(book_time, indent=1) + "\n")


def load_summary(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``book-time.json`` of an output folder."""
    path = Path(out_dir) / SUMMARY_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: expected the book time mscrs book writes, could not read it: {e}") from e


def format_summary(book_time: dict[str, Any], profile: str) -> str:
    """The table ``mscrs book`` prints at its end."""
    m = book_time["machine"]
    arithmetic = "bfloat16" if m.get("bfloat16_native") else "float32"
    lines = [f"book time, profile {profile}: {m.get('processor')}, {m.get('cores')} cores, backbone in {arithmetic}"]
    width = max([len(c["chapter"]) for c in book_time["chapters"]] + [24])
    for c in book_time["chapters"]:
        where = f"  track {c['track']}, {c['cpus']} core{'s' if c['cpus'] != 1 else ''} at the start" \
            if c.get("track") else ""
        lines.append(f"  {c['chapter']:<{width}} {c['seconds'] / 60:7.1f} min{where}")
    lines.append(f"  {'all chapters, wall clock':<{width}} {book_time['wall_seconds'] / 60:7.1f} min "
                 f"(set-up and rendering not included)")
    return "\n".join(lines)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))
