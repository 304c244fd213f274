"""Response generation with the MSCRS conversation model and placeholder filling (UniCRS's protocol).

* :func:`generate_ids`: greedy (``num_beams=1``) or beam search through the frozen backbone's
  ``generate(inputs_embeds=c_s, attention_mask=...)`` (Eq. 28 prompt + context + ``"System:"``), with
  ``max_new_tokens``, ``no_repeat_ngram_size``, ``num_beams``, ``length_penalty`` as parameters; no sampling.
  With ``inputs_embeds`` only, Hugging Face's no-repeat-n-gram constraint sees the GENERATED tokens only (the
  context has no ids), as in the authors' and UniCRS's runs. Generation stops at EOS.
* :func:`fill_placeholders`: every ``<movie>`` of a generated response is replaced, left to right, by the next
  item of the recommender's ranking for that context (UniCRS fills ``<movie>`` slots with its recommender's
  predictions); items in ``exclude`` (e.g. those already mentioned in the dialog) are skipped.
* :func:`generate_responses`: both steps for a list of samples, with a ``rank(sample) -> list[item ids]``
  callable (tests pass a stub; :func:`recommender_ranker` wraps a trained
  :class:`~mscrs_core.models.recommender.MSCRSRecommender`).
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mscrs_core.data.samples import MOVIE_PLACEHOLDER

RankFn = Callable[[object], Sequence[int]]


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding parameters (the authors: greedy, ``max_gen_len=50``, ``no_repeat_ngram_size=3``)."""

    max_new_tokens: int = 50
    num_beams: int = 1  # 1 = greedy
    no_repeat_ngram_size: int = 3  # 0 = off
    length_penalty: float = 1.0  # beam search only
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_beams < 1 or self.no_repeat_ngram_size < 0 or self.min_new_tokens < 0:
            raise ValueError("GenerationConfig: max_new_tokens >= 1, num_beams >= 1, no_repeat_ngram_size >= 0, "
                             "min_new_tokens >= 0 expected")


@dataclass
class GeneratedResponse:
    """One generated response: raw text (with placeholders), filled text and the items that filled it."""

    raw: str
    text: str
    items: list[int]
    token_ids: list[int]


def _batch_to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def generate_ids(generator, batch: dict[str, torch.Tensor], config: GenerationConfig | None = None) -> list[list[int]]:
    """New token ids per row (EOS and what follows removed) for a generation batch
    (``generator.make_collator(generation=True)``)."""
    cfg = config or GenerationConfig()
    was_training = generator.training
    generator.eval()
    generator.sync_placeholder()
    device = next(generator.backbone.parameters()).device
    batch = _batch_to(batch, device)
    embeds, mask, _, _ = generator.inputs_embeds(batch)
    tok = generator.tokenizer
    kwargs = dict(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=cfg.max_new_tokens,
                  min_new_tokens=cfg.min_new_tokens, num_beams=cfg.num_beams, do_sample=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, num_return_sequences=1)
    if cfg.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = cfg.no_repeat_ngram_size
    if cfg.num_beams > 1:
        kwargs.update(length_penalty=cfg.length_penalty, early_stopping=True)
    with warnings.catch_warnings():  # the inputs_embeds/no-repeat note is documented in the module docstring
        warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*inputs_embeds.*")
        out = generator.backbone.generate(**kwargs)
    generator.train(was_training)
    seqs = []
    for row in out.tolist():
        if tok.eos_token_id in row:
            row = row[: row.index(tok.eos_token_id)]
        seqs.append(row)
    return seqs


def decode(tokenizer, ids: Sequence[int]) -> str:
    """Text of generated ids; the placeholder stays a literal ``<movie>``; other special tokens are dropped."""
    specials = set(tokenizer.all_special_ids) - set(tokenizer.convert_tokens_to_ids([MOVIE_PLACEHOLDER]))
    return tokenizer.decode([i for i in ids if i not in specials], skip_special_tokens=False).strip()


def fill_placeholders(text: str, ranking: Sequence[int], name_of: Callable[[int], str],
                      placeholder: str = MOVIE_PLACEHOLDER, exclude: Sequence[int] = (),
                      strict: bool = False) -> tuple[str, list[int]]:
    """Replace each ``placeholder`` in ``text`` by the next ranked item not in ``exclude`` (UniCRS protocol).

    Returns the filled text and the items used, in order. When the ranking runs out, the remaining
    placeholders stay literal (``strict=True``: ValueError instead).
    """
    skip = set(int(e) for e in exclude)
    queue = list(dict.fromkeys(int(e) for e in ranking if int(e) not in skip))
    parts = text.split(placeholder)
    if strict and len(parts) - 1 > len(queue):
        raise ValueError(f"ranking: {len(parts) - 1} placeholders but only {len(queue)} rankable items")
    used = queue[: len(parts) - 1]
    out = parts[0]
    for j, rest in enumerate(parts[1:]):
        out += (name_of(used[j]) if j < len(used) else placeholder) + rest
    return out, used


def generate_responses(generator, samples: Sequence, *, config: GenerationConfig | None = None,
                       rank: RankFn | None = None, name_of: Callable[[int], str] | None = None,
                       batch_size: int = 16, exclude_mentioned: bool = True) -> list[GeneratedResponse]:
    """Generate a response for each sample and fill its placeholders with ``rank(sample)``.

    ``exclude_mentioned``: skip items already in the sample's context (``sample.mentioned_items``).
    Without ``rank`` the placeholders stay in ``text``.
    """
    collator = generator.make_collator(generation=True)
    names = name_of or str
    out: list[GeneratedResponse] = []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start:start + batch_size])
        for s, ids in zip(chunk, generate_ids(generator, collator(chunk), config)):
            raw = decode(generator.tokenizer, ids)
            text, items = raw, []
            if rank is not None and generator.config.placeholder in raw:
                excl = getattr(s, "mentioned_items", ()) if exclude_mentioned else ()
                text, items = fill_placeholders(raw, rank(s), names, generator.config.placeholder, excl)
            out.append(GeneratedResponse(raw, text, items, ids))
    return out


def recommender_ranker(recommender, *, max_length: int = 200, top: int = 50) -> RankFn:
    """``rank(sample)``: item entity ids by the recommender's score (Eq. 23), best first, ``top`` of them.

    Conversation samples carry no target; the recommender's collator needs one, so a dummy item is set
    (labels are not read by ``score_items``).
    """
    from mscrs_core.models.collate import RecCollator

    collator = RecCollator(recommender.tokenizer, max_length=max_length,
                           max_entities=recommender.prompt_encoder.max_entities)
    item_ids = recommender.item_ids
    dummy = int(item_ids[0])

    def rank(sample) -> list[int]:
        s = sample if getattr(sample, "target", None) is not None else dataclasses.replace(sample, target=dummy)
        device = item_ids.device
        batch = {k: v.to(device) for k, v in collator([s]).items()}
        recommender.eval()
        scores = recommender.score_items(batch)[0]
        order = scores.argsort(descending=True)[:top]
        return [int(item_ids[i]) for i in order]

    return rank
