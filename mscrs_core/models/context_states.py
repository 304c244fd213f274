"""The context's key/value states, computed once without gradient and reused (the CPU ``suffix`` prompt order).

The paper puts the soft prompt BEFORE the dialog context (Eq. 19 and 28: ``[prompt; s]``), so every training
step runs the frozen language model over the whole context with the prompt's gradient flowing through it. With
the prompt AFTER the context (``[s; prompt]``, the ``suffix`` order) the context's states do not depend on any
trainable parameter: they are computed once per context (no autograd) and every step runs the backbone over the
prompt positions (and, for generation, the response) only, attending to the cached keys and values. Both orders
give a causal LM the same information; ``suffix`` only moves where the prompt sits. On SmolLM2-135M this cuts a
CPU recommendation step about 4x (``benchmarks/train_step.py``).

Layout: a context is LEFT-padded to a fixed width ``T`` (the collators' layout), so states of different contexts
stack into one batch without re-padding. Position ids count real tokens only (0 at the first real token), and
the positions after the context continue from the number of real tokens, exactly as in one uncached pass over
``[s; prompt]`` (``tests/test_models_context_states.py`` checks loss and gradients against that pass).

:class:`ContextStateBank` memoises the states by the context's token ids (a content address: two samples with
the same context share one entry) and can be saved to / loaded from a safetensors file keyed by the backbone,
dataset, split and context length (:func:`bank_file_name`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from mscrs_core.atomic import atomic_write
from mscrs_core.core_share import borrowed_cores, follow_share
from mscrs_core.models.backbone import decoder_of

PROMPT_POSITIONS = ("prefix", "suffix")


@dataclass
class ContextStates:
    """Key/value states of a batch of left-padded contexts.

    keys, values: ``[n_layers, B, n_kv_heads, T, head_dim]``; attention_mask: ``[B, T]`` (1 = real token).
    """

    keys: Tensor
    values: Tensor
    attention_mask: Tensor

    @property
    def length(self) -> Tensor:
        """Number of real tokens per row, ``[B]``: the first position id after the context."""
        return self.attention_mask.sum(1)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ContextStates":
        return ContextStates(self.keys.to(device, dtype), self.values.to(device, dtype),
                             self.attention_mask.to(device))

    def as_cache(self):
        """A fresh ``DynamicCache`` over these states (the stored tensors are never modified: the cache
        concatenates new positions into new tensors).

        The layers are split with ``unbind``, not one ``keys[i]`` per layer: when the states carry a gradient (the
        prompt appended as every layer's keys and values, :func:`~mscrs_core.models.layer_prompt.append_layer_prompt`),
        each ``keys[i]``'s backward writes a zero tensor of ALL layers' size and autograd adds the L of them up, ~2.4 GB
        of fresh pages per conversation step on SmolLM2; ``unbind``'s backward stacks the L gradients once. The
        gradients are the same bit for bit (``benchmarks/layer_prompt_backward.py`` times the two)."""
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=list(zip(self.keys.unbind(0), self.values.unbind(0))))


@torch.no_grad()
def encode_context(backbone: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> ContextStates:
    """Run the frozen backbone once over left-padded contexts and keep every layer's keys and values."""
    positions = (attention_mask.cumsum(1) - 1).clamp_min(0)
    out = decoder_of(backbone)(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                               use_cache=True)
    cache = out.cache
    keys = torch.stack([layer.keys for layer in cache.layers])
    values = torch.stack([layer.values for layer in cache.layers])
    return ContextStates(keys, values, attention_mask.clone())


def run_after_context(backbone: nn.Module, states: ContextStates, inputs_embeds: Tensor,
                      attention_mask: Tensor | None = None, *, lm_head: bool = False) -> Tensor:
    """The backbone over ``inputs_embeds`` placed right after the cached context (with autograd).

    Args:
        states: the context's :class:`ContextStates` (``[B, T]`` mask).
        inputs_embeds: ``[B, S, H]`` new positions (soft prompt, then optionally response tokens),
            RIGHT-padded when rows differ in length.
        attention_mask: ``[B, S]`` for the new positions (default: all real).
        lm_head: return vocabulary logits ``[B, S, V]`` instead of the last hidden states ``[B, S, H]``.
    """
    b, s = inputs_embeds.shape[:2]
    if attention_mask is None:
        attention_mask = torch.ones(b, s, dtype=torch.long, device=inputs_embeds.device)
    positions = states.length.unsqueeze(1) + attention_mask.long().cumsum(1) - 1
    mask = torch.cat([states.attention_mask.to(attention_mask.device).long(), attention_mask.long()], dim=1)
    dtype = next(backbone.parameters()).dtype
    model = backbone if lm_head else decoder_of(backbone)
    out = model(inputs_embeds=inputs_embeds.to(dtype), attention_mask=mask, position_ids=positions.clamp_min(0),
                cache=states.to(inputs_embeds.device, dtype).as_cache(), use_cache=True)
    return out.logits if lm_head else out.last_hidden_state


def _portable_name(name: Any) -> str:
    """A local model folder's own name, without the folders around it (where the project happens to live); a hub
    id such as ``microsoft/DialoGPT-small`` (or a relative path) unchanged."""
    path = Path(str(name))
    return path.name if path.is_absolute() else str(name)


def backbone_fingerprint(backbone: nn.Module, *, legacy: bool = False, vocabulary: bool = True) -> str:
    """Identity of a backbone for cache keys: its config and a checksum of a few weights.

    A local model enters by its folder's name, not its absolute path, so a moved or re-cloned project (with its
    ``cache/`` and ``build/runs``) keeps its finished runs and context states. ``legacy=True``: the identity
    earlier versions computed (the absolute path included), which :func:`bank_path` and the run fingerprints
    still accept for files written in this very place. ``vocabulary=False`` leaves the vocabulary's size out
    (the context-state banks, :func:`bank_file_name`).
    """
    cfg = backbone.config.to_dict()
    fields = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "num_key_value_heads", "_name_or_path")
    keep = {k: cfg.get(k) for k in fields if vocabulary or legacy or k != "vocab_size"}
    if not legacy:
        keep["_name_or_path"] = _portable_name(keep["_name_or_path"])
    h = hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode())
    emb = backbone.get_input_embeddings().weight
    h.update(emb[:8].detach().float().cpu().numpy().tobytes())
    h.update(str(next(backbone.parameters()).dtype).encode())
    return h.hexdigest()[:12]


def bank_file_name(backbone: nn.Module, dataset: str, split: str, max_length: int, *, legacy: bool = False,
                   vocabulary: bool = False) -> str:
    """File name of a bank: backbone fingerprint, dataset, split and context length (any change: a new file).

    The fingerprint leaves the vocabulary's size out: a bank is keyed row by row by token ids, and a row's states
    depend only on the embedding rows of its own tokens, which appending rows does not change. So the conversation
    generator's backbone, whose vocabulary gains the ``<movie>`` row (initialised from the other rows, the same
    every time), and the plain backbone of chapter 7 share one bank per split instead of each encoding the
    same contexts (INSPIRED's 960 test contexts: about 4 minutes on one core). ``vocabulary=True``: the name
    before that (the size in), which :func:`bank_path` renames."""
    return (f"context-states-{backbone_fingerprint(backbone, legacy=legacy, vocabulary=vocabulary)}-{dataset}-{split}"
            f"-T{max_length}.safetensors")


def bank_path(folder: str | os.PathLike, backbone: nn.Module, dataset: str, split: str, max_length: int) -> Path:
    """Where a bank lives under ``folder`` (:func:`bank_file_name`). A bank written under an earlier name for the
    same backbone (the path-dependent one, or the one with the vocabulary's size) is renamed to the current one,
    not computed again."""
    path = Path(folder) / bank_file_name(backbone, dataset, split, max_length)
    for earlier in (dict(vocabulary=True), dict(legacy=True)):
        old = Path(folder) / bank_file_name(backbone, dataset, split, max_length, **earlier)
        if not path.exists() and old != path and old.is_file():
            os.replace(old, path)
    return path


class ContextStateBank:
    """Context states memoised by token ids (see module docstring).

    Rows are stored one context after the other (``[n, 2, n_layers, n_kv_heads, T, head_dim]``, keys then
    values), so a saved bank is read back memory-mapped: a lookup copies only the batch's rows, and processes
    that load the same file (two runs of a sweep on one dataset) share its pages through the OS page cache.

    Args:
        backbone: the frozen causal LM.
        width: T, every stored row is left-padded to this many positions (the collator's ``max_length``).
        pad_token_id: token id written into padded positions (masked out; any id works).
        dtype: storage dtype (the backbone's by default; bf16 halves the memory).
        batch_size: contexts per no-grad pass when filling the bank.
    """

    def __init__(self, backbone: nn.Module, width: int, pad_token_id: int, *, dtype: torch.dtype | None = None,
                 batch_size: int = 64):
        if width < 1:
            raise ValueError(f"width: expected >= 1, got {width}")
        self.backbone, self.width, self.pad_token_id = backbone, width, pad_token_id
        self.dtype = dtype or next(backbone.parameters()).dtype
        self.batch_size = batch_size
        self._index: dict[tuple[int, ...], tuple[int, int]] = {}  # row -> (chunk, position in chunk)
        self._states: list[Tensor] = []  # chunks [n, 2, L, h, T, d]
        self._masks: list[Tensor] = []  # chunks [n, T]

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, row: tuple[int, ...]) -> bool:
        return row in self._index

    def _append(self, rows: Sequence[tuple[int, ...]], states: Tensor, masks: Tensor) -> None:
        chunk = len(self._states)
        self._states.append(states)
        self._masks.append(masks)
        for i, r in enumerate(rows):
            self._index[r] = (chunk, i)

    def merge(self, other: "ContextStateBank") -> None:
        """Add the rows of ``other`` (same width) that this bank does not hold yet. Chunks of the same dtype are
        shared, not copied; those of another dtype are converted to this bank's (a copy): a float32 backbone's
        training bank may be stored in bfloat16 (too large in float32) beside its float32 validation bank."""
        if other.width != self.width:
            raise ValueError(f"merge: banks differ in width ({other.width} vs {self.width})")
        offset = len(self._states)
        self._states.extend(st if st.dtype == self.dtype else st.to(self.dtype) for st in other._states)
        self._masks.extend(other._masks)
        for r, (c, i) in other._index.items():
            self._index.setdefault(r, (c + offset, i))

    def rows_of(self, input_ids: Tensor, attention_mask: Tensor) -> list[tuple[int, ...]]:
        """The bank's keys of a batch of left-padded contexts (their real tokens)."""
        return self._rows(input_ids.cpu(), attention_mask.cpu())

    def _rows(self, input_ids: Tensor, attention_mask: Tensor) -> list[tuple[int, ...]]:
        if input_ids.shape[1] > self.width:
            raise ValueError(f"contexts of {input_ids.shape[1]} tokens exceed the bank width {self.width}")
        return [tuple(ids[m.bool()].tolist()) for ids, m in zip(input_ids, attention_mask)]

    def _pad(self, rows: Sequence[tuple[int, ...]]) -> tuple[Tensor, Tensor]:
        ids = torch.full((len(rows), self.width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), self.width), dtype=torch.long)
        for i, r in enumerate(rows):
            if not r:
                raise ValueError("context: expected at least one real token per row")
            ids[i, self.width - len(r):] = torch.tensor(r)
            mask[i, self.width - len(r):] = 1
        return ids, mask

    def _compute(self, rows: Sequence[tuple[int, ...]]):
        """Yield (rows, states [n, 2, L, h, T, d], masks [n, T]) chunk by chunk (no autograd).

        Each chunk is encoded only as wide as its longest row, then padded back to the bank's width with zero
        states under a zero mask: the rows are left-padded, so their real tokens keep positions 0..n-1 and their
        states are those of a full-width pass (the padded positions are never attended). Callers pass the rows
        sorted by length (:func:`_by_length`), so that a chunk's rows are of similar length: on INSPIRED's
        conversation contexts (200-token budget) that encodes 1.37x fewer positions than full-width chunks."""
        device = next(self.backbone.parameters()).device
        for start in range(0, len(rows), self.batch_size):
            chunk = list(rows[start:start + self.batch_size])
            ids, mask = self._pad(chunk)
            w = max(len(r) for r in chunk)
            with borrowed_cores():  # forward only: the same states on any number of threads
                follow_share()
                st = encode_context(self.backbone, ids[:, -w:].to(device), mask[:, -w:].to(device))
            both = torch.stack([st.keys, st.values]).to("cpu", self.dtype)  # [2, L, n, h, w, d]
            if w < self.width:
                both = torch.nn.functional.pad(both, (0, 0, self.width - w, 0))
            yield chunk, both.permute(2, 0, 1, 3, 4, 5).contiguous(), mask

    def add(self, rows: Sequence[tuple[int, ...]]) -> None:
        """Compute and store (in memory) the states of the rows not stored yet."""
        new = _by_length(r for r in rows if r not in self._index)
        for chunk, states, mask in self._compute(new):
            self._append(chunk, states, mask)

    def lookup(self, input_ids: Tensor, attention_mask: Tensor) -> ContextStates:
        """States of a batch of left-padded contexts (computed and stored first when missing)."""
        rows = self._rows(input_ids.cpu(), attention_mask.cpu())
        missing = [r for r in rows if r not in self._index]
        if missing:
            self.add(missing)
        picked = [self._index[r] for r in rows]
        states = torch.stack([self._states[c][i] for c, i in picked]).to(self.dtype)  # [B, 2, L, h, T, d]
        masks = torch.stack([self._masks[c][i] for c, i in picked]).long()
        states = states.permute(1, 2, 0, 3, 4, 5)  # [2, L, B, h, T, d]
        return ContextStates(states[0], states[1], masks)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, compute: Sequence[tuple[int, ...]] = ()) -> Path:
        """Write every stored row, plus the states of ``compute`` (rows not stored yet, computed on the way), as
        one safetensors file, atomically and streamed: no row is held twice in memory, and computed rows are
        written, not kept (load the file back to use them, memory-mapped)."""
        new = _by_length(r for r in compute if r not in self._index)
        if not self._index and not new:
            raise ValueError("save: the bank is empty and nothing to compute")
        order = list(self._index) + new
        probe = next(iter(self._states), None)
        if probe is None:  # shape of one row from a one-row pass
            _, probe, _ = next(self._compute(new[:1]))
        row_shape = tuple(probe.shape[1:])
        meta = {"rows": json.dumps([list(r) for r in order]), "width": str(self.width), "dtype": str(self.dtype)}

        def rows_out():
            for r, (c, i) in self._index.items():
                yield self._states[c][i:i + 1], self._masks[c][i:i + 1]
            for _, states, mask in self._compute(new):
                yield states, mask

        return _write_bank(Path(path), len(order), row_shape, self.dtype, self.width, meta, rows_out())

    def load(self, path: str | os.PathLike) -> bool:
        """Add the rows of a file written by :meth:`save`, memory-mapped; False (nothing added) when the file is
        missing, unreadable or of another width or dtype."""
        p = Path(path)
        if not p.is_file():
            return False
        try:
            states, masks, meta = _mmap_safetensors(p)
            if int(meta["width"]) != self.width or meta["dtype"] != str(self.dtype):
                return False
            rows = [tuple(r) for r in json.loads(meta["rows"])]
        except Exception as err:  # a damaged cache file is rebuilt, never trusted
            import warnings

            warnings.warn(f"{p}: unreadable context-state cache ({type(err).__name__}: {err}); recomputing")
            return False
        if not rows:
            return True
        if states.ndim != 6 or states.shape[0] != len(rows) or masks.shape != (len(rows), self.width):
            return False
        fresh = [(i, r) for i, r in enumerate(rows) if r not in self._index]
        if fresh:
            self._append([r for _, r in fresh], states, masks)
            chunk = len(self._states) - 1
            for i, r in fresh:  # positions in the file, not in the fresh list
                self._index[r] = (chunk, i)
        return True


def _by_length(rows) -> list[tuple[int, ...]]:
    """Distinct ``rows``, shortest first (stable: equal lengths keep their order), for :meth:`ContextStateBank._compute`."""
    return sorted(dict.fromkeys(rows), key=len)


def _write_bank(path: Path, n: int, row_shape: tuple[int, ...], dtype: torch.dtype, width: int, meta: dict,
                chunks) -> Path:
    """Stream ``chunks`` of (states [k, *row_shape], masks [k, T]) into a safetensors file, atomically
    (:func:`mscrs_core.atomic.atomic_write`: a reader never sees half a bank)."""
    name = {v[0]: k for k, v in _SAFETENSORS_DTYPES.items()}[dtype]
    itemsize = torch.empty(0, dtype=dtype).element_size()
    state_bytes = n * int(torch.tensor(row_shape).prod()) * itemsize
    header = {"states": {"dtype": name, "shape": [n, *row_shape], "data_offsets": [0, state_bytes]},
              "masks": {"dtype": "I8", "shape": [n, width], "data_offsets": [state_bytes, state_bytes + n * width]},
              "__metadata__": meta}
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)  # the format aligns the data to 8 bytes
    _check_free_space(path, 8 + len(blob) + state_bytes + n * width)

    def write(f) -> None:
        masks, written = [], 0
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for states, mask in chunks:
            raw = states.contiguous().view(torch.int16) if itemsize == 2 else states.contiguous()
            f.write(raw.numpy().tobytes())
            masks.append(mask.to(torch.int8))
            written += states.shape[0]
        if written != n:
            raise RuntimeError(f"{path}: wrote {written} rows, expected {n}")
        f.write(torch.cat(masks).numpy().tobytes())

    return atomic_write(path, write, binary=True)


def _check_free_space(path: Path, need: int) -> None:
    """Fail before any state is computed when the bank cannot fit on its disk: the conversation's training states
    alone take gigabytes, and a disk that fills up half-way would cost the time of computing them."""
    import errno
    import shutil

    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if need > free:
        gib = 1 << 30
        raise OSError(errno.ENOSPC, f"{path}: this context-state bank needs {need / gib:.1f} GiB, but its disk has "
                                    f"{free / gib:.1f} GiB free. The states are a cache (cache/context-states/, "
                                    "kept by make clean): delete banks of backbones or data you no longer use, or "
                                    "free space on that disk; $MSCRS_STATE_BANK_DISK_GB below the bank's size makes "
                                    "the conversation runs encode their contexts batch by batch instead (slower)")


_SAFETENSORS_DTYPES = {"BF16": (torch.bfloat16, "int16"), "F32": (torch.float32, "float32"),
                       "F16": (torch.float16, "float16"), "I8": (torch.int8, "int8")}


def _mmap_safetensors(path: Path) -> tuple[Tensor, Tensor, dict]:
    """The ``states`` and ``masks`` tensors of a bank file as memory-mapped (copy-on-write) tensors."""
    import numpy as np

    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", {})
    out = []
    for name in ("states", "masks"):
        info = header[name]
        dtype, np_dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end == start:
            out.append(torch.zeros(shape, dtype=dtype))
            continue
        arr = np.memmap(path, dtype=np_dtype, mode="c", offset=8 + n + start, shape=shape)
        t = torch.from_numpy(arr)
        out.append(t.view(dtype) if t.dtype != dtype else t)
    return out[0], out[1], meta
