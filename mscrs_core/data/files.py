"""Where the data lives and whether a file is the one we expect.

The data root comes from configuration: the ``MSCRS_DATA`` environment variable,
else ``../shared/data`` beside the project when it exists. Every file is checked
against the sha256 of ``manifest.tsv`` (shipped with the package) before it is
read; a mismatch is an error naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from .errors import ChecksumError, DataError

ENV_VAR = "MSCRS_DATA"

HOW_TO_GET = (
    "Set MSCRS_DATA to a folder laid out as follows (see README.md, 'Data'):\n"
    "  inspired/{train,valid,test}_data_dbpedia.jsonl, entity2id.json, relation2id.json,\n"
    "    dbpedia_subkg.json, item_ids.json  -- UniCRS's processed INSPIRED,\n"
    "    https://github.com/RUCAIBox/UniCRS (data/inspired); raw INSPIRED: https://github.com/sweetpeach/Inspired\n"
    "  redial/{train,valid,test}_data.jsonl  -- ReDial, https://redialdata.github.io/website/\n"
    "  redial/kg/  -- KGSF's DBpedia sub-graph, https://github.com/Lancelot39/KGSF"
)


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_data_root() -> Path | None:
    """``MSCRS_DATA`` if set, else ``../shared/data`` from the project (or the cwd)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    for base in (project_root(), Path.cwd(), Path.cwd().parent):
        cand = (base / ".." / "shared" / "data").resolve()
        if cand.is_dir():
            return cand
    return None


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The data folder to read, or a clear error that says how to obtain the datasets."""
    root = Path(data_root).expanduser().resolve() if data_root else default_data_root()
    if root is None:
        raise DataError(
            f"${ENV_VAR} (unset) and ../shared/data",
            "no data folder found.\n" + HOW_TO_GET,
        )
    if not root.is_dir():
        raise DataError(root, "data folder does not exist.\n" + HOW_TO_GET)
    return root


@lru_cache(maxsize=1)
def manifest() -> dict[str, tuple[int, str]]:
    """relative path -> (bytes, sha256) from the packaged manifest."""
    text = resources.files("mscrs_core.data").joinpath("manifest.tsv").read_text()
    out: dict[str, tuple[int, str]] = {}
    for line in text.splitlines()[1:]:
        if line.strip():
            path, size, sha = line.split("\t")[:3]
            out[path] = (int(size), sha)
    return out


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# (path, size, mtime) already verified in this process: hashing is cheap but not free.
_VERIFIED: set[tuple[str, int, float]] = set()


def verify(path: Path, rel: str, expected: dict[str, tuple[int, str]] | None = None) -> None:
    """Check ``path`` against the manifest entry ``rel``; files not in it pass."""
    expected = manifest() if expected is None else expected
    if rel not in expected:
        return
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key in _VERIFIED:
        return
    size, sha = expected[rel]
    if st.st_size != size:
        raise ChecksumError(path, f"expected {size} bytes (manifest entry {rel}), found {st.st_size}")
    got = sha256_of(path)
    if got != sha:
        raise ChecksumError(path, f"sha256 {got} does not match the manifest ({sha}) for {rel}")
    _VERIFIED.add(key)


class DataFiles:
    """Opens files under a data root, verifying each against the manifest first."""

    def __init__(self, data_root: str | os.PathLike | None = None, *, check: bool = True,
                 expected: dict[str, tuple[int, str]] | None = None):
        self.root = resolve_data_root(data_root)
        self.check = check
        self.expected = expected

    def path(self, rel: str) -> Path:
        p = self.root / rel
        if not p.is_file():
            raise DataError(p, f"missing file (expected {rel} under the data root {self.root}).\n" + HOW_TO_GET)
        if self.check:
            verify(p, rel, self.expected)
        return p

    def json(self, rel: str) -> Any:
        p = self.path(rel)
        try:
            with open(p, encoding="utf-8") as f:
                return json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(p, f"malformed JSON ({e.msg})", line=e.lineno) from None

    def jsonl(self, rel: str) -> Iterator[tuple[int, Any]]:
        """(line number, parsed object) for every non-empty line."""
        p = self.path(rel)
        with open(p, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(p, f"malformed JSON line ({e.msg}); expected one JSON value per line", line=n) from None
