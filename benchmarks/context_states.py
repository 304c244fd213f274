"""Filling a context-state bank: chunks encoded at their own width, shortest rows first, against full-width chunks.

new:      :meth:`~mscrs_core.models.context_states.ContextStateBank.add` (rows sorted by length, each chunk of
          ``--chunk`` rows encoded only as wide as its longest row, then padded back to the bank width);
baseline: the same rows in their given order, every chunk left-padded to the full width and encoded
          (:func:`~mscrs_core.models.context_states.encode_context`), as the bank did before.
Both run in the same process, alternating, ``--repeats`` times; prints the median seconds of each, the ratio
baseline / new, the positions each encodes, and the largest difference of a real position's states (bf16
rounding; the padded positions are never attended).

Data: ``--contexts`` conversation contexts of INSPIRED's test split as the generator's collator writes them
(``layout="suffix"``, the last ``--width`` tokens), spread over the split; the backbone is SmolLM2-135M (bf16 where native,
eager attention) unless ``--backbone`` names another.

Examples:
    python benchmarks/context_states.py
    python benchmarks/context_states.py --contexts 64 --threads 1 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mscrs_core.models.context_states import ContextStateBank, encode_context

CACHE_DIR = Path(__file__).resolve().parents[1] / "cache" / "backbones"


def full_width(bank: ContextStateBank, rows: list[tuple[int, ...]]) -> tuple[list[torch.Tensor], int]:
    """The baseline: chunks in the given order, each left-padded to the bank's width. Returns keys and positions."""
    keys, positions = [], 0
    for start in range(0, len(rows), bank.batch_size):
        ids, mask = bank._pad(rows[start:start + bank.batch_size])
        keys.append(encode_context(bank.backbone, ids, mask).keys)
        positions += ids.numel()
    return keys, positions


def per_chunk_width(bank: ContextStateBank, rows: list[tuple[int, ...]]) -> int:
    """Positions the bank encodes for ``rows`` (shortest first, chunk by chunk)."""
    ordered = sorted(rows, key=len)
    return sum(len(ordered[i:i + bank.batch_size]) * max(map(len, ordered[i:i + bank.batch_size]))
               for i in range(0, len(ordered), bank.batch_size))


def compare(backbone, rows: list[tuple[int, ...]], width: int, pad_id: int, chunk: int, repeats: int) -> dict:
    """Seconds of each way over ``repeats`` alternating rounds, positions encoded and the states' largest gap."""
    times: dict[str, list[float]] = {"baseline": [], "new": []}
    bank = None
    for _ in range(repeats):
        t = time.perf_counter()
        base_keys, base_positions = full_width(ContextStateBank(backbone, width, pad_id, batch_size=chunk), rows)
        times["baseline"].append(time.perf_counter() - t)
        bank = ContextStateBank(backbone, width, pad_id, batch_size=chunk)
        t = time.perf_counter()
        bank.add(rows)
        times["new"].append(time.perf_counter() - t)
    ids = torch.stack([bank._pad([r])[0][0] for r in rows])
    mask = torch.stack([bank._pad([r])[1][0] for r in rows])
    got = bank.lookup(ids, mask).keys  # [L, B, h, T, d], rows in the given order
    ref = torch.cat(base_keys, dim=1)
    real = mask.bool()
    gap = max(float((got[layer].transpose(1, 2)[real] - ref[layer].transpose(1, 2)[real]).abs().max())
              for layer in range(got.shape[0]))
    base, new = statistics.median(times["baseline"]), statistics.median(times["new"])
    return {"baseline_s": base, "new_s": new, "ratio": base / new, "baseline_positions": base_positions,
            "new_positions": per_chunk_width(bank, rows), "max_abs_gap": gap}


def inspired_rows(tokenizer, n: int, width: int) -> list[tuple[int, ...]]:
    """``n`` INSPIRED test contexts spread over the split, tokenised as the generator's collator does."""
    from mscrs_core.data import conversation_samples, load_dataset
    from mscrs_core.models.conversation_collate import ConversationCollator

    ds = load_dataset("inspired")
    samples = [s for s in conversation_samples(ds.dialogs("test"), ds) if s.context]
    picked = samples[:: max(1, len(samples) // n)][:n]
    batch = ConversationCollator(tokenizer, max_context_length=width, generation=True, layout="suffix")(picked)
    return [tuple(i[m.bool()].tolist()) for i, m in zip(batch["context_ids"], batch["context_mask"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--contexts", type=int, default=96)
    ap.add_argument("--width", type=int, default=200, help="the bank width (the conversation run's context budget)")
    ap.add_argument("--chunk", type=int, default=16, help="contexts per no-grad pass (the conversation run's)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mscrs_core.models.backbone import load_backbone, resolve_dtype_name

    dtype = resolve_dtype_name("auto")  # bf16 where the hardware has it natively; emulated bf16 is ~50x slower
    backbone, tokenizer = load_backbone(args.backbone, dtype=getattr(torch, dtype), attn_implementation="eager",
                                        cache_dir=CACHE_DIR)
    rows = inspired_rows(tokenizer, args.contexts, args.width)
    r = compare(backbone, rows, args.width, tokenizer.pad_token_id, args.chunk, args.repeats)
    print(f"context states of {len(rows)} INSPIRED test contexts (width {args.width}, chunks of {args.chunk}, "
          f"{args.backbone}, {dtype}, {torch.get_num_threads()} thread(s), median of {args.repeats}):")
    print(f"  full-width chunks, given order : {r['baseline_s']:7.2f} s  ({r['baseline_positions']} positions)")
    print(f"  own-width chunks, shortest first: {r['new_s']:7.2f} s  ({r['new_positions']} positions)")
    print(f"  ratio baseline / new: {r['ratio']:.2f}x; largest difference on a real position {r['max_abs_gap']:.3g}")


if __name__ == "__main__":
    main()
