"""Importers: the formats people have -> the project's data layout, plus a manifest and a report.

``mscrs data import FORMAT SRC DST`` (or :func:`import_data`), FORMAT one of:

* ``redial`` (:mod:`.redial`): the official ReDial release (``train_data.jsonl``, ``test_data.jsonl``,
  optionally ``valid_data.jsonl``, ``movies_with_mentions.csv``) with KGSF's graph -> ``DST/redial/``;
* ``inspired-tsv`` (:mod:`.inspired_tsv`): the original INSPIRED release (``train.tsv``, ``dev.tsv``,
  ``test.tsv``, one row per utterance) linked to a graph -> ``DST/inspired/``;
* ``jsonl`` (:mod:`.jsonl`): the documented generic dialog JSON Lines (one dialog per line, turns with
  role, text, item ids and entity ids) -> ``DST/inspired/``.

Every importer checks its input (a malformed row is a one-line ``DataError`` naming the file and line),
writes into a temporary folder and moves it into place only once the project's own reader has read it back
(nothing half-written in ``DST``), refuses a non-empty ``DST`` unless ``force``, writes the root manifest
(``DST/MANIFEST.sha256.tsv``) and a report of what was linked and what was dropped, with counts, reasons and
first examples (printed, and saved as ``DST/import_report_<dataset>.json``). When no validation split is
given, one is carved from train by a seeded hash of the dialog id (:func:`.common.valid_rule`).
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidParameter
from .common import ImportReport, valid_rule
from .inspired_tsv import import_inspired_tsv
from .jsonl import import_jsonl
from .redial import import_redial

IMPORTERS = {"redial": import_redial, "inspired-tsv": import_inspired_tsv, "jsonl": import_jsonl}
FORMATS = tuple(IMPORTERS)


def import_data(format: str, src: str | os.PathLike, dst: str | os.PathLike, **options: Any) -> ImportReport:
    """Run the importer of ``format`` (one of :data:`FORMATS`); ``options`` are its keyword arguments."""
    if not isinstance(format, str) or format not in IMPORTERS:
        raise InvalidParameter("format", format, f"one of {', '.join(FORMATS)}")
    return IMPORTERS[format](src, dst, **options)


__all__ = ["FORMATS", "IMPORTERS", "ImportReport", "import_data", "import_inspired_tsv", "import_jsonl",
           "import_redial", "valid_rule"]
