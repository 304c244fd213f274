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

from .errors import ChecksumError, DataError, check_bool_param, check_path_param

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
    check_path_param("data_root", data_root)
    root = Path(data_root).expanduser().resolve() if data_root is not None else default_data_root()
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
        check_bool_param("check", check)
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

    def text(self, rel: str) -> str:
        """The file decoded as UTF-8 (a leading BOM dropped); invalid UTF-8 is an error naming the line."""
        p = self.path(rel)
        return decode_utf8(p.read_bytes(), p)

    def json(self, rel: str) -> Any:
        """One JSON document; malformed JSON, invalid UTF-8, NaN/Infinity and over-deep nesting name the line."""
        p = self.path(rel)
        text = decode_utf8(p.read_bytes(), p)
        return parse_json(text, p)

    def jsonl(self, rel: str) -> Iterator[tuple[int, Any]]:
        """(line number, parsed object) for every non-empty line."""
        p = self.path(rel)
        with open(p, "rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(p, f"invalid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                                       "expected UTF-8 text", line=n) from None
                yield n, parse_json(line, p, line=n, what="one JSON value per line")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_utf8(data: bytes, path: Path | str) -> str:
    """``data`` as UTF-8 text (BOM dropped), or a :class:`DataError` naming the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        col = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise DataError(path, f"invalid UTF-8 (byte {data[start]:#04x} at column {col}); expected UTF-8 text",
                        line=line) from None


def _deepest_line(text: str) -> tuple[int, int]:
    """(line, depth) where the nesting of ``[`` / ``{`` outside strings is deepest (only called on error)."""
    depth = best = 0
    best_line = line = 1
    in_str = esc = False
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > best:
                best, best_line = depth, line
        elif ch in "]}":
            depth -= 1
    return best_line, best


def parse_json(text: str, path: Path | str, *, line: int | None = None, what: str = "a JSON document") -> Any:
    """``json.loads`` whose every failure is a one-line :class:`DataError` naming the file and line.

    ``line``: the line number of ``text`` in its file (JSON Lines); otherwise lines count within ``text``.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        n = line if line is not None else e.lineno
        raise DataError(path, f"malformed JSON ({e.msg}, column {e.colno}); expected {what}", line=n) from None
    except ValueError as e:  # NaN / Infinity
        raise DataError(path, f"{e}; expected {what}", line=line) from None
    except RecursionError:
        deep_line, depth = _deepest_line(text)
        raise DataError(path, f"JSON nested {depth} levels deep, too deep to read; expected {what}",
                        line=line if line is not None else deep_line) from None
