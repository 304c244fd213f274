"""The ``mscrs data import`` subcommand: its arguments (:func:`add_parser`) and what it does (:func:`run`)."""
from __future__ import annotations

import argparse
from pathlib import Path


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {text}")
    return v


def add_parser(data_sub) -> argparse.ArgumentParser:
    """Add ``import`` to the ``mscrs data`` subcommands (``data_sub``: its ``add_subparsers()`` object)."""
    from . import FORMATS

    p = data_sub.add_parser(
        "import", help="convert a dataset release into a data root (layout + manifest + report)",
        description="Convert SRC (FORMAT: redial = the official ReDial release; inspired-tsv = the original "
                    "INSPIRED release; jsonl = the generic dialog JSON Lines of book/data_formats.md) into the "
                    "data root DST: the project's layout, its manifest, and a report of what was linked and "
                    "dropped (printed and saved in DST).")
    p.add_argument("format", choices=FORMATS, metavar="FORMAT", help=f"one of {', '.join(FORMATS)}")
    p.add_argument("src", metavar="SRC", help="folder with the release's files")
    p.add_argument("dst", metavar="DST", help="data root to write (new or empty; --force to replace its dataset)")
    p.add_argument("--kg", default=None, metavar="DIR",
                   help="knowledge-graph folder (redial: KGSF's kg/ files; inspired-tsv, jsonl: entity2id.json, "
                        "dbpedia_subkg.json[, relation2id.json, item_ids.json]); default: found in SRC")
    p.add_argument("--force", action="store_true",
                   help="DST is not empty: replace its dataset folder (other folders are kept)")
    p.add_argument("--valid-fraction", type=_fraction, default=0.1, metavar="X",
                   help="share of train carved into valid when SRC has no validation file (default 0.1)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the validation carve (default 0)")
    p.add_argument("--strict", action="store_true",
                   help="inspired-tsv: a per-utterance dictionary that is not a Python literal is an error "
                        "(default: ignored and reported)")
    p.add_argument("--no-link-text", action="store_true",
                   help="inspired-tsv: link only the annotated names, not the entities in the text")
    return p


def run(args: argparse.Namespace) -> int:
    from . import import_data
    from .common import report_name

    opts = {"kg": args.kg, "force": args.force, "valid_fraction": args.valid_fraction, "seed": args.seed}
    if args.format == "inspired-tsv":
        opts.update(strict=args.strict, link_text=not args.no_link_text)
    elif args.strict or args.no_link_text:
        from ...cli import UsageError

        raise UsageError(f"--strict and --no-link-text apply to inspired-tsv only, not {args.format}")
    report = import_data(args.format, args.src, args.dst, **opts)
    dst = Path(args.dst).expanduser().resolve()
    print(report.summary())
    print(f"wrote {dst / report.dataset}/, {dst / report_name(report.dataset)} and {dst / 'MANIFEST.sha256.tsv'}")
    return 0
