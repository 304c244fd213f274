"""Errors raised on bad input: each names the file (and line) and what was expected."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or missing data. ``str()`` reads ``<file>:<line>: <what was expected>``."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ChecksumError(DataError):
    """A data file whose sha256 differs from the manifest."""
