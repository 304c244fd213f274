"""One conversation training step with the prompt in every layer: the cache's layers split by ``unbind`` (new)
against one ``keys[i]`` per layer (baseline).

With ``prompt_injection="layers"`` the prompt's keys and values are appended to the cached context states of every
layer (:func:`~mscrs_core.models.layer_prompt.append_layer_prompt`), so the states carry a gradient. The cache hands
each layer its slice (:meth:`~mscrs_core.models.context_states.ContextStates.as_cache`). Taken as ``keys[i]``, each
slice's backward writes a zero tensor the size of ALL layers' states and autograd sums the L of them; ``unbind``'s
backward stacks the L gradients once. Both give the same gradients bit for bit (checked here, and in
``tests/test_models_context_states.py``).

The step is chapter 6's in shape: ``--batch`` contexts of ``--width`` cached positions (random states in the
backbone's dtype), the ``--prompt``-position layer prompt, ``--response`` tokens run with autograd, the loss on
the vocabulary logits, backward. Both ways run in the same process, alternating, ``--repeats`` times after one
warm-up each; prints the median seconds per step of each and the ratio baseline / new.

Examples:
    python benchmarks/layer_prompt_backward.py                   # SmolLM2-135M, 16 x (200 + 14 + 30), 1 thread
    python benchmarks/layer_prompt_backward.py --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from unittest.mock import patch

import torch
import torch.nn.functional as F

from mscrs_core.models.context_states import ContextStates, run_after_context
from mscrs_core.models.layer_prompt import LayerPrompt, append_layer_prompt

CACHE_DIR = Path(__file__).resolve().parents[1] / "cache" / "backbones"


def select_cache(states: ContextStates):
    """The baseline: the cache built from one ``keys[i]`` / ``values[i]`` per layer (what ``as_cache`` did before)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(states.keys[i], states.values[i]) for i in range(states.keys.shape[0])])


def random_states(backbone, batch: int, width: int, seed: int = 0) -> ContextStates:
    """Context states of ``batch`` left-padded rows (lengths spread over ``width``), random, in the backbone's dtype."""
    c = backbone.config
    heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    dtype = next(backbone.parameters()).dtype
    g = torch.Generator().manual_seed(seed)
    shape = (c.num_hidden_layers, batch, heads, width, head_dim)
    keys, values = (torch.randn(shape, generator=g).to(dtype) for _ in range(2))
    mask = torch.zeros(batch, width, dtype=torch.long)
    for row in range(batch):
        mask[row, width - max(1, width * (row + 1) // batch):] = 1
    return ContextStates(keys, values, mask)


def step(backbone, layer_prompt: LayerPrompt, states: ContextStates, prompt: torch.Tensor, tokens: torch.Tensor
         ) -> torch.Tensor:
    """Forward and backward of one step; returns the prompt's gradient."""
    prompt = prompt.detach().requires_grad_(True)
    dtype = next(backbone.parameters()).dtype
    with_prompt = append_layer_prompt(backbone, layer_prompt, states, prompt)
    embeds = backbone.get_input_embeddings()(tokens[:, :-1]).to(dtype)
    hidden = run_after_context(backbone, with_prompt, embeds)
    logits = backbone.get_output_embeddings()(hidden).float()
    F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    return prompt.grad


def compare(backbone, batch: int, width: int, n_prompt: int, n_response: int, repeats: int) -> dict:
    """Seconds per step of each way (median of ``repeats`` alternating rounds after a warm-up) and whether the
    prompt's gradients agree exactly."""
    torch.manual_seed(0)
    layer_prompt = LayerPrompt.for_backbone(backbone)
    states = random_states(backbone, batch, width)
    prompt = torch.randn(batch, n_prompt, backbone.config.hidden_size)
    tokens = torch.randint(0, backbone.config.vocab_size, (batch, n_response + 1))
    times: dict[str, list[float]] = {"baseline": [], "new": []}
    grads = {}
    for round_ in range(repeats + 1):
        for name, split in (("baseline", select_cache), ("new", ContextStates.as_cache)):
            layer_prompt.zero_grad(set_to_none=True)
            t = time.perf_counter()
            with patch.object(ContextStates, "as_cache", split):
                grads[name] = step(backbone, layer_prompt, states, prompt, tokens)
            if round_:  # the first round warms up
                times[name].append(time.perf_counter() - t)
    b, n = statistics.median(times["baseline"]), statistics.median(times["new"])
    return {"baseline_s": b, "new_s": n, "ratio": b / n, "identical": bool(torch.equal(grads["baseline"], grads["new"]))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16, help="contexts per step (chapter 6's batch size)")
    ap.add_argument("--width", type=int, default=200, help="cached context positions (chapter 6's budget)")
    ap.add_argument("--prompt", type=int, default=14, help="prompt positions (4 entity + 10 task)")
    ap.add_argument("--response", type=int, default=30, help="response tokens run with autograd")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mscrs_core.models.backbone import freeze, load_backbone, resolve_dtype_name

    dtype = resolve_dtype_name("auto")  # bf16 where the hardware has it natively; emulated bf16 is ~50x slower
    backbone, _ = load_backbone(args.backbone, dtype=getattr(torch, dtype), attn_implementation="eager",
                                cache_dir=CACHE_DIR)
    freeze(backbone)
    r = compare(backbone, args.batch, args.width, args.prompt, args.response, args.repeats)
    print(f"layer-prompt training step, {args.backbone} ({dtype}), {args.batch} x ({args.width} cached + "
          f"{args.prompt} prompt + {args.response} response), {torch.get_num_threads()} thread(s), "
          f"median of {args.repeats}:")
    print(f"  one keys[i] per layer (baseline): {r['baseline_s']:7.3f} s per step")
    print(f"  unbind (new)                    : {r['new_s']:7.3f} s per step")
    print(f"  ratio baseline / new: {r['ratio']:.2f}x; prompt gradients identical: {r['identical']}")
    return r


if __name__ == "__main__":
    main()
