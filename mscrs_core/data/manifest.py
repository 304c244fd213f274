"""A data root's own manifest: the sha256 of every data file, written and checked by ``mscrs data``.

The shipped layout (``../shared/data``, or a byte-for-byte copy of it) is checked against the packaged
``mscrs_core/data/manifest.tsv``. A data root of your own (the full ReDial release, a re-processed INSPIRED,
another crawl) carries its own manifest, ``<root>/MANIFEST.sha256.tsv``, in the same format (a header
``path<TAB>bytes<TAB>sha256``, then one line per file, paths relative to the root with ``/``)::

    mscrs data manifest DIR    # write DIR/MANIFEST.sha256.tsv (every file under DIR; atomic)
    mscrs data verify DIR      # check every file against it: one line naming the file that differs, exit 2

When a root has its own manifest, every reader checks the files it reads against it, and a file the manifest
does not list is an error; without one, the packaged manifest applies, and a file that differs from the shipped
data is an error that says to run ``mscrs data manifest DIR``. Hidden files (a name starting with ``.``: editor
backups, the temporary files of an atomic write) are never data files.

:func:`data_digest` is the identity of a dataset's files (the digest of the manifest lines of
``<root>/<dataset>/``), which every run result records (:mod:`mscrs_core.experiments.fingerprint`): a result
computed on other data is recomputed, never reused. :func:`use_data_root` is the one line a chapter calls before
it reads data.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write_text
from .errors import ChecksumError, DataError, check_bool_param
from . import files as _files
from .files import manifest as packaged_manifest, resolve_data_root

#: the file name of a data root's own manifest (``mscrs data manifest DIR`` writes it)
ROOT_MANIFEST = "MANIFEST.sha256.tsv"
HEADER = ("path", "bytes", "sha256")
_SHA = re.compile(r"^[0-9a-f]{64}$")
UNCHECKED = "not checked"


def manifest_path(root: str | os.PathLike) -> Path:
    return Path(root) / ROOT_MANIFEST


def has_own_manifest(root: str | os.PathLike) -> bool:
    return manifest_path(root).is_file()


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def data_files(root: str | os.PathLike, under: str = "") -> list[str]:
    """Relative paths (``/``-separated, sorted) of every data file under ``root`` (or ``root/under``).

    Not data: the root's own manifest and hidden files. Symbolic links count as what they point to (a linked
    file is hashed, a linked folder is walked; a folder reached twice through links is walked once).
    """
    root = Path(root)
    base = root / under if under else root
    out: list[str] = []
    if not base.is_dir():
        return out
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop, or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel == ROOT_MANIFEST or _hidden(rel) or not p.is_file():
                continue
            if "\t" in rel or "\n" in rel or "\r" in rel:
                raise DataError(p, "a data file name may not contain a tab or a line break (the manifest is "
                                   "tab-separated); rename it")
            out.append(rel)
    return sorted(out)


def file_entry(path: Path) -> tuple[int, str]:
    """(bytes, sha256) of ``path``, hashed once per process while the file stays the same (inode, size, times)."""
    return path.stat().st_size, _files.cached_sha256(path)


def manifest_text(entries: dict[str, tuple[int, str]]) -> str:
    return "\t".join(HEADER) + "\n" + "".join(f"{rel}\t{size}\t{sha}\n" for rel, (size, sha) in sorted(entries.items()))


def compute_entries(root: str | os.PathLike, under: str = "") -> dict[str, tuple[int, str]]:
    """relative path -> (bytes, sha256) of every data file under ``root`` (or ``root/under``), as they are now."""
    root = Path(root)
    return {rel: file_entry(root / rel) for rel in data_files(root, under)}


def write_manifest(root: str | os.PathLike) -> Path:
    """Write ``<root>/MANIFEST.sha256.tsv`` for every data file under ``root`` (atomically); returns its path."""
    _files.check_path_param("root", root, optional=False)
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(root, "not a folder; expected a data root (inspired/..., redial/...)")
    if not root.stat().st_mode & 0o200:  # read-only by its mode (root may write anyway): a shared copy, leave it
        raise DataError(root, "the folder is read-only; copy the data to a folder of your own and run "
                              "`mscrs data manifest` there")
    entries = compute_entries(root)
    if not entries:
        raise DataError(root, "no data files in this folder; expected a data root (inspired/..., redial/...)")
    path = atomic_write_text(manifest_path(root), manifest_text(entries))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # readable like the data beside it (the temporary file was private)
    return path


def read_manifest(path: str | os.PathLike) -> dict[str, tuple[int, str]]:
    """relative path -> (bytes, sha256) from a manifest file; a malformed line is an error naming file and line."""
    path = Path(path)
    text = _files.decode_utf8(path.read_bytes(), path)
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")[:3]) != HEADER:
        raise DataError(path, f"expected the header line {'<TAB>'.join(HEADER)!r} (written by `mscrs data manifest`)",
                        line=1)
    out: dict[str, tuple[int, str]] = {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise DataError(path, "expected path<TAB>bytes<TAB>sha256", line=n)
        rel, size, sha = parts[:3]
        if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
            raise DataError(path, f"path {rel!r} is not a plain relative path inside the data root", line=n)
        if not size.isdigit():
            raise DataError(path, f"bytes {size!r} is not a non-negative integer", line=n)
        if not _SHA.match(sha):
            raise DataError(path, f"sha256 {sha!r} is not 64 lower-case hex digits", line=n)
        if rel in out:
            raise DataError(path, f"{rel} is listed twice", line=n)
        out[rel] = (int(size), sha)
    return out


def own_manifest(root: str | os.PathLike) -> dict[str, tuple[int, str]] | None:
    """The entries of ``root``'s own manifest, or None when it has none."""
    p = manifest_path(root)
    return read_manifest(p) if p.is_file() else None


def packaged_hint(root: Path) -> str:
    return (f"{root} has no manifest of its own, so it is checked against the shipped data; if it holds your own "
            f"data, record its checksums with `mscrs data manifest {root}` (README, 'Your own data')")


def own_hint(root: Path) -> str:
    return (f"checked against {manifest_path(root)}; if you changed the data on purpose, run "
            f"`mscrs data manifest {root}` again")


@dataclass
class VerifyReport:
    root: Path
    manifest: str  # the manifest file checked against ("packaged" for the shipped data's)
    files: int
    prefixes: tuple[str, ...] = ()
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def shipped(self) -> bool:
        """Checked against the packaged manifest: the shipped data (or a byte-for-byte copy)."""
        return self.manifest == "packaged"

    def __str__(self) -> str:
        what = "the packaged manifest (shipped data)" if self.manifest == "packaged" else self.manifest
        s = f"data root {self.root}: " + ("checksums not checked (check_checksums=False)" if self.manifest == UNCHECKED
                                          else f"{self.files} file(s) match {what}")
        if self.digests:
            s += "; data digests " + ", ".join(f"{k} {v}" for k, v in self.digests.items())
        return s


def verify_root(root: str | os.PathLike, *, prefixes: tuple[str, ...] | None = None) -> VerifyReport:
    """Check the files of ``root`` against its own manifest, or the packaged one when it has none.

    Own manifest: every listed file must exist with its size and sha256, and every data file must be listed.
    Packaged manifest: every listed file that exists must match (a missing one is the reader's error to report).
    ``prefixes``: only the files under these folders (e.g. ``("redial/",)``). The first difference raises
    :class:`~mscrs_core.data.errors.ChecksumError` naming the file and what to do.
    """
    root = resolve_data_root(root)
    own = own_manifest(root)

    def wanted(rel: str) -> bool:
        return prefixes is None or any(rel.startswith(p) for p in prefixes)

    if own is not None:
        mpath = manifest_path(root)
        hint = own_hint(root)
        n = 0
        for rel in sorted(own):
            if not wanted(rel):
                continue
            p = root / rel
            if not p.is_file():
                raise ChecksumError(p, f"missing: {mpath} lists {rel}, which is not there; if you removed it on "
                                       f"purpose, run `mscrs data manifest {root}` again")
            _files.verify(p, rel, own, hint=hint)
            n += 1
        under = [p.rstrip("/") for p in prefixes] if prefixes is not None else [""]
        for base in under:
            for rel in data_files(root, base):
                if rel not in own:
                    raise ChecksumError(root / rel, f"not listed in {mpath}; run `mscrs data manifest {root}` "
                                                    "after adding or changing data files")
        return VerifyReport(root, str(mpath), n, tuple(prefixes or ()))
    expected = packaged_manifest()
    hint = packaged_hint(root)
    n = 0
    for rel in sorted(expected):
        p = root / rel
        if wanted(rel) and p.is_file():
            _files.verify(p, rel, expected, hint=hint)
            n += 1
    if n == 0:
        raise ChecksumError(root, "none of the shipped data files is here and there is no manifest; "
                                  f"for data of your own run `mscrs data manifest {root}`")
    return VerifyReport(root, "packaged", n, tuple(prefixes or ()))


def data_digest(dataset: str, data_root: str | os.PathLike | None = None, *, check: bool | None = None) -> str:
    """16 hex digits identifying the files of ``<root>/<dataset>/`` as they are now.

    The sha256 of the manifest lines ``mscrs data manifest`` writes for that folder (every data file in it, its
    size and sha256), so an up-to-date root manifest and the files agree. ``check`` (default: the process'
    setting, :func:`~mscrs_core.data.files.set_default_check`) first checks the folder against the root's
    manifest, as a reader would.
    """
    if not isinstance(dataset, str) or not dataset or "/" in dataset:
        raise ValueError(f"dataset must be a folder name such as 'inspired', got {dataset!r}")
    root = resolve_data_root(data_root)
    check = _files.default_check() if check is None else check
    check_bool_param("check", check)
    if check:
        verify_root(root, prefixes=(f"{dataset}/",))
    entries = compute_entries(root, dataset)
    if not entries:
        raise DataError(root / dataset, f"no data files for {dataset!r} under the data root {root}")
    lines = "".join(f"{rel}\t{size}\t{sha}\n" for rel, (size, sha) in sorted(entries.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def use_data_root(data_root: str | os.PathLike | None = None, check_checksums: bool = True, *,
                  datasets: list[str] | tuple[str, ...] | None = None) -> VerifyReport:
    """What every chapter that reads data calls first (its ``data_root`` and ``check_checksums`` parameters).

    Resolves the root, makes ``check_checksums`` the setting of every reader in this process (and of the runs a
    sweep starts from it), and, when checking, checks the datasets' folders against the root's own manifest
    (or the packaged one). Returns a report to print: the root, the manifest and each dataset's data digest.
    """
    check_bool_param("check_checksums", check_checksums)
    root = resolve_data_root(data_root)
    _files.set_default_check(check_checksums)
    names = list(datasets) if datasets is not None else sorted(
        d for d in ("inspired", "redial") if (root / d).is_dir())
    prefixes = tuple(f"{d}/" for d in names)
    if check_checksums:
        report = verify_root(root, prefixes=prefixes or None)
    else:
        report = VerifyReport(root, UNCHECKED, 0, prefixes)
    report.digests = {d: data_digest(d, root, check=False) for d in names if (root / d).is_dir()}
    return report
