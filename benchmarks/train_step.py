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

Examples:
    python benchmarks/train_step.py                              # random tiny-DialoGPT architecture, 8 x 148
    python benchmarks/train_step.py --backbone /path/to/tiny_dialogpt --batch 64
    python benchmarks/train_step.py --backbone smollm2-135m --steps 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from mscrs_core.models.backbone import decoder_of, freeze, load_backbone
from mscrs_core.models.recommender import MSCRSRecommender
from mscrs_core.models.tiny_dialogpt import TinyDialoGPTConfig
from mscrs_core.models.entity_table import EntityTable as TableStandIn

N_ENTITIES, N_EDGES, N_RELATIONS, N_ITEMS = 17_320, 38_903, 13, 1_472




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
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for t, fn in zip(times, fns):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default=None, help="name/path for load_backbone; default: random tiny-DialoGPT")
    ap.add_argument("--graph", choices=("embedding", "rgcn", "kg", "full"), default="rgcn")
    ap.add_argument("--data-root", default="../shared/data", help="for --graph kg")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=148)
    ap.add_argument("--entities", type=int, default=8, help="real entities per sample (of q slots)")
    ap.add_argument("--max-entities", type=int, default=32)
    ap.add_argument("--n-entity-prompt", type=int, default=4)
    ap.add_argument("--n-task-prompt", type=int, default=10)
    ap.add_argument("--entity-dim", type=int, default=None, help="d of E_final; default hidden/2 (UniCRS)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    if args.backbone is None:
        backbone, name = tiny_random_backbone(), "tiny-dialogpt architecture (random weights)"
    else:
        backbone, _ = load_backbone(args.backbone)
        name = args.backbone
    hidden = backbone.config.hidden_size
    d = args.entity_dim or max(hidden // 2, 16)  # UniCRS/MSCRS: entity width = hidden / 2
    graph: nn.Module
    if args.graph == "embedding":
        graph = TableStandIn(N_ENTITIES, d)
    elif args.graph == "rgcn":
        graph = RGCNStandIn(N_ENTITIES, d)
    elif args.graph == "kg":
        from mscrs_core.data.inspired import load_inspired
        from mscrs_core.graphs.fusion import GraphConfig, SemanticGraphEncoder
        from mscrs_core.graphs.kg import build_kg_edges

        ds = load_inspired(args.data_root)
        graph = SemanticGraphEncoder(ds.num_entities, build_kg_edges(ds.kg), torch.tensor(ds.item_ids),
                                     GraphConfig(dim=d, use_collab=False, use_text=False, use_image=False))
    else:
        from mscrs_core.data import load_dataset
        from mscrs_core.experiments.recommendation import graph_settings
        from mscrs_core.graphs.assemble import build_dataset_graphs
        from mscrs_core.graphs.fusion import GraphConfig

        ds = load_dataset("inspired", args.data_root)
        graph = build_dataset_graphs(ds, graph_settings(10), args.data_root).encoder(GraphConfig(dim=d))
    device = torch.device(args.device)
    model = MSCRSRecommender(graph, backbone, torch.arange(N_ITEMS), max_entities=args.max_entities,
                             n_entity_prompt=args.n_entity_prompt, n_task_prompt=args.n_task_prompt).to(device)
    model.train()
    vocab = backbone.get_input_embeddings().weight.shape[0]
    batch = {k: v.to(device) for k, v in make_batch(vocab, args.batch, args.seq, args.max_entities,
                                                    args.entities).items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

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
        hidden_states[:, -1].pow(2).mean().backward()
        sync()

    n_prompt = args.n_entity_prompt + args.n_task_prompt
    bare, prompted, full = interleaved_medians([bare_step, lambda: bare_step(n_prompt), full_step], args.steps,
                                               args.warmup)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"backbone: {name} (hidden {hidden}, vocab {vocab}); graph: {args.graph} (K={N_ENTITIES}, d={d}); "
          f"device: {device}, torch threads: {torch.get_num_threads()}")
    print(f"batch {args.batch} x {args.seq} tokens, prompt {args.n_entity_prompt}+{args.n_task_prompt} positions, "
          f"trainable params {trainable:,}")
    print(f"bare backbone fwd+bwd : {bare * 1000:8.1f} ms/step")
    print(f"full model train step : {full * 1000:8.1f} ms/step")
    print(f"ratio full / bare     : {full / bare:8.3f}  (target <= 1.15)")
    print(f"  of which the {n_prompt} prompt positions (bare backbone on {args.seq + n_prompt} tokens): "
          f"{prompted / bare:.3f}; graph + prompt encoder + scoring + optimizer: {full / prompted:.3f}")


if __name__ == "__main__":
    main()
