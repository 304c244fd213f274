"""No network unless asked: where ``from_pretrained`` may look for a model.

The library never contacts a model hub on its own. A model given by local folder loads from that folder;
a model given by hub name (``roberta-base``) loads from the local Hugging Face cache only, and a name that
is not there fails at once (no retried requests) with a message that says how to provide the weights.
Set ``MSCRS_ALLOW_DOWNLOADS=1`` to let ``from_pretrained`` download what the cache lacks.

:func:`pretrained_source` is the one helper every loader calls (text and image encoders, the backbone)::

    source, kwargs = pretrained_source("roberta-base", what="text encoder")
    model = AutoModel.from_pretrained(source, **kwargs)
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_ALLOW_DOWNLOADS = "MSCRS_ALLOW_DOWNLOADS"
_TRUE = ("1", "true", "yes", "on")


class OfflineModelError(FileNotFoundError):
    """A model that is neither a local folder nor in the local Hugging Face cache, with downloads not allowed."""


def downloads_allowed() -> bool:
    """True when the user opted in to downloads with ``MSCRS_ALLOW_DOWNLOADS=1`` (or true/yes/on)."""
    return os.environ.get(ENV_ALLOW_DOWNLOADS, "").strip().lower() in _TRUE


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.replace("/", "", 1) or name.count("/") > 1 \
        or (os.altsep is not None and os.altsep in name and os.altsep != "/")


def is_cached(repo_id: str, filename: str = "config.json", cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``filename`` of the hub repository ``repo_id`` is in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        got = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    except Exception:  # an invalid repo id: not cached
        return False
    return isinstance(got, str) and Path(got).is_file()


def how_to_provide(name: str) -> str:
    return (f"provide the weights as a local folder (pass its path instead of {name!r}), or pre-populate the "
            f"Hugging Face cache (e.g. `huggingface-cli download {name}` on a machine with network, then copy "
            f"$HF_HOME), or set {ENV_ALLOW_DOWNLOADS}=1 to let the library download it")


def pretrained_source(name_or_path: str | os.PathLike, *, what: str = "model",
                      cache_dir: str | os.PathLike | None = None) -> tuple[str, dict]:
    """``(source, from_pretrained kwargs)`` for a local folder or a hub name, never touching the network
    unless :func:`downloads_allowed`.

    Raises:
        OfflineModelError: a path that does not exist, or a hub name not in the local cache while downloads
            are not allowed. Raised before any request, so it is immediate.
        TypeError: ``name_or_path`` is not a string or path.
    """
    if isinstance(name_or_path, bool) or not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a model folder or hub name (str), got {type(name_or_path).__name__} "
                        f"{name_or_path!r}")
    name = os.fspath(name_or_path)
    if not name.strip():
        raise OfflineModelError(f"{what}: empty model name; expected a local folder or a hub name")
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise OfflineModelError(f"{p}: {what} path is a file; expected a folder with config.json and weights")
        return str(p), {}
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(name):
        raise OfflineModelError(f"{p}: {what} folder does not exist")
    kwargs: dict = {} if cache_dir is None else {"cache_dir": str(cache_dir)}
    if downloads_allowed():
        return name, kwargs
    if not is_cached(name, cache_dir=cache_dir):
        raise OfflineModelError(f"{what} {name!r} is not a local folder and not in the local Hugging Face cache, "
                                f"and downloads are off; " + how_to_provide(name))
    return name, {**kwargs, "local_files_only": True}
