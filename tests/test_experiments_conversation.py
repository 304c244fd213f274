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


def test_graph_prompt_keeps_the_digest_and_reads_records_under_its_former_name():
    """``graph_prompt`` was recorded (and hashed) as ``graph_variant``: finished runs keep their folder names."""
    from mscrs_core.experiments.conversation import ConversationRunConfig

    for cfg in (ConversationRunConfig(), ConversationRunConfig(model="backbone"),
                ConversationRunConfig.of(graph_prompt="authors_code")):
        ident = cfg.identity()
        assert "graph_prompt" not in ident and ident["graph_variant"] == cfg.graph_prompt
        assert cfg.flat()["graph_prompt"] == cfg.graph_prompt and "graph_variant" not in cfg.flat()
        old = {("graph_variant" if k == "graph_prompt" else k): v for k, v in cfg.flat().items()}
        assert ConversationRunConfig.from_record(old) == cfg  # a result.json written before the rename
        assert ConversationRunConfig.from_record(cfg.flat()) == cfg
    assert ConversationRunConfig().digest() != ConversationRunConfig.of(graph_prompt="authors_code").digest()
