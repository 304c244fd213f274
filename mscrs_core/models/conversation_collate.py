"""Tokenisation of conversation samples for the generator (paper Sec. 4.4, Eq. 28-29; UniCRS's data format).

Sequence (token ids, LEFT-padded like :class:`~mscrs_core.models.collate.RecCollator`, so
:func:`~mscrs_core.models.prompt_encoder.assemble_inputs` can put the soft prompt right before the context):

    training:   context ids | "System:" ids | " <response>" ids + EOS
    generation: context ids | "System:" ids                        (the model continues after the colon)

* context: UniCRS's ``"User: ...<eos>System: ...<eos>"`` string (:func:`~mscrs_core.models.collate.context_text`),
  truncated from the LEFT to ``max_context_length`` tokens;
* the prefix and the response are tokenised separately, so the training sequence and the generation input share
  the exact same ids up to the colon (GPT-2's BPE splits ``"System: hi"`` the same way);
* the response keeps at most ``max_response_length - 1`` tokens, then EOS (the stop token of generation);
* ``labels`` [B, L]: the token ids on the response (+ EOS) positions, -100 elsewhere (``loss_on="response"``,
  Eq. 29's "label utterance"), or on every real token (``loss_on="all"``: the authors' and UniCRS's collator,
  which copies the whole context+response as labels). The model shifts them (position t predicts t + 1).

``context_mask`` [B, L]: 1 on the context + prefix tokens (T_s of Eq. 27 is pooled over these only, never over
the response that teacher forcing puts in the input).

``layout="suffix"`` (the ``suffix`` prompt order, :mod:`~mscrs_core.models.context_states`): the context and the
part after the soft prompt are separate tensors, because the context's key/value states are computed once and the
prompt goes between the two:

    ``context_ids``/``context_mask`` [B, T]: the context ids only (no "System:"), LEFT-padded;
    ``input_ids``/``attention_mask``/``labels`` [B, S]: "System:" ids + " <response>" ids + EOS (training) or
    "System:" ids only (generation), RIGHT-padded; ``labels`` -100 on "System:" and on padding.

``loss_on="all"`` is not available there (the context's tokens would need their own logits pass).

Entity slots: ``entity_ids``/``entity_mask`` [B, q], the last q ids of ``entities_fn(sample)`` right-aligned
(default: the sample's context entities; the generator passes its Eq. 25 enhanced order). ``features_fn`` adds the
Eq. 26 inputs (``ctx_emb``, ``nb_emb``, ``nb_weight``, ``nb_index``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mscrs_core.models.collate import context_text

LOSS_ON = ("response", "all")
LAYOUTS = ("prefix", "suffix")
RESPONSE_PREFIX = "System:"


class ConversationCollator:
    """Callable ``list[sample] -> dict[str, Tensor]`` (see the module docstring).

    Args:
        tokenizer: the backbone's tokenizer (with ``eos_token`` and ``pad_token_id``).
        max_context_length: context token budget (UniCRS/MSCRS: 200).
        max_response_length: response token budget including EOS (MSCRS: 80).
        max_entities: q entity slots.
        loss_on: ``"response"`` (paper, Eq. 29) or ``"all"`` (authors' code).
        generation: build generation inputs (no response, no labels).
        entities_fn: ``sample -> sequence of entity ids`` for the slots (last q kept).
        features_fn: ``samples -> dict of tensors`` merged into the batch (Eq. 26 inputs).
    """

    def __init__(self, tokenizer: Any, *, max_context_length: int = 200, max_response_length: int = 80,
                 max_entities: int = 32, loss_on: str = "response", generation: bool = False,
                 entities_fn: Callable[[Any], Sequence[int]] | None = None,
                 features_fn: Callable[[Sequence[Any]], dict[str, torch.Tensor]] | None = None,
                 response_prefix: str = RESPONSE_PREFIX, layout: str = "prefix"):
        if layout not in LAYOUTS:
            raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
        if layout == "suffix" and loss_on == "all":
            raise ValueError("layout='suffix' supervises the response only (loss_on='response')")
        self.layout = layout
        if loss_on not in LOSS_ON:
            raise ValueError(f"loss_on: expected one of {LOSS_ON}, got {loss_on!r}")
        if max_context_length < 1 or max_response_length < 2 or max_entities < 1:
            raise ValueError("max_context_length >= 1, max_response_length >= 2 and max_entities >= 1 expected")
        if tokenizer.eos_token is None or tokenizer.pad_token_id is None:
            raise ValueError("tokenizer: expected eos_token and pad_token to be set")
        self.tokenizer = tokenizer
        self.max_context_length, self.max_response_length = max_context_length, max_response_length
        self.max_entities, self.loss_on, self.generation = max_entities, loss_on, generation
        self.entities_fn = entities_fn or (lambda s: s.context_entities)
        self.features_fn = features_fn
        self.prefix_ids = self._encode(response_prefix)
        self._cache: dict[Any, tuple[list[int], list[int]]] = {}

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []

    def parts(self, sample: Any) -> tuple[list[int], list[int]]:
        """(context ids incl. the "System:" prefix, response ids incl. EOS) of one sample."""
        key = (sample.context, sample.response)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        ctx = self._encode(context_text(sample.context, self.tokenizer.eos_token))
        if not ctx:
            ctx = [self.tokenizer.eos_token_id]  # start of dialog
        ctx = ctx[-self.max_context_length:] + self.prefix_ids
        resp = self._encode(" " + sample.response.strip()) if sample.response.strip() else []
        resp = resp[: self.max_response_length - 1] + [self.tokenizer.eos_token_id]
        self._cache[key] = (ctx, resp)
        return ctx, resp

    def __call__(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("samples: expected a non-empty batch")
        if self.layout == "suffix":
            return self._suffix(samples)
        seqs, lab = [], []
        for s in samples:
            ctx, resp = self.parts(s)
            if self.generation:
                seqs.append(ctx)
                lab.append([-100] * len(ctx))
            else:
                seqs.append(ctx + resp)
                lab.append((ctx if self.loss_on == "all" else [-100] * len(ctx)) + resp)
        width = max(len(x) for x in seqs)
        b, q = len(samples), self.max_entities
        input_ids = torch.full((b, width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((b, width), dtype=torch.long)
        labels = torch.full((b, width), -100, dtype=torch.long)
        context_mask = torch.zeros((b, width), dtype=torch.long)
        for i, (s, ids, lb) in enumerate(zip(samples, seqs, lab)):
            input_ids[i, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, width - len(ids):] = 1
            labels[i, width - len(ids):] = torch.tensor(lb, dtype=torch.long)
            n_ctx = len(self.parts(s)[0])
            context_mask[i, width - len(ids):width - len(ids) + n_ctx] = 1
        entity_ids, entity_mask = self._entities(samples)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "context_mask": context_mask,
                 "entity_ids": entity_ids, "entity_mask": entity_mask}
        if not self.generation:
            batch["labels"] = labels
        if self.features_fn is not None:
            batch.update(self.features_fn(samples))
        return batch

    def _entities(self, samples: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.max_entities
        entity_ids = torch.zeros((len(samples), q), dtype=torch.long)
        entity_mask = torch.zeros((len(samples), q), dtype=torch.bool)
        for i, s in enumerate(samples):
            ents = [int(e) for e in self.entities_fn(s)][-q:]
            if ents:
                entity_ids[i, q - len(ents):] = torch.tensor(ents, dtype=torch.long)
                entity_mask[i, q - len(ents):] = True
        return entity_ids, entity_mask

    def _suffix(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """The ``layout="suffix"`` batch (module docstring)."""
        n_prefix = len(self.prefix_ids)
        ctxs, tails, labs = [], [], []
        for s in samples:
            ctx, resp = self.parts(s)
            ctxs.append(ctx[: len(ctx) - n_prefix])
            tail = self.prefix_ids + ([] if self.generation else resp)
            tails.append(tail)
            labs.append([-100] * n_prefix + ([] if self.generation else resp))
        b, t, w = len(samples), max(len(c) for c in ctxs), max(max(len(x) for x in tails), 1)
        pad = self.tokenizer.pad_token_id
        context_ids = torch.full((b, t), pad, dtype=torch.long)
        context_mask = torch.zeros((b, t), dtype=torch.long)
        input_ids = torch.full((b, w), pad, dtype=torch.long)
        attention_mask = torch.zeros((b, w), dtype=torch.long)
        labels = torch.full((b, w), -100, dtype=torch.long)
        for i, (c, x, lb) in enumerate(zip(ctxs, tails, labs)):
            context_ids[i, t - len(c):] = torch.tensor(c, dtype=torch.long)
            context_mask[i, t - len(c):] = 1
            if x:
                input_ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
                attention_mask[i, :len(x)] = 1
                labels[i, :len(lb)] = torch.tensor(lb, dtype=torch.long)
        entity_ids, entity_mask = self._entities(samples)
        batch = {"context_ids": context_ids, "context_mask": context_mask, "input_ids": input_ids,
                 "attention_mask": attention_mask, "entity_ids": entity_ids, "entity_mask": entity_mask}
        if not self.generation:
            batch["labels"] = labels
        if self.features_fn is not None:
            batch.update(self.features_fn(samples))
        return batch
