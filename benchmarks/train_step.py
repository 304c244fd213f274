"""Time one training step of the full recommender against the bare frozen backbone on the same batch.

full: graph encoder -> prompt encoder -> backbone on [V_hat; O_rec; s] -> Eq. (23) loss, backward, AdamW step.
bare: backbone on s alone (inputs_embeds that require grad), backward into inputs_embeds, no optimizer.
Prints median seconds per step and the ratio full / bare (target: graph + prompt encoder add <= 15%), and how
that ratio splits: the backbone alone on the longer sequence [prompt; s] (the cost of the prompt's positions,
which the graph side cannot change) against the rest (graph encoder, prompt encoder, scoring, optimizer).

Graph side (``--graph``): ``embedding`` is the trivial stand-in (a K x d table); ``rgcn`` adds one R-GCN layer
(``GroupedRGCNConv``, 8 bases) over a random graph of INSPIRED's size (17,320 entities, 38,903 edges, 13
relations) as a proxy of the KG encoder; ``kg`` is the project's ``SemanticGraphEncoder`` on INSPIRED's real KG
with every semantic graph switched off (the UniCRS-baseline graph side); ``full`` is the default MSCRS graph side
on INSPIRED (KG + co-mention + text kNN graphs, as a default run builds them; ``kg`` and ``full`` read the data
from ``--data-root``, ``full`` also the cached text features).

``--orders``: instead of the overhead above, time one full training step (forward + backward + AdamW step) of the
recommender in the two prompt orders on the same batch and graph side, in one run: ``prefix`` (Eq. 19,
[V_hat; O_rec; s], the whole context runs with autograd every step) against ``suffix`` with a pre-filled
``ContextStateBank`` ([s; V_hat; O_rec], the context's key/value states computed once without grad, every step runs
only the prompt positions). Filling the bank happens before the timing and is reported on its own, in seconds
per context. A third line times ``suffix`` without the bank (one pass over [s; prompt]); a fourth the cached
``suffix`` with the prompt as every layer's keys and values (``prompt_injection="layers"``, the authors' code:
the readout cue's tokens run after them instead of the prompt's positions). For a grouped-query backbone
(SmolLM2) whose eager attention runs grouped (:mod:`mscrs_core.models.attention`), a fifth line times the cached
suffix under Hugging Face's eager attention, which copies the key/value heads (``--no-copying`` skips it).
Prints the ratios prefix / cached suffix, layer prompt / input prompt (both cached) and copying / grouped eager. In this mode ``--dtype`` defaults to auto (bf16 where the hardware has it natively, else
fp32) and ``--attn`` to eager (the other mode keeps
the backbone's own defaults: fp32, the model's attention).

Examples:
    python benchmarks/train_step.py                              # random tiny-DialoGPT architecture, 8 x 148
    python benchmarks/train_step.py --backbone /path/to/tiny_dialogpt --batch 64
    python benchmarks/train_step.py --backbone smollm2-135m --steps 3
    python benchmarks/train_step.py --backbone smollm2-135m --orders --steps 3 --warmup 1   # 64 x 64, bf16, eager
    python benchmarks/train_step.py --backbone smollm2-135m --orders --dtype fp32 --attn sdpa
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from mscrs_core.models.attention import GROUPED_EAGER
from mscrs_core.models.backbone import decoder_of, freeze, load_backbone, resolve_dtype_name
from mscrs_core.models.context_states import ContextStateBank
from mscrs_core.models.recommender import MSCRSRecommender
from mscrs_core.models.tiny_dialogpt import TinyDialoGPTConfig
from mscrs_core.models.entity_table import EntityTable as TableStandIn

N_ENTITIES, N_EDGES, N_RELATIONS, N_ITEMS = 17_320, 38_903, 13, 1_472
# "auto": bfloat16 where the hardware computes it natively, else float32 (emulated bfloat16 is ~50x slower)
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "auto": getattr(torch, resolve_dtype_name("auto"))}
CACHE_DIR = Path(__file__).resolve().parents[1] / "cache" / "backbones"


class RGCNStandIn(nn.Module):
    """One R-GCN layer over a random INSPIRED-sized graph plus a residual, like the KG side of Eq. (15)."""

    def __init__(self, k: int, d: int, seed: int = 0):
        super().__init__()
        from mscrs_core.graphs.rgcn import GroupedRGCNConv

        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(k, d)
        self.conv = GroupedRGCNConv(d, d, num_relations=N_RELATIONS, num_bases=8)
        self.register_buffer("edge_index", torch.randint(0, k, (2, N_EDGES), generator=g))
        self.register_buffer("edge_type", torch.randint(0, N_RELATIONS, (N_EDGES,), generator=g))

    def forward(self) -> torch.Tensor:
        x = self.emb.weight
        return self.conv(x, self.edge_index, self.edge_type) + x


def tiny_random_backbone(vocab: int = 14_219) -> nn.Module:
    """The tiny-DialoGPT architecture (default config) with random weights: speed does not depend on weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = TinyDialoGPTConfig()
    torch.manual_seed(0)
    return freeze(GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=c.n_positions, n_embd=c.n_embd,
                                             n_layer=c.n_layer, n_head=c.n_head, bos_token_id=vocab - 1,
                                             eos_token_id=vocab - 1, activation_function=c.activation)))


def make_batch(vocab: int, batch: int, seq: int, q: int, n_ent: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    entity_mask = torch.zeros(batch, q, dtype=torch.bool)
    entity_mask[:, q - n_ent:] = True
    return {
        "input_ids": torch.randint(0, vocab, (batch, seq), generator=g),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "entity_ids": torch.randint(0, N_ENTITIES, (batch, q), generator=g) * entity_mask,
        "entity_mask": entity_mask,
        "labels": torch.randint(0, N_ITEMS, (batch,), generator=g),
    }


def interleaved_medians(fns, steps: int, warmup: int) -> list[float]:
    """Median seconds per call of each function, calls interleaved so load drift hits all of them alike."""
    return interleaved_wall_and_cpu(fns, steps, warmup)[0]


def interleaved_wall_and_cpu(fns, steps: int, warmup: int) -> tuple[list[float], list[float]]:
    """Median wall seconds and median process CPU seconds per call of each function (calls interleaved).

    On a shared machine the wall time also counts the time other processes held the cores; with one torch
    thread the CPU time is close to what the step costs on an idle core.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for w, c, fn in zip(wall, cpu, fns):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            w.append(time.perf_counter() - t0)
            c.append(time.process_time() - c0)
    return [statistics.median(t) for t in wall], [statistics.median(t) for t in cpu]


def build_graph(kind: str, d: int, data_root: str = "../shared/data") -> nn.Module:
    """The graph side named by ``--graph`` (see the module docstring), entity width ``d``."""
    if kind == "embedding":
        return TableStandIn(N_ENTITIES, d)
    if kind == "rgcn":
        return RGCNStandIn(N_ENTITIES, d)
    if kind == "kg":
        from mscrs_core.data.inspired import load_inspired
        from mscrs_core.graphs.fusion import GraphConfig, SemanticGraphEncoder
        from mscrs_core.graphs.kg import build_kg_edges

        ds = load_inspired(data_root)
        return SemanticGraphEncoder(ds.num_entities, build_kg_edges(ds.kg), torch.tensor(ds.item_ids),
                                    GraphConfig(dim=d, use_collab=False, use_text=False, use_image=False))
    if kind == "full":
        from mscrs_core.data import load_dataset
        from mscrs_core.experiments.recommendation import graph_settings
        from mscrs_core.graphs.assemble import build_dataset_graphs
        from mscrs_core.graphs.fusion import GraphConfig

        ds = load_dataset("inspired", data_root)
        return build_dataset_graphs(ds, graph_settings(10), data_root).encoder(GraphConfig(dim=d))
    raise ValueError(f"graph: expected one of embedding, rgcn, kg, full, got {kind!r}")


def _sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def overhead_times(backbone: nn.Module, graph: nn.Module, batch: dict[str, torch.Tensor], *, n_entity_prompt: int,
                   n_task_prompt: int, max_entities: int, steps: int, warmup: int,
                   prompt_position: str = "prefix", device: torch.device | str = "cpu") -> dict[str, float]:
    """Median seconds of: the bare backbone fwd+bwd on s, the same on [prompt; s], and the full training step."""
    device = torch.device(device)
    model = MSCRSRecommender(graph, backbone, torch.arange(N_ITEMS), max_entities=max_entities,
                             n_entity_prompt=n_entity_prompt, n_task_prompt=n_task_prompt,
                             prompt_position=prompt_position).to(device)
    model.train()
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    sync = _sync(device)

    def full_step() -> None:
        model(batch, task="rec").loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()

    decoder = decoder_of(backbone)

    def bare_step(extra: int = 0) -> None:
        ids = batch["input_ids"]
        if extra:  # as many more positions as the prompt [V_hat; O_rec] adds
            ids = torch.cat([ids[:, :1].expand(-1, extra), ids], 1)
        embeds = backbone.get_input_embeddings()(ids).detach().requires_grad_(True)
        hidden_states = decoder(inputs_embeds=embeds, attention_mask=torch.ones_like(ids)).last_hidden_state
        hidden_states[:, -1].float().pow(2).mean().backward()
        sync()

    n_prompt = n_entity_prompt + n_task_prompt
    bare, prompted, full = interleaved_medians([bare_step, lambda: bare_step(n_prompt), full_step], steps, warmup)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"bare": bare, "prompted": prompted, "full": full, "trainable": trainable}


class CueTokenizer:
    """Stands in for a tokenizer where the benchmark's backbone has none (random weights): the readout cue of the
    layer prompt becomes ``length`` token ids (SmolLM2's tokenizer splits the default cue into 10)."""

    def __init__(self, length: int = 10, vocab: int = 2):
        self.ids = [i % max(vocab - 1, 1) for i in range(1, length + 1)]

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": list(self.ids)}


def compare_orders(backbone: nn.Module, graph: nn.Module, batch: dict[str, torch.Tensor], *, pad_token_id: int,
                   n_entity_prompt: int, max_entities: int, n_task_prompt: int, steps: int, warmup: int,
                   device: torch.device | str = "cpu", uncached: bool = True, layers: bool = True,
                   tokenizer=None, copying: bool = True) -> dict[str, float]:
    """Median seconds of one training step in each prompt order (same batch, same graph side, same init).

    Returns ``prefix``, ``suffix_cached``, ``suffix_uncached`` (absent with ``uncached=False``) and
    ``suffix_layers`` (the cached suffix with the layer prompt; absent with ``layers=False``), ``suffix_copying``
    (the cached suffix under Hugging Face's eager attention, which copies the key/value heads; only when the
    backbone runs :mod:`mscrs_core.models.attention`'s grouped eager attention and ``copying``) wall seconds per
    step, the same with a ``_cpu`` suffix in process CPU seconds, ``bank_fill`` (``bank_fill_cpu``) seconds per
    context (filling the ``ContextStateBank`` once, before the timing) and ``trainable`` (parameters of one model).
    ``tokenizer`` splits the layer prompt's readout cue (default: :class:`CueTokenizer`).
    """
    device = torch.device(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    sync = _sync(device)
    dtype = next(backbone.parameters()).dtype

    def make(position: str, injection: str = "inputs") -> MSCRSRecommender:
        torch.manual_seed(0)  # every order starts from the same prompt encoder / projection weights
        vocab = backbone.get_input_embeddings().weight.shape[0]
        return MSCRSRecommender(copy.deepcopy(graph), backbone, torch.arange(N_ITEMS), max_entities=max_entities,
                                n_entity_prompt=n_entity_prompt, n_task_prompt=n_task_prompt,
                                prompt_position=position, prompt_injection=injection,
                                tokenizer=tokenizer or CueTokenizer(vocab=vocab)).to(device).train()

    orders = {"prefix": make("prefix"), "suffix_cached": make("suffix")}
    if uncached:
        orders["suffix_uncached"] = make("suffix")
    if layers:
        orders["suffix_layers"] = make("suffix", "layers")

    bank = ContextStateBank(backbone, batch["input_ids"].shape[1], pad_token_id, dtype=dtype)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    bank.lookup(batch["input_ids"], batch["attention_mask"])  # computes and stores every missing context
    sync()
    bank_fill = (time.perf_counter() - t0) / max(len(bank), 1)
    bank_fill_cpu = (time.process_time() - c0) / max(len(bank), 1)
    orders["suffix_cached"].attach_context_bank(bank)
    if layers:
        orders["suffix_layers"].attach_context_bank(bank)

    def step_fn(model: MSCRSRecommender, attn: str | None = None):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            if attn is not None:  # this line's attention; the others' restored after it
                backbone.set_attn_implementation(attn)
            try:
                model(batch, task="rec").loss.backward()
            finally:
                if attn is not None:
                    backbone.set_attn_implementation(GROUPED_EAGER)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()

        return step

    attns = {k: None for k in orders}
    if copying and getattr(backbone.config, "_attn_implementation", None) == GROUPED_EAGER:
        orders["suffix_copying"], attns["suffix_copying"] = orders["suffix_cached"], "eager"
    wall, cpu = interleaved_wall_and_cpu([step_fn(m, attns[k]) for k, m in orders.items()], steps, warmup)
    out = dict(zip(orders, wall))
    out.update({f"{k}_cpu": v for k, v in zip(orders, cpu)})
    out["bank_fill"], out["bank_fill_cpu"] = bank_fill, bank_fill_cpu
    out["trainable"] = sum(p.numel() for p in orders["prefix"].parameters() if p.requires_grad)
    return out


def tiny_backbone_for(dtype: torch.dtype, attn: str | None) -> nn.Module:
    backbone = tiny_random_backbone().to(dtype)
    if attn is not None:
        backbone.set_attn_implementation(attn)
    return backbone


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default=None, help="name/path for load_backbone; default: random tiny-DialoGPT")
    ap.add_argument("--orders", action="store_true",
                    help="time a training step in the prefix order against the suffix order (cached and uncached)")
    ap.add_argument("--graph", choices=("embedding", "rgcn", "kg", "full"), default="rgcn")
    ap.add_argument("--data-root", default="../shared/data", help="for --graph kg")
    ap.add_argument("--batch", type=int, default=None, help="contexts per step (default 8; --orders: 64)")
    ap.add_argument("--seq", type=int, default=None, help="context tokens (default 148; --orders: 64)")
    ap.add_argument("--entities", type=int, default=8, help="real entities per sample (of q slots)")
    ap.add_argument("--max-entities", type=int, default=32)
    ap.add_argument("--n-entity-prompt", type=int, default=4)
    ap.add_argument("--n-task-prompt", type=int, default=10)
    ap.add_argument("--entity-dim", type=int, default=None, help="d of E_final; default hidden/2 (UniCRS)")
    ap.add_argument("--prompt-position", choices=("prefix", "suffix"), default="prefix",
                    help="order of the full model in the default mode (suffix: uncached, one pass)")
    ap.add_argument("--dtype", choices=tuple(DTYPES), default=None,
                    help="backbone dtype (default fp32; --orders: auto, bf16 where native, else fp32)")
    ap.add_argument("--attn", choices=("eager", "sdpa"), default=None,
                    help="attention implementation (default: the model's; --orders: eager)")
    ap.add_argument("--no-uncached", action="store_true", help="--orders: skip the uncached suffix line")
    ap.add_argument("--no-layers", action="store_true", help="--orders: skip the layer-prompt line")
    ap.add_argument("--no-copying", action="store_true",
                    help="--orders: skip the line under Hugging Face's copying eager attention")
    ap.add_argument("--cache-dir", default=str(CACHE_DIR), help="where a GGUF backbone is converted once")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_size = args.batch or (64 if args.orders else 8)
    seq = args.seq or (64 if args.orders else 148)
    dtype = DTYPES[args.dtype or ("auto" if args.orders else "fp32")]
    attn = args.attn or ("eager" if args.orders else None)

    tok = None
    if args.backbone is None:
        backbone, name, pad = tiny_backbone_for(dtype, attn), "tiny-dialogpt architecture (random weights)", 0
    else:
        backbone, tok = load_backbone(args.backbone, dtype=dtype, attn_implementation=attn, cache_dir=args.cache_dir)
        name, pad = args.backbone, tok.pad_token_id
    hidden = backbone.config.hidden_size
    d = args.entity_dim or max(hidden // 2, 16)  # UniCRS/MSCRS: entity width = hidden / 2
    graph = build_graph(args.graph, d, args.data_root)
    device = torch.device(args.device)
    backbone.to(device)
    vocab = backbone.get_input_embeddings().weight.shape[0]
    batch = make_batch(vocab, batch_size, seq, args.max_entities, args.entities)
    n_prompt = args.n_entity_prompt + args.n_task_prompt
    attn_used = getattr(backbone.config, "_attn_implementation", None)
    print(f"backbone: {name} (hidden {hidden}, vocab {vocab}, {str(dtype).removeprefix('torch.')}, "
          f"attention {attn_used}); graph: {args.graph} (K={N_ENTITIES}, d={d}); device: {device}, "
          f"torch threads: {torch.get_num_threads()}")
    common = dict(n_entity_prompt=args.n_entity_prompt, n_task_prompt=args.n_task_prompt,
                  max_entities=args.max_entities, steps=args.steps, warmup=args.warmup, device=device)
    if args.orders:
        r = compare_orders(backbone, graph, batch, pad_token_id=pad, uncached=not args.no_uncached,
                           layers=not args.no_layers, tokenizer=tok, copying=not args.no_copying, **common)
        print(f"batch {batch_size} x {seq} tokens, prompt {args.n_entity_prompt}+{args.n_task_prompt} = {n_prompt} "
              f"positions, trainable params {r['trainable']:,}; median of {args.steps} steps after {args.warmup} "
              f"warm-up")
        print("                                      wall s       CPU s (process; ~ an idle core's time with 1 thread)")
        print(f"context bank fill (no grad, once)  : {r['bank_fill']:8.4f}    {r['bank_fill_cpu']:8.4f}  per context "
              f"({r['bank_fill'] * batch_size:.2f} s wall for the {batch_size} contexts)")
        def step_line(label: str, key: str) -> None:
            print(f"{label}: {r[key]:8.3f}    {r[key + '_cpu']:8.3f}  per step")

        def ratio_line(label: str, num: str, den: str, note: str = "") -> None:
            print(f"{label}: {r[num] / r[den]:8.2f}    {r[num + '_cpu'] / r[den + '_cpu']:8.2f}{note}")

        step_line("prefix [prompt; s] train step      ", "prefix")
        step_line("suffix [s; prompt] cached context  ", "suffix_cached")
        if "suffix_uncached" in r:
            step_line("suffix [s; prompt] uncached (1 pass)", "suffix_uncached")
        if "suffix_layers" in r:
            step_line("suffix, layer prompt, cached       ", "suffix_layers")
        ratio_line("ratio prefix / cached suffix       ", "prefix", "suffix_cached")
        if "suffix_layers" in r:
            ratio_line("ratio layer prompt / input prompt  ", "suffix_layers", "suffix_cached", "  (both cached)")
        if "suffix_copying" in r:
            step_line("cached suffix, copying eager (HF)  ", "suffix_copying")
            ratio_line("ratio copying / grouped eager      ", "suffix_copying", "suffix_cached", "  (cached suffix)")
        return r
    r = overhead_times(backbone, graph, batch, prompt_position=args.prompt_position, **common)
    bare, prompted, full = r["bare"], r["prompted"], r["full"]
    print(f"batch {batch_size} x {seq} tokens, prompt {args.n_entity_prompt}+{args.n_task_prompt} positions "
          f"({args.prompt_position}), trainable params {r['trainable']:,}")
    print(f"bare backbone fwd+bwd : {bare * 1000:8.1f} ms/step")
    print(f"full model train step : {full * 1000:8.1f} ms/step")
    print(f"ratio full / bare     : {full / bare:8.3f}  (target <= 1.15)")
    print(f"  of which the {n_prompt} prompt positions (bare backbone on {seq + n_prompt} tokens): "
          f"{prompted / bare:.3f}; graph + prompt encoder + scoring + optimizer: {full / prompted:.3f}")
    return r


if __name__ == "__main__":
    main()
