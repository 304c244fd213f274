"""Benchmark of two hot spots of a training step (a script, not a test).

    python benchmarks/propagation.py [--data-root ../shared/data] [--threads 1] [--repeats 5]

1. LightGCN over the real co-mention graph (Eq. 7-8) of each dataset, 3 layers, d=64, forward + backward:
   ``LightGCN.forward`` (propagates only the nodes that have edges) against the full propagation
   ``average(layers(x))`` over every entity, which it equals (``tests/test_graphs_lightgcn.py``).
2. The miniature DialoGPT's activation: PyTorch's fused tanh-GELU (``gelu_pytorch_tanh``, the default of
   ``TinyDialoGPTConfig``) against transformers' Python ``gelu_new`` (the same function), random weights,
   batch 64 x 78 tokens (a default run's context plus prompt), forward and forward + backward.

Prints median seconds and the ratio baseline / ours, both measured in this run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def lightgcn_case(name: str, data_root: str, repeats: int) -> None:
    from mscrs_core.data import load_dataset
    from mscrs_core.graphs.comention import comention_graph_from_dataset
    from mscrs_core.graphs.lightgcn import LightGCN

    ds = load_dataset(name, data_root)
    g = comention_graph_from_dataset(ds)
    lgc = LightGCN(g.edge_index, g.num_nodes, 3, g.edge_weight)
    x = torch.randn(g.num_nodes, 64, requires_grad=True)
    n_active = g.num_nodes if lgc.active is None else lgc.active.numel()

    def ours() -> None:
        lgc(x).sum().backward()

    def full() -> None:
        lgc.average(lgc.layers(x)).sum().backward()

    a, b = median_seconds(ours, repeats), median_seconds(full, repeats)
    print(f"{name:>9}: {g.num_nodes:>6} entities, {n_active:>5} with edges, {g.num_edges:>6} edges | "
          f"full {b:.4f} s, nodes with edges {a:.4f} s, ratio {b / a:.1f}x")


def activation_case(repeats: int) -> None:
    from transformers import GPT2Config, GPT2Model

    from mscrs_core.models.tiny_dialogpt import TinyDialoGPTConfig

    c = TinyDialoGPTConfig()
    ids = torch.randint(0, 14_000, (64, 78), generator=torch.Generator().manual_seed(0))
    times = {}
    for act in ("gelu_new", c.activation):
        torch.manual_seed(0)
        m = GPT2Model(GPT2Config(vocab_size=14_000, n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer,
                                 n_head=c.n_head, activation_function=act))

        def fwd() -> None:
            with torch.no_grad():
                m(input_ids=ids)

        def fwd_bwd() -> None:
            e = m.wte(ids).detach().requires_grad_(True)
            m(inputs_embeds=e).last_hidden_state[:, -1].sum().backward()

        times[act] = (median_seconds(fwd, repeats), median_seconds(fwd_bwd, repeats))
    base, ours = times["gelu_new"], times[c.activation]
    print(f"miniature DialoGPT, 64 x 78 tokens: forward gelu_new {base[0]:.3f} s, {c.activation} {ours[0]:.3f} s "
          f"(ratio {base[0] / ours[0]:.2f}x); forward+backward {base[1]:.3f} s vs {ours[1]:.3f} s "
          f"(ratio {base[1] / ours[1]:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None, help="default: $MSCRS_DATA, else ../shared/data")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a sweep run uses one)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("LightGCN, co-mention graph, 3 layers, d=64, forward + backward")
    for name in ("inspired", "redial"):
        lightgcn_case(name, a.data_root, a.repeats)
    activation_case(a.repeats)


if __name__ == "__main__":
    main()
