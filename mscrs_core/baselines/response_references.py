"""Reference rows of Table 3 (not in the paper): responses that are not generated, scored like the generators'.

BLEU, ROUGE and Distinct of a generator mean little without a yardstick: these rows say what the metrics give to
responses written by people but chosen without looking at the dialog, or chosen by the dialog's similarity alone.
Each returns one response per test sample, with ``<movie>`` placeholders as the references have them.

* ``nearest_response``: the response of the training turn whose context is most similar to the test context,
  cosine similarity of the context embeddings E^(0) of Eq. (26) (the correlation semantic mapping's text encoder,
  all-MiniLM-L6-v2 here), a retrieval-based dialog system in its simplest form.
* ``frequent_response``: the most frequent training response, for every test turn (what a generator that has
  learned one safe sentence scores; the degeneration check of chapter 6 flags it).
* ``shuffled_response``: a training response drawn at random (seeded) for each test turn: human text with no
  relation to the dialog, the Distinct values of people's responses.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from mscrs_core.models.context_mapping import TextEmbedFn, embed_contexts

REFERENCE_MODELS = ("nearest_response", "frequent_response", "shuffled_response")


def frequent_response(train: Sequence) -> str:
    """The most frequent training response (the first one seen among equally frequent ones)."""
    if not train:
        raise ValueError("frequent_response: no training samples")
    return Counter(s.response for s in train).most_common(1)[0][0]


def nearest_responses(train: Sequence, test: Sequence, embedder: TextEmbedFn, batch_size: int = 256) -> list[str]:
    """Per test sample, the response of the training sample whose context embedding is the most similar (cosine;
    similarities equal to 1e-6, the earliest training sample: the choice does not depend on the float kernels)."""
    if not train:
        raise ValueError("nearest_responses: no training samples")
    if not test:
        return []
    bank = torch.nn.functional.normalize(embed_contexts(train, embedder).float(), dim=1)
    query = torch.nn.functional.normalize(embed_contexts(test, embedder).float(), dim=1)
    # torch.argmax returns the first maximum; rounding makes ties that float sums split one way or another exact
    best = torch.cat([torch.round(query[i:i + batch_size] @ bank.T, decimals=6).argmax(dim=1)
                      for i in range(0, len(test), batch_size)])
    return [train[int(i)].response for i in best]


def reference_responses(model: str, train: Sequence, test: Sequence, *, embedder: TextEmbedFn | None = None,
                        seed: int = 0) -> list[str]:
    """The responses of the reference row ``model`` (one of :data:`REFERENCE_MODELS`) for ``test``."""
    if model == "nearest_response":
        if embedder is None:
            raise ValueError("nearest_response: a context embedder is needed")
        return nearest_responses(train, test, embedder)
    if model == "frequent_response":
        return [frequent_response(train)] * len(test)
    if model == "shuffled_response":
        if not train:
            raise ValueError("shuffled_response: no training samples")
        picks = np.random.default_rng(seed).integers(0, len(train), size=len(test))
        return [train[int(i)].response for i in picks]
    raise ValueError(f"reference model: expected one of {REFERENCE_MODELS}, got {model!r}")
