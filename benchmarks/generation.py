"""Tokens per second of response generation: the MSCRS conversation model against the bare frozen backbone.

full:  collate (Eq. 25 slots, Eq. 26 retrieval) -> prompt [T_tilde; O_cov; s] (Eq. 27-28) -> backbone.generate
       on inputs_embeds, greedy and beam search;
bare:  backbone.generate(input_ids=s) on the same contexts, no prompt, same decoding settings.
Every row generates exactly ``--new-tokens`` tokens (``min_new_tokens`` = ``max_new_tokens``), so tokens/s compare
like with like. Prints median tokens/s of each and the ratio full / bare.

Data: the synthetic planted dataset (``make_synthetic``) with its KG, co-mention and a random text kNN graph; the
backbone is the project's miniature DialoGPT architecture with random weights unless ``--backbone`` names one.

Examples:
    python benchmarks/generation.py
    python benchmarks/generation.py --batch 16 --new-tokens 32 --beams 4 --device cuda
    python benchmarks/generation.py --backbone smollm2-135m --repeats 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from mscrs_core.data.samples import conv_samples
from mscrs_core.data.synthetic import make_synthetic
from mscrs_core.graphs.comention import comention_graph_from_dataset
from mscrs_core.graphs.fusion import GraphConfig, SemanticGraphEncoder
from mscrs_core.graphs.kg import build_kg_edges
from mscrs_core.graphs.knn import build_knn_graph
from mscrs_core.models.backbone import freeze, load_backbone
from mscrs_core.models.context_mapping import ContextBank, make_text_embedder
from mscrs_core.models.conversation import ConvConfig, MSCRSGenerator
from mscrs_core.models.enhanced_entities import EntityEnhancer
from mscrs_core.models.generate import GenerationConfig, generate_ids
from mscrs_core.models.tiny_dialogpt import TinyDialoGPTConfig, build_gpt2_tokenizer


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


def main() -> None:
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
    args = ap.parse_args()

    ds = make_synthetic()
    train, test = conv_samples(ds.splits["train"], ds), conv_samples(ds.splits["test"], ds)
    if args.backbone:
        backbone, tok = load_backbone(args.backbone)
        backbone.to(args.device)
    else:
        backbone, tok = tiny_backbone(args.device)
    torch.manual_seed(0)
    enc = SemanticGraphEncoder(ds.num_entities, build_kg_edges(ds.kg), torch.tensor(ds.item_ids),
                               GraphConfig(dim=128, use_image=False), collab=comention_graph_from_dataset(ds, 1),
                               text=build_knn_graph(torch.randn(ds.num_items, 32), 5))
    cfg = ConvConfig(text_embedder=args.embedder)
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
    with torch.no_grad():
        for name, beams in (("greedy", 1), (f"beam{args.beams}", args.beams)):
            f, b = full(beams), bare(beams)
            f(), b()  # warm-up (graph encoder / kernels)
            tf, tb = timed(f, args.repeats, args.device), timed(b, args.repeats, args.device)
            print(f"{name:>8}: MSCRS {n_tok / tf:9.1f} tok/s | bare backbone {n_tok / tb:9.1f} tok/s | "
                  f"ratio {tb / tf:.3f} (MSCRS speed as a fraction of bare)")


if __name__ == "__main__":
    main()
