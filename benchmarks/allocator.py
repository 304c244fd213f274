"""A conversation training step under glibc malloc's defaults against the tunables the book's kernels get.

A training step of chapter 6 allocates tensors of tens of megabytes (the batch's cached states, every layer's keys
and values with the prompt appended, the vocabulary logits and their gradients) and frees them again. glibc serves
any allocation above 32 MB with a fresh ``mmap`` and returns it on ``free``, so each step the kernel hands out and
zeroes gigabytes of new pages (``perf`` on chapter 6's run: a fifth of the step in ``clear_page_erms`` and page
faults). :data:`mscrs_core.book.runner.KERNEL_MALLOC_TUNABLES` (``mmap_max=0``: every block from the heap;
``trim_threshold``: freed memory kept for the next step) serves them from memory the process already has.

Two child processes run the same step (:func:`layer_prompt_backward.step`, SmolLM2 by default, random cached states)
``--steps`` times after a warm-up: one with the default allocator, one with the tunables. Prints the median
seconds per step of each, the ratio default / tunables, each process's peak resident memory and its minor page
faults per step. The allocator changes no number: the step's gradients are the same (each child prints a checksum).

Examples:
    python benchmarks/allocator.py
    python benchmarks/allocator.py --steps 5 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(args: argparse.Namespace) -> dict:
    """One process's measurement (run under the allocator its environment sets)."""
    import torch

    sys.path.insert(0, str(HERE))
    import layer_prompt_backward as lpb
    from mscrs_core.models.layer_prompt import LayerPrompt

    torch.set_num_threads(args.threads)
    if args.backbone == "tiny":
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        backbone = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                                max_position_embeddings=512, attn_implementation="eager"))
        backbone.requires_grad_(False).eval()
    else:
        from mscrs_core.models.backbone import freeze, load_backbone, resolve_dtype_name

        backbone, _ = load_backbone(args.backbone, dtype=getattr(torch, resolve_dtype_name("auto")),
                                    attn_implementation="eager", cache_dir=lpb.CACHE_DIR)
        freeze(backbone)
    torch.manual_seed(0)
    layer_prompt = LayerPrompt.for_backbone(backbone)
    states = lpb.random_states(backbone, args.batch, args.width)
    prompt = torch.randn(args.batch, args.prompt, backbone.config.hidden_size)
    tokens = torch.randint(0, backbone.config.vocab_size, (args.batch, args.response + 1))
    times, checksum = [], 0.0
    faults0 = 0
    for i in range(args.steps + 1):
        if i == 1:  # after the warm-up
            faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        layer_prompt.zero_grad(set_to_none=True)
        t = time.perf_counter()
        grad = lpb.step(backbone, layer_prompt, states, prompt, tokens)
        if i:
            times.append(time.perf_counter() - t)
        checksum = float(grad.double().abs().sum())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"step_s": statistics.median(times), "peak_rss_mb": usage.ru_maxrss / 1024,
            "faults_per_step": (usage.ru_minflt - faults0) / args.steps, "checksum": checksum}


def measure(args: argparse.Namespace, tunables: str | None) -> dict:
    """Run :func:`child` in a fresh process, with ``GLIBC_TUNABLES`` set to ``tunables`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    cmd = [sys.executable, __file__, "--child", "--backbone", args.backbone, "--batch", str(args.batch),
           "--width", str(args.width), "--prompt", str(args.prompt), "--response", str(args.response),
           "--steps", str(args.steps), "--threads", str(args.threads)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> dict:
    from mscrs_core.book.runner import KERNEL_MALLOC_TUNABLES

    base, new = measure(args, None), measure(args, KERNEL_MALLOC_TUNABLES)
    return {"default": base, "tunables": new, "ratio": base["step_s"] / new["step_s"],
            "same_gradients": base["checksum"] == new["checksum"]}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="smollm2-135m", help='a backbone name, or "tiny" (a random 2-layer Llama)')
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=200)
    ap.add_argument("--prompt", type=int, default=14)
    ap.add_argument("--response", type=int, default=30)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.child:
        r = child(args)
        print(json.dumps(r))
        return r
    r = compare(args)
    print(f"conversation training step, {args.backbone}, {args.batch} x ({args.width} cached + {args.prompt} prompt "
          f"+ {args.response} response), {args.threads} thread(s), median of {args.steps}:")
    for name in ("default", "tunables"):
        m = r[name]
        print(f"  {name:9s}: {m['step_s']:7.3f} s per step, peak RSS {m['peak_rss_mb']:7.0f} MB, "
              f"{m['faults_per_step']:9.0f} minor page faults per step")
    print(f"  ratio default / tunables: {r['ratio']:.2f}x; same gradients: {r['same_gradients']}")
    return r


if __name__ == "__main__":
    main()
