"""``mscrs chat`` (and ``python -m mscrs_core.chat``): :func:`main` reads user utterances from a script file or
stdin, one per line (blank lines and ``#`` comments skipped; ``/reset`` starts a new dialog, ``/quit`` leaves),
and prints the transcript of a :class:`~mscrs_core.chat.session.ChatSession` on a saved checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from mscrs_core.chat.session import CHAT_CONTEXT_BLOCK_NGRAM, CHAT_NUM_BEAMS, ChatSession, format_turn


def _utterances(stream: TextIO):
    for line in stream:
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """``mscrs chat --checkpoint DIR [--script FILE]``: print the transcript; 0 on success, 2 on bad input."""
    from mscrs_core.models.generate import GenerationConfig

    ap = argparse.ArgumentParser(prog="mscrs chat", description="Chat with a trained MSCRS checkpoint.")
    ap.add_argument("--checkpoint", required=True, help="folder written by save_chat_checkpoint")
    ap.add_argument("--script", default=None, help="file with one user utterance per line (default: stdin)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=50)
    ap.add_argument("--num-beams", type=int, default=CHAT_NUM_BEAMS)
    ap.add_argument("--no-repeat-ngram-size", type=int, default=3)
    ap.add_argument("--context-block-ngram", type=int, default=CHAT_CONTEXT_BLOCK_NGRAM,
                    help="never repeat an n-gram of the dialog so far (0: off)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    out, err = stdout or sys.stdout, sys.stderr
    try:
        gen_cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                                   no_repeat_ngram_size=args.no_repeat_ngram_size,
                                   context_block_ngram=args.context_block_ngram)
        session = ChatSession.load(args.checkpoint, args.device, top_k=args.top_k, generation=gen_cfg)
        if args.script is not None:
            script = Path(args.script)
            if not script.is_file():
                raise FileNotFoundError(f"{script}: script file not found")
            stream: TextIO = script.open(encoding="utf-8")
        else:
            stream = stdin or sys.stdin
    except (FileNotFoundError, ValueError) as e:
        print(f"mscrs chat: error: {e}", file=err)
        return 2
    interactive = args.script is None and stream.isatty()
    with stream if args.script is not None else _nullcontext(stream):
        if interactive:
            print("(type /reset to start over, /quit or Ctrl-D to leave)", file=out)
        for utt in _utterances(stream):
            if utt == "/quit":
                break
            if utt == "/reset":
                session.reset()
                print("-- new dialog --", file=out)
                continue
            print(format_turn(session.respond(utt)), file=out, flush=True)
    return 0


class _nullcontext:
    """``with`` on stdin without closing it (a script file is closed after the dialog)."""

    def __init__(self, obj):
        self.obj = obj

    def __enter__(self):
        return self.obj

    def __exit__(self, *exc):
        return False
