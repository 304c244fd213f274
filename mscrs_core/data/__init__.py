"""Data layer: readers for INSPIRED and ReDial, entity linking, sample builders."""
from __future__ import annotations

import os

from .errors import ChecksumError, DataError, InvalidParameter
from .files import DataFiles, resolve_data_root
from .inspired import load_inspired
from .redial import load_redial
from .samples import Sample, conversation_samples, pretrain_samples, rec_samples
from .schema import CRSDataset, Dialog, KnowledgeGraph, Turn

DATASETS = ("inspired", "redial")


def load_dataset(name: str, data_root: str | os.PathLike | None = None, *, check: bool | None = None) -> CRSDataset:
    """``load_dataset("inspired")`` or ``load_dataset("redial")`` from the configured data root.

    ``check``: verify each file against the root's manifest (None: the process' setting, see
    :func:`~mscrs_core.data.files.set_default_check`)."""
    if not isinstance(name, str) or name not in DATASETS:
        raise InvalidParameter("name", name, f"one of {', '.join(DATASETS)}")
    if name == "inspired":
        return load_inspired(data_root, check=check)
    if name == "redial":
        return load_redial(data_root, check=check)
    raise AssertionError("unreachable")


__all__ = [
    "CRSDataset", "ChecksumError", "DataError", "InvalidParameter", "DataFiles", "Dialog", "KnowledgeGraph", "Sample", "Turn",
    "conversation_samples", "load_dataset", "load_inspired", "load_redial", "pretrain_samples", "rec_samples",
    "resolve_data_root", "DATASETS",
]
