"""The smoke runs' numbers against committed golden values (``tests/goldens/smoke-<platform>.json``).

``make test`` executes every chapter under the smoke profile (nbval), with the runs writing their
``<run>/result.json`` into ``build/nbval/runs`` (``$MSCRS_RESULTS_DIR``; emptied first, so every run trains
afresh), and then compares every number of every result with its golden value:
``pytest tests/regression --smoke-root build/nbval``. A change that moves any number (a model default, a
seed, the order of the samples) fails it with a message naming the run and the number.

What is compared, per run (:func:`numbers`): every scalar of ``result.json`` (test and validation metrics,
their slices, the graph sizes, the trainable parameter count, the selected stage, conversation metrics), and
every number of the training history, by stage and epoch. Not compared: wall times, paths, the run's folder
name (its digest changes with any configuration field), per-sample lists (the metrics summarise them) and
the configuration itself, which names a run and is reported beside a moved number when it differs.

A run is named by :func:`label`: its folder name without the digest, plus the fields in which its
configuration differs from the run chapter's smoke configuration (the dataclass defaults with
``profiles.yml``'s smoke parameters), e.g. ``inspired-mscrs-gcti-k10-l0.5-s0 [prompt_position=prefix, ...]``.
A changed default changes both sides alike, so the run keeps its name and its numbers are compared.

Not covered: what ``cache/`` keeps between runs (the miniature DialoGPT, text features, context states) is keyed
by its inputs, not by every default of the code that made it; a change there shows once the cache entry is
rebuilt (``rm -rf cache`` before ``make goldens`` when such a default changes).

Tolerance: floats agree when ``math.isclose(got, golden, rel_tol=REL, abs_tol=ABS)``; integers, strings and
booleans must be equal. The smoke profile is deterministic on one machine (two executions give identical
bits), but not across processors: float32 sums run in another order under AVX2 kernels than under AVX-512
ones (measured: training losses move by ~1e-5 relative, a ranking metric by a few 1e-4 where a near tie
flips). So the goldens are one file per platform, ``smoke-<machine>-<torch CPU capability>.json``
(:func:`platform_key`, e.g. ``smoke-x86_64-AVX2.json``), compared at REL/ABS; on a platform with no file of its
own the test compares with another platform's file at CROSS_REL/CROSS_ABS, says so in its message, and a
``make goldens`` there records the platform's own.

Regenerate after an intended change: ``make goldens`` (runs the smoke book, then
``python tests/regression/goldens.py build/nbval --write``, which writes this platform's file); a change that
moves the numbers needs every platform's file regenerated (or the others deleted, so they are re-recorded).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

REL = 1e-6
ABS = 1e-9
#: against another platform's goldens: losses move ~1e-5 relative, near ties in a ranking flip (a few 1e-4)
CROSS_REL = 1e-3
CROSS_ABS = 2e-3
ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "goldens"


def platform_key() -> str:
    """``<machine>-<torch's CPU kernel level>``: the processors on which float32 results agree to the last bits."""
    import platform

    import torch

    return f"{platform.machine()}-{torch.backends.cpu.get_cpu_capability()}"


def golden_file(folder: Path = GOLDEN_DIR) -> tuple[Path, bool]:
    """This platform's goldens and True; else another platform's (sorted by name, the first) and False."""
    own = folder / f"smoke-{platform_key()}.json"
    if own.is_file():
        return own, True
    others = sorted(folder.glob("smoke-*.json"))
    if not others:
        raise FileNotFoundError(f"no goldens under {folder}: run `make goldens` to record them")
    return others[0], False


def cross_platform(golden: dict[str, Any]) -> dict[str, Any]:
    """``golden`` compared at the cross-platform tolerance (another processor's float32 sums)."""
    return {**golden, "tolerance": {"rel": max(CROSS_REL, golden["tolerance"]["rel"]),
                                    "abs": max(CROSS_ABS, golden["tolerance"]["abs"])}}


def load_goldens(path: str | Path, own: bool) -> dict[str, Any]:
    """The goldens of ``path``, at their own tolerance when ``own`` (this platform's), else the cross-platform one."""
    golden = json.loads(Path(path).read_text())
    return golden if own else cross_platform(golden)


#: result.json keys that are not results: timings, paths, name, digests and fingerprint, per-sample lists, the config
SKIP = {"config", "name", "seconds", "context_state_seconds", "backbone", "reused", "test_sample_ids",
        "test_per_sample", "valid_per_sample", "generations_file", "checkpoint", "fingerprint"}


def _skip(key: str) -> bool:
    return key in SKIP or key.endswith("seconds") or key.endswith("_path") or key.endswith("_dir")


def numbers(result: dict[str, Any]) -> dict[str, Any]:
    """Every compared value of one ``result.json``, by a path such as ``test/recall@10`` or
    ``history/rec epoch 1/train_loss``."""
    out: dict[str, Any] = {}

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if not (path == "" and _skip(k)) and not k.endswith("seconds"):
                    walk(v, f"{path}/{k}" if path else str(k))
        elif isinstance(obj, (bool, int, float, str)) or obj is None:
            out[path] = obj
        elif isinstance(obj, list) and path == "history":
            seen: dict[str, int] = {}
            for row in obj:
                tag = f"{row.get('stage', 'train')} epoch {row.get('epoch', '?')}"
                seen[tag] = seen.get(tag, 0) + 1
                walk({k: v for k, v in row.items() if k not in ("stage", "epoch")},
                     f"history/{tag}" + (f" #{seen[tag]}" if seen[tag] > 1 else ""))
        elif isinstance(obj, list) and all(isinstance(x, str) for x in obj) and len(obj) <= 20:
            out[path] = ", ".join(obj)  # short lists of names (active graphs, modalities)
        # other lists (per-sample values, generations) are summarised by the metrics

    walk(result, "")
    return out


def _config_class(result: dict[str, Any]) -> tuple[type, str]:
    from mscrs_core.experiments.sweep import CONVERSATION_RUN_CHAPTER, RUN_CHAPTER, run_config_class

    def overlap(chapter: str) -> int:  # the class whose fields the result's configuration holds
        return len(set(run_config_class(chapter).field_names()) & set(result["config"]))

    chapter = max((RUN_CHAPTER, CONVERSATION_RUN_CHAPTER), key=overlap)
    return run_config_class(chapter), chapter


def current_names(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded configuration under today's field names: a renamed field (the run class's ``DIGEST_NAMES``,
    e.g. the conversation run's ``graph_prompt``, recorded as ``graph_variant`` before) gets its current name,
    so goldens written before a rename still name and compare their runs."""
    cls, _ = _config_class({"config": config})
    back = {old: new for new, old in getattr(cls, "DIGEST_NAMES", {}).items()}
    return {back.get(k, k): v for k, v in config.items()}


def reference_config(result: dict[str, Any]) -> dict[str, Any]:
    """The run chapter's smoke configuration: the dataclass defaults with profiles.yml's smoke parameters."""
    from mscrs_core.book.runner import profile_parameters

    cls, chapter = _config_class(result)
    ref = cls().flat()  # the flat defaults, sections included (a model's defaults live in its own config)
    ref.update({k: v for k, v in profile_parameters(chapter, "smoke").items() if k in ref})
    return ref


#: fields the run's folder name spells out already (``RecRunConfig.name``, ``ConversationRunConfig.name``)
IN_NAME = {"dataset", "model", "seed", "k", "lambda_", "use_collab", "use_text", "use_image", "use_graphs",
           "use_enhanced_entities", "use_context_mapping"}


def label(result: dict[str, Any]) -> str:
    """A run's name that survives a changed default: folder name without digest, plus its own settings."""
    base = result["name"].rsplit("-", 1)[0]
    ref = reference_config(result)
    own = [f"{k}={v}" for k, v in current_names(result["config"]).items()
           if k in ref and k not in IN_NAME and ref[k] != v]
    return f"{base} [{', '.join(own)}]" if own else base


def collect(smoke_root: str | Path) -> dict[str, dict[str, Any]]:
    """label -> {"config", "numbers"} for every finished run under ``<smoke_root>/runs``."""
    runs_dir = Path(smoke_root) / "runs"
    files = sorted(runs_dir.glob("*/result.json"))
    if not files:
        raise FileNotFoundError(f"no {runs_dir}/*/result.json: run the smoke book first (make test-notebooks)")
    out: dict[str, dict[str, Any]] = {}
    for f in files:
        result = json.loads(f.read_text())
        name = label(result)
        if name in out:
            raise ValueError(f"two runs share the label {name!r}: {f.parent.name} and {out[name]['dir']}")
        out[name] = {"dir": f.parent.name, "config": result["config"], "numbers": numbers(result)}
    return out


def _order(key: str) -> tuple[int, str]:
    """Headline numbers first in a report: test metrics, then validation, then the rest, the history last."""
    for i, prefix in enumerate(("test/", "test_slices/", "valid/", "valid_slices/")):
        if key.startswith(prefix):
            return i, ""  # keep the result's own order (recall@1, @10, @50, ...) within a group
    return (9 if key.startswith("history/") else 5), ""


def _fmt(v: Any) -> str:
    return repr(v) if not isinstance(v, float) else f"{v:.10g}"


def compare(golden: dict[str, Any], got: dict[str, dict[str, Any]]) -> list[str]:
    """One line per moved, missing or new number (or run); empty when everything holds."""
    rel, abs_ = golden["tolerance"]["rel"], golden["tolerance"]["abs"]
    tol = f"tol rel {rel:g}, abs {abs_:g}"
    problems = []
    for name, gold in golden["runs"].items():
        if name not in got:
            problems.append(f"{name}: golden run missing from the smoke runs (have: {sorted(got)})")
            continue
        run = got[name]
        moved = []
        for key, want in sorted(gold["numbers"].items(), key=lambda kv: _order(kv[0])):
            if key not in run["numbers"]:
                moved.append(f"{name} {key}: golden {_fmt(want)}, missing now")
                continue
            have = run["numbers"][key]
            if isinstance(want, float) and isinstance(have, (int, float)) and not isinstance(have, bool):
                ok = math.isclose(have, want, rel_tol=rel, abs_tol=abs_) or (math.isnan(want) and math.isnan(have))
            else:
                ok = type(have) is type(want) and have == want
            if not ok:
                moved.append(f"{name} {key}: golden {_fmt(want)}, got {_fmt(have)} ({tol})")
        moved += [f"{name} {key}: new number {_fmt(v)} (not in the goldens)"
                  for key, v in run["numbers"].items() if key not in gold["numbers"]]
        if moved:
            gold_cfg, run_cfg = current_names(gold["config"]), current_names(run["config"])
            changed = [f"{k} {_fmt(v)} -> {_fmt(run_cfg.get(k))}" for k, v in gold_cfg.items()
                       if run_cfg.get(k, "<absent>") != v]
            changed += [f"{k} (new) = {_fmt(v)}" for k, v in run_cfg.items() if k not in gold_cfg]
            if changed:
                moved.append(f"{name}: its configuration differs from the golden one: {'; '.join(changed)}")
            problems += moved
    problems += [f"{name}: a smoke run with no golden values (run dir {got[name]['dir']})"
                 for name in sorted(set(got) - set(golden["runs"]))]
    return problems


def golden_record(got: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import platform

    import torch

    return {
        "about": "Numbers of the smoke profile's runs (make test). Regenerate with `make goldens`; "
                 "tests/regression/goldens.py says what is compared and why the tolerance.",
        "tolerance": {"rel": REL, "abs": ABS},
        "made_with": {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                      "python": platform.python_version(), "machine": platform.machine(),
                      "platform": platform_key()},
        "runs": {name: {"config": r["config"], "numbers": r["numbers"]} for name, r in sorted(got.items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("smoke_root", help="the folder nbval executed the smoke chapters in (build/nbval)")
    ap.add_argument("--write", metavar="JSON", nargs="?", const="",
                    help="write the goldens (default: this platform's file) instead of comparing")
    ap.add_argument("--against", metavar="JSON", default=None,
                    help="goldens to compare with (default: this platform's, else another's, loosely)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    got = collect(args.smoke_root)
    if args.write is not None:
        from mscrs_core.atomic import atomic_write_text

        out = Path(args.write or GOLDEN_DIR / f"smoke-{platform_key()}.json")
        atomic_write_text(out, json.dumps(golden_record(got), indent=1, sort_keys=False) + "\n")
        print(f"wrote {len(got)} runs, {sum(len(r['numbers']) for r in got.values())} numbers to {out}")
        return 0
    path, own = (Path(args.against), True) if args.against else golden_file()
    problems = compare(load_goldens(path, own), got)
    print("\n".join(problems) or f"all {len(got)} smoke runs match {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
