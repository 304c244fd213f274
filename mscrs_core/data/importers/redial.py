"""``mscrs data import redial SRC DST``: the official ReDial release -> ``DST/redial/``.

Input (``SRC``, or ``SRC/redial`` when that is where the files are):

* ``train_data.jsonl`` and ``test_data.jsonl`` (required), ``valid_data.jsonl`` (optional), any number of
  dialogs each: one dialog per line in ReDial's raw schema (``conversationId``, ``messages`` with
  ``senderWorkerId`` and ``text`` where movies are written ``@<movieId>``, ``movieMentions``,
  ``initiatorWorkerId``, ``respondentWorkerId``, ...);
* ``movies_with_mentions.csv`` (required; header ``movieId,movieName,...``);
* ``movie_metadata.json`` (optional: movie id -> name, genre, plot, ...; the offline item descriptions);
* the knowledge graph (KGSF's DBpedia sub-graph; ReDial itself ships none): ``--kg DIR``, else ``SRC/kg``,
  holding ``entity2id.json``, ``dbpedia_subkg.json``, ``movie2entity.json`` and ``movie_entity_ids.json``.

Validation split. When ``valid_data.jsonl`` is absent, one is carved from train by a seeded hash of the
``conversationId`` (:func:`~mscrs_core.data.importers.common.valid_rule`): with the defaults
(``valid_fraction=0.1``, ``seed=0``) a dialog goes to valid when the first 8 bytes of
``sha256("mscrs-valid:0:<conversationId>")``, as a big-endian integer over ``2**64``, are below 0.1. The rule
depends on the id only, so the same dialog lands on the same side whatever the file's order or size; the
report repeats it.

Output: ``DST/redial/{train,valid,test}_data.jsonl`` (one dialog per line, every field of the source kept,
re-serialised as compact UTF-8 JSON), ``movies_with_mentions.csv`` and the four ``kg/`` files byte for byte,
``movie_metadata.json`` when given, the report ``DST/import_report_redial.json`` and the root manifest
(``DST/MANIFEST.sha256.tsv``). This is exactly what :func:`~mscrs_core.data.redial.load_redial` reads, and
the import ends by reading it back with that reader.

Checked, each error naming the file and line: every dialog with the reader's own checks (types of the ids,
``messages``, ``movieMentions``, ...), a ``conversationId`` given twice (in one file or two: a leak), an empty
split, the CSV and the graph files. Dropped and reported: dialogs without messages. Reported, not dropped:
movie mentions whose movie has no graph entity (the text keeps the movie's name, the turn gets no item) and
mentions whose movie has no name; the entities the reader links in the text (the project's linker).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..errors import DataError, check_path_param
from ..files import DataFiles
from ..kg import check_vocabulary, read_subkg
from ..redial import MOVIE_MENTION, _DialogParser, load_redial, movie_entities, movie_names
from ..schema import SPLITS
from .common import (ImportReport, carve_valid, check_destination, check_split_params, describe, find_file,
                     is_id, jsonl_lines, read_json, report_name, resolve_kg_dir, staged_root, valid_rule,
                     write_json, write_jsonl)

FORMAT = "redial"
DATASET = "redial"
SPLIT_FILES = {"train": "train_data.jsonl", "valid": "valid_data.jsonl", "test": "test_data.jsonl"}
MOVIES_CSV = "movies_with_mentions.csv"
METADATA = "movie_metadata.json"
KG_NEEDS = ("entity2id.json", "dbpedia_subkg.json", "movie2entity.json", "movie_entity_ids.json")
KG_HINT = ("ReDial ships no knowledge graph: give --kg DIR with KGSF's DBpedia sub-graph as JSON "
           "(entity2id.json, dbpedia_subkg.json, movie2entity.json, movie_entity_ids.json; in this workplace "
           "../shared/data/redial/kg)")


def _source_dir(src: Path) -> Path:
    for c in (src, src / "redial"):
        if (c / SPLIT_FILES["train"]).is_file() or (c / SPLIT_FILES["test"]).is_file():
            return c
    return src


def _read_kg(kg_dir: Path) -> tuple[dict[str, int], dict[str, int], set[int]]:
    """(entity2id, movie id -> entity id, item set), checked as the reader checks them (errors name the file)."""
    for n in KG_NEEDS:
        if not (kg_dir / n).is_file():
            raise DataError(kg_dir / n, f"missing knowledge-graph file; {KG_HINT}")
    files = DataFiles(kg_dir, check=False)
    entity2id = check_vocabulary(files.json("entity2id.json"), kg_dir / "entity2id.json")
    K = len(entity2id)
    m2e_path = kg_dir / "movie2entity.json"
    movie2uri = files.json("movie2entity.json")
    if not isinstance(movie2uri, dict):
        raise DataError(m2e_path, f"expected a JSON object {{movieId: uri or null}}, found {describe(movie2uri)}")
    ipath = kg_dir / "movie_entity_ids.json"
    item_ids = files.json("movie_entity_ids.json")
    if not isinstance(item_ids, list) or not item_ids:
        raise DataError(ipath, f"expected a non-empty JSON list of entity ids in 0..{K - 1}, "
                               f"found {describe(item_ids)}")
    for i in item_ids:
        if not (is_id(i) and 0 <= i < K):
            raise DataError(ipath, f"item id {i!r} ({type(i).__name__}) is not an entity id in 0..{K - 1}")
    movie2eid = movie_entities(movie2uri, entity2id, m2e_path)  # the reader's rule (load_redial)
    read_subkg(files, "dbpedia_subkg.json", K)
    return entity2id, movie2eid, set(item_ids)


def import_redial(src: str | os.PathLike, dst: str | os.PathLike, *, kg: str | os.PathLike | None = None,
                  force: bool = False, valid_fraction: float = 0.1, seed: int = 0) -> ImportReport:
    """Import the official ReDial release from ``src`` into the data root ``dst`` (see the module docstring)."""
    check_path_param("src", src, optional=False)
    check_split_params(valid_fraction, seed)
    src_root = Path(src).expanduser().resolve()
    if not src_root.is_dir():
        raise DataError(src_root, "source folder does not exist; expected the ReDial release "
                                  "(train_data.jsonl, test_data.jsonl, movies_with_mentions.csv)")
    base = _source_dir(src_root)
    kg_dir = resolve_kg_dir(kg, [base / "kg", src_root / "kg"], KG_NEEDS, KG_HINT)
    paths = {s: find_file(base, [f], f"ReDial {s}", required=s != "valid") for s, f in SPLIT_FILES.items()}
    csv_path = find_file(base, [MOVIES_CSV], "ReDial movie list")
    meta_path = base / METADATA if (base / METADATA).is_file() else None
    inputs = [p for p in [*paths.values(), csv_path, meta_path, *(kg_dir / n for n in KG_NEEDS)] if p is not None]
    dst_root = check_destination(dst, DATASET, force, inputs)

    report = ImportReport(FORMAT, DATASET)
    for p in inputs:
        if p.parent == kg_dir and p.name in KG_NEEDS:
            report.source(p, kg_dir, "kg/")
        else:
            report.source(p, base)
    entity2id, movie2eid, item_set = _read_kg(kg_dir)
    names = movie_names(DataFiles(base, check=False), MOVIES_CSV)
    if meta_path is not None and not isinstance(read_json(meta_path), dict):
        raise DataError(meta_path, "expected a JSON object {movieId: {name, genre, plot, ...}}")

    counts: Counter = Counter()
    parser = _DialogParser(movie2eid, item_set, names, None, counts)
    dialogs: dict[str, list[tuple[str, dict]]] = {}
    first_seen: dict[str, tuple[Path, int]] = {}
    for split in SPLITS:
        path = paths[split]
        if path is None:
            continue
        rows = []
        for n, obj in jsonl_lines(path):
            d = parser(obj, str(path), n)  # the reader's checks: a malformed dialog names this file and line
            if d is None:
                report.drop("dialogs", "no messages", f"{path.name}:{n} (conversationId {obj['conversationId']})")
                continue
            if d.dialog_id in first_seen:
                other, other_line = first_seen[d.dialog_id]
                raise DataError(path, f"conversationId {d.dialog_id} also appears at {other}:{other_line}; "
                                      "expected each dialog once, in one split (a repeat leaks test dialogs)", line=n)
            first_seen[d.dialog_id] = (path, n)
            _check_mentions(obj, movie2eid, names, report, f"{path.name}:{n}")
            rows.append((d.dialog_id, obj))
        if not rows:
            raise DataError(path, f"no dialogs to import for the {split} split; expected one ReDial dialog per line")
        dialogs[split] = rows
    if "valid" not in dialogs:
        dialogs["train"], dialogs["valid"] = carve_valid(dialogs["train"], lambda r: r[0], valid_fraction, seed,
                                                         paths["train"])
        report.notes.append(valid_rule(valid_fraction, seed))
        carved = True
    else:
        carved = False
    dialogs = {s: dialogs[s] for s in SPLITS}

    with staged_root(dst_root, DATASET) as stage:
        out = stage / DATASET
        for split in SPLITS:
            write_jsonl(out / SPLIT_FILES[split], (obj for _, obj in dialogs[split]))
            src_name = paths[split].name if paths[split] is not None else f"{paths['train'].name} (carved)"
            report.splits[split] = {"source": src_name, "dialogs": len(dialogs[split]),
                                    "messages": sum(len(o["messages"]) for _, o in dialogs[split])}
        (out / "kg").mkdir(parents=True)
        for n in KG_NEEDS:
            _copy(kg_dir / n, out / "kg" / n)
        _copy(csv_path, out / MOVIES_CSV)
        if meta_path is not None:
            _copy(meta_path, out / METADATA)
        else:
            report.notes.append(f"no {METADATA} in the source: chapters that describe ReDial items from it "
                                "(offline item descriptions) need it; copy it to redial/ and rerun "
                                "`mscrs data manifest DST`")
        ds = load_redial(stage, check=False)  # the project's reader on exactly what DST will hold
        for split in SPLITS:
            report.splits[split]["turns"] = sum(len(d) for d in ds.splits[split])
        rr = ds.report
        report.linked["movie mentions -> items"] = {
            "linked": int(rr.get("movie_mentions", 0)) - int(rr.get("movie_mentions_unlinked", 0)),
            "total": int(rr.get("movie_mentions", 0)),
            "how": "@movieId through kg/movie2entity.json (the reader's rule)"}
        report.linked["turns with a linked entity or item"] = {
            "linked": int(rr.get("turns_with_entity_or_item", 0)), "total": int(rr.get("turns", 0)),
            "how": "people, genres, ... by the project's EntityLinker over the graph's entity names"}
        report.reader = {k: v for k, v in rr.items() if k != "per_split"}
        report.reader["split_rule"] = "carved" if carved else "given"
        report.outputs = sorted(p.relative_to(stage).as_posix() for p in out.rglob("*") if p.is_file())
        report.outputs.append(report_name(DATASET))
        write_json(stage / report_name(DATASET), report.to_json(), indent=1)
    return report


def _check_mentions(obj: dict, movie2eid: dict[str, int], names: dict[str, str], report: ImportReport,
                    where: str) -> None:
    """Report the movie mentions the reader cannot turn into items (or name)."""
    mentions = obj.get("movieMentions")
    mentions = mentions if isinstance(mentions, dict) else {}
    for m in obj["messages"]:
        for mid in MOVIE_MENTION.findall(m["text"]):
            name = mentions.get(mid) or names.get(mid)
            if mid not in movie2eid:
                report.drop("movie mentions (item link)", "movie id has no entity in kg/movie2entity.json "
                            "(the text keeps the name; the turn gets no item)", f"{where}: @{mid} {name!r}")
            if name is None:
                report.drop("movie mentions (name)", "movie id in neither movieMentions nor "
                            "movies_with_mentions.csv (the text keeps @id)", f"{where}: @{mid}")


def _copy(a: Path, b: Path) -> None:
    import shutil

    b.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(a, b)
