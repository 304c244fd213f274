"""Errors raised on bad input: each names the file (and line) and what was expected."""
from __future__ import annotations

import os
from pathlib import Path


def one_line(text: str) -> str:
    """``text`` with its lines joined by ``"; "``: every error a user sees is a single line."""
    return "; ".join(s.strip() for s in str(text).splitlines() if s.strip())


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


class InvalidParameter(ValueError):
    """A function argument (or chapter parameter) of the wrong type or value; the message names it."""

    def __init__(self, name: str, value: object, expected: str):
        self.name = name
        self.value = value
        super().__init__(f"parameter {name}={value!r} ({type(value).__name__}): expected {expected}")


def check_path_param(name: str, value: object, *, optional: bool = True) -> None:
    """``value`` must be a path (``str`` / ``os.PathLike``), or None when ``optional``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value.strip()):
        raise InvalidParameter(name, value, "a folder path (str or os.PathLike)" + (" or None" if optional else ""))


def check_bool_param(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidParameter(name, value, "True or False")
