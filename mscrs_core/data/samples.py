"""Training and evaluation samples, following the UniCRS / MSCRS protocol.

All three builders walk a dialog turn by turn and keep, for turn ``i``, the
``context`` (role, text) of turns ``0..i-1`` and the ``context_entities``:
the entities and items mentioned in those turns, in order of first mention.

* :func:`pretrain_samples` (Eq. 21-22): every turn, of either speaker, that
  mentions at least one entity or item; the turn's text is part of the input
  (``response``) and each entity/item of the turn is its own target
  (UniCRS ``dataset_pre.py``).
* :func:`rec_samples` (Eq. 23-24): every recommender turn that mentions items;
  each gold item is its own sample, the context is the preceding turns only.
  ``mentioned_items`` lists items already mentioned before the turn, for the
  evaluation option that removes them from the ranking.
* :func:`conversation_samples` (Eq. 29): every recommender turn; the response text with
  movie names replaced by a placeholder token (``<movie>``), filled at
  generation time by the recommender's ranking.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .schema import RECOMMENDER, CRSDataset, Dialog

MOVIE_PLACEHOLDER = "<movie>"


@dataclass(frozen=True)
class Sample:
    dialog_id: str
    turn_index: int
    context: tuple[tuple[str, str], ...]
    context_entities: tuple[int, ...]
    response: str
    target: int | None = None
    mentioned_items: tuple[int, ...] = ()
    response_items: tuple[int, ...] = field(default=(), compare=False)


def _walk(dialog: Dialog):
    ctx: list[tuple[str, str]] = []
    ents: dict[int, None] = {}
    items: dict[int, None] = {}
    for i, turn in enumerate(dialog.turns):
        yield i, turn, tuple(ctx), tuple(ents), tuple(items)
        ctx.append((turn.role, turn.text))
        for e in turn.all_entities:
            ents.setdefault(e)
        for e in turn.items:
            items.setdefault(e)


def pretrain_samples(dialogs: Iterable[Dialog]) -> list[Sample]:
    out = []
    for d in dialogs:
        for i, turn, ctx, ents, items in _walk(d):
            for target in turn.all_entities:
                out.append(Sample(d.dialog_id, i, ctx, ents, turn.text, target, items))
    return out


def rec_samples(dialogs: Iterable[Dialog], item_ids: Sequence[int] | None = None) -> list[Sample]:
    allowed = set(item_ids) if item_ids is not None else None
    out = []
    for d in dialogs:
        for i, turn, ctx, ents, items in _walk(d):
            if turn.role != RECOMMENDER or i == 0:
                continue
            for item in turn.items:
                if allowed is None or item in allowed:
                    out.append(Sample(d.dialog_id, i, ctx, ents, turn.text, item, items))
    return out


def mask_movies(text: str, names: Sequence[str]) -> str:
    """Replace each movie name (longest first) by :data:`MOVIE_PLACEHOLDER`."""
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        text = re.sub(re.escape(name), MOVIE_PLACEHOLDER, text)
    return text


def conversation_samples(dialogs: Iterable[Dialog], dataset: CRSDataset | None = None,
                         movie_names: dict[int, Sequence[str]] | None = None) -> list[Sample]:
    """Recommender turns as generation targets, movies masked.

    ``movie_names`` maps an item's entity id to the surface forms to mask; by
    default the dataset's entity names (with and without a trailing year).
    """
    out = []
    for d in dialogs:
        for i, turn, ctx, ents, items in _walk(d):
            if turn.role != RECOMMENDER or i == 0:
                continue
            forms: list[str] = []
            for it in turn.items:
                if movie_names is not None:
                    forms.extend(movie_names.get(it, ()))
                elif dataset is not None:
                    forms.extend(_surface_forms(dataset.name_of(it)))
            resp = mask_movies(turn.text, forms)
            out.append(Sample(d.dialog_id, i, ctx, ents, resp, None, items, turn.items))
    return out


def display_title(name: str) -> str:
    """A movie entity's title as people write it: DBpedia's disambiguation ("(film)", "(2019 film)", "(2016
    American film)", "(2019)") dropped."""
    return re.sub(r"\s*\((?:\d{4}|(?:\d{4} )?(?:[A-Z][a-z]+ )?film)\)\s*$", "", name)


def _surface_forms(name: str) -> list[str]:
    # the masking of the training responses (narrower than display_title: the recorded runs were trained on it)
    base = re.sub(r"\s*\((?:\d{4}|film|\d{4} film)\)\s*$", "", name)
    return [name, base]


def sample_counts(dataset: CRSDataset) -> dict[str, dict[str, int]]:
    """Number of samples of each kind per split (reported in chapter 1)."""
    return {
        split: {
            "pretrain": len(pretrain_samples(ds)),
            "rec": len(rec_samples(ds, dataset.item_ids)),
            "conv": len(conversation_samples(ds, dataset)),
        }
        for split, ds in dataset.splits.items()
    }
