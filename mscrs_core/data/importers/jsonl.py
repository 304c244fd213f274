"""``mscrs data import jsonl SRC DST``: the generic dialog JSON Lines format -> ``DST/inspired/``.

One target format for any other crawl: convert your dialogs to it, give the knowledge graph they are linked
to, and every chapter runs on the result (read as the dataset ``inspired``: UniCRS's layout, the one the
project's INSPIRED reader reads).

Files in ``SRC``::

    train.jsonl  test.jsonl        required: one dialog per line (UTF-8, blank lines skipped)
    valid.jsonl                    optional: otherwise carved from train (seeded hash of dialog_id)
    entity2id.json                 the graph (or give --kg DIR): {entity name or URI: id}, ids 0..K-1
    dbpedia_subkg.json             {head_id: [[relation_id, tail_id], ...]}
    relation2id.json               optional: {relation name: id} (else relation_<k>)
    item_ids.json                  optional: the recommendable items (the ranking axis); else the items
                                   the dialogs mention

One dialog (schema version 1)::

    {"dialog_id": "crawl-0001",
     "turns": [
       {"role": "seeker", "text": "Any good heist movies?",
        "entities": ["<http://dbpedia.org/resource/Heist_film>"]},
       {"role": "recommender", "text": "Heat (1995) is the one.", "items": [1234], "entities": []}
     ]}

* ``dialog_id``: a non-empty string or an integer, unique across the three files.
* ``turns``: a list of turns; a dialog with no turns is dropped (reported).
* ``role``: ``"seeker"`` or ``"recommender"`` (any case).
* ``text``: a string (the surface text, movie names written out).
* ``items``: optional, the items (movies) mentioned in the turn; ``entities``: optional, the other entities
  (people, genres, ...). Each id is an entity id (a non-negative integer, not ``true``/``false``, not ``1.0``)
  or a key of ``entity2id.json`` (a string).
* Any other key, at either level, is ignored and counted in the report (a misspelt ``"entitys"`` shows up
  there).

Checked, each error naming the file and line: everything above (types, roles, a repeated ``dialog_id``, a
negative id, an empty file). Dropped and reported with the first examples: ids that are not in the graph
(an integer outside ``0..K-1``, a string not in ``entity2id.json``), dialogs without turns. Kept and
reported: an item that is not in ``item_ids.json`` becomes a plain entity of its turn.

Output: ``DST/inspired/{train,valid,test}_data_dbpedia.jsonl`` (turns ``text``, ``role``, ``movie``,
``entity_link``, ``entity_name``, ``movie_link``, ``movie_name``), the graph files, ``item_ids.json``,
``dialog_ids.tsv`` (split, line -> ``dialog_id``), the report ``DST/import_report_inspired.json`` and the root
manifest; the import reads the result back with :func:`~mscrs_core.data.inspired.load_inspired`.
The format is also described in ``book/data_formats.md``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError, check_path_param
from ..inspired import load_inspired
from ..kg import entity_name
from ..schema import ROLES, SPLITS
from .common import (open_import, ImportReport, KGFolder, carve_valid, check_destination, check_split_params, describe,
                     find_file, is_id, jsonl_lines, read_kg_folder, report_name, resolve_kg_dir, staged_root,
                     unicrs_turn, valid_rule, write_json, write_unicrs)

FORMAT = "jsonl"
DATASET = "inspired"
SCHEMA_VERSION = 1
SPLIT_FILES = {"train": "train.jsonl", "valid": "valid.jsonl", "test": "test.jsonl"}
DIALOG_KEYS = ("dialog_id", "turns")
TURN_KEYS = ("role", "text", "items", "entities")
KG_HINT = ("give --kg DIR (or put them in SRC): entity2id.json and dbpedia_subkg.json, optionally "
           "relation2id.json and item_ids.json")

Id = int | str


@dataclass(frozen=True)
class GenericTurn:
    role: str  # seeker / recommender
    text: str
    items: tuple[Id, ...] = ()
    entities: tuple[Id, ...] = ()


@dataclass(frozen=True)
class GenericDialog:
    dialog_id: str
    turns: tuple[GenericTurn, ...]
    line: int = 0
    ignored_keys: tuple[str, ...] = ()


def _ids(v: object, where: str, key: str, path: Path, line: int) -> tuple[Id, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise DataError(path, f"{where}: {key!r} is {describe(v)}; expected a list of entity ids "
                              "(integers or entity2id.json keys)", line=line)
    for x in v:
        if isinstance(x, str):
            continue
        if not is_id(x):
            raise DataError(path, f"{where}: {key!r} holds {describe(x)}; expected an entity id (a non-negative "
                                  "integer, not true/false or 1.0) or an entity2id.json key (a string)", line=line)
        if x < 0:
            raise DataError(path, f"{where}: {key!r} holds the negative id {x}; expected ids >= 0", line=line)
    return tuple(v)


def parse_dialog(obj: object, path: Path, line: int) -> GenericDialog:
    """One line of the generic format -> :class:`GenericDialog`; anything malformed is a DataError naming
    ``path`` and ``line`` and what was expected."""
    if not isinstance(obj, dict):
        raise DataError(path, f"found {describe(obj)}; expected a JSON object "
                              '{"dialog_id": ..., "turns": [...]} (one dialog per line)', line=line)
    missing = [k for k in DIALOG_KEYS if k not in obj]
    if missing:
        raise DataError(path, f"dialog lacks the key(s) {', '.join(missing)}; expected "
                              '{"dialog_id": ..., "turns": [...]}', line=line)
    did = obj["dialog_id"]
    if not ((isinstance(did, str) and did.strip()) or is_id(did)):
        raise DataError(path, f"'dialog_id' is {describe(did)}; expected a non-empty string or an integer", line=line)
    turns = obj["turns"]
    if not isinstance(turns, list):
        raise DataError(path, f"'turns' is {describe(turns)}; expected a list of turns", line=line)
    ignored = [f"dialog.{k}" for k in obj if k not in DIALOG_KEYS]
    out = []
    for k, t in enumerate(turns):
        where = f"turn {k}"
        if not isinstance(t, dict):
            raise DataError(path, f"{where} is {describe(t)}; expected an object "
                                  '{"role", "text", "items", "entities"}', line=line)
        role = t.get("role")
        if not isinstance(role, str) or role.strip().lower() not in ROLES:
            raise DataError(path, f"{where}: 'role' is {describe(role)}; expected \"seeker\" or \"recommender\"",
                            line=line)
        text = t.get("text")
        if not isinstance(text, str):
            raise DataError(path, f"{where}: 'text' is {describe(text)}; expected a string", line=line)
        out.append(GenericTurn(role.strip().lower(), text, _ids(t.get("items"), where, "items", path, line),
                               _ids(t.get("entities"), where, "entities", path, line)))
        ignored.extend(f"turn.{k}" for k in t if k not in TURN_KEYS)
    return GenericDialog(str(did).strip() if isinstance(did, str) else str(did), tuple(out), line,
                         tuple(dict.fromkeys(ignored)))


def read_dialogs(path: str | os.PathLike) -> Iterator[GenericDialog]:
    """Every dialog of a generic JSON Lines file, checked (errors name the file and line)."""
    path = Path(path)
    for n, obj in jsonl_lines(path):
        yield parse_dialog(obj, path, n)


class _Resolver:
    """Entity ids and entity2id keys -> entity ids of the graph (misses reported)."""

    def __init__(self, graph: KGFolder, report: ImportReport):
        self.K = graph.num_entities
        self.e2i = graph.entity2id
        self.report = report

    def __call__(self, x: Id, kind: str, where: str) -> int | None:
        if isinstance(x, str):
            eid = self.e2i.get(x)
            self.report.link(kind, eid is not None, "ids and entity2id.json keys checked against the graph")
            if eid is None:
                self.report.drop(kind, "not a key of entity2id.json", f"{where}: {x!r}")
            return eid
        ok = 0 <= x < self.K
        self.report.link(kind, ok, "ids and entity2id.json keys checked against the graph")
        if not ok:
            self.report.drop(kind, f"entity id outside the graph (0..{self.K - 1})", f"{where}: {x}")
        return x if ok else None


def import_jsonl(src: str | os.PathLike, dst: str | os.PathLike, *, kg: str | os.PathLike | None = None,
                 force: bool = False, valid_fraction: float = 0.1, seed: int = 0) -> ImportReport:
    """Import generic dialog JSON Lines from ``src`` into the data root ``dst`` (see the module docstring)."""
    check_path_param("src", src, optional=False)
    check_split_params(valid_fraction, seed)
    src_root = Path(src).expanduser().resolve()
    if not src_root.is_dir():
        raise DataError(src_root, "source folder does not exist; expected train.jsonl, test.jsonl "
                                  "(and valid.jsonl) in the generic dialog format")
    paths = {s: find_file(src_root, [f], f"{s} dialogs", required=s != "valid") for s, f in SPLIT_FILES.items()}
    kg_dir = resolve_kg_dir(kg, [src_root], ("entity2id.json", "dbpedia_subkg.json"), KG_HINT)
    dst_root, report, graph = open_import(FORMAT, DATASET, paths, kg_dir, dst, force, src_root)

    dialogs: dict[str, list[GenericDialog]] = {}
    first_seen: dict[str, tuple[Path, int]] = {}
    ignored: dict[str, int] = {}
    for split in SPLITS:
        path = paths[split]
        if path is None:
            continue
        rows = []
        for d in read_dialogs(path):
            if d.dialog_id in first_seen:
                other, other_line = first_seen[d.dialog_id]
                raise DataError(path, f"dialog_id {d.dialog_id} also appears at {other}:{other_line}; expected "
                                      "each dialog once, in one file (a repeat leaks test dialogs)", line=d.line)
            first_seen[d.dialog_id] = (path, d.line)
            for k in d.ignored_keys:
                ignored[k] = ignored.get(k, 0) + 1
            if not d.turns:
                report.drop("dialogs", "no turns", f"{path.name}:{d.line} (dialog_id {d.dialog_id})")
                continue
            rows.append(d)
        if not rows:
            raise DataError(path, f"no dialogs to import for the {split} split; expected one dialog per line "
                                  '{"dialog_id": ..., "turns": [...]}')
        dialogs[split] = rows
    if "valid" not in dialogs:
        dialogs["train"], dialogs["valid"] = carve_valid(dialogs["train"], lambda d: d.dialog_id, valid_fraction,
                                                         seed, paths["train"])
        report.notes.append(valid_rule(valid_fraction, seed))
    dialogs = {s: dialogs[s] for s in SPLITS}
    if ignored:
        report.notes.append("keys outside schema version 1 ignored: "
                            + ", ".join(f"{k} ({n} dialogs)" for k, n in sorted(ignored.items())))

    unicrs, item_ids = _convert(dialogs, graph, paths, report)
    with staged_root(dst_root, DATASET) as stage:
        files = write_unicrs(stage / DATASET, unicrs, graph, item_ids)
        ds = load_inspired(stage, check=False)  # the project's reader on exactly what DST will hold
        for split in SPLITS:
            src_name = paths[split].name if paths[split] is not None else f"{paths['train'].name} (carved)"
            report.splits[split] = {"source": src_name, "dialogs": len(ds.splits[split]),
                                    "turns": sum(len(d) for d in ds.splits[split])}
        report.reader = dict(ds.report)
        report.reader["items"] = len(ds.item_ids)
        report.outputs = [f"{DATASET}/{f}" for f in files] + [report_name(DATASET)]
        write_json(stage / report_name(DATASET), report.to_json(), indent=1)
    return report


def _convert(dialogs: dict[str, list[GenericDialog]], graph: KGFolder, paths: dict[str, Path | None],
             report: ImportReport) -> tuple[dict[str, list[tuple[str, list[dict[str, Any]]]]], list[int]]:
    resolve = _Resolver(graph, report)
    catalogue = set(graph.item_ids) if graph.item_ids is not None else None
    uri = graph.id2entity()
    used_items: set[int] = set()
    out: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
    for split, ds in dialogs.items():
        name = (paths[split] or paths["train"]).name
        out[split] = []
        for d in ds:
            turns = []
            for k, t in enumerate(d.turns):
                where = f"{name}:{d.line} turn {k}"
                items: list[int] = []
                ents: list[int] = []
                for x in t.items:
                    eid = resolve(x, "item ids", where)
                    if eid is None:
                        continue
                    if catalogue is not None and eid not in catalogue:
                        report.drop("item ids (as items)", "not in item_ids.json: kept as a plain entity of the turn",
                                    f"{where}: {x!r}")
                        if eid not in ents:
                            ents.append(eid)
                    elif eid not in items:
                        items.append(eid)
                for x in t.entities:
                    eid = resolve(x, "entity ids", where)
                    if eid is not None and eid not in ents and eid not in items:
                        ents.append(eid)
                used_items.update(items)
                turns.append((t, items, ents))
            out[split].append((d.dialog_id, turns))
    item_ids = sorted(catalogue) if catalogue is not None else sorted(used_items)
    if not item_ids:
        first = next(p for p in paths.values() if p is not None)
        raise DataError(first, "no turn names an item that is in the graph, so there would be no items to "
                               "recommend; expected 'items' ids (or an item_ids.json with the catalogue)")
    final: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
    for split, ds in out.items():
        final[split] = [(did, [unicrs_turn(t.role, t.text, [entity_name(uri[i]) for i in items],
                                           [uri[e] for e in ents], [uri[i] for i in items])
                               for t, items, ents in turns]) for did, turns in ds]
    return final, item_ids
