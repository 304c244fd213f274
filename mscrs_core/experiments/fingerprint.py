"""Results that know where they came from: a run's fingerprint, and when a finished ``result.json`` is reused.

Every result a run writes carries ``"fingerprint"``:

* ``config``: the run configuration's digest (the end of the run's folder name);
* ``data``: the digest of the dataset's files under the data root the run read
  (:func:`~mscrs_core.data.manifest.data_digest`, the manifest lines of ``<root>/<dataset>/``), with
  ``data_root`` beside it for the reader (not part of the identity: a copy of the same files elsewhere is the
  same data);
* ``version``: the package version (``mscrs_core.__version__``);
* ``backbone``: :func:`~mscrs_core.models.context_states.backbone_fingerprint` of the frozen language model
  (None for the models without one);
* ``content``: the sha256 of the whole record (this field left out), so a result edited by hand is noticed.

:func:`reusable_result` returns a finished result only when all of them match what a run would use now;
otherwise it says why (a logged line naming the file) and the caller recomputes. A result that does not parse is
reported with its path and recomputed, never a bare ``JSONDecodeError``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from ..baselines.response_references import REFERENCE_MODELS
from ..data.errors import DataError

log = logging.getLogger("mscrs_core.results")

#: the fingerprint fields that make a result's identity (``data_root`` is informative only)
IDENTITY = ("config", "data", "version", "backbone")

# backbone fingerprints computed in this process: loading a backbone costs seconds
_BACKBONES: dict[tuple, str | None] = {}


def package_version() -> str:
    from .. import __version__

    return __version__


def uses_backbone(cfg: Any) -> bool:
    """Whether the run's numbers depend on a frozen language model."""
    from .recommendation import RecRunConfig

    if isinstance(cfg, RecRunConfig):
        return cfg.model in ("mscrs", "unicrs")
    if getattr(cfg, "model", None) in REFERENCE_MODELS:  # Table 3's reference rows generate nothing
        return False
    return hasattr(cfg, "backbone")


def backbone_part(cfg: Any, data_root: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, *, legacy: bool = False) -> str | None:
    """The fingerprint of the backbone a run of ``cfg`` loads (None when it loads none); memoised per process.
    ``legacy``: the earlier, path-dependent identity (:func:`~mscrs_core.models.context_states.
    backbone_fingerprint`), accepted by :func:`stale_reason` for runs written in this very place."""
    if not uses_backbone(cfg):
        return None
    import torch

    from ..data import load_dataset
    from ..data.files import project_root
    from ..data.manifest import data_digest
    from ..models import load_backbone
    from ..models.context_states import backbone_fingerprint
    from .recommendation import tiny_dialogpt_for

    cache = Path(cache_dir) if cache_dir else project_root() / "cache"
    tiny = cfg.backbone == "tiny-dialogpt"
    # the miniature DialoGPT is trained on the dataset's training dialogs: its identity includes the data
    key = (cfg.backbone, cfg.backbone_dtype, str(cache),
           (cfg.dataset, cfg.backbone_epochs, data_digest(cfg.dataset, data_root)) if tiny else None)
    if key not in _BACKBONES:
        path = tiny_dialogpt_for(load_dataset(cfg.dataset, data_root), cache, cfg.backbone_epochs) if tiny \
            else cfg.backbone
        model, _ = load_backbone(str(path), dtype=getattr(torch, cfg.backbone_dtype), cache_dir=cache / "backbones")
        _BACKBONES[key] = (backbone_fingerprint(model), backbone_fingerprint(model, legacy=True))
        del model
    return _BACKBONES[key][1 if legacy else 0]


def run_fingerprint(cfg: Any, data_root: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a run of ``cfg`` on ``data_root`` would be computed from now (see the module docstring)."""
    from ..data.files import resolve_data_root
    from ..data.manifest import data_digest

    return {"config": cfg.digest(), "data": data_digest(cfg.dataset, data_root),
            "data_root": str(resolve_data_root(data_root)), "version": package_version(),
            "backbone": backbone_part(cfg, data_root, cache_dir)}


def content_digest(record: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of ``record`` as JSON, without ``reused`` and without ``fingerprint.content``."""
    rec = json.loads(json.dumps(record))  # the types a reader of the file sees (tuples become lists, ...)
    rec.pop("reused", None)
    fp = rec.get("fingerprint")
    if isinstance(fp, dict):
        fp.pop("content", None)
    text = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seal(record: dict[str, Any], fingerprint: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``fingerprint`` (``fingerprint`` plus the content digest) set, ready to be written."""
    record.pop("reused", None)
    record["fingerprint"] = dict(fingerprint)
    record["fingerprint"]["content"] = content_digest(record)
    return record


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """A ``result.json`` as a dict; a file that does not parse is a :class:`DataError` naming it (and the line)."""
    from ..data.files import decode_utf8

    p = Path(path)
    what = "expected a run result (one JSON object) as a run writes it"
    try:  # plain json: a result may hold NaN (a metric of an empty slice)
        res = json.loads(decode_utf8(p.read_bytes(), p))
    except json.JSONDecodeError as e:
        raise DataError(p, f"malformed JSON ({e.msg}, column {e.colno}); {what}", line=e.lineno) from None
    except RecursionError:
        raise DataError(p, f"JSON nested too deeply to read; {what}") from None
    if not isinstance(res, dict):
        raise DataError(p, f"expected a JSON object (a run result), found {type(res).__name__}")
    return res


def stale_reason(path: str | os.PathLike, cfg: Any, data_root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None) -> tuple[str | None, dict[str, Any] | None]:
    """``(None, result)`` when the finished result at ``path`` may be reused for ``cfg``; else ``(why, None)``.

    ``why`` is ``"missing"`` when there is no file. Cheap checks come first; the backbone is loaded only when
    everything else matches.
    """
    p = Path(path)
    if not p.is_file():
        return "missing", None
    try:
        res = read_result(p)
    except DataError as err:
        return f"{err} (an interrupted or damaged write)", None
    try:
        same = type(cfg).from_record(res.get("config") or {}) == cfg
    except (TypeError, ValueError):  # a field this version does not know, or a value it refuses
        same = False
    if not same:
        return f"{p}: written for another configuration", None
    fp = res.get("fingerprint")
    if not isinstance(fp, dict) or not all(k in fp for k in (*IDENTITY, "content")):
        return f"{p}: has no fingerprint (written by an older version, or edited)", None
    if fp["content"] != content_digest(res):
        return f"{p}: its content does not match its fingerprint (edited after the run wrote it)", None
    if fp["version"] != package_version():
        return f"{p}: computed by mscrs_core {fp['version']}, this is {package_version()}", None
    if fp["config"] != cfg.digest():
        return f"{p}: configuration digest {fp['config']} differs from {cfg.digest()}", None
    from ..data.manifest import data_digest

    now = data_digest(cfg.dataset, data_root)
    if fp["data"] != now:
        return (f"{p}: computed on other data ({cfg.dataset} digest {fp['data']} from {fp.get('data_root')}; "
                f"the data root now gives {now})"), None
    bb = backbone_part(cfg, data_root, cache_dir)
    if fp["backbone"] not in (bb, backbone_part(cfg, data_root, cache_dir, legacy=True)):
        return f"{p}: computed with another backbone (fingerprint {fp['backbone']}, now {bb})", None
    return None, res


#: written into a run's folder when it starts computing: the identity its checkpoints belong to
RUN_MARKER = "fingerprint.json"


def start_run(run_dir: str | os.PathLike, fingerprint: dict[str, Any],
              say: Callable[[str], None] | None = None) -> None:
    """Before a run computes into ``run_dir``: remove what a run of another fingerprint left there (per-epoch
    checkpoints it would otherwise resume from, a stale result), then record this run's fingerprint.

    An interrupted run therefore resumes only under the same data, version and backbone. A folder without the
    record (written before fingerprints existed) is left as it is: the trainer refuses checkpoints of other
    samples themselves.
    """
    import shutil

    from ..atomic import atomic_write_text

    run_dir = Path(run_dir)
    marker = run_dir / RUN_MARKER
    ident = {k: fingerprint.get(k) for k in IDENTITY}
    if marker.is_file():
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError, RecursionError):
            old = None
        if old != ident:
            left = sorted(p for p in run_dir.iterdir() if p.name != RUN_MARKER and not p.name.startswith("."))
            if left:
                (say or log.warning)(f"{run_dir}: removing {', '.join(p.name for p in left)}, computed under another "
                                     "fingerprint (data, version or backbone)")
            for p in left:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(ident, sort_keys=True))


def reusable_result(path: str | os.PathLike, cfg: Any, data_root: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None,
                    say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The finished result at ``path`` if it may be reused (see :func:`stale_reason`), else None, after saying
    why (``say``, default a warning on the ``mscrs_core.results`` logger) unless there is simply no result."""
    why, res = stale_reason(path, cfg, data_root, cache_dir)
    if why is not None and why != "missing":
        (say or log.warning)(f"recomputing {cfg.name()}: {why}")
    return res
