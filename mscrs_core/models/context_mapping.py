"""Correlation semantic mapping over dialog contexts, Eq. (26)-(27) of MSCRS (paper Sec. 4.4).

Graph G_s (the "correlation semantic mapping"):

* nodes: the dialog contexts of the TRAINING split (one per conversation sample, i.e. per recommender turn);
* similarity of two contexts = number of shared enhanced entities ``|Q_hat_s n Q_hat_j|`` (Eq. 25 sets);
* sparsified like Eq. (9)-(11): each context keeps its top-k most similar contexts (binary edges, Eq. 10;
  zero overlap is never an edge), the training graph is symmetrised, and propagation uses the symmetric
  normalisation D^-1/2 A D^-1/2 (Eq. 11).

No leakage (tested): the bank holds training contexts only. A training context retrieves among the training
contexts of OTHER dialogs (never itself, never a sample of its own dialog, whose later turns contain its answer).
A valid/test/chat context is not a node: it looks up its own top-k among the training contexts, never among other
valid/test dialogs. Every query row -- training or not -- is its directed top-k, weighted
1 / sqrt(d_s * d_j) with d_s = its number of neighbours and d_j = the neighbour's degree in the symmetrised
training graph, so training and test contexts see the same operator.

Ties in the top-k are broken by bank index (deterministic).

Eq. (26): E_hat_s = AvgPool([E_s^(0), E_s^(1)]), with E_s^(0) the frozen text-encoder embedding of the context
(the paper: RoBERTa token states, here mean-pooled all-MiniLM-L6-v2 by default, cached) and
E_s^(1) = agg_s + MLP(agg_s), agg_s = sum_j w_sj E_j^(0): one LightGCN propagation step whose output an MLP
refines ("we utilize MLP to simulate the neighbor aggregation of one layer of LightGCN"); the MLP's last layer
starts at zero, so at initialisation E^(1) is exactly the LightGCN layer. A context with no neighbour keeps
E_hat_s = E_s^(0).

Eq. (27)'s Reshape: the paper's E_s^(0) is already p x d_c (token states); a pooled vector is not, so a learned
linear map d_t -> p * H followed by a reshape to [p, H] stands in for it (documented deviation).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from torch import Tensor, nn

from mscrs_core.models.collate import ROLE_PREFIX

TextEmbedFn = Callable[[list[str]], Tensor]


# ------------------------------------------------------------------------------------------ context text


def context_string(context: Sequence[tuple[str, str]], max_chars: int = 1500) -> str:
    """The text E_s^(0) encodes: role-prefixed turns, newest kept when longer than ``max_chars``.

    Encoders truncate on the RIGHT (dropping the most recent turns), so the tail is cut here instead.
    """
    lines = [ROLE_PREFIX.get(role, "") + text.strip() for role, text in context if text.strip()]
    out: list[str] = []
    size = 0
    for line in reversed(lines):
        if out and size + len(line) > max_chars:
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(reversed(out)) if out else "(start of dialog)"


def sample_key(sample) -> str:
    """Key of a conversation sample: ``"<dialog_id>#<turn_index>"``."""
    return f"{sample.dialog_id}#{sample.turn_index}"


# ------------------------------------------------------------------------------------------ embedders


class HashingTextEmbedder:
    """Deterministic, model-free bag-of-words embedder (hashed word counts, L2-normalised).

    For tests and smoke runs only (no weights to load); the paper-like default is :class:`MiniLMContextEmbedder`.
    """

    def __init__(self, dim: int = 64):
        if dim < 1:
            raise ValueError(f"dim: expected >= 1, got {dim}")
        self.dim = dim
        self.spec = f"hashing:{dim}"

    def __call__(self, texts: list[str]) -> Tensor:
        out = torch.zeros(len(texts), self.dim)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0
        return torch.nn.functional.normalize(out, dim=1)


class MiniLMContextEmbedder:
    """E_s^(0) with :class:`~mscrs_core.features.text_encoder.TextEncoder` (all-MiniLM-L6-v2 offline by default;
    ``model="roberta-base"`` is the paper's, where available). ``cache_dir`` caches the bank's features on disk."""

    def __init__(self, model: str | None = None, cache_dir: str | Path | None = None, batch_size: int = 64):
        from mscrs_core.features.text_encoder import TextEncoder

        self.encoder = TextEncoder(model, batch_size=batch_size)
        self.dim = self.encoder.dim
        self.spec = "minilm" if model is None else f"hf:{model}"
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def __call__(self, texts: list[str]) -> Tensor:
        return self.encoder.encode(texts)

    def encode_keyed(self, texts: dict[str, str], tag: str) -> Tensor:
        """Encode ``{key: text}`` through the on-disk cache when ``cache_dir`` is set."""
        if self.cache_dir is None:
            return self(list(texts.values()))
        return self.encoder.encode_cached(texts, self.cache_dir / f"contexts-{tag}.safetensors").features


def make_text_embedder(spec: str, cache_dir: str | Path | None = None):
    """``"minilm"`` | ``"hf:<name or folder>"`` | ``"hashing:<dim>"`` -> an embedder (``__call__(texts)``)."""
    if spec == "minilm":
        return MiniLMContextEmbedder(None, cache_dir)
    if spec.startswith("hf:"):
        return MiniLMContextEmbedder(spec[3:], cache_dir)
    if spec.startswith("hashing:"):
        try:
            return HashingTextEmbedder(int(spec.split(":", 1)[1]))
        except ValueError:
            pass
    raise ValueError(f"text embedder spec: expected 'minilm', 'hf:<model>' or 'hashing:<dim>', got {spec!r}")


def embed_contexts(samples: Sequence, embedder: TextEmbedFn) -> Tensor:
    """E^(0) of each sample's context (:func:`context_string`), [len(samples), d]; through the embedder's on-disk
    cache when it has one (``encode_keyed``, one file per set of sample keys, so the same samples hit it again)."""
    keys = [sample_key(s) for s in samples]
    texts = {key: context_string(s.context) for key, s in zip(keys, samples)}
    if len(texts) < len(keys):
        raise ValueError("embed_contexts: two samples share a key (dialog id and turn index)")
    if hasattr(embedder, "encode_keyed"):
        tag = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:10]
        return embedder.encode_keyed(texts, tag)
    return embedder(list(texts.values()))


# ------------------------------------------------------------------------------------------ bank


@dataclass
class Retrieval:
    """Top-k training contexts of each query: ``index`` [B, k] (-1 = none), ``weight`` [B, k] (0 where none)."""

    index: Tensor
    weight: Tensor
    overlap: Tensor  # [B, k] shared enhanced entities (0 where none)


def _binary_rows(sets: Sequence[Sequence[int]], n_cols: int) -> sparse.csr_matrix:
    indptr = np.zeros(len(sets) + 1, dtype=np.int64)
    cols: list[int] = []
    for i, s in enumerate(sets):
        u = sorted(set(int(e) for e in s))
        if u and (u[0] < 0 or u[-1] >= n_cols):
            raise ValueError(f"entity set {i}: ids must lie in [0, {n_cols}), got {u[0]}..{u[-1]}")
        cols.extend(u)
        indptr[i + 1] = len(cols)
    data = np.ones(len(cols), dtype=np.float32)
    return sparse.csr_matrix((data, np.asarray(cols, dtype=np.int64), indptr), shape=(len(sets), n_cols))


class ContextBank:
    """The training contexts of G_s: keys, dialog ids, enhanced entity sets and E^(0) embeddings.

    Build with :meth:`build`; query with :meth:`lookup` (see the module docstring for the rules).
    """

    def __init__(self, keys: Sequence[str], dialog_ids: Sequence[str], entity_sets: Sequence[Sequence[int]],
                 embeddings: Tensor, num_entities: int, k: int = 10, chunk: int = 512):
        if len(keys) != len(dialog_ids) or len(keys) != len(entity_sets) or len(keys) != embeddings.shape[0]:
            raise ValueError("ContextBank: keys, dialog_ids, entity_sets and embeddings must have the same length")
        if len(set(keys)) != len(keys):
            raise ValueError("ContextBank: duplicate context keys")
        if k < 1:
            raise ValueError(f"k: expected >= 1, got {k}")
        self.keys = list(keys)
        self.dialog_ids = list(dialog_ids)
        self.entity_sets = [tuple(int(e) for e in s) for s in entity_sets]
        self.embeddings = embeddings.float()
        self.num_entities, self.k, self.chunk = num_entities, k, chunk
        self.key_index = {key: i for i, key in enumerate(self.keys)}
        dialog_codes: dict[str, int] = {}
        self.dialog_code = np.array([dialog_codes.setdefault(d, len(dialog_codes)) for d in self.dialog_ids],
                                    dtype=np.int64)
        self._dialog_codes = dialog_codes
        self.matrix = _binary_rows(self.entity_sets, num_entities)  # [M, K]
        self._matrix_t = self.matrix.T.tocsc()
        self.degree = self._training_degrees()

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @classmethod
    def build(cls, samples: Sequence, enhancer: Callable, embedder: TextEmbedFn, num_entities: int,
              k: int = 10) -> "ContextBank":
        """From TRAINING conversation samples: Q_hat by ``enhancer`` (Eq. 25), E^(0) by ``embedder``."""
        if not samples:
            raise ValueError("ContextBank.build: no training samples")
        keys = [sample_key(s) for s in samples]
        emb = embed_contexts(samples, embedder)
        sets = [enhancer(s.context_entities).entities for s in samples]
        return cls(keys, [s.dialog_id for s in samples], sets, emb, num_entities, k)

    # -------------------------------------------------------------------------- top-k
    def _topk(self, rows: sparse.csr_matrix, exclude_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k bank indices [B, k] (-1 pad) and overlaps for binary query rows; ``exclude_codes[b]`` is a
        dialog code whose contexts row b may not retrieve (-1: none)."""
        b, m, k = rows.shape[0], len(self.keys), self.k
        idx = np.full((b, k), -1, dtype=np.int64)
        ovl = np.zeros((b, k), dtype=np.int64)
        for start in range(0, b, self.chunk):
            part = rows[start:start + self.chunk]
            dense = (part @ self._matrix_t).toarray().astype(np.int64)  # [c, M] shared-entity counts
            codes = exclude_codes[start:start + self.chunk]
            dense[(self.dialog_code[None, :] == codes[:, None])] = 0  # own dialog: never retrieved
            # unique integer scores: overlap first, then the lower bank index (deterministic tie-break)
            score = dense * (m + 1) + (m - np.arange(m))[None, :]
            kk = min(k, m)
            top = np.argpartition(-score, kk - 1, axis=1)[:, :kk]
            order = np.argsort(-np.take_along_axis(score, top, 1), axis=1)
            top = np.take_along_axis(top, order, 1)
            top_ovl = np.take_along_axis(dense, top, 1)
            top = np.where(top_ovl > 0, top, -1)  # zero overlap is no edge (Eq. 10 after Eq. 9's clipping)
            idx[start:start + len(codes), :kk] = top
            ovl[start:start + len(codes), :kk] = np.where(top >= 0, top_ovl, 0)
        return idx, ovl

    def _training_degrees(self) -> np.ndarray:
        """Degree of every bank context in the symmetrised top-k training graph (>= 1)."""
        idx, _ = self._topk(self.matrix, self.dialog_code)
        rows = np.repeat(np.arange(len(self.keys)), idx.shape[1])
        cols = idx.reshape(-1)
        keep = cols >= 0
        a = sparse.coo_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])),
                              shape=(len(self.keys), len(self.keys))).tocsr()
        a = ((a + a.T) > 0).astype(np.float32)
        return np.maximum(np.asarray(a.sum(1)).reshape(-1), 1.0)

    def lookup(self, entity_sets: Sequence[Sequence[int]], keys: Sequence[str | None] | None = None) -> Retrieval:
        """Top-k training contexts of each query (Eq. 10) with their weights 1/sqrt(d_s d_j) (Eq. 11).

        ``keys[b]`` equal to a bank key marks a training context: its own dialog is excluded. Other queries
        (valid/test/chat) search the whole bank, which holds training contexts only.
        """
        keys = list(keys) if keys is not None else [None] * len(entity_sets)
        if len(keys) != len(entity_sets):
            raise ValueError("lookup: keys and entity_sets differ in length")
        codes = np.full(len(keys), -1, dtype=np.int64)
        for b, key in enumerate(keys):
            if key is not None and key in self.key_index:
                codes[b] = self.dialog_code[self.key_index[key]]
        rows = _binary_rows(entity_sets, self.num_entities)
        idx, ovl = self._topk(rows, codes)
        d_s = np.maximum((idx >= 0).sum(1, keepdims=True), 1)
        d_j = np.where(idx >= 0, self.degree[np.maximum(idx, 0)], 1.0)
        w = np.where(idx >= 0, 1.0 / np.sqrt(d_s * d_j), 0.0)
        return Retrieval(torch.from_numpy(idx), torch.from_numpy(w).float(), torch.from_numpy(ovl))

    # -------------------------------------------------------------------------- persistence
    def state(self) -> dict:
        """Tensors + plain data for ``torch.save`` (weights_only-loadable)."""
        lengths = torch.tensor([len(s) for s in self.entity_sets], dtype=torch.long)
        flat = torch.tensor([e for s in self.entity_sets for e in s], dtype=torch.long)
        return {"keys": self.keys, "dialog_ids": self.dialog_ids, "set_lengths": lengths, "set_values": flat,
                "embeddings": self.embeddings, "num_entities": self.num_entities, "k": self.k}

    @classmethod
    def from_state(cls, state: dict) -> "ContextBank":
        lengths = state["set_lengths"].tolist()
        flat = state["set_values"].tolist()
        sets, pos = [], 0
        for n in lengths:
            sets.append(flat[pos:pos + n])
            pos += n
        return cls(state["keys"], state["dialog_ids"], sets, state["embeddings"], int(state["num_entities"]),
                   int(state["k"]))

    #: file names of :meth:`save` (the tensors, and the keys/dialog ids/sizes as JSON)
    TENSORS_FILE, JSON_FILE = "context_bank.safetensors", "context_bank.json"

    def save(self, directory: str | Path) -> None:
        """Write the bank into ``directory`` as :attr:`TENSORS_FILE` + :attr:`JSON_FILE` (nothing pickled)."""
        from mscrs_core.models.pretrained import write_json, write_safetensors

        d = Path(directory)
        state = self.state()
        write_safetensors({k: state[k] for k in ("set_lengths", "set_values", "embeddings")}, d / self.TENSORS_FILE)
        write_json(d / self.JSON_FILE, {k: state[k] for k in ("keys", "dialog_ids", "num_entities", "k")})

    @classmethod
    def load(cls, directory: str | Path) -> "ContextBank":
        """Inverse of :meth:`save`; a missing or damaged file raises an error naming it."""
        from mscrs_core.models.pretrained import read_json, read_safetensors

        d = Path(directory)
        tensors, _ = read_safetensors(d / cls.TENSORS_FILE, "context bank file")
        data = read_json(d / cls.JSON_FILE, "context bank file")
        missing = [k for k in ("set_lengths", "set_values", "embeddings") if k not in tensors] + \
                  [k for k in ("keys", "dialog_ids", "num_entities", "k") if k not in data]
        if missing:
            raise ValueError(f"{d / cls.TENSORS_FILE}: incomplete context bank (missing {missing})")
        if int(tensors["set_lengths"].sum()) != tensors["set_values"].numel():
            raise ValueError(f"{d / cls.TENSORS_FILE}: set_lengths do not add up to set_values")
        try:
            return cls.from_state({**tensors, **data})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{d / cls.JSON_FILE}: inconsistent context bank ({err})") from None


class ContextFeaturizer:
    """Per-sample inputs of Eq. (26): E^(0) of the context and its retrieved neighbours' E^(0) with weights.

    Training contexts reuse the bank's rows; other contexts are embedded once and memoised by key.
    """

    def __init__(self, bank: ContextBank, embedder: TextEmbedFn, enhancer: Callable):
        self.bank, self.embedder, self.enhancer = bank, embedder, enhancer
        self._memo: dict[Hashable, Tensor] = {}

    def _in_bank(self, s) -> bool:
        j = self.bank.key_index.get(sample_key(s))
        return j is not None and self.bank.entity_sets[j] == tuple(self.enhancer(s.context_entities).entities)

    def prefill(self, samples: Sequence) -> int:
        """Embed, in one pass, the contexts of ``samples`` that the bank does not hold, through the embedder's
        on-disk cache when it has one (:func:`embed_contexts`), and memoise them: a later run on the same samples
        (chapter 7's rows after chapter 6's, a rebuild) reads them back instead of encoding them again. Returns
        how many contexts it memoised."""
        todo: dict[Hashable, object] = {}
        for s in samples:
            if not self._in_bank(s) and (sample_key(s), s.context) not in self._memo:
                todo.setdefault(sample_key(s), s)
        if not todo:
            return 0
        emb = embed_contexts(list(todo.values()), self.embedder).float()
        for s, e in zip(todo.values(), emb):
            self._memo[(sample_key(s), s.context)] = e
        return len(todo)

    def query_embeddings(self, samples: Sequence) -> Tensor:
        out: list[Tensor | None] = []
        todo: list[int] = []
        for i, s in enumerate(samples):
            key = sample_key(s)
            if self._in_bank(s):
                out.append(self.bank.embeddings[self.bank.key_index[key]])
            elif (key, s.context) in self._memo:
                out.append(self._memo[(key, s.context)])
            else:
                out.append(None)
                todo.append(i)
        if todo:
            emb = self.embedder([context_string(samples[i].context) for i in todo]).float()
            for i, e in zip(todo, emb):
                self._memo[(sample_key(samples[i]), samples[i].context)] = e
                out[i] = e
        return torch.stack(out)  # type: ignore[arg-type]

    def __call__(self, samples: Sequence) -> dict[str, Tensor]:
        sets = [self.enhancer(s.context_entities).entities for s in samples]
        r = self.bank.lookup(sets, [sample_key(s) for s in samples])
        nb = self.bank.embeddings[r.index.clamp_min(0)] * (r.index >= 0).unsqueeze(-1)
        return {"ctx_emb": self.query_embeddings(samples), "nb_emb": nb, "nb_weight": r.weight,
                "nb_index": r.index}


# ------------------------------------------------------------------------------------------ module


class CorrelationSemanticMapping(nn.Module):
    """Eq. (26) and the Reshape of Eq. (27): (E^(0)_s, neighbours, weights) -> Reshape(e_hat_s) [B, p, H].

    Args:
        text_dim: d_t of E^(0).
        n_positions: p, the entity-prompt length it is fused with (Eq. 27).
        hidden_size: H (d_c).
        mlp_hidden: width of the MLP that refines the propagated vector.
        embedding_std: std of the backbone's word embeddings; the reshape map's weights start at that std.
    """

    def __init__(self, text_dim: int, n_positions: int, hidden_size: int, *, mlp_hidden: int = 256,
                 embedding_std: float = 0.02):
        super().__init__()
        self.n_positions, self.hidden_size = n_positions, hidden_size
        self.mlp = nn.Sequential(nn.Linear(text_dim, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, text_dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.reshape = nn.Linear(text_dim, n_positions * hidden_size)
        nn.init.normal_(self.reshape.weight, std=embedding_std)  # output ~ embedding_std * ||E_hat_s||
        nn.init.zeros_(self.reshape.bias)

    def forward(self, ctx_emb: Tensor, nb_emb: Tensor, nb_weight: Tensor) -> Tensor:
        agg = (nb_weight.unsqueeze(-1) * nb_emb).sum(1)  # one LightGCN step on G_s, Eq. (11) form
        e1 = agg + self.mlp(agg)  # E^(1): the MLP-simulated layer
        has = (nb_weight > 0).any(1, keepdim=True)
        e_hat = torch.where(has, (ctx_emb + e1) / 2, ctx_emb)  # Eq. (26): AvgPool([E^(0), E^(1)])
        return self.reshape(e_hat).view(-1, self.n_positions, self.hidden_size)
