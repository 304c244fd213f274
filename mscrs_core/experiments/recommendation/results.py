"""Where recommendation runs write their records, and reading them back."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...atomic import atomic_write_text
from ...data.files import project_root
from ..fingerprint import read_result


def default_results_dir() -> Path:
    """Where runs write ``<run name>/result.json`` when no ``results_dir`` is given: ``$MSCRS_RESULTS_DIR``, else
    ``build/runs``. ``make test-notebooks`` points it into ``build/nbval/runs``, which it empties first, so the smoke
    runs train afresh and the regression test (``tests/regression``) sees what the code computes now."""
    env = os.environ.get("MSCRS_RESULTS_DIR")
    return Path(env).resolve() if env else project_root() / "build" / "runs"


def atomic_json(obj: Any, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


def load_result(run_dir: str | os.PathLike) -> dict[str, Any]:
    p = Path(run_dir) / "result.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no finished run here")
    return read_result(p)  # a damaged file: an error naming it, not a bare JSONDecodeError
