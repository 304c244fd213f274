"""Turn samples into tensors for the prompt-learning recommender (paper Sec. 4.3; UniCRS's data format).

Context text follows UniCRS: ``"User: <utt><eos>System: <utt><eos>..."`` (seeker -> "User", recommender ->
"System"), truncated from the LEFT to ``max_length`` tokens so the most recent turns survive. With
``include_response=True`` (entity pre-training, Eq. 21-22, as UniCRS's ``dataset_pre``) the response is appended
with the other speaker's prefix (the samples do not record who spoke it; it is the speaker after the last
context turn, "System" for an empty context).

Batch (a dict of tensors, so ``accelerate`` can move it):

* ``input_ids`` [B, L] and ``attention_mask`` [B, L]: LEFT-padded (the last column is always a real token);
* ``entity_ids`` [B, q] and ``entity_mask`` [B, q]: the last q context entities, RIGHT-aligned, pad id 0 + mask;
* ``mentioned_ids`` [B, M] and ``mentioned_mask`` [B, M]: the items already mentioned in the context in order of
  first mention (``sample.mentioned_items``; RIGHT-aligned, so the newest is last; pad id 0 + mask; M >= 1), read
  by the recommender's mention bias (:class:`~mscrs_core.models.recommender.RecommenderConfig`);
* ``labels`` [B]: target entity ids;
* ``context_text`` [B, d] (only with ``context_features``): the context's sentence-encoder features.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

ROLE_PREFIX = {"seeker": "User: ", "recommender": "System: "}


class SampleLike(Protocol):
    """What the collator reads from a sample (``mscrs_core.data.samples`` defines the real dataclass)."""

    context: tuple[tuple[str, str], ...]
    context_entities: tuple[int, ...]
    response: str
    target: int


def context_text(context: Sequence[tuple[str, str]], eos: str, response: str | None = None) -> str:
    """UniCRS's context string; the optional response gets the next speaker's prefix."""
    parts = []
    for role, text in context:
        if role not in ROLE_PREFIX:
            raise ValueError(f"sample context: role must be one of {sorted(ROLE_PREFIX)}, got {role!r}")
        if text.strip():
            parts.append(ROLE_PREFIX[role] + text.strip() + eos)
    if response is not None:
        last = context[-1][0] if context else "seeker"
        nxt = "recommender" if last == "seeker" else "seeker"
        parts.append(ROLE_PREFIX[nxt] + response.strip() + eos)
    return "".join(parts)


class RecCollator:
    """Callable ``list[sample] -> dict[str, Tensor]`` (see module docstring).

    Args:
        tokenizer: the backbone's tokenizer (needs ``eos_token`` and ``pad_token_id``).
        max_length: token budget of the context (UniCRS/MSCRS use 200).
        max_entities: q, entity slots (UniCRS/MSCRS use 32).
        include_response: append the response text (pre-training, as UniCRS does).
        cache: memoise the tokenisation of each sample (samples are frozen dataclasses, so hashable).
        context_features: ``samples -> Tensor[B, d]`` (e.g. :class:`~mscrs_core.features.context_text.ContextTextFeatures`),
            written to ``batch["context_text"]``; the recommender's T_s reads it (``context_encoder="text_encoder"``).
    """

    def __init__(
        self, tokenizer: Any, *, max_length: int = 200, max_entities: int = 32,
        include_response: bool = False, cache: bool = True, context_features: Any = None,
    ):
        if max_length < 1 or max_entities < 1:
            raise ValueError(f"max_length/max_entities: expected >= 1, got {max_length}/{max_entities}")
        if tokenizer.eos_token is None or tokenizer.pad_token_id is None:
            raise ValueError("tokenizer: expected eos_token and pad_token to be set (load_backbone sets pad=eos)")
        self.tokenizer, self.max_length, self.max_entities = tokenizer, max_length, max_entities
        self.include_response = include_response
        self.context_features = context_features
        self._cache: dict[Any, list[int]] | None = {} if cache else None

    def token_ids(self, sample: SampleLike) -> list[int]:
        """Token ids of the sample's context (+ response), truncated from the left."""
        if self._cache is not None and sample in self._cache:
            return self._cache[sample]
        text = context_text(sample.context, self.tokenizer.eos_token,
                            sample.response if self.include_response else None)
        # verbose=False: long dialogs exceed model_max_length before the left truncation below; no warning.
        ids = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []
        if not ids:  # empty context: a lone EOS keeps the sequence non-empty (the LM sees "start of dialog")
            ids = [self.tokenizer.eos_token_id]
        ids = ids[-self.max_length:]
        if self._cache is not None:
            self._cache[sample] = ids
        return ids

    def __call__(self, samples: Sequence[SampleLike]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("samples: expected a non-empty batch")
        seqs = [self.token_ids(s) for s in samples]
        width = max(len(s) for s in seqs)
        b, q = len(samples), self.max_entities
        input_ids = torch.full((b, width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((b, width), dtype=torch.long)
        entity_ids = torch.zeros((b, q), dtype=torch.long)
        entity_mask = torch.zeros((b, q), dtype=torch.bool)
        for i, (s, ids) in enumerate(zip(samples, seqs)):
            input_ids[i, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, width - len(ids):] = 1
            ents = list(s.context_entities)[-q:]
            if ents:
                entity_ids[i, q - len(ents):] = torch.tensor(ents, dtype=torch.long)
                entity_mask[i, q - len(ents):] = True
        mentions = [tuple(getattr(s, "mentioned_items", ())) for s in samples]
        width_m = max(1, max(len(m) for m in mentions))
        mentioned_ids = torch.zeros((b, width_m), dtype=torch.long)
        mentioned_mask = torch.zeros((b, width_m), dtype=torch.bool)
        for i, m in enumerate(mentions):
            if m:
                mentioned_ids[i, width_m - len(m):] = torch.tensor(m, dtype=torch.long)
                mentioned_mask[i, width_m - len(m):] = True
        if any(s.target is None for s in samples):
            raise ValueError("samples: every sample needs an entity id as target (conversation samples have none)")
        labels = torch.tensor([int(s.target) for s in samples], dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "entity_ids": entity_ids,
                 "entity_mask": entity_mask, "mentioned_ids": mentioned_ids, "mentioned_mask": mentioned_mask,
                 "labels": labels}
        if self.context_features is not None:
            batch["context_text"] = self.context_features(samples)
        return batch
