"""The dialog context as text-encoder features: the newest tokens of the context, encoded by a frozen
sentence encoder (Eq. 3's encoder; offline all-MiniLM-L6-v2).

Two readers: the text classifier baseline (the paper's "BERT" row) and the recommender's T_s when
``RecommenderConfig.context_encoder="text_encoder"`` (Sec. 4.3: "We use RoBERTa to extract the embedding T_s of
the current conversation s"). :class:`ContextTextFeatures` serves the second: a table of features per sample,
filled from a cached file for the splits, and by encoding on the fly for a sample it has not seen (a live chat).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import torch

CONTEXT_CACHE_NAME = "contexts-text-newest.safetensors"  # v2: newest tokens kept (v1: contexts-text.safetensors)


def context_string(sample) -> str:
    return " ".join(f"{'User' if r == 'seeker' else 'System'}: {t}" for r, t in sample.context)


def newest_tokens_text(text: str, tokenizer, budget: int) -> str:
    """The end of ``text`` that the tokenizer turns into at most ``budget`` tokens (special tokens excluded).

    Tokenizes the whole text, keeps the last ``budget`` tokens, moves the cut forward to a word start (a
    word piece such as ``##ing`` would re-tokenize differently) and returns the original characters from
    there (fast tokenizers' offsets; else the decoded tokens), so the encoder sees the newest turns instead
    of the oldest. Re-tokenizing the result is checked against the budget.
    """
    if budget < 1:
        raise ValueError(f"budget: expected >= 1 tokens, got {budget}")
    fast = getattr(tokenizer, "is_fast", False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=fast, verbose=False)  # long: no warning
    ids = enc["input_ids"]
    if len(ids) <= budget:
        return text
    words = enc.word_ids() if fast else None
    start = len(ids) - budget
    while start < len(ids):
        if fast:
            while 0 < start < len(ids) and words[start] is not None and words[start] == words[start - 1]:
                start += 1
            out = text[enc["offset_mapping"][start][0]:] if start < len(ids) else ""
        else:
            while start < len(ids) and tokenizer.convert_ids_to_tokens(ids[start]).startswith("##"):
                start += 1
            out = tokenizer.decode(ids[start:], clean_up_tokenization_spaces=False).strip()
        if len(tokenizer(out, add_special_tokens=False)["input_ids"]) <= budget:
            return out
        start += 1
    return ""


def context_texts(samples: Sequence, encoder, max_length: int) -> list[str]:
    """Each sample's context string, cut to its newest ``max_length - 2`` tokens of ``encoder.tokenizer``."""
    cache: dict[str, str] = {}
    out = []
    for s in samples:
        full = context_string(s)
        if full not in cache:
            cache[full] = newest_tokens_text(full, encoder.tokenizer, max_length - 2)
        out.append(cache[full])
    return out


def encode_contexts(samples: Sequence, cfg, cache_path: str | os.PathLike,
                    encoder=None) -> torch.Tensor:
    """[len(samples), d] frozen-encoder features of the newest context tokens, cached at ``cache_path``.
    ``cfg`` gives ``encoder`` (a name, None: MiniLM) and ``max_length`` (e.g. a ``TextClassifierConfig``)."""
    from .text_encoder import TextEncoder

    enc = encoder or TextEncoder(cfg.encoder, max_length=cfg.max_length)
    texts = context_texts(samples, enc, cfg.max_length)
    keys: dict[str, str] = {}
    for t in texts:
        keys.setdefault(t, f"c{len(keys)}")
    table = enc.encode_cached({k: t for t, k in keys.items()}, cache_path)
    idx = table.index()
    if not texts:
        return torch.zeros(0, table.features.shape[1] if table.features.ndim == 2 else enc.dim)
    return torch.stack([table.features[idx[keys[t]]] for t in texts])


def cached_contexts(samples: Sequence, cfg, cache_dir: str | os.PathLike) -> torch.Tensor:
    """:func:`encode_contexts` through the feature file ``CONTEXT_CACHE_NAME`` in ``cache_dir`` (created if
    missing; one file per folder, rewritten when the samples differ)."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    return encode_contexts(samples, cfg, cache / CONTEXT_CACHE_NAME)


class ContextTextFeatures:
    """``samples -> Tensor[B, d]``: the frozen text encoder's features of each sample's newest context tokens.

    Args:
        encoder: a :class:`~mscrs_core.features.TextEncoder` (None: the offline all-MiniLM-L6-v2).
        max_length: encoder tokens, special tokens included; the newest ``max_length - 2`` are kept.

    :meth:`precompute` fills the table from (and into) a cached feature file; a sample missing from the table
    is encoded when asked for (and kept), so a live dialog needs no file.
    """

    def __init__(self, encoder=None, max_length: int = 128):
        from .text_encoder import TextEncoder

        self.encoder = encoder or TextEncoder(None, max_length=max_length)
        self.max_length = max_length
        self.table: dict[Any, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    def precompute(self, samples: Sequence, cache_path: str | os.PathLike) -> "ContextTextFeatures":
        """Encode ``samples`` through the feature file at ``cache_path`` (reused when its inputs match)."""
        samples = list(samples)
        if samples:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            settings = SimpleNamespace(encoder=None, max_length=self.max_length)  # what encode_contexts reads
            feats = encode_contexts(samples, settings, cache_path, encoder=self.encoder)
            self.table.update(zip(samples, feats))
        return self

    def __call__(self, samples: Sequence) -> torch.Tensor:
        missing = list(dict.fromkeys(s for s in samples if s not in self.table))
        if missing:
            texts = context_texts(missing, self.encoder, self.max_length)
            self.table.update(zip(missing, self.encoder.encode(texts)))
        return torch.stack([self.table[s] for s in samples]).float()

