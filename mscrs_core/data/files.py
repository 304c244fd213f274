"""Where the data lives and whether a file is the one we expect.

The data root comes from configuration: the ``MSCRS_DATA`` environment variable,
else ``../shared/data`` beside the project when it exists. Every file is checked
against a sha256 manifest before it is read: the root's own ``MANIFEST.sha256.tsv`` when it
has one (``mscrs data manifest DIR``, :mod:`.manifest`), else ``manifest.tsv`` (shipped with the package,
the shipped data's); a mismatch is an error naming the file and what to do.
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


# (path, inode, size, mtime_ns, ctime_ns) -> sha256, for files hashed in this process: cheap, but not free.
_HASHES: dict[tuple[str, int, int, int, int], str] = {}

# whether readers check files against a manifest when not told (``check=None``): see set_default_check
_DEFAULT_CHECK = True


def set_default_check(check: bool) -> None:
    """Make ``check`` the default of every reader in this process (``DataFiles(check=None)``, ``load_dataset``).

    A chapter's ``check_checksums`` parameter sets it (:func:`~mscrs_core.data.manifest.use_data_root`), so the
    runs and graphs it builds read the data the same way; a sweep passes it on to the runs it starts."""
    global _DEFAULT_CHECK
    check_bool_param("check_checksums", check)
    _DEFAULT_CHECK = check


def default_check() -> bool:
    return _DEFAULT_CHECK


def cached_sha256(path: Path) -> str:
    """``sha256_of(path)``, computed once per process while the file's inode, size and times stay the same."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_of(path)
    return _HASHES[key]


def verify(path: Path, rel: str, expected: dict[str, tuple[int, str]] | None = None, *, hint: str = "") -> None:
    """Check ``path`` against the manifest entry ``rel``; files not in it pass. ``hint``: what to do, appended."""
    expected = manifest() if expected is None else expected
    if rel not in expected:
        return
    size, sha = expected[rel]
    tail = f"; {hint}" if hint else ""
    st_size = path.stat().st_size
    if st_size != size:
        raise ChecksumError(path, f"expected {size} bytes (manifest entry {rel}), found {st_size}{tail}")
    got = cached_sha256(path)
    if got != sha:
        raise ChecksumError(path, f"sha256 {got} does not match the manifest ({sha}) for {rel}{tail}")


class DataFiles:
    """Opens files under a data root, verifying each against the manifest first."""

    def __init__(self, data_root: str | os.PathLike | None = None, *, check: bool | None = None,
                 expected: dict[str, tuple[int, str]] | None = None):
        check = default_check() if check is None else check
        check_bool_param("check", check)
        self.root = resolve_data_root(data_root)
        self.check = check
        self.own_manifest: Path | None = None  # the root's MANIFEST.sha256.tsv when it has one (and none is given)
        if expected is None and check:
            from .manifest import manifest_path, read_manifest

            own = manifest_path(self.root)
            if own.is_file():
                expected, self.own_manifest = read_manifest(own), own
        self.expected = expected

    def path(self, rel: str) -> Path:
        p = self.root / rel
        if not p.is_file():
            raise DataError(p, f"missing file (expected {rel} under the data root {self.root}).\n" + HOW_TO_GET)
        if self.check:
            if self.own_manifest is not None:
                from .manifest import own_hint

                if rel not in self.expected:
                    raise ChecksumError(p, f"not listed in {self.own_manifest}; run `mscrs data manifest {self.root}` "
                                           "after adding or changing data files")
                verify(p, rel, self.expected, hint=own_hint(self.root))
            else:
                from .manifest import packaged_hint

                verify(p, rel, self.expected, hint=packaged_hint(self.root) if self.expected is None else "")
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
