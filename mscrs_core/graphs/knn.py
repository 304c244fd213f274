"""Text / image semantic graphs: cosine similarity + kNN sparsification, Eq. (9)-(10).

Rules (the paper is silent on most of them):

* negatives are set to zero (Eq. 9 text) and zero similarities are never edges, so an item
  with fewer than k positively-similar items gets fewer than k edges;
* ties: higher similarity first, equal similarity -> lower item index first. "Equal" means equal
  float64 cosines rounded to 9 decimals; the fast pass is float32, and every row whose k-th and
  (k+1)-th float32 values lie within 1e-5 is recomputed in float64 with a stable sort, so the
  result does not depend on the block size or BLAS rounding;
* ``k >= n-1`` keeps every other (positively similar) item;
* items outside ``mask`` (e.g. no image) and rows with zero norm get no edges and are reported
  in :attr:`KNNGraph.missing` / :attr:`KNNGraph.zero_norm`; they are not candidates either;
* self-edges: never part of the top-k (an item is not its own neighbour; the authors' code also
  skips position 0 of the sorted row); ``self_loops=True`` adds (i, i) with weight 1 on top;
* direction: edge ``(i, j)`` means j is in i's top-k. ``symmetric=True`` (default) returns the
  union of both directions, the undirected graph Eq. (11)'s D^-1/2 A D^-1/2 implies;
  ``symmetric=False`` keeps them directed as the authors' code does (with PyG's
  source-to-target flow, j then aggregates from the items that chose it).

Memory stays bounded: S = X X^T is computed in B x B blocks, only the upper triangle (each block
serves its rows and, transposed, its columns), and each row keeps a running top-(k+1) list; a
block entry becomes a candidate only if it beats the row's current (k+1)-th value (and 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.utils import coalesce

DEFAULT_BLOCK = 4096
TIE_TOL = 1e-5  # float32 cosine error bound used to flag possibly tied rows
TIE_DECIMALS = 9  # ties = equal float64 cosines after rounding to this many decimals


@dataclass
class KNNGraph:
    """kNN graph in item space 0..N-1."""

    edge_index: Tensor  # [2, E], sorted by (row, col)
    edge_weight: Tensor  # [E] cosine similarity (> 0; 1.0 on self-loops)
    num_nodes: int
    k: int
    symmetric: bool
    self_loops: bool
    valid_mask: Tensor  # [N] bool: item had usable features (in mask, finite, non-zero norm)
    missing: list[int]  # items outside ``mask``
    zero_norm: list[int]  # items inside ``mask`` whose feature vector has zero norm

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


def _merge(best_v: Tensor, best_i: Tensor, rows: Tensor, cols: Tensor, vals: Tensor) -> None:
    """Merge candidates into the running top lists ``best_*`` (a block's rows) in place.

    ``rows`` are local to ``best_*`` and sorted ascending; ``cols`` are global ids.
    """
    if rows.numel() == 0:
        return
    counts = torch.bincount(rows, minlength=best_v.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(rows.numel()) - starts[rows]
    width = int(counts.max())
    pad_v = torch.full((best_v.shape[0], width), float("-inf"), dtype=vals.dtype)
    pad_i = torch.zeros((best_v.shape[0], width), dtype=torch.long)  # -inf slots are never picked
    pad_v[rows, pos] = vals
    pad_i[rows, pos] = cols
    top_v, top_p = torch.cat([best_v, pad_v], 1).topk(best_v.shape[1], dim=1)
    best_i.copy_(torch.cat([best_i, pad_i], 1).gather(1, top_p))
    best_v.copy_(top_v)


def _topk_blocked(x: Tensor, kk: int, block: int) -> tuple[Tensor, Tensor]:
    """Running top-``kk`` positive cosine neighbours (self excluded) of unit rows ``x``."""
    n = x.shape[0]
    best_v = torch.zeros(n, kk, dtype=x.dtype)  # 0 = "nothing yet"; only s > 0 may enter
    best_i = torch.full((n, kk), -1, dtype=torch.long)
    starts = list(range(0, n, block))
    # diagonal blocks first: they seed every row's threshold, so later blocks yield few candidates
    pairs = [(a, a) for a in starts] + [(a, b) for i, a in enumerate(starts) for b in starts[i + 1 :]]
    for a, b in pairs:
        ea, eb = min(a + block, n), min(b + block, n)
        s = x[a:ea] @ x[b:eb].T
        thr_a = best_v[a:ea, -1].clone()
        if a == b:
            s.fill_diagonal_(float("-inf"))
            # first block of these rows: dense top-kk is cheaper than thousands of candidates
            v, c = s.topk(min(kk, s.shape[1]), dim=1)
            r = torch.arange(s.shape[0])[:, None].expand_as(c)
            keep = v > 0
            _merge(best_v[a:ea], best_i[a:ea], r[keep], c[keep] + b, v[keep])
            continue
        thr_b = best_v[b:eb, -1].clone()
        m = s > thr_a[:, None]
        m |= s > thr_b[None, :]
        r, c = m.nonzero(as_tuple=True)  # one pass serves both sides
        v = s[r, c]
        sel = v > thr_a[r]
        _merge(best_v[a:ea], best_i[a:ea], r[sel], c[sel] + b, v[sel])
        sel = (v > thr_b[c]).nonzero(as_tuple=True)[0]
        sel = sel[torch.argsort(c[sel], stable=True)]  # group by column = row of block b
        _merge(best_v[b:eb], best_i[b:eb], c[sel], r[sel] + a, v[sel])
    return best_v, best_i


def build_knn_graph(
    features: Tensor | np.ndarray,
    k: int,
    *,
    mask: Tensor | np.ndarray | None = None,
    symmetric: bool = True,
    self_loops: bool = False,
    block_size: int = DEFAULT_BLOCK,
) -> KNNGraph:
    """Top-k cosine graph over items, Eq. (9)-(10); see the module docstring for the rules.

    Args:
        features: [N, d] item features (text or image), float.
        k: neighbours kept per item (paper: 20 on ReDial, 10 on INSPIRED).
        mask: [N] bool, True where the item has this modality's features.
        symmetric: union of both directions (paper default) or directed (authors' code).
        self_loops: add (i, i) edges for items with features.
        block_size: rows/cols per similarity block (memory ~ block_size^2 floats).
    """
    x = torch.as_tensor(features)
    if x.dim() != 2:
        raise ValueError(f"features must be 2-D [N, d], got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    x = x.detach().to("cpu", torch.float32)
    n = x.shape[0]
    if mask is None:
        m = torch.ones(n, dtype=torch.bool)
    else:
        m = torch.as_tensor(mask).to("cpu").bool().reshape(-1)
        if m.numel() != n:
            raise ValueError(f"mask has {m.numel()} entries for {n} feature rows")
    if not torch.isfinite(x[m]).all():
        raise ValueError("features contain NaN/inf in rows selected by mask")
    norms = x.norm(dim=1)
    zero = m & (norms == 0)
    valid = m & ~zero
    vidx = valid.nonzero(as_tuple=True)[0]
    nv = vidx.numel()
    xv = x[vidx] / norms[vidx, None]
    k_eff = min(k, max(nv - 1, 0))

    rows = cols = torch.zeros(0, dtype=torch.long)
    w = torch.zeros(0)
    if k_eff > 0:
        kk = min(k_eff + 1, nv - 1)  # one extra value tells whether the k-th place is tied
        best_v, best_i = _topk_blocked(xv, kk, block_size)
        if kk > k_eff:
            # rows whose k-th and (k+1)-th float32 values are within float32 error: redo in float64
            gap = best_v[:, k_eff - 1] - best_v[:, k_eff]
            amb = ((gap <= TIE_TOL) & (best_v[:, k_eff] > 0)).nonzero(as_tuple=True)[0]
            if amb.numel():
                x64 = x[vidx].double()
                x64 /= x64.norm(dim=1, keepdim=True)
                for chunk in amb.split(max(1, (1 << 22) // nv)):
                    s = torch.round(x64[chunk] @ x64.T, decimals=TIE_DECIMALS)
                    s[torch.arange(chunk.numel()), chunk] = float("-inf")
                    v, i = torch.sort(s, dim=1, descending=True, stable=True)  # stable: lower index wins
                    best_v[chunk, :k_eff], best_i[chunk, :k_eff] = v[:, :k_eff].float(), i[:, :k_eff]
        bv, bi = best_v[:, :k_eff], best_i[:, :k_eff]
        keep = (bv > 0) & (bi >= 0)
        rows = vidx[torch.arange(nv)[:, None].expand(-1, k_eff)[keep]]
        cols = vidx[bi[keep]]
        w = bv[keep]
    ei = torch.stack([rows, cols])
    if symmetric:
        ei, w = torch.cat([ei, ei.flip(0)], 1), torch.cat([w, w])
    if self_loops:
        ei = torch.cat([ei, torch.stack([vidx, vidx])], 1)
        w = torch.cat([w, torch.ones(nv)])
    ei, w = coalesce(ei, w, num_nodes=n, reduce="max")  # sorted (row, col), duplicates merged
    return KNNGraph(
        edge_index=ei,
        edge_weight=w,
        num_nodes=n,
        k=k,
        symmetric=symmetric,
        self_loops=self_loops,
        valid_mask=valid,
        missing=(~m).nonzero(as_tuple=True)[0].tolist(),
        zero_norm=zero.nonzero(as_tuple=True)[0].tolist(),
    )
