"""``mscrs data import inspired-tsv SRC DST``: the original INSPIRED release -> ``DST/inspired/``.

Input (``SRC``, or ``SRC/data/dialog_data`` as in the release's repository):

* ``train.tsv`` and ``test.tsv`` (required), ``dev.tsv`` or ``valid.tsv`` (optional): tab-separated, UTF-8,
  a header line, then one row per utterance. The release does not quote its fields (a ``"`` is just a
  character; ``QUOTATION_MARK`` in ``text`` stands for ``"`` and is written back as ``"``), so a field may not
  hold a tab or a line break. Columns used (others, such as the strategy labels, are ignored):
  ``dialog_id``, ``utt_id``, ``speaker`` (``RECOMMENDER`` / ``SEEKER``), ``turn_id``, ``text``, ``movies``,
  ``genres``, ``people_names`` (each a ``;``-separated list, movie names with their year:
  ``Full Metal Jacket (1987)``) and, when present, the per-dialog dictionaries ``movie_dict``,
  ``genre_dict``, ``actor_dict``, ``director_dict``, ``others_dict``: Python literals such as
  ``{'Full Metal Jacket (1987)': 0}``, read with :func:`ast.literal_eval` only (never evaluated as code).
* the knowledge graph (the release has none): ``--kg DIR``, else ``SRC`` itself, holding ``entity2id.json``
  and ``dbpedia_subkg.json`` and, when available, ``relation2id.json`` (otherwise ``relation_<k>`` names are
  written) and ``item_ids.json`` (preferred when a title is ambiguous). UniCRS's INSPIRED graph (in this
  workplace ``../shared/data/inspired``) and KGSF's ReDial graph both work.

Dialogs are the rows grouped by ``dialog_id`` in ``utt_id`` order; consecutive utterances of one speaker are
merged into one turn (texts joined by a space), as UniCRS's processed INSPIRED is (the release's 99 dev and
99 test dialogs give UniCRS's 2,053 and 2,089 turns). When no validation file is given, one is carved from
train by the seeded hash rule of :func:`~mscrs_core.data.importers.common.valid_rule` on ``dialog_id``.

Linking (counted in the report, every miss with its reason and first examples):

* movies: ``movies`` names -> graph entities by :class:`~mscrs_core.data.importers.common.MovieIndex`
  (title and year against the entities' names, normalised as the project's linker does); the linked movies
  are the items (``item_ids.json``);
* genres and people: ``genres`` / ``people_names`` names -> entities through the project's
  :class:`~mscrs_core.data.linking.EntityLinker` dictionary (whole names);
* text (``link_text=True``, the default): the linker also runs over each turn's text with the movie titles
  blanked out, as the ReDial reader does; ``--no-link-text`` keeps only the annotated names.

Output: ``DST/inspired/{train,valid,test}_data_dbpedia.jsonl`` in UniCRS's form (``text``, ``role``,
``movie``, ``entity_link``, ``entity_name``, ``movie_link``, ``movie_name``), the graph files, ``item_ids.json``,
``dialog_ids.tsv`` (split, line -> source ``dialog_id``), the report ``DST/import_report_inspired.json`` and
the root manifest: what :func:`~mscrs_core.data.inspired.load_inspired` reads (the import reads it back).

Errors (file and line): a missing column, a row whose field count differs from the header's, an empty
``dialog_id``, a non-integer ``utt_id`` / ``turn_id``, a speaker other than RECOMMENDER / SEEKER, a dictionary
that is a literal but not ``{name: index}``, a ``utt_id`` repeated in a dialog, a ``dialog_id`` in two files,
an empty file. A dictionary that is not a Python literal at all is an error with ``strict=True``; by default it
is ignored and reported, because the official release has such rows (e.g. ``{'Murder Mystery (2019)': 0,
'Office Space (1999): 1}`` in 41 rows of ``dev.tsv``) and the dictionaries only repeat the dialog's names.
"""
from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, check_bool_param, check_path_param
from ..files import decode_utf8
from ..inspired import load_inspired
from ..schema import RECOMMENDER, SEEKER, SPLITS
from .common import (open_import, ImportReport, KGFolder, MovieIndex, NameLinker, carve_valid, check_destination,
                     check_split_params, find_file, read_kg_folder, report_name, resolve_kg_dir, split_year,
                     staged_root, unicrs_turn, valid_rule, write_json, write_unicrs)

FORMAT = "inspired-tsv"
DATASET = "inspired"
SPLIT_FILES = {"train": ("train.tsv",), "valid": ("dev.tsv", "valid.tsv"), "test": ("test.tsv",)}
REQUIRED = ("dialog_id", "utt_id", "speaker", "turn_id", "text", "movies", "genres", "people_names")
DICTS = ("movie_dict", "genre_dict", "actor_dict", "director_dict", "others_dict")
SPEAKERS = {"RECOMMENDER": RECOMMENDER, "SEEKER": SEEKER}
QUOTE = "QUOTATION_MARK"
_INT = re.compile(r"[0-9]+")
KG_HINT = ("the INSPIRED release ships no knowledge graph: give --kg DIR with entity2id.json and "
           "dbpedia_subkg.json (and relation2id.json, item_ids.json when you have them), e.g. UniCRS's INSPIRED "
           "graph (in this workplace ../shared/data/inspired)")


@dataclass
class Utterance:
    """One row of an INSPIRED TSV file."""

    line: int
    dialog_id: str
    utt_id: int
    role: str
    turn_id: int
    text: str
    movies: list[str]
    genres: list[str]
    people: list[str]
    dicts: dict[str, dict[str, int]] = field(default_factory=dict)


def _names(value: str) -> list[str]:
    return [s.strip() for s in value.split(";") if s.strip()]


def _short(s: str, n: int = 60) -> str:
    return repr(s if len(s) <= n else s[: n - 3] + "...")


def read_inspired_tsv(path: Path, report: ImportReport | None = None, *, strict: bool = False
                      ) -> dict[str, list[Utterance]]:
    """dialog_id -> its utterances in ``utt_id`` order, from one INSPIRED TSV file (see the module docstring).

    Every malformed row is a :class:`~mscrs_core.data.errors.DataError` naming ``path`` and the line.
    """
    text = decode_utf8(path.read_bytes(), path)
    lines = text.split("\n")
    header = lines[0].rstrip("\r").split("\t") if lines else []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(path, f"header lacks the column(s) {', '.join(missing)}; expected a tab-separated header "
                              f"with {', '.join(REQUIRED)} (INSPIRED's dialog_data/*.tsv)", line=1)
    dup = sorted({c for c in header if header.count(c) > 1 and c})
    if dup:
        raise DataError(path, f"header repeats the column(s) {', '.join(dup)}; expected each column once", line=1)
    col = {c: i for i, c in enumerate(header)}
    dict_cols = [c for c in DICTS if c in col]
    out: dict[str, list[Utterance]] = {}
    seen: dict[tuple[str, int], int] = {}
    for n, raw in enumerate(lines[1:], 2):
        line = raw.rstrip("\r")
        if not line.strip() and "\t" not in line:
            continue
        f = line.split("\t")
        if len(f) != len(header):
            raise DataError(path, f"expected {len(header)} tab-separated fields as in the header, found {len(f)} "
                                  "(the release is unquoted: a field cannot hold a tab or a line break)", line=n)
        did = f[col["dialog_id"]].strip()
        if not did:
            raise DataError(path, "empty dialog_id; expected the dialog's id (e.g. 20191202-103716_425_live.pkl)",
                            line=n)
        ids = {}
        for c in ("utt_id", "turn_id"):
            v = f[col[c]].strip()
            if not _INT.fullmatch(v):
                raise DataError(path, f"{c} {_short(v)} is not a non-negative integer", line=n)
            ids[c] = int(v)
        spk = f[col["speaker"]].strip()
        role = SPEAKERS.get(spk.upper())
        if role is None:
            raise DataError(path, f"speaker {_short(spk)}; expected RECOMMENDER or SEEKER", line=n)
        if (did, ids["utt_id"]) in seen:
            raise DataError(path, f"dialog {did}: utt_id {ids['utt_id']} repeats line {seen[did, ids['utt_id']]}; "
                                  "expected one row per utterance", line=n)
        seen[did, ids["utt_id"]] = n
        dicts = {}
        for c in dict_cols:
            d = _literal_dict(f[col[c]], c, path, n, report, strict)
            if d is not None:
                dicts[c] = d
        out.setdefault(did, []).append(Utterance(
            line=n, dialog_id=did, utt_id=ids["utt_id"], role=role, turn_id=ids["turn_id"],
            text=f[col["text"]].replace(QUOTE, '"').strip(), movies=_names(f[col["movies"]]),
            genres=_names(f[col["genres"]]), people=_names(f[col["people_names"]]), dicts=dicts))
    if not out:
        raise DataError(path, "no utterance rows after the header; expected one row per utterance")
    for rows in out.values():
        rows.sort(key=lambda u: u.utt_id)
    return out


def _literal_dict(value: str, column: str, path: Path, line: int, report: ImportReport | None,
                  strict: bool) -> dict[str, int] | None:
    v = value.strip()
    if not v:
        return None
    try:
        d = ast.literal_eval(v)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if strict or report is None:
            raise DataError(path, f"{column} {_short(v)} is not a Python literal; expected a dict such as "
                                  "{'Full Metal Jacket (1987)': 0}", line=line) from None
        report.drop(f"{column} values", "not a Python literal (ignored: the movies, genres and people_names "
                                        "columns carry the mentions)", f"{path.name}:{line}: {_short(v, 50)}")
        return None
    if not isinstance(d, dict) or not all(isinstance(k, str) and type(i) is int for k, i in d.items()):
        raise DataError(path, f"{column} is a {type(d).__name__} {_short(v)}; expected a dict {{name: index}} "
                              "such as {'Full Metal Jacket (1987)': 0}", line=line)
    return d


def _merge(rows: list[Utterance]) -> list[list[Utterance]]:
    """Consecutive utterances of one speaker -> one turn."""
    turns: list[list[Utterance]] = []
    for u in rows:
        if turns and turns[-1][-1].role == u.role:
            turns[-1].append(u)
        else:
            turns.append([u])
    return turns


def _blank_titles(text: str, titles: list[str]) -> str:
    for t in sorted({split_year(m)[0] for m in titles if m}, key=len, reverse=True):
        text = re.sub(re.escape(t), " ", text, flags=re.IGNORECASE)
    return text


def import_inspired_tsv(src: str | os.PathLike, dst: str | os.PathLike, *, kg: str | os.PathLike | None = None,
                        force: bool = False, valid_fraction: float = 0.1, seed: int = 0, strict: bool = False,
                        link_text: bool = True) -> ImportReport:
    """Import the original INSPIRED release from ``src`` into the data root ``dst`` (module docstring)."""
    check_path_param("src", src, optional=False)
    check_split_params(valid_fraction, seed)
    check_bool_param("strict", strict)
    check_bool_param("link_text", link_text)
    src_root = Path(src).expanduser().resolve()
    if not src_root.is_dir():
        raise DataError(src_root, "source folder does not exist; expected INSPIRED's train.tsv, dev.tsv, test.tsv")
    base = src_root
    if not (base / "train.tsv").is_file() and (src_root / "data" / "dialog_data" / "train.tsv").is_file():
        base = src_root / "data" / "dialog_data"
    paths = {s: find_file(base, names, f"INSPIRED {s}", required=s != "valid") for s, names in SPLIT_FILES.items()}
    kg_dir = resolve_kg_dir(kg, [src_root, base], ("entity2id.json", "dbpedia_subkg.json"), KG_HINT)
    dst_root, report, graph = open_import(FORMAT, DATASET, paths, kg_dir, dst, force, base)

    split_dialogs: dict[str, list[tuple[str, list[Utterance]]]] = {}
    first_seen: dict[str, tuple[Path, int]] = {}
    for split in SPLITS:
        path = paths[split]
        if path is None:
            continue
        dialogs = read_inspired_tsv(path, report, strict=strict)
        for did, rows in dialogs.items():
            if did in first_seen:
                other, other_line = first_seen[did]
                raise DataError(path, f"dialog_id {did} also appears at {other}:{other_line}; expected each dialog "
                                      "in one file (a repeat leaks test dialogs)", line=rows[0].line)
            first_seen[did] = (path, min(u.line for u in rows))
        split_dialogs[split] = list(dialogs.items())
    if "valid" not in split_dialogs:
        split_dialogs["train"], split_dialogs["valid"] = carve_valid(
            split_dialogs["train"], lambda d: d[0], valid_fraction, seed, paths["train"])
        report.notes.append(valid_rule(valid_fraction, seed))
    split_dialogs = {s: split_dialogs[s] for s in SPLITS}

    unicrs, item_ids = _link(split_dialogs, graph, paths, report, link_text)
    with staged_root(dst_root, DATASET) as stage:
        out = stage / DATASET
        files = write_unicrs(out, unicrs, graph, item_ids)
        ds = load_inspired(stage, check=False)  # the project's reader on exactly what DST will hold
        for split in SPLITS:
            src_name = paths[split].name if paths[split] is not None else f"{paths['train'].name} (carved)"
            report.splits[split] = {"source": src_name, "dialogs": len(ds.splits[split]),
                                    "turns": sum(len(d) for d in ds.splits[split]),
                                    "utterances": sum(len(rows) for _, rows in split_dialogs[split])}
        report.reader = dict(ds.report)
        report.reader["items"] = len(ds.item_ids)
        report.outputs = [f"{DATASET}/{f}" for f in files] + [report_name(DATASET)]
        write_json(stage / report_name(DATASET), report.to_json(), indent=1)
    return report


def _link(split_dialogs: dict[str, list[tuple[str, list[Utterance]]]], graph: KGFolder,
          paths: dict[str, Path | None], report: ImportReport, link_text: bool):
    """UniCRS turns for every dialog, and the item ids (the linked movies)."""
    degree = graph.degree()
    movies = MovieIndex(graph.entity2id, graph.item_ids, degree)
    how_movie = "title (and year) against the graph's entity names"
    resolved: dict[str, int | None] = {}
    for dialogs in split_dialogs.values():
        for _, rows in dialogs:
            for u in rows:
                for m in u.movies:
                    if m not in resolved:
                        resolved[m] = movies.resolve(m)
    item_ids = sorted({e for e in resolved.values() if e is not None})
    if not item_ids:
        raise DataError(next(p for p in paths.values() if p is not None),
                        f"no movie name could be linked to the graph in {graph.root}, so there would be no items "
                        "to recommend; expected movie names such as 'Full Metal Jacket (1987)' and a graph with "
                        "their entities (--kg)")
    items = set(item_ids)
    names = NameLinker(graph.entity2id, items | set(graph.item_ids or ()), degree)
    uri = graph.id2entity()
    how_name = "whole name through the project's EntityLinker dictionary"
    for what, how in (("movie names", how_movie), ("genre names", how_name), ("people names", how_name)):
        report.linked[what] = {"linked": 0, "total": 0, "how": how}
    text_found = {"linked": 0, "total": None, "how": "the project's EntityLinker over each turn's text, movie "
                                                     "titles blanked (entities not already annotated)"}
    if link_text:
        report.linked["entities found in the text"] = text_found
    out: dict[str, list[tuple[str, list[dict]]]] = {}
    for split, dialogs in split_dialogs.items():
        out[split] = []
        for did, rows in dialogs:
            turns = []
            for group in _merge(rows):
                movie_names: list[str] = []
                m_ids: list[int] = []
                ents: list[int] = []
                for u in group:
                    where = f"{Path(_file_of(u, split, paths)).name}:{u.line}"
                    for m in dict.fromkeys(u.movies):
                        movie_names.append(m)
                        eid = resolved[m]
                        report.link("movie names", eid is not None, how_movie)
                        if eid is None:
                            report.drop("movie names", "no film of this title (and year) in the graph",
                                        f"{where}: {m!r}")
                        elif eid not in m_ids:
                            m_ids.append(eid)
                    for kind, values in (("genre names", u.genres), ("people names", u.people)):
                        for v in dict.fromkeys(values):
                            eid = names.genre(v) if kind == "genre names" else names.name(v)
                            report.link(kind, eid is not None, how_name)
                            if eid is None:
                                report.drop(kind, "no graph entity of this name", f"{where}: {v!r}")
                            elif eid not in ents and eid not in items:
                                ents.append(eid)
                text = " ".join(u.text for u in group if u.text)
                if link_text:
                    found = [e for e in names.text(_blank_titles(text, movie_names)) if e not in items]
                    new = [e for e in found if e not in ents]
                    text_found["linked"] += len(new)
                    ents.extend(new)
                turns.append(unicrs_turn(group[0].role, text, list(dict.fromkeys(movie_names)),
                                         [uri[e] for e in ents], [uri[e] for e in m_ids]))
            out[split].append((did, turns))
    return out, item_ids


def _file_of(u: Utterance, split: str, paths: dict[str, Path | None]) -> Path:
    p = paths.get(split)
    return p if p is not None else paths["train"]  # a carved valid dialog comes from train
