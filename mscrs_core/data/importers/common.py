"""What the importers share: the report, the knowledge-graph folder, the validation-split rule, the UniCRS
(INSPIRED) layout writer and the staged, all-or-nothing write of a data root.

Writing. An importer writes everything into a hidden temporary folder next to ``DST``
(``.<DST name>.import-XXXX``), reads the result back with the project's own reader (so what lands in
``DST`` is exactly what every chapter reads), and only then moves it into place:

* ``DST`` absent or empty: the temporary folder, with the root manifest already written, is renamed to
  ``DST`` (one rename: ``DST`` is either complete or absent).
* ``DST`` not empty: refused unless ``force``; with ``force`` only the dataset's folder (``DST/redial`` or
  ``DST/inspired``) and its report are replaced (other folders, e.g. the other dataset, stay), then the root
  manifest is rewritten. So ReDial and INSPIRED can be imported into one root, the second with ``force``.

The report (:class:`ImportReport`) is printed and saved as ``DST/import_report_<dataset>.json``. It holds no
absolute path and no time stamp, so importing the same files twice gives the same bytes (and the same data
digest).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TypeVar

import numpy as np

from ...atomic import atomic_write_text
from ..errors import DataError, InvalidParameter, check_bool_param, check_path_param
from ..files import DataFiles, sha256_of
from ..kg import check_id_map, check_vocabulary, entity_name, read_subkg
from ..linking import EntityLinker, normalise
from ..schema import KnowledgeGraph

T = TypeVar("T")
MAX_EXAMPLES = 5  # examples kept per reason in the report

# -- the validation split ----------------------------------------------------------------------------------
VALID_SALT = "mscrs-valid"


def valid_rule(fraction: float, seed: int) -> str:
    """The carving rule in words (docstrings, the report)."""
    return (f"no validation file was given: a training dialog goes to valid when the first 8 bytes of "
            f"sha256('{VALID_SALT}:{seed}:<dialog id>'), read as a big-endian integer and divided by 2**64, are "
            f"below {fraction} (about {fraction:.0%} of train, the same dialogs whatever the order or the size of "
            "the file); if that leaves valid (or train) empty, the dialog with the smallest (largest) value moves")


def _unit_hash(dialog_id: str, seed: int) -> float:
    h = hashlib.sha256(f"{VALID_SALT}:{seed}:{dialog_id}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def check_split_params(valid_fraction: object, seed: object) -> None:
    if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, (int, float)) or not (
            0.0 < float(valid_fraction) < 1.0):
        raise InvalidParameter("valid_fraction", valid_fraction, "a number strictly between 0 and 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidParameter("seed", seed, "an integer")


def carve_valid(dialogs: Sequence[T], key: Callable[[T], str], fraction: float, seed: int,
                source: str | Path) -> tuple[list[T], list[T]]:
    """(train, valid) by :func:`valid_rule`; the order of ``dialogs`` is kept on both sides."""
    if len(dialogs) < 2:
        raise DataError(source, f"{len(dialogs)} training dialog(s): carving a validation split needs at least 2 "
                                "(or give a validation file)")
    u = [_unit_hash(key(d), seed) for d in dialogs]
    to_valid = [x < fraction for x in u]
    if not any(to_valid):
        to_valid[min(range(len(u)), key=u.__getitem__)] = True
    if all(to_valid):
        to_valid[max(range(len(u)), key=u.__getitem__)] = False
    train = [d for d, v in zip(dialogs, to_valid) if not v]
    valid = [d for d, v in zip(dialogs, to_valid) if v]
    return train, valid


# -- the report --------------------------------------------------------------------------------------------
@dataclass
class ImportReport:
    """What an import linked and what it dropped, with counts, reasons and the first examples."""

    format: str
    dataset: str
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    linked: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    reader: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    def link(self, what: str, ok: bool, how: str = "") -> None:
        """Count one attempt to link a ``what`` (movie mention, genre name, ...); ``ok``: it was linked."""
        entry = self.linked.setdefault(what, {"linked": 0, "total": 0, "how": how})
        entry["total"] += 1
        entry["linked"] += bool(ok)
        if how and not entry["how"]:
            entry["how"] = how

    def drop(self, what: str, reason: str, example: str) -> None:
        """One ``what`` (a dialog, a movie mention, ...) not carried over, for ``reason``; ``example``: where."""
        entry = self.dropped.setdefault((what, reason), {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < MAX_EXAMPLES:
            entry["examples"].append(example)

    def source(self, path: Path, base: Path, prefix: str = "") -> None:
        """Record an input file: its name relative to ``base`` (after ``prefix``), size and sha256."""
        try:
            name = path.relative_to(base).as_posix()
        except ValueError:
            name = path.name
        self.sources.append({"file": prefix + name, "bytes": path.stat().st_size, "sha256": sha256_of(path)})

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "dataset": self.dataset,
            "sources": self.sources,
            "splits": self.splits,
            "linked": [{"what": k, **v} for k, v in self.linked.items()],
            "dropped": [{"what": w, "reason": r, **v} for (w, r), v in self.dropped.items()],
            "notes": self.notes,
            "reader": self.reader,
            "outputs": self.outputs,
        }

    def summary(self) -> str:
        """The report in a few lines of text (what ``mscrs data import`` prints)."""
        out = [f"imported {self.format} -> {self.dataset}/"]
        for split, s in self.splits.items():
            extra = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("dialogs", "turns"))
            out.append(f"  {split}: {s.get('dialogs', 0)} dialogs, {s.get('turns', 0)} turns"
                       + (f" ({extra})" if extra else ""))
        for what, v in self.linked.items():
            if v["total"] is None:  # a count of what was found, not attempts
                n = f"{v['linked']}"
            else:
                n = f"{v['linked']} / {v['total']}" + (f" ({v['linked'] / v['total']:.1%})" if v["total"] else "")
            out.append(f"  linked {what}: {n}" + (f" -- {v['how']}" if v["how"] else ""))
        if not self.dropped:
            out.append("  dropped: nothing")
        for (what, reason), v in self.dropped.items():
            ex = "; ".join(v["examples"][:2])
            out.append(f"  dropped {v['count']} {what}: {reason}" + (f" (e.g. {ex})" if ex else ""))
        out.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(out)


# -- small readers and writers -------------------------------------------------------------------------------
def describe(v: object) -> str:
    """A short description of a wrong value for an error message."""
    r = repr(v)
    return f"{type(v).__name__} {r if len(r) <= 40 else r[:37] + '...'}"


def is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def jsonl_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-empty line of ``path``; errors name the file and line."""
    yield from DataFiles(path.parent, check=False).jsonl(path.name)


def read_json(path: Path) -> Any:
    return DataFiles(path.parent, check=False).json(path.name)


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=indent) + ("\n" if indent else ""), encoding="utf-8")


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def find_file(base: Path, names: Sequence[str], what: str, *, required: bool = True) -> Path | None:
    """The one of ``names`` present in ``base``; two of them present is ambiguous."""
    found = [base / n for n in names if (base / n).is_file()]
    if len(found) > 1:
        raise DataError(base, f"both {found[0].name} and {found[1].name} are here; expected one {what} file")
    if not found:
        if required:
            raise DataError(base / names[0], f"missing {what} file (expected {' or '.join(names)} in {base})")
        return None
    return found[0]


# -- the knowledge-graph folder ------------------------------------------------------------------------------
KG_FILES = ("entity2id.json", "dbpedia_subkg.json")


@dataclass
class KGFolder:
    """A knowledge graph in the project's files: ``entity2id.json``, ``dbpedia_subkg.json`` and, when present,
    ``relation2id.json`` and ``item_ids.json`` (the recommendable items)."""

    root: Path
    entity2id: dict[str, int]
    kg: KnowledgeGraph
    relation2id: dict[str, int] | None
    item_ids: list[int] | None

    @property
    def num_entities(self) -> int:
        return len(self.entity2id)

    def degree(self) -> np.ndarray:
        return np.bincount(np.concatenate([self.kg.head, self.kg.tail]), minlength=self.num_entities)

    def id2entity(self) -> list[str]:
        out = [""] * self.num_entities
        for k, v in self.entity2id.items():
            out[v] = k
        return out

    def relation_map(self) -> dict[str, int]:
        """``relation2id.json`` as given, or ``relation_<k>`` names for the ids the graph uses (KGSF never
        published its relation names)."""
        if self.relation2id is not None:
            return self.relation2id
        n = int(self.kg.relation.max()) + 1 if self.kg.num_edges else 1
        return {f"relation_{k}": k for k in range(n)}


def resolve_kg_dir(kg: str | os.PathLike | None, candidates: Sequence[Path], needs: Sequence[str],
                   hint: str) -> Path:
    """``kg`` when given, else the first of ``candidates`` that holds every file of ``needs``."""
    check_path_param("kg", kg)
    if kg is not None:
        p = Path(kg).expanduser().resolve()
        if not p.is_dir():
            raise DataError(p, f"knowledge-graph folder does not exist; expected a folder with {', '.join(needs)}")
        return p
    candidates = list(dict.fromkeys(Path(c) for c in candidates))
    for c in candidates:
        if all((c / n).is_file() for n in needs):
            return c.resolve()
    first = candidates[0] if candidates else Path(".")
    missing = next((n for n in needs if not (first / n).is_file()), needs[0])
    raise DataError(first / missing, f"no knowledge graph found (looked for {', '.join(needs)} in "
                                     f"{', '.join(str(c) for c in candidates)}); {hint}")


def read_kg_folder(root: Path) -> KGFolder:
    """Read and check a knowledge-graph folder with the project's own checks (errors name the file)."""
    for n in KG_FILES:
        if not (root / n).is_file():
            raise DataError(root / n, f"missing knowledge-graph file (expected {', '.join(KG_FILES)} in {root})")
    files = DataFiles(root, check=False)
    entity2id = check_vocabulary(files.json("entity2id.json"), root / "entity2id.json")
    relation2id = None
    rel_names = None
    if (root / "relation2id.json").is_file():
        relation2id = check_id_map(files.json("relation2id.json"), root / "relation2id.json", "relation")
        rel_names = [""] * len(relation2id)
        for uri, rid in relation2id.items():
            rel_names[rid] = uri
    kg = read_subkg(files, "dbpedia_subkg.json", len(entity2id),
                    len(relation2id) if relation2id is not None else None, rel_names)
    item_ids = None
    if (root / "item_ids.json").is_file():
        raw = files.json("item_ids.json")
        ipath = root / "item_ids.json"
        if not isinstance(raw, list):
            raise DataError(ipath, f"expected a JSON list of integer entity ids, found {describe(raw)}")
        for i in raw:
            if not (is_id(i) and 0 <= i < len(entity2id)):
                raise DataError(ipath, f"item id {i!r} ({type(i).__name__}) is not an entity id in "
                                       f"0..{len(entity2id) - 1}")
        item_ids = sorted(set(raw))
    return KGFolder(root=root, entity2id=entity2id, kg=kg, relation2id=relation2id, item_ids=item_ids)


# -- linking names ---------------------------------------------------------------------------------------------
_QUALIFIED = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")
_YEAR_IN_NAME = re.compile(r"^(.*?\S)\s*\(\s*(\d{4})\s*\)\s*$")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")


def split_year(name: str) -> tuple[str, str | None]:
    """``"Full Metal Jacket (1987)"`` -> ``("Full Metal Jacket", "1987")``; no year -> ``(name, None)``."""
    m = _YEAR_IN_NAME.match(name.strip())
    return (m.group(1), m.group(2)) if m else (name.strip(), None)


class MovieIndex:
    """Movie titles (with an optional year) -> graph entities.

    Every entity's readable name (:func:`~mscrs_core.data.kg.entity_name`) is split into a title and its
    DBpedia qualifier (``Joker (2019 film)`` -> ``joker`` / ``2019 film``); titles are normalised as the
    project's :class:`~mscrs_core.data.linking.EntityLinker` normalises names. A mention ``Title (YYYY)``
    resolves to the candidate with the same title, preferring: a qualifier naming a film of that year, then
    ``(film)``, then no qualifier, then any other qualifier of a known item; a qualifier with another year is
    never taken (another film). Ties: a known item (``item_ids.json``) first, then the best-connected entity,
    then the lowest id.
    """

    def __init__(self, entity2id: dict[str, int], items: Iterable[int] | None = None,
                 degree: np.ndarray | None = None):
        self.items = set(items or ())
        self.degree = degree if degree is not None else np.zeros(len(entity2id) + 1)
        self.by_title: dict[str, list[tuple[int, str]]] = {}
        for uri, eid in entity2id.items():
            name = entity_name(uri)
            if not name or name.isdigit():
                continue  # KGSF's placeholder entities for unlinked movies are bare ReDial ids
            m = _QUALIFIED.match(name)
            title, qual = (m.group(1), m.group(2).strip().lower()) if m and m.group(1) else (name, "")
            key = normalise(title)
            if key:
                self.by_title.setdefault(key, []).append((eid, qual))

    def resolve(self, mention: str) -> int | None:
        title, year = split_year(mention)
        best = None
        for eid, qual in self.by_title.get(normalise(title), ()):
            years = _YEAR.findall(qual)
            if years and (year is None or year not in years):
                if year is not None or "film" not in qual:
                    continue
            is_item = eid in self.items
            if "film" in qual or "movie" in qual:
                rank = 0 if year is not None and year in years else 1
            elif qual == "":
                rank = 2
            elif is_item:
                rank = 3
            else:
                continue
            key = (rank, not is_item, -float(self.degree[eid]), eid)
            if best is None or key < best[0]:
                best = (key, eid)
        return None if best is None else best[1]


class NameLinker:
    """Names of people and genres -> graph entities, through the project's
    :class:`~mscrs_core.data.linking.EntityLinker` dictionary (movies left out).

    An annotated name is taken whole: its normalised form must be one of the linker's names (genre aliases
    such as ``horror`` -> ``Horror_film`` included; the case of the name does not matter, it is an annotation,
    not free text), or the linker must read the whole name as one entity; :meth:`genre` also tries
    ``<name> film`` / ``<name> fiction`` and a few common spellings (``sci-fi``). Free text goes through
    :meth:`EntityLinker.link` unchanged.
    """

    #: a genre name the dictionary lacks is also tried as "<name> film" and "<name> fiction" (DBpedia's
    #: ``Horror_fiction``), and under these common spellings
    GENRE_ALIASES = {"sci-fi": "science fiction", "scifi": "science fiction", "sci fi": "science fiction",
                     "rom-com": "romantic comedy", "romcom": "romantic comedy", "animated": "animation"}

    def __init__(self, entity2id: dict[str, int], exclude: set[int], degree: np.ndarray):
        self.linker = EntityLinker.from_vocabulary(entity2id, exclude=exclude, degree=degree)

    def genre(self, name: str) -> int | None:
        base = self.GENRE_ALIASES.get(" ".join(name.lower().split()), name)
        for cand in (base, f"{base} film", f"{base} fiction"):
            eid = self.name(cand)
            if eid is not None:
                return eid
        return None

    def name(self, name: str) -> int | None:
        key = normalise(name)
        if not key:
            return None
        cands = self.linker.names.get(key)
        if cands:
            return cands[0]
        res = self.linker.link(name)
        if len(res.spans) == 1 and res.spans[0][0] == 0 and res.spans[0][1] == len(key.split()):
            return res.spans[0][2]
        return None

    def text(self, text: str) -> list[int]:
        return self.linker.link(text).entities


# -- the UniCRS (INSPIRED) layout --------------------------------------------------------------------------------
UNICRS_ROLE = {"seeker": "SEEKER", "recommender": "RECOMMENDER"}


def unicrs_turn(role: str, text: str, movies: Sequence[str], entity_uris: Sequence[str],
                movie_uris: Sequence[str]) -> dict[str, Any]:
    """One turn as UniCRS writes it (``{split}_data_dbpedia.jsonl``); ``role``: seeker / recommender."""
    return {"text": text, "role": UNICRS_ROLE[role], "movie": list(movies),
            "entity_link": list(entity_uris), "entity_name": [entity_name(u) for u in entity_uris],
            "movie_link": list(movie_uris), "movie_name": [entity_name(u) for u in movie_uris]}


def write_unicrs(out: Path, splits: dict[str, list[tuple[str, list[dict[str, Any]]]]], kg: KGFolder,
                 item_ids: Sequence[int]) -> list[str]:
    """Write ``out`` (a data root's ``inspired/``) in the layout :func:`~mscrs_core.data.inspired.load_inspired`
    reads; ``splits``: split -> [(source dialog id, turns)]. Returns the files written (relative to ``out``).

    ``dialog_ids.tsv`` maps each dialog line back to its source id (the reader names dialogs ``file:line``).
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    rows = ["split\tline\tsource_dialog_id\n"]
    for split, dialogs in splits.items():
        name = f"{split}_data_dbpedia.jsonl"
        write_jsonl(out / name, (turns for _, turns in dialogs))
        rows.extend(f"{split}\t{n}\t{_tsv_safe(did)}\n" for n, (did, _) in enumerate(dialogs, 1))
        written.append(name)
    (out / "dialog_ids.tsv").write_text("".join(rows), encoding="utf-8")
    shutil.copyfile(kg.root / "entity2id.json", out / "entity2id.json")
    shutil.copyfile(kg.root / "dbpedia_subkg.json", out / "dbpedia_subkg.json")
    if kg.relation2id is not None:
        shutil.copyfile(kg.root / "relation2id.json", out / "relation2id.json")
    else:
        write_json(out / "relation2id.json", kg.relation_map())
    write_json(out / "item_ids.json", sorted(set(item_ids)))
    return written + ["dialog_ids.tsv", "entity2id.json", "dbpedia_subkg.json", "relation2id.json", "item_ids.json"]


def _tsv_safe(s: str) -> str:
    return " ".join(str(s).replace("\t", " ").split())


# -- the staged write -------------------------------------------------------------------------------------------
def report_name(dataset: str) -> str:
    return f"import_report_{dataset}.json"


def check_destination(dst: str | os.PathLike, dataset: str, force: object,
                      inputs: Sequence[Path]) -> Path:
    """``dst`` resolved, after refusing what the import must not do (a file, a non-empty folder without
    ``force``, a destination that would replace its own input)."""
    check_path_param("dst", dst, optional=False)
    check_bool_param("force", force)
    d = Path(dst).expanduser().resolve()
    if d.exists() and not d.is_dir():
        raise DataError(d, "destination is a file; expected a folder (absent, empty, or a data root with --force)")
    if d.is_dir() and any(d.iterdir()) and not force:
        raise DataError(d, "destination folder is not empty; give an empty or new folder, or --force to replace "
                           f"its {dataset}/ folder (other folders are kept)")
    target = d / dataset
    for p in inputs:
        p = p.resolve()
        if p == target or target in p.parents:
            raise DataError(p, f"is an input of this import and lies in {target}, which the import replaces; "
                               "import into another folder")
    return d


def _write_root_manifest(root: Path) -> None:
    from ..manifest import write_manifest  # the root manifest of `mscrs data manifest`

    write_manifest(root)


@contextmanager
def staged_root(dst: Path, dataset: str) -> Iterator[Path]:
    """A hidden temporary data root next to ``dst``; on normal exit its ``<dataset>/`` folder and report
    replace those of ``dst`` (see the module docstring) and the root manifest is written; on error nothing
    under ``dst`` changes and the temporary folder is removed."""
    parent = dst.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.import-", dir=parent))
    try:
        yield tmp
        _commit(tmp, dst, dataset)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _commit(tmp: Path, dst: Path, dataset: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    if not dst.exists() or (dst.is_dir() and not any(dst.iterdir())):
        _write_root_manifest(tmp)
        os.chmod(tmp, 0o777 & ~umask)
        if dst.exists():
            dst.rmdir()
        os.replace(tmp, dst)
        return
    target = dst / dataset
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dataset}.replaced-", dir=dst))
        os.replace(target, old / dataset)
    try:
        os.replace(tmp / dataset, target)
    except BaseException:
        if old is not None:
            os.replace(old / dataset, target)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    report = tmp / report_name(dataset)
    if report.is_file():
        atomic_write_text(dst / report_name(dataset), report.read_text(encoding="utf-8"))
    _write_root_manifest(dst)


def open_import(fmt: str, dataset: str, paths: dict[str, Path | None], kg_dir: Path, dst: str | os.PathLike,
                force: object, src_base: Path) -> tuple[Path, "ImportReport", "KGFolder"]:
    """The steps every importer shares once its input files are found: check the destination (no input may lie in
    the folder the import replaces), start the report with every source (graph files under ``kg/``) and read the
    graph folder. Returns (destination root, report, graph)."""
    kg_files = [kg_dir / n for n in ("entity2id.json", "dbpedia_subkg.json", "relation2id.json", "item_ids.json")
                if (kg_dir / n).is_file()]
    inputs = [p for p in paths.values() if p is not None] + kg_files
    dst_root = check_destination(dst, dataset, force, inputs)
    report = ImportReport(fmt, dataset)
    for p in inputs:
        if p in kg_files:
            report.source(p, kg_dir, "kg/")
        else:
            report.source(p, src_base)
    return dst_root, report, read_kg_folder(kg_dir)

