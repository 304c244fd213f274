"""``mscrs`` command line: run chapters and the book under a parameter profile."""
from __future__ import annotations

import argparse
import json
import sys


def _parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"-p expects NAME=VALUE (VALUE as JSON), got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mscrs", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute one chapter with papermill")
    r.add_argument("chapter")
    r.add_argument("--profile", default="default")
    r.add_argument("--out", default=None, help="output folder (default build/<profile>)")
    r.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE override (VALUE as JSON)")
    b = sub.add_parser("book", help="execute every chapter")
    b.add_argument("--profile", default="default")
    b.add_argument("--out", default=None)
    b.add_argument("--only", nargs="*", default=None)
    b.add_argument("--book-only", action="store_true", help="only the chapters the rendered book contains")
    b.add_argument("--prepare-only", action="store_true",
                   help="inject the parameters without executing (for nbval, which executes them itself)")
    sub.add_parser("chapters", help="list the chapters")
    sub.add_parser("chat", help="talk to a trained recommender + generator (mscrs chat --checkpoint DIR)",
                   add_help=False)
    s = sub.add_parser("stats", help="print Table 1 for a dataset")
    s.add_argument("dataset", choices=["inspired", "redial"])
    s.add_argument("--data", default=None, help="data root (default $MSCRS_DATA or ../shared/data)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["chat"]:
        from .chat import main as chat_main

        return chat_main(argv[1:])
    args = ap.parse_args(argv)

    from .book import runner

    try:
        if args.cmd == "run":
            print(runner.run_chapter(args.chapter, args.profile, out_dir=args.out,
                                     overrides=_parse_overrides(args.param)))
        elif args.cmd == "book":
            for p in runner.run_book(args.profile, out_dir=args.out, only=args.only,
                                     prepare_only=args.prepare_only, book_only=args.book_only):
                print(p)
        elif args.cmd == "chapters":
            for c in runner.chapters():
                print(c.name, c.source)
        elif args.cmd == "stats":
            from .data import load_dataset
            from .data.stats import table1
            print(table1(load_dataset(args.dataset, args.data)).to_string())
    except runner.ParameterError as e:
        print(f"mscrs: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
