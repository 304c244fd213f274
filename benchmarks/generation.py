"""Tokens per second of response generation: the MSCRS conversation model against the bare frozen backbone.

full:  collate (Eq. 25 slots, Eq. 26 retrieval) -> prompt [T_tilde; O_cov; s] (Eq. 27-28) -> backbone.generate
       on inputs_embeds, greedy and beam search;
bare:  backbone.generate(input_ids=s) on the same contexts, no prompt, same decoding settings.
Every row generates exactly ``--new-tokens`` tokens (``min_new_tokens`` = ``max_new_tokens``), so tokens/s compare
like with like. Prints median tokens/s of each and the ratio full / bare.

Data: the synthetic planted dataset (``make_synthetic``) with its KG, co-mention and a random text kNN graph; the
backbone is the project's miniature DialoGPT architecture with random weights unless ``--backbone`` names one.

plain: besides, the tokens/s of plain greedy generation (Hugging Face ``generate``, ``min_new_tokens`` =
``max_new_tokens``) of ``--plain-backbone`` (default SmolLM2-135M, bf16 where native else fp32, eager attention; ``none`` skips it) on
real-looking dialog prompts: the first ``--batch`` conversation contexts of INSPIRED's test split as the
collator writes them ("User: ...<eos>System: ...<eos>System:", left-truncated to ``--max-context`` tokens), or a
built-in set of movie dialogs when the data is not there (``--dialogs builtin`` forces them). For a grouped-query
backbone (SmolLM2: 9 query heads, 3 key/value heads) the line runs twice, under the grouped eager attention
(:mod:`mscrs_core.models.attention`) and under Hugging Face's eager attention, which copies the key/value heads;
the ratio of the two is printed (``--no-attention-ratio`` skips the second).

Examples:
    python benchmarks/generation.py
    python benchmarks/generation.py --batch 16 --new-tokens 32 --beams 4 --device cuda
    python benchmarks/generation.py --backbone smollm2-135m --repeats 2
    python benchmarks/generation.py --threads 1 --plain-backbone smollm2-135m --plain-dtype fp32
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mscrs_core.data.samples import conversation_samples
from mscrs_core.data.synthetic import make_synthetic
from mscrs_core.graphs.comention import comention_graph_from_dataset
from mscrs_core.graphs.fusion import GraphConfig, SemanticGraphEncoder
from mscrs_core.graphs.kg import build_kg_edges
from mscrs_core.graphs.knn import build_knn_graph
from mscrs_core.models.attention import GROUPED_EAGER
from mscrs_core.models.backbone import freeze, load_backbone, resolve_dtype_name
from mscrs_core.models.collate import context_text
from mscrs_core.models.context_mapping import ContextBank, make_text_embedder
from mscrs_core.models.conversation_collate import RESPONSE_PREFIX
from mscrs_core.models.conversation import ConversationConfig, MSCRSGenerator
from mscrs_core.models.enhanced_entities import EntityEnhancer
from mscrs_core.models.generate import GenerationConfig, generate_ids
from mscrs_core.models.tiny_dialogpt import TinyDialoGPTConfig, build_gpt2_tokenizer

CACHE_DIR = Path(__file__).resolve().parents[1] / "cache" / "backbones"
# "auto": bfloat16 where the hardware computes it natively, else float32 (emulated bfloat16 is ~50x slower)
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "auto": getattr(torch, resolve_dtype_name("auto"))}

#: Movie-recommendation dialogs in the datasets' style, for when INSPIRED's files are not on this machine.
BUILTIN_DIALOGS: list[list[tuple[str, str]]] = [
    [("seeker", "Hi! I'm looking for a good movie to watch tonight."),
     ("recommender", "Sure! What kind of movies do you usually enjoy?"),
     ("seeker", "I really like sci-fi, especially stuff like Interstellar and Arrival.")],
    [("seeker", "hey, can you recommend a comedy? I need a laugh"),
     ("recommender", "Of course. Have you seen Superbad or Step Brothers?"),
     ("seeker", "I saw Superbad and loved it. Something newer maybe?")],
    [("recommender", "Hello, what genre are you in the mood for today?"),
     ("seeker", "Something scary. I love horror movies like The Conjuring."),
     ("recommender", "Do you prefer supernatural horror or more of a slasher?"),
     ("seeker", "Supernatural for sure, ghosts and haunted houses.")],
    [("seeker", "My wife and I want a romantic movie for date night."),
     ("recommender", "How about La La Land? It has great music too."),
     ("seeker", "We watched that last month. Anything similar?")],
    [("seeker", "I want to watch an animated movie with my kids, they are 6 and 9."),
     ("recommender", "Pixar films are always a safe bet. Did they like Coco?"),
     ("seeker", "They loved Coco! They also liked Frozen.")],
    [("seeker", "Hi, I enjoy crime thrillers with a good twist at the end."),
     ("recommender", "Have you seen Gone Girl or Prisoners?"),
     ("seeker", "Yes, both. Prisoners was amazing, Hugh Jackman was great in it.")],
    [("recommender", "Hi there! What was the last movie you really enjoyed?"),
     ("seeker", "I watched The Dark Knight again last week, I love superhero movies that feel realistic.")],
    [("seeker", "hello, I'm in the mood for an old classic, maybe something from the 70s"),
     ("recommender", "The Godfather is a must if you haven't seen it."),
     ("seeker", "I have, it's one of my favorites. What else is like it?")],
]


def tiny_backbone(device: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    c = TinyDialoGPTConfig()
    tok = build_gpt2_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=c.n_positions, n_embd=c.n_embd,
                                       n_layer=c.n_layer, n_head=c.n_head, bos_token_id=tok.eos_token_id,
                                       eos_token_id=tok.eos_token_id))
    return freeze(model.to(device)), tok


def timed(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def dialog_prompts(n: int, eos: str, source: str = "inspired", data_root: str | None = None) -> tuple[list[str], str]:
    """``n`` dialog contexts as generation prompts ending in "System:", and where they came from."""
    contexts: list = []
    if source == "inspired":
        try:
            from mscrs_core.data import load_dataset

            ds = load_dataset("inspired", data_root)
            contexts = [s.context for s in conversation_samples(ds.splits["test"], ds) if s.context][:n]
            source = "INSPIRED test contexts"
        except Exception as err:  # no data here: the built-in dialogs keep the benchmark runnable
            source = f"built-in dialogs (INSPIRED unavailable: {type(err).__name__})"
    else:
        source = "built-in dialogs"
    if len(contexts) < n:
        contexts = [BUILTIN_DIALOGS[i % len(BUILTIN_DIALOGS)] for i in range(n)]
    return [context_text(c, eos) + RESPONSE_PREFIX for c in contexts], source


def plain_greedy_tps(backbone, tok, prompts: list[str], new_tokens: int, repeats: int, device: str,
                     max_context: int = 200) -> tuple[float, float, float]:
    """Tokens/s of plain greedy ``backbone.generate`` over the left-padded prompts (one batch): by wall time, by
    process CPU time (on a shared machine, close to an idle core's speed with one torch thread), and the mean
    number of prompt tokens; every row generates exactly ``new_tokens`` tokens."""
    side = tok.padding_side, tok.truncation_side
    tok.padding_side = tok.truncation_side = "left"  # decoder-only generation continues after the last token
    try:
        enc = tok(prompts, return_tensors="pt", padding=True, truncation=True, max_length=max_context)
    finally:
        tok.padding_side, tok.truncation_side = side
    enc = {k: v.to(device) for k, v in enc.items()}
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=1, do_sample=False,
              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    with torch.no_grad():
        run = lambda: backbone.generate(**enc, **kw)  # noqa: E731
        out = run()  # warm-up
        if out.shape[1] != enc["input_ids"].shape[1] + new_tokens:
            raise RuntimeError(f"generate returned {out.shape[1] - enc['input_ids'].shape[1]} new tokens, "
                               f"expected {new_tokens}")
        c0 = time.process_time()
        t = timed(run, repeats, device)
        c = (time.process_time() - c0) / repeats
    n = len(prompts) * new_tokens
    return n / t, n / c, float(enc["attention_mask"].sum(1).float().mean())


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default=None, help="load_backbone name/path (default: random tiny DialoGPT)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--no-repeat", type=int, default=0,
                    help="no_repeat_ngram_size for both runs (default 0: Hugging Face's processor scans input_ids, "
                         "which only the bare run has, so it would time the processor rather than the models)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embedder", default="hashing:384", help="E_s^(0) embedder: hashing:<d> | minilm")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--plain-backbone", default="smollm2-135m",
                    help="backbone for the plain greedy tokens/s line (load_backbone name/path; none: skip)")
    ap.add_argument("--plain-dtype", choices=tuple(DTYPES), default="auto")
    ap.add_argument("--plain-attn", choices=("eager", "sdpa"), default="eager",
                    help="eager: a grouped-query backbone runs models.attention's grouped eager attention, and the "
                         "line is timed again under Hugging Face's copying eager attention (ratio printed)")
    ap.add_argument("--no-attention-ratio", action="store_true", help="skip the copying-eager line")
    ap.add_argument("--dialogs", choices=("inspired", "builtin"), default="inspired",
                    help="prompts of the plain line: INSPIRED test contexts (built-in when absent) or built-in")
    ap.add_argument("--data-root", default=None, help="data root for --dialogs inspired (default: $MSCRS_DATA)")
    ap.add_argument("--max-context", type=int, default=ConversationConfig().max_context_length,
                    help="plain line: prompt tokens kept (left-truncated)")
    ap.add_argument("--skip-mscrs", action="store_true", help="only the plain greedy line")
    ap.add_argument("--cache-dir", default=str(CACHE_DIR), help="where a GGUF backbone is converted once")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, float] = {}
    if not args.skip_mscrs:
        results.update(mscrs_vs_bare(args))
    if args.plain_backbone.lower() != "none":
        backbone, tok = load_backbone(args.plain_backbone, dtype=DTYPES[args.plain_dtype],
                                      attn_implementation=args.plain_attn, cache_dir=args.cache_dir)
        backbone.to(args.device)
        prompts, source = dialog_prompts(args.batch, tok.eos_token, args.dialogs, args.data_root)
        tps, tps_cpu, prompt_len = plain_greedy_tps(backbone, tok, prompts, args.new_tokens, args.repeats, args.device,
                                           args.max_context)
        results["plain_greedy_tok_s"], results["plain_greedy_tok_s_cpu"] = tps, tps_cpu
        dtype = str(DTYPES[args.plain_dtype]).removeprefix("torch.")
        attn = backbone.config._attn_implementation
        print(f"plain greedy: {args.plain_backbone} ({dtype}, {attn}) {tps:9.1f} tok/s "
              f"({tps_cpu:.1f} per process-CPU second) | "
              f"batch {len(prompts)}, {args.new_tokens} new tokens, prompts: {source}, mean {prompt_len:.0f} "
              f"prompt tokens; device={args.device}, torch threads: {torch.get_num_threads()}")
        if attn == GROUPED_EAGER and not args.no_attention_ratio:
            # the same prompts under Hugging Face's eager attention, which copies every key/value head per query head
            backbone.set_attn_implementation("eager")
            copying, _, _ = plain_greedy_tps(backbone, tok, prompts, args.new_tokens, args.repeats, args.device,
                                             args.max_context)
            backbone.set_attn_implementation(GROUPED_EAGER)
            results["plain_greedy_tok_s_copying_eager"] = copying
            results["grouped_over_copying_eager"] = tps / copying
            print(f"plain greedy: {args.plain_backbone} ({dtype}, eager with repeat_kv) {copying:9.1f} tok/s | "
                  f"grouped / copying eager: {tps / copying:.2f}x")
    return results


def mscrs_vs_bare(args) -> dict[str, float]:
    """The MSCRS conversation model against the bare backbone (greedy and beam search), see the docstring."""

    ds = make_synthetic()
    train, test = conversation_samples(ds.splits["train"], ds), conversation_samples(ds.splits["test"], ds)
    if args.backbone:
        backbone, tok = load_backbone(args.backbone, cache_dir=args.cache_dir)
        backbone.to(args.device)
    else:
        backbone, tok = tiny_backbone(args.device)
    torch.manual_seed(0)
    enc = SemanticGraphEncoder(ds.num_entities, build_kg_edges(ds.kg), torch.tensor(ds.item_ids),
                               GraphConfig(dim=128, use_image=False), collab=comention_graph_from_dataset(ds, 1),
                               text=build_knn_graph(torch.randn(ds.num_items, 32), 5))
    cfg = ConversationConfig(text_embedder=args.embedder)
    embedder = make_text_embedder(args.embedder)
    bank = ContextBank.build(train, EntityEnhancer(enc.neighbours, max_neighbours=cfg.max_neighbours), embedder,
                             ds.num_entities, k=cfg.mapping_k)
    gen = MSCRSGenerator(enc, backbone, tok, cfg, bank=bank, embedder=embedder).to(args.device).eval()
    samples = test[: args.batch]
    collator = gen.make_collator(generation=True)
    n_tok = len(samples) * args.new_tokens

    def full(beams: int):
        g = GenerationConfig(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, num_beams=beams,
                             no_repeat_ngram_size=args.no_repeat)
        return lambda: generate_ids(gen, collator(samples), g)

    def bare(beams: int):
        batch = collator(samples)  # the same contexts + "System:", no prompt
        ids, mask = batch["input_ids"].to(args.device), batch["attention_mask"].to(args.device)
        kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, num_beams=beams, do_sample=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        if args.no_repeat:
            kw["no_repeat_ngram_size"] = args.no_repeat
        return lambda: backbone.generate(input_ids=ids, attention_mask=mask, **kw)

    print(f"device={args.device} backbone={args.backbone or 'tiny DialoGPT (random)'} batch={len(samples)} "
          f"new_tokens={args.new_tokens} beams={args.beams} no_repeat={args.no_repeat} embedder={args.embedder}")
    results = {}
    with torch.no_grad():
        for name, beams in (("greedy", 1), (f"beam{args.beams}", args.beams)):
            f, b = full(beams), bare(beams)
            f(), b()  # warm-up (graph encoder / kernels)
            tf, tb = timed(f, args.repeats, args.device), timed(b, args.repeats, args.device)
            print(f"{name:>8}: MSCRS {n_tok / tf:9.1f} tok/s | bare backbone {n_tok / tb:9.1f} tok/s | "
                  f"ratio {tb / tf:.3f} (MSCRS speed as a fraction of bare)")
            results[f"{name}_mscrs_tok_s"], results[f"{name}_bare_tok_s"] = n_tok / tf, n_tok / tb
    return results


if __name__ == "__main__":
    main()
