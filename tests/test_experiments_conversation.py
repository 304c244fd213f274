"""Run-level choices of the conversation experiment (mscrs_core.experiments.conversation)."""
from __future__ import annotations

from types import SimpleNamespace

from mscrs_core.experiments.conversation import median_response_tokens


class WordTokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}


def test_min_new_tokens_default_is_the_median_training_response_length():
    samples = [SimpleNamespace(response=" ".join(["w"] * n)) for n in (3, 9, 5, 20, 7)]
    assert median_response_tokens(samples, WordTokenizer()) == 7
    assert median_response_tokens(samples[:4], WordTokenizer()) == 9  # upper median of 3, 5, 9, 20
    assert median_response_tokens([], WordTokenizer()) == 0
