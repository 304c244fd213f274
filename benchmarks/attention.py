"""Decoding after cached context states: the grouped eager attention against Hugging Face's copying eager attention.

new:      :func:`~mscrs_core.models.attention.grouped_eager_attention` (what ``load_backbone`` gives a grouped-query
          backbone asked for ``"eager"``): the query heads that share a key/value head are stacked, nothing copied;
baseline: Hugging Face's eager attention, which copies every key/value head once per query head that reads it
          (``repeat_kv``), at every new token, in every layer.
Both decode the same turns with Table 3's plain-backbone protocol
(:class:`~mscrs_core.models.plain_generator.PlainGenerator`: the context's key/value states from a
:class:`~mscrs_core.models.context_states.ContextStateBank` filled once before the timing, then greedy decoding
with the run's rules: ``--new-tokens`` at most, ``--min-new-tokens``, no repeated 3-grams, finished rows leaving the
batch). Prints the seconds of each, the ratio baseline / new, and how many responses are identical.

Data: the first ``--turns`` conversation turns of INSPIRED's test split; the backbone is SmolLM2-135M (bf16 where
native, else fp32).

Examples:
    python benchmarks/attention.py
    python benchmarks/attention.py --turns 192 --threads 1
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mscrs_core.models.attention import GROUPED_EAGER, has_grouped_heads

CACHE_DIR = Path(__file__).resolve().parents[1] / "cache" / "backbones"


def main(argv: list[str] | None = None) -> dict[str, float]:
    from mscrs_core.data import conversation_samples, load_dataset
    from mscrs_core.models.backbone import load_backbone, resolve_dtype_name
    from mscrs_core.models.context_states import ContextStateBank
    from mscrs_core.models.generate import GenerationConfig, generate_responses
    from mscrs_core.models.plain_generator import PlainConfig, PlainGenerator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--turns", type=int, default=96)
    ap.add_argument("--new-tokens", type=int, default=50, help="the runs' max_new_tokens")
    ap.add_argument("--min-new-tokens", type=int, default=15, help="the runs' (INSPIRED's median response)")
    ap.add_argument("--width", type=int, default=PlainConfig().max_context_length, help="context tokens kept")
    ap.add_argument("--data-root", default=None, help="default: $MSCRS_DATA, else ../shared/data")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache-dir", default=str(CACHE_DIR), help="where a GGUF backbone is converted once")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone, tok = load_backbone(args.backbone, dtype=getattr(torch, resolve_dtype_name("auto")),
                                  attn_implementation="eager", cache_dir=args.cache_dir)
    if not has_grouped_heads(backbone):
        raise SystemExit(f"{args.backbone}: no grouped key/value heads, nothing to compare")
    ds = load_dataset("inspired", args.data_root)
    turns = [s for s in conversation_samples(ds.dialogs("test"), ds) if s.response.strip()][: args.turns]
    plain = PlainGenerator(backbone, tok, PlainConfig(max_context_length=args.width))
    bank = ContextStateBank(backbone, args.width, tok.pad_token_id, dtype=next(backbone.parameters()).dtype)
    batch = plain.make_collator(generation=True)(turns)
    bank.lookup(batch["context_ids"], batch["context_mask"])  # every context's states, once, before the timing
    plain.state_bank = bank
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, min_new_tokens=args.min_new_tokens,
                           no_repeat_ngram_size=3)
    out, seconds = {}, {}
    for impl in (GROUPED_EAGER, "eager"):
        backbone.set_attn_implementation(impl)
        t = time.perf_counter()
        out[impl] = [r.token_ids for r in generate_responses(plain, turns, config=cfg)]
        seconds[impl] = time.perf_counter() - t
    same = sum(a == b for a, b in zip(out[GROUPED_EAGER], out["eager"]))
    ratio = seconds["eager"] / seconds[GROUPED_EAGER]
    print(f"{args.backbone} ({next(backbone.parameters()).dtype}), {len(turns)} INSPIRED test turns, "
          f"torch threads {torch.get_num_threads()}")
    print(f"grouped eager            : {seconds[GROUPED_EAGER]:8.1f} s")
    print(f"copying eager (HF)       : {seconds['eager']:8.1f} s")
    print(f"ratio copying / grouped  : {ratio:8.2f}")
    print(f"identical responses      : {same} / {len(turns)}")
    return {"grouped_s": seconds[GROUPED_EAGER], "copying_s": seconds["eager"], "ratio": ratio,
            "identical": same, "turns": len(turns)}


if __name__ == "__main__":
    main()
