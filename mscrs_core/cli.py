"""``mscrs`` command line: run chapters and the book under a parameter profile.

Every error the project raises on bad input (data, checksum, parameter, unknown chapter, model that is not
available offline, bad option value, unavailable device, corrupt checkpoint) ends the command with ONE line
on stderr and exit code 2; ``--debug`` (anywhere on the command line) shows the traceback instead. Any other
exception is a bug: it is also one line, with exit code 1 (``--debug`` for the traceback).
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback

PROG = "mscrs"


class UsageError(ValueError):
    """A command-line option with a value the command cannot use (the message names the option)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise UsageError(f"-p expects NAME=VALUE (VALUE as JSON), got {p!r}")
        k, v = p.split("=", 1)
        if not k.strip():
            raise UsageError(f"-p expects NAME=VALUE with a non-empty NAME, got {p!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
        except RecursionError:
            raise UsageError(f"-p {k}=...: the value is nested too deeply") from None
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def check_device(device: str) -> str:
    """``device`` if torch can use it here, else a :class:`UsageError` that says what is available."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"--device {device!r} is not a device name; expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UsageError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= n:
            raise UsageError(f"--device {device}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError(f"--device {device}: MPS is not available on this machine (use --device cpu)")
    elif dev.type != "cpu":
        raise UsageError(f"--device {device}: unsupported device type {dev.type!r}; expected cpu, cuda or mps")
    return device


def _check_chat_options(argv: list[str]) -> None:
    """Validate the options of ``mscrs chat`` that its own parser accepts unchecked (``--top-k``, ``--device``)."""
    pre = _Parser(prog=f"{PROG} chat", add_help=False)
    pre.add_argument("--top-k", type=_positive_int, default=5)
    pre.add_argument("--device", default="cpu")
    args, _ = pre.parse_known_args(argv)
    check_device(args.device)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input (exit code 2), not a bug."""
    from .book.runner import ParameterError
    from .data.errors import DataError, InvalidParameter

    out: list[type[BaseException]] = [UsageError, DataError, InvalidParameter, ParameterError, OSError, ValueError]
    try:
        from safetensors import SafetensorError
        out.append(SafetensorError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(out)


def _one_line_error(err: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for ``err``."""
    from .data.errors import one_line

    user = user_errors()
    try:
        from papermill.exceptions import PapermillExecutionError
    except ImportError:  # pragma: no cover
        PapermillExecutionError = ()  # type: ignore[assignment]
    if PapermillExecutionError and isinstance(err, PapermillExecutionError):
        # the chapter raised inside its kernel: name it, its cell and the error; bad input stays exit code 2
        names = {t.__name__ for t in user} | {"ChecksumError", "UnknownChapterError", "OfflineModelError",
                                               "FileNotFoundError", "KeyError", "TypeError"}
        code = 2 if err.ename in names else 1
        return one_line(f"chapter cell {err.exec_count} failed: {err.ename}: {err.evalue}"), code
    if isinstance(err, user):
        msg = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename and str(err.filename) not in msg:
            msg = f"{err.filename}: {msg}"
        prefix = "" if type(err).__name__ in ("DataError", "UsageError", "ParameterError", "UnknownChapterError",
                                              "InvalidParameter") else f"{type(err).__name__}: "
        return one_line(prefix + msg), 2
    return one_line(f"internal error {type(err).__name__}: {err} (rerun with --debug for the traceback)"), 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 -- the one place that turns errors into one line
        if debug:
            traceback.print_exc()
        msg, code = _one_line_error(err)
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return code


def _main(argv: list[str]) -> int:
    ap = _Parser(prog=PROG, description=__doc__.splitlines()[0],
                 epilog="--debug anywhere on the line shows the traceback of an error.")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="execute one chapter with papermill")
    r.add_argument("chapter")
    r.add_argument("--profile", default="default")
    r.add_argument("--out", default=None, help="output folder (default build/<profile>)")
    r.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE override (VALUE as JSON)")
    b = sub.add_parser("book", help="execute every chapter")
    b.add_argument("--profile", default="default")
    b.add_argument("--out", default=None)
    b.add_argument("--only", nargs="+", default=None, metavar="CHAPTER")
    b.add_argument("--book-only", action="store_true", help="only the chapters the rendered book contains")
    b.add_argument("--tracks", type=int, default=1, metavar="N",
                   help="execute up to N chapter tracks of profiles.yml side by side (the recommendation and the "
                        "conversation chapters), the cores and $MSCRS_WORKERS divided among them")
    b.add_argument("--prepare-only", action="store_true",
                   help="inject the parameters without executing (for nbval, which executes them itself)")
    sub.add_parser("chapters", help="list the chapters")
    sub.add_parser("chat", help="talk to a trained recommender + generator (mscrs chat --checkpoint DIR)",
                   add_help=False)
    s = sub.add_parser("stats", help="print Table 1 for a dataset")
    s.add_argument("dataset", choices=["inspired", "redial"])
    s.add_argument("--data", default=None, help="data root (default $MSCRS_DATA or ../shared/data)")
    d = sub.add_parser("data", help="data roots of your own: manifest, verify (README, 'Your own data')")
    data_sub = d.add_subparsers(dest="data_cmd", required=True, parser_class=_Parser)  # `mscrs data <command>`
    dm = data_sub.add_parser("manifest", help="write DIR/MANIFEST.sha256.tsv: the sha256 of every data file in DIR")
    dm.add_argument("dir", metavar="DIR")
    dv = data_sub.add_parser("verify", help="check DIR against its MANIFEST.sha256.tsv (else the shipped data's); "
                                            "a difference: one line naming the file, exit code 2")
    dv.add_argument("dir", metavar="DIR")
    from .data.importers.cli import add_parser as add_import_parser

    add_import_parser(data_sub)  # `mscrs data import FORMAT SRC DST` (mscrs_core/data/importers)
    if argv[:1] == ["chat"]:
        if not any(a in ("-h", "--help") for a in argv[1:]):
            _check_chat_options(argv[1:])
        from .chat import main as chat_main

        return chat_main(argv[1:])
    args = ap.parse_args(argv)

    from .book import runner

    if args.cmd == "run":
        runner.check_chapter(args.chapter)
        print(runner.run_chapter(args.chapter, args.profile, out_dir=args.out,
                                 overrides=_parse_overrides(args.param)))
    elif args.cmd == "book":
        for p in runner.run_book(args.profile, out_dir=args.out, only=args.only,
                                 prepare_only=args.prepare_only, book_only=args.book_only,
                                 parallel_tracks=args.tracks):
            print(p)
        if not args.prepare_only:
            from .book import timings

            out = runner.output_dir(args.profile, args.out)
            print(timings.format_summary(timings.load_summary(out), args.profile))
    elif args.cmd == "chapters":
        for c in runner.chapters():
            print(c.name, c.source)
    elif args.cmd == "data" and args.data_cmd == "import":
        from .data.importers.cli import run as run_import

        return run_import(args)
    elif args.cmd == "data" and args.data_cmd in ("manifest", "verify"):
        from .data import manifest

        if args.data_cmd == "manifest":
            path = manifest.write_manifest(args.dir)
            print(f"wrote {path} ({len(manifest.read_manifest(path))} files); check it with: {PROG} data verify "
                  f"{path.parent}")
        else:
            print(manifest.verify_root(args.dir))
    elif args.cmd == "stats":
        from .data import load_dataset
        from .data.stats import table1
        print(table1(load_dataset(args.dataset, args.data)).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
